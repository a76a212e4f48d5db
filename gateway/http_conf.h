#ifndef GW_HTTP_CONF_H
#define GW_HTTP_CONF_H
/* The `http:` section: its struct, key table and check (gateway/http_conf.c),
 * apart from the endpoint (http.h) so the config layer loads and checks it
 * without the server. */
#include "base/cfgmap.h"

#include <stddef.h>
#include <stdint.h>

struct sockaddr_storage;

typedef struct gw_http_config {
    int enabled; /* an http: section is present */
    char listen[80];
    char token_file[256];
    int64_t max_connections;
    int64_t timeout_ms;
    int64_t metrics_devices; /* per-device series at most (label cardinality) */
    /* Health: /healthz answers 503 past any of these. */
    int64_t uplink_down_ms;
    int64_t outbox_percent;
    int64_t loop_stall_ms;
    int64_t store_stuck_ms;
} gw_http_config;

extern const gw_cfgkey gw_http_keys[];
/* Checks a loaded http section (address syntax, token rule). 0 or GW_EINVAL. */
int gw_http_config_check(const gw_http_config *c, char *err, size_t errlen);

/* Parses listen ("IPV4:PORT" or "[IPV6]:PORT", numeric) into *sa and sets
 * *loopback to 1 for a loopback address. Returns 0 or GW_EINVAL. */
int gw_http_parse_listen(const char *listen, struct sockaddr_storage *sa, int *loopback);

#endif
