#ifndef GW_HJ212_H
#define GW_HJ212_H
/* HJ 212 (污染物在线监控(监测)系统数据传输标准) codec: a pure library. No sockets,
 * no logging, no clock reads; every input byte is treated as hostile.
 *
 * Packet: "##" | 4 decimal digits = data-segment length | data segment |
 *         4 hex digits CRC over the data segment | CR LF.
 * Data segment (2017): QN=<17 digits>;ST=<2>;CN=<4>;PW=<6>;MN=<24>;Flag=<n>;
 *         [PNUM=<n>;PNO=<n>;]CP=&&key=value,key=value;key=value&&
 *
 * Versions: every entry point takes a gw_hj212_version (configured per station).
 * Only GW_HJ212_2017 is implemented; GW_HJ212_2025 returns GW_EUNSUPPORTED until
 * its text is checked. The CRC, the field widths, the maximum data length and the
 * Flag version bits live in one per-version rules row inside hj212_codec.c, so a
 * new version is one new row (plus whatever new field rules it brings).
 *
 * Times: QN and DataTime are Beijing time (UTC+8, no daylight saving). They are
 * converted to milliseconds since the Unix epoch, UTC, by subtracting 8 h.
 *
 * Readings produced by gw_hj212_emit() for the data commands:
 *   2011 real-time  "<code>"            from <code>-Rtd     "<code>_zs"            from -ZsRtd
 *   2051 minute     "<code>_<s>_minute" with <s> = avg, min, max, cou (from -Avg -Min -Max -Cou)
 *   2061 hour       "<code>_<s>_hour"   and zs_avg, zs_min, zs_max (from -ZsAvg -ZsMin -ZsMax)
 *   2031 daily      "<code>_<s>_day"
 *   e.g. "w01018" (COD real-time), "w01018_avg_hour", "w01018_cou_day", "a34013_zs_avg_hour".
 * The period is part of the name on purpose: a station sends a minute, an hour and
 * a day record with the same DataTime, and they must not collide as one series.
 * obs_ms is the factor's -SampleTime when given, else the packet's DataTime.
 * Units come from a small table (gw_hj212_unit); cumulative values (-Cou) carry the
 * table's amount unit (kg, m3); unknown codes pass through with an empty unit.
 *
 * Per-factor -Flag → quality/reason:
 *   N normal           good       none
 *   S manual input     uncertain  manual        (a person's value, not measured)
 *   T over upper limit uncertain  over_range    (the truth is at least this: rules still see it)
 *   F stopped          bad        stopped
 *   M maintenance      bad        maintenance
 *   D fault            bad        sensor_fault
 *   C calibrating      bad        calibrating   (the value is a calibration standard, not the
 * process) B comm failure     bad        comm_fail other letters      uncertain  device_flag;  no
 * flag: good.
 */
#include "base/model.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    GW_HJ212_2017 = 1, /* HJ 212-2017 */
    GW_HJ212_2025 = 2  /* HJ 212-2025 (in force 2026-01-01): not implemented yet */
} gw_hj212_version;

#define GW_HJ212_DATA_MAX 1024 /* the standard's bound on the data segment (0..1024) */
#define GW_HJ212_OVERHEAD 12   /* "##" + 4 length digits + 4 CRC digits + CR LF */
#define GW_HJ212_PACKET_MAX (GW_HJ212_DATA_MAX + GW_HJ212_OVERHEAD)
#define GW_HJ212_FACTORS_MAX 128 /* factors per packet; more is GW_EMALFORMED */
#define GW_HJ212_KEY_MAX 48      /* longest CP key accepted, e.g. "w01018-SampleTime" */

/* Flag bits (2017): V5..V0 (bits 7..2) protocol version, D (bit 1) the packet
 * carries PNUM/PNO, A (bit 0) the sender wants an answer. 2017 sets V = 1. */
#define GW_HJ212_FLAG_A 0x01u
#define GW_HJ212_FLAG_D 0x02u
#define GW_HJ212_FLAG_VERSION(flag) (((unsigned)(flag) >> 2) & 0x3Fu)

/* QnRtn values for 9011 (request answer). */
enum {
    GW_HJ212_QN_READY = 1,
    GW_HJ212_QN_REFUSED = 2,
    GW_HJ212_QN_PW_ERROR = 3,
    GW_HJ212_QN_MN_ERROR = 4,
    GW_HJ212_QN_ST_ERROR = 5,
    GW_HJ212_QN_FLAG_ERROR = 6,
    GW_HJ212_QN_QN_ERROR = 7,
    GW_HJ212_QN_CN_ERROR = 8,
    GW_HJ212_QN_CRC_ERROR = 9,
    GW_HJ212_QN_UNKNOWN = 100
};

/* ExeRtn values for 9012 (execution result). */
enum {
    GW_HJ212_EXE_OK = 1,
    GW_HJ212_EXE_FAILED = 2,
    GW_HJ212_EXE_CONDITION = 3,
    GW_HJ212_EXE_TIMEOUT = 4,
    GW_HJ212_EXE_BUSY = 5,
    GW_HJ212_EXE_FAULT = 6,
    GW_HJ212_EXE_NO_DATA = 100
};

/* Field variants, opt-in per station (off by default; each use is counted by the
 * caller from the packet's quirks field):
 *   LONG_PW         PW of 7..GW_HJ212_PW_LONG_MAX characters (2017 says at most 6).
 *   CRC_MODBUS_LSB  the 4 CRC digits are CRC-16/Modbus of the data segment, low byte
 *                   first (e.g. the standard's example shows 5907 instead of 1C80).
 * Answers to a packet that needed CRC_MODBUS_LSB are framed the same way. */
#define GW_HJ212_Q_LONG_PW 0x01u
#define GW_HJ212_Q_CRC_MODBUS_LSB 0x02u
#define GW_HJ212_PW_LONG_MAX 16

/* 1 when pw is a password the codec accepts from a station with these quirks (the one
 * rule the configuration check and the parser share), else 0. */
int gw_hj212_password_ok(gw_hj212_version v, unsigned quirks, const char *pw);

/* A decoded data segment. Header strings are copied (NUL-terminated); cp points
 * into the caller's buffer and stays valid only while that buffer does. */
typedef struct gw_hj212_packet {
    int version; /* gw_hj212_version used to decode */
    char qn[21]; /* "" when absent */
    char st[6];
    char cn[8];
    char pw[GW_HJ212_PW_LONG_MAX + 1]; /* "" when absent */
    char mn[28];                       /* "" when absent */
    int flag;                          /* -1 when absent */
    int pnum, pno;                     /* 0 when absent */
    int64_t qn_ms;                     /* QN as UTC ms; 0 when absent */
    const char *cp;                    /* CP content between "&&" and "&&" (not NUL-terminated) */
    size_t cp_len;
    size_t data_len; /* data-segment length */
    uint16_t crc;    /* CRC carried by the packet (0 for a bare segment) */
    unsigned quirks; /* GW_HJ212_Q_* this packet needed (answers follow the CRC one) */
} gw_hj212_packet;

/* One CP key=value pair; pointers into the CP text, not NUL-terminated. */
typedef struct gw_hj212_kv {
    const char *key;
    size_t key_len;
    const char *val;
    size_t val_len;
    unsigned group; /* index of the ';'-separated group, from 0 */
} gw_hj212_kv;

typedef struct gw_hj212_cp_iter {
    const char *p, *end;
    unsigned group;
} gw_hj212_cp_iter;

/* Result of the stream scanner. */
typedef struct gw_hj212_span {
    size_t skipped;   /* garbage bytes before the packet, or discardable bytes when none found */
    size_t consumed;  /* bytes the caller drops from the front of its buffer after handling this */
    size_t offset;    /* packet start (== skipped when a packet was found) */
    size_t total;     /* packet size including "##" and CR LF */
    const char *data; /* data segment inside the caller's buffer */
    size_t data_len;
    uint16_t crc_rx, crc_calc;
    unsigned quirks; /* GW_HJ212_Q_CRC_MODBUS_LSB when the packet needed it */
} gw_hj212_span;

/* 1 when the version is implemented, 0 otherwise. */
int gw_hj212_version_supported(gw_hj212_version v);
const char *gw_hj212_version_name(gw_hj212_version v); /* "2017", "2025", "?" */

/* The HJ 212-2017 CRC (NOT the Modbus CRC): reg = 0xFFFF; per byte reg = (reg >> 8) ^ b,
 * then 8 times reg = reg & 1 ? (reg >> 1) ^ 0xA001 : reg >> 1. Over the data segment. */
uint16_t gw_hj212_crc(const uint8_t *p, size_t n);

/* Finds the first complete packet in buf[0..len) for a TCP stream that may hold
 * garbage, partial and several packets. max_data bounds the data segment
 * (0 = GW_HJ212_DATA_MAX; at most 9999). The caller's buffer should hold
 * max_data + GW_HJ212_OVERHEAD bytes. Returns:
 *   1           a packet with a good CRC: out->data/data_len, drop out->consumed after use;
 *   0           no complete packet yet: drop out->consumed (garbage), keep the rest, read more;
 *   GW_ECRC     a well-framed packet whose CRC is wrong: drop out->consumed (covers it);
 *   GW_EUNSUPPORTED / GW_EINVAL for the version or arguments.
 * A candidate header whose length is not 4 digits or exceeds max_data, or whose
 * segment holds CR/LF, or whose trailer is not 4 hex digits + CR LF, is skipped one
 * byte at a time so that a real packet inside it is still found. */
int gw_hj212_scan(gw_hj212_version v, const uint8_t *buf, size_t len, size_t max_data,
                  gw_hj212_span *out);

/* gw_hj212_scan, gw_hj212_parse and gw_hj212_decode accepting the station's quirks
 * (GW_HJ212_Q_*); the plain functions are these with quirks = 0 (strict). */
int gw_hj212_scan_q(gw_hj212_version v, unsigned quirks, const uint8_t *buf, size_t len,
                    size_t max_data, gw_hj212_span *out);
int gw_hj212_parse_q(gw_hj212_version v, unsigned quirks, const char *seg, size_t len,
                     gw_hj212_packet *out);
int gw_hj212_decode_q(gw_hj212_version v, unsigned quirks, const uint8_t *buf, size_t len,
                      gw_hj212_packet *out);

/* Parses a data segment (no framing) into out. Returns 0, GW_EMALFORMED (bad or
 * oversized header field, missing CN or CP, CP not "&&...&&" at the end, bad QN,
 * PNO > PNUM), GW_EUNSUPPORTED for the version. out->cp points into seg. */
int gw_hj212_parse(gw_hj212_version v, const char *seg, size_t len, gw_hj212_packet *out);

/* Decodes exactly one packet (buf holds "##...CRLF", nothing more) with
 * max_data = GW_HJ212_DATA_MAX. Returns 0, GW_EMALFORMED, GW_ECRC or
 * GW_EUNSUPPORTED. out->cp points into buf. */
int gw_hj212_decode(gw_hj212_version v, const uint8_t *buf, size_t len, gw_hj212_packet *out);

/* CP iteration: groups split by ';', fields by ','. Empty fields are skipped.
 * gw_hj212_cp_next returns 1 with *kv filled, 0 at the end, GW_EMALFORMED on a
 * field without '=', an empty key, a key longer than GW_HJ212_KEY_MAX or with
 * characters outside [A-Za-z0-9_-]. */
void gw_hj212_cp_begin(gw_hj212_cp_iter *it, const gw_hj212_packet *p);
int gw_hj212_cp_next(gw_hj212_cp_iter *it, gw_hj212_kv *kv);
/* Finds a plain key (e.g. "DataTime") in CP. Returns 1 found, 0 not, or GW_EMALFORMED. */
int gw_hj212_cp_find(const gw_hj212_packet *p, const char *key, gw_hj212_kv *kv);

/* "YYYYMMDDhhmmss" (14 digits, Beijing time) or a 17-digit QN with milliseconds
 * → UTC ms. Returns 0 or GW_EMALFORMED (wrong length, non-digit, impossible date). */
int gw_hj212_time_ms(const char *s, size_t n, int64_t *out_ms);

/* 1 for the uploads that carry monitoring data and get a 9014 (2011, 2051, 2061,
 * 2031 and the other 2xxx uploads, 3020); 0 otherwise. */
int gw_hj212_is_data_cn(const char *cn);

/* Emits the readings of a data command (2011, 2051, 2061, 2031) into sink.
 * Readings leave device empty and recv_ms 0 (the caller fills them). The whole CP
 * is validated before the first reading goes out: returns the number of readings
 * emitted, 0 for other commands, GW_EMALFORMED (missing or bad DataTime, a value
 * that is not a finite number, more than GW_HJ212_FACTORS_MAX factors, a factor
 * code too long for a metric), GW_ENOMEM, or the first negative code a sink
 * callback returned (emission stops there). */
int gw_hj212_emit(const gw_hj212_packet *p, const gw_sink *sink);

/* Unit of a factor code: "mg/L" for w01018; "" for unknown codes. cumulative = 1
 * asks for the unit of -Cou (e.g. "kg"). st (may be NULL) is the packet's ST: ambient
 * air (ST=22) reports gases in ug/m3 where sources report mg/m3. */
const char *gw_hj212_unit(const char *code, const char *st, int cumulative);

/* Maps a -Flag letter to quality and reason (table above). */
void gw_hj212_flag_quality(char flag, uint8_t *quality, uint8_t *reason);

/* Checks PW and MN against what the caller expects for the station (NULL = do not
 * check that field). PW is compared in constant time. Returns 0 or GW_EAUTH; when
 * qn_rtn is not NULL it is set to GW_HJ212_QN_PW_ERROR or _MN_ERROR on a mismatch. */
int gw_hj212_auth(const gw_hj212_packet *p, const char *pw, const char *mn, int *qn_rtn);

/* Frames a data segment as a complete packet in out (cap bytes; NUL-terminated).
 * Returns the packet length (without the NUL), GW_EFULL if cap is too small,
 * GW_EINVAL if seg is longer than GW_HJ212_DATA_MAX, GW_EUNSUPPORTED. */
int gw_hj212_frame(gw_hj212_version v, const char *seg, size_t len, char *out, size_t cap);

/* Answers to a decoded request, built as complete packets (same return as
 * gw_hj212_frame). They echo QN, PW and MN, use ST=91 and Flag = version bits with
 * A = 0 (Flag=4 for 2017).
 *   9014 data answer:    QN=..;ST=91;CN=9014;PW=..;MN=..;Flag=4;CP=&&&&
 *   9011 request answer: QN=..;ST=91;CN=9011;PW=..;MN=..;Flag=4;CP=&&QnRtn=<n>&&
 *   9012 result:         QN=..;ST=91;CN=9012;PW=..;MN=..;Flag=4;CP=&&ExeRtn=<n>&& */
int gw_hj212_build_data_ack(const gw_hj212_packet *req, char *out, size_t cap);
int gw_hj212_build_request_ack(const gw_hj212_packet *req, int qn_rtn, char *out, size_t cap);
int gw_hj212_build_exec_result(const gw_hj212_packet *req, int exe_rtn, char *out, size_t cap);

/* The answer the A bit asks for: 9014 for a data upload, 9011 with QnRtn=qn_rtn for
 * any other request. Returns 0 (and writes nothing) when A is clear or the packet is
 * itself an answer (CN 9xxx); else as gw_hj212_frame. */
int gw_hj212_build_reply(const gw_hj212_packet *req, int qn_rtn, char *out, size_t cap);

/* JSON of one packet (header fields, CRC, CP groups, readings, and the reply the A
 * bit asks for) for `gateway decode --protocol hj212 --text ...`. text is one packet;
 * a missing trailing CR LF is tolerated. On a decode error returns an object with
 * "error" (name) and "code". Returns NULL only when out of memory. Caller owns the
 * result: cJSON_Delete(). (Declared with a forward type so this header does not
 * need cJSON.) */
struct cJSON;
struct cJSON *gw_hj212_to_json(gw_hj212_version v, const char *text, size_t len);
/* The same, accepting the quirks GW_HJ212_Q_* (adds "quirks_used" when one was needed). */
struct cJSON *gw_hj212_to_json_q(gw_hj212_version v, unsigned quirks, const char *text, size_t len);

#endif
