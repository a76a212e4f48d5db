/* The rules engine driven by synthetic time series: every test asserts the
 * exact transitions (state, level, time) the series must produce. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rules/rules.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T0 1700000100000LL /* a multiple of 15 minutes (and of every bucket used) */
#define SEC 1000LL
#define MIN (60 * SEC)
#define HOUR (60 * MIN)

typedef struct rec {
    gw_alarm a;
    int prev;
    int health;
    int64_t fast;
    size_t n_poll;
    char poll0[GW_ID_MAX];
    size_t n_actions;
} rec;

typedef struct log_t {
    rec r[512];
    size_t n;
} log_t;

static void on_tx(void *ctx, const gw_rules_transition *t)
{
    log_t *l = ctx;
    assert_true(l->n < 512);
    rec *r = &l->r[l->n++];
    r->a = t->alarm;
    r->prev = t->prev_level;
    r->health = t->health_reason;
    r->fast = t->fast_interval_ms;
    r->n_poll = t->n_poll_devices;
    r->poll0[0] = '\0';
    if (t->n_poll_devices)
        snprintf(r->poll0, sizeof(r->poll0), "%s", t->poll_devices[0]);
    r->n_actions = t->rule->n_actions;
}

static gw_rules_device dev_of(const char *id, const char *type, const char *site)
{
    gw_rules_device d = {id, type, site, NULL, 0};
    return d;
}

static int feed(gw_rules_engine *e, const gw_rules_device *d, const char *metric, double v,
                int quality, int reason, int64_t now)
{
    gw_reading r;
    memset(&r, 0, sizeof(r));
    snprintf(r.device, sizeof(r.device), "%s", d->id);
    snprintf(r.metric, sizeof(r.metric), "%s", metric);
    r.value = v;
    r.quality = (uint8_t)quality;
    r.reason = (uint8_t)reason;
    r.obs_ms = now;
    r.recv_ms = now;
    return gw_rules_reading(e, d, &r, now);
}

static int good(gw_rules_engine *e, const gw_rules_device *d, const char *metric, double v,
                int64_t now)
{
    return feed(e, d, metric, v, GW_Q_GOOD, GW_R_NONE, now);
}

/* Runs tick at every deadline up to and including `until`, as the gateway's timer would. */
static void run_until(gw_rules_engine *e, int64_t until)
{
    for (int guard = 0; guard < 100000; guard++) {
        int64_t d = gw_rules_next_deadline(e);
        if (d > until)
            break;
        assert_int_equal(gw_rules_tick(e, d), GW_OK);
    }
    assert_int_equal(gw_rules_tick(e, until), GW_OK);
}

static void expect_tx(const log_t *l, size_t i, int state, int level, int64_t at)
{
    assert_true(i < l->n);
    if (l->r[i].a.state != state || l->r[i].a.level != level || l->r[i].a.at_ms != at)
        fail_msg("transition %zu: got %s level %d at T0%+lld ms, want %s level %d at T0%+lld ms", i,
                 gw_alarm_state_name(l->r[i].a.state), l->r[i].a.level,
                 (long long)(l->r[i].a.at_ms - T0), gw_alarm_state_name(state), level,
                 (long long)(at - T0));
}

static gw_rule depth_rule(void)
{
    gw_rule r;
    memset(&r, 0, sizeof(r));
    snprintf(r.id, sizeof(r.id), "depth");
    r.kind = GW_RK_THRESHOLD;
    snprintf(r.metric, sizeof(r.metric), "water_depth");
    r.dir = GW_DIR_ABOVE;
    r.levels[0] = (gw_rule_level){1, 3, 2, 0};
    r.levels[1] = (gw_rule_level){1, 10, 8, 0};
    r.levels[2] = (gw_rule_level){1, 25, 22, 0};
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

static void test_hysteresis_holds_through_noise(void **state)
{
    (void)state;
    log_t l;
    gw_rule r = depth_rule();
    gw_rules_engine *e = engine(&r, 1, &l);
    gw_rules_device d = dev_of("wl-1", "waterlog", "underpass-3");
    static const double noise[] = {2.9, 3.1, 2.5, 3.0, 2.1, 2.8, 2.05, 3.4, 2.0};
    int64_t t = T0;
    for (size_t i = 0; i < sizeof(noise) / sizeof(noise[0]); i++, t += MIN)
        assert_int_equal(good(e, &d, "water_depth", noise[i], t), GW_OK);
    assert_int_equal(l.n, 1);
    expect_tx(&l, 0, GW_ALARM_RAISED, 1, T0 + 1 * MIN);
    assert_string_equal(l.r[0].a.id, "depth:wl-1:1700000160000");
    assert_true(l.r[0].a.value == 3.1 && l.r[0].a.threshold == 3);
    /* Escalation and de-escalation are updates of the same alarm. */
    good(e, &d, "water_depth", 10.5, t);
    good(e, &d, "water_depth", 8.5, t + MIN);
    good(e, &d, "water_depth", 9.9, t + 2 * MIN);
    good(e, &d, "water_depth", 7.9, t + 3 * MIN);
    good(e, &d, "water_depth", 1.9, t + 4 * MIN);
    assert_int_equal(l.n, 4);
    expect_tx(&l, 1, GW_ALARM_UPDATED, 2, t);
    expect_tx(&l, 2, GW_ALARM_UPDATED, 1, t + 3 * MIN);
    expect_tx(&l, 3, GW_ALARM_CLEARED, 0, t + 4 * MIN);
    for (size_t i = 1; i < 4; i++)
        assert_string_equal(l.r[i].a.id, l.r[0].a.id);
    assert_int_equal(l.r[3].prev, 1);
    assert_true(l.r[3].a.threshold == 2); /* the clear threshold that was crossed */
    assert_int_equal(gw_rules_active_count(e), 0);
    gw_rules_free(e);
}

static void test_below_direction(void **state)
{
    (void)state;
    log_t l;
    gw_rule r;
    memset(&r, 0, sizeof(r));
    snprintf(r.id, sizeof(r.id), "lowbatt");
    r.kind = GW_RK_THRESHOLD;
    snprintf(r.metric, sizeof(r.metric), "battery_v");
    r.dir = GW_DIR_BELOW;
    r.levels[0] = (gw_rule_level){1, 3.4, 3.5, 0};
    r.levels[1] = (gw_rule_level){1, 3.2, 3.3, 0};
    gw_rules_engine *e = engine(&r, 1, &l);
    gw_rules_device d = dev_of("smk-1", "smoke", NULL);
    good(e, &d, "battery_v", 3.6, T0);
    good(e, &d, "battery_v", 3.4, T0 + 1);
    good(e, &d, "battery_v", 3.45, T0 + 2);
    good(e, &d, "battery_v", 3.1, T0 + 3);
    good(e, &d, "battery_v", 3.51, T0 + 4);
    assert_int_equal(l.n, 3);
    expect_tx(&l, 0, GW_ALARM_RAISED, 1, T0 + 1);
    expect_tx(&l, 1, GW_ALARM_UPDATED, 2, T0 + 3);
    expect_tx(&l, 2, GW_ALARM_CLEARED, 0, T0 + 4);
    gw_rules_free(e);
}

static void test_debounce_suppresses_spikes(void **state)
{
    (void)state;
    log_t l;
    gw_rule r = depth_rule();
    r.raise_for_ms = 60 * SEC;
    r.clear_for_ms = 120 * SEC;
    gw_rules_engine *e = engine(&r, 1, &l);
    gw_rules_device d = dev_of("wl-1", "waterlog", NULL);
    /* A 30 s spike never raises. */
    good(e, &d, "water_depth", 5, T0);
    assert_int_equal(gw_rules_next_deadline(e), T0 + 60 * SEC);
    good(e, &d, "water_depth", 1, T0 + 30 * SEC);
    run_until(e, T0 + 10 * MIN);
    assert_int_equal(l.n, 0);
    /* Sustained: raised by the tick exactly when the debounce expires. */
    int64_t t1 = T0 + 10 * MIN;
    good(e, &d, "water_depth", 5, t1);
    run_until(e, t1 + 59 * SEC);
    assert_int_equal(l.n, 0);
    run_until(e, t1 + 60 * SEC);
    assert_int_equal(l.n, 1);
    expect_tx(&l, 0, GW_ALARM_RAISED, 1, t1 + 60 * SEC);
    /* A short dip does not clear; a long one does, after clear_for. */
    int64_t t2 = t1 + 5 * MIN;
    good(e, &d, "water_depth", 1, t2);
    good(e, &d, "water_depth", 5, t2 + 100 * SEC);
    run_until(e, t2 + 10 * MIN);
    assert_int_equal(l.n, 1);
    int64_t t3 = t2 + 10 * MIN;
    good(e, &d, "water_depth", 1, t3);
    run_until(e, t3 + 119 * SEC);
    assert_int_equal(l.n, 1);
    run_until(e, t3 + 120 * SEC);
    assert_int_equal(l.n, 2);
    expect_tx(&l, 1, GW_ALARM_CLEARED, 0, t3 + 120 * SEC);
    assert_int_equal(gw_rules_next_deadline(e), INT64_MAX);
    gw_rules_free(e);
}

static gw_rule rain_rule(int input)
{
    gw_rule r;
    memset(&r, 0, sizeof(r));
    snprintf(r.id, sizeof(r.id), "rainstorm");
    r.kind = GW_RK_WINDOW;
    snprintf(r.metric, sizeof(r.metric), "rain");
    r.fn = GW_WF_SUM;
    r.input = input;
    r.window_ms = 12 * HOUR;
    r.buckets = 48;
    r.levels[0] = (gw_rule_level){1, 50, 40, 12 * HOUR};
    r.levels[1] = (gw_rule_level){1, 50, 40, 6 * HOUR};
    r.levels[2] = (gw_rule_level){1, 50, 40, 3 * HOUR};
    r.levels[3] = (gw_rule_level){1, 100, 80, 3 * HOUR};
    return r;
}

/* 15-minute rain increments: 24 x 1 mm, 18 x 2.5 mm, 10 x 10 mm, then dry. */
static double storm_mm(int i)
{
    return i < 24 ? 1.0 : i < 42 ? 2.5 : i < 52 ? 10.0 : 0.0;
}

static void check_rainstorm_levels(int input)
{
    log_t l;
    gw_rule r = rain_rule(input);
    gw_rules_engine *e = engine(&r, 1, &l);
    gw_rules_device d = dev_of("rg-1", "rain_gauge", NULL);
    const int64_t step = 15 * MIN;
    double counter = 1000.0;
    if (input == GW_IN_CUMULATIVE)
        good(e, &d, "rain", counter, T0 - MIN); /* the baseline */
    for (int i = 0; i < 52; i++) {
        int64_t t = T0 + i * step;
        run_until(e, t);
        double v = storm_mm(i);
        if (input == GW_IN_CUMULATIVE) {
            counter += v;
            if (i == 30)
                counter = v; /* the gauge restarted: counts from 0 again */
            v = counter;
        }
        assert_int_equal(good(e, &d, "rain", v, t), GW_OK);
    }
    run_until(e, T0 + 100 * step);
    /* Worked out by hand from the series: see storm_mm. */
    assert_int_equal(l.n, 8);
    expect_tx(&l, 0, GW_ALARM_RAISED, 1, T0 + 34 * step);  /* 12 h: 24 + 11 x 2.5 = 51.5 */
    expect_tx(&l, 1, GW_ALARM_UPDATED, 2, T0 + 41 * step); /* 6 h: 6 + 18 x 2.5 = 51 */
    expect_tx(&l, 2, GW_ALARM_UPDATED, 3, T0 + 44 * step); /* 3 h: 9 x 2.5 + 30 = 52.5 */
    expect_tx(&l, 3, GW_ALARM_UPDATED, 4, T0 + 51 * step); /* 3 h: 5 + 100 = 105 */
    expect_tx(&l, 4, GW_ALARM_UPDATED, 3, T0 + 56 * step); /* 3 h: 70 < 80 */
    expect_tx(&l, 5, GW_ALARM_UPDATED, 2, T0 + 60 * step); /* 3 h: 30 < 40 */
    expect_tx(&l, 6, GW_ALARM_UPDATED, 1, T0 + 72 * step); /* 6 h: 30 < 40 */
    expect_tx(&l, 7, GW_ALARM_CLEARED, 0, T0 + 96 * step); /* 12 h: 30 < 40 */
    assert_true(fabs(l.r[3].a.value - 105.0) < 1e-9);
    assert_true(l.r[3].a.threshold == 100);
    assert_string_equal(l.r[3].a.detail, "sum over 10800 s");
    gw_rules_free(e);
}

static void test_rainstorm_increment(void **state)
{
    (void)state;
    check_rainstorm_levels(GW_IN_INCREMENT);
}

static void test_rainstorm_cumulative_with_reset(void **state)
{
    (void)state;
    check_rainstorm_levels(GW_IN_CUMULATIVE);
}

static void test_rate_of_rise(void **state)
{
    (void)state;
    log_t l;
    gw_rule r;
    memset(&r, 0, sizeof(r));
    snprintf(r.id, sizeof(r.id), "rising");
    r.kind = GW_RK_WINDOW;
    snprintf(r.metric, sizeof(r.metric), "water_depth");
    r.fn = GW_WF_RISE;
    r.window_ms = 10 * MIN;
    r.buckets = 10;
    r.levels[1] = (gw_rule_level){1, 5, 2, 0};
    gw_rules_engine *e = engine(&r, 1, &l);
    gw_rules_device d = dev_of("wl-2", "waterlog", NULL);
    for (int m = 0; m <= 30; m++) {
        double v = m < 10 ? 10 : m < 15 ? 10 + (m - 9) : 15;
        int64_t t = T0 + m * MIN;
        run_until(e, t);
        good(e, &d, "water_depth", v, t);
    }
    assert_int_equal(l.n, 2);
    expect_tx(&l, 0, GW_ALARM_RAISED, 2, T0 + 14 * MIN);  /* 15 - 10 */
    expect_tx(&l, 1, GW_ALARM_CLEARED, 0, T0 + 22 * MIN); /* min of last 10 min is 14 */
    gw_rules_free(e);
}

static void test_stale_flatline_out_of_range(void **state)
{
    (void)state;
    log_t l;
    gw_rule r[3];
    memset(r, 0, sizeof(r));
    snprintf(r[0].id, sizeof(r[0].id), "silent");
    r[0].kind = GW_RK_STALE;
    r[0].level = 1;
    r[0].stale_after_ms = 10 * MIN;
    r[0].n_targets = 1;
    r[0].targets[0].kind = GW_TG_TYPE;
    snprintf(r[0].targets[0].name, sizeof(r[0].targets[0].name), "waterlog");
    snprintf(r[1].id, sizeof(r[1].id), "stuck");
    r[1].kind = GW_RK_FLATLINE;
    r[1].level = 1;
    snprintf(r[1].metric, sizeof(r[1].metric), "water_depth");
    r[1].flat_for_ms = 30 * MIN;
    r[1].flat_epsilon = 0.001;
    snprintf(r[2].id, sizeof(r[2].id), "range");
    r[2].kind = GW_RK_RANGE;
    r[2].level = 2;
    snprintf(r[2].metric, sizeof(r[2].metric), "water_depth");
    gw_rules_engine *e = engine(r, 3, &l);
    gw_rules_device d = dev_of("wl-3", "waterlog", NULL);
    gw_rules_device other = dev_of("rg-9", "rain_gauge", NULL);

    /* Stale: the clock starts at expect(), the tick raises, any reading clears. */
    assert_int_equal(gw_rules_expect(e, &d, T0), GW_OK);
    assert_int_equal(gw_rules_expect(e, &other, T0), GW_OK); /* not targeted */
    assert_int_equal(gw_rules_next_deadline(e), T0 + 10 * MIN);
    run_until(e, T0 + 10 * MIN - 1);
    assert_int_equal(l.n, 0);
    run_until(e, T0 + 10 * MIN);
    assert_int_equal(l.n, 1);
    expect_tx(&l, 0, GW_ALARM_RAISED, 1, T0 + 10 * MIN);
    assert_string_equal(l.r[0].a.rule, "silent");
    assert_int_equal(l.r[0].health, GW_R_STALE);
    assert_int_equal(gw_rules_health(e, "wl-3", "water_depth"), GW_R_STALE);
    assert_int_equal(gw_rules_health(e, "rg-9", NULL), GW_R_NONE);
    /* Even a bad reading is a sign of life. */
    feed(e, &d, "water_depth", -1, GW_Q_BAD, GW_R_COMM_FAIL, T0 + 12 * MIN);
    assert_int_equal(l.n, 2);
    expect_tx(&l, 1, GW_ALARM_CLEARED, 0, T0 + 12 * MIN);
    assert_int_equal(gw_rules_health(e, "wl-3", NULL), GW_R_NONE);

    /* Flatline: 5.0 every 5 minutes for 30 minutes. */
    l.n = 0;
    int64_t t = T0 + HOUR;
    for (int i = 0; i <= 6; i++)
        good(e, &d, "water_depth", 5.0, t + i * 5 * MIN);
    assert_int_equal(l.n, 1);
    expect_tx(&l, 0, GW_ALARM_RAISED, 1, t + 30 * MIN);
    assert_string_equal(l.r[0].a.rule, "stuck");
    assert_int_equal(l.r[0].health, GW_R_FLATLINE);
    good(e, &d, "water_depth", 5.0005, t + 35 * MIN); /* within epsilon */
    assert_int_equal(l.n, 1);
    good(e, &d, "water_depth", 5.2, t + 40 * MIN);
    assert_int_equal(l.n, 2);
    expect_tx(&l, 1, GW_ALARM_CLEARED, 0, t + 40 * MIN);

    /* Out of range: a bad out_of_range reading raises, comm_fail changes nothing. */
    l.n = 0;
    t += HOUR;
    feed(e, &d, "water_depth", 999, GW_Q_BAD, GW_R_OUT_OF_RANGE, t);
    assert_int_equal(l.n, 1);
    expect_tx(&l, 0, GW_ALARM_RAISED, 2, t);
    assert_string_equal(l.r[0].a.rule, "range");
    assert_int_equal(l.r[0].health, GW_R_OUT_OF_RANGE);
    feed(e, &d, "water_depth", 0, GW_Q_BAD, GW_R_COMM_FAIL, t + MIN);
    feed(e, &d, "water_depth", 6, GW_Q_UNCERTAIN, GW_R_MANUAL, t + 2 * MIN);
    assert_int_equal(l.n, 1);
    good(e, &d, "water_depth", 6, t + 3 * MIN);
    assert_int_equal(l.n, 2);
    expect_tx(&l, 1, GW_ALARM_CLEARED, 0, t + 3 * MIN);
    gw_rules_free(e);
}

static void test_bad_quality_neither_raises_nor_clears(void **state)
{
    (void)state;
    log_t l;
    gw_rule r[2];
    r[0] = depth_rule();
    r[1] = rain_rule(GW_IN_INCREMENT);
    gw_rules_engine *e = engine(r, 2, &l);
    gw_rules_device d = dev_of("wl-1", NULL, NULL);
    feed(e, &d, "water_depth", 50, GW_Q_BAD, GW_R_SENSOR_FAULT, T0);
    feed(e, &d, "water_depth", 50, GW_Q_BAD, GW_R_OUT_OF_RANGE, T0 + 1);
    feed(e, &d, "rain", 500, GW_Q_BAD, GW_R_DEVICE_FLAG, T0 + 2);
    run_until(e, T0 + HOUR);
    assert_int_equal(l.n, 0);
    good(e, &d, "water_depth", 12, T0 + HOUR);
    assert_int_equal(l.n, 1);
    expect_tx(&l, 0, GW_ALARM_RAISED, 2, T0 + HOUR);
    feed(e, &d, "water_depth", 0, GW_Q_BAD, GW_R_COMM_FAIL, T0 + HOUR + 1);
    assert_int_equal(l.n, 1);
    assert_int_equal(gw_rules_active_count(e), 1);
    good(e, &d, "rain", 10, T0 + HOUR + 2); /* the bad 500 mm never entered the window */
    assert_int_equal(l.n, 1);
    good(e, &d, "water_depth", 0, T0 + HOUR + 3);
    assert_int_equal(l.n, 2);
    expect_tx(&l, 1, GW_ALARM_CLEARED, 0, T0 + HOUR + 3);
    gw_rules_free(e);
}

static void test_event_rules(void **state)
{
    (void)state;
    log_t l;
    gw_rule r[2];
    memset(r, 0, sizeof(r));
    snprintf(r[0].id, sizeof(r[0].id), "fire");
    r[0].kind = GW_RK_EVENT;
    snprintf(r[0].event, sizeof(r[0].event), "fire_alarm");
    r[0].level = 4;
    r[0].raise_for_ms = 60 * SEC; /* ignored: events are never debounced */
    snprintf(r[1].id, sizeof(r[1].id), "tamper");
    r[1].kind = GW_RK_EVENT;
    snprintf(r[1].event, sizeof(r[1].event), "tamper");
    r[1].level = 2;
    r[1].auto_clear_ms = 30 * MIN;
    gw_rules_engine *e = engine(r, 2, &l);
    gw_rules_device d = dev_of("smk-7", "smoke", "block-2");
    gw_event ev;
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.kind, sizeof(ev.kind), "fire_alarm");
    snprintf(ev.detail, sizeof(ev.detail), "smoke 0.2 dB/m");
    ev.active = 1;
    assert_int_equal(gw_rules_event(e, &d, &ev, T0), GW_OK);
    assert_int_equal(l.n, 1);
    expect_tx(&l, 0, GW_ALARM_RAISED, 4, T0);
    assert_string_equal(l.r[0].a.metric, "fire_alarm");
    assert_string_equal(l.r[0].a.detail, "smoke 0.2 dB/m");
    gw_rules_event(e, &d, &ev, T0 + SEC); /* repeated: still one alarm */
    assert_int_equal(l.n, 1);
    ev.active = 0;
    gw_rules_event(e, &d, &ev, T0 + 2 * SEC);
    assert_int_equal(l.n, 2);
    expect_tx(&l, 1, GW_ALARM_CLEARED, 0, T0 + 2 * SEC);
    /* An unknown kind does nothing; a one-shot tamper clears itself. */
    snprintf(ev.kind, sizeof(ev.kind), "heartbeat");
    ev.active = 1;
    gw_rules_event(e, &d, &ev, T0 + 3 * SEC);
    snprintf(ev.kind, sizeof(ev.kind), "tamper");
    gw_rules_event(e, &d, &ev, T0 + 4 * SEC);
    assert_int_equal(l.n, 3);
    expect_tx(&l, 2, GW_ALARM_RAISED, 2, T0 + 4 * SEC);
    run_until(e, T0 + 4 * SEC + 30 * MIN);
    assert_int_equal(l.n, 4);
    expect_tx(&l, 3, GW_ALARM_CLEARED, 0, T0 + 4 * SEC + 30 * MIN);
    gw_rules_free(e);
}

static void test_targets_and_groups(void **state)
{
    (void)state;
    log_t l;
    gw_rule r = depth_rule();
    r.n_targets = 3;
    r.targets[0].kind = GW_TG_SITE;
    snprintf(r.targets[0].name, sizeof(r.targets[0].name), "underpass-3");
    r.targets[1].kind = GW_TG_GROUP;
    snprintf(r.targets[1].name, sizeof(r.targets[1].name), "east");
    r.targets[2].kind = GW_TG_DEVICE;
    snprintf(r.targets[2].name, sizeof(r.targets[2].name), "wl-9");
    gw_rules_engine *e = engine(&r, 1, &l);
    const char *groups[] = {"west", "east"};
    gw_rules_device a = dev_of("wl-1", "waterlog", "underpass-3");
    gw_rules_device b = {"wl-2", "waterlog", "road-1", groups, 2};
    gw_rules_device c = dev_of("wl-9", "waterlog", "underpass-3"); /* two targets match */
    gw_rules_device x = dev_of("wl-5", "waterlog", "road-1");
    good(e, &a, "water_depth", 4, T0);
    good(e, &b, "water_depth", 4, T0);
    good(e, &c, "water_depth", 4, T0);
    good(e, &x, "water_depth", 40, T0);
    good(e, &a, "rain", 40, T0);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.r[0].a.device, "wl-1");
    assert_string_equal(l.r[1].a.device, "wl-2");
    assert_string_equal(l.r[2].a.device, "wl-9");
    gw_rules_free(e);
}

/* Run-time overrides (the platform's rule.set / rule.enable): a device override
 * beats a group override, levels apply at the next reading (and to a pending
 * debounce at once), a disabled rule clears its active alarm and raises no
 * more, and removing the overrides restores the rule's own levels. */
static void test_overrides(void **state)
{
    (void)state;
    log_t l;
    gw_rule r = depth_rule();
    gw_rules_engine *e = engine(&r, 1, &l);
    const char *east[] = {"east"};
    gw_rules_device a = {"wl-1", "waterlog", NULL, east, 1};
    gw_rules_device b = {"wl-2", "waterlog", NULL, east, 1};
    gw_rules_device c = dev_of("wl-3", "waterlog", NULL);
    gw_rule_override o[2];
    memset(o, 0, sizeof(o));
    snprintf(o[0].rule, sizeof(o[0].rule), "depth");
    o[0].target = GW_TG_GROUP;
    snprintf(o[0].name, sizeof(o[0].name), "east");
    o[0].has_levels = 1;
    o[0].enable = -1;
    memcpy(o[0].levels, r.levels, sizeof(r.levels));
    o[0].levels[0] = (gw_rule_level){1, 1.5, 1, 0};
    o[1] = o[0];
    o[1].target = GW_TG_DEVICE;
    snprintf(o[1].name, sizeof(o[1].name), "wl-1");
    o[1].levels[0] = (gw_rule_level){1, 5, 4, 0};
    assert_int_equal(gw_rules_set_overrides(e, o, 2), GW_OK);
    good(e, &a, "water_depth", 2, T0); /* device override: 5 */
    good(e, &b, "water_depth", 2, T0); /* group override: 1.5 */
    good(e, &c, "water_depth", 2, T0); /* the rule: 3 */
    assert_int_equal(l.n, 1);
    assert_string_equal(l.r[0].a.device, "wl-2");
    assert_true(l.r[0].a.threshold == 1.5);
    good(e, &a, "water_depth", 5, T0 + MIN);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.r[1].a.device, "wl-1");
    assert_true(l.r[1].a.threshold == 5);

    /* Off for the group: wl-2's alarm clears at its next reading, none is raised
     * again; wl-1 follows the group's switch too (its own override sets none)
     * until it is switched on for itself. */
    o[0].enable = 0;
    assert_int_equal(gw_rules_set_overrides(e, o, 2), GW_OK);
    good(e, &b, "water_depth", 30, T0 + 2 * MIN);
    assert_int_equal(l.n, 3);
    expect_tx(&l, 2, GW_ALARM_CLEARED, 0, T0 + 2 * MIN);
    assert_string_equal(l.r[2].a.device, "wl-2");
    assert_string_equal(l.r[2].a.detail, "rule disabled");
    good(e, &b, "water_depth", 40, T0 + 3 * MIN);
    assert_int_equal(l.n, 3);
    good(e, &a, "water_depth", 40, T0 + 3 * MIN);
    assert_int_equal(l.n, 4);
    expect_tx(&l, 3, GW_ALARM_CLEARED, 0, T0 + 3 * MIN);
    assert_string_equal(l.r[3].a.device, "wl-1");
    o[1].enable = 1;
    assert_int_equal(gw_rules_set_overrides(e, o, 2), GW_OK);
    good(e, &a, "water_depth", 40, T0 + 3 * MIN + SEC);
    assert_int_equal(l.n, 5);
    expect_tx(&l, 4, GW_ALARM_RAISED, 3, T0 + 3 * MIN + SEC);
    good(e, &a, "water_depth", 4.5, T0 + 3 * MIN + 2 * SEC);
    assert_int_equal(l.n, 6); /* down to its own blue (5, clear 4) */
    expect_tx(&l, 5, GW_ALARM_UPDATED, 1, T0 + 3 * MIN + 2 * SEC);

    /* No overrides: the rule's own levels again (wl-1 at 4.5 stays blue: 3/2;
     * at 2.5 its own clear of 4 would have cleared it, the rule's 2 does not). */
    assert_int_equal(gw_rules_set_overrides(e, NULL, 0), GW_OK);
    good(e, &b, "water_depth", 3.5, T0 + 4 * MIN);
    assert_int_equal(l.n, 7);
    expect_tx(&l, 6, GW_ALARM_RAISED, 1, T0 + 4 * MIN);
    assert_true(l.r[6].a.threshold == 3);
    good(e, &a, "water_depth", 2.5, T0 + 5 * MIN);
    assert_int_equal(l.n, 7);
    gw_rules_free(e);
}

static void test_combined_underpass(void **state)
{
    (void)state;
    log_t l;
    gw_rule r;
    memset(&r, 0, sizeof(r));
    snprintf(r.id, sizeof(r.id), "underpass");
    r.kind = GW_RK_COMBINED;
    r.level = 3;
    r.combine = GW_COMBINE_ALL;
    snprintf(r.subject, sizeof(r.subject), "underpass-3");
    r.fast_interval_ms = 60 * SEC;
    r.n_conds = 2;
    r.conds[0] =
        (gw_rule_cond){"rg-A", "rain", GW_WF_SUM, GW_IN_INCREMENT, GW_DIR_ABOVE, 30, 20, HOUR, 12};
    r.conds[1] =
        (gw_rule_cond){"wl-B", "water_depth", GW_WF_RISE, 0, GW_DIR_ABOVE, 5, 2, 10 * MIN, 10};
    gw_rules_engine *e = engine(&r, 1, &l);
    gw_rules_device a = dev_of("rg-A", "rain_gauge", NULL);
    gw_rules_device b = dev_of("wl-B", "waterlog", NULL);
    good(e, &b, "water_depth", 10, T0);
    good(e, &a, "rain", 35, T0 + MIN); /* rain alone */
    assert_int_equal(l.n, 0);
    good(e, &b, "water_depth", 16, T0 + 2 * MIN); /* and rising */
    assert_int_equal(l.n, 1);
    expect_tx(&l, 0, GW_ALARM_RAISED, 3, T0 + 2 * MIN);
    assert_string_equal(l.r[0].a.device, "underpass-3");
    assert_int_equal(l.r[0].fast, 60 * SEC);
    assert_int_equal(l.r[0].n_poll, 3);
    assert_int_equal(gw_rules_fast_interval(e, "wl-B"), 60 * SEC);
    assert_int_equal(gw_rules_fast_interval(e, "wl-Z"), 0);
    /* The rise flattens out: cleared once the window forgets the low value. */
    for (int m = 3; m <= 15; m++) {
        run_until(e, T0 + m * MIN);
        good(e, &b, "water_depth", 16, T0 + m * MIN);
    }
    assert_int_equal(l.n, 2);
    expect_tx(&l, 1, GW_ALARM_CLEARED, 0, T0 + 10 * MIN);
    assert_int_equal(gw_rules_fast_interval(e, "wl-B"), 0);
    gw_rules_free(e);
}

static void test_value_updates_rate_limited(void **state)
{
    (void)state;
    log_t l;
    gw_rule r = depth_rule();
    r.update_delta = 1.0;
    r.update_interval_ms = 60 * SEC;
    gw_rules_engine *e = engine(&r, 1, &l);
    gw_rules_device d = dev_of("wl-1", NULL, NULL);
    good(e, &d, "water_depth", 4.0, T0);
    /* Noise of 0.5 never updates; a jump of 2 updates only after 60 s. */
    for (int i = 1; i <= 20; i++)
        good(e, &d, "water_depth", 4.0 + (i % 2) * 0.5, T0 + i * SEC);
    assert_int_equal(l.n, 1);
    good(e, &d, "water_depth", 6.0, T0 + 30 * SEC);
    assert_int_equal(l.n, 1);
    good(e, &d, "water_depth", 6.0, T0 + 60 * SEC);
    assert_int_equal(l.n, 2);
    expect_tx(&l, 1, GW_ALARM_UPDATED, 1, T0 + 60 * SEC);
    assert_true(l.r[1].a.value == 6.0);
    good(e, &d, "water_depth", 7.5, T0 + 61 * SEC);
    assert_int_equal(l.n, 2);
    gw_rules_free(e);
}

static void test_ack(void **state)
{
    (void)state;
    log_t l;
    gw_rule r = depth_rule();
    gw_rules_engine *e = engine(&r, 1, &l);
    gw_rules_device d = dev_of("dev:with:colons", NULL, NULL);
    good(e, &d, "water_depth", 4, T0);
    char id[sizeof(l.r[0].a.id)];
    snprintf(id, sizeof(id), "%s", l.r[0].a.id);
    assert_string_equal(id, "depth:dev:with:colons:1700000100000");
    assert_int_equal(gw_rules_ack(e, "depth:dev:with:colons:1", "ops", T0), GW_ENOTFOUND);
    assert_int_equal(gw_rules_ack(e, "nope", "ops", T0), GW_ENOTFOUND);
    assert_int_equal(gw_rules_ack(e, id, "duty officer", T0 + MIN), GW_OK);
    assert_int_equal(l.n, 2);
    expect_tx(&l, 1, GW_ALARM_ACKED, 1, T0 + MIN);
    assert_string_equal(l.r[1].a.detail, "acked by duty officer");
    assert_string_equal(l.r[1].a.id, id);
    assert_int_equal(gw_rules_ack(e, id, "again", T0 + 2 * MIN), GW_OK);
    assert_int_equal(l.n, 2);
    good(e, &d, "water_depth", 0, T0 + 3 * MIN);
    assert_int_equal(gw_rules_ack(e, id, "late", T0 + 4 * MIN), GW_ENOTFOUND);
    gw_rules_free(e);
}

/* A storm over one underpass: rain gauge, depth sensor, smoke detector. */
static void test_storm_scenario_sequence(void **state)
{
    (void)state;
    log_t l;
    gw_rule r[4];
    r[0] = rain_rule(GW_IN_INCREMENT);
    r[1] = depth_rule();
    r[1].raise_for_ms = 2 * MIN;
    r[1].clear_for_ms = 10 * MIN;
    memset(&r[2], 0, sizeof(r[2]));
    snprintf(r[2].id, sizeof(r[2].id), "flood_risk");
    r[2].kind = GW_RK_COMBINED;
    r[2].level = 3;
    snprintf(r[2].subject, sizeof(r[2].subject), "underpass-3");
    r[2].n_conds = 2;
    r[2].conds[0] = (gw_rule_cond){"rg-1", "rain", GW_WF_SUM, 0, GW_DIR_ABOVE, 30, 30, HOUR, 4};
    r[2].conds[1] =
        (gw_rule_cond){"wl-1", "water_depth", GW_WF_VALUE, 0, GW_DIR_ABOVE, 10, 8, 0, 0};
    memset(&r[3], 0, sizeof(r[3]));
    snprintf(r[3].id, sizeof(r[3].id), "fire");
    r[3].kind = GW_RK_EVENT;
    snprintf(r[3].event, sizeof(r[3].event), "fire_alarm");
    r[3].level = 4;
    gw_rules_engine *e = engine(r, 4, &l);
    gw_rules_device rg = dev_of("rg-1", "rain_gauge", "underpass-3");
    gw_rules_device wl = dev_of("wl-1", "waterlog", "underpass-3");
    gw_rules_device sm = dev_of("smk-1", "smoke", "underpass-3");
    /* Every 15 minutes: rain increment, and a depth reading each 5 minutes. */
    static const double rain[] = {5, 10, 12, 15, 20, 8, 0, 0, 0, 0, 0, 0};
    static const double depth[] = {0, 1, 2, 4, 5, 6, 8, 9, 11, 14, 18, 20, 19, 15, 12, 9, 7, 5,
                                   2, 1, 1, 0, 0, 0, 0, 0, 0,  0,  0,  0,  0,  0,  0,  0, 0, 0};
    for (int k = 0; k < 36; k++) {
        int64_t t = T0 + k * 5 * MIN;
        run_until(e, t);
        if (k % 3 == 0)
            good(e, &rg, "rain", rain[k / 3], t);
        good(e, &wl, "water_depth", depth[k], t);
        if (k == 20) {
            gw_event ev = {"smk-1", "fire_alarm", 1, t, t, 0, ""};
            gw_rules_event(e, &sm, &ev, t);
        }
        if (k == 22) {
            gw_event ev = {"smk-1", "fire_alarm", 0, t, t, 0, ""};
            gw_rules_event(e, &sm, &ev, t);
        }
    }
    run_until(e, T0 + 24 * HOUR);
    /* Worked out by hand from the series above (see the comments). */
    static const struct {
        const char *rule;
        int state, level;
        int64_t at_min;
    } seq[] = {
        {"depth", GW_ALARM_RAISED, 1, 17},       /* 4 cm at 15', held for 2' */
        {"depth", GW_ALARM_UPDATED, 2, 42},      /* 11 cm at 40', held for 2' */
        {"flood_risk", GW_ALARM_RAISED, 3, 45},  /* rain 1 h 42 mm > 30 and depth 14 > 10 */
        {"rainstorm", GW_ALARM_RAISED, 3, 60},   /* 62 mm in 3 h: straight to orange */
        {"flood_risk", GW_ALARM_CLEARED, 0, 80}, /* depth 7 < 8 */
        {"depth", GW_ALARM_UPDATED, 1, 90},      /* < 8 since 80', for 10' */
        {"fire", GW_ALARM_RAISED, 4, 100},       /* no debounce */
        {"depth", GW_ALARM_CLEARED, 0, 105},     /* < 2 since 95', for 10' */
        {"fire", GW_ALARM_CLEARED, 0, 110},
        {"rainstorm", GW_ALARM_UPDATED, 2, 225}, /* 3 h: 20 + 8 = 28 < 40 */
        {"rainstorm", GW_ALARM_UPDATED, 1, 405}, /* 6 h: 28 < 40 */
        {"rainstorm", GW_ALARM_CLEARED, 0, 765}, /* 12 h: 28 < 40 */
    };
    assert_int_equal(l.n, sizeof(seq) / sizeof(seq[0]));
    for (size_t i = 0; i < l.n; i++) {
        assert_string_equal(l.r[i].a.rule, seq[i].rule);
        expect_tx(&l, i, seq[i].state, seq[i].level, T0 + seq[i].at_min * MIN);
        assert_int_equal(l.r[i].a.seq, i + 1);
    }
    assert_int_equal(gw_rules_active_count(e), 0);
    gw_rules_free(e);
}

static void test_persistence_round_trip(void **state)
{
    (void)state;
    log_t l, l2;
    gw_rule r[3];
    r[0] = depth_rule();
    r[0].clear_for_ms = 5 * MIN;
    r[1] = rain_rule(GW_IN_INCREMENT);
    memset(&r[2], 0, sizeof(r[2]));
    snprintf(r[2].id, sizeof(r[2].id), "silent");
    r[2].kind = GW_RK_STALE;
    r[2].level = 1;
    r[2].stale_after_ms = 2 * HOUR;
    gw_rules_engine *e = engine(r, 3, &l);
    gw_rules_device d = dev_of("wl-1", NULL, NULL);
    gw_rules_device rg = dev_of("rg-1", NULL, NULL);
    good(e, &d, "water_depth", 12, T0);
    for (int i = 0; i < 8; i++)
        good(e, &rg, "rain", 6, T0 + i * 15 * MIN); /* 48 mm: 2 short of orange */
    good(e, &d, "water_depth", 1, T0 + 2 * HOUR);   /* clear pending (5 min) */
    assert_int_equal(l.n, 1);
    char id[sizeof(l.r[0].a.id)];
    snprintf(id, sizeof(id), "%s", l.r[0].a.id);

    uint8_t *blob;
    size_t len;
    assert_int_equal(gw_rules_export(e, &blob, &len), GW_OK);
    gw_rules_free(e);

    e = engine(r, 3, &l2);
    assert_int_equal(gw_rules_import(e, blob, len), GW_OK);
    assert_int_equal(gw_rules_active_count(e), 1);
    assert_true(gw_rules_next_deadline(e) <= T0 + 2 * HOUR + 5 * MIN);
    /* The restart happened within the debounce: the pending clear completes. */
    run_until(e, T0 + 2 * HOUR + 4 * MIN);
    assert_int_equal(l2.n, 0); /* no re-raise */
    run_until(e, T0 + 2 * HOUR + 5 * MIN);
    assert_int_equal(l2.n, 1);
    expect_tx(&l2, 0, GW_ALARM_CLEARED, 0, T0 + 2 * HOUR + 5 * MIN);
    assert_string_equal(l2.r[0].a.id, id);
    assert_true(l2.r[0].a.seq > l.r[0].a.seq);
    /* The window buckets survived: 2 mm more reaches 50 mm in 3 h. */
    good(e, &rg, "rain", 2, T0 + 2 * HOUR + 6 * MIN);
    assert_int_equal(l2.n, 2);
    expect_tx(&l2, 1, GW_ALARM_RAISED, 3, T0 + 2 * HOUR + 6 * MIN); /* 50 mm in 3 h */
    assert_string_equal(l2.r[1].a.rule, "rainstorm");
    /* The stale clocks survived too. */
    run_until(e, T0 + 4 * HOUR);
    size_t stale_seen = 0;
    for (size_t i = 2; i < l2.n; i++) {
        if (strcmp(l2.r[i].a.rule, "silent") != 0)
            continue;
        stale_seen++;
        assert_string_equal(l2.r[i].a.device, "wl-1"); /* last seen 2 h before */
        expect_tx(&l2, i, GW_ALARM_RAISED, 1, T0 + 4 * HOUR);
    }
    assert_int_equal(stale_seen, 1);

    /* Damage: every truncation is refused, another version is unsupported. */
    for (size_t cut = 0; cut < len; cut += (cut < 64 ? 1 : 37)) {
        log_t l3;
        gw_rules_engine *e3 = engine(r, 3, &l3);
        assert_int_equal(gw_rules_import(e3, blob, cut), GW_EMALFORMED);
        gw_rules_free(e3);
    }
    blob[4] = 9;
    assert_int_equal(gw_rules_import(e, blob, len), GW_EUNSUPPORTED);
    free(blob);
    gw_rules_free(e);
}

static void test_reload_keeps_unchanged_rules(void **state)
{
    (void)state;
    log_t l;
    gw_rule r[2];
    r[0] = depth_rule();
    r[1] = depth_rule();
    snprintf(r[1].id, sizeof(r[1].id), "depth2");
    gw_rules_engine *e = engine(r, 2, &l);
    gw_rules_device d = dev_of("wl-1", NULL, NULL);
    good(e, &d, "water_depth", 12, T0);
    assert_int_equal(l.n, 2);
    assert_int_equal(gw_rules_active_count(e), 2);
    char id0[sizeof(l.r[0].a.id)];
    snprintf(id0, sizeof(id0), "%s", l.r[0].a.id);

    gw_rule nr[2];
    nr[0] = r[0];
    nr[0].n_actions = 1; /* actions do not change the fingerprint */
    nr[0].actions[0].kind = GW_ACT_MQTT_PUBLISH;
    snprintf(nr[0].actions[0].topic, sizeof(nr[0].actions[0].topic), "city/alarm");
    nr[1] = r[1];
    nr[1].levels[1].raise = 11;
    assert_true(gw_rule_fingerprint(&nr[0]) == gw_rule_fingerprint(&r[0]));
    assert_true(gw_rule_fingerprint(&nr[1]) != gw_rule_fingerprint(&r[1]));
    char err[128];
    /* A bad definition leaves the old engine untouched. */
    gw_rule bad = nr[1];
    bad.levels[1].clear = 20;
    assert_null(gw_rules_reload(e, &bad, 1, T0 + MIN, err, sizeof(err)));
    assert_non_null(strstr(err, "clear must be <= raise"));
    e = gw_rules_reload(e, nr, 2, T0 + MIN, err, sizeof(err));
    assert_non_null(e);
    assert_int_equal(l.n, 3);
    expect_tx(&l, 2, GW_ALARM_CLEARED, 0, T0 + MIN);
    assert_string_equal(l.r[2].a.rule, "depth2");
    assert_string_equal(l.r[2].a.detail, "rule changed");
    assert_int_equal(gw_rules_active_count(e), 1);
    /* depth2 starts afresh (raises again), depth keeps its alarm (no raise). */
    good(e, &d, "water_depth", 12, T0 + 2 * MIN);
    assert_int_equal(l.n, 4);
    expect_tx(&l, 3, GW_ALARM_RAISED, 2, T0 + 2 * MIN);
    assert_string_equal(l.r[3].a.rule, "depth2");
    good(e, &d, "water_depth", 0, T0 + 3 * MIN);
    assert_int_equal(l.n, 6);
    assert_string_equal(l.r[4].a.id, id0);
    assert_int_equal(l.r[4].a.state, GW_ALARM_CLEARED);
    assert_int_equal(l.r[4].n_actions, 1);
    gw_rules_free(e);
}

static void test_definition_checks(void **state)
{
    (void)state;
    char err[128];
    gw_rule r = depth_rule();
    assert_int_equal(gw_rule_check(&r, err, sizeof(err)), GW_OK);
    r.levels[2].raise = 9; /* orange below yellow */
    assert_int_equal(gw_rule_check(&r, err, sizeof(err)), GW_EINVAL);
    r = depth_rule();
    r.dir = GW_DIR_BELOW; /* clears are above raises for "above" */
    assert_int_equal(gw_rule_check(&r, err, sizeof(err)), GW_EINVAL);
    r = rain_rule(GW_IN_CUMULATIVE);
    r.fn = GW_WF_MAX;
    assert_int_equal(gw_rule_check(&r, err, sizeof(err)), GW_EINVAL);
    gw_rule two[2] = {depth_rule(), depth_rule()};
    assert_null(gw_rules_new(two, 2, NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "duplicate"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hysteresis_holds_through_noise),
        cmocka_unit_test(test_overrides),
        cmocka_unit_test(test_below_direction),
        cmocka_unit_test(test_debounce_suppresses_spikes),
        cmocka_unit_test(test_rainstorm_increment),
        cmocka_unit_test(test_rainstorm_cumulative_with_reset),
        cmocka_unit_test(test_rate_of_rise),
        cmocka_unit_test(test_stale_flatline_out_of_range),
        cmocka_unit_test(test_bad_quality_neither_raises_nor_clears),
        cmocka_unit_test(test_event_rules),
        cmocka_unit_test(test_targets_and_groups),
        cmocka_unit_test(test_combined_underpass),
        cmocka_unit_test(test_value_updates_rate_limited),
        cmocka_unit_test(test_ack),
        cmocka_unit_test(test_storm_scenario_sequence),
        cmocka_unit_test(test_persistence_round_trip),
        cmocka_unit_test(test_reload_keeps_unchanged_rules),
        cmocka_unit_test(test_definition_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
