/* The rule file loader: the shipped examples load into the definitions they
 * describe, and every mistake is reported with file, line and key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "gateway/rules_load.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const gw_rule *find(const gw_rule *defs, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(defs[i].id, id) == 0)
            return &defs[i];
    fail_msg("rule %s not loaded", id);
    return NULL;
}

static gw_rule *load(const char *path, size_t *n)
{
    gw_rule *defs;
    char err[256];
    int rc = gw_rules_load_file(path, &defs, n, err, sizeof(err));
    if (rc)
        fail_msg("%s: %s", path, err);
    /* Every example must also build an engine. */
    gw_rules_engine *e = gw_rules_new(defs, *n, NULL, NULL, err, sizeof(err));
    if (!e)
        fail_msg("%s: engine: %s", path, err);
    gw_rules_free(e);
    return defs;
}

static void test_examples_load(void **state)
{
    (void)state;
    size_t n;
    gw_rule *d = load("rules/examples/waterlogging.yaml", &n);
    assert_int_equal(n, 2);
    const gw_rule *r = find(d, n, "depth_road");
    assert_int_equal(r->kind, GW_RK_THRESHOLD);
    assert_int_equal(r->n_targets, 1);
    assert_int_equal(r->targets[0].kind, GW_TG_TYPE);
    assert_string_equal(r->targets[0].name, "waterlogging");
    assert_true(r->levels[1].enabled && r->levels[1].raise == 10 && r->levels[1].clear == 8);
    assert_false(r->levels[3].enabled);
    assert_int_equal(r->raise_for_ms, 120000);
    assert_int_equal(r->clear_for_ms, 600000);
    assert_true(r->update_delta == 2);
    assert_int_equal(r->update_interval_ms, 60000);
    assert_int_equal(r->fast_interval_ms, 60000);
    assert_int_equal(r->actions[0].on, GW_ACT_ON(GW_ALARM_RAISED) | GW_ACT_ON(GW_ALARM_UPDATED) |
                                           GW_ACT_ON(GW_ALARM_CLEARED));
    r = find(d, n, "depth_underpass");
    assert_int_equal(r->n_targets, 2);
    assert_int_equal(r->targets[1].kind, GW_TG_SITE);
    assert_int_equal(r->n_actions, 2);
    assert_int_equal(r->actions[0].kind, GW_ACT_MODBUS_WRITE);
    assert_int_equal(r->actions[0].reg, 16);
    assert_true(r->actions[0].value_raise == 1 && r->actions[0].value_clear == 0);
    assert_int_equal(r->actions[1].kind, GW_ACT_COMMAND);
    assert_int_equal(r->actions[1].argc, 2);
    assert_string_equal(r->actions[1].argv[1], "close");
    assert_int_equal(r->actions[1].timeout_ms, 20000);
    free(d);

    d = load("rules/examples/rainstorm.yaml", &n);
    r = find(d, n, "rainstorm");
    assert_int_equal(r->kind, GW_RK_WINDOW);
    assert_int_equal(r->input, GW_IN_CUMULATIVE);
    assert_int_equal(r->window_ms, 12 * 3600000LL);
    assert_int_equal(r->buckets, 48);
    assert_int_equal(r->levels[2].window_ms, 3 * 3600000LL);
    assert_true(r->levels[3].raise == 100);
    r = find(d, n, "depth_rising");
    assert_int_equal(r->fn, GW_WF_RISE);
    free(d);

    d = load("rules/examples/underpass.yaml", &n);
    r = find(d, n, "underpass3_flood_risk");
    assert_int_equal(r->kind, GW_RK_COMBINED);
    assert_int_equal(r->level, 3);
    assert_int_equal(r->n_conds, 2);
    assert_string_equal(r->conds[1].device, "wl-0301");
    assert_int_equal(r->conds[1].fn, GW_WF_RISE);
    assert_true(r->conds[0].threshold == 30 && r->conds[0].clear == 20);
    assert_true(r->conds[1].clear == 3);
    free(d);

    d = load("rules/examples/health.yaml", &n);
    assert_int_equal(find(d, n, "silent")->stale_after_ms, 15 * 60000);
    assert_int_equal(find(d, n, "stuck_depth")->flat_for_ms, 6 * 3600000LL);
    assert_int_equal(find(d, n, "depth_range")->kind, GW_RK_RANGE);
    assert_true(find(d, n, "depth_range")->range_max == 300);
    free(d);

    d = load("rules/examples/smoke.yaml", &n);
    assert_int_equal(find(d, n, "fire")->level, 4);
    assert_string_equal(find(d, n, "fire")->event, "fire_alarm");
    assert_int_equal(find(d, n, "tamper")->auto_clear_ms, 3600000);
    free(d);
}

static void expect_error(const char *yaml, const char *want)
{
    gw_rule *defs = (gw_rule *)1;
    size_t n = 99;
    char err[256] = "";
    int rc = gw_rules_load_text("t.yaml", yaml, strlen(yaml), &defs, &n, err, sizeof(err));
    if (rc == GW_OK)
        fail_msg("loaded, wanted error '%s'", want);
    assert_null(defs);
    assert_int_equal(n, 0);
    if (!strstr(err, want))
        fail_msg("error '%s' does not contain '%s'", err, want);
}

#define HEAD "rules:\n  - id: d\n"

static void test_forecast_example(void **state)
{
    (void)state;
    size_t n;
    gw_rule *d = load("rules/examples/forecast.yaml", &n);
    assert_int_equal(n, 2);
    const gw_rule *r = find(d, n, "depth_renmin_fc");
    assert_int_equal(r->kind, GW_RK_FORECAST);
    assert_string_equal(r->alarm_rule, "depth_renmin");
    assert_false(r->levels[0].enabled); /* taken from the alarm rule by the engine */
    assert_int_equal(r->window_ms, 15 * 60000);
    assert_int_equal(r->horizon_ms, 60 * 60000);
    assert_int_equal(r->move_ms, 3 * 60000);
    assert_int_equal(r->min_points, 6);
    assert_true(r->min_rate == 0.05 && r->min_confidence == 0.99);
    assert_int_equal(r->n_conds, 1);
    assert_string_equal(r->conds[0].device, "rg-07");
    assert_int_equal(r->conds[0].input, GW_IN_CUMULATIVE);
    assert_int_equal(r->conds[0].window_ms, 10 * 60000);
    assert_true(r->conds[0].threshold == 30 && r->rain_gain == 0.4);
    free(d);
}

static void test_errors_name_line_and_key(void **state)
{
    (void)state;
    expect_error(HEAD "    kind: threshold\n    metric: depth\n    colour: red\n",
                 "t.yaml:5: unknown key 'rules[0].colour'");
    expect_error(HEAD "    kind: threshold\n    metric: depth\n    fn: sum\n"
                      "    levels: {blue: {raise: 3}}\n",
                 "t.yaml:5: key 'rules[0].fn' is not valid for kind threshold");
    expect_error(HEAD "    kind: threshold\n    metric: depth\n    levels:\n"
                      "      blue: {raise: 3, clear: 2}\n"
                      "      yellow: {raise: 10, clear: 12}\n",
                 "t.yaml:7: key 'rules[0].levels.yellow.clear' (12) must be <= raise (10) for "
                 "direction above");
    expect_error(HEAD "    kind: threshold\n    metric: batt\n    direction: below\n    levels:\n"
                      "      blue: {raise: 3.4, clear: 3.3}\n",
                 "t.yaml:7: key 'rules[0].levels.blue.clear' (3.3) must be >= raise (3.4) for "
                 "direction below");
    expect_error(HEAD "    kind: threshold\n    metric: depth\n    levels:\n"
                      "      blue: {raise: 10}\n      yellow: {raise: 5}\n",
                 "t.yaml:7: key 'rules[0].levels.yellow.raise' (5) must be higher than blue's");
    expect_error(HEAD "    kind: threshold\n    metric: depth\n    levels:\n"
                      "      amber: {raise: 10}\n",
                 "t.yaml:6: unknown key 'rules[0].levels.amber'");
    expect_error(HEAD "    kind: threshold\n    metric: depth\n    raise_for: soon\n"
                      "    levels: {blue: {raise: 3}}\n",
                 "t.yaml:5: key 'rules[0].raise_for' must be a duration");
    expect_error(HEAD "    kind: threshold\n    metric: depth\n    levels:\n"
                      "      blue: {raise: high}\n",
                 "t.yaml:6: key 'rules[0].levels.blue.raise' must be a number");
    expect_error(HEAD "    kind: window\n    metric: rain\n    window: 12h\n    buckets: 5000\n"
                      "    levels: {blue: {raise: 50}}\n",
                 "t.yaml:6: key 'rules[0].buckets' must be between 1 and 1024");
    expect_error(HEAD "    kind: window\n    metric: rain\n    window: 12h\n    buckets: 48\n"
                      "    levels:\n      red: {raise: 100, window: 100m}\n",
                 "t.yaml:8: key 'rules[0].levels.red.window' must be a multiple of the bucket");
    expect_error(HEAD "    kind: window\n    metric: rain\n    fn: max\n    input: cumulative\n"
                      "    window: 1h\n    levels: {blue: {raise: 50}}\n",
                 "t.yaml:6: key 'rules[0].input' cumulative needs fn sum");
    expect_error(HEAD "    kind: stale\n    level: purple\n    after: 5m\n",
                 "t.yaml:4: key 'rules[0].level' must be one of");
    expect_error(HEAD "    kind: stale\n", "t.yaml:2: missing required key 'rules[0].after'");
    expect_error(HEAD "    kind: combined\n    subject: u3\n    conditions:\n"
                      "      - {device: a, metric: rain, fn: sum, above: 30}\n",
                 "t.yaml:6: key 'rules[0].conditions[0].window' is required for fn sum");
    expect_error(HEAD "    kind: combined\n    subject: u3\n    conditions:\n"
                      "      - {device: a, metric: rain}\n",
                 "t.yaml:6: key 'rules[0].conditions[0]' needs exactly one of 'above' or 'below'");
    expect_error(HEAD "    kind: event\n    event: fire_alarm\n    actions:\n"
                      "      - {kind: modbus_write, device: sign, topic: x, register: 3}\n",
                 "t.yaml:6: key 'rules[0].actions[0].topic' is not valid for action modbus_write");
    expect_error(HEAD "    kind: event\n    event: fire_alarm\n    actions:\n"
                      "      - kind: command\n        argv: run-me\n",
                 "t.yaml:7: key 'rules[0].actions[0].argv' must be a non-empty list");
    expect_error(
        "rules:\n  - {id: a, kind: stale, after: 1m}\n  - {id: a, kind: stale, after: 2m}\n",
        "t.yaml:3: key 'rules[1].id': duplicate rule id 'a'");
    expect_error("rules:\n  - {id: 'a:b', kind: stale, after: 1m}\n",
                 "t.yaml:2: key 'rules[0].id' may hold only");
    expect_error(HEAD "    kind: forecast\n    metric: depth\n",
                 "t.yaml:2: kind forecast needs 'rules[0].levels' or 'rules[0].alarm_rule'");
    expect_error(HEAD "    kind: forecast\n    metric: depth\n    alarm_rule: d\n"
                      "    min_points: 40\n",
                 "t.yaml:6: key 'rules[0].min_points' must be between 3 and 16");
    expect_error(HEAD "    kind: forecast\n    metric: depth\n    alarm_rule: d\n"
                      "    rain: {device: rg, above: 30}\n",
                 "t.yaml:6: missing required key 'rules[0].rain.gain'");
    expect_error(HEAD "    kind: forecast\n    metric: depth\n    alarm_rule: d\n"
                      "    rain:\n      device: rg\n      metric: depth\n      above: 3\n"
                      "      gain: 1\n",
                 "t.yaml:8: key 'rules[0].rain.metric' must differ from the forecast's metric");
    expect_error(HEAD "    kind: forecast\n    metric: depth\n    alarm_rule: d\n    after: 5m\n",
                 "t.yaml:6: key 'rules[0].after' is not valid for kind forecast");
    expect_error("rulez: []\n", "t.yaml:1: unknown key 'rulez'");
    expect_error("rules: {a: 1}\n", "t.yaml:1: key 'rules' must be a list");
    expect_error("rules:\n  - id: [\n", "t.yaml:");
    expect_error(HEAD "    kind: out_of_range\n    min: 10\n    max: 5\n",
                 "t.yaml:5: key 'rules[0].max' (5) must be greater than min (10)");
}

static void test_minimal_defaults(void **state)
{
    (void)state;
    const char *y =
        "rules:\n  - {id: s, kind: stale, after: 90}\n"
        "  - id: w\n    kind: window\n    metric: rain\n"
        "    levels: {orange: {raise: 50, window: 3h}, red: {raise: 100, window: 3h}}\n";
    gw_rule *defs;
    size_t n;
    char err[256];
    assert_int_equal(gw_rules_load_text("t.yaml", y, strlen(y), &defs, &n, err, sizeof(err)),
                     GW_OK);
    assert_int_equal(n, 2);
    assert_int_equal(defs[0].stale_after_ms, 90000);    /* a bare number is seconds */
    assert_int_equal(defs[0].level, 1);                 /* blue by default */
    assert_int_equal(defs[0].n_targets, 0);             /* every device */
    assert_int_equal(defs[1].window_ms, 3 * 3600000LL); /* the longest level window */
    assert_true(defs[1].levels[2].clear == 50);         /* clear defaults to raise */
    free(defs);
}

/* A description is UTF-8 text kept as written; one too long is an error
 * naming the key, never a silent cut. */
static void test_description(void **state)
{
    (void)state;
    const char *y =
        "rules:\n  - {id: s, kind: stale, after: 90, description: \"{site}传感器无数据\"}\n";
    gw_rule *defs;
    size_t n;
    char err[256];
    assert_int_equal(gw_rules_load_text("t.yaml", y, strlen(y), &defs, &n, err, sizeof(err)),
                     GW_OK);
    assert_string_equal(defs[0].description, "{site}传感器无数据");
    free(defs);
    char big[600];
    int k = snprintf(big, sizeof big, "rules:\n  - {id: s, kind: stale, after: 90, description: ");
    for (int i = 0; i < 90; i++) /* 270 bytes of UTF-8 */
        k += snprintf(big + k, sizeof big - (size_t)k, "水");
    snprintf(big + k, sizeof big - (size_t)k, "}\n");
    expect_error(big, "description");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_examples_load),
        cmocka_unit_test(test_forecast_example),
        cmocka_unit_test(test_errors_name_line_and_key),
        cmocka_unit_test(test_minimal_defaults),
        cmocka_unit_test(test_description),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
