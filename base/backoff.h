#ifndef GW_BACKOFF_H
#define GW_BACKOFF_H
/* Capped exponential backoff with full jitter, owned by the core: modules
 * report failures and the core decides when to try again. */
#include <stdint.h>

typedef struct gw_backoff {
    int64_t min_ms, max_ms;
    int attempt;
    uint64_t rng;
} gw_backoff;

void gw_backoff_init(gw_backoff *b, int64_t min_ms, int64_t max_ms, uint64_t seed);
/* Delay before the next attempt: uniform in [min, min(max, min*2^attempt)]. */
int64_t gw_backoff_next(gw_backoff *b);
void gw_backoff_reset(gw_backoff *b);

#endif
