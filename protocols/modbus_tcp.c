/* Modbus TCP client on the loop, framed by hand, and the link machinery the
 * DTU transport shares.
 *
 * libmodbus blocks in every call and waits with select(), which aborts the
 * process on descriptors >= 1024 (docs/modbus.md), so thousands of devices
 * cannot share one process through it. Here a link is one non-blocking
 * connection with at most one transaction in flight. A modbus-tcp device has
 * its own link (MBAP framing); an answer is matched by transaction id, unit
 * and function code, so a late answer to a timed-out request is recognised
 * and dropped instead of being taken for the next one. The same link with RTU
 * framing (unit, PDU, CRC) serves modbus-dtu: dialled out for one device, or
 * accepted from a DTU and shared by every device behind it, which then wait
 * their turn in the link's queue. RTU frames carry no transaction id, so after
 * a timeout the link stays quiet for a guard time and drops stray bytes.
 *
 * A session (gw_mbs) is one device: an absolute schedule with a per-device
 * phase, the poll cycle (gw_mb_poll in modbus_common.c: results, report-by-
 * exception, online/offline events) and a short queue of writes, which go
 * before the next read. */
#include "base/backoff.h"
#include "base/log.h"
#include "base/netaddr.h"
#include "protocols/modbus_common.h"

#include <stdlib.h>
#include <string.h>

/* Receive buffers. Every modbus-tcp link reads into one shared buffer (the
 * loop reads one stream at a time and each read is parsed before the next),
 * and keeps only a frame cut by a read, in a carry buffer allocated the first
 * time that happens: 10,000 links must not each hold a kilobyte of space that
 * is empty between transactions. RTU links (few: DTUs) accumulate in a buffer
 * of their own, as RTU frames carry no length of their own. */
#define RBUF_RTU 1024
#define RX_SHARED 65536
static uint8_t rx_shared[RX_SHARED]; /* loop thread only */

enum { L_IDLE, L_CONNECTING, L_READY };

struct gw_mbw {
    struct gw_mbw *next;
    uint8_t pdu[GW_MB_PDU_MAX];
    size_t len;
    char point[32];
    double value;
    int cmd; /* a platform command waits for its outcome (gw_core_command_result) */
};

struct gw_mbl {
    gw_core *core;
    const char *module;
    int rtu;
    int inbound; /* the stream belongs to the DTU listener */
    uv_stream_t *stream;
    uv_tcp_t tcp;    /* dial-out only */
    gw_tw_timer tmr; /* response timeout, connect timeout, guard */
    int state;
    int tcp_open;
    int guarding;
    int awaiting;
    int released;
    int64_t guard_ms;
    int64_t timeout_ms; /* of the transaction in flight */
    gw_backoff bo;
    int64_t connect_not_before;
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } addr;
    uint16_t tid;
    gw_mbs *cur; /* session whose transaction or cycle runs */
    gw_mbs *qhead, *qtail;
    gw_mbs *owner; /* dial-out: the one session */
    struct gw_mbw *cur_write;
    uint8_t req_fc; /* function and unit of the request in flight: an answer must match */
    uint8_t req_unit;
    uint8_t *rbuf; /* RTU: RBUF_RTU bytes; TCP: the carry, NULL until needed */
    size_t rlen, rcap;
};

struct wreq {
    uv_write_t w;
    uint8_t buf[GW_MB_ADU_MAX];
};

static void pump(gw_mbl *l);
static void link_broken(gw_mbl *l, int code);

static int64_t now_ms(gw_mbl *l)
{
    return (int64_t)uv_now(gw_core_loop(l->core));
}

/* ---- Queue ---- */

static void enqueue(gw_mbl *l, gw_mbs *s)
{
    if (s->queued || l->cur == s)
        return;
    s->queued = 1;
    s->qnext = NULL;
    if (l->qtail)
        l->qtail->qnext = s;
    else
        l->qhead = s;
    l->qtail = s;
}

static gw_mbs *dequeue(gw_mbl *l)
{
    gw_mbs *s = l->qhead;
    if (!s)
        return NULL;
    l->qhead = s->qnext;
    if (!l->qhead)
        l->qtail = NULL;
    s->qnext = NULL;
    s->queued = 0;
    return s;
}

static void unqueue(gw_mbl *l, gw_mbs *s)
{
    if (!s->queued)
        return;
    gw_mbs **pp = &l->qhead, *prev = NULL;
    while (*pp && *pp != s) {
        prev = *pp;
        pp = &(*pp)->qnext;
    }
    if (*pp) {
        *pp = s->qnext;
        if (l->qtail == s)
            l->qtail = prev;
    }
    s->qnext = NULL;
    s->queued = 0;
}

/* Fails a session's running cycle (no link, link lost). */
static void fail_cycle(gw_mbs *s, int code)
{
    if (!s->poll.in_cycle)
        return;
    gw_mb_poll_fail_rest(&s->poll, code);
    gw_mb_poll_finish(&s->poll);
}

/* A write ended: rc 0 acknowledged, > 0 the device's exception, < 0 not
 * done (why says why). A platform command's write reports its outcome. Frees w. */
static void write_end(const char *module, gw_mbs *s, struct gw_mbw *w, int rc, const char *why)
{
    char reason[96], result[256];
    if (rc > 0)
        snprintf(reason, sizeof(reason), "exception %02X %s", (unsigned)rc,
                 gw_mb_exception_name(rc));
    else
        snprintf(reason, sizeof(reason), "%s", why ? why : "malformed answer");
    if (rc)
        GW_WARN(module, "[%s] write of %s failed: %s", s ? s->dev->conf.id : "?", w->point, reason);
    else
        GW_INFO(module, "[%s] wrote %s", s ? s->dev->conf.id : "?", w->point);
    if (w->cmd && s) {
        int bad = gw_mb_write_result(result, sizeof(result), w->point, w->value, w->pdu, w->len);
        gw_core_command_result(s->core, s->dev, "write", rc ? reason : NULL, bad ? NULL : result);
    }
    free(w);
}

/* Ends the platform commands' writes still queued on s (the connection is gone). */
static void fail_cmd_writes(gw_mbs *s, const char *why)
{
    struct gw_mbw **pp = &s->writes;
    while (*pp) {
        struct gw_mbw *w = *pp;
        if (!w->cmd) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        s->nwrites--;
        write_end(s->poll.module, s, w, GW_EAGAIN, why);
    }
}

/* ---- Sending ---- */

static void on_written(uv_write_t *w, int status)
{
    free(w);
}

/* Writes a frame: uv_try_write first (a small frame almost always leaves at
 * once, with no request and no callback), a queued write for the rest. */
static int link_write(gw_mbl *l, const uint8_t *p, size_t n)
{
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    int rc = uv_try_write(l->stream, &b, 1);
    if (rc == (int)n)
        return GW_OK;
    if (rc < 0 && rc != UV_EAGAIN)
        return GW_ERR;
    size_t done = rc > 0 ? (size_t)rc : 0;
    struct wreq *w = malloc(sizeof(*w));
    if (!w)
        return GW_ENOMEM;
    memcpy(w->buf, p + done, n - done);
    b = uv_buf_init((char *)w->buf, (unsigned)(n - done));
    if (uv_write(&w->w, l->stream, &b, 1, on_written)) {
        free(w);
        return GW_ERR;
    }
    return GW_OK;
}

static void on_timer(gw_tw_timer *t);

static void arm(gw_mbl *l, int64_t in_ms)
{
    gw_tw_start(gw_core_wheel(l->core), &l->tmr, (int64_t)uv_now(gw_core_loop(l->core)) + in_ms,
                on_timer);
}

static void send_pdu(gw_mbl *l, gw_mbs *s, const uint8_t *pdu, size_t len)
{
    uint8_t unit = (uint8_t)s->dev->conf.unit, adu[GW_MB_ADU_MAX];
    size_t n;
    l->req_fc = pdu[0];
    l->req_unit = unit;
    if (l->rtu) {
        n = gw_mb_adu_rtu(adu, unit, pdu, len);
        l->rlen = 0; /* whatever came before is not the answer */
    } else {
        n = gw_mb_adu_tcp(adu, ++l->tid, unit, pdu, len);
    }
    l->awaiting = 1;
    l->timeout_ms = s->dev->conf.timeout_ms;
    if (link_write(l, adu, n)) {
        GW_LOG_RL(GW_LOG_WARN, 10000, l->module, "[%s] write failed", s->dev->conf.id);
        link_broken(l, GW_ERR);
        return;
    }
    arm(l, l->timeout_ms);
}

/* Sends the next thing due on a ready link: the current session's writes,
 * then its next planned read; when it has nothing left, the next session. */
static void pump(gw_mbl *l)
{
    for (int guard = 0; guard < 100000; guard++) {
        if (l->state != L_READY || l->awaiting || l->guarding || l->released)
            return;
        if (!l->cur && !(l->cur = dequeue(l)))
            return;
        gw_mbs *s = l->cur;
        if (s->writes) {
            struct gw_mbw *w = s->writes;
            s->writes = w->next;
            s->nwrites--;
            l->cur_write = w;
            send_pdu(l, s, w->pdu, w->len);
            return;
        }
        const gw_mb_request *q = gw_mb_poll_current(&s->poll);
        if (q) {
            uint8_t pdu[5];
            gw_mb_poll_sent(&s->poll);
            send_pdu(l, s, pdu, gw_mb_pdu_read(pdu, q->fc, q->addr, q->count));
            return;
        }
        if (s->poll.in_cycle)
            gw_mb_poll_finish(&s->poll);
        if (l->cur == s && !s->writes)
            l->cur = NULL;
    }
}

/* ---- Receiving ---- */

/* The answer to the transaction in flight (pdu, or status < 0 for a frame
 * that was there but broken). */
static void on_answer(gw_mbl *l, const uint8_t *pdu, size_t len, int status)
{
    gw_tw_stop(&l->tmr);
    l->awaiting = 0;
    gw_mbs *s = l->cur;
    if (l->cur_write) {
        struct gw_mbw *w = l->cur_write;
        l->cur_write = NULL;
        int rc = status ? status : gw_mb_write_answer(w->pdu, w->len, pdu, len);
        write_end(l->module, s, w, rc, NULL);
    } else if (s) {
        int done = status ? gw_mb_poll_result(&s->poll, status, NULL, 0)
                          : gw_mb_poll_answer(&s->poll, pdu, len);
        if (done)
            gw_mb_poll_finish(&s->poll);
    }
    pump(l);
}

/* Handles the complete MBAP frames at the start of buf; returns the bytes
 * they took, or -1 when the link broke or stopped being ready on the way. */
static long parse_tcp(gw_mbl *l, const uint8_t *buf, size_t len)
{
    size_t at = 0;
    while (len - at >= 8) {
        const uint8_t *f = buf + at;
        size_t n = (size_t)(f[4] << 8 | f[5]);
        if (f[2] != 0 || f[3] != 0 || n < 2 || n > 254) {
            /* Not Modbus TCP: nothing after this can be trusted. */
            GW_LOG_RL(GW_LOG_WARN, 10000, l->module, "[%s] garbage from the device; reconnecting",
                      l->owner ? l->owner->dev->conf.id : "?");
            gw_mb_stats_get()->malformed++;
            if (l->owner)
                l->owner->dev->pc.malformed++;
            link_broken(l, GW_EMALFORMED);
            return -1;
        }
        if (len - at < 6 + n)
            break;
        at += 6 + n;
        uint16_t tid = (uint16_t)(f[0] << 8 | f[1]);
        if (!l->awaiting || tid != l->tid || f[6] != l->req_unit || (f[7] & 0x7F) != l->req_fc)
            continue; /* a late answer to a request we gave up on, or not ours */
        on_answer(l, f + 7, n - 1, 0);
        if (l->state != L_READY)
            return -1;
    }
    return (long)at;
}

/* Bytes read on a modbus-tcp link (in the shared buffer): a frame carried
 * over from the last read is completed first, then the frames in place, and
 * what is left of a cut frame (less than GW_MB_ADU_MAX bytes: a longer one
 * would be complete) is carried to the next read. */
static void tcp_bytes(gw_mbl *l, const uint8_t *p, size_t n)
{
    if (l->rlen) {
        size_t old = l->rlen, take = n < l->rcap - old ? n : l->rcap - old;
        memcpy(l->rbuf + old, p, take);
        l->rlen += take;
        long used = parse_tcp(l, l->rbuf, l->rlen);
        if (used < 0)
            return;
        if ((size_t)used < old)
            return; /* still cut: every byte went to the carry (take == n) */
        l->rlen = 0;
        p += (size_t)used - old;
        n -= (size_t)used - old;
    }
    long used = parse_tcp(l, p, n);
    if (used < 0 || (size_t)used == n)
        return;
    if (!l->rbuf && !(l->rbuf = malloc(l->rcap))) {
        link_broken(l, GW_ENOMEM);
        return;
    }
    memcpy(l->rbuf, p + used, n - (size_t)used);
    l->rlen = n - (size_t)used;
}

static void parse_rtu(gw_mbl *l)
{
    if (!l->awaiting) {
        l->rlen = 0; /* stray or late bytes: nothing is asked */
        return;
    }
    if (l->rbuf[0] != l->req_unit) {
        l->rlen = 0;
        on_answer(l, NULL, 0, GW_EMALFORMED);
        return;
    }
    int n = gw_mb_rtu_answer_len(l->rbuf, l->rlen, l->req_fc);
    if (n == 0 || (n > 0 && l->rlen < (size_t)n))
        return;
    size_t len = l->rlen;
    l->rlen = 0;
    if (n < 0) {
        on_answer(l, NULL, 0, GW_EMALFORMED);
        return;
    }
    if (gw_mb_rtu_check(l->rbuf, (size_t)n)) {
        GW_LOG_RL(GW_LOG_WARN, 10000, l->module, "[%s] CRC error",
                  l->cur ? l->cur->dev->conf.id : "?");
        on_answer(l, NULL, 0, GW_ECRC);
        return;
    }
    (void)len;
    on_answer(l, l->rbuf + 1, (size_t)n - 3, 0);
}

static void link_bytes(gw_mbl *l, const uint8_t *p, size_t n)
{
    while (n > 0 && l->state == L_READY) {
        size_t room = l->rcap - l->rlen, take = n < room ? n : room;
        memcpy(l->rbuf + l->rlen, p, take);
        l->rlen += take;
        p += take;
        n -= take;
        parse_rtu(l);
        if (l->rlen == l->rcap)
            l->rlen = 0; /* cannot happen with valid frames: drop rather than stall */
    }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    gw_mbl *l = h->data;
    if (l->rtu) {
        buf->base = (char *)l->rbuf + l->rlen;
        buf->len = l->rcap - l->rlen;
    } else {
        buf->base = (char *)rx_shared;
        buf->len = sizeof(rx_shared);
    }
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    gw_mbl *l = st->data;
    if (n < 0) {
        GW_LOG_RL(GW_LOG_INFO, 10000, l->module, "[%s] connection closed: %s",
                  l->owner ? l->owner->dev->conf.id : "?", uv_strerror((int)n));
        link_broken(l, GW_ERR);
        return;
    }
    if (!l->rtu) {
        tcp_bytes(l, (const uint8_t *)buf->base, (size_t)n);
        return;
    }
    /* The bytes are already in rbuf (on_alloc). */
    l->rlen += (size_t)n;
    parse_rtu(l);
    if (l->rlen == l->rcap)
        l->rlen = 0;
}

/* ---- Timer: response timeout, connect timeout, guard ---- */

static void on_timer(gw_tw_timer *t)
{
    gw_mbl *l = t->data;
    if (l->state == L_CONNECTING) {
        GW_LOG_RL(GW_LOG_INFO, 10000, l->module, "[%s] connect timed out",
                  l->owner ? l->owner->dev->conf.id : "?");
        link_broken(l, GW_EAGAIN);
        return;
    }
    if (l->guarding) {
        l->guarding = 0;
        l->rlen = 0;
        pump(l);
        return;
    }
    if (!l->awaiting)
        return;
    l->awaiting = 0;
    gw_mbs *s = l->cur;
    if (l->cur_write) {
        struct gw_mbw *w = l->cur_write;
        char why[64];
        l->cur_write = NULL;
        snprintf(why, sizeof(why), "no answer within %lld ms", (long long)l->timeout_ms);
        write_end(l->module, s, w, GW_EAGAIN, why);
    } else if (s) {
        /* Retry, skip this request, or give up the cycle (gw_mb_poll_timeout). */
        gw_mb_poll_timeout(&s->poll);
        if (!gw_mb_poll_current(&s->poll) && s->poll.in_cycle)
            gw_mb_poll_finish(&s->poll);
    }
    if (l->rtu && l->guard_ms > 0) {
        /* A late RTU answer has no transaction id to tell it apart: let the
         * line go quiet before the next request. */
        l->guarding = 1;
        arm(l, l->guard_ms);
        return;
    }
    pump(l);
}

/* ---- Connection (dial-out) ---- */

static void on_tcp_closed(uv_handle_t *h);

/* The connection failed or was lost: every running cycle on it fails. */
static void link_broken(gw_mbl *l, int code)
{
    gw_tw_stop(&l->tmr);
    l->awaiting = 0;
    l->guarding = 0;
    l->rlen = 0;
    if (!l->inbound) {
        if (l->tcp_open && !uv_is_closing((uv_handle_t *)&l->tcp))
            uv_close((uv_handle_t *)&l->tcp, on_tcp_closed);
        if (l->state != L_IDLE)
            l->connect_not_before = now_ms(l) + gw_backoff_next(&l->bo);
    }
    l->state = L_IDLE;
    gw_mbs *s = l->cur;
    const char *why = "connection lost or refused";
    if (l->cur_write)
        write_end(l->module, s, l->cur_write, GW_EAGAIN, why);
    l->cur_write = NULL;
    l->cur = NULL;
    if (s) {
        fail_cmd_writes(s, why);
        fail_cycle(s, code);
    }
    for (int guard = 0; guard < 100000 && (s = dequeue(l)); guard++) {
        fail_cmd_writes(s, why);
        fail_cycle(s, code);
    }
    if (l->owner && !l->released)
        fail_cmd_writes(l->owner, why);
}

static void on_connected(uv_connect_t *c, int status)
{
    gw_mbl *l = c->data;
    free(c); /* the request lives only while connecting (see link_connect) */
    if (status == UV_ECANCELED || l->state != L_CONNECTING)
        return;
    gw_tw_stop(&l->tmr);
    if (status < 0) {
        GW_LOG_RL(GW_LOG_INFO, 10000, l->module, "[%s] connect failed: %s",
                  l->owner ? l->owner->dev->conf.id : "?", uv_strerror(status));
        link_broken(l, GW_EAGAIN);
        return;
    }
    gw_backoff_reset(&l->bo);
    l->state = L_READY;
    uv_tcp_nodelay(&l->tcp, 1);
    uv_read_start((uv_stream_t *)&l->tcp, on_alloc, on_read);
    pump(l);
}

/* Starts connecting unless the backoff says not yet. Returns 0 when a
 * connection is up or on its way. */
static int link_connect(gw_mbl *l)
{
    if (l->state != L_IDLE)
        return GW_OK;
    if (l->tcp_open || now_ms(l) < l->connect_not_before)
        return GW_EAGAIN; /* the old handle is still closing, or backing off */
    /* The connect request is allocated for the connect only: a link spends
     * its life connected, and 10,000 idle requests are a megabyte. */
    uv_connect_t *creq = malloc(sizeof(*creq));
    if (!creq)
        return GW_ENOMEM;
    if (uv_tcp_init(gw_core_loop(l->core), &l->tcp)) {
        free(creq);
        return GW_ERR;
    }
    l->tcp.data = l;
    l->tcp_open = 1;
    l->owner->closing++;
    l->stream = (uv_stream_t *)&l->tcp;
    creq->data = l;
    l->state = L_CONNECTING;
    if (uv_tcp_connect(creq, &l->tcp, &l->addr.sa, on_connected)) {
        free(creq); /* not submitted: no callback */
        link_broken(l, GW_EAGAIN);
        return GW_ERR;
    }
    arm(l, l->owner->dev->conf.timeout_ms);
    return GW_OK;
}

/* ---- Sessions ---- */

static void sess_finalize(gw_mbs *s)
{
    gw_mb_poll_free(&s->poll);
    gw_mb_stats_unref();
    if (s->on_closed)
        s->on_closed(s);
}

/* A link with the receive buffer its framing needs (see RBUF_RTU). */
static gw_mbl *link_new(int rtu)
{
    gw_mbl *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->rtu = rtu;
    l->rcap = rtu ? RBUF_RTU : GW_MB_ADU_MAX;
    if (rtu && !(l->rbuf = malloc(l->rcap))) {
        free(l);
        return NULL;
    }
    return l;
}

static void link_free(gw_mbl *l)
{
    free(l->rbuf);
    free(l);
}

static void on_tcp_closed(uv_handle_t *h)
{
    gw_mbl *l = h->data;
    gw_mbs *s = l->owner;
    l->tcp_open = 0;
    if (l->released)
        link_free(l);
    if (--s->closing == 0 && s->detached)
        sess_finalize(s);
}

static void on_poll(gw_tw_timer *t)
{
    gw_mbs *s = t->data;
    int64_t now = (int64_t)uv_now(gw_core_loop(s->core)), iv = s->dev->interval_ms;
    int64_t due = s->next_due;
    s->next_due = gw_mb_next_due(due, now, iv, &s->dev->polls_skipped);
    gw_tw_start(gw_core_wheel(s->core), &s->poll_tmr, s->next_due, on_poll);
    if (gw_mb_poll_begin(&s->poll, due))
        return;
    gw_mbl *l = s->link;
    if (!l || (s->owns_link && link_connect(l) != GW_OK)) {
        fail_cycle(s, GW_EAGAIN);
        return;
    }
    enqueue(l, s);
    pump(l);
}

int gw_mbs__init(gw_mbs *s, gw_core *core, gw_device *dev, const char *module, int grouped,
                 char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    s->dev = dev;
    s->core = core;
    int rc = gw_mb_poll_init(&s->poll, core, dev, module, err, errlen);
    if (rc)
        return rc;
    gw_mb_stats_ref(core);
    s->poll_tmr.data = s;
    int64_t now = (int64_t)uv_now(gw_core_loop(core));
    s->next_due = grouped
                      ? gw_mb_slot_due(dev->conf.id, now, dev->interval_ms,
                                       gw_mb_slots(gw_core_device_count(core), dev->interval_ms))
                      : gw_mb_first_due(dev->conf.id, now, dev->interval_ms);
    gw_tw_start(gw_core_wheel(core), &s->poll_tmr, s->next_due, on_poll);
    dev->online = -1;
    return GW_OK;
}

/* A device's `connect: tcp://HOST:PORT`. */
static int connect_addr(const char *connect, struct sockaddr_storage *ss)
{
    if (strncmp(connect, "tcp://", 6) != 0)
        return GW_EINVAL;
    return gw_sockaddr_parse(connect + 6, 0, ss);
}

int gw_mbs__dial(gw_mbs *s, int rtu, int64_t guard_ms, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    if (connect_addr(s->dev->conf.connect, &ss)) {
        snprintf(err, errlen, "device %s: connect '%s' needs tcp:// with a numeric IP and port",
                 s->dev->conf.id, s->dev->conf.connect);
        return GW_EINVAL;
    }
    gw_mbl *l = link_new(rtu);
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return GW_ENOMEM;
    }
    memcpy(&l->addr, &ss, ss.ss_family == AF_INET6 ? sizeof(l->addr.in6) : sizeof(l->addr.in4));
    l->core = s->core;
    l->module = s->poll.module;
    l->guard_ms = guard_ms;
    l->owner = s;
    int64_t iv = s->dev->interval_ms;
    uint64_t seed = 0;
    for (const char *c = s->dev->conf.id; *c; c++)
        seed = seed * 131 + (uint8_t)*c;
    gw_backoff_init(&l->bo, iv, iv * 30 > 300000 ? 300000 : iv * 30, seed);
    l->tmr.data = l;
    s->link = l;
    s->owns_link = 1;
    return GW_OK;
}

/* Takes a session off its link: its transaction in flight is forgotten (a
 * late answer is dropped) and its running cycle fails. */
static void unbind(gw_mbs *s)
{
    gw_mbl *l = s->link;
    if (!l)
        return;
    unqueue(l, s);
    if (l->cur == s) {
        l->cur = NULL;
        if (l->awaiting) {
            l->awaiting = 0;
            gw_tw_stop(&l->tmr);
            if (l->rtu && l->guard_ms > 0 && l->state == L_READY) {
                l->guarding = 1;
                arm(l, l->guard_ms);
            }
        }
        if (l->cur_write)
            write_end(l->module, s, l->cur_write, GW_EAGAIN, "the device's link went away");
        l->cur_write = NULL;
    }
    s->link = NULL;
    if (!s->detached)
        fail_cycle(s, GW_EAGAIN);
    pump(l);
}

void gw_mbs__close(gw_mbs *s)
{
    s->detached = 1;
    gw_tw_stop(&s->poll_tmr);
    while (s->writes) {
        struct gw_mbw *w = s->writes;
        s->writes = w->next;
        free(w);
    }
    s->nwrites = 0;
    if (s->owns_link) {
        gw_mbl *l = s->link;
        gw_tw_stop(&l->tmr);
        free(l->cur_write);
        l->cur_write = NULL;
        s->link = NULL;
        if (l->tcp_open) {
            /* The link goes when its handle is closed (on_tcp_closed). */
            l->released = 1;
            if (!uv_is_closing((uv_handle_t *)&l->tcp))
                uv_close((uv_handle_t *)&l->tcp, on_tcp_closed);
        } else {
            link_free(l);
        }
    } else {
        unbind(s);
    }
    if (s->closing == 0)
        sess_finalize(s);
}

/* Queues a write of point = value; cmd: a platform command waits for it. */
static int queue_write(gw_mbs *s, const char *point, double value, int cmd)
{
    if (s->detached)
        return GW_EINVAL;
    if (s->nwrites >= GW_MB_WRITES_MAX)
        return GW_EFULL;
    uint8_t fc, data[GW_MB_WRITE_MAX];
    uint16_t addr, count;
    size_t len;
    int rc = gw_profile_encode_write(s->poll.profile, point, value, &fc, &addr, &count, data, &len);
    if (rc)
        return rc;
    struct gw_mbw *w = calloc(1, sizeof(*w));
    if (!w)
        return GW_ENOMEM;
    w->len = gw_mb_pdu_write(w->pdu, fc, addr, count, data, len);
    gw_strlcpy(w->point, point, sizeof(w->point));
    w->value = value;
    w->cmd = cmd;
    if (!w->len) {
        free(w);
        return GW_EINVAL;
    }
    struct gw_mbw **tail = &s->writes;
    while (*tail)
        tail = &(*tail)->next;
    *tail = w;
    s->nwrites++;
    gw_mbl *l = s->link;
    if (l) {
        if (s->owns_link)
            link_connect(l);
        enqueue(l, s);
        pump(l);
    }
    return GW_OK;
}

int gw_mbs__write(gw_mbs *s, const char *point, double value)
{
    return queue_write(s, point, value, 0);
}

int gw_mbs__command(gw_mbs *s, const char *verb, const char *arg, char *reply, size_t replylen)
{
    char point[32];
    double value;
    if (strcmp(verb, "write")) {
        snprintf(reply, replylen, "unknown verb '%.32s' (write)", verb);
        return GW_EUNSUPPORTED;
    }
    if (gw_mb_write_arg(s->poll.profile, arg, point, sizeof(point), &value, reply, replylen))
        return GW_EINVAL;
    /* Refused at once while the device cannot be reached, rather than held
     * until a reconnection the platform cannot see. */
    gw_mbl *l = s->link;
    if (!l || (s->owns_link && link_connect(l) != GW_OK)) {
        snprintf(reply, replylen, "device not connected");
        return GW_EAGAIN;
    }
    int rc = queue_write(s, point, value, 1);
    if (rc == GW_EINVAL)
        snprintf(reply, replylen, "value %g does not fit point '%s' (its range or type)", value,
                 point);
    else if (rc == GW_EFULL)
        snprintf(reply, replylen, "busy: %d writes queued", GW_MB_WRITES_MAX);
    else if (rc)
        snprintf(reply, replylen, "write not queued (%d)", rc);
    else
        snprintf(reply, replylen, "write %s=%g queued", point, value);
    return rc == GW_EFULL ? GW_EAGAIN : rc;
}

/* ---- Links accepted by the DTU listener ---- */

gw_mbl *gw_mbl__accepted(gw_core *core, uv_stream_t *stream, int64_t guard_ms)
{
    gw_mbl *l = link_new(1);
    if (!l)
        return NULL;
    l->core = core;
    l->module = "modbus-dtu";
    l->inbound = 1;
    l->stream = stream;
    l->guard_ms = guard_ms;
    l->state = L_READY;
    l->tmr.data = l;
    return l;
}

void gw_mbl__feed(gw_mbl *l, const uint8_t *p, size_t n)
{
    link_bytes(l, p, n);
}

void gw_mbl__bind(gw_mbl *l, gw_mbs *s)
{
    if (s->link == l)
        return;
    unbind(s);
    s->link = l;
    if (l && s->writes) {
        enqueue(l, s);
        pump(l);
    }
}

void gw_mbl__release(gw_mbl *l)
{
    l->released = 1;
    link_broken(l, GW_ERR);
    gw_tw_stop(&l->tmr);
    link_free(l);
}

/* ---- The modbus-tcp protocol ---- */

static void mbt_closed(gw_mbs *s)
{
    free(s);
}

static int mbt_attach(gw_core *core, gw_device *dev, char *err, size_t errlen)
{
    gw_mbs *s = malloc(sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return GW_ENOMEM;
    }
    int rc = gw_mbs__init(s, core, dev, "modbus-tcp", 1, err, errlen);
    if (rc) {
        free(s);
        return rc;
    }
    s->on_closed = mbt_closed;
    rc = gw_mbs__dial(s, 0, 0, err, errlen);
    if (rc) {
        gw_mbs__close(s);
        return rc;
    }
    dev->proto_state = s;
    return GW_OK;
}

static void mbt_detach(gw_device *dev)
{
    gw_mbs *s = dev->proto_state;
    if (!s)
        return;
    dev->proto_state = NULL;
    gw_mbs__close(s);
}

static int mbt_set_interval(gw_device *dev, int64_t interval_ms)
{
    gw_mbs *s = dev->proto_state;
    if (!s || interval_ms <= 0)
        return GW_EINVAL;
    dev->interval_ms = interval_ms;
    int64_t now = (int64_t)uv_now(gw_core_loop(s->core));
    s->next_due = now;
    gw_tw_start(gw_core_wheel(s->core), &s->poll_tmr, now, on_poll);
    return GW_OK;
}

static int mbt_write(gw_device *dev, const char *point, double value)
{
    gw_mbs *s = dev->proto_state;
    return s ? gw_mbs__write(s, point, value) : GW_EINVAL;
}

static int mbt_command(gw_device *dev, const char *verb, const char *arg, char *reply,
                       size_t replylen)
{
    gw_mbs *s = dev->proto_state;
    if (!s) {
        snprintf(reply, replylen, "device not running");
        return GW_EAGAIN;
    }
    return gw_mbs__command(s, verb, arg, reply, replylen);
}

static int mbt_check(const gw_device *dev, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    if (connect_addr(dev->conf.connect, &ss)) {
        snprintf(err, errlen,
                 "key 'connect' must be tcp://IP:PORT with a numeric address (got '%s')",
                 dev->conf.connect);
        return GW_EINVAL;
    }
    if (gw_mb_check_profile(dev, err, errlen))
        return GW_EINVAL;
    return GW_OK;
}

const gw_protocol gw_proto_modbus_tcp = {
    .name = "modbus-tcp",
    .version = "1.1",
    .description = "Modbus TCP client, non-blocking, one request in flight per device",
    .check_device = mbt_check,
    .device_type = gw_mb_device_type,
    .attach = mbt_attach,
    .detach = mbt_detach,
    .set_interval = mbt_set_interval,
    .write = mbt_write,
    .command = mbt_command,
    .command_answers = 1,
};
