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
#include <sys/stat.h>
#include <unistd.h>

struct env {
    h_proc a, b, sub, gw;
    int pa, pb;
    char db[512];
};

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

static int broker_b_start(h_proc *p, int port)
{
    char conf[1024], dir[512];
    snprintf(dir, sizeof(dir), "%s/b", h_tmpdir());
    mkdir(dir, 0700);
    snprintf(conf, sizeof(conf),
             "listener %d 127.0.0.1\nallow_anonymous true\npersistence true\n"
             "persistence_location %s/\nautosave_interval 0\nmax_queued_messages 0\n"
             "max_inflight_messages 0\nlog_dest stdout\n%s",
             port, dir, getuid() == 0 ? "user root\n" : "");
    char *argv[] = {"mosquitto", "-c", (char *)h_write_file("mosquitto-b.conf", conf), NULL};
    if (h_spawn(p, "mosquitto-b.log", argv))
        return -1;
    return h_port_wait(port, 10000) ? 0 : -1;
}

static const char *config(struct env *e, int with_device)
{
    static char text[4096];
    snprintf(text, sizeof(text),
             "gateway:\n  id: gw-kill\n  data_dir: %s/gw\n  shutdown_drain: 1s\n"
             "  admin_socket: \"\"\n"
             "store:\n  commit_window: 2ms\n"
             "uplink:\n  name: city\n  uri: tcp://127.0.0.1:%d\n  topic_prefix: t\n"
             "  backoff_min: 100ms\n  backoff_max: 300ms\n  batch: 50\n"
             "destinations:\n  - name: bureau\n    uri: tcp://127.0.0.1:%d\n"
             "    topic_prefix: t\n    backoff_min: 100ms\n    backoff_max: 300ms\n"
             "    batch: 50\n"
             "devices:\n%s"
             "rules:\n  - id: lvl\n    kind: threshold\n    metric: level\n"
             "    levels: {red: {raise: 50, clear: 10}}\n",
             h_tmpdir(), e->pa, e->pb,
             with_device ? "  - {id: syn-1, protocol: synthetic, rate: 400, square: 100}\n"
                         : "  []\n");
    return h_write_file("gw.yaml", text);
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

static void kill_and_check(struct env *e, struct set *kept, int frozen, long long cur[2],
                           long long above[2])
{
    poll(NULL, 0, 200 + rand() % 1200);
    assert_int_equal(h_signal(&e->gw, SIGKILL), 0);
    assert_true(h_wait(&e->gw, 5000) >= 0);
    char out[256], cmd[700];
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
    assert_int_equal(h_gateway_start(&e->gw, config(e, 1)), 0);
}

static void test_kills_two_destinations(void **state)
{
    struct env e;
    memset(&e, 0, sizeof(e));
    srand((unsigned)h_now_ms());
    int kills = env_int("ATTACK_KILLS", 6);
    int base = h_free_port_range(2);
    assert_true(base > 0);
    e.pa = base;
    e.pb = base + 1;
    assert_int_equal(h_broker_start(&e.a, e.pa), 0);
    assert_int_equal(broker_b_start(&e.b, e.pb), 0);
    assert_int_equal(h_platform_start(e.pb), 0);
    char port[16];
    snprintf(port, sizeof(port), "%d", e.pa);
    char *argv[] = {"mosquitto_sub", "-h", "127.0.0.1", "-p", port, "-t",
                    "t/#",           "-q", "1",         "-v", NULL};
    assert_int_equal(h_spawn(&e.sub, "city-sub.log", argv), 0);
    snprintf(e.db, sizeof(e.db), "%s/gw/outbox.db", h_tmpdir());

    assert_int_equal(h_gateway_start(&e.gw, config(&e, 1)), 0);
    assert_true(h_log_wait(&e.gw, "[uplink:bureau] connected", 10000) ||
                h_log_wait(&e.gw, "connected to tcp://127.0.0.1", 10000));
    poll(NULL, 0, 1000);

    /* Bureau's broker frozen: its cursors must stand still through every kill. */
    assert_int_equal(h_signal(&e.b, SIGSTOP), 0);
    poll(NULL, 0, 1500); /* what was in flight is acknowledged or never will be */
    struct set kept = {0};
    long long cur[2] = {0, 0}, above[2] = {0, 0};
    assert_int_equal(h_signal(&e.gw, SIGKILL), 0);
    assert_true(h_wait(&e.gw, 5000) >= 0);
    cur[0] = q(&e, "SELECT acked FROM cursor WHERE dest='bureau' AND lane=0");
    cur[1] = q(&e, "SELECT acked FROM cursor WHERE dest='bureau' AND lane=1");
    outbox_seqs(&e, &kept);
    assert_true(cur[0] >= 0 && cur[1] > 0); /* bureau had acknowledged rows of both lanes */
    assert_int_equal(h_gateway_start(&e.gw, config(&e, 1)), 0);
    for (int i = 0; i < kills; i++)
        kill_and_check(&e, &kept, 1, cur, above);
    print_message("bureau frozen through %d kills: cursors prio %lld tele %lld unchanged, "
                  "%lld + %lld rows above them kept\n",
                  kills, cur[0], cur[1], above[0], above[1]);
    assert_int_equal(h_signal(&e.b, SIGCONT), 0);
    for (int i = 0; i < kills; i++)
        kill_and_check(&e, &kept, 0, cur, above);

    /* Drain: the same destinations, no device. */
    assert_int_equal(h_signal(&e.gw, SIGKILL), 0);
    assert_true(h_wait(&e.gw, 5000) >= 0);
    outbox_seqs(&e, &kept);
    assert_int_equal(h_gateway_start(&e.gw, config(&e, 0)), 0);
    long rows = -1;
    for (int i = 0; i < 600; i++) {
        rows = h_outbox_rows(e.db, "outbox_tele") + h_outbox_rows(e.db, "outbox_prio");
        if (rows == 0)
            break;
        poll(NULL, 0, 100);
    }
    poll(NULL, 0, 1000); /* the subscribers' last messages */
    struct set city = {0}, bureau = {0};
    city_seqs(&e, &city);
    bureau_seqs(&bureau);
    long missing_c = 0, missing_b = 0, only_c = 0, only_b = 0;
    for (size_t i = 0; i < kept.cap; i++)
        if (kept.v[i]) {
            missing_c += !set_has(&city, kept.v[i]);
            missing_b += !set_has(&bureau, kept.v[i]);
        }
    for (size_t i = 0; i < city.cap; i++)
        only_c += city.v[i] && !set_has(&bureau, city.v[i]);
    for (size_t i = 0; i < bureau.cap; i++)
        only_b += bureau.v[i] && !set_has(&city, bureau.v[i]);
    print_message("%d kills: %zu items seen in the outbox after kills; city %zu, bureau %zu "
                  "items; missing at city %ld, at bureau %ld; only at city %ld, only at bureau "
                  "%ld; %ld rows left\n",
                  2 * kills + 2, kept.n, city.n, bureau.n, missing_c, missing_b, only_c, only_b,
                  rows);
    assert_int_equal(rows, 0);
    assert_int_equal(missing_c, 0);
    assert_int_equal(missing_b, 0);
    assert_int_equal(only_c, 0);
    assert_int_equal(only_b, 0);
    assert_true(kept.n > 0);

    assert_int_equal(h_stop(&e.gw), 0);
    h_stop(&e.sub);
    h_platform_stop();
    h_stop(&e.b);
    h_stop(&e.a);
    h_cleanup();
    free(kept.v);
    free(city.v);
    free(bureau.v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kills_two_destinations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
