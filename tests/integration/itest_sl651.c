/* End-to-end tests of the SL651 centre: the test plays the RTUs over loopback
 * TCP and UDP against the real gateway, with a real mosquitto and the
 * in-process platform. Frames come from the published vectors
 * ($GW_VECTORS/sl651.txt), the project's own vectors (tests/vectors/sl651_own.txt)
 * and frames built here. Expected values, times, confirm bytes and CRCs are
 * computed by hand in this file and the harness, never through the codec.
 * Every wait is bounded. */
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
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static struct {
    int broker_port, port;
    h_proc broker, gw;
} E;

/* ---- bytes, CRC and vectors ---- */

static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
    size_t n = 0;
    while (s[0] && s[1] && n < cap) {
        unsigned v;
        if (sscanf(s, "%2x", &v) != 1)
            break;
        out[n++] = (uint8_t)v;
        s += 2;
    }
    return n;
}

typedef struct vec {
    char name[8];
    uint8_t b[2048];
    size_t n;
} vec;

static vec shared_v[8], own_v[32];
static size_t nshared, nown;

/* Frame lines are the lines that do not start with '#'. In the own file the
 * preceding "# A<n>." line names the frame. */
static size_t load_vectors(const char *path, vec *v, size_t cap)
{
    FILE *f = fopen(path, "r");
    char line[4096], name[8] = "";
    size_t n = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f) && n < cap) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#') {
            if (line[1] == ' ' && line[2] == 'A' && strchr(line, '.'))
                snprintf(name, sizeof(name), "%.*s", (int)(strchr(line, '.') - line - 2), line + 2);
            continue;
        }
        if (!line[0])
            continue;
        snprintf(v[n].name, sizeof(v[n].name), "%s", name);
        v[n].n = unhex(line, v[n].b, sizeof(v[n].b));
        n++;
        name[0] = '\0';
    }
    fclose(f);
    return n;
}

static const vec *own(const char *name)
{
    for (size_t i = 0; i < nown; i++)
        if (!strcmp(own_v[i].name, name))
            return &own_v[i];
    fail_msg("vector %s not found", name);
    return NULL;
}

/* A HEX uplink report (h_sl651_report): serial + send time 24-06-02 10:mm:00,
 * station + type 48, obs 24-06-02 10:mm, one water level element 39 23 with
 * value/1000 m as 4 BCD bytes. */
static size_t build_report(uint8_t *f, const char *station, uint16_t pw, uint8_t fn,
                           uint16_t serial, int minute, unsigned level_mm)
{
    const int t[5] = {24, 6, 2, 10, minute};
    return h_sl651_report(f, station, pw, fn, serial, t, level_mm);
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

/* Reads exactly n bytes within timeout_ms. Returns bytes read (< n on timeout
 * or close). */
#define CONFIRM_LEN 25

/* Checks a HEX confirm: downlink header with the station first, function fn,
 * serial and send time echoed from the report, end character, and a CRC that
 * this file computes. */
static void check_confirm(const uint8_t *c, const uint8_t *report, uint8_t end)
{
    assert_int_equal(c[0], 0x7E);
    assert_int_equal(c[1], 0x7E);
    assert_memory_equal(c + 2, report + 3, 5); /* station first */
    assert_int_equal(c[7], report[2]);         /* then the centre */
    assert_memory_equal(c + 8, report + 8, 2); /* password */
    assert_int_equal(c[10], report[10]);       /* function */
    assert_int_equal(c[11], 0x80);             /* downlink, length 8 */
    assert_int_equal(c[12], 0x08);
    assert_int_equal(c[13], 0x02);
    size_t body = report[13] == 0x16 ? 17 : 14;    /* SYN carries 3 packet bytes */
    assert_memory_equal(c + 14, report + body, 8); /* serial + send time */
    assert_int_equal(c[22], end);
    uint16_t want = h_crc16(c, 23);
    assert_int_equal(c[23], want >> 8);
    assert_int_equal(c[24], want & 0xFF);
}

/* ---- what the platform received ---- */

struct want {
    const char *device, *metric;
    double value;
    const char *obs;     /* ISO text or NULL */
    const char *quality; /* or NULL */
};

static int count_readings(const struct want *w)
{
    cJSON *items = h_platform_items("/readings");
    int n = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        const char *d = cJSON_GetStringValue(cJSON_GetObjectItem(it, "device"));
        const char *m = cJSON_GetStringValue(cJSON_GetObjectItem(it, "metric"));
        const char *o = cJSON_GetStringValue(cJSON_GetObjectItem(it, "obs"));
        const char *q = cJSON_GetStringValue(cJSON_GetObjectItem(it, "quality"));
        double v = cJSON_GetNumberValue(cJSON_GetObjectItem(it, "value"));
        if (!d || !m || strcmp(d, w->device) || strcmp(m, w->metric))
            continue;
        if (fabs(v - w->value) > 1e-9)
            continue;
        if (w->obs && (!o || strcmp(o, w->obs)))
            continue;
        if (w->quality && (!q || strcmp(q, w->quality)))
            continue;
        n++;
    }
    cJSON_Delete(items);
    return n;
}

static int has_reading(void *ctx)
{
    return count_readings(ctx) > 0;
}

static void wait_reading(const char *device, const char *metric, double value, const char *obs,
                         const char *quality)
{
    struct want w = {device, metric, value, obs, quality};
    if (!h_platform_wait(has_reading, &w, 10000))
        fail_msg("no reading %s %s=%g obs %s at the platform", device, metric, value,
                 obs ? obs : "-");
}

static int count_value(const char *device, const char *metric, double value)
{
    struct want w = {device, metric, value, NULL, NULL};
    return count_readings(&w);
}

struct ev {
    const char *device, *event;
    int n;
};

static int count_events(const char *device, const char *event)
{
    cJSON *items = h_platform_items("/events");
    int n = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        const char *d = cJSON_GetStringValue(cJSON_GetObjectItem(it, "device"));
        const char *k = cJSON_GetStringValue(cJSON_GetObjectItem(it, "event"));
        if (d && k && !strcmp(d, device) && !strcmp(k, event))
            n++;
    }
    cJSON_Delete(items);
    return n;
}

static int has_events(void *ctx)
{
    struct ev *e = ctx;
    return count_events(e->device, e->event) >= e->n;
}

/* ---- setup ---- */

#define PER_SOURCE "40"
#define FLOOD 4096 /* the listener's default max_connections */

static int group_setup(void **state)
{
    const char *vdir = getenv("GW_VECTORS") ? getenv("GW_VECTORS") : "../shared/vectors";
    char path[512];
    snprintf(path, sizeof(path), "%s/sl651.txt", vdir);
    nshared = load_vectors(path, shared_v, 8);
    nown = load_vectors("tests/vectors/sl651_own.txt", own_v, 32);
    if (nshared < 3 || nown < 18) {
        fprintf(stderr, "vectors missing (%zu shared from %s, %zu own)\n", nshared, path, nown);
        return -1;
    }
    h_tmpdir();
    E.port = h_free_port();
    if (h_peers_start(&E.broker, &E.broker_port))
        return -1;
    char text[4096];
    snprintf(text, sizeof(text),
             "gateway:\n  id: gw-sl\n  data_dir: %s/data\n  log_level: info\n"
             "  shutdown_drain: 2s\n"
             "store:\n  commit_window: 2ms\n"
             "uplink:\n  uri: tcp://127.0.0.1:%d\n  topic_prefix: t\n  backoff_min: 100ms\n"
             "  backoff_max: 500ms\n"
             "devices:\n"
             "  - id: rtu-a\n    protocol: sl651\n    address: \"0012345678\"\n"
             "    password: \"1234\"\n    interval: 5m\n    base_level: 100\n"
             "    correction: 0.5\n"
             "    elements:\n      - {id: \"38\", metric: battery_voltage, unit: V}\n"
             "  - id: rtu-b\n    protocol: sl651\n    address: \"0099000001\"\n"
             "    password: \"ABCD\"\n    confirm_end: esc\n    interval: 5m\n"
             "  - id: rtu-c\n    protocol: sl651\n    address: \"0099000002\"\n"
             "    password: \"0001\"\n    interval: 1s\n    timeout: 500ms\n"
             "    offline_after: 2\n"
             "listeners:\n"
             "  - protocol: sl651\n    listen: 127.0.0.1:%d\n    transport: both\n"
             "    auth_timeout: 30s\n    max_per_source: " PER_SOURCE "\n",
             h_tmpdir(), E.broker_port, E.port);
    if (h_gateway_start(&E.gw, h_write_file("gateway.yaml", text)))
        return -1;
    return h_port_wait(E.port, 5000) ? 0 : -1;
}

static int group_teardown(void **state)
{
    /* A clean exit: no handle left open, no leak under ASan. */
    return h_peers_stop(&E.gw, NULL, &E.broker) == 0 ? 0 : -1;
}

/* ---- tests ---- */

/* Published and own vectors over one TCP connection with garbage between
 * frames: reports are confirmed in order (serial and time echoed, CRC right),
 * keep-alives, answers, ETB packets, custom functions and downlinks are not;
 * readings reach the platform with hand-computed values, units and times. */
static void test_vectors_tcp(void **state)
{
    /* False starts included: 7E without a second 7E, SOH followed by non-hex. */
    static const uint8_t junk[] = {0x00, 0xFF, 'g', 'a', 'r', 'b', 0x7E, 0x01, 'x', 0x7E};
    const char *seq[] = {"V1", "V2",  "A2",  "A3",  "A4",  "A5",  "A6", "A8",
                         "A9", "A13", "A14", "A15", "A16", "A17", "A7"};
    const char *confirmed[] = {"V2", "A2", "A3", "A4", "A5", "A6", "A7"};
    int fd = tcp_connect();
    for (size_t i = 0; i < sizeof(seq) / sizeof(seq[0]); i++) {
        const vec *v = seq[i][0] == 'V' ? &shared_v[seq[i][1] - '1'] : own(seq[i]);
        send_all(fd, junk, sizeof(junk));
        send_all(fd, v->b, v->n);
    }
    for (size_t i = 0; i < sizeof(confirmed) / sizeof(confirmed[0]); i++) {
        const vec *v = confirmed[i][0] == 'V' ? &shared_v[1] : own(confirmed[i]);
        uint8_t c[CONFIRM_LEN];
        assert_int_equal(h_recv_n(fd, c, sizeof(c), 10000), sizeof(c));
        check_confirm(c, v->b, 0x04); /* rtu-a: confirm_end eot (the default) */
    }
    close(fd);

    /* Vector 2 (2059-10-11 15:49 Beijing = 07:49Z): level 0.127 m relative, base 100 m,
     * correction 0.5 m; element 38 renamed by the override. */
    const char *t2 = "2059-10-11T07:49:00.000Z";
    wait_reading("rtu-a", "water_level", 100.627, t2, "good");
    wait_reading("rtu-a", "rain_current", 0.5, t2, "good");
    wait_reading("rtu-a", "rain_total", 0.5, t2, "good");
    wait_reading("rtu-a", "battery_voltage", 11.15, t2, "good");
    /* A2: 08:00, 08:05 and a missing 08:10 (Beijing), 5-minute steps. */
    wait_reading("rtu-a", "water_level", 101.75, "2024-06-01T00:00:00.000Z", "good");
    wait_reading("rtu-a", "water_level", 101.76, "2024-06-01T00:05:00.000Z", "good");
    wait_reading("rtu-a", "water_level", 0, "2024-06-01T00:10:00.000Z", "bad");
    /* A3: 09:00 Beijing; negative air temperature. */
    wait_reading("rtu-a", "air_temperature", -5.2, "2024-06-01T01:00:00.000Z", "good");
    wait_reading("rtu-a", "rain_total", 1234.5, "2024-06-01T01:00:00.000Z", "good");
    /* A5: F4 five-minute rain ending at 09:00 (08:05 first), F5 levels plus base. */
    wait_reading("rtu-a", "rain_5min", 0.0, "2024-06-01T00:05:00.000Z", "good");
    wait_reading("rtu-a", "rain_5min", 2.0, "2024-06-01T01:00:00.000Z", "good");
    wait_reading("rtu-a", "water_level", 112.95, "2024-06-01T01:00:00.000Z", "good");
    /* A8 (a 37 answer, not confirmed) still delivers its data: 12.345 + 100.5. */
    wait_reading("rtu-a", "water_level", 112.845, NULL, "good");
    /* A6 status: door open and battery low events. */
    struct ev e = {"rtu-a", "door_open", 1};
    assert_true(h_platform_wait(has_events, &e, 10000));
    struct ev on = {"rtu-a", "online", 1};
    assert_true(h_platform_wait(has_events, &on, 10000));
}

/* ASCII frames on their own connection: confirmed in ASCII, values decoded. */
static void test_ascii(void **state)
{
    int fd = tcp_connect();
    const vec *a10 = own("A10"), *a11 = own("A11"), *a12 = own("A12");
    send_all(fd, a12->b, a12->n); /* keep-alive: no reply */
    send_all(fd, a10->b, a10->n);
    send_all(fd, "zz", 2);
    send_all(fd, a11->b, a11->n);
    /* ASCII confirm: SOH + 2*(5+1+2+1) header chars + 4 length chars + STX + 16 body
     * chars + EOT + 4 CRC chars = 1+18+4+1+16+1+4 = 45 bytes. */
    for (int i = 0; i < 2; i++) {
        uint8_t c[45];
        assert_int_equal(h_recv_n(fd, c, sizeof(c), 10000), sizeof(c));
        assert_int_equal(c[0], 0x01);
        assert_memory_equal(c + 1, "0012345678", 10); /* station first */
        assert_memory_equal(c + 11, "01", 2);
        assert_memory_equal(c + 17, i == 0 ? "32" : "33", 2);
        assert_memory_equal(c + 19, "8010", 4); /* down, 16 characters */
        assert_int_equal(c[23], 0x02);
        /* serial 3 / 4 and the send time echoed */
        assert_memory_equal(c + 24, i == 0 ? "0003240601080000" : "0004240601081500", 16);
        assert_int_equal(c[40], 0x04);
        char crc[5];
        snprintf(crc, sizeof(crc), "%04X", h_crc16(c, 41));
        assert_memory_equal(c + 41, crc, 4);
    }
    close(fd);
    /* A10: Z -1.25 relative -> 100 - 1.25 + 0.5; PJ 1.5 mm. */
    wait_reading("rtu-a", "water_level", 99.25, "2024-06-01T00:00:00.000Z", "good");
    wait_reading("rtu-a", "rain_current", 1.5, "2024-06-01T00:00:00.000Z", "good");
    /* A11: Z 3.456 at 08:15 -> 3.456 + 100 + 0.5. */
    wait_reading("rtu-a", "water_level", 103.956, "2024-06-01T00:15:00.000Z", "good");
}

/* A resent report (same serial and send time) is confirmed again but stored once. */
static void test_duplicate(void **state)
{
    uint8_t f[128], g[128], c[CONFIRM_LEN];
    size_t n = build_report(f, "0099000001", 0xABCD, 0x32, 100, 1, 1234);
    size_t m = build_report(g, "0099000001", 0xABCD, 0x32, 101, 2, 2345);
    int fd = tcp_connect();
    send_all(fd, f, n);
    assert_int_equal(h_recv_n(fd, c, sizeof(c), 10000), sizeof(c));
    check_confirm(c, f, 0x1B); /* rtu-b: confirm_end esc */
    send_all(fd, f, n);        /* the RTU missed the confirm and resends */
    assert_int_equal(h_recv_n(fd, c, sizeof(c), 10000), sizeof(c));
    check_confirm(c, f, 0x1B);
    send_all(fd, g, m);
    assert_int_equal(h_recv_n(fd, c, sizeof(c), 10000), sizeof(c));
    check_confirm(c, g, 0x1B);
    close(fd);
    /* Items arrive in sequence order: once 2.345 is there, a duplicate would be too. */
    wait_reading("rtu-b", "water_level", 2.345, "2024-06-02T02:02:00.000Z", "good");
    assert_int_equal(count_value("rtu-b", "water_level", 1.234), 1);
}

/* A report resent after 130 others is confirmed again but stored once: the
 * replay window reaches further back than a burst of reports. */
static void test_replay_after_130(void **state)
{
    uint8_t f[128], g[128], c[CONFIRM_LEN];
    size_t n = build_report(f, "0099000001", 0xABCD, 0x32, 5000, 30, 77777);
    int fd = tcp_connect();
    send_all(fd, f, n);
    assert_int_equal(h_recv_n(fd, c, sizeof(c), 10000), sizeof(c));
    for (int i = 0; i < 130; i++) {
        size_t m = build_report(g, "0099000001", 0xABCD, 0x32, (uint16_t)(5001 + i), i % 60,
                                50000u + (unsigned)i);
        send_all(fd, g, m);
        assert_int_equal(h_recv_n(fd, c, sizeof(c), 10000), sizeof(c));
    }
    send_all(fd, f, n); /* resent after 130 others */
    assert_int_equal(h_recv_n(fd, c, sizeof(c), 10000), sizeof(c));
    check_confirm(c, f, 0x1B);
    size_t m = build_report(g, "0099000001", 0xABCD, 0x32, 5200, 31, 88888);
    send_all(fd, g, m);
    assert_int_equal(h_recv_n(fd, c, sizeof(c), 10000), sizeof(c));
    close(fd);
    wait_reading("rtu-b", "water_level", 88.888, NULL, "good");
    assert_int_equal(count_value("rtu-b", "water_level", 50.129), 1);
    assert_int_equal(count_value("rtu-b", "water_level", 77.777), 1);
}

/* With store.obs_max_age / obs_max_ahead set (a second gateway), reports
 * dated a year back or ahead are refused and counted; one dated now is stored. */
static void test_obs_window(void **state)
{
    int port = h_free_port();
    char text[2048], cmd[1024], out[2048];
    snprintf(text, sizeof(text),
             "gateway:\n  id: gw-sl2\n  data_dir: %s/data2\n  log_level: info\n"
             "store:\n  commit_window: 2ms\n  obs_max_age: 30d\n  obs_max_ahead: 1h\n"
             "uplink:\n  uri: tcp://127.0.0.1:%d\n  topic_prefix: t\n"
             "devices:\n"
             "  - id: rtu-t\n    protocol: sl651\n    address: \"0099000003\"\n"
             "    password: \"0003\"\n    interval: 5m\n"
             "listeners:\n"
             "  - protocol: sl651\n    listen: 127.0.0.1:%d\n",
             h_tmpdir(), E.broker_port, port);
    h_proc gw;
    assert_int_equal(h_gateway_start(&gw, h_write_file("gateway2.yaml", text)), 0);
    assert_true(h_port_wait(port, 5000));
    /* The station's clock is Beijing time. */
    time_t now = time(NULL) + 8 * 3600;
    struct tm tm;
    gmtime_r(&now, &tm);
    const int t[3][5] = {{(tm.tm_year - 1) % 100, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min},
                         {(tm.tm_year + 1) % 100, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min},
                         {tm.tm_year % 100, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min}};
    const unsigned level[3] = {11111, 22222, 33333};
    for (int i = 0; i < 3; i++) {
        uint8_t f[128];
        size_t n =
            h_sl651_report(f, "0099000003", 0x0003, 0x32, (uint16_t)(10 + i), t[i], level[i]);
        int fd = h_tcp_connect(port);
        assert_true(fd >= 0);
        send_all(fd, f, n);
        if (i == 2) {
            uint8_t c[CONFIRM_LEN];
            assert_int_equal(h_recv_n(fd, c, sizeof(c), 10000), sizeof(c));
            check_confirm(c, f, 0x04);
        }
        close(fd);
    }
    wait_reading("rtu-t", "water_level", 33.333, NULL, "good");
    assert_int_equal(count_value("rtu-t", "water_level", 11.111), 0);
    assert_int_equal(count_value("rtu-t", "water_level", 22.222), 0);
    static const char *const args[] = {"status", NULL};
    snprintf(cmd, sizeof(cmd), "%s/data2/admin.sock", h_tmpdir());
    assert_int_equal(h_admin(cmd, args, out, sizeof(out)), 0);
    print_message("status: %s", out);
    assert_non_null(strstr(out, "\"obs_refused\":2}"));
    assert_true(h_log_contains(&gw, "refused (store.obs_max_age/ahead)"));
    assert_int_equal(h_stop(&gw), 0);
}

/* A bad CRC is dropped, the connection lives on and the next frame is taken. */
static void test_bad_crc(void **state)
{
    uint8_t f[128], g[128], c[CONFIRM_LEN];
    size_t n = build_report(f, "0099000001", 0xABCD, 0x32, 200, 3, 3333);
    size_t m = build_report(g, "0099000001", 0xABCD, 0x32, 201, 4, 4444);
    f[n - 1] ^= 0x55;
    int fd = tcp_connect();
    send_all(fd, f, n);
    send_all(fd, g, m);
    assert_int_equal(h_recv_n(fd, c, sizeof(c), 10000), sizeof(c));
    check_confirm(c, g, 0x1B); /* the first reply is for the good frame */
    close(fd);
    wait_reading("rtu-b", "water_level", 4.444, NULL, "good");
    assert_int_equal(count_value("rtu-b", "water_level", 3.333), 0);
    assert_true(h_log_contains(&E.gw, "bad CRC"));
}

/* An unknown station and a wrong password are refused: connection closed, no
 * confirm, nothing stored. */
static void test_refused(void **state)
{
    uint8_t f[128], c[CONFIRM_LEN], g[128];
    size_t n = build_report(f, "0055555555", 0xABCD, 0x32, 300, 5, 7777);
    int fd = tcp_connect();
    send_all(fd, f, n);
    assert_true(h_closed_by_peer(fd, 10000));
    close(fd);

    n = build_report(f, "0099000001", 0x0000, 0x32, 301, 6, 6666); /* wrong password */
    fd = tcp_connect();
    send_all(fd, f, n);
    assert_true(h_closed_by_peer(fd, 10000));
    close(fd);

    /* A good report afterwards marks the point by which the others would have arrived. */
    size_t m = build_report(g, "0099000001", 0xABCD, 0x32, 302, 7, 5555);
    fd = tcp_connect();
    send_all(fd, g, m);
    assert_int_equal(h_recv_n(fd, c, sizeof(c), 10000), sizeof(c));
    close(fd);
    wait_reading("rtu-b", "water_level", 5.555, NULL, "good");
    assert_int_equal(count_value("rtu-b", "water_level", 6.666), 0);
    cJSON *items = h_platform_items("/readings");
    cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        double v = cJSON_GetNumberValue(cJSON_GetObjectItem(it, "value"));
        assert_false(fabs(v - 7.777) < 1e-9);
    }
    cJSON_Delete(items);
    assert_true(h_log_contains(&E.gw, "0055555555"));
    assert_true(h_log_contains(&E.gw, "wrong password"));
}

/* UDP: garbage before the frame, the confirm goes back to the sender. */
static void test_udp(void **state)
{
    uint8_t f[160], c[256];
    memcpy(f, "\x13\x37junk", 6);
    size_t n = build_report(f + 6, "0099000001", 0xABCD, 0x32, 400, 8, 8888);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)E.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(sendto(fd, f, n + 6, 0, (struct sockaddr *)&a, sizeof(a)), (ssize_t)(n + 6));
    struct pollfd pf = {fd, POLLIN, 0};
    assert_int_equal(poll(&pf, 1, 10000), 1);
    ssize_t k = recv(fd, c, sizeof(c), 0);
    assert_int_equal(k, CONFIRM_LEN);
    check_confirm(c, f + 6, 0x1B);
    close(fd);
    wait_reading("rtu-b", "water_level", 8.888, "2024-06-02T02:08:00.000Z", "good");
}

/* A station silent for offline_after x interval goes offline; a frame brings it back. */
static void test_offline_online(void **state)
{
    struct ev off = {"rtu-c", "offline", 1};
    assert_true(h_platform_wait(has_events, &off, 10000));
    assert_int_equal(count_events("rtu-c", "online"), 0);
    uint8_t f[64];
    /* Keep-alive 2F for rtu-c: serial 1, send time 24-06-02 10:00:00. */
    static const uint8_t ka[] = {0x7E, 0x7E, 0x01, 0x00, 0x99, 0x00, 0x00, 0x02,
                                 0x00, 0x01, 0x2F, 0x00, 0x08, 0x02, 0x00, 0x01,
                                 0x24, 0x06, 0x02, 0x10, 0x00, 0x00, 0x03};
    memcpy(f, ka, sizeof(ka));
    uint16_t c = h_crc16(f, sizeof(ka));
    f[sizeof(ka)] = (uint8_t)(c >> 8);
    f[sizeof(ka) + 1] = (uint8_t)c;
    int fd = tcp_connect();
    send_all(fd, f, sizeof(ka) + 2);
    struct ev on = {"rtu-c", "online", 1};
    assert_true(h_platform_wait(has_events, &on, 10000));
    close(fd);
}

/* The number after "key": in the "section": object of the admin status JSON, or -1. */
static long long status_count(const char *section, const char *key)
{
    char sock[300], out[4096], pat[64];
    snprintf(sock, sizeof(sock), "%s/data/admin.sock", h_tmpdir());
    const char *args[] = {"status", NULL};
    if (h_admin(sock, args, out, sizeof(out)) != 0)
        return -1;
    snprintf(pat, sizeof(pat), "\"%s\":{", section);
    const char *p = strstr(out, pat);
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    p = p ? strstr(p, pat) : NULL;
    return p ? atoll(p + strlen(pat)) : -1;
}

/* Issue 15 item 6: 4,096 idle connections (every slot taken) and garbage
 * senders do not lock a genuine station out: the oldest unauthenticated
 * connections are closed to make room, counted in the admin status. */
static void test_idle_flood(void **state)
{
    static int fds[FLOOD];
    assert_true(h_raise_nofile(FLOOD + 1024) >= FLOOD + 256);
    assert_int_equal(h_tcp_flood(E.port, FLOOD, 25, fds), FLOOD);
    int junk[8];
    for (int i = 0; i < 8; i++) {
        char src[32];
        snprintf(src, sizeof(src), "127.2.0.%d", i + 1);
        junk[i] = h_tcp_connect_from(E.port, src);
        assert_true(junk[i] >= 0);
        static const char junk_bytes[] = "\x7E\x7E garbage \x01 more garbage";
        send_all(junk[i], junk_bytes, sizeof(junk_bytes) - 1);
    }
    uint8_t f[128], c[CONFIRM_LEN];
    size_t n = build_report(f, "0099000001", 0xABCD, 0x32, 700, 41, 4141);
    int fd = tcp_connect();
    send_all(fd, f, n);
    assert_int_equal(h_recv_n(fd, c, sizeof(c), 15000), sizeof(c));
    check_confirm(c, f, 0x1B);
    wait_reading("rtu-b", "water_level", 4.141, NULL, "good");
    /* 4,096 + 8 + 1 connections for 4,096 slots: at least 9 evictions, and
     * the first of the flood went first. */
    assert_true(status_count("connections", "evicted_unauth") >= 9);
    assert_true(h_closed_by_peer(fds[0], 5000));
    close(fd);
    for (int i = 0; i < 8; i++)
        close(junk[i]);
    for (int i = 0; i < FLOOD; i++)
        close(fds[i]);
}

/* At most max_per_source connections from one address; the next is closed. */
static void test_per_source(void **state)
{
    int fds[41];
    for (int i = 0; i < 41; i++) {
        fds[i] = h_tcp_connect_from(E.port, "127.3.0.1");
        assert_true(fds[i] >= 0);
    }
    assert_true(h_closed_by_peer(fds[40], 5000));
    assert_false(h_closed_by_peer(fds[0], 200));
    assert_true(status_count("connections", "refused_per_source") >= 1);
    for (int i = 0; i < 41; i++)
        close(fds[i]);
}

/* Issue 15 item 6, admin socket: 8 idle clients hold every slot; a 9th still
 * gets its answer (the oldest idle one is closed for it), and idle clients
 * are closed after the admin idle timeout (5 s). */
static void test_admin_idle(void **state)
{
    char sock[100];
    snprintf(sock, sizeof(sock), "%s/data/admin.sock", h_tmpdir());
    int fds[8];
    for (int i = 0; i < 8; i++) {
        fds[i] = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock);
        assert_int_equal(connect(fds[i], (struct sockaddr *)&a, sizeof(a)), 0);
    }
    assert_true(status_count("admin", "evicted_idle") >= 1);
    assert_true(h_closed_by_peer(fds[0], 2000));
    assert_true(h_closed_by_peer(fds[7], 8000)); /* the idle timeout */
    assert_true(status_count("admin", "idle_closed") >= 1);
    for (int i = 0; i < 8; i++)
        close(fds[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors_tcp),      cmocka_unit_test(test_ascii),
        cmocka_unit_test(test_duplicate),        cmocka_unit_test(test_bad_crc),
        cmocka_unit_test(test_refused),          cmocka_unit_test(test_udp),
        cmocka_unit_test(test_offline_online),   cmocka_unit_test(test_idle_flood),
        cmocka_unit_test(test_per_source),       cmocka_unit_test(test_admin_idle),
        cmocka_unit_test(test_replay_after_130), cmocka_unit_test(test_obs_window),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
