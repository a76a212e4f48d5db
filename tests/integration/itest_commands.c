/* Platform commands end to end, with a real mosquitto, the simulator and the
 * gateway: a threshold changed from the platform takes effect (an alarm is
 * raised at the new threshold), is replied to (accepted, then done), survives
 * a SIGKILL, and gives way to the configuration when the rule itself changes
 * at a SIGHUP; refused commands (not authorized, malformed, unknown device,
 * unknown command) get a reply naming the reason; the device command's reply
 * carries the protocol's outcome; state-changing commands leave audit events. */
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

struct env {
    int port, sim_port;
    h_proc broker, gw, sim;
    char config[512];
    const char *profile; /* NULL: waterlogging-wl100 */
    const char *extra;   /* more scenario text for the device (registers, faults) */
};

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    assert_int_equal(h_peers_start(&e->broker, &e->port), 0);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    int gw_status = h_peers_stop(&e->gw, &e->sim, &e->broker);
    free(e);
    assert_int_equal(gw_status, 0);
    return 0;
}

/* A water-logging sensor reading 5 and 6 cm by turns, twice a second (the
 * simulator, Modbus TCP): below the rule's blue level, and a reading per change. */
static void start_sim(struct env *e)
{
    e->sim_port = h_free_port();
    char sc[2048];
    snprintf(sc, sizeof(sc),
             "name: steady\ndevices:\n  - id: wl-{n:03}\n    count: 1\n"
             "    protocol: modbus-tcp\n    port: %d\n    unit: 1\n    registers:\n"
             "      - {kind: holding, addr: 0, type: uint16, scale: 10, curve: {type: points, "
             "points: [[0, 5], [0.4, 5], [0.5, 6], [0.9, 6], [1, 5]], repeat: 1}}\n"
             "      - {kind: holding, addr: 1, type: uint16, scale: 100, value: 12}\n"
             "      - {kind: holding, addr: 2, type: int16, scale: 10, value: 20}\n%s",
             e->sim_port, e->extra ? e->extra : "");
    assert_int_equal(h_sim_start(&e->sim, h_write_file("scenario.yaml", sc), NULL), 0);
}

static void write_config(struct env *e, const char *commands, int blue_raise)
{
    char text[4096];
    int n = h_config_head(text, sizeof(text), "gw-test", e->port);
    snprintf(text + n, sizeof(text) - (size_t)n,
             "  topic_prefix: t\n%s"
             "devices:\n"
             "  - {id: wl-001, profile: %s, connect: 'tcp://127.0.0.1:%d', "
             "interval: 200ms, timeout: 150ms, groups: [east]}\n"
             "rules:\n"
             "  - id: depth\n    kind: threshold\n    types: [waterlogging]\n"
             "    metric: water_depth\n    levels:\n      blue: {raise: %d, clear: 8}\n"
             "      orange: {raise: 25, clear: 22}\n",
             commands ? commands : "", e->profile ? e->profile : "waterlogging-wl100", e->sim_port,
             blue_raise);
    snprintf(e->config, sizeof(e->config), "%s", h_write_file("gateway.yaml", text));
}

static void publish(int port, const char *topic, const char *payload)
{
    assert_int_equal(h_publish(port, topic, payload, strlen(payload), NULL), 0);
}

/* The replies with correlation id `id` so far, as "status[:reason]" joined
 * by '|', in arrival order (QoS 1 may repeat one: kept, the test reads
 * the sequence with strstr). The last reply's object is copied to *last. */
static void replies(const char *id, char *out, size_t cap, cJSON **last)
{
    out[0] = '\0';
    if (last)
        *last = NULL;
    size_t n = h_platform_count();
    for (size_t i = 0; i < n; i++) {
        h_msg m;
        if (h_platform_get(i, &m))
            break;
        size_t tl = strlen(m.topic);
        if (tl >= 6 && !strcmp(m.topic + tl - 6, "/reply")) {
            cJSON *doc = cJSON_Parse(m.payload);
            const char *rid = cJSON_GetStringValue(cJSON_GetObjectItem(doc, "id"));
            if (rid ? !strcmp(rid, id) : !*id) { /* "": the replies without an id */
                const char *st = cJSON_GetStringValue(cJSON_GetObjectItem(doc, "status"));
                const char *why = cJSON_GetStringValue(cJSON_GetObjectItem(doc, "reason"));
                size_t l = strlen(out);
                snprintf(out + l, cap - l, "%s%s%s%s", l ? "|" : "", st ? st : "?", why ? ":" : "",
                         why ? why : "");
                if (last) {
                    cJSON_Delete(*last);
                    *last = cJSON_Duplicate(doc, 1);
                }
            }
            cJSON_Delete(doc);
        }
        h_msg_free(&m);
    }
}

struct want_reply {
    const char *id, *status;
};

static int have_reply(void *ctx)
{
    struct want_reply *w = ctx;
    char got[1024];
    replies(w->id, got, sizeof(got), NULL);
    return strstr(got, w->status) != NULL;
}

/* A message on this topic arrived after message number `from`. */
struct want_topic {
    size_t from;
    const char *topic;
};

static int have_topic(void *ctx)
{
    struct want_topic *w = ctx;
    for (size_t i = w->from, n = h_platform_count(); i < n; i++) {
        h_msg m;
        if (h_platform_get(i, &m))
            continue;
        int hit = !strcmp(m.topic, w->topic);
        h_msg_free(&m);
        if (hit)
            return 1;
    }
    return 0;
}

static void expect_reply(const char *id, const char *status)
{
    struct want_reply w = {id, status};
    if (!h_platform_wait(have_reply, &w, 10000)) {
        char got[1024];
        replies(id, got, sizeof(got), NULL);
        fail_msg("command %s: wanted reply '%s', got '%s'", id, status, got);
    }
}

/* Distinct alarm transitions in state; the last one's threshold. */
static int count_alarms(const char *state, double *threshold)
{
    cJSON *items = h_platform_items_once("/alarms");
    int n = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        const char *s = cJSON_GetStringValue(cJSON_GetObjectItem(it, "state"));
        if (s && !strcmp(s, state)) {
            n++;
            if (threshold)
                *threshold = cJSON_GetNumberValue(cJSON_GetObjectItem(it, "threshold"));
        }
    }
    cJSON_Delete(items);
    return n;
}

struct want_alarm {
    const char *state;
    int n;
};

static int have_alarms(void *ctx)
{
    struct want_alarm *w = ctx;
    return count_alarms(w->state, NULL) >= w->n;
}

/* Audit events with result `result` of command cmd. */
static int count_audits(const char *cmd, const char *result)
{
    cJSON *items = h_platform_items("/events");
    int n = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        const cJSON *a = cJSON_GetObjectItem(it, "audit");
        const char *ev = cJSON_GetStringValue(cJSON_GetObjectItem(it, "event"));
        if (!a || !ev || strcmp(ev, "audit"))
            continue;
        const char *c = cJSON_GetStringValue(cJSON_GetObjectItem(a, "cmd"));
        const char *r = cJSON_GetStringValue(cJSON_GetObjectItem(a, "result"));
        n += c && r && !strcmp(c, cmd) && !strcmp(r, result);
    }
    cJSON_Delete(items);
    return n;
}

struct want_audit {
    const char *cmd, *result;
};

static int have_audit(void *ctx)
{
    struct want_audit *w = ctx;
    return count_audits(w->cmd, w->result) > 0;
}

/* Readings of wl-001 so far (to wait for a few polls). */
static int count_readings(void)
{
    cJSON *items = h_platform_items("/readings");
    int n = cJSON_GetArraySize(items);
    cJSON_Delete(items);
    return n;
}

struct want_n {
    int n;
};

static int have_readings(void *ctx)
{
    return count_readings() >= ((struct want_n *)ctx)->n;
}

static void test_threshold_from_platform(void **state)
{
    struct env *e = *state;
    start_sim(e);
    write_config(e, "  commands: [ack, rule.set, rule.enable]\n", 10);
    assert_int_equal(h_gateway_start(&e->gw, e->config), 0);
    assert_true(h_log_wait(&e->gw, "listening for platform commands", 10000));
    struct want_n some = {count_readings() + 5};
    assert_true(h_platform_wait(have_readings, &some, 10000));
    assert_int_equal(count_alarms("raised", NULL), 0); /* 5-6 cm is below blue (10) */

    /* The platform lowers blue to 4 cm for this device: the next reading raises it. */
    publish(e->port, "t/gw-test/cmd/rule.set",
            "{\"id\":\"set-1\",\"by\":\"duty-officer\",\"rule\":\"depth\",\"device\":\"wl-001\","
            "\"levels\":{\"blue\":{\"raise\":4,\"clear\":3}}}");
    expect_reply("set-1", "accepted|done");
    struct want_alarm raised = {"raised", 1};
    assert_true(h_platform_wait(have_alarms, &raised, 10000));
    double thr = 0;
    count_alarms("raised", &thr);
    assert_true(thr == 4);
    struct want_audit au = {"rule.set", "done"};
    assert_true(h_platform_wait(have_audit, &au, 10000));

    /* SIGKILL: the change was committed before "done"; after the restart the
     * alarm stays (with the rule's own clear of 8 cm, 5 cm would clear it). */
    h_signal(&e->gw, SIGKILL);
    assert_int_equal(h_wait(&e->gw, 5000), 128 + SIGKILL);
    assert_int_equal(h_gateway_start(&e->gw, e->config), 0);
    assert_true(h_log_wait(&e->gw, "restored 1 rule changes from the platform", 5000));
    assert_true(h_log_wait(&e->gw, "listening for platform commands", 10000));
    struct want_n more = {count_readings() + 10};
    assert_true(h_platform_wait(have_readings, &more, 10000));
    assert_int_equal(count_alarms("cleared", NULL), 0);

    /* Disabled for its group: the active alarm clears at the next reading. */
    publish(e->port, "t/gw-test/cmd/rule.enable",
            "{\"id\":\"off-1\",\"rule\":\"depth\",\"group\":\"east\",\"enabled\":false}");
    expect_reply("off-1", "accepted|done");
    struct want_alarm cleared = {"cleared", 1};
    assert_true(h_platform_wait(have_alarms, &cleared, 10000));
    publish(e->port, "t/gw-test/cmd/rule.enable",
            "{\"id\":\"on-1\",\"rule\":\"depth\",\"group\":\"east\",\"enabled\":true}");
    expect_reply("on-1", "accepted|done");
    struct want_alarm raised2 = {"raised", 2};
    assert_true(h_platform_wait(have_alarms, &raised2, 10000)); /* the device change holds */

    /* The rule itself changes in the file: at SIGHUP the configuration wins,
     * the platform's change is dropped and 5 cm no longer holds blue (12). */
    write_config(e, "  commands: [ack, rule.set, rule.enable]\n", 12);
    h_signal(&e->gw, SIGHUP);
    assert_true(h_log_wait(&e->gw, "its change for device wl-001 is dropped", 5000));
    struct want_alarm cleared2 = {"cleared", 2};
    assert_true(h_platform_wait(have_alarms, &cleared2, 10000));
}

static void test_refusals(void **state)
{
    struct env *e = *state;
    start_sim(e);
    write_config(e, "  commands: [ack, device, rule.set, meta, inventory]\n", 10);
    assert_int_equal(h_gateway_start(&e->gw, e->config), 0);
    assert_true(h_log_wait(&e->gw, "listening for platform commands", 10000));

    publish(e->port, "t/gw-test/cmd/rule.enable",
            "{\"id\":\"r1\",\"rule\":\"depth\",\"device\":\"wl-001\",\"enabled\":false}");
    expect_reply("r1", "refused:not authorized");
    publish(e->port, "t/gw-test/cmd/poll", "{\"id\":\"r2\",\"device\":\"wl-001\"}");
    expect_reply("r2", "refused:not authorized");
    publish(e->port, "t/gw-test/cmd/rule.set",
            "{\"id\":\"r3\",\"rule\":\"depth\",\"device\":\"nope\","
            "\"levels\":{\"blue\":{\"raise\":4}}}");
    expect_reply("r3", "refused:no device 'nope'");
    publish(e->port, "t/gw-test/cmd/rule.set",
            "{\"id\":\"r4\",\"rule\":\"depth\",\"device\":\"wl-001\","
            "\"levels\":{\"blue\":{\"raise\":4,\"clear\":9}}}");
    expect_reply("r4", "refused:rule 'depth'"); /* clear above raise: the rule check says why */
    publish(e->port, "t/gw-test/cmd/rule.set", "{\"id\":\"r5\",\"rule\":\"depth\"}");
    expect_reply("r5", "refused:malformed: \"rule\" and one of \"device\" or \"group\"");
    publish(e->port, "t/gw-test/cmd/rule.set", "{\"id\":\"r6\",\"rule\":");
    expect_reply("", "refused:malformed: not JSON"); /* no id can be read from it */
    publish(e->port, "t/gw-test/cmd/frobnicate", "{\"id\":\"r7\"}");
    expect_reply("r7", "refused:unknown command 'frobnicate'");
    publish(e->port, "t/gw-test/cmd/ack", "{\"id\":\"r8\",\"alarm\":\"depth:wl-001:1\"}");
    expect_reply("r8", "accepted|failed:no such active alarm");

    /* Metadata on request (allowed by default): done, and the device's birth and the
     * inventory arrive again on their retained topics. */
    size_t before = h_platform_count();
    publish(e->port, "t/gw-test/cmd/meta", "{\"id\":\"m1\",\"device\":\"wl-001\"}");
    expect_reply("m1", "accepted|done");
    publish(e->port, "t/gw-test/cmd/inventory", "{\"id\":\"m2\"}");
    expect_reply("m2", "accepted|done");
    struct want_topic wt = {before, "t/gw-test/devices/wl-001"};
    assert_true(h_platform_wait(have_topic, &wt, 10000));
    wt.topic = "t/gw-test/inventory";
    assert_true(h_platform_wait(have_topic, &wt, 10000));

    /* The device command's reply carries the protocol's outcome. */
    publish(e->port, "t/gw-test/cmd/device",
            "{\"id\":\"d1\",\"device\":\"wl-001\",\"verb\":\"query\"}");
    expect_reply("d1", "accepted|failed:unknown verb 'query' (write)");

    /* Refused attempts to change state are audited too, with who asked. */
    struct want_audit au = {"rule.enable", "refused"};
    assert_true(h_platform_wait(have_audit, &au, 10000));
    assert_true(h_log_contains(&e->gw, "rule.set rule depth for device nope by default/platform"));

    /* The admin socket runs the same commands as destination "local", which
     * may run them all; its answer is the final reply. */
    char sock[512], out[2048];
    snprintf(sock, sizeof(sock), "%s/data/admin.sock", h_tmpdir());
    const char *poll[] = {"cmd", "poll", "{\"id\":\"l1\",\"device\":\"wl-001\"}", NULL};
    assert_int_equal(h_admin(sock, poll, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "\"id\":\"l1\",\"cmd\":\"poll\",\"status\":\"done\""));
    const char *set[] = {
        "cmd", "rule.set",
        "{\"rule\":\"depth\",\"device\":\"wl-001\",\"levels\":{\"blue\":{\"raise\":4}}}", NULL};
    assert_int_equal(h_admin(sock, set, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "\"status\":\"done\""));
    assert_true(
        h_log_contains(&e->gw, "rule.set rule depth for device wl-001 by local/admin: done"));
    const char *bad[] = {"cmd", "rule.enable",
                         "{\"rule\":\"nope\",\"device\":\"wl-001\",\"enabled\":false}", NULL};
    assert_int_equal(h_admin(sock, bad, out, sizeof(out)), 1);
    assert_non_null(strstr(out, "no rule 'nope'"));
}

/* The last reading of metric so far (NAN when none). */
static double last_reading(const char *metric)
{
    cJSON *items = h_platform_items("/readings");
    double v = NAN;
    cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        const char *m = cJSON_GetStringValue(cJSON_GetObjectItem(it, "metric"));
        if (m && !strcmp(m, metric))
            v = cJSON_GetNumberValue(cJSON_GetObjectItem(it, "value"));
    }
    cJSON_Delete(items);
    return v;
}

struct want_value {
    const char *metric;
    double value;
};

static int have_value(void *ctx)
{
    struct want_value *w = ctx;
    return fabs(last_reading(w->metric) - w->value) < 1e-9;
}

/* A Modbus write from the platform: `device` verb `write` with POINT=VALUE.
 * The device's acknowledgement is the `done` (with what went on the wire) and
 * the next poll reads the new value back; a write the device refuses fails
 * naming the exception; an unknown or read-only point is refused. */
static void test_modbus_write(void **state)
{
    struct env *e = *state;
    h_write_file("wl-writable.yaml",
                 "name: wl-writable\ndevice_type: waterlogging\npoints:\n"
                 "  - name: water_depth\n    kind: holding\n    address: 0\n    type: uint16\n"
                 "    scale: 0.1\n    unit: cm\n"
                 "  - name: alarm_level\n    kind: holding\n    address: 10\n    type: uint16\n"
                 "    scale: 0.1\n    unit: cm\n    range: [0, 500]\n    writable: true\n"
                 "  - name: pump_mode\n    kind: holding\n    address: 11\n    type: uint16\n"
                 "    writable: true\n");
    e->profile = "./wl-writable.yaml";
    e->extra = "      - {kind: holding, addr: 10, type: uint16, writable: true, value: 0}\n"
               "      - {kind: holding, addr: 11, type: uint16, writable: true, value: 0}\n"
               "    faults:\n      - {type: exception, code: 2, addr: 11, fc: 6}\n";
    start_sim(e);
    write_config(e, "  commands: [device]\n", 10);
    assert_int_equal(h_gateway_start(&e->gw, e->config), 0);
    assert_true(h_log_wait(&e->gw, "listening for platform commands", 10000));
    struct want_value zero = {"alarm_level", 0};
    assert_true(h_platform_wait(have_value, &zero, 10000));

    publish(
        e->port, "t/gw-test/cmd/device",
        "{\"id\":\"w1\",\"device\":\"wl-001\",\"verb\":\"write\",\"arg\":\"alarm_level=12.5\"}");
    expect_reply("w1", "accepted|done");
    char got[1024];
    cJSON *last = NULL;
    replies("w1", got, sizeof(got), &last);
    const cJSON *res = cJSON_GetObjectItem(last, "result");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(res, "point")), "alarm_level");
    assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(res, "value")) == 12.5);
    assert_int_equal((int)cJSON_GetNumberValue(cJSON_GetObjectItem(res, "fc")), 6);
    assert_int_equal((int)cJSON_GetNumberValue(cJSON_GetObjectItem(res, "address")), 10);
    const cJSON *words = cJSON_GetObjectItem(res, "words");
    assert_int_equal(cJSON_GetArraySize(words), 1);
    assert_int_equal((int)cJSON_GetNumberValue(cJSON_GetArrayItem(words, 0)), 125);
    cJSON_Delete(last);
    struct want_value written = {"alarm_level", 12.5}; /* the device holds it: polled back */
    assert_true(h_platform_wait(have_value, &written, 10000));

    publish(e->port, "t/gw-test/cmd/device",
            "{\"id\":\"w2\",\"device\":\"wl-001\",\"verb\":\"write\",\"arg\":\"pump_mode=1\"}");
    expect_reply("w2", "accepted|failed:exception 02 ILLEGAL DATA ADDRESS");
    publish(e->port, "t/gw-test/cmd/device",
            "{\"id\":\"w3\",\"device\":\"wl-001\",\"verb\":\"write\",\"arg\":\"nope=1\"}");
    expect_reply("w3", "refused:no point 'nope' in profile wl-writable");
    publish(e->port, "t/gw-test/cmd/device",
            "{\"id\":\"w4\",\"device\":\"wl-001\",\"verb\":\"write\",\"arg\":\"water_depth=3\"}");
    expect_reply("w4", "refused:point 'water_depth' is read-only");
    publish(e->port, "t/gw-test/cmd/device",
            "{\"id\":\"w5\",\"device\":\"wl-001\",\"verb\":\"write\",\"arg\":\"alarm_level=900\"}");
    expect_reply("w5", "refused:value 900 does not fit point 'alarm_level'");
    replies("w3", got, sizeof(got), NULL);
    assert_null(strstr(got, "accepted")); /* refused before anything was sent */

    /* Every write from the platform is audited with its outcome. */
    struct want_audit done = {"device", "done"}, failed = {"device", "failed"},
                      refused = {"device", "refused"};
    assert_true(h_platform_wait(have_audit, &done, 10000));
    assert_true(h_platform_wait(have_audit, &failed, 10000));
    assert_true(h_platform_wait(have_audit, &refused, 10000));
    assert_true(h_log_contains(&e->gw, "device write on wl-001 by default/platform: failed: "
                                       "exception 02 ILLEGAL DATA ADDRESS"));

    /* The device is gone: the write fails with the connection's reason, at
     * once or when the reconnection is refused. */
    h_stop(&e->sim);
    publish(e->port, "t/gw-test/cmd/device",
            "{\"id\":\"w6\",\"device\":\"wl-001\",\"verb\":\"write\",\"arg\":\"alarm_level=1\"}");
    expect_reply("w6", "accepted|failed:");
    replies("w6", got, sizeof(got), NULL);
    if (!strstr(got, "failed:device not connected") &&
        !strstr(got, "failed:connection lost or refused"))
        fail_msg("w6: %s", got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_threshold_from_platform, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_modbus_write, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
