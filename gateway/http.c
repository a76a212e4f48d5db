/* The local HTTP endpoint (see http.h): libmicrohttpd driven by the loop. */
#include "gateway/http.h"

#include "gateway/alarms.h"
#include "base/embedded.h"
#include "base/log.h"
#include "gateway/status.h"

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#define MEMORY_LIMIT (32 * 1024) /* per connection: request line, headers, body */
#define BODY_MAX 1024            /* the acknowledge needs none */
#define TOKEN_MAX 128
#define LIMIT_MAX 1000 /* devices per page */
/* /metrics is rendered at most this often (ms): any number of scrapers costs
 * at most two renders a second, and a 1 s scraper always gets a fresh one. */
#define METRICS_TTL_MS 500

struct gw_http {
    gw_http_env env; /* what the core gave at start */
    struct MHD_Daemon *d;
    uv_poll_t poll;
    uv_timer_t timer;
    int handles;
    int read_needs_token; /* bound off loopback */
    char token[TOKEN_MAX];
    uint64_t requests[6]; /* by status class: [1] 1xx .. [5] 5xx */
    uint64_t auth_refused, bodies_refused;
    struct MHD_Response *metrics; /* the last /metrics render, shared by the scrapers */
    uint64_t metrics_at;          /* loop time of that render */
    size_t metrics_len;
};

/* The configured token, or one generated for this run and left for the local
 * operator in data_dir (mode 0600, written then renamed into place). */
static int load_token(gw_http *h, const gw_http_config *c, char *err, size_t errlen)
{
    if (c->token_file[0]) {
        FILE *f = fopen(c->token_file, "r");
        if (!f) {
            snprintf(err, errlen, "http.token_file %s: %s", c->token_file, strerror(errno));
            return GW_EINVAL;
        }
        int ok = fgets(h->token, sizeof(h->token), f) != NULL;
        fclose(f);
        h->token[strcspn(h->token, "\r\n")] = '\0';
        if (!ok || strlen(h->token) < 16) {
            snprintf(err, errlen,
                     "http.token_file %s: the first line must hold a token of at "
                     "least 16 characters",
                     c->token_file);
            return GW_EINVAL;
        }
        return GW_OK;
    }
    unsigned char rnd[16];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        snprintf(err, errlen, "http: no random bytes for a token: %s", strerror(errno));
        return GW_ERR;
    }
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(h->token + 2 * i, 3, "%02x", rnd[i]);
    char path[300], tmp[310];
    snprintf(path, sizeof(path), "%s/http-token", h->env.data_dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int ok = fd >= 0 && write(fd, h->token, strlen(h->token)) == (ssize_t)strlen(h->token) &&
             write(fd, "\n", 1) == 1 && fsync(fd) == 0;
    if (fd >= 0)
        close(fd);
    if (!ok || rename(tmp, path)) {
        snprintf(err, errlen, "http: cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        return GW_ERR;
    }
    return GW_OK;
}

/* Constant-time comparison of the presented bearer token. */
static int token_ok(gw_http *h, struct MHD_Connection *c)
{
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!auth || strncmp(auth, "Bearer ", 7) != 0)
        return 0;
    const char *t = auth + 7;
    size_t n = strlen(h->token);
    if (strlen(t) != n)
        return 0;
    unsigned char diff = 0;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(t[i] ^ h->token[i]);
    return diff == 0;
}

static void add_headers(struct MHD_Response *r, unsigned code, const char *type);

static enum MHD_Result respond(gw_http *h, struct MHD_Connection *c, unsigned code,
                               const char *type, char *body, size_t len, int owned)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, body, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        if (owned)
            free(body);
        return MHD_NO;
    }
    add_headers(r, code, type);
    enum MHD_Result rc = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    h->requests[code / 100 < 6 ? code / 100 : 5]++;
    return rc;
}

static void add_headers(struct MHD_Response *r, unsigned code, const char *type)
{
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (!strncmp(type, "text/html", 9))
        MHD_add_response_header(r, "Content-Security-Policy",
                                "default-src 'none'; script-src 'unsafe-inline'; style-src "
                                "'unsafe-inline'; connect-src 'self'; img-src data:");
    if (code == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
}

static enum MHD_Result send_buf(gw_http *h, struct MHD_Connection *c, unsigned code,
                                const char *type, gw_sbuf *b)
{
    if (b->oom) {
        gw_sbuf_free(b);
        static char oom[] = "{\"error\":\"out of memory\"}\n";
        return respond(h, c, MHD_HTTP_SERVICE_UNAVAILABLE, "application/json", oom, strlen(oom), 0);
    }
    if (!b->p)
        GW_SBUF_LIT(b, "");
    return respond(h, c, code, type, b->p, b->len, 1);
}

static enum MHD_Result error(gw_http *h, struct MHD_Connection *c, unsigned code, const char *msg)
{
    gw_sbuf b = {0};
    GW_SBUF_LIT(&b, "{\"error\":");
    gw_sbuf_jstr(&b, msg);
    GW_SBUF_LIT(&b, "}\n");
    return send_buf(h, c, code, "application/json", &b);
}

static const char *page(void)
{
    for (const struct gw_embedded *e = gw_embedded_files; e->name; e++)
        if (strcmp(e->name, "gateway/status.html") == 0)
            return e->data;
    return NULL;
}

static size_t arg_size(struct MHD_Connection *c, const char *name, size_t def, size_t max)
{
    const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
    char *end;
    if (!v || !*v)
        return def;
    unsigned long long n = strtoull(v, &end, 10);
    if (*end)
        return def;
    return n > max ? max : (size_t)n;
}

/* The response object is kept and queued for every scraper within
 * METRICS_TTL_MS; libmicrohttpd frees the body after the last one is sent. */
static enum MHD_Result metrics(gw_http *h, struct MHD_Connection *c)
{
    uint64_t now = uv_now(h->env.loop);
    if (!h->metrics || now - h->metrics_at >= METRICS_TTL_MS) {
        gw_sbuf b = {0};
        gw_sbuf_reserve(&b, h->metrics_len + h->metrics_len / 8);
        gw_status_metrics(h->env.status, &b);
        if (b.oom)
            return send_buf(h, c, MHD_HTTP_OK, "text/plain", &b); /* 503 */
        struct MHD_Response *r = MHD_create_response_from_buffer(b.len, b.p, MHD_RESPMEM_MUST_FREE);
        if (!r) {
            gw_sbuf_free(&b);
            return MHD_NO;
        }
        add_headers(r, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8");
        if (h->metrics)
            MHD_destroy_response(h->metrics);
        h->metrics = r;
        h->metrics_at = now;
        h->metrics_len = b.len;
    }
    h->requests[2]++;
    return MHD_queue_response(c, MHD_HTTP_OK, h->metrics);
}

static enum MHD_Result get(gw_http *h, struct MHD_Connection *c, const char *url)
{
    gw_status *st = h->env.status;
    gw_sbuf b = {0};
    const char *json = "application/json";
    if (!strcmp(url, "/") || !strcmp(url, "/index.html")) {
        const char *p = page();
        if (!p)
            return error(h, c, MHD_HTTP_NOT_FOUND, "no status page in this build");
        return respond(h, c, MHD_HTTP_OK, "text/html; charset=utf-8", (char *)p, strlen(p), 0);
    }
    if (!strcmp(url, "/metrics"))
        return metrics(h, c);
    if (!strcmp(url, "/healthz") || !strcmp(url, "/readyz")) {
        int ok = gw_status_health_json(st, url[1] == 'r', &b);
        return send_buf(h, c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, json, &b);
    }
    if (!strcmp(url, "/api/v1/status")) {
        gw_status_json(st, &b);
        return send_buf(h, c, MHD_HTTP_OK, json, &b);
    }
    if (!strcmp(url, "/api/v1/alarms")) {
        gw_status_alarms_json(st, &b);
        return send_buf(h, c, MHD_HTTP_OK, json, &b);
    }
    if (!strcmp(url, "/api/v1/devices")) {
        gw_status_filter f = {
            MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "q"),
            MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "type"),
            MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "site"),
            MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "state"),
            arg_size(c, "offset", 0, (size_t)-1 / 2),
            arg_size(c, "limit", 100, LIMIT_MAX),
        };
        gw_status_devices_json(st, &f, &b);
        return send_buf(h, c, MHD_HTTP_OK, json, &b);
    }
    if (!strncmp(url, "/api/v1/devices/", 16)) {
        if (gw_status_device_json(st, url + 16, &b)) {
            gw_sbuf_free(&b);
            return error(h, c, MHD_HTTP_NOT_FOUND, "no such device");
        }
        return send_buf(h, c, MHD_HTTP_OK, json, &b);
    }
    return error(h, c, MHD_HTTP_NOT_FOUND, "not found");
}

/* POST /api/v1/alarms/ID/ack[?by=NAME] */
static enum MHD_Result post(gw_http *h, struct MHD_Connection *c, const char *url)
{
    static const char pre[] = "/api/v1/alarms/", suf[] = "/ack";
    size_t n = strlen(url);
    if (strncmp(url, pre, sizeof(pre) - 1) || n <= sizeof(pre) - 1 + sizeof(suf) - 1 ||
        strcmp(url + n - (sizeof(suf) - 1), suf))
        return error(h, c, MHD_HTTP_NOT_FOUND, "not found");
    char id[160];
    size_t idlen = n - (sizeof(pre) - 1) - (sizeof(suf) - 1);
    if (idlen >= sizeof(id))
        return error(h, c, MHD_HTTP_NOT_FOUND, "no such active alarm");
    memcpy(id, url + sizeof(pre) - 1, idlen);
    id[idlen] = '\0';
    const char *by = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "by");
    char who[80];
    snprintf(who, sizeof(who), "http:%.60s", by && *by ? by : "operator");
    int rc = gw_alarms_ack(h->env.alarms, id, who);
    GW_INFO("http", "ack of %.80s by %s: %s", id, who, rc == GW_OK ? "recorded" : "not found");
    if (rc != GW_OK)
        return error(h, c, MHD_HTTP_NOT_FOUND, "no such active alarm");
    gw_sbuf b = {0};
    GW_SBUF_LIT(&b, "{\"ok\":true}\n");
    return send_buf(h, c, MHD_HTTP_OK, "application/json", &b);
}

/* libmicrohttpd calls this once when the headers are in, then once per body
 * chunk, then once more with nothing: the answer goes out on the last call.
 * *req_cls counts body bytes (+1, so the first call is told apart). */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    gw_http *h = cls;
    uintptr_t seen = (uintptr_t)*req_cls;
    if (!seen) {
        *req_cls = (void *)(uintptr_t)1;
        if (strcmp(method, "POST") == 0)
            return MHD_YES; /* the body (if any) comes next */
    } else if (*upload_data_size) {
        seen += *upload_data_size;
        *upload_data_size = 0;
        *req_cls = (void *)seen;
        return MHD_YES;
    }
    if (seen > 1 + BODY_MAX) {
        h->bodies_refused++;
        return error(h, c, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large");
    }
    int is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    int is_post = !strcmp(method, "POST");
    if (!is_get && !is_post)
        return error(h, c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed");
    if ((is_post || h->read_needs_token) && !token_ok(h, c)) {
        h->auth_refused++;
        GW_LOG_RL(GW_LOG_WARN, 10000, "http", "%s %.80s refused: missing or wrong token", method,
                  url);
        return error(h, c, MHD_HTTP_UNAUTHORIZED, "a valid bearer token is required");
    }
    return is_post ? post(h, c, url) : get(h, c, url);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[256];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    GW_LOG_RL(GW_LOG_INFO, 10000, "http", "%s", msg);
}

static void on_timer(uv_timer_t *t);

/* Lets libmicrohttpd do what is ready, then arms the timer for what it waits
 * on next (a timeout of 0 means it has buffered work: run again at once). */
static void pump(gw_http *h)
{
    MHD_run(h->d);
    MHD_UNSIGNED_LONG_LONG t;
    if (MHD_get_timeout(h->d, &t) == MHD_YES)
        uv_timer_start(&h->timer, on_timer, t, 0);
    else
        uv_timer_stop(&h->timer);
}

static void on_timer(uv_timer_t *t)
{
    pump(t->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    pump(p->data);
}

gw_http *gw_http_start(const gw_http_env *env, const gw_http_config *c, char *err, size_t errlen)
{
    struct sockaddr_storage sa;
    int loopback;
    if (gw_http_config_check(c, err, errlen) || gw_http_parse_listen(c->listen, &sa, &loopback))
        return NULL;
    gw_http *h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->env = *env;
    h->read_needs_token = !loopback;
    if (load_token(h, c, err, errlen)) {
        free(h);
        return NULL;
    }
    unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
    if (sa.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    h->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)c->max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned)(c->max_connections > 4 ? c->max_connections / 2 : c->max_connections),
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)((c->timeout_ms + 999) / 1000),
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)MEMORY_LIMIT, MHD_OPTION_LISTEN_BACKLOG_SIZE,
        64u, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h, MHD_OPTION_END);
    if (!h->d) {
        snprintf(err, errlen, "http.listen %s: cannot listen (address in use or not local?)",
                 c->listen);
        free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
    uv_poll_init(env->loop, &h->poll, info->epoll_fd);
    uv_timer_init(env->loop, &h->timer);
    h->poll.data = h->timer.data = h;
    h->handles = 2;
    uv_poll_start(&h->poll, UV_READABLE, on_poll);
    pump(h);
    GW_INFO("http", "serving /metrics, /healthz, /api/v1 and the status page on http://%s/%s",
            c->listen, loopback ? "" : " (bearer token required)");
    return h;
}

static void closed(uv_handle_t *hd)
{
    gw_http *h = hd->data;
    if (--h->handles == 0)
        free(h);
}

void gw_http_stop(gw_http *h)
{
    if (!h)
        return;
    /* libuv must stop watching the epoll descriptor before libmicrohttpd closes it. */
    uv_poll_stop(&h->poll);
    uv_timer_stop(&h->timer);
    MHD_stop_daemon(h->d);
    h->d = NULL;
    if (h->metrics)
        MHD_destroy_response(h->metrics);
    h->metrics = NULL;
    uv_close((uv_handle_t *)&h->poll, closed);
    uv_close((uv_handle_t *)&h->timer, closed);
}

void gw_http_metrics(const gw_http *h, gw_sbuf *b)
{
    gw_sbuf_printf(b, "# HELP gw_http_requests_total HTTP answers, by status class.\n"
                      "# TYPE gw_http_requests_total counter\n");
    for (int k = 2; k <= 5; k++)
        gw_sbuf_printf(b, "gw_http_requests_total{code=\"%dxx\"} %llu\n", k,
                       (unsigned long long)h->requests[k]);
    gw_sbuf_printf(b,
                   "# HELP gw_http_refused_total HTTP requests refused, by reason.\n"
                   "# TYPE gw_http_refused_total counter\n"
                   "gw_http_refused_total{reason=\"token\"} %llu\n"
                   "gw_http_refused_total{reason=\"body_too_large\"} %llu\n",
                   (unsigned long long)h->auth_refused, (unsigned long long)h->bodies_refused);
}
