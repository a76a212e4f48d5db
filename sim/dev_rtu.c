/* The serial Modbus kinds. Both carry a whole RS-485 bus: the devices of every
 * group naming the same `bus` answer on one line, each at its own unit id.
 *   modbus-rtu  the line is a pseudo-terminal: the sim creates the pair (and
 *               symlinks the slave end) or serves an existing tty path;
 *   modbus-dtu  the line is a TCP connection the sim dials, like a 4G DTU:
 *               registration packet, heartbeats, reconnect with backoff, then
 *               raw RTU frames both ways.
 * Requests are framed by rtu.c (length rules, then 3.5 characters of silence);
 * registers, writes, counters and fault decisions come from the shared device
 * model in dev_modbus.c. A link lives in the state of the first group on its
 * bus (the owner), which opens, closes and frees it. */
#include "sim/dev_modbus.h"
#include "sim/kind.h"
#include "sim/rtu.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>
#include <uv.h>

#define RTU_OUTQ_MAX 64       /* delayed answers waiting per link */
#define RTU_TX_MAX 4096       /* unsent bytes on a pty before answers are dropped */
#define RTU_TCP_OUT_MAX 65536 /* unsent bytes on a DTU connection before it is dropped */
#define RTU_READS_PER_WAKE 16 /* bounded read loop on a pty */
#define RTU_RX_MAX (2 * SIM_RTU_MAX)
#define RTU_REOPEN_MS 1000 /* a lost tty path is opened again this often */

struct rtu_link;

typedef struct rtu_dev {
    sim_mbdev m;
    struct rtu_link *link;
    uint8_t unit;
} rtu_dev;

typedef struct rtu_out {
    struct rtu_out *next;
    uint64_t due_ms;
    size_t len;
    uint8_t data[SIM_RTU_MAX];
} rtu_out;

enum { T_DOWN = 0, T_CONNECTING, T_UP, T_CLOSING };

typedef struct rtu_link {
    sim_ctx *ctx;
    const sim_link_conf *conf;
    int dtu;
    int stopping;
    rtu_dev *units[256];
    uint64_t silence_ms;
    uint64_t rng;
    /* rtu: the line */
    int fd;      /* pty master or the tty path; -1 closed */
    int keep_fd; /* our own descriptor on a created pty's slave: no hang-up when clients leave */
    char pty[256];
    int linked; /* we made conf->pty_link */
    uv_poll_t poll;
    int polling, poll_events;
    uint8_t tx[RTU_TX_MAX];
    size_t txlen;
    /* dtu: the connection */
    uv_tcp_t tcp;
    uv_connect_t creq;
    int tstate;
    double backoff_s;
    size_t tcp_pending;
    uv_timer_t hb;
    /* both */
    uv_timer_t idle; /* silence after the last byte received */
    uv_timer_t outq_timer;
    uv_timer_t retry; /* dtu: reconnect; rtu: reopen a lost tty path */
    rtu_out *outq;
    int nout;
    uint64_t busy_until_ms; /* baud emulation: the line is sending until then */
    uint8_t rx[RTU_RX_MAX];
    size_t rxlen;
    /* counters */
    uint64_t bytes_in, bytes_out, frames, junk_bytes, bad_frames, unaddressed, broadcasts;
    uint64_t out_dropped, connects, connect_failures, disconnects, heartbeats, reopens;
} rtu_link;

typedef struct rtu_group {
    sim_group *g;
    sim_regindex ix;
    rtu_dev *devs;
    uint32_t ndevs;
    rtu_link *link;
    int owner;
} rtu_group;

/* ---- sending ---- */

static void link_down(rtu_link *L);

typedef struct tcp_wreq {
    uv_write_t req;
    rtu_link *link;
    size_t len;
    uint8_t data[];
} tcp_wreq;

static void tcp_written(uv_write_t *req, int status)
{
    tcp_wreq *w = (tcp_wreq *)req;
    w->link->tcp_pending -= w->len;
    if (status < 0 && status != UV_ECANCELED)
        link_down(w->link);
    free(w);
}

static void tcp_send(rtu_link *L, const uint8_t *data, size_t len)
{
    size_t off = 0;
    if (L->tstate != T_UP || len == 0)
        return;
    if (L->tcp_pending == 0) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
        int n = uv_try_write((uv_stream_t *)&L->tcp, &b, 1);
        if (n == (int)len) {
            L->bytes_out += len;
            return;
        }
        if (n < 0 && n != UV_EAGAIN) {
            link_down(L);
            return;
        }
        if (n > 0)
            off = (size_t)n;
    }
    if (L->tcp_pending + (len - off) > RTU_TCP_OUT_MAX) {
        link_down(L); /* the gateway stopped reading */
        return;
    }
    tcp_wreq *w = malloc(sizeof *w + (len - off));
    if (!w) {
        link_down(L);
        return;
    }
    w->link = L;
    w->len = len - off;
    memcpy(w->data, data + off, len - off);
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)w->len);
    if (uv_write(&w->req, (uv_stream_t *)&L->tcp, &b, 1, tcp_written) < 0) {
        free(w);
        link_down(L);
        return;
    }
    L->tcp_pending += w->len;
    L->bytes_out += len;
}

static void on_poll(uv_poll_t *h, int status, int events);

static void poll_set(rtu_link *L, int events)
{
    if (!L->polling || events == L->poll_events)
        return;
    L->poll_events = events;
    uv_poll_start(&L->poll, events, on_poll);
}

static void tty_flush(rtu_link *L)
{
    while (L->txlen) {
        ssize_t n = write(L->fd, L->tx, L->txlen);
        if (n <= 0)
            break;
        L->bytes_out += (uint64_t)n;
        memmove(L->tx, L->tx + n, L->txlen - (size_t)n);
        L->txlen -= (size_t)n;
    }
    poll_set(L, UV_READABLE | (L->txlen ? UV_WRITABLE : 0));
}

static void tty_send(rtu_link *L, const uint8_t *data, size_t len)
{
    if (L->fd < 0)
        return;
    if (L->txlen + len > sizeof L->tx) {
        L->out_dropped++; /* nobody drains the line */
        return;
    }
    memcpy(L->tx + L->txlen, data, len);
    L->txlen += len;
    tty_flush(L);
}

static void line_send(rtu_link *L, const uint8_t *data, size_t len)
{
    if (L->dtu)
        tcp_send(L, data, len);
    else
        tty_send(L, data, len);
}

static void outq_fire(uv_timer_t *t);

static void outq_arm(rtu_link *L)
{
    if (!L->outq)
        return;
    uint64_t now = uv_now(L->ctx->loop);
    uint64_t due = L->outq->due_ms;
    uv_timer_start(&L->outq_timer, outq_fire, due > now ? due - now : 0, 0);
}

static void outq_fire(uv_timer_t *t)
{
    rtu_link *L = t->data;
    uint64_t now = uv_now(t->loop);
    while (L->outq && L->outq->due_ms <= now) {
        rtu_out *o = L->outq;
        L->outq = o->next;
        L->nout--;
        line_send(L, o->data, o->len);
        free(o);
    }
    outq_arm(L);
}

static void outq_clear(rtu_link *L)
{
    while (L->outq) {
        rtu_out *o = L->outq;
        L->outq = o->next;
        free(o);
    }
    L->nout = 0;
}

/* Sends an answer now, after a late fault's delay, or after the time the
 * emulated line needs to carry it (10 bits a byte), whichever applies. */
static void send_answer(rtu_link *L, rtu_dev *d, const uint8_t *data, size_t len, double delay_s)
{
    uint64_t now = uv_now(L->ctx->loop);
    uint64_t due = now + (delay_s > 0 ? (uint64_t)(delay_s * 1000 + 0.5) : 0);
    if (L->conf->baud) {
        uint64_t tx = ((uint64_t)len * 10 * 1000 + L->conf->baud - 1) / L->conf->baud;
        if (due < L->busy_until_ms)
            due = L->busy_until_ms;
        due += tx;
        L->busy_until_ms = due;
    }
    if (due <= now) {
        line_send(L, data, len);
        return;
    }
    rtu_out *o;
    if (L->nout >= RTU_OUTQ_MAX || !(o = malloc(sizeof *o))) {
        d->m.late_dropped++;
        return;
    }
    o->due_ms = due;
    o->len = len;
    memcpy(o->data, data, len);
    rtu_out **pp = &L->outq;
    while (*pp && (*pp)->due_ms <= due)
        pp = &(*pp)->next;
    o->next = *pp;
    *pp = o;
    L->nout++;
    outq_arm(L);
}

/* ---- requests ---- */

/* One request frame with a good CRC (f[0..n), n >= 4). */
static void handle_frame(rtu_link *L, const uint8_t *f, size_t n, double t)
{
    sim_mb_req rq = {0, 0, f[0], f[1], f + 2, n - 4};
    uint8_t adu[SIM_MB_MAX_ADU], out[SIM_RTU_MAX];
    sim_fault_plan plan;

    L->frames++;
    if (rq.unit == 0) {
        /* Broadcast: every device carries out a write, nobody answers. */
        L->broadcasts++;
        if (rq.fc == 0x05 || rq.fc == 0x06 || rq.fc == 0x0F || rq.fc == 0x10)
            for (int u = 1; u < 256; u++)
                if (L->units[u])
                    sim_mbdev_broadcast(&L->units[u]->m, &rq, t);
        return;
    }
    rtu_dev *d = L->units[rq.unit];
    if (!d) {
        L->unaddressed++; /* no such device on the bus: silence, as on a real one */
        return;
    }
    size_t len = sim_mbdev_serve(&d->m, &rq, t, adu, sizeof adu, &plan);
    if (plan.action == SIM_ACT_DROP) {
        if (L->dtu)
            link_down(L);
        return; /* a serial line has no connection to drop: no answer */
    }
    if (plan.action != SIM_ACT_ANSWER || len == 0)
        return;
    size_t on = sim_rtu_from_adu(adu, len, out, sizeof out);
    if (on == 0)
        return;
    if (plan.garbage)
        sim_rtu_garbage(out, on, &L->rng);
    else if (plan.bad_crc)
        sim_rtu_corrupt_crc(out, on);
    if (plan.truncated)
        on = sim_rtu_truncated_len(on);
    send_answer(L, d, out, on, plan.delay_s);
}

static void rx_consume(rtu_link *L, size_t n)
{
    memmove(L->rx, L->rx + n, L->rxlen - n);
    L->rxlen -= n;
}

static void on_idle(uv_timer_t *t);

/* Frames and serves what rx holds; idle = the line has been silent. */
static void rx_feed(rtu_link *L, int idle)
{
    double t = sim_now(L->ctx);
    while (L->rxlen && (!L->dtu || L->tstate == T_UP)) {
        size_t skip, flen;
        int r = sim_rtu_split(L->rx, L->rxlen, idle, &skip, &flen);
        if (skip) {
            L->junk_bytes += skip;
            L->bad_frames++;
        }
        if (r == SIM_RTU_FRAME) {
            handle_frame(L, L->rx + skip, flen, t);
            if (L->dtu && L->tstate != T_UP)
                return; /* dropped: rx was cleared */
            rx_consume(L, skip + flen);
            continue;
        }
        rx_consume(L, r == SIM_RTU_JUNK ? L->rxlen : skip);
        break;
    }
    if (L->rxlen > SIM_RTU_MAX) {
        /* More than one frame of bytes that frame nothing yet: keep the newest. */
        size_t drop = L->rxlen - SIM_RTU_MAX;
        L->junk_bytes += drop;
        L->bad_frames++;
        rx_consume(L, drop);
    }
    if (L->rxlen && !idle)
        uv_timer_start(&L->idle, on_idle, L->silence_ms, 0);
    else
        uv_timer_stop(&L->idle);
}

static void on_idle(uv_timer_t *t)
{
    rtu_link *L = t->data;
    rx_feed(L, 1);
}

/* ---- modbus-rtu: the pty ---- */

static void tty_lost(rtu_link *L);

static void on_poll(uv_poll_t *h, int status, int events)
{
    rtu_link *L = h->data;
    if (status < 0) {
        tty_lost(L);
        return;
    }
    if (events & UV_WRITABLE)
        tty_flush(L);
    if (!(events & (UV_READABLE | UV_DISCONNECT)))
        return;
    int got = 0;
    for (int i = 0; i < RTU_READS_PER_WAKE; i++) {
        if (L->rxlen == sizeof L->rx)
            rx_feed(L, 0);
        ssize_t n = read(L->fd, L->rx + L->rxlen, sizeof L->rx - L->rxlen);
        if (n > 0) {
            L->bytes_in += (uint64_t)n;
            L->rxlen += (size_t)n;
            got = 1;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        tty_lost(L); /* EOF or EIO: the other end of the tty went away */
        return;
    }
    if (got)
        rx_feed(L, 0);
}

static int set_raw(int fd, uint32_t baud)
{
    struct termios tio;
    if (tcgetattr(fd, &tio) != 0)
        return -1;
    cfmakeraw(&tio);
    tio.c_cflag |= CLOCAL | CREAD;
    tio.c_cc[VMIN] = 1;
    tio.c_cc[VTIME] = 0;
    if (baud) {
        static const struct {
            uint32_t baud;
            speed_t s;
        } speeds[] = {{1200, B1200},   {2400, B2400},   {4800, B4800},   {9600, B9600},
                      {19200, B19200}, {38400, B38400}, {57600, B57600}, {115200, B115200}};
        for (size_t i = 0; i < sizeof speeds / sizeof speeds[0]; i++)
            if (speeds[i].baud == baud)
                cfsetspeed(&tio, speeds[i].s);
    }
    return tcsetattr(fd, TCSANOW, &tio);
}

static int tty_start_poll(rtu_link *L)
{
    int rc = uv_poll_init(L->ctx->loop, &L->poll, L->fd);
    if (rc < 0)
        return rc;
    L->poll.data = L;
    L->polling = 1;
    L->poll_events = UV_READABLE;
    return uv_poll_start(&L->poll, UV_READABLE, on_poll);
}

static int tty_open_path(rtu_link *L)
{
    L->fd = open(L->conf->path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (L->fd < 0)
        return -errno;
    set_raw(L->fd, L->conf->baud);
    snprintf(L->pty, sizeof L->pty, "%s", L->conf->path);
    return tty_start_poll(L);
}

static void on_reopen(uv_timer_t *t)
{
    rtu_link *L = t->data;
    if (L->stopping || L->fd >= 0)
        return;
    if (tty_open_path(L) == 0)
        L->reopens++;
    else if (L->fd >= 0) {
        close(L->fd);
        L->fd = -1;
    }
    if (L->fd < 0)
        uv_timer_start(&L->retry, on_reopen, RTU_REOPEN_MS, 0);
}

static void poll_closed(uv_handle_t *h)
{
    rtu_link *L = h->data;
    if (L->fd >= 0)
        close(L->fd);
    L->fd = -1;
    if (!L->stopping && L->conf->path[0])
        uv_timer_start(&L->retry, on_reopen, RTU_REOPEN_MS, 0);
}

/* The tty went away (an existing path whose owner, e.g. socat, exited): close
 * it and try to open the path again every second. A created pty never gets
 * here, since the sim holds its slave end open. */
static void tty_lost(rtu_link *L)
{
    if (!L->polling)
        return;
    L->polling = 0;
    L->rxlen = 0;
    L->txlen = 0;
    uv_timer_stop(&L->idle);
    uv_close((uv_handle_t *)&L->poll, poll_closed);
}

static int tty_create(rtu_link *L, const char *bus)
{
    L->fd = posix_openpt(O_RDWR | O_NOCTTY);
    if (L->fd < 0)
        return -errno;
    if (grantpt(L->fd) != 0 || unlockpt(L->fd) != 0 || ptsname_r(L->fd, L->pty, sizeof L->pty))
        return -errno;
    if (fcntl(L->fd, F_SETFL, fcntl(L->fd, F_GETFL) | O_NONBLOCK) != 0 ||
        fcntl(L->fd, F_SETFD, FD_CLOEXEC) != 0)
        return -errno;
    L->keep_fd = open(L->pty, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (L->keep_fd < 0)
        return -errno;
    if (set_raw(L->keep_fd, L->conf->baud) != 0)
        return -errno;
    const char *ln = L->conf->pty_link;
    if (ln[0]) {
        struct stat st;
        if (lstat(ln, &st) == 0) {
            if (!S_ISLNK(st.st_mode)) {
                fprintf(stderr, "sim: bus %s: %s exists and is not a symlink\n", bus, ln);
                return -EEXIST;
            }
            unlink(ln);
        }
        char dir[256];
        snprintf(dir, sizeof dir, "%s", ln);
        char *slash = strrchr(dir, '/');
        if (slash && slash != dir) {
            *slash = 0;
            mkdir(dir, 0755); /* one level, for /tmp/x/bus1; symlink says if it failed */
        }
        if (symlink(L->pty, ln) != 0)
            return -errno;
        L->linked = 1;
    }
    return tty_start_poll(L);
}

/* ---- modbus-dtu: the connection ---- */

static void dtu_connect(rtu_link *L);

static void on_retry(uv_timer_t *t)
{
    rtu_link *L = t->data;
    if (!L->stopping && L->tstate == T_DOWN)
        dtu_connect(L);
}

static void tcp_closed(uv_handle_t *h)
{
    rtu_link *L = h->data;
    L->tstate = T_DOWN;
    if (L->stopping)
        return;
    uv_timer_start(&L->retry, on_retry, (uint64_t)(L->backoff_s * 1000 + 0.5), 0);
    L->backoff_s *= 2;
    if (L->backoff_s > L->conf->reconnect_max_s)
        L->backoff_s = L->conf->reconnect_max_s;
}

/* Closes the connection (peer gone, write failed, or a drop fault); the
 * close callback schedules the next attempt. Pending answers are lost. */
static void link_down(rtu_link *L)
{
    if (L->tstate != T_UP && L->tstate != T_CONNECTING)
        return;
    if (L->tstate == T_UP)
        L->disconnects++;
    L->tstate = T_CLOSING;
    L->rxlen = 0;
    uv_timer_stop(&L->hb);
    uv_timer_stop(&L->idle);
    uv_timer_stop(&L->outq_timer);
    outq_clear(L);
    uv_close((uv_handle_t *)&L->tcp, tcp_closed);
}

static void on_hb(uv_timer_t *t)
{
    rtu_link *L = t->data;
    if (L->tstate != T_UP)
        return;
    L->heartbeats++;
    tcp_send(L, L->conf->hb, L->conf->hb_len);
}

static void dtu_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    rtu_link *L = h->data;
    if (L->rxlen == sizeof L->rx)
        rx_feed(L, 0);
    buf->base = (char *)L->rx + L->rxlen;
    buf->len = sizeof L->rx - L->rxlen;
}

static void dtu_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    rtu_link *L = s->data;
    if (nread < 0) {
        link_down(L);
        return;
    }
    if (nread == 0 || L->tstate != T_UP)
        return;
    L->bytes_in += (uint64_t)nread;
    L->rxlen += (size_t)nread;
    rx_feed(L, 0);
}

static void on_connect(uv_connect_t *req, int status)
{
    rtu_link *L = req->data;
    if (L->stopping || L->tstate != T_CONNECTING)
        return;
    if (status < 0) {
        L->connect_failures++;
        L->tstate = T_CLOSING;
        uv_close((uv_handle_t *)&L->tcp, tcp_closed);
        return;
    }
    L->tstate = T_UP;
    L->connects++;
    L->backoff_s = L->conf->reconnect_s;
    L->busy_until_ms = 0;
    uv_tcp_nodelay(&L->tcp, 1);
    if (L->conf->reg_len) {
        uint8_t reg[SIM_LINK_DATA_MAX];
        size_t n = L->conf->reg_len;
        if (L->conf->register_tmpl) {
            sim_format_id((const char *)L->conf->reg, L->conf->number, (char *)reg, sizeof reg);
            n = strlen((char *)reg);
        } else {
            memcpy(reg, L->conf->reg, n);
        }
        tcp_send(L, reg, n);
    }
    if (L->conf->heartbeat_s > 0) {
        uint64_t ms = (uint64_t)(L->conf->heartbeat_s * 1000 + 0.5);
        uv_timer_start(&L->hb, on_hb, ms, ms);
    }
    if (L->tstate == T_UP && uv_read_start((uv_stream_t *)&L->tcp, dtu_alloc, dtu_read) < 0)
        link_down(L);
}

static int parse_hostport(const char *s, struct sockaddr_storage *ss)
{
    char host[128];
    const char *colon = strrchr(s, ':');
    size_t hl = (size_t)(colon - s);
    if (!colon || hl >= sizeof host)
        return UV_EINVAL;
    memcpy(host, s, hl);
    host[hl] = 0;
    if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = 0;
    }
    if (!strcmp(host, "localhost"))
        strcpy(host, "127.0.0.1");
    int port = atoi(colon + 1); /* checked 1..65535 by the scenario parser */
    if (strchr(host, ':'))
        return uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss);
    return uv_ip4_addr(host, port, (struct sockaddr_in *)ss);
}

static void dtu_connect(rtu_link *L)
{
    struct sockaddr_storage ss;
    int rc = parse_hostport(L->conf->connect, &ss);
    uv_tcp_init(L->ctx->loop, &L->tcp);
    L->tcp.data = L;
    L->creq.data = L;
    L->tstate = T_CONNECTING;
    if (rc == 0)
        rc = uv_tcp_connect(&L->creq, &L->tcp, (const struct sockaddr *)&ss, on_connect);
    if (rc < 0) {
        L->connect_failures++;
        L->tstate = T_CLOSING;
        uv_close((uv_handle_t *)&L->tcp, tcp_closed);
    }
}

/* ---- the kinds ---- */

static rtu_link *link_new(sim_ctx *ctx, sim_group *g, int dtu)
{
    rtu_link *L = calloc(1, sizeof *L);
    if (!L)
        return NULL;
    L->ctx = ctx;
    L->conf = &g->link;
    L->dtu = dtu;
    L->fd = L->keep_fd = -1;
    L->rng = 0x9E3779B97F4A7C15ull ^ (uint64_t)g->line;
    double s = L->conf->silence_s;
    if (s <= 0)
        s = L->conf->baud ? 35.0 / L->conf->baud : 35.0 / 9600;
    if (s < 0.00175)
        s = 0.00175;
    L->silence_ms = (uint64_t)(s * 1000 + 0.999);
    L->backoff_s = L->conf->reconnect_s;
    uv_timer_init(ctx->loop, &L->idle);
    uv_timer_init(ctx->loop, &L->outq_timer);
    uv_timer_init(ctx->loop, &L->retry);
    uv_timer_init(ctx->loop, &L->hb);
    L->idle.data = L->outq_timer.data = L->retry.data = L->hb.data = L;
    return L;
}

static int serial_start(sim_ctx *ctx, sim_group *g, int dtu)
{
    rtu_group *rg = calloc(1, sizeof *rg);
    if (!rg)
        return SIM_ENOMEM;
    g->kstate = rg;
    rg->g = g;
    rg->devs = calloc(g->count, sizeof *rg->devs);
    if (!rg->devs || sim_regindex_build(&rg->ix, g) != SIM_OK)
        return SIM_ENOMEM;
    /* The first group on the bus owns the link; later ones join it. */
    sim_scenario *scn = ctx->scn;
    for (int i = 0; i < scn->ngroups && &scn->groups[i] != g; i++) {
        sim_group *h = &scn->groups[i];
        if (h->kind == g->kind && !strcmp(h->link.bus, g->link.bus) && h->kstate) {
            rg->link = ((rtu_group *)h->kstate)->link;
            break;
        }
    }
    if (!rg->link) {
        rg->owner = 1;
        rg->link = link_new(ctx, g, dtu);
        if (!rg->link)
            return SIM_ENOMEM;
    }
    for (uint32_t k = 0; k < g->count; k++) {
        rtu_dev *d = &rg->devs[k];
        rg->ndevs = k + 1;
        if (sim_mbdev_init(&d->m, g, &rg->ix, k) != SIM_OK)
            return SIM_ENOMEM;
        d->m.serial = 1;
        d->link = rg->link;
        d->unit = (uint8_t)(g->unit + (int)k);
        rg->link->units[d->unit] = d;
    }
    if (!rg->owner)
        return SIM_OK;
    rtu_link *L = rg->link;
    const char *bus = g->link.bus[0] == '@' ? g->id_tmpl : g->link.bus;
    if (dtu) {
        dtu_connect(L);
        if (!ctx->quiet)
            fprintf(stderr, "sim: dtu %s dials %s\n", bus, L->conf->connect);
        return SIM_OK;
    }
    int rc = L->conf->path[0] ? tty_open_path(L) : tty_create(L, bus);
    if (rc < 0) {
        fprintf(stderr, "sim: bus %s: cannot open %s: %s\n", bus,
                L->conf->path[0] ? L->conf->path : "a pty", strerror(-rc));
        return SIM_ERR;
    }
    if (!ctx->quiet || L->conf->pty_link[0])
        fprintf(stderr, "sim: bus %s: %s%s%s\n", bus, L->pty, L->linked ? " <- " : "",
                L->linked ? L->conf->pty_link : "");
    return SIM_OK;
}

static int rtu_start(sim_ctx *ctx, sim_group *g)
{
    return serial_start(ctx, g, 0);
}

static int dtu_start(sim_ctx *ctx, sim_group *g)
{
    return serial_start(ctx, g, 1);
}

static void serial_stop(sim_ctx *ctx, sim_group *g)
{
    rtu_group *rg = g->kstate;
    if (!rg || !rg->owner || !rg->link || rg->link->stopping)
        return;
    rtu_link *L = rg->link;
    L->stopping = 1;
    uv_close((uv_handle_t *)&L->idle, NULL);
    uv_close((uv_handle_t *)&L->outq_timer, NULL);
    uv_close((uv_handle_t *)&L->retry, NULL);
    uv_close((uv_handle_t *)&L->hb, NULL);
    if (L->polling) {
        L->polling = 0;
        uv_close((uv_handle_t *)&L->poll, NULL);
    }
    if (L->dtu && (L->tstate == T_UP || L->tstate == T_CONNECTING)) {
        L->tstate = T_CLOSING;
        uv_close((uv_handle_t *)&L->tcp, tcp_closed);
    }
    if (L->linked) {
        /* Remove the symlink only while it still names our pty. */
        char target[256];
        ssize_t n = readlink(L->conf->pty_link, target, sizeof target - 1);
        if (n > 0) {
            target[n] = 0;
            if (!strcmp(target, L->pty))
                unlink(L->conf->pty_link);
        }
        L->linked = 0;
    }
}

static void serial_destroy(sim_ctx *ctx, sim_group *g)
{
    rtu_group *rg = g->kstate;
    if (!rg)
        return;
    if (rg->owner && rg->link) {
        rtu_link *L = rg->link;
        outq_clear(L);
        if (L->fd >= 0)
            close(L->fd);
        if (L->keep_fd >= 0)
            close(L->keep_fd);
        free(L);
    }
    for (uint32_t k = 0; k < rg->ndevs; k++)
        sim_mbdev_free(&rg->devs[k].m);
    sim_regindex_free(&rg->ix);
    free(rg->devs);
    free(rg);
    g->kstate = NULL;
}

static void serial_stats(sim_ctx *ctx, sim_group *g, void *arr)
{
    rtu_group *rg = g->kstate;
    if (!rg || !rg->link)
        return;
    rtu_link *L = rg->link;
    for (uint32_t k = 0; k < rg->ndevs; k++) {
        rtu_dev *d = &rg->devs[k];
        cJSON *o = cJSON_CreateObject();
        if (!o)
            return;
        cJSON_AddStringToObject(o, "id", d->m.id);
        cJSON_AddStringToObject(o, "protocol", g->protocol);
        cJSON_AddStringToObject(o, "bus", g->link.bus);
        cJSON_AddNumberToObject(o, "unit", d->unit);
        sim_mbdev_stats(&d->m, o);
        cJSON *l = cJSON_AddObjectToObject(o, "link");
        if (L->dtu) {
            cJSON_AddStringToObject(l, "connect", L->conf->connect);
            cJSON_AddBoolToObject(l, "connected", L->tstate == T_UP);
            cJSON_AddNumberToObject(l, "connects", (double)L->connects);
            cJSON_AddNumberToObject(l, "connect_failures", (double)L->connect_failures);
            cJSON_AddNumberToObject(l, "disconnects", (double)L->disconnects);
            cJSON_AddNumberToObject(l, "heartbeats", (double)L->heartbeats);
        } else {
            cJSON_AddStringToObject(l, "tty", L->pty);
            if (L->conf->pty_link[0])
                cJSON_AddStringToObject(l, "pty_link", L->conf->pty_link);
            cJSON_AddNumberToObject(l, "reopens", (double)L->reopens);
        }
        cJSON_AddNumberToObject(l, "bytes_in", (double)L->bytes_in);
        cJSON_AddNumberToObject(l, "bytes_out", (double)L->bytes_out);
        cJSON_AddNumberToObject(l, "frames", (double)L->frames);
        cJSON_AddNumberToObject(l, "bad_frames", (double)L->bad_frames);
        cJSON_AddNumberToObject(l, "junk_bytes", (double)L->junk_bytes);
        cJSON_AddNumberToObject(l, "unaddressed", (double)L->unaddressed);
        cJSON_AddNumberToObject(l, "broadcasts", (double)L->broadcasts);
        cJSON_AddNumberToObject(l, "out_dropped", (double)L->out_dropped);
        cJSON_AddItemToArray(arr, o);
    }
}

const sim_kind sim_kind_modbus_rtu = {
    .name = "modbus-rtu",
    .start = rtu_start,
    .stop = serial_stop,
    .stats = serial_stats,
    .destroy = serial_destroy,
};

const sim_kind sim_kind_modbus_dtu = {
    .name = "modbus-dtu",
    .start = dtu_start,
    .stop = serial_stop,
    .stats = serial_stats,
    .destroy = serial_destroy,
};
