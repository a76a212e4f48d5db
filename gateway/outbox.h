#ifndef GW_OUTBOX_H
#define GW_OUTBOX_H
/* What a row of the outbox is, shared by the store and the salvage of a
 * corrupt outbox (gateway/salvage.c), which must not depend on the store. */

enum { GW_LANE_PRIO = 0, GW_LANE_TELE = 1, GW_LANES = 2 };

/* Row kinds: the uplink picks the topic from this. GW_KIND_LAST is the
 * highest kind a valid row carries. */
enum {
    GW_KIND_READING = 0,
    GW_KIND_EVENT = 1,
    GW_KIND_ALARM = 2,
    GW_KIND_FORECAST = 3,
    GW_KIND_LAST = GW_KIND_FORECAST
};

#endif
