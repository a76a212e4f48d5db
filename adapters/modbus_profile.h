#ifndef GW_MODBUS_PROFILE_H
#define GW_MODBUS_PROFILE_H
/* Modbus device profiles: a vendor describes a sensor's register map in YAML
 * and the gateway reads it without new C code. This module loads a profile,
 * plans the reads at load time, decodes the answers into readings and turns a
 * write to a named point into a Modbus write request. Everything here is pure
 * (no sockets, no logging, no clock): the poller owns the wire and the time.
 *
 * PROFILE FORMAT (adapters/profiles/README.md has the same text with examples)
 *
 * Top level (unknown keys are errors naming file, line and key):
 *   name: wl100              required, <= 63 chars, letters, digits, '_', '-', '.'
 *   device_type: waterlogging  required, <= 31 chars (same charset)
 *   description: "..."       optional, <= 255 chars
 *   vendor: "..."            optional, <= 63 chars
 *   max_gap: 8               registers a merged read may bridge between points (0..124, default 8)
 *   max_gap_bits: 64         coils/discrete inputs a merged read may bridge (0..1999, default 64)
 *   max_read_registers: 125  registers per read (1..125, default 125)
 *   max_read_bits: 2000      bits per read (1..2000, default 2000)
 *   unreadable:              ranges no read may touch (the device answers them with an exception)
 *     - {kind: holding, from: 0x0010, to: 0x001F}      inclusive; at most 32 ranges
 *   params:                  site values a derived point may use (at most 16)
 *     install_height:        the name used in expressions (an identifier)
 *       default: 5.0         optional: used when the site gives no value
 *       fallback: h_reg      optional: a register point used when the site gives no value
 *       unit: m              optional, documentation only
 *       description: "..."   optional
 *   points:                  required, 1..256 points, decoded and emitted in this order
 *
 * A register point:
 *   name: depth_raw          required identifier [A-Za-z_][A-Za-z0-9_]*, <= 31 chars, unique
 *   metric: water_depth      reading key (default: name), unique among emitted points
 *   kind: holding            coil | discrete | input | holding
 *   address: 0x0000          0..65535, decimal or 0x hex (the PDU address, not 40001 style)
 *   type: uint16             bool | bits | int16 | uint16 | int32 | uint32 | int64 | uint64 |
 *                            float32 | float64 | bcd16 | bcd32 (bcd = bcd16) | string
 *                            coil and discrete points must be bool
 *   order: AB                wire order of the value's bytes, A = most significant:
 *                            16-bit AB (default), BA; 32-bit ABCD (default), DCBA, BADC, CDAB;
 *                            64-bit ABCDEFGH (default), HGFEDCBA, BADCFEHG, GHEFCDAB;
 *                            string AB (default: first character in the high byte) or BA
 *   bit: 3                   bool on a register: the bit (0..15; without it, value = reg != 0);
 *                            bits: the lowest bit of the field (required)
 *   width: 4                 bits: field width (1..16, bit + width <= 16)
 *   length: 8                string: number of registers (1..64)
 *   scale: 0.1               value = raw / 10^decimals * scale + offset (default 1)
 *   offset: 0                (default 0)
 *   decimals_from: dec       a plain numeric register point holding the number of decimals (0..9)
 *   unit_from: ucode         a plain numeric register point holding a unit code, looked up in
 *   unit_codes:              code -> unit. A bare unit emits the value unchanged in that unit;
 *     0: {unit: MPa, factor: 1000}   {unit, factor} multiplies by factor and emits `unit` of
 *     1: kPa                         the point (so every code lands in one unit). <= 32 codes.
 *   unit: cm                 emitted unit (<= 15 chars)
 *   range: [0, 500]          valid range after scaling, inclusive; ~ leaves a side open;
 *                            outside it the reading is bad with reason out_of_range
 *   writable: true           gw_profile_encode_write may write it (coil or holding; not bits,
 *                            bool on a register, string, decimals_from or unit_from)
 *   write_fc: 16             force the write function: 5 or 15 for coils, 6 or 16 for registers
 *                            (default: 5 for a coil, 6 for one register, 16 for more)
 *   internal: true           read and usable by other points, but not emitted
 *   deadband: 0.5            report-by-exception: absolute change, or "2%" of the last value
 *   max_silence: 10m         report at least this often even without change (ms/s/m/h/d)
 *   decimals: 2              publish the value rounded to this many places (0..9); rules still
 *                            see it unrounded. Without it a float32 is published at its own
 *                            resolution (the shortest decimal that reads back as the same float)
 *   description: "..."
 *
 * A status point has `events:` or `codes:` and emits events instead of a reading (it may
 * be bool, bits, int16, uint16, int32 or uint32, and takes none of scale/offset/unit/
 * range/deadband/decimals/metric/internal/writable/unit_from/decimals_from/max_silence):
 *   events:                  bits of the raw value that are conditions (at most 32)
 *     - {bit: 3, event: tamper}               bit 0..31 (none on a bool point: its value)
 *     - {bit: 7, event: door_open, active: low}   active: high (default) or low
 *   codes:                   an enumeration: value -> event, or value -> quality reason
 *     1: echo_lost           the event is active while the value is this code
 *     2: {reason: calibrating, quality: uncertain}   marks the applies_to points
 *     3: {reason: sensor_fault}                      (quality bad by default)
 *   applies_to: [level]      codes only: the points a reason marks (not status or string)
 * Event names are unique in a profile, at most GW_PROFILE_MAX_EVENTS of them. Each decode reports
 * every named event's state (active 1 or 0) unless its request failed; pollers pass them through
 * gw_profile_event_edge so only changes go on (the state persisted across restarts).
 *
 * A derived point has `derived:` instead of kind/address/type/order/bit/width/length/
 * decimals_from/unit_from/unit_codes/writable:
 *   derived: "install_height - air_gap"
 * The expression takes numbers, point names, param names, + - * / and parentheses (at most
 * 255 characters, 64 terms, nesting 16). A derived point may use register points and derived
 * points defined above it, never string points. If any input is bad the result is bad with that
 * input's reason. A param takes the site value, else its fallback point (when good, or when there
 * is no default), else its default; with none of them it is bad with reason missing. A division
 * by zero or a non-finite result is bad with reason out_of_range.
 * scale/offset/unit/range/internal/deadband/max_silence apply to derived points too.
 *
 * Quality: a failed request (status != 0) makes its points bad with reason comm_fail (value 0);
 * NaN or infinite floats are bad with sensor_fault; invalid BCD digits, a decimals value outside
 * 0..9 and an unknown unit code are bad with device_flag. String points are emitted as events
 * (kind = metric, active = 1, detail = the text, non-printable bytes as '?').
 *
 * REQUEST PLANNING: points of one kind are sorted by address and merged greedily while the gap
 * to the next point is at most max_gap (max_gap_bits for coils and discrete inputs), the read
 * stays within max_read_registers (max_read_bits) and the bridged gap touches no unreadable
 * range. Requests are listed by function code (1 coils, 2 discrete, 3 holding, 4 input), then
 * by address.
 */
#include "base/model.h"

#include <stddef.h>
#include <stdint.h>

#define GW_PROFILE_MAX_POINTS 256
#define GW_PROFILE_MAX_EVENTS 128 /* named events (status bits and codes) in one profile */
#define GW_MB_WRITE_MAX 8         /* largest write payload gw_profile_encode_write produces */

typedef struct gw_profile gw_profile;

/* A site value (install height, base level...) for derived points. */
typedef struct gw_param {
    char key[32];
    double value;
} gw_param;

/* One planned read: fc 1 coils, 2 discrete inputs, 3 holding, 4 input registers. */
typedef struct gw_mb_request {
    uint8_t fc;
    uint16_t addr;
    uint16_t count;
} gw_mb_request;

/* The answer to one planned read. data is borrowed for the call. */
typedef struct gw_mb_result {
    int status;          /* 0 ok; >0 Modbus exception code; <0 GW_E* (timeout, comm failure) */
    const uint8_t *data; /* response data bytes as on the wire: registers big-endian, bits
                            packed LSB first; exactly 2*count bytes or (count+7)/8 bytes */
    size_t len;
} gw_mb_result;

/* What a point is, for pollers and admin pages. Strings point into the profile. */
typedef struct gw_profile_point_info {
    const char *name;
    const char *metric;
    const char *unit; /* "" when none (a unit code may still supply one) */
    int fc;           /* read function 1..4; 0 for a derived point */
    uint16_t address;
    uint16_t count; /* registers (fc 3/4) or bits (fc 1/2); 0 for a derived point */
    int writable;
    int internal;
    int derived;
    double deadband; /* absolute, or percent when deadband_pct; see has_deadband */
    int has_deadband;
    int deadband_pct;
    int64_t max_silence_ms; /* 0 = none */
    int decimals;           /* published places, -1 = as computed */
    int status;             /* has events or codes: emits events, no reading */
} gw_profile_point_info;

/* Loads a profile from YAML text (len bytes, need not be NUL-terminated); file
 * names the source in messages. On success *out owns a new profile the caller
 * frees with gw_profile_free. On failure returns GW_EINVAL (bad profile),
 * GW_EMALFORMED (bad YAML) or GW_ENOMEM, leaves *out NULL and writes
 * "FILE:LINE: message" naming the key into err. */
int gw_profile_load_text(gw_profile **out, const char *file, const char *text, size_t len,
                         char *err, size_t errlen);
/* As gw_profile_load_text, reading path (at most 4 MiB). */
int gw_profile_load_file(gw_profile **out, const char *path, char *err, size_t errlen);
/* Loads the shipped profile "adapters/profiles/<name>.yaml" compiled into the
 * binary. GW_ENOTFOUND when there is no such profile. */
int gw_profile_load_embedded(gw_profile **out, const char *name, char *err, size_t errlen);
void gw_profile_free(gw_profile *p);

const char *gw_profile_name(const gw_profile *p);
const char *gw_profile_device_type(const gw_profile *p);
const char *gw_profile_description(const gw_profile *p);

/* The reads planned at load time; *reqs stays valid until gw_profile_free. */
size_t gw_profile_requests(const gw_profile *p, const gw_mb_request **reqs);

/* Decodes the answers to the planned reads (results[i] answers reqs[i], n must
 * equal the number of requests) into readings and string events through out.
 * Readings carry metric, unit, value, quality, reason and recv_ms = now_ms;
 * device and obs_ms are left empty (Modbus gives no device time). A failed
 * request marks only the points it covers bad (comm_fail). site gives the site
 * params (may be NULL when nsite is 0). Returns 0; GW_EINVAL when n does not
 * match the plan; GW_EMALFORMED, emitting nothing, when a successful result's
 * data is missing or its length is not exactly what its request asked for; or
 * the first negative code a sink callback returned (decoding stops there). */
int gw_profile_decode(const gw_profile *p, const gw_param *site, size_t nsite,
                      const gw_mb_result *results, size_t n, int64_t now_ms, const gw_sink *out);

/* Resolves a write of value (in the point's emitted unit; checked against the
 * point's range) to the writable point named point: *fc 5, 6, 15 or 16, *addr,
 * *count (coils or registers) and the payload in wire order in buf, which must
 * hold GW_MB_WRITE_MAX bytes. *len receives the payload length: FC 5 two bytes
 * (FF 00 or 00 00), FC 15 one byte, FC 6 two bytes, FC 16 2*count bytes.
 * Returns 0, GW_ENOTFOUND (no such point) or GW_EINVAL (not writable, value
 * not finite, outside the point's range or outside what its type holds). */
int gw_profile_encode_write(const gw_profile *p, const char *point, double value, uint8_t *fc,
                            uint16_t *addr, uint16_t *count, uint8_t *buf, size_t *len);

/* Points, in file order (internal ones included). */
size_t gw_profile_point_count(const gw_profile *p);
/* Index of the point with this name, or GW_ENOTFOUND. */
int gw_profile_point_find(const gw_profile *p, const char *name);
/* Index of the emitted point with this metric key, or GW_ENOTFOUND. */
int gw_profile_metric_find(const gw_profile *p, const char *metric);
int gw_profile_point_get(const gw_profile *p, size_t index, gw_profile_point_info *out);

/* Event edges. A decode reports the state of every named event; a poller keeps one byte
 * per event (gw_profile_event_count bytes, zeroed: every condition starts inactive, so a
 * standing one is raised once) and passes each event through gw_profile_event_edge: 1 when
 * it changed (state updated: forward it), 0 when not (drop it), GW_ENOTFOUND for events no
 * status point names (string points: forward them). */
size_t gw_profile_event_count(const gw_profile *p);
const char *gw_profile_event_name(const gw_profile *p, size_t slot); /* NULL past the end */
int gw_profile_event_edge(const gw_profile *p, uint8_t *state, const gw_event *e);
/* The state as text, one "name=0|1" line per event, for persisting beside the outbox:
 * returns its length (NUL-terminated in buf) or GW_EFULL. Load takes such text (len bytes)
 * and sets the events it names; unknown names and bad lines are ignored, so a profile that
 * gained or lost events keeps the rest. */
int gw_profile_event_state_save(const gw_profile *p, const uint8_t *state, char *buf, size_t cap);
void gw_profile_event_state_load(const gw_profile *p, uint8_t *state, const char *text, size_t len);

/* One line describing point index for people (check-profile): its type, scaling, events
 * or codes. Returns the length written (truncated to cap - 1). */
int gw_profile_point_describe(const gw_profile *p, size_t index, char *buf, size_t cap);

/* Report-by-exception for point index: returns 1 when value at now_ms should be
 * reported given the last reported value at last_ms (last_ms <= 0: never
 * reported), 0 when it may be suppressed, GW_EINVAL for a bad index. Reports
 * when the point has no deadband, when a value is not finite, when time went
 * backwards, when max_silence has elapsed, or when |value - last| exceeds the
 * deadband (absolute, or percent of |last|). Quality changes are not seen here:
 * the caller must always report a change of quality or reason. */
int gw_profile_rbe_should_report(const gw_profile *p, size_t point_index, double last_value,
                                 int64_t last_ms, double value, int64_t now_ms);

#endif
