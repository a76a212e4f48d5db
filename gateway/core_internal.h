#ifndef GW_CORE_INTERNAL_H
#define GW_CORE_INTERNAL_H
/* The core's own state, for the files of gateway/ that make up the core (and
 * white-box tests). Protocols and adapters see gw_core as an opaque handle and
 * use the functions in gateway/core.h. */
#include "gateway/core.h"
#include "gateway/status.h"
#include "gateway/store.h"
#include "gateway/uplink.h"

struct gw_core {
    uv_loop_t *loop;
    gw_config cfg;
    char config_path[256]; /* empty: embedded default */
    gw_store *store;
    gw_uplink *uplink;   /* the first destination, uplinks[0] */
    gw_uplink **uplinks; /* one per destination (gw_config_dest) */
    int nuplinks;
    gw_device **devices; /* each allocated alone: protocols keep pointers */
    size_t ndevices;
    struct gw_shared *shared; /* objects devices share by name (gw_core_shared) */
    size_t nshared;
    struct gw_listener {
        gw_listener_conf conf; /* conf.conf owned by the listener */
        void *state;
    } * listeners;
    size_t nlisteners;
    gw_device **by_addr; /* open-addressing index of (protocol, address) */
    size_t by_addr_cap;
    struct gw_alarms *alarms;     /* local rules and alarms (gateway/alarms.c) */
    struct gw_admin *admin;       /* local admin socket, NULL when disabled */
    struct gw_localpub *localpub; /* local broker for rule actions, NULL when none */
    struct gw_devops *devops;     /* device requests of the rules (gateway/devops.c) */
    struct gw_commands *commands; /* platform commands (gateway/commands.c) */
    struct gw_liveness *liveness; /* the offline-by-silence timer (gateway/liveness.c) */
    struct gw_status *status;     /* self-observation (gateway/status.c) */
    struct gw_http *http;         /* local HTTP endpoint, NULL when off */
    struct gw_notify *notify;     /* service manager notifications (gateway/notify.c) */
    struct gw_birth *birth;       /* retained device metadata (gateway/birth.c) */
    gw_tw *wheel;                 /* device timers, from start until every device is gone */
    uint64_t seq;
    gw_core_stats st;
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t stats_timer, drain_timer;
    int stopping;
    int stop_flushed; /* the stop's flush completed: the uplink may drain */
    int64_t drain_deadline;
    int exit_code;
    char buf[8192]; /* scratch for encoding one item */
    /* Readings of one poll gathered into one outbox row (gw_core_batch_begin). */
    struct gw_batch {
        int depth;
        gw_device *dev;
        size_t n, len;
        uint64_t seq; /* the last item's */
        char buf[16384];
    } batch;
};

/* gateway/devops.c: device operations requested by the rules, run on a later
 * loop turn. write/interval return 0 when queued, GW_EFULL or GW_EAGAIN. */
int gw_devops_start(gw_core *core);
void gw_devops_stop(gw_core *core);
int gw_devops_write(gw_core *core, const char *device, const char *point, double value,
                    const char *rule);
int gw_devops_interval(gw_core *core, const char *device, int64_t interval_ms);

#endif
