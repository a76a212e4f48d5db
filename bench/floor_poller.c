/* The floor: the simplest C poller doing the gateway's Modbus TCP reads, so
 * the benchmark can say how much the gateway costs per reading on top of the
 * unavoidable work. epoll, hand-built frames, one request in flight per
 * connection, polls spread over the interval, a 2 ms tick serving everything
 * due and every ready socket per wake-up. Decodes the registers (sums them)
 * and does nothing else: no pipeline, no storage, no uplink.
 *
 *   floor_poller RANGES [REGS=16] [SECONDS=20] [INTERVAL_MS=1000] [WARMUP_S=3]
 *   RANGES: HOST:FIRST_PORT:N[,HOST:FIRST_PORT:N...] (ports FIRST_PORT .. +N-1 on HOST)
 *
 * Prints one line: polls, answers, readings, cpu_ms, cpu_ms_per_1000_readings,
 * late_p99_ms, maxrss_kib — over the measured window after the warm-up.
 * Build: cc -O2 -o build/floor_poller bench/floor_poller.c -lm */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "floor_common.h"

struct conn {
    int fd;
    int64_t due_us;
    int busy;
    uint16_t tid;
    uint8_t buf[512];
    size_t len;
};

static uint64_t hist[1001]; /* lateness by ms, last bucket >= 1 s */
static uint64_t polls, answers, readings, sink;
static int measuring;

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: floor_poller HOST:PORT:N[,HOST:PORT:N...] [REGS] [SECONDS] "
                        "[INTERVAL_MS] [WARMUP_S]\n");
        return 2;
    }
    int regs = argc > 2 ? atoi(argv[2]) : 16;
    int seconds = argc > 3 ? atoi(argv[3]) : 20;
    int64_t interval = (argc > 4 ? atoi(argv[4]) : 1000) * 1000LL;
    int warmup = argc > 5 ? atoi(argv[5]) : 3;
    struct floor_ranges rg;
    if (floor_ranges_parse(&rg, argv[1], "floor"))
        return 2;
    int n = rg.total;
    floor_raise_nofile();
    struct conn *c = calloc((size_t)n, sizeof(*c));
    int ep = epoll_create1(0);
    int64_t t0 = floor_now_us();
    int k = 0;
    for (int r = 0; r < rg.n; r++)
        for (int i = 0; i < rg.count[r]; i++, k++) {
            struct sockaddr_in sa = {.sin_family = AF_INET,
                                     .sin_port = htons((uint16_t)(rg.port[r] + i))};
            inet_pton(AF_INET, rg.host[r], &sa.sin_addr);
            c[k].fd = socket(AF_INET, SOCK_STREAM, 0);
            if (c[k].fd < 0 || connect(c[k].fd, (struct sockaddr *)&sa, sizeof(sa))) {
                fprintf(stderr, "floor: connect to port %d: %s\n", rg.port[r] + i, strerror(errno));
                return 1;
            }
            int one = 1;
            setsockopt(c[k].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            fcntl(c[k].fd, F_SETFL, O_NONBLOCK);
            struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)k};
            epoll_ctl(ep, EPOLL_CTL_ADD, c[k].fd, &ev);
            c[k].due_us = t0 + 100000 + interval * k / n; /* spread over the interval */
        }
    int64_t start = floor_now_us() + warmup * 1000000LL, end = start + seconds * 1000000LL;
    struct rusage ru0, ru1;
    struct epoll_event evs[512];
    size_t want = 9 + 2 * (size_t)regs;
    /* Devices sorted by due time: a round-robin cursor suffices since all
     * share one interval and due times stay in phase order. */
    int cursor = 0;
    for (;;) {
        int64_t now = floor_now_us();
        if (!measuring && now >= start) {
            measuring = 1;
            getrusage(RUSAGE_SELF, &ru0);
        }
        if (now >= end)
            break;
        for (int guard = 0; guard < n && c[cursor].due_us <= now; guard++) {
            struct conn *x = &c[cursor];
            if (!x->busy) {
                uint8_t f[12] = {0, 0, 0, 0, 0, 6, 1, 3, 0, 0, 0, (uint8_t)regs};
                x->tid++;
                f[0] = (uint8_t)(x->tid >> 8);
                f[1] = (uint8_t)x->tid;
                if (write(x->fd, f, sizeof(f)) == (ssize_t)sizeof(f)) {
                    x->busy = 1;
                    if (measuring) {
                        int64_t late = (now - x->due_us) / 1000;
                        hist[late < 1000 ? late : 1000]++;
                        polls++;
                    }
                }
            }
            x->due_us += interval;
            cursor = (cursor + 1) % n;
        }
        int nev = epoll_wait(ep, evs, 512, 2);
        for (int i = 0; i < nev; i++) {
            struct conn *x = &c[evs[i].data.u32];
            ssize_t r = read(x->fd, x->buf + x->len, sizeof(x->buf) - x->len);
            if (r <= 0)
                continue;
            x->len += (size_t)r;
            if (x->len >= want) {
                if (x->buf[7] == 3 && x->buf[8] == 2 * regs) {
                    for (int j = 0; j < regs; j++)
                        sink += (uint16_t)(x->buf[9 + 2 * j] << 8 | x->buf[10 + 2 * j]);
                    if (measuring) {
                        answers++;
                        readings += (uint64_t)regs;
                    }
                }
                x->len = 0;
                x->busy = 0;
            }
        }
    }
    getrusage(RUSAGE_SELF, &ru1);
    double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) * 1000 +
                 (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1000 +
                 (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) * 1000 +
                 (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1000;
    uint64_t acc = 0, p99 = 0;
    for (int i = 0; i <= 1000; i++) {
        acc += hist[i];
        if (acc * 100 >= polls * 99) {
            p99 = (uint64_t)i + 1;
            break;
        }
    }
    printf("floor polls=%llu answers=%llu readings=%llu cpu_ms=%.0f cpu_ms_per_1000=%.2f "
           "late_p99_ms=%llu maxrss_kib=%ld seconds=%d (sum %llu)\n",
           (unsigned long long)polls, (unsigned long long)answers, (unsigned long long)readings,
           cpu, readings ? cpu * 1000.0 / (double)readings : 0.0, (unsigned long long)p99,
           ru1.ru_maxrss, seconds, (unsigned long long)(sink & 1));
    return 0;
}
