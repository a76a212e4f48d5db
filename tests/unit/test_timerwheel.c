/* The core's timer wheel on a real libuv loop: order, never early, stop and
 * re-arm from a callback, a timer more than one turn (4.1 s) away, and close
 * with timers still armed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "base/timerwheel.h"

#include <stdlib.h>

struct rec {
    gw_tw_timer t;
    int64_t fired_at;
    int n;
    int order;
};

static int fired;
static gw_tw_timer *victim;

static void on_fire(gw_tw_timer *t)
{
    struct rec *r = t->data;
    r->n++;
    r->order = ++fired;
    if (victim) {
        gw_tw_stop(victim);
        victim = NULL;
    }
}

static gw_tw *W;

static void stop_loop(uv_timer_t *h)
{
    uv_stop(h->loop);
}

static void on_fire_now(gw_tw_timer *t)
{
    on_fire(t);
    ((struct rec *)t->data)->fired_at = gw_tw_now(W);
}

static void test_order_and_stop(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    W = gw_tw_new(&loop);
    assert_non_null(W);
    int64_t t0 = gw_tw_now(W);
    struct rec r[4] = {0};
    for (int i = 0; i < 4; i++)
        r[i].t.data = &r[i];
    gw_tw_start(W, &r[0].t, t0 + 30, on_fire_now);
    gw_tw_start(W, &r[1].t, t0 + 10, on_fire_now);
    gw_tw_start(W, &r[2].t, t0 + 50, on_fire_now);   /* stopped by r[0]'s callback */
    gw_tw_start(W, &r[3].t, t0 + 4200, on_fire_now); /* past one turn of the wheel */
    victim = &r[2].t;
    /* The wheel's timer is unref'd: a ref'd timer keeps the loop running. */
    uv_timer_t keep;
    uv_timer_init(&loop, &keep);
    uv_timer_start(&keep, stop_loop, 4600, 0);
    fired = 0;
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(r[1].order, 1);
    assert_int_equal(r[0].order, 2);
    assert_int_equal(r[2].n, 0);
    assert_int_equal(r[3].order, 3);
    assert_true(r[1].fired_at >= t0 + 10);
    assert_true(r[0].fired_at >= t0 + 30);
    assert_true(r[3].fired_at >= t0 + 4200 && r[3].fired_at < t0 + 4400);
    /* Close with a timer armed: it is disarmed, the wheel freed in the callback. */
    gw_tw_start(W, &r[0].t, gw_tw_now(W) + 100, on_fire_now);
    gw_tw_close(W);
    assert_int_equal(r[0].t.armed, 0);
    gw_tw_stop(&r[0].t); /* a no-op after close */
    uv_close((uv_handle_t *)&keep, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* A timer re-armed from its own callback for "now" runs on a later turn of
 * the loop, not in a busy loop. */
static int rearms;
static void on_rearm(gw_tw_timer *t)
{
    if (++rearms < 5)
        gw_tw_start(W, t, gw_tw_now(W), on_rearm);
}

static void test_rearm_from_callback(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    W = gw_tw_new(&loop);
    gw_tw_timer t = {0};
    rearms = 0;
    gw_tw_start(W, &t, gw_tw_now(W), on_rearm);
    uv_timer_t keep;
    uv_timer_init(&loop, &keep);
    uv_timer_start(&keep, stop_loop, 200, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(rearms, 5);
    gw_tw_close(W);
    uv_close((uv_handle_t *)&keep, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* Stopping the timer the loop would wake for next moves the wake-up to the
 * next one: the first turn of the loop runs the later timer, it does not
 * wake for nothing at the stopped one's time (an idle gateway's answered
 * response timeouts were such wake-ups). */
static void test_stop_moves_wakeup(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    W = gw_tw_new(&loop);
    int64_t t0 = gw_tw_now(W);
    struct rec early = {0}, late = {0};
    early.t.data = &early;
    late.t.data = &late;
    fired = 0;
    gw_tw_start(W, &early.t, t0 + 20, on_fire_now);
    gw_tw_start(W, &late.t, t0 + 120, on_fire_now);
    gw_tw_stop(&early.t);
    uv_timer_t keep; /* the wheel's own timer does not keep the loop alive */
    uv_timer_init(&loop, &keep);
    uv_timer_start(&keep, stop_loop, 5000, 0);
    for (int i = 0; i < 100 && !late.n; i++) {
        uv_run(&loop, UV_RUN_ONCE);
        if (!late.n)
            fail_msg("the loop woke at %lld ms with nothing due", (long long)(gw_tw_now(W) - t0));
    }
    assert_int_equal(early.n, 0);
    assert_int_equal(late.n, 1);
    assert_true(late.fired_at >= t0 + 120);
    gw_tw_close(W);
    uv_close((uv_handle_t *)&keep, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* A timer more than a turn away does not wake the loop each time its slot
 * comes round: one wake-up half a turn before it is due moves it into the
 * wheel, the next runs it (before: a wake-up for nothing after 104 ms). */
static void test_far_timer_wakes_once_early(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    W = gw_tw_new(&loop);
    int64_t t0 = gw_tw_now(W);
    struct rec far = {0}, near = {0};
    far.t.data = &far;
    near.t.data = &near;
    fired = 0;
    gw_tw_start(W, &far.t, t0 + 4200, on_fire_now);
    gw_tw_start(W, &near.t, t0 + 10, on_fire_now); /* the wheel re-aims after it */
    uv_timer_t keep;
    uv_timer_init(&loop, &keep);
    uv_timer_start(&keep, stop_loop, 6000, 0);
    int wakes = 0;
    int64_t first = -1;
    while (!near.n)
        uv_run(&loop, UV_RUN_ONCE);
    while (!far.n && wakes < 10) {
        uv_run(&loop, UV_RUN_ONCE);
        wakes++;
        if (first < 0)
            first = gw_tw_now(W) - t0;
    }
    assert_int_equal(far.n, 1);
    assert_true(far.fired_at >= t0 + 4200);
    if (wakes > 2 || first < 2000)
        fail_msg("%d wake-ups, the first at %lld ms", wakes, (long long)first);
    gw_tw_close(W);
    uv_close((uv_handle_t *)&keep, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stop_moves_wakeup),
        cmocka_unit_test(test_far_timer_wakes_once_early),
        cmocka_unit_test(test_order_and_stop),
        cmocka_unit_test(test_rearm_from_callback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
