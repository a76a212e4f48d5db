/* Smart manhole covers end to end: the shipped rehearsal
 * sim/scenarios/manhole-covers.yaml (15 MC-200 cover sensors played by
 * build/sim from its own encoder, posting CoAP to the real gateway, whose
 * cover-mc200 adapter decodes them, its rules judging them, a private
 * mosquitto carrying the uplink to the sim's platform subscriber) at speed 10
 * on free ports. Every expectation passes: the lifted road cover is a red
 * alarm within 5 s and its closing ends the event, the tilted footway cover
 * is yellow and never the road's red, the rising water raises the gateway's
 * yellow threshold and then the sensor's overflow warning (orange), the weak
 * battery, the silent cover going offline, nothing at the quiet ones. The
 * gateway refused exactly one frame (mc-12's bad CRC) and knew every cover.
 * The run's `--html` page, opened in headless Chromium (--dump-dom, and a
 * screenshot kept as build/sim-run-covers.png), shows the verdict, every
 * expectation with its evidence, the alarm markers on the timeline, the
 * thresholds the gateway reported and the latency histogram, and loads
 * nothing from elsewhere. A copy expecting an open cover at a quiet one and
 * no tilt at the tilted one fails both with evidence. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/integration/harness.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SCENARIO "sim/scenarios/manhole-covers.yaml"

/* The page as a browser sees it. */
static void check_html(const char *html)
{
    char *page = h_slurp(html);
    assert_non_null(page);
    /* Self-contained: nothing fetched from elsewhere. */
    assert_null(strstr(page, "http://"));
    assert_null(strstr(page, "https://"));
    assert_null(strstr(page, " src="));
    assert_null(strstr(page, "<link"));
    free(page);
    const char *b = getenv("BUILD") ? getenv("BUILD") : "build";
    const char *flags = "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
                        "--disable-background-networking --disable-component-update --disable-sync "
                        "--disable-dev-shm-usage --virtual-time-budget=3000";
    char cmd[2048], shot[600];
    snprintf(cmd, sizeof cmd,
             "timeout 60 chromium %s --user-data-dir=%s/chrome1 --dump-dom file://%s 2>/dev/null",
             flags, h_tmpdir(), html);
    static char dom[1 << 20];
    int rc = h_run(cmd, dom, sizeof dom);
    if (rc != 0 || !strstr(dom, "data-rendered=\"1\""))
        fail_msg("chromium (exit %d) did not render the page: %.2000s", rc, dom);
    /* The verdict, and the tally the page's script counted from the rows. */
    assert_non_null(strstr(dom, "id=\"verdict\">PASS<"));
    assert_non_null(strstr(dom, "15 of 15 expectations passed"));
    /* Every expectation with its result and evidence. */
    for (int i = 1; i <= 15; i++) {
        char want[64];
        snprintf(want, sizeof want, "<tr class=\"exp pass\" id=\"exp-%d\">", i);
        if (!strstr(dom, want))
            fail_msg("no passing row %d", i);
    }
    assert_non_null(strstr(dom, "alarm cover_open_road:mc-13:"));
    /* The timeline: the lifted cover's red alarm marked, its threshold-less
     * event dots, the low point's water level with the gateway's yellow 1.2 m. */
    assert_non_null(strstr(dom, "data-device=\"mc-13\""));
    assert_non_null(strstr(dom, "class=\"alarm-marker lv-4\""));
    assert_non_null(strstr(dom, "class=\"event-marker\""));
    assert_non_null(strstr(dom, "data-metric=\"water_level\""));
    assert_non_null(strstr(dom, ">yellow 1.2<"));
    /* The latency distribution. */
    assert_non_null(strstr(dom, "id=\"latency-stats\""));
    assert_non_null(strstr(dom, "class=\"bin\""));
    snprintf(shot, sizeof shot, "%s/sim-run-covers.png", b);
    snprintf(cmd, sizeof cmd,
             "timeout 60 chromium %s --user-data-dir=%s/chrome2 --window-size=1000,2400 "
             "--screenshot=%s file://%s >/dev/null 2>&1",
             flags, h_tmpdir(), shot, html);
    char out[256];
    assert_int_equal(h_run(cmd, out, sizeof out), 0);
    assert_int_equal(access(shot, R_OK), 0);
}

static void test_covers_pass(void **st)
{
    /* The broker's port (TCP) and, next to it, the gateway's CoAP listener (UDP). */
    int broker = h_free_port_range(2), coap = broker + 1;
    assert_true(broker > 0);
    char html[512];
    snprintf(html, sizeof html, "%s/covers.html", h_tmpdir());
    const char *extra[] = {"--html", html, NULL};
    h_rehearsal r = {.scenario = SCENARIO,
                     .broker = broker,
                     .base = coap,
                     .extra = extra,
                     .report = 1,
                     .keep = 1,
                     .timeout_ms = 60000};
    h_proc *p = &r.p;
    assert_int_equal(h_rehearse(&r, "covers.log", 0), 0);
    static const char *const lines[] = {
        "PASS [1] online 15 devices",
        "PASS [2] no_reading_lost all",
        "PASS [3] event site lifted cover_open within 5s of t=30s",
        "event cover_open from mc-13",
        "PASS [4] alarm site lifted rule cover_open_road >= red",
        "alarm cover_open_road:mc-13:",
        "PASS [5] event site lifted cover_open ended",
        "PASS [6] event site parked-on cover_tilt",
        "PASS [7] alarm site parked-on rule cover_tilt >= yellow",
        "PASS [8] no_alarm site parked-on rule cover_open_road",
        "PASS [9] alarm site low-point rule well_water >= yellow",
        "PASS [10] event site low-point water_overflow",
        "PASS [11] alarm site low-point rule cover_overflow >= orange",
        "PASS [12] event site weak-cell battery_low",
        "PASS [13] event site gone-quiet offline",
        "PASS [14] no_event site quiet cover_open",
        "PASS [15] no_alarm site quiet",
        "summary: 15 passed, 0 failed of 15 expectations",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        if (!h_log_contains(p, lines[i])) {
            h_dump_log(p);
            fail_msg("missing: %s", lines[i]);
        }

    /* The progress lines count alarms of every level (the tilt is yellow,
     * the battery blue). */
    assert_true(h_log_contains(p, "| expectations "));
    assert_true(h_log_contains(p, "orange 1, yellow 2, blue 1) | expectations"));

    /* The gateway's side: one malformed frame (the bad CRC), no unknown cover. */
    const char *glog = r.gwlog;
    assert_non_null(glog);
    long long req = h_last_count(glog, "[coap] stopping:", "requests ");
    long long bad = h_last_count(glog, "[coap] stopping:", "malformed ");
    long long unknown = h_last_count(glog, "[coap] stopping:", "unknown ");
    fprintf(stderr, "covers: coap requests %lld malformed %lld unknown %lld\n", req, bad, unknown);
    assert_true(req > 100);
    assert_int_equal(bad, 1);
    assert_int_equal(unknown, 0);

    /* The readings the adapter makes of a frame reached the platform. */
    assert_non_null(r.json);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(r.json, "passed")));
    h_rehearsal_free(&r);
    check_html(html);
}

static void test_wrong_expectations_fail(void **st)
{
    const char *path = h_scenario_expecting(
        SCENARIO, "wrong.yaml",
        "  - event: {device: mc-02, event: cover_open, of: 30s, within: 10s}\n"
        "  - no_event: {site: parked-on, event: cover_tilt}\n"
        "  - alarm: {site: lifted, rule: cover_open_road, level: red, of: 30s, within: 5s}\n");
    assert_non_null(path);
    /* The broker's port (TCP) and, next to it, the gateway's CoAP listener (UDP). */
    int broker = h_free_port_range(2), coap = broker + 1;
    assert_true(broker > 0);
    char html[512];
    snprintf(html, sizeof html, "%s/wrong.html", h_tmpdir());
    const char *extra[] = {"--duration", "50s", "--html", html, NULL};
    h_rehearsal r = {
        .scenario = path, .broker = broker, .base = coap, .extra = extra, .timeout_ms = 40000};
    h_proc *p = &r.p;
    assert_int_equal(h_rehearse(&r, "covers-fail.log", 1), 1);
    assert_true(h_log_contains(p, "FAIL [1] event mc-02 cover_open within 10s of t=30s"));
    assert_true(h_log_contains(p, "FAIL [2] no_event site parked-on cover_tilt"));
    assert_true(h_log_contains(p, "event cover_tilt from mc-14 (seq "));
    assert_true(h_log_contains(p, "PASS [3] alarm site lifted rule cover_open_road >= red"));
    assert_true(h_log_contains(p, "summary: 1 passed, 2 failed of 3 expectations"));
    char *page = h_slurp(html);
    assert_non_null(page);
    assert_non_null(strstr(page, "id=\"verdict\">FAIL<"));
    assert_non_null(strstr(page, "<tr class=\"exp fail\" id=\"exp-1\">"));
    assert_non_null(strstr(page, "<tr class=\"exp fail\" id=\"exp-2\">"));
    assert_non_null(strstr(page, "<tr class=\"exp pass\" id=\"exp-3\">"));
    free(page);
}

/* The same sensors over DTLS-PSK: the sim's covers (identity = IMEI, key
 * "<IMEI>-secret") post to the gateway's coaps listener, which holds each
 * cover's key in hex; the open cover's event and red alarm arrive. The covers
 * keep silent until the gateway listens (t=40s = 4 s wall): a sim DTLS
 * session whose handshake meets an ICMP "port unreachable" (or a wrong key)
 * trips a use-after-free inside libcoap 4.3.1's debug logging under ASan,
 * coap-smoke alike; noted in the issue, not fixed here. */
static void test_covers_dtls(void **st)
{
    int base = h_free_port_range(3);
    assert_true(base > 0);
    int broker = base, dtls = base + 1, plain = base + 2;
    char gw[4096], scn[4096], key[64];
    int n = snprintf(gw, sizeof gw,
                     "gateway: {id: gw-dtls, data_dir: /tmp/unused, log_level: info}\n"
                     "uplink: {uri: 'tcp://127.0.0.1:%d', topic_prefix: city}\n"
                     "listeners:\n"
                     "  - {protocol: coap, listen: 127.0.0.1, port: %d, dtls_port: %d}\n"
                     "devices:\n",
                     broker, plain, dtls);
    for (int i = 1; i <= 2; i++) {
        char imei[16], text[32];
        snprintf(imei, sizeof imei, "86912500000000%d", i);
        snprintf(text, sizeof text, "%s-secret", imei);
        for (size_t k = 0; k < strlen(text); k++)
            snprintf(key + 2 * k, 3, "%02x", (unsigned char)text[k]);
        n += snprintf(gw + n, sizeof gw - (size_t)n,
                      "  - {id: mcs-%d, type: manhole_cover, protocol: coap, address: '%s', "
                      "adapter: cover-mc200, psk: '%s', groups: [road]}\n",
                      i, imei, key);
    }
    snprintf(gw + n, sizeof gw - (size_t)n,
             "rules:\n"
             "  - {id: open, kind: event, groups: [road], event: cover_open, level: red}\n");
    const char *gw_path = h_write_file("dtls.gateway.yaml", gw);
    snprintf(scn, sizeof scn,
             "name: covers over DTLS\n"
             "devices:\n"
             "  - id: mcs-{n}\n"
             "    count: 2\n"
             "    protocol: coap-cover\n"
             "    host: 127.0.0.1\n"
             "    port: %d\n"
             "    imei: \"86912500000000{n}\"\n"
             "    dtls: true\n"
             "    psk: \"{imei}-secret\"\n"
             "    heartbeat: 60s\n"
             "    report: 10s\n"
             "    spread: 2s\n"
             "    open: {type: points, points: [[0, 0], [50, 0], [50, 1]]}\n"
             "    events: [{at: 0s, kind: silent}, {at: 40s, kind: resume}]\n"
             "platform: {broker: 'tcp://127.0.0.1:%d', topic_prefix: city, gateway_id: gw-dtls}\n"
             "broker: {start: true}\n"
             "gateway: {config: %s}\n"
             "duration: 70s\n"
             "speed: 10\n"
             "expect:\n"
             "  - event: {device: mcs-1, event: cover_open, of: 50s, within: 5s}\n"
             "  - alarm: {device: mcs-2, rule: open, level: red, of: 50s, within: 5s}\n"
             "  - online: {all: true}\n",
             dtls, broker, gw_path);
    const char *scn_path = h_write_file("dtls.yaml", scn);
    h_rehearsal r = {.scenario = scn_path, .broker = broker, .base = dtls, .timeout_ms = 40000};
    h_proc *p = &r.p;
    assert_int_equal(h_rehearse(&r, "covers-dtls.log", 0), 0);
    assert_true(h_log_contains(p, "PASS [1] event mcs-1 cover_open within 5s of t=50s"));
    assert_true(h_log_contains(p, "PASS [2] alarm mcs-2 rule open >= red within 5s of t=50s"));
    assert_true(h_log_contains(p, "summary: 3 passed, 0 failed of 3 expectations"));
}

/* `sim check SCENARIO` prints the plan without running anything: every
 * group with where it sends, the rehearsal's processes (the gateway beside
 * build/sim, its config beside the scenario) and each expectation; with
 * --base-port the devices' port moved. */
static void test_check_plan(void **st)
{
    static char out[1 << 16];
    char cmd[600];
    snprintf(cmd, sizeof cmd, "%s check %s --base-port 40100 2>&1", h_bin("sim"), SCENARIO);
    assert_int_equal(h_run(cmd, out, sizeof out), 0);
    static const char *const want[] = {
        "scenario: manhole covers on Jiefang Road (" SCENARIO "), 15 devices in 4 groups",
        "mc-01..mc-12 coap-cover x12 (line ",
        "post to the gateway coap://127.0.0.1:40100/19/0/0",
        "rehearsal: platform tcp://127.0.0.1:35883 topic city/gw-jiefang/#; broker started by sim "
        "run; gateway ",
        "/gateway -c sim/scenarios/manhole-covers.gateway.yaml",
        "duration 120s scenario time at speed 10 (12.0s wall)",
        "expectations: 15",
        "[4] alarm site lifted rule cover_open_road >= red within 5s of t=30s (line ",
        "[15] no_alarm site quiet (line ",
        "ok: manhole covers on Jiefang Road, 15 devices",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(out, want[i]))
            fail_msg("sim check: no '%s' in:\n%s", want[i], out);
    assert_null(strstr(out, ":35783"));
    /* The gateway is the one beside the sim binary, not a path from the cwd. */
    char real[PATH_MAX], gw[PATH_MAX + 16];
    assert_non_null(realpath(h_bin("gateway"), real));
    snprintf(gw, sizeof gw, "gateway %s -c", real);
    if (!strstr(out, gw))
        fail_msg("sim check: no '%s' in:\n%s", gw, out);
}

static int teardown(void **st)
{
    h_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_covers_pass, teardown),
        cmocka_unit_test_teardown(test_wrong_expectations_fail, teardown),
        cmocka_unit_test_teardown(test_check_plan, teardown),
        cmocka_unit_test_teardown(test_covers_dtls, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
