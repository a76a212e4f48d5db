#ifndef GW_STREAM_LISTENER_H
#define GW_STREAM_LISTENER_H
/* The stream listener: one TCP listening socket and the connections it
 * accepted, written once for every protocol whose devices connect to the
 * gateway (SL651 centre, HJ212 upper computer, inbound Modbus DTUs).
 *
 * The listener owns the connections: accept, a bounded receive buffer per
 * connection, the auth window and the idle timer, back-pressure, writes,
 * replies held until the outbox committed (gw_core_flush), refcounted close.
 * A protocol supplies scan() (where is the next frame, how many bytes to drop)
 * and on_frame() (handle one frame; say whether it proved the peer to be a
 * configured station), plus an optional on_close() and per-connection state.
 *
 * Hostile peers (docs/sl651-hj212.md): a connection must deliver an accepted
 * frame (one that decodes and matches a configured station and its password)
 * within auth_timeout or it is closed; until then it is "unauthenticated".
 * Bytes that do not make an accepted frame never restart the idle timer. At
 * max_connections the oldest unauthenticated connection is closed to make
 * room for the new one (only when every connection is authenticated is the
 * new one refused); max_per_source bounds the connections of one source
 * address. Everything is counted (gw_sl_get_stats, gw_sl_totals).
 *
 * Lifetime: the listener, each connection and each reply waiting for the
 * outbox hold references; memory is freed from the close callback that drops
 * the last one. After gw_sl_stop no protocol hook is called again. Loop
 * thread only. */
#include "base/cfgmap.h"
#include "gateway/core.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct gw_sl gw_sl;
typedef struct gw_slc gw_slc;

/* What scan() found at the start of the buffer. */
enum {
    GW_SL_MORE = 0,  /* no complete frame: drop span.consumed (garbage), read more */
    GW_SL_FRAME = 1, /* a frame: on_frame(span.frame), then drop span.consumed */
    GW_SL_DROP = 2   /* a bad frame (e.g. CRC): drop span.consumed, scan on */
};

/* What on_frame() decided about the frame. */
enum {
    GW_SL_ACCEPT = 0, /* from a configured, authenticated station: the connection is
                         authenticated and its idle timer restarts */
    GW_SL_IGNORE = 1, /* handled, but proves nothing about the peer (no timer restart) */
    GW_SL_CLOSE = 2   /* refuse the peer: close after the writes already queued */
};

typedef struct gw_sl_span {
    size_t consumed;   /* bytes to drop from the buffer start (garbage + frame) */
    size_t skipped;    /* of those, garbage bytes (counted by the listener) */
    const void *frame; /* set by scan for on_frame: bytes in the buffer, or the
                          protocol's own decoded struct; valid until on_frame returns */
    size_t frame_len;
} gw_sl_span;

typedef struct gw_sl_proto {
    const char *module; /* log prefix, e.g. "sl651" */
    /* Bytes a frame may start with (NUL-terminated set): when the buffer is
     * full and scan still wants more, the listener drops the buffer up to the
     * next of these (counted as oversize) and scans again. */
    const char *frame_starts;
    size_t conn_size; /* per-connection protocol state, zeroed at accept */
    int max_pending;  /* replies waiting for the outbox before reading pauses (0: 16) */
    int (*scan)(void *ctx, gw_slc *c, const uint8_t *buf, size_t len, gw_sl_span *span);
    int (*on_frame)(void *ctx, gw_slc *c, const void *frame, size_t len);
    /* The connection is closing (peer gone, timed out, evicted, refused, or the
     * listener stopping); its state is still readable. May be NULL. */
    void (*on_close)(void *ctx, gw_slc *c);
} gw_sl_proto;

/* Listener settings; protocols embed GW_SL_KEYS in their listener key table. */
typedef struct gw_sl_conf {
    char listen[96];
    int64_t max_connections;
    int64_t max_per_source;
    int64_t idle_timeout_ms;
    int64_t auth_timeout_ms;
} gw_sl_conf;

/* Rows for a cfgmap table whose struct has a gw_sl_conf member m (listen
 * default, max_connections default, idle_timeout default, auth_timeout default). */
#define GW_SL_KEYS(type, m, listen_def, maxc_def, idle_def, auth_def)                              \
    {"listen",                                                                                     \
     GW_CT_STR,                                                                                    \
     listen_def,                                                                                   \
     0,                                                                                            \
     -1,                                                                                           \
     offsetof(type, m.listen),                                                                     \
     sizeof(((type *)0)->m.listen),                                                                \
     NULL,                                                                                         \
     0,                                                                                            \
     "HOST:PORT to bind (0.0.0.0:PORT accepts devices from the network)"},                         \
        {"max_connections",                                                                        \
         GW_CT_INT,                                                                                \
         maxc_def,                                                                                 \
         1,                                                                                        \
         100000,                                                                                   \
         offsetof(type, m.max_connections),                                                        \
         0,                                                                                        \
         NULL,                                                                                     \
         0,                                                                                        \
         "TCP connections at once; at the limit the oldest unauthenticated one is closed for the " \
         "new one, else the new one is refused (counted)"},                                        \
        {"max_per_source",                                                                         \
         GW_CT_INT,                                                                                \
         "1024",                                                                                   \
         1,                                                                                        \
         100000,                                                                                   \
         offsetof(type, m.max_per_source),                                                         \
         0,                                                                                        \
         NULL,                                                                                     \
         0,                                                                                        \
         "TCP connections at once from one source address; more are refused (counted)"},           \
        {"idle_timeout",                                                                           \
         GW_CT_DURATION,                                                                           \
         idle_def,                                                                                 \
         1,                                                                                        \
         86400,                                                                                    \
         offsetof(type, m.idle_timeout_ms),                                                        \
         0,                                                                                        \
         NULL,                                                                                     \
         0,                                                                                        \
         "close a connection that delivered no accepted frame for this long"},                     \
    {                                                                                              \
        "auth_timeout", GW_CT_DURATION, auth_def, 0.1, 3600, offsetof(type, m.auth_timeout_ms), 0, \
            NULL, 0,                                                                               \
            "close a connection whose first accepted frame (configured station, right password) "  \
            "has "                                                                                 \
            "not arrived by then"                                                                  \
    }

/* Binds conf->listen and starts accepting. ctx is handed to every hook; the
 * connection buffer holds bufsize bytes. Returns NULL with err set. */
gw_sl *gw_sl_start(gw_core *core, const gw_sl_conf *conf, size_t bufsize, const gw_sl_proto *proto,
                   void *ctx, char *err, size_t errlen);
/* Closes every connection (on_close runs for each) and the listening socket.
 * The listener memory goes with the last reference; sl must not be used again. */
void gw_sl_stop(gw_sl *sl);
/* gw_sl_stats and the process-wide gw_sl_totals are in protocols/protocol.h. */
void gw_sl_get_stats(const gw_sl *sl, gw_sl_stats *out);
/* The bound TCP port (useful after binding port 0), or -1. */
int gw_sl_port(const gw_sl *sl);

/* ---- connections (valid while the hook that received c runs, or while found
 * again with gw_sl_find) ---- */
void *gw_sl_conn_data(gw_slc *c);        /* the protocol's conn_size bytes */
uint64_t gw_sl_conn_id(const gw_slc *c); /* unique per listener, never 0 */
const char *gw_sl_peer(const gw_slc *c); /* "IP" of the peer */
uv_stream_t *gw_sl_stream(gw_slc *c);    /* for a protocol that writes itself */
/* The open connection with this id, or NULL (closed ones are never returned). */
gw_slc *gw_sl_find(gw_sl *sl, uint64_t id);
/* Writes n bytes now (copied). Returns 0, GW_EAGAIN when the connection is
 * closing, GW_ENOMEM or GW_ERR. */
int gw_sl_send(gw_slc *c, const void *p, size_t n);
/* Writes n bytes (copied) once everything handed to the pipeline so far is in
 * the outbox; dropped (logged) if the commit fails or the connection closed
 * meanwhile. Reading pauses while max_pending replies wait. Returns 0 or GW_E*. */
int gw_sl_reply_after_commit(gw_slc *c, const void *p, size_t n);
/* Closes the connection: at once, or after the writes already queued. */
void gw_sl_close(gw_slc *c, int after_writes);

#endif
