#ifndef SIM_STATS_H
#define SIM_STATS_H
/* The stats file and CPU figures (stats.c). */
#include "sim/base.h"
#include "sim/kind.h"

#include <stdio.h>

/* Writes the stats JSON atomically (temp file + rename). */
int sim_stats_write(sim_ctx *ctx, const char *path);
/* Prints "sim: cpu user=.. sys=.. maxrss=.." to f. */
void sim_stats_print_cpu(FILE *f);

#endif
