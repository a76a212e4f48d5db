#ifndef SIM_H
#define SIM_H
/* The simulator: plays field devices and the city platform. It is a peer of the
 * gateway and shares no code with it. Map of sim/:
 *   encode.c    value -> register words (types, scales, byte orders); pure
 *   curve.c     scenario-time curves (constant, ramp, sine, storm, ...); pure
 *   mbtcp.c     Modbus TCP framing and the request -> response logic; pure
 *   scenario.c  scenario YAML (libyaml) -> the structs below
 *   kinds.c     the table of device kinds (one descriptor per kind)
 *   dev_modbus.c the modbus-tcp kind: libuv listeners, connections, faults
 *   stats.c     JSON stats file and CPU figures
 *   platform.c  the stand-in city platform (MQTT subscriber)
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
    SIM_F__COUNT
} sim_fault_kind;

typedef struct sim_fault {
    sim_fault_kind kind;
    double from, to; /* scenario-time window, seconds; to < 0 = forever */
    double delay_s;  /* late: wall-clock delay */
    uint32_t every;  /* garbage, drop: every Nth answer/request; 0 = all */
    int code;        /* exception code */
    int addr;        /* exception: only requests touching addr; -1 = any */
    int fc;          /* exception: only this function code; 0 = any */
} sim_fault;

struct sim_kind;

#define SIM_UNIT_ANY (-1)

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
    int line;
    void *kstate;          /* the kind's per-group state */
    struct sim_peer *peer; /* peer kinds only (coap-smoke, mqtt-gauge): owned */
} sim_group;

typedef struct sim_scenario {
    char name[128];
    int ngroups;
    sim_group *groups;
    uint32_t ndevices;
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
extern const sim_kind sim_kind_coap_smoke;
extern const sim_kind sim_kind_mqtt_gauge;

/* ---- peer kinds: CoAP smoke detectors and MQTT gauges ----
 * enc_nb100.c  NB-100 smoke detector frames; pure
 * enc_gauge.c  id/topic/key templates and gauge JSON payloads; pure
 * dev_coap.c   the coap-smoke kind (libcoap client sessions on the loop)
 * dev_mqtt.c   the mqtt-gauge kind (Paho async, callbacks handed to the loop) */

#define SIM_NB100_MAX 512   /* 24 + 255 TLVs would not fit; encoders check cap */
#define SIM_NB100_TLV_MAX 8 /* TLVs a frame description may carry */

enum { SIM_NB100_REPORT = 0x01, SIM_NB100_EVENT = 0x02, SIM_NB100_HEARTBEAT = 0x03 };

/* Event bits (bytes 14-15). */
enum {
    SIM_NB_FIRE = 1u << 0,
    SIM_NB_CLEARED = 1u << 1,
    SIM_NB_SELF_TEST = 1u << 2,
    SIM_NB_SELF_TEST_FAIL = 1u << 3, /* only with SIM_NB_SELF_TEST */
    SIM_NB_MUTE = 1u << 4,
    SIM_NB_BATTERY_LOW = 1u << 5,
    SIM_NB_BATTERY_CRIT = 1u << 6,
    SIM_NB_TAMPER = 1u << 7,
    SIM_NB_HW_FAULT = 1u << 8,
    SIM_NB_DIRTY = 1u << 9,
    SIM_NB_END_OF_LIFE = 1u << 10,
};

typedef struct sim_nb100_tlv {
    uint8_t type;
    uint8_t len;
    const uint8_t *value; /* borrowed; len bytes */
} sim_nb100_tlv;

/* One frame, in engineering units; the encoder rounds and saturates. */
typedef struct sim_nb100 {
    uint8_t type;  /* SIM_NB100_* */
    char imei[16]; /* exactly 15 decimal digits */
    uint16_t seq;
    uint16_t events;   /* SIM_NB_* bits */
    double battery_v;  /* 2.00 .. 4.55 V in 0.01 V steps */
    double smoke_db_m; /* 0 .. 65.535 dB/m in 0.001 steps */
    double temp_c;     /* -128 .. 127 */
    double rssi_dbm;   /* -128 .. 127 */
    int ntlv;          /* 0 .. SIM_NB100_TLV_MAX */
    sim_nb100_tlv tlv[SIM_NB100_TLV_MAX];
} sim_nb100;

/* CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no xorout. */
uint16_t sim_crc16_ccitt_false(const uint8_t *p, size_t n);
/* Packs 15 decimal digits into 8 BCD bytes, high nibble first, after a 0 pad
 * nibble. SIM_EINVAL unless imei is exactly 15 digits. */
int sim_nb100_imei_bcd(const char *imei, uint8_t out[8]);
/* Encodes f into out[0..cap): returns the frame length (24 + TLVs) or
 * SIM_EINVAL (bad IMEI, type, TLV count, or cap too small). */
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
    int tlv;               /* heartbeats carry a firmware TLV */
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

/* ---- platform (platform.c) ---- */

int sim_platform_main(int argc, char **argv);

#endif
