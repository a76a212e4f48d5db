#ifndef GW_DEVICE_H
#define GW_DEVICE_H
/* A configured device as the core, the protocols and the alarm glue see it.
 * Allocated and owned by the core (gateway/core.c); protocols keep pointers to
 * it between attach and detach. Loop thread only. */
#include "gateway/config.h"
#include "protocols/protocol.h"

#include <stdint.h>

struct gw_core;

typedef struct gw_device {
    gw_device_conf conf;
    const char *type; /* conf.type, else the protocol's device_type(), else the protocol */
    const gw_protocol *proto;
    void *proto_conf;  /* the protocol's device keys, parsed (owned by the device) */
    void *proto_state; /* owned by the protocol */
    struct gw_core *core;
    int online; /* -1 unknown, 0 offline, 1 online */
    int64_t interval_ms;
    /* Liveness, kept by gateway/liveness.c: loop time last heard, silence
     * allowed before offline (0: not watched), consecutive failed polls. */
    int64_t live_seen_ms, live_silence_ms;
    int live_fails;
    /* Counters, read by the stats line and the admin interface. */
    uint64_t polls, polls_failed, polls_skipped, readings;
    gw_proto_counters pc;        /* kept by the protocol, exported per protocol in /metrics */
    struct gw_last_values *last; /* last value per metric (gateway/status.c) */
    uint32_t meta_pending;       /* per destination: birth message to send (gateway/birth.c) */
    int meta_metrics;            /* metrics its birth message listed */
} gw_device;

#endif
