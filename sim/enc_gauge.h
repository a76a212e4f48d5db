#ifndef SIM_ENC_GAUGE_H
#define SIM_ENC_GAUGE_H
/* Id/topic/key templates (sim_expand, in scn_peer.c) and gauge JSON payloads
 * (enc_gauge.c); pure. */
#include "sim/base.h"

/* Expands a template: {id}, {imei} and {n}, {n:05}, {n:5} (as sim_format_id).
 * id or imei may be NULL when the template may not use them. Returns the
 * length, or SIM_EINVAL (unknown or unterminated placeholder, too long). */
int sim_expand(const char *tmpl, uint32_t n, const char *id, const char *imei, char *out,
               size_t cap);

enum { SIM_TS_ISO = 0, SIM_TS_EPOCH, SIM_TS_EPOCH_MS, SIM_TS_NONE };

typedef struct sim_gauge_value {
    const char *name; /* a JSON-safe name: checked by the scenario parser */
    double value;     /* NaN or infinite: written as null */
    int decimals;     /* 0..9 */
} sim_gauge_value;

typedef struct sim_gauge_msg {
    const char *ts_field; /* e.g. "ts" */
    int ts_format;        /* SIM_TS_* */
    int64_t ts_ms;        /* Unix time in ms */
    const char *id_field; /* NULL or "" = no id field */
    const char *id;
    const sim_gauge_value *v;
    int nv;
    int malformed; /* cut the JSON short after the last field's name */
} sim_gauge_msg;

/* Writes the JSON payload {"ts": ..., "id": ..., "<name>": value, ...} into
 * out (NUL-terminated). Returns its length, or SIM_EINVAL if cap is too
 * small. */
int sim_gauge_payload(const sim_gauge_msg *m, char *out, size_t cap);

#endif
