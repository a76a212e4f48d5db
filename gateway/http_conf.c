/* The `http:` section's keys and checks (see http_conf.h). */
#include "gateway/http_conf.h"

#include "base/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <uv.h>

#define H(m) offsetof(gw_http_config, m)
const gw_cfgkey gw_http_keys[] = {
    {"listen", GW_CT_STR, "127.0.0.1:9480", 0, -1, H(listen), sizeof(((gw_http_config *)0)->listen),
     NULL, 0, "HOST:PORT (IPv4) or [V6]:PORT; only loopback without a token_file"},
    {"token_file", GW_CT_STR, "", 0, -1, H(token_file), sizeof(((gw_http_config *)0)->token_file),
     NULL, 0,
     "file whose first line is the bearer token; empty: one is generated in data_dir/http-token "
     "(for writes)"},
    {"max_connections", GW_CT_INT, "64", 1, 4096, H(max_connections), 0, NULL, 0,
     "open client connections at most"},
    {"timeout", GW_CT_DURATION, "10s", 1, 3600, H(timeout_ms), 0, NULL, 0,
     "an idle or slow client connection is closed after this"},
    {"metrics_devices", GW_CT_INT, "20000", 0, 1000000, H(metrics_devices), 0, NULL, 0,
     "devices with per-device series in /metrics at most (label cardinality)"},
    {"health_uplink_down", GW_CT_DURATION, "60s", 0, 86400, H(uplink_down_ms), 0, NULL, 0,
     "/healthz fails once the uplink is down longer"},
    {"health_outbox_percent", GW_CT_INT, "90", 1, 100, H(outbox_percent), 0, NULL, 0,
     "/healthz fails once the outbox holds this share of store.max_bytes"},
    {"health_loop_stall", GW_CT_DURATION, "2s", 0.01, 3600, H(loop_stall_ms), 0, NULL, 0,
     "/healthz fails when the loop ran this late in the last 10-20 s"},
    {"health_store_stuck", GW_CT_DURATION, "30s", 1, 3600, H(store_stuck_ms), 0, NULL, 0,
     "/healthz fails when rows wait and nothing was committed for this long"},
    {NULL}};

/* 1 in *loopback for 127.0.0.0/8 and ::1: only those may go without a token. */
int gw_http_parse_listen(const char *listen, struct sockaddr_storage *sa, int *loopback)
{
    char host[64];
    const char *colon;
    if (listen[0] == '[') {
        const char *end = strchr(listen, ']');
        if (!end || end[1] != ':' || (size_t)(end - listen - 1) >= sizeof(host))
            return GW_EINVAL;
        memcpy(host, listen + 1, (size_t)(end - listen - 1));
        host[end - listen - 1] = '\0';
        colon = end + 1;
    } else {
        colon = strrchr(listen, ':');
        if (!colon || (size_t)(colon - listen) >= sizeof(host))
            return GW_EINVAL;
        memcpy(host, listen, (size_t)(colon - listen));
        host[colon - listen] = '\0';
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 1 || port > 65535)
        return GW_EINVAL;
    memset(sa, 0, sizeof(*sa));
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)sa) == 0) {
        *loopback = strncmp(host, "127.", 4) == 0;
    } else if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)sa) == 0) {
        *loopback = strcmp(host, "::1") == 0;
    } else {
        return GW_EINVAL;
    }
    return GW_OK;
}

int gw_http_config_check(const gw_http_config *c, char *err, size_t errlen)
{
    struct sockaddr_storage sa;
    int loopback;
    if (gw_http_parse_listen(c->listen, &sa, &loopback)) {
        snprintf(err, errlen, "key 'http.listen' must be IPV4:PORT or [IPV6]:PORT (got '%s')",
                 c->listen);
        return GW_EINVAL;
    }
    if (!loopback && !c->token_file[0]) {
        snprintf(err, errlen,
                 "key 'http.listen' %s is not a loopback address: http.token_file is required",
                 c->listen);
        return GW_EINVAL;
    }
    return GW_OK;
}
