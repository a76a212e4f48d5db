/* gateway/store.c at its API: rows put on two lanes are committed by a flush, fetched in
 * id order per lane within the row and byte limits, deleted only by an ack, survive a
 * reopen, and over the byte bound the oldest telemetry goes first while the priority lane
 * is never dropped. */
#include "base/model.h"
#include "gateway/store.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <sqlite3.h>

typedef struct env {
    char dir[64];
    uv_loop_t loop;
    gw_store *s;
    gw_store_config cfg;
    int flushed, flush_status;
    size_t n; /* rows of the last fetch */
    int lane;
    int64_t id[64];
    char payload[64][32];
} env;

static void on_flush(void *ctx, int status)
{
    env *e = ctx;
    e->flushed = 1;
    e->flush_status = status;
}

static void on_fetch(void *ctx, const gw_rows *r)
{
    env *e = ctx;
    e->lane = r->lane;
    e->n = r->n;
    for (size_t i = 0; i < r->n && i < 64; i++) {
        e->id[i] = r->id[i];
        snprintf(e->payload[i], sizeof e->payload[i], "%.*s", (int)r->len[i], r->buf + r->off[i]);
    }
}

static void on_nothing(void *ctx, const gw_rows *r)
{
    (void)ctx;
    (void)r;
}

/* Waits (bounded) until everything queued so far is done; callbacks run in order.
 * A flush waits out the commit window like the rows it follows; the fetch
 * behind it (urgent, as every fetch) ends the wait, so the tests that set a
 * 60 s window to hold rows in the queue do not wait it out (each did, 4 min). */
static void settle(env *e)
{
    e->flushed = 0;
    assert_int_equal(gw_store_flush(e->s, on_flush, e), GW_OK);
    assert_int_equal(gw_store_fetch(e->s, GW_LANE_PRIO, INT64_MAX, 1, 1, on_nothing, NULL), GW_OK);
    for (int i = 0; i < 5000 && !e->flushed; i++)
        uv_run(&e->loop, UV_RUN_ONCE);
    assert_true(e->flushed);
    assert_int_equal(e->flush_status, GW_OK);
}

static void open_store(env *e)
{
    char err[256];
    e->s = gw_store_open(&e->loop, &e->cfg, NULL, NULL, err, sizeof err);
    if (!e->s)
        fail_msg("open: %s", err);
}

static void close_store(env *e)
{
    gw_store_close(e->s);
    e->s = NULL;
    uv_run(&e->loop, UV_RUN_DEFAULT);
}

static int setup(void **state)
{
    env *e = calloc(1, sizeof *e);
    snprintf(e->dir, sizeof e->dir, "/tmp/gw-store-XXXXXX");
    if (!e || !mkdtemp(e->dir) || uv_loop_init(&e->loop))
        return -1;
    e->cfg.max_bytes = 1 << 20;
    e->cfg.commit_window = 5;
    e->cfg.queue_max = 1000;
    snprintf(e->cfg.path, sizeof e->cfg.path, "%s/outbox.db", e->dir);
    open_store(e);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    env *e = *state;
    if (e->s)
        close_store(e);
    int rc = uv_loop_close(&e->loop);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", e->dir);
    if (system(cmd) != 0)
        rc = -1;
    free(e);
    return rc ? -1 : 0;
}

static void put(env *e, int lane, uint64_t seq, const char *p)
{
    assert_int_equal(
        gw_store_put(e->s, lane, lane ? GW_KIND_READING : GW_KIND_EVENT, seq, p, strlen(p)), GW_OK);
}

static void fetch(env *e, int lane, int64_t after, size_t max_rows, size_t max_bytes)
{
    e->n = 0;
    assert_int_equal(gw_store_fetch(e->s, lane, after, max_rows, max_bytes, on_fetch, e), GW_OK);
    settle(e);
}

/* What each commit callback handed over, rows per lane in order. */
typedef struct seen {
    int calls;
    size_t n[GW_LANES];
    int64_t id[GW_LANES][64];
    char payload[GW_LANES][64][32];
    int withheld; /* a commit of the lane that carried no rows */
} seen;

static void on_commit(void *ctx, unsigned lanes, const gw_rows *const *rows)
{
    seen *w = ctx;
    w->calls++;
    for (int l = 0; l < GW_LANES; l++) {
        if (!(lanes & (1u << l)))
            continue;
        if (!rows[l]) {
            w->withheld |= 1 << l;
            continue;
        }
        assert_int_equal(rows[l]->lane, l);
        for (size_t i = 0; i < rows[l]->n && w->n[l] < 64; i++, w->n[l]++) {
            w->id[l][w->n[l]] = rows[l]->id[i];
            snprintf(w->payload[l][w->n[l]], 32, "%.*s", (int)rows[l]->len[i],
                     rows[l]->buf + rows[l]->off[i]);
        }
    }
}

/* A commit hands its rows to the loop (no fetch needed): exactly the rows a fetch
 * returns, ids contiguous across commits. Priority rows come with the commit only
 * when every non-telemetry write queued after them is committed too (an alarm is
 * not published before its rule state is stored). */
static void commit_hands_rows(void **state)
{
    env *e = *state;
    close_store(e);
    seen w = {0};
    char err[256];
    e->s = gw_store_open(&e->loop, &e->cfg, on_commit, &w, err, sizeof err);
    if (!e->s)
        fail_msg("open: %s", err);
    uint64_t b = gw_store_last_seq(e->s);
    put(e, GW_LANE_TELE, b + 1, "r1");
    put(e, GW_LANE_TELE, b + 2, "r2");
    put(e, GW_LANE_PRIO, b + 3, "a3");
    settle(e);
    put(e, GW_LANE_TELE, b + 4, "r4");
    settle(e);
    assert_int_equal(w.n[GW_LANE_TELE], 3);
    assert_int_equal(w.n[GW_LANE_PRIO], 1);
    assert_string_equal(w.payload[GW_LANE_TELE][0], "r1");
    assert_string_equal(w.payload[GW_LANE_TELE][2], "r4");
    assert_string_equal(w.payload[GW_LANE_PRIO][0], "a3");
    assert_int_equal(w.id[GW_LANE_TELE][1], w.id[GW_LANE_TELE][0] + 1);
    assert_int_equal(w.id[GW_LANE_TELE][2], w.id[GW_LANE_TELE][1] + 1);
    fetch(e, GW_LANE_TELE, 0, 10, 1 << 20);
    assert_int_equal(e->n, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(e->id[i], w.id[GW_LANE_TELE][i]);
    assert_int_equal(w.withheld, 0);

    /* A state write queued after the alarm but committed in a later group (the
     * alarm's commit is awaited through the stats before the loop runs its
     * callback): that commit must not hand the alarm over, so the reader fetches,
     * behind the state write. */
    gw_store_stats st;
    gw_store_get_stats(e->s, &st);
    uint64_t commits = st.commits;
    put(e, GW_LANE_PRIO, b + 10, "a10");
    for (int i = 0; i < 2000 && st.commits == commits; i++) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
        gw_store_get_stats(e->s, &st);
    }
    assert_true(st.commits > commits);
    assert_int_equal(gw_store_state_put(e->s, "rules", "x", 1), GW_OK);
    settle(e);
    assert_true(w.withheld & (1 << GW_LANE_PRIO));
}

static void lanes_fetch_ack(void **state)
{
    env *e = *state;
    uint64_t b = gw_store_last_seq(e->s); /* a new data directory starts from the clock */
    put(e, GW_LANE_TELE, b + 1, "r1");
    put(e, GW_LANE_PRIO, b + 2, "e2");
    put(e, GW_LANE_TELE, b + 3, "r3");
    put(e, GW_LANE_TELE, b + 4, "r4");
    settle(e);
    gw_store_stats st;
    gw_store_get_stats(e->s, &st);
    assert_int_equal(st.rows[GW_LANE_TELE], 3);
    assert_int_equal(st.rows[GW_LANE_PRIO], 1);
    assert_int_equal(st.bytes, 8);
    assert_int_equal(gw_store_last_seq(e->s), b + 4);

    fetch(e, GW_LANE_PRIO, 0, 10, 4096);
    assert_int_equal(e->n, 1);
    assert_string_equal(e->payload[0], "e2");
    fetch(e, GW_LANE_TELE, 0, 2, 4096); /* row limit */
    assert_int_equal(e->n, 2);
    assert_string_equal(e->payload[0], "r1");
    assert_string_equal(e->payload[1], "r3");
    assert_true(e->id[0] < e->id[1]);
    int64_t first = e->id[0], second = e->id[1];
    fetch(e, GW_LANE_TELE, second, 10, 4096); /* after an id */
    assert_int_equal(e->n, 1);
    assert_string_equal(e->payload[0], "r4");
    fetch(e, GW_LANE_TELE, 0, 10, 1); /* byte limit: at least one row */
    assert_int_equal(e->n, 1);

    /* Ack deletes exactly the acknowledged range. */
    assert_int_equal(gw_store_ack(e->s, GW_LANE_TELE, first, second), GW_OK);
    settle(e);
    fetch(e, GW_LANE_TELE, 0, 10, 4096);
    assert_int_equal(e->n, 1);
    assert_string_equal(e->payload[0], "r4");
    gw_store_get_stats(e->s, &st);
    assert_int_equal(st.rows_acked[GW_LANE_TELE], 2);
    assert_int_equal(st.rows[GW_LANE_TELE], 1);
    assert_int_equal(st.bytes, 4);
}

/* What was committed is there after a close and reopen, and the sequence goes on. */
static void survives_reopen(void **state)
{
    env *e = *state;
    uint64_t b = gw_store_last_seq(e->s);
    put(e, GW_LANE_TELE, b + 7, "r7");
    put(e, GW_LANE_PRIO, b + 8, "e8");
    assert_int_equal(gw_store_state_put(e->s, "rules", "abc", 3), GW_OK);
    settle(e);
    close_store(e);
    open_store(e);
    assert_int_equal(gw_store_last_seq(e->s), b + 8);
    void *v = NULL;
    size_t len = 0;
    assert_int_equal(gw_store_state_get(e->s, "rules", &v, &len), GW_OK);
    assert_int_equal(len, 3);
    assert_memory_equal(v, "abc", 3);
    fetch(e, GW_LANE_TELE, 0, 10, 4096);
    assert_int_equal(e->n, 1);
    assert_string_equal(e->payload[0], "r7");
    fetch(e, GW_LANE_PRIO, 0, 10, 4096);
    assert_int_equal(e->n, 1);
}

/* SQLite's page cache is bounded below its 2 MB default (store.c CACHE_KIB): the
 * outbox rarely reads a page twice, and at 10,000 devices every MiB counts
 * (issue 17). 12 MB of rows written, read back and acknowledged keep the
 * library's whole heap under 1.25 MiB. */
static void sqlite_memory_bounded(void **state)
{
    env *e = *state;
    close_store(e);
    e->cfg.max_bytes = 64 << 20;
    open_store(e);
    char row[2048];
    memset(row, 'x', sizeof row - 1);
    row[sizeof row - 1] = 0;
    uint64_t seq = gw_store_last_seq(e->s);
    for (int b = 0; b < 12; b++) {
        for (int i = 0; i < 500; i++)
            put(e, GW_LANE_TELE, ++seq, row);
        settle(e);
    }
    int64_t after = 0;
    for (int f = 0; f < 120; f++) {
        fetch(e, GW_LANE_TELE, after, 50, 1 << 20);
        assert_int_equal(e->n, 50);
        after = e->id[49];
    }
    assert_int_equal(gw_store_ack(e->s, GW_LANE_TELE, 0, after), GW_OK);
    settle(e);
    sqlite3_int64 used = sqlite3_memory_used(), peak = sqlite3_memory_highwater(0);
    if (peak > (5 << 18))
        fail_msg("SQLite holds %lld bytes (peak %lld): over 1.25 MiB", (long long)used,
                 (long long)peak);
}

/* Over max_bytes the oldest telemetry is dropped (counted) and priority rows stay, even
 * when they alone are over the bound. */
static void byte_bound_drops_oldest_telemetry(void **state)
{
    env *e = *state;
    close_store(e);
    e->cfg.max_bytes = 100;
    open_store(e);
    char p[32];
    for (int i = 0; i < 30; i++) { /* 30 rows of 10 bytes */
        snprintf(p, sizeof p, "tele-%04d", i);
        put(e, GW_LANE_TELE, (uint64_t)i + 1, p);
        if (i % 10 == 9)
            settle(e);
    }
    for (int i = 0; i < 15; i++) { /* 150 bytes of priority rows */
        snprintf(p, sizeof p, "prio-%04d", i);
        put(e, GW_LANE_PRIO, 100 + (uint64_t)i, p);
    }
    settle(e);
    gw_store_stats st;
    gw_store_get_stats(e->s, &st);
    assert_int_equal(st.rows[GW_LANE_PRIO], 15);
    assert_true(st.tele_dropped_full >= 20);
    assert_int_equal(st.rows[GW_LANE_TELE], 0);
    fetch(e, GW_LANE_PRIO, 0, 64, 1 << 20);
    assert_int_equal(e->n, 15);

    /* With room again, what stays is the newest telemetry. */
    close_store(e);
    e->cfg.max_bytes = 1000;
    open_store(e);
    fetch(e, GW_LANE_PRIO, 0, 64, 1 << 20);
    assert_int_equal(gw_store_ack(e->s, GW_LANE_PRIO, e->id[0], e->id[e->n - 1]), GW_OK);
    for (int i = 0; i < 120; i++) {
        snprintf(p, sizeof p, "tele-%04d", 100 + i);
        put(e, GW_LANE_TELE, 200 + (uint64_t)i, p);
    }
    settle(e);
    gw_store_get_stats(e->s, &st);
    assert_true(st.bytes <= 1000);
    fetch(e, GW_LANE_TELE, 0, 64, 1 << 20);
    assert_true(e->n > 0);
    assert_string_not_equal(e->payload[0], "tele-0100"); /* the oldest went first */
    fetch(e, GW_LANE_TELE, e->id[e->n - 1], 64, 1 << 20);
    if (e->n)
        assert_string_equal(e->payload[e->n - 1], "tele-0219"); /* the newest stayed */
}

/* A full queue refuses telemetry (counted) but never a priority row. */
static void queue_bound(void **state)
{
    env *e = *state;
    close_store(e);
    e->cfg.queue_max = 2;
    e->cfg.commit_window = 60000; /* nothing leaves the queue on its own during the test */
    open_store(e);
    int refused = 0;
    for (int i = 0; i < 5; i++)
        if (gw_store_put(e->s, GW_LANE_TELE, GW_KIND_READING, (uint64_t)i + 1, "x", 1) == GW_EFULL)
            refused++;
    assert_true(refused >= 1);
    assert_int_equal(gw_store_put(e->s, GW_LANE_PRIO, GW_KIND_ALARM, 9, "alarm", 5), GW_OK);
    gw_store_stats st;
    gw_store_get_stats(e->s, &st);
    assert_int_equal(st.tele_refused_queue, (uint64_t)refused);
    settle(e);
    fetch(e, GW_LANE_PRIO, 0, 10, 4096);
    assert_int_equal(e->n, 1);
}

/* The queue is bounded in bytes too: rows of 300 bytes (and a command of
 * bookkeeping each, under 166 bytes) against 1,400 bytes queue three at most,
 * whatever queue_max allows. */
static void queue_byte_bound(void **state)
{
    env *e = *state;
    close_store(e);
    e->cfg.queue_max = 1000;
    e->cfg.queue_max_bytes = 1400;
    e->cfg.commit_window = 60000; /* nothing leaves the queue on its own during the test */
    open_store(e);
    settle(e); /* the store thread idle: what it does at open is done */
    char row[300];
    memset(row, 'x', sizeof(row));
    int refused = 0;
    for (int i = 0; i < 10; i++)
        if (gw_store_put(e->s, GW_LANE_TELE, GW_KIND_READING, (uint64_t)i + 1, row, sizeof(row)) ==
            GW_EFULL)
            refused++;
    assert_int_equal(refused, 7);
    assert_int_equal(gw_store_put(e->s, GW_LANE_PRIO, GW_KIND_ALARM, 99, row, sizeof(row)), GW_OK);
    gw_store_stats st;
    gw_store_get_stats(e->s, &st);
    assert_int_equal(st.tele_refused_queue, 7);
    settle(e);
    /* Committed rows give their bytes back: the queue takes rows again. */
    assert_int_equal(gw_store_put(e->s, GW_LANE_TELE, GW_KIND_READING, 100, row, sizeof(row)),
                     GW_OK);
    fetch(e, GW_LANE_TELE, 0, 10, 1 << 20);
    assert_int_equal(e->n, 4);
}

static int64_t held(env *e, int lane)
{
    gw_store_stats st;
    gw_store_get_stats(e->s, &st);
    return st.rows[lane];
}

static void dests(env *e, int n, const unsigned *lanes, int64_t (*cur)[GW_LANES])
{
    static const char *const names[] = {"city", "bureau", "third"};
    assert_int_equal(gw_store_dests(e->s, names, lanes, n, cur), GW_OK);
    settle(e);
}

/* Destinations: a row is deleted only once every destination taking its lane has it at
 * or below its cursor; the cursors survive a reopen; a cursor never goes back. */
static void dests_delete_at_min(void **state)
{
    env *e = *state;
    static const unsigned both[] = {3, 3};
    int64_t cur[2][GW_LANES];
    dests(e, 2, both, cur);
    assert_int_equal(cur[0][GW_LANE_TELE], 0);
    assert_int_equal(cur[1][GW_LANE_TELE], 0);
    char p[16];
    for (int i = 0; i < 10; i++) {
        snprintf(p, sizeof p, "r%d", i);
        put(e, GW_LANE_TELE, (uint64_t)i + 1, p);
    }
    settle(e);
    fetch(e, GW_LANE_TELE, 0, 64, 4096);
    assert_int_equal(e->n, 10);
    int64_t id4 = e->id[4], id9 = e->id[9];
    gw_store_stats st;
    gw_store_get_stats(e->s, &st);
    assert_int_equal(st.last_id[GW_LANE_TELE], id9);

    assert_int_equal(gw_store_ack_upto(e->s, 0, GW_LANE_TELE, id9), GW_OK); /* city has all */
    settle(e);
    assert_int_equal(held(e, GW_LANE_TELE), 10); /* the bureau has none: nothing goes */
    assert_int_equal(gw_store_ack_upto(e->s, 1, GW_LANE_TELE, id4), GW_OK);
    settle(e);
    assert_int_equal(held(e, GW_LANE_TELE), 5);
    assert_int_equal(gw_store_ack_upto(e->s, 1, GW_LANE_TELE, e->id[2]), GW_OK); /* older */
    settle(e);
    assert_int_equal(held(e, GW_LANE_TELE), 5);
    gw_store_get_stats(e->s, &st);
    assert_int_equal(st.rows_acked[GW_LANE_TELE], 5);

    /* A restart (like SIGKILL: the cursors were committed with the deletes) resumes both. */
    close_store(e);
    open_store(e);
    dests(e, 2, both, cur);
    assert_int_equal(cur[0][GW_LANE_TELE], id9);
    assert_int_equal(cur[1][GW_LANE_TELE], id4);
    fetch(e, GW_LANE_TELE, cur[1][GW_LANE_TELE], 64, 4096);
    assert_int_equal(e->n, 5);
    assert_string_equal(e->payload[0], "r5");
    assert_int_equal(gw_store_ack_upto(e->s, 1, GW_LANE_TELE, id9), GW_OK);
    settle(e);
    assert_int_equal(held(e, GW_LANE_TELE), 0);
}

/* A destination removed from the configuration stops pinning rows at the next start,
 * and one that does not take a lane never holds that lane back. */
static void dests_removed_and_lanes(void **state)
{
    env *e = *state;
    static const unsigned both[] = {3, 3};
    int64_t cur[3][GW_LANES];
    dests(e, 2, both, cur);
    put(e, GW_LANE_TELE, 1, "r1");
    put(e, GW_LANE_PRIO, 2, "e2");
    settle(e);
    gw_store_stats st;
    gw_store_get_stats(e->s, &st);
    assert_int_equal(gw_store_ack_upto(e->s, 0, GW_LANE_TELE, st.last_id[GW_LANE_TELE]), GW_OK);
    assert_int_equal(gw_store_ack_upto(e->s, 0, GW_LANE_PRIO, st.last_id[GW_LANE_PRIO]), GW_OK);
    settle(e);
    assert_int_equal(held(e, GW_LANE_TELE), 1); /* the bureau (down) holds them */
    assert_int_equal(held(e, GW_LANE_PRIO), 1);

    close_store(e);
    open_store(e);
    dests(e, 1, both, cur); /* the bureau is gone from the configuration */
    assert_int_equal(cur[0][GW_LANE_TELE], st.last_id[GW_LANE_TELE]);
    assert_int_equal(held(e, GW_LANE_TELE), 0);
    assert_int_equal(held(e, GW_LANE_PRIO), 0);

    /* The city again with a new destination that takes alarms and events only. */
    close_store(e);
    open_store(e);
    static const unsigned lanes[] = {3, 1u << GW_LANE_PRIO};
    dests(e, 2, lanes, cur);
    assert_int_equal(cur[1][GW_LANE_PRIO], 0); /* new: gets what the outbox still holds */
    put(e, GW_LANE_TELE, 3, "r3");
    put(e, GW_LANE_PRIO, 4, "e4");
    settle(e);
    gw_store_get_stats(e->s, &st);
    assert_int_equal(gw_store_ack_upto(e->s, 0, GW_LANE_TELE, st.last_id[GW_LANE_TELE]), GW_OK);
    assert_int_equal(gw_store_ack_upto(e->s, 0, GW_LANE_PRIO, st.last_id[GW_LANE_PRIO]), GW_OK);
    settle(e);
    assert_int_equal(held(e, GW_LANE_TELE), 0); /* not the new one's lane */
    assert_int_equal(held(e, GW_LANE_PRIO), 1);
    assert_int_equal(gw_store_ack_upto(e->s, 1, GW_LANE_PRIO, st.last_id[GW_LANE_PRIO]), GW_OK);
    settle(e);
    assert_int_equal(held(e, GW_LANE_PRIO), 0);
    assert_int_equal(gw_store_ack_upto(e->s, 5, 7, 1), GW_EINVAL);

    /* A lane no destination takes is not kept for anyone. */
    close_store(e);
    open_store(e);
    static const unsigned prio_only[] = {1u << GW_LANE_PRIO};
    dests(e, 1, prio_only, cur);
    put(e, GW_LANE_TELE, 5, "r5");
    put(e, GW_LANE_PRIO, 6, "e6");
    settle(e);
    assert_int_equal(held(e, GW_LANE_TELE), 0);
    assert_int_equal(held(e, GW_LANE_PRIO), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(lanes_fetch_ack, setup, teardown),
        cmocka_unit_test_setup_teardown(commit_hands_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(survives_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(sqlite_memory_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(byte_bound_drops_oldest_telemetry, setup, teardown),
        cmocka_unit_test_setup_teardown(queue_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(queue_byte_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(dests_delete_at_min, setup, teardown),
        cmocka_unit_test_setup_teardown(dests_removed_and_lanes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
