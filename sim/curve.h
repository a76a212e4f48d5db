#ifndef SIM_CURVE_H
#define SIM_CURVE_H
/* Scenario-time curves: constant, ramp, sine, random_walk, storm, points
 * (curve.c); pure. */
#include "sim/base.h"

typedef enum {
    SIM_C_NONE = 0, /* no curve: reads 0 unless written */
    SIM_C_CONSTANT,
    SIM_C_RAMP,
    SIM_C_SINE,
    SIM_C_RANDOM_WALK,
    SIM_C_STORM,
    SIM_C_POINTS, /* also csv: loaded into points */
} sim_curve_kind;

/* A curve parameter: one value, or a list where device k takes v[k % n]. */
typedef struct sim_param {
    int n;     /* 0 = unset */
    double *v; /* owned; n values */
} sim_param;

enum {
    SIM_P_VALUE = 0, /* constant */
    SIM_P_FROM,      /* ramp */
    SIM_P_TO,
    SIM_P_OVER,
    SIM_P_MEAN, /* sine */
    SIM_P_AMPLITUDE,
    SIM_P_PERIOD,
    SIM_P_PHASE,
    SIM_P_START, /* random_walk start value; storm/ramp start time */
    SIM_P_STEP,
    SIM_P_MIN,
    SIM_P_MAX,
    SIM_P_EVERY,
    SIM_P_SEED,
    SIM_P_BASE, /* storm */
    SIM_P_PEAK,
    SIM_P_RISE,
    SIM_P_HOLD,
    SIM_P_FALL,
    SIM_P_JITTER,
    SIM_P_REPEAT, /* any curve: scenario time is taken modulo this */
    SIM_P__COUNT
};

typedef struct sim_curve {
    sim_curve_kind kind;
    sim_param p[SIM_P__COUNT];
    int npoints; /* points/csv: times (s) ascending, values */
    double *pt_t;
    double *pt_v;
} sim_curve;

/* Per device, per register state a stateful curve (random_walk) keeps. */
typedef struct sim_curve_state {
    int64_t step; /* last step evaluated; -1 = none yet */
    double value;
} sim_curve_state;

/* Value of curve c at scenario time t (seconds) for device index k. st may be
 * NULL for stateless curves; random_walk needs it and only moves forward. */
double sim_curve_eval(const sim_curve *c, double t, uint32_t k, sim_curve_state *st);
double sim_param_get(const sim_param *p, uint32_t k, double dflt);
void sim_curve_free(sim_curve *c);

#endif
