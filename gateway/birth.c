/* Device metadata messages and their publishing. See birth.h. */
#include "gateway/birth.h"

#include "base/log.h"
#include "base/model.h"
#include "gateway/device.h"
#include "gateway/status.h"
#include "gateway/uplink.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEST 32
#define CLEARS_MAX 100000 /* removed devices waiting to be cleared, per destination */
#define BIRTH_BUF 16384   /* one device: 16 metrics and the longest strings fit easily */

struct dest {
    gw_birth *owner;
    struct gw_uplink *u;
    uint32_t bit;  /* in gw_device.meta_pending */
    size_t cursor; /* where the last sweep stopped */
    int dirty;     /* some device may be pending */
    int inventory; /* the inventory is pending */
    char **clears; /* ids whose retained message must be cleared */
    size_t nclears, capclears;
    uint64_t dropped; /* clears not queued: CLEARS_MAX reached or no memory */
};

struct gw_birth {
    char gw[GW_ID_MAX];
    gw_device *const *(*devices)(void *ctx, size_t *n);
    void *ctx;
    struct dest dest[MAX_DEST];
    int ndest;
    char buf[BIRTH_BUF];
};

static int set(const char *s)
{
    return s && *s;
}

void gw_birth_jdev(const gw_device *d, gw_json_dev *j)
{
    j->type = d->type;
    j->site_id = d->conf.about->site_id;
    j->site_name = d->conf.about->site;
    j->division = d->conf.about->division;
    j->address = d->conf.about->site_address;
    j->lon = d->conf.about->lon;
    j->lat = d->conf.about->lat;
    j->has_location = d->conf.about->has_location;
}

static void field(gw_jbuf *b, const char *key, const char *val)
{
    if (!set(val))
        return;
    gw_json_raw(b, ",\"");
    gw_json_raw(b, key);
    gw_json_raw(b, "\":");
    gw_json_str(b, val);
}

int gw_birth_json(gw_jbuf *b, const char *gw, const gw_device *d, int online, int64_t at_ms)
{
    gw_json_raw(b, "{\"v\":1,\"kind\":\"device\",\"gw\":");
    gw_json_str(b, gw);
    gw_json_raw(b, ",\"device\":");
    gw_json_str(b, d->conf.id);
    field(b, "type", d->type);
    field(b, "vendor", d->conf.about->vendor);
    field(b, "model", d->conf.about->model);
    field(b, "profile", d->conf.profile);
    field(b, "protocol", d->conf.protocol);
    const gw_device_about *c = d->conf.about;
    if (set(c->site_id) || set(c->site) || set(c->division) || set(c->site_address) ||
        c->has_location) {
        /* The same members as an item's place, with the id inside. */
        gw_json_raw(b, ",\"site\":{");
        size_t at = b->len;
        field(b, "id", c->site_id);
        field(b, "name", c->site);
        field(b, "division", c->division);
        field(b, "address", c->site_address);
        if (c->has_location) {
            gw_json_raw(b, ",\"lon\":");
            gw_json_num(b, c->lon);
            gw_json_raw(b, ",\"lat\":");
            gw_json_num(b, c->lat);
        }
        if (!b->overflow && b->len > at)
            memmove(b->p + at, b->p + at + 1, b->len - at); /* the first member's comma */
        if (!b->overflow)
            b->len--;
        gw_json_raw(b, "}");
    }
    gw_json_raw(b, ",\"metrics\":[");
    const char *unit, *m;
    for (int i = 0; (m = gw_status_metric_at(d, i, &unit)) != NULL; i++) {
        gw_json_raw(b, i ? ",{\"metric\":" : "{\"metric\":");
        gw_json_str(b, m);
        field(b, "unit", unit);
        gw_json_raw(b, "}");
    }
    gw_json_raw(b, "]");
    if (online >= 0)
        gw_json_raw(b, online ? ",\"online\":true" : ",\"online\":false");
    gw_json_raw(b, ",\"at\":");
    gw_json_time(b, at_ms);
    gw_json_raw(b, "}");
    return b->overflow ? GW_EFULL : (int)b->len;
}

int gw_birth_inventory_json(gw_jbuf *b, const char *gw, gw_device *const *devs, size_t n,
                            int64_t at_ms)
{
    char tmp[32];
    gw_json_raw(b, "{\"v\":1,\"kind\":\"inventory\",\"gw\":");
    gw_json_str(b, gw);
    snprintf(tmp, sizeof(tmp), ",\"count\":%zu", n);
    gw_json_raw(b, tmp);
    gw_json_raw(b, ",\"devices\":[");
    for (size_t i = 0; i < n && !b->overflow; i++) {
        const gw_device *d = devs[i];
        gw_json_raw(b, i ? ",{\"device\":" : "{\"device\":");
        gw_json_str(b, d->conf.id);
        field(b, "type", d->type);
        field(b, "site", d->conf.about->site_id);
        if (d->online >= 0)
            gw_json_raw(b, d->online ? ",\"online\":true}" : ",\"online\":false}");
        else
            gw_json_raw(b, "}");
    }
    gw_json_raw(b, "],\"at\":");
    gw_json_time(b, at_ms);
    gw_json_raw(b, "}");
    return b->overflow ? GW_EFULL : (int)b->len;
}

/* ---- publishing ---- */

static int busy(int rc)
{
    return rc == GW_EFULL || rc == GW_EAGAIN;
}

static int send_inventory(gw_birth *b, struct dest *d)
{
    size_t n;
    gw_device *const *devs = b->devices(b->ctx, &n);
    size_t cap = 256 + n * 160;
    for (;;) {
        char *mem = malloc(cap);
        if (!mem)
            return GW_ENOMEM;
        gw_jbuf j;
        gw_jbuf_init(&j, mem, cap);
        int len = gw_birth_inventory_json(&j, b->gw, devs, n, gw_now_ms());
        if (len == GW_EFULL && cap < ((size_t)64 << 20)) {
            free(mem);
            cap *= 2;
            continue;
        }
        int rc = len < 0 ? len : gw_uplink_publish_meta(d->u, "inventory", mem, (size_t)len);
        free(mem);
        return rc;
    }
}

static void pump(struct dest *d)
{
    gw_birth *b = d->owner;
    if (d->inventory) {
        int rc = send_inventory(b, d);
        if (busy(rc))
            return;
        if (rc)
            GW_LOG_RL(GW_LOG_WARN, 60000, "birth", "inventory not published (%d)", rc);
        d->inventory = 0;
    }
    while (d->nclears) {
        char sub[GW_ID_MAX + 16];
        snprintf(sub, sizeof(sub), "devices/%s", d->clears[d->nclears - 1]);
        if (busy(gw_uplink_publish_meta(d->u, sub, "", 0)))
            return;
        free(d->clears[--d->nclears]);
    }
    if (!d->dirty)
        return;
    size_t n;
    gw_device *const *devs = b->devices(b->ctx, &n);
    for (size_t k = 0; k < n; k++) {
        size_t i = (d->cursor + k) % n;
        gw_device *dev = devs[i];
        if (!(dev->meta_pending & d->bit))
            continue;
        gw_jbuf j;
        gw_jbuf_init(&j, b->buf, sizeof(b->buf));
        int len = gw_birth_json(&j, b->gw, dev, dev->online, gw_now_ms());
        char sub[GW_ID_MAX + 16];
        snprintf(sub, sizeof(sub), "devices/%s", dev->conf.id);
        int rc = len < 0 ? len : gw_uplink_publish_meta(d->u, sub, b->buf, (size_t)len);
        if (busy(rc)) {
            d->cursor = i;
            return;
        }
        if (rc)
            GW_LOG_RL(GW_LOG_WARN, 60000, "birth", "%s: metadata not published (%d)", dev->conf.id,
                      rc);
        dev->meta_pending &= ~d->bit;
    }
    d->dirty = 0;
}

/* The uplink's hook: connected_now means a new session (send everything). */
static void on_meta(void *ctx, struct gw_uplink *u, int connected_now)
{
    struct dest *d = ctx;
    (void)u;
    if (connected_now) {
        size_t n;
        gw_device *const *devs = d->owner->devices(d->owner->ctx, &n);
        for (size_t i = 0; i < n; i++)
            devs[i]->meta_pending |= d->bit;
        d->dirty = d->inventory = 1;
        d->cursor = 0;
    }
    pump(d);
}

gw_birth *gw_birth_new(const char *gw, gw_device *const *(*devices)(void *ctx, size_t *n),
                       void *ctx)
{
    gw_birth *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    gw_strlcpy(b->gw, gw, sizeof(b->gw));
    b->devices = devices;
    b->ctx = ctx;
    return b;
}

int gw_birth_attach(gw_birth *b, struct gw_uplink *u)
{
    if (b->ndest == MAX_DEST)
        return GW_EFULL;
    struct dest *d = &b->dest[b->ndest];
    d->owner = b;
    d->u = u;
    d->bit = 1u << b->ndest++;
    gw_uplink_set_meta(u, on_meta, d);
    return GW_OK;
}

/* Not sent at once: a device coming online and showing its metrics one by one
 * would send four messages in a row. The item that caused the change is
 * delivered next, and its delivery sends the pending births (on_meta). */
void gw_birth_mark(gw_birth *b, gw_device *dev)
{
    dev->meta_pending = ~0u;
    for (int i = 0; b && i < b->ndest; i++)
        b->dest[i].dirty = 1;
}

void gw_birth_gone(gw_birth *b, const char *id)
{
    for (int i = 0; b && i < b->ndest; i++) {
        struct dest *d = &b->dest[i];
        if (d->nclears == d->capclears) {
            size_t cap = d->capclears ? d->capclears * 2 : 16;
            char **g = d->nclears < CLEARS_MAX ? realloc(d->clears, cap * sizeof(*g)) : NULL;
            if (!g) {
                d->dropped++;
                GW_LOG_RL(GW_LOG_WARN, 60000, "birth",
                          "retained metadata of removed device %s not cleared (%llu dropped)", id,
                          (unsigned long long)d->dropped);
                continue;
            }
            d->clears = g;
            d->capclears = cap;
        }
        if ((d->clears[d->nclears] = strdup(id)) != NULL)
            d->nclears++;
        else
            d->dropped++;
    }
}

void gw_birth_inventory(gw_birth *b)
{
    for (int i = 0; b && i < b->ndest; i++)
        b->dest[i].inventory = 1;
    gw_birth_kick(b);
}

void gw_birth_kick(gw_birth *b)
{
    for (int i = 0; b && i < b->ndest; i++) {
        b->dest[i].dirty = 1;
        pump(&b->dest[i]);
    }
}

size_t gw_birth_pending_clears(const gw_birth *b)
{
    size_t n = 0;
    for (int i = 0; b && i < b->ndest; i++)
        n += b->dest[i].nclears;
    return n;
}

void gw_birth_free(gw_birth *b)
{
    if (!b)
        return;
    for (int i = 0; i < b->ndest; i++) {
        for (size_t k = 0; k < b->dest[i].nclears; k++)
            free(b->dest[i].clears[k]);
        free(b->dest[i].clears);
    }
    free(b);
}
