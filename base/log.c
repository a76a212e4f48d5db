#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int gw_log_level = GW_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int gw_log_level_from_name(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

int64_t gw_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t gw_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t gw_mono_ms(void)
{
    return (int64_t)(gw_mono_ns() / 1000000u);
}

void gw_log_write(int level, const char *module, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    int64_t now = gw_now_ms();
    time_t secs = (time_t)(now / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %-5s [%s] %s\n", tm.tm_year + 1900,
            tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(now % 1000),
            level_names[level < 0 ? 0 : level > 3 ? 3 : level], module, msg);
}

int gw_log_rl_allow(struct gw_log_rl *rl, int64_t interval_ms, uint64_t *suppressed)
{
    int64_t now = gw_mono_ms();
    if (rl->last_ms && now - rl->last_ms < interval_ms) {
        rl->suppressed++;
        return 0;
    }
    *suppressed = rl->suppressed;
    rl->suppressed = 0;
    rl->last_ms = now;
    return 1;
}
