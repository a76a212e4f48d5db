/* What the platform receives is what docs/uplink.md and docs/uplink.schema.json
 * say: every JSON example of the document validates against the schema; every
 * message of a `sim run` of the shipped storm-district rehearsal (captured by
 * the sim's platform with --capture) validates too, and carries the new
 * fields (places, texts, thresholds, births, the inventory). The checks are
 * scripts/check-uplink-schema.py with Debian's python3-jsonschema.
 *
 * Device metadata ("birth"), against a real mosquitto: each device's message
 * and the inventory are retained; a SIGHUP that removes a device clears its
 * retained message, a changed device gets a new one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/integration/harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCENARIO "sim/scenarios/storm-district.yaml"
#define NDEVICES 23

static void test_doc_examples_validate(void **st)
{
    char out[4096];
    int rc = h_run("scripts/check-uplink-schema.py --docs docs/uplink.md 2>&1", out, sizeof out);
    fprintf(stderr, "%s", out);
    assert_int_equal(rc, 0);
    /* Each kind of message and item has an example. */
    assert_non_null(strstr(out, " 0 failed"));
    for (const char *k = "alarm\0device\0event\0forecast\0inventory\0reading\0status\0readings\0";
         *k; k += strlen(k) + 1) {
        char want[32];
        snprintf(want, sizeof want, "%s ", k);
        assert_non_null(strstr(out, want));
    }
}

/* The checker itself fails on a message the schema does not allow (an
 * undocumented field, a bad division code), so the test above can fail. */
static void test_checker_refuses_undocumented(void **st)
{
    const char *bad =
        "iot/gw/alarms {\"v\":1,\"id\":\"gw:p:1-1\",\"gw\":\"gw\",\"kind\":\"alarms\",\"items\":[{"
        "\"id\":\"gw-1\",\"seq\":1,\"alarm\":\"a:d:1\",\"rule\":\"a\",\"device\":\"d\",\"metric\":"
        "\"m\",\"state\":\"raised\",\"level\":1,\"level_name\":\"blue\",\"value\":1,\"threshold\":"
        "1,"
        "\"raised\":\"2026-01-01T00:00:00.000Z\",\"at\":\"2026-01-01T00:00:00.000Z\",\"colour\":1}]"
        "}\n"
        "iot/gw/devices/d {\"v\":1,\"kind\":\"device\",\"gw\":\"gw\",\"device\":\"d\",\"site\":{"
        "\"division\":\"44\"},\"metrics\":[],\"at\":\"2026-01-01T00:00:00.000Z\"}\n"
        "iot/gw/readings \n";
    const char *path = h_write_file("bad.txt", bad);
    char cmd[600], out[4096];
    snprintf(cmd, sizeof cmd, "scripts/check-uplink-schema.py --capture %s 2>&1", path);
    int rc = h_run(cmd, out, sizeof out);
    fprintf(stderr, "%s", out);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "3 failed"));
}

static void test_sim_run_messages_validate(void **st)
{
    int broker = h_free_port_range(1), base = h_free_port_range(NDEVICES);
    assert_true(broker > 0 && base > 0);
    char cap[512];
    snprintf(cap, sizeof cap, "%s/capture.txt", h_tmpdir());
    const char *extra[] = {"--speed", "10", "--capture", cap, "--quiet", NULL};
    h_proc p = {0};
    int rc = h_sim_run(&p, "run.log", SCENARIO, broker, base, extra, 90000);
    if (rc != 0)
        h_dump_log(&p);
    assert_int_equal(rc, 0);
    char cmd[1200], out[8192];
    /* Readings messages, not items: polls grouped in slots leave ~30 items to a
     * message (58 messages for the run's few thousand items; 100+ before). */
    snprintf(cmd, sizeof cmd,
             "scripts/check-uplink-schema.py --capture %s --expect device=%d --expect inventory=1 "
             "--expect status=1 --expect readings=20 --expect site@readings=1 "
             "--expect place@events=1 --expect place@alarms=1 --expect text@alarms=1 "
             "--expect thresholds@alarms=1 --expect unit@alarms=1 --expect level_meaning@alarms=1 "
             "2>&1 | tail -20",
             cap, NDEVICES);
    rc = h_run(cmd, out, sizeof out);
    fprintf(stderr, "%s", out);
    assert_non_null(strstr(out, " 0 failed"));
    /* The Chinese text arrived as written (UTF-8 end to end). */
    char *all = h_slurp(cap);
    assert_non_null(all);
    assert_non_null(strstr(all, "\"name\":\"人民路下穿隧道\""));
    assert_non_null(strstr(all, "人民路下穿隧道积水"));
    assert_non_null(strstr(all, "请按内涝应急预案处置"));
    free(all);
}

/* ---- births ---- */

static const char *config(int port, int with_b, const char *a_site)
{
    static char text[2048];
    snprintf(text, sizeof text,
             "gateway: {id: gw-birth, data_dir: %s/data, log_level: info, shutdown_drain: 1s}\n"
             "uplink: {uri: \"tcp://127.0.0.1:%d\", topic_prefix: iot, backoff_min: 100ms, "
             "backoff_max: 500ms}\n"
             "devices:\n"
             "  - {id: dev-a, protocol: synthetic, rate: 2, vendor: 示例, model: M-1,\n"
             "     site: {id: s-a, name: %s, division: \"440511\", address: 汕头市金平区, "
             "location: [116.68, 23.35]}}\n"
             "%s",
             h_tmpdir(), port, a_site,
             with_b ? "  - {id: dev-b, protocol: synthetic, rate: 2, site: {id: s-b}}\n" : "");
    return text;
}

/* The retained metadata on the broker now, as `mosquitto_sub --retained-only`
 * sees it (one "topic payload" a line). */
static void retained(int port, char *out, size_t cap)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd,
             "mosquitto_sub -h 127.0.0.1 -p %d -v --retained-only -W 2 -t 'iot/gw-birth/devices/#' "
             "-t iot/gw-birth/inventory 2>/dev/null",
             port);
    h_run(cmd, out, cap);
}

static int count_of(const char *text, const char *s)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, s)) != NULL; p++)
        n++;
    return n;
}

static int birth_with(void *ctx)
{
    const char *want = ctx;
    for (size_t i = 0; i < h_platform_count(); i++) {
        h_msg m;
        if (h_platform_get(i, &m))
            continue;
        int hit = strstr(m.topic, "/devices/") && strstr(m.payload, want);
        h_msg_free(&m);
        if (hit)
            return 1;
    }
    return 0;
}

static void test_births_retained_and_cleared(void **st)
{
    h_proc broker = {0}, gw = {0};
    int port;
    assert_int_equal(h_peers_start(&broker, &port), 0);
    const char *path = h_write_file("gw.yaml", config(port, 1, "人民路"));
    assert_int_equal(h_gateway_start(&gw, path), 0);
    /* Both devices show their metric: a second birth each, with it. */
    assert_true(h_platform_wait(birth_with, "\"device\":\"dev-b\"", 10000));
    assert_true(h_platform_wait(birth_with, "\"metrics\":[{\"metric\":", 10000));
    char out[8192];
    retained(port, out, sizeof out);
    fprintf(stderr, "retained:\n%s", out);
    assert_int_equal(count_of(out, "iot/gw-birth/devices/dev-a {"), 1);
    assert_int_equal(count_of(out, "iot/gw-birth/devices/dev-b {"), 1);
    assert_int_equal(count_of(out, "iot/gw-birth/inventory {"), 1);
    assert_non_null(
        strstr(out, "\"site\":{\"id\":\"s-a\",\"name\":\"人民路\",\"division\":\"440511\""));
    assert_non_null(strstr(out, "\"vendor\":\"示例\",\"model\":\"M-1\""));

    /* SIGHUP: dev-b removed, dev-a's site renamed. */
    h_write_file("gw.yaml", config(port, 0, "解放路"));
    assert_int_equal(h_signal(&gw, SIGHUP), 0);
    assert_true(h_log_wait(&gw, "SIGHUP: configuration reloaded", 10000));
    assert_true(h_platform_wait(birth_with, "\"name\":\"解放路\"", 10000));
    /* The clear (an empty retained message) is on its way with the new birth. */
    int cleared = 0;
    for (int tries = 0; tries < 10 && !cleared; tries++) {
        retained(port, out, sizeof out);
        cleared = !strstr(out, "devices/dev-b");
    }
    fprintf(stderr, "retained after SIGHUP:\n%s", out);
    assert_true(cleared);
    assert_non_null(strstr(out, "\"name\":\"解放路\""));
    assert_non_null(strstr(out, "\"count\":1,"));
    assert_int_equal(h_peers_stop(&gw, NULL, &broker), 0);
}

static int teardown(void **st)
{
    h_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_doc_examples_validate, teardown),
        cmocka_unit_test_teardown(test_checker_refuses_undocumented, teardown),
        cmocka_unit_test_teardown(test_births_retained_and_cleared, teardown),
        cmocka_unit_test_teardown(test_sim_run_messages_validate, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
