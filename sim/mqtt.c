/* The simulator's Paho helpers. See mqtt.h. */
#include "sim/mqtt.h"

#include "sim/base.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

struct sim_mqtt_sub {
    pthread_mutex_t mu; /* guards everything below client */
    pthread_cond_t cv;
    sim_mqtt_msg *head, *tail;
    size_t queued, queue_max;
    sim_mqtt_sub_state st;
    MQTTAsync client;
    char topic[256], user[256], password[256], ca[512], who[64];
    int qos, quiet, have_user, have_ca;
    int keep_session;
    int ending;           /* sim_mqtt_sub_disconnect was called: no more subscribing */
    int removing;         /* the session-removing connect was started */
    int remove_timeout_s; /* its connect timeout */
    char uris[640];
    char *uri[SIM_MQTT_MAX_URIS];
    int nuri;
};

/* ---- Paho threads ---- */

static void set_flag(sim_mqtt_sub *s, int *flag)
{
    pthread_mutex_lock(&s->mu);
    *flag = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void on_subscribed(void *ctx, MQTTAsync_successData *r)
{
    sim_mqtt_sub *s = ctx;
    set_flag(s, &s->st.subscribed);
}

static void on_sub_failed(void *ctx, MQTTAsync_failureData *r)
{
    sim_mqtt_sub *s = ctx;
    set_flag(s, &s->st.sub_failed);
}

/* Every (re)connect subscribes again (a clean session has no subscription;
 * a persistent one gets the same again), except the connect that removes
 * the session at the end. */
static void on_connected(void *ctx, char *cause)
{
    sim_mqtt_sub *s = ctx;
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.onSuccess = on_subscribed;
    ro.onFailure = on_sub_failed;
    ro.context = s;
    pthread_mutex_lock(&s->mu);
    int ending = s->ending;
    pthread_mutex_unlock(&s->mu);
    if (ending)
        return;
    set_flag(s, &s->st.connected_once);
    int rc = MQTTAsync_subscribe(s->client, s->topic, s->qos, &ro);
    if (rc != MQTTASYNC_SUCCESS)
        fprintf(stderr, "%s: subscribe failed to start: %s\n", s->who, MQTTAsync_strerror(rc));
}

static void on_connect_failed(void *ctx, MQTTAsync_failureData *r)
{
    sim_mqtt_sub *s = ctx;
    pthread_mutex_lock(&s->mu);
    snprintf(s->st.last_error, sizeof s->st.last_error, "rc %d %s", r ? r->code : 0,
             r && r->message ? r->message : "");
    pthread_mutex_unlock(&s->mu);
}

static void on_lost(void *ctx, char *cause)
{
    sim_mqtt_sub *s = ctx;
    if (!s->quiet)
        fprintf(stderr, "%s: connection lost%s%s (reconnecting)\n", s->who, cause ? ": " : "",
                cause ? cause : "");
}

static int on_message(void *ctx, char *topic, int topic_len, MQTTAsync_message *m)
{
    sim_mqtt_sub *s = ctx;
    size_t tl = topic_len > 0 ? (size_t)topic_len : strlen(topic);
    size_t pl = m->payloadlen > 0 ? (size_t)m->payloadlen : 0;
    sim_mqtt_msg *e = malloc(sizeof *e + pl + 1 + tl + 1);
    if (e) {
        e->next = NULL;
        e->at_ns = uv_hrtime();
        e->len = pl;
        e->retained = m->retained;
        memcpy(e->payload, m->payload, pl);
        e->payload[pl] = 0;
        e->topic = e->payload + pl + 1;
        memcpy(e->topic, topic, tl);
        e->topic[tl] = 0;
    }
    pthread_mutex_lock(&s->mu);
    if (!e || s->queued >= s->queue_max) {
        s->st.dropped++;
        free(e);
    } else {
        if (s->tail)
            s->tail->next = e;
        else
            s->head = e;
        s->tail = e;
        s->queued++;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    return 1;
}

static void remove_session(sim_mqtt_sub *s);

/* After the first DISCONNECT, a persistent session not kept is removed next;
 * after that (or without one) the client is done. */
static void on_disconnected(void *ctx, MQTTAsync_successData *r)
{
    sim_mqtt_sub *s = ctx;
    pthread_mutex_lock(&s->mu);
    int next = s->st.persistent && !s->keep_session && s->st.connected_once && !s->removing;
    s->removing |= next;
    pthread_mutex_unlock(&s->mu);
    if (next)
        remove_session(s);
    else
        set_flag(s, &s->st.disconnected);
}

static void on_disconnect_failed(void *ctx, MQTTAsync_failureData *r)
{
    on_disconnected(ctx, NULL);
}

static void remove_failed(sim_mqtt_sub *s, int code, const char *why)
{
    pthread_mutex_lock(&s->mu);
    snprintf(s->st.remove_error, sizeof s->st.remove_error, "rc %d %s", code, why ? why : "");
    s->st.disconnected = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* The broker discarded the session when it accepted the clean connect; the
 * clean one ends with this DISCONNECT. */
static void on_clean_connected(void *ctx, MQTTAsync_successData *r)
{
    sim_mqtt_sub *s = ctx;
    set_flag(s, &s->st.session_removed);
    MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
    d.timeout = 1000;
    d.onSuccess = on_disconnected;
    d.onFailure = on_disconnect_failed;
    d.context = s;
    if (MQTTAsync_disconnect(s->client, &d) != MQTTASYNC_SUCCESS)
        set_flag(s, &s->st.disconnected); /* destroying the client closes it */
}

static void on_clean_failed(void *ctx, MQTTAsync_failureData *r)
{
    remove_failed(ctx, r ? r->code : 0, r && r->message ? r->message : "connect failed");
}

/* The connect options: the subscriber's (clean session unless persistent,
 * automatic reconnect), or with clean the session-removing connect (one
 * round over the URIs). The strings stay in s; Paho copies the rest. */
static void connect_opts(sim_mqtt_sub *s, int clean, MQTTAsync_connectOptions *opts,
                         MQTTAsync_SSLOptions *ssl)
{
    MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;
    MQTTAsync_SSLOptions so = MQTTAsync_SSLOptions_initializer;
    *opts = co;
    *ssl = so;
    /* Pinned: on failed reconnects Paho falls back to MQTT 3.1, which
     * nats-server refuses. */
    opts->MQTTVersion = MQTTVERSION_3_1_1;
    opts->keepAliveInterval = 20;
    opts->cleansession = clean || !s->st.persistent;
    if (s->nuri > 1) {
        opts->serverURIs = s->uri;
        opts->serverURIcount = s->nuri;
    }
    opts->automaticReconnect = !clean;
    opts->minRetryInterval = 1;
    opts->maxRetryInterval = 2;
    opts->context = s;
    if (s->have_user) {
        opts->username = s->user;
        opts->password = s->password;
    }
    if (s->have_ca) {
        ssl->trustStore = s->ca;
        ssl->enableServerCertAuth = 1;
        opts->ssl = ssl;
    }
}

static void remove_session(sim_mqtt_sub *s)
{
    MQTTAsync_connectOptions opts;
    MQTTAsync_SSLOptions ssl;
    connect_opts(s, 1, &opts, &ssl);
    opts.connectTimeout = s->remove_timeout_s;
    opts.onSuccess = on_clean_connected;
    opts.onFailure = on_clean_failed;
    int rc = MQTTAsync_connect(s->client, &opts);
    if (rc != MQTTASYNC_SUCCESS)
        remove_failed(s, rc, MQTTAsync_strerror(rc));
}

/* ---- the caller's thread ---- */

sim_mqtt_sub *sim_mqtt_sub_start(const sim_mqtt_sub_opts *o, char *err, size_t errlen)
{
    sim_mqtt_sub *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    snprintf(s->topic, sizeof s->topic, "%s", o->topic);
    snprintf(s->password, sizeof s->password, "%s", o->password ? o->password : "");
    snprintf(s->user, sizeof s->user, "%s", o->user ? o->user : "");
    snprintf(s->ca, sizeof s->ca, "%s", o->ca ? o->ca : "");
    s->have_user = o->user != NULL;
    s->have_ca = o->ca != NULL;
    s->keep_session = o->keep_session;
    snprintf(s->who, sizeof s->who, "%s", o->who ? o->who : "sim");
    s->qos = o->qos;
    s->quiet = o->quiet;
    s->queue_max = o->queue_max;
    snprintf(s->uris, sizeof s->uris, "%s", o->broker);
    char *save = NULL;
    for (char *u = strtok_r(s->uris, ",", &save); u && s->nuri < SIM_MQTT_MAX_URIS;
         u = strtok_r(NULL, ",", &save))
        s->uri[s->nuri++] = u + strspn(u, " ");
    s->st.persistent = s->nuri > 1;
    MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
    int rc = MQTTAsync_createWithOptions(&s->client, s->nuri ? s->uri[0] : o->broker, o->client_id,
                                         MQTTCLIENT_PERSISTENCE_NONE, NULL, &co);
    if (rc != MQTTASYNC_SUCCESS) {
        snprintf(err, errlen, "bad broker %s: %s", o->broker, MQTTAsync_strerror(rc));
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return NULL;
    }
    MQTTAsync_setCallbacks(s->client, s, on_lost, on_message, NULL);
    MQTTAsync_setConnected(s->client, s, on_connected);
    MQTTAsync_connectOptions opts;
    MQTTAsync_SSLOptions ssl;
    connect_opts(s, 0, &opts, &ssl);
    opts.onFailure = on_connect_failed;
    rc = MQTTAsync_connect(s->client, &opts);
    if (rc != MQTTASYNC_SUCCESS) {
        snprintf(err, errlen, "connect to %s: %s", o->broker, MQTTAsync_strerror(rc));
        sim_mqtt_sub_free(s);
        return NULL;
    }
    return s;
}

static void deadline_in(struct timespec *t, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, t);
    t->tv_sec += ms / 1000;
    t->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t->tv_nsec >= 1000000000L) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000L;
    }
}

sim_mqtt_msg *sim_mqtt_sub_take(sim_mqtt_sub *s, int wait_ms)
{
    struct timespec until;
    deadline_in(&until, wait_ms > 0 ? wait_ms : 0);
    pthread_mutex_lock(&s->mu);
    while (wait_ms > 0 && !s->head && !s->st.sub_failed)
        if (pthread_cond_timedwait(&s->cv, &s->mu, &until) == ETIMEDOUT)
            break;
    sim_mqtt_msg *list = s->head;
    s->head = s->tail = NULL;
    s->queued = 0;
    pthread_mutex_unlock(&s->mu);
    return list;
}

void sim_mqtt_sub_state_get(sim_mqtt_sub *s, sim_mqtt_sub_state *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    pthread_mutex_unlock(&s->mu);
}

int sim_mqtt_sub_disconnect(sim_mqtt_sub *s, int timeout_ms, int wait_ms)
{
    MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
    d.timeout = timeout_ms;
    d.onSuccess = on_disconnected;
    d.onFailure = on_disconnect_failed;
    d.context = s;
    pthread_mutex_lock(&s->mu);
    s->ending = 1;
    s->remove_timeout_s = timeout_ms > 1000 ? (timeout_ms + 999) / 1000 : 1;
    int remove = s->st.persistent && !s->keep_session && s->st.connected_once;
    pthread_mutex_unlock(&s->mu);
    if (MQTTAsync_isConnected(s->client)) {
        if (MQTTAsync_disconnect(s->client, &d) != MQTTASYNC_SUCCESS)
            return SIM_ERR;
    } else if (remove) {
        /* The connection is lost: stop Paho's reconnecting (which would
         * resume the session), then remove the session from whichever node
         * answers. */
        MQTTAsync_disconnect(s->client, NULL);
        pthread_mutex_lock(&s->mu);
        s->removing = 1;
        pthread_mutex_unlock(&s->mu);
        remove_session(s);
    } else {
        return SIM_ERR;
    }
    if (wait_ms > 0) {
        struct timespec until;
        deadline_in(&until, wait_ms);
        pthread_mutex_lock(&s->mu);
        while (!s->st.disconnected)
            if (pthread_cond_timedwait(&s->cv, &s->mu, &until) == ETIMEDOUT)
                break;
        pthread_mutex_unlock(&s->mu);
    }
    return SIM_OK;
}

void sim_mqtt_sub_free(sim_mqtt_sub *s)
{
    if (!s)
        return;
    MQTTAsync_destroy(&s->client); /* no callback runs after this */
    while (s->head) {
        sim_mqtt_msg *m = s->head;
        s->head = m->next;
        free(m);
    }
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ---- the gauges' clients ---- */

static int discard_message(void *ctx, char *topic, int topic_len, MQTTAsync_message *m)
{
    /* Gauges subscribe to nothing; free whatever arrives. */
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    return 1;
}

int sim_mqtt_new5(MQTTAsync *client, const char *uri, const char *client_id, void *ctx,
                  MQTTAsync_connectionLost *lost_cb, MQTTAsync_connected *connected_cb)
{
    MQTTAsync_createOptions cro = MQTTAsync_createOptions_initializer5;
    if (MQTTAsync_createWithOptions(client, uri, client_id, MQTTCLIENT_PERSISTENCE_NONE, NULL,
                                    &cro) != MQTTASYNC_SUCCESS)
        return SIM_ERR;
    if (MQTTAsync_setCallbacks(*client, ctx, lost_cb, discard_message, NULL) != MQTTASYNC_SUCCESS ||
        MQTTAsync_setConnected(*client, ctx, connected_cb) != MQTTASYNC_SUCCESS) {
        MQTTAsync_destroy(client);
        return SIM_ERR;
    }
    return SIM_OK;
}
