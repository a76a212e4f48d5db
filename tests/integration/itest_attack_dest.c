/* SIGKILL in the middle of per-destination cursor work, with two real
 * mosquittos: "city" (broker A, read by a mosquitto_sub) and "bureau" (broker
 * B, read by the harness's persistent-session platform). The gateway runs a
 * loaded synthetic device (readings, and alarm transitions from a square
 * wave) and is SIGKILLed at random points, ATTACK_KILLS times while broker B
 * is frozen (SIGSTOP: connections accepted by the kernel, nothing answered)
 * and as many times again with both brokers up. After each kill, read from
 * the outbox as the killed gateway left it:
 *   - PRAGMA integrity_check is ok;
 *   - while B is frozen, bureau's cursors do not move (nothing can have been
 *     acknowledged) and no row above them is deleted;
 *   - the items of every row still there are remembered.
 * At the end the gateway drains without the device; then every remembered
 * item reached both destinations, both received the same items (a row
 * released before both acknowledged it would be missing at one), and the
 * outbox is empty. Every wait is bounded. */
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
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct env {
    h_proc a, b, sub, gw;
    int pa, pb;
    const char *tag; /* names this test's files, folders and logs */
    char data[512];  /* the gateway's data_dir */
    char db[600];
    const char *extra; /* more gateway keys (store:...) */
};

static struct {
    char disk[512], how[256];
    int mounted;
    struct env *e; /* the running test's, stopped by its teardown */
} G;

/* A set of item seqs (open addressing, grows). */
struct set {
    long long *v;
    size_t n, cap;
};

static int set_has(const struct set *s, long long x)
{
    if (!s->cap)
        return 0;
    for (size_t i = (size_t)((uint64_t)x * 0x9E3779B97F4A7C15ull >> 17) & (s->cap - 1); s->v[i];
         i = (i + 1) & (s->cap - 1))
        if (s->v[i] == x)
            return 1;
    return 0;
}

static void set_add(struct set *s, long long x)
{
    if (x <= 0 || set_has(s, x))
        return;
    if (2 * (s->n + 1) > s->cap) {
        struct set g = {calloc(s->cap ? 2 * s->cap : 1024, sizeof(long long)), 0,
                        s->cap ? 2 * s->cap : 1024};
        assert_non_null(g.v);
        for (size_t i = 0; i < s->cap; i++)
            if (s->v[i])
                set_add(&g, s->v[i]);
        free(s->v);
        *s = g;
    }
    size_t i = (size_t)((uint64_t)x * 0x9E3779B97F4A7C15ull >> 17) & (s->cap - 1);
    while (s->v[i])
        i = (i + 1) & (s->cap - 1);
    s->v[i] = x;
    s->n++;
}

static const char *config(struct env *e, int with_device)
{
    static char text[4096];
    snprintf(text, sizeof(text),
             "gateway:\n  id: gw-kill\n  data_dir: %s\n  shutdown_drain: 1s\n"
             "  admin_socket: %s/adm-%s.sock\n"
             "store:\n  commit_window: 2ms\n%s"
             "uplink:\n  name: city\n  uri: tcp://127.0.0.1:%d\n  topic_prefix: t\n"
             "  backoff_min: 100ms\n  backoff_max: 300ms\n  batch: 50\n"
             "destinations:\n  - name: bureau\n    uri: tcp://127.0.0.1:%d\n"
             "    topic_prefix: t\n    backoff_min: 100ms\n    backoff_max: 300ms\n"
             "    batch: 50\n"
             "devices:\n%s"
             "rules:\n  - id: lvl\n    kind: threshold\n    metric: level\n"
             "    levels: {red: {raise: 50, clear: 10}}\n",
             e->data, h_tmpdir(), e->tag, e->extra ? e->extra : "", e->pa, e->pb,
             with_device ? "  - {id: syn-1, protocol: synthetic, rate: 400, square: 100}\n"
                         : "  []\n");
    char name[64];
    snprintf(name, sizeof(name), "gw-%s.yaml", e->tag);
    return h_write_file(name, text);
}

/* Every item seq in what mosquitto_sub logged ("topic payload" lines). */
static void city_seqs(struct env *e, struct set *s)
{
    char *text = h_slurp(e->sub.log);
    for (char *line = text ? strtok(text, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        char *sp = strchr(line, ' ');
        cJSON *doc = sp ? cJSON_Parse(sp + 1) : NULL, *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItem(doc, "items"))
            set_add(s, (long long)cJSON_GetNumberValue(cJSON_GetObjectItem(it, "seq")));
        cJSON_Delete(doc);
    }
    free(text);
}

static void bureau_seqs(struct set *s)
{
    static const char *const kinds[] = {"/readings", "/alarms", "/events"};
    for (int k = 0; k < 3; k++) {
        cJSON *items = h_platform_items(kinds[k]), *it;
        cJSON_ArrayForEach(it, items)
            set_add(s, (long long)cJSON_GetNumberValue(cJSON_GetObjectItem(it, "seq")));
        cJSON_Delete(items);
    }
}

/* The item seqs of every row in the outbox (sqlite3 CLI, read-only). */
static void outbox_seqs(struct env *e, struct set *s)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "sqlite3 -readonly '%s' \"SELECT json_extract(j.value,'$.seq') FROM "
             "(SELECT payload FROM outbox_tele UNION ALL SELECT payload FROM outbox_prio), "
             "json_each('['||CAST(payload AS TEXT)||']') j\"",
             e->db);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    char line[64];
    while (fgets(line, sizeof(line), f))
        set_add(s, atoll(line));
    assert_int_equal(pclose(f), 0);
}

static long long q(struct env *e, const char *sql)
{
    return h_sql_int(e->db, sql);
}

static int env_int(const char *name, int def)
{
    const char *v = getenv(name);
    return v && atoi(v) > 0 ? atoi(v) : def;
}

/* After a SIGKILL: integrity_check; while bureau is frozen its cursors stand still
 * and no row above them is deleted; the items of the rows there are remembered. */
static void after_kill(struct env *e, struct set *kept, int frozen, long long cur[2],
                       long long above[2])
{
    assert_int_equal(h_signal(&e->gw, SIGKILL), 0);
    assert_true(h_wait(&e->gw, 5000) >= 0);
    char out[256], cmd[900];
    snprintf(cmd, sizeof(cmd), "sqlite3 -readonly '%s' 'PRAGMA integrity_check'", e->db);
    assert_int_equal(h_run(cmd, out, sizeof(out)), 0);
    if (strncmp(out, "ok", 2))
        fail_msg("integrity_check after SIGKILL: %s", out);
    static const char *const tables[2] = {"outbox_prio", "outbox_tele"};
    for (int lane = 0; lane < 2 && frozen; lane++) {
        char sql[256];
        snprintf(sql, sizeof(sql), "SELECT acked FROM cursor WHERE dest='bureau' AND lane=%d",
                 lane);
        long long c = q(e, sql);
        if (c != cur[lane])
            fail_msg("bureau's lane %d cursor moved from %lld to %lld while its broker was "
                     "frozen",
                     lane, cur[lane], c);
        snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM %s WHERE id > %lld", tables[lane], c);
        long long n = q(e, sql);
        if (n < above[lane])
            fail_msg("lane %d: %lld rows above bureau's cursor, %lld before: rows deleted "
                     "that bureau never acknowledged",
                     lane, n, above[lane]);
        above[lane] = n;
    }
    outbox_seqs(e, kept);
}

static void start_peers(struct env *e, const char *tag, const char *data, const char *extra)
{
    memset(e, 0, sizeof(*e));
    G.e = e;
    e->tag = tag;
    e->extra = extra;
    snprintf(e->data, sizeof(e->data), "%s", data);
    snprintf(e->db, sizeof(e->db), "%s/outbox.db", data);
    int base = h_free_port_range(2);
    assert_true(base > 0);
    e->pa = base;
    e->pb = base + 1;
    assert_int_equal(h_broker_start(&e->a, e->pa), 0);
    char btag[32], log[64];
    snprintf(btag, sizeof(btag), "b-%s", tag);
    assert_int_equal(h_broker_start_ex(&e->b, e->pb, btag, NULL), 0);
    assert_int_equal(h_platform_start(e->pb), 0);
    snprintf(log, sizeof(log), "city-sub-%s.log", tag);
    static const char *const topics[] = {"-t", "t/#", "-v", NULL};
    assert_int_equal(h_recorder_start(&e->sub, e->pa, log, topics), 0);
    assert_int_equal(h_gateway_start(&e->gw, config(e, 1)), 0);
    assert_true(h_log_wait(&e->gw, "[uplink:bureau] connected", 10000) ||
                h_log_wait(&e->gw, "connected to tcp://127.0.0.1", 10000));
    poll(NULL, 0, 1000);
}

/* Bureau's broker frozen; a first kill reads the cursors that must then stand still. */
static void freeze(struct env *e, struct set *kept, long long cur[2])
{
    assert_int_equal(h_signal(&e->b, SIGSTOP), 0);
    poll(NULL, 0, 1500); /* what was in flight is acknowledged or never will be */
    assert_int_equal(h_signal(&e->gw, SIGKILL), 0);
    assert_true(h_wait(&e->gw, 5000) >= 0);
    cur[0] = q(e, "SELECT acked FROM cursor WHERE dest='bureau' AND lane=0");
    cur[1] = q(e, "SELECT acked FROM cursor WHERE dest='bureau' AND lane=1");
    outbox_seqs(e, kept);
    assert_true(cur[0] >= 0 && cur[1] > 0); /* bureau had acknowledged rows of both lanes */
    assert_int_equal(h_gateway_start(&e->gw, config(e, 1)), 0);
}

/* The end: a last kill, a drain without the device, then every remembered item at both
 * destinations, both with the same items, the outbox empty. */
static void drain_and_check(struct env *e, struct set *kept, int kills)
{
    after_kill(e, kept, 0, NULL, NULL);
    char cmd[900], out[2048];
    snprintf(cmd, sizeof(cmd),
             "sqlite3 -readonly '%s' \"SELECT dest, lane, acked FROM cursor; SELECT MIN(id), "
             "MAX(id) FROM outbox_tele; SELECT MIN(id), MAX(id) FROM outbox_prio\" | tr '\\n' ' '",
             e->db);
    h_run(cmd, out, sizeof(out));
    print_message("before the drain: cursors and rows: %s\n", out);
    assert_int_equal(h_gateway_start(&e->gw, config(e, 0)), 0);
    long rows = -1;
    for (int i = 0; i < 600; i++) {
        rows = h_outbox_rows(e->db, "outbox_tele") + h_outbox_rows(e->db, "outbox_prio");
        if (rows == 0)
            break;
        poll(NULL, 0, 100);
    }
    /* The subscribers' last messages: bureau's platform may still be reconnecting to the
     * broker that was frozen (its keepalive ran out meanwhile). Bounded: 40 s. */
    struct set city = {0}, bureau = {0};
    long missing_c = 0, missing_b = 0, only_c = 0, only_b = 0;
    for (int round = 0; round < 80; round++) {
        poll(NULL, 0, 500);
        free(city.v);
        free(bureau.v);
        memset(&city, 0, sizeof(city));
        memset(&bureau, 0, sizeof(bureau));
        city_seqs(e, &city);
        bureau_seqs(&bureau);
        missing_c = missing_b = only_c = only_b = 0;
        for (size_t i = 0; i < kept->cap; i++)
            if (kept->v[i]) {
                missing_c += !set_has(&city, kept->v[i]);
                missing_b += !set_has(&bureau, kept->v[i]);
            }
        for (size_t i = 0; i < city.cap; i++)
            only_c += city.v[i] && !set_has(&bureau, city.v[i]);
        for (size_t i = 0; i < bureau.cap; i++)
            only_b += bureau.v[i] && !set_has(&city, bureau.v[i]);
        if (!missing_c && !missing_b && !only_c && !only_b)
            break;
    }
    print_message("%d kills: %zu items seen in the outbox after kills; city %zu, bureau %zu "
                  "items; missing at city %ld, at bureau %ld; only at city %ld, only at bureau "
                  "%ld; %ld rows left\n",
                  kills, kept->n, city.n, bureau.n, missing_c, missing_b, only_c, only_b, rows);
    assert_int_equal(rows, 0);
    assert_int_equal(missing_c, 0);
    assert_int_equal(missing_b, 0);
    assert_int_equal(only_c, 0);
    assert_int_equal(only_b, 0);
    assert_true(kept->n > 0);
    free(city.v);
    free(bureau.v);
}

/* Every process of the test, also after a failed assertion. */
static int teardown(void **state)
{
    struct env *e = G.e;
    int gw = 0;
    if (e) {
        h_signal(&e->b, SIGCONT);
        gw = h_stop(&e->gw);
        h_stop(&e->sub);
        h_platform_stop();
        h_stop(&e->b);
        h_stop(&e->a);
        G.e = NULL;
    }
    return gw == 0 ? 0 : -1;
}

static void test_kills_two_destinations(void **state)
{
    static struct env e; /* the teardown reaches it through G.e */
    char data[512];
    snprintf(data, sizeof(data), "%s/gw-k", h_tmpdir());
    start_peers(&e, "k", data, NULL);
    int kills = env_int("ATTACK_KILLS", 6);
    struct set kept = {0};
    long long cur[2] = {0, 0}, above[2] = {0, 0};
    freeze(&e, &kept, cur);
    for (int i = 0; i < kills; i++) {
        poll(NULL, 0, 200 + rand() % 1200);
        after_kill(&e, &kept, 1, cur, above);
        assert_int_equal(h_gateway_start(&e.gw, config(&e, 1)), 0);
    }
    print_message("bureau frozen through %d kills: cursors prio %lld tele %lld unchanged, "
                  "%lld + %lld rows above them kept\n",
                  kills, cur[0], cur[1], above[0], above[1]);
    assert_int_equal(h_signal(&e.b, SIGCONT), 0);
    for (int i = 0; i < kills; i++) {
        poll(NULL, 0, 200 + rand() % 1200);
        after_kill(&e, &kept, 0, NULL, NULL);
        assert_int_equal(h_gateway_start(&e.gw, config(&e, 1)), 0);
    }
    drain_and_check(&e, &kept, 2 * kills + 2);
    free(kept.v);
}

/* Writes into fd until the file system has no byte left. */
static void fill(int fd)
{
    static char buf[65536];
    while (write(fd, buf, sizeof(buf)) > 0) {
    }
    while (write(fd, buf, 512) > 0) {
    }
}

/* The outbox's file system full (an 8 MiB tmpfs, a filler file taking every byte the
 * gateway frees) with bureau frozen, and SIGKILLs while it is full: the gateway restarts
 * on the full disk, says so (disk_full), keeps the alarm transitions it committed, and no
 * cursor moves or breaks; once there is room again both destinations get the same items
 * and everything seen in the outbox. */
static void test_disk_full_two_destinations(void **state)
{
    if (!G.mounted) {
        printf("# SKIPPED: needs a tmpfs\n");
        skip();
    }
    static struct env e; /* the teardown reaches it through G.e */
    char data[600];
    snprintf(data, sizeof(data), "%s/gw-d", G.disk);
    start_peers(&e, "d", data, "  min_free: 0\n");
    struct set kept = {0};
    long long cur[2] = {0, 0}, above[2] = {0, 0};
    freeze(&e, &kept, cur);

    char filler[600], sock[600], out[16384];
    snprintf(filler, sizeof(filler), "%s/filler", G.disk);
    snprintf(sock, sizeof(sock), "%s/adm-d.sock", h_tmpdir());
    int ff = open(filler, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    assert_true(ff >= 0);
    fill(ff);
    int64_t full_at = h_now_ms();
    int saw_full = 0, kills = 3;
    for (int i = 0; i < kills; i++) {
        int64_t until = h_now_ms() + 1500 + rand() % 1000;
        while (h_now_ms() < until) {
            fill(ff);
            poll(NULL, 0, 20);
        }
        const char *args[] = {"--json", "status", NULL};
        if (h_admin(sock, args, out, sizeof(out)) == 0 && strstr(out, "\"disk_full\":true")) {
            saw_full = 1;
            static const char *const keys[] = {"\"refused_queue_full\":", "\"dropped_oldest\":",
                                               "\"rows_waiting\":", "\"commit_failures\":"};
            for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
                const char *at = strstr(out, keys[k]);
                printf("# full, kill %d: %s%lld\n", i + 1, keys[k],
                       at ? atoll(at + strlen(keys[k])) : -1LL);
            }
        }
        after_kill(&e, &kept, 1, cur, above);
        fill(ff);
        if (h_gateway_start(&e.gw, config(&e, 1))) {
            h_dump_log(&e.gw);
            fail_msg("the gateway did not start again on the full disk");
        }
    }
    int64_t freed_at = h_now_ms();
    close(ff);
    unlink(filler);
    print_message("disk full for %lld ms through %d kills (disk_full seen: %d); bureau's cursors "
                  "prio %lld tele %lld unchanged\n",
                  (long long)(freed_at - full_at), kills, saw_full, cur[0], cur[1]);
    assert_true(saw_full);
    assert_int_equal(h_signal(&e.b, SIGCONT), 0);
    poll(NULL, 0, 2000);
    drain_and_check(&e, &kept, kills + 3);
    /* Alarms kept: transitions made while the disk was full reached the platform. */
    cJSON *alarms = h_platform_items("/alarms"), *it;
    int during = 0;
    cJSON_ArrayForEach(it, alarms)
    {
        const char *t = cJSON_GetStringValue(cJSON_GetObjectItem(it, "at"));
        struct tm tm;
        int ms = 0;
        memset(&tm, 0, sizeof(tm));
        if (t && sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                        &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) == 7) {
            tm.tm_year -= 1900;
            tm.tm_mon -= 1;
            int64_t when = (int64_t)timegm(&tm) * 1000 + ms;
            during += when > full_at + 500 && when < freed_at;
        }
    }
    cJSON_Delete(alarms);
    print_message("%d alarm transitions made while the disk was full reached bureau\n", during);
    assert_true(during > 0);
    free(kept.v);
}

static int group_setup(void **state)
{
    snprintf(G.disk, sizeof(G.disk), "%s/disk", h_tmpdir());
    /* Before any thread (the platform's Paho) starts: a user namespace needs that. */
    G.mounted = h_small_disk(G.disk, "8m", G.how, sizeof(G.how)) == 0;
    printf("# the disk-full test's data directory: %s\n",
           G.mounted ? G.how : "NO TMPFS (not root, no user namespaces): SKIPPED");
    srand((unsigned)h_now_ms());
    return 0;
}

static int group_teardown(void **state)
{
    if (G.mounted)
        umount(G.disk);
    if (!getenv("ATTACK_KEEP"))
        h_cleanup();
    else
        printf("# kept %s\n", h_tmpdir());
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_kills_two_destinations, teardown),
        cmocka_unit_test_teardown(test_disk_full_two_destinations, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
