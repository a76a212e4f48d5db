/* Platform commands without a broker: parsing, authorization, the reply
 * sequence and its fields, audit events, and the uplink.commands config key.
 * The core is played by the env functions below. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "gateway/commands.h"
#include "gateway/config.h"
#include "gateway/device.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct fake {
    gw_device dev[2];
    gw_device *devs[2];
    char replies[16][1024];
    int nreplies;
    int audits;
    char audit[1024];
    int polls, metas, meta_rc, dev_rc;
} fake;

static fake F;

static int fake_set_interval(gw_device *d, int64_t ms)
{
    return 0;
}

static const gw_protocol polled = {.name = "modbus-tcp", .set_interval = fake_set_interval};
static const gw_protocol listener = {.name = "sl651"};
static const gw_protocol answering = {.name = "sl651", .command_answers = 1};

static gw_device *const *env_devices(void *ctx, size_t *n)
{
    *n = 2;
    return F.devs;
}

static int env_device_command(void *ctx, const char *device, const char *verb, const char *arg,
                              char *reply, size_t len)
{
    snprintf(reply, len, F.dev_rc ? "station not connected" : "sent 37 serial 5 to 0012345678");
    return F.dev_rc;
}

static int env_poll(void *ctx, gw_device *dev)
{
    F.polls++;
    return 0;
}

static int env_meta(void *ctx, gw_device *dev)
{
    F.metas++;
    return F.meta_rc;
}

static int env_audit(void *ctx, const char *detail, const char *audit)
{
    F.audits++;
    snprintf(F.audit, sizeof(F.audit), "%s", audit);
    return 0;
}

static int env_flush(void *ctx, void (*cb)(void *, int), void *cbctx)
{
    cb(cbctx, 0);
    return 0;
}

static void on_reply(void *ctx, const char *json, size_t len)
{
    assert_true(F.nreplies < 16);
    assert_true(len < sizeof(F.replies[0]));
    memcpy(F.replies[F.nreplies], json, len);
    F.replies[F.nreplies++][len] = '\0';
}

static gw_commands *setup_cmds(unsigned allowed)
{
    memset(&F, 0, sizeof(F));
    static const char *east[] = {"east"};
    static gw_device_about in_east;
    in_east = gw_device_about_none;
    in_east.groups = east;
    in_east.ngroups = 1;
    F.dev[0].conf.id = "wl-001";
    F.dev[0].conf.about = &in_east;
    F.dev[0].proto = &polled;
    F.dev[1].conf.id = "rtu-01";
    F.dev[1].conf.about = &gw_device_about_none;
    F.dev[1].proto = &listener;
    F.devs[0] = &F.dev[0];
    F.devs[1] = &F.dev[1];
    gw_commands_env env = {.gateway_id = "gw-t",
                           .devices = env_devices,
                           .device_command = env_device_command,
                           .poll = env_poll,
                           .publish_meta = env_meta,
                           .audit = env_audit,
                           .flush = env_flush};
    gw_commands *c = gw_commands_new(&env);
    assert_non_null(c);
    assert_int_equal(gw_commands_allow(c, "city", allowed), 0);
    return c;
}

/* The devices of setup_cmds, rtu-01 answering its commands later, on loop; every command
 * allowed to "city". answer_ms 0: the default wait. */
static gw_commands *setup_answering(uv_loop_t *loop, int answer_ms)
{
    gw_commands_free(setup_cmds(0x7f));
    F.dev[1].proto = &answering;
    gw_commands_env env = {.loop = loop,
                           .answer_ms = answer_ms,
                           .gateway_id = "gw-t",
                           .devices = env_devices,
                           .device_command = env_device_command,
                           .audit = env_audit,
                           .flush = env_flush};
    gw_commands *c = gw_commands_new(&env);
    assert_non_null(c);
    assert_int_equal(gw_commands_allow(c, "city", 0x7f), 0);
    return c;
}

static void run(gw_commands *c, const char *dest, const char *name, const char *payload,
                const char *corr)
{
    F.nreplies = 0;
    gw_commands_handle(c, dest, name, payload, strlen(payload), corr, on_reply, NULL);
}

/* Reply i's field as a string ("" when absent). */
static const char *field(int i, const char *key)
{
    static char out[512];
    assert_true(i < F.nreplies);
    cJSON *doc = cJSON_Parse(F.replies[i]);
    assert_non_null(doc);
    const cJSON *it = cJSON_GetObjectItem(doc, key);
    if (cJSON_IsString(it))
        snprintf(out, sizeof(out), "%s", it->valuestring);
    else if (it) {
        char *p = cJSON_PrintUnformatted(it);
        snprintf(out, sizeof(out), "%s", p);
        free(p);
    } else
        out[0] = '\0';
    cJSON_Delete(doc);
    return out;
}

static void expect(int i, const char *status, const char *reason)
{
    assert_string_equal(field(i, "status"), status);
    if (reason)
        assert_non_null(strstr(field(i, "reason"), reason));
    assert_string_equal(field(i, "v"), "1");
    assert_true(strlen(field(i, "at")) == 24); /* 2026-12-03T12:00:00.000Z */
}

static void test_refusals(void **state)
{
    (void)state;
    gw_commands *c = setup_cmds(gw_commands_bit("ack") | gw_commands_bit("rule.set"));
    run(c, "city", "frobnicate", "{\"id\":\"a\"}", NULL);
    assert_int_equal(F.nreplies, 1);
    expect(0, "refused", "unknown command 'frobnicate'");
    assert_string_equal(field(0, "id"), "a");
    assert_string_equal(field(0, "cmd"), "frobnicate");

    /* Not allowed for this destination; unknown destinations may do nothing. */
    run(c, "city", "poll", "{\"id\":\"b\",\"device\":\"wl-001\"}", NULL);
    expect(0, "refused", "not authorized");
    assert_int_equal(F.polls, 0);
    assert_int_equal(F.audits, 0); /* poll changes no state */
    run(c, "city", "rule.enable", "{\"id\":\"b2\",\"rule\":\"x\"}", NULL);
    expect(0, "refused", "not authorized");
    assert_int_equal(F.audits, 1); /* an attempt at a change is audited */
    assert_non_null(strstr(F.audit, "\"dest\":\"city\""));
    assert_non_null(strstr(F.audit, "\"result\":\"refused\""));
    run(c, "bureau", "ack", "{\"alarm\":\"x\"}", NULL);
    expect(0, "refused", "not authorized");
    gw_commands_free(c);

    /* Malformed, in each way the parser can tell; then well formed but naming
     * what is not there (no rules at all here). */
    static const struct {
        const char *name, *payload, *reason, *id;
    } bad[] = {
        {"ack", "{\"alarm\":", "malformed: not JSON", ""},
        {"ack", "[1,2]", "must be a JSON object", ""},
        {"ack", "{\"id\":7,\"alarm\":1}", "\"alarm\"", "7"},
        {"ack", "{\"alarm\":\"x\",\"by\":5}", "\"by\" must be a string", ""},
        {"rule.set", "{\"rule\":\"depth\",\"levels\":{}}", "one of \"device\" or \"group\"", ""},
        {"rule.set", "{\"rule\":\"depth\",\"device\":\"wl-001\",\"group\":\"east\"}",
         "one of \"device\" or \"group\"", ""},
        {"rule.set",
         "{\"rule\":\"depth\",\"device\":\"wl-001\",\"levels\":{\"purple\":{\"raise\":1}}}",
         "level 'purple'", ""},
        {"rule.set",
         "{\"rule\":\"depth\",\"device\":\"wl-001\",\"levels\":{\"blue\":{\"raise\":\"1\"}}}",
         "level 'blue'", ""},
        {"rule.set", "{\"rule\":\"depth\",\"device\":\"wl-001\",\"levels\":{}}", "\"levels\"", ""},
        {"rule.enable", "{\"rule\":\"depth\",\"device\":\"wl-001\",\"enabled\":1}", "\"enabled\"",
         ""},
        {"rule.set", "{\"rule\":\"depth\",\"device\":\"nope\",\"levels\":{}}", "no device 'nope'",
         ""},
        {"rule.set", "{\"rule\":\"depth\",\"group\":\"west\",\"levels\":{}}",
         "no device in group 'west'", ""},
        {"rule.set", "{\"rule\":\"depth\",\"group\":\"east\",\"levels\":{\"blue\":{\"raise\":1}}}",
         "no rule 'depth'", ""},
    };
    c = setup_cmds(0x7f);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        run(c, "city", bad[i].name, bad[i].payload, NULL);
        assert_int_equal(F.nreplies, 1);
        expect(0, "refused", bad[i].reason);
        assert_string_equal(field(0, "id"), bad[i].id);
    }
    gw_commands_free(c);
}

static void test_replies_and_outcomes(void **state)
{
    (void)state;
    gw_commands *c = setup_cmds(0x7f);
    /* The transport's correlation id wins over the payload's. */
    run(c, "city", "ack", "{\"id\":\"payload\",\"alarm\":\"depth:wl-001:1\"}", "v5-corr");
    assert_int_equal(F.nreplies, 2);
    expect(0, "accepted", NULL);
    expect(1, "failed", "no such active alarm");
    assert_string_equal(field(1, "id"), "v5-corr");
    assert_string_equal(field(1, "cmd"), "ack");
    assert_int_equal(F.audits, 1);

    /* The device command's reply carries the protocol's answer. */
    run(c, "city", "device", "{\"id\":\"d\",\"device\":\"rtu-01\",\"verb\":\"query\"}", NULL);
    expect(0, "accepted", NULL);
    expect(1, "done", NULL);
    assert_string_equal(field(1, "result"), "{\"reply\":\"sent 37 serial 5 to 0012345678\"}");
    F.dev_rc = -11;
    run(c, "city", "device", "{\"id\":\"d\",\"device\":\"rtu-01\",\"verb\":\"query\"}", NULL);
    expect(1, "failed", "station not connected");
    assert_non_null(strstr(F.audit, "\"what\":\"query on rtu-01\""));

    /* Poll: only polled devices. */
    run(c, "city", "poll", "{\"device\":\"rtu-01\"}", NULL);
    expect(0, "refused", "protocol sl651 is not polled on request");
    run(c, "city", "poll", "{\"device\":\"wl-001\"}", NULL);
    expect(0, "accepted", NULL);
    expect(1, "done", NULL);
    assert_int_equal(F.polls, 1);

    /* Metadata: done once published, failed while there is no publisher. */
    F.meta_rc = GW_EUNSUPPORTED;
    run(c, "city", "meta", "{\"device\":\"wl-001\"}", NULL);
    expect(1, "failed", "not available");
    F.meta_rc = 0;
    run(c, "city", "inventory", "{}", NULL);
    expect(1, "done", NULL);
    assert_int_equal(F.metas, 2);
    int audits = F.audits;
    run(c, "city", "meta", "{\"device\":\"zz\"}", NULL);
    expect(0, "refused", "no device 'zz'");
    assert_int_equal(F.audits, audits); /* reading metadata is not audited */

    /* After stop, nothing more is sent. */
    gw_commands_stop(c);
    run(c, "city", "inventory", "{}", NULL);
    assert_int_equal(F.nreplies, 0);
    gw_commands_free(c);
}

/* A protocol whose device answers later: done comes with the answer, or
 * failed once the wait is over; both are audited. */
static void on_idle_stop(uv_timer_t *t)
{
    uv_stop(t->loop);
}

static void test_device_answers_later(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    gw_commands *c = setup_answering(&loop, 50);
    run(c, "city", "device", "{\"id\":\"q1\",\"device\":\"rtu-01\",\"verb\":\"query\"}", NULL);
    assert_int_equal(F.nreplies, 1);
    expect(0, "accepted", NULL);
    gw_commands_answered(c, "rtu-01", "status", "answer 46 serial 5"); /* another verb */
    assert_int_equal(F.nreplies, 1);
    gw_commands_answered(c, "rtu-01", "query", "answer 37 serial 5");
    assert_int_equal(F.nreplies, 2);
    expect(1, "done", NULL);
    assert_string_equal(field(1, "id"), "q1");
    assert_string_equal(
        field(1, "result"),
        "{\"reply\":\"sent 37 serial 5 to 0012345678\",\"answer\":\"answer 37 serial 5\"}");
    gw_commands_answered(c, "rtu-01", "query", "answer 37 serial 6"); /* nobody waits */
    assert_int_equal(F.nreplies, 2);

    /* No answer: failed after the wait. */
    run(c, "city", "device", "{\"id\":\"q2\",\"device\":\"rtu-01\",\"verb\":\"query\"}", NULL);
    int audits = F.audits;
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    uv_timer_start(&t, on_idle_stop, 2000, 0);
    while (F.nreplies < 2 && uv_run(&loop, UV_RUN_ONCE))
        ;
    assert_int_equal(F.nreplies, 2);
    expect(1, "failed", "no answer within 0.05 s");
    assert_int_equal(F.audits, audits + 1);
    assert_non_null(strstr(F.audit, "\"result\":\"failed\""));

    /* A wait still running at the stop is dropped without a reply. */
    run(c, "city", "device", "{\"id\":\"q3\",\"device\":\"rtu-01\",\"verb\":\"query\"}", NULL);
    gw_commands_free(c);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(F.nreplies, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* The route each reply of an MQTT 5 command came with. */
static gw_mqttc_route routes[16];

static void on_route_reply(void *ctx, const gw_mqttc_route *r, const char *json, size_t len)
{
    routes[F.nreplies] = *r;
    on_reply(ctx, json, len);
}

static void run_routed(gw_commands *c, const char *name, const char *payload, const char *topic,
                       const void *corr, size_t corr_len)
{
    gw_mqttc_route r = {.corr_len = corr_len};
    snprintf(r.topic, sizeof(r.topic), "%s", topic);
    memcpy(r.corr, corr, corr_len);
    F.nreplies = 0;
    gw_commands_handle_routed(c, "city", name, payload, strlen(payload), &r, on_route_reply, NULL);
}

/* Every reply of an MQTT 5 command, the late one too, goes with the command's
 * route; the payload's id wins, else printable correlation data is the id. */
static void test_routed_replies(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    gw_commands *c = setup_answering(&loop, 0);

    run_routed(c, "device", "{\"device\":\"rtu-01\",\"verb\":\"query\"}", "resp/1", "c-1", 3);
    assert_int_equal(F.nreplies, 1);
    expect(0, "accepted", NULL);
    assert_string_equal(field(0, "id"), "c-1");
    gw_commands_answered(c, "rtu-01", "query", "answer 37 serial 5");
    assert_int_equal(F.nreplies, 2);
    expect(1, "done", NULL);
    assert_string_equal(field(1, "id"), "c-1");
    assert_string_equal(routes[1].topic, "resp/1");
    assert_int_equal(routes[1].corr_len, 3);
    assert_memory_equal(routes[1].corr, "c-1", 3);

    run_routed(c, "inventory", "{\"id\":\"p-2\"}", "resp/2", "c-2", 3);
    assert_string_equal(field(1, "id"), "p-2"); /* the payload's id wins */
    assert_string_equal(routes[1].topic, "resp/2");
    run_routed(c, "inventory", "{}", "", "\x01\x02", 2); /* binary: no id */
    assert_string_equal(field(1, "id"), "");
    assert_int_equal(routes[1].corr_len, 2);
    run_routed(c, "nope", "{}", "resp/3", "c-3", 3);
    expect(0, "refused", "unknown command");
    assert_string_equal(routes[0].topic, "resp/3");

    gw_commands_free(c);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static unsigned load_commands(const char *line, char *err, size_t errlen, int *rc)
{
    char dir[] = "/tmp/cmdtest.XXXXXX", path[600], text[1024];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/gw.yaml", dir);
    snprintf(text, sizeof(text),
             "gateway: {id: gw-c, data_dir: %s}\nuplink:\n  uri: tcp://127.0.0.1:1883\n%s"
             "devices: []\n",
             dir, line);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    gw_config cfg;
    *rc = gw_config_load(&cfg, path, err, errlen);
    unsigned mask = *rc ? 0 : cfg.uplink.commands;
    if (!*rc)
        gw_config_free(&cfg);
    unlink(path);
    rmdir(dir);
    return mask;
}

static void test_config_key(void **state)
{
    (void)state;
    char err[512];
    int rc;
    unsigned m = load_commands("", err, sizeof(err), &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(m, GW_COMMANDS_DEFAULT);
    assert_int_equal(m, gw_commands_bit("ack") | gw_commands_bit("device") |
                            gw_commands_bit("meta") | gw_commands_bit("inventory"));
    m = load_commands("  commands: [ack, rule.set, poll]\n", err, sizeof(err), &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(m, gw_commands_bit("ack") | gw_commands_bit("rule.set") |
                            gw_commands_bit("poll"));
    m = load_commands("  commands: []\n", err, sizeof(err), &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(m, 0);
    load_commands("  commands: [ack, reboot]\n", err, sizeof(err), &rc);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(err, "gw.yaml:4"));
    assert_non_null(strstr(err, "not a command name"));
    load_commands("  commands: ack\n", err, sizeof(err), &rc);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(err, "must be a list"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_replies_and_outcomes),
        cmocka_unit_test(test_device_answers_later),
        cmocka_unit_test(test_routed_replies),
        cmocka_unit_test(test_config_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
