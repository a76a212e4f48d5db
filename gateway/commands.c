/* Platform commands (gateway/commands.h). A command is checked in this order:
 * known name, allowed for its destination, a JSON object, its own fields;
 * the first failure is the `refused` reason. What passes is `accepted` and
 * runs: at once (ack, meta, inventory, poll, most device commands), or later:
 * a rule change is `done` only once it is committed to the store (it then
 * survives a SIGKILL), a device command of a protocol that answers later
 * (SL651) once the device answered. Completions that wait hold a small record
 * of their own, counted against GW_COMMANDS_PENDING_MAX, so a flood of them is
 * refused, not queued. */
#include "gateway/commands.h"

#include "base/json.h"
#include "base/log.h"
#include "gateway/alarms.h"
#include "gateway/device.h"
#include "rules/rules.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DESTS_MAX 16
#define CORR_MAX 65 /* a correlation id of up to 64 characters */
#define BY_MAX 41
#define REASON_MAX 256
/* Refusals and failures are logged and audited AUDIT_BURST at once, then
 * AUDIT_PER_S a second. Each audit is a priority-lane row queued ahead of the
 * next alarm, so a flood of well-formed but bogus commands would hold alarms
 * back; what is left out is counted and the next audit event sent says how
 * many ("suppressed"). */
#define AUDIT_BURST 20
#define AUDIT_PER_S 10

static const char *const names[] = GW_COMMAND_NAMES;
#define NNAMES (sizeof(names) / sizeof(names[0]))
enum { C_ACK, C_DEVICE, C_RULE_SET, C_RULE_ENABLE, C_META, C_INVENTORY, C_POLL };

struct wait;

struct gw_commands {
    gw_commands_env env;
    uv_timer_t timer;                   /* the oldest wait for a device answer */
    struct wait *wait_head, *wait_tail; /* oldest first: all wait equally long */
    struct wait *flushing;              /* rule changes waiting for their commit */
    int timer_open;
    struct {
        char name[64];
        unsigned allowed;
    } dests[DESTS_MAX];
    int ndests;
    int pending; /* waits on both lists (bounded by GW_COMMANDS_PENDING_MAX) */
    int stopped, freed;
    uint64_t handled, refused;
    double audit_tokens;             /* AUDIT_BURST bucket, refilled AUDIT_PER_S a second */
    int64_t audit_at;                /* monotonic ms of the last refill */
    uint64_t audit_suppressed;       /* since the last audit event sent (its "suppressed") */
    uint64_t audit_suppressed_total; /* since start */
};

/* What one command's replies need: who asked, under which id. */
typedef struct req {
    gw_commands *c;
    const char *cmd;
    char corr[CORR_MAX];
    char dest[64];
    char by[BY_MAX];
    gw_commands_reply_fn reply;
    gw_commands_route_fn reply_route; /* instead of reply: the command's own route */
    void *reply_ctx;
    gw_mqttc_route route;
    char what[160];  /* the audit's "what": the command's target, in words */
    char audit[512]; /* the audit fields, a JSON object, for a deferred audit */
} req;

/* A command waiting to complete: a device command for the device's answer
 * (device, verb, sent, deadline), a rule change for its commit. */
typedef struct wait {
    req q;
    char device[GW_ID_MAX];
    char verb[32];
    char sent[256];
    uint64_t deadline; /* loop time */
    struct wait *next;
} wait;

unsigned gw_commands_bit(const char *name)
{
    for (size_t i = 0; i < NNAMES; i++)
        if (!strcmp(name, names[i]))
            return 1u << i;
    return 0;
}

gw_commands *gw_commands_new(const gw_commands_env *env)
{
    gw_commands *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->env = *env;
    c->audit_tokens = AUDIT_BURST;
    c->audit_at = gw_mono_ms();
    if (c->env.answer_ms <= 0)
        c->env.answer_ms = GW_COMMANDS_ANSWER_MS;
    if (env->loop) {
        uv_timer_init(env->loop, &c->timer);
        c->timer.data = c;
        c->timer_open = 1;
    }
    return c;
}

int gw_commands_allow(gw_commands *c, const char *dest, unsigned allowed)
{
    for (int i = 0; i < c->ndests; i++)
        if (!strcmp(c->dests[i].name, dest)) {
            c->dests[i].allowed = allowed;
            return GW_OK;
        }
    if (c->ndests == DESTS_MAX || strlen(dest) >= sizeof(c->dests[0].name))
        return GW_EFULL;
    gw_strlcpy(c->dests[c->ndests].name, dest, sizeof(c->dests[0].name));
    c->dests[c->ndests++].allowed = allowed;
    return GW_OK;
}

static unsigned allowed_of(const gw_commands *c, const char *dest)
{
    for (int i = 0; i < c->ndests; i++)
        if (!strcmp(c->dests[i].name, dest))
            return c->dests[i].allowed;
    return 0;
}

/* ,"key":"val" (nothing when val is NULL or, with skip_empty, ""). */
static void member(gw_jbuf *b, const char *key, const char *val, int skip_empty)
{
    if (!val || (skip_empty && !val[0]))
        return;
    gw_json_raw(b, ",\"");
    gw_json_raw(b, key);
    gw_json_raw(b, "\":");
    gw_json_str(b, val);
}

static void send_reply(const req *q, const char *status, const char *reason, const char *result)
{
    if (q->c->stopped || (!q->reply && !q->reply_route))
        return;
    char buf[1024];
    gw_jbuf b;
    gw_jbuf_init(&b, buf, sizeof(buf));
    gw_json_raw(&b, "{\"v\":1");
    member(&b, "id", q->corr, 1);
    member(&b, "cmd", q->cmd, 0);
    member(&b, "status", status, 0);
    member(&b, "reason", reason, 0);
    if (result) {
        gw_json_raw(&b, ",\"result\":");
        gw_json_raw(&b, result);
    }
    gw_json_raw(&b, ",\"at\":");
    gw_json_time(&b, gw_now_ms());
    gw_json_raw(&b, "}");
    if (b.overflow) {
        GW_WARN("commands", "reply to %s too long: not sent", q->cmd);
        return;
    }
    if (q->reply_route)
        q->reply_route(q->reply_ctx, &q->route, buf, b.len);
    else
        q->reply(q->reply_ctx, buf, b.len);
}

/* The audit fields of a state-changing command, kept in q->audit. */
static void audit_fields(req *q, const char *result, const char *reason)
{
    gw_jbuf b;
    gw_jbuf_init(&b, q->audit, sizeof(q->audit));
    gw_json_raw(&b, "{\"cmd\":");
    gw_json_str(&b, q->cmd);
    member(&b, "dest", q->dest, 0);
    member(&b, "by", q->by, 0);
    member(&b, "id", q->corr, 1);
    member(&b, "what", q->what, 0);
    member(&b, "result", result, 0);
    member(&b, "reason", reason, 0);
    if (q->c->audit_suppressed) {
        char n[48];
        snprintf(n, sizeof(n), ",\"suppressed\":%llu", (unsigned long long)q->c->audit_suppressed);
        gw_json_raw(&b, n);
    }
    gw_json_raw(&b, "}");
    if (b.overflow)
        snprintf(q->audit, sizeof(q->audit), "{\"cmd\":\"%s\",\"result\":\"%s\"}", q->cmd, result);
}

/* Whether one more refusal or failure may be logged now (see AUDIT_BURST). */
static int audit_room(gw_commands *c)
{
    int64_t now = gw_mono_ms();
    c->audit_tokens += (double)(now - c->audit_at) * AUDIT_PER_S / 1000.0;
    c->audit_at = now;
    if (c->audit_tokens > AUDIT_BURST)
        c->audit_tokens = AUDIT_BURST;
    return c->audit_tokens >= 1;
}

/* Whether an audit event of this result may be queued now (see AUDIT_BURST). */
static int audit_allowed(gw_commands *c, const char *result)
{
    if (!strcmp(result, "done"))
        return 1;
    if (!audit_room(c)) {
        c->audit_suppressed++;
        c->audit_suppressed_total++;
        return 0;
    }
    c->audit_tokens -= 1;
    return 1;
}

/* Logs and queues the audit event of a state-changing command. */
static void audit(req *q, const char *result, const char *reason)
{
    char detail[512]; /* the event keeps the first GW_DETAIL_MAX-1 bytes; the log all */
    snprintf(detail, sizeof(detail), "%s %s by %s/%s: %s%s%s", q->cmd, q->what, q->dest, q->by,
             result, reason ? ": " : "", reason ? reason : "");
    /* Refusals and failures past the rate of audit_allowed are counted only: a flood of
     * bogus commands would otherwise write a line and a priority row for each. */
    if (!audit_allowed(q->c, result)) {
        GW_LOG_RL(GW_LOG_WARN, 10000, "commands",
                  "refused or failed commands over %d a second: %llu not logged or audited",
                  AUDIT_PER_S, (unsigned long long)q->c->audit_suppressed);
        return;
    }
    GW_INFO("commands", "%s", detail);
    audit_fields(q, result, reason);
    if (q->c->env.audit && q->c->env.audit(q->c->env.ctx, detail, q->audit))
        GW_WARN("commands", "audit event of %s not queued", q->cmd);
    else
        q->c->audit_suppressed = 0;
}

static void refuse(req *q, const char *reason, int audited)
{
    q->c->refused++;
    if (audited)
        audit(q, "refused", reason);
    else
        GW_LOG_RL(GW_LOG_INFO, 5000, "commands", "%s from %s refused: %s", q->cmd, q->dest, reason);
    send_reply(q, "refused", reason, NULL);
}

static gw_device *find_device(gw_commands *c, const char *id)
{
    size_t n;
    gw_device *const *devs = c->env.devices(c->env.ctx, &n);
    for (size_t i = 0; id && i < n; i++)
        if (!strcmp(devs[i]->conf.id, id))
            return devs[i];
    return NULL;
}

static int group_known(gw_commands *c, const char *group)
{
    size_t n;
    gw_device *const *devs = c->env.devices(c->env.ctx, &n);
    for (size_t i = 0; i < n; i++)
        for (int g = 0; g < devs[i]->conf.about->ngroups; g++)
            if (!strcmp(devs[i]->conf.about->groups[g], group))
                return 1;
    return 0;
}

/* A string member: NULL when absent; *bad set when present but not a string. */
static const char *str_of(const cJSON *doc, const char *key, int *bad)
{
    const cJSON *it = cJSON_GetObjectItem(doc, key);
    if (it && !cJSON_IsString(it))
        *bad = 1;
    return cJSON_GetStringValue(it);
}

/* {"key":"val"} into out. */
static void result_str(char *out, size_t cap, const char *key, const char *val)
{
    gw_jbuf b;
    gw_jbuf_init(&b, out, cap);
    gw_json_raw(&b, "{\"");
    gw_json_raw(&b, key);
    gw_json_raw(&b, "\":");
    gw_json_str(&b, val);
    gw_json_raw(&b, "}");
    if (b.overflow)
        snprintf(out, cap, "{}");
}

static void run_ack(req *q, const cJSON *doc)
{
    int bad = 0;
    const char *id = str_of(doc, "alarm", &bad);
    if (!id || bad) {
        refuse(q, "malformed: \"alarm\" (an alarm id) is required", 0);
        return;
    }
    snprintf(q->what, sizeof(q->what), "alarm %.120s", id);
    send_reply(q, "accepted", NULL, NULL);
    int rc = gw_alarms_ack(q->c->env.alarms, id, q->by);
    if (rc == GW_OK || audit_room(q->c)) /* within the refusals' limit, as its audit */
        GW_INFO("commands", "ack of %.80s by %s: %s", id, q->by,
                rc == GW_OK ? "recorded" : "no such active alarm");
    char result[256];
    result_str(result, sizeof(result), "alarm", id);
    if (rc == GW_OK) {
        audit(q, "done", NULL);
        send_reply(q, "done", NULL, result);
    } else {
        audit(q, "failed", "no such active alarm");
        send_reply(q, "failed", "no such active alarm", NULL);
    }
}

static void on_wait_timer(uv_timer_t *t);

static void wait_arm(gw_commands *c)
{
    if (!c->wait_head) {
        uv_timer_stop(&c->timer);
        return;
    }
    uint64_t now = uv_now(c->env.loop), due = c->wait_head->deadline;
    uv_timer_start(&c->timer, on_wait_timer, due > now ? due - now : 0, 0);
}

static void wait_add(gw_commands *c, wait *w, const req *q, const char *dev, const char *verb,
                     const char *sent)
{
    w->q = *q;
    gw_strlcpy(w->device, dev, sizeof(w->device));
    gw_strlcpy(w->verb, verb, sizeof(w->verb));
    gw_strlcpy(w->sent, sent, sizeof(w->sent));
    w->deadline = uv_now(c->env.loop) + (uint64_t)c->env.answer_ms;
    if (c->wait_tail)
        c->wait_tail->next = w;
    else
        c->wait_head = w;
    c->wait_tail = w;
    c->pending++;
    wait_arm(c);
}

/* Takes w (prev its predecessor, NULL for the head) off the list. */
static void wait_del(gw_commands *c, wait *prev, wait *w)
{
    if (prev)
        prev->next = w->next;
    else
        c->wait_head = w->next;
    if (c->wait_tail == w)
        c->wait_tail = prev;
    c->pending--;
}

static void on_wait_timer(uv_timer_t *t)
{
    gw_commands *c = t->data;
    uint64_t now = uv_now(c->env.loop);
    while (c->wait_head && c->wait_head->deadline <= now) {
        wait *w = c->wait_head;
        wait_del(c, NULL, w);
        char why[64];
        snprintf(why, sizeof(why), "no answer within %.3g s", (double)c->env.answer_ms / 1000);
        audit(&w->q, "failed", why);
        send_reply(&w->q, "failed", why, NULL);
        free(w);
    }
    wait_arm(c);
}

/* The oldest wait for (device, verb), taken off the list; NULL when none. */
static wait *wait_take(gw_commands *c, const char *device, const char *verb)
{
    wait *prev = NULL, *w = c ? c->wait_head : NULL;
    while (w && (strcmp(w->device, device) || strcmp(w->verb, verb))) {
        prev = w;
        w = w->next;
    }
    if (w)
        wait_del(c, prev, w);
    return w;
}

void gw_commands_answered(gw_commands *c, const char *device, const char *verb, const char *answer)
{
    wait *w = wait_take(c, device, verb);
    if (!w)
        return;
    char result[512];
    gw_jbuf b;
    gw_jbuf_init(&b, result, sizeof(result));
    gw_json_raw(&b, "{\"reply\":");
    gw_json_str(&b, w->sent);
    gw_json_raw(&b, ",\"answer\":");
    gw_json_str(&b, answer);
    gw_json_raw(&b, "}");
    audit(&w->q, "done", NULL);
    send_reply(&w->q, "done", NULL, b.overflow ? NULL : result);
    free(w);
    wait_arm(c);
}

void gw_commands_result(gw_commands *c, const char *device, const char *verb, const char *reason,
                        const char *result)
{
    wait *w = wait_take(c, device, verb);
    if (!w)
        return;
    audit(&w->q, reason ? "failed" : "done", reason);
    send_reply(&w->q, reason ? "failed" : "done", reason, reason ? NULL : result);
    free(w);
    wait_arm(c);
}

static void run_device(req *q, const cJSON *doc)
{
    int bad = 0;
    const char *dev = str_of(doc, "device", &bad), *verb = str_of(doc, "verb", &bad);
    const char *arg = str_of(doc, "arg", &bad);
    if (!dev || !verb || bad) {
        refuse(q, "malformed: \"device\" and \"verb\" (strings) are required", 0);
        return;
    }
    snprintf(q->what, sizeof(q->what), "%.32s on %.64s", verb, dev);
    if (!find_device(q->c, dev)) {
        char why[128];
        snprintf(why, sizeof(why), "no device '%.64s'", dev);
        refuse(q, why, 1);
        return;
    }
    gw_device *d = find_device(q->c, dev);
    wait *w = NULL;
    if (d->proto->command_answers && q->c->timer_open) {
        if (q->c->pending >= GW_COMMANDS_PENDING_MAX) {
            refuse(q, "busy: too many commands completing", 1);
            return;
        }
        if (!(w = calloc(1, sizeof(*w)))) {
            refuse(q, "out of memory", 1);
            return;
        }
    }
    char out[256], result[512];
    int rc = q->c->env.device_command(q->c->env.ctx, dev, verb, arg, out, sizeof(out));
    if (rc == GW_EINVAL) { /* the argument is wrong (an unknown or read-only point...) */
        free(w);
        refuse(q, out, 1);
        return;
    }
    send_reply(q, "accepted", NULL, NULL);
    if (rc == GW_OK && w) {
        wait_add(q->c, w, q, dev, verb, out);
        return;
    }
    free(w);
    if (rc == GW_OK) {
        result_str(result, sizeof(result), "reply", out);
        audit(q, "done", NULL);
        send_reply(q, "done", NULL, result);
    } else {
        audit(q, "failed", out);
        send_reply(q, "failed", out, NULL);
    }
}

/* The target of a rule change: exactly one of "device" or "group". */
static int rule_target(req *q, const cJSON *doc, gw_alarms_change *ch)
{
    int bad = 0;
    const char *rule = str_of(doc, "rule", &bad), *dev = str_of(doc, "device", &bad);
    const char *grp = str_of(doc, "group", &bad);
    if (!rule || bad || !dev == !grp) {
        refuse(q, "malformed: \"rule\" and one of \"device\" or \"group\" are required", 0);
        return -1;
    }
    ch->rule = rule;
    ch->target = dev ? GW_TG_DEVICE : GW_TG_GROUP;
    ch->name = dev ? dev : grp;
    ch->enable = -1;
    snprintf(q->what, sizeof(q->what), "rule %.40s for %s %.64s", rule, dev ? "device" : "group",
             ch->name);
    char why[128];
    if (dev && !find_device(q->c, dev)) {
        snprintf(why, sizeof(why), "no device '%.64s'", dev);
        refuse(q, why, 1);
        return -1;
    }
    if (grp && !group_known(q->c, grp)) {
        snprintf(why, sizeof(why), "no device in group '%.64s'", grp);
        refuse(q, why, 1);
        return -1;
    }
    return 0;
}

/* "levels": {"blue": {"raise": 5, "clear": 4}, ...}; clear defaults to raise. */
static int rule_levels(req *q, const cJSON *doc, gw_alarms_change *ch)
{
    static const char *const lv[] = {"blue", "yellow", "orange", "red"};
    const cJSON *levels = cJSON_GetObjectItem(doc, "levels"), *it;
    ch->reset = cJSON_IsTrue(cJSON_GetObjectItem(doc, "reset"));
    if (!levels && ch->reset)
        return 0;
    if (!cJSON_IsObject(levels) || !levels->child) {
        refuse(q, "malformed: \"levels\" (an object of blue/yellow/orange/red) is required", 0);
        return -1;
    }
    cJSON_ArrayForEach(it, levels)
    {
        int l = 0;
        while (l < 4 && strcmp(it->string, lv[l]))
            l++;
        const cJSON *r = cJSON_GetObjectItem(it, "raise"), *c = cJSON_GetObjectItem(it, "clear");
        if (l == 4 || !cJSON_IsNumber(r) || (c && !cJSON_IsNumber(c))) {
            char why[160];
            snprintf(why, sizeof(why),
                     "malformed: level '%.32s' must be blue/yellow/orange/red with a number "
                     "\"raise\" (and \"clear\")",
                     it->string);
            refuse(q, why, 0);
            return -1;
        }
        ch->levels[l].enabled = 1;
        ch->levels[l].raise = r->valuedouble;
        ch->levels[l].clear = c ? c->valuedouble : r->valuedouble;
    }
    return 0;
}

static void maybe_free(gw_commands *c)
{
    if (c->freed && c->pending == 0 && !c->timer_open)
        free(c);
}

static void on_committed(void *ctx, int status)
{
    wait *w = ctx;
    gw_commands *c = w->q.c;
    wait **pp = &c->flushing;
    while (*pp != w)
        pp = &(*pp)->next;
    *pp = w->next;
    c->pending--;
    if (status == GW_OK)
        send_reply(&w->q, "done", NULL, NULL);
    else
        send_reply(&w->q, "failed", "not committed to the store", NULL);
    free(w);
    maybe_free(c);
}

/* rule.set and rule.enable: applied now, persisted with the audit event in
 * one commit group, `done` once that group is on disk. */
static void run_rule(req *q, const cJSON *doc, int enable_cmd)
{
    gw_alarms_change ch;
    memset(&ch, 0, sizeof(ch));
    if (rule_target(q, doc, &ch))
        return;
    if (enable_cmd) {
        const cJSON *en = cJSON_GetObjectItem(doc, "enabled");
        if (!cJSON_IsBool(en)) {
            refuse(q, "malformed: \"enabled\" (true or false) is required", 0);
            return;
        }
        ch.enable = cJSON_IsTrue(en);
    } else if (rule_levels(q, doc, &ch)) {
        return;
    }
    if (q->c->pending >= GW_COMMANDS_PENDING_MAX) {
        refuse(q, "busy: too many commands completing", 1);
        return;
    }
    wait *later = calloc(1, sizeof(*later));
    if (!later) {
        refuse(q, "out of memory", 1);
        return;
    }
    char why[REASON_MAX];
    if (gw_alarms_change_rule(q->c->env.alarms, &ch, why, sizeof(why))) {
        free(later);
        refuse(q, why, 1);
        return;
    }
    audit(q, "done", NULL);
    send_reply(q, "accepted", NULL, NULL);
    later->q = *q;
    if (q->c->env.flush(q->c->env.ctx, on_committed, later)) {
        free(later);
        send_reply(q, "failed", "not committed to the store", NULL);
        return;
    }
    later->next = q->c->flushing;
    q->c->flushing = later;
    q->c->pending++;
}

static void run_meta(req *q, const cJSON *doc, int inventory)
{
    int bad = 0;
    const char *dev = inventory ? NULL : str_of(doc, "device", &bad);
    if (!inventory && (!dev || bad)) {
        refuse(q, "malformed: \"device\" (a device id) is required", 0);
        return;
    }
    if (dev && !find_device(q->c, dev)) {
        char why[128];
        snprintf(why, sizeof(why), "no device '%.64s'", dev);
        refuse(q, why, 0);
        return;
    }
    send_reply(q, "accepted", NULL, NULL);
    gw_device *d = dev ? find_device(q->c, dev) : NULL;
    int rc = q->c->env.publish_meta ? q->c->env.publish_meta(q->c->env.ctx, d) : GW_EUNSUPPORTED;
    if (rc == GW_OK)
        send_reply(q, "done", NULL, NULL);
    else
        send_reply(q, "failed", rc == GW_EUNSUPPORTED ? "not available" : "not published", NULL);
}

static void run_poll(req *q, const cJSON *doc)
{
    int bad = 0;
    const char *id = str_of(doc, "device", &bad);
    if (!id || bad) {
        refuse(q, "malformed: \"device\" (a device id) is required", 0);
        return;
    }
    gw_device *d = find_device(q->c, id);
    char why[160];
    if (!d) {
        snprintf(why, sizeof(why), "no device '%.64s'", id);
        refuse(q, why, 0);
        return;
    }
    if (!d->proto->set_interval) {
        snprintf(why, sizeof(why), "protocol %s is not polled on request (the device reports)",
                 d->proto->name);
        refuse(q, why, 0);
        return;
    }
    send_reply(q, "accepted", NULL, NULL);
    int rc = q->c->env.poll(q->c->env.ctx, d);
    if (rc == GW_OK)
        send_reply(q, "done", NULL, NULL);
    else
        send_reply(q, "failed", rc == GW_EFULL ? "device request queue full" : "not requested",
                   NULL);
}

/* The correlation id: the transport's, else the payload's "id" (a string or
 * an integer). */
static void take_corr(req *q, const char *corr, const cJSON *doc)
{
    const cJSON *id = cJSON_GetObjectItem(doc, "id");
    if (corr)
        gw_strlcpy(q->corr, corr, sizeof(q->corr));
    else if (cJSON_IsString(id))
        gw_strlcpy(q->corr, id->valuestring, sizeof(q->corr));
    else if (cJSON_IsNumber(id))
        snprintf(q->corr, sizeof(q->corr), "%.0f", id->valuedouble);
}

static void handle(req *q, const char *dest, const char *name, const char *payload, size_t len,
                   const char *corr);

void gw_commands_handle(gw_commands *c, const char *dest, const char *name, const char *payload,
                        size_t len, const char *corr, gw_commands_reply_fn reply, void *reply_ctx)
{
    req q;
    memset(&q, 0, sizeof(q));
    q.c = c;
    q.reply = reply;
    q.reply_ctx = reply_ctx;
    handle(&q, dest, name, payload, len, corr);
}

/* The correlation data as an id: printable text of at most 64 characters. */
static int corr_text(const gw_mqttc_route *r, char *out, size_t cap)
{
    if (!r->corr_len || r->corr_len >= cap)
        return 0;
    for (size_t i = 0; i < r->corr_len; i++)
        if (r->corr[i] < 0x20 || r->corr[i] > 0x7e)
            return 0;
    memcpy(out, r->corr, r->corr_len);
    out[r->corr_len] = '\0';
    return 1;
}

void gw_commands_handle_routed(gw_commands *c, const char *dest, const char *name,
                               const char *payload, size_t len, const gw_mqttc_route *route,
                               gw_commands_route_fn reply, void *reply_ctx)
{
    req q;
    memset(&q, 0, sizeof(q));
    q.c = c;
    q.reply_route = reply;
    q.reply_ctx = reply_ctx;
    q.route = *route;
    handle(&q, dest, name, payload, len, NULL);
}

void gw_commands_get_stats(const gw_commands *c, gw_commands_stats *out)
{
    out->handled = c->handled;
    out->refused = c->refused;
    out->audits_suppressed = c->audit_suppressed_total;
}

static void handle(req *q0, const char *dest, const char *name, const char *payload, size_t len,
                   const char *corr)
{
    req q = *q0;
    gw_commands *c = q.c;
    gw_strlcpy(q.dest, dest, sizeof(q.dest));
    gw_strlcpy(q.by, strcmp(dest, "local") ? "platform" : "admin", sizeof(q.by));
    c->handled++;
    cJSON *doc = cJSON_ParseWithLength(payload, len);
    take_corr(&q, corr, doc);
    if (!q.corr[0] && q.reply_route)
        corr_text(&q.route, q.corr, sizeof(q.corr));
    unsigned bit = gw_commands_bit(name);
    int k = 0;
    while (bit && !(bit & (1u << k)))
        k++;
    char given[41]; /* an unknown name is echoed as given, cut to 40 bytes */
    gw_strlcpy(given, name, sizeof(given));
    q.cmd = bit ? names[k] : given;
    if (!bit) {
        char why[96];
        snprintf(why, sizeof(why), "unknown command '%.40s'", name);
        refuse(&q, why, 0);
    } else if (!(allowed_of(c, dest) & bit)) {
        snprintf(q.what, sizeof(q.what), "(not run)");
        /* An attempt to change state without the right is worth an audit. */
        refuse(&q, "not authorized",
               k == C_ACK || k == C_DEVICE || k == C_RULE_SET || k == C_RULE_ENABLE);
    } else if (!cJSON_IsObject(doc)) {
        refuse(&q, doc ? "malformed: the payload must be a JSON object" : "malformed: not JSON", 0);
    } else {
        int bad = 0;
        const char *by = str_of(doc, "by", &bad);
        if (by)
            gw_strlcpy(q.by, by, sizeof(q.by));
        if (bad) {
            refuse(&q, "malformed: \"by\" must be a string", 0);
        } else {
            switch (k) {
            case C_ACK:
                run_ack(&q, doc);
                break;
            case C_DEVICE:
                run_device(&q, doc);
                break;
            case C_RULE_SET:
            case C_RULE_ENABLE:
                run_rule(&q, doc, k == C_RULE_ENABLE);
                break;
            case C_META:
            case C_INVENTORY:
                run_meta(&q, doc, k == C_INVENTORY);
                break;
            default:
                run_poll(&q, doc);
                break;
            }
        }
    }
    cJSON_Delete(doc);
}

static void on_timer_closed(uv_handle_t *h)
{
    gw_commands *c = h->data;
    c->timer_open = 0;
    maybe_free(c);
}

void gw_commands_cancel(gw_commands *c, void *reply_ctx)
{
    for (int pass = 0; c && pass < 2; pass++)
        for (wait *w = pass ? c->flushing : c->wait_head; w; w = w->next)
            if (w->q.reply_ctx == reply_ctx)
                w->q.reply = NULL;
}

void gw_commands_stop(gw_commands *c)
{
    if (!c || c->stopped)
        return;
    c->stopped = 1;
    while (c->wait_head) {
        wait *w = c->wait_head;
        wait_del(c, NULL, w);
        free(w);
    }
    if (c->timer_open)
        uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

void gw_commands_free(gw_commands *c)
{
    if (!c)
        return;
    gw_commands_stop(c);
    c->freed = 1;
    maybe_free(c);
}
