/* CoAP devices end to end: the real coap-client-notls / coap-client-openssl
 * (libcoap3-bin) -> build/gateway -> mosquitto -> platform subscriber, on
 * loopback. A JSON reading, every NB-100 smoke event through /19/0/0, unknown
 * devices, malformed payloads, DTLS-PSK with the right and wrong keys, and the
 * acknowledgement only after the outbox commit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/integration/harness.h"

#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define IMEI1 "861234567890123"
#define IMEI2 "861234567890124"
#define KEY2 "smoke2-secret-key" /* hex in the config, text for coap-client -k */

static struct env {
    int broker_port, coap_port, dtls_port;
    h_proc broker, gw;
} E;

/* ---- NB-100 frames, built here (the test does not link the gateway) ---- */

static uint16_t crc16(const uint8_t *p, size_t n)
{
    uint16_t c = 0xFFFF;
    while (n--) {
        c ^= (uint16_t)(*p++ << 8);
        for (int i = 0; i < 8; i++)
            c = (c & 0x8000) ? (uint16_t)((c << 1) ^ 0x1021) : (uint16_t)(c << 1);
    }
    return c;
}

static const char *frame_file(const char *imei, uint16_t events, uint16_t seq)
{
    uint8_t b[30] = {0xA5, 0x5A, 0x01, 24};
    for (int i = 0; i < 8; i++)
        b[4 + i] = (uint8_t)(((imei[2 * i] - '0') << 4) | (i < 7 ? imei[2 * i + 1] - '0' : 0xF));
    b[12] = 2;
    b[13] = (uint8_t)(seq >> 8);
    b[14] = (uint8_t)seq;
    b[19] = (uint8_t)(events >> 8);
    b[20] = (uint8_t)events;
    b[21] = 0x0B; /* 2.95 V */
    b[22] = 0x86;
    b[23] = 0x00; /* 0.12 dB/m */
    b[24] = 0x0C;
    b[25] = 0x00;
    b[26] = 0xD7; /* 21.5 C */
    b[27] = 0xB0; /* -80 dBm */
    uint16_t c = crc16(b, 28);
    b[28] = (uint8_t)(c >> 8);
    b[29] = (uint8_t)c;
    static char path[512];
    snprintf(path, sizeof(path), "%s/frame-%u.bin", h_tmpdir(), seq);
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, sizeof(b), f);
    fclose(f);
    return path;
}

/* Runs coap-client (bounded by -B) and returns the code of the answer it got
 * ("2.04", "4.04", ...) or "none". */
static const char *coap(const char *tool, const char *args)
{
    static char code[8];
    char cmd[2048], line[1024];
    snprintf(cmd, sizeof(cmd), "%s -B 4 -v 7 %s 2>&1", tool, args);
    FILE *p = popen(cmd, "r");
    snprintf(code, sizeof(code), "none");
    if (!p)
        return code;
    while (fgets(line, sizeof(line), p)) {
        const char *at = strstr(line, "t:ACK c:");
        if (!at)
            at = strstr(line, "t:NON c:");
        if (at && at[8] >= '2' && at[8] <= '5')
            snprintf(code, sizeof(code), "%.4s", at + 8);
    }
    pclose(p);
    return code;
}

__attribute__((format(printf, 1, 0))) static const char *
post_frame(const char *uri_fmt, const char *imei, uint16_t ev, uint16_t seq)
{
    char args[1024], uri[256];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    snprintf(uri, sizeof(uri), uri_fmt, E.coap_port, imei);
#pragma GCC diagnostic pop
    snprintf(args, sizeof(args), "-m post -f %s '%s'", frame_file(imei, ev, seq), uri);
    return coap("coap-client-notls", args);
}

/* ---- what the platform saw ---- */

struct want {
    const char *device, *event, *detail_has;
    int active; /* -1 any */
};

static cJSON *find_event(const struct want *w)
{
    cJSON *items = h_platform_items("/events"), *it, *hit = NULL;
    cJSON_ArrayForEach(it, items)
    {
        const char *d = cJSON_GetStringValue(cJSON_GetObjectItem(it, "device"));
        const char *k = cJSON_GetStringValue(cJSON_GetObjectItem(it, "event"));
        const char *det = cJSON_GetStringValue(cJSON_GetObjectItem(it, "detail"));
        int act = cJSON_IsTrue(cJSON_GetObjectItem(it, "active"));
        if (d && k && !strcmp(d, w->device) && !strcmp(k, w->event) &&
            (w->active < 0 || act == w->active) &&
            (!w->detail_has || (det && strstr(det, w->detail_has)))) {
            hit = cJSON_Duplicate(it, 1);
            break;
        }
    }
    cJSON_Delete(items);
    return hit;
}

static int has_event(void *ctx)
{
    cJSON *e = find_event(ctx);
    cJSON_Delete(e);
    return e != NULL;
}

struct wantr {
    const char *device, *metric;
    double value;
};

static int has_reading(void *ctx)
{
    struct wantr *w = ctx;
    cJSON *items = h_platform_items("/readings"), *it;
    int found = 0;
    cJSON_ArrayForEach(it, items)
    {
        const char *d = cJSON_GetStringValue(cJSON_GetObjectItem(it, "device"));
        const char *m = cJSON_GetStringValue(cJSON_GetObjectItem(it, "metric"));
        double v = cJSON_GetNumberValue(cJSON_GetObjectItem(it, "value"));
        if (d && m && !strcmp(d, w->device) && !strcmp(m, w->metric) && fabs(v - w->value) < 1e-6)
            found = 1;
    }
    cJSON_Delete(items);
    return found;
}

/* ---- setup ---- */

static void write_gw_config(const char *name, const char *data, int uplink_port,
                            const char *commit_window)
{
    char key_hex[64] = "";
    for (size_t i = 0; i < strlen(KEY2); i++)
        sprintf(key_hex + 2 * i, "%02x", (unsigned char)KEY2[i]);
    char text[4096];
    snprintf(text, sizeof(text),
             "gateway:\n  id: gw-coap\n  data_dir: %s/%s\n  log_level: info\n"
             "  shutdown_drain: 1s\n"
             "store:\n  commit_window: %s\n"
             "uplink:\n  uri: tcp://127.0.0.1:%d\n  topic_prefix: t\n  backoff_min: 100ms\n"
             "  backoff_max: 500ms\n"
             "devices:\n"
             "  - id: smoke-1\n    protocol: coap\n    address: \"" IMEI1 "\"\n"
             "    adapter: smoke-nb100\n    type: smoke_detector\n"
             "  - id: smoke-2\n    protocol: coap\n    address: \"" IMEI2 "\"\n"
             "    adapter: smoke-nb100\n    psk: \"%s\"\n"
             "  - id: wl-1\n    protocol: coap\n    address: wl1\n    adapter: json-map\n"
             "    json_map:\n      time: ts\n      points:\n"
             "        - {path: level.depth, metric: water_depth, unit: cm}\n"
             "        - {path: bat, metric: battery_voltage, unit: V}\n"
             "listeners:\n  - protocol: coap\n    listen: 127.0.0.1\n    port: %d\n"
             "    dtls_port: %d\n",
             h_tmpdir(), data, commit_window, uplink_port, key_hex, E.coap_port, E.dtls_port);
    h_write_file(name, text);
}

static int group_setup(void **state)
{
    h_tmpdir();
    E.coap_port = h_free_port();
    E.dtls_port = h_free_port();
    if (h_peers_start(&E.broker, &E.broker_port))
        return -1;
    write_gw_config("gateway.yaml", "data", E.broker_port, "2ms");
    char path[512];
    snprintf(path, sizeof(path), "%s/gateway.yaml", h_tmpdir());
    return h_gateway_start(&E.gw, path);
}

static int group_teardown(void **state)
{
    /* A clean exit: no handle left open, no leak under ASan. */
    return h_peers_stop(&E.gw, NULL, &E.broker) == 0 ? 0 : -1;
}

/* ---- tests ---- */

static void test_json_reading(void **st)
{
    char args[512];
    snprintf(args, sizeof(args),
             "-m post -e '{\"ts\":1760000000,\"level\":{\"depth\":12.5},\"bat\":3.6}' "
             "coap://127.0.0.1:%d/d/wl1/data",
             E.coap_port);
    assert_string_equal(coap("coap-client-notls", args), "2.04");
    struct wantr w = {"wl-1", "water_depth", 12.5};
    assert_true(h_platform_wait(has_reading, &w, 10000));
    struct wantr w2 = {"wl-1", "battery_voltage", 3.6};
    assert_true(h_platform_wait(has_reading, &w2, 10000));
    struct want on = {"wl-1", "online", NULL, 1};
    assert_true(h_platform_wait(has_event, &on, 10000));
}

static void test_every_smoke_event(void **st)
{
    static const struct {
        uint16_t bits;
        const char *event;
        int active;
        const char *detail;
    } t[] = {
        {0x0001, "fire_alarm", 1, NULL},
        {0x0002, "fire_alarm", 0, "cleared"},
        {0x0004, "self_test", 1, "pass"},
        {0x0008, "self_test", 1, "fail"},
        {0x0010, "mute", 1, NULL},
        {0x0020, "battery_low", 1, NULL},
        {0x0040, "battery_critical", 1, NULL},
        {0x0080, "tamper", 1, NULL},
        {0x0100, "hw_fault", 1, NULL},
        {0x0200, "dirty_chamber", 1, NULL},
        {0x0400, "end_of_life", 1, NULL},
        {0x0800, "heartbeat", 1, NULL},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        uint16_t seq = (uint16_t)(100 + i);
        /* Alternate the two ways of naming the device: ?ep= and the frame's IMEI. */
        const char *fmt = i % 2 ? "coap://127.0.0.1:%d/19/0/0?ep=%s" : "coap://127.0.0.1:%d/19/0/0";
        assert_string_equal(post_frame(fmt, IMEI1, t[i].bits, seq), "2.04");
        char seqs[16];
        snprintf(seqs, sizeof(seqs), "seq=%u", seq);
        struct want w = {"smoke-1", t[i].event, t[i].detail ? t[i].detail : seqs, t[i].active};
        if (!h_platform_wait(has_event, &w, 10000))
            fail_msg("event %s (%s) did not arrive", t[i].event, w.detail_has);
    }
    /* Battery faults never arrive as fire: the frames of seq 105/106 made none. */
    struct want fire105 = {"smoke-1", "fire_alarm", "seq=105", -1};
    struct want fire106 = {"smoke-1", "fire_alarm", "seq=106", -1};
    assert_false(has_event(&fire105));
    assert_false(has_event(&fire106));
    /* Mute + fire + low battery in one frame: the fire alarm is active. */
    assert_string_equal(post_frame("coap://127.0.0.1:%d/d/%s/event", IMEI1, 0x0031, 200), "2.04");
    struct want fire = {"smoke-1", "fire_alarm", "seq=200", 1};
    assert_true(h_platform_wait(has_event, &fire, 10000));
    cJSON *f = find_event(&fire);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(f, "type")), "smoke_detector");
    cJSON_Delete(f);
    struct wantr smoke = {"smoke-1", "smoke_density", 0.12};
    assert_true(h_platform_wait(has_reading, &smoke, 10000));
}

/* Distinct items (by item id: QoS 1 may deliver one twice) among the events
 * matching w. */
static int count_events(const struct want *w)
{
    cJSON *items = h_platform_items("/events"), *it;
    char ids[16][96];
    int n = 0;
    cJSON_ArrayForEach(it, items)
    {
        const char *d = cJSON_GetStringValue(cJSON_GetObjectItem(it, "device"));
        const char *k = cJSON_GetStringValue(cJSON_GetObjectItem(it, "event"));
        const char *det = cJSON_GetStringValue(cJSON_GetObjectItem(it, "detail"));
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(it, "id"));
        if (!d || !k || !det || !id || strcmp(d, w->device) || strcmp(k, w->event) ||
            !strstr(det, w->detail_has))
            continue;
        int dup = 0;
        for (int i = 0; i < n; i++)
            dup |= !strcmp(ids[i], id);
        if (!dup && n < 16)
            snprintf(ids[n++], sizeof(ids[0]), "%s", id);
    }
    cJSON_Delete(items);
    return n;
}

/* The same frame posted again (coap-client: a new message id and source port,
 * so CoAP's own de-duplication cannot see it) is answered 2.04 and stored once. */
static void test_resent_new_mid(void **st)
{
    const char *uri = "coap://127.0.0.1:%d/19/0/0?ep=%s";
    assert_string_equal(post_frame(uri, IMEI1, 0x0800, 600), "2.04");
    assert_string_equal(post_frame(uri, IMEI1, 0x0800, 600), "2.04");
    assert_string_equal(post_frame(uri, IMEI1, 0x0800, 601), "2.04");
    struct want last = {"smoke-1", "heartbeat", "seq=601", 1};
    assert_true(h_platform_wait(has_event, &last, 10000));
    struct want first = {"smoke-1", "heartbeat", "seq=600", 1};
    assert_int_equal(count_events(&first), 1);
}

static void test_unknown_device_refused(void **st)
{
    char args[512];
    snprintf(args, sizeof(args),
             "-m post -e '{\"level\":{\"depth\":1}}' coap://127.0.0.1:%d/d/nobody/data",
             E.coap_port);
    assert_string_equal(coap("coap-client-notls", args), "4.04");
    assert_string_equal(post_frame("coap://127.0.0.1:%d/19/0/0?ep=%s", "999999999999999", 1, 300),
                        "4.04");
    /* A frame naming a device other than its ?ep= is refused. */
    assert_string_equal(post_frame("coap://127.0.0.1:%d/19/0/0?ep=" IMEI1 "&x=%s", IMEI2, 1, 301),
                        "4.01");
    snprintf(args, sizeof(args), "-m post -e x coap://127.0.0.1:%d/other", E.coap_port);
    assert_string_equal(coap("coap-client-notls", args), "4.04");
    struct want w = {"smoke-1", "fire_alarm", "seq=301", -1};
    assert_false(has_event(&w));
}

static void test_malformed_then_survives(void **st)
{
    char args[512];
    snprintf(args, sizeof(args),
             "-m post -e '{\"level\":{\"depth\":\"deep\"}}' coap://127.0.0.1:%d/d/wl1/data",
             E.coap_port);
    assert_string_equal(coap("coap-client-notls", args), "4.00");
    snprintf(args, sizeof(args), "-m post -e 'not json' coap://127.0.0.1:%d/d/wl1/data",
             E.coap_port);
    assert_string_equal(coap("coap-client-notls", args), "4.00");
    /* A frame with a broken CRC. */
    const char *path = frame_file(IMEI1, 1, 400);
    FILE *f = fopen(path, "r+b");
    fseek(f, 29, SEEK_SET);
    fputc(0x00, f);
    fclose(f);
    snprintf(args, sizeof(args), "-m post -f %s coap://127.0.0.1:%d/d/" IMEI1 "/event", path,
             E.coap_port);
    assert_string_equal(coap("coap-client-notls", args), "4.00");
    /* Still alive and serving. */
    snprintf(args, sizeof(args),
             "-m post -e '{\"level\":{\"depth\":7.25}}' coap://127.0.0.1:%d/d/wl1/data",
             E.coap_port);
    assert_string_equal(coap("coap-client-notls", args), "2.04");
    struct wantr w = {"wl-1", "water_depth", 7.25};
    assert_true(h_platform_wait(has_reading, &w, 10000));
    assert_int_equal(kill(E.gw.pid, 0), 0);
}

static void test_dtls_psk(void **st)
{
    char args[1024];
    const char *frame = frame_file(IMEI2, 0x0001, 500);
    snprintf(args, sizeof(args), "-m post -f %s -u %s -k %s coaps://127.0.0.1:%d/19/0/0", frame,
             IMEI2, KEY2, E.dtls_port);
    assert_string_equal(coap("coap-client-openssl", args), "2.04");
    struct want ok = {"smoke-2", "fire_alarm", "seq=500", 1};
    assert_true(h_platform_wait(has_event, &ok, 10000));

    frame = frame_file(IMEI2, 0x0001, 501);
    snprintf(args, sizeof(args), "-m post -f %s -u %s -k wrong-key coaps://127.0.0.1:%d/19/0/0",
             frame, IMEI2, E.dtls_port);
    assert_string_equal(coap("coap-client-openssl", args), "none");
    frame = frame_file(IMEI1, 0x0001, 502);
    snprintf(args, sizeof(args), "-m post -f %s -u %s -k %s coaps://127.0.0.1:%d/19/0/0", frame,
             IMEI1, KEY2, E.dtls_port); /* smoke-1 has no key: refused */
    assert_string_equal(coap("coap-client-openssl", args), "none");
    /* A device with a key may not use plain coap. */
    assert_string_equal(post_frame("coap://127.0.0.1:%d/19/0/0?ep=%s", IMEI2, 1, 503), "4.01");
    /* The refused ones never arrive (wait for a later good one first). */
    frame = frame_file(IMEI2, 0x0800, 504);
    snprintf(args, sizeof(args), "-m post -f %s -u %s -k %s coaps://127.0.0.1:%d/d/%s/event", frame,
             IMEI2, KEY2, E.dtls_port, IMEI2);
    assert_string_equal(coap("coap-client-openssl", args), "2.04");
    struct want hb = {"smoke-2", "heartbeat", "seq=504", 1};
    assert_true(h_platform_wait(has_event, &hb, 10000));
    for (int s = 501; s <= 503; s++) {
        char d[16];
        snprintf(d, sizeof(d), "seq=%d", s);
        struct want no = {s == 502 ? "smoke-1" : "smoke-2", "fire_alarm", d, -1};
        assert_false(has_event(&no));
    }
}

static long rows(const char *db, const char *table)
{
    sqlite3 *h;
    long n = -1;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_stmt *st;
        sqlite3_busy_timeout(h, 2000);
        char sql[64];
        snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM %s", table);
        if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK) {
            if (sqlite3_step(st) == SQLITE_ROW)
                n = sqlite3_column_int64(st, 0);
            sqlite3_finalize(st);
        }
    }
    sqlite3_close(h);
    return n;
}

/* With no uplink and a long group-commit window (telemetry waits for it),
 * every 2.04 must find its reading already in the outbox file, and the answer
 * must have waited for the window. */
static void test_ack_after_commit(void **st)
{
    h_stop(&E.gw);
    write_gw_config("gateway2.yaml", "data2", h_free_port(), "400ms");
    char path[512], db[512], args[512];
    snprintf(path, sizeof(path), "%s/gateway2.yaml", h_tmpdir());
    snprintf(db, sizeof(db), "%s/data2/outbox.db", h_tmpdir());
    h_proc gw;
    assert_int_equal(h_gateway_start(&gw, path), 0);
    snprintf(args, sizeof(args),
             "-m post -e '{\"level\":{\"depth\":1}}' coap://127.0.0.1:%d/d/wl1/data", E.coap_port);
    assert_string_equal(coap("coap-client-notls", args), "2.04"); /* online event: urgent */
    long before = rows(db, "outbox_tele");
    assert_true(before >= 1);
    for (int i = 0; i < 3; i++) {
        int64_t t0 = h_now_ms();
        assert_string_equal(coap("coap-client-notls", args), "2.04");
        long now = rows(db, "outbox_tele");
        assert_int_equal(now, before + 1);
        assert_true(h_now_ms() - t0 >= 300);
        before = now;
    }
    h_stop(&gw);
    assert_true(h_log_contains(&gw, "acked 4"));
    assert_int_equal(h_gateway_start(&E.gw, path), 0); /* for the teardown */
}

/* A DTLS-PSK key file that group or others can read is refused like every
 * other key file (base/keyfile.h), naming the file and its mode, not its key. */
static void test_psk_file_permissions(void **st)
{
    const char *key = h_write_file("smoke-9.psk", "0badc0ffee0badc0ffee\n");
    char text[1024];
    snprintf(text, sizeof(text),
             "gateway:\n  id: g\nuplink:\n  uri: tcp://127.0.0.1:1\ndevices:\n"
             "  - {id: smoke-9, protocol: coap, address: '869000000000009', psk_file: %s}\n",
             key);
    const char *path = h_write_file("psk-perm.yaml", text);
    for (int mode = 0644; mode; mode = mode == 0644 ? 0600 : 0) {
        assert_int_equal(chmod(key, (mode_t)mode), 0);
        h_proc p = {0};
        char *argv[] = {(char *)h_bin("gateway"), "--check-config", (char *)path, NULL};
        assert_int_equal(h_spawn(&p, mode == 0644 ? "psk-644.log" : "psk-600.log", argv), 0);
        assert_int_equal(h_wait(&p, 10000), mode == 0644 ? 1 : 0);
        assert_int_equal(h_log_contains(&p, "smoke-9.psk has mode 0644"), mode == 0644);
        assert_false(h_log_contains(&p, "0badc0ffee"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_reading),
        cmocka_unit_test(test_every_smoke_event),
        cmocka_unit_test(test_resent_new_mid),
        cmocka_unit_test(test_unknown_device_refused),
        cmocka_unit_test(test_malformed_then_survives),
        cmocka_unit_test(test_dtls_psk),
        cmocka_unit_test(test_ack_after_commit),
        cmocka_unit_test(test_psk_file_permissions),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
