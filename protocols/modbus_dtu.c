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
 *     a name no device entry uses is refused and counted.
 * Hand framing on libuv, not libmodbus: thousands of non-blocking connections
 * in one process, and libmodbus's select() aborts on descriptors >= 1024. */
#include "gateway/log.h"
#include "gateway/netaddr.h"
#include "protocols/modbus_common.h"

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
     0, NULL, 0, "connections beyond this are refused"},
    {NULL}};

/* ---- Registry of inbound devices ---- */

struct dtu_conn;

struct dtu_dev {
    gw_mbs s;
    char dtu[64];
    struct dtu_dev *next;
    struct dtu_conn *conn;
};

static struct dtu_dev *registry; /* every attached inbound device (loop thread) */
struct dtu_listener;
static struct dtu_listener *listeners; /* every running listener */

struct dtu_conn {
    struct dtu_listener *lis;
    uv_tcp_t tcp;
    uv_timer_t timer; /* registration, then idle */
    gw_mbl *link;
    char id[2 * REG_MAX + 1];
    int registered;
    int closing;
    int handles;
    uint8_t reg[REG_MAX * 2 + 64]; /* the registration packet as received */
    size_t reglen;
    struct dtu_conn *next;
};

struct dtu_listener {
    gw_core *core;
    struct dtu_lconf conf;
    uint8_t prefix[64];
    size_t prefix_len;
    uint8_t hb[64];
    size_t hb_len;
    uv_tcp_t server;
    struct dtu_conn *conns;
    size_t nconns;
    size_t alive; /* connection structs not yet freed */
    int closing;  /* 1 stopping, 2 the server handle is closed */
    struct dtu_listener *next;
    uint64_t refused_unknown, refused_full;
};

static int unhex(const char *s, uint8_t *out, size_t cap, size_t *n)
{
    size_t len = strlen(s);
    if (len % 2 || len / 2 > cap)
        return GW_EINVAL;
    for (size_t i = 0; i < len; i += 2) {
        int v = 0;
        for (int k = 0; k < 2; k++) {
            char c = s[i + (size_t)k];
            int d = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
            if (d < 0)
                return GW_EINVAL;
            v = v * 16 + d;
        }
        out[i / 2] = (uint8_t)v;
    }
    *n = len / 2;
    return GW_OK;
}

/* ---- Connections ---- */

static void on_conn_closed(uv_handle_t *h)
{
    struct dtu_conn *c = h->data;
    if (--c->handles > 0)
        return;
    struct dtu_listener *lis = c->lis;
    free(c);
    if (--lis->alive == 0 && lis->closing == 2)
        free(lis);
}

static void conn_close(struct dtu_conn *c, const char *why)
{
    if (c->closing)
        return;
    c->closing = 1;
    struct dtu_listener *lis = c->lis;
    if (c->registered)
        GW_INFO("modbus-dtu", "[%s] DTU disconnected: %s", c->id, why);
    for (struct dtu_dev *d = registry; d; d = d->next)
        if (d->conn == c) {
            d->conn = NULL;
            gw_mbl__bind(NULL, &d->s);
        }
    if (c->link)
        gw_mbl__release(c->link);
    c->link = NULL;
    struct dtu_conn **pp = &lis->conns;
    while (*pp && *pp != c)
        pp = &(*pp)->next;
    if (*pp)
        *pp = c->next;
    lis->nconns--;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_closed);
}

static void on_conn_timer(uv_timer_t *t)
{
    struct dtu_conn *c = t->data;
    conn_close(c, c->registered ? "idle timeout" : "no registration in time");
}

static void conn_touch(struct dtu_conn *c)
{
    uv_timer_start(&c->timer, on_conn_timer, (uint64_t)c->lis->conf.idle_timeout_ms, 0);
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
        static const char hx[] = "0123456789ABCDEF";
        for (size_t i = 0; i < il; i++) {
            c->id[2 * i] = hx[id[i] >> 4];
            c->id[2 * i + 1] = hx[id[i] & 15];
        }
        c->id[2 * il] = '\0';
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

static void conn_register(struct dtu_conn *c)
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
        conn_close(c, "unknown DTU");
        return;
    }
    /* A DTU that reconnects replaces its old connection. */
    for (struct dtu_conn *o = lis->conns; o; o = o->next)
        if (o != c && o->registered && strcmp(o->id, c->id) == 0) {
            conn_close(o, "replaced by a new connection");
            break;
        }
    c->link = gw_mbl__accepted(lis->core, (uv_stream_t *)&c->tcp, lis->conf.guard_ms);
    if (!c->link) {
        conn_close(c, "out of memory");
        return;
    }
    c->registered = 1;
    GW_INFO("modbus-dtu", "[%s] DTU registered, %d devices behind it", c->id, ndev);
    for (struct dtu_dev *d = registry; d; d = d->next)
        if (strcmp(d->dtu, c->id) == 0) {
            if (d->conn && d->conn != c)
                gw_mbl__bind(NULL, &d->s);
            d->conn = c;
            gw_mbl__bind(c->link, &d->s);
        }
}

static void on_conn_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static char slab[2048]; /* the loop reads one connection at a time */
    buf->base = slab;
    buf->len = sizeof(slab);
}

static void on_conn_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct dtu_conn *c = st->data;
    if (n < 0) {
        conn_close(c, uv_strerror((int)n));
        return;
    }
    if (n == 0 || c->closing)
        return;
    const uint8_t *p = (const uint8_t *)buf->base;
    size_t len = (size_t)n;
    if (!c->registered) {
        size_t take = len < sizeof(c->reg) - c->reglen ? len : sizeof(c->reg) - c->reglen;
        memcpy(c->reg + c->reglen, p, take);
        c->reglen += take;
        p += take;
        len -= take;
        int used = parse_registration(c);
        if (used < 0 || (used == 0 && c->reglen == sizeof(c->reg))) {
            GW_LOG_RL(GW_LOG_WARN, 10000, "modbus-dtu", "bad registration packet (%zu bytes)",
                      c->reglen);
            c->lis->refused_unknown++;
            conn_close(c, "bad registration");
            return;
        }
        if (used == 0)
            return;
        conn_register(c);
        if (c->closing)
            return;
        conn_touch(c);
        /* Bytes after the registration belong to the stream (rare: a DTU
         * waits to be asked). */
        size_t extra = c->reglen - (size_t)used;
        c->reglen = (size_t)used; /* kept to drop repeated registrations */
        if (extra)
            gw_mbl__feed(c->link, c->reg + used, extra);
        if (!len)
            return;
    } else {
        conn_touch(c);
    }
    /* Heartbeats and repeated registrations are dropped. */
    struct dtu_listener *lis = c->lis;
    for (int guard = 0; guard < 64 && len; guard++) {
        if (lis->hb_len && len >= lis->hb_len && memcmp(p, lis->hb, lis->hb_len) == 0) {
            p += lis->hb_len;
            len -= lis->hb_len;
        } else if (c->reglen && len >= c->reglen && memcmp(p, c->reg, c->reglen) == 0) {
            p += c->reglen;
            len -= c->reglen;
        } else {
            break;
        }
    }
    if (len && c->link)
        gw_mbl__feed(c->link, p, len);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct dtu_listener *lis = server->data;
    if (status < 0 || lis->closing)
        return;
    struct dtu_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->lis = lis;
    uv_tcp_init(lis->core->loop, &c->tcp);
    uv_timer_init(lis->core->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles = 2;
    lis->alive++;
    c->next = lis->conns;
    lis->conns = c;
    lis->nconns++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp)) {
        conn_close(c, "accept failed");
        return;
    }
    if (lis->nconns > (size_t)lis->conf.max_connections) {
        lis->refused_full++;
        GW_LOG_RL(GW_LOG_WARN, 10000, "modbus-dtu", "%s connections: refusing (%llu so far)",
                  "too many", (unsigned long long)lis->refused_full);
        conn_close(c, "too many connections");
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_timer_start(&c->timer, on_conn_timer, (uint64_t)lis->conf.register_timeout_ms, 0);
    uv_read_start((uv_stream_t *)&c->tcp, on_conn_alloc, on_conn_read);
}

/* ---- Listener ---- */

static void on_server_closed(uv_handle_t *h)
{
    struct dtu_listener *lis = h->data;
    lis->closing = 2;
    if (lis->alive == 0)
        free(lis);
}

static int dtu_listen(gw_core *core, const void *conf, void **state, char *err, size_t errlen)
{
    const struct dtu_lconf *lc = conf;
    struct sockaddr_storage ss;
    if (gw_sockaddr_parse(lc->listen, 1, &ss)) {
        snprintf(err, errlen, "key 'listen' must be IP:PORT (got '%s')", lc->listen);
        return GW_EINVAL;
    }
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
    uv_tcp_init(core->loop, &lis->server);
    lis->server.data = lis;
    int rc = uv_tcp_bind(&lis->server, (struct sockaddr *)&ss, 0);
    if (!rc)
        rc = uv_listen((uv_stream_t *)&lis->server, 1024, on_connection);
    if (rc) {
        snprintf(err, errlen, "cannot listen on %s: %s", lc->listen, uv_strerror(rc));
        lis->closing = 1;
        uv_close((uv_handle_t *)&lis->server, on_server_closed);
        return GW_EINVAL;
    }
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
    lis->closing = 1;
    for (int guard = 0; guard < 1000000 && lis->conns; guard++)
        conn_close(lis->conns, "listener stopped");
    uv_close((uv_handle_t *)&lis->server, on_server_closed);
}

/* ---- Devices ---- */

static void dev_closed(gw_mbs *s)
{
    free(s->owner);
}

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
    struct dtu_dev *d = calloc(1, sizeof(*d));
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return GW_ENOMEM;
    }
    int rc = gw_mbs__init(&d->s, core, dev, "modbus-dtu", err, errlen);
    if (rc) {
        free(d);
        return rc;
    }
    d->s.owner = d;
    d->s.on_closed = dev_closed;
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
                if (c->registered && !c->closing && strcmp(c->id, d->dtu) == 0) {
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
    .listener_keys = dtu_listener_keys,
    .listener_conf_size = sizeof(struct dtu_lconf),
    .listen = dtu_listen,
    .unlisten = dtu_unlisten,
};
