#ifndef GW_ACKTRACK_H
#define GW_ACKTRACK_H
/* One destination's contiguous acknowledged point over one lane of the
 * outbox. Messages cover runs of row ids handed out in ascending order, and
 * their acknowledgements may come back in any order; rows a destination
 * filters out count as done at once. The point is the highest id such that
 * every row at or below it was acknowledged or filtered out: that, and only
 * that, may be written as the destination's durable cursor (gw_store_ack_upto),
 * so a restart resends from it and never leaves a gap. Pure code, loop
 * thread only; bounded by the in-flight window given at init. */
#include <stddef.h>
#include <stdint.h>

typedef struct gw_acktrack_msg {
    int64_t first, last;
    int acked;
} gw_acktrack_msg;

typedef struct gw_acktrack {
    int64_t point; /* every row <= point is done */
    int64_t given; /* highest row id sent or skipped */
    gw_acktrack_msg *ring;
    size_t cap, head, n;
} gw_acktrack;

/* cap: messages in flight at most; point: the persisted cursor. 0 or GW_ENOMEM. */
int gw_acktrack_init(gw_acktrack *t, size_t cap, int64_t point);
void gw_acktrack_free(gw_acktrack *t);
/* A message carrying rows first..last was sent (first above every id given
 * so far). GW_EFULL when cap messages are already in flight. */
int gw_acktrack_sent(gw_acktrack *t, int64_t first, int64_t last);
/* Rows up to upto are not for this destination (filtered out). */
void gw_acktrack_skip(gw_acktrack *t, int64_t upto);
/* The message that began at first was acknowledged. Returns 1 when the point
 * moved, 0 otherwise (also for an unknown message). */
int gw_acktrack_acked(gw_acktrack *t, int64_t first);
/* The connection was lost: every message in flight is forgotten, and sending
 * resumes after the point. */
void gw_acktrack_reset(gw_acktrack *t);

#endif
