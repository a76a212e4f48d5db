/* The outbox across a real schema change: a file written by the version-1
 * schema (the tables as the first release created them, without the replay
 * window) is opened by this version, migrated to version 2 without losing or
 * altering a row, and keeps working; a file from a newer version is refused
 * with a message that says so, and left as it was. */
#include "base/model.h"
#include "gateway/store.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>

#define ROWS 300

typedef struct env {
    char dir[64];
    uv_loop_t loop;
    gw_store_config cfg;
    size_t got[GW_LANES];
    int64_t last[GW_LANES];
    int fetched, bad;
} env;

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
}

/* The version-1 schema, as gateway/store.c created it before the replay table. */
static void write_v1(env *e)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(e->cfg.path, &db), SQLITE_OK);
    exec_ok(db, "PRAGMA journal_mode=WAL;"
                "CREATE TABLE outbox_prio(id INTEGER PRIMARY KEY AUTOINCREMENT,"
                " seq INTEGER NOT NULL, kind INTEGER NOT NULL, len INTEGER NOT NULL, payload BLOB);"
                "CREATE TABLE outbox_tele(id INTEGER PRIMARY KEY AUTOINCREMENT,"
                " seq INTEGER NOT NULL, kind INTEGER NOT NULL, len INTEGER NOT NULL, payload BLOB);"
                "CREATE TABLE meta(key TEXT PRIMARY KEY, value);"
                "CREATE TABLE state(key TEXT PRIMARY KEY, value BLOB);"
                "PRAGMA user_version=1; BEGIN;");
    char sql[256];
    for (int i = 1; i <= ROWS; i++) {
        snprintf(sql, sizeof(sql),
                 "INSERT INTO outbox_tele(seq, kind, len, payload) VALUES(%d, 0, %zu, 'tele-%d');",
                 2 * i, strlen("tele-") + (size_t)snprintf(NULL, 0, "%d", i), i);
        exec_ok(db, sql);
        if (i % 10 == 0) {
            snprintf(
                sql, sizeof(sql),
                "INSERT INTO outbox_prio(seq, kind, len, payload) VALUES(%d, 2, %zu, 'alarm-%d');",
                2 * i + 1, strlen("alarm-") + (size_t)snprintf(NULL, 0, "%d", i), i);
            exec_ok(db, sql);
        }
    }
    exec_ok(db, "INSERT INTO meta(key, value) VALUES('seq', 601);"
                "INSERT INTO state(key, value) VALUES('rules', x'0102030405');"
                "COMMIT;");
    sqlite3_close(db);
}

static int64_t user_version(const char *path)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void on_fetch(void *ctx, const gw_rows *r)
{
    env *e = ctx;
    for (size_t i = 0; i < r->n; i++) {
        char want[32];
        size_t k = e->got[r->lane] + i + 1;
        if (r->lane == GW_LANE_TELE)
            snprintf(want, sizeof(want), "tele-%zu", k);
        else
            snprintf(want, sizeof(want), "alarm-%zu", k * 10);
        if (r->len[i] != strlen(want) || memcmp(r->buf + r->off[i], want, r->len[i]) != 0)
            e->bad++;
    }
    e->got[r->lane] += r->n;
    if (r->n)
        e->last[r->lane] = r->id[r->n - 1];
    e->fetched = 1;
}

static void fetch_all(env *e, gw_store *s, int lane)
{
    for (int round = 0; round < 100; round++) {
        e->fetched = 0;
        size_t before = e->got[lane];
        assert_int_equal(gw_store_fetch(s, lane, e->last[lane], 64, 1 << 20, on_fetch, e), GW_OK);
        for (int i = 0; i < 5000 && !e->fetched; i++)
            uv_run(&e->loop, UV_RUN_ONCE);
        assert_true(e->fetched);
        if (e->got[lane] == before)
            return;
    }
}

static void test_v1_migrates_without_loss(void **state)
{
    env *e = *state;
    write_v1(e);
    char err[256];
    gw_store *s = gw_store_open(&e->loop, &e->cfg, NULL, NULL, err, sizeof err);
    if (!s)
        fail_msg("open of a v1 outbox: %s", err);
    gw_store_stats st;
    gw_store_get_stats(s, &st);
    assert_int_equal(st.rows[GW_LANE_TELE], ROWS);
    assert_int_equal(st.rows[GW_LANE_PRIO], ROWS / 10);
    /* The old outbox had no item-ids file beside it: numbering goes on above
     * both its last sequence (601) and the clock-derived base (docs/uplink.md),
     * so no new id can repeat an old one. */
    assert_true(gw_store_last_seq(s) >= 601);
    void *val = NULL;
    size_t len = 0;
    assert_int_equal(gw_store_state_get(s, "rules", &val, &len), GW_OK);
    assert_int_equal(len, 5); /* owned by the store */
    assert_memory_equal(val, "\x01\x02\x03\x04\x05", 5);
    fetch_all(e, s, GW_LANE_TELE);
    fetch_all(e, s, GW_LANE_PRIO);
    assert_int_equal(e->got[GW_LANE_TELE], ROWS);
    assert_int_equal(e->got[GW_LANE_PRIO], ROWS / 10);
    assert_int_equal(e->bad, 0);
    /* The new table works: the replay window of the new schema. */
    assert_int_equal(gw_store_seen(s, "st-1", "k1"), 0);
    assert_int_equal(gw_store_seen(s, "st-1", "k1"), 1);
    gw_store_close(s);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(user_version(e->cfg.path), 2);
}

static void test_newer_refused(void **state)
{
    env *e = *state;
    write_v1(e);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(e->cfg.path, &db), SQLITE_OK);
    exec_ok(db, "PRAGMA user_version=3");
    sqlite3_close(db);
    char err[256] = "";
    gw_store *s = gw_store_open(&e->loop, &e->cfg, NULL, NULL, err, sizeof err);
    assert_null(s);
    assert_non_null(strstr(err, "outbox schema version 3 is newer than this gateway's (2)"));
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(user_version(e->cfg.path), 3); /* untouched */
}

static int setup(void **state)
{
    env *e = calloc(1, sizeof *e);
    snprintf(e->dir, sizeof e->dir, "/tmp/gw-upgrade-XXXXXX");
    if (!e || !mkdtemp(e->dir) || uv_loop_init(&e->loop))
        return -1;
    e->cfg.max_bytes = 1 << 24;
    e->cfg.commit_window = 5;
    e->cfg.queue_max = 1000;
    e->cfg.replay_window = 16;
    snprintf(e->cfg.path, sizeof e->cfg.path, "%s/outbox.db", e->dir);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    env *e = *state;
    uv_loop_close(&e->loop);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", e->dir);
    if (system(cmd) != 0)
        return -1;
    free(e);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_v1_migrates_without_loss, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
