#ifndef GW_RULES_H
#define GW_RULES_H
/* Local rules and alarms: a pure library. It does no I/O, no logging and never
 * reads a clock: every call that depends on time takes `now` (ms since the
 * epoch, UTC). The gateway feeds it readings and events, calls
 * gw_rules_tick() at gw_rules_next_deadline(), and receives alarm transitions
 * through one callback. The YAML rule format is documented, with annotated
 * examples, in rules/examples/README.md; gateway/rules_load.h parses it into
 * the gw_rule definitions below.
 *
 * Rule kinds (gw_rule.kind):
 *  - THRESHOLD: graded levels 1..4 (blue, yellow, orange, red) on one metric,
 *    direction above or below, separate raise and clear thresholds per level
 *    (hysteresis), raise_for_ms / clear_for_ms debounce. Escalation and
 *    de-escalation are UPDATED transitions of one alarm.
 *  - WINDOW: the same levels applied to a sliding-window aggregate (sum, avg,
 *    min, max, or rise = latest value minus the window minimum). Each level may
 *    carry its own window (rainstorm: blue 50 mm/12 h ... red 100 mm/3 h), all
 *    served by one ring of `buckets` buckets spanning the rule's window.
 *    Input may be per-report increments or a cumulative counter (resets are
 *    detected: a drop counts the new value as the increment since the reset).
 *  - COMBINED: AND/OR of up to GW_RULE_MAX_CONDS conditions, each on one
 *    (device, metric) with an aggregate, a threshold and an optional clear
 *    threshold. One alarm per rule, on `subject`.
 *  - STALE: the device sent nothing for stale_after_ms (checked by tick).
 *  - FLATLINE: the metric did not change by more than flat_epsilon for
 *    flat_for_ms.
 *  - RANGE: a reading flagged bad with reason out_of_range/over_range, or a
 *    value outside [range_min, range_max] when range_min < range_max.
 *  - EVENT: a device event kind maps to an alarm at `level`, immediately (no
 *    debounce); the event with active=0 clears it, or auto_clear_ms after the
 *    last active=1.
 *  - FORECAST: a pre-warning, not an alarm. A robust trend (Theil-Sen slope
 *    over the good readings of the last window_ms, at most GW_FC_POINTS of
 *    them) predicts when each level's raise threshold will be crossed; the
 *    forecast's level is the highest level predicted within horizon_ms. Levels
 *    come from `alarm_rule` (a THRESHOLD rule on the same metric) when the
 *    rule has none of its own; with alarm_rule set, the alarm that rule raises
 *    at the forecast level ends the forecast ("crossed", linked by its id).
 *    RAISED / UPDATED (level change, or crossing time moved >= move_ms) /
 *    CLEARED (withdrawn: trend reversed, beyond horizon, crossed, no data);
 *    raise_for_ms / clear_for_ms debounce as for alarms. Optional rain input
 *    (conds[0]: a configured gauge's window sum): heavy rain (intensity >=
 *    conds[0].threshold mm/h) adds rain_gain units per mm to the trend, so a
 *    forecast can start before the water rises. Transitions carry `forecast`;
 *    forecasts are not counted as alarms and cannot be acknowledged.
 *
 * Readings of quality BAD never raise or clear THRESHOLD, WINDOW, COMBINED or
 * FLATLINE alarms; every reading counts as a sign of life for STALE and RANGE
 * looks precisely at bad readings. Window buckets are placed by the reading's
 * obs_ms when it lies within the rule's window before `now` (and no more than
 * a minute ahead), else by `now`; debounce always uses `now`.
 *
 * Alarm ids are "<rule>:<device>:<raised_ms>", stable for the alarm's life.
 * Rule ids are at most GW_KEY_MAX-1 characters without ':'.
 *
 * Cost: rules are indexed by (metric, target kind, target name) and
 * per-(rule, device) state lives in one hash table, so a reading costs a few
 * hash lookups plus the work of the rules that match it. */
#include "base/model.h"

#include <stddef.h>
#include <stdint.h>

#define GW_RULE_LEVELS 4
#define GW_RULE_MAX_TARGETS 8
#define GW_RULE_MAX_CONDS 6
#define GW_RULE_MAX_ACTIONS 4
#define GW_RULE_MAX_BUCKETS 1024
#define GW_ACTION_ARGS 8
#define GW_ACTION_ARG_MAX 64
#define GW_TOPIC_MAX 128
#define GW_FC_POINTS 16      /* FORECAST: readings kept per (rule, device) for the fit */
#define GW_RULE_DESC_MAX 256 /* description, UTF-8 bytes including the NUL */

typedef enum {
    GW_RK_THRESHOLD = 0,
    GW_RK_WINDOW,
    GW_RK_COMBINED,
    GW_RK_STALE,
    GW_RK_FLATLINE,
    GW_RK_RANGE,
    GW_RK_EVENT,
    GW_RK_FORECAST,
    GW_RK__COUNT
} gw_rule_kind;

/* ABOVE: raise when x >= raise, clear when x < clear (clear <= raise).
 * BELOW: raise when x <= raise, clear when x > clear (clear >= raise). */
typedef enum { GW_DIR_ABOVE = 0, GW_DIR_BELOW } gw_rule_dir;

/* Aggregates. VALUE (the latest value) is for combined conditions only. */
typedef enum { GW_WF_SUM = 0, GW_WF_AVG, GW_WF_MIN, GW_WF_MAX, GW_WF_RISE, GW_WF_VALUE } gw_rule_fn;

typedef enum { GW_IN_INCREMENT = 0, GW_IN_CUMULATIVE } gw_rule_input;

typedef enum { GW_TG_DEVICE = 0, GW_TG_TYPE, GW_TG_SITE, GW_TG_GROUP } gw_rule_target_kind;

typedef enum { GW_COMBINE_ALL = 0, GW_COMBINE_ANY } gw_rule_combine;

typedef enum { GW_ACT_MODBUS_WRITE = 0, GW_ACT_MQTT_PUBLISH, GW_ACT_COMMAND } gw_action_kind;

/* Action trigger mask bits: (1u << gw_alarm_state). */
#define GW_ACT_ON(state) (1u << (state))
#define GW_ACT_ON_DEFAULT (GW_ACT_ON(GW_ALARM_RAISED) | GW_ACT_ON(GW_ALARM_CLEARED))

typedef struct gw_rule_level {
    int enabled;
    double raise, clear;
    int64_t window_ms; /* WINDOW rules: this level's window; 0 = the rule's window */
} gw_rule_level;

typedef struct gw_rule_target {
    int kind; /* gw_rule_target_kind */
    char name[GW_ID_MAX];
} gw_rule_target;

typedef struct gw_rule_cond {
    char device[GW_ID_MAX];
    char metric[GW_KEY_MAX];
    int fn;    /* gw_rule_fn */
    int input; /* gw_rule_input */
    int dir;   /* gw_rule_dir */
    double threshold;
    double clear; /* hysteresis; equal to threshold for none */
    int64_t window_ms;
    uint32_t buckets; /* 0 = 12 */
} gw_rule_cond;

/* Local actions are data: the engine hands them back with each transition
 * (through gw_rules_transition.rule) and the gateway executes them. */
typedef struct gw_rule_action {
    int kind;    /* gw_action_kind */
    unsigned on; /* GW_ACT_ON() mask; 0 means GW_ACT_ON_DEFAULT */
    char device[GW_ID_MAX];
    char point[GW_KEY_MAX]; /* modbus_write: a profile point name, or empty */
    int32_t reg;            /* modbus_write: holding register, -1 when `point` is used */
    double value_raise, value_clear;
    int has_value_clear;
    char topic[GW_TOPIC_MAX];
    char argv[GW_ACTION_ARGS][GW_ACTION_ARG_MAX];
    int argc;
    int64_t timeout_ms;
} gw_rule_action;

/* One rule definition: a plain value (no pointers), copied by the engine. */
typedef struct gw_rule {
    char id[GW_KEY_MAX];
    int kind; /* gw_rule_kind */
    /* What the alarm means to a person, e.g. "隧道积水超过{threshold}{unit}，禁止通行";
     * the gateway builds each transition's `text` from it. Not part of the
     * fingerprint: changing it keeps active alarms. Empty = none. */
    char description[GW_RULE_DESC_MAX];
    gw_rule_target targets[GW_RULE_MAX_TARGETS];
    size_t n_targets;                     /* 0 = every device */
    char metric[GW_KEY_MAX];              /* empty for STALE (any metric) and RANGE (any metric) */
    char event[GW_KEY_MAX];               /* EVENT: the gw_event kind */
    int dir;                              /* gw_rule_dir */
    gw_rule_level levels[GW_RULE_LEVELS]; /* [0] = blue ... [3] = red */
    int level;                            /* COMBINED, health and EVENT rules: 1..4 */
    int64_t raise_for_ms, clear_for_ms;   /* debounce (not used by EVENT) */
    /* WINDOW */
    int fn, input;
    int64_t window_ms; /* the longest window; level windows must not exceed it */
    uint32_t buckets;
    /* COMBINED */
    int combine;
    char subject[GW_ID_MAX]; /* device id the alarm is raised on */
    gw_rule_cond conds[GW_RULE_MAX_CONDS];
    size_t n_conds;
    /* health */
    int64_t stale_after_ms;
    int64_t flat_for_ms;
    double flat_epsilon;
    double range_min, range_max;
    /* EVENT */
    int64_t auto_clear_ms; /* 0 = only active=0 clears */
    /* Value-only UPDATED transitions while the level is unchanged: off when
     * both are 0; otherwise sent when |value - last sent| >= update_delta and
     * at least update_interval_ms after the previous transition. */
    double update_delta;
    int64_t update_interval_ms;
    int64_t fast_interval_ms; /* > 0: ask for faster polling while active */
    /* FORECAST (window_ms is the fit window; conds[0], when n_conds is 1, the
     * rain gauge: device, metric, input, window_ms, buckets, threshold mm/h) */
    char alarm_rule[GW_KEY_MAX]; /* THRESHOLD rule forecast for; may be empty */
    int64_t horizon_ms;          /* predict crossings up to this far ahead */
    int64_t move_ms;             /* UPDATED when the crossing moves by >= this; 0 = never */
    uint32_t min_points;         /* readings in the window needed for a fit (>= 3) */
    double min_rate;             /* smallest rise per minute that is a trend (> 0) */
    double min_confidence;       /* share of pairwise slopes agreeing with the trend */
    double rain_gain;            /* rise per mm of heavy rain (metric units) */
    gw_rule_action actions[GW_RULE_MAX_ACTIONS];
    size_t n_actions;
} gw_rule;

/* Who a reading or event comes from. Strings are borrowed for the call. */
typedef struct gw_rules_device {
    const char *id;
    const char *type; /* may be NULL */
    const char *site; /* may be NULL */
    const char *const *groups;
    size_t n_groups;
} gw_rules_device;

/* What the callback receives. Everything is valid only during the call. */
typedef struct gw_rules_transition {
    gw_alarm alarm;      /* id, rule, device, metric, level, state, value, threshold,
                            raised_ms, at_ms (the transition), seq, detail */
    int prev_level;      /* level before this transition */
    const gw_rule *rule; /* the definition: actions (filter with a->on), fast_interval_ms */
    /* Health rules: GW_R_STALE, GW_R_FLATLINE or GW_R_OUT_OF_RANGE. On RAISED the
     * caller marks that device's readings with this reason; on CLEARED it stops. */
    int health_reason;
    /* Adaptive reporting: on RAISED, poll poll_devices at fast_interval_ms; on
     * CLEARED, ask gw_rules_fast_interval() for each (0 = restore normal). */
    int64_t fast_interval_ms;
    const char *poll_devices[GW_RULE_MAX_CONDS + 1];
    size_t n_poll_devices;
    const gw_forecast *forecast; /* FORECAST rules only, else NULL */
} gw_rules_transition;

/* The callback must not call gw_rules_* functions that change the engine
 * (reading, event, tick, ack, import, reload, free); queries are allowed. */
typedef void (*gw_rules_cb)(void *ctx, const gw_rules_transition *t);

typedef struct gw_rules_engine gw_rules_engine;

/* Checks one definition; 0 or GW_EINVAL with a message naming the rule. */
int gw_rule_check(const gw_rule *r, char *err, size_t errlen);

/* Fingerprint of the parts of a definition that decide alarm state (not
 * actions, fast_interval_ms or update rate limits). */
uint64_t gw_rule_fingerprint(const gw_rule *r);

/* Builds an engine from n definitions (copied; ids must be unique). Returns
 * NULL on a bad definition (message in err) or when out of memory. Free with
 * gw_rules_free. */
gw_rules_engine *gw_rules_new(const gw_rule *defs, size_t n, gw_rules_cb cb, void *ctx, char *err,
                              size_t errlen);
void gw_rules_free(gw_rules_engine *e);

/* Evaluates one reading against every rule whose target matches dev and whose
 * metric matches r->metric. Transitions are delivered before it returns.
 * Returns 0, GW_EINVAL (no dev->id, or one of GW_ID_MAX or more) or GW_ENOMEM. */
int gw_rules_reading(gw_rules_engine *e, const gw_rules_device *dev, const gw_reading *r,
                     int64_t now);
/* Evaluates a device event against EVENT rules (and counts as life for STALE). */
int gw_rules_event(gw_rules_engine *e, const gw_rules_device *dev, const gw_event *ev, int64_t now);
/* Starts the STALE clocks of a device that has not reported yet. */
int gw_rules_expect(gw_rules_engine *e, const gw_rules_device *dev, int64_t now);

/* Handles debounce expiry, stale devices, window expiry and event auto-clear
 * due at or before now. */
int gw_rules_tick(gw_rules_engine *e, int64_t now);
/* When tick should next be called: never later than needed (it may be
 * early); INT64_MAX when nothing is pending. */
int64_t gw_rules_next_deadline(const gw_rules_engine *e);

/* Acknowledges an active alarm by id; delivers an ACKED transition whose
 * detail names `by`. GW_ENOTFOUND if no such active alarm; 0 without a
 * transition if it was already acknowledged. */
int gw_rules_ack(gw_rules_engine *e, const char *alarm_id, const char *by, int64_t now);

/* Smallest fast_interval_ms of active alarms asking for faster polling of
 * device, 0 when none (restore its normal interval). */
int64_t gw_rules_fast_interval(const gw_rules_engine *e, const char *device);
/* GW_R_STALE / GW_R_FLATLINE / GW_R_OUT_OF_RANGE when an active health alarm
 * covers (device, metric) (metric NULL = any), else GW_R_NONE. */
int gw_rules_health(const gw_rules_engine *e, const char *device, const char *metric);
/* Number of active alarms (forecasts not included). */
size_t gw_rules_active_count(const gw_rules_engine *e);
/* Calls cb for each active alarm, in no particular order: id, rule, device,
 * metric, level, value and threshold as in its last transition, state
 * GW_ALARM_ACKED once acknowledged (else GW_ALARM_RAISED), raised_ms, and
 * at_ms = the last transition. A query: cb must not change the engine.
 * Returns how many there are. */
typedef void (*gw_rules_active_cb)(void *ctx, const gw_alarm *a);
size_t gw_rules_active_each(const gw_rules_engine *e, gw_rules_active_cb cb, void *ctx);

/* Persistence. export writes the whole state (active alarms, pending
 * debounce, window buckets, stale clocks, sequence) as a versioned,
 * little-endian blob into *out (malloc'd; the caller frees it). import reads
 * such a blob into an engine that has not yet seen traffic: records of rules
 * that no longer exist or whose fingerprint changed are skipped; restored
 * alarms stay active without a new RAISED. Import returns GW_EMALFORMED for
 * a damaged blob (the engine may then hold part of it) and GW_EUNSUPPORTED for
 * another version. */
int gw_rules_export(const gw_rules_engine *e, uint8_t **out, size_t *len);
int gw_rules_import(gw_rules_engine *e, const uint8_t *buf, size_t len);

/* Builds a new engine from defs with old's callback, carrying over the state
 * of every rule whose id and fingerprint are unchanged. Active alarms of
 * removed or changed rules are CLEARED (at now, detail "rule changed"). On
 * success old is freed and the new engine returned; on failure NULL is
 * returned and old is untouched. */
gw_rules_engine *gw_rules_reload(gw_rules_engine *old, const gw_rule *defs, size_t n, int64_t now,
                                 char *err, size_t errlen);

/* Names used by the YAML format and in alarm details. */
const char *gw_rule_kind_name(int kind);
const char *gw_rule_fn_name(int fn);

#endif
