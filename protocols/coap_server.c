/* CoAP devices (NB-IoT smoke detectors, JSON sensors) on the gateway loop.
 *
 * Listener ("coap"): a libcoap context with a plain UDP endpoint and an optional
 * DTLS-PSK endpoint. libcoap's epoll fd is watched with uv_poll and its timers
 * with one uv_timer; every wake-up runs coap_io_process(ctx, COAP_IO_NO_WAIT).
 * Resources: POST/PUT /d/<address>/data, /d/<address>/event and the LwM2M-style
 * raw container /19/0/0. The device is named by the DTLS PSK identity, the path,
 * a ?ep=IMEI query or the payload: the adapters that accept the request's
 * Content-Format are asked for the id it carries (gw_adapter_identify: an NB-100
 * frame's IMEI, a JSON or CBOR "imei"/"ep"). A Content-Format the device's
 * adapter does not accept gets 4.15.
 *
 * Acknowledge after commit. libcoap answers a request when its handler returns,
 * so the handler turns the pending answer into a dropped one (type NON, code 0:
 * libcoap then sends nothing, measured on 4.3.1) and remembers the message id,
 * token and session. Requests handed to the pipeline during one wake-up form a
 * batch; one gw_core_flush per batch; the flush callback sends each request's
 * piggy-backed ACK 2.04 itself (coap_send of an ACK with the request's message
 * id and token). A retransmission of a request still waiting is ignored; one of
 * a request already answered gets the same answer again without a second decode
 * (a bounded table of recent (peer, message id) pairs).
 *
 * Devices ("protocol: coap"): attach() compiles the device's adapter, JSON
 * mapping and PSK, and has the core supervise the heartbeat (gw_core_watch:
 * offline after heartbeat x offline_after without a message, online on the next)
 * and, for `observe: coap://HOST:PORT/path`, an Observe client on a shared
 * client context that re-registers after `observe_renew` without a
 * notification, after an RST and after an error answer. */
#include "adapters/adapter.h"
#include "base/hex.h"
#include "base/keyfile.h"
#include "base/backoff.h"
#include "gateway/core.h"
#include "base/log.h"

#include <arpa/inet.h>
#include <coap3/coap.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEDUP_CAP 65536u /* recent requests remembered for retransmissions */
#define MAX_PAYLOAD 16384
#define F(s, m) offsetof(s, m), sizeof(((s *)0)->m)

/* ---- configuration ---- */

struct lconf {
    char listen[64];
    int64_t port, dtls_port, max_sessions, max_pending;
};

static const gw_cfgkey listener_keys[] = {
    {"listen", GW_CT_STR, "127.0.0.1", 0, -1, F(struct lconf, listen), NULL, 0,
     "address to listen on (use 0.0.0.0 to accept devices from the network)"},
    {"port", GW_CT_INT, "5683", 0, 65535, offsetof(struct lconf, port), 0, NULL, 0,
     "plain coap:// UDP port (0 = off)"},
    {"dtls_port", GW_CT_INT, "0", 0, 65535, offsetof(struct lconf, dtls_port), 0, NULL, 0,
     "coaps:// DTLS-PSK UDP port (0 = off)"},
    {"max_sessions", GW_CT_INT, "10000", 1, 1000000, offsetof(struct lconf, max_sessions), 0, NULL,
     0, "idle sessions kept by libcoap"},
    {"max_pending", GW_CT_INT, "20000", 16, 1000000, offsetof(struct lconf, max_pending), 0, NULL,
     0, "requests waiting for the outbox commit; beyond: 5.03"},
    {NULL}};

struct dconf {
    char adapter[32];
    const gw_ynode *json_map;
    char psk[132];
    char psk_file[256];
    int64_t heartbeat_ms;
    char observe[160];
    int64_t observe_renew_ms;
    char sm4_key_file[256], sm4_mode[8];
};

static const gw_cfgkey device_keys[] = {
    {"adapter", GW_CT_STR, "json-map", 0, -1, F(struct dconf, adapter), NULL, 0,
     "payload decoder (smoke-nb100, json-map, ...)"},
    {"json_map", GW_CT_NODE, NULL, 0, -1, offsetof(struct dconf, json_map), 0, NULL, 0,
     "JSON mapping (adapters/json_map.h)"},
    {"psk", GW_CT_STR, "", 0, -1, F(struct dconf, psk), NULL, 0, "DTLS pre-shared key, hex"},
    {"psk_file", GW_CT_STR, "", 0, -1, F(struct dconf, psk_file), NULL, 0,
     "file holding the key in hex (mode 0600: refused if group or others may read it)"},
    {"heartbeat", GW_CT_DURATION, "0", 0, 8640000, offsetof(struct dconf, heartbeat_ms), 0, NULL, 0,
     "expected report interval (0 = no supervision)"},
    {"observe", GW_CT_STR, "", 0, -1, F(struct dconf, observe), NULL, 0,
     "coap://HOST:PORT/path to observe"},
    {"observe_renew", GW_CT_DURATION, "5m", 0.05, 86400, offsetof(struct dconf, observe_renew_ms),
     0, NULL, 0, "re-register after this long without a notification"},
    {"sm4_key_file", GW_CT_STR, "", 0, -1, F(struct dconf, sm4_key_file), NULL, 0,
     "per-device SM4 key (32 hex digits, mode 0600): payloads are IV || SM4 ciphertext, "
     "decrypted before the adapter (docs/adapters.md)"},
    {"sm4_mode", GW_CT_STR, "ctr", 0, -1, F(struct dconf, sm4_mode), NULL, 0,
     "ctr, or cbc with PKCS#7 padding"},
    {NULL}};

/* ---- per-device state ---- */

struct obs;

struct cdev {
    gw_device *dev;
    gw_core *core;
    gw_adapter_use use; /* the device's adapter and json_map */
    uint8_t psk[64];
    coap_bin_const_t pskbin;
    struct obs *obs;
};

static int unhex(const char *s, uint8_t *out, size_t cap, size_t *n)
{
    size_t len = strlen(s);
    while (len && isspace((unsigned char)s[len - 1]))
        len--;
    int got = len ? gw_hex_decode(s, len, out, cap) : -1;
    if (got < 0)
        return GW_EINVAL;
    *n = (size_t)got;
    return GW_OK;
}

/* Reads the device's key (never logged). Returns 0 with *n = 0 when none. */
static int load_psk(const struct dconf *c, uint8_t *out, size_t cap, size_t *n, char *err,
                    size_t errlen)
{
    *n = 0;
    if (c->psk[0] && c->psk_file[0]) {
        snprintf(err, errlen, "keys 'psk' and 'psk_file' exclude each other");
        return GW_EINVAL;
    }
    if (c->psk[0] && unhex(c->psk, out, cap, n)) {
        snprintf(err, errlen, "key 'psk' must be 2..128 hex digits");
        return GW_EINVAL;
    }
    if (c->psk_file[0]) {
        char line[160] = "";
        if (gw_keyfile_check(c->psk_file, err, errlen))
            return GW_EINVAL; /* a key others can read is refused, as for every key file */
        FILE *f = fopen(c->psk_file, "r");
        if (!f) {
            snprintf(err, errlen, "psk_file %s: %s", c->psk_file, strerror(errno));
            return GW_EINVAL;
        }
        if (!fgets(line, sizeof(line), f))
            line[0] = '\0';
        fclose(f);
        int rc = unhex(line, out, cap, n);
        memset(line, 0, sizeof(line));
        if (rc) {
            snprintf(err, errlen, "psk_file %s must hold 2..128 hex digits", c->psk_file);
            return GW_EINVAL;
        }
    }
    return GW_OK;
}

static int check_device(const gw_device *dev, char *err, size_t errlen)
{
    const struct dconf *c = dev->proto_conf;
    if (!dev->conf.address[0]) {
        snprintf(err, errlen, "a coap device needs 'address' (its IMEI or endpoint name)");
        return GW_EINVAL;
    }
    if (gw_adapter_use_init(NULL, c->adapter, c->json_map, err, errlen) ||
        gw_adapter_use_sm4(NULL, c->sm4_key_file, c->sm4_mode, err, errlen))
        return GW_EINVAL;
    uint8_t k[64];
    size_t n;
    int rc = load_psk(c, k, sizeof(k), &n, err, errlen);
    memset(k, 0, sizeof(k));
    if (rc)
        return rc;
    if (c->observe[0] && strncmp(c->observe, "coap://", 7)) {
        snprintf(err, errlen, "key 'observe' must be coap://HOST:PORT/path");
        return GW_EINVAL;
    }
    return GW_OK;
}

/* ---- delivery into the pipeline ---- */

struct deliver {
    gw_core *core;
    gw_device *dev;
    int refused, n;
};

static int on_reading(void *ctx, const gw_reading *r)
{
    struct deliver *d = ctx;
    gw_reading copy = *r;
    if (gw_core_reading(d->core, d->dev, &copy) == GW_EFULL)
        d->refused++;
    d->n++;
    return GW_OK;
}

static int on_event(void *ctx, const gw_event *e)
{
    struct deliver *d = ctx;
    gw_event copy = *e;
    gw_core_event(d->core, d->dev, &copy);
    d->n++;
    return GW_OK;
}

/* Decodes one payload of a device. Returns 0, GW_EMALFORMED (nothing was
 * delivered) or GW_EFULL (some readings refused by the store queue). */
static int deliver_payload(struct cdev *c, const uint8_t *buf, size_t len)
{
    struct deliver d = {c->core, c->dev, 0, 0};
    gw_sink sink = {on_reading, on_event, &d};
    int rc;
    /* A built-in frame carries its own sequence number: the same bytes again
     * are a resend (a new message id does not make it new). Mapped JSON/CBOR
     * may repeat legitimately, so they are not judged by content. */
    char key[24] = "";
    if (!c->use.adapter->decode_mapped) {
        uint64_t h = 1469598103934665603ull;
        for (size_t i = 0; i < len; i++)
            h = (h ^ buf[i]) * 1099511628211ull;
        snprintf(key, sizeof(key), "p%016llx", (unsigned long long)h);
        if (gw_core_seen_report(c->core, c->dev, key)) {
            gw_core_seen(c->core, c->dev, NULL);
            return GW_OK;
        }
    }
    rc = gw_adapter_use_decode(&c->use, NULL, buf, len, gw_now_ms(), &sink);
    if ((rc && d.n == 0) || d.refused) {
        if (key[0])
            gw_core_forget_report(c->core, c->dev, key);
        if (!d.refused)
            return GW_EMALFORMED;
    }
    gw_core_seen(c->core, c->dev, NULL); /* online; heartbeat supervision restarts */
    return d.refused ? GW_EFULL : GW_OK;
}

/* ---- the server ---- */

struct pend {
    coap_session_t *session; /* referenced */
    coap_mid_t mid;
    uint8_t tok[8];
    uint8_t toklen;
    uint8_t code; /* COAP_RESPONSE_CODE to send after the commit */
    uint8_t key[20];
};

struct batch {
    struct batch *next;
    struct csrv *srv; /* NULL once the listener is gone */
    size_t n, cap;
    struct pend *p;
};

struct dent {
    uint8_t key[20]; /* peer address (16) + port (2) + message id (2) */
    int32_t next;
    uint8_t used, done, code;
};

struct csrv {
    gw_core *core;
    struct lconf conf;
    coap_context_t *ctx;
    uv_poll_t poll;
    uv_timer_t timer;
    int handles;
    int closing;
    struct batch *open;   /* requests of the current wake-up */
    struct batch *flying; /* batches waiting for their commit */
    size_t pending;
    struct dent *dd;
    int32_t *bucket;
    uint32_t dd_head;
    uint64_t requests, acked, unknown, unauthorized, malformed, busy, dups, dtls_errors;
    struct csrv *next;
};

/* libcoap 4.3.1 has no per-context user data: the few listeners are listed. */
static struct csrv *servers;

static struct csrv *srv_of(const coap_context_t *ctx)
{
    for (struct csrv *s = servers; s; s = s->next)
        if (s->ctx == ctx)
            return s;
    return NULL;
}

static void kick(struct csrv *s);

static uint32_t key_hash(const uint8_t *k)
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < 20; i++)
        h = (h ^ k[i]) * 16777619u;
    return h;
}

static void make_key(coap_session_t *session, coap_mid_t mid, uint8_t *k)
{
    memset(k, 0, 20);
    const coap_address_t *a = coap_session_get_addr_remote(session);
    if (a && a->addr.sa.sa_family == AF_INET) {
        memcpy(k, &a->addr.sin.sin_addr, 4);
        memcpy(k + 16, &a->addr.sin.sin_port, 2);
    } else if (a && a->addr.sa.sa_family == AF_INET6) {
        memcpy(k, &a->addr.sin6.sin6_addr, 16);
        memcpy(k + 16, &a->addr.sin6.sin6_port, 2);
    }
    k[18] = (uint8_t)(mid >> 8);
    k[19] = (uint8_t)mid;
    if (coap_session_get_proto(session) == COAP_PROTO_DTLS)
        k[17] ^= 0x80; /* the DTLS port differs anyway; keep the two spaces apart */
}

static struct dent *dd_find(struct csrv *s, const uint8_t *k)
{
    for (int32_t i = s->bucket[key_hash(k) & (DEDUP_CAP - 1)]; i >= 0; i = s->dd[i].next)
        if (!memcmp(s->dd[i].key, k, 20))
            return &s->dd[i];
    return NULL;
}

static void dd_insert(struct csrv *s, const uint8_t *k)
{
    uint32_t slot = s->dd_head++ & (DEDUP_CAP - 1);
    struct dent *e = &s->dd[slot];
    if (e->used) { /* the oldest entry makes room: unlink it from its chain */
        int32_t *pp = &s->bucket[key_hash(e->key) & (DEDUP_CAP - 1)];
        while (*pp >= 0 && *pp != (int32_t)slot)
            pp = &s->dd[*pp].next;
        if (*pp == (int32_t)slot)
            *pp = e->next;
    }
    memcpy(e->key, k, 20);
    e->used = 1;
    e->done = 0;
    e->code = 0;
    uint32_t b = key_hash(k) & (DEDUP_CAP - 1);
    e->next = s->bucket[b];
    s->bucket[b] = (int32_t)slot;
}

static void send_ack(coap_session_t *session, coap_mid_t mid, const uint8_t *tok, size_t toklen,
                     uint8_t code)
{
    coap_pdu_t *p = coap_pdu_init(COAP_MESSAGE_ACK, code, mid, coap_session_max_pdu_size(session));
    if (!p)
        return;
    if (!coap_add_token(p, toklen, tok)) {
        coap_delete_pdu(p);
        return;
    }
    coap_send(session, p);
}

static void on_flushed(void *ctx, int status)
{
    struct batch *b = ctx;
    struct csrv *s = b->srv;
    if (s) {
        for (struct batch **pp = &s->flying; *pp; pp = &(*pp)->next)
            if (*pp == b) {
                *pp = b->next;
                break;
            }
        for (size_t i = 0; i < b->n; i++) {
            struct pend *p = &b->p[i];
            /* A failed commit is a server error: the device sends again. */
            uint8_t code = status ? COAP_RESPONSE_CODE(500) : p->code;
            send_ack(p->session, p->mid, p->tok, p->toklen, code);
            coap_session_release(p->session);
            struct dent *e = dd_find(s, p->key);
            if (e) {
                e->done = 1;
                e->code = code;
            }
            if (code == COAP_RESPONSE_CODE(204))
                s->acked++;
        }
        s->pending -= b->n;
        kick(s);
    }
    free(b->p);
    free(b);
}

/* After a wake-up: one flush for every request it handed to the pipeline. */
static void flush_open(struct csrv *s)
{
    struct batch *b = s->open;
    if (!b || b->n == 0)
        return;
    s->open = NULL;
    b->next = s->flying;
    s->flying = b;
    if (gw_core_flush(s->core, on_flushed, b))
        on_flushed(b, GW_ERR);
}

static int hold(struct csrv *s, coap_session_t *session, const coap_pdu_t *req, const uint8_t *k,
                uint8_t code)
{
    if (!s->open) {
        s->open = calloc(1, sizeof(*s->open));
        if (!s->open)
            return GW_ENOMEM;
        s->open->srv = s;
    }
    struct batch *b = s->open;
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        struct pend *np = realloc(b->p, cap * sizeof(*np));
        if (!np)
            return GW_ENOMEM;
        b->p = np;
        b->cap = cap;
    }
    struct pend *p = &b->p[b->n++];
    coap_bin_const_t t = coap_pdu_get_token(req);
    p->session = coap_session_reference(session);
    p->mid = coap_pdu_get_mid(req);
    p->toklen = (uint8_t)(t.length <= 8 ? t.length : 8);
    memcpy(p->tok, t.s, p->toklen);
    p->code = code;
    memcpy(p->key, k, 20);
    s->pending++;
    return GW_OK;
}

/* The request's Content-Format, or -1 without one. */
static int content_format(const coap_pdu_t *req)
{
    coap_opt_iterator_t it;
    coap_opt_t *o = coap_check_option(req, COAP_OPTION_CONTENT_FORMAT, &it);
    if (!o)
        return -1;
    return (int)coap_decode_var_bytes(coap_opt_value(o), coap_opt_length(o));
}

/* The identity a request names (address or IMEI), or "" if none. Returns 1
 * when the payload named it, else 0. */
static int request_identity(coap_session_t *session, const coap_pdu_t *req,
                            const coap_string_t *query, const char *path_addr, const uint8_t *data,
                            size_t len, char *out, size_t cap)
{
    out[0] = '\0';
    if (path_addr && path_addr[0]) {
        gw_strlcpy(out, path_addr, cap);
        return 0;
    }
    if (query) {
        /* ep=IMEI, possibly among other parameters separated by '&'. */
        const char *q = (const char *)query->s;
        size_t qn = query->length;
        for (size_t i = 0; i < qn;) {
            size_t j = i;
            while (j < qn && q[j] != '&')
                j++;
            if (j - i > 3 && !memcmp(q + i, "ep=", 3) && j - i - 3 < cap) {
                memcpy(out, q + i + 3, j - i - 3);
                out[j - i - 3] = '\0';
                return 0;
            }
            i = j + 1;
        }
    }
    return gw_adapter_identify(content_format(req), data, len, out, cap) != NULL;
}

static int printable_id(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("-_.:", *s))
            return 0;
    return 1;
}

static void refuse(coap_pdu_t *resp, int code)
{
    coap_pdu_set_code(resp, COAP_RESPONSE_CODE(code));
}

static void on_request(coap_resource_t *res, coap_session_t *session, const coap_pdu_t *req,
                       const coap_string_t *query, coap_pdu_t *resp)
{
    struct csrv *s = coap_resource_get_userdata(res);
    if (!s || s->closing) {
        refuse(resp, 503);
        return;
    }
    s->requests++;
    int con = coap_pdu_get_type(req) == COAP_MESSAGE_CON;
    uint8_t key[20];
    make_key(session, coap_pdu_get_mid(req), key);
    if (con) {
        struct dent *e = dd_find(s, key);
        if (e) {
            s->dups++;
            if (e->done)
                coap_pdu_set_code(resp, e->code); /* the answer it missed, again */
            else
                coap_pdu_set_type(resp, COAP_MESSAGE_NON); /* still committing: stay quiet */
            return;
        }
    }

    /* Which resource: d/<address>/<data|event> or 19/0/0. */
    char path[192] = "", addr[64] = "";
    coap_string_t *up = coap_get_uri_path(req);
    if (up) {
        size_t n = up->length < sizeof(path) - 1 ? up->length : sizeof(path) - 1;
        memcpy(path, up->s, n);
        path[n] = '\0';
        coap_delete_string(up);
    }
    if (!strncmp(path, "d/", 2)) {
        char *slash = strchr(path + 2, '/');
        if (!slash || (strcmp(slash + 1, "data") && strcmp(slash + 1, "event")) ||
            (size_t)(slash - (path + 2)) >= sizeof(addr)) {
            refuse(resp, 404);
            return;
        }
        memcpy(addr, path + 2, (size_t)(slash - (path + 2)));
        addr[slash - (path + 2)] = '\0';
    } else if (strcmp(path, "19/0/0")) {
        refuse(resp, 404);
        return;
    }

    size_t len = 0;
    const uint8_t *data = NULL;
    if (!coap_get_data(req, &len, &data) || len == 0 || len > MAX_PAYLOAD) {
        s->malformed++;
        GW_LOG_RL(GW_LOG_WARN, 10000, "coap", "empty or oversized payload on /%s (%llu so far)",
                  path, (unsigned long long)s->malformed);
        refuse(resp, 400);
        return;
    }

    /* Identity: a DTLS session is the device its PSK identity named; the
     * request may not speak for another one. */
    char ident[64] = "", named[64];
    int secure = coap_session_get_proto(session) == COAP_PROTO_DTLS;
    if (secure) {
        const coap_bin_const_t *id = coap_session_get_psk_identity(session);
        if (!id || id->length == 0 || id->length >= sizeof(ident)) {
            s->unauthorized++;
            refuse(resp, 401);
            return;
        }
        memcpy(ident, id->s, id->length);
        ident[id->length] = '\0';
    }
    int by_payload = request_identity(session, req, query, addr, data, len, named, sizeof(named));
    if (secure && named[0] && strcmp(named, ident)) {
        s->unauthorized++;
        GW_LOG_RL(GW_LOG_WARN, 10000, "coap", "DTLS identity %s posted as %s: refused (%llu)",
                  ident, named, (unsigned long long)s->unauthorized);
        refuse(resp, 401);
        return;
    }
    const char *who = secure ? ident : named;
    gw_device *dev = printable_id(who) ? gw_core_find_device(s->core, "coap", who) : NULL;
    struct cdev *c = dev ? dev->proto_state : NULL;
    if (!c) {
        s->unknown++;
        GW_LOG_RL(GW_LOG_WARN, 10000, "coap", "unknown device '%.63s' on /%s refused (%llu so far)",
                  printable_id(who) ? who : "?", path, (unsigned long long)s->unknown);
        refuse(resp, 404);
        return;
    }
    if (c->pskbin.length && !secure) {
        s->unauthorized++;
        GW_LOG_RL(GW_LOG_WARN, 10000, "coap", "[%s] has a PSK but sent over plain coap: refused",
                  dev->conf.id);
        refuse(resp, 401);
        return;
    }
    /* A payload that names a device must name this one. */
    char carried[64];
    if (!by_payload && c->use.adapter->identify &&
        c->use.adapter->identify(data, len, carried, sizeof(carried)) == GW_OK &&
        strcmp(carried, dev->conf.address)) {
        s->unauthorized++;
        refuse(resp, 401);
        return;
    }
    /* A format the device's adapter does not read (stating none is fine). */
    int cf = content_format(req);
    if (!gw_adapter_accepts(c->use.adapter, cf)) {
        s->malformed++;
        GW_LOG_RL(GW_LOG_WARN, 10000, "coap", "[%s] Content-Format %d not read by %s: 4.15 (%llu)",
                  dev->conf.id, cf, c->use.adapter->name, (unsigned long long)s->malformed);
        refuse(resp, 415);
        return;
    }
    if (con && s->pending >= (size_t)s->conf.max_pending) {
        s->busy++;
        GW_LOG_RL(GW_LOG_WARN, 10000, "coap", "%zu requests waiting for the commit: 5.03 (%llu)",
                  s->pending, (unsigned long long)s->busy);
        refuse(resp, 503);
        return;
    }
    int rc = deliver_payload(c, data, len);
    if (rc == GW_EMALFORMED) {
        s->malformed++;
        GW_LOG_RL(GW_LOG_WARN, 10000, "coap", "[%s] malformed payload (%zu bytes) on /%s (%llu)",
                  dev->conf.id, len, path, (unsigned long long)s->malformed);
        refuse(resp, 400);
        return;
    }
    uint8_t code = rc == GW_EFULL ? COAP_RESPONSE_CODE(503) : COAP_RESPONSE_CODE(204);
    if (!con) {
        coap_pdu_set_type(resp, COAP_MESSAGE_NON); /* no answer to a NON (code 0: dropped) */
        return;
    }
    if (hold(s, session, req, key, code)) {
        refuse(resp, 500);
        return;
    }
    dd_insert(s, key);
    /* Nothing goes out now: on_flushed sends the piggy-backed ACK. */
    coap_pdu_set_type(resp, COAP_MESSAGE_NON);
}

static const coap_bin_const_t *on_psk_identity(coap_bin_const_t *identity, coap_session_t *session,
                                               void *arg)
{
    struct csrv *s = arg;
    char id[64];
    if (!identity || identity->length == 0 || identity->length >= sizeof(id))
        goto refused;
    memcpy(id, identity->s, identity->length);
    id[identity->length] = '\0';
    if (!printable_id(id))
        goto refused;
    gw_device *dev = gw_core_find_device(s->core, "coap", id);
    struct cdev *c = dev ? dev->proto_state : NULL;
    if (!c || !c->pskbin.length)
        goto refused;
    return &c->pskbin;
refused:
    s->unauthorized++;
    GW_LOG_RL(GW_LOG_WARN, 10000, "coap", "DTLS identity refused (%llu so far)",
              (unsigned long long)s->unauthorized);
    return NULL;
}

static int on_coap_event(coap_session_t *session, const coap_event_t ev)
{
    struct csrv *s = srv_of(coap_session_get_context(session));
    if (s && ev == COAP_EVENT_DTLS_ERROR) {
        s->dtls_errors++;
        GW_LOG_RL(GW_LOG_WARN, 10000, "coap", "DTLS handshake failed (%llu so far)",
                  (unsigned long long)s->dtls_errors);
    }
    return 0;
}

static void run_io(struct csrv *s);

static void on_poll(uv_poll_t *h, int status, int events)
{
    run_io(h->data);
}

static void on_timer(uv_timer_t *t)
{
    run_io(t->data);
}

static void kick(struct csrv *s)
{
    if (!s->closing)
        uv_timer_start(&s->timer, on_timer, 0, 0);
}

static void run_io(struct csrv *s)
{
    if (s->closing)
        return;
    coap_io_process(s->ctx, COAP_IO_NO_WAIT);
    flush_open(s);
    coap_tick_t now;
    coap_ticks(&now);
    unsigned ms = coap_io_prepare_epoll(s->ctx, now);
    uv_timer_start(&s->timer, on_timer, ms ? ms : 1000, 0);
}

/* libcoap logs through here, rate-limited, at most warnings. */
static void coap_logger(coap_log_t level, const char *msg)
{
    int lv = level <= LOG_ERR ? GW_LOG_ERROR : level <= LOG_WARNING ? GW_LOG_WARN : GW_LOG_DEBUG;
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        n--;
    GW_LOG_RL(lv, 5000, "libcoap", "%.*s", (int)n, msg);
}

static void coap_init_once(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    coap_startup();
    coap_set_log_handler(coap_logger);
    coap_set_log_level(LOG_WARNING);
    coap_dtls_set_log_level(LOG_ERR);
}

static int add_endpoint(coap_context_t *ctx, const char *host, int port, coap_proto_t proto,
                        char *err, size_t errlen)
{
    coap_address_t a;
    coap_address_init(&a);
    struct sockaddr_in *v4 = &a.addr.sin;
    struct sockaddr_in6 *v6 = &a.addr.sin6;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        a.size = sizeof(*v4);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        a.size = sizeof(*v6);
    } else {
        snprintf(err, errlen, "listen '%s' is not an IP address", host);
        return GW_EINVAL;
    }
    if (!coap_new_endpoint(ctx, &a, proto)) {
        snprintf(err, errlen, "cannot listen on %s udp/%d", host, port);
        return GW_EINVAL;
    }
    return GW_OK;
}

static void srv_free(struct csrv *s)
{
    for (struct csrv **pp = &servers; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    free(s->dd);
    free(s->bucket);
    free(s);
}

static void on_closed(uv_handle_t *h)
{
    struct csrv *s = h->data;
    if (--s->handles > 0)
        return;
    if (s->ctx)
        coap_free_context(s->ctx);
    srv_free(s);
}

static int coap_listen(gw_core *core, const void *conf, void **state, char *err, size_t errlen)
{
    coap_init_once();
    struct csrv *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return GW_ENOMEM;
    }
    s->core = core;
    s->conf = *(const struct lconf *)conf;
    s->dd = calloc(DEDUP_CAP, sizeof(*s->dd));
    s->bucket = malloc(DEDUP_CAP * sizeof(*s->bucket));
    if (!s->dd || !s->bucket) {
        snprintf(err, errlen, "out of memory");
        goto error;
    }
    memset(s->bucket, 0xff, DEDUP_CAP * sizeof(*s->bucket));
    if (!s->conf.port && !s->conf.dtls_port) {
        snprintf(err, errlen, "port and dtls_port are both 0: nothing to listen on");
        goto error;
    }
    s->ctx = coap_new_context(NULL);
    if (!s->ctx) {
        snprintf(err, errlen, "cannot create a CoAP context");
        goto error;
    }
    s->next = servers;
    servers = s;
    coap_context_set_max_idle_sessions(s->ctx, (unsigned)s->conf.max_sessions);
    coap_register_event_handler(s->ctx, on_coap_event);
    if (s->conf.dtls_port) {
        coap_dtls_spsk_t sp;
        memset(&sp, 0, sizeof(sp));
        sp.version = COAP_DTLS_SPSK_SETUP_VERSION;
        sp.validate_id_call_back = on_psk_identity;
        sp.id_call_back_arg = s;
        sp.psk_info.hint.s = (const uint8_t *)"gw";
        sp.psk_info.hint.length = 2;
        if (!coap_dtls_is_supported() || !coap_context_set_psk2(s->ctx, &sp)) {
            snprintf(err, errlen, "DTLS-PSK is not available in this libcoap");
            goto error;
        }
        if (add_endpoint(s->ctx, s->conf.listen, (int)s->conf.dtls_port, COAP_PROTO_DTLS, err,
                         errlen))
            goto error;
    }
    if (s->conf.port &&
        add_endpoint(s->ctx, s->conf.listen, (int)s->conf.port, COAP_PROTO_UDP, err, errlen))
        goto error;
    coap_resource_t *r = coap_resource_unknown_init2(on_request, 0);
    if (!r) {
        snprintf(err, errlen, "out of memory");
        goto error;
    }
    coap_register_handler(r, COAP_REQUEST_POST, on_request);
    coap_resource_set_userdata(r, s);
    coap_add_resource(s->ctx, r);
    int fd = coap_context_get_coap_fd(s->ctx);
    if (fd < 0) {
        snprintf(err, errlen, "libcoap was built without epoll");
        goto error;
    }
    uv_poll_init(gw_core_loop(core), &s->poll, fd);
    uv_timer_init(gw_core_loop(core), &s->timer);
    s->poll.data = s->timer.data = s;
    s->handles = 2;
    uv_poll_start(&s->poll, UV_READABLE, on_poll);
    kick(s);
    if (s->conf.dtls_port)
        GW_INFO("coap", "listening on %s udp/%lld, DTLS-PSK udp/%lld", s->conf.listen,
                (long long)s->conf.port, (long long)s->conf.dtls_port);
    else
        GW_INFO("coap", "listening on %s udp/%lld", s->conf.listen, (long long)s->conf.port);
    *state = s;
    return GW_OK;
error:
    if (s->ctx)
        coap_free_context(s->ctx);
    srv_free(s);
    return GW_EINVAL;
}

static void release_batch(struct batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        coap_session_release(b->p[i].session);
    b->n = 0;
    b->srv = NULL;
}

static void coap_unlisten(void *state)
{
    struct csrv *s = state;
    s->closing = 1;
    GW_INFO("coap",
            "stopping: requests %llu acked %llu unknown %llu unauthorized %llu malformed %llu "
            "busy %llu duplicates %llu dtls_errors %llu",
            (unsigned long long)s->requests, (unsigned long long)s->acked,
            (unsigned long long)s->unknown, (unsigned long long)s->unauthorized,
            (unsigned long long)s->malformed, (unsigned long long)s->busy,
            (unsigned long long)s->dups, (unsigned long long)s->dtls_errors);
    /* Requests still waiting for their commit get no answer: the device sends
     * them again to the next gateway run. Their batches free themselves in
     * on_flushed. */
    if (s->open) {
        release_batch(s->open);
        free(s->open->p);
        free(s->open);
        s->open = NULL;
    }
    for (struct batch *b = s->flying; b; b = b->next)
        release_batch(b);
    s->flying = NULL;
    uv_poll_stop(&s->poll);
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->poll, on_closed);
    uv_close((uv_handle_t *)&s->timer, on_closed);
}

/* ---- Observe client (shared context for every observed device) ---- */

/* One client context per generation: the last observer's release closes
 * it and its close callback frees exactly that one, while the next acquire
 * (a reload that detaches every device before attaching the new ones) builds
 * a fresh one. `cli` is the open generation, NULL when none. */
struct cli {
    coap_context_t *ctx;
    uv_poll_t poll;
    uv_timer_t timer;
    int users;
    int closing; /* handles still closing */
};
static struct cli *cli;

struct obs {
    struct cdev *c;
    coap_session_t *session;
    coap_uri_t uri;
    char text[160];
    uint8_t tok[8];
    size_t toklen;
    uv_timer_t renew;
    int64_t last_ms; /* last notification (monotonic) */
    int registered;
    gw_backoff bo;
    uint64_t notifications, registrations;
};

static void cli_run(void);

static void cli_on_poll(uv_poll_t *h, int status, int events)
{
    cli_run();
}

static void cli_on_timer(uv_timer_t *t)
{
    cli_run();
}

static void cli_kick(void)
{
    if (cli)
        uv_timer_start(&cli->timer, cli_on_timer, 0, 0);
}

static void cli_run(void)
{
    if (!cli)
        return;
    coap_io_process(cli->ctx, COAP_IO_NO_WAIT);
    coap_tick_t now;
    coap_ticks(&now);
    unsigned ms = coap_io_prepare_epoll(cli->ctx, now);
    if (cli) /* a handler may have released the last observer */
        uv_timer_start(&cli->timer, cli_on_timer, ms ? ms : 1000, 0);
}

static void obs_schedule(struct obs *o, int64_t ms);

static void obs_drop_session(struct obs *o)
{
    if (o->session) {
        coap_session_set_app_data(o->session, NULL);
        coap_session_release(o->session);
        o->session = NULL;
    }
    o->registered = 0;
}

/* Starts (again) the observation: a new session and a GET with Observe: 0. */
static void obs_register(struct obs *o)
{
    obs_drop_session(o);
    coap_address_t dst;
    coap_address_init(&dst);
    char host[64];
    if (o->uri.host.length >= sizeof(host))
        return;
    memcpy(host, o->uri.host.s, o->uri.host.length);
    host[o->uri.host.length] = '\0';
    if (inet_pton(AF_INET, host, &dst.addr.sin.sin_addr) == 1) {
        dst.addr.sin.sin_family = AF_INET;
        dst.addr.sin.sin_port = htons(o->uri.port);
        dst.size = sizeof(dst.addr.sin);
    } else if (inet_pton(AF_INET6, host, &dst.addr.sin6.sin6_addr) == 1) {
        dst.addr.sin6.sin6_family = AF_INET6;
        dst.addr.sin6.sin6_port = htons(o->uri.port);
        dst.size = sizeof(dst.addr.sin6);
    } else {
        GW_LOG_RL(GW_LOG_WARN, 60000, "coap", "[%s] observe host '%s' is not an IP address",
                  o->c->dev->conf.id, host);
        obs_schedule(o, gw_backoff_next(&o->bo));
        return;
    }
    o->session = coap_new_client_session(cli->ctx, NULL, &dst, COAP_PROTO_UDP);
    if (!o->session) {
        obs_schedule(o, gw_backoff_next(&o->bo));
        return;
    }
    coap_session_set_app_data(o->session, o);
    coap_pdu_t *pdu =
        coap_pdu_init(COAP_MESSAGE_CON, COAP_REQUEST_CODE_GET, coap_new_message_id(o->session),
                      coap_session_max_pdu_size(o->session));
    if (!pdu) {
        obs_schedule(o, gw_backoff_next(&o->bo));
        return;
    }
    coap_session_new_token(o->session, &o->toklen, o->tok);
    coap_add_token(pdu, o->toklen, o->tok);
    uint8_t b[4];
    coap_add_option(pdu, COAP_OPTION_OBSERVE,
                    coap_encode_var_safe(b, sizeof(b), COAP_OBSERVE_ESTABLISH), b);
    /* Uri-Path options, one per segment. */
    const uint8_t *p = o->uri.path.s;
    size_t left = o->uri.path.length;
    while (left) {
        size_t k = 0;
        while (k < left && p[k] != '/')
            k++;
        if (k)
            coap_add_option(pdu, COAP_OPTION_URI_PATH, k, p);
        p += k;
        left -= k;
        if (left) {
            p++;
            left--;
        }
    }
    o->registrations++;
    o->last_ms = gw_mono_ms();
    if (coap_send(o->session, pdu) == COAP_INVALID_MID)
        obs_schedule(o, gw_backoff_next(&o->bo));
    else
        obs_schedule(o, o->c->dev->proto_conf
                            ? ((struct dconf *)o->c->dev->proto_conf)->observe_renew_ms
                            : 300000);
    cli_kick();
}

static void on_renew(uv_timer_t *t)
{
    struct obs *o = t->data;
    const struct dconf *dc = o->c->dev->proto_conf;
    int64_t idle = gw_mono_ms() - o->last_ms;
    if (o->registered && idle < dc->observe_renew_ms) {
        obs_schedule(o, dc->observe_renew_ms - idle);
        return;
    }
    if (o->registered)
        GW_WARN("coap", "[%s] no notification for %lld ms: observing %s again", o->c->dev->conf.id,
                (long long)idle, o->text);
    obs_register(o);
}

static void obs_schedule(struct obs *o, int64_t ms)
{
    uv_timer_start(&o->renew, on_renew, (uint64_t)(ms > 0 ? ms : 1), 0);
}

static coap_response_t cli_on_response(coap_session_t *session, const coap_pdu_t *sent,
                                       const coap_pdu_t *recv, const coap_mid_t mid)
{
    struct obs *o = coap_session_get_app_data(session);
    if (!o)
        return COAP_RESPONSE_FAIL; /* an observation we gave up: RST stops it */
    coap_bin_const_t t = coap_pdu_get_token(recv);
    if (t.length != o->toklen || memcmp(t.s, o->tok, t.length))
        return COAP_RESPONSE_FAIL;
    coap_pdu_code_t code = coap_pdu_get_code(recv);
    if (COAP_RESPONSE_CLASS(code) != 2) {
        GW_LOG_RL(GW_LOG_WARN, 10000, "coap", "[%s] observe %s answered %d.%02d",
                  o->c->dev->conf.id, o->text, COAP_RESPONSE_CLASS(code), code & 0x1f);
        o->registered = 0;
        obs_schedule(o, gw_backoff_next(&o->bo));
        return COAP_RESPONSE_OK;
    }
    coap_opt_iterator_t it;
    if (!coap_check_option(recv, COAP_OPTION_OBSERVE, &it)) {
        /* The server does not keep the observation: poll it at the renew pace. */
        o->registered = 0;
    } else {
        o->registered = 1;
    }
    gw_backoff_reset(&o->bo);
    o->last_ms = gw_mono_ms();
    o->notifications++;
    size_t len;
    const uint8_t *data;
    if (coap_get_data(recv, &len, &data) && len) {
        if (deliver_payload(o->c, data, len) == GW_EMALFORMED)
            GW_LOG_RL(GW_LOG_WARN, 10000, "coap", "[%s] malformed notification (%zu bytes)",
                      o->c->dev->conf.id, len);
    }
    return COAP_RESPONSE_OK;
}

static void cli_on_nack(coap_session_t *session, const coap_pdu_t *sent,
                        const coap_nack_reason_t reason, const coap_mid_t mid)
{
    struct obs *o = coap_session_get_app_data(session);
    if (!o)
        return;
    GW_LOG_RL(GW_LOG_WARN, 10000, "coap", "[%s] observe %s lost (reason %d): re-registering",
              o->c->dev->conf.id, o->text, (int)reason);
    o->registered = 0;
    obs_schedule(o, gw_backoff_next(&o->bo));
}

static void cli_closed(uv_handle_t *h)
{
    struct cli *c = h->data;
    if (--c->closing > 0)
        return;
    coap_free_context(c->ctx);
    free(c);
}

static int cli_acquire(gw_core *core)
{
    if (cli) {
        cli->users++;
        return GW_OK;
    }
    coap_init_once();
    struct cli *c = calloc(1, sizeof(*c));
    if (!c)
        return GW_ENOMEM;
    c->ctx = coap_new_context(NULL);
    if (!c->ctx) {
        free(c);
        return GW_ENOMEM;
    }
    coap_register_response_handler(c->ctx, cli_on_response);
    coap_register_nack_handler(c->ctx, cli_on_nack);
    uv_poll_init(gw_core_loop(core), &c->poll, coap_context_get_coap_fd(c->ctx));
    uv_timer_init(gw_core_loop(core), &c->timer);
    c->poll.data = c->timer.data = c;
    uv_poll_start(&c->poll, UV_READABLE, cli_on_poll);
    c->users = 1;
    cli = c;
    return GW_OK;
}

static void cli_release(void)
{
    if (!cli || --cli->users > 0)
        return;
    struct cli *c = cli;
    cli = NULL;
    uv_poll_stop(&c->poll);
    uv_timer_stop(&c->timer);
    c->closing = 2;
    uv_close((uv_handle_t *)&c->poll, cli_closed);
    uv_close((uv_handle_t *)&c->timer, cli_closed);
}

static void obs_closed(uv_handle_t *h)
{
    free(h->data);
}

static int obs_start(struct cdev *c, const char *uri, char *err, size_t errlen)
{
    struct obs *o = calloc(1, sizeof(*o));
    if (!o) {
        snprintf(err, errlen, "out of memory");
        return GW_ENOMEM;
    }
    o->c = c;
    gw_strlcpy(o->text, uri, sizeof(o->text));
    if (coap_split_uri((const uint8_t *)o->text, strlen(o->text), &o->uri) < 0 ||
        o->uri.scheme != COAP_URI_SCHEME_COAP) {
        snprintf(err, errlen, "key 'observe': '%s' is not a coap:// URI", uri);
        free(o);
        return GW_EINVAL;
    }
    if (cli_acquire(c->core)) {
        snprintf(err, errlen, "cannot create the CoAP client context");
        free(o);
        return GW_ENOMEM;
    }
    /* Retries after errors never wait longer than observe_renew: a device back
     * from a long outage is observed again within that time. */
    int64_t renew = ((const struct dconf *)c->dev->proto_conf)->observe_renew_ms;
    gw_backoff_init(&o->bo, 500, renew < 60000 ? renew : 60000,
                    (uint64_t)gw_mono_ns() ^ (uintptr_t)o);
    uv_timer_init(gw_core_loop(c->core), &o->renew);
    o->renew.data = o;
    c->obs = o;
    obs_schedule(o, 1); /* register from the loop, once everything is up */
    return GW_OK;
}

static void obs_stop(struct obs *o)
{
    if (o->session && o->registered) {
        coap_binary_t tok = {o->toklen, o->tok};
        coap_cancel_observe(o->session, &tok, COAP_MESSAGE_NON);
    }
    obs_drop_session(o);
    uv_timer_stop(&o->renew);
    uv_close((uv_handle_t *)&o->renew, obs_closed);
    cli_release();
}

/* ---- attach / detach ---- */

static void cdev_free(struct cdev *c)
{
    gw_adapter_use_free(&c->use);
    memset(c->psk, 0, sizeof(c->psk));
    free(c);
}

static int coap_attach(gw_core *core, gw_device *dev, char *err, size_t errlen)
{
    const struct dconf *dc = dev->proto_conf;
    struct cdev *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return GW_ENOMEM;
    }
    c->dev = dev;
    c->core = core;
    size_t n;
    char perr[256];
    if (load_psk(dc, c->psk, sizeof(c->psk), &n, perr, sizeof(perr)) ||
        gw_adapter_use_init(&c->use, dc->adapter, dc->json_map, perr, sizeof(perr)) ||
        gw_adapter_use_sm4(&c->use, dc->sm4_key_file, dc->sm4_mode, perr, sizeof(perr))) {
        gw_adapter_use_free(&c->use);
        snprintf(err, errlen, "device '%s': %s", dev->conf.id, perr);
        memset(c->psk, 0, sizeof(c->psk));
        free(c);
        return GW_EINVAL;
    }
    c->pskbin.s = c->psk;
    c->pskbin.length = n;
    gw_core_watch(core, dev, dc->heartbeat_ms * dev->conf.offline_after);
    dev->proto_state = c;
    if (dc->observe[0] && obs_start(c, dc->observe, err, errlen)) {
        dev->proto_state = NULL;
        cdev_free(c);
        return GW_EINVAL;
    }
    return GW_OK;
}

static void coap_detach(gw_device *dev)
{
    struct cdev *c = dev->proto_state;
    if (!c)
        return;
    dev->proto_state = NULL;
    if (c->obs)
        obs_stop(c->obs);
    cdev_free(c);
}

static void coap_listener_stats(const void *state, gw_proto_counters *sum)
{
    const struct csrv *s = state;
    sum->frames += s->requests;
    sum->unknown_devices += s->unknown;
    sum->malformed += s->malformed;
}

const gw_protocol gw_proto_coap = {
    .name = "coap",
    .version = "1.0",
    .description = "CoAP/DTLS-PSK devices (NB-IoT smoke detectors, JSON sensors), Observe client",
    .device_keys = device_keys,
    .device_conf_size = sizeof(struct dconf),
    .check_device = check_device,
    .attach = coap_attach,
    .detach = coap_detach,
    .listener_keys = listener_keys,
    .listener_conf_size = sizeof(struct lconf),
    .listen = coap_listen,
    .unlisten = coap_unlisten,
    .listener_stats = coap_listener_stats,
};
