/* Modbus RTU over a serial port ("modbus-rtu"), through libmodbus.
 *
 * One RS-485 bus carries one transaction at a time, and every libmodbus call
 * blocks, so each bus (the devices with the same `serial:` path) gets its own
 * worker thread owning the libmodbus context. Not uv_queue_work: libuv's
 * shared pool has 4 threads, and four slow buses would stall DNS and file
 * work for everyone (LIBRARIES.md).
 *
 * The loop keeps each device's schedule. When a poll is due it queues the
 * device on its bus (at most once: a device whose previous cycle has not come
 * back skips the slot, so the queue is bounded by the devices on the bus);
 * the worker runs the device's planned reads back to back, `frame_gap` apart,
 * and posts the finished job to the bus's mailbox (base/mailbox.h), which
 * wakes the loop; the loop decodes (gw_mb_poll: results, report-by-exception,
 * online/offline). Writes go on their own bounded list and before reads.
 * Only the loop touches gw_device; the worker sees copies (unit, timeouts,
 * the planned reads). */
#include "base/log.h"
#include "base/mailbox.h"
#include "protocols/modbus_common.h"

#include <errno.h>
#include <modbus.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>

#define F(s, m) offsetof(s, m), sizeof(((s *)0)->m)
#define BUS_WRITES_MAX 64
#define BUS_DONE_MAX 4096 /* finished jobs waiting for the loop; the worker waits beyond */

struct rtu_conf {
    char serial[128];
    int64_t baud;
    int parity;
    int64_t data_bits;
    int64_t stop_bits;
    int64_t gap_ms;
};

static const char *const parities[] = {"N", "E", "O", NULL};

static const gw_cfgkey rtu_device_keys[] = {
    {"serial", GW_CT_STR, NULL, 0, -1, F(struct rtu_conf, serial), NULL, GW_CF_REQUIRED,
     "serial device of the bus (devices with the same path share one worker)"},
    {"baud", GW_CT_INT, "9600", 300, 921600, offsetof(struct rtu_conf, baud), 0, NULL, 0,
     "bits per second"},
    {"parity", GW_CT_ENUM, "N", 0, -1, offsetof(struct rtu_conf, parity), 0, parities, 0,
     "N, E or O"},
    {"data_bits", GW_CT_INT, "8", 5, 8, offsetof(struct rtu_conf, data_bits), 0, NULL, 0,
     "data bits"},
    {"stop_bits", GW_CT_INT, "1", 1, 2, offsetof(struct rtu_conf, stop_bits), 0, NULL, 0,
     "stop bits"},
    {"frame_gap", GW_CT_DURATION, "5ms", 0, 1, offsetof(struct rtu_conf, gap_ms), 0, NULL, 0,
     "quiet time between transactions on the bus"},
    {NULL}};

struct rtu_bus;

/* What the worker hands back to the loop: a finished write, a finished cycle,
 * or its own exit. */
enum { M_WRITE, M_CYCLE, M_EXIT };
struct rtu_mail {
    gw_mail m;
    int type;
};
#define MAIL_OF(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

struct rtu_write {
    struct rtu_write *next;
    uint8_t unit;
    uint8_t fc;
    uint16_t addr, count;
    uint8_t data[GW_MB_WRITE_MAX];
    int64_t timeout_ms;
    int result; /* 0, Modbus exception, or GW_E* */
    struct rtu_mail done;
    char dev[GW_ID_MAX];
    char point[32];
};

struct rtu_dev {
    gw_mb_poll poll; /* loop only */
    gw_device *dev;
    gw_core *core;
    struct rtu_bus *bus;
    uv_timer_t poll_timer;
    int64_t next_due;
    int refs;             /* the timer handle, plus one while a job is with the bus */
    int detached;         /* loop only */
    struct rtu_dev *next; /* the bus's devices (loop only) */
    /* The job, written by the loop before queueing and read by the worker,
     * then written by the worker and read by the loop after it is done. */
    struct rtu_dev *qnext;
    struct rtu_mail done;
    uint8_t unit;
    int retries;
    int64_t timeout_ms;
    gw_mb_request *reqs;
    size_t nreq;
    int *status;
    uint8_t *data;
    size_t *off;
    int64_t started_us;
};

struct rtu_bus {
    struct rtu_conf conf;
    gw_core *core;
    uv_thread_t thread;
    uv_mutex_t mu;
    uv_cond_t cv;
    gw_mailbox box; /* finished jobs -> loop */
    struct rtu_mail exit_mail;
    /* Under mu: */
    struct rtu_dev *qhead, *qtail; /* cycles waiting */
    struct rtu_write *wq;          /* writes waiting */
    int nwrites;
    int stop;
    /* Worker only: */
    modbus_t *ctx;
    int64_t reopen_after_us;
    /* Loop only: */
    struct rtu_dev *devs;
    int ndev;
    struct rtu_bus *next;
};

static struct rtu_bus *buses; /* running buses, by serial path (loop thread) */

/* ---- Worker ---- */

static int64_t hr_us(void)
{
    return (int64_t)(uv_hrtime() / 1000);
}

/* Opens the port if it is not open. Returns 0 or GW_EAGAIN. */
static int bus_open(struct rtu_bus *b)
{
    if (b->ctx)
        return GW_OK;
    if (hr_us() < b->reopen_after_us)
        return GW_EAGAIN;
    const struct rtu_conf *c = &b->conf;
    modbus_t *ctx = modbus_new_rtu(c->serial, (int)c->baud, "NEO"[c->parity], (int)c -> data_bits,
                                   (int)c -> stop_bits);
    if (!ctx)
        return GW_EAGAIN;
    if (modbus_connect(ctx) == -1) {
        modbus_free(ctx);
        b->reopen_after_us = hr_us() + 1000000; /* not more than once a second */
        return GW_EAGAIN;
    }
    /* libmodbus waits with select(): a descriptor past FD_SETSIZE would abort
     * the process inside libmodbus. Refuse it here instead. */
    if (modbus_get_socket(ctx) >= FD_SETSIZE) {
        modbus_close(ctx);
        modbus_free(ctx);
        b->reopen_after_us = hr_us() + 10000000;
        return GW_EAGAIN;
    }
    b->ctx = ctx;
    return GW_OK;
}

static void set_timeout(modbus_t *ctx, int64_t ms)
{
    /* modbus_set_response_timeout ignores usec >= 1e6: split it. */
    modbus_set_response_timeout(ctx, (uint32_t)(ms / 1000), (uint32_t)(ms % 1000) * 1000);
}

/* Maps a failed libmodbus call to a result status. */
static int failure_status(int e)
{
    if (e > MODBUS_ENOBASE && e <= EMBXGTAR)
        return e - MODBUS_ENOBASE; /* an exception answer */
    if (e == EMBBADCRC)
        return GW_ECRC;
    if (e == ETIMEDOUT)
        return GW_EAGAIN;
    return GW_EMALFORMED;
}

static void gap(const struct rtu_bus *b)
{
    if (b->conf.gap_ms > 0)
        usleep((useconds_t)(b->conf.gap_ms * 1000));
}

static void run_cycle(struct rtu_bus *b, struct rtu_dev *d)
{
    uint16_t regs[125];
    uint8_t bits[2000];
    int answered = 0;
    d->started_us = hr_us();
    for (size_t i = 0; i < d->nreq; i++)
        d->status[i] = GW_EAGAIN;
    if (bus_open(b))
        return;
    modbus_set_slave(b->ctx, d->unit);
    set_timeout(b->ctx, d->timeout_ms);
    for (size_t i = 0; i < d->nreq; i++) {
        const gw_mb_request *q = &d->reqs[i];
        int rc = -1, e = 0;
        for (int attempt = 0; attempt <= d->retries; attempt++) {
            if (q->fc == 1)
                rc = modbus_read_bits(b->ctx, q->addr, q->count, bits);
            else if (q->fc == 2)
                rc = modbus_read_input_bits(b->ctx, q->addr, q->count, bits);
            else if (q->fc == 3)
                rc = modbus_read_registers(b->ctx, q->addr, q->count, regs);
            else
                rc = modbus_read_input_registers(b->ctx, q->addr, q->count, regs);
            e = errno;
            gap(b);
            if (rc != -1 || e != ETIMEDOUT)
                break;
            modbus_flush(b->ctx);
        }
        if (rc == -1) {
            d->status[i] = failure_status(e);
            if (d->status[i] < 0)
                modbus_flush(b->ctx);
            if (d->status[i] > 0)
                answered++;
            if (d->status[i] == GW_EAGAIN && !answered)
                return; /* the device is not there: do not ask it n times */
            continue;
        }
        if (rc != q->count) {
            d->status[i] = GW_EMALFORMED;
            continue;
        }
        uint8_t *out = d->data + d->off[i];
        if (q->fc <= 2) {
            memset(out, 0, (size_t)(q->count + 7) / 8);
            for (int k = 0; k < q->count; k++)
                if (bits[k])
                    out[k / 8] |= (uint8_t)(1u << (k % 8));
        } else {
            for (int k = 0; k < q->count; k++) {
                out[2 * k] = (uint8_t)(regs[k] >> 8);
                out[2 * k + 1] = (uint8_t)regs[k];
            }
        }
        d->status[i] = 0;
        answered++;
    }
}

static void run_write(struct rtu_bus *b, struct rtu_write *w)
{
    w->result = GW_EAGAIN;
    if (bus_open(b))
        return;
    modbus_set_slave(b->ctx, w->unit);
    set_timeout(b->ctx, w->timeout_ms);
    int rc;
    uint16_t regs[GW_MB_WRITE_MAX / 2];
    uint8_t bits[GW_MB_WRITE_MAX * 8];
    switch (w->fc) {
    case 5:
        rc = modbus_write_bit(b->ctx, w->addr, w->data[0] == 0xFF);
        break;
    case 6:
        rc = modbus_write_register(b->ctx, w->addr, (uint16_t)(w->data[0] << 8 | w->data[1]));
        break;
    case 15:
        for (int k = 0; k < w->count && k < (int)sizeof(bits); k++)
            bits[k] = (uint8_t)((w->data[k / 8] >> (k % 8)) & 1);
        rc = modbus_write_bits(b->ctx, w->addr, w->count, bits);
        break;
    default:
        for (int k = 0; k < w->count && k < (int)(GW_MB_WRITE_MAX / 2); k++)
            regs[k] = (uint16_t)(w->data[2 * k] << 8 | w->data[2 * k + 1]);
        rc = modbus_write_registers(b->ctx, w->addr, w->count, regs);
        break;
    }
    w->result = rc == -1 ? failure_status(errno) : 0;
    if (rc == -1 && w->result < 0)
        modbus_flush(b->ctx);
    gap(b);
}

static void worker(void *arg)
{
    struct rtu_bus *b = arg;
    for (;;) {
        uv_mutex_lock(&b->mu);
        while (!b->stop && !b->qhead && !b->wq)
            uv_cond_wait(&b->cv, &b->mu);
        if (b->stop) {
            uv_mutex_unlock(&b->mu);
            break;
        }
        struct rtu_write *w = b->wq;
        struct rtu_dev *d = NULL;
        if (w) {
            b->wq = w->next;
            b->nwrites--;
        } else {
            d = b->qhead;
            b->qhead = d->qnext;
            if (!b->qhead)
                b->qtail = NULL;
        }
        uv_mutex_unlock(&b->mu);
        if (w)
            run_write(b, w);
        else
            run_cycle(b, d);
        /* KEEP: the box is closed only after our exit arrives, so this waits
         * for room at worst and never fails. */
        if (w)
            gw_mailbox_post(&b->box, &w->done.m, 0, GW_MAIL_KEEP);
        else
            gw_mailbox_post(&b->box, &d->done.m, 0, GW_MAIL_KEEP);
    }
    if (b->ctx) {
        modbus_close(b->ctx);
        modbus_free(b->ctx);
        b->ctx = NULL;
    }
    gw_mailbox_post(&b->box, &b->exit_mail.m, 0, GW_MAIL_KEEP);
}

/* ---- Loop side ---- */

static void dev_unref(struct rtu_dev *d)
{
    if (--d->refs > 0)
        return;
    gw_mb_poll_free(&d->poll);
    gw_mb_stats_unref();
    free(d->reqs);
    free(d->status);
    free(d->data);
    free(d->off);
    free(d);
}

static void on_bus_closed(gw_mailbox *mb)
{
    struct rtu_bus *b = mb->data;
    uv_mutex_destroy(&b->mu);
    uv_cond_destroy(&b->cv);
    free(b);
}

static void write_done(struct rtu_write *w)
{
    if (w->result)
        GW_WARN("modbus-rtu", "[%s] write of %s failed (%d)", w->dev, w->point, w->result);
    else
        GW_INFO("modbus-rtu", "[%s] wrote %s", w->dev, w->point);
    free(w);
}

static void cycle_done(struct rtu_dev *d)
{
    if (!d->detached && d->poll.in_cycle) {
        gw_mb_poll_sent_at(&d->poll, d->started_us, d->nreq);
        for (size_t i = 0; i < d->nreq; i++) {
            const gw_mb_request *q = &d->reqs[i];
            size_t len = q->fc <= 2 ? (size_t)(q->count + 7) / 8 : (size_t)q->count * 2;
            gw_mb_poll_result(&d->poll, d->status[i], d->data + d->off[i],
                              d->status[i] == 0 ? len : 0);
        }
        gw_mb_poll_finish(&d->poll);
    }
    dev_unref(d);
}

static void bus_exited(struct rtu_bus *b)
{
    uv_thread_join(&b->thread);
    /* Writes never taken by the worker. */
    while (b->wq) {
        struct rtu_write *w = b->wq;
        b->wq = w->next;
        free(w);
    }
    gw_mailbox_close(&b->box, on_bus_closed);
}

static void on_box(gw_mailbox *mb, gw_mail *list)
{
    while (list) {
        struct rtu_mail *m = (struct rtu_mail *)list;
        list = list->next;
        if (m->type == M_WRITE)
            write_done(MAIL_OF(m, struct rtu_write, done));
        else if (m->type == M_CYCLE)
            cycle_done(MAIL_OF(m, struct rtu_dev, done));
        else
            bus_exited(mb->data); /* the worker's last item */
    }
}

/* Only when the box is closed with jobs in it (not in normal operation: the
 * exit is the worker's last item). */
static void on_box_discard(gw_mailbox *mb, gw_mail *item)
{
    struct rtu_mail *m = (struct rtu_mail *)item;
    if (m->type == M_WRITE)
        free(MAIL_OF(m, struct rtu_write, done));
    else if (m->type == M_CYCLE)
        dev_unref(MAIL_OF(m, struct rtu_dev, done));
}

static void on_poll(uv_timer_t *t)
{
    struct rtu_dev *d = t->data;
    int64_t now = (int64_t)uv_now(gw_core_loop(d->core)), iv = d->dev->interval_ms;
    int64_t due = d->next_due;
    d->next_due = gw_mb_next_due(due, now, iv, &d->dev->polls_skipped);
    uv_timer_start(&d->poll_timer, on_poll, (uint64_t)(d->next_due - now), 0);
    if (gw_mb_poll_begin(&d->poll, due))
        return; /* the previous cycle is still on the bus */
    struct rtu_bus *b = d->bus;
    d->unit = (uint8_t)d->dev->conf.unit;
    d->retries = (int)d->dev->conf.retries;
    d->timeout_ms = d->dev->conf.timeout_ms;
    d->refs++;
    uv_mutex_lock(&b->mu);
    d->qnext = NULL;
    if (b->qtail)
        b->qtail->qnext = d;
    else
        b->qhead = d;
    b->qtail = d;
    uv_cond_signal(&b->cv);
    uv_mutex_unlock(&b->mu);
}

static void on_poll_closed(uv_handle_t *h)
{
    dev_unref(h->data);
}

static struct rtu_bus *bus_get(gw_core *core, const struct rtu_conf *c, const char *id, char *err,
                               size_t errlen)
{
    for (struct rtu_bus *b = buses; b; b = b->next) {
        if (strcmp(b->conf.serial, c->serial) != 0)
            continue;
        if (b->conf.baud != c->baud || b->conf.parity != c->parity ||
            b->conf.data_bits != c->data_bits || b->conf.stop_bits != c->stop_bits ||
            b->conf.gap_ms != c->gap_ms) {
            snprintf(err, errlen,
                     "device %s: serial %s is already used with other baud, parity, data bits, "
                     "stop bits or frame_gap",
                     id, c->serial);
            return NULL;
        }
        return b;
    }
    struct rtu_bus *b = calloc(1, sizeof(*b));
    if (!b) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    b->conf = *c;
    b->core = core;
    uv_mutex_init(&b->mu);
    uv_cond_init(&b->cv);
    b->box.data = b;
    b->exit_mail.type = M_EXIT;
    if (gw_mailbox_init(&b->box, gw_core_loop(core), BUS_DONE_MAX, 0, on_box, on_box_discard)) {
        snprintf(err, errlen, "cannot create the mailbox for %s", c->serial);
        uv_mutex_destroy(&b->mu);
        uv_cond_destroy(&b->cv);
        free(b);
        return NULL;
    }
    /* Open the port now, while descriptors are low (libmodbus needs < 1024);
     * if it fails the worker tries again when polls come. */
    if (bus_open(b))
        GW_WARN("modbus-rtu", "cannot open %s yet: %s", c->serial, strerror(errno));
    if (uv_thread_create(&b->thread, worker, b)) {
        snprintf(err, errlen, "cannot start the worker for %s", c->serial);
        if (b->ctx) {
            modbus_close(b->ctx);
            modbus_free(b->ctx);
        }
        gw_mailbox_close(&b->box, on_bus_closed);
        return NULL;
    }
    b->next = buses;
    buses = b;
    GW_INFO("modbus-rtu", "bus %s: %lld baud %c%lld%lld, frame gap %lld ms", c->serial,
            (long long)c->baud, "NEO"[c->parity], (long long)c -> data_bits,
            (long long)c -> stop_bits, (long long)c -> gap_ms);
    return b;
}

static void bus_put(struct rtu_bus *b)
{
    if (--b->ndev > 0)
        return;
    struct rtu_bus **pp = &buses;
    while (*pp && *pp != b)
        pp = &(*pp)->next;
    if (*pp)
        *pp = b->next;
    uv_mutex_lock(&b->mu);
    b->stop = 1;
    uv_cond_signal(&b->cv);
    uv_mutex_unlock(&b->mu);
}

static int rtu_attach(gw_core *core, gw_device *dev, char *err, size_t errlen)
{
    const struct rtu_conf *c = dev->proto_conf;
    struct rtu_dev *d = calloc(1, sizeof(*d));
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return GW_ENOMEM;
    }
    int rc = gw_mb_poll_init(&d->poll, dev, err, errlen);
    if (rc) {
        free(d);
        return rc;
    }
    d->dev = dev;
    d->core = core;
    d->nreq = d->poll.nreq;
    size_t n = d->nreq ? d->nreq : 1, total = 0;
    const gw_mb_request *reqs = gw_mb_poll_reqs(&d->poll);
    d->reqs = calloc(n, sizeof(*d->reqs));
    d->status = calloc(n, sizeof(*d->status));
    d->off = calloc(n, sizeof(*d->off));
    for (size_t i = 0; d->reqs && d->off && i < d->nreq; i++) {
        d->reqs[i] = reqs[i];
        d->off[i] = total;
        total +=
            d->reqs[i].fc <= 2 ? (size_t)(d->reqs[i].count + 7) / 8 : (size_t)d->reqs[i].count * 2;
    }
    d->data = malloc(total ? total : 1);
    if (!d->reqs || !d->status || !d->off || !d->data) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    d->bus = bus_get(core, c, dev->conf.id, err, errlen);
    if (!d->bus)
        goto fail;
    d->bus->ndev++;
    d->next = d->bus->devs;
    d->bus->devs = d;
    gw_mb_stats_ref(core);
    uv_timer_init(gw_core_loop(core), &d->poll_timer);
    d->poll_timer.data = d;
    d->done.type = M_CYCLE;
    d->refs = 1;
    int64_t now = (int64_t)uv_now(gw_core_loop(core));
    int64_t first = gw_mb_first_due(dev->conf.id, now, dev->interval_ms);
    d->next_due = first; /* the due time of the next poll */
    uv_timer_start(&d->poll_timer, on_poll, (uint64_t)(first - now), 0);
    dev->online = -1;
    dev->proto_state = d;
    return GW_OK;
fail:
    gw_mb_poll_free(&d->poll);
    free(d->reqs);
    free(d->status);
    free(d->off);
    free(d->data);
    free(d);
    return GW_EINVAL;
}

static void rtu_detach(gw_device *dev)
{
    struct rtu_dev *d = dev->proto_state;
    if (!d)
        return;
    dev->proto_state = NULL;
    d->detached = 1;
    struct rtu_bus *b = d->bus;
    /* Take it off the wait queue if the worker has not picked it up. */
    uv_mutex_lock(&b->mu);
    struct rtu_dev **pp = &b->qhead, *prev = NULL;
    while (*pp && *pp != d) {
        prev = *pp;
        pp = &(*pp)->qnext;
    }
    int unqueued = 0;
    if (*pp) {
        *pp = d->qnext;
        if (b->qtail == d)
            b->qtail = prev;
        unqueued = 1;
    }
    uv_mutex_unlock(&b->mu);
    struct rtu_dev **dp = &b->devs;
    while (*dp && *dp != d)
        dp = &(*dp)->next;
    if (*dp)
        *dp = d->next;
    uv_timer_stop(&d->poll_timer);
    uv_close((uv_handle_t *)&d->poll_timer, on_poll_closed);
    if (unqueued)
        dev_unref(d);
    bus_put(b);
}

static int rtu_write(gw_device *dev, const char *point, double value)
{
    struct rtu_dev *d = dev->proto_state;
    if (!d)
        return GW_EINVAL;
    struct rtu_write *w = calloc(1, sizeof(*w));
    if (!w)
        return GW_ENOMEM;
    size_t len;
    int rc = gw_profile_encode_write(d->poll.profile, point, value, &w->fc, &w->addr, &w->count,
                                     w->data, &len);
    if (rc) {
        free(w);
        return rc;
    }
    w->done.type = M_WRITE;
    w->unit = (uint8_t)dev->conf.unit;
    w->timeout_ms = dev->conf.timeout_ms;
    gw_strlcpy(w->dev, dev->conf.id, sizeof(w->dev));
    gw_strlcpy(w->point, point, sizeof(w->point));
    struct rtu_bus *b = d->bus;
    uv_mutex_lock(&b->mu);
    if (b->nwrites >= BUS_WRITES_MAX) {
        uv_mutex_unlock(&b->mu);
        free(w);
        return GW_EFULL;
    }
    struct rtu_write **tail = &b->wq;
    while (*tail)
        tail = &(*tail)->next;
    *tail = w;
    b->nwrites++;
    uv_cond_signal(&b->cv);
    uv_mutex_unlock(&b->mu);
    return GW_OK;
}

static int rtu_check(const gw_device *dev, char *err, size_t errlen)
{
    if (gw_mb_check_profile(dev, err, errlen))
        return GW_EINVAL;
    return GW_OK;
}

const gw_protocol gw_proto_modbus_rtu = {
    .name = "modbus-rtu",
    .version = "1.0",
    .description = "Modbus RTU on a serial bus (libmodbus), one worker thread per bus",
    .device_keys = rtu_device_keys,
    .device_conf_size = sizeof(struct rtu_conf),
    .check_device = rtu_check,
    .device_type = gw_mb_device_type,
    .attach = rtu_attach,
    .detach = rtu_detach,
    .write = rtu_write,
};
