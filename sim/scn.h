#ifndef SIM_SCN_H
#define SIM_SCN_H
/* Scenario keys as tables: what the scenario parser (scenario.c) offers the
 * scenario half of each device kind (scn_<kind>.c). A kind lists its group keys
 * as rows {name, type, where, range, default, meaning}; the parser applies the
 * defaults, checks types and ranges, and reports unknown and duplicate keys as
 * "file:line: why" with the valid choices. What a row cannot say (a list, a
 * value that depends on another key) goes to the kind's parse_key hook, checks
 * across keys to its finish hook. The same rows describe nested mappings
 * (registers, faults, factors, ...) through sim_scn_keys. */
#include <stddef.h>
#include <yaml.h>

#include "sim/curve.h"

/* Only pointers to the scenario's types: scenario.h is what the parser builds,
 * scn.h what it offers the kinds (scenario.c includes both). */
typedef struct sim_group sim_group;
typedef struct sim_scenario sim_scenario;
struct sim_run_conf;

typedef struct sim_scn sim_scn; /* the parser's state: file, document, error buffer */

typedef enum {
    SIM_K_END = 0,
    SIM_K_STR,    /* char[size]: a string shorter than size */
    SIM_K_INT,    /* an integer in min..max, into a field of size 1, 2, 4 or 8 bytes */
    SIM_K_NUM,    /* double: a number or a duration (30s, 10m); with range: min..max */
    SIM_K_BOOL,   /* int: true or false (yes/no, on/off) */
    SIM_K_ENUM,   /* int: the value of one of choices */
    SIM_K_CURVE,  /* sim_curve: a number or a list (a constant) or a curve mapping */
    SIM_K_HOOK,   /* the hook parses it (a list, several fields, a check on the text) */
    SIM_K_UNUSED, /* a key this kind does not use: an error saying so, with what = the hint */
} sim_key_type;

typedef struct sim_key_choice {
    const char *name;
    int value;
} sim_key_choice;

typedef struct sim_key {
    const char *name;
    sim_key_type type;
    size_t off, size;              /* the field, in the struct the table points into */
    double min, max;               /* SIM_K_INT; SIM_K_NUM when range is set */
    const char *range;             /* SIM_K_NUM: the range as errors say it ("1ms..10s") */
    const sim_key_choice *choices; /* SIM_K_ENUM: ends with {NULL} */
    const char *dflt;              /* parsed as a value before the mapping's keys; NULL = 0 */
    const char *what;              /* its meaning, one line */
    int id;        /* SIM_K_HOOK: which key, for the hook's switch; unique among a kind's tables
                    * (the shared tables of scn_modbus.c, scn_station.c, scn_peer.c take ids
                    * below 100, a kind's own table 100 and up) */
    uint32_t only; /* bit mask of variants (fault types) having it; 0 = all */
} sim_key;

/* Rows, one per line of a table. T is the struct the table points into. */
#define SIM_KEY_STR(n, T, f, d, w)                                                                 \
    {                                                                                              \
        .name = n, .type = SIM_K_STR, .off = offsetof(T, f), .size = sizeof(((T *)0)->f),          \
        .dflt = d, .what = w                                                                       \
    }
#define SIM_KEY_INT(n, T, f, lo, hi, d, w)                                                         \
    {                                                                                              \
        .name = n, .type = SIM_K_INT, .off = offsetof(T, f), .size = sizeof(((T *)0)->f),          \
        .min = lo, .max = hi, .dflt = d, .what = w                                                 \
    }
#define SIM_KEY_NUM(n, T, f, d, w)                                                                 \
    {                                                                                              \
        .name = n, .type = SIM_K_NUM, .off = offsetof(T, f), .dflt = d, .what = w                  \
    }
#define SIM_KEY_RANGE(n, T, f, lo, hi, r, d, w)                                                    \
    {                                                                                              \
        .name = n, .type = SIM_K_NUM, .off = offsetof(T, f), .min = lo, .max = hi, .range = r,     \
        .dflt = d, .what = w                                                                       \
    }
#define SIM_KEY_BOOL(n, T, f, d, w)                                                                \
    {                                                                                              \
        .name = n, .type = SIM_K_BOOL, .off = offsetof(T, f), .dflt = d, .what = w                 \
    }
#define SIM_KEY_ENUM(n, T, f, ch, d, w)                                                            \
    {                                                                                              \
        .name = n, .type = SIM_K_ENUM, .off = offsetof(T, f), .choices = ch, .dflt = d, .what = w  \
    }
#define SIM_KEY_CURVE(n, T, f, w)                                                                  \
    {                                                                                              \
        .name = n, .type = SIM_K_CURVE, .off = offsetof(T, f), .what = w                           \
    }
#define SIM_KEY_HOOK(n, i, w)                                                                      \
    {                                                                                              \
        .name = n, .type = SIM_K_HOOK, .id = i, .what = w                                          \
    }
/* Rows some variants have (only: a mask of 1 << variant, e.g. fault types). */
#define SIM_KEY_INT_FOR(only_, n, T, f, lo, hi, d, w)                                              \
    {                                                                                              \
        .name = n, .type = SIM_K_INT, .off = offsetof(T, f), .size = sizeof(((T *)0)->f),          \
        .min = lo, .max = hi, .dflt = d, .what = w, .only = only_                                  \
    }
#define SIM_KEY_RANGE_FOR(only_, n, T, f, lo, hi, r, d, w)                                         \
    {                                                                                              \
        .name = n, .type = SIM_K_NUM, .off = offsetof(T, f), .min = lo, .max = hi, .range = r,     \
        .dflt = d, .what = w, .only = only_                                                        \
    }
#define SIM_KEY_HOOK_FOR(only_, n, i, w)                                                           \
    {                                                                                              \
        .name = n, .type = SIM_K_HOOK, .id = i, .what = w, .only = only_                           \
    }
#define SIM_KEY_UNUSED(n, w)                                                                       \
    {                                                                                              \
        .name = n, .type = SIM_K_UNUSED, .what = w                                                 \
    }

/* A table and the struct its rows point into (NULL: the group itself). */
typedef struct sim_keytab {
    void *(*conf)(sim_group *g);
    const sim_key *keys; /* ends with a row of type SIM_K_END */
} sim_keytab;

/* The scenario half of a device kind; its runtime half is the sim_kind of the
 * same name (kind.h). One line in scenario.c's table lists it. */
typedef struct sim_scn_kind {
    const char *name;          /* the `protocol:` value */
    const sim_keytab *tabs[4]; /* the kind's keys besides id/count/first/protocol; NULL-ended */
    /* Allocates what the tables point into (g->rtu, g->peer); NULL = nothing to do. */
    int (*init)(sim_scn *c, sim_group *g);
    /* A SIM_K_HOOK row k, or (k NULL) a key of no table: 1 taken, 0 unknown, or an error. */
    int (*parse_key)(sim_scn *c, sim_group *g, const sim_key *k, yaml_node_t *kn, yaml_node_t *vn);
    /* After every key of group mapping m: defaults that depend on other keys, checks. */
    int (*finish)(sim_scn *c, sim_group *g, yaml_node_t *m);
    /* Once the groups are read (checks across groups); may be NULL. devs: the list. */
    int (*check)(sim_scn *c, sim_scenario *s, yaml_node_t *devs);
} sim_scn_kind;

extern const sim_scn_kind sim_scn_modbus_tcp, sim_scn_modbus_rtu, sim_scn_modbus_dtu;
extern const sim_scn_kind sim_scn_sl651, sim_scn_hj212, sim_scn_coap_smoke, sim_scn_mqtt_gauge;
extern const sim_scn_kind sim_scn_coap_cover;

/* ---- what scenario.c offers the kinds ---- */

/* Writes "file:line: why" (the line of node n) and returns SIM_EINVAL. */
int sim_scn_err(sim_scn *c, yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *sim_scn_file_dir(const sim_scn *c); /* the scenario's folder, or NULL */
yaml_node_t *sim_scn_node(sim_scn *c, int i);
/* The text of a scalar node, or NULL. */
const char *sim_scn_scalar(const yaml_node_t *n);
int sim_scn_line(const yaml_node_t *n);
/* The value of key in mapping m, or NULL. */
yaml_node_t *sim_scn_get(sim_scn *c, yaml_node_t *m, const char *key);
/* Items of a sequence node: *items and the count; SIM_EINVAL (with what in the
 * message) if n is not a sequence. */
int sim_scn_seq(sim_scn *c, yaml_node_t *n, const char *what, yaml_node_item_t **items, int *count);
/* Typed values; errors name key. */
int sim_scn_num(sim_scn *c, yaml_node_t *n, const char *key, double *out);
int sim_scn_int(sim_scn *c, yaml_node_t *n, const char *key, long lo, long hi, long *out);
int sim_scn_bool(sim_scn *c, yaml_node_t *n, const char *key, int *out);
int sim_scn_str(sim_scn *c, yaml_node_t *n, const char *key, char *out, size_t cap);
/* A number or a list (a constant curve) or a curve mapping, into an unset curve. */
int sim_scn_curve(sim_scn *c, yaml_node_t *n, const char *key, sim_curve *cv);
/* Hex bytes ("7E 01 0A", "7e010a"; ':' or '-' between bytes allowed): length or SIM_EINVAL. */
int sim_scn_hex(const char *s, uint8_t *out, size_t cap);

typedef int (*sim_key_hook)(sim_scn *c, void *arg, const sim_key *k, yaml_node_t *kn,
                            yaml_node_t *vn);
/* Reads mapping m against keys (rows with `only` set count when only & variant):
 * defaults first, then every key; SIM_K_HOOK rows go to hook(c, arg, ...).
 * Unknown and duplicate keys are errors naming `what` ("fault late") and the
 * valid keys. */
int sim_scn_keys(sim_scn *c, yaml_node_t *m, const char *what, const sim_key *keys, void *conf,
                 uint32_t variant, sim_key_hook hook, void *arg);
typedef int (*sim_scn_item_fn)(sim_scn *c, yaml_node_t *m, void *item, int i, void *arg);
/* Reads list seq into a new array of item_size-byte items (zeroed; at least
 * one, so an empty list is not NULL), calling fn(c, node, item, i, arg) for
 * each. *out and *n are set before the items are read, so the caller's free
 * copes with a failure half-way. expected: the error for a node that is not a
 * list ("faults: expected a list"). */
int sim_scn_list(sim_scn *c, yaml_node_t *seq, const char *expected, size_t item_size, void **out,
                 int *n, sim_scn_item_fn fn, void *arg);
/* A mapping whose keys depend on its `type`, one of variants (faults): reads it
 * against the rows of that variant (only: 1 << the type's value), naming it
 * "<what> <type>" in errors. */
int sim_scn_typed(sim_scn *c, yaml_node_t *m, const char *what, const sim_key_choice *variants,
                  const sim_key *keys, void *conf, sim_key_hook hook, void *arg);
/* Index of s in choices, or -1. */
int sim_scn_choice(const sim_key_choice *choices, const char *s);
/* Line of the first key of m that is a row of keys (except `except`), 0 if none. */
int sim_scn_first_line(sim_scn *c, yaml_node_t *m, const sim_key *keys, const char *except);
/* 1 if k is a key of the named kind (its tables), else 0. */
int sim_scn_kind_has(const char *kind, const char *k);

/* ---- shared by several kinds ---- */

/* scn_modbus.c: unit, registers, faults of the Modbus kinds. */
extern const sim_keytab sim_scn_mbdev_keys;
int sim_scn_mbdev_key(sim_scn *c, sim_group *g, const sim_key *k, yaml_node_t *kn, yaml_node_t *vn);
/* scn_station.c: keys both dialing station kinds have; their init and faults. */
extern const sim_keytab sim_scn_station_keys;
int sim_scn_station_init(sim_scn *c, sim_group *g);
int sim_scn_station_key(sim_scn *c, sim_group *g, const sim_key *k, yaml_node_t *kn,
                        yaml_node_t *vn);
int sim_scn_station_finish(sim_scn *c, sim_group *g, yaml_node_t *m);
void *sim_scn_station_conf(sim_group *g);
/* scn_peer.c: keys both peer kinds have (host, port; spread, events). */
extern const sim_keytab sim_scn_peer_addr_keys, sim_scn_peer_keys;
int sim_scn_peer_init(sim_scn *c, sim_group *g);
int sim_scn_peer_key(sim_scn *c, sim_group *g, const sim_key *k, yaml_node_t *kn, yaml_node_t *vn);
int sim_scn_peer_finish(sim_scn *c, sim_group *g, yaml_node_t *m);
void *sim_scn_peer_conf(sim_group *g);
/* Checks that a template expands for the group's first and last device. */
int sim_scn_peer_tmpl(sim_scn *c, yaml_node_t *at, const sim_group *g, const char *key,
                      const char *tmpl, int imei_digits);
int sim_scn_json_name_ok(const char *s);
/* scn_run.c: the rehearsal keys (platform, gateway, ...), once the devices are known. */
typedef struct sim_scn_run_nodes {
    yaml_node_t *platform, *gateway, *broker, *duration, *speed, *sites, *metrics, *expect;
} sim_scn_run_nodes;
int sim_scn_run_key(sim_scn_run_nodes *rn, const char *k, yaml_node_t *vn);
int sim_scn_run_parse(sim_scn *c, sim_scenario *s, const sim_scn_run_nodes *rn);
void sim_scn_run_free(struct sim_run_conf *rc);

#endif
