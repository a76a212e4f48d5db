#ifndef SIM_MQTT_H
#define SIM_MQTT_H
/* The simulator's own Paho helpers (the simulator shares no code with the
 * gateway). A platform subscriber for `sim platform` and `sim run`, and the
 * client set-up of the mqtt-gauge devices. Paho calls back on its own
 * threads: the subscriber's callbacks only copy each message onto a bounded,
 * mutex-guarded queue (beyond queue_max: dropped and counted) that the caller
 * swaps out whole with sim_mqtt_sub_take. */
#include <MQTTAsync.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sim_mqtt_msg {
    struct sim_mqtt_msg *next;
    uint64_t at_ns; /* uv_hrtime on arrival (Paho's thread) */
    size_t len;
    int retained;
    char *topic;    /* NUL-terminated, inside this allocation */
    char payload[]; /* len bytes and a NUL */
} sim_mqtt_msg;

typedef struct sim_mqtt_sub_opts {
    const char *broker, *client_id, *topic;
    int qos;
    const char *ca;              /* TLS: CA file, or NULL */
    const char *user, *password; /* or NULL */
    size_t queue_max;
    const char *who;  /* log prefix, e.g. "sim: platform" */
    int quiet;        /* no line on a lost connection */
    int keep_session; /* a persistent session stays in the broker at the end */
} sim_mqtt_sub_opts;
/* broker may list several URIs separated by commas (the nodes of one broker
 * cluster, at most SIM_MQTT_MAX_URIS): Paho connects to the first that
 * answers, and the session is then persistent (clean session off) so what
 * the cluster holds for it survives a node failure. Unless keep_session, the
 * disconnect at the end removes it: one more connect with a clean session,
 * which makes the broker discard the stored one (MQTT 3.1.1, 3.1.2.4), and
 * its DISCONNECT. Otherwise it would collect messages for a client id that
 * never comes back (on nats-server: durable JetStream consumers). */
#define SIM_MQTT_MAX_URIS 4

typedef struct sim_mqtt_sub_state {
    int connected_once, subscribed, sub_failed, disconnected;
    int persistent;      /* the session is kept by the broker (several URIs) */
    int session_removed; /* the clean-session connect at the end succeeded */
    uint64_t dropped;
    char last_error[256];   /* the last connect failure, or "" */
    char remove_error[128]; /* why the session could not be removed, or "" */
} sim_mqtt_sub_state;

typedef struct sim_mqtt_sub sim_mqtt_sub;

/* Creates the client and starts connecting; Paho reconnects by itself (1..2 s)
 * and the subscription is made again on every connect.
 * Returns NULL with a message in err. */
sim_mqtt_sub *sim_mqtt_sub_start(const sim_mqtt_sub_opts *o, char *err, size_t errlen);
/* Every message queued so far, oldest first; the caller frees each with
 * free(). Waits up to wait_ms for one to arrive (0: does not wait); returns
 * early when the subscription is refused. */
sim_mqtt_msg *sim_mqtt_sub_take(sim_mqtt_sub *s, int wait_ms);
void sim_mqtt_sub_state_get(sim_mqtt_sub *s, sim_mqtt_sub_state *out);
/* Starts a DISCONNECT (Paho gives it timeout_ms) and, for a persistent
 * session not kept, then removes the session (a clean connect, connect
 * timeout timeout_ms, and its DISCONNECT; also when the connection was lost
 * by then). Waits up to wait_ms for all of it (0: returns at once;
 * `disconnected` in the state tells when it is done, `session_removed` or
 * `remove_error` how the removal went). Returns 0, or -1 when there is
 * nothing to do or it could not start. */
int sim_mqtt_sub_disconnect(sim_mqtt_sub *s, int timeout_ms, int wait_ms);
/* Destroys the client and frees what is still queued. */
void sim_mqtt_sub_free(sim_mqtt_sub *s);

/* The mqtt-gauge devices: an MQTT 5 client with persistence off, a connected
 * and a lost callback (on Paho's threads), incoming messages discarded.
 * Returns 0 or a negative code. */
int sim_mqtt_new5(MQTTAsync *client, const char *uri, const char *client_id, void *ctx,
                  MQTTAsync_connectionLost *lost_cb, MQTTAsync_connected *connected_cb);

#endif
