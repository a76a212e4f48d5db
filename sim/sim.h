#ifndef SIM_H
#define SIM_H
/* The simulator: plays field devices and the city platform. It is a peer of the
 * gateway and shares no code with it. Map of sim/:
 *   encode.c    value -> register words (types, scales, byte orders); pure
 *   curve.c     scenario-time curves (constant, ramp, sine, storm, ...); pure
 *   mbtcp.c     Modbus TCP framing and the request -> response logic; pure
 *   scenario.c  scenario YAML (libyaml) -> the structs below
 *   kinds.c     the table of device kinds (one descriptor per kind)
 *   dev_modbus.c the modbus-tcp kind: libuv listeners, connections, faults;
 *               also the served-device model (registers, writes, counters,
 *               fault decisions) that the serial kinds share
 *   rtu.c       Modbus RTU framing: CRC, request detection, fault bytes; pure
 *   dev_rtu.c   the modbus-rtu (pty bus) and modbus-dtu (dials out) kinds
 *   stats.c     JSON stats file and CPU figures
 *   platform.c  the stand-in city platform (MQTT subscriber)
 *   run.c       `sim run`: a rehearsal (broker, gateway, devices, platform)
 *   expect.c    expectations over a timeline of sent and received values; pure
 *   report.c    the verdict, the JSON report and the CSV
 *   main.c      command line, signals, the loop
 * Errors are negative return codes; pure files do no I/O except scenario.c,
 * which reads the files it is given. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum {
    SIM_OK = 0,
    SIM_ERR = -1,
    SIM_ENOMEM = -2,
    SIM_EMALFORMED = -3, /* untrusted bytes failed to parse */
    SIM_EINVAL = -4,
};

/* ---- values and encoders (encode.c) ---- */

typedef enum {
    SIM_T_UINT16 = 0,
    SIM_T_INT16,
    SIM_T_UINT32,
    SIM_T_INT32,
    SIM_T_FLOAT32,
    SIM_T_UINT64,
    SIM_T_INT64,
    SIM_T_FLOAT64,
    SIM_T_BOOL,
} sim_type;

/* A byte order is a permutation: wire byte i carries value byte perm[i], where
 * value byte 0 is the most significant ("A"). */
typedef struct sim_order {
    uint8_t n; /* 2, 4 or 8; 0 = the type's big-endian default */
    uint8_t perm[8];
} sim_order;

/* Parses a type name ("uint16", "float32", "bool", ...). */
int sim_type_parse(const char *s, sim_type *out);
const char *sim_type_name(sim_type t);
/* Number of 16-bit registers a type occupies (bool: 1 bit, counted as 1). */
int sim_type_regs(sim_type t);
/* Parses "ABCD", "CDAB", "BADC", "DCBA", 64-bit "ABCDEFGH", "GHEFCDAB", ... or
 * any permutation of the first 2/4/8 letters. A 4-letter order given to a
 * 64-bit type is widened the same way (CDAB -> GHEFCDAB: word swap). */
int sim_order_parse(const char *s, sim_order *out);
/* Encodes raw value `raw` (already scaled) as type t in order o into out[0..n)
 * registers, as they appear on the wire (out[0] is the first register). Integer
 * types round to nearest and saturate at the type's range. Returns the number
 * of registers, or SIM_EINVAL. */
int sim_encode(double raw, sim_type t, const sim_order *o, uint16_t out[4]);

/* ---- curves (curve.c) ---- */

typedef enum {
    SIM_C_NONE = 0, /* no curve: reads 0 unless written */
    SIM_C_CONSTANT,
    SIM_C_RAMP,
    SIM_C_SINE,
    SIM_C_RANDOM_WALK,
    SIM_C_STORM,
    SIM_C_POINTS, /* also csv: loaded into points */
} sim_curve_kind;

/* A curve parameter: one value, or a list where device k takes v[k % n]. */
typedef struct sim_param {
    int n;     /* 0 = unset */
    double *v; /* owned; n values */
} sim_param;

enum {
    SIM_P_VALUE = 0, /* constant */
    SIM_P_FROM,      /* ramp */
    SIM_P_TO,
    SIM_P_OVER,
    SIM_P_MEAN, /* sine */
    SIM_P_AMPLITUDE,
    SIM_P_PERIOD,
    SIM_P_PHASE,
    SIM_P_START, /* random_walk start value; storm/ramp start time */
    SIM_P_STEP,
    SIM_P_MIN,
    SIM_P_MAX,
    SIM_P_EVERY,
    SIM_P_SEED,
    SIM_P_BASE, /* storm */
    SIM_P_PEAK,
    SIM_P_RISE,
    SIM_P_HOLD,
    SIM_P_FALL,
    SIM_P_JITTER,
    SIM_P_REPEAT, /* any curve: scenario time is taken modulo this */
    SIM_P__COUNT
};

typedef struct sim_curve {
    sim_curve_kind kind;
    sim_param p[SIM_P__COUNT];
    int npoints; /* points/csv: times (s) ascending, values */
    double *pt_t;
    double *pt_v;
} sim_curve;

/* Per device, per register state a stateful curve (random_walk) keeps. */
typedef struct sim_curve_state {
    int64_t step; /* last step evaluated; -1 = none yet */
    double value;
} sim_curve_state;

/* Value of curve c at scenario time t (seconds) for device index k. st may be
 * NULL for stateless curves; random_walk needs it and only moves forward. */
double sim_curve_eval(const sim_curve *c, double t, uint32_t k, sim_curve_state *st);
double sim_param_get(const sim_param *p, uint32_t k, double dflt);
void sim_curve_free(sim_curve *c);

/* ---- Modbus TCP (mbtcp.c) ---- */

#define SIM_MB_MAX_ADU 260 /* 7-byte MBAP header + 253-byte PDU */

enum { SIM_TAB_COIL = 0, SIM_TAB_DISCRETE, SIM_TAB_HOLDING, SIM_TAB_INPUT, SIM_TAB__COUNT };

typedef struct sim_mb_req {
    uint16_t tid;
    uint16_t proto;
    uint8_t unit;
    uint8_t fc;
    const uint8_t *pdu; /* points into the caller's buffer: function code excluded */
    size_t pdu_len;
} sim_mb_req;

/* Looks at the start of buf: returns the length of one complete frame (>0),
 * 0 if more bytes are needed, or SIM_EMALFORMED if the header cannot be a
 * Modbus TCP frame (protocol id not 0, length field < 2 or > 254). */
int sim_mbtcp_frame(const uint8_t *buf, size_t len, sim_mb_req *out);

/* What a served device exposes to the PDU logic. read fills words (registers)
 * or one uint16 0/1 per bit (coils, discretes) and returns 0 or a Modbus
 * exception code; write gets the same shapes. */
typedef struct sim_regio {
    int (*read)(void *ctx, int table, uint16_t addr, uint16_t count, uint16_t *out);
    int (*write)(void *ctx, int table, uint16_t addr, uint16_t count, const uint16_t *vals);
} sim_regio;

/* Serves one request: writes the complete response ADU (MBAP + PDU) into resp
 * (cap >= SIM_MB_MAX_ADU) and returns its length. A forced exception code
 * (force_exc != 0) answers with that exception instead of touching io. */
size_t sim_mbtcp_serve(const sim_mb_req *rq, const sim_regio *io, void *ctx, int force_exc,
                       uint8_t *resp, size_t cap);
/* Builds an exception response for rq. */
size_t sim_mbtcp_exception(const sim_mb_req *rq, int code, uint8_t *resp, size_t cap);
/* Address range a request touches (for address-scoped faults); 0 if none. */
int sim_mbtcp_range(const sim_mb_req *rq, uint16_t *addr, uint16_t *count);

/* ---- scenario model (scenario.c) ---- */

typedef struct sim_regdef {
    int table; /* SIM_TAB_* */
    uint16_t addr;
    sim_type type;
    sim_order order;
    double scale; /* raw = value * scale + offset */
    double offset;
    int writable;
    sim_curve curve;
    int line;
} sim_regdef;

typedef enum {
    SIM_F_SILENT = 0,
    SIM_F_LATE,
    SIM_F_EXCEPTION,
    SIM_F_GARBAGE,
    SIM_F_BAD_CRC,
    SIM_F_DROP,
    SIM_F_TRUNCATED,
    SIM_F__COUNT
} sim_fault_kind;

typedef struct sim_fault {
    sim_fault_kind kind;
    double from, to; /* scenario-time window, seconds; to < 0 = forever */
    double delay_s;  /* late: wall-clock delay */
    uint32_t every;  /* garbage, bad_crc, truncated, drop: every Nth answer/request; 0 = all */
    int code;        /* exception code */
    int addr;        /* exception: only requests touching addr; -1 = any */
    int fc;          /* exception: only this function code; 0 = any */
} sim_fault;

struct sim_kind;

#define SIM_UNIT_ANY (-1)

/* Link settings of the serial kinds (modbus-rtu, modbus-dtu). Groups naming the
 * same `bus` share one link; one of them (have_link) carries these settings. */
#define SIM_LINK_DATA_MAX 256
typedef struct sim_link_conf {
    char bus[64];       /* "" = a bus of its own */
    int have_link;      /* this group set link keys */
    int link_line;      /* where */
    char pty_link[256]; /* rtu: create a pty pair, symlink its slave here ("" = no link) */
    char path[256];     /* rtu: serve this existing tty instead of creating a pty */
    uint32_t baud;      /* rtu, dtu: emulated line speed; 0 = none */
    double silence_s;   /* end-of-frame silence; 0 = 3.5 characters (>= 1.75 ms) */
    char connect[128];  /* dtu: host:port to dial */
    uint32_t number;    /* dtu: {n} in the registration template */
    int register_tmpl;  /* dtu: reg is an id template ("DTU-{n:04}"), not raw bytes */
    uint8_t reg[SIM_LINK_DATA_MAX];
    size_t reg_len;
    double heartbeat_s; /* dtu: 0 = none */
    uint8_t hb[SIM_LINK_DATA_MAX];
    size_t hb_len;
    double reconnect_s, reconnect_max_s; /* dtu: backoff bounds */
} sim_link_conf;

typedef struct sim_group {
    char id_tmpl[64];
    uint32_t count;
    uint32_t first;
    char protocol[32];
    const struct sim_kind *kind;
    char host[64];
    uint32_t port;
    int unit; /* 0..255 or SIM_UNIT_ANY */
    int nregs;
    sim_regdef *regs;
    int nfaults;
    sim_fault *faults;
    sim_link_conf link; /* modbus-rtu, modbus-dtu only */
    int line;
    void *kstate;              /* the kind's per-group state */
    struct sim_rtu_conf *rtu; /* sl651, hj212: dialing stations' keys (owned); else NULL */
    struct sim_peer *peer; /* peer kinds only (coap-smoke, mqtt-gauge): owned */
} sim_group;

struct sim_run_conf;

typedef struct sim_scenario {
    char name[128];
    int ngroups;
    sim_group *groups;
    uint32_t ndevices;
    struct sim_run_conf *run; /* platform/gateway/broker/expect keys (sim run); NULL if none */
} sim_scenario;

/* Loads a scenario file. On failure returns NULL and writes "file:line: why"
 * into err. The caller frees the result with sim_scenario_free. */
sim_scenario *sim_scenario_load(const char *path, char *err, size_t errlen);
/* Same from a string; base_dir resolves relative csv paths (may be NULL). */
sim_scenario *sim_scenario_parse(const char *text, size_t len, const char *name,
                                 const char *base_dir, char *err, size_t errlen);
void sim_scenario_free(sim_scenario *s);
/* Expands the id template for device n (e.g. "wl-{n:03}", 2 -> "wl-002"). */
int sim_format_id(const char *tmpl, uint32_t n, char *out, size_t outlen);
/* Parses "1.5", "500ms", "30s", "10m", "2h" into seconds. */
int sim_parse_duration(const char *s, double *out);

/* ---- device kinds (kinds.c, dev_*.c) ---- */

typedef struct sim_ctx sim_ctx; /* main.c: loop, clock, options */

typedef struct sim_kind {
    const char *name; /* the scenario's `protocol:` value */
    /* Binds every device of group g; 0 or a negative code (message on stderr). */
    int (*start)(sim_ctx *ctx, sim_group *g);
    /* Closes every handle of g (frees in close callbacks). */
    void (*stop)(sim_ctx *ctx, sim_group *g);
    /* Adds one JSON object per device of g to the cJSON array `devices`. */
    void (*stats)(sim_ctx *ctx, sim_group *g, void *devices);
    /* Frees what start allocated; called after the loop has closed every handle. */
    void (*destroy)(sim_ctx *ctx, sim_group *g);
    /* Non-zero for kinds whose devices connect out to the gateway: `port` is
     * then the gateway's port, shared by every device of the group. */
    int peer;
} sim_kind;

const sim_kind *sim_kind_find(const char *name);
extern const sim_kind sim_kind_modbus_tcp;
extern const sim_kind sim_kind_modbus_rtu;
extern const sim_kind sim_kind_modbus_dtu;

/* ---- a served Modbus device (dev_modbus.c), shared by every Modbus kind ---- */

#define SIM_MB_FC_SLOTS 24 /* function codes 0..23 counted one by one, others in slot 0 */

typedef struct sim_mbwrite {
    double t;
    uint16_t addr;
    uint16_t value;
    uint8_t table;
} sim_mbwrite;

/* A group's register map: address - lo -> register definition (-1 none), per table. */
typedef struct sim_regindex {
    int16_t *index[SIM_TAB__COUNT];
    uint32_t lo[SIM_TAB__COUNT], span[SIM_TAB__COUNT];
} sim_regindex;

/* One device's registers, written values and counters. */
typedef struct sim_mbdev {
    const sim_group *g;
    const sim_regindex *ix;
    uint32_t k; /* index within the group: picks per-device curve parameters */
    char id[64];
    int serial; /* the kind has a CRC: bad_crc faults apply */
    uint64_t requests, answers, exceptions, late_dropped;
    uint64_t by_fc[SIM_MB_FC_SLOTS];
    uint64_t faults[SIM_F__COUNT];
    sim_mbwrite *writes; /* owned, at most 1024 */
    uint32_t nwrites, capwrites;
    uint64_t writes_dropped;
    uint16_t (*wwords)[4]; /* per register definition: written words or bit */
    uint8_t *wmask;        /* which words were written */
    sim_curve_state *cst;
} sim_mbdev;

enum { SIM_ACT_ANSWER = 0, SIM_ACT_SILENT, SIM_ACT_DROP };

/* What the faults decided for one request; the kind applies it in its framing. */
typedef struct sim_fault_plan {
    int action;     /* SIM_ACT_* */
    double delay_s; /* > 0: send the answer this much later (wall clock) */
    int garbage;    /* replace the answer by random bytes of the same length */
    int bad_crc;    /* serial kinds: corrupt the CRC */
    int truncated;  /* send only the first half of the answer */
} sim_fault_plan;

/* Builds g's register index into ix (zeroed by the caller); sim_regindex_free frees it. */
int sim_regindex_build(sim_regindex *ix, const sim_group *g);
void sim_regindex_free(sim_regindex *ix);
/* Initialises device k of g (d zeroed by the caller); sim_mbdev_free frees what it holds. */
int sim_mbdev_init(sim_mbdev *d, const sim_group *g, const sim_regindex *ix, uint32_t k);
void sim_mbdev_free(sim_mbdev *d);
/* Serves one request addressed to d at scenario time t: counts it, decides the
 * group's faults into plan and, unless plan->action says otherwise, writes the
 * Modbus TCP response ADU into resp (cap >= SIM_MB_MAX_ADU) and returns its
 * length (0 = no answer). */
size_t sim_mbdev_serve(sim_mbdev *d, const sim_mb_req *rq, double t, uint8_t *resp, size_t cap,
                       sim_fault_plan *plan);
/* Counts a write without an answer (broadcast): applies it, no faults. */
void sim_mbdev_broadcast(sim_mbdev *d, const sim_mb_req *rq, double t);
/* Adds requests, requests_by_fc, answers, exceptions, late_dropped, faults and
 * writes to the cJSON object obj. */
void sim_mbdev_stats(const sim_mbdev *d, void *obj);

/* ---- Modbus RTU framing (rtu.c); pure ---- */

#define SIM_RTU_MAX 256 /* address + PDU (253) + CRC */

/* CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF); sent low byte first. */
uint16_t sim_crc16(const uint8_t *p, size_t n);
/* Appends the CRC to f[0..n) (room for 2 more bytes); returns n + 2. */
size_t sim_rtu_seal(uint8_t *f, size_t n);
/* 1 if the last two bytes of f[0..n) (n >= 3) are the CRC of the others. */
int sim_rtu_crc_ok(const uint8_t *f, size_t n);
/* Expected length of the request starting at buf (address, function, data,
 * CRC) from the function code's rules: >0 the length, 0 more bytes needed to
 * tell, SIM_EINVAL a function code without a length rule. */
int sim_rtu_request_len(const uint8_t *buf, size_t len);
/* The same for an answer (what a master expects back). */
int sim_rtu_response_len(const uint8_t *buf, size_t len);

enum { SIM_RTU_MORE = 0, SIM_RTU_FRAME = 1, SIM_RTU_JUNK = 2 };

/* Finds the next request in buf[0..len). idle = the line has been silent for
 * 3.5 characters since the last byte. Returns
 *   SIM_RTU_FRAME: a request with a good CRC at buf + *skip, *flen bytes (the
 *                  *skip bytes before it are junk);
 *   SIM_RTU_MORE:  wait for more bytes or silence; the first *skip bytes are junk;
 *   SIM_RTU_JUNK:  (idle only) nothing in buf can become a request: drop *skip = len.
 * With idle set, bytes a length rule cannot frame (an unknown function code)
 * form one frame when their CRC checks. Bounded: O(len * SIM_RTU_MAX). */
int sim_rtu_split(const uint8_t *buf, size_t len, int idle, size_t *skip, size_t *flen);
/* Turns a Modbus TCP response ADU (MBAP + PDU) into an RTU frame with CRC in
 * out (cap >= SIM_RTU_MAX); returns its length, 0 if adu is too short. */
size_t sim_rtu_from_adu(const uint8_t *adu, size_t len, uint8_t *out, size_t cap);
/* Fault bytes: flips both CRC bytes (the frame stays otherwise identical). */
void sim_rtu_corrupt_crc(uint8_t *f, size_t n);
/* Replaces f[0..n) by pseudo-random bytes (xorshift state *rng) whose CRC
 * never checks. */
void sim_rtu_garbage(uint8_t *f, size_t n, uint64_t *rng);
/* How many bytes a truncated answer of n bytes keeps (half, at least 1). */
size_t sim_rtu_truncated_len(size_t n);
extern const sim_kind sim_kind_sl651;
extern const sim_kind sim_kind_hj212;


/* ==== SL651 RTUs and HJ212 stations ============================= * enc_sl651.c, enc_hj212.c: pure encoders (and the small parsers a station
 * needs for the centre's confirms); dial.c: a station that dials the centre
 * (connect, reconnect, faults, confirm tracking); dev_sl651.c, dev_hj212.c:
 * the two kinds. Written from the standards, sharing nothing with gateway/. */

/* A bounded write cursor: writes past cap set overflow and are dropped. */
typedef struct sim_wbuf {
    uint8_t *p;
    size_t cap, len;
    int overflow;
} sim_wbuf;

/* Station clock time, broken down (the clock already in local time). */
typedef struct sim_dt {
    int year, mon, day, hour, min, sec, ms;
} sim_dt;
/* Seconds since 1970 (a station clock, no zone applied) -> fields. */
void sim_dt_from_secs(double secs, sim_dt *out);

#define SIM_SL651_MAX_FRAME 4113 /* 12-bit body length + 17 framing bytes */
enum {
    SIM_SL651_STX = 0x02,
    SIM_SL651_ETX = 0x03,
    SIM_SL651_EOT = 0x04,
    SIM_SL651_ENQ = 0x05,
    SIM_SL651_ACK = 0x06,
    SIM_SL651_NAK = 0x15,
    SIM_SL651_ETB = 0x17,
    SIM_SL651_ESC = 0x1B,
};

/* CRC-16, reflected polynomial 0xA001, initial 0xFFFF (SL651 sends it high
 * byte first). */
uint16_t sim_sl651_crc(const uint8_t *p, size_t n);
/* Up to 10 hex digits ("0012345678"), left-padded with zeros -> 5 bytes. */
int sim_sl651_addr_parse(const char *hex, uint8_t out[5]);

typedef struct sim_sl651_hdr {
    uint8_t centre;
    uint8_t station[5];
    uint16_t password;
    uint8_t fc;
    uint8_t down; /* 1: centre -> station (station address first) */
    uint8_t end;  /* ETX, ETB, EOT, ESC, ...; 0 = ETX */
} sim_sl651_hdr;

/* Frames body[0..blen) as one HEX frame (7E7E ... STX body end CRC) into out.
 * Returns the frame length, or SIM_EINVAL (body over 4095 bytes, no room). */
int sim_sl651_frame(const sim_sl651_hdr *h, const uint8_t *body, size_t blen, uint8_t *out,
                    size_t cap);
/* One M3 packet (SYN): the length counts the 3 counter bytes (SL651-2014 Table 22). */
int sim_sl651_frame_m3(const sim_sl651_hdr *h, unsigned total, unsigned no, const uint8_t *body,
                       size_t blen, uint8_t *out, size_t cap);
/* Body pieces. head: serial (2) + send time (6, BCD YYMMDDhhmmss).
 * station: F1F1 + address + type, then F0F0 + observation time (5, BCD). */
void sim_sl651_put_head(sim_wbuf *b, uint16_t serial, const sim_dt *send);
void sim_sl651_put_station(sim_wbuf *b, const uint8_t station[5], uint8_t type,
                           const sim_dt *obs);
/* Element id, definition byte (length << 3 | decimals), value as packed BCD
 * without the point; a negative value takes a leading FF byte; NaN writes all
 * FF (missing). SIM_EINVAL (nothing written) if the value does not fit. */
int sim_sl651_put_num(sim_wbuf *b, uint8_t id, int nbytes, int decimals, double v);
/* Element id, definition byte and raw bytes (45 status, F4, F5). */
void sim_sl651_put_raw(sim_wbuf *b, uint8_t id, uint8_t def, const uint8_t *data, size_t n);

typedef struct sim_sl651_msg {
    int down;
    uint8_t centre;
    uint8_t station[5];
    uint16_t password;
    uint8_t fc;
    uint8_t end;
    const uint8_t *body; /* points into the caller's buffer */
    size_t blen;
    uint16_t serial; /* 0 if the body is shorter than 2 bytes */
    unsigned total, no; /* packet counter of a SYN frame, else 0 */
} sim_sl651_msg;

/* Reads one HEX frame at buf[0]: returns its length (>0), 0 if more bytes are
 * needed, SIM_EMALFORMED if buf[0] does not start a valid frame (bad start,
 * length, STX, end char or CRC: the caller skips a byte and looks again). */
int sim_sl651_parse(const uint8_t *buf, size_t len, sim_sl651_msg *out);

/* Makes a frame's CRC wrong by changing its two CRC bytes and nothing else. */
void sim_sl651_bad_crc(uint8_t *frame, size_t len);

/* HJ 212-2017. */
#define SIM_HJ212_MAX_PACKET 1036 /* ## + 4 + 1024 + 4 + CR LF */
/* The HJ212 CRC over the data segment: reg = 0xFFFF; reg = (reg >> 8) ^ byte;
 * then 8 shifts with 0xA001. Not the Modbus CRC. */
uint16_t sim_hj212_crc(const uint8_t *p, size_t n);
/* QN: 17 digits YYYYMMDDhhmmsszzz. */
void sim_hj212_qn(const sim_dt *t, char out[18]);
/* Writes "##" + 4-digit length + segment + 4 hex CRC + CR LF, the segment
 * being "QN=..;ST=..;CN=..;PW=..;MN=..;Flag=..;CP=&&cp&&" (QN left out when
 * qn is NULL). Returns the packet length or SIM_EINVAL. */
int sim_hj212_packet(char *out, size_t cap, const char *qn, const char *st, int cn,
                     const char *pw, const char *mn, int flag, const char *cp);
/* Rewrites packet in[0..len) into out with a malformed CP (its closing "&&"
 * and its first '=' removed), length and CRC recomputed so that only the CP
 * is wrong. Returns the new length or SIM_EINVAL. */
/* One part of a split packet: PNUM/PNO in the header, Flag bit D set (same return). */
int sim_hj212_packet_part(char *out, size_t cap, const char *qn, const char *st, int cn,
                          const char *pw, const char *mn, int flag, int pnum, int pno,
                          const char *cp);
/* Rewrites the CRC digits as CRC-16/Modbus, low byte first (the crc_lsb quirk). */
void sim_hj212_crc_modbus_lsb(char *pkt, size_t len);
int sim_hj212_malform(const char *in, size_t len, char *out, size_t cap);

/* Makes a packet's CRC wrong by changing its four CRC characters only. */
void sim_hj212_bad_crc(char *pkt, size_t len);

typedef struct sim_hj212_msg {
    int cn;           /* -1 if absent */
    char qn[24];      /* "" if absent */
    const char *seg;  /* data segment, points into the caller's buffer */
    size_t seg_len;
} sim_hj212_msg;
/* Reads one packet at buf[0] (must start "##"): its length (>0, CR LF
 * included), 0 if more bytes are needed, SIM_EMALFORMED (skip a byte). */
int sim_hj212_parse(const char *buf, size_t len, sim_hj212_msg *out);

/* ---- dialing stations: scenario keys (scenario.c) ---- */

typedef enum {
    SIM_RF_SILENT = 0, /* nothing is sent (reports due are counted, not sent) */
    SIM_RF_GARBAGE,    /* random bytes before a frame (never a frame start) */
    SIM_RF_BAD_CRC,    /* the frame's CRC, and only it, is wrong */
    SIM_RF_TRUNCATED,  /* the first half of the frame only */
    SIM_RF_DROP,       /* the connection is closed (every: Nth frame; else the window) */
    SIM_RF_CLOCK_SKEW, /* the station clock is off by `offset` */
    SIM_RF_DUPLICATE,  /* the frame is sent twice, byte for byte */
    SIM_RF_MALFORMED,  /* HJ212: a malformed CP with a valid CRC */
    SIM_RF__COUNT
} sim_rfault_kind;

#define SIM_RF_ONLY_MAX 32

typedef struct sim_rfault {
    sim_rfault_kind kind;
    double from, to;  /* scenario time window; to < 0 = forever */
    uint32_t every;   /* every Nth frame of the device; 0 = each frame in the window */
    double offset_s;  /* clock_skew */
    uint32_t bytes;   /* garbage: how many bytes (default 16) */
    int nonly;        /* only devices with these n (0 = every device of the group) */
    uint32_t only[SIM_RF_ONLY_MAX];
} sim_rfault;

typedef struct sim_rflag { /* HJ212 factor flag schedule */
    double from, to;
    char flag;
} sim_rflag;

typedef struct sim_factor {
    char code[24];
    sim_curve curve;
    char flag; /* default 'N' */
    int decimals;
    int nflags;
    sim_rflag *flags; /* owned */
} sim_factor;

typedef struct sim_revent {
    double at;
    int bit; /* status bit (SL651 element 45) */
    int alarm; /* 1 sets the alarm condition, 0 clears it */
} sim_revent;

typedef struct sim_rtu_conf {
    char host[64]; /* connect: host:port */
    uint32_t port;
    int udp;
    char address[64]; /* SL651 station address template/base; HJ212 MN template */
    char password[32];
    int centre;
    int station_type;
    int m2;        /* SL651: wait for confirms (M2); 0 = M1 */
    int resends;   /* at most this many resends of an unconfirmed report */
    int reply;     /* HJ212: Flag A bit */
    char st[8];    /* HJ212 ST */
    double interval, hourly_every, keepalive, extra_threshold, extra_interval;
    double minute_every, hour_every; /* HJ212 2051 / 2061 */
    double confirm_timeout, reconnect; /* wall-clock seconds */
    int extra_on_rain; /* extra report threshold on 1-hour rainfall, else level */
    double clock0;     /* station clock at t=0 (s since 1970, local); NaN = now */
    int spread;        /* spread devices' timed reports over the interval */
    int status;        /* SL651: send element 45 */
    int has_rain, has_level, has_voltage;
    sim_curve rain, level, voltage; /* rain: intensity in mm/h; level: m; voltage: V */
    double rain_base;               /* cumulative rainfall at t=0, mm */
    int ntest;
    double *test_at; /* owned: SL651 test reports (30) at these scenario times */
    int nevents;
    sim_revent *events; /* owned, sorted by time */
    int nfaults;
    sim_rfault *faults; /* owned */
    int nfactors;
    sim_factor *factors; /* owned */
    /* Field behaviours (docs/sim.md): one 36H picture in picture_packets M3 packets and
     * one 38H history of history_hours hours (NaN: never); water-quality elements in
     * timed reports; a 35H F2 manual text at manual_at; quirks: id28, crc_lsb. */
    double picture_at, history_at, manual_at;
    int picture_packets, history_hours, water_quality, hour_packets;
    char manual[64], quirks[64];
} sim_rtu_conf;

void sim_rtu_conf_free(sim_rtu_conf *c);

/* ---- dial.c: one station's link to the centre ---- */

struct sim_dial;
typedef struct sim_dial_ops {
    /* Sends whatever is due at scenario time t; returns the scenario time of
     * its next deadline. */
    double (*tick)(struct sim_dial *d, double t);
    /* Incoming bytes: consume whole frames from buf; return bytes consumed. */
    size_t (*on_bytes)(struct sim_dial *d, const uint8_t *buf, size_t len);
    /* The link came up (may be NULL): e.g. an SL651 keep-alive names the station. */
    void (*on_up)(struct sim_dial *d, double t);
    /* Makes the frame's CRC wrong (only the CRC). */
    void (*bad_crc)(uint8_t *frame, size_t len);
    /* Rewrites a frame as malformed (may be NULL); returns new length or <0. */
    int (*malform)(const uint8_t *in, size_t len, uint8_t *out, size_t cap);
    uint8_t frame_start; /* garbage never holds this byte */
} sim_dial_ops;

#define SIM_DIAL_PENDING 4
#define SIM_DIAL_FRAME 1100

typedef struct sim_dial_pending {
    uint64_t key;    /* 0 = free slot */
    uint64_t due_ms; /* uv_now deadline */
    int tries;       /* resends done */
    int resends;     /* allowed */
    uint16_t len;
    uint8_t *data; /* owned */
} sim_dial_pending;

typedef struct sim_dial {
    const sim_dial_ops *ops;
    sim_ctx *ctx;
    const sim_rtu_conf *conf;
    char id[64];
    uint32_t k, n; /* index in the group, device number */
    void *timer;   /* uv_timer_t, owned; freed in its close callback */
    void *link;    /* the current connection (dial.c), freed in its close callback */
    int handles;   /* open libuv handles */
    int state;
    int stopping;
    double next_t; /* the kind's next deadline (scenario time) */
    uint64_t reconnect_ms;
    double down_until; /* scenario time a drop window ends */
    size_t out_pending;
    size_t rlen;
    uint8_t rbuf[2048];
    uint64_t rng;
    sim_dial_pending pend[SIM_DIAL_PENDING];
    /* counters */
    uint64_t frames, bytes_out, bytes_in, acks, acks_unmatched, resends, unacked, lost;
    uint64_t connections, connect_failures, disconnects, bad_in, requests_in, nout;
    uint64_t faults[SIM_RF__COUNT];
} sim_dial;

/* Initialises d (ops, conf, ids set by the caller) and starts dialing.
 * d must stay put until sim_dial_closed says so. */
int sim_dial_start(sim_dial *d);
/* Closes the timer and the link; sim_dial_closed(d) is 1 once the loop has
 * let go of every handle. */
void sim_dial_stop(sim_dial *d);
int sim_dial_closed(const sim_dial *d);
void sim_dial_free(sim_dial *d);
/* Sends one frame through the scenario's faults. key != 0 keeps a copy
 * and resends it (same bytes) up to `resends` times, every confirm_timeout,
 * until sim_dial_ack(key). Returns 1 if it went out, 0 if not (silent,
 * disconnected, dropped). */
int sim_dial_send(sim_dial *d, const uint8_t *frame, size_t len, double t, uint64_t key,
                  int resends);
/* A confirm arrived for key: 1 if it matched a waiting frame. */
int sim_dial_ack(sim_dial *d, uint64_t key);
/* Clock skew of the station at scenario time t (seconds). */
double sim_dial_skew(const sim_dial *d, double t);
/* Adds the link counters to a cJSON object. */
void sim_dial_stats(const sim_dial *d, void *obj);
/* Faults named for the stats file and scenarios. */
extern const char *const sim_rfault_names[SIM_RF__COUNT];
extern const sim_kind sim_kind_coap_smoke;
extern const sim_kind sim_kind_mqtt_gauge;

/* ---- peer kinds: CoAP smoke detectors and MQTT gauges ----
 * enc_nb100.c  NB-100 smoke detector frames; pure
 * enc_gauge.c  id/topic/key templates and gauge JSON payloads; pure
 * dev_coap.c   the coap-smoke kind (libcoap client sessions on the loop)
 * dev_mqtt.c   the mqtt-gauge kind (Paho async, callbacks handed to the loop) */

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

/* Expands a template: {id}, {imei} and {n}, {n:05}, {n:5} (as sim_format_id).
 * id or imei may be NULL when the template may not use them. Returns the
 * length, or SIM_EINVAL (unknown or unterminated placeholder, too long). */
int sim_expand(const char *tmpl, uint32_t n, const char *id, const char *imei, char *out,
               size_t cap);

enum { SIM_TS_ISO = 0, SIM_TS_EPOCH, SIM_TS_EPOCH_MS, SIM_TS_NONE };

typedef struct sim_gauge_value {
    const char *name; /* a JSON-safe name: checked by the scenario parser */
    double value;     /* NaN or infinite: written as null */
    int decimals;     /* 0..9 */
} sim_gauge_value;

typedef struct sim_gauge_msg {
    const char *ts_field; /* e.g. "ts" */
    int ts_format;        /* SIM_TS_* */
    int64_t ts_ms;        /* Unix time in ms */
    const char *id_field; /* NULL or "" = no id field */
    const char *id;
    const sim_gauge_value *v;
    int nv;
    int malformed; /* cut the JSON short after the last field's name */
} sim_gauge_msg;

/* Writes the JSON payload {"ts": ..., "id": ..., "<name>": value, ...} into
 * out (NUL-terminated). Returns its length, or SIM_EINVAL if cap is too
 * small. */
int sim_gauge_payload(const sim_gauge_msg *m, char *out, size_t cap);

/* Scenario events of peer kinds (the `events:` list of a group). */
typedef enum {
    /* coap-smoke */
    SIM_EV_FIRE_ALARM = 0,
    SIM_EV_ALARM_CLEARED,
    SIM_EV_SELF_TEST,
    SIM_EV_SELF_TEST_FAIL,
    SIM_EV_MUTE,
    SIM_EV_UNMUTE,
    SIM_EV_BATTERY_LOW,
    SIM_EV_BATTERY_CRITICAL,
    SIM_EV_BATTERY_OK,
    SIM_EV_TAMPER,
    SIM_EV_TAMPER_RESTORED,
    SIM_EV_HW_FAULT,
    SIM_EV_DIRTY,
    SIM_EV_END_OF_LIFE,
    SIM_EV_FAULT_CLEARED,
    SIM_EV_HEARTBEAT, /* one heartbeat now */
    SIM_EV_BAD_CRC,   /* the next frame carries a wrong CRC */
    SIM_EV_TRUNCATED, /* the next frame is cut short */
    SIM_EV_WRONG_PSK, /* new DTLS session with a wrong key from now on */
    SIM_EV_RIGHT_PSK,
    /* both kinds */
    SIM_EV_SILENT, /* stops sending */
    SIM_EV_RESUME,
    /* mqtt-gauge */
    SIM_EV_MALFORMED,  /* the next payload is not JSON */
    SIM_EV_DISCONNECT, /* drops the connection so that the broker sends the will */
    SIM_EV_RECONNECT,
    SIM_EV_OFFLINE, /* publishes "offline" and disconnects cleanly */
    SIM_EV__COUNT
} sim_event_kind;

/* Event names as written in scenarios ("fire_alarm", ...). */
const char *sim_event_name(sim_event_kind k);

typedef struct sim_event {
    double at;       /* scenario time, s */
    uint32_t device; /* the device's n (as in its id); 0 = every device */
    sim_event_kind kind;
    int line;
} sim_event;

typedef struct sim_field {
    char name[32];
    sim_curve curve;
    int decimals;
} sim_field;

/* Keys of peer groups; defaults are filled by the parser. */
typedef struct sim_peer {
    /* coap-smoke */
    char imei[64];         /* template: 15 digits once expanded */
    char path[64];         /* Uri-Path, default /19/0/0 */
    char query[64];        /* Uri-Query template, default ep={imei} */
    int dtls;              /* coaps:// with PSK */
    char psk[128];         /* key template (ASCII) ... */
    int psk_hex;           /* ... or hex digits after expansion */
    double heartbeat;      /* s of scenario time between heartbeats */
    double report;         /* s between reports; 0 = none */
    double ack_timeout;    /* CoAP ACK_TIMEOUT, wall-clock s */
    int max_retransmit;    /* CoAP MAX_RETRANSMIT */
    int tlv;               /* heartbeats carry the firmware-version extension bytes */
    double battery_v;      /* nominal battery voltage */
    sim_curve smoke;       /* dB/m; none = 0.012 */
    sim_curve temperature; /* degC; none = 22 */
    /* mqtt-gauge */
    char topic[128];
    char status_topic[128]; /* default: topic with its last level replaced by status */
    char client_id[64];     /* template, default {id} */
    double interval;        /* s of scenario time between readings */
    double spread;          /* first sends spread over this many s; < 0 = default */
    double keepalive;       /* s */
    int qos;
    char ts_field[32];
    int ts_format;
    char id_field[32];
    int nfields;
    sim_field *fields; /* owned */
    /* both */
    int nevents;
    sim_event *events; /* owned, sorted by time */
} sim_peer;

void sim_peer_free(struct sim_peer *p);

/* ---- the running context (main.c) ---- */

struct uv_loop_s;
struct sim_ctx {
    struct uv_loop_s *loop;
    sim_scenario *scn;
    double speed;
    uint64_t t0_ns; /* uv_hrtime at start */
    int quiet;
    const char *bind; /* default host when a group names none */
    const char *stats_path;
    int park_listeners; /* too few descriptors: a connected device closes its listener */
};

/* Scenario time now, in seconds. */
double sim_now(const sim_ctx *ctx);

/* ---- stats (stats.c) ---- */

/* Writes the stats JSON atomically (temp file + rename). */
int sim_stats_write(sim_ctx *ctx, const char *path);
/* Prints "sim: cpu user=.. sys=.. maxrss=.." to f. */
void sim_stats_print_cpu(FILE *f);

/* ---- rehearsals: sim run (scenario.c run block, expect.c, report.c, run.c) ---- */

#define SIM_NAME_MAX 64

typedef enum {
    SIM_X_ALARM = 0,
    SIM_X_NO_ALARM,
    SIM_X_NO_READING_LOST,
    SIM_X_ONLINE,
    SIM_X_EVENT,
    SIM_X_NO_EVENT,
} sim_expect_kind;

/* One expectation of the scenario's `expect:` list. Times are scenario
 * seconds. Device lists are resolved at load time (site -> its devices). */
typedef struct sim_expect {
    sim_expect_kind kind;
    int line;
    char label[192];         /* the expectation in one line, for the verdict */
    char site[SIM_NAME_MAX]; /* as written ("" = none) */
    int ndevs;               /* the devices it is about; 0 = every device */
    char (*devs)[SIM_NAME_MAX];
    char rule[32]; /* alarm, no_alarm: "" = any rule */
    int level;     /* alarm, no_alarm: the lowest level that counts, 1..4 */
    double within; /* alarm, event: < 0 = unbounded */
    double of;     /* alarm, event: the moment `within` counts from; < 0 = none */
    int has_after; /* alarm: within counts from the sent value crossing `crosses` */
    char after_metric[48];
    double crosses;
    int after_table;           /* SIM_TAB_*: the register whose curve is after_metric */
    int after_addr;            /* -1 = from `metrics:`, else the group's first register */
    uint32_t count;            /* online: devices wanted */
    char type[32];             /* online: device type as the uplink says ("" = any) */
    char prefix[SIM_NAME_MAX]; /* online: device id prefix ("" = any) */
    char event[48];            /* event, no_event: the condition (fire_alarm, ...) */
    int ended;                 /* event: `active: false`, i.e. wait for the condition's end */
} sim_expect;

/* `metrics:` names the gateway gives the sim's registers (water_depth: holding:0). */
typedef struct sim_metric_map {
    char name[48];
    int table;
    int addr;
} sim_metric_map;

typedef struct sim_run_conf {
    char broker[160];      /* platform.broker: where the gateway publishes */
    char topic_prefix[64]; /* platform.topic_prefix (default iot) */
    char gateway_id[64];   /* platform.gateway_id ("" = any gateway) */
    char gw_binary[256];   /* gateway.binary ("" = do not start one) */
    char gw_config[512];   /* gateway.config, resolved against the scenario's folder */
    int broker_start;      /* broker.start: run a private mosquitto */
    uint32_t broker_port;  /* broker.port (default: the port of platform.broker) */
    double duration;       /* scenario seconds (default 5m) */
    double speed;          /* 0 = unset (1) */
    int nmetrics;
    sim_metric_map *metrics;
    int nexpects;
    sim_expect *expects;
} sim_run_conf;

/* Levels: 1 blue, 2 yellow, 3 orange, 4 red; 0 for an unknown name. */
int sim_level_parse(const char *s);
const char *sim_level_name(int level);

/* The timeline of a rehearsal (expect.c): what reached the platform, with the
 * scenario time it arrived, and samples of what the sim sent. Readings are
 * kept compactly (up to max_readings; counters go on past it). Item ids are
 * "<gw>-<seq>" with seq unique per gateway, so duplicates are found by seq. */
enum { SIM_Q_GOOD = 0, SIM_Q_UNCERTAIN, SIM_Q_BAD, SIM_Q_UNKNOWN };

typedef struct sim_rx_reading {
    double t;
    double value;
    uint64_t seq;
    uint32_t dev, metric; /* interned names */
    uint8_t quality;
    uint8_t has_value;
} sim_rx_reading;

typedef struct sim_rx_event {
    double t;
    uint64_t seq;
    uint32_t dev;
    int active;
    char event[48];
} sim_rx_event;

typedef struct sim_rx_alarm {
    double t;
    double value;
    uint64_t seq;
    uint32_t dev;
    int level;
    int has_value;
    char alarm[96];
    char rule[32];
    char metric[48];
    char state[16];
} sim_rx_alarm;

typedef struct sim_sent {
    double t;
    double value;
    uint32_t dev, metric;
} sim_sent;

typedef struct sim_timeline {
    /* interned names (devices, metrics, types): index -> name */
    char (*names)[SIM_NAME_MAX];
    uint32_t nnames, capnames;
    uint32_t *hslots; /* open addressing: index + 1, 0 = empty */
    uint32_t hcap;
    /* per name (used for devices) */
    uint32_t *dev_type; /* interned type + 1, 0 = unknown */
    uint64_t *dev_readings, *dev_last_seq, *dev_out_of_order;
    uint8_t *dev_online; /* an online event or any reading */

    sim_rx_reading *rd;
    size_t nrd, caprd, max_readings;
    sim_rx_event *ev;
    size_t nev, capev;
    sim_rx_alarm *al;
    size_t nal, capal;
    sim_sent *sent;
    size_t nsent, capsent;

    /* seen sequence numbers: bit (seq - seq_lo) */
    uint64_t *seqbits;
    uint64_t seq_lo, seq_words, seq_min, seq_max;
    uint64_t seq_base; /* 0 = the first seq received starts the sequence */

    uint64_t readings, events, alarms, duplicates, malformed, no_seq, readings_not_kept;
    uint64_t alarms_by_level[5];
    double end_t; /* scenario time the run ended */
} sim_timeline;

sim_timeline *sim_tl_new(size_t max_readings);
void sim_tl_free(sim_timeline *tl);
/* Adds the items of one uplink message (kind "readings", "events" or
 * "alarms": the topic's last level) that reached the platform at scenario
 * time t. Returns the number of new items (duplicates are counted, not
 * added), or SIM_EMALFORMED / SIM_ENOMEM. */
int sim_tl_message(sim_timeline *tl, double t, const char *kind, const char *payload, size_t len);
/* Records that the sim served `value` for device/metric at scenario time t
 * (samples in time order per series). */
int sim_tl_sent(sim_timeline *tl, double t, const char *device, const char *metric, double value);
/* Index of an interned name, or -1. */
int64_t sim_tl_find(const sim_timeline *tl, const char *name);
/* Missing sequence numbers between seq_base (or the lowest seen) and the
 * highest seen; *first gets the lowest missing one (0 if none). */
uint64_t sim_tl_seq_gaps(const sim_timeline *tl, uint64_t from, uint64_t to, uint64_t *first);

enum { SIM_V_PENDING = 0, SIM_V_PASS, SIM_V_FAIL };

typedef struct sim_verdict {
    int status;         /* SIM_V_* */
    char evidence[768]; /* why, with times, values, ids */
    double at;          /* scenario time of the deciding item; < 0 none */
    double base;        /* the crossing / `of` time the latency counts from; < 0 none */
    double latency;     /* scenario seconds; < 0 none */
    char alarm[96];     /* the alarm id that decided it */
} sim_verdict;

/* Evaluates x over tl. final = 0 while the run goes on: what cannot be
 * decided yet is PENDING; final = 1 decides everything (end of run, tl->end_t
 * set). Pure. */
int sim_expect_eval(const sim_expect *x, const sim_timeline *tl, int final, sim_verdict *out);

/* What a rehearsal measured besides the expectations (report.c prints it). */
typedef struct sim_cpu {
    int have;
    double user_s, sys_s;
    long max_rss_kib;
} sim_cpu;

typedef struct sim_run_summary {
    const char *scenario;
    double speed, scenario_s, wall_s;
    uint64_t msgs_readings, msgs_events, msgs_alarms, msgs_status, msgs_other, msgs_dropped;
    uint32_t devices, devices_served;
    uint64_t requests; /* what the devices were asked (from the kinds' stats) */
    sim_cpu sim, gateway, broker;
    int interrupted;
    char setup_note[256];
} sim_run_summary;

/* Prints the verdict: one PASS/FAIL line per expectation with its evidence,
 * then the summary. Returns the number of failed expectations. */
int sim_report_print(FILE *f, const sim_run_conf *rc, const sim_verdict *v, const sim_timeline *tl,
                     const sim_run_summary *sum);
/* The same as JSON, written to path (temp file + rename). */
int sim_report_json(const char *path, const sim_run_conf *rc, const sim_verdict *v,
                    const sim_timeline *tl, const sim_run_summary *sum);
/* A plot-ready CSV: t,dir,device,metric,value,quality. Rows "sent" sample the
 * scenario's register curves every `step` scenario seconds up to tl->end_t (as
 * encoded: integer registers rounded), rows "recv" are what reached the
 * platform (quality for readings, the level for alarms, active for events). */
int sim_report_csv(const char *path, const sim_scenario *scn, const sim_timeline *tl, double step);
/* The value a register definition puts on the wire at time t for device k,
 * read back in engineering units (integer types rounded as encoded). */
double sim_reg_sent_value(const sim_regdef *r, double t, uint32_t k, sim_curve_state *st);
/* The register of group g that carries metric (from `metrics:`, the given
 * table/addr, or the group's first register); NULL if none. */
const sim_regdef *sim_run_metric_reg(const sim_run_conf *rc, const sim_group *g, const char *metric,
                                     int table, int addr);

int sim_run_main(int argc, char **argv);

/* ---- platform (platform.c) ---- */

int sim_platform_main(int argc, char **argv);

#endif
