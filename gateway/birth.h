#ifndef GW_BIRTH_H
#define GW_BIRTH_H
/* Device metadata for the platform ("birth" messages, docs/uplink.md): one
 * retained message per device on <prefix>/<gw>/devices/<id> (type, vendor,
 * model, profile, protocol, site, the metrics seen with their units, online
 * state) and a gateway inventory on <prefix>/<gw>/inventory. They are state,
 * not history: they never enter the outbox. Each destination (a gw_uplink)
 * gets every message again on each connect (the broker may have lost its
 * retained store), a device's again when it changes (SIGHUP, online/offline,
 * a first reading of a new metric), and an empty retained message clears a
 * removed device. Publishing is paced by the uplink (a few in flight at a
 * time, behind the outbox's priority lane), so 10,000 devices never flood
 * the MQTT client. Loop thread only. */
#include "base/json.h"

#include <stddef.h>
#include <stdint.h>

struct gw_device;
struct gw_uplink;

/* What items say about d (type and place), borrowing d's strings. */
void gw_birth_jdev(const struct gw_device *d, gw_json_dev *j);

/* The birth message of d (online: 1, 0, or -1 unknown = field left out).
 * Returns its length, or GW_EFULL when b was too small. */
int gw_birth_json(gw_jbuf *b, const char *gw, const struct gw_device *d, int online, int64_t at_ms);
/* The inventory: every device with its type, site id and online state. */
int gw_birth_inventory_json(gw_jbuf *b, const char *gw, struct gw_device *const *devs, size_t n,
                            int64_t at_ms);

typedef struct gw_birth gw_birth;
/* devices(ctx, &n) returns the configured devices now. NULL when out of memory. */
gw_birth *gw_birth_new(const char *gw, struct gw_device *const *(*devices)(void *ctx, size_t *n),
                       void *ctx);
/* Adds a destination (at most 32): its connects and deliveries drive publishing.
 * Returns 0, or GW_EFULL when there are 32 already. */
int gw_birth_attach(gw_birth *b, struct gw_uplink *u);
/* d's message changed: send it again to every destination, after the next
 * delivery (changes of one moment go out as one message). */
void gw_birth_mark(gw_birth *b, struct gw_device *d);
/* Device id is gone (SIGHUP): clear its retained message everywhere. */
void gw_birth_gone(gw_birth *b, const char *id);
/* Send the inventory again to every destination. */
void gw_birth_inventory(gw_birth *b);
/* Publish what is pending now (after marks; also driven by the uplinks). */
void gw_birth_kick(gw_birth *b);
/* Clears still waiting for a connection, summed over destinations. */
size_t gw_birth_pending_clears(const gw_birth *b);
void gw_birth_free(gw_birth *b);

#endif
