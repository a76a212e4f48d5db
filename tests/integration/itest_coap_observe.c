/* The CoAP Observe client end to end: the real coap-server-notls (libcoap3-bin)
 * is the observed device, build/gateway observes one of its resources, and a
 * platform subscriber on mosquitto checks the readings.
 *
 * The observed resource is a dynamic one (coap-server -d): the test creates
 * /sensor with a PUT of a JSON document and every later PUT makes the server
 * notify its observers with the new document, which the gateway maps with a
 * json_map. (The server's own observable /time notifies every second but its
 * payload is text such as "Nov 23 16:13:22", which no gateway adapter decodes:
 * json-map refuses it as malformed.) Driving the notifications also lets every
 * one carry a value of its own, so the test sees exactly which arrived.
 *
 * Checked: the registration answer and the notifications reach the platform as
 * readings; after the device is killed and started again on the same port (the
 * observation is gone with it) the gateway observes again and readings resume
 * within observe_renew plus a margin, both for a quick restart and for a device
 * that stays away for several renew periods while the gateway's registrations
 * go to a dead port (before the fix in obs_start the error backoff grew past
 * observe_renew, up to 60 s, and 2 of 4 runs of that test failed). About 20 s. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RENEW_MS 2000   /* observe_renew in the gateway config */
#define SLACK_MS 4000   /* registration round trip, commit, uplink, platform */
#define OUTAGE_MS 16000 /* how long the device stays away in the outage test */

static struct env {
    int broker_port, dev_port;
    h_proc broker, gw, dev;
    int dev_runs;
} E;

/* ---- the observed device: coap-server-notls ---- */

/* A port free for both UDP and TCP on loopback (coap-server binds both). */
static int free_udp_tcp_port(void)
{
    for (int tries = 0; tries < 50; tries++) {
        int port = h_free_port();
        if (port <= 0)
            continue;
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        if (fd >= 0)
            close(fd);
        if (ok)
            return port;
    }
    return -1;
}

/* Runs coap-client-notls (bounded by -B) and returns the code of the answer
 * ("2.01", "2.04", ...) or "none". */
static const char *coap(const char *args)
{
    return h_coap_client(3, args);
}

/* A new state of /sensor: created by the first PUT (2.01), changed by the next
 * ones (2.04), each change notified to the observers. Returns 1 if accepted. */
static int put_depth(double depth)
{
    char args[256];
    snprintf(args, sizeof(args), "-m put -e '{\"depth\":%g}' coap://127.0.0.1:%d/sensor", depth,
             E.dev_port);
    const char *c = coap(args);
    return !strcmp(c, "2.01") || !strcmp(c, "2.04");
}

static int dev_start(void)
{
    char port[16], logname[32];
    snprintf(port, sizeof(port), "%d", E.dev_port);
    snprintf(logname, sizeof(logname), "coap-server-%d.log", ++E.dev_runs);
    char *argv[] = {"coap-server-notls", "-A", "127.0.0.1", "-p", port, "-d", "8", NULL};
    if (h_spawn(&E.dev, logname, argv))
        return -1;
    /* It binds its UDP endpoint before the TCP one on the same port. */
    return h_port_wait(E.dev_port, 10000) ? 0 : -1;
}

/* The device dies: no RST, no goodbye, its observations are gone with it. */
static void dev_kill(void)
{
    h_signal(&E.dev, SIGKILL);
    h_wait(&E.dev, 5000);
    E.dev.pid = 0;
}

/* Occurrences of text in a process log. */
static int log_count(h_proc *p, const char *text)
{
    FILE *f = fopen(p->log, "r");
    char line[2048];
    int n = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (strstr(line, text))
            n++;
    fclose(f);
    return n;
}

/* ---- what the platform saw ---- */

struct wantr {
    const char *device, *metric;
    double value;
};

static int has_reading(void *ctx)
{
    struct wantr *w = ctx;
    cJSON *items = h_platform_items("/readings"), *it;
    int found = 0;
    cJSON_ArrayForEach(it, items)
    {
        const char *d = cJSON_GetStringValue(cJSON_GetObjectItem(it, "device"));
        const char *m = cJSON_GetStringValue(cJSON_GetObjectItem(it, "metric"));
        double v = cJSON_GetNumberValue(cJSON_GetObjectItem(it, "value"));
        if (d && m && !strcmp(d, w->device) && !strcmp(m, w->metric) && fabs(v - w->value) < 1e-6)
            found = 1;
    }
    cJSON_Delete(items);
    return found;
}

/* Waits for the reading depth = v of the observed device; returns the wait in
 * ms, or -1 if it did not arrive within timeout_ms. */
static int64_t wait_depth(double v, int timeout_ms)
{
    int64_t t0 = h_now_ms();
    struct wantr w = {"obs-1", "water_depth", v};
    if (!h_platform_wait(has_reading, &w, timeout_ms))
        return -1;
    return h_now_ms() - t0;
}

/* ---- setup ---- */

static int group_setup(void **state)
{
    h_tmpdir();
    E.dev_port = free_udp_tcp_port();
    if (E.dev_port < 0 || h_peers_start(&E.broker, &E.broker_port) || dev_start() || !put_depth(1))
        return -1;
    char text[2048];
    snprintf(text, sizeof(text),
             "gateway:\n  id: gw-obs\n  data_dir: %s/data\n  log_level: info\n"
             "  shutdown_drain: 1s\n"
             "store:\n  commit_window: 2ms\n"
             "uplink:\n  uri: tcp://127.0.0.1:%d\n  topic_prefix: t\n  backoff_min: 100ms\n"
             "  backoff_max: 500ms\n"
             "devices:\n"
             "  - id: obs-1\n    protocol: coap\n    address: obs1\n    adapter: json-map\n"
             "    observe: coap://127.0.0.1:%d/sensor\n    observe_renew: %dms\n"
             "    json_map:\n      points:\n"
             "        - {path: depth, metric: water_depth, unit: cm}\n",
             h_tmpdir(), E.broker_port, E.dev_port, RENEW_MS);
    const char *path = h_write_file("gateway.yaml", text);
    return path ? h_gateway_start(&E.gw, path) : -1;
}

static int group_teardown(void **state)
{
    /* The gateway exits cleanly: no handle left open, no leak under ASan. */
    return h_peers_stop(&E.gw, &E.dev, &E.broker) == 0 ? 0 : -1;
}

/* ---- tests ---- */

/* The answer to the registration carries the current state (1); three changes
 * arrive as three notifications, each one a reading at the platform. */
static void test_notifications_arrive(void **st)
{
    assert_true(wait_depth(1, 10000) >= 0);
    for (int v = 2; v <= 4; v++) {
        assert_true(put_depth(v));
        int64_t ms = wait_depth(v, 5000);
        if (ms < 0)
            fail_msg("notification depth=%d did not arrive", v);
    }
    /* Each was one notification: the gateway did not need to observe again. */
    assert_false(h_log_contains(&E.gw, "observing coap://"));
}

/* Killed and started again at once on the same port: the new process knows no
 * observer, so only the gateway's re-registration after observe_renew without
 * a notification brings readings back. */
static void test_reregisters_after_restart(void **st)
{
    dev_kill();
    assert_int_equal(dev_start(), 0);
    assert_true(put_depth(100)); /* created again, no observer to notify */
    int64_t ms = wait_depth(100, RENEW_MS + SLACK_MS);
    if (ms < 0)
        fail_msg("no reading within observe_renew (%d ms) + %d ms after the restart", RENEW_MS,
                 SLACK_MS);
    assert_true(h_log_wait(&E.gw, "observing coap://127.0.0.1:", 1000));
    /* A real observation again, not a one-off answer: changes are notified. */
    for (int v = 101; v <= 103; v++) {
        assert_true(put_depth(v));
        if (wait_depth(v, 5000) < 0)
            fail_msg("notification depth=%d after the restart did not arrive", v);
    }
}

/* Away for several observe_renew periods: every registration meanwhile goes to
 * a dead port (ICMP port unreachable: a lost request). Once the device is back,
 * readings resume within observe_renew plus the margin, however long it was
 * away: the retry pace after errors never falls behind observe_renew. */
static void test_reregisters_after_outage(void **st)
{
    int before = log_count(&E.gw, "observing coap://");
    int64_t killed = h_now_ms();
    dev_kill();
    /* Wait (bounded) until the gateway has observed again into the void. */
    while (log_count(&E.gw, "observing coap://") <= before &&
           h_now_ms() < killed + RENEW_MS + SLACK_MS)
        poll(NULL, 0, 20); /* the log is a file: re-read it at a short interval */
    assert_true(log_count(&E.gw, "observing coap://") > before);
    assert_true(h_log_wait(&E.gw, "observe coap://127.0.0.1:", 2000)); /* "... lost" */
    /* The outage itself is the scenario: the device stays away OUTAGE_MS. */
    while (h_now_ms() < killed + OUTAGE_MS)
        poll(NULL, 0, 50);
    assert_int_equal(dev_start(), 0);
    assert_true(put_depth(200));
    int64_t ms = wait_depth(200, RENEW_MS + SLACK_MS);
    if (ms < 0)
        fail_msg("no reading within observe_renew (%d ms) + %d ms after a %d ms outage", RENEW_MS,
                 SLACK_MS, OUTAGE_MS);
    print_message("readings resumed %lld ms after the device came back\n", (long long)ms);
    for (int v = 201; v <= 203; v++) {
        assert_true(put_depth(v));
        if (wait_depth(v, 5000) < 0)
            fail_msg("notification depth=%d after the outage did not arrive", v);
    }
    assert_int_equal(kill(E.gw.pid, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_notifications_arrive),
        cmocka_unit_test(test_reregisters_after_restart),
        cmocka_unit_test(test_reregisters_after_outage),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
