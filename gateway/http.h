#ifndef GW_HTTP_H
#define GW_HTTP_H
/* The local HTTP endpoint: /metrics (Prometheus text), /healthz and /readyz,
 * the JSON API (/api/v1/status, /api/v1/devices[/ID], /api/v1/alarms, POST
 * /api/v1/alarms/ID/ack) and the status page at /. libmicrohttpd runs in its
 * external-polling epoll mode on the loop thread: one uv_poll on its epoll
 * descriptor and one timer for its timeouts, so handlers read the core
 * directly and the loop never waits on a client. Bounded by a connection
 * limit, a per-connection memory limit (request line, headers and body) and
 * an idle timeout. Bound to loopback by default; any other address needs a
 * token (http.token_file), sent as "Authorization: Bearer TOKEN". Writes (the
 * acknowledge) always need the token: without token_file one is generated at
 * start into <data_dir>/http-token (mode 0600) for the local operator. */
#include "gateway/http_conf.h"

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct gw_alarms;
struct gw_status;
typedef struct gw_http gw_http;

/* What the endpoint needs from the core, given at start so that it never
 * reaches into the core (no core <-> http cycle). Pointers stay valid until
 * gw_http_stop. */
typedef struct gw_http_env {
    uv_loop_t *loop;
    struct gw_status *status; /* answers every GET but the page */
    struct gw_alarms *alarms; /* takes the acknowledge */
    const char *data_dir;     /* where a generated token is left */
} gw_http_env;

/* Starts serving (NULL with err on failure: port taken, token unreadable). */
gw_http *gw_http_start(const gw_http_env *env, const gw_http_config *c, char *err, size_t errlen);
/* Appends the endpoint's own counters to a /metrics answer. */
struct gw_sbuf;
void gw_http_metrics(const gw_http *h, struct gw_sbuf *b);
/* Closes the listener and every connection; freed once the loop closed its handles. */
void gw_http_stop(gw_http *h);

#endif
