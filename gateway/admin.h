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
 * `build/gateway admin` is the client (gateway/admin_cli.c): tables for people,
 * --json for scripts. */
#include <stddef.h>

struct gw_core;
typedef struct gw_admin gw_admin;

struct gw_sbuf;
/* Appends `"admin":{open, evicted_idle, idle_closed},` to a status object. */
void gw_admin_stats_json(const gw_admin *a, struct gw_sbuf *b);
gw_admin *gw_admin_start(struct gw_core *core, const char *path, char *err, size_t errlen);
void gw_admin_stop(gw_admin *a);
/* The client: `gateway admin [--socket PATH | -c FILE] [--json] VERB ...`
 * (argv[0] is "admin"). Returns the exit code. */
int gw_admin_main(int argc, char **argv);

#endif
