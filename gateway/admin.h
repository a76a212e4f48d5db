#ifndef GW_ADMIN_H
#define GW_ADMIN_H
/* The local admin interface: a Unix socket (mode 0600, and every peer's uid is
 * checked with SO_PEERCRED: only the gateway's own user or root may talk to
 * it). One line in, one answer out:
 *   status                  JSON with counters, outbox, uplink state and health
 *   devices                 JSON: every device with its state and last values
 *   device <id>             JSON: one device
 *   alarms                  JSON: the active alarms
 *   ack <alarm-id> [by]     acknowledge an active alarm (recorded, sent uplink)
 *   device <id> <verb> [arg] a protocol command on one device (e.g. SL651 query)
 *   cmd <name> <json>       a platform command (gateway/commands.h) run as
 *                           destination "local", which may run every command;
 *                           the answer is its final reply object ("error: "
 *                           before it when refused or failed)
 * `build/gateway admin` is the client (gateway/admin_cli.c): tables for people,
 * --json for scripts. */
#include <stddef.h>

#include <uv.h>

struct gw_alarms;
struct gw_commands;
struct gw_status;
typedef struct gw_admin gw_admin;

/* What the admin socket needs from the core, given at start so that it never
 * reaches into the core (no core <-> admin cycle). Pointers stay valid until
 * gw_admin_stop. */
typedef struct gw_admin_env {
    uv_loop_t *loop;
    struct gw_status *status;     /* answers status, devices, device and alarms */
    struct gw_alarms *alarms;     /* takes ack */
    struct gw_commands *commands; /* runs cmd (may be NULL: no cmd verb) */
    void *ctx;                    /* passed to command */
    /* A protocol command on a device by id (gw_core_device_command). */
    int (*command)(void *ctx, const char *device, const char *verb, const char *arg, char *reply,
                   size_t replylen);
} gw_admin_env;

struct gw_sbuf;
/* Appends `"admin":{open, evicted_idle, idle_closed},` to a status object. */
void gw_admin_stats_json(const gw_admin *a, struct gw_sbuf *b);
gw_admin *gw_admin_start(const gw_admin_env *env, const char *path, char *err, size_t errlen);
void gw_admin_stop(gw_admin *a);
/* The client: `gateway admin [--socket PATH | -c FILE] [--json] VERB ...`
 * (argv[0] is "admin"). Returns the exit code. */
int gw_admin_main(int argc, char **argv);

#endif
