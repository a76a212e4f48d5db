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

/* A link. 10,000 modbus-tcp devices each hold one (issue 17), so it keeps
 * only what it cannot find elsewhere: a dial-out link lives in its session's
 * block (gw_mbs__new) and takes its core, its device and its timer from that
 * session; the address is parsed again from the device's `connect` for each
 * connection attempt; the backoff keeps only its state (limits follow from
 * the poll interval). An inbound link has the DTU listener's stream instead
 * of a TCP handle, and a timer of its own. */
struct gw_mbl {
    union {
        struct {
            uv_tcp_t tcp;
            /* Loop time the response, connect or guard timeout falls due, -1
             * none: it runs on the session's timer (sess_timer). */
            int64_t at;
        } out;
        struct {
            uv_stream_t *stream; /* the DTU listener's */
            gw_core *core;
            gw_tw_timer tmr; /* response timeout, guard */
        } in;
    } u;
    gw_mbs *owner; /* dial-out: the one session */
    gw_mbs *cur;   /* session whose transaction or cycle runs */
    gw_mbs *qhead; /* sessions waiting their turn (few: the devices behind a DTU) */
    struct gw_mbw *cur_write;
    uint8_t *rbuf; /* RTU: RBUF_RTU bytes; TCP: the carry, NULL until needed */
    int64_t connect_not_before;
    int32_t guard_ms; /* RTU: quiet after a timeout (config: at most a minute) */
    uint16_t tid;     /* MBAP transaction id of the last request */
    uint16_t rlen;    /* bytes in rbuf (at most RBUF_RTU) */
    uint8_t req_fc;   /* function and unit of the request in flight: an answer must match */
    uint8_t req_unit;
    uint8_t bo_attempt; /* reconnect backoff: attempts so far (gw_backoff caps it at 62) */
    unsigned state : 2;
    unsigned rtu : 1;
    unsigned inbound : 1; /* the stream belongs to the DTU listener */
    unsigned tcp_open : 1;
    unsigned guarding : 1;
    unsigned awaiting : 1;
    unsigned released : 1;
};

struct wreq {
    uv_write_t w;
    uint8_t buf[GW_MB_ADU_MAX];
};

static void pump(gw_mbl *l);
static void link_broken(gw_mbl *l, int code);
static void resched(gw_mbs *s);

static gw_core *link_core(const gw_mbl *l)
{
    return l->inbound ? l->u.in.core : l->owner->poll.dev->core;
}

static uv_stream_t *link_stream(gw_mbl *l)
{
    return l->inbound ? l->u.in.stream : (uv_stream_t *)&l->u.out.tcp;
}

/* The log prefix: RTU framing is modbus-dtu's, MBAP modbus-tcp's. */
static const char *link_module(const gw_mbl *l)
{
    return l->rtu ? "modbus-dtu" : "modbus-tcp";
}

/* The device a dial-out link is for, for log lines. */
static const char *link_dev_id(const gw_mbl *l)
{
    return l->owner ? l->owner->poll.dev->conf.id : "?";
}

/* Room in rbuf: an RTU link accumulates, a TCP link carries one cut frame. */
static size_t link_rcap(const gw_mbl *l)
{
    return l->rtu ? RBUF_RTU : GW_MB_ADU_MAX;
}

static int64_t now_ms(gw_mbl *l)
{
    return (int64_t)uv_now(gw_core_loop(link_core(l)));
}

/* ---- Queue ---- */

static void enqueue(gw_mbl *l, gw_mbs *s)
{
    if (s->queued || l->cur == s)
        return;
    s->queued = 1;
    s->qnext = NULL;
    gw_mbs **pp = &l->qhead;
    while (*pp)
        pp = &(*pp)->qnext;
    *pp = s;
}

static gw_mbs *dequeue(gw_mbl *l)
{
    gw_mbs *s = l->qhead;
    if (!s)
        return NULL;
    l->qhead = s->qnext;
    s->qnext = NULL;
    s->queued = 0;
    return s;
}

static void unqueue(gw_mbl *l, gw_mbs *s)
{
    if (!s->queued)
        return;
    gw_mbs **pp = &l->qhead;
    while (*pp && *pp != s)
        pp = &(*pp)->qnext;
    if (*pp)
        *pp = s->qnext;
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
    gw_device *d = s ? s->poll.dev : NULL;
    if (rc > 0)
        snprintf(reason, sizeof(reason), "exception %02X %s", (unsigned)rc,
                 gw_mb_exception_name(rc));
    else
        snprintf(reason, sizeof(reason), "%s", why ? why : "malformed answer");
    if (rc)
        GW_WARN(module, "[%s] write of %s failed: %s", d ? d->conf.id : "?", w->point, reason);
    else
        GW_INFO(module, "[%s] wrote %s", d ? d->conf.id : "?", w->point);
    if (w->cmd && d) {
        int bad = gw_mb_write_result(result, sizeof(result), w->point, w->value, w->pdu, w->len);
        gw_core_command_result(d->core, d, "write", rc ? reason : NULL, bad ? NULL : result);
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
        write_end(s->poll.dev->conf.protocol, s, w, GW_EAGAIN, why);
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
    uv_stream_t *st = link_stream(l);
    int rc = uv_try_write(st, &b, 1);
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
    if (uv_write(&w->w, st, &b, 1, on_written)) {
        free(w);
        return GW_ERR;
    }
    return GW_OK;
}

static void link_timeout(gw_mbl *l);

static void on_link_timer(gw_tw_timer *t)
{
    link_timeout(t->data);
}

/* Arms the link's timeout (response, connect or guard) in_ms from now: an
 * inbound link's own timer; a dial-out link's falls due on its session's. */
static void arm(gw_mbl *l, int64_t in_ms)
{
    int64_t at = now_ms(l) + in_ms;
    if (l->inbound) {
        gw_tw_start(gw_core_wheel(l->u.in.core), &l->u.in.tmr, at, on_link_timer);
    } else {
        l->u.out.at = at;
        resched(l->owner);
    }
}

static void disarm(gw_mbl *l)
{
    if (l->inbound) {
        gw_tw_stop(&l->u.in.tmr);
    } else if (l->u.out.at >= 0) {
        l->u.out.at = -1;
        resched(l->owner);
    }
}

static void send_pdu(gw_mbl *l, gw_mbs *s, const uint8_t *pdu, size_t len)
{
    gw_device *d = s->poll.dev;
    uint8_t unit = (uint8_t)d->conf.unit, adu[GW_MB_ADU_MAX];
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
    if (link_write(l, adu, n)) {
        GW_LOG_RL(GW_LOG_WARN, 10000, link_module(l), "[%s] write failed", d->conf.id);
        link_broken(l, GW_ERR);
        return;
    }
    arm(l, d->conf.timeout_ms);
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
    disarm(l);
    l->awaiting = 0;
    gw_mbs *s = l->cur;
    if (l->cur_write) {
        struct gw_mbw *w = l->cur_write;
        l->cur_write = NULL;
        int rc = status ? status : gw_mb_write_answer(w->pdu, w->len, pdu, len);
        write_end(link_module(l), s, w, rc, NULL);
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
            GW_LOG_RL(GW_LOG_WARN, 10000, link_module(l),
                      "[%s] garbage from the device; reconnecting", link_dev_id(l));
            gw_mb_stats_get()->malformed++;
            if (l->owner)
                l->owner->poll.dev->pc.malformed++;
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
        size_t old = l->rlen, take = n < link_rcap(l) - old ? n : link_rcap(l) - old;
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
    if (!l->rbuf && !(l->rbuf = malloc(link_rcap(l)))) {
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
        GW_LOG_RL(GW_LOG_WARN, 10000, link_module(l), "[%s] CRC error",
                  l->cur ? l->cur->poll.dev->conf.id : "?");
        on_answer(l, NULL, 0, GW_ECRC);
        return;
    }
    (void)len;
    on_answer(l, l->rbuf + 1, (size_t)n - 3, 0);
}

static void link_bytes(gw_mbl *l, const uint8_t *p, size_t n)
{
    while (n > 0 && l->state == L_READY) {
        size_t room = link_rcap(l) - l->rlen, take = n < room ? n : room;
        memcpy(l->rbuf + l->rlen, p, take);
        l->rlen += take;
        p += take;
        n -= take;
        parse_rtu(l);
        if (l->rlen == link_rcap(l))
            l->rlen = 0; /* cannot happen with valid frames: drop rather than stall */
    }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    gw_mbl *l = h->data;
    if (l->rtu) {
        buf->base = (char *)l->rbuf + l->rlen;
        buf->len = link_rcap(l) - l->rlen;
    } else {
        buf->base = (char *)rx_shared;
        buf->len = sizeof(rx_shared);
    }
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    gw_mbl *l = st->data;
    if (n < 0) {
        GW_LOG_RL(GW_LOG_INFO, 10000, link_module(l), "[%s] connection closed: %s", link_dev_id(l),
                  uv_strerror((int)n));
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
    if (l->rlen == link_rcap(l))
        l->rlen = 0;
}

/* ---- Timer: response timeout, connect timeout, guard ---- */

/* The link's timeout fell due (arm). */
static void link_timeout(gw_mbl *l)
{
    if (l->state == L_CONNECTING) {
        GW_LOG_RL(GW_LOG_INFO, 10000, link_module(l), "[%s] connect timed out", link_dev_id(l));
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
        snprintf(why, sizeof(why), "no answer within %lld ms",
                 (long long)(s ? s->poll.dev->conf.timeout_ms : 0));
        write_end(link_module(l), s, w, GW_EAGAIN, why);
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

/* The next reconnect delay: capped exponential with full jitter (gw_backoff)
 * from one poll interval up to 30 of them, at most 5 minutes. Only the
 * attempt count is kept per link: the limits follow from the interval, and
 * the jitter is drawn from the device's id and the attempt, which spreads
 * devices that failed together as a kept generator state would. */
static int64_t backoff_next(gw_mbl *l)
{
    const gw_device *d = l->owner->poll.dev;
    int64_t iv = d->interval_ms;
    uint64_t seed = 0;
    for (const char *c = d->conf.id; *c; c++)
        seed = seed * 131 + (uint8_t)*c;
    gw_backoff b;
    gw_backoff_init(&b, iv, iv * 30 > 300000 ? 300000 : iv * 30,
                    seed ^ ((uint64_t)l->bo_attempt + 1) * 0x9E3779B97F4A7C15ull);
    b.attempt = l->bo_attempt;
    int64_t delay = gw_backoff_next(&b);
    l->bo_attempt = (uint8_t)b.attempt;
    return delay;
}

/* The connection failed or was lost: every running cycle on it fails. */
static void link_broken(gw_mbl *l, int code)
{
    disarm(l);
    l->awaiting = 0;
    l->guarding = 0;
    l->rlen = 0;
    if (!l->inbound) {
        if (l->tcp_open && !uv_is_closing((uv_handle_t *)&l->u.out.tcp))
            uv_close((uv_handle_t *)&l->u.out.tcp, on_tcp_closed);
        if (l->state != L_IDLE)
            l->connect_not_before = now_ms(l) + backoff_next(l);
    }
    l->state = L_IDLE;
    gw_mbs *s = l->cur;
    const char *why = "connection lost or refused";
    if (l->cur_write)
        write_end(link_module(l), s, l->cur_write, GW_EAGAIN, why);
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
    disarm(l);
    if (status < 0) {
        GW_LOG_RL(GW_LOG_INFO, 10000, link_module(l), "[%s] connect failed: %s", link_dev_id(l),
                  uv_strerror(status));
        link_broken(l, GW_EAGAIN);
        return;
    }
    l->bo_attempt = 0;
    l->state = L_READY;
    uv_tcp_nodelay(&l->u.out.tcp, 1);
    uv_read_start((uv_stream_t *)&l->u.out.tcp, on_alloc, on_read);
    pump(l);
}

/* A device's `connect: tcp://HOST:PORT`. */
static int connect_addr(const char *connect, struct sockaddr_storage *ss)
{
    if (strncmp(connect, "tcp://", 6) != 0)
        return GW_EINVAL;
    return gw_sockaddr_parse(connect + 6, 0, ss);
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
    gw_device *d = l->owner->poll.dev;
    struct sockaddr_storage ss;
    if (connect_addr(d->conf.connect, &ss))
        return GW_EINVAL; /* checked at attach: cannot happen */
    uv_connect_t *creq = malloc(sizeof(*creq));
    if (!creq)
        return GW_ENOMEM;
    if (uv_tcp_init(gw_core_loop(d->core), &l->u.out.tcp)) {
        free(creq);
        return GW_ERR;
    }
    l->u.out.tcp.data = l;
    l->tcp_open = 1;
    l->owner->closing++;
    creq->data = l;
    l->state = L_CONNECTING;
    if (uv_tcp_connect(creq, &l->u.out.tcp, (const struct sockaddr *)&ss, on_connected)) {
        free(creq); /* not submitted: no callback */
        link_broken(l, GW_EAGAIN);
        return GW_ERR;
    }
    arm(l, d->conf.timeout_ms);
    return GW_OK;
}

/* ---- Sessions ---- */

static void sess_finalize(gw_mbs *s)
{
    if (s->owns_link)
        free(s->link->rbuf);
    gw_mb_poll_free(&s->poll);
    gw_mb_stats_unref();
    free(s); /* the block of gw_mbs__new: the transport's struct and the link */
}

static void on_tcp_closed(uv_handle_t *h)
{
    gw_mbl *l = h->data;
    gw_mbs *s = l->owner;
    l->tcp_open = 0;
    if (--s->closing == 0 && s->detached)
        sess_finalize(s);
}

/* The poll falls due: the next one is scheduled and this cycle starts. */
static void poll_due(gw_mbs *s, int64_t now)
{
    gw_device *d = s->poll.dev;
    int64_t due = s->next_due;
    s->next_due = gw_mb_next_due(due, now, d->interval_ms, &d->polls_skipped);
    resched(s);
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

/* The session's one timer: its next poll and, with a dial-out link, that
 * link's timeout, whichever comes first. Either may fall due while the other
 * is armed (a poll while a transaction or a connect is in flight: the cycle
 * still runs, so the poll counts as skipped, as with two timers); when both
 * are due the link's goes first, so a cycle that timed out can end before the
 * next one starts. */
static void on_sess_timer(gw_tw_timer *t)
{
    gw_mbs *s = t->data;
    int64_t now = gw_tw_now(gw_core_wheel(s->poll.dev->core));
    gw_mbl *l = s->owns_link ? s->link : NULL;
    if (l && l->u.out.at >= 0 && l->u.out.at <= now) {
        l->u.out.at = -1;
        link_timeout(l);
    }
    if (!s->detached && s->next_due <= now)
        poll_due(s, now);
    resched(s);
}

/* Arms the session's timer for the first of its next poll and its link's
 * timeout. */
static void resched(gw_mbs *s)
{
    if (s->detached)
        return;
    int64_t at = s->next_due;
    if (s->owns_link && s->link->u.out.at >= 0 && s->link->u.out.at < at)
        at = s->link->u.out.at;
    if (s->tmr.armed && s->tmr.at == at)
        return;
    gw_tw_start(gw_core_wheel(s->poll.dev->core), &s->tmr, at, on_sess_timer);
}

/* A session lives in the block its transport's struct starts with, followed
 * by a dial-out link's room: one allocation per device. */
#define LINK_AT(size) (((size) + _Alignof(gw_mbl) - 1) / _Alignof(gw_mbl) * _Alignof(gw_mbl))

gw_mbs *gw_mbs__new(size_t size, int dial)
{
    if (size < sizeof(gw_mbs))
        size = sizeof(gw_mbs);
    size_t at = LINK_AT(size);
    gw_mbs *s = calloc(1, dial ? at + sizeof(gw_mbl) : size);
    if (s && dial) {
        s->link = (gw_mbl *)((char *)s + at);
        s->owns_link = 1;
    }
    return s;
}

size_t gw_mbs__dial_bytes(void)
{
    return LINK_AT(sizeof(gw_mbs)) + sizeof(gw_mbl);
}

int gw_mbs__init(gw_mbs *s, gw_device *dev, int grouped, char *err, size_t errlen)
{
    int rc = gw_mb_poll_init(&s->poll, dev, err, errlen);
    if (rc)
        return rc;
    gw_mb_stats_ref(dev->core);
    s->tmr.data = s;
    if (s->owns_link)
        s->link->u.out.at = -1;
    int64_t now = (int64_t)uv_now(gw_core_loop(dev->core));
    s->next_due =
        grouped ? gw_mb_slot_due(dev->conf.id, now, dev->interval_ms,
                                 gw_mb_slots(gw_core_device_count(dev->core), dev->interval_ms))
                : gw_mb_first_due(dev->conf.id, now, dev->interval_ms);
    resched(s);
    dev->online = -1;
    return GW_OK;
}

int gw_mbs__dial(gw_mbs *s, int rtu, int64_t guard_ms, char *err, size_t errlen)
{
    gw_device *d = s->poll.dev;
    struct sockaddr_storage ss;
    if (!s->owns_link || connect_addr(d->conf.connect, &ss)) {
        snprintf(err, errlen, "device %s: connect '%s' needs tcp:// with a numeric IP and port",
                 d->conf.id, d->conf.connect);
        return GW_EINVAL;
    }
    gw_mbl *l = s->link;
    l->rtu = rtu != 0;
    l->guard_ms = (int32_t)(guard_ms > INT32_MAX ? INT32_MAX : guard_ms);
    l->owner = s;
    if (rtu && !(l->rbuf = malloc(RBUF_RTU))) {
        snprintf(err, errlen, "out of memory");
        return GW_ENOMEM;
    }
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
            disarm(l);
            if (l->rtu && l->guard_ms > 0 && l->state == L_READY) {
                l->guarding = 1;
                arm(l, l->guard_ms);
            }
        }
        if (l->cur_write)
            write_end(link_module(l), s, l->cur_write, GW_EAGAIN, "the device's link went away");
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
    gw_tw_stop(&s->tmr);
    while (s->writes) {
        struct gw_mbw *w = s->writes;
        s->writes = w->next;
        free(w);
    }
    s->nwrites = 0;
    if (s->owns_link) {
        gw_mbl *l = s->link;
        l->u.out.at = -1;
        free(l->cur_write);
        l->cur_write = NULL;
        if (l->tcp_open) {
            /* The block goes when the handle is closed (on_tcp_closed). */
            l->released = 1;
            if (!uv_is_closing((uv_handle_t *)&l->u.out.tcp))
                uv_close((uv_handle_t *)&l->u.out.tcp, on_tcp_closed);
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
    gw_mbl *l = calloc(1, sizeof(*l));
    if (!l || !(l->rbuf = malloc(RBUF_RTU))) {
        free(l);
        return NULL;
    }
    l->rtu = 1;
    l->inbound = 1;
    l->u.in.core = core;
    l->u.in.stream = stream;
    l->u.in.tmr.data = l;
    l->guard_ms = (int32_t)(guard_ms > INT32_MAX ? INT32_MAX : guard_ms);
    l->state = L_READY;
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
    gw_tw_stop(&l->u.in.tmr);
    free(l->rbuf);
    free(l);
}

/* ---- The modbus-tcp protocol ---- */

static int mbt_attach(gw_core *core, gw_device *dev, char *err, size_t errlen)
{
    gw_mbs *s = gw_mbs__new(sizeof(*s), 1);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return GW_ENOMEM;
    }
    int rc = gw_mbs__init(s, dev, 1, err, errlen);
    if (rc) {
        free(s);
        return rc;
    }
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
    s->next_due = (int64_t)uv_now(gw_core_loop(dev->core));
    resched(s);
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
