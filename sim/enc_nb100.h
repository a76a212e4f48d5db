#ifndef SIM_ENC_NB100_H
#define SIM_ENC_NB100_H
/* NB-100 smoke detector frames (enc_nb100.c); pure. */
#include "sim/base.h"

/* NB-100 frames as specified in the vendor text (the comment block at the top
 * of adapters/smoke_nb100.h, restated in docs/adapters.md; the sim reads the
 * text, never the gateway's code): magic A5 5A, version 01, body length L,
 * then 24 fixed body bytes, L-24 extension bytes, CRC-16/CCITT-FALSE. */
#define SIM_NB100_BODY_MIN 24                        /* fixed body bytes, L >= 24 */
#define SIM_NB100_EXT_MAX (255 - SIM_NB100_BODY_MIN) /* extension bytes, L <= 255 */
#define SIM_NB100_MIN (4 + SIM_NB100_BODY_MIN + 2)   /* 30: a frame without extensions */
#define SIM_NB100_MAX (4 + 255 + 2)                  /* 261 */

/* Message types (byte 12). A heartbeat is a periodic report with event bit 11. */
enum { SIM_NB100_REPORT = 0x01, SIM_NB100_EVENT = 0x02, SIM_NB100_SELFTEST = 0x03 };

/* Event bits (bytes 19-20). */
enum {
    SIM_NB_FIRE = 1u << 0,
    SIM_NB_CLEARED = 1u << 1,
    SIM_NB_TEST_PASS = 1u << 2,
    SIM_NB_TEST_FAIL = 1u << 3,
    SIM_NB_MUTE = 1u << 4,
    SIM_NB_BATTERY_LOW = 1u << 5,
    SIM_NB_BATTERY_CRIT = 1u << 6,
    SIM_NB_TAMPER = 1u << 7,
    SIM_NB_HW_FAULT = 1u << 8,
    SIM_NB_DIRTY = 1u << 9,
    SIM_NB_END_OF_LIFE = 1u << 10,
    SIM_NB_HEARTBEAT = 1u << 11,
};

/* One frame, in engineering units; the encoder rounds to the wire units and
 * saturates. A NaN value is sent as the field's "not measured" code (battery
 * and smoke 0xFFFF, temperature 0x8000, RSSI 0x7F), which a measured value
 * never takes (it saturates one step short). */
typedef struct sim_nb100 {
    uint8_t type;  /* SIM_NB100_* */
    char imei[16]; /* exactly 15 decimal digits */
    uint16_t seq;
    uint32_t time_s;    /* observation time, Unix seconds; 0 = no clock */
    uint16_t events;    /* SIM_NB_* bits */
    double battery_v;   /* V, sent in mV: 0 .. 65.534 */
    double smoke_db_m;  /* dB/m, sent in 0.01 dB/m: 0 .. 655.34 */
    double temp_c;      /* degC, sent in 0.1 degC (int16): -3276.7 .. 3276.7 */
    double rssi_dbm;    /* dBm, int8: -128 .. 126 */
    const uint8_t *ext; /* borrowed; next extension bytes (readers skip them) */
    size_t next;        /* 0 .. SIM_NB100_EXT_MAX */
} sim_nb100;

/* CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no xorout. */
uint16_t sim_crc16_ccitt_false(const uint8_t *p, size_t n);
/* Packs 15 decimal digits into 8 BCD bytes, high nibble first, the 16th
 * nibble 0xF (861234567800001 -> 86 12 34 56 78 00 00 1F). SIM_EINVAL unless
 * imei is exactly 15 digits. */
int sim_nb100_imei_bcd(const char *imei, uint8_t out[8]);
/* Encodes f into out[0..cap): returns the frame length (30 + next) or
 * SIM_EINVAL (bad IMEI or type, too many extension bytes, cap too small). */
int sim_nb100_encode(const sim_nb100 *f, uint8_t *out, size_t cap);

#endif
