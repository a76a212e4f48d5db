/* The gateway's own status for the admin socket, the HTTP API and /metrics
 * (see status.h). Everything is read on the loop thread at the moment of the
 * request: no copies of the counters are kept here. */
#include "gateway/status.h"

#include "gateway/alarms.h"
#include "gateway/commands.h"
#include "gateway/config.h"
#include "gateway/device.h"
#include "gateway/store.h"
#include "gateway/uplink.h"
#include "base/log.h"
#include "protocols/protocol.h"

#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define PROBE_MS 1000  /* loop-lateness probe period: an idle gateway's only regular wake-up */
#define SAMPLE_MS 1000 /* outbox commit-time samples, at most this often */
#define SAMPLES 8192   /* per lane: over two hours of continuous commits */
#define STALL_WINDOW_MS 10000
#define LAST_MAX 16  /* last values kept per device */
#define TYPES_MAX 64 /* distinct device types listed for the filter */

/* Loop lateness buckets (ms), Prometheus histogram style (cumulative at output). */
static const double late_le[] = {1, 5, 10, 25, 50, 100, 250, 500, 1000, 5000};
#define NLATE (sizeof(late_le) / sizeof(late_le[0]))

struct sample {
    uint64_t total; /* rows ever in the lane (held at start + committed since) up to then */
    int64_t ms;     /* wall time of the sample */
};

struct gw_status {
    gw_status_env env; /* what the core gave at start */
    uv_timer_t probe;
    uint64_t expect_ns;
    uint64_t late_count[NLATE + 1];
    double late_sum_s;
    uint64_t late_n;
    int64_t stall_max_ms, stall_prev_max_ms, stall_window_start;
    int64_t uplink_down_since; /* wall ms; 0 while connected */
    uint64_t commits_seen, puts_at_commit;
    int64_t commit_change_ms;
    int64_t started_ms;
    /* Outbox oldest-row estimate: a ring of samples per lane. */
    struct sample ring[GW_LANES][SAMPLES];
    size_t head[GW_LANES], n[GW_LANES];
    uint64_t base[GW_LANES];
    int based;
    int64_t last_sample_ms;
};

/* A metric name with its unit, kept once for every device that reports it
 * (names[]) so that a last value is 24 bytes, not 72 with its own copies. */
struct lv_name {
    char metric[GW_KEY_MAX];
    char unit[GW_UNIT_MAX];
};
#define NAMES_MAX 4096        /* distinct metric/unit pairs shown; more are not */
static struct lv_name *names; /* loop thread only; process lifetime, like the table of protocols */
static int nnames, names_cap;

/* The gateway's own status struct; status.c is its only user. 16 bytes, not
 * 24: the receive time, the name's index, quality and reason share one word
 * (10,000 devices of 16 metrics: 1.25 MiB less; docs/design.md "Measured"). */
struct gw_last {
    double value;
    uint64_t packed; /* at_ms | name << 46 | quality << 58 | reason << 60 */
};
#define AT_BITS 46 /* wall ms up to the year 4199 */
#define AT_MAX ((INT64_C(1) << AT_BITS) - 1)
_Static_assert(NAMES_MAX <= 1 << 12, "a name index takes 12 bits");
_Static_assert(GW_Q_BAD < 1 << 2 && GW_R__COUNT <= 1 << 4, "quality 2 bits, reason 4 bits");

static uint64_t last_pack(int64_t at_ms, int name, int quality, int reason)
{
    uint64_t at = at_ms < 0 ? 0 : at_ms > AT_MAX ? (uint64_t)AT_MAX : (uint64_t)at_ms;
    return at | (uint64_t)name << AT_BITS | (uint64_t)(quality & 3) << 58 |
           (uint64_t)(reason & 15) << 60;
}
static int64_t last_at(const struct gw_last *l)
{
    return (int64_t)(l->packed & (uint64_t)AT_MAX);
}
static int last_name(const struct gw_last *l)
{
    return (int)(l->packed >> AT_BITS & 0xfff);
}
static int last_quality(const struct gw_last *l)
{
    return (int)(l->packed >> 58 & 3);
}
static int last_reason(const struct gw_last *l)
{
    return (int)(l->packed >> 60 & 15);
}
/* Grown as a device shows new metrics (most have one to four), up to LAST_MAX:
 * 10,000 devices must not each carry room for sixteen. */
struct gw_last_values {
    int n, cap;
    struct gw_last v[];
};

/* ---- buffer ---- */

void gw_sbuf_put(gw_sbuf *b, const char *s, size_t n)
{
    gw_sbuf_reserve(b, n);
    if (b->oom)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void gw_sbuf_reserve(gw_sbuf *b, size_t more)
{
    if (b->oom || b->len + more + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return;
    }
    b->p = p;
    b->cap = cap;
}

void gw_sbuf_printf(gw_sbuf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(tmp)) {
        gw_sbuf_put(b, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    gw_sbuf_put(b, big, (size_t)n);
    free(big);
}

void gw_sbuf_jstr(gw_sbuf *b, const char *s)
{
    GW_SBUF_LIT(b, "\"");
    const char *run = s;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        gw_sbuf_put(b, run, (size_t)(s - run));
        char esc[8];
        if (c == '"' || c == '\\')
            snprintf(esc, sizeof(esc), "\\%c", c);
        else
            snprintf(esc, sizeof(esc), "\\u%04x", c);
        gw_sbuf_put(b, esc, strlen(esc));
        run = s + 1;
    }
    gw_sbuf_put(b, run, (size_t)(s - run));
    GW_SBUF_LIT(b, "\"");
}

void gw_sbuf_free(gw_sbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* Numbers as JSON: null when not finite. */
static void jnum(gw_sbuf *b, double v)
{
    if (v != v || v > 1e300 || v < -1e300)
        GW_SBUF_LIT(b, "null");
    else
        gw_sbuf_printf(b, "%.10g", v);
}

/* ---- last values ---- */

/* The index of (metric, unit) in names[], added when new; -1 when the table
 * is full or out of memory. */
static int name_index(const char *metric, const char *unit)
{
    for (int i = 0; i < nnames; i++)
        if (!strcmp(names[i].metric, metric) && !strcmp(names[i].unit, unit))
            return i;
    if (nnames == NAMES_MAX)
        return -1;
    if (nnames == names_cap) {
        int cap = names_cap ? names_cap * 2 : 64;
        struct lv_name *g = realloc(names, (size_t)cap * sizeof(*g));
        if (!g)
            return -1;
        names = g;
        names_cap = cap;
    }
    gw_strlcpy(names[nnames].metric, metric, sizeof(names[nnames].metric));
    gw_strlcpy(names[nnames].unit, unit, sizeof(names[nnames].unit));
    return nnames++;
}

void gw_status_note_reading(gw_device *dev, const gw_reading *r)
{
    struct gw_last_values *lv = dev->last;
    int i = 0;
    while (lv && i < lv->n && strcmp(names[last_name(&lv->v[i])].metric, r->metric) != 0)
        i++;
    int name = -1;
    if (lv && i < lv->n) {
        name = last_name(&lv->v[i]);
        if (strcmp(names[name].unit, r->unit) && (name = name_index(r->metric, r->unit)) < 0)
            return; /* the status page keeps the value it had */
    } else if ((name = name_index(r->metric, r->unit)) < 0) {
        return; /* the status page lacks this metric; the reading itself is unaffected */
    }
    if (!lv || i == lv->n) {
        if (lv && lv->n == LAST_MAX)
            return; /* bounded: the first LAST_MAX metrics of a device are shown */
        if (!lv || lv->n == lv->cap) {
            int cap = lv ? lv->cap * 2 : 2;
            if (cap > LAST_MAX)
                cap = LAST_MAX;
            struct gw_last_values *g = realloc(lv, sizeof(*g) + (size_t)cap * sizeof(g->v[0]));
            if (!g)
                return; /* the status page lacks this value; the reading itself is unaffected */
            if (!lv)
                g->n = 0;
            g->cap = cap;
            lv = dev->last = g;
        }
        memset(&lv->v[i], 0, sizeof(lv->v[i]));
        lv->n++;
    }
    struct gw_last *l = &lv->v[i];
    l->value = r->value;
    l->packed = last_pack(r->recv_ms, name, r->quality, r->reason);
}

const char *gw_status_metric_at(const gw_device *dev, int i, const char **unit)
{
    const struct gw_last_values *lv = dev->last;
    if (!lv || i < 0 || i >= lv->n)
        return NULL;
    if (unit)
        *unit = names[last_name(&lv->v[i])].unit;
    return names[last_name(&lv->v[i])].metric;
}

void gw_status_device_free(gw_device *dev)
{
    free(dev->last);
    dev->last = NULL;
}

/* ---- probe ---- */

static uint64_t puts_total(const gw_status_env *env)
{
    return env->counts->readings + env->counts->events + env->counts->alarms;
}

static void sample_outbox(gw_status *st, int64_t now)
{
    gw_store_stats ss;
    gw_store_get_stats(st->env.store, &ss);
    if (!st->based) {
        for (int l = 0; l < GW_LANES; l++)
            st->base[l] = (uint64_t)ss.rows[l] - ss.rows_in[l];
        st->based = 1;
        for (int l = 0; l < GW_LANES; l++) {
            st->ring[l][0] = (struct sample){st->base[l], now};
            st->n[l] = 1;
        }
    }
    for (int l = 0; l < GW_LANES; l++) {
        uint64_t total = st->base[l] + ss.rows_in[l];
        size_t last = (st->head[l] + st->n[l] - 1) % SAMPLES;
        if (st->ring[l][last].total == total || st->n[l] == SAMPLES)
            continue; /* nothing new, or full: later rows then look younger than they are */
        st->ring[l][(st->head[l] + st->n[l]) % SAMPLES] = (struct sample){total, now};
        st->n[l]++;
    }
}

/* Age (ms) of the oldest row held in lane, 0 when empty. The rows removed so
 * far are the oldest ones (acks and drops go first-in first-out), so the
 * oldest held row is number total - held; it was committed before the first
 * sample that counts past it. */
static int64_t oldest_age(gw_status *st, int lane, const gw_store_stats *ss, int64_t now)
{
    if (!st->based || ss->rows[lane] <= 0)
        return 0;
    uint64_t total = st->base[lane] + ss->rows_in[lane];
    uint64_t removed = total - (uint64_t)ss->rows[lane];
    /* Drop samples wholly removed; keep the one the oldest held row falls under. */
    while (st->n[lane] > 1) {
        const struct sample *next = &st->ring[lane][(st->head[lane] + 1) % SAMPLES];
        if (next->total > removed)
            break;
        st->head[lane] = (st->head[lane] + 1) % SAMPLES;
        st->n[lane]--;
    }
    const struct sample *s = &st->ring[lane][st->head[lane]];
    return now > s->ms ? now - s->ms : 0;
}

static void on_probe(uv_timer_t *t)
{
    gw_status *st = t->data;
    const gw_status_env *env = &st->env;
    uint64_t now_ns = gw_mono_ns();
    double late_ms = now_ns > st->expect_ns ? (double)(now_ns - st->expect_ns) / 1e6 : 0;
    st->expect_ns = now_ns + (uint64_t)PROBE_MS * 1000000u;
    size_t k = 0;
    while (k < NLATE && late_ms > late_le[k])
        k++;
    st->late_count[k]++;
    st->late_sum_s += late_ms / 1000.0;
    st->late_n++;
    int64_t mono = gw_mono_ms();
    if (mono - st->stall_window_start >= STALL_WINDOW_MS) {
        st->stall_prev_max_ms = st->stall_max_ms;
        st->stall_max_ms = 0;
        st->stall_window_start = mono;
    }
    if ((int64_t)late_ms > st->stall_max_ms)
        st->stall_max_ms = (int64_t)late_ms;

    int64_t now = gw_now_ms();
    if (env->uplink) {
        gw_uplink_stats us;
        gw_uplink_get_stats(env->uplink, &us);
        if (us.connected)
            st->uplink_down_since = 0;
        else if (!st->uplink_down_since)
            st->uplink_down_since = now;
    }
    if (env->store) {
        gw_store_stats ss;
        gw_store_get_stats(env->store, &ss);
        if (ss.commits != st->commits_seen || puts_total(env) == st->puts_at_commit) {
            /* Committing, or nothing to commit: not stuck. */
            st->commits_seen = ss.commits;
            st->puts_at_commit = puts_total(env);
            st->commit_change_ms = mono;
        }
        if (now - st->last_sample_ms >= SAMPLE_MS) {
            st->last_sample_ms = now;
            sample_outbox(st, now);
        }
    }
}

gw_status *gw_status_start(const gw_status_env *env)
{
    gw_status *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    st->env = *env;
    st->started_ms = gw_now_ms();
    st->uplink_down_since = st->started_ms; /* down until the first connect */
    st->commit_change_ms = st->stall_window_start = gw_mono_ms();
    st->puts_at_commit = puts_total(env);
    st->expect_ns = gw_mono_ns() + (uint64_t)PROBE_MS * 1000000u;
    uv_timer_init(env->loop, &st->probe);
    st->probe.data = st;
    uv_timer_start(&st->probe, on_probe, PROBE_MS, PROBE_MS);
    sample_outbox(st, st->started_ms);
    st->last_sample_ms = st->started_ms;
    return st;
}

static void probe_closed(uv_handle_t *h)
{
    free(h->data);
}

void gw_status_stop(gw_status *st)
{
    if (!st)
        return;
    uv_timer_stop(&st->probe);
    uv_close((uv_handle_t *)&st->probe, probe_closed);
}

/* ---- JSON ---- */

static const char *online_name(int online)
{
    return online == 1 ? "online" : online == 0 ? "offline" : "unknown";
}

/* Seconds since the device was last heard (loop time), -1 when never. */
static double seen_age_s(const gw_status_env *env, const gw_device *d)
{
    if (!d->live_seen_ms)
        return -1;
    int64_t now = (int64_t)uv_now(env->loop);
    return now > d->live_seen_ms ? (double)(now - d->live_seen_ms) / 1000.0 : 0;
}

struct health {
    int ok;
    gw_sbuf *b;
    int n;
};

static void reason(struct health *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reason(struct health *h, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    h->ok = 0;
    if (h->b) {
        if (h->n++)
            GW_SBUF_LIT(h->b, ",");
        gw_sbuf_jstr(h->b, msg);
    }
}

/* Checks every health condition, listing the failing ones as JSON strings in b (may be NULL). */
static int health_check(gw_status *st, int ready, gw_sbuf *b)
{
    struct health h = {1, b, 0};
    const gw_status_env *env = &st->env;
    const gw_http_config *hc = &env->cfg->http;
    int64_t now = gw_now_ms(), mono = gw_mono_ms();
    if (ready && *env->stopping)
        reason(&h, "stopping");
    if (!env->store) {
        reason(&h, "not running");
        return h.ok;
    }
    if (st->uplink_down_since && now - st->uplink_down_since > hc->uplink_down_ms)
        reason(&h, "uplink down for %lld s (limit %lld s)",
               (long long)((now - st->uplink_down_since) / 1000),
               (long long)(hc->uplink_down_ms / 1000));
    gw_store_stats ss;
    gw_store_get_stats(env->store, &ss);
    if (env->cfg->store.max_bytes > 0) {
        int64_t pct = ss.bytes * 100 / env->cfg->store.max_bytes;
        if (pct >= hc->outbox_percent)
            reason(&h, "outbox %lld %% full (limit %lld %%)", (long long)pct,
                   (long long)hc->outbox_percent);
    }
    if (ss.disk_full)
        reason(&h, "outbox commits fail: disk full");
    int64_t stall =
        st->stall_max_ms > st->stall_prev_max_ms ? st->stall_max_ms : st->stall_prev_max_ms;
    if (stall > hc->loop_stall_ms)
        reason(&h, "loop stalled %lld ms in the last %d s (limit %lld ms)", (long long)stall,
               STALL_WINDOW_MS / 1000 * 2, (long long)hc->loop_stall_ms);
    if (puts_total(env) != st->puts_at_commit && mono - st->commit_change_ms > hc->store_stuck_ms)
        reason(&h, "store thread stuck: no commit for %lld s with rows waiting",
               (long long)((mono - st->commit_change_ms) / 1000));
    return h.ok;
}

int gw_status_health_json(gw_status *st, int ready, gw_sbuf *b)
{
    gw_sbuf r = {0};
    int ok = health_check(st, ready, &r);
    gw_sbuf_printf(b, "{\"status\":\"%s\",\"reasons\":[", ok ? "ok" : "fail");
    if (r.len)
        gw_sbuf_put(b, r.p, r.len);
    GW_SBUF_LIT(b, "]}\n");
    gw_sbuf_free(&r);
    return ok;
}

static void alarm_json(gw_sbuf *b, const gw_alarm *a)
{
    GW_SBUF_LIT(b, "{\"id\":");
    gw_sbuf_jstr(b, a->id);
    GW_SBUF_LIT(b, ",\"rule\":");
    gw_sbuf_jstr(b, a->rule);
    GW_SBUF_LIT(b, ",\"device\":");
    gw_sbuf_jstr(b, a->device);
    GW_SBUF_LIT(b, ",\"metric\":");
    gw_sbuf_jstr(b, a->metric);
    gw_sbuf_printf(b, ",\"level\":%d,\"level_name\":\"%s\",\"acked\":%s,\"value\":", a->level,
                   gw_level_name(a->level), a->state == GW_ALARM_ACKED ? "true" : "false");
    jnum(b, a->value);
    GW_SBUF_LIT(b, ",\"threshold\":");
    jnum(b, a->threshold);
    gw_sbuf_printf(b, ",\"raised_ms\":%lld,\"at_ms\":%lld}", (long long)a->raised_ms,
                   (long long)a->at_ms);
}

struct alarm_walk {
    gw_sbuf *b;
    size_t n;
    size_t by_level[5];
};

static void alarm_each(void *ctx, const gw_alarm *a)
{
    struct alarm_walk *w = ctx;
    if (w->b) {
        if (w->n)
            GW_SBUF_LIT(w->b, ",");
        alarm_json(w->b, a);
    }
    w->n++;
    w->by_level[a->level <= 4 ? a->level : 0]++;
}

void gw_status_alarms_json(gw_status *st, gw_sbuf *b)
{
    struct alarm_walk w = {b, 0, {0}};
    GW_SBUF_LIT(b, "{\"alarms\":[");
    gw_alarms_each(st->env.alarms, alarm_each, &w);
    gw_sbuf_printf(b, "],\"active\":%zu}\n", w.n);
}

/* "destinations":[...], one object per destination with its cursor. */
static void dests_json(const gw_status_env *env, gw_sbuf *b)
{
    GW_SBUF_LIT(b, "\"destinations\":[");
    for (int i = 0; i < env->nuplinks; i++) {
        gw_uplink_stats us;
        gw_uplink_get_stats(env->uplinks[i], &us);
        gw_sbuf_printf(b, "%s{\"name\":", i ? "," : "");
        gw_sbuf_jstr(b, gw_uplink_name(env->uplinks[i]));
        gw_sbuf_printf(b,
                       ",\"connected\":%s,\"cursor_priority\":%lld,\"cursor_telemetry\":%lld,"
                       "\"backlog_priority\":%lld,\"backlog_telemetry\":%lld,\"in_flight\":%llu,"
                       "\"rows_acked\":%llu,\"items_filtered\":%llu}",
                       us.connected ? "true" : "false", (long long)us.cursor[0],
                       (long long)us.cursor[1], (long long)us.backlog[0], (long long)us.backlog[1],
                       (unsigned long long)(us.msgs_sent[0] + us.msgs_sent[1] - us.msgs_acked[0] -
                                            us.msgs_acked[1]),
                       (unsigned long long)(us.rows_acked[0] + us.rows_acked[1]),
                       (unsigned long long)us.rows_filtered);
    }
    GW_SBUF_LIT(b, "],");
}

void gw_status_json(gw_status *st, gw_sbuf *b)
{
    const gw_status_env *env = &st->env;
    size_t ndevices;
    gw_device *const *devices = env->devices(env->ctx, &ndevices);
    gw_store_stats ss;
    gw_uplink_stats us;
    memset(&ss, 0, sizeof(ss));
    memset(&us, 0, sizeof(us));
    if (env->store)
        gw_store_get_stats(env->store, &ss);
    if (env->uplink)
        gw_uplink_get_stats(env->uplink, &us);
    size_t online = 0, offline = 0;
    for (size_t i = 0; i < ndevices; i++) {
        online += devices[i]->online == 1;
        offline += devices[i]->online == 0;
    }
    uint64_t lat_n = 0;
    int lat50 = -1, lat99 = -1;
    if (env->uplink)
        gw_uplink_alarm_latency(env->uplink, &lat_n, &lat50, &lat99);
    gw_sl_stats t;
    gw_sl_totals(&t);
    struct alarm_walk w = {NULL, 0, {0}};
    gw_alarms_each(env->alarms, alarm_each, &w);
    GW_SBUF_LIT(b, "{\"gateway\":");
    gw_sbuf_jstr(b, env->cfg->gateway_id);
    gw_sbuf_printf(b,
                   ",\"devices\":%zu,\"online\":%zu,\"offline\":%zu,\"readings\":%llu,"
                   "\"events\":%llu,\"alarm_transitions\":%llu,\"active_alarms\":%zu,"
                   "\"alarms_by_level\":{\"blue\":%zu,\"yellow\":%zu,\"orange\":%zu,\"red\":%zu},"
                   "\"refused_queue_full\":%llu,",
                   ndevices, online, offline, (unsigned long long)env->counts->readings,
                   (unsigned long long)env->counts->events, (unsigned long long)env->counts->alarms,
                   w.n, w.by_level[1], w.by_level[2], w.by_level[3], w.by_level[4],
                   (unsigned long long)env->counts->refused_queue_full);
    int64_t now = gw_now_ms();
    int64_t age[GW_LANES] = {0, 0};
    for (int l = 0; l < GW_LANES && env->store; l++)
        age[l] = oldest_age(st, l, &ss, now);
    gw_sbuf_printf(b,
                   "\"outbox\":{\"rows_priority\":%lld,\"rows_telemetry\":%lld,\"bytes\":%lld,"
                   "\"max_bytes\":%lld,\"oldest_priority_s\":%.1f,\"oldest_telemetry_s\":%.1f,"
                   "\"dropped_oldest\":%llu,\"disk_full\":%s,\"commit_failures\":%llu,"
                   "\"rows_waiting\":%lld,\"shed_min_free\":%llu,\"recovered_corrupt\":%s,"
                   "\"replays\":%llu,\"obs_refused\":%llu},",
                   (long long)ss.rows[0], (long long)ss.rows[1], (long long)ss.bytes,
                   (long long)env->cfg->store.max_bytes, (double)age[0] / 1000.0,
                   (double)age[1] / 1000.0, (unsigned long long)ss.tele_dropped_full,
                   ss.disk_full ? "true" : "false", (unsigned long long)ss.commit_failures,
                   (long long)ss.rows_waiting, (unsigned long long)ss.tele_shed_floor,
                   ss.recovered ? "true" : "false", (unsigned long long)env->counts->replays,
                   (unsigned long long)env->counts->obs_refused);
    GW_SBUF_LIT(b, "\"uplink\":{\"uri\":");
    gw_sbuf_jstr(b, env->cfg->uplink.uri);
    gw_sbuf_printf(b,
                   ",\"connected\":%s,\"connects\":%llu,"
                   "\"in_flight\":%llu,\"rows_acked\":%llu,\"fetches\":%llu,\"rows_pushed\":%llu,"
                   "\"readahead_bytes\":%llu,"
                   "\"protected\":%llu,\"commands_refused\":%llu,"
                   "\"server\":\"%s\",\"failovers\":%llu,\"id_conflicts\":%llu,"
                   "\"replies_dropped\":%llu,\"mailbox_over\":%llu,"
                   "\"alarm_publish_ms\":{\"n\":%llu,\"p50\":%d,\"p99\":%d}},",
                   us.connected ? "true" : "false", (unsigned long long)us.connects,
                   (unsigned long long)(us.msgs_sent[0] + us.msgs_sent[1] - us.msgs_acked[0] -
                                        us.msgs_acked[1]),
                   (unsigned long long)(us.rows_acked[0] + us.rows_acked[1]),
                   (unsigned long long)us.fetches, (unsigned long long)us.rows_pushed,
                   (unsigned long long)us.readahead_bytes, (unsigned long long)us.protect.sealed,
                   (unsigned long long)us.commands_refused, env->cfg->uplink.servers[us.server],
                   (unsigned long long)us.failovers, (unsigned long long)us.id_conflicts,
                   (unsigned long long)us.replies_dropped, (unsigned long long)us.mailbox_over,
                   (unsigned long long)lat_n, lat50, lat99);
    dests_json(env, b);
    gw_commands_stats cm = {0};
    if (env->commands)
        gw_commands_get_stats(env->commands, &cm);
    gw_sbuf_printf(b,
                   "\"commands\":{\"handled\":%llu,\"refused\":%llu,\"audits_suppressed\":%llu},",
                   (unsigned long long)cm.handled, (unsigned long long)cm.refused,
                   (unsigned long long)cm.audits_suppressed);
    gw_sbuf_printf(b,
                   "\"connections\":{\"open\":%llu,\"unauthenticated\":%llu,\"accepted\":%llu,"
                   "\"evicted_unauth\":%llu,\"auth_timeouts\":%llu,\"idle_closed\":%llu,"
                   "\"refused_full\":%llu,\"refused_per_source\":%llu,\"refused_peer\":%llu},",
                   (unsigned long long)t.open, (unsigned long long)t.unauth,
                   (unsigned long long)t.accepted, (unsigned long long)t.evicted_unauth,
                   (unsigned long long)t.auth_timeouts, (unsigned long long)t.idle_closed,
                   (unsigned long long)t.refused_full, (unsigned long long)t.refused_per_source,
                   (unsigned long long)t.refused_peer);
    env->admin_json(env->ctx, b);
    GW_SBUF_LIT(b, "\"health\":");
    gw_status_health_json(st, 0, b);
    b->len--; /* the health object's newline */
    GW_SBUF_LIT(b, "}\n");
}

/* Case-insensitive substring. */
static int has_sub(const char *hay, const char *needle)
{
    return !needle || !*needle || strcasestr(hay, needle) != NULL;
}

static int matches(const gw_device *d, const gw_status_filter *f)
{
    if (f->type && *f->type && strcmp(d->type, f->type) != 0)
        return 0;
    if (f->state && *f->state && strcmp(online_name(d->online), f->state) != 0)
        return 0;
    if (!has_sub(d->conf.about->site, f->site))
        return 0;
    return !f->q || !*f->q || has_sub(d->conf.id, f->q) || has_sub(d->conf.about->site, f->q);
}

static void device_json(const gw_status_env *env, const gw_device *d, gw_sbuf *b)
{
    GW_SBUF_LIT(b, "{\"id\":");
    gw_sbuf_jstr(b, d->conf.id);
    GW_SBUF_LIT(b, ",\"type\":");
    gw_sbuf_jstr(b, d->type ? d->type : "");
    GW_SBUF_LIT(b, ",\"protocol\":");
    gw_sbuf_jstr(b, d->conf.protocol);
    GW_SBUF_LIT(b, ",\"site\":");
    gw_sbuf_jstr(b, d->conf.about->site);
    double age = seen_age_s(env, d);
    gw_sbuf_printf(b, ",\"state\":\"%s\",\"seen_age_s\":", online_name(d->online));
    if (age < 0)
        GW_SBUF_LIT(b, "null");
    else
        gw_sbuf_printf(b, "%.1f", age);
    gw_sbuf_printf(b, ",\"polls\":%llu,\"polls_failed\":%llu,\"readings\":%llu,\"values\":[",
                   (unsigned long long)d->polls, (unsigned long long)d->polls_failed,
                   (unsigned long long)d->readings);
    const struct gw_last_values *lv = d->last;
    int64_t now = gw_now_ms();
    for (int i = 0; lv && i < lv->n; i++) {
        const struct gw_last *l = &lv->v[i];
        int64_t at = last_at(l);
        gw_sbuf_put(b, i ? ",{\"metric\":" : "{\"metric\":", i ? 11 : 10);
        gw_sbuf_jstr(b, names[last_name(l)].metric);
        GW_SBUF_LIT(b, ",\"value\":");
        jnum(b, l->value);
        GW_SBUF_LIT(b, ",\"unit\":");
        gw_sbuf_jstr(b, names[last_name(l)].unit);
        gw_sbuf_printf(b, ",\"quality\":\"%s\",\"reason\":\"%s\",\"age_s\":%.1f}",
                       gw_quality_name(last_quality(l)), gw_reason_name(last_reason(l)),
                       now > at ? (double)(now - at) / 1000.0 : 0.0);
    }
    GW_SBUF_LIT(b, "]}");
}

void gw_status_devices_json(gw_status *st, const gw_status_filter *f, gw_sbuf *b)
{
    const gw_status_env *env = &st->env;
    size_t ndevices;
    gw_device *const *devices = env->devices(env->ctx, &ndevices);
    size_t matched = 0, shown = 0;
    const char *types[TYPES_MAX];
    size_t ntypes = 0;
    gw_sbuf_printf(b, "{\"total\":%zu,\"offset\":%zu,\"devices\":[", ndevices, f->offset);
    for (size_t i = 0; i < ndevices; i++) {
        const gw_device *d = devices[i];
        const char *ty = d->type ? d->type : "";
        size_t k = 0;
        while (k < ntypes && strcmp(types[k], ty) != 0)
            k++;
        if (k == ntypes && ntypes < TYPES_MAX)
            types[ntypes++] = ty;
        if (!matches(d, f))
            continue;
        if (matched++ < f->offset || shown >= f->limit)
            continue;
        if (shown++)
            GW_SBUF_LIT(b, ",");
        device_json(&st->env, d, b);
    }
    gw_sbuf_printf(b, "],\"matched\":%zu,\"types\":[", matched);
    for (size_t k = 0; k < ntypes; k++) {
        if (k)
            GW_SBUF_LIT(b, ",");
        gw_sbuf_jstr(b, types[k]);
    }
    GW_SBUF_LIT(b, "]}\n");
}

int gw_status_device_json(gw_status *st, const char *id, gw_sbuf *b)
{
    size_t ndevices;
    gw_device *const *devices = st->env.devices(st->env.ctx, &ndevices);
    for (size_t i = 0; i < ndevices; i++)
        if (strcmp(devices[i]->conf.id, id) == 0) {
            device_json(&st->env, devices[i], b);
            GW_SBUF_LIT(b, "\n");
            return GW_OK;
        }
    return GW_ENOTFOUND;
}

/* ---- Prometheus ---- */

static void help(gw_sbuf *b, const char *name, const char *type, const char *text)
{
    gw_sbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

/* A label value: backslash, quote and newline escaped. */
static void label(gw_sbuf *b, const char *v)
{
    const char *run = v;
    for (; *v; v++) {
        if (*v != '\\' && *v != '"' && *v != '\n')
            continue;
        gw_sbuf_put(b, run, (size_t)(v - run));
        gw_sbuf_put(b, *v == '\n' ? "\\n" : *v == '"' ? "\\\"" : "\\\\", 2);
        run = v + 1;
    }
    gw_sbuf_put(b, run, (size_t)(v - run));
}

/* Hand-rolled number formatting for the per-device lines: at 20,000 devices
 * printf was most of the render's cost. */
static char *fmt_u64(char *end, uint64_t v)
{
    do
        *--end = (char)('0' + v % 10);
    while ((v /= 10));
    return end;
}

/* " <value>\n" for an integer. */
static void put_int(gw_sbuf *b, int64_t v)
{
    char tmp[24], *end = tmp + sizeof(tmp);
    *--end = '\n';
    char *p = fmt_u64(end, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
    if (v < 0)
        *--p = '-';
    *--p = ' ';
    gw_sbuf_put(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

/* " <value>\n" for a non-negative duration in ms, as seconds with one decimal. */
static void put_secs1(gw_sbuf *b, int64_t ms)
{
    char tmp[32], *end = tmp + sizeof(tmp);
    uint64_t tenths = ms > 0 ? ((uint64_t)ms + 50) / 100 : 0;
    *--end = '\n';
    *--end = (char)('0' + tenths % 10);
    *--end = '.';
    char *p = fmt_u64(end, tenths / 10);
    *--p = ' ';
    gw_sbuf_put(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

/* Open descriptors. Since Linux 6.2 the size of /proc/self/fd is the count
 * (one stat, no matter how many are open); older kernels report 0 there and
 * the directory is read instead, at most every FD_RECOUNT_MS (it lists every
 * descriptor: at 10,000 connections that was half of a render). */
#define FD_RECOUNT_MS 10000
static long open_fds(void)
{
    static long cached = -1;
    static int64_t counted_ms;
    struct stat sb;
    if (stat("/proc/self/fd", &sb) == 0 && sb.st_size > 0)
        return (long)sb.st_size;
    int64_t now = gw_mono_ms();
    if (cached >= 0 && now - counted_ms < FD_RECOUNT_MS)
        return cached;
    DIR *dir = opendir("/proc/self/fd");
    if (!dir)
        return cached;
    long fds = 0;
    for (struct dirent *e; (e = readdir(dir));)
        fds += e->d_name[0] != '.';
    closedir(dir);
    cached = fds - 1; /* the directory's own descriptor */
    counted_ms = now;
    return cached;
}

struct proto_sum {
    const char *name;
    uint64_t devices, polls, failed, skipped, readings;
    gw_proto_counters pc;
};

static void pc_add(gw_proto_counters *sum, const gw_proto_counters *c)
{
    sum->frames += c->frames;
    sum->timeouts += c->timeouts;
    sum->crc_errors += c->crc_errors;
    sum->unknown_devices += c->unknown_devices;
    sum->malformed += c->malformed;
}

/* Listeners count what they could not give to a device (bad CRC, unknown
 * station): a protocol with listeners and no device shows too. */
struct lwalk {
    struct proto_sum *ps;
    size_t *n, cap;
};

static void listener_sum(const struct gw_protocol *p, void *state, void *arg)
{
    struct lwalk *w = arg;
    if (!p->listener_stats || !state)
        return;
    size_t k = 0;
    while (k < *w->n && strcmp(w->ps[k].name, p->name) != 0)
        k++;
    if (k == *w->n && *w->n < w->cap)
        w->ps[(*w->n)++] = (struct proto_sum){.name = p->name};
    if (k < *w->n)
        p->listener_stats(state, &w->ps[k].pc);
}

static void process_metrics(gw_status *st, gw_sbuf *b)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    long fds = open_fds();
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    help(b, "process_cpu_seconds_total", "counter", "User and system CPU time spent.");
    gw_sbuf_printf(b, "process_cpu_seconds_total %.3f\n", cpu);
    help(b, "process_resident_memory_bytes", "gauge", "Resident memory size.");
    gw_sbuf_printf(b, "process_resident_memory_bytes %lld\n",
                   (long long)rss * (long long)sysconf(_SC_PAGESIZE));
    help(b, "process_open_fds", "gauge", "Open file descriptors.");
    gw_sbuf_printf(b, "process_open_fds %ld\n", fds);
    help(b, "process_max_fds", "gauge", "Open file descriptor limit.");
    gw_sbuf_printf(b, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
    help(b, "process_start_time_seconds", "gauge", "Start time since the Unix epoch.");
    gw_sbuf_printf(b, "process_start_time_seconds %lld\n", (long long)(st->started_ms / 1000));
}

/* Per destination: connected, cursor, backlog, acknowledged rows. */
static void dests_metrics(const gw_status_env *env, gw_sbuf *b)
{
    static const char *const lane[] = {"priority", "telemetry"};
    static const char *const series[] = {"gw_destination_connected", "gw_destination_cursor",
                                         "gw_destination_backlog_rows",
                                         "gw_destination_acked_rows_total"};
    static const char *const helps[] = {
        "1 while the destination's connection is up.",
        "The destination's durable cursor by lane: every row id at or below it was "
        "acknowledged or filtered out.",
        "Outbox rows above the destination's cursor, by lane (what it still has to receive).",
        "Outbox rows the destination acknowledged."};
    for (int m = 0; m < 4; m++) {
        help(b, series[m], m == 3 ? "counter" : "gauge", helps[m]);
        for (int i = 0; i < env->nuplinks; i++) {
            gw_uplink_stats us;
            gw_uplink_get_stats(env->uplinks[i], &us);
            for (int l = 0; l < (m == 1 || m == 2 ? GW_LANES : 1); l++) {
                gw_sbuf_printf(b, "%s{destination=\"", series[m]);
                label(b, gw_uplink_name(env->uplinks[i]));
                if (m == 1 || m == 2)
                    gw_sbuf_printf(b, "\",lane=\"%s", lane[l]);
                long long v = m == 0   ? us.connected
                              : m == 1 ? us.cursor[l]
                              : m == 2 ? us.backlog[l]
                                       : (long long)(us.rows_acked[0] + us.rows_acked[1]);
                gw_sbuf_printf(b, "\"} %lld\n", v);
            }
        }
    }
}

void gw_status_metrics(gw_status *st, gw_sbuf *b)
{
    const gw_status_env *env = &st->env;
    size_t ndevices;
    gw_device *const *devices = env->devices(env->ctx, &ndevices);
    gw_store_stats ss;
    gw_uplink_stats us;
    memset(&ss, 0, sizeof(ss));
    memset(&us, 0, sizeof(us));
    if (env->store)
        gw_store_get_stats(env->store, &ss);
    if (env->uplink)
        gw_uplink_get_stats(env->uplink, &us);
    const gw_core_stats *cs = env->counts;

    help(b, "gw_items_accepted_total", "counter",
         "Items committed to the outbox queue, by kind (reading, event, alarm transition).");
    gw_sbuf_printf(b,
                   "gw_items_accepted_total{kind=\"reading\"} %llu\n"
                   "gw_items_accepted_total{kind=\"event\"} %llu\n"
                   "gw_items_accepted_total{kind=\"alarm\"} %llu\n",
                   (unsigned long long)cs->readings, (unsigned long long)cs->events,
                   (unsigned long long)cs->alarms);
    help(b, "gw_items_refused_total", "counter", "Items refused before the outbox, by reason.");
    gw_sbuf_printf(b,
                   "gw_items_refused_total{kind=\"reading\",reason=\"queue_full\"} %llu\n"
                   "gw_items_refused_total{kind=\"reading\",reason=\"observation_time\"} %llu\n"
                   "gw_items_refused_total{kind=\"report\",reason=\"replay\"} %llu\n"
                   "gw_items_refused_total{kind=\"any\",reason=\"encode_error\"} %llu\n",
                   (unsigned long long)cs->refused_queue_full, (unsigned long long)cs->obs_refused,
                   (unsigned long long)cs->replays, (unsigned long long)cs->encode_errors);
    help(b, "gw_items_dropped_total", "counter",
         "Telemetry rows dropped from the outbox (oldest first), by reason.");
    gw_sbuf_printf(b,
                   "gw_items_dropped_total{kind=\"reading\",reason=\"outbox_full\"} %llu\n"
                   "gw_items_dropped_total{kind=\"reading\",reason=\"min_free\"} %llu\n",
                   (unsigned long long)ss.tele_dropped_full,
                   (unsigned long long)ss.tele_shed_floor);

    static const char *const lane[] = {"priority", "telemetry"};
    help(b, "gw_outbox_rows", "gauge", "Rows held in the outbox, by lane.");
    for (int l = 0; l < GW_LANES; l++)
        gw_sbuf_printf(b, "gw_outbox_rows{lane=\"%s\"} %lld\n", lane[l], (long long)ss.rows[l]);
    help(b, "gw_outbox_bytes", "gauge", "Payload bytes held in the outbox (both lanes).");
    gw_sbuf_printf(b, "gw_outbox_bytes %lld\n", (long long)ss.bytes);
    help(b, "gw_outbox_max_bytes", "gauge", "The outbox bound (store.max_bytes).");
    gw_sbuf_printf(b, "gw_outbox_max_bytes %lld\n", (long long)env->cfg->store.max_bytes);
    help(b, "gw_outbox_oldest_age_seconds", "gauge",
         "Age of the oldest row held, by lane (estimate, 1 s resolution).");
    int64_t now = gw_now_ms();
    for (int l = 0; l < GW_LANES; l++)
        gw_sbuf_printf(b, "gw_outbox_oldest_age_seconds{lane=\"%s\"} %.1f\n", lane[l],
                       st && env->store ? (double)oldest_age(st, l, &ss, now) / 1000.0 : 0.0);
    help(b, "gw_outbox_committed_rows_total", "counter", "Rows committed since start, by lane.");
    for (int l = 0; l < GW_LANES; l++)
        gw_sbuf_printf(b, "gw_outbox_committed_rows_total{lane=\"%s\"} %llu\n", lane[l],
                       (unsigned long long)ss.rows_in[l]);
    help(b, "gw_outbox_commit_failures_total", "counter", "Group commits that failed (retried).");
    gw_sbuf_printf(b, "gw_outbox_commit_failures_total %llu\n",
                   (unsigned long long)ss.commit_failures);
    help(b, "gw_outbox_disk_full", "gauge", "1 while commits fail for lack of space.");
    gw_sbuf_printf(b, "gw_outbox_disk_full %d\n", ss.disk_full);

    help(b, "gw_uplink_connected", "gauge", "1 while the platform connection is up.");
    GW_SBUF_LIT(b, "gw_uplink_connected{destination=\"");
    label(b, env->cfg->uplink.uri);
    gw_sbuf_printf(b, "\"} %d\n", us.connected);
    struct {
        const char *name, *help;
        uint64_t v;
    } up[] = {
        {"gw_uplink_connects_total", "Successful connects (the first and every reconnect).",
         us.connects},
        {"gw_uplink_disconnects_total", "Connections lost.", us.disconnects},
        {"gw_uplink_in_flight", "Messages published and not yet acknowledged.",
         us.msgs_sent[0] + us.msgs_sent[1] - us.msgs_acked[0] - us.msgs_acked[1]},
        {"gw_uplink_acked_rows_total", "Outbox rows acknowledged by the platform.",
         us.rows_acked[0] + us.rows_acked[1]},
        {"gw_uplink_readahead_bytes", "Outbox rows fetched ahead of publishing, in bytes.",
         us.readahead_bytes},
        {"gw_uplink_publish_refused_total", "Publishes refused by the MQTT client (retried).",
         us.publish_refused},
        {"gw_uplink_replies_dropped_total",
         "Command replies not sent: too many already waiting in the MQTT client.",
         us.replies_dropped},
        {"gw_uplink_mailbox_over_total",
         "MQTT client events taken over its mailbox bound (acknowledgements, connection changes).",
         us.mailbox_over},
    };
    for (size_t i = 0; i < sizeof(up) / sizeof(up[0]); i++) {
        help(b, up[i].name, strstr(up[i].name, "_total") ? "counter" : "gauge", up[i].help);
        gw_sbuf_printf(b, "%s{destination=\"", up[i].name);
        label(b, env->cfg->uplink.uri);
        gw_sbuf_printf(b, "\"} %llu\n", (unsigned long long)up[i].v);
    }
    dests_metrics(env, b);
    gw_commands_stats cm = {0};
    if (env->commands)
        gw_commands_get_stats(env->commands, &cm);
    help(b, "gw_commands_handled_total", "counter", "Commands received (platforms and admin).");
    gw_sbuf_printf(b, "gw_commands_handled_total %llu\n", (unsigned long long)cm.handled);
    help(b, "gw_commands_refused_total", "counter", "Commands answered refused.");
    gw_sbuf_printf(b, "gw_commands_refused_total %llu\n", (unsigned long long)cm.refused);
    help(b, "gw_commands_audits_suppressed_total", "counter",
         "Refusals and failures over the audit rate: counted, not logged or audited.");
    gw_sbuf_printf(b, "gw_commands_audits_suppressed_total %llu\n",
                   (unsigned long long)cm.audits_suppressed);
    help(b, "gw_uplink_down_seconds", "gauge", "How long the uplink has been down (0 while up).");
    gw_sbuf_printf(b, "gw_uplink_down_seconds %.1f\n",
                   st && st->uplink_down_since ? (double)(now - st->uplink_down_since) / 1000.0
                                               : 0.0);

    /* Per protocol: the sums of the device counters. */
    struct proto_sum ps[32];
    size_t nps = 0;
    size_t online = 0, offline = 0, unknown = 0;
    for (size_t i = 0; i < ndevices; i++) {
        const gw_device *d = devices[i];
        size_t k = 0;
        while (k < nps && strcmp(ps[k].name, d->conf.protocol) != 0)
            k++;
        if (k == nps && nps < sizeof(ps) / sizeof(ps[0]))
            ps[nps++] = (struct proto_sum){.name = d->conf.protocol};
        if (k < nps) {
            ps[k].devices++;
            ps[k].polls += d->polls;
            ps[k].failed += d->polls_failed;
            ps[k].skipped += d->polls_skipped;
            ps[k].readings += d->readings;
            pc_add(&ps[k].pc, &d->pc);
        }
        online += d->online == 1;
        offline += d->online == 0;
        unknown += d->online < 0;
    }
    static const char *const pname[] = {
        "gw_protocol_devices", "gw_protocol_polls_total", "gw_protocol_poll_failures_total",
        "gw_protocol_polls_skipped_total", "gw_protocol_readings_total"};
    static const char *const phelp[] = {
        "Configured devices.", "Polls sent.", "Polls that got no valid answer (timeouts, errors).",
        "Polls skipped because the previous one was still running.", "Readings produced."};
    for (int m = 0; m < 5; m++) {
        help(b, pname[m], m ? "counter" : "gauge", phelp[m]);
        for (size_t k = 0; k < nps; k++) {
            uint64_t v = m == 0   ? ps[k].devices
                         : m == 1 ? ps[k].polls
                         : m == 2 ? ps[k].failed
                         : m == 3 ? ps[k].skipped
                                  : ps[k].readings;
            gw_sbuf_printf(b, "%s{protocol=\"%s\"} %llu\n", pname[m], ps[k].name,
                           (unsigned long long)v);
        }
    }
    /* Listeners count what they could not give to a device (bad CRC,
     * unknown station): a protocol with listeners and no device shows too. */
    struct lwalk lw = {ps, &nps, sizeof(ps) / sizeof(ps[0])};
    env->listeners(env->ctx, listener_sum, &lw);
    static const struct {
        const char *name, *help;
        size_t off;
    } pcm[] = {
        {"gw_protocol_frames_total", "Frames or messages received from devices.",
         offsetof(gw_proto_counters, frames)},
        {"gw_protocol_timeouts_total", "Requests to devices unanswered in time (every try).",
         offsetof(gw_proto_counters, timeouts)},
        {"gw_protocol_crc_errors_total", "Frames dropped for a bad checksum.",
         offsetof(gw_proto_counters, crc_errors)},
        {"gw_protocol_unknown_devices_total", "Frames from an address no device is configured for.",
         offsetof(gw_proto_counters, unknown_devices)},
        {"gw_protocol_malformed_total", "Frames or answers that did not decode.",
         offsetof(gw_proto_counters, malformed)},
    };
    for (size_t m = 0; m < sizeof(pcm) / sizeof(pcm[0]); m++) {
        help(b, pcm[m].name, "counter", pcm[m].help);
        for (size_t k = 0; k < nps; k++) {
            uint64_t v;
            memcpy(&v, (const char *)&ps[k].pc + pcm[m].off, sizeof(v));
            gw_sbuf_printf(b, "%s{protocol=\"%s\"} %llu\n", pcm[m].name, ps[k].name,
                           (unsigned long long)v);
        }
    }
    gw_sl_stats t;
    gw_sl_totals(&t);
    help(b, "gw_listener_connections", "gauge", "Device connections open on the listeners.");
    gw_sbuf_printf(b, "gw_listener_connections %llu\n", (unsigned long long)t.open);
    help(b, "gw_listener_refused_total", "counter",
         "Device connections refused or closed, by reason.");
    gw_sbuf_printf(b,
                   "gw_listener_refused_total{reason=\"full\"} %llu\n"
                   "gw_listener_refused_total{reason=\"per_source\"} %llu\n"
                   "gw_listener_refused_total{reason=\"auth_timeout\"} %llu\n"
                   "gw_listener_refused_total{reason=\"evicted_unauth\"} %llu\n"
                   "gw_listener_refused_total{reason=\"idle\"} %llu\n"
                   "gw_listener_refused_total{reason=\"peer_refused\"} %llu\n",
                   (unsigned long long)t.refused_full, (unsigned long long)t.refused_per_source,
                   (unsigned long long)t.auth_timeouts, (unsigned long long)t.evicted_unauth,
                   (unsigned long long)t.idle_closed, (unsigned long long)t.refused_peer);

    help(b, "gw_devices", "gauge", "Devices by state.");
    gw_sbuf_printf(b,
                   "gw_devices{state=\"online\"} %zu\ngw_devices{state=\"offline\"} %zu\n"
                   "gw_devices{state=\"unknown\"} %zu\n",
                   online, offline, unknown);
    /* Per device, bounded: the first metrics_devices devices of the config. */
    size_t cap = (size_t)env->cfg->http.metrics_devices;
    size_t ndev = ndevices < cap ? ndevices : cap;
    gw_sbuf_reserve(b, ndev * 112); /* both lines of a device with a 24-byte id */
    help(b, "gw_device_online", "gauge", "1 online, 0 offline, -1 not yet known.");
    for (size_t i = 0; i < ndev; i++) {
        const gw_device *d = devices[i];
        GW_SBUF_LIT(b, "gw_device_online{device=\"");
        label(b, d->conf.id);
        GW_SBUF_LIT(b, "\"}");
        put_int(b, d->online);
    }
    help(b, "gw_device_last_seen_age_seconds", "gauge",
         "Seconds since the device was last heard (absent: never).");
    int64_t loop_now = (int64_t)uv_now(env->loop);
    for (size_t i = 0; i < ndev; i++) {
        const gw_device *d = devices[i];
        if (!d->live_seen_ms)
            continue;
        GW_SBUF_LIT(b, "gw_device_last_seen_age_seconds{device=\"");
        label(b, d->conf.id);
        GW_SBUF_LIT(b, "\"}");
        put_secs1(b, loop_now - d->live_seen_ms);
    }
    help(b, "gw_device_series_omitted", "gauge",
         "Devices left out of the per-device series (http.metrics_devices).");
    gw_sbuf_printf(b, "gw_device_series_omitted %zu\n", ndevices - ndev);

    struct alarm_walk w = {NULL, 0, {0}};
    gw_alarms_each(env->alarms, alarm_each, &w);
    help(b, "gw_rule_evaluations_total", "counter",
         "Readings and events evaluated against the local rules.");
    gw_sbuf_printf(b, "gw_rule_evaluations_total %llu\n",
                   (unsigned long long)gw_alarms_evaluations(env->alarms));
    help(b, "gw_alarms_active", "gauge", "Active alarms by level.");
    for (int l = 1; l <= 4; l++)
        gw_sbuf_printf(b, "gw_alarms_active{level=\"%s\"} %zu\n", gw_level_name(l), w.by_level[l]);

    if (st) {
        help(b, "gw_loop_lateness_seconds", "histogram",
             "How late the loop ran a 250 ms probe timer.");
        uint64_t cum = 0;
        for (size_t k = 0; k < NLATE; k++) {
            cum += st->late_count[k];
            gw_sbuf_printf(b, "gw_loop_lateness_seconds_bucket{le=\"%g\"} %llu\n",
                           late_le[k] / 1000.0, (unsigned long long)cum);
        }
        gw_sbuf_printf(b,
                       "gw_loop_lateness_seconds_bucket{le=\"+Inf\"} %llu\n"
                       "gw_loop_lateness_seconds_sum %.6f\ngw_loop_lateness_seconds_count %llu\n",
                       (unsigned long long)st->late_n, st->late_sum_s,
                       (unsigned long long)st->late_n);
    }
    help(b, "gw_healthy", "gauge", "1 when /healthz answers 200.");
    gw_sbuf_printf(b, "gw_healthy %d\n", health_check(st, 0, NULL));
    env->http_metrics(env->ctx, b);
    if (st)
        process_metrics(st, b);
}
