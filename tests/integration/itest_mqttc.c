/* The gateway's Paho wrapper (base/mqttc.c) against a real mosquitto
 * started by the test, and against a fake broker that refuses MQTT 3.1.1:
 * events reach the loop in order (connect, subscribe, delivery with the
 * publish's token, message), an oversized message is a counted drop, the
 * protocol version is pinned (no second CONNECT as 3.1 "MQIsdp"), and close
 * leaves a loop that closes clean. Linked with libgw.a (see the Makefile).
 * Every wait is bounded by a guard timer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/model.h"
#include "base/mqttc.h"
#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXEV 64

struct rec {
    uv_loop_t loop;
    uv_timer_t guard;
    gw_mqttc *c;
    int types[MAXEV], n;
    int delivered_token, published_token;
    char topic[64], payload[64];
    int messages;
    int want; /* stop the loop when this event type arrives */
    int timed_out;
    int dtok[256], nd; /* every DELIVERED token, in order */
    int hold;          /* test_delivery_while_publishing: publish, hold the loop, publish again */
    int survived;      /* ... and the second publish returned */
    int was_full;      /* ... after the queue had filled */
};

static void on_ev(void *ctx, const gw_mqttc_event *e)
{
    struct rec *r = ctx;
    if (e->type == GW_MQTTC_BATCH_END)
        return;
    if (r->n < MAXEV)
        r->types[r->n++] = e->type;
    if (e->type == GW_MQTTC_DELIVERED) {
        r->delivered_token = e->token;
        if (r->nd < 256)
            r->dtok[r->nd++] = e->token;
    }
    if (e->type == GW_MQTTC_MESSAGE && r->hold) {
        /* On the loop, in the middle of a batch: held while the flood fills the queue, a
         * publish, held while its PUBACK comes back, then a publish again. */
        r->hold = 0;
        int token;
        /* Held until the flood filled the queue: a message was dropped (bounded: 5 s). */
        for (int i = 0; i < 500 && !gw_mqttc_dropped(r->c); i++)
            usleep(10 * 1000);
        r->was_full = gw_mqttc_dropped(r->c) > 0;
        assert_int_equal(gw_mqttc_publish(r->c, "held/a", "a", 1, 1, 0, &token, NULL), GW_OK);
        /* Held until its PUBACK came back into the full queue, taken over the bound. */
        for (int i = 0; i < 500 && !gw_mqttc_over(r->c); i++)
            usleep(10 * 1000);
        gw_mqttc_publish(r->c, "held/b", "b", 1, 1, 0, NULL, NULL);
        r->survived = 1;
        uv_stop(&r->loop);
        return;
    }
    if (e->type == GW_MQTTC_MESSAGE) {
        r->messages++;
        snprintf(r->topic, sizeof(r->topic), "%s", e->topic);
        snprintf(r->payload, sizeof(r->payload), "%.*s", (int)e->len, e->payload);
        assert_int_equal(e->payload[e->len], '\0');
    }
    if (e->type == r->want || (r->want == GW_MQTTC_CONNECTED && e->type == GW_MQTTC_CONNECT_FAILED))
        uv_stop(&r->loop);
}

static void on_guard(uv_timer_t *t)
{
    struct rec *r = t->data;
    r->timed_out = 1;
    uv_stop(&r->loop);
}

/* Runs the loop until event `type` arrives (bounded: 10 s). */
static int wait_for(struct rec *r, int type)
{
    r->want = type;
    r->timed_out = 0;
    uv_timer_start(&r->guard, on_guard, 10000, 0);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    uv_timer_stop(&r->guard);
    for (int i = 0; i < r->n; i++)
        if (r->types[i] == type)
            return 1;
    return 0;
}

static void rec_init(struct rec *r)
{
    memset(r, 0, sizeof(*r));
    assert_int_equal(uv_loop_init(&r->loop), 0);
    uv_timer_init(&r->loop, &r->guard);
    r->guard.data = r;
}

static void rec_close(struct rec *r)
{
    gw_mqttc_close(r->c, 1000);
    uv_close((uv_handle_t *)&r->guard, NULL);
    assert_int_equal(uv_run(&r->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&r->loop), 0);
}

/* r connected to mosquitto on port as client id, subscribed to topic at qos (bounded
 * waits); queue_max and max_bytes as in gw_mqttc_config. */
static void rec_connect(struct rec *r, int port, const char *id, size_t queue_max, size_t max_bytes,
                        char *topic, int qos)
{
    rec_init(r);
    char uri[64];
    snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", port);
    gw_mqttc_config cfg = {.uri = uri,
                           .client_id = id,
                           .keepalive_ms = 30000,
                           .connect_timeout_ms = 5000,
                           .queue_max = queue_max,
                           .max_message_bytes = max_bytes};
    char err[256];
    r->c = gw_mqttc_new(&r->loop, &cfg, on_ev, r, err, sizeof(err));
    assert_non_null(r->c);
    assert_int_equal(gw_mqttc_connect(r->c, NULL), GW_OK);
    assert_true(wait_for(r, GW_MQTTC_CONNECTED));
    assert_int_equal(r->types[0], GW_MQTTC_CONNECTED);
    char *topics[] = {topic};
    int q[] = {qos};
    assert_int_equal(gw_mqttc_subscribe(r->c, 1, topics, q), GW_OK);
    assert_true(wait_for(r, GW_MQTTC_SUBSCRIBED));
}

/* mosquitto on a free port (*port) in broker, and r connected to it (rec_connect's args). */
static void rec_with_broker(struct rec *r, h_proc *broker, int *port, const char *id,
                            size_t queue_max, size_t max_bytes, char *topic, int qos)
{
    *port = h_free_port_range(1);
    assert_true(*port > 0);
    assert_int_equal(h_broker_start(broker, *port), 0);
    rec_connect(r, *port, id, queue_max, max_bytes, topic, qos);
}

static void test_roundtrip_with_mosquitto(void **state)
{
    int port;
    h_proc broker;
    struct rec r;
    rec_with_broker(&r, &broker, &port, "itest-mqttc", 16, 32, "itest/#", 1);

    /* Too large for max_message_bytes: dropped and counted, never delivered. */
    char big[100];
    memset(big, 'x', sizeof(big));
    assert_int_equal(gw_mqttc_publish(r.c, "itest/big", big, sizeof(big), 1, 0, NULL, NULL), GW_OK);
    assert_int_equal(gw_mqttc_publish(r.c, "itest/a", "hello", 5, 1, 0, &r.published_token, NULL),
                     GW_OK);
    assert_true(wait_for(&r, GW_MQTTC_MESSAGE));
    assert_int_equal(r.messages, 1);
    assert_string_equal(r.topic, "itest/a");
    assert_string_equal(r.payload, "hello");
    if (r.delivered_token != r.published_token)
        assert_true(wait_for(&r, GW_MQTTC_DELIVERED));
    assert_int_equal(r.delivered_token, r.published_token);
    assert_int_equal(gw_mqttc_dropped(r.c), 0);
    assert_int_equal(gw_mqttc_oversize(r.c), 1); /* its own counter, not a full queue */

    rec_close(&r);
    assert_int_equal(h_stop(&broker), 0);
}

/* A fake broker: answers every CONNECT with CONNACK "unacceptable protocol
 * version" and records the protocol names it saw. */
struct fake {
    int lfd, port;
    int connects, mqisdp, mqtt311;
};

static void fake_serve(struct fake *f, int ms)
{
    int64_t end = h_now_ms() + ms;
    while (h_now_ms() < end) {
        struct pollfd p = {f->lfd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        uint8_t buf[512];
        struct pollfd q = {fd, POLLIN, 0};
        ssize_t n = poll(&q, 1, 2000) > 0 ? read(fd, buf, sizeof(buf)) : -1;
        if (n >= 10 && buf[0] == 0x10) {
            f->connects++;
            /* fixed header, then the protocol name (2-byte length + text). */
            size_t at = 1;
            while (at < (size_t)n && (buf[at] & 0x80))
                at++;
            at++;
            if (at + 2 < (size_t)n) {
                size_t len = (size_t)buf[at] << 8 | buf[at + 1];
                if (len == 6 && at + 8 < (size_t)n && !memcmp(buf + at + 2, "MQIsdp", 6))
                    f->mqisdp++;
                if (len == 4 && at + 6 < (size_t)n && !memcmp(buf + at + 2, "MQTT", 4) &&
                    buf[at + 6] == 4)
                    f->mqtt311++;
            }
            const uint8_t connack[] = {0x20, 0x02, 0x00, 0x01};
            if (write(fd, connack, sizeof(connack)) < 0) {
            }
        }
        close(fd);
    }
}

static void test_version_pinned(void **state)
{
    struct fake f = {0};
    f.port = h_free_port_range(1);
    assert_true(f.port > 0);
    f.lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(f.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)f.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(f.lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(f.lfd, 8), 0);

    struct rec r;
    rec_init(&r);
    char uri[64];
    snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", f.port);
    gw_mqttc_config cfg = {
        .uri = uri, .client_id = "itest-pin", .keepalive_ms = 30000, .connect_timeout_ms = 2000};
    char err[256];
    r.c = gw_mqttc_new(&r.loop, &cfg, on_ev, &r, err, sizeof(err));
    assert_non_null(r.c);
    assert_int_equal(gw_mqttc_connect(r.c, NULL), GW_OK);
    /* Serve until Paho had time for its fall-back attempt, then see the
     * outcome on the loop. */
    fake_serve(&f, 1500);
    assert_true(wait_for(&r, GW_MQTTC_CONNECT_FAILED));
    fake_serve(&f, 300);
    assert_int_equal(f.connects, 1);
    assert_int_equal(f.mqtt311, 1);
    assert_int_equal(f.mqisdp, 0);
    close(f.lfd);
    rec_close(&r);
}

/* Publish-only use (no callback): no loop handle, closes at once. Paho buffers
 * while disconnected only after a first connection: before it a publish is
 * refused with Paho's code, told apart from the buffer's back-pressure. */
static void test_publish_only(void **state)
{
    gw_mqttc_config cfg = {.uri = "tcp://127.0.0.1:1",
                           .client_id = "itest-po",
                           .keepalive_ms = 30000,
                           .send_while_disconnected = 1,
                           .max_buffered = 2};
    char err[256];
    gw_mqttc *c = gw_mqttc_new(NULL, &cfg, NULL, NULL, err, sizeof(err));
    assert_non_null(c);
    int prc = 0;
    assert_int_equal(gw_mqttc_publish(c, "t", "a", 1, 1, 0, NULL, &prc), GW_ERR);
    assert_int_not_equal(prc, 0);
    gw_mqttc_close(c, 100);
}

static void test_password_sources(void **state)
{
    char out[16], err[256];
    const char *f = h_write_file("pw", "s3cret\nsecond line\n");
    assert_int_equal(gw_mqttc_read_password("x.", f, NULL, out, sizeof(out), err, sizeof(err)), 0);
    assert_string_equal(out, "s3cret");
    setenv("ITEST_MQTTC_PW", "from-env", 1);
    assert_int_equal(
        gw_mqttc_read_password("x.", f, "ITEST_MQTTC_PW", out, sizeof(out), err, sizeof(err)), 0);
    assert_string_equal(out, "from-env");
    assert_int_equal(
        gw_mqttc_read_password("x.", NULL, "ITEST_MQTTC_UNSET", out, sizeof(out), err, sizeof(err)),
        GW_EINVAL);
    assert_non_null(strstr(err, "x.password_env"));
    assert_int_equal(
        gw_mqttc_read_password("x.", "/nonexistent/pw", NULL, out, sizeof(out), err, sizeof(err)),
        GW_EINVAL);
    assert_non_null(strstr(err, "x.password_file"));
}

/* Paho calls its callbacks holding its own lock, which every publish from the loop takes
 * too. A delivery (PUBACK) arriving while a flood of messages keeps the queue to the loop
 * full must not make Paho's thread wait for the loop: the loop, publishing in the middle
 * of a batch, would wait for Paho's lock forever (found by itest_attack_cmd: a command
 * flood froze the gateway). SIGALRM bounds the test. */
static void on_alarm(int sig)
{
    static const char msg[] = "deadlock: the loop's publish never returned\n";
    if (write(2, msg, sizeof(msg) - 1) < 0) {
    }
    _exit(3);
}

static void test_delivery_while_publishing(void **state)
{
    int port;
    h_proc broker, flood;
    struct rec r;
    rec_with_broker(&r, &broker, &port, "itest-held", 4, 0, "flood/#", 0);

    char *lines = malloc(2000000);
    assert_non_null(lines);
    size_t n = 0;
    for (int i = 0; i < 200000; i++)
        n += (size_t)snprintf(lines + n, 2000000 - n, "m%d\n", i);
    const char *file = h_write_file("flood.txt", lines);
    free(lines);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "mosquitto_pub -h 127.0.0.1 -p %d -t flood/x -l < %s", port, file);
    char *argv[] = {"sh", "-c", cmd, NULL};
    assert_int_equal(h_spawn(&flood, "flood.log", argv), 0);

    r.hold = 1;
    signal(SIGALRM, on_alarm);
    alarm(20);
    assert_true(wait_for(&r, GW_MQTTC_MESSAGE) || r.survived);
    alarm(0);
    assert_true(r.survived);
    /* The PUBACK of held/a met the full mailbox: taken over its bound, and counted. */
    assert_true(r.was_full);
    assert_true(gw_mqttc_over(r.c) > 0);
    h_wait(&flood, 10000);
    rec_close(&r);
    assert_int_equal(h_stop(&broker), 0);
}

/* The premise of gateway/uplink.c's on_delivered: a PUBACK's token names one message. Every
 * QoS 1 publish, with or without a token asked for (replies and announcements ask for none),
 * is reported DELIVERED once, and no two messages in flight share a token, so a reply's
 * delivery cannot be taken for a lane slot's. */
static void test_tokens_distinct(void **state)
{
    int port;
    h_proc broker;
    struct rec r;
    rec_with_broker(&r, &broker, &port, "itest-tokens", 16, 0, "nothing/#", 1);
    enum { N = 40 };
    int mine[N / 2], nm = 0;
    for (int i = 0; i < N; i++) /* all at once: most are in flight together */
        assert_int_equal(
            gw_mqttc_publish(r.c, "tok/x", "x", 1, 1, 0, i % 2 ? NULL : &mine[nm++], NULL), GW_OK);
    r.want = -1;
    uv_timer_start(&r.guard, on_guard, 10000, 0);
    while (r.nd < N && !r.timed_out && uv_run(&r.loop, UV_RUN_ONCE))
        ;
    uv_timer_stop(&r.guard);
    assert_int_equal(r.nd, N);
    for (int i = 0; i < N; i++) {
        assert_true(r.dtok[i] > 0);
        for (int j = 0; j < i; j++)
            assert_int_not_equal(r.dtok[i], r.dtok[j]);
    }
    for (int k = 0; k < nm; k++) { /* each token asked for is among them, once */
        int seen = 0;
        for (int i = 0; i < N; i++)
            seen += r.dtok[i] == mine[k];
        assert_int_equal(seen, 1);
    }
    rec_close(&r);
    assert_int_equal(h_stop(&broker), 0);
}

static int teardown(void **state)
{
    h_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_roundtrip_with_mosquitto, teardown),
        cmocka_unit_test(test_version_pinned),
        cmocka_unit_test(test_publish_only),
        cmocka_unit_test_teardown(test_delivery_while_publishing, teardown),
        cmocka_unit_test_teardown(test_tokens_distinct, teardown),
        cmocka_unit_test_teardown(test_password_sources, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
