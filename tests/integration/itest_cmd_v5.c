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

static int setup(void **state)
{
    /* The platform's side: a v5 subscriber to the reply topics, printing each reply as
     * "topic|correlation|payload". */
    static const char *const args[] = {"-V", "mqttv5",   "-t", "resp/#", "-t", "t/gw-test/reply",
                                       "-F", "%t|%D|%p", NULL};
    return (*state = h_bed_new(1, args)) ? 0 : -1;
}

static void start_gateway(h_bed *e, const char *version)
{
    assert_int_equal(h_gateway_with(&e->gw, "gw-test", e->port, 0,
                                    "  topic_prefix: t\n  mqtt_version: %s\n"
                                    "devices:\n  - {id: wl-001, protocol: synthetic, "
                                    "interval: 2s}\n",
                                    version),
                     0);
}

/* A v5 publish of payload on t/gw-test/cmd/<cmd>; rt and corr may be NULL. */
static void command(h_bed *e, const char *cmd, const char *payload, const char *rt,
                    const char *corr)
{
    char topic[256], opts[512] = "-V mqttv5";
    snprintf(topic, sizeof(topic), "t/gw-test/cmd/%s", cmd);
    size_t n = strlen(opts);
    if (rt)
        n += (size_t)snprintf(opts + n, sizeof(opts) - n, " -D publish response-topic '%s'", rt);
    if (corr)
        snprintf(opts + n, sizeof(opts) - n, " -D publish correlation-data '%s'", corr);
    assert_int_equal(h_publish(e->port, topic, payload, strlen(payload), opts), 0);
}

static void expect(h_bed *e, const char *text)
{
    if (!h_log_wait(&e->sub, text, 10000)) {
        h_dump_log(&e->sub);
        fail_msg("no reply line containing '%s'", text);
    }
}

static void test_v5_routes_replies(void **state)
{
    h_bed *e = *state;
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
    h_bed *e = *state;
    start_gateway(e, "3.1.1");
    /* The broker strips v5 properties towards a 3.1.1 client: the default topic. */
    command(e, "inventory", "{\"id\":\"j1\"}", "resp/a", "corr-1");
    expect(e, "t/gw-test/reply||{\"v\":1,\"id\":\"j1\",\"cmd\":\"inventory\",\"status\":\"done\"");
    assert_false(h_log_contains(&e->sub, "resp/a|"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_v5_routes_replies, setup, h_bed_teardown),
        cmocka_unit_test_setup_teardown(test_v311_destination, setup, h_bed_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
