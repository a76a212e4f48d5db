/* SL651 as stations in the field send it (issue 10), end to end: the project's
 * simulator plays an RTU over TCP that sends a 36H picture in 5 M3 packets and a 38H
 * history of 18 hours of 5-minute levels (04 18 000000 then F5 runs); the real gateway
 * with a real mosquitto; the platform must receive the picture once (an event naming the
 * file kept in the data directory) and 216 five-minute values with the right times.
 * Then a raw-socket RTU checks the centre's side of M3 (a lost packet is NAKed, the
 * resend completes the message, one confirm) and that 45H events are edge-triggered
 * and not raised again after a restart. Every wait is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/integration/harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STATION "0012345678"
#define RAW_STATION "0012345690"

static struct {
    int broker_port, port;
    h_proc broker, gw, sim;
    char config[4096];
} E;

/* ---- platform predicates ---- */

static int count_items(const char *suffix, const char *device, const char *field, const char *value)
{
    cJSON *items = h_platform_items(suffix);
    int n = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        const char *d = cJSON_GetStringValue(cJSON_GetObjectItem(it, "device"));
        const char *v = cJSON_GetStringValue(cJSON_GetObjectItem(it, field));
        if (d && v && !strcmp(d, device) && !strcmp(v, value))
            n++;
    }
    cJSON_Delete(items);
    return n;
}

struct want {
    const char *suffix, *device, *field, *value;
    int n;
};

static int has_n(void *ctx)
{
    struct want *w = ctx;
    return count_items(w->suffix, w->device, w->field, w->value) >= w->n;
}

/* ---- bytes for the raw RTU (CRC written out here, not the codec's) ---- */

static uint16_t crc16(const uint8_t *p, size_t n)
{
    uint16_t r = 0xFFFF;
    for (size_t i = 0; i < n; i++) {
        r ^= p[i];
        for (int b = 0; b < 8; b++)
            r = (r & 1) ? (uint16_t)((r >> 1) ^ 0xA001) : (uint16_t)(r >> 1);
    }
    return r;
}

static const uint8_t raw_addr[5] = {0x00, 0x12, 0x34, 0x56, 0x90};

/* An uplink HEX frame: STX (total 0) or SYN with the counter, which the length counts. */
static size_t frame(uint8_t fn, unsigned total, unsigned no, uint8_t end, const uint8_t *body,
                    size_t blen, uint8_t *out)
{
    size_t k = 0, ctr = total ? 3 : 0;
    out[k++] = 0x7E;
    out[k++] = 0x7E;
    out[k++] = 0x01;
    memcpy(out + k, raw_addr, 5);
    k += 5;
    out[k++] = 0x12;
    out[k++] = 0x34;
    out[k++] = fn;
    out[k++] = (uint8_t)((blen + ctr) >> 8);
    out[k++] = (uint8_t)(blen + ctr);
    if (total) {
        out[k++] = 0x16;
        out[k++] = (uint8_t)(total >> 4);
        out[k++] = (uint8_t)((total & 15) << 4 | no >> 8);
        out[k++] = (uint8_t)no;
    } else {
        out[k++] = 0x02;
    }
    memcpy(out + k, body, blen);
    k += blen;
    out[k++] = end;
    uint16_t c = crc16(out, k);
    out[k++] = (uint8_t)(c >> 8);
    out[k++] = (uint8_t)c;
    return k;
}

/* Reads one downlink frame (14-byte head, then its length, end, CRC). */
static size_t read_down(int fd, uint8_t *b, size_t cap)
{
    if (h_recv_n(fd, b, 14, 10000) != 14)
        return 0;
    size_t len = (size_t)(b[11] & 0x0F) << 8 | b[12];
    if (14 + len + 3 > cap || h_recv_n(fd, b + 14, len + 3, 10000) != len + 3)
        return 0;
    uint16_t c = crc16(b, 14 + len + 1);
    if (b[14 + len + 1] != (c >> 8) || b[14 + len + 2] != (c & 0xFF))
        return 0;
    return 14 + len + 3;
}

/* serial, send time 24-06-01 10:00:00, F1F1 address, type 48, F0F0 24-06-01 10:00. */
static size_t report_head(uint8_t *b, uint16_t serial)
{
    const uint8_t h[] = {(uint8_t)(serial >> 8),
                         (uint8_t)serial,
                         0x24,
                         0x06,
                         0x01,
                         0x10,
                         0x00,
                         0x00,
                         0xF1,
                         0xF1,
                         0x00,
                         0x12,
                         0x34,
                         0x56,
                         0x90,
                         0x48,
                         0xF0,
                         0xF0,
                         0x24,
                         0x06,
                         0x01,
                         0x10,
                         0x00};
    memcpy(b, h, sizeof h);
    return sizeof h;
}

/* ---- setup ---- */

static int start_gateway(void)
{
    if (h_gateway_start(&E.gw, h_write_file("gateway.yaml", E.config)))
        return -1;
    return h_port_wait(E.port, 5000) ? 0 : -1;
}

static int group_setup(void **state)
{
    h_tmpdir();
    E.broker_port = h_free_port();
    E.port = h_free_port();
    if (h_broker_start(&E.broker, E.broker_port) || h_platform_start(E.broker_port))
        return -1;
    snprintf(E.config, sizeof(E.config),
             "gateway:\n  id: gw-field\n  data_dir: %s/data\n  log_level: info\n"
             "  shutdown_drain: 2s\n"
             "store:\n  commit_window: 2ms\n"
             "uplink:\n  uri: tcp://127.0.0.1:%d\n  topic_prefix: t\n  backoff_min: 100ms\n"
             "  backoff_max: 500ms\n"
             "devices:\n"
             "  - id: rtu-sim\n    protocol: sl651\n    address: \"" STATION "\"\n"
             "    password: \"1234\"\n    interval: 1h\n"
             "  - id: rtu-raw\n    protocol: sl651\n    address: \"" RAW_STATION "\"\n"
             "    password: \"1234\"\n    interval: 1h\n"
             "listeners:\n"
             "  - protocol: sl651\n    listen: 127.0.0.1:%d\n",
             h_tmpdir(), E.broker_port, E.port);
    return start_gateway();
}

static int group_teardown(void **state)
{
    h_stop(&E.sim);
    h_stop(&E.gw);
    h_platform_stop();
    h_stop(&E.broker);
    h_cleanup();
    return 0;
}

/* ---- tests ---- */

/* 2024-05-31 16:05 Beijing + 5i minutes, as UTC text. */
static void sample_time(int i, char *out, size_t cap)
{
    int m = 8 * 60 + 5 + 5 * i; /* minutes after 2024-05-31 00:00Z */
    int day = 31 + m / 1440;
    m %= 1440;
    snprintf(out, cap, "2024-%s-%02dT%02d:%02d:00.000Z", day > 31 ? "06" : "05",
             day > 31 ? day - 31 : day, m / 60, m % 60);
}

static void test_sim_picture_and_history(void **state)
{
    char sc[2048];
    snprintf(sc, sizeof(sc),
             "name: field\n"
             "devices:\n"
             "  - id: rtu-sim\n    protocol: sl651\n    connect: 127.0.0.1:%d\n"
             "    address: \"" STATION "\"\n    password: \"1234\"\n    station_type: river\n"
             "    mode: M2\n    confirm_timeout: 5s\n    resends: 2\n    interval: 1h\n"
             "    clock: \"2024-06-01 10:00:00\"\n    spread: false\n"
             "    picture_at: 1s\n    picture_packets: 5\n"
             "    history_at: 2s\n    history_hours: 18\n",
             E.port);
    assert_int_equal(h_sim_start(&E.sim, h_write_file("field.yaml", sc), NULL), 0);

    /* The picture: one event naming the file. */
    struct want pic = {"/events", "rtu-sim", "event", "picture", 1};
    assert_true(h_platform_wait(has_n, &pic, 20000));
    /* 216 five-minute levels from the 18-hour answer. */
    struct want lv = {"/readings", "rtu-sim", "metric", "water_level", 216};
    assert_true(h_platform_wait(has_n, &lv, 20000));

    cJSON *items = h_platform_items("/readings");
    int n = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        const char *d = cJSON_GetStringValue(cJSON_GetObjectItem(it, "device"));
        const char *m = cJSON_GetStringValue(cJSON_GetObjectItem(it, "metric"));
        if (!d || !m || strcmp(d, "rtu-sim") || strcmp(m, "water_level"))
            continue;
        /* sample i = 12h + k: 1.00 m + i cm at 16:05 Beijing (08:05Z) + 5i min */
        char want[40];
        sample_time(n, want, sizeof want);
        const char *obs = cJSON_GetStringValue(cJSON_GetObjectItem(it, "obs"));
        double v = cJSON_GetNumberValue(cJSON_GetObjectItem(it, "value"));
        if (!obs || strcmp(obs, want) || fabs(v - (1.0 + n / 100.0)) > 1e-9)
            fail_msg("sample %d: %s %.3f, expected %s %.3f", n, obs ? obs : "?", v, want,
                     1.0 + n / 100.0);
        n++;
    }
    cJSON_Delete(items);
    assert_int_equal(n, 216);

    /* The M2 confirm went once per message; the sim resent nothing and the picture
     * arrives exactly once even after waiting for any resend. */
    assert_int_equal(count_items("/events", "rtu-sim", "event", "picture"), 1);
    cJSON *ev = h_platform_items("/events");
    const char *detail = NULL;
    cJSON_ArrayForEach(it, ev)
    {
        const char *k = cJSON_GetStringValue(cJSON_GetObjectItem(it, "event"));
        if (k && !strcmp(k, "picture"))
            detail = cJSON_GetStringValue(cJSON_GetObjectItem(it, "detail"));
    }
    assert_non_null(detail);
    char file[256];
    unsigned bytes = 0;
    if (sscanf(detail, "file=%255s bytes=%u", file, &bytes) != 2)
        fail_msg("picture detail: %s", detail);
    char path[600];
    snprintf(path, sizeof(path), "%s/data/%s", h_tmpdir(), file);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal((unsigned)st.st_size, bytes);
    /* 5 packets of 900 body bytes, the last half full, minus the 25-byte head + F3F3. */
    assert_int_equal(bytes, 5 * 900 - 450 - 25);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    uint8_t a[2], z[2];
    assert_int_equal(fread(a, 1, 2, fp), 2);
    fseek(fp, -2, SEEK_END);
    assert_int_equal(fread(z, 1, 2, fp), 2);
    fclose(fp);
    assert_true(a[0] == 0xFF && a[1] == 0xD8 && z[0] == 0xFF && z[1] == 0xD9);
    cJSON_Delete(ev);
    h_stop(&E.sim);
}

/* The centre's side of M3: packets 1, 2, 4 then 5 (ETX); packet 3 is lost. The centre
 * NAKs packet 3; its resend (ETX) completes the message; one confirm names packet 5. */
static void test_m3_lost_packet(void **state)
{
    int fd = h_tcp_connect(E.port);
    assert_true(fd >= 0);
    uint8_t body[600];
    size_t k = report_head(body, 0x0101);
    /* Observation time 10:00, a 38H answer with step 000000 and 4 hours of F5. */
    const uint8_t step[] = {0x04, 0x18, 0x00, 0x00, 0x00, 0xF5, 0xC0};
    memcpy(body + k, step, sizeof step);
    k += sizeof step;
    for (int i = 0; i < 48; i++) {
        body[k++] = 0x01;
        body[k++] = (uint8_t)i; /* 2.56 m + i cm */
    }
    size_t cut[6] = {0, 30, 50, 70, 90, k};
    uint8_t f[256], d[256];
    static const unsigned order[] = {1, 2, 4, 5};
    for (int i = 0; i < 4; i++) {
        unsigned no = order[i];
        size_t n =
            frame(0x38, 5, no, no == 5 ? 0x03 : 0x17, body + cut[no - 1], cut[no] - cut[no - 1], f);
        assert_int_equal(h_send_all(fd, f, n), 0);
    }
    size_t dn = read_down(fd, d, sizeof d);
    assert_true(dn > 0);
    assert_int_equal(d[10], 0x38);
    assert_int_equal(d[13], 0x16); /* SYN: the NAK names a packet */
    assert_int_equal(d[14] << 4 | d[15] >> 4, 5);
    assert_int_equal((d[15] & 15) << 8 | d[16], 3);
    assert_int_equal(d[dn - 3], 0x15); /* NAK */
    size_t n = frame(0x38, 5, 3, 0x03, body + cut[2], cut[3] - cut[2], f);
    assert_int_equal(h_send_all(fd, f, n), 0);
    struct want lv = {"/readings", "rtu-raw", "metric", "water_level", 48};
    assert_true(h_platform_wait(has_n, &lv, 10000));
    close(fd);
}

/* 45H: the first word raises only what is abnormal; the same word again says nothing;
 * after a restart of the gateway the same word still says nothing (the word was kept in
 * the store); a change sends exactly the changed bit. */
static void test_status_edges_survive_restart(void **state)
{
    uint8_t body[64], f[128];
    int fd = h_tcp_connect(E.port);
    assert_true(fd >= 0);
    size_t k = report_head(body, 0x0201);
    const uint8_t zt[] = {0x45, 0x20, 0x00, 0x00, 0x00, 0x82}; /* battery low, door closed */
    memcpy(body + k, zt, sizeof zt);
    size_t n = frame(0x32, 0, 0, 0x03, body, k + sizeof zt, f);
    assert_int_equal(h_send_all(fd, f, n), 0);
    struct want low = {"/events", "rtu-raw", "event", "battery_low", 1};
    assert_true(h_platform_wait(has_n, &low, 10000));
    uint8_t d[64];
    assert_true(read_down(fd, d, sizeof d) > 0); /* the confirm: the events are committed */
    close(fd);

    h_stop(&E.gw);
    assert_int_equal(start_gateway(), 0);
    fd = h_tcp_connect(E.port);
    assert_true(fd >= 0);
    body[1] = 0x02; /* serial 0202, same word */
    n = frame(0x32, 0, 0, 0x03, body, k + sizeof zt, f);
    assert_int_equal(h_send_all(fd, f, n), 0);
    assert_true(read_down(fd, d, sizeof d) > 0);
    /* Now the battery recovers: exactly one event, battery_low ended. */
    body[1] = 0x03;
    body[k + 5] = 0x80;
    n = frame(0x32, 0, 0, 0x03, body, k + sizeof zt, f);
    assert_int_equal(h_send_all(fd, f, n), 0);
    assert_true(read_down(fd, d, sizeof d) > 0);
    struct want two = {"/events", "rtu-raw", "event", "battery_low", 2};
    assert_true(h_platform_wait(has_n, &two, 10000));
    close(fd);
    /* Raised once, ended once, never repeated by the restart; no door event at all. */
    assert_int_equal(count_items("/events", "rtu-raw", "event", "battery_low"), 2);
    assert_int_equal(count_items("/events", "rtu-raw", "event", "door_open"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sim_picture_and_history),
        cmocka_unit_test(test_m3_lost_packet),
        cmocka_unit_test(test_status_edges_survive_restart),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
