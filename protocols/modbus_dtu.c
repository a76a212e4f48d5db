/* Modbus RTU framed over TCP: the DTU transport ("modbus-dtu").
 *
 * A 4G/Ethernet DTU carries raw RTU frames (unit, PDU, CRC) between a TCP
 * connection and an RS-485 bus. Two ways to reach one:
 *   - dial-out: the device entry has `connect: tcp://IP:PORT`; the gateway
 *     opens the connection (one per device entry, the link of modbus_tcp.c
 *     with RTU framing);
 *   - inbound: the DTU connects to a `listeners:` entry of this protocol and
 *     first sends a registration packet naming itself; device entries with
 *     `dtu: <that name>` are then polled over that connection, one
 *     transaction at a time across all of them. Heartbeat packets are dropped
 *     but keep the connection alive; a connection silent for idle_timeout is
 *     closed. A DTU that registers again replaces its previous connection;
 *     a name no device entry uses is refused and counted. The connections
 *     belong to the stream listener (stream_listener.h): registration is the
 *     auth window (register_timeout), and the limits are its limits. Once
 *     registered, every byte is the link's (gw_mbl__feed checks the answers),
 *     so any traffic of a registered DTU keeps it alive.
 * Hand framing on libuv, not libmodbus: thousands of non-blocking connections
 * in one process, and libmodbus's select() aborts on descriptors >= 1024. */
#include "base/hex.h"
#include "base/log.h"
#include "base/netaddr.h"
#include "protocols/modbus_common.h"
#include "protocols/stream_listener.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define F(s, m) offsetof(s, m), sizeof(((s *)0)->m)
#define REG_MAX 64

/* ---- Device keys ---- */

struct dtu_devconf {
    char dtu[64];
    int64_t guard_ms;
};

static const gw_cfgkey dtu_device_keys[] = {
    {"dtu", GW_CT_STR, "", 0, -1, F(struct dtu_devconf, dtu), NULL, 0,
     "registration id of the inbound DTU this device is behind"},
    {"frame_gap", GW_CT_DURATION, "50ms", 0, 10, offsetof(struct dtu_devconf, guard_ms), 0, NULL, 0,
     "quiet time after a timeout before the next request"},
    {NULL}};

/* ---- Listener keys ---- */

enum { ID_ASCII = 0, ID_HEX };
static const char *const id_formats[] = {"ascii", "hex", NULL};

struct dtu_lconf {
    char listen[128];
    char register_prefix[65];
    char register_prefix_hex[129];
    int64_t register_length;
    int register_id;
    char heartbeat[65];
    char heartbeat_hex[129];
    int64_t idle_timeout_ms;
    int64_t register_timeout_ms;
    int64_t guard_ms;
    int64_t max_connections;
    int64_t max_per_source;
};

static const gw_cfgkey dtu_listener_keys[] = {
    {"listen", GW_CT_STR, NULL, 0, -1, F(struct dtu_lconf, listen), NULL, GW_CF_REQUIRED,
     "IP:PORT to accept DTU connections on"},
    {"register_prefix", GW_CT_STR, "", 0, -1, F(struct dtu_lconf, register_prefix), NULL, 0,
     "fixed bytes (text) the registration packet starts with"},
    {"register_prefix_hex", GW_CT_STR, "", 0, -1, F(struct dtu_lconf, register_prefix_hex), NULL, 0,
     "the same, as hex digits"},
    {"register_length", GW_CT_INT, "0", 0, REG_MAX, offsetof(struct dtu_lconf, register_length), 0,
     NULL, 0, "bytes of id after the prefix (0: the rest of the first packet)"},
    {"register_id", GW_CT_ENUM, "ascii", 0, -1, offsetof(struct dtu_lconf, register_id), 0,
     id_formats, 0, "how the id bytes are written in `dtu:` (ascii or hex)"},
    {"heartbeat", GW_CT_STR, "", 0, -1, F(struct dtu_lconf, heartbeat), NULL, 0,
     "heartbeat packet (text), dropped"},
    {"heartbeat_hex", GW_CT_STR, "", 0, -1, F(struct dtu_lconf, heartbeat_hex), NULL, 0,
     "heartbeat packet as hex digits"},
    {"idle_timeout", GW_CT_DURATION, "5m", 1, 86400, offsetof(struct dtu_lconf, idle_timeout_ms), 0,
     NULL, 0, "close a connection silent this long"},
    {"register_timeout", GW_CT_DURATION, "10s", 0.1, 600,
     offsetof(struct dtu_lconf, register_timeout_ms), 0, NULL, 0,
     "close a connection that has not registered by then"},
    {"frame_gap", GW_CT_DURATION, "50ms", 0, 10, offsetof(struct dtu_lconf, guard_ms), 0, NULL, 0,
     "quiet time after a timeout before the next request"},
    {"max_connections", GW_CT_INT, "10000", 1, 100000, offsetof(struct dtu_lconf, max_connections),
     0, NULL, 0,
     "connections at once; at the limit the oldest unregistered one is closed for the new one"},
    {"max_per_source", GW_CT_INT, "1024", 1, 100000, offsetof(struct dtu_lconf, max_per_source), 0,
     NULL, 0, "connections at once from one source address; more are refused (counted)"},
    {NULL}};

/* ---- Registry of inbound devices ---- */

struct dtu_conn;

struct dtu_dev {
    gw_mbs s; /* first: the block is the session's (gw_mbs__new) */
    char dtu[64];
    struct dtu_dev *next;
    struct dtu_conn *conn;
};

static struct dtu_dev *registry; /* every attached inbound device (loop thread) */
struct dtu_listener;
static struct dtu_listener *listeners; /* every running listener */

/* Per connection: the stream listener's conn_size. */
struct dtu_conn {
    struct dtu_listener *lis;
    gw_slc *slc;
    gw_mbl *link;
    char id[2 * REG_MAX + 1];
    int registered;
    uint8_t reg[REG_MAX * 2 + 64]; /* the registration packet as received */
    size_t reglen;
    struct dtu_conn *next; /* the listener's registered connections */
};

struct dtu_listener {
    gw_core *core;
    struct dtu_lconf conf;
    uint8_t prefix[64];
    size_t prefix_len;
    uint8_t hb[64];
    size_t hb_len;
    gw_sl *sl;
    struct dtu_conn *conns; /* registered ones */
    struct dtu_listener *next;
    uint64_t refused_unknown;
};

static int unhex(const char *s, uint8_t *out, size_t cap, size_t *n)
{
    int got = gw_hex_decode(s, strlen(s), out, cap);
    if (got < 0)
        return GW_EINVAL;
    *n = (size_t)got;
    return GW_OK;
}

/* ---- Connections ---- */

/* The stream listener closes c: its devices lose their link. */
static void on_conn_close(void *ctx, gw_slc *slc)
{
    struct dtu_conn *c = gw_sl_conn_data(slc);
    if (!c->registered)
        return;
    GW_INFO("modbus-dtu", "[%s] DTU disconnected", c->id);
    for (struct dtu_dev *d = registry; d; d = d->next)
        if (d->conn == c) {
            d->conn = NULL;
            gw_mbl__bind(NULL, &d->s);
        }
    if (c->link)
        gw_mbl__release(c->link);
    c->link = NULL;
    struct dtu_conn **pp = &c->lis->conns;
    while (*pp && *pp != c)
        pp = &(*pp)->next;
    if (*pp)
        *pp = c->next;
    c->registered = 0;
}

/* The registration rule: prefix, then register_length id bytes (0: the rest
 * of what has arrived). Returns the bytes consumed, 0 for "need more", or
 * GW_EMALFORMED. */
static int parse_registration(struct dtu_conn *c)
{
    struct dtu_listener *lis = c->lis;
    size_t pl = lis->prefix_len, il = (size_t)lis->conf.register_length;
    size_t cmp = c->reglen < pl ? c->reglen : pl;
    if (memcmp(c->reg, lis->prefix, cmp) != 0)
        return GW_EMALFORMED;
    if (c->reglen < pl + (il ? il : 1))
        return 0;
    if (!il)
        il = c->reglen - pl;
    if (il > REG_MAX)
        return GW_EMALFORMED;
    const uint8_t *id = c->reg + pl;
    if (lis->conf.register_id == ID_HEX) {
        c->id[gw_hex_put(id, il, c->id)] = '\0';
    } else {
        for (size_t i = 0; i < il; i++) {
            if (id[i] < 0x20 || id[i] > 0x7E)
                return GW_EMALFORMED;
            c->id[i] = (char)id[i];
        }
        c->id[il] = '\0';
    }
    return (int)(pl + il);
}

/* Returns GW_SL_ACCEPT, or GW_SL_CLOSE for a DTU no device names. */
static int conn_register(struct dtu_conn *c)
{
    struct dtu_listener *lis = c->lis;
    int ndev = 0;
    for (struct dtu_dev *d = registry; d; d = d->next)
        ndev += strcmp(d->dtu, c->id) == 0;
    if (!ndev) {
        lis->refused_unknown++;
        GW_LOG_RL(GW_LOG_WARN, 10000, "modbus-dtu",
                  "DTU '%s' registered but no device names it: refused (%llu so far)", c->id,
                  (unsigned long long)lis->refused_unknown);
        return GW_SL_CLOSE;
    }
    /* A DTU that reconnects replaces its old connection. */
    for (struct dtu_conn *o = lis->conns; o; o = o->next)
        if (strcmp(o->id, c->id) == 0) {
            GW_INFO("modbus-dtu", "[%s] replaced by a new connection", o->id);
            gw_sl_close(o->slc, 0);
            break;
        }
    c->link = gw_mbl__accepted(lis->core, gw_sl_stream(c->slc), lis->conf.guard_ms);
    if (!c->link)
        return GW_SL_CLOSE;
    c->registered = 1;
    c->next = lis->conns;
    lis->conns = c;
    GW_INFO("modbus-dtu", "[%s] DTU registered, %d devices behind it", c->id, ndev);
    for (struct dtu_dev *d = registry; d; d = d->next)
        if (strcmp(d->dtu, c->id) == 0) {
            if (d->conn && d->conn != c)
                gw_mbl__bind(NULL, &d->s);
            d->conn = c;
            gw_mbl__bind(c->link, &d->s);
        }
    return GW_SL_ACCEPT;
}

/* The stream listener's scan. Before registration: the registration packet
 * (a frame of its length; a bad one is a frame of length 0, refused). After:
 * heartbeats and repeated registrations at the front are dropped and the rest
 * is the link's. */
static int dtu_scan(void *ctx, gw_slc *slc, const uint8_t *buf, size_t len, gw_sl_span *sp)
{
    struct dtu_conn *c = gw_sl_conn_data(slc);
    if (!c->registered) {
        c->lis = ctx;
        c->slc = slc;
        c->reglen = len < sizeof(c->reg) ? len : sizeof(c->reg);
        memcpy(c->reg, buf, c->reglen);
        int used = parse_registration(c);
        if (used == 0 && c->reglen < sizeof(c->reg))
            return GW_SL_MORE;
        sp->frame = buf;
        sp->frame_len = used > 0 ? (size_t)used : 0;
        sp->consumed = used > 0 ? (size_t)used : len;
        if (used > 0)
            c->reglen = (size_t)used; /* kept to drop repeated registrations */
        return GW_SL_FRAME;
    }
    struct dtu_listener *lis = ctx;
    size_t at = 0;
    for (;;) {
        if (lis->hb_len && len - at >= lis->hb_len && !memcmp(buf + at, lis->hb, lis->hb_len))
            at += lis->hb_len;
        else if (len - at >= c->reglen && !memcmp(buf + at, c->reg, c->reglen))
            at += c->reglen;
        else
            break;
    }
    sp->frame = buf + at;
    sp->frame_len = len - at;
    sp->consumed = len;
    return GW_SL_FRAME;
}

static int dtu_frame(void *ctx, gw_slc *slc, const void *frame, size_t len)
{
    struct dtu_conn *c = gw_sl_conn_data(slc);
    if (c->registered) {
        if (len)
            gw_mbl__feed(c->link, frame, len);
        return GW_SL_ACCEPT;
    }
    if (!len) {
        c->lis->refused_unknown++;
        GW_LOG_RL(GW_LOG_WARN, 10000, "modbus-dtu", "bad registration packet (%zu bytes)",
                  c->reglen);
        return GW_SL_CLOSE;
    }
    return conn_register(c);
}

static const gw_sl_proto dtu_proto = {
    .module = "modbus-dtu",
    .conn_size = sizeof(struct dtu_conn),
    .scan = dtu_scan,
    .on_frame = dtu_frame,
    .on_close = on_conn_close,
};

/* ---- Listener ---- */

static int dtu_listen(gw_core *core, const void *conf, void **state, char *err, size_t errlen)
{
    const struct dtu_lconf *lc = conf;
    struct dtu_listener *lis = calloc(1, sizeof(*lis));
    if (!lis) {
        snprintf(err, errlen, "out of memory");
        return GW_ENOMEM;
    }
    lis->core = core;
    lis->conf = *lc;
    if (lc->register_prefix[0] && lc->register_prefix_hex[0]) {
        snprintf(err, errlen,
                 "keys 'register_prefix' and 'register_prefix_hex' exclude each other");
        goto fail;
    }
    if (lc->register_prefix_hex[0]) {
        if (unhex(lc->register_prefix_hex, lis->prefix, sizeof(lis->prefix), &lis->prefix_len)) {
            snprintf(err, errlen, "key 'register_prefix_hex': not an even number of hex digits");
            goto fail;
        }
    } else {
        lis->prefix_len = strlen(lc->register_prefix);
        memcpy(lis->prefix, lc->register_prefix, lis->prefix_len);
    }
    if (lc->heartbeat[0] && lc->heartbeat_hex[0]) {
        snprintf(err, errlen, "keys 'heartbeat' and 'heartbeat_hex' exclude each other");
        goto fail;
    }
    if (lc->heartbeat_hex[0]) {
        if (unhex(lc->heartbeat_hex, lis->hb, sizeof(lis->hb), &lis->hb_len)) {
            snprintf(err, errlen, "key 'heartbeat_hex': not an even number of hex digits");
            goto fail;
        }
    } else {
        lis->hb_len = strlen(lc->heartbeat);
        memcpy(lis->hb, lc->heartbeat, lis->hb_len);
    }
    if (!lis->prefix_len && !lc->register_length) {
        snprintf(err, errlen, "give 'register_length' or a register prefix: the id needs an end");
        goto fail;
    }
    gw_sl_conf sc;
    memset(&sc, 0, sizeof(sc));
    gw_strlcpy(sc.listen, lc->listen, sizeof(sc.listen));
    sc.max_connections = lc->max_connections;
    sc.max_per_source = lc->max_per_source;
    sc.idle_timeout_ms = lc->idle_timeout_ms;
    sc.auth_timeout_ms = lc->register_timeout_ms;
    /* Room for a registration packet or a few RTU answers per read. */
    lis->sl = gw_sl_start(core, &sc, 2 * GW_MB_ADU_MAX, &dtu_proto, lis, err, errlen);
    if (!lis->sl)
        goto fail;
    GW_INFO("modbus-dtu", "listening for DTUs on %s", lc->listen);
    lis->next = listeners;
    listeners = lis;
    *state = lis;
    return GW_OK;
fail:
    free(lis);
    return GW_EINVAL;
}

static void dtu_unlisten(void *state)
{
    struct dtu_listener *lis = state;
    struct dtu_listener **pp = &listeners;
    while (*pp && *pp != lis)
        pp = &(*pp)->next;
    if (*pp)
        *pp = lis->next;
    gw_sl_stop(lis->sl); /* on_conn_close runs for each; no hook after this */
    free(lis);
}

/* ---- Devices ---- */

static int dtu_check(const gw_device *dev, char *err, size_t errlen)
{
    const struct dtu_devconf *dc = dev->proto_conf;
    if (gw_mb_check_profile(dev, err, errlen))
        return GW_EINVAL;
    if (!dc || (dc->dtu[0] != 0) == (dev->conf.connect[0] != 0)) {
        snprintf(err, errlen,
                 "a modbus-dtu device needs exactly one of 'connect: tcp://IP:PORT' (the gateway "
                 "dials the DTU) and 'dtu: ID' (the DTU connects to a listener)");
        return GW_EINVAL;
    }
    if (dev->conf.connect[0] && strncmp(dev->conf.connect, "tcp://", 6) != 0) {
        snprintf(err, errlen, "key 'connect' must be tcp://IP:PORT (got '%s')", dev->conf.connect);
        return GW_EINVAL;
    }
    return GW_OK;
}

static int dtu_attach(gw_core *core, gw_device *dev, char *err, size_t errlen)
{
    const struct dtu_devconf *dc = dev->proto_conf;
    struct dtu_dev *d = (struct dtu_dev *)gw_mbs__new(sizeof(*d), dev->conf.connect[0] != 0);
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return GW_ENOMEM;
    }
    int rc = gw_mbs__init(&d->s, dev, 0, err, errlen);
    if (rc) {
        free(d);
        return rc;
    }
    if (dev->conf.connect[0]) {
        rc = gw_mbs__dial(&d->s, 1, dc->guard_ms, err, errlen);
        if (rc) {
            gw_mbs__close(&d->s);
            return rc;
        }
    } else {
        gw_strlcpy(d->dtu, dc->dtu, sizeof(d->dtu));
        d->next = registry;
        registry = d;
        /* Its DTU may be connected already (a device added by a reload). */
        for (struct dtu_listener *lis = listeners; lis; lis = lis->next)
            for (struct dtu_conn *c = lis->conns; c; c = c->next)
                if (strcmp(c->id, d->dtu) == 0) {
                    d->conn = c;
                    gw_mbl__bind(c->link, &d->s);
                }
    }
    dev->proto_state = d;
    return GW_OK;
}

static void dtu_detach(gw_device *dev)
{
    struct dtu_dev *d = dev->proto_state;
    if (!d)
        return;
    dev->proto_state = NULL;
    struct dtu_dev **pp = &registry;
    while (*pp && *pp != d)
        pp = &(*pp)->next;
    if (*pp)
        *pp = d->next;
    d->conn = NULL;
    gw_mbs__close(&d->s);
}

static int dtu_write(gw_device *dev, const char *point, double value)
{
    struct dtu_dev *d = dev->proto_state;
    return d ? gw_mbs__write(&d->s, point, value) : GW_EINVAL;
}

static int dtu_command(gw_device *dev, const char *verb, const char *arg, char *reply,
                       size_t replylen)
{
    struct dtu_dev *d = dev->proto_state;
    if (!d) {
        snprintf(reply, replylen, "device not running");
        return GW_EAGAIN;
    }
    return gw_mbs__command(&d->s, verb, arg, reply, replylen);
}

static void dtu_listener_stats(const void *state, gw_proto_counters *sum)
{
    sum->unknown_devices += ((const struct dtu_listener *)state)->refused_unknown;
}

const gw_protocol gw_proto_modbus_dtu = {
    .name = "modbus-dtu",
    .version = "1.0",
    .description = "Modbus RTU framed over TCP: dial-out to a DTU, or DTUs connecting in",
    .device_keys = dtu_device_keys,
    .device_conf_size = sizeof(struct dtu_devconf),
    .check_device = dtu_check,
    .device_type = gw_mb_device_type,
    .attach = dtu_attach,
    .detach = dtu_detach,
    .write = dtu_write,
    .command = dtu_command,
    .command_answers = 1,
    .listener_keys = dtu_listener_keys,
    .listener_conf_size = sizeof(struct dtu_lconf),
    .listen = dtu_listen,
    .unlisten = dtu_unlisten,
    .listener_stats = dtu_listener_stats,
};
