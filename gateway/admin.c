#include "gateway/admin.h"

#include "gateway/alarms.h"
#include "gateway/commands.h"
#include "base/log.h"
#include "gateway/status.h"

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
/* A platform command may wait for a device's answer: the client may wait as long. */
#define CMD_WAIT_MS (GW_COMMANDS_ANSWER_MS + 5000)

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
    int running; /* a platform command (cmd) will reply through on_cmd_reply */
};

struct gw_admin {
    gw_admin_env env; /* what the core gave at start */
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
    if (c->running)
        gw_commands_cancel(c->a->env.commands, c);
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
    if (c->running) {
        reply(c, "error: the command did not complete in time\n");
        return;
    }
    c->a->idle_closed++;
    GW_LOG_RL(GW_LOG_INFO, 10000, "admin", "client sent no command within %d ms: closed", IDLE_MS);
    conn_close(c);
}

void gw_admin_stats_json(const gw_admin *a, gw_sbuf *b)
{
    gw_sbuf_printf(b, "\"admin\":{\"open\":%d,\"evicted_idle\":%llu,\"idle_closed\":%llu},",
                   a->conns, (unsigned long long)a->evicted, (unsigned long long)a->idle_closed);
}

/* Answers with a built buffer (taking it over). */
static void reply_buf(struct conn *c, gw_sbuf *b)
{
    if (b->oom || !b->p) {
        gw_sbuf_free(b);
        reply(c, "error: out of memory\n");
        return;
    }
    if (!c->done)
        wait_del(c);
    c->done = 1;
    uv_read_stop((uv_stream_t *)&c->pipe);
    c->reply = b->p;
    uv_buf_t ub = uv_buf_init(c->reply, (unsigned)b->len);
    c->wr.data = c;
    if (uv_write(&c->wr, (uv_stream_t *)&c->pipe, &ub, 1, written))
        conn_close(c);
}

/* The replies of a cmd: the first that is not "accepted" is the answer. */
static void on_cmd_reply(void *ctx, const char *json, size_t len)
{
    struct conn *c = ctx;
    if (c->done || c->closing || strstr(json, "\"status\":\"accepted\""))
        return;
    char msg[1200];
    int fail = strstr(json, "\"status\":\"refused\"") || strstr(json, "\"status\":\"failed\"");
    snprintf(msg, sizeof(msg), "%s%.*s\n", fail ? "error: " : "", (int)len, json);
    c->running = 0;
    reply(c, msg);
}

/* cmd <name> <json>: the platform's commands, run locally by the same code. */
static void run_cmd(struct conn *c, char *save)
{
    char *name = strtok_r(NULL, " \t\r\n", &save);
    char *json = strtok_r(NULL, "\r\n", &save);
    if (!name || !c->a->env.commands) {
        reply(c, c->a->env.commands ? "error: usage: cmd <name> [json]\n"
                                    : "error: commands not available\n");
        return;
    }
    if (!json)
        json = "{}";
    c->running = 1;
    gw_commands_handle(c->a->env.commands, "local", name, json, strlen(json), NULL, on_cmd_reply,
                       c);
    if (c->running) /* completes later: the client waits, bounded */
        uv_timer_start(&c->idle, on_idle, CMD_WAIT_MS, 0);
}

static void handle(struct conn *c)
{
    char *save = NULL;
    char *cmd = strtok_r(c->line, " \t\r\n", &save);
    if (!cmd) {
        reply(c, "error: empty command\n");
    } else if (!strcmp(cmd, "status") || !strcmp(cmd, "devices") || !strcmp(cmd, "alarms")) {
        gw_sbuf b = {0};
        gw_status_filter all = {.limit = (size_t)-1};
        if (cmd[0] == 's')
            gw_status_json(c->a->env.status, &b);
        else if (cmd[0] == 'd')
            gw_status_devices_json(c->a->env.status, &all, &b);
        else
            gw_status_alarms_json(c->a->env.status, &b);
        reply_buf(c, &b);
    } else if (!strcmp(cmd, "ack")) {
        char *id = strtok_r(NULL, " \t\r\n", &save);
        char *by = strtok_r(NULL, " \t\r\n", &save);
        if (!id) {
            reply(c, "error: usage: ack <alarm-id> [by]\n");
            return;
        }
        char who[80];
        snprintf(who, sizeof(who), "local:%s", by ? by : "admin");
        int rc = gw_alarms_ack(c->a->env.alarms, id, who);
        GW_INFO("admin", "ack of %.80s by %s: %s", id, who, rc == GW_OK ? "recorded" : "not found");
        reply(c, rc == GW_OK ? "ok\n" : "error: no such active alarm\n");
    } else if (!strcmp(cmd, "device")) {
        char *id = strtok_r(NULL, " \t\r\n", &save);
        char *verb = strtok_r(NULL, " \t\r\n", &save);
        char *arg = strtok_r(NULL, "\r\n", &save);
        if (id && !verb) {
            gw_sbuf b = {0};
            if (gw_status_device_json(c->a->env.status, id, &b)) {
                gw_sbuf_free(&b);
                reply(c, "error: no such device\n");
            } else {
                reply_buf(c, &b);
            }
            return;
        }
        if (!id || !verb) {
            reply(c, "error: usage: device <id> <verb> [arg]\n");
            return;
        }
        char out[300], msg[320];
        int rc = c->a->env.command(c->a->env.ctx, id, verb, arg, out, sizeof(out));
        snprintf(msg, sizeof(msg), "%s%s\n", rc == GW_OK ? "" : "error: ", out);
        reply(c, msg);
    } else if (!strcmp(cmd, "cmd")) {
        run_cmd(c, save);
    } else {
        reply(c, "error: unknown command (status, devices, device, alarms, ack, cmd)\n");
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
    if (uv_fileno((uv_handle_t *)p, &fd) || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len))
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
    uv_pipe_init(a->env.loop, &c->pipe, 0);
    uv_timer_init(a->env.loop, &c->idle);
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

gw_admin *gw_admin_start(const gw_admin_env *env, const char *path, char *err, size_t errlen)
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
    a->env = *env;
    strcpy(a->path, path);
    unlink(path); /* a socket left by a crash */
    uv_pipe_init(env->loop, &a->server, 0);
    a->server.data = a;
    mode_t old = umask(0077);
    int rc = uv_pipe_bind(&a->server, path);
    umask(old);
    if (!rc)
        rc = uv_listen((uv_stream_t *)&a->server, 8, on_conn);
    if (rc) {
        snprintf(err, errlen, "gateway.admin_socket %s: %s", path, uv_strerror(rc));
        uv_close((uv_handle_t *)&a->server, NULL);
        return NULL; /* a holds the closing handle: leak the small struct */
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
