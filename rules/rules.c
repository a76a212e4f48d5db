/* The rules engine. Map of the file: definitions are checked and
 * fingerprinted; the engine indexes rules by "metric \x1f target" keys in a
 * string map; per-(rule, device) state lives in an open-addressing hash table;
 * each state carries a debounce record (one pending bit and start time per
 * level) and, for window rules, a bucket ring; states with something due sit in
 * a binary min-heap keyed by their scheduled time (lazily: a state whose due
 * time moved later is popped early and rescheduled). Export/import walk the
 * same states into a little-endian blob. */
#include "rules/rules.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define EMPTY_IDX INT64_MIN
#define COND_DEFAULT_BUCKETS 12
#define BLOB_MAGIC 0x53525747u /* "GWRS" little-endian */
#define BLOB_VERSION 1u

/* ---- small helpers ---------------------------------------------------- */

static uint64_t fnv_init(void)
{
    return 0xcbf29ce484222325ull;
}

static uint64_t fnv_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint64_t fnv_str(uint64_t h, const char *s)
{
    while (*s) {
        h ^= (unsigned char)*s++;
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static int64_t floordiv(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0)))
        q--;
    return q;
}

static int64_t imin(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* ---- names ------------------------------------------------------------ */

const char *gw_rule_kind_name(int kind)
{
    static const char *const names[] = {"threshold", "window", "combined", "stale",
                                        "flatline",  "range",  "event",    "forecast"};
    if (kind < 0 || kind >= GW_RK__COUNT)
        return "?";
    return names[kind];
}

const char *gw_rule_fn_name(int fn)
{
    static const char *const names[] = {"sum", "avg", "min", "max", "rise", "value"};
    if (fn < 0 || fn > GW_WF_VALUE)
        return "?";
    return names[fn];
}

static int graded(int kind)
{
    return kind == GW_RK_THRESHOLD || kind == GW_RK_WINDOW;
}

static int any_level(const gw_rule *r)
{
    for (int l = 0; l < GW_RULE_LEVELS; l++)
        if (r->levels[l].enabled)
            return 1;
    return 0;
}

static int health_reason_of(int kind)
{
    switch (kind) {
    case GW_RK_STALE:
        return GW_R_STALE;
    case GW_RK_FLATLINE:
        return GW_R_FLATLINE;
    case GW_RK_RANGE:
        return GW_R_OUT_OF_RANGE;
    default:
        return GW_R_NONE;
    }
}

/* ---- definitions ------------------------------------------------------ */

static int fail(char *err, size_t errlen, const char *id, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "rule '%s': %s", id, msg);
    return GW_EINVAL;
}

static int thr_ok(int dir, double raise, double clear)
{
    return dir == GW_DIR_ABOVE ? clear <= raise : clear >= raise;
}

static int check_forecast(const gw_rule *r, char *err, size_t errlen)
{
    const char *id = r->id;
    if (!r->metric[0] || r->window_ms <= 0 || r->horizon_ms <= 0 || r->move_ms < 0)
        return fail(err, errlen, id, "forecast needs metric, window > 0 and horizon > 0");
    if (r->min_points < 3 || r->min_points > GW_FC_POINTS)
        return fail(err, errlen, id, "forecast min_points must be 3..16");
    if (!(r->min_rate > 0) || !isfinite(r->min_rate) || !(r->rain_gain >= 0) ||
        !isfinite(r->rain_gain))
        return fail(err, errlen, id, "forecast min_rate must be > 0 and rain gain >= 0");
    if (!(r->min_confidence >= 0.5 && r->min_confidence <= 1))
        return fail(err, errlen, id, "forecast min_confidence must be 0.5..1");
    if (!memchr(r->alarm_rule, '\0', sizeof(r->alarm_rule)) || strchr(r->alarm_rule, ':') ||
        !strcmp(r->alarm_rule, id))
        return fail(err, errlen, id, "bad alarm_rule");
    if (r->n_conds > 1)
        return fail(err, errlen, id, "forecast takes one rain gauge");
    if (r->n_conds) {
        const gw_rule_cond *c = &r->conds[0];
        if (!c->device[0] || !c->metric[0] || !strcmp(c->metric, r->metric) || c->fn != GW_WF_SUM ||
            c->window_ms <= 0 || c->buckets > GW_RULE_MAX_BUCKETS || !(c->threshold > 0))
            return fail(err, errlen, id,
                        "rain needs device, another metric, a window and intensity > 0");
    }
    return GW_OK;
}

int gw_rule_check(const gw_rule *r, char *err, size_t errlen)
{
    const char *id = r->id;
    if (!memchr(r->id, '\0', sizeof(r->id)) || !r->id[0] || strchr(r->id, ':'))
        return fail(err, errlen, "?", "id must be 1..31 characters without ':'");
    if (r->kind < 0 || r->kind >= GW_RK__COUNT)
        return fail(err, errlen, id, "unknown kind");
    if (r->n_targets > GW_RULE_MAX_TARGETS || r->n_actions > GW_RULE_MAX_ACTIONS ||
        r->n_conds > GW_RULE_MAX_CONDS)
        return fail(err, errlen, id, "too many targets, actions or conditions");
    for (size_t i = 0; i < r->n_targets; i++)
        if (r->targets[i].kind < GW_TG_DEVICE || r->targets[i].kind > GW_TG_GROUP ||
            !r->targets[i].name[0])
            return fail(err, errlen, id, "bad target");
    if (r->dir != GW_DIR_ABOVE && r->dir != GW_DIR_BELOW)
        return fail(err, errlen, id, "bad direction");
    if (r->raise_for_ms < 0 || r->clear_for_ms < 0 || r->update_interval_ms < 0 ||
        r->fast_interval_ms < 0 || r->update_delta < 0)
        return fail(err, errlen, id, "negative duration");
    if (graded(r->kind) || (r->kind == GW_RK_FORECAST && any_level(r))) {
        int n = 0;
        double prev = 0;
        int64_t prev_w = -1;
        if (!r->metric[0])
            return fail(err, errlen, id, "metric required");
        for (int l = 0; l < GW_RULE_LEVELS; l++) {
            const gw_rule_level *lv = &r->levels[l];
            if (!lv->enabled)
                continue;
            if (!isfinite(lv->raise) || !isfinite(lv->clear))
                return fail(err, errlen, id, "level thresholds must be finite");
            if (!thr_ok(r->dir, lv->raise, lv->clear))
                return fail(err, errlen, id,
                            r->dir == GW_DIR_ABOVE ? "clear must be <= raise for direction above"
                                                   : "clear must be >= raise for direction below");
            int64_t w = r->kind == GW_RK_WINDOW && lv->window_ms ? lv->window_ms : r->window_ms;
            if (n && w == prev_w &&
                (r->dir == GW_DIR_ABOVE ? lv->raise <= prev : lv->raise >= prev))
                return fail(err, errlen, id,
                            "higher levels must have more severe raise thresholds");
            prev = lv->raise;
            prev_w = w;
            n++;
        }
        if (!n)
            return fail(err, errlen, id, "at least one level required");
    } else if (r->kind == GW_RK_FORECAST) {
        if (!r->alarm_rule[0])
            return fail(err, errlen, id, "forecast needs levels or alarm_rule");
    } else if (r->level < 1 || r->level > GW_RULE_LEVELS) {
        return fail(err, errlen, id, "level must be 1..4");
    }
    switch (r->kind) {
    case GW_RK_WINDOW:
        if (r->window_ms <= 0 || r->buckets < 1 || r->buckets > GW_RULE_MAX_BUCKETS)
            return fail(err, errlen, id, "window > 0 and buckets 1..1024 required");
        if (r->fn < GW_WF_SUM || r->fn > GW_WF_RISE)
            return fail(err, errlen, id, "fn must be sum, avg, min, max or rise");
        if (r->input == GW_IN_CUMULATIVE && r->fn != GW_WF_SUM)
            return fail(err, errlen, id, "input cumulative needs fn sum");
        for (int l = 0; l < GW_RULE_LEVELS; l++)
            if (r->levels[l].enabled &&
                (r->levels[l].window_ms < 0 || r->levels[l].window_ms > r->window_ms))
                return fail(err, errlen, id, "a level window exceeds the rule window");
        break;
    case GW_RK_COMBINED:
        if (!r->n_conds || !r->subject[0])
            return fail(err, errlen, id, "conditions and subject required");
        if (r->combine != GW_COMBINE_ALL && r->combine != GW_COMBINE_ANY)
            return fail(err, errlen, id, "combine must be all or any");
        for (size_t i = 0; i < r->n_conds; i++) {
            const gw_rule_cond *c = &r->conds[i];
            if (!c->device[0] || !c->metric[0] || c->fn < GW_WF_SUM || c->fn > GW_WF_VALUE)
                return fail(err, errlen, id, "condition needs device, metric and fn");
            if (c->fn != GW_WF_VALUE && c->window_ms <= 0)
                return fail(err, errlen, id, "condition needs a window");
            if (c->buckets > GW_RULE_MAX_BUCKETS)
                return fail(err, errlen, id, "condition buckets 0..1024");
            if (c->input == GW_IN_CUMULATIVE && c->fn != GW_WF_SUM)
                return fail(err, errlen, id, "input cumulative needs fn sum");
            if (!thr_ok(c->dir, c->threshold, c->clear))
                return fail(err, errlen, id, "condition clear inconsistent with direction");
        }
        break;
    case GW_RK_STALE:
        if (r->stale_after_ms <= 0)
            return fail(err, errlen, id, "stale needs after > 0");
        break;
    case GW_RK_FLATLINE:
        if (!r->metric[0] || r->flat_for_ms <= 0 || r->flat_epsilon < 0)
            return fail(err, errlen, id, "flatline needs metric, for > 0, epsilon >= 0");
        break;
    case GW_RK_EVENT:
        if (!r->event[0] || r->auto_clear_ms < 0)
            return fail(err, errlen, id, "event kind required");
        break;
    case GW_RK_FORECAST:
        return check_forecast(r, err, errlen);
    default:
        break;
    }
    return GW_OK;
}

static uint64_t h_i64(uint64_t h, int64_t v)
{
    return fnv_bytes(h, &v, sizeof(v));
}

static uint64_t h_dbl(uint64_t h, double d)
{
    if (d == 0)
        d = 0; /* -0.0 and 0.0 hash alike */
    return fnv_bytes(h, &d, sizeof(d));
}

static uint64_t h_s(uint64_t h, const char *s)
{
    return fnv_str(h, s) * 31 + 7; /* terminator, so "ab","c" != "a","bc" */
}

uint64_t gw_rule_fingerprint(const gw_rule *r)
{
    uint64_t h = fnv_init();
    h = h_s(h, r->id);
    h = h_i64(h, r->kind);
    h = h_i64(h, (int64_t)r->n_targets);
    for (size_t i = 0; i < r->n_targets && i < GW_RULE_MAX_TARGETS; i++) {
        h = h_i64(h, r->targets[i].kind);
        h = h_s(h, r->targets[i].name);
    }
    h = h_s(h, r->metric);
    h = h_s(h, r->event);
    h = h_i64(h, r->dir);
    for (int l = 0; l < GW_RULE_LEVELS; l++) {
        h = h_i64(h, r->levels[l].enabled);
        if (r->levels[l].enabled) {
            h = h_dbl(h, r->levels[l].raise);
            h = h_dbl(h, r->levels[l].clear);
            h = h_i64(h, r->levels[l].window_ms);
        }
    }
    h = h_i64(h, r->level);
    h = h_i64(h, r->raise_for_ms);
    h = h_i64(h, r->clear_for_ms);
    h = h_i64(h, r->fn);
    h = h_i64(h, r->input);
    h = h_i64(h, r->window_ms);
    h = h_i64(h, r->buckets);
    h = h_i64(h, r->combine);
    h = h_s(h, r->subject);
    h = h_i64(h, (int64_t)r->n_conds);
    for (size_t i = 0; i < r->n_conds && i < GW_RULE_MAX_CONDS; i++) {
        const gw_rule_cond *c = &r->conds[i];
        h = h_s(h, c->device);
        h = h_s(h, c->metric);
        h = h_i64(h, c->fn);
        h = h_i64(h, c->input);
        h = h_i64(h, c->dir);
        h = h_dbl(h, c->threshold);
        h = h_dbl(h, c->clear);
        h = h_i64(h, c->window_ms);
        h = h_i64(h, c->buckets);
    }
    h = h_i64(h, r->stale_after_ms);
    h = h_i64(h, r->flat_for_ms);
    h = h_dbl(h, r->flat_epsilon);
    h = h_dbl(h, r->range_min);
    h = h_dbl(h, r->range_max);
    h = h_i64(h, r->auto_clear_ms);
    if (r->kind == GW_RK_FORECAST) { /* only here: other rules keep their persisted fingerprints */
        h = h_s(h, r->alarm_rule);
        h = h_i64(h, r->horizon_ms);
        h = h_i64(h, r->min_points);
        h = h_dbl(h, r->min_rate);
        h = h_dbl(h, r->min_confidence);
        h = h_dbl(h, r->rain_gain);
    }
    return h;
}

/* ---- windows ---------------------------------------------------------- */

typedef struct bucket {
    int64_t idx; /* bucket number (time / width); EMPTY_IDX when unused */
    double sum, min, max;
    uint32_t count;
} bucket;

typedef struct series {
    bucket *ring; /* nb buckets, NULL for a latest-value-only series */
    uint32_t nb;
    int64_t width;
    double last;
    double counter;
    uint8_t has_last, has_counter;
} series;

static int series_init(series *s, int64_t window, uint32_t nb)
{
    memset(s, 0, sizeof(*s));
    if (nb == 0)
        return GW_OK;
    s->ring = malloc(nb * sizeof(*s->ring));
    if (!s->ring)
        return GW_ENOMEM;
    s->nb = nb;
    s->width = (window + nb - 1) / nb;
    if (s->width < 1)
        s->width = 1;
    for (uint32_t i = 0; i < nb; i++)
        s->ring[i].idx = EMPTY_IDX;
    return GW_OK;
}

/* Adds a sample taken at t. Cumulative counters become increments; a drop
 * means the counter restarted, so the new value is the increment. */
static void series_add(series *s, int input, double v, int64_t t)
{
    double x = v;
    if (input == GW_IN_CUMULATIVE) {
        if (!s->has_counter)
            x = 0;
        else if (v >= s->counter)
            x = v - s->counter;
        else
            x = v; /* reset */
        s->counter = v;
        s->has_counter = 1;
    }
    s->last = v;
    s->has_last = 1;
    if (!s->ring)
        return;
    int64_t idx = floordiv(t, s->width);
    bucket *b = &s->ring[(uint64_t)(idx - floordiv(idx, s->nb) * s->nb)];
    if (b->idx > idx && b->idx != EMPTY_IDX)
        return; /* older than the ring covers */
    if (b->idx != idx) {
        b->idx = idx;
        b->sum = 0;
        b->min = INFINITY;
        b->max = -INFINITY;
        b->count = 0;
    }
    b->sum += x;
    if (x < b->min)
        b->min = x;
    if (x > b->max)
        b->max = x;
    b->count++;
}

static double finish(int fn, const series *s, double sum, uint64_t cnt, double mn, double mx)
{
    switch (fn) {
    case GW_WF_SUM:
        return sum;
    case GW_WF_AVG:
        return cnt ? sum / (double)cnt : NAN;
    case GW_WF_MIN:
        return cnt ? mn : NAN;
    case GW_WF_MAX:
        return cnt ? mx : NAN;
    case GW_WF_RISE:
        return cnt && s->has_last ? s->last - mn : NAN;
    default:
        return NAN;
    }
}

/* Aggregates over the buckets covering (now - w[i], now] for n windows in
 * one backward pass (windows are quantised to whole buckets). out[i] is NAN
 * when that aggregate has no data (a sum of nothing is 0). */
static void series_aggs(const series *s, int fn, const int64_t *w, int n, int64_t now, double *out)
{
    if (fn == GW_WF_VALUE || !s->ring) {
        for (int i = 0; i < n; i++)
            out[i] = s->has_last ? s->last : NAN;
        return;
    }
    int64_t cur = floordiv(now, s->width), ks[GW_RULE_LEVELS], kmax = 1;
    for (int i = 0; i < n; i++) {
        int64_t k = (w[i] + s->width - 1) / s->width;
        ks[i] = k < 1 ? 1 : k > s->nb ? s->nb : k;
        if (ks[i] > kmax)
            kmax = ks[i];
    }
    double sum = 0, mn = INFINITY, mx = -INFINITY;
    uint64_t cnt = 0;
    size_t slot = (size_t)(cur - floordiv(cur, s->nb) * s->nb);
    for (int64_t j = 0; j < kmax; j++) {
        const bucket *b = &s->ring[slot];
        if (b->idx == cur - j) {
            sum += b->sum;
            cnt += b->count;
            if (b->min < mn)
                mn = b->min;
            if (b->max > mx)
                mx = b->max;
        }
        for (int i = 0; i < n; i++)
            if (ks[i] == j + 1)
                out[i] = finish(fn, s, sum, cnt, mn, mx);
        slot = slot ? slot - 1 : s->nb - 1;
    }
}

static double series_agg(const series *s, int fn, int64_t w, int64_t now)
{
    double out;
    series_aggs(s, fn, &w, 1, now, &out);
    return out;
}

static int64_t series_next_boundary(const series *s, int64_t now)
{
    return (floordiv(now, s->width) + 1) * s->width;
}

/* ---- engine structures ------------------------------------------------ */

/* FORECAST per-(rule, device) data: a ring of the latest good readings, at
 * most GW_FC_POINTS spaced about window/GW_FC_POINTS apart (the newest slot
 * follows the latest reading), and the latest prediction. */
typedef struct fcast {
    int64_t t[GW_FC_POINTS];
    double v[GW_FC_POINTS];
    uint8_t n, head; /* head: the oldest point */
    uint8_t why;     /* fc_why: why the trend calls for no forecast */
    int64_t sent_cross;
    gw_forecast out; /* out.linked is always NULL here */
} fcast;

typedef struct rstate {
    uint64_t h;
    uint32_t rule;
    int heap; /* position in the heap, -1 when absent */
    int64_t sched;
    uint8_t level, target, acked, pend, has_seen, has_flat;
    int64_t since[GW_RULE_LEVELS];
    int64_t raised_ms, last_tx_ms;
    double x[GW_RULE_LEVELS]; /* latest evaluated value per level */
    double thr;               /* single-level kinds: threshold to report */
    double sent;              /* value of the last transition */
    int64_t last_seen;        /* STALE: last sign of life; EVENT: last active=1 */
    double flat_ref;
    int64_t flat_since;
    series ser;
    fcast *fc; /* FORECAST rules only */
    /* The override that applies to this device (gw_rules_set_overrides):
     * levels in place of the rule's (NULL: the rule's), and off when the rule
     * is disabled for it. Reset whenever the overrides are replaced. */
    const gw_rule_level *lv;
    uint8_t off;
    char device[GW_ID_MAX];
} rstate;

typedef struct cstate {
    series ser;
    double val;
    uint8_t latched;
} cstate;

typedef struct rule_rt {
    gw_rule def;
    uint64_t fp;
    uint64_t stamp;
    cstate *conds;  /* COMBINED conditions; FORECAST: the rain gauge */
    int fc_link;    /* THRESHOLD: the FORECAST rule linked to it, -1 none */
    int alarm_link; /* FORECAST: its alarm_rule's index, -1 none */
    int novr;       /* overrides naming this rule */
} rule_rt;

typedef struct smap_ent {
    char *key; /* NULL = empty slot */
    uint64_t h;
    int *v;
    int n, cap;
} smap_ent;

typedef struct smap {
    smap_ent *tab;
    size_t cap, n;
} smap;

struct gw_rules_engine {
    rule_rt *rules;
    size_t n_rules;
    smap index; /* "metric\x1f<kind><name>" -> rule indices */
    smap ids;   /* rule id -> index */
    rstate **tab;
    size_t tab_cap, tab_n;
    rstate **heap;
    size_t heap_n, heap_cap;
    int *special; /* STALE, health and fast rules, for the per-device queries */
    size_t n_special;
    uint64_t stamp, seq;
    size_t active;
    unsigned tgt_used; /* bit per target kind char present in the index */
    int any_metric;    /* some rule is indexed under metric "*" */
    gw_rules_cb cb;
    void *ctx;
    const char *detail;    /* detail for the transition being emitted */
    const char *link;      /* forecast withdrawn by this alarm id */
    gw_rule_override *ovr; /* run-time overrides (gw_rules_set_overrides) */
    int *ovr_rule;         /* the rule index of each, -1 for an unknown rule */
    size_t n_ovr;
};

#define TG_BIT_ALL 1u
#define TG_BIT(kind) (2u << (kind))
static const char tg_char[] = {'d', 't', 's', 'g'};

/* ---- string map ------------------------------------------------------- */

static smap_ent *smap_find(const smap *m, const char *key, size_t len, uint64_t h)
{
    if (!m->cap)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        smap_ent *en = &m->tab[i];
        if (!en->key)
            return NULL;
        if (en->h == h && strncmp(en->key, key, len) == 0 && en->key[len] == '\0')
            return en;
    }
}

static int smap_add(smap *m, const char *key, int val)
{
    size_t len = strlen(key);
    uint64_t h = fnv_bytes(fnv_init(), key, len);
    smap_ent *en = smap_find(m, key, len, h);
    if (!en) {
        if ((m->n + 1) * 10 > m->cap * 7) {
            size_t ncap = m->cap ? m->cap * 2 : 16;
            smap_ent *nt = calloc(ncap, sizeof(*nt));
            if (!nt)
                return GW_ENOMEM;
            for (size_t i = 0; i < m->cap; i++) {
                if (!m->tab[i].key)
                    continue;
                size_t j = m->tab[i].h & (ncap - 1);
                while (nt[j].key)
                    j = (j + 1) & (ncap - 1);
                nt[j] = m->tab[i];
            }
            free(m->tab);
            m->tab = nt;
            m->cap = ncap;
        }
        size_t j = h & (m->cap - 1);
        while (m->tab[j].key)
            j = (j + 1) & (m->cap - 1);
        en = &m->tab[j];
        en->key = strdup(key);
        if (!en->key)
            return GW_ENOMEM;
        en->h = h;
        m->n++;
    }
    for (int i = 0; i < en->n; i++)
        if (en->v[i] == val)
            return GW_OK;
    if (en->n == en->cap) {
        int ncap = en->cap ? en->cap * 2 : 4;
        int *nv = realloc(en->v, (size_t)ncap * sizeof(int));
        if (!nv)
            return GW_ENOMEM;
        en->v = nv;
        en->cap = ncap;
    }
    en->v[en->n++] = val;
    return GW_OK;
}

static void smap_free(smap *m)
{
    for (size_t i = 0; i < m->cap; i++) {
        free(m->tab[i].key);
        free(m->tab[i].v);
    }
    free(m->tab);
    memset(m, 0, sizeof(*m));
}

static int rule_index_of(const gw_rules_engine *e, const char *id)
{
    size_t len = strlen(id);
    smap_ent *en = smap_find(&e->ids, id, len, fnv_bytes(fnv_init(), id, len));
    return en ? en->v[0] : -1;
}

/* ---- state table and heap --------------------------------------------- */

static uint64_t state_hash(uint64_t devh, uint32_t rule)
{
    return mix64(devh ^ ((uint64_t)(rule + 1) * 0x9e3779b97f4a7c15ull));
}

static uint64_t dev_hash(const char *id)
{
    return fnv_str(fnv_init(), id);
}

static rstate *state_find(const gw_rules_engine *e, uint32_t rule, const char *dev, uint64_t devh)
{
    if (!e->tab_cap)
        return NULL;
    uint64_t h = state_hash(devh, rule);
    size_t mask = e->tab_cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        rstate *st = e->tab[i];
        if (!st)
            return NULL;
        if (st->h == h && st->rule == rule && strcmp(st->device, dev) == 0)
            return st;
    }
}

static int table_grow(gw_rules_engine *e)
{
    size_t ncap = e->tab_cap ? e->tab_cap * 2 : 1024;
    rstate **nt = calloc(ncap, sizeof(*nt));
    if (!nt)
        return GW_ENOMEM;
    for (size_t i = 0; i < e->tab_cap; i++) {
        rstate *st = e->tab[i];
        if (!st)
            continue;
        size_t j = st->h & (ncap - 1);
        while (nt[j])
            j = (j + 1) & (ncap - 1);
        nt[j] = st;
    }
    free(e->tab);
    e->tab = nt;
    e->tab_cap = ncap;
    return GW_OK;
}

static rstate *state_get(gw_rules_engine *e, uint32_t rule, const char *dev, uint64_t devh)
{
    rstate *st = state_find(e, rule, dev, devh);
    if (st)
        return st;
    if (strlen(dev) >= GW_ID_MAX)
        return NULL;
    if ((e->tab_n + 1) * 10 > e->tab_cap * 7 && table_grow(e))
        return NULL;
    st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    const gw_rule *d = &e->rules[rule].def;
    if (d->kind == GW_RK_WINDOW && series_init(&st->ser, d->window_ms, d->buckets)) {
        free(st);
        return NULL;
    }
    if (d->kind == GW_RK_FORECAST && !(st->fc = calloc(1, sizeof(*st->fc)))) {
        free(st);
        return NULL;
    }
    st->h = state_hash(devh, rule);
    st->rule = rule;
    st->heap = -1;
    memcpy(st->device, dev, strlen(dev) + 1);
    for (int l = 0; l < GW_RULE_LEVELS; l++)
        st->x[l] = NAN;
    st->thr = NAN;
    size_t j = st->h & (e->tab_cap - 1);
    while (e->tab[j])
        j = (j + 1) & (e->tab_cap - 1);
    e->tab[j] = st;
    e->tab_n++;
    return st;
}

static void heap_swap(gw_rules_engine *e, size_t a, size_t b)
{
    rstate *t = e->heap[a];
    e->heap[a] = e->heap[b];
    e->heap[b] = t;
    e->heap[a]->heap = (int)a;
    e->heap[b]->heap = (int)b;
}

static void heap_up(gw_rules_engine *e, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (e->heap[p]->sched <= e->heap[i]->sched)
            break;
        heap_swap(e, p, i);
        i = p;
    }
}

static void heap_down(gw_rules_engine *e, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < e->heap_n && e->heap[l]->sched < e->heap[m]->sched)
            m = l;
        if (r < e->heap_n && e->heap[r]->sched < e->heap[m]->sched)
            m = r;
        if (m == i)
            return;
        heap_swap(e, i, m);
        i = m;
    }
}

static int heap_push(gw_rules_engine *e, rstate *st, int64_t when)
{
    if (e->heap_n == e->heap_cap) {
        size_t ncap = e->heap_cap ? e->heap_cap * 2 : 256;
        rstate **nh = realloc(e->heap, ncap * sizeof(*nh));
        if (!nh)
            return GW_ENOMEM;
        e->heap = nh;
        e->heap_cap = ncap;
    }
    st->sched = when;
    st->heap = (int)e->heap_n;
    e->heap[e->heap_n++] = st;
    heap_up(e, e->heap_n - 1);
    return GW_OK;
}

static rstate *heap_pop(gw_rules_engine *e)
{
    rstate *top = e->heap[0];
    e->heap_n--;
    if (e->heap_n) {
        e->heap[0] = e->heap[e->heap_n];
        e->heap[0]->heap = 0;
        heap_down(e, 0);
    }
    top->heap = -1;
    return top;
}

/* ---- evaluation ------------------------------------------------------- */

static int crossed(int dir, double x, double raise)
{
    if (isnan(x))
        return 0;
    return dir == GW_DIR_ABOVE ? x >= raise : x <= raise;
}

static int cleared(int dir, double x, double clear)
{
    if (isnan(x))
        return 1;
    return dir == GW_DIR_ABOVE ? x < clear : x > clear;
}

/* The level the values call for, given the current level (hysteresis). */
static const gw_rule_level *levels_of(const gw_rule *d, const rstate *st)
{
    return st->lv ? st->lv : d->levels;
}

static int graded_target(const gw_rule *d, const rstate *st, const double *x)
{
    int cand = 0, held = 0, cur = st->level;
    const gw_rule_level *levels = levels_of(d, st);
    for (int l = GW_RULE_LEVELS; l >= 1; l--) {
        const gw_rule_level *lv = &levels[l - 1];
        if (lv->enabled && crossed(d->dir, x[l - 1], lv->raise)) {
            cand = l;
            break;
        }
    }
    for (int l = cur; l >= 1; l--) {
        const gw_rule_level *lv = &levels[l - 1];
        if (lv->enabled && !cleared(d->dir, x[l - 1], lv->clear)) {
            held = l;
            break;
        }
    }
    return cand > held ? cand : held;
}

static int64_t raise_for(const gw_rule *d)
{
    return d->kind == GW_RK_EVENT ? 0 : d->raise_for_ms;
}

static int64_t clear_for(const gw_rule *d)
{
    return d->kind == GW_RK_EVENT ? 0 : d->clear_for_ms;
}

static int64_t cond_min_width(const rule_rt *rr)
{
    int64_t w = INT64_MAX;
    for (size_t i = 0; i < rr->def.n_conds; i++)
        if (rr->conds[i].ser.ring && rr->conds[i].ser.width < w)
            w = rr->conds[i].ser.width;
    return w;
}

static int schedule(gw_rules_engine *e, rstate *st, int64_t now)
{
    const rule_rt *rr = &e->rules[st->rule];
    const gw_rule *d = &rr->def;
    int64_t due = INT64_MAX;
    for (int l = 1; l <= GW_RULE_LEVELS; l++)
        if (st->pend & (1u << l))
            due = imin(due, st->since[l - 1] + (l > st->level ? raise_for(d) : clear_for(d)));
    switch (d->kind) {
    case GW_RK_WINDOW:
        if (st->level || st->pend || d->dir == GW_DIR_BELOW)
            due = imin(due, series_next_boundary(&st->ser, now));
        break;
    case GW_RK_COMBINED:
        if (st->level || st->pend) {
            int64_t w = cond_min_width(rr);
            if (w != INT64_MAX)
                due = imin(due, (floordiv(now, w) + 1) * w);
        }
        break;
    case GW_RK_STALE:
        if (!st->level && st->has_seen)
            due = imin(due, st->last_seen + d->stale_after_ms);
        break;
    case GW_RK_EVENT:
        if (st->level && d->auto_clear_ms)
            due = imin(due, st->last_seen + d->auto_clear_ms);
        break;
    case GW_RK_FORECAST:
        if (st->level)
            due = imin(due, st->last_seen + d->window_ms);
        break;
    default:
        break;
    }
    if (due == INT64_MAX)
        return GW_OK;
    if (due <= now)
        due = now + 1;
    if (st->heap < 0)
        return heap_push(e, st, due);
    if (due < st->sched) {
        st->sched = due;
        heap_up(e, (size_t)st->heap);
    }
    return GW_OK;
}

static const char *alarm_metric(const gw_rule *d)
{
    if (d->kind == GW_RK_EVENT)
        return d->event;
    if (!d->metric[0] && d->kind == GW_RK_COMBINED && d->n_conds)
        return d->conds[0].metric;
    return d->metric;
}

/* Why a forecast is withdrawn (or none is called for). */
enum fc_why { FC_NONE = 0, FC_CROSSED, FC_REVERSED, FC_FLAT, FC_UNSURE, FC_FAR, FC_FEW, FC_NODATA };
static const char *const fc_why_name[] = {"",
                                          "crossed",
                                          "trend reversed",
                                          "no trend",
                                          "trend uncertain",
                                          "beyond horizon",
                                          "too few readings",
                                          "no recent readings"};

/* The crossing time of the forecast's current level, else the last one sent. */
static int64_t fc_crossing(const rstate *st)
{
    int64_t c = st->level ? st->fc->out.crossings[st->level - 1] : 0;
    return c ? c : st->fc->sent_cross;
}

static void emit(gw_rules_engine *e, const rule_rt *rr, const rstate *st, int state, int prev,
                 double value, double thr, int64_t now)
{
    const gw_rule *d = &rr->def;
    gw_rules_transition t;
    memset(&t, 0, sizeof(t));
    gw_alarm *a = &t.alarm;
    snprintf(a->id, sizeof(a->id), "%s:%s:%lld", d->id, st->device, (long long)st->raised_ms);
    gw_strlcpy(a->rule, d->id, sizeof(a->rule));
    gw_strlcpy(a->device, st->device, sizeof(a->device));
    gw_strlcpy(a->metric, alarm_metric(d), sizeof(a->metric));
    a->level = st->level;
    a->state = (uint8_t)state;
    a->value = value;
    a->threshold = thr;
    a->raised_ms = st->raised_ms;
    a->at_ms = now;
    a->seq = ++e->seq;
    gw_forecast fc;
    if (st->fc) {
        fc = st->fc->out;
        fc.crossing_ms = fc_crossing(st);
        fc.linked = state == GW_ALARM_CLEARED ? e->link : NULL;
        t.forecast = &fc;
    }
    if (e->detail)
        gw_strlcpy(a->detail, e->detail, sizeof(a->detail));
    else if (d->kind == GW_RK_FORECAST) {
        if (state == GW_ALARM_CLEARED)
            gw_strlcpy(a->detail, fc_why_name[st->fc->why], sizeof(a->detail));
    } else if (d->kind == GW_RK_WINDOW) {
        int lv = st->level ? st->level : prev;
        const gw_rule_level *levels = levels_of(d, st);
        int64_t w = lv && levels[lv - 1].window_ms ? levels[lv - 1].window_ms : d->window_ms;
        snprintf(a->detail, sizeof(a->detail), "%s over %lld s", gw_rule_fn_name(d->fn),
                 (long long)(w / 1000));
    } else if (d->kind != GW_RK_THRESHOLD) {
        snprintf(a->detail, sizeof(a->detail), "%s", gw_rule_kind_name(d->kind));
    }
    t.prev_level = prev;
    t.rule = d;
    t.health_reason = health_reason_of(d->kind);
    t.fast_interval_ms = d->fast_interval_ms;
    if (d->fast_interval_ms > 0) {
        if (d->kind == GW_RK_COMBINED) {
            t.poll_devices[t.n_poll_devices++] = d->subject;
            for (size_t i = 0; i < d->n_conds; i++) {
                int dup = 0;
                for (size_t j = 0; j < t.n_poll_devices; j++)
                    dup |= strcmp(t.poll_devices[j], d->conds[i].device) == 0;
                if (!dup)
                    t.poll_devices[t.n_poll_devices++] = d->conds[i].device;
            }
        } else {
            t.poll_devices[t.n_poll_devices++] = st->device;
        }
    }
    if (e->cb)
        e->cb(e->ctx, &t);
}

static void report_values(const gw_rule *d, const rstate *st, int lv, int clearing, double *value,
                          double *thr)
{
    if ((graded(d->kind) || d->kind == GW_RK_FORECAST) && lv >= 1) {
        *value = st->x[lv - 1];
        const gw_rule_level *levels = levels_of(d, st);
        *thr = clearing && d->kind != GW_RK_FORECAST ? levels[lv - 1].clear : levels[lv - 1].raise;
    } else {
        *value = st->x[0];
        *thr = st->thr;
    }
}

static void fc_crossed(gw_rules_engine *e, const rule_rt *alarm, const rstate *ast, int64_t now);

static void transition(gw_rules_engine *e, rstate *st, int nl, int64_t now)
{
    const rule_rt *rr = &e->rules[st->rule];
    int prev = st->level, state, alarm = rr->def.kind != GW_RK_FORECAST;
    if (prev == 0) {
        state = GW_ALARM_RAISED;
        st->raised_ms = now;
        st->acked = 0;
        e->active += (size_t)alarm;
    } else if (nl == 0) {
        state = GW_ALARM_CLEARED;
        e->active -= (size_t)alarm;
    } else {
        state = GW_ALARM_UPDATED;
        if (nl > prev)
            st->acked = 0;
    }
    int lo = prev < nl ? prev : nl, hi = prev < nl ? nl : prev;
    for (int l = lo + 1; l <= hi; l++)
        st->pend &= (uint8_t) ~(1u << l);
    st->level = (uint8_t)nl;
    double value, thr;
    report_values(&rr->def, st, nl ? nl : prev, nl == 0, &value, &thr);
    emit(e, rr, st, state, prev, value, thr, now);
    st->sent = value;
    st->last_tx_ms = now;
    if (st->fc)
        st->fc->sent_cross = nl ? fc_crossing(st) : 0;
    if (nl == 0)
        st->raised_ms = 0;
    if (rr->fc_link >= 0 && nl > prev)
        fc_crossed(e, rr, st, now);
}

/* Applies debounce to the stored target and makes at most one transition. */
static int decide(gw_rules_engine *e, rstate *st, int64_t now, int allow_update)
{
    const gw_rule *d = &e->rules[st->rule].def;
    int lvl = st->level, nl = lvl;
    for (int l = GW_RULE_LEVELS; l > lvl; l--) {
        if ((st->pend & (1u << l)) && now - st->since[l - 1] >= raise_for(d)) {
            nl = l;
            break;
        }
    }
    if (nl == lvl) {
        for (int l = lvl; l >= 1; l--) {
            if ((st->pend & (1u << l)) && now - st->since[l - 1] >= clear_for(d))
                nl = l - 1;
            else
                break;
        }
    }
    if (nl != lvl) {
        transition(e, st, nl, now);
    } else if (lvl && allow_update && (d->update_delta > 0 || d->update_interval_ms > 0)) {
        double value, thr;
        report_values(d, st, lvl, 0, &value, &thr);
        if (!isnan(value) && value != st->sent &&
            (d->update_delta <= 0 || fabs(value - st->sent) >= d->update_delta) &&
            now - st->last_tx_ms >= d->update_interval_ms) {
            emit(e, &e->rules[st->rule], st, GW_ALARM_UPDATED, lvl, value, thr, now);
            st->sent = value;
            st->last_tx_ms = now;
        }
    }
    return schedule(e, st, now);
}

static int apply(gw_rules_engine *e, rstate *st, int target, int64_t now, int allow_update)
{
    st->target = (uint8_t)target;
    for (int l = 1; l <= GW_RULE_LEVELS; l++) {
        int want = l > st->level ? target >= l : target < l;
        if (want) {
            if (!(st->pend & (1u << l))) {
                st->pend |= (uint8_t)(1u << l);
                st->since[l - 1] = now;
            }
        } else {
            st->pend &= (uint8_t) ~(1u << l);
        }
    }
    return decide(e, st, now, allow_update);
}

static void set_all(rstate *st, double v, double thr)
{
    for (int l = 0; l < GW_RULE_LEVELS; l++)
        st->x[l] = v;
    st->thr = thr;
}

static int window_eval(gw_rules_engine *e, rstate *st, int64_t now, int allow_update)
{
    const gw_rule *d = &e->rules[st->rule].def;
    const gw_rule_level *levels = levels_of(d, st);
    int64_t w[GW_RULE_LEVELS];
    double x[GW_RULE_LEVELS];
    int map[GW_RULE_LEVELS], n = 0;
    for (int l = 0; l < GW_RULE_LEVELS; l++) {
        if (!levels[l].enabled)
            continue;
        w[n] = levels[l].window_ms ? levels[l].window_ms : d->window_ms;
        map[n++] = l;
    }
    series_aggs(&st->ser, d->fn, w, n, now, x);
    for (int i = 0; i < n; i++)
        st->x[map[i]] = x[i];
    return apply(e, st, graded_target(d, st, st->x), now, allow_update);
}

static void cond_eval(cstate *cs, const gw_rule_cond *c, int64_t now)
{
    double v = series_agg(&cs->ser, c->fn, c->window_ms, now);
    cs->val = v;
    if (isnan(v))
        cs->latched = 0;
    else if (cs->latched)
        cs->latched = !cleared(c->dir, v, c->clear);
    else
        cs->latched = (uint8_t)crossed(c->dir, v, c->threshold);
}

static int combined_eval(gw_rules_engine *e, uint32_t ri, int64_t now, int focus, int allow_update)
{
    rule_rt *rr = &e->rules[ri];
    const gw_rule *d = &rr->def;
    int all = 1, any = 0;
    for (size_t i = 0; i < d->n_conds; i++) {
        cond_eval(&rr->conds[i], &d->conds[i], now);
        all &= rr->conds[i].latched;
        any |= rr->conds[i].latched;
    }
    int on = d->combine == GW_COMBINE_ALL ? all : any;
    rstate *st = state_get(e, ri, d->subject, dev_hash(d->subject));
    if (!st)
        return GW_ENOMEM;
    if (focus < 0)
        focus = 0;
    set_all(st, rr->conds[focus].val, d->conds[focus].threshold);
    return apply(e, st, on ? d->level : 0, now, allow_update);
}

/* ---- reading dispatch -------------------------------------------------- */

typedef struct rctx {
    const gw_rules_device *dev;
    uint64_t devh;
    const gw_reading *r;
    const gw_event *ev;
    int64_t now;
    int rc;
} rctx;

static int64_t sample_time(const gw_reading *r, int64_t window, int64_t now)
{
    if (r->obs_ms > 0 && r->obs_ms <= now && r->obs_ms > now - window)
        return r->obs_ms;
    return now;
}

/* ---- forecasts --------------------------------------------------------- */

/* Adds a good reading taken at t. The newest slot follows the readings until
 * one comes `spacing` after the point before it; older points stay put, so
 * the ring spans the window whatever the reporting rate. */
static void fc_add(fcast *f, int64_t t, double v, int64_t spacing)
{
    int last = (f->head + f->n + GW_FC_POINTS - 1) % GW_FC_POINTS;
    int before = (f->head + f->n + GW_FC_POINTS - 2) % GW_FC_POINTS;
    if (f->n && t < f->t[last])
        return; /* out of order: the fit assumes time order */
    if (f->n && (t == f->t[last] || (f->n >= 2 && t - f->t[before] < spacing))) {
        f->t[last] = t;
        f->v[last] = v;
        return;
    }
    if (f->n == GW_FC_POINTS)
        f->head = (uint8_t)((f->head + 1) % GW_FC_POINTS);
    else
        f->n++;
    last = (f->head + f->n - 1) % GW_FC_POINTS;
    f->t[last] = t;
    f->v[last] = v;
}

/* The k-th smallest of a[0..n) (0-based; reorders a). Quickselect: the fit
 * sorts at most 120 slopes, so a full sort would cost more than needed. */
static double kth(double *a, int n, int k)
{
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        double p = a[(lo + hi) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (a[i] < p)
                i++;
            while (a[j] > p)
                j--;
            if (i <= j) {
                double t = a[i];
                a[i++] = a[j];
                a[j--] = t;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return a[k];
    }
    return a[k];
}

static double median(double *a, int n)
{
    double hi = kth(a, n, n / 2);
    if (n % 2)
        return hi;
    double lo = a[0]; /* after kth, a[0..n/2) holds the smaller half */
    for (int i = 1; i < n / 2; i++)
        if (a[i] > lo)
            lo = a[i];
    return (lo + hi) / 2;
}

/* Theil-Sen fit over the points after `from`: the median of pairwise slopes
 * (units per minute) and the median intercept at the newest point (*fit).
 * *conf is the Mann-Kendall trend test's one-sided confidence that the
 * series moves the median's way (S = rising pairs - falling pairs, normal
 * approximation, no tie correction). Returns the number of points used. */
static int fc_fit(const fcast *f, int64_t from, double *rate, double *fit, double *conf,
                  int64_t *t_last)
{
    double tm[GW_FC_POINTS], v[GW_FC_POINTS], sl[GW_FC_POINTS * (GW_FC_POINTS - 1) / 2];
    int n = 0, m = 0;
    for (int i = 0; i < f->n; i++) {
        int k = (f->head + i) % GW_FC_POINTS;
        if (f->t[k] > from) {
            tm[n] = (double)f->t[k];
            v[n++] = f->v[k];
        }
    }
    *rate = NAN;
    *fit = n ? v[n - 1] : NAN;
    *conf = 0;
    if (n < 2)
        return n;
    *t_last = (int64_t)tm[n - 1];
    for (int i = 0; i < n; i++)
        tm[i] = (tm[i] - tm[n - 1]) / 60000.0; /* minutes before the newest point */
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (tm[j] > tm[i])
                sl[m++] = (v[j] - v[i]) / (tm[j] - tm[i]);
    if (!m)
        return 1;
    int up = 0, down = 0;
    for (int i = 0; i < m; i++) {
        up += sl[i] > 0;
        down += sl[i] < 0;
    }
    double b = median(sl, m);
    double var = (double)n * (n - 1) * (2 * n + 5) / 18.0;
    double z = (b > 0 ? up - down : b < 0 ? down - up : 0) / sqrt(var);
    *conf = 0.5 * erfc(-z / sqrt(2.0));
    for (int i = 0; i < n; i++)
        v[i] -= b * tm[i];
    *rate = b;
    *fit = median(v, n);
    return n;
}

/* Recomputes the prediction of st and applies it (debounced like alarms);
 * an active forecast whose crossing moved by move_ms or more is UPDATED. */
static int fc_eval(gw_rules_engine *e, rstate *st, int64_t now)
{
    const rule_rt *rr = &e->rules[st->rule];
    const gw_rule *d = &rr->def;
    fcast *f = st->fc;
    double rate, fit, conf, s = d->dir == GW_DIR_ABOVE ? 1 : -1;
    double rate2, fit2, conf2;
    int64_t tl = now, tl2;
    int n = fc_fit(f, now - d->window_ms, &rate, &fit, &conf, &tl);
    unsigned inputs = 0;
    int held = st->level != 0;
    /* Hysteresis: a forecast already out holds on weaker evidence. */
    double need = held ? fmax(0.5, d->min_confidence - 0.1) : d->min_confidence;
    double need_rate = held ? 0 : d->min_rate;
    double eff = NAN; /* the rise per minute used, in the direction of the levels */
    if (n >= (int)d->min_points && !isnan(rate)) {
        /* A significant fall over the recent half of the window tells a
         * reversal early (the whole window's slope lags by half a window). */
        int n2 = held ? fc_fit(f, now - d->window_ms / 2, &rate2, &fit2, &conf2, &tl2) : 0;
        int turned = n2 >= 4 && s * rate2 < 0 && conf2 >= need;
        eff = s * rate;
        inputs = GW_FC_IN_LEVEL;
        f->why = turned                       ? FC_REVERSED
                 : eff <= need_rate           ? (held ? FC_REVERSED : FC_FLAT)
                 : eff < d->min_rate && !held ? FC_FLAT
                 : conf < need                ? FC_UNSURE
                                              : FC_NONE;
    } else {
        f->why = n ? FC_FEW : FC_NODATA;
    }
    f->out.rain_mmh = NAN;
    if (d->n_conds) {
        const gw_rule_cond *c = &d->conds[0];
        double mm = series_agg(&rr->conds[0].ser, GW_WF_SUM, c->window_ms, now);
        f->out.rain_mmh = mm * 3600000.0 / (double)c->window_ms;
        double wet = d->rain_gain * f->out.rain_mmh / 60.0;
        /* Heavy rain is evidence of its own: the rise it implies stands in
         * for a trend the readings do not show yet. */
        if (n && f->out.rain_mmh >= c->threshold && wet > 0 && !(f->why == FC_NONE && eff >= wet)) {
            eff = wet;
            inputs |= GW_FC_IN_RAIN;
            f->why = wet < d->min_rate ? FC_FLAT : FC_NONE;
        }
    }
    int alarm_level = 0;
    if (rr->alarm_link >= 0) {
        const rstate *as =
            state_find(e, (uint32_t)rr->alarm_link, st->device, dev_hash(st->device));
        alarm_level = as ? as->level : 0;
    }
    int target = 0, crossed = 0;
    for (int l = 1; l <= GW_RULE_LEVELS; l++) {
        const gw_rule_level *lv = &d->levels[l - 1];
        f->out.crossings[l - 1] = 0;
        if (!lv->enabled)
            continue;
        /* Linked to an alarm rule, a level is reached when its alarm says so. */
        int reached = rr->alarm_link >= 0 ? alarm_level >= l : s * (fit - lv->raise) >= 0;
        if (reached) {
            crossed = l;
            continue;
        }
        if (f->why != FC_NONE)
            continue;
        double gap = s * (lv->raise - fit), at = (double)tl + fmax(gap, 0) / eff * 60000.0;
        /* Hysteresis: a level already forecast holds out to 1.5 horizons. */
        double lim = (double)(l <= st->level ? d->horizon_ms + d->horizon_ms / 2 : d->horizon_ms);
        if (at - (double)now <= lim) {
            f->out.crossings[l - 1] = (int64_t)at;
            target = l;
        }
    }
    if (!target && f->why == FC_NONE)
        f->why = held && crossed >= st->level ? FC_CROSSED : FC_FAR;
    f->out.rate = isnan(eff) ? 0 : s * eff;
    f->out.confidence = conf;
    f->out.inputs = inputs;
    f->out.points = (uint32_t)n;
    f->out.linked = NULL;
    set_all(st, fit, NAN);
    uint64_t seq = e->seq;
    int rc = apply(e, st, target, now, 0);
    if (!rc && st->level && e->seq == seq && d->move_ms > 0 && f->out.crossings[st->level - 1] &&
        llabs(f->out.crossings[st->level - 1] - f->sent_cross) >= d->move_ms &&
        now - st->last_tx_ms >= d->update_interval_ms) {
        double value, thr;
        report_values(d, st, st->level, 0, &value, &thr);
        emit(e, rr, st, GW_ALARM_UPDATED, st->level, value, thr, now);
        f->sent_cross = f->out.crossings[st->level - 1];
        st->sent = value;
        st->last_tx_ms = now;
    }
    return rc;
}

static int fc_reading(gw_rules_engine *e, uint32_t ri, const rctx *c)
{
    rule_rt *rr = &e->rules[ri];
    const gw_rule *d = &rr->def;
    const gw_reading *r = c->r;
    if (r->quality != GW_Q_GOOD || !isfinite(r->value))
        return GW_OK;
    if (d->n_conds && !strcmp(r->metric, d->conds[0].metric)) {
        const gw_rule_cond *cd = &d->conds[0];
        if (!strcmp(c->dev->id, cd->device))
            series_add(&rr->conds[0].ser, cd->input, r->value,
                       sample_time(r, cd->window_ms, c->now));
        return GW_OK;
    }
    if (strcmp(r->metric, d->metric))
        return GW_OK;
    rstate *st = state_get(e, ri, c->dev->id, c->devh);
    if (!st)
        return GW_ENOMEM;
    fc_add(st->fc, sample_time(r, d->window_ms, c->now), r->value, d->window_ms / GW_FC_POINTS);
    st->last_seen = c->now;
    return fc_eval(e, st, c->now);
}

/* The linked alarm rule raised or escalated to ast->level: a forecast for
 * that level or below has come true and hands over to the alarm at once. */
static void fc_crossed(gw_rules_engine *e, const rule_rt *alarm, const rstate *ast, int64_t now)
{
    rstate *st = state_find(e, (uint32_t)alarm->fc_link, ast->device, dev_hash(ast->device));
    if (!st || !st->level || st->level > ast->level)
        return;
    char id[sizeof(((gw_alarm *)0)->id)];
    snprintf(id, sizeof(id), "%s:%s:%lld", alarm->def.id, ast->device, (long long)ast->raised_ms);
    const char *detail = e->detail;
    st->fc->why = FC_CROSSED;
    e->link = id;
    e->detail = NULL;
    transition(e, st, 0, now);
    st->pend = 0;
    e->link = NULL;
    e->detail = detail;
}

/* ---- run-time overrides ------------------------------------------------ */

static int ovr_names(const gw_rule_override *o, const gw_rules_device *dev, int kind)
{
    if (o->target != kind)
        return 0;
    if (kind == GW_TG_DEVICE)
        return !strcmp(o->name, dev->id);
    for (size_t g = 0; g < dev->n_groups; g++)
        if (dev->groups[g] && !strcmp(o->name, dev->groups[g]))
            return 1;
    return 0;
}

/* Sets st's levels and switch from the overrides of rule ri naming dev:
 * each from the device's own override when it sets it, else from the first
 * override of one of its groups that does. */
static void ovr_find(const gw_rules_engine *e, uint32_t ri, const gw_rules_device *dev, rstate *st)
{
    const gw_rule_override *lv = NULL, *sw = NULL;
    for (int kind = GW_TG_DEVICE, pass = 0; pass < 2; pass++, kind = GW_TG_GROUP)
        for (size_t i = 0; i < e->n_ovr; i++) {
            const gw_rule_override *o = &e->ovr[i];
            if (e->ovr_rule[i] != (int)ri || !ovr_names(o, dev, kind))
                continue;
            if (!lv && o->has_levels)
                lv = o;
            if (!sw && o->enable >= 0)
                sw = o;
        }
    st->lv = lv ? lv->levels : NULL;
    st->off = (uint8_t)(sw && sw->enable == 0);
}

/* Applies the overrides of (rule ri, dev) to its state; returns 1 when the
 * rule is off for dev (an active alarm is then cleared: nobody would ever
 * see it clear otherwise). */
static int ovr_resolve(gw_rules_engine *e, uint32_t ri, const gw_rules_device *dev, rstate *st,
                       int64_t now)
{
    ovr_find(e, ri, dev, st);
    if (!st->off)
        return 0;
    if (st->level) {
        e->detail = "rule disabled";
        transition(e, st, 0, now);
        e->detail = NULL;
    }
    st->pend = 0;
    return 1;
}

int gw_rules_set_overrides(gw_rules_engine *e, const gw_rule_override *o, size_t n)
{
    gw_rule_override *no = NULL;
    int *nr = NULL;
    if (n && (!(no = malloc(n * sizeof(*no))) || !(nr = malloc(n * sizeof(*nr))))) {
        free(no);
        return GW_ENOMEM;
    }
    if (n)
        memcpy(no, o, n * sizeof(*no));
    free(e->ovr);
    free(e->ovr_rule);
    e->ovr = no;
    e->ovr_rule = nr;
    e->n_ovr = n;
    for (size_t r = 0; r < e->n_rules; r++)
        e->rules[r].novr = 0;
    for (size_t i = 0; i < n; i++) {
        nr[i] = rule_index_of(e, no[i].rule);
        if (nr[i] >= 0)
            e->rules[nr[i]].novr++;
    }
    /* States keep no pointer into the old array. Device overrides apply at
     * once (a pending debounce runs on the new levels); group overrides need
     * the device's groups, so they apply at its next reading or event. */
    for (size_t i = 0; i < e->tab_cap; i++) {
        rstate *st = e->tab[i];
        if (st) {
            gw_rules_device only = {st->device, NULL, NULL, NULL, 0};
            ovr_find(e, st->rule, &only, st);
        }
    }
    return GW_OK;
}

static int on_reading(gw_rules_engine *e, uint32_t ri, rctx *c)
{
    rule_rt *rr = &e->rules[ri];
    const gw_rule *d = &rr->def;
    const gw_reading *r = c->r;
    int bad = r->quality == GW_Q_BAD;
    int64_t now = c->now;
    rstate *st;

    if (d->kind == GW_RK_FORECAST)
        return fc_reading(e, ri, c);
    if (d->kind == GW_RK_COMBINED) {
        if (bad)
            return GW_OK;
        int focus = -1;
        for (size_t i = 0; i < d->n_conds; i++) {
            const gw_rule_cond *cd = &d->conds[i];
            if (strcmp(cd->device, c->dev->id) || strcmp(cd->metric, r->metric))
                continue;
            series_add(&rr->conds[i].ser, cd->input, r->value, sample_time(r, cd->window_ms, now));
            if (focus < 0)
                focus = (int)i;
        }
        if (focus < 0)
            return GW_OK;
        return combined_eval(e, ri, now, focus, 1);
    }
    if (bad && d->kind != GW_RK_STALE && d->kind != GW_RK_RANGE)
        return GW_OK;
    st = state_get(e, ri, c->dev->id, c->devh);
    if (!st)
        return GW_ENOMEM;
    if (rr->novr && ovr_resolve(e, ri, c->dev, st, now))
        return GW_OK;
    switch (d->kind) {
    case GW_RK_THRESHOLD:
        set_all(st, r->value, NAN);
        return apply(e, st, graded_target(d, st, st->x), now, 1);
    case GW_RK_WINDOW:
        series_add(&st->ser, d->input, r->value, sample_time(r, d->window_ms, now));
        return window_eval(e, st, now, 1);
    case GW_RK_STALE:
        st->last_seen = now;
        st->has_seen = 1;
        if (st->level || st->pend)
            return apply(e, st, 0, now, 0);
        return schedule(e, st, now);
    case GW_RK_FLATLINE: {
        int target = 0;
        if (!st->has_flat || fabs(r->value - st->flat_ref) > d->flat_epsilon) {
            st->flat_ref = r->value;
            st->flat_since = now;
            st->has_flat = 1;
        } else if (now - st->flat_since >= d->flat_for_ms) {
            target = d->level;
        }
        set_all(st, r->value, (double)d->flat_for_ms / 1000.0);
        return apply(e, st, target, now, 0);
    }
    case GW_RK_RANGE: {
        int flagged = bad && (r->reason == GW_R_OUT_OF_RANGE || r->reason == GW_R_OVER_RANGE);
        int outside = !bad && d->range_min < d->range_max &&
                      (r->value < d->range_min || r->value > d->range_max);
        int target;
        if (flagged || outside)
            target = d->level;
        else if (r->quality == GW_Q_GOOD)
            target = 0;
        else
            return GW_OK;
        set_all(st, r->value,
                outside ? (r->value < d->range_min ? d->range_min : d->range_max) : NAN);
        return apply(e, st, target, now, 0);
    }
    default:
        return GW_OK;
    }
}

static int on_event(gw_rules_engine *e, uint32_t ri, rctx *c)
{
    const gw_rule *d = &e->rules[ri].def;
    if (d->kind != GW_RK_EVENT)
        return GW_OK;
    rstate *st = state_get(e, ri, c->dev->id, c->devh);
    if (!st)
        return GW_ENOMEM;
    if (e->rules[ri].novr && ovr_resolve(e, ri, c->dev, st, c->now))
        return GW_OK;
    int rc;
    e->detail = c->ev->detail[0] ? c->ev->detail : NULL;
    set_all(st, c->ev->active ? 1 : 0, 1);
    if (c->ev->active) {
        st->last_seen = c->now;
        rc = apply(e, st, d->level, c->now, 0);
    } else {
        rc = apply(e, st, 0, c->now, 0);
    }
    e->detail = NULL;
    return rc;
}

static void visit(gw_rules_engine *e, const char *metric, char kch, const char *name, rctx *c,
                  int (*fn)(gw_rules_engine *, uint32_t, rctx *))
{
    char key[GW_KEY_MAX + GW_ID_MAX + 8];
    size_t ml = strlen(metric), nl = strlen(name);
    if (ml + nl + 3 > sizeof(key))
        return;
    memcpy(key, metric, ml);
    key[ml] = '\x1f';
    key[ml + 1] = kch;
    memcpy(key + ml + 2, name, nl + 1);
    size_t len = ml + 2 + nl;
    smap_ent *en = smap_find(&e->index, key, len, fnv_bytes(fnv_init(), key, len));
    if (!en)
        return;
    for (int i = 0; i < en->n; i++) {
        rule_rt *rr = &e->rules[en->v[i]];
        if (rr->stamp == e->stamp)
            continue; /* matched already through another target */
        rr->stamp = e->stamp;
        int rc = fn(e, (uint32_t)en->v[i], c);
        if (rc && !c->rc)
            c->rc = rc;
    }
}

static void dispatch(gw_rules_engine *e, const char *metric, rctx *c,
                     int (*fn)(gw_rules_engine *, uint32_t, rctx *))
{
    const gw_rules_device *dev = c->dev;
    if (e->tgt_used & TG_BIT_ALL)
        visit(e, metric, 'a', "", c, fn);
    if (e->tgt_used & TG_BIT(GW_TG_DEVICE))
        visit(e, metric, 'd', dev->id, c, fn);
    if ((e->tgt_used & TG_BIT(GW_TG_TYPE)) && dev->type)
        visit(e, metric, 't', dev->type, c, fn);
    if ((e->tgt_used & TG_BIT(GW_TG_SITE)) && dev->site)
        visit(e, metric, 's', dev->site, c, fn);
    if (e->tgt_used & TG_BIT(GW_TG_GROUP))
        for (size_t i = 0; i < dev->n_groups; i++)
            if (dev->groups[i])
                visit(e, metric, 'g', dev->groups[i], c, fn);
}

int gw_rules_reading(gw_rules_engine *e, const gw_rules_device *dev, const gw_reading *r,
                     int64_t now)
{
    if (!dev || !dev->id || !dev->id[0] || strlen(dev->id) >= GW_ID_MAX || !r)
        return GW_EINVAL;
    rctx c = {dev, dev_hash(dev->id), r, NULL, now, 0};
    e->stamp++;
    dispatch(e, r->metric, &c, on_reading);
    if (e->any_metric)
        dispatch(e, "*", &c, on_reading);
    return c.rc;
}

static int target_match(const gw_rule *d, const gw_rules_device *dev)
{
    if (!d->n_targets)
        return 1;
    for (size_t i = 0; i < d->n_targets; i++) {
        const gw_rule_target *t = &d->targets[i];
        switch (t->kind) {
        case GW_TG_DEVICE:
            if (strcmp(t->name, dev->id) == 0)
                return 1;
            break;
        case GW_TG_TYPE:
            if (dev->type && strcmp(t->name, dev->type) == 0)
                return 1;
            break;
        case GW_TG_SITE:
            if (dev->site && strcmp(t->name, dev->site) == 0)
                return 1;
            break;
        case GW_TG_GROUP:
            for (size_t g = 0; g < dev->n_groups; g++)
                if (dev->groups[g] && strcmp(t->name, dev->groups[g]) == 0)
                    return 1;
            break;
        }
    }
    return 0;
}

/* Touches every STALE rule of dev; `first_only` starts clocks without
 * counting as life for clocks already running. */
static int stale_touch(gw_rules_engine *e, const gw_rules_device *dev, int64_t now, int first_only)
{
    uint64_t devh = dev_hash(dev->id);
    int rc = GW_OK;
    for (size_t i = 0; i < e->n_special; i++) {
        uint32_t ri = (uint32_t)e->special[i];
        const gw_rule *d = &e->rules[ri].def;
        if (d->kind != GW_RK_STALE || !target_match(d, dev))
            continue;
        rstate *st = state_get(e, ri, dev->id, devh);
        if (!st)
            return GW_ENOMEM;
        if (first_only && st->has_seen)
            continue;
        st->last_seen = now;
        st->has_seen = 1;
        int r2 = (st->level || st->pend) ? apply(e, st, 0, now, 0) : schedule(e, st, now);
        if (r2 && !rc)
            rc = r2;
    }
    return rc;
}

int gw_rules_event(gw_rules_engine *e, const gw_rules_device *dev, const gw_event *ev, int64_t now)
{
    if (!dev || !dev->id || !dev->id[0] || strlen(dev->id) >= GW_ID_MAX || !ev)
        return GW_EINVAL;
    /* An "offline" event is the gateway saying the device went silent, not a
     * sign of life from it: it must not restart the device's stale clocks. */
    int rc = strcmp(ev->kind, "offline") ? stale_touch(e, dev, now, 0) : 0;
    char metric[GW_KEY_MAX + 2];
    snprintf(metric, sizeof(metric), "\x1e%s", ev->kind);
    rctx c = {dev, dev_hash(dev->id), NULL, ev, now, 0};
    e->stamp++;
    dispatch(e, metric, &c, on_event);
    return rc ? rc : c.rc;
}

int gw_rules_expect(gw_rules_engine *e, const gw_rules_device *dev, int64_t now)
{
    if (!dev || !dev->id || !dev->id[0])
        return GW_EINVAL;
    return stale_touch(e, dev, now, 1);
}

/* ---- time ------------------------------------------------------------- */

static int on_due(gw_rules_engine *e, rstate *st, int64_t now)
{
    const rule_rt *rr = &e->rules[st->rule];
    const gw_rule *d = &rr->def;
    if (st->off)
        return GW_OK;
    switch (d->kind) {
    case GW_RK_WINDOW:
        return window_eval(e, st, now, 1);
    case GW_RK_COMBINED:
        return combined_eval(e, st->rule, now, 0, 0);
    case GW_RK_STALE:
        if (!st->level && st->has_seen && now - st->last_seen >= d->stale_after_ms) {
            set_all(st, (double)(now - st->last_seen) / 1000.0, (double)d->stale_after_ms / 1000.0);
            return apply(e, st, d->level, now, 0);
        }
        break;
    case GW_RK_FORECAST:
        if (st->level && now - st->last_seen >= d->window_ms) {
            st->fc->why = FC_NODATA;
            return apply(e, st, 0, now, 0);
        }
        break;
    case GW_RK_EVENT:
        if (st->level && d->auto_clear_ms && now - st->last_seen >= d->auto_clear_ms) {
            e->detail = "auto clear";
            set_all(st, 0, 1);
            int rc = apply(e, st, 0, now, 0);
            e->detail = NULL;
            return rc;
        }
        break;
    default:
        break;
    }
    return decide(e, st, now, 0);
}

int gw_rules_tick(gw_rules_engine *e, int64_t now)
{
    int rc = GW_OK;
    while (e->heap_n && e->heap[0]->sched <= now) {
        rstate *st = heap_pop(e);
        int r2 = on_due(e, st, now);
        if (r2 && !rc)
            rc = r2;
    }
    return rc;
}

int64_t gw_rules_next_deadline(const gw_rules_engine *e)
{
    return e->heap_n ? e->heap[0]->sched : INT64_MAX;
}

/* ---- queries and acknowledgement --------------------------------------- */

int gw_rules_ack(gw_rules_engine *e, const char *alarm_id, const char *by, int64_t now)
{
    const char *c1 = strchr(alarm_id, ':'), *c2 = strrchr(alarm_id, ':');
    if (!c1 || c2 == c1)
        return GW_ENOTFOUND;
    char rid[GW_KEY_MAX], dev[GW_ID_MAX];
    size_t rl = (size_t)(c1 - alarm_id), dl = (size_t)(c2 - c1 - 1);
    if (rl >= sizeof(rid) || dl >= sizeof(dev))
        return GW_ENOTFOUND;
    memcpy(rid, alarm_id, rl);
    rid[rl] = '\0';
    memcpy(dev, c1 + 1, dl);
    dev[dl] = '\0';
    char *end;
    long long raised = strtoll(c2 + 1, &end, 10);
    if (*end)
        return GW_ENOTFOUND;
    int ri = rule_index_of(e, rid);
    if (ri < 0 || e->rules[ri].def.kind == GW_RK_FORECAST)
        return GW_ENOTFOUND;
    rstate *st = state_find(e, (uint32_t)ri, dev, dev_hash(dev));
    if (!st || !st->level || st->raised_ms != raised)
        return GW_ENOTFOUND;
    if (st->acked)
        return GW_OK;
    st->acked = 1;
    char detail[GW_DETAIL_MAX];
    snprintf(detail, sizeof(detail), "acked by %s", by ? by : "?");
    e->detail = detail;
    double value, thr;
    report_values(&e->rules[ri].def, st, st->level, 0, &value, &thr);
    emit(e, &e->rules[ri], st, GW_ALARM_ACKED, st->level, value, thr, now);
    e->detail = NULL;
    return GW_OK;
}

int64_t gw_rules_fast_interval(const gw_rules_engine *e, const char *device)
{
    int64_t best = 0;
    uint64_t devh = dev_hash(device);
    for (size_t i = 0; i < e->n_special; i++) {
        uint32_t ri = (uint32_t)e->special[i];
        const gw_rule *d = &e->rules[ri].def;
        if (d->fast_interval_ms <= 0)
            continue;
        const rstate *st;
        if (d->kind == GW_RK_COMBINED) {
            int hit = strcmp(d->subject, device) == 0;
            for (size_t c = 0; c < d->n_conds; c++)
                hit |= strcmp(d->conds[c].device, device) == 0;
            st = hit ? state_find(e, ri, d->subject, dev_hash(d->subject)) : NULL;
        } else {
            st = state_find(e, ri, device, devh);
        }
        if (st && st->level && (!best || d->fast_interval_ms < best))
            best = d->fast_interval_ms;
    }
    return best;
}

int gw_rules_health(const gw_rules_engine *e, const char *device, const char *metric)
{
    uint64_t devh = dev_hash(device);
    for (size_t i = 0; i < e->n_special; i++) {
        uint32_t ri = (uint32_t)e->special[i];
        const gw_rule *d = &e->rules[ri].def;
        int reason = health_reason_of(d->kind);
        if (reason == GW_R_NONE)
            continue;
        if (metric && d->metric[0] && strcmp(d->metric, metric) != 0)
            continue;
        const rstate *st = state_find(e, ri, device, devh);
        if (st && st->level)
            return reason;
    }
    return GW_R_NONE;
}

size_t gw_rules_active_count(const gw_rules_engine *e)
{
    return e->active;
}

size_t gw_rules_active_each(const gw_rules_engine *e, gw_rules_active_cb cb, void *ctx)
{
    size_t n = 0;
    for (size_t i = 0; i < e->tab_cap; i++) {
        const rstate *st = e->tab[i];
        if (!st || !st->level)
            continue;
        const rule_rt *rr = &e->rules[st->rule];
        gw_alarm a;
        memset(&a, 0, sizeof(a));
        snprintf(a.id, sizeof(a.id), "%s:%s:%lld", rr->def.id, st->device,
                 (long long)st->raised_ms);
        gw_strlcpy(a.rule, rr->def.id, sizeof(a.rule));
        gw_strlcpy(a.device, st->device, sizeof(a.device));
        gw_strlcpy(a.metric, alarm_metric(&rr->def), sizeof(a.metric));
        a.level = st->level;
        a.state = st->acked ? GW_ALARM_ACKED : GW_ALARM_RAISED;
        report_values(&rr->def, st, st->level, 0, &a.value, &a.threshold);
        a.raised_ms = st->raised_ms;
        a.at_ms = st->last_tx_ms;
        n++;
        if (cb)
            cb(ctx, &a);
    }
    return n;
}

/* ---- construction ------------------------------------------------------ */

static int index_rule(gw_rules_engine *e, int ri, const char *metric, const gw_rule *d)
{
    char key[GW_KEY_MAX + GW_ID_MAX + 8];
    if (!d->n_targets) {
        snprintf(key, sizeof(key),
                 "%s\x1f"
                 "a",
                 metric);
        e->tgt_used |= TG_BIT_ALL;
        return smap_add(&e->index, key, ri);
    }
    for (size_t i = 0; i < d->n_targets; i++) {
        snprintf(key, sizeof(key), "%s\x1f%c%s", metric, tg_char[d->targets[i].kind],
                 d->targets[i].name);
        e->tgt_used |= TG_BIT(d->targets[i].kind);
        int rc = smap_add(&e->index, key, ri);
        if (rc)
            return rc;
    }
    return GW_OK;
}

static int build_rule(gw_rules_engine *e, int ri)
{
    rule_rt *rr = &e->rules[ri];
    const gw_rule *d = &rr->def;
    char metric[GW_KEY_MAX + 2];
    int rc = GW_OK;
    switch (d->kind) {
    case GW_RK_COMBINED:
        rr->conds = calloc(d->n_conds, sizeof(*rr->conds));
        if (!rr->conds)
            return GW_ENOMEM;
        for (size_t i = 0; i < d->n_conds && !rc; i++) {
            const gw_rule_cond *c = &d->conds[i];
            gw_rule one;
            uint32_t nb = c->fn == GW_WF_VALUE ? 0 : c->buckets ? c->buckets : COND_DEFAULT_BUCKETS;
            rc = series_init(&rr->conds[i].ser, c->window_ms, nb);
            rr->conds[i].val = NAN;
            if (rc)
                break;
            one.n_targets = 1;
            one.targets[0].kind = GW_TG_DEVICE;
            gw_strlcpy(one.targets[0].name, c->device, sizeof(one.targets[0].name));
            rc = index_rule(e, ri, c->metric, &one);
        }
        break;
    case GW_RK_EVENT:
        snprintf(metric, sizeof(metric), "\x1e%s", d->event);
        rc = index_rule(e, ri, metric, d);
        break;
    case GW_RK_FORECAST:
        rc = index_rule(e, ri, d->metric, d);
        if (!rc && d->n_conds) { /* the rain gauge, like a combined condition */
            const gw_rule_cond *c = &d->conds[0];
            gw_rule one;
            rr->conds = calloc(1, sizeof(*rr->conds));
            if (!rr->conds)
                return GW_ENOMEM;
            rc = series_init(&rr->conds[0].ser, c->window_ms,
                             c->buckets ? c->buckets : COND_DEFAULT_BUCKETS);
            if (rc)
                return rc;
            one.n_targets = 1;
            one.targets[0].kind = GW_TG_DEVICE;
            gw_strlcpy(one.targets[0].name, c->device, sizeof(one.targets[0].name));
            rc = index_rule(e, ri, c->metric, &one);
        }
        break;
    case GW_RK_STALE:
    case GW_RK_RANGE:
        if (!d->metric[0])
            e->any_metric = 1;
        rc = index_rule(e, ri, d->metric[0] ? d->metric : "*", d);
        break;
    default:
        rc = index_rule(e, ri, d->metric, d);
        break;
    }
    if (rc)
        return rc;
    if (d->kind == GW_RK_STALE || health_reason_of(d->kind) != GW_R_NONE || d->fast_interval_ms > 0)
        e->special[e->n_special++] = ri;
    return smap_add(&e->ids, d->id, ri);
}

/* Resolves each forecast's alarm_rule: a THRESHOLD rule on the same metric,
 * forecast by at most one rule. A forecast without levels takes its. */
static int link_forecasts(gw_rules_engine *e, char *err, size_t errlen)
{
    for (size_t i = 0; i < e->n_rules; i++) {
        rule_rt *rr = &e->rules[i];
        if (rr->def.kind != GW_RK_FORECAST || !rr->def.alarm_rule[0])
            continue;
        int ai = rule_index_of(e, rr->def.alarm_rule);
        rule_rt *ar = ai >= 0 ? &e->rules[ai] : NULL;
        const char *msg = !ar                               ? "alarm_rule not found"
                          : ar->def.kind != GW_RK_THRESHOLD ? "alarm_rule is not a threshold rule"
                          : strcmp(ar->def.metric, rr->def.metric) ? "alarm_rule has another metric"
                          : ar->fc_link >= 0 ? "alarm_rule already has a forecast"
                                             : NULL;
        if (msg)
            return fail(err, errlen, rr->def.id, msg);
        ar->fc_link = (int)i;
        rr->alarm_link = ai;
        if (!any_level(&rr->def)) {
            memcpy(rr->def.levels, ar->def.levels, sizeof(rr->def.levels));
            rr->def.dir = ar->def.dir;
        }
    }
    return GW_OK;
}

gw_rules_engine *gw_rules_new(const gw_rule *defs, size_t n, gw_rules_cb cb, void *ctx, char *err,
                              size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    for (size_t i = 0; i < n; i++)
        if (gw_rule_check(&defs[i], err, errlen))
            return NULL;
    gw_rules_engine *e = calloc(1, sizeof(*e));
    if (!e)
        goto nomem;
    e->cb = cb;
    e->ctx = ctx;
    e->rules = calloc(n ? n : 1, sizeof(*e->rules));
    e->special = calloc(n ? n : 1, sizeof(int));
    if (!e->rules || !e->special || table_grow(e))
        goto nomem;
    e->n_rules = n;
    for (size_t i = 0; i < n; i++)
        e->rules[i].fc_link = e->rules[i].alarm_link = -1;
    for (size_t i = 0; i < n; i++) {
        e->rules[i].def = defs[i];
        e->rules[i].fp = gw_rule_fingerprint(&defs[i]);
        if (rule_index_of(e, defs[i].id) >= 0) {
            if (err && errlen)
                snprintf(err, errlen, "rule '%s': duplicate id", defs[i].id);
            gw_rules_free(e);
            return NULL;
        }
        if (build_rule(e, (int)i))
            goto nomem;
    }
    if (link_forecasts(e, err, errlen)) {
        gw_rules_free(e);
        return NULL;
    }
    return e;
nomem:
    if (err && errlen)
        snprintf(err, errlen, "out of memory");
    gw_rules_free(e);
    return NULL;
}

void gw_rules_free(gw_rules_engine *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->tab_cap; i++) {
        if (e->tab[i]) {
            free(e->tab[i]->ser.ring);
            free(e->tab[i]->fc);
            free(e->tab[i]);
        }
    }
    for (size_t i = 0; e->rules && i < e->n_rules; i++) {
        if (e->rules[i].conds)
            for (size_t c = 0; c < e->rules[i].def.n_conds; c++)
                free(e->rules[i].conds[c].ser.ring);
        free(e->rules[i].conds);
    }
    free(e->rules);
    free(e->ovr);
    free(e->ovr_rule);
    free(e->special);
    free(e->tab);
    free(e->heap);
    smap_free(&e->index);
    smap_free(&e->ids);
    free(e);
}

/* ---- persistence ------------------------------------------------------- */

typedef struct wbuf {
    uint8_t *p;
    size_t n, cap;
    int err;
} wbuf;

static void put(wbuf *w, const void *src, size_t n)
{
    if (w->err)
        return;
    if (w->n + n > w->cap) {
        size_t ncap = w->cap ? w->cap * 2 : 4096;
        while (ncap < w->n + n)
            ncap *= 2;
        uint8_t *np = realloc(w->p, ncap);
        if (!np) {
            w->err = GW_ENOMEM;
            return;
        }
        w->p = np;
        w->cap = ncap;
    }
    memcpy(w->p + w->n, src, n);
    w->n += n;
}

static void put_u64(wbuf *w, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    put(w, b, 8);
}

static void put_u32(wbuf *w, uint32_t v)
{
    uint8_t b[4];
    for (int i = 0; i < 4; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    put(w, b, 4);
}

static void put_u8(wbuf *w, uint8_t v)
{
    put(w, &v, 1);
}

static void put_f64(wbuf *w, double d)
{
    uint64_t v;
    memcpy(&v, &d, 8);
    put_u64(w, v);
}

static void put_str(wbuf *w, const char *s)
{
    size_t n = strlen(s);
    put_u8(w, (uint8_t)n);
    put(w, s, n);
}

static void put_series(wbuf *w, const series *s)
{
    put_u32(w, s->ring ? s->nb : 0);
    put_u64(w, (uint64_t)s->width);
    put_f64(w, s->last);
    put_f64(w, s->counter);
    put_u8(w, s->has_last);
    put_u8(w, s->has_counter);
    for (uint32_t i = 0; s->ring && i < s->nb; i++) {
        put_u64(w, (uint64_t)s->ring[i].idx);
        put_f64(w, s->ring[i].sum);
        put_f64(w, s->ring[i].min);
        put_f64(w, s->ring[i].max);
        put_u32(w, s->ring[i].count);
    }
}

/* Record 3: a forecast's points and last prediction (after its record 1). */
static void put_fcast(wbuf *w, const rule_rt *rr, const rstate *st)
{
    const fcast *f = st->fc;
    put_u8(w, 3);
    put_str(w, rr->def.id);
    put_u64(w, rr->fp);
    put_str(w, st->device);
    put_u8(w, f->n);
    for (int i = 0; i < f->n; i++) {
        int k = (f->head + i) % GW_FC_POINTS;
        put_u64(w, (uint64_t)f->t[k]);
        put_f64(w, f->v[k]);
    }
    put_u8(w, f->why);
    put_u64(w, (uint64_t)f->sent_cross);
    for (int l = 0; l < GW_RULE_LEVELS; l++)
        put_u64(w, (uint64_t)f->out.crossings[l]);
    put_f64(w, f->out.rate);
    put_f64(w, f->out.confidence);
    put_f64(w, f->out.rain_mmh);
    put_u32(w, f->out.inputs);
    put_u32(w, f->out.points);
}

int gw_rules_export(const gw_rules_engine *e, uint8_t **out, size_t *len)
{
    wbuf w = {0};
    uint32_t count = 0;
    put_u32(&w, BLOB_MAGIC);
    put_u32(&w, BLOB_VERSION);
    put_u64(&w, e->seq);
    put_u32(&w, 0); /* record count, patched below */
    for (size_t i = 0; i < e->tab_cap; i++) {
        const rstate *st = e->tab[i];
        if (!st)
            continue;
        const rule_rt *rr = &e->rules[st->rule];
        put_u8(&w, 1);
        put_str(&w, rr->def.id);
        put_u64(&w, rr->fp);
        put_str(&w, st->device);
        put_u8(&w, st->level);
        put_u8(&w, st->target);
        put_u8(&w, st->acked);
        put_u8(&w, st->pend);
        put_u8(&w, st->has_seen);
        put_u8(&w, st->has_flat);
        for (int l = 0; l < GW_RULE_LEVELS; l++) {
            put_u64(&w, (uint64_t)st->since[l]);
            put_f64(&w, st->x[l]);
        }
        put_u64(&w, (uint64_t)st->raised_ms);
        put_u64(&w, (uint64_t)st->last_tx_ms);
        put_f64(&w, st->thr);
        put_f64(&w, st->sent);
        put_u64(&w, (uint64_t)st->last_seen);
        put_f64(&w, st->flat_ref);
        put_u64(&w, (uint64_t)st->flat_since);
        put_series(&w, &st->ser);
        count++;
        if (st->fc) {
            put_fcast(&w, rr, st);
            count++;
        }
    }
    for (size_t i = 0; i < e->n_rules; i++) {
        const rule_rt *rr = &e->rules[i];
        for (size_t c = 0; rr->conds && c < rr->def.n_conds; c++) {
            put_u8(&w, 2);
            put_str(&w, rr->def.id);
            put_u64(&w, rr->fp);
            put_u32(&w, (uint32_t)c);
            put_u8(&w, rr->conds[c].latched);
            put_f64(&w, rr->conds[c].val);
            put_series(&w, &rr->conds[c].ser);
            count++;
        }
    }
    if (w.err) {
        free(w.p);
        return w.err;
    }
    for (int i = 0; i < 4; i++)
        w.p[16 + i] = (uint8_t)(count >> (8 * i));
    *out = w.p;
    *len = w.n;
    return GW_OK;
}

typedef struct rbuf {
    const uint8_t *p;
    size_t n, off;
    int err;
} rbuf;

static const uint8_t *take(rbuf *r, size_t n)
{
    if (r->err || r->n - r->off < n) {
        r->err = 1;
        return NULL;
    }
    const uint8_t *p = r->p + r->off;
    r->off += n;
    return p;
}

static uint64_t get_u64(rbuf *r)
{
    const uint8_t *b = take(r, 8);
    uint64_t v = 0;
    for (int i = 0; b && i < 8; i++)
        v |= (uint64_t)b[i] << (8 * i);
    return v;
}

static uint32_t get_u32(rbuf *r)
{
    const uint8_t *b = take(r, 4);
    uint32_t v = 0;
    for (int i = 0; b && i < 4; i++)
        v |= (uint32_t)b[i] << (8 * i);
    return v;
}

static uint8_t get_u8(rbuf *r)
{
    const uint8_t *b = take(r, 1);
    return b ? b[0] : 0;
}

static double get_f64(rbuf *r)
{
    uint64_t v = get_u64(r);
    double d;
    memcpy(&d, &v, 8);
    return d;
}

static void get_str(rbuf *r, char *dst, size_t cap)
{
    uint8_t n = get_u8(r);
    const uint8_t *s = take(r, n);
    if (!s || n >= cap) {
        r->err = 1;
        dst[0] = '\0';
        return;
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
}

/* Reads a series into dst when dst matches its shape, else skips it. */
static void get_series(rbuf *r, series *dst, int keep)
{
    uint32_t nb = get_u32(r);
    int64_t width = (int64_t)get_u64(r);
    double last = get_f64(r), counter = get_f64(r);
    uint8_t has_last = get_u8(r), has_counter = get_u8(r);
    if (nb > GW_RULE_MAX_BUCKETS) {
        r->err = 1;
        return;
    }
    int fits = keep && dst && (dst->ring ? dst->nb : 0) == nb && (!nb || dst->width == width);
    if (fits) {
        dst->last = last;
        dst->counter = counter;
        dst->has_last = has_last ? 1 : 0;
        dst->has_counter = has_counter ? 1 : 0;
    }
    for (uint32_t i = 0; i < nb && !r->err; i++) {
        bucket b;
        b.idx = (int64_t)get_u64(r);
        b.sum = get_f64(r);
        b.min = get_f64(r);
        b.max = get_f64(r);
        b.count = get_u32(r);
        if (fits && !r->err)
            dst->ring[i] = b;
    }
}

int gw_rules_import(gw_rules_engine *e, const uint8_t *buf, size_t len)
{
    rbuf r = {buf, len, 0, 0};
    if (get_u32(&r) != BLOB_MAGIC || r.err)
        return GW_EMALFORMED;
    if (get_u32(&r) != BLOB_VERSION)
        return r.err ? GW_EMALFORMED : GW_EUNSUPPORTED;
    uint64_t seq = get_u64(&r);
    uint32_t count = get_u32(&r);
    if (r.err)
        return GW_EMALFORMED;
    if (seq > e->seq)
        e->seq = seq;
    for (uint32_t k = 0; k < count; k++) {
        char rid[GW_KEY_MAX], dev[GW_ID_MAX];
        uint8_t type = get_u8(&r);
        get_str(&r, rid, sizeof(rid));
        uint64_t fp = get_u64(&r);
        if (r.err)
            return GW_EMALFORMED;
        int ri = rule_index_of(e, rid);
        int keep = ri >= 0 && e->rules[ri].fp == fp;
        if (type == 1) {
            get_str(&r, dev, sizeof(dev));
            rstate tmp;
            memset(&tmp, 0, sizeof(tmp));
            tmp.level = get_u8(&r);
            tmp.target = get_u8(&r);
            tmp.acked = get_u8(&r);
            tmp.pend = get_u8(&r);
            tmp.has_seen = get_u8(&r);
            tmp.has_flat = get_u8(&r);
            for (int l = 0; l < GW_RULE_LEVELS; l++) {
                tmp.since[l] = (int64_t)get_u64(&r);
                tmp.x[l] = get_f64(&r);
            }
            tmp.raised_ms = (int64_t)get_u64(&r);
            tmp.last_tx_ms = (int64_t)get_u64(&r);
            tmp.thr = get_f64(&r);
            tmp.sent = get_f64(&r);
            tmp.last_seen = (int64_t)get_u64(&r);
            tmp.flat_ref = get_f64(&r);
            tmp.flat_since = (int64_t)get_u64(&r);
            if (tmp.level > GW_RULE_LEVELS || tmp.target > GW_RULE_LEVELS || !dev[0])
                r.err = 1;
            rstate *st = NULL;
            if (keep && !r.err) {
                st = state_get(e, (uint32_t)ri, dev, dev_hash(dev));
                if (!st)
                    return GW_ENOMEM;
            }
            get_series(&r, st ? &st->ser : NULL, st != NULL);
            if (r.err)
                return GW_EMALFORMED;
            if (!st)
                continue;
            if (st->level && !st->fc)
                e->active--;
            series keep_ser = st->ser;
            fcast *fc = st->fc;
            int heap = st->heap;
            int64_t sched = st->sched;
            uint64_t h = st->h;
            uint32_t rule = st->rule;
            memcpy(tmp.device, st->device, sizeof(tmp.device));
            *st = tmp;
            st->ser = keep_ser;
            st->fc = fc;
            st->heap = heap;
            st->sched = sched;
            st->h = h;
            st->rule = rule;
            st->pend &= 0x1e;
            if (st->level && !st->fc)
                e->active++;
            /* Re-examine at the first tick: it recomputes the real due time. */
            if (st->heap < 0) {
                if (heap_push(e, st, INT64_MIN / 2))
                    return GW_ENOMEM;
            } else {
                st->sched = INT64_MIN / 2;
                heap_up(e, (size_t)st->heap);
            }
        } else if (type == 2) {
            uint32_t ci = get_u32(&r);
            uint8_t latched = get_u8(&r);
            double val = get_f64(&r);
            cstate *cs = NULL;
            if (keep && ci < e->rules[ri].def.n_conds)
                cs = &e->rules[ri].conds[ci];
            get_series(&r, cs ? &cs->ser : NULL, cs != NULL);
            if (r.err)
                return GW_EMALFORMED;
            if (cs) {
                cs->latched = latched ? 1 : 0;
                cs->val = val;
            }
        } else if (type == 3) {
            get_str(&r, dev, sizeof(dev));
            fcast f;
            memset(&f, 0, sizeof(f));
            f.n = get_u8(&r);
            if (f.n > GW_FC_POINTS || r.err)
                return GW_EMALFORMED;
            for (int i = 0; i < f.n; i++) {
                f.t[i] = (int64_t)get_u64(&r);
                f.v[i] = get_f64(&r);
            }
            f.why = get_u8(&r);
            f.sent_cross = (int64_t)get_u64(&r);
            for (int l = 0; l < GW_RULE_LEVELS; l++)
                f.out.crossings[l] = (int64_t)get_u64(&r);
            f.out.rate = get_f64(&r);
            f.out.confidence = get_f64(&r);
            f.out.rain_mmh = get_f64(&r);
            f.out.inputs = get_u32(&r);
            f.out.points = get_u32(&r);
            if (r.err || f.why >= ARRAY_LEN(fc_why_name))
                return GW_EMALFORMED;
            rstate *st = keep && e->rules[ri].def.kind == GW_RK_FORECAST && dev[0]
                             ? state_find(e, (uint32_t)ri, dev, dev_hash(dev))
                             : NULL;
            if (st)
                *st->fc = f;
        } else {
            return GW_EMALFORMED;
        }
    }
    return r.off == r.n ? GW_OK : GW_EMALFORMED;
}

gw_rules_engine *gw_rules_reload(gw_rules_engine *old, const gw_rule *defs, size_t n, int64_t now,
                                 char *err, size_t errlen)
{
    gw_rules_engine *ne = gw_rules_new(defs, n, old->cb, old->ctx, err, errlen);
    if (!ne)
        return NULL;
    uint8_t *blob = NULL;
    size_t len = 0;
    int rc = gw_rules_export(old, &blob, &len);
    if (!rc)
        rc = gw_rules_import(ne, blob, len);
    free(blob);
    if (rc) {
        if (err && errlen)
            snprintf(err, errlen, "carrying state over failed (%d)", rc);
        gw_rules_free(ne);
        return NULL;
    }
    /* Alarms that did not survive are closed, so nobody waits for a clear. */
    for (size_t i = 0; i < old->tab_cap; i++) {
        rstate *st = old->tab[i];
        if (!st || !st->level)
            continue;
        const rule_rt *rr = &old->rules[st->rule];
        int ri = rule_index_of(ne, rr->def.id);
        const rstate *ns =
            ri >= 0 ? state_find(ne, (uint32_t)ri, st->device, dev_hash(st->device)) : NULL;
        if (ns && ns->level && ns->raised_ms == st->raised_ms)
            continue;
        int prev = st->level;
        double value, thr;
        report_values(&rr->def, st, prev, 1, &value, &thr);
        st->level = 0;
        ne->detail = "rule changed";
        emit(ne, rr, st, GW_ALARM_CLEARED, prev, value, thr, now);
        ne->detail = NULL;
    }
    gw_rules_free(old);
    return ne;
}
