/* End-to-end tests of the core: sim -> gateway -> mosquitto -> platform, with
 * the broker stopped mid-stream, the gateway killed with SIGKILL, a backlog of
 * 100,000 rows, a full outbox and bad config files. Real processes on
 * loopback; every wait is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/integration/harness.h"

#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct env {
    int broker_port;
    h_proc broker, gw, sim;
    char config[512];
    char db[512];
};

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    h_tmpdir();
    assert_int_equal(h_peers_start(&e->broker, &e->broker_port), 0);
    snprintf(e->db, sizeof(e->db), "%s/data/outbox.db", h_tmpdir());
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    int gw_status = h_peers_stop(&e->gw, &e->sim, &e->broker);
    free(e);
    /* A clean SIGTERM exit is part of every test: 0, no leak under ASan. */
    assert_int_equal(gw_status, 0);
    return 0;
}

/* Writes a gateway config: the uplink to the test broker plus `devices` and
 * `extra` YAML blocks. */
static void write_config(struct env *e, const char *store, const char *devices, const char *extra)
{
    char text[8192];
    snprintf(text, sizeof(text),
             "gateway:\n  id: gw-test\n  data_dir: %s/data\n  log_level: info\n"
             "  shutdown_drain: 2s\n"
             "store:\n%s"
             "uplink:\n  uri: tcp://127.0.0.1:%d\n  topic_prefix: t\n  backoff_min: 100ms\n"
             "  backoff_max: 500ms\n  batch: 100\n"
             "devices:\n%s%s",
             h_tmpdir(), store ? store : "  commit_window: 2ms\n", e->broker_port, devices,
             extra ? extra : "");
    snprintf(e->config, sizeof(e->config), "%s", h_write_file("gateway.yaml", text));
}

static const char *synthetic_device(int rate, long total)
{
    static char buf[256];
    snprintf(buf, sizeof(buf),
             "  - id: syn-1\n    protocol: synthetic\n    type: loadgen\n    rate: %d\n"
             "    total: %ld\n",
             rate, total);
    return buf;
}

/* ---- helpers over what the platform received ---- */

struct seen {
    const char *device;
    long want; /* distinct items wanted */
};

/* Distinct item ids so far for a device (readings topic). */
static long distinct_readings(const char *device, long *dups, int *order_ok, long *min_seq,
                              long *max_seq)
{
    cJSON *items = h_platform_items("/readings");
    long n = 0, d = 0;
    long last = -1;
    int ok = 1;
    long lo = -1, hi = -1;
    /* seq -> seen, via a bitmap from the lowest seq (a new gateway's sequence
     * starts from the clock, far from 0) */
    size_t cap = 1 << 20;
    unsigned char *bits = calloc(cap / 8, 1);
    long base = -1;
    cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        const char *dev = cJSON_GetStringValue(cJSON_GetObjectItem(it, "device"));
        long seq = (long)cJSON_GetNumberValue(cJSON_GetObjectItem(it, "seq"));
        if (dev && !strcmp(dev, device) && (base < 0 || seq < base))
            base = seq;
    }
    cJSON_ArrayForEach(it, items)
    {
        const char *dev = cJSON_GetStringValue(cJSON_GetObjectItem(it, "device"));
        if (!dev || strcmp(dev, device))
            continue;
        long seq = (long)cJSON_GetNumberValue(cJSON_GetObjectItem(it, "seq"));
        long k = seq - base;
        if (k < 0 || (size_t)k >= cap)
            continue;
        if (bits[k / 8] & (1 << (k % 8))) {
            d++;
            continue;
        }
        bits[k / 8] |= (unsigned char)(1 << (k % 8));
        n++;
        if (seq < last)
            ok = 0; /* a new item arrived behind a later one */
        last = seq;
        if (lo < 0 || seq < lo)
            lo = seq;
        if (seq > hi)
            hi = seq;
    }
    free(bits);
    cJSON_Delete(items);
    if (dups)
        *dups = d;
    if (order_ok)
        *order_ok = ok;
    if (min_seq)
        *min_seq = lo;
    if (max_seq)
        *max_seq = hi;
    return n;
}

/* The sequence a gateway started from: its start line names the last
 * sequence committed (a new data directory's comes from the clock). */
static long start_seq(h_proc *gw)
{
    FILE *f = fopen(gw->log, "r");
    assert_non_null(f);
    char line[1024];
    long seq = -1;
    while (fgets(line, sizeof(line), f)) {
        char *p = strstr(line, "(");
        if (strstr(line, "last sequence)") && p)
            seq = strtol(p + 1, NULL, 10);
    }
    fclose(f);
    assert_true(seq >= 0);
    return seq;
}

static int enough_readings(void *ctx)
{
    struct seen *s = ctx;
    return distinct_readings(s->device, NULL, NULL, NULL, NULL) >= s->want;
}

/* ---- 1. a reading travels sim -> gateway -> broker ---- */

#define SCENARIO_CONSTANT                                                                          \
    "name: constant\n"                                                                             \
    "devices:\n"                                                                                   \
    "  - id: wl-{n:03}\n"                                                                          \
    "    count: 1\n"                                                                               \
    "    protocol: modbus-tcp\n"                                                                   \
    "    port: %d\n"                                                                               \
    "    unit: 1\n"                                                                                \
    "    registers:\n"                                                                             \
    "      - {kind: holding, addr: 0, type: uint16, scale: 10, curve: {type: constant, value: "    \
    "12.3}}\n"                                                                                     \
    "      - {kind: holding, addr: 1, type: uint16, scale: 100, curve: {type: constant, value: "   \
    "12.1}}\n"                                                                                     \
    "      - {kind: holding, addr: 2, type: int16, scale: 10, curve: {type: constant, value: "     \
    "-5.5}}\n"

static int has_depth(void *ctx)
{
    cJSON *items = h_platform_items("/readings");
    int found = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        const char *m = cJSON_GetStringValue(cJSON_GetObjectItem(it, "metric"));
        if (m && strcmp(m, "temperature") == 0)
            found = 1;
    }
    cJSON_Delete(items);
    return found;
}

static cJSON *find_item(cJSON *items, const char *device, const char *metric)
{
    cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        const char *d = cJSON_GetStringValue(cJSON_GetObjectItem(it, "device"));
        const char *m = cJSON_GetStringValue(cJSON_GetObjectItem(it, "metric"));
        if (d && m && !strcmp(d, device) && !strcmp(m, metric))
            return it;
    }
    return NULL;
}

static int64_t parse_iso_ms(const char *s)
{
    struct tm tm = {0};
    int ms = 0;
    if (!s || sscanf(s, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                     &tm.tm_min, &tm.tm_sec, &ms) != 7)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

static void test_reading_travels(void **state)
{
    struct env *e = *state;
    int port = h_free_port();
    char sc[2048];
    snprintf(sc, sizeof(sc), SCENARIO_CONSTANT, port);
    assert_int_equal(h_sim_start(&e->sim, h_write_file("scenario.yaml", sc), NULL), 0);
    char dev[512];
    snprintf(dev, sizeof(dev),
             "  - id: wl-001\n    profile: waterlogging-wl100\n    connect: tcp://127.0.0.1:%d\n"
             "    interval: 200ms\n    timeout: 150ms\n",
             port);
    write_config(e, NULL, dev, NULL);
    int64_t t0 = h_now_ms();
    assert_int_equal(h_gateway_start(&e->gw, e->config), 0);
    assert_true(h_platform_wait(has_depth, NULL, 15000));
    int64_t t1 = h_now_ms();

    cJSON *items = h_platform_items("/readings");
    cJSON *depth = find_item(items, "wl-001", "water_depth");
    cJSON *volt = find_item(items, "wl-001", "supply_voltage");
    cJSON *temp = find_item(items, "wl-001", "temperature");
    assert_non_null(depth);
    assert_non_null(volt);
    assert_non_null(temp);
    assert_float_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(depth, "value")), 12.3, 1e-9);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(depth, "unit")), "cm");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(depth, "quality")), "good");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(depth, "type")), "waterlogging");
    assert_float_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(volt, "value")), 12.1, 1e-9);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(volt, "unit")), "V");
    assert_float_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(temp, "value")), -5.5, 1e-9);
    int64_t obs = parse_iso_ms(cJSON_GetStringValue(cJSON_GetObjectItem(depth, "obs")));
    int64_t recv = parse_iso_ms(cJSON_GetStringValue(cJSON_GetObjectItem(depth, "recv")));
    assert_true(obs >= t0 - 1000 && obs <= t1);
    assert_true(recv >= obs && recv <= t1);
    /* Item ids are "<gateway>-<seq>". */
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(depth, "id"));
    char want[64];
    snprintf(want, sizeof(want), "gw-test-%ld",
             (long)cJSON_GetNumberValue(cJSON_GetObjectItem(depth, "seq")));
    assert_string_equal(id, want);
    cJSON_Delete(items);

    /* The device came online: an event in the priority lane. */
    cJSON *events = h_platform_items("/events");
    int online = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, events)
    {
        const char *k = cJSON_GetStringValue(cJSON_GetObjectItem(it, "event"));
        online |= k && !strcmp(k, "online");
    }
    cJSON_Delete(events);
    assert_true(online);

    /* SIGTERM: graceful exit 0. */
    h_signal(&e->gw, SIGTERM);
    assert_int_equal(h_wait(&e->gw, 10000), 0);
    assert_true(h_log_contains(&e->gw, "stopped"));
}

/* ---- 2. broker stopped mid-stream ---- */

static void test_broker_outage(void **state)
{
    struct env *e = *state;
    write_config(e, NULL, synthetic_device(500, 0), NULL);
    assert_int_equal(h_gateway_start(&e->gw, e->config), 0);
    long base = start_seq(&e->gw);
    struct seen s = {"syn-1", 300};
    assert_true(h_platform_wait(enough_readings, &s, 15000));

    /* The platform's session and queued messages are persisted by mosquitto. */
    h_stop(&e->broker);
    assert_true(h_log_wait(&e->gw, "connection to", 10000));
    /* While the broker is down the outbox grows: wait for 1,500 queued rows. */
    assert_true(h_outbox_wait(e->db, "outbox_tele", 1500, 20000));
    assert_int_equal(h_broker_start(&e->broker, e->broker_port), 0);

    /* Stop the producer and let everything drain. */
    h_signal(&e->gw, SIGTERM);
    assert_int_equal(h_wait(&e->gw, 15000), 0);
    e->gw.pid = 0;
    long max_made = 0;
    {
        /* The gateway's last committed sequence tells how many were accepted. */
        sqlite3 *h;
        sqlite3_stmt *st;
        assert_int_equal(sqlite3_open_v2(e->db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        assert_int_equal(
            sqlite3_prepare_v2(h, "SELECT value FROM meta WHERE key='seq'", -1, &st, NULL),
            SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        max_made = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(h);
    }
    /* Restart to drain whatever SIGTERM's drain window left behind. */
    write_config(e, NULL, "  []\n", NULL);
    assert_int_equal(h_gateway_start(&e->gw, e->config), 0);
    long events_seen = 1; /* one "online"-free run: synthetic devices emit no events */
    (void)events_seen;
    long dups, lo, hi;
    int order_ok;
    struct seen all = {"syn-1", 0};
    /* Every accepted reading has seq <= max_made; base+1..max_made must all
     * arrive (base + 1 is the first item the gateway made). */
    all.want = max_made - base;
    int complete = h_platform_wait(enough_readings, &all, 60000);
    long n = distinct_readings("syn-1", &dups, &order_ok, &lo, &hi);
    if (!complete)
        fail_msg("%ld of %ld readings arrived (seq %ld..%ld)", n, max_made - base, lo, hi);
    assert_int_equal(n, max_made - base);
    assert_int_equal(lo, base + 1);
    assert_int_equal(hi, max_made);
    assert_true(order_ok);
    print_message("broker outage: %ld readings, all arrived in order, %ld redelivered duplicates\n",
                  n, dups);
}

/* ---- 3. SIGKILL mid-stream ---- */

static void test_kill9(void **state)
{
    struct env *e = *state;
    write_config(e, NULL, synthetic_device(2000, 0), NULL);
    assert_int_equal(h_gateway_start(&e->gw, e->config), 0);
    long base = start_seq(&e->gw);
    struct seen s = {"syn-1", 2000};
    assert_true(h_platform_wait(enough_readings, &s, 20000));
    h_signal(&e->gw, SIGKILL);
    assert_int_equal(h_wait(&e->gw, 5000), 128 + SIGKILL);

    /* Restart without the producer; its start line names the last sequence
     * committed before the kill: everything up to it must reach the platform. */
    write_config(e, NULL, "  []\n", NULL);
    assert_int_equal(h_gateway_start(&e->gw, e->config), 0);
    long accepted = start_seq(&e->gw) - base;
    assert_true(accepted >= 2000);
    struct seen all = {"syn-1", accepted};
    assert_true(h_platform_wait(enough_readings, &all, 60000));
    long dups, lo, hi;
    int order_ok;
    long n = distinct_readings("syn-1", &dups, &order_ok, &lo, &hi);
    assert_int_equal(n, accepted);
    assert_int_equal(lo, base + 1);
    assert_int_equal(hi, base + accepted);
    assert_true(order_ok);
    print_message("kill -9: %ld accepted before the kill, all delivered, %ld duplicates\n",
                  accepted, dups);
}

/* ---- 6. bad config files ---- */

struct badcase {
    const char *name;
    const char *text;
    const char *want[3]; /* substrings of the error */
};

static void test_bad_configs(void **state)
{
    static const struct badcase cases[] = {
        {"unknown-key.yaml",
         "gateway:\n  id: g\n  colour: blue\nuplink:\n  uri: tcp://127.0.0.1:1\n",
         {":3:", "unknown key 'gateway.colour'"}},
        {"wrong-type.yaml",
         "gateway:\n  id: g\nuplink:\n  uri: tcp://127.0.0.1:1\n  batch: lots\n",
         {":5:", "'uplink.batch'", "integer"}},
        {"out-of-range.yaml",
         "gateway:\n  id: g\nuplink:\n  uri: tcp://127.0.0.1:1\n  max_inflight: 100000\n",
         {":5:", "'uplink.max_inflight'", "between"}},
        {"bad-duration.yaml",
         "gateway:\n  id: g\nuplink:\n  uri: tcp://127.0.0.1:1\ndevices:\n  - id: d1\n"
         "    profile: waterlogging-wl100\n    connect: tcp://127.0.0.1:502\n    interval: "
         "fast\n",
         {":9:", "'devices[0].interval'", "duration"}},
        {"duplicate-key.yaml",
         "gateway:\n  id: g\n  id: h\nuplink:\n  uri: tcp://127.0.0.1:1\n",
         {":3:", "duplicate key 'id'"}},
        {"missing-uplink.yaml", "gateway:\n  id: g\n", {":1:", "missing required key 'uplink'"}},
        {"bad-uri.yaml", "gateway:\n  id: g\nuplink:\n  uri: http://x\n", {":4:", "'uplink.uri'"}},
        {"dup-device.yaml",
         "gateway:\n  id: g\nuplink:\n  uri: tcp://127.0.0.1:1\ndevices:\n"
         "  - {id: d1, profile: waterlogging-wl100, connect: tcp://127.0.0.1:502}\n"
         "  - {id: d1, profile: waterlogging-wl100, connect: tcp://127.0.0.1:503}\n",
         {":7:", "defined twice"}},
        {"unknown-profile.yaml",
         "gateway:\n  id: g\nuplink:\n  uri: tcp://127.0.0.1:1\ndevices:\n"
         "  - {id: d1, profile: no-such-profile, connect: tcp://127.0.0.1:502}\n",
         {":6:", "no-such-profile"}},
        {"syntax.yaml", "gateway:\n  id: [g\nuplink: {\n", {"syntax.yaml:"}},
        /* Errors caused by a default the file never wrote name the line of
         * the device (or the key) that makes the default wrong, not ?:0:. */
        {"default-timeout.yaml",
         "gateway:\n  id: g\nuplink:\n  uri: tcp://127.0.0.1:1\ndevices:\n"
         "  - {id: d1, profile: waterlogging-wl100, connect: tcp://127.0.0.1:502,\n"
         "     interval: 500ms}\n",
         {"default-timeout.yaml:6:", "(1000 ms, the default)", "device 'd1'"}},
        {"default-backoff.yaml",
         "gateway:\n  id: g\nuplink:\n  uri: tcp://127.0.0.1:1\n  backoff_max: 100ms\n",
         {"default-backoff.yaml:5:", "'uplink.backoff_min'"}},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *path = h_write_file(cases[i].name, cases[i].text);
        h_proc p = {0};
        char *argv[] = {(char *)h_bin("gateway"), "--check-config", (char *)path, NULL};
        char logname[64];
        snprintf(logname, sizeof(logname), "check-%zu.log", i);
        assert_int_equal(h_spawn(&p, logname, argv), 0);
        int rc = h_wait(&p, 10000);
        if (rc != 1)
            fail_msg("%s: exit %d, want 1", cases[i].name, rc);
        for (int k = 0; k < 3 && cases[i].want[k]; k++) {
            if (!h_log_contains(&p, cases[i].want[k]))
                fail_msg("%s: error does not mention \"%s\"", cases[i].name, cases[i].want[k]);
        }
        if (!h_log_contains(&p, cases[i].name))
            fail_msg("%s: error does not name the file", cases[i].name);
    }
    /* The gateway itself refuses to start on a bad config. */
    h_proc p = {0};
    char *argv[] = {(char *)h_bin("gateway"), "-c", (char *)h_write_file("x.yaml", cases[0].text),
                    NULL};
    assert_int_equal(h_spawn(&p, "refuse.log", argv), 0);
    assert_int_equal(h_wait(&p, 10000), 1);
    assert_true(h_log_contains(&p, "unknown key 'gateway.colour'"));
}

/* A device's profile may be a file of its own (adapters/profiles/README.md):
 * a path with a '/', relative to the config file's folder, or absolute. */
static void test_profile_path(void **state)
{
    char *shipped = h_slurp("adapters/profiles/waterlogging-wl100.yaml");
    assert_non_null(shipped);
    char dir[300], cmd[700];
    snprintf(dir, sizeof(dir), "%s/profiles", h_tmpdir());
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", dir);
    assert_int_equal(system(cmd), 0);
    char *name = strstr(shipped, "name: waterlogging-wl100");
    assert_non_null(name);
    memcpy(name, "name: my-sensor-wl100-", 22); /* same length: a profile of its own */
    h_write_file("profiles/my.yaml", shipped);
    free(shipped);
    char text[1024];
    const struct {
        const char *profile;
        int rc;
        const char *want;
    } cases[] = {
        {"profiles/my.yaml", 0, "OK (1 devices)"},
        {"ABS", 0, "OK (1 devices)"},
        {"profiles/missing.yaml", 1, ":6: device 'd1': "},
    };
    for (int i = 0; i < 3; i++) {
        char abs[400];
        snprintf(abs, sizeof(abs), "%s/my.yaml", dir);
        snprintf(text, sizeof(text),
                 "gateway:\n  id: g\nuplink:\n  uri: tcp://127.0.0.1:1\ndevices:\n"
                 "  - {id: d1, profile: %s, connect: tcp://127.0.0.1:502}\n",
                 strcmp(cases[i].profile, "ABS") ? cases[i].profile : abs);
        char fname[32], logname[32];
        snprintf(fname, sizeof(fname), "profile-%d.yaml", i);
        snprintf(logname, sizeof(logname), "profile-%d.log", i);
        const char *path = h_write_file(fname, text);
        h_proc p = {0};
        char *argv[] = {(char *)h_bin("gateway"), "--check-config", (char *)path, NULL};
        assert_int_equal(h_spawn(&p, logname, argv), 0);
        int rc = h_wait(&p, 10000);
        if (rc != cases[i].rc || !h_log_contains(&p, cases[i].want)) {
            h_dump_log(&p);
            fail_msg("profile %s: exit %d, want %d and \"%s\"", cases[i].profile, rc, cases[i].rc,
                     cases[i].want);
        }
    }
}

/* A bad file on SIGHUP leaves the running config untouched. */
static void test_bad_reload(void **state)
{
    struct env *e = *state;
    write_config(e, NULL, synthetic_device(100, 0), NULL);
    assert_int_equal(h_gateway_start(&e->gw, e->config), 0);
    struct seen s = {"syn-1", 20};
    assert_true(h_platform_wait(enough_readings, &s, 15000));
    h_write_file("gateway.yaml", "gateway:\n  id: gw-test\n  bogus: 1\n");
    h_signal(&e->gw, SIGHUP);
    assert_true(h_log_wait(&e->gw, "keeping the running configuration", 10000));
    long before = distinct_readings("syn-1", NULL, NULL, NULL, NULL);
    s.want = before + 50;
    assert_true(h_platform_wait(enough_readings, &s, 15000));
}

/* Offline (or online) events of a whole fleet at once: every event reaches the
 * platform, but the log holds 20 lines and one line for the rest, so a start
 * or an outage of 10,000 devices does not run into journald's rate limit
 * (10,000 messages in 30 s by default), which would drop the warnings after
 * it (gateway/liveness.c). */
static int offline_events(void *ctx)
{
    long n = 0, *want = ctx;
    cJSON *items = h_platform_items_once("/events"), *it;
    cJSON_ArrayForEach(it, items)
    {
        const char *ev = cJSON_GetStringValue(cJSON_GetObjectItem(it, "event"));
        n += ev && !strcmp(ev, "offline");
    }
    cJSON_Delete(items);
    return n >= *want;
}

static void test_fleet_state_lines_bounded(void **state)
{
    struct env *e = *state;
    int port = h_free_port(); /* nothing listens: every poll is refused */
    assert_true(port > 0);
    char devices[8192];
    size_t at = 0;
    for (int i = 0; i < 30; i++)
        at += (size_t)snprintf(devices + at, sizeof(devices) - at,
                               "  - {id: fl-%02d, profile: waterlogging-wl100, connect: "
                               "\"tcp://127.0.0.1:%d\", interval: 1s, timeout: 200ms, "
                               "offline_after: 1}\n",
                               i, port);
    write_config(e, NULL, devices, NULL);
    assert_int_equal(h_gateway_start(&e->gw, e->config), 0);
    long want = 30;
    assert_true(h_platform_wait(offline_events, &want, 20000));
    assert_true(h_log_wait(&e->gw, "10 more devices went offline and 0 came online", 15000));
    char *log = h_slurp(e->gw.log);
    assert_non_null(log);
    int lines = 0;
    for (const char *p = log; (p = strstr(p, "] offline: ")); p++)
        lines++;
    free(log);
    assert_int_equal(lines, 20);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reading_travels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broker_outage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill9, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_configs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_profile_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fleet_state_lines_bounded, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
