/* sd_notify on the loop (see notify.h). */
#include "gateway/notify.h"

#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <systemd/sd-daemon.h>

struct gw_notify {
    uv_timer_t timer;
    uint64_t pings;
};

static void on_watchdog(uv_timer_t *t)
{
    gw_notify *n = t->data;
    n->pings++;
    sd_notify(0, "WATCHDOG=1");
}

gw_notify *gw_notify_ready(uv_loop_t *loop, const char *status)
{
    gw_notify *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    uv_timer_init(loop, &n->timer);
    n->timer.data = n;
    char msg[300];
    snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", status);
    int rc = sd_notify(0, msg);
    uint64_t usec = 0;
    /* 0 from sd_watchdog_enabled: no watchdog asked for (or not for this pid). */
    if (sd_watchdog_enabled(0, &usec) > 0 && usec >= 2000) {
        uint64_t every = usec / 2000; /* ms: half the watchdog interval */
        uv_timer_start(&n->timer, on_watchdog, every, every);
        GW_INFO("core", "service watchdog: pinging every %llu ms", (unsigned long long)every);
    }
    if (rc > 0)
        GW_INFO("core", "told the service manager we are ready");
    else if (rc < 0)
        GW_WARN("core", "sd_notify READY failed: %s", uv_strerror(rc));
    return n;
}

static void closed(uv_handle_t *h)
{
    free(h->data);
}

void gw_notify_stopping(gw_notify *n)
{
    if (n)
        sd_notify(0, "STOPPING=1");
}

void gw_notify_close(gw_notify *n)
{
    if (!n)
        return;
    uv_timer_stop(&n->timer);
    uv_close((uv_handle_t *)&n->timer, closed);
}
