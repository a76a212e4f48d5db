#ifndef GW_CORE_H
#define GW_CORE_H
/* The core: one libuv loop, the device registry and the pipeline
 *   protocol -> adapter -> reading -> rules -> store -> uplink.
 * Everything here runs on the loop thread. */
#include "gateway/config.h"
#include "gateway/device.h"
#include "base/json.h"
#include "base/model.h"
#include "base/timerwheel.h"
#include "protocols/protocol.h"

#include <uv.h>

/* Opaque outside gateway/: the core's internals are in gateway/core_internal.h. */
typedef struct gw_core gw_core;

/* The loop everything runs on, and the running configuration (read-only for
 * protocols; replaced as a whole by a reload). */
uv_loop_t *gw_core_loop(gw_core *core);
const gw_config *gw_core_config(const gw_core *core);

/* Builds the core from a loaded config (taking ownership of cfg) and starts
 * everything. Returns 0 or GW_E* with err set (then nothing is left running). */
int gw_core_start(gw_core *core, uv_loop_t *loop, gw_config *cfg, const char *config_path,
                  char *err, size_t errlen);
/* Everything gw_core_start checks without starting anything: profiles and
 * protocol-specific device checks (for --check-config). */
int gw_core_check(const gw_config *cfg, char *err, size_t errlen);
/* Graceful stop: stop devices, commit, drain the uplink for up to the
 * configured time, close. The loop then ends. */
void gw_core_stop(gw_core *core);

/* The pipeline. The device's id and type are filled in; seq and recv time are
 * assigned. Returns 0 when the item was queued for the outbox, GW_EFULL when
 * telemetry was refused by the bounded queue (counted). Alarms and events are
 * never refused. */
int gw_core_reading(gw_core *core, gw_device *dev, gw_reading *r);
/* Between begin and end (nested pairs count once), one device's readings are
 * gathered and go to the outbox as one row at end: a comma-separated run of
 * complete items, stored once (a row per reading was a third of the store's
 * cost per poll). gw_core_reading then returns 0 as it queues; a refusal by
 * the store queue at end is counted as for single readings. Call both in one
 * loop callback: nothing waits between them. */
void gw_core_batch_begin(gw_core *core);
void gw_core_batch_end(gw_core *core);
/* Readings whose device-given observation time lies outside the plausibility
 * window (store.obs_max_age back, store.obs_max_ahead forward of the receive
 * time) are refused by gw_core_reading with GW_EINVAL and counted. */

/* Replay guard for protocols whose reports carry an identity (SL651 station +
 * serial + observation time, HJ212 MN + QN, a CoAP payload's own sequence).
 * Call once per report before handing its items to the pipeline. Returns 1
 * when the same key was already stored for this device (counted: store
 * nothing, but still confirm the report after gw_core_flush), 0 for a new
 * report. The window is per device, bounded (store.replay_window) and
 * persisted with the outbox, so a resend after a restart is caught too. */
int gw_core_seen_report(gw_core *core, gw_device *dev, const char *key);
/* The report just checked was not stored after all (store queue full): forget
 * its key so the device's resend is taken. */
void gw_core_forget_report(gw_core *core, gw_device *dev, const char *key);
int gw_core_event(gw_core *core, gw_device *dev, gw_event *e);
/* Small protocol state kept across restarts beside the outbox (e.g. a station's last
 * SL651 45H word), under a key the protocol prefixes with its name. put is queued in
 * the same commit group as the items queued before it; get reads what was persisted
 * at start (attach). Return as gw_store_state_put/get. */
int gw_core_state_put(gw_core *core, const char *key, const void *val, size_t len);
int gw_core_state_get(gw_core *core, const char *key, void **val, size_t *len);
/* x (may be NULL) adds the device's place, unit, thresholds and text. */
int gw_core_alarm(gw_core *core, gw_alarm *a, const gw_json_alarm_ext *x);
/* Sends the retained metadata ("birth") of device again to every destination,
 * or the inventory when device is NULL (on request of the platform). Returns
 * 0 (queued: it goes out when connected, paced behind alarms) or
 * GW_ENOTFOUND for an unknown device. */
int gw_core_publish_meta(gw_core *core, const char *device);

/* The device configured with this protocol and address (SL651 station
 * address, HJ212 MN, CoAP IMEI...), or NULL: unknown devices are refused. */
gw_device *gw_core_find_device(gw_core *core, const char *protocol, const char *address);
/* Calls cb on the loop once everything handed to the pipeline so far is
 * committed to the outbox (status 0) or failed (negative): a protocol
 * acknowledges a device (CoAP ACK, SL651 confirm) only then. */
int gw_core_flush(gw_core *core, void (*cb)(void *ctx, int status), void *ctx);

/* Liveness (gateway/liveness.c): protocols say what they observe, the core
 * decides online/offline once for all and emits the "online"/"offline" events
 * (and log lines) the same way for every protocol.
 * - gw_core_seen: something valid came from dev (a frame, a message, a poll
 *   answer): online (event on a change; detail may be NULL), its silence
 *   clock restarts and its failure count clears.
 * - gw_core_failed: a poll of dev got no answer; after conf.offline_after
 *   failures in a row dev is offline, with reason as the event detail.
 * - gw_core_offline: the device itself said it is gone (an MQTT last will).
 * - gw_core_watch: silence supervision for devices that report on their own
 *   (listeners): offline once nothing was seen for silence_ms (0: none, the
 *   default). The clock starts now; one core timer checks every device. */
void gw_core_seen(gw_core *core, gw_device *dev, const char *detail);
void gw_core_failed(gw_core *core, gw_device *dev, const char *reason);
void gw_core_offline(gw_core *core, gw_device *dev, const char *reason);
void gw_core_watch(gw_core *core, gw_device *dev, int64_t silence_ms);
/* Started and stopped by the core itself. */
int gw_liveness_start(gw_core *core);
void gw_liveness_stop(gw_core *core);

/* Runs a protocol command on a device by id (admin interface, platform).
 * Returns 0 or GW_E*, with a one-line answer or error in reply. */
int gw_core_device_command(gw_core *core, const char *device, const char *verb, const char *arg,
                           char *reply, size_t replylen);

/* The device answered a request a command sent (protocols with
 * command_answers set): verb as given to command(), answer one line saying
 * what came back. Completes the oldest platform command waiting for it. */
void gw_core_command_answered(gw_core *core, gw_device *dev, const char *verb, const char *answer);
/* The same when the request has an outcome: reason NULL is done with result
 * (a JSON object or NULL), otherwise the command failed with reason. */
void gw_core_command_result(gw_core *core, gw_device *dev, const char *verb, const char *reason,
                            const char *result);

/* An immutable object devices share by name (a Modbus profile), loaded with
 * load(core, name, err, errlen) on first use and kept, owned by the core, until
 * it stops (then freed with release). The pair (load, name) is the key, so
 * each protocol keeps its own namespace. Returns NULL with err set when load
 * fails (nothing is cached then). */
typedef void *(*gw_core_load_fn)(gw_core *core, const char *name, char *err, size_t errlen);
void *gw_core_shared(gw_core *core, const char *name, gw_core_load_fn load,
                     void (*release)(void *obj), char *err, size_t errlen);

/* The core's timer wheel (base/timerwheel.h) for device timers. It runs
 * from before the first attach until after the last detach of a stop. */
gw_tw *gw_core_wheel(gw_core *core);
/* How many devices the running configuration has (every protocol). */
size_t gw_core_device_count(const gw_core *core);

#endif
