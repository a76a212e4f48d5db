/* MQTT devices end to end: mosquitto_pub / mosquitto_sub play the devices on a
 * field broker, build/gateway maps their JSON through json_map and forwards it
 * to the platform broker. Readings arrive mapped, a last will becomes an
 * offline event, unknown devices and malformed payloads are counted drops, and
 * a device with an SM4 key has its payloads (encrypted by `openssl enc`)
 * decrypted before mapping. */
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
#include <sys/stat.h>

#define SM4_KEY "00112233445566778899aabbccddeeff"

static struct env {
    int up_port, field_port;
    h_proc up, field, gw;
} E;

static void pub(const char *topic, const char *payload)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "mosquitto_pub -h 127.0.0.1 -p %d -q 1 -t '%s' -m '%s'",
             E.field_port, topic, payload);
    assert_int_equal(system(cmd), 0);
}

struct wantr {
    const char *device, *metric;
    double value;
    long obs_s; /* 0: do not check */
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
            (!w->obs_s || (obs && !strncmp(obs, "2026-06-01T08:00:00", 19))))
            found = 1;
    }
    cJSON_Delete(items);
    return found;
}

struct want {
    const char *device, *event;
    int active;
};

static int count_events(const struct want *w)
{
    cJSON *items = h_platform_items("/events"), *it;
    int n = 0;
    cJSON_ArrayForEach(it, items)
    {
        const char *d = cJSON_GetStringValue(cJSON_GetObjectItem(it, "device"));
        const char *k = cJSON_GetStringValue(cJSON_GetObjectItem(it, "event"));
        if (d && k && !strcmp(d, w->device) && !strcmp(k, w->event) &&
            (w->active < 0 || cJSON_IsTrue(cJSON_GetObjectItem(it, "active")) == w->active))
            n++;
    }
    cJSON_Delete(items);
    return n;
}

static int has_event(void *ctx)
{
    return count_events(ctx) > 0;
}

static int group_setup(void **state)
{
    h_tmpdir();
    E.up_port = h_free_port();
    E.field_port = h_free_port();
    if (h_broker_start(&E.up, E.up_port) || h_broker_start(&E.field, E.field_port) ||
        h_platform_start(E.up_port))
        return -1;
    /* enc-9's SM4 key: the gateway refuses key files others can read. */
    char key[512];
    snprintf(key, sizeof(key), "%s", h_write_file("enc9.key", SM4_KEY "\n"));
    if (chmod(key, 0600))
        return -1;
    char text[4096];
    snprintf(text, sizeof(text),
             "gateway:\n  id: gw-mqtt\n  data_dir: %s/data\n  log_level: info\n"
             "  shutdown_drain: 1s\n"
             "store:\n  commit_window: 2ms\n"
             "uplink:\n  uri: tcp://127.0.0.1:%d\n  topic_prefix: t\n  backoff_min: 100ms\n"
             "  backoff_max: 500ms\n"
             "devices:\n"
             "  - id: wl-7\n    protocol: mqtt-devices\n    address: wl7\n    type: waterlogging\n"
             "  - id: rain-3\n    protocol: mqtt-devices\n    address: rg3\n"
             "    json_map:\n      points:\n        - {path: 'r[0]', metric: rain_1h, unit: mm}\n"
             "  - id: lv-5\n    protocol: mqtt-devices\n    address: lv5\n    adapter: cbor-map\n"
             "    json_map:\n      points:\n        - {path: lvl, metric: water_level, unit: m}\n"
             "  - id: enc-9\n    protocol: mqtt-devices\n    address: enc9\n"
             "    sm4_key_file: %s\n    sm4_mode: ctr\n"
             "listeners:\n  - protocol: mqtt-devices\n    uri: tcp://127.0.0.1:%d\n"
             "    topic: field/+/{device}/data\n    status_topic: field/+/{device}/status\n"
             "    json_map:\n      time: ts\n      points:\n"
             "        - {path: water.depth, metric: water_depth, unit: cm}\n"
             "        - {path: bat, metric: battery_voltage, unit: V}\n"
             "      events:\n        - {path: flood, kind: flood_alarm}\n",
             h_tmpdir(), E.up_port, key, E.field_port);
    const char *path = h_write_file("gateway.yaml", text);
    if (h_gateway_start(&E.gw, path))
        return -1;
    return h_log_wait(&E.gw, "[mqtt-devices] connected", 10000) ? 0 : -1;
}

static int group_teardown(void **state)
{
    h_stop(&E.gw);
    h_platform_stop();
    h_stop(&E.field);
    h_stop(&E.up);
    h_cleanup();
    return 0;
}

static void test_readings_mapped(void **st)
{
    pub("field/site1/wl7/data", "{\"ts\":\"2026-06-01T16:00:00+08:00\",\"water\":{\"depth\":23.5},"
                                "\"bat\":3.7,\"flood\":true}");
    struct wantr w = {"wl-7", "water_depth", 23.5, 1};
    assert_true(h_platform_wait(has_reading, &w, 10000));
    struct wantr b = {"wl-7", "battery_voltage", 3.7, 1};
    assert_true(h_platform_wait(has_reading, &b, 10000));
    struct want f = {"wl-7", "flood_alarm", 1};
    assert_true(h_platform_wait(has_event, &f, 10000));
    /* A device with its own mapping, and a batch of two records. */
    pub("field/site2/rg3/data", "[{\"r\":[1.5]},{\"r\":[2.5]}]");
    struct wantr r1 = {"rain-3", "rain_1h", 1.5, 0}, r2 = {"rain-3", "rain_1h", 2.5, 0};
    assert_true(h_platform_wait(has_reading, &r1, 10000));
    assert_true(h_platform_wait(has_reading, &r2, 10000));
}

/* A CBOR device with its own mapping: {"lvl": 1.25} is A1 63 6C 766C F9 3D00
 * (map of 1, text "lvl", half-float 1.25), published as raw bytes. */
static void test_cbor_device_mapped(void **st)
{
    const unsigned char cbor[] = {0xA1, 0x63, 'l', 'v', 'l', 0xF9, 0x3D, 0x00};
    char path[512], cmd[1024];
    snprintf(path, sizeof(path), "%s/lv5.cbor", h_tmpdir());
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(cbor, 1, sizeof(cbor), f), sizeof(cbor));
    fclose(f);
    snprintf(cmd, sizeof(cmd), "mosquitto_pub -h 127.0.0.1 -p %d -q 1 -t field/x/lv5/data -f %s",
             E.field_port, path);
    assert_int_equal(system(cmd), 0);
    struct wantr w = {"lv-5", "water_level", 1.25, 0};
    assert_true(h_platform_wait(has_reading, &w, 10000));
}

/* Publishes IV || SM4-CTR(key, IV, json) as built by the openssl CLI. */
static void pub_sm4(const char *device, const char *key, const char *json)
{
    const char *iv = "a1b2c3d4e5f60718293a4b5c6d7e8f90";
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "cd %s && printf %s | xxd -r -p > sm4.frame && printf '%s' | "
             "openssl enc -sm4-ctr -K %s -iv %s >> sm4.frame && "
             "mosquitto_pub -h 127.0.0.1 -p %d -q 1 -t field/x/%s/data -f sm4.frame",
             h_tmpdir(), iv, json, key, iv, E.field_port, device);
    assert_int_equal(system(cmd), 0);
}

static void test_sm4_device_payload(void **st)
{
    pub_sm4("enc9", SM4_KEY, "{\"water\":{\"depth\":12.25}}");
    struct wantr w = {"enc-9", "water_depth", 12.25, 0};
    assert_true(h_platform_wait(has_reading, &w, 10000));
    /* Under another key the plaintext is noise: refused as malformed, counted. */
    pub_sm4("enc9", "ffeeddccbbaa99887766554433221100", "{\"water\":{\"depth\":13.5}}");
    assert_true(
        h_log_wait(&E.gw, "[enc-9] malformed payload (40 bytes) dropped (1 so far)", 10000));
    struct wantr bad = {"enc-9", "water_depth", 13.5, 0};
    assert_false(has_reading(&bad));
}

static void test_lwt_offline_and_birth(void **st)
{
    /* A device client whose last will says "offline"; killing it makes the
     * broker publish the will. stdbuf: its debug lines reach the log at once. */
    char port[16];
    snprintf(port, sizeof(port), "%d", E.field_port);
    char *argv[] = {"stdbuf",
                    "-oL",
                    "mosquitto_sub",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    port,
                    "-d",
                    "-i",
                    "dev-wl7",
                    "-t",
                    "field/site1/wl7/cmd",
                    "--will-topic",
                    "field/site1/wl7/status",
                    "--will-payload",
                    "offline",
                    "--will-qos",
                    "1",
                    NULL};
    h_proc dev;
    assert_int_equal(h_spawn(&dev, "dev-wl7.log", argv), 0);
    assert_true(h_log_wait(&dev, "SUBACK", 10000));
    pub("field/site1/wl7/status", "online");
    struct want on = {"wl-7", "online", 1};
    assert_true(h_platform_wait(has_event, &on, 10000));
    h_signal(&dev, SIGKILL);
    h_wait(&dev, 5000);
    struct want off = {"wl-7", "offline", 1};
    assert_true(h_platform_wait(has_event, &off, 10000));
    /* Data brings it back online. */
    int before = count_events(&on);
    pub("field/site1/wl7/data", "{\"water\":{\"depth\":5}}");
    struct wantr w = {"wl-7", "water_depth", 5, 0};
    assert_true(h_platform_wait(has_reading, &w, 10000));
    assert_true(h_platform_wait(has_event, &on, 10000));
    assert_int_equal(count_events(&on), before + 1);
}

static void test_bad_input_counted_no_crash(void **st)
{
    pub("field/site1/unknown9/data", "{\"water\":{\"depth\":1}}");
    pub("field/site1/wl7/data", "{\"water\":{\"depth\":");
    pub("field/site1/wl7/data", "{\"water\":{\"depth\":\"deep\"}}");
    pub("field/site1/wl7/data", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[");
    pub("field/site1/wl7/data", "");
    pub("field/site1/wl7/other", "{\"water\":{\"depth\":1}}");
    /* Over the 256 KiB limit: dropped under its own name, not as a full queue. */
    char big[512], cmd[1600];
    snprintf(big, sizeof(big), "%s/big.bin", h_tmpdir());
    snprintf(cmd, sizeof(cmd),
             "head -c 300000 /dev/zero > %s && mosquitto_pub -h 127.0.0.1 -p %d -q 1 "
             "-t field/site1/wl7/data -f %s",
             big, E.field_port, big);
    assert_int_equal(system(cmd), 0);
    pub("field/site1/wl7/data", "{\"water\":{\"depth\":99.5}}");
    struct wantr w = {"wl-7", "water_depth", 99.5, 0};
    assert_true(h_platform_wait(has_reading, &w, 10000));
    struct wantr u = {"unknown9", "water_depth", 1, 0};
    assert_false(has_reading(&u));
    assert_int_equal(kill(E.gw.pid, 0), 0);
    h_stop(&E.gw);
    /* 4 here and test_sm4_device_payload's wrong key. */
    assert_true(h_log_contains(&E.gw, "unknown 1 malformed 5"));
    assert_true(h_log_contains(&E.gw, "queue_dropped 0 oversize 1"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_readings_mapped),
        cmocka_unit_test(test_cbor_device_mapped),
        cmocka_unit_test(test_sm4_device_payload),
        cmocka_unit_test(test_lwt_offline_and_birth),
        cmocka_unit_test(test_bad_input_counted_no_crash),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
