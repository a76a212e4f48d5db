/* Command replies over MQTT 5, with a real mosquitto and its v5 clients: a
 * destination with uplink.mqtt_version 5 sends the replies of a command that
 * carried a response topic and correlation data to that topic, with the same
 * correlation data (and the payload's "id", or the correlation data when the
 * payload has none); a command without them is answered on <prefix>/<gw>/reply
 * as before; a 3.1.1 destination answers on <prefix>/<gw>/reply whatever the
 * command carried. mosquitto_sub prints each reply as "topic|correlation|payload". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/integration/harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct env {
    int port;
    h_proc broker, gw, sub;
};

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    e->port = h_free_port();
    assert_int_equal(h_broker_start(&e->broker, e->port), 0);
    char port[16];
    snprintf(port, sizeof(port), "%d", e->port);
    /* The platform's side: a v5 subscriber to the reply topics (-d: its SUBACK is the
     * sign it listens; line-buffered, or the debug lines wait for a message). */
    char *argv[] = {"stdbuf",
                    "-oL",
                    "mosquitto_sub",
                    "-V",
                    "mqttv5",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    port,
                    "-q",
                    "1",
                    "-d",
                    "-t",
                    "resp/#",
                    "-t",
                    "t/gw-test/reply",
                    "-F",
                    "%t|%D|%p",
                    NULL};
    char log[32];
    static int run;
    snprintf(log, sizeof(log), "sub-%d.log", ++run); /* one per test: the folder is shared */
    assert_int_equal(h_spawn(&e->sub, log, argv), 0);
    if (!h_log_wait(&e->sub, "SUBACK", 10000)) {
        h_dump_log(&e->sub);
        fail_msg("mosquitto_sub did not subscribe");
    }
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    int gw_status = h_stop(&e->gw);
    if (gw_status)
        h_dump_log(&e->gw);
    h_stop(&e->sub);
    h_stop(&e->broker);
    free(e);
    assert_int_equal(gw_status, 0);
    return 0;
}

static void start_gateway(struct env *e, const char *version)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "gateway:\n  id: gw-test\n  data_dir: %s/data-%s\n  shutdown_drain: 1s\n"
             "uplink:\n  uri: tcp://127.0.0.1:%d\n  topic_prefix: t\n  backoff_min: 100ms\n"
             "  backoff_max: 300ms\n  mqtt_version: %s\n"
             "devices:\n"
             "  - {id: wl-001, protocol: synthetic, interval: 2s}\n",
             h_tmpdir(), version, e->port, version);
    const char *path = h_write_file("gateway.yaml", text);
    assert_int_equal(h_gateway_start(&e->gw, path), 0);
    assert_true(h_log_wait(&e->gw, "listening for platform commands", 10000));
}

/* A v5 publish of payload on t/gw-test/cmd/<cmd>; rt and corr may be NULL. */
static void command(struct env *e, const char *cmd, const char *payload, const char *rt,
                    const char *corr)
{
    char line[1024];
    int n =
        snprintf(line, sizeof(line),
                 "mosquitto_pub -V mqttv5 -h 127.0.0.1 -p %d -q 1 -t 't/gw-test/cmd/%s' -m '%s'",
                 e->port, cmd, payload);
    if (rt)
        n += snprintf(line + n, sizeof(line) - (size_t)n, " -D publish response-topic '%s'", rt);
    if (corr)
        snprintf(line + n, sizeof(line) - (size_t)n, " -D publish correlation-data '%s'", corr);
    assert_int_equal(system(line), 0);
}

static void expect(struct env *e, const char *text)
{
    if (!h_log_wait(&e->sub, text, 10000)) {
        h_dump_log(&e->sub);
        fail_msg("no reply line containing '%s'", text);
    }
}

static void test_v5_routes_replies(void **state)
{
    struct env *e = *state;
    start_gateway(e, "5");

    /* Response topic and correlation data: both replies go there, with it. */
    command(e, "inventory", "{\"id\":\"i1\"}", "resp/a", "corr-1");
    expect(e, "resp/a|corr-1|{\"v\":1,\"id\":\"i1\",\"cmd\":\"inventory\",\"status\":\"accepted\"");
    expect(e, "resp/a|corr-1|{\"v\":1,\"id\":\"i1\",\"cmd\":\"inventory\",\"status\":\"done\"");

    /* No id in the payload: the correlation data is the id. */
    command(e, "meta", "{\"device\":\"wl-001\"}", "resp/b", "corr-2");
    expect(e, "resp/b|corr-2|{\"v\":1,\"id\":\"corr-2\",\"cmd\":\"meta\",\"status\":\"done\"");

    /* A refusal follows the route too. */
    command(e, "frobnicate", "{\"id\":\"i3\"}", "resp/c", "corr-3");
    expect(e, "resp/c|corr-3|{\"v\":1,\"id\":\"i3\",\"cmd\":\"frobnicate\",\"status\":\"refused\"");

    /* Neither: the default reply topic, as over 3.1.1. */
    command(e, "inventory", "{\"id\":\"i4\"}", NULL, NULL);
    expect(e, "t/gw-test/reply||{\"v\":1,\"id\":\"i4\",\"cmd\":\"inventory\",\"status\":\"done\"");

    /* Correlation data without a response topic: the default topic, with it. */
    command(e, "inventory", "{\"id\":\"i5\"}", NULL, "corr-5");
    expect(e, "t/gw-test/reply|corr-5|{\"v\":1,\"id\":\"i5\"");
}

static void test_v311_destination(void **state)
{
    struct env *e = *state;
    start_gateway(e, "3.1.1");
    /* The broker strips v5 properties towards a 3.1.1 client: the default topic. */
    command(e, "inventory", "{\"id\":\"j1\"}", "resp/a", "corr-1");
    expect(e, "t/gw-test/reply||{\"v\":1,\"id\":\"j1\",\"cmd\":\"inventory\",\"status\":\"done\"");
    assert_false(h_log_contains(&e->sub, "resp/a|"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_v5_routes_replies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_v311_destination, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
