#ifndef GW_PROTOCOL_H
#define GW_PROTOCOL_H
/* A protocol moves bytes between devices and the loop. One descriptor per
 * protocol, everything else static; protocols/protocols.c lists them. A
 * protocol never owns the loop, never sleeps and never retries on its own
 * schedule: it uses the core's loop, timers and backoff, and hands what it
 * decoded to gw_core_reading / gw_core_event. */
#include <stddef.h>
#include <stdint.h>

struct gw_core;
struct gw_device;

typedef struct gw_protocol {
    const char *name; /* the `protocol:` value in a device's config */
    const char *version;
    const char *description;
    /* Starts serving one configured device. Returns 0, or GW_E* with err set. */
    int (*attach)(struct gw_core *core, struct gw_device *dev, char *err, size_t errlen);
    /* Stops it; handles are closed through the loop and the protocol state is
     * freed in their close callbacks. dev must stay valid until the loop ran. */
    void (*detach)(struct gw_device *dev);
    /* Changes the poll/report interval (adaptive reporting); may be NULL. */
    int (*set_interval)(struct gw_device *dev, int64_t interval_ms);
    /* Writes a named point of the device's profile (actuators); may be NULL. */
    int (*write)(struct gw_device *dev, const char *point, double value);
} gw_protocol;

extern const gw_protocol *const gw_protocols[];
const gw_protocol *gw_protocol_find(const char *name);

#endif
