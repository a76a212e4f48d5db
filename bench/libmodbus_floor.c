/* The libmodbus floor: the bare transaction a gateway cannot avoid, done the
 * plain way. One libmodbus context and connection per device, one FC 03
 * request for REGS registers per device per interval, the answer's raw bytes
 * published with libmosquitto at QoS 0 (topic floor/<i>), no decoding, no
 * storage. One thread, blocking calls, polls in due order, woken in ticks of
 * at least 2 ms like bench/floor_poller.c.
 *
 * libmodbus waits with select(), which aborts on descriptors >= 1024
 * (__fdelt_chk), so every transaction runs on one low descriptor slot: the
 * device's socket is dup2()ed onto it first (one extra syscall per poll,
 * counted in the syscall figures and named in bench/results/cost.txt).
 *
 *   libmodbus_floor RANGES BROKER_PORT [REGS=16] [SECONDS=20] [INTERVAL_MS=1000] [WARMUP_S=3]
 *   RANGES: HOST:FIRST_PORT:N[,HOST:FIRST_PORT:N...]
 *
 * Prints one line over the measured window after the warm-up: polls, answers,
 * cpu_ms, cpu_ms_per_1000_polls, late_p99_ms, maxrss_kib.
 * Build: cc -O2 bench/libmodbus_floor.c $(pkg-config --cflags --libs libmodbus) -lmosquitto */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <modbus.h>
#include <mosquitto.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "floor_common.h"

#define SLOT 900 /* the low descriptor every transaction runs on */

static double cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
}

static uint64_t hist[1001]; /* lateness by ms, last bucket >= 1 s */

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: libmodbus_floor HOST:PORT:N[,...] BROKER_PORT [REGS] [SECONDS] "
                        "[INTERVAL_MS] [WARMUP_S]\n");
        return 2;
    }
    int broker_port = atoi(argv[2]);
    int regs = argc > 3 ? atoi(argv[3]) : 16;
    int seconds = argc > 4 ? atoi(argv[4]) : 20;
    int64_t interval = (argc > 5 ? atoi(argv[5]) : 1000) * 1000LL;
    int warmup = argc > 6 ? atoi(argv[6]) : 3;
    struct floor_ranges rg;
    if (floor_ranges_parse(&rg, argv[1], "libmodbus_floor"))
        return 2;
    int n = rg.total;
    floor_raise_nofile();

    mosquitto_lib_init();
    struct mosquitto *mq = mosquitto_new("libmodbus-floor", true, NULL);
    if (!mq || mosquitto_connect(mq, "127.0.0.1", broker_port, 60) != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "libmodbus_floor: cannot reach the broker on %d\n", broker_port);
        return 1;
    }
    /* Park something on the slot so no socket is created there. */
    if (dup2(0, SLOT) < 0)
        return 1;

    modbus_t **ctx = calloc((size_t)n, sizeof(*ctx));
    int *fd = calloc((size_t)n, sizeof(*fd));
    int64_t *due = calloc((size_t)n, sizeof(*due));
    if (!ctx || !fd || !due)
        return 1;
    int64_t t0 = floor_now_us();
    int k = 0;
    for (int r = 0; r < rg.n; r++)
        for (int i = 0; i < rg.count[r]; i++, k++) {
            ctx[k] = modbus_new_tcp(rg.host[r], rg.port[r] + i);
            if (!ctx[k] || modbus_connect(ctx[k]) != 0) {
                fprintf(stderr, "libmodbus_floor: connect to %s:%d: %s\n", rg.host[r],
                        rg.port[r] + i, modbus_strerror(errno));
                return 1;
            }
            /* Connected on the lowest free descriptor (libmodbus's connect
             * waits with select() too): moved above 1023 so the next one
             * connects low again, while there is room up there. */
            int low = modbus_get_socket(ctx[k]);
            int high = fcntl(low, F_DUPFD_CLOEXEC, 1024);
            if (high >= 0) {
                close(low);
                modbus_set_socket(ctx[k], high);
            } else if (errno != EMFILE) {
                fprintf(stderr, "libmodbus_floor: F_DUPFD: %s\n", strerror(errno));
                return 1;
            } /* else no room above 1023: the last ones stay low */
            modbus_set_slave(ctx[k], 1);
            modbus_set_response_timeout(ctx[k], 1, 0);
            fd[k] = modbus_get_socket(ctx[k]);
            due[k] = t0 + 200000 + interval * k / n; /* spread over the interval */
        }

    int64_t start = floor_now_us() + warmup * 1000000LL, end = start + seconds * 1000000LL;
    uint64_t polls = 0, answers = 0, failed = 0, pub_fail = 0;
    double c0 = 0;
    int measuring = 0;
    uint8_t raw[MODBUS_TCP_MAX_ADU_LENGTH];
    char topic[32];
    int64_t last_loop = 0;
    /* Devices share one interval and keep their phase order: a round-robin
     * cursor visits them in due order. */
    for (int cur = 0;; cur = (cur + 1) % n) {
        int64_t now = floor_now_us();
        if (due[cur] > now) {
            /* Sleep in ticks of at least 2 ms and serve whatever is due on
             * waking, as the epoll floor does (its epoll_wait timeout). */
            int64_t nap = due[cur] - now < 2000 ? 2000 : due[cur] - now;
            struct timespec ts = {(time_t)(nap / 1000000), (long)(nap % 1000000) * 1000};
            nanosleep(&ts, NULL);
            now = floor_now_us();
        }
        if (!measuring && now >= start) {
            measuring = 1;
            c0 = cpu_ms();
        }
        if (now >= end)
            break;
        if (measuring) {
            int64_t late = (now - due[cur]) / 1000;
            hist[late < 0 ? 0 : late < 1000 ? late : 1000]++;
            polls++;
        }
        due[cur] += interval;
        if (dup2(fd[cur], SLOT) < 0 || modbus_set_socket(ctx[cur], SLOT) != 0)
            return 1;
        /* The request goes out raw and the confirmation is taken as bytes:
         * what is published is the answer as it came, undecoded. */
        uint8_t req[6] = {1, 3, 0, 0, (uint8_t)(regs >> 8), (uint8_t)regs};
        int len = modbus_send_raw_request(ctx[cur], req, (int)sizeof(req)) > 0
                      ? modbus_receive_confirmation(ctx[cur], raw)
                      : -1;
        if (len <= 0) {
            failed += measuring;
            continue;
        }
        answers += measuring;
        snprintf(topic, sizeof(topic), "floor/%d", cur);
        if (mosquitto_publish(mq, NULL, topic, len, raw, 0, false) != MOSQ_ERR_SUCCESS)
            pub_fail++;
        if (now - last_loop >= 100000) {
            /* Keepalive and anything the broker sent, without blocking. */
            mosquitto_loop(mq, 0, 1);
            last_loop = now;
        }
    }
    double cpu = cpu_ms() - c0;
    uint64_t acc = 0, p99 = 0;
    for (int i = 0; i <= 1000; i++) {
        acc += hist[i];
        if (acc * 100 >= polls * 99) {
            p99 = (uint64_t)i + 1;
            break;
        }
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("libmodbus_floor polls=%llu answers=%llu failed=%llu pub_failed=%llu cpu_ms=%.0f "
           "cpu_ms_per_1000_polls=%.2f late_p99_ms=%llu maxrss_kib=%ld seconds=%d\n",
           (unsigned long long)polls, (unsigned long long)answers, (unsigned long long)failed,
           (unsigned long long)pub_fail, cpu, polls ? cpu * 1000.0 / (double)polls : 0.0,
           (unsigned long long)p99, ru.ru_maxrss, seconds);
    mosquitto_disconnect(mq);
    mosquitto_destroy(mq);
    mosquitto_lib_cleanup();
    return 0;
}
