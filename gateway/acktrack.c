/* See acktrack.h. The messages in flight are a ring in sending order; the
 * point moves past acknowledged messages at the head and, between messages,
 * past skipped rows (up to the next message still waiting, or to the last id
 * given when none waits). */
#include "gateway/acktrack.h"

#include "base/model.h"

#include <stdlib.h>
#include <string.h>

int gw_acktrack_init(gw_acktrack *t, size_t cap, int64_t point)
{
    memset(t, 0, sizeof(*t));
    t->ring = calloc(cap ? cap : 1, sizeof(*t->ring));
    if (!t->ring)
        return GW_ENOMEM;
    t->cap = cap ? cap : 1;
    t->point = t->given = point;
    return GW_OK;
}

void gw_acktrack_free(gw_acktrack *t)
{
    free(t->ring);
    memset(t, 0, sizeof(*t));
}

static int advance(gw_acktrack *t)
{
    int64_t was = t->point;
    while (t->n && t->ring[t->head].acked) {
        t->head = (t->head + 1) % t->cap;
        t->n--;
    }
    int64_t p = t->n ? t->ring[t->head].first - 1 : t->given;
    if (p > t->point)
        t->point = p;
    return t->point != was;
}

int gw_acktrack_sent(gw_acktrack *t, int64_t first, int64_t last)
{
    if (t->n == t->cap)
        return GW_EFULL;
    gw_acktrack_msg *m = &t->ring[(t->head + t->n) % t->cap];
    m->first = first;
    m->last = last;
    m->acked = 0;
    t->n++;
    if (last > t->given)
        t->given = last;
    return GW_OK;
}

void gw_acktrack_skip(gw_acktrack *t, int64_t upto)
{
    if (upto > t->given)
        t->given = upto;
    advance(t);
}

int gw_acktrack_acked(gw_acktrack *t, int64_t first)
{
    for (size_t i = 0; i < t->n; i++) {
        gw_acktrack_msg *m = &t->ring[(t->head + i) % t->cap];
        if (m->first == first && !m->acked) {
            m->acked = 1;
            return advance(t);
        }
    }
    return 0;
}

void gw_acktrack_reset(gw_acktrack *t)
{
    t->head = t->n = 0;
    t->given = t->point;
}
