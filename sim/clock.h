#ifndef SIM_CLOCK_H
#define SIM_CLOCK_H
/* A station's clock, broken down (dial.c). */
#include "sim/base.h"

/* Station clock time, broken down (the clock already in local time). */
typedef struct sim_dt {
    int year, mon, day, hour, min, sec, ms;
} sim_dt;
/* Seconds since 1970 (a station clock, no zone applied) -> fields. */
void sim_dt_from_secs(double secs, sim_dt *out);

#endif
