/* Page-level outbox salvage: see salvage.h. The file is walked in three
 * passes, each visiting a page at most once: the freelist (pages to skip),
 * the b-trees named in sqlite_schema (which leaf belongs to which lane, and
 * which pages are other tables' or interior pages), then every remaining page
 * whose type byte says table leaf. Memory: two page buffers, one payload
 * buffer of at most GW_SALVAGE_MAX_PAYLOAD and 9 bytes per page of the file. */
#include "gateway/salvage.h"

#include "base/model.h"
#include "gateway/outbox.h"

#include <stdlib.h>
#include <string.h>

enum { O_UNKNOWN, O_PRIO, O_TELE, O_FREE, O_OTHER, O_QUEUED };
enum { T_INTERIOR = 0x05, T_LEAF = 0x0D };
#define MAX_COLS 8

struct sv {
    const gw_salvage_io *io;
    gw_salvage_stats *st;
    uint32_t ps, usable, npages;
    uint8_t *own;   /* per page: O_* */
    uint32_t *mark; /* per page: last overflow chain (or queue slot) that used it */
    uint32_t chain; /* current overflow chain's mark */
    uint8_t *page, *ovfl, *pay;
    size_t paycap;
    uint32_t root[GW_LANES];
    uint32_t other[16]; /* roots of the other tables (state, meta, replay, ...) */
    int nother;
};

static uint32_t be(const uint8_t *p, int n)
{
    uint32_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* A SQLite varint from p[0..n): returns the bytes used, 0 when truncated. */
static size_t varint(const uint8_t *p, size_t n, uint64_t *v)
{
    uint64_t x = 0;
    for (size_t i = 0; i < 9; i++) {
        if (i >= n)
            return 0;
        if (i == 8) {
            *v = x << 8 | p[i];
            return 9;
        }
        x = x << 7 | (p[i] & 0x7f);
        if (!(p[i] & 0x80)) {
            *v = x;
            return i + 1;
        }
    }
    return 0;
}

static int read_page(struct sv *v, uint32_t pg, uint8_t *buf)
{
    if (pg < 1 || pg > v->npages)
        return -1;
    return v->io->read(v->io->ctx, (uint64_t)(pg - 1) * v->ps, buf, v->ps);
}

/* Where the b-tree header of page pg starts (page 1 holds the file header). */
static uint32_t hdr_at(uint32_t pg)
{
    return pg == 1 ? 100 : 0;
}

/* ---- records ---- */

struct col {
    uint64_t type;
    size_t off, len; /* within the record */
};

static size_t serial_len(uint64_t t)
{
    static const uint8_t fixed[12] = {0, 1, 2, 3, 4, 6, 8, 8, 0, 0, 0, 0};
    return t < 12 ? fixed[t] : (size_t)((t - 12) / 2);
}

static int is_int(uint64_t t)
{
    return (t >= 1 && t <= 6) || t == 8 || t == 9;
}

static int64_t int_val(const uint8_t *r, const struct col *c)
{
    if (c->type == 8 || c->type == 9)
        return (int64_t)c->type - 8;
    uint64_t x = r[c->off] & 0x80 ? ~(uint64_t)0 : 0; /* sign extension */
    for (size_t i = 0; i < c->len; i++)
        x = x << 8 | r[c->off + i];
    return (int64_t)x;
}

/* Splits a record into at most MAX_COLS columns; returns the count, or -1
 * when the header or a column does not fit the record exactly. */
static int record(const uint8_t *r, size_t n, struct col *c)
{
    uint64_t hlen;
    size_t k = varint(r, n, &hlen);
    if (!k || hlen < k || hlen > n)
        return -1;
    size_t at = k, body = (size_t)hlen;
    int cols = 0;
    while (at < hlen) {
        uint64_t t;
        size_t u = varint(r + at, (size_t)hlen - at, &t);
        if (!u || cols == MAX_COLS || t == 10 || t == 11 || t > 2 * (uint64_t)n + 13)
            return -1;
        at += u;
        size_t len = serial_len(t);
        if (len > n - body)
            return -1;
        c[cols].type = t;
        c[cols].off = body;
        c[cols].len = len;
        body += len;
        cols++;
    }
    return body == n ? cols : -1;
}

/* An outbox row: (id: NULL, the rowid alias) seq, kind, len, payload BLOB,
 * with len the payload's size and kind one the gateway writes. */
static int outbox_row(const uint8_t *r, size_t n, gw_salvage_row *row)
{
    struct col c[MAX_COLS];
    if (record(r, n, c) != 5 || c[0].type != 0 || !is_int(c[1].type) || !is_int(c[2].type) ||
        !is_int(c[3].type))
        return -1;
    int blob = c[4].type >= 12 && c[4].type % 2 == 0;
    if (!blob && c[4].type != 0)
        return -1;
    int64_t seq = int_val(r, &c[1]), kind = int_val(r, &c[2]), len = int_val(r, &c[3]);
    if (seq < 0 || kind < GW_KIND_READING || kind > GW_KIND_LAST || len != (int64_t)c[4].len)
        return -1;
    row->seq = seq;
    row->kind = (int)kind;
    row->payload = r + c[4].off;
    row->len = c[4].len;
    return 0;
}

/* ---- cells ---- */

/* The payload of the table-leaf cell at off in page, overflow pages followed
 * (each must be a page no tree claims, used once in the chain). Returns 0
 * with the payload in *out (v->pay) and its size in *len, -1 when something
 * does not fit, -2 when out of memory. */
static int leaf_cell(struct sv *v, const uint8_t *page, uint32_t off, int64_t *rowid,
                     const uint8_t **out, size_t *len)
{
    const uint8_t *p = page + off;
    size_t n = v->usable - off;
    uint64_t plen, rid;
    size_t k = varint(p, n, &plen);
    if (!k)
        return -1;
    p += k, n -= k;
    if (!(k = varint(p, n, &rid)))
        return -1;
    p += k, n -= k;
    if (plen > GW_SALVAGE_MAX_PAYLOAD)
        return -1;
    size_t u = v->usable, x = u - 35, m = (u - 12) * 32 / 255 - 23, local = (size_t)plen;
    if (plen > x) {
        size_t kk = m + ((size_t)plen - m) % (u - 4);
        local = kk <= x ? kk : m;
    }
    if (local > n || (local < plen && n - local < 4))
        return -1;
    if (plen > v->paycap) {
        uint8_t *b = realloc(v->pay, (size_t)plen);
        if (!b)
            return -2;
        v->pay = b;
        v->paycap = (size_t)plen;
    }
    memcpy(v->pay, p, local);
    size_t have = local;
    if (have < plen) {
        uint32_t next = be(p + local, 4);
        if (++v->chain == 0) { /* wrapped: forget every earlier chain */
            memset(v->mark, 0, (size_t)(v->npages + 1) * sizeof(*v->mark));
            v->chain = 1;
        }
        while (have < plen) {
            if (next < 2 || next > v->npages || v->own[next] != O_UNKNOWN ||
                v->mark[next] == v->chain || read_page(v, next, v->ovfl))
                return -1;
            v->mark[next] = v->chain;
            size_t take = plen - have < u - 4 ? (size_t)plen - have : u - 4;
            memcpy(v->pay + have, v->ovfl + 4, take);
            have += take;
            next = be(v->ovfl, 4);
        }
    }
    *rowid = (int64_t)rid;
    *out = v->pay;
    *len = (size_t)plen;
    return 0;
}

/* The cell offsets of a b-tree page: returns the count (0 when the header
 * does not fit), with *first the byte where the pointer array starts. */
static unsigned cells(struct sv *v, const uint8_t *page, uint32_t pg, uint32_t *first)
{
    uint32_t h = hdr_at(pg), hl = page[h] == T_INTERIOR ? 12 : 8;
    unsigned n = be(page + h + 3, 2);
    if (h + hl + 2u * n > v->usable)
        return 0;
    *first = h + hl;
    return n;
}

/* The i-th cell's offset, or 0 when it points outside the cell area. */
static uint32_t cell_at(struct sv *v, const uint8_t *page, uint32_t first, unsigned n, unsigned i)
{
    uint32_t off = be(page + first + 2 * i, 2);
    return off >= first + 2 * n && off < v->usable ? off : 0;
}

/* ---- passes ---- */

/* Marks the freelist: trunk pages chain, each listing leaf pages. */
static void freelist(struct sv *v, uint32_t trunk)
{
    while (trunk >= 2 && trunk <= v->npages && v->own[trunk] == O_UNKNOWN &&
           !read_page(v, trunk, v->page)) {
        v->own[trunk] = O_FREE;
        v->st->free_pages++;
        uint32_t n = be(v->page + 4, 4);
        if (n > v->usable / 4 - 2)
            n = v->usable / 4 - 2;
        for (uint32_t i = 0; i < n; i++) {
            uint32_t pg = be(v->page + 8 + 4 * i, 4);
            if (pg >= 2 && pg <= v->npages && v->own[pg] == O_UNKNOWN) {
                v->own[pg] = O_FREE;
                v->st->free_pages++;
            }
        }
        trunk = be(v->page, 4);
    }
}

/* Reads the table roots named in one sqlite_schema leaf. */
static void schema_leaf(struct sv *v, const uint8_t *page, uint32_t pg)
{
    static const char *const name[GW_LANES] = {"outbox_prio", "outbox_tele"};
    uint32_t first;
    unsigned n = cells(v, page, pg, &first);
    for (unsigned i = 0; i < n; i++) {
        uint32_t off = cell_at(v, page, first, n, i);
        int64_t rid;
        const uint8_t *r;
        size_t len;
        struct col c[MAX_COLS];
        if (!off || leaf_cell(v, page, off, &rid, &r, &len) || record(r, len, c) != 5 ||
            !is_int(c[3].type))
            continue;
        int64_t root = int_val(r, &c[3]);
        if (root < 2 || root > v->npages)
            continue;
        int lane = -1;
        for (int l = 0; l < GW_LANES; l++)
            if (c[1].type == 13 + 2 * strlen(name[l]) &&
                !memcmp(r + c[1].off, name[l], strlen(name[l])))
                lane = l;
        if (lane >= 0 && !v->root[lane]) {
            v->root[lane] = (uint32_t)root;
            v->st->roots_found++;
        } else if (lane < 0 && v->nother < (int)(sizeof(v->other) / sizeof(v->other[0]))) {
            v->other[v->nother++] = (uint32_t)root; /* indexes too: harmless */
        }
    }
}

static int expired(struct sv *v)
{
    if (v->io->expired && v->io->expired(v->io->ctx)) {
        v->st->stopped = 1;
        return 1;
    }
    return 0;
}

/* Walks the b-tree rooted at root breadth first, marking its leaves owner
 * and its interior pages O_OTHER; queue has room for every page, and a page
 * is queued only while unclaimed, so the walk ends. With owner O_OTHER and
 * root 1 it reads sqlite_schema. */
static void walk(struct sv *v, uint32_t root, uint8_t owner, uint32_t *queue)
{
    size_t head = 0, tail = 0;
    if (root < 1 || root > v->npages || v->own[root] != O_UNKNOWN)
        return;
    v->own[root] = O_QUEUED;
    queue[tail++] = root;
    while (head < tail) {
        if ((head & 63) == 63 && expired(v))
            return;
        uint32_t pg = queue[head++];
        v->own[pg] = O_UNKNOWN; /* until its type is known */
        if (read_page(v, pg, v->page))
            continue;
        uint8_t type = v->page[hdr_at(pg)];
        if (type == T_LEAF) {
            v->own[pg] = owner;
            if (pg == 1 || root == 1)
                schema_leaf(v, v->page, pg);
            continue;
        }
        if (type != T_INTERIOR)
            continue;
        v->own[pg] = O_OTHER;
        uint32_t first;
        unsigned n = cells(v, v->page, pg, &first);
        for (unsigned i = 0; i <= n; i++) {
            uint32_t child;
            if (i == n) {
                child = be(v->page + hdr_at(pg) + 8, 4); /* the right-most pointer */
            } else {
                uint32_t off = cell_at(v, v->page, first, n, i);
                if (!off || off + 4 > v->usable)
                    continue;
                child = be(v->page + off, 4);
            }
            if (child >= 2 && child <= v->npages && v->own[child] == O_UNKNOWN) {
                v->own[child] = O_QUEUED;
                queue[tail++] = child;
            }
        }
    }
}

/* Hands the outbox rows of one table-leaf page to the caller. */
static int scan_leaf(struct sv *v, uint32_t pg)
{
    uint32_t first;
    unsigned n = cells(v, v->page, pg, &first);
    v->st->leaves++;
    for (unsigned i = 0; i < n; i++) {
        uint32_t off = cell_at(v, v->page, first, n, i);
        gw_salvage_row row;
        const uint8_t *r;
        size_t len;
        int rc = off ? leaf_cell(v, v->page, off, &row.id, &r, &len) : -1;
        if (rc == -2)
            return GW_ENOMEM;
        if (rc || row.id <= 0 || outbox_row(r, len, &row)) {
            v->st->bad_cells++;
            continue;
        }
        row.from_tree = v->own[pg] == O_PRIO || v->own[pg] == O_TELE;
        /* Only a reading may go to telemetry; an orphan leaf goes by kind. */
        row.lane =
            v->own[pg] == O_PRIO || row.kind != GW_KIND_READING ? GW_LANE_PRIO : GW_LANE_TELE;
        v->st->rows++;
        if (v->io->row(v->io->ctx, &row)) {
            v->st->stopped = 1;
            return GW_OK;
        }
    }
    return GW_OK;
}

int gw_salvage_pages(const gw_salvage_io *io, gw_salvage_stats *st)
{
    struct sv v = {.io = io, .st = st};
    memset(st, 0, sizeof(*st));
    uint8_t h[100];
    uint32_t trunk = 0;
    v.ps = 4096;
    v.usable = 4096;
    if (io->size >= sizeof(h) && !io->read(io->ctx, 0, h, sizeof(h)) &&
        !memcmp(h, "SQLite format 3", 16)) {
        uint32_t ps = be(h + 16, 2);
        ps = ps == 1 ? 65536 : ps;
        if (ps >= 512 && ps <= 65536 && !(ps & (ps - 1)) && ps - h[20] >= 480) {
            st->header_ok = 1;
            v.ps = ps;
            v.usable = ps - h[20];
            trunk = be(h + 32, 4);
        }
    }
    st->page_size = v.ps;
    uint64_t np = io->size / v.ps;
    if (np < 1)
        return GW_EMALFORMED;
    v.npages = np > GW_SALVAGE_MAX_PAGES ? GW_SALVAGE_MAX_PAGES : (uint32_t)np;
    st->pages = v.npages;
    int rc = GW_ENOMEM;
    uint32_t *queue = NULL;
    v.own = calloc((size_t)v.npages + 1, 1);
    v.mark = calloc((size_t)v.npages + 1, sizeof(*v.mark));
    v.page = malloc(v.ps);
    v.ovfl = malloc(v.ps);
    v.pay = malloc(v.ps);
    v.paycap = v.ps;
    queue = malloc(((size_t)v.npages + 1) * sizeof(*queue));
    if (!v.own || !v.mark || !v.page || !v.ovfl || !v.pay || !queue)
        goto done;
    rc = GW_OK;
    if (st->header_ok) {
        freelist(&v, trunk);
        walk(&v, 1, O_OTHER, queue); /* sqlite_schema: finds the lanes' roots */
        for (int l = 0; l < GW_LANES; l++)
            if (v.root[l])
                walk(&v, v.root[l], l == GW_LANE_PRIO ? O_PRIO : O_TELE, queue);
        for (int i = 0; i < v.nother; i++)
            walk(&v, v.other[i], O_OTHER, queue);
    }
    for (uint32_t pg = 2; pg <= v.npages && rc == GW_OK && !st->stopped; pg++) {
        if ((pg & 63) == 0 && expired(&v))
            break;
        uint8_t o = v.own[pg];
        if (o == O_FREE || o == O_OTHER || read_page(&v, pg, v.page) || v.page[0] != T_LEAF)
            continue;
        rc = scan_leaf(&v, pg);
    }
done:
    free(queue);
    free(v.own);
    free(v.mark);
    free(v.page);
    free(v.ovfl);
    free(v.pay);
    return rc;
}
