#include "tests/integration/harness.h"

#include <MQTTAsync.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sqlite3.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char tmpdir[256];
/* Folders `sim run --keep` left, removed by h_cleanup (also after a failed test). */
static char kept_dirs[8][256];
static int nkept;

int64_t h_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *h_tmpdir(void)
{
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/gwtest.XXXXXX");
        if (!mkdtemp(tmpdir)) {
            perror("mkdtemp");
            abort();
        }
    }
    return tmpdir;
}

void h_cleanup(void)
{
    if (tmpdir[0] && !getenv("KEEP_TMP")) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "cleanup of %s failed\n", tmpdir);
    }
    tmpdir[0] = '\0';
    for (int i = 0; i < nkept; i++)
        h_remove_dir(kept_dirs[i]);
    nkept = 0;
}

const char *h_bin(const char *name)
{
    static char paths[4][256];
    static int slot;
    const char *b = getenv("BUILD");
    char *p = paths[slot++ % 4];
    snprintf(p, 256, "%s/%s", b && *b ? b : "build", name);
    return p;
}

int h_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) ||
        getsockname(fd, (struct sockaddr *)&a, &len)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static int port_free_both(int port)
{
    int ok = 1;
    for (int type = SOCK_STREAM; ok && type <= SOCK_DGRAM; type++) {
        int fd = socket(AF_INET, type, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        if (fd >= 0)
            close(fd);
    }
    return ok;
}

int h_free_port_range(int n)
{
    unsigned seed = (unsigned)getpid() ^ (unsigned)h_now_ms();
    for (int tries = 0; tries < 200; tries++) {
        seed = seed * 1103515245u + 12345u;
        int base = 20000 + (int)((seed >> 8) % (unsigned)(12000 - n));
        int ok = 1;
        for (int i = 0; i < n && ok; i++)
            ok = port_free_both(base + i);
        if (ok)
            return base;
    }
    return -1;
}

const char *h_write_file(const char *name, const char *text)
{
    static char paths[8][512];
    static int slot;
    char *p = paths[slot++ % 8];
    snprintf(p, 512, "%s/%s", h_tmpdir(), name);
    FILE *f = fopen(p, "w");
    if (!f)
        return NULL;
    fputs(text, f);
    fclose(f);
    return p;
}

int h_spawn(h_proc *p, const char *logname, char *const argv[])
{
    snprintf(p->log, sizeof(p->log), "%s/%s", h_tmpdir(), logname);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        setpgid(0, 0);
        execvp(argv[0], argv);
        _exit(127);
    }
    p->pid = p->started = pid;
    return 0;
}

int h_signal(h_proc *p, int sig)
{
    return p->pid > 0 ? kill(p->pid, sig) : -1;
}

int h_wait(h_proc *p, int timeout_ms)
{
    if (p->pid <= 0)
        return -1;
    int64_t end = mono_ms() + timeout_ms;
    int st;
    for (;;) {
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid) {
            p->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        if (mono_ms() >= end) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &st, 0);
            p->pid = 0;
            return -1;
        }
        /* Child exit has no fd to wait on here; poll the status briefly. */
        poll(NULL, 0, 10);
    }
}

int h_stop(h_proc *p)
{
    if (p->pid <= 0)
        return 0;
    kill(p->pid, SIGTERM);
    return h_wait(p, 10000);
}

int h_log_contains(h_proc *p, const char *text)
{
    FILE *f = fopen(p->log, "r");
    if (!f)
        return 0;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof(line), f))
        found = strstr(line, text) != NULL;
    fclose(f);
    return found;
}

int h_log_wait(h_proc *p, const char *text, int timeout_ms)
{
    int64_t end = mono_ms() + timeout_ms;
    while (mono_ms() < end) {
        if (h_log_contains(p, text))
            return 1;
        poll(NULL, 0, 20); /* the log is a file: re-read it at a short interval */
    }
    return h_log_contains(p, text);
}

int h_port_wait(int port, int timeout_ms)
{
    int64_t end = mono_ms() + timeout_ms;
    while (mono_ms() < end) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        close(fd);
        if (ok)
            return 1;
        poll(NULL, 0, 20);
    }
    return 0;
}

int h_broker_start(h_proc *p, int port)
{
    return h_broker_start_ex(p, port, NULL, NULL);
}

int h_broker_start_ex(h_proc *p, int port, const char *tag, const char *extra)
{
    char conf[2048], dir[512], name[64], log[64];
    if (tag) {
        snprintf(dir, sizeof(dir), "%s/%s", h_tmpdir(), tag);
        mkdir(dir, 0700);
        snprintf(name, sizeof(name), "mosquitto-%s.conf", tag);
        snprintf(log, sizeof(log), "mosquitto-%s.log", tag);
    } else {
        snprintf(dir, sizeof(dir), "%s", h_tmpdir());
        snprintf(name, sizeof(name), "mosquitto-%d.conf", port);
        snprintf(log, sizeof(log), "mosquitto.log");
    }
    snprintf(conf, sizeof(conf),
             "listener %d 127.0.0.1\nallow_anonymous true\npersistence true\n"
             "persistence_location %s/\nautosave_interval 0\nmax_queued_messages 0\n"
             "max_inflight_messages 0\nlog_dest stdout\n%s%s",
             port, dir, extra ? extra : "", getuid() == 0 ? "user root\n" : "");
    /* Line-buffered: tests read its log (who connected, as whom) while it runs. */
    char *argv[] = {"stdbuf", "-oL", "mosquitto", "-c", (char *)h_write_file(name, conf), NULL};
    if (h_spawn(p, log, argv))
        return -1;
    return h_port_wait(port, 10000) ? 0 : -1;
}

int h_recorder_start(h_proc *p, int port, const char *logname, const char *const *args)
{
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    /* Line-buffered, or its lines wait for the buffer to fill; -d prints the SUBACK. */
    char *argv[32] = {"stdbuf", "-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", portstr, "-q",
                      "1",      "-d"};
    int n = 10;
    for (; args && args[n - 10] && n < 31; n++)
        argv[n] = (char *)args[n - 10];
    argv[n] = NULL;
    if (h_spawn(p, logname, argv))
        return -1;
    if (h_log_wait(p, "SUBACK", 10000))
        return 0;
    h_dump_log(p);
    return -1;
}

int h_publish(int port, const char *topic, const void *payload, size_t len, const char *opts)
{
    /* From a file: any byte, any length, no shell quoting of the payload. */
    const char *path = h_write_file("h-publish.bin", "");
    FILE *f = path ? fopen(path, "wb") : NULL;
    if (!f)
        return -1;
    size_t put = fwrite(payload, 1, len, f);
    if (fclose(f) || put != len)
        return -1;
    char cmd[2048], out[256];
    snprintf(cmd, sizeof(cmd), "mosquitto_pub -h 127.0.0.1 -p %d -q 1 -t '%s' -f %s %s", port,
             topic, path, opts ? opts : "");
    return h_run(cmd, out, sizeof(out));
}

int h_config_head(char *out, size_t cap, const char *id, int port)
{
    return snprintf(out, cap,
                    "gateway:\n  id: %s\n  data_dir: %s/data\n  shutdown_drain: 2s\n"
                    "store:\n  commit_window: 2ms\n"
                    "uplink:\n  uri: tcp://127.0.0.1:%d\n  backoff_min: 100ms\n"
                    "  backoff_max: 300ms\n",
                    id, h_tmpdir(), port);
}

int h_gateway_with(h_proc *gw, const char *id, int broker_port, int port, const char *fmt, ...)
{
    char text[8192];
    int n = h_config_head(text, sizeof(text), id, broker_port);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(text + n, sizeof(text) - (size_t)n, fmt, ap);
    va_end(ap);
    if (m < 0 || (size_t)(n + m) >= sizeof(text))
        return -1;
    return h_gateway_listening(gw, text, port);
}

int h_gateway_listening(h_proc *gw, const char *config_text, int port)
{
    if (h_gateway_start(gw, h_write_file("gateway.yaml", config_text)) == 0 &&
        h_log_wait(gw, "listening for platform commands", 10000) &&
        (port <= 0 || h_port_wait(port, 5000)))
        return 0;
    h_dump_log(gw);
    return -1;
}

int h_sim_start(h_proc *p, const char *scenario_path, const char *extra_arg)
{
    char *argv[] = {(char *)h_bin("sim"),  "modbus",          "--scenario",
                    (char *)scenario_path, (char *)extra_arg, NULL};
    if (h_spawn(p, "sim.log", argv))
        return -1;
    return h_log_wait(p, "sim: ready", 15000) ? 0 : -1;
}

int h_gateway_start(h_proc *p, const char *config_path)
{
    static int runs;
    char logname[32];
    snprintf(logname, sizeof(logname), "gateway-%d.log", ++runs);
    char *argv[] = {(char *)h_bin("gateway"), "-c", (char *)config_path, NULL};
    if (h_spawn(p, logname, argv))
        return -1;
    return h_log_wait(p, "started from", 15000) ? 0 : -1;
}

/* ---- Platform subscriber ---- */

static pthread_mutex_t pmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pcv = PTHREAD_COND_INITIALIZER;
static h_msg *msgs;
static size_t nmsgs, capmsgs;
static MQTTAsync pclient;
static int pconnected;

static int on_msg(void *ctx, char *topic, int tlen, MQTTAsync_message *m)
{
    pthread_mutex_lock(&pmu);
    if (nmsgs == capmsgs) {
        capmsgs = capmsgs ? capmsgs * 2 : 1024;
        msgs = realloc(msgs, capmsgs * sizeof(*msgs));
    }
    h_msg *x = &msgs[nmsgs++];
    x->topic = strdup(topic);
    x->payload = malloc((size_t)m->payloadlen + 1);
    memcpy(x->payload, m->payload, (size_t)m->payloadlen);
    x->payload[m->payloadlen] = '\0';
    x->at_ms = h_now_ms();
    pthread_cond_broadcast(&pcv);
    pthread_mutex_unlock(&pmu);
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    return 1;
}

static void on_sub(void *ctx, MQTTAsync_successData *r)
{
    pthread_mutex_lock(&pmu);
    pconnected = 1;
    pthread_cond_broadcast(&pcv);
    pthread_mutex_unlock(&pmu);
}

static void on_conn(void *ctx, char *cause)
{
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.onSuccess = on_sub;
    MQTTAsync_subscribe(pclient, "#", 1, &ro);
}

int h_peers_start(h_proc *broker, int *port)
{
    *port = h_free_port();
    if (*port < 0 || h_broker_start(broker, *port))
        return -1;
    return h_platform_start(*port);
}

int h_peers_record(h_proc *broker, int *port, h_proc *sub, const char *const *args)
{
    *port = h_free_port_range(1);
    if (*port < 0 || h_broker_start(broker, *port))
        return -1;
    return h_recorder_start(sub, *port, "sub.log", args);
}

h_bed *h_bed_new(int start, const char *const *args)
{
    h_bed *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    if (start ? h_peers_record(&b->broker, &b->port, &b->sub, args)
              : (b->port = h_free_port_range(1)) < 0) {
        h_bed_free(b);
        return NULL;
    }
    return b;
}

int h_bed_free(h_bed *b)
{
    if (!b)
        return 0;
    int status = h_peers_stop(&b->gw, &b->sub, &b->broker);
    free(b);
    return status;
}

int h_bed_teardown(void **state)
{
    int status = h_bed_free(*state);
    *state = NULL;
    if (status)
        fprintf(stderr, "gateway exit status %d\n", status);
    return status == 0 ? 0 : -1;
}

int h_peers_stop(h_proc *gw, h_proc *other, h_proc *broker)
{
    int status = h_stop(gw);
    if (status)
        h_dump_log(gw); /* the evidence, before h_cleanup removes it */
    if (other)
        h_stop(other);
    h_platform_stop();
    h_stop(broker);
    h_cleanup();
    return status;
}

int h_platform_start(int port)
{
    char uri[64];
    snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", port);
    MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
    co.maxBufferedMessages = 1000;
    if (MQTTAsync_createWithOptions(&pclient, uri, "test-platform", MQTTCLIENT_PERSISTENCE_NONE,
                                    NULL, &co) != MQTTASYNC_SUCCESS)
        return -1;
    MQTTAsync_setCallbacks(pclient, NULL, NULL, on_msg, NULL);
    MQTTAsync_setConnected(pclient, NULL, on_conn);
    MQTTAsync_connectOptions o = MQTTAsync_connectOptions_initializer;
    o.cleansession = 0; /* a persistent session: nothing is missed across a broker restart */
    o.MQTTVersion = MQTTVERSION_3_1_1; /* no fall-back to 3.1, which nats-server refuses */
    o.automaticReconnect = 1;
    o.minRetryInterval = 1;
    o.maxRetryInterval = 1;
    o.keepAliveInterval = 5;
    if (MQTTAsync_connect(pclient, &o) != MQTTASYNC_SUCCESS)
        return -1;
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    pthread_mutex_lock(&pmu);
    while (!pconnected && pthread_cond_timedwait(&pcv, &pmu, &dl) == 0) {
    }
    int ok = pconnected;
    pthread_mutex_unlock(&pmu);
    return ok ? 0 : -1;
}

void h_platform_stop(void)
{
    if (pclient) {
        MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
        d.timeout = 1000;
        MQTTAsync_disconnect(pclient, &d);
        for (int i = 0; i < 100 && MQTTAsync_isConnected(pclient); i++)
            poll(NULL, 0, 10);
        MQTTAsync_destroy(&pclient);
        pclient = NULL;
    }
    pthread_mutex_lock(&pmu);
    for (size_t i = 0; i < nmsgs; i++) {
        free(msgs[i].topic);
        free(msgs[i].payload);
    }
    free(msgs);
    msgs = NULL;
    nmsgs = capmsgs = 0;
    pconnected = 0;
    pthread_mutex_unlock(&pmu);
}

size_t h_platform_count(void)
{
    pthread_mutex_lock(&pmu);
    size_t n = nmsgs;
    pthread_mutex_unlock(&pmu);
    return n;
}

int h_platform_get(size_t i, h_msg *out)
{
    int rc = -1;
    pthread_mutex_lock(&pmu);
    if (i < nmsgs) {
        out->topic = strdup(msgs[i].topic);
        out->payload = strdup(msgs[i].payload);
        out->at_ms = msgs[i].at_ms;
        rc = 0;
    }
    pthread_mutex_unlock(&pmu);
    return rc;
}

void h_msg_free(h_msg *m)
{
    free(m->topic);
    free(m->payload);
}

int h_platform_wait(int (*pred)(void *ctx), void *ctx, int timeout_ms)
{
    int64_t end = mono_ms() + timeout_ms;
    for (;;) {
        if (pred(ctx))
            return 1;
        int64_t left = end - mono_ms();
        if (left <= 0)
            return 0;
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        int64_t step = left < 200 ? left : 200;
        dl.tv_nsec += step * 1000000L;
        dl.tv_sec += dl.tv_nsec / 1000000000L;
        dl.tv_nsec %= 1000000000L;
        pthread_mutex_lock(&pmu);
        size_t before = nmsgs;
        while (nmsgs == before && pthread_cond_timedwait(&pcv, &pmu, &dl) == 0) {
        }
        pthread_mutex_unlock(&pmu);
    }
}

cJSON *h_platform_items(const char *suffix)
{
    cJSON *all = cJSON_CreateArray();
    size_t n = h_platform_count();
    size_t sl = strlen(suffix);
    for (size_t i = 0; i < n; i++) {
        h_msg m;
        if (h_platform_get(i, &m))
            break;
        size_t tl = strlen(m.topic);
        if (tl >= sl && strcmp(m.topic + tl - sl, suffix) == 0) {
            cJSON *doc = cJSON_Parse(m.payload);
            cJSON *items = cJSON_GetObjectItem(doc, "items");
            cJSON *it;
            cJSON_ArrayForEach(it, items)
            {
                cJSON *copy = cJSON_Duplicate(it, 1);
                cJSON_AddStringToObject(copy, "_topic", m.topic);
                cJSON_AddNumberToObject(copy, "_at", (double)m.at_ms);
                cJSON_AddNumberToObject(copy, "_msg", (double)i);
                cJSON_AddItemToArray(all, copy);
            }
            cJSON_Delete(doc);
        }
        h_msg_free(&m);
    }
    return all;
}

cJSON *h_platform_items_once(const char *suffix)
{
    cJSON *all = h_platform_items(suffix), *once = cJSON_CreateArray();
    cJSON *it;
    cJSON_ArrayForEach(it, all)
    {
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(it, "id"));
        int dup = !id;
        cJSON *k;
        cJSON_ArrayForEach(k, once)
        {
            const char *kid = cJSON_GetStringValue(cJSON_GetObjectItem(k, "id"));
            dup |= id && kid && !strcmp(id, kid);
        }
        if (!dup)
            cJSON_AddItemToArray(once, cJSON_Duplicate(it, 1));
    }
    cJSON_Delete(all);
    return once;
}

long long h_sql_int(const char *db, const char *sql)
{
    sqlite3 *h;
    long long n = -1;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_stmt *st;
        sqlite3_busy_timeout(h, 2000);
        if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK) {
            if (sqlite3_step(st) == SQLITE_ROW)
                n = sqlite3_column_int64(st, 0);
            sqlite3_finalize(st);
        }
    }
    sqlite3_close(h);
    return n;
}

long h_outbox_rows(const char *db, const char *table)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM %s", table);
    return (long)h_sql_int(db, sql);
}

int h_outbox_wait(const char *db, const char *table, long want, int timeout_ms)
{
    int64_t end = mono_ms() + timeout_ms;
    while (mono_ms() < end) {
        if (h_outbox_rows(db, table) >= want)
            return 1;
        poll(NULL, 0, 50); /* the outbox is a file: re-read it at a short interval */
    }
    return 0;
}

char *h_slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    if (b)
        b[n] = 0;
    fclose(f);
    return b;
}

void h_dump_log(h_proc *p)
{
    char *log = h_slurp(p->log);
    fprintf(stderr, "---- %s ----\n%s\n----\n", p->log, log ? log : "(none)");
    free(log);
}

/* Runs build/sim run with the extra args (NULL-terminated); returns its exit status. */
int h_sim_run(h_proc *p, const char *logname, const char *scenario, int broker_port, int base_port,
              const char *const *extra, int timeout_ms)
{
    char bp[16], dp[16];
    snprintf(bp, sizeof bp, "%d", broker_port);
    snprintf(dp, sizeof dp, "%d", base_port);
    const char *argv[32] = {h_bin("sim"),     "run",        scenario,
                            "--base-port",    dp,           "--gateway",
                            h_bin("gateway"), "--progress", "5"};
    int n = 9;
    if (broker_port > 0) {
        argv[n++] = "--broker-port";
        argv[n++] = bp;
    }
    for (int i = 0; extra && extra[i] && n < 31; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    if (h_spawn(p, logname, (char *const *)argv) != 0)
        return -1;
    return h_wait(p, timeout_ms);
}

/* The folder `sim run --keep` named in its log ("files kept in DIR"), or "". */
void h_kept_dir(h_proc *p, char *dir, size_t cap)
{
    char *log = h_slurp(p->log), *at = log ? strstr(log, "files kept in /tmp/sim-run.") : NULL;
    dir[0] = 0;
    if (at) {
        at += strlen("files kept in ");
        size_t n = strcspn(at, " \n");
        if (n < cap)
            snprintf(dir, cap, "%.*s", (int)n, at);
    }
    free(log);
}

void h_remove_dir(const char *dir)
{
    char cmd[PATH_MAX + 16];
    if (strncmp(dir, "/tmp/sim-run.", 13) != 0 || strchr(dir, '\'') || strlen(dir) >= PATH_MAX)
        return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

int h_port_free(int type, int port)
{
    int fd = socket(AF_INET, type, 0), one = 1;
    if (fd < 0)
        return 0;
    if (type == SOCK_STREAM)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* Prefixes dir/ to the relative value of each `config:` or `file:` key of
 * line (a key starts the line or follows a space, '{' or ','). */
static void absolute_paths(FILE *out, const char *line, size_t n, const char *dir)
{
    static const char *const keys[] = {"config: ", "file: "};
    size_t i = 0;
    while (i < n) {
        size_t k = 0, kl = 0;
        int hit = 0;
        for (; k < 2 && !hit; k++) {
            kl = strlen(keys[k]);
            hit = i + kl < n && !strncmp(line + i, keys[k], kl) &&
                  (i == 0 || strchr(" {,", line[i - 1]));
        }
        if (!hit) {
            fputc(line[i++], out);
            continue;
        }
        fwrite(line + i, 1, kl, out);
        i += kl;
        if (line[i] == '"' || line[i] == '\'')
            fputc(line[i++], out);
        if (line[i] != '/')
            fprintf(out, "%s/", dir);
    }
}

const char *h_scenario_expecting(const char *scenario, const char *name, const char *expect)
{
    char *text = h_slurp(scenario), *end = text ? strstr(text, "\nexpect:\n") : NULL;
    char real[PATH_MAX], *out = NULL;
    size_t len = 0;
    const char *path = NULL;
    if (!end || !realpath(scenario, real))
        goto done;
    *strrchr(real, '/') = '\0'; /* the scenario's folder */
    FILE *f = open_memstream(&out, &len);
    if (!f)
        goto done;
    for (const char *line = text; line <= end;) {
        const char *eol = strchr(line, '\n');
        size_t n = (size_t)(eol - line) + 1;
        if (line[strspn(line, " ")] == '#')
            fwrite(line, 1, n, f); /* a comment is left as it is */
        else
            absolute_paths(f, line, n, real);
        line += n;
    }
    fprintf(f, "expect:\n%s", expect);
    if (fclose(f) == 0)
        path = h_write_file(name, out);
done:
    free(out);
    free(text);
    return path;
}

int h_rehearse(h_rehearsal *r, const char *logname, int want_rc)
{
    const char *args[32];
    char report[512];
    int n = 0;
    for (int i = 0; r->extra && r->extra[i] && n < 28; i++)
        args[n++] = r->extra[i];
    if (r->report) {
        snprintf(report, sizeof(report), "%s/%.*s.json", h_tmpdir(), (int)strcspn(logname, "."),
                 logname);
        args[n++] = "--report";
        args[n++] = report;
    }
    if (r->keep)
        args[n++] = "--keep";
    args[n] = NULL;
    int64_t t0 = h_now_ms();
    r->rc = h_sim_run(&r->p, logname, r->scenario, r->broker, r->base, args, r->timeout_ms);
    r->wall_ms = h_now_ms() - t0;
    r->json = NULL;
    r->gwlog = NULL;
    r->kept[0] = '\0';
    if (r->keep) {
        h_kept_dir(&r->p, r->kept, sizeof(r->kept));
        if (r->kept[0]) {
            char gwlog[400];
            if (nkept < 8)
                snprintf(kept_dirs[nkept++], sizeof(kept_dirs[0]), "%s", r->kept);
            snprintf(gwlog, sizeof(gwlog), "%s/gateway.log", r->kept);
            r->gwlog = h_slurp(gwlog);
        }
    }
    if (r->report) {
        char *text = h_slurp(report);
        r->json = text ? cJSON_Parse(text) : NULL;
        free(text);
    }
    if (r->rc != want_rc)
        h_dump_log(&r->p);
    return r->rc;
}

void h_rehearsal_free(h_rehearsal *r)
{
    cJSON_Delete(r->json);
    r->json = NULL;
    free(r->gwlog);
    r->gwlog = NULL;
}

/* The number after `key` in the last line of text that contains `tag`; -1 if none. */
long long h_last_count(const char *text, const char *tag, const char *key)
{
    const char *line = NULL;
    for (const char *s = text; (s = strstr(s, tag)); s++)
        line = s;
    if (!line)
        return -1;
    const char *eol = strchr(line, '\n');
    const char *k = strstr(line, key);
    if (!k || (eol && k > eol))
        return -1;
    return strtoll(k + strlen(key), NULL, 10);
}

int h_tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

int h_send_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
        if (k <= 0)
            return -1;
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

size_t h_recv_n(int fd, uint8_t *p, size_t n, int timeout_ms)
{
    size_t got = 0;
    int64_t end = mono_ms() + timeout_ms;
    while (got < n) {
        int left = (int)(end - mono_ms());
        struct pollfd pf = {fd, POLLIN, 0};
        if (left <= 0 || poll(&pf, 1, left) <= 0)
            break;
        ssize_t k = recv(fd, p + got, n - got, 0);
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    return got;
}

int h_closed_by_peer(int fd, int timeout_ms)
{
    int64_t end = mono_ms() + timeout_ms;
    uint8_t tmp[256];
    for (;;) {
        int left = (int)(end - mono_ms());
        struct pollfd pf = {fd, POLLIN, 0};
        if (left <= 0 || poll(&pf, 1, left) <= 0)
            return 0;
        ssize_t k = recv(fd, tmp, sizeof(tmp), 0);
        if (k <= 0)
            return 1;
    }
}

int h_mqtt_session_present(int port, const char *client_id)
{
    size_t idlen = strlen(client_id);
    if (idlen > 100)
        return -1;
    /* CONNECT: protocol "MQTT" level 4, flags 0 (CleanSession=0), keep-alive
     * 60 s, then the client id; one remaining-length byte (< 128). */
    uint8_t pkt[128] = {0x10, (uint8_t)(12 + idlen), 0, 4, 'M', 'Q', 'T', 'T', 4, 0, 0, 60,
                        0,    (uint8_t)idlen};
    memcpy(pkt + 14, client_id, idlen);
    int fd = h_tcp_connect(port);
    if (fd < 0)
        return -1;
    uint8_t ack[4];
    int rc = -1;
    if (h_send_all(fd, pkt, 14 + idlen) == 0 && h_recv_n(fd, ack, 4, 5000) == 4 && ack[0] == 0x20 &&
        ack[1] == 2 && ack[3] == 0) {
        rc = ack[2] & 1; /* Session Present (MQTT 3.1.1, 3.2.2.2) */
        const uint8_t bye[2] = {0xE0, 0};
        h_send_all(fd, bye, sizeof(bye));
    }
    close(fd);
    return rc;
}

/* ---- playing an SL651 station, a small disk ---- */

uint16_t h_crc16(const uint8_t *p, size_t n)
{
    uint16_t r = 0xFFFF;
    for (size_t i = 0; i < n; i++) {
        r ^= p[i];
        for (int b = 0; b < 8; b++)
            r = (r & 1) ? (uint16_t)((r >> 1) ^ 0xA001) : (uint16_t)(r >> 1);
    }
    return r;
}

static uint8_t bcd(int v)
{
    return (uint8_t)((v / 10) << 4 | (v % 10));
}

/* Header, STX, serial + send time (seconds 00), F1F1 station + type 48, F0F0
 * observation time, element 39 23 as 4 BCD bytes, ETX, CRC high byte first. */
size_t h_sl651_report(uint8_t *f, const char *station, uint16_t pw, uint8_t fn, uint16_t serial,
                      const int t[5], unsigned level_mm)
{
    uint8_t body[64], st[5] = {0};
    size_t b = 0, n = 0;
    for (int i = 0; i < 5; i++) {
        unsigned v = 0;
        sscanf(station + 2 * i, "%2x", &v);
        st[i] = (uint8_t)v;
    }
    uint8_t tm[6] = {bcd(t[0]), bcd(t[1]), bcd(t[2]), bcd(t[3]), bcd(t[4]), bcd(0)};
    body[b++] = (uint8_t)(serial >> 8);
    body[b++] = (uint8_t)serial;
    memcpy(body + b, tm, 6);
    b += 6;
    body[b++] = 0xF1;
    body[b++] = 0xF1;
    memcpy(body + b, st, 5);
    b += 5;
    body[b++] = 0x48;
    body[b++] = 0xF0;
    body[b++] = 0xF0;
    memcpy(body + b, tm, 5);
    b += 5;
    body[b++] = 0x39;
    body[b++] = 0x23; /* 4 bytes, 3 decimals */
    body[b++] = bcd((int)(level_mm / 1000000 % 100));
    body[b++] = bcd((int)(level_mm / 10000 % 100));
    body[b++] = bcd((int)(level_mm / 100 % 100));
    body[b++] = bcd((int)(level_mm % 100));
    f[n++] = 0x7E;
    f[n++] = 0x7E;
    f[n++] = 0x01; /* centre */
    memcpy(f + n, st, 5);
    n += 5;
    f[n++] = (uint8_t)(pw >> 8);
    f[n++] = (uint8_t)pw;
    f[n++] = fn;
    f[n++] = (uint8_t)(b >> 8); /* direction 0 = up */
    f[n++] = (uint8_t)b;
    f[n++] = 0x02;
    memcpy(f + n, body, b);
    n += b;
    f[n++] = 0x03;
    uint16_t c = h_crc16(f, n);
    f[n++] = (uint8_t)(c >> 8);
    f[n++] = (uint8_t)c;
    return n;
}

static int write_text(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        return -1;
    int ok = write(fd, text, strlen(text)) == (ssize_t)strlen(text);
    close(fd);
    return ok ? 0 : -1;
}

int h_small_disk(const char *dir, const char *size, char *how, size_t cap)
{
    char opt[32];
    snprintf(opt, sizeof(opt), "size=%s", size);
    mkdir(dir, 0700);
    if (mount("tmpfs", dir, "tmpfs", 0, opt) == 0) {
        snprintf(how, cap, "a %s tmpfs mounted as root", size);
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
    if (write_text("/proc/self/gid_map", map) || mount("tmpfs", dir, "tmpfs", 0, opt))
        return -1;
    snprintf(how, cap, "a %s tmpfs mounted in a user namespace", size);
    return 0;
}

int h_tcp_connect_from(int port, const char *src)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in b = {.sin_family = AF_INET};
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0)
        return -1;
    if (inet_pton(AF_INET, src, &b.sin_addr) != 1 || bind(fd, (struct sockaddr *)&b, sizeof(b)) ||
        connect(fd, (struct sockaddr *)&a, sizeof(a))) {
        close(fd);
        return -1;
    }
    return fd;
}

int h_tcp_flood(int port, int n, int per_source, int *fds)
{
    int got = 0;
    for (int i = 0; i < n; i++) {
        char src[32];
        int s = i / per_source;
        snprintf(src, sizeof(src), "127.1.%d.%d", s / 250, 1 + s % 250);
        fds[i] = h_tcp_connect_from(port, src);
        got += fds[i] >= 0;
    }
    return got;
}

long h_raise_nofile(long want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl))
        return -1;
    if ((long)rl.rlim_cur < want) {
        rl.rlim_cur = (rlim_t)want < rl.rlim_max ? (rlim_t)want : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return (long)rl.rlim_cur;
}

int h_admin(const char *sock, const char *const *args, char *out, size_t cap)
{
    static int calls;
    /* --json: the answer as the socket gives it, for the tests to parse. */
    char *argv[16] = {(char *)h_bin("gateway"), "admin", "--json", "--socket", (char *)sock};
    int n = 5;
    for (; args[n - 5] && n < 15; n++)
        argv[n] = (char *)args[n - 5];
    argv[n] = NULL;
    char logname[32];
    snprintf(logname, sizeof(logname), "h-admin-%d.log", ++calls);
    h_proc p;
    memset(&p, 0, sizeof(p));
    if (h_spawn(&p, logname, argv))
        return -1;
    int rc = h_wait(&p, 10000);
    out[0] = '\0';
    FILE *f = fopen(p.log, "r");
    if (f) {
        size_t k = fread(out, 1, cap - 1, f);
        out[k] = '\0';
        fclose(f);
    }
    return rc;
}

const char *h_coap_client(int wait_s, const char *args)
{
    static char code[8];
    char cmd[2048], line[1024];
    snprintf(cmd, sizeof(cmd), "coap-client-notls -B %d -v 7 %s 2>&1", wait_s, args);
    snprintf(code, sizeof(code), "none");
    FILE *p = popen(cmd, "r");
    if (!p)
        return code;
    while (fgets(line, sizeof(line), p)) {
        const char *at = strstr(line, "t:ACK c:");
        if (at && at[8] >= '2' && at[8] <= '5')
            snprintf(code, sizeof(code), "%.4s", at + 8);
    }
    pclose(p);
    return code;
}

int h_run(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

double h_status_number(const char *sock, const char *path)
{
    static char out[1 << 16];
    const char *args[] = {"status", NULL};
    if (h_admin(sock, args, out, sizeof(out)))
        return -1;
    cJSON *doc = cJSON_Parse(out);
    const cJSON *at = doc;
    char buf[256], *save = NULL;
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *k = strtok_r(buf, ".", &save); k && at; k = strtok_r(NULL, ".", &save))
        at = cJSON_GetObjectItemCaseSensitive(at, k);
    double v = cJSON_IsNumber(at) ? at->valuedouble : -1;
    cJSON_Delete(doc);
    return v;
}

double h_metric(int port, const char *series)
{
    static char out[1 << 20];
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "curl -s --max-time 10 http://127.0.0.1:%d/metrics", port);
    if (h_run(cmd, out, sizeof(out)))
        return -1;
    size_t n = strlen(series);
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"))
        if (!strncmp(line, series, n)) {
            const char *sp = strrchr(line, ' '); /* "name{labels} value" */
            return sp ? strtod(sp + 1, NULL) : -1;
        }
    return -1;
}
