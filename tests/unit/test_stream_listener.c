/* The stream listener with a toy line protocol, over real loopback sockets.
 *
 * Toy protocol: frames are lines ending in '\n'. "AUTH good" is accepted
 * (configured station, right password) and answered "ok\n" after the commit
 * of a real outbox; "AUTH bad" refuses the peer; any other line is ignored
 * (proves nothing). The test drives the loop itself: every wait pumps
 * uv_run(NOWAIT) and polls the client socket, bounded in time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "gateway/core_internal.h"
#include "protocols/stream_listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct toy {
    int frames, closes;
} toy;

static int toy_scan(void *ctx, gw_slc *c, const uint8_t *buf, size_t len, gw_sl_span *sp)
{
    const uint8_t *nl = memchr(buf, '\n', len);
    if (!nl)
        return GW_SL_MORE;
    sp->frame = buf;
    sp->frame_len = (size_t)(nl - buf);
    sp->consumed = sp->frame_len + 1;
    return GW_SL_FRAME;
}

static int toy_frame(void *ctx, gw_slc *c, const void *frame, size_t len)
{
    toy *t = ctx;
    t->frames++;
    if (len == 9 && !memcmp(frame, "AUTH good", 9)) {
        gw_sl_reply_after_commit(c, "ok\n", 3);
        return GW_SL_ACCEPT;
    }
    if (len == 8 && !memcmp(frame, "AUTH bad", 8))
        return GW_SL_CLOSE;
    return GW_SL_IGNORE;
}

static void toy_close(void *ctx, gw_slc *c)
{
    ((toy *)ctx)->closes++;
}

static const gw_sl_proto toy_proto = {
    .module = "toy",
    .frame_starts = "A",
    .scan = toy_scan,
    .on_frame = toy_frame,
    .on_close = toy_close,
};

static uv_loop_t loop;
static gw_core core;
static toy T;
static char dir[64];

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pump(int ms)
{
    int64_t end = now_ms() + ms;
    do {
        uv_run(&loop, UV_RUN_NOWAIT);
        poll(NULL, 0, 1);
    } while (now_ms() < end);
}

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/test_sl.XXXXXX");
    assert_non_null(mkdtemp(dir));
    assert_int_equal(uv_loop_init(&loop), 0);
    memset(&core, 0, sizeof(core));
    core.loop = &loop;
    gw_store_config sc;
    memset(&sc, 0, sizeof(sc));
    snprintf(sc.path, sizeof(sc.path), "%s/outbox.db", dir);
    sc.max_bytes = 1 << 20;
    sc.commit_window = 1;
    sc.queue_max = 100;
    char err[256];
    core.store = gw_store_open(&loop, &sc, NULL, NULL, err, sizeof(err));
    assert_non_null(core.store);
    memset(&T, 0, sizeof(T));
    return 0;
}

static int teardown(void **state)
{
    gw_store_close(core.store);
    for (int i = 0; i < 2000 && uv_loop_alive(&loop); i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        poll(NULL, 0, 1);
    }
    assert_int_equal(uv_loop_close(&loop), 0);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static gw_sl *start(int64_t maxc, int64_t per_source, int64_t idle_ms, int64_t auth_ms,
                    size_t bufsize)
{
    gw_sl_conf c;
    memset(&c, 0, sizeof(c));
    snprintf(c.listen, sizeof(c.listen), "127.0.0.1:0");
    c.max_connections = maxc;
    c.max_per_source = per_source;
    c.idle_timeout_ms = idle_ms;
    c.auth_timeout_ms = auth_ms;
    char err[256];
    gw_sl *sl = gw_sl_start(&core, &c, bufsize, &toy_proto, &T, err, sizeof(err));
    assert_non_null(sl);
    return sl;
}

static int client(gw_sl *sl)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)gw_sl_port(sl))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    pump(20); /* let the listener accept it, in order */
    return fd;
}

static void say(int fd, const char *s)
{
    assert_int_equal(send(fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
}

/* Pumps until fd has n bytes or the peer closed; returns bytes read (-1: closed). */
static ssize_t hear(int fd, char *buf, size_t n, int ms)
{
    size_t got = 0;
    int64_t end = now_ms() + ms;
    while (now_ms() < end && got < n) {
        uv_run(&loop, UV_RUN_NOWAIT);
        ssize_t r = recv(fd, buf + got, n - got, 0);
        if (r == 0)
            return got ? (ssize_t)got : -1;
        if (r > 0)
            got += (size_t)r;
        else
            poll(NULL, 0, 1);
    }
    return (ssize_t)got;
}

/* 1 when the listener closed fd within ms. */
static int closed_within(int fd, int ms)
{
    char b[64];
    int64_t end = now_ms() + ms;
    while (now_ms() < end) {
        uv_run(&loop, UV_RUN_NOWAIT);
        ssize_t r = recv(fd, b, sizeof(b), 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            return 1;
        if (r < 0)
            poll(NULL, 0, 1);
    }
    return 0;
}

static void test_reply_after_commit(void **state)
{
    gw_sl *sl = start(8, 8, 5000, 5000, 64);
    int fd = client(sl);
    say(fd, "noise\nAUTH good\n");
    char buf[8] = "";
    assert_int_equal(hear(fd, buf, 3, 3000), 3);
    assert_memory_equal(buf, "ok\n", 3);
    gw_sl_stats st;
    gw_sl_get_stats(sl, &st);
    assert_int_equal(st.accepted, 1);
    assert_int_equal(st.open, 1);
    assert_int_equal(st.unauth, 0);
    assert_int_equal(st.replies, 1);
    assert_int_equal(T.frames, 2);
    close(fd);
    pump(50);
    gw_sl_get_stats(sl, &st);
    assert_int_equal(st.open, 0);
    assert_int_equal(T.closes, 1);
    gw_sl_stop(sl);
}

/* Garbage, even valid-looking lines that prove nothing, does not keep an
 * unauthenticated connection past the auth window. */
static void test_auth_window(void **state)
{
    gw_sl *sl = start(8, 8, 60000, 300, 64);
    int fd = client(sl);
    int64_t t0 = now_ms();
    for (int i = 0; i < 5; i++) {
        say(fd, "garbage\n");
        pump(40);
    }
    assert_true(closed_within(fd, 2000));
    assert_true(now_ms() - t0 < 1500);
    gw_sl_stats st;
    gw_sl_get_stats(sl, &st);
    assert_int_equal(st.auth_timeouts, 1);
    assert_int_equal(st.open, 0);
    close(fd);
    gw_sl_stop(sl);
}

/* After authentication only accepted frames restart the idle timer. */
static void test_idle_not_refreshed_by_garbage(void **state)
{
    gw_sl *sl = start(8, 8, 300, 5000, 64);
    int fd = client(sl);
    say(fd, "AUTH good\n");
    char buf[4];
    assert_int_equal(hear(fd, buf, 3, 3000), 3);
    for (int i = 0; i < 4; i++) {
        say(fd, "zz\n");
        pump(50);
    }
    assert_true(closed_within(fd, 2000));
    gw_sl_stats st;
    gw_sl_get_stats(sl, &st);
    assert_int_equal(st.idle_closed, 1);
    close(fd);
    gw_sl_stop(sl);
}

/* At max_connections the oldest unauthenticated connection makes room. */
static void test_evict_oldest_unauth(void **state)
{
    gw_sl *sl = start(4, 100, 60000, 60000, 64);
    int fds[4];
    for (int i = 0; i < 4; i++)
        fds[i] = client(sl);
    say(fds[2], "AUTH good\n"); /* one authenticated: never evicted */
    char buf[4];
    assert_int_equal(hear(fds[2], buf, 3, 3000), 3);
    int nw = client(sl);
    say(nw, "AUTH good\n");
    assert_int_equal(hear(nw, buf, 3, 3000), 3);
    assert_true(closed_within(fds[0], 1000));
    assert_false(closed_within(fds[1], 100));
    gw_sl_stats st;
    gw_sl_get_stats(sl, &st);
    assert_int_equal(st.evicted_unauth, 1);
    assert_int_equal(st.open, 4);
    assert_int_equal(st.unauth, 2);
    /* Make every connection authenticated: the next one is refused. */
    say(fds[1], "AUTH good\n");
    say(fds[3], "AUTH good\n");
    assert_int_equal(hear(fds[1], buf, 3, 3000), 3);
    assert_int_equal(hear(fds[3], buf, 3, 3000), 3);
    int late = client(sl);
    assert_true(closed_within(late, 1000));
    gw_sl_get_stats(sl, &st);
    assert_int_equal(st.refused_full, 1);
    assert_int_equal(st.open, 4);
    for (int i = 0; i < 4; i++)
        close(fds[i]);
    close(nw);
    close(late);
    gw_sl_stop(sl);
}

static void test_per_source(void **state)
{
    gw_sl *sl = start(100, 2, 60000, 60000, 64);
    int a = client(sl), b = client(sl), c = client(sl);
    assert_true(closed_within(c, 1000));
    assert_false(closed_within(a, 50));
    gw_sl_stats st;
    gw_sl_get_stats(sl, &st);
    assert_int_equal(st.refused_per_source, 1);
    assert_int_equal(st.open, 2);
    close(a);
    pump(50);
    int d = client(sl); /* a slot of that source is free again */
    assert_false(closed_within(d, 100));
    close(b);
    close(c);
    close(d);
    gw_sl_stop(sl);
}

static void test_refused_peer_and_oversize(void **state)
{
    gw_sl *sl = start(8, 8, 60000, 60000, 16);
    int fd = client(sl);
    /* 40 bytes without a frame end: the 16-byte buffer fills, is dropped up
     * to the next 'A', and the frame after it still works. */
    say(fd, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    pump(50);
    say(fd, "\nAUTH good\n");
    char buf[4];
    assert_int_equal(hear(fd, buf, 3, 3000), 3);
    gw_sl_stats st;
    gw_sl_get_stats(sl, &st);
    assert_true(st.oversize >= 2);
    int bad = client(sl);
    say(bad, "AUTH bad\n");
    assert_true(closed_within(bad, 1000));
    gw_sl_get_stats(sl, &st);
    assert_int_equal(st.refused_peer, 1);
    assert_int_equal(st.open, 1);
    close(fd);
    close(bad);
    gw_sl_stop(sl);
}

/* A reply waiting for the outbox when the listener stops only frees memory. */
static void test_stop_with_pending_reply(void **state)
{
    gw_sl *sl = start(8, 8, 60000, 60000, 64);
    int fd = client(sl);
    say(fd, "AUTH good\n");
    for (int i = 0; i < 200 && T.frames == 0; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        poll(NULL, 0, 1);
    }
    assert_int_equal(T.frames, 1);
    gw_sl_stop(sl);
    assert_int_equal(T.closes, 1);
    assert_true(closed_within(fd, 1000));
    close(fd);
    gw_sl_stats tot;
    gw_sl_totals(&tot);
    assert_int_equal(tot.open, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reply_after_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_not_refreshed_by_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_evict_oldest_unauth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_per_source, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_peer_and_oversize, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_with_pending_reply, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
