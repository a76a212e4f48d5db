/* A load generator: a "device" that produces readings at a configured rate,
 * with nothing on the wire. Benchmarks and tests use it to push the pipeline,
 * the outbox and the uplink harder than real devices can (Fluent Bit's
 * in_dummy plays the same part). Values count up from the last sequence so
 * gaps and duplicates are easy to see. */
#include "gateway/core.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define TICK_MS 10

struct syn_conf {
    int64_t rate, total, square;
};

static const gw_cfgkey syn_keys[] = {
    {"rate", GW_CT_INT, "10", 1, 10000000, offsetof(struct syn_conf, rate), 0, NULL, 0,
     "readings per second"},
    {"total", GW_CT_INT, "0", 0, 1e15, offsetof(struct syn_conf, total), 0, NULL, 0,
     "stop after this many readings (0 = never)"},
    {"square", GW_CT_INT, "0", 0, 1e9, offsetof(struct syn_conf, square), 0, NULL, 0,
     "also emit metric 'level', a 0/100 square wave flipping every N readings (0 = off)"},
    {NULL}};

struct syn {
    gw_device *dev;
    uv_timer_t timer;
    uint64_t made;
    double carry;
};

static void on_tick(uv_timer_t *t)
{
    struct syn *s = t->data;
    gw_device *d = s->dev;
    const struct syn_conf *c = d->proto_conf;
    double want = (double)c->rate * TICK_MS / 1000.0 + s->carry;
    uint64_t n = (uint64_t)want;
    s->carry = want - (double)n;
    for (uint64_t i = 0; i < n; i++) {
        if (c->total && s->made >= (uint64_t)c->total) {
            uv_timer_stop(t);
            return;
        }
        if (c->square && s->made % (uint64_t)c->square == 0) {
            gw_reading lv;
            memset(&lv, 0, sizeof(lv));
            strcpy(lv.metric, "level");
            strcpy(lv.unit, "1");
            lv.value = (s->made / (uint64_t)c->square) % 2 ? 100 : 0;
            gw_core_reading(d->core, d, &lv);
        }
        gw_reading r;
        memset(&r, 0, sizeof(r));
        strcpy(r.metric, "synthetic");
        strcpy(r.unit, "1");
        r.value = (double)s->made++;
        if (gw_core_reading(d->core, d, &r) == GW_EFULL)
            s->made--; /* refused: try it again next tick */
    }
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

static int syn_attach(gw_core *core, gw_device *dev, char *err, size_t errlen)
{
    struct syn *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return GW_ENOMEM;
    }
    s->dev = dev;
    uv_timer_init(gw_core_loop(core), &s->timer);
    s->timer.data = s;
    uv_timer_start(&s->timer, on_tick, TICK_MS, TICK_MS);
    dev->proto_state = s;
    return GW_OK;
}

static void syn_detach(gw_device *dev)
{
    struct syn *s = dev->proto_state;
    if (!s)
        return;
    dev->proto_state = NULL;
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, on_closed);
}

const gw_protocol gw_proto_synthetic = {
    .name = "synthetic",
    .version = "1.0",
    .description = "load generator: readings at a fixed rate, no device",
    .device_keys = syn_keys,
    .device_conf_size = sizeof(struct syn_conf),
    .attach = syn_attach,
    .detach = syn_detach,
};
