#ifndef GW_CORE_H
#define GW_CORE_H
/* The core: one libuv loop, the device registry and the pipeline
 *   protocol -> adapter -> reading -> rules -> store -> uplink.
 * Everything here runs on the loop thread. */
#include "gateway/config.h"
#include "gateway/model.h"
#include "gateway/store.h"
#include "gateway/uplink.h"
#include "protocols/protocol.h"

#include <uv.h>

typedef struct gw_core gw_core;

typedef struct gw_device {
    gw_device_conf conf;
    const char *type; /* conf.type, else the protocol's device_type(), else the protocol */
    const gw_protocol *proto;
    void *proto_conf;  /* the protocol's device keys, parsed (owned by the device) */
    void *proto_state; /* owned by the protocol */
    gw_core *core;
    int online;        /* -1 unknown, 0 offline, 1 online */
    int64_t interval_ms;
    /* Counters, read by the stats line and the admin interface. */
    uint64_t polls, polls_failed, polls_skipped, readings;
} gw_device;

typedef struct gw_core_stats {
    uint64_t readings, events, alarms;
    uint64_t refused_queue_full; /* readings refused: store queue at its bound */
    uint64_t encode_errors;
} gw_core_stats;

struct gw_core {
    uv_loop_t *loop;
    gw_config cfg;
    char config_path[256]; /* empty: embedded default */
    gw_store *store;
    gw_uplink *uplink;
    gw_device **devices; /* each allocated alone: protocols keep pointers */
    size_t ndevices;
    struct gw_shared *shared; /* objects devices share by name (gw_core_shared) */
    size_t nshared;
    struct gw_listener {
        gw_listener_conf conf; /* conf.conf owned by the listener */
        void *state;
    } *listeners;
    size_t nlisteners;
    gw_device **by_addr; /* open-addressing index of (protocol, address) */
    size_t by_addr_cap;
    struct gw_alarms *alarms; /* local rules and alarms (gateway/alarms.c) */
    struct gw_admin *admin;   /* local admin socket, NULL when disabled */
    struct gw_localpub *localpub; /* local broker for rule actions, NULL when none */
    uint64_t seq;
    gw_core_stats st;
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t stats_timer, drain_timer;
    int stopping;
    int64_t drain_deadline;
    int exit_code;
    char buf[8192]; /* scratch for encoding one item */
};

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
int gw_core_event(gw_core *core, gw_device *dev, gw_event *e);
int gw_core_alarm(gw_core *core, gw_alarm *a);

/* The device configured with this protocol and address (SL651 station
 * address, HJ212 MN, CoAP IMEI...), or NULL: unknown devices are refused. */
gw_device *gw_core_find_device(gw_core *core, const char *protocol, const char *address);
/* Calls cb on the loop once everything handed to the pipeline so far is
 * committed to the outbox (status 0) or failed (negative): a protocol
 * acknowledges a device (CoAP ACK, SL651 confirm) only then. */
int gw_core_flush(gw_core *core, void (*cb)(void *ctx, int status), void *ctx);

/* Runs a protocol command on a device by id (admin interface, platform).
 * Returns 0 or GW_E*, with a one-line answer or error in reply. */
int gw_core_device_command(gw_core *core, const char *device, const char *verb, const char *arg,
                           char *reply, size_t replylen);

/* An immutable object devices share by name (a Modbus profile), loaded with
 * load(core, name, err, errlen) on first use and kept, owned by the core, until
 * it stops (then freed with release). The pair (load, name) is the key, so
 * each protocol keeps its own namespace. Returns NULL with err set when load
 * fails (nothing is cached then). */
typedef void *(*gw_core_load_fn)(gw_core *core, const char *name, char *err, size_t errlen);
void *gw_core_shared(gw_core *core, const char *name, gw_core_load_fn load,
                     void (*release)(void *obj), char *err, size_t errlen);

#endif
