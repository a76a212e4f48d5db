/* The gateway's Paho wrapper. See mqttc.h for the contract.
 *
 * Paho's threads only copy what they are given into one allocation and post
 * it to the mailbox; everything else happens on the loop. */
#include "base/mqttc.h"

#include "base/mailbox.h"
#include "base/model.h"

#include <MQTTAsync.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define QUEUE_DEFAULT 1024

struct mevt {
    gw_mail m; /* first: the mailbox may free() a plain event */
    int type, code, token;
    size_t tlen, plen, rtlen, clen; /* rtlen: 0 without a response topic */
    char data[]; /* topic NUL payload NUL [response topic NUL] correlation data */
};

struct gw_mqttc {
    gw_mailbox box; /* events -> loop; unused without a callback */
    int has_box;
    MQTTAsync client;
    gw_mqttc_cb cb;
    void *ctx;
    int closing;
    int probing;      /* a TLS probe is running: free only after it returns */
    int box_closed;   /* the mailbox closed while probing */
    int disconnected; /* set by Paho's thread when the DISCONNECT completed */
    size_t max_message_bytes;
    atomic_ulong oversize;      /* incoming messages over max_message_bytes */
    atomic_ulong props_dropped; /* v5 properties over their bound */
    int mqtt5;
    int64_t keepalive_ms, connect_timeout_ms;
    int max_inflight, auto_reconnect_max_s, verify_host, tls;
    char uri[256], username[128], password[256];
    char server[256]; /* gw_mqttc_set_server: where the next connect goes */
    char *servers[1];
    char ca_file[256], cert_file[256], key_file[256];
    char will_topic[256], will_payload[256];
};

/* ---- Paho threads: copy, post, nothing else. ---- */

static void post(gw_mqttc *c, int type, int code, int token)
{
    struct mevt *e = calloc(1, sizeof(*e) + 2);
    if (!e)
        return; /* Out of memory on Paho's thread: the caller's timers recover. */
    e->type = type;
    e->code = code;
    e->token = token;
    /* Paho calls back holding its lock, which the loop takes in every publish:
     * waiting here for the loop could wait forever. These events are bounded
     * by the publishes and subscriptions in flight. */
    if (gw_mailbox_post(&c->box, &e->m, 0, GW_MAIL_OVER))
        free(e); /* closing */
}

static void cb_connected(void *ctx, MQTTAsync_successData *r)
{
    post(ctx, GW_MQTTC_CONNECTED, 0, 0);
}

static void cb_connect_failed(void *ctx, MQTTAsync_failureData *r)
{
    post(ctx, GW_MQTTC_CONNECT_FAILED, r ? r->code : -1, 0);
}

/* MQTT 5 takes its own callbacks (Paho refuses the 3.1.1 ones on a v5 connect). */
static void cb_connected5(void *ctx, MQTTAsync_successData5 *r)
{
    post(ctx, GW_MQTTC_CONNECTED, 0, 0);
}

static void cb_connect_failed5(void *ctx, MQTTAsync_failureData5 *r)
{
    post(ctx, GW_MQTTC_CONNECT_FAILED, r ? r->code : -1, 0);
}

static void cb_subscribed5(void *ctx, MQTTAsync_successData5 *r)
{
    post(ctx, GW_MQTTC_SUBSCRIBED, 0, 0);
}

static void cb_subscribe_failed5(void *ctx, MQTTAsync_failureData5 *r)
{
    post(ctx, GW_MQTTC_SUBSCRIBE_FAILED, r ? r->code : -1, 0);
}

/* A v5 property's bytes when present and within cap; counts the over-long. */
static const char *prop_bytes(gw_mqttc *c, MQTTAsync_message *m, enum MQTTPropertyCodes id,
                              size_t cap, size_t *len)
{
    MQTTProperty *p = c->mqtt5 ? MQTTProperties_getProperty(&m->properties, id) : NULL;
    *len = 0;
    if (!p || p->value.data.len <= 0 || !p->value.data.data)
        return NULL;
    if ((size_t)p->value.data.len > cap) {
        atomic_fetch_add(&c->props_dropped, 1);
        return NULL;
    }
    *len = (size_t)p->value.data.len;
    return p->value.data.data;
}

static void cb_subscribed(void *ctx, MQTTAsync_successData *r)
{
    post(ctx, GW_MQTTC_SUBSCRIBED, 0, 0);
}

static void cb_subscribe_failed(void *ctx, MQTTAsync_failureData *r)
{
    post(ctx, GW_MQTTC_SUBSCRIBE_FAILED, r ? r->code : -1, 0);
}

static void cb_lost(void *ctx, char *cause)
{
    gw_mqttc *c = ctx;
    if (c->has_box)
        post(c, GW_MQTTC_LOST, 0, 0);
}

static void cb_delivered(void *ctx, MQTTAsync_token token)
{
    gw_mqttc *c = ctx;
    if (c->has_box)
        post(c, GW_MQTTC_DELIVERED, 0, token);
}

static void cb_disconnected(void *ctx, MQTTAsync_successData *r)
{
    gw_mqttc *c = ctx;
    __atomic_store_n(&c->disconnected, 1, __ATOMIC_RELEASE);
}

static void cb_disconnect_failed(void *ctx, MQTTAsync_failureData *r)
{
    cb_disconnected(ctx, NULL);
}

static void cb_disconnected5(void *ctx, MQTTAsync_successData5 *r)
{
    cb_disconnected(ctx, NULL);
}

static void cb_disconnect_failed5(void *ctx, MQTTAsync_failureData5 *r)
{
    cb_disconnected(ctx, NULL);
}

static int cb_message(void *ctx, char *topic, int topic_len, MQTTAsync_message *m)
{
    gw_mqttc *c = ctx;
    if (c->has_box) {
        size_t tl = topic_len > 0 ? (size_t)topic_len : strlen(topic);
        size_t pl = m->payloadlen > 0 ? (size_t)m->payloadlen : 0;
        size_t rl, cl;
        const char *rt =
            prop_bytes(c, m, MQTTPROPERTY_CODE_RESPONSE_TOPIC, GW_MQTTC_RESPONSE_TOPIC_MAX, &rl);
        const char *cd =
            prop_bytes(c, m, MQTTPROPERTY_CODE_CORRELATION_DATA, GW_MQTTC_CORR_MAX, &cl);
        struct mevt *e = NULL;
        if (!c->max_message_bytes || pl <= c->max_message_bytes)
            e = malloc(sizeof(*e) + tl + 1 + pl + 1 + rl + 1 + cl);
        if (e) {
            memset(e, 0, sizeof(*e));
            e->type = GW_MQTTC_MESSAGE;
            e->tlen = tl;
            e->plen = pl;
            memcpy(e->data, topic, tl);
            e->data[tl] = '\0';
            memcpy(e->data + tl + 1, m->payload, pl);
            e->data[tl + 1 + pl] = '\0';
            char *x = e->data + tl + 1 + pl + 1;
            e->rtlen = rl;
            if (rt)
                memcpy(x, rt, rl);
            x[rl] = '\0';
            e->clen = cl;
            if (cd)
                memcpy(x + rl + 1, cd, cl);
            if (gw_mailbox_post(&c->box, &e->m, tl + pl, 0))
                free(e); /* full (counted by the mailbox) or closing */
        } else if (c->max_message_bytes && pl > c->max_message_bytes) {
            atomic_fetch_add(&c->oversize, 1); /* its own counter: not a full queue */
        } else {
            gw_mailbox_count_drop(&c->box);
        }
    }
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    return 1;
}

/* ---- The TLS probe (libuv's thread pool). ----
 * Paho reports a refused server certificate as code -1 and nothing more. On a
 * failed TLS connect the wrapper repeats the handshake once, with the same CA
 * file, client certificate and host check, and reads OpenSSL's verification
 * result, then hands the CONNECT_FAILED on with the reason. Only for clients
 * whose caller reconnects (no event can overtake the held failure); bounded
 * by PROBE_TIMEOUT_S per socket operation. */

#define PROBE_TIMEOUT_S 3

struct probe {
    uv_work_t req;
    gw_mqttc *c;
    int code; /* of the held CONNECT_FAILED */
    int verify_host;
    char host[256], port[16];
    char ca_file[256], cert_file[256], key_file[256];
    char why[200];
};

static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "the connection closed";
}

static void probe_handshake(struct probe *p, int fd)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = NULL;
    if (!ctx)
        return;
    if (p->ca_file[0] ? SSL_CTX_load_verify_locations(ctx, p->ca_file, NULL) != 1
                      : SSL_CTX_set_default_verify_paths(ctx) != 1) {
        snprintf(p->why, sizeof(p->why), "cannot load the CA file: %s", ssl_reason());
        goto done;
    }
    if (p->cert_file[0] &&
        (SSL_CTX_use_certificate_chain_file(ctx, p->cert_file) != 1 ||
         SSL_CTX_use_PrivateKey_file(ctx, p->key_file[0] ? p->key_file : p->cert_file,
                                     SSL_FILETYPE_PEM) != 1)) {
        snprintf(p->why, sizeof(p->why), "cannot load the client certificate: %s", ssl_reason());
        goto done;
    }
    /* Not refused inside the handshake: the verification result is read after. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    ssl = SSL_new(ctx);
    if (!ssl || SSL_set_fd(ssl, fd) != 1)
        goto done;
    unsigned char ip[16];
    int is_ip = inet_pton(AF_INET, p->host, ip) == 1 || inet_pton(AF_INET6, p->host, ip) == 1;
    if (!is_ip)
        SSL_set_tlsext_host_name(ssl, p->host);
    if (p->verify_host) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
        if (is_ip)
            X509_VERIFY_PARAM_set1_ip_asc(vp, p->host);
        else
            X509_VERIFY_PARAM_set1_host(vp, p->host, 0);
    }
    if (SSL_connect(ssl) != 1) {
        snprintf(p->why, sizeof(p->why), "TLS handshake failed: %s", ssl_reason());
        goto done;
    }
    long v = SSL_get_verify_result(ssl);
    int unknown_ca = v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
                     v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
                     v == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
                     v == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT;
    if (v != X509_V_OK)
        snprintf(p->why, sizeof(p->why), "the broker's certificate was refused: %s%s",
                 X509_verify_cert_error_string(v),
                 unknown_ca ? (p->ca_file[0] ? " (no CA in ca_file signed it)"
                                             : " (no CA of the system signed it)")
                            : "");
done:
    SSL_free(ssl);
    SSL_CTX_free(ctx);
}

static void probe_work(uv_work_t *req)
{
    struct probe *p = req->data;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    ERR_clear_error();
    if (getaddrinfo(p->host, p->port, &hints, &ai) || !ai)
        return;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        struct timeval tv = {PROBE_TIMEOUT_S, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)); /* bounds connect too */
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            probe_handshake(p, fd);
        close(fd);
    }
    freeaddrinfo(ai);
    ERR_clear_error();
}

static void free_client(gw_mqttc *c);

static void probe_done(uv_work_t *req, int status)
{
    struct probe *p = req->data;
    gw_mqttc *c = p->c;
    c->probing = 0;
    if (!c->closing) {
        gw_mqttc_event ev = {.type = GW_MQTTC_CONNECT_FAILED, .code = p->code};
        ev.why = p->why[0] ? p->why : NULL;
        c->cb(c->ctx, &ev);
        gw_mqttc_event end = {.type = GW_MQTTC_BATCH_END};
        if (!c->closing)
            c->cb(c->ctx, &end);
    } else if (c->box_closed) {
        free_client(c);
    }
    free(p);
}

/* Splits "ssl://host:port" (or [v6]:port) into p. */
static int probe_target(struct probe *p, const char *uri)
{
    const char *h = strstr(uri, "://");
    h = h ? h + 3 : uri;
    const char *end = h + strlen(h), *colon;
    if (*h == '[') {
        const char *rb = strchr(h, ']');
        if (!rb)
            return -1;
        snprintf(p->host, sizeof(p->host), "%.*s", (int)(rb - h - 1), h + 1);
        colon = rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = strrchr(h, ':');
        size_t n = colon ? (size_t)(colon - h) : (size_t)(end - h);
        snprintf(p->host, sizeof(p->host), "%.*s", (int)n, h);
    }
    snprintf(p->port, sizeof(p->port), "%s", colon ? colon + 1 : "8883");
    p->port[strcspn(p->port, "/")] = '\0';
    return p->host[0] ? 0 : -1;
}

/* Holds a CONNECT_FAILED of a TLS link for the probe. Returns 0 when held. */
static int probe_start(gw_mqttc *c, int code)
{
    /* A positive code is the broker's CONNACK: TLS itself went through. */
    if (!c->tls || code > 0 || c->auto_reconnect_max_s > 0 || c->probing)
        return -1;
    struct probe *p = calloc(1, sizeof(*p));
    if (!p || probe_target(p, c->uri)) {
        free(p);
        return -1;
    }
    p->c = c;
    p->code = code;
    p->verify_host = c->verify_host;
    memcpy(p->ca_file, c->ca_file, sizeof(p->ca_file));
    memcpy(p->cert_file, c->cert_file, sizeof(p->cert_file));
    memcpy(p->key_file, c->key_file, sizeof(p->key_file));
    p->req.data = p;
    if (uv_queue_work(c->box.async.loop, &p->req, probe_work, probe_done)) {
        free(p);
        return -1;
    }
    c->probing = 1;
    return 0;
}

/* ---- Loop thread. ---- */

static void on_events(gw_mailbox *mb, gw_mail *list)
{
    gw_mqttc *c = mb->data;
    while (list) {
        struct mevt *e = (struct mevt *)list;
        list = list->next;
        if (!c->closing && e->type == GW_MQTTC_CONNECT_FAILED && probe_start(c, e->code) == 0) {
            /* probe_done delivers it */
        } else if (!c->closing) {
            gw_mqttc_event ev = {.type = e->type, .code = e->code, .token = e->token};
            if (e->type == GW_MQTTC_MESSAGE) {
                ev.topic = e->data;
                ev.payload = e->data + e->tlen + 1;
                ev.len = e->plen;
                const char *x = e->data + e->tlen + 1 + e->plen + 1;
                ev.response_topic = e->rtlen ? x : NULL;
                ev.corr = e->clen ? x + e->rtlen + 1 : NULL;
                ev.corr_len = e->clen;
            }
            c->cb(c->ctx, &ev);
        }
        free(e);
    }
    if (!c->closing) {
        gw_mqttc_event end = {.type = GW_MQTTC_BATCH_END};
        c->cb(c->ctx, &end);
    }
}

static void copy(char *dst, size_t cap, const char *src, int *too_long)
{
    if (src && gw_strlcpy(dst, src, cap))
        *too_long = 1;
}

gw_mqttc *gw_mqttc_new(uv_loop_t *loop, const gw_mqttc_config *cfg, gw_mqttc_cb cb, void *ctx,
                       char *err, size_t errlen)
{
    gw_mqttc *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    int too_long = 0;
    copy(c->uri, sizeof(c->uri), cfg->uri, &too_long);
    copy(c->username, sizeof(c->username), cfg->username, &too_long);
    copy(c->password, sizeof(c->password), cfg->password, &too_long);
    copy(c->ca_file, sizeof(c->ca_file), cfg->ca_file, &too_long);
    copy(c->cert_file, sizeof(c->cert_file), cfg->cert_file, &too_long);
    copy(c->key_file, sizeof(c->key_file), cfg->key_file, &too_long);
    copy(c->will_topic, sizeof(c->will_topic), cfg->will_topic, &too_long);
    copy(c->will_payload, sizeof(c->will_payload), cfg->will_payload, &too_long);
    if (too_long) {
        snprintf(err, errlen, "'%.60s': a URI, name, password, file or will is too long",
                 cfg->uri ? cfg->uri : "");
        goto error;
    }
    c->cb = cb;
    c->ctx = ctx;
    c->max_message_bytes = cfg->max_message_bytes;
    c->keepalive_ms = cfg->keepalive_ms;
    c->connect_timeout_ms = cfg->connect_timeout_ms;
    c->max_inflight = cfg->max_inflight;
    c->auto_reconnect_max_s = cfg->auto_reconnect_max_s;
    c->verify_host = cfg->verify_host;
    c->mqtt5 = cfg->mqtt5;
    c->tls = strncmp(c->uri, "ssl://", 6) == 0 || strncmp(c->uri, "mqtts://", 8) == 0;

    /* Paho would initialise OpenSSL for every client, TLS or not: error strings
     * and every algorithm, about 2 MiB resident (docs/design.md "Measured").
     * OpenSSL 3 initialises itself on first use, so a TLS client still works. */
    static int paho_ready; /* loop thread only */
    if (!paho_ready) {
        MQTTAsync_init_options io = MQTTAsync_init_options_initializer;
        io.do_openssl_init = 0;
        MQTTAsync_global_init(&io);
        paho_ready = 1;
    }
    MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
    co.sendWhileDisconnected = cfg->send_while_disconnected;
    if (cfg->max_buffered > 0)
        co.maxBufferedMessages = cfg->max_buffered;
    co.MQTTVersion = c->mqtt5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1;
    int rc = MQTTAsync_createWithOptions(&c->client, c->uri, cfg->client_id ? cfg->client_id : "",
                                         MQTTCLIENT_PERSISTENCE_NONE, NULL, &co);
    if (rc != MQTTASYNC_SUCCESS) {
        snprintf(err, errlen, "'%s': cannot create an MQTT client (code %d)", c->uri, rc);
        goto error;
    }
    if (cb) {
        c->box.data = c;
        if (gw_mailbox_init(&c->box, loop, cfg->queue_max ? cfg->queue_max : QUEUE_DEFAULT, 0,
                            on_events, NULL)) {
            snprintf(err, errlen, "'%s': cannot create the event mailbox", c->uri);
            MQTTAsync_destroy(&c->client);
            goto error;
        }
        c->has_box = 1;
    }
    MQTTAsync_setCallbacks(c->client, c, cb_lost, cb_message, cb_delivered);
    return c;
error:
    memset(c->password, 0, sizeof(c->password));
    free(c);
    return NULL;
}

int gw_mqttc_connect(gw_mqttc *c, int *paho_rc)
{
    MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;
    MQTTAsync_connectOptions co5 = MQTTAsync_connectOptions_initializer5;
    MQTTAsync_willOptions will = MQTTAsync_willOptions_initializer;
    MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
    if (c->mqtt5)
        co = co5; /* clean start instead of clean session (Paho refuses the latter on v5) */
    else
        co.MQTTVersion = MQTTVERSION_3_1_1; /* no silent fall-back to 3.1 */
    co.keepAliveInterval = (int)(c->keepalive_ms / 1000);
    if (c->mqtt5)
        co.cleanstart = 1;
    else
        co.cleansession = 1;
    if (c->connect_timeout_ms > 0)
        co.connectTimeout = (int)((c->connect_timeout_ms + 999) / 1000);
    if (c->max_inflight > 0)
        co.maxInflight = c->max_inflight;
    if (c->has_box && c->mqtt5) {
        co.onSuccess5 = cb_connected5;
        co.onFailure5 = cb_connect_failed5;
        co.context = c;
    } else if (c->has_box) {
        co.onSuccess = cb_connected;
        co.onFailure = cb_connect_failed;
        co.context = c;
    }
    if (c->server[0]) {
        c->servers[0] = c->server;
        co.serverURIs = c->servers;
        co.serverURIcount = 1;
    }
    if (c->auto_reconnect_max_s > 0) {
        co.automaticReconnect = 1;
        co.minRetryInterval = 1;
        co.maxRetryInterval = c->auto_reconnect_max_s;
    }
    if (c->will_topic[0]) {
        will.topicName = c->will_topic;
        will.message = c->will_payload;
        will.retained = 1;
        will.qos = 1;
        co.will = &will;
    }
    if (c->username[0])
        co.username = c->username;
    if (c->password[0])
        co.password = c->password;
    if (c->tls) {
        ssl.trustStore = c->ca_file[0] ? c->ca_file : NULL;
        ssl.keyStore = c->cert_file[0] ? c->cert_file : NULL;
        ssl.privateKey = c->key_file[0] ? c->key_file : NULL;
        ssl.enableServerCertAuth = 1;
        ssl.verify = c->verify_host;
        co.ssl = &ssl;
    }
    int rc = MQTTAsync_connect(c->client, &co);
    if (paho_rc)
        *paho_rc = rc;
    return rc == MQTTASYNC_SUCCESS ? GW_OK : GW_ERR;
}

int gw_mqttc_publish(gw_mqttc *c, const char *topic, const void *payload, size_t len, int qos,
                     int retained, int *token, int *paho_rc)
{
    MQTTAsync_message m = MQTTAsync_message_initializer;
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    m.payload = (void *)payload;
    m.payloadlen = (int)len;
    m.qos = qos;
    m.retained = retained;
    int rc = MQTTAsync_sendMessage(c->client, topic, &m, token ? &ro : NULL);
    if (paho_rc)
        *paho_rc = rc;
    if (rc == MQTTASYNC_MAX_BUFFERED_MESSAGES)
        return GW_EFULL;
    if (rc != MQTTASYNC_SUCCESS)
        return GW_ERR;
    if (token)
        *token = ro.token;
    return GW_OK;
}

int gw_mqttc_publish_corr(gw_mqttc *c, const char *topic, const void *payload, size_t len, int qos,
                          const void *corr, size_t corr_len, int *paho_rc)
{
    if (!c->mqtt5 || !corr_len)
        return gw_mqttc_publish(c, topic, payload, len, qos, 0, NULL, paho_rc);
    MQTTAsync_message m = MQTTAsync_message_initializer;
    MQTTProperty p = {.identifier = MQTTPROPERTY_CODE_CORRELATION_DATA};
    p.value.data.data = (char *)corr;
    p.value.data.len = (int)corr_len;
    m.payload = (void *)payload;
    m.payloadlen = (int)len;
    m.qos = qos;
    /* Paho takes a publish's v5 properties from the response options and copies
     * them when it queues the message; ours are freed below. */
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    int rc = MQTTProperties_add(&ro.properties, &p);
    if (rc == 0) {
        m.properties = ro.properties;
        rc = MQTTAsync_sendMessage(c->client, topic, &m, &ro);
    }
    MQTTProperties_free(&ro.properties);
    if (paho_rc)
        *paho_rc = rc;
    if (rc == MQTTASYNC_MAX_BUFFERED_MESSAGES)
        return GW_EFULL;
    return rc == MQTTASYNC_SUCCESS ? GW_OK : GW_ERR;
}

int gw_mqttc_set_server(gw_mqttc *c, const char *uri)
{
    if (gw_strlcpy(c->server, uri, sizeof(c->server)))
        return GW_EINVAL;
    c->tls = strncmp(uri, "ssl://", 6) == 0 || strncmp(uri, "mqtts://", 8) == 0;
    return GW_OK;
}

int gw_mqttc_subscribe(gw_mqttc *c, int n, char *const *topics, const int *qos)
{
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    if (c->has_box && c->mqtt5) {
        ro.onSuccess5 = cb_subscribed5;
        ro.onFailure5 = cb_subscribe_failed5;
        ro.context = c;
    } else if (c->has_box) {
        ro.onSuccess = cb_subscribed;
        ro.onFailure = cb_subscribe_failed;
        ro.context = c;
    }
    int rc = MQTTAsync_subscribeMany(c->client, n, (char *const *)topics, (int *)qos, &ro);
    return rc == MQTTASYNC_SUCCESS ? GW_OK : GW_ERR;
}

uint64_t gw_mqttc_oversize(gw_mqttc *c)
{
    return atomic_load(&c->oversize);
}

uint64_t gw_mqttc_props_dropped(gw_mqttc *c)
{
    return atomic_load(&c->props_dropped);
}

int gw_mqttc_pending(gw_mqttc *c)
{
    MQTTAsync_token *t = NULL;
    if (MQTTAsync_getPendingTokens(c->client, &t) != MQTTASYNC_SUCCESS)
        return -1;
    int n = 0;
    while (t && t[n] != -1)
        n++;
    MQTTAsync_free(t);
    return n;
}

uint64_t gw_mqttc_dropped(gw_mqttc *c)
{
    if (!c->has_box)
        return 0;
    gw_mailbox_stats st;
    gw_mailbox_get_stats(&c->box, &st);
    return st.dropped_full + st.dropped;
}

uint64_t gw_mqttc_over(gw_mqttc *c)
{
    if (!c->has_box)
        return 0;
    gw_mailbox_stats st;
    gw_mailbox_get_stats(&c->box, &st);
    return st.over;
}

int gw_mqttc_read_password(const char *key, const char *file, const char *env, char *out,
                           size_t cap, char *err, size_t errlen)
{
    out[0] = '\0';
    if (env && env[0]) {
        const char *v = getenv(env);
        if (!v) {
            snprintf(err, errlen, "%spassword_env: variable %s is not set", key, env);
            return GW_EINVAL;
        }
        if (gw_strlcpy(out, v, cap)) {
            snprintf(err, errlen, "%spassword_env: password too long", key);
            return GW_EINVAL;
        }
    } else if (file && file[0]) {
        FILE *f = fopen(file, "r");
        if (!f) {
            snprintf(err, errlen, "%spassword_file: %s: %s", key, file, strerror(errno));
            return GW_EINVAL;
        }
        if (!fgets(out, (int)cap, f))
            out[0] = '\0';
        fclose(f);
        out[strcspn(out, "\r\n")] = '\0';
    }
    return GW_OK;
}

static void free_client(gw_mqttc *c)
{
    memset(c->password, 0, sizeof(c->password));
    free(c);
}

static void on_box_closed(gw_mailbox *mb)
{
    gw_mqttc *c = mb->data;
    if (c->probing)
        c->box_closed = 1; /* probe_done frees it */
    else
        free_client(c);
}

void gw_mqttc_close(gw_mqttc *c, int64_t timeout_ms)
{
    if (!c)
        return;
    c->closing = 1;
    /* Closed first: a Paho thread waiting for room is released, and nothing
     * Paho does from here on reaches the loop. */
    if (c->has_box)
        gw_mailbox_close(&c->box, on_box_closed);
    if (timeout_ms > 0 && MQTTAsync_isConnected(c->client)) {
        MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
        MQTTAsync_disconnectOptions d5 = MQTTAsync_disconnectOptions_initializer5;
        if (c->mqtt5)
            d = d5; /* the version that has the v5 callbacks */
        d.timeout = (int)timeout_ms;
        if (c->mqtt5) {
            d.onSuccess5 = cb_disconnected5;
            d.onFailure5 = cb_disconnect_failed5;
        } else {
            d.onSuccess = cb_disconnected;
            d.onFailure = cb_disconnect_failed;
        }
        d.context = c;
        /* Shutdown only: the loop has nothing else to do while Paho finishes. */
        if (MQTTAsync_disconnect(c->client, &d) == MQTTASYNC_SUCCESS)
            for (int64_t waited = 0;
                 !__atomic_load_n(&c->disconnected, __ATOMIC_ACQUIRE) && waited < timeout_ms;
                 waited += 5)
                usleep(5000);
    } else if (MQTTAsync_isConnected(c->client)) {
        MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
        d.timeout = 0;
        MQTTAsync_disconnect(c->client, &d);
    }
    /* After destroy Paho calls nothing of this client. */
    MQTTAsync_destroy(&c->client);
    if (!c->has_box)
        free_client(c);
}
