/* gateway/platform*.c: each destination format against fixtures written from the vendors'
 * public docs (tests/vectors/platforms/<format>.json; each names its sources). For every case
 * the messages a format produces are compared with the fixture's topic by topic and field by
 * field: rows of outbox items, device births, platform commands (translated to ours) and our
 * replies (translated back). The signed MQTT credentials are checked against known answers:
 * IoTDA's documented vector, and HMACs computed here by the openssl command line. */
#include "gateway/platform.h"

#include "base/model.h"

#include <cjson/cJSON.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static cJSON *load(const char *name)
{
    char path[256];
    snprintf(path, sizeof(path), "tests/vectors/platforms/%s.json", name);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *j = cJSON_Parse(buf);
    assert_non_null(j);
    return j;
}

/* Compares want with got field by field; on a difference prints the path and fails. */
static void same(const cJSON *want, const cJSON *got, const char *path)
{
    char sub[512];
    if (!got) {
        print_error("%s: missing (want %s)\n", path, cJSON_PrintUnformatted(want));
        fail();
    }
    if (cJSON_IsObject(want)) {
        assert_true(cJSON_IsObject(got));
        const cJSON *w;
        cJSON_ArrayForEach(w, want)
        {
            snprintf(sub, sizeof(sub), "%s.%s", path, w->string);
            same(w, cJSON_GetObjectItemCaseSensitive(got, w->string), sub);
        }
        const cJSON *g;
        cJSON_ArrayForEach(g, got)
        {
            if (!cJSON_GetObjectItemCaseSensitive(want, g->string)) {
                print_error("%s.%s: not in the fixture\n", path, g->string);
                fail();
            }
        }
        return;
    }
    if (cJSON_IsArray(want)) {
        assert_true(cJSON_IsArray(got));
        if (cJSON_GetArraySize(want) != cJSON_GetArraySize(got)) {
            print_error("%s: %d elements, want %d\n", path, cJSON_GetArraySize(got),
                        cJSON_GetArraySize(want));
            fail();
        }
        for (int i = 0; i < cJSON_GetArraySize(want); i++) {
            snprintf(sub, sizeof(sub), "%s[%d]", path, i);
            same(cJSON_GetArrayItem(want, i), cJSON_GetArrayItem(got, i), sub);
        }
        return;
    }
    if (!cJSON_Compare(want, got, 1)) {
        print_error("%s: got %s, want %s\n", path, cJSON_PrintUnformatted(got),
                    cJSON_PrintUnformatted(want));
        fail();
    }
}

static void same_messages(const cJSON *want, const gw_pout *out, const char *name)
{
    char path[128];
    if (cJSON_GetArraySize(want) != out->n) {
        for (int i = 0; i < out->n; i++)
            print_error("  got %s %.*s\n", out->m[i].topic, (int)out->m[i].len, out->m[i].payload);
        print_error("%s: %d messages, want %d\n", name, out->n, cJSON_GetArraySize(want));
        fail();
    }
    for (int i = 0; i < out->n; i++) {
        const cJSON *w = cJSON_GetArrayItem(want, i);
        snprintf(path, sizeof(path), "%s[%d]", name, i);
        if (strcmp(out->m[i].topic, cJSON_GetStringValue(cJSON_GetObjectItem(w, "topic")))) {
            print_error("%s: topic %s, want %s\n", path, out->m[i].topic,
                        cJSON_GetStringValue(cJSON_GetObjectItem(w, "topic")));
            fail();
        }
        cJSON *got = cJSON_ParseWithLength(out->m[i].payload, out->m[i].len);
        assert_non_null(got);
        same(cJSON_GetObjectItem(w, "payload"), got, path);
        cJSON_Delete(got);
    }
}

static char secrets_path[64];

/* The format a fixture configures (its sub-device secrets in a temporary file). */
static gw_platform *make(const cJSON *fx)
{
    const cJSON *c = cJSON_GetObjectItem(fx, "config");
    gw_uplink_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    const char *fmt = cJSON_GetStringValue(cJSON_GetObjectItem(c, "format"));
    for (int i = 0; gw_platform_names[i]; i++)
        if (!strcmp(gw_platform_names[i], fmt))
            cfg.format = i;
    struct {
        const char *key;
        char *dst;
        size_t cap;
    } keys[] = {{"platform_device", cfg.platform_device, sizeof(cfg.platform_device)},
                {"product_key", cfg.product_key, sizeof(cfg.product_key)},
                {"sub_product_key", cfg.sub_product_key, sizeof(cfg.sub_product_key)},
                {"service_id", cfg.service_id, sizeof(cfg.service_id)},
                {"uri", cfg.uri, sizeof(cfg.uri)}};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const char *v = cJSON_GetStringValue(cJSON_GetObjectItem(c, keys[i].key));
        if (v)
            gw_strlcpy(keys[i].dst, v, keys[i].cap);
    }
    const cJSON *subs = cJSON_GetObjectItem(c, "sub_secrets");
    if (subs) {
        snprintf(secrets_path, sizeof(secrets_path), "/tmp/test_platform.%d", (int)getpid());
        FILE *f = fopen(secrets_path, "w");
        assert_non_null(f);
        fprintf(f, "# device DeviceSecret\n");
        const cJSON *s;
        cJSON_ArrayForEach(s, subs)
        {
            fprintf(f, "%s %s\n", s->string, s->valuestring);
        }
        fclose(f);
        gw_strlcpy(cfg.sub_secrets_file, secrets_path, sizeof(cfg.sub_secrets_file));
    }
    char err[256];
    gw_platform *p =
        gw_platform_new(&cfg, cJSON_GetStringValue(cJSON_GetObjectItem(c, "gw")),
                        cJSON_GetStringValue(cJSON_GetObjectItem(c, "secret")), err, sizeof(err));
    if (secrets_path[0])
        unlink(secrets_path);
    if (!p)
        print_error("%s\n", err);
    assert_non_null(p);
    return p;
}

/* The rows of a case as the outbox holds them: items joined with ','. */
static void rows_of(const cJSON *rows, char **row, size_t *len, size_t *n)
{
    *n = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, rows)
    {
        size_t cap = 4096, at = 0;
        char *s = malloc(cap);
        const cJSON *it;
        cJSON_ArrayForEach(it, r)
        {
            char *j = cJSON_PrintUnformatted(it);
            at += (size_t)snprintf(s + at, cap - at, "%s%s", at ? "," : "", j);
            free(j);
        }
        row[*n] = s;
        len[(*n)++] = at;
    }
}

static int kind_of(const char *k)
{
    static const char *const kinds[] = {"readings", "events", "alarms", "forecasts"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(kinds[i], k))
            return i;
    fail_msg("kind %s", k);
    return -1;
}

static void run_case(const cJSON *fx, const cJSON *cs)
{
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(cs, "name"));
    gw_platform *p = make(fx);
    gw_pout out = {0};
    const cJSON *want = cJSON_GetObjectItem(cs, "messages");
    if (cJSON_GetObjectItem(cs, "rows")) {
        char *row[16];
        size_t len[16], n;
        rows_of(cJSON_GetObjectItem(cs, "rows"), row, len, &n);
        int kind = kind_of(cJSON_GetStringValue(cJSON_GetObjectItem(cs, "kind")));
        /* As the uplink does: a format may take fewer rows than offered; the rest follow. */
        for (size_t at = 0; at < n;) {
            int used = gw_platform_batch(p, kind, (const char *const *)row + at, len + at, n - at,
                                         1, 1, &out);
            assert_true(used >= 1);
            at += (size_t)used;
        }
        same_messages(want, &out, name);
        for (size_t i = 0; i < n; i++)
            free(row[i]);
    } else if (cJSON_GetObjectItem(cs, "birth")) {
        char *b = cJSON_PrintUnformatted(cJSON_GetObjectItem(cs, "birth"));
        assert_true(gw_platform_device(p, b, strlen(b), &out) >= 0);
        free(b);
        same_messages(want, &out, name);
    } else {
        const cJSON *c = cJSON_GetObjectItem(cs, "command");
        char *payload = cJSON_PrintUnformatted(cJSON_GetObjectItem(c, "payload"));
        gw_pcmd cmd;
        int rc = gw_platform_command(p, cJSON_GetStringValue(cJSON_GetObjectItem(c, "topic")),
                                     payload, strlen(payload), &cmd);
        free(payload);
        if (cJSON_IsTrue(cJSON_GetObjectItem(cs, "not_command"))) {
            assert_int_equal(rc, 0);
        } else if (cJSON_IsTrue(cJSON_GetObjectItem(cs, "malformed"))) {
            assert_true(rc < 0);
        } else {
            assert_int_equal(rc, 1);
            const cJSON *nat = cJSON_GetObjectItem(cs, "native");
            assert_string_equal(cmd.name, cJSON_GetStringValue(cJSON_GetObjectItem(nat, "name")));
            cJSON *got = cJSON_ParseWithLength(cmd.payload, cmd.len);
            same(cJSON_GetObjectItem(nat, "payload"), got, name);
            cJSON_Delete(got);
            /* Our reply: "accepted" first is held back (the outcome follows)... */
            char accepted[512];
            snprintf(accepted, sizeof(accepted),
                     "{\"v\":1,\"id\":\"%s\",\"cmd\":\"%s\",\"status\":\"accepted\"}", cmd.corr,
                     cmd.name);
            assert_int_equal(gw_platform_reply(p, accepted, strlen(accepted), 0, &out), 0);
            assert_int_equal(out.n, 0);
            /* ...the outcome goes back once, in the platform's words. */
            cJSON *reply = cJSON_Duplicate(cJSON_GetObjectItem(cs, "reply"), 1);
            cJSON_AddStringToObject(reply, "id", cmd.corr);
            char *r = cJSON_PrintUnformatted(reply);
            assert_int_equal(gw_platform_reply(p, r, strlen(r), 0, &out), 1);
            same_messages(want, &out, name);
            gw_pout_clear(&out);
            assert_int_equal(gw_platform_reply(p, r, strlen(r), 0, &out), 0); /* only once */
            free(r);
            cJSON_Delete(reply);
            gw_pcmd_free(&cmd);
        }
    }
    gw_pout_free(&out);
    gw_platform_free(p);
}

static void run_fixture(const char *file)
{
    cJSON *fx = load(file);
    gw_platform *p = make(fx);
    const gw_platform_ops *ops = gw_platform_ops_of(p);
    /* Credentials. */
    const cJSON *cr = cJSON_GetObjectItem(fx, "credentials");
    char cid[256], user[128], pass[256];
    assert_int_equal(
        ops->credentials(p, (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(cr, "now_ms")), cid,
                         sizeof(cid), user, sizeof(user), pass, sizeof(pass)),
        0);
    assert_string_equal(cid, cJSON_GetStringValue(cJSON_GetObjectItem(cr, "client_id")));
    assert_string_equal(user, cJSON_GetStringValue(cJSON_GetObjectItem(cr, "username")));
    assert_string_equal(pass, cJSON_GetStringValue(cJSON_GetObjectItem(cr, "password")));
    /* Subscriptions. */
    char subs[GW_PF_MAX_SUBS][GW_PF_TOPIC_MAX];
    const cJSON *ws = cJSON_GetObjectItem(fx, "subscriptions");
    int n = ops->subscriptions(p, subs);
    assert_int_equal(n, cJSON_GetArraySize(ws));
    for (int i = 0; i < n; i++)
        assert_string_equal(subs[i], cJSON_GetStringValue(cJSON_GetArrayItem(ws, i)));
    gw_platform_free(p);
    const cJSON *cs;
    cJSON_ArrayForEach(cs, cJSON_GetObjectItem(fx, "cases"))
    {
        run_case(fx, cs);
    }
    cJSON_Delete(fx);
}

static void thingsboard(void **state)
{
    run_fixture("thingsboard");
}

static void huawei_iotda(void **state)
{
    run_fixture("huawei-iotda");
}

static void aliyun_alink(void **state)
{
    run_fixture("aliyun-alink");
}

/* The HMAC against the openssl command line, on inputs that are not in any fixture. */
static void hmac_matches_openssl_cli(void **state)
{
    const char *cases[][2] = {{"2026120311", "s3cr3t-device-secret"},
                              {"k", ""},
                              {"a key longer than the SHA-256 block of sixty-four bytes, "
                               "which HMAC hashes first",
                               "clientIdxdeviceNameyproductKeyztimestamp1"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char cmd[512], line[256], mine[65];
        snprintf(cmd, sizeof(cmd), "printf '%%s' '%s' | openssl dgst -sha256 -hmac '%s'",
                 cases[i][1], cases[i][0]);
        FILE *f = popen(cmd, "r");
        assert_non_null(f);
        assert_non_null(fgets(line, sizeof(line), f));
        pclose(f);
        const char *eq = strstr(line, "= ");
        assert_non_null(eq);
        assert_int_equal(gw_platform_hmac_sha256_hex(cases[i][0], cases[i][1], mine), 0);
        assert_memory_equal(mine, eq + 2, 64);
    }
}

/* Huawei's clientId carries the UTC hour; the password changes with it. */
static void huawei_hour_changes_password(void **state)
{
    cJSON *fx = load("huawei-iotda");
    gw_platform *p = make(fx);
    char cid[256], user[128], a[256], b[256];
    int64_t t = 1744594200000; /* 2025-04-14T01:30Z */
    assert_int_equal(
        gw_platform_huawei.credentials(p, t, cid, sizeof cid, user, sizeof user, a, sizeof a), 0);
    assert_int_equal(gw_platform_huawei.credentials(p, t + 3600000, cid, sizeof cid, user,
                                                    sizeof user, b, sizeof b),
                     0);
    assert_non_null(strstr(cid, "_0_0_2025041402"));
    assert_string_not_equal(a, b);
    gw_platform_free(p);
    cJSON_Delete(fx);
}

/* Bad rows are counted and consumed, never sent and never a crash; a row holding several
 * devices' items is one message where the platform allows it. */
static void bad_rows_counted(void **state)
{
    cJSON *fx = load("thingsboard");
    gw_platform *p = make(fx);
    gw_pout out = {0};
    const char *rows[] = {"{\"device\":", "{\"metric\":\"x\",\"value\":1}", "[1,2]"};
    size_t len[] = {strlen(rows[0]), strlen(rows[1]), strlen(rows[2])};
    int used = gw_platform_batch(p, GW_PK_READINGS, rows, len, 3, 1, 3, &out);
    assert_int_equal(used, 3);
    assert_int_equal(out.n, 0);
    gw_platform_stats st;
    gw_platform_get_stats(p, &st);
    assert_int_equal(st.bad_items, 3); /* the broken row, the item without device, the array */
    gw_pout_free(&out);
    gw_platform_free(p);
    cJSON_Delete(fx);
}

/* IoTDA takes at most 50 sub-devices per batch report: the 51st waits for the next one. */
static void huawei_fifty_devices(void **state)
{
    cJSON *fx = load("huawei-iotda");
    gw_platform *p = make(fx);
    gw_pout out = {0};
    char *row[60];
    size_t len[60];
    for (int i = 0; i < 60; i++) {
        row[i] = malloc(256);
        len[i] = (size_t)snprintf(row[i], 256,
                                  "{\"device\":\"d%02d\",\"metric\":\"m\",\"value\":%d,"
                                  "\"obs\":\"2026-11-23T15:38:24.662Z\"}",
                                  i, i);
    }
    int used = gw_platform_batch(p, GW_PK_READINGS, (const char *const *)row, len, 60, 1, 60, &out);
    assert_int_equal(used, 50);
    cJSON *last = cJSON_ParseWithLength(out.m[out.n - 1].payload, out.m[out.n - 1].len);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(last, "devices")), 50);
    cJSON_Delete(last);
    for (int i = 0; i < 60; i++)
        free(row[i]);
    gw_pout_free(&out);
    gw_platform_free(p);
    cJSON_Delete(fx);
}

/* A device is announced once per session, and again after a reconnect. */
static void announced_once_per_session(void **state)
{
    cJSON *fx = load("thingsboard");
    gw_platform *p = make(fx);
    gw_pout out = {0};
    const char *row = "{\"device\":\"a\",\"metric\":\"m\",\"value\":1,\"obs\":\"2026-11-23T15:38:"
                      "24.662Z\"}";
    size_t len = strlen(row);
    gw_platform_batch(p, GW_PK_READINGS, &row, &len, 1, 1, 1, &out);
    assert_int_equal(out.n, 2); /* connect, telemetry */
    gw_pout_clear(&out);
    gw_platform_batch(p, GW_PK_READINGS, &row, &len, 1, 2, 2, &out);
    assert_int_equal(out.n, 1);
    gw_pout_clear(&out);
    gw_platform_session(p);
    gw_platform_batch(p, GW_PK_READINGS, &row, &len, 1, 3, 3, &out);
    assert_int_equal(out.n, 2);
    gw_pout_free(&out);
    gw_platform_free(p);
    cJSON_Delete(fx);
}

/* Alink cannot sign for a sub-device whose secret it lacks: counted, nothing sent for it. */
static void alink_missing_secret_counted(void **state)
{
    cJSON *fx = load("aliyun-alink");
    gw_platform *p = make(fx);
    gw_pout out = {0};
    const char *birth = "{\"device\":\"unknown-7\",\"online\":true}";
    assert_int_equal(gw_platform_device(p, birth, strlen(birth), &out), 0);
    assert_int_equal(out.n, 0);
    gw_platform_stats st;
    gw_platform_get_stats(p, &st);
    assert_int_equal(st.unregistered, 1);
    gw_pout_free(&out);
    gw_platform_free(p);
    cJSON_Delete(fx);
}

/* A request whose response topic would not fit (an IoTDA request id, an Alink device
 * name near its bound under a long product key) is a counted drop: its response would go
 * to a truncated topic nobody waits on (found by fuzz_platform_cmd). */
static void unaddressable_requests_counted(void **state)
{
    char id[241], dn[128], pk[64], topic[600];
    memset(id, 'r', sizeof(id) - 1);
    id[sizeof(id) - 1] = 0;
    memset(dn, 'd', sizeof(dn) - 1);
    dn[sizeof(dn) - 1] = 0;
    memset(pk, 'k', sizeof(pk) - 1);
    pk[sizeof(pk) - 1] = 0;
    static const char *const formats[] = {"huawei-iotda", "aliyun-alink"};
    for (int f = 0; f < 2; f++) {
        cJSON *fx = load(formats[f]);
        cJSON *c = cJSON_GetObjectItem(fx, "config");
        const char *payload;
        if (f == 0) {
            snprintf(topic, sizeof(topic), "$oc/devices/%s/sys/commands/request_id=%s",
                     cJSON_GetStringValue(cJSON_GetObjectItem(c, "platform_device")), id);
            payload = "{\"command_name\":\"ack\",\"paras\":{\"alarm\":\"x\"}}";
        } else {
            cJSON_ReplaceItemInObject(c, "sub_product_key", cJSON_CreateString(pk));
            /* 251 bytes: the reply topic (+ "_reply") would be 257 */
            snprintf(topic, sizeof(topic), "/sys/%s/%s/thing/service/%.40s", pk, dn, id);
            payload = "{\"id\":\"1\",\"params\":{\"alarm\":\"x\"}}";
        }
        gw_platform *p = make(fx);
        gw_pcmd cmd;
        int rc = gw_platform_command(p, topic, payload, strlen(payload), &cmd);
        if (rc == 1) {
            char reply[256];
            snprintf(reply, sizeof(reply), "{\"v\":1,\"id\":\"%s\",\"status\":\"done\"}", cmd.corr);
            gw_pout out = {0};
            gw_platform_reply(p, reply, strlen(reply), 1, &out);
            fail_msg("%s: a request on a %zu-byte topic answered on %zu bytes: %.300s", formats[f],
                     strlen(topic), out.n ? strlen(out.m[0].topic) : 0,
                     out.n ? out.m[0].topic : "(nothing)");
        }
        assert_true(rc < 0);
        gw_platform_stats st;
        gw_platform_get_stats(p, &st);
        assert_int_equal(st.commands_bad, 1);
        gw_platform_free(p);
        cJSON_Delete(fx);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(thingsboard),
        cmocka_unit_test(huawei_iotda),
        cmocka_unit_test(aliyun_alink),
        cmocka_unit_test(hmac_matches_openssl_cli),
        cmocka_unit_test(huawei_hour_changes_password),
        cmocka_unit_test(bad_rows_counted),
        cmocka_unit_test(huawei_fifty_devices),
        cmocka_unit_test(announced_once_per_session),
        cmocka_unit_test(alink_missing_secret_counted),
        cmocka_unit_test(unaddressable_requests_counted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
