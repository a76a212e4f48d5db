#ifndef GW_UPLINK_H
#define GW_UPLINK_H
/* A northbound destination (the platform uplink): one MQTT connection (Paho
 * async, QoS 1) that drains the outbox from its own durable cursor; the
 * gateway runs one per configured destination (uplink: and destinations[]),
 * and a row leaves the outbox once every destination taking its lane has it
 * acknowledged (gw_store_ack_upto). With several servers (the nodes of a broker cluster) it holds
 * one connection at a time and, when it is lost or refused, moves to the next node under the same
 * backoff and sends every unacknowledged row again there. Rows are read from the store, published,
 * and deleted only on PUBACK. The priority lane (events, alarms) always goes first and has slots of
 * its own in the in-flight window, so a new alarm overtakes any telemetry backlog. Paho's callbacks
 * run on Paho's threads: they only queue small events for the loop (uv_async); all state below is
 * touched by the loop thread alone. */
#include "base/mqttc.h"
#include "gateway/platform.h"
#include "gateway/protect.h"
#include "gateway/store.h"
#include "gateway/uplink_conf.h"

#include <stdint.h>
#include <uv.h>

typedef struct gw_uplink gw_uplink;

/* A command arrived on <prefix>/<gw>/cmd/<name> from destination dest (its
 * name). Payload is not NUL-terminated. route: the MQTT 5 response topic and
 * correlation data it came with, NULL when none (always over 3.1.1). */
typedef void (*gw_uplink_cmd_cb)(void *ctx, const char *dest, const char *name, const char *payload,
                                 size_t len, const gw_mqttc_route *route);

typedef struct gw_uplink_stats {
    int connected;
    uint64_t connects, disconnects;
    uint64_t failovers;    /* moves to the next server of uplink.servers */
    uint64_t id_conflicts; /* runs of sessions ended right after connect (client id taken over?) */
    int server;            /* index of the current (or next) server */
    uint64_t msgs_sent[GW_LANES], msgs_acked[GW_LANES], rows_acked[GW_LANES];
    uint64_t publish_refused; /* Paho refused a publish (back-pressure); retried */
    uint64_t commands, commands_dropped;
    uint64_t replies_dropped;  /* command replies over REPLY_ROOM in the client: not sent */
    uint64_t mailbox_over;     /* client events taken over its mailbox bound (gw_mqttc_over) */
    uint64_t commands_refused; /* failed the protection check (replay, bad MAC/signature...) */
    gw_protect_stats protect;
    int64_t cursor[GW_LANES];   /* durable point: every row <= it acknowledged or filtered out */
    int64_t backlog[GW_LANES];  /* rows above the cursor (what this destination still owes) */
    uint64_t rows_filtered;     /* rows (or items) this destination's filter left out */
    uint64_t fetches;           /* reads of the outbox (gw_store_fetch) */
    uint64_t rows_pushed;       /* rows taken from a commit without a fetch */
    uint64_t readahead_bytes;   /* rows fetched and held here, both lanes: under two fetches each */
    gw_platform_stats platform; /* the destination format's counts (gateway/platform.h) */
} gw_uplink_stats;

/* Creates the uplink; it starts connecting at gw_uplink_start. dest is its
 * index in gw_store_dests and cursor its persisted cursors (sending resumes
 * after them). The password is read here (file or environment); errors go to
 * err. */
gw_uplink *gw_uplink_new(uv_loop_t *loop, const gw_uplink_config *cfg, const char *gateway_id,
                         gw_store *store, int dest, const int64_t cursor[GW_LANES],
                         gw_uplink_cmd_cb on_cmd, void *ctx, char *err, size_t errlen);
/* The destination's name (cfg.name). */
const char *gw_uplink_name(const gw_uplink *u);
/* The lanes this destination takes (bit 1<<lane), from its filter. */
unsigned gw_uplink_lanes(const gw_uplink_config *cfg);
int gw_uplink_start(gw_uplink *u);
/* The command handler for the commands of a platform format (gateway/commands.h): each command
 * the platform sends is translated and handed to exec, and exec's final reply goes back in
 * the platform's words. Without one, commands go to on_cmd and are answered "accepted". */
void gw_uplink_set_commands(gw_uplink *u, gw_platform_exec_fn exec, void *ctx);
/* Publishes a reply to a platform command on <prefix>/<gw>/reply (QoS 1, not
 * retained, sealed like every message when uplink.protect is on). Not queued:
 * a reply while the connection is down is lost (GW_E*), the platform's
 * request times out and it asks again. */
int gw_uplink_reply(gw_uplink *u, const char *json, size_t len);
/* gw_uplink_reply on the route's response topic (the reply topic when it has
 * none), with its correlation data (MQTT 5). */
int gw_uplink_reply_route(gw_uplink *u, const gw_mqttc_route *r, const char *json, size_t len);
/* New rows were committed in these lanes (bit 1<<lane). */
void gw_uplink_notify(gw_uplink *u, unsigned lanes);
/* gw_uplink_notify with the committed rows (gw_store_commit_cb): a lane that
 * has read everything before them takes them as if fetched; else it fetches. */
void gw_uplink_committed(gw_uplink *u, unsigned lanes, const gw_rows *const *rows);
/* Alarm transition -> PUBLISH latency inside the gateway (the alarm's "at"
 * to the moment its message is handed to the MQTT client), in ms: count,
 * p50 and p99 since start. */
void gw_uplink_alarm_latency(const gw_uplink *u, uint64_t *n, int *p50, int *p99);
/* 1 when nothing is in flight and no committed row is waiting to be sent. */
int gw_uplink_idle(const gw_uplink *u);
void gw_uplink_get_stats(const gw_uplink *u, gw_uplink_stats *out);
/* Retained metadata (gateway/birth.c) goes beside the outbox, not through it:
 * meta(ctx, u, 1) is called on each new session (after the status and the
 * start of the outbox replay), meta(ctx, u, 0) after each batch of deliveries,
 * and the callee publishes what it has pending with gw_uplink_publish_meta. */
typedef void (*gw_uplink_meta_cb)(void *ctx, gw_uplink *u, int connected_now);
void gw_uplink_set_meta(gw_uplink *u, gw_uplink_meta_cb cb, void *ctx);
/* Publishes payload (len 0: clears the retained message) retained with QoS 1
 * on <prefix>/<gw>/<sub>, sealed like every message when uplink.protect is on
 * (an empty payload is sent bare: it is a deletion). Returns 0; GW_EAGAIN
 * when not connected; GW_EFULL while a few metadata messages await their
 * PUBACK or the MQTT client is full (call again at the next meta callback); in a platform format a
 * device's birth becomes the platform's registration and the inventory is not sent; GW_ERR when the
 * client refused it. */
int gw_uplink_publish_meta(gw_uplink *u, const char *sub, const char *payload, size_t len);
/* Publishes the offline status, disconnects (waiting at most timeout_ms for
 * Paho) and closes every handle; the struct is freed once the loop has closed
 * them. */
void gw_uplink_close(gw_uplink *u, int64_t timeout_ms);

#endif
