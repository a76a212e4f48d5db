#ifndef GW_STORE_CONF_H
#define GW_STORE_CONF_H
/* The `store:` section as gw_config holds it (keys: gateway/config.c). Kept
 * apart from store.h so the config layer names it without the outbox. */
#include <stdint.h>

typedef struct gw_store_config {
    char path[256];
    int64_t max_bytes;       /* bound on payload bytes held in the outbox */
    int64_t commit_window;   /* ms a commit waits to group rows */
    int64_t queue_max;       /* rows waiting for the DB thread (telemetry); alarms bypass */
    int64_t queue_max_bytes; /* their payload bytes at most (0: rows only) */
    int sync_full;           /* synchronous=FULL instead of NORMAL */
    int64_t min_free;        /* free-space floor (bytes): below it the oldest telemetry is shed */
    int64_t replay_window;   /* reports remembered per station by gw_store_seen */
    int64_t obs_max_age;     /* ms; readings observed longer ago are refused (0: no limit) */
    int64_t obs_max_ahead;   /* ms; readings observed further ahead are refused (0: no limit) */
} gw_store_config;

#endif
