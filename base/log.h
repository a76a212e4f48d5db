#ifndef GW_LOG_H
#define GW_LOG_H
/* Level-checked logging with a [module:instance] prefix, to stderr. Messages
 * from GW_LOG_RL are rate-limited per call site (one per interval, with a count
 * of what was suppressed). Libraries below the application (rules, codecs)
 * never log: they return codes. Never log secrets. */
#include <stdint.h>

enum { GW_LOG_ERROR = 0, GW_LOG_WARN, GW_LOG_INFO, GW_LOG_DEBUG };

extern int gw_log_level;

/* Output format. Under systemd, stderr is a stream to the journal, which adds
 * its own timestamp and reads a "<N>" syslog priority prefix per line
 * (sd-daemon(3)); JOURNAL_STREAM names that stream (systemd.exec(5)), so auto
 * picks the journal format only when stderr is it. */
enum { GW_LOG_FMT_AUTO = 0, GW_LOG_FMT_PLAIN, GW_LOG_FMT_JOURNAL };
void gw_log_set_format(int fmt);

void gw_log_write(int level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int gw_log_level_from_name(const char *name);

struct gw_log_rl {
    int64_t last_ms;
    uint64_t suppressed;
};
/* Returns 1 when a rate-limited message may be written now (and how many were
 * suppressed since the last one in *suppressed). */
int gw_log_rl_allow(struct gw_log_rl *rl, int64_t interval_ms, uint64_t *suppressed);

#define GW_LOG(level, module, ...)                                                                 \
    do {                                                                                           \
        if ((level) <= gw_log_level)                                                               \
            gw_log_write((level), (module), __VA_ARGS__);                                          \
    } while (0)
#define GW_ERROR(module, ...) GW_LOG(GW_LOG_ERROR, module, __VA_ARGS__)
#define GW_WARN(module, ...) GW_LOG(GW_LOG_WARN, module, __VA_ARGS__)
#define GW_INFO(module, ...) GW_LOG(GW_LOG_INFO, module, __VA_ARGS__)
#define GW_DEBUG(module, ...) GW_LOG(GW_LOG_DEBUG, module, __VA_ARGS__)

/* At most one line per interval_ms from this call site. */
#define GW_LOG_RL(level, interval_ms, module, fmt, ...)                                            \
    do {                                                                                           \
        static struct gw_log_rl rl_;                                                               \
        uint64_t sup_;                                                                             \
        if ((level) <= gw_log_level && gw_log_rl_allow(&rl_, (interval_ms), &sup_))                \
            gw_log_write((level), (module), fmt " (%llu similar suppressed)", __VA_ARGS__,         \
                         (unsigned long long)sup_);                                                \
    } while (0)

int64_t gw_now_ms(void);  /* wall clock, ms since the epoch */
int64_t gw_mono_ms(void); /* monotonic clock, ms */
uint64_t gw_mono_ns(void);

#endif
