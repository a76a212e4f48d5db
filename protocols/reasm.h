#ifndef GW_REASM_H
#define GW_REASM_H
/* Multi-packet message reassembly for SL651 M3 (36H pictures, long 38H answers) and
 * HJ 212 PNUM/PNO split packets. A pure module: no sockets, no logging, no clock (time
 * is an argument), allocation bounded by the limits below.
 *
 * A message is identified by a key the caller builds (station + function for SL651,
 * MN + CN + QN for HJ 212) and carries packets 1..total. Packets may come in any order
 * and twice (a resend after a NAK replaces nothing: the first copy is kept). When the
 * last missing packet arrives the payloads are concatenated in packet order and handed
 * to the caller, who owns (free()s) the result.
 *
 * Bounds: at most max_open messages in progress, at most max_message bytes each and
 * max_total bytes over all; a message whose last packet is older than timeout_ms, or
 * whose first packet is older than max_age_ms, is expired by gw_reasm_expire (a
 * counted timeout: the caller logs it). A packet that would break a bound is refused
 * and counted; the message it belongs to is dropped (its memory freed at once), so a
 * hostile station cannot hold memory. A packet 1 for a key already in progress starts
 * the message over (the station restarted its upload). */
#include "base/model.h"

#include <stddef.h>
#include <stdint.h>

#define GW_REASM_KEY_MAX 64

typedef struct gw_reasm_limits {
    unsigned max_open;    /* messages in progress at once (all stations) */
    unsigned max_packets; /* packets per message (SL651: 4095, HJ 212: 9999) */
    size_t max_message;   /* bytes per message */
    size_t max_total;     /* bytes over every message in progress */
    int64_t timeout_ms;   /* silence after the last packet that expires a message */
    int64_t max_age_ms;   /* age since the first packet that expires a message (0: none) */
} gw_reasm_limits;

typedef struct gw_reasm_stats {
    uint64_t packets;    /* packets accepted */
    uint64_t completed;  /* messages handed out */
    uint64_t timeouts;   /* messages expired with packets missing */
    uint64_t duplicates; /* packets received again (kept the first) */
    uint64_t restarted;  /* messages started over by a new packet 1 */
    uint64_t refused;    /* packets refused: a bound or an inconsistent total */
    uint64_t open;       /* messages in progress now (not monotonic) */
    uint64_t bytes;      /* bytes held now (not monotonic) */
} gw_reasm_stats;

typedef struct gw_reasm gw_reasm;

/* NULL on allocation failure or a zero limit. */
gw_reasm *gw_reasm_new(const gw_reasm_limits *lim);
void gw_reasm_free(gw_reasm *r);

/* Adds packet no (1..total) of message key with payload p[0..n). Returns:
 *   GW_EAGAIN   kept; the message is not complete yet;
 *   GW_OK       the message is complete: *out (malloc'd, caller frees) holds *out_len
 *               bytes, the payloads in packet order; the message is forgotten;
 *   GW_EFULL    refused by a bound (the message is dropped and counted);
 *   GW_EINVAL   no or total out of range, or total differs from the message's.
 * *out is NULL unless GW_OK. */
int gw_reasm_add(gw_reasm *r, const char *key, unsigned total, unsigned no, const uint8_t *p,
                 size_t n, int64_t now_ms, uint8_t **out, size_t *out_len);

/* The lowest packet number still missing from message key (0 when the key is not in
 * progress). *total receives the message's packet count when not NULL. */
unsigned gw_reasm_first_missing(const gw_reasm *r, const char *key, unsigned *total);

/* Forgets message key (e.g. the station disconnected for good); 1 when it existed. */
int gw_reasm_drop(gw_reasm *r, const char *key);

/* Expires messages past their time bounds. For each, cb (may be NULL) gets the key,
 * the packets received and the total, before the message is freed. Returns how many
 * expired. */
typedef void (*gw_reasm_expired_cb)(void *ctx, const char *key, unsigned have, unsigned total);
unsigned gw_reasm_expire(gw_reasm *r, int64_t now_ms, gw_reasm_expired_cb cb, void *ctx);

/* Earliest time at which gw_reasm_expire has something to do; INT64_MAX when idle. */
int64_t gw_reasm_next_deadline(const gw_reasm *r);

void gw_reasm_get_stats(const gw_reasm *r, gw_reasm_stats *out);

#endif
