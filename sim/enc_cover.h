#ifndef SIM_ENC_COVER_H
#define SIM_ENC_COVER_H
/* MC-200 manhole cover sensor frames (enc_cover.c); pure. */
#include "sim/base.h"

/* MC-200 frames as the vendor text specifies them (docs/adapters.md, "The
 * MC-200 manhole cover"; the sim reads the text, never the gateway's code):
 * 31 bytes, magic "MC", version 01, CRC-16/MODBUS low byte first. */
#define SIM_COVER_LEN 31

/* Message types (byte 3). */
enum { SIM_COVER_REPORT = 0x01, SIM_COVER_ALARM = 0x02, SIM_COVER_HEARTBEAT = 0x03 };

/* Status and changed bits (bytes 18 and 19). */
enum {
    SIM_COVER_OPEN = 1u << 0,
    SIM_COVER_TILT = 1u << 1,
    SIM_COVER_OVERFLOW = 1u << 2,
    SIM_COVER_BATTERY_LOW = 1u << 3,
};

/* One frame in engineering units; the encoder rounds to the wire units and
 * saturates one step short of the "not measured" code, which a NaN gives
 * (tilt, water, battery 0xFFFF; RSRP 0x8000; SNR 0x7F). */
typedef struct sim_cover {
    uint8_t type;  /* SIM_COVER_* message type */
    char imei[16]; /* exactly 15 decimal digits */
    uint16_t seq;
    uint32_t time_s;  /* Unix seconds; 0 = no clock */
    uint8_t status;   /* SIM_COVER_* bits now */
    uint8_t changed;  /* the bits that changed since the previous frame */
    double tilt_deg;  /* degrees, sent in 0.1 deg: 0 .. 180 */
    double water_m;   /* m above the well's bottom, sent in mm: 0 .. 65.534 */
    double battery_v; /* V, sent in mV: 0 .. 65.534 */
    double rsrp_dbm;  /* dBm, sent in 0.1 dBm (int16) */
    double snr_db;    /* dB, int8: -128 .. 126 */
} sim_cover;

/* Encodes f into out[0..cap): returns 31 or SIM_EINVAL (bad IMEI, type or
 * bits, cap too small). */
int sim_cover_encode(const sim_cover *f, uint8_t *out, size_t cap);

#endif
