/* Rule file loader: YAML node tree -> gw_rule definitions. The generic key
 * checks (unknown keys, types, bounds) come from the cfgmap tables below; what
 * the tables cannot say (keys valid only for some kinds, level names,
 * raise/clear consistency, bucket alignment) is checked here, always naming
 * the file, line and key path. */
#include "gateway/rules_load.h"

#include "base/cfgmap.h"
#include "base/yamldoc.h"

#include <ctype.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[] = {"threshold",    "window", "combined", "stale", "flatline",
                                         "out_of_range", "event",  "forecast", NULL};
static const char *const dir_names[] = {"above", "below", NULL};
static const char *const fn_names[] = {"sum", "avg", "min", "max", "rise", NULL};
static const char *const cond_fn_names[] = {"sum", "avg", "min", "max", "rise", "value", NULL};
static const char *const input_names[] = {"increment", "cumulative", NULL};
static const char *const level_names[] = {"none", "blue", "yellow", "orange", "red", NULL};
static const char *const combine_names[] = {"all", "any", NULL};
static const char *const action_names[] = {"modbus_write", "mqtt_publish", "command", NULL};
static const char *const on_names[] = {"raised", "updated", "cleared", "acked", NULL};

typedef struct rule_cfg {
    char id[GW_KEY_MAX];
    char description[GW_RULE_DESC_MAX];
    int kind;
    char metric[GW_KEY_MAX];
    char event[GW_KEY_MAX];
    char subject[GW_ID_MAX];
    int dir, fn, input, level, combine;
    int64_t raise_for, clear_for, window, buckets, after, flat_for, auto_clear, fast_interval;
    double epsilon, min, max;
    const gw_ynode *devices, *types, *sites, *groups, *levels, *conditions, *actions, *update;
    char alarm_rule[GW_KEY_MAX];
    int64_t horizon, move, min_points;
    double min_rate, confidence;
    const gw_ynode *rain;
} rule_cfg;

#define RO(f) offsetof(rule_cfg, f)
#define NOB 1, 0 /* no bounds */
static const gw_cfgkey rule_keys[] = {
    {"id", GW_CT_STR, NULL, NOB, RO(id), GW_KEY_MAX, NULL, GW_CF_REQUIRED, "rule id"},
    {"kind", GW_CT_ENUM, NULL, NOB, RO(kind), 0, kind_names, GW_CF_REQUIRED, "rule kind"},
    {"description", GW_CT_STR, "", NOB, RO(description), GW_RULE_DESC_MAX, NULL, 0,
     "what the alarm means (UTF-8); placeholders {value} {threshold} {unit} {level} {device} "
     "{site}"},
    {"devices", GW_CT_NODE, NULL, NOB, RO(devices), 0, NULL, 0, "target device ids"},
    {"types", GW_CT_NODE, NULL, NOB, RO(types), 0, NULL, 0, "target device types"},
    {"sites", GW_CT_NODE, NULL, NOB, RO(sites), 0, NULL, 0, "target sites"},
    {"groups", GW_CT_NODE, NULL, NOB, RO(groups), 0, NULL, 0, "target groups"},
    {"metric", GW_CT_STR, "", NOB, RO(metric), GW_KEY_MAX, NULL, 0, "metric key"},
    {"direction", GW_CT_ENUM, "above", NOB, RO(dir), 0, dir_names, 0, "above or below"},
    {"levels", GW_CT_NODE, NULL, NOB, RO(levels), 0, NULL, 0, "graded levels"},
    {"level", GW_CT_ENUM, "blue", NOB, RO(level), 0, level_names, 0, "alarm level"},
    {"raise_for", GW_CT_DURATION, "0", 0, 86400 * 7, RO(raise_for), 0, NULL, 0, "debounce"},
    {"clear_for", GW_CT_DURATION, "0", 0, 86400 * 7, RO(clear_for), 0, NULL, 0, "debounce"},
    {"fn", GW_CT_ENUM, "sum", NOB, RO(fn), 0, fn_names, 0, "window aggregate"},
    {"input", GW_CT_ENUM, "increment", NOB, RO(input), 0, input_names, 0, "counter or increment"},
    {"window", GW_CT_DURATION, "0", 0, 86400 * 31, RO(window), 0, NULL, 0, "longest window"},
    {"buckets", GW_CT_INT, "48", 1, GW_RULE_MAX_BUCKETS, RO(buckets), 0, NULL, 0, "ring size"},
    {"combine", GW_CT_ENUM, "all", NOB, RO(combine), 0, combine_names, 0, "all (AND) or any"},
    {"subject", GW_CT_STR, "", NOB, RO(subject), GW_ID_MAX, NULL, 0, "alarm device"},
    {"conditions", GW_CT_NODE, NULL, NOB, RO(conditions), 0, NULL, 0, "combined conditions"},
    {"after", GW_CT_DURATION, "0", 0, 86400 * 31, RO(after), 0, NULL, 0, "stale after"},
    {"for", GW_CT_DURATION, "0", 0, 86400 * 31, RO(flat_for), 0, NULL, 0, "flat for"},
    {"epsilon", GW_CT_DOUBLE, "0", 0, 1e12, RO(epsilon), 0, NULL, 0, "flatline tolerance"},
    {"min", GW_CT_DOUBLE, "0", NOB, RO(min), 0, NULL, 0, "range minimum"},
    {"max", GW_CT_DOUBLE, "0", NOB, RO(max), 0, NULL, 0, "range maximum"},
    {"event", GW_CT_STR, "", NOB, RO(event), GW_KEY_MAX, NULL, 0, "event kind"},
    {"auto_clear", GW_CT_DURATION, "0", 0, 86400 * 31, RO(auto_clear), 0, NULL, 0, "clear after"},
    {"update", GW_CT_NODE, NULL, NOB, RO(update), 0, NULL, 0, "value update rate limit"},
    {"fast_interval", GW_CT_DURATION, "0", 0, 86400, RO(fast_interval), 0, NULL, 0, "fast poll"},
    {"actions", GW_CT_NODE, NULL, NOB, RO(actions), 0, NULL, 0, "local actions"},
    {"alarm_rule", GW_CT_STR, "", NOB, RO(alarm_rule), GW_KEY_MAX, NULL, 0, "forecast: its alarm"},
    {"horizon", GW_CT_DURATION, "60m", 1, 86400, RO(horizon), 0, NULL, 0, "forecast reach"},
    {"move", GW_CT_DURATION, "2m", 0, 86400, RO(move), 0, NULL, 0, "forecast update step"},
    {"min_points", GW_CT_INT, "6", 3, GW_FC_POINTS, RO(min_points), 0, NULL, 0, "fit size"},
    {"min_rate", GW_CT_DOUBLE, "0.05", 1e-9, 1e9, RO(min_rate), 0, NULL, 0, "rise per minute"},
    {"confidence", GW_CT_DOUBLE, "0.99", 0.5, 1, RO(confidence), 0, NULL, 0, "trend test"},
    {"rain", GW_CT_NODE, NULL, NOB, RO(rain), 0, NULL, 0, "forecast: linked rain gauge"},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, 0, NULL},
};

/* Keys each kind accepts besides the common ones. */
static const char *const common_keys[] = {
    "id",     "kind",    "devices",       "types",       "sites", "groups",
    "update", "actions", "fast_interval", "description", NULL};
static const char *const kind_keys[][16] = {
    [GW_RK_THRESHOLD] = {"metric", "direction", "levels", "raise_for", "clear_for", NULL},
    [GW_RK_WINDOW] = {"metric", "direction", "levels", "raise_for", "clear_for", "fn", "input",
                      "window", "buckets", NULL},
    [GW_RK_COMBINED] = {"metric", "level", "raise_for", "clear_for", "combine", "subject",
                        "conditions", NULL},
    [GW_RK_STALE] = {"metric", "level", "after", NULL},
    [GW_RK_FLATLINE] = {"metric", "level", "for", "epsilon", "raise_for", "clear_for", NULL},
    [GW_RK_RANGE] = {"metric", "level", "min", "max", "raise_for", "clear_for", NULL},
    [GW_RK_EVENT] = {"level", "event", "auto_clear", NULL},
    [GW_RK_FORECAST] = {"metric", "direction", "levels", "raise_for", "clear_for", "alarm_rule",
                        "window", "horizon", "move", "min_points", "min_rate", "confidence", "rain",
                        NULL},
};

typedef struct rain_cfg {
    char device[GW_ID_MAX];
    char metric[GW_KEY_MAX];
    int input;
    int64_t window, buckets;
    double above, gain;
} rain_cfg;

#define RA(f) offsetof(rain_cfg, f)
static const gw_cfgkey rain_keys[] = {
    {"device", GW_CT_STR, NULL, NOB, RA(device), GW_ID_MAX, NULL, GW_CF_REQUIRED, "rain gauge"},
    {"metric", GW_CT_STR, "rain", NOB, RA(metric), GW_KEY_MAX, NULL, 0, "rain metric"},
    {"input", GW_CT_ENUM, "increment", NOB, RA(input), 0, input_names, 0, "counter or increment"},
    {"window", GW_CT_DURATION, "10m", 1, 86400, RA(window), 0, NULL, 0, "intensity window"},
    {"buckets", GW_CT_INT, "10", 1, GW_RULE_MAX_BUCKETS, RA(buckets), 0, NULL, 0, "ring size"},
    {"above", GW_CT_DOUBLE, NULL, 1e-9, 1e6, RA(above), 0, NULL, GW_CF_REQUIRED, "heavy, mm/h"},
    {"gain", GW_CT_DOUBLE, NULL, 1e-9, 1e6, RA(gain), 0, NULL, GW_CF_REQUIRED, "rise per mm"},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, 0, NULL},
};

typedef struct level_cfg {
    double raise, clear;
    int64_t window;
} level_cfg;

#define LO(f) offsetof(level_cfg, f)
static const gw_cfgkey level_keys[] = {
    {"raise", GW_CT_DOUBLE, NULL, NOB, LO(raise), 0, NULL, GW_CF_REQUIRED, "raise threshold"},
    {"clear", GW_CT_DOUBLE, NULL, NOB, LO(clear), 0, NULL, 0, "clear threshold"},
    {"window", GW_CT_DURATION, "0", 0, 86400 * 31, LO(window), 0, NULL, 0, "level window"},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, 0, NULL},
};

typedef struct cond_cfg {
    char device[GW_ID_MAX];
    char metric[GW_KEY_MAX];
    int fn, input;
    int64_t window, buckets;
    double above, below, clear;
} cond_cfg;

#define CO(f) offsetof(cond_cfg, f)
static const gw_cfgkey cond_keys[] = {
    {"device", GW_CT_STR, NULL, NOB, CO(device), GW_ID_MAX, NULL, GW_CF_REQUIRED, "device id"},
    {"metric", GW_CT_STR, NULL, NOB, CO(metric), GW_KEY_MAX, NULL, GW_CF_REQUIRED, "metric"},
    {"fn", GW_CT_ENUM, "value", NOB, CO(fn), 0, cond_fn_names, 0, "aggregate"},
    {"input", GW_CT_ENUM, "increment", NOB, CO(input), 0, input_names, 0, "input"},
    {"window", GW_CT_DURATION, "0", 0, 86400 * 31, CO(window), 0, NULL, 0, "window"},
    {"buckets", GW_CT_INT, "12", 1, GW_RULE_MAX_BUCKETS, CO(buckets), 0, NULL, 0, "ring size"},
    {"above", GW_CT_DOUBLE, NULL, NOB, CO(above), 0, NULL, 0, "true when >= this"},
    {"below", GW_CT_DOUBLE, NULL, NOB, CO(below), 0, NULL, 0, "true when <= this"},
    {"clear", GW_CT_DOUBLE, NULL, NOB, CO(clear), 0, NULL, 0, "hysteresis"},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, 0, NULL},
};

typedef struct action_cfg {
    int kind;
    const gw_ynode *on, *argv;
    char device[GW_ID_MAX];
    char point[GW_KEY_MAX];
    int64_t reg, timeout;
    double raise_value, clear_value;
    char topic[GW_TOPIC_MAX];
} action_cfg;

#define AO(f) offsetof(action_cfg, f)
static const gw_cfgkey action_keys[] = {
    {"kind", GW_CT_ENUM, NULL, NOB, AO(kind), 0, action_names, GW_CF_REQUIRED, "action kind"},
    {"on", GW_CT_NODE, NULL, NOB, AO(on), 0, NULL, 0, "transitions that run it"},
    {"device", GW_CT_STR, "", NOB, AO(device), GW_ID_MAX, NULL, 0, "modbus device"},
    {"point", GW_CT_STR, "", NOB, AO(point), GW_KEY_MAX, NULL, 0, "profile point"},
    {"register", GW_CT_INT, "-1", -1, 65535, AO(reg), 0, NULL, 0, "holding register"},
    {"raise_value", GW_CT_DOUBLE, "1", NOB, AO(raise_value), 0, NULL, 0, "written on raise"},
    {"clear_value", GW_CT_DOUBLE, "0", NOB, AO(clear_value), 0, NULL, 0, "written on clear"},
    {"topic", GW_CT_STR, "", NOB, AO(topic), GW_TOPIC_MAX, NULL, 0, "MQTT topic"},
    {"argv", GW_CT_NODE, NULL, NOB, AO(argv), 0, NULL, 0, "command and arguments"},
    {"timeout", GW_CT_DURATION, "10", 0.001, 3600, AO(timeout), 0, NULL, 0, "command timeout"},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, 0, NULL},
};

typedef struct update_cfg {
    double min_change;
    int64_t min_interval;
} update_cfg;

static const gw_cfgkey update_keys[] = {
    {"min_change", GW_CT_DOUBLE, "0", 0, 1e12, offsetof(update_cfg, min_change), 0, NULL, 0,
     "smallest value change reported"},
    {"min_interval", GW_CT_DURATION, "0", 0, 86400, offsetof(update_cfg, min_interval), 0, NULL, 0,
     "spacing of value updates"},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, 0, NULL},
};

typedef struct top_cfg {
    int64_t version;
    const gw_ynode *rules;
} top_cfg;

static const gw_cfgkey top_keys[] = {
    {"version", GW_CT_INT, "1", 1, 1, offsetof(top_cfg, version), 0, NULL, 0, "format version"},
    {"rules", GW_CT_NODE, NULL, NOB, offsetof(top_cfg, rules), 0, NULL, GW_CF_REQUIRED, "rules"},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, 0, NULL},
};

static int in_list(const char *const *list, const char *s)
{
    for (; *list; list++)
        if (strcmp(*list, s) == 0)
            return 1;
    return 0;
}

static int key_line(const gw_ynode *map, const char *key)
{
    for (size_t i = 0; map && map->type == GW_Y_MAP && i < map->n; i++)
        if (strcmp(map->keys[i], key) == 0)
            return map->key_lines[i];
    return map ? map->line : 0;
}

/* Writes "FILE:LINE: message" for node (NULL: unknown position). */
__attribute__((format(printf, 4, 5))) static int
node_err(char *err, size_t errlen, const gw_ynode *node, const char *fmt, ...)
{
    int n = snprintf(err, errlen, "%s:%d: ", node ? node->file : "?", node ? node->line : 0);
    if (n >= 0 && (size_t)n < errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return GW_EINVAL;
}

#define ERR(node, ...) return node_err(err, errlen, (node), __VA_ARGS__)

/* Reads a scalar or a list of scalars into targets of one kind. */
static int load_targets(gw_rule *r, const gw_ynode *node, int kind, const char *path,
                        const char *key, char *err, size_t errlen)
{
    if (!node)
        return GW_OK;
    size_t n = node->type == GW_Y_SEQ ? node->n : 1;
    if (node->type == GW_Y_MAP)
        ERR(node, "key '%s.%s' must be a name or a list of names", path, key);
    for (size_t i = 0; i < n; i++) {
        const gw_ynode *it = node->type == GW_Y_SEQ ? node->kids[i] : node;
        if (it->type != GW_Y_SCALAR || !it->str[0])
            ERR(it, "key '%s.%s' must be a name or a list of names", path, key);
        if (r->n_targets == GW_RULE_MAX_TARGETS)
            ERR(it, "key '%s.%s': at most %d targets per rule", path, key, GW_RULE_MAX_TARGETS);
        gw_rule_target *t = &r->targets[r->n_targets++];
        t->kind = kind;
        if (gw_strlcpy(t->name, it->str, sizeof(t->name)))
            ERR(it, "key '%s.%s': name longer than %d characters", path, key, GW_ID_MAX - 1);
    }
    return GW_OK;
}

static int load_levels(gw_rule *r, const rule_cfg *c, const gw_ynode *rn, const char *path,
                       char *err, size_t errlen)
{
    const gw_ynode *lv = c->levels;
    if (!lv)
        ERR(rn, "missing required key '%s.levels'", path);
    if (lv->type != GW_Y_MAP || !lv->n)
        ERR(lv, "key '%s.levels' must map blue/yellow/orange/red to {raise, clear}", path);
    int64_t longest = 0;
    for (size_t i = 0; i < lv->n; i++) {
        int l = 0;
        for (int k = 1; k <= GW_RULE_LEVELS; k++)
            if (strcmp(lv->keys[i], level_names[k]) == 0)
                l = k;
        if (!l) {
            gw_ynode at = {.file = lv->file, .line = lv->key_lines[i]};
            ERR(&at, "unknown key '%s.levels.%s' (levels are blue, yellow, orange, red)", path,
                lv->keys[i]);
        }
        char sub[160];
        snprintf(sub, sizeof(sub), "%s.levels.%s", path, lv->keys[i]);
        level_cfg lc;
        int rc = gw_cfg_apply(level_keys, lv->kids[i], &lc, sub, err, errlen);
        if (rc)
            return rc;
        const gw_ynode *ln = lv->kids[i];
        if (!gw_ymap_get(ln, "clear"))
            lc.clear = lc.raise;
        if (gw_ymap_get(ln, "window") && r->kind != GW_RK_WINDOW)
            ERR(ln, "key '%s.window' is only valid for kind window", sub);
        if (c->dir == GW_DIR_ABOVE && lc.clear > lc.raise)
            ERR(gw_ymap_get(ln, "clear"),
                "key '%s.clear' (%g) must be <= raise (%g) for direction above", sub, lc.clear,
                lc.raise);
        if (c->dir == GW_DIR_BELOW && lc.clear < lc.raise)
            ERR(gw_ymap_get(ln, "clear"),
                "key '%s.clear' (%g) must be >= raise (%g) for direction below", sub, lc.clear,
                lc.raise);
        r->levels[l - 1] = (gw_rule_level){1, lc.raise, lc.clear, lc.window};
        if (lc.window > longest)
            longest = lc.window;
    }
    if (r->kind == GW_RK_WINDOW) {
        if (!r->window_ms)
            r->window_ms = longest;
        if (!r->window_ms)
            ERR(rn, "key '%s.window' is required (or a window on each level)", path);
        if (r->window_ms % r->buckets)
            ERR(gw_ymap_get(rn, "window") ? gw_ymap_get(rn, "window") : rn,
                "key '%s.window' (%lld ms) must divide into %u buckets", path,
                (long long)r->window_ms, r->buckets);
        int64_t width = r->window_ms / r->buckets;
        for (size_t i = 0; i < lv->n; i++) {
            const gw_ynode *wn = gw_ymap_get(lv->kids[i], "window");
            int64_t w = 0;
            if (!wn)
                continue;
            gw_parse_duration_ms(wn->str, &w);
            if (w > r->window_ms)
                ERR(wn, "key '%s.levels.%s.window' exceeds the rule window", path, lv->keys[i]);
            if (w % width)
                ERR(wn,
                    "key '%s.levels.%s.window' must be a multiple of the bucket width (%lld ms)",
                    path, lv->keys[i], (long long)width);
        }
    }
    /* Severity must grow with the level among levels on the same window. */
    int prev = 0;
    for (int l = 1; l <= GW_RULE_LEVELS; l++) {
        const gw_rule_level *a = &r->levels[l - 1];
        if (!a->enabled)
            continue;
        if (prev) {
            const gw_rule_level *b = &r->levels[prev - 1];
            int64_t wa = a->window_ms ? a->window_ms : r->window_ms;
            int64_t wb = b->window_ms ? b->window_ms : r->window_ms;
            if (wa == wb && (c->dir == GW_DIR_ABOVE ? a->raise <= b->raise : a->raise >= b->raise))
                ERR(gw_ymap_get(gw_ymap_get(lv, level_names[l]), "raise"),
                    "key '%s.levels.%s.raise' (%g) must be %s than %s's (%g)", path, level_names[l],
                    a->raise, c->dir == GW_DIR_ABOVE ? "higher" : "lower", level_names[prev],
                    b->raise);
        }
        prev = l;
    }
    return GW_OK;
}

static int load_conditions(gw_rule *r, const rule_cfg *c, const gw_ynode *rn, const char *path,
                           char *err, size_t errlen)
{
    const gw_ynode *cn = c->conditions;
    if (!cn)
        ERR(rn, "missing required key '%s.conditions'", path);
    if (cn->type != GW_Y_SEQ || !cn->n)
        ERR(cn, "key '%s.conditions' must be a non-empty list", path);
    if (cn->n > GW_RULE_MAX_CONDS)
        ERR(cn, "key '%s.conditions': at most %d conditions", path, GW_RULE_MAX_CONDS);
    for (size_t i = 0; i < cn->n; i++) {
        char sub[160];
        snprintf(sub, sizeof(sub), "%s.conditions[%zu]", path, i);
        cond_cfg cc;
        const gw_ynode *it = cn->kids[i];
        int rc = gw_cfg_apply(cond_keys, it, &cc, sub, err, errlen);
        if (rc)
            return rc;
        const gw_ynode *ab = gw_ymap_get(it, "above"), *be = gw_ymap_get(it, "below");
        if (!!ab == !!be)
            ERR(it, "key '%s' needs exactly one of 'above' or 'below'", sub);
        gw_rule_cond *d = &r->conds[r->n_conds++];
        memcpy(d->device, cc.device, sizeof(d->device));
        memcpy(d->metric, cc.metric, sizeof(d->metric));
        d->fn = cc.fn;
        d->input = cc.input;
        d->dir = ab ? GW_DIR_ABOVE : GW_DIR_BELOW;
        d->threshold = ab ? cc.above : cc.below;
        d->clear = gw_ymap_get(it, "clear") ? cc.clear : d->threshold;
        d->window_ms = cc.window;
        d->buckets = (uint32_t)cc.buckets;
        if (d->fn != GW_WF_VALUE && !d->window_ms)
            ERR(it, "key '%s.window' is required for fn %s", sub, cond_fn_names[d->fn]);
        if (d->fn == GW_WF_VALUE && gw_ymap_get(it, "window"))
            ERR(gw_ymap_get(it, "window"), "key '%s.window' needs an fn other than value", sub);
        if (d->input == GW_IN_CUMULATIVE && d->fn != GW_WF_SUM)
            ERR(gw_ymap_get(it, "input"), "key '%s.input' cumulative needs fn sum", sub);
        if (d->dir == GW_DIR_ABOVE ? d->clear > d->threshold : d->clear < d->threshold)
            ERR(gw_ymap_get(it, "clear"), "key '%s.clear' (%g) must be %s %s (%g)", sub, d->clear,
                d->dir == GW_DIR_ABOVE ? "<=" : ">=", ab ? "above" : "below", d->threshold);
    }
    return GW_OK;
}

static int load_forecast(gw_rule *r, const rule_cfg *c, const gw_ynode *rn, const char *path,
                         char *err, size_t errlen)
{
    int rc;
    if (!r->metric[0])
        ERR(rn, "missing required key '%s.metric'", path);
    if (!c->levels && !c->alarm_rule[0])
        ERR(rn, "kind forecast needs '%s.levels' or '%s.alarm_rule'", path, path);
    if (c->levels && (rc = load_levels(r, c, rn, path, err, errlen)))
        return rc;
    if (!gw_ymap_get(rn, "window"))
        r->window_ms = 15 * 60000;
    memcpy(r->alarm_rule, c->alarm_rule, sizeof(r->alarm_rule));
    r->horizon_ms = c->horizon;
    r->move_ms = c->move;
    r->min_points = (uint32_t)c->min_points;
    r->min_rate = c->min_rate;
    r->min_confidence = c->confidence;
    if (c->rain) {
        char sub[160];
        rain_cfg rc_;
        snprintf(sub, sizeof(sub), "%s.rain", path);
        if ((rc = gw_cfg_apply(rain_keys, c->rain, &rc_, sub, err, errlen)))
            return rc;
        if (!strcmp(rc_.metric, r->metric))
            ERR(gw_ymap_get(c->rain, "metric") ? gw_ymap_get(c->rain, "metric") : c->rain,
                "key '%s.metric' must differ from the forecast's metric", sub);
        gw_rule_cond *d = &r->conds[0];
        r->n_conds = 1;
        memcpy(d->device, rc_.device, sizeof(d->device));
        memcpy(d->metric, rc_.metric, sizeof(d->metric));
        d->fn = GW_WF_SUM;
        d->input = rc_.input;
        d->window_ms = rc_.window;
        d->buckets = (uint32_t)rc_.buckets;
        d->threshold = d->clear = rc_.above;
        r->rain_gain = rc_.gain;
    }
    return GW_OK;
}

static int load_actions(gw_rule *r, const gw_ynode *an, const char *path, char *err, size_t errlen)
{
    if (!an)
        return GW_OK;
    if (an->type != GW_Y_SEQ)
        ERR(an, "key '%s.actions' must be a list", path);
    if (an->n > GW_RULE_MAX_ACTIONS)
        ERR(an, "key '%s.actions': at most %d actions", path, GW_RULE_MAX_ACTIONS);
    for (size_t i = 0; i < an->n; i++) {
        char sub[160];
        snprintf(sub, sizeof(sub), "%s.actions[%zu]", path, i);
        action_cfg ac;
        const gw_ynode *it = an->kids[i];
        int rc = gw_cfg_apply(action_keys, it, &ac, sub, err, errlen);
        if (rc)
            return rc;
        gw_rule_action *a = &r->actions[r->n_actions++];
        a->kind = ac.kind;
        a->reg = (int32_t)ac.reg;
        memcpy(a->device, ac.device, sizeof(a->device));
        memcpy(a->point, ac.point, sizeof(a->point));
        memcpy(a->topic, ac.topic, sizeof(a->topic));
        a->value_raise = ac.raise_value;
        a->value_clear = ac.clear_value;
        a->has_value_clear =
            gw_ymap_get(it, "clear_value") != NULL || ac.kind == GW_ACT_MODBUS_WRITE;
        a->timeout_ms = ac.timeout;
        if (ac.on) {
            size_t n = ac.on->type == GW_Y_SEQ ? ac.on->n : 1;
            for (size_t k = 0; k < n; k++) {
                const gw_ynode *o = ac.on->type == GW_Y_SEQ ? ac.on->kids[k] : ac.on;
                int s = -1;
                for (int j = 0; o->type == GW_Y_SCALAR && on_names[j]; j++)
                    if (strcmp(on_names[j], o->str) == 0)
                        s = j;
                if (s < 0)
                    ERR(o, "key '%s.on' must list raised, updated, cleared or acked", sub);
                a->on |= GW_ACT_ON(s);
            }
        }
        static const char *const own[][5] = {
            [GW_ACT_MODBUS_WRITE] = {"device", "point", "register", "raise_value", "clear_value"},
            [GW_ACT_MQTT_PUBLISH] = {"topic"},
            [GW_ACT_COMMAND] = {"argv", "timeout"},
        };
        for (size_t k = 0; k < it->n; k++) {
            const char *key = it->keys[k];
            int ok = !strcmp(key, "kind") || !strcmp(key, "on");
            for (int j = 0; j < 5 && own[a->kind][j]; j++)
                ok |= !strcmp(key, own[a->kind][j]);
            if (!ok) {
                gw_ynode at = {.file = it->file, .line = it->key_lines[k]};
                ERR(&at, "key '%s.%s' is not valid for action %s", sub, key, action_names[a->kind]);
            }
        }
        switch (a->kind) {
        case GW_ACT_MODBUS_WRITE:
            if (!a->device[0] || (!a->point[0]) == (a->reg < 0))
                ERR(it, "key '%s' needs a device and exactly one of point or register", sub);
            break;
        case GW_ACT_MQTT_PUBLISH:
            if (!a->topic[0])
                ERR(it, "missing required key '%s.topic'", sub);
            break;
        case GW_ACT_COMMAND:
            if (!ac.argv || ac.argv->type != GW_Y_SEQ || !ac.argv->n)
                ERR(ac.argv ? ac.argv : it, "key '%s.argv' must be a non-empty list", sub);
            if (ac.argv->n > GW_ACTION_ARGS)
                ERR(ac.argv, "key '%s.argv': at most %d arguments", sub, GW_ACTION_ARGS);
            for (size_t k = 0; k < ac.argv->n; k++) {
                const gw_ynode *s = ac.argv->kids[k];
                if (s->type != GW_Y_SCALAR || gw_strlcpy(a->argv[k], s->str, GW_ACTION_ARG_MAX))
                    ERR(s, "key '%s.argv[%zu]' must be a string under %d characters", sub, k,
                        GW_ACTION_ARG_MAX);
            }
            a->argc = (int)ac.argv->n;
            break;
        }
    }
    return GW_OK;
}

static int load_rule(gw_rule *r, const gw_ynode *rn, const char *path, char *err, size_t errlen)
{
    rule_cfg c;
    int rc = gw_cfg_apply(rule_keys, rn, &c, path, err, errlen);
    if (rc)
        return rc;
    memset(r, 0, sizeof(*r));
    for (size_t i = 0; i < rn->n; i++) {
        if (in_list(common_keys, rn->keys[i]) || in_list(kind_keys[c.kind], rn->keys[i]))
            continue;
        gw_ynode at = {.file = rn->file, .line = rn->key_lines[i]};
        ERR(&at, "key '%s.%s' is not valid for kind %s", path, rn->keys[i], kind_names[c.kind]);
    }
    for (const char *p = c.id; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.')
            ERR(gw_ymap_get(rn, "id"), "key '%s.id' may hold only letters, digits, '_', '-', '.'",
                path);
    memcpy(r->id, c.id, sizeof(r->id));
    memcpy(r->description, c.description, sizeof(r->description));
    r->kind = c.kind;
    memcpy(r->metric, c.metric, sizeof(r->metric));
    memcpy(r->event, c.event, sizeof(r->event));
    memcpy(r->subject, c.subject, sizeof(r->subject));
    r->dir = c.dir;
    r->level = c.level;
    r->raise_for_ms = c.raise_for;
    r->clear_for_ms = c.clear_for;
    r->fn = c.fn;
    r->input = c.input;
    r->window_ms = c.window;
    r->buckets = (uint32_t)c.buckets;
    r->combine = c.combine;
    r->stale_after_ms = c.after;
    r->flat_for_ms = c.flat_for;
    r->flat_epsilon = c.epsilon;
    r->range_min = c.min;
    r->range_max = c.max;
    r->auto_clear_ms = c.auto_clear;
    r->fast_interval_ms = c.fast_interval;
    if ((rc = load_targets(r, c.devices, GW_TG_DEVICE, path, "devices", err, errlen)) ||
        (rc = load_targets(r, c.types, GW_TG_TYPE, path, "types", err, errlen)) ||
        (rc = load_targets(r, c.sites, GW_TG_SITE, path, "sites", err, errlen)) ||
        (rc = load_targets(r, c.groups, GW_TG_GROUP, path, "groups", err, errlen)))
        return rc;
    if (c.update) {
        char sub[160];
        update_cfg u;
        snprintf(sub, sizeof(sub), "%s.update", path);
        if ((rc = gw_cfg_apply(update_keys, c.update, &u, sub, err, errlen)))
            return rc;
        r->update_delta = u.min_change;
        r->update_interval_ms = u.min_interval;
    }
    if (c.level == 0 && gw_ymap_get(rn, "level"))
        ERR(gw_ymap_get(rn, "level"), "key '%s.level' must be blue, yellow, orange or red", path);
    switch (c.kind) {
    case GW_RK_THRESHOLD:
    case GW_RK_WINDOW:
        if (!r->metric[0])
            ERR(rn, "missing required key '%s.metric'", path);
        if (c.kind == GW_RK_WINDOW && c.input == GW_IN_CUMULATIVE && c.fn != GW_WF_SUM)
            ERR(gw_ymap_get(rn, "input"), "key '%s.input' cumulative needs fn sum", path);
        if ((rc = load_levels(r, &c, rn, path, err, errlen)))
            return rc;
        break;
    case GW_RK_COMBINED:
        if (!r->subject[0])
            ERR(rn, "missing required key '%s.subject'", path);
        if ((rc = load_conditions(r, &c, rn, path, err, errlen)))
            return rc;
        break;
    case GW_RK_STALE:
        if (!gw_ymap_get(rn, "after"))
            ERR(rn, "missing required key '%s.after'", path);
        break;
    case GW_RK_FLATLINE:
        if (!r->metric[0] || !gw_ymap_get(rn, "for"))
            ERR(rn, "kind flatline needs keys '%s.metric' and '%s.for'", path, path);
        break;
    case GW_RK_RANGE:
        if (gw_ymap_get(rn, "min") && gw_ymap_get(rn, "max") && c.min >= c.max)
            ERR(gw_ymap_get(rn, "max"), "key '%s.max' (%g) must be greater than min (%g)", path,
                c.max, c.min);
        if (!!gw_ymap_get(rn, "min") != !!gw_ymap_get(rn, "max"))
            ERR(rn, "keys '%s.min' and '%s.max' go together", path, path);
        break;
    case GW_RK_EVENT:
        if (!r->event[0])
            ERR(rn, "missing required key '%s.event'", path);
        break;
    case GW_RK_FORECAST:
        if ((rc = load_forecast(r, &c, rn, path, err, errlen)))
            return rc;
        break;
    }
    if ((rc = load_actions(r, c.actions, path, err, errlen)))
        return rc;
    char msg[200];
    if (gw_rule_check(r, msg, sizeof(msg)))
        ERR(rn, "%s: %s", path, msg);
    return GW_OK;
}

int gw_rules_load_list(const gw_ynode *list, gw_rule **defs, size_t *n, char *err, size_t errlen)
{
    gw_rule *out = NULL;
    size_t count = 0;
    int rc;
    *defs = NULL;
    *n = 0;
    if (!list)
        return GW_OK;
    if (list->type != GW_Y_SEQ) {
        snprintf(err, errlen, "%s:%d: key 'rules' must be a list", GW_YPOS(list));
        return GW_EINVAL;
    }
    out = calloc(list->n ? list->n : 1, sizeof(*out));
    if (!out) {
        snprintf(err, errlen, "%s: out of memory", list->file);
        return GW_ENOMEM;
    }
    for (size_t i = 0; i < list->n; i++) {
        char path[32];
        snprintf(path, sizeof(path), "rules[%zu]", i);
        const gw_ynode *rn = list->kids[i];
        if ((rc = load_rule(&out[count], rn, path, err, errlen)))
            goto fail;
        for (size_t j = 0; j < count; j++) {
            if (strcmp(out[j].id, out[count].id) == 0) {
                snprintf(err, errlen, "%s:%d: key '%s.id': duplicate rule id '%s'", rn->file,
                         key_line(rn, "id"), path, out[count].id);
                rc = GW_EINVAL;
                goto fail;
            }
        }
        count++;
    }
    *defs = out;
    *n = count;
    return GW_OK;
fail:
    free(out);
    return rc;
}

/* Turns a parsed document into definitions; frees nothing. */
static int load_doc(const gw_ydoc *doc, const char *file, gw_rule **defs, size_t *n, char *err,
                    size_t errlen)
{
    top_cfg top;
    int rc;
    if (!doc->root) {
        snprintf(err, errlen, "%s: empty rule file (expected 'rules:')", file);
        return GW_EINVAL;
    }
    if ((rc = gw_cfg_apply(top_keys, doc->root, &top, "", err, errlen)))
        return rc;
    return gw_rules_load_list(top.rules, defs, n, err, errlen);
}

int gw_rules_load_text(const char *file, const char *text, size_t len, gw_rule **defs, size_t *n,
                       char *err, size_t errlen)
{
    gw_ydoc doc;
    *defs = NULL;
    *n = 0;
    int rc = gw_ydoc_parse(&doc, file, text, len, err, errlen);
    if (!rc)
        rc = load_doc(&doc, file, defs, n, err, errlen);
    gw_ydoc_free(&doc);
    return rc;
}

int gw_rules_load_file(const char *path, gw_rule **defs, size_t *n, char *err, size_t errlen)
{
    gw_ydoc doc;
    *defs = NULL;
    *n = 0;
    int rc = gw_ydoc_load(&doc, path, err, errlen);
    if (!rc)
        rc = load_doc(&doc, path, defs, n, err, errlen);
    gw_ydoc_free(&doc);
    return rc;
}
