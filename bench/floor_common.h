/* What the two floor pollers (floor_poller.c, libmodbus_floor.c) share: the
 * device ranges argument, the clock and the open-file limit. Header-only: each
 * floor is one cc line. */
#ifndef BENCH_FLOOR_COMMON_H
#define BENCH_FLOOR_COMMON_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define FLOOR_RANGES 64

/* RANGES: HOST:FIRST_PORT:N[,HOST:FIRST_PORT:N...] */
struct floor_ranges {
    char host[FLOOR_RANGES][64];
    int port[FLOOR_RANGES], count[FLOOR_RANGES], n, total;
};

static inline int floor_ranges_parse(struct floor_ranges *r, const char *arg, const char *who)
{
    char *s = strdup(arg), *tok, *save;
    r->n = r->total = 0;
    for (tok = strtok_r(s, ",", &save); tok && r->n < FLOOR_RANGES;
         tok = strtok_r(NULL, ",", &save)) {
        if (sscanf(tok, "%63[^:]:%d:%d", r->host[r->n], &r->port[r->n], &r->count[r->n]) != 3) {
            fprintf(stderr, "%s: bad range '%s'\n", who, tok);
            free(s);
            return -1;
        }
        r->total += r->count[r->n++];
    }
    free(s);
    return 0;
}

static inline int64_t floor_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* One socket per device: as many descriptors as the hard limit allows. */
static inline void floor_raise_nofile(void)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}
#endif
