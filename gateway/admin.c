#include "gateway/admin.h"

#include "gateway/alarms.h"
#include "gateway/core_internal.h"
#include "base/log.h"
#include "protocols/stream_listener.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define LINE_MAX_ 512
#define MAX_CONNS 8
#define IDLE_MS 5000 /* a command line must arrive this soon after connecting */

/* One client: it sends one line and gets one answer. Clients still waiting
 * for their line sit on a list, oldest first: when all MAX_CONNS slots are
 * taken, the oldest of them is closed for the newcomer, so idle clients can
 * never lock the operator out. */
struct conn {
    uv_pipe_t pipe;
    uv_timer_t idle;
    gw_admin *a;
    struct conn *prev, *next; /* the waiting list, while !done */
    char line[LINE_MAX_];
    size_t len;
    uv_write_t wr;
    char *reply;
    int done;
    int closing;
    int handles;
};

struct gw_admin {
    gw_core *core;
    uv_pipe_t server;
    char path[108];
    int conns; /* open, not closing */
    int alive; /* client structs not yet freed: the admin struct outlives them */
    int stopped;
    struct conn *wait_head, *wait_tail;
    uint64_t evicted, idle_closed;
};

static void wait_del(struct conn *c)
{
    gw_admin *a = c->a;
    if (c->prev)
        c->prev->next = c->next;
    else if (a->wait_head == c)
        a->wait_head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else if (a->wait_tail == c)
        a->wait_tail = c->prev;
    c->prev = c->next = NULL;
}

static void conn_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->handles > 0)
        return;
    gw_admin *a = c->a;
    free(c->reply);
    free(c);
    if (--a->alive == 0 && a->stopped)
        free(a);
}

static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    if (!c->done)
        wait_del(c);
    c->a->conns--;
    uv_timer_stop(&c->idle);
    uv_close((uv_handle_t *)&c->idle, conn_closed);
    uv_close((uv_handle_t *)&c->pipe, conn_closed);
}

static void written(uv_write_t *w, int status)
{
    struct conn *c = w->data;
    conn_close(c);
}

static void reply(struct conn *c, const char *text)
{
    if (!c->done)
        wait_del(c);
    c->done = 1;
    uv_read_stop((uv_stream_t *)&c->pipe);
    c->reply = strdup(text);
    if (!c->reply) {
        conn_close(c);
        return;
    }
    uv_buf_t b = uv_buf_init(c->reply, (unsigned)strlen(c->reply));
    c->wr.data = c;
    if (uv_write(&c->wr, (uv_stream_t *)&c->pipe, &b, 1, written))
        conn_close(c);
}

static void on_idle(uv_timer_t *t)
{
    struct conn *c = t->data;
    c->a->idle_closed++;
    GW_LOG_RL(GW_LOG_INFO, 10000, "admin", "client sent no command within %d ms: closed", IDLE_MS);
    conn_close(c);
}

static void status(struct conn *c)
{
    gw_core *core = c->a->core;
    gw_store_stats ss;
    gw_uplink_stats us;
    gw_store_get_stats(core->store, &ss);
    gw_uplink_get_stats(core->uplink, &us);
    size_t online = 0;
    for (size_t i = 0; i < core->ndevices; i++)
        online += core->devices[i]->online == 1;
    uint64_t lat_n;
    int lat50, lat99;
    gw_uplink_alarm_latency(core->uplink, &lat_n, &lat50, &lat99);
    /* Device connections of every stream listener, and this socket's own. */
    gw_sl_stats t;
    gw_sl_totals(&t);
    char conns[640];
    snprintf(conns, sizeof(conns),
             "\"connections\":{\"open\":%llu,\"unauthenticated\":%llu,\"accepted\":%llu,"
             "\"evicted_unauth\":%llu,\"auth_timeouts\":%llu,\"idle_closed\":%llu,"
             "\"refused_full\":%llu,\"refused_per_source\":%llu,\"refused_peer\":%llu},"
             "\"admin\":{\"open\":%d,\"evicted_idle\":%llu,\"idle_closed\":%llu}",
             (unsigned long long)t.open, (unsigned long long)t.unauth,
             (unsigned long long)t.accepted, (unsigned long long)t.evicted_unauth,
             (unsigned long long)t.auth_timeouts, (unsigned long long)t.idle_closed,
             (unsigned long long)t.refused_full, (unsigned long long)t.refused_per_source,
             (unsigned long long)t.refused_peer, c->a->conns, (unsigned long long)c->a->evicted,
             (unsigned long long)c->a->idle_closed);
    char buf[2600];
    snprintf(buf, sizeof(buf),
             "{\"gateway\":\"%s\",\"devices\":%zu,\"online\":%zu,\"readings\":%llu,"
             "\"events\":%llu,\"alarm_transitions\":%llu,\"active_alarms\":%zu,"
             "\"refused_queue_full\":%llu,\"outbox\":{\"rows_priority\":%lld,"
             "\"rows_telemetry\":%lld,\"bytes\":%lld,\"dropped_oldest\":%llu,"
             "\"disk_full\":%s,\"commit_failures\":%llu,\"rows_waiting\":%lld,"
             "\"shed_min_free\":%llu,\"recovered_corrupt\":%s,\"replays\":%llu,"
             "\"obs_refused\":%llu},"
             "\"uplink\":{\"connected\":%s,\"connects\":%llu,\"rows_acked\":%llu,"
             "\"alarm_publish_ms\":{\"n\":%llu,\"p50\":%d,\"p99\":%d}},%s}\n",
             core->cfg.gateway_id, core->ndevices, online, (unsigned long long)core->st.readings,
             (unsigned long long)core->st.events, (unsigned long long)core->st.alarms,
             gw_alarms_active(core->alarms), (unsigned long long)core->st.refused_queue_full,
             (long long)ss.rows[0], (long long)ss.rows[1], (long long)ss.bytes,
             (unsigned long long)ss.tele_dropped_full, ss.disk_full ? "true" : "false",
             (unsigned long long)ss.commit_failures, (long long)ss.rows_waiting,
             (unsigned long long)ss.tele_shed_floor, ss.recovered ? "true" : "false",
             (unsigned long long)core->st.replays, (unsigned long long)core->st.obs_refused,
             us.connected ? "true" : "false",
             (unsigned long long)us.connects,
             (unsigned long long)(us.rows_acked[0] + us.rows_acked[1]),
             (unsigned long long)lat_n, lat50, lat99, conns);
    reply(c, buf);
}

static void handle(struct conn *c)
{
    char *save = NULL;
    char *cmd = strtok_r(c->line, " \t\r\n", &save);
    if (!cmd) {
        reply(c, "error: empty command\n");
    } else if (!strcmp(cmd, "status")) {
        status(c);
    } else if (!strcmp(cmd, "ack")) {
        char *id = strtok_r(NULL, " \t\r\n", &save);
        char *by = strtok_r(NULL, " \t\r\n", &save);
        if (!id) {
            reply(c, "error: usage: ack <alarm-id> [by]\n");
            return;
        }
        char who[80];
        snprintf(who, sizeof(who), "local:%s", by ? by : "admin");
        int rc = gw_alarms_ack(c->a->core->alarms, id, who);
        GW_INFO("admin", "ack of %.80s by %s: %s", id, who, rc == GW_OK ? "recorded" : "not found");
        reply(c, rc == GW_OK ? "ok\n" : "error: no such active alarm\n");
    } else if (!strcmp(cmd, "device")) {
        char *id = strtok_r(NULL, " \t\r\n", &save);
        char *verb = strtok_r(NULL, " \t\r\n", &save);
        char *arg = strtok_r(NULL, "\r\n", &save);
        if (!id || !verb) {
            reply(c, "error: usage: device <id> <verb> [arg]\n");
            return;
        }
        char out[300], msg[320];
        int rc = gw_core_device_command(c->a->core, id, verb, arg, out, sizeof(out));
        snprintf(msg, sizeof(msg), "%s%s\n", rc == GW_OK ? "" : "error: ", out);
        reply(c, msg);
    } else {
        reply(c, "error: unknown command (status, ack, device)\n");
    }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct conn *c = h->data;
    b->base = c->line + c->len;
    b->len = sizeof(c->line) - 1 - c->len;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct conn *c = s->data;
    if (c->done || c->closing)
        return;
    if (n < 0) {
        conn_close(c);
        return;
    }
    c->len += (size_t)n;
    c->line[c->len] = '\0';
    if (memchr(c->line, '\n', c->len)) {
        handle(c);
    } else if (c->len >= sizeof(c->line) - 1) {
        reply(c, "error: line too long\n");
    }
}

static int peer_allowed(uv_pipe_t *p)
{
    uv_os_fd_t fd;
    struct ucred cr;
    socklen_t len = sizeof(cr);
    if (uv_fileno((uv_handle_t *)p, &fd) ||
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len))
        return 0;
    return cr.uid == 0 || cr.uid == getuid();
}

static void on_conn(uv_stream_t *server, int status)
{
    gw_admin *a = server->data;
    if (status < 0)
        return;
    struct conn *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->a = a;
    uv_pipe_init(a->core->loop, &c->pipe, 0);
    uv_timer_init(a->core->loop, &c->idle);
    c->pipe.data = c->idle.data = c;
    c->handles = 2;
    a->alive++;
    c->done = 1; /* on the waiting list only once it may send its line */
    a->conns++;
    if (uv_accept(server, (uv_stream_t *)&c->pipe)) {
        conn_close(c);
        return;
    }
    if (a->conns > MAX_CONNS) {
        if (!a->wait_head) {
            reply(c, "error: busy\n"); /* every slot is answering a command */
            return;
        }
        a->evicted++;
        GW_LOG_RL(GW_LOG_WARN, 10000, "admin",
                  "%d clients open: closed the oldest idle one for a new one (%llu so far)",
                  MAX_CONNS, (unsigned long long)a->evicted);
        conn_close(a->wait_head);
    }
    if (!peer_allowed(&c->pipe)) {
        GW_LOG_RL(GW_LOG_WARN, 10000, "admin", "refused a connection from another user%s", "");
        reply(c, "error: not allowed\n");
        return;
    }
    c->done = 0;
    c->prev = a->wait_tail;
    if (a->wait_tail)
        a->wait_tail->next = c;
    else
        a->wait_head = c;
    a->wait_tail = c;
    uv_timer_start(&c->idle, on_idle, IDLE_MS, 0);
    uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
}

gw_admin *gw_admin_start(gw_core *core, const char *path, char *err, size_t errlen)
{
    gw_admin *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (strlen(path) >= sizeof(a->path)) {
        snprintf(err, errlen, "gateway.admin_socket: path longer than %zu", sizeof(a->path) - 1);
        free(a);
        return NULL;
    }
    a->core = core;
    strcpy(a->path, path);
    unlink(path); /* a socket left by a crash */
    uv_pipe_init(core->loop, &a->server, 0);
    a->server.data = a;
    mode_t old = umask(0077);
    int rc = uv_pipe_bind(&a->server, path);
    umask(old);
    if (!rc)
        rc = uv_listen((uv_stream_t *)&a->server, 8, on_conn);
    if (rc) {
        snprintf(err, errlen, "gateway.admin_socket %s: %s", path, uv_strerror(rc));
        uv_close((uv_handle_t *)&a->server, NULL);
        a->core = NULL; /* freed by the caller's loop teardown: leak the small struct */
        return NULL;
    }
    chmod(path, 0600);
    GW_INFO("admin", "admin interface on %s (owner only)", path);
    return a;
}

static void server_closed(uv_handle_t *h)
{
    gw_admin *a = h->data;
    a->stopped = 1;
    if (a->alive == 0)
        free(a);
}

void gw_admin_stop(gw_admin *a)
{
    if (!a)
        return;
    unlink(a->path);
    while (a->wait_head)
        conn_close(a->wait_head);
    uv_close((uv_handle_t *)&a->server, server_closed);
}

int gw_admin_client(const char *path, int argc, char **argv)
{
    char line[LINE_MAX_] = "";
    for (int i = 0; i < argc; i++) {
        if (strlen(line) + strlen(argv[i]) + 2 >= sizeof(line)) {
            fprintf(stderr, "gateway admin: command too long\n");
            return 2;
        }
        strcat(line, argv[i]);
        strcat(line, i + 1 < argc ? " " : "\n");
    }
    if (!argc) {
        fprintf(stderr, "usage: gateway admin [--socket PATH] status | ack ALARM-ID [BY]\n");
        return 2;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
        fprintf(stderr, "gateway admin: %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return 1;
    }
    /* A gateway that refuses us (peer check, busy) answers and closes: the
     * write may then fail with EPIPE, which must not kill this process before
     * it says why. */
    int wrote = send(fd, line, strlen(line), MSG_NOSIGNAL) >= 0;
    int werr = errno;
    char buf[4096];
    ssize_t n;
    int rc = 0;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    size_t got = 0;
    while (poll(&pfd, 1, 5000) > 0 && (n = read(fd, buf, sizeof(buf))) > 0) {
        fwrite(buf, 1, (size_t)n, stdout);
        if (got == 0 && n >= 6 && !strncmp(buf, "error:", 6))
            rc = 1;
        got += (size_t)n;
    }
    close(fd);
    if (!wrote && got == 0) {
        fprintf(stderr, "gateway admin: %s: the gateway closed the connection (%s): not allowed "
                        "for this user, or busy\n",
                path, strerror(werr));
        return 1;
    }
    return rc;
}
