#ifndef GW_SL651_H
#define GW_SL651_H
/* SL651-2014 hydrological telemetry codec (水文监测数据通信规约), centre side.
 *
 * A pure library: no sockets, no logging, no clock reads (time is an argument),
 * no allocation except in gw_sl651_to_json. Every untrusted byte is read through a
 * bounded cursor; a length field is never trusted.
 *
 * Layers:
 *   frame   gw_sl651_frame_parse (one frame at the buffer start) and gw_sl651_scan (a
 *           TCP stream scanner that resynchronises past garbage). Both encodings: HEX/BCD
 *           (7E 7E) and ASCII (SOH, every header byte as two hex characters).
 *   body    gw_sl651_decode: serial, send time, station, observation time and elements,
 *           emitted through a gw_sink as readings and events.
 *   encode  the centre's confirm and the downlink requests 37, 46 and 4A.
 *   json    gw_sl651_to_json for `gateway decode --protocol sl651`.
 *   dedup   a fixed-size memory of recent (station, serial, send time).
 *
 * Conventions (chosen and documented here):
 *   - SL651 times are Beijing time (UTC+8) with two-digit years meaning 20YY; *_ms values
 *     are UTC milliseconds since the epoch.
 *   - An all-F element value is emitted as a reading with value 0, quality GW_Q_BAD and
 *     reason GW_R_MISSING (it tells the platform the sensor answered "no value").
 *   - F4 (12 five-minute rainfalls) and F5..FC (12 five-minute relative levels) cover the
 *     hour BEFORE the observation time by default: value k (0..11) is stamped at the end
 *     of its interval, obs - 55 min + 5k min, so the last value carries the observation
 *     time. cfg->drp_forward = 1 selects obs + 5k min instead. Invalid samples (FF / FFFF)
 *     are emitted as GW_Q_BAD / GW_R_MISSING.
 *   - F4 has 12 bytes and F5..FC 24 bytes whatever their definition byte says (Table C.1
 *     fixes them). After a time step code 04 of 000000 (the C.1 note on DRP/DRZ) an F4..FC
 *     element carries whole hours of 5-minute samples to the end of the body: hour h is
 *     stamped as a one-hour element whose observation time is obs + h hours.
 *   - Status element 45 is four bytes read big-endian (bit 0 = least significant bit of
 *     the last byte). Its events are edge-triggered against cfg->status_prev (see
 *     gw_sl651_station_cfg): only bits that changed produce an event.
 *   - F2 (manual-set text, 人工置数) runs to the end of the body; it becomes one event
 *     "manual_set" whose detail is the text (non-printable bytes as '?').
 *   - The length field counts the bytes (ASCII: characters) after the start character up
 *     to, not including, the end character (SL651-2014 Tables 16, 18, 22). After SYN it
 *     therefore INCLUDES the 3-byte (ASCII: 6-character) packet counter; f->body and
 *     f->body_len exclude it.
 */
#include "base/model.h"

#include <stddef.h>
#include <stdint.h>

/* Control characters. */
#define GW_SL651_SOH 0x01
#define GW_SL651_STX 0x02
#define GW_SL651_ETX 0x03
#define GW_SL651_EOT 0x04
#define GW_SL651_ENQ 0x05
#define GW_SL651_ACK 0x06
#define GW_SL651_NAK 0x15
#define GW_SL651_SYN 0x16
#define GW_SL651_ETB 0x17
#define GW_SL651_ESC 0x1B

#define GW_SL651_BODY_MAX 4095 /* 12-bit length field */
/* Largest frame on the wire (ASCII with SYN): a stream buffer of this size always holds
 * one complete frame. */
#define GW_SL651_FRAME_MAX (1 + 2 + 10 + 4 + 2 + 4 + 1 + 6 + GW_SL651_BODY_MAX + 1 + 4)

enum { GW_SL651_ENC_HEX = 0, GW_SL651_ENC_ASCII = 1 };
enum { GW_SL651_DIR_UP = 0, GW_SL651_DIR_DOWN = 8 };

/* Why a candidate frame was rejected; counted in gw_sl651_stats.reject[]. */
typedef enum {
    GW_SL651_REJ_HEADER = 0, /* direction nibble, start character or ASCII hex digit wrong */
    GW_SL651_REJ_LENGTH,     /* length field larger than the limit */
    GW_SL651_REJ_END,        /* no valid end character where the length says */
    GW_SL651_REJ_CRC,        /* checksum mismatch */
    GW_SL651_REJ_TRUNCATED,  /* buffer ended inside a frame (single-frame parse only) */
    GW_SL651_REJ__COUNT
} gw_sl651_reject;

/* Counters a connection keeps; every field only grows. Optional everywhere (NULL). */
typedef struct gw_sl651_stats {
    uint64_t frames;        /* valid frames returned */
    uint64_t bytes_skipped; /* garbage bytes stepped over by the scanner */
    uint64_t reject[GW_SL651_REJ__COUNT];
} gw_sl651_stats;

const char *gw_sl651_reject_name(int r);

/* A time as sent: Beijing time, yy is 0..99 meaning 2000..2099. */
typedef struct gw_sl651_time {
    uint8_t yy, mo, dd, hh, mi, ss;
} gw_sl651_time;

/* UTC ms of a Beijing-time stamp; GW_EINVAL (as a negative value) when out of range. */
int gw_sl651_time_to_ms(const gw_sl651_time *t, int64_t *ms);
/* Beijing-time stamp of a UTC ms value (years 2000..2099). */
int gw_sl651_time_from_ms(int64_t utc_ms, gw_sl651_time *t);

/* One frame as found on the wire. body points INTO the caller's buffer and stays valid
 * only as long as that buffer does: decode or copy before the buffer is reused. */
typedef struct gw_sl651_frame {
    uint8_t encoding;  /* GW_SL651_ENC_* */
    uint8_t direction; /* GW_SL651_DIR_* */
    uint8_t centre;
    uint8_t station[5];
    char station_hex[11]; /* the 5 address bytes as 10 upper-case hex digits */
    uint16_t password;
    uint8_t function;
    uint16_t length;                  /* declared body length */
    uint8_t start;                    /* STX or SYN */
    uint16_t packet_total, packet_no; /* from SYN frames, else 0 */
    uint8_t end;                      /* ETX, ETB, ENQ, ACK, NAK, EOT or ESC */
    uint16_t crc;
    const uint8_t *body; /* HEX: body bytes; ASCII: body characters */
    size_t body_len;
    size_t frame_len; /* total bytes of the frame on the wire */
} gw_sl651_frame;

/* Modbus CRC-16 (poly 0xA001 reflected, init 0xFFFF). SL651 transmits it high byte first. */
uint16_t gw_sl651_crc16(const uint8_t *p, size_t n);

/* Parses exactly one frame starting at buf[0] (0x7E 0x7E or SOH). Returns the frame length
 * (> 0) and fills *f; GW_EAGAIN when buf holds only the beginning of a plausible frame;
 * GW_ECRC on checksum mismatch (f->frame_len is then set); GW_EMALFORMED otherwise.
 * Rejections are counted in st (may be NULL). */
int gw_sl651_frame_parse(const uint8_t *buf, size_t len, gw_sl651_frame *f, gw_sl651_stats *st);

/* Stream scanner for a TCP receive buffer that may hold garbage, partial frames and
 * several frames. Looks for the next complete frame. Always sets *consumed (bytes the
 * caller must drop from the front of buf) and *skipped (how many of those were garbage).
 * Returns:
 *   GW_OK      a valid frame is in *f (it points into buf: use it before dropping);
 *   GW_ECRC    a well-delimited frame failed its checksum and was consumed (*f describes it);
 *   GW_EAGAIN  no complete frame yet: drop *consumed garbage bytes, keep the rest, read more.
 * A false frame start never blocks a later complete frame: if one exists further on, it
 * is returned and the bytes before it count as skipped. */
int gw_sl651_scan(const uint8_t *buf, size_t len, gw_sl651_frame *f, size_t *consumed,
                  size_t *skipped, gw_sl651_stats *st);

/* ---- body decoding ---------------------------------------------------------------- */

/* Field variants a station may be configured to use (off by default; each use is
 * counted in gw_sl651_report.quirks_used). */
#define GW_SL651_Q_ID28 0x01u /* F1 28 / F0 28 in place of the F1F1 / F0F0 identifiers */

/* "Normal" status word: every condition clear, the cabinet door (bit 7) closed. */
#define GW_SL651_STATUS_NORMAL 0x00000080u

/* Per-station element -> metric override. element is the identifier byte, or 0xFF00 | xx
 * for a custom FFxx element (which the decoder otherwise skips). level = 1 applies the
 * station's base level and correction. The strings must outlive the decode call. */
typedef struct gw_sl651_override {
    uint16_t element;
    const char *metric;
    const char *unit;
    uint8_t level;
} gw_sl651_override;

/* Station configuration applied while decoding. All optional (pass NULL for none). */
typedef struct gw_sl651_station_cfg {
    double base_level; /* m: true level = base_level + sensor value + correction */
    double correction; /* m */
    const gw_sl651_override *overrides;
    size_t n_overrides;
    uint8_t drp_forward; /* 1: F4..FC sample k is at obs + 5k min (see the file comment) */
    unsigned quirks;     /* GW_SL651_Q_* accepted from this station */
    /* The station's last known 45 status word; element 45 emits an event only for the
     * bits that differ from it. Callers without memory (the CLI) leave it 0 and set
     * status_known 0: the word is then taken as GW_SL651_STATUS_NORMAL, so the first
     * report raises what is abnormal and never "ends" what was never active. */
    uint32_t status_prev;
    uint8_t status_known;
} gw_sl651_station_cfg;

#define GW_SL651_UNKNOWN_MAX 8

/* What gw_sl651_decode found besides the readings and events. */
typedef struct gw_sl651_report {
    uint16_t serial;
    gw_sl651_time send_time;
    int64_t send_ms; /* 0 when the body had no send time */
    uint8_t has_station;
    char station_hex[11]; /* from F1F1 */
    uint8_t station_type; /* 0x50 rain, 0x48 river, ... 0 when absent */
    uint8_t has_obs;
    gw_sl651_time obs_time; /* the last F0F0 seen */
    int64_t obs_ms;
    uint8_t has_status;
    uint32_t status;        /* element 45 bitmap */
    uint8_t function_known; /* 0: function code not decoded beyond serial/time (custom etc.) */
    uint8_t truncated;      /* element parsing stopped at a variable-length or bad element */
    unsigned readings, events;
    unsigned missing;                           /* readings emitted with reason missing */
    unsigned bad_bcd;                           /* values skipped for non-decimal digits */
    unsigned unknown;                           /* unknown elements skipped */
    uint16_t unknown_ids[GW_SL651_UNKNOWN_MAX]; /* the first ones (0xFF00|xx for FFxx) */
    unsigned fixed_len;   /* F4..FC whose definition byte disagreed with Table C.1 */
    unsigned hours;       /* hours of 5-minute data decoded after a 000000 step code */
    unsigned quirks_used; /* configured field variants this body needed */
    uint8_t has_manual;
    char manual[GW_DETAIL_MAX]; /* F2 text (truncated), when has_manual */
    /* F3F3 picture bytes (function 36, HEX): they point into the frame body and stay
     * valid only as long as it does. NULL when the body has none. */
    const uint8_t *picture;
    size_t picture_len;
} gw_sl651_report;

/* Decodes f's body. Readings and events go to sink (device left empty; the caller fills
 * the registry id from f->station_hex). Unknown elements and custom function codes are
 * skipped and counted in *rep, never fatal. Returns GW_OK, GW_EMALFORMED when the fixed
 * part of the body (serial, time, F1F1, F0F0) is cut or invalid, or the first negative
 * code a sink callback returned (decoding stops there). rep may be NULL. */
int gw_sl651_decode(const gw_sl651_frame *f, const gw_sl651_station_cfg *cfg, const gw_sink *sink,
                    gw_sl651_report *rep);

/* Metric key and unit of a standard element identifier, or NULL when not in the table. */
const char *gw_sl651_element_metric(uint8_t id, const char **unit);

/* One row of Table C.1 as this decoder holds it. digits/decimals are the table's
 * N(digits,decimals); bytes is the HEX value length (fixed for F4..FC, else
 * ceil(digits / 2), 0 for the identifiers without a value). */
typedef struct gw_sl651_element {
    uint8_t id;
    const char *guide;  /* ASCII guide symbol, e.g. "CODMN" */
    const char *metric; /* NULL: no reading (step code, guides, status, text) */
    const char *unit;
    uint8_t digits, decimals, bytes;
} gw_sl651_element;

/* Fills *out for a standard identifier; GW_ENOTFOUND when it is not in the table. */
int gw_sl651_element_info(uint8_t id, gw_sl651_element *out);
const char *gw_sl651_function_name(uint8_t fn);

/* ---- encoders ---------------------------------------------------------------------- */

/* The link identity a downlink frame carries. */
typedef struct gw_sl651_link {
    uint8_t encoding; /* GW_SL651_ENC_* */
    uint8_t centre;
    uint8_t station[5];
    uint16_t password;
} gw_sl651_link;

/* The centre's confirm of an uplink report (M2/M3): downlink, same function code,
 * body = serial + send time, end EOT (done) or ESC (stay online). Pass the report's own
 * send time to echo it, or the centre's clock. Writes into out (cap bytes) and returns the
 * frame length, GW_EFULL when cap is too small, GW_EINVAL on a bad argument. */
int gw_sl651_encode_confirm(const gw_sl651_frame *up, uint16_t serial, const gw_sl651_time *t,
                            uint8_t end, uint8_t *out, size_t cap);

/* The M3 answers (SL651-2014 6.3.1.2 c): after SYN the packet counter (total, no).
 * end EOT/ESC with no = total confirms the whole message once; end NAK with no = the
 * missing packet asks the station to resend it. Returns as gw_sl651_encode_confirm. */
int gw_sl651_encode_confirm_m3(const gw_sl651_frame *up, uint16_t serial, const gw_sl651_time *t,
                               uint8_t end, unsigned total, unsigned no, uint8_t *out, size_t cap);

/* A downlink request whose body is serial + send time, end ENQ: 0x37 query real-time
 * data, 0x46 query status and alarms, 0x4A set clock (t is the clock to set). */
int gw_sl651_encode_request(const gw_sl651_link *link, uint8_t function, uint16_t serial,
                            const gw_sl651_time *t, uint8_t *out, size_t cap);
#define GW_SL651_FN_QUERY_REALTIME 0x37
#define GW_SL651_FN_QUERY_STATUS 0x46
#define GW_SL651_FN_SET_CLOCK 0x4A

/* ---- JSON --------------------------------------------------------------------------- */

/* Renders header, body fields, readings and events as JSON text. Returns a malloc'd
 * NUL-terminated string the caller frees with free(), or NULL on allocation failure. */
char *gw_sl651_to_json(const gw_sl651_frame *f, const gw_sl651_station_cfg *cfg);

/* ---- duplicate detection -------------------------------------------------------------- */

#define GW_SL651_DEDUP_SLOTS 128

/* Remembers the last GW_SL651_DEDUP_SLOTS (station, serial, send time) keys, oldest
 * forgotten first. Plain value: zero it (or call init) and keep it per gateway. */
typedef struct gw_sl651_dedup {
    struct {
        uint8_t station[5];
        uint8_t used;
        uint16_t serial;
        gw_sl651_time t;
    } slot[GW_SL651_DEDUP_SLOTS];
    unsigned next;
} gw_sl651_dedup;

void gw_sl651_dedup_init(gw_sl651_dedup *d);
/* Returns 1 when the key was seen recently (a resend), else 0 and remembers it. */
int gw_sl651_dedup_check(gw_sl651_dedup *d, const char *station_hex, uint16_t serial,
                         const gw_sl651_time *send_time);

#endif
