/* A load of simulated SL651 RTUs for bench/sl651_e2e.sh: N TCP connections to
 * the gateway, each sending one HEX timed report (function 32, four elements)
 * per second, spread over the second, and reading the M2 confirms.
 *
 *   sl651_rtu_load PORT N SECONDS
 *
 * Station addresses are 00 99 xx xx xx with xxxxxx = the index in BCD, password
 * 1234. Prints frames sent, confirms received and confirm latency percentiles.
 * Written for the benchmark only: plain epoll, no gateway code. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CONFIRM_LEN 25

struct rtu {
    int fd;
    uint16_t serial;
    int64_t sent_at; /* ms of the frame waiting for its confirm, 0 when none */
    size_t have;
    uint8_t rbuf[256];
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint16_t crc16(const uint8_t *p, size_t n)
{
    uint16_t r = 0xFFFF;
    for (size_t i = 0; i < n; i++) {
        r ^= p[i];
        for (int b = 0; b < 8; b++)
            r = (r & 1) ? (uint16_t)((r >> 1) ^ 0xA001) : (uint16_t)(r >> 1);
    }
    return r;
}

static uint8_t bcd(int v)
{
    return (uint8_t)((v / 10) << 4 | (v % 10));
}

static size_t build(uint8_t *f, int idx, uint16_t serial, int level_mm)
{
    time_t t = time(NULL) + 8 * 3600;
    struct tm tm;
    gmtime_r(&t, &tm);
    uint8_t st[5] = {0x00, 0x99, bcd(idx / 10000 % 100), bcd(idx / 100 % 100), bcd(idx % 100)};
    uint8_t tt[6] = {bcd(tm.tm_year % 100), bcd(tm.tm_mon + 1), bcd(tm.tm_mday),
                     bcd(tm.tm_hour),       bcd(tm.tm_min),     bcd(tm.tm_sec)};
    uint8_t body[64];
    size_t b = 0;
    body[b++] = (uint8_t)(serial >> 8);
    body[b++] = (uint8_t)serial;
    memcpy(body + b, tt, 6), b += 6;
    body[b++] = 0xF1, body[b++] = 0xF1;
    memcpy(body + b, st, 5), b += 5;
    body[b++] = 0x48;
    body[b++] = 0xF0, body[b++] = 0xF0;
    memcpy(body + b, tt, 5), b += 5;
    static const uint8_t rain[] = {0x20, 0x19, 0x00, 0x00, 0x05, 0x26, 0x19, 0x00, 0x12, 0x34};
    memcpy(body + b, rain, sizeof(rain)), b += sizeof(rain);
    body[b++] = 0x39, body[b++] = 0x23;
    body[b++] = bcd(level_mm / 1000000 % 100), body[b++] = bcd(level_mm / 10000 % 100);
    body[b++] = bcd(level_mm / 100 % 100), body[b++] = bcd(level_mm % 100);
    body[b++] = 0x38, body[b++] = 0x12, body[b++] = 0x12, body[b++] = 0x30;
    size_t n = 0;
    f[n++] = 0x7E, f[n++] = 0x7E, f[n++] = 0x01;
    memcpy(f + n, st, 5), n += 5;
    f[n++] = 0x12, f[n++] = 0x34, f[n++] = 0x32;
    f[n++] = (uint8_t)(b >> 8), f[n++] = (uint8_t)b, f[n++] = 0x02;
    memcpy(f + n, body, b), n += b;
    f[n++] = 0x03;
    uint16_t c = crc16(f, n);
    f[n++] = (uint8_t)(c >> 8), f[n++] = (uint8_t)c;
    return n;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s PORT N SECONDS\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]), n = atoi(argv[2]), secs = atoi(argv[3]);
    if (port <= 0 || n <= 0 || n > 100000 || secs <= 0)
        return 2;
    struct rtu *r = calloc((size_t)n, sizeof(*r));
    size_t lat_cap = (size_t)n * (size_t)secs + 16, nlat = 0;
    int64_t *lat = malloc(lat_cap * sizeof(*lat));
    int ep = epoll_create1(0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < n; i++) {
        r[i].fd = socket(AF_INET, SOCK_STREAM, 0);
        if (r[i].fd < 0 || connect(r[i].fd, (struct sockaddr *)&a, sizeof(a))) {
            fprintf(stderr, "connect %d: %s\n", i, strerror(errno));
            return 1;
        }
        int one = 1;
        setsockopt(r[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, r[i].fd, &ev);
    }
    uint64_t sent = 0, confirms = 0, late = 0;
    int64_t start = now_ms(), end = start + (int64_t)secs * 1000;
    int next = 0; /* next RTU to send in this second */
    int64_t sec_start = start;
    while (now_ms() < end + 2000) {
        int64_t t = now_ms();
        if (t < end) {
            if (t - sec_start >= 1000) {
                sec_start += 1000;
                next = 0;
            }
            /* Spread the N sends over the second. */
            int due = (int)((int64_t)n * (t - sec_start + 1) / 1000);
            if (due > n)
                due = n;
            for (; next < due; next++) {
                uint8_t f[128];
                struct rtu *x = &r[next];
                if (x->sent_at)
                    late++; /* the previous confirm has not come back within a second */
                if (++x->serial == 0)
                    x->serial = 1;
                size_t len = build(f, next, x->serial, 1000 + (int)(x->serial % 1000));
                if (send(x->fd, f, len, MSG_NOSIGNAL) == (ssize_t)len) {
                    sent++;
                    x->sent_at = now_ms();
                }
            }
        } else if (confirms >= sent) {
            break;
        }
        struct epoll_event evs[256];
        int k = epoll_wait(ep, evs, 256, 2);
        for (int i = 0; i < k; i++) {
            struct rtu *x = &r[evs[i].data.u32];
            ssize_t m = recv(x->fd, x->rbuf + x->have, sizeof(x->rbuf) - x->have, 0);
            if (m <= 0) {
                fprintf(stderr, "connection %u closed\n", evs[i].data.u32);
                epoll_ctl(ep, EPOLL_CTL_DEL, x->fd, NULL);
                continue;
            }
            x->have += (size_t)m;
            while (x->have >= CONFIRM_LEN) {
                confirms++;
                if (x->sent_at && nlat < lat_cap)
                    lat[nlat++] = now_ms() - x->sent_at;
                x->sent_at = 0;
                memmove(x->rbuf, x->rbuf + CONFIRM_LEN, x->have - CONFIRM_LEN);
                x->have -= CONFIRM_LEN;
            }
        }
    }
    qsort(lat, nlat, sizeof(*lat), cmp64);
    printf("rtus %d seconds %d frames_sent %llu readings_sent %llu confirms %llu "
           "confirm_ms_p50 %lld p99 %lld max %lld unconfirmed_at_next_send %llu\n",
           n, secs, (unsigned long long)sent, (unsigned long long)sent * 4,
           (unsigned long long)confirms, nlat ? (long long)lat[nlat / 2] : -1,
           nlat ? (long long)lat[nlat * 99 / 100] : -1, nlat ? (long long)lat[nlat - 1] : -1,
           (unsigned long long)late);
    for (int i = 0; i < n; i++)
        close(r[i].fd);
    free(r);
    free(lat);
    return confirms == sent ? 0 : 1;
}
