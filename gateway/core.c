/* The core: start-up, the pipeline, graceful stop and SIGHUP reload. */
#include "gateway/core_internal.h"

#include "gateway/admin.h"
#include "gateway/alarms.h"
#include "gateway/birth.h"
#include "gateway/commands.h"
#include "base/cfgmap.h"
#include "base/json.h"
#include "base/log.h"
#include "gateway/http.h"
#include "gateway/localpub.h"
#include "gateway/notify.h"
#include "gateway/status.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#define STATS_INTERVAL_MS 30000

static void listeners_stop(gw_core *core);
static void release_parsed(gw_config *cfg);

/* ---- Pipeline ---- */

/* Counts n readings of dev as accepted by the outbox queue, or refused (rc
 * from gw_store_put). Returns rc. */
static int accepted(gw_core *core, gw_device *dev, size_t n, int rc)
{
    if (rc == GW_EFULL) {
        core->st.refused_queue_full += n;
        GW_LOG_RL(GW_LOG_WARN, 10000, "pipeline",
                  "store queue full (%lld rows or %lld bytes): reading of %s refused",
                  (long long)core->cfg.store.queue_max, (long long)core->cfg.store.queue_max_bytes,
                  dev->conf.id);
        return rc;
    }
    if (rc)
        return rc;
    core->st.readings += n;
    dev->readings += n;
    return GW_OK;
}

/* The status keeps the last value; a metric seen for the first time goes into
 * the device's birth message. */
static void note_reading(gw_core *core, gw_device *dev, const gw_reading *r)
{
    gw_status_note_reading(dev, r);
    if (gw_status_metric_at(dev, dev->meta_metrics, NULL)) { /* a new metric: tell the platform */
        dev->meta_metrics++;
        gw_birth_mark(core->birth, dev);
    }
}

/* The gathered readings as one row (gw_core_batch_begin). */
static void batch_flush(gw_core *core)
{
    struct gw_batch *b = &core->batch;
    if (!b->n)
        return;
    int rc = gw_store_put(core->store, GW_LANE_TELE, GW_KIND_READING, b->seq, b->buf, b->len);
    accepted(core, b->dev, b->n, rc);
    b->n = b->len = 0;
    b->dev = NULL;
}

int gw_core_reading(gw_core *core, gw_device *dev, gw_reading *r)
{
    gw_strlcpy(r->device, dev->conf.id, sizeof(r->device));
    if (!r->recv_ms)
        r->recv_ms = gw_now_ms();
    const gw_store_config *sc = &core->cfg.store;
    if (r->obs_ms && ((sc->obs_max_age > 0 && r->obs_ms < r->recv_ms - sc->obs_max_age) ||
                      (sc->obs_max_ahead > 0 && r->obs_ms > r->recv_ms + sc->obs_max_ahead))) {
        /* A replayed or mis-clocked report: the platform would file it far
         * from where it belongs. */
        core->st.obs_refused++;
        GW_LOG_RL(GW_LOG_WARN, 10000, "pipeline",
                  "%s: reading observed %+lld s from now refused (store.obs_max_age/ahead)",
                  dev->conf.id, (long long)((r->obs_ms - r->recv_ms) / 1000));
        return GW_EINVAL;
    }
    r->seq = ++core->seq;
    gw_alarms_reading(core->alarms, dev, r);
    gw_json_dev jd;
    gw_birth_jdev(dev, &jd);
    int n = gw_json_reading(core->buf, sizeof(core->buf), core->cfg.gateway_id, &jd, r);
    if (n < 0) {
        core->st.encode_errors++;
        return n;
    }
    struct gw_batch *b = &core->batch;
    if (b->depth > 0) {
        if (b->n && (b->dev != dev || b->len + 1 + (size_t)n > sizeof(b->buf)))
            batch_flush(core);
        if ((size_t)n < sizeof(b->buf)) {
            if (b->n)
                b->buf[b->len++] = ',';
            memcpy(b->buf + b->len, core->buf, (size_t)n);
            b->len += (size_t)n;
            b->n++;
            b->dev = dev;
            b->seq = r->seq;
            note_reading(core, dev, r);
            return GW_OK;
        }
    }
    int rc = gw_store_put(core->store, GW_LANE_TELE, GW_KIND_READING, r->seq, core->buf, (size_t)n);
    if (accepted(core, dev, 1, rc) != GW_OK)
        return rc;
    note_reading(core, dev, r);
    GW_DEBUG("pipeline", "%s %s=%g %s %s", r->device, r->metric, r->value, r->unit,
             gw_quality_name(r->quality));
    return GW_OK;
}

void gw_core_batch_begin(gw_core *core)
{
    core->batch.depth++;
}

void gw_core_batch_end(gw_core *core)
{
    if (core->batch.depth > 0 && --core->batch.depth == 0)
        batch_flush(core);
}

int gw_core_event(gw_core *core, gw_device *dev, gw_event *e)
{
    gw_strlcpy(e->device, dev->conf.id, sizeof(e->device));
    if (!e->recv_ms)
        e->recv_ms = gw_now_ms();
    e->seq = ++core->seq;
    gw_json_dev jd;
    gw_birth_jdev(dev, &jd);
    int n = gw_json_event(core->buf, sizeof(core->buf), core->cfg.gateway_id, &jd, e);
    if (n < 0) {
        core->st.encode_errors++;
        return n;
    }
    core->st.events++;
    int state = !strcmp(e->kind, "online") || !strcmp(e->kind, "offline");
    if (!state) /* gateway/liveness.c logs a change of state, bounded for a fleet */
        GW_INFO("pipeline", "event %s %s%s", e->device, e->kind, e->active ? "" : " (ended)");
    int rc = gw_store_put(core->store, GW_LANE_PRIO, GW_KIND_EVENT, e->seq, core->buf, (size_t)n);
    gw_alarms_event(core->alarms, dev, e);
    if (state)
        gw_birth_mark(core->birth, dev); /* its retained `online` changed */
    return rc;
}

int gw_core_alarm(gw_core *core, gw_alarm *a, const gw_json_alarm_ext *x)
{
    a->seq = ++core->seq;
    int n = gw_json_alarm(core->buf, sizeof(core->buf), core->cfg.gateway_id, a, x);
    if (n < 0) {
        core->st.encode_errors++;
        return n;
    }
    core->st.alarms++;
    GW_INFO("pipeline", "alarm %s %s level %s value %g", a->id, gw_alarm_state_name(a->state),
            gw_level_name(a->level), a->value);
    return gw_store_put(core->store, GW_LANE_PRIO, GW_KIND_ALARM, a->seq, core->buf, (size_t)n);
}

/* A forecast goes to the priority lane like an alarm, on its own topic, so a
 * consumer of /alarms never mistakes a pre-warning for an alarm. */
static int core_forecast(gw_core *core, gw_alarm *a, const gw_forecast *f)
{
    a->seq = ++core->seq;
    int n = gw_json_forecast(core->buf, sizeof(core->buf), core->cfg.gateway_id, a, f);
    if (n < 0) {
        core->st.encode_errors++;
        return n;
    }
    GW_INFO("pipeline", "forecast %s %s level %s crossing in %.1f min%s%s", a->id,
            a->state == GW_ALARM_CLEARED ? "withdrawn" : gw_alarm_state_name(a->state),
            gw_level_name(a->level), (double)(f->crossing_ms - a->at_ms) / 60000.0,
            a->detail[0] ? ": " : "", a->detail);
    return gw_store_put(core->store, GW_LANE_PRIO, GW_KIND_FORECAST, a->seq, core->buf, (size_t)n);
}

int gw_core_seen_report(gw_core *core, gw_device *dev, const char *key)
{
    if (!gw_store_seen(core->store, dev->conf.id, key))
        return 0;
    core->st.replays++;
    GW_LOG_RL(GW_LOG_INFO, 10000, "pipeline", "%s: report %.80s already stored: resend not stored",
              dev->conf.id, key);
    return 1;
}

void gw_core_forget_report(gw_core *core, gw_device *dev, const char *key)
{
    gw_store_forget(core->store, dev->conf.id, key);
}

int gw_core_state_put(gw_core *core, const char *key, const void *val, size_t len)
{
    return core->store ? gw_store_state_put(core->store, key, val, len) : GW_EINVAL;
}

int gw_core_state_get(gw_core *core, const char *key, void **val, size_t *len)
{
    return core->store ? gw_store_state_get(core->store, key, val, len) : GW_ENOTFOUND;
}

/* An event about the gateway itself (its outbox, an audit): device = the
 * gateway id, type "gateway". Priority lane, like every event. extra, when
 * given, is a JSON object added as member "audit". */
static int gateway_event_x(gw_core *core, const char *kind, int active, const char *detail,
                           const char *extra)
{
    gw_event e;
    memset(&e, 0, sizeof(e));
    gw_strlcpy(e.device, core->cfg.gateway_id, sizeof(e.device));
    gw_strlcpy(e.kind, kind, sizeof(e.kind));
    gw_strlcpy(e.detail, detail, sizeof(e.detail));
    e.active = (uint8_t)active;
    e.recv_ms = gw_now_ms();
    e.seq = ++core->seq;
    gw_json_dev jd = {.type = "gateway"};
    int n = gw_json_event(core->buf, sizeof(core->buf), core->cfg.gateway_id, &jd, &e);
    size_t xl = extra ? strlen(extra) : 0;
    if (n < 0 || (size_t)n + xl + 12 > sizeof(core->buf)) {
        core->st.encode_errors++;
        return GW_EFULL;
    }
    if (extra) /* the object's closing brace moves behind the new member */
        n += snprintf(core->buf + n - 1, sizeof(core->buf) - (size_t)n + 1, ",\"audit\":%s}",
                      extra) -
             1;
    core->st.events++;
    if (!extra)
        GW_INFO("pipeline", "event %s %s%s: %s", e.device, kind, active ? "" : " (ended)", detail);
    return gw_store_put(core->store, GW_LANE_PRIO, GW_KIND_EVENT, e.seq, core->buf, (size_t)n);
}

static void gateway_event(gw_core *core, const char *kind, int active, const char *detail)
{
    gateway_event_x(core, kind, active, detail, NULL);
}

/* The outbox's disk-full state changed: tell the platform when it is over
 * (the raise is queued too, and goes out with it once there is room). */
static void on_store_state(void *ctx, int full, int64_t ms, uint64_t failures)
{
    gw_core *core = ctx;
    char detail[GW_DETAIL_MAX];
    if (full)
        snprintf(detail, sizeof(detail), "outbox commits fail: disk full");
    else
        snprintf(detail, sizeof(detail), "disk full for %lld ms, %llu commit attempts failed",
                 (long long)ms, (unsigned long long)failures);
    gateway_event(core, "disk_full", full, detail);
}

/* ---- Registry ---- */

struct gw_shared {
    char name[512]; /* a profile may be named by its path */
    gw_core_load_fn load;
    void (*release)(void *obj);
    void *obj;
};

void *gw_core_shared(gw_core *core, const char *name, gw_core_load_fn load,
                     void (*release)(void *obj), char *err, size_t errlen)
{
    for (size_t i = 0; i < core->nshared; i++)
        if (core->shared[i].load == load && strcmp(core->shared[i].name, name) == 0)
            return core->shared[i].obj;
    if (strlen(name) >= sizeof(core->shared[0].name)) {
        snprintf(err, errlen, "name '%.64s...' is too long", name);
        return NULL;
    }
    struct gw_shared *ns = realloc(core->shared, (core->nshared + 1) * sizeof(*ns));
    if (!ns) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    core->shared = ns;
    void *obj = load(core, name, err, errlen);
    if (!obj)
        return NULL;
    struct gw_shared *e = &core->shared[core->nshared++];
    gw_strlcpy(e->name, name, sizeof(e->name));
    e->load = load;
    e->release = release;
    e->obj = obj;
    return obj;
}

static void shared_free(gw_core *core)
{
    for (size_t i = 0; i < core->nshared; i++)
        core->shared[i].release(core->shared[i].obj);
    free(core->shared);
    core->shared = NULL;
    core->nshared = 0;
}

static void device_free(gw_device *d)
{
    if (d) {
        gw_status_device_free(d);
        free(d->proto_conf);
        free(d);
    }
}

/* Prepares (without starting) a device from its config. */
static gw_device *device_new(gw_core *core, const gw_device_conf *dc, char *err, size_t errlen)
{
    /* The device keeps its settings' text after the config is gone. */
    gw_device *d = calloc(1, sizeof(*d) + gw_device_conf_extra(dc));
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    gw_device_conf_pack(&d->conf, dc, d + 1);
    d->core = core;
    d->online = -1;
    d->interval_ms = dc->interval_ms;
    d->proto = gw_protocol_find(dc->protocol);
    if (dc->proto_conf_size) {
        d->proto_conf = malloc(dc->proto_conf_size);
        if (!d->proto_conf) {
            snprintf(err, errlen, "out of memory");
            free(d);
            return NULL;
        }
        memcpy(d->proto_conf, dc->proto_conf, dc->proto_conf_size);
    }
    d->conf.proto_conf = NULL; /* the config's copy is not ours */
    d->meta_pending = ~0u;     /* a new or changed device: its birth message goes out */
    if (d->proto->check_device) {
        char perr[512];
        if (d->proto->check_device(d, perr, sizeof(perr))) {
            snprintf(err, errlen, "%s:%d: device '%s': %s", core->cfg.source, dc->line, dc->id,
                     perr);
            device_free(d);
            return NULL;
        }
    }
    d->type = dc->type[0] ? d->conf.type : NULL;
    if (!d->type && d->proto->device_type)
        d->type = d->proto->device_type(d);
    if (!d->type)
        d->type = d->conf.protocol;
    return d;
}

static int devices_build(gw_core *core, const gw_config *cfg, gw_device ***out, char *err,
                         size_t errlen)
{
    gw_device **devs = calloc((size_t)cfg->ndevices + 1, sizeof(*devs));
    if (!devs) {
        snprintf(err, errlen, "out of memory");
        return GW_ENOMEM;
    }
    for (int i = 0; i < cfg->ndevices; i++) {
        devs[i] = device_new(core, &cfg->devices[i], err, errlen);
        if (!devs[i]) {
            for (int j = 0; j < i; j++)
                device_free(devs[j]);
            free(devs);
            return GW_EINVAL;
        }
    }
    *out = devs;
    return GW_OK;
}

int gw_core_check(const gw_config *cfg, char *err, size_t errlen)
{
    gw_core probe;
    gw_device **devs = NULL;
    void *defs = NULL;
    size_t ndefs = 0;
    memset(&probe, 0, sizeof(probe));
    probe.cfg = *cfg;
    int rc = devices_build(&probe, cfg, &devs, err, errlen);
    if (!rc)
        rc = gw_alarms_load_defs(cfg, &defs, &ndefs, err, errlen);
    free(defs);
    for (int i = 0; devs && i < cfg->ndevices; i++)
        device_free(devs[i]);
    free(devs);
    shared_free(&probe);
    return rc;
}

/* ---- Lifecycle ---- */

static void on_store_commit(void *ctx, unsigned lanes, const gw_rows *const *rows)
{
    gw_core *core = ctx;
    for (int i = 0; i < core->nuplinks; i++)
        gw_uplink_committed(core->uplinks[i], lanes, rows);
}

/* One uplink per destination, each resuming from its cursors in the outbox. */
static int uplinks_new(gw_core *core, gw_uplink_cmd_cb on_cmd, char *err, size_t errlen)
{
    int n = gw_config_ndests(&core->cfg);
    const char *names[GW_UPLINK_MAX_DESTS];
    unsigned lanes[GW_UPLINK_MAX_DESTS];
    int64_t cursors[GW_UPLINK_MAX_DESTS][GW_LANES];
    for (int i = 0; i < n; i++) {
        names[i] = gw_config_dest(&core->cfg, i)->name;
        lanes[i] = gw_uplink_lanes(gw_config_dest(&core->cfg, i));
    }
    core->uplinks = calloc((size_t)n, sizeof(*core->uplinks));
    if (!core->uplinks || gw_store_dests(core->store, names, lanes, n, cursors)) {
        snprintf(err, errlen, "out of memory");
        return GW_ENOMEM;
    }
    for (int i = 0; i < n; i++) {
        core->uplinks[i] =
            gw_uplink_new(core->loop, gw_config_dest(&core->cfg, i), core->cfg.gateway_id,
                          core->store, i, cursors[i], on_cmd, core, err, errlen);
        if (!core->uplinks[i])
            return GW_ERR;
        core->nuplinks++;
    }
    core->uplink = core->uplinks[0];
    return GW_OK;
}

static void uplinks_close(gw_core *core, int64_t timeout_ms)
{
    for (int i = 0; i < core->nuplinks; i++)
        gw_uplink_close(core->uplinks[i], timeout_ms);
    free(core->uplinks);
    core->uplinks = NULL;
    core->nuplinks = 0;
    core->uplink = NULL;
}

int gw_core_device_command(gw_core *core, const char *device, const char *verb, const char *arg,
                           char *reply, size_t replylen)
{
    gw_device *d = NULL;
    for (size_t i = 0; i < core->ndevices && !d; i++)
        if (!strcmp(core->devices[i]->conf.id, device))
            d = core->devices[i];
    if (!d) {
        snprintf(reply, replylen, "no device '%.64s'", device);
        return GW_ENOTFOUND;
    }
    if (!d->proto->command) {
        snprintf(reply, replylen, "protocol %s takes no commands", d->proto->name);
        return GW_EUNSUPPORTED;
    }
    int rc = d->proto->command(d, verb, arg ? arg : "", reply, replylen);
    GW_INFO("core", "command %.32s on %s: %s", verb, d->conf.id, rc == GW_OK ? "done" : reply);
    return rc;
}

void gw_core_command_answered(gw_core *core, gw_device *dev, const char *verb, const char *answer)
{
    gw_commands_answered(core->commands, dev->conf.id, verb, answer);
}

void gw_core_command_result(gw_core *core, gw_device *dev, const char *verb, const char *reason,
                            const char *result)
{
    gw_commands_result(core->commands, dev->conf.id, verb, reason, result);
}

/* A destination's replies go back on its own reply topic (reply_ctx is its uplink). */
static void reply_native(void *ctx, const char *json, size_t len)
{
    if (gw_uplink_reply(ctx, json, len))
        GW_LOG_RL(GW_LOG_WARN, 10000, "core", "reply to a platform command not sent%s", "");
}

/* A v5 command's replies follow its response topic and correlation data. */
static void reply_routed(void *ctx, const gw_mqttc_route *r, const char *json, size_t len)
{
    if (gw_uplink_reply_route(ctx, r, json, len))
        GW_LOG_RL(GW_LOG_WARN, 10000, "core", "reply to a platform command not sent%s", "");
}

static gw_uplink *uplink_named(gw_core *core, const char *dest)
{
    for (int i = 0; i < core->nuplinks; i++)
        if (!strcmp(gw_config_dest(&core->cfg, i)->name, dest))
            return core->uplinks[i];
    return core->uplink;
}

/* Platform commands on <prefix>/<gw>/cmd/<name> (gateway/commands.h). The
 * connection is authenticated (TLS, credentials, broker ACLs); the payload is
 * untrusted and the destination's uplink.commands says what it may run. */
static void on_command(void *ctx, const char *dest, const char *name, const char *payload,
                       size_t len, const gw_mqttc_route *route)
{
    gw_core *core = ctx;
    if (route)
        gw_commands_handle_routed(core->commands, dest, name, payload, len, route, reply_routed,
                                  uplink_named(core, dest));
    else
        gw_commands_handle(core->commands, dest, name, payload, len, NULL, reply_native,
                           uplink_named(core, dest));
}

/* A platform format's commands (gateway/platform.h), translated to ours: the
 * reply goes back through the format, in the platform's words. */
static void platform_exec(void *ctx, const char *dest, const char *name, const char *payload,
                          size_t len, const char *corr, gw_platform_reply_fn reply, void *reply_ctx)
{
    gw_core *core = ctx;
    gw_commands_handle(core->commands, dest, name, payload, len, corr, reply, reply_ctx);
}

static void log_stats(gw_core *core)
{
    gw_store_stats ss;
    gw_uplink_stats us;
    gw_store_get_stats(core->store, &ss);
    gw_uplink_get_stats(core->uplink, &us);
    size_t online = 0;
    for (size_t i = 0; i < core->ndevices; i++)
        online += core->devices[i]->online == 1;
    GW_INFO(
        "stats",
        "devices %zu (%zu online) readings %llu events %llu alarms %llu | outbox %lld+%lld rows "
        "%lld bytes, dropped %llu refused %llu | uplink %s sent %llu/%llu acked rows %llu/%llu",
        core->ndevices, online, (unsigned long long)core->st.readings,
        (unsigned long long)core->st.events, (unsigned long long)core->st.alarms,
        (long long)ss.rows[0], (long long)ss.rows[1], (long long)ss.bytes,
        (unsigned long long)ss.tele_dropped_full, (unsigned long long)(ss.tele_refused_queue),
        us.connected ? "up" : "down", (unsigned long long)us.msgs_sent[0],
        (unsigned long long)us.msgs_sent[1], (unsigned long long)us.rows_acked[0],
        (unsigned long long)us.rows_acked[1]);
    for (int i = 1; i < core->nuplinks; i++) {
        gw_uplink_get_stats(core->uplinks[i], &us);
        GW_INFO("stats", "destination %s %s sent %llu/%llu acked rows %llu/%llu backlog %lld+%lld",
                gw_uplink_name(core->uplinks[i]), us.connected ? "up" : "down",
                (unsigned long long)us.msgs_sent[0], (unsigned long long)us.msgs_sent[1],
                (unsigned long long)us.rows_acked[0], (unsigned long long)us.rows_acked[1],
                (long long)us.backlog[0], (long long)us.backlog[1]);
    }
}

static void on_stats_timer(uv_timer_t *t)
{
    log_stats(t->data);
}

static void close_done(uv_handle_t *h)
{
}

static void finish_stop(gw_core *core)
{
    log_stats(core);
    uv_timer_stop(&core->drain_timer);
    uv_close((uv_handle_t *)&core->drain_timer, close_done);
    gw_notify_close(core->notify);
    core->notify = NULL;
    gw_commands_stop(core->commands);
    uplinks_close(core, 2000);
    gw_birth_free(core->birth);
    core->birth = NULL;
    gw_localpub_free(core->localpub);
    core->localpub = NULL;
    gw_store_close(core->store);
    core->store = NULL;
    gw_commands_free(core->commands);
    core->commands = NULL;
    gw_tw_close(core->wheel); /* every device was detached when the stop began */
    core->wheel = NULL;
    for (size_t i = 0; i < core->ndevices; i++)
        device_free(core->devices[i]);
    free(core->devices);
    core->devices = NULL;
    core->ndevices = 0;
    free(core->by_addr);
    core->by_addr = NULL;
    shared_free(core);
    gw_config_free(&core->cfg);
    GW_INFO("core", "stopped");
}

static void on_drain_timer(uv_timer_t *t)
{
    gw_core *core = t->data;
    int idle = core->stop_flushed;
    for (int i = 0; i < core->nuplinks; i++)
        idle = idle && gw_uplink_idle(core->uplinks[i]);
    if (idle || gw_mono_ms() >= core->drain_deadline) {
        if (!idle)
            GW_WARN("core", "drain time over: the rest of the outbox is sent after restart");
        finish_stop(core);
    }
}

static void on_stop_flushed(void *ctx, int status)
{
    gw_core *core = ctx;
    core->stop_flushed = 1;
}

void gw_core_stop(gw_core *core)
{
    if (core->stopping)
        return;
    core->stopping = 1;
    GW_INFO("core", "stopping: devices detached, draining the outbox for up to %lld ms",
            (long long)core->cfg.shutdown_drain_ms);
    for (size_t i = 0; i < core->ndevices; i++)
        if (core->devices[i]->proto->detach)
            core->devices[i]->proto->detach(core->devices[i]);
    gw_liveness_stop(core);
    listeners_stop(core);
    gw_admin_stop(core->admin);
    core->admin = NULL;
    gw_notify_stopping(core->notify);
    gw_http_stop(core->http);
    core->http = NULL;
    gw_status_stop(core->status);
    core->status = NULL;
    gw_alarms_stop(core->alarms);
    core->alarms = NULL;
    gw_devops_stop(core);
    uv_signal_stop(&core->sig_term);
    uv_signal_stop(&core->sig_int);
    uv_signal_stop(&core->sig_hup);
    uv_close((uv_handle_t *)&core->sig_term, close_done);
    uv_close((uv_handle_t *)&core->sig_int, close_done);
    uv_close((uv_handle_t *)&core->sig_hup, close_done);
    uv_timer_stop(&core->stats_timer);
    uv_close((uv_handle_t *)&core->stats_timer, close_done);
    /* The drain clock starts now: with the disk full the flush may never
     * complete, and the store's close makes the last attempt. */
    core->drain_deadline = gw_mono_ms() + core->cfg.shutdown_drain_ms;
    uv_timer_start(&core->drain_timer, on_drain_timer, 0, 20);
    if (gw_store_flush(core->store, on_stop_flushed, core))
        on_stop_flushed(core, GW_ERR);
}

/* Field by field: the text fields are compared as strings, since the bytes
 * after a string's end are whatever the parser's stack held (a memcmp of the
 * whole struct called every device of an unchanged file changed). */
static int same_about(const gw_device_about *x, const gw_device_about *y)
{
    if (x == y)
        return 1;
    if (strcmp(x->site, y->site) || x->has_location != y->has_location || x->lon != y->lon ||
        x->lat != y->lat || x->ngroups != y->ngroups || x->nparams != y->nparams ||
        strcmp(x->site_id, y->site_id) || strcmp(x->division, y->division) ||
        strcmp(x->site_address, y->site_address) || strcmp(x->vendor, y->vendor) ||
        strcmp(x->model, y->model))
        return 0;
    for (int i = 0; i < x->ngroups; i++)
        if (strcmp(x->groups[i], y->groups[i]))
            return 0;
    for (int i = 0; i < x->nparams; i++)
        if (strcmp(x->param_keys[i], y->param_keys[i]) || x->param_vals[i] != y->param_vals[i])
            return 0;
    return 1;
}

static int same_conf(const gw_device_conf *x, const gw_device_conf *y)
{
    return !strcmp(x->id, y->id) && !strcmp(x->type, y->type) &&
           !strcmp(x->protocol, y->protocol) && !strcmp(x->profile, y->profile) &&
           !strcmp(x->connect, y->connect) && !strcmp(x->address, y->address) &&
           x->unit == y->unit && x->interval_ms == y->interval_ms &&
           x->timeout_ms == y->timeout_ms && x->retries == y->retries &&
           x->offline_after == y->offline_after && x->proto_conf_size == y->proto_conf_size &&
           same_about(x->about, y->about);
}

static int same_device(const gw_device *a, const gw_device *b)
{
    if (!same_conf(&a->conf, &b->conf) || a->proto != b->proto)
        return 0;
    return a->conf.proto_conf_size == 0 ||
           gw_cfg_equal(a->proto->device_keys, a->proto_conf, b->proto_conf);
}

/* ---- Address index for listener protocols ---- */

static uint64_t hash2(const char *a, const char *b)
{
    uint64_t h = 1469598103934665603ull;
    for (; *a; a++)
        h = (h ^ (uint8_t)*a) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
    for (; *b; b++)
        h = (h ^ (uint8_t)*b) * 1099511628211ull;
    return h;
}

static int index_build(gw_core *core)
{
    size_t cap = 16;
    while (cap < core->ndevices * 2)
        cap *= 2;
    gw_device **t = calloc(cap, sizeof(*t));
    if (!t)
        return GW_ENOMEM;
    for (size_t i = 0; i < core->ndevices; i++) {
        gw_device *d = core->devices[i];
        if (!d->conf.address[0])
            continue;
        size_t at = hash2(d->conf.protocol, d->conf.address) & (cap - 1);
        while (t[at])
            at = (at + 1) & (cap - 1);
        t[at] = d;
    }
    free(core->by_addr);
    core->by_addr = t;
    core->by_addr_cap = cap;
    return GW_OK;
}

gw_device *gw_core_find_device(gw_core *core, const char *protocol, const char *address)
{
    if (!core->by_addr || !address[0])
        return NULL;
    size_t mask = core->by_addr_cap - 1;
    for (size_t at = hash2(protocol, address) & mask; core->by_addr[at]; at = (at + 1) & mask) {
        gw_device *d = core->by_addr[at];
        if (!strcmp(d->conf.address, address) && !strcmp(d->conf.protocol, protocol))
            return d;
    }
    return NULL;
}

gw_tw *gw_core_wheel(gw_core *core)
{
    return core->wheel;
}

size_t gw_core_device_count(const gw_core *core)
{
    return core->ndevices;
}

int gw_core_flush(gw_core *core, void (*cb)(void *ctx, int status), void *ctx)
{
    return gw_store_flush(core->store, cb, ctx);
}

/* ---- Listeners ---- */

static int listener_start(gw_core *core, struct gw_listener *l, char *err, size_t errlen)
{
    char lerr[512];
    if (l->conf.proto->listen(core, l->conf.conf, &l->state, lerr, sizeof(lerr))) {
        snprintf(err, errlen, "%s:%d: listener %s: %s", core->cfg.source, l->conf.line,
                 l->conf.proto->name, lerr);
        return GW_EINVAL;
    }
    return GW_OK;
}

static void listeners_stop(gw_core *core)
{
    for (size_t i = 0; i < core->nlisteners; i++) {
        if (core->listeners[i].state)
            core->listeners[i].conf.proto->unlisten(core->listeners[i].state);
        free(core->listeners[i].conf.conf);
    }
    free(core->listeners);
    core->listeners = NULL;
    core->nlisteners = 0;
}

/* Takes the listener configs out of cfg (the core owns them from here). */
static int listeners_take(gw_core *core, gw_config *cfg, struct gw_listener **out, size_t *n)
{
    struct gw_listener *ls = calloc((size_t)cfg->nlisteners + 1, sizeof(*ls));
    if (!ls)
        return GW_ENOMEM;
    for (int i = 0; i < cfg->nlisteners; i++) {
        ls[i].conf = cfg->listeners[i];
        cfg->listeners[i].conf = NULL;
    }
    *out = ls;
    *n = (size_t)cfg->nlisteners;
    return GW_OK;
}

/* SIGHUP: load the file again; if it is good, apply device and rule changes.
 * A bad file leaves everything running as it was. */
static void reload(gw_core *core)
{
    char err[1024];
    gw_config next;
    if (!core->config_path[0]) {
        GW_WARN("core", "SIGHUP: running on the embedded default; nothing to reload");
        return;
    }
    if (gw_config_load(&next, core->config_path, err, sizeof(err))) {
        GW_ERROR("core", "SIGHUP: %s; keeping the running configuration", err);
        return;
    }
    if (strcmp(next.gateway_id, core->cfg.gateway_id) ||
        memcmp(&next.store, &core->cfg.store, sizeof(next.store)) ||
        memcmp(&next.uplink, &core->cfg.uplink, sizeof(next.uplink)) ||
        next.ndests != core->cfg.ndests ||
        (next.ndests &&
         memcmp(next.dests, core->cfg.dests, (size_t)next.ndests * sizeof(*next.dests))))
        GW_WARN("core", "SIGHUP: gateway, store, uplink and destinations changes take effect after "
                        "a restart");
    /* Build the new registry before touching the old one. */
    gw_config saved = core->cfg;
    core->cfg = next; /* profile_dirs of the new file */
    gw_device **devs;
    int rc = devices_build(core, &next, &devs, err, sizeof(err));
    core->cfg = saved;
    if (!rc && (rc = gw_alarms_reload(core->alarms, &next, err, sizeof(err)))) {
        for (int i = 0; i < next.ndevices; i++)
            device_free(devs[i]);
        free(devs);
    }
    if (rc) {
        GW_ERROR("core", "SIGHUP: %s; keeping the running configuration", err);
        gw_config_free(&next);
        return;
    }
    size_t kept = 0, added = 0, removed = 0;
    for (int i = 0; i < next.ndevices; i++) {
        for (size_t j = 0; j < core->ndevices; j++) {
            gw_device *old = core->devices[j];
            if (old && same_device(old, devs[i])) {
                device_free(devs[i]);
                devs[i] = old;
                core->devices[j] = NULL;
                kept++;
                break;
            }
        }
    }
    for (size_t j = 0; j < core->ndevices; j++) {
        if (core->devices[j]) {
            int stays = 0; /* a changed device keeps its id: no clear, a new birth */
            for (int i = 0; i < next.ndevices && !stays; i++)
                stays = !strcmp(devs[i]->conf.id, core->devices[j]->conf.id);
            if (!stays)
                gw_birth_gone(core->birth, core->devices[j]->conf.id);
            if (core->devices[j]->proto->detach)
                core->devices[j]->proto->detach(core->devices[j]);
            device_free(core->devices[j]);
            removed++;
        }
    }
    free(core->devices);
    core->devices = devs;
    core->ndevices = (size_t)next.ndevices;
    index_build(core);
    for (size_t i = 0; i < core->ndevices; i++) {
        if (!devs[i]->proto_state && devs[i]->proto->attach) {
            if (devs[i]->proto->attach(core, devs[i], err, sizeof(err)))
                GW_ERROR("core", "SIGHUP: %s", err);
            else
                added++;
        }
    }
    /* Listeners: keep the unchanged ones running, restart the others. */
    struct gw_listener *nl;
    size_t nn;
    if (listeners_take(core, &next, &nl, &nn) == GW_OK) {
        for (size_t i = 0; i < nn; i++) {
            for (size_t j = 0; j < core->nlisteners; j++) {
                struct gw_listener *ol = &core->listeners[j];
                if (ol->state && ol->conf.proto == nl[i].conf.proto &&
                    ol->conf.conf_size == nl[i].conf.conf_size &&
                    !memcmp(ol->conf.conf, nl[i].conf.conf, ol->conf.conf_size)) {
                    nl[i].state = ol->state;
                    ol->state = NULL;
                    break;
                }
            }
        }
        listeners_stop(core);
        core->listeners = nl;
        core->nlisteners = nn;
        for (size_t i = 0; i < nn; i++)
            if (!nl[i].state && listener_start(core, &nl[i], err, sizeof(err)))
                GW_ERROR("core", "SIGHUP: %s", err);
    }
    /* Keep the running store/uplink settings; take everything else. */
    next.store = saved.store;
    next.uplink = saved.uplink;
    free(next.dests); /* the running destinations stay, with the config they run on */
    next.dests = saved.dests;
    next.ndests = saved.ndests;
    core->cfg.dests = NULL;
    memcpy(next.gateway_id, saved.gateway_id, sizeof(next.gateway_id));
    gw_config_free(&core->cfg);
    core->cfg = next;
    release_parsed(&core->cfg);
    gw_log_level = core->cfg.log_level;
    gw_birth_inventory(core->birth); /* and the births of new and changed devices */
    GW_INFO("core", "SIGHUP: configuration reloaded: %zu devices kept, %zu started, %zu stopped",
            kept, added, removed);
}

static void on_signal(uv_signal_t *s, int signum)
{
    gw_core *core = s->data;
    if (signum == SIGHUP)
        reload(core);
    else
        gw_core_stop(core);
}

/* Once devices and rules are built from it, the parsed YAML and the device
 * table of the config are not needed: with 10,000 devices they are most of
 * the memory. Devices keep their own copy of their settings. */
static void release_parsed(gw_config *cfg)
{
    gw_config_drop_parsed(cfg);
}

static int mkdirs(const char *path)
{
    char tmp[256];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0750) && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    if (mkdir(tmp, 0750) && errno != EEXIST)
        return -1;
    return 0;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        GW_INFO("core", "open file limit %llu", (unsigned long long)rl.rlim_cur);
}

/* The alarm glue's view of the core (gateway/alarms.h). */
static gw_device *const *env_devices(void *ctx, size_t *n)
{
    gw_core *core = ctx;
    *n = core->ndevices;
    return core->devices;
}

static void env_describe(void *ctx, const gw_device *d, const char *metric, gw_json_dev *jd,
                         const char **unit)
{
    const char *m, *u;
    gw_birth_jdev(d, jd);
    *unit = NULL;
    for (int i = 0; (m = gw_status_metric_at(d, i, &u)) != NULL; i++)
        if (!strcmp(m, metric))
            *unit = u;
}

static int env_alarm(void *ctx, gw_alarm *al, const gw_json_alarm_ext *x)
{
    return gw_core_alarm(ctx, al, x);
}

int gw_core_publish_meta(gw_core *core, const char *device)
{
    if (!device) {
        gw_birth_inventory(core->birth);
        return GW_OK;
    }
    for (size_t i = 0; i < core->ndevices; i++)
        if (!strcmp(core->devices[i]->conf.id, device)) {
            gw_birth_mark(core->birth, core->devices[i]);
            gw_birth_kick(core->birth);
            return GW_OK;
        }
    return GW_ENOTFOUND;
}

static int env_forecast(void *ctx, gw_alarm *al, const gw_forecast *f)
{
    return core_forecast(ctx, al, f);
}

static int env_write(void *ctx, const char *device, const char *point, double value,
                     const char *rule)
{
    return gw_devops_write(ctx, device, point, value, rule);
}

static int env_interval(void *ctx, const char *device, int64_t interval_ms)
{
    return gw_devops_interval(ctx, device, interval_ms);
}

/* The commands' view (gateway/commands.h). */
static int env_poll(void *ctx, gw_device *dev)
{
    return gw_devops_interval(ctx, dev->conf.id, dev->interval_ms);
}

static int env_publish_meta(void *ctx, gw_device *dev)
{
    return gw_core_publish_meta(ctx, dev ? dev->conf.id : NULL);
}

static int env_audit(void *ctx, const char *detail, const char *audit)
{
    return gateway_event_x(ctx, "audit", 0, detail, audit);
}

static int env_flush(void *ctx, void (*cb)(void *cbctx, int status), void *cbctx)
{
    return gw_core_flush(ctx, cb, cbctx);
}

/* The status's view (gateway/status.h): the parts that come and go. */
static void env_admin_json(void *ctx, gw_sbuf *b)
{
    gw_core *core = ctx;
    if (core->admin)
        gw_admin_stats_json(core->admin, b);
}

static void env_http_metrics(void *ctx, gw_sbuf *b)
{
    gw_core *core = ctx;
    if (core->http)
        gw_http_metrics(core->http, b);
}

static void env_listeners(void *ctx,
                          void (*each)(const struct gw_protocol *p, void *state, void *arg),
                          void *arg)
{
    gw_core *core = ctx;
    for (size_t i = 0; i < core->nlisteners; i++)
        each(core->listeners[i].conf.proto, core->listeners[i].state, arg);
}

/* The admin socket's (gateway/admin.h). */
static int env_command(void *ctx, const char *device, const char *verb, const char *arg,
                       char *reply, size_t replylen)
{
    return gw_core_device_command(ctx, device, verb, arg, reply, replylen);
}

int gw_core_start(gw_core *core, uv_loop_t *loop, gw_config *cfg, const char *config_path,
                  char *err, size_t errlen)
{
    memset(core, 0, sizeof(*core));
    core->loop = loop;
    core->cfg = *cfg;
    memset(cfg, 0, sizeof(*cfg));
    snprintf(core->config_path, sizeof(core->config_path), "%s", config_path ? config_path : "");
    gw_log_level = core->cfg.log_level;
    gw_log_set_format(core->cfg.log_format);
    raise_nofile();

    if (mkdirs(core->cfg.data_dir)) {
        snprintf(err, errlen, "gateway.data_dir %s: %s", core->cfg.data_dir, strerror(errno));
        goto error;
    }
    core->wheel = gw_tw_new(loop);
    if (!core->wheel) {
        snprintf(err, errlen, "out of memory");
        goto error;
    }
    if (devices_build(core, &core->cfg, &core->devices, err, errlen))
        goto error;
    core->ndevices = (size_t)core->cfg.ndevices;
    gw_config_drop_devices(&core->cfg); /* less memory at the start-up peak */
    core->store = gw_store_open(loop, &core->cfg.store, on_store_commit, core, err, errlen);
    if (!core->store)
        goto error;
    core->seq = gw_store_last_seq(core->store);
    gw_store_on_state(core->store, on_store_state, core);
    if (gw_store_open_note(core->store))
        gateway_event(core, "outbox_corrupt", 1, gw_store_open_note(core->store));
    if (core->cfg.local_mqtt.uri[0]) {
        core->localpub = gw_localpub_new(&core->cfg.local_mqtt, core->cfg.gateway_id, err, errlen);
        if (!core->localpub)
            goto error;
    }
    if (gw_devops_start(core)) {
        snprintf(err, errlen, "out of memory");
        goto error;
    }
    gw_alarms_env env = {.loop = loop,
                         .store = core->store,
                         .localpub = core->localpub,
                         .cfg = &core->cfg,
                         .ctx = core,
                         .devices = env_devices,
                         .alarm = env_alarm,
                         .forecast = env_forecast,
                         .write = env_write,
                         .describe = env_describe,
                         .set_interval = env_interval};
    core->alarms = gw_alarms_start(&env, err, errlen);
    if (!core->alarms)
        goto error;
    gw_commands_env cenv = {.loop = loop,
                            .alarms = core->alarms,
                            .gateway_id = core->cfg.gateway_id,
                            .ctx = core,
                            .devices = env_devices,
                            .device_command = env_command,
                            .poll = env_poll,
                            .publish_meta = env_publish_meta,
                            .audit = env_audit,
                            .flush = env_flush};
    core->commands = gw_commands_new(&cenv);
    int denied = !core->commands ||
                 gw_commands_allow(core->commands, "local", ~0u); /* the admin socket: owner only */
    for (int i = 0; !denied && i < gw_config_ndests(&core->cfg); i++)
        denied = gw_commands_allow(core->commands, gw_config_dest(&core->cfg, i)->name,
                                   gw_config_dest(&core->cfg, i)->commands) != GW_OK;
    if (denied) {
        snprintf(err, errlen, "out of memory");
        goto error;
    }
    if (uplinks_new(core, on_command, err, errlen))
        goto error;
    for (int i = 0; i < core->nuplinks; i++)
        gw_uplink_set_commands(core->uplinks[i], platform_exec, core);
    core->birth = gw_birth_new(core->cfg.gateway_id, env_devices, core);
    for (int i = 0; core->birth && i < core->nuplinks; i++)
        if (gw_birth_attach(core->birth, core->uplinks[i]))
            goto nomem;
    if (!core->birth) {
    nomem:
        snprintf(err, errlen, "out of memory");
        goto error;
    }
    gw_status_env senv = {.loop = loop,
                          .cfg = &core->cfg,
                          .counts = &core->st,
                          .stopping = &core->stopping,
                          .store = core->store,
                          .uplink = core->uplink,
                          .uplinks = core->uplinks,
                          .nuplinks = core->nuplinks,
                          .alarms = core->alarms,
                          .commands = core->commands,
                          .ctx = core,
                          .devices = env_devices,
                          .admin_json = env_admin_json,
                          .http_metrics = env_http_metrics,
                          .listeners = env_listeners};
    core->status = gw_status_start(&senv);
    if (!core->status) {
        snprintf(err, errlen, "out of memory");
        goto error;
    }
    if (index_build(core) || gw_liveness_start(core)) {
        snprintf(err, errlen, "out of memory");
        goto error;
    }
    for (size_t i = 0; i < core->ndevices; i++) {
        gw_device *d = core->devices[i];
        if (d->proto->attach && d->proto->attach(core, d, err, errlen)) {
            for (size_t j = 0; j < i; j++)
                if (core->devices[j]->proto->detach)
                    core->devices[j]->proto->detach(core->devices[j]);
            goto error;
        }
    }
    if (listeners_take(core, &core->cfg, &core->listeners, &core->nlisteners)) {
        snprintf(err, errlen, "out of memory");
        goto error;
    }
    for (size_t i = 0; i < core->nlisteners; i++)
        if (listener_start(core, &core->listeners[i], err, errlen)) {
            listeners_stop(core);
            for (size_t j = 0; j < core->ndevices; j++)
                if (core->devices[j]->proto->detach)
                    core->devices[j]->proto->detach(core->devices[j]);
            goto error;
        }
    uv_signal_init(loop, &core->sig_term);
    uv_signal_init(loop, &core->sig_int);
    uv_signal_init(loop, &core->sig_hup);
    core->sig_term.data = core->sig_int.data = core->sig_hup.data = core;
    uv_signal_start(&core->sig_term, on_signal, SIGTERM);
    uv_signal_start(&core->sig_int, on_signal, SIGINT);
    uv_signal_start(&core->sig_hup, on_signal, SIGHUP);
    uv_timer_init(loop, &core->stats_timer);
    uv_timer_init(loop, &core->drain_timer);
    core->stats_timer.data = core->drain_timer.data = core;
    uv_timer_start(&core->stats_timer, on_stats_timer, STATS_INTERVAL_MS, STATS_INTERVAL_MS);
    if (core->cfg.admin_socket[0]) {
        gw_admin_env aenv = {.loop = loop,
                             .status = core->status,
                             .alarms = core->alarms,
                             .commands = core->commands,
                             .ctx = core,
                             .command = env_command};
        core->admin = gw_admin_start(&aenv, core->cfg.admin_socket, err, errlen);
        if (!core->admin)
            GW_WARN("core", "%s: running without the admin interface", err);
    }
    gw_http_env henv = {.loop = loop,
                        .status = core->status,
                        .alarms = core->alarms,
                        .data_dir = core->cfg.data_dir};
    if (core->cfg.http.enabled &&
        !(core->http = gw_http_start(&henv, &core->cfg.http, err, errlen)))
        GW_WARN("core", "%s: running without the HTTP endpoint", err);
    for (int i = 0; i < core->nuplinks; i++)
        gw_uplink_start(core->uplinks[i]);
    release_parsed(&core->cfg);
    GW_INFO("core", "gateway %s started from %s: %zu devices, outbox %s (%llu last sequence)",
            core->cfg.gateway_id, core->cfg.source, core->ndevices, core->cfg.store.path,
            (unsigned long long)core->seq);
    core->notify = gw_notify_ready(loop, "running");
    return GW_OK;
error:
    gw_status_stop(core->status);
    core->status = NULL;
    gw_liveness_stop(core);
    gw_tw_close(core->wheel);
    core->wheel = NULL;
    if (core->alarms)
        gw_alarms_stop(core->alarms);
    core->alarms = NULL;
    gw_devops_stop(core);
    gw_localpub_free(core->localpub);
    core->localpub = NULL;
    uplinks_close(core, 0);
    gw_birth_free(core->birth);
    core->birth = NULL;
    if (core->store)
        gw_store_close(core->store);
    gw_commands_free(core->commands);
    core->commands = NULL;
    if (core->devices)
        for (size_t i = 0; i < core->ndevices; i++)
            device_free(core->devices[i]);
    free(core->devices);
    free(core->by_addr);
    shared_free(core);
    gw_config_free(&core->cfg);
    return GW_ERR;
}

uv_loop_t *gw_core_loop(gw_core *core)
{
    return core->loop;
}

const gw_config *gw_core_config(const gw_core *core)
{
    return &core->cfg;
}
