/* Unit tests of base/mailbox.c: several producer threads against one loop,
 * the item and byte bounds (counted drops), the KEEP class (push-back, nothing
 * lost), close with a callback (waiting items discarded, waiting producers
 * released) and a loop that closes clean. Every wait is bounded by a timer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "base/mailbox.h"
#include "base/model.h"

#include <stdlib.h>
#include <string.h>

#define PRODUCERS 4

struct item {
    gw_mail m; /* first: the mailbox may free() a plain item */
    int producer;
    int seq;
    int done; /* the producer's last item */
};

struct fixture {
    uv_loop_t loop;
    gw_mailbox mb;
    uv_timer_t guard;
    uv_thread_t th[PRODUCERS];
    struct parg {
        struct fixture *f;
        int me;
    } arg[PRODUCERS];
    int unexpected; /* a post returned what it must not */
    int per_producer, flags, item_bytes;
    int last_seq[PRODUCERS];
    int dones, posted_ok[PRODUCERS], refused[PRODUCERS];
    long got, discarded;
    int order_broken, closed, timed_out;
};

static void on_mb_closed(gw_mailbox *mb)
{
    struct fixture *f = mb->data;
    f->closed = 1;
    uv_close((uv_handle_t *)&f->guard, NULL);
}

static void deliver(gw_mailbox *mb, gw_mail *list)
{
    struct fixture *f = mb->data;
    while (list) {
        struct item *it = (struct item *)list;
        list = list->next;
        if (it->seq <= f->last_seq[it->producer])
            f->order_broken = 1;
        f->last_seq[it->producer] = it->seq;
        f->got++;
        if (it->done && ++f->dones == PRODUCERS) {
            /* Every producer posted its last item: none posts again. */
            for (int i = 0; i < PRODUCERS; i++)
                uv_thread_join(&f->th[i]);
            gw_mailbox_close(mb, on_mb_closed);
        }
        free(it);
    }
}

static void discard(gw_mailbox *mb, gw_mail *m)
{
    struct fixture *f = mb->data;
    f->discarded++;
    free(m);
}

static void on_guard(uv_timer_t *t)
{
    struct fixture *f = t->data;
    f->timed_out = 1;
    uv_stop(&f->loop);
}

static void producer(void *arg)
{
    struct parg *a = arg;
    struct fixture *f = a->f;
    int me = a->me;
    for (int i = 1; i <= f->per_producer; i++) {
        struct item *it = calloc(1, sizeof(*it));
        if (!it)
            abort();
        it->producer = me;
        it->seq = i;
        it->done = i == f->per_producer;
        /* The last item is always KEEP, so the loop learns we are done. */
        int rc = gw_mailbox_post(&f->mb, &it->m, (size_t)f->item_bytes,
                                 it->done ? GW_MAIL_KEEP : f->flags);
        if (rc == GW_OK) {
            f->posted_ok[me]++;
        } else {
            if (rc != GW_EFULL || it->done)
                f->unexpected++;
            f->refused[me]++;
            free(it);
        }
    }
}

static void run_producers(struct fixture *f, size_t max_items, size_t max_bytes)
{
    memset(f, 0, sizeof(*f));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->mb.data = f;
    assert_int_equal(gw_mailbox_init(&f->mb, &f->loop, max_items, max_bytes, deliver, discard), 0);
    assert_ptr_equal(f->mb.data, f);
}

static void start(struct fixture *f)
{
    uv_timer_init(&f->loop, &f->guard);
    f->guard.data = f;
    uv_timer_start(&f->guard, on_guard, 20000, 0);
    for (int i = 0; i < PRODUCERS; i++) {
        f->arg[i].f = f;
        f->arg[i].me = i;
        assert_int_equal(uv_thread_create(&f->th[i], producer, &f->arg[i]), 0);
    }
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_false(f->timed_out);
    assert_true(f->closed);
    assert_int_equal(f->unexpected, 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

/* Ordinary items through a small mailbox: some are refused, each refusal is
 * counted, nothing is delivered twice or out of a producer's order. */
static void test_bounded_drops_counted(void **state)
{
    static struct fixture f;
    run_producers(&f, 8, 0);
    f.per_producer = 20000;
    f.flags = 0;
    start(&f);
    /* The producers are joined and the mailbox closed: read its counters. */
    gw_mailbox_stats st = f.mb.st;
    long refused = 0, ok = 0;
    for (int i = 0; i < PRODUCERS; i++) {
        refused += f.refused[i];
        ok += f.posted_ok[i];
    }
    assert_false(f.order_broken);
    assert_int_equal(ok + refused, (long)PRODUCERS * f.per_producer);
    assert_int_equal(st.posted, (uint64_t)ok);
    assert_int_equal(st.delivered, (uint64_t)ok);
    assert_int_equal(st.dropped_full, (uint64_t)refused);
    assert_int_equal(f.got, ok);
    assert_int_equal(f.discarded, 0);
    assert_true(st.peak <= 8 + PRODUCERS); /* KEEP items may wait past the bound, nothing else */
}

/* KEEP items through a tiny mailbox: producers wait, nothing is lost. */
static void test_keep_pushes_back(void **state)
{
    static struct fixture f;
    run_producers(&f, 4, 0);
    f.per_producer = 20000;
    f.flags = GW_MAIL_KEEP;
    start(&f);
    assert_false(f.order_broken);
    assert_int_equal(f.got, (long)PRODUCERS * f.per_producer);
    assert_int_equal(f.mb.st.dropped_full, 0);
    assert_int_equal(f.mb.st.delivered, (uint64_t)f.got);
    assert_true(f.mb.st.peak <= 4);
    for (int i = 0; i < PRODUCERS; i++)
        assert_int_equal(f.last_seq[i], f.per_producer);
}

/* The byte bound refuses what would go over it, but one item always fits. */
static void test_byte_bound(void **state)
{
    static struct fixture f;
    run_producers(&f, 1000, 100);
    gw_mail *a = calloc(1, sizeof(struct item)), *b = calloc(1, sizeof(struct item)),
            *c = calloc(1, sizeof(struct item));
    assert_int_equal(gw_mailbox_post(&f.mb, a, 500, 0), GW_OK); /* first: fits anyway */
    assert_int_equal(gw_mailbox_post(&f.mb, b, 1, 0), GW_EFULL);
    /* KEEP from the loop thread cannot wait on itself: taken over the bound. */
    assert_int_equal(gw_mailbox_post(&f.mb, c, 1, GW_MAIL_KEEP), GW_OK);
    gw_mailbox_stats st;
    gw_mailbox_get_stats(&f.mb, &st);
    assert_int_equal(st.posted, 2);
    assert_int_equal(st.dropped_full, 1);
    assert_int_equal(st.depth, 2);
    gw_mailbox_count_drop(&f.mb);
    gw_mailbox_get_stats(&f.mb, &st);
    assert_int_equal(st.dropped, 1);
    free(b);
    /* Close without running the loop first: both waiting items are discarded. */
    gw_mailbox_close(&f.mb, NULL);
    assert_int_equal(gw_mailbox_post(&f.mb, b = calloc(1, sizeof(struct item)), 1, 0), GW_ERR);
    free(b);
    assert_int_equal(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f.discarded, 2);
    assert_int_equal(f.got, 0);
    assert_int_equal(uv_loop_close(&f.loop), 0);
}

struct blocked {
    gw_mailbox *mb;
    int rc;
    struct item *it;
};

static void blocked_poster(void *arg)
{
    struct blocked *b = arg;
    b->rc = gw_mailbox_post(b->mb, &b->it->m, 0, GW_MAIL_KEEP);
}

static void on_close_cb(gw_mailbox *mb)
{
    struct fixture *f = mb->data;
    f->closed++;
}

/* A producer waiting with KEEP on a full mailbox is released by close with
 * GW_ERR and keeps its item; the close callback runs once, after the handle
 * is closed, and the loop closes clean. */
static void test_close_releases_waiters(void **state)
{
    static struct fixture f;
    run_producers(&f, 1, 0);
    struct item *first = calloc(1, sizeof(*first));
    assert_int_equal(gw_mailbox_post(&f.mb, &first->m, 0, 0), GW_OK);
    struct blocked b = {&f.mb, 1, calloc(1, sizeof(struct item))};
    uv_thread_t t;
    assert_int_equal(uv_thread_create(&t, blocked_poster, &b), 0);
    /* Bounded wait until the thread is waiting for room. */
    int waiting = 0;
    for (int i = 0; i < 5000 && !waiting; i++) {
        gw_mailbox_stats st;
        gw_mailbox_get_stats(&f.mb, &st);
        waiting = st.waits == 1;
        if (!waiting)
            uv_sleep(1);
    }
    assert_true(waiting);
    gw_mailbox_close(&f.mb, on_close_cb);
    uv_thread_join(&t);
    assert_int_equal(b.rc, GW_ERR);
    free(b.it);
    assert_int_equal(f.closed, 0); /* not before the loop has closed the handle */
    assert_int_equal(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f.closed, 1);
    assert_int_equal(f.discarded, 1);
    assert_int_equal(uv_loop_close(&f.loop), 0);
}

static void test_init_refuses_no_bound(void **state)
{
    uv_loop_t loop;
    gw_mailbox mb;
    memset(&mb, 0, sizeof(mb));
    uv_loop_init(&loop);
    assert_int_equal(gw_mailbox_init(&mb, &loop, 0, 0, deliver, NULL), GW_EINVAL);
    assert_int_equal(gw_mailbox_init(&mb, &loop, 1, 0, NULL, NULL), GW_EINVAL);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bounded_drops_counted),
        cmocka_unit_test(test_keep_pushes_back),
        cmocka_unit_test(test_byte_bound),
        cmocka_unit_test(test_close_releases_waiters),
        cmocka_unit_test(test_init_refuses_no_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
