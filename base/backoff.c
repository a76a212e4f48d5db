#include "base/backoff.h"

void gw_backoff_init(gw_backoff *b, int64_t min_ms, int64_t max_ms, uint64_t seed)
{
    b->min_ms = min_ms > 0 ? min_ms : 1;
    b->max_ms = max_ms >= b->min_ms ? max_ms : b->min_ms;
    b->attempt = 0;
    b->rng = seed ? seed : 0x9E3779B97F4A7C15ull;
}

static uint64_t next_rand(uint64_t *s)
{
    /* xorshift64*: jitter only, not security. */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

int64_t gw_backoff_next(gw_backoff *b)
{
    int64_t cap = b->min_ms;
    for (int i = 0; i < b->attempt && cap < b->max_ms; i++)
        cap *= 2;
    if (cap > b->max_ms)
        cap = b->max_ms;
    if (b->attempt < 62)
        b->attempt++;
    int64_t span = cap - b->min_ms;
    return b->min_ms + (span > 0 ? (int64_t)(next_rand(&b->rng) % (uint64_t)(span + 1)) : 0);
}

void gw_backoff_reset(gw_backoff *b)
{
    b->attempt = 0;
}
