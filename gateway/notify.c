/* The sd_notify protocol on the loop (see notify.h). It is a stable interface
 * of its own (sd_notify(3), NOTES): one datagram with the state lines as its
 * payload, sent to the AF_UNIX socket named by NOTIFY_SOCKET. The kernel adds
 * our credentials when the manager's socket asks for them (SO_PASSCRED), so a
 * plain sendto() is the whole protocol; docs/operations.md records the facts. */
#include "gateway/notify.h"

#include "base/log.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct gw_notify {
    uv_timer_t timer;
    int fd; /* -1: nothing to tell (no or an unusable NOTIFY_SOCKET) */
    struct sockaddr_un addr;
    socklen_t addr_len;
    uint64_t pings;
    uint64_t send_failed; /* datagrams dropped: full manager queue, manager gone */
};

int gw_notify_addr(const char *value, struct sockaddr_un *sa, socklen_t *len)
{
    size_t n = value ? strlen(value) : 0;
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (n == 0 || (value[0] != '/' && value[0] != '@') || (value[0] == '@' && n == 1))
        return -EINVAL;
    /* A path needs room for its NUL; an abstract name has none (its '@' becomes
     * the NUL at sun_path[0]), so it may fill all of sun_path. */
    if (n > sizeof(sa->sun_path) || (value[0] == '/' && n == sizeof(sa->sun_path)))
        return -ENAMETOOLONG;
    memcpy(sa->sun_path, value, n);
    if (value[0] == '@') {
        sa->sun_path[0] = '\0';
        /* Every byte up to len is part of an abstract name, so len stops at its end. */
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    }
    return 0;
}

/* A positive decimal number, nothing else (no sign, no blanks, no overflow). */
static int parse_positive(const char *s, unsigned long long *out)
{
    if (!s || *s < '0' || *s > '9')
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v == 0)
        return -EINVAL;
    *out = v;
    return 0;
}

int gw_notify_watchdog(const char *usec, const char *pid, long self, uint64_t *out)
{
    unsigned long long u, p;
    *out = 0;
    if (!usec)
        return 0;
    if (parse_positive(usec, &u) < 0)
        return -EINVAL;
    if (pid) {
        if (parse_positive(pid, &p) < 0)
            return -EINVAL;
        /* Inherited from a parent that was the one being watched: not ours to ping. */
        if (p != (unsigned long long)self)
            return 0;
    }
    *out = u;
    return 1;
}

/* One datagram, never waited for: a full queue at the manager drops it. */
static int send_state(gw_notify *n, const char *state)
{
    if (n->fd < 0)
        return 0;
    ssize_t r =
        sendto(n->fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&n->addr, n->addr_len);
    if (r >= 0)
        return 1;
    int err = errno;
    n->send_failed++;
    GW_LOG_RL(GW_LOG_WARN, 60000, "core",
              "service manager notification not sent (%.*s): %s, %llu dropped so far",
              (int)strcspn(state, "\n"), state, strerror(err), (unsigned long long)n->send_failed);
    return -err;
}

static void on_watchdog(uv_timer_t *t)
{
    gw_notify *n = t->data;
    if (send_state(n, "WATCHDOG=1") > 0)
        n->pings++;
}

/* Opens the socket NOTIFY_SOCKET names, or leaves n->fd at -1 with a warning
 * saying why the manager will not hear from us. */
static void open_socket(gw_notify *n, const char *value)
{
    int rc = gw_notify_addr(value, &n->addr, &n->addr_len);
    if (rc < 0) {
        GW_WARN("core",
                "NOTIFY_SOCKET '%.60s%s' (%zu bytes) is not usable: %s; the service manager "
                "will not hear READY, WATCHDOG or STOPPING",
                value, strlen(value) > 60 ? "..." : "", strlen(value),
                rc == -ENAMETOOLONG ? "longer than an AF_UNIX address holds"
                                    : "neither an absolute path nor an @abstract name");
        return;
    }
    n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (n->fd < 0)
        GW_WARN("core", "notification socket: %s; the service manager will not hear from us",
                strerror(errno));
}

/* Starts the pings at half the interval the manager asked for, or says why not. */
static void start_watchdog(gw_notify *n)
{
    const char *usec_s = getenv("WATCHDOG_USEC"), *pid_s = getenv("WATCHDOG_PID");
    uint64_t usec = 0;
    int rc = gw_notify_watchdog(usec_s, pid_s, (long)getpid(), &usec);
    if (rc < 0) {
        GW_WARN("core", "WATCHDOG_USEC '%.30s' / WATCHDOG_PID '%.30s' malformed: no watchdog pings",
                usec_s, pid_s ? pid_s : "");
        return;
    }
    if (rc == 0) {
        if (usec_s)
            GW_INFO("core", "WATCHDOG_PID %.30s is another process (we are %ld): no watchdog pings",
                    pid_s, (long)getpid());
        return;
    }
    if (n->fd < 0) {
        GW_WARN("core", "a watchdog is asked for but there is no usable NOTIFY_SOCKET to ping");
        return;
    }
    uint64_t every = usec / 2000; /* ms: half the watchdog interval */
    if (every == 0)
        every = 1;
    uv_timer_start(&n->timer, on_watchdog, every, every);
    GW_INFO("core", "service watchdog: pinging every %llu ms", (unsigned long long)every);
}

gw_notify *gw_notify_ready(uv_loop_t *loop, const char *status)
{
    gw_notify *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    n->fd = -1;
    uv_timer_init(loop, &n->timer);
    n->timer.data = n;
    const char *sock = getenv("NOTIFY_SOCKET");
    if (!sock)
        return n; /* not started by a service manager: nothing to say, no watchdog */
    open_socket(n, sock);
    char msg[300];
    snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", status);
    if (send_state(n, msg) > 0)
        GW_INFO("core", "told the service manager we are ready");
    start_watchdog(n);
    return n;
}

static void closed(uv_handle_t *h)
{
    free(h->data);
}

void gw_notify_stopping(gw_notify *n)
{
    if (n)
        send_state(n, "STOPPING=1");
}

void gw_notify_close(gw_notify *n)
{
    if (!n)
        return;
    if (n->fd >= 0)
        close(n->fd);
    n->fd = -1;
    uv_timer_stop(&n->timer);
    uv_close((uv_handle_t *)&n->timer, closed);
}
