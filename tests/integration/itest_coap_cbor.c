/* CBOR devices over CoAP end to end: the real coap-client-notls (libcoap3-bin)
 * posts a CBOR payload from a file with Content-Format 60 -> build/gateway
 * (adapter cbor-map + json_map) -> mosquitto -> platform subscriber. A reading
 * arrives mapped with the device's time; the device may be named by the
 * payload's "imei"; malformed or hostile CBOR gets 4.00, another Content-Format
 * 4.15, and the gateway keeps serving. */
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

/* ---- CBOR, built here (the test does not link the gateway) ---- */

typedef struct cb {
    uint8_t b[4096];
    size_t n;
} cb;

static void put(cb *o, uint8_t v)
{
    if (o->n < sizeof(o->b))
        o->b[o->n++] = v;
}

static void head(cb *o, int major, uint64_t v)
{
    int w = v < 24 ? 0 : v <= 0xff ? 1 : v <= 0xffff ? 2 : v <= 0xffffffffu ? 4 : 8;
    static const uint8_t ai[] = {0, 24, 25, 0, 26, 0, 0, 0, 27};
    put(o, (uint8_t)(major << 5 | (w ? ai[w] : v)));
    for (int i = w - 1; i >= 0; i--)
        put(o, (uint8_t)(v >> (8 * i)));
}

static void text(cb *o, const char *s)
{
    head(o, 3, strlen(s));
    for (; *s; s++)
        put(o, (uint8_t)*s);
}

static void f64(cb *o, double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    put(o, 0xfb);
    for (int i = 7; i >= 0; i--)
        put(o, (uint8_t)(u >> (8 * i)));
}

static void f16(cb *o, uint16_t bits)
{
    put(o, 0xf9);
    put(o, (uint8_t)(bits >> 8));
    put(o, (uint8_t)bits);
}

/* {"ts": 1(epoch), "level": {"depth": depth}, 7: 3.5 (half float)} */
static void reading(cb *o, uint64_t epoch, double depth)
{
    o->n = 0;
    head(o, 5, 3);
    text(o, "ts");
    head(o, 6, 1);
    head(o, 0, epoch);
    text(o, "level");
    head(o, 5, 1);
    text(o, "depth");
    f64(o, depth);
    head(o, 0, 7);
    f16(o, 0x4300); /* 3.5 */
}

static const char *cbor_file(const char *name, const cb *o)
{
    static char path[8][512];
    static int slot;
    char *p = path[slot++ % 8];
    snprintf(p, 512, "%s/%s.cbor", h_tmpdir(), name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(o->b, 1, o->n, f), o->n);
    fclose(f);
    return p;
}

/* Runs coap-client (bounded by -B) and returns the code of the answer it got
 * ("2.04", "4.00", ...) or "none". */
static const char *coap(const char *args)
{
    return h_coap_client(4, args);
}

static const char *post(const char *type, const char *file, const char *path)
{
    char args[1024];
    snprintf(args, sizeof(args), "-m post -t %s -f %s coap://127.0.0.1:%d/%s", type, file,
             E.coap_port, path);
    return coap(args);
}

/* ---- what the platform saw ---- */

struct wantr {
    const char *device, *metric;
    double value;
    const char *obs; /* NULL: any */
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
        const char *obs = cJSON_GetStringValue(cJSON_GetObjectItem(it, "obs"));
        double v = cJSON_GetNumberValue(cJSON_GetObjectItem(it, "value"));
        if (d && m && !strcmp(d, w->device) && !strcmp(m, w->metric) && fabs(v - w->value) < 1e-6 &&
            (!w->obs || (obs && !strcmp(obs, w->obs))))
            found = 1;
    }
    cJSON_Delete(items);
    return found;
}

/* ---- setup ---- */

static int group_setup(void **state)
{
    h_tmpdir();
    E.coap_port = h_free_port();
    if (h_peers_start(&E.broker, &E.broker_port))
        return -1;
    char text[2048];
    snprintf(text, sizeof(text),
             "gateway:\n  id: gw-cbor\n  data_dir: %s/data\n  log_level: info\n"
             "  shutdown_drain: 1s\n"
             "store:\n  commit_window: 2ms\n"
             "uplink:\n  uri: tcp://127.0.0.1:%d\n  topic_prefix: t\n  backoff_min: 100ms\n"
             "  backoff_max: 500ms\n"
             "devices:\n"
             "  - id: cb-1\n    protocol: coap\n    address: cb1\n    adapter: cbor-map\n"
             "    json_map:\n      time: ts\n      points:\n"
             "        - {path: level.depth, metric: water_depth, unit: cm}\n"
             "        - {path: '7', metric: battery_voltage, unit: V}\n"
             "  - id: cb-2\n    protocol: coap\n    address: \"861234567890125\"\n"
             "    adapter: cbor-map\n"
             "listeners:\n  - protocol: coap\n    listen: 127.0.0.1\n    port: %d\n",
             h_tmpdir(), E.broker_port, E.coap_port);
    const char *path = h_write_file("gateway.yaml", text);
    return h_gateway_start(&E.gw, path);
}

static int group_teardown(void **state)
{
    /* A clean exit: no handle left open, no leak under ASan. */
    return h_peers_stop(&E.gw, NULL, &E.broker) == 0 ? 0 : -1;
}

/* ---- tests ---- */

static void test_cbor_reading_mapped(void **st)
{
    cb o;
    reading(&o, 1760000000, 12.5);
    assert_string_equal(post("60", cbor_file("r1", &o), "d/cb1/data"), "2.04");
    struct wantr w = {"cb-1", "water_depth", 12.5, "2025-10-09T08:53:20.000Z"};
    assert_true(h_platform_wait(has_reading, &w, 10000));
    struct wantr w2 = {"cb-1", "battery_voltage", 3.5, "2025-10-09T08:53:20.000Z"};
    assert_true(h_platform_wait(has_reading, &w2, 10000));
    /* The media type by name works as well. */
    reading(&o, 1760000060, 13.25);
    assert_string_equal(post("application/cbor", cbor_file("r2", &o), "d/cb1/data"), "2.04");
    struct wantr w3 = {"cb-1", "water_depth", 13.25, "2025-10-09T08:54:20.000Z"};
    assert_true(h_platform_wait(has_reading, &w3, 10000));
}

/* The generic mapping, and the device named by the payload's "imei". */
static void test_cbor_identity_from_payload(void **st)
{
    cb o = {.n = 0};
    head(&o, 5, 2);
    text(&o, "imei");
    text(&o, "861234567890125");
    text(&o, "temperature");
    head(&o, 1, 4); /* -5 */
    assert_string_equal(post("60", cbor_file("imei", &o), "19/0/0"), "2.04");
    struct wantr w = {"cb-2", "temperature", -5, NULL};
    assert_true(h_platform_wait(has_reading, &w, 10000));
    /* An imei nobody configured is refused. */
    o.n = 0;
    head(&o, 5, 2);
    text(&o, "imei");
    text(&o, "861234567890999");
    text(&o, "temperature");
    head(&o, 0, 1);
    assert_string_equal(post("60", cbor_file("imei2", &o), "19/0/0"), "4.04");
}

static void test_malformed_cbor_refused(void **st)
{
    cb o, bad;
    reading(&o, 1760000120, 99.0);
    /* Truncated: the last byte of the half float missing. */
    bad = o;
    bad.n--;
    assert_string_equal(post("60", cbor_file("trunc", &bad), "d/cb1/data"), "4.00");
    /* Hostile nesting: 64 indefinite arrays that never close. */
    bad.n = 0;
    head(&bad, 5, 1);
    text(&bad, "level");
    for (int i = 0; i < 64; i++)
        put(&bad, 0x9f);
    assert_string_equal(post("60", cbor_file("deep", &bad), "d/cb1/data"), "4.00");
    /* A map claiming 2^32 pairs. */
    bad.n = 0;
    head(&bad, 5, 0x100000000ull);
    text(&bad, "level");
    assert_string_equal(post("60", cbor_file("huge", &bad), "d/cb1/data"), "4.00");
    /* NaN where the depth belongs. */
    bad.n = 0;
    head(&bad, 5, 1);
    text(&bad, "level");
    head(&bad, 5, 1);
    text(&bad, "depth");
    f16(&bad, 0x7e00);
    assert_string_equal(post("60", cbor_file("nan", &bad), "d/cb1/data"), "4.00");
    /* JSON text to a CBOR device: refused by its Content-Format, and as bytes. */
    bad.n = 0;
    const char *json = "{\"level\":{\"depth\":1}}";
    memcpy(bad.b, json, strlen(json));
    bad.n = strlen(json);
    assert_string_equal(post("50", cbor_file("json", &bad), "d/cb1/data"), "4.15");
    assert_string_equal(post("60", cbor_file("json", &bad), "d/cb1/data"), "4.00");
    /* None of those arrived; the gateway is alive and a good payload still works. */
    reading(&o, 1760000180, 7.75);
    assert_string_equal(post("60", cbor_file("good", &o), "d/cb1/data"), "2.04");
    struct wantr w = {"cb-1", "water_depth", 7.75, NULL};
    assert_true(h_platform_wait(has_reading, &w, 10000));
    struct wantr never = {"cb-1", "water_depth", 99.0, NULL};
    assert_false(has_reading(&never));
    struct wantr never1 = {"cb-1", "water_depth", 1.0, NULL};
    assert_false(has_reading(&never1));
    assert_int_equal(kill(E.gw.pid, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cbor_reading_mapped),
        cmocka_unit_test(test_cbor_identity_from_payload),
        cmocka_unit_test(test_malformed_cbor_refused),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
