/* Device liveness, once for every protocol (contract in gateway/core.h).
 *
 * Two ways to go offline, both ending in the same event: failure counting
 * (polled devices: gw_core_failed after each unanswered poll, offline_after in
 * a row) and silence (devices that report on their own: gw_core_watch with
 * their allowed silence, usually offline_after x interval). Silence is checked
 * by one timer for all devices, armed for the earliest deadline and never more
 * often than every MIN_TICK_MS, so thousands of devices cost no timer each.
 *
 * A fleet changing state together (a start, a network outage) would write a
 * log line per device: 10,000 at start, past journald's default rate limit of
 * 10,000 messages in 30 s, which then drops whatever comes next, warnings
 * included. So at most STATE_LINES online/offline lines a STATE_WINDOW_MS; the
 * rest are counted and told in one line when the window ends. The events
 * themselves all go to the platform, and `admin devices` lists every state. */
#include "gateway/core_internal.h"
#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIN_TICK_MS 100
#define STATE_WINDOW_MS 10000
#define STATE_LINES 20

struct gw_liveness {
    uv_timer_t timer;
    int64_t due;        /* loop time the timer fires; 0 when not armed */
    uv_timer_t summary; /* the end of a window with lines left out */
    int64_t window_ms;  /* loop time the window began */
    int lines;          /* written in it */
    uint64_t quiet[2];  /* left out in it: came online, went offline */
    int closing;        /* handles still closing */
};

static void summarize(struct gw_liveness *l)
{
    if (l->quiet[1])
        GW_WARN("core",
                "%llu more devices went offline and %llu came online in %d s, not logged one by "
                "one (`admin devices` lists them)",
                (unsigned long long)l->quiet[1], (unsigned long long)l->quiet[0],
                STATE_WINDOW_MS / 1000);
    else if (l->quiet[0])
        GW_INFO("core", "%llu more devices came online in %d s, not logged one by one",
                (unsigned long long)l->quiet[0], STATE_WINDOW_MS / 1000);
    l->quiet[0] = l->quiet[1] = 0;
}

static void on_summary(uv_timer_t *t)
{
    summarize(t->data);
}

/* 1 when a device's change to online (or offline) gets its own line. */
static int state_line(gw_core *core, int online)
{
    struct gw_liveness *l = core->liveness;
    if (!l)
        return 1;
    int64_t now = (int64_t)uv_now(core->loop);
    if (!l->window_ms || now - l->window_ms >= STATE_WINDOW_MS) {
        if (l->quiet[0] || l->quiet[1])
            summarize(l); /* the loop ran late: the window's end before its first line */
        l->window_ms = now;
        l->lines = 0;
    }
    if (l->lines < STATE_LINES) {
        l->lines++;
        return 1;
    }
    if (!l->quiet[0] && !l->quiet[1])
        uv_timer_start(&l->summary, on_summary, (uint64_t)(l->window_ms + STATE_WINDOW_MS - now),
                       0);
    l->quiet[online ? 0 : 1]++;
    return 0;
}

static void event(gw_core *core, gw_device *d, const char *kind, const char *detail)
{
    gw_event e;
    memset(&e, 0, sizeof(e));
    gw_strlcpy(e.kind, kind, sizeof(e.kind));
    gw_strlcpy(e.detail, detail ? detail : "", sizeof(e.detail));
    e.active = 1;
    gw_core_event(core, d, &e);
}

static void go_offline(gw_core *core, gw_device *d, const char *detail)
{
    d->online = 0;
    if (state_line(core, 0))
        GW_WARN(d->proto ? d->proto->name : "core", "[%s] offline: %s", d->conf.id, detail);
    event(core, d, "offline", detail);
}

static void arm(gw_core *core, int64_t at);

static void on_tick(uv_timer_t *t)
{
    gw_core *core = t->data;
    int64_t now = (int64_t)uv_now(core->loop), next = 0;
    core->liveness->due = 0;
    for (size_t i = 0; i < core->ndevices; i++) {
        gw_device *d = core->devices[i];
        if (!d || d->live_silence_ms <= 0 || d->online == 0)
            continue;
        int64_t deadline = d->live_seen_ms + d->live_silence_ms;
        if (now >= deadline) {
            char detail[GW_DETAIL_MAX];
            snprintf(detail, sizeof(detail), "nothing heard for %lld s",
                     (long long)((now - d->live_seen_ms) / 1000));
            go_offline(core, d, detail);
        } else if (!next || deadline < next) {
            next = deadline;
        }
    }
    if (next)
        arm(core, next);
}

static void arm(gw_core *core, int64_t at)
{
    struct gw_liveness *l = core->liveness;
    if (!l)
        return;
    int64_t now = (int64_t)uv_now(core->loop);
    if (at < now + MIN_TICK_MS)
        at = now + MIN_TICK_MS;
    if (l->due && l->due <= at)
        return; /* the earlier tick will look again */
    l->due = at;
    uv_timer_start(&l->timer, on_tick, (uint64_t)(at - now), 0);
}

void gw_core_seen(gw_core *core, gw_device *dev, const char *detail)
{
    dev->live_seen_ms = (int64_t)uv_now(core->loop);
    dev->live_fails = 0;
    if (dev->online != 1) {
        dev->online = 1;
        if (state_line(core, 1))
            GW_INFO(dev->proto ? dev->proto->name : "core", "[%s] online", dev->conf.id);
        event(core, dev, "online", detail);
    }
    if (dev->live_silence_ms > 0)
        arm(core, dev->live_seen_ms + dev->live_silence_ms);
}

void gw_core_failed(gw_core *core, gw_device *dev, const char *reason)
{
    dev->live_fails++;
    if (dev->live_fails >= dev->conf.offline_after && dev->online != 0) {
        char detail[GW_DETAIL_MAX];
        snprintf(detail, sizeof(detail), "%s (%d failed polls)", reason ? reason : "no answer",
                 dev->live_fails);
        go_offline(core, dev, detail);
    }
}

void gw_core_offline(gw_core *core, gw_device *dev, const char *reason)
{
    if (dev->online != 0)
        go_offline(core, dev, reason ? reason : "");
}

void gw_core_watch(gw_core *core, gw_device *dev, int64_t silence_ms)
{
    dev->live_silence_ms = silence_ms > 0 ? silence_ms : 0;
    dev->live_seen_ms = (int64_t)uv_now(core->loop);
    if (dev->live_silence_ms > 0)
        arm(core, dev->live_seen_ms + dev->live_silence_ms);
}

int gw_liveness_start(gw_core *core)
{
    struct gw_liveness *l = calloc(1, sizeof(*l));
    if (!l)
        return GW_ENOMEM;
    uv_timer_init(core->loop, &l->timer);
    l->timer.data = core;
    uv_timer_init(core->loop, &l->summary);
    l->summary.data = l;
    core->liveness = l;
    return GW_OK;
}

static void on_closed(uv_handle_t *h)
{
    struct gw_liveness *l = h->data;
    if (--l->closing == 0)
        free(l);
}

void gw_liveness_stop(gw_core *core)
{
    struct gw_liveness *l = core->liveness;
    if (!l)
        return;
    core->liveness = NULL;
    summarize(l);
    uv_timer_stop(&l->timer);
    l->timer.data = l;
    l->closing = 2;
    uv_close((uv_handle_t *)&l->timer, on_closed);
    uv_close((uv_handle_t *)&l->summary, on_closed);
}
