#ifndef GW_DESTFILTER_H
#define GW_DESTFILTER_H
/* A destination's filter over outbox rows: a row is one or more item JSON
 * objects separated by ',' (docs/uplink.md); an item passes when, for each of
 * the filter's lists that is not empty and whose field the item carries, the
 * item's value is listed: "type" (device type), "site" (its "id" when the
 * value is an object, else the string) and "metric". Pure code. */
#include "gateway/uplink_conf.h"

#include <stddef.h>
#include <stdint.h>

/* Copies the items of row [row, row+len) that pass f to out (room for len
 * bytes), separated by ','; adds the items left out to *dropped. Returns the
 * bytes written: 0 when nothing in the row is for this destination. */
size_t gw_destfilter_keep(const gw_uplink_filter *f, const char *row, size_t len, char *out,
                          uint64_t *dropped);

#endif
