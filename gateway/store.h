#ifndef GW_STORE_H
#define GW_STORE_H
/* The durable outbox. Everything the gateway accepts (readings, events, alarm
 * transitions) becomes a row here before it counts as accepted; a row is
 * deleted only when the platform acknowledged it.
 *
 * One SQLite connection lives on a dedicated thread (the loop never waits on
 * disk). The loop hands it rows through a bounded queue; the thread commits
 * them in groups (one transaction per commit window, at once when a priority
 * row is waiting) and reports back on the loop through uv_async. Two lanes:
 * GW_LANE_PRIO (events, alarms: never dropped) and GW_LANE_TELE (readings:
 * when the outbox is over its byte bound, the oldest are dropped first).
 *
 * A commit that fails (disk full, I/O error) keeps its rows: they are retried
 * with a backoff, priority rows first and helped by a small reserve file that
 * is released when the disk fills; a flush completes only after every row
 * queued before it is committed, so no device is confirmed for rows that are
 * not on disk. Item sequence numbers are reserved in a small file beside the
 * outbox ("item-ids"), so a lost or recreated outbox never repeats them. */
#include "gateway/outbox.h"
#include "gateway/store_conf.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct gw_store gw_store;

/* A fetched run of rows from one lane, ids ascending. Payloads are
 * concatenated in buf; row i is buf[off[i]] .. buf[off[i]+len[i]]. Owned by the
 * store: valid only during the callback. */
typedef struct gw_rows {
    int lane;
    size_t n;
    const int64_t *id;
    const uint8_t *kind;
    const size_t *off;
    const size_t *len;
    const char *buf;
} gw_rows;

typedef void (*gw_store_fetch_cb)(void *ctx, const gw_rows *rows);
typedef void (*gw_store_flush_cb)(void *ctx, int status);
/* Called on the loop after each commit that added rows (lane mask bit 1<<lane).
 * rows[lane], when not NULL, are exactly the rows that commit added to the
 * lane (ids contiguous, the first one after every row committed before), so a
 * reader that has read everything before them can take them without a fetch;
 * NULL when the commit added none, or when the rows on their way to the loop
 * would exceed GW_STORE_COMMIT_ROWS_MAX bytes (then a fetch reads them).
 * Valid only during the callback. */
typedef void (*gw_store_commit_cb)(void *ctx, unsigned lanes, const gw_rows *const *rows);
#define GW_STORE_COMMIT_ROWS_MAX (1u << 20)

typedef struct gw_store_stats {
    uint64_t rows_in[GW_LANES];    /* committed */
    uint64_t rows_acked[GW_LANES]; /* deleted after platform ack */
    uint64_t tele_dropped_full;    /* telemetry dropped oldest-first, outbox over max_bytes */
    uint64_t tele_refused_queue;   /* telemetry refused: DB queue full */
    uint64_t commits;
    int64_t bytes;               /* payload bytes held now */
    int64_t rows[GW_LANES];      /* rows held now */
    uint64_t last_seq;           /* highest sequence committed */
    uint64_t tele_shed_floor;    /* telemetry dropped oldest-first, free space under min_free */
    uint64_t commit_failures;    /* group commits that failed (rows kept, retried) */
    uint64_t disk_full_episodes; /* times the disk became full */
    int disk_full;               /* 1 while commits fail for lack of space */
    int64_t rows_waiting;        /* rows kept for retry after a failed commit */
    uint64_t replays;            /* reports refused by gw_store_seen as already stored */
    int recovered;               /* 1: the outbox was corrupt at open and was replaced */
    uint64_t salvaged;           /* rows copied from the corrupt outbox */
    int64_t last_id[GW_LANES];   /* highest row id committed (destinations' backlog) */
} gw_store_stats;

/* Called on the loop when the disk-full state changes (full 1: commits started
 * failing for lack of space; full 0: they succeed again, with the episode's
 * duration in ms and the failed attempts). */
typedef void (*gw_store_state_cb)(void *ctx, int full, int64_t ms, uint64_t failures);

/* Opens (creating if needed) the outbox and starts its thread. On failure
 * returns NULL with a message in err. */
gw_store *gw_store_open(uv_loop_t *loop, const gw_store_config *cfg, gw_store_commit_cb on_commit,
                        void *ctx, char *err, size_t errlen);

/* Where the outbox stands at open: NULL when it opened cleanly, else one line
 * saying it was corrupt, where the bad file went and how many rows were
 * salvaged (the core turns it into a gateway event). Valid until close. */
const char *gw_store_open_note(const gw_store *s);

void gw_store_on_state(gw_store *s, gw_store_state_cb cb, void *ctx);

/* Queues a row. The payload is copied. Returns 0, or GW_EFULL when the queue
 * is at its bound (telemetry only; priority rows are always queued). */
int gw_store_put(gw_store *s, int lane, int kind, uint64_t seq, const char *payload, size_t len);

/* Calls cb on the loop once every row queued before this call is committed
 * (status 0). While commits fail the rows are kept and retried, and the
 * callback waits; it gets a negative status only when the store closes with
 * rows still uncommitted. */
int gw_store_flush(gw_store *s, gw_store_flush_cb cb, void *ctx);

/* Fetches up to max_rows rows of lane with id > after (and at most max_bytes
 * of payload, at least one row). cb runs on the loop. */
int gw_store_fetch(gw_store *s, int lane, int64_t after, size_t max_rows, size_t max_bytes,
                   gw_store_fetch_cb cb, void *ctx);

/* Deletes rows first..last (inclusive) of lane: the platform acknowledged them.
 * For an outbox without destinations (gw_store_dests never called: tools, tests);
 * destinations acknowledge with gw_store_ack_upto. */
int gw_store_ack(gw_store *s, int lane, int64_t first, int64_t last);

/* Destinations. Each northbound destination keeps its own durable cursor per
 * lane over the one outbox: the highest row id up to which it has acknowledged
 * (or filtered out) every row. The cursors live in the outbox (table `cursor`)
 * and are written in the same transaction as the deletes, and a row is deleted
 * only once it is at or below the cursor of every destination that takes its
 * lane (bit 1<<lane of lanes[i]): min over those destinations, so a
 * destination that is down holds rows back but never delays the others.
 *
 * gw_store_dests registers the destinations, once, on the loop thread before
 * any gw_store_ack_upto: names[i] (unique, at most GW_STORE_DEST_NAME-1
 * bytes), and returns in cursors[i] each one's persisted cursors (0 for a new
 * destination: it receives what the outbox still holds). A destination in the
 * outbox but not in names is no longer configured: its cursor is dropped in the
 * next commit (logged), so it never pins rows. Returns 0 or a negative code. */
#define GW_STORE_MAX_DESTS 16
#define GW_STORE_DEST_NAME 64
int gw_store_dests(gw_store *s, const char *const *names, const unsigned *lanes, int n,
                   int64_t (*cursors)[GW_LANES]);

/* Destination dest (index into gw_store_dests' names) has acknowledged every
 * row of lane with id <= upto. Calls with a lower upto than before are ignored,
 * so the caller passes its contiguous point (see gateway/acktrack.h). */
int gw_store_ack_upto(gw_store *s, int dest, int lane, int64_t upto);

/* Highest sequence ever committed (for the pipeline to continue from after a restart). */
uint64_t gw_store_last_seq(const gw_store *s);

/* Key/value state persisted beside the outbox (rule engine state, alarms).
 * put is queued and committed with the next group; get is synchronous and only
 * allowed before the loop runs (start-up). The value is copied. */
int gw_store_state_put(gw_store *s, const char *key, const void *val, size_t len);
int gw_store_state_get(gw_store *s, const char *key, void **val, size_t *len);

void gw_store_get_stats(gw_store *s, gw_store_stats *out);

/* Writes text to path durably (temp file, fsync, rename, fsync dir); for small
 * state files beside the outbox. Returns 0 or an errno value. */
int gw_write_file_durable(const char *dir, const char *path, const char *text);

/* Replay guard. station names the device, key identifies one report of it
 * (e.g. serial number and observation time). Returns 1 when the key is among
 * the station's last replay_window keys (a resend: counted, store nothing),
 * else remembers it and returns 0. The window is persisted with the outbox:
 * the key is queued at the next gw_store_seen or gw_store_flush call, that is
 * after the rows of its report, so a crash can cause a duplicate but never a
 * report refused as seen whose rows were not committed. Loop thread only. */
int gw_store_seen(gw_store *s, const char *station, const char *key);
/* Takes back the last gw_store_seen(station, key) that returned 0, when its
 * report was not stored after all (queue full): the resend must be taken. */
void gw_store_forget(gw_store *s, const char *station, const char *key);

/* Commits what is queued, stops the thread, closes the database and frees the
 * store. Call from the loop thread; blocks until the thread has finished its
 * last commit (used at shutdown). */
void gw_store_close(gw_store *s);

#endif
