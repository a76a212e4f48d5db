/* The uplink against a broker cluster: a real 3-node nats-server cluster on
 * loopback (JetStream, an MQTT listener per node, MQTT streams and consumers
 * replicated 3 ways) and, for comparison, two independent mosquittos.
 *
 * The gateway lists the nodes in uplink.servers and streams readings and
 * alarms from two synthetic devices into node A; the platform is the
 * harness's persistent-session subscriber on node C. Checked at the
 * platform, de-duplicated by item id: every item arrives, per device in seq
 * order, and no reading overtakes an alarm committed before it. The cluster
 * is shared by the tests of this binary and torn down at the end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/integration/harness.h"

#include <openssl/sha.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NODES 3
#define PER_DEVICE 2000 /* synthetic readings per device */
#define SQUARE 250      /* the level flips every SQUARE readings: an alarm transition */
#define DEVICES 2

struct node {
    h_proc p;
    int client, route, mqtt, http;
    char conf[512];
};

static struct node nodes[NODES];
static int base;

/* ---- nats-server ---- */

/* GET path from the node's monitoring port into out; 1 when a 200 came back. */
static int http_get(int port, const char *path, char *out, size_t cap)
{
    int fd = h_tcp_connect(port);
    if (fd < 0)
        return 0;
    char req[256];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    size_t got = 0;
    if (h_send_all(fd, req, (size_t)n) == 0)
        got = h_recv_n(fd, (uint8_t *)out, cap - 1, 2000);
    close(fd);
    out[got] = '\0';
    return strncmp(out, "HTTP/1.", 7) == 0 && strstr(out, " 200 ") != NULL;
}

/* The node's working folder in the tmpdir: nats-server 2.9.10 was seen
 * writing a consumer's meta.inf and meta.sum into its working directory,
 * outside its store_dir, and they were left in the test's. */
static const char *node_dir(int i)
{
    static char dir[NODES][512];
    snprintf(dir[i], sizeof(dir[i]), "%s/n%d", h_tmpdir(), i);
    return dir[i];
}

static int node_start(int i)
{
    mkdir(node_dir(i), 0700);
    char *argv[] = {
        "sh",          "-c", "cd \"$0\" && exec nats-server -c \"$1\"", (char *)node_dir(i),
        nodes[i].conf, NULL};
    char log[32];
    snprintf(log, sizeof(log), "nats-%d.log", i);
    return h_spawn(&nodes[i].p, log, argv);
}

/* The nodes' warnings and errors: evidence when the cluster misbehaves. */
static void nats_warnings(void)
{
    for (int i = 0; i < NODES; i++) {
        char path[600];
        snprintf(path, sizeof(path), "%s/nats-%d.log", h_tmpdir(), i);
        char *text = h_slurp(path);
        for (char *line = text; line && *line;) {
            char *eol = strchr(line, '\n');
            size_t n = eol ? (size_t)(eol - line) : strlen(line);
            if (memmem(line, n, "[WRN]", 5) || memmem(line, n, "[ERR]", 5))
                fprintf(stderr, "node %c: %.*s\n", 'A' + i, (int)n, line);
            line += n + (eol != NULL);
        }
        free(text);
    }
}

/* The first replica of a stream or consumer (a JetStream "cluster" object)
 * that its leader, node i, does not count as current, written into why; 0 if
 * none or if node i does not lead it (only the leader tracks its replicas). */
static int laggard(int i, cJSON *cluster, const char *what, char *why, size_t cap)
{
    char me[8];
    snprintf(me, sizeof(me), "n%d", i);
    const char *leader = cJSON_GetStringValue(cJSON_GetObjectItem(cluster, "leader"));
    if (!leader || strcmp(leader, me))
        return 0;
    cJSON *r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(cluster, "replicas"))
    {
        if (!cJSON_IsTrue(cJSON_GetObjectItem(r, "current"))) {
            snprintf(why, cap, "%s: replica %s not current (lag %.0f)", what,
                     cJSON_GetStringValue(cJSON_GetObjectItem(r, "name")),
                     cJSON_GetNumberValue(cJSON_GetObjectItem(r, "lag")));
            return 1;
        }
    }
    return 0;
}

/* 1 when every stream and consumer replica is current as its leader sees it
 * (/jsz of each running node), else the first laggard is in why: printed
 * when the rehearsal loses items, to tell a lagging replica (seen after node
 * A's SIGKILL and restart: lag 7, /healthz ok) from other causes. */
static int replicas_current(char *why, size_t cap)
{
    static char buf[1 << 19];
    for (int i = 0; i < NODES; i++) {
        if (nodes[i].p.pid <= 0)
            continue;
        const char *body = NULL;
        if (http_get(nodes[i].http, "/jsz?accounts=true&streams=true&consumers=true", buf,
                     sizeof(buf)))
            body = strstr(buf, "\r\n\r\n");
        cJSON *doc = body ? cJSON_Parse(body + 4) : NULL, *a, *st, *co;
        int bad = !doc;
        if (bad)
            snprintf(why, cap, "node %c: no /jsz answer", 'A' + i);
        cJSON_ArrayForEach(a, cJSON_GetObjectItem(doc, "account_details"))
        {
            cJSON_ArrayForEach(st, cJSON_GetObjectItem(a, "stream_detail"))
            {
                char what[160];
                const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(st, "name"));
                snprintf(what, sizeof(what), "node %c: stream %s", 'A' + i, name ? name : "?");
                bad = bad || laggard(i, cJSON_GetObjectItem(st, "cluster"), what, why, cap);
                cJSON_ArrayForEach(co, cJSON_GetObjectItem(st, "consumer_detail"))
                {
                    const char *cn = cJSON_GetStringValue(cJSON_GetObjectItem(co, "name"));
                    snprintf(what, sizeof(what), "node %c: consumer %s of %s", 'A' + i,
                             cn ? cn : "?", name ? name : "?");
                    bad = bad || laggard(i, cJSON_GetObjectItem(co, "cluster"), what, why, cap);
                }
            }
        }
        cJSON_Delete(doc);
        if (bad)
            return 0;
    }
    return 1;
}

/* nats-server 2.9 names the durable consumers of an MQTT session
 * "<8 characters>_<nuid>", the 8 characters taken from the SHA-256 of the
 * client id (each of the first 8 bytes mod 62 into 0-9A-Za-z): read off /jsz.
 * test_sim_run_cluster sees sim run's consumers under it while it runs, so a
 * change of that naming fails the test rather than passing it. */
static void session_prefix(const char *client_id, char out[10])
{
    static const char digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)client_id, strlen(client_id), md);
    for (int i = 0; i < 8; i++)
        out[i] = digits[md[i] % 62];
    out[8] = '_';
    out[9] = '\0';
}

/* The consumers of client_id's MQTT session: the most that any running node
 * lists in /jsz; -1 when no node answers. */
static int session_consumers(const char *client_id)
{
    static char buf[1 << 19];
    char prefix[10];
    session_prefix(client_id, prefix);
    int most = -1;
    for (int i = 0; i < NODES; i++) {
        if (nodes[i].p.pid <= 0 ||
            !http_get(nodes[i].http, "/jsz?accounts=true&streams=true&consumers=true", buf,
                      sizeof(buf)))
            continue;
        const char *body = strstr(buf, "\r\n\r\n");
        cJSON *doc = body ? cJSON_Parse(body + 4) : NULL, *a, *st, *co;
        if (!doc)
            continue;
        int n = 0;
        cJSON_ArrayForEach(a, cJSON_GetObjectItem(doc, "account_details"))
        {
            cJSON_ArrayForEach(st, cJSON_GetObjectItem(a, "stream_detail"))
            {
                cJSON_ArrayForEach(co, cJSON_GetObjectItem(st, "consumer_detail"))
                {
                    const char *cn = cJSON_GetStringValue(cJSON_GetObjectItem(co, "name"));
                    n += cn && !strncmp(cn, prefix, 9);
                }
            }
        }
        cJSON_Delete(doc);
        if (n > most)
            most = n;
    }
    return most;
}

/* Polls session_consumers until it is at least (more) or at most (!more)
 * want, up to timeout_ms; returns the last count. */
static int session_consumers_wait(const char *client_id, int more, int want, int timeout_ms)
{
    int64_t end = h_now_ms() + timeout_ms;
    for (;;) {
        int n = session_consumers(client_id);
        if ((more ? n >= want : n >= 0 && n <= want) || h_now_ms() > end)
            return n;
        poll(NULL, 0, 200);
    }
}

/* Bounded poll of every running node's /healthz (JetStream current: the node
 * is in the cluster with a meta leader) and then an MQTT listener answering. */
static int cluster_wait(int timeout_ms)
{
    int64_t end = h_now_ms() + timeout_ms;
    char buf[4096];
    for (int i = 0; i < NODES; i++) {
        if (nodes[i].p.pid <= 0)
            continue;
        while (!http_get(nodes[i].http, "/healthz", buf, sizeof(buf)) || !strstr(buf, "\"ok\"")) {
            if (h_now_ms() > end) {
                print_message("node %c not current within %d ms; /healthz: %.300s\n", 'A' + i,
                              timeout_ms, buf);
                nats_warnings();
                return 0;
            }
            poll(NULL, 0, 100);
        }
        if (!h_port_wait(nodes[i].mqtt, (int)(end - h_now_ms())))
            return 0;
    }
    return 1;
}

/* The platform on node C; its persistent session lives in the cluster. */
static int platform_on(void **state)
{
    int64_t end = h_now_ms() + 30000;
    while (h_platform_start(nodes[2].mqtt) != 0) {
        h_platform_stop();
        if (h_now_ms() > end)
            return -1;
    }
    return 0;
}

/* sim run is the only subscriber while it rehearses: see test_sim_run_cluster. */
static int platform_off(void **state)
{
    h_platform_stop();
    return 0;
}

static int group_setup(void **state)
{
    if (system("command -v nats-server >/dev/null 2>&1") != 0) {
        print_message("nats-server is not installed (scripts/deps.sh installs it)\n");
        return -1;
    }
    base = h_free_port_range(4 * NODES + 4);
    if (base < 0)
        return -1;
    char routes[256] = "";
    for (int i = 0; i < NODES; i++) {
        nodes[i].client = base + i;
        nodes[i].route = base + NODES + i;
        nodes[i].mqtt = base + 2 * NODES + i;
        nodes[i].http = base + 3 * NODES + i;
        size_t l = strlen(routes);
        snprintf(routes + l, sizeof(routes) - l, "%snats-route://127.0.0.1:%d", i ? ", " : "",
                 nodes[i].route);
    }
    for (int i = 0; i < NODES; i++) {
        char text[1024], name[32];
        /* stream_replicas/consumer_replicas 3: with fewer, losing one node
         * leaves the MQTT session stream without quorum (docs/scaling.md). */
        snprintf(text, sizeof(text),
                 "server_name: n%d\nlisten: 127.0.0.1:%d\nhttp: 127.0.0.1:%d\n"
                 "jetstream { store_dir: \"%s/js%d\", max_memory_store: 64MB, "
                 "max_file_store: 512MB }\n"
                 "cluster { name: gwtest, listen: 127.0.0.1:%d, routes: [%s] }\n"
                 "mqtt { listen: 127.0.0.1:%d, stream_replicas: 3, consumer_replicas: 3, "
                 "ack_wait: \"5s\" }\n",
                 i, nodes[i].client, nodes[i].http, h_tmpdir(), i, nodes[i].route, routes,
                 nodes[i].mqtt);
        snprintf(name, sizeof(name), "n%d.conf", i);
        snprintf(nodes[i].conf, sizeof(nodes[i].conf), "%s", h_write_file(name, text));
    }
    for (int i = 0; i < NODES; i++)
        if (node_start(i))
            return -1;
    if (!cluster_wait(30000)) {
        print_message("the nats cluster did not form within 30 s\n");
        return -1;
    }
    return platform_on(state);
}

static int group_teardown(void **state)
{
    h_platform_stop();
    for (int i = 0; i < NODES; i++) {
        char meta[600];
        h_stop(&nodes[i].p);
        snprintf(meta, sizeof(meta), "%s/meta.inf", node_dir(i));
        if (access(meta, F_OK) == 0)
            print_message("node %c wrote meta.inf in its working folder\n", 'A' + i);
    }
    h_cleanup();
    return 0;
}

/* ---- the gateway ---- */

/* How long a stopping gateway may drain its outbox (gateway.shutdown_drain). */
static const char *drain_for = "1s";

static const char *gw_config(const char *id, const int *ports, int nports)
{
    char servers[256] = "", text[4096], name[64];
    for (int i = 0; i < nports; i++) {
        size_t l = strlen(servers);
        snprintf(servers + l, sizeof(servers) - l, "%stcp://127.0.0.1:%d", i ? ", " : "", ports[i]);
    }
    snprintf(text, sizeof(text),
             "gateway:\n  id: %s\n  data_dir: %s/%s\n  shutdown_drain: %s\n  admin_socket: \"\"\n"
             "store:\n  commit_window: 2ms\n"
             "uplink:\n  servers: [%s]\n  topic_prefix: t\n  backoff_min: 100ms\n"
             "  backoff_max: 1s\n  connect_timeout: 5s\n  keepalive: 3s\n  batch: 50\n"
             "devices:\n"
             "  - {id: syn-1, protocol: synthetic, rate: 300, total: %d, square: %d}\n"
             "  - {id: syn-2, protocol: synthetic, rate: 300, total: %d, square: %d}\n"
             "rules:\n  - id: lvl\n    kind: threshold\n    metric: level\n"
             "    levels: {red: {raise: 50, clear: 10}}\n",
             id, h_tmpdir(), id, drain_for, servers, PER_DEVICE, SQUARE, PER_DEVICE, SQUARE);
    snprintf(name, sizeof(name), "%s.yaml", id);
    return h_write_file(name, text);
}

/* What the platform holds of one gateway, de-duplicated by item id. */
struct tally {
    const char *gw;
    long readings, alarms, dups;
    long synthetic[DEVICES]; /* distinct synthetic values per device */
    int order_broken;        /* a device's seq went backwards (first copies) */
    int overtaken;           /* a reading arrived before an alarm committed before it */
    int any_order;           /* order at the subscriber is not checked (see (b)) */
    char why[256];
};

/* Item seqs start from the clock (a fresh data dir starts its sequence
 * there), far above any bitmap: index them from the first seq seen of each
 * gateway, with room below it for items that arrive out of order. -1 when
 * too many gateways. */
static long seq_slot(const char *gw, long seq)
{
    static struct {
        char gw[32];
        long base;
    } b[8];
    static int n;
    int i = 0;
    while (i < n && strcmp(b[i].gw, gw))
        i++;
    if (i == n) {
        if (n == 8)
            return -1;
        snprintf(b[n].gw, sizeof(b[n].gw), "%s", gw);
        b[n++].base = seq - (1 << 18);
    }
    return seq - b[i].base;
}

static int dev_index(const char *dev)
{
    return dev && !strncmp(dev, "syn-", 4) ? atoi(dev + 4) - 1 : -1;
}

static void tally(struct tally *t)
{
    const char *gw = t->gw;
    int any_order = t->any_order; /* the caller's setting, not a count */
    memset(t, 0, sizeof(*t));
    t->gw = gw;
    t->any_order = any_order;
    size_t n = h_platform_count();
    /* seq slots < 2^20 here (seq_slot): a bitmap of first copies. */
    static unsigned char seen[1 << 20];
    memset(seen, 0, sizeof(seen));
    long last_seq[2][DEVICES];
    memset(last_seq, 0, sizeof(last_seq));
    long max_reading_seq = 0;
    char prefix[80];
    snprintf(prefix, sizeof(prefix), "t/%s/", gw);
    for (size_t i = 0; i < n; i++) {
        h_msg m;
        if (h_platform_get(i, &m))
            break;
        int alarms = strstr(m.topic, "/alarms") != NULL;
        if (strncmp(m.topic, prefix, strlen(prefix)) ||
            (!alarms && !strstr(m.topic, "/readings"))) {
            h_msg_free(&m);
            continue;
        }
        cJSON *doc = cJSON_Parse(m.payload), *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItem(doc, "items"))
        {
            long seq = seq_slot(gw, (long)cJSON_GetNumberValue(cJSON_GetObjectItem(it, "seq")));
            int d = dev_index(cJSON_GetStringValue(cJSON_GetObjectItem(it, "device")));
            if (seq <= 0 || seq >= (1 << 20) || d < 0 || d >= DEVICES)
                continue;
            if (seen[seq]) {
                t->dups++;
                continue;
            }
            seen[seq] = 1;
            if (seq < last_seq[alarms][d] && !t->order_broken) {
                t->order_broken = 1;
                snprintf(t->why, sizeof(t->why), "syn-%d %s: seq %ld after %ld", d + 1,
                         alarms ? "alarms" : "readings", seq, last_seq[alarms][d]);
            }
            last_seq[alarms][d] = seq;
            if (alarms) {
                t->alarms++;
                if (seq < max_reading_seq && !t->overtaken) {
                    /* Allowed only for readings already in flight when the
                     * alarm was committed: at most one window (32 x 50). */
                    if (max_reading_seq - seq > 32 * 50 * DEVICES) {
                        t->overtaken = 1;
                        snprintf(t->why, sizeof(t->why),
                                 "alarm seq %ld arrived after reading seq %ld", seq,
                                 max_reading_seq);
                    }
                }
            } else {
                t->readings++;
                if (seq > max_reading_seq)
                    max_reading_seq = seq;
                cJSON *metric = cJSON_GetObjectItem(it, "metric");
                if (!strcmp(cJSON_GetStringValue(metric), "synthetic"))
                    t->synthetic[d]++;
            }
        }
        cJSON_Delete(doc);
        h_msg_free(&m);
    }
}

/* Every synthetic reading of both devices, and every alarm transition: a
 * level flip every SQUARE readings starting at 0 (raise on 100, clear on 0). */
#define FLIPS (PER_DEVICE / SQUARE)
#define WANT_ALARMS (DEVICES * (FLIPS - 1))

static int all_there(void *ctx)
{
    struct tally *t = ctx;
    tally(t);
    for (int d = 0; d < DEVICES; d++)
        if (t->synthetic[d] < PER_DEVICE)
            return 0;
    return t->alarms >= WANT_ALARMS;
}

static int some_there(void *ctx)
{
    struct tally *t = ctx;
    tally(t);
    return t->synthetic[0] + t->synthetic[1] >= PER_DEVICE / 2;
}

static void check_complete(struct tally *t, h_proc *gw, int timeout_ms)
{
    if (!h_platform_wait(all_there, t, timeout_ms)) {
        h_dump_log(gw);
        fail_msg("%s: readings %ld/%ld + %ld/%ld, alarms %ld/%d", t->gw, t->synthetic[0],
                 (long)PER_DEVICE, t->synthetic[1], (long)PER_DEVICE, t->alarms, WANT_ALARMS);
    }
    print_message("%s: %ld readings, %ld alarm transitions, %ld duplicates dropped\n", t->gw,
                  t->readings, t->alarms, t->dups);
    if (!t->any_order && (t->order_broken || t->overtaken))
        fail_msg("%s: %s", t->gw, t->why);
    assert_int_equal(t->alarms, WANT_ALARMS);
}

/* ---- (a) node A killed mid-stream ---- */

static void test_kill_node_a(void **state)
{
    int ports[NODES] = {nodes[0].mqtt, nodes[1].mqtt, nodes[2].mqtt};
    h_proc gw = {0};
    struct tally t = {.gw = "gw-kill"};
    assert_int_equal(h_gateway_start(&gw, gw_config(t.gw, ports, NODES)), 0);
    char want[96];
    snprintf(want, sizeof(want), "connected to tcp://127.0.0.1:%d", nodes[0].mqtt);
    assert_true(h_log_wait(&gw, want, 20000));
    assert_true(h_platform_wait(some_there, &t, 20000));
    int64_t killed = h_now_ms();
    h_signal(&nodes[0].p, SIGKILL);
    h_wait(&nodes[0].p, 5000);
    nodes[0].p.pid = 0;
    print_message("node A killed with %ld readings at the platform\n", t.readings);
    check_complete(&t, &gw, 90000);
    print_message("everything arrived %lld ms after the kill\n", (long long)(h_now_ms() - killed));
    assert_true(h_log_contains(&gw, "failing over from"));
    assert_false(h_log_contains(&gw, "client id 'gw-kill': 3 sessions"));
    assert_int_equal(h_stop(&gw), 0);

    /* Node A back for the next test. */
    assert_int_equal(node_start(0), 0);
    assert_true(cluster_wait(60000));
}

/* ---- (a') the same rehearsed with `sim run` against the cluster ---- */

/* sim run plays the platform on nodes C, A, B (a persistent session, which
 * it removes when it ends: no consumer of it is left in the cluster) and
 * starts the gateway (nodes B, C, A): items cross the cluster. Its verdict
 * and JSON report give the gateway's delivery: every item, none missing. No
 * node is killed here (test_kill_node_a does that): a second kill and
 * restart in this binary was seen, in 2 of 4 runs, to leave the restarted
 * node not current within a minute, failing the following tests.
 *
 * The harness's platform is disconnected meanwhile (platform_off): with it
 * subscribed too, nats-server 2.9.10 at times never delivered to sim run's
 * subscription messages the cluster had acknowledged (2 of 6 runs under
 * load, 1 to 12 whole messages). Each QoS 1 subscription is a replicated
 * consumer of the interest-retention stream $MQTT_msgs; per /jsz sim run's
 * consumer had delivered exactly what sim run received, nothing pending or
 * redelivered, while the stream had taken that many messages more
 * (docs/scaling.md). With sim run the only subscriber: 0 of 8 under the
 * same load. */
static void test_sim_run_cluster(void **state)
{
    int ports[NODES] = {nodes[1].mqtt, nodes[2].mqtt, nodes[0].mqtt};
    struct tally t = {.gw = "gw-simrun"};
    /* sim run stops the gateway at the end of the run: what is still in its outbox
     * then (telemetry behind alarms on a loaded box) must be delivered, not cut off
     * after 1 s and counted missing. sim run waits 15 s for the gateway to exit. */
    drain_for = "12s";
    gw_config(t.gw, ports, NODES); /* gw-simrun.yaml, next to the scenario */
    drain_for = "1s";
    char text[1024], report[512], bport[16];
    snprintf(text, sizeof(text),
             "name: cluster rehearsal\n"
             "devices:\n  - {id: idle-1, port: %d, registers: [{addr: 0, value: 1}]}\n"
             "platform: {broker: \"tcp://127.0.0.1:%d,tcp://127.0.0.1:%d,tcp://127.0.0.1:%d\",\n"
             "           topic_prefix: t, gateway_id: gw-simrun}\n"
             "gateway: {config: gw-simrun.yaml}\nduration: 25s\n",
             h_free_port(), nodes[2].mqtt, nodes[0].mqtt, nodes[1].mqtt);
    const char *scn = h_write_file("cluster-run.yaml", text);
    snprintf(report, sizeof(report), "%s/cluster-run.json", h_tmpdir());
    /* One port cannot move three nodes: refused, not half-applied. */
    snprintf(bport, sizeof(bport), "%d", h_free_port());
    h_proc bad = {0};
    char *a0[] = {(char *)h_bin("sim"), "run", (char *)scn, "--broker-port", bport, NULL};
    assert_int_equal(h_spawn(&bad, "sim-broker-port.log", a0), 0);
    assert_int_equal(h_wait(&bad, 10000), 2);
    assert_true(h_log_contains(&bad, "it lists several nodes"));

    h_proc sim = {0};
    char *argv[] = {(char *)h_bin("sim"),
                    "run",
                    (char *)scn,
                    "--gateway",
                    (char *)h_bin("gateway"),
                    "--report",
                    report,
                    "--progress",
                    "5",
                    "--keep",
                    NULL};
    assert_int_equal(h_spawn(&sim, "sim-cluster.log", argv), 0);
    /* Its persistent session: durable consumers in the cluster while it runs
     * (two for its filter ending in '#'), none once it has ended. */
    char id[32];
    snprintf(id, sizeof(id), "sim-run-%ld", (long)sim.pid);
    int during = session_consumers_wait(id, 1, 1, 20000);
    int rc = h_wait(&sim, 60000);
    int after = session_consumers_wait(id, 0, 0, 5000);
    print_message("%s: %d consumers during the run, %d after it\n", id, during, after);
    char kept[256], path[400];
    h_kept_dir(&sim, kept, sizeof(kept));
    snprintf(path, sizeof(path), "%s/gateway.log", kept);
    char *log = h_slurp(sim.log), *gwlog = h_slurp(path);
    h_remove_dir(kept);
    /* Nothing between the gateway's first and last item seq is missing, and
     * at least every synthetic reading and alarm transition is there. */
    int ok = rc == 0 && log && strstr(log, "gateway gw-simrun: ") && strstr(log, ", 0 missing, ");
    if (!ok) {
        fprintf(stderr, "---- sim run ----\n%s\n---- its gateway ----\n%s\n----\n", log,
                gwlog ? gwlog : "(none)");
        nats_warnings();
        char why[256] = "every replica current";
        replicas_current(why, sizeof(why));
        fprintf(stderr, "replicas: %s\n", why);
    }
    free(gwlog);
    free(log);
    assert_int_equal(rc, 0);
    assert_true(ok);
    assert_true(during >= 1);
    assert_int_equal(after, 0);
    char *json = h_slurp(report);
    cJSON *root = cJSON_Parse(json),
          *g = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "gateways"), 0);
    free(json);
    assert_non_null(g);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(g, "gw")), "gw-simrun");
    double items = cJSON_GetNumberValue(cJSON_GetObjectItem(g, "items"));
    print_message("sim run against the cluster: %.0f items delivered, %.0f "
                  "duplicates\n",
                  items, cJSON_GetNumberValue(cJSON_GetObjectItem(g, "duplicates")));
    assert_true(items >= DEVICES * PER_DEVICE + WANT_ALARMS);
    assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(g, "missing")) == 0);
    cJSON_Delete(root);
}

/* ---- (b) a rolling restart of every node ---- */

static void test_rolling_restart(void **state)
{
    int ports[NODES] = {nodes[0].mqtt, nodes[1].mqtt, nodes[2].mqtt};
    h_proc gw = {0};
    /* The subscriber's own node (C) restarts too: the cluster then redelivers
     * what it had not acknowledged after newer messages, so the order at the
     * subscriber is the broker's, not the gateway's. Completeness is checked
     * here; order and alarms-first are checked in (a), where C stays up. */
    struct tally t = {.gw = "gw-roll", .any_order = 1};
    assert_int_equal(h_gateway_start(&gw, gw_config(t.gw, ports, NODES)), 0);
    assert_true(h_platform_wait(some_there, &t, 30000));
    for (int i = 0; i < NODES; i++) {
        int64_t t0 = h_now_ms();
        h_stop(&nodes[i].p); /* nats-server exits non-zero on SIGTERM in 2.9 */
        nodes[i].p.pid = 0;
        assert_int_equal(node_start(i), 0);
        assert_true(cluster_wait(60000));
        print_message("node %c restarted and current in %lld ms\n", 'A' + i,
                      (long long)(h_now_ms() - t0));
    }
    check_complete(&t, &gw, 90000);
    assert_int_equal(h_stop(&gw), 0);
}

/* ---- (c) two independent mosquittos: failover without a cluster ---- */

/* Distinct "<gw>-<seq>" item ids in a mosquitto_sub log (one payload per line). */
static long ids_in_file(const char *path, const char *gw, unsigned char *seen, size_t cap)
{
    char *text = h_slurp(path);
    long n = 0;
    char key[80];
    int kl = snprintf(key, sizeof(key), "\"id\":\"%s-", gw);
    for (char *p = text; p && (p = strstr(p, key)); p += kl) {
        long seq = seq_slot(gw, strtol(p + kl, NULL, 10));
        if (seq > 0 && (size_t)seq < cap && !seen[seq]) {
            seen[seq] = 1;
            n++;
        }
    }
    free(text);
    return n;
}

/* A subscriber is listening once a probe published to its broker shows up
 * in its output (bounded: 50 probes, 200 ms apart). */
static int sub_ready(int port, h_proc *sub)
{
    char cmd[160];
    snprintf(cmd, sizeof(cmd),
             "mosquitto_pub -V mqttv311 -p %d -q 1 -t t/gw-pair/probe -m probe >/dev/null 2>&1",
             port);
    for (int i = 0; i < 50; i++) {
        if (system(cmd) == 0 && h_log_wait(sub, "probe", 200))
            return 1;
    }
    return 0;
}

static void test_two_mosquittos(void **state)
{
    /* The cluster's platform subscriber is not involved here: a second
     * platform listens to each mosquitto with mosquitto_sub. */
    int p1 = h_free_port_range(2);
    assert_true(p1 > 0);
    int ports[2] = {p1, p1 + 1};
    h_proc m1 = {0}, m2 = {0}, sub1 = {0}, sub2 = {0}, gw = {0};
    assert_int_equal(h_broker_start(&m1, ports[0]), 0);
    assert_int_equal(h_broker_start(&m2, ports[1]), 0);
    char port1[16], port2[16];
    snprintf(port1, sizeof(port1), "%d", ports[0]);
    snprintf(port2, sizeof(port2), "%d", ports[1]);
    char *a1[] = {"mosquitto_sub", "-V", "mqttv311",    "-p", port1, "-q", "1", "-c", "-i",
                  "platform-1",    "-t", "t/gw-pair/#", NULL};
    char *a2[] = {"mosquitto_sub", "-V", "mqttv311",    "-p", port2, "-q", "1", "-c", "-i",
                  "platform-2",    "-t", "t/gw-pair/#", NULL};
    assert_int_equal(h_spawn(&sub1, "sub1.log", a1), 0);
    assert_int_equal(h_spawn(&sub2, "sub2.log", a2), 0);
    assert_true(sub_ready(ports[0], &sub1));
    assert_true(sub_ready(ports[1], &sub2));

    const char *cfg = gw_config("gw-pair", ports, 2);
    assert_int_equal(h_gateway_start(&gw, cfg), 0);
    static unsigned char seen1[1 << 20], seen2[1 << 20];
    long at1 = 0;
    for (int64_t end = h_now_ms() + 20000; h_now_ms() < end && at1 < PER_DEVICE / 2;
         poll(NULL, 0, 50)) {
        memset(seen1, 0, sizeof(seen1));
        at1 = ids_in_file(sub1.log, "gw-pair", seen1, sizeof(seen1));
    }
    assert_true(at1 >= PER_DEVICE / 2);
    h_signal(&m1, SIGKILL);
    h_wait(&m1, 5000);
    m1.pid = 0;
    /* The gateway moves to broker 2 and empties its outbox there. */
    char want[96];
    snprintf(want, sizeof(want), "connected to tcp://127.0.0.1:%d", ports[1]);
    assert_true(h_log_wait(&gw, want, 20000));
    char db[512];
    snprintf(db, sizeof(db), "%s/gw-pair/outbox.db", h_tmpdir());
    long total = 0, left = -1;
    for (int64_t end = h_now_ms() + 30000; h_now_ms() < end; poll(NULL, 0, 100)) {
        memset(seen2, 0, sizeof(seen2));
        long got2 = ids_in_file(sub2.log, "gw-pair", seen2, sizeof(seen2));
        left = h_outbox_rows(db, "outbox_tele") + h_outbox_rows(db, "outbox_prio");
        /* Everything made (2 x PER_DEVICE synthetic + level readings + alarms)
         * and acknowledged by one broker or the other. */
        memset(seen1, 0, sizeof(seen1));
        at1 = ids_in_file(sub1.log, "gw-pair", seen1, sizeof(seen1));
        total = 0;
        for (size_t s = 1; s < sizeof(seen1); s++)
            total += seen1[s] | seen2[s];
        if (left == 0 && total >= DEVICES * (PER_DEVICE + FLIPS) + WANT_ALARMS && got2 > 0)
            break;
    }
    long only2 = 0;
    for (size_t s = 1; s < sizeof(seen1); s++)
        only2 += seen2[s] && !seen1[s];
    print_message("independent brokers: subscriber of broker 1 got %ld items, %ld more went only "
                  "to broker 2, %ld in all, outbox left %ld\n",
                  at1, only2, total, left);
    /* What is true: the outbox is empty (broker 2 acknowledged the rest), the
     * union of both brokers is complete, and the subscriber of the first
     * broker never gets what broker 2 acknowledged (the gateway does not
     * go back by itself, and broker 2 does not forward): independent
     * brokers need a platform subscribed to each. */
    assert_int_equal(left, 0);
    assert_true(total >= DEVICES * (PER_DEVICE + FLIPS) + WANT_ALARMS);
    assert_true(only2 > 0);
    assert_int_equal(h_stop(&gw), 0);
    h_stop(&sub1);
    h_stop(&sub2);
    h_stop(&m1);
    h_stop(&m2);
}

/* ---- two gateways with one client id ---- */

static void test_client_id_conflict(void **state)
{
    int ports[1] = {nodes[1].mqtt};
    h_proc a = {0}, b = {0};
    char text[2048];
    for (int i = 0; i < 2; i++) {
        char name[32];
        snprintf(text, sizeof(text),
                 "gateway:\n  id: gw-twin%d\n  data_dir: %s/twin%d\n  admin_socket: \"\"\n"
                 "uplink:\n  servers: [tcp://127.0.0.1:%d]\n  client_id: twin\n"
                 "  topic_prefix: t\n  backoff_min: 100ms\n  backoff_max: 2s\n"
                 "  flap_window: 5s\n",
                 i, h_tmpdir(), i, ports[0]);
        snprintf(name, sizeof(name), "twin%d.yaml", i);
        assert_int_equal(h_gateway_start(i ? &b : &a, h_write_file(name, text)), 0);
    }
    /* Each connect takes the id from the other: the sessions are short, the
     * backoff grows, and both report it. */
    assert_true(h_log_wait(&a, "another client is probably using this id", 40000) ||
                h_log_contains(&b, "another client is probably using this id"));
    assert_int_equal(h_stop(&a), 0);
    assert_int_equal(h_stop(&b), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill_node_a),
        cmocka_unit_test_setup_teardown(test_sim_run_cluster, platform_off, platform_on),
        cmocka_unit_test(test_rolling_restart),
        cmocka_unit_test(test_client_id_conflict),
        cmocka_unit_test(test_two_mosquittos),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
