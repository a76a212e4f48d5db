/* MC-200 manhole cover frames, written from the vendor's frame text
 * (docs/adapters.md, "The MC-200 manhole cover") and from nothing else of the
 * gateway. Version 1, big-endian except the CRC:
 *
 *   0 magic 4D 43 | 2 version 01 | 3 type | 4 IMEI, 8 bytes BCD | 12 seq (2) |
 *   14 Unix time (4) | 18 status | 19 changed | 20 tilt 0.1 deg (2) |
 *   22 water level mm (2) | 24 battery mV (2) | 26 RSRP 0.1 dBm (int16) |
 *   28 SNR dB (int8) | 29 CRC-16/MODBUS over 0..28, low byte first
 *
 * The IMEI packs as the NB-100's (enc_nb100.c) and the CRC is the Modbus RTU
 * one (rtu.c). Pure: no I/O, no clock. */
#include "sim/enc_cover.h"

#include "sim/enc_nb100.h"
#include "sim/rtu.h"

#include <math.h>

/* v * scale rounded to nearest, saturated to lo..hi; NaN gives none. */
static long wire(double v, double scale, long lo, long hi, long none)
{
    if (isnan(v))
        return none;
    v *= scale;
    return v <= (double)lo ? lo : v >= (double)hi ? hi : lround(v);
}

static void put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

int sim_cover_encode(const sim_cover *f, uint8_t *out, size_t cap)
{
    if (cap < SIM_COVER_LEN || f->type < SIM_COVER_REPORT || f->type > SIM_COVER_HEARTBEAT ||
        ((f->status | f->changed) & 0xF0))
        return SIM_EINVAL;
    out[0] = 'M';
    out[1] = 'C';
    out[2] = 0x01;
    out[3] = f->type;
    if (sim_nb100_imei_bcd(f->imei, out + 4) != SIM_OK)
        return SIM_EINVAL;
    put16(out + 12, f->seq);
    put16(out + 14, f->time_s >> 16);
    put16(out + 16, f->time_s & 0xFFFF);
    out[18] = f->status;
    out[19] = f->changed;
    put16(out + 20, (unsigned)wire(f->tilt_deg, 10.0, 0, 1800, 0xFFFF));
    put16(out + 22, (unsigned)wire(f->water_m, 1000.0, 0, 0xFFFE, 0xFFFF));
    put16(out + 24, (unsigned)wire(f->battery_v, 1000.0, 0, 0xFFFE, 0xFFFF));
    long rsrp = wire(f->rsrp_dbm, 10.0, -32767, 32767, -32768);
    put16(out + 26, (unsigned)(uint16_t)(int16_t)rsrp);
    out[28] = (uint8_t)(int8_t)wire(f->snr_db, 1.0, -128, 126, 127);
    uint16_t crc = sim_crc16(out, 29);
    out[29] = (uint8_t)crc;
    out[30] = (uint8_t)(crc >> 8);
    return SIM_COVER_LEN;
}
