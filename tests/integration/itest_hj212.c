/* End-to-end tests of the HJ 212 listener: the test plays environmental
 * stations over loopback TCP against the real gateway, with a real mosquitto
 * and the in-process platform. Packets come from the published vector
 * ($GW_VECTORS/hj212.txt), the project's own vectors (tests/vectors/hj212_own.txt)
 * and packets built here. Expected readings, quality, answers and CRCs are
 * computed in this file, never through the codec. Every wait is bounded. */
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
#include <unistd.h>

static struct {
    int broker_port, port;
    h_proc broker, gw;
    char config[512];
} E;

/* ---- packets ---- */

/* The HJ 212 CRC written out: reg = (reg >> 8) ^ byte, then 8 reflected 0xA001 steps. */
static uint16_t hj_crc(const char *p, size_t n)
{
    uint16_t r = 0xFFFF;
    for (size_t i = 0; i < n; i++) {
        r = (uint16_t)((r >> 8) ^ (uint8_t)p[i]);
        for (int b = 0; b < 8; b++)
            r = (r & 1) ? (uint16_t)((r >> 1) ^ 0xA001) : (uint16_t)(r >> 1);
    }
    return r;
}

/* "##" + length + segment + CRC + CR LF into out. */
static const char *frame(char *out, size_t cap, const char *seg)
{
    snprintf(out, cap, "##%04zu%s%04X\r\n", strlen(seg), seg, hj_crc(seg, strlen(seg)));
    return out;
}

typedef struct pkt {
    char name[24];
    char text[1200]; /* with CR LF */
} pkt;

static pkt own_p[16], shared_p[4];
static size_t nown, nshared;

/* Own file: "<name> ##...." lines; shared file: "##...." lines. CR LF appended. */
static size_t load(const char *path, pkt *p, size_t cap, int named)
{
    FILE *f = fopen(path, "r");
    char line[2048];
    size_t n = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f) && n < cap) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#' && line[1] != '#')
            continue;
        char *sp = named ? strchr(line, ' ') : NULL;
        if (named && !sp)
            continue;
        if (sp) {
            *sp = '\0';
            snprintf(p[n].name, sizeof(p[n].name), "%.23s", line);
        }
        snprintf(p[n].text, sizeof(p[n].text), "%.1190s\r\n", sp ? sp + 1 : line);
        n++;
    }
    fclose(f);
    return n;
}

static const char *own(const char *name)
{
    for (size_t i = 0; i < nown; i++)
        if (!strcmp(own_p[i].name, name))
            return own_p[i].text;
    fail_msg("vector %s not found", name);
    return NULL;
}

/* ---- sockets ---- */

static int tcp_connect(void)
{
    int fd = h_tcp_connect(E.port);
    assert_true(fd >= 0);
    return fd;
}

static void send_str(int fd, const char *s)
{
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t k = send(fd, s, n, MSG_NOSIGNAL);
        assert_true(k > 0);
        s += k;
        n -= (size_t)k;
    }
}

/* Reads one CR LF terminated line within timeout_ms into out (NUL-terminated,
 * CR LF kept). Returns its length, 0 on close, -1 on timeout. Reads byte by
 * byte so that nothing after the line is consumed. */
static int recv_line(int fd, char *out, size_t cap, int timeout_ms)
{
    size_t n = 0;
    int64_t end = h_now_ms() + timeout_ms;
    while (n + 1 < cap) {
        int left = (int)(end - h_now_ms());
        struct pollfd pf = {fd, POLLIN, 0};
        if (left <= 0 || poll(&pf, 1, left) <= 0)
            return -1;
        ssize_t k = recv(fd, out + n, 1, 0);
        if (k <= 0)
            return 0;
        n++;
        out[n] = '\0';
        if (n >= 2 && out[n - 2] == '\r' && out[n - 1] == '\n')
            return (int)n;
    }
    return (int)n;
}

/* The 9014 / 9011 answer to a request, built here from its header fields. */
static const char *answer(char *out, size_t cap, const char *qn, const char *pw, const char *mn,
                          const char *cn, const char *cp)
{
    char seg[512];
    snprintf(seg, sizeof(seg), "QN=%s;ST=91;CN=%s;PW=%s;MN=%s;Flag=4;CP=&&%s&&", qn, cn, pw, mn,
             cp);
    return frame(out, cap, seg);
}

/* ---- platform ---- */

static cJSON *find_reading(cJSON *items, const char *device, const char *metric, const char *obs)
{
    cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        const char *d = cJSON_GetStringValue(cJSON_GetObjectItem(it, "device"));
        const char *m = cJSON_GetStringValue(cJSON_GetObjectItem(it, "metric"));
        const char *o = cJSON_GetStringValue(cJSON_GetObjectItem(it, "obs"));
        if (d && m && o && !strcmp(d, device) && !strcmp(m, metric) && !strcmp(o, obs))
            return it;
    }
    return NULL;
}

struct key {
    const char *device, *metric, *obs;
};

static int has(void *ctx)
{
    struct key *k = ctx;
    cJSON *items = h_platform_items("/readings");
    int found = find_reading(items, k->device, k->metric, k->obs) != NULL;
    cJSON_Delete(items);
    return found;
}

/* Waits for the reading and checks value, unit, quality and reason. */
static void expect(const char *device, const char *metric, const char *obs, double value,
                   const char *unit, const char *quality, const char *reason)
{
    struct key k = {device, metric, obs};
    if (!h_platform_wait(has, &k, 10000))
        fail_msg("no reading %s %s @ %s", device, metric, obs);
    cJSON *items = h_platform_items("/readings");
    cJSON *it = find_reading(items, device, metric, obs);
    assert_non_null(it);
    assert_true(fabs(cJSON_GetNumberValue(cJSON_GetObjectItem(it, "value")) - value) < 1e-9);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(it, "unit")), unit);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(it, "quality")), quality);
    const char *r = cJSON_GetStringValue(cJSON_GetObjectItem(it, "reason"));
    if (reason)
        assert_string_equal(r ? r : "", reason);
    else
        assert_null(r);
    cJSON_Delete(items);
}

static int count(const char *device, const char *metric)
{
    cJSON *items = h_platform_items("/readings");
    int n = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        const char *d = cJSON_GetStringValue(cJSON_GetObjectItem(it, "device"));
        const char *m = cJSON_GetStringValue(cJSON_GetObjectItem(it, "metric"));
        if (d && m && (!device || !strcmp(d, device)) && !strcmp(m, metric))
            n++;
    }
    cJSON_Delete(items);
    return n;
}

/* A marker reading for env-a: QN, value and DataTime 2024-03-16 13:00:SS Beijing. */
static void send_marker(int fd, const char *qn, int minute, double v)
{
    char seg[256], pk[400];
    snprintf(seg, sizeof(seg),
             "QN=%s;ST=32;CN=2011;PW=123456;MN=010000A8900016F000169DC0;Flag=4;"
             "CP=&&DataTime=202403161300%02d;w01018-Rtd=%.1f,w01018-Flag=N&&",
             qn, minute, v);
    send_str(fd, frame(pk, sizeof(pk), seg));
}

static void wait_marker(int minute, double v)
{
    char obs[40];
    snprintf(obs, sizeof(obs), "2024-03-16T05:00:%02d.000Z", minute);
    expect("env-a", "w01018", obs, v, "mg/L", "good", NULL);
}

/* ---- setup ---- */

static int group_setup(void **state)
{
    const char *vdir = getenv("GW_VECTORS") ? getenv("GW_VECTORS") : "../shared/vectors";
    char path[512];
    snprintf(path, sizeof(path), "%s/hj212.txt", vdir);
    nshared = load(path, shared_p, 4, 0);
    nown = load("tests/vectors/hj212_own.txt", own_p, 16, 1);
    if (nshared < 1 || nown < 6) {
        fprintf(stderr, "vectors missing (%zu shared from %s, %zu own)\n", nshared, path, nown);
        return -1;
    }
    h_tmpdir();
    E.port = h_free_port();
    if (h_peers_start(&E.broker, &E.broker_port))
        return -1;
    char text[4096];
    snprintf(text, sizeof(text),
             "gateway:\n  id: gw-hj\n  data_dir: %s/data\n  log_level: info\n"
             "  shutdown_drain: 2s\n"
             "store:\n  commit_window: 2ms\n"
             "uplink:\n  uri: tcp://127.0.0.1:%d\n  topic_prefix: t\n  backoff_min: 100ms\n"
             "  backoff_max: 500ms\n"
             "devices:\n"
             "  - id: env-a\n    protocol: hj212\n    address: 010000A8900016F000169DC0\n"
             "    password: \"123456\"\n    interval: 5m\n"
             "  - id: env-b\n    protocol: hj212\n    address: W32000000000000000000061\n"
             "    password: \"654321\"\n    interval: 1h\n"
             "  - id: env-c\n    protocol: hj212\n    address: AQ2200000000000000002031\n"
             "    password: \"123456\"\n    version: \"2025\"\n    interval: 1h\n"
             "listeners:\n"
             "  - protocol: hj212\n    listen: 127.0.0.1:%d\n    auth_timeout: 1s\n"
             "    max_connections: 600\n    max_per_source: 8\n",
             h_tmpdir(), E.broker_port, E.port);
    snprintf(E.config, sizeof(E.config), "%s", h_write_file("gateway.yaml", text));
    if (h_gateway_start(&E.gw, E.config))
        return -1;
    return h_port_wait(E.port, 5000) ? 0 : -1;
}

static int group_teardown(void **state)
{
    /* A clean exit: no handle left open, no leak under ASan. */
    return h_peers_stop(&E.gw, NULL, &E.broker) == 0 ? 0 : -1;
}

/* ---- tests ---- */

/* Own data vectors with garbage around them: 9014 answers (after commit) and
 * readings with hand-derived metric names, units, times and flag qualities. */
static void test_data(void **state)
{
    char line[1200], want[512];
    int fd = tcp_connect();
    send_str(fd, "garbage ## 12\r\n");
    send_str(fd, own("rt_2011"));
    send_str(fd, "#x");
    send_str(fd, own("hour_2061"));
    send_str(fd, own("multi_2011"));
    /* Its part 2 of 2 (issue 10: split uploads are put back together; part 2 has no
     * DataTime of its own and takes part 1's). */
    char seg2[300], pk2[400];
    snprintf(seg2, sizeof(seg2),
             "QN=20240315103000999;ST=32;CN=2011;PW=123456;MN=010000A8900016F000169DC0;Flag=7;"
             "PNUM=2;PNO=2;CP=&&w01002-Rtd=3.5,w01002-Flag=N&&");
    send_str(fd, frame(pk2, sizeof(pk2), seg2));

    assert_true(recv_line(fd, line, sizeof(line), 10000) > 0);
    assert_string_equal(line, answer(want, sizeof(want), "20240315103000123", "123456",
                                     "010000A8900016F000169DC0", "9014", ""));
    /* The published-style answer vector for hour_2061, verbatim. */
    assert_true(recv_line(fd, line, sizeof(line), 10000) > 0);
    assert_string_equal(line, own("reply_2061"));
    for (int part = 1; part <= 2; part++) { /* one answer per packet, as the standard says */
        assert_true(recv_line(fd, line, sizeof(line), 10000) > 0);
        assert_string_equal(line, answer(want, sizeof(want), "20240315103000999", "123456",
                                         "010000A8900016F000169DC0", "9014", ""));
    }
    close(fd);

    /* rt_2011: DataTime 2024-03-15 10:30:00 Beijing = 02:30:00Z. */
    const char *t = "2024-03-15T02:30:00.000Z";
    expect("env-a", "w01018", t, 52.3, "mg/L", "good", NULL);
    expect("env-a", "w21003", t, 1.25, "mg/L", "uncertain", "over_range"); /* flag T */
    expect("env-a", "w00000", t, 12.5, "L/s", "bad", "sensor_fault");      /* flag D */
    expect("env-a", "w99999", t, 7, "", "good", NULL);                     /* unknown code */
    /* hour_2061: 10:00 Beijing, flags M (maintenance) and B (communication failure). */
    const char *h = "2024-03-15T02:00:00.000Z";
    expect("env-b", "w01018_avg_hour", h, 48.0, "mg/L", "bad", "maintenance");
    expect("env-b", "w01018_min_hour", h, 40.5, "mg/L", "bad", "maintenance");
    expect("env-b", "w01018_max_hour", h, 55.5, "mg/L", "bad", "maintenance");
    expect("env-b", "w01018_cou_hour", h, 1.92, "kg", "bad", "maintenance");
    expect("env-b", "w00000_cou_hour", h, 39.96, "m3", "bad", "comm_fail");
    /* multi_2011: the factor's SampleTime 10:25 Beijing wins over DataTime. */
    expect("env-a", "w01001", "2024-03-15T02:25:00.000Z", 7.12, "", "good", NULL);
    expect("env-a", "w01002", "2024-03-15T02:30:00.000Z", 3.5, "", "good", NULL);
}

/* A resent packet (same QN) is answered again and stored once. */
static void test_duplicate(void **state)
{
    char line[1200];
    int fd = tcp_connect();
    send_str(fd, own("rt_2011")); /* already stored by test_data */
    assert_true(recv_line(fd, line, sizeof(line), 10000) > 0);
    assert_non_null(strstr(line, "CN=9014"));
    send_marker(fd, "20240316120000001", 1, 11.1);
    close(fd);
    wait_marker(1, 11.1);
    assert_int_equal(count("env-a", "w99999"), 1);
}

/* Item ids of env-a's w01018 readings with this value. */
static int ids_of(double v, char ids[][64], int max)
{
    cJSON *items = h_platform_items("/readings");
    int n = 0;
    for (cJSON *it = items ? items->child : NULL; it && n < max; it = it->next) {
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(it, "id"));
        const char *dev = cJSON_GetStringValue(cJSON_GetObjectItem(it, "device"));
        if (id && dev && !strcmp(dev, "env-a") &&
            cJSON_GetNumberValue(cJSON_GetObjectItem(it, "value")) == v)
            snprintf(ids[n++], 64, "%s", id);
    }
    cJSON_Delete(items);
    return n;
}

/* A packet resent after 40 others, and again after a gateway restart, is
 * stored once: one item, one id (the replay window is persisted). */
static void test_replay_window_restart(void **state)
{
    char ids[8][64];
    int fd = tcp_connect();
    send_marker(fd, "20240316130000777", 40, 77.7);
    for (int i = 0; i < 40; i++) {
        char qn[24];
        snprintf(qn, sizeof(qn), "202403161301%05d", i);
        send_marker(fd, qn, i % 40, 60.0 + i / 100.0);
    }
    send_marker(fd, "20240316130000777", 40, 77.7); /* resent */
    send_marker(fd, "20240316130000778", 41, 78.8);
    close(fd);
    wait_marker(41, 78.8);
    assert_int_equal(ids_of(77.7, ids, 8), 1);

    assert_int_equal(h_stop(&E.gw), 0);
    assert_int_equal(h_gateway_start(&E.gw, E.config), 0);
    assert_true(h_port_wait(E.port, 5000));
    fd = tcp_connect();
    send_marker(fd, "20240316130000777", 40, 77.7); /* resent after the restart */
    send_marker(fd, "20240316130000779", 42, 79.9);
    close(fd);
    wait_marker(42, 79.9);
    char first[64];
    snprintf(first, sizeof(first), "%s", ids[0]);
    assert_int_equal(ids_of(77.7, ids, 8), 1);
    assert_string_equal(ids[0], first);
}

/* A bad CRC is dropped without an answer; the connection lives on. */
static void test_bad_crc(void **state)
{
    char line[1200], bad[1200], seg[256];
    snprintf(seg, sizeof(seg),
             "QN=20240316120000002;ST=32;CN=2011;PW=123456;MN=010000A8900016F000169DC0;Flag=5;"
             "CP=&&DataTime=20240316120000;w01019-Rtd=3.3,w01019-Flag=N&&");
    frame(bad, sizeof(bad), seg);
    char *crc = bad + strlen(bad) - 6;
    crc[0] = crc[0] == '0' ? '1' : '0';
    int fd = tcp_connect();
    send_str(fd, bad);
    snprintf(seg, sizeof(seg),
             "QN=20240316120000003;ST=32;CN=2011;PW=123456;MN=010000A8900016F000169DC0;Flag=5;"
             "CP=&&DataTime=20240316120000;w01019-Rtd=4.4,w01019-Flag=N&&");
    char good[1200], want[512];
    send_str(fd, frame(good, sizeof(good), seg));
    assert_true(recv_line(fd, line, sizeof(line), 10000) > 0);
    assert_string_equal(line, answer(want, sizeof(want), "20240316120000003", "123456",
                                     "010000A8900016F000169DC0", "9014", ""));
    close(fd);
    struct key k = {"env-a", "w01019", "2024-03-16T04:00:00.000Z"};
    assert_true(h_platform_wait(has, &k, 10000));
    assert_int_equal(count("env-a", "w01019"), 1); /* only 4.4 */
    assert_true(h_log_contains(&E.gw, "bad CRC"));
}

/* The published vector carries PW=100000 for a station configured with 123456:
 * refused, answered with 9011 QnRtn=3 (its Flag asks for an answer), closed. */
static void test_wrong_pw(void **state)
{
    char line[1200], want[512];
    int fd = tcp_connect();
    send_str(fd, shared_p[0].text);
    assert_true(recv_line(fd, line, sizeof(line), 10000) > 0);
    assert_string_equal(line, answer(want, sizeof(want), "20160801085857223", "100000",
                                     "010000A8900016F000169DC0", "9011", "QnRtn=3"));
    assert_int_equal(recv_line(fd, line, sizeof(line), 10000), 0); /* closed */
    close(fd);
    assert_true(h_log_contains(&E.gw, "wrong PW"));
}

/* An unknown MN is refused without an answer and the connection closed; a
 * station configured for 2025 is refused at run time. */
static void test_refused(void **state)
{
    char line[1200];
    int fd = tcp_connect();
    send_str(fd, own("min_2051")); /* MN AIR...A1 is not configured */
    assert_int_equal(recv_line(fd, line, sizeof(line), 10000), 0);
    close(fd);

    fd = tcp_connect();
    send_str(fd, own("day_2031")); /* env-c, version 2025 */
    send_marker(fd, "20240316120000004", 2, 22.2);
    close(fd);
    wait_marker(2, 22.2);
    assert_int_equal(count(NULL, "a21026_avg_minute"), 0);
    assert_int_equal(count("env-c", "a34004_avg_day"), 0);
    assert_true(h_log_contains(&E.gw, "not configured"));
    assert_true(h_log_contains(&E.gw, "HJ 212-2025 is not implemented"));
}

/* Issue 15 item 6: bytes that make no accepted packet (garbage, and a packet
 * with a bad CRC) do not keep a connection past the 1 s auth window. */
static void test_garbage_auth_window(void **state)
{
    int fd = tcp_connect();
    int64_t t0 = h_now_ms();
    int closed = 0;
    while (!closed && h_now_ms() - t0 < 5000) {
        if (send(fd, "##0010garbage!!!\r\n", 18, MSG_NOSIGNAL) < 0)
            break;
        closed = h_closed_by_peer(fd, 100);
    }
    assert_true(closed || h_closed_by_peer(fd, 1000));
    int64_t took = h_now_ms() - t0;
    assert_true(took >= 900 && took < 4000);
    close(fd);
}

/* Every slot taken by idle peers: a genuine station still gets its 9014 and
 * its reading stored; the idle peers are closed oldest first. */
static void test_idle_flood(void **state)
{
    static int fds[600];
    assert_true(h_raise_nofile(2048) >= 1024);
    assert_int_equal(h_tcp_flood(E.port, 600, 6, fds), 600);
    char line[512], want[512], seg[256], pk[400];
    int fd = tcp_connect();
    snprintf(seg, sizeof(seg), /* send_marker's packet, with Flag A: answer wanted */
             "QN=20240316130057000;ST=32;CN=2011;PW=123456;MN=010000A8900016F000169DC0;Flag=5;"
             "CP=&&DataTime=20240316130057;w01018-Rtd=5.7,w01018-Flag=N&&");
    send_str(fd, frame(pk, sizeof(pk), seg));
    assert_true(recv_line(fd, line, sizeof(line), 10000) > 0);
    assert_string_equal(line, answer(want, sizeof(want), "20240316130057000", "123456",
                                     "010000A8900016F000169DC0", "9014", ""));
    wait_marker(57, 5.7);
    assert_true(h_closed_by_peer(fds[0], 5000));
    close(fd);
    for (int i = 0; i < 600; i++)
        close(fds[i]);
}

/* max_per_source: the ninth connection from one address is closed at once. */
static void test_per_source(void **state)
{
    int fds[9];
    for (int i = 0; i < 9; i++) {
        fds[i] = h_tcp_connect_from(E.port, "127.3.0.2");
        assert_true(fds[i] >= 0);
    }
    assert_true(h_closed_by_peer(fds[8], 900));
    for (int i = 0; i < 9; i++)
        close(fds[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_data),
        cmocka_unit_test(test_duplicate),
        cmocka_unit_test(test_bad_crc),
        cmocka_unit_test(test_wrong_pw),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_replay_window_restart),
        cmocka_unit_test(test_garbage_auth_window),
        cmocka_unit_test(test_idle_flood),
        cmocka_unit_test(test_per_source),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
