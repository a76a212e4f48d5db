/* The outbox: SQLite in WAL mode on its own thread. The loop thread only
 * queues commands (put, ack, fetch, flush) and receives completions through a
 * mailbox (base/mailbox.h); the DB thread owns the connection. See store.h for the contract.
 *
 * Failure handling, in one paragraph: a group that fails to commit is rolled
 * back but its commands stay, in order, at the head of the next group; they
 * are retried with a capped backoff, priority rows alone first. A flush is
 * answered only when nothing queued before it is still uncommitted. When the
 * disk is full the store says so once (log, stats, a state callback), releases
 * its reserve file so alarms find room, and checkpoints the WAL; below the
 * free-space floor it sheds the oldest telemetry before SQLite runs out. At
 * open a quick_check catches a corrupt file, which is moved aside and salvaged
 * into a fresh outbox. */
#include "gateway/store.h"

#include "gateway/salvage.h"

#include "base/log.h"
#include "base/mailbox.h"
#include "base/model.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define SCHEMA_VERSION 2
#define MAX_GROUP 20000           /* rows per transaction at most */
#define IDS_BLOCK (1u << 20)      /* item sequence numbers reserved per write of item-ids */
#define RESERVE_BYTES (256 << 10) /* released for priority rows when the disk fills */
#define WAL_LIMIT (4 << 20)       /* journal_size_limit: the WAL is cut back to this */
/* SQLite's page cache, KiB (its default is 2,000). The outbox appends at one
 * end and deletes at the other a second later, so beyond the b-tree's inner
 * pages the cache holds pages it will not read again: at 10,000 devices 512 KiB
 * costs ~400 more misses a second (reads from the OS page cache, ~0.5 % of the
 * CPU) and saves 1.5 MiB resident (issue 17, docs/design.md "Measured"). */
#define CACHE_KIB 512
#define QUICK_CHECK_MS 3000       /* quick_check at open gives up after this (large files) */
#define SALVAGE_MS 10000          /* salvage of a corrupt outbox gives up after this */
#define SALVAGE_PROBE_MAX 1000000 /* ids probed when the file knows no highest id */
#define RETRY_MIN_MS 20
#define RETRY_MAX_MS 1000
#define FULL_LOG_MS 30000
#define MAX_DONE 1024 /* completions waiting for the loop; the thread waits beyond */
/* Acknowledgements (the deletes and cursor moves that follow a PUBACK) do not
 * wake the store thread: they join the next commit, or are committed on their
 * own this long after the first of them (issue 17: a transaction and two
 * wake-ups per message). A crash inside it resends those rows (at least once,
 * as after any crash before the delete); nothing accepted is lost by it. */
#define LAZY_MS 1000
/* Rows coming more than this many commit windows after the last commit of
 * rows are committed at once, without waiting out the window: the window
 * groups rows under load; at a few rows a second it only added a wake-up per
 * commit (issue 17, the idle cost). */
#define BUSY_GAP_WINDOWS 10
/* A data directory with no memory of earlier ids starts its sequence at
 * (ms since 2020-01-01T00:00:00Z) << 10: above every id an earlier incarnation
 * could have handed out unless it averaged more than 1024 ids per ms, and
 * below 2^53 until about 2298. */
#define IDS_TIME_ORIGIN_MS 1577836800000LL
#define IDS_TIME_SHIFT 10

enum { C_PUT, C_ACK, C_FETCH, C_FLUSH, C_STATE, C_SEEN, C_DESTS, C_DACK };

struct cmd {
    struct cmd *next;
    int type;
    int lane, kind;
    int committed; /* a write that is in the database (kept only for ordering) */
    uint64_t tick; /* writes other than telemetry rows and acknowledgements: their order */
    uint64_t seq;
    int64_t a, b; /* ACK: first,last; FETCH: after, max_rows; SEEN: slot, n; DACK: dest, upto;
                   * PUT: a = the row id once inserted */
    size_t max_bytes;
    void *cb, *ctx;
    char *key; /* C_STATE key, C_SEEN station */
    size_t len;
    char data[]; /* C_PUT payload, C_STATE value, C_SEEN key */
};

enum { D_COMMIT, D_FLUSH, D_FETCH, D_STATE };

struct done {
    gw_mail m; /* first: the mailbox links completions to the loop */
    int type;
    unsigned lanes;
    int status;
    int64_t ms;     /* D_STATE: duration of the episode */
    uint64_t fails; /* D_STATE: failed attempts in it */
    void *cb, *ctx;
    gw_rows rows[GW_LANES]; /* D_FETCH: rows[0]; D_COMMIT: the rows added, per lane */
    uint64_t ticks_done;    /* D_COMMIT: every write with a tick up to it is committed */
};

struct state_kv {
    struct state_kv *next;
    char *key;
    void *val;
    size_t len;
};

/* One station's replay window: hashes of its last keys, a ring indexed by
 * n % replay_window where n counts every key the station ever had. */
struct rwin {
    char *station;
    uint64_t *h;
    int64_t n;
};

/* A destination's cursors (see gw_store_dests). */
struct dest {
    char name[GW_STORE_DEST_NAME];
    unsigned lanes;
    int64_t acked[GW_LANES];
};

/* What one commit attempt changed, applied to the stats only if it commits. */
struct tally {
    unsigned lanes;
    unsigned dmoved; /* lanes whose destination cursors moved: deletes may follow */
    int64_t last_id[GW_LANES];
    uint64_t in[GW_LANES], acked[GW_LANES], max_seq, dropped, shed;
    int64_t bytes, rows[GW_LANES], tele_done, tele_done_bytes;
    int64_t new_first[GW_LANES], new_last[GW_LANES]; /* row ids this commit inserted */
    size_t new_bytes[GW_LANES];
};

struct gw_store {
    uv_loop_t *loop;
    gw_mailbox done; /* completions -> loop (KEEP: never dropped) */
    gw_store_config cfg;
    gw_store_commit_cb on_commit;
    void *ctx;
    gw_store_state_cb on_state;
    void *state_ctx;
    sqlite3 *db;
    sqlite3_stmt *ins[GW_LANES], *sel[GW_LANES], *sum[GW_LANES], *del[GW_LANES], *oldest, *del_upto,
        *state_put, *meta_put, *replay_put, *cur_put, *seq_get;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct cmd *head, *tail;
    int64_t queued_tele;       /* telemetry rows not yet committed (queued or kept for retry) */
    int64_t queued_tele_bytes; /* their bytes with the command: the queue's memory */
    int urgent;
    int eager;       /* queued commands that are not acknowledgements */
    int sleeping;    /* the thread waits with no deadline: an acknowledgement wakes it */
    uint64_t wtick;  /* the last cmd.tick given */
    int64_t pushed;  /* bytes of committed rows on their way to the loop (under mu) */
    int64_t lazy_at; /* mono ms the oldest queued acknowledgement came, 0: none */
    int stop;
    gw_store_stats st;      /* guarded by mu */
    struct state_kv *state; /* loaded at open, read-only after */
    int thread_started;
    /* Item ids: the outbox's incarnation and the sequence reserved in item-ids. */
    char ids_path[300], reserve_path[300], dir[256];
    int64_t epoch;
    uint64_t ids_reserved; /* DB thread after open */
    int64_t last_ckpt;
    int64_t fs_at, fs_last; /* free_space_recent(): when read (mono ms), what */
    char note[512];
    /* Replay windows: loop thread only. */
    struct rwin *win;
    size_t wcap, wn;
    struct cmd *seen_pending;
    /* Destinations: the cursors found at open (read-only after), and those the
     * DB thread works with: dest as committed, dnew inside a transaction. */
    struct dest *dloaded;
    int ndloaded;
    struct dest dest[GW_STORE_MAX_DESTS], dnew[GW_STORE_MAX_DESTS];
    int ndest, ndnew;
    int64_t deleted[GW_LANES], deleted_new[GW_LANES]; /* rows up to here are gone */
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

/* Free bytes for an unprivileged writer on the outbox's file system, or -1. */
static int64_t free_space(const gw_store *s)
{
    struct statvfs v;
    if (statvfs(s->dir, &v))
        return -1;
    return (int64_t)v.f_bavail * (int64_t)v.f_frsize;
}

/* free_space() for the per-commit checks, read again at most once a second
 * while the last reading was at least twice the floor (a statfs per commit was
 * a tenth of the store thread's syscalls at low rates: issue 17). Near the
 * floor it is read every time. DB thread. */
static int64_t free_space_recent(gw_store *s)
{
    int64_t now = gw_mono_ms();
    if (s->fs_at && now - s->fs_at < 1000 && s->fs_last >= 2 * s->cfg.min_free)
        return s->fs_last;
    s->fs_last = free_space(s);
    s->fs_at = now;
    return s->fs_last;
}

/* Durable small-file write: temp, fsync, rename, fsync the directory.
 * Returns 0 or an errno value. */
static int write_file_durable(const char *dir, const char *path, const char *text)
{
    char tmp[320];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        return errno;
    size_t len = strlen(text);
    int e = 0;
    if (write(fd, text, len) != (ssize_t)len)
        e = errno ? errno : EIO;
    if (!e && fsync(fd))
        e = errno;
    close(fd);
    if (!e && rename(tmp, path))
        e = errno;
    if (e) {
        unlink(tmp);
        return e;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

int gw_write_file_durable(const char *dir, const char *path, const char *text)
{
    return write_file_durable(dir, path, text);
}

/* Reserves item sequence numbers up to `upto` in item-ids, before any of them
 * can be committed: a new outbox then starts above every id ever handed out. */
static int ids_reserve(gw_store *s, uint64_t upto)
{
    char text[96];
    snprintf(text, sizeof(text), "epoch %lld reserved %llu\n", (long long)s->epoch,
             (unsigned long long)upto);
    int e = write_file_durable(s->dir, s->ids_path, text);
    if (e)
        return e;
    s->ids_reserved = upto;
    return 0;
}

/* The reserve: a file of zeros released when the disk fills, so the priority
 * rows that follow find room. Best effort; recreated when space is back. */
static void reserve_make(gw_store *s)
{
    if (access(s->reserve_path, F_OK) == 0)
        return;
    int64_t fs = free_space(s);
    if (fs >= 0 && fs < RESERVE_BYTES + s->cfg.min_free)
        return;
    int fd = open(s->reserve_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0)
        return;
    static const char zero[4096];
    int ok = 1;
    for (int i = 0; ok && i < RESERVE_BYTES / (int)sizeof(zero); i++)
        ok = write(fd, zero, sizeof(zero)) == (ssize_t)sizeof(zero);
    if (ok)
        ok = fsync(fd) == 0;
    close(fd);
    if (!ok)
        unlink(s->reserve_path);
}

static int reserve_release(gw_store *s)
{
    return unlink(s->reserve_path) == 0;
}

static void checkpoint(gw_store *s)
{
    sqlite3_exec(s->db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
    s->last_ckpt = gw_mono_ms();
}

/* Deletes the oldest telemetry until at least `need` payload bytes are freed
 * (or none is left). Runs inside the group transaction on the store thread. */
static int shed_oldest(gw_store *s, int64_t need, struct tally *t, uint64_t *count)
{
    int64_t freed_total = 0;
    while (freed_total < need) {
        int64_t last = -1, freed = 0, n = 0;
        sqlite3_reset(s->oldest);
        while (sqlite3_step(s->oldest) == SQLITE_ROW) {
            last = sqlite3_column_int64(s->oldest, 0);
            freed += sqlite3_column_int64(s->oldest, 1);
            n++;
            if (freed_total + freed >= need)
                break;
        }
        sqlite3_reset(s->oldest);
        if (last < 0)
            break;
        sqlite3_bind_int64(s->del_upto, 1, last);
        int rc = sqlite3_step(s->del_upto);
        sqlite3_reset(s->del_upto);
        if (rc != SQLITE_DONE)
            return rc;
        freed_total += freed;
        t->bytes -= freed;
        t->rows[GW_LANE_TELE] -= n;
        *count += (uint64_t)n;
    }
    return SQLITE_OK;
}

static void do_fetch(gw_store *s, struct cmd *c)
{
    struct done *d = calloc(1, sizeof(*d));
    if (!d)
        return;
    d->type = D_FETCH;
    d->cb = c->cb;
    d->ctx = c->ctx;
    d->rows[0].lane = c->lane;
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
    d->rows[0].n = n;
    d->rows[0].id = ids;
    d->rows[0].kind = kinds;
    d->rows[0].off = off;
    d->rows[0].len = len;
    d->rows[0].buf = buf;
    push_done(s, d);
}

static int is_write(const struct cmd *c)
{
    return c->type == C_PUT || c->type == C_ACK || c->type == C_STATE || c->type == C_SEEN ||
           c->type == C_DESTS || c->type == C_DACK;
}

/* In a priority-only attempt: what may go ahead of the telemetry (acks free
 * space, state belongs to the alarms). */
static int in_prio_part(const struct cmd *c)
{
    return (c->type == C_PUT && c->lane == GW_LANE_PRIO) || c->type == C_ACK ||
           c->type == C_STATE || c->type == C_DESTS || c->type == C_DACK;
}

/* ---- Destinations' cursors (DB thread) ---- */

static int cursor_put(gw_store *s, const char *name, const int64_t *acked)
{
    int rc = SQLITE_OK;
    for (int l = 0; l < GW_LANES && rc == SQLITE_OK; l++) {
        sqlite3_bind_text(s->cur_put, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_int(s->cur_put, 2, l);
        sqlite3_bind_int64(s->cur_put, 3, acked[l]);
        if (sqlite3_step(s->cur_put) != SQLITE_DONE)
            rc = sqlite3_errcode(s->db);
        sqlite3_reset(s->cur_put);
    }
    return rc;
}

/* C_DESTS installs the configured destinations and drops the cursors of any
 * other; C_DACK moves one cursor. Both work on dnew, inside the transaction. */
static int dest_cmd(gw_store *s, const struct cmd *c, struct tally *t)
{
    if (c->type == C_DACK) {
        struct dest *d = c->a >= 0 && c->a < s->ndnew ? &s->dnew[c->a] : NULL;
        if (d && c->b > d->acked[c->lane]) {
            d->acked[c->lane] = c->b;
            t->dmoved |= 1u << c->lane;
        }
        return SQLITE_OK;
    }
    int n = (int)(c->len / sizeof(struct dest));
    const struct dest *list = (const struct dest *)c->data;
    char sql[64 + GW_STORE_MAX_DESTS * 2] = "DELETE FROM cursor WHERE dest NOT IN (";
    for (int i = 0; i < n; i++)
        strcat(sql, i ? ",?" : "?");
    strcat(sql, ")");
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    for (int i = 0; i < n; i++)
        sqlite3_bind_text(st, i + 1, list[i].name, -1, SQLITE_STATIC);
    rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(s->db);
    sqlite3_finalize(st);
    memcpy(s->dnew, list, (size_t)n * sizeof(*list));
    s->ndnew = n;
    /* Every destination gets its rows now, so the next start knows it. */
    for (int i = 0; i < n && rc == SQLITE_OK; i++)
        rc = cursor_put(s, list[i].name, list[i].acked);
    t->dmoved = (1u << GW_LANES) - 1;
    return rc;
}

/* Before COMMIT: writes the cursors that moved and deletes every row at or
 * below the lowest cursor of the destinations taking its lane. */
static int dest_advance(gw_store *s, struct tally *t)
{
    int rc = SQLITE_OK;
    if (t->lanes || t->dmoved) {
        sqlite3_reset(s->seq_get);
        while (sqlite3_step(s->seq_get) == SQLITE_ROW)
            for (int l = 0; l < GW_LANES; l++)
                if (!strcmp((const char *)sqlite3_column_text(s->seq_get, 0), table[l]))
                    t->last_id[l] = sqlite3_column_int64(s->seq_get, 1);
        sqlite3_reset(s->seq_get);
    }
    for (int i = 0; t->dmoved && i < s->ndnew && rc == SQLITE_OK; i++)
        if (s->ndest != s->ndnew ||
            memcmp(s->dnew[i].acked, s->dest[i].acked, sizeof(s->dest[i].acked)))
            rc = cursor_put(s, s->dnew[i].name, s->dnew[i].acked);
    for (int l = 0; l < GW_LANES && rc == SQLITE_OK; l++) {
        if (!((t->dmoved | t->lanes) & (1u << l)) || !s->ndnew)
            continue;
        int64_t low = INT64_MAX;
        for (int i = 0; i < s->ndnew; i++) {
            const struct dest *d = &s->dnew[i];
            if ((d->lanes & (1u << l)) && d->acked[l] < low)
                low = d->acked[l];
        }
        if (low == INT64_MAX) /* no destination takes this lane: nobody waits for it */
            low = t->last_id[l];
        if (low <= s->deleted_new[l])
            continue;
        int64_t bytes = 0, rows = 0;
        sqlite3_stmt *st = s->sum[l];
        sqlite3_bind_int64(st, 1, s->deleted_new[l] + 1);
        sqlite3_bind_int64(st, 2, low);
        if (sqlite3_step(st) == SQLITE_ROW) {
            bytes = sqlite3_column_int64(st, 0);
            rows = sqlite3_column_int64(st, 1);
        }
        sqlite3_reset(st);
        st = s->del[l];
        sqlite3_bind_int64(st, 1, s->deleted_new[l] + 1);
        sqlite3_bind_int64(st, 2, low);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = sqlite3_errcode(s->db);
        sqlite3_reset(st);
        s->deleted_new[l] = low;
        t->acked[l] += (uint64_t)rows;
        t->bytes -= bytes;
        t->rows[l] -= rows;
    }
    return rc;
}

/* After the transaction: what it did to the cursors becomes the committed
 * state (ok), or is forgotten (a rollback; the commands are tried again). */
static void dest_end(gw_store *s, const struct tally *t, int ok)
{
    if (!ok) {
        memcpy(s->dnew, s->dest, sizeof(s->dest));
        s->ndnew = s->ndest;
        memcpy(s->deleted_new, s->deleted, sizeof(s->deleted));
        return;
    }
    memcpy(s->dest, s->dnew, sizeof(s->dest));
    s->ndest = s->ndnew;
    memcpy(s->deleted, s->deleted_new, sizeof(s->deleted));
    pthread_mutex_lock(&s->mu);
    for (int l = 0; l < GW_LANES; l++)
        if (t->last_id[l] > s->st.last_id[l])
            s->st.last_id[l] = t->last_id[l];
    pthread_mutex_unlock(&s->mu);
}

/* One transaction over the uncommitted writes of list (only the priority part
 * when prio_only). Returns SQLITE_OK with every included command marked
 * committed and t filled, or an SQLite error code with nothing changed. */
static int commit_group(gw_store *s, struct cmd *list, int prio_only, struct tally *t, char *err,
                        size_t errlen)
{
    memset(t, 0, sizeof(*t));
    int rc = SQLITE_OK;
    int64_t tele_bytes = 0;
    for (struct cmd *c = list; c; c = c->next)
        if (c->type == C_PUT && !c->committed && c->lane == GW_LANE_TELE && !prio_only)
            tele_bytes += (int64_t)c->len;
    if (exec(s->db, "BEGIN", err, errlen))
        return sqlite3_errcode(s->db);
    /* Below the free-space floor: make room inside the file for the incoming
     * telemetry by shedding the oldest, so the file stops growing. */
    if (tele_bytes > 0 && s->cfg.min_free > 0) {
        int64_t fs = free_space_recent(s);
        if (fs >= 0 && fs < s->cfg.min_free)
            rc = shed_oldest(s, tele_bytes + 65536, t, &t->shed);
    }
    for (struct cmd *c = list; c && rc == SQLITE_OK; c = c->next) {
        if (c->committed || !is_write(c) || (prio_only && !in_prio_part(c)))
            continue;
        if (c->type == C_PUT) {
            sqlite3_stmt *st = s->ins[c->lane];
            sqlite3_bind_int64(st, 1, (int64_t)c->seq);
            sqlite3_bind_int(st, 2, c->kind);
            sqlite3_bind_int64(st, 3, (int64_t)c->len);
            sqlite3_bind_blob(st, 4, c->data, (int)c->len, SQLITE_STATIC);
            if (sqlite3_step(st) != SQLITE_DONE)
                rc = sqlite3_errcode(s->db);
            sqlite3_reset(st);
            c->a = sqlite3_last_insert_rowid(s->db);
            if (!t->new_first[c->lane])
                t->new_first[c->lane] = c->a;
            t->new_last[c->lane] = c->a;
            t->new_bytes[c->lane] += c->len;
            t->lanes |= 1u << c->lane;
            t->in[c->lane]++;
            if (c->seq > t->max_seq)
                t->max_seq = c->seq;
            t->bytes += (int64_t)c->len;
            t->rows[c->lane]++;
            t->tele_done += c->lane == GW_LANE_TELE;
            t->tele_done_bytes += c->lane == GW_LANE_TELE ? (int64_t)(sizeof(*c) + c->len) : 0;
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
                rc = sqlite3_errcode(s->db);
            sqlite3_reset(st);
            t->acked[c->lane] += (uint64_t)rows;
            t->bytes -= bytes;
            t->rows[c->lane] -= rows;
        } else if (c->type == C_STATE) {
            sqlite3_bind_text(s->state_put, 1, c->key, -1, SQLITE_STATIC);
            sqlite3_bind_blob(s->state_put, 2, c->data, (int)c->len, SQLITE_STATIC);
            if (sqlite3_step(s->state_put) != SQLITE_DONE)
                rc = sqlite3_errcode(s->db);
            sqlite3_reset(s->state_put);
        } else if (c->type == C_DESTS || c->type == C_DACK) {
            rc = dest_cmd(s, c, t);
        } else if (c->type == C_SEEN) {
            sqlite3_bind_text(s->replay_put, 1, c->key, -1, SQLITE_STATIC);
            sqlite3_bind_int64(s->replay_put, 2, c->a);
            sqlite3_bind_int64(s->replay_put, 3, c->b);
            sqlite3_bind_text(s->replay_put, 4, c->data, (int)c->len, SQLITE_STATIC);
            if (sqlite3_step(s->replay_put) != SQLITE_DONE)
                rc = sqlite3_errcode(s->db);
            sqlite3_reset(s->replay_put);
        }
    }
    if (rc == SQLITE_OK)
        rc = dest_advance(s, t);
    if (rc == SQLITE_OK && s->cfg.max_bytes > 0) {
        /* The byte bound, as before: oldest telemetry first, to 95% of it. */
        pthread_mutex_lock(&s->mu);
        int64_t held = s->st.bytes;
        pthread_mutex_unlock(&s->mu);
        if (held + t->bytes > s->cfg.max_bytes)
            rc = shed_oldest(s, held + t->bytes - (s->cfg.max_bytes - s->cfg.max_bytes / 20), t,
                             &t->dropped);
    }
    if (rc == SQLITE_OK && t->max_seq) {
        sqlite3_bind_int64(s->meta_put, 1, (int64_t)t->max_seq);
        if (sqlite3_step(s->meta_put) != SQLITE_DONE)
            rc = sqlite3_errcode(s->db);
        sqlite3_reset(s->meta_put);
    }
    if (rc == SQLITE_OK && t->max_seq > s->ids_reserved) {
        int e = ids_reserve(s, t->max_seq + IDS_BLOCK);
        if (e) {
            snprintf(err, errlen, "item-ids: %s", strerror(e));
            rc = (e == ENOSPC || e == EDQUOT) ? SQLITE_FULL : SQLITE_IOERR;
        }
    }
    if (rc == SQLITE_OK && sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rc = sqlite3_errcode(s->db);
    if (rc != SQLITE_OK) {
        if (!strstr(err, "item-ids"))
            snprintf(err, errlen, "%s", sqlite3_errmsg(s->db));
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        dest_end(s, t, 0);
        return rc == SQLITE_OK ? SQLITE_ERROR : rc;
    }
    dest_end(s, t, 1);
    for (struct cmd *c = list; c; c = c->next)
        if (!c->committed && is_write(c) && !(prio_only && !in_prio_part(c)))
            c->committed = 1;
    pthread_mutex_lock(&s->mu);
    for (int l = 0; l < GW_LANES; l++) {
        s->st.rows_in[l] += t->in[l];
        s->st.rows_acked[l] += t->acked[l];
        s->st.rows[l] += t->rows[l];
    }
    s->st.bytes += t->bytes;
    if (t->max_seq > s->st.last_seq)
        s->st.last_seq = t->max_seq;
    s->st.tele_dropped_full += t->dropped;
    s->st.tele_shed_floor += t->shed;
    s->st.commits++;
    s->queued_tele -= t->tele_done;
    s->queued_tele_bytes -= t->tele_done_bytes;
    pthread_mutex_unlock(&s->mu);
    return SQLITE_OK;
}

static void push_state(gw_store *s, int full, int64_t ms, uint64_t fails)
{
    struct done *d = calloc(1, sizeof(*d));
    if (!d)
        return;
    d->type = D_STATE;
    d->status = full;
    d->ms = ms;
    d->fails = fails;
    push_done(s, d);
}

static void note_drops(gw_store *s, const struct tally *t, int64_t *last_log, uint64_t *since)
{
    *since += t->dropped + t->shed;
    if (!*since)
        return;
    int64_t now = gw_mono_ms();
    if (now - *last_log < 10000)
        return;
    if (t->shed)
        GW_WARN("store",
                "free space under store.min_free (%lld bytes): dropped %llu oldest telemetry "
                "rows (alarms and events are kept)",
                (long long)s->cfg.min_free, (unsigned long long)*since);
    else
        GW_WARN("store",
                "outbox over %lld bytes: dropped %llu oldest telemetry rows (alarms and "
                "events are kept)",
                (long long)s->cfg.max_bytes, (unsigned long long)*since);
    *last_log = now;
    *since = 0;
}

/* Copies the rows of lane that the commit inserted (ids first..last, in list
 * order) into r, so readers that are caught up take them without a fetch
 * (a fetch is a store wake-up, a read transaction and a loop wake-up per
 * commit: issue 17). Leaves r empty when memory is short. */
static void commit_rows(gw_rows *r, int lane, const struct cmd *list, const struct tally *t)
{
    size_t n = (size_t)(t->new_last[lane] - t->new_first[lane] + 1), i = 0, used = 0;
    int64_t *id = malloc(n * sizeof(*id));
    uint8_t *kind = malloc(n);
    size_t *off = malloc(n * sizeof(*off)), *len = malloc(n * sizeof(*len));
    char *buf = malloc(t->new_bytes[lane] ? t->new_bytes[lane] : 1);
    if (id && kind && off && len && buf) {
        for (const struct cmd *c = list; c && i < n; c = c->next) {
            if (c->type != C_PUT || c->lane != lane || c->a < t->new_first[lane] ||
                c->a > t->new_last[lane])
                continue;
            id[i] = c->a;
            kind[i] = (uint8_t)c->kind;
            off[i] = used;
            len[i] = c->len;
            memcpy(buf + used, c->data, c->len);
            used += c->len;
            i++;
        }
    }
    if (i != n) { /* out of memory (or not the run expected): readers fetch instead */
        free(id);
        free(kind);
        free(off);
        free(len);
        free(buf);
        return;
    }
    *r =
        (gw_rows){.lane = lane, .n = n, .id = id, .kind = kind, .off = off, .len = len, .buf = buf};
}

/* After a commit: log drops (rate-limited) and tell the loop which lanes grew,
 * with the rows themselves when they are few enough to copy. */
static void committed(gw_store *s, const struct cmd *list, const struct tally *t, int64_t *last_log,
                      uint64_t *since)
{
    note_drops(s, t, last_log, since);
    if (!t->lanes)
        return;
    struct done *d = calloc(1, sizeof(*d));
    if (d) {
        d->type = D_COMMIT;
        d->lanes = t->lanes;
        for (const struct cmd *c = list; c; c = c->next) {
            if (c->tick && !c->committed) {
                d->ticks_done = 0; /* one is left for a retry: it comes later */
                break;
            }
            if (c->tick > d->ticks_done)
                d->ticks_done = c->tick;
        }
        /* Rows ride along while what is on its way to the loop stays under
         * one GW_STORE_COMMIT_ROWS_MAX: a busy loop (the start-up of 10,000
         * devices) must not collect copies; its readers fetch instead. */
        for (int l = 0; s->on_commit && l < GW_LANES; l++) {
            if (!t->new_first[l])
                continue;
            pthread_mutex_lock(&s->mu);
            int room = s->pushed + (int64_t)t->new_bytes[l] <= GW_STORE_COMMIT_ROWS_MAX;
            if (room)
                s->pushed += (int64_t)t->new_bytes[l];
            pthread_mutex_unlock(&s->mu);
            if (room)
                commit_rows(&d->rows[l], l, list, t);
            if (room && !d->rows[l].n) { /* out of memory: give the room back */
                pthread_mutex_lock(&s->mu);
                s->pushed -= (int64_t)t->new_bytes[l];
                pthread_mutex_unlock(&s->mu);
            }
        }
        push_done(s, d);
    }
}

/* The CLOCK_REALTIME time ms from now (pthread_cond_timedwait's clock). */
static struct timespec deadline(int64_t ms)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_nsec += (long)(ms % 1000) * 1000000L;
    dl.tv_sec += ms / 1000 + dl.tv_nsec / 1000000000L;
    dl.tv_nsec %= 1000000000L;
    return dl;
}

/* Waits on the store's condition (mu held) for at most ms. */
static void wait_ms(gw_store *s, int64_t ms)
{
    struct timespec dl = deadline(ms);
    pthread_cond_timedwait(&s->cv, &s->mu, &dl);
}

static void *db_thread(void *arg)
{
    gw_store *s = arg;
    int64_t drop_log = 0, full_log = 0, full_since = 0, next_try = 0, backoff = RETRY_MIN_MS;
    uint64_t drop_since_log = 0, fails = 0;
    int failing = 0, full = 0;
    struct cmd *retry = NULL;
    /* After a commit of rows their acknowledgements follow: the thread waits
     * for them until acks_until without being woken for each. */
    int64_t acks_until = 0, last_rows = gw_mono_ms(); /* the start-up burst is grouped */

    for (;;) {
        pthread_mutex_lock(&s->mu);
        if (retry) {
            /* Rows are waiting after a failed commit: try again at next_try
             * (new commands join the attempt), or at once when stopping. */
            for (;;) {
                int64_t wait = next_try - gw_mono_ms();
                if (s->stop || wait <= 0)
                    break;
                wait_ms(s, wait);
            }
        } else {
            /* Wait for work; acknowledgements alone wait up to LAZY_MS (not
             * beyond acks_until once that has passed). */
            while (!s->eager && !s->stop) {
                int64_t now = gw_mono_ms(), until;
                if (s->head) {
                    if (now >= acks_until)
                        break;
                    until = s->lazy_at + LAZY_MS;
                } else if (now < acks_until) {
                    until = acks_until;
                } else {
                    s->sleeping = 1;
                    pthread_cond_wait(&s->cv, &s->mu);
                    s->sleeping = 0;
                    continue;
                }
                int64_t wait = until - now;
                if (wait <= 0)
                    break;
                wait_ms(s, wait);
            }
            if (!s->head && s->stop) {
                pthread_mutex_unlock(&s->mu);
                break;
            }
            if (s->eager && !s->urgent && !s->stop && s->cfg.commit_window > 0 &&
                gw_mono_ms() - last_rows < BUSY_GAP_WINDOWS * s->cfg.commit_window) {
                /* Group commit: let more rows arrive for up to the window. */
                struct timespec dl = deadline(s->cfg.commit_window);
                while (!s->urgent && !s->stop && s->queued_tele < MAX_GROUP &&
                       pthread_cond_timedwait(&s->cv, &s->mu, &dl) == 0) {
                }
            }
        }
        struct cmd *list = s->head;
        s->head = s->tail = NULL;
        s->urgent = s->eager = 0;
        s->lazy_at = 0;
        int stopping = s->stop;
        pthread_mutex_unlock(&s->mu);
        if (retry) {
            struct cmd *t = retry;
            while (t->next)
                t = t->next;
            t->next = list;
            list = retry;
            retry = NULL;
        }

        /* While failing, the priority part goes first in its own transaction:
         * alarms and events must not wait behind telemetry that may not fit. */
        char err[256] = "";
        struct tally t;
        int rc = SQLITE_OK, any = 0, prio = 0;
        for (struct cmd *c = list; c; c = c->next) {
            if (is_write(c) && !c->committed) {
                any = 1;
                prio |= in_prio_part(c);
            }
        }
        if (any && failing && prio) {
            rc = commit_group(s, list, 1, &t, err, sizeof(err));
            if (rc == SQLITE_OK)
                committed(s, list, &t, &drop_log, &drop_since_log);
        }
        if (any && rc == SQLITE_OK) {
            rc = commit_group(s, list, 0, &t, err, sizeof(err));
            if (rc == SQLITE_OK)
                committed(s, list, &t, &drop_log, &drop_since_log);
            if (rc == SQLITE_OK && t.lanes) {
                last_rows = gw_mono_ms();
                acks_until = last_rows + LAZY_MS;
            }
        }
        int64_t now = gw_mono_ms();
        if (rc != SQLITE_OK) {
            fails++;
            int is_full = (rc & 0xff) == SQLITE_FULL;
            pthread_mutex_lock(&s->mu);
            s->st.commit_failures++;
            if (is_full && !full)
                s->st.disk_full_episodes++;
            s->st.disk_full = is_full;
            pthread_mutex_unlock(&s->mu);
            if (!failing) {
                failing = 1;
                full_since = now;
                fails = 1;
            }
            if (is_full && !full) {
                full = 1;
                int released = reserve_release(s);
                GW_ERROR("store",
                         "disk full: commit failed (%s); rows are kept and retried, priority "
                         "first%s",
                         err, released ? "; reserve released for alarms" : "");
                full_log = now;
                push_state(s, 1, 0, fails);
            } else if (now - full_log >= FULL_LOG_MS) {
                GW_ERROR("store", "commits still failing (%s): %llu attempts in %lld s", err,
                         (unsigned long long)fails, (long long)((now - full_since) / 1000));
                full_log = now;
            }
            /* A checkpoint moves the WAL into the database file and cuts the
             * WAL back: it can return the space the next attempt needs. */
            if (is_full)
                checkpoint(s);
            next_try = now + backoff;
            backoff = backoff * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : backoff * 2;
        } else if (failing && any) {
            GW_INFO("store", "commits succeed again after %lld ms and %llu failed attempts",
                    (long long)(now - full_since), (unsigned long long)fails);
            pthread_mutex_lock(&s->mu);
            s->st.disk_full = 0;
            pthread_mutex_unlock(&s->mu);
            if (full)
                push_state(s, 0, now - full_since, fails);
            failing = full = 0;
            backoff = RETRY_MIN_MS;
            checkpoint(s);
            reserve_make(s);
        } else if (any && s->cfg.min_free > 0 && now - s->last_ckpt >= 1000) {
            /* Under disk pressure keep the WAL small. */
            int64_t fs = free_space_recent(s);
            if (fs >= 0 && fs < s->cfg.min_free)
                checkpoint(s);
        }
        if (rc != SQLITE_OK && stopping) {
            GW_ERROR("store", "closing with uncommitted rows: %s", err);
        }

        /* Priority fetches first: with several destinations, an alarm must
         * not wait while telemetry fetches of every destination are read. */
        for (struct cmd *c = list; c; c = c->next)
            if (c->type == C_FETCH && c->lane == GW_LANE_PRIO)
                do_fetch(s, c);
        /* Answer what can be answered; keep the rest, in order, for the retry. */
        struct cmd **keep = &retry;
        int blocked = 0, lost = 0;
        int64_t waiting = 0;
        for (struct cmd *c = list; c;) {
            struct cmd *next = c->next;
            c->next = NULL;
            int drop = 1;
            if (is_write(c) && !c->committed) {
                if (stopping) {
                    lost = 1;
                    if (c->type == C_PUT && c->lane == GW_LANE_TELE) {
                        pthread_mutex_lock(&s->mu);
                        s->queued_tele--;
                        s->queued_tele_bytes -= (int64_t)(sizeof(struct cmd) + c->len);
                        pthread_mutex_unlock(&s->mu);
                    }
                } else {
                    blocked = 1;
                    drop = 0;
                    waiting += c->type == C_PUT;
                }
            } else if (c->type == C_FLUSH) {
                if (!blocked) {
                    struct done *d = calloc(1, sizeof(*d));
                    if (d) {
                        d->type = D_FLUSH;
                        d->status = lost ? GW_ERR : GW_OK;
                        d->cb = c->cb;
                        d->ctx = c->ctx;
                        push_done(s, d);
                    }
                } else {
                    drop = 0;
                }
            } else if (c->type == C_FETCH && c->lane != GW_LANE_PRIO) {
                do_fetch(s, c); /* priority fetches were answered first, below */
            }
            if (drop) {
                free(c->key);
                free(c);
            } else {
                *keep = c;
                keep = &c->next;
            }
            c = next;
        }
        pthread_mutex_lock(&s->mu);
        s->st.rows_waiting = waiting;
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

static void free_done(struct done *d)
{
    for (int l = 0; l < GW_LANES; l++) {
        free((void *)d->rows[l].id);
        free((void *)d->rows[l].kind);
        free((void *)d->rows[l].off);
        free((void *)d->rows[l].len);
        free((void *)d->rows[l].buf);
    }
    free(d);
}

static void on_done(gw_mailbox *mb, gw_mail *list)
{
    gw_store *s = mb->data;
    while (list) {
        struct done *d = (struct done *)list;
        list = list->next;
        if (d->type == D_COMMIT && s->on_commit) {
            const gw_rows *rows[GW_LANES];
            for (int l = 0; l < GW_LANES; l++)
                rows[l] = d->rows[l].n ? &d->rows[l] : NULL;
            if (rows[GW_LANE_PRIO]) {
                /* An alarm is published only once what was queued after it
                 * is committed too (its rule state, an event's state): a
                 * fetch, queued behind those writes, keeps that order. */
                pthread_mutex_lock(&s->mu);
                if (d->ticks_done < s->wtick)
                    rows[GW_LANE_PRIO] = NULL;
                pthread_mutex_unlock(&s->mu);
            }
            s->on_commit(s->ctx, d->lanes, rows);
            int64_t bytes = 0;
            for (int l = 0; l < GW_LANES; l++)
                bytes += d->rows[l].n ? (int64_t)(d->rows[l].off[d->rows[l].n - 1] +
                                                  d->rows[l].len[d->rows[l].n - 1])
                                      : 0;
            if (bytes) {
                pthread_mutex_lock(&s->mu);
                s->pushed -= bytes;
                pthread_mutex_unlock(&s->mu);
            }
        } else if (d->type == D_FLUSH)
            ((gw_store_flush_cb)d->cb)(d->ctx, d->status);
        else if (d->type == D_FETCH)
            ((gw_store_fetch_cb)d->cb)(d->ctx, &d->rows[0]);
        else if (d->type == D_STATE && s->on_state)
            s->on_state(s->state_ctx, d->status, d->ms, d->fails);
        free_done(d);
    }
}

static void discard_done(gw_mailbox *mb, gw_mail *m)
{
    free_done((struct done *)m);
}

/* Appends c under mu. The thread is woken only when its queue turns
 * non-empty, for an urgent command, or when a group is full: while it waits
 * out a commit window, further rows join without a wake-up (a signal per row
 * cost two context switches and a contended mutex per reading). An
 * acknowledgement wakes it only from a wait with no deadline (none since
 * LAZY_MS after its last commit of rows), to start its LAZY_MS. */
static void enqueue_locked(gw_store *s, struct cmd *c, int urgent)
{
    int was_empty = !s->head;
    if (s->tail)
        s->tail->next = c;
    else
        s->head = c;
    s->tail = c;
    if (c->type == C_ACK || c->type == C_DACK) {
        if (!s->lazy_at)
            s->lazy_at = gw_mono_ms();
        if (was_empty && s->sleeping)
            pthread_cond_signal(&s->cv);
        return;
    }
    if (is_write(c) && !(c->type == C_PUT && c->lane == GW_LANE_TELE))
        c->tick = ++s->wtick;
    int was_quiet = !s->eager++;
    if (urgent)
        s->urgent = 1;
    if (was_quiet || urgent || s->queued_tele >= MAX_GROUP)
        pthread_cond_signal(&s->cv);
}

static void enqueue(gw_store *s, struct cmd *c, int urgent)
{
    pthread_mutex_lock(&s->mu);
    enqueue_locked(s, c, urgent);
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

/* ---- Replay windows (loop thread) ---- */

static uint64_t fnv(const char *a)
{
    uint64_t h = 1469598103934665603ull;
    for (; *a; a++)
        h = (h ^ (uint8_t)*a) * 1099511628211ull;
    return h;
}

/* The window of station, created when missing (NULL only without memory). */
static struct rwin *win_get(gw_store *s, const char *station)
{
    if (s->wcap) {
        for (size_t at = fnv(station) & (s->wcap - 1); s->win[at].station;
             at = (at + 1) & (s->wcap - 1))
            if (!strcmp(s->win[at].station, station))
                return &s->win[at];
    }
    if ((s->wn + 1) * 2 > s->wcap) {
        size_t cap = s->wcap ? s->wcap * 2 : 64;
        struct rwin *t = calloc(cap, sizeof(*t));
        if (!t)
            return NULL;
        for (size_t i = 0; i < s->wcap; i++) {
            if (!s->win[i].station)
                continue;
            size_t at = fnv(s->win[i].station) & (cap - 1);
            while (t[at].station)
                at = (at + 1) & (cap - 1);
            t[at] = s->win[i];
        }
        free(s->win);
        s->win = t;
        s->wcap = cap;
    }
    size_t at = fnv(station) & (s->wcap - 1);
    while (s->win[at].station)
        at = (at + 1) & (s->wcap - 1);
    struct rwin *w = &s->win[at];
    w->h = calloc((size_t)s->cfg.replay_window, sizeof(*w->h));
    w->station = strdup(station);
    if (!w->h || !w->station) {
        free(w->h);
        free(w->station);
        memset(w, 0, sizeof(*w));
        return NULL;
    }
    w->n = 0;
    s->wn++;
    return w;
}

static void win_free(gw_store *s)
{
    for (size_t i = 0; i < s->wcap; i++) {
        free(s->win[i].station);
        free(s->win[i].h);
    }
    free(s->win);
    s->win = NULL;
    s->wcap = s->wn = 0;
}

static int load_replay(gw_store *s)
{
    if (s->cfg.replay_window <= 0)
        return GW_OK;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "SELECT station, n, key FROM replay ORDER BY station, n", -1, &st,
                           NULL) != SQLITE_OK)
        return GW_ERR;
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct rwin *w = win_get(s, (const char *)sqlite3_column_text(st, 0));
        if (!w)
            break;
        int64_t n = sqlite3_column_int64(st, 1);
        w->h[n % s->cfg.replay_window] = fnv((const char *)sqlite3_column_text(st, 2));
        if (n + 1 > w->n)
            w->n = n + 1;
    }
    sqlite3_finalize(st);
    return GW_OK;
}

static void seen_push(gw_store *s)
{
    if (s->seen_pending) {
        enqueue(s, s->seen_pending, 0);
        s->seen_pending = NULL;
    }
}

int gw_store_seen(gw_store *s, const char *station, const char *key)
{
    if (s->cfg.replay_window <= 0)
        return 0;
    struct rwin *w = win_get(s, station);
    if (!w)
        return 0; /* no memory: accept, at worst a duplicate */
    uint64_t h = fnv(key);
    int64_t have = w->n < s->cfg.replay_window ? w->n : s->cfg.replay_window;
    for (int64_t i = 0; i < have; i++) {
        if (w->h[i] == h) {
            pthread_mutex_lock(&s->mu);
            s->st.replays++;
            pthread_mutex_unlock(&s->mu);
            return 1;
        }
    }
    seen_push(s); /* the previous report's rows are all queued by now */
    size_t klen = strlen(key);
    struct cmd *c = calloc(1, sizeof(*c) + klen + 1);
    if (c) {
        c->key = strdup(station);
        if (!c->key) {
            free(c);
            c = NULL;
        }
    }
    w->h[w->n % s->cfg.replay_window] = h;
    if (c) {
        c->type = C_SEEN;
        c->a = w->n % s->cfg.replay_window;
        c->b = w->n;
        c->len = klen;
        memcpy(c->data, key, klen + 1);
        s->seen_pending = c;
    }
    w->n++;
    return 0;
}

void gw_store_forget(gw_store *s, const char *station, const char *key)
{
    if (s->cfg.replay_window <= 0)
        return;
    struct rwin *w = win_get(s, station);
    if (!w || w->n == 0)
        return;
    int64_t at = (w->n - 1) % s->cfg.replay_window;
    if (w->h[at] != fnv(key))
        return;
    w->h[at] = 0;
    w->n--;
    struct cmd *c = s->seen_pending;
    if (c && !strcmp(c->key, station) && !strcmp(c->data, key)) {
        s->seen_pending = NULL;
        free(c->key);
        free(c);
    }
}

/* The loop-side memory: loaded state and replay windows. */
static void free_memory(gw_store *s)
{
    while (s->state) {
        struct state_kv *kv = s->state;
        s->state = kv->next;
        free(kv->key);
        free(kv->val);
        free(kv);
    }
    win_free(s);
    free(s->dloaded);
    s->dloaded = NULL;
    s->ndloaded = 0;
}

/* ---- Open: check, recover, salvage ---- */

enum { OPEN_OK, OPEN_ERR, OPEN_FULL, OPEN_CORRUPT };

static int open_class(sqlite3 *db)
{
    int e = db ? sqlite3_errcode(db) : SQLITE_CANTOPEN;
    if (e == SQLITE_CORRUPT || e == SQLITE_NOTADB)
        return OPEN_CORRUPT;
    return e == SQLITE_FULL ? OPEN_FULL : OPEN_ERR;
}

static int past_deadline(void *arg)
{
    return gw_mono_ms() > *(const int64_t *)arg;
}

/* quick_check, bounded in time so a large outbox does not hold up the start.
 * Returns 0 when the file is corrupt (why says how), 1 otherwise. */
static int quick_check(gw_store *s, char *why, size_t n)
{
    int64_t deadline = gw_mono_ms() + QUICK_CHECK_MS;
    sqlite3_progress_handler(s->db, 1000, past_deadline, &deadline);
    sqlite3_stmt *st = NULL;
    int ok = 1;
    int rc = sqlite3_prepare_v2(s->db, "PRAGMA quick_check(1)", -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *r = (const char *)sqlite3_column_text(st, 0);
        if (!r || strcmp(r, "ok")) {
            snprintf(why, n, "quick_check: %.200s", r ? r : "no answer");
            ok = 0;
        }
    } else if (rc == SQLITE_INTERRUPT) {
        GW_WARN("store", "%s: quick_check did not finish in %d ms; opened unchecked", s->cfg.path,
                QUICK_CHECK_MS);
    } else if (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB) {
        snprintf(why, n, "%.200s", sqlite3_errmsg(s->db));
        ok = 0;
    }
    sqlite3_finalize(st);
    sqlite3_progress_handler(s->db, 0, NULL, NULL);
    for (char *p = why; !ok && *p; p++)
        if (*p == '\n')
            *p = ' '; /* one log line */
    return ok;
}

static void close_db(gw_store *s)
{
    for (int l = 0; l < GW_LANES; l++) {
        sqlite3_finalize(s->ins[l]);
        sqlite3_finalize(s->sel[l]);
        sqlite3_finalize(s->sum[l]);
        sqlite3_finalize(s->del[l]);
        s->ins[l] = s->sel[l] = s->sum[l] = s->del[l] = NULL;
    }
    sqlite3_finalize(s->oldest);
    sqlite3_finalize(s->del_upto);
    sqlite3_finalize(s->state_put);
    sqlite3_finalize(s->meta_put);
    sqlite3_finalize(s->replay_put);
    sqlite3_finalize(s->cur_put);
    sqlite3_finalize(s->seq_get);
    s->oldest = s->del_upto = s->state_put = s->meta_put = s->replay_put = NULL;
    s->cur_put = s->seq_get = NULL;
    if (s->db)
        sqlite3_close(s->db);
    s->db = NULL;
}

/* Opens the file, checks it, brings the schema up to date (writing only when
 * it is not: a restart on a nearly full disk must not need space) and
 * prepares the statements. Returns OPEN_*; the caller closes on failure. */
static int open_db(gw_store *s, char *err, size_t errlen)
{
    const char *path = s->cfg.path;
    /* NOMUTEX: the connection is used by one thread at a time (the opener,
     * then the store thread, then the closer after the join), so SQLite's
     * per-call connection mutex is pure cost (docs/design.md "Measured"). */
    if (sqlite3_open_v2(path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, s->db ? sqlite3_errmsg(s->db) : "cannot open");
        return open_class(s->db);
    }
    sqlite3_busy_timeout(s->db, 5000);
    if (!quick_check(s, err, errlen))
        return OPEN_CORRUPT;
    char sql[256];
    snprintf(sql, sizeof(sql),
             "PRAGMA cache_size=-%d; PRAGMA journal_mode=WAL; PRAGMA journal_size_limit=%d; %s",
             CACHE_KIB, WAL_LIMIT,
             s->cfg.sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
    if (exec(s->db, sql, err, errlen))
        return open_class(s->db);
    int64_t ver = query_i64(s->db, "PRAGMA user_version");
    if (ver > SCHEMA_VERSION) {
        snprintf(err, errlen, "%s: outbox schema version %lld is newer than this gateway's (%d)",
                 path, (long long)ver, SCHEMA_VERSION);
        return OPEN_ERR;
    }
    if (ver < SCHEMA_VERSION &&
        exec(s->db,
             "BEGIN;"
             "CREATE TABLE IF NOT EXISTS outbox_prio(id INTEGER PRIMARY KEY AUTOINCREMENT,"
             " seq INTEGER NOT NULL, kind INTEGER NOT NULL, len INTEGER NOT NULL, payload BLOB);"
             "CREATE TABLE IF NOT EXISTS outbox_tele(id INTEGER PRIMARY KEY AUTOINCREMENT,"
             " seq INTEGER NOT NULL, kind INTEGER NOT NULL, len INTEGER NOT NULL, payload BLOB);"
             "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value);"
             "CREATE TABLE IF NOT EXISTS state(key TEXT PRIMARY KEY, value BLOB);"
             "CREATE TABLE IF NOT EXISTS replay(station TEXT NOT NULL, slot INTEGER NOT NULL,"
             " n INTEGER NOT NULL, key TEXT NOT NULL, PRIMARY KEY(station, slot));"
             "PRAGMA user_version=2; COMMIT;",
             err, errlen)) {
        int c = open_class(s->db);
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return c;
    }
    /* The destinations' cursors (gw_store_dests) came after schema 2 without
     * changing it: an older gateway ignores the table. Created only when
     * missing, so a restart needs no space. */
    if (!query_i64(s->db, "SELECT COUNT(*) FROM sqlite_master WHERE name='cursor'") &&
        exec(s->db,
             "CREATE TABLE IF NOT EXISTS cursor(dest TEXT NOT NULL, lane INTEGER NOT NULL,"
             " acked INTEGER NOT NULL, PRIMARY KEY(dest, lane))",
             err, errlen))
        return open_class(s->db);
    if (prep(s, &s->cur_put,
             "INSERT INTO cursor(dest, lane, acked) VALUES(?,?,?) ON CONFLICT(dest, lane) DO "
             "UPDATE SET acked = excluded.acked",
             err, errlen) ||
        prep(s, &s->seq_get, "SELECT name, seq FROM sqlite_sequence", err, errlen))
        return open_class(s->db);
    for (int l = 0; l < GW_LANES; l++) {
        snprintf(sql, sizeof(sql), "INSERT INTO %s(seq, kind, len, payload) VALUES(?,?,?,?)",
                 table[l]);
        if (prep(s, &s->ins[l], sql, err, errlen))
            return open_class(s->db);
        snprintf(sql, sizeof(sql),
                 "SELECT id, kind, payload FROM %s WHERE id > ? ORDER BY id LIMIT ?", table[l]);
        if (prep(s, &s->sel[l], sql, err, errlen))
            return open_class(s->db);
        snprintf(sql, sizeof(sql),
                 "SELECT COALESCE(SUM(len),0), COUNT(*) FROM %s WHERE id BETWEEN ? AND ?",
                 table[l]);
        if (prep(s, &s->sum[l], sql, err, errlen))
            return open_class(s->db);
        snprintf(sql, sizeof(sql), "DELETE FROM %s WHERE id BETWEEN ? AND ?", table[l]);
        if (prep(s, &s->del[l], sql, err, errlen))
            return open_class(s->db);
    }
    if (prep(s, &s->oldest, "SELECT id, len FROM outbox_tele ORDER BY id LIMIT 4096", err,
             errlen) ||
        prep(s, &s->del_upto, "DELETE FROM outbox_tele WHERE id <= ?", err, errlen) ||
        prep(s, &s->state_put, "INSERT OR REPLACE INTO state(key, value) VALUES(?,?)", err,
             errlen) ||
        prep(s, &s->replay_put,
             "INSERT OR REPLACE INTO replay(station, slot, n, key) VALUES(?,?,?,?)", err, errlen) ||
        prep(s, &s->meta_put,
             "INSERT INTO meta(key, value) VALUES('seq', ?1) ON CONFLICT(key) DO UPDATE SET "
             "value = MAX(value, ?1)",
             err, errlen))
        return open_class(s->db);
    return OPEN_OK;
}

/* Copies the row st stands on (id, seq, kind, len, payload) into lane l of
 * the fresh outbox under its old id (put is INSERT OR IGNORE with the id, so
 * a row read twice is copied once). */
static int copy_row(gw_store *s, sqlite3_stmt *put, sqlite3_stmt *st, int64_t *max_seq)
{
    int64_t seq = sqlite3_column_int64(st, 1);
    for (int i = 0; i < 5; i++)
        sqlite3_bind_value(put, i + 1, sqlite3_column_value(st, i));
    int rc = sqlite3_step(put) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(s->db);
    sqlite3_reset(put);
    if (seq > *max_seq)
        *max_seq = seq;
    return rc;
}

/* Copies the rows of one lane of the corrupt file o that can still be read.
 * A scan in id order copies until it hits a bad page; from there single rows
 * are read by id (each lookup only touches the pages on its own path) until
 * one is readable, and the scan resumes after it. Ids are dense in an outbox
 * (acks delete from the front), so this costs about one lookup per row lost.
 * Bounded by the highest id the file knows (*hi, 0 when it knows none) and
 * by a deadline. Adds to *n the rows copied and to *lost the ids that could
 * not be read; *incomplete says SQLite could not read the whole lane. Returns
 * SQLITE_OK or the error of an insert into the fresh outbox. */
static int salvage_lane(gw_store *s, sqlite3 *o, int l, sqlite3_stmt *put, int64_t *max_seq,
                        uint64_t *n, uint64_t *lost, int64_t *hi_known, int *incomplete)
{
    char sql[160];
    sqlite3_stmt *scan = NULL, *one = NULL;
    snprintf(sql, sizeof(sql),
             "SELECT id, seq, kind, len, payload FROM %s WHERE id > ? ORDER BY id", table[l]);
    int rc = sqlite3_prepare_v2(o, sql, -1, &scan, NULL);
    snprintf(sql, sizeof(sql), "SELECT id, seq, kind, len, payload FROM %s WHERE id = ?", table[l]);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(o, sql, -1, &one, NULL);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(scan);
        *incomplete = 1;
        return SQLITE_OK; /* the schema itself is unreadable: the pages may still be */
    }
    snprintf(sql, sizeof(sql), "SELECT seq FROM sqlite_sequence WHERE name = '%s'", table[l]);
    int64_t hi = query_i64(o, sql);
    snprintf(sql, sizeof(sql), "SELECT MAX(id) FROM %s", table[l]);
    int64_t hi2 = query_i64(o, sql);
    if (hi2 > hi)
        hi = hi2;
    *hi_known = hi;
    if (!hi) /* neither is readable (or the lane is empty): probe a bounded stretch */
        hi = SALVAGE_PROBE_MAX;
    int64_t deadline = gw_mono_ms() + SALVAGE_MS, cur = 0;
    int ok = SQLITE_OK;
    for (;;) {
        sqlite3_bind_int64(scan, 1, cur);
        int step = SQLITE_DONE;
        while (ok == SQLITE_OK && (step = sqlite3_step(scan)) == SQLITE_ROW) {
            cur = sqlite3_column_int64(scan, 0);
            ok = copy_row(s, put, scan, max_seq);
            *n += ok == SQLITE_OK;
        }
        sqlite3_reset(scan);
        if (ok != SQLITE_OK || step == SQLITE_DONE)
            break;
        /* A bad page after cur: find the next readable row by its id. */
        *incomplete = 1;
        int found = 0;
        while (!found && ++cur <= hi && gw_mono_ms() < deadline) {
            sqlite3_bind_int64(one, 1, cur);
            step = sqlite3_step(one);
            if (step == SQLITE_ROW) {
                found = 1;
                ok = copy_row(s, put, one, max_seq);
                *n += ok == SQLITE_OK;
            } else if (step != SQLITE_DONE) {
                (*lost)++;
            }
            sqlite3_reset(one);
        }
        if (!found || ok != SQLITE_OK)
            break;
    }
    sqlite3_finalize(scan);
    sqlite3_finalize(one);
    return ok;
}

/* The page-level pass (gateway/salvage.c) over the moved-aside file. */
struct page_salvage {
    gw_store *s;
    int fd;
    int64_t deadline, max_seq;
    sqlite3_stmt *put[GW_LANES], *dup[GW_LANES];
    uint64_t added;
    int err; /* an insert into the fresh outbox failed */
};

static int ps_read(void *ctx, uint64_t off, void *buf, size_t n)
{
    struct page_salvage *p = ctx;
    return pread(p->fd, buf, n, (off_t)off) == (ssize_t)n ? 0 : -1;
}

static int ps_expired(void *ctx)
{
    return gw_mono_ms() > ((struct page_salvage *)ctx)->deadline;
}

/* One row found on a page: kept unless the fresh outbox has it already (in
 * either lane: a reading from an orphan page may have been promoted). */
static int ps_row(void *ctx, const gw_salvage_row *r)
{
    struct page_salvage *p = ctx;
    sqlite3_stmt *d = p->dup[!r->lane];
    sqlite3_bind_int64(d, 1, r->id);
    sqlite3_bind_int64(d, 2, r->seq);
    int seen = sqlite3_step(d) == SQLITE_ROW;
    sqlite3_reset(d);
    if (seen)
        return 0;
    sqlite3_stmt *in = p->put[r->lane];
    sqlite3_bind_int64(in, 1, r->id);
    sqlite3_bind_int64(in, 2, r->seq);
    sqlite3_bind_int(in, 3, r->kind);
    sqlite3_bind_int64(in, 4, (int64_t)r->len);
    sqlite3_bind_blob(in, 5, r->len ? (const void *)r->payload : "", (int)r->len, SQLITE_STATIC);
    int rc = sqlite3_step(in);
    sqlite3_reset(in);
    if (rc != SQLITE_DONE) {
        p->err = 1;
        return 1;
    }
    if (sqlite3_changes(p->s->db) > 0) {
        p->added++;
        if (r->seq > p->max_seq)
            p->max_seq = r->seq;
    }
    return 0;
}

/* Reads the rows SQLite could not reach straight from the pages of old (its
 * WAL checkpointed into it first) and adds those the fresh outbox lacks.
 * Returns the rows added; *err is set when an insert failed. */
static uint64_t salvage_pages(gw_store *s, const char *old, sqlite3_stmt *const put[GW_LANES],
                              int64_t *max_seq, int *err)
{
    struct page_salvage p = {.s = s, .deadline = gw_mono_ms() + SALVAGE_MS};
    struct stat sb;
    p.fd = open(old, O_RDONLY | O_CLOEXEC);
    if (p.fd < 0 || fstat(p.fd, &sb)) {
        GW_WARN("store", "%s: cannot read its pages: %s", old, strerror(errno));
        if (p.fd >= 0)
            close(p.fd);
        return 0;
    }
    for (int l = 0; l < GW_LANES; l++) {
        char sql[96];
        p.put[l] = put[l];
        snprintf(sql, sizeof(sql), "SELECT 1 FROM %s WHERE id = ? AND seq = ?", table[l]);
        if (sqlite3_prepare_v2(s->db, sql, -1, &p.dup[l], NULL) != SQLITE_OK)
            p.err = 1;
    }
    gw_salvage_io io = {.size = (uint64_t)sb.st_size,
                        .read = ps_read,
                        .row = ps_row,
                        .expired = ps_expired,
                        .ctx = &p};
    gw_salvage_stats st;
    int rc = p.err ? GW_ERR : gw_salvage_pages(&io, &st);
    if (rc == GW_OK)
        GW_INFO("store",
                "%s: page salvage: %llu pages of %u bytes%s, %llu table leaves, %llu outbox rows "
                "found (%llu new), %llu cells unusable%s",
                old, (unsigned long long)st.pages, st.page_size,
                st.header_ok ? "" : " (header unreadable: size assumed)",
                (unsigned long long)st.leaves, (unsigned long long)st.rows,
                (unsigned long long)p.added, (unsigned long long)st.bad_cells,
                st.stopped && !p.err ? ", stopped at the deadline" : "");
    for (int l = 0; l < GW_LANES; l++)
        sqlite3_finalize(p.dup[l]);
    close(p.fd);
    if (p.max_seq > *max_seq)
        *max_seq = p.max_seq;
    *err = p.err || rc == GW_ENOMEM;
    return p.added;
}

/* Ids missing in lane l of the fresh outbox between its oldest row and the
 * highest id the old file knew (or its newest row). */
static uint64_t lane_gaps(gw_store *s, int l, int64_t hi_known)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT MIN(id), MAX(id), COUNT(*) FROM %s", table[l]);
    sqlite3_stmt *st;
    uint64_t gaps = 0;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return 0;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int64(st, 2) > 0) {
        int64_t lo = sqlite3_column_int64(st, 0), top = sqlite3_column_int64(st, 1);
        if (hi_known > top)
            top = hi_known;
        gaps = (uint64_t)(top - lo + 1 - sqlite3_column_int64(st, 2));
    }
    sqlite3_finalize(st);
    return gaps;
}

/* Copies what can still be read from a corrupt outbox into the fresh one:
 * rows (with their ids and sequence numbers, past bad pages: salvage_lane;
 * and when SQLite cannot reach them, from the pages: salvage_pages), alarm
 * state, replay windows and the last sequence. *from_pages counts the rows
 * the page pass added. */
static uint64_t salvage(gw_store *s, const char *old, uint64_t *lost, uint64_t *from_pages)
{
    sqlite3 *o = NULL;
    uint64_t n = 0;
    int64_t max_seq = 0, hi[GW_LANES] = {0};
    int incomplete = 0;
    sqlite3_stmt *put[GW_LANES] = {NULL};
    if (sqlite3_open_v2(old, &o, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        sqlite3_close(o);
        o = NULL;
        incomplete = 1;
    }
    if (o)
        sqlite3_busy_timeout(o, 1000);
    if (exec(s->db, "BEGIN", s->note, sizeof(s->note))) {
        sqlite3_close(o);
        return 0;
    }
    int ok = 1;
    for (int l = 0; l < GW_LANES && ok; l++) {
        char sql[128];
        snprintf(sql, sizeof(sql),
                 "INSERT OR IGNORE INTO %s(id, seq, kind, len, payload) VALUES(?,?,?,?,?)",
                 table[l]);
        ok = sqlite3_prepare_v2(s->db, sql, -1, &put[l], NULL) == SQLITE_OK;
    }
    for (int l = 0; l < GW_LANES && ok && o; l++)
        ok = salvage_lane(s, o, l, put[l], &max_seq, &n, lost, &hi[l], &incomplete) == SQLITE_OK;
    static const char *const copy[][2] = {
        {"SELECT key, value FROM state", "INSERT OR REPLACE INTO state(key, value) VALUES(?,?)"},
        {"SELECT station, slot, n, key FROM replay",
         "INSERT OR REPLACE INTO replay(station, slot, n, key) VALUES(?,?,?,?)"},
        {"SELECT 'seq', value FROM meta WHERE key = 'seq'",
         "INSERT OR REPLACE INTO meta(key, value) VALUES(?,?)"}};
    for (size_t k = 0; k < sizeof(copy) / sizeof(copy[0]) && ok && o; k++) {
        sqlite3_stmt *st, *in;
        if (sqlite3_prepare_v2(o, copy[k][0], -1, &st, NULL) != SQLITE_OK)
            continue;
        if (sqlite3_prepare_v2(s->db, copy[k][1], -1, &in, NULL) != SQLITE_OK) {
            sqlite3_finalize(st);
            continue;
        }
        while (ok && sqlite3_step(st) == SQLITE_ROW) {
            int cols = sqlite3_column_count(st);
            for (int i = 0; i < cols; i++)
                sqlite3_bind_value(in, i + 1, sqlite3_column_value(st, i));
            ok = sqlite3_step(in) == SQLITE_DONE;
            sqlite3_reset(in);
        }
        sqlite3_finalize(in);
        sqlite3_finalize(st);
    }
    /* The page pass reads the file itself: the WAL's frames go into it first
     * (a checkpoint copies frames without reading the b-trees). */
    if (o && incomplete)
        sqlite3_exec(o, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
    sqlite3_close(o);
    if (ok && incomplete) {
        int err = 0;
        *from_pages = salvage_pages(s, old, put, &max_seq, &err);
        n += *from_pages;
        ok = !err;
        *lost = 0;
        for (int l = 0; l < GW_LANES && ok; l++)
            *lost += lane_gaps(s, l, hi[l]);
    }
    for (int l = 0; l < GW_LANES; l++)
        sqlite3_finalize(put[l]);
    if (ok && max_seq) {
        sqlite3_bind_int64(s->meta_put, 1, max_seq);
        ok = sqlite3_step(s->meta_put) == SQLITE_DONE;
        sqlite3_reset(s->meta_put);
    }
    if (!ok || sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return 0;
    }
    return n;
}

/* Moves a corrupt outbox (and its WAL) aside under a timestamped name. */
static int move_aside(const char *path, char *aside, size_t n)
{
    char ts[32], a[320], b[320];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ts, sizeof(ts), "%Y%m%dT%H%M%SZ", &tm);
    snprintf(aside, n, "%s.corrupt-%s", path, ts);
    if (rename(path, aside))
        return GW_ERR;
    snprintf(a, sizeof(a), "%s-wal", path);
    snprintf(b, sizeof(b), "%s-wal", aside);
    rename(a, b);
    snprintf(a, sizeof(a), "%s-shm", path);
    unlink(a);
    return GW_OK;
}

/* The time-derived start of a sequence (0 while the clock reads before 2020). */
static uint64_t ids_time_base(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - IDS_TIME_ORIGIN_MS;
    return ms > 0 ? (uint64_t)ms << IDS_TIME_SHIFT : 0;
}

/* Item sequence: continue from the outbox; when the outbox is not the one
 * item-ids last saw (new, lost, replaced, recovered, or item-ids itself is
 * gone with the whole data directory), from above both the reservation and
 * the time-derived base. */
static void ids_open(gw_store *s)
{
    uint64_t last = s->st.last_seq;
    long long fepoch = 0;
    unsigned long long reserved = 0;
    int have = 0;
    FILE *f = fopen(s->ids_path, "r");
    if (f) {
        have = fscanf(f, "epoch %lld reserved %llu", &fepoch, &reserved) == 2;
        fclose(f);
    }
    s->epoch = query_i64(s->db, "SELECT COALESCE((SELECT value FROM meta WHERE key='epoch'),0)");
    if (!s->epoch) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        s->epoch = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
        char sql[96];
        snprintf(sql, sizeof(sql), "INSERT OR REPLACE INTO meta(key, value) VALUES('epoch', %lld)",
                 (long long)s->epoch);
        sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    }
    if (have && fepoch == s->epoch) {
        s->ids_reserved = reserved;
        return;
    }
    uint64_t start = have && reserved > last ? reserved : last, base = ids_time_base();
    if (!base)
        GW_WARN("store", "the clock reads before 2020: item ids cannot start from the time");
    if (base > start)
        start = base;
    if (start > last) {
        if (have)
            GW_WARN("store",
                    "%s is not the outbox item-ids last saw (new, lost or replaced): item "
                    "sequence continues from %llu, above every id handed out before",
                    s->cfg.path, (unsigned long long)start);
        else
            GW_INFO("store", "no %s: item sequence starts from %llu (from the clock)", s->ids_path,
                    (unsigned long long)start);
        last = start;
        s->st.last_seq = last;
        sqlite3_bind_int64(s->meta_put, 1, (int64_t)last);
        int ok = sqlite3_step(s->meta_put) == SQLITE_DONE;
        sqlite3_reset(s->meta_put);
        /* Only once the outbox holds the new start may item-ids forget the old
         * one; otherwise the next start looks here again. */
        if (ok && ids_reserve(s, last + IDS_BLOCK) == 0)
            return;
    }
    s->ids_reserved = 0; /* rewritten with this outbox's epoch at the first commit */
}

static void load_counts(gw_store *s)
{
    s->st.bytes = query_i64(s->db, "SELECT (SELECT COALESCE(SUM(len),0) FROM outbox_prio)"
                                   "+(SELECT COALESCE(SUM(len),0) FROM outbox_tele)");
    s->st.rows[0] = query_i64(s->db, "SELECT COUNT(*) FROM outbox_prio");
    s->st.rows[1] = query_i64(s->db, "SELECT COUNT(*) FROM outbox_tele");
    int64_t seq = query_i64(s->db, "SELECT COALESCE((SELECT value FROM meta WHERE key='seq'),0)");
    int64_t seq2 = query_i64(s->db, "SELECT MAX((SELECT COALESCE(MAX(seq),0) FROM outbox_prio),"
                                    "(SELECT COALESCE(MAX(seq),0) FROM outbox_tele))");
    s->st.last_seq = (uint64_t)(seq > seq2 ? seq : seq2);
    s->st.last_id[0] = query_i64(s->db, "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence"
                                        " WHERE name='outbox_prio'),0),"
                                        "(SELECT COALESCE(MAX(id),0) FROM outbox_prio))");
    s->st.last_id[1] = query_i64(s->db, "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence"
                                        " WHERE name='outbox_tele'),0),"
                                        "(SELECT COALESCE(MAX(id),0) FROM outbox_tele))");
}

/* The destinations' cursors as the outbox holds them (gw_store_dests). */
static int load_cursors(gw_store *s)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "SELECT dest, lane, acked FROM cursor ORDER BY dest", -1, &st,
                           NULL) != SQLITE_OK)
        return GW_ERR;
    int rc = GW_OK;
    while (rc == GW_OK && sqlite3_step(st) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        int lane = sqlite3_column_int(st, 1);
        if (!name || lane < 0 || lane >= GW_LANES)
            continue;
        struct dest *d = s->ndloaded ? &s->dloaded[s->ndloaded - 1] : NULL;
        if (!d || strcmp(d->name, name)) {
            struct dest *n = realloc(s->dloaded, (size_t)(s->ndloaded + 1) * sizeof(*n));
            if (!n) {
                rc = GW_ENOMEM;
                break;
            }
            s->dloaded = n;
            d = &n[s->ndloaded++];
            memset(d, 0, sizeof(*d));
            gw_strlcpy(d->name, name, sizeof(d->name));
        }
        d->acked[lane] = sqlite3_column_int64(st, 2);
    }
    sqlite3_finalize(st);
    return rc;
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
    const char *slash = strrchr(cfg->path, '/');
    if (slash)
        snprintf(s->dir, sizeof(s->dir), "%.*s", (int)(slash - cfg->path), cfg->path);
    if (!s->dir[0])
        snprintf(s->dir, sizeof(s->dir), "%s", slash ? "/" : ".");
    snprintf(s->ids_path, sizeof(s->ids_path), "%s/item-ids", s->dir);
    snprintf(s->reserve_path, sizeof(s->reserve_path), "%s-reserve", cfg->path);

    int rc = open_db(s, err, errlen);
    if (rc == OPEN_ERR && access(s->reserve_path, F_OK) == 0) {
        /* Out of space, the WAL index and journal fail as I/O errors. */
        int64_t fs = free_space(s);
        if (fs >= 0 && fs < 2 * RESERVE_BYTES)
            rc = OPEN_FULL;
    }
    if (rc == OPEN_FULL) {
        /* A nearly full disk: the reserve is there for exactly this. */
        close_db(s);
        if (reserve_release(s))
            GW_WARN("store", "%s: disk full at open; reserve released", cfg->path);
        rc = open_db(s, err, errlen);
    }
    if (rc == OPEN_CORRUPT) {
        char aside[300], why[256];
        snprintf(why, sizeof(why), "%s", err);
        close_db(s);
        if (move_aside(cfg->path, aside, sizeof(aside))) {
            snprintf(err, errlen, "%s is corrupt (%s) and cannot be moved aside: %s", cfg->path,
                     why, strerror(errno));
            goto error;
        }
        rc = open_db(s, err, errlen);
        if (rc == OPEN_OK) {
            uint64_t lost = 0, pages = 0, n = salvage(s, aside, &lost, &pages);
            snprintf(s->note, sizeof(s->note),
                     "outbox was corrupt (%.120s): moved to %.200s, fresh outbox started, %llu "
                     "rows salvaged (%llu read from pages), %llu row ids unreadable",
                     why, aside, (unsigned long long)n, (unsigned long long)pages,
                     (unsigned long long)lost);
            GW_ERROR("store", "%s", s->note);
            s->st.recovered = 1;
            s->st.salvaged = n;
        }
    }
    if (rc != OPEN_OK)
        goto error;
    load_counts(s);
    ids_open(s);
    if (load_state(s) || load_replay(s) || load_cursors(s)) {
        snprintf(err, errlen, "%s: cannot load state: %s", cfg->path, sqlite3_errmsg(s->db));
        goto error;
    }
    if (cfg->replay_window > 0) {
        char sql[96];
        snprintf(sql, sizeof(sql), "DELETE FROM replay WHERE slot >= %lld",
                 (long long)cfg->replay_window);
        sqlite3_exec(s->db, sql, NULL, NULL, NULL); /* a smaller window than last time */
    }
    reserve_make(s);

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
    close_db(s);
    free_memory(s);
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

const char *gw_store_open_note(const gw_store *s)
{
    return s->note[0] ? s->note : NULL;
}

void gw_store_on_state(gw_store *s, gw_store_state_cb cb, void *ctx)
{
    s->on_state = cb;
    s->state_ctx = ctx;
}

/* At close: a final TRUNCATE checkpoint, then the statements and the connection. */
static void close_db_final(gw_store *s)
{
    sqlite3_exec(s->db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
    close_db(s);
}

int gw_store_put(gw_store *s, int lane, int kind, uint64_t seq, const char *payload, size_t len)
{
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
    /* One lock: the queue bound and the hand-off together. Bounded in rows and,
     * since a row's size varies, in bytes: the queue is the gateway's largest
     * use of memory under overload. */
    pthread_mutex_lock(&s->mu);
    if (lane == GW_LANE_TELE) {
        int64_t cost = (int64_t)(sizeof(struct cmd) + len);
        if (s->queued_tele >= s->cfg.queue_max ||
            (s->cfg.queue_max_bytes > 0 && s->queued_tele_bytes + cost > s->cfg.queue_max_bytes)) {
            s->st.tele_refused_queue++;
            pthread_mutex_unlock(&s->mu);
            free(c);
            return GW_EFULL;
        }
        s->queued_tele++;
        s->queued_tele_bytes += cost;
    }
    enqueue_locked(s, c, lane == GW_LANE_PRIO);
    pthread_mutex_unlock(&s->mu);
    return GW_OK;
}

int gw_store_flush(gw_store *s, gw_store_flush_cb cb, void *ctx)
{
    seen_push(s);
    struct cmd *c = calloc(1, sizeof(*c));
    if (!c)
        return GW_ENOMEM;
    c->type = C_FLUSH;
    c->cb = (void *)cb;
    c->ctx = ctx;
    enqueue(s, c, 0); /* with the rows it follows: confirmations share their group commit */
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

/* Queues an acknowledgement command (C_ACK, C_DACK): lane and the range a..b. */
static int queue_ack(gw_store *s, int type, int lane, int64_t a, int64_t b)
{
    struct cmd *c = calloc(1, sizeof(*c));
    if (!c)
        return GW_ENOMEM;
    c->type = type;
    c->lane = lane;
    c->a = a;
    c->b = b;
    enqueue(s, c, 0);
    return GW_OK;
}

int gw_store_ack(gw_store *s, int lane, int64_t first, int64_t last)
{
    return queue_ack(s, C_ACK, lane, first, last);
}

int gw_store_dests(gw_store *s, const char *const *names, const unsigned *lanes, int n,
                   int64_t (*cursors)[GW_LANES])
{
    if (n < 1 || n > GW_STORE_MAX_DESTS)
        return GW_EINVAL;
    struct cmd *c = calloc(1, sizeof(*c) + (size_t)n * sizeof(struct dest));
    if (!c)
        return GW_ENOMEM;
    struct dest *list = (struct dest *)c->data;
    for (int i = 0; i < n; i++) {
        if (strlen(names[i]) >= GW_STORE_DEST_NAME) {
            free(c);
            return GW_EINVAL;
        }
        gw_strlcpy(list[i].name, names[i], sizeof(list[i].name));
        list[i].lanes = lanes[i];
        for (int j = 0; j < s->ndloaded; j++)
            if (!strcmp(s->dloaded[j].name, names[i]))
                memcpy(list[i].acked, s->dloaded[j].acked, sizeof(list[i].acked));
        memcpy(cursors[i], list[i].acked, sizeof(list[i].acked));
    }
    for (int j = 0; j < s->ndloaded; j++) {
        int kept = 0;
        for (int i = 0; i < n && !kept; i++)
            kept = !strcmp(s->dloaded[j].name, names[i]);
        if (!kept)
            GW_WARN("store",
                    "destination '%s' is no longer configured: its cursor (priority %lld, "
                    "telemetry %lld) is dropped and the outbox no longer keeps rows for it",
                    s->dloaded[j].name, (long long)s->dloaded[j].acked[GW_LANE_PRIO],
                    (long long)s->dloaded[j].acked[GW_LANE_TELE]);
    }
    c->type = C_DESTS;
    c->len = (size_t)n * sizeof(struct dest);
    enqueue(s, c, 1);
    return GW_OK;
}

int gw_store_ack_upto(gw_store *s, int dest, int lane, int64_t upto)
{
    if (lane < 0 || lane >= GW_LANES || dest < 0 || dest >= GW_STORE_MAX_DESTS)
        return GW_EINVAL;
    return queue_ack(s, C_DACK, lane, dest, upto);
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
    free_memory(s);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

void gw_store_close(gw_store *s)
{
    if (!s)
        return;
    seen_push(s);
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
    close_db_final(s);
}
