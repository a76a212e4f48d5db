/* The stand-in city platform: subscribes to the gateway's topics and prints
 * every message as one line "<topic> <payload>" (or a readable summary with
 * --pretty). Paho runs its callbacks on its own threads: they only copy the
 * message onto a mutex-guarded queue; the main thread prints. */
#include "sim/sim.h"

#include <MQTTAsync.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PLAT_QUEUE_MAX 100000 /* messages waiting to be printed; more are dropped and counted */

typedef struct pmsg {
    struct pmsg *next;
    char *topic;
    size_t len;
    char payload[];
} pmsg;

typedef struct plat {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pmsg *head, *tail;
    size_t queued;
    uint64_t dropped;
    int connected_once, subscribed, sub_failed, disconnected;
    char last_error[256];
    MQTTAsync client;
    const char *topic;
    int qos;
} plat;

static volatile sig_atomic_t plat_stop;

static void on_sig(int s)
{
    (void)s;
    plat_stop = 1;
}

static void on_subscribed(void *ctx, MQTTAsync_successData *r)
{
    plat *p = ctx;
    pthread_mutex_lock(&p->mu);
    p->subscribed = 1;
    pthread_mutex_unlock(&p->mu);
    fprintf(stderr, "sim: platform subscribed to %s\n", p->topic);
}

static void on_sub_failed(void *ctx, MQTTAsync_failureData *r)
{
    plat *p = ctx;
    pthread_mutex_lock(&p->mu);
    p->sub_failed = 1;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    fprintf(stderr, "sim: platform: subscribe to %s refused (rc %d)\n", p->topic, r ? r->code : 0);
}

/* Called on every connect and automatic reconnect: the session is clean, so
 * the subscription is made again each time. */
static void on_connected(void *ctx, char *cause)
{
    plat *p = ctx;
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.onSuccess = on_subscribed;
    ro.onFailure = on_sub_failed;
    ro.context = p;
    pthread_mutex_lock(&p->mu);
    p->connected_once = 1;
    pthread_mutex_unlock(&p->mu);
    int rc = MQTTAsync_subscribe(p->client, p->topic, p->qos, &ro);
    if (rc != MQTTASYNC_SUCCESS)
        fprintf(stderr, "sim: platform: subscribe failed to start: %s\n", MQTTAsync_strerror(rc));
}

static void on_connect_failed(void *ctx, MQTTAsync_failureData *r)
{
    plat *p = ctx;
    pthread_mutex_lock(&p->mu);
    snprintf(p->last_error, sizeof p->last_error, "connect failed: rc %d %s", r ? r->code : 0,
             r && r->message ? r->message : "");
    pthread_mutex_unlock(&p->mu);
}

static void on_lost(void *ctx, char *cause)
{
    fprintf(stderr, "sim: platform: connection lost%s%s\n", cause ? ": " : "", cause ? cause : "");
}

static int on_message(void *ctx, char *topic, int topic_len, MQTTAsync_message *m)
{
    plat *p = ctx;
    size_t tl = topic_len > 0 ? (size_t)topic_len : strlen(topic);
    size_t pl = m->payloadlen > 0 ? (size_t)m->payloadlen : 0;
    pmsg *e = malloc(sizeof *e + pl + 1 + tl + 1);
    if (e) {
        e->next = NULL;
        e->len = pl;
        memcpy(e->payload, m->payload, pl);
        e->payload[pl] = 0;
        e->topic = e->payload + pl + 1;
        memcpy(e->topic, topic, tl);
        e->topic[tl] = 0;
    }
    pthread_mutex_lock(&p->mu);
    if (!e || p->queued >= PLAT_QUEUE_MAX) {
        p->dropped++;
        free(e);
    } else {
        if (p->tail)
            p->tail->next = e;
        else
            p->head = e;
        p->tail = e;
        p->queued++;
        pthread_cond_signal(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    return 1;
}

static void on_disconnected(void *ctx, MQTTAsync_successData *r)
{
    plat *p = ctx;
    pthread_mutex_lock(&p->mu);
    p->disconnected = 1;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void on_disconnect_failed(void *ctx, MQTTAsync_failureData *r)
{
    on_disconnected(ctx, NULL);
}

/* Prints bytes with line breaks escaped, so one message stays one line. */
static void put_line_safe(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n')
            fputs("\\n", stdout);
        else if (s[i] == '\r')
            fputs("\\r", stdout);
        else
            putchar(s[i]);
    }
}

static const char *jstr(const cJSON *o, const char *k, char *buf, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (cJSON_IsString(v))
        return v->valuestring;
    if (cJSON_IsNumber(v)) {
        snprintf(buf, cap, "%g", v->valuedouble);
        return buf;
    }
    if (cJSON_IsBool(v))
        return cJSON_IsTrue(v) ? "true" : "false";
    return NULL;
}

static void print_pretty(const pmsg *e)
{
    char clock[16], b1[32], b2[32], b3[32];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(clock, sizeof clock, "%H:%M:%S", &tm);
    cJSON *root = cJSON_ParseWithLength(e->payload, e->len);
    const cJSON *items = root ? cJSON_GetObjectItemCaseSensitive(root, "items") : NULL;
    if (!cJSON_IsArray(items)) {
        printf("%s %s ", clock, e->topic);
        put_line_safe(e->payload, e->len);
        putchar('\n');
        cJSON_Delete(root);
        return;
    }
    const char *top_dev = jstr(root, "device", b3, sizeof b3);
    const char *top_type = jstr(root, "type", b1, sizeof b1);
    int alarm_topic = strstr(e->topic, "alarm") != NULL || (top_type && !strcmp(top_type, "alarm"));
    const cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        char v1[32], v2[32], v3[32], v4[32];
        const char *dev = jstr(it, "device", v1, sizeof v1);
        const char *metric = jstr(it, "metric", v2, sizeof v2);
        const char *level = jstr(it, "level", v3, sizeof v3);
        const char *state = jstr(it, "state", v4, sizeof v4);
        const char *type = jstr(it, "type", b2, sizeof b2);
        if (!dev)
            dev = top_dev ? top_dev : "-";
        if (!metric)
            metric = jstr(it, "key", b2, sizeof b2);
        const char *event = jstr(it, "event", b1, sizeof b1);
        char fb[32], cb[32], xb[64];
        if (jstr(it, "forecast", fb, sizeof fb)) {
            const char *lead = jstr(it, "lead_min", fb, sizeof fb);
            const char *cross = jstr(it, "crossing", cb, sizeof cb);
            const char *detail = jstr(it, "detail", xb, sizeof xb);
            printf("%s FORECAST %-9s %s %s level=%s crossing=%s lead=%s min%s%s\n", clock,
                   state ? state : "-", dev, metric ? metric : "-", level ? level : "-",
                   cross ? cross : "-", lead ? lead : "-", detail ? " " : "", detail ? detail : "");
        } else if (alarm_topic || level || (type && !strcmp(type, "alarm"))) {
            char lb[32], vb[32];
            const char *lname = jstr(it, "level_name", lb, sizeof lb);
            const char *value = jstr(it, "value", vb, sizeof vb);
            const char *rule = jstr(it, "rule", b1, sizeof b1);
            printf("%s ALARM %-8s %s %s level=%s value=%s%s%s\n", clock, state ? state : "-", dev,
                   metric ? metric : "-", lname ? lname : (level ? level : "-"),
                   value ? value : "-", rule ? " rule=" : "", rule ? rule : "");
        } else if (event) {
            char ab[32], db[64];
            const char *active = jstr(it, "active", ab, sizeof ab);
            const char *detail = jstr(it, "detail", db, sizeof db);
            printf("%s EVENT %s %s%s%s%s\n", clock, dev, event,
                   active && !strcmp(active, "false") ? " (ended)" : "", detail ? " " : "",
                   detail ? detail : "");
        } else {
            char vb[32], ub[32], qb[32];
            const char *value = jstr(it, "value", vb, sizeof vb);
            const char *unit = jstr(it, "unit", ub, sizeof ub);
            const char *q = jstr(it, "quality", qb, sizeof qb);
            printf("%s %s %s = %s%s%s [%s]\n", clock, dev, metric ? metric : "-",
                   value ? value : "null", unit ? " " : "", unit ? unit : "", q ? q : "?");
        }
    }
    cJSON_Delete(root);
}

static int read_password(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "sim: platform: %s: %s\n", path, strerror(errno));
        return SIM_ERR;
    }
    if (!fgets(out, (int)cap, f))
        out[0] = 0;
    fclose(f);
    out[strcspn(out, "\r\n")] = 0;
    return SIM_OK;
}

static int parse_num_arg(const char *flag, const char *v, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (end == v || *end || errno || d < lo || d > hi) {
        fprintf(stderr, "sim: %s: expected a number in %g..%g\n", flag, lo, hi);
        return SIM_EINVAL;
    }
    *out = d;
    return SIM_OK;
}

int sim_platform_main(int argc, char **argv)
{
    const char *broker = NULL, *topic = "#", *ca = NULL, *user = NULL, *pwfile = NULL;
    char client_id[64], password[256] = "";
    double count = 0, timeout = 0, qos = 1;
    int pretty = 0, rc = 0;
    snprintf(client_id, sizeof client_id, "sim-platform-%ld", (long)getpid());
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (!strcmp(a, "--pretty")) {
            pretty = 1;
            continue;
        }
        if (!has_val) {
            fprintf(stderr, "sim: %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--broker"))
            broker = v;
        else if (!strcmp(a, "--topic"))
            topic = v;
        else if (!strcmp(a, "--count")) {
            if (parse_num_arg(a, v, 1, 1e12, &count))
                return 2;
        } else if (!strcmp(a, "--timeout")) {
            if (parse_num_arg(a, v, 0.001, 1e7, &timeout))
                return 2;
        } else if (!strcmp(a, "--qos")) {
            if (parse_num_arg(a, v, 0, 2, &qos))
                return 2;
        } else if (!strcmp(a, "--client-id"))
            snprintf(client_id, sizeof client_id, "%s", v);
        else if (!strcmp(a, "--ca"))
            ca = v;
        else if (!strcmp(a, "--user"))
            user = v;
        else if (!strcmp(a, "--password-file"))
            pwfile = v;
        else {
            fprintf(stderr, "sim: platform: unknown option %s\n", a);
            return 2;
        }
    }
    if (!broker) {
        fprintf(stderr, "sim: platform: --broker URI is required (tcp://127.0.0.1:1883)\n");
        return 2;
    }
    if (pwfile && read_password(pwfile, password, sizeof password))
        return 2;

    plat p;
    memset(&p, 0, sizeof p);
    pthread_mutex_init(&p.mu, NULL);
    pthread_condattr_t ca_attr;
    pthread_condattr_init(&ca_attr);
    pthread_condattr_setclock(&ca_attr, CLOCK_MONOTONIC);
    pthread_cond_init(&p.cv, &ca_attr);
    pthread_condattr_destroy(&ca_attr);
    p.topic = topic;
    p.qos = (int)qos;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sig;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
    co.sendWhileDisconnected = 0;
    int prc = MQTTAsync_createWithOptions(&p.client, broker, client_id, MQTTCLIENT_PERSISTENCE_NONE,
                                          NULL, &co);
    if (prc != MQTTASYNC_SUCCESS) {
        fprintf(stderr, "sim: platform: bad broker %s: %s\n", broker, MQTTAsync_strerror(prc));
        return 2;
    }
    MQTTAsync_setCallbacks(p.client, &p, on_lost, on_message, NULL);
    MQTTAsync_setConnected(p.client, &p, on_connected);

    MQTTAsync_connectOptions opts = MQTTAsync_connectOptions_initializer;
    MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
    opts.keepAliveInterval = 20;
    opts.cleansession = 1;
    opts.automaticReconnect = 1;
    opts.minRetryInterval = 1;
    opts.maxRetryInterval = 2;
    opts.onFailure = on_connect_failed;
    opts.context = &p;
    if (user) {
        opts.username = user;
        opts.password = password;
    }
    if (ca) {
        ssl.trustStore = ca;
        ssl.enableServerCertAuth = 1;
        opts.ssl = &ssl;
    }
    prc = MQTTAsync_connect(p.client, &opts);
    if (prc != MQTTASYNC_SUCCESS) {
        fprintf(stderr, "sim: platform: connect: %s\n", MQTTAsync_strerror(prc));
        MQTTAsync_destroy(&p.client);
        return 3;
    }

    struct timespec start, deadline;
    clock_gettime(CLOCK_MONOTONIC, &start);
    deadline = start;
    if (timeout > 0) {
        deadline.tv_sec += (time_t)timeout;
        deadline.tv_nsec += (long)((timeout - (double)(time_t)timeout) * 1e9);
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    uint64_t got = 0;
    int reported_error = 0;
    for (;;) {
        pthread_mutex_lock(&p.mu);
        while (!p.head && !plat_stop && !p.sub_failed) {
            /* Wake at least every 200 ms to notice signals and the deadline. */
            struct timespec now, until;
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (timeout > 0 && (now.tv_sec > deadline.tv_sec ||
                                (now.tv_sec == deadline.tv_sec && now.tv_nsec >= deadline.tv_nsec)))
                break;
            until = now;
            until.tv_nsec += 200 * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            if (timeout > 0 &&
                (until.tv_sec > deadline.tv_sec ||
                 (until.tv_sec == deadline.tv_sec && until.tv_nsec > deadline.tv_nsec)))
                until = deadline;
            pthread_cond_timedwait(&p.cv, &p.mu, &until);
            if (!reported_error && p.last_error[0] && !p.connected_once) {
                fprintf(stderr, "sim: platform: %s (retrying)\n", p.last_error);
                reported_error = 1;
            }
        }
        pmsg *batch = p.head;
        p.head = p.tail = NULL;
        p.queued = 0;
        int failed = p.sub_failed;
        pthread_mutex_unlock(&p.mu);
        int done = 0;
        while (batch) {
            pmsg *e = batch;
            batch = e->next;
            if (!done) {
                if (pretty) {
                    print_pretty(e);
                } else {
                    fputs(e->topic, stdout);
                    putchar(' ');
                    put_line_safe(e->payload, e->len);
                    putchar('\n');
                }
                fflush(stdout);
                got++;
                if (count > 0 && got >= (uint64_t)count)
                    done = 1;
            }
            free(e);
        }
        if (done)
            break;
        if (failed) {
            rc = 3;
            break;
        }
        if (plat_stop)
            break;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (timeout > 0 && (now.tv_sec > deadline.tv_sec ||
                            (now.tv_sec == deadline.tv_sec && now.tv_nsec >= deadline.tv_nsec))) {
            if (count > 0) {
                fprintf(stderr, "sim: platform: timeout after %llu of %.0f messages\n",
                        (unsigned long long)got, count);
                rc = 1;
            }
            break;
        }
    }

    MQTTAsync_disconnectOptions dopts = MQTTAsync_disconnectOptions_initializer;
    dopts.timeout = 1000;
    dopts.onSuccess = on_disconnected;
    dopts.onFailure = on_disconnect_failed;
    dopts.context = &p;
    if (MQTTAsync_isConnected(p.client) &&
        MQTTAsync_disconnect(p.client, &dopts) == MQTTASYNC_SUCCESS) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += 2;
        pthread_mutex_lock(&p.mu);
        while (!p.disconnected)
            if (pthread_cond_timedwait(&p.cv, &p.mu, &until) == ETIMEDOUT)
                break;
        pthread_mutex_unlock(&p.mu);
    }
    MQTTAsync_destroy(&p.client);
    pthread_mutex_lock(&p.mu);
    while (p.head) {
        pmsg *e = p.head;
        p.head = e->next;
        free(e);
    }
    uint64_t dropped = p.dropped;
    pthread_mutex_unlock(&p.mu);
    if (dropped)
        fprintf(stderr, "sim: platform: %llu messages dropped (print queue full)\n",
                (unsigned long long)dropped);
    fprintf(stderr, "sim: platform received %llu messages\n", (unsigned long long)got);
    sim_stats_print_cpu(stderr);
    pthread_cond_destroy(&p.cv);
    pthread_mutex_destroy(&p.mu);
    return rc;
}
