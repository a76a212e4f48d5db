#ifndef GW_ADMIN_H
#define GW_ADMIN_H
/* The local admin interface: a Unix socket (mode 0600, and every peer's uid is
 * checked with SO_PEERCRED: only the gateway's own user or root may talk to
 * it). One line in, one answer out:
 *   status                  JSON with devices, counters, outbox and uplink state
 *   ack <alarm-id> [by]     acknowledge an active alarm (recorded, sent uplink)
 *   device <id> <verb> [arg] a protocol command on one device (e.g. SL651 query)
 * `build/gateway admin [--socket PATH] status` is the client. */
#include <stddef.h>

struct gw_core;
typedef struct gw_admin gw_admin;

gw_admin *gw_admin_start(struct gw_core *core, const char *path, char *err, size_t errlen);
void gw_admin_stop(gw_admin *a);
/* The client side: sends one command line, prints the answer. Exit code. */
int gw_admin_client(const char *path, int argc, char **argv);

#endif
