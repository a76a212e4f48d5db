/* A small fire scenario end to end: build/sim plays NB-100 smoke detectors
 * (coap-smoke, its own encoder) -> build/gateway's CoAP listener and the
 * smoke-nb100 adapter -> mosquitto -> the platform subscriber. Plain CoAP:
 * a fire alarm then its clearing, a low battery (never a fire), a tamper, a
 * self-test, a detector that goes silent and must go offline after its
 * heartbeat timeout. DTLS-PSK: a detector with the right key is heard, one
 * whose key the gateway does not share never is. At the end the sim's stats
 * say every plain frame was answered 2.04 (the gateway decoded all of them). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/integration/harness.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SPEED "2"               /* scenario time runs twice as fast as wall time */
#define IMEI_PLAIN "8691230000" /* + n on 5 digits */
#define IMEI_DTLS "8691230001"

static struct env {
    int broker_port, coap_port, dtls_port;
    int64_t t_start_ms; /* wall time when the sim started */
    char stats[512];
    h_proc broker, gw, sim;
} E;

/* ---- the platform's view ---- */

static const char *sval(const cJSON *it, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItem(it, key));
}

/* Index (arrival order) of the first event of dev/kind at or after from,
 * with active as given (-1 any) and detail containing detail_has (NULL any),
 * or -1. */
static int ev_index(const char *dev, const char *kind, int active, const char *detail_has, int from)
{
    cJSON *items = h_platform_items("/events"), *it;
    int i = 0, hit = -1;
    cJSON_ArrayForEach(it, items)
    {
        const char *d = sval(it, "device"), *k = sval(it, "event"), *det = sval(it, "detail");
        int act = cJSON_IsTrue(cJSON_GetObjectItem(it, "active"));
        if (i >= from && d && k && !strcmp(d, dev) && !strcmp(k, kind) &&
            (active < 0 || act == active) && (!detail_has || (det && strstr(det, detail_has)))) {
            hit = i;
            break;
        }
        i++;
    }
    cJSON_Delete(items);
    return hit;
}

static int ev_count(const char *dev, const char *kind)
{
    int n = 0;
    for (int i = ev_index(dev, kind, -1, NULL, 0); i >= 0; i = ev_index(dev, kind, -1, NULL, i + 1))
        n++;
    return n;
}

struct want {
    const char *dev, *kind;
    int active;
    const char *detail_has;
    int min_count; /* 0 = 1 */
};

static int has_event(void *ctx)
{
    const struct want *w = ctx;
    if (w->min_count > 1)
        return ev_count(w->dev, w->kind) >= w->min_count;
    return ev_index(w->dev, w->kind, w->active, w->detail_has, 0) >= 0;
}

static void wait_event(const char *dev, const char *kind, int active, const char *detail_has,
                       int timeout_ms)
{
    struct want w = {dev, kind, active, detail_has, 0};
    if (!h_platform_wait(has_event, &w, timeout_ms))
        fail_msg("event %s %s (active %d) did not arrive", dev, kind, active);
}

/* The first reading of dev/metric, duplicated (caller deletes), or NULL. */
static cJSON *find_reading(const char *dev, const char *metric, double value)
{
    cJSON *items = h_platform_items("/readings"), *it, *hit = NULL;
    cJSON_ArrayForEach(it, items)
    {
        const char *d = sval(it, "device"), *m = sval(it, "metric");
        double v = cJSON_GetNumberValue(cJSON_GetObjectItem(it, "value"));
        if (d && m && !strcmp(d, dev) && !strcmp(m, metric) && fabs(v - value) < 1e-6) {
            hit = cJSON_Duplicate(it, 1);
            break;
        }
    }
    cJSON_Delete(items);
    return hit;
}

struct wantr {
    const char *dev, *metric;
    double value;
};

static int has_reading(void *ctx)
{
    const struct wantr *w = ctx;
    cJSON *r = find_reading(w->dev, w->metric, w->value);
    cJSON_Delete(r);
    return r != NULL;
}

/* "2025-06-01T12:00:00.000Z" -> ms since 1970, or -1. */
static int64_t iso_ms(const char *s)
{
    struct tm tm;
    int ms;
    memset(&tm, 0, sizeof tm);
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                     &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

/* ---- setup ---- */

static void psk_hex(const char *key, char *out, size_t cap)
{
    out[0] = '\0';
    for (size_t i = 0; key[i] && 2 * i + 3 <= cap; i++)
        snprintf(out + 2 * i, 3, "%02x", (unsigned char)key[i]);
}

static const char *write_gateway_config(void)
{
    char text[8192], k1[128], k2[128];
    int n =
        snprintf(text, sizeof text,
                 "gateway:\n  id: gw-fire\n  data_dir: %s/data\n  log_level: info\n"
                 "  shutdown_drain: 1s\n"
                 "store:\n  commit_window: 2ms\n"
                 "uplink:\n  uri: tcp://127.0.0.1:%d\n  topic_prefix: t\n"
                 "  backoff_min: 100ms\n  backoff_max: 500ms\n"
                 "listeners:\n  - {protocol: coap, listen: 127.0.0.1, port: %d, dtls_port: %d}\n"
                 "devices:\n",
                 h_tmpdir(), E.broker_port, E.coap_port, E.dtls_port);
    /* The detectors send a heartbeat every 1 s of wall time; 2 s x 2 missed = offline. */
    for (int i = 1; i <= 5; i++)
        n += snprintf(text + n, sizeof text - (size_t)n,
                      "  - {id: smk-%03d, type: smoke_detector, protocol: coap, "
                      "address: \"" IMEI_PLAIN "%05d\", adapter: smoke-nb100, heartbeat: 2s, "
                      "offline_after: 2}\n",
                      i, i);
    psk_hex(IMEI_DTLS "00001-secret", k1, sizeof k1); /* the key the sim uses */
    psk_hex("not-the-detectors-key", k2, sizeof k2);
    snprintf(text + n, sizeof text - (size_t)n,
             "  - {id: dtls-1, type: smoke_detector, protocol: coap, address: \"" IMEI_DTLS
             "00001\",\n     adapter: smoke-nb100, psk: \"%s\"}\n"
             "  - {id: dtls-2, type: smoke_detector, protocol: coap, address: \"" IMEI_DTLS
             "00002\",\n     adapter: smoke-nb100, psk: \"%s\"}\n",
             k1, k2);
    return h_write_file("gateway.yaml", text);
}

/* Scenario times are doubled by --speed 2: a 2 s heartbeat is 1 s of wall time. */
static const char *write_scenario(void)
{
    char text[4096];
    snprintf(text, sizeof text,
             "name: itest fire\n"
             "devices:\n"
             "  - id: smk-{n:03}\n"
             "    count: 5\n"
             "    protocol: coap-smoke\n"
             "    host: 127.0.0.1\n"
             "    port: %d\n"
             "    imei: \"" IMEI_PLAIN "{n:05}\"\n"
             "    heartbeat: 2s\n"
             "    spread: 1s\n"
             "    ack_timeout: 1s\n"
             "    max_retransmit: 2\n"
             "    events:\n"
             "      - {at: 4s, device: 1, kind: fire_alarm}\n"
             "      - {at: 10s, device: 1, kind: alarm_cleared}\n"
             "      - {at: 4s, device: 2, kind: battery_low}\n"
             "      - {at: 4s, device: 3, kind: tamper}\n"
             "      - {at: 4s, device: 4, kind: silent}\n"
             "      - {at: 4s, device: 5, kind: self_test}\n"
             "  - id: dtls-{n}\n"
             "    count: 2\n"
             "    protocol: coap-smoke\n"
             "    host: 127.0.0.1\n"
             "    port: %d\n"
             "    imei: \"" IMEI_DTLS "{n:05}\"\n"
             "    dtls: true\n"
             "    psk: \"{imei}-secret\"\n"
             "    heartbeat: 2s\n"
             "    ack_timeout: 1s\n",
             E.coap_port, E.dtls_port);
    return h_write_file("fire.yaml", text);
}

static int sim_start(h_proc *p, const char *scenario)
{
    char *argv[] = {(char *)h_bin("sim"),
                    "modbus",
                    "--scenario",
                    (char *)scenario,
                    "--speed",
                    SPEED,
                    "--stats",
                    E.stats,
                    NULL};
    if (h_spawn(p, "sim.log", argv))
        return -1;
    return h_log_wait(p, "sim: ready", 15000) ? 0 : -1;
}

static int group_setup(void **state)
{
    h_tmpdir();
    E.coap_port = h_free_port();
    E.dtls_port = h_free_port();
    snprintf(E.stats, sizeof E.stats, "%s/sim-stats.json", h_tmpdir());
    if (h_peers_start(&E.broker, &E.broker_port))
        return -1;
    if (h_gateway_start(&E.gw, write_gateway_config()))
        return -1;
    E.t_start_ms = h_now_ms();
    return sim_start(&E.sim, write_scenario());
}

static int group_teardown(void **state)
{
    /* A clean exit: no handle left open, no leak under ASan. */
    return h_peers_stop(&E.gw, &E.sim, &E.broker) == 0 ? 0 : -1;
}

/* ---- tests (in order: each waits only for what it needs) ---- */

static void test_fire_alarm_then_cleared(void **st)
{
    wait_event("smk-001", "fire_alarm", 1, NULL, 15000);
    wait_event("smk-001", "fire_alarm", 0, "cleared", 15000);
    int on = ev_index("smk-001", "fire_alarm", 1, NULL, 0);
    int off = ev_index("smk-001", "fire_alarm", 0, "cleared", 0);
    assert_true(on >= 0 && on < off);
    /* While the alarm was on the frames carried the fire values: 22 + 30 degC. */
    struct wantr hot = {"smk-001", "temperature", 52};
    assert_true(h_platform_wait(has_reading, &hot, 5000));
    struct wantr smoke = {"smk-001", "smoke_density", 0.25};
    assert_true(h_platform_wait(has_reading, &smoke, 5000));
    /* No other detector raised a fire alarm. */
    for (int i = 2; i <= 5; i++) {
        char dev[16];
        snprintf(dev, sizeof dev, "smk-%03d", i);
        assert_int_equal(ev_index(dev, "fire_alarm", -1, NULL, 0), -1);
    }
}

static void test_battery_low_is_never_fire(void **st)
{
    wait_event("smk-002", "battery_low", 1, NULL, 15000);
    struct wantr v = {"smk-002", "battery_voltage", 2.6};
    assert_true(h_platform_wait(has_reading, &v, 5000));
    /* Its heartbeats after the event keep the bit; still no fire. */
    struct want more = {"smk-002", "battery_low", 1, NULL, 3};
    assert_true(h_platform_wait(has_event, &more, 15000));
    assert_int_equal(ev_index("smk-002", "fire_alarm", -1, NULL, 0), -1);
}

static void test_tamper_and_self_test(void **st)
{
    wait_event("smk-003", "tamper", 1, NULL, 15000);
    assert_int_equal(ev_index("smk-002", "tamper", -1, NULL, 0), -1);
    assert_int_equal(ev_index("smk-001", "tamper", -1, NULL, 0), -1);
    wait_event("smk-005", "self_test", 1, "pass", 15000); /* message type 03 */
    assert_int_equal(ev_index("smk-003", "self_test", -1, NULL, 0), -1);
}

static void test_heartbeats_and_obs_time(void **st)
{
    struct want hb = {"smk-005", "heartbeat", 1, NULL, 3};
    assert_true(h_platform_wait(has_event, &hb, 15000));
    /* The observation time is the detector's (scenario clock as Unix time,
     * whole seconds), not the gateway's: it runs ahead of wall time at
     * speed 2 but never before the start. */
    cJSON *items = h_platform_items("/events"), *it;
    int checked = 0;
    int64_t now = h_now_ms();
    cJSON_ArrayForEach(it, items)
    {
        const char *d = sval(it, "device"), *k = sval(it, "event");
        if (!d || !k || strcmp(d, "smk-005") || strcmp(k, "heartbeat"))
            continue;
        int64_t obs = iso_ms(sval(it, "obs"));
        assert_true(obs >= 0);
        assert_int_equal(obs % 1000, 0);
        assert_true(obs >= E.t_start_ms - 2000);
        assert_true(obs <= E.t_start_ms + 2 * (now - E.t_start_ms) + 2000);
        checked++;
    }
    cJSON_Delete(items);
    assert_true(checked >= 3);
}

static void test_silent_goes_offline(void **st)
{
    wait_event("smk-004", "offline", 1, NULL, 20000);
    int online = ev_index("smk-004", "online", -1, NULL, 0);
    int hb = ev_index("smk-004", "heartbeat", -1, NULL, 0);
    assert_true(online >= 0 && hb >= 0);
    int offline = ev_index("smk-004", "offline", -1, NULL, online);
    assert_true(offline > online);
    /* Nothing more from it after that. */
    assert_int_equal(ev_index("smk-004", "heartbeat", -1, NULL, offline), -1);
    /* The detectors that keep talking never went offline once heard. */
    for (int i = 1; i <= 5; i++) {
        char dev[16];
        snprintf(dev, sizeof dev, "smk-%03d", i);
        if (i == 4)
            continue;
        int on = ev_index(dev, "online", -1, NULL, 0);
        assert_true(on >= 0);
        assert_int_equal(ev_index(dev, "offline", -1, NULL, on), -1);
    }
}

static void test_dtls_right_key_heard_wrong_key_refused(void **st)
{
    struct want hb = {"dtls-1", "heartbeat", 1, NULL, 3};
    assert_true(h_platform_wait(has_event, &hb, 20000));
    wait_event("dtls-1", "online", -1, NULL, 1000);
    /* By now dtls-2 has tried for as long: never heard. */
    assert_int_equal(ev_index("dtls-2", "online", -1, NULL, 0), -1);
    assert_int_equal(ev_index("dtls-2", "heartbeat", -1, NULL, 0), -1);
    cJSON *r = find_reading("dtls-2", "battery_voltage", 3.0);
    assert_null(r);
}

static cJSON *stats_dev(cJSON *root, const char *id)
{
    cJSON *d;
    cJSON_ArrayForEach(d, cJSON_GetObjectItem(root, "devices"))
    {
        const char *s = sval(d, "id");
        if (s && !strcmp(s, id))
            return d;
    }
    return NULL;
}

static double num(const cJSON *o, const char *key)
{
    return cJSON_GetNumberValue(cJSON_GetObjectItem(o, key));
}

/* The sim's side: every plain frame answered was answered 2.04 (a frame the adapter
 * could not decode would have been 4.00), the silent detector skipped its
 * heartbeats, dtls-2 never finished a handshake. */
static void test_sim_stats(void **st)
{
    assert_int_equal(h_signal(&E.sim, SIGTERM), 0);
    assert_int_equal(h_wait(&E.sim, 10000), 0);
    FILE *f = fopen(E.stats, "r");
    assert_non_null(f);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    cJSON *root = cJSON_Parse(buf);
    assert_non_null(root);
    for (int i = 1; i <= 5; i++) {
        char dev[16];
        snprintf(dev, sizeof dev, "smk-%03d", i);
        cJSON *d = stats_dev(root, dev);
        assert_non_null(d);
        cJSON *codes = cJSON_GetObjectItem(d, "responses");
        double ok = num(codes, "2.04");
        /* The last frame or two may still have been in flight at SIGTERM. */
        if (cJSON_GetArraySize(codes) != 1 || !(ok >= 2) || ok < num(d, "requests") - 2)
            fail_msg("%s: %.0f requests, %.0f answered 2.04, %d response codes", dev,
                     num(d, "requests"), ok, cJSON_GetArraySize(codes));
    }
    assert_true(num(stats_dev(root, "smk-004"), "skipped_silent") >= 1);
    assert_true(num(stats_dev(root, "smk-001"), "events") >= 2);
    cJSON *d1 = stats_dev(root, "dtls-1"), *d2 = stats_dev(root, "dtls-2");
    assert_true(num(d1, "dtls_connected") >= 1);
    assert_true(num(cJSON_GetObjectItem(d1, "responses"), "2.04") >= 3);
    assert_true(num(d2, "dtls_connected") == 0);
    assert_true(num(d2, "answered") == 0);
    cJSON_Delete(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fire_alarm_then_cleared),
        cmocka_unit_test(test_battery_low_is_never_fire),
        cmocka_unit_test(test_tamper_and_self_test),
        cmocka_unit_test(test_heartbeats_and_obs_time),
        cmocka_unit_test(test_silent_goes_offline),
        cmocka_unit_test(test_dtls_right_key_heard_wrong_key_refused),
        cmocka_unit_test(test_sim_stats),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
