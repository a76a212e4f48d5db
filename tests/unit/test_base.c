/* base/: the hex, CRC-16/MODBUS and civil-date helpers the gateway side shares. */
#include "base/arena.h"
#include "base/civil.h"
#include "base/crc16.h"
#include "base/hex.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static void hex_digits(void **state)
{
    (void)state;
    assert_int_equal(gw_hex_digit('0'), 0);
    assert_int_equal(gw_hex_digit('9'), 9);
    assert_int_equal(gw_hex_digit('a'), 10);
    assert_int_equal(gw_hex_digit('F'), 15);
    assert_int_equal(gw_hex_digit('g'), -1);
    assert_int_equal(gw_hex_digit('/'), -1);
    assert_int_equal(gw_hex_digit(':'), -1);
    assert_int_equal(gw_hex_digit('@'), -1);
    assert_int_equal(gw_hex_digit(0), -1);
    assert_int_equal(gw_hex_digit(0xC1), -1);
}

static void hex_decode_bounds(void **state)
{
    (void)state;
    uint8_t b[4] = {0};
    assert_int_equal(gw_hex_decode("00aBff", 6, b, sizeof b), 3);
    assert_int_equal(b[0], 0x00);
    assert_int_equal(b[1], 0xAB);
    assert_int_equal(b[2], 0xFF);
    assert_int_equal(gw_hex_decode("", 0, b, sizeof b), 0);
    assert_int_equal(gw_hex_decode("abc", 3, b, sizeof b), -1);         /* odd */
    assert_int_equal(gw_hex_decode("0011223344", 10, b, sizeof b), -1); /* 5 > cap 4 */
    assert_int_equal(gw_hex_decode("00112233", 8, b, sizeof b), 4);     /* exactly cap */
    assert_int_equal(gw_hex_decode("0x", 2, b, sizeof b), -1);
    /* Only `chars` characters are read: the rest of the string does not matter. */
    assert_int_equal(gw_hex_decode("12zz", 2, b, sizeof b), 1);
    assert_int_equal(b[0], 0x12);
}

static void hex_value_and_put(void **state)
{
    (void)state;
    assert_int_equal(gw_hex_value("FFFF", 4), 0xFFFF);
    assert_int_equal(gw_hex_value("1a2b3c4", 7), 0x1A2B3C4);
    assert_int_equal(gw_hex_value("12345678", 8), -1); /* longer than a 32-bit long holds */
    assert_int_equal(gw_hex_value("", 0), -1);
    assert_int_equal(gw_hex_value("1G", 2), -1);
    char out[9];
    memset(out, 'x', sizeof out);
    const uint8_t b[] = {0x00, 0x9A, 0xF1, 0x0C};
    assert_int_equal(gw_hex_put(b, 4, out), 8);
    assert_memory_equal(out, "009AF10C", 8);
    assert_int_equal(out[8], 'x'); /* no terminator written */
    assert_int_equal(gw_hex_char(0x1F), 'F');
}

static void crc16_modbus_vectors(void **state)
{
    (void)state;
    /* The catalogue check value of CRC-16/MODBUS. */
    assert_int_equal(gw_crc16_modbus((const uint8_t *)"123456789", 9), 0x4B37);
    assert_int_equal(gw_crc16_modbus(NULL, 0), 0xFFFF);
    /* Modbus RTU "read holding registers, slave 1, address 0, count 1": 01 03 00 00 00 01,
     * sent with CRC bytes 84 0A (low byte first). */
    const uint8_t req[] = {0x01, 0x03, 0x00, 0x00, 0x00, 0x01};
    assert_int_equal(gw_crc16_modbus(req, sizeof req), 0x0A84);
}

static void civil_round_trip(void **state)
{
    (void)state;
    assert_int_equal(gw_days_from_civil(1970, 1, 1), 0);
    assert_int_equal(gw_days_from_civil(2000, 3, 1), 11017);
    assert_int_equal(gw_days_from_civil(1969, 12, 31), -1);
    assert_int_equal(gw_days_from_civil(2024, 2, 29), 19782);
    assert_int_equal(gw_days_from_civil(9999, 12, 31), 2932896);
    /* Every day from 1600 to 2400 maps back to itself and steps by one. */
    int64_t prev = gw_days_from_civil(1599, 12, 31);
    for (int64_t y = 1600; y <= 2400; y++)
        for (unsigned m = 1; m <= 12; m++)
            for (unsigned d = 1; d <= gw_days_in_month(y, m); d++) {
                int64_t days = gw_days_from_civil(y, m, d), ry;
                unsigned rm, rd;
                assert_true(days == prev + 1);
                gw_civil_from_days(days, &ry, &rm, &rd);
                assert_true(ry == y && rm == m && rd == d);
                prev = days;
            }
    assert_int_equal(gw_days_in_month(1900, 2), 28);
    assert_int_equal(gw_days_in_month(2000, 2), 29);
    assert_int_equal(gw_days_in_month(2023, 2), 28);
    assert_int_equal(gw_days_in_month(2023, 13), 0);
    assert_int_equal(gw_days_in_month(2023, 0), 0);
}

/* The arena: aligned pieces, strings copied, a piece larger than a block,
 * and free leaves it empty and usable (ASan checks the bounds). */
static void arena_pieces(void **state)
{
    gw_arena a = {0};
    char *s = gw_arena_strdup(&a, "abc");
    assert_string_equal(s, "abc");
    for (int i = 0; i < 10000; i++) {
        double *d = gw_arena_alloc(&a, sizeof(double) * (size_t)(1 + i % 3));
        assert_non_null(d);
        assert_int_equal((uintptr_t)d % 8, 0);
        *d = i;
    }
    char *big = gw_arena_alloc(&a, 200000);
    assert_non_null(big);
    memset(big, 1, 200000);
    assert_string_equal(s, "abc");
    gw_arena_free(&a);
    assert_null(a.head);
    assert_string_equal(gw_arena_strdup(&a, "again"), "again");
    gw_arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hex_digits),        cmocka_unit_test(hex_decode_bounds),
        cmocka_unit_test(hex_value_and_put), cmocka_unit_test(crc16_modbus_vectors),
        cmocka_unit_test(civil_round_trip),  cmocka_unit_test(arena_pieces),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
