/* libFuzzer target for the page-level outbox salvage: the input is the whole
 * file. Run as is, and again with a valid 512-byte-page header laid over its
 * first 100 bytes (so the freelist, schema and tree walks are reached without
 * the fuzzer having to find the magic). Every row handed out must lie inside
 * the limits the parser promises. */
// FUZZ_SOURCES: gateway/salvage.c
// FUZZ_LIBS:
#include "gateway/salvage.h"
#include "gateway/store.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct file {
    const uint8_t *data;
    size_t size;
    unsigned rows;
};

static int rd(void *ctx, uint64_t off, void *buf, size_t n)
{
    const struct file *f = ctx;
    if (off > f->size || n > f->size - off)
        return -1;
    memcpy(buf, f->data + off, n);
    return 0;
}

static int row(void *ctx, const gw_salvage_row *r)
{
    struct file *f = ctx;
    if ((r->lane != GW_LANE_PRIO && r->lane != GW_LANE_TELE) || r->id <= 0 || r->seq < 0 ||
        r->kind < GW_KIND_READING || r->kind > GW_KIND_LAST || r->len > GW_SALVAGE_MAX_PAYLOAD)
        abort();
    if (r->lane == GW_LANE_TELE && r->kind != GW_KIND_READING)
        abort(); /* an event or alarm never goes to telemetry */
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < r->len; i++)
        sink ^= r->payload[i]; /* every byte handed out is readable */
    (void)sink;
    return ++f->rows > 100000;
}

static void scan(const uint8_t *data, size_t size)
{
    struct file f = {data, size, 0};
    gw_salvage_io io = {.size = size, .read = rd, .row = row, .ctx = &f};
    gw_salvage_stats st;
    int rc = gw_salvage_pages(&io, &st);
    if (rc != 0 && rc != -3)
        abort();
    if (rc == 0 && st.rows != f.rows)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20))
        return 0;
    scan(data, size);
    if (size >= 512) {
        uint8_t *c = malloc(size);
        if (!c)
            return 0;
        memcpy(c, data, size);
        memcpy(c, "SQLite format 3", 16);
        c[16] = 0x02, c[17] = 0x00; /* 512-byte pages */
        c[20] = data[20] & 31;      /* a few reserved bytes */
        scan(c, size);
        free(c);
    }
    return 0;
}
