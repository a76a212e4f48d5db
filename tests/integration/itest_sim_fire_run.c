/* sim run end to end with peer devices: the shipped rehearsal "fire residential
 * block" (60 NB-100 smoke detectors posting CoAP to the gateway, 3 fire-water
 * gauges publishing JSON to the broker, its own mosquitto, the real gateway) at
 * speed 10 on free ports. --base-port moves the detectors' CoAP port and the
 * gateway's CoAP listener together; --broker-port moves the broker, the gauges
 * (its clients), the gateway's mqtt-devices listener and its uplink. The
 * scenario as shipped passes every expectation (exit 0, one PASS line each:
 * the fire event and its red alarm, the fire's end, the low battery that is
 * no fire, the tamper, the silent detector going offline, the gauge's will and
 * birth, all online, nothing lost). A copy expecting a fire from the
 * low-battery detector, and no fire from the burning flat, fails both with
 * evidence (exit 1). After each run the broker, the gateway and the listeners
 * are gone. */
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

#define SCENARIO "sim/scenarios/fire-residential.yaml"

static void test_fire_residential_passes(void **st)
{
    /* The broker's port (TCP) and, next to it, the gateway's CoAP listener (UDP). */
    int broker = h_free_port_range(2), coap = broker + 1;
    assert_true(broker > 0);
    h_rehearsal r = {.scenario = SCENARIO,
                     .broker = broker,
                     .base = coap,
                     .report = 1,
                     .keep = 1,
                     .timeout_ms = 60000};
    h_proc *p = &r.p;
    assert_int_equal(h_rehearse(&r, "run-pass.log", 0), 0);
    fprintf(stderr, "fire-residential rehearsal: %lld ms wall\n", (long long)r.wall_ms);
    assert_true(r.wall_ms < 45000);

    /* The gateway listened where the detectors and gauges were sent. */
    assert_true(r.kept[0]);
    char path[400], want[96];
    snprintf(path, sizeof path, "%s/gateway.yaml", r.kept);
    char *cfg = h_slurp(path);
    assert_non_null(cfg);
    snprintf(want, sizeof want, "{protocol: coap, listen: 127.0.0.1, port: %d}", coap);
    assert_non_null(strstr(cfg, want));
    snprintf(want, sizeof want, "uri: tcp://127.0.0.1:%d\n", broker);
    assert_non_null(strstr(cfg, want));
    assert_null(strstr(cfg, ":32883\n"));
    assert_null(strstr(cfg, "port: 35683"));
    free(cfg);

    /* One PASS line per expectation of the scenario, and the summary. */
    assert_true(h_log_contains(p, "verdict: fire residential block (speed 10, scenario "
                                  "t=0..150.0s"));
    assert_true(h_log_contains(p, "PASS [1] online 63 devices"));
    assert_true(h_log_contains(p, "PASS [2] no_reading_lost all"));
    assert_true(h_log_contains(p, "PASS [3] event site burning-flat fire_alarm within 5s"));
    assert_true(h_log_contains(p, "event fire_alarm from smk-003"));
    assert_true(h_log_contains(p, "PASS [4] alarm site burning-flat rule fire >= red"));
    assert_true(h_log_contains(p, "alarm fire:smk-003:"));
    assert_true(h_log_contains(p, "PASS [5] event site burning-flat fire_alarm ended"));
    assert_true(h_log_contains(p, "event fire_alarm ended from smk-003"));
    assert_true(h_log_contains(p, "PASS [6] event site weak-battery battery_low"));
    assert_true(h_log_contains(p, "PASS [7] no_event site weak-battery fire_alarm"));
    assert_true(h_log_contains(p, "no fire_alarm event from site weak-battery (smk-007)"));
    assert_true(h_log_contains(p, "PASS [8] no_alarm site weak-battery rule fire"));
    assert_true(h_log_contains(p, "PASS [9] event site removed tamper"));
    assert_true(h_log_contains(p, "PASS [10] event site silent offline"));
    assert_true(h_log_contains(p, "event offline from smk-012"));
    assert_true(h_log_contains(p, "PASS [11] event fw-tank-03 offline"));
    assert_true(h_log_contains(p, "PASS [12] event fw-tank-03 online"));
    assert_true(h_log_contains(p, "summary: 12 passed, 0 failed of 12 expectations"));
    assert_false(h_log_contains(p, "FAIL ["));

    /* The gateway's side: smk-020's bad CRC and smk-021's half frame were
     * refused as malformed, fw-tank-02's broken JSON dropped, no unknown
     * device; every reading it stored reached the platform. */
    const char *glog = r.gwlog;
    assert_non_null(glog);
    long long coap_req = h_last_count(glog, "[coap] stopping:", "requests ");
    long long coap_bad = h_last_count(glog, "[coap] stopping:", "malformed ");
    long long coap_unknown = h_last_count(glog, "[coap] stopping:", "unknown ");
    long long mq_bad = h_last_count(glog, "[mqtt-devices] stopping", "malformed ");
    long long gw_readings = h_last_count(glog, "[stats] devices", "readings ");
    fprintf(stderr,
            "gateway: coap requests %lld malformed %lld; gauges malformed %lld; "
            "readings %lld\n",
            coap_req, coap_bad, mq_bad, gw_readings);
    assert_true(coap_req > 60);
    assert_int_equal(coap_bad, 2);
    assert_int_equal(coap_unknown, 0);
    assert_int_equal(mq_bad, 1);

    cJSON *root = r.json;
    assert_non_null(root);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(root, "passed")));
    cJSON *items = cJSON_GetObjectItem(root, "items");
    double rd = cJSON_GetNumberValue(cJSON_GetObjectItem(items, "readings"));
    assert_true(rd > 500);
    assert_true(gw_readings > 0 && (long long)rd == gw_readings);
    /* smk-012: silent from 60 s, its last heartbeat near 4 s, offline two
     * scenario minutes later. */
    cJSON *ex = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "expectations"), 9);
    double at = cJSON_GetNumberValue(cJSON_GetObjectItem(ex, "at_s"));
    assert_true(at > 110 && at < 140);
    h_rehearsal_free(&r);

    /* Everything it started has stopped. */
    assert_true(h_port_free(SOCK_STREAM, broker));
    assert_true(h_port_free(SOCK_DGRAM, coap));
}

static void test_wrong_expectation_fails(void **st)
{
    /* A copy whose expectations claim a fire at the low-battery detector and
     * none at the burning flat. */
    const char *path = h_scenario_expecting(
        SCENARIO, "wrong.yaml",
        "  - event: {site: weak-battery, event: fire_alarm, of: 40s, within: 10s}\n"
        "  - no_event: {site: burning-flat, event: fire_alarm}\n"
        "  - online: {all: true}\n");
    assert_non_null(path);

    /* The broker's port (TCP) and, next to it, the gateway's CoAP listener (UDP). */
    int broker = h_free_port_range(2), coap = broker + 1;
    assert_true(broker > 0);
    /* The fire (30 s) and the low battery (40 s) are in the first minute. */
    const char *extra[] = {"--duration", "60s", NULL};
    h_rehearsal r = {
        .scenario = path, .broker = broker, .base = coap, .extra = extra, .timeout_ms = 40000};
    h_proc *p = &r.p;
    assert_int_equal(h_rehearse(&r, "run-fail.log", 1), 1);
    assert_true(h_log_contains(p, "FAIL [1] event site weak-battery fire_alarm within 10s of "
                                  "t=40s"));
    assert_true(h_log_contains(p, "no fire_alarm event from site weak-battery (smk-007) reached "
                                  "the platform between t=40.0s and t=50.0s"));
    assert_true(h_log_contains(p, "FAIL [2] no_event site burning-flat fire_alarm"));
    assert_true(h_log_contains(p, "event fire_alarm from smk-003 (seq "));
    assert_true(h_log_contains(p, "PASS [3] online 63 devices"));
    assert_true(h_log_contains(p, "summary: 1 passed, 2 failed of 3 expectations"));
    assert_true(h_port_free(SOCK_STREAM, broker));
    assert_true(h_port_free(SOCK_DGRAM, coap));
}

static int teardown(void **st)
{
    h_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_fire_residential_passes, teardown),
        cmocka_unit_test_teardown(test_wrong_expectation_fails, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
