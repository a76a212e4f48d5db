/* sim run end to end with stations that dial in: the shipped rehearsal
 * "rtu flaky link" (40 SL651 RTUs and 2 HJ212 stations on a flaky link, its own
 * mosquitto, the real gateway as their centre) at speed 60 on free ports.
 * --base-port moves the sim's `connect:` ports and the gateway's `listen:`
 * ports together. The scenario as shipped passes every expectation (exit 0,
 * PASS lines, 40 s of scenario minutes in about 41 s of wall time), and the
 * gateway's own counters show the resends and doubled frames it recognised and
 * stored once while the platform got every item it stored. A copy with a
 * wrong expectation fails it with evidence (exit 1). After each run the
 * broker, the gateway and the listeners are gone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SCENARIO "sim/scenarios/rtu-flaky-link.yaml"
/* The scenario's ports: HJ212 127.0.0.1:15212 (the lowest, moved to the base)
 * and SL651 127.0.0.1:15651 (base + 439). */
#define HJ_OFFSET 0
#define SL_OFFSET (15651 - 15212)

/* A base port with base and base + SL_OFFSET free (bounded tries). */
static int free_base(void)
{
    for (int tries = 0; tries < 50; tries++) {
        int base = h_free_port();
        if (base > 0 && base + SL_OFFSET <= 65535 && h_port_free(SOCK_STREAM, base + HJ_OFFSET) &&
            h_port_free(SOCK_STREAM, base + SL_OFFSET))
            return base;
    }
    return -1;
}

static void test_rtu_flaky_link_passes(void **st)
{
    int broker = h_free_port(), base = free_base();
    assert_true(broker > 0 && base > 0 && broker != base && broker != base + SL_OFFSET);
    h_rehearsal r = {.scenario = SCENARIO,
                     .broker = broker,
                     .base = base,
                     .report = 1,
                     .keep = 1,
                     .timeout_ms = 90000};
    h_proc *p = &r.p;
    assert_int_equal(h_rehearse(&r, "run-pass.log", 0), 0);
    assert_true(r.wall_ms < 60000);
    const char *dir = r.kept;
    /* The stations dialed the moved ports, and the gateway listened on them. */
    char want[96];
    snprintf(want, sizeof want, "listen: 127.0.0.1:%d", base + SL_OFFSET);
    assert_true(dir[0]);
    char path[400];
    snprintf(path, sizeof path, "%s/gateway.yaml", dir);
    char *cfg = h_slurp(path);
    assert_non_null(cfg);
    assert_non_null(strstr(cfg, want));
    snprintf(want, sizeof want, "listen: 127.0.0.1:%d", base + HJ_OFFSET);
    assert_non_null(strstr(cfg, want));
    assert_non_null(strstr(cfg, "transport: tcp")); /* not taken for a "port:" key */
    free(cfg);

    /* One PASS line per expectation of the scenario, and the summary. */
    assert_true(h_log_contains(p, "verdict: rtu flaky link (speed 60, scenario t=0..2400.0s"));
    assert_true(h_log_contains(p, "PASS [1] online 42 devices"));
    assert_true(h_log_contains(p, "PASS [2] no_reading_lost all"));
    assert_true(h_log_contains(p, "PASS [3] alarm site warning-reach rule river_level >= yellow"));
    assert_true(h_log_contains(p, "alarm river_level:rtu-033:"));
    assert_true(h_log_contains(p, "PASS [4] no_alarm site quiet-reach"));
    assert_true(h_log_contains(p, "PASS [5] event rtu-013 offline"));
    assert_true(h_log_contains(p, "PASS [6] alarm rtu-013 rule silent"));
    assert_true(h_log_contains(p, "PASS [7] event rtu-039 battery_low"));
    assert_true(h_log_contains(p, "summary: 7 passed, 0 failed of 7 expectations"));
    assert_false(h_log_contains(p, "FAIL ["));

    /* Stored once: the gateway recognised resends and doubled frames (the
     * duplicate fault of rtu-021/022/040, rtu-007's resends after bad CRCs),
     * confirmed them again and stored nothing for them; every reading it did
     * store reached the platform (the report's de-duplicated count equals the
     * gateway's own). */
    const char *glog = r.gwlog;
    assert_non_null(glog);
    long long dups = h_last_count(glog, "[sl651] stopped:", "duplicates ");
    long long bad_crc = h_last_count(glog, "[sl651] stopped:", "bad CRC ");
    long long confirms = h_last_count(glog, "[sl651] stopped:", "confirms ");
    long long gw_readings = h_last_count(glog, "[stats] devices", "readings ");
    long long refused = h_last_count(glog, "[sl651] stopped:", "unknown station ");
    fprintf(stderr, "gateway: sl651 duplicates %lld, bad CRC %lld, confirms %lld, readings %lld\n",
            dups, bad_crc, confirms, gw_readings);
    assert_true(dups > 0);
    assert_true(bad_crc > 0);
    assert_true(confirms > 100);
    assert_int_equal(refused, 0); /* every station's address is configured */

    cJSON *root = r.json;
    assert_non_null(root);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(root, "passed")));
    cJSON *items = cJSON_GetObjectItem(root, "items");
    double rd = cJSON_GetNumberValue(cJSON_GetObjectItem(items, "readings"));
    assert_true(rd > 1000);
    assert_true(gw_readings > 0 && (long long)rd == gw_readings);
    cJSON *ex = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "expectations"), 4);
    double at = cJSON_GetNumberValue(cJSON_GetObjectItem(ex, "at_s"));
    /* rtu-013 is silent from 10m; offline after 15 s of wall = 15 minutes. */
    assert_true(at > 1380 && at < 1800);
    h_rehearsal_free(&r);

    /* Everything it started has stopped. */
    assert_true(h_port_free(SOCK_STREAM, broker));
    assert_true(h_port_free(SOCK_STREAM, base + HJ_OFFSET));
    assert_true(h_port_free(SOCK_STREAM, base + SL_OFFSET));
}

static void test_wrong_expectation_fails(void **st)
{
    /* A copy whose expectations claim rtu-002 crosses the warning level. */
    const char *path =
        h_scenario_expecting(SCENARIO, "wrong.yaml",
                             "  - alarm: {site: quiet-reach, rule: river_level, level: yellow}\n"
                             "  - online: {all: true}\n");
    assert_non_null(path);

    int broker = h_free_port(), base = free_base();
    assert_true(broker > 0 && base > 0 && broker != base && broker != base + SL_OFFSET);
    /* Every station is online within a few scenario minutes. */
    const char *extra[] = {"--duration", "8m", NULL};
    h_rehearsal r = {
        .scenario = path, .broker = broker, .base = base, .extra = extra, .timeout_ms = 40000};
    h_proc *p = &r.p;
    assert_int_equal(h_rehearse(&r, "run-fail.log", 1), 1);
    assert_true(h_log_contains(p, "FAIL [1] alarm site quiet-reach rule river_level >= yellow"));
    assert_true(h_log_contains(p, "no alarm >= yellow of rule river_level for site quiet-reach "
                                  "(rtu-002) reached the platform"));
    assert_true(h_log_contains(p, "PASS [2] online 42 devices"));
    assert_true(h_log_contains(p, "summary: 1 passed, 1 failed of 2 expectations"));
    assert_true(h_port_free(SOCK_STREAM, broker));
    assert_true(h_port_free(SOCK_STREAM, base + SL_OFFSET));
}

static int teardown(void **st)
{
    h_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_rtu_flaky_link_passes, teardown),
        cmocka_unit_test_teardown(test_wrong_expectation_fails, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
