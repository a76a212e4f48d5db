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

struct gw_core;
struct gw_device;

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

typedef struct gw_status gw_status;
gw_status *gw_status_start(struct gw_core *core);
void gw_status_stop(gw_status *st); /* freed on the timer's close */

/* Pipeline hooks: a reading was accepted (its value becomes the device's last
 * value of that metric); a device is freed. */
void gw_status_note_reading(struct gw_device *dev, const gw_reading *r);
void gw_status_device_free(struct gw_device *dev);

/* The summary object (admin `status`, /api/v1/status). */
void gw_status_json(struct gw_core *core, gw_sbuf *b);

typedef struct gw_status_filter {
    const char *q;     /* substring of id or site, case-insensitive */
    const char *type;  /* exact device type */
    const char *site;  /* substring of site, case-insensitive */
    const char *state; /* online, offline or unknown */
    size_t offset, limit;
} gw_status_filter;
/* {"total","matched","offset","types":[...],"devices":[...]} */
void gw_status_devices_json(struct gw_core *core, const gw_status_filter *f, gw_sbuf *b);
/* One device with every last value; GW_ENOTFOUND when there is none by that id. */
int gw_status_device_json(struct gw_core *core, const char *id, gw_sbuf *b);
/* {"active":N,"alarms":[...]} */
void gw_status_alarms_json(struct gw_core *core, gw_sbuf *b);
/* {"status":"ok"|"fail","reasons":[...]}; returns 1 when healthy. ready adds
 * the readiness conditions (started, not stopping). */
int gw_status_health_json(struct gw_core *core, int ready, gw_sbuf *b);
/* Prometheus text exposition format 0.0.4. */
void gw_status_metrics(struct gw_core *core, gw_sbuf *b);

#endif
