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

/* Each returns the length written, or GW_EFULL when cap was too small. */
int gw_json_reading(char *out, size_t cap, const char *gw, const char *type, const gw_reading *r);
int gw_json_event(char *out, size_t cap, const char *gw, const char *type, const gw_event *e);
int gw_json_alarm(char *out, size_t cap, const char *gw, const gw_alarm *a);
/* A forecast transition: a's id, rule, device, level, state, value, threshold,
 * times and detail with f's prediction. */
int gw_json_forecast(char *out, size_t cap, const char *gw, const gw_alarm *a,
                     const gw_forecast *f);

#endif
