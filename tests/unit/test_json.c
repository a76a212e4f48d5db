/* base/json.c: the uplink JSON writer. Escaping, UTF-8 (valid passes through,
 * invalid becomes U+FFFD), numbers, times and the buffer bound. Every item it writes is
 * parsed back with cJSON: what leaves the gateway is JSON. */
#include "base/json.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

/* Writes s as a JSON string into out and returns out. */
static const char *str_of(const char *s, char *out, size_t cap)
{
    gw_jbuf b;
    gw_jbuf_init(&b, out, cap);
    gw_json_str(&b, s);
    assert_int_equal(b.overflow, 0);
    return out;
}

static void escapes(void **state)
{
    (void)state;
    char out[128];
    assert_string_equal(str_of("plain", out, sizeof out), "\"plain\"");
    assert_string_equal(str_of("", out, sizeof out), "\"\"");
    assert_string_equal(str_of("a\"b\\c", out, sizeof out), "\"a\\\"b\\\\c\"");
    assert_string_equal(str_of("t\tn\nr\r\x01\x1f", out, sizeof out),
                        "\"t\\u0009n\\u000ar\\u000d\\u0001\\u001f\"");
    assert_string_equal(str_of("/\x7f", out, sizeof out), "\"/\x7f\"");
}

static void utf8_valid_passes(void **state)
{
    (void)state;
    char out[128];
    /* 2-, 3- and 4-byte sequences, at the edges of their ranges. */
    const char *ok[] = {"\xC2\x80",
                        "\xDF\xBF",
                        "\xE0\xA0\x80",
                        "\xED\x9F\xBF",
                        "\xEE\x80\x80",
                        "\xEF\xBF\xBF",
                        "\xF0\x90\x80\x80",
                        "\xF4\x8F\xBF\xBF",
                        "\xE6\xB0\xB4\xE4\xBD\x8D m"}; /* "water level m" in Chinese */
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char want[64];
        snprintf(want, sizeof want, "\"%s\"", ok[i]);
        assert_string_equal(str_of(ok[i], out, sizeof out), want);
    }
}

/* A stray byte from a device must not make the whole item invalid JSON. */
static void utf8_invalid_replaced(void **state)
{
    (void)state;
    char out[128];
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"a\x80z", "\"a\xEF\xBF\xBDz\""},                             /* lone continuation */
        {"\xC0\xAF", "\"\xEF\xBF\xBD\xEF\xBF\xBD\""},                 /* overlong '/' */
        {"\xC3", "\"\xEF\xBF\xBD\""},                                 /* truncated at the end */
        {"\xE6\xB0z", "\"\xEF\xBF\xBD\xEF\xBF\xBDz\""},               /* truncated 3-byte */
        {"\xED\xA0\x80", "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\""}, /* surrogate D800 */
        {"\xF4\x90\x80\x80", "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\""}, /* >10FFFF */
        {"\xFF", "\"\xEF\xBF\xBD\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        str_of(cases[i].in, out, sizeof out);
        if (strcmp(out, cases[i].want))
            fail_msg("case %zu: got %s", i, out);
    }
}

static void numbers(void **state)
{
    (void)state;
    char out[64];
    gw_jbuf b;
    static const struct {
        double v;
        const char *want;
    } cases[] = {{0, "0"},          {-1.5, "-1.5"},     {12.345, "12.345"},
                 {1e300, "1e+300"}, {0.1 + 0.2, "0.3"}, {123456789012345.0, "123456789012345"},
                 {NAN, "null"},     {INFINITY, "null"}, {-INFINITY, "null"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gw_jbuf_init(&b, out, sizeof out);
        gw_json_num(&b, cases[i].v);
        assert_string_equal(out, cases[i].want);
    }
}

static void times(void **state)
{
    (void)state;
    char out[64];
    gw_jbuf b;
    gw_jbuf_init(&b, out, sizeof out);
    gw_json_time(&b, 0);
    assert_string_equal(out, "\"1970-01-01T00:00:00.000Z\"");
    gw_jbuf_init(&b, out, sizeof out);
    gw_json_time(&b, 1795448400123LL); /* 2026-11-23T15:40:00.123Z */
    assert_string_equal(out, "\"2026-11-23T15:40:00.123Z\"");
    gw_jbuf_init(&b, out, sizeof out);
    gw_json_time(&b, -1); /* floor, not truncation */
    assert_string_equal(out, "\"1969-12-31T23:59:59.999Z\"");
}

static const gw_json_dev SL651 = {.type = "sl651"};
static const gw_json_dev NB100 = {.type = "nb100"};

static gw_reading sample(void)
{
    gw_reading r = {0};
    snprintf(r.device, sizeof r.device, "st\"1");
    snprintf(r.metric, sizeof r.metric, "level");
    snprintf(r.unit, sizeof r.unit, "m\xFF");
    r.value = 1.25;
    r.obs_ms = 1795448400000LL;
    r.recv_ms = 1795448401000LL;
    r.seq = 42;
    return r;
}

/* The item parses as JSON and carries the escaped fields back unchanged. */
static void reading_round_trip(void **state)
{
    (void)state;
    char out[512];
    gw_reading r = sample();
    int n = gw_json_reading(out, sizeof out, "gw1", &SL651, &r);
    assert_true(n > 0);
    assert_int_equal((size_t)n, strlen(out));
    cJSON *j = cJSON_Parse(out);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "id")->valuestring, "gw1-42");
    assert_string_equal(cJSON_GetObjectItem(j, "device")->valuestring, "st\"1");
    assert_string_equal(cJSON_GetObjectItem(j, "unit")->valuestring, "m\xEF\xBF\xBD");
    assert_true(cJSON_GetObjectItem(j, "value")->valuedouble == 1.25);
    assert_string_equal(cJSON_GetObjectItem(j, "obs")->valuestring, "2026-11-23T15:40:00.000Z");
    cJSON_Delete(j);
}

/* Every cap below the needed length gives GW_EFULL, never a write past cap; the exact
 * length plus the terminator fits. */
static void bound(void **state)
{
    (void)state;
    char full[512];
    gw_reading r = sample();
    int need = gw_json_reading(full, sizeof full, "gw1", &SL651, &r);
    assert_true(need > 0);
    for (size_t cap = 1; cap <= (size_t)need + 1; cap++) {
        char out[600];
        memset(out, 'Z', sizeof out);
        int n = gw_json_reading(out, cap, "gw1", &SL651, &r);
        if (cap <= (size_t)need)
            assert_int_equal(n, GW_EFULL);
        else
            assert_int_equal(n, need);
        for (size_t i = cap; i < sizeof out; i++)
            assert_int_equal(out[i], 'Z');
    }
}

static gw_alarm level3(const char *id, const char *rule, const char *dev, const char *metric,
                       double value, double threshold)
{
    gw_alarm a = {0};
    snprintf(a.id, sizeof a.id, "%s", id);
    snprintf(a.rule, sizeof a.rule, "%s", rule);
    snprintf(a.device, sizeof a.device, "%s", dev);
    snprintf(a.metric, sizeof a.metric, "%s", metric);
    a.level = 3;
    a.value = value;
    a.threshold = threshold;
    return a;
}

static void event_and_alarm_parse(void **state)
{
    (void)state;
    char out[1024];
    gw_event e = {0};
    snprintf(e.device, sizeof e.device, "smoke-1");
    snprintf(e.kind, sizeof e.kind, "fire_alarm");
    snprintf(e.detail, sizeof e.detail, "room \x01 2\xC3");
    e.active = 1;
    e.recv_ms = 1000;
    int n = gw_json_event(out, sizeof out, "gw1", &NB100, &e);
    assert_true(n > 0);
    cJSON *j = cJSON_Parse(out);
    assert_non_null(j);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "active")));
    assert_string_equal(cJSON_GetObjectItem(j, "detail")->valuestring, "room \x01 2\xEF\xBF\xBD");
    cJSON_Delete(j);

    gw_alarm a = level3("A-1", "high\\water", "st1", "level", NAN, 2.5);
    n = gw_json_alarm(out, sizeof out, "gw1", &a, NULL);
    assert_true(n > 0);
    j = cJSON_Parse(out);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "rule")->valuestring, "high\\water");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "value")));
    assert_int_equal(cJSON_GetObjectItem(j, "level")->valueint, 3);
    cJSON_Delete(j);
}

/* A place configured in Chinese, with bytes that are not UTF-8 mixed in (a
 * device's or an operator's stray bytes): every item stays valid JSON, the
 * Chinese text arrives unchanged and each bad byte becomes U+FFFD. */
static const gw_json_dev PLACE = {.type = "waterlogging",
                                  .site_id = "zh-xz-0001",
                                  .site_name = "解放路隧道\xC0\xAF",
                                  .division = "440402",
                                  .address = "珠海市香洲区解放路\xFF"
                                             "1号",
                                  .lon = 113.5767,
                                  .lat = 22.2707,
                                  .has_location = 1};

static void chinese_and_bad_bytes(void **state)
{
    (void)state;
    char out[2048];
    gw_reading r = sample();
    int n = gw_json_reading(out, sizeof out, "gw1", &PLACE, &r);
    assert_true(n > 0);
    cJSON *j = cJSON_Parse(out);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "site")->valuestring, "zh-xz-0001");
    assert_null(cJSON_GetObjectItem(j, "place")); /* readings stay compact */
    cJSON_Delete(j);

    gw_event e = {0};
    snprintf(e.device, sizeof e.device, "wl-001");
    snprintf(e.kind, sizeof e.kind, "offline");
    snprintf(e.detail, sizeof e.detail, "\xE6\xB0\xB4\xE6"); /* 水 + a cut character */
    n = gw_json_event(out, sizeof out, "gw1", &PLACE, &e);
    assert_true(n > 0);
    j = cJSON_Parse(out);
    assert_non_null(j);
    cJSON *pl = cJSON_GetObjectItem(j, "place");
    assert_non_null(pl);
    assert_string_equal(cJSON_GetObjectItem(pl, "name")->valuestring,
                        "解放路隧道\xEF\xBF\xBD\xEF\xBF\xBD");
    assert_string_equal(cJSON_GetObjectItem(pl, "address")->valuestring,
                        "珠海市香洲区解放路\xEF\xBF\xBD"
                        "1号");
    assert_string_equal(cJSON_GetObjectItem(pl, "division")->valuestring, "440402");
    assert_true(cJSON_GetObjectItem(pl, "lon")->valuedouble == 113.5767);
    assert_string_equal(cJSON_GetObjectItem(j, "detail")->valuestring, "水\xEF\xBF\xBD");
    cJSON_Delete(j);

    gw_alarm a = level3("depth:wl-001:1", "depth", "wl-001", "water_depth", 30, 25);
    gw_json_alarm_ext x = {.dev = &PLACE,
                           .unit = "cm",
                           .raise = 25,
                           .clear = 22,
                           .text = "隧道积水超过25厘米，禁止通行\xF5"};
    n = gw_json_alarm(out, sizeof out, "gw1", &a, &x);
    assert_true(n > 0);
    j = cJSON_Parse(out);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "type")->valuestring, "waterlogging");
    assert_string_equal(cJSON_GetObjectItem(j, "unit")->valuestring, "cm");
    assert_string_equal(cJSON_GetObjectItem(j, "level_meaning")->valuestring, "II 严重");
    assert_string_equal(cJSON_GetObjectItem(j, "direction")->valuestring, "above");
    cJSON *th = cJSON_GetObjectItem(j, "thresholds");
    assert_true(cJSON_GetObjectItem(th, "raise")->valuedouble == 25);
    assert_true(cJSON_GetObjectItem(th, "clear")->valuedouble == 22);
    assert_string_equal(cJSON_GetObjectItem(j, "text")->valuestring,
                        "隧道积水超过25厘米，禁止通行\xEF\xBF\xBD");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "place"), "name")->valuestring,
                        "解放路隧道\xEF\xBF\xBD\xEF\xBF\xBD");
    cJSON_Delete(j);

    /* Bounded like every item: no cap writes past itself. */
    for (size_t cap = 1; cap < (size_t)n; cap += 7)
        assert_int_equal(gw_json_alarm(out, cap, "gw1", &a, &x), GW_EFULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(escapes),
        cmocka_unit_test(utf8_valid_passes),
        cmocka_unit_test(utf8_invalid_replaced),
        cmocka_unit_test(numbers),
        cmocka_unit_test(times),
        cmocka_unit_test(reading_round_trip),
        cmocka_unit_test(bound),
        cmocka_unit_test(event_and_alarm_parse),
        cmocka_unit_test(chinese_and_bad_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
