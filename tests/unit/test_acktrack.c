/* gateway/acktrack.c: a destination's contiguous acknowledged point moves only over rows
 * that are acknowledged or filtered out, whatever order the acknowledgements come in, and
 * a lost connection resumes after it. */
#include "base/model.h"
#include "gateway/acktrack.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

static void in_order(void **state)
{
    gw_acktrack t;
    assert_int_equal(gw_acktrack_init(&t, 4, 10), GW_OK);
    assert_int_equal(t.point, 10);
    assert_int_equal(gw_acktrack_sent(&t, 11, 20), GW_OK);
    assert_int_equal(gw_acktrack_sent(&t, 21, 30), GW_OK);
    assert_int_equal(gw_acktrack_acked(&t, 11), 1);
    assert_int_equal(t.point, 20);
    assert_int_equal(gw_acktrack_acked(&t, 21), 1);
    assert_int_equal(t.point, 30);
    assert_int_equal(gw_acktrack_acked(&t, 21), 0); /* twice: nothing new */
    gw_acktrack_free(&t);
}

/* A later message acknowledged first does not move the point past the earlier one. */
static void out_of_order(void **state)
{
    gw_acktrack t;
    assert_int_equal(gw_acktrack_init(&t, 8, 0), GW_OK);
    gw_acktrack_sent(&t, 1, 5);
    gw_acktrack_sent(&t, 6, 9);
    gw_acktrack_sent(&t, 12, 15); /* 10-11 were shed or never existed */
    assert_int_equal(gw_acktrack_acked(&t, 12), 0);
    assert_int_equal(gw_acktrack_acked(&t, 6), 0);
    assert_int_equal(t.point, 0);
    assert_int_equal(gw_acktrack_acked(&t, 1), 1);
    assert_int_equal(t.point, 15);                  /* all three at once */
    assert_int_equal(gw_acktrack_acked(&t, 99), 0); /* unknown */
    gw_acktrack_free(&t);
}

/* Filtered-out rows are done: between messages, after the last one, and alone. */
static void skipped_rows(void **state)
{
    gw_acktrack t;
    assert_int_equal(gw_acktrack_init(&t, 8, 0), GW_OK);
    gw_acktrack_skip(&t, 4); /* nothing in flight: done at once */
    assert_int_equal(t.point, 4);
    gw_acktrack_sent(&t, 5, 6);
    gw_acktrack_skip(&t, 9);
    gw_acktrack_sent(&t, 10, 12);
    gw_acktrack_skip(&t, 20);
    assert_int_equal(t.point, 4);
    assert_int_equal(gw_acktrack_acked(&t, 5), 1);
    assert_int_equal(t.point, 9); /* up to the next message still waiting */
    assert_int_equal(gw_acktrack_acked(&t, 10), 1);
    assert_int_equal(t.point, 20);
    gw_acktrack_free(&t);
}

/* After a loss, what was in flight is forgotten, acknowledged or not beyond the point. */
static void reset_resumes_after_point(void **state)
{
    gw_acktrack t;
    assert_int_equal(gw_acktrack_init(&t, 2, 0), GW_OK);
    gw_acktrack_sent(&t, 1, 3);
    gw_acktrack_sent(&t, 4, 6);
    assert_int_equal(gw_acktrack_sent(&t, 7, 8), GW_EFULL); /* bounded */
    gw_acktrack_acked(&t, 4);
    gw_acktrack_reset(&t);
    assert_int_equal(t.point, 0);
    assert_int_equal(t.given, 0);
    assert_int_equal(gw_acktrack_acked(&t, 1), 0); /* a late ack of a forgotten message */
    gw_acktrack_sent(&t, 1, 3);
    assert_int_equal(gw_acktrack_acked(&t, 1), 1);
    assert_int_equal(t.point, 3);
    gw_acktrack_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(in_order),
        cmocka_unit_test(out_of_order),
        cmocka_unit_test(skipped_rows),
        cmocka_unit_test(reset_resumes_after_point),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
