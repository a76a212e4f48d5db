/* Unit tests of the pure parts of protocols/modbus_common.c: CRC, frames,
 * answer checks, lateness histogram and the schedule. */
#include <cmocka.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "protocols/modbus_common.h"

#include <string.h>

static void test_crc(void **state)
{
    /* Read holding 0, 1 register from unit 1: the classic 01 03 00 00 00 01 84 0A. */
    const uint8_t f[] = {0x01, 0x03, 0x00, 0x00, 0x00, 0x01};
    uint16_t crc = gw_mb_crc16(f, sizeof(f));
    assert_int_equal(crc & 0xFF, 0x84);
    assert_int_equal(crc >> 8, 0x0A);
    const uint8_t g[] = {0x11, 0x03, 0x00, 0x6B, 0x00, 0x03}; /* Modbus spec example: 76 87 */
    crc = gw_mb_crc16(g, sizeof(g));
    assert_int_equal(crc & 0xFF, 0x76);
    assert_int_equal(crc >> 8, 0x87);
    assert_int_equal(gw_mb_crc16(NULL, 0), 0xFFFF);
}

static void test_rtu_frames(void **state)
{
    uint8_t pdu[GW_MB_PDU_MAX], adu[GW_MB_ADU_MAX];
    size_t n = gw_mb_pdu_read(pdu, 3, 0x006B, 3);
    assert_int_equal(n, 5);
    size_t m = gw_mb_adu_rtu(adu, 0x11, pdu, n);
    const uint8_t want[] = {0x11, 0x03, 0x00, 0x6B, 0x00, 0x03, 0x76, 0x87};
    assert_int_equal(m, sizeof(want));
    assert_memory_equal(adu, want, sizeof(want));
    assert_int_equal(gw_mb_rtu_check(adu, m), GW_OK);
    adu[3] ^= 1;
    assert_int_equal(gw_mb_rtu_check(adu, m), GW_ECRC);
    assert_int_equal(gw_mb_rtu_check(adu, 3), GW_EMALFORMED);

    /* Answer lengths. */
    const uint8_t ans[] = {0x11, 0x03, 0x06};
    assert_int_equal(gw_mb_rtu_answer_len(ans, 1, 3), 0);
    assert_int_equal(gw_mb_rtu_answer_len(ans, 2, 3), 0);
    assert_int_equal(gw_mb_rtu_answer_len(ans, 3, 3), 11);
    const uint8_t exc[] = {0x11, 0x83, 0x02};
    assert_int_equal(gw_mb_rtu_answer_len(exc, 2, 3), 5);
    const uint8_t other[] = {0x11, 0x04, 0x02};
    assert_int_equal(gw_mb_rtu_answer_len(other, 3, 3), GW_EMALFORMED);
    const uint8_t zero[] = {0x11, 0x03, 0x00};
    assert_int_equal(gw_mb_rtu_answer_len(zero, 3, 3), GW_EMALFORMED);
    const uint8_t wr[] = {0x11, 0x05};
    assert_int_equal(gw_mb_rtu_answer_len(wr, 2, 5), 8);
    assert_int_equal(gw_mb_rtu_answer_len(wr, 2, 16), GW_EMALFORMED);
}

static void test_tcp_frame(void **state)
{
    uint8_t pdu[GW_MB_PDU_MAX], adu[GW_MB_ADU_MAX];
    size_t n = gw_mb_pdu_read(pdu, 4, 0x0102, 0x0A);
    size_t m = gw_mb_adu_tcp(adu, 0xBEEF, 7, pdu, n);
    const uint8_t want[] = {0xBE, 0xEF, 0, 0, 0, 6, 7, 4, 0x01, 0x02, 0x00, 0x0A};
    assert_int_equal(m, sizeof(want));
    assert_memory_equal(adu, want, sizeof(want));
}

static void test_write_pdus(void **state)
{
    uint8_t pdu[GW_MB_PDU_MAX];
    const uint8_t on[] = {0xFF, 0x00};
    assert_int_equal(gw_mb_pdu_write(pdu, 5, 3, 1, on, 2), 5);
    const uint8_t w5[] = {5, 0, 3, 0xFF, 0};
    assert_memory_equal(pdu, w5, 5);
    assert_int_equal(gw_mb_write_answer(w5, 5, w5, 5), 0);
    const uint8_t wrong[] = {5, 0, 3, 0, 0};
    assert_int_equal(gw_mb_write_answer(w5, 5, wrong, 5), GW_EMALFORMED);
    const uint8_t ex[] = {0x85, 0x02};
    assert_int_equal(gw_mb_write_answer(w5, 5, ex, 2), 2);

    const uint8_t regs[] = {0x12, 0x34, 0x56, 0x78};
    size_t n = gw_mb_pdu_write(pdu, 16, 0x10, 2, regs, 4);
    assert_int_equal(n, 10);
    const uint8_t w16[] = {16, 0, 0x10, 0, 2, 4, 0x12, 0x34, 0x56, 0x78};
    assert_memory_equal(pdu, w16, n);
    const uint8_t echo16[] = {16, 0, 0x10, 0, 2};
    assert_int_equal(gw_mb_write_answer(pdu, n, echo16, 5), 0);
    /* Payload that does not fit the function. */
    assert_int_equal(gw_mb_pdu_write(pdu, 16, 0, 2, regs, 3), 0);
    assert_int_equal(gw_mb_pdu_write(pdu, 6, 0, 1, regs, 4), 0);
    assert_int_equal(gw_mb_pdu_write(pdu, 3, 0, 1, regs, 2), 0);
    const uint8_t bits[] = {0x05};
    assert_int_equal(gw_mb_pdu_write(pdu, 15, 0, 3, bits, 1), 7);
}

static void test_read_answer(void **state)
{
    gw_mb_request r = {3, 0, 2};
    const uint8_t *data = NULL;
    size_t dlen = 0;
    const uint8_t ok[] = {3, 4, 0, 1, 0, 2};
    assert_int_equal(gw_mb_read_answer(&r, ok, sizeof(ok), &data, &dlen), 0);
    assert_int_equal(dlen, 4);
    assert_ptr_equal(data, ok + 2);
    const uint8_t shortc[] = {3, 2, 0, 1};
    assert_int_equal(gw_mb_read_answer(&r, shortc, sizeof(shortc), &data, &dlen), GW_EMALFORMED);
    const uint8_t trunc[] = {3, 4, 0, 1, 0};
    assert_int_equal(gw_mb_read_answer(&r, trunc, sizeof(trunc), &data, &dlen), GW_EMALFORMED);
    const uint8_t exc[] = {0x83, 4};
    assert_int_equal(gw_mb_read_answer(&r, exc, sizeof(exc), &data, &dlen), 4);
    const uint8_t exc0[] = {0x83, 0};
    assert_int_equal(gw_mb_read_answer(&r, exc0, sizeof(exc0), &data, &dlen), GW_EMALFORMED);
    const uint8_t otherfc[] = {4, 4, 0, 1, 0, 2};
    assert_int_equal(gw_mb_read_answer(&r, otherfc, sizeof(otherfc), &data, &dlen), GW_EMALFORMED);
    gw_mb_request c = {1, 0, 10};
    const uint8_t coils[] = {1, 2, 0xFF, 0x03};
    assert_int_equal(gw_mb_read_answer(&c, coils, sizeof(coils), &data, &dlen), 0);
    assert_int_equal(dlen, 2);
    assert_int_equal(gw_mb_read_answer(&c, coils, 1, &data, &dlen), GW_EMALFORMED);
}

static void test_lateness(void **state)
{
    assert_int_equal(gw_mb_late_bucket(-5), 0);
    assert_int_equal(gw_mb_late_bucket(999), 0);
    assert_int_equal(gw_mb_late_bucket(1000), 1);
    assert_int_equal(gw_mb_late_bucket(99999), 99);
    assert_int_equal(gw_mb_late_bucket(100000), 100);
    assert_int_equal(gw_mb_late_bucket(999999), 108);
    assert_int_equal(gw_mb_late_bucket(5000000), GW_MB_LATE_BUCKETS - 1);
    assert_int_equal(gw_mb_late_bucket_ms(0), 1);
    assert_int_equal(gw_mb_late_bucket_ms(100), 200);
    uint64_t h[GW_MB_LATE_BUCKETS];
    memset(h, 0, sizeof(h));
    assert_int_equal(gw_mb_late_quantile(h, 0.99), 0);
    h[0] = 990; /* 990 polls under 1 ms */
    h[30] = 10; /* 10 at 30 ms */
    assert_int_equal(gw_mb_late_quantile(h, 0.5), 1);
    assert_int_equal(gw_mb_late_quantile(h, 0.99), 1);
    assert_int_equal(gw_mb_late_quantile(h, 0.995), 31);
    h[0] = 980;
    assert_int_equal(gw_mb_late_quantile(h, 0.99), 31);
}

static void test_schedule(void **state)
{
    /* A stable phase inside the interval. */
    int64_t a = gw_mb_first_due("dev-1", 1000, 500);
    assert_true(a >= 1000 && a < 1500);
    assert_int_equal(gw_mb_first_due("dev-1", 1000, 500), a);
    uint64_t skipped = 0;
    assert_int_equal(gw_mb_next_due(1000, 1001, 1000, &skipped), 2000);
    assert_int_equal(skipped, 0);
    /* Fell behind by 3.5 intervals: the phase is kept, slots are skipped. */
    assert_int_equal(gw_mb_next_due(1000, 4500, 1000, &skipped), 5000);
    assert_int_equal(skipped, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc),         cmocka_unit_test(test_rtu_frames),
        cmocka_unit_test(test_tcp_frame),   cmocka_unit_test(test_write_pdus),
        cmocka_unit_test(test_read_answer), cmocka_unit_test(test_lateness),
        cmocka_unit_test(test_schedule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
