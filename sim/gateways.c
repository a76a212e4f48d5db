/* Per-gateway delivery at the platform. A rehearsal against a broker cluster
 * may carry several gateways' uplinks, each with its own item sequence (item
 * ids are <gw>-<seq>), so the verdict counts delivery per gateway: distinct
 * items, duplicates, and holes between the lowest and highest seq seen. The
 * seen-set of a gateway is a bitmap over a window of SIM_GW_WINDOW seqs
 * placed around the first seq that arrived; seqs outside it are counted but
 * not de-duplicated (reported as such). */
#include "sim/expect.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIM_GW_WINDOW (1u << 23) /* seqs per gateway tracked exactly: 1 MiB of bits */

static sim_gw_tally *find(sim_gw_tally **tab, uint32_t *n, const char *gw)
{
    for (uint32_t i = 0; i < *n; i++)
        if (!strcmp((*tab)[i].gw, gw))
            return &(*tab)[i];
    if (*n >= SIM_MAX_GATEWAYS)
        return NULL;
    sim_gw_tally *t = realloc(*tab, (*n + 1) * sizeof **tab);
    if (!t)
        return NULL;
    *tab = t;
    sim_gw_tally *g = &t[(*n)++];
    memset(g, 0, sizeof *g);
    snprintf(g->gw, sizeof g->gw, "%s", gw);
    return g;
}

int sim_gw_note(sim_gw_tally **tab, uint32_t *n, const char *gw, uint64_t seq)
{
    sim_gw_tally *g = find(tab, n, gw);
    if (!g)
        return SIM_ENOMEM;
    if (!g->bits) {
        g->bits = calloc(SIM_GW_WINDOW / 8, 1);
        if (!g->bits)
            return SIM_ENOMEM;
        g->base = seq > SIM_GW_WINDOW / 4 ? seq - SIM_GW_WINDOW / 4 : 0;
        g->lo = g->hi = seq;
    }
    if (seq < g->base || seq - g->base >= SIM_GW_WINDOW) {
        g->items++;
        g->outside++;
        return 1;
    }
    uint64_t b = seq - g->base;
    if (g->bits[b / 8] & (1u << (b % 8))) {
        g->duplicates++;
        return 0;
    }
    g->bits[b / 8] |= (uint8_t)(1u << (b % 8));
    g->items++;
    if (seq < g->lo)
        g->lo = seq;
    if (seq > g->hi)
        g->hi = seq;
    return 1;
}

uint64_t sim_gw_missing(const sim_gw_tally *g)
{
    if (!g->bits)
        return 0;
    uint64_t have = 0;
    for (uint64_t s = g->lo; s <= g->hi; s++) {
        uint64_t b = s - g->base;
        have += (g->bits[b / 8] >> (b % 8)) & 1u;
    }
    return g->hi - g->lo + 1 - have;
}

void sim_gw_free(sim_gw_tally *tab, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        free(tab[i].bits);
    free(tab);
}
