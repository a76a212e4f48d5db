/* The simulator's MC-200 encoder (sim/enc_cover.c) against the frame printed
 * in docs/adapters.md (written out here as hex, not produced by the gateway's
 * decoder), plus the wire rounding, saturation and "not measured" codes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sim/enc_cover.h"
#include "sim/rtu.h"

#include <math.h>
#include <string.h>

static sim_cover doc_frame(void)
{
    sim_cover f;
    memset(&f, 0, sizeof f);
    f.type = SIM_COVER_ALARM;
    memcpy(f.imei, "861234567890123", 16);
    f.seq = 7;
    f.time_s = 1760000000u;
    f.status = f.changed = SIM_COVER_OPEN;
    f.tilt_deg = 12.5;
    f.water_m = 0.85;
    f.battery_v = 3.6;
    f.rsrp_dbm = -95.5;
    f.snr_db = 12;
    return f;
}

static void test_documented_frame(void **st)
{
    static const uint8_t want[SIM_COVER_LEN] = {0x4D, 0x43, 0x01, 0x02, 0x86, 0x12, 0x34, 0x56,
                                                0x78, 0x90, 0x12, 0x3F, 0x00, 0x07, 0x68, 0xE7,
                                                0x78, 0x00, 0x01, 0x01, 0x00, 0x7D, 0x03, 0x52,
                                                0x0E, 0x10, 0xFC, 0x45, 0x0C, 0x9C, 0x8C};
    sim_cover f = doc_frame();
    uint8_t b[40];
    assert_int_equal(sim_cover_encode(&f, b, sizeof b), SIM_COVER_LEN);
    assert_memory_equal(b, want, SIM_COVER_LEN);
    assert_int_equal(sim_crc16((const uint8_t *)"123456789", 9), 0x4B37);
}

static void test_units_and_limits(void **st)
{
    sim_cover f = doc_frame();
    uint8_t b[SIM_COVER_LEN];
    f.tilt_deg = 500; /* saturates at 180.0 deg */
    f.water_m = NAN;
    f.battery_v = NAN;
    f.rsrp_dbm = NAN;
    f.snr_db = NAN;
    assert_int_equal(sim_cover_encode(&f, b, sizeof b), SIM_COVER_LEN);
    assert_int_equal(b[20] << 8 | b[21], 1800);
    assert_int_equal(b[22] << 8 | b[23], 0xFFFF);
    assert_int_equal(b[24] << 8 | b[25], 0xFFFF);
    assert_int_equal(b[26] << 8 | b[27], 0x8000);
    assert_int_equal(b[28], 0x7F);
    f = doc_frame();
    f.water_m = 100; /* one step short of "not measured" */
    f.snr_db = 300;
    f.rsrp_dbm = -140.04;
    assert_int_equal(sim_cover_encode(&f, b, sizeof b), SIM_COVER_LEN);
    assert_int_equal(b[22] << 8 | b[23], 0xFFFE);
    assert_int_equal(b[28], 126);
    assert_int_equal((int16_t)(b[26] << 8 | b[27]), -1400);
    /* Refused: reserved bits, a bad type or IMEI, a short buffer. */
    f = doc_frame();
    f.changed = 0x10;
    assert_int_equal(sim_cover_encode(&f, b, sizeof b), SIM_EINVAL);
    f = doc_frame();
    f.type = 4;
    assert_int_equal(sim_cover_encode(&f, b, sizeof b), SIM_EINVAL);
    f = doc_frame();
    f.imei[3] = 'x';
    assert_int_equal(sim_cover_encode(&f, b, sizeof b), SIM_EINVAL);
    f = doc_frame();
    assert_int_equal(sim_cover_encode(&f, b, SIM_COVER_LEN - 1), SIM_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_documented_frame),
        cmocka_unit_test(test_units_and_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
