/* The platform formats end to end (docs/platforms.md): build/gateway with `uplink.format`
 * thingsboard, huawei-iotda and aliyun-alink against a real mosquitto. A mosquitto_sub
 * records everything (also the $oc/ topics '#' does not match); each test checks that the
 * gateway connects with the platform's identity (IoTDA: the broker itself checks the signed
 * password, computed here with the openssl command line), announces its device, publishes
 * readings and an alarm on the documented topics in the documented shapes, and answers a
 * command sent the platform's way on the platform's response topic; the command reaches the
 * core (the alarm it acknowledges comes back acknowledged). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/integration/harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int setup(void **state)
{
    return (*state = h_bed_new(0, NULL)) ? 0 : -1; /* each test starts its broker */
}

/* mosquitto on e->port; with a password file, clients giving a user name must match it. */
static void start_broker(h_bed *e, const char *password_file)
{
    char extra[600] = "";
    if (password_file)
        snprintf(extra, sizeof(extra), "password_file %s\n", password_file);
    assert_int_equal(h_broker_start_ex(&e->broker, e->port, NULL, extra), 0);
}

/* The recorder: every topic, $oc/ ones included, one "topic payload" line each. */
static void start_sub(h_bed *e)
{
    static const char *const topics[] = {"-v", "-t", "#", "-t", "$oc/#", NULL};
    assert_int_equal(h_recorder_start(&e->sub, e->port, "sub.log", topics), 0);
}

static void start_gateway(h_bed *e, const char *uplink_keys)
{
    assert_int_equal(
        h_gateway_with(&e->gw, "gw-test", e->port, 0,
                       "%s"
                       "devices:\n  - {id: syn-1, protocol: synthetic, type: loadgen, rate: 100, "
                       "total: 30}\n"
                       "rules:\n  - id: high\n    kind: threshold\n    metric: synthetic\n"
                       "    levels: {red: {raise: 20, clear: 10}}\n",
                       uplink_keys),
        0);
}

/* The payload of the first recorded message on topic whose line holds needle, waiting for
 * it (bounded). Caller deletes. */
static cJSON *message(h_bed *e, const char *topic, const char *needle)
{
    char want[512];
    snprintf(want, sizeof(want), "%s %s", topic, needle);
    if (!h_log_wait(&e->sub, needle, 15000) || !h_log_wait(&e->sub, topic, 1000)) {
        h_dump_log(&e->sub);
        h_dump_log(&e->gw);
        fail_msg("no message on %s with %s", topic, needle);
    }
    char *log = h_slurp(e->sub.log);
    assert_non_null(log);
    cJSON *found = NULL;
    for (char *line = strtok(log, "\n"); line && !found; line = strtok(NULL, "\n")) {
        size_t tl = strlen(topic);
        if (!strncmp(line, topic, tl) && line[tl] == ' ' && strstr(line, needle))
            found = cJSON_Parse(line + tl + 1);
    }
    free(log);
    if (!found)
        fail_msg("message on %s with %s does not parse", topic, needle);
    return found;
}

static const char *str(const cJSON *o, const char *path)
{
    /* "a.b.0.c": members by name, array elements by index. */
    char buf[256], *save = NULL;
    snprintf(buf, sizeof(buf), "%s", path);
    const cJSON *at = o;
    for (char *k = strtok_r(buf, ".", &save); k && at; k = strtok_r(NULL, ".", &save))
        at = cJSON_IsArray(at) ? cJSON_GetArrayItem(at, atoi(k))
                               : cJSON_GetObjectItemCaseSensitive(at, k);
    static char out[4][256];
    static int slot;
    char *r = out[slot++ % 4];
    if (cJSON_IsString(at))
        snprintf(r, 256, "%s", at->valuestring);
    else if (cJSON_IsNumber(at))
        snprintf(r, 256, "%.17g", at->valuedouble);
    else if (cJSON_IsBool(at))
        snprintf(r, 256, "%s", cJSON_IsTrue(at) ? "true" : "false");
    else
        snprintf(r, 256, "<%s>", at ? "other" : "missing");
    return r;
}

static void publish(h_bed *e, const char *topic, const char *payload)
{
    assert_int_equal(h_publish(e->port, topic, payload, strlen(payload), NULL), 0);
}

/* HMAC-SHA256 hex by the openssl command line, independent of the gateway's code. */
static void openssl_hmac(const char *key, const char *msg, char out[65])
{
    char cmd[1024], line[256];
    snprintf(cmd, sizeof(cmd), "printf '%%s' '%s' | openssl dgst -sha256 -hmac '%s'", msg, key);
    assert_int_equal(h_run(cmd, line, sizeof(line)), 0);
    const char *eq = strstr(line, "= ");
    assert_non_null(eq);
    snprintf(out, 65, "%s", eq + 2);
}

/* The uplink keys of a format, the secret in a file. */
static void keys(char *out, size_t cap, const char *format_keys, const char *secret)
{
    char path[512];
    snprintf(path, sizeof(path), "%s", h_write_file("secret.txt", secret));
    snprintf(out, cap, "%s  password_file: %s\n", format_keys, path);
}

static void test_thingsboard(void **state)
{
    h_bed *e = *state;
    char k[2048];
    start_broker(e, NULL);
    start_sub(e);
    keys(k, sizeof(k), "  format: thingsboard\n", "A1_TEST_TOKEN\n");
    start_gateway(e, k);
    /* The access token is the MQTT user name (broker log: "... as gw-test (..., u'...')"). */
    assert_true(h_log_wait(&e->broker, "u'A1_TEST_TOKEN'", 10000));

    cJSON *m = message(e, "v1/gateway/connect", "\"device\":\"syn-1\"");
    assert_string_equal(str(m, "type"), "loadgen");
    cJSON_Delete(m);
    m = message(e, "v1/gateway/telemetry", "\"synthetic\":");
    assert_true(atof(str(m, "syn-1.0.ts")) > 1.7e12);
    assert_string_not_equal(str(m, "syn-1.0.values.synthetic"), "<missing>");
    cJSON_Delete(m);
    m = message(e, "v1/gateway/telemetry", "\"state\":\"raised\"");
    assert_string_equal(str(m, "syn-1.0.values.alarm.rule"), "high");
    assert_string_equal(str(m, "syn-1.0.values.alarm.device"), "syn-1");
    assert_string_equal(str(m, "syn-1.0.values.alarm.level_name"), "red");
    char alarm[128], rpc[512];
    snprintf(alarm, sizeof(alarm), "%s", str(m, "syn-1.0.values.alarm.alarm"));
    cJSON_Delete(m);

    /* A two-way RPC from the platform: answered on v1/gateway/rpc with its id and the
     * command's final outcome (gateway/commands.c ran it); the ack reaches the alarm, which
     * comes back acknowledged. */
    snprintf(rpc, sizeof(rpc),
             "{\"device\":\"syn-1\",\"data\":{\"id\":7,\"method\":\"ack\",\"params\":{\"alarm\":"
             "\"%s\",\"by\":\"op-7\"}}}",
             alarm);
    publish(e, "v1/gateway/rpc", rpc);
    m = message(e, "v1/gateway/rpc", "\"id\":7,\"data\"");
    assert_string_equal(str(m, "device"), "syn-1");
    assert_string_equal(str(m, "data.status"), "done");
    assert_string_equal(str(m, "data.success"), "true");
    cJSON_Delete(m);
    /* A command this destination may not send (uplink.commands): refused, with the reason. */
    publish(e, "v1/gateway/rpc",
            "{\"device\":\"syn-1\",\"data\":{\"id\":8,\"method\":\"rule_set\",\"params\":"
            "{\"rule\":\"high\",\"levels\":{\"red\":{\"raise\":1}}}}}");
    m = message(e, "v1/gateway/rpc", "\"id\":8,\"data\"");
    assert_string_equal(str(m, "data.status"), "refused");
    assert_string_equal(str(m, "data.success"), "false");
    assert_string_equal(str(m, "data.reason"), "not authorized");
    cJSON_Delete(m);
    m = message(e, "v1/gateway/telemetry", "\"state\":\"acknowledged\"");
    assert_string_equal(str(m, "syn-1.0.values.alarm.alarm"), alarm);
    cJSON_Delete(m);
    /* Nothing of ours on the native topics, and the token in no log line of the gateway. */
    assert_false(h_log_contains(&e->sub, "iot/gw-test/"));
    assert_false(h_log_contains(&e->gw, "A1_TEST_TOKEN"));
}

static void test_huawei_iotda(void **state)
{
    h_bed *e = *state;
    const char *dev = "5e06bfee334dd4f33759f5b3_gw01";
    char hour[16], pass[65], cmd[1024], out[256], pwfile[512], k[2048];
    /* The broker holds the password the platform expects for this hour, computed with the
     * openssl command line: the connection succeeds only with a correctly signed password.
     * (Across an hour boundary the test tries again once.) */
    for (int attempt = 0; attempt < 2; attempt++) {
        time_t now = time(NULL);
        strftime(hour, sizeof(hour), "%Y%m%d%H", gmtime(&now));
        openssl_hmac(hour, "device-secret-8", pass);
        snprintf(pwfile, sizeof(pwfile), "%s", h_write_file("passwd", ""));
        snprintf(cmd, sizeof(cmd), "mosquitto_passwd -b %s %s %s 2>&1", pwfile, dev, pass);
        assert_int_equal(h_run(cmd, out, sizeof(out)), 0);
        start_broker(e, pwfile);
        start_sub(e);
        char fk[512];
        snprintf(fk, sizeof(fk),
                 "  format: huawei-iotda\n  platform_device: %s\n  sub_product_key: prod01\n", dev);
        keys(k, sizeof(k), fk, "device-secret-8\n");
        start_gateway(e, k);
        char cid[128];
        snprintf(cid, sizeof(cid), "as %s_0_0_%s", dev, hour);
        if (h_log_wait(&e->broker, cid, 10000))
            break;
        assert_int_equal(attempt, 0);
        assert_int_equal(h_stop(&e->gw), 0);
        h_stop(&e->sub);
        h_stop(&e->broker);
    }
    assert_true(h_log_wait(&e->gw, "connected to", 10000));

    char t_events[256], t_report[256], t_cmd[256], t_resp[256];
    snprintf(t_events, sizeof(t_events), "$oc/devices/%s/sys/events/up", dev);
    snprintf(t_report, sizeof(t_report), "$oc/devices/%s/sys/gateway/sub_devices/properties/report",
             dev);
    cJSON *m = message(e, t_events, "add_sub_device_request");
    assert_string_equal(str(m, "services.0.service_id"), "$sub_device_manager");
    assert_string_equal(str(m, "services.0.paras.devices.0.node_id"), "syn-1");
    assert_string_equal(str(m, "services.0.paras.devices.0.product_id"), "prod01");
    cJSON_Delete(m);
    m = message(e, t_events, "sub_device_update_status");
    assert_string_equal(str(m, "services.0.paras.device_statuses.0.device_id"), "prod01_syn-1");
    assert_string_equal(str(m, "services.0.paras.device_statuses.0.status"), "ONLINE");
    cJSON_Delete(m);
    m = message(e, t_report, "\"synthetic\":");
    assert_string_equal(str(m, "devices.0.device_id"), "prod01_syn-1");
    assert_string_equal(str(m, "devices.0.services.0.service_id"), "data");
    assert_int_equal(strlen(str(m, "devices.0.services.0.event_time")), 16); /* 20261203T...Z */
    cJSON_Delete(m);
    m = message(e, t_report, "\"state\":\"raised\"");
    assert_string_equal(str(m, "devices.0.services.0.service_id"), "alarm");
    assert_string_equal(str(m, "devices.0.services.0.properties.rule"), "high");
    char alarm[128], payload[512];
    snprintf(alarm, sizeof(alarm), "%s", str(m, "devices.0.services.0.properties.alarm"));
    cJSON_Delete(m);

    snprintf(t_cmd, sizeof(t_cmd), "$oc/devices/%s/sys/commands/request_id=req-41", dev);
    snprintf(t_resp, sizeof(t_resp), "$oc/devices/%s/sys/commands/response/request_id=req-41", dev);
    snprintf(payload, sizeof(payload),
             "{\"object_device_id\":\"prod01_syn-1\",\"service_id\":\"alarm\",\"command_name\":"
             "\"ack\",\"paras\":{\"alarm\":\"%s\",\"by\":\"op-41\"}}",
             alarm);
    publish(e, t_cmd, payload);
    m = message(e, t_resp, "\"result_code\":0");
    assert_string_equal(str(m, "response_name"), "ack");
    assert_string_equal(str(m, "paras.status"), "done");
    cJSON_Delete(m);
    m = message(e, t_report, "\"state\":\"acknowledged\"");
    assert_string_equal(str(m, "devices.0.services.0.properties.alarm"), alarm);
    cJSON_Delete(m);
    assert_false(h_log_contains(&e->gw, "device-secret-8"));
    assert_false(h_log_contains(&e->gw, pass));
}

static void test_aliyun_alink(void **state)
{
    h_bed *e = *state;
    const char *pk = "a1X2bEnP82z", *spk = "a1SubProd01";
    char k[2048], fk[1024], sec[512];
    start_broker(e, NULL);
    start_sub(e);
    snprintf(sec, sizeof(sec), "%s",
             h_write_file("subs.txt", "# device secret\nsyn-1 subSecret1\n"));
    snprintf(fk, sizeof(fk),
             "  format: aliyun-alink\n  platform_device: gw01\n  product_key: %s\n"
             "  sub_product_key: %s\n  sub_secrets_file: %s\n",
             pk, spk, sec);
    keys(k, sizeof(k), fk, "ga7XA6KdlEeiPXQPpRbAjOZXwG8y0000\n");
    start_gateway(e, k);
    /* The signed identity: client id with its parameters, user deviceName&productKey. */
    assert_true(h_log_wait(
        &e->broker, "as a1X2bEnP82z.gw01|securemode=3,signmethod=hmacsha256,timestamp=", 10000));
    assert_true(h_log_contains(&e->broker, "u'gw01&a1X2bEnP82z'"));

    char topic[256], content[512], mac[65];
    snprintf(topic, sizeof(topic), "/sys/%s/gw01/thing/topo/add", pk);
    cJSON *m = message(e, topic, "thing.topo.add");
    assert_string_equal(str(m, "params.0.deviceName"), "syn-1");
    assert_string_equal(str(m, "params.0.productKey"), spk);
    assert_string_equal(str(m, "params.0.signmethod"), "hmacSha256");
    /* The sub-device's sign, recomputed by openssl from the fields sent. */
    snprintf(content, sizeof(content), "clientId%sdeviceNamesyn-1productKey%stimestamp%s",
             str(m, "params.0.clientId"), spk, str(m, "params.0.timestamp"));
    openssl_hmac("subSecret1", content, mac);
    assert_string_equal(str(m, "params.0.sign"), mac);
    cJSON_Delete(m);
    snprintf(topic, sizeof(topic), "/ext/session/%s/gw01/combine/login", pk);
    m = message(e, topic, "combine.login");
    assert_string_equal(str(m, "params.deviceName"), "syn-1");
    assert_string_equal(str(m, "params.sign"), mac);
    cJSON_Delete(m);
    snprintf(topic, sizeof(topic), "/sys/%s/syn-1/thing/event/property/post", spk);
    m = message(e, topic, "\"synthetic\":");
    assert_string_equal(str(m, "method"), "thing.event.property.post");
    assert_string_equal(str(m, "version"), "1.0");
    assert_true(atof(str(m, "params.synthetic.time")) > 1.7e12);
    cJSON_Delete(m);
    snprintf(topic, sizeof(topic), "/sys/%s/syn-1/thing/event/alarm/post", spk);
    m = message(e, topic, "\"state\":\"raised\"");
    assert_string_equal(str(m, "method"), "thing.event.alarm.post");
    assert_string_equal(str(m, "params.value.rule"), "high");
    char alarm[128], payload[512];
    snprintf(alarm, sizeof(alarm), "%s", str(m, "params.value.alarm"));
    cJSON_Delete(m);

    snprintf(topic, sizeof(topic), "/sys/%s/syn-1/thing/service/ack", spk);
    snprintf(payload, sizeof(payload),
             "{\"id\":\"77\",\"version\":\"1.0\",\"params\":{\"alarm\":\"%s\",\"by\":\"op-77\"},"
             "\"method\":\"thing.service.ack\"}",
             alarm);
    publish(e, topic, payload);
    snprintf(topic, sizeof(topic), "/sys/%s/syn-1/thing/service/ack_reply", spk);
    m = message(e, topic, "\"id\":\"77\"");
    assert_string_equal(str(m, "code"), "200");
    assert_string_equal(str(m, "data.status"), "done");
    cJSON_Delete(m);
    snprintf(topic, sizeof(topic), "/sys/%s/syn-1/thing/event/alarm/post", spk);
    m = message(e, topic, "\"state\":\"acknowledged\"");
    assert_string_equal(str(m, "params.value.alarm"), alarm);
    cJSON_Delete(m);
    assert_false(h_log_contains(&e->gw, "ga7XA6KdlEeiPXQPpRbAjOZXwG8y0000"));
    assert_false(h_log_contains(&e->gw, "subSecret1"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_thingsboard, setup, h_bed_teardown),
        cmocka_unit_test_setup_teardown(test_huawei_iotda, setup, h_bed_teardown),
        cmocka_unit_test_setup_teardown(test_aliyun_alink, setup, h_bed_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
