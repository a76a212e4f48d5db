/* The platform for bench/fleet.sh: a persistent-session QoS 1 subscriber on
 * one cluster node that de-duplicates items by id and measures, per fleet:
 * distinct readings and their rate in a window, duplicates, alarm latency
 * (arrival here minus the alarm's "at", same host clock), and per gateway the
 * longest silence between two new items (the delivery gap of a failover).
 *   fleet_probe URI[,URI...] GATEWAYS EXPECTED_READINGS TIMEOUT_S WINDOW_FILE
 * Gateways are named fg-0 .. fg-(GATEWAYS-1). Stops when EXPECTED_READINGS
 * distinct synthetic readings arrived, after TIMEOUT_S, or on SIGTERM; prints
 * one line of key=value pairs. WINDOW_FILE, read at the end, holds "FROM_MS
 * TO_MS" (epoch): the rate is counted over that window. */
#include <MQTTAsync.h>
#include <cjson/cJSON.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_GW 256
#define SEQ_CAP (1u << 22)

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
#define BUCKETS 12000 /* 100 ms each: 20 minutes */
static long readings, dups, alarms;
static long bucket[BUCKETS];
static int64_t start_ms;
static int ngw;
static unsigned char *seen[MAX_GW];
static int64_t last_new[MAX_GW], gap[MAX_GW];
static long per_gw[MAX_GW];
static double *lat;
static size_t nlat, caplat;
static volatile sig_atomic_t stop;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t iso_ms(const char *s)
{
    struct tm tm = {0};
    int ms = 0;
    if (!s || sscanf(s, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                     &tm.tm_min, &tm.tm_sec, &ms) != 7)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

static void item(int g, cJSON *it, int is_alarm, int64_t t)
{
    long seq = (long)cJSON_GetNumberValue(cJSON_GetObjectItem(it, "seq"));
    if (seq <= 0 || (unsigned long)seq >= SEQ_CAP)
        return;
    if (seen[g][seq]) {
        dups++;
        return;
    }
    seen[g][seq] = 1;
    if (last_new[g] && t - last_new[g] > gap[g])
        gap[g] = t - last_new[g];
    last_new[g] = t;
    per_gw[g]++;
    if (is_alarm) {
        alarms++;
        int64_t at = iso_ms(cJSON_GetStringValue(cJSON_GetObjectItem(it, "at")));
        if (at && nlat < caplat)
            lat[nlat++] = (double)(t - at);
        return;
    }
    const char *m = cJSON_GetStringValue(cJSON_GetObjectItem(it, "metric"));
    if (m && !strcmp(m, "synthetic")) {
        readings++;
        int64_t b = (t - start_ms) / 100;
        if (b >= 0 && b < BUCKETS)
            bucket[b]++;
    }
}

static int on_msg(void *ctx, char *topic, int tlen, MQTTAsync_message *m)
{
    int64_t t = now_ms();
    const char *p = strstr(topic, "/fg-");
    int g = p ? atoi(p + 4) : -1;
    int is_alarm = strstr(topic, "/alarms") != NULL;
    if (g >= 0 && g < ngw && (is_alarm || strstr(topic, "/readings"))) {
        cJSON *doc = cJSON_ParseWithLength(m->payload, (size_t)m->payloadlen), *it;
        pthread_mutex_lock(&mu);
        cJSON_ArrayForEach(it, cJSON_GetObjectItem(doc, "items")) item(g, it, is_alarm, t);
        pthread_mutex_unlock(&mu);
        cJSON_Delete(doc);
    }
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    return 1;
}

static MQTTAsync client;

static void on_conn(void *ctx, char *cause)
{
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    MQTTAsync_subscribe(client, "fleet/#", 1, &ro);
    fprintf(stderr, "fleet_probe: subscribed\n");
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void on_term(int sig)
{
    stop = 1;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: fleet_probe URI[,URI] GATEWAYS EXPECTED TIMEOUT_S WINDOW_FILE\n");
        return 2;
    }
    char *uris[4];
    int nuri = 0;
    for (char *s = strtok(argv[1], ","); s && nuri < 4; s = strtok(NULL, ","))
        uris[nuri++] = s;
    ngw = atoi(argv[2]);
    long expected = atol(argv[3]);
    int timeout_s = atoi(argv[4]);
    start_ms = now_ms();
    if (ngw <= 0 || ngw > MAX_GW || nuri == 0)
        return 2;
    for (int g = 0; g < ngw; g++)
        if (!(seen[g] = calloc(SEQ_CAP, 1)))
            return 1;
    caplat = 1u << 20;
    lat = malloc(caplat * sizeof(*lat));
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);

    MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
    co.maxBufferedMessages = 1000;
    if (MQTTAsync_createWithOptions(&client, uris[0], "fleet-platform", MQTTCLIENT_PERSISTENCE_NONE,
                                    NULL, &co) != MQTTASYNC_SUCCESS)
        return 1;
    MQTTAsync_setCallbacks(client, NULL, NULL, on_msg, NULL);
    MQTTAsync_setConnected(client, NULL, on_conn);
    MQTTAsync_connectOptions o = MQTTAsync_connectOptions_initializer;
    o.cleansession = 0;
    o.MQTTVersion = MQTTVERSION_3_1_1;
    o.automaticReconnect = 1;
    o.minRetryInterval = 1;
    o.maxRetryInterval = 2;
    o.keepAliveInterval = 10;
    o.serverURIs = uris;
    o.serverURIcount = nuri;
    if (MQTTAsync_connect(client, &o) != MQTTASYNC_SUCCESS)
        return 1;
    int64_t end = now_ms() + (int64_t)timeout_s * 1000;
    for (;;) {
        usleep(100000);
        pthread_mutex_lock(&mu);
        int done = expected > 0 && readings >= expected;
        pthread_mutex_unlock(&mu);
        if (done || stop || now_ms() > end)
            break;
    }
    MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
    d.timeout = 1000;
    MQTTAsync_disconnect(client, &d);
    usleep(200000);
    long long win_from = 0, win_to = 0, in_window = 0;
    FILE *wf = fopen(argv[5], "r");
    if (wf) {
        if (fscanf(wf, "%lld %lld", &win_from, &win_to) != 2)
            win_from = win_to = 0;
        fclose(wf);
    }
    pthread_mutex_lock(&mu);
    for (int64_t b = (win_from - start_ms) / 100; b < (win_to - start_ms) / 100; b++)
        if (b >= 0 && b < BUCKETS)
            in_window += bucket[b];
    qsort(lat, nlat, sizeof(*lat), cmp);
    int64_t gmax = 0;
    long gmin_items = -1;
    int gworst = -1;
    for (int g = 0; g < ngw; g++) {
        if (gap[g] > gmax) {
            gmax = gap[g];
            gworst = g;
        }
        if (gmin_items < 0 || per_gw[g] < gmin_items)
            gmin_items = per_gw[g];
    }
    printf("readings=%ld expected=%ld dups=%ld alarms=%ld window_rate=%.0f "
           "alarm_p50=%.0f alarm_p99=%.0f alarm_max=%.0f max_gap_ms=%lld worst_gw=fg-%d "
           "min_items_per_gw=%ld\n",
           readings, expected, dups, alarms,
           win_to > win_from ? in_window * 1000.0 / (double)(win_to - win_from) : 0.0,
           nlat ? lat[nlat / 2] : -1.0, nlat ? lat[(size_t)((double)nlat * 0.99)] : -1.0,
           nlat ? lat[nlat - 1] : -1.0, (long long)gmax, gworst, gmin_items);
    pthread_mutex_unlock(&mu);
    MQTTAsync_destroy(&client);
    return 0;
}
