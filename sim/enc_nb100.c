/* NB-100 smoke detector frames, written from the vendor's frame text (the
 * comment at the top of adapters/smoke_nb100.h, restated in docs/adapters.md)
 * and from nothing else of the gateway. Version 1, big-endian:
 *
 *   0 magic A5 5A | 2 version 01 | 3 body length L | 4 IMEI, 8 bytes BCD |
 *   12 type | 13 seq (2) | 15 Unix time (4) | 19 event bits (2) |
 *   21 battery mV (2) | 23 smoke 0.01 dB/m (2) | 25 temperature 0.1 degC (int16) |
 *   27 RSSI dBm (int8) | 28 L-24 extension bytes | 4+L CRC-16/CCITT-FALSE
 *
 * Pure: no I/O, no clock. */
#include "sim/enc_nb100.h"

#include <math.h>
#include <string.h>

/* "Not measured" codes of the spec. */
#define NB_NO_U16 0xFFFF
#define NB_NO_TEMP 0x8000
#define NB_NO_RSSI 0x7F

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
    for (int i = 0; i < 15; i++) {
        if (imei[i] < '0' || imei[i] > '9')
            return SIM_EINVAL;
        nib[i] = (uint8_t)(imei[i] - '0');
    }
    nib[15] = 0xF; /* the 16th nibble of 15 digits */
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(nib[2 * i] << 4 | nib[2 * i + 1]);
    return SIM_OK;
}

/* v * scale rounded to nearest and saturated to lo..hi; NaN gives none (the
 * field's "not measured" code, which lies outside lo..hi). */
static long scaled(double v, double scale, long lo, long hi, long none)
{
    if (isnan(v))
        return none;
    v *= scale;
    if (v <= (double)lo)
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
    if (f->type < SIM_NB100_REPORT || f->type > SIM_NB100_SELFTEST || f->next > SIM_NB100_EXT_MAX ||
        (f->next && !f->ext))
        return SIM_EINVAL;
    size_t body = SIM_NB100_BODY_MIN + f->next;
    size_t len = 4 + body + 2;
    if (len > cap)
        return SIM_EINVAL;
    out[0] = 0xA5;
    out[1] = 0x5A;
    out[2] = 0x01;
    out[3] = (uint8_t)body;
    if (sim_nb100_imei_bcd(f->imei, out + 4) != SIM_OK)
        return SIM_EINVAL;
    out[12] = f->type;
    put16(out + 13, f->seq);
    out[15] = (uint8_t)(f->time_s >> 24);
    out[16] = (uint8_t)(f->time_s >> 16);
    out[17] = (uint8_t)(f->time_s >> 8);
    out[18] = (uint8_t)f->time_s;
    put16(out + 19, f->events);
    /* Rounded to nearest: 3.6 V (3599.99.. mV in binary) is 3600 mV. */
    put16(out + 21, (unsigned)scaled(f->battery_v, 1000.0, 0, NB_NO_U16 - 1, NB_NO_U16));
    put16(out + 23, (unsigned)scaled(f->smoke_db_m, 100.0, 0, NB_NO_U16 - 1, NB_NO_U16));
    long t = scaled(f->temp_c, 10.0, -32767, 32767, 0);
    put16(out + 25, isnan(f->temp_c) ? NB_NO_TEMP : (unsigned)(uint16_t)(int16_t)t);
    out[27] = (uint8_t)(int8_t)scaled(f->rssi_dbm, 1.0, -128, NB_NO_RSSI - 1, NB_NO_RSSI);
    if (f->next)
        memcpy(out + 28, f->ext, f->next);
    size_t o = 4 + body;
    put16(out + o, sim_crc16_ccitt_false(out, o));
    return (int)len;
}
