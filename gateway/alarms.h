#ifndef GW_ALARMS_H
#define GW_ALARMS_H
/* The core's side of local rules: feeds readings and events to the pure rule
 * engine (rules/), turns its transitions into priority-lane uplink items,
 * runs local actions (Modbus writes, commands) without waiting for the uplink,
 * applies adaptive polling, persists engine state (active alarms, windows) in
 * the outbox database, and takes acknowledgements. Loop thread only. */
#include "base/model.h"

#include <stddef.h>
#include <stdint.h>

struct gw_core;
struct gw_device;
struct gw_config;
typedef struct gw_alarms gw_alarms;

/* Loads the rules of cfg (inline `rules:` and `rule_files:`) into *defs. */
int gw_alarms_load_defs(const struct gw_config *cfg, void **defs, size_t *n, char *err,
                        size_t errlen);

/* Builds the engine and restores persisted state. NULL with err on failure. */
gw_alarms *gw_alarms_start(struct gw_core *core, char *err, size_t errlen);
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
/* Persists the state one last time and closes handles (freed on close). */
void gw_alarms_stop(gw_alarms *a);

#endif
