#ifndef GW_MODEL_H
#define GW_MODEL_H
/* The common model every protocol and adapter produces, and every rule, store
 * and uplink consumes. Plain values with fixed-size strings: a reading can be
 * copied, queued and persisted without ownership questions. Times are
 * milliseconds since the Unix epoch, UTC. */
#include <stddef.h>
#include <stdint.h>

#define GW_ID_MAX 64  /* device and gateway ids, including the NUL */
#define GW_KEY_MAX 32 /* metric keys and event kinds */
#define GW_UNIT_MAX 16
#define GW_DETAIL_MAX 96

/* Error codes: 0 is success, negatives are failures (libuv style). */
enum {
    GW_OK = 0,
    GW_ERR = -1, /* generic failure */
    GW_ENOMEM = -2,
    GW_EMALFORMED = -3, /* untrusted input failed to parse; nothing was produced past the fault */
    GW_EINVAL = -4,     /* bad argument or configuration */
    GW_ENOTFOUND = -5,
    GW_EFULL = -6,        /* a bounded queue refused the item */
    GW_EAGAIN = -7,       /* try again later (the core decides when) */
    GW_ECRC = -8,         /* checksum mismatch */
    GW_EAUTH = -9,        /* password, key or identity refused */
    GW_EUNSUPPORTED = -10 /* well-formed but not something this code handles */
};

typedef enum { GW_Q_GOOD = 0, GW_Q_UNCERTAIN = 1, GW_Q_BAD = 2 } gw_quality;

/* Why a reading is not good. Stable names (gw_reason_name) appear in the uplink. */
typedef enum {
    GW_R_NONE = 0,
    GW_R_OUT_OF_RANGE,
    GW_R_COMM_FAIL,
    GW_R_STALE,
    GW_R_FLATLINE,
    GW_R_SENSOR_FAULT,
    GW_R_MAINTENANCE,
    GW_R_CALIBRATING,
    GW_R_MANUAL,
    GW_R_STOPPED,
    GW_R_MISSING,
    GW_R_OVER_RANGE,
    GW_R_DEVICE_FLAG, /* the device flagged the value in a way with no better name */
    GW_R__COUNT
} gw_reason;

typedef struct gw_reading {
    char device[GW_ID_MAX]; /* registry id; protocols fill it, decoders may leave it empty */
    char metric[GW_KEY_MAX];
    char unit[GW_UNIT_MAX];
    double value;
    uint8_t quality; /* gw_quality */
    uint8_t reason;  /* gw_reason */
    uint8_t places;  /* 0: published as is; n: published rounded to n - 1 decimal places
                        (value itself stays unrounded for rules) */
    int64_t obs_ms;  /* observation time from the device; 0 = none given */
    int64_t recv_ms; /* when the gateway received it; the pipeline fills it if 0 */
    uint64_t seq;    /* per-gateway monotonic sequence, assigned by the pipeline */
} gw_reading;

/* A condition the device itself reported (smoke alarm, battery low, tamper,
 * door open) or the gateway observed about it (online/offline). */
typedef struct gw_event {
    char device[GW_ID_MAX];
    char kind[GW_KEY_MAX]; /* e.g. "fire_alarm", "battery_low", "tamper", "offline" */
    uint8_t active;        /* 1 the condition began, 0 it ended (for one-shot events: 1) */
    int64_t obs_ms;
    int64_t recv_ms;
    uint64_t seq;
    char detail[GW_DETAIL_MAX];
} gw_event;

typedef enum {
    GW_ALARM_RAISED = 0,
    GW_ALARM_UPDATED,
    GW_ALARM_CLEARED,
    GW_ALARM_ACKED
} gw_alarm_state;

/* An alarm transition raised by local rules. Level 0 = none (cleared), 1..4 =
 * blue, yellow, orange, red. */
typedef struct gw_alarm {
    char id[GW_ID_MAX + GW_KEY_MAX + 24]; /* stable for the life of the alarm */
    char rule[GW_KEY_MAX * 2];
    char device[GW_ID_MAX];
    char metric[GW_KEY_MAX];
    uint8_t level;
    uint8_t state; /* gw_alarm_state */
    double value;
    double threshold;
    int64_t raised_ms;
    int64_t at_ms; /* time of this transition */
    uint64_t seq;
    char detail[GW_DETAIL_MAX];
} gw_alarm;

/* FORECAST inputs (gw_forecast.inputs). */
#define GW_FC_IN_LEVEL 1u /* the fitted trend of the metric itself */
#define GW_FC_IN_RAIN 2u  /* heavy rain on the linked gauge */

/* A forecast (pre-warning) transition's prediction, beside its gw_alarm
 * (level = the predicted level, value = the fitted current value, threshold =
 * that level's raise threshold); produced by FORECAST rules (rules/rules.h). */
typedef struct gw_forecast {
    int64_t crossing_ms;  /* predicted crossing of alarm.level */
    int64_t crossings[4]; /* per level 1..4 within the horizon, 0 = none */
    double rate;          /* trend used, metric units per minute */
    double confidence;    /* 0..1: share of pairwise slopes agreeing */
    double rain_mmh;      /* linked gauge intensity, NAN without one */
    unsigned inputs;      /* GW_FC_IN_* used */
    uint32_t points;      /* readings in the fit */
    const char *linked;   /* CLEARED by a crossing: the alarm id, else NULL */
} gw_forecast;

/* Where decoders put what they produce. Either callback may be NULL (the item
 * is then ignored). A callback returns 0, or a negative code to stop decoding. */
typedef struct gw_sink {
    int (*reading)(void *ctx, const gw_reading *r);
    int (*event)(void *ctx, const gw_event *e);
    void *ctx;
} gw_sink;

const char *gw_quality_name(int q);
const char *gw_reason_name(int r);
const char *gw_level_name(int level);
const char *gw_alarm_state_name(int s);
int gw_reason_from_name(const char *s);

/* Copies src into a fixed buffer of size n, always NUL-terminating. Returns 0,
 * or GW_EINVAL when src did not fit (the copy is truncated). */
int gw_strlcpy(char *dst, const char *src, size_t n);

#endif
