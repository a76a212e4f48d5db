/* Multi-packet reassembly (see reasm.h). Messages live in a small array scanned
 * linearly: max_open is tens to a few hundred, and a scan is cheaper than a hash for
 * that size. Each message keeps one pointer per packet number, allocated with the
 * message (total is bounded by max_packets). */
#include "protocols/reasm.h"

#include <stdlib.h>
#include <string.h>

typedef struct msg {
    char key[GW_REASM_KEY_MAX];
    unsigned total, have;
    size_t bytes;
    int64_t first_ms, last_ms;
    uint8_t **pkt; /* [total]: packet payloads, NULL while missing */
    size_t *len;   /* [total] */
} msg;

struct gw_reasm {
    gw_reasm_limits lim;
    gw_reasm_stats st;
    msg *m; /* [lim.max_open]; key[0] == '\0' marks a free slot */
};

gw_reasm *gw_reasm_new(const gw_reasm_limits *lim)
{
    if (!lim || !lim->max_open || !lim->max_packets || !lim->max_message || !lim->max_total ||
        lim->timeout_ms <= 0)
        return NULL;
    gw_reasm *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->lim = *lim;
    r->m = calloc(lim->max_open, sizeof *r->m);
    if (!r->m) {
        free(r);
        return NULL;
    }
    return r;
}

static void msg_clear(gw_reasm *r, msg *m)
{
    if (!m->key[0])
        return;
    for (unsigned i = 0; i < m->total; i++)
        free(m->pkt[i]);
    free(m->pkt);
    free(m->len);
    r->st.bytes -= m->bytes;
    r->st.open--;
    memset(m, 0, sizeof *m);
}

void gw_reasm_free(gw_reasm *r)
{
    if (!r)
        return;
    for (unsigned i = 0; i < r->lim.max_open; i++)
        msg_clear(r, &r->m[i]);
    free(r->m);
    free(r);
}

static msg *find(const gw_reasm *r, const char *key)
{
    for (unsigned i = 0; i < r->lim.max_open; i++)
        if (r->m[i].key[0] && strcmp(r->m[i].key, key) == 0)
            return &r->m[i];
    return NULL;
}

static msg *start(gw_reasm *r, const char *key, unsigned total, int64_t now_ms)
{
    msg *m = NULL;
    for (unsigned i = 0; i < r->lim.max_open && !m; i++)
        if (!r->m[i].key[0])
            m = &r->m[i];
    if (!m)
        return NULL;
    m->pkt = calloc(total, sizeof *m->pkt);
    m->len = calloc(total, sizeof *m->len);
    if (!m->pkt || !m->len) {
        free(m->pkt);
        free(m->len);
        m->pkt = NULL;
        m->len = NULL;
        return NULL;
    }
    gw_strlcpy(m->key, key, sizeof m->key);
    m->total = total;
    m->first_ms = m->last_ms = now_ms;
    r->st.open++;
    return m;
}

/* Concatenates the packets of a complete message into one buffer. */
static uint8_t *join(const msg *m, size_t *out_len)
{
    uint8_t *b = malloc(m->bytes ? m->bytes : 1);
    if (!b)
        return NULL;
    size_t k = 0;
    for (unsigned i = 0; i < m->total; i++) {
        if (m->len[i])
            memcpy(b + k, m->pkt[i], m->len[i]);
        k += m->len[i];
    }
    *out_len = k;
    return b;
}

int gw_reasm_add(gw_reasm *r, const char *key, unsigned total, unsigned no, const uint8_t *p,
                 size_t n, int64_t now_ms, uint8_t **out, size_t *out_len)
{
    if (out)
        *out = NULL;
    if (out_len)
        *out_len = 0;
    if (!r || !key || !key[0] || strlen(key) >= GW_REASM_KEY_MAX || !out || !out_len || (!p && n))
        return GW_EINVAL;
    if (total == 0 || total > r->lim.max_packets || no == 0 || no > total) {
        r->st.refused++;
        return GW_EINVAL;
    }
    msg *m = find(r, key);
    if (m && (no == 1 && m->pkt[0])) {
        /* A second packet 1: the station started the upload over. */
        msg_clear(r, m);
        r->st.restarted++;
        m = NULL;
    }
    if (m && m->total != total) {
        msg_clear(r, m);
        r->st.refused++;
        return GW_EINVAL;
    }
    if (!m) {
        m = start(r, key, total, now_ms);
        if (!m) {
            r->st.refused++;
            return GW_EFULL;
        }
    }
    if (m->pkt[no - 1]) {
        r->st.duplicates++;
        m->last_ms = now_ms;
        return GW_EAGAIN;
    }
    if (m->bytes + n > r->lim.max_message || r->st.bytes + n > r->lim.max_total) {
        msg_clear(r, m);
        r->st.refused++;
        return GW_EFULL;
    }
    uint8_t *copy = malloc(n ? n : 1);
    if (!copy) {
        msg_clear(r, m);
        r->st.refused++;
        return GW_EFULL;
    }
    if (n)
        memcpy(copy, p, n);
    m->pkt[no - 1] = copy;
    m->len[no - 1] = n;
    m->bytes += n;
    r->st.bytes += n;
    m->have++;
    m->last_ms = now_ms;
    r->st.packets++;
    if (m->have < m->total)
        return GW_EAGAIN;
    uint8_t *b = join(m, out_len);
    msg_clear(r, m);
    if (!b) {
        r->st.refused++;
        return GW_EFULL;
    }
    *out = b;
    r->st.completed++;
    return GW_OK;
}

unsigned gw_reasm_first_missing(const gw_reasm *r, const char *key, unsigned *total)
{
    const msg *m = r && key ? find(r, key) : NULL;
    if (!m)
        return 0;
    if (total)
        *total = m->total;
    for (unsigned i = 0; i < m->total; i++)
        if (!m->pkt[i])
            return i + 1;
    return 0;
}

int gw_reasm_drop(gw_reasm *r, const char *key)
{
    msg *m = r && key ? find(r, key) : NULL;
    if (!m)
        return 0;
    msg_clear(r, m);
    return 1;
}

static int64_t deadline(const gw_reasm *r, const msg *m)
{
    int64_t d = m->last_ms + r->lim.timeout_ms;
    if (r->lim.max_age_ms > 0 && m->first_ms + r->lim.max_age_ms < d)
        d = m->first_ms + r->lim.max_age_ms;
    return d;
}

unsigned gw_reasm_expire(gw_reasm *r, int64_t now_ms, gw_reasm_expired_cb cb, void *ctx)
{
    unsigned n = 0;
    if (!r)
        return 0;
    for (unsigned i = 0; i < r->lim.max_open; i++) {
        msg *m = &r->m[i];
        if (!m->key[0] || now_ms < deadline(r, m))
            continue;
        if (cb)
            cb(ctx, m->key, m->have, m->total);
        msg_clear(r, m);
        r->st.timeouts++;
        n++;
    }
    return n;
}

int64_t gw_reasm_next_deadline(const gw_reasm *r)
{
    int64_t best = INT64_MAX;
    for (unsigned i = 0; r && i < r->lim.max_open; i++)
        if (r->m[i].key[0] && deadline(r, &r->m[i]) < best)
            best = deadline(r, &r->m[i]);
    return best;
}

void gw_reasm_get_stats(const gw_reasm *r, gw_reasm_stats *out)
{
    if (r && out)
        *out = r->st;
}
