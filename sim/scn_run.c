/* The rehearsal block of a scenario (sim run): platform, gateway, broker,
 * duration, speed, sites, metrics, expect. Everything `sim run` needs beyond
 * the devices; parsed after the devices so expectations can be checked against
 * the scenario's ids. */
#include "sim/expect.h"
#include "sim/scenario.h"
#include "sim/scn.h"

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *const level_names[] = {"none", "blue", "yellow", "orange", "red"};

int sim_level_parse(const char *s)
{
    for (int i = 1; i <= 4; i++)
        if (s && strcmp(s, level_names[i]) == 0)
            return i;
    return 0;
}

const char *sim_level_name(int level)
{
    return level >= 0 && level <= 4 ? level_names[level] : "?";
}

static const char *const run_keys[] = {"platform", "gateway", "broker",  "duration",
                                       "speed",    "sites",   "metrics", "expect"};

/* Stores the node of a run key; 1 if k is one, 0 if not. */
int sim_scn_run_key(sim_scn_run_nodes *rn, const char *k, yaml_node_t *vn)
{
    yaml_node_t **slots[] = {&rn->platform, &rn->gateway, &rn->broker,  &rn->duration,
                             &rn->speed,    &rn->sites,   &rn->metrics, &rn->expect};
    for (size_t i = 0; i < sizeof run_keys / sizeof run_keys[0]; i++)
        if (!strcmp(k, run_keys[i])) {
            *slots[i] = vn;
            return 1;
        }
    return 0;
}

void sim_scn_run_free(sim_run_conf *rc)
{
    if (!rc)
        return;
    for (int i = 0; i < rc->nexpects; i++)
        free(rc->expects[i].devs);
    free(rc->expects);
    free(rc->metrics);
    free(rc);
}

/* Calls fn for every device id of the scenario until it returns nonzero. */
static int each_device(const sim_scenario *s, int (*fn)(void *, const char *), void *arg)
{
    char id[SIM_NAME_MAX];
    for (int i = 0; i < s->ngroups; i++)
        for (uint32_t k = 0; k < s->groups[i].count; k++) {
            if (sim_format_id(s->groups[i].id_tmpl, s->groups[i].first + k, id, sizeof id))
                continue;
            int r = fn(arg, id);
            if (r)
                return r;
        }
    return 0;
}

static int is_id(void *arg, const char *id)
{
    return strcmp(arg, id) == 0;
}

struct prefix_count {
    const char *prefix;
    uint32_t n;
};

static int count_prefix(void *arg, const char *id)
{
    struct prefix_count *pc = arg;
    if (!strncmp(id, pc->prefix, strlen(pc->prefix)))
        pc->n++;
    return 0;
}

/* Every key of m must be in the NULL-terminated list. */
static int only_keys(sim_scn *c, yaml_node_t *m, const char *what, const char *const *keys)
{
    if (!m || m->type != YAML_MAPPING_NODE)
        return sim_scn_err(c, m, "%s: expected a mapping", what);
    for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++) {
        const char *k = sim_scn_scalar(sim_scn_node(c, pr->key));
        int ok = 0;
        for (int i = 0; k && keys[i]; i++)
            ok |= !strcmp(k, keys[i]);
        if (!ok) {
            char list[256];
            size_t n = 0;
            list[0] = 0;
            for (int i = 0; keys[i] && n < sizeof list; i++)
                n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", keys[i]);
            return sim_scn_err(c, sim_scn_node(c, pr->key), "%s: unknown key '%s' (%s)", what,
                               k ? k : "?", list);
        }
    }
    return SIM_OK;
}

static int add_dev(sim_scn *c, yaml_node_t *at, const sim_scenario *s, sim_expect *x,
                   const char *id)
{
    if (!each_device(s, is_id, (void *)id))
        return sim_scn_err(c, at, "device '%s' is not in the scenario", id);
    char(*nd)[SIM_NAME_MAX] = realloc(x->devs, (size_t)(x->ndevs + 1) * sizeof *x->devs);
    if (!nd)
        return SIM_ENOMEM;
    x->devs = nd;
    snprintf(x->devs[x->ndevs++], SIM_NAME_MAX, "%s", id);
    return SIM_OK;
}

/* A device id or a list of them into x->devs. */
static int parse_devlist(sim_scn *c, yaml_node_t *v, const sim_scenario *s, sim_expect *x)
{
    if (v->type == YAML_SCALAR_NODE)
        return add_dev(c, v, s, x, sim_scn_scalar(v));
    if (v->type != YAML_SEQUENCE_NODE)
        return sim_scn_err(c, v, "device: a device id or a list of ids");
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         it++) {
        yaml_node_t *n = sim_scn_node(c, *it);
        if (!sim_scn_scalar(n))
            return sim_scn_err(c, n, "device: a device id or a list of ids");
        int rc = add_dev(c, n, s, x, sim_scn_scalar(n));
        if (rc)
            return rc;
    }
    return SIM_OK;
}

static int parse_site(sim_scn *c, yaml_node_t *v, yaml_node_t *sites, const sim_scenario *s,
                      sim_expect *x)
{
    if (sim_scn_str(c, v, "site", x->site, sizeof x->site))
        return SIM_EINVAL;
    yaml_node_t *members = sim_scn_get(c, sites, x->site);
    if (!members)
        return sim_scn_err(c, v, "site '%s' is not under sites:", x->site);
    return parse_devlist(c, members, s, x);
}

/* "holding:0", "input:3" or a bare address (holding). */
static int parse_regref(sim_scn *c, yaml_node_t *v, int *table, int *addr)
{
    const char *s = sim_scn_scalar(v);
    static const char *const tabs[] = {"coil", "discrete", "holding", "input"};
    long a;
    char *end;
    *table = SIM_TAB_HOLDING;
    if (!s)
        return sim_scn_err(c, v, "register: holding:ADDR, input:ADDR or ADDR");
    const char *colon = strchr(s, ':');
    if (colon) {
        int t = -1;
        for (int i = 0; i < 4; i++)
            if ((size_t)(colon - s) == strlen(tabs[i]) && !strncmp(s, tabs[i], strlen(tabs[i])))
                t = i;
        if (t < 0)
            return sim_scn_err(c, v,
                               "register: holding:ADDR, input:ADDR, coil:ADDR or discrete:ADDR");
        *table = t;
        s = colon + 1;
    }
    errno = 0;
    a = strtol(s, &end, 0);
    if (end == s || *end || errno || a < 0 || a > 65535)
        return sim_scn_err(c, v, "register: address 0..65535");
    *addr = (int)a;
    return SIM_OK;
}

static int parse_level(sim_scn *c, yaml_node_t *v, int *out)
{
    const char *s = sim_scn_scalar(v);
    long l;
    *out = sim_level_parse(s);
    if (*out)
        return SIM_OK;
    if (s && sim_scn_int(c, v, "level", 1, 4, &l) == SIM_OK) {
        *out = (int)l;
        return SIM_OK;
    }
    return sim_scn_err(c, v, "level: blue, yellow, orange, red (or 1..4)");
}

static const struct {
    const char *name;
    sim_expect_kind kind;
    const char *keys[10];
} expect_kinds[] = {
    {"alarm", SIM_X_ALARM, {"device", "site", "rule", "level", "within", "of", "after", NULL}},
    {"no_alarm", SIM_X_NO_ALARM, {"device", "site", "rule", "level", "all", NULL}},
    {"no_reading_lost", SIM_X_NO_READING_LOST, {"device", "site", "all", NULL}},
    {"online", SIM_X_ONLINE, {"count", "all", "type", "prefix", "device", "site", NULL}},
    {"event", SIM_X_EVENT, {"device", "site", "event", "active", "within", "of", NULL}},
    {"no_event", SIM_X_NO_EVENT, {"device", "site", "event", NULL}},
    {"lead_time", SIM_X_LEAD_TIME, {"device", "site", "rule", "level", "at_least", "after", NULL}},
    {"no_forecast", SIM_X_NO_FORECAST, {"device", "site", "rule", "level", "all", NULL}},
};

static void expect_label(const sim_expect *x, const char *kname)
{
    char *l = (char *)x->label;
    size_t cap = sizeof x->label, n;
    n = (size_t)snprintf(l, cap, "%s", kname);
#define ADD(...)                                                                                   \
    do {                                                                                           \
        if (n < cap)                                                                               \
            n += (size_t)snprintf(l + n, cap - n, __VA_ARGS__);                                    \
    } while (0)
    if (x->site[0])
        ADD(" site %s", x->site);
    else if (x->ndevs == 1)
        ADD(" %s", x->devs[0]);
    else if (x->ndevs > 1)
        ADD(" %s..(%d devices)", x->devs[0], x->ndevs);
    else if (x->kind != SIM_X_ONLINE)
        ADD(" all");
    if (x->kind == SIM_X_EVENT || x->kind == SIM_X_NO_EVENT)
        ADD(" %s%s", x->event, x->ended ? " ended" : "");
    if (x->rule[0])
        ADD(" rule %s", x->rule);
    if (x->kind == SIM_X_ALARM || x->kind == SIM_X_LEAD_TIME ||
        ((x->kind == SIM_X_NO_ALARM || x->kind == SIM_X_NO_FORECAST) && x->level > 1))
        ADD(" >= %s", sim_level_name(x->level));
    if (x->kind == SIM_X_LEAD_TIME)
        ADD(" at least %gs ahead", x->at_least);
    if (x->kind == SIM_X_ONLINE) {
        ADD(" %u devices", x->count);
        if (x->type[0])
            ADD(" type %s", x->type);
        if (x->prefix[0])
            ADD(" prefix %s", x->prefix);
    }
    if (x->within >= 0)
        ADD(" within %gs", x->within);
    if (x->has_after)
        ADD(" after %s crosses %g", x->after_metric, x->crosses);
    else if (x->of >= 0)
        ADD(" of t=%gs", x->of);
#undef ADD
}

static int parse_expect(sim_scn *c, yaml_node_t *item, const sim_scenario *s, yaml_node_t *sites,
                        sim_expect *x)
{
    x->line = (int)item->start_mark.line + 1;
    x->within = -1;
    x->of = -1;
    x->after_addr = -1;
    x->level = 1;
    if (item->type != YAML_MAPPING_NODE ||
        item->data.mapping.pairs.top - item->data.mapping.pairs.start != 1)
        return sim_scn_err(c, item,
                           "expect: each item is one of {alarm: ...}, {no_alarm: ...}, "
                           "{no_reading_lost: ...}, {online: ...}, {event: ...}, {no_event: ...}, "
                           "{lead_time: ...}, {no_forecast: ...}");
    const char *kname = sim_scn_scalar(sim_scn_node(c, item->data.mapping.pairs.start->key));
    yaml_node_t *m = sim_scn_node(c, item->data.mapping.pairs.start->value);
    size_t ki;
    for (ki = 0; ki < sizeof expect_kinds / sizeof expect_kinds[0]; ki++)
        if (kname && !strcmp(kname, expect_kinds[ki].name))
            break;
    if (ki == sizeof expect_kinds / sizeof expect_kinds[0])
        return sim_scn_err(c, item,
                           "expect: unknown kind '%s' (alarm, no_alarm, no_reading_lost, "
                           "online, event, no_event, lead_time, no_forecast)",
                           kname ? kname : "?");
    x->kind = expect_kinds[ki].kind;
    if (only_keys(c, m, kname, expect_kinds[ki].keys))
        return SIM_EINVAL;
    int all = 0, rc;
    yaml_node_t *v;
    if ((v = sim_scn_get(c, m, "device")) && sim_scn_get(c, m, "site"))
        return sim_scn_err(c, v, "%s: give device or site, not both", kname);
    if ((v = sim_scn_get(c, m, "device")) && (rc = parse_devlist(c, v, s, x)))
        return rc;
    if ((v = sim_scn_get(c, m, "site")) && (rc = parse_site(c, v, sites, s, x)))
        return rc;
    if ((v = sim_scn_get(c, m, "all")) && sim_scn_bool(c, v, "all", &all))
        return SIM_EINVAL;
    if ((v = sim_scn_get(c, m, "rule")) && sim_scn_str(c, v, "rule", x->rule, sizeof x->rule))
        return SIM_EINVAL;
    if ((v = sim_scn_get(c, m, "level")) && parse_level(c, v, &x->level))
        return SIM_EINVAL;
    if ((v = sim_scn_get(c, m, "within")) &&
        (sim_scn_num(c, v, "within", &x->within) || x->within < 0))
        return sim_scn_err(c, v, "within: a duration >= 0");
    if ((v = sim_scn_get(c, m, "of")) && (sim_scn_num(c, v, "of", &x->of) || x->of < 0))
        return sim_scn_err(c, v, "of: a scenario time >= 0");
    if ((v = sim_scn_get(c, m, "event")) && sim_scn_str(c, v, "event", x->event, sizeof x->event))
        return SIM_EINVAL;
    if ((v = sim_scn_get(c, m, "active"))) {
        int active = 1;
        if (sim_scn_bool(c, v, "active", &active))
            return SIM_EINVAL;
        x->ended = !active;
    }
    if ((v = sim_scn_get(c, m, "type")) && sim_scn_str(c, v, "type", x->type, sizeof x->type))
        return SIM_EINVAL;
    if ((v = sim_scn_get(c, m, "prefix")) &&
        sim_scn_str(c, v, "prefix", x->prefix, sizeof x->prefix))
        return SIM_EINVAL;
    if ((v = sim_scn_get(c, m, "after"))) {
        static const char *const after_keys[] = {"metric", "crosses", "register", NULL};
        yaml_node_t *w;
        if (only_keys(c, v, "after", after_keys))
            return SIM_EINVAL;
        if (!(w = sim_scn_get(c, v, "metric")) ||
            sim_scn_str(c, w, "metric", x->after_metric, sizeof x->after_metric))
            return sim_scn_err(c, w ? w : v, "after: needs metric: NAME");
        if (!(w = sim_scn_get(c, v, "crosses")) || sim_scn_num(c, w, "crosses", &x->crosses))
            return sim_scn_err(c, w ? w : v, "after: needs crosses: VALUE");
        if ((w = sim_scn_get(c, v, "register")) &&
            parse_regref(c, w, &x->after_table, &x->after_addr))
            return SIM_EINVAL;
        x->has_after = 1;
        if (x->ndevs == 0)
            return sim_scn_err(c, v, "after: needs the alarm's device or site");
    }
    if ((v = sim_scn_get(c, m, "at_least")) &&
        (sim_scn_num(c, v, "at_least", &x->at_least) || x->at_least < 0))
        return sim_scn_err(c, v, "at_least: a duration >= 0");
    if (x->kind == SIM_X_LEAD_TIME && (!x->has_after || !sim_scn_get(c, m, "at_least")))
        return sim_scn_err(c, m,
                           "lead_time: needs at_least: DURATION and after: {metric, crosses}");
    if ((x->kind == SIM_X_EVENT || x->kind == SIM_X_NO_EVENT) && !x->event[0])
        return sim_scn_err(c, m, "%s: needs event: NAME (fire_alarm, ...)", kname);
    if ((x->kind == SIM_X_ALARM || x->kind == SIM_X_EVENT || x->kind == SIM_X_NO_EVENT) &&
        x->ndevs == 0)
        return sim_scn_err(c, m, "%s: needs device or site", kname);
    if (x->kind == SIM_X_NO_READING_LOST && !all && x->ndevs == 0)
        return sim_scn_err(c, m, "no_reading_lost: give device, site or all: true");
    if (x->kind == SIM_X_ONLINE) {
        if ((v = sim_scn_get(c, m, "count"))) {
            long l;
            if (sim_scn_int(c, v, "count", 1, 100000000, &l))
                return SIM_EINVAL;
            x->count = (uint32_t)l;
        } else if (x->ndevs) {
            x->count = (uint32_t)x->ndevs;
        } else if (x->type[0]) {
            return sim_scn_err(c, m, "online: with type, give count (the sim does not know types)");
        } else {
            struct prefix_count pc = {x->prefix, 0};
            each_device(s, count_prefix, &pc);
            x->count = pc.n;
            if (pc.n == 0)
                return sim_scn_err(c, m, "online: no device of the scenario has prefix '%s'",
                                   x->prefix);
        }
    }
    expect_label(x, kname);
    return SIM_OK;
}

struct expect_arg {
    const sim_scenario *s;
    yaml_node_t *sites;
};

static int expect_item(sim_scn *c, yaml_node_t *m, void *item, int i, void *arg)
{
    const struct expect_arg *ea = arg;
    return parse_expect(c, m, ea->s, ea->sites, item);
}

/* A path the scenario gives: as written when absolute (or when the scenario
 * came from no file), else relative to the scenario's folder. 0, or -1 when
 * it does not fit. */
static int scn_path(sim_scn *c, const char *p, char *out, size_t cap)
{
    const char *dir = sim_scn_file_dir(c);
    int n = p[0] == '/' || !dir ? snprintf(out, cap, "%s", p) : snprintf(out, cap, "%s/%s", dir, p);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* name in the folder of the running executable (build/sim -> build/gateway):
 * the gateway built with this sim, wherever the rehearsal is started from.
 * Falls back to name alone (looked up in PATH) without /proc. */
static int beside_self(const char *name, char *out, size_t cap)
{
    char self[512];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    char *slash = n > 0 ? memchr(self, '/', (size_t)n) : NULL;
    if (!slash) {
        int k = snprintf(out, cap, "%s", name);
        return k < 0 || (size_t)k >= cap ? -1 : 0;
    }
    self[n] = 0;
    *strrchr(self, '/') = 0;
    int k = snprintf(out, cap, "%s/%s", self, name);
    return k < 0 || (size_t)k >= cap ? -1 : 0;
}

int sim_scn_run_parse(sim_scn *c, sim_scenario *s, const sim_scn_run_nodes *rn)
{
    yaml_node_t *v;
    if (!rn->platform && !rn->gateway && !rn->broker && !rn->duration && !rn->speed &&
        !rn->expect && !rn->sites && !rn->metrics)
        return SIM_OK;
    sim_run_conf *rc = calloc(1, sizeof *rc);
    if (!rc)
        return SIM_ENOMEM;
    s->run = rc;
    snprintf(rc->topic_prefix, sizeof rc->topic_prefix, "iot");
    rc->duration = 300;
    if (rn->platform) {
        static const char *const keys[] = {"broker", "topic_prefix", "gateway_id", NULL};
        if (only_keys(c, rn->platform, "platform", keys))
            return SIM_EINVAL;
        if ((v = sim_scn_get(c, rn->platform, "broker")) &&
            sim_scn_str(c, v, "broker", rc->broker, sizeof rc->broker))
            return SIM_EINVAL;
        if ((v = sim_scn_get(c, rn->platform, "topic_prefix")) &&
            sim_scn_str(c, v, "topic_prefix", rc->topic_prefix, sizeof rc->topic_prefix))
            return SIM_EINVAL;
        if ((v = sim_scn_get(c, rn->platform, "gateway_id")) &&
            sim_scn_str(c, v, "gateway_id", rc->gateway_id, sizeof rc->gateway_id))
            return SIM_EINVAL;
        if (!rc->broker[0])
            return sim_scn_err(c, rn->platform, "platform: needs broker: tcp://HOST:PORT");
    }
    if (rn->gateway) {
        static const char *const keys[] = {"binary", "config", NULL};
        char cfg[512] = "";
        if (only_keys(c, rn->gateway, "gateway", keys))
            return SIM_EINVAL;
        char bin[256] = "";
        if ((v = sim_scn_get(c, rn->gateway, "binary")) &&
            sim_scn_str(c, v, "binary", bin, sizeof bin))
            return SIM_EINVAL;
        if (bin[0] ? scn_path(c, bin, rc->gw_binary, sizeof rc->gw_binary)
                   : beside_self("gateway", rc->gw_binary, sizeof rc->gw_binary))
            return sim_scn_err(c, v ? v : rn->gateway, "binary: path too long");
        if (!(v = sim_scn_get(c, rn->gateway, "config")) ||
            sim_scn_str(c, v, "config", cfg, sizeof cfg))
            return sim_scn_err(c, v ? v : rn->gateway, "gateway: needs config: FILE");
        if (scn_path(c, cfg, rc->gw_config, sizeof rc->gw_config))
            return sim_scn_err(c, v, "config: path too long");
    }
    if (rn->broker) {
        static const char *const keys[] = {"start", "port", NULL};
        long l;
        if (only_keys(c, rn->broker, "broker", keys))
            return SIM_EINVAL;
        if ((v = sim_scn_get(c, rn->broker, "start")) &&
            sim_scn_bool(c, v, "start", &rc->broker_start))
            return SIM_EINVAL;
        if ((v = sim_scn_get(c, rn->broker, "port"))) {
            if (sim_scn_int(c, v, "port", 1, 65535, &l))
                return SIM_EINVAL;
            rc->broker_port = (uint32_t)l;
        }
    }
    if ((rc->gw_binary[0] || rc->broker_start || rn->expect) && !rc->broker[0])
        return sim_scn_err(c,
                           rn->gateway  ? rn->gateway
                           : rn->broker ? rn->broker
                                        : rn->expect,
                           "sim run needs platform: {broker: tcp://HOST:PORT}");
    if (rn->duration && (sim_scn_num(c, rn->duration, "duration", &rc->duration) ||
                         !(rc->duration > 0) || rc->duration > 366 * 86400.0))
        return sim_scn_err(c, rn->duration, "duration: a duration > 0 (5m)");
    if (rn->speed &&
        (sim_scn_num(c, rn->speed, "speed", &rc->speed) || !(rc->speed > 0) || rc->speed > 1e6))
        return sim_scn_err(c, rn->speed, "speed: a number in (0, 1e6]");
    if (rn->sites && rn->sites->type != YAML_MAPPING_NODE)
        return sim_scn_err(c, rn->sites, "sites: a mapping of site name -> device id or list");
    if (rn->metrics) {
        if (rn->metrics->type != YAML_MAPPING_NODE)
            return sim_scn_err(c, rn->metrics, "metrics: a mapping of metric name -> holding:ADDR");
        int n = (int)(rn->metrics->data.mapping.pairs.top - rn->metrics->data.mapping.pairs.start);
        rc->metrics = calloc((size_t)(n ? n : 1), sizeof *rc->metrics);
        if (!rc->metrics)
            return SIM_ENOMEM;
        for (int i = 0; i < n; i++) {
            yaml_node_pair_t *pr = rn->metrics->data.mapping.pairs.start + i;
            sim_metric_map *mm = &rc->metrics[rc->nmetrics++];
            if (sim_scn_str(c, sim_scn_node(c, pr->key), "metrics", mm->name, sizeof mm->name) ||
                parse_regref(c, sim_scn_node(c, pr->value), &mm->table, &mm->addr))
                return SIM_EINVAL;
        }
    }
    if (rn->expect) {
        struct expect_arg ea = {s, rn->sites};
        void *items;
        int r = sim_scn_list(c, rn->expect, "expect: a list", sizeof *rc->expects, &items,
                             &rc->nexpects, expect_item, &ea);
        rc->expects = items;
        if (r)
            return r;
    }
    return SIM_OK;
}