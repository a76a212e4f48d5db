/* The uplink's read-ahead stays bounded while the platform does not
 * acknowledge. The uplink fetches telemetry rows from the outbox ahead of
 * publishing; a fetch reads at most fetch_bytes (1 MiB, or one
 * uplink.max_message_bytes when that is larger) and the next one starts only
 * when less than that is left, so a lane never holds two fetches' worth
 * (docs/design.md, "Measured": unbounded, it held 16.8 MiB at 10,000 devices).
 *
 * Here thousands of kilobyte rows (polls of 40 registers, one row each, as
 * the bound was measured with) wait in the outbox while the uplink's broker
 * is stopped (SIGSTOP: the connection stays up, nothing is acknowledged),
 * and the uplink's gauge readahead_bytes (admin status) must settle within
 * two fetches. uplink.batch 1000 makes a fetch ask for 8,000 rows (over
 * 10 MB) and the next start below 2,000 rows left: only the byte bound keeps
 * the read-ahead near 1 MiB. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/integration/harness.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NDEV 40               /* Modbus devices, polled every 50 ms */
#define NREG 40               /* registers a poll reads: one row of 40 readings */
#define ROWS 6000             /* rows waiting before the read-ahead is looked at */
#define FETCH_BYTES (1 << 20) /* max_message_bytes 256KiB is below 1 MiB */
/* The gauge counts both lanes: telemetry holds under two fetches (left below
 * one when the next starts, plus that one), the priority lane here only the
 * devices' online events, a few KB. */
#define BOUND (2 * FETCH_BYTES + 64 * 1024)

struct env {
    int port, base; /* the uplink's broker, the first device's */
    h_proc broker, sim, gw;
    int stopped; /* the broker is SIGSTOPped */
};

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    *state = e;
    e->port = h_free_port_range(1);
    e->base = h_free_port_range(NDEV);
    return e->port > 0 && e->base > 0 && h_broker_start(&e->broker, e->port) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    struct env *e = *state;
    if (e->stopped)
        h_signal(&e->broker, SIGCONT);
    int gw_status = h_peers_stop(&e->gw, &e->sim, &e->broker);
    free(e);
    assert_int_equal(gw_status, 0);
    return 0;
}

/* The uplink's readahead_bytes from `admin status`, -1 if it cannot be had. */
static long long readahead(void)
{
    static char out[1 << 16];
    char sock[512];
    snprintf(sock, sizeof(sock), "%s/data/admin.sock", h_tmpdir());
    const char *args[] = {"status", NULL};
    if (h_admin(sock, args, out, sizeof(out)) != 0)
        return -1;
    cJSON *doc = cJSON_Parse(out);
    cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "uplink"), "readahead_bytes");
    long long n = cJSON_IsNumber(v) ? (long long)cJSON_GetNumberValue(v) : -1;
    cJSON_Delete(doc);
    return n;
}

static void test_readahead_bounded_while_unacknowledged(void **state)
{
    struct env *e = *state;
    /* NDEV devices serving NREG registers; a profile reading them all. */
    static char scn[16384], prof[8192], text[16384];
    int ns = snprintf(scn, sizeof(scn),
                      "name: wide\ndevices:\n  - id: m-{n:02}\n    count: %d\n"
                      "    protocol: modbus-tcp\n    port: %d\n    unit: 1\n    registers:\n",
                      NDEV, e->base);
    int np = snprintf(prof, sizeof(prof), "name: wide-40\ndevice_type: wide\npoints:\n");
    for (int r = 0; r < NREG; r++) {
        ns += snprintf(scn + ns, sizeof(scn) - (size_t)ns,
                       "      - {kind: holding, addr: %d, type: uint16, value: %d}\n", r, 1000 + r);
        np += snprintf(prof + np, sizeof(prof) - (size_t)np,
                       "  - {name: channel_%02d, kind: holding, address: %d, type: uint16, "
                       "unit: mm}\n",
                       r, r);
    }
    assert_true(ns < (int)sizeof(scn) && np < (int)sizeof(prof));
    h_write_file("wide.yaml", prof);
    assert_int_equal(h_sim_start(&e->sim, h_write_file("scenario.yaml", scn), NULL), 0);
    int nt = snprintf(text, sizeof(text),
                      "gateway:\n  id: gw-ra\n  data_dir: %s/data\n  shutdown_drain: 1s\n"
                      "store:\n  commit_window: 2ms\n"
                      "uplink:\n  uri: tcp://127.0.0.1:%d\n  topic_prefix: t\n"
                      "  backoff_min: 100ms\n  backoff_max: 300ms\n  keepalive: 10m\n"
                      "  batch: 1000\n"
                      "devices:\n",
                      h_tmpdir(), e->port);
    for (int d = 0; d < NDEV; d++)
        nt += snprintf(text + nt, sizeof(text) - (size_t)nt,
                       "  - {id: m-%02d, protocol: modbus-tcp, profile: ./wide.yaml, "
                       "connect: 'tcp://127.0.0.1:%d', unit: 1, interval: 50ms, timeout: 40ms}\n",
                       d + 1, e->base + d);
    assert_true(nt < (int)sizeof(text));
    assert_int_equal(h_gateway_start(&e->gw, h_write_file("gateway.yaml", text)), 0);
    char want[64];
    snprintf(want, sizeof(want), "connected to tcp://127.0.0.1:%d", e->port);
    assert_true(h_log_wait(&e->gw, want, 10000));
    /* From now on nothing is acknowledged and the keepalive (10 min) keeps
     * the session up: the rows pile up in the outbox behind the uplink. */
    assert_int_equal(h_signal(&e->broker, SIGSTOP), 0);
    e->stopped = 1;
    char db[512];
    snprintf(db, sizeof(db), "%s/data/outbox.db", h_tmpdir());
    assert_true(h_outbox_wait(db, "outbox_tele", ROWS, 60000));

    h_stop(&e->sim); /* no more rows: the read-ahead settles */
    /* It settles once the in-flight bound stops publishing: sampled until
     * three readings in a row of both agree (bounded: 15 s). */
    long long ra = -1, rows = -1, max = -1, prev_ra = -2, prev_rows = -2;
    int same = 0;
    for (int64_t end = h_now_ms() + 15000; h_now_ms() < end && same < 3; poll(NULL, 0, 300)) {
        ra = readahead();
        rows = h_outbox_rows(db, "outbox_tele");
        same = ra == prev_ra && rows == prev_rows ? same + 1 : 0;
        prev_ra = ra;
        prev_rows = rows;
        if (ra > max)
            max = ra;
    }
    print_message("outbox %lld telemetry rows unacknowledged; read-ahead %lld bytes (at most %lld "
                  "seen), bound %d\n",
                  rows, ra, max, BOUND);
    assert_true(same >= 3);
    /* Far more waits than two fetches: the bound, not the backlog, limits it. */
    assert_true(rows >= ROWS);
    assert_true(ra >= FETCH_BYTES / 2);
    if (max > BOUND)
        fail_msg("read-ahead reached %lld bytes, more than two fetches (%d)", max, BOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_readahead_bounded_while_unacknowledged, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
