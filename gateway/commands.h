#ifndef GW_COMMANDS_H
#define GW_COMMANDS_H
/* Platform commands: parsing, authorization, execution and replies, for every
 * destination and format. A native command arrives on <prefix>/<gw>/cmd/<name>
 * with a JSON object as payload; a platform formatter (ThingsBoard RPC, IoTDA
 * command, Alink service call) translates its own into the same name and
 * payload. Either way gw_commands_handle runs it and answers through the
 * reply callback with the native reply object (docs/uplink.md, "Commands"):
 *   {"v":1,"id":"<corr>","cmd":"rule.set","status":"accepted","at":"..."}
 * `accepted` or `refused` (with `reason`) at once, then `done` or `failed`
 * (with `result` or `reason`) when it completes, possibly on a later loop turn.
 * Every command that changes state (ack, device, rule.set, rule.enable) is
 * logged and queued as an audit event on the priority lane.
 *
 * The core hands what it offers in gw_commands_env (as gateway/alarms.h does),
 * so this module never reaches into the core. Loop thread only. */
#include "base/model.h"
#include "base/mqttc.h"
#include "gateway/uplink_conf.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct gw_alarms;
struct gw_device;
typedef struct gw_commands gw_commands;

/* One reply object (not NUL-terminated, valid during the call). */
typedef void (*gw_commands_reply_fn)(void *ctx, const char *json, size_t len);

typedef struct gw_commands_env {
    uv_loop_t *loop;   /* NULL: no waiting for device answers (tests) */
    int64_t answer_ms; /* how long a device answer is waited for; 0: GW_COMMANDS_ANSWER_MS */
    struct gw_alarms *alarms;
    const char *gateway_id; /* stays valid until gw_commands_free */
    void *ctx;              /* passed to the functions below */
    struct gw_device *const *(*devices)(void *ctx, size_t *n);
    /* A protocol command on a device (gw_core_device_command). */
    int (*device_command)(void *ctx, const char *device, const char *verb, const char *arg,
                          char *reply, size_t replylen);
    /* Requests an immediate poll of a polled device (queued; 0 or GW_E*). */
    int (*poll)(void *ctx, struct gw_device *dev);
    /* Publishes one device's metadata, or the inventory when dev is NULL. */
    int (*publish_meta)(void *ctx, struct gw_device *dev);
    /* Queues an audit event (priority lane): detail is the human line,
     * audit the JSON object of its fields. */
    int (*audit)(void *ctx, const char *detail, const char *audit);
    /* Calls cb once everything queued so far is committed (gw_core_flush). */
    int (*flush)(void *ctx, void (*cb)(void *cbctx, int status), void *cbctx);
} gw_commands_env;

/* Counts since start (admin status "commands", gw_commands_*_total in /metrics). */
typedef struct gw_commands_stats {
    uint64_t handled; /* every command handed in */
    uint64_t refused; /* answered "refused" */
    uint64_t
        audits_suppressed; /* refusals and failures over the audit rate: not logged or audited */
} gw_commands_stats;

/* Commands of one destination replying later, at most. */
#define GW_COMMANDS_PENDING_MAX 64

gw_commands *gw_commands_new(const gw_commands_env *env);
void gw_commands_get_stats(const gw_commands *c, gw_commands_stats *out);
/* Lets destination dest run the commands of `allowed` (bits of
 * gw_commands_bit, as gw_uplink_config.commands holds them). A destination
 * never allowed anything is refused everything. Returns 0 or GW_E*. */
int gw_commands_allow(gw_commands *c, const char *dest, unsigned allowed);
/* Runs one command from destination dest. corr: the correlation id from the
 * transport (MQTT v5 correlation data, a platform's request id), or NULL to
 * take the payload's "id". reply_ctx must stay valid until the last reply of
 * this command or gw_commands_stop, whichever comes first. */
void gw_commands_handle(gw_commands *c, const char *dest, const char *name, const char *payload,
                        size_t len, const char *corr, gw_commands_reply_fn reply, void *reply_ctx);
/* gw_commands_handle for a command that came with an MQTT 5 response topic or
 * correlation data: route is copied, and every reply goes to
 * reply(reply_ctx, route, ...). Its "id" is the payload's, else the correlation
 * data when it is text of at most 64 characters. */
typedef void (*gw_commands_route_fn)(void *ctx, const gw_mqttc_route *route, const char *json,
                                     size_t len);
void gw_commands_handle_routed(gw_commands *c, const char *dest, const char *name,
                               const char *payload, size_t len, const gw_mqttc_route *route,
                               gw_commands_route_fn reply, void *reply_ctx);
/* A device answered a command's request (gw_core_command_answered): the
 * oldest `device` command waiting for (device, verb) is done, with the
 * answer in its result. One waits at most env.answer_ms, then fails with
 * reason "no answer within N s". */
#define GW_COMMANDS_ANSWER_MS 30000
void gw_commands_answered(gw_commands *c, const char *device, const char *verb, const char *answer);
/* The same for a request that completes with an outcome of its own (a Modbus
 * write): reason NULL is done with result (a JSON object, or NULL), otherwise
 * failed with reason. */
void gw_commands_result(gw_commands *c, const char *device, const char *verb, const char *reason,
                        const char *result);
/* The replies still due to reply_ctx are not sent (its client went away);
 * the commands themselves complete. */
void gw_commands_cancel(gw_commands *c, void *reply_ctx);
/* No reply is sent from now on (the uplinks are closing); commands still
 * completing are dropped quietly. */
void gw_commands_stop(gw_commands *c);
/* Frees c (after gw_commands_stop); completions still due free themselves. */
void gw_commands_free(gw_commands *c);

/* The bit of a command name (GW_COMMAND_NAMES), 0 for an unknown name. */
unsigned gw_commands_bit(const char *name);

#endif
