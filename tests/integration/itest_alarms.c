/* Alarms end to end: the priority lane overtakes a 100,000-row backlog, a full
 * outbox drops telemetry and keeps alarms, an alarm survives a SIGKILL without
 * being raised twice and is acknowledged from the platform, a forecast comes
 * before its alarm, survives a SIGKILL and hands over to it, and a siren coil
 * is switched on and off by a local action while the uplink is down. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/integration/harness.h"

#include <MQTTAsync.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct env {
    int port;
    h_proc broker, gw, sim;
    char config[512];
    char db[512];
};

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    assert_int_equal(h_peers_start(&e->broker, &e->port), 0);
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

static void write_config(struct env *e, const char *store, const char *devices, const char *rules)
{
    char text[8192];
    snprintf(text, sizeof(text),
             "gateway:\n  id: gw-test\n  data_dir: %s/data\n  shutdown_drain: 1s\n"
             "store:\n%s"
             "uplink:\n  uri: tcp://127.0.0.1:%d\n  topic_prefix: t\n  backoff_min: 100ms\n"
             "  backoff_max: 300ms\n"
             "devices:\n%s"
             "rules:\n%s",
             h_tmpdir(), store ? store : "  commit_window: 2ms\n", e->port, devices, rules);
    snprintf(e->config, sizeof(e->config), "%s", h_write_file("gateway.yaml", text));
}

/* One waterlogging sensor: build/sim plays wl-001, a WL100 on a free port
 * whose depth in cm follows curve (a sim curve, flow style) at 12 V and
 * 20 degC, plus the scenario devices in sim_more; with stats, the sim writes
 * its counters there on SIGUSR1 and exit. The gateway config polls wl-001
 * with `poll` (interval and timeout) beside the devices in gw_more. */
struct sensor {
    const char *curve, *poll, *sim_more, *gw_more, *stats;
};

static void sensor_config(struct env *e, const struct sensor *s, const char *rules)
{
    int port = h_free_port();
    char sc[4096], dev[1024];
    snprintf(sc, sizeof(sc),
             "name: sensor\ndevices:\n  - id: wl-{n:03}\n    count: 1\n"
             "    protocol: modbus-tcp\n    port: %d\n    unit: 1\n    registers:\n"
             "      - {kind: holding, addr: 0, type: uint16, scale: 10, curve: %s}\n"
             "      - {kind: holding, addr: 1, type: uint16, scale: 100, value: 12}\n"
             "      - {kind: holding, addr: 2, type: int16, scale: 10, value: 20}\n%s",
             port, s->curve, s->sim_more ? s->sim_more : "");
    const char *scen = h_write_file("scenario.yaml", sc);
    char *argv[] = {(char *)h_bin("sim"),        "modbus",         "--scenario", (char *)scen,
                    s->stats ? "--stats" : NULL, (char *)s->stats, NULL};
    assert_int_equal(h_spawn(&e->sim, "sim.log", argv), 0);
    assert_true(h_log_wait(&e->sim, "sim: ready", 15000));
    snprintf(dev, sizeof(dev),
             "  - {id: wl-001, profile: waterlogging-wl100, connect: 'tcp://127.0.0.1:%d', "
             "%s}\n%s",
             port, s->poll, s->gw_more ? s->gw_more : "");
    write_config(e, NULL, dev, rules);
}

/* Distinct alarm transitions (by item id: QoS 1 may deliver one twice) from
 * /alarms matching rule and state ("" = any). */
static int count_alarms(const char *rule, const char *state, char *id_out, size_t idlen)
{
    cJSON *items = h_platform_items("/alarms");
    int n = 0;
    char seen[64][64];
    int nseen = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        const char *r = cJSON_GetStringValue(cJSON_GetObjectItem(it, "rule"));
        const char *s = cJSON_GetStringValue(cJSON_GetObjectItem(it, "state"));
        const char *item = cJSON_GetStringValue(cJSON_GetObjectItem(it, "id"));
        int dup = 0;
        for (int i = 0; item && i < nseen; i++)
            dup |= !strcmp(seen[i], item);
        if (dup || !item)
            continue;
        if (nseen < 64)
            snprintf(seen[nseen++], sizeof(seen[0]), "%s", item);
        if (r && s && !strcmp(r, rule) && (!*state || !strcmp(s, state))) {
            n++;
            if (id_out)
                snprintf(id_out, idlen, "%s",
                         cJSON_GetStringValue(cJSON_GetObjectItem(it, "alarm")));
        }
    }
    cJSON_Delete(items);
    return n;
}

struct want_alarm {
    const char *rule, *state;
    int n;
};

static int have_alarms(void *ctx)
{
    struct want_alarm *w = ctx;
    return count_alarms(w->rule, w->state, NULL, 0) >= w->n;
}

/* ---- 4. an alarm raised behind 100,000 queued rows goes first ---- */

static void test_alarm_overtakes_backlog(void **state)
{
    struct env *e = *state;
    h_stop(&e->broker); /* the platform is unreachable while the backlog builds */
    write_config(e, NULL,
                 "  - {id: syn-1, protocol: synthetic, type: loadgen, rate: 50000, total: "
                 "100000}\n",
                 "  - id: late_value\n    kind: threshold\n    metric: synthetic\n"
                 "    levels: {red: {raise: 99990, clear: 0}}\n");
    assert_int_equal(h_gateway_start(&e->gw, e->config), 0);
    assert_true(h_outbox_wait(e->db, "outbox_tele", 100000, 60000));
    assert_true(h_outbox_wait(e->db, "outbox_prio", 1, 10000));
    assert_int_equal(h_broker_start(&e->broker, e->port), 0);

    struct want_alarm w = {"late_value", "raised", 1};
    assert_true(h_platform_wait(have_alarms, &w, 30000));
    /* Find the arrival index of the alarm and of the first reading. */
    size_t n = h_platform_count(), alarm_at = (size_t)-1, first_reading = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        h_msg m;
        if (h_platform_get(i, &m))
            break;
        if (strstr(m.topic, "/alarms") && alarm_at == (size_t)-1)
            alarm_at = i;
        if (strstr(m.topic, "/readings") && first_reading == (size_t)-1)
            first_reading = i;
        h_msg_free(&m);
    }
    assert_true(alarm_at != (size_t)-1);
    if (first_reading != (size_t)-1 && first_reading < alarm_at)
        fail_msg("a reading (message %zu) arrived before the alarm (message %zu)", first_reading,
                 alarm_at);
    print_message("alarm was message %zu; the backlog of 100,000 readings came after it\n",
                  alarm_at);
}

/* ---- 5. a full outbox drops the oldest telemetry and keeps every alarm ---- */

static int have_last_reading(void *ctx)
{
    long last = *(long *)ctx;
    cJSON *items = h_platform_items("/readings");
    int found = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        if ((long)cJSON_GetNumberValue(cJSON_GetObjectItem(it, "value")) == last)
            found = 1;
    }
    cJSON_Delete(items);
    return found;
}

static void test_full_outbox(void **state)
{
    struct env *e = *state;
    h_stop(&e->broker);
    write_config(e, "  commit_window: 2ms\n  max_bytes: 512KiB\n",
                 "  - {id: syn-1, protocol: synthetic, type: loadgen, rate: 20000, total: "
                 "20000}\n",
                 "  - id: levels\n    kind: threshold\n    metric: synthetic\n"
                 "    levels:\n      blue: {raise: 1000, clear: 0}\n"
                 "      yellow: {raise: 5000, clear: 0}\n"
                 "      orange: {raise: 10000, clear: 0}\n"
                 "      red: {raise: 15000, clear: 0}\n");
    assert_int_equal(h_gateway_start(&e->gw, e->config), 0);
    /* All 20,000 readings made: the outbox had to drop the oldest. */
    assert_true(h_log_wait(&e->gw, "dropped", 30000));
    assert_true(h_outbox_wait(e->db, "outbox_prio", 4, 10000));
    assert_int_equal(h_broker_start(&e->broker, e->port), 0);

    long last = 19999;
    assert_true(h_platform_wait(have_last_reading, &last, 30000));
    struct want_alarm w = {"levels", "", 4};
    assert_true(h_platform_wait(have_alarms, &w, 10000));
    assert_int_equal(count_alarms("levels", "raised", NULL, 0), 1);
    assert_int_equal(count_alarms("levels", "updated", NULL, 0), 3);

    /* What arrived of the telemetry is the newest, without holes. */
    cJSON *items = h_platform_items("/readings");
    long lo = -1, hi = -1, n = 0;
    static unsigned char seen[20000];
    memset(seen, 0, sizeof(seen));
    cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        long v = (long)cJSON_GetNumberValue(cJSON_GetObjectItem(it, "value"));
        if (v < 0 || v >= 20000 || seen[v])
            continue;
        seen[v] = 1;
        n++;
        if (lo < 0 || v < lo)
            lo = v;
        if (v > hi)
            hi = v;
    }
    cJSON_Delete(items);
    assert_int_equal(hi, 19999);
    assert_true(lo > 0);              /* the oldest were dropped */
    assert_int_equal(n, hi - lo + 1); /* and only the oldest */
    print_message("full outbox: kept readings %ld..%ld (%ld), dropped the %ld oldest, 4 of 4 "
                  "alarm transitions delivered\n",
                  lo, hi, n, lo);
}

/* ---- alarm lifecycle across SIGKILL, acknowledged from the platform ---- */

static void publish(int port, const char *topic, const char *payload)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "mosquitto_pub -h 127.0.0.1 -p %d -q 1 -t '%s' -m '%s'", port, topic,
             payload);
    assert_int_equal(system(cmd), 0);
}

static void test_alarm_lifecycle(void **state)
{
    struct env *e = *state;
    /* Depth 0, then 30 cm from 1 s to 14 s (scenario time), then 0 again. */
    struct sensor wl = {
        .curve = "{type: points, points: [[0, 0], [1, 0], [1.1, 30], [14, 30], [14.1, 0]]}",
        .poll = "interval: 200ms, timeout: 150ms"};
    sensor_config(e, &wl,
                  "  - id: depth\n    kind: threshold\n    types: [waterlogging]\n"
                  "    metric: water_depth\n    levels:\n      blue: {raise: 3, clear: 2}\n"
                  "      orange: {raise: 25, clear: 22}\n    clear_for: 1s\n");
    assert_int_equal(h_gateway_start(&e->gw, e->config), 0);
    struct want_alarm raised = {"depth", "raised", 1};
    assert_true(h_platform_wait(have_alarms, &raised, 15000));
    char id[128];
    count_alarms("depth", "raised", id, sizeof(id));

    /* SIGKILL during the alarm, restart: the alarm is neither forgotten nor raised again. */
    h_signal(&e->gw, SIGKILL);
    assert_int_equal(h_wait(&e->gw, 5000), 128 + SIGKILL);
    assert_int_equal(h_gateway_start(&e->gw, e->config), 0);
    assert_true(h_log_wait(&e->gw, "restored rule state: 1 active alarms", 5000));
    assert_true(h_log_wait(&e->gw, "listening for platform commands", 10000));

    /* Acknowledged by the duty officer through the platform's command topic. */
    char payload[256];
    snprintf(payload, sizeof(payload), "{\"alarm\":\"%s\",\"by\":\"duty-officer\"}", id);
    publish(e->port, "t/gw-test/cmd/ack", payload);
    struct want_alarm acked = {"depth", "acknowledged", 1};
    assert_true(h_platform_wait(have_alarms, &acked, 10000));

    /* The water falls: the same alarm clears. */
    struct want_alarm cleared = {"depth", "cleared", 1};
    assert_true(h_platform_wait(have_alarms, &cleared, 30000));
    char cid[128];
    count_alarms("depth", "cleared", cid, sizeof(cid));
    assert_string_equal(cid, id);
    assert_int_equal(count_alarms("depth", "raised", NULL, 0), 1);
    char aid[128];
    count_alarms("depth", "acknowledged", aid, sizeof(aid));
    assert_string_equal(aid, id);
}

/* ---- a forecast: before the alarm, through a SIGKILL, handed over ---- */

/* Distinct forecast items from /forecasts in `state` ("" = any); the last
 * one's forecast id and linked alarm id are copied out. */
static int count_forecasts(const char *state, char *id_out, char *alarm_out, size_t cap)
{
    cJSON *items = h_platform_items("/forecasts");
    int n = 0, nseen = 0;
    char seen[128][64];
    cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        const char *s = cJSON_GetStringValue(cJSON_GetObjectItem(it, "state"));
        const char *item = cJSON_GetStringValue(cJSON_GetObjectItem(it, "id"));
        int dup = 0;
        for (int i = 0; item && i < nseen; i++)
            dup |= !strcmp(seen[i], item);
        if (dup || !item || !s)
            continue;
        if (nseen < 128)
            snprintf(seen[nseen++], sizeof(seen[0]), "%s", item);
        if (*state && strcmp(s, state))
            continue;
        n++;
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(it, "forecast"));
        const char *al = cJSON_GetStringValue(cJSON_GetObjectItem(it, "alarm"));
        if (id_out)
            snprintf(id_out, cap, "%s", id ? id : "");
        if (alarm_out)
            snprintf(alarm_out, cap, "%s", al ? al : "");
    }
    cJSON_Delete(items);
    return n;
}

static int have_forecast(void *ctx)
{
    return count_forecasts(ctx, NULL, NULL, 0) >= 1;
}

static void test_forecast_lifecycle(void **state)
{
    struct env *e = *state;
    /* The water rises 0.75 cm/s from t=1 s: orange (25 cm) at about t=34 s. */
    struct sensor wl = {.curve = "{type: ramp, from: 0, to: 30, over: 40, start: 1}",
                        .poll = "interval: 200ms, timeout: 150ms"};
    sensor_config(e, &wl,
                  "  - id: depth\n    kind: threshold\n    types: [waterlogging]\n"
                  "    metric: water_depth\n    levels:\n      blue: {raise: 3, clear: 2}\n"
                  "      orange: {raise: 25, clear: 22}\n"
                  "  - id: depth_fc\n    kind: forecast\n    types: [waterlogging]\n"
                  "    metric: water_depth\n    alarm_rule: depth\n    window: 5s\n"
                  "    horizon: 2m\n    min_points: 5\n    move: 0s\n");
    assert_int_equal(h_gateway_start(&e->gw, e->config), 0);
    assert_true(h_platform_wait(have_forecast, "raised", 15000));
    char id[128], link[128];
    count_forecasts("raised", id, NULL, sizeof(id));
    assert_true(strncmp(id, "depth_fc:wl-001:", 16) == 0);
    /* It came before the orange alarm it forecasts (an update of blue). */
    assert_int_equal(count_alarms("depth", "updated", NULL, 0), 0);

    /* SIGKILL while it is out, restart: neither forgotten nor raised again. */
    h_signal(&e->gw, SIGKILL);
    assert_int_equal(h_wait(&e->gw, 5000), 128 + SIGKILL);
    assert_int_equal(h_gateway_start(&e->gw, e->config), 0);
    assert_true(h_log_wait(&e->gw, "restored rule state", 5000));

    /* Orange is raised: the forecast is withdrawn, handing over to it by id. */
    assert_true(h_platform_wait(have_forecast, "withdrawn", 60000));
    char wid[128];
    count_forecasts("withdrawn", wid, link, sizeof(wid));
    assert_string_equal(wid, id);
    assert_true(strncmp(link, "depth:wl-001:", 13) == 0);
    assert_int_equal(count_forecasts("raised", NULL, NULL, 0), 1);
    char aid[128];
    assert_true(count_alarms("depth", "", aid, sizeof(aid)) >= 1);
    assert_string_equal(aid, link);
}

/* ---- local action with the uplink down: the siren ---- */

static int stats_has_writes(const char *path, int *on, int *off)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *doc = cJSON_Parse(buf);
    *on = *off = 0;
    cJSON *devs = cJSON_GetObjectItem(doc, "devices"), *d;
    cJSON_ArrayForEach(d, devs)
    {
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(d, "id"));
        if (!id || strcmp(id, "siren-001"))
            continue;
        cJSON *w;
        int phase = 0;
        cJSON_ArrayForEach(w, cJSON_GetObjectItem(d, "coil_writes"))
        {
            int v = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(w, "value"));
            if (v == 1 && phase == 0) {
                (*on)++;
                phase = 1;
            } else if (v == 0 && phase == 1) {
                (*off)++;
            }
        }
    }
    cJSON_Delete(doc);
    return 1;
}

static void test_siren_with_uplink_down(void **state)
{
    struct env *e = *state;
    h_stop(&e->broker); /* no platform at all during this test */
    char stats[512], siren[512], siren_dev[256];
    snprintf(stats, sizeof(stats), "%s/sim-stats.json", h_tmpdir());
    int p2 = h_free_port();
    snprintf(siren, sizeof(siren),
             "  - id: siren-{n:03}\n    count: 1\n    protocol: modbus-tcp\n    port: %d\n"
             "    unit: 1\n    registers:\n"
             "      - {kind: coil, addr: 0, writable: true}\n"
             "      - {kind: coil, addr: 1, writable: true}\n"
             "      - {kind: holding, addr: 0, type: uint16, writable: true}\n",
             p2);
    snprintf(siren_dev, sizeof(siren_dev),
             "  - {id: siren-1, profile: alarm-output, connect: 'tcp://127.0.0.1:%d', "
             "interval: 5s, timeout: 500ms}\n",
             p2);
    struct sensor wl = {
        .curve = "{type: points, points: [[0, 0], [1, 0], [1.1, 30], [5, 30], [5.1, 0]]}",
        .poll = "interval: 200ms, timeout: 150ms",
        .sim_more = siren,
        .gw_more = siren_dev,
        .stats = stats};
    sensor_config(e, &wl,
                  "  - id: depth\n    kind: threshold\n    types: [waterlogging]\n"
                  "    metric: water_depth\n    levels: {orange: {raise: 25, clear: 22}}\n"
                  "    clear_for: 500ms\n    actions:\n"
                  "      - {kind: modbus_write, device: siren-1, point: siren, raise_value: 1, "
                  "clear_value: 0}\n");
    assert_int_equal(h_gateway_start(&e->gw, e->config), 0);
    assert_true(h_log_wait(&e->gw, "wrote siren-1.siren = 1", 15000));
    assert_true(h_log_wait(&e->gw, "wrote siren-1.siren = 0", 20000));
    /* The simulator saw both writes on its coil. */
    unlink(stats);
    h_signal(&e->sim, SIGUSR1);
    int on = 0, off = 0;
    int64_t end = h_now_ms() + 5000;
    struct stat st;
    while (stat(stats, &st) != 0 && h_now_ms() < end)
        poll(NULL, 0, 20);
    assert_true(stats_has_writes(stats, &on, &off));
    assert_int_equal(on, 1);
    assert_int_equal(off, 1);
    /* And none of it needed the uplink: it never connected. */
    assert_false(h_log_contains(&e->gw, "connected to"));
}

/* ---- local MQTT publish action with the platform unreachable ---- */

static int have_local(void *ctx)
{
    size_t n = h_platform_count();
    int found = 0;
    for (size_t i = 0; i < n && !found; i++) {
        h_msg m;
        if (h_platform_get(i, &m))
            break;
        found = !strcmp(m.topic, "city/flood/alarm") && strstr(m.payload, "\"state\":\"raised\"");
        h_msg_free(&m);
    }
    return found;
}

static void test_local_publish_uplink_down(void **state)
{
    struct env *e = *state;
    char text[2048];
    /* The platform is a closed port; the local broker is the test's mosquitto. */
    snprintf(text, sizeof(text),
             "gateway: {id: gw-test, data_dir: %s/data}\n"
             "uplink: {uri: 'tcp://127.0.0.1:1', backoff_min: 1s, backoff_max: 2s}\n"
             "local_mqtt: {uri: 'tcp://127.0.0.1:%d'}\n"
             "devices:\n  - {id: syn-1, protocol: synthetic, rate: 100, total: 30}\n"
             "rules:\n  - id: high\n    kind: threshold\n    metric: synthetic\n"
             "    levels: {red: {raise: 20, clear: 10}}\n"
             "    actions: [{kind: mqtt_publish, topic: city/flood/alarm}]\n",
             h_tmpdir(), e->port);
    assert_int_equal(h_gateway_start(&e->gw, h_write_file("gw.yaml", text)), 0);
    assert_true(h_platform_wait(have_local, NULL, 15000));
    assert_false(h_log_contains(&e->gw, "connected to tcp://127.0.0.1:1"));
}

/* ---- a storm: the exact sequence of transitions ---- */

static void test_storm_sequence(void **state)
{
    struct env *e = *state;
    /* Depth rises 0 -> 30 cm over 3 s, holds, falls back to 0 over 3 s. */
    struct sensor wl = {.curve =
                            "{type: points, points: [[0, 0], [1, 0], [4, 30], [6, 30], [9, 0]]}",
                        .poll = "interval: 100ms, timeout: 90ms"};
    sensor_config(e, &wl,
                  "  - id: depth\n    kind: threshold\n    types: [waterlogging]\n"
                  "    metric: water_depth\n    levels:\n      blue: {raise: 3, clear: 2}\n"
                  "      yellow: {raise: 10, clear: 8}\n      orange: {raise: 25, clear: 22}\n");
    assert_int_equal(h_gateway_start(&e->gw, e->config), 0);
    struct want_alarm cleared = {"depth", "cleared", 1};
    assert_true(h_platform_wait(have_alarms, &cleared, 30000));

    /* Distinct transitions in seq order: raised blue, updated yellow, updated
     * orange, updated yellow, updated blue, cleared; one alarm id throughout. */
    static const char *const want_state[] = {"raised",  "updated", "updated",
                                             "updated", "updated", "cleared"};
    static const int want_level[] = {1, 2, 3, 2, 1, 0};
    cJSON *items = h_platform_items("/alarms");
    long last_seq = 0;
    int k = 0;
    char id0[128] = "";
    cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        long seq = (long)cJSON_GetNumberValue(cJSON_GetObjectItem(it, "seq"));
        if (seq <= last_seq)
            continue; /* a redelivery */
        last_seq = seq;
        const char *st = cJSON_GetStringValue(cJSON_GetObjectItem(it, "state"));
        int lvl = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(it, "level"));
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(it, "alarm"));
        if (k >= 6)
            fail_msg("more than 6 transitions: extra %s level %d", st, lvl);
        if (strcmp(st, want_state[k]) || lvl != want_level[k])
            fail_msg("transition %d: got %s level %d, want %s level %d", k, st, lvl, want_state[k],
                     want_level[k]);
        if (!k)
            snprintf(id0, sizeof(id0), "%s", id);
        else
            assert_string_equal(id, id0);
        k++;
    }
    cJSON_Delete(items);
    assert_int_equal(k, 6);
}

/* ---- adaptive polling: an active alarm shortens the poll interval ---- */

static long sim_requests(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *doc = cJSON_Parse(buf);
    long r = (long)cJSON_GetNumberValue(cJSON_GetObjectItem(doc, "requests"));
    cJSON_Delete(doc);
    return r;
}

static void test_adaptive_polling(void **state)
{
    struct env *e = *state;
    char stats[512];
    snprintf(stats, sizeof(stats), "%s/sim-stats.json", h_tmpdir());
    /* Depth 30 cm from 2 s to 9 s of scenario time, 0 otherwise. */
    struct sensor wl = {
        .curve = "{type: points, points: [[0, 0], [2, 0], [2.1, 30], [9, 30], [9.1, 0]]}",
        .poll = "interval: 2s, timeout: 500ms",
        .stats = stats};
    sensor_config(e, &wl,
                  "  - id: depth\n    kind: threshold\n    types: [waterlogging]\n"
                  "    metric: water_depth\n    levels: {orange: {raise: 25, clear: 22}}\n"
                  "    clear_for: 500ms\n    fast_interval: 200ms\n");
    assert_int_equal(h_gateway_start(&e->gw, e->config), 0);
    assert_true(h_log_wait(&e->gw, "wl-001: poll interval 200 ms (alarm active)", 15000));
    assert_true(h_log_wait(&e->gw, "wl-001: poll interval 2000 ms (restored)", 20000));
    /* At 2 s the device would have been polled about 6 times in 12 s; while
     * the alarm was active (about 7 s) it was polled every 200 ms. */
    h_signal(&e->sim, SIGTERM);
    assert_int_equal(h_wait(&e->sim, 10000), 0);
    long req = sim_requests(stats);
    if (req < 20)
        fail_msg("the simulator saw %ld requests; fast polling would make at least 20", req);
}

/* ---- the local admin interface ---- */

static int run_admin(struct env *e, const char *args, char *out, size_t cap)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s admin --json --socket %s/data/admin.sock %s", h_bin("gateway"),
             h_tmpdir(), args);
    FILE *p = popen(cmd, "r");
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_admin_ack(void **state)
{
    struct env *e = *state;
    write_config(e, NULL, "  - {id: syn-1, protocol: synthetic, rate: 100, total: 50}\n",
                 "  - id: high\n    kind: threshold\n    metric: synthetic\n"
                 "    levels: {yellow: {raise: 10, clear: 5}}\n");
    assert_int_equal(h_gateway_start(&e->gw, e->config), 0);
    struct want_alarm raised = {"high", "raised", 1};
    assert_true(h_platform_wait(have_alarms, &raised, 15000));
    char id[128], out[2048];
    count_alarms("high", "raised", id, sizeof(id));

    /* The socket is the owner's only. */
    char path[600];
    struct stat st;
    snprintf(path, sizeof(path), "%s/data/admin.sock", h_tmpdir());
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    assert_int_equal(run_admin(e, "status", out, sizeof(out)), 0);
    assert_non_null(strstr(out, "\"active_alarms\":1"));
    assert_int_equal(run_admin(e, "ack no-such-alarm tester", out, sizeof(out)), 1);
    char args[256];
    snprintf(args, sizeof(args), "ack %s tester", id);
    assert_int_equal(run_admin(e, args, out, sizeof(out)), 0);
    assert_string_equal(out, "ok\n");
    struct want_alarm acked = {"high", "acknowledged", 1};
    assert_true(h_platform_wait(have_alarms, &acked, 10000));
    assert_int_equal(run_admin(e, "bogus", out, sizeof(out)), 1);

    /* Another user who can reach the socket is refused by the peer check and
     * is told so (it used to die of SIGPIPE without a word). Needs root to
     * play the other user. */
    if (geteuid() != 0)
        return;
    char ddir[600], cmd[2048];
    snprintf(ddir, sizeof(ddir), "%s/data", h_tmpdir());
    assert_int_equal(chmod(h_tmpdir(), 0711) | chmod(ddir, 0751) | chmod(path, 0666), 0);
    snprintf(cmd, sizeof(cmd),
             "setpriv --reuid=65534 --regid=65534 --clear-groups %s admin --socket %s status 2>&1",
             h_bin("gateway"), path);
    for (int i = 0; i < 5; i++) {
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        size_t n = fread(out, 1, sizeof(out) - 1, p);
        out[n] = '\0';
        int ws = pclose(p);
        print_message("as nobody: %s", out);
        assert_true(WIFEXITED(ws));
        assert_int_equal(WEXITSTATUS(ws), 1);
        assert_non_null(strstr(out, "not allowed"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_alarm_overtakes_backlog, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_outbox, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alarm_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forecast_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_siren_with_uplink_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admin_ack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_storm_sequence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_local_publish_uplink_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_adaptive_polling, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
