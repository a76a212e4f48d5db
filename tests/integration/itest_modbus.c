/* End-to-end Modbus tests: the real gateway against the real simulator (TCP),
 * a libmodbus RTU server on a socat pty pair (RTU), and the test itself
 * playing a DTU that connects in (RTU over TCP). Readings are checked at the
 * platform (mosquitto + subscriber), request counts in the sim's stats file,
 * lateness in the gateway's gateway.modbus_stats file. Every wait is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <modbus.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static int broker_port;
static h_proc broker;

static int group_setup(void **state)
{
    h_tmpdir();
    broker_port = h_free_port();
    if (h_broker_start(&broker, broker_port))
        return -1;
    return h_platform_start(broker_port);
}

static int group_teardown(void **state)
{
    h_platform_stop();
    h_stop(&broker);
    h_cleanup();
    return 0;
}

/* ---- helpers ---- */

static const char *write_gateway(const char *name, const char *devices, const char *extra)
{
    static char text[16384];
    snprintf(text, sizeof(text),
             "gateway:\n  id: gw-mb\n  data_dir: %s/data-%s\n  log_level: info\n"
             "  shutdown_drain: 1s\n"
             "store:\n  commit_window: 2ms\n"
             "uplink:\n  uri: tcp://127.0.0.1:%d\n  topic_prefix: t\n  backoff_min: 100ms\n"
             "  backoff_max: 500ms\n  batch: 100\n"
             "%s"
             "devices:\n%s",
             h_tmpdir(), name, broker_port, extra ? extra : "", devices);
    char fname[64];
    snprintf(fname, sizeof(fname), "%s.yaml", name);
    return h_write_file(fname, text);
}

static int start_sim(h_proc *p, const char *scenario, const char *stats)
{
    char *argv[] = {(char *)h_bin("sim"), "modbus",  "--scenario", (char *)scenario, "--stats",
                    (char *)stats,        "--quiet", NULL};
    if (h_spawn(p, "sim.log", argv))
        return -1;
    return h_log_wait(p, "sim: ready", 15000) ? 0 : -1;
}

/* Starts the gateway on config with gateway.modbus_stats set to stats. */
static int start_gateway(h_proc *p, const char *config, const char *stats)
{
    char *text = h_slurp(config);
    const char *at = text ? strstr(text, "gateway:\n") : NULL;
    FILE *f = at ? fopen(config, "w") : NULL;
    if (f) {
        at += strlen("gateway:\n");
        fprintf(f, "%.*s  modbus_stats: %s\n%s", (int)(at - text), text, stats, at);
        fclose(f);
    }
    free(text);
    return f ? h_gateway_start(p, config) : -1;
}

static cJSON *read_json(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return cJSON_Parse(buf);
}

/* The latest reading of device/metric at the platform (1 found, 0 not). */
static int last_reading(const char *device, const char *metric, double *value, char *quality,
                        size_t qlen)
{
    cJSON *items = h_platform_items("/readings");
    int found = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        const char *d = cJSON_GetStringValue(cJSON_GetObjectItem(it, "device"));
        const char *m = cJSON_GetStringValue(cJSON_GetObjectItem(it, "metric"));
        if (!d || !m || strcmp(d, device) || strcmp(m, metric))
            continue;
        found = 1;
        *value = cJSON_GetNumberValue(cJSON_GetObjectItem(it, "value"));
        const char *q = cJSON_GetStringValue(cJSON_GetObjectItem(it, "quality"));
        snprintf(quality, qlen, "%s", q ? q : "?");
    }
    cJSON_Delete(items);
    return found;
}

/* Number of items of device with field key == val on topics ending in suffix. */
static int count_items(const char *suffix, const char *device, const char *key, const char *val)
{
    cJSON *items = h_platform_items(suffix);
    int n = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        const char *d = cJSON_GetStringValue(cJSON_GetObjectItem(it, "device"));
        const char *v = cJSON_GetStringValue(cJSON_GetObjectItem(it, key));
        if (d && v && !strcmp(d, device) && !strcmp(v, val))
            n++;
    }
    cJSON_Delete(items);
    return n;
}

struct want {
    const char *device, *metric;
    double value, tol;
};

static int all_good(void *ctx)
{
    const struct want *w = ctx;
    for (; w->device; w++) {
        double v;
        char q[16];
        if (!last_reading(w->device, w->metric, &v, q, sizeof(q)) || strcmp(q, "good") ||
            fabs(v - w->value) > w->tol)
            return 0;
    }
    return 1;
}

static void check_values(const struct want *w)
{
    for (; w->device; w++) {
        double v = NAN;
        char q[16] = "none";
        int found = last_reading(w->device, w->metric, &v, q, sizeof(q));
        if (!found || strcmp(q, "good") || fabs(v - w->value) > w->tol)
            fail_msg("%s %s: found %d value %g quality %s, want %g good", w->device, w->metric,
                     found, v, q, w->value);
    }
}

static cJSON *sim_device(cJSON *stats, const char *id)
{
    cJSON *d;
    cJSON_ArrayForEach(d, cJSON_GetObjectItem(stats, "devices"))
    {
        const char *i = cJSON_GetStringValue(cJSON_GetObjectItem(d, "id"));
        if (i && !strcmp(i, id))
            return d;
    }
    return NULL;
}

static double by_fc(cJSON *dev, const char *fc)
{
    cJSON *n = cJSON_GetObjectItem(cJSON_GetObjectItem(dev, "requests_by_fc"), fc);
    return n ? cJSON_GetNumberValue(n) : 0;
}

static int nkeys(cJSON *o)
{
    int n = 0;
    cJSON *x;
    cJSON_ArrayForEach(x, o) n++;
    return n;
}

/* A poll's readings share one outbox row: some readings message carries more
 * items than rows (its id names the row range "gw:r:FIRST-LAST"). */
static int poll_rows_seen(void)
{
    int seen = 0;
    for (size_t i = 0, n = h_platform_count(); i < n && !seen; i++) {
        h_msg m;
        if (h_platform_get(i, &m))
            continue;
        cJSON *j = strstr(m.topic, "/readings") ? cJSON_Parse(m.payload) : NULL;
        const char *id = j ? cJSON_GetStringValue(cJSON_GetObjectItem(j, "id")) : NULL;
        const char *r = id ? strstr(id, ":r:") : NULL;
        long long a, b;
        if (r && sscanf(r, ":r:%lld-%lld", &a, &b) == 2)
            seen = cJSON_GetArraySize(cJSON_GetObjectItem(j, "items")) > b - a + 1;
        cJSON_Delete(j);
        h_msg_free(&m);
    }
    return seen;
}

/* ---- 1. every shipped profile over Modbus TCP, and batching ---- */

static void test_profiles_tcp(void **state)
{
    int p = h_free_port_range(200);
    assert_true(p > 0);
    char scen[8192];
    snprintf(scen, sizeof(scen),
             "name: profiles\n"
             "devices:\n"
             "  - id: wl\n    port: %d\n    registers:\n"
             "      - {kind: holding, addr: 0, type: uint16, value: 123}\n"
             "      - {kind: holding, addr: 1, type: uint16, value: 1210}\n"
             "      - {kind: holding, addr: 2, type: int16, value: -55}\n"
             "  - id: rain\n    port: %d\n    registers:\n"
             "      - {kind: holding, addr: 0, type: uint32, value: 12345}\n"
             "  - id: level\n    port: %d\n    registers:\n"
             "      - {kind: holding, addr: 2, type: int32, value: -1500}\n"
             "  - id: radar\n    port: %d\n    registers:\n"
             "      - {kind: holding, addr: 1, type: uint16, value: 2500}\n"
             "      - {kind: holding, addr: 2, type: uint16, value: 0}\n"
             "      - {kind: holding, addr: 3, type: uint16, value: 1200}\n"
             "      - {kind: holding, addr: 4, type: uint16, value: 0}\n"
             "      - {kind: holding, addr: 5, type: uint16, value: 450}\n"
             "  - id: pressure\n    port: %d\n    registers:\n"
             "      - {kind: holding, addr: 2, type: uint16, value: 1}\n"
             "      - {kind: holding, addr: 3, type: uint16, value: 2}\n"
             "      - {kind: holding, addr: 4, type: int16, value: 12345}\n"
             "  - id: flow\n    port: %d\n    registers:\n"
             "      - {kind: input, addr: 0, type: float32, order: CDAB, value: 12.5}\n"
             "      - {kind: input, addr: 2, type: float32, order: CDAB, value: 1.25}\n"
             "      - {kind: input, addr: 4, type: float64, order: GHEFCDAB, value: 123456.75}\n"
             "  - id: alarm\n    port: %d\n    registers:\n"
             "      - {kind: coil, addr: 0, writable: true}\n"
             "      - {kind: coil, addr: 1, writable: true}\n"
             "      - {kind: holding, addr: 0, type: uint16, value: 7, writable: true}\n",
             p, p + 1, p + 2, p + 3, p + 4, p + 5, p + 6);
    const char *scen_path = h_write_file("profiles-scenario.yaml", scen);
    char sim_stats[512], gw_stats[512];
    snprintf(sim_stats, sizeof(sim_stats), "%s/profiles-sim.json", h_tmpdir());
    snprintf(gw_stats, sizeof(gw_stats), "%s/profiles-gw.json", h_tmpdir());
    h_proc sim, gw;
    assert_int_equal(start_sim(&sim, scen_path, sim_stats), 0);

    static const char *const profiles[] = {
        "waterlogging-wl100",   "sl651-rain-gauge",     "sl651-water-level", "radar-level",
        "pressure-transmitter", "flowmeter-float-cdab", "alarm-output"};
    static const char *const ids[] = {"wl", "rain", "level", "radar", "pressure", "flow", "alarm"};
    char devs[4096] = "";
    for (int i = 0; i < 7; i++) {
        char line[256];
        snprintf(line, sizeof(line),
                 "  - {id: %s, profile: %s, connect: \"tcp://127.0.0.1:%d\", interval: 200ms, "
                 "timeout: 150ms}\n",
                 ids[i], profiles[i], p + i);
        strcat(devs, line);
    }
    assert_int_equal(start_gateway(&gw, write_gateway("profiles", devs, NULL), gw_stats), 0);

    static const struct want want[] = {{"wl", "water_depth", 12.3, 1e-9},
                                       {"wl", "supply_voltage", 12.1, 1e-9},
                                       {"wl", "temperature", -5.5, 1e-9},
                                       {"rain", "rain_total", 1234.5, 1e-9},
                                       {"level", "water_level", -1.5, 1e-9},
                                       {"radar", "air_gap", 2.5, 1e-9},
                                       {"radar", "water_level", 1.2, 1e-9},
                                       {"radar", "install_height", 4.5, 1e-9},
                                       {"radar", "water_depth", 2.0, 1e-9},
                                       {"pressure", "pressure", 123.45, 1e-9},
                                       {"flow", "flow", 12.5, 1e-6},
                                       {"flow", "velocity", 1.25, 1e-6},
                                       {"flow", "flow_total", 123456.75, 1e-6},
                                       {"alarm", "siren", 0, 0},
                                       {"alarm", "sign", 0, 0},
                                       {"alarm", "sign_message", 7, 0},
                                       {NULL, NULL, 0, 0}};
    h_platform_wait(all_good, (void *)want, 15000);
    check_values(want);
    assert_true(poll_rows_seen());
    /* Let a few more polls run, then stop the gateway first so every request
     * it sent is counted by the sim. */
    struct timespec ts = {0, 600 * 1000000L};
    nanosleep(&ts, NULL); /* more cycles for the batching counts, not synchronisation */
    h_stop(&gw);
    h_stop(&sim);

    cJSON *ss = read_json(sim_stats), *gs = read_json(gw_stats);
    assert_non_null(ss);
    assert_non_null(gs);
    /* Planned: one read per device except alarm-output (FC 01 + FC 03). */
    static const char *const fcs[] = {"3", "3", "3", "3", "3", "4", NULL};
    double total = 0;
    for (int i = 0; i < 7; i++) {
        cJSON *d = sim_device(ss, ids[i]);
        assert_non_null(d);
        cJSON *byfc = cJSON_GetObjectItem(d, "requests_by_fc");
        total += cJSON_GetNumberValue(cJSON_GetObjectItem(d, "requests"));
        assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(d, "exceptions")), 0);
        if (fcs[i]) {
            assert_int_equal(nkeys(byfc), 1);
            assert_true(by_fc(d, fcs[i]) >= 3);
        } else {
            assert_int_equal(nkeys(byfc), 2);
            assert_true(by_fc(d, "1") >= 3);
            assert_true(fabs(by_fc(d, "1") - by_fc(d, "3")) <= 1);
        }
    }
    /* Every request the gateway sent, and nothing else, reached the sim. */
    assert_int_equal((long)total, (long)cJSON_GetNumberValue(cJSON_GetObjectItem(gs, "requests")));
    double cycles = cJSON_GetNumberValue(cJSON_GetObjectItem(gs, "cycles"));
    assert_true(total >= cycles * 8 / 7 - 8 && total <= cycles * 8 / 7 + 8);
    cJSON_Delete(ss);
    cJSON_Delete(gs);
}

/* ---- 2. silent devices do not delay the others; offline then online ---- */

static int events_seen(void *ctx)
{
    return count_items("/events", "quiet-0", "event", "online") >= 1;
}

static void test_silent_and_lateness(void **state)
{
    int p = h_free_port_range(200);
    assert_true(p > 0);
    char scen[2048];
    snprintf(scen, sizeof(scen),
             "name: silent\n"
             "devices:\n"
             "  - id: ok-{n}\n    first: 0\n    count: 40\n    port: %d\n    registers:\n"
             "      - {kind: holding, addr: 0, type: uint16, value: 100}\n"
             "      - {kind: holding, addr: 1, type: uint16, value: 1200}\n"
             "      - {kind: holding, addr: 2, type: int16, value: 200}\n"
             "  - id: quiet-{n}\n    first: 0\n    count: 10\n    port: %d\n    registers:\n"
             "      - {kind: holding, addr: 0, type: uint16, value: 100}\n"
             "      - {kind: holding, addr: 1, type: uint16, value: 1200}\n"
             "      - {kind: holding, addr: 2, type: int16, value: 200}\n"
             "    faults:\n      - {type: silent, from: 0s, to: 4s}\n",
             p, p + 100);
    const char *scen_path = h_write_file("silent-scenario.yaml", scen);
    char sim_stats[512], gw_stats[512];
    snprintf(sim_stats, sizeof(sim_stats), "%s/silent-sim.json", h_tmpdir());
    snprintf(gw_stats, sizeof(gw_stats), "%s/silent-gw.json", h_tmpdir());
    h_proc sim, gw;
    assert_int_equal(start_sim(&sim, scen_path, sim_stats), 0);
    static char devs[16384];
    devs[0] = '\0';
    for (int i = 0; i < 50; i++) {
        char line[256];
        snprintf(line, sizeof(line),
                 "  - {id: %s-%d, profile: waterlogging-wl100, connect: \"tcp://127.0.0.1:%d\", "
                 "interval: 100ms, timeout: 80ms, retries: 0, offline_after: 3}\n",
                 i < 40 ? "ok" : "quiet", i < 40 ? i : i - 40, i < 40 ? p + i : p + 100 + i - 40);
        strcat(devs, line);
    }
    assert_int_equal(start_gateway(&gw, write_gateway("silent", devs, NULL), gw_stats), 0);
    /* The quiet devices go offline, then come back when the fault ends. */
    assert_true(h_platform_wait(events_seen, NULL, 15000));
    assert_true(count_items("/events", "quiet-0", "event", "offline") >= 1);
    assert_true(count_items("/events", "ok-0", "event", "offline") == 0);
    h_stop(&gw);
    h_stop(&sim);
    cJSON *gs = read_json(gw_stats);
    assert_non_null(gs);
    double p99 = cJSON_GetNumberValue(cJSON_GetObjectItem(gs, "late_p99_ms"));
    double cycles = cJSON_GetNumberValue(cJSON_GetObjectItem(gs, "cycles"));
    double failed = cJSON_GetNumberValue(cJSON_GetObjectItem(gs, "cycles_failed"));
    print_message("cycles %g failed %g lateness p99 %g ms\n", cycles, failed, p99);
    assert_true(failed >= 10 * 3); /* every quiet device failed its polls */
    assert_true(p99 <= 50);
    /* 50 devices at 10 polls/s for > 4 s: nobody skipped a beat. */
    assert_true(cycles >= 50 * 10 * 4 * 0.6);
    cJSON_Delete(gs);
}

/* ---- 3. faults: exception, garbage, drop, late ---- */

static int fault_pred(void *ctx)
{
    double v;
    char q[16];
    return count_items("/events", "late", "event", "offline") >= 1 &&
           last_reading("exc", "water_depth", &v, q, sizeof(q)) && !strcmp(q, "bad") &&
           last_reading("garbage", "water_depth", &v, q, sizeof(q)) &&
           last_reading("drop", "water_depth", &v, q, sizeof(q));
}

static void test_faults(void **state)
{
    int p = h_free_port_range(200);
    assert_true(p > 0);
    char scen[4096];
    const char *regs = "    registers:\n"
                       "      - {kind: holding, addr: 0, type: uint16, value: 100}\n"
                       "      - {kind: holding, addr: 1, type: uint16, value: 1200}\n"
                       "      - {kind: holding, addr: 2, type: int16, value: 200}\n";
    snprintf(scen, sizeof(scen),
             "name: faults\n"
             "devices:\n"
             "  - id: exc\n    port: %d\n%s    faults:\n      - {type: exception, code: 2}\n"
             "  - id: garbage\n    port: %d\n%s    faults:\n      - {type: garbage, every: 3}\n"
             "  - id: drop\n    port: %d\n%s    faults:\n      - {type: drop, every: 4}\n"
             "  - id: late\n    port: %d\n%s    faults:\n      - {type: late, delay: 300ms}\n"
             "  - id: fine\n    port: %d\n%s",
             p, regs, p + 1, regs, p + 2, regs, p + 3, regs, p + 4, regs);
    const char *scen_path = h_write_file("faults-scenario.yaml", scen);
    char sim_stats[512], gw_stats[512];
    snprintf(sim_stats, sizeof(sim_stats), "%s/faults-sim.json", h_tmpdir());
    snprintf(gw_stats, sizeof(gw_stats), "%s/faults-gw.json", h_tmpdir());
    h_proc sim, gw;
    assert_int_equal(start_sim(&sim, scen_path, sim_stats), 0);
    static const char *const ids[] = {"exc", "garbage", "drop", "late", "fine"};
    char devs[4096] = "";
    for (int i = 0; i < 5; i++) {
        char line[256];
        snprintf(line, sizeof(line),
                 "  - {id: %s, profile: waterlogging-wl100, connect: \"tcp://127.0.0.1:%d\", "
                 "interval: 200ms, timeout: 100ms, retries: 0, offline_after: 2}\n",
                 ids[i], p + i);
        strcat(devs, line);
    }
    assert_int_equal(start_gateway(&gw, write_gateway("faults", devs, NULL), gw_stats), 0);
    assert_true(h_platform_wait(fault_pred, NULL, 15000));
    assert_true(h_log_wait(&gw, "garbage from the device", 15000));
    static const struct want fine[] = {{"fine", "water_depth", 10.0, 1e-9}, {NULL, NULL, 0, 0}};
    check_values(fine);
    /* The exception device answered: it is online, its points are bad. */
    assert_int_equal(count_items("/events", "exc", "event", "offline"), 0);
    assert_true(count_items("/readings", "exc", "reason", "comm_fail") >= 1);
    /* The gateway is alive and stops cleanly. */
    assert_int_equal(kill(gw.pid, 0), 0);
    assert_int_equal(h_signal(&gw, SIGTERM), 0);
    assert_int_equal(h_wait(&gw, 10000), 0);
    h_stop(&sim);
    cJSON *gs = read_json(gw_stats);
    assert_non_null(gs);
    assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(gs, "exceptions")) >= 1);
    assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(gs, "timeouts")) >= 1);
    assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(gs, "malformed")) >= 1);
    cJSON_Delete(gs);
}

/* ---- 4. RTU over a pty pair, against a libmodbus RTU server ---- */

struct rtu_server {
    char path[256];
    volatile int stop;
    int requests;
    pthread_t th;
};

static uint16_t crc16(const uint8_t *p, size_t n);

/* A raw RTU slave with unit 1 only (holding 0..2 = 321, 1190, -12). Not
 * libmodbus: its server, on a request for another unit, waits to snoop that
 * unit's answer and loses frame sync when the unit is absent, which is the
 * case this test wants. */
static void *rtu_serve(void *arg)
{
    struct rtu_server *s = arg;
    int fd = open(s->path, O_RDWR | O_NOCTTY);
    if (fd < 0)
        return NULL;
    struct termios tio;
    if (tcgetattr(fd, &tio) == 0) {
        cfmakeraw(&tio);
        tcsetattr(fd, TCSANOW, &tio);
    }
    const uint16_t regs[3] = {321, 1190, (uint16_t)-12};
    uint8_t buf[256];
    size_t len = 0;
    while (!s->stop) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 100) != 1)
            continue;
        ssize_t n = read(fd, buf + len, sizeof(buf) - len);
        if (n <= 0)
            continue;
        len += (size_t)n;
        while (len >= 8) {
            uint16_t crc = crc16(buf, 6);
            if (buf[6] != (uint8_t)crc || buf[7] != (uint8_t)(crc >> 8)) {
                memmove(buf, buf + 1, --len); /* resynchronise */
                continue;
            }
            uint8_t unit = buf[0], fc = buf[1];
            uint16_t addr = (uint16_t)(buf[2] << 8 | buf[3]),
                     cnt = (uint16_t)(buf[4] << 8 | buf[5]);
            memmove(buf, buf + 8, len - 8);
            len -= 8;
            if (unit != 1)
                continue; /* not on the bus */
            s->requests++;
            uint8_t out[64];
            size_t o = 0;
            out[o++] = 1;
            if (fc != 3 || addr + cnt > 3 || cnt == 0) {
                out[o++] = (uint8_t)(fc | 0x80);
                out[o++] = 2;
            } else {
                out[o++] = 3;
                out[o++] = (uint8_t)(2 * cnt);
                for (uint16_t i = 0; i < cnt; i++) {
                    out[o++] = (uint8_t)(regs[addr + i] >> 8);
                    out[o++] = (uint8_t)regs[addr + i];
                }
            }
            crc = crc16(out, o);
            out[o++] = (uint8_t)crc;
            out[o++] = (uint8_t)(crc >> 8);
            if (write(fd, out, o) != (ssize_t)o)
                break;
        }
    }
    close(fd);
    return NULL;
}

static int rtu_pred(void *ctx)
{
    return count_items("/events", "bus-2", "event", "offline") >= 1 && all_good(ctx);
}

static void test_rtu_pty(void **state)
{
    char a[256], b[256], la[300], lb[300];
    snprintf(a, sizeof(a), "%s/ttyGW", h_tmpdir());
    snprintf(b, sizeof(b), "%s/ttyDEV", h_tmpdir());
    snprintf(la, sizeof(la), "pty,raw,echo=0,link=%s", a);
    snprintf(lb, sizeof(lb), "pty,raw,echo=0,link=%s", b);
    char *argv[] = {"socat", la, lb, NULL};
    h_proc socat;
    assert_int_equal(h_spawn(&socat, "socat.log", argv), 0);
    struct stat st;
    int64_t end = h_now_ms() + 5000;
    while ((stat(a, &st) || stat(b, &st)) && h_now_ms() < end) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL); /* waiting for socat to create the links */
    }
    assert_int_equal(stat(b, &st), 0);
    struct rtu_server srv;
    memset(&srv, 0, sizeof(srv));
    snprintf(srv.path, sizeof(srv.path), "%s", b);
    assert_int_equal(pthread_create(&srv.th, NULL, rtu_serve, &srv), 0);

    char devs[1024], gw_stats[512];
    snprintf(devs, sizeof(devs),
             "  - {id: bus-1, protocol: modbus-rtu, profile: waterlogging-wl100, serial: %s, "
             "baud: 9600, parity: N, stop_bits: 1, frame_gap: 2ms, unit: 1, interval: 300ms, "
             "timeout: 100ms, retries: 0, offline_after: 2}\n"
             "  - {id: bus-2, protocol: modbus-rtu, profile: waterlogging-wl100, serial: %s, "
             "baud: 9600, parity: N, stop_bits: 1, frame_gap: 2ms, unit: 2, interval: 300ms, "
             "timeout: 100ms, retries: 0, offline_after: 2}\n",
             a, a);
    snprintf(gw_stats, sizeof(gw_stats), "%s/rtu-gw.json", h_tmpdir());
    h_proc gw;
    assert_int_equal(start_gateway(&gw, write_gateway("rtu", devs, NULL), gw_stats), 0);
    static const struct want want[] = {{"bus-1", "water_depth", 32.1, 1e-9},
                                       {"bus-1", "supply_voltage", 11.9, 1e-9},
                                       {"bus-1", "temperature", -1.2, 1e-9},
                                       {NULL, NULL, 0, 0}};
    int ok = h_platform_wait(rtu_pred, (void *)want, 15000);
    h_stop(&gw);
    srv.stop = 1;
    pthread_join(srv.th, NULL);
    h_stop(&socat);
    check_values(want);
    assert_true(ok);
    assert_true(srv.requests >= 2);
}

/* ---- 5. a DTU connecting in: registration, heartbeats, two units ---- */

static uint16_t crc16(const uint8_t *p, size_t n)
{
    uint16_t crc = 0xFFFF;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc & 1) ? (uint16_t)((crc >> 1) ^ 0xA001) : (uint16_t)(crc >> 1);
    }
    return crc;
}

static int dtu_connect(int port, const char *reg)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
        close(fd);
        return -1;
    }
    if (write(fd, reg, strlen(reg)) != (ssize_t)strlen(reg)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Answers one RTU request read from fd (holding registers: unit 1 serves
 * 50, 1234, 77; unit 2 serves 60, 1100, -30). Returns 1 served, 0 nothing
 * complete yet, -1 closed. */
static int dtu_serve(int fd, uint8_t *buf, size_t *len, int *bad)
{
    ssize_t n = read(fd, buf + *len, 256 - *len);
    if (n <= 0)
        return n == 0 ? -1 : 0;
    *len += (size_t)n;
    if (*len < 8)
        return 0;
    uint16_t crc = crc16(buf, 6);
    if (buf[6] != (uint8_t)crc || buf[7] != (uint8_t)(crc >> 8) || buf[1] != 3) {
        (*bad)++;
        *len = 0;
        return 0;
    }
    uint16_t addr = (uint16_t)(buf[2] << 8 | buf[3]), cnt = (uint16_t)(buf[4] << 8 | buf[5]);
    uint16_t vals1[] = {50, 1234, 77}, vals2[] = {60, 1100, (uint16_t)-30};
    const uint16_t *v = buf[0] == 1 ? vals1 : vals2;
    uint8_t out[64];
    size_t o = 0;
    out[o++] = buf[0];
    out[o++] = 3;
    out[o++] = (uint8_t)(2 * cnt);
    for (uint16_t i = 0; i < cnt && addr + i < 3; i++) {
        out[o++] = (uint8_t)(v[addr + i] >> 8);
        out[o++] = (uint8_t)v[addr + i];
    }
    crc = crc16(out, o);
    out[o++] = (uint8_t)crc;
    out[o++] = (uint8_t)(crc >> 8);
    *len = 0;
    /* A heartbeat before the answer: it must be dropped, not taken for data. */
    if (write(fd, "HB", 2) != 2 || write(fd, out, o) != (ssize_t)o)
        return -1;
    return 1;
}

static void test_dtu_inbound(void **state)
{
    int port = h_free_port();
    char devs[1024], extra[512], gw_stats[512];
    snprintf(devs, sizeof(devs),
             "  - {id: dtu-a1, protocol: modbus-dtu, dtu: ABC123, unit: 1, profile: "
             "waterlogging-wl100, interval: 200ms, timeout: 150ms}\n"
             "  - {id: dtu-a2, protocol: modbus-dtu, dtu: ABC123, unit: 2, profile: "
             "waterlogging-wl100, interval: 200ms, timeout: 150ms}\n");
    snprintf(extra, sizeof(extra),
             "listeners:\n  - {protocol: modbus-dtu, listen: \"127.0.0.1:%d\", register_prefix: "
             "\"REG:\", register_length: 6, heartbeat: HB, idle_timeout: 30s}\n",
             port);
    snprintf(gw_stats, sizeof(gw_stats), "%s/dtu-gw.json", h_tmpdir());
    h_proc gw;
    assert_int_equal(start_gateway(&gw, write_gateway("dtu", devs, extra), gw_stats), 0);
    assert_true(h_port_wait(port, 5000));

    /* An unknown DTU is refused: the gateway closes the connection. */
    int stranger = dtu_connect(port, "REG:ZZZ999");
    assert_true(stranger >= 0);
    struct pollfd sp = {stranger, POLLIN, 0};
    assert_int_equal(poll(&sp, 1, 5000), 1);
    char tmp[16];
    assert_int_equal(read(stranger, tmp, sizeof(tmp)), 0);
    close(stranger);

    int fd = dtu_connect(port, "REG:ABC123");
    assert_true(fd >= 0);
    static const struct want want[] = {{"dtu-a1", "water_depth", 5.0, 1e-9},
                                       {"dtu-a1", "supply_voltage", 12.34, 1e-9},
                                       {"dtu-a2", "water_depth", 6.0, 1e-9},
                                       {"dtu-a2", "temperature", -3.0, 1e-9},
                                       {NULL, NULL, 0, 0}};
    uint8_t buf[256];
    size_t len = 0;
    int served = 0, bad = 0;
    int64_t end = h_now_ms() + 15000;
    while (h_now_ms() < end && !(served >= 4 && all_good((void *)want))) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 100) == 1) {
            int r = dtu_serve(fd, buf, &len, &bad);
            assert_true(r >= 0);
            served += r;
        }
    }
    check_values(want);
    assert_int_equal(bad, 0);
    close(fd);
    h_stop(&gw);
}

/* ---- 6. Modbus TCP answers cut across reads ---- */

/* A Modbus TCP device that cuts every answer into three writes a few ms
 * apart (the second cut inside the MBAP header), and from the second answer
 * on sends a stale frame (an old transaction id) glued before it: the
 * gateway reads into one shared buffer and must carry a cut frame per
 * connection, skip the stale one and take the answer. */
struct split_server {
    int lfd;
    volatile int stop;
    int served;
    pthread_t th;
};

static void split_write(int fd, const uint8_t *p, size_t n, size_t cut1, size_t cut2)
{
    const size_t at[] = {0, cut1, cut2, n};
    for (int i = 0; i < 3; i++) {
        if (at[i + 1] > at[i] && write(fd, p + at[i], at[i + 1] - at[i]) < 0)
            return;
        struct timespec ts = {0, 15 * 1000000L}; /* the peer's pacing, not a wait for the gateway */
        nanosleep(&ts, NULL);
    }
}

static void *split_serve(void *arg)
{
    struct split_server *s = arg;
    const uint16_t regs[3] = {100, 1200, 200};
    while (!s->stop) {
        struct pollfd pf = {s->lfd, POLLIN, 0};
        if (poll(&pf, 1, 100) != 1)
            continue;
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        uint8_t req[12];
        size_t len = 0;
        while (!s->stop) {
            struct pollfd cf = {fd, POLLIN, 0};
            if (poll(&cf, 1, 100) != 1)
                continue;
            ssize_t n = read(fd, req + len, sizeof(req) - len);
            if (n <= 0)
                break;
            len += (size_t)n;
            if (len < sizeof(req))
                continue;
            len = 0;
            uint16_t addr = (uint16_t)(req[8] << 8 | req[9]),
                     cnt = (uint16_t)(req[10] << 8 | req[11]);
            uint8_t out[600];
            size_t o = 0;
            for (int k = s->served ? 0 : 1; k < 2; k++) {
                uint16_t tid = (uint16_t)((req[0] << 8 | req[1]) - (k == 0));
                size_t start = o;
                out[o++] = (uint8_t)(tid >> 8);
                out[o++] = (uint8_t)tid;
                out[o++] = 0;
                out[o++] = 0;
                o += 2; /* length, below */
                out[o++] = req[6];
                out[o++] = 3;
                out[o++] = (uint8_t)(2 * cnt);
                for (uint16_t i = 0; i < cnt && o + 2 < sizeof(out); i++) {
                    uint16_t v = addr + i < 3 ? regs[addr + i] : 0;
                    out[o++] = (uint8_t)(v >> 8);
                    out[o++] = (uint8_t)v;
                }
                out[start + 4] = (uint8_t)((o - start - 6) >> 8);
                out[start + 5] = (uint8_t)(o - start - 6);
            }
            /* Cut 3 bytes into the answer's header, then 2 bytes before the end. */
            size_t ans = o - (9 + 2 * (size_t)cnt);
            split_write(fd, out, o, ans + 3, o - 2);
            s->served++;
        }
        close(fd);
    }
    return NULL;
}

static void test_tcp_split_answers(void **state)
{
    int port = h_free_port();
    struct split_server srv = {.lfd = socket(AF_INET, SOCK_STREAM, 0)};
    int one = 1;
    setsockopt(srv.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(bind(srv.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(srv.lfd, 4), 0);
    assert_int_equal(pthread_create(&srv.th, NULL, split_serve, &srv), 0);
    char devs[512], gw_stats[512];
    snprintf(devs, sizeof(devs),
             "  - {id: cut, profile: waterlogging-wl100, connect: \"tcp://127.0.0.1:%d\", "
             "interval: 300ms, timeout: 200ms, retries: 0}\n",
             port);
    snprintf(gw_stats, sizeof(gw_stats), "%s/split-gw.json", h_tmpdir());
    h_proc gw;
    assert_int_equal(start_gateway(&gw, write_gateway("split", devs, NULL), gw_stats), 0);
    static const struct want want[] = {{"cut", "water_depth", 10.0, 1e-9}, {NULL, NULL, 0, 0}};
    int64_t end = h_now_ms() + 15000;
    while (h_now_ms() < end && !(srv.served >= 4 && all_good((void *)want)))
        h_platform_wait(all_good, (void *)want, 200);
    assert_int_equal(h_signal(&gw, SIGTERM), 0);
    assert_int_equal(h_wait(&gw, 10000), 0);
    srv.stop = 1;
    pthread_join(srv.th, NULL);
    close(srv.lfd);
    check_values(want);
    assert_true(srv.served >= 4);
    cJSON *gs = read_json(gw_stats);
    assert_non_null(gs);
    assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(gs, "malformed")), 0);
    assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(gs, "timeouts")), 0);
    cJSON_Delete(gs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_profiles_tcp), cmocka_unit_test(test_silent_and_lateness),
        cmocka_unit_test(test_faults),       cmocka_unit_test(test_rtu_pty),
        cmocka_unit_test(test_dtu_inbound),  cmocka_unit_test(test_tcp_split_answers),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
