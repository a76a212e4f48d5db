/* A platform subscriber for benchmarks: counts distinct readings and their
 * rate, and the latency of alarm transitions (arrival here minus the alarm's
 * transition time "at", same host clock). Prints one JSON line at the end.
 *   platform_probe URI TOPIC READINGS TIMEOUT_S [ALARMS_AFTER_MS]
 * Stops after READINGS distinct readings or TIMEOUT_S seconds. Alarms whose
 * "at" is before ALARMS_AFTER_MS (epoch ms) are ignored. */
#include <MQTTAsync.h>
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static long readings, dups, want;
static int64_t first_ms, last_ms, alarms_after;
static double *lat;
static int64_t *lat_at;
static int64_t first_any_ms;
static size_t nlat, caplat;
static unsigned char *seen;
static size_t seen_cap = 1u << 26;
static uint64_t seq_base; /* the seq bit 0 of seen stands for */

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

static int on_msg(void *ctx, char *topic, int tl, MQTTAsync_message *m)
{
    int64_t at = now_ms();
    if (!want && strstr(topic, "/readings")) {
        /* Latency runs: parsing every telemetry batch here would make this
         * subscriber the bottleneck and its own queue the latency. */
        pthread_mutex_lock(&mu);
        if (!first_any_ms)
            first_any_ms = at;
        if (!readings)
            first_ms = at;
        for (const char *p = m->payload, *end = p + m->payloadlen;
             (p = memmem(p, (size_t)(end - p), "\"seq\":", 6)); p += 6)
            readings++;
        last_ms = at;
        pthread_mutex_unlock(&mu);
        MQTTAsync_freeMessage(&m);
        MQTTAsync_free(topic);
        return 1;
    }
    cJSON *doc = cJSON_ParseWithLength(m->payload, (size_t)m->payloadlen);
    cJSON *items = cJSON_GetObjectItem(doc, "items"), *it;
    int is_alarm = strstr(topic, "/alarms") != NULL;
    pthread_mutex_lock(&mu);
    if (!first_any_ms)
        first_any_ms = at; /* the uplink is (re)connected from here on */
    cJSON_ArrayForEach(it, items)
    {
        if (is_alarm) {
            int64_t t = iso_ms(cJSON_GetStringValue(cJSON_GetObjectItem(it, "at")));
            if (t && t >= alarms_after) {
                if (nlat == caplat) {
                    caplat = caplat ? caplat * 2 : 1024;
                    lat = realloc(lat, caplat * sizeof(*lat));
                    lat_at = realloc(lat_at, caplat * sizeof(*lat_at));
                }
                lat_at[nlat] = t;
                lat[nlat++] = (double)(at - t);
            }
        } else if (strstr(topic, "/readings")) {
            uint64_t seq = (uint64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(it, "seq"));
            /* A gateway's sequence starts from the clock: map it from the
             * first seq seen, with room below for items that overtook it. */
            if (!seq_base)
                seq_base = seq > seen_cap * 4 ? seq - seen_cap * 4 : 1;
            if (seq >= seq_base && seq - seq_base < seen_cap * 8) {
                seq -= seq_base;
                if (seen[seq / 8] & (1u << (seq % 8))) {
                    dups++;
                    continue;
                }
                seen[seq / 8] |= (unsigned char)(1u << (seq % 8));
            }
            if (!readings)
                first_ms = at;
            readings++;
            last_ms = at;
        }
    }
    pthread_mutex_unlock(&mu);
    cJSON_Delete(doc);
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    return 1;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static volatile int subscribed;
static void on_sub(void *c, MQTTAsync_successData *r)
{
    subscribed = 1;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: platform_probe URI TOPIC READINGS TIMEOUT_S [ALARMS_AFTER_MS]\n");
        return 2;
    }
    want = atol(argv[3]);
    int timeout = atoi(argv[4]);
    alarms_after = argc > 5 ? atoll(argv[5]) : 0;
    seen = calloc(seen_cap, 1);
    MQTTAsync c;
    MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
    char id[64];
    snprintf(id, sizeof(id), "probe-%d", getpid());
    MQTTAsync_createWithOptions(&c, argv[1], id, MQTTCLIENT_PERSISTENCE_NONE, NULL, &co);
    MQTTAsync_setCallbacks(c, NULL, NULL, on_msg, NULL);
    MQTTAsync_connectOptions o = MQTTAsync_connectOptions_initializer;
    o.cleansession = 1;
    o.automaticReconnect = 1;
    o.minRetryInterval = 1;
    o.maxRetryInterval = 1;
    if (MQTTAsync_connect(c, &o) != MQTTASYNC_SUCCESS)
        return 1;
    for (int i = 0; i < 500 && !MQTTAsync_isConnected(c); i++)
        usleep(10000);
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.onSuccess = on_sub;
    MQTTAsync_subscribe(c, argv[2], 1, &ro);
    for (int i = 0; i < 500 && !subscribed; i++)
        usleep(10000);
    printf("probe: subscribed\n");
    fflush(stdout);
    int64_t end = now_ms() + (int64_t)timeout * 1000;
    for (;;) {
        pthread_mutex_lock(&mu);
        long r = readings;
        pthread_mutex_unlock(&mu);
        if ((want && r >= want) || now_ms() >= end)
            break;
        usleep(20000);
    }
    pthread_mutex_lock(&mu);
    /* Alarms raised before the first message arrived waited for the uplink to
     * reconnect: that is backoff, not the priority lane. Count the rest. */
    size_t k = 0;
    for (size_t i = 0; i < nlat; i++)
        if (lat_at[i] >= first_any_ms)
            lat[k++] = lat[i];
    nlat = k;
    qsort(lat, nlat, sizeof(*lat), cmp);
    double secs = last_ms > first_ms ? (double)(last_ms - first_ms) / 1000.0 : 0;
    printf("{\"readings\":%ld,\"duplicates\":%ld,\"seconds\":%.3f,\"readings_per_s\":%.0f,"
           "\"alarms\":%zu,\"alarm_p50_ms\":%.1f,\"alarm_p99_ms\":%.1f,\"alarm_max_ms\":%.1f}\n",
           readings, dups, secs, secs > 0 ? (double)readings / secs : 0, nlat,
           nlat ? lat[nlat / 2] : -1, nlat ? lat[(size_t)((double)nlat * 0.99)] : -1,
           nlat ? lat[nlat - 1] : -1);
    pthread_mutex_unlock(&mu);
    MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
    MQTTAsync_disconnect(c, &d);
    usleep(100000);
    MQTTAsync_destroy(&c);
    return 0;
}
