/* The stream listener (see stream_listener.h for the contract).
 *
 * Connections sit on two lists in accept order: unauthenticated ones (the
 * eviction candidates, oldest first) and authenticated ones. Each also sits in
 * a small hash of source addresses, so the per-source limit costs a walk of
 * one bucket. One uv_timer per connection runs the auth window, then the idle
 * timeout; only an accepted frame restarts it. */
#include "protocols/stream_listener.h"

#include "base/log.h"
#include "base/netaddr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SRC_BUCKETS 1024
#define DEFAULT_MAX_PENDING 16
#define REPLY_MAX 4096

struct gw_slc {
    gw_sl *sl;
    gw_slc *prev, *next;         /* the unauthenticated or the authenticated list */
    gw_slc *src_prev, *src_next; /* the source-address bucket */
    uv_tcp_t tcp;
    uv_timer_t timer; /* auth window, then idle */
    uv_shutdown_t shut;
    int refs;     /* open handles + replies waiting + a shutdown in flight */
    int closing;  /* close requested: no reads, no hooks */
    int shutting; /* closing after queued writes */
    int authed;
    int pending; /* replies waiting for the outbox */
    int paused;  /* reading stopped for back-pressure */
    unsigned bucket;
    uint64_t id;
    struct sockaddr_storage addr;
    char peer[64];
    void *data; /* protocol state, inside this allocation */
    size_t len;
    uint8_t buf[];
};

typedef struct conn_list {
    gw_slc *head, *tail;
} conn_list;

struct gw_sl {
    gw_core *core;
    gw_sl_conf conf;
    const gw_sl_proto *proto;
    void *ctx;
    size_t bufsize, data_off;
    uv_tcp_t tcp;
    int refs; /* the owner until gw_sl_stop, the TCP handle, connections, replies */
    int stopping;
    uint64_t ids;
    conn_list unauth, authed;
    gw_slc *src[SRC_BUCKETS];
    gw_sl_stats st;
    gw_sl *list_next; /* every listener of the process, for gw_sl_totals */
};

/* Counters of listeners already stopped, and the running ones. */
static gw_sl_stats retired;
static gw_sl *running;

typedef struct sl_write {
    uv_write_t req;
    size_t len;
    char data[];
} sl_write;

typedef struct sl_reply {
    gw_slc *c;
    size_t len;
    char data[];
} sl_reply;

static void list_add(conn_list *l, gw_slc *c)
{
    c->next = NULL;
    c->prev = l->tail;
    if (l->tail)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
}

static void list_del(conn_list *l, gw_slc *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        l->tail = c->prev;
    c->prev = c->next = NULL;
}

/* ---- source addresses ---- */

static size_t addr_key(const struct sockaddr_storage *ss, const uint8_t **p)
{
    if (ss->ss_family == AF_INET6) {
        *p = (const uint8_t *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
        return 16;
    }
    *p = (const uint8_t *)&((const struct sockaddr_in *)ss)->sin_addr;
    return 4;
}

static unsigned addr_bucket(const struct sockaddr_storage *ss)
{
    const uint8_t *p;
    size_t n = addr_key(ss, &p);
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h % SRC_BUCKETS;
}

static int same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    const uint8_t *p, *q;
    if (a->ss_family != b->ss_family)
        return 0;
    size_t n = addr_key(a, &p);
    addr_key(b, &q);
    return memcmp(p, q, n) == 0;
}

static size_t source_count(gw_sl *sl, const struct sockaddr_storage *ss, unsigned bucket)
{
    size_t n = 0;
    for (gw_slc *c = sl->src[bucket]; c; c = c->src_next)
        n += same_addr(&c->addr, ss);
    return n;
}

/* ---- references and close ---- */

static void sl_unref(gw_sl *sl)
{
    if (--sl->refs > 0)
        return;
    free(sl);
}

static void conn_unref(gw_slc *c)
{
    if (--c->refs > 0)
        return;
    gw_sl *sl = c->sl;
    free(c);
    sl_unref(sl);
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    conn_unref(h->data);
}

/* Takes c off the lists and closes its handles; the memory goes with the last
 * reference. Calls on_close while the listener runs. */
static void conn_close(gw_slc *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    gw_sl *sl = c->sl;
    list_del(c->authed ? &sl->authed : &sl->unauth, c);
    if (c->src_prev)
        c->src_prev->src_next = c->src_next;
    else
        sl->src[c->bucket] = c->src_next;
    if (c->src_next)
        c->src_next->src_prev = c->src_prev;
    sl->st.open--;
    if (!c->authed)
        sl->st.unauth--;
    if (sl->proto->on_close)
        sl->proto->on_close(sl->ctx, c);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
}

static void on_shutdown(uv_shutdown_t *r, int status)
{
    gw_slc *c = r->data;
    conn_close(c);
    conn_unref(c);
}

void gw_sl_close(gw_slc *c, int after_writes)
{
    if (c->closing || c->shutting)
        return;
    if (after_writes) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->shut.data = c;
        if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, on_shutdown) == 0) {
            c->refs++;
            c->shutting = 1; /* no more reads or frames; closed from on_shutdown */
            return;
        }
    }
    conn_close(c);
}

/* ---- writes ---- */

static void on_written(uv_write_t *w, int status)
{
    if (status < 0 && status != UV_ECANCELED)
        GW_LOG_RL(GW_LOG_INFO, 10000, "listener", "reply write failed: %s", uv_strerror(status));
    free(w);
}

int gw_sl_send(gw_slc *c, const void *p, size_t n)
{
    if (c->closing || c->shutting)
        return GW_EAGAIN;
    if (n == 0 || n > REPLY_MAX)
        return GW_EINVAL;
    sl_write *w = malloc(sizeof(*w) + n);
    if (!w) {
        GW_LOG_RL(GW_LOG_WARN, 10000, c->sl->proto->module, "out of memory for a reply%s", "");
        return GW_ENOMEM;
    }
    memcpy(w->data, p, n);
    w->len = n;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written);
    if (rc) {
        GW_LOG_RL(GW_LOG_INFO, 10000, c->sl->proto->module, "reply not sent: %s", uv_strerror(rc));
        free(w);
        return GW_ERR;
    }
    return GW_OK;
}

static void process(gw_slc *c);

static void on_flushed(void *ctx, int status)
{
    sl_reply *r = ctx;
    gw_slc *c = r->c;
    if (status == 0) {
        if (gw_sl_send(c, r->data, r->len) == GW_OK)
            c->sl->st.replies++;
    } else
        GW_LOG_RL(GW_LOG_WARN, 10000, c->sl->proto->module,
                  "outbox commit failed (%d): reply to %s not sent", status, c->peer);
    free(r);
    c->pending--;
    if (c->paused && !c->closing && !c->shutting)
        process(c); /* resumes reading once the buffer is worked off */
    conn_unref(c);
}

int gw_sl_reply_after_commit(gw_slc *c, const void *p, size_t n)
{
    if (c->closing || c->shutting)
        return GW_EAGAIN;
    if (n == 0 || n > REPLY_MAX)
        return GW_EINVAL;
    sl_reply *r = malloc(sizeof(*r) + n);
    if (!r) {
        GW_LOG_RL(GW_LOG_WARN, 10000, c->sl->proto->module, "out of memory: reply dropped%s", "");
        return GW_ENOMEM;
    }
    r->c = c;
    r->len = n;
    memcpy(r->data, p, n);
    int rc = gw_core_flush(c->sl->core, on_flushed, r);
    if (rc) {
        free(r);
        GW_LOG_RL(GW_LOG_WARN, 10000, c->sl->proto->module, "flush failed (%d): reply dropped", rc);
        return rc;
    }
    c->refs++;
    c->pending++;
    return GW_OK;
}

/* ---- reading ---- */

static void on_timer(uv_timer_t *t)
{
    gw_slc *c = t->data;
    gw_sl *sl = c->sl;
    if (c->authed) {
        sl->st.idle_closed++;
        GW_LOG_RL(GW_LOG_INFO, 10000, sl->proto->module, "connection from %s idle: closed",
                  c->peer);
    } else {
        sl->st.auth_timeouts++;
        GW_LOG_RL(GW_LOG_INFO, 10000, sl->proto->module,
                  "connection from %s sent no accepted frame within %lld ms: closed", c->peer,
                  (long long)sl->conf.auth_timeout_ms);
    }
    conn_close(c);
}

static void accepted_frame(gw_slc *c)
{
    gw_sl *sl = c->sl;
    if (!c->authed) {
        list_del(&sl->unauth, c);
        c->authed = 1;
        list_add(&sl->authed, c);
        sl->st.unauth--;
    }
    uv_timer_start(&c->timer, on_timer, (uint64_t)sl->conf.idle_timeout_ms, 0);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    gw_slc *c = h->data;
    b->base = (char *)c->buf + c->len;
    b->len = c->sl->bufsize - c->len;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b);

/* Works off the buffer: frames to on_frame, garbage dropped. Pauses reading
 * while max_pending replies wait for the outbox, resumes when fewer do. */
static void process(gw_slc *c)
{
    gw_sl *sl = c->sl;
    const gw_sl_proto *pr = sl->proto;
    int max_pending = pr->max_pending > 0 ? pr->max_pending : DEFAULT_MAX_PENDING;
    size_t at = 0;
    int stop = 0;
    while (at < c->len && !c->closing && !c->shutting) {
        if (c->pending >= max_pending) {
            stop = 1;
            break;
        }
        gw_sl_span sp;
        memset(&sp, 0, sizeof(sp));
        int rc = pr->scan(sl->ctx, c, c->buf + at, c->len - at, &sp);
        sl->st.skipped += sp.skipped;
        if (sp.consumed > c->len - at)
            sp.consumed = c->len - at; /* a scanner never drops what is not there */
        if (rc == GW_SL_FRAME) {
            int fr = pr->on_frame(sl->ctx, c, sp.frame, sp.frame_len);
            at += sp.consumed;
            if (fr == GW_SL_ACCEPT && !c->closing && !c->shutting) {
                accepted_frame(c);
            } else if (fr == GW_SL_CLOSE) {
                sl->st.refused_peer++;
                gw_sl_close(c, 1);
                return;
            }
            continue;
        }
        if (rc == GW_SL_DROP) {
            at += sp.consumed > 0 ? sp.consumed : 1;
            continue;
        }
        at += sp.consumed; /* GW_SL_MORE: garbage dropped, the rest may be a partial frame */
        if (sp.consumed == 0 && at == 0 && c->len >= sl->bufsize) {
            /* A full buffer and no frame: longer than the buffer, or a false start.
             * Drop up to the next byte that may start a frame. */
            size_t k = 1;
            while (k < c->len &&
                   !(pr->frame_starts && c->buf[k] && strchr(pr->frame_starts, c->buf[k])))
                k++;
            sl->st.oversize++;
            sl->st.skipped += k;
            at = k;
            continue;
        }
        break;
    }
    if (c->closing || c->shutting)
        return;
    memmove(c->buf, c->buf + at, c->len - at);
    c->len -= at;
    if (stop) {
        if (!c->paused)
            uv_read_stop((uv_stream_t *)&c->tcp);
        c->paused = 1;
    } else if (c->paused) {
        c->paused = 0;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    gw_slc *c = st->data;
    if (n == 0 || c->closing || c->shutting)
        return;
    if (n < 0) {
        if (n != UV_EOF)
            GW_LOG_RL(GW_LOG_INFO, 10000, c->sl->proto->module, "connection from %s: %s", c->peer,
                      uv_strerror((int)n));
        conn_close(c);
        return;
    }
    c->len += (size_t)n;
    process(c);
}

/* ---- accepting ---- */

/* Closes the oldest unauthenticated connection; 1 if there was one. */
static int evict_one(gw_sl *sl)
{
    gw_slc *old = sl->unauth.head;
    if (!old)
        return 0;
    sl->st.evicted_unauth++;
    GW_LOG_RL(GW_LOG_WARN, 10000, sl->proto->module,
              "at %lld connections: closed the oldest unauthenticated one (%s) for a new one "
              "(%llu so far)",
              (long long)sl->conf.max_connections, old->peer,
              (unsigned long long)sl->st.evicted_unauth);
    conn_close(old);
    return 1;
}

static void on_connection(uv_stream_t *server, int status)
{
    gw_sl *sl = server->data;
    if (status < 0) {
        GW_LOG_RL(GW_LOG_WARN, 10000, sl->proto->module, "accept failed: %s", uv_strerror(status));
        /* Out of descriptors: free one held by a peer that proved nothing. */
        if (status == UV_EMFILE || status == UV_ENFILE)
            evict_one(sl);
        return;
    }
    gw_slc *c = calloc(1, sl->data_off + sl->proto->conn_size);
    if (!c) {
        GW_LOG_RL(GW_LOG_WARN, 10000, sl->proto->module, "out of memory for a connection%s", "");
        return;
    }
    c->sl = sl;
    c->data = (char *)c + sl->data_off;
    uv_tcp_init(gw_core_loop(sl->core), &c->tcp);
    c->tcp.data = c;
    sl->refs++;
    c->refs = 1;
    c->closing = 1; /* not on any list until it is taken */
    if (uv_accept(server, (uv_stream_t *)&c->tcp)) {
        uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
        return;
    }
    int sl_len = sizeof(c->addr);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->addr, &sl_len) == 0) {
        if (c->addr.ss_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)&c->addr, c->peer, sizeof(c->peer));
        else
            uv_ip4_name((struct sockaddr_in *)&c->addr, c->peer, sizeof(c->peer));
    }
    c->bucket = addr_bucket(&c->addr);
    if (source_count(sl, &c->addr, c->bucket) >= (size_t)sl->conf.max_per_source) {
        sl->st.refused_per_source++;
        GW_LOG_RL(GW_LOG_WARN, 10000, sl->proto->module,
                  "connection from %s refused: %lld open from there (max_per_source, %llu so far)",
                  c->peer, (long long)sl->conf.max_per_source,
                  (unsigned long long)sl->st.refused_per_source);
        uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
        return;
    }
    if (sl->st.open >= (uint64_t)sl->conf.max_connections && !evict_one(sl)) {
        sl->st.refused_full++;
        GW_LOG_RL(GW_LOG_WARN, 10000, sl->proto->module,
                  "connection from %s refused: %llu open, all authenticated (max_connections)",
                  c->peer, (unsigned long long)sl->st.open);
        uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
        return;
    }
    c->closing = 0;
    c->id = ++sl->ids;
    uv_timer_init(gw_core_loop(sl->core), &c->timer);
    c->timer.data = c;
    c->refs++;
    list_add(&sl->unauth, c);
    c->src_next = sl->src[c->bucket];
    if (c->src_next)
        c->src_next->src_prev = c;
    sl->src[c->bucket] = c;
    sl->st.open++;
    sl->st.unauth++;
    sl->st.accepted++;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_timer_start(&c->timer, on_timer, (uint64_t)sl->conf.auth_timeout_ms, 0);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_listener_closed(uv_handle_t *h)
{
    sl_unref(h->data);
}

gw_sl *gw_sl_start(gw_core *core, const gw_sl_conf *conf, size_t bufsize, const gw_sl_proto *proto,
                   void *ctx, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    if (gw_sockaddr_parse(conf->listen, 1, &ss)) {
        snprintf(err, errlen, "listen '%s' must be IP:PORT (e.g. 0.0.0.0:5005)", conf->listen);
        return NULL;
    }
    if (bufsize == 0 || !proto->scan || !proto->on_frame) {
        snprintf(err, errlen, "stream listener: no buffer or no scan/on_frame");
        return NULL;
    }
    gw_sl *sl = calloc(1, sizeof(*sl));
    if (!sl) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    sl->core = core;
    sl->conf = *conf;
    sl->proto = proto;
    sl->ctx = ctx;
    sl->bufsize = bufsize;
    sl->data_off = (offsetof(gw_slc, buf) + bufsize + 15) & ~(size_t)15;
    sl->refs = 2; /* the owner, the TCP handle */
    uv_tcp_init(gw_core_loop(core), &sl->tcp);
    sl->tcp.data = sl;
    int rc = uv_tcp_bind(&sl->tcp, (struct sockaddr *)&ss, 0);
    if (!rc)
        rc = uv_listen((uv_stream_t *)&sl->tcp, 1024, on_connection);
    if (rc) {
        snprintf(err, errlen, "TCP %s: %s", conf->listen, uv_strerror(rc));
        uv_close((uv_handle_t *)&sl->tcp, on_listener_closed);
        sl_unref(sl);
        return NULL;
    }
    sl->list_next = running;
    running = sl;
    return sl;
}

static void add_stats(gw_sl_stats *to, const gw_sl_stats *s)
{
    to->accepted += s->accepted;
    to->refused_full += s->refused_full;
    to->refused_per_source += s->refused_per_source;
    to->evicted_unauth += s->evicted_unauth;
    to->auth_timeouts += s->auth_timeouts;
    to->idle_closed += s->idle_closed;
    to->refused_peer += s->refused_peer;
    to->replies += s->replies;
    to->skipped += s->skipped;
    to->oversize += s->oversize;
    to->open += s->open;
    to->unauth += s->unauth;
}

void gw_sl_stop(gw_sl *sl)
{
    if (!sl || sl->stopping)
        return;
    sl->stopping = 1;
    for (gw_sl **pp = &running; *pp; pp = &(*pp)->list_next)
        if (*pp == sl) {
            *pp = sl->list_next;
            break;
        }
    while (sl->unauth.head)
        conn_close(sl->unauth.head);
    while (sl->authed.head)
        conn_close(sl->authed.head);
    add_stats(&retired, &sl->st);
    retired.open = retired.unauth = 0;
    uv_close((uv_handle_t *)&sl->tcp, on_listener_closed);
    sl_unref(sl);
}

void gw_sl_get_stats(const gw_sl *sl, gw_sl_stats *out)
{
    *out = sl->st;
}

int gw_sl_port(const gw_sl *sl)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getsockname(&sl->tcp, (struct sockaddr *)&ss, &len))
        return -1;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

void gw_sl_totals(gw_sl_stats *out)
{
    *out = retired;
    for (gw_sl *sl = running; sl; sl = sl->list_next)
        add_stats(out, &sl->st);
}

void *gw_sl_conn_data(gw_slc *c)
{
    return c->data;
}

uint64_t gw_sl_conn_id(const gw_slc *c)
{
    return c->id;
}

const char *gw_sl_peer(const gw_slc *c)
{
    return c->peer;
}

uv_stream_t *gw_sl_stream(gw_slc *c)
{
    return (uv_stream_t *)&c->tcp;
}

gw_slc *gw_sl_find(gw_sl *sl, uint64_t id)
{
    if (!sl || sl->stopping || !id)
        return NULL;
    for (gw_slc *c = sl->authed.tail; c; c = c->prev)
        if (c->id == id)
            return c->shutting ? NULL : c;
    for (gw_slc *c = sl->unauth.tail; c; c = c->prev)
        if (c->id == id)
            return c->shutting ? NULL : c;
    return NULL;
}
