/* FORECAST rules driven by synthetic depth series: the fit on known series,
 * crossing times within stated tolerances, silence on flat, falling and spiky
 * series, withdrawal on reversal, the hand-over to the linked alarm, the rain
 * input, and a restart (export/import) that changes nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "base/json.h"
#include "rules/rules.h"

#include <cjson/cJSON.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T0 1700000100000LL
#define SEC 1000LL
#define MIN (60 * SEC)

typedef struct rec {
    gw_alarm a;
    int is_fc;
    gw_forecast fc;
    char linked[96];
} rec;

typedef struct log_t {
    rec r[1024];
    size_t n;
} log_t;

static void on_tx(void *ctx, const gw_rules_transition *t)
{
    log_t *l = ctx;
    assert_true(l->n < 1024);
    rec *r = &l->r[l->n++];
    memset(r, 0, sizeof(*r));
    r->a = t->alarm;
    if (t->forecast) {
        r->is_fc = 1;
        r->fc = *t->forecast;
        if (t->forecast->linked)
            snprintf(r->linked, sizeof(r->linked), "%s", t->forecast->linked);
        r->fc.linked = NULL;
    }
}

static int feed(gw_rules_engine *e, const char *dev, const char *metric, double v, int64_t now)
{
    gw_rules_device d = {dev, "waterlog", "underpass-3", NULL, 0};
    gw_reading r;
    memset(&r, 0, sizeof(r));
    snprintf(r.metric, sizeof(r.metric), "%s", metric);
    r.value = v;
    r.quality = GW_Q_GOOD;
    r.obs_ms = now;
    r.recv_ms = now;
    int rc = gw_rules_reading(e, &d, &r, now);
    if (!rc)
        rc = gw_rules_tick(e, now);
    return rc;
}

static gw_rule depth_rule(void)
{
    gw_rule r;
    memset(&r, 0, sizeof(r));
    snprintf(r.id, sizeof(r.id), "depth");
    r.kind = GW_RK_THRESHOLD;
    snprintf(r.metric, sizeof(r.metric), "water_depth");
    r.levels[0] = (gw_rule_level){1, 3, 2, 0};
    r.levels[1] = (gw_rule_level){1, 10, 8, 0};
    r.levels[2] = (gw_rule_level){1, 25, 22, 0};
    return r;
}

/* Levels from the "depth" rule, 15 min window, 60 min horizon. */
static gw_rule fc_rule(void)
{
    gw_rule r;
    memset(&r, 0, sizeof(r));
    snprintf(r.id, sizeof(r.id), "depth_fc");
    r.kind = GW_RK_FORECAST;
    snprintf(r.metric, sizeof(r.metric), "water_depth");
    snprintf(r.alarm_rule, sizeof(r.alarm_rule), "depth");
    r.window_ms = 15 * MIN;
    r.horizon_ms = 60 * MIN;
    r.move_ms = 3 * MIN;
    r.min_points = 6;
    r.min_rate = 0.05;
    r.min_confidence = 0.99;
    return r;
}

/* The same forecast with its own levels and no linked alarm rule. */
static gw_rule fc_alone(void)
{
    gw_rule r = fc_rule();
    gw_rule d = depth_rule();
    r.alarm_rule[0] = '\0';
    memcpy(r.levels, d.levels, sizeof(r.levels));
    return r;
}

static gw_rules_engine *engine(const gw_rule *defs, size_t n, log_t *l)
{
    char err[256];
    memset(l, 0, sizeof(*l));
    gw_rules_engine *e = gw_rules_new(defs, n, on_tx, l, err, sizeof(err));
    if (!e)
        fail_msg("gw_rules_new: %s", err);
    return e;
}

/* Deterministic noise in [-a, a]. */
static double noise(unsigned *s, double a)
{
    *s = *s * 1103515245u + 12345u;
    return ((double)((*s >> 8) & 0xffff) / 65535.0 * 2 - 1) * a;
}

static void dump(const log_t *l)
{
    if (!getenv("FC_DUMP"))
        return;
    for (size_t i = 0; i < l->n; i++)
        fprintf(stderr, "  %s %s %s L%d at %+.1f cross %+.1f rate %.3f conf %.4f n %u %s\n",
                l->r[i].a.device, l->r[i].a.rule, gw_alarm_state_name(l->r[i].a.state),
                l->r[i].a.level, (double)(l->r[i].a.at_ms - T0) / MIN,
                (double)(l->r[i].fc.crossing_ms - T0) / MIN, l->r[i].fc.rate, l->r[i].fc.confidence,
                l->r[i].fc.points, l->r[i].a.detail);
}

static size_t count_fc(const log_t *l, int state)
{
    size_t n = 0;
    for (size_t i = 0; i < l->n; i++)
        n += l->r[i].is_fc && l->r[i].a.state == state;
    return n;
}

/* The last forecast transition at or before `until` for `level` (NULL: none). */
static const rec *last_fc(const log_t *l, int level, int64_t until)
{
    const rec *best = NULL;
    for (size_t i = 0; i < l->n; i++)
        if (l->r[i].is_fc && l->r[i].a.level == level && l->r[i].a.at_ms <= until &&
            l->r[i].a.state != GW_ALARM_CLEARED)
            best = &l->r[i];
    return best;
}

/* The first forecast transition for `level` (raised or updated to it). */
static const rec *first_fc(const log_t *l, int level)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->r[i].is_fc && l->r[i].a.level == level && l->r[i].a.state != GW_ALARM_CLEARED)
            return &l->r[i];
    return NULL;
}

static void expect_near(int64_t got, int64_t want, int64_t tol, const char *what)
{
    if (llabs(got - want) > tol)
        fail_msg("%s: predicted T0%+.1f min, actual T0%+.1f min, tolerance %.1f min", what,
                 (double)(got - T0) / MIN, (double)(want - T0) / MIN, (double)tol / MIN);
}

/* 0.5 cm/min from 0: orange (25 cm) at exactly T0+50 min. The first fit
 * (6 readings, T0+5 min) already sees orange within the hour, predicts it to
 * the second, and the linked alarm takes over at the crossing. */
static void test_linear(void **state)
{
    (void)state;
    log_t l;
    gw_rule defs[2] = {depth_rule(), fc_rule()};
    gw_rules_engine *e = engine(defs, 2, &l);
    for (int m = 0; m <= 55; m++)
        assert_int_equal(feed(e, "wl-1", "water_depth", 0.5 * m, T0 + m * MIN), GW_OK);
    const rec *r = first_fc(&l, 3);
    assert_non_null(r);
    assert_int_equal(r->a.state, GW_ALARM_RAISED);
    assert_int_equal(r->a.at_ms, T0 + 5 * MIN);
    assert_string_equal(r->a.rule, "depth_fc");
    assert_int_equal(r->a.threshold, 25);
    expect_near(r->fc.crossing_ms, T0 + 50 * MIN, SEC, "linear");
    expect_near(r->fc.crossings[0], T0 + 6 * MIN, SEC, "linear blue");
    expect_near(r->fc.crossings[1], T0 + 20 * MIN, SEC, "linear yellow");
    assert_true(fabs(r->fc.rate - 0.5) < 1e-9 && r->fc.confidence > 0.99);
    assert_int_equal(r->fc.inputs, GW_FC_IN_LEVEL);
    assert_int_equal(r->fc.points, 6);
    /* One forecast, no updates (the prediction never moved), withdrawn when
     * the orange alarm was raised, linked to it. */
    assert_int_equal(count_fc(&l, GW_ALARM_RAISED), 1);
    assert_int_equal(count_fc(&l, GW_ALARM_UPDATED), 0);
    assert_int_equal(count_fc(&l, GW_ALARM_CLEARED), 1);
    const rec *w = NULL;
    for (size_t i = 0; i < l.n; i++)
        if (l.r[i].is_fc && l.r[i].a.state == GW_ALARM_CLEARED)
            w = &l.r[i];
    assert_int_equal(w->a.at_ms, T0 + 50 * MIN);
    assert_string_equal(w->a.detail, "crossed");
    assert_string_equal(w->linked, "depth:wl-1:1700000460000"); /* blue raised at T0+6 min */
    assert_string_equal(w->a.id, r->a.id);
    assert_int_equal(gw_rules_active_count(e), 1); /* the alarm; forecasts are not alarms */
    gw_rules_free(e);
}

/* v = 0.02 t^2 crosses 25 cm at t = 35.36 min. A straight line over the last
 * 15 min lags an accelerating rise, so the prediction is late and converges
 * (a documented limit): stated tolerance, late by no more than the time still
 * ahead at 10 min before the crossing, and 3 min at 3 min before; the first
 * orange forecast still comes >= 10 min ahead. */
static void test_accelerating(void **state)
{
    (void)state;
    log_t l;
    gw_rule r = fc_alone();
    gw_rules_engine *e = engine(&r, 1, &l);
    int64_t cross = T0 + (int64_t)(sqrt(25 / 0.02) * MIN);
    for (int m = 0; m <= 40; m++)
        assert_int_equal(feed(e, "wl-1", "water_depth", 0.02 * m * m, T0 + m * MIN), GW_OK);
    dump(&l);
    const rec *first = first_fc(&l, 3);
    assert_non_null(first);
    assert_true(cross - first->a.at_ms >= 10 * MIN);
    const rec *at10 = last_fc(&l, 3, cross - 10 * MIN), *at3 = last_fc(&l, 3, cross - 3 * MIN);
    assert_non_null(at10);
    assert_non_null(at3);
    expect_near(at10->fc.crossing_ms, cross, 10 * MIN, "accelerating, 10 min ahead");
    expect_near(at3->fc.crossing_ms, cross, 3 * MIN, "accelerating, 3 min ahead");
    assert_true(at10->fc.crossing_ms >= cross - 30 * SEC); /* late, never much early */
    gw_rules_free(e);
}

/* 0.5 cm/min with +-1.5 cm of noise at every reading (3 minutes of rise):
 * within 1 min + 15 % of the time still ahead. */
static void test_noisy(void **state)
{
    (void)state;
    log_t l;
    gw_rule r = fc_alone();
    gw_rules_engine *e = engine(&r, 1, &l);
    unsigned seed = 7;
    for (int m = 0; m <= 45; m++)
        assert_int_equal(feed(e, "wl-1", "water_depth", 0.5 * m + noise(&seed, 1.5), T0 + m * MIN),
                         GW_OK);
    dump(&l);
    const rec *first = first_fc(&l, 3);
    assert_non_null(first);
    assert_true(first->a.at_ms <= T0 + 15 * MIN);
    for (int ahead = 30; ahead >= 5; ahead -= 5) {
        const rec *p = last_fc(&l, 3, T0 + (50 - ahead) * MIN);
        assert_non_null(p);
        expect_near(p->fc.crossing_ms, T0 + 50 * MIN, MIN + ahead * MIN * 15 / 100, "noisy");
    }
    assert_int_equal(count_fc(&l, GW_ALARM_RAISED), 1);
    assert_int_equal(count_fc(&l, GW_ALARM_CLEARED), 0);
    gw_rules_free(e);
}

/* Every 4th reading a +40 cm spike (a reflection, a leaf): Theil-Sen keeps
 * the true line, within 1 min, and the spikes cause no extra transition. */
static void test_outliers(void **state)
{
    (void)state;
    log_t l;
    gw_rule r = fc_alone();
    gw_rules_engine *e = engine(&r, 1, &l);
    for (int m = 0; m <= 45; m++)
        assert_int_equal(
            feed(e, "wl-1", "water_depth", 0.5 * m + (m % 4 == 3 ? 40 : 0), T0 + m * MIN), GW_OK);
    const rec *first = first_fc(&l, 3);
    assert_non_null(first);
    for (size_t i = 0; i < l.n; i++)
        if (l.r[i].a.state != GW_ALARM_CLEARED)
            expect_near(l.r[i].fc.crossing_ms, T0 + 50 * MIN, MIN, "outliers");
    assert_int_equal(count_fc(&l, GW_ALARM_CLEARED), 0);
    gw_rules_free(e);
}

/* A 7-minute gap in the reports and irregular spacing do not bias the fit. */
static void test_gaps(void **state)
{
    (void)state;
    log_t l;
    gw_rule r = fc_alone();
    gw_rules_engine *e = engine(&r, 1, &l);
    for (int s = 0; s <= 45 * 60; s += 37) {
        if (s > 20 * 60 && s < 27 * 60)
            continue;
        assert_int_equal(feed(e, "wl-1", "water_depth", 0.5 * s / 60.0, T0 + s * SEC), GW_OK);
    }
    for (size_t i = 0; i < l.n; i++)
        expect_near(l.r[i].fc.crossing_ms, T0 + 50 * MIN, 30 * SEC, "gaps");
    assert_non_null(first_fc(&l, 3));
    gw_rules_free(e);
}

/* Flat with noise, flat with spikes, falling: no forecast at all. With the
 * debounce the examples recommend for noisy gauges (raise_for 3 min): over
 * three hours a 15-reading window of pure noise does, by chance, pass the
 * 99 % trend test for a reading or two. */
static void test_none_on_flat_falling_spiky(void **state)
{
    (void)state;
    log_t l;
    gw_rule r = fc_alone();
    r.raise_for_ms = 3 * MIN;
    gw_rules_engine *e = engine(&r, 1, &l);
    unsigned seed = 3;
    for (int m = 0; m <= 180; m++) {
        int64_t t = T0 + m * MIN;
        assert_int_equal(feed(e, "flat", "water_depth", 5 + noise(&seed, 1), t), GW_OK);
        assert_int_equal(feed(e, "spiky", "water_depth", 2 + (m % 5 == 0 ? 30 : 0), t), GW_OK);
        assert_int_equal(feed(e, "falling", "water_depth", 24 - 0.1 * m, t), GW_OK);
    }
    dump(&l);
    if (l.n)
        fail_msg("unexpected forecast on %s at T0%+lld min", l.r[0].a.device,
                 (long long)((l.r[0].a.at_ms - T0) / MIN));
    gw_rules_free(e);
}

/* Rising, then the rain stops and the water drains: withdrawn, and only
 * once (no flapping while the fit turns). */
static void test_withdrawn_on_reversal(void **state)
{
    (void)state;
    log_t l;
    gw_rule r = fc_alone();
    gw_rules_engine *e = engine(&r, 1, &l);
    double v = 0;
    for (int m = 0; m <= 60; m++) {
        v += m < 15 ? 0.5 : -0.4;
        assert_int_equal(feed(e, "wl-1", "water_depth", v, T0 + m * MIN), GW_OK);
    }
    dump(&l);
    assert_int_equal(count_fc(&l, GW_ALARM_RAISED), 1);
    assert_int_equal(count_fc(&l, GW_ALARM_CLEARED), 1);
    const rec *w = &l.r[l.n - 1];
    assert_int_equal(w->a.state, GW_ALARM_CLEARED);
    assert_string_equal(w->a.detail, "trend reversed");
    assert_true(w->a.at_ms > T0 + 15 * MIN && w->a.at_ms <= T0 + 25 * MIN);
    assert_string_equal(w->linked, "");
    gw_rules_free(e);
}

/* The rise slows: the crossing moves later by more than move_ms, so the
 * forecast is UPDATED (same id) rather than raised again. */
static void test_update_when_prediction_moves(void **state)
{
    (void)state;
    log_t l;
    gw_rule r = fc_alone();
    r.levels[0].enabled = r.levels[1].enabled = 0; /* orange only */
    gw_rules_engine *e = engine(&r, 1, &l);
    double v = 0;
    for (int m = 0; m <= 40; m++) {
        v += m < 12 ? 0.8 : 0.4;
        assert_int_equal(feed(e, "wl-1", "water_depth", v, T0 + m * MIN), GW_OK);
    }
    assert_int_equal(count_fc(&l, GW_ALARM_RAISED), 1);
    assert_true(count_fc(&l, GW_ALARM_UPDATED) >= 1);
    for (size_t i = 1; i < l.n; i++) {
        assert_string_equal(l.r[i].a.id, l.r[0].a.id);
        if (l.r[i].a.state == GW_ALARM_UPDATED)
            assert_true(llabs(l.r[i].fc.crossing_ms - l.r[i - 1].fc.crossing_ms) >= 3 * MIN);
    }
    gw_rules_free(e);
}

/* Heavy rain on the linked gauge starts a forecast while the water is still
 * flat; light rain does not. */
static void test_rain_starts_forecast(void **state)
{
    (void)state;
    log_t l;
    gw_rule r = fc_alone();
    r.n_conds = 1;
    snprintf(r.conds[0].device, sizeof(r.conds[0].device), "rg-07");
    snprintf(r.conds[0].metric, sizeof(r.conds[0].metric), "rain");
    r.conds[0].fn = GW_WF_SUM;
    r.conds[0].window_ms = 10 * MIN;
    r.conds[0].buckets = 10;
    r.conds[0].threshold = 30; /* mm/h */
    r.rain_gain = 0.5;         /* cm per mm */
    gw_rules_engine *e = engine(&r, 1, &l);
    int64_t t = T0;
    for (int m = 0; m < 20; m++, t += MIN) { /* light rain: 0.2 mm/min = 12 mm/h */
        assert_int_equal(feed(e, "rg-07", "rain", 0.2, t), GW_OK);
        assert_int_equal(feed(e, "wl-1", "water_depth", 1, t), GW_OK);
    }
    assert_int_equal(l.n, 0);
    for (int m = 0; m < 12; m++, t += MIN) { /* 1.5 mm/min = 90 mm/h */
        assert_int_equal(feed(e, "rg-07", "rain", 1.5, t), GW_OK);
        assert_int_equal(feed(e, "wl-1", "water_depth", 1, t), GW_OK);
    }
    const rec *first = NULL;
    for (size_t i = 0; i < l.n && !first; i++)
        if (l.r[i].a.state == GW_ALARM_RAISED)
            first = &l.r[i];
    assert_non_null(first);
    assert_true(first->fc.inputs & GW_FC_IN_RAIN);
    assert_true(first->fc.rain_mmh >= 30);
    assert_true(first->fc.rate > 0);
    gw_rules_free(e);
}

/* The same series through one engine, and through an engine exported and
 * imported into a new one half-way (a restart): identical transitions. */
static void test_restart_keeps_state(void **state)
{
    (void)state;
    static log_t a, b;
    gw_rule defs[2] = {depth_rule(), fc_rule()};
    gw_rules_engine *ea = engine(defs, 2, &a), *eb = engine(defs, 2, &b);
    unsigned s1 = 11, s2 = 11;
    for (int m = 0; m <= 60; m++) {
        if (m == 20) {
            uint8_t *blob;
            size_t len;
            assert_int_equal(gw_rules_export(eb, &blob, &len), GW_OK);
            gw_rules_free(eb);
            char err[128];
            eb = gw_rules_new(defs, 2, on_tx, &b, err, sizeof(err));
            assert_non_null(eb);
            assert_int_equal(gw_rules_import(eb, blob, len), GW_OK);
            free(blob);
        }
        int64_t t = T0 + m * MIN;
        double v = m < 40 ? 0.6 * m : 24 - 0.5 * (m - 40);
        assert_int_equal(feed(ea, "wl-1", "water_depth", v + noise(&s1, 0.5), t), GW_OK);
        assert_int_equal(feed(eb, "wl-1", "water_depth", v + noise(&s2, 0.5), t), GW_OK);
    }
    assert_true(a.n >= 2);
    assert_int_equal(a.n, b.n);
    for (size_t i = 0; i < a.n; i++) {
        assert_string_equal(a.r[i].a.id, b.r[i].a.id);
        assert_int_equal(a.r[i].a.state, b.r[i].a.state);
        assert_int_equal(a.r[i].a.at_ms, b.r[i].a.at_ms);
        assert_int_equal(a.r[i].fc.crossing_ms, b.r[i].fc.crossing_ms);
    }
    gw_rules_free(ea);
    gw_rules_free(eb);
}

/* Debounce: raise_for holds a forecast back until it has been called for
 * that long; a forecast with no new readings for a window is withdrawn. */
static void test_debounce_and_silence(void **state)
{
    (void)state;
    log_t l;
    gw_rule r = fc_alone();
    r.raise_for_ms = 4 * MIN;
    gw_rules_engine *e = engine(&r, 1, &l);
    for (int m = 0; m <= 20; m++)
        assert_int_equal(feed(e, "wl-1", "water_depth", 0.5 * m, T0 + m * MIN), GW_OK);
    assert_int_equal(l.r[0].a.state, GW_ALARM_RAISED);
    assert_int_equal(l.r[0].a.at_ms, T0 + 9 * MIN);
    size_t n = l.n;
    assert_int_equal(gw_rules_tick(e, T0 + 36 * MIN), GW_OK);
    assert_int_equal(l.n, n + 1);
    assert_int_equal(l.r[n].a.state, GW_ALARM_CLEARED);
    assert_string_equal(l.r[n].a.detail, "no recent readings");
    gw_rules_free(e);
}

static void test_definition_checks(void **state)
{
    (void)state;
    char err[256];
    gw_rule d[2] = {depth_rule(), fc_rule()};
    snprintf(d[1].alarm_rule, sizeof(d[1].alarm_rule), "nope");
    assert_null(gw_rules_new(d, 2, on_tx, NULL, err, sizeof(err)));
    assert_string_equal(err, "rule 'depth_fc': alarm_rule not found");
    d[1] = fc_rule();
    d[1].min_points = 2;
    assert_int_equal(gw_rule_check(&d[1], err, sizeof(err)), GW_EINVAL);
    d[1] = fc_rule();
    d[1].alarm_rule[0] = '\0';
    assert_int_equal(gw_rule_check(&d[1], err, sizeof(err)), GW_EINVAL);
    assert_string_equal(err, "rule 'depth_fc': forecast needs levels or alarm_rule");
    gw_rule three[3] = {depth_rule(), fc_rule(), fc_rule()};
    snprintf(three[2].id, sizeof(three[2].id), "depth_fc2");
    assert_null(gw_rules_new(three, 3, on_tx, NULL, err, sizeof(err)));
    assert_string_equal(err, "rule 'depth_fc2': alarm_rule already has a forecast");
    /* Forecast fields do not change the fingerprint of other kinds (state
     * persisted by older gateways stays valid). */
    gw_rule t = depth_rule(), u = depth_rule();
    u.horizon_ms = 5;
    assert_true(gw_rule_fingerprint(&t) == gw_rule_fingerprint(&u));
}

/* The uplink item of the linear series' first forecast and its withdrawal:
 * the fields docs/uplink.md lists, with values that add up. */
static void test_uplink_item(void **state)
{
    (void)state;
    log_t l;
    gw_rule defs[2] = {depth_rule(), fc_rule()};
    gw_rules_engine *e = engine(defs, 2, &l);
    for (int m = 0; m <= 50; m++)
        assert_int_equal(feed(e, "wl-1", "water_depth", 0.5 * m, T0 + m * MIN), GW_OK);
    gw_rules_free(e);
    const rec *r = first_fc(&l, 3), *w = &l.r[l.n - 1];
    char buf[2048];
    gw_forecast f = r->fc;
    int n = gw_json_forecast(buf, sizeof(buf), "gw-t", &r->a, &f);
    assert_true(n > 0);
    cJSON *j = cJSON_ParseWithLength(buf, (size_t)n);
    assert_non_null(j);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "forecast")), r->a.id);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "state")), "raised");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "level_name")), "orange");
    assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "lead_min")) == 45);
    assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "rate")) == 0.5);
    assert_non_null(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "crossings"), "yellow"));
    assert_string_equal(
        cJSON_GetStringValue(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "inputs"), 0)), "level");
    assert_null(cJSON_GetObjectItem(j, "alarm"));
    cJSON_Delete(j);
    assert_int_equal(w->a.state, GW_ALARM_CLEARED);
    f = w->fc;
    f.linked = w->linked;
    n = gw_json_forecast(buf, sizeof(buf), "gw-t", &w->a, &f);
    assert_true(n > 0);
    j = cJSON_ParseWithLength(buf, (size_t)n);
    assert_non_null(j);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "state")), "withdrawn");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "alarm")), w->linked);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "detail")), "crossed");
    assert_null(cJSON_GetObjectItem(j, "crossings"));
    cJSON_Delete(j);
    assert_int_equal(gw_json_forecast(buf, 40, "gw-t", &w->a, &f), GW_EFULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_accelerating),
        cmocka_unit_test(test_noisy),
        cmocka_unit_test(test_outliers),
        cmocka_unit_test(test_gaps),
        cmocka_unit_test(test_none_on_flat_falling_spiky),
        cmocka_unit_test(test_withdrawn_on_reversal),
        cmocka_unit_test(test_update_when_prediction_moves),
        cmocka_unit_test(test_rain_starts_forecast),
        cmocka_unit_test(test_restart_keeps_state),
        cmocka_unit_test(test_debounce_and_silence),
        cmocka_unit_test(test_definition_checks),
        cmocka_unit_test(test_uplink_item),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
