#ifndef GW_STATUS_H
#define GW_STATUS_H
/* What the gateway says about itself, built once for every way of asking: the
 * admin socket, the HTTP API and /metrics. Loop thread only.
 *
 * It keeps what the counters alone cannot tell: each device's last value per
 * metric (fed by the pipeline), loop lateness (a probe timer), when the
 * uplink went down, whether the store thread still commits, and an estimate
 * of the oldest row's age per outbox lane (commit times sampled once a second,
 * matched against rows removed first-in first-out; rows already in the
 * outbox at start count from the start). */
#include "base/model.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct gw_alarms;
struct gw_config;
struct gw_device;
struct gw_store;
struct gw_uplink;

/* A growable text buffer; on allocation failure oom is set and further
 * writes are dropped (the caller answers with an error). */
typedef struct gw_sbuf {
    char *p;
    size_t len, cap;
    int oom;
} gw_sbuf;
void gw_sbuf_put(gw_sbuf *b, const char *s, size_t n);
void gw_sbuf_reserve(gw_sbuf *b, size_t more); /* room for more bytes without a realloc */
void gw_sbuf_printf(gw_sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void gw_sbuf_jstr(gw_sbuf *b, const char *s); /* a quoted, escaped JSON string */
void gw_sbuf_free(gw_sbuf *b);
#define GW_SBUF_LIT(b, lit) gw_sbuf_put((b), (lit), sizeof(lit) - 1)

/* The pipeline's counters: kept by the core, read here. */
typedef struct gw_core_stats {
    uint64_t readings, events, alarms;
    uint64_t refused_queue_full; /* readings refused: store queue at its bound */
    uint64_t encode_errors;
    uint64_t replays;     /* reports refused by gw_core_seen_report as already stored */
    uint64_t obs_refused; /* readings refused: observation time outside store.obs_max_age/ahead */
} gw_core_stats;

/* What the status reads of the core, given at start, so that it never reaches
 * into the core (the core starts the status, the admin socket and the HTTP
 * endpoint; they ask the status, never the core). Pointers stay valid until
 * gw_status_stop. */
struct gw_protocol;

typedef struct gw_status_env {
    uv_loop_t *loop;
    const struct gw_config *cfg; /* the running config, kept current */
    const gw_core_stats *counts; /* the pipeline's counters */
    const int *stopping;         /* non-zero once the core stops (readiness) */
    struct gw_store *store;
    struct gw_uplink *uplink;
    struct gw_uplink *const *uplinks; /* every destination, uplinks[0] == uplink */
    int nuplinks;
    struct gw_alarms *alarms;
    struct gw_commands *commands; /* NULL: no "commands" counts */
    void *ctx;                    /* passed to the functions below */
    /* The configured devices now (the array may change at a reload). */
    struct gw_device *const *(*devices)(void *ctx, size_t *n);
    /* Appends the admin socket's `"admin":{...},` member to the status object,
     * and the HTTP endpoint's own series to /metrics (nothing when off). */
    void (*admin_json)(void *ctx, gw_sbuf *b);
    void (*http_metrics)(void *ctx, gw_sbuf *b);
    /* Calls each(proto, state, arg) for every running listener (their
     * protocol counters go into /metrics). */
    void (*listeners)(void *ctx, void (*each)(const struct gw_protocol *p, void *state, void *arg),
                      void *arg);
} gw_status_env;

typedef struct gw_status gw_status;
/* NULL when out of memory. */
gw_status *gw_status_start(const gw_status_env *env);
void gw_status_stop(gw_status *st); /* freed on the timer's close */

/* Pipeline hooks: a reading was accepted (its value becomes the device's last
 * value of that metric); a device is freed. */
void gw_status_note_reading(struct gw_device *dev, const gw_reading *r);
void gw_status_device_free(struct gw_device *dev);
/* The i-th metric dev has reported (in order of first appearance), with its
 * unit in *unit (unit may be NULL); NULL past the last. */
const char *gw_status_metric_at(const struct gw_device *dev, int i, const char **unit);

/* The summary object (admin `status`, /api/v1/status). */
void gw_status_json(gw_status *st, gw_sbuf *b);

typedef struct gw_status_filter {
    const char *q;     /* substring of id or site, case-insensitive */
    const char *type;  /* exact device type */
    const char *site;  /* substring of site, case-insensitive */
    const char *state; /* online, offline or unknown */
    size_t offset, limit;
} gw_status_filter;
/* {"total","matched","offset","types":[...],"devices":[...]} */
void gw_status_devices_json(gw_status *st, const gw_status_filter *f, gw_sbuf *b);
/* One device with every last value; GW_ENOTFOUND when there is none by that id. */
int gw_status_device_json(gw_status *st, const char *id, gw_sbuf *b);
/* {"active":N,"alarms":[...]} */
void gw_status_alarms_json(gw_status *st, gw_sbuf *b);
/* {"status":"ok"|"fail","reasons":[...]}; returns 1 when healthy. ready adds
 * the readiness conditions (started, not stopping). */
int gw_status_health_json(gw_status *st, int ready, gw_sbuf *b);
/* Prometheus text exposition format 0.0.4. */
void gw_status_metrics(gw_status *st, gw_sbuf *b);

#endif
