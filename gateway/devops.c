/* Device operations the rules ask for — a point write (an alarm's siren coil),
 * a new poll interval (adaptive polling) — queued and run on a later loop turn
 * by one zero-delay timer. So the alarm glue never calls into a protocol, and
 * never from inside the rule engine's callback: it hands the core a request
 * through gw_alarms_env and hears a write's outcome back. The queue is bounded
 * (DEVOPS_MAX requests; beyond, refused with GW_EFULL and counted). */
#include "gateway/core_internal.h"

#include "base/log.h"
#include "gateway/alarms.h"

#include <stdlib.h>
#include <string.h>

#define DEVOPS_MAX 256

enum { OP_WRITE, OP_INTERVAL };

struct devop {
    int kind;
    char device[GW_ID_MAX];
    char point[GW_KEY_MAX];
    char rule[GW_ID_MAX];
    double value;
    int64_t interval_ms;
};

struct gw_devops {
    gw_core *core;
    uv_timer_t timer;
    struct devop q[DEVOPS_MAX];
    size_t head, n;
    uint64_t refused;
};

static gw_device *find(gw_core *core, const char *id)
{
    for (size_t i = 0; i < core->ndevices; i++)
        if (!strcmp(core->devices[i]->conf.id, id))
            return core->devices[i];
    return NULL;
}

static void run(gw_core *core, const struct devop *op)
{
    gw_device *d = find(core, op->device); /* gone after a reload: the request lapses */
    if (op->kind == OP_INTERVAL) {
        if (d && d->proto->set_interval)
            d->proto->set_interval(d, op->interval_ms);
        return;
    }
    int rc = d && d->proto->write ? d->proto->write(d, op->point, op->value) : GW_ENOTFOUND;
    if (rc)
        GW_WARN("alarms", "rule %s: write %s.%s=%g failed (%d)", op->rule, op->device, op->point,
                op->value, rc);
    else
        GW_INFO("alarms", "rule %s: wrote %s.%s = %g", op->rule, op->device, op->point, op->value);
    gw_alarms_action_result(core->alarms, rc);
}

static void on_timer(uv_timer_t *t)
{
    struct gw_devops *o = t->data;
    /* Only what was queued before this turn: a request made while running
     * waits for the next one. */
    for (size_t k = o->n; k > 0 && o->n > 0; k--) {
        struct devop op = o->q[o->head];
        o->head = (o->head + 1) % DEVOPS_MAX;
        o->n--;
        run(o->core, &op);
    }
    if (o->n)
        uv_timer_start(&o->timer, on_timer, 0, 0);
}

static int push(gw_core *core, const struct devop *op)
{
    struct gw_devops *o = core->devops;
    if (!o || core->stopping)
        return GW_EAGAIN;
    if (o->n == DEVOPS_MAX) {
        o->refused++;
        GW_LOG_RL(GW_LOG_WARN, 10000, "alarms", "device request queue full (%d): %s refused",
                  DEVOPS_MAX, op->device);
        return GW_EFULL;
    }
    o->q[(o->head + o->n) % DEVOPS_MAX] = *op;
    o->n++;
    uv_timer_start(&o->timer, on_timer, 0, 0);
    return GW_OK;
}

int gw_devops_write(gw_core *core, const char *device, const char *point, double value,
                    const char *rule)
{
    struct devop op = {.kind = OP_WRITE, .value = value};
    gw_strlcpy(op.device, device, sizeof(op.device));
    gw_strlcpy(op.point, point, sizeof(op.point));
    gw_strlcpy(op.rule, rule ? rule : "", sizeof(op.rule));
    return push(core, &op);
}

int gw_devops_interval(gw_core *core, const char *device, int64_t interval_ms)
{
    struct devop op = {.kind = OP_INTERVAL, .interval_ms = interval_ms};
    gw_strlcpy(op.device, device, sizeof(op.device));
    return push(core, &op);
}

int gw_devops_start(gw_core *core)
{
    struct gw_devops *o = calloc(1, sizeof(*o));
    if (!o)
        return GW_ENOMEM;
    o->core = core;
    uv_timer_init(core->loop, &o->timer);
    o->timer.data = o;
    core->devops = o;
    return GW_OK;
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

void gw_devops_stop(gw_core *core)
{
    struct gw_devops *o = core->devops;
    if (!o)
        return;
    if (o->n)
        GW_WARN("alarms", "stopping: %zu device requests not run", o->n);
    core->devops = NULL;
    uv_close((uv_handle_t *)&o->timer, on_closed);
}
