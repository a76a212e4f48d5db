/* The modbus-tcp device kind: one listening socket per device on the loop,
 * any number of pipelined requests per read, bounded buffers, faults injected
 * per the scenario, and counters for the stats file. Register values come from
 * the scenario's curves at the scenario time of each request. The first part of
 * this file is the served-device model (sim_mbdev: registers, writes, counters,
 * fault decisions) that the serial kinds in dev_rtu.c share. */
#include "sim/dev_modbus.h"
#include "sim/kind.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define MB_CONN_MAX 32         /* connections per device; more are closed at once */
#define MB_OUT_MAX (64 * 1024) /* unsent bytes per connection before it is closed */
#define MB_LATE_MAX 64         /* delayed answers queued per connection */
#define MB_WRITES_MAX 1024     /* write records kept per device */
#define MB_FC_SLOTS SIM_MB_FC_SLOTS

typedef struct mb_late {
    struct mb_late *next;
    uint64_t due_ms;
    size_t len;
    uint8_t data[SIM_MB_MAX_ADU];
} mb_late;

struct mb_group;
struct mb_conn;

typedef struct mb_dev {
    sim_mbdev m; /* registers, writes, request counters */
    struct mb_group *mg;
    uint16_t port;
    int lstate; /* L_* */
    uv_tcp_t listener;
    uint64_t parks, relisten_failed;
    struct mb_conn *conns; /* owned; freed in their close callbacks */
    int nconns;
    /* transport counters */
    uint64_t bytes_in, bytes_out, connections, refused, bad_frames, wrong_unit;
} mb_dev;

/* Listener states. A device parks its listener (closes it) while it has a
 * connection when the open-file limit cannot hold a listener and a
 * connection for every device (ctx->park_listeners); it listens again when
 * its last connection closes. */
enum { L_NONE = 0, L_OPEN, L_CLOSING, L_PARKED };

typedef struct mb_group {
    sim_group *g;
    sim_ctx *ctx;
    const char *host;
    int stopping;
    sim_regindex ix;
    mb_dev *devs;
    uint32_t ndevs; /* initialised so far */
} mb_group;

typedef struct mb_conn {
    uv_tcp_t tcp;
    uv_timer_t timer; /* fires the head of the late queue */
    int handles;      /* open handles; the struct is freed when it reaches 0 */
    int closing;
    mb_dev *dev;
    struct mb_conn *next, **pprev;
    size_t len;
    size_t out_pending; /* bytes handed to uv_write and not yet written */
    mb_late *late_head, *late_tail;
    int nlate;
    uint8_t buf[2 * SIM_MB_MAX_ADU];
} mb_conn;

typedef struct mb_wreq {
    uv_write_t req;
    mb_conn *conn;
    size_t len;
    uint8_t data[];
} mb_wreq;

/* ---- the served-device model, shared with dev_rtu.c ---- */

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static int window(const sim_fault *f, double t)
{
    return t >= f->from && (f->to < 0 || t < f->to);
}

static const char *fault_key[SIM_F__COUNT] = {"silent",  "late", "exception", "garbage",
                                              "bad_crc", "drop", "truncated"};

typedef struct io_ctx {
    sim_mbdev *d;
    double t;
} io_ctx;

static int lookup(const sim_regindex *ix, int table, uint32_t addr)
{
    if (!ix->index[table] || addr < ix->lo[table] || addr >= ix->lo[table] + ix->span[table])
        return -1;
    return ix->index[table][addr - ix->lo[table]];
}

static int io_read(void *vctx, int table, uint16_t addr, uint16_t count, uint16_t *out)
{
    io_ctx *c = vctx;
    sim_mbdev *d = c->d;
    int last = -1;
    uint16_t words[4] = {0};
    for (uint32_t i = 0; i < count; i++) {
        uint32_t a = (uint32_t)addr + i;
        int ri = lookup(d->ix, table, a);
        if (ri < 0)
            return 2;
        const sim_regdef *r = &d->g->regs[ri];
        if (ri != last) {
            double v = sim_curve_eval(&r->curve, c->t, d->k, &d->cst[ri]);
            if (sim_encode(v * r->scale + r->offset, r->type, &r->order, words) < 0)
                return 4;
            last = ri;
        }
        uint32_t w = a - r->addr;
        out[i] = (d->wmask[ri] & (1u << w)) ? d->wwords[ri][w] : words[w];
    }
    return 0;
}

static void record_write(sim_mbdev *d, double t, int table, uint16_t addr, uint16_t value)
{
    if (d->nwrites == d->capwrites) {
        if (d->capwrites >= MB_WRITES_MAX) {
            d->writes_dropped++;
            return;
        }
        uint32_t nc = d->capwrites ? d->capwrites * 2 : 8;
        sim_mbwrite *nw = realloc(d->writes, nc * sizeof *nw);
        if (!nw) {
            d->writes_dropped++;
            return;
        }
        d->writes = nw;
        d->capwrites = nc;
    }
    d->writes[d->nwrites++] = (sim_mbwrite){t, addr, value, (uint8_t)table};
}

static int io_write(void *vctx, int table, uint16_t addr, uint16_t count, const uint16_t *vals)
{
    io_ctx *c = vctx;
    sim_mbdev *d = c->d;
    /* All or nothing: check every address before changing any. */
    for (uint32_t i = 0; i < count; i++) {
        int ri = lookup(d->ix, table, (uint32_t)addr + i);
        if (ri < 0 || !d->g->regs[ri].writable)
            return 2;
    }
    for (uint32_t i = 0; i < count; i++) {
        uint32_t a = (uint32_t)addr + i;
        int ri = lookup(d->ix, table, a);
        uint32_t w = a - d->g->regs[ri].addr;
        d->wwords[ri][w] = vals[i];
        d->wmask[ri] |= (uint8_t)(1u << w);
        record_write(d, c->t, table, (uint16_t)a, vals[i]);
    }
    return 0;
}

static const sim_regio regio = {io_read, io_write};

int sim_regindex_build(sim_regindex *ix, const sim_group *g)
{
    for (int t = 0; t < SIM_TAB__COUNT; t++) {
        uint32_t lo = 65536, hi = 0;
        for (int i = 0; i < g->nregs; i++) {
            if (g->regs[i].table != t)
                continue;
            uint32_t a = g->regs[i].addr, e = a + (uint32_t)sim_type_regs(g->regs[i].type);
            if (a < lo)
                lo = a;
            if (e > hi)
                hi = e;
        }
        if (hi == 0)
            continue;
        ix->lo[t] = lo;
        ix->span[t] = hi - lo;
        ix->index[t] = malloc(ix->span[t] * sizeof(int16_t));
        if (!ix->index[t])
            return SIM_ENOMEM;
        for (uint32_t a = 0; a < ix->span[t]; a++)
            ix->index[t][a] = -1;
        for (int i = 0; i < g->nregs; i++) {
            if (g->regs[i].table != t)
                continue;
            for (int w = 0; w < sim_type_regs(g->regs[i].type); w++)
                ix->index[t][g->regs[i].addr + w - lo] = (int16_t)i;
        }
    }
    return SIM_OK;
}

void sim_regindex_free(sim_regindex *ix)
{
    for (int t = 0; t < SIM_TAB__COUNT; t++) {
        free(ix->index[t]);
        ix->index[t] = NULL;
    }
}

int sim_mbdev_init(sim_mbdev *d, const sim_group *g, const sim_regindex *ix, uint32_t k)
{
    size_t nr = (size_t)(g->nregs ? g->nregs : 1);
    d->g = g;
    d->ix = ix;
    d->k = k;
    sim_format_id(g->id_tmpl, g->first + k, d->id, sizeof d->id);
    d->wwords = calloc(nr, sizeof *d->wwords);
    d->wmask = calloc(nr, 1);
    d->cst = calloc(nr, sizeof *d->cst);
    if (!d->wwords || !d->wmask || !d->cst)
        return SIM_ENOMEM;
    for (size_t i = 0; i < nr; i++)
        d->cst[i].step = -1;
    return SIM_OK;
}

void sim_mbdev_free(sim_mbdev *d)
{
    free(d->writes);
    free(d->wwords);
    free(d->wmask);
    free(d->cst);
    d->writes = NULL;
    d->wwords = NULL;
    d->wmask = NULL;
    d->cst = NULL;
}

static int every(const sim_fault *f, uint64_t n)
{
    return f->every == 0 || n % f->every == 0;
}

size_t sim_mbdev_serve(sim_mbdev *d, const sim_mb_req *rq, double t, uint8_t *resp, size_t cap,
                       sim_fault_plan *plan)
{
    const sim_group *g = d->g;
    int force = 0;

    memset(plan, 0, sizeof *plan);
    d->requests++;
    d->by_fc[rq->fc < MB_FC_SLOTS ? rq->fc : 0]++;
    for (int i = 0; i < g->nfaults; i++) {
        const sim_fault *f = &g->faults[i];
        if (!window(f, t))
            continue;
        if (f->kind == SIM_F_DROP && every(f, d->requests)) {
            d->faults[SIM_F_DROP]++;
            plan->action = SIM_ACT_DROP;
            return 0;
        }
        if (f->kind == SIM_F_SILENT) {
            d->faults[SIM_F_SILENT]++;
            plan->action = SIM_ACT_SILENT;
            return 0;
        }
    }
    for (int i = 0; i < g->nfaults; i++) {
        const sim_fault *f = &g->faults[i];
        uint16_t a, n;
        if (f->kind != SIM_F_EXCEPTION || force || !window(f, t))
            continue;
        if (f->fc && f->fc != rq->fc)
            continue;
        if (f->addr >= 0 && (!sim_mbtcp_range(rq, &a, &n) || f->addr < a || f->addr >= a + n))
            continue;
        force = f->code;
        d->faults[SIM_F_EXCEPTION]++;
    }
    io_ctx io = {d, t};
    size_t len = sim_mbtcp_serve(rq, &regio, &io, force, resp, cap);
    if (len >= 8 && (resp[7] & 0x80))
        d->exceptions++;
    d->answers++;
    plan->delay_s = -1;
    for (int i = 0; i < g->nfaults; i++) {
        const sim_fault *f = &g->faults[i];
        if (!window(f, t))
            continue;
        if (f->kind == SIM_F_GARBAGE && every(f, d->answers)) {
            plan->garbage = 1;
            d->faults[SIM_F_GARBAGE]++;
        } else if (f->kind == SIM_F_BAD_CRC && d->serial && every(f, d->answers)) {
            plan->bad_crc = 1;
            d->faults[SIM_F_BAD_CRC]++;
        } else if (f->kind == SIM_F_TRUNCATED && every(f, d->answers)) {
            plan->truncated = 1;
            d->faults[SIM_F_TRUNCATED]++;
        } else if (f->kind == SIM_F_LATE && plan->delay_s < 0) {
            plan->delay_s = f->delay_s;
            d->faults[SIM_F_LATE]++;
        }
    }
    return len;
}

void sim_mbdev_broadcast(sim_mbdev *d, const sim_mb_req *rq, double t)
{
    uint8_t resp[SIM_MB_MAX_ADU];
    io_ctx io = {d, t};
    d->requests++;
    d->by_fc[rq->fc < MB_FC_SLOTS ? rq->fc : 0]++;
    sim_mbtcp_serve(rq, &regio, &io, 0, resp, sizeof resp);
}

void sim_mbdev_stats(const sim_mbdev *d, void *obj)
{
    cJSON *o = obj;
    cJSON_AddNumberToObject(o, "requests", (double)d->requests);
    cJSON *fc = cJSON_AddObjectToObject(o, "requests_by_fc");
    for (int i = 0; i < MB_FC_SLOTS; i++) {
        if (!d->by_fc[i])
            continue;
        char key[8];
        snprintf(key, sizeof key, "%d", i);
        cJSON_AddNumberToObject(fc, i ? key : "other", (double)d->by_fc[i]);
    }
    cJSON_AddNumberToObject(o, "answers", (double)d->answers);
    cJSON_AddNumberToObject(o, "exceptions", (double)d->exceptions);
    cJSON_AddNumberToObject(o, "late_dropped", (double)d->late_dropped);
    cJSON *fo = cJSON_AddObjectToObject(o, "faults");
    for (int i = 0; i < SIM_F__COUNT; i++)
        cJSON_AddNumberToObject(fo, fault_key[i], (double)d->faults[i]);
    cJSON *cw = cJSON_AddArrayToObject(o, "coil_writes");
    cJSON *rw = cJSON_AddArrayToObject(o, "register_writes");
    for (uint32_t i = 0; i < d->nwrites; i++) {
        const sim_mbwrite *w = &d->writes[i];
        cJSON *e = cJSON_CreateObject();
        if (!e)
            break;
        cJSON_AddNumberToObject(e, "t", w->t);
        cJSON_AddNumberToObject(e, "addr", w->addr);
        cJSON_AddNumberToObject(e, "value", w->value);
        cJSON_AddItemToArray(w->table == SIM_TAB_COIL ? cw : rw, e);
    }
    cJSON_AddNumberToObject(o, "writes_dropped", (double)d->writes_dropped);
}

/* ---- connections ---- */

static void relisten(mb_dev *d);

static void conn_handle_closed(uv_handle_t *h)
{
    mb_conn *c = h->data;
    if (--c->handles > 0)
        return;
    while (c->late_head) {
        mb_late *l = c->late_head;
        c->late_head = l->next;
        free(l);
    }
    free(c);
}

static void conn_close(mb_conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    if (c->next)
        c->next->pprev = c->pprev;
    *c->pprev = c->next;
    c->dev->nconns--;
    if (c->dev->nconns == 0 && c->dev->lstate == L_PARKED && !c->dev->mg->stopping)
        relisten(c->dev);
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
}

static void on_written(uv_write_t *req, int status)
{
    mb_wreq *w = (mb_wreq *)req;
    w->conn->out_pending -= w->len;
    if (status < 0)
        conn_close(w->conn);
    free(w);
}

/* Sends bytes now, or queues the rest with uv_write; closes a peer that stops
 * reading once MB_OUT_MAX bytes wait. */
static void conn_send(mb_conn *c, const uint8_t *data, size_t len)
{
    size_t off = 0;
    if (c->closing || len == 0)
        return;
    if (c->out_pending == 0) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n == (int)len) {
            c->dev->bytes_out += len;
            return;
        }
        if (n < 0 && n != UV_EAGAIN) {
            conn_close(c);
            return;
        }
        if (n > 0)
            off = (size_t)n;
    }
    if (c->out_pending + (len - off) > MB_OUT_MAX) {
        conn_close(c);
        return;
    }
    mb_wreq *w = malloc(sizeof *w + (len - off));
    if (!w) {
        conn_close(c);
        return;
    }
    w->conn = c;
    w->len = len - off;
    memcpy(w->data, data + off, len - off);
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)w->len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written) < 0) {
        free(w);
        conn_close(c);
        return;
    }
    c->out_pending += w->len;
    c->dev->bytes_out += len;
}

static void late_fire(uv_timer_t *t);

static void arm_late(mb_conn *c)
{
    if (!c->late_head)
        return;
    uint64_t now = uv_now(c->tcp.loop);
    uint64_t due = c->late_head->due_ms;
    uv_timer_start(&c->timer, late_fire, due > now ? due - now : 0, 0);
}

static void late_fire(uv_timer_t *t)
{
    mb_conn *c = t->data;
    uint64_t now = uv_now(t->loop);
    while (c->late_head && c->late_head->due_ms <= now && !c->closing) {
        mb_late *l = c->late_head;
        c->late_head = l->next;
        if (!c->late_head)
            c->late_tail = NULL;
        c->nlate--;
        conn_send(c, l->data, l->len);
        free(l);
    }
    if (!c->closing)
        arm_late(c);
}

static void queue_late(mb_conn *c, const uint8_t *data, size_t len, double delay_s)
{
    mb_late *l;
    if (c->nlate >= MB_LATE_MAX || !(l = malloc(sizeof *l))) {
        c->dev->m.late_dropped++;
        return;
    }
    l->next = NULL;
    l->due_ms = uv_now(c->tcp.loop) + (uint64_t)(delay_s * 1000 + 0.5);
    l->len = len;
    memcpy(l->data, data, len);
    /* Delays can differ between overlapping windows: keep the queue in due order. */
    mb_late **pp = &c->late_head;
    while (*pp && (*pp)->due_ms <= l->due_ms)
        pp = &(*pp)->next;
    l->next = *pp;
    *pp = l;
    if (!l->next)
        c->late_tail = l;
    c->nlate++;
    arm_late(c);
}

/* One complete request: count it, apply faults, answer. */
static void handle(mb_conn *c, const sim_mb_req *rq, double t)
{
    mb_dev *d = c->dev;
    const sim_group *g = d->mg->g;
    uint8_t resp[SIM_MB_MAX_ADU];
    sim_fault_plan plan;

    if (g->unit != SIM_UNIT_ANY && rq->unit != g->unit) {
        /* Like a device on a bus that is not addressed: no answer. */
        d->m.requests++;
        d->m.by_fc[rq->fc < MB_FC_SLOTS ? rq->fc : 0]++;
        d->wrong_unit++;
        return;
    }
    size_t len = sim_mbdev_serve(&d->m, rq, t, resp, sizeof resp, &plan);
    if (plan.action == SIM_ACT_DROP) {
        conn_close(c);
        return;
    }
    if (plan.action != SIM_ACT_ANSWER || len == 0)
        return;
    if (plan.garbage) {
        /* Same length, random bytes, and a protocol id that cannot be 0:
         * no client can mistake it for an answer. */
        for (size_t j = 0; j < len; j++)
            resp[j] = (uint8_t)rng();
        resp[2] |= 0x80;
    }
    if (plan.truncated)
        len /= 2;
    if (plan.delay_s > 0)
        queue_late(c, resp, len, plan.delay_s);
    else
        conn_send(c, resp, len);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    mb_conn *c = h->data;
    buf->base = (char *)c->buf + c->len;
    buf->len = sizeof c->buf - c->len;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    mb_conn *c = s->data;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    if (nread == 0 || c->closing)
        return;
    c->dev->bytes_in += (uint64_t)nread;
    c->len += (size_t)nread;
    double t = sim_now(c->dev->mg->ctx);
    size_t off = 0;
    while (!c->closing) {
        sim_mb_req rq;
        int n = sim_mbtcp_frame(c->buf + off, c->len - off, &rq);
        if (n < 0) {
            c->dev->bad_frames++;
            conn_close(c);
            return;
        }
        if (n == 0)
            break;
        handle(c, &rq, t);
        off += (size_t)n;
    }
    if (c->closing)
        return;
    /* What stays is shorter than one frame (<= 260 bytes), so the buffer
     * always has room for the rest of it. */
    memmove(c->buf, c->buf + off, c->len - off);
    c->len -= off;
}

static void listener_closed(uv_handle_t *h)
{
    mb_dev *d = h->data;
    if (d->mg->stopping) {
        d->lstate = L_NONE;
        return;
    }
    d->lstate = L_PARKED;
    if (d->nconns == 0)
        relisten(d);
}

static void park(mb_dev *d)
{
    d->lstate = L_CLOSING;
    d->parks++;
    uv_close((uv_handle_t *)&d->listener, listener_closed);
}

static int dev_listen(mb_dev *d);

static void relisten(mb_dev *d)
{
    uv_tcp_init(d->mg->ctx->loop, &d->listener);
    d->listener.data = d;
    d->lstate = L_OPEN;
    int rc = dev_listen(d);
    if (rc < 0) {
        /* Stays parked: retrying from here could spin. Counted in the stats. */
        if (d->relisten_failed++ == 0)
            fprintf(stderr, "sim: %s: cannot listen again on port %u: %s\n", d->m.id, d->port,
                    uv_strerror(rc));
        d->lstate = L_CLOSING;
        uv_close((uv_handle_t *)&d->listener, NULL);
        d->lstate = L_NONE;
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    mb_dev *d = server->data;
    if (status < 0)
        return; /* EMFILE and friends: libuv already shed the connection */
    mb_conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    uv_tcp_init(server->loop, &c->tcp);
    uv_timer_init(server->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles = 2;
    c->dev = d;
    c->next = d->conns;
    if (d->conns)
        d->conns->pprev = &c->next;
    c->pprev = &d->conns;
    d->conns = c;
    d->nconns++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    if (d->nconns > MB_CONN_MAX) {
        d->refused++;
        conn_close(c);
        return;
    }
    d->connections++;
    if (d->mg->ctx->park_listeners && d->lstate == L_OPEN)
        park(d);
    uv_tcp_nodelay(&c->tcp, 1);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
        conn_close(c);
}

/* ---- the kind ---- */

static int dev_listen(mb_dev *d)
{
    const char *host = d->mg->host;
    struct sockaddr_storage ss;
    int rc;
    if (strchr(host, ':'))
        rc = uv_ip6_addr(host, d->port, (struct sockaddr_in6 *)&ss);
    else
        rc = uv_ip4_addr(host, d->port, (struct sockaddr_in *)&ss);
    if (rc < 0)
        return rc;
    if ((rc = uv_tcp_bind(&d->listener, (const struct sockaddr *)&ss, 0)) < 0)
        return rc;
    return uv_listen((uv_stream_t *)&d->listener, 128, on_connection);
}

static int mb_start(sim_ctx *ctx, sim_group *g)
{
    if (g->nregs > 32000) {
        fprintf(stderr, "sim: group line %d: too many registers\n", g->line);
        return SIM_EINVAL;
    }
    mb_group *mg = calloc(1, sizeof *mg);
    if (!mg)
        return SIM_ENOMEM;
    g->kstate = mg;
    mg->g = g;
    mg->ctx = ctx;
    mg->devs = calloc(g->count, sizeof *mg->devs);
    if (!mg->devs || sim_regindex_build(&mg->ix, g) != SIM_OK)
        return SIM_ENOMEM;
    const char *host = g->host[0] ? g->host : ctx->bind;
    mg->host = host;
    for (uint32_t k = 0; k < g->count; k++) {
        mb_dev *d = &mg->devs[k];
        d->mg = mg;
        d->port = (uint16_t)(g->port + k);
        mg->ndevs = k + 1;
        if (sim_mbdev_init(&d->m, g, &mg->ix, k) != SIM_OK)
            return SIM_ENOMEM;
        uv_tcp_init(ctx->loop, &d->listener);
        d->listener.data = d;
        d->lstate = L_OPEN;
        int rc = dev_listen(d);
        if (rc < 0) {
            fprintf(stderr, "sim: %s: cannot listen on %s:%u: %s\n", d->m.id, host, d->port,
                    uv_strerror(rc));
            return SIM_ERR;
        }
    }
    return SIM_OK;
}

static void mb_stop(sim_ctx *ctx, sim_group *g)
{
    mb_group *mg = g->kstate;
    if (!mg)
        return;
    mg->stopping = 1;
    for (uint32_t k = 0; k < mg->ndevs; k++) {
        mb_dev *d = &mg->devs[k];
        while (d->conns)
            conn_close(d->conns);
        if (d->lstate == L_OPEN) {
            d->lstate = L_CLOSING;
            uv_close((uv_handle_t *)&d->listener, listener_closed);
        }
    }
}

static void mb_destroy(sim_ctx *ctx, sim_group *g)
{
    mb_group *mg = g->kstate;
    if (!mg)
        return;
    for (uint32_t k = 0; k < mg->ndevs; k++)
        sim_mbdev_free(&mg->devs[k].m);
    sim_regindex_free(&mg->ix);
    free(mg->devs);
    free(mg);
    g->kstate = NULL;
}

static void mb_stats(sim_ctx *ctx, sim_group *g, void *arr)
{
    mb_group *mg = g->kstate;
    if (!mg)
        return;
    for (uint32_t k = 0; k < mg->ndevs; k++) {
        mb_dev *d = &mg->devs[k];
        cJSON *o = cJSON_CreateObject();
        if (!o)
            return;
        cJSON_AddStringToObject(o, "id", d->m.id);
        cJSON_AddStringToObject(o, "protocol", g->protocol);
        cJSON_AddNumberToObject(o, "port", d->port);
        cJSON_AddNumberToObject(o, "unit", g->unit);
        sim_mbdev_stats(&d->m, o);
        cJSON_AddNumberToObject(o, "bytes_in", (double)d->bytes_in);
        cJSON_AddNumberToObject(o, "bytes_out", (double)d->bytes_out);
        cJSON_AddNumberToObject(o, "connections", (double)d->connections);
        cJSON_AddNumberToObject(o, "connections_open", d->nconns);
        cJSON_AddNumberToObject(o, "connections_refused", (double)d->refused);
        cJSON_AddNumberToObject(o, "bad_frames", (double)d->bad_frames);
        cJSON_AddNumberToObject(o, "wrong_unit", (double)d->wrong_unit);
        if (d->parks || d->relisten_failed) {
            cJSON_AddNumberToObject(o, "listener_parks", (double)d->parks);
            cJSON_AddNumberToObject(o, "relisten_failed", (double)d->relisten_failed);
        }
        cJSON_AddItemToArray(arr, o);
    }
}

const sim_kind sim_kind_modbus_tcp = {
    .name = "modbus-tcp",
    .start = mb_start,
    .stop = mb_stop,
    .stats = mb_stats,
    .destroy = mb_destroy,
};
