/* MC-200 manhole cover decoder (adapters/cover_mc200.c): the frame printed in
 * docs/adapters.md decodes as the text says; events follow the changed bits
 * only (edge-triggered), in order, with active from the status; "not
 * measured" codes are left out; every truncation, every single-bit flip, a
 * wrong version, type, reserved bit or BCD digit is refused with nothing
 * emitted. Frames are built here byte by byte, CRC-16/MODBUS included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "adapters/adapter.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct coll {
    gw_reading r[8];
    int nr;
    gw_event e[8];
    int ne;
} coll;

static int on_r(void *ctx, const gw_reading *r)
{
    coll *c = ctx;
    if (c->nr < 8)
        c->r[c->nr] = *r;
    c->nr++;
    return 0;
}

static int on_e(void *ctx, const gw_event *e)
{
    coll *c = ctx;
    if (c->ne < 8)
        c->e[c->ne] = *e;
    c->ne++;
    return 0;
}

static const gw_adapter *mc(void)
{
    const gw_adapter *a = gw_adapter_find("cover-mc200");
    assert_non_null(a);
    return a;
}

static int decode(const uint8_t *b, size_t n, coll *c)
{
    memset(c, 0, sizeof(*c));
    gw_sink s = {.ctx = c, .reading = on_r, .event = on_e};
    return mc()->decode(b, n, 0, &s);
}

static void seal(uint8_t *b)
{
    uint16_t c = 0xFFFF;
    for (int i = 0; i < 29; i++) {
        c ^= b[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (uint16_t)((c >> 1) ^ 0xA001) : (uint16_t)(c >> 1);
    }
    b[29] = (uint8_t)c;
    b[30] = (uint8_t)(c >> 8);
}

/* IMEI 861234567890123, seq 7, time 1760000000, tilt 12.5 deg, water 0.85 m,
 * 3.6 V, RSRP -95.5 dBm, SNR 12 dB. */
static void frame(uint8_t *b, uint8_t type, uint8_t status, uint8_t changed)
{
    static const uint8_t f[31] = {0x4D, 0x43, 1,    2,    0x86, 0x12, 0x34, 0x56, 0x78, 0x90,
                                  0x12, 0x3F, 0,    7,    0x68, 0xE7, 0x78, 0,    1,    1,
                                  0,    0x7D, 0x03, 0x52, 0x0E, 0x10, 0xFC, 0x45, 0x0C};
    memcpy(b, f, 31);
    b[3] = type;
    b[18] = status;
    b[19] = changed;
    seal(b);
}

static uint8_t hexv(char c)
{
    return (uint8_t)(c <= '9' ? c - '0' : c - 'A' + 10);
}

/* The frame docs/adapters.md prints (its `gateway decode` line, read from the
 * file so the text cannot drift), byte for byte. */
static void test_documented_frame(void **st)
{
    static const char cmd[] = "build/gateway decode --adapter cover-mc200 --hex ";
    FILE *f = fopen("docs/adapters.md", "r");
    assert_non_null(f);
    char line[512], hex[64] = "";
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, cmd, strlen(cmd)))
            snprintf(hex, sizeof hex, "%.62s", line + strlen(cmd));
    fclose(f);
    assert_int_equal(strlen(hex), 62);
    uint8_t b[31], mine[31];
    for (int i = 0; i < 31; i++)
        b[i] = (uint8_t)(hexv(hex[2 * i]) << 4 | hexv(hex[2 * i + 1]));
    frame(mine, 2, 1, 1);
    assert_memory_equal(b, mine, 31);
    coll c;
    assert_int_equal(decode(b, 31, &c), GW_OK);
    assert_int_equal(c.ne, 1);
    assert_string_equal(c.e[0].kind, "cover_open");
    assert_int_equal(c.e[0].active, 1);
    assert_int_equal(c.e[0].obs_ms, 1760000000000LL);
    assert_int_equal(c.nr, 5);
    const char *m[] = {"tilt_angle", "water_level", "battery_voltage", "rsrp", "snr"};
    const double v[] = {12.5, 0.85, 3.6, -95.5, 12};
    for (int i = 0; i < 5; i++) {
        assert_string_equal(c.r[i].metric, m[i]);
        assert_true(fabs(c.r[i].value - v[i]) < 1e-9);
    }
    char id[32];
    assert_int_equal(mc()->identify(b, 31, id, sizeof id), GW_OK);
    assert_string_equal(id, "861234567890123");
}

/* A status held without a change emits no event; every change does, in the
 * order open, tilt, overflow, battery, active from the status. */
static void test_edges(void **st)
{
    uint8_t b[31];
    coll c;
    frame(b, 1, 0x0F, 0);
    assert_int_equal(decode(b, 31, &c), GW_OK);
    assert_int_equal(c.ne, 0);
    assert_int_equal(c.nr, 5);
    frame(b, 2, 0x06, 0x0F);
    assert_int_equal(decode(b, 31, &c), GW_OK);
    assert_int_equal(c.ne, 4);
    const char *k[] = {"cover_open", "cover_tilt", "water_overflow", "battery_low"};
    const int act[] = {0, 1, 1, 0};
    for (int i = 0; i < 4; i++) {
        assert_string_equal(c.e[i].kind, k[i]);
        assert_int_equal(c.e[i].active, act[i]);
    }
    assert_non_null(strstr(c.e[1].detail, "tilt=12.5 deg"));
    frame(b, 3, 0x04, 0x04); /* heartbeat carrying a change: still an edge */
    assert_int_equal(decode(b, 31, &c), GW_OK);
    assert_int_equal(c.ne, 1);
    assert_string_equal(c.e[0].kind, "water_overflow");
}

static void test_not_measured(void **st)
{
    uint8_t b[31];
    coll c;
    frame(b, 1, 0, 0);
    memset(b + 20, 0xFF, 6); /* tilt, water, battery */
    b[26] = 0x80;
    b[27] = 0x00;
    b[28] = 0x7F;
    seal(b);
    assert_int_equal(decode(b, 31, &c), GW_OK);
    assert_int_equal(c.nr, 0);
    b[14] = b[15] = b[16] = b[17] = 0; /* no clock: obs 0, the gateway stamps it */
    b[19] = 1;
    b[18] = 1;
    seal(b);
    assert_int_equal(decode(b, 31, &c), GW_OK);
    assert_int_equal(c.e[0].obs_ms, 0);
}

static void test_refusals(void **st)
{
    uint8_t b[31], x[31];
    coll c;
    char id[32];
    frame(b, 2, 1, 1);
    for (size_t n = 0; n < 31; n++) {
        assert_int_not_equal(decode(b, n, &c), GW_OK);
        assert_int_equal(c.ne + c.nr, 0);
        assert_int_equal(mc()->identify(b, n, id, sizeof id), GW_ENOTFOUND);
    }
    uint8_t longer[32];
    memcpy(longer, b, 31);
    longer[31] = 0;
    assert_int_equal(decode(longer, 32, &c), GW_EMALFORMED);
    for (int i = 0; i < 31 * 8; i++) {
        memcpy(x, b, 31);
        x[i / 8] ^= (uint8_t)(1u << (i % 8));
        assert_int_not_equal(decode(x, 31, &c), GW_OK);
        assert_int_equal(c.ne + c.nr, 0);
    }
    /* Sealed, but wrong inside. */
    struct {
        int off;
        uint8_t v;
        int rc;
    } bad[] = {
        {2, 2, GW_EUNSUPPORTED},   {3, 0, GW_EUNSUPPORTED},   {3, 4, GW_EUNSUPPORTED},
        {11, 0x30, GW_EMALFORMED}, {4, 0xA6, GW_EMALFORMED},  {18, 0x10, GW_EMALFORMED},
        {19, 0x80, GW_EMALFORMED}, {20, 0x07, GW_EMALFORMED}, /* tilt 0x077D > 1800 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memcpy(x, b, 31);
        x[bad[i].off] = bad[i].v;
        seal(x);
        assert_int_equal(decode(x, 31, &c), bad[i].rc);
        assert_int_equal(c.ne + c.nr, 0);
    }
    assert_true(gw_adapter_accepts(mc(), 42));
    assert_false(gw_adapter_accepts(mc(), 50));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_documented_frame),
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_not_measured),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
