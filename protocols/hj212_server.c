/* HJ 212 upper computer (上位机): environmental stations connect over TCP and
 * upload monitoring data.
 *
 * Per connection a bounded buffer is fed to gw_hj212_scan, which skips garbage
 * and drops packets with a bad CRC (counted; the connection lives on). A packet
 * is matched to a configured device by its MN: an unknown MN is refused,
 * counted and the connection closed, with no answer. A wrong PW is refused and
 * counted; when the Flag's A bit asks for an answer the station gets a 9011
 * with QnRtn=3, then the connection is closed. A station configured for
 * version 2025 is refused with GW_EUNSUPPORTED (logged) until that version's
 * text is implemented in the codec.
 *
 * Data uploads (2011, 2051, 2061, 2031, ...) become readings through
 * gw_hj212_emit with the codec's metric names and flag-derived quality. The
 * answer the A bit asks for (9014 for data, 9011 for other requests) is built at
 * once and written from the gw_core_flush callback, after the readings are in
 * the outbox; every answer goes through that barrier so answers keep the order
 * of the packets. A resent packet (same MN, QN and CN; gw_core_seen_report,
 * persisted with the outbox) is stored once and
 * answered again. Each device also gets an offline check: silent for
 * offline_after x interval -> "offline"; the next packet -> "online".
 *
 * Lifetime as in sl651_server.c: references on the server and on each
 * connection, freed from the close callback that drops the last one. */
#include "gateway/core.h"
#include "gateway/log.h"
#include "gateway/netaddr.h"
#include "protocols/hj212.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOD "hj212"
#define MAX_PENDING 16
#define REPLY_MAX 320
#define STATS_MS 60000

static const char *const versions[] = {"2017", "2025", NULL};

typedef struct hj_lconf {
    char listen[96];
    int64_t max_connections;
    int64_t idle_timeout_ms;
    int64_t max_data;
} hj_lconf;

#define LF(m) offsetof(hj_lconf, m), sizeof(((hj_lconf *)0)->m)
static const gw_cfgkey listener_keys[] = {
    {"listen", GW_CT_STR, "127.0.0.1:9212", 0, -1, LF(listen), NULL, 0,
     "HOST:PORT to bind (use 0.0.0.0:PORT to accept stations from the network)"},
    {"max_connections", GW_CT_INT, "4096", 1, 100000, offsetof(hj_lconf, max_connections), 0, NULL,
     0, "TCP connections at once; more are closed at accept (counted)"},
    {"idle_timeout", GW_CT_DURATION, "10m", 1, 86400, offsetof(hj_lconf, idle_timeout_ms), 0, NULL,
     0, "close a connection silent this long"},
    {"max_data", GW_CT_INT, "1024", 64, 9999, offsetof(hj_lconf, max_data), 0, NULL, 0,
     "largest data segment accepted (the standard says 1024)"},
    {NULL}};

typedef struct hj_dconf {
    char password[10];
    int version; /* index into versions: 0 = 2017, 1 = 2025 */
} hj_dconf;

static const gw_cfgkey device_keys[] = {
    {"password", GW_CT_STR, NULL, 0, -1, offsetof(hj_dconf, password),
     sizeof(((hj_dconf *)0)->password), NULL, GW_CF_REQUIRED,
     "the station's PW; a packet with another is refused"},
    {"version", GW_CT_ENUM, "2017", 0, -1, offsetof(hj_dconf, version), 0, versions, 0,
     "HJ 212 version: 2017 (2025 is accepted here but refused at run time)"},
    {NULL}};

static gw_hj212_version dev_version(const hj_dconf *c)
{
    return c->version == 1 ? GW_HJ212_2025 : GW_HJ212_2017;
}

static int check_device(const gw_device *dev, char *err, size_t errlen)
{
    const hj_dconf *c = dev->proto_conf;
    size_t n = strlen(dev->conf.address);
    if (n == 0 || n > 27) {
        snprintf(err, errlen, "address must be the station's MN (1 to 27 characters, got '%s')",
                 dev->conf.address);
        return GW_EINVAL;
    }
    if (!c->password[0]) {
        snprintf(err, errlen, "password must not be empty");
        return GW_EINVAL;
    }
    return GW_OK;
}

/* ---- per-device state ---- */

typedef struct hj_dev {
    gw_device *dev;
    gw_core *core;
    uv_timer_t timer;
    int64_t last_seen;
    int warned_version;
} hj_dev;

static void dev_event(gw_core *core, gw_device *d, const char *kind, const char *detail)
{
    gw_event e;
    memset(&e, 0, sizeof(e));
    gw_strlcpy(e.kind, kind, sizeof(e.kind));
    gw_strlcpy(e.detail, detail, sizeof(e.detail));
    e.active = 1;
    gw_core_event(core, d, &e);
}

static void on_dev_timer(uv_timer_t *t)
{
    hj_dev *s = t->data;
    gw_device *d = s->dev;
    int64_t now = (int64_t)uv_now(s->core->loop);
    int64_t limit = d->interval_ms * (d->conf.offline_after > 0 ? d->conf.offline_after : 1);
    if (d->online != 0 && now - s->last_seen >= limit) {
        d->online = 0;
        char detail[GW_DETAIL_MAX];
        snprintf(detail, sizeof(detail), "no packet for %lld s",
                 (long long)((now - s->last_seen) / 1000));
        GW_WARN(MOD, "[%s] offline: %s", d->conf.id, detail);
        dev_event(s->core, d, "offline", detail);
    }
}

static void dev_seen(hj_dev *s)
{
    s->last_seen = (int64_t)uv_now(s->core->loop);
    if (s->dev->online != 1) {
        s->dev->online = 1;
        GW_INFO(MOD, "[%s] online", s->dev->conf.id);
        dev_event(s->core, s->dev, "online", "");
    }
}

static int dev_attach(gw_core *core, gw_device *dev, char *err, size_t errlen)
{
    hj_dev *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return GW_ENOMEM;
    }
    s->dev = dev;
    s->core = core;
    s->last_seen = (int64_t)uv_now(core->loop);
    uv_timer_init(core->loop, &s->timer);
    s->timer.data = s;
    uint64_t every = (uint64_t)(dev->interval_ms < 1000 ? dev->interval_ms : 1000);
    if (dev->interval_ms >= 60000)
        every = 10000;
    uv_timer_start(&s->timer, on_dev_timer, every, every);
    dev->proto_state = s;
    dev->online = -1;
    if (dev_version(dev->proto_conf) != GW_HJ212_2017)
        GW_WARN(MOD,
                "[%s] configured for HJ 212-%s, which is not implemented yet: its packets "
                "will be refused",
                dev->conf.id, versions[((const hj_dconf *)dev->proto_conf)->version]);
    return GW_OK;
}

static void on_dev_closed(uv_handle_t *h)
{
    free(h->data);
}

static void dev_detach(gw_device *dev)
{
    hj_dev *s = dev->proto_state;
    if (!s)
        return;
    dev->proto_state = NULL;
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, on_dev_closed);
}

/* ---- the server ---- */

typedef struct hj_stats {
    uint64_t accepted, conn_refused, packets, bad_crc, skipped, malformed, unknown_mn, bad_pw,
        unsupported, duplicates, refused_full, replies, readings;
} hj_stats;

typedef struct hj_srv hj_srv;

typedef struct hj_conn {
    hj_srv *srv;
    struct hj_conn *prev, *next;
    uv_tcp_t tcp;
    uv_timer_t idle;
    uv_shutdown_t shut;
    int refs;
    int closing;
    int pending;
    int paused;
    char peer[64];
    size_t len, cap;
    uint8_t buf[];
} hj_conn;

struct hj_srv {
    gw_core *core;
    hj_lconf conf;
    uv_tcp_t tcp;
    uv_timer_t stats_timer;
    int refs;
    int stopping;
    size_t nconns;
    hj_conn *conns;
    hj_stats st, st_logged;
};

typedef struct hj_pending {
    hj_srv *srv;
    hj_conn *conn;
    size_t len;
    char data[REPLY_MAX];
} hj_pending;

typedef struct hj_write {
    uv_write_t req;
    size_t len;
    char data[REPLY_MAX];
} hj_write;

static void srv_unref(hj_srv *s)
{
    if (--s->refs > 0)
        return;
    free(s);
}

static void on_srv_handle_closed(uv_handle_t *h)
{
    srv_unref(h->data);
}

static void conn_unref(hj_conn *c)
{
    if (--c->refs > 0)
        return;
    hj_srv *s = c->srv;
    free(c);
    srv_unref(s);
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    conn_unref(h->data);
}

static void conn_close(hj_conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    hj_srv *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    uv_timer_stop(&c->idle);
    uv_close((uv_handle_t *)&c->idle, on_conn_handle_closed);
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
}

static void on_shutdown(uv_shutdown_t *r, int status)
{
    hj_conn *c = r->data;
    conn_close(c);
    conn_unref(c);
}

/* Closes after the writes already queued (an answer to a refused packet) went out. */
static void conn_close_after_writes(hj_conn *c)
{
    if (c->closing)
        return;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->shut.data = c;
    if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, on_shutdown) == 0) {
        c->refs++;
        c->paused = 1; /* no more reads or processing */
        return;
    }
    conn_close(c);
}

static void on_written(uv_write_t *w, int status)
{
    if (status < 0 && status != UV_ECANCELED)
        GW_LOG_RL(GW_LOG_INFO, 10000, MOD, "reply write failed: %s", uv_strerror(status));
    free(w);
}

static void send_text(hj_conn *c, const char *p, size_t n)
{
    if (c->closing || n == 0 || n > REPLY_MAX)
        return;
    hj_write *w = malloc(sizeof(*w));
    if (!w)
        return;
    memcpy(w->data, p, n);
    w->len = n;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written)) {
        free(w);
        return;
    }
    c->srv->st.replies++;
}

static void process_buffer(hj_conn *c);

static void on_flushed(void *ctx, int status)
{
    hj_pending *p = ctx;
    hj_conn *c = p->conn;
    if (status == 0)
        send_text(c, p->data, p->len);
    else
        GW_LOG_RL(GW_LOG_WARN, 10000, MOD, "outbox commit failed (%d): packet not answered",
                  status);
    free(p);
    c->pending--;
    if (c->paused && !c->closing && c->pending < MAX_PENDING && !c->shut.data)
        process_buffer(c);
    conn_unref(c);
}

static void reply_after_commit(hj_conn *c, const char *data, size_t len)
{
    hj_pending *p = malloc(sizeof(*p));
    if (!p || len > REPLY_MAX) {
        free(p);
        return;
    }
    p->srv = c->srv;
    p->conn = c;
    p->len = len;
    memcpy(p->data, data, len);
    if (gw_core_flush(c->srv->core, on_flushed, p)) {
        free(p);
        return;
    }
    c->refs++;
    c->pending++;
}

typedef struct hj_sink_ctx {
    gw_core *core;
    gw_device *dev;
    int refused;
    unsigned n;
} hj_sink_ctx;

static int sink_reading(void *ctx, const gw_reading *r)
{
    hj_sink_ctx *k = ctx;
    gw_reading copy = *r;
    if (gw_core_reading(k->core, k->dev, &copy) == GW_EFULL) {
        k->refused = 1;
        return GW_EFULL;
    }
    k->n++;
    return GW_OK;
}

/* Handles one packet with a good CRC. Returns GW_EAUTH when the connection must close. */
static int handle_packet(hj_conn *c, const char *seg, size_t len)
{
    hj_srv *s = c->srv;
    gw_hj212_packet p;
    char out[REPLY_MAX];
    s->st.packets++;
    if (gw_hj212_parse(GW_HJ212_2017, seg, len, &p) != GW_OK) {
        s->st.malformed++;
        GW_LOG_RL(GW_LOG_WARN, 10000, MOD, "malformed packet from %s dropped", c->peer);
        return GW_OK;
    }
    gw_device *d = gw_core_find_device(s->core, MOD, p.mn);
    if (!d || !d->proto_state) {
        s->st.unknown_mn++;
        GW_LOG_RL(GW_LOG_WARN, 10000, MOD, "MN '%s' from %s is not configured: refused", p.mn,
                  c->peer);
        return GW_EAUTH;
    }
    hj_dev *ds = d->proto_state;
    const hj_dconf *dc = d->proto_conf;
    gw_hj212_version v = dev_version(dc);
    if (!gw_hj212_version_supported(v)) {
        s->st.unsupported++;
        GW_LOG_RL(GW_LOG_ERROR, 60000, MOD,
                  "[%s] HJ 212-%s is not implemented (GW_EUNSUPPORTED): packet refused; set "
                  "version: 2017 if the station speaks 2017",
                  d->conf.id, gw_hj212_version_name(v));
        return GW_OK;
    }
    int qn_rtn = 0;
    if (gw_hj212_auth(&p, dc->password, NULL, &qn_rtn) != GW_OK) {
        s->st.bad_pw++;
        GW_LOG_RL(GW_LOG_WARN, 10000, MOD, "[%s] wrong PW from %s: refused", d->conf.id, c->peer);
        if (p.flag >= 0 && (p.flag & GW_HJ212_FLAG_A)) {
            int n = gw_hj212_build_request_ack(&p, GW_HJ212_QN_PW_ERROR, out, sizeof(out));
            if (n > 0)
                send_text(c, out, (size_t)n); /* nothing was stored: no barrier needed */
        }
        return GW_EAUTH;
    }
    dev_seen(ds);
    int data = gw_hj212_is_data_cn(p.cn);
    if (data) {
        char key[32];
        snprintf(key, sizeof(key), "%s/%s", p.qn, p.cn);
        if (p.qn[0] && gw_core_seen_report(s->core, d, key)) {
            s->st.duplicates++;
        } else {
            hj_sink_ctx k = {s->core, d, 0, 0};
            gw_sink sink = {sink_reading, NULL, &k};
            int rc = gw_hj212_emit(&p, &sink);
            s->st.readings += k.n;
            if (k.refused || rc < 0) {
                if (p.qn[0])
                    gw_core_forget_report(s->core, d, key); /* a resend must be taken */
                if (k.refused) {
                    s->st.refused_full++;
                    GW_LOG_RL(GW_LOG_WARN, 10000, MOD, "[%s] store queue full: packet not answered",
                              d->conf.id);
                } else {
                    s->st.malformed++;
                    GW_LOG_RL(GW_LOG_WARN, 10000, MOD, "[%s] CN %s: CP malformed (%d), dropped",
                              d->conf.id, p.cn, rc);
                }
                return GW_OK;
            }
        }
    }
    /* Data: 9014. Other requests: 9011 QnRtn=1, as gateway decode shows (the codec's reply). */
    int n = gw_hj212_build_reply(&p, GW_HJ212_QN_READY, out, sizeof(out));
    if (n > 0)
        reply_after_commit(c, out, (size_t)n);
    return GW_OK;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    hj_conn *c = h->data;
    b->base = (char *)c->buf + c->len;
    b->len = c->cap - c->len;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b);

static void process_buffer(hj_conn *c)
{
    hj_srv *s = c->srv;
    size_t at = 0;
    int stop = 0;
    while (at < c->len && !c->closing) {
        if (c->pending >= MAX_PENDING) {
            stop = 1;
            break;
        }
        gw_hj212_span sp;
        int rc =
            gw_hj212_scan(GW_HJ212_2017, c->buf + at, c->len - at, (size_t)s->conf.max_data, &sp);
        s->st.skipped += sp.skipped;
        if (rc == 1) {
            int hr = handle_packet(c, sp.data, sp.data_len);
            at += sp.consumed;
            if (hr == GW_EAUTH) {
                conn_close_after_writes(c);
                return;
            }
            continue;
        }
        if (rc == GW_ECRC) {
            s->st.bad_crc++;
            GW_LOG_RL(GW_LOG_WARN, 10000, MOD, "packet with a bad CRC from %s dropped", c->peer);
            at += sp.consumed;
            continue;
        }
        if (rc < 0) { /* cannot happen with a fixed version; drop everything */
            at = c->len;
            break;
        }
        at += sp.consumed;
        if (sp.consumed == 0 && at == 0 && c->len >= c->cap) {
            /* Full and no packet: step to the next "##". */
            size_t k = 1;
            while (k < c->len && c->buf[k] != '#')
                k++;
            s->st.skipped += k;
            at = k;
            continue;
        }
        break;
    }
    if (c->closing)
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
    hj_conn *c = st->data;
    if (n == 0)
        return;
    if (n < 0) {
        if (n != UV_EOF)
            GW_LOG_RL(GW_LOG_INFO, 10000, MOD, "connection from %s: %s", c->peer,
                      uv_strerror((int)n));
        conn_close(c);
        return;
    }
    c->len += (size_t)n;
    uv_timer_again(&c->idle);
    process_buffer(c);
}

static void on_idle(uv_timer_t *t)
{
    hj_conn *c = t->data;
    GW_LOG_RL(GW_LOG_INFO, 10000, MOD, "connection from %s idle: closed", c->peer);
    conn_close(c);
}

static void on_connection(uv_stream_t *server, int status)
{
    hj_srv *s = server->data;
    if (status < 0) {
        GW_LOG_RL(GW_LOG_WARN, 10000, MOD, "accept failed: %s", uv_strerror(status));
        return;
    }
    size_t cap = (size_t)s->conf.max_data + GW_HJ212_OVERHEAD;
    hj_conn *c = calloc(1, sizeof(*c) + cap);
    if (!c)
        return;
    c->srv = s;
    c->cap = cap;
    uv_tcp_init(s->core->loop, &c->tcp);
    c->tcp.data = c;
    s->refs++;
    c->refs = 1;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) || s->nconns >= (size_t)s->conf.max_connections) {
        s->st.conn_refused++;
        GW_LOG_RL(GW_LOG_WARN, 10000, MOD, "connection refused: %zu open (max_connections %lld)",
                  s->nconns, (long long)s->conf.max_connections);
        c->closing = 1;
        uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
        return;
    }
    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof(c->peer));
        else
            uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer, sizeof(c->peer));
    }
    uv_timer_init(s->core->loop, &c->idle);
    c->idle.data = c;
    c->refs++;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    s->st.accepted++;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_timer_start(&c->idle, on_idle, (uint64_t)s->conf.idle_timeout_ms,
                   (uint64_t)s->conf.idle_timeout_ms);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void log_stats(hj_srv *s, const char *when)
{
    hj_stats *t = &s->st;
    GW_INFO(MOD,
            "%sconnections %zu open, %llu accepted, %llu refused | packets %llu, readings %llu, "
            "duplicates %llu, replies %llu | dropped: bad CRC %llu, garbage bytes %llu, malformed "
            "%llu | refused: unknown MN %llu, bad PW %llu, unsupported version %llu, queue full "
            "%llu",
            when, s->nconns, (unsigned long long)t->accepted, (unsigned long long)t->conn_refused,
            (unsigned long long)t->packets, (unsigned long long)t->readings,
            (unsigned long long)t->duplicates, (unsigned long long)t->replies,
            (unsigned long long)t->bad_crc, (unsigned long long)t->skipped,
            (unsigned long long)t->malformed, (unsigned long long)t->unknown_mn,
            (unsigned long long)t->bad_pw, (unsigned long long)t->unsupported,
            (unsigned long long)t->refused_full);
    s->st_logged = s->st;
}

static void on_stats(uv_timer_t *t)
{
    hj_srv *s = t->data;
    if (memcmp(&s->st, &s->st_logged, sizeof(s->st)))
        log_stats(s, "");
}

static void srv_close(hj_srv *s)
{
    s->stopping = 1;
    while (s->conns)
        conn_close(s->conns);
    uv_timer_stop(&s->stats_timer);
    uv_close((uv_handle_t *)&s->stats_timer, on_srv_handle_closed);
    uv_close((uv_handle_t *)&s->tcp, on_srv_handle_closed);
    srv_unref(s);
}

static int hj_listen(gw_core *core, const void *conf, void **state, char *err, size_t errlen)
{
    const hj_lconf *lc = conf;
    struct sockaddr_storage ss;
    if (gw_sockaddr_parse(lc->listen, 1, &ss)) {
        snprintf(err, errlen, "listen '%s' must be IP:PORT (e.g. 0.0.0.0:9212)", lc->listen);
        return GW_EINVAL;
    }
    hj_srv *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return GW_ENOMEM;
    }
    s->core = core;
    s->conf = *lc;
    s->refs = 3; /* srv_close, the stats timer, the TCP handle */
    uv_timer_init(core->loop, &s->stats_timer);
    s->stats_timer.data = s;
    uv_tcp_init(core->loop, &s->tcp);
    s->tcp.data = s;
    int rc = uv_tcp_bind(&s->tcp, (struct sockaddr *)&ss, 0);
    if (!rc)
        rc = uv_listen((uv_stream_t *)&s->tcp, 1024, on_connection);
    if (rc) {
        snprintf(err, errlen, "TCP %s: %s", lc->listen, uv_strerror(rc));
        srv_close(s);
        return GW_EINVAL;
    }
    uv_timer_start(&s->stats_timer, on_stats, STATS_MS, STATS_MS);
    GW_INFO(MOD, "listening on %s (tcp), max %lld connections", lc->listen,
            (long long)lc->max_connections);
    *state = s;
    return GW_OK;
}

static void hj_unlisten(void *state)
{
    hj_srv *s = state;
    if (!s)
        return;
    log_stats(s, "stopped: ");
    srv_close(s);
}

const gw_protocol gw_proto_hj212 = {
    .name = "hj212",
    .version = "1.0",
    .description = "HJ 212-2017 upper computer: stations upload over TCP, 9014 after commit",
    .device_keys = device_keys,
    .device_conf_size = sizeof(hj_dconf),
    .check_device = check_device,
    .attach = dev_attach,
    .detach = dev_detach,
    .listener_keys = listener_keys,
    .listener_conf_size = sizeof(hj_lconf),
    .listen = hj_listen,
    .unlisten = hj_unlisten,
};
