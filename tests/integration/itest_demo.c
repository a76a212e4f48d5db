/* make demo with its ports moved (scripts/demo.sh, bounded by DEMO_SECONDS):
 * with the default broker port 18830 taken, the demo says which port, by
 * whom and how to move it (DEMO_BROKER_PORT=..., --broker-port) and starts
 * nothing; with one of the sensors' ports taken it says so with
 * DEMO_MODBUS_PORT; with both moved to free ports while 18830 is still taken
 * it runs end to end (broker, simulator, gateway on a copy of the embedded
 * config, the platform's view showing the sensors' readings) and stops
 * everything it started. `sim modbus --base-port` says which port is taken and
 * how to move the devices, and moves them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A TCP listener on 127.0.0.1:port, or -1 when something else has it
 * (which, for this test, is as good: the port is taken). */
static int hold(int port)
{
    /* Close-on-exec: the demo's processes must not inherit it. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    /* SO_REUSEADDR: a connection in TIME_WAIT does not count, a listener does. */
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 1) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static int demo(h_proc *p, const char *log, const char *broker, const char *modbus, int seconds)
{
    char dir[400], b[64], m[64], s[64], build[300];
    snprintf(dir, sizeof dir, "DEMO_DIR=%s/demo", h_tmpdir());
    snprintf(b, sizeof b, "DEMO_BROKER_PORT=%s", broker);
    snprintf(m, sizeof m, "DEMO_MODBUS_PORT=%s", modbus);
    snprintf(s, sizeof s, "DEMO_SECONDS=%d", seconds);
    snprintf(build, sizeof build, "BUILD=%s", getenv("BUILD") ? getenv("BUILD") : "build");
    char *argv[] = {"env", dir, b, m, s, build, "sh", "scripts/demo.sh", NULL};
    if (h_spawn(p, log, argv) != 0)
        return -1;
    return h_wait(p, 60000);
}

static void test_taken_then_moved(void **st)
{
    int held = hold(18830);
    int base = h_free_port_range(4);
    assert_true(base > 0);
    char bp[16], mp[16], dflt_m[16];
    snprintf(bp, sizeof bp, "%d", base);
    snprintf(mp, sizeof mp, "%d", base + 1);
    snprintf(dflt_m, sizeof dflt_m, "%d", base + 1);

    /* The default broker port is taken: which, and how to move it. */
    h_proc p = {0};
    int rc = demo(&p, "taken.log", "18830", dflt_m, 5);
    if (rc != 1 || !h_log_contains(&p, "in use by"))
        h_dump_log(&p);
    assert_int_equal(rc, 1);
    assert_true(h_log_contains(&p, "demo: port 18830 (broker) is already in use"));
    if (held >= 0)
        assert_true(h_log_contains(&p, "in use by \"itest_demo\""));
    assert_true(h_log_contains(&p, "DEMO_BROKER_PORT=18840 make demo"));
    assert_true(h_log_contains(&p, "scripts/demo.sh --broker-port 18840"));
    assert_false(h_log_contains(&p, "demo running"));

    /* One of the sensors' ports is taken. */
    int sensor = hold(base + 2);
    assert_true(sensor >= 0);
    h_proc q = {0};
    rc = demo(&q, "sensor.log", bp, mp, 5);
    char want[160];
    snprintf(want, sizeof want, "demo: port %d (Modbus sensors, ports %d..%d) is already in use",
             base + 2, base + 1, base + 3);
    if (rc != 1 || !h_log_contains(&q, want))
        h_dump_log(&q);
    assert_int_equal(rc, 1);
    assert_true(h_log_contains(&q, want));
    snprintf(want, sizeof want, "DEMO_MODBUS_PORT=%d make demo", base + 1001);
    assert_true(h_log_contains(&q, want));
    close(sensor);

    /* Both moved, 18830 still taken: the demo runs end to end. */
    h_proc r = {0};
    rc = demo(&r, "moved.log", bp, mp, 12);
    if (rc != 0 || !h_log_contains(&r, "wl-001 water_depth = "))
        h_dump_log(&r);
    assert_int_equal(rc, 0);
    snprintf(want, sizeof want, "demo: broker on %d, sensors on %d..%d", base, base + 1, base + 3);
    assert_true(h_log_contains(&r, want));
    assert_true(h_log_contains(&r, "wl-001 water_depth = "));
    assert_true(h_log_contains(&r, "wl-003 supply_voltage = 12.1 V [good]"));
    assert_true(h_log_contains(&r, "demo stopped"));
    /* Everything it started is gone: its ports bind again. */
    for (int port = base; port <= base + 3; port++) {
        int fd = hold(port);
        if (fd < 0)
            fail_msg("port %d still taken after the demo stopped", port);
        close(fd);
    }
    if (held >= 0)
        close(held);
}

/* sim modbus alone: a taken port is named with the device, and the way to
 * move every device is said; --base-port moves them. */
static void test_sim_modbus_base_port(void **st)
{
    int base = h_free_port_range(4);
    assert_true(base > 0);
    int held = hold(base + 1);
    assert_true(held >= 0);
    char port[16], want[128];
    snprintf(port, sizeof port, "%d", base);
    char *argv[] = {
        (char *)h_bin("sim"), "modbus", "--scenario", "sim/scenarios/demo-rainstorm.yaml",
        "--base-port",        port,     NULL};
    h_proc p = {0};
    assert_int_equal(h_spawn(&p, "sim-taken.log", argv), 0);
    assert_int_equal(h_wait(&p, 20000), 1);
    snprintf(want, sizeof want, "sim: wl-002: cannot listen on 127.0.0.1:%d", base + 1);
    assert_true(h_log_contains(&p, want));
    assert_true(h_log_contains(&p, "move every device with --base-port N"));
    close(held);
    h_proc q = {0};
    snprintf(port, sizeof port, "%d", base + 1);
    assert_int_equal(h_spawn(&q, "sim-moved.log", argv), 0);
    assert_true(h_log_wait(&q, "sim: ready 3 devices", 10000));
    assert_true(h_port_wait(base + 3, 5000));
    h_signal(&q, SIGTERM);
    assert_int_equal(h_wait(&q, 10000), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_taken_then_moved),
        cmocka_unit_test(test_sim_modbus_base_port),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    h_cleanup();
    return rc;
}
