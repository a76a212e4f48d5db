/* Load generator for bench/coap_mqtt_bench.sh (which starts the brokers and the
 * gateway). Three measurements against a running gateway:
 *
 *   coap  PORT CLIENTS SECONDS          CON POSTs of a JSON reading to /d/bench-<i>/data
 *                                       from CLIENTS sessions, one request in flight each
 *                                       (a 2.04 arrives only after the outbox commit)
 *   fire  PORT UPLINK_PORT COUNT IMEI   NB-100 fire frames to /19/0/0; latency from the
 *                                       CoAP send to the event's arrival at a subscriber of
 *                                       the uplink broker (an upper bound of receipt ->
 *                                       uplink publish)
 *   mqtt  FIELD_PORT UPLINK_PORT DEVICES BATCH MESSAGES
 *                                       QoS 0 JSON batches to field/s/mq-<n>/data, then a
 *                                       marker {"flood":true} from mq-marker; the gateway
 *                                       handles one connection's messages in order, so the
 *                                       marker's flood_alarm event reaching the platform
 *                                       (priority lane) means every reading before it was
 *                                       taken into the outbox queue: readings/s = total /
 *                                       (marker arrival - first publish)
 *
 *   cc -O2 -std=c11 -D_GNU_SOURCE bench/coap_mqtt_bench.c -o build/coap_mqtt_bench \
 *      $(pkg-config --cflags --libs libcoap-3-openssl) -lpaho-mqtt3as -lpthread
 */
#include <MQTTAsync.h>
#include <coap3/coap.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- platform subscriber: counts readings and timestamps fire alarms ---- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static long readings;
static double fire_at[4096];
static double marker_at;

static int on_msg(void *ctx, char *topic, int tlen, MQTTAsync_message *m)
{
    double t = now_s();
    const char *p = m->payload, *end = p + m->payloadlen;
    long n = 0;
    pthread_mutex_lock(&mu);
    for (const char *q = p; q && q < end; q++) {
        q = memmem(q, (size_t)(end - q), "\"metric\"", 8);
        if (!q)
            break;
        n++;
    }
    readings += n;
    if (!marker_at && memmem(p, (size_t)(end - p), "\"flood_alarm\"", 13))
        marker_at = t;
    for (const char *q = p; q && q < end; q++) {
        q = memmem(q, (size_t)(end - q), "\"fire_alarm\"", 12);
        if (!q)
            break;
        const char *s = memmem(q, (size_t)(end - q), "seq=", 4);
        if (s) {
            int seq = atoi(s + 4);
            if (seq >= 0 && seq < 4096 && fire_at[seq] == 0)
                fire_at[seq] = t;
        }
    }
    pthread_mutex_unlock(&mu);
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    return 1;
}

static volatile int sub_ready;
static void on_sub(void *ctx, MQTTAsync_successData *r)
{
    sub_ready = 1;
}
static void on_conn(void *ctx, MQTTAsync_successData *r)
{
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.onSuccess = on_sub;
    MQTTAsync_subscribe(*(MQTTAsync *)ctx, "#", 0, &ro);
}

static MQTTAsync platform(int port)
{
    static MQTTAsync c;
    char uri[64];
    snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", port);
    MQTTAsync_create(&c, uri, "bench-platform", MQTTCLIENT_PERSISTENCE_NONE, NULL);
    MQTTAsync_setCallbacks(c, NULL, NULL, on_msg, NULL);
    MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;
    co.cleansession = 1;
    co.onSuccess = on_conn;
    co.context = &c;
    MQTTAsync_connect(c, &co);
    for (int i = 0; i < 500 && !sub_ready; i++)
        usleep(10000);
    return c;
}

/* ---- CoAP ---- */

static long done, sent;
static int clients;
static coap_session_t **sess;
static double t_end;
static uint8_t fire_frame[30];

static void send_json(coap_session_t *s, int i)
{
    coap_pdu_t *p = coap_pdu_init(COAP_MESSAGE_CON, COAP_REQUEST_CODE_POST, coap_new_message_id(s),
                                  coap_session_max_pdu_size(s));
    char seg[32], body[64];
    snprintf(seg, sizeof(seg), "bench-%d", i);
    coap_add_option(p, COAP_OPTION_URI_PATH, 1, (const uint8_t *)"d");
    coap_add_option(p, COAP_OPTION_URI_PATH, strlen(seg), (const uint8_t *)seg);
    coap_add_option(p, COAP_OPTION_URI_PATH, 4, (const uint8_t *)"data");
    int n = snprintf(body, sizeof(body), "{\"v\":%ld}", sent);
    coap_add_data(p, (size_t)n, (const uint8_t *)body);
    sent++;
    coap_send(s, p);
}

static coap_response_t on_resp(coap_session_t *s, const coap_pdu_t *snt, const coap_pdu_t *r,
                               const coap_mid_t mid)
{
    if (coap_pdu_get_code(r) == COAP_RESPONSE_CODE(204))
        done++;
    intptr_t i = (intptr_t)coap_session_get_app_data(s);
    if (now_s() < t_end)
        send_json(s, (int)i);
    return COAP_RESPONSE_OK;
}

static coap_context_t *coap_clients(int port, int n)
{
    coap_startup();
    coap_set_log_level(LOG_ERR);
    coap_context_t *ctx = coap_new_context(NULL);
    coap_register_response_handler(ctx, on_resp);
    coap_address_t dst;
    coap_address_init(&dst);
    dst.addr.sin.sin_family = AF_INET;
    dst.addr.sin.sin_port = htons((uint16_t)port);
    dst.addr.sin.sin_addr.s_addr = htonl(0x7f000001);
    dst.size = sizeof(dst.addr.sin);
    sess = calloc((size_t)n, sizeof(*sess));
    for (int i = 0; i < n; i++) {
        sess[i] = coap_new_client_session(ctx, NULL, &dst, COAP_PROTO_UDP);
        coap_session_set_app_data(sess[i], (void *)(intptr_t)i);
    }
    clients = n;
    return ctx;
}

static int bench_coap(int port, int n, double secs)
{
    coap_context_t *ctx = coap_clients(port, n);
    /* Warm up: one request per client (online events), then measure. */
    t_end = now_s() + 0.5;
    for (int i = 0; i < n; i++)
        send_json(sess[i], i);
    while (now_s() < t_end + 0.2)
        coap_io_process(ctx, 50);
    done = 0;
    double t0 = now_s();
    t_end = t0 + secs;
    for (int i = 0; i < n; i++)
        send_json(sess[i], i);
    while (now_s() < t_end)
        coap_io_process(ctx, 50);
    double dt = now_s() - t0;
    printf("coap: %d clients, %.1f s: %ld CON requests acknowledged after commit = %.0f req/s\n", n,
           dt, done, done / dt);
    return 0;
}

static uint16_t crc16(const uint8_t *p, size_t n)
{
    uint16_t c = 0xFFFF;
    while (n--) {
        c ^= (uint16_t)(*p++ << 8);
        for (int i = 0; i < 8; i++)
            c = (c & 0x8000) ? (uint16_t)((c << 1) ^ 0x1021) : (uint16_t)(c << 1);
    }
    return c;
}

static void make_fire(const char *imei, uint16_t seq)
{
    uint8_t *b = fire_frame;
    memset(b, 0, 30);
    b[0] = 0xA5, b[1] = 0x5A, b[2] = 1, b[3] = 24;
    for (int i = 0; i < 8; i++)
        b[4 + i] = (uint8_t)(((imei[2 * i] - '0') << 4) | (i < 7 ? imei[2 * i + 1] - '0' : 0xF));
    b[12] = 2;
    b[13] = (uint8_t)(seq >> 8), b[14] = (uint8_t)seq;
    b[20] = 0x01; /* fire */
    b[21] = 0x0B, b[22] = 0x86, b[24] = 0x50, b[26] = 0xD7, b[27] = 0xB0;
    uint16_t c = crc16(b, 28);
    b[28] = (uint8_t)(c >> 8), b[29] = (uint8_t)c;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int bench_fire(int port, int uport, int count, const char *imei)
{
    platform(uport);
    coap_context_t *ctx = coap_clients(port, 1);
    if (count > 4000)
        count = 4000;
    double *t_send = calloc((size_t)count, sizeof(double)), *lat = calloc((size_t)count, 8);
    for (int i = 0; i < count; i++) {
        make_fire(imei, (uint16_t)i);
        coap_pdu_t *p = coap_pdu_init(COAP_MESSAGE_CON, COAP_REQUEST_CODE_POST,
                                      coap_new_message_id(sess[0]), 256);
        coap_add_option(p, COAP_OPTION_URI_PATH, 2, (const uint8_t *)"19");
        coap_add_option(p, COAP_OPTION_URI_PATH, 1, (const uint8_t *)"0");
        coap_add_option(p, COAP_OPTION_URI_PATH, 1, (const uint8_t *)"0");
        coap_add_data(p, 30, fire_frame);
        t_send[i] = now_s();
        coap_send(sess[0], p);
        double until = now_s() + 0.02; /* one alarm every 20 ms */
        while (now_s() < until)
            coap_io_process(ctx, 5);
    }
    for (int i = 0; i < 200; i++) {
        pthread_mutex_lock(&mu);
        int all = fire_at[count - 1] != 0;
        pthread_mutex_unlock(&mu);
        if (all)
            break;
        coap_io_process(ctx, 10);
    }
    int n = 0;
    pthread_mutex_lock(&mu);
    for (int i = 0; i < count; i++)
        if (fire_at[i] > 0)
            lat[n++] = (fire_at[i] - t_send[i]) * 1000.0;
    pthread_mutex_unlock(&mu);
    qsort(lat, (size_t)n, sizeof(double), cmp);
    if (n == 0) {
        printf("fire: no alarm arrived\n");
        return 1;
    }
    printf("fire: %d/%d alarms, CoAP send -> platform receipt: p50 %.2f ms, p99 %.2f ms, max "
           "%.2f ms\n",
           n, count, lat[n / 2], lat[(int)(n * 0.99)], lat[n - 1]);
    return 0;
}

static int bench_mqtt(int fport, int uport, int devices, int batch, long total)
{
    platform(uport);
    MQTTAsync c;
    char uri[64];
    snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", fport);
    MQTTAsync_createOptions o = MQTTAsync_createOptions_initializer;
    o.maxBufferedMessages = 100000;
    MQTTAsync_createWithOptions(&c, uri, "bench-devices", MQTTCLIENT_PERSISTENCE_NONE, NULL, &o);
    MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;
    co.cleansession = 1;
    MQTTAsync_connect(c, &co);
    for (int i = 0; i < 500 && !MQTTAsync_isConnected(c); i++)
        usleep(10000);
    char *body = malloc((size_t)batch * 40 + 16);
    size_t at = 0;
    body[at++] = '[';
    for (int i = 0; i < batch; i++)
        at += (size_t)sprintf(body + at, "%s{\"water\":{\"depth\":%d.5}}", i ? "," : "", i);
    body[at++] = ']';
    double t0 = now_s();
    long pubs = 0;
    MQTTAsync_message m = MQTTAsync_message_initializer;
    while (pubs < total) {
        char topic[64];
        snprintf(topic, sizeof(topic), "field/s/mq-%ld/data", pubs % devices);
        m.payload = body;
        m.payloadlen = (int)at;
        m.qos = 0;
        if (MQTTAsync_sendMessage(c, topic, &m, NULL) == MQTTASYNC_SUCCESS)
            pubs++;
        else
            usleep(200); /* Paho's buffer is full: back-pressure */
    }
    double t_pub = now_s() - t0;
    m.payload = "{\"flood\":true}";
    m.payloadlen = (int)strlen(m.payload);
    while (MQTTAsync_sendMessage(c, "field/s/mq-marker/data", &m, NULL) != MQTTASYNC_SUCCESS)
        usleep(200);
    for (int i = 0; i < 6000 && !marker_at; i++)
        usleep(10000);
    if (!marker_at) {
        printf("mqtt: the marker never arrived\n");
        return 1;
    }
    double dt = marker_at - t0;
    printf("mqtt: %ld messages x %d records published in %.2f s; all %ld readings taken in by the "
           "gateway after %.2f s = %.0f readings/s\n",
           pubs, batch, t_pub, pubs * batch, dt, pubs * batch / dt);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 5 && !strcmp(argv[1], "coap"))
        return bench_coap(atoi(argv[2]), atoi(argv[3]), atof(argv[4]));
    if (argc >= 6 && !strcmp(argv[1], "fire"))
        return bench_fire(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), argv[5]);
    if (argc >= 7 && !strcmp(argv[1], "mqtt"))
        return bench_mqtt(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]),
                          atol(argv[6]));
    fprintf(stderr, "usage: see the comment at the top of bench/coap_mqtt_bench.c\n");
    return 2;
}
