/* NB-100 smoke detector frames (a fictional vendor's binary format, spec in
 * docs/sim.md): big-endian, fixed 22-byte head, TLVs, CRC-16/CCITT-FALSE over
 * everything before the CRC. Pure: no I/O, no clock. */
#include "sim/sim.h"

#include <math.h>
#include <string.h>

uint16_t sim_crc16_ccitt_false(const uint8_t *p, size_t n)
{
    uint16_t crc = 0xFFFF;
    for (size_t i = 0; i < n; i++) {
        crc ^= (uint16_t)(p[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

int sim_nb100_imei_bcd(const char *imei, uint8_t out[8])
{
    uint8_t nib[16];
    if (!imei || strlen(imei) != 15)
        return SIM_EINVAL;
    nib[0] = 0; /* pad nibble */
    for (int i = 0; i < 15; i++) {
        if (imei[i] < '0' || imei[i] > '9')
            return SIM_EINVAL;
        nib[i + 1] = (uint8_t)(imei[i] - '0');
    }
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(nib[2 * i] << 4 | nib[2 * i + 1]);
    return SIM_OK;
}

/* Rounds to nearest and saturates; NaN becomes lo. */
static long sat(double v, long lo, long hi)
{
    if (!(v >= (double)lo))
        return lo;
    if (v >= (double)hi)
        return hi;
    return lround(v);
}

static void put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

int sim_nb100_encode(const sim_nb100 *f, uint8_t *out, size_t cap)
{
    size_t len = 24;
    if (f->type < SIM_NB100_REPORT || f->type > SIM_NB100_HEARTBEAT || f->ntlv < 0 ||
        f->ntlv > SIM_NB100_TLV_MAX)
        return SIM_EINVAL;
    for (int i = 0; i < f->ntlv; i++) {
        if (f->tlv[i].len && !f->tlv[i].value)
            return SIM_EINVAL;
        len += 2u + f->tlv[i].len;
    }
    if (len > cap)
        return SIM_EINVAL;
    out[0] = 0xA5;
    out[1] = 0x5A;
    out[2] = 0x01;
    out[3] = f->type;
    if (sim_nb100_imei_bcd(f->imei, out + 4) != SIM_OK)
        return SIM_EINVAL;
    put16(out + 12, f->seq);
    put16(out + 14, f->events);
    /* Battery: 2.00 V + b * 0.01 V. The small bias keeps 3.6 (3.5999...) at 160. */
    out[16] = (uint8_t)sat((f->battery_v - 2.0) * 100.0 + 1e-9, 0, 255);
    put16(out + 17, (unsigned)sat(f->smoke_db_m * 1000.0 + 1e-9, 0, 65535));
    out[19] = (uint8_t)(int8_t)sat(f->temp_c, -128, 127);
    out[20] = (uint8_t)(int8_t)sat(f->rssi_dbm, -128, 127);
    out[21] = (uint8_t)f->ntlv;
    size_t o = 22;
    for (int i = 0; i < f->ntlv; i++) {
        out[o++] = f->tlv[i].type;
        out[o++] = f->tlv[i].len;
        if (f->tlv[i].len)
            memcpy(out + o, f->tlv[i].value, f->tlv[i].len);
        o += f->tlv[i].len;
    }
    put16(out + o, sim_crc16_ccitt_false(out, o));
    return (int)(o + 2);
}
