/* Garbage on the platform formats' command topics, over a real mosquitto: for
 * thingsboard, huawei-iotda and aliyun-alink destinations, non-JSON, truncated
 * JSON, deep nesting, huge ids, wrong types, missing fields, binary, and
 * replayed request ids are published where the platform sends its commands.
 * Each must get the platform's own error response where the request can be
 * answered (a request id and a method or service), or be dropped and counted;
 * the gateway must go on answering a good command afterwards and exit cleanly.
 * A mosquitto_sub records every topic ($oc/ ones too); every wait is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/integration/harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int setup(void **state)
{
    static const char *const topics[] = {"-v", "-t", "#", "-t", "$oc/#", NULL};
    return (*state = h_bed_new(1, topics)) ? 0 : -1;
}

static void start_gateway(h_bed *e, const char *format_keys)
{
    assert_int_equal(h_gateway_with(&e->gw, "gw-test", e->port, 0,
                                    "  password_file: %s\n%s"
                                    "devices:\n  - {id: syn-1, protocol: synthetic, "
                                    "type: loadgen, rate: 10}\n",
                                    h_write_file("secret.txt", "s3cret\n"), format_keys),
                     0);
}

static void publish(h_bed *e, const char *topic, const char *payload, size_t len)
{
    assert_int_equal(h_publish(e->port, topic, payload, len, NULL), 0);
}

static void publish_s(h_bed *e, const char *topic, const char *payload)
{
    publish(e, topic, payload, strlen(payload));
}

/* The recorded lines on topic (exactly) that contain needle. */
static int lines_with(h_bed *e, const char *topic, const char *needle)
{
    /* The file as bytes: a binary payload's NULs are made visible so that lines
     * after it are read too. */
    FILE *f = fopen(e->sub.log, "rb");
    char *log = NULL;
    size_t len = 0;
    if (f && !fseek(f, 0, SEEK_END) && (len = (size_t)ftell(f)) + 1 && !fseek(f, 0, SEEK_SET) &&
        (log = malloc(len + 1)) != NULL) {
        len = fread(log, 1, len, f);
        for (size_t i = 0; i < len; i++)
            log[i] = log[i] ? log[i] : '?';
        log[len] = 0;
    }
    if (f)
        fclose(f);
    int n = 0;
    size_t tl = strlen(topic);
    for (char *line = log ? strtok(log, "\n") : NULL; line; line = strtok(NULL, "\n"))
        n += !strncmp(line, topic, tl) && line[tl] == ' ' && strstr(line + tl, needle);
    free(log);
    return n;
}

/* Waits (bounded) until `want` lines on topic contain needle. */
static void expect(h_bed *e, const char *topic, const char *needle, int want)
{
    for (int i = 0; i < 100 && lines_with(e, topic, needle) < want; i++)
        usleep(100 * 1000);
    if (lines_with(e, topic, needle) < want) {
        char sock[300];
        snprintf(sock, sizeof(sock), "%s/data/admin.sock", h_tmpdir());
        h_dump_log(&e->gw);
        fprintf(stderr, "replies dropped (8 waiting in the MQTT client): %.0f\n",
                h_status_number(sock, "uplink.replies_dropped"));
        fail_msg("%d of %d responses on %s with %s", lines_with(e, topic, needle), want, topic,
                 needle);
    }
}

/* Garbage common to every format: what cannot be a request at all. */
static void common_garbage(h_bed *e, const char *topic)
{
    static const char binary[] = {0x00, 0x01, (char)0xff, (char)0xfe, 0x7b, 0x22, 0x00, (char)0x80};
    publish(e, topic, binary, sizeof(binary));
    publish_s(e, topic, "not json at all");
    publish_s(e, topic, "{\"id\":\"t-1\",\"data\":{\"method\":\"ack\",\"params\":");
    publish_s(e, topic, "[]");
    publish_s(e, topic, "12345678901234567890123456789012345678901234567890");
    publish(e, topic, "", 0);
    /* 100,000 levels of nesting: past cJSON's parse limit. */
    size_t deep = 100000;
    char *d = malloc(2 * deep);
    assert_non_null(d);
    memset(d, '[', deep);
    memset(d + deep, ']', deep);
    publish(e, topic, d, 2 * deep);
    free(d);
}

/* 900 levels of nesting inside the parameters: parses, so it must be carried or refused. */
static char *nested_params(void)
{
    size_t n = 900, cap = 8 * n + 64, len = 0;
    char *s = malloc(cap);
    assert_non_null(s);
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(s + len, cap - len, "{\"a\":");
    len += (size_t)snprintf(s + len, cap - len, "1");
    for (size_t i = 0; i < n; i++)
        s[len++] = '}';
    s[len] = 0;
    return s;
}

static void test_garbage_thingsboard(void **state)
{
    h_bed *e = *state;
    start_gateway(e, "  format: thingsboard\n");
    const char *t = "v1/gateway/rpc";
    common_garbage(e, t);
    /* Missing fields and wrong types: no device, no id, data not an object, a method
     * that is not a string: nothing a response could be addressed to. */
    publish_s(e, t, "{\"data\":{\"id\":1,\"method\":\"ack\"}}");
    publish_s(e, t, "{\"device\":\"syn-1\",\"data\":{\"method\":\"ack\"}}");
    publish_s(e, t, "{\"device\":\"syn-1\",\"data\":\"ack\"}");
    publish_s(e, t, "{\"device\":7,\"data\":{\"id\":2,\"method\":\"ack\"}}");
    /* Answerable: each gets an RPC response saying why it was refused. Each is awaited
     * before the next: a burst of more replies than the MQTT client may hold is dropped
     * by design (docs/uplink.md; counted in replies_dropped), and the platform asks
     * again after its timeout, which is what these waits stand for. */
    publish_s(e, t, "{\"device\":\"syn-1\",\"data\":{\"id\":101,\"method\":\"frobnicate\"}}");
    expect(e, t, "\"id\":101,\"data\":{\"success\":false,\"status\":\"refused\"", 1);
    publish_s(e, t, "{\"device\":\"syn-1\",\"data\":{\"id\":102,\"method\":\"ack\",\"params\":5}}");
    expect(e, t, "\"id\":102,\"data\":{\"success\":false,\"status\":\"refused\"", 1);
    publish_s(e, t,
              "{\"device\":\"syn-1\",\"data\":{\"id\":103,\"method\":\"ack\","
              "\"params\":{\"alarm\":[1,2]}}}");
    expect(e, t, "\"id\":103,\"data\":{\"success\":false,\"status\":\"refused\"", 1);
    char huge[1200] = "{\"device\":\"syn-1\",\"data\":{\"id\":\"";
    size_t hl = strlen(huge);
    memset(huge + hl, '9', 1000);
    snprintf(huge + hl + 1000, sizeof(huge) - hl - 1000, "\",\"method\":\"ack\"}}");
    publish_s(e, t, huge);
    expect(e, t, "\"id\":\"9999999999", 1);
    char *nest = nested_params(), *msg = malloc(strlen(nest) + 128);
    sprintf(msg, "{\"device\":\"syn-1\",\"data\":{\"id\":104,\"method\":\"meta\",\"params\":%s}}",
            nest);
    publish_s(e, t, msg);
    free(nest);
    free(msg);
    expect(e, t, "\"id\":104,\"data\":{\"success\":true", 1);
    /* A replayed request id: answered each time. */
    for (int i = 0; i < 3; i++) {
        publish_s(e, t, "{\"device\":\"syn-1\",\"data\":{\"id\":105,\"method\":\"meta\"}}");
        expect(e, t, "\"id\":105,\"data\":{\"success\":true", i + 1);
    }
    assert_true(h_log_contains(&e->gw, "malformed platform command"));
}

static void test_garbage_huawei(void **state)
{
    h_bed *e = *state;
    start_gateway(e, "  format: huawei-iotda\n  platform_device: gw01\n"
                     "  sub_product_key: prod01\n");
    const char *t = "$oc/devices/gw01/sys/commands/request_id=g-1";
    common_garbage(e, t);
    publish_s(e, t, "{\"paras\":{}}");                     /* no command_name */
    publish_s(e, t, "{\"command_name\":42,\"paras\":{}}"); /* not a string */
    publish_s(e, "$oc/devices/gw01/sys/commands/request_id=", "{\"command_name\":\"meta\"}");
    char topic[512];
    snprintf(topic, sizeof(topic), "$oc/devices/gw01/sys/commands/request_id=");
    memset(topic + strlen(topic), 'r', 300);
    topic[41 + 300] = 0;
    publish_s(e, topic, "{\"command_name\":\"meta\"}"); /* a response topic past its bound */
    const char *r = "$oc/devices/gw01/sys/commands/response/request_id=";
    char rt[128];
    /* Each answer awaited before the next request (see test_garbage_thingsboard). */
    publish_s(e, "$oc/devices/gw01/sys/commands/request_id=h-1",
              "{\"object_device_id\":\"prod01_syn-1\",\"command_name\":\"frobnicate\"}");
    snprintf(rt, sizeof(rt), "%sh-1", r);
    expect(e, rt, "\"result_code\":1", 1);
    publish_s(e, "$oc/devices/gw01/sys/commands/request_id=h-2",
              "{\"object_device_id\":\"prod01_nope\",\"command_name\":\"meta\",\"paras\":[1]}");
    snprintf(rt, sizeof(rt), "%sh-2", r);
    expect(e, rt, "\"result_code\":1", 1);
    snprintf(rt, sizeof(rt), "%sh-3", r);
    for (int i = 0; i < 3; i++) {
        publish_s(e, "$oc/devices/gw01/sys/commands/request_id=h-3",
                  "{\"object_device_id\":\"prod01_syn-1\",\"command_name\":\"meta\"}");
        expect(e, rt, "\"result_code\":0", i + 1);
    }
    assert_true(h_log_contains(&e->gw, "malformed platform command"));
}

static void test_garbage_alink(void **state)
{
    h_bed *e = *state;
    start_gateway(e, "  format: aliyun-alink\n  platform_device: gw01\n  product_key: pk1\n"
                     "  sub_product_key: spk1\n");
    const char *t = "/sys/spk1/syn-1/thing/service/meta";
    common_garbage(e, t);
    publish_s(e, t, "{\"params\":{}}");           /* no id */
    publish_s(e, t, "{\"id\":77,\"params\":{}}"); /* an id that is not a string */
    publish_s(e, "/sys/other/syn-1/thing/service/meta", "{\"id\":\"x\"}"); /* not ours */
    /* Each answer awaited before the next request (see test_garbage_thingsboard). */
    publish_s(e, "/sys/spk1/syn-1/thing/service/frobnicate", "{\"id\":\"a-1\",\"params\":{}}");
    expect(e, "/sys/spk1/syn-1/thing/service/frobnicate_reply", "\"id\":\"a-1\",\"code\":400", 1);
    publish_s(e, "/sys/spk1/nope/thing/service/meta", "{\"id\":\"a-2\",\"params\":\"x\"}");
    expect(e, "/sys/spk1/nope/thing/service/meta_reply", "\"id\":\"a-2\",\"code\":400", 1);
    for (int i = 0; i < 3; i++) {
        publish_s(e, t, "{\"id\":\"a-3\",\"params\":{}}");
        expect(e, "/sys/spk1/syn-1/thing/service/meta_reply", "\"id\":\"a-3\",\"code\":200", i + 1);
    }
    assert_true(h_log_contains(&e->gw, "malformed platform command"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_garbage_thingsboard, setup, h_bed_teardown),
        cmocka_unit_test_setup_teardown(test_garbage_huawei, setup, h_bed_teardown),
        cmocka_unit_test_setup_teardown(test_garbage_alink, setup, h_bed_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
