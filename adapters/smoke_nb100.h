#ifndef GW_SMOKE_NB100_H
#define GW_SMOKE_NB100_H
/* "NB-100" NB-IoT smoke detector (a fictional vendor, used as the worked example
 * of a binary adapter in docs/adapters.md). The detector posts one frame per
 * report into LwM2M object 19/0/0 (or /d/<IMEI>/event). Pure code: no I/O, no
 * logging, no clock.
 *
 * FRAME (version 1, all multi-byte fields big-endian, 30 bytes without extensions)
 *
 *   off size field
 *   0   2    magic 0xA5 0x5A
 *   2   1    version: 0x01
 *   3   1    body length L: bytes from offset 4 up to the CRC (>= 24; extension bytes after
 *            the fixed body are skipped). The frame must be exactly 4 + L + 2 bytes long.
 *   4   8    IMEI: 15 BCD digits, high nibble first, the 16th nibble is 0xF
 *   12  1    message type: 0x01 periodic report, 0x02 event report, 0x03 self-test report
 *   13  2    sequence number (wraps)
 *   15  4    observation time, Unix seconds (0 = the detector has no clock)
 *   19  2    event bits (below)
 *   21  2    battery voltage, mV (0xFFFF = not measured)
 *   23  2    smoke density, 0.01 dB/m (0xFFFF = not measured)
 *   25  2    chamber temperature, int16, 0.1 degC (0x8000 = not measured)
 *   27  1    signal strength RSRP/RSSI, int8 dBm (0x7F = unknown)
 *   28  L-24 extension bytes (ignored by version 1 readers)
 *   4+L 2    CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) over every byte before it
 *
 * EVENT BITS
 *   0 fire alarm (smoke above threshold)        1 alarm cleared (smoke back to normal)
 *   2 self-test passed                          3 self-test failed
 *   4 muted (the local sounder was silenced)    5 low battery
 *   6 battery critical                          7 tamper (removed from its base)
 *   8 hardware fault                            9 dirty sensing chamber
 *   10 end of life                              11 heartbeat
 *   12..15 reserved (ignored)
 *
 * SEMANTICS (GB 20517-2025): a battery fault is never a fire; muting never hides a
 * fire: a frame with the fire bit set is a fire alarm (active 1) whatever else is set,
 * even "cleared" or "muted". */
#include "adapters/adapter.h"

#include <stddef.h>
#include <stdint.h>

#define GW_NB100_MAGIC0 0xA5
#define GW_NB100_MAGIC1 0x5A
#define GW_NB100_VERSION 0x01
#define GW_NB100_BODY_MIN 24
#define GW_NB100_FRAME_MIN (4 + GW_NB100_BODY_MIN + 2)
#define GW_NB100_FRAME_MAX (4 + 255 + 2)

enum {
    GW_NB100_FIRE = 1u << 0,
    GW_NB100_CLEARED = 1u << 1,
    GW_NB100_TEST_PASS = 1u << 2,
    GW_NB100_TEST_FAIL = 1u << 3,
    GW_NB100_MUTE = 1u << 4,
    GW_NB100_BATT_LOW = 1u << 5,
    GW_NB100_BATT_CRIT = 1u << 6,
    GW_NB100_TAMPER = 1u << 7,
    GW_NB100_HW_FAULT = 1u << 8,
    GW_NB100_DIRTY = 1u << 9,
    GW_NB100_EOL = 1u << 10,
    GW_NB100_HEARTBEAT = 1u << 11
};

enum { GW_NB100_T_REPORT = 1, GW_NB100_T_EVENT = 2, GW_NB100_T_SELFTEST = 3 };

typedef struct gw_nb100_frame {
    char imei[16]; /* 15 digits */
    uint8_t type;
    uint16_t seq;
    uint32_t time_s;
    uint16_t events;
    uint16_t battery_mv;
    uint16_t smoke;
    int16_t temp;
    int8_t rssi;
} gw_nb100_frame;

/* Parses and checks one frame (magic, version, exact length, BCD digits, CRC,
 * message type). Returns 0, GW_EMALFORMED, GW_ECRC or GW_EUNSUPPORTED (unknown
 * version or message type). */
int gw_nb100_parse(const uint8_t *buf, size_t len, gw_nb100_frame *out);

/* Writes a version-1 frame (30 bytes) into out (cap >= 30). Returns its length
 * or GW_EINVAL (bad IMEI, small buffer). For tests, benches and the docs. */
int gw_nb100_encode(const gw_nb100_frame *f, uint8_t *out, size_t cap);

uint16_t gw_nb100_crc(const uint8_t *buf, size_t len);

/* The adapter descriptor ("smoke-nb100"). */
extern const gw_adapter gw_adapter_smoke_nb100;

#endif
