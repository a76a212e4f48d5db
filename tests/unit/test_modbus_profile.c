/* Modbus profiles: loading (and its error messages), every data type and byte
 * order, scaling, unit codes, ranges, derived points, request planning, failed
 * requests, shipped profiles, writes and report-by-exception. Responses are
 * built from small register images, as a device would answer the planned reads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "adapters/modbus_profile.h"
#include "base/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IMG 1024
#define MAXR 64

/* The device: one image per register kind. */
static uint16_t holding[IMG], input[IMG];
static uint8_t coils[IMG], discrete[IMG];

static void device_reset(void)
{
    memset(holding, 0, sizeof(holding));
    memset(input, 0, sizeof(input));
    memset(coils, 0, sizeof(coils));
    memset(discrete, 0, sizeof(discrete));
}

/* Sets holding/input registers from wire bytes (2 per register). */
static void put_bytes(uint16_t *img, unsigned addr, const uint8_t *b, size_t n)
{
    for (size_t i = 0; i + 1 < n; i += 2)
        img[addr + i / 2] = (uint16_t)(b[i] << 8 | b[i + 1]);
}

typedef struct answers {
    gw_mb_result res[MAXR];
    uint8_t data[MAXR][256];
    size_t n;
} answers;

/* Answers every planned request from the images. */
static void answer(const gw_profile *p, answers *a)
{
    const gw_mb_request *rq;
    a->n = gw_profile_requests(p, &rq);
    assert_true(a->n <= MAXR);
    for (size_t i = 0; i < a->n; i++) {
        uint8_t *d = a->data[i];
        memset(d, 0, sizeof(a->data[i]));
        assert_true(rq[i].addr + rq[i].count <= IMG);
        if (rq[i].fc <= 2) {
            const uint8_t *img = rq[i].fc == 1 ? coils : discrete;
            for (unsigned k = 0; k < rq[i].count; k++)
                if (img[rq[i].addr + k])
                    d[k / 8] |= (uint8_t)(1u << (k % 8));
            a->res[i].len = (rq[i].count + 7u) / 8u;
        } else {
            const uint16_t *img = rq[i].fc == 3 ? holding : input;
            for (unsigned k = 0; k < rq[i].count; k++) {
                d[2 * k] = (uint8_t)(img[rq[i].addr + k] >> 8);
                d[2 * k + 1] = (uint8_t)img[rq[i].addr + k];
            }
            a->res[i].len = rq[i].count * 2u;
        }
        a->res[i].status = 0;
        a->res[i].data = d;
    }
}

/* What the sink received. */
typedef struct capture {
    gw_reading r[64];
    size_t nr;
    gw_event e[16];
    size_t ne;
    int stop_after; /* return an error after this many readings (0 = never) */
} capture;

static int on_reading(void *ctx, const gw_reading *r)
{
    capture *c = ctx;
    if (c->nr < 64)
        c->r[c->nr++] = *r;
    if (c->stop_after && (int)c->nr >= c->stop_after)
        return GW_EFULL;
    return 0;
}

static int on_event(void *ctx, const gw_event *e)
{
    capture *c = ctx;
    if (c->ne < 16)
        c->e[c->ne++] = *e;
    return 0;
}

static const gw_reading *find_r(const capture *c, const char *metric)
{
    for (size_t i = 0; i < c->nr; i++)
        if (strcmp(c->r[i].metric, metric) == 0)
            return &c->r[i];
    fail_msg("no reading '%s'", metric);
    return NULL;
}

static gw_profile *load(const char *text)
{
    gw_profile *p = NULL;
    char err[256] = "";
    int rc = gw_profile_load_text(&p, "t.yaml", text, strlen(text), err, sizeof(err));
    if (rc)
        fail_msg("load failed (%d): %s", rc, err);
    return p;
}

/* Loads text expecting failure; returns the message. */
static const char *load_err(const char *text)
{
    static char err[256];
    gw_profile *p = NULL;
    err[0] = '\0';
    int rc = gw_profile_load_text(&p, "t.yaml", text, strlen(text), err, sizeof(err));
    if (rc == 0)
        fail_msg("expected a load error for:\n%s", text);
    assert_null(p);
    return err;
}

static void decode(const gw_profile *p, capture *c, const gw_param *site, size_t nsite)
{
    answers a;
    gw_sink s = {on_reading, on_event, c};
    answer(p, &a);
    memset(c, 0, sizeof(*c));
    assert_int_equal(gw_profile_decode(p, site, nsite, a.res, a.n, 1700000000000, &s), 0);
}

static void assert_good(const capture *c, const char *metric, double want, double tol)
{
    const gw_reading *r = find_r(c, metric);
    if (r->quality != GW_Q_GOOD)
        fail_msg("'%s' is %s (%s)", metric, gw_quality_name(r->quality), gw_reason_name(r->reason));
    if (fabs(r->value - want) > tol)
        fail_msg("'%s' = %.9g, want %.9g", metric, r->value, want);
}

static void assert_bad(const capture *c, const char *metric, int reason)
{
    const gw_reading *r = find_r(c, metric);
    assert_int_equal(r->quality, GW_Q_BAD);
    assert_string_equal(gw_reason_name(r->reason), gw_reason_name(reason));
}

static void assert_reqs(const gw_profile *p, const gw_mb_request *want, size_t n)
{
    const gw_mb_request *got;
    size_t k = gw_profile_requests(p, &got);
    char msg[512] = "";
    for (size_t i = 0; i < k; i++) {
        size_t l = strlen(msg);
        snprintf(msg + l, sizeof(msg) - l, " {%u,%u,%u}", got[i].fc, got[i].addr, got[i].count);
    }
    if (k != n)
        fail_msg("got %zu requests:%s, want %zu", k, msg, n);
    for (size_t i = 0; i < n; i++)
        if (got[i].fc != want[i].fc || got[i].addr != want[i].addr || got[i].count != want[i].count)
            fail_msg("request %zu differs; got:%s", i, msg);
}

/* ---- data types and byte orders ---- */

static void test_float32_orders(void **state)
{
    (void)state;
    /* 123.456f = 0x42F6E979 */
    static const uint8_t w[4][4] = {{0x42, 0xF6, 0xE9, 0x79},
                                    {0x79, 0xE9, 0xF6, 0x42},
                                    {0xF6, 0x42, 0x79, 0xE9},
                                    {0xE9, 0x79, 0x42, 0xF6}};
    gw_profile *p = load("name: t\ndevice_type: t\npoints:\n"
                         "  - {name: abcd, kind: holding, address: 0, type: float32, order: ABCD}\n"
                         "  - {name: dcba, kind: holding, address: 2, type: float32, order: DCBA}\n"
                         "  - {name: badc, kind: holding, address: 4, type: float32, order: BADC}\n"
                         "  - {name: cdab, kind: holding, address: 6, type: float32, order: CDAB}\n"
                         "  - {name: dflt, kind: holding, address: 8, type: float32}\n");
    capture c;
    device_reset();
    for (int i = 0; i < 4; i++)
        put_bytes(holding, 2 * i, w[i], 4);
    put_bytes(holding, 8, w[0], 4);
    decode(p, &c, NULL, 0);
    assert_int_equal(c.nr, 5);
    assert_good(&c, "abcd", 123.456, 1e-4);
    assert_good(&c, "dcba", 123.456, 1e-4);
    assert_good(&c, "badc", 123.456, 1e-4);
    assert_good(&c, "cdab", 123.456, 1e-4);
    assert_good(&c, "dflt", 123.456, 1e-4);
    /* A NaN is a sensor fault, not a number. */
    static const uint8_t nan[4] = {0x7F, 0xC0, 0x00, 0x00};
    put_bytes(holding, 0, nan, 4);
    decode(p, &c, NULL, 0);
    assert_bad(&c, "abcd", GW_R_SENSOR_FAULT);
    assert_good(&c, "dcba", 123.456, 1e-4);
    gw_profile_free(p);
}

static void test_int32_orders(void **state)
{
    (void)state;
    gw_profile *p =
        load("name: t\ndevice_type: t\npoints:\n"
             "  - {name: i_abcd, kind: input, address: 0, type: int32, order: ABCD}\n"
             "  - {name: i_dcba, kind: input, address: 2, type: int32, order: DCBA}\n"
             "  - {name: i_badc, kind: input, address: 4, type: int32, order: BADC}\n"
             "  - {name: i_cdab, kind: input, address: 6, type: int32, order: CDAB}\n"
             "  - {name: u_abcd, kind: input, address: 8, type: uint32}\n"
             "  - {name: u_dcba, kind: input, address: 10, type: uint32, order: DCBA}\n"
             "  - {name: u_badc, kind: input, address: 12, type: uint32, order: BADC}\n"
             "  - {name: u_cdab, kind: input, address: 14, type: uint32, order: CDAB}\n");
    /* -2 = FF FF FF FE; 0x01020304 = 16909060 */
    static const uint8_t m2[4][4] = {{0xFF, 0xFF, 0xFF, 0xFE},
                                     {0xFE, 0xFF, 0xFF, 0xFF},
                                     {0xFF, 0xFF, 0xFE, 0xFF},
                                     {0xFF, 0xFE, 0xFF, 0xFF}};
    static const uint8_t u[4][4] = {{1, 2, 3, 4}, {4, 3, 2, 1}, {2, 1, 4, 3}, {3, 4, 1, 2}};
    capture c;
    device_reset();
    for (int i = 0; i < 4; i++) {
        put_bytes(input, 2 * i, m2[i], 4);
        put_bytes(input, 8 + 2 * i, u[i], 4);
    }
    decode(p, &c, NULL, 0);
    assert_good(&c, "i_abcd", -2, 0);
    assert_good(&c, "i_dcba", -2, 0);
    assert_good(&c, "i_badc", -2, 0);
    assert_good(&c, "i_cdab", -2, 0);
    assert_good(&c, "u_abcd", 16909060, 0);
    assert_good(&c, "u_dcba", 16909060, 0);
    assert_good(&c, "u_badc", 16909060, 0);
    assert_good(&c, "u_cdab", 16909060, 0);
    /* The most negative int32 and the largest uint32. */
    static const uint8_t mn[4] = {0x80, 0, 0, 0}, mx[4] = {0xFF, 0xFF, 0xFF, 0xFF};
    put_bytes(input, 0, mn, 4);
    put_bytes(input, 8, mx, 4);
    decode(p, &c, NULL, 0);
    assert_good(&c, "i_abcd", -2147483648.0, 0);
    assert_good(&c, "u_abcd", 4294967295.0, 0);
    gw_profile_free(p);
}

static void test_64bit_orders(void **state)
{
    (void)state;
    gw_profile *p =
        load("name: t\ndevice_type: t\npoints:\n"
             "  - {name: a, kind: holding, address: 0, type: uint64, order: ABCDEFGH}\n"
             "  - {name: b, kind: holding, address: 4, type: uint64, order: HGFEDCBA}\n"
             "  - {name: c, kind: holding, address: 8, type: uint64, order: BADCFEHG}\n"
             "  - {name: d, kind: holding, address: 12, type: uint64, order: GHEFCDAB}\n"
             "  - {name: neg, kind: holding, address: 16, type: int64, order: GHEFCDAB}\n"
             "  - {name: f64, kind: holding, address: 20, type: float64, order: GHEFCDAB}\n"
             "  - {name: f64be, kind: holding, address: 24, type: float64}\n");
    /* 0x0001020304050607 */
    static const uint8_t w[4][8] = {{0, 1, 2, 3, 4, 5, 6, 7},
                                    {7, 6, 5, 4, 3, 2, 1, 0},
                                    {1, 0, 3, 2, 5, 4, 7, 6},
                                    {6, 7, 4, 5, 2, 3, 0, 1}};
    /* -2 = FF..FE, word-reversed: FF FE then FF FF x3 */
    static const uint8_t neg[8] = {0xFF, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
    /* 123.456 = 0x405EDD2F1A9FBE77 */
    static const uint8_t fbe[8] = {0x40, 0x5E, 0xDD, 0x2F, 0x1A, 0x9F, 0xBE, 0x77};
    static const uint8_t fsw[8] = {0xBE, 0x77, 0x1A, 0x9F, 0xDD, 0x2F, 0x40, 0x5E};
    capture c;
    device_reset();
    for (int i = 0; i < 4; i++)
        put_bytes(holding, 4 * i, w[i], 8);
    put_bytes(holding, 16, neg, 8);
    put_bytes(holding, 20, fsw, 8);
    put_bytes(holding, 24, fbe, 8);
    decode(p, &c, NULL, 0);
    double want = (double)0x0001020304050607ull;
    assert_good(&c, "a", want, 0);
    assert_good(&c, "b", want, 0);
    assert_good(&c, "c", want, 0);
    assert_good(&c, "d", want, 0);
    assert_good(&c, "neg", -2, 0);
    assert_good(&c, "f64", 123.456, 1e-12);
    assert_good(&c, "f64be", 123.456, 1e-12);
    gw_profile_free(p);
}

static void test_16bit_bcd_bits(void **state)
{
    (void)state;
    gw_profile *p =
        load("name: t\ndevice_type: t\npoints:\n"
             "  - {name: s_ab, kind: holding, address: 0, type: int16}\n"
             "  - {name: s_ba, kind: holding, address: 1, type: int16, order: BA}\n"
             "  - {name: u_ab, kind: holding, address: 0, type: uint16, order: AB}\n"
             "  - {name: bcd_a, kind: holding, address: 2, type: bcd}\n"
             "  - {name: bcd_b, kind: holding, address: 3, type: bcd32}\n"
             "  - {name: bcd_c, kind: holding, address: 5, type: bcd32, order: CDAB}\n"
             "  - {name: bcd_bad, kind: holding, address: 7, type: bcd16}\n"
             "  - {name: field, kind: holding, address: 8, type: bits, bit: 4, width: 4}\n"
             "  - {name: top, kind: holding, address: 8, type: bits, bit: 12, width: 4}\n"
             "  - {name: b15, kind: holding, address: 8, type: bool, bit: 15}\n"
             "  - {name: b2, kind: holding, address: 8, type: bool, bit: 2}\n"
             "  - {name: nz, kind: holding, address: 9, type: bool}\n"
             "  - {name: swapped_bit, kind: holding, address: 10, type: bool, bit: 0,"
             " order: BA}\n");
    capture c;
    device_reset();
    holding[0] = 0xFFFE;
    holding[1] = 0xFEFF;
    holding[2] = 0x1234;
    holding[3] = 0x1234;
    holding[4] = 0x5678;
    holding[5] = 0x5678;
    holding[6] = 0x1234;
    holding[7] = 0x12A4;
    holding[8] = 0xA5C3;
    holding[9] = 0x0100;
    holding[10] = 0x0100; /* bytes 01 00 swapped: value 0x0001 */
    decode(p, &c, NULL, 0);
    assert_good(&c, "s_ab", -2, 0);
    assert_good(&c, "s_ba", -2, 0);
    assert_good(&c, "u_ab", 65534, 0);
    assert_good(&c, "bcd_a", 1234, 0);
    assert_good(&c, "bcd_b", 12345678, 0);
    assert_good(&c, "bcd_c", 12345678, 0);
    assert_bad(&c, "bcd_bad", GW_R_DEVICE_FLAG);
    assert_good(&c, "field", 0xC, 0);
    assert_good(&c, "top", 0xA, 0);
    assert_good(&c, "b15", 1, 0);
    assert_good(&c, "b2", 0, 0);
    assert_good(&c, "nz", 1, 0);
    assert_good(&c, "swapped_bit", 1, 0);
    gw_profile_free(p);
}

static void test_string_and_coils(void **state)
{
    (void)state;
    gw_profile *p = load("name: t\ndevice_type: t\npoints:\n"
                         "  - {name: serial, kind: holding, address: 0, type: string, length: 5}\n"
                         "  - {name: model, kind: holding, address: 5, type: string, length: 2,"
                         " order: BA}\n"
                         "  - {name: c0, kind: coil, address: 0, type: bool}\n"
                         "  - {name: c3, kind: coil, address: 3, type: bool}\n"
                         "  - {name: c9, kind: coil, address: 9, type: bool}\n"
                         "  - {name: d1, kind: discrete, address: 1, type: bool}\n");
    static const gw_mb_request want[] = {{1, 0, 10}, {2, 1, 1}, {3, 0, 7}};
    assert_reqs(p, want, 3);
    capture c;
    device_reset();
    put_bytes(holding, 0, (const uint8_t *)"WL100-SN\x01 ", 10);
    put_bytes(holding, 5, (const uint8_t *)"LW\0R", 4); /* "WLR" with bytes swapped */
    coils[0] = 1;
    coils[9] = 1;
    discrete[1] = 1;
    decode(p, &c, NULL, 0);
    assert_int_equal(c.ne, 2);
    assert_string_equal(c.e[0].kind, "serial");
    assert_string_equal(c.e[0].detail, "WL100-SN?");
    assert_int_equal(c.e[0].active, 1);
    assert_string_equal(c.e[1].detail, "WLR");
    assert_int_equal(c.nr, 4);
    assert_good(&c, "c0", 1, 0);
    assert_good(&c, "c3", 0, 0);
    assert_good(&c, "c9", 1, 0);
    assert_good(&c, "d1", 1, 0);
    gw_profile_free(p);
}

/* ---- scaling, units, ranges ---- */

static void test_scale_offset_range(void **state)
{
    (void)state;
    gw_profile *p = load("name: t\ndevice_type: t\npoints:\n"
                         "  - {name: t1, kind: holding, address: 0, type: uint16, scale: 0.1,"
                         " offset: -5, unit: C, range: [-10, 100]}\n"
                         "  - {name: low, kind: holding, address: 1, type: int16, range: [0, ~]}\n"
                         "  - {name: raw, kind: holding, address: 2, type: uint16, internal: "
                         "true}\n");
    capture c;
    device_reset();
    holding[0] = 1000;
    holding[1] = (uint16_t)-3;
    decode(p, &c, NULL, 0);
    assert_int_equal(c.nr, 2); /* the internal point is not emitted */
    assert_good(&c, "t1", 95, 1e-9);
    assert_string_equal(find_r(&c, "t1")->unit, "C");
    assert_int_equal(find_r(&c, "t1")->recv_ms, 1700000000000);
    assert_bad(&c, "low", GW_R_OUT_OF_RANGE);
    assert_true(find_r(&c, "low")->value == -3); /* kept for diagnosis */
    holding[0] = 1060;                           /* 101 */
    holding[1] = 7;
    decode(p, &c, NULL, 0);
    assert_bad(&c, "t1", GW_R_OUT_OF_RANGE);
    assert_good(&c, "low", 7, 0);
    holding[0] = 1050; /* exactly 100: inside */
    decode(p, &c, NULL, 0);
    assert_good(&c, "t1", 100, 1e-9);
    gw_profile_free(p);
}

static void test_decimals_and_unit_codes(void **state)
{
    (void)state;
    gw_profile *p = NULL;
    char err[256];
    assert_int_equal(
        gw_profile_load_file(&p, "adapters/profiles/pressure-transmitter.yaml", err, sizeof(err)),
        0);
    static const gw_mb_request want[] = {{3, 2, 3}};
    assert_reqs(p, want, 1);
    capture c;
    device_reset();
    holding[2] = 3; /* bar */
    holding[3] = 2; /* decimals */
    holding[4] = 1234;
    decode(p, &c, NULL, 0);
    assert_int_equal(c.nr, 1);
    assert_good(&c, "pressure", 1234.0, 1e-9); /* 12.34 bar = 1234 kPa */
    assert_string_equal(c.r[0].unit, "kPa");
    holding[2] = 0; /* MPa */
    holding[3] = 3;
    holding[4] = (uint16_t)-1500; /* -1.5 MPa: below range */
    decode(p, &c, NULL, 0);
    assert_bad(&c, "pressure", GW_R_OUT_OF_RANGE);
    holding[4] = 1500;
    decode(p, &c, NULL, 0);
    assert_good(&c, "pressure", 1500.0, 1e-9);
    holding[3] = 12; /* impossible decimals */
    decode(p, &c, NULL, 0);
    assert_bad(&c, "pressure", GW_R_DEVICE_FLAG);
    holding[3] = 1;
    holding[2] = 99; /* unknown unit code */
    decode(p, &c, NULL, 0);
    assert_bad(&c, "pressure", GW_R_DEVICE_FLAG);
    gw_profile_free(p);

    /* A code without a factor emits the device's unit unchanged. */
    p = load("name: t\ndevice_type: t\npoints:\n"
             "  - {name: u, kind: input, address: 0, type: uint16, internal: true}\n"
             "  - name: level\n    kind: input\n    address: 1\n    type: uint16\n"
             "    unit_from: u\n    unit_codes: {0: m, 1: cm, 0x10: mm}\n");
    device_reset();
    input[0] = 0x10;
    input[1] = 250;
    decode(p, &c, NULL, 0);
    assert_good(&c, "level", 250, 0);
    assert_string_equal(c.r[0].unit, "mm");
    input[0] = 1;
    decode(p, &c, NULL, 0);
    assert_string_equal(c.r[0].unit, "cm");
    gw_profile_free(p);
}

/* ---- derived points ---- */

static const char *radar_split =
    "name: t\ndevice_type: t\n"
    "params:\n  install_height: {fallback: h_reg}\n  base: {default: 100}\n  nothing:\n"
    "points:\n"
    "  - {name: gap, kind: input, address: 1, type: uint16, scale: 0.001, unit: m}\n"
    "  - {name: h_reg, kind: holding, address: 5, type: uint16, scale: 0.01, unit: m}\n"
    "  - {name: depth, derived: \"install_height - gap\", unit: m, range: [0, 20]}\n"
    "  - {name: level, derived: \"base + depth\", unit: m}\n"
    "  - {name: calc, derived: \"2 + 3 * (gap * 1000 - 1) / -2 - -1\"}\n"
    "  - {name: div0, derived: \"gap / (depth - depth)\"}\n"
    "  - {name: missing, derived: \"nothing + 1\"}\n";

static void test_derived(void **state)
{
    (void)state;
    gw_profile *p = load(radar_split);
    capture c;
    device_reset();
    input[1] = 1200;  /* 1.2 m air gap */
    holding[5] = 450; /* 4.5 m install height */
    gw_param site = {"install_height", 5.0};
    decode(p, &c, &site, 1);
    assert_good(&c, "depth", 3.8, 1e-9); /* site value wins over the register */
    assert_good(&c, "level", 103.8, 1e-9);
    assert_good(&c, "calc", 2 + 3 * (1200.0 - 1) / -2 + 1, 1e-9);
    assert_bad(&c, "div0", GW_R_OUT_OF_RANGE);
    assert_bad(&c, "missing", GW_R_MISSING);
    decode(p, &c, NULL, 0);
    assert_good(&c, "depth", 3.3, 1e-9); /* falls back to the register */
    input[1] = 6000;
    decode(p, &c, NULL, 0);
    assert_bad(&c, "depth", GW_R_OUT_OF_RANGE); /* gap above the install height */

    /* A bad input makes the derived value bad with the input's reason. */
    answers a;
    gw_sink s = {on_reading, on_event, &c};
    input[1] = 1200;
    answer(p, &a);
    const gw_mb_request *rq;
    gw_profile_requests(p, &rq);
    assert_int_equal(rq[1].fc, 4);
    a.res[1].status = GW_EAGAIN; /* the input register read timed out */
    memset(&c, 0, sizeof(c));
    assert_int_equal(gw_profile_decode(p, &site, 1, a.res, a.n, 1, &s), 0);
    assert_bad(&c, "gap", GW_R_COMM_FAIL);
    assert_bad(&c, "depth", GW_R_COMM_FAIL);
    assert_bad(&c, "level", GW_R_COMM_FAIL);
    assert_good(&c, "h_reg", 4.5, 1e-9);
    gw_profile_free(p);
}

/* ---- request planning ---- */

static void test_plan_merge_and_gap(void **state)
{
    (void)state;
    gw_profile *p = load("name: t\ndevice_type: t\npoints:\n"
                         "  - {name: a, kind: holding, address: 0, type: uint16}\n"
                         "  - {name: b, kind: holding, address: 1, type: uint32}\n"
                         "  - {name: c, kind: holding, address: 11, type: uint16}\n"
                         "  - {name: d, kind: holding, address: 21, type: uint16}\n"
                         "  - {name: e, kind: holding, address: 20, type: uint16}\n");
    /* 3 -> 11 bridges 8 registers (merged); 12 -> 20 bridges 8 as well. */
    static const gw_mb_request want[] = {{3, 0, 22}};
    assert_reqs(p, want, 1);
    gw_profile_free(p);

    p = load("name: t\ndevice_type: t\nmax_gap: 7\npoints:\n"
             "  - {name: a, kind: holding, address: 0, type: uint16}\n"
             "  - {name: b, kind: holding, address: 1, type: uint32}\n"
             "  - {name: c, kind: holding, address: 11, type: uint16}\n"
             "  - {name: d, kind: holding, address: 18, type: uint16}\n");
    static const gw_mb_request want2[] = {{3, 0, 3}, {3, 11, 8}};
    assert_reqs(p, want2, 2);
    gw_profile_free(p);

    /* Overlapping points share registers. */
    p = load("name: t\ndevice_type: t\nmax_gap: 0\npoints:\n"
             "  - {name: a, kind: input, address: 10, type: uint32}\n"
             "  - {name: b, kind: input, address: 11, type: bits, bit: 0, width: 3}\n"
             "  - {name: c, kind: input, address: 12, type: uint16}\n"
             "  - {name: d, kind: input, address: 14, type: uint16}\n");
    static const gw_mb_request want3[] = {{4, 10, 3}, {4, 14, 1}};
    assert_reqs(p, want3, 2);
    gw_profile_free(p);
}

static void test_plan_limits(void **state)
{
    (void)state;
    gw_profile *p = load("name: t\ndevice_type: t\nmax_gap: 124\npoints:\n"
                         "  - {name: a, kind: holding, address: 0, type: uint16}\n"
                         "  - {name: b, kind: holding, address: 120, type: uint32}\n"
                         "  - {name: c, kind: holding, address: 124, type: float64}\n"
                         "  - {name: d, kind: holding, address: 300, type: uint16}\n"
                         "  - {name: e, kind: holding, address: 424, type: uint16}\n");
    static const gw_mb_request want[] = {{3, 0, 122}, {3, 124, 4}, {3, 300, 125}};
    assert_reqs(p, want, 3);
    gw_profile_free(p);

    /* A device that reads at most 10 registers at once. */
    p = load("name: t\ndevice_type: t\nmax_read_registers: 10\npoints:\n"
             "  - {name: a, kind: holding, address: 0, type: uint16}\n"
             "  - {name: b, kind: holding, address: 8, type: uint16}\n"
             "  - {name: c, kind: holding, address: 9, type: uint32}\n");
    static const gw_mb_request want2[] = {{3, 0, 9}, {3, 9, 2}};
    assert_reqs(p, want2, 2);
    gw_profile_free(p);

    /* Coils bridge 64 by default, and 2000 bits at most per read. */
    p = load("name: t\ndevice_type: t\nmax_gap_bits: 1999\npoints:\n"
             "  - {name: a, kind: coil, address: 0, type: bool}\n"
             "  - {name: b, kind: coil, address: 1999, type: bool}\n"
             "  - {name: c, kind: coil, address: 2000, type: bool}\n");
    static const gw_mb_request want3[] = {{1, 0, 2000}, {1, 2000, 1}};
    assert_reqs(p, want3, 2);
    gw_profile_free(p);
    p = load("name: t\ndevice_type: t\npoints:\n"
             "  - {name: a, kind: discrete, address: 0, type: bool}\n"
             "  - {name: b, kind: discrete, address: 65, type: bool}\n"
             "  - {name: c, kind: discrete, address: 131, type: bool}\n");
    static const gw_mb_request want4[] = {{2, 0, 66}, {2, 131, 1}};
    assert_reqs(p, want4, 2);
    gw_profile_free(p);
}

static void test_plan_unreadable_and_kinds(void **state)
{
    (void)state;
    gw_profile *p = load("name: t\ndevice_type: t\n"
                         "unreadable:\n"
                         "  - {kind: holding, from: 2, to: 3}\n"
                         "  - {kind: input, from: 0x10, to: 0x1F}\n"
                         "points:\n"
                         "  - {name: h0, kind: holding, address: 0, type: uint16}\n"
                         "  - {name: h5, kind: holding, address: 5, type: uint16}\n"
                         "  - {name: h6, kind: holding, address: 6, type: uint16}\n"
                         "  - {name: i2, kind: input, address: 2, type: uint16}\n"
                         "  - {name: i0, kind: input, address: 0, type: uint16}\n"
                         "  - {name: c100, kind: coil, address: 100, type: bool}\n"
                         "  - {name: c5, kind: coil, address: 5, type: bool}\n"
                         "  - {name: d0, kind: discrete, address: 0, type: bool}\n");
    /* Holding 0 and 5 are not bridged across 2..3; input 0 and 2 are (the
     * input range is elsewhere); coils 5 and 100 are 94 apart (> 64). */
    static const gw_mb_request want[] = {{1, 5, 1}, {1, 100, 1}, {2, 0, 1},
                                         {3, 0, 1}, {3, 5, 2},   {4, 0, 3}};
    assert_reqs(p, want, 6);
    /* Decoding follows the plan. */
    capture c;
    device_reset();
    holding[0] = 10;
    holding[5] = 50;
    holding[6] = 60;
    input[0] = 1;
    input[2] = 3;
    coils[100] = 1;
    decode(p, &c, NULL, 0);
    assert_good(&c, "h0", 10, 0);
    assert_good(&c, "h5", 50, 0);
    assert_good(&c, "h6", 60, 0);
    assert_good(&c, "i0", 1, 0);
    assert_good(&c, "i2", 3, 0);
    assert_good(&c, "c100", 1, 0);
    assert_good(&c, "c5", 0, 0);
    gw_profile_free(p);

    assert_non_null(strstr(load_err("name: t\ndevice_type: t\n"
                                    "unreadable: [{kind: holding, from: 2, to: 3}]\n"
                                    "points:\n"
                                    "  - {name: a, kind: holding, address: 1, type: uint32}\n"),
                           "unreadable"));
}

static void test_failed_request_marks_only_its_points(void **state)
{
    (void)state;
    gw_profile *p = load("name: t\ndevice_type: t\npoints:\n"
                         "  - {name: h, kind: holding, address: 0, type: uint16}\n"
                         "  - {name: h2, kind: holding, address: 1, type: uint16}\n"
                         "  - {name: i, kind: input, address: 0, type: uint16}\n"
                         "  - {name: c, kind: coil, address: 0, type: bool}\n");
    answers a;
    capture c;
    gw_sink s = {on_reading, on_event, &c};
    device_reset();
    holding[0] = 7;
    input[0] = 9;
    coils[0] = 1;
    answer(p, &a);       /* coil, holding, input */
    a.res[1].status = 2; /* illegal data address */
    a.res[1].data = NULL;
    a.res[1].len = 0;
    memset(&c, 0, sizeof(c));
    assert_int_equal(gw_profile_decode(p, NULL, 0, a.res, a.n, 5, &s), 0);
    assert_int_equal(c.nr, 4);
    assert_bad(&c, "h", GW_R_COMM_FAIL);
    assert_bad(&c, "h2", GW_R_COMM_FAIL);
    assert_good(&c, "i", 9, 0);
    assert_good(&c, "c", 1, 0);
    gw_profile_free(p);
}

/* ---- hostile input ---- */

static void test_hostile_results(void **state)
{
    (void)state;
    gw_profile *p = load("name: t\ndevice_type: t\npoints:\n"
                         "  - {name: h, kind: holding, address: 0, type: uint32}\n"
                         "  - {name: c, kind: coil, address: 0, type: bool}\n"
                         "  - {name: c9, kind: coil, address: 9, type: bool}\n");
    answers a;
    capture c;
    gw_sink s = {on_reading, on_event, &c};
    device_reset();
    answer(p, &a);
    memset(&c, 0, sizeof(c));
    assert_int_equal(gw_profile_decode(p, NULL, 0, a.res, a.n - 1, 0, &s), GW_EINVAL);
    assert_int_equal(gw_profile_decode(p, NULL, 0, NULL, a.n, 0, &s), GW_EINVAL);
    a.res[1].len = 3; /* holding: 2 registers need 4 bytes */
    assert_int_equal(gw_profile_decode(p, NULL, 0, a.res, a.n, 0, &s), GW_EMALFORMED);
    a.res[1].len = 5;
    assert_int_equal(gw_profile_decode(p, NULL, 0, a.res, a.n, 0, &s), GW_EMALFORMED);
    a.res[1].len = 4;
    a.res[0].len = 1; /* 10 coils need 2 bytes */
    assert_int_equal(gw_profile_decode(p, NULL, 0, a.res, a.n, 0, &s), GW_EMALFORMED);
    a.res[0].len = 2;
    a.res[0].data = NULL;
    assert_int_equal(gw_profile_decode(p, NULL, 0, a.res, a.n, 0, &s), GW_EMALFORMED);
    assert_int_equal(c.nr, 0); /* nothing was emitted by the failed calls */
    answer(p, &a);
    assert_int_equal(gw_profile_decode(p, NULL, 0, a.res, a.n, 0, NULL), 0);
    /* A sink error stops decoding and is returned. */
    c.stop_after = 1;
    assert_int_equal(gw_profile_decode(p, NULL, 0, a.res, a.n, 0, &s), GW_EFULL);
    assert_int_equal(c.nr, 1);
    gw_profile_free(p);
}

/* ---- loader errors ---- */

static void expect_err(const char *text, const char *line, const char *words)
{
    const char *e = load_err(text);
    if (!strstr(e, line) || !strstr(e, words))
        fail_msg("error '%s' lacks '%s' or '%s'", e, line, words);
}

#define HDR "name: t\ndevice_type: t\npoints:\n"

static void test_loader_errors(void **state)
{
    (void)state;
    expect_err(HDR "  - name: a\n    kind: holding\n    adress: 1\n",
               "t.yaml:6:", "unknown key 'points[0].adress'");
    expect_err("name: t\ndevice_type: t\ncolour: red\npoints: []\n",
               "t.yaml:3:", "unknown key 'colour'");
    expect_err(HDR "  - name: a\n    kind: holding\n    address: ten\n    type: uint16\n",
               "t.yaml:6:", "points[0].address");
    expect_err(HDR "  - {name: a, kind: holding, address: 0, type: uint16}\n"
                   "  - name: b\n    kind: holding\n    address: 1\n    type: int16\n"
                   "    order: ABCD\n",
               "t.yaml:9:", "key 'points[1].order': 'ABCD' is not valid for int16");
    expect_err(HDR "  - {name: a, kind: holding, address: 0, type: float32, order: AB}\n",
               "t.yaml:4:", "points[0].order");
    expect_err(HDR "  - {name: a, kind: holding, address: 0, type: uint64, order: CDAB}\n",
               "t.yaml:4:", "HGFEDCBA");
    expect_err(HDR "  - {name: a, kind: holding, address: 0, type: uint16}\n"
                   "  - name: d\n    derived: \"a - gap\"\n",
               "t.yaml:6:", "points[1].derived': unknown point or param 'gap'");
    expect_err(HDR "  - {name: a, kind: holding, address: 0, type: uint16}\n"
                   "  - name: v\n    kind: holding\n    address: 1\n    type: int16\n"
                   "    decimals_from: dec\n",
               "t.yaml:9:", "points[1].decimals_from': unknown point 'dec'");
    expect_err(HDR "  - {name: a, kind: holding, address: 70000, type: uint16}\n",
               "t.yaml:4:", "points[0].address");
    expect_err(HDR "  - {name: a, kind: holding, address: 65535, type: uint32}\n",
               "t.yaml:4:", "passes 0xFFFF");
    expect_err(HDR "  - {name: a, kind: holding, address: 010, type: uint16}\n",
               "t.yaml:4:", "leading zero");
    expect_err(HDR "  - {name: a, kind: coil, address: 0, type: int16}\n",
               "t.yaml:4:", "coil points must be bool");
    expect_err(HDR "  - {name: a, kind: input, address: 0, type: uint16, writable: true}\n",
               "t.yaml:4:", "points[0].writable");
    expect_err(HDR "  - {name: a, kind: holding, address: 0, type: uint16}\n"
                   "  - {name: a, kind: holding, address: 1, type: uint16}\n",
               "t.yaml:5:", "defined twice");
    expect_err(HDR "  - {name: a, metric: m, kind: holding, address: 0, type: uint16}\n"
                   "  - {name: b, metric: m, kind: holding, address: 1, type: uint16}\n",
               "t.yaml:5:", "metric 'm' is already emitted");
    expect_err(HDR "  - {name: a, address: 0, type: uint16}\n", "t.yaml:4:", "points[0].kind");
    expect_err(HDR "  - {name: a, kind: holding, address: 0, type: bits, width: 2}\n",
               "t.yaml:4:", "points[0].bit");
    expect_err(HDR "  - {name: a, kind: holding, address: 0, type: bits, bit: 10, width: 8}\n",
               "t.yaml:4:", "points[0].width");
    expect_err(HDR "  - {name: a, kind: holding, address: 0, type: uint16, deadband: lots}\n",
               "t.yaml:4:", "points[0].deadband");
    expect_err(HDR "  - {name: a, kind: holding, address: 0, type: uint16, range: [5, 1]}\n",
               "t.yaml:4:", "points[0].range");
    expect_err(HDR "  - {name: a, kind: holding, address: 0, type: uint16, range: 5}\n",
               "t.yaml:4:", "points[0].range");
    expect_err(HDR "  - {name: u, kind: holding, address: 0, type: uint16}\n"
                   "  - {name: a, kind: holding, address: 1, type: uint16, unit_from: u}\n",
               "t.yaml:5:", "unit_codes");
    expect_err(HDR "  - {name: a, kind: holding, address: 0, type: int17}\n",
               "t.yaml:4:", "points[0].type' must be one of");
    expect_err(HDR "  - {name: a, kind: holding, address: 0, type: uint16, scale: \"2\"}\n",
               "t.yaml:4:", "points[0].scale");
    expect_err(HDR "  - {name: a, kind: holding, address: 0, type: uint16}\n"
                   "  - {name: d, derived: \"a + (1\"}\n",
               "t.yaml:5:", "missing ')'");
    expect_err(HDR "  - {name: d, derived: \"e + 1\"}\n  - {name: e, derived: \"2\"}\n",
               "t.yaml:4:", "must be defined before");
    expect_err(HDR "  - {name: d, derived: \"((((((((((((((((((1))))))))))))))))))\"}\n",
               "t.yaml:4:", "nested deeper");
    expect_err(HDR "  - {name: d, kind: holding, derived: \"1\"}\n",
               "t.yaml:4:", "points[0].kind': does not apply to a derived point");
    expect_err(HDR "  - {name: 9a, kind: holding, address: 0, type: uint16}\n",
               "t.yaml:4:", "points[0].name");
    expect_err(HDR "  - {name: a, kind: coil, address: 0, type: bool, scale: 2}\n",
               "t.yaml:4:", "does not apply to type bool");
    expect_err(HDR "  - {name: a, kind: holding, address: 0, type: uint32, writable: true,"
                   " write_fc: 6}\n",
               "t.yaml:4:", "points[0].write_fc");
    expect_err("name: t\ndevice_type: t\nparams: {x: {fallback: nope}}\n"
               "points:\n"
               "  - {name: a, kind: holding, address: 0, type: uint16}\n",
               "t.yaml:3:", "params.x.fallback': unknown point 'nope'");
    expect_err("name: t\ndevice_type: t\n", "t.yaml:1:", "missing required key 'points'");
    expect_err(HDR "  - {name: a, kind: holding, address: 0, type: uint16\n", "t.yaml:", "");
    expect_err(HDR "  - {name: a, kind: holding, address: 0, type: string, length: 65}\n",
               "t.yaml:4:", "points[0].length");
    expect_err("name: t\ndevice_type: t\nmax_read_registers: 126\npoints: []\n",
               "t.yaml:3:", "max_read_registers");
    expect_err("name: t\ndevice_type: t\npoints:\n  - {? [a]: 1}\n", "t.yaml:", "scalars");
    expect_err("", "", "empty");
}

/* ---- shipped profiles ---- */

static void test_shipped_profiles(void **state)
{
    (void)state;
    static const char *const names[] = {
        "waterlogging-wl100",   "sl651-rain-gauge",     "sl651-water-level", "radar-level",
        "pressure-transmitter", "flowmeter-float-cdab", "alarm-output"};
    char err[256], path[128];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        gw_profile *p = NULL, *q = NULL;
        snprintf(path, sizeof(path), "adapters/profiles/%s.yaml", names[i]);
        if (gw_profile_load_file(&p, path, err, sizeof(err)))
            fail_msg("%s", err);
        if (gw_profile_load_embedded(&q, names[i], err, sizeof(err)))
            fail_msg("%s", err);
        assert_string_equal(gw_profile_name(p), names[i]);
        assert_string_equal(gw_profile_name(q), names[i]);
        const gw_mb_request *r1, *r2;
        size_t n1 = gw_profile_requests(p, &r1), n2 = gw_profile_requests(q, &r2);
        assert_int_equal(n1, n2);
        assert_memory_equal(r1, r2, n1 * sizeof(*r1));
        assert_true(n1 >= 1);
        gw_profile_free(p);
        gw_profile_free(q);
    }
    gw_profile *p = NULL;
    assert_int_equal(gw_profile_load_embedded(&p, "no-such-device", err, sizeof(err)),
                     GW_ENOTFOUND);
    assert_int_equal(gw_profile_load_embedded(&p, "../gateway/default", err, sizeof(err)),
                     GW_EINVAL);
    assert_int_equal(gw_profile_load_file(&p, "no/such/file.yaml", err, sizeof(err)), GW_ENOTFOUND);
}

static gw_profile *embedded(const char *name)
{
    gw_profile *p = NULL;
    char err[256];
    if (gw_profile_load_embedded(&p, name, err, sizeof(err)))
        fail_msg("%s", err);
    return p;
}

static void test_shipped_decode(void **state)
{
    (void)state;
    capture c;

    gw_profile *p = embedded("waterlogging-wl100");
    assert_string_equal(gw_profile_device_type(p), "waterlogging");
    static const gw_mb_request w1[] = {{3, 0, 3}};
    assert_reqs(p, w1, 1);
    device_reset();
    holding[0] = 123;           /* 123 mm */
    holding[1] = 1234;          /* 12.34 V */
    holding[2] = (uint16_t)-55; /* -5.5 C */
    decode(p, &c, NULL, 0);
    assert_good(&c, "water_depth", 12.3, 1e-9);
    assert_string_equal(find_r(&c, "water_depth")->unit, "cm");
    assert_good(&c, "supply_voltage", 12.34, 1e-9);
    assert_good(&c, "temperature", -5.5, 1e-9);
    holding[0] = 5001;
    decode(p, &c, NULL, 0);
    assert_bad(&c, "water_depth", GW_R_OUT_OF_RANGE);
    gw_profile_free(p);

    p = embedded("sl651-rain-gauge");
    static const gw_mb_request w2[] = {{3, 0, 2}};
    assert_reqs(p, w2, 1);
    device_reset();
    holding[0] = 0x0001;
    holding[1] = 0x86A1; /* 100001 = 10000.1 mm */
    decode(p, &c, NULL, 0);
    assert_good(&c, "rain_total", 10000.1, 1e-6);
    gw_profile_free(p);

    p = embedded("sl651-water-level");
    static const gw_mb_request w3[] = {{3, 2, 2}};
    assert_reqs(p, w3, 1);
    device_reset();
    holding[2] = 0x0000;
    holding[3] = 0x0C85; /* 3205 mm */
    decode(p, &c, NULL, 0);
    assert_good(&c, "water_level", 3.205, 1e-9);
    gw_profile_free(p);

    p = embedded("radar-level");
    static const gw_mb_request w4[] = {{3, 1, 5}};
    assert_reqs(p, w4, 1);
    device_reset();
    holding[1] = 1500; /* air gap 1.5 m */
    holding[3] = 2000; /* level 2 m */
    holding[5] = 350;  /* 3.5 m */
    decode(p, &c, NULL, 0);
    assert_good(&c, "air_gap", 1.5, 1e-9);
    assert_good(&c, "water_level", 2.0, 1e-9);
    assert_good(&c, "install_height", 3.5, 1e-9);
    assert_good(&c, "water_depth", 2.0, 1e-9);
    gw_param site = {"install_height", 4.0};
    decode(p, &c, &site, 1);
    assert_good(&c, "water_depth", 2.5, 1e-9);
    gw_profile_free(p);

    p = embedded("flowmeter-float-cdab");
    static const gw_mb_request w5[] = {{4, 0, 8}};
    assert_reqs(p, w5, 1);
    device_reset();
    /* 123.456f CDAB; -0.5f = BF000000 CDAB; 123.456 float64 GHEFCDAB */
    static const uint8_t fl[4] = {0xE9, 0x79, 0x42, 0xF6}, vel[4] = {0x00, 0x00, 0xBF, 0x00};
    static const uint8_t tot[8] = {0xBE, 0x77, 0x1A, 0x9F, 0xDD, 0x2F, 0x40, 0x5E};
    put_bytes(input, 0, fl, 4);
    put_bytes(input, 2, vel, 4);
    put_bytes(input, 4, tot, 8);
    decode(p, &c, NULL, 0);
    assert_good(&c, "flow", 123.456, 1e-4);
    assert_good(&c, "velocity", -0.5, 0);
    assert_good(&c, "flow_total", 123.456, 1e-12);
    gw_profile_free(p);

    p = embedded("alarm-output");
    static const gw_mb_request w6[] = {{1, 0, 2}, {3, 0, 1}};
    assert_reqs(p, w6, 2);
    device_reset();
    coils[1] = 1;
    holding[0] = 4;
    decode(p, &c, NULL, 0);
    assert_good(&c, "siren", 0, 0);
    assert_good(&c, "sign", 1, 0);
    assert_good(&c, "sign_message", 4, 0);
    gw_profile_free(p);
}

/* ---- writes ---- */

static void test_encode_write(void **state)
{
    (void)state;
    uint8_t fc, buf[GW_MB_WRITE_MAX];
    uint16_t addr, count;
    size_t len;
    gw_profile *p = embedded("alarm-output");

    len = sizeof(buf);
    assert_int_equal(gw_profile_encode_write(p, "siren", 1, &fc, &addr, &count, buf, &len), 0);
    assert_int_equal(fc, 5);
    assert_int_equal(addr, 0);
    assert_int_equal(count, 1);
    assert_int_equal(len, 2);
    assert_int_equal(buf[0], 0xFF);
    assert_int_equal(buf[1], 0x00);
    len = sizeof(buf);
    assert_int_equal(gw_profile_encode_write(p, "sign", 0, &fc, &addr, &count, buf, &len), 0);
    assert_int_equal(addr, 1);
    assert_int_equal(buf[0], 0x00);
    assert_int_equal(buf[1], 0x00);
    len = sizeof(buf);
    assert_int_equal(gw_profile_encode_write(p, "sign_message", 3, &fc, &addr, &count, buf, &len),
                     0);
    assert_int_equal(fc, 6);
    assert_int_equal(len, 2);
    assert_int_equal(buf[0], 0x00);
    assert_int_equal(buf[1], 0x03);
    len = sizeof(buf);
    assert_int_equal(gw_profile_encode_write(p, "sign_message", 300, &fc, &addr, &count, buf, &len),
                     GW_EINVAL);
    assert_int_equal(gw_profile_encode_write(p, "sign_message", NAN, &fc, &addr, &count, buf, &len),
                     GW_EINVAL);
    assert_int_equal(gw_profile_encode_write(p, "nope", 1, &fc, &addr, &count, buf, &len),
                     GW_ENOTFOUND);
    len = 0; /* output only: callers may pass it uninitialised */
    assert_int_equal(gw_profile_encode_write(p, "siren", 1, &fc, &addr, &count, buf, &len), 0);
    assert_int_equal(len, 2);
    gw_profile_free(p);

    p = embedded("radar-level");
    len = sizeof(buf);
    assert_int_equal(
        gw_profile_encode_write(p, "install_height_reg", 4.5, &fc, &addr, &count, buf, &len), 0);
    assert_int_equal(fc, 6);
    assert_int_equal(addr, 5);
    assert_int_equal(buf[0], 0x01); /* 450 cm = 0x01C2 */
    assert_int_equal(buf[1], 0xC2);
    assert_int_equal(gw_profile_encode_write(p, "air_gap", 1, &fc, &addr, &count, buf, &len),
                     GW_EINVAL);
    assert_int_equal(gw_profile_encode_write(p, "water_depth", 1, &fc, &addr, &count, buf, &len),
                     GW_EINVAL);
    gw_profile_free(p);

    p = load("name: t\ndevice_type: t\npoints:\n"
             "  - {name: f, kind: holding, address: 10, type: float32, order: CDAB,"
             " writable: true}\n"
             "  - {name: i, kind: holding, address: 20, type: int32, order: DCBA,"
             " writable: true, scale: 0.5}\n"
             "  - {name: s, kind: holding, address: 30, type: int16, writable: true,"
             " write_fc: 16}\n"
             "  - {name: c, kind: coil, address: 7, type: bool, writable: true, write_fc: 15}\n"
             "  - {name: b, kind: holding, address: 40, type: bcd16, writable: true}\n"
             "  - {name: u, kind: holding, address: 41, type: uint16, writable: true}\n");
    len = sizeof(buf);
    assert_int_equal(gw_profile_encode_write(p, "f", 123.456, &fc, &addr, &count, buf, &len), 0);
    assert_int_equal(fc, 16);
    assert_int_equal(count, 2);
    assert_int_equal(len, 4);
    static const uint8_t fw[4] = {0xE9, 0x79, 0x42, 0xF6};
    assert_memory_equal(buf, fw, 4);
    len = sizeof(buf);
    assert_int_equal(gw_profile_encode_write(p, "i", -1, &fc, &addr, &count, buf, &len), 0);
    static const uint8_t iw[4] = {0xFE, 0xFF, 0xFF, 0xFF}; /* -2 raw, DCBA */
    assert_memory_equal(buf, iw, 4);
    len = sizeof(buf);
    assert_int_equal(gw_profile_encode_write(p, "s", -2, &fc, &addr, &count, buf, &len), 0);
    assert_int_equal(fc, 16);
    assert_int_equal(count, 1);
    assert_int_equal(buf[0], 0xFF);
    assert_int_equal(buf[1], 0xFE);
    assert_int_equal(gw_profile_encode_write(p, "s", 40000, &fc, &addr, &count, buf, &len),
                     GW_EINVAL);
    assert_int_equal(gw_profile_encode_write(p, "u", -1, &fc, &addr, &count, buf, &len), GW_EINVAL);
    len = sizeof(buf);
    assert_int_equal(gw_profile_encode_write(p, "c", 1, &fc, &addr, &count, buf, &len), 0);
    assert_int_equal(fc, 15);
    assert_int_equal(addr, 7);
    assert_int_equal(len, 1);
    assert_int_equal(buf[0], 1);
    len = sizeof(buf);
    assert_int_equal(gw_profile_encode_write(p, "b", 1234, &fc, &addr, &count, buf, &len), 0);
    assert_int_equal(buf[0], 0x12);
    assert_int_equal(buf[1], 0x34);
    assert_int_equal(gw_profile_encode_write(p, "b", 10000, &fc, &addr, &count, buf, &len),
                     GW_EINVAL);
    gw_profile_free(p);
}

/* ---- report by exception and point info ---- */

static void test_rbe_and_info(void **state)
{
    (void)state;
    gw_profile *p = load("name: t\ndevice_type: t\npoints:\n"
                         "  - {name: abs, kind: holding, address: 0, type: uint16,"
                         " deadband: 0.5, max_silence: 10m}\n"
                         "  - {name: pct, kind: holding, address: 1, type: uint16,"
                         " deadband: 2%, unit: m}\n"
                         "  - {name: all, kind: holding, address: 2, type: uint16}\n"
                         "  - {name: hidden, metric: h, kind: holding, address: 3,"
                         " type: uint16, internal: true}\n");
    int64_t t0 = 1000000;
    assert_int_equal(gw_profile_rbe_should_report(p, 0, 10, t0, 10.5, t0 + 1000), 0);
    assert_int_equal(gw_profile_rbe_should_report(p, 0, 10, t0, 10.6, t0 + 1000), 1);
    assert_int_equal(gw_profile_rbe_should_report(p, 0, 10, t0, 9.4, t0 + 1000), 1);
    assert_int_equal(gw_profile_rbe_should_report(p, 0, 10, t0, 10, t0 + 599999), 0);
    assert_int_equal(gw_profile_rbe_should_report(p, 0, 10, t0, 10, t0 + 600000), 1);
    assert_int_equal(gw_profile_rbe_should_report(p, 0, 10, 0, 10, t0), 1); /* never sent */
    assert_int_equal(gw_profile_rbe_should_report(p, 0, 10, t0, 10, t0 - 1), 1);
    assert_int_equal(gw_profile_rbe_should_report(p, 0, 10, t0, NAN, t0 + 1), 1);
    assert_int_equal(gw_profile_rbe_should_report(p, 1, 100, t0, 102, t0 + 1), 0);
    assert_int_equal(gw_profile_rbe_should_report(p, 1, 100, t0, 97.9, t0 + 1), 1);
    assert_int_equal(gw_profile_rbe_should_report(p, 1, 0, t0, 0, t0 + 1), 0);
    assert_int_equal(gw_profile_rbe_should_report(p, 1, 0, t0, 0.001, t0 + 1), 1);
    assert_int_equal(gw_profile_rbe_should_report(p, 1, 100, t0, 100, t0 + 86400000), 0);
    assert_int_equal(gw_profile_rbe_should_report(p, 2, 5, t0, 5, t0 + 1), 1);
    assert_int_equal(gw_profile_rbe_should_report(p, 9, 5, t0, 5, t0 + 1), GW_EINVAL);

    assert_int_equal(gw_profile_point_count(p), 4);
    assert_int_equal(gw_profile_point_find(p, "pct"), 1);
    assert_int_equal(gw_profile_point_find(p, "zzz"), GW_ENOTFOUND);
    assert_int_equal(gw_profile_metric_find(p, "all"), 2);
    assert_int_equal(gw_profile_metric_find(p, "h"), GW_ENOTFOUND);
    gw_profile_point_info info;
    assert_int_equal(gw_profile_point_get(p, 1, &info), 0);
    assert_string_equal(info.unit, "m");
    assert_int_equal(info.fc, 3);
    assert_int_equal(info.address, 1);
    assert_int_equal(info.count, 1);
    assert_true(info.has_deadband && info.deadband_pct && info.deadband == 2);
    assert_int_equal(gw_profile_point_get(p, 0, &info), 0);
    assert_int_equal(info.max_silence_ms, 600000);
    assert_int_equal(gw_profile_point_get(p, 4, &info), GW_EINVAL);
    gw_profile_free(p);
}

/* ---- status events, enumerations and published precision ---- */

static const char *status_profile =
    HDR "  - {name: level, kind: input, address: 0, type: float32, unit: m, decimals: 2}\n"
        "  - name: status\n    kind: input\n    address: 2\n    type: uint16\n"
        "    events:\n"
        "      - {bit: 0, event: echo_lost}\n"
        "      - {bit: 1, event: tamper}\n"
        "      - {bit: 7, event: door_open, active: low}\n"
        "  - name: state\n    kind: input\n    address: 3\n    type: uint16\n"
        "    codes:\n"
        "      1: antenna_fouled\n"
        "      2: {reason: calibrating, quality: uncertain}\n"
        "      3: {reason: sensor_fault}\n"
        "    applies_to: [level]\n"
        "  - {name: lid, kind: discrete, address: 0, type: bool, events: [{event: lid_open}]}\n";

/* Decodes and passes the events through the edge filter, as the poller does. */
static size_t edges(const gw_profile *p, uint8_t *st, capture *c, char kinds[][32])
{
    size_t n = 0;
    decode(p, c, NULL, 0);
    for (size_t i = 0; i < c->ne; i++) {
        int e = gw_profile_event_edge(p, st, &c->e[i]);
        assert_true(e == 0 || e == 1);
        if (e == 1)
            snprintf(kinds[n++], 32, "%s=%u", c->e[i].kind, c->e[i].active);
    }
    return n;
}

static int has_kind(char kinds[][32], size_t n, const char *want)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(kinds[i], want))
            return 1;
    return 0;
}

static void test_status_events_edges(void **state)
{
    (void)state;
    gw_profile *p = load(status_profile);
    uint8_t st[8] = {0}, st2[8] = {0};
    char k[16][32], text[256];
    capture c;
    assert_int_equal(gw_profile_event_count(p), 5);
    assert_string_equal(gw_profile_event_name(p, 3), "antenna_fouled");
    assert_string_equal(gw_profile_event_name(p, 4), "lid_open");
    assert_null(gw_profile_event_name(p, 5));
    /* A status word emits events, never a reading. */
    assert_int_equal(gw_profile_metric_find(p, "status"), GW_ENOTFOUND);

    device_reset();
    input[2] = 0x0080; /* door closed: bit 7 set, active low */
    decode(p, &c, NULL, 0);
    assert_int_equal(c.nr, 1); /* level only */
    assert_int_equal(c.ne, 5); /* every named event's state, for a bench read */
    assert_int_equal(edges(p, st, &c, k), 0);

    input[2] = 0x0003; /* echo lost, tamper, and the door opened (bit 7 cleared) */
    discrete[0] = 1;
    size_t n = edges(p, st, &c, k);
    assert_int_equal(n, 4);
    assert_true(has_kind(k, n, "echo_lost=1") && has_kind(k, n, "tamper=1") &&
                has_kind(k, n, "door_open=1") && has_kind(k, n, "lid_open=1"));
    for (size_t i = 0; i < c.ne; i++)
        if (!strcmp(c.e[i].kind, "tamper"))
            assert_string_equal(c.e[i].detail, "status bit1=1 (0x0003)");
    assert_int_equal(edges(p, st, &c, k), 0); /* unchanged: nothing new */

    /* A restart: the state comes back from its text, the standing conditions stay quiet. */
    int len = gw_profile_event_state_save(p, st, text, sizeof(text));
    assert_true(len > 0);
    assert_string_equal(text, "echo_lost=1\ntamper=1\ndoor_open=1\nantenna_fouled=0\nlid_open=1\n");
    assert_int_equal(gw_profile_event_state_save(p, st, text, 10), GW_EFULL);
    gw_profile_event_state_save(p, st, text, sizeof(text));
    gw_profile_event_state_load(p, st2, "gone=1\njunk\ntamper=7\n", 22);
    assert_memory_equal(st2, (uint8_t[8]){0}, 8); /* unknown names and bad lines ignored */
    gw_profile_event_state_load(p, st2, text, (size_t)len);
    assert_memory_equal(st, st2, 8);
    assert_int_equal(edges(p, st2, &c, k), 0);

    /* Only what changed goes on: echo back, door closed. */
    input[2] = 0x0082;
    n = edges(p, st2, &c, k);
    assert_int_equal(n, 2);
    assert_true(has_kind(k, n, "echo_lost=0") && has_kind(k, n, "door_open=0"));

    /* A failed request says nothing about its status bits. */
    answers a;
    gw_sink s = {on_reading, on_event, &c};
    answer(p, &a);
    for (size_t i = 0; i < a.n; i++)
        a.res[i].status = GW_EAGAIN;
    memset(&c, 0, sizeof(c));
    assert_int_equal(gw_profile_decode(p, NULL, 0, a.res, a.n, 1, &s), 0);
    assert_int_equal(c.ne, 0);
    /* Events no status point names (string points) are not edge-tracked. */
    gw_event other = {.kind = "serial", .active = 1};
    assert_int_equal(gw_profile_event_edge(p, st, &other), GW_ENOTFOUND);
    gw_profile_free(p);
}

static void test_status_codes(void **state)
{
    (void)state;
    gw_profile *p = load(status_profile);
    uint8_t st[8] = {0};
    char k[16][32];
    capture c;
    device_reset();
    input[0] = 0x3FC0; /* 1.5f */
    input[1] = 0x0000;
    input[2] = 0x0080;
    input[3] = 1; /* antenna fouled: an event */
    size_t n = edges(p, st, &c, k);
    assert_int_equal(n, 1);
    assert_string_equal(k[0], "antenna_fouled=1");
    assert_good(&c, "level", 1.5, 0);

    input[3] = 2; /* calibrating: the level is uncertain, the event ends */
    n = edges(p, st, &c, k);
    assert_int_equal(n, 1);
    assert_string_equal(k[0], "antenna_fouled=0");
    const gw_reading *r = find_r(&c, "level");
    assert_int_equal(r->quality, GW_Q_UNCERTAIN);
    assert_int_equal(r->reason, GW_R_CALIBRATING);
    assert_true(r->value == 1.5); /* the value stays, for diagnosis */

    input[3] = 3;
    decode(p, &c, NULL, 0);
    assert_bad(&c, "level", GW_R_SENSOR_FAULT);
    input[3] = 9; /* a code the table does not know changes nothing */
    decode(p, &c, NULL, 0);
    assert_good(&c, "level", 1.5, 0);
    gw_profile_free(p);
}

static void test_status_loader_errors(void **state)
{
    (void)state;
    expect_err(HDR "  - {name: s, kind: holding, address: 0, type: float32, "
                   "events: [{bit: 0, event: x}]}\n",
               "t.yaml:4:", "needs an integer point");
    expect_err(HDR "  - {name: s, kind: holding, address: 0, type: uint16, "
                   "events: [{bit: 16, event: x}]}\n",
               "t.yaml:4:", "bit 16 is past the value's 16 bits");
    expect_err(HDR "  - {name: s, kind: holding, address: 0, type: uint16, "
                   "events: [{event: x}]}\n",
               "t.yaml:4:", "missing bit");
    expect_err(HDR "  - {name: s, kind: holding, address: 0, type: uint16, "
                   "events: [{bit: 0, event: x}, {bit: 1, event: x}]}\n",
               "t.yaml:4:", "event 'x' is already raised by point 's'");
    expect_err(HDR "  - {name: s, kind: holding, address: 0, type: uint16, scale: 2, "
                   "events: [{bit: 0, event: x}]}\n",
               "t.yaml:4:", "points[0].scale': does not apply to a point with events");
    expect_err(HDR "  - {name: s, kind: holding, address: 0, type: uint16, "
                   "events: [{bit: 0, event: x, active: sideways}]}\n",
               "t.yaml:4:", "active");
    expect_err(HDR "  - {name: s, kind: holding, address: 0, type: uint16, applies_to: [s]}\n",
               "t.yaml:4:", "only applies to a point with codes");
    expect_err(HDR "  - {name: s, kind: holding, address: 0, type: uint16, "
                   "codes: {1: {reason: wet}}}\n",
               "t.yaml:4:", "'wet' is not a reason");
    expect_err(HDR "  - {name: s, kind: holding, address: 0, type: uint16, "
                   "codes: {1: {reason: manual, event: x}}}\n",
               "t.yaml:4:", "not both");
    expect_err(HDR "  - {name: s, kind: holding, address: 0, type: uint16, "
                   "codes: {1: x}, applies_to: [nope]}\n",
               "t.yaml:4:", "unknown point 'nope'");
    expect_err(HDR "  - {name: s, kind: coil, address: 0, type: bool, codes: {1: x}}\n",
               "t.yaml:4:", "takes events, not codes");
    expect_err(HDR "  - {name: a, kind: holding, address: 0, type: uint16, decimals: 10}\n",
               "t.yaml:4:", "points[0].decimals");
    expect_err(HDR "  - {name: a, kind: holding, address: 40002, type: uint16}\n", "t.yaml:4:",
               "40002 is Modicon notation (holding registers counted from 40001): write "
               "address: 1 (40002 - 40001); PDU address 40002 itself is 0x9C42");
    expect_err(HDR "  - {name: a, kind: input, address: 300010, type: uint16}\n",
               "t.yaml:4:", "write address: 9 (300010 - 300001)");
    expect_err(HDR "  - {name: a, kind: discrete, address: 10001, type: bool}\n",
               "t.yaml:4:", "write address: 0 (10001 - 10001)");
    gw_profile_free(load(HDR "  - {name: a, kind: holding, address: 0x9C42, type: uint16}\n"
                             "  - {name: b, kind: coil, address: 10001, type: bool}\n"));
    expect_err(HDR "  - {name: a, kind: coil, address: 0, type: bool, decimals: 1}\n",
               "t.yaml:4:", "does not apply to type bool");
}

/* The shipped radar-level profile: its status word and measurement state. */
static void test_shipped_radar_status(void **state)
{
    (void)state;
    gw_profile *p = embedded("radar-level");
    uint8_t st[GW_PROFILE_MAX_EVENTS] = {0};
    char k[16][32];
    capture c;
    device_reset();
    holding[1] = 2500;
    holding[3] = 1200;
    holding[5] = 450;
    assert_int_equal(edges(p, st, &c, k), 0); /* all clear: nothing to say */
    assert_good(&c, "air_gap", 2.5, 1e-9);
    holding[2] = 0x0009; /* echo lost, tamper */
    holding[4] = 1;      /* calibrating */
    size_t n = edges(p, st, &c, k);
    assert_int_equal(n, 2);
    assert_true(has_kind(k, n, "echo_lost=1") && has_kind(k, n, "tamper=1"));
    const gw_reading *r = find_r(&c, "air_gap");
    assert_int_equal(r->quality, GW_Q_UNCERTAIN);
    assert_int_equal(r->reason, GW_R_CALIBRATING);
    assert_int_equal(find_r(&c, "water_level")->reason, GW_R_CALIBRATING);
    assert_int_equal(find_r(&c, "install_height")->quality, GW_Q_GOOD);
    holding[4] = 3;
    decode(p, &c, NULL, 0);
    assert_bad(&c, "water_level", GW_R_SENSOR_FAULT);
    gw_profile_free(p);
}

static void test_published_precision(void **state)
{
    (void)state;
    gw_profile *p =
        load(HDR "  - {name: a, kind: holding, address: 0, type: float32, decimals: 2}\n"
                 "  - {name: b, kind: holding, address: 2, type: float32}\n"
                 "  - {name: c, kind: holding, address: 4, type: uint16, scale: 0.1}\n");
    capture c;
    char json[512];
    device_reset();
    float f = 1.41423344f;
    uint32_t u;
    memcpy(&u, &f, 4);
    holding[0] = holding[2] = (uint16_t)(u >> 16);
    holding[1] = holding[3] = (uint16_t)u;
    holding[4] = 123;
    decode(p, &c, NULL, 0);
    /* Rules see the value at the register's resolution; the item carries 2 places. */
    const gw_reading *a = find_r(&c, "a");
    assert_true(a->value == 1.4142334);
    assert_int_equal(a->places, 3);
    assert_true(gw_json_reading(json, sizeof(json), "gw", "t", a) > 0);
    if (!strstr(json, "\"value\":1.41,"))
        fail_msg("decimals 2 published as: %s", json);
    /* Without decimals a float32 goes out at its own resolution, not as a long double. */
    const gw_reading *b = find_r(&c, "b");
    assert_int_equal(b->places, 0);
    assert_true(gw_json_reading(json, sizeof(json), "gw", "t", b) > 0);
    if (!strstr(json, "\"value\":1.4142334,"))
        fail_msg("float32 published as: %s", json);
    assert_true(gw_json_reading(json, sizeof(json), "gw", "t", find_r(&c, "c")) > 0);
    assert_non_null(strstr(json, "\"value\":12.3,"));
    /* A small negative rounds to 0, never "-0". */
    gw_reading neg = *a;
    neg.value = -0.001;
    assert_true(gw_json_reading(json, sizeof(json), "gw", "t", &neg) > 0);
    assert_non_null(strstr(json, "\"value\":0,"));
    gw_profile_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_float32_orders),
        cmocka_unit_test(test_int32_orders),
        cmocka_unit_test(test_64bit_orders),
        cmocka_unit_test(test_16bit_bcd_bits),
        cmocka_unit_test(test_string_and_coils),
        cmocka_unit_test(test_scale_offset_range),
        cmocka_unit_test(test_decimals_and_unit_codes),
        cmocka_unit_test(test_derived),
        cmocka_unit_test(test_plan_merge_and_gap),
        cmocka_unit_test(test_plan_limits),
        cmocka_unit_test(test_plan_unreadable_and_kinds),
        cmocka_unit_test(test_failed_request_marks_only_its_points),
        cmocka_unit_test(test_hostile_results),
        cmocka_unit_test(test_loader_errors),
        cmocka_unit_test(test_shipped_profiles),
        cmocka_unit_test(test_shipped_decode),
        cmocka_unit_test(test_encode_write),
        cmocka_unit_test(test_rbe_and_info),
        cmocka_unit_test(test_status_events_edges),
        cmocka_unit_test(test_status_codes),
        cmocka_unit_test(test_status_loader_errors),
        cmocka_unit_test(test_shipped_radar_status),
        cmocka_unit_test(test_published_precision),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
