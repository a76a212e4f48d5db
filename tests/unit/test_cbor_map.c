/* cbor_map: maps and arrays through a json_map, integers of every width,
 * floats of every width, time tags, byte strings, text rules, every truncation
 * of a payload, and hostile nesting and counts. Payloads are built byte by
 * byte here, so the test does not trust libcbor's encoder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "adapters/cbor_map.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- a small encoder ---- */

typedef struct buf {
    uint8_t b[70000];
    size_t n;
} buf;

static void put(buf *o, uint8_t v)
{
    assert_true(o->n < sizeof(o->b));
    o->b[o->n++] = v;
}

/* A head with the argument in `width` bytes (0: inline, needs v < 24). */
static void head_w(buf *o, int major, uint64_t v, int width)
{
    static const int ai[] = {0, 24, 25, 0, 26, 0, 0, 0, 27};
    if (width == 0) {
        put(o, (uint8_t)(major << 5 | v));
        return;
    }
    put(o, (uint8_t)(major << 5 | ai[width]));
    for (int i = width - 1; i >= 0; i--)
        put(o, (uint8_t)(v >> (8 * i)));
}

static void head(buf *o, int major, uint64_t v)
{
    int w = v < 24 ? 0 : v <= 0xff ? 1 : v <= 0xffff ? 2 : v <= 0xffffffffu ? 4 : 8;
    head_w(o, major, v, w);
}

static void text(buf *o, const char *s)
{
    head(o, 3, strlen(s));
    for (const char *p = s; *p; p++)
        put(o, (uint8_t)*p);
}

static void uint_(buf *o, uint64_t v)
{
    head(o, 0, v);
}

static void f64(buf *o, double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    head_w(o, 7, u, 8);
}

static void f32(buf *o, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    head_w(o, 7, u, 4);
}

static void f16(buf *o, uint16_t bits)
{
    head_w(o, 7, bits, 2);
}

/* ---- collecting the output ---- */

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

static gw_jmap *load(const char *yaml)
{
    gw_ydoc doc;
    gw_jmap *m = NULL;
    char err[256] = "";
    if (gw_ydoc_parse(&doc, "map.yaml", yaml, strlen(yaml), err, sizeof(err)) == 0)
        gw_jmap_load(&m, doc.root, "json_map", err, sizeof(err));
    gw_ydoc_free(&doc);
    if (!m)
        fail_msg("mapping: %s", err);
    return m;
}

static int run(const gw_jmap *m, const buf *o, coll *c)
{
    memset(c, 0, sizeof(*c));
    gw_sink s = {on_r, on_e, c};
    return gw_cbor_decode(m, o->b, o->n, 0, &s);
}

static const gw_reading *reading(const coll *c, const char *metric)
{
    for (int i = 0; i < c->nr && i < 64; i++)
        if (!strcmp(c->r[i].metric, metric))
            return &c->r[i];
    return NULL;
}

static double value(const coll *c, const char *metric)
{
    const gw_reading *r = reading(c, metric);
    if (!r)
        fail_msg("no reading %s", metric);
    return r->value;
}

static const char *MAP = "time: ts\n"
                         "points:\n"
                         "  - {path: data.depth, metric: water_depth, unit: cm, scale: 0.1}\n"
                         "  - {path: 'sensors[1].v', metric: temperature, unit: C}\n"
                         "  - {path: bat, metric: battery_voltage, unit: V}\n"
                         "  - {path: '7', metric: rssi, unit: dBm}\n"
                         "events:\n"
                         "  - {path: alarm.smoke, kind: fire_alarm, detail: cbor}\n";

/* {"ts": 1(1760000000), "data": {"depth": 123}, "sensors": [{"v": 1}, {"v": 21.5}],
 *  "bat": 3.6, 7: -80, "alarm": {"smoke": true}} */
static void sample(buf *o)
{
    o->n = 0;
    head(o, 5, 6);
    text(o, "ts");
    head(o, 6, 1);
    uint_(o, 1760000000);
    text(o, "data");
    head(o, 5, 1);
    text(o, "depth");
    uint_(o, 123);
    text(o, "sensors");
    head(o, 4, 2);
    head(o, 5, 1);
    text(o, "v");
    uint_(o, 1);
    head(o, 5, 1);
    text(o, "v");
    f64(o, 21.5);
    text(o, "bat");
    f32(o, 3.5f);
    uint_(o, 7);
    head(o, 1, 79); /* -80 */
    text(o, "alarm");
    head(o, 5, 1);
    text(o, "smoke");
    put(o, 0xf5);
}

static void test_map_through_mapping(void **st)
{
    gw_jmap *m = load(MAP);
    buf o;
    coll c;
    sample(&o);
    assert_int_equal(run(m, &o, &c), GW_OK);
    assert_int_equal(c.nr, 4);
    assert_int_equal(c.ne, 1);
    assert_string_equal(c.e[0].kind, "fire_alarm");
    assert_string_equal(c.e[0].detail, "cbor");
    assert_int_equal(c.e[0].active, 1);
    assert_true(fabs(value(&c, "water_depth") - 12.3) < 1e-9);
    assert_string_equal(reading(&c, "water_depth")->unit, "cm");
    assert_true(value(&c, "temperature") == 21.5);
    assert_true(value(&c, "battery_voltage") == 3.5);
    assert_true(value(&c, "rssi") == -80); /* integer key 7 named by the path '7' */
    for (int i = 0; i < c.nr; i++)
        assert_int_equal(c.r[i].obs_ms, 1760000000000LL);
    assert_int_equal(c.e[0].obs_ms, 1760000000000LL);
    gw_jmap_free(m);
}

static void test_array_batch_and_generic(void **st)
{
    /* [{"ts": 1760000000, "level": 1}, {"ts": 1760000060, "level": 2}] */
    buf o = {.n = 0};
    head(&o, 4, 2);
    for (int i = 0; i < 2; i++) {
        head(&o, 5, 2);
        text(&o, "ts");
        uint_(&o, 1760000000 + 60 * (uint64_t)i);
        text(&o, "level");
        uint_(&o, (uint64_t)i + 1);
    }
    coll c;
    assert_int_equal(run(NULL, &o, &c), GW_OK);
    assert_int_equal(c.nr, 2);
    assert_string_equal(c.r[0].metric, "level");
    assert_true(c.r[0].value == 1 && c.r[1].value == 2);
    assert_int_equal(c.r[0].obs_ms, 1760000000000LL);
    assert_int_equal(c.r[1].obs_ms, 1760000060000LL);
    /* The descriptor decodes with the generic mapping too. */
    const gw_adapter *a = gw_adapter_find("cbor-map");
    assert_non_null(a);
    memset(&c, 0, sizeof(c));
    gw_sink s = {on_r, on_e, &c};
    assert_int_equal(a->decode(o.b, o.n, 0, &s), GW_OK);
    assert_int_equal(c.nr, 2);
    /* A top-level array of numbers is no record: malformed, as in JSON. */
    o.n = 0;
    head(&o, 4, 1);
    uint_(&o, 1);
    assert_int_equal(run(NULL, &o, &c), GW_EMALFORMED);
    assert_int_equal(c.nr, 0);
}

static void test_integers_every_width(void **st)
{
    static const struct {
        int major;
        uint64_t arg;
        int width;
        double want;
    } t[] = {
        {0, 0, 0, 0},
        {0, 23, 0, 23},
        {0, 24, 1, 24},
        {0, 255, 1, 255},
        {0, 5, 1, 5}, /* non-canonical width is still valid */
        {0, 65535, 2, 65535},
        {0, 4294967295u, 4, 4294967295.0},
        {0, 9007199254740992ull, 8, 9007199254740992.0},
        {0, UINT64_MAX, 8, 18446744073709551615.0},
        {1, 0, 0, -1},
        {1, 99, 1, -100},
        {1, 999, 2, -1000},
        {1, 99999, 4, -100000},
        {1, 9999999999ull, 8, -10000000000.0},
        {1, UINT64_MAX, 8, -18446744073709551616.0},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        buf o = {.n = 0};
        head(&o, 5, 1);
        text(&o, "x");
        head_w(&o, t[i].major, t[i].arg, t[i].width);
        coll c;
        assert_int_equal(run(NULL, &o, &c), GW_OK);
        assert_int_equal(c.nr, 1);
        if (c.r[0].value != t[i].want)
            fail_msg("case %zu: %.17g != %.17g", i, c.r[0].value, t[i].want);
    }
}

static void test_floats_every_width(void **st)
{
    static const struct {
        uint16_t bits;
        double want;
    } half[] = {{0x3e00, 1.5},
                {0xc400, -4.0},
                {0x7bff, 65504.0},
                {0x0001, 5.960464477539063e-8},
                {0x0000, 0.0}};
    coll c;
    for (size_t i = 0; i < sizeof(half) / sizeof(half[0]); i++) {
        buf o = {.n = 0};
        head(&o, 5, 1);
        text(&o, "h");
        f16(&o, half[i].bits);
        assert_int_equal(run(NULL, &o, &c), GW_OK);
        if (c.r[0].value != half[i].want)
            fail_msg("half %04x: %.17g", half[i].bits, c.r[0].value);
    }
    buf o = {.n = 0};
    head(&o, 5, 2);
    text(&o, "s");
    f32(&o, 0.1f);
    text(&o, "d");
    f64(&o, -1234.5678);
    assert_int_equal(run(NULL, &o, &c), GW_OK);
    assert_true(value(&c, "s") == (double)0.1f);
    assert_true(value(&c, "d") == -1234.5678);

    /* Infinity and NaN in any width, anywhere (even in a field nobody maps),
     * make the payload malformed. */
    const uint64_t bad16[] = {0x7c00, 0xfc00, 0x7e00};
    const uint64_t bad32[] = {0x7f800000, 0xff800000, 0x7fc00000};
    const uint64_t bad64[] = {0x7ff0000000000000ull, 0xfff0000000000000ull, 0x7ff8000000000000ull};
    for (int i = 0; i < 3; i++) {
        for (int w = 2; w <= 8; w *= 2) {
            o.n = 0;
            head(&o, 5, 2);
            text(&o, "ok");
            uint_(&o, 1);
            text(&o, "unmapped");
            head_w(&o, 7, w == 2 ? bad16[i] : w == 4 ? bad32[i] : bad64[i], w);
            assert_int_equal(run(NULL, &o, &c), GW_EMALFORMED);
            assert_int_equal(c.nr, 0);
        }
    }
}

static void test_time_tags(void **st)
{
    gw_jmap *m = load("time: t\npoints:\n  - {path: v}\n");
    coll c;
    buf o;
    /* tag 1 with an integer, a float (sub-second), a 64-bit integer. */
    struct {
        int kind;
        double secs;
        int64_t want_ms;
    } t[] = {{0, 1760000000, 1760000000000LL},
             {1, 1760000000.25, 1760000000250LL},
             {2, 1760000000, 1760000000000LL},
             {0, 0, 0}};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        o.n = 0;
        head(&o, 5, 2);
        text(&o, "t");
        head(&o, 6, 1);
        if (t[i].kind == 1)
            f64(&o, t[i].secs);
        else
            head_w(&o, 0, (uint64_t)t[i].secs, t[i].kind == 2 ? 8 : 4);
        text(&o, "v");
        uint_(&o, 5);
        assert_int_equal(run(m, &o, &c), GW_OK);
        assert_int_equal(c.nr, 1);
        assert_int_equal(c.r[0].obs_ms, t[i].want_ms);
    }
    /* tag 1 becomes ISO 8601 text in the JSON model. */
    o.n = 0;
    head(&o, 5, 1);
    text(&o, "t");
    head(&o, 6, 1);
    f64(&o, 951782400.5); /* 2000-02-29 00:00:00.5 UTC */
    cJSON *j;
    assert_int_equal(gw_cbor_to_json(o.b, o.n, &j), GW_OK);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "t")),
                        "2000-02-29T00:00:00.500Z");
    cJSON_Delete(j);
    /* tag 0: date/time text. */
    o.n = 0;
    head(&o, 5, 2);
    text(&o, "t");
    head(&o, 6, 0);
    text(&o, "2026-06-01T08:00:00+08:00");
    text(&o, "v");
    uint_(&o, 1);
    assert_int_equal(run(m, &o, &c), GW_OK);
    assert_int_equal(c.r[0].obs_ms, 1780272000000LL);
    /* Bad times: negative epoch, epoch past 9999, NaN is already refused,
     * tag 0 on a number, tag 1 on text, bignums. */
    for (int k = 0; k < 6; k++) {
        o.n = 0;
        head(&o, 5, 2);
        text(&o, "t");
        switch (k) {
        case 0:
            head(&o, 6, 1);
            head(&o, 1, 10);
            break;
        case 1:
            head(&o, 6, 1);
            uint_(&o, 253402300800ull);
            break;
        case 2:
            head(&o, 6, 0);
            uint_(&o, 1760000000);
            break;
        case 3:
            head(&o, 6, 1);
            text(&o, "1760000000");
            break;
        case 4:
            head(&o, 6, 2);
            head(&o, 2, 1);
            put(&o, 1);
            break;
        default:
            head(&o, 6, 3);
            head(&o, 2, 1);
            put(&o, 1);
            break;
        }
        text(&o, "v");
        uint_(&o, 1);
        if (run(m, &o, &c) != GW_EMALFORMED || c.nr != 0)
            fail_msg("bad time case %d accepted", k);
    }
    /* Other tags are transparent: self-described CBOR (55799) around it all,
     * and an unknown tag 40000 on a value. */
    o.n = 0;
    head(&o, 6, 55799);
    head(&o, 5, 1);
    text(&o, "v");
    head(&o, 6, 40000);
    uint_(&o, 9);
    assert_int_equal(run(m, &o, &c), GW_OK);
    assert_int_equal(c.nr, 1);
    assert_true(c.r[0].value == 9);
    gw_jmap_free(m);
}

static void test_byte_strings_ignored_or_refused(void **st)
{
    gw_jmap *m = load("points:\n  - {path: raw}\n  - {path: v}\n");
    coll c;
    buf o = {.n = 0};
    /* A byte string value counts as absent; the rest is delivered. */
    head(&o, 5, 2);
    text(&o, "raw");
    head(&o, 2, 3);
    put(&o, 1);
    put(&o, 2);
    put(&o, 3);
    text(&o, "v");
    uint_(&o, 4);
    assert_int_equal(run(m, &o, &c), GW_OK);
    assert_int_equal(c.nr, 1);
    assert_string_equal(c.r[0].metric, "v");
    /* Only bytes where a number belongs: no mapped field, malformed. */
    o.n = 0;
    head(&o, 5, 1);
    text(&o, "raw");
    head(&o, 2, 1);
    put(&o, 7);
    assert_int_equal(run(m, &o, &c), GW_EMALFORMED);
    /* An indefinite byte string, ignored as well. */
    o.n = 0;
    head(&o, 5, 2);
    text(&o, "raw");
    put(&o, 0x5f);
    head(&o, 2, 1);
    put(&o, 1);
    put(&o, 0xff);
    text(&o, "v");
    uint_(&o, 4);
    assert_int_equal(run(m, &o, &c), GW_OK);
    assert_int_equal(c.nr, 1);
    /* A byte string as a map key is refused. */
    o.n = 0;
    head(&o, 5, 1);
    head(&o, 2, 1);
    put(&o, 'v');
    uint_(&o, 4);
    assert_int_equal(run(m, &o, &c), GW_EMALFORMED);
    gw_jmap_free(m);
}

static void test_text_and_simple_values(void **st)
{
    coll c;
    buf o = {.n = 0};
    /* Indefinite text in chunks is joined; text numbers parse as in JSON. */
    head(&o, 5, 2);
    put(&o, 0x7f);
    text(&o, "lev");
    text(&o, "el");
    put(&o, 0xff);
    text(&o, "12.5");
    text(&o, "on");
    put(&o, 0xf4); /* false */
    gw_jmap *m = load("points:\n  - {path: level}\n  - {path: on}\n");
    assert_int_equal(run(m, &o, &c), GW_OK);
    assert_true(value(&c, "level") == 12.5);
    assert_true(value(&c, "on") == 0);
    /* undefined and null are absent. */
    o.n = 0;
    head(&o, 5, 2);
    text(&o, "level");
    put(&o, 0xf7);
    text(&o, "on");
    put(&o, 0xf6);
    assert_int_equal(run(m, &o, &c), GW_EMALFORMED); /* nothing mapped present */
    static const uint8_t bad[][8] = {
        {0xa1, 0x61, 'x', 0xf0},                   /* unassigned simple value */
        {0xa1, 0x61, 'x', 0xf8, 0x20},             /* one-byte simple value */
        {0xa1, 0x61, 'x', 0xfc},                   /* reserved */
        {0xa1, 0x61, 'x', 0x1c},                   /* reserved additional info */
        {0xa1, 0x61, 'x', 0x3f},                   /* indefinite negative integer */
        {0xa1, 0x61, 'x', 0xdf, 0x01},             /* indefinite tag */
        {0xa1, 0x62, 'x', 0x00, 0x01},             /* NUL in a key */
        {0xa1, 0x61, 'x', 0x62, 0xc3, 0x28},       /* bad UTF-8 */
        {0xa1, 0x61, 'x', 0x63, 0xed, 0xa0, 0x80}, /* a surrogate */
        {0xa1, 0x61, 'x', 0x62, 0xc0, 0x80},       /* overlong */
        {0xa1, 0x61, 'x', 0x7f, 0x41, 'a', 0xff},  /* bytes inside indefinite text */
        {0xa1, 0xf5, 0x01},                        /* a boolean key */
        {0xa1, 0xff, 0x01},                        /* break as a key */
        {0x01, 0x02},                              /* two items */
        {0xa1, 0x61, 'x', 0x01, 0x00},             /* trailing byte */
    };
    static const size_t badlen[] = {4, 5, 4, 4, 4, 5, 5, 6, 7, 6, 7, 3, 3, 2, 5};
    for (size_t i = 0; i < sizeof(badlen) / sizeof(badlen[0]); i++) {
        memset(&c, 0, sizeof(c));
        gw_sink s = {on_r, on_e, &c};
        if (gw_cbor_decode(NULL, bad[i], badlen[i], 0, &s) != GW_EMALFORMED || c.nr)
            fail_msg("bad case %zu accepted", i);
    }
    /* Good UTF-8 of every length passes. */
    o.n = 0;
    head(&o, 5, 1);
    text(&o, "x");
    text(&o, "\xc3\xa9\xe6\xb0\xb4\xf0\x9f\x8c\x8a");
    cJSON *j;
    assert_int_equal(gw_cbor_to_json(o.b, o.n, &j), GW_OK);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "x")),
                        "\xc3\xa9\xe6\xb0\xb4\xf0\x9f\x8c\x8a");
    cJSON_Delete(j);
    gw_jmap_free(m);
}

static void test_truncated_at_every_length(void **st)
{
    gw_jmap *m = load(MAP);
    buf o;
    sample(&o);
    coll c;
    for (size_t n = 0; n < o.n; n++) {
        memset(&c, 0, sizeof(c));
        gw_sink s = {on_r, on_e, &c};
        /* A copy of exactly n bytes, so ASan sees any read past the end. */
        uint8_t *p = malloc(n ? n : 1);
        memcpy(p, o.b, n);
        int rc = gw_cbor_decode(m, p, n, 0, &s);
        free(p);
        if (rc != GW_EMALFORMED || c.nr || c.ne)
            fail_msg("prefix of %zu/%zu bytes: rc %d, %d readings", n, o.n, rc, c.nr);
    }
    assert_int_equal(run(m, &o, &c), GW_OK);
    gw_jmap_free(m);
}

static void nest(buf *o, int depth, int indefinite)
{
    o->n = 0;
    head(o, 5, 1);
    text(o, "v");
    for (int i = 1; i < depth; i++)
        put(o, indefinite ? 0x9f : 0x81);
    uint_(o, 1);
    for (int i = 1; indefinite && i < depth; i++)
        put(o, 0xff);
}

static void test_hostile_nesting_and_counts(void **st)
{
    buf *o = malloc(sizeof(*o));
    cJSON *j;
    /* Depth counts the top map: GW_CBOR_MAX_DEPTH containers pass, one more fails. */
    for (int ind = 0; ind < 2; ind++) {
        nest(o, GW_CBOR_MAX_DEPTH, ind);
        assert_int_equal(gw_cbor_to_json(o->b, o->n, &j), GW_OK);
        cJSON_Delete(j);
        nest(o, GW_CBOR_MAX_DEPTH + 1, ind);
        assert_int_equal(gw_cbor_to_json(o->b, o->n, &j), GW_EMALFORMED);
        assert_null(j);
        nest(o, 20000, ind); /* deep enough to exhaust a recursive decoder */
        assert_int_equal(gw_cbor_to_json(o->b, o->n, &j), GW_EMALFORMED);
    }
    /* Tags nest too. */
    o->n = 0;
    for (int i = 0; i < 100; i++)
        head(o, 6, 40000);
    uint_(o, 1);
    assert_int_equal(gw_cbor_to_json(o->b, o->n, &j), GW_EMALFORMED);
    /* Counts that lie about the bytes left, or pass the limits. */
    static const uint8_t lies[][9] = {
        {0xbb, 0, 0, 0, 1, 0, 0, 0, 0},                         /* map of 2^32 pairs */
        {0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, /* array of 2^64-1 */
        {0x7b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xf0}, /* text of ~2^64 bytes */
        {0x5a, 0x80, 0, 0, 0},                                  /* bytes of 2^31 */
        {0xa3, 0x61, 'x', 0x01},                                /* 3 pairs, one present */
        {0x83, 0x01, 0x02},                                     /* 3 entries, two present */
    };
    static const size_t lielen[] = {9, 9, 9, 5, 4, 3};
    for (size_t i = 0; i < sizeof(lielen) / sizeof(lielen[0]); i++)
        if (gw_cbor_to_json(lies[i], lielen[i], &j) != GW_EMALFORMED)
            fail_msg("lie %zu accepted", i);
    /* An array of GW_CBOR_MAX_COUNT entries passes; one more fails, definite or not. */
    for (int extra = 0; extra < 2; extra++) {
        for (int ind = 0; ind < 2; ind++) {
            o->n = 0;
            if (ind)
                put(o, 0x9f);
            else
                head(o, 4, GW_CBOR_MAX_COUNT + (uint64_t)extra);
            for (int i = 0; i < GW_CBOR_MAX_COUNT + extra; i++)
                put(o, 0x01);
            if (ind)
                put(o, 0xff);
            int rc = gw_cbor_to_json(o->b, o->n, &j);
            assert_int_equal(rc, extra ? GW_EMALFORMED : GW_OK);
            cJSON_Delete(j);
        }
    }
    /* An indefinite map: odd entries before the break, and too many pairs. */
    static const uint8_t odd[] = {0xbf, 0x61, 'x', 0xff};
    assert_int_equal(gw_cbor_to_json(odd, sizeof(odd), &j), GW_EMALFORMED);
    o->n = 0;
    put(o, 0xbf);
    for (int i = 0; i <= GW_CBOR_MAX_COUNT; i++) {
        uint_(o, (uint64_t)i);
        put(o, 0x01);
    }
    put(o, 0xff);
    assert_int_equal(gw_cbor_to_json(o->b, o->n, &j), GW_EMALFORMED);
    /* Too many items in all: 900 arrays of 9 each, every count within limits. */
    o->n = 0;
    head(o, 4, 900);
    for (int i = 0; i < 900; i++) {
        head(o, 4, 9);
        for (int k = 0; k < 9; k++)
            put(o, 0x01);
    }
    assert_int_equal(gw_cbor_to_json(o->b, o->n, &j), GW_EMALFORMED);
    /* Stray breaks, empty input, oversized input. */
    static const uint8_t brk[] = {0xff};
    static const uint8_t brk2[] = {0x82, 0x01, 0xff};
    assert_int_equal(gw_cbor_to_json(brk, 1, &j), GW_EMALFORMED);
    assert_int_equal(gw_cbor_to_json(brk2, 3, &j), GW_EMALFORMED);
    assert_int_equal(gw_cbor_to_json(brk, 0, &j), GW_EMALFORMED);
    o->n = 0;
    head(o, 2, GW_CBOR_MAX_LEN);
    o->n += GW_CBOR_MAX_LEN;
    assert_int_equal(gw_cbor_to_json(o->b, o->n, &j), GW_EMALFORMED);
    free(o);
}

static void test_get_text(void **st)
{
    buf o = {.n = 0};
    char out[32];
    head(&o, 5, 2);
    text(&o, "imei");
    text(&o, "861234567890123");
    text(&o, "ep");
    uint_(&o, 42);
    assert_int_equal(gw_cbor_get_text(o.b, o.n, "imei", out, sizeof(out)), GW_OK);
    assert_string_equal(out, "861234567890123");
    assert_int_equal(gw_cbor_get_text(o.b, o.n, "ep", out, sizeof(out)), GW_OK);
    assert_string_equal(out, "42");
    assert_int_equal(gw_cbor_get_text(o.b, o.n, "nope", out, sizeof(out)), GW_ENOTFOUND);
    assert_int_equal(gw_cbor_get_text(o.b, o.n, "imei", out, 8), GW_ENOTFOUND);
    assert_int_equal(gw_cbor_get_text(o.b, o.n - 1, "imei", out, sizeof(out)), GW_EMALFORMED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_map_through_mapping),
        cmocka_unit_test(test_array_batch_and_generic),
        cmocka_unit_test(test_integers_every_width),
        cmocka_unit_test(test_floats_every_width),
        cmocka_unit_test(test_time_tags),
        cmocka_unit_test(test_byte_strings_ignored_or_refused),
        cmocka_unit_test(test_text_and_simple_values),
        cmocka_unit_test(test_truncated_at_every_length),
        cmocka_unit_test(test_hostile_nesting_and_counts),
        cmocka_unit_test(test_get_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
