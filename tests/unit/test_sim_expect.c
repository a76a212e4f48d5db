/* Unit tests of sim run's judging: expectations evaluated over synthetic
 * timelines (a pass and a fail for each kind, with the evidence text), the
 * uplink parsing and de-duplication behind them, the scenario's run block,
 * the value a register sends and the CSV. The sim sources are included: unit
 * tests link libgw.a only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sim/curve.c"
#include "sim/encode.c"
#include "sim/expect.c"
#include "sim/report.c"
#include "sim/scenario.c"

/* scenario.c looks protocols up in kinds.c, which pulls in libuv devices. */
static const sim_kind fake_kind = {.name = "modbus-tcp"};
const sim_kind *sim_kind_find(const char *name)
{
    return strcmp(name, "modbus-tcp") == 0 ? &fake_kind : NULL;
}

/* ---- helpers ---- */

static void add_msg(sim_timeline *tl, double t, const char *kind, const char *payload)
{
    assert_true(sim_tl_message(tl, t, kind, payload, strlen(payload)) >= 0);
}

static void reading(sim_timeline *tl, double t, uint64_t seq, const char *dev, double v)
{
    char p[512];
    snprintf(p, sizeof p,
             "{\"v\":1,\"kind\":\"readings\",\"items\":[{\"id\":\"gw-%llu\",\"seq\":%llu,"
             "\"device\":\"%s\",\"type\":\"waterlogging\",\"metric\":\"water_depth\",\"value\":%g,"
             "\"unit\":\"cm\",\"quality\":\"good\"}]}",
             (unsigned long long)seq, (unsigned long long)seq, dev, v);
    add_msg(tl, t, "readings", p);
}

static void add_alarm_msg(sim_timeline *tl, double t, uint64_t seq, const char *dev,
                          const char *state, int level, double v)
{
    char p[512];
    static const char *names[] = {"none", "blue", "yellow", "orange", "red"};
    snprintf(p, sizeof p,
             "{\"v\":1,\"kind\":\"alarms\",\"items\":[{\"id\":\"gw-%llu\",\"seq\":%llu,"
             "\"alarm\":\"depth:%s:1000\",\"rule\":\"depth\",\"device\":\"%s\","
             "\"metric\":\"water_depth\",\"state\":\"%s\",\"level\":%d,\"level_name\":\"%s\","
             "\"value\":%g}]}",
             (unsigned long long)seq, (unsigned long long)seq, dev, dev, state, level, names[level],
             v);
    add_msg(tl, t, "alarms", p);
}

static void event(sim_timeline *tl, double t, uint64_t seq, const char *dev, const char *ev,
                  int active)
{
    char p[512];
    snprintf(p, sizeof p,
             "{\"v\":1,\"kind\":\"events\",\"items\":[{\"id\":\"gw-%llu\",\"seq\":%llu,"
             "\"device\":\"%s\",\"type\":\"smoke\",\"event\":\"%s\",\"active\":%s}]}",
             (unsigned long long)seq, (unsigned long long)seq, dev, ev, active ? "true" : "false");
    add_msg(tl, t, "events", p);
}

/* A sent depth ramp: value = t / 4 (crosses 25 at t = 100), t = 0..200. */
static void sent_ramp(sim_timeline *tl, const char *dev)
{
    for (int t = 0; t <= 200; t++)
        assert_int_equal(sim_tl_sent(tl, t, dev, "water_depth", t / 4.0), SIM_OK);
}

static sim_expect one_dev(sim_expect_kind k, const char *dev)
{
    static char devs[1][SIM_NAME_MAX];
    sim_expect x;
    memset(&x, 0, sizeof x);
    x.kind = k;
    x.within = x.of = -1;
    x.after_addr = -1;
    x.level = 1;
    snprintf(devs[0], sizeof devs[0], "%s", dev);
    x.devs = devs;
    x.ndevs = 1;
    return x;
}

static sim_expect orange_after_25(void)
{
    sim_expect x = one_dev(SIM_X_ALARM, "up-1");
    x.level = 3;
    x.within = 30;
    x.has_after = 1;
    snprintf(x.after_metric, sizeof x.after_metric, "water_depth");
    x.crosses = 25;
    return x;
}

#define EVIDENCE_HAS(v, s)                                                                         \
    do {                                                                                           \
        if (!strstr((v).evidence, (s)))                                                            \
            fail_msg("evidence '%s' lacks '%s'", (v).evidence, (s));                               \
    } while (0)

/* A forecast item: level, state, at (gateway ms) and the crossings of yellow
 * and orange (gateway ms, 0 = absent). */
static void forecast_msg(sim_timeline *tl, double t, uint64_t seq, const char *dev,
                         const char *state, int level, long long at, long long yellow,
                         long long orange)
{
    static const char *names[] = {"none", "blue", "yellow", "orange", "red"};
    char p[1024], cr[256] = "", ta[32], ty[32], to[32];
    /* 2026-11-23T15:40:00.000Z + offsets in whole seconds */
#define ISO(buf, ms)                                                                               \
    snprintf(buf, sizeof buf, "2026-11-23T15:%02lld:%02lld.000Z", 40 + (ms) / 60000,               \
             ((ms) / 1000) % 60)
    ISO(ta, at);
    ISO(ty, yellow);
    ISO(to, orange);
#undef ISO
    if (orange)
        snprintf(cr, sizeof cr, ",\"crossings\":{%s%s%s\"orange\":\"%s\"}",
                 yellow ? "\"yellow\":\"" : "", yellow ? ty : "", yellow ? "\"," : "", to);
    snprintf(p, sizeof p,
             "{\"v\":1,\"kind\":\"forecasts\",\"items\":[{\"id\":\"gw-%llu\",\"seq\":%llu,"
             "\"forecast\":\"fc:%s:1000\",\"rule\":\"fc\",\"device\":\"%s\","
             "\"metric\":\"water_depth\",\"state\":\"%s\",\"level\":%d,\"level_name\":\"%s\","
             "\"lead_min\":%g,\"at\":\"%s\"%s}]}",
             (unsigned long long)seq, (unsigned long long)seq, dev, dev, state, level, names[level],
             orange ? (orange - at) / 60000.0 : 0, ta, cr);
    add_msg(tl, t, "forecasts", p);
}

/* ---- forecasts ---- */

static void test_lead_time(void **st)
{
    sim_timeline *tl = sim_tl_new(0);
    tl->speed = 10;        /* a gateway second is 10 scenario seconds */
    sent_ramp(tl, "up-1"); /* crosses 25 at t=100 */
    /* At t=20 the gateway forecasts orange 7 s (70 scenario s) ahead: t=90. */
    forecast_msg(tl, 20, 1, "up-1", "raised", 3, 0, 2000, 7000);
    forecast_msg(tl, 60, 2, "up-1", "updated", 3, 4000, 0, 9000);
    tl->end_t = 200;
    sim_expect x = orange_after_25();
    x.kind = SIM_X_LEAD_TIME;
    x.within = -1;
    x.at_least = 60;
    snprintf(x.rule, sizeof x.rule, "fc");
    sim_verdict v;
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_PASS);
    assert_true(v.has_lead && fabs(v.lead - 80) < 1e-9);
    assert_true(fabs(v.error - -10) < 1e-9);
    assert_string_equal(v.alarm, "fc:up-1:1000");
    EVIDENCE_HAS(v, "lead 80.0s");
    EVIDENCE_HAS(v, "predicted orange crossing t=90.0s (error -10.0s)");
    EVIDENCE_HAS(v, "last forecast before it at t=60.0s predicted t=110.0s (error +10.0s)");
    /* An impossible lead fails with the evidence. */
    x.at_least = 90;
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_FAIL);
    EVIDENCE_HAS(v, "lead 80.0s (1.3 min)");
    EVIDENCE_HAS(v, "less than the 90s (1.5 min) wanted");
    /* A yellow forecast does not count for orange; none at all fails. */
    sim_timeline *t2 = sim_tl_new(0);
    sent_ramp(t2, "up-1");
    forecast_msg(t2, 20, 1, "up-1", "raised", 2, 0, 2000, 0);
    t2->end_t = 200;
    assert_int_equal(sim_expect_eval(&x, t2, 0, &v), SIM_V_FAIL);
    EVIDENCE_HAS(v, "no forecast >= orange of rule fc for up-1 reached the platform before it");
    EVIDENCE_HAS(v, "forecasts seen: fc:up-1:1000 raised yellow at t=20.0s");
    sim_tl_free(t2);
    sim_tl_free(tl);
}

static void test_no_forecast(void **st)
{
    sim_timeline *tl = sim_tl_new(0);
    sim_expect x = one_dev(SIM_X_NO_FORECAST, "up-4");
    sim_verdict v;
    forecast_msg(tl, 20, 1, "up-1", "raised", 3, 0, 0, 7000);
    assert_int_equal(sim_expect_eval(&x, tl, 0, &v), SIM_V_PENDING);
    tl->end_t = 100;
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_PASS);
    forecast_msg(tl, 50, 2, "up-4", "raised", 3, 0, 0, 7000);
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_FAIL);
    EVIDENCE_HAS(v, "forecast fc:up-4:1000 raised orange reached the platform at t=50.0s");
    sim_tl_free(tl);
}

/* ---- alarm ---- */

static void test_alarm_pass_with_latency(void **st)
{
    sim_timeline *tl = sim_tl_new(0);
    sent_ramp(tl, "up-1");
    sent_ramp(tl, "up-2"); /* another series interleaved: must not confuse the crossing */
    add_alarm_msg(tl, 60, 1, "up-1", "raised", 1, 15);
    add_alarm_msg(tl, 112.5, 2, "up-1", "updated", 3, 26);
    tl->end_t = 200;
    sim_expect x = orange_after_25();
    sim_verdict v;
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_PASS);
    assert_true(fabs(v.base - 100) < 1e-9);
    assert_true(fabs(v.latency - 12.5) < 1e-9);
    assert_string_equal(v.alarm, "depth:up-1:1000");
    EVIDENCE_HAS(v, "water_depth crossed 25 at t=100.0s on up-1");
    EVIDENCE_HAS(v, "alarm depth:up-1:1000 updated orange");
    EVIDENCE_HAS(v, "latency 12.5s");
    /* A red transition also satisfies ">= orange"; the earliest one counts. */
    add_alarm_msg(tl, 105, 3, "up-1", "updated", 4, 27);
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_PASS);
    assert_true(fabs(v.latency - 5) < 1e-9);
    sim_tl_free(tl);
}

static void test_alarm_late_fails(void **st)
{
    sim_timeline *tl = sim_tl_new(0);
    sent_ramp(tl, "up-1");
    add_alarm_msg(tl, 141, 1, "up-1", "raised", 3, 35);
    tl->end_t = 200;
    sim_expect x = orange_after_25();
    sim_verdict v;
    /* Late is a failure as soon as it is seen, final or not. */
    assert_int_equal(sim_expect_eval(&x, tl, 0, &v), SIM_V_FAIL);
    EVIDENCE_HAS(v, "latency 41.0s");
    EVIDENCE_HAS(v, "later than the 30s allowed");
    sim_tl_free(tl);
}

static void test_alarm_missing_pending_then_fail(void **st)
{
    sim_timeline *tl = sim_tl_new(0);
    sent_ramp(tl, "up-1");
    add_alarm_msg(tl, 60, 1, "up-1", "raised", 1, 15);
    add_alarm_msg(tl, 150, 2, "up-1", "cleared", 0, 3);
    sim_expect x = orange_after_25();
    sim_verdict v;
    tl->end_t = 90; /* sampled ahead, but not sent yet */
    assert_int_equal(sim_expect_eval(&x, tl, 0, &v), SIM_V_PENDING);
    EVIDENCE_HAS(v, "has not crossed 25 yet");
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_FAIL);
    EVIDENCE_HAS(v, "never crossed 25 during the run (highest 22.5 at t=90.0s)");
    tl->end_t = 120; /* the 30 s window (100..130) is still open */
    assert_int_equal(sim_expect_eval(&x, tl, 0, &v), SIM_V_PENDING);
    tl->end_t = 131; /* window passed: decided even before the end */
    assert_int_equal(sim_expect_eval(&x, tl, 0, &v), SIM_V_FAIL);
    EVIDENCE_HAS(v, "no alarm >= orange");
    EVIDENCE_HAS(v, "by t=130.0s");
    EVIDENCE_HAS(v, "depth:up-1:1000 raised blue at t=60.0s"); /* what did come */
    /* An alarm of another device does not count. */
    add_alarm_msg(tl, 110, 3, "up-2", "raised", 3, 30);
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_FAIL);
    /* Nor one of another rule when a rule is named. */
    snprintf(x.rule, sizeof x.rule, "other");
    add_alarm_msg(tl, 111, 4, "up-1", "updated", 3, 30);
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_FAIL);
    EVIDENCE_HAS(v, "of rule other");
    x.rule[0] = 0;
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_PASS);
    sim_tl_free(tl);
}

static void test_alarm_never_crossed(void **st)
{
    sim_timeline *tl = sim_tl_new(0);
    for (int t = 0; t <= 200; t++)
        sim_tl_sent(tl, t, "up-1", "water_depth", 20.0 * sin(t / 200.0 * M_PI));
    tl->end_t = 200;
    sim_expect x = orange_after_25();
    sim_verdict v;
    assert_int_equal(sim_expect_eval(&x, tl, 0, &v), SIM_V_PENDING);
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_FAIL);
    EVIDENCE_HAS(v, "never crossed 25");
    EVIDENCE_HAS(v, "highest 20 at t=100.0s");
    /* No samples at all (a kind without registers): says so. */
    snprintf(x.after_metric, sizeof x.after_metric, "rain");
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_FAIL);
    EVIDENCE_HAS(v, "no sent rain values");
    sim_tl_free(tl);
}

static void test_alarm_of_time_and_level(void **st)
{
    sim_timeline *tl = sim_tl_new(0);
    sim_expect x = one_dev(SIM_X_ALARM, "up-1");
    x.level = 4;
    x.of = 50;
    x.within = 20;
    add_alarm_msg(tl, 40, 1, "up-1", "raised", 4, 45); /* before `of`: ignored */
    add_alarm_msg(tl, 60, 2, "up-1", "updated", 3, 30);
    tl->end_t = 100;
    sim_verdict v;
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_FAIL);
    add_alarm_msg(tl, 65, 3, "up-1", "updated", 4, 41);
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_PASS);
    assert_true(fabs(v.latency - 15) < 1e-9);
    sim_tl_free(tl);
}

/* ---- no_alarm ---- */

static void test_no_alarm(void **st)
{
    sim_timeline *tl = sim_tl_new(0);
    sim_expect x = one_dev(SIM_X_NO_ALARM, "wl-20");
    snprintf(x.site, sizeof x.site, "high-ground");
    sim_verdict v;
    tl->end_t = 240;
    /* Silence is not evidence. */
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_FAIL);
    EVIDENCE_HAS(v, "silence proves nothing");
    reading(tl, 10, 1, "wl-20", 1.2);
    add_alarm_msg(tl, 20, 2, "up-1", "raised", 4, 50); /* someone else's */
    assert_int_equal(sim_expect_eval(&x, tl, 0, &v), SIM_V_PENDING);
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_PASS);
    EVIDENCE_HAS(v, "site high-ground (wl-20)");
    EVIDENCE_HAS(v, "1 readings");
    add_alarm_msg(tl, 30, 3, "wl-20", "raised", 1, 5.5);
    assert_int_equal(sim_expect_eval(&x, tl, 0, &v), SIM_V_FAIL);
    assert_string_equal(v.alarm, "depth:wl-20:1000");
    EVIDENCE_HAS(v, "alarm depth:wl-20:1000 raised blue");
    EVIDENCE_HAS(v, "value 5.5");
    EVIDENCE_HAS(v, "t=30.0s");
    /* With a level floor a blue alarm is allowed. */
    x.level = 3;
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_PASS);
    sim_tl_free(tl);
}

/* ---- no_reading_lost ---- */

static void test_no_reading_lost(void **st)
{
    sim_timeline *tl = sim_tl_new(0);
    sim_expect x = one_dev(SIM_X_NO_READING_LOST, "x");
    x.ndevs = 0; /* all */
    sim_verdict v;
    tl->seq_base = 1;
    for (uint64_t s = 1; s <= 10; s++)
        reading(tl, (double)s, s, s % 2 ? "wl-01" : "wl-02", 1.0 * (double)s);
    reading(tl, 11, 4, "wl-02", 4); /* a replay: duplicate, allowed */
    add_alarm_msg(tl, 12, 11, "wl-01", "raised", 1, 6);
    tl->end_t = 20;
    assert_int_equal(sim_expect_eval(&x, tl, 0, &v), SIM_V_PENDING);
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_PASS);
    EVIDENCE_HAS(v, "seq 1..11 complete");
    EVIDENCE_HAS(v, "1 duplicates");
    assert_int_equal(tl->duplicates, 1);
    assert_int_equal(tl->readings, 10);
    /* A gap fails and names the first missing seq. */
    reading(tl, 13, 14, "wl-01", 7);
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_FAIL);
    EVIDENCE_HAS(v, "2 of seq 1..14 never arrived (first missing 12");
    sim_tl_free(tl);

    /* A fresh gateway starts at 1: losing the first items is a loss too. */
    tl = sim_tl_new(0);
    tl->seq_base = 1;
    reading(tl, 1, 3, "wl-01", 1);
    reading(tl, 2, 4, "wl-01", 1);
    tl->end_t = 5;
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_FAIL);
    EVIDENCE_HAS(v, "first missing 1");
    /* Without a base (an external gateway) the first seen starts it. */
    tl->seq_base = 0;
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_PASS);
    /* Out of order per device fails; a listed device that never spoke fails. */
    reading(tl, 3, 2, "wl-01", 1);
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_FAIL);
    EVIDENCE_HAS(v, "1 readings arrived out of seq order");
    sim_tl_free(tl);

    tl = sim_tl_new(0);
    reading(tl, 1, 1, "wl-01", 1);
    tl->end_t = 5;
    sim_expect y = one_dev(SIM_X_NO_READING_LOST, "wl-09");
    assert_int_equal(sim_expect_eval(&y, tl, 1, &v), SIM_V_FAIL);
    EVIDENCE_HAS(v, "sent no reading at all (first wl-09)");
    sim_tl_free(tl);
}

/* ---- online ---- */

static void test_online(void **st)
{
    sim_timeline *tl = sim_tl_new(0);
    sim_expect x;
    memset(&x, 0, sizeof x);
    x.kind = SIM_X_ONLINE;
    x.count = 3;
    snprintf(x.prefix, sizeof x.prefix, "wl-");
    sim_verdict v;
    event(tl, 1, 1, "wl-01", "online", 1);
    reading(tl, 2, 2, "wl-02", 1);
    event(tl, 3, 3, "wl-03", "online", 0); /* ended: not online */
    event(tl, 3, 4, "up-1", "online", 1);  /* another prefix */
    tl->end_t = 10;
    assert_int_equal(sim_expect_eval(&x, tl, 0, &v), SIM_V_PENDING);
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_FAIL);
    EVIDENCE_HAS(v, "only 2 of 3 devices (prefix wl-)");
    reading(tl, 4, 5, "wl-03", 1);
    assert_int_equal(sim_expect_eval(&x, tl, 0, &v), SIM_V_PASS);
    EVIDENCE_HAS(v, "3 devices (prefix wl-) reported online");
    /* By type (as the uplink says it). */
    x.prefix[0] = 0;
    snprintf(x.type, sizeof x.type, "waterlogging"); /* the others' first item said smoke */
    x.count = 1;
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_PASS);
    x.count = 2;
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_FAIL);
    sim_tl_free(tl);

    /* A device list names who never showed up. */
    tl = sim_tl_new(0);
    sim_expect y = one_dev(SIM_X_ONLINE, "sd-9");
    y.count = 1;
    tl->end_t = 1;
    assert_int_equal(sim_expect_eval(&y, tl, 1, &v), SIM_V_FAIL);
    EVIDENCE_HAS(v, "never heard from: sd-9");
    sim_tl_free(tl);
}

/* ---- event ---- */

/* An item caused by a scheduled event can be stamped a hair before the
 * event's scenario time at high --speed: it still counts (regression: the
 * fire rehearsal's last-will offline at t=80 was stamped 79.99). */
static void test_event_stamped_just_before_of(void **st)
{
    sim_timeline *tl = sim_tl_new(0);
    sim_expect x = one_dev(SIM_X_EVENT, "fw-3");
    snprintf(x.event, sizeof x.event, "offline");
    x.of = 80;
    x.within = 5;
    sim_verdict v;
    event(tl, 79.99, 1, "fw-3", "offline", 1);
    tl->end_t = 90;
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_PASS);
    /* Well before the window it is still "earlier", not a hit. */
    sim_timeline *tl2 = sim_tl_new(0);
    event(tl2, 70, 1, "fw-3", "offline", 1);
    tl2->end_t = 90;
    assert_int_equal(sim_expect_eval(&x, tl2, 1, &v), SIM_V_FAIL);
    sim_tl_free(tl);
    sim_tl_free(tl2);
}

static void test_event(void **st)
{
    sim_timeline *tl = sim_tl_new(0);
    sim_expect x = one_dev(SIM_X_EVENT, "sd-7");
    snprintf(x.event, sizeof x.event, "fire_alarm");
    x.of = 60;
    x.within = 10;
    sim_verdict v;
    event(tl, 30, 1, "sd-7", "fire_alarm", 1); /* before the fire: ignored */
    event(tl, 61, 2, "sd-8", "fire_alarm", 1); /* another detector */
    event(tl, 62, 3, "sd-7", "tamper", 1);     /* another event */
    tl->end_t = 65;
    assert_int_equal(sim_expect_eval(&x, tl, 0, &v), SIM_V_PENDING);
    tl->end_t = 80;
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_FAIL);
    EVIDENCE_HAS(v, "no fire_alarm event from sd-7");
    EVIDENCE_HAS(v, "t=70.0s");
    EVIDENCE_HAS(v, "one arrived earlier, at t=30.0s");
    event(tl, 63.25, 4, "sd-7", "fire_alarm", 1);
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_PASS);
    assert_true(fabs(v.latency - 3.25) < 1e-9);
    EVIDENCE_HAS(v, "event fire_alarm from sd-7 (seq 4) reached the platform at t=63.2s");
    x.within = 2;
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_FAIL);
    EVIDENCE_HAS(v, "later than the 2s allowed");
    sim_tl_free(tl);
}

/* `active: false`: the condition's end (a fire alarm cleared). */
static void test_event_ended(void **st)
{
    sim_timeline *tl = sim_tl_new(0);
    sim_expect x = one_dev(SIM_X_EVENT, "sd-7");
    snprintf(x.event, sizeof x.event, "fire_alarm");
    x.ended = 1;
    x.of = 90;
    x.within = 10;
    sim_verdict v;
    event(tl, 91, 1, "sd-7", "fire_alarm", 1); /* still burning: not its end */
    event(tl, 92, 2, "sd-8", "fire_alarm", 0); /* another detector */
    tl->end_t = 120;
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_FAIL);
    EVIDENCE_HAS(v, "no fire_alarm ended event from sd-7");
    event(tl, 93.5, 3, "sd-7", "fire_alarm", 0);
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_PASS);
    EVIDENCE_HAS(v, "event fire_alarm ended from sd-7 (seq 3) reached the platform at t=93.5s");
    assert_true(fabs(v.latency - 3.5) < 1e-9);
    /* The plain form still wants the active one. */
    x.ended = 0;
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_PASS);
    EVIDENCE_HAS(v, "event fire_alarm from sd-7 (seq 1)");
    sim_tl_free(tl);
}

static void test_no_event(void **st)
{
    sim_timeline *tl = sim_tl_new(0);
    sim_expect x = one_dev(SIM_X_NO_EVENT, "sd-7");
    snprintf(x.event, sizeof x.event, "fire_alarm");
    sim_verdict v;
    tl->end_t = 100;
    /* Nothing at all from sd-7: silence proves nothing. */
    event(tl, 30, 1, "sd-8", "fire_alarm", 1); /* another detector's fire */
    assert_int_equal(sim_expect_eval(&x, tl, 0, &v), SIM_V_PENDING);
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_FAIL);
    EVIDENCE_HAS(v, "silence proves nothing");
    /* It was heard from (another event): passes. */
    event(tl, 40, 2, "sd-7", "battery_low", 1);
    assert_int_equal(sim_expect_eval(&x, tl, 1, &v), SIM_V_PASS);
    EVIDENCE_HAS(v, "no fire_alarm event from sd-7 during the run (0 readings, 1 other events");
    /* A reading alone is enough too (one_dev's device list is static:
     * x is made again below). */
    sim_expect y = one_dev(SIM_X_NO_EVENT, "wl-01");
    snprintf(y.event, sizeof y.event, "fire_alarm");
    reading(tl, 41, 3, "wl-01", 1.0);
    assert_int_equal(sim_expect_eval(&y, tl, 1, &v), SIM_V_PASS);
    EVIDENCE_HAS(v, "(1 readings, 0 other events");
    x = one_dev(SIM_X_NO_EVENT, "sd-7");
    snprintf(x.event, sizeof x.event, "fire_alarm");
    /* The forbidden event fails at once, even an ended one, with its seq. */
    event(tl, 55, 4, "sd-7", "fire_alarm", 0);
    event(tl, 50, 5, "sd-7", "fire_alarm", 1);
    assert_int_equal(sim_expect_eval(&x, tl, 0, &v), SIM_V_FAIL);
    EVIDENCE_HAS(v, "event fire_alarm from sd-7 (seq 5) reached the platform at t=50.0s");
    EVIDENCE_HAS(v, "2 fire_alarm events in all");
    assert_true(v.at == 50);
    sim_tl_free(tl);
}

/* ---- the timeline itself ---- */

static void test_timeline_parsing(void **st)
{
    sim_timeline *tl = sim_tl_new(2);
    const char *bad = "{\"items\": 5}";
    assert_int_equal(sim_tl_message(tl, 1, "readings", bad, strlen(bad)), SIM_EMALFORMED);
    assert_int_equal(sim_tl_message(tl, 1, "readings", "{", 1), SIM_EMALFORMED);
    const char *noid = "{\"items\":[{\"device\":\"a\"}, 7]}"; /* no metric, not an object */
    assert_int_equal(sim_tl_message(tl, 1, "readings", noid, strlen(noid)), 0);
    assert_int_equal(tl->malformed, 4);
    assert_int_equal(sim_tl_message(tl, 1, "status", "x", 1), 0); /* not an item topic */
    /* Two items in one message, then the same message again (a replay). */
    const char *two = "{\"items\":[{\"seq\":5,\"device\":\"a\",\"metric\":\"m\",\"value\":1.5,"
                      "\"quality\":\"uncertain\"},{\"seq\":6,\"device\":\"a\",\"metric\":\"m\","
                      "\"value\":null,\"quality\":\"bad\"}]}";
    assert_int_equal(sim_tl_message(tl, 2, "readings", two, strlen(two)), 2);
    assert_int_equal(sim_tl_message(tl, 3, "readings", two, strlen(two)), 0);
    assert_int_equal(tl->duplicates, 2);
    assert_int_equal(tl->nrd, 2);
    assert_int_equal(tl->rd[0].quality, SIM_Q_UNCERTAIN);
    assert_int_equal(tl->rd[1].has_value, 0);
    /* Past max_readings: counted, not kept. */
    reading(tl, 4, 7, "a", 2);
    assert_int_equal(tl->readings, 3);
    assert_int_equal(tl->nrd, 2);
    assert_int_equal(tl->readings_not_kept, 1);
    /* Seqs far below the first grow the map at the front. */
    reading(tl, 5, 1, "a", 2);
    uint64_t first;
    assert_int_equal(sim_tl_seq_gaps(tl, 1, 7, &first), 3); /* 2, 3, 4 */
    assert_int_equal(first, 2);
    /* Many names intern and are found again. */
    char id[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof id, "dev-%05d", i);
        assert_int_equal(sim_tl_sent(tl, i, id, "m", i), SIM_OK);
    }
    assert_true(sim_tl_find(tl, "dev-04999") >= 0);
    assert_true(sim_tl_find(tl, "dev-05000") < 0);
    sim_tl_free(tl);
}

/* ---- the scenario's run block ---- */

static const char *scn_head = "name: t\n"
                              "devices:\n"
                              "  - {id: \"wl-{n:02}\", count: 3, port: 30100,\n"
                              "     registers: [{addr: 0, scale: 10, curve: {type: ramp, from: 0, "
                              "to: 50, over: 100s}},\n"
                              "                 {addr: 1, scale: 100, value: 12}]}\n"
                              "  - {id: up-1, port: 30110}\n";

static sim_scenario *parse_scn(const char *tail, char *err)
{
    char text[4096];
    snprintf(text, sizeof text, "%s%s", scn_head, tail);
    err[0] = 0;
    return sim_scenario_parse(text, strlen(text), "t.yaml", "/scn", err, 256);
}

/* gateway.binary resolves like gateway.config: relative to the scenario's
 * folder; absolute as given. */
static void test_gateway_binary_path(void **st)
{
    char err[256];
    sim_scenario *s = parse_scn("platform: {broker: tcp://127.0.0.1:30883}\n"
                                "gateway: {binary: ../build/gateway, config: gw.yaml}\n",
                                err);
    if (!s)
        fail_msg("%s", err);
    assert_string_equal(s->run->gw_binary, "/scn/../build/gateway");
    sim_scenario_free(s);
    s = parse_scn("platform: {broker: tcp://127.0.0.1:30883}\n"
                  "gateway: {binary: /opt/gw/bin/gateway, config: /etc/gw.yaml}\n",
                  err);
    assert_non_null(s);
    assert_string_equal(s->run->gw_binary, "/opt/gw/bin/gateway");
    assert_string_equal(s->run->gw_config, "/etc/gw.yaml");
    sim_scenario_free(s);
}

static void test_scenario_run_block(void **st)
{
    char err[256];
    sim_scenario *s =
        parse_scn("platform: {broker: tcp://127.0.0.1:30883, gateway_id: gw-x}\n"
                  "broker: {start: true}\n"
                  "gateway: {config: gw.yaml}\n"
                  "duration: 2m\n"
                  "speed: 10\n"
                  "metrics: {water_depth: holding:0, supply_voltage: 1}\n"
                  "sites: {underpass-1: up-1, roads: [wl-01, wl-02]}\n"
                  "expect:\n"
                  "  - alarm: {site: underpass-1, level: red, within: 30s,\n"
                  "            after: {metric: water_depth, crosses: 25}}\n"
                  "  - no_alarm: {site: roads, level: orange}\n"
                  "  - no_reading_lost: {all: true}\n"
                  "  - online: {prefix: wl-}\n"
                  "  - event: {device: up-1, event: fire_alarm, within: 10s, of: 1m}\n"
                  "  - event: {device: up-1, event: fire_alarm, active: false, of: 2m}\n"
                  "  - no_event: {site: roads, event: fire_alarm}\n",
                  err);
    if (!s)
        fail_msg("%s", err);
    sim_run_conf *rc = s->run;
    assert_non_null(rc);
    assert_string_equal(rc->broker, "tcp://127.0.0.1:30883");
    assert_string_equal(rc->topic_prefix, "iot");
    assert_string_equal(rc->gateway_id, "gw-x");
    /* No binary: the gateway beside this executable (build/tests/ here). */
    char self[512];
    ssize_t sn = readlink("/proc/self/exe", self, sizeof self - 1);
    assert_true(sn > 0);
    self[sn] = 0;
    strcpy(strrchr(self, '/') + 1, "gateway");
    assert_string_equal(rc->gw_binary, self);
    assert_string_equal(rc->gw_config, "/scn/gw.yaml");
    assert_int_equal(rc->broker_start, 1);
    assert_true(rc->duration == 120 && rc->speed == 10);
    assert_int_equal(rc->nmetrics, 2);
    assert_int_equal(rc->metrics[1].table, SIM_TAB_HOLDING);
    assert_int_equal(rc->metrics[1].addr, 1);
    assert_int_equal(rc->nexpects, 7);
    sim_expect *x = rc->expects;
    assert_int_equal(x[0].kind, SIM_X_ALARM);
    assert_int_equal(x[0].level, 4);
    assert_int_equal(x[0].ndevs, 1);
    assert_string_equal(x[0].devs[0], "up-1");
    assert_true(x[0].has_after && x[0].crosses == 25 && x[0].within == 30);
    assert_string_equal(x[0].label,
                        "alarm site underpass-1 >= red within 30s after water_depth crosses 25");
    assert_int_equal(x[1].ndevs, 2);
    assert_int_equal(x[1].level, 3);
    assert_int_equal(x[2].ndevs, 0);
    assert_int_equal(x[3].count, 3); /* wl-01..wl-03 */
    assert_true(x[4].of == 60 && x[4].within == 10);
    assert_string_equal(x[4].event, "fire_alarm");
    assert_int_equal(x[4].ended, 0);
    assert_int_equal(x[5].ended, 1);
    assert_string_equal(x[5].label, "event up-1 fire_alarm ended of t=120s");
    assert_int_equal(x[6].kind, SIM_X_NO_EVENT);
    assert_int_equal(x[6].ndevs, 2);
    assert_string_equal(x[6].label, "no_event site roads fire_alarm");
    /* The register of a metric, by name, by address, or the first one. */
    const sim_group *g = &s->groups[0];
    assert_ptr_equal(sim_run_metric_reg(rc, g, "supply_voltage", 0, -1), &g->regs[1]);
    assert_ptr_equal(sim_run_metric_reg(rc, g, "unknown", 0, -1), &g->regs[0]);
    assert_ptr_equal(sim_run_metric_reg(rc, g, "x", SIM_TAB_HOLDING, 1), &g->regs[1]);
    assert_null(sim_run_metric_reg(rc, g, "x", SIM_TAB_INPUT, 1));
    sim_scenario_free(s);

    /* A scenario without run keys has no run block. */
    s = parse_scn("", err);
    assert_non_null(s);
    assert_null(s->run);
    sim_scenario_free(s);
}

static void test_scenario_run_errors(void **st)
{
    static const struct {
        const char *tail, *want;
    } cases[] = {
        {"expect:\n  - no_alarm: {device: wl-09}\n", "needs platform: {broker"},
        {"platform: {broker: tcp://h:1}\nexpect:\n  - no_alarm: {device: wl-09}\n",
         "t.yaml:9: device 'wl-09' is not in the scenario"},
        {"platform: {broker: tcp://h:1}\nexpect:\n  - no_alarm: {site: nowhere}\n",
         "site 'nowhere' is not under sites:"},
        {"platform: {broker: tcp://h:1}\nexpect:\n  - flood: {device: up-1}\n",
         "unknown kind 'flood'"},
        {"platform: {broker: tcp://h:1}\nexpect:\n  - alarm: {device: up-1, colour: red}\n",
         "alarm: unknown key 'colour'"},
        {"platform: {broker: tcp://h:1}\nexpect:\n  - alarm: {device: up-1, level: purple}\n",
         "level: blue, yellow, orange, red"},
        {"platform: {broker: tcp://h:1}\nexpect:\n  - alarm: {level: red}\n",
         "alarm: needs device or site"},
        {"platform: {broker: tcp://h:1}\nexpect:\n  - event: {device: up-1}\n", "needs event:"},
        {"platform: {broker: tcp://h:1}\nexpect:\n  - no_event: {device: up-1}\n",
         "no_event: needs event:"},
        {"platform: {broker: tcp://h:1}\nexpect:\n  - no_event: {event: tamper}\n",
         "no_event: needs device or site"},
        {"platform: {broker: tcp://h:1}\nexpect:\n  - no_event: {device: up-1, event: x, of: 3}\n",
         "no_event: unknown key 'of'"},
        {"platform: {broker: tcp://h:1}\nexpect:\n  - event: {device: up-1, event: x, active: 3}\n",
         "active"},
        {"platform: {broker: tcp://h:1}\nexpect:\n  - no_reading_lost: {}\n",
         "give device, site or all"},
        {"platform: {broker: tcp://h:1}\nexpect:\n  - online: {type: smoke}\n", "give count"},
        {"platform: {broker: tcp://h:1}\nexpect:\n  - alarm: {device: up-1, after: {crosses: 3}}\n",
         "after: needs metric"},
        {"platform: {broker: tcp://h:1}\nspeed: 0\n", "speed: a number in (0, 1e6]"},
        {"platform: {port: 3}\n", "platform: unknown key 'port'"},
        {"gateway: {config: x.yaml}\n", "needs platform"},
        {"metrics: {depth: holding:x}\n", "register: address 0..65535"},
        {"colour: red\n", "unknown key 'colour'"},
    };
    char err[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sim_scenario *s = parse_scn(cases[i].tail, err);
        if (s)
            fail_msg("case %zu parsed: %s", i, cases[i].tail);
        if (!strstr(err, cases[i].want))
            fail_msg("case %zu: '%s' lacks '%s'", i, err, cases[i].want);
    }
}

/* ---- what a register sends, and the CSV ---- */

static void test_sent_value_and_csv(void **st)
{
    char err[256], path[] = "/tmp/test_sim_expect.XXXXXX";
    sim_scenario *s = parse_scn("platform: {broker: tcp://h:1}\n"
                                "metrics: {water_depth: holding:0}\n",
                                err);
    if (!s)
        fail_msg("%s", err);
    const sim_regdef *r = &s->groups[0].regs[0];
    /* ramp 0..50 over 100 s; scale 10 uint16: 0.1 cm steps as encoded. */
    assert_true(fabs(sim_reg_sent_value(r, 50.08, 0, NULL) - 25.0) < 1e-9);
    assert_true(fabs(sim_reg_sent_value(r, 50.2, 0, NULL) - 25.1) < 1e-9);
    sim_regdef neg = *r;
    neg.type = SIM_T_INT16;
    neg.offset = 0.5;
    assert_true(fabs(sim_reg_sent_value(&neg, 50.08, 0, NULL) - 25.05) < 1e-9);

    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    sim_timeline *tl = sim_tl_new(0);
    reading(tl, 1.5, 1, "wl-01", 0.7);
    add_alarm_msg(tl, 2.5, 2, "wl-01", "raised", 2, 16);
    event(tl, 3.5, 3, "wl-02", "online", 1);
    tl->end_t = 2;
    assert_int_equal(sim_report_csv(path, s, tl, 1), SIM_OK);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[256];
    int sent = 0, recv = 0, al = 0, ev = 0, header = 0;
    while (fgets(line, sizeof line, f)) {
        header += !strcmp(line, "t,dir,device,metric,value,quality\n");
        sent += !!strstr(line, ",sent,");
        recv += !strcmp(line, "1.500,recv,wl-01,water_depth,0.7,good\n");
        al += !strcmp(line, "2.500,alarm,wl-01,water_depth,16,raised yellow\n");
        ev += !strcmp(line, "3.500,event,wl-02,online,1,active\n");
    }
    fclose(f);
    unlink(path);
    assert_int_equal(header, 1);
    /* 3 devices x 2 registers (the constant too) x t = 0, 1, 2 */
    assert_int_equal(sent, 18);
    assert_int_equal(recv + al + ev, 3);
    sim_tl_free(tl);
    sim_scenario_free(s);
}

static void test_report_print(void **st)
{
    char err[256];
    sim_scenario *s = parse_scn("platform: {broker: tcp://h:1}\n"
                                "expect:\n  - no_alarm: {device: wl-01}\n"
                                "  - online: {prefix: up-}\n",
                                err);
    if (!s)
        fail_msg("%s", err);
    sim_timeline *tl = sim_tl_new(0);
    reading(tl, 1, 1, "wl-01", 1);
    add_alarm_msg(tl, 2, 2, "wl-01", "raised", 4, 60);
    tl->end_t = 10;
    sim_verdict v[2];
    sim_expect_eval(&s->run->expects[0], tl, 1, &v[0]);
    sim_expect_eval(&s->run->expects[1], tl, 1, &v[1]);
    sim_run_summary sum = {.scenario = "t", .speed = 10, .scenario_s = 10, .wall_s = 1};
    sum.gateway.have = 1;
    sum.gateway.user_s = 0.25;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_int_equal(sim_report_print(f, s->run, v, tl, &sum), 2);
    fclose(f);
    if (!strstr(buf, "FAIL [1] no_alarm wl-01 (line 9): alarm depth:wl-01:1000 raised red") ||
        !strstr(buf, "FAIL [2] online 1 devices prefix up- (line 10): only 0 of 1 devices") ||
        !strstr(buf, "summary: 0 passed, 2 failed") || !strstr(buf, "red 1,") ||
        !strstr(buf, "gateway  cpu: user 0.25s"))
        fail_msg("report:\n%s", buf);
    free(buf);
    sim_tl_free(tl);
    sim_scenario_free(s);
}

/* Items of two gateways through one platform (a cluster rehearsal): per
 * gateway distinct items, duplicates and holes, in the verdict and the JSON. */
static void gw_msg(sim_timeline *tl, const char *gw, const uint64_t *seqs, int n)
{
    char p[2048];
    int at = snprintf(p, sizeof p, "{\"v\":1,\"gw\":\"%s\",\"kind\":\"readings\",\"items\":[", gw);
    for (int i = 0; i < n; i++)
        at += snprintf(p + at, sizeof p - (size_t)at,
                       "%s{\"id\":\"%s-%llu\",\"seq\":%llu,\"device\":\"d\",\"metric\":\"m\","
                       "\"value\":1}",
                       i ? "," : "", gw, (unsigned long long)seqs[i], (unsigned long long)seqs[i]);
    snprintf(p + at, sizeof p - (size_t)at, "]}");
    sim_tl_message(tl, 1, "readings", p, strlen(p));
}

static void test_gateways_report(void **st)
{
    sim_timeline *tl = sim_tl_new(0);
    const uint64_t a1[] = {1, 2, 3}, a2[] = {3, 5}, b1[] = {10, 11, 12, 13};
    gw_msg(tl, "gw-a", a1, 3);
    gw_msg(tl, "gw-b", b1, 4);
    gw_msg(tl, "gw-a", a2, 2); /* 3 again (a re-send after failover), 4 missing */
    gw_msg(tl, "gw-b", b1, 2); /* 10, 11 again */
    assert_int_equal(tl->ngws, 2);
    assert_int_equal(tl->gws[0].items, 4);
    assert_int_equal(tl->gws[0].duplicates, 1);
    assert_int_equal(sim_gw_missing(&tl->gws[0]), 1);
    assert_int_equal(tl->gws[1].items, 4);
    assert_int_equal(tl->gws[1].duplicates, 2);
    assert_int_equal(sim_gw_missing(&tl->gws[1]), 0);
    tl->end_t = 10;
    sim_run_summary sum = {.scenario = "t", .speed = 1, .scenario_s = 10, .wall_s = 10};
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_int_equal(sim_report_print(f, NULL, NULL, tl, &sum), 0);
    fclose(f);
    if (!strstr(buf, "gateway gw-a: 4 items delivered (seq 1..5), 1 missing, 1 duplicates") ||
        !strstr(buf, "gateway gw-b: 4 items delivered (seq 10..13), 0 missing, 2 duplicates"))
        fail_msg("report:\n%s", buf);
    free(buf);
    char path[] = "/tmp/test_sim_gw.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(sim_report_json(path, NULL, NULL, tl, &sum), SIM_OK);
    f = fopen(path, "r");
    assert_non_null(f);
    char text[8192];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    unlink(path);
    text[n] = 0;
    cJSON *root = cJSON_Parse(text);
    const cJSON *gws = cJSON_GetObjectItemCaseSensitive(root, "gateways");
    assert_int_equal(cJSON_GetArraySize(gws), 2);
    const struct {
        const char *gw;
        double items, lo, hi, missing, dups;
    } want[] = {{"gw-a", 4, 1, 5, 1, 1}, {"gw-b", 4, 10, 13, 0, 2}};
    for (int i = 0; i < 2; i++) {
        const cJSON *g = cJSON_GetArrayItem(gws, i);
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(g, "gw")), want[i].gw);
        assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(g, "items")) == want[i].items);
        assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(g, "seq_lo")) == want[i].lo);
        assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(g, "seq_hi")) == want[i].hi);
        assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(g, "missing")) == want[i].missing);
        assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(g, "duplicates")) == want[i].dups);
        assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(g, "not_deduplicated")) == 0);
    }
    cJSON_Delete(root);
    sim_tl_free(tl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alarm_pass_with_latency),
        cmocka_unit_test(test_alarm_late_fails),
        cmocka_unit_test(test_alarm_missing_pending_then_fail),
        cmocka_unit_test(test_alarm_never_crossed),
        cmocka_unit_test(test_alarm_of_time_and_level),
        cmocka_unit_test(test_no_alarm),
        cmocka_unit_test(test_no_reading_lost),
        cmocka_unit_test(test_online),
        cmocka_unit_test(test_event),
        cmocka_unit_test(test_event_stamped_just_before_of),
        cmocka_unit_test(test_event_ended),
        cmocka_unit_test(test_no_event),
        cmocka_unit_test(test_lead_time),
        cmocka_unit_test(test_no_forecast),
        cmocka_unit_test(test_timeline_parsing),
        cmocka_unit_test(test_scenario_run_block),
        cmocka_unit_test(test_gateway_binary_path),
        cmocka_unit_test(test_scenario_run_errors),
        cmocka_unit_test(test_sent_value_and_csv),
        cmocka_unit_test(test_report_print),
        cmocka_unit_test(test_gateways_report),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
