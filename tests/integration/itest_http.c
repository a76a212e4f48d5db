/* The local HTTP endpoint against real peers: /metrics scraped by a real
 * Prometheus (Debian's, started here on loopback with a 1 s scrape interval)
 * and checked by promtool; /healthz failing while the broker is down and
 * recovering with it; the token off loopback and for writes; a scripted
 * suite of bad requests (malformed, oversized, slow) refused without harm;
 * the admin CLI's tables; and the status page rendered by headless Chromium
 * against the gateway polling the simulator, showing a simulated alarm. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct env {
    h_proc broker, gw, sim;
    int port, http;
    char config[512];
};

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    *state = e;
    if (h_peers_start(&e->broker, &e->port))
        return -1;
    e->http = h_free_port_range(1);
    return e->http > 0 ? 0 : -1;
}

static int teardown(void **state)
{
    struct env *e = *state;
    int gw_status = h_peers_stop(&e->gw, &e->sim, &e->broker);
    free(e);
    assert_int_equal(gw_status, 0);
    return 0;
}

static void write_config(struct env *e, const char *http, const char *devices, const char *rules)
{
    char text[8192];
    snprintf(text, sizeof(text),
             "gateway:\n  id: gw-http\n  data_dir: %s/data\n  shutdown_drain: 1s\n"
             "store:\n  commit_window: 2ms\n"
             "uplink:\n  uri: tcp://127.0.0.1:%d\n  topic_prefix: t\n  backoff_min: 100ms\n"
             "  backoff_max: 300ms\n"
             "http:\n%s"
             "devices:\n%s"
             "rules:\n%s",
             h_tmpdir(), e->port, http, devices, rules);
    snprintf(e->config, sizeof(e->config), "%s", h_write_file("gateway.yaml", text));
}

static const char *synthetic =
    "  - {id: syn-1, protocol: synthetic, type: loadgen, rate: 20, square: 2}\n";
static const char *no_rules = "  []\n";

/* Sends raw bytes to 127.0.0.1:port and reads the answer until the server
 * closes (bounded by timeout_ms). Returns the status code, 0 when the server
 * closed without an answer, -1 when it did not close in time. */
static int raw(int port, const char *req, size_t len, char *out, size_t cap, int timeout_ms)
{
    int fd = h_tcp_connect(port);
    if (fd < 0)
        return -1;
    if (len && h_send_all(fd, req, len)) {
        close(fd);
        return 0; /* refused mid-request: also a refusal */
    }
    size_t n = 0;
    int64_t end = h_now_ms() + timeout_ms;
    int closed = 0;
    while (h_now_ms() < end) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        char tmp[65536];
        ssize_t r = read(fd, tmp, sizeof(tmp));
        if (r <= 0) {
            closed = 1;
            break;
        }
        size_t k = (size_t)r < cap - 1 - n ? (size_t)r : cap - 1 - n;
        memcpy(out + n, tmp, k);
        n += k;
    }
    close(fd);
    out[n] = '\0';
    if (!closed)
        return -1;
    int code = 0;
    if (sscanf(out, "HTTP/1.%*d %d", &code) != 1)
        return 0;
    return code;
}

/* GET path with an optional bearer token; the body starts at *body. */
static int get(int port, const char *path, const char *token, char *out, size_t cap)
{
    char req[1024];
    int n = snprintf(
        req, sizeof(req), "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n%s%s%s\r\n",
        path, token ? "Authorization: Bearer " : "", token ? token : "", token ? "\r\n" : "");
    return raw(port, req, (size_t)n, out, cap, 10000);
}

static int post(int port, const char *path, const char *token, char *out, size_t cap)
{
    char req[1024];
    int n = snprintf(req, sizeof(req),
                     "POST %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                     "Content-Length: 0\r\n%s%s%s\r\n",
                     path, token ? "Authorization: Bearer " : "", token ? token : "",
                     token ? "\r\n" : "");
    return raw(port, req, (size_t)n, out, cap, 10000);
}

static char *body(char *resp)
{
    char *b = strstr(resp, "\r\n\r\n");
    return b ? b + 4 : resp;
}

/* Waits (bounded) until GET path answers want. */
static int wait_code(int port, const char *path, int want, int timeout_ms)
{
    static char buf[1 << 16];
    int64_t end = h_now_ms() + timeout_ms;
    while (h_now_ms() < end) {
        if (get(port, path, NULL, buf, sizeof(buf)) == want)
            return 1;
        usleep(100 * 1000);
    }
    return 0;
}

/* The value of one series (name with its labels, exactly as rendered) in a
 * /metrics body, -1 when it is absent. */
static double series(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = strstr(text, name); p; p = strstr(p + 1, name))
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return atof(p + n + 1);
    return -1;
}

/* Waits (bounded) until the series reaches at least want: /metrics is
 * rendered at most every 500 ms, so a change shows within a second. */
static double wait_series(int port, const char *token, const char *name, double want)
{
    static char buf[1 << 20];
    double v = -1;
    int64_t end = h_now_ms() + 10000;
    while (h_now_ms() < end) {
        if (get(port, "/metrics", token, buf, sizeof(buf)) == 200 &&
            (v = series(body(buf), name)) >= want)
            return v;
        usleep(100 * 1000);
    }
    return v;
}

/* Runs promtool check metrics on a /metrics answer; fails the test with its output. */
static void promtool_check(char *resp)
{
    const char *mfile = h_write_file("metrics.txt", body(resp));
    char cmd[1024], out[8192];
    snprintf(cmd, sizeof(cmd), "promtool check metrics < %s 2>&1", mfile);
    if (h_run(cmd, out, sizeof(out)) != 0)
        fail_msg("promtool check metrics: %s", out);
}

/* /metrics: promtool accepts it, and a real Prometheus scraping it every
 * second reports a gateway counter through its HTTP API. */
static void test_metrics_prometheus(void **state)
{
    struct env *e = *state;
    char http[256];
    snprintf(http, sizeof(http), "  listen: 127.0.0.1:%d\n", e->http);
    write_config(e, http, synthetic, no_rules);
    assert_int_equal(h_gateway_start(&e->gw, e->config), 0);
    static char resp[1 << 20];
    assert_int_equal(get(e->http, "/metrics", NULL, resp, sizeof(resp)), 200);
    assert_non_null(strstr(resp, "text/plain; version=0.0.4"));
    assert_non_null(strstr(resp, "gw_items_accepted_total{kind=\"reading\"}"));
    assert_non_null(strstr(resp, "gw_device_online{device=\"syn-1\"}"));
    assert_non_null(strstr(resp, "gw_loop_lateness_seconds_bucket{le=\"+Inf\"}"));
    assert_non_null(strstr(resp, "process_resident_memory_bytes"));
    promtool_check(resp);

    int pport = h_free_port_range(1);
    char pconf[512];
    snprintf(pconf, sizeof(pconf),
             "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n"
             "scrape_configs:\n  - job_name: gateway\n    static_configs:\n"
             "      - targets: ['127.0.0.1:%d']\n",
             e->http);
    const char *pc = h_write_file("prometheus.yml", pconf);
    char listen[64], tsdb[512];
    snprintf(listen, sizeof(listen), "--web.listen-address=127.0.0.1:%d", pport);
    snprintf(tsdb, sizeof(tsdb), "--storage.tsdb.path=%s/prom", h_tmpdir());
    char cflag[600];
    snprintf(cflag, sizeof(cflag), "--config.file=%s", pc);
    char *argv[] = {"prometheus", cflag, listen, tsdb, "--log.level=warn", NULL};
    h_proc prom = {0};
    assert_int_equal(h_spawn(&prom, "prometheus.log", argv), 0);
    int found = 0;
    int64_t end = h_now_ms() + 30000;
    while (!found && h_now_ms() < end) {
        usleep(500 * 1000);
        if (get(pport, "/api/v1/query?query=gw_items_accepted_total%7Bkind%3D%22reading%22%7D",
                NULL, resp, sizeof(resp)) != 200)
            continue;
        /* {"status":"success","data":{"result":[{"metric":{...},"value":[t,"N"]}]}} */
        char *v = strstr(resp, "\"value\":[");
        if (v && (v = strchr(v, '"')) && (v = strchr(v + 8, '"')) && atol(v + 1) > 0)
            found = 1;
    }
    if (!found) {
        h_dump_log(&prom);
        fail_msg("Prometheus did not report gw_items_accepted_total > 0: %.400s", resp);
    }
    /* The scrape itself was healthy. */
    assert_int_equal(get(pport, "/api/v1/query?query=up", NULL, resp, sizeof(resp)), 200);
    assert_non_null(strstr(resp, "\"job\":\"gateway\""));
    h_stop(&prom);
}

/* /healthz: 503 with the reason while the broker is down past the limit, 200 again once
 * it is back; the admin CLI finds the socket from -c and prints tables. */
static void test_health_flips_with_broker(void **state)
{
    struct env *e = *state;
    char http[256];
    snprintf(http, sizeof(http), "  listen: 127.0.0.1:%d\n  health_uplink_down: 1s\n", e->http);
    write_config(e, http, synthetic, no_rules);
    assert_int_equal(h_gateway_start(&e->gw, e->config), 0);
    assert_true(wait_code(e->http, "/healthz", 200, 15000));
    assert_true(wait_code(e->http, "/readyz", 200, 5000));
    h_stop(&e->broker);
    assert_true(wait_code(e->http, "/healthz", 503, 15000));
    static char resp[1 << 16];
    assert_int_equal(get(e->http, "/healthz", NULL, resp, sizeof(resp)), 503);
    assert_non_null(strstr(body(resp), "uplink down for"));
    assert_int_equal(h_broker_start(&e->broker, e->port), 0);
    assert_true(wait_code(e->http, "/healthz", 200, 20000));

    /* The same state through the admin socket, found from the config. */
    char cmd[1024], out[16384];
    snprintf(cmd, sizeof(cmd), "%s admin -c %s devices", h_bin("gateway"), e->config);
    assert_int_equal(h_run(cmd, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "ID"));
    assert_non_null(strstr(out, "syn-1"));
    assert_non_null(strstr(out, "loadgen"));
    snprintf(cmd, sizeof(cmd), "%s admin -c %s --json device syn-1", h_bin("gateway"), e->config);
    assert_int_equal(h_run(cmd, out, sizeof(out)), 0);
    cJSON *j = cJSON_Parse(out);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "id")->valuestring, "syn-1");
    /* Last values: each metric once, with its unit (names shared by devices). */
    cJSON *vals = cJSON_GetObjectItem(j, "values");
    assert_int_equal(cJSON_GetArraySize(vals), 2);
    int seen = 0;
    cJSON *lv;
    cJSON_ArrayForEach(lv, vals)
    {
        const char *m = cJSON_GetStringValue(cJSON_GetObjectItem(lv, "metric"));
        assert_non_null(m);
        seen |= !strcmp(m, "synthetic") ? 1 : !strcmp(m, "level") ? 2 : 4;
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(lv, "unit")), "1");
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(lv, "quality")), "good");
    }
    assert_int_equal(seen, 3);
    cJSON_Delete(j);
    snprintf(cmd, sizeof(cmd), "%s admin -c %s status", h_bin("gateway"), e->config);
    assert_int_equal(h_run(cmd, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "health         ok"));
    snprintf(cmd, sizeof(cmd), "%s admin -c %s alarms", h_bin("gateway"), e->config);
    assert_int_equal(h_run(cmd, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "0 active"));
    snprintf(cmd, sizeof(cmd), "%s admin --help", h_bin("gateway"));
    assert_int_equal(h_run(cmd, out, sizeof(out)), 0);
    for (const char *const *v = (const char *const[]){"status", "devices", "device ID", "alarms",
                                                      "ack ALARM-ID", NULL};
         *v; v++)
        if (!strstr(out, *v))
            fail_msg("admin usage does not list '%s'", *v);
}

/* Off loopback a token is required (the config is refused without one), every request
 * without it is refused, and writes need it on loopback too. */
static void test_token(void **state)
{
    struct env *e = *state;
    char http[512];
    snprintf(http, sizeof(http), "  listen: 0.0.0.0:%d\n", e->http);
    write_config(e, http, synthetic, no_rules);
    h_proc chk = {0};
    char *argv[] = {(char *)h_bin("gateway"), "--check-config", e->config, NULL};
    assert_int_equal(h_spawn(&chk, "check.log", argv), 0);
    assert_int_equal(h_wait(&chk, 10000), 1);
    assert_true(h_log_contains(&chk, "http.token_file is required"));

    const char *tok = h_write_file("http.token", "s3cret-token-0123456789\n");
    snprintf(http, sizeof(http), "  listen: 0.0.0.0:%d\n  token_file: %s\n", e->http, tok);
    write_config(e, http, synthetic, no_rules);
    assert_int_equal(h_gateway_start(&e->gw, e->config), 0);
    static char resp[1 << 20];
    assert_int_equal(get(e->http, "/metrics", NULL, resp, sizeof(resp)), 401);
    assert_int_equal(get(e->http, "/api/v1/status", "wrong-token-0123456789", resp, sizeof(resp)),
                     401);
    assert_int_equal(get(e->http, "/metrics", "s3cret-token-0123456789", resp, sizeof(resp)), 200);
    assert_int_equal(
        get(e->http, "/api/v1/devices/syn-1", "s3cret-token-0123456789", resp, sizeof(resp)), 200);
    assert_int_equal(
        get(e->http, "/api/v1/devices/nope", "s3cret-token-0123456789", resp, sizeof(resp)), 404);
    assert_int_equal(post(e->http, "/api/v1/alarms/x:y:1/ack", NULL, resp, sizeof(resp)), 401);
    assert_int_equal(
        post(e->http, "/api/v1/alarms/x:y:1/ack", "s3cret-token-0123456789", resp, sizeof(resp)),
        404);
    assert_true(wait_series(e->http, "s3cret-token-0123456789",
                            "gw_http_refused_total{reason=\"token\"}", 3) == 3);
}

/* Per-protocol counters: an SL651 station sends a frame with a bad CRC, a
 * good one and a report as a station nobody configured; the crc_errors,
 * frames and unknown_devices series of sl651 count them, the rule
 * evaluations count the good reading, and promtool still accepts the page. */
static void test_protocol_counters(void **state)
{
    struct env *e = *state;
    /* The harness seeds its pick with the clock: within one ms it repeats. */
    int slport = h_free_port_range(1);
    for (int i = 0; i < 1000 && slport == e->http; i++)
        slport = h_free_port_range(1);
    assert_true(slport > 0 && slport != e->http);
    char http[256], devices[512], listeners[256];
    snprintf(http, sizeof(http), "  listen: 127.0.0.1:%d\n", e->http);
    snprintf(devices, sizeof(devices),
             "  - {id: rtu-1, protocol: sl651, address: \"0099000001\", password: \"ABCD\","
             " interval: 5m}\n");
    snprintf(listeners, sizeof(listeners),
             "  []\nlisteners:\n  - protocol: sl651\n    listen: 127.0.0.1:%d\n", slport);
    write_config(e, http, devices, listeners); /* rules: [] then the listeners */
    assert_int_equal(h_gateway_start(&e->gw, e->config), 0);
    assert_true(h_port_wait(slport, 5000));
    static char resp[1 << 20];
    assert_int_equal(get(e->http, "/metrics", NULL, resp, sizeof(resp)), 200);
    assert_true(series(body(resp), "gw_protocol_crc_errors_total{protocol=\"sl651\"}") == 0);
    assert_true(series(body(resp), "gw_protocol_unknown_devices_total{protocol=\"sl651\"}") == 0);
    assert_true(series(body(resp), "gw_protocol_timeouts_total{protocol=\"sl651\"}") == 0);

    const int t[5] = {24, 6, 2, 10, 1};
    uint8_t f[128], g[128], c[25];
    size_t n = h_sl651_report(f, "0099000001", 0xABCD, 0x32, 10, t, 1111);
    size_t m = h_sl651_report(g, "0099000001", 0xABCD, 0x32, 11, t, 2222);
    f[n - 1] ^= 0x55;
    int fd = h_tcp_connect(slport);
    assert_true(fd >= 0);
    assert_int_equal(h_send_all(fd, f, n), 0);
    assert_int_equal(h_send_all(fd, g, m), 0);
    assert_int_equal(h_recv_n(fd, c, sizeof(c), 10000), sizeof(c)); /* the good one's confirm */
    close(fd);
    n = h_sl651_report(f, "0055555555", 0xABCD, 0x32, 12, t, 3333);
    fd = h_tcp_connect(slport);
    assert_true(fd >= 0);
    assert_int_equal(h_send_all(fd, f, n), 0);
    assert_true(h_closed_by_peer(fd, 10000));
    close(fd);

    assert_true(wait_series(e->http, NULL, "gw_protocol_crc_errors_total{protocol=\"sl651\"}", 1) ==
                1);
    assert_true(wait_series(e->http, NULL, "gw_protocol_unknown_devices_total{protocol=\"sl651\"}",
                            1) == 1);
    assert_true(wait_series(e->http, NULL, "gw_protocol_frames_total{protocol=\"sl651\"}", 1) >= 1);
    assert_true(wait_series(e->http, NULL, "gw_rule_evaluations_total", 1) >= 1);
    assert_int_equal(get(e->http, "/metrics", NULL, resp, sizeof(resp)), 200);
    assert_true(series(body(resp), "gw_protocol_malformed_total{protocol=\"sl651\"}") == 0);
    assert_true(series(body(resp), "gw_device_online{device=\"rtu-1\"}") >= 0);
    promtool_check(resp);
}

/* Malformed, oversized and slow requests are refused (or the connection closed) and the
 * gateway keeps answering, then exits cleanly. */
static void test_bad_requests(void **state)
{
    struct env *e = *state;
    char http[256];
    snprintf(http, sizeof(http), "  listen: 127.0.0.1:%d\n  timeout: 1s\n  max_connections: 8\n",
             e->http);
    write_config(e, http, synthetic, no_rules);
    assert_int_equal(h_gateway_start(&e->gw, e->config), 0);
    static char resp[1 << 16];
    static char big[200 * 1024];
    struct {
        const char *name, *req;
        int min, max; /* acceptable answers; 0 = closed without one */
    } cases[] = {
        {"garbage", "\x01\x02\x03 nonsense\r\n\r\n", 0, 499},
        {"no version", "GET /metrics\r\n\r\n", 0, 499},
        {"bad version", "GET /metrics HTTP/9.9\r\nHost: x\r\n\r\n", 0, 505},
        {"header without colon", "GET / HTTP/1.1\r\nHost x\r\nBroken\r\n\r\n", 0, 499},
        {"bad method", "DELETE /api/v1/alarms HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
         405, 405},
        {"unknown path", "GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
         400, 404},
        {"negative length",
         "POST /api/v1/alarms/a/ack HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 0, 499},
        {"huge length",
         "POST /api/v1/alarms/a/ack HTTP/1.1\r\nHost: x\r\n"
         "Content-Length: 99999999999999999999999\r\n\r\n",
         0, 499},
        {"nul in path", "GET /met\0rics HTTP/1.1\r\nHost: x\r\n\r\n", 0, 499},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = strlen(cases[i].req);
        if (!strcmp(cases[i].name, "nul in path"))
            len = 35;
        int code = raw(e->http, cases[i].req, len, resp, sizeof(resp), 5000);
        if (code < 0 || code < cases[i].min || code > cases[i].max || (code && code < 400))
            fail_msg("%s: answered %d (want %d..%d or a close)", cases[i].name, code, cases[i].min,
                     cases[i].max);
    }
    /* Oversized: a 200 KiB URL, 200 KiB of headers, a 200 KiB body. */
    memset(big, 'a', sizeof(big) - 1);
    size_t n = (size_t)snprintf(resp, sizeof(resp), "GET /");
    char *req = malloc(sizeof(big) + 1024);
    n = (size_t)sprintf(req, "GET /%s HTTP/1.1\r\nHost: x\r\n\r\n", big);
    int code = raw(e->http, req, n, resp, sizeof(resp), 5000);
    assert_true(code == 0 || code == 414 || code == 431 || code == 400);
    n = (size_t)sprintf(req, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", big);
    code = raw(e->http, req, n, resp, sizeof(resp), 5000);
    assert_true(code == 0 || code == 431 || code == 400 || code == 413);
    n = (size_t)sprintf(req,
                        "POST /api/v1/alarms/a/ack HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n"
                        "Connection: close\r\n\r\n%s",
                        strlen(big), big);
    code = raw(e->http, req, n, resp, sizeof(resp), 5000);
    assert_true(code == 0 || code == 413 || code == 401);
    free(req);

    /* Slow clients: more half-sent requests than max_connections, each closed by the
     * timeout, and the endpoint answers once they are gone. */
    int fds[12];
    for (int i = 0; i < 12; i++) {
        fds[i] = h_tcp_connect(e->http);
        if (fds[i] >= 0)
            h_send_all(fds[i], "GET /metrics HTTP/1.1\r\nHo", 25);
    }
    for (int i = 0; i < 12; i++)
        if (fds[i] >= 0) {
            assert_true(h_closed_by_peer(fds[i], 5000));
            close(fds[i]);
        }
    assert_true(wait_code(e->http, "/healthz", 200, 10000));
    assert_int_equal(get(e->http, "/api/v1/status", NULL, resp, sizeof(resp)), 200);
}

/* The status page in headless Chromium: the gateway polls the simulator, whose water
 * depth crosses the rule at once; the rendered DOM lists the alarm. */
static void test_status_page_chromium(void **state)
{
    struct env *e = *state;
    int sim_port = h_free_port();
    char sc[2048];
    snprintf(sc, sizeof(sc),
             "name: page\ndevices:\n  - id: wl-{n:03}\n    count: 1\n"
             "    protocol: modbus-tcp\n    port: %d\n    unit: 1\n    registers:\n"
             "      - {kind: holding, addr: 0, type: uint16, scale: 10, value: 30}\n"
             "      - {kind: holding, addr: 1, type: uint16, scale: 100, value: 12}\n"
             "      - {kind: holding, addr: 2, type: int16, scale: 10, value: 20}\n",
             sim_port);
    assert_int_equal(h_sim_start(&e->sim, h_write_file("scenario.yaml", sc), NULL), 0);
    char dev[512], http[128];
    snprintf(dev, sizeof(dev),
             "  - {id: wl-001, profile: waterlogging-wl100, connect: 'tcp://127.0.0.1:%d', "
             "interval: 200ms, timeout: 150ms, site: {name: Renmin Road underpass}}\n",
             sim_port);
    snprintf(http, sizeof(http), "  listen: 127.0.0.1:%d\n", e->http);
    write_config(e, http, dev,
                 "  - id: depth\n    kind: threshold\n    types: [waterlogging]\n"
                 "    metric: water_depth\n    levels:\n      orange: {raise: 25, clear: 22}\n");
    assert_int_equal(h_gateway_start(&e->gw, e->config), 0);
    assert_true(h_log_wait(&e->gw, "alarm depth:wl-001", 15000));

    const char *b = getenv("BUILD") ? getenv("BUILD") : "build";
    char cmd[2048], shot[600];
    snprintf(shot, sizeof(shot), "%s/status-page.png", b);
    const char *flags = "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
                        "--disable-background-networking --disable-component-update --disable-sync "
                        "--disable-dev-shm-usage --virtual-time-budget=5000";
    snprintf(cmd, sizeof(cmd),
             "timeout 60 chromium %s --user-data-dir=%s/chrome1 --dump-dom http://127.0.0.1:%d/ "
             "2>/dev/null",
             flags, h_tmpdir(), e->http);
    static char dom[1 << 20];
    int rc = h_run(cmd, dom, sizeof(dom));
    if (rc != 0 || !strstr(dom, "data-id=\"depth:wl-001:"))
        fail_msg("chromium (exit %d) rendered no alarm row: %.2000s", rc, dom);
    assert_non_null(strstr(dom, "class=\"alarm lv-3\""));
    assert_non_null(strstr(dom, ">orange<"));
    assert_non_null(strstr(dom, ">wl-001<"));
    assert_non_null(strstr(dom, "Renmin Road underpass"));
    assert_non_null(strstr(dom, "water_depth="));
    assert_non_null(strstr(dom, ">healthy<"));
    /* A screenshot for people to look at. */
    snprintf(cmd, sizeof(cmd),
             "timeout 60 chromium %s --user-data-dir=%s/chrome2 --window-size=1280,900 "
             "--screenshot=%s http://127.0.0.1:%d/ >/dev/null 2>&1",
             flags, h_tmpdir(), shot, e->http);
    char out[256];
    assert_int_equal(h_run(cmd, out, sizeof(out)), 0);
    assert_int_equal(access(shot, R_OK), 0);

    /* The page's acknowledge: the POST it makes, with the generated token. */
    char tokpath[600];
    snprintf(tokpath, sizeof(tokpath), "%s/data/http-token", h_tmpdir());
    char *tok = h_slurp(tokpath);
    assert_non_null(tok);
    tok[strcspn(tok, "\n")] = '\0';
    static char resp[1 << 16];
    assert_int_equal(get(e->http, "/api/v1/alarms", NULL, resp, sizeof(resp)), 200);
    char *id = strstr(resp, "\"id\":\"depth:wl-001:");
    assert_non_null(id);
    id += 6;
    *strchr(id, '"') = '\0';
    char path[256];
    snprintf(path, sizeof(path), "/api/v1/alarms/%s/ack?by=test", id);
    assert_int_equal(post(e->http, path, tok, resp, sizeof(resp)), 200);
    assert_int_equal(get(e->http, "/api/v1/alarms", NULL, resp, sizeof(resp)), 200);
    assert_non_null(strstr(resp, "\"acked\":true"));
    free(tok);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_metrics_prometheus, setup, teardown),
        cmocka_unit_test_setup_teardown(test_health_flips_with_broker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_protocol_counters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_page_chromium, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
