#ifndef GW_MAILBOX_H
#define GW_MAILBOX_H
/* The one hand-off from other threads to the loop (Paho's callbacks, the
 * store's thread, a serial bus worker). A producer thread posts an item; the
 * first post into an empty mailbox wakes the loop once with uv_async_send;
 * the loop swaps the whole list out under the lock and gets every item of it
 * in one callback, in posting order, so it can merge what the batch holds.
 *
 * Bounded in items (and optionally in payload bytes) and counted. A full
 * mailbox refuses an ordinary item (counted as dropped; the producer keeps
 * it), and makes a producer posting with GW_MAIL_KEEP (completions, anything
 * that must not be lost) wait until the loop has taken the list: push-back
 * instead of loss. Never post KEEP from the loop thread (it would wait on
 * itself); a KEEP post from the loop thread is taken over the bound instead,
 * and so is a GW_MAIL_OVER post from any thread.
 *
 * Items are intrusive: embed a gw_mail in your struct. The loop owns what it
 * is handed. Like a libuv handle the mailbox lives in its owner's struct and is
 * freed only after the close callback; items still waiting at close go to the
 * discard callback. Producers must have stopped (thread joined, Paho client
 * destroyed) before that callback returns; between close and its callback a
 * post is refused with GW_ERR. */
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct gw_mail {
    struct gw_mail *next;
    size_t bytes; /* counted against max_bytes; set by gw_mailbox_post */
} gw_mail;

typedef struct gw_mailbox gw_mailbox;

/* Loop thread: the whole batch, oldest first, linked by next. The callee owns
 * every item (and may close the mailbox while walking it). */
typedef void (*gw_mailbox_cb)(gw_mailbox *mb, gw_mail *list);
/* Loop thread, at close: one item nobody will deliver (free it). */
typedef void (*gw_mailbox_discard_cb)(gw_mailbox *mb, gw_mail *item);
typedef void (*gw_mailbox_close_cb)(gw_mailbox *mb);

typedef struct gw_mailbox_stats {
    uint64_t posted;       /* items accepted */
    uint64_t delivered;    /* items handed to the loop */
    uint64_t dropped_full; /* ordinary items refused: the mailbox was full */
    uint64_t dropped;      /* items the producer lost before posting (gw_mailbox_count_drop) */
    uint64_t waits;        /* KEEP posts that had to wait for the loop */
    uint64_t over;         /* OVER posts taken over the bound */
    size_t depth, peak;    /* items waiting now, most ever waiting */
} gw_mailbox_stats;

struct gw_mailbox {
    void *data; /* the owner's */
    uv_async_t async;
    uv_mutex_t mu;
    uv_cond_t room;
    uv_thread_t loop_thread;
    gw_mailbox_cb deliver;
    gw_mailbox_discard_cb discard;
    gw_mailbox_close_cb on_close;
    size_t max_items, max_bytes;
    /* Under mu: */
    gw_mail *head, *tail;
    size_t n, bytes;
    int waiters, closed;
    gw_mailbox_stats st;
};

/* GW_MAIL_OVER: never wait; a full mailbox takes the item over its bound
 * (counted). For producers that must not lose an item and cannot wait for the
 * loop (a Paho callback holds Paho's lock, which the loop takes to publish),
 * whose items are bounded by other means. */
enum { GW_MAIL_KEEP = 1, GW_MAIL_OVER = 2 };

/* Initialises mb on loop (call on the loop thread). max_items > 0 bounds the
 * items waiting; max_bytes bounds their bytes (0: items only). discard may be
 * NULL when items are plain malloc'd blocks with the gw_mail first. */
int gw_mailbox_init(gw_mailbox *mb, uv_loop_t *loop, size_t max_items, size_t max_bytes,
                    gw_mailbox_cb deliver, gw_mailbox_discard_cb discard);

/* Any thread. Returns 0 (the mailbox owns the item until it is delivered or
 * discarded), GW_EFULL (ordinary item, mailbox full: counted, the caller still
 * owns the item) or GW_ERR (closing: the caller still owns the item). */
int gw_mailbox_post(gw_mailbox *mb, gw_mail *item, size_t bytes, int flags);

/* Any thread: counts an item the producer could not even build (out of
 * memory, over a size limit) as dropped. */
void gw_mailbox_count_drop(gw_mailbox *mb);

void gw_mailbox_get_stats(gw_mailbox *mb, gw_mailbox_stats *out);

/* Loop thread. Refuses further posts, wakes producers waiting with KEEP (their
 * post returns GW_ERR), closes the async handle; when it is closed, discards
 * what is left and calls cb (which may free the owner). */
void gw_mailbox_close(gw_mailbox *mb, gw_mailbox_close_cb cb);

#endif
