#ifndef GW_ALARMS_H
#define GW_ALARMS_H
/* The core's side of local rules: feeds readings and events to the pure rule
 * engine (rules/), turns its transitions into priority-lane uplink items,
 * runs local actions (Modbus writes, commands) without waiting for the uplink,
 * applies adaptive polling, persists engine state (active alarms, windows) in
 * the outbox database, and takes acknowledgements. Loop thread only. */
#include "base/json.h"
#include "base/model.h"

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct gw_device;
struct gw_config;
struct gw_store;
struct gw_localpub;
typedef struct gw_alarms gw_alarms;

/* What the alarm glue needs from the core, given at start, so that it never
 * reaches into the core (no core <-> alarms cycle). Pointers stay valid until
 * gw_alarms_stop. Device operations a rule asks for (a Modbus write, a faster
 * poll) are requests: the core runs them on a later loop turn, never inside
 * the rule engine's callback, and reports a write's outcome with
 * gw_alarms_action_result. */
typedef struct gw_alarms_env {
    uv_loop_t *loop;
    struct gw_store *store;       /* rule state is persisted there */
    struct gw_localpub *localpub; /* local broker for mqtt_publish actions, or NULL */
    const struct gw_config *cfg;  /* the running config (rules, gateway id), kept current */
    void *ctx;                    /* passed to the functions below */
    /* The configured devices now (the array may change at a reload). */
    struct gw_device *const *(*devices)(void *ctx, size_t *n);
    /* Sends one alarm transition through the pipeline (priority lane); x
     * carries the device's place, the unit, the thresholds and the text. */
    int (*alarm)(void *ctx, gw_alarm *al, const gw_json_alarm_ext *x);
    /* Sends one forecast transition (priority lane, its own topic). */
    int (*forecast)(void *ctx, gw_alarm *al, const gw_forecast *f);
    /* Requests a write of a device point, on behalf of rule `rule`. Returns 0
     * when queued, GW_EFULL when the request queue is full (counted). */
    int (*write)(void *ctx, const char *device, const char *point, double value, const char *rule);
    /* Fills what items say about device d (type, place) and the unit of its
     * metric (NULL when it has reported none). */
    void (*describe)(void *ctx, const struct gw_device *d, const char *metric, gw_json_dev *jd,
                     const char **unit);
    /* Requests a device's poll/report interval (adaptive polling). */
    int (*set_interval)(void *ctx, const char *device, int64_t interval_ms);
} gw_alarms_env;

/* Loads the rules of cfg (inline `rules:` and `rule_files:`) into *defs. */
int gw_alarms_load_defs(const struct gw_config *cfg, void **defs, size_t *n, char *err,
                        size_t errlen);

/* Builds the engine and restores persisted state. NULL with err on failure. */
gw_alarms *gw_alarms_start(const gw_alarms_env *env, char *err, size_t errlen);
/* The outcome of a write requested through env->write (counted, logged). */
void gw_alarms_action_result(gw_alarms *a, int rc);
/* Applies health state to a reading (stale/flatline mark it uncertain) before
 * it is stored, then evaluates rules on it. */
void gw_alarms_reading(gw_alarms *a, struct gw_device *dev, gw_reading *r);
void gw_alarms_event(gw_alarms *a, struct gw_device *dev, const gw_event *e);
/* Acknowledgement from the platform or the admin interface. */
int gw_alarms_ack(gw_alarms *a, const char *alarm_id, const char *by);
/* SIGHUP: new definitions, keeping the state of unchanged rules. On error the
 * running rules stay. */
int gw_alarms_reload(gw_alarms *a, const struct gw_config *cfg, char *err, size_t errlen);
size_t gw_alarms_active(const gw_alarms *a);
/* Readings and events evaluated against the rules since start. */
uint64_t gw_alarms_evaluations(const gw_alarms *a);
/* Every active alarm (gw_rules_active_each): for status pages and the admin. */
size_t gw_alarms_each(const gw_alarms *a, void (*cb)(void *ctx, const gw_alarm *al), void *ctx);
/* Persists the state one last time and closes handles (freed on close). */
void gw_alarms_stop(gw_alarms *a);

#endif
