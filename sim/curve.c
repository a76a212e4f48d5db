/* Scenario-time curves: what value a device reports at time t. Pure: time is
 * an argument, randomness is a hash of (seed, device, step) so a run can be
 * repeated exactly. */
#include "sim/curve.h"

#include <math.h>
#include <stdlib.h>

double sim_param_get(const sim_param *p, uint32_t k, double dflt)
{
    if (!p || p->n <= 0 || !p->v)
        return dflt;
    return p->v[k % (uint32_t)p->n];
}

static uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Uniform in [0, 1) from three integers. */
static double unit_hash(uint64_t seed, uint64_t k, uint64_t i)
{
    uint64_t h = mix(mix(mix(seed) ^ k) ^ i);
    return (double)(h >> 11) * (1.0 / 9007199254740992.0);
}

#define P(c, id, k, d) sim_param_get(&(c)->p[id], (k), (d))

static double storm(const sim_curve *c, double t, uint32_t k)
{
    double base = P(c, SIM_P_BASE, k, 0), peak = P(c, SIM_P_PEAK, k, 1);
    double start = P(c, SIM_P_START, k, 0), rise = P(c, SIM_P_RISE, k, 60);
    double hold = P(c, SIM_P_HOLD, k, 0), fall = P(c, SIM_P_FALL, k, 60);
    double jitter = P(c, SIM_P_JITTER, k, 0);
    if (jitter != 0) {
        double u = unit_hash((uint64_t)P(c, SIM_P_SEED, k, 1), k, 0);
        peak = base + (peak - base) * (1 + jitter * (2 * u - 1));
    }
    t -= start;
    if (t <= 0)
        return base;
    if (t < rise)
        return base + (peak - base) * (t / rise);
    t -= rise;
    if (t < hold)
        return peak;
    t -= hold;
    if (t < fall)
        return peak - (peak - base) * (t / fall);
    return base;
}

static double points(const sim_curve *c, double t)
{
    int n = c->npoints;
    if (n <= 0)
        return 0;
    if (t <= c->pt_t[0])
        return c->pt_v[0];
    if (t >= c->pt_t[n - 1])
        return c->pt_v[n - 1];
    int lo = 0, hi = n - 1; /* pt_t[lo] <= t < pt_t[hi] */
    while (hi - lo > 1) {
        int mid = lo + (hi - lo) / 2;
        if (c->pt_t[mid] <= t)
            lo = mid;
        else
            hi = mid;
    }
    double dt = c->pt_t[hi] - c->pt_t[lo];
    if (dt <= 0)
        return c->pt_v[hi];
    return c->pt_v[lo] + (c->pt_v[hi] - c->pt_v[lo]) * ((t - c->pt_t[lo]) / dt);
}

static double random_walk(const sim_curve *c, double t, uint32_t k, sim_curve_state *st)
{
    double start = P(c, SIM_P_START, k, 0), step = P(c, SIM_P_STEP, k, 1);
    double lo = P(c, SIM_P_MIN, k, -INFINITY), hi = P(c, SIM_P_MAX, k, INFINITY);
    double every = P(c, SIM_P_EVERY, k, 1);
    uint64_t seed = (uint64_t)P(c, SIM_P_SEED, k, 1);
    sim_curve_state local = {-1, 0};
    if (!st)
        st = &local;
    if (every <= 0)
        every = 1;
    int64_t i = t <= 0 ? 0 : (int64_t)(t / every);
    if (st->step < 0 || i < st->step) {
        st->step = 0;
        st->value = start < lo ? lo : start > hi ? hi : start;
    }
    while (st->step < i) {
        st->step++;
        double v = st->value + step * (2 * unit_hash(seed, k, (uint64_t)st->step) - 1);
        st->value = v < lo ? lo : v > hi ? hi : v;
    }
    return st->value;
}

double sim_curve_eval(const sim_curve *c, double t, uint32_t k, sim_curve_state *st)
{
    double rep = P(c, SIM_P_REPEAT, k, 0);
    if (rep > 0 && t >= 0)
        t = fmod(t, rep);
    switch (c->kind) {
    case SIM_C_NONE:
        return 0;
    case SIM_C_CONSTANT:
        return P(c, SIM_P_VALUE, k, 0);
    case SIM_C_RAMP: {
        double from = P(c, SIM_P_FROM, k, 0), to = P(c, SIM_P_TO, k, 1);
        double over = P(c, SIM_P_OVER, k, 60), start = P(c, SIM_P_START, k, 0);
        double x = t - start;
        if (x <= 0)
            return from;
        if (over <= 0 || x >= over)
            return to;
        return from + (to - from) * (x / over);
    }
    case SIM_C_SINE: {
        double mean = P(c, SIM_P_MEAN, k, 0), amp = P(c, SIM_P_AMPLITUDE, k, 1);
        double period = P(c, SIM_P_PERIOD, k, 60), phase = P(c, SIM_P_PHASE, k, 0);
        if (period <= 0)
            return mean;
        return mean + amp * sin(2 * M_PI * (t + phase) / period);
    }
    case SIM_C_RANDOM_WALK:
        return random_walk(c, t, k, st);
    case SIM_C_STORM:
        return storm(c, t, k);
    case SIM_C_POINTS:
        return points(c, t);
    }
    return 0;
}

void sim_curve_free(sim_curve *c)
{
    for (int i = 0; i < SIM_P__COUNT; i++) {
        free(c->p[i].v);
        c->p[i].v = NULL;
        c->p[i].n = 0;
    }
    free(c->pt_t);
    free(c->pt_v);
    c->pt_t = c->pt_v = NULL;
    c->npoints = 0;
}
