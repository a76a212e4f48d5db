#ifndef GW_PROTOCOL_H
#define GW_PROTOCOL_H
/* A protocol moves bytes between devices and the loop. One descriptor per
 * protocol, everything else static; protocols/protocols.c lists them. A
 * protocol never owns the loop, never sleeps and never retries on its own
 * schedule: it uses the core's loop, timers and backoff (base/backoff.h),
 * and hands what it decoded to gw_core_reading / gw_core_event.
 *
 * Two shapes, one descriptor:
 * - polled devices (Modbus TCP): attach() starts polling one configured device;
 * - listeners (SL651 centre, HJ212, CoAP server, DTU inbound): a `listeners:`
 *   entry in the config starts listen(); frames are matched to configured
 *   devices with gw_core_find_device(core, protocol, address).
 * Protocol-specific config keys are declared as cfgmap tables: the core checks
 * them at load time (so --check-config and SIGHUP see every error with file
 * and line) and hands the filled struct to attach()/listen(). */
#include "base/cfgmap.h"

#include <stddef.h>
#include <stdint.h>

struct gw_core;
struct gw_device;

/* Counters every protocol may keep, in one shape so /metrics shows them
 * uniformly as gw_protocol_<name>_total{protocol="..."}: a device's own in
 * gw_device.pc, a listener's (frames not yet matched to a device) through
 * listener_stats. Loop thread only. */
typedef struct gw_proto_counters {
    uint64_t frames;          /* frames or messages received from devices */
    uint64_t timeouts;        /* requests that got no answer in time (each try) */
    uint64_t crc_errors;      /* frames dropped for a bad checksum */
    uint64_t unknown_devices; /* frames from an address no device is configured for */
    uint64_t malformed;       /* frames or answers that did not decode */
} gw_proto_counters;

typedef struct gw_protocol {
    const char *name; /* the `protocol:` value in the config */
    const char *version;
    const char *description;

    /* Extra keys a device entry of this protocol may carry (NULL-terminated,
     * or NULL), and the size of the struct they fill. The filled struct is
     * dev->proto_conf (owned by the core, valid while the device exists). */
    const gw_cfgkey *device_keys;
    size_t device_conf_size;
    /* Optional extra check of a device entry after its keys were parsed (e.g.
     * "address is required"). Returns 0 or GW_EINVAL with a message (the core
     * adds file and line). */
    int (*check_device)(const struct gw_device *dev, char *err, size_t errlen);
    /* The type of a device whose entry names none (a Modbus device: its
     * profile's), valid while the device exists, or NULL for the protocol's
     * name. Called after check_device succeeded. May be NULL. */
    const char *(*device_type)(const struct gw_device *dev);

    /* Starts serving one configured device. Returns 0, or GW_E* with err set.
     * May be NULL for listener-only protocols (devices are then only looked up). */
    int (*attach)(struct gw_core *core, struct gw_device *dev, char *err, size_t errlen);
    /* Stops it; handles are closed through the loop and the protocol state is
     * freed in their close callbacks. Must not touch dev after returning. */
    void (*detach)(struct gw_device *dev);
    /* Changes the poll/report interval (adaptive reporting); may be NULL. */
    int (*set_interval)(struct gw_device *dev, int64_t interval_ms);
    /* Writes a named point of the device's profile (actuators); may be NULL. */
    int (*write)(struct gw_device *dev, const char *point, double value);

    /* A device-level command from the admin interface or the platform (e.g.
     * SL651 "query" = 37, "status" = 46, "clock" = 4A). Writes a one-line
     * answer into reply. Returns 0, GW_EUNSUPPORTED for an unknown verb,
     * GW_EAGAIN when the device is not reachable now. May be NULL. */
    int (*command)(struct gw_device *dev, const char *verb, const char *arg, char *reply,
                   size_t replylen);
    /* 1 when command() only sends a request and the device answers later: the
     * protocol then reports each answer with gw_core_command_answered, and a
     * platform command completes with it (or fails after a wait). */
    int command_answers;

    /* Listener keys (besides `protocol`), the size of the struct they fill,
     * and start/stop. listen() stores its state in *state; unlisten() closes
     * its handles and frees the state from their close callbacks. */
    const gw_cfgkey *listener_keys;
    size_t listener_conf_size;
    int (*listen)(struct gw_core *core, const void *conf, void **state, char *err, size_t errlen);
    void (*unlisten)(void *state);
    /* Adds the listener's counters to *sum (frames it could not give to a
     * device: bad CRC, unknown station, undecodable). May be NULL. */
    void (*listener_stats)(const void *state, gw_proto_counters *sum);
} gw_protocol;

extern const gw_protocol *const gw_protocols[];
const gw_protocol *gw_protocol_find(const char *name);

/* Connection counters of the stream listeners (protocols/stream_listener.c:
 * gw_sl_get_stats for one), declared here so that the core's status reads
 * them without including the listener, which includes the core. */
typedef struct gw_sl_stats {
    uint64_t accepted;           /* connections taken */
    uint64_t refused_full;       /* refused at max_connections (all authenticated) */
    uint64_t refused_per_source; /* refused at max_per_source */
    uint64_t evicted_unauth;     /* closed to make room for a new connection */
    uint64_t auth_timeouts;      /* closed: no accepted frame within auth_timeout */
    uint64_t idle_closed;        /* closed: no accepted frame within idle_timeout */
    uint64_t refused_peer;       /* closed because on_frame said GW_SL_CLOSE */
    uint64_t replies;            /* replies written after their commit */
    uint64_t skipped;            /* garbage bytes dropped */
    uint64_t oversize;           /* full buffers with no frame in them */
    uint64_t open, unauth;       /* connections now, of which unauthenticated */
} gw_sl_stats;
/* The sum over every stream listener of this process, for the status. */
void gw_sl_totals(gw_sl_stats *out);

#endif
