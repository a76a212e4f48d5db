/* The outbox: SQLite in WAL mode on its own thread. The loop thread only
 * queues commands (put, ack, fetch, flush) and receives completions through a
 * mailbox (gateway/mailbox.h); the DB thread owns the connection. See store.h for the contract. */
#include "gateway/store.h"

#include "gateway/log.h"
#include "gateway/mailbox.h"
#include "gateway/model.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SCHEMA_VERSION 1
#define MAX_GROUP 20000 /* rows per transaction at most */
#define MAX_DONE 1024   /* completions waiting for the loop; the thread waits beyond */

enum { C_PUT, C_ACK, C_FETCH, C_FLUSH, C_STATE };

struct cmd {
    struct cmd *next;
    int type;
    int lane, kind;
    uint64_t seq;
    int64_t a, b; /* ACK: first,last; FETCH: after, max_rows */
    size_t max_bytes;
    void *cb, *ctx;
    char *key; /* C_STATE */
    size_t len;
    char data[]; /* C_PUT payload, C_STATE value */
};

enum { D_COMMIT, D_FLUSH, D_FETCH };

struct done {
    gw_mail m; /* first: the mailbox links completions to the loop */
    int type;
    unsigned lanes;
    int status;
    void *cb, *ctx;
    gw_rows rows;
    void *mem; /* fetch arrays and payload buffer */
};

struct state_kv {
    struct state_kv *next;
    char *key;
    void *val;
    size_t len;
};

struct gw_store {
    uv_loop_t *loop;
    gw_mailbox done; /* completions -> loop (KEEP: never dropped) */
    gw_store_config cfg;
    gw_store_commit_cb on_commit;
    void *ctx;
    sqlite3 *db;
    sqlite3_stmt *ins[GW_LANES], *sel[GW_LANES], *sum[GW_LANES], *del[GW_LANES], *oldest,
        *del_upto, *state_put, *meta_put;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct cmd *head, *tail;
    int64_t queued_tele;
    int urgent;
    int stop;
    gw_store_stats st; /* guarded by mu */
    struct state_kv *state; /* loaded at open, read-only after */
    int thread_started;
};

static const char *const table[GW_LANES] = {"outbox_prio", "outbox_tele"};

static int exec(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "sqlite: %s (in: %.60s)", msg ? msg : "error", sql);
        sqlite3_free(msg);
        return GW_ERR;
    }
    return GW_OK;
}

static int prep(gw_store *s, sqlite3_stmt **st, const char *sql, char *err, size_t errlen)
{
    if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "sqlite prepare: %s", sqlite3_errmsg(s->db));
        return GW_ERR;
    }
    return GW_OK;
}

static int64_t query_i64(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    int64_t v = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return 0;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void free_done(struct done *d);

/* Store thread. Waits while the loop has MAX_DONE completions to take; after
 * close began the completion is dropped (callers stop using the store first). */
static void push_done(gw_store *s, struct done *d)
{
    if (gw_mailbox_post(&s->done, &d->m, 0, GW_MAIL_KEEP))
        free_done(d);
}

/* Drops the oldest telemetry until the outbox is back under 95% of its bound.
 * Runs inside the group transaction, on the store thread, which is the only
 * writer of the byte and row counters: it reads them without the lock and
 * takes it only to update them, so the loop never waits on this SQL. */
static uint64_t enforce_bound(gw_store *s)
{
    uint64_t dropped = 0;
    int64_t target = s->cfg.max_bytes - s->cfg.max_bytes / 20;
    while (s->st.bytes > s->cfg.max_bytes && s->st.rows[GW_LANE_TELE] > 0) {
        int64_t last = -1, freed = 0, n = 0;
        sqlite3_reset(s->oldest);
        while (sqlite3_step(s->oldest) == SQLITE_ROW) {
            last = sqlite3_column_int64(s->oldest, 0);
            freed += sqlite3_column_int64(s->oldest, 1);
            n++;
            if (s->st.bytes - freed <= target)
                break;
        }
        sqlite3_reset(s->oldest);
        if (last < 0)
            break;
        sqlite3_bind_int64(s->del_upto, 1, last);
        if (sqlite3_step(s->del_upto) != SQLITE_DONE) {
            sqlite3_reset(s->del_upto);
            break;
        }
        sqlite3_reset(s->del_upto);
        pthread_mutex_lock(&s->mu);
        s->st.bytes -= freed;
        s->st.rows[GW_LANE_TELE] -= n;
        pthread_mutex_unlock(&s->mu);
        dropped += (uint64_t)n;
    }
    return dropped;
}

static void do_fetch(gw_store *s, struct cmd *c)
{
    struct done *d = calloc(1, sizeof(*d));
    if (!d)
        return;
    d->type = D_FETCH;
    d->cb = c->cb;
    d->ctx = c->ctx;
    d->rows.lane = c->lane;
    size_t cap = (size_t)c->b;
    size_t bufcap = 4096, used = 0;
    int64_t *ids = malloc(cap * sizeof(*ids));
    uint8_t *kinds = malloc(cap);
    size_t *off = malloc(cap * sizeof(*off));
    size_t *len = malloc(cap * sizeof(*len));
    char *buf = malloc(bufcap);
    size_t n = 0;
    if (!ids || !kinds || !off || !len || !buf)
        goto out;
    sqlite3_stmt *st = s->sel[c->lane];
    sqlite3_bind_int64(st, 1, c->a);
    sqlite3_bind_int64(st, 2, (int64_t)cap);
    while (n < cap && sqlite3_step(st) == SQLITE_ROW) {
        const void *p = sqlite3_column_blob(st, 2);
        size_t l = (size_t)sqlite3_column_bytes(st, 2);
        if (n > 0 && used + l > c->max_bytes)
            break;
        if (used + l > bufcap) {
            while (used + l > bufcap)
                bufcap *= 2;
            char *nb = realloc(buf, bufcap);
            if (!nb)
                break;
            buf = nb;
        }
        memcpy(buf + used, p, l);
        ids[n] = sqlite3_column_int64(st, 0);
        kinds[n] = (uint8_t)sqlite3_column_int(st, 1);
        off[n] = used;
        len[n] = l;
        used += l;
        n++;
    }
    sqlite3_reset(st);
out:
    d->rows.n = n;
    d->rows.id = ids;
    d->rows.kind = kinds;
    d->rows.off = off;
    d->rows.len = len;
    d->rows.buf = buf;
    push_done(s, d);
}

static void *db_thread(void *arg)
{
    gw_store *s = arg;
    struct log_rl {
        int64_t last;
    } drop_log = {0};
    uint64_t drop_since_log = 0;

    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->head && !s->stop)
            pthread_cond_wait(&s->cv, &s->mu);
        if (!s->head && s->stop) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        if (!s->urgent && !s->stop && s->cfg.commit_window > 0) {
            /* Group commit: let more rows arrive for up to the window. */
            struct timespec dl;
            clock_gettime(CLOCK_REALTIME, &dl);
            dl.tv_nsec += (long)(s->cfg.commit_window % 1000) * 1000000L;
            dl.tv_sec += s->cfg.commit_window / 1000 + dl.tv_nsec / 1000000000L;
            dl.tv_nsec %= 1000000000L;
            while (!s->urgent && !s->stop && s->queued_tele < MAX_GROUP &&
                   pthread_cond_timedwait(&s->cv, &s->mu, &dl) == 0) {
            }
        }
        struct cmd *list = s->head;
        s->head = s->tail = NULL;
        s->queued_tele = 0;
        s->urgent = 0;
        pthread_mutex_unlock(&s->mu);

        /* One transaction for every put, ack and state write of the group. */
        unsigned lanes = 0;
        uint64_t in[GW_LANES] = {0, 0}, acked[GW_LANES] = {0, 0}, max_seq = 0;
        int status = GW_OK;
        char err[256];
        if (exec(s->db, "BEGIN", err, sizeof(err)))
            status = GW_ERR;
        for (struct cmd *c = list; c && status == GW_OK; c = c->next) {
            if (c->type == C_PUT) {
                sqlite3_stmt *st = s->ins[c->lane];
                sqlite3_bind_int64(st, 1, (int64_t)c->seq);
                sqlite3_bind_int(st, 2, c->kind);
                sqlite3_bind_int64(st, 3, (int64_t)c->len);
                sqlite3_bind_blob(st, 4, c->data, (int)c->len, SQLITE_STATIC);
                if (sqlite3_step(st) != SQLITE_DONE)
                    status = GW_ERR;
                sqlite3_reset(st);
                lanes |= 1u << c->lane;
                in[c->lane]++;
                if (c->seq > max_seq)
                    max_seq = c->seq;
                pthread_mutex_lock(&s->mu);
                s->st.bytes += (int64_t)c->len;
                s->st.rows[c->lane]++;
                pthread_mutex_unlock(&s->mu);
            } else if (c->type == C_ACK) {
                sqlite3_stmt *st = s->sum[c->lane];
                int64_t bytes = 0, rows = 0;
                sqlite3_bind_int64(st, 1, c->a);
                sqlite3_bind_int64(st, 2, c->b);
                if (sqlite3_step(st) == SQLITE_ROW) {
                    bytes = sqlite3_column_int64(st, 0);
                    rows = sqlite3_column_int64(st, 1);
                }
                sqlite3_reset(st);
                st = s->del[c->lane];
                sqlite3_bind_int64(st, 1, c->a);
                sqlite3_bind_int64(st, 2, c->b);
                if (sqlite3_step(st) != SQLITE_DONE)
                    status = GW_ERR;
                sqlite3_reset(st);
                acked[c->lane] += (uint64_t)rows;
                pthread_mutex_lock(&s->mu);
                s->st.bytes -= bytes;
                s->st.rows[c->lane] -= rows;
                pthread_mutex_unlock(&s->mu);
            } else if (c->type == C_STATE) {
                sqlite3_bind_text(s->state_put, 1, c->key, -1, SQLITE_STATIC);
                sqlite3_bind_blob(s->state_put, 2, c->data, (int)c->len, SQLITE_STATIC);
                if (sqlite3_step(s->state_put) != SQLITE_DONE)
                    status = GW_ERR;
                sqlite3_reset(s->state_put);
            }
        }
        uint64_t dropped = 0;
        if (status == GW_OK) {
            dropped = enforce_bound(s);
            if (max_seq) {
                sqlite3_bind_int64(s->meta_put, 1, (int64_t)max_seq);
                sqlite3_step(s->meta_put);
                sqlite3_reset(s->meta_put);
            }
        }
        if (status == GW_OK && exec(s->db, "COMMIT", err, sizeof(err)))
            status = GW_ERR;
        if (status != GW_OK) {
            GW_ERROR("store", "commit failed: %s", sqlite3_errmsg(s->db));
            exec(s->db, "ROLLBACK", err, sizeof(err));
            lanes = 0;
        }
        pthread_mutex_lock(&s->mu);
        if (status == GW_OK) {
            for (int l = 0; l < GW_LANES; l++) {
                s->st.rows_in[l] += in[l];
                s->st.rows_acked[l] += acked[l];
            }
            if (max_seq > s->st.last_seq)
                s->st.last_seq = max_seq;
            s->st.tele_dropped_full += dropped;
            s->st.commits++;
        } else {
            /* The transaction rolled back: recount what is really held. */
            s->st.bytes = query_i64(s->db, "SELECT (SELECT COALESCE(SUM(len),0) FROM outbox_prio)"
                                           "+(SELECT COALESCE(SUM(len),0) FROM outbox_tele)");
            s->st.rows[0] = query_i64(s->db, "SELECT COUNT(*) FROM outbox_prio");
            s->st.rows[1] = query_i64(s->db, "SELECT COUNT(*) FROM outbox_tele");
        }
        pthread_mutex_unlock(&s->mu);
        if (dropped) {
            drop_since_log += dropped;
            int64_t now = gw_mono_ms();
            if (now - drop_log.last >= 10000) {
                GW_WARN("store",
                        "outbox over %lld bytes: dropped %llu oldest telemetry rows (alarms and "
                        "events are kept)",
                        (long long)s->cfg.max_bytes, (unsigned long long)drop_since_log);
                drop_log.last = now;
                drop_since_log = 0;
            }
        }

        for (struct cmd *c = list; c;) {
            struct cmd *next = c->next;
            if (c->type == C_FLUSH) {
                struct done *d = calloc(1, sizeof(*d));
                if (d) {
                    d->type = D_FLUSH;
                    d->status = status;
                    d->cb = c->cb;
                    d->ctx = c->ctx;
                    push_done(s, d);
                }
            } else if (c->type == C_FETCH) {
                do_fetch(s, c);
            }
            free(c->key);
            free(c);
            c = next;
        }
        if (lanes) {
            struct done *d = calloc(1, sizeof(*d));
            if (d) {
                d->type = D_COMMIT;
                d->lanes = lanes;
                push_done(s, d);
            }
        }
    }
    return NULL;
}

static void free_done(struct done *d)
{
    if (d->type == D_FETCH) {
        free((void *)d->rows.id);
        free((void *)d->rows.kind);
        free((void *)d->rows.off);
        free((void *)d->rows.len);
        free((void *)d->rows.buf);
    }
    free(d);
}

static void on_done(gw_mailbox *mb, gw_mail *list)
{
    gw_store *s = mb->data;
    while (list) {
        struct done *d = (struct done *)list;
        list = list->next;
        if (d->type == D_COMMIT && s->on_commit)
            s->on_commit(s->ctx, d->lanes);
        else if (d->type == D_FLUSH)
            ((gw_store_flush_cb)d->cb)(d->ctx, d->status);
        else if (d->type == D_FETCH)
            ((gw_store_fetch_cb)d->cb)(d->ctx, &d->rows);
        free_done(d);
    }
}

static void discard_done(gw_mailbox *mb, gw_mail *m)
{
    free_done((struct done *)m);
}

static void enqueue(gw_store *s, struct cmd *c, int urgent)
{
    pthread_mutex_lock(&s->mu);
    if (s->tail)
        s->tail->next = c;
    else
        s->head = c;
    s->tail = c;
    if (urgent)
        s->urgent = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static int load_state(gw_store *s)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "SELECT key, value FROM state", -1, &st, NULL) != SQLITE_OK)
        return GW_ERR;
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct state_kv *kv = calloc(1, sizeof(*kv));
        if (!kv)
            break;
        size_t len = (size_t)sqlite3_column_bytes(st, 1);
        kv->key = strdup((const char *)sqlite3_column_text(st, 0));
        kv->val = malloc(len + 1);
        if (!kv->key || !kv->val) {
            free(kv->key);
            free(kv->val);
            free(kv);
            break;
        }
        memcpy(kv->val, sqlite3_column_blob(st, 1), len);
        ((char *)kv->val)[len] = '\0';
        kv->len = len;
        kv->next = s->state;
        s->state = kv;
    }
    sqlite3_finalize(st);
    return GW_OK;
}

gw_store *gw_store_open(uv_loop_t *loop, const gw_store_config *cfg, gw_store_commit_cb on_commit,
                        void *ctx, char *err, size_t errlen)
{
    gw_store *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->loop = loop;
    s->cfg = *cfg;
    s->on_commit = on_commit;
    s->ctx = ctx;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);

    if (sqlite3_open_v2(cfg->path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", cfg->path, s->db ? sqlite3_errmsg(s->db) : "cannot open");
        goto error;
    }
    sqlite3_busy_timeout(s->db, 5000);
    if (exec(s->db, "PRAGMA journal_mode=WAL", err, errlen))
        goto error;
    if (exec(s->db, cfg->sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", err,
             errlen))
        goto error;
    int64_t ver = query_i64(s->db, "PRAGMA user_version");
    if (ver > SCHEMA_VERSION) {
        snprintf(err, errlen, "%s: outbox schema version %lld is newer than this gateway's (%d)",
                 cfg->path, (long long)ver, SCHEMA_VERSION);
        goto error;
    }
    if (exec(s->db,
             "CREATE TABLE IF NOT EXISTS outbox_prio(id INTEGER PRIMARY KEY AUTOINCREMENT,"
             " seq INTEGER NOT NULL, kind INTEGER NOT NULL, len INTEGER NOT NULL, payload BLOB);"
             "CREATE TABLE IF NOT EXISTS outbox_tele(id INTEGER PRIMARY KEY AUTOINCREMENT,"
             " seq INTEGER NOT NULL, kind INTEGER NOT NULL, len INTEGER NOT NULL, payload BLOB);"
             "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value);"
             "CREATE TABLE IF NOT EXISTS state(key TEXT PRIMARY KEY, value BLOB);"
             "PRAGMA user_version=1;",
             err, errlen))
        goto error;
    for (int l = 0; l < GW_LANES; l++) {
        char sql[256];
        snprintf(sql, sizeof(sql), "INSERT INTO %s(seq, kind, len, payload) VALUES(?,?,?,?)",
                 table[l]);
        if (prep(s, &s->ins[l], sql, err, errlen))
            goto error;
        snprintf(sql, sizeof(sql),
                 "SELECT id, kind, payload FROM %s WHERE id > ? ORDER BY id LIMIT ?", table[l]);
        if (prep(s, &s->sel[l], sql, err, errlen))
            goto error;
        snprintf(sql, sizeof(sql),
                 "SELECT COALESCE(SUM(len),0), COUNT(*) FROM %s WHERE id BETWEEN ? AND ?",
                 table[l]);
        if (prep(s, &s->sum[l], sql, err, errlen))
            goto error;
        snprintf(sql, sizeof(sql), "DELETE FROM %s WHERE id BETWEEN ? AND ?", table[l]);
        if (prep(s, &s->del[l], sql, err, errlen))
            goto error;
    }
    if (prep(s, &s->oldest, "SELECT id, len FROM outbox_tele ORDER BY id LIMIT 4096", err,
             errlen) ||
        prep(s, &s->del_upto, "DELETE FROM outbox_tele WHERE id <= ?", err, errlen) ||
        prep(s, &s->state_put, "INSERT OR REPLACE INTO state(key, value) VALUES(?,?)", err,
             errlen) ||
        prep(s, &s->meta_put,
             "INSERT INTO meta(key, value) VALUES('seq', ?1) ON CONFLICT(key) DO UPDATE SET "
             "value = MAX(value, ?1)",
             err, errlen))
        goto error;

    s->st.bytes = query_i64(s->db, "SELECT (SELECT COALESCE(SUM(len),0) FROM outbox_prio)"
                                   "+(SELECT COALESCE(SUM(len),0) FROM outbox_tele)");
    s->st.rows[0] = query_i64(s->db, "SELECT COUNT(*) FROM outbox_prio");
    s->st.rows[1] = query_i64(s->db, "SELECT COUNT(*) FROM outbox_tele");
    int64_t seq = query_i64(s->db, "SELECT COALESCE((SELECT value FROM meta WHERE key='seq'),0)");
    int64_t seq2 = query_i64(s->db, "SELECT MAX((SELECT COALESCE(MAX(seq),0) FROM outbox_prio),"
                                    "(SELECT COALESCE(MAX(seq),0) FROM outbox_tele))");
    s->st.last_seq = (uint64_t)(seq > seq2 ? seq : seq2);
    if (load_state(s))
        goto error;

    s->done.data = s;
    if (gw_mailbox_init(&s->done, loop, MAX_DONE, 0, on_done, discard_done)) {
        snprintf(err, errlen, "cannot create the store's mailbox");
        goto error;
    }
    if (pthread_create(&s->thread, NULL, db_thread, s)) {
        snprintf(err, errlen, "cannot start the store thread");
        gw_mailbox_close(&s->done, NULL);
        goto error;
    }
    s->thread_started = 1;
    return s;
error:
    /* Only reached before the async handle is live (or after it was closed
     * without a callback), so the struct can be freed here. */
    for (int l = 0; l < GW_LANES; l++) {
        sqlite3_finalize(s->ins[l]);
        sqlite3_finalize(s->sel[l]);
        sqlite3_finalize(s->sum[l]);
        sqlite3_finalize(s->del[l]);
    }
    sqlite3_finalize(s->oldest);
    sqlite3_finalize(s->del_upto);
    sqlite3_finalize(s->state_put);
    sqlite3_finalize(s->meta_put);
    if (s->db)
        sqlite3_close(s->db);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    if (s->done.async.loop) {
        /* uv_close above needs the loop to finish; leak the small struct rather
         * than free memory the loop may still touch. */
        return NULL;
    }
    free(s);
    return NULL;
}

int gw_store_put(gw_store *s, int lane, int kind, uint64_t seq, const char *payload, size_t len)
{
    if (lane == GW_LANE_TELE) {
        pthread_mutex_lock(&s->mu);
        int full = s->queued_tele >= s->cfg.queue_max;
        if (full)
            s->st.tele_refused_queue++;
        else
            s->queued_tele++;
        pthread_mutex_unlock(&s->mu);
        if (full)
            return GW_EFULL;
    }
    struct cmd *c = malloc(sizeof(*c) + len);
    if (!c)
        return GW_ENOMEM;
    memset(c, 0, sizeof(*c));
    c->type = C_PUT;
    c->lane = lane;
    c->kind = kind;
    c->seq = seq;
    c->len = len;
    memcpy(c->data, payload, len);
    enqueue(s, c, lane == GW_LANE_PRIO);
    return GW_OK;
}

int gw_store_flush(gw_store *s, gw_store_flush_cb cb, void *ctx)
{
    struct cmd *c = calloc(1, sizeof(*c));
    if (!c)
        return GW_ENOMEM;
    c->type = C_FLUSH;
    c->cb = (void *)cb;
    c->ctx = ctx;
    enqueue(s, c, 0);
    return GW_OK;
}

int gw_store_fetch(gw_store *s, int lane, int64_t after, size_t max_rows, size_t max_bytes,
                   gw_store_fetch_cb cb, void *ctx)
{
    struct cmd *c = calloc(1, sizeof(*c));
    if (!c)
        return GW_ENOMEM;
    c->type = C_FETCH;
    c->lane = lane;
    c->a = after;
    c->b = (int64_t)(max_rows ? max_rows : 1);
    c->max_bytes = max_bytes;
    c->cb = (void *)cb;
    c->ctx = ctx;
    enqueue(s, c, 1);
    return GW_OK;
}

int gw_store_ack(gw_store *s, int lane, int64_t first, int64_t last)
{
    struct cmd *c = calloc(1, sizeof(*c));
    if (!c)
        return GW_ENOMEM;
    c->type = C_ACK;
    c->lane = lane;
    c->a = first;
    c->b = last;
    enqueue(s, c, 0);
    return GW_OK;
}

int gw_store_state_put(gw_store *s, const char *key, const void *val, size_t len)
{
    struct cmd *c = malloc(sizeof(*c) + len);
    if (!c)
        return GW_ENOMEM;
    memset(c, 0, sizeof(*c));
    c->type = C_STATE;
    c->key = strdup(key);
    if (!c->key) {
        free(c);
        return GW_ENOMEM;
    }
    c->len = len;
    memcpy(c->data, val, len);
    enqueue(s, c, 0);
    return GW_OK;
}

int gw_store_state_get(gw_store *s, const char *key, void **val, size_t *len)
{
    for (struct state_kv *kv = s->state; kv; kv = kv->next) {
        if (strcmp(kv->key, key) == 0) {
            *val = kv->val;
            *len = kv->len;
            return GW_OK;
        }
    }
    return GW_ENOTFOUND;
}

uint64_t gw_store_last_seq(const gw_store *s)
{
    return s->st.last_seq;
}

void gw_store_get_stats(gw_store *s, gw_store_stats *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    pthread_mutex_unlock(&s->mu);
}

static void on_closed(gw_mailbox *mb)
{
    gw_store *s = mb->data;
    while (s->state) {
        struct state_kv *kv = s->state;
        s->state = kv->next;
        free(kv->key);
        free(kv->val);
        free(kv);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

void gw_store_close(gw_store *s)
{
    if (!s)
        return;
    /* Closed first: a store thread waiting for room there is released (its
     * last completions are dropped: callers stop using the store before
     * closing it), and the struct lives until the close callback. */
    gw_mailbox_close(&s->done, on_closed);
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->thread_started)
        pthread_join(s->thread, NULL);
    for (int l = 0; l < GW_LANES; l++) {
        sqlite3_finalize(s->ins[l]);
        sqlite3_finalize(s->sel[l]);
        sqlite3_finalize(s->sum[l]);
        sqlite3_finalize(s->del[l]);
    }
    sqlite3_finalize(s->oldest);
    sqlite3_finalize(s->del_upto);
    sqlite3_finalize(s->state_put);
    sqlite3_finalize(s->meta_put);
    sqlite3_exec(s->db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
    sqlite3_close(s->db);
    s->db = NULL;
}
