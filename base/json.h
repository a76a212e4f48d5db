#ifndef GW_JSON_H
#define GW_JSON_H
/* The uplink items, written straight into a buffer (no tree: this is the hot
 * path). The shapes are documented in docs/uplink.md and docs/uplink.schema.json. */
#include "base/model.h"

#include <stddef.h>

typedef struct gw_jbuf {
    char *p;
    size_t len, cap;
    int overflow;
} gw_jbuf;

void gw_jbuf_init(gw_jbuf *b, char *mem, size_t cap);
void gw_json_raw(gw_jbuf *b, const char *s);
void gw_json_str(gw_jbuf *b, const char *s); /* quoted and escaped */
void gw_json_num(gw_jbuf *b, double v);      /* null when not finite */
void gw_json_time(gw_jbuf *b, int64_t ms);   /* "2026-11-23T15:40:00.123Z" */

/* What items say about their device: the type, and where it is as configured.
 * Strings are borrowed for the call; NULL or "" = not configured. */
typedef struct gw_json_dev {
    const char *type;
    const char *site_id, *site_name, *division, *address;
    double lon, lat;
    int has_location;
} gw_json_dev;

/* What an alarm transition says beyond the gw_alarm: the device, the metric's
 * unit, the rule's direction (0 above, 1 below) and the raise and clear
 * thresholds of the level (NAN when the rule has none), and the text built
 * from the rule's description. Pointers may be NULL. */
typedef struct gw_json_alarm_ext {
    const gw_json_dev *dev;
    const char *unit;
    int prev_level; /* the level before this transition */
    int dir;
    double raise, clear;
    const char *text;
} gw_json_alarm_ext;

/* The meaning of an alarm level in the national four-colour warning scale
 * (blue IV 一般 ... red I 特别严重), "" for 0. */
const char *gw_json_level_meaning(int level);

/* Each returns the length written, or GW_EFULL when cap was too small.
 * Readings carry the site id only (the device's birth message has the rest);
 * events and alarms carry the whole place, so nobody needs a join to act. */
int gw_json_reading(char *out, size_t cap, const char *gw, const gw_json_dev *dev,
                    const gw_reading *r);
int gw_json_event(char *out, size_t cap, const char *gw, const gw_json_dev *dev, const gw_event *e);
int gw_json_alarm(char *out, size_t cap, const char *gw, const gw_alarm *a,
                  const gw_json_alarm_ext *x);
/* `"site":"<id>","place":{...}` for dev (whatever is configured), with a
 * leading comma; nothing when dev has no place. */
void gw_json_place(gw_jbuf *b, const gw_json_dev *dev);
/* A forecast transition: a's id, rule, device, level, state, value, threshold,
 * times and detail with f's prediction. */
int gw_json_forecast(char *out, size_t cap, const char *gw, const gw_alarm *a,
                     const gw_forecast *f);

#endif
