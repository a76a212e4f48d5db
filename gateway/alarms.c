#include "gateway/alarms.h"

#include "base/model.h"
#include "gateway/config.h"
#include "gateway/device.h"
#include "gateway/store.h"
#include "base/json.h"
#include "gateway/localpub.h"
#include "base/log.h"
#include "gateway/rules_load.h"
#include "rules/rules.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PERSIST_INTERVAL_MS 5000
#define MAX_COMMANDS 16 /* local command actions running at once */

struct cmd_run {
    uv_process_t proc;
    uv_pipe_t in;
    uv_timer_t timer;
    uv_write_t wr;
    char *json;
    int open;
    gw_alarms *owner;
    char name[64];
};

struct gw_alarms {
    gw_alarms_env env;
    gw_rules_engine *eng;
    uv_timer_t tick, persist;
    int handles;
    int dirty;   /* engine state changed since the last persist */
    int urgent;  /* an alarm changed: persist now, not at the next interval */
    int running; /* local commands in flight */
    int stopping;
    uint64_t actions_run, actions_failed;
    uint64_t evaluations;  /* readings and events handed to the rules */
    const gw_reading *cur; /* the reading being evaluated (its unit), or NULL */
    gw_rule *defs;         /* the running definitions (rule.set merges into them) */
    size_t ndefs;
    struct ovr {
        gw_rule_override o;
        uint64_t fp; /* the rule's fingerprint when the change was made */
    } * ovr;         /* run-time changes from the platform (gw_alarms_change_rule) */
    size_t n_ovr;
};

#define OVR_KEY "rule_overrides"

int gw_alarms_load_defs(const gw_config *cfg, void **defs_out, size_t *n_out, char *err,
                        size_t errlen)
{
    gw_rule *all = NULL, *defs;
    size_t n = 0, k;
    int rc = gw_rules_load_list(cfg->rules, &defs, &k, err, errlen);
    if (rc)
        return rc;
    all = defs;
    n = k;
    for (size_t i = 0; cfg->rule_files && i < cfg->rule_files->n; i++) {
        const gw_ynode *f = cfg->rule_files->kids[i];
        if (f->type != GW_Y_SCALAR) {
            snprintf(err, errlen, "%s:%d: key 'rule_files' must list file names", GW_YPOS(f));
            free(all);
            return GW_EINVAL;
        }
        if ((rc = gw_rules_load_file(f->str, &defs, &k, err, errlen))) {
            free(all);
            return rc;
        }
        gw_rule *m = realloc(all, (n + k + 1) * sizeof(*m));
        if (!m) {
            free(all);
            free(defs);
            return GW_ENOMEM;
        }
        all = m;
        memcpy(all + n, defs, k * sizeof(*defs));
        n += k;
        free(defs);
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (!strcmp(all[i].id, all[j].id)) {
                snprintf(err, errlen, "%s: rule id '%s' is defined twice", cfg->source, all[i].id);
                free(all);
                return GW_EINVAL;
            }
    *defs_out = all;
    *n_out = n;
    return GW_OK;
}

static void fill_dev(const gw_device *d, gw_rules_device *rd, const char **groups)
{
    for (int i = 0; i < d->conf.about->ngroups; i++)
        groups[i] = d->conf.about->groups[i];
    rd->id = d->conf.id;
    rd->type = d->type;
    rd->site = d->conf.about->site[0] ? d->conf.about->site : NULL;
    rd->groups = groups;
    rd->n_groups = (size_t)d->conf.about->ngroups;
}

static gw_device *find_dev(gw_alarms *a, const char *id)
{
    size_t n;
    gw_device *const *devs = a->env.devices(a->env.ctx, &n);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(devs[i]->conf.id, id))
            return devs[i];
    return NULL;
}

/* ---- local command actions: bounded in time, never blocking the loop ---- */

static void cmd_closed(uv_handle_t *h)
{
    struct cmd_run *c = h->data;
    if (--c->open > 0)
        return;
    c->owner->running--;
    free(c->json);
    free(c);
}

static void cmd_exit(uv_process_t *p, int64_t status, int sig)
{
    struct cmd_run *c = p->data;
    if (status != 0 || sig) {
        c->owner->actions_failed++;
        GW_WARN("alarms", "command action %s ended with status %lld signal %d", c->name,
                (long long)status, sig);
    }
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, cmd_closed);
    uv_close((uv_handle_t *)p, cmd_closed);
}

static void cmd_timeout(uv_timer_t *t)
{
    struct cmd_run *c = t->data;
    GW_WARN("alarms", "command action %s ran past its timeout: killed", c->name);
    uv_process_kill(&c->proc, SIGKILL);
}

static void cmd_written(uv_write_t *w, int status)
{
    struct cmd_run *c = w->data;
    uv_close((uv_handle_t *)&c->in, cmd_closed);
}

static void run_command(gw_alarms *a, const gw_rule_action *act, const char *json, size_t len)
{
    if (a->running >= MAX_COMMANDS) {
        a->actions_failed++;
        GW_LOG_RL(GW_LOG_WARN, 10000, "alarms", "%d command actions still running: %s skipped",
                  a->running, act->argv[0]);
        return;
    }
    struct cmd_run *c = calloc(1, sizeof(*c));
    char *args[GW_ACTION_ARGS + 1];
    if (!c)
        return;
    c->owner = a;
    c->json = malloc(len + 1);
    if (!c->json) {
        free(c);
        return;
    }
    memcpy(c->json, json, len);
    c->json[len] = '\n';
    gw_strlcpy(c->name, act->argv[0], sizeof(c->name));
    for (int i = 0; i < act->argc; i++)
        args[i] = (char *)act->argv[i];
    args[act->argc] = NULL;
    uv_pipe_init(a->env.loop, &c->in, 0);
    uv_stdio_container_t io[3] = {
        {.flags = UV_CREATE_PIPE | UV_READABLE_PIPE, .data.stream = (uv_stream_t *)&c->in},
        {.flags = UV_IGNORE},
        {.flags = UV_INHERIT_FD, .data.fd = 2}};
    uv_process_options_t o = {
        .exit_cb = cmd_exit, .file = args[0], .args = args, .stdio = io, .stdio_count = 3};
    c->proc.data = c->in.data = c->timer.data = c->wr.data = c;
    int rc = uv_spawn(a->env.loop, &c->proc, &o);
    if (rc) {
        a->actions_failed++;
        GW_WARN("alarms", "command action %s: %s", c->name, uv_strerror(rc));
        c->open = 1;
        a->running++;
        uv_close((uv_handle_t *)&c->in, cmd_closed);
        return;
    }
    a->running++;
    c->open = 3; /* process, pipe, timer */
    uv_timer_init(a->env.loop, &c->timer);
    uv_timer_start(&c->timer, cmd_timeout,
                   (uint64_t)(act->timeout_ms > 0 ? act->timeout_ms : 10000), 0);
    uv_buf_t b = uv_buf_init(c->json, (unsigned)len + 1);
    if (uv_write(&c->wr, (uv_stream_t *)&c->in, &b, 1, cmd_written))
        uv_close((uv_handle_t *)&c->in, cmd_closed);
    a->actions_run++;
}

static void run_actions(gw_alarms *a, const gw_rules_transition *t, const char *json, size_t len)
{
    const gw_rule *r = t->rule;
    for (size_t i = 0; r && i < r->n_actions; i++) {
        const gw_rule_action *act = &r->actions[i];
        unsigned on = act->on ? act->on : GW_ACT_ON_DEFAULT;
        if (!(on & GW_ACT_ON(t->alarm.state)))
            continue;
        if (act->kind == GW_ACT_MODBUS_WRITE) {
            double v = t->alarm.state == GW_ALARM_CLEARED && act->has_value_clear
                           ? act->value_clear
                           : act->value_raise;
            /* A request: the core writes on a later loop turn and reports the
             * outcome through gw_alarms_action_result. */
            int rc = act->point[0] ? a->env.write(a->env.ctx, act->device, act->point, v, r->id)
                                   : GW_EINVAL;
            if (rc) {
                a->actions_failed++;
                GW_WARN("alarms", "rule %s: write %s.%s=%g not requested (%d)", r->id, act->device,
                        act->point[0] ? act->point : "(register: name a profile point)", v, rc);
            }
        } else if (act->kind == GW_ACT_COMMAND) {
            run_command(a, act, json, len);
        } else if (!a->env.localpub) {
            a->actions_failed++;
            GW_LOG_RL(GW_LOG_WARN, 60000, "alarms",
                      "rule %s: mqtt_publish to %s needs a local_mqtt section", r->id, act->topic);
        } else if (gw_localpub_publish(a->env.localpub, act->topic, json, len) == GW_OK) {
            a->actions_run++;
            GW_INFO("alarms", "rule %s: published %s to local %s", r->id,
                    gw_alarm_state_name(t->alarm.state), act->topic);
        } else {
            a->actions_failed++;
        }
    }
}

static void adapt_polling(gw_alarms *a, const gw_rules_transition *t)
{
    for (size_t i = 0; i < t->n_poll_devices; i++) {
        gw_device *d = find_dev(a, t->poll_devices[i]);
        if (!d || !d->proto->set_interval)
            continue;
        int64_t fast = gw_rules_fast_interval(a->eng, d->conf.id);
        if (t->alarm.state == GW_ALARM_RAISED && t->fast_interval_ms > 0 &&
            (fast == 0 || t->fast_interval_ms < fast))
            fast = t->fast_interval_ms;
        int64_t want = fast > 0 && fast < d->conf.interval_ms ? fast : d->conf.interval_ms;
        if (want != d->interval_ms) {
            GW_INFO("alarms", "%s: poll interval %lld ms (%s)", d->conf.id, (long long)want,
                    want < d->conf.interval_ms ? "alarm active" : "restored");
            a->env.set_interval(a->env.ctx, d->conf.id, want);
        }
    }
}

/* The metric's unit: from the reading being evaluated, else the last one the
 * device sent (a debounced raise or a clear comes from a tick). */
static void describe(const gw_alarms *a, const gw_device *d, const char *metric, gw_json_dev *jd,
                     const char **unit)
{
    a->env.describe(a->env.ctx, d, metric, jd, unit);
    if (a->cur && !strcmp(a->cur->device, d->conf.id) && !strcmp(a->cur->metric, metric))
        *unit = a->cur->unit;
}

/* The rule's description with {value} {threshold} {unit} {level} {device}
 * {site} replaced; anything else is copied as written. Truncated at cap. */
static void expand(const char *desc, const gw_alarm *al, const gw_json_alarm_ext *x,
                   const gw_device *d, char *out, size_t cap)
{
    static const char *const colour[] = {"", "蓝色", "黄色", "橙色", "红色"};
    size_t n = 0;
    out[0] = '\0';
    for (const char *p = desc; *p && n + 1 < cap;) {
        char tmp[64];
        const char *sub = NULL;
        const char *end = *p == '{' ? strchr(p, '}') : NULL;
        size_t klen = end ? (size_t)(end - p - 1) : 0;
#define KEY(k) (klen == sizeof(k) - 1 && !strncmp(p + 1, k, klen))
        if (end && KEY("value"))
            snprintf(tmp, sizeof(tmp), "%g", al->value), sub = tmp;
        else if (end && KEY("threshold"))
            snprintf(tmp, sizeof(tmp), "%g", al->threshold), sub = tmp;
        else if (end && KEY("unit"))
            sub = x->unit ? x->unit : "";
        else if (end && KEY("level"))
            sub = colour[al->level <= 4 ? al->level : 0];
        else if (end && KEY("device"))
            sub = al->device;
        else if (end && KEY("site"))
            sub = d && d->conf.about->site[0] ? d->conf.about->site : al->device;
#undef KEY
        if (sub) {
            n += (size_t)snprintf(out + n, cap - n, "%s", sub);
            if (n >= cap)
                n = cap - 1;
            p = end + 1;
        } else {
            out[n++] = *p++;
            out[n] = '\0';
        }
    }
    /* A cut in the middle of a multi-byte character becomes U+FFFD in the
     * JSON encoder: valid, and the rest of the text is still readable. */
}

static void on_transition(void *ctx, const gw_rules_transition *t)
{
    gw_alarms *a = ctx;
    gw_alarm al = t->alarm;
    const gw_rule *r = t->rule;
    const gw_device *d = t->forecast ? NULL : find_dev(a, al.device);
    gw_json_dev jd;
    char text[GW_RULE_DESC_MAX + 128];
    gw_json_alarm_ext x = {.raise = NAN, .clear = NAN};
    if (d) {
        describe(a, d, al.metric, &jd, &x.unit);
        x.dev = &jd;
    }
    /* Going down (a clear, or a de-escalation), the thresholds that matter are
     * those of the level being left: its clear threshold was passed. */
    int falling =
        al.state == GW_ALARM_CLEARED || (al.state == GW_ALARM_UPDATED && al.level < t->prev_level);
    int lv = falling ? t->prev_level : al.level;
    x.prev_level = t->prev_level;
    if (r && (r->kind == GW_RK_THRESHOLD || r->kind == GW_RK_WINDOW) && lv >= 1 &&
        lv <= GW_RULE_LEVELS && r->levels[lv - 1].enabled) {
        x.dir = r->dir;
        x.raise = r->levels[lv - 1].raise;
        x.clear = r->levels[lv - 1].clear;
    }
    if (r && r->description[0] && !t->forecast) {
        /* The rule's words describe the danger; going down, say what changed. */
        if (falling && isfinite(x.raise))
            snprintf(text, sizeof(text), "{site}%s：{value}{unit}，%s解除线%g{unit}",
                     al.state == GW_ALARM_CLEARED ? "预警解除" : "预警降至{level}",
                     x.dir ? "高于" : "低于", x.clear);
        else
            snprintf(text, sizeof(text), "%s%s", al.state == GW_ALARM_CLEARED ? "已解除：" : "",
                     r->description);
        char tmpl[sizeof(text)];
        memcpy(tmpl, text, sizeof(tmpl));
        expand(tmpl, &al, &x, d, text, sizeof(text));
        x.text = text;
    }
    if (t->forecast)
        a->env.forecast(a->env.ctx, &al, t->forecast);
    else
        a->env.alarm(a->env.ctx, &al, &x);
    a->dirty = a->urgent = 1;
    if (t->rule && t->rule->n_actions) {
        char json[4096];
        int n = t->forecast
                    ? gw_json_forecast(json, sizeof(json), a->env.cfg->gateway_id, &al, t->forecast)
                    : gw_json_alarm(json, sizeof(json), a->env.cfg->gateway_id, &al, &x);
        run_actions(a, t, json, n > 0 ? (size_t)n : 0);
    }
    if (t->n_poll_devices)
        adapt_polling(a, t);
}

static void persist(gw_alarms *a)
{
    uint8_t *blob;
    size_t len;
    if (!a->dirty || !a->eng)
        return;
    if (gw_rules_export(a->eng, &blob, &len) == GW_OK) {
        gw_store_state_put(a->env.store, "rules", blob, len);
        free(blob);
        a->dirty = a->urgent = 0;
    }
}

static void on_tick(uv_timer_t *t);

static void rearm(gw_alarms *a)
{
    if (a->urgent)
        persist(a); /* queued in order with the alarm rows: same commit group */
    if (a->stopping)
        return;
    int64_t next = gw_rules_next_deadline(a->eng);
    if (next == INT64_MAX) {
        uv_timer_stop(&a->tick);
        return;
    }
    int64_t d = next - gw_now_ms();
    uv_timer_start(&a->tick, on_tick, (uint64_t)(d > 0 ? d : 0), 0);
}

static void on_tick(uv_timer_t *t)
{
    gw_alarms *a = t->data;
    gw_rules_tick(a->eng, gw_now_ms());
    a->dirty = 1;
    rearm(a);
}

static void on_persist(uv_timer_t *t)
{
    persist(t->data);
}

/* ---- run-time rule changes (rule.set, rule.enable) ---- */

static const gw_rule *def_find(const gw_alarms *a, const char *id)
{
    for (size_t i = 0; i < a->ndefs; i++)
        if (!strcmp(a->defs[i].id, id))
            return &a->defs[i];
    return NULL;
}

static void ovr_apply(gw_alarms *a)
{
    gw_rule_override *o = a->n_ovr ? malloc(a->n_ovr * sizeof(*o)) : NULL;
    if (a->n_ovr && !o) {
        GW_ERROR("alarms", "out of memory: rule changes from the platform not applied%s", "");
        return;
    }
    for (size_t i = 0; i < a->n_ovr; i++)
        o[i] = a->ovr[i].o;
    if (gw_rules_set_overrides(a->eng, o, a->n_ovr))
        GW_ERROR("alarms", "out of memory: rule changes from the platform not applied%s", "");
    free(o);
}

/* Drops the changes of rules that are gone or whose definition changed: the
 * configuration is newer than the change then. Returns how many. */
static size_t ovr_prune(gw_alarms *a)
{
    size_t k = 0, dropped = 0;
    for (size_t i = 0; i < a->n_ovr; i++) {
        const struct ovr *v = &a->ovr[i];
        const gw_rule *d = def_find(a, v->o.rule);
        if (d && gw_rule_fingerprint(d) == v->fp) {
            a->ovr[k++] = *v;
            continue;
        }
        dropped++;
        GW_WARN("alarms", "rule %s %s in the configuration: its change for %s %s is dropped",
                v->o.rule, d ? "changed" : "is gone",
                v->o.target == GW_TG_GROUP ? "group" : "device", v->o.name);
    }
    a->n_ovr = k;
    return dropped;
}

/* The changes as JSON in the state table: small, readable with sqlite3, and
 * independent of the struct layout. */
static void ovr_persist(gw_alarms *a)
{
    cJSON *root = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(root, "overrides");
    for (size_t i = 0; list && i < a->n_ovr; i++) {
        const gw_rule_override *o = &a->ovr[i].o;
        cJSON *it = cJSON_CreateObject();
        char fp[24];
        snprintf(fp, sizeof(fp), "%016" PRIx64, a->ovr[i].fp);
        cJSON_AddStringToObject(it, "rule", o->rule);
        cJSON_AddStringToObject(it, "fp", fp);
        cJSON_AddStringToObject(it, o->target == GW_TG_GROUP ? "group" : "device", o->name);
        if (o->enable >= 0)
            cJSON_AddBoolToObject(it, "enabled", o->enable);
        if (o->has_levels) {
            cJSON *lv = cJSON_AddObjectToObject(it, "levels");
            for (int l = 0; l < GW_RULE_LEVELS; l++) {
                if (!o->levels[l].enabled)
                    continue;
                cJSON *one = cJSON_AddObjectToObject(lv, gw_level_name(l + 1));
                cJSON_AddNumberToObject(one, "raise", o->levels[l].raise);
                cJSON_AddNumberToObject(one, "clear", o->levels[l].clear);
                cJSON_AddNumberToObject(one, "window_ms", (double)o->levels[l].window_ms);
            }
        }
        cJSON_AddItemToArray(list, it);
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!text || gw_store_state_put(a->env.store, OVR_KEY, text, strlen(text)))
        GW_ERROR("alarms", "rule changes from the platform not persisted%s", "");
    free(text);
}

static int ovr_parse(const cJSON *it, struct ovr *v)
{
    const char *rule = cJSON_GetStringValue(cJSON_GetObjectItem(it, "rule"));
    const char *fp = cJSON_GetStringValue(cJSON_GetObjectItem(it, "fp"));
    const char *dev = cJSON_GetStringValue(cJSON_GetObjectItem(it, "device"));
    const char *grp = cJSON_GetStringValue(cJSON_GetObjectItem(it, "group"));
    const char *name = dev ? dev : grp;
    char *end;
    memset(v, 0, sizeof(*v));
    if (!rule || !fp || !name || strlen(rule) >= sizeof(v->o.rule) ||
        strlen(name) >= sizeof(v->o.name))
        return GW_EMALFORMED;
    v->fp = strtoull(fp, &end, 16);
    if (*end)
        return GW_EMALFORMED;
    gw_strlcpy(v->o.rule, rule, sizeof(v->o.rule));
    gw_strlcpy(v->o.name, name, sizeof(v->o.name));
    v->o.target = dev ? GW_TG_DEVICE : GW_TG_GROUP;
    const cJSON *en = cJSON_GetObjectItem(it, "enabled");
    v->o.enable = cJSON_IsBool(en) ? cJSON_IsTrue(en) : -1;
    const cJSON *lv = cJSON_GetObjectItem(it, "levels");
    v->o.has_levels = cJSON_IsObject(lv);
    for (int l = 0; v->o.has_levels && l < GW_RULE_LEVELS; l++) {
        const cJSON *one = cJSON_GetObjectItem(lv, gw_level_name(l + 1));
        if (!one)
            continue;
        const cJSON *r = cJSON_GetObjectItem(one, "raise"), *c = cJSON_GetObjectItem(one, "clear");
        const cJSON *w = cJSON_GetObjectItem(one, "window_ms");
        if (!cJSON_IsNumber(r) || !cJSON_IsNumber(c) || !cJSON_IsNumber(w))
            return GW_EMALFORMED;
        v->o.levels[l] =
            (gw_rule_level){1, r->valuedouble, c->valuedouble, (int64_t)w->valuedouble};
    }
    return GW_OK;
}

/* At start, before any reading: the changes persisted by earlier runs. */
static void ovr_load(gw_alarms *a)
{
    void *blob;
    size_t len;
    if (gw_store_state_get(a->env.store, OVR_KEY, &blob, &len) != GW_OK)
        return;
    cJSON *root = cJSON_ParseWithLength(blob, len); /* blob stays the store's */
    const cJSON *list = cJSON_GetObjectItem(root, "overrides");
    size_t n = (size_t)cJSON_GetArraySize(list);
    if (!cJSON_IsArray(list) || n > GW_ALARMS_OVERRIDES_MAX ||
        (n && !(a->ovr = calloc(n, sizeof(*a->ovr))))) {
        GW_WARN("alarms", "persisted rule changes unreadable: starting without them%s", "");
        cJSON_Delete(root);
        return;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, list)
    {
        if (ovr_parse(it, &a->ovr[a->n_ovr]) == GW_OK)
            a->n_ovr++;
        else
            GW_WARN("alarms", "a persisted rule change is unreadable: skipped%s", "");
    }
    cJSON_Delete(root);
    size_t dropped = ovr_prune(a);
    if (dropped)
        ovr_persist(a);
    if (a->n_ovr)
        GW_INFO("alarms", "restored %zu rule changes from the platform", a->n_ovr);
    ovr_apply(a);
}

static struct ovr *ovr_get(gw_alarms *a, const gw_alarms_change *c, const gw_rule *d)
{
    for (size_t i = 0; i < a->n_ovr; i++)
        if (!strcmp(a->ovr[i].o.rule, c->rule) && a->ovr[i].o.target == c->target &&
            !strcmp(a->ovr[i].o.name, c->name))
            return &a->ovr[i];
    if (a->n_ovr == GW_ALARMS_OVERRIDES_MAX)
        return NULL;
    struct ovr *m = realloc(a->ovr, (a->n_ovr + 1) * sizeof(*m));
    if (!m)
        return NULL;
    a->ovr = m;
    struct ovr *v = &a->ovr[a->n_ovr++];
    memset(v, 0, sizeof(*v));
    gw_strlcpy(v->o.rule, d->id, sizeof(v->o.rule));
    v->o.target = c->target;
    v->o.enable = -1;
    gw_strlcpy(v->o.name, c->name, sizeof(v->o.name));
    memcpy(v->o.levels, d->levels, sizeof(v->o.levels));
    v->fp = gw_rule_fingerprint(d);
    return v;
}

int gw_alarms_change_rule(gw_alarms *a, const gw_alarms_change *c, char *err, size_t errlen)
{
    const gw_rule *d = a ? def_find(a, c->rule) : NULL;
    int set = c->reset;
    for (int l = 0; l < GW_RULE_LEVELS; l++)
        set |= c->levels[l].enabled;
    if (!d) {
        snprintf(err, errlen, "no rule '%.40s'", c->rule);
        return GW_ENOTFOUND;
    }
    if (set && d->kind != GW_RK_THRESHOLD && d->kind != GW_RK_WINDOW) {
        snprintf(err, errlen,
                 "rule %s is a %s rule: levels can be set on threshold and window rules", d->id,
                 gw_rule_kind_name(d->kind));
        return GW_EUNSUPPORTED;
    }
    if (c->enable >= 0 && (d->kind == GW_RK_COMBINED || d->kind == GW_RK_FORECAST)) {
        snprintf(err, errlen, "rule %s is a %s rule: it cannot be switched per device", d->id,
                 gw_rule_kind_name(d->kind));
        return GW_EUNSUPPORTED;
    }
    size_t before = a->n_ovr;
    struct ovr *v = ovr_get(a, c, d);
    if (!v) {
        snprintf(err, errlen, "%d rule changes already made: no room for another",
                 GW_ALARMS_OVERRIDES_MAX);
        return GW_EFULL;
    }
    gw_rule_override next = v->o;
    if (c->reset) {
        next.has_levels = 0;
        memcpy(next.levels, d->levels, sizeof(next.levels));
    }
    for (int l = 0; l < GW_RULE_LEVELS; l++) {
        if (!c->levels[l].enabled)
            continue;
        next.has_levels = 1;
        next.levels[l].enabled = 1;
        next.levels[l].raise = c->levels[l].raise;
        next.levels[l].clear = c->levels[l].clear;
    }
    if (c->enable >= 0)
        next.enable = c->enable;
    gw_rule check = *d;
    memcpy(check.levels, next.levels, sizeof(check.levels));
    if (next.has_levels && gw_rule_check(&check, err, errlen)) {
        a->n_ovr = before; /* a new entry is dropped again */
        return GW_EINVAL;
    }
    v->o = next;
    /* Nothing left to change: the rule as configured. (A device switched on
     * stays: it may stand against its group switched off.) */
    if (!next.has_levels && (next.enable < 0 || (next.enable == 1 && next.target == GW_TG_GROUP)))
        *v = a->ovr[--a->n_ovr];
    ovr_apply(a);
    ovr_persist(a);
    return GW_OK;
}

gw_alarms *gw_alarms_start(const gw_alarms_env *env, char *err, size_t errlen)
{
    gw_rule *defs = NULL;
    size_t n = 0;
    if (gw_alarms_load_defs(env->cfg, (void **)&defs, &n, err, errlen))
        return NULL;
    gw_alarms *a = calloc(1, sizeof(*a));
    if (!a) {
        free(defs);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    a->env = *env;
    a->eng = gw_rules_new(defs, n, on_transition, a, err, errlen);
    if (!a->eng) {
        free(defs);
        free(a);
        return NULL;
    }
    a->defs = defs;
    a->ndefs = n;
    void *blob;
    size_t len;
    if (gw_store_state_get(env->store, "rules", &blob, &len) == GW_OK) {
        int rc = gw_rules_import(a->eng, blob, len);
        if (rc)
            GW_WARN("alarms", "persisted rule state unreadable (%d): starting clean", rc);
        else
            GW_INFO("alarms", "restored rule state: %zu active alarms",
                    gw_rules_active_count(a->eng));
    }
    ovr_load(a);
    int64_t now = gw_now_ms();
    size_t ndevs;
    gw_device *const *devs = env->devices(env->ctx, &ndevs);
    for (size_t i = 0; i < ndevs; i++) {
        gw_rules_device rd;
        const char *groups[GW_MAX_GROUPS];
        fill_dev(devs[i], &rd, groups);
        gw_rules_expect(a->eng, &rd, now);
    }
    uv_timer_init(env->loop, &a->tick);
    uv_timer_init(env->loop, &a->persist);
    a->tick.data = a->persist.data = a;
    a->handles = 2;
    uv_timer_start(&a->persist, on_persist, PERSIST_INTERVAL_MS, PERSIST_INTERVAL_MS);
    rearm(a);
    return a;
}

void gw_alarms_action_result(gw_alarms *a, int rc)
{
    if (!a)
        return;
    if (rc)
        a->actions_failed++;
    else
        a->actions_run++;
}

void gw_alarms_reading(gw_alarms *a, gw_device *dev, gw_reading *r)
{
    if (!a)
        return;
    int health = gw_rules_health(a->eng, dev->conf.id, r->metric);
    if (health != GW_R_NONE && r->quality == GW_Q_GOOD) {
        r->quality = GW_Q_UNCERTAIN;
        r->reason = (uint8_t)health;
    }
    gw_rules_device rd;
    const char *groups[GW_MAX_GROUPS];
    fill_dev(dev, &rd, groups);
    a->cur = r;
    gw_rules_reading(a->eng, &rd, r, gw_now_ms());
    a->cur = NULL;
    a->evaluations++;
    a->dirty = 1;
    rearm(a);
}

void gw_alarms_event(gw_alarms *a, gw_device *dev, const gw_event *e)
{
    if (!a)
        return;
    gw_rules_device rd;
    const char *groups[GW_MAX_GROUPS];
    fill_dev(dev, &rd, groups);
    gw_rules_event(a->eng, &rd, e, gw_now_ms());
    a->evaluations++;
    a->dirty = 1;
    rearm(a);
}

int gw_alarms_ack(gw_alarms *a, const char *alarm_id, const char *by)
{
    if (!a)
        return GW_ENOTFOUND;
    int rc = gw_rules_ack(a->eng, alarm_id, by, gw_now_ms());
    rearm(a);
    return rc;
}

int gw_alarms_reload(gw_alarms *a, const gw_config *cfg, char *err, size_t errlen)
{
    gw_rule *defs = NULL;
    size_t n = 0;
    if (!a)
        return GW_OK;
    int rc = gw_alarms_load_defs(cfg, (void **)&defs, &n, err, errlen);
    if (rc)
        return rc;
    gw_rules_engine *e = gw_rules_reload(a->eng, defs, n, gw_now_ms(), err, errlen);
    if (!e) {
        free(defs);
        return GW_EINVAL;
    }
    a->eng = e;
    free(a->defs);
    a->defs = defs;
    a->ndefs = n;
    if (ovr_prune(a))
        ovr_persist(a);
    ovr_apply(a);
    a->dirty = a->urgent = 1;
    rearm(a);
    return GW_OK;
}

size_t gw_alarms_each(const gw_alarms *a, void (*cb)(void *ctx, const gw_alarm *al), void *ctx)
{
    return a ? gw_rules_active_each(a->eng, cb, ctx) : 0;
}

size_t gw_alarms_active(const gw_alarms *a)
{
    return a ? gw_rules_active_count(a->eng) : 0;
}

uint64_t gw_alarms_evaluations(const gw_alarms *a)
{
    return a ? a->evaluations : 0;
}

static void on_closed(uv_handle_t *h)
{
    gw_alarms *a = h->data;
    if (--a->handles > 0)
        return;
    gw_rules_free(a->eng);
    free(a->defs);
    free(a->ovr);
    free(a);
}

void gw_alarms_stop(gw_alarms *a)
{
    if (!a)
        return;
    a->dirty = 1;
    persist(a);
    a->stopping = 1;
    uv_timer_stop(&a->tick);
    uv_timer_stop(&a->persist);
    uv_close((uv_handle_t *)&a->tick, on_closed);
    uv_close((uv_handle_t *)&a->persist, on_closed);
}
