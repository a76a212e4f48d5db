/* SIGHUP reloads with devices of every protocol in every state: connected,
 * connecting to an address that never answers, refused, in backoff after the
 * peer closed, mid-transaction with a slow device, observing (with and
 * without a CoAP server), plus listener devices (SL651, HJ212, inbound DTU,
 * MQTT south, CoAP) and an RTU bus on a missing serial port. Each reload is
 * checked by its log line; the gateway must still run and, at the end, exit 0
 * (under ASan: no leak, no use-after-free, no libuv assertion). Issue 15
 * item 0 (aborts on reload) and item 7 (an unchanged file keeps every device
 * untouched). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int broker_port;
static h_proc broker;

static int group_setup(void **state)
{
    h_tmpdir();
    broker_port = h_free_port();
    if (h_broker_start(&broker, broker_port))
        return -1;
    return h_platform_start(broker_port);
}

static int group_teardown(void **state)
{
    h_platform_stop();
    h_stop(&broker);
    h_cleanup();
    return 0;
}

/* A TCP listener on 127.0.0.1:port. backlog 0 plus two connections that are
 * never accepted make a black hole: the kernel drops further SYNs, so a
 * client stays in "connecting". */
static int listen_on(int port, int backlog)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, backlog)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static int connect_nb(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    connect(fd, (struct sockaddr *)&a, sizeof(a));
    return fd;
}

/* The EOF peer: accepts and closes at once, so the device is always in
 * backoff after a lost connection. */
struct eof_peer {
    int fd;
    volatile int stop;
    pthread_t th;
};

static void *eof_serve(void *arg)
{
    struct eof_peer *e = arg;
    while (!e->stop) {
        struct pollfd p = {e->fd, POLLIN, 0};
        if (poll(&p, 1, 100) == 1) {
            int c = accept(e->fd, NULL, NULL);
            if (c >= 0)
                close(c);
        }
    }
    return NULL;
}

static int reloads_seen(h_proc *gw)
{
    char *text = h_slurp(gw->log);
    int n = 0;
    for (const char *p = text; p && (p = strstr(p, "SIGHUP: configuration reloaded")); p++)
        n++;
    free(text);
    return n;
}

/* Sends SIGHUP and waits (bounded) for the reload's log line. */
static int reload(h_proc *gw)
{
    int before = reloads_seen(gw);
    if (h_signal(gw, SIGHUP))
        return -1;
    for (int i = 0; i < 500; i++) {
        if (reloads_seen(gw) > before)
            return 0;
        if (kill(gw->pid, 0))
            return -1;
        usleep(10000);
    }
    return -1;
}

static int count_events(const char *device, const char *kind)
{
    cJSON *items = h_platform_items("/events");
    int n = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        const char *d = cJSON_GetStringValue(cJSON_GetObjectItem(it, "device"));
        const char *v = cJSON_GetStringValue(cJSON_GetObjectItem(it, "event"));
        if (d && v && !strcmp(d, device) && !strcmp(v, kind))
            n++;
    }
    cJSON_Delete(items);
    return n;
}

static int count_readings(const char *device)
{
    cJSON *items = h_platform_items("/readings");
    int n = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        const char *d = cJSON_GetStringValue(cJSON_GetObjectItem(it, "device"));
        if (d && !strcmp(d, device))
            n++;
    }
    cJSON_Delete(items);
    return n;
}

static int more_readings(void *ctx)
{
    return count_readings("ok") > *(int *)ctx + 3;
}

static int ok_online(void *ctx)
{
    return count_events("ok", "online") >= 1 && count_events("refused", "offline") >= 1;
}

struct ports {
    int sim, slow, refused, eof, hole, obs_dead, obs_live, coap, sl651, hj212, dtu;
};

/* The gateway's file; `variant` changes every polled device's interval and
 * the observers' renew time (a reload that restarts them all). */
static const char *write_config(const struct ports *p, int variant)
{
    static char text[8192];
    const char *iv = variant ? "700ms" : "500ms";
    snprintf(
        text, sizeof(text),
        "gateway:\n  id: gw-rl\n  data_dir: %s/data\n  log_level: info\n  shutdown_drain: 1s\n"
        "store:\n  commit_window: 2ms\n"
        "uplink:\n  uri: tcp://127.0.0.1:%d\n  topic_prefix: t\n  backoff_min: 100ms\n"
        "  backoff_max: 500ms\n"
        "listeners:\n"
        "  - {protocol: coap, listen: 127.0.0.1, port: %d}\n"
        "  - {protocol: sl651, listen: \"127.0.0.1:%d\"}\n"
        "  - {protocol: hj212, listen: \"127.0.0.1:%d\"}\n"
        "  - {protocol: modbus-dtu, listen: \"127.0.0.1:%d\", register_prefix: REG}\n"
        "  - {protocol: mqtt-devices, uri: \"tcp://127.0.0.1:%d\", topic: "
        "\"field/{device}/data\"}\n"
        "devices:\n"
        "  - {id: ok, profile: waterlogging-wl100, connect: \"tcp://127.0.0.1:%d\", interval: %s, "
        "timeout: 300ms, retries: 0, offline_after: 2}\n"
        "  - {id: slow, profile: waterlogging-wl100, connect: \"tcp://127.0.0.1:%d\", "
        "interval: %s, timeout: 400ms, retries: 0, offline_after: 2}\n"
        "  - {id: refused, profile: waterlogging-wl100, connect: \"tcp://127.0.0.1:%d\", "
        "interval: %s, timeout: 300ms, offline_after: 1}\n"
        "  - {id: eof, profile: waterlogging-wl100, connect: \"tcp://127.0.0.1:%d\", "
        "interval: %s, timeout: 300ms, offline_after: 1}\n"
        "  - {id: hole, profile: waterlogging-wl100, connect: \"tcp://127.0.0.1:%d\", "
        "interval: %s, timeout: 400ms, offline_after: 1}\n"
        "  - {id: dtu-dev, protocol: modbus-dtu, dtu: D1, unit: 1, profile: waterlogging-wl100, "
        "interval: %s, timeout: 300ms}\n"
        "  - {id: rtu-dev, protocol: modbus-rtu, serial: %s/no-such-tty, unit: 1, "
        "profile: waterlogging-wl100, interval: %s, timeout: 300ms}\n"
        "  - {id: obs-dead, protocol: coap, address: \"860000000000001\", "
        "observe: \"coap://127.0.0.1:%d/sensor\", observe_renew: %s}\n"
        "  - {id: obs-live, protocol: coap, address: \"860000000000002\", "
        "observe: \"coap://127.0.0.1:%d/sensor\", observe_renew: %s}\n"
        "  - {id: smoke, protocol: coap, adapter: smoke-nb100, address: \"860000000000003\"}\n"
        "  - {id: rtu-651, protocol: sl651, address: \"0012345678\", password: \"1234\", "
        "interval: 5m}\n"
        "  - {id: cod-7, protocol: hj212, address: \"010000A8900016F000169DC0\", "
        "password: \"123456\", interval: 1h}\n"
        "  - {id: wl7, protocol: mqtt-devices, address: wl7, type: waterlogging}\n"
        "  - {id: synth, protocol: synthetic, rate: 5}\n",
        h_tmpdir(), broker_port, p->coap, p->sl651, p->hj212, p->dtu, broker_port, p->sim, iv,
        p->slow, iv, p->refused, iv, p->eof, iv, p->hole, iv, iv, h_tmpdir(), iv, p->obs_dead,
        variant ? "3s" : "2s", p->obs_live, variant ? "3s" : "2s");
    return h_write_file(variant ? "gw-b.yaml" : "gw-a.yaml", text);
}

#define NDEV 14

static void test_reload_every_state(void **state)
{
    int base = h_free_port_range(12);
    assert_true(base > 0);
    struct ports p = {.sim = base,
                      .slow = base + 1,
                      .refused = base + 2,
                      .eof = base + 3,
                      .hole = base + 4,
                      .obs_dead = base + 5,
                      .obs_live = base + 6,
                      .coap = base + 7,
                      .sl651 = base + 8,
                      .hj212 = base + 9,
                      .dtu = base + 10};
    char scen[2048];
    const char *regs = "    registers:\n"
                       "      - {kind: holding, addr: 0, type: uint16, value: 100}\n"
                       "      - {kind: holding, addr: 1, type: uint16, value: 1200}\n"
                       "      - {kind: holding, addr: 2, type: int16, value: 200}\n";
    snprintf(scen, sizeof(scen),
             "name: reload\ndevices:\n"
             "  - id: ok\n    port: %d\n    registers:\n"
             "      - {kind: holding, addr: 0, type: uint16,\n"
             "         curve: {type: ramp, from: 0, to: 60000, over: 600s}}\n"
             "      - {kind: holding, addr: 1, type: uint16, value: 1200}\n"
             "      - {kind: holding, addr: 2, type: int16, value: 200}\n"
             "  - id: slow\n    port: %d\n%s    faults:\n      - {type: late, delay: 350ms}\n",
             p.sim, p.slow, regs);
    h_proc sim, gw, obs;
    char *sargv[] = {(char *)h_bin("sim"),
                     "modbus",
                     "--scenario",
                     (char *)h_write_file("reload-scen.yaml", scen),
                     "--quiet",
                     NULL};
    assert_int_equal(h_spawn(&sim, "sim.log", sargv), 0);
    assert_true(h_log_wait(&sim, "sim: ready", 15000));
    char oport[16];
    snprintf(oport, sizeof(oport), "%d", p.obs_live);
    char *oargv[] = {"coap-server-notls", "-A", "127.0.0.1", "-p", oport, NULL};
    assert_int_equal(h_spawn(&obs, "coap-server.log", oargv), 0);

    struct eof_peer eof = {.fd = listen_on(p.eof, 16)};
    assert_true(eof.fd >= 0);
    assert_int_equal(pthread_create(&eof.th, NULL, eof_serve, &eof), 0);
    int hole = listen_on(p.hole, 0);
    assert_true(hole >= 0);
    int fill[2] = {connect_nb(p.hole), connect_nb(p.hole)};

    const char *a = write_config(&p, 0);
    write_config(&p, 1);
    char b[512];
    snprintf(b, sizeof(b), "%s/gw-b.yaml", h_tmpdir());
    char live[512];
    snprintf(live, sizeof(live), "%s/gw.yaml", h_tmpdir());
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "cp %s %s", a, live);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(h_gateway_start(&gw, live), 0);
    /* Stations connected and idle on the listeners. */
    int st651 = h_tcp_connect(p.sl651), st212 = h_tcp_connect(p.hj212);
    assert_true(st651 >= 0 && st212 >= 0);
    assert_true(h_platform_wait(ok_online, NULL, 15000));

    /* 1. The unchanged file: every device kept, untouched (no fresh online). */
    int online_before = count_events("ok", "online");
    for (int i = 0; i < 3; i++) {
        assert_int_equal(reload(&gw), 0);
        usleep(150000);
    }
    char kept[96];
    snprintf(kept, sizeof(kept), "%d devices kept, 0 started, 0 stopped", NDEV);
    if (!h_log_contains(&gw, kept))
        h_dump_log(&gw);
    assert_true(h_log_contains(&gw, kept));
    usleep(1200000);
    assert_int_equal(count_events("ok", "online"), online_before);

    /* 2. Every polled device and observer restarted, in whatever state. */
    for (int i = 0; i < 4; i++) {
        snprintf(cmd, sizeof(cmd), "cp %s %s", i % 2 ? a : b, live);
        assert_int_equal(system(cmd), 0);
        assert_int_equal(reload(&gw), 0);
        usleep(400000 + 150000 * i); /* land in different phases of the polls */
    }
    /* 3. A storm: 50 reloads as fast as the gateway takes them. */
    for (int i = 0; i < 50; i++) {
        snprintf(cmd, sizeof(cmd), "cp %s %s", i % 3 ? a : b, live);
        assert_int_equal(system(cmd), 0);
        assert_int_equal(reload(&gw), 0);
    }
    /* Still polling after the storm: the new devices' timers run. */
    int before = count_readings("ok");
    assert_true(h_platform_wait(more_readings, &before, 10000));
    assert_int_equal(kill(gw.pid, 0), 0);
    int rc = h_stop(&gw);
    if (rc)
        h_dump_log(&gw);
    assert_int_equal(rc, 0);
    assert_false(h_log_contains(&gw, "Assertion"));
    assert_false(h_log_contains(&gw, "AddressSanitizer"));

    close(st651);
    close(st212);
    close(fill[0]);
    close(fill[1]);
    close(hole);
    eof.stop = 1;
    pthread_join(eof.th, NULL);
    close(eof.fd);
    h_stop(&obs);
    h_stop(&sim);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reload_every_state),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
