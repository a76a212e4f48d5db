/* The timer wheel (base/timerwheel.h): 4096 slots of 1 ms, a bitmap of the
 * occupied ones so the next wake-up is found in at most 64 word tests.
 * Timers a turn or more away wait on a "far" list and move into their slots
 * in batches once they come within half a turn: in a slot they would wake
 * the loop once per turn before they are due (15 devices polled every 10 s
 * woke it 3.7 times a second instead of 1.5: issue 17). */
#include "base/timerwheel.h"

#include <stdlib.h>

#define SLOTS 4096 /* 1 ms each: a turn is 4.1 s; later timers wait in their slot */
#define WORDS (SLOTS / 64)

struct gw_tw {
    uv_timer_t timer;
    gw_tw_timer slots[SLOTS]; /* list heads */
    gw_tw_timer far;          /* list head: timers at least a turn away */
    int64_t far_min;          /* no far timer is due before it (INT64_MAX: none) */
    uint64_t used[WORDS];     /* bit set: the slot's list is not empty */
    int64_t done_ms;          /* every slot up to this time has been run */
    int64_t wake_at;          /* loop time the libuv timer fires; -1 stopped */
    size_t armed;
    int running; /* inside on_wheel: it re-arms the libuv timer at the end */
    int closed;
};

static size_t slot_of(int64_t ms)
{
    return (size_t)((uint64_t)ms % SLOTS);
}

static void link_after(gw_tw_timer *head, gw_tw_timer *t)
{
    t->next = head->next;
    t->prev = head;
    head->next->prev = t;
    head->next = t;
}

/* Puts an armed t into its slot, or on the far list when its slot would come
 * round before it is due. */
static void place(gw_tw *w, gw_tw_timer *t)
{
    if (t->at - w->done_ms >= SLOTS) {
        t->far = 1;
        link_after(&w->far, t);
        if (t->at < w->far_min)
            w->far_min = t->at;
        return;
    }
    t->far = 0;
    size_t s = slot_of(t->at);
    link_after(&w->slots[s], t);
    w->used[s / 64] |= 1ull << (s % 64);
}

/* Moves every far timer that fits in the wheel now into its slot. */
static void cascade(gw_tw *w)
{
    gw_tw_timer *t = w->far.next;
    w->far_min = INT64_MAX;
    while (t != &w->far) {
        gw_tw_timer *next = t->next;
        if (t->at - w->done_ms < SLOTS) {
            t->prev->next = t->next;
            t->next->prev = t->prev;
            place(w, t);
        } else if (t->at < w->far_min) {
            w->far_min = t->at;
        }
        t = next;
    }
}

static void unlink_timer(gw_tw_timer *t)
{
    gw_tw *w = t->wheel;
    t->prev->next = t->next;
    t->next->prev = t->prev;
    size_t s = slot_of(t->at);
    if (!t->far && w->slots[s].next == &w->slots[s])
        w->used[s / 64] &= ~(1ull << (s % 64));
    t->next = t->prev = NULL;
    t->armed = 0;
    t->wheel = NULL;
    w->armed--;
}

/* Milliseconds from the slot after done_ms to the next occupied slot (0 for
 * that very slot), or -1 when every slot is empty. */
static int64_t next_occupied(const gw_tw *w)
{
    size_t from = slot_of(w->done_ms + 1);
    for (size_t k = 0; k <= WORDS; k++) {
        size_t word = (from / 64 + k) % WORDS;
        uint64_t bits = w->used[word];
        if (k == 0)
            bits &= ~0ull << (from % 64); /* the part of the first word before `from` comes last */
        else if (k == WORDS)
            bits &= (from % 64) ? ~(~0ull << (from % 64)) : 0;
        if (bits) {
            size_t s = word * 64 + (size_t)__builtin_ctzll(bits);
            return (int64_t)((s + SLOTS - from) % SLOTS);
        }
    }
    return -1;
}

static void on_wheel(uv_timer_t *h);

/* Arms the libuv timer for the next occupied slot or the next cascade of far
 * timers (half a turn before the first is due), or stops it. */
static void rearm(gw_tw *w)
{
    int64_t d = w->armed ? next_occupied(w) : -1;
    int64_t at = d < 0 ? INT64_MAX : w->done_ms + 1 + d;
    if (w->far.next != &w->far && w->far_min - SLOTS / 2 < at)
        at = w->far_min - SLOTS / 2;
    if (at == INT64_MAX) {
        uv_timer_stop(&w->timer);
        w->wake_at = -1;
        return;
    }
    int64_t now = (int64_t)uv_now(w->timer.loop);
    w->wake_at = at;
    uv_timer_start(&w->timer, on_wheel, (uint64_t)(at > now ? at - now : 0), 0);
}

static void on_wheel(uv_timer_t *h)
{
    gw_tw *w = h->data;
    int64_t now = (int64_t)uv_now(h->loop);
    int64_t from = w->done_ms + 1;
    if (now - from >= SLOTS)
        from = now - SLOTS + 1;
    w->running = 1;
    for (int64_t ms = from; ms <= now && !w->closed; ms++) {
        gw_tw_timer *head = &w->slots[slot_of(ms)];
        /* Timers armed from a callback for this moment go to the next slot. */
        w->done_ms = ms;
        if (head->next == head)
            continue;
        /* Pop one at a time (a callback may stop or re-arm any timer, even
         * one further down this slot); what is not due yet (a later turn)
         * waits on a local list, properly linked so it can be stopped, then
         * goes back. */
        gw_tw_timer later;
        later.next = later.prev = &later;
        for (size_t guard = 0; head->next != head && guard < 10000000; guard++) {
            gw_tw_timer *t = head->next;
            t->prev->next = t->next;
            t->next->prev = t->prev;
            if (t->at <= now) {
                t->armed = 0;
                t->wheel = NULL;
                t->next = t->prev = NULL;
                w->armed--;
                t->cb(t);
            } else {
                t->next = &later;
                t->prev = later.prev;
                later.prev->next = t;
                later.prev = t;
            }
        }
        if (later.next != &later) {
            later.next->prev = head->prev;
            later.prev->next = head;
            head->prev->next = later.next;
            head->prev = later.prev;
        }
        size_t s = slot_of(ms);
        if (head->next != head)
            w->used[s / 64] |= 1ull << (s % 64);
        else
            w->used[s / 64] &= ~(1ull << (s % 64));
    }
    w->running = 0;
    if (w->closed)
        return;
    w->done_ms = now;
    if (w->far.next != &w->far && w->far_min - SLOTS / 2 <= now)
        cascade(w);
    rearm(w);
}

gw_tw *gw_tw_new(uv_loop_t *loop)
{
    gw_tw *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    for (int i = 0; i < SLOTS; i++)
        w->slots[i].next = w->slots[i].prev = &w->slots[i];
    w->far.next = w->far.prev = &w->far;
    w->far_min = INT64_MAX;
    if (uv_timer_init(loop, &w->timer)) {
        free(w);
        return NULL;
    }
    w->timer.data = w;
    uv_unref((uv_handle_t *)&w->timer);
    w->done_ms = (int64_t)uv_now(loop) - 1;
    w->wake_at = -1;
    return w;
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

void gw_tw_close(gw_tw *w)
{
    if (!w || w->closed)
        return;
    for (int i = 0; i < SLOTS; i++)
        while (w->slots[i].next != &w->slots[i])
            unlink_timer(w->slots[i].next);
    while (w->far.next != &w->far)
        unlink_timer(w->far.next);
    w->closed = 1;
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, on_closed);
}

int64_t gw_tw_now(const gw_tw *w)
{
    return (int64_t)uv_now(w->timer.loop);
}

void gw_tw_start(gw_tw *w, gw_tw_timer *t, int64_t at_ms, void (*cb)(gw_tw_timer *t))
{
    if (w->closed)
        return;
    if (t->armed)
        gw_tw_stop(t);
    if (!w->armed && !w->running) {
        /* Idle until now: nothing between done_ms and now is pending. */
        int64_t now = (int64_t)uv_now(w->timer.loop);
        if (now - 1 > w->done_ms)
            w->done_ms = now - 1;
    }
    if (at_ms <= w->done_ms)
        at_ms = w->done_ms + 1; /* the past runs at the next slot */
    t->at = at_ms;
    t->cb = cb;
    t->armed = 1;
    t->wheel = w;
    place(w, t);
    w->armed++;
    /* Inside on_wheel the timer is re-armed once at the end. */
    int64_t wake = t->far ? at_ms - SLOTS / 2 : at_ms;
    if (!w->running && (w->wake_at < 0 || wake < w->wake_at)) {
        int64_t now = (int64_t)uv_now(w->timer.loop);
        w->wake_at = wake;
        uv_timer_start(&w->timer, on_wheel, (uint64_t)(wake > now ? wake - now : 0), 0);
    }
}

void gw_tw_stop(gw_tw_timer *t)
{
    if (!t->armed)
        return;
    gw_tw *w = t->wheel;
    int64_t at = t->at;
    unlink_timer(t);
    /* The libuv timer was armed for this one (a response timeout stopped by
     * the answer, the usual case): aim it at the next slot instead of waking
     * for nothing. Inside on_wheel it is re-armed at the end anyway. */
    if (!w->running && !w->closed && at == w->wake_at)
        rearm(w);
}
