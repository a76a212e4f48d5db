/* NB-100 smoke detector decoder: every event bit, battery never taken for fire,
 * mute never hiding a fire, truncation at every length, CRC and hostile lengths.
 * Frames are built here byte by byte (not with the module's encoder) so a
 * layout mistake in the decoder cannot hide behind the same mistake in the
 * encoder; one test checks the encoder against this builder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "adapters/adapter.h"
#include "adapters/smoke_nb100.h"

#include <math.h>
#include <string.h>

typedef struct coll {
    gw_reading r[16];
    int nr;
    gw_event e[32];
    int ne;
} coll;

static int on_r(void *ctx, const gw_reading *r)
{
    coll *c = ctx;
    if (c->nr < 16)
        c->r[c->nr] = *r;
    c->nr++;
    return 0;
}

static int on_e(void *ctx, const gw_event *e)
{
    coll *c = ctx;
    if (c->ne < 32)
        c->e[c->ne] = *e;
    c->ne++;
    return 0;
}

static uint16_t crc16(const uint8_t *p, size_t n)
{
    uint16_t c = 0xFFFF;
    while (n--) {
        c ^= (uint16_t)(*p++ << 8);
        for (int i = 0; i < 8; i++)
            c = (c & 0x8000) ? (uint16_t)((c << 1) ^ 0x1021) : (uint16_t)(c << 1);
    }
    return c;
}

/* IMEI 861234567890123, type 2, seq 0x0102, time 1760000000, battery 2950 mV,
 * smoke 0.12 dB/m, 21.5 degC, -80 dBm. */
static size_t frame(uint8_t *b, uint16_t events)
{
    static const uint8_t head[] = {0xA5, 0x5A, 0x01, 24,   0x86, 0x12, 0x34, 0x56, 0x78, 0x90,
                                   0x12, 0x3F, 0x02, 0x01, 0x02, 0x68, 0xE7, 0x78, 0x00};
    memcpy(b, head, sizeof(head));
    size_t n = sizeof(head);
    b[n++] = (uint8_t)(events >> 8);
    b[n++] = (uint8_t)events;
    b[n++] = 0x0B; /* 2950 mV */
    b[n++] = 0x86;
    b[n++] = 0x00; /* 12 -> 0.12 dB/m */
    b[n++] = 0x0C;
    b[n++] = 0x00; /* 215 -> 21.5 degC */
    b[n++] = 0xD7;
    b[n++] = 0xB0; /* -80 dBm */
    uint16_t c = crc16(b, n);
    b[n++] = (uint8_t)(c >> 8);
    b[n++] = (uint8_t)c;
    return n;
}

static int decode(const uint8_t *b, size_t n, coll *c)
{
    memset(c, 0, sizeof(*c));
    gw_sink s = {on_r, on_e, c};
    return gw_adapter_smoke_nb100.decode(b, n, 0, &s);
}

static const gw_event *find(const coll *c, const char *kind)
{
    for (int i = 0; i < c->ne && i < 32; i++)
        if (!strcmp(c->e[i].kind, kind))
            return &c->e[i];
    return NULL;
}

static void test_parse_fields(void **st)
{
    uint8_t b[64];
    size_t n = frame(b, GW_NB100_HEARTBEAT);
    assert_int_equal(n, 30);
    gw_nb100_frame f;
    assert_int_equal(gw_nb100_parse(b, n, &f), 0);
    assert_string_equal(f.imei, "861234567890123");
    assert_int_equal(f.type, 2);
    assert_int_equal(f.seq, 0x0102);
    assert_int_equal(f.time_s, 1760000000u);
    assert_int_equal(f.battery_mv, 2950);
    coll c;
    assert_int_equal(decode(b, n, &c), 0);
    assert_int_equal(c.ne, 1);
    assert_string_equal(c.e[0].kind, "heartbeat");
    assert_int_equal(c.e[0].obs_ms, 1760000000000LL);
    assert_int_equal(c.nr, 4);
    assert_string_equal(c.r[0].metric, "battery_voltage");
    assert_true(fabs(c.r[0].value - 2.95) < 1e-9);
    assert_string_equal(c.r[0].unit, "V");
    assert_string_equal(c.r[1].metric, "smoke_density");
    assert_true(fabs(c.r[1].value - 0.12) < 1e-9);
    assert_string_equal(c.r[2].metric, "temperature");
    assert_true(fabs(c.r[2].value - 21.5) < 1e-9);
    assert_string_equal(c.r[3].metric, "rssi");
    assert_true(c.r[3].value == -80);
}

static void test_encoder_matches(void **st)
{
    uint8_t a[64], b[64];
    size_t n = frame(a, GW_NB100_FIRE | GW_NB100_BATT_LOW);
    gw_nb100_frame f;
    assert_int_equal(gw_nb100_parse(a, n, &f), 0);
    assert_int_equal(gw_nb100_encode(&f, b, sizeof(b)), 30);
    assert_memory_equal(a, b, 30);
    assert_int_equal(gw_nb100_encode(&f, b, 29), GW_EINVAL);
    strcpy(f.imei, "86123456789012X");
    assert_int_equal(gw_nb100_encode(&f, b, sizeof(b)), GW_EINVAL);
}

/* Each bit alone gives exactly its event, with the right activity and detail. */
static void test_every_bit(void **st)
{
    static const struct {
        uint16_t bit;
        const char *kind;
        int active;
        const char *detail_prefix;
    } t[] = {
        {GW_NB100_FIRE, "fire_alarm", 1, "seq="},
        {GW_NB100_CLEARED, "fire_alarm", 0, "cleared"},
        {GW_NB100_TEST_PASS, "self_test", 1, "pass"},
        {GW_NB100_TEST_FAIL, "self_test", 1, "fail"},
        {GW_NB100_MUTE, "mute", 1, "seq="},
        {GW_NB100_BATT_LOW, "battery_low", 1, "seq="},
        {GW_NB100_BATT_CRIT, "battery_critical", 1, "seq="},
        {GW_NB100_TAMPER, "tamper", 1, "seq="},
        {GW_NB100_HW_FAULT, "hw_fault", 1, "seq="},
        {GW_NB100_DIRTY, "dirty_chamber", 1, "seq="},
        {GW_NB100_EOL, "end_of_life", 1, "seq="},
        {GW_NB100_HEARTBEAT, "heartbeat", 1, "seq="},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        uint8_t b[64];
        coll c;
        size_t n = frame(b, t[i].bit);
        assert_int_equal(decode(b, n, &c), 0);
        assert_int_equal(c.ne, 1);
        assert_string_equal(c.e[0].kind, t[i].kind);
        assert_int_equal(c.e[0].active, t[i].active);
        assert_memory_equal(c.e[0].detail, t[i].detail_prefix, strlen(t[i].detail_prefix));
        assert_non_null(strstr(c.e[0].detail, "seq=258"));
        assert_int_equal(c.nr, 4);
    }
    /* Reserved bits alone: no event, the readings still come. */
    uint8_t b[64];
    coll c;
    assert_int_equal(decode(b, frame(b, 0xF000), &c), 0);
    assert_int_equal(c.ne, 0);
    assert_int_equal(c.nr, 4);
}

static void test_battery_never_fire(void **st)
{
    uint8_t b[64];
    coll c;
    uint16_t all_but_fire = 0x0FFF & ~(GW_NB100_FIRE | GW_NB100_CLEARED);
    assert_int_equal(decode(b, frame(b, all_but_fire), &c), 0);
    assert_null(find(&c, "fire_alarm"));
    assert_non_null(find(&c, "battery_low"));
    assert_non_null(find(&c, "battery_critical"));
    assert_int_equal(decode(b, frame(b, GW_NB100_BATT_LOW | GW_NB100_BATT_CRIT), &c), 0);
    assert_int_equal(c.ne, 2);
    assert_null(find(&c, "fire_alarm"));
}

static void test_mute_never_hides_fire(void **st)
{
    uint8_t b[64];
    coll c;
    assert_int_equal(decode(b, frame(b, GW_NB100_FIRE | GW_NB100_MUTE | GW_NB100_BATT_LOW), &c), 0);
    /* The fire alarm is first and active; the mute says the fire is not muted. */
    assert_string_equal(c.e[0].kind, "fire_alarm");
    assert_int_equal(c.e[0].active, 1);
    const gw_event *m = find(&c, "mute");
    assert_non_null(m);
    assert_non_null(strstr(m->detail, "fire alarm not muted"));
    /* Fire + cleared in one frame: fire wins. */
    assert_int_equal(decode(b, frame(b, GW_NB100_FIRE | GW_NB100_CLEARED), &c), 0);
    assert_int_equal(c.ne, 1);
    assert_int_equal(c.e[0].active, 1);
    /* Both self-test bits: a failure is reported. */
    assert_int_equal(decode(b, frame(b, GW_NB100_TEST_PASS | GW_NB100_TEST_FAIL), &c), 0);
    assert_string_equal(find(&c, "self_test")->detail, "fail; seq=258");
}

static void test_truncated_every_length(void **st)
{
    uint8_t b[64];
    size_t n = frame(b, GW_NB100_FIRE);
    for (size_t len = 0; len < n; len++) {
        coll c;
        int rc = decode(b, len, &c);
        assert_true(rc < 0);
        assert_int_equal(c.ne + c.nr, 0);
    }
    /* One byte too many is refused too. */
    coll c;
    b[n] = 0;
    assert_true(decode(b, n + 1, &c) < 0);
    assert_int_equal(c.ne + c.nr, 0);
}

static void test_bad_crc_and_every_bitflip(void **st)
{
    uint8_t b[64];
    size_t n = frame(b, GW_NB100_FIRE);
    coll c;
    b[n - 1] ^= 1;
    assert_int_equal(decode(b, n, &c), GW_ECRC);
    assert_int_equal(c.ne + c.nr, 0);
    /* Any single flipped bit anywhere is refused; nothing is emitted. */
    for (size_t i = 0; i < n * 8; i++) {
        n = frame(b, GW_NB100_FIRE);
        b[i / 8] ^= (uint8_t)(1u << (i % 8));
        assert_true(decode(b, n, &c) < 0);
        assert_int_equal(c.ne + c.nr, 0);
    }
}

static void fix_crc(uint8_t *b, size_t n)
{
    uint16_t c = crc16(b, n - 2);
    b[n - 2] = (uint8_t)(c >> 8);
    b[n - 1] = (uint8_t)c;
}

static void test_hostile_lengths_and_fields(void **st)
{
    uint8_t b[300];
    coll c;
    size_t n = frame(b, GW_NB100_FIRE);
    /* Every length byte but the true one is refused, even with a valid CRC. */
    for (int l = 0; l < 256; l++) {
        n = frame(b, GW_NB100_FIRE);
        if (l == 24)
            continue;
        b[3] = (uint8_t)l;
        fix_crc(b, n);
        assert_int_equal(decode(b, n, &c), GW_EMALFORMED);
    }
    /* A longer body (extension bytes) is accepted when the length says so. */
    n = frame(b, GW_NB100_HEARTBEAT);
    memmove(b + 28 + 4, b + 28, 2);
    memset(b + 28, 0xEE, 4);
    b[3] = 28;
    n += 4;
    fix_crc(b, n);
    assert_int_equal(decode(b, n, &c), 0);
    assert_string_equal(c.e[0].kind, "heartbeat");
    /* A length claiming 255 on a short buffer. */
    n = frame(b, GW_NB100_FIRE);
    b[3] = 255;
    assert_int_equal(decode(b, n, &c), GW_EMALFORMED);
    /* Bad BCD digit, bad filler nibble, bad magic, unknown version and type. */
    n = frame(b, GW_NB100_FIRE);
    b[5] = 0x1A;
    fix_crc(b, n);
    assert_int_equal(decode(b, n, &c), GW_EMALFORMED);
    n = frame(b, GW_NB100_FIRE);
    b[11] = 0x30;
    fix_crc(b, n);
    assert_int_equal(decode(b, n, &c), GW_EMALFORMED);
    n = frame(b, GW_NB100_FIRE);
    b[0] = 0x5A;
    fix_crc(b, n);
    assert_int_equal(decode(b, n, &c), GW_EMALFORMED);
    n = frame(b, GW_NB100_FIRE);
    b[2] = 2;
    fix_crc(b, n);
    assert_int_equal(decode(b, n, &c), GW_EUNSUPPORTED);
    n = frame(b, GW_NB100_FIRE);
    b[12] = 9;
    fix_crc(b, n);
    assert_int_equal(decode(b, n, &c), GW_EUNSUPPORTED);
    assert_int_equal(c.ne + c.nr, 0);
    assert_int_equal(gw_nb100_parse(NULL, 0, &(gw_nb100_frame){0}), GW_EMALFORMED);
}

static void test_not_measured_and_no_clock(void **st)
{
    uint8_t b[64];
    coll c;
    size_t n = frame(b, 0);
    b[15] = b[16] = b[17] = b[18] = 0; /* no clock */
    b[21] = b[22] = 0xFF;              /* battery not measured */
    b[23] = b[24] = 0xFF;              /* smoke not measured */
    b[25] = 0x80;
    b[26] = 0x00; /* temperature not measured */
    b[27] = 0x7F; /* rssi unknown */
    fix_crc(b, n);
    assert_int_equal(decode(b, n, &c), 0);
    assert_int_equal(c.nr, 0);
    n = frame(b, GW_NB100_FIRE);
    b[15] = b[16] = b[17] = b[18] = 0;
    fix_crc(b, n);
    assert_int_equal(decode(b, n, &c), 0);
    assert_int_equal(c.e[0].obs_ms, 0);
    assert_int_equal(c.r[0].obs_ms, 0);
}

static int stop_first(void *ctx, const gw_event *e)
{
    (*(int *)ctx)++;
    return GW_EFULL;
}

static void test_sink_error_stops(void **st)
{
    uint8_t b[64];
    int calls = 0;
    gw_sink s = {NULL, stop_first, &calls};
    size_t n = frame(b, GW_NB100_FIRE | GW_NB100_TAMPER | GW_NB100_HEARTBEAT);
    assert_int_equal(gw_adapter_smoke_nb100.decode(b, n, 0, &s), GW_EFULL);
    assert_int_equal(calls, 1);
    assert_ptr_equal(gw_adapter_find("smoke-nb100"), &gw_adapter_smoke_nb100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_fields),
        cmocka_unit_test(test_encoder_matches),
        cmocka_unit_test(test_every_bit),
        cmocka_unit_test(test_battery_never_fire),
        cmocka_unit_test(test_mute_never_hides_fire),
        cmocka_unit_test(test_truncated_every_length),
        cmocka_unit_test(test_bad_crc_and_every_bitflip),
        cmocka_unit_test(test_hostile_lengths_and_fields),
        cmocka_unit_test(test_not_measured_and_no_clock),
        cmocka_unit_test(test_sink_error_stops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
