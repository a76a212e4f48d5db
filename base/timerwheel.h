#ifndef GW_TIMERWHEEL_H
#define GW_TIMERWHEEL_H
/* Coarse timers for thousands of devices, a core service: a wheel of 1 ms
 * slots driven by one libuv timer, so arming a poll or a response timeout is
 * a list insert instead of a heap operation on a uv_timer per device
 * (measured: uv_timer start/stop was the largest user-space cost at 10,000
 * Modbus devices, docs/modbus.md). The libuv timer is armed for the next
 * occupied slot, not every millisecond, so an idle gateway does not wake.
 *
 * The core creates the wheel before attaching any device and closes it after
 * the last one is detached, so a protocol never creates or closes it: a
 * device detached and another attached within one SIGHUP reload find the same
 * running wheel. Loop thread only. A timer fires once the loop time reached
 * its time, never before. */
#include <stdint.h>
#include <uv.h>

typedef struct gw_tw gw_tw;

typedef struct gw_tw_timer {
    struct gw_tw_timer *prev, *next;
    gw_tw *wheel; /* set while armed */
    int64_t at;   /* loop time (uv_now) in ms */
    void (*cb)(struct gw_tw_timer *t);
    void *data; /* the owner's, untouched by the wheel */
    int armed;
    int far; /* on the wheel's far list (a turn or more away) */
} gw_tw_timer;

/* A wheel on loop, or NULL when out of memory. Its libuv timer is unref'd:
 * armed timers never keep the loop running on their own. */
gw_tw *gw_tw_new(uv_loop_t *loop);
/* Disarms every timer still armed and closes the libuv timer; the wheel is
 * freed in the close callback. No timer may be started afterwards. */
void gw_tw_close(gw_tw *w);

/* Arms t to fire at loop time at_ms (re-arming moves it; a time in the past
 * fires on the next turn of the loop). The callback may start or stop any
 * timer, itself included. */
void gw_tw_start(gw_tw *w, gw_tw_timer *t, int64_t at_ms, void (*cb)(gw_tw_timer *t));
/* Disarms t; a no-op when it is not armed. */
void gw_tw_stop(gw_tw_timer *t);
/* Loop time of the wheel's loop, in ms. */
int64_t gw_tw_now(const gw_tw *w);

#endif
