/* The vendor's profile kit, end to end with the real binaries: gateway
 * check-profile (a good and a bad profile, and the worked example of
 * docs/adapters.md run from an empty folder against build/sim, its output
 * compared with the page), gateway read --raw against the sim answering with
 * exceptions, --watch bounded by --count and by Ctrl-C, unknown profiles
 * listed, and a profile given as a file path in a device config whose status
 * bits become events at the platform, edge-triggered across a restart. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/integration/harness.h"

#include <errno.h>
#include <modbus.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define OUT_MAX (64 * 1024)

/* build/NAME as an absolute path: the commands run in other folders. */
static const char *abs_bin(const char *name)
{
    static char path[2][4096];
    static int slot;
    char *p = path[slot++ % 2];
    if (!realpath(h_bin(name), p))
        fail_msg("no %s: %s", h_bin(name), strerror(errno));
    return p;
}

/* Runs a command (bounded by coreutils timeout) in dir; stdout+stderr in out. */
static int run_in(const char *dir, const char *cmd, char *out)
{
    char full[4096];
    snprintf(full, sizeof(full), "cd '%s' && timeout 60 %s 2>&1", dir, cmd);
    return h_run(full, out, OUT_MAX);
}

static void must_contain(const char *out, const char *want)
{
    if (!strstr(out, want))
        fail_msg("output lacks '%s':\n%s", want, out);
}

/* ---- check-profile alone ---- */

static const char *gap_profile = "name: gappy\ndevice_type: level\n"
                                 "points:\n"
                                 "  - {name: level, kind: holding, address: 0, type: uint16, "
                                 "scale: 0.01, unit: m}\n"
                                 "  - {name: temp, kind: holding, address: 4, type: int16, "
                                 "scale: 0.1, unit: C}\n"
                                 "  - {name: door, kind: discrete, address: 0, type: bool, "
                                 "events: [{event: door_open, active: low}]}\n";

static void test_check_profile_good_and_bad(void **state)
{
    (void)state;
    static char out[OUT_MAX];
    char cmd[1024];
    h_write_file("gappy.yaml", gap_profile);
    snprintf(cmd, sizeof(cmd), "%s check-profile gappy.yaml", abs_bin("gateway"));
    assert_int_equal(run_in(h_tmpdir(), cmd, out), 0);
    must_contain(out, "profile gappy (device type level)");
    must_contain(out, "read plan: 2 requests per poll");
    must_contain(out, "FC 02 discrete 0x0000..0x0000     1 bit: door");
    must_contain(out, "FC 03 holding  0x0000..0x0004     5 registers: level temp");
    must_contain(out, "gap bridged: 0x0001..0x0003 (3 registers read and ignored)");
    must_contain(out, "  level                  m        holding 0x0000  uint16 x0.01");
    must_contain(out, "  temp                   C        holding 0x0004  int16 x0.1");
    must_contain(out, "door                   discrete 0x0000 bool events: door_open (active low)");
    must_contain(out, "gappy.yaml: OK");

    /* A typo names file, line and key; exit 1. */
    h_write_file("bad.yaml", "name: bad\ndevice_type: level\npoints:\n"
                             "  - name: level\n    kind: holding\n    adress: 0\n");
    snprintf(cmd, sizeof(cmd), "%s check-profile bad.yaml", abs_bin("gateway"));
    assert_int_equal(run_in(h_tmpdir(), cmd, out), 1);
    must_contain(out, "bad.yaml:6: unknown key 'points[0].adress'");
    /* A Modicon address is refused with the PDU address spelled out. */
    h_write_file("modicon.yaml", "name: m\ndevice_type: level\npoints:\n"
                                 "  - {name: a, kind: holding, address: 40001, type: uint16}\n");
    snprintf(cmd, sizeof(cmd), "%s check-profile modicon.yaml", abs_bin("gateway"));
    assert_int_equal(run_in(h_tmpdir(), cmd, out), 1);
    must_contain(out, "40001 is Modicon notation (holding registers counted from 40001): write "
                      "address: 0 (40001 - 40001)");
    /* --check-config on a profile says what to use instead. */
    snprintf(cmd, sizeof(cmd), "%s --check-config gappy.yaml", abs_bin("gateway"));
    assert_int_equal(run_in(h_tmpdir(), cmd, out), 1);
    must_contain(out, "gateway check-profile gappy.yaml");
    /* A built-in profile by name. */
    snprintf(cmd, sizeof(cmd), "%s check-profile radar-level", abs_bin("gateway"));
    assert_int_equal(run_in(h_tmpdir(), cmd, out), 0);
    must_contain(out,
                 "state                  holding 0x0004  uint16 codes: 1=uncertain calibrating");
}

/* ---- read --raw, --watch, unknown profiles ---- */

static const char *bench_profile =
    "name: bench\ndevice_type: level\n"
    "points:\n"
    "  - {name: level, kind: input, address: 0, type: float32, unit: m, decimals: 2}\n"
    "  - name: status\n    kind: input\n    address: 2\n    type: uint16\n"
    "    events: [{bit: 1, event: tamper}]\n"
    "  - {name: serial_no, kind: holding, address: 0x10, type: uint16}\n"
    "  - {name: firmware, kind: holding, address: 0x20, type: uint16}\n";

/* The sim serves input 0..2 and holding 0x10, which answers exception 04 (a
 * configured fault); holding 0x20 is not in the map: exception 02. */
static const char *bench_scenario(int port)
{
    static char text[1024];
    snprintf(text, sizeof(text),
             "name: bench\ndevices:\n  - id: b1\n    port: %d\n    registers:\n"
             "      - {kind: input, addr: 0, type: float32, value: 1.25}\n"
             "      - {kind: input, addr: 2, value: 2}\n"
             "      - {kind: holding, addr: 0x10, value: 7}\n"
             "    faults:\n      - {type: exception, code: 4, addr: 0x10, fc: 3}\n",
             port);
    return h_write_file("bench-scenario.yaml", text);
}

static void test_read_raw_exceptions_and_watch(void **state)
{
    (void)state;
    static char out[OUT_MAX];
    char cmd[1024];
    int port = h_free_port_range(1);
    assert_true(port > 0);
    h_proc sim;
    char *argv[] = {(char *)h_bin("sim"),         "modbus",  "--scenario",
                    (char *)bench_scenario(port), "--quiet", NULL};
    assert_int_equal(h_spawn(&sim, "bench-sim.log", argv), 0);
    assert_true(h_log_wait(&sim, "sim: ready", 15000));
    h_write_file("bench.yaml", bench_profile);

    snprintf(cmd, sizeof(cmd), "%s read --profile bench.yaml --connect tcp://127.0.0.1:%d --raw",
             abs_bin("gateway"), port);
    assert_int_equal(run_in(h_tmpdir(), cmd, out), 1); /* two reads failed */
    must_contain(out, "request 1/3: FC 03 holding registers 0x0010..0x0010 (1): serial_no\n"
                      "  <- exception 04 SERVER DEVICE FAILURE\n");
    must_contain(out, "request 2/3: FC 03 holding registers 0x0020..0x0020 (1): firmware\n"
                      "  <- exception 02 ILLEGAL DATA ADDRESS\n");
    must_contain(out, "request 3/3: FC 04 input registers 0x0000..0x0002 (3): level, status\n"
                      "  <- 3FA0 0000 0002\n");
    /* Decoded values beside their own words; the failed reads' points are bad. */
    must_contain(out, "level                              1.25 m          good                   "
                      "3FA0 0000");
    must_contain(out, "tamper                           ACTIVE (event)");
    must_contain(out, "serial_no                             0            bad       comm_fail");

    /* --watch: bounded by --count, then by Ctrl-C, both clean. */
    snprintf(cmd, sizeof(cmd),
             "%s read --profile bench.yaml --connect tcp://127.0.0.1:%d --watch 200ms --count 3",
             abs_bin("gateway"), port);
    assert_int_equal(run_in(h_tmpdir(), cmd, out), 1); /* the exceptions still fail it */
    must_contain(out, "--- read 3 at ");
    assert_null(strstr(out, "--- read 4"));
    must_contain(out, "--- 3 reads\n");

    char portarg[64];
    snprintf(portarg, sizeof(portarg), "tcp://127.0.0.1:%d", port);
    h_proc rd;
    char *rargv[] = {(char *)h_bin("gateway"),
                     "read",
                     "--profile",
                     (char *)h_write_file("bench2.yaml", bench_profile),
                     "--connect",
                     portarg,
                     "--watch",
                     "100ms",
                     NULL};
    assert_int_equal(h_spawn(&rd, "watch.log", rargv), 0);
    assert_true(h_log_wait(&rd, "--- read 2 at", 10000));
    assert_int_equal(h_signal(&rd, SIGINT), 0);
    assert_int_equal(h_wait(&rd, 10000), 1); /* exit status reflects the exceptions, no crash */
    assert_true(h_log_contains(&rd, "reads, stopped by signal"));

    /* An unknown profile lists the built-in ones and those of --profile-dir. */
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/vendor-profiles", h_tmpdir());
    mkdir(dir, 0755);
    h_write_file("vendor-profiles/rwl-9.yaml", bench_profile);
    snprintf(cmd, sizeof(cmd),
             "%s read --profile nope --profile-dir vendor-profiles --connect tcp://127.0.0.1:%d",
             abs_bin("gateway"), port);
    assert_int_equal(run_in(h_tmpdir(), cmd, out), 1);
    must_contain(out, "no profile 'nope'");
    must_contain(out, "built-in profiles: alarm-output");
    must_contain(out, " radar-level ");
    must_contain(out, "profiles in vendor-profiles: rwl-9");
    /* ...and a name found there is used. */
    snprintf(cmd, sizeof(cmd),
             "%s read --profile rwl-9 --profile-dir vendor-profiles --connect tcp://127.0.0.1:%d",
             abs_bin("gateway"), port);
    assert_int_equal(run_in(h_tmpdir(), cmd, out), 1);
    must_contain(out, "\nlevel                              1.25 m");
    assert_int_equal(h_stop(&sim), 0);
}

/* ---- the worked example of docs/adapters.md ---- */

/* The body of the fenced block after the next "<!-- kit: ... -->" marker from *at. */
static char *next_block(const char **at, char *what, size_t whatcap)
{
    const char *m = strstr(*at, "<!-- kit: ");
    if (!m)
        return NULL;
    const char *me = strstr(m, " -->");
    const char *fence = strstr(m, "```");
    const char *body = fence ? strchr(fence, '\n') : NULL;
    const char *end = body ? strstr(body + 1, "\n```") : NULL;
    assert_non_null(me);
    assert_non_null(end);
    snprintf(what, whatcap, "%.*s", (int)(me - m - 10), m + 10);
    *at = end + 4;
    size_t n = (size_t)(end - body);
    char *out = malloc(n + 1);
    memcpy(out, body + 1, n - 1);
    out[n - 1] = '\n';
    out[n] = '\0';
    return out;
}

/* Replaces every "15502" (the documented port) with port, in place (same width). */
static void move_port(char *text, int port)
{
    char p[8];
    snprintf(p, sizeof(p), "%05d", port);
    for (char *s = strstr(text, "15502"); s; s = strstr(s + 5, "15502"))
        memcpy(s, p, 5);
}

static void rstrip_lines(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (*r == '\n')
            while (w > s && w[-1] == ' ')
                w--;
        *w++ = *r;
    }
    *w = '\0';
}

static void test_docs_worked_example(void **state)
{
    (void)state;
    static char out[OUT_MAX];
    char *doc = h_slurp("docs/adapters.md");
    assert_non_null(doc);
    char dir[512], what[128];
    snprintf(dir, sizeof(dir), "%s/empty-folder", h_tmpdir());
    assert_int_equal(mkdir(dir, 0755), 0);
    int port = h_free_port_range(1);
    assert_true(port >= 10000 && port < 100000); /* same width as 15502 */

    const char *at = doc;
    char *block, *last_out = NULL;
    int files = 0, commands = 0, outputs = 0;
    while ((block = next_block(&at, what, sizeof(what)))) {
        move_port(block, port);
        if (!strncmp(what, "file ", 5)) {
            char path[700];
            snprintf(path, sizeof(path), "%s/%s", dir, what + 5);
            FILE *f = fopen(path, "w");
            assert_non_null(f);
            fputs(block, f);
            fclose(f);
            files++;
        } else if (!strcmp(what, "run")) {
            for (char *line = strtok(block, "\n"); line; line = strtok(NULL, "\n")) {
                char cmd[1024];
                assert_int_equal(strncmp(line, "gateway ", 8), 0);
                snprintf(cmd, sizeof(cmd), "%s %s", abs_bin("gateway"), line + 8);
                /* stdout only: the page shows what the commands print there. */
                char full[2048];
                snprintf(full, sizeof(full), "cd '%s' && timeout 60 %s 2>/dev/null", dir, cmd);
                int rc = h_run(full, out, OUT_MAX);
                if (rc != 0)
                    fail_msg("'%s' exited %d:\n%s", line, rc, out);
                commands++;
            }
            free(last_out);
            last_out = strdup(out);
        } else if (!strcmp(what, "output")) {
            assert_non_null(last_out);
            rstrip_lines(block);
            rstrip_lines(last_out);
            if (strcmp(block, last_out))
                fail_msg("docs/adapters.md shows:\n%s\nthe commands print:\n%s", block, last_out);
            outputs++;
        }
        free(block);
    }
    assert_int_equal(files, 2);
    assert_int_equal(commands, 2);
    assert_int_equal(outputs, 1);
    free(last_out);
    free(doc);
}

/* ---- a profile file in a device config: events at the platform, across a restart ---- */

static int count_events(const char *device, const char *kind, int active)
{
    cJSON *items = h_platform_items("/events"), *it;
    int n = 0;
    cJSON_ArrayForEach(it, items)
    {
        const char *d = cJSON_GetStringValue(cJSON_GetObjectItem(it, "device"));
        const char *k = cJSON_GetStringValue(cJSON_GetObjectItem(it, "event"));
        if (d && k && !strcmp(d, device) && !strcmp(k, kind) &&
            cJSON_IsTrue(cJSON_GetObjectItem(it, "active")) == active)
            n++;
    }
    cJSON_Delete(items);
    return n;
}

static int count_readings(const char *device, const char *metric, double *last)
{
    cJSON *items = h_platform_items("/readings"), *it;
    int n = 0;
    cJSON_ArrayForEach(it, items)
    {
        const char *d = cJSON_GetStringValue(cJSON_GetObjectItem(it, "device"));
        const char *m = cJSON_GetStringValue(cJSON_GetObjectItem(it, "metric"));
        if (d && m && !strcmp(d, device) && !strcmp(m, metric)) {
            n++;
            *last = cJSON_GetNumberValue(cJSON_GetObjectItem(it, "value"));
        }
    }
    cJSON_Delete(items);
    return n;
}

struct want_readings {
    int n;
};

static int enough_readings(void *ctx)
{
    double v;
    return count_readings("rwl-001", "water_level", &v) >= ((struct want_readings *)ctx)->n;
}

struct want_event {
    const char *kind;
    int active, n;
};

static int event_seen(void *ctx)
{
    struct want_event *w = ctx;
    return count_events("rwl-001", w->kind, w->active) >= w->n;
}

/* Writes the status word the way a technician's tool would: FC 06 to the sim. */
static void write_status(int port, uint16_t v)
{
    modbus_t *mb = modbus_new_tcp("127.0.0.1", port);
    assert_non_null(mb);
    assert_int_equal(modbus_connect(mb), 0);
    modbus_set_slave(mb, 1);
    assert_int_equal(modbus_write_register(mb, 0x10, v), 1);
    modbus_close(mb);
    modbus_free(mb);
}

static void test_file_profile_events_across_restart(void **state)
{
    (void)state;
    h_proc broker, sim, gw;
    int bport;
    assert_int_equal(h_peers_start(&broker, &bport), 0);
    int port = h_free_port_range(1);
    assert_true(port > 0);
    char text[4096], dir[512];
    snprintf(dir, sizeof(dir), "%s/site", h_tmpdir());
    mkdir(dir, 0755);
    snprintf(dir, sizeof(dir), "%s/site/profiles", h_tmpdir());
    mkdir(dir, 0755);
    /* The status word sits in a writable holding register of the sim, so the test can change it. */
    h_write_file("site/profiles/rwl-1.yaml",
                 "name: rwl-1\ndevice_type: water_level\npoints:\n"
                 "  - {name: level, metric: water_level, kind: input, address: 0, type: float32, "
                 "unit: m, decimals: 2}\n"
                 "  - name: status\n    kind: holding\n    address: 0x10\n    type: uint16\n"
                 "    events:\n      - {bit: 0, event: echo_lost}\n"
                 "      - {bit: 1, event: tamper}\n");
    snprintf(text, sizeof(text),
             "name: rwl\ndevices:\n  - id: rwl-001\n    port: %d\n    registers:\n"
             "      - {kind: input, addr: 0, type: float32, value: 1.41423344612122}\n"
             "      - {kind: holding, addr: 0x10, value: 2, writable: true}\n",
             port);
    char *sargv[] = {(char *)h_bin("sim"),
                     "modbus",
                     "--scenario",
                     (char *)h_write_file("rwl-scenario.yaml", text),
                     "--quiet",
                     NULL};
    assert_int_equal(h_spawn(&sim, "rwl-sim.log", sargv), 0);
    assert_true(h_log_wait(&sim, "sim: ready", 15000));
    snprintf(text, sizeof(text),
             "gateway:\n  id: gw-kit\n  data_dir: %s/site-data\n  shutdown_drain: 1s\n"
             "store:\n  commit_window: 2ms\n"
             "uplink:\n  uri: tcp://127.0.0.1:%d\n  topic_prefix: t\n  backoff_min: 100ms\n"
             "  backoff_max: 500ms\n"
             "devices:\n"
             "  - {id: rwl-001, protocol: modbus-tcp, profile: profiles/rwl-1.yaml, "
             "connect: \"tcp://127.0.0.1:%d\", interval: 200ms, timeout: 150ms}\n",
             h_tmpdir(), bport, port);
    const char *config = h_write_file("site/gateway.yaml", text);
    if (h_gateway_start(&gw, config)) {
        h_dump_log(&gw);
        fail_msg("the gateway did not start");
    }

    /* The standing tamper bit is raised once, however many polls see it. */
    struct want_event tamper_on = {"tamper", 1, 1};
    if (!h_platform_wait(event_seen, &tamper_on, 15000)) {
        h_dump_log(&gw);
        fail_msg("no tamper event");
    }
    struct want_readings more = {8};
    double v = 0;
    assert_true(h_platform_wait(enough_readings, &more, 15000));
    assert_int_equal(count_events("rwl-001", "tamper", 1), 1);
    assert_int_equal(count_events("rwl-001", "echo_lost", 1), 0);
    assert_int_equal(count_events("rwl-001", "echo_lost", 0), 0); /* never active: nothing */
    /* Published with the profile's decimals. */
    count_readings("rwl-001", "water_level", &v);
    assert_true(v == 1.41);

    /* A restart: the condition still stands, and is not raised again. */
    assert_int_equal(h_stop(&gw), 0);
    more.n = count_readings("rwl-001", "water_level", &v) + 8;
    assert_int_equal(h_gateway_start(&gw, config), 0);
    assert_true(h_platform_wait(enough_readings, &more, 15000));
    assert_int_equal(count_events("rwl-001", "tamper", 1), 1);

    /* The lid closes and the echo is lost: two edges, each once. */
    write_status(port, 0x0001);
    struct want_event tamper_off = {"tamper", 0, 1}, echo_on = {"echo_lost", 1, 1};
    assert_true(h_platform_wait(event_seen, &tamper_off, 15000));
    assert_true(h_platform_wait(event_seen, &echo_on, 15000));
    more.n = count_readings("rwl-001", "water_level", &v) + 5;
    assert_true(h_platform_wait(enough_readings, &more, 15000));
    assert_int_equal(count_events("rwl-001", "tamper", 0), 1);
    assert_int_equal(count_events("rwl-001", "echo_lost", 1), 1);
    assert_int_equal(count_events("rwl-001", "tamper", 1), 1);
    assert_int_equal(h_peers_stop(&gw, &sim, &broker), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_profile_good_and_bad),
        cmocka_unit_test(test_read_raw_exceptions_and_watch),
        cmocka_unit_test(test_docs_worked_example),
        cmocka_unit_test(test_file_profile_events_across_restart),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    h_cleanup();
    return rc;
}
