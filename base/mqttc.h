#ifndef GW_MQTTC_H
#define GW_MQTTC_H
/* One thin wrapper around Paho MQTT C (async) for the gateway's MQTT links:
 * the platform uplink, the local publisher for rule actions, and the
 * mqtt-devices listeners. It fixes what every link must get right the same
 * way: the protocol version pinned to 3.1.1 (Paho otherwise falls back to
 * 3.1 "MQIsdp", which some brokers refuse) or, per link, to 5 (for the
 * response topic and correlation data of commands), no Paho persistence (the outbox
 * is the durable store), TLS options for ssl:// and mqtts://, and Paho's
 * callbacks, which run on Paho's threads, marshalled to the loop through a
 * mailbox (base/mailbox.h): the loop sees events, one at a time, in order.
 *
 * Incoming messages are ordinary mailbox items (bounded by queue_max and
 * max_message_bytes; beyond, dropped and counted); connection events and
 * delivery completions are KEEP items (never dropped: Paho's thread waits).
 * Every call below is made on the loop thread. */
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

enum {
    GW_MQTTC_CONNECTED,        /* connect succeeded */
    GW_MQTTC_CONNECT_FAILED,   /* code: Paho's; why: the TLS reason when known */
    GW_MQTTC_LOST,             /* connection lost (the caller reconnects unless automatic) */
    GW_MQTTC_DELIVERED,        /* token: a publish completed (QoS 1: PUBACK received) */
    GW_MQTTC_MESSAGE,          /* topic, payload, len */
    GW_MQTTC_SUBSCRIBED,       /* a gw_mqttc_subscribe was granted */
    GW_MQTTC_SUBSCRIBE_FAILED, /* code: Paho's */
    GW_MQTTC_BATCH_END, /* the events of one wake-up are all delivered: act on them together */
};

typedef struct gw_mqttc_event {
    int type;
    int code;
    int token;
    const char *topic;   /* MESSAGE: NUL-terminated, valid during the callback */
    const char *payload; /* MESSAGE: NUL-terminated copy, len bytes before the NUL */
    size_t len;
    const char *why; /* CONNECT_FAILED over TLS: what the certificate check refused, or NULL */
    /* MESSAGE over MQTT 5: the response topic (NUL-terminated) and correlation
     * data of the message, NULL / 0 when absent (always over 3.1.1). Copied on
     * Paho's thread; a property over its bound below is left out (counted). */
    const char *response_topic;
    const void *corr;
    size_t corr_len;
} gw_mqttc_event;

#define GW_MQTTC_RESPONSE_TOPIC_MAX 255 /* bytes of a response topic kept */
#define GW_MQTTC_CORR_MAX 64            /* bytes of correlation data kept */

/* Where an MQTT 5 request asked its replies to go: a copy of its response
 * topic ("" when it had none) and correlation data. */
typedef struct gw_mqttc_route {
    char topic[GW_MQTTC_RESPONSE_TOPIC_MAX + 1];
    unsigned char corr[GW_MQTTC_CORR_MAX];
    size_t corr_len;
} gw_mqttc_route;

/* Loop thread. Not called after gw_mqttc_close. */
typedef void (*gw_mqttc_cb)(void *ctx, const gw_mqttc_event *ev);

typedef struct gw_mqttc_config {
    const char *uri; /* tcp://host:port, ssl://host:port or mqtts://host:port */
    const char *client_id;
    const char *username;                       /* NULL or "": none */
    const char *password;                       /* copied; wiped when the client is freed */
    const char *ca_file, *cert_file, *key_file; /* TLS, for ssl:// and mqtts:// */
    int verify_host;
    int64_t keepalive_ms;
    int64_t connect_timeout_ms;  /* 0: Paho's default */
    int max_inflight;            /* QoS 1/2 messages in flight; 0: Paho's default */
    int max_buffered;            /* publishes Paho buffers; 0: Paho's default (100) */
    int send_while_disconnected; /* buffer publishes while the link is down */
    int auto_reconnect_max_s;    /* > 0: Paho reconnects itself, 1 s .. this; 0: the caller does */
    const char *will_topic;      /* retained QoS 1 last will, or NULL */
    const char *will_payload;
    size_t queue_max;         /* incoming messages waiting for the loop (default 1024) */
    size_t max_message_bytes; /* larger incoming messages are dropped (0: no limit) */
    int mqtt5;                /* speak MQTT 5 instead of 3.1.1 */
} gw_mqttc_config;

typedef struct gw_mqttc gw_mqttc;

/* Creates the client; nothing connects until gw_mqttc_connect. cb may be NULL
 * (publish only: no events, no loop handle; loop may then be NULL too). On
 * failure returns NULL with a message in err. */
gw_mqttc *gw_mqttc_new(uv_loop_t *loop, const gw_mqttc_config *cfg, gw_mqttc_cb cb, void *ctx,
                       char *err, size_t errlen);

/* Starts connecting; the outcome arrives as CONNECTED or CONNECT_FAILED.
 * Returns 0, or a negative code (with Paho's in *paho_rc when not NULL) when
 * the attempt could not even start (no event follows). */
int gw_mqttc_connect(gw_mqttc *c, int *paho_rc);

/* Queues a publish; the payload is copied. With token non-NULL the message's
 * token is stored there and a DELIVERED event with it follows completion.
 * Returns 0, GW_EFULL when Paho's buffer is full (back-pressure: try again
 * after a delivery), or GW_ERR (Paho's code in *paho_rc when not NULL). */
int gw_mqttc_publish(gw_mqttc *c, const char *topic, const void *payload, size_t len, int qos,
                     int retained, int *token, int *paho_rc);

/* gw_mqttc_publish with MQTT 5 correlation data (corr_len bytes) on the
 * message; over 3.1.1, or with corr_len 0, a plain publish. */
int gw_mqttc_publish_corr(gw_mqttc *c, const char *topic, const void *payload, size_t len, int qos,
                          const void *corr, size_t corr_len, int *paho_rc);

/* The broker the next gw_mqttc_connect goes to (a cluster node), instead of
 * the URI given at creation; the client id and options stay. Returns
 * GW_EINVAL when uri is too long. */
int gw_mqttc_set_server(gw_mqttc *c, const char *uri);

/* Subscribes n filters; SUBSCRIBED or SUBSCRIBE_FAILED follows. */
int gw_mqttc_subscribe(gw_mqttc *c, int n, char *const *topics, const int *qos);

/* Publishes the client holds (queued or awaiting their acknowledgement), all
 * callers together; -1 when it cannot tell. */
int gw_mqttc_pending(gw_mqttc *c);

/* Messages lost before they reached the loop (queue full, too large, out of
 * memory). */
uint64_t gw_mqttc_dropped(gw_mqttc *c);
/* Events Paho's threads posted into a full mailbox, taken over its bound (GW_MAIL_OVER:
 * a PUBACK or a connection change must neither be lost nor wait for the loop). */
uint64_t gw_mqttc_over(gw_mqttc *c);
/* Incoming messages dropped for being over max_message_bytes. */
uint64_t gw_mqttc_oversize(gw_mqttc *c);
/* Response topics or correlation data left out for being over their bound. */
uint64_t gw_mqttc_props_dropped(gw_mqttc *c);

/* Reads a password from the first line of file, or from the environment
 * variable env (when env is not empty). key names the config key in errors. */
int gw_mqttc_read_password(const char *key, const char *file, const char *env, char *out,
                           size_t cap, char *err, size_t errlen);

/* Stops events, disconnects when connected (waiting at most timeout_ms for the
 * DISCONNECT to go out: shutdown only, the loop does nothing else meanwhile),
 * destroys the Paho client and frees c once the loop has closed its handle. */
void gw_mqttc_close(gw_mqttc *c, int64_t timeout_ms);

#endif
