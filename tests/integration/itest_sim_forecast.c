/* sim run end to end for early warning: the storm-forecast rehearsal (its own
 * mosquitto, the real gateway, four underpasses) at speed 120 on free ports.
 * As shipped, forecasts arrive >= 10 scenario minutes before the water
 * crosses orange on the steady and the accelerating rises, none comes for the
 * spiky sensor, and the report gives each lead and forecast error; a copy
 * asking for an impossible lead (more than the storm leaves) fails with the
 * evidence. After each run the broker and the gateway are gone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/integration/harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SCENARIO "sim/scenarios/storm-forecast.yaml"
#define NDEVICES 4

static void test_forecasts_lead_the_water(void **st)
{
    int broker = h_free_port(), base = h_free_port_range(NDEVICES);
    assert_true(broker > 0 && base > 0);
    h_rehearsal r = {
        .scenario = SCENARIO, .broker = broker, .base = base, .report = 1, .timeout_ms = 120000};
    h_proc *p = &r.p;
    assert_int_equal(h_rehearse(&r, "run-pass.log", 0), 0);
    assert_true(h_log_contains(p, "PASS [1] lead_time site renmin rule depth_fc >= orange at "
                                  "least 600s ahead after water_depth crosses 25"));
    assert_true(h_log_contains(p, "PASS [2] lead_time site jinsha"));
    assert_true(h_log_contains(p, "PASS [3] lead_time site longhu"));
    assert_true(h_log_contains(p, "PASS [4] lead_time site renmin rule depth_fc >= red"));
    assert_true(h_log_contains(p, "PASS [5] no_forecast site xinhua"));
    assert_true(h_log_contains(p, "PASS [6] alarm site renmin rule depth >= orange"));
    assert_true(h_log_contains(p, "summary: 6 passed, 0 failed of 6 expectations"));

    /* The report: each lead >= 10 min, with the forecast's id and its error. */
    cJSON *root = r.json;
    assert_non_null(root);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(root, "passed")));
    for (int i = 0; i < 4; i++) {
        cJSON *ex = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "expectations"), i);
        double lead = cJSON_GetNumberValue(cJSON_GetObjectItem(ex, "lead_s"));
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(ex, "forecast"));
        assert_true(lead >= 600);
        assert_non_null(cJSON_GetObjectItem(ex, "error_s"));
        assert_non_null(id);
        assert_true(strncmp(id, "depth_fc:up-", 12) == 0);
    }
    h_rehearsal_free(&r);
}

static void test_impossible_lead_fails(void **st)
{
    /* Renmin Road crosses 25 cm about 30 scenario minutes in: a 40-minute
     * lead cannot be had. 35 scenario minutes are enough to judge it. */
    const char *path = h_scenario_expecting(
        SCENARIO, "impossible.yaml",
        "  - lead_time: {site: renmin, rule: depth_fc, level: orange, at_least: 40m,\n"
        "                after: {metric: water_depth, crosses: 25}}\n"
        "  - no_forecast: {site: xinhua}\n");
    assert_non_null(path);

    int broker = h_free_port(), base = h_free_port_range(NDEVICES);
    assert_true(broker > 0 && base > 0);
    const char *extra[] = {"--duration", "35m", NULL};
    h_rehearsal r = {
        .scenario = path, .broker = broker, .base = base, .extra = extra, .timeout_ms = 90000};
    h_proc *p = &r.p;
    assert_int_equal(h_rehearse(&r, "run-fail.log", 1), 1);
    assert_true(h_log_contains(p, "FAIL [1] lead_time site renmin rule depth_fc >= orange at "
                                  "least 2400s ahead"));
    assert_true(h_log_contains(p, "forecast depth_fc:up-1:"));
    assert_true(h_log_contains(p, "predicted orange crossing t="));
    assert_true(h_log_contains(p, "less than the 2400s (40.0 min) wanted"));
    assert_true(h_log_contains(p, "PASS [2] no_forecast site xinhua"));
    assert_true(h_log_contains(p, "summary: 1 passed, 1 failed of 2 expectations"));
}

static int teardown(void **st)
{
    h_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_forecasts_lead_the_water, teardown),
        cmocka_unit_test_teardown(test_impossible_lead_fails, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
