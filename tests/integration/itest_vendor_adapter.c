/* The vendor's promise of docs/adapters.md, end to end: the TL-1 tank gauge
 * adapter was added as one file (adapters/tank_tl1.c) and one table line, and
 * with nothing else the real gateway serves it. The real coap-client-notls
 * posts TL-1 frames -> build/gateway (coap listener, adapter tank-tl1) ->
 * mosquitto -> platform subscriber. The listener finds the device by the
 * frame's serial (the adapter's identify hook) on /19/0/0, takes it on
 * /d/<serial>/data, refuses a frame naming another gauge (4.01), a format the
 * adapter does not read (4.15) and a broken frame (4.00). Frames are built
 * here byte by byte, not with the adapter's code. */
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

static struct env {
    int broker_port, coap_port;
    h_proc broker, gw;
} E;

/* A TL-1 frame: "TL", version 1, 8-char serial, level mm, temp 0.1 C, flags, sum. */
static const char *frame_file(const char *name, const char *serial, unsigned level_mm, int temp,
                              unsigned flags, int corrupt)
{
    uint8_t b[17];
    b[0] = 'T';
    b[1] = 'L';
    b[2] = 1;
    memcpy(b + 3, serial, 8);
    b[11] = (uint8_t)(level_mm >> 8);
    b[12] = (uint8_t)level_mm;
    b[13] = (uint8_t)((unsigned)temp >> 8);
    b[14] = (uint8_t)temp;
    b[15] = (uint8_t)flags;
    uint8_t sum = 0;
    for (int i = 0; i < 16; i++)
        sum = (uint8_t)(sum + b[i]);
    b[16] = (uint8_t)(sum + corrupt);
    static char path[4][512];
    static int slot;
    char *p = path[slot++ % 4];
    snprintf(p, 512, "%s/%s.bin", h_tmpdir(), name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, sizeof(b), f), sizeof(b));
    fclose(f);
    return p;
}

/* Posts file with coap-client-notls; the answer's code ("2.04", ...) or "none".
 * type NULL: no Content-Format. */
static const char *post(const char *type, const char *file, const char *path)
{
    char args[1024];
    snprintf(args, sizeof(args), "-m post %s%s -f %s coap://127.0.0.1:%d/%s", type ? "-t " : "",
             type ? type : "", file, E.coap_port, path);
    return h_coap_client(4, args);
}

struct want {
    const char *suffix, *device, *key; /* key: metric, or the event's kind */
    double value;                      /* reading value, or event active */
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
        cJSON *v = cJSON_GetObjectItem(it, events ? "active" : "value");
        double x = cJSON_IsBool(v) ? cJSON_IsTrue(v) : cJSON_GetNumberValue(v);
        if (d && k && !strcmp(d, w->device) && !strcmp(k, w->key) && fabs(x - w->value) < 1e-9)
            found = 1;
    }
    cJSON_Delete(items);
    return found;
}

static int group_setup(void **state)
{
    h_tmpdir();
    E.broker_port = h_free_port_range(2);
    E.coap_port = E.broker_port + 1;
    if (h_broker_start(&E.broker, E.broker_port) || h_platform_start(E.broker_port))
        return -1;
    char text[2048];
    snprintf(text, sizeof(text),
             "gateway:\n  id: gw-tl1\n  data_dir: %s/data\n  log_level: info\n"
             "  shutdown_drain: 1s\n"
             "store:\n  commit_window: 2ms\n"
             "uplink:\n  uri: tcp://127.0.0.1:%d\n  topic_prefix: t\n  backoff_min: 100ms\n"
             "  backoff_max: 500ms\n"
             "devices:\n"
             "  - {id: tank-1, type: tank, protocol: coap, address: TL000042, adapter: tank-tl1}\n"
             "  - {id: tank-2, type: tank, protocol: coap, address: TL000043, adapter: tank-tl1}\n"
             "listeners:\n  - protocol: coap\n    listen: 127.0.0.1\n    port: %d\n",
             h_tmpdir(), E.broker_port, E.coap_port);
    return h_gateway_start(&E.gw, h_write_file("gateway.yaml", text));
}

static int group_teardown(void **state)
{
    int rc = h_stop(&E.gw);
    h_platform_stop();
    h_stop(&E.broker);
    h_cleanup();
    return rc;
}

/* Named by its frame alone: /19/0/0 without ?ep=, no Content-Format. */
static void test_frame_names_its_device(void **st)
{
    const char *f = frame_file("a", "TL000042", 1234, -55, 1, 0);
    assert_string_equal(post(NULL, f, "19/0/0"), "2.04");
    struct want lvl = {"/readings", "tank-1", "water_level", 1.234};
    assert_true(h_platform_wait(has_item, &lvl, 10000));
    struct want tmp = {"/readings", "tank-1", "temperature", -5.5};
    assert_true(h_platform_wait(has_item, &tmp, 10000));
    struct want ev = {"/events", "tank-1", "high_level", 1};
    assert_true(h_platform_wait(has_item, &ev, 10000));
}

/* By path, with the format the adapter declares. */
static void test_by_path(void **st)
{
    const char *f = frame_file("b", "TL000043", 2500, 201, 0, 0);
    assert_string_equal(post("42", f, "d/TL000043/data"), "2.04");
    struct want lvl = {"/readings", "tank-2", "water_level", 2.5};
    assert_true(h_platform_wait(has_item, &lvl, 10000));
}

static void test_refusals(void **st)
{
    /* A frame of tank-2 posted as tank-1. */
    assert_string_equal(post(NULL, frame_file("c", "TL000043", 999, 0, 0, 0), "d/TL000042/data"),
                        "4.01");
    /* A format the adapter does not read. */
    assert_string_equal(post("50", frame_file("d", "TL000042", 998, 0, 0, 0), "d/TL000042/data"),
                        "4.15");
    /* A bad sum: malformed, and no device named by it on /19/0/0. */
    assert_string_equal(post(NULL, frame_file("e", "TL000042", 997, 0, 0, 1), "d/TL000042/data"),
                        "4.00");
    assert_string_equal(post(NULL, frame_file("f", "TL000042", 996, 0, 0, 1), "19/0/0"), "4.04");
    /* An unknown serial. */
    assert_string_equal(post(NULL, frame_file("g", "TL000099", 995, 0, 0, 0), "19/0/0"), "4.04");
    /* Nothing of those arrived; a good frame still does. */
    assert_string_equal(post(NULL, frame_file("h", "TL000042", 777, 0, 0, 0), "19/0/0"), "2.04");
    struct want ok = {"/readings", "tank-1", "water_level", 0.777};
    assert_true(h_platform_wait(has_item, &ok, 10000));
    for (unsigned mm = 995; mm <= 999; mm++) {
        struct want never1 = {"/readings", "tank-1", "water_level", mm / 1000.0};
        struct want never2 = {"/readings", "tank-2", "water_level", mm / 1000.0};
        assert_false(has_item(&never1));
        assert_false(has_item(&never2));
    }
    assert_int_equal(kill(E.gw.pid, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_names_its_device),
        cmocka_unit_test(test_by_path),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
