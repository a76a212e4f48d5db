/* End-to-end tests of centre-initiated SL651 requests (37 query real-time data,
 * 46 query status, 4A set clock) through the real gateway: the test plays an
 * RTU over loopback TCP (and one over UDP), the commands come from the local
 * admin socket (build/gateway admin) and from the platform topic
 * t/<gw>/cmd/device (mosquitto_pub). Frames are built byte by byte here and
 * every CRC is computed in this file, never through the codec. Every wait is
 * bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define GW_ID "gw-cmd"
#define STATION "0012345678"
#define STATION_UDP "0012345680"
#define REQ_LEN 25 /* 14 header + 8 body (serial, send time) + ENQ + 2 CRC */

static struct {
    int broker_port, port;
    h_proc broker, gw;
    int rtu;  /* the TCP RTU's connection */
    int urtu; /* the UDP RTU's socket */
} E = {.rtu = -1, .urtu = -1};

/* ---- bytes and CRC ---- */

/* Modbus CRC-16 written out bit by bit (poly 0xA001 reflected, init 0xFFFF). */
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

static void unhex(const char *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        sscanf(s + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
}

static uint8_t bcd(int v)
{
    return (uint8_t)((v / 10) << 4 | (v % 10));
}

static int unbcd(uint8_t b)
{
    return (b >> 4) * 10 + (b & 0x0F);
}

/* A HEX uplink frame of station st (password 1234, centre 01) with function fn
 * and the given body, wrapped in STX ... ETX and a CRC. */
static size_t frame_up(uint8_t *f, const char *st, uint8_t fn, const uint8_t *body, size_t b)
{
    size_t n = 0;
    f[n++] = 0x7E;
    f[n++] = 0x7E;
    f[n++] = 0x01; /* centre */
    unhex(st, f + n, 5);
    n += 5;
    f[n++] = 0x12; /* password 1234 */
    f[n++] = 0x34;
    f[n++] = fn;
    f[n++] = (uint8_t)(b >> 8); /* direction 0 = up */
    f[n++] = (uint8_t)b;
    f[n++] = 0x02;
    memcpy(f + n, body, b);
    n += b;
    f[n++] = 0x03;
    uint16_t c = crc16(f, n);
    f[n++] = (uint8_t)(c >> 8);
    f[n++] = (uint8_t)c;
    return n;
}

/* Serial + send time 24-06-02 10:mm:00 (Beijing). */
static size_t head(uint8_t *body, uint16_t serial, int minute)
{
    size_t b = 0;
    body[b++] = (uint8_t)(serial >> 8);
    body[b++] = (uint8_t)serial;
    uint8_t t[6] = {bcd(24), bcd(6), bcd(2), bcd(10), bcd(minute), 0};
    memcpy(body + b, t, 6);
    return b + 6;
}

/* A report (fn 32) or a 37 answer: F1F1 station + type 48 (river), F0F0 obs
 * 24-06-02 10:mm, water level 39 23 = level_mm / 1000 m as 4 BCD bytes. */
static size_t build_level(uint8_t *f, const char *st, uint8_t fn, uint16_t serial, int minute,
                          unsigned level_mm)
{
    uint8_t body[64];
    size_t b = head(body, serial, minute);
    body[b++] = 0xF1;
    body[b++] = 0xF1;
    unhex(st, body + b, 5);
    b += 5;
    body[b++] = 0x48;
    body[b++] = 0xF0;
    body[b++] = 0xF0;
    uint8_t t[5] = {bcd(24), bcd(6), bcd(2), bcd(10), bcd(minute)};
    memcpy(body + b, t, 5);
    b += 5;
    body[b++] = 0x39;
    body[b++] = 0x23; /* 4 bytes, 3 decimals */
    body[b++] = bcd((int)(level_mm / 1000000 % 100));
    body[b++] = bcd((int)(level_mm / 10000 % 100));
    body[b++] = bcd((int)(level_mm / 100 % 100));
    body[b++] = bcd((int)(level_mm % 100));
    return frame_up(f, st, fn, body, b);
}

/* A 46 answer: F1F1 station (no type), status element 45 20 with a 32-bit bitmap. */
static size_t build_status(uint8_t *f, const char *st, uint16_t serial, int minute, uint32_t bits)
{
    uint8_t body[64];
    size_t b = head(body, serial, minute);
    body[b++] = 0xF1;
    body[b++] = 0xF1;
    unhex(st, body + b, 5);
    b += 5;
    body[b++] = 0x45;
    body[b++] = 0x20; /* 4 bytes */
    body[b++] = (uint8_t)(bits >> 24);
    body[b++] = (uint8_t)(bits >> 16);
    body[b++] = (uint8_t)(bits >> 8);
    body[b++] = (uint8_t)bits;
    return frame_up(f, st, 0x46, body, b);
}

/* ---- sockets ---- */

static int tcp_connect(void)
{
    int fd = h_tcp_connect(E.port);
    assert_true(fd >= 0);
    return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
    assert_int_equal(h_send_all(fd, p, n), 0);
}

static void send_udp(int fd, const void *p, size_t n)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)E.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(sendto(fd, p, n, 0, (struct sockaddr *)&a, sizeof(a)), (ssize_t)n);
}

/* Reads exactly n bytes within timeout_ms. Returns bytes read. */
/* One datagram within timeout_ms: its length, or 0. */
static size_t recv_dgram(int fd, uint8_t *p, size_t cap, int timeout_ms)
{
    struct pollfd pf = {fd, POLLIN, 0};
    if (poll(&pf, 1, timeout_ms) != 1)
        return 0;
    ssize_t k = recv(fd, p, cap, 0);
    return k > 0 ? (size_t)k : 0;
}

/* ---- what the gateway sends ---- */

/* Checks a HEX downlink frame of STATION-style address st: station first, then
 * centre 01, password 1234, function fn, direction down with length 8, STX,
 * end character end, CRC computed here. Returns the frame's serial and its
 * send time as UTC seconds (the frame carries Beijing time). */
static unsigned check_down(const uint8_t *c, const char *st, uint8_t fn, uint8_t end, time_t *utc)
{
    uint8_t a[5];
    unhex(st, a, 5);
    assert_int_equal(c[0], 0x7E);
    assert_int_equal(c[1], 0x7E);
    assert_memory_equal(c + 2, a, 5);
    assert_int_equal(c[7], 0x01);
    assert_int_equal(c[8], 0x12);
    assert_int_equal(c[9], 0x34);
    assert_int_equal(c[10], fn);
    assert_int_equal(c[11] >> 4, 0x8); /* direction: down */
    assert_int_equal(((c[11] & 0x0F) << 8) | c[12], 8);
    assert_int_equal(c[13], 0x02);
    assert_int_equal(c[22], end);
    uint16_t want = crc16(c, 23);
    assert_int_equal(c[23], want >> 8);
    assert_int_equal(c[24], want & 0xFF);
    if (utc) {
        struct tm tm = {0};
        tm.tm_year = 100 + unbcd(c[16]);
        tm.tm_mon = unbcd(c[17]) - 1;
        tm.tm_mday = unbcd(c[18]);
        tm.tm_hour = unbcd(c[19]);
        tm.tm_min = unbcd(c[20]);
        tm.tm_sec = unbcd(c[21]);
        *utc = timegm(&tm) - 8 * 3600; /* Beijing = UTC+8 */
    }
    return (unsigned)(c[14] << 8 | c[15]);
}

/* Reads one request from fd (a stream, or a datagram socket when udp) and
 * checks it (end ENQ, send time = now within 5 s). */
static unsigned expect_request(int fd, int udp, const char *st, uint8_t fn)
{
    uint8_t c[64];
    if (udp)
        assert_int_equal(recv_dgram(fd, c, sizeof(c), 10000), REQ_LEN);
    else
        assert_int_equal(h_recv_n(fd, c, REQ_LEN, 10000), REQ_LEN);
    time_t t;
    unsigned serial = check_down(c, st, fn, 0x05, &t);
    time_t now = time(NULL);
    if (llabs((long long)(t - now)) > 5)
        fail_msg("request time %lld is not the gateway's clock (now %lld)", (long long)t,
                 (long long)now);
    return serial;
}

/* ---- the admin client and the platform ---- */

/* Runs build/gateway admin device <id> <verb> [arg]; returns its exit status
 * and its output in out. */
static int admin(const char *id, const char *verb, const char *arg, char *out, size_t cap)
{
    char sock[300];
    snprintf(sock, sizeof(sock), "%s/data/admin.sock", h_tmpdir());
    const char *args[] = {"device", id, verb, arg, NULL};
    return h_admin(sock, args, out, cap);
}

static void platform_cmd(const char *payload)
{
    assert_int_equal(
        h_publish(E.broker_port, "t/" GW_ID "/cmd/device", payload, strlen(payload), NULL), 0);
}

struct want {
    const char *device, *metric;
    double value;
    const char *obs;
};

static int has_reading(void *ctx)
{
    const struct want *w = ctx;
    cJSON *items = h_platform_items("/readings");
    int n = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        const char *d = cJSON_GetStringValue(cJSON_GetObjectItem(it, "device"));
        const char *m = cJSON_GetStringValue(cJSON_GetObjectItem(it, "metric"));
        const char *o = cJSON_GetStringValue(cJSON_GetObjectItem(it, "obs"));
        double v = cJSON_GetNumberValue(cJSON_GetObjectItem(it, "value"));
        if (d && m && o && !strcmp(d, w->device) && !strcmp(m, w->metric) &&
            fabs(v - w->value) < 1e-9 && !strcmp(o, w->obs))
            n++;
    }
    cJSON_Delete(items);
    return n > 0;
}

struct ev {
    const char *device, *event;
    int active;
};

static int has_event(void *ctx)
{
    const struct ev *w = ctx;
    cJSON *items = h_platform_items("/events");
    int n = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        const char *d = cJSON_GetStringValue(cJSON_GetObjectItem(it, "device"));
        const char *k = cJSON_GetStringValue(cJSON_GetObjectItem(it, "event"));
        cJSON *a = cJSON_GetObjectItem(it, "active");
        if (d && k && !strcmp(d, w->device) && !strcmp(k, w->event) &&
            cJSON_IsTrue(a) == (w->active != 0))
            n++;
    }
    cJSON_Delete(items);
    return n > 0;
}

/* ---- setup ---- */

static int group_setup(void **state)
{
    h_tmpdir();
    E.port = h_free_port();
    if (h_peers_start(&E.broker, &E.broker_port))
        return -1;
    /* Platform commands are only heard once the gateway subscribed: h_gateway_with waits. */
    return h_gateway_with(&E.gw, GW_ID, E.broker_port, E.port,
                          "  topic_prefix: t\n"
                          "devices:\n"
                          "  - id: rtu-q\n    protocol: sl651\n    address: \"" STATION "\"\n"
                          "    password: \"1234\"\n    confirm_end: esc\n    interval: 5m\n"
                          "  - id: rtu-off\n    protocol: sl651\n    address: \"0012345679\"\n"
                          "    password: \"1234\"\n    interval: 5m\n"
                          "  - id: rtu-u\n    protocol: sl651\n    address: \"" STATION_UDP "\"\n"
                          "    password: \"1234\"\n    interval: 5m\n"
                          "listeners:\n"
                          "  - protocol: sl651\n    listen: 127.0.0.1:%d\n    transport: both\n",
                          E.port);
}

static int group_teardown(void **state)
{
    if (E.rtu >= 0)
        close(E.rtu);
    if (E.urtu >= 0)
        close(E.urtu);
    /* A clean exit: no handle left open, no leak under ASan. */
    return h_peers_stop(&E.gw, NULL, &E.broker) == 0 ? 0 : -1;
}

/* ---- tests ---- */

/* The RTU connects and reports; the admin interface's "query" sends a 37
 * request on that connection; the RTU's 37 answer becomes a reading. */
static void test_query_admin(void **state)
{
    uint8_t f[128], c[REQ_LEN];
    E.rtu = tcp_connect();
    size_t n = build_level(f, STATION, 0x32, 1, 0, 1000);
    send_all(E.rtu, f, n);
    assert_int_equal(h_recv_n(E.rtu, c, sizeof(c), 10000), sizeof(c));
    check_down(c, STATION, 0x32, 0x1B, NULL); /* the confirm, end ESC: the RTU stays online */

    char out[512];
    assert_int_equal(admin("rtu-q", "query", NULL, out, sizeof(out)), 0);
    unsigned said = 0;
    const char *p = strstr(out, "sent 37 serial ");
    if (!p || sscanf(p, "sent 37 serial %u", &said) != 1 || !strstr(out, "to " STATION))
        fail_msg("admin said: %s", out);
    unsigned serial = expect_request(E.rtu, 0, STATION, 0x37);
    assert_int_equal(serial, said);

    /* The answer: 3.210 m at 10:05 Beijing = 02:05Z. It is not confirmed (M4). */
    n = build_level(f, STATION, 0x37, (uint16_t)serial, 5, 3210);
    send_all(E.rtu, f, n);
    struct want w = {"rtu-q", "water_level", 3.21, "2024-06-02T02:05:00.000Z"};
    if (!h_platform_wait(has_reading, &w, 10000))
        fail_msg("the 37 answer's water level did not reach the platform");
}

/* "status" sends 46; the 46 answer's element 45 becomes status events. */
static void test_status_admin(void **state)
{
    char out[512];
    assert_int_equal(admin("rtu-q", "status", NULL, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "sent 46 serial "));
    unsigned serial = expect_request(E.rtu, 0, STATION, 0x46);
    uint8_t f[128];
    /* bit 1 battery low; bit 7 = 1: door closed. */
    size_t n = build_status(f, STATION, (uint16_t)serial, 6, 0x00000082);
    send_all(E.rtu, f, n);
    /* Edge-triggered (issue 10): the first word raises what is abnormal (battery low);
     * the closed door was never open, so no door event is sent. */
    struct ev low = {"rtu-q", "battery_low", 1};
    assert_true(h_platform_wait(has_event, &low, 10000));
}

/* The platform's cmd/device topic: "clock" sends 4A with the gateway's time.
 * These are the next bytes on the connection: the 37 and 46 answers (already
 * stored, so any reply to them would have been written) got no confirm. */
static void test_clock_platform(void **state)
{
    platform_cmd("{\"device\":\"rtu-q\",\"verb\":\"clock\"}");
    expect_request(E.rtu, 0, STATION, 0x4A);
    assert_true(h_log_wait(&E.gw, "command clock on rtu-q: done", 10000));
}

/* The reply to platform command `id` with `status`, or NULL (caller deletes). */
static cJSON *reply_of(const char *id, const char *status)
{
    cJSON *found = NULL;
    for (size_t i = 0; !found && i < h_platform_count(); i++) {
        h_msg m;
        if (h_platform_get(i, &m))
            break;
        cJSON *doc = strstr(m.topic, "/reply") ? cJSON_Parse(m.payload) : NULL;
        const char *rid = cJSON_GetStringValue(cJSON_GetObjectItem(doc, "id"));
        const char *st = cJSON_GetStringValue(cJSON_GetObjectItem(doc, "status"));
        if (rid && st && !strcmp(rid, id) && !strcmp(st, status))
            found = cJSON_Duplicate(doc, 1);
        cJSON_Delete(doc);
        h_msg_free(&m);
    }
    return found;
}

static int has_done(void *ctx)
{
    cJSON *r = reply_of(ctx, "done");
    cJSON_Delete(r);
    return r != NULL;
}

static int has_accepted(void *ctx)
{
    cJSON *r = reply_of(ctx, "accepted");
    cJSON_Delete(r);
    return r != NULL;
}

/* A query from the platform is accepted when sent and done with the
 * station's 37 answer, which the reply names (issue 11). */
static void test_query_platform_answer(void **state)
{
    platform_cmd("{\"id\":\"q-1\",\"device\":\"rtu-q\",\"verb\":\"query\"}");
    unsigned serial = expect_request(E.rtu, 0, STATION, 0x37);
    assert_true(h_platform_wait(has_accepted, "q-1", 10000));
    assert_false(has_done("q-1")); /* not before the answer */
    uint8_t f[128];
    size_t n = build_level(f, STATION, 0x37, (uint16_t)serial, 7, 3300);
    send_all(E.rtu, f, n);
    assert_true(h_platform_wait(has_done, "q-1", 10000));
    cJSON *r = reply_of("q-1", "done");
    const cJSON *res = cJSON_GetObjectItem(r, "result");
    char want[64];
    snprintf(want, sizeof(want), "answer 37 serial %u", serial);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(res, "answer")), want);
    snprintf(want, sizeof(want), "sent 37 serial %u to " STATION, serial);
    assert_non_null(strstr(cJSON_GetStringValue(cJSON_GetObjectItem(res, "reply")), want));
    cJSON_Delete(r);
}

/* A station heard over UDP gets its request at the address it sent from. */
static void test_query_udp(void **state)
{
    uint8_t f[128], c[64];
    E.urtu = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(E.urtu >= 0);
    size_t n = build_level(f, STATION_UDP, 0x32, 7, 10, 2000);
    send_udp(E.urtu, f, n);
    assert_int_equal(recv_dgram(E.urtu, c, sizeof(c), 10000), REQ_LEN);
    check_down(c, STATION_UDP, 0x32, 0x04, NULL);
    char out[512];
    assert_int_equal(admin("rtu-u", "query", NULL, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "by UDP"));
    expect_request(E.urtu, 1, STATION_UDP, 0x37);
}

/* A station that is not connected: a clear error, admin exit 1; the same once
 * the RTU hung up. An unknown device too. */
static void test_not_connected(void **state)
{
    char out[512];
    assert_int_equal(admin("rtu-off", "query", NULL, out, sizeof(out)), 1);
    if (!strstr(out, "error: station not connected"))
        fail_msg("admin said: %s", out);
    assert_int_equal(admin("no-such", "query", NULL, out, sizeof(out)), 1);
    assert_non_null(strstr(out, "error: no device"));

    close(E.rtu);
    E.rtu = -1;
    /* The gateway sees the hang-up on its own schedule: ask again, bounded. */
    int rc = -1;
    for (int i = 0; i < 100 && rc != 1; i++) {
        rc = admin("rtu-q", "query", NULL, out, sizeof(out));
        if (rc != 1)
            poll(NULL, 0, 50);
    }
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "error: station not connected"));
}

/* Unknown verbs and stray arguments are errors; nothing is sent. */
static void test_unknown_verb(void **state)
{
    char out[512];
    assert_int_equal(admin("rtu-u", "reboot", NULL, out, sizeof(out)), 1);
    if (!strstr(out, "error: unknown verb 'reboot' (query, status, clock)"))
        fail_msg("admin said: %s", out);
    assert_int_equal(admin("rtu-u", "query", "now", out, sizeof(out)), 1);
    assert_non_null(strstr(out, "takes no argument"));
    /* Nothing reached the UDP RTU for either. */
    struct pollfd pf = {E.urtu, POLLIN, 0};
    assert_int_equal(poll(&pf, 1, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query_admin),    cmocka_unit_test(test_status_admin),
        cmocka_unit_test(test_clock_platform), cmocka_unit_test(test_query_platform_answer),
        cmocka_unit_test(test_query_udp),      cmocka_unit_test(test_not_connected),
        cmocka_unit_test(test_unknown_verb),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
