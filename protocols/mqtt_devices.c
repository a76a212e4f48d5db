/* MQTT devices: sensors that publish JSON to a local or field broker.
 *
 * Each `listeners:` entry of protocol "mqtt-devices" is one Paho connection
 * (separate from the uplink) subscribed to a topic template such as
 * `field/+/{device}/data`: `{device}` marks the segment holding the device
 * address, `+` and a final `#` are MQTT wildcards. An optional status template
 * (`field/+/{device}/status`) carries birth and last-will messages: the
 * payloads `online_payload` / `offline_payload` become online/offline events.
 *
 * Paho is reached through base/mqttc.h: messages come to the loop through
 * its mailbox, bounded by queue_max (beyond it they are dropped and counted),
 * and are decoded there. Payloads
 * go through the device's json_map, else the listener's (one mapping per device
 * type), else the generic mapping; unknown devices and malformed payloads are
 * counted drops. Reconnects use the core's backoff on a loop timer. */
#include "adapters/adapter.h"
#include "adapters/json_map.h"
#include "base/backoff.h"
#include "gateway/core.h"
#include "base/log.h"
#include "base/mqttc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_SEGS 16
#define MAX_MSG_BYTES (256 * 1024)
#define F(s, m) offsetof(s, m), sizeof(((s *)0)->m)

struct lconf {
    char uri[160], client_id[64], username[64], password_file[256];
    char topic[192], status_topic[192];
    char online_payload[32], offline_payload[32];
    int64_t qos, queue_max, keepalive_ms;
    const gw_ynode *json_map;
};

static const gw_cfgkey listener_keys[] = {
    {"uri", GW_CT_STR, NULL, 0, -1, F(struct lconf, uri), NULL, GW_CF_REQUIRED,
     "tcp://host:port of the field broker"},
    {"client_id", GW_CT_STR, "", 0, -1, F(struct lconf, client_id), NULL, 0,
     "MQTT client id (default: <gateway id>-devices-<n>)"},
    {"username", GW_CT_STR, "", 0, -1, F(struct lconf, username), NULL, 0, "MQTT user"},
    {"password_file", GW_CT_STR, "", 0, -1, F(struct lconf, password_file), NULL, 0,
     "file with the password"},
    {"topic", GW_CT_STR, NULL, 0, -1, F(struct lconf, topic), NULL, GW_CF_REQUIRED,
     "data topic template, e.g. field/+/{device}/data"},
    {"status_topic", GW_CT_STR, "", 0, -1, F(struct lconf, status_topic), NULL, 0,
     "birth/last-will topic template"},
    {"online_payload", GW_CT_STR, "online", 0, -1, F(struct lconf, online_payload), NULL, 0,
     "status payload meaning online"},
    {"offline_payload", GW_CT_STR, "offline", 0, -1, F(struct lconf, offline_payload), NULL, 0,
     "status payload meaning offline"},
    {"qos", GW_CT_INT, "1", 0, 1, offsetof(struct lconf, qos), 0, NULL, 0, "subscription QoS"},
    {"queue_max", GW_CT_INT, "100000", 16, 10000000, offsetof(struct lconf, queue_max), 0, NULL, 0,
     "messages waiting for the loop; beyond: dropped and counted"},
    {"keepalive", GW_CT_DURATION, "30s", 1, 3600, offsetof(struct lconf, keepalive_ms), 0, NULL, 0,
     "MQTT keepalive"},
    {"json_map", GW_CT_NODE, NULL, 0, -1, offsetof(struct lconf, json_map), 0, NULL, 0,
     "mapping for devices without their own"},
    {NULL}};

struct dconf {
    char adapter[32];
    const gw_ynode *json_map;
    char sm4_key_file[256], sm4_mode[8];
};

static const gw_cfgkey device_keys[] = {
    {"adapter", GW_CT_STR, "json-map", 0, -1, F(struct dconf, adapter), NULL, 0, "payload decoder"},
    {"json_map", GW_CT_NODE, NULL, 0, -1, offsetof(struct dconf, json_map), 0, NULL, 0,
     "this device's JSON mapping"},
    {"sm4_key_file", GW_CT_STR, "", 0, -1, F(struct dconf, sm4_key_file), NULL, 0,
     "per-device SM4 key (32 hex digits, mode 0600): payloads are IV || SM4 ciphertext, "
     "decrypted before the adapter (docs/adapters.md)"},
    {"sm4_mode", GW_CT_STR, "ctr", 0, -1, F(struct dconf, sm4_mode), NULL, 0,
     "ctr, or cbc with PKCS#7 padding"},
    {NULL}};

struct mdev {
    gw_adapter_use use; /* the device's adapter and json_map */
};

/* ---- topic templates ---- */

typedef struct tmpl {
    int n;
    int dev;  /* index of {device} */
    int hash; /* ends with # */
    char seg[MAX_SEGS][64];
    char sub[192]; /* the subscription: {device} -> + */
} tmpl;

static int tmpl_parse(const char *s, tmpl *t)
{
    memset(t, 0, sizeof(*t));
    t->dev = -1;
    const char *p = s;
    for (;;) {
        size_t k = strcspn(p, "/");
        if (t->n == MAX_SEGS || k >= sizeof(t->seg[0]))
            return GW_EINVAL;
        memcpy(t->seg[t->n], p, k);
        t->seg[t->n][k] = '\0';
        if (!strcmp(t->seg[t->n], "{device}")) {
            if (t->dev >= 0)
                return GW_EINVAL;
            t->dev = t->n;
        } else if (!strcmp(t->seg[t->n], "#")) {
            if (p[k])
                return GW_EINVAL;
            t->hash = 1;
        } else if (strchr(t->seg[t->n], '#') || strchr(t->seg[t->n], '{') ||
                   (strchr(t->seg[t->n], '+') && strcmp(t->seg[t->n], "+"))) {
            return GW_EINVAL;
        }
        t->n++;
        if (!p[k])
            break;
        p += k + 1;
    }
    if (t->dev < 0)
        return GW_EINVAL;
    size_t at = 0;
    for (int i = 0; i < t->n; i++)
        at += (size_t)snprintf(t->sub + at, sizeof(t->sub) - at, "%s%s", i ? "/" : "",
                               i == t->dev ? "+" : t->seg[i]);
    return at < sizeof(t->sub) ? GW_OK : GW_EINVAL;
}

/* The device segment of topic if it matches, copied into out. */
static int tmpl_match(const tmpl *t, const char *topic, char *out, size_t cap)
{
    const char *p = topic;
    for (int i = 0; i < t->n; i++) {
        if (t->hash && i == t->n - 1)
            return GW_OK; /* # takes the rest, even nothing */
        if (!p)
            return GW_ENOTFOUND;
        const char *slash = strchr(p, '/');
        size_t k = slash ? (size_t)(slash - p) : strlen(p);
        if (i == t->dev) {
            if (k == 0 || k >= cap)
                return GW_ENOTFOUND;
            memcpy(out, p, k);
            out[k] = '\0';
        } else if (strcmp(t->seg[i], "+") && (strlen(t->seg[i]) != k || memcmp(t->seg[i], p, k))) {
            return GW_ENOTFOUND;
        }
        p = slash ? slash + 1 : NULL;
    }
    return p ? GW_ENOTFOUND : GW_OK;
}

/* ---- the listener ---- */

struct msrv {
    gw_core *core;
    struct lconf conf;
    tmpl data, status;
    int has_status;
    gw_jmap *jmap;
    gw_mqttc *client;
    uv_timer_t timer;
    int connected, connecting, closing;
    gw_backoff bo;
    uint64_t messages, readings, unknown, malformed, unmatched, status_msgs;
};

static void do_connect(struct msrv *s);

static void on_reconnect_timer(uv_timer_t *t)
{
    do_connect(t->data);
}

static void schedule_reconnect(struct msrv *s)
{
    if (s->closing)
        return;
    int64_t d = gw_backoff_next(&s->bo);
    GW_LOG_RL(GW_LOG_INFO, 10000, "mqtt-devices", "reconnecting to %s in %lld ms", s->conf.uri,
              (long long)d);
    uv_timer_start(&s->timer, on_reconnect_timer, (uint64_t)d, 0);
}

static void do_connect(struct msrv *s)
{
    if (s->closing || s->connected || s->connecting)
        return;
    s->connecting = 1;
    if (gw_mqttc_connect(s->client, NULL)) {
        s->connecting = 0;
        schedule_reconnect(s);
    }
}

struct deliver {
    gw_core *core;
    gw_device *dev;
    uint64_t n;
};

static int on_reading(void *ctx, const gw_reading *r)
{
    struct deliver *d = ctx;
    gw_reading copy = *r;
    if (gw_core_reading(d->core, d->dev, &copy) == GW_OK)
        d->n++;
    return GW_OK;
}

static int on_event(void *ctx, const gw_event *e)
{
    struct deliver *d = ctx;
    gw_event copy = *e;
    gw_core_event(d->core, d->dev, &copy);
    return GW_OK;
}

static void handle_message(struct msrv *s, const gw_mqttc_event *e)
{
    char id[64];
    s->messages++;
    int is_status = 0;
    if (tmpl_match(&s->data, e->topic, id, sizeof(id))) {
        if (!s->has_status || tmpl_match(&s->status, e->topic, id, sizeof(id))) {
            s->unmatched++;
            return;
        }
        is_status = 1;
    }
    gw_device *dev = gw_core_find_device(s->core, "mqtt-devices", id);
    struct mdev *md = dev ? dev->proto_state : NULL;
    if (!md) {
        s->unknown++;
        GW_LOG_RL(GW_LOG_WARN, 10000, "mqtt-devices",
                  "message from unknown device '%.63s' dropped (%llu so far)", id,
                  (unsigned long long)s->unknown);
        return;
    }
    if (is_status) {
        s->status_msgs++;
        if (e->len == strlen(s->conf.online_payload) &&
            !memcmp(e->payload, s->conf.online_payload, e->len))
            gw_core_seen(s->core, dev, "birth message");
        else if (e->len == strlen(s->conf.offline_payload) &&
                 !memcmp(e->payload, s->conf.offline_payload, e->len))
            gw_core_offline(s->core, dev, "last will or status message");
        else
            s->malformed++;
        return;
    }
    struct deliver d = {s->core, dev, 0};
    gw_sink sink = {on_reading, on_event, &d};
    int rc = gw_adapter_use_decode(&md->use, s->jmap, (const uint8_t *)e->payload, e->len,
                                   gw_now_ms(), &sink);
    if (rc) {
        s->malformed++;
        GW_LOG_RL(GW_LOG_WARN, 10000, "mqtt-devices",
                  "[%s] malformed payload (%zu bytes) dropped (%llu so far)", dev->conf.id, e->len,
                  (unsigned long long)s->malformed);
        return;
    }
    s->readings += d.n;
    gw_core_seen(s->core, dev, "data");
}

static void on_mqtt(void *ctx, const gw_mqttc_event *e)
{
    struct msrv *s = ctx;
    if (s->closing) {
    } else if (e->type == GW_MQTTC_CONNECTED) {
        s->connecting = 0;
        s->connected = 1;
        gw_backoff_reset(&s->bo);
        GW_INFO("mqtt-devices", "connected to %s, subscribing %s%s%s", s->conf.uri, s->data.sub,
                s->has_status ? " and " : "", s->has_status ? s->status.sub : "");
        char *topics[2] = {s->data.sub, s->status.sub};
        int qos[2] = {(int)s->conf.qos, (int)s->conf.qos};
        gw_mqttc_subscribe(s->client, s->has_status ? 2 : 1, topics, qos);
    } else if (e->type == GW_MQTTC_CONNECT_FAILED) {
        s->connecting = 0;
        GW_LOG_RL(GW_LOG_WARN, 10000, "mqtt-devices", "connect to %s failed (code %d)%s%s",
                  s->conf.uri, e->code, e->why ? ": " : "", e->why ? e->why : "");
        schedule_reconnect(s);
    } else if (e->type == GW_MQTTC_LOST) {
        if (s->connected) {
            s->connected = 0;
            GW_WARN("mqtt-devices", "connection to %s lost", s->conf.uri);
            schedule_reconnect(s);
        }
    } else if (e->type == GW_MQTTC_SUBSCRIBE_FAILED) {
        GW_WARN("mqtt-devices", "%s refused the subscription (code %d)", s->conf.uri, e->code);
    } else if (e->type == GW_MQTTC_MESSAGE) {
        handle_message(s, e);
    }
}

static int md_listen(gw_core *core, const void *conf, void **state, char *err, size_t errlen)
{
    static int instance;
    struct msrv *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return GW_ENOMEM;
    }
    s->core = core;
    s->conf = *(const struct lconf *)conf;
    if (tmpl_parse(s->conf.topic, &s->data)) {
        snprintf(err, errlen,
                 "key 'topic': '%s' must hold one {device} segment (and '#' only at the end)",
                 s->conf.topic);
        goto error;
    }
    if (s->conf.status_topic[0]) {
        if (tmpl_parse(s->conf.status_topic, &s->status)) {
            snprintf(err, errlen, "key 'status_topic': '%s' must hold one {device} segment",
                     s->conf.status_topic);
            goto error;
        }
        s->has_status = 1;
    }
    if (s->conf.json_map && gw_jmap_load(&s->jmap, s->conf.json_map, "json_map", err, errlen))
        goto error;
    s->conf.json_map = NULL; /* the config's node is not ours to keep */
    char password[256];
    if (gw_mqttc_read_password("", s->conf.password_file, NULL, password, sizeof(password), err,
                               errlen))
        goto error;
    if (!s->conf.client_id[0])
        snprintf(s->conf.client_id, sizeof(s->conf.client_id), "%.40s-devices-%d",
                 gw_core_config(core)->gateway_id, ++instance);
    gw_mqttc_config mc = {
        .uri = s->conf.uri,
        .client_id = s->conf.client_id,
        .username = s->conf.username,
        .password = password,
        .keepalive_ms = s->conf.keepalive_ms,
        .connect_timeout_ms = 10000,
        .max_inflight = 1000,
        .queue_max = (size_t)s->conf.queue_max,
        .max_message_bytes = MAX_MSG_BYTES,
    };
    char cerr[200];
    s->client = gw_mqttc_new(gw_core_loop(core), &mc, on_mqtt, s, cerr, sizeof(cerr));
    memset(password, 0, sizeof(password));
    if (!s->client) {
        snprintf(err, errlen, "uri %s", cerr);
        goto error;
    }
    gw_backoff_init(&s->bo, 200, 30000, (uint64_t)gw_mono_ns() ^ (uint64_t)getpid());
    uv_timer_init(gw_core_loop(core), &s->timer);
    s->timer.data = s;
    do_connect(s);
    *state = s;
    return GW_OK;
error:
    gw_jmap_free(s->jmap);
    free(s);
    return GW_EINVAL;
}

static void on_closed(uv_handle_t *h)
{
    struct msrv *s = h->data;
    gw_jmap_free(s->jmap);
    free(s);
}

static void md_unlisten(void *state)
{
    struct msrv *s = state;
    s->closing = 1;
    uint64_t dropped = gw_mqttc_dropped(s->client), oversize = gw_mqttc_oversize(s->client);
    GW_INFO("mqtt-devices",
            "stopping %s: messages %llu readings %llu unknown %llu malformed %llu unmatched %llu "
            "status %llu queue_dropped %llu oversize %llu",
            s->conf.uri, (unsigned long long)s->messages, (unsigned long long)s->readings,
            (unsigned long long)s->unknown, (unsigned long long)s->malformed,
            (unsigned long long)s->unmatched, (unsigned long long)s->status_msgs,
            (unsigned long long)dropped, (unsigned long long)oversize);
    gw_mqttc_close(s->client, 0);
    s->client = NULL;
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, on_closed);
}

/* ---- devices ---- */

static int check_device(const gw_device *dev, char *err, size_t errlen)
{
    const struct dconf *c = dev->proto_conf;
    if (!dev->conf.address[0]) {
        snprintf(err, errlen, "an mqtt-devices device needs 'address' (its id in the topic)");
        return GW_EINVAL;
    }
    if (strchr(dev->conf.address, '/') || strchr(dev->conf.address, '+') ||
        strchr(dev->conf.address, '#')) {
        snprintf(err, errlen, "key 'address' may not hold '/', '+' or '#'");
        return GW_EINVAL;
    }
    if (gw_adapter_use_init(NULL, c->adapter, c->json_map, err, errlen))
        return GW_EINVAL;
    return gw_adapter_use_sm4(NULL, c->sm4_key_file, c->sm4_mode, err, errlen);
}

static int md_attach(gw_core *core, gw_device *dev, char *err, size_t errlen)
{
    const struct dconf *c = dev->proto_conf;
    struct mdev *m = calloc(1, sizeof(*m));
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return GW_ENOMEM;
    }
    if (gw_adapter_use_init(&m->use, c->adapter, c->json_map, err, errlen) ||
        gw_adapter_use_sm4(&m->use, c->sm4_key_file, c->sm4_mode, err, errlen)) {
        gw_adapter_use_free(&m->use);
        free(m);
        return GW_EINVAL;
    }
    dev->proto_state = m;
    return GW_OK;
}

static void md_detach(gw_device *dev)
{
    struct mdev *m = dev->proto_state;
    if (!m)
        return;
    dev->proto_state = NULL;
    gw_adapter_use_free(&m->use);
    free(m);
}

static void md_listener_stats(const void *state, gw_proto_counters *sum)
{
    const struct msrv *s = state;
    sum->frames += s->messages;
    sum->unknown_devices += s->unknown;
    sum->malformed += s->malformed;
}

const gw_protocol gw_proto_mqtt_devices = {
    .name = "mqtt-devices",
    .version = "1.0",
    .description = "devices publishing JSON to a field MQTT broker (topic templates, LWT)",
    .device_keys = device_keys,
    .device_conf_size = sizeof(struct dconf),
    .check_device = check_device,
    .attach = md_attach,
    .detach = md_detach,
    .listener_keys = listener_keys,
    .listener_conf_size = sizeof(struct lconf),
    .listen = md_listen,
    .unlisten = md_unlisten,
    .listener_stats = md_listener_stats,
};
