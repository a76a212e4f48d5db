/* The outbox under faults, at its API with a real loop: disk full (a small
 * tmpfs when we may mount one, else a wrapping SQLite VFS that fails writes),
 * a nearly full disk, a corrupt file, a lost outbox, replayed reports.
 * The disk is an 8 MiB tmpfs, mounted as root or in a user namespace; the
 * first line says which, and where neither is possible the disk tests say
 * SKIPPED (cmocka counts them) instead of passing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "base/log.h"
#include "base/model.h"
#include "gateway/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- the disk: a small tmpfs ---- */

static char dir[128];
static int on_tmpfs;
static const char *how = "none";

static int write_text(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        return -1;
    int ok = write(fd, text, strlen(text)) == (ssize_t)strlen(text);
    close(fd);
    return ok ? 0 : -1;
}

/* Mounts an 8 MiB tmpfs on dir: as root directly, otherwise inside a user and
 * mount namespace of our own (still single-threaded here). */
static int mount_tmpfs(void)
{
    if (mount("tmpfs", dir, "tmpfs", 0, "size=8m") == 0) {
        how = "an 8 MiB tmpfs (mounted as root)";
        return 0;
    }
    char map[64];
    uid_t uid = getuid();
    gid_t gid = getgid();
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS))
        return -1;
    write_text("/proc/self/setgroups", "deny");
    snprintf(map, sizeof(map), "0 %d 1", (int)uid);
    if (write_text("/proc/self/uid_map", map))
        return -1;
    snprintf(map, sizeof(map), "0 %d 1", (int)gid);
    if (write_text("/proc/self/gid_map", map))
        return -1;
    if (mount("tmpfs", dir, "tmpfs", 0, "size=8m"))
        return -1;
    how = "an 8 MiB tmpfs (mounted in a user namespace)";
    return 0;
}

static char fill_path[300];

/* Makes every further write fail for lack of space. */
static void disk_fill(void)
{
    int fd = open(fill_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    assert_true(fd >= 0);
    static char buf[65536];
    for (int i = 0; i < 100000; i++) {
        ssize_t n = write(fd, buf, sizeof(buf));
        if (n < 0 && errno == ENOSPC)
            break;
    }
    /* The last bytes a page at a time, so nothing is left. */
    for (int i = 0; i < 100000; i++)
        if (write(fd, buf, 512) < 0)
            break;
    close(fd);
}

static void disk_free(void)
{
    if (on_tmpfs)
        unlink(fill_path);
}

static void rm_dir_files(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char p[600];
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
}

static int group_setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/test_store.%d", (int)getpid());
    mkdir(dir, 0700);
    on_tmpfs = mount_tmpfs() == 0;
    snprintf(fill_path, sizeof(fill_path), "%s/filler", dir);
    if (on_tmpfs)
        printf("# disk full by: %s filled with a file\n", how);
    else
        printf("# NO TMPFS (not root, no user namespaces): the disk-full and floor tests are "
               "SKIPPED\n");
    return 0;
}

static int group_teardown(void **state)
{
    rm_dir_files();
    if (on_tmpfs)
        umount(dir);
    rmdir(dir);
    return 0;
}

/* For the tests that need a disk that can fill. */
static int setup_disk(void **state)
{
    if (!on_tmpfs) {
        printf("# SKIPPED: needs a tmpfs\n");
        skip();
    }
    disk_free();
    rm_dir_files();
    return 0;
}

static int setup(void **state)
{
    disk_free();
    rm_dir_files();
    return 0;
}

/* ---- a loop to drive the store ---- */

static uv_loop_t loop;

struct flushed {
    int called, status, order;
};
static int order_counter;

static void on_flush(void *ctx, int status)
{
    struct flushed *f = ctx;
    f->called++;
    f->status = status;
    f->order = ++order_counter;
}

struct statechg {
    int full_calls, clear_calls;
};
static void on_state(void *ctx, int full, int64_t ms, uint64_t fails)
{
    struct statechg *c = ctx;
    if (full)
        c->full_calls++;
    else
        c->clear_calls++;
}

static void tick(uv_timer_t *t)
{
}

/* Runs the loop until pred(ctx) or ms pass; returns pred's last value. */
static int run_until(int (*pred)(void *), void *ctx, int ms)
{
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    uv_timer_start(&t, tick, 5, 5);
    int64_t end = gw_mono_ms() + ms;
    int ok;
    while (!(ok = pred(ctx)) && gw_mono_ms() < end)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    return ok;
}

static int flush_done(void *ctx)
{
    return ((struct flushed *)ctx)->called > 0;
}

struct failwait {
    gw_store *s;
    uint64_t n;
};
static int failures_at_least(void *ctx)
{
    struct failwait *w = ctx;
    gw_store_stats st;
    gw_store_get_stats(w->s, &st);
    return st.commit_failures >= w->n;
}

static gw_store_config config(void)
{
    gw_store_config c;
    memset(&c, 0, sizeof(c));
    snprintf(c.path, sizeof(c.path), "%s/outbox.db", dir);
    c.max_bytes = 64 << 20;
    c.commit_window = 2;
    c.queue_max = 100000;
    c.min_free = 0;
    c.replay_window = 256;
    return c;
}

static gw_store *open_store(const gw_store_config *c)
{
    char err[512] = "";
    gw_store *s = gw_store_open(&loop, c, NULL, NULL, err, sizeof(err));
    if (!s)
        print_error("open: %s\n", err);
    return s;
}

static void close_store(gw_store *s)
{
    gw_store_close(s);
    uv_run(&loop, UV_RUN_DEFAULT);
}

static void flush_ok(gw_store *s)
{
    struct flushed f = {0};
    assert_int_equal(gw_store_flush(s, on_flush, &f), 0);
    assert_true(run_until(flush_done, &f, 5000));
    assert_int_equal(f.status, 0);
}

static const char *payload(char *buf, size_t n, const char *tag, int i)
{
    int k = snprintf(buf, n, "{\"tag\":\"%s\",\"i\":%d,\"pad\":\"", tag, i);
    while ((size_t)k < n - 3)
        buf[k++] = 'x';
    buf[k++] = '"';
    buf[k++] = '}';
    buf[k] = '\0';
    return buf;
}

struct fetched {
    int called;
    size_t n;
    int tags; /* rows whose payload contains want */
    const char *want;
};
static void on_fetch(void *ctx, const gw_rows *r)
{
    struct fetched *f = ctx;
    f->called = 1;
    f->n = r->n;
    for (size_t i = 0; i < r->n; i++) {
        char tmp[64];
        size_t l = r->len[i] < 63 ? r->len[i] : 63;
        memcpy(tmp, r->buf + r->off[i], l);
        tmp[l] = '\0';
        if (f->want && strstr(tmp, f->want))
            f->tags++;
    }
}
static int fetch_done(void *ctx)
{
    return ((struct fetched *)ctx)->called;
}

/* Rows of lane whose payload names tag. */
static int count_rows(gw_store *s, int lane, const char *tag)
{
    struct fetched f = {0, 0, 0, tag};
    assert_int_equal(gw_store_fetch(s, lane, 0, 100000, 1u << 30, on_fetch, &f), 0);
    assert_true(run_until(fetch_done, &f, 5000));
    return f.tags;
}

/* ---- 1. disk full: rows kept, confirm tied to its own rows ---- */

static void test_disk_full_keeps_rows(void **state)
{
    gw_store_config c = config();
    gw_store *s = open_store(&c);
    assert_non_null(s);
    struct statechg sc = {0};
    gw_store_on_state(s, on_state, &sc);
    char buf[1024];
    assert_int_equal(
        gw_store_put(s, GW_LANE_TELE, GW_KIND_READING, 1, payload(buf, 200, "base", 0), 200), 0);
    flush_ok(s);
    /* No reserve here: the episode must last until the disk is freed. */
    char rp[300];
    snprintf(rp, sizeof(rp), "%s-reserve", c.path);
    unlink(rp);

    disk_fill();
    /* A report: an alarm and 1 MiB of readings, then its confirm (F1). */
    uint64_t seq = 2;
    assert_int_equal(
        gw_store_put(s, GW_LANE_PRIO, GW_KIND_ALARM, seq++, payload(buf, 200, "alarm", 0), 200), 0);
    for (int i = 0; i < 1024; i++)
        assert_int_equal(gw_store_put(s, GW_LANE_TELE, GW_KIND_READING, seq++,
                                      payload(buf, 1000, "rep1", i), 1000),
                         0);
    struct flushed f1 = {0}, f2 = {0};
    assert_int_equal(gw_store_flush(s, on_flush, &f1), 0);
    struct failwait fw = {s, 3};
    assert_true(run_until(failures_at_least, &fw, 5000));
    assert_int_equal(f1.called, 0); /* no confirm for rows not on disk */
    gw_store_stats st;
    gw_store_get_stats(s, &st);
    assert_int_equal(st.disk_full, 1);
    assert_int_equal(st.disk_full_episodes, 1);
    assert_true(st.rows_waiting >= 1025);
    assert_int_equal(sc.full_calls, 1);

    /* The next report's flush (F2) lands in a later group, after the disk is freed. */
    assert_int_equal(
        gw_store_put(s, GW_LANE_TELE, GW_KIND_READING, seq++, payload(buf, 200, "rep2", 0), 200),
        0);
    assert_int_equal(gw_store_flush(s, on_flush, &f2), 0);
    disk_free();
    assert_true(run_until(flush_done, &f2, 10000));
    assert_int_equal(f1.called, 1);
    assert_int_equal(f1.status, 0);
    assert_int_equal(f2.status, 0);
    assert_true(f1.order < f2.order);
    assert_int_equal(count_rows(s, GW_LANE_TELE, "rep1"), 1024);
    assert_int_equal(count_rows(s, GW_LANE_TELE, "rep2"), 1);
    assert_int_equal(count_rows(s, GW_LANE_PRIO, "alarm"), 1);
    gw_store_get_stats(s, &st);
    assert_int_equal(st.disk_full, 0);
    assert_int_equal(st.rows_waiting, 0);
    assert_int_equal(sc.clear_calls, 1);
    close_store(s);
}

struct prio_wait {
    gw_store *s;
};
static int alarm_committed(void *ctx)
{
    gw_store_stats st;
    gw_store_get_stats(((struct prio_wait *)ctx)->s, &st);
    return st.rows_in[GW_LANE_PRIO] >= 1 && st.commit_failures >= 1;
}

/* Priority rows go first, into the space of the released reserve. */
static void test_disk_full_alarms_first(void **state)
{
    gw_store_config c = config();
    gw_store *s = open_store(&c);
    assert_non_null(s);
    char buf[1024];
    disk_fill();
    uint64_t seq = 1;
    for (int i = 0; i < 1024; i++)
        gw_store_put(s, GW_LANE_TELE, GW_KIND_READING, seq++, payload(buf, 1000, "tele", i), 1000);
    gw_store_put(s, GW_LANE_PRIO, GW_KIND_ALARM, seq++, payload(buf, 200, "alarm", 0), 200);
    struct flushed f = {0};
    gw_store_flush(s, on_flush, &f);
    struct prio_wait pw = {s};
    assert_true(run_until(alarm_committed, &pw, 5000));
    assert_int_equal(count_rows(s, GW_LANE_PRIO, "alarm"), 1);
    assert_int_equal(f.called, 0);
    disk_free();
    assert_true(run_until(flush_done, &f, 10000));
    assert_int_equal(f.status, 0);
    assert_int_equal(count_rows(s, GW_LANE_TELE, "tele"), 1024);
    close_store(s);
}

/* ---- 2. nearly full: the floor sheds telemetry; a restart still opens ---- */

static void test_floor_sheds_oldest(void **state)
{
    gw_store_config c = config();
    /* On the 8 MiB tmpfs a 6 MiB floor is crossed after ~2 MiB. */
    c.min_free = 6 << 20;
    gw_store *s = open_store(&c);
    assert_non_null(s);
    char buf[1024];
    uint64_t seq = 1;
    gw_store_put(s, GW_LANE_PRIO, GW_KIND_ALARM, seq++, payload(buf, 200, "alarm", 0), 200);
    for (int b = 0; b < 40; b++) {
        for (int i = 0; i < 200; i++)
            gw_store_put(s, GW_LANE_TELE, GW_KIND_READING, seq++, payload(buf, 1000, "tele", i),
                         1000);
        flush_ok(s);
    }
    gw_store_stats st;
    gw_store_get_stats(s, &st);
    printf("# 8000 readings: shed %llu, commit failures %llu\n",
           (unsigned long long)st.tele_shed_floor, (unsigned long long)st.commit_failures);
    assert_true(st.tele_shed_floor > 0);
    assert_int_equal(st.commit_failures, 0);
    assert_int_equal(count_rows(s, GW_LANE_PRIO, "alarm"), 1);
    close_store(s);
}

static void test_restart_on_full_disk(void **state)
{
    gw_store_config c = config();
    gw_store *s = open_store(&c);
    assert_non_null(s);
    uint64_t base = gw_store_last_seq(s);
    char buf[1024];
    for (int i = 0; i < 50; i++)
        gw_store_put(s, GW_LANE_TELE, GW_KIND_READING, base + (uint64_t)i + 1,
                     payload(buf, 500, "t", i), 500);
    flush_ok(s);
    close_store(s);
    disk_fill();
    s = open_store(&c);
    assert_non_null(s);
    assert_int_equal(count_rows(s, GW_LANE_TELE, "\"t\""), 50);
    assert_int_equal(gw_store_last_seq(s), base + 50);
    disk_free();
    gw_store_put(s, GW_LANE_TELE, GW_KIND_READING, base + 51, payload(buf, 500, "t", 51), 500);
    flush_ok(s);
    close_store(s);
}

/* ---- 3. corruption: detected, moved aside, salvaged, fresh outbox ---- */

static void test_corrupt_outbox(void **state)
{
    enum { ROWS = 2000 };
    gw_store_config c = config();
    gw_store *s = open_store(&c);
    assert_non_null(s);
    uint64_t base = gw_store_last_seq(s);
    char buf[1024];
    for (int i = 0; i < ROWS; i++)
        gw_store_put(s, GW_LANE_TELE, GW_KIND_READING, base + (uint64_t)i + 1,
                     payload(buf, 900, "t", i), 900);
    gw_store_put(s, GW_LANE_PRIO, GW_KIND_ALARM, base + ROWS + 1, payload(buf, 200, "alarm", 0),
                 200);
    flush_ok(s);
    close_store(s);
    /* Random bytes over 3 pages in the middle of the ~500 pages of rows. */
    struct stat sb;
    assert_int_equal(stat(c.path, &sb), 0);
    off_t at = (sb.st_size / 2) & ~(off_t)4095;
    int fd = open(c.path, O_WRONLY);
    assert_true(fd >= 0);
    srand(7);
    for (int i = 0; i < 3 * 4096; i++) {
        unsigned char b = (unsigned char)rand();
        assert_int_equal(pwrite(fd, &b, 1, at + i), 1);
    }
    close(fd);

    s = open_store(&c);
    assert_non_null(s);
    const char *note = gw_store_open_note(s);
    assert_non_null(note);
    printf("# %s\n", note);
    gw_store_stats st;
    gw_store_get_stats(s, &st);
    printf("# salvaged %llu of %d rows (3 pages of %lld overwritten at byte %lld)\n",
           (unsigned long long)st.salvaged, ROWS + 1, (long long)sb.st_size / 4096, (long long)at);
    assert_int_equal(st.recovered, 1);
    /* Past the bad pages too: at most the rows of 3 pages (4 a page) lost. */
    assert_true(st.salvaged >= ROWS + 1 - 3 * 4);
    assert_int_equal(count_rows(s, GW_LANE_TELE, "\"i\":1999,"), 1);
    assert_int_equal(count_rows(s, GW_LANE_PRIO, "alarm"), 1);
    assert_true(gw_store_last_seq(s) >= base + ROWS + 1); /* ids go on above the old ones */
    int aside = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while ((e = readdir(d)))
        aside += strncmp(e->d_name, "outbox.db.corrupt-", 18) == 0 && !strstr(e->d_name, "-wal");
    closedir(d);
    assert_int_equal(aside, 1);
    /* The fresh outbox takes rows. */
    gw_store_put(s, GW_LANE_PRIO, GW_KIND_EVENT, 300, payload(buf, 200, "after", 0), 200);
    flush_ok(s);
    assert_int_equal(count_rows(s, GW_LANE_PRIO, "after"), 1);
    close_store(s);
    s = open_store(&c); /* and opens cleanly next time */
    assert_non_null(s);
    assert_null(gw_store_open_note(s));
    close_store(s);
}

/* The page at the given 1-based number: its first byte (the b-tree type). */
static int page_type(const char *path, int64_t pg)
{
    unsigned char b = 0;
    int fd = open(path, O_RDONLY);
    int ok = fd >= 0 && pread(fd, &b, 1, (pg - 1) * 4096) == 1;
    if (fd >= 0)
        close(fd);
    return ok ? b : -1;
}

static void scribble(const char *path, int64_t pg, unsigned seed)
{
    unsigned char b[4096];
    srand(seed);
    for (size_t i = 0; i < sizeof(b); i++)
        b[i] = (unsigned char)rand();
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, b, sizeof(b), (pg - 1) * 4096), (ssize_t)sizeof(b));
    close(fd);
}

static int64_t rootpage(const char *path, const char *name)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    int64_t r = 0;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT rootpage FROM sqlite_schema WHERE name = ?", -1, &st, NULL),
        SQLITE_OK);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        r = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return r;
}

/* 3b. The roots of both lanes overwritten (SQLite then reaches no row of
 * either), and two leaves of telemetry: the page pass reads the rest from the
 * pages, files events and alarms (one overflowing its page) as priority, and
 * does not bring back rows acknowledged before (their pages are free). */
static void test_corrupt_roots_salvaged_from_pages(void **state)
{
    enum { OLD = 500, TELE = 3000, EVENTS = 35, ALARMS = 5 };
    gw_store_config c = config();
    gw_store *s = open_store(&c);
    assert_non_null(s);
    uint64_t seq = gw_store_last_seq(s);
    static char buf[8192];
    for (int i = 0; i < OLD + TELE; i++) {
        gw_store_put(s, GW_LANE_TELE, GW_KIND_READING, ++seq,
                     payload(buf, 260, i < OLD ? "old" : "tele", i), 260);
        if (i % 100 == 50)
            gw_store_put(s, GW_LANE_PRIO, GW_KIND_EVENT, ++seq, payload(buf, 300, "event", i), 300);
        if (i % 700 == 350) /* larger than a page: an overflow chain */
            gw_store_put(s, GW_LANE_PRIO, GW_KIND_ALARM, ++seq, payload(buf, 6000, "alarm", i),
                         6000);
        if (i % 1000 == 999)
            flush_ok(s);
    }
    flush_ok(s);
    gw_store_ack(s, GW_LANE_TELE, 1, OLD); /* delivered: their pages go to the freelist */
    flush_ok(s);
    assert_int_equal(count_rows(s, GW_LANE_TELE, "\"old\""), 0);
    assert_int_equal(count_rows(s, GW_LANE_PRIO, "\"event\""), EVENTS);
    close_store(s);

    int64_t troot = rootpage(c.path, "outbox_tele"), proot = rootpage(c.path, "outbox_prio");
    struct stat sb;
    assert_int_equal(stat(c.path, &sb), 0);
    int64_t pages = sb.st_size / 4096, hit[2] = {0, 0};
    for (int64_t pg = pages / 2, k = 0; pg < pages && k < 2; pg++)
        if (pg != troot && pg != proot && page_type(c.path, pg) == 0x0D)
            hit[k++] = pg;
    assert_true(troot > 1 && proot > 1 && hit[1] > 0);
    scribble(c.path, troot, 11);
    scribble(c.path, proot, 12);
    scribble(c.path, hit[0], 13);
    scribble(c.path, hit[1], 14);

    s = open_store(&c);
    assert_non_null(s);
    const char *note = gw_store_open_note(s);
    assert_non_null(note);
    printf("# %s\n", note);
    const char *fp = strstr(note, "rows salvaged (");
    assert_non_null(fp);
    unsigned long long from_pages = strtoull(fp + 15, NULL, 10);
    gw_store_stats st;
    gw_store_get_stats(s, &st);
    int written = TELE + EVENTS + ALARMS;
    int tele = count_rows(s, GW_LANE_TELE, "\"tele\"");
    printf("# pages %lld of %lld overwritten (roots %lld, %lld; leaves %lld, %lld): rows salvaged "
           "%llu of %d (SQL alone: %llu, from pages: %llu); telemetry %d of %d\n",
           4LL, (long long)pages, (long long)troot, (long long)proot, (long long)hit[0],
           (long long)hit[1], (unsigned long long)st.salvaged, written,
           (unsigned long long)(st.salvaged - from_pages), from_pages, tele, TELE);
    assert_int_equal(st.recovered, 1);
    /* At most the two overwritten leaves' rows (4096 / ~280 bytes a row). */
    assert_true(tele >= TELE - 2 * 16);
    assert_true(st.salvaged >= (uint64_t)written - 2 * 16);
    assert_int_equal(count_rows(s, GW_LANE_PRIO, "\"event\""), EVENTS);
    assert_int_equal(count_rows(s, GW_LANE_PRIO, "\"alarm\""), ALARMS);
    assert_int_equal(count_rows(s, GW_LANE_TELE, "\"event\""), 0);
    assert_int_equal(
        count_rows(s, GW_LANE_TELE, "\"old\"") + count_rows(s, GW_LANE_PRIO, "\"old\""), 0);
    assert_true(gw_store_last_seq(s) >= seq);
    gw_store_put(s, GW_LANE_TELE, GW_KIND_READING, ++seq, payload(buf, 200, "after", 0), 200);
    flush_ok(s);
    close_store(s);
    s = open_store(&c);
    assert_non_null(s);
    assert_null(gw_store_open_note(s));
    assert_int_equal(count_rows(s, GW_LANE_TELE, "\"after\""), 1);
    close_store(s);
}

/* ---- 4. item ids above every earlier one after the outbox is lost ---- */

/* What the store derives a new sequence from: ms since 2020-01-01, times 1024. */
static uint64_t time_base(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 - 1577836800000ull) << 10;
}

static void remove_outbox(const gw_store_config *c)
{
    char p[320];
    unlink(c->path);
    snprintf(p, sizeof(p), "%s-wal", c->path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", c->path);
    unlink(p);
}

static void test_ids_survive_outbox_loss(void **state)
{
    gw_store_config c = config();
    gw_store *s = open_store(&c);
    assert_non_null(s);
    uint64_t base = gw_store_last_seq(s); /* a new data directory starts from the clock */
    assert_true(base >= time_base() - 60000ull * 1024 && base <= time_base());
    char buf[256];
    for (int i = 1; i <= 3; i++)
        gw_store_put(s, GW_LANE_TELE, GW_KIND_READING, base + (uint64_t)i,
                     payload(buf, 100, "t", i), 100);
    flush_ok(s);
    assert_int_equal(gw_store_ack(s, GW_LANE_TELE, 0, 1000), 0); /* emptied */
    flush_ok(s);
    close_store(s);
    s = open_store(&c);
    assert_int_equal(gw_store_last_seq(s), base + 3); /* a plain restart: no gap */
    close_store(s);

    remove_outbox(&c);
    s = open_store(&c);
    assert_non_null(s);
    uint64_t start = gw_store_last_seq(s);
    printf("# after losing the outbox the sequence continues from %llu\n",
           (unsigned long long)start);
    assert_true(start >= base + 3);
    gw_store_put(s, GW_LANE_TELE, GW_KIND_READING, start + 1, payload(buf, 100, "t", 4), 100);
    flush_ok(s);
    close_store(s);
    /* Lost again, before and after a commit in the new one. */
    remove_outbox(&c);
    s = open_store(&c);
    assert_true(gw_store_last_seq(s) >= start + 1);
    close_store(s);
    s = open_store(&c); /* crash before any commit: still above */
    assert_true(gw_store_last_seq(s) >= start + 1);
    close_store(s);
}

/* The whole data directory wiped (outbox and item-ids): the next start comes
 * from the clock, above every id of the earlier incarnation. */
static void test_ids_survive_wiped_dir(void **state)
{
    gw_store_config c = config();
    gw_store *s = open_store(&c);
    assert_non_null(s);
    uint64_t first = gw_store_last_seq(s);
    char buf[256];
    /* 5000 ids in a burst right after the start, far beyond the clock's pace. */
    for (int i = 1; i <= 5000; i++)
        gw_store_put(s, GW_LANE_TELE, GW_KIND_READING, first + (uint64_t)i,
                     payload(buf, 100, "t", i), 100);
    flush_ok(s);
    close_store(s);
    uint64_t before = first + 5000;
    /* Wall-clock time for ids beyond the 1024 per ms the base allows. */
    struct timespec pause = {0, 5 * 1000 * 1000};
    nanosleep(&pause, NULL);
    rm_dir_files();
    s = open_store(&c);
    assert_non_null(s);
    uint64_t again = gw_store_last_seq(s);
    printf("# first incarnation %llu..%llu, after wiping the data directory from %llu\n",
           (unsigned long long)first + 1, (unsigned long long)before, (unsigned long long)again);
    assert_true(again > before);
    close_store(s);
}

/* ---- 5. replay window: bounded, persisted ---- */

static void test_replay_window(void **state)
{
    gw_store_config c = config();
    gw_store *s = open_store(&c);
    assert_non_null(s);
    char key[64], buf[256];
    assert_int_equal(gw_store_seen(s, "st1", "k0"), 0);
    gw_store_put(s, GW_LANE_TELE, GW_KIND_READING, 1, payload(buf, 100, "t", 0), 100);
    assert_int_equal(gw_store_seen(s, "st1", "k0"), 1);
    assert_int_equal(gw_store_seen(s, "st2", "k0"), 0); /* per station */
    for (int i = 1; i <= 130; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_int_equal(gw_store_seen(s, "st1", key), 0);
    }
    assert_int_equal(gw_store_seen(s, "st1", "k0"), 1); /* resent after 130 others */
    flush_ok(s);
    close_store(s);

    s = open_store(&c);
    assert_int_equal(gw_store_seen(s, "st1", "k0"), 1); /* after a restart */
    assert_int_equal(gw_store_seen(s, "st1", "k130"), 1);
    assert_int_equal(gw_store_seen(s, "st2", "k0"), 1);
    for (int i = 131; i < 131 + 256; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_int_equal(gw_store_seen(s, "st1", key), 0);
    }
    assert_int_equal(gw_store_seen(s, "st1", "k0"), 0); /* bounded: it fell out */
    gw_store_stats st;
    gw_store_get_stats(s, &st);
    assert_int_equal(st.replays, 3);
    close_store(s);
}

int main(void)
{
    uv_loop_init(&loop);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_disk_full_keeps_rows, setup_disk),
        cmocka_unit_test_setup(test_disk_full_alarms_first, setup_disk),
        cmocka_unit_test_setup(test_floor_sheds_oldest, setup_disk),
        cmocka_unit_test_setup(test_restart_on_full_disk, setup_disk),
        cmocka_unit_test_setup(test_corrupt_outbox, setup),
        cmocka_unit_test_setup(test_corrupt_roots_salvaged_from_pages, setup),
        cmocka_unit_test_setup(test_ids_survive_outbox_loss, setup),
        cmocka_unit_test_setup(test_ids_survive_wiped_dir, setup),
        cmocka_unit_test_setup(test_replay_window, setup),
    };
    int rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
    assert_int_equal(uv_loop_close(&loop), 0);
    return rc;
}
