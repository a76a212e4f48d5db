/* json_map: paths (nested, arrays), missing fields, wrong types, batches,
 * events, observation time formats, mapping errors with file:line, and the
 * generic mapping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "adapters/json_map.h"

#include <math.h>
#include <string.h>

typedef struct coll {
    gw_reading r[64];
    int nr;
    gw_event e[16];
    int ne;
} coll;

static int on_r(void *ctx, const gw_reading *r)
{
    coll *c = ctx;
    if (c->nr < 64)
        c->r[c->nr] = *r;
    c->nr++;
    return 0;
}

static int on_e(void *ctx, const gw_event *e)
{
    coll *c = ctx;
    if (c->ne < 16)
        c->e[c->ne] = *e;
    c->ne++;
    return 0;
}

static gw_jmap *load(const char *yaml, char *err, size_t errlen)
{
    gw_ydoc doc;
    gw_jmap *m = NULL;
    if (gw_ydoc_parse(&doc, "map.yaml", yaml, strlen(yaml), err, errlen) == 0)
        gw_jmap_load(&m, doc.root, "json_map", err, errlen);
    gw_ydoc_free(&doc);
    return m;
}

static int run(const gw_jmap *m, const char *json, coll *c)
{
    memset(c, 0, sizeof(*c));
    gw_sink s = {on_r, on_e, c};
    return gw_jmap_decode(m, json, strlen(json), 0, &s);
}

static const char *MAP = "time: ts\n"
                         "points:\n"
                         "  - {path: data.depth, metric: water_depth, unit: cm, scale: 0.1}\n"
                         "  - {path: 'sensors[1].v', metric: temperature, unit: C}\n"
                         "  - {path: battery, unit: V, offset: 0.5}\n"
                         "events:\n"
                         "  - {path: alarm.smoke, kind: fire_alarm, detail: json}\n";

static void test_paths_nested_arrays(void **st)
{
    char err[256] = "";
    gw_jmap *m = load(MAP, err, sizeof(err));
    assert_non_null(m);
    coll c;
    assert_int_equal(
        run(m,
            "{\"ts\":1760000000,\"data\":{\"depth\":123},\"sensors\":[{\"v\":1},{\"v\":"
            "21.5}],\"battery\":3.1,\"alarm\":{\"smoke\":true}}",
            &c),
        0);
    assert_int_equal(c.ne, 1);
    assert_string_equal(c.e[0].kind, "fire_alarm");
    assert_int_equal(c.e[0].active, 1);
    assert_string_equal(c.e[0].detail, "json");
    assert_int_equal(c.nr, 3);
    assert_string_equal(c.r[0].metric, "water_depth");
    assert_true(fabs(c.r[0].value - 12.3) < 1e-9);
    assert_string_equal(c.r[0].unit, "cm");
    assert_int_equal(c.r[0].obs_ms, 1760000000000LL);
    assert_string_equal(c.r[1].metric, "temperature");
    assert_true(c.r[1].value == 21.5);
    assert_string_equal(c.r[2].metric, "battery"); /* default: the last key */
    assert_true(fabs(c.r[2].value - 3.6) < 1e-9);
    gw_jmap_free(m);
}

static void test_missing_and_null_skipped(void **st)
{
    char err[256];
    gw_jmap *m = load(MAP, err, sizeof(err));
    coll c;
    assert_int_equal(run(m, "{\"data\":{\"depth\":50},\"battery\":null,\"sensors\":[]}", &c), 0);
    assert_int_equal(c.nr, 1);
    assert_int_equal(c.ne, 0);
    assert_int_equal(c.r[0].obs_ms, 0); /* no time field: none */
    /* Nothing mapped at all: refused. */
    assert_int_equal(run(m, "{\"other\":1}", &c), GW_EMALFORMED);
    assert_int_equal(run(m, "{}", &c), GW_EMALFORMED);
    gw_jmap_free(m);
}

static void test_wrong_types_emit_nothing(void **st)
{
    char err[256];
    gw_jmap *m = load(MAP, err, sizeof(err));
    coll c;
    /* A good field before a bad one: nothing at all is emitted. */
    assert_int_equal(run(m, "{\"data\":{\"depth\":5},\"battery\":{\"v\":1}}", &c), GW_EMALFORMED);
    assert_int_equal(c.nr + c.ne, 0);
    assert_int_equal(run(m, "{\"data\":{\"depth\":\"high\"}}", &c), GW_EMALFORMED);
    assert_int_equal(run(m, "{\"data\":[1,2]}", &c), 0 - 0 + GW_EMALFORMED);
    assert_int_equal(run(m, "{\"alarm\":{\"smoke\":\"maybe\"}}", &c), GW_EMALFORMED);
    assert_int_equal(run(m, "{\"alarm\":{\"smoke\":[1]}}", &c), GW_EMALFORMED);
    assert_int_equal(c.nr + c.ne, 0);
    /* Numeric strings and booleans are numbers; event strings have a vocabulary. */
    assert_int_equal(run(m, "{\"data\":{\"depth\":\"40\"},\"battery\":true}", &c), 0);
    assert_true(fabs(c.r[0].value - 4.0) < 1e-9);
    assert_true(fabs(c.r[1].value - 1.5) < 1e-9);
    assert_int_equal(run(m, "{\"alarm\":{\"smoke\":\"cleared\"}}", &c), 0);
    assert_int_equal(c.e[0].active, 0);
    assert_int_equal(run(m, "{\"alarm\":{\"smoke\":2}}", &c), 0);
    assert_int_equal(c.e[0].active, 1);
    /* Not JSON, not an object, truncated, empty. */
    assert_int_equal(run(m, "{\"data\":{\"depth\":5}", &c), GW_EMALFORMED);
    assert_int_equal(run(m, "42", &c), GW_EMALFORMED);
    assert_int_equal(run(m, "\"x\"", &c), GW_EMALFORMED);
    assert_int_equal(run(m, "", &c), GW_EMALFORMED);
    assert_int_equal(run(m, "[]", &c), GW_EMALFORMED);
    assert_int_equal(run(m, "[1,2]", &c), GW_EMALFORMED);
    assert_int_equal(c.nr + c.ne, 0);
    gw_jmap_free(m);
}

static void test_batch_array(void **st)
{
    char err[256];
    gw_jmap *m = load(MAP, err, sizeof(err));
    coll c;
    assert_int_equal(
        run(m,
            "[{\"ts\":1000,\"data\":{\"depth\":10}},{\"ts\":2000,\"data\":{\"depth\":20}"
            "},{\"ts\":3000,\"data\":{\"depth\":30},\"alarm\":{\"smoke\":1}}]",
            &c),
        0);
    assert_int_equal(c.nr, 3);
    assert_int_equal(c.ne, 1);
    assert_int_equal(c.r[1].obs_ms, 2000000); /* 2000 s */
    assert_int_equal(c.e[0].obs_ms, 3000000);
    /* One bad record spoils the batch. */
    assert_int_equal(run(m, "[{\"data\":{\"depth\":10}},{\"data\":{\"depth\":{}}}]", &c),
                     GW_EMALFORMED);
    assert_int_equal(c.nr + c.ne, 0);
    gw_jmap_free(m);
}

static void test_time_formats(void **st)
{
    int64_t ms;
    assert_int_equal(gw_jmap_parse_iso("2026-06-01T08:00:00Z", 0, &ms), 0);
    assert_int_equal(ms, 1780300800000LL);
    assert_int_equal(gw_jmap_parse_iso("2026-06-01T16:00:00.250+08:00", 0, &ms), 0);
    assert_int_equal(ms, 1780300800250LL);
    assert_int_equal(gw_jmap_parse_iso("2026-06-01 16:00:00", 480, &ms), 0);
    assert_int_equal(ms, 1780300800000LL);
    assert_int_equal(gw_jmap_parse_iso("2026-06-01T03:00:00-0500", 0, &ms), 0);
    assert_int_equal(ms, 1780300800000LL);
    assert_int_equal(gw_jmap_parse_iso("2024-02-29T00:00:00Z", 0, &ms), 0);
    assert_int_equal(ms, 1709164800000LL);
    static const char *bad[] = {"2026-13-01T00:00:00Z",     "2026-06-01",
                                "2026-06-01T24:00:00Z",     "2026-06-01T08:00:00+",
                                "2026-06-01T08:00:00Zjunk", "20260601T080000Z",
                                "2026-06-01T08:00:00.Z",    "",
                                "2026-06-32T00:00:00Z"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(gw_jmap_parse_iso(bad[i], 0, &ms), GW_EMALFORMED);

    char err[256];
    coll c;
    gw_jmap *m = load("time: t\npoints:\n  - {path: v}\n", err, sizeof(err));
    assert_int_equal(run(m, "{\"t\":1760000000123,\"v\":1}", &c), 0); /* auto: ms */
    assert_int_equal(c.r[0].obs_ms, 1760000000123LL);
    assert_int_equal(run(m, "{\"t\":\"1760000000\",\"v\":1}", &c), 0); /* digits: seconds */
    assert_int_equal(c.r[0].obs_ms, 1760000000000LL);
    assert_int_equal(run(m, "{\"t\":\"2026-06-01T08:00:00Z\",\"v\":1}", &c), 0);
    assert_int_equal(c.r[0].obs_ms, 1780300800000LL);
    assert_int_equal(run(m, "{\"t\":\"yesterday\",\"v\":1}", &c), GW_EMALFORMED);
    assert_int_equal(run(m, "{\"t\":-5,\"v\":1}", &c), GW_EMALFORMED);
    assert_int_equal(run(m, "{\"t\":{},\"v\":1}", &c), GW_EMALFORMED);
    gw_jmap_free(m);
    m = load("time: t\ntime_format: unix_ms\npoints:\n  - {path: v}\n", err, sizeof(err));
    assert_int_equal(run(m, "{\"t\":5000,\"v\":1}", &c), 0);
    assert_int_equal(c.r[0].obs_ms, 5000);
    gw_jmap_free(m);
    m = load("time: t\ntime_format: iso8601\ntime_zone: \"+08:00\"\npoints:\n  - {path: v}\n", err,
             sizeof(err));
    assert_non_null(m);
    assert_int_equal(run(m, "{\"t\":\"2026-06-01 16:00:00\",\"v\":1}", &c), 0);
    assert_int_equal(c.r[0].obs_ms, 1780300800000LL);
    assert_int_equal(run(m, "{\"t\":1760000000,\"v\":1}", &c), GW_EMALFORMED);
    gw_jmap_free(m);
}

static void test_mapping_errors(void **st)
{
    static const struct {
        const char *yaml;
        const char *want;
    } t[] = {
        {"points:\n  - {metric: x}\n", "map.yaml:2"},
        {"points:\n  - {path: 'a..b'}\n", "valid JSON path"},
        {"points:\n  - {path: 'a[x]'}\n", "valid JSON path"},
        {"points:\n  - {path: a, colour: red}\n", "colour"},
        {"points: []\n", "at least one"},
        {"time_zone: CST\npoints:\n  - {path: a}\n", "time_zone"},
        {"time_format: weird\npoints:\n  - {path: a}\n", "time_format"},
        {"events:\n  - {path: a}\n", "kind"},
        {"points: 3\n", "list"},
        {"- a\n", "mapping"},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char err[256] = "";
        gw_jmap *m = load(t[i].yaml, err, sizeof(err));
        assert_null(m);
        if (!strstr(err, t[i].want))
            fail_msg("case %zu: '%s' not in '%s'", i, t[i].want, err);
    }
}

static void test_generic_and_get_text(void **st)
{
    coll c;
    memset(&c, 0, sizeof(c));
    gw_sink s = {on_r, on_e, &c};
    const char *j = "{\"imei\":\"861234567890123\",\"ts\":1760000000,\"temp\":21.5,\"ok\":true,"
                    "\"name\":\"x\",\"nested\":{\"a\":1}}";
    assert_int_equal(gw_adapter_json_map.decode((const uint8_t *)j, strlen(j), 0, &s), 0);
    assert_int_equal(c.nr, 2);
    assert_string_equal(c.r[0].metric, "temp");
    assert_int_equal(c.r[0].obs_ms, 1760000000000LL);
    assert_string_equal(c.r[1].metric, "ok");
    char out[32];
    assert_int_equal(gw_jmap_get_text(j, strlen(j), "imei", out, sizeof(out)), 0);
    assert_string_equal(out, "861234567890123");
    assert_int_equal(gw_jmap_get_text(j, strlen(j), "nested.a", out, sizeof(out)), 0);
    assert_string_equal(out, "1");
    assert_int_equal(gw_jmap_get_text(j, strlen(j), "nope", out, sizeof(out)), GW_ENOTFOUND);
    assert_int_equal(gw_jmap_get_text("{", 1, "imei", out, sizeof(out)), GW_EMALFORMED);
    assert_int_equal(gw_jmap_get_text(j, strlen(j), "imei", out, 4), GW_ENOTFOUND);
}

static void test_hostile_depth(void **st)
{
    char err[256];
    gw_jmap *m = load("points:\n  - {path: a}\n", err, sizeof(err));
    static char deep[40000];
    size_t n = 0;
    for (int i = 0; i < 5000; i++)
        deep[n++] = '[';
    deep[n] = '\0';
    coll c;
    assert_int_equal(run(m, deep, &c), GW_EMALFORMED);
    gw_jmap_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths_nested_arrays),
        cmocka_unit_test(test_missing_and_null_skipped),
        cmocka_unit_test(test_wrong_types_emit_nothing),
        cmocka_unit_test(test_batch_array),
        cmocka_unit_test(test_time_formats),
        cmocka_unit_test(test_mapping_errors),
        cmocka_unit_test(test_generic_and_get_text),
        cmocka_unit_test(test_hostile_depth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
