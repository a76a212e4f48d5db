/* Micro-benchmark: SL651 frames parsed (CRC checked) and decoded per second, single core,
 * on the published test report (vectors/sl651.txt frame 2: 4 elements, 60 bytes).
 * Build: cc -O2 -I. bench/sl651_decode_bench.c protocols/sl651_codec.c
 *        protocols/sl651_body.c base/model.c -o build/sl651_decode_bench
 * Usage: build/sl651_decode_bench [iterations]   (default 5,000,000) */
#include "protocols/sl651.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static const uint8_t frame2[] = {
    0x7E, 0x7E, 0x01, 0x00, 0x12, 0x34, 0x56, 0x78, 0x12, 0x34, 0x30, 0x00, 0x2B, 0x02, 0x00,
    0x03, 0x59, 0x10, 0x11, 0x15, 0x49, 0x47, 0xF1, 0xF1, 0x00, 0x12, 0x34, 0x56, 0x78, 0x48,
    0xF0, 0xF0, 0x59, 0x10, 0x11, 0x15, 0x49, 0x20, 0x19, 0x00, 0x00, 0x05, 0x26, 0x19, 0x00,
    0x00, 0x05, 0x39, 0x23, 0x00, 0x00, 0x01, 0x27, 0x38, 0x12, 0x11, 0x15, 0x03, 0x20, 0xFA};

static int on_reading(void *ctx, const gw_reading *r)
{
    double *sum = ctx;
    *sum += r->value;
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? strtol(argv[1], NULL, 10) : 5000000;
    if (iters <= 0)
        iters = 5000000;
    double sum = 0;
    gw_sink sink = {on_reading, NULL, &sum};
    gw_sl651_station_cfg cfg = {0};
    long ok = 0;
    double t0 = now_s();
    for (long i = 0; i < iters; i++) {
        gw_sl651_frame f;
        gw_sl651_report rep;
        if (gw_sl651_frame_parse(frame2, sizeof frame2, &f, NULL) > 0 &&
            gw_sl651_decode(&f, &cfg, &sink, &rep) == GW_OK)
            ok++;
    }
    double dt = now_s() - t0;
    if (ok != iters) {
        fprintf(stderr, "decode failed (%ld of %ld ok)\n", ok, iters);
        return 1;
    }
    printf("sl651 decode: %ld frames in %.3f s = %.0f frames/s (%.1f ns/frame, checksum %.3f)\n",
           iters, dt, iters / dt, dt * 1e9 / iters, sum / iters);
    return 0;
}
