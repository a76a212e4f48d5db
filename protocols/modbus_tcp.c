/* Modbus TCP client on the loop, framed by hand.
 *
 * libmodbus blocks in every call and waits with select(), which aborts the
 * process on descriptors >= 1024 (see docs/design.md), so thousands of devices
 * cannot share one process through it. Here each device has one non-blocking
 * libuv TCP handle and at most one request in flight; a response is matched
 * to its request by transaction id, unit and function code, so a late answer
 * to a timed-out request is recognised and dropped instead of being taken for
 * the next one.
 *
 * A poll cycle runs the profile's planned requests in order. An exception
 * answer marks only that request's points bad; a timeout or a broken
 * connection marks the rest of the cycle bad (comm_fail). After offline_after
 * failed cycles the device goes offline (an event) and failed cycles stop
 * producing readings; the first good cycle brings it back online (an event).
 * Polls keep an absolute schedule with a per-device phase, so devices spread
 * over the interval and a slow device never shifts the others. */
#include "gateway/backoff.h"
#include "gateway/core.h"
#include "gateway/log.h"

#include <stdlib.h>
#include <string.h>

#define MAX_REQS 256
#define RBUF 600
#define MBAP 7

enum { ST_IDLE, ST_CONNECTING, ST_READY };

struct mb_write {
    struct mb_write *next;
    uint8_t fc;
    uint16_t addr, count;
    uint8_t data[252];
    size_t len;
};

struct mbt {
    gw_device *dev;
    gw_core *core;
    uv_tcp_t tcp;
    uv_timer_t poll_timer, io_timer;
    uv_connect_t creq;
    uv_write_t wreq;
    int tcp_open;
    int handles;
    int detached;
    int state;
    struct sockaddr_storage addr;
    int64_t next_due;
    uint16_t tid;
    int in_cycle;
    size_t nreq, cur;
    const gw_mb_request *reqs;
    int attempt;
    int awaiting; /* a request is on the wire */
    struct mb_write *writes, *cur_write;
    uint8_t wbuf[260];
    uint8_t rbuf[RBUF];
    size_t rlen;
    uint8_t *data;  /* result bytes of every planned request */
    size_t *dataoff;
    gw_mb_result res[MAX_REQS];
    int fails;      /* consecutive failed cycles */
    gw_backoff bo;
    int64_t connect_not_before;
    int64_t cycle_start;
};

static void start_cycle(struct mbt *m);
static void next_step(struct mbt *m);
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static int64_t now_ms(struct mbt *m)
{
    return (int64_t)uv_now(m->core->loop);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct mbt *m = h->data;
    if (h == (uv_handle_t *)&m->tcp) {
        m->tcp_open = 0;
        if (!m->detached)
            return;
    }
    if (--m->handles > 0)
        return;
    while (m->writes) {
        struct mb_write *w = m->writes;
        m->writes = w->next;
        free(w);
    }
    free(m->cur_write);
    free(m->data);
    free(m->dataoff);
    free(m);
}

static void close_conn(struct mbt *m)
{
    if (m->tcp_open && !uv_is_closing((uv_handle_t *)&m->tcp))
        uv_close((uv_handle_t *)&m->tcp, on_handle_closed);
    m->state = ST_IDLE;
    m->rlen = 0;
    m->awaiting = 0;
    uv_timer_stop(&m->io_timer);
}

static void emit_event(struct mbt *m, const char *kind, const char *detail)
{
    gw_event e;
    memset(&e, 0, sizeof(e));
    gw_strlcpy(e.kind, kind, sizeof(e.kind));
    e.active = 1;
    gw_strlcpy(e.detail, detail, sizeof(e.detail));
    gw_core_event(m->core, m->dev, &e);
}

static int sink_reading(void *ctx, const gw_reading *r)
{
    struct mbt *m = ctx;
    gw_reading copy = *r;
    gw_core_reading(m->core, m->dev, &copy);
    return GW_OK;
}

static void finish_cycle(struct mbt *m)
{
    gw_device *d = m->dev;
    size_t ok = 0;
    for (size_t i = 0; i < m->nreq; i++)
        if (m->res[i].status == 0)
            ok++;
    m->in_cycle = 0;
    d->polls++;
    int any_answer = 0;
    for (size_t i = 0; i < m->nreq; i++)
        if (m->res[i].status >= 0)
            any_answer = 1; /* data or a Modbus exception: the device is there */
    if (!any_answer) {
        d->polls_failed++;
        m->fails++;
        if (m->fails == d->conf.offline_after && d->online != 0) {
            d->online = 0;
            GW_WARN("modbus-tcp", "[%s] offline after %d failed polls", d->conf.id, m->fails);
            emit_event(m, "offline", "no answer");
        }
        if (d->online == 0)
            return; /* offline: the event said it; no stream of bad readings */
    } else {
        if (d->online != 1) {
            GW_INFO("modbus-tcp", "[%s] online", d->conf.id);
            d->online = 1;
            emit_event(m, "online", "");
        }
        m->fails = 0;
    }
    gw_sink sink = {sink_reading, NULL, m};
    gw_profile_decode(d->profile, d->params, d->nparams, m->res, m->nreq, gw_now_ms(), &sink);
    (void)ok;
}

/* Marks requests from `from` on as failed with code and ends the cycle. */
static void fail_rest(struct mbt *m, size_t from, int code)
{
    for (size_t i = from; i < m->nreq; i++) {
        m->res[i].status = code;
        m->res[i].len = 0;
    }
    m->cur = m->nreq;
    finish_cycle(m);
}

static void on_written(uv_write_t *w, int status)
{
    struct mbt *m = w->data;
    if (status < 0 && status != UV_ECANCELED && !m->detached) {
        GW_LOG_RL(GW_LOG_WARN, 10000, "modbus-tcp", "[%s] write failed: %s", m->dev->conf.id,
                  uv_strerror(status));
        close_conn(m);
        if (m->in_cycle)
            fail_rest(m, m->cur, GW_ERR);
    }
}

static void on_io_timeout(uv_timer_t *t)
{
    struct mbt *m = t->data;
    if (m->state == ST_CONNECTING) {
        close_conn(m);
        m->connect_not_before = now_ms(m) + gw_backoff_next(&m->bo);
        if (m->in_cycle)
            fail_rest(m, 0, GW_EAGAIN);
        return;
    }
    m->awaiting = 0;
    if (m->cur_write) {
        GW_WARN("modbus-tcp", "[%s] write to %u timed out", m->dev->conf.id, m->cur_write->addr);
        free(m->cur_write);
        m->cur_write = NULL;
        next_step(m);
        return;
    }
    if (m->attempt < m->dev->conf.retries) {
        m->attempt++;
        next_step(m);
        return;
    }
    /* The device did not answer: the rest of this cycle is comm_fail. */
    fail_rest(m, m->cur, GW_EAGAIN);
    next_step(m);
}

static void send_frame(struct mbt *m, uint8_t fc, uint16_t addr, uint16_t count,
                       const uint8_t *data, size_t len)
{
    m->tid++;
    uint8_t *b = m->wbuf;
    size_t pdu = 5 + (data ? 1 + len : 0);
    if (fc == 5 || fc == 6)
        pdu = 5;
    b[0] = (uint8_t)(m->tid >> 8);
    b[1] = (uint8_t)m->tid;
    b[2] = b[3] = 0;
    b[4] = (uint8_t)((pdu + 1) >> 8);
    b[5] = (uint8_t)(pdu + 1);
    b[6] = (uint8_t)m->dev->conf.unit;
    b[7] = fc;
    b[8] = (uint8_t)(addr >> 8);
    b[9] = (uint8_t)addr;
    if (fc == 5 || fc == 6) {
        b[10] = data[0];
        b[11] = data[1];
    } else {
        b[10] = (uint8_t)(count >> 8);
        b[11] = (uint8_t)count;
        if (data) {
            b[12] = (uint8_t)len;
            memcpy(b + 13, data, len);
        }
    }
    uv_buf_t buf = uv_buf_init((char *)b, (unsigned)(6 + 1 + pdu));
    m->wreq.data = m;
    m->awaiting = 1;
    int rc = uv_write(&m->wreq, (uv_stream_t *)&m->tcp, &buf, 1, on_written);
    uv_timer_start(&m->io_timer, on_io_timeout, (uint64_t)m->dev->conf.timeout_ms, 0);
    if (rc) {
        m->awaiting = 0;
        close_conn(m);
        if (m->in_cycle)
            fail_rest(m, m->cur, GW_ERR);
    }
}

/* Sends the next thing due on a ready connection: a pending write first, then
 * the next planned read of the running cycle. */
static void next_step(struct mbt *m)
{
    if (m->state != ST_READY || m->awaiting)
        return;
    if (!m->cur_write && m->writes) {
        m->cur_write = m->writes;
        m->writes = m->cur_write->next;
    }
    if (m->cur_write) {
        struct mb_write *w = m->cur_write;
        send_frame(m, w->fc, w->addr, w->count, w->data, w->len);
        return;
    }
    if (m->in_cycle && m->cur < m->nreq) {
        const gw_mb_request *r = &m->reqs[m->cur];
        send_frame(m, r->fc, r->addr, r->count, NULL, 0);
    }
}

/* Handles one complete response frame f of len bytes. */
static void on_frame(struct mbt *m, const uint8_t *f, size_t len)
{
    uint16_t tid = (uint16_t)(f[0] << 8 | f[1]);
    if (tid != m->tid || !m->awaiting || f[6] != (uint8_t)m->dev->conf.unit)
        return; /* a late answer to a request we gave up on, or not ours */
    uint8_t fc = f[7];
    uv_timer_stop(&m->io_timer);
    m->awaiting = 0;
    if (m->cur_write) {
        if (fc & 0x80)
            GW_WARN("modbus-tcp", "[%s] write refused with exception %u", m->dev->conf.id,
                    len > 8 ? f[8] : 0);
        free(m->cur_write);
        m->cur_write = NULL;
        next_step(m);
        return;
    }
    if (!m->in_cycle || m->cur >= m->nreq)
        return;
    const gw_mb_request *r = &m->reqs[m->cur];
    gw_mb_result *res = &m->res[m->cur];
    if (fc == (r->fc | 0x80)) {
        res->status = len > 8 && f[8] ? f[8] : 4;
        res->len = 0;
    } else {
        size_t want = (r->fc == 1 || r->fc == 2) ? (size_t)(r->count + 7) / 8 : (size_t)r->count * 2;
        if (fc != r->fc || len < 9 || f[8] != want || len != 9 + want) {
            GW_LOG_RL(GW_LOG_WARN, 10000, "modbus-tcp", "[%s] malformed response to fc %u",
                      m->dev->conf.id, r->fc);
            res->status = GW_EMALFORMED;
            res->len = 0;
        } else {
            memcpy(m->data + m->dataoff[m->cur], f + 9, want);
            res->data = m->data + m->dataoff[m->cur];
            res->len = want;
            res->status = 0;
        }
    }
    m->cur++;
    m->attempt = 0;
    if (m->cur >= m->nreq)
        finish_cycle(m);
    next_step(m);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct mbt *m = h->data;
    buf->base = (char *)m->rbuf + m->rlen;
    buf->len = RBUF - m->rlen;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct mbt *m = s->data;
    if (n < 0) {
        GW_LOG_RL(GW_LOG_INFO, 10000, "modbus-tcp", "[%s] connection closed: %s",
                  m->dev->conf.id, uv_strerror((int)n));
        close_conn(m);
        m->connect_not_before = now_ms(m) + gw_backoff_next(&m->bo);
        if (m->in_cycle)
            fail_rest(m, m->cur, GW_ERR);
        return;
    }
    m->rlen += (size_t)n;
    size_t at = 0;
    while (m->rlen - at >= MBAP + 1) {
        const uint8_t *f = m->rbuf + at;
        size_t l = (size_t)(f[4] << 8 | f[5]);
        if (f[2] != 0 || f[3] != 0 || l < 2 || l > 254) {
            /* Not Modbus TCP: nothing after this can be trusted. */
            GW_LOG_RL(GW_LOG_WARN, 10000, "modbus-tcp", "[%s] garbage from device; reconnecting",
                      m->dev->conf.id);
            close_conn(m);
            if (m->in_cycle)
                fail_rest(m, m->cur, GW_EMALFORMED);
            return;
        }
        if (m->rlen - at < 6 + l)
            break;
        on_frame(m, f, 6 + l);
        if (m->state != ST_READY)
            return;
        at += 6 + l;
    }
    memmove(m->rbuf, m->rbuf + at, m->rlen - at);
    m->rlen -= at;
}

static void on_connected(uv_connect_t *c, int status)
{
    struct mbt *m = c->data;
    if (m->detached || status == UV_ECANCELED)
        return;
    uv_timer_stop(&m->io_timer);
    if (status < 0) {
        GW_LOG_RL(GW_LOG_INFO, 10000, "modbus-tcp", "[%s] connect to %s failed: %s",
                  m->dev->conf.id, m->dev->conf.connect, uv_strerror(status));
        close_conn(m);
        m->connect_not_before = now_ms(m) + gw_backoff_next(&m->bo);
        if (m->in_cycle)
            fail_rest(m, 0, GW_EAGAIN);
        return;
    }
    gw_backoff_reset(&m->bo);
    m->state = ST_READY;
    uv_tcp_nodelay(&m->tcp, 1);
    uv_read_start((uv_stream_t *)&m->tcp, on_alloc, on_read);
    next_step(m);
}

static int connect_dev(struct mbt *m)
{
    if (uv_tcp_init(m->core->loop, &m->tcp))
        return GW_ERR;
    m->tcp.data = m;
    m->tcp_open = 1;
    m->creq.data = m;
    m->state = ST_CONNECTING;
    if (uv_tcp_connect(&m->creq, &m->tcp, (struct sockaddr *)&m->addr, on_connected)) {
        close_conn(m);
        return GW_ERR;
    }
    uv_timer_start(&m->io_timer, on_io_timeout, (uint64_t)m->dev->conf.timeout_ms, 0);
    return GW_OK;
}

static void start_cycle(struct mbt *m)
{
    if (m->in_cycle) {
        m->dev->polls_skipped++; /* the previous cycle is still running */
        return;
    }
    m->in_cycle = 1;
    m->cur = 0;
    m->attempt = 0;
    m->cycle_start = now_ms(m);
    for (size_t i = 0; i < m->nreq; i++) {
        m->res[i].status = GW_EAGAIN;
        m->res[i].len = 0;
        m->res[i].data = NULL;
    }
    if (m->state == ST_IDLE) {
        if (m->tcp_open) {
            /* The old handle is still closing. */
            fail_rest(m, 0, GW_EAGAIN);
            return;
        }
        if (now_ms(m) < m->connect_not_before || connect_dev(m)) {
            fail_rest(m, 0, GW_EAGAIN);
            return;
        }
        return; /* the cycle continues in on_connected */
    }
    next_step(m);
}

static void on_poll(uv_timer_t *t)
{
    struct mbt *m = t->data;
    int64_t now = now_ms(m), iv = m->dev->interval_ms;
    m->next_due += iv;
    if (m->next_due <= now) {
        /* We fell behind (loop stall or a suspended process): skip, keep phase. */
        int64_t missed = (now - m->next_due) / iv + 1;
        m->dev->polls_skipped += (uint64_t)missed;
        m->next_due += missed * iv;
    }
    uv_timer_start(&m->poll_timer, on_poll, (uint64_t)(m->next_due - now), 0);
    start_cycle(m);
}

static int parse_addr(const char *connect, struct sockaddr_storage *ss)
{
    char host[128];
    const char *hp = connect + 6; /* after tcp:// */
    const char *colon = strrchr(hp, ':');
    if (!colon || (size_t)(colon - hp) >= sizeof(host))
        return GW_EINVAL;
    memcpy(host, hp, (size_t)(colon - hp));
    host[colon - hp] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port <= 0 || port > 65535)
        return GW_EINVAL;
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0)
        return GW_OK;
    if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0)
        return GW_OK;
    return GW_EINVAL;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static int mbt_attach(gw_core *core, gw_device *dev, char *err, size_t errlen)
{
    struct mbt *m = calloc(1, sizeof(*m));
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return GW_ENOMEM;
    }
    m->dev = dev;
    m->core = core;
    if (parse_addr(dev->conf.connect, &m->addr)) {
        snprintf(err, errlen, "device %s: connect '%s' needs a numeric IP address and port",
                 dev->conf.id, dev->conf.connect);
        free(m);
        return GW_EINVAL;
    }
    m->nreq = gw_profile_requests(dev->profile, &m->reqs);
    if (m->nreq > MAX_REQS) {
        snprintf(err, errlen, "device %s: profile plans %zu reads (at most %d)", dev->conf.id,
                 m->nreq, MAX_REQS);
        free(m);
        return GW_EINVAL;
    }
    size_t total = 0;
    m->dataoff = calloc(m->nreq ? m->nreq : 1, sizeof(*m->dataoff));
    for (size_t i = 0; m->dataoff && i < m->nreq; i++) {
        m->dataoff[i] = total;
        total += m->reqs[i].fc <= 2 ? (size_t)(m->reqs[i].count + 7) / 8
                                    : (size_t)m->reqs[i].count * 2;
    }
    m->data = malloc(total ? total : 1);
    if (!m->dataoff || !m->data) {
        free(m->dataoff);
        free(m->data);
        free(m);
        snprintf(err, errlen, "out of memory");
        return GW_ENOMEM;
    }
    gw_backoff_init(&m->bo, dev->interval_ms, dev->interval_ms * 30 > 300000 ? 300000 : dev->interval_ms * 30,
                    hash_str(dev->conf.id));
    uv_timer_init(core->loop, &m->poll_timer);
    uv_timer_init(core->loop, &m->io_timer);
    m->poll_timer.data = m->io_timer.data = m;
    m->handles = 2;
    dev->proto_state = m;
    dev->online = -1;
    /* Spread first polls over the interval by a stable per-device phase. */
    int64_t now = now_ms(m);
    int64_t phase = (int64_t)(hash_str(dev->conf.id) % (uint64_t)dev->interval_ms);
    m->next_due = now + phase;
    uv_timer_start(&m->poll_timer, on_poll, (uint64_t)phase, 0);
    m->next_due -= dev->interval_ms; /* on_poll adds one interval */
    return GW_OK;
}

static void mbt_detach(gw_device *dev)
{
    struct mbt *m = dev->proto_state;
    if (!m)
        return;
    m->detached = 1;
    dev->proto_state = NULL;
    uv_timer_stop(&m->poll_timer);
    uv_timer_stop(&m->io_timer);
    if (m->tcp_open) {
        m->handles++;
        if (!uv_is_closing((uv_handle_t *)&m->tcp))
            uv_close((uv_handle_t *)&m->tcp, on_handle_closed);
    }
    uv_close((uv_handle_t *)&m->poll_timer, on_handle_closed);
    uv_close((uv_handle_t *)&m->io_timer, on_handle_closed);
}

static int mbt_set_interval(gw_device *dev, int64_t interval_ms)
{
    struct mbt *m = dev->proto_state;
    if (!m || interval_ms <= 0)
        return GW_EINVAL;
    dev->interval_ms = interval_ms;
    int64_t now = now_ms(m);
    m->next_due = now;
    uv_timer_start(&m->poll_timer, on_poll, 0, 0);
    m->next_due -= interval_ms;
    return GW_OK;
}

static int mbt_write(gw_device *dev, const char *point, double value)
{
    struct mbt *m = dev->proto_state;
    if (!m)
        return GW_EINVAL;
    struct mb_write *w = calloc(1, sizeof(*w));
    if (!w)
        return GW_ENOMEM;
    int rc = gw_profile_encode_write(dev->profile, point, value, &w->fc, &w->addr, &w->count,
                                     w->data, &w->len);
    if (rc) {
        free(w);
        return rc;
    }
    struct mb_write **tail = &m->writes;
    int depth = 0;
    while (*tail) {
        tail = &(*tail)->next;
        if (++depth >= 16) {
            free(w);
            return GW_EFULL;
        }
    }
    *tail = w;
    if (m->state == ST_IDLE && !m->tcp_open)
        connect_dev(m);
    next_step(m);
    return GW_OK;
}

const gw_protocol gw_proto_modbus_tcp = {
    .name = "modbus-tcp",
    .version = "1.0",
    .description = "Modbus TCP client, non-blocking, one request in flight per device",
    .attach = mbt_attach,
    .detach = mbt_detach,
    .set_interval = mbt_set_interval,
    .write = mbt_write,
};
