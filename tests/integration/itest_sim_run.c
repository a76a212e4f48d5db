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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SCENARIO "sim/scenarios/storm-district.yaml"
#define NDEVICES 23

/* 1 if nothing listens on 127.0.0.1:port (we can bind it). */
static int port_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static void test_storm_district_passes(void **st)
{
    int broker = h_free_port(), base = h_free_port_range(NDEVICES);
    assert_true(broker > 0 && base > 0);
    char report[512], csv[512];
    snprintf(report, sizeof report, "%s/report.json", h_tmpdir());
    snprintf(csv, sizeof csv, "%s/run.csv", h_tmpdir());
    const char *extra[] = {"--speed", "10", "--report", report, "--csv", csv, NULL};
    h_proc p = {0};
    int64_t t0 = h_now_ms();
    int rc = h_sim_run(&p, "run-pass.log", SCENARIO, broker, base, extra, 90000);
    int64_t wall = h_now_ms() - t0;
    if (rc != 0)
        h_dump_log(&p);
    assert_int_equal(rc, 0);
    assert_true(wall < 60000);
    /* One PASS line per expectation of the scenario, and the summary. */
    assert_true(h_log_contains(&p, "PASS [1] alarm site underpass-1 rule depth >= orange within "
                                   "30s after water_depth crosses 25"));
    assert_true(h_log_contains(&p, "PASS [2] alarm up-1 rule depth >= red"));
    assert_true(h_log_contains(&p, "PASS [3] alarm site underpass-2"));
    assert_true(h_log_contains(&p, "PASS [4] no_alarm site underpass-3 >= orange"));
    assert_true(h_log_contains(&p, "PASS [5] no_alarm site high-ground"));
    assert_true(h_log_contains(&p, "PASS [6] no_reading_lost all"));
    assert_true(h_log_contains(&p, "PASS [7] online 23 devices"));
    assert_true(h_log_contains(&p, "summary: 7 passed, 0 failed of 7 expectations"));
    assert_false(h_log_contains(&p, "FAIL ["));
    /* Progress went to the terminal while it ran; CPU of all three at the end. */
    assert_true(h_log_contains(&p, "sim run: t="));
    assert_true(h_log_contains(&p, "gateway  cpu: user"));
    assert_true(h_log_contains(&p, "sim      cpu: user"));

    /* The JSON report: evidence with the alarm id and a latency in bounds. */
    char *text = h_slurp(report);
    assert_non_null(text);
    cJSON *root = cJSON_Parse(text);
    free(text);
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
    cJSON_Delete(root);

    /* The CSV has what was sent and what came back. */
    text = h_slurp(csv);
    assert_non_null(text);
    assert_true(strncmp(text, "t,dir,device,metric,value,quality\n", 34) == 0);
    assert_non_null(strstr(text, ",sent,up-1,water_depth,"));
    assert_non_null(strstr(text, ",recv,up-1,water_depth,"));
    assert_non_null(strstr(text, ",alarm,up-1,water_depth,"));
    free(text);

    /* Everything it started has stopped. */
    assert_true(port_free(broker));
    assert_true(port_free(base));
}

static void test_wrong_expectation_fails(void **st)
{
    /* A copy whose expectations claim underpass-1 stays quiet. */
    char *text = h_slurp(SCENARIO), cwd[400], copy[16384];
    assert_non_null(text);
    assert_non_null(getcwd(cwd, sizeof cwd));
    char *cfg = strstr(text, "config: storm-district.gateway.yaml");
    char *ex = strstr(text, "\nexpect:\n");
    assert_true(cfg && ex && cfg < ex);
    *cfg = 0;
    *ex = 0;
    snprintf(copy, sizeof copy,
             "%sconfig: %s/sim/scenarios/storm-district.gateway.yaml%s\n"
             "expect:\n"
             "  - no_alarm: {site: underpass-1}\n"
             "  - online: {all: true}\n",
             text, cwd, cfg + strlen("config: storm-district.gateway.yaml"));
    free(text);
    const char *path = h_write_file("wrong.yaml", copy);

    int broker = h_free_port(), base = h_free_port_range(NDEVICES);
    assert_true(broker > 0 && base > 0);
    /* up-1 passes 5 cm (blue) near t=67 s: 100 s of scenario time suffice. */
    const char *extra[] = {"--speed", "10", "--duration", "100s", NULL};
    h_proc p = {0};
    int rc = h_sim_run(&p, "run-fail.log", path, broker, base, extra, 60000);
    if (rc != 1)
        h_dump_log(&p);
    assert_int_equal(rc, 1);
    assert_true(h_log_contains(&p, "FAIL [1] no_alarm site underpass-1 (line"));
    assert_true(h_log_contains(&p, "): alarm depth:up-1:"));
    assert_true(h_log_contains(&p, "reached the platform at t="));
    assert_true(h_log_contains(&p, "PASS [2] online 23 devices"));
    assert_true(h_log_contains(&p, "summary: 1 passed, 1 failed of 2 expectations"));
    assert_true(port_free(broker));
}

static void test_setup_error_exits_2(void **st)
{
    int broker = h_free_port(), base = h_free_port_range(NDEVICES);
    assert_true(broker > 0 && base > 0);
    const char *extra[] = {"--gateway", "/nonexistent/gateway", NULL};
    h_proc p = {0};
    int rc = h_sim_run(&p, "run-setup.log", SCENARIO, broker, base, extra, 30000);
    if (rc != 2)
        h_dump_log(&p);
    assert_int_equal(rc, 2);
    assert_true(h_log_contains(&p, "setup error: cannot start the gateway /nonexistent/gateway"));
    assert_false(h_log_contains(&p, "verdict:"));
    assert_true(port_free(broker));
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
    char *log = h_slurp(p.log), *kept = log ? strstr(log, "files kept in /tmp/sim-run.") : NULL;
    if (kept) {
        char dir[128], cmd[160];
        if (sscanf(kept, "files kept in %127s", dir) == 1 && !strncmp(dir, "/tmp/sim-run.", 13)) {
            snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
            if (system(cmd) != 0)
                fprintf(stderr, "could not remove %s\n", dir);
        }
    }
    free(log);
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
        h_proc p = {0};
        int rc =
            h_sim_run(&p, i ? "run-flow-add.log" : "run-flow.log", scen, broker, base, NULL, 30000);
        if (rc != 0)
            h_dump_log(&p);
        assert_int_equal(rc, 0);
        assert_true(h_log_contains(&p, "PASS [1] online"));
    }
}

static int teardown(void **st)
{
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
