#ifndef SIM_KIND_H
#define SIM_KIND_H
/* Device kinds (kinds.c, dev_*.c) and the running context (main.c). A kind is
 * one descriptor; kinds.c lists them. */
#include <stdint.h>

/* Only pointers to the scenario's types (sim/scenario.h): the parser looks
 * kinds up by name, so kind.h must not include it back. */
typedef struct sim_group sim_group;
typedef struct sim_scenario sim_scenario;

typedef struct sim_ctx sim_ctx; /* main.c: loop, clock, options */

typedef struct sim_kind {
    const char *name; /* the scenario's `protocol:` value */
    /* Binds every device of group g; 0 or a negative code (message on stderr). */
    int (*start)(sim_ctx *ctx, sim_group *g);
    /* Closes every handle of g (frees in close callbacks). */
    void (*stop)(sim_ctx *ctx, sim_group *g);
    /* Adds one JSON object per device of g to the cJSON array `devices`. */
    void (*stats)(sim_ctx *ctx, sim_group *g, void *devices);
    /* Frees what start allocated; called after the loop has closed every handle. */
    void (*destroy)(sim_ctx *ctx, sim_group *g);
    /* Non-zero for kinds whose devices connect out to the gateway: `port` is
     * then the gateway's port, shared by every device of the group. */
    int peer;
} sim_kind;

const sim_kind *sim_kind_find(const char *name);
extern const sim_kind sim_kind_modbus_tcp;
extern const sim_kind sim_kind_modbus_rtu;
extern const sim_kind sim_kind_modbus_dtu;
extern const sim_kind sim_kind_sl651;
extern const sim_kind sim_kind_hj212;
extern const sim_kind sim_kind_coap_smoke;
extern const sim_kind sim_kind_coap_cover;
extern const sim_kind sim_kind_mqtt_gauge;

struct uv_loop_s;
struct sim_ctx {
    struct uv_loop_s *loop;
    sim_scenario *scn;
    double speed;
    uint64_t t0_ns; /* uv_hrtime at start */
    int quiet;
    const char *bind; /* default host when a group names none */
    const char *stats_path;
    int park_listeners; /* too few descriptors: a connected device closes its listener */
};

/* Scenario time now, in seconds. */
double sim_now(const sim_ctx *ctx);

#endif
