/* Modbus RTU framing as a slave on a serial line sees it. RTU has no length
 * header: a request's length follows from its function code (and, for the
 * writes of several values, from a byte count inside it), and the end of a
 * frame is also marked by 3.5 characters of silence. sim_rtu_split uses the
 * length rules while bytes arrive and falls back to silence for what the rules
 * cannot frame. Every length is checked against the bytes present. Pure: no I/O. */
#include "sim/rtu.h"

#include <string.h>

uint16_t sim_crc16(const uint8_t *p, size_t n)
{
    uint16_t crc = 0xFFFF;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int b = 0; b < 8; b++)
            crc = (crc & 1) ? (uint16_t)((crc >> 1) ^ 0xA001) : (uint16_t)(crc >> 1);
    }
    return crc;
}

size_t sim_rtu_seal(uint8_t *f, size_t n)
{
    uint16_t crc = sim_crc16(f, n);
    f[n] = (uint8_t)crc; /* low byte first on the wire */
    f[n + 1] = (uint8_t)(crc >> 8);
    return n + 2;
}

int sim_rtu_crc_ok(const uint8_t *f, size_t n)
{
    if (n < 3)
        return 0;
    uint16_t crc = sim_crc16(f, n - 2);
    return f[n - 2] == (uint8_t)crc && f[n - 1] == (uint8_t)(crc >> 8);
}

int sim_rtu_request_len(const uint8_t *buf, size_t len)
{
    if (len < 2)
        return 0;
    switch (buf[1]) {
    case 0x01: /* read coils, discretes, holding, input; write one coil, one register */
    case 0x02:
    case 0x03:
    case 0x04:
    case 0x05:
    case 0x06:
    case 0x08: /* diagnostics: sub-function + one data word */
        return 8;
    case 0x07: /* read exception status, comm event counter / log, report server id */
    case 0x0B:
    case 0x0C:
    case 0x11:
        return 4;
    case 0x0F: /* write coils / registers: address, count, byte count, values */
    case 0x10:
        return len < 7 ? 0 : 9 + buf[6];
    case 0x14: /* file records: byte count first */
    case 0x15:
        return len < 3 ? 0 : 5 + buf[2];
    case 0x16: /* mask write register */
        return 10;
    case 0x17: /* read/write registers: byte count after four words */
        return len < 11 ? 0 : 13 + buf[10];
    case 0x18: /* read FIFO queue */
        return 6;
    case 0x2B: /* read device identification (MEI 0x0E) */
        if (len < 3)
            return 0;
        return buf[2] == 0x0E ? 7 : SIM_EINVAL;
    default:
        return SIM_EINVAL;
    }
}

int sim_rtu_response_len(const uint8_t *buf, size_t len)
{
    if (len < 2)
        return 0;
    if (buf[1] & 0x80)
        return 5;
    switch (buf[1]) {
    case 0x01:
    case 0x02:
    case 0x03:
    case 0x04:
    case 0x0C:
    case 0x11:
    case 0x14:
    case 0x15:
    case 0x17:
        return len < 3 ? 0 : 5 + buf[2];
    case 0x05:
    case 0x06:
    case 0x08:
    case 0x0B:
    case 0x0F:
    case 0x10:
        return 8;
    case 0x07:
        return 5;
    case 0x16:
        return 10;
    case 0x18:
        return len < 4 ? 0 : 6 + (buf[2] << 8 | buf[3]);
    default:
        return SIM_EINVAL;
    }
}

int sim_rtu_split(const uint8_t *buf, size_t len, int idle, size_t *skip, size_t *flen)
{
    size_t first_maybe = len; /* earliest offset not yet proven to be junk */
    *flen = 0;
    for (size_t off = 0; off < len; off++) {
        size_t rest = len - off;
        int r = sim_rtu_request_len(buf + off, rest);
        if (r > 0 && r <= SIM_RTU_MAX && (size_t)r <= rest) {
            if (sim_rtu_crc_ok(buf + off, (size_t)r)) {
                *skip = off;
                *flen = (size_t)r;
                return SIM_RTU_FRAME;
            }
        } else if (!idle && (r == 0 || (r > 0 && r <= SIM_RTU_MAX))) {
            /* A request with a known length is still arriving here. */
            *skip = first_maybe < off ? first_maybe : off;
            return SIM_RTU_MORE;
        } else if (!idle && r < 0 && first_maybe == len) {
            first_maybe = off; /* maybe a request without a length rule: wait for silence */
        }
        /* The silence fallback: everything from here to the end is one frame
         * if its CRC checks (unknown function codes, odd lengths). */
        if (idle && rest >= 4 && rest <= SIM_RTU_MAX && sim_rtu_crc_ok(buf + off, rest)) {
            *skip = off;
            *flen = rest;
            return SIM_RTU_FRAME;
        }
    }
    *skip = idle ? len : first_maybe;
    return idle && len ? SIM_RTU_JUNK : SIM_RTU_MORE;
}

size_t sim_rtu_from_adu(const uint8_t *adu, size_t len, uint8_t *out, size_t cap)
{
    if (len < 8 || len - 7 + 3 > cap || len - 7 + 3 > SIM_RTU_MAX)
        return 0;
    out[0] = adu[6];
    memcpy(out + 1, adu + 7, len - 7);
    return sim_rtu_seal(out, len - 7 + 1);
}

void sim_rtu_corrupt_crc(uint8_t *f, size_t n)
{
    if (n < 2)
        return;
    f[n - 2] ^= 0xFF;
    f[n - 1] ^= 0xFF;
}

void sim_rtu_garbage(uint8_t *f, size_t n, uint64_t *rng)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t x = *rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *rng = x;
        f[i] = (uint8_t)(x >> 24);
    }
    /* A valid CRC is unique: changing one CRC byte makes it fail. */
    if (sim_rtu_crc_ok(f, n))
        f[n - 1] ^= 0x55;
}

size_t sim_rtu_truncated_len(size_t n)
{
    return n / 2 ? n / 2 : (n ? 1 : 0);
}
