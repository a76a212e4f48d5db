/* The mqtt-gauge kind: field gauges that publish JSON readings to a broker
 * (MQTT 5, Paho async), with a retained birth message "online" on their
 * status topic and a retained will "offline". Paho runs its callbacks on its
 * own threads: they only bump atomic counters or push a small event onto a
 * mutex-guarded, bounded queue and wake the loop with uv_async_send; every
 * Paho call is made from the loop thread. The "disconnect" event ends the
 * session with MQTT 5 reason code 0x04 (Disconnect with Will Message), so the
 * broker publishes the will exactly as if the device had dropped off the
 * network; "offline" is the polite goodbye (publish "offline", then a normal
 * DISCONNECT, which discards the will). */
#include "sim/enc_gauge.h"
#include "sim/kind.h"
#include "sim/mqtt.h"
#include "sim/peer.h"
#include "sim/scenario.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

/* libuv timers have whole-millisecond resolution on a cached clock: a timer
 * may fire up to a millisecond before the hrtime it aimed at. Anything due
 * within SLACK_S (wall) is treated as due, so no timer spins at 0 ms. */
#define SLACK_S 0.002
#define QUEUE_MAX 4096     /* pending Paho events; more are counted and dropped */
#define STOP_GRACE_MS 3000 /* how long stop waits for goodbyes to be flushed */
#define PAYLOAD_MAX 2048

enum { Q_CONNECTED = 1, Q_LOST, Q_DISCONNECTED };

struct mq_group;

typedef struct mq_gauge {
    struct mq_group *mg;
    uint32_t k, n;
    char id[64];
    char topic[256];
    char status[256];
    char client_id[96];
    MQTTAsync client;
    int created;
    uv_timer_t timer;
    double next; /* scenario time of the next reading */
    int connected, want_connected, silent, pend_malformed, disconnecting;
    sim_curve_state *cst;
    /* loop-thread counters */
    uint64_t readings, send_rejected, malformed_sent, skipped_silent, skipped_offline;
    uint64_t births, connects_started, wills_triggered, offline_sent;
    /* Paho-thread counters */
    atomic_uint_fast64_t pub_ok, pub_failed, connected_n, lost_n, connect_failed;
} mq_gauge;

typedef struct mq_event {
    mq_gauge *gauge;
    int type;
} mq_event;

typedef struct mq_group {
    sim_group *g;
    sim_peer *p;
    sim_ctx *ctx;
    char uri[128];
    mq_gauge *gauges;
    uint32_t ngauges;
    uv_async_t async;
    uv_timer_t ev_timer, grace;
    int handles_started;
    int next_event;
    int stopping;
    int pending_goodbyes;
    pthread_mutex_t lock; /* guards queue, nq, closed */
    mq_event *queue;
    size_t nq;
    int closed;
    atomic_uint_fast64_t queue_dropped;
} mq_group;

/* ---- Paho threads: push and wake, nothing else ---- */

static void push(mq_gauge *gg, int type)
{
    mq_group *mg = gg->mg;
    pthread_mutex_lock(&mg->lock);
    if (!mg->closed) {
        if (mg->nq < QUEUE_MAX) {
            mg->queue[mg->nq++] = (mq_event){gg, type};
            uv_async_send(&mg->async);
        } else {
            atomic_fetch_add(&mg->queue_dropped, 1);
        }
    }
    pthread_mutex_unlock(&mg->lock);
}

static void on_connected(void *context, char *cause)
{
    mq_gauge *gg = context;
    atomic_fetch_add(&gg->connected_n, 1);
    push(gg, Q_CONNECTED);
}

static void on_lost(void *context, char *cause)
{
    mq_gauge *gg = context;
    atomic_fetch_add(&gg->lost_n, 1);
    push(gg, Q_LOST);
}

/* The connect's own success callback as well as the connected callback: once,
 * a reconnect right after a disconnect was seen with no connected callback. */
static void on_connect_ok(void *context, MQTTAsync_successData5 *r)
{
    push(context, Q_CONNECTED);
}

static void on_connect_failed(void *context, MQTTAsync_failureData5 *r)
{
    mq_gauge *gg = context;
    atomic_fetch_add(&gg->connect_failed, 1);
}

static void on_pub_ok(void *context, MQTTAsync_successData5 *r)
{
    mq_gauge *gg = context;
    atomic_fetch_add(&gg->pub_ok, 1);
}

static void on_pub_failed(void *context, MQTTAsync_failureData5 *r)
{
    mq_gauge *gg = context;
    atomic_fetch_add(&gg->pub_failed, 1);
}

static void on_disc_ok(void *context, MQTTAsync_successData5 *r)
{
    push(context, Q_DISCONNECTED);
}

static void on_disc_failed(void *context, MQTTAsync_failureData5 *r)
{
    push(context, Q_DISCONNECTED);
}

/* ---- loop thread ---- */

static int gauge_connect(mq_gauge *gg)
{
    mq_group *mg = gg->mg;
    MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer5;
    MQTTAsync_willOptions will = MQTTAsync_willOptions_initializer;
    will.topicName = gg->status;
    will.message = "offline";
    will.retained = 1;
    will.qos = 1;
    co.keepAliveInterval = (int)mg->p->keepalive;
    co.cleanstart = 1;
    co.will = &will;
    co.automaticReconnect = 1;
    co.minRetryInterval = 1;
    co.maxRetryInterval = 5;
    co.connectTimeout = 5;
    co.onSuccess5 = on_connect_ok;
    co.onFailure5 = on_connect_failed;
    co.context = gg;
    gg->want_connected = 1;
    gg->connects_started++;
    return MQTTAsync_connect(gg->client, &co) == MQTTASYNC_SUCCESS ? SIM_OK : SIM_ERR;
}

static int publish(mq_gauge *gg, const char *topic, const char *payload, int qos, int retained)
{
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.onSuccess5 = on_pub_ok;
    ro.onFailure5 = on_pub_failed;
    ro.context = gg;
    int rc = MQTTAsync_send(gg->client, topic, (int)strlen(payload), payload, qos, retained, &ro);
    if (rc != MQTTASYNC_SUCCESS) {
        gg->send_rejected++;
        return SIM_ERR;
    }
    return SIM_OK;
}

static int gauge_disconnect(mq_gauge *gg, int with_will)
{
    MQTTAsync_disconnectOptions dopt = MQTTAsync_disconnectOptions_initializer5;
    dopt.timeout = 500;
    dopt.onSuccess5 = on_disc_ok;
    dopt.onFailure5 = on_disc_failed;
    dopt.context = gg;
    if (with_will)
        dopt.reasonCode = MQTTREASONCODE_DISCONNECT_WITH_WILL_MESSAGE;
    gg->want_connected = 0;
    gg->connected = 0;
    if (MQTTAsync_disconnect(gg->client, &dopt) != MQTTASYNC_SUCCESS)
        return SIM_ERR;
    gg->disconnecting = 1;
    return SIM_OK;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int window(const sim_fault *f, double t)
{
    return t >= f->from && (f->to < 0 || t < f->to);
}

static void gauge_publish(mq_gauge *gg)
{
    mq_group *mg = gg->mg;
    sim_peer *p = mg->p;
    const sim_group *g = mg->g;
    double t = sim_now(mg->ctx);
    int malformed = gg->pend_malformed;
    for (int i = 0; i < g->nfaults; i++) {
        const sim_fault *f = &g->faults[i];
        if (!window(f, t))
            continue;
        if (f->kind == SIM_F_SILENT) {
            gg->skipped_silent++;
            return;
        }
        if (f->kind == SIM_F_GARBAGE && (f->every == 0 || (gg->readings + 1) % f->every == 0))
            malformed = 1;
    }
    if (gg->silent) {
        gg->skipped_silent++;
        return;
    }
    if (!gg->connected) {
        gg->skipped_offline++;
        return;
    }
    sim_gauge_value v[64];
    for (int i = 0; i < p->nfields && i < 64; i++) {
        const sim_field *f = &p->fields[i];
        v[i].name = f->name;
        v[i].decimals = f->decimals;
        v[i].value =
            f->curve.kind == SIM_C_NONE ? 0 : sim_curve_eval(&f->curve, t, gg->k, &gg->cst[i]);
    }
    sim_gauge_msg m = {.ts_field = p->ts_field,
                       .ts_format = p->ts_format,
                       .ts_ms = wall_ms(),
                       .id_field = p->id_field,
                       .id = gg->id,
                       .v = v,
                       .nv = p->nfields < 64 ? p->nfields : 64,
                       .malformed = malformed};
    char payload[PAYLOAD_MAX];
    if (sim_gauge_payload(&m, payload, sizeof payload) < 0) {
        gg->send_rejected++;
        return;
    }
    gg->pend_malformed = 0;
    if (publish(gg, gg->topic, payload, p->qos, 0) == SIM_OK) {
        gg->readings++;
        if (malformed)
            gg->malformed_sent++;
    }
}

static void gauge_timer_cb(uv_timer_t *tm);

static void gauge_arm(mq_gauge *gg)
{
    mq_group *mg = gg->mg;
    double wait_s = (gg->next - sim_now(mg->ctx)) / mg->ctx->speed;
    uv_timer_start(&gg->timer, gauge_timer_cb, wait_s > 0 ? (uint64_t)ceil(wait_s * 1000.0) : 0, 0);
}

static void gauge_timer_cb(uv_timer_t *tm)
{
    mq_gauge *gg = tm->data;
    mq_group *mg = gg->mg;
    double t = sim_now(mg->ctx) + SLACK_S * mg->ctx->speed;
    if (mg->stopping)
        return;
    if (t >= gg->next) {
        gauge_publish(gg);
        gg->next += mg->p->interval;
        if (gg->next < t)
            gg->next = t + mg->p->interval;
    }
    gauge_arm(gg);
}

static void gauge_event(mq_gauge *gg, sim_event_kind k)
{
    switch (k) {
    case SIM_EV_SILENT:
        gg->silent = 1;
        break;
    case SIM_EV_RESUME:
        gg->silent = 0;
        break;
    case SIM_EV_MALFORMED:
        gg->pend_malformed = 1;
        break;
    case SIM_EV_DISCONNECT:
        if (gg->want_connected && gauge_disconnect(gg, 1) == SIM_OK)
            gg->wills_triggered++;
        break;
    case SIM_EV_OFFLINE:
        if (gg->want_connected) {
            if (gg->connected && publish(gg, gg->status, "offline", 1, 1) == SIM_OK)
                gg->offline_sent++;
            gauge_disconnect(gg, 0);
        }
        break;
    case SIM_EV_RECONNECT:
        if (!gg->want_connected)
            gauge_connect(gg);
        break;
    default:
        break;
    }
}

static void ev_timer_cb(uv_timer_t *tm)
{
    mq_group *mg = tm->data;
    sim_peer *p = mg->p;
    double t = sim_now(mg->ctx) + SLACK_S * mg->ctx->speed;
    if (mg->stopping)
        return;
    while (mg->next_event < p->nevents && p->events[mg->next_event].at <= t) {
        const sim_event *ev = &p->events[mg->next_event++];
        for (uint32_t k = 0; k < mg->ngauges; k++)
            if (ev->device == 0 || mg->gauges[k].n == ev->device)
                gauge_event(&mg->gauges[k], ev->kind);
    }
    if (mg->next_event < p->nevents) {
        double wait_s = (p->events[mg->next_event].at - sim_now(mg->ctx)) / mg->ctx->speed;
        uv_timer_start(&mg->ev_timer, ev_timer_cb, wait_s > 0 ? (uint64_t)ceil(wait_s * 1000.0) : 0,
                       0);
    }
}

static void finish_stop(mq_group *mg);

static void on_async(uv_async_t *a)
{
    mq_group *mg = a->data;
    mq_event batch[64];
    for (;;) {
        size_t n;
        pthread_mutex_lock(&mg->lock);
        n = mg->nq < 64 ? mg->nq : 64;
        memcpy(batch, mg->queue, n * sizeof *batch);
        memmove(mg->queue, mg->queue + n, (mg->nq - n) * sizeof *batch);
        mg->nq -= n;
        pthread_mutex_unlock(&mg->lock);
        if (n == 0)
            break;
        for (size_t i = 0; i < n; i++) {
            mq_gauge *gg = batch[i].gauge;
            switch (batch[i].type) {
            case Q_CONNECTED:
                if (mg->stopping || !gg->want_connected || gg->connected)
                    break; /* the second of the two callbacks of one connect */
                gg->connected = 1;
                if (publish(gg, gg->status, "online", 1, 1) == SIM_OK)
                    gg->births++;
                break;
            case Q_LOST:
                gg->connected = 0;
                break;
            case Q_DISCONNECTED:
                if (gg->disconnecting) {
                    gg->disconnecting = 0;
                    if (mg->stopping && --mg->pending_goodbyes == 0)
                        finish_stop(mg);
                }
                break;
            }
        }
    }
}

/* ---- the kind ---- */

static int mq_start(sim_ctx *ctx, sim_group *g)
{
    sim_peer *p = g->peer;
    const char *host = g->host[0] ? g->host : ctx->bind;
    if (!p)
        return SIM_EINVAL;
    mq_group *mg = calloc(1, sizeof *mg);
    if (!mg)
        return SIM_ENOMEM;
    g->kstate = mg;
    mg->g = g;
    mg->p = p;
    mg->ctx = ctx;
    pthread_mutex_init(&mg->lock, NULL);
    snprintf(mg->uri, sizeof mg->uri, strchr(host, ':') ? "tcp://[%s]:%u" : "tcp://%s:%u", host,
             g->port);
    mg->queue = calloc(QUEUE_MAX, sizeof *mg->queue);
    mg->gauges = calloc(g->count, sizeof *mg->gauges);
    if (!mg->queue || !mg->gauges)
        return SIM_ENOMEM;
    uv_async_init(ctx->loop, &mg->async, on_async);
    uv_timer_init(ctx->loop, &mg->ev_timer);
    uv_timer_init(ctx->loop, &mg->grace);
    mg->async.data = mg->ev_timer.data = mg->grace.data = mg;
    mg->handles_started = 1;
    double spread = p->spread >= 0 ? p->spread : (p->interval < 10 ? p->interval : 10);
    double t0 = sim_now(ctx);
    for (uint32_t k = 0; k < g->count; k++) {
        mq_gauge *gg = &mg->gauges[k];
        gg->mg = mg;
        gg->k = k;
        gg->n = g->first + k;
        if (sim_format_id(g->id_tmpl, gg->n, gg->id, sizeof gg->id) != SIM_OK ||
            sim_expand(p->topic, gg->n, gg->id, NULL, gg->topic, sizeof gg->topic) < 0 ||
            sim_expand(p->status_topic, gg->n, gg->id, NULL, gg->status, sizeof gg->status) < 0 ||
            sim_expand(p->client_id, gg->n, gg->id, NULL, gg->client_id, sizeof gg->client_id) <
                0) {
            fprintf(stderr, "sim: group line %d: gauge %u: bad topic or client id\n", g->line,
                    gg->n);
            return SIM_EINVAL;
        }
        gg->cst = calloc((size_t)p->nfields, sizeof *gg->cst);
        if (!gg->cst)
            return SIM_ENOMEM;
        for (int i = 0; i < p->nfields; i++)
            gg->cst[i].step = -1;
        if (sim_mqtt_new5(&gg->client, mg->uri, gg->client_id, gg, on_lost, on_connected)) {
            fprintf(stderr, "sim: group line %d: cannot create an MQTT client for %s\n", g->line,
                    mg->uri);
            return SIM_ERR;
        }
        gg->created = 1;
        uv_timer_init(ctx->loop, &gg->timer);
        gg->timer.data = gg;
        mg->ngauges = k + 1;
        if (gauge_connect(gg) != SIM_OK) {
            fprintf(stderr, "sim: %s: cannot start connecting to %s\n", gg->id, mg->uri);
            return SIM_ERR;
        }
        gg->next = t0 + spread * k / g->count;
        gauge_arm(gg);
    }
    if (p->nevents)
        uv_timer_start(&mg->ev_timer, ev_timer_cb, 0, 0);
    if (!ctx->quiet)
        fprintf(stderr, "sim: %u mqtt-gauge devices -> %s, topic %s\n", g->count, mg->uri,
                p->topic);
    return SIM_OK;
}

/* Destroys the Paho clients (no callback runs after that), then closes the
 * loop handles. */
static void finish_stop(mq_group *mg)
{
    if (!mg->handles_started)
        return;
    for (uint32_t k = 0; k < mg->ngauges; k++)
        if (mg->gauges[k].created) {
            MQTTAsync_destroy(&mg->gauges[k].client);
            mg->gauges[k].created = 0;
        }
    pthread_mutex_lock(&mg->lock);
    mg->closed = 1;
    pthread_mutex_unlock(&mg->lock);
    mg->handles_started = 0;
    uv_close((uv_handle_t *)&mg->async, NULL);
    uv_close((uv_handle_t *)&mg->ev_timer, NULL);
    uv_close((uv_handle_t *)&mg->grace, NULL);
}

static void grace_cb(uv_timer_t *t)
{
    finish_stop(t->data);
}

static void mq_stop(sim_ctx *ctx, sim_group *g)
{
    mq_group *mg = g->kstate;
    if (!mg || mg->stopping)
        return;
    mg->stopping = 1;
    for (uint32_t k = 0; k < mg->ngauges; k++) {
        mq_gauge *gg = &mg->gauges[k];
        uv_close((uv_handle_t *)&gg->timer, NULL);
        /* A device switched off on purpose says goodbye. */
        if (gg->created && gg->connected) {
            if (publish(gg, gg->status, "offline", 1, 1) == SIM_OK)
                gg->offline_sent++;
            if (gauge_disconnect(gg, 0) == SIM_OK)
                mg->pending_goodbyes++;
        }
    }
    if (!mg->handles_started)
        return;
    if (mg->pending_goodbyes == 0)
        finish_stop(mg);
    else
        uv_timer_start(&mg->grace, grace_cb, STOP_GRACE_MS, 0);
}

static void mq_destroy(sim_ctx *ctx, sim_group *g)
{
    mq_group *mg = g->kstate;
    if (!mg)
        return;
    for (uint32_t k = 0; k < mg->ngauges; k++) {
        if (mg->gauges[k].created)
            MQTTAsync_destroy(&mg->gauges[k].client);
        free(mg->gauges[k].cst);
    }
    pthread_mutex_destroy(&mg->lock);
    free(mg->gauges);
    free(mg->queue);
    free(mg);
    g->kstate = NULL;
}

static void mq_stats(sim_ctx *ctx, sim_group *g, void *arr)
{
    mq_group *mg = g->kstate;
    if (!mg)
        return;
    for (uint32_t k = 0; k < mg->ngauges; k++) {
        mq_gauge *gg = &mg->gauges[k];
        cJSON *o = cJSON_CreateObject();
        if (!o)
            return;
        cJSON_AddStringToObject(o, "id", gg->id);
        cJSON_AddStringToObject(o, "protocol", g->protocol);
        cJSON_AddStringToObject(o, "topic", gg->topic);
        cJSON_AddStringToObject(o, "status_topic", gg->status);
        cJSON_AddNumberToObject(o, "requests", (double)gg->readings);
        cJSON_AddNumberToObject(o, "published_ok", (double)atomic_load(&gg->pub_ok));
        cJSON_AddNumberToObject(o, "publish_failed", (double)atomic_load(&gg->pub_failed));
        cJSON_AddNumberToObject(o, "send_rejected", (double)gg->send_rejected);
        cJSON_AddNumberToObject(o, "malformed_sent", (double)gg->malformed_sent);
        cJSON_AddNumberToObject(o, "skipped_silent", (double)gg->skipped_silent);
        cJSON_AddNumberToObject(o, "skipped_offline", (double)gg->skipped_offline);
        cJSON_AddNumberToObject(o, "connects_started", (double)gg->connects_started);
        cJSON_AddNumberToObject(o, "connected", (double)atomic_load(&gg->connected_n));
        cJSON_AddNumberToObject(o, "connect_failed", (double)atomic_load(&gg->connect_failed));
        cJSON_AddNumberToObject(o, "connection_lost", (double)atomic_load(&gg->lost_n));
        cJSON_AddNumberToObject(o, "births", (double)gg->births);
        cJSON_AddNumberToObject(o, "wills_triggered", (double)gg->wills_triggered);
        cJSON_AddNumberToObject(o, "offline_sent", (double)gg->offline_sent);
        cJSON_AddBoolToObject(o, "online", gg->connected);
        cJSON_AddBoolToObject(o, "silent", gg->silent);
        cJSON_AddItemToArray(arr, o);
    }
    if (atomic_load(&mg->queue_dropped) && cJSON_GetArraySize(arr) > 0)
        cJSON_AddNumberToObject(cJSON_GetArrayItem(arr, cJSON_GetArraySize(arr) - 1),
                                "paho_events_dropped", (double)atomic_load(&mg->queue_dropped));
}

const sim_kind sim_kind_mqtt_gauge = {
    .name = "mqtt-gauge",
    .start = mq_start,
    .stop = mq_stop,
    .stats = mq_stats,
    .destroy = mq_destroy,
    .peer = 1,
};
