/* The outbox through the real gateway, a real mosquitto and the in-process
 * platform, under the faults of issue 15:
 *  - the data directory on a small tmpfs that stays full for ~15 s while an
 *    SL651 station (played here) reports levels that raise and clear an
 *    alarm: no confirm while its rows are uncommitted, every reading and
 *    alarm transition delivered afterwards, the disk_full event raised and
 *    ended;
 *  - the whole data directory wiped between two runs: item ids never repeat.
 * The tmpfs is mounted as root or in a user namespace (the first line says
 * which); where neither is possible the disk test says SKIPPED. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/integration/harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct {
    int broker_port;
    h_proc broker;
    char disk[300], how[128];
    int mounted;
} E;

#define CONFIRM_LEN 25
#define STATION "0099000010"
#define FULL_MS 15000

/* ---- the platform ---- */

/* Distinct items (by item id: QoS 1 may deliver one twice) on topics ending
 * in suffix whose string field key equals val (and, when f2, f2 equals v2). */
static int count_items(const char *suffix, const char *key, const char *val, const char *f2,
                       const char *v2)
{
    cJSON *items = h_platform_items(suffix), *it;
    cJSON *ids = cJSON_CreateObject();
    int n = 0;
    cJSON_ArrayForEach(it, items)
    {
        const char *v = cJSON_GetStringValue(cJSON_GetObjectItem(it, key));
        const char *w = f2 ? cJSON_GetStringValue(cJSON_GetObjectItem(it, f2)) : NULL;
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(it, "id"));
        if (!v || !id || strcmp(v, val) || (f2 && (!w || strcmp(w, v2))))
            continue;
        if (!cJSON_GetObjectItem(ids, id)) {
            cJSON_AddTrueToObject(ids, id);
            n++;
        }
    }
    cJSON_Delete(ids);
    cJSON_Delete(items);
    return n;
}

/* Distinct water levels of the station's device at the platform. */
static int count_levels(const char *device, const unsigned *mm, int n_mm)
{
    cJSON *items = h_platform_items("/readings"), *it;
    int n = 0;
    for (int i = 0; i < n_mm; i++) {
        int found = 0;
        cJSON_ArrayForEach(it, items)
        {
            const char *d = cJSON_GetStringValue(cJSON_GetObjectItem(it, "device"));
            double v = cJSON_GetNumberValue(cJSON_GetObjectItem(it, "value"));
            if (d && !strcmp(d, device) && (long)(v * 1000 + 0.5) == (long)mm[i])
                found = 1;
        }
        n += found;
    }
    cJSON_Delete(items);
    return n;
}

struct all_in {
    const unsigned *mm;
    int n, raised, cleared;
};

static int all_delivered(void *ctx)
{
    struct all_in *a = ctx;
    return count_levels("rtu-d", a->mm, a->n) == a->n &&
           count_items("/alarms", "rule", "lvl", "state", "raised") >= a->raised &&
           count_items("/alarms", "rule", "lvl", "state", "cleared") >= a->cleared &&
           count_items("/events", "event", "disk_full", NULL, NULL) >= 2;
}

static int admin_status(const char *sock, char *out, size_t cap)
{
    static const char *const args[] = {"status", NULL};
    return h_admin(sock, args, out, cap);
}

/* ---- the disk ---- */

/* Writes into fd until the file system has no byte left; returns bytes taken. */
static long fill(int fd)
{
    static char buf[65536];
    long n = 0;
    ssize_t k;
    while ((k = write(fd, buf, sizeof(buf))) > 0)
        n += k;
    while ((k = write(fd, buf, 512)) > 0)
        n += k;
    return n;
}

/* ---- setup ---- */

static int group_setup(void **state)
{
    snprintf(E.disk, sizeof(E.disk), "%s/disk", h_tmpdir());
    /* Before any thread (the platform's Paho) starts: a user namespace needs that. */
    E.mounted = h_small_disk(E.disk, "8m", E.how, sizeof(E.how)) == 0;
    printf("# data directory of the disk test on: %s\n",
           E.mounted ? E.how : "NO TMPFS (not root, no user namespaces): SKIPPED");
    E.broker_port = h_free_port();
    if (h_broker_start(&E.broker, E.broker_port) || h_platform_start(E.broker_port))
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    h_platform_stop();
    h_stop(&E.broker);
    if (E.mounted)
        umount(E.disk);
    h_cleanup();
    return 0;
}

/* ---- 1. disk full for 15 s under an alarming station ---- */

static void test_disk_full(void **state)
{
    if (!E.mounted) {
        printf("# SKIPPED: needs a tmpfs\n");
        skip();
    }
    int port = h_free_port_range(1);
    char text[2048], sock[400], out[2048];
    snprintf(text, sizeof(text),
             "gateway:\n  id: gw-df\n  data_dir: %s/data\n  log_level: info\n"
             "  shutdown_drain: 2s\n"
             "store:\n  commit_window: 2ms\n  min_free: 0\n"
             "uplink:\n  uri: tcp://127.0.0.1:%d\n  topic_prefix: t\n  backoff_min: 100ms\n"
             "  backoff_max: 500ms\n"
             "devices:\n"
             "  - id: rtu-d\n    protocol: sl651\n    address: \"" STATION "\"\n"
             "    password: \"0010\"\n    interval: 5m\n"
             "listeners:\n  - protocol: sl651\n    listen: 127.0.0.1:%d\n"
             "rules:\n  - id: lvl\n    kind: threshold\n    metric: water_level\n"
             "    levels: {red: {raise: 5, clear: 3}}\n",
             E.disk, E.broker_port, port);
    snprintf(sock, sizeof(sock), "%s/data/admin.sock", E.disk);
    h_proc gw;
    assert_int_equal(h_gateway_start(&gw, h_write_file("gw-df.yaml", text)), 0);
    assert_true(h_port_wait(port, 5000));

    /* Beijing time for the station's clock. */
    time_t now = time(NULL) + 8 * 3600;
    struct tm tm;
    gmtime_r(&now, &tm);
    const int t[5] = {tm.tm_year % 100, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min};
    enum { MAXF = 64 };
    unsigned mm[MAXF];
    uint8_t frames[MAXF][128];
    size_t flen[MAXF];
    int nf = 0;

    int fd = h_tcp_connect(port);
    assert_true(fd >= 0);
    mm[nf] = 1000; /* low: no alarm; confirmed at once */
    flen[nf] = h_sl651_report(frames[nf], STATION, 0x0010, 0x32, 1, t, mm[nf]);
    assert_int_equal(h_send_all(fd, frames[nf], flen[nf]), 0);
    uint8_t c[CONFIRM_LEN];
    assert_int_equal(h_recv_n(fd, c, sizeof(c), 10000), sizeof(c));
    nf++;

    /* The disk fills and stays full: whatever the gateway frees (its reserve,
     * a truncated WAL) is taken again within a millisecond. */
    char filler[400];
    snprintf(filler, sizeof(filler), "%s/filler", E.disk);
    int ff = open(filler, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    assert_true(ff >= 0);
    long taken = fill(ff);
    int64_t start = h_now_ms(), next = start;
    int saw_full = 0, raised = 0, cleared = 0;
    size_t early = 0;
    while (h_now_ms() - start < FULL_MS) {
        fill(ff);
        if (h_now_ms() >= next && nf < MAXF - 1 && nf <= 30) {
            /* Alternating high and low levels: each one a transition. */
            int high = nf % 2;
            mm[nf] = (high ? 6000u : 1000u) + (unsigned)nf;
            flen[nf] =
                h_sl651_report(frames[nf], STATION, 0x0010, 0x32, (uint16_t)(1 + nf), t, mm[nf]);
            assert_int_equal(h_send_all(fd, frames[nf], flen[nf]), 0);
            raised += high;
            cleared += !high;
            nf++;
            next += 450;
        }
        if (!saw_full && h_now_ms() - start > 3000 && admin_status(sock, out, sizeof(out)) == 0 &&
            strstr(out, "\"disk_full\":true"))
            saw_full = 1;
        /* Paced by the station's socket: a confirm now would be one too early. */
        struct pollfd pf = {fd, POLLIN, 0};
        ssize_t k;
        if (poll(&pf, 1, 1) == 1 && (k = recv(fd, c, sizeof(c), MSG_DONTWAIT)) > 0)
            early += (size_t)k;
    }
    assert_int_equal(admin_status(sock, out, sizeof(out)), 0);
    print_message("after %d ms full (%ld bytes taken): %s", FULL_MS, taken, out);
    assert_non_null(strstr(out, "\"disk_full\":true"));
    assert_true(saw_full);
    assert_int_equal(early, 0); /* no confirm for rows not on disk */
    int64_t freed_at = h_now_ms();
    close(ff);
    unlink(filler);

    /* Every frame sent while full is confirmed now, in order, after the space returned. */
    for (int i = 1; i < nf; i++) {
        assert_int_equal(h_recv_n(fd, c, sizeof(c), 15000), sizeof(c));
        assert_memory_equal(c + 14, frames[i] + 14, 8); /* serial + send time echoed */
    }
    int64_t confirmed_at = h_now_ms();
    close(fd);
    struct all_in a = {mm, nf, raised, cleared};
    if (!h_platform_wait(all_delivered, &a, 30000))
        fail_msg("delivered: %d of %d readings, %d of %d raised, %d of %d cleared, %d disk_full "
                 "events",
                 count_levels("rtu-d", mm, nf), nf,
                 count_items("/alarms", "rule", "lvl", "state", "raised"), raised,
                 count_items("/alarms", "rule", "lvl", "state", "cleared"), cleared,
                 count_items("/events", "event", "disk_full", NULL, NULL));
    /* Exactly: one transition per frame, no duplicate item. */
    assert_int_equal(count_items("/alarms", "rule", "lvl", "state", "raised"), raised);
    assert_int_equal(count_items("/alarms", "rule", "lvl", "state", "cleared"), cleared);
    /* disk_full raised and ended (device = the gateway, type gateway). */
    assert_int_equal(count_items("/events", "event", "disk_full", "device", "gw-df"), 2);
    assert_true(h_log_contains(&gw, "disk full"));
    print_message("%d frames (%d raise, %d clear) while full; all confirmed %lld ms after the "
                  "space returned; every reading and transition delivered\n",
                  nf - 1, raised, cleared, (long long)(confirmed_at - freed_at));
    assert_int_equal(h_stop(&gw), 0);
}

/* ---- 2. the data directory wiped: ids do not repeat ---- */

static void wipe(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char p[700];
        if (e->d_name[0] == '.' && (!e->d_name[1] || e->d_name[1] == '.'))
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

struct nreadings {
    const char *device;
    int want;
};

static int enough(void *ctx)
{
    struct nreadings *w = ctx;
    return count_items("/readings", "device", w->device, NULL, NULL) >= w->want;
}

static long long max_seq(const char *device)
{
    cJSON *items = h_platform_items("/readings"), *it;
    long long hi = 0;
    cJSON_ArrayForEach(it, items)
    {
        const char *d = cJSON_GetStringValue(cJSON_GetObjectItem(it, "device"));
        long long seq = (long long)cJSON_GetNumberValue(cJSON_GetObjectItem(it, "seq"));
        if (d && !strcmp(d, device) && seq > hi)
            hi = seq;
    }
    cJSON_Delete(items);
    return hi;
}

static void test_wiped_data_dir(void **state)
{
    char text[1024], dir[400];
    snprintf(dir, sizeof(dir), "%s/wdata", h_tmpdir());
    snprintf(text, sizeof(text),
             "gateway:\n  id: gw-w\n  data_dir: %s\n  log_level: info\n"
             "uplink:\n  uri: tcp://127.0.0.1:%d\n  topic_prefix: t\n"
             "devices:\n  - {id: syn-w, protocol: synthetic, rate: 200, total: 50}\n",
             dir, E.broker_port);
    const char *cfg = h_write_file("gw-w.yaml", text);
    h_proc gw;
    assert_int_equal(h_gateway_start(&gw, cfg), 0);
    struct nreadings w = {"syn-w", 50};
    assert_true(h_platform_wait(enough, &w, 20000));
    assert_int_equal(h_stop(&gw), 0);
    long long hi = max_seq("syn-w");
    wipe(dir); /* outbox, its WAL, item-ids, everything */
    assert_int_equal(h_gateway_start(&gw, cfg), 0);
    /* 100 distinct item ids: an id handed out again would count once. */
    w.want = 100;
    int ok = h_platform_wait(enough, &w, 20000);
    assert_int_equal(h_stop(&gw), 0);
    print_message("first data directory: ids up to %lld; after wiping it: %d distinct ids of "
                  "100, seq up to %lld\n",
                  hi, count_items("/readings", "device", "syn-w", NULL, NULL), max_seq("syn-w"));
    assert_true(ok);
    assert_int_equal(count_items("/readings", "device", "syn-w", NULL, NULL), 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_disk_full),
        cmocka_unit_test(test_wiped_data_dir),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
