/* sim run end to end: the storm-district rehearsal, self-contained (its own
 * mosquitto, the real gateway, 23 Modbus sensors), at speed 10 on free ports.
 * The scenario as shipped passes every expectation (exit 0, PASS lines, a
 * JSON report with the alarm's latency, a CSV); a copy with a wrong
 * expectation fails it with evidence (exit 1); a gateway that cannot start is
 * a setup error (exit 2). After each run the broker and gateway are gone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SCENARIO "sim/scenarios/storm-district.yaml"
#define NDEVICES 23

static void test_storm_district_passes(void **st)
{
    int broker = h_free_port(), base = h_free_port_range(NDEVICES);
    assert_true(broker > 0 && base > 0);
    char csv[512];
    snprintf(csv, sizeof csv, "%s/run.csv", h_tmpdir());
    const char *extra[] = {"--speed", "10", "--csv", csv, NULL};
    h_rehearsal r = {.scenario = SCENARIO,
                     .broker = broker,
                     .base = base,
                     .extra = extra,
                     .report = 1,
                     .timeout_ms = 90000};
    h_proc *p = &r.p;
    assert_int_equal(h_rehearse(&r, "run-pass.log", 0), 0);
    assert_true(r.wall_ms < 60000);
    /* One PASS line per expectation of the scenario, and the summary. */
    assert_true(h_log_contains(p, "PASS [1] alarm site underpass-1 rule depth >= orange within "
                                  "30s after water_depth crosses 25"));
    assert_true(h_log_contains(p, "PASS [2] alarm up-1 rule depth >= red"));
    assert_true(h_log_contains(p, "PASS [3] alarm site underpass-2"));
    assert_true(h_log_contains(p, "PASS [4] no_alarm site underpass-3 >= orange"));
    assert_true(h_log_contains(p, "PASS [5] no_alarm site high-ground"));
    assert_true(h_log_contains(p, "PASS [6] no_reading_lost all"));
    assert_true(h_log_contains(p, "PASS [7] online 23 devices"));
    assert_true(h_log_contains(p, "summary: 7 passed, 0 failed of 7 expectations"));
    assert_false(h_log_contains(p, "FAIL ["));
    /* Progress went to the terminal while it ran; CPU of all three at the end. */
    assert_true(h_log_contains(p, "sim run: t="));
    assert_true(h_log_contains(p, "gateway  cpu: user"));
    assert_true(h_log_contains(p, "sim      cpu: user"));

    /* The JSON report: evidence with the alarm id and a latency in bounds. */
    cJSON *root = r.json;
    assert_non_null(root);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(root, "passed")));
    cJSON *ex = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "expectations"), 0);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(ex, "result")), "PASS");
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(ex, "alarm"));
    assert_non_null(id);
    assert_true(strncmp(id, "depth:up-1:", 11) == 0);
    double lat = cJSON_GetNumberValue(cJSON_GetObjectItem(ex, "latency_s"));
    double from = cJSON_GetNumberValue(cJSON_GetObjectItem(ex, "from_s"));
    assert_true(lat >= 0 && lat <= 30);
    assert_true(from > 110 && from < 118); /* up-1's curve crosses 25 cm near t=114 s */
    cJSON *items = cJSON_GetObjectItem(root, "items");
    /* The waterlogging profile reports by exception (deadband 0.5 cm, 0.1 V,
     * 0.5 degC), so constant registers are not re-sent every poll. */
    assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(items, "readings")) > 300);
    assert_non_null(cJSON_GetObjectItem(cJSON_GetObjectItem(root, "cpu"), "gateway"));
    h_rehearsal_free(&r);

    /* The CSV has what was sent and what came back. */
    char *text = h_slurp(csv);
    assert_non_null(text);
    assert_true(strncmp(text, "t,dir,device,metric,value,quality\n", 34) == 0);
    assert_non_null(strstr(text, ",sent,up-1,water_depth,"));
    assert_non_null(strstr(text, ",recv,up-1,water_depth,"));
    assert_non_null(strstr(text, ",alarm,up-1,water_depth,"));
    free(text);

    /* Everything it started has stopped. */
    assert_true(h_port_free(SOCK_STREAM, broker));
    assert_true(h_port_free(SOCK_STREAM, base));
}

static void test_wrong_expectation_fails(void **st)
{
    /* A copy whose expectations claim underpass-1 stays quiet. */
    const char *path = h_scenario_expecting(SCENARIO, "wrong.yaml",
                                            "  - no_alarm: {site: underpass-1}\n"
                                            "  - online: {all: true}\n");
    assert_non_null(path);

    int broker = h_free_port(), base = h_free_port_range(NDEVICES);
    assert_true(broker > 0 && base > 0);
    /* up-1 passes 5 cm (blue) near t=67 s: 100 s of scenario time suffice. */
    const char *extra[] = {"--speed", "10", "--duration", "100s", NULL};
    h_rehearsal r = {
        .scenario = path, .broker = broker, .base = base, .extra = extra, .timeout_ms = 60000};
    h_proc *p = &r.p;
    assert_int_equal(h_rehearse(&r, "run-fail.log", 1), 1);
    assert_true(h_log_contains(p, "FAIL [1] no_alarm site underpass-1 (line"));
    assert_true(h_log_contains(p, "): alarm depth:up-1:"));
    assert_true(h_log_contains(p, "reached the platform at t="));
    assert_true(h_log_contains(p, "PASS [2] online 23 devices"));
    assert_true(h_log_contains(p, "summary: 1 passed, 1 failed of 2 expectations"));
    assert_true(h_port_free(SOCK_STREAM, broker));
}

static void test_setup_error_exits_2(void **st)
{
    int broker = h_free_port(), base = h_free_port_range(NDEVICES);
    assert_true(broker > 0 && base > 0);
    const char *extra[] = {"--gateway", "/nonexistent/gateway", NULL};
    h_rehearsal r = {
        .scenario = SCENARIO, .broker = broker, .base = base, .extra = extra, .timeout_ms = 30000};
    h_proc *p = &r.p;
    assert_int_equal(h_rehearse(&r, "run-setup.log", 2), 2);
    assert_true(h_log_contains(p, "setup error: cannot start the gateway /nonexistent/gateway"));
    assert_false(h_log_contains(p, "verdict:"));
    assert_true(h_port_free(SOCK_STREAM, broker));
    /* A scenario error is a setup error too, with file:line. */
    const char *bad = h_write_file("bad.yaml", "name: x\ndevices:\n  - {id: a, port: 1}\n"
                                               "platform: {broker: tcp://127.0.0.1:1}\n"
                                               "expect:\n  - no_alarm: {device: b}\n");
    h_proc q = {0};
    char *argv[] = {(char *)h_bin("sim"), "run", (char *)bad, NULL};
    assert_int_equal(h_spawn(&q, "run-bad.log", argv), 0);
    assert_int_equal(h_wait(&q, 10000), 2);
    assert_true(h_log_contains(&q, "bad.yaml:6: device 'b' is not in the scenario"));
    /* The setup error kept its work folder for the operator; remove it. */
    char kept[256];
    h_kept_dir(p, kept, sizeof kept);
    h_remove_dir(kept);
}

/* A gateway config written in YAML flow style (`gateway: {id: ..., data_dir:
 * ...}`) stays valid in the run's copy: data_dir is replaced inside the
 * braces, or added there when the file has none. The file's own data_dir is
 * not writable, so only a replaced one lets the gateway start. */
static void test_flow_style_gateway_config(void **st)
{
    const char *gws[] = {"gateway: {id: gw-flow, data_dir: /proc/not-here, log_level: info}\n",
                         "gateway: {id: gw-flow}\n"};
    for (int i = 0; i < 2; i++) {
        char text[1024];
        snprintf(text, sizeof text,
                 "%suplink: {uri: tcp://127.0.0.1:30883, topic_prefix: iot}\n"
                 "devices:\n  - {id: wl-01, type: waterlogging, profile: waterlogging-wl100,\n"
                 "     connect: tcp://127.0.0.1:30100, unit: 1, interval: 2s}\n",
                 gws[i]);
        h_write_file("flow.gateway.yaml", text);
        const char *scen = h_write_file(
            "flow.yaml", "name: flow\ndevices:\n  - id: wl-01\n    protocol: modbus-tcp\n"
                         "    port: 30100\n    unit: 1\n    registers:\n"
                         "      - {kind: holding, addr: 0, type: uint16, curve: {type: constant, "
                         "value: 1}}\n"
                         "platform: {broker: tcp://127.0.0.1:30883, topic_prefix: iot}\n"
                         "broker: {start: true}\n"
                         "gateway: {binary: build/gateway, config: flow.gateway.yaml}\n"
                         "duration: 3s\nexpect:\n  - online: {all: true}\n");
        int broker = h_free_port(), base = h_free_port_range(1);
        assert_true(broker > 0 && base > 0);
        h_rehearsal r = {.scenario = scen, .broker = broker, .base = base, .timeout_ms = 30000};
        assert_int_equal(h_rehearse(&r, i ? "run-flow-add.log" : "run-flow.log", 0), 0);
        assert_true(h_log_contains(&r.p, "PASS [1] online"));
    }
}

/* A platform listing several broker nodes holds a persistent session while it
 * rehearses (so what the broker queued survives a failover); when the run
 * ends, by its verdict or by SIGINT, sim run removes it. Checked as a later
 * client would meet it: connecting with sim run's client id and
 * CleanSession=0 finds no session. One mosquitto with two listeners plays
 * two nodes (its sessions are shared by its listeners). */
static h_proc two_listeners; /* stopped by the teardown */

/* mosquitto listening on ports p and p + 1; 0 or -1. */
static int two_listeners_start(int p)
{
    char text[256];
    snprintf(text, sizeof text,
             "listener %d 127.0.0.1\nlistener %d 127.0.0.1\nallow_anonymous true\n"
             "log_dest stdout\n%s",
             p, p + 1, getuid() == 0 ? "user root\n" : "");
    char *argv[] = {"mosquitto", "-c", (char *)h_write_file("two.conf", text), NULL};
    if (h_spawn(&two_listeners, "two-listeners.log", argv))
        return -1;
    return h_port_wait(p, 10000) && h_port_wait(p + 1, 10000) ? 0 : -1;
}

static void test_session_removed(void **st)
{
    int p = h_free_port_range(3); /* two listeners, the device */
    assert_true(p > 0);
    assert_int_equal(two_listeners_start(p), 0);
    char text[1024];
    snprintf(text, sizeof text,
             "gateway: {id: gw-sess}\nuplink: {uri: tcp://127.0.0.1:%d, topic_prefix: iot}\n"
             "devices:\n  - {id: wl-01, type: waterlogging, profile: waterlogging-wl100,\n"
             "     connect: tcp://127.0.0.1:%d, unit: 1, interval: 2s}\n",
             p, p + 2);
    h_write_file("sess.gateway.yaml", text);
    snprintf(text, sizeof text,
             "name: session\ndevices:\n  - id: wl-01\n    protocol: modbus-tcp\n    port: %d\n"
             "    unit: 1\n    registers:\n"
             "      - {kind: holding, addr: 0, type: uint16, curve: {type: constant, value: 1}}\n"
             "platform: {broker: \"tcp://127.0.0.1:%d,tcp://127.0.0.1:%d\", topic_prefix: iot,\n"
             "           gateway_id: gw-sess}\n"
             "gateway: {config: sess.gateway.yaml}\nduration: 3s\n"
             "expect:\n  - online: {all: true}\n",
             p + 2, p, p + 1);
    const char *scn = h_write_file("sess.yaml", text);
    char id[32];

    /* To its verdict. */
    h_rehearsal r = {.scenario = scn, .base = p + 2, .timeout_ms = 30000};
    assert_int_equal(h_rehearse(&r, "run-sess.log", 0), 0);
    snprintf(id, sizeof id, "sim-run-%ld", (long)r.p.started);
    assert_int_equal(h_mqtt_session_present(p, id), 0);
    /* The probe sees a session: the one it left itself. */
    assert_int_equal(h_mqtt_session_present(p + 1, id), 1);

    /* Interrupted. */
    h_proc sim = {0};
    char base[16];
    snprintf(base, sizeof base, "%d", p + 2);
    char *argv[] = {
        (char *)h_bin("sim"),     "run",        (char *)scn, "--base-port", base, "--gateway",
        (char *)h_bin("gateway"), "--duration", "60s",       NULL};
    assert_int_equal(h_spawn(&sim, "run-sess-int.log", argv), 0);
    assert_true(h_log_wait(&sim, "gateway online", 20000));
    h_signal(&sim, SIGINT);
    int rc = h_wait(&sim, 30000);
    if (rc != 1)
        h_dump_log(&sim);
    assert_int_equal(rc, 1);
    snprintf(id, sizeof id, "sim-run-%ld", (long)sim.started);
    assert_int_equal(h_mqtt_session_present(p, id), 0);
}

/* sim platform, given two nodes, removes its session at the end too, unless
 * the operator named the client id (a later run resumes that session). */
static void test_platform_session(void **st)
{
    int p = h_free_port_range(2);
    assert_true(p > 0);
    assert_int_equal(two_listeners_start(p), 0);
    char uris[64], id[32];
    snprintf(uris, sizeof uris, "tcp://127.0.0.1:%d,tcp://127.0.0.1:%d", p, p + 1);
    for (int named = 0; named < 2; named++) {
        h_proc plat = {0};
        char *argv[] = {
            (char *)h_bin("sim"),         "platform",   "--broker", uris, "--timeout", "2",
            named ? "--client-id" : NULL, "plat-named", NULL};
        assert_int_equal(h_spawn(&plat, named ? "plat-named.log" : "plat.log", argv), 0);
        int rc = h_wait(&plat, 20000);
        if (rc != 0)
            h_dump_log(&plat);
        assert_int_equal(rc, 0);
        if (named)
            snprintf(id, sizeof id, "plat-named");
        else
            snprintf(id, sizeof id, "sim-platform-%ld", (long)plat.started);
        assert_int_equal(h_mqtt_session_present(p, id), named);
        assert_true(
            h_log_contains(&plat, named ? "kept in the broker" : "removed from the broker"));
    }
}

static int teardown(void **st)
{
    h_stop(&two_listeners);
    h_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_storm_district_passes, teardown),
        cmocka_unit_test_teardown(test_wrong_expectation_fails, teardown),
        cmocka_unit_test_teardown(test_setup_error_exits_2, teardown),
        cmocka_unit_test_teardown(test_flow_style_gateway_config, teardown),
        cmocka_unit_test_teardown(test_session_removed, teardown),
        cmocka_unit_test_teardown(test_platform_session, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
