/* MC-200 manhole cover frames over real CoAP sockets, both ways LwM2M 19/0/0
 * carries them, with frames built here byte by byte (not by either side's
 * code):
 *   - POST: coap-client-notls posts to the gateway's /19/0/0 without ?ep= (the
 *     adapter's identify hook finds the cover by the IMEI in the frame); the
 *     alarm report's changed bit is one event, the readings follow; a report
 *     that changes nothing emits no event; a broken CRC is 4.00 on the cover's
 *     path (4.04 on /19/0/0, where it names nobody) and a JSON Content-Format
 *     4.15, and none of them arrives.
 *   - Observe: the real coap-server-notls plays a cover serving /19/0/0 (a
 *     dynamic resource each PUT changes); the gateway observes it, decodes the
 *     registration answer and every notification with the same adapter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define IMEI1 "861234567890123"
#define IMEI3 "861234567890125"

static struct env {
    int broker_port, coap_port, dev_port;
    h_proc broker, gw, dev;
} E;

/* An MC-200 frame into a file: IMEI, type, seq, status, changed, tilt in 0.1
 * deg, water in mm; 3.6 V, RSRP -95.5 dBm, SNR 12 dB, no clock. */
static const char *frame_file(const char *imei, int type, int seq, int status, int changed,
                              int tilt, int water_mm, int corrupt)
{
    uint8_t b[31] = {'M', 'C', 1, (uint8_t)type};
    for (int i = 0; i < 8; i++) {
        int hi = imei[2 * i] - '0', lo = i < 7 ? imei[2 * i + 1] - '0' : 0xF;
        b[4 + i] = (uint8_t)(hi << 4 | lo);
    }
    b[12] = (uint8_t)(seq >> 8);
    b[13] = (uint8_t)seq;
    b[18] = (uint8_t)status;
    b[19] = (uint8_t)changed;
    b[20] = (uint8_t)(tilt >> 8);
    b[21] = (uint8_t)tilt;
    b[22] = (uint8_t)(water_mm >> 8);
    b[23] = (uint8_t)water_mm;
    b[24] = 0x0E;
    b[25] = 0x10;
    b[26] = 0xFC;
    b[27] = 0x45;
    b[28] = 12;
    uint16_t c = 0xFFFF;
    for (int i = 0; i < 29; i++) {
        c ^= b[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (uint16_t)((c >> 1) ^ 0xA001) : (uint16_t)(c >> 1);
    }
    b[29] = (uint8_t)(c + corrupt);
    b[30] = (uint8_t)(c >> 8);
    static char path[4][512];
    static int slot;
    char *p = path[slot++ % 4];
    snprintf(p, 512, "%s/mc-%s-%d.bin", h_tmpdir(), imei, seq);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, sizeof b, f), sizeof b);
    fclose(f);
    return p;
}

struct want {
    const char *suffix, *device, *key, *detail; /* detail: an event's, or NULL */
    double value;                               /* reading value, or event active */
};

static int has_item(void *ctx)
{
    struct want *w = ctx;
    int events = !strcmp(w->suffix, "/events");
    cJSON *items = h_platform_items(w->suffix), *it;
    int found = 0;
    cJSON_ArrayForEach(it, items)
    {
        const char *d = cJSON_GetStringValue(cJSON_GetObjectItem(it, "device"));
        const char *k = cJSON_GetStringValue(cJSON_GetObjectItem(it, events ? "event" : "metric"));
        const char *det = cJSON_GetStringValue(cJSON_GetObjectItem(it, "detail"));
        cJSON *v = cJSON_GetObjectItem(it, events ? "active" : "value");
        double x = cJSON_IsBool(v) ? cJSON_IsTrue(v) : cJSON_GetNumberValue(v);
        if (d && k && !strcmp(d, w->device) && !strcmp(k, w->key) && fabs(x - w->value) < 1e-9 &&
            (!w->detail || (det && strstr(det, w->detail))))
            found = 1;
    }
    cJSON_Delete(items);
    return found;
}

/* Posts file to /19/0/0, or with path to that path. */
static const char *post_to(const char *path, const char *type, const char *file)
{
    char args[1024];
    snprintf(args, sizeof args, "-m post %s%s -f %s coap://127.0.0.1:%d/%s", type ? "-t " : "",
             type ? type : "", file, E.coap_port, path);
    return h_coap_client(4, args);
}

static const char *post(const char *type, const char *file)
{
    return post_to("19/0/0", type, file);
}

/* A new state of the observed cover: the first PUT creates /19/0/0. */
static int put_frame(const char *file)
{
    char args[1024];
    snprintf(args, sizeof args, "-m put -t 42 -f %s coap://127.0.0.1:%d/19/0/0", file, E.dev_port);
    const char *c = h_coap_client(3, args);
    return !strcmp(c, "2.01") || !strcmp(c, "2.04");
}

static int group_setup(void **state)
{
    h_tmpdir();
    int base = h_free_port_range(2);
    if (base < 0 || h_peers_start(&E.broker, &E.broker_port))
        return -1;
    E.coap_port = base;
    E.dev_port = base + 1;
    char port[16];
    snprintf(port, sizeof port, "%d", E.dev_port);
    char *argv[] = {"coap-server-notls", "-A", "127.0.0.1", "-p", port, "-d", "8", NULL};
    if (h_spawn(&E.dev, "coap-server.log", argv) || !h_port_wait(E.dev_port, 10000) ||
        !put_frame(frame_file(IMEI3, 1, 1, 0, 0, 5, 850, 0)))
        return -1;
    char text[2048];
    snprintf(text, sizeof text,
             "gateway:\n  id: gw-mc\n  data_dir: %s/data\n  log_level: info\n"
             "  shutdown_drain: 1s\n"
             "store:\n  commit_window: 2ms\n"
             "uplink:\n  uri: tcp://127.0.0.1:%d\n  topic_prefix: t\n  backoff_min: 100ms\n"
             "  backoff_max: 500ms\n"
             "devices:\n"
             "  - {id: cover-1, type: manhole_cover, protocol: coap, address: '" IMEI1 "',\n"
             "     adapter: cover-mc200}\n"
             "  - {id: cover-3, type: manhole_cover, protocol: coap, address: '" IMEI3 "',\n"
             "     adapter: cover-mc200, observe: 'coap://127.0.0.1:%d/19/0/0',\n"
             "     observe_renew: 30s}\n"
             "listeners:\n  - protocol: coap\n    listen: 127.0.0.1\n    port: %d\n",
             h_tmpdir(), E.broker_port, E.dev_port, E.coap_port);
    return h_gateway_start(&E.gw, h_write_file("gateway.yaml", text));
}

static int group_teardown(void **state)
{
    return h_peers_stop(&E.gw, &E.dev, &E.broker) == 0 ? 0 : -1;
}

static void test_post(void **st)
{
    /* Lifted: status and changed bit 0, tilt 12.5 deg. */
    assert_string_equal(post(NULL, frame_file(IMEI1, 2, 10, 1, 1, 125, 300, 0)), "2.04");
    struct want open = {"/events", "cover-1", "cover_open", "seq=10", 1};
    assert_true(h_platform_wait(has_item, &open, 10000));
    struct want tilt = {"/readings", "cover-1", "tilt_angle", NULL, 12.5};
    assert_true(h_platform_wait(has_item, &tilt, 10000));
    struct want rsrp = {"/readings", "cover-1", "rsrp", NULL, -95.5};
    assert_true(h_platform_wait(has_item, &rsrp, 10000));
    /* Still open, nothing changed: a report with readings and no event. */
    assert_string_equal(post("42", frame_file(IMEI1, 1, 11, 1, 0, 126, 301, 0)), "2.04");
    struct want lvl = {"/readings", "cover-1", "water_level", NULL, 0.301};
    assert_true(h_platform_wait(has_item, &lvl, 10000));
    struct want again = {"/events", "cover-1", "cover_open", "seq=11", 1};
    assert_false(has_item(&again));
    /* Refused: a broken CRC (4.00 for the cover's path; on /19/0/0 it names no
     * cover: 4.04), JSON's Content-Format (4.15). */
    const char *bad = frame_file(IMEI1, 2, 12, 0, 1, 10, 302, 1);
    assert_string_equal(post_to("d/" IMEI1 "/data", NULL, bad), "4.00");
    assert_string_equal(post(NULL, bad), "4.04");
    assert_string_equal(
        post_to("d/" IMEI1 "/data", "50", frame_file(IMEI1, 2, 13, 0, 1, 10, 303, 0)), "4.15");
    /* Closed again: the event's end. */
    assert_string_equal(post(NULL, frame_file(IMEI1, 2, 14, 0, 1, 10, 304, 0)), "2.04");
    struct want closed = {"/events", "cover-1", "cover_open", "seq=14", 0};
    assert_true(h_platform_wait(has_item, &closed, 10000));
    for (int mm = 302; mm <= 303; mm++) {
        struct want never = {"/readings", "cover-1", "water_level", NULL, mm / 1000.0};
        assert_false(has_item(&never));
    }
}

static void test_observe(void **st)
{
    /* The registration answer: the state PUT before the gateway started. */
    struct want lvl = {"/readings", "cover-3", "water_level", NULL, 0.85};
    assert_true(h_platform_wait(has_item, &lvl, 15000));
    /* A notification: tilted to 30 deg. */
    assert_true(put_frame(frame_file(IMEI3, 2, 2, 2, 2, 300, 860, 0)));
    struct want tilt = {"/events", "cover-3", "cover_tilt", "tilt=30.0 deg", 1};
    assert_true(h_platform_wait(has_item, &tilt, 10000));
    struct want angle = {"/readings", "cover-3", "tilt_angle", NULL, 30};
    assert_true(h_platform_wait(has_item, &angle, 10000));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_post),
        cmocka_unit_test(test_observe),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
