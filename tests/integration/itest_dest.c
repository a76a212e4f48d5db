/* Several destinations over one outbox, with two real mosquittos on loopback:
 * "city" (broker A, read by a mosquitto_sub) and "bureau" (broker B, read by
 * the harness's persistent-session platform).
 *
 * - bureau down: city gets everything while it is down, and the outbox keeps
 *   every row for bureau (nothing deleted early); SIGKILL with bureau behind
 *   and a restart resume both cursors (city gets no item twice); when broker
 *   B comes back, bureau gets its whole backlog, in order, and the outbox
 *   empties;
 * - filters: bureau takes only river readings of one metric, city all; rows
 *   filtered out count as done, so the outbox still empties;
 * - a destination removed from the configuration stops pinning rows. */
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

#define RUN 3000   /* synthetic readings per device per gateway run */
#define SQUARE 500 /* a level reading (and an alarm transition) every SQUARE */

struct env {
    h_proc a, b, sub, gw;
    int pa, pb;
    char db[512];
};

/* Broker B keeps its sessions in a folder of its own (broker A uses the tmpdir). */
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
    const char *path = h_write_file("mosquitto-b.conf", conf);
    char *argv[] = {"mosquitto", "-c", (char *)path, NULL};
    if (h_spawn(p, "mosquitto-b.log", argv))
        return -1;
    return h_port_wait(port, 10000) ? 0 : -1;
}

static void start_peers(struct env *e)
{
    int base = h_free_port_range(2);
    assert_true(base > 0);
    e->pa = base;
    e->pb = base + 1;
    assert_int_equal(h_broker_start(&e->a, e->pa), 0);
    assert_int_equal(broker_b_start(&e->b, e->pb), 0);
    assert_int_equal(h_platform_start(e->pb), 0); /* bureau's platform: a persistent session */
    char port[16];
    snprintf(port, sizeof(port), "%d", e->pa);
    char *argv[] = {
        "mosquitto_sub", "-h", "127.0.0.1", "-p", port, "-t", "t/#", "-q", "1", "-v", "-i",
        "city-sub",      NULL};
    assert_int_equal(h_spawn(&e->sub, "city-sub.log", argv), 0);
    snprintf(e->db, sizeof(e->db), "%s/gw/outbox.db", h_tmpdir());
}

static void stop_peers(struct env *e)
{
    assert_int_equal(h_stop(&e->gw), 0);
    h_stop(&e->sub);
    h_platform_stop();
    h_stop(&e->b);
    h_stop(&e->a);
    h_cleanup();
}

/* bureau: NULL leaves it out; else its extra keys (filter). */
static const char *config(struct env *e, const char *bureau, const char *devices)
{
    static char text[4096];
    int n = snprintf(text, sizeof(text),
                     "gateway:\n  id: gw-dest\n  data_dir: %s/gw\n  shutdown_drain: 1s\n"
                     "  admin_socket: \"\"\n"
                     "store:\n  commit_window: 2ms\n"
                     "uplink:\n  name: city\n  uri: tcp://127.0.0.1:%d\n  topic_prefix: t\n"
                     "  backoff_min: 100ms\n  backoff_max: 500ms\n  batch: 50\n",
                     h_tmpdir(), e->pa);
    if (bureau)
        n += snprintf(text + n, sizeof(text) - (size_t)n,
                      "destinations:\n  - name: bureau\n    uri: tcp://127.0.0.1:%d\n"
                      "    topic_prefix: t\n    backoff_min: 100ms\n    backoff_max: 500ms\n"
                      "    batch: 50\n%s",
                      e->pb, bureau);
    snprintf(text + n, sizeof(text) - (size_t)n,
             "devices:\n%s"
             "rules:\n  - id: lvl\n    kind: threshold\n    metric: level\n"
             "    levels: {red: {raise: 50, clear: 10}}\n",
             devices);
    return h_write_file("gw.yaml", text);
}

/* city's items, from mosquitto_sub -v lines "topic payload", as h_platform_items gives
 * bureau's. */
static cJSON *city_items(struct env *e, const char *suffix)
{
    cJSON *all = cJSON_CreateArray();
    char *text = h_slurp(e->sub.log);
    size_t sl = strlen(suffix);
    for (char *line = text ? strtok(text, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        char *sp = strchr(line, ' ');
        if (!sp || (size_t)(sp - line) < sl || strncmp(sp - sl, suffix, sl))
            continue;
        cJSON *doc = cJSON_Parse(sp + 1), *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItem(doc, "items"))
            cJSON_AddItemToArray(all, cJSON_Duplicate(it, 1));
        cJSON_Delete(doc);
    }
    free(text);
    return all;
}

struct tally {
    long distinct, dups, out_of_order, other_type;
};

/* Inserts s into an open-addressing set of cap (a power of two) slots; 1 when new. */
static int set_add(double *set, size_t cap, double s)
{
    size_t at = (size_t)((uint64_t)s * 0x9E3779B97F4A7C15ull >> 20) & (cap - 1);
    while (set[at] != 0) {
        if (set[at] == s)
            return 0;
        at = (at + 1) & (cap - 1);
    }
    set[at] = s;
    return 1;
}

/* Distinct items by seq, duplicates, first copies whose seq is not above every earlier
 * one (one gateway, one lane: the outbox order), and items whose type is not want_type. */
static struct tally count(cJSON *items, const char *want_type)
{
    struct tally t = {0, 0, 0, 0};
    size_t cap = 64;
    while (cap < 2 * (size_t)cJSON_GetArraySize(items))
        cap *= 2;
    double *set = calloc(cap, sizeof(*set)), max = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        double s = cJSON_GetNumberValue(cJSON_GetObjectItem(it, "seq"));
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(it, "type"));
        if (want_type && (!type || strcmp(type, want_type)))
            t.other_type++;
        if (!set_add(set, cap, s)) {
            t.dups++;
            continue;
        }
        if (s <= max)
            t.out_of_order++;
        max = s;
        t.distinct++;
    }
    free(set);
    return t;
}

static struct tally city_tally(struct env *e, const char *suffix, const char *type)
{
    cJSON *items = city_items(e, suffix);
    struct tally t = count(items, type);
    cJSON_Delete(items);
    return t;
}

static struct tally bureau_tally(const char *suffix, const char *type)
{
    cJSON *items = h_platform_items(suffix);
    struct tally t = count(items, type);
    cJSON_Delete(items);
    return t;
}

/* Bounded waits for a count, re-reading at a short interval (files and a subscriber). */
static long wait_city(struct env *e, const char *suffix, long want, int timeout_ms)
{
    int64_t end = h_now_ms() + timeout_ms;
    long got;
    while ((got = city_tally(e, suffix, NULL).distinct) < want && h_now_ms() < end)
        poll(NULL, 0, 100);
    return got;
}

static long wait_bureau(const char *suffix, long want, int timeout_ms)
{
    int64_t end = h_now_ms() + timeout_ms;
    long got;
    while ((got = bureau_tally(suffix, NULL).distinct) < want && h_now_ms() < end)
        poll(NULL, 0, 100);
    return got;
}

static long wait_rows_at_most(struct env *e, long want, int timeout_ms)
{
    int64_t end = h_now_ms() + timeout_ms;
    long n;
    while (
        ((n = h_outbox_rows(e->db, "outbox_tele") + h_outbox_rows(e->db, "outbox_prio")) > want ||
         n < 0) &&
        h_now_ms() < end)
        poll(NULL, 0, 50);
    return n;
}

/* A destination's cursor as committed, the highest id, a count... */
static int64_t query(struct env *e, const char *sql)
{
    return h_sql_int(e->db, sql);
}

static const char one_river[] =
    "  - {id: syn-1, protocol: synthetic, type: river, rate: 1500, total: 3000, square: 500}\n";

/* Readings of one run: RUN synthetic plus a level reading every SQUARE. */
#define RUN_READINGS (RUN + RUN / SQUARE)

static void test_one_down(void **state)
{
    struct env e;
    memset(&e, 0, sizeof(e));
    start_peers(&e);
    h_stop(&e.b); /* bureau is down from the start; its platform session stays in B */

    const char *cfg = config(&e, "", one_river);
    assert_int_equal(h_gateway_start(&e.gw, cfg), 0);
    /* city gets everything on time while bureau is down. */
    int64_t t0 = h_now_ms();
    assert_int_equal(wait_city(&e, "/readings", RUN_READINGS, 20000), RUN_READINGS);
    assert_true(wait_city(&e, "/alarms", 1, 5000) >= 1);
    print_message("city: %d readings in %lld ms while bureau was down\n", RUN_READINGS,
                  (long long)(h_now_ms() - t0));
    /* Nothing deleted early: every row waits for bureau. */
    assert_int_equal(h_outbox_rows(e.db, "outbox_tele"), RUN_READINGS);
    assert_true(h_outbox_rows(e.db, "outbox_prio") >= 1);

    /* SIGKILL once city's cursor is durable, with bureau behind. */
    int64_t end = h_now_ms() + 10000;
    while (query(&e, "SELECT acked FROM cursor WHERE dest='city' AND lane=1") !=
               query(&e, "SELECT MAX(id) FROM outbox_tele") &&
           h_now_ms() < end)
        poll(NULL, 0, 50);
    assert_int_equal(query(&e, "SELECT acked FROM cursor WHERE dest='city' AND lane=1"),
                     query(&e, "SELECT MAX(id) FROM outbox_tele"));
    assert_int_equal(query(&e, "SELECT acked FROM cursor WHERE dest='bureau' AND lane=1"), 0);
    h_signal(&e.gw, SIGKILL);
    h_wait(&e.gw, 5000);

    /* The restarted gateway resumes city after its cursor: a second run, no repeat. */
    assert_int_equal(h_gateway_start(&e.gw, cfg), 0);
    assert_int_equal(wait_city(&e, "/readings", 2 * RUN_READINGS, 20000), 2 * RUN_READINGS);
    struct tally c = city_tally(&e, "/readings", "river");
    assert_int_equal(c.dups, 0);
    assert_int_equal(c.out_of_order, 0);
    assert_int_equal(c.other_type, 0);
    assert_int_equal(h_outbox_rows(e.db, "outbox_tele"), 2 * RUN_READINGS);

    /* bureau comes back: its whole backlog, in order, and the outbox empties. */
    t0 = h_now_ms();
    assert_int_equal(broker_b_start(&e.b, e.pb), 0);
    assert_int_equal(wait_bureau("/readings", 2 * RUN_READINGS, 30000), 2 * RUN_READINGS);
    print_message("bureau: backlog of %d readings in %lld ms after its broker came back\n",
                  2 * RUN_READINGS, (long long)(h_now_ms() - t0));
    struct tally b = bureau_tally("/readings", "river");
    assert_int_equal(b.out_of_order, 0);
    assert_int_equal(b.other_type, 0);
    long alarms = city_tally(&e, "/alarms", NULL).distinct;
    assert_int_equal(wait_bureau("/alarms", alarms, 10000), alarms);
    assert_int_equal(bureau_tally("/alarms", NULL).out_of_order, 0);
    assert_int_equal(wait_rows_at_most(&e, 0, 10000), 0);
    stop_peers(&e);
}

static void test_filters(void **state)
{
    struct env e;
    memset(&e, 0, sizeof(e));
    start_peers(&e);
    const char *cfg = config(
        &e, "    filter: {types: [river], metrics: [synthetic], lanes: [telemetry]}\n",
        "  - {id: syn-r, protocol: synthetic, type: river, rate: 1000, total: 1000, square: 250}\n"
        "  - {id: syn-t, protocol: synthetic, type: tank, rate: 1000, total: 1000, square: "
        "250}\n");
    assert_int_equal(h_gateway_start(&e.gw, cfg), 0);
    long all = 2 * (1000 + 1000 / 250);
    assert_int_equal(wait_city(&e, "/readings", all, 20000), all);
    assert_true(wait_city(&e, "/alarms", 2 * 2, 5000) >= 2 * 2);
    /* bureau: river's synthetic readings only, no alarms (priority lane not taken). */
    assert_int_equal(wait_bureau("/readings", 1000, 20000), 1000);
    assert_int_equal(wait_rows_at_most(&e, 0, 10000), 0); /* filtered rows are done */
    struct tally b = bureau_tally("/readings", "river");
    assert_int_equal(b.distinct, 1000);
    assert_int_equal(b.other_type, 0);
    assert_int_equal(b.out_of_order, 0);
    cJSON *items = h_platform_items("/readings"), *it;
    cJSON_ArrayForEach(it, items)
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(it, "metric")), "synthetic");
    cJSON_Delete(items);
    assert_int_equal(bureau_tally("/alarms", NULL).distinct, 0);
    stop_peers(&e);
}

static void test_removed_destination(void **state)
{
    struct env e;
    memset(&e, 0, sizeof(e));
    start_peers(&e);
    h_stop(&e.b);
    assert_int_equal(h_gateway_start(&e.gw, config(&e, "",
                                                   "  - {id: syn-1, protocol: synthetic, rate: "
                                                   "1000, total: 500}\n")),
                     0);
    assert_int_equal(wait_city(&e, "/readings", 500, 20000), 500);
    assert_int_equal(h_stop(&e.gw), 0); /* the drain gives up on bureau */
    assert_int_equal(h_outbox_rows(e.db, "outbox_tele"), 500);
    /* bureau leaves the configuration: its cursor goes and the rows with it. */
    assert_int_equal(h_gateway_start(&e.gw, config(&e, NULL,
                                                   "  - {id: syn-1, protocol: synthetic, rate: "
                                                   "1000, total: 1}\n")),
                     0);
    assert_true(h_log_wait(&e.gw, "destination 'bureau' is no longer configured", 5000));
    assert_int_equal(wait_rows_at_most(&e, 0, 10000), 0);
    assert_int_equal(query(&e, "SELECT COUNT(*) FROM cursor WHERE dest='bureau'"), 0);
    stop_peers(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_down),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_removed_destination),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
