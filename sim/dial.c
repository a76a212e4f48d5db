/* A station that dials its centre: the link shared by the SL651 and HJ212
 * kinds. One timer per station drives everything: the kind's schedule
 * (scenario time), resends of unconfirmed frames and reconnects (wall-clock
 * time, since they stand for the network and the centre's answers). Every
 * frame goes out through the scenario's faults here, so both kinds misbehave
 * the same way. Connections are allocated per attempt and freed in their
 * close callback; the dial itself outlives them (freed by the kind after the
 * loop has closed every handle). */
#include "sim/clock.h"
#include "sim/dial.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

enum { D_DOWN = 0, D_CONNECTING, D_UP };

#define DIAL_OUT_MAX (64 * 1024) /* unsent bytes before the connection is dropped */
#define DIAL_MAX_WAIT_MS 3600000 /* the timer re-checks at least hourly */

typedef struct dial_link {
    union {
        uv_handle_t h;
        uv_stream_t s;
        uv_tcp_t tcp;
        uv_udp_t udp;
    } u;
    uv_connect_t creq;
    sim_dial *d;
    int udp;
    size_t out_pending;
} dial_link;

typedef struct dial_wreq {
    uv_write_t req;
    dial_link *l;
    size_t len;
    uint8_t data[];
} dial_wreq;

/* The station clock (pure; here because both kinds use it). */
void sim_dt_from_secs(double secs, sim_dt *out)
{
    double whole = floor(secs);
    time_t tt = (time_t)whole;
    struct tm tm;
    memset(out, 0, sizeof *out);
    if (!gmtime_r(&tt, &tm))
        return;
    out->year = tm.tm_year + 1900;
    out->mon = tm.tm_mon + 1;
    out->day = tm.tm_mday;
    out->hour = tm.tm_hour;
    out->min = tm.tm_min;
    out->sec = tm.tm_sec;
    out->ms = (int)((secs - whole) * 1000);
    if (out->ms > 999)
        out->ms = 999;
}

static uint64_t drng(sim_dial *d)
{
    d->rng ^= d->rng << 13;
    d->rng ^= d->rng >> 7;
    d->rng ^= d->rng << 17;
    return d->rng;
}

static int active(const sim_dial *d, const sim_rfault *f, double t)
{
    if (t < f->from || (f->to >= 0 && t >= f->to))
        return 0;
    if (f->nonly == 0)
        return 1;
    for (int i = 0; i < f->nonly; i++)
        if (f->only[i] == d->n)
            return 1;
    return 0;
}

/* A per-frame fault fires on every `every`th frame of the device. */
static int hits(const sim_dial *d, const sim_rfault *f, sim_rfault_kind kind, double t)
{
    return f->kind == kind && active(d, f, t) && (f->every == 0 || d->nout % f->every == 0);
}

double sim_dial_skew(const sim_dial *d, double t)
{
    double s = 0;
    for (int i = 0; i < d->conf->nfaults; i++)
        if (d->conf->faults[i].kind == SIM_RF_CLOCK_SKEW && active(d, &d->conf->faults[i], t))
            s += d->conf->faults[i].offset_s;
    return s;
}

static void arm(sim_dial *d);

static void handle_closed(uv_handle_t *h)
{
    sim_dial *d = h->data;
    d->handles--;
    free(h);
}

static void link_closed(uv_handle_t *h)
{
    dial_link *l = (dial_link *)h;
    l->d->handles--;
    free(l);
}

/* Closes the current connection (if any); reconnects after conf->reconnect
 * (wall-clock, jittered to 50..100 %) unless a drop window says later. */
static void link_down(sim_dial *d)
{
    dial_link *l = d->link;
    if (!l)
        return;
    if (d->state == D_UP)
        d->disconnects++;
    d->link = NULL;
    d->state = D_DOWN;
    d->rlen = 0;
    uv_close(&l->u.h, link_closed);
    double jitter = 0.5 + 0.5 * (double)(drng(d) % 1000) / 1000.0;
    uv_loop_t *loop = d->ctx->loop;
    d->reconnect_ms = uv_now(loop) + (uint64_t)(d->conf->reconnect * 1000 * jitter);
}

static void on_written(uv_write_t *req, int status)
{
    dial_wreq *w = (dial_wreq *)req;
    w->l->out_pending -= w->len;
    if (status < 0 && w->l->d->link == w->l)
        link_down(w->l->d);
    free(w);
}

static void raw_send(sim_dial *d, const uint8_t *data, size_t len)
{
    dial_link *l = d->link;
    size_t off = 0;
    if (!l || d->state != D_UP || len == 0)
        return;
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    if (l->udp) {
        /* One datagram per frame; a full socket buffer loses it, like a radio link. */
        if (uv_udp_try_send(&l->u.udp, &b, 1, NULL) == (int)len)
            d->bytes_out += len;
        return;
    }
    if (l->out_pending == 0) {
        int n = uv_try_write(&l->u.s, &b, 1);
        if (n == (int)len) {
            d->bytes_out += len;
            return;
        }
        if (n < 0 && n != UV_EAGAIN) {
            link_down(d);
            return;
        }
        if (n > 0)
            off = (size_t)n;
    }
    if (l->out_pending + (len - off) > DIAL_OUT_MAX) {
        link_down(d);
        return;
    }
    dial_wreq *w = malloc(sizeof *w + (len - off));
    if (!w) {
        link_down(d);
        return;
    }
    w->l = l;
    w->len = len - off;
    memcpy(w->data, data + off, len - off);
    b = uv_buf_init((char *)w->data, (unsigned)w->len);
    if (uv_write(&w->req, &l->u.s, &b, 1, on_written) < 0) {
        free(w);
        link_down(d);
        return;
    }
    l->out_pending += w->len;
    d->bytes_out += len;
}

/* One frame through the faults. Returns 1 if bytes of it went out. */
static int transmit(sim_dial *d, const uint8_t *data, size_t len, double t)
{
    const sim_rtu_conf *cf = d->conf;
    uint8_t buf[SIM_DIAL_FRAME + 64];
    if (d->state != D_UP || len > SIM_DIAL_FRAME)
        return 0;
    d->nout++;
    for (int i = 0; i < cf->nfaults; i++)
        if (cf->faults[i].kind == SIM_RF_SILENT && active(d, &cf->faults[i], t)) {
            d->faults[SIM_RF_SILENT]++;
            return 0;
        }
    for (int i = 0; i < cf->nfaults; i++)
        if (cf->faults[i].every && hits(d, &cf->faults[i], SIM_RF_DROP, t)) {
            d->faults[SIM_RF_DROP]++;
            link_down(d);
            return 0;
        }
    for (int i = 0; i < cf->nfaults; i++)
        if (hits(d, &cf->faults[i], SIM_RF_GARBAGE, t)) {
            /* Random bytes that never hold the frame start: a receiver that
             * hunts for the start skips exactly these. */
            uint8_t g[1024];
            uint32_t n = cf->faults[i].bytes;
            for (uint32_t j = 0; j < n; j++) {
                uint8_t b = (uint8_t)drng(d);
                g[j] = b == d->ops->frame_start ? (uint8_t)(b ^ 0x01) : b;
            }
            raw_send(d, g, n);
            d->faults[SIM_RF_GARBAGE]++;
        }
    memcpy(buf, data, len);
    size_t n = len;
    for (int i = 0; i < cf->nfaults; i++)
        if (d->ops->malform && hits(d, &cf->faults[i], SIM_RF_MALFORMED, t)) {
            int m = d->ops->malform(data, len, buf, sizeof buf);
            if (m > 0) {
                n = (size_t)m;
                d->faults[SIM_RF_MALFORMED]++;
            } else {
                memcpy(buf, data, len);
            }
            break;
        }
    for (int i = 0; i < cf->nfaults; i++)
        if (hits(d, &cf->faults[i], SIM_RF_BAD_CRC, t)) {
            d->ops->bad_crc(buf, n);
            d->faults[SIM_RF_BAD_CRC]++;
            break;
        }
    for (int i = 0; i < cf->nfaults; i++)
        if (hits(d, &cf->faults[i], SIM_RF_TRUNCATED, t)) {
            n = n / 2 ? n / 2 : 1;
            d->faults[SIM_RF_TRUNCATED]++;
            break;
        }
    raw_send(d, buf, n);
    d->frames++;
    for (int i = 0; i < cf->nfaults; i++)
        if (hits(d, &cf->faults[i], SIM_RF_DUPLICATE, t)) {
            raw_send(d, buf, n);
            d->faults[SIM_RF_DUPLICATE]++;
            break;
        }
    return 1;
}

int sim_dial_send(sim_dial *d, const uint8_t *frame, size_t len, double t, uint64_t key,
                  int resends)
{
    if (d->state != D_UP) {
        d->lost++;
        return 0;
    }
    if (!transmit(d, frame, len, t))
        return 0;
    if (!key)
        return 1;
    /* Keep a copy for resends; a full table gives up on the oldest. */
    sim_dial_pending *slot = NULL;
    for (int i = 0; i < SIM_DIAL_PENDING; i++)
        if (!d->pend[i].key) {
            slot = &d->pend[i];
            break;
        }
    if (!slot) {
        slot = &d->pend[0];
        for (int i = 1; i < SIM_DIAL_PENDING; i++)
            if (d->pend[i].due_ms < slot->due_ms)
                slot = &d->pend[i];
        d->unacked++;
        free(slot->data);
        slot->data = NULL;
        slot->key = 0;
    }
    slot->data = malloc(len);
    if (!slot->data)
        return 1;
    memcpy(slot->data, frame, len);
    slot->len = (uint16_t)len;
    slot->key = key;
    slot->tries = 0;
    slot->resends = resends;
    slot->due_ms = uv_now(d->ctx->loop) + (uint64_t)(d->conf->confirm_timeout * 1000);
    return 1;
}

int sim_dial_ack(sim_dial *d, uint64_t key)
{
    for (int i = 0; i < SIM_DIAL_PENDING; i++)
        if (key && d->pend[i].key == key) {
            free(d->pend[i].data);
            d->pend[i].data = NULL;
            d->pend[i].key = 0;
            d->acks++;
            return 1;
        }
    d->acks_unmatched++;
    return 0;
}

static void pending_check(sim_dial *d, double t, uint64_t now)
{
    if (d->state != D_UP)
        return; /* overdue frames wait for the link */
    for (int i = 0; i < SIM_DIAL_PENDING && d->state == D_UP; i++) {
        sim_dial_pending *p = &d->pend[i];
        if (!p->key || p->due_ms > now)
            continue;
        if (p->tries >= p->resends) {
            d->unacked++;
            free(p->data);
            p->data = NULL;
            p->key = 0;
            continue;
        }
        /* The same bytes again: same serial number, same send time. */
        p->tries++;
        d->resends++;
        p->due_ms = now + (uint64_t)(d->conf->confirm_timeout * 1000);
        transmit(d, p->data, p->len, t);
    }
}

/* ---- connections ---- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    dial_link *l = (dial_link *)h;
    sim_dial *d = l->d;
    if (l->udp)
        d->rlen = 0; /* a datagram is a frame of its own */
    if (d->rlen == sizeof d->rbuf) {
        /* A full buffer without one frame in it: throw it away. */
        d->bad_in++;
        d->rlen = 0;
    }
    buf->base = (char *)d->rbuf + d->rlen;
    buf->len = sizeof d->rbuf - d->rlen;
}

static void got_bytes(sim_dial *d, size_t n)
{
    d->bytes_in += n;
    d->rlen += n;
    size_t used = d->ops->on_bytes(d, d->rbuf, d->rlen);
    if (used > d->rlen)
        used = d->rlen;
    memmove(d->rbuf, d->rbuf + used, d->rlen - used);
    d->rlen -= used;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    dial_link *l = (dial_link *)s;
    sim_dial *d = l->d;
    if (d->link != l)
        return;
    if (nread < 0) {
        link_down(d);
        arm(d);
        return;
    }
    if (nread > 0)
        got_bytes(d, (size_t)nread);
    if (d->link == l)
        arm(d); /* a confirm may have cleared a deadline */
}

static void on_recv(uv_udp_t *u, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
                    unsigned flags)
{
    dial_link *l = (dial_link *)u;
    sim_dial *d = l->d;
    if (d->link != l || nread <= 0)
        return;
    got_bytes(d, (size_t)nread);
}

static int peer_addr(const sim_rtu_conf *cf, struct sockaddr_storage *ss)
{
    if (strchr(cf->host, ':'))
        return uv_ip6_addr(cf->host, (int)cf->port, (struct sockaddr_in6 *)ss);
    return uv_ip4_addr(cf->host, (int)cf->port, (struct sockaddr_in *)ss);
}

static void link_up(sim_dial *d)
{
    d->state = D_UP;
    d->connections++;
    if (d->ops->on_up)
        d->ops->on_up(d, sim_now(d->ctx));
}

static void on_connect(uv_connect_t *req, int status)
{
    dial_link *l = req->data;
    sim_dial *d = l->d;
    if (d->link != l)
        return; /* cancelled by a stop or a drop */
    if (status < 0) {
        d->connect_failures++;
        link_down(d);
        arm(d);
        return;
    }
    uv_tcp_nodelay(&l->u.tcp, 1);
    if (uv_read_start(&l->u.s, on_alloc, on_read) < 0) {
        link_down(d);
        arm(d);
        return;
    }
    link_up(d);
    arm(d);
}

static void dial_connect(sim_dial *d)
{
    struct sockaddr_storage ss;
    uv_loop_t *loop = d->ctx->loop;
    dial_link *l = calloc(1, sizeof *l);
    if (!l) {
        d->reconnect_ms = uv_now(loop) + 1000;
        return;
    }
    l->d = d;
    l->udp = d->conf->udp;
    l->creq.data = l;
    peer_addr(d->conf, &ss); /* checked at start */
    if (l->udp) {
        uv_udp_init(loop, &l->u.udp);
        d->handles++;
        d->link = l;
        d->state = D_CONNECTING;
        if (uv_udp_connect(&l->u.udp, (const struct sockaddr *)&ss) < 0 ||
            uv_udp_recv_start(&l->u.udp, on_alloc, on_recv) < 0) {
            d->connect_failures++;
            link_down(d);
            return;
        }
        link_up(d);
        return;
    }
    uv_tcp_init(loop, &l->u.tcp);
    d->handles++;
    d->link = l;
    d->state = D_CONNECTING;
    if (uv_tcp_connect(&l->creq, &l->u.tcp, (const struct sockaddr *)&ss, on_connect) < 0) {
        d->connect_failures++;
        link_down(d);
    }
}

/* ---- the timer ---- */

static void on_timer(uv_timer_t *tm)
{
    sim_dial *d = tm->data;
    uv_loop_t *loop = d->ctx->loop;
    double t = sim_now(d->ctx);
    uint64_t now = uv_now(loop);
    const sim_rtu_conf *cf = d->conf;
    if (d->stopping)
        return;
    /* A drop window takes the link down for its whole length. */
    for (int i = 0; i < cf->nfaults; i++) {
        const sim_rfault *f = &cf->faults[i];
        if (f->kind != SIM_RF_DROP || f->every || !active(d, f, t))
            continue;
        double until = f->to < 0 ? INFINITY : f->to;
        if (until > d->down_until)
            d->down_until = until;
        if (d->link) {
            d->faults[SIM_RF_DROP]++;
            link_down(d);
        }
    }
    if (d->state == D_DOWN && !d->link && now >= d->reconnect_ms && t >= d->down_until)
        dial_connect(d);
    pending_check(d, t, now);
    /* The loop's clock is cached, so the timer can fire a hair early: a
     * deadline within 2 ms of wall time counts as reached. */
    if (d->next_t - t <= 0.002 * d->ctx->speed)
        d->next_t = d->ops->tick(d, t > d->next_t ? t : d->next_t);
    arm(d);
}

static void arm(sim_dial *d)
{
    if (d->stopping || !d->timer)
        return;
    uv_loop_t *loop = d->ctx->loop;
    uv_update_time(loop);
    uint64_t now = uv_now(loop);
    double t = sim_now(d->ctx);
    double wait = DIAL_MAX_WAIT_MS;
    double dt = (d->next_t - t) / d->ctx->speed * 1000;
    if (dt < wait)
        wait = dt;
    if (d->state == D_UP)
        for (int i = 0; i < SIM_DIAL_PENDING; i++)
            if (d->pend[i].key) {
                double w = d->pend[i].due_ms > now ? (double)(d->pend[i].due_ms - now) : 0;
                if (w < wait)
                    wait = w;
            }
    if (d->state == D_DOWN && !d->link) {
        double w = d->reconnect_ms > now ? (double)(d->reconnect_ms - now) : 0;
        if (d->down_until > t && isfinite(d->down_until)) {
            double wd = (d->down_until - t) / d->ctx->speed * 1000;
            if (wd > w)
                w = wd;
        } else if (d->down_until > t) {
            w = DIAL_MAX_WAIT_MS;
        }
        if (w < wait)
            wait = w;
    }
    /* Drop windows to come: wake at their start. */
    for (int i = 0; i < d->conf->nfaults; i++) {
        const sim_rfault *f = &d->conf->faults[i];
        if (f->kind == SIM_RF_DROP && !f->every && f->from > t) {
            double w = (f->from - t) / d->ctx->speed * 1000;
            if (w < wait)
                wait = w;
        }
    }
    if (wait < 0)
        wait = 0;
    uv_timer_start(d->timer, on_timer, (uint64_t)ceil(wait), 0);
}

int sim_dial_start(sim_dial *d)
{
    struct sockaddr_storage ss;
    if (peer_addr(d->conf, &ss) < 0) {
        fprintf(stderr, "sim: %s: connect: '%s' is not an IP address\n", d->id, d->conf->host);
        return SIM_EINVAL;
    }
    uv_timer_t *tm = malloc(sizeof *tm);
    if (!tm)
        return SIM_ENOMEM;
    uv_timer_init(d->ctx->loop, tm);
    tm->data = d;
    d->timer = tm;
    d->handles++;
    d->rng = 0x9E3779B97F4A7C15ull ^ ((uint64_t)d->n * 0xBF58476D1CE4E5B9ull) ^ d->k;
    if (!d->rng)
        d->rng = 1;
    d->state = D_DOWN;
    d->reconnect_ms = 0;
    arm(d);
    return SIM_OK;
}

void sim_dial_stop(sim_dial *d)
{
    if (d->stopping)
        return;
    d->stopping = 1;
    if (d->timer) {
        uv_close(d->timer, handle_closed);
        d->timer = NULL;
    }
    if (d->link) {
        dial_link *l = d->link;
        d->link = NULL;
        d->state = D_DOWN;
        uv_close(&l->u.h, link_closed);
    }
}

int sim_dial_closed(const sim_dial *d)
{
    return d->handles == 0;
}

void sim_dial_free(sim_dial *d)
{
    for (int i = 0; i < SIM_DIAL_PENDING; i++) {
        free(d->pend[i].data);
        d->pend[i].data = NULL;
        d->pend[i].key = 0;
    }
}

void sim_dial_stats(const sim_dial *d, void *obj)
{
    cJSON *o = obj;
    char conn[96];
    int pending = 0;
    for (int i = 0; i < SIM_DIAL_PENDING; i++)
        pending += d->pend[i].key != 0;
    snprintf(conn, sizeof conn, "%s%s%s:%u", strchr(d->conf->host, ':') ? "[" : "", d->conf->host,
             strchr(d->conf->host, ':') ? "]" : "", d->conf->port);
    cJSON_AddStringToObject(o, "connect", conn);
    cJSON_AddStringToObject(o, "transport", d->conf->udp ? "udp" : "tcp");
    cJSON_AddBoolToObject(o, "connected", d->state == D_UP);
    cJSON_AddNumberToObject(o, "frames", (double)d->frames);
    cJSON_AddNumberToObject(o, "bytes_out", (double)d->bytes_out);
    cJSON_AddNumberToObject(o, "bytes_in", (double)d->bytes_in);
    cJSON_AddNumberToObject(o, "confirms", (double)d->acks);
    cJSON_AddNumberToObject(o, "confirms_unmatched", (double)d->acks_unmatched);
    cJSON_AddNumberToObject(o, "resends", (double)d->resends);
    cJSON_AddNumberToObject(o, "unconfirmed", (double)d->unacked);
    cJSON_AddNumberToObject(o, "waiting_confirm", pending);
    cJSON_AddNumberToObject(o, "lost", (double)d->lost);
    cJSON_AddNumberToObject(o, "connections", (double)d->connections);
    cJSON_AddNumberToObject(o, "connect_failures", (double)d->connect_failures);
    cJSON_AddNumberToObject(o, "disconnects", (double)d->disconnects);
    cJSON_AddNumberToObject(o, "bad_frames_in", (double)d->bad_in);
    cJSON_AddNumberToObject(o, "requests_in", (double)d->requests_in);
    cJSON *fo = cJSON_AddObjectToObject(o, "faults");
    for (int i = 0; i < SIM_RF__COUNT; i++)
        cJSON_AddNumberToObject(fo, sim_rfault_names[i], (double)d->faults[i]);
}
