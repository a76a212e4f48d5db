#include "base/hex.h"

static const char upper[16] = {'0', '1', '2', '3', '4', '5', '6', '7',
                               '8', '9', 'A', 'B', 'C', 'D', 'E', 'F'};

int gw_hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int gw_hex_decode(const char *s, size_t chars, uint8_t *out, size_t cap)
{
    if (chars % 2 || chars / 2 > cap || chars / 2 > (size_t)INT32_MAX)
        return -1;
    for (size_t i = 0; i < chars / 2; i++) {
        int hi = gw_hex_digit((unsigned char)s[2 * i]),
            lo = gw_hex_digit((unsigned char)s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return (int)(chars / 2);
}

long gw_hex_value(const char *s, size_t chars)
{
    long v = 0;
    if (chars == 0 || chars > 7)
        return -1;
    for (size_t i = 0; i < chars; i++) {
        int d = gw_hex_digit((unsigned char)s[i]);
        if (d < 0)
            return -1;
        v = v << 4 | d;
    }
    return v;
}

size_t gw_hex_put(const uint8_t *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = upper[b[i] >> 4];
        out[2 * i + 1] = upper[b[i] & 15];
    }
    return 2 * n;
}

char gw_hex_char(unsigned v)
{
    return upper[v & 15];
}
