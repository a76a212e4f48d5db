/* The gateway's Paho wrapper. See mqttc.h for the contract.
 *
 * Paho's threads only copy what they are given into one allocation and post
 * it to the mailbox; everything else happens on the loop. */
#include "base/mqttc.h"

#include "base/mailbox.h"
#include "base/model.h"

#include <MQTTAsync.h>
#include <errno.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define QUEUE_DEFAULT 1024

struct mevt {
    gw_mail m; /* first: the mailbox may free() a plain event */
    int type, code, token;
    size_t tlen, plen;
    char data[]; /* topic NUL payload NUL */
};

struct gw_mqttc {
    gw_mailbox box; /* events -> loop; unused without a callback */
    int has_box;
    MQTTAsync client;
    gw_mqttc_cb cb;
    void *ctx;
    int closing;
    int disconnected; /* set by Paho's thread when the DISCONNECT completed */
    size_t max_message_bytes;
    atomic_ulong oversize; /* incoming messages over max_message_bytes */
    int64_t keepalive_ms, connect_timeout_ms;
    int max_inflight, auto_reconnect_max_s, verify_host, tls;
    char uri[256], username[128], password[256];
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
    if (gw_mailbox_post(&c->box, &e->m, 0, GW_MAIL_KEEP))
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

static int cb_message(void *ctx, char *topic, int topic_len, MQTTAsync_message *m)
{
    gw_mqttc *c = ctx;
    if (c->has_box) {
        size_t tl = topic_len > 0 ? (size_t)topic_len : strlen(topic);
        size_t pl = m->payloadlen > 0 ? (size_t)m->payloadlen : 0;
        struct mevt *e = NULL;
        if (!c->max_message_bytes || pl <= c->max_message_bytes)
            e = malloc(sizeof(*e) + tl + 1 + pl + 1);
        if (e) {
            memset(e, 0, sizeof(*e));
            e->type = GW_MQTTC_MESSAGE;
            e->tlen = tl;
            e->plen = pl;
            memcpy(e->data, topic, tl);
            e->data[tl] = '\0';
            memcpy(e->data + tl + 1, m->payload, pl);
            e->data[tl + 1 + pl] = '\0';
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

/* ---- Loop thread. ---- */

static void on_events(gw_mailbox *mb, gw_mail *list)
{
    gw_mqttc *c = mb->data;
    while (list) {
        struct mevt *e = (struct mevt *)list;
        list = list->next;
        if (!c->closing) {
            gw_mqttc_event ev = {e->type, e->code, e->token, NULL, NULL, 0};
            if (e->type == GW_MQTTC_MESSAGE) {
                ev.topic = e->data;
                ev.payload = e->data + e->tlen + 1;
                ev.len = e->plen;
            }
            c->cb(c->ctx, &ev);
        }
        free(e);
    }
    if (!c->closing) {
        gw_mqttc_event end = {GW_MQTTC_BATCH_END, 0, 0, NULL, NULL, 0};
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
    c->tls = strncmp(c->uri, "ssl://", 6) == 0 || strncmp(c->uri, "mqtts://", 8) == 0;

    MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
    co.sendWhileDisconnected = cfg->send_while_disconnected;
    if (cfg->max_buffered > 0)
        co.maxBufferedMessages = cfg->max_buffered;
    co.MQTTVersion = MQTTVERSION_3_1_1;
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
    MQTTAsync_willOptions will = MQTTAsync_willOptions_initializer;
    MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
    co.MQTTVersion = MQTTVERSION_3_1_1; /* no silent fall-back to 3.1 */
    co.keepAliveInterval = (int)(c->keepalive_ms / 1000);
    co.cleansession = 1;
    if (c->connect_timeout_ms > 0)
        co.connectTimeout = (int)((c->connect_timeout_ms + 999) / 1000);
    if (c->max_inflight > 0)
        co.maxInflight = c->max_inflight;
    if (c->has_box) {
        co.onSuccess = cb_connected;
        co.onFailure = cb_connect_failed;
        co.context = c;
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

int gw_mqttc_subscribe(gw_mqttc *c, int n, char *const *topics, const int *qos)
{
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    if (c->has_box) {
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

uint64_t gw_mqttc_dropped(gw_mqttc *c)
{
    if (!c->has_box)
        return 0;
    gw_mailbox_stats st;
    gw_mailbox_get_stats(&c->box, &st);
    return st.dropped_full + st.dropped;
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
    free_client(mb->data);
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
        d.timeout = (int)timeout_ms;
        d.onSuccess = cb_disconnected;
        d.onFailure = cb_disconnect_failed;
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
