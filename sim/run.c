/* `sim run SCENARIO`: a rehearsal. Optionally starts a private mosquitto and
 * the gateway, subscribes to the gateway's uplink as the platform, plays the
 * scenario's devices for `duration` of scenario time, stops everything in
 * order and judges the scenario's expectations (expect.c) over what was sent
 * and what arrived. One libuv loop; a 50 ms tick drives the phases below and
 * drains the messages Paho's threads queued (each stamped on arrival, so
 * latencies do not depend on the tick). Every wait has a deadline.
 *
 *   BROKER -> PLATFORM -> DEVICES -> GATEWAY -> RUN -> GW_STOP -> QUIET ->
 *   DISCONNECT -> STOP (devices, broker) -> DONE
 *
 * Exit: 0 every expectation passed, 1 some failed (or interrupted), 2 setup. */
#include "sim/curve.h"
#include "sim/expect.h"
#include "sim/kind.h"
#include "sim/mqtt.h"
#include "sim/report.h"
#include "sim/run.h"
#include "sim/scenario.h"
#include "sim/station.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define TICK_MS 50
#define QUEUE_MAX 1000000
#define BROKER_WAIT_S 10.0
#define SUBSCRIBE_WAIT_S 10.0
#define GATEWAY_WAIT_S 20.0
#define GW_STOP_WAIT_S 15.0
#define QUIET_S 0.5
#define QUIET_MAX_S 5.0
#define DISCONNECT_MS 2000     /* DISCONNECT, and the connect that removes a session */
#define DISCONNECT_WAIT_S 10.0 /* both, over up to SIM_MQTT_MAX_URIS nodes */
#define BROKER_STOP_WAIT_S 5.0
#define MAX_READINGS_KEPT 2000000 /* 40 bytes each */

enum {
    PH_BROKER = 0,
    PH_PLATFORM,
    PH_DEVICES,
    PH_GATEWAY,
    PH_RUN,
    PH_GW_STOP,
    PH_QUIET,
    PH_DISCONNECT,
    PH_STOP,
    PH_DONE
};

typedef sim_mqtt_msg rmsg;

typedef struct child {
    uv_process_t proc;
    int spawned, exited, killed;
    int64_t status;
    int term_signal;
    char name[16];
    char log[600];
} child;

typedef sim_port_map port_map;

typedef struct run {
    sim_ctx ctx;
    sim_scenario *scn;
    sim_run_conf *rc;
    uv_loop_t *loop;
    uv_timer_t tick;
    uv_signal_t sig_int, sig_term;
    int phase;
    uint64_t phase_ns;
    uint64_t start_ns;
    int reached_run, interrupted, setup_failed, kinds_started, stopping_handles;
    double end_t;

    /* options */
    const char *report_path, *csv_path, *capture_path, *html_path;
    FILE *capture;        /* --capture: every message received, "<topic> <payload>" a line */
    sim_html_extra *html; /* with --html: latency and thresholds, noted as messages arrive */
    double wall_off;      /* Unix time minus uv_hrtime, in seconds */
    double csv_step, progress_s, duration;
    int quiet, keep;

    /* children and their files */
    child broker, gw;
    char tmpdir[256];
    char gw_config[600];
    uint32_t broker_port;
    port_map ports[65];
    int nports;

    /* the platform (sim/mqtt.h): Paho's threads fill its queue */
    sim_mqtt_sub *client;
    int have_client;
    int disconnect_asked;
    char topic[200], client_id[64];
    int gw_ready;
    uint64_t last_msg_ns;
    uint64_t last_progress_ns;

    sim_timeline *tl;
    sim_run_summary sum;
    sim_cpu gw_cpu, broker_cpu;
} run;

static double secs_since(uint64_t ns)
{
    return (double)(uv_hrtime() - ns) / 1e9;
}

static void set_phase(run *r, int ph)
{
    r->phase = ph;
    r->phase_ns = uv_hrtime();
}

static void setup_error(run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Reports a setup error and winds everything down (exit 2). */
static void setup_error(run *r, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "sim run: setup error: %s\n", msg);
    if (!r->setup_failed)
        snprintf(r->sum.setup_note, sizeof r->sum.setup_note, "setup error: %.200s", msg);
    r->setup_failed = 1;
    r->keep = 1;
    set_phase(r, PH_GW_STOP);
}

/* ---- CPU of this process and of children (/proc/PID/stat) ---- */

static void self_cpu(sim_cpu *c)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return;
    c->have = 1;
    c->user_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    c->sys_s = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    c->max_rss_kib = ru.ru_maxrss;
}

/* Reads utime and stime (fields 14, 15) and VmHWM of a live process. */
static void proc_cpu(pid_t pid, sim_cpu *c)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may contain spaces */
    if (!p)
        return;
    unsigned long long ut = 0, st = 0;
    /* After ")": state (field 3) then fields 4..13, utime 14, stime 15. */
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return;
    long hz = sysconf(_SC_CLK_TCK);
    if (hz <= 0)
        hz = 100;
    c->have = 1;
    c->user_s = (double)ut / (double)hz;
    c->sys_s = (double)st / (double)hz;
    snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
    if ((f = fopen(path, "r"))) {
        while (fgets(buf, sizeof buf, f))
            if (!strncmp(buf, "VmHWM:", 6))
                c->max_rss_kib = strtol(buf + 6, NULL, 10);
        fclose(f);
    }
}

/* ---- children ---- */

static void on_child_exit(uv_process_t *p, int64_t status, int sig)
{
    child *c = p->data;
    c->exited = 1;
    c->status = status;
    c->term_signal = sig;
    uv_close((uv_handle_t *)p, NULL);
}

/* Spawns argv with stdout and stderr appended to c->log. */
static int child_spawn(run *r, child *c, const char *name, char **argv)
{
    snprintf(c->name, sizeof c->name, "%s", name);
    snprintf(c->log, sizeof c->log, "%s/%s.log", r->tmpdir, name);
    int fd = open(c->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    uv_stdio_container_t io[3];
    io[0].flags = UV_IGNORE;
    io[1].flags = UV_INHERIT_FD;
    io[1].data.fd = fd;
    io[2].flags = UV_INHERIT_FD;
    io[2].data.fd = fd;
    uv_process_options_t o;
    memset(&o, 0, sizeof o);
    o.file = argv[0];
    o.args = argv;
    o.exit_cb = on_child_exit;
    o.stdio = io;
    o.stdio_count = 3;
    c->proc.data = c;
    int rc = uv_spawn(r->loop, &c->proc, &o);
    close(fd);
    if (rc == 0)
        c->spawned = 1;
    else
        uv_close((uv_handle_t *)&c->proc, NULL); /* libuv: closed even when the spawn failed */
    return rc;
}

static int child_alive(const child *c)
{
    return c->spawned && !c->exited;
}

/* Prints the last lines of a child's log to stderr. */
static void log_tail(const child *c, int lines)
{
    FILE *f = fopen(c->log, "r");
    if (!f)
        return;
    char ring[16][512];
    int n = 0;
    while (n < 100000 && fgets(ring[n % 16], sizeof ring[0], f))
        n++;
    fclose(f);
    if (lines > 16)
        lines = 16;
    fprintf(stderr, "sim run: last lines of %s (%s):\n", c->name, c->log);
    for (int i = n > lines ? n - lines : 0; i < n; i++)
        fprintf(stderr, "  | %s", ring[i % 16]);
}

/* ---- files ---- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    remove(path);
    return 0;
}

static int write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return SIM_ERR;
    int ok = fputs(text, f) >= 0;
    ok &= fclose(f) == 0;
    return ok ? SIM_OK : SIM_ERR;
}

/* Port of a URI like tcp://host:1883 (0 if none). */
static uint32_t uri_port(const char *uri)
{
    const char *h = strstr(uri, "://");
    h = h ? h + 3 : uri;
    const char *colon = strrchr(h, ':');
    if (!colon)
        return 0;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    return end != colon + 1 && (*end == 0 || *end == '/') && p > 0 && p < 65536 ? (uint32_t)p : 0;
}

/* Replaces the port of uri with port. */
static void uri_set_port(char *uri, size_t cap, uint32_t port)
{
    char *h = strstr(uri, "://");
    h = h ? h + 3 : uri;
    char *colon = strrchr(h, ':');
    char tail[160] = "";
    if (colon) {
        char *slash = strchr(colon, '/');
        if (slash)
            snprintf(tail, sizeof tail, "%s", slash);
        *colon = 0;
    }
    size_t n = strlen(uri);
    snprintf(uri + n, cap - n, ":%u%s", port, tail);
}

static uint32_t map_port(const run *r, uint32_t p, int *hit)
{
    for (int i = 0; i < r->nports; i++)
        if (p >= r->ports[i].old_lo && p < r->ports[i].old_lo + r->ports[i].count) {
            *hit = 1;
            return r->ports[i].new_lo + (p - r->ports[i].old_lo);
        }
    *hit = 0;
    return p;
}

/* Where the key "data_dir:" starts in line (after a space, '{' or ',', before
 * any comment), or NULL. */
static const char *find_data_dir(const char *line)
{
    const char *hash = strchr(line, '#');
    for (const char *p = strstr(line, "data_dir:"); p && (!hash || p < hash);
         p = strstr(p + 1, "data_dir:"))
        if (p == line || strchr(" {,", p[-1]))
            return p;
    return NULL;
}

/* Copies line into out with data_dir's value replaced by dir. In a flow
 * mapping (flow) the value ends at ',' or '}' (outside quotes), in a block
 * at the end of the line or a comment; the rest of the line is kept. */
static void replace_data_dir(const char *line, const char *key, int flow, const char *dir,
                             char *out, size_t cap)
{
    const char *v = key + 9, *e = v + strspn(v, " ");
    char quote = (*e == '"' || *e == '\'') ? *e : 0;
    if (quote) {
        const char *q = strchr(e + 1, quote);
        e = q ? q + 1 : e + strlen(e);
    }
    while (*e && *e != '\n' && !(flow && (*e == ',' || *e == '}')) && strncmp(e, " #", 2))
        e++;
    snprintf(out, cap, "%.*s %s/gwdata%s", (int)(v - line), line, dir, e);
}

/* The gateway config the rehearsal runs: the scenario's file with
 * gateway.data_dir pointed into the run's own folder (a fresh outbox, so no
 * alarm of an earlier run survives into this one) and, when ports were
 * overridden, every ":PORT" / "port: PORT" of a remapped port rewritten. */
static int derive_gateway_config(run *r)
{
    FILE *f = fopen(r->rc->gw_config, "r");
    if (!f) {
        setup_error(r, "gateway config %s: %s", r->rc->gw_config, strerror(errno));
        return SIM_ERR;
    }
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    char line[4096];
    int saw_data_dir = 0, in_gateway = 0, flow = 0;
    /* First pass: does gateway: have a data_dir of its own? The section may
     * be a block or a flow mapping (`gateway: {id: gw, data_dir: d}`). */
    while (fgets(line, sizeof line, f)) {
        if (line[0] != ' ' && line[0] != '#' && line[0] != '\n')
            in_gateway = !strncmp(line, "gateway:", 8);
        if (in_gateway && find_data_dir(line))
            saw_data_dir = 1;
    }
    int has_data_dir = saw_data_dir;
    rewind(f);
    in_gateway = 0;
    while (out && fgets(line, sizeof line, f)) {
        char buf[8192], edited[sizeof line + 300];
        size_t o = 0;
        const char *s = line;
        const char *dd = NULL;
        if (line[0] != ' ' && line[0] != '#' && line[0] != '\n') {
            in_gateway = !strncmp(line, "gateway:", 8);
            flow = in_gateway && line[8 + strspn(line + 8, " ")] == '{';
        }
        if (in_gateway && (dd = find_data_dir(line)) != NULL) {
            replace_data_dir(line, dd, flow, r->tmpdir, edited, sizeof edited);
            s = edited;
        } else if (in_gateway && flow && !has_data_dir && !strncmp(line, "gateway:", 8)) {
            /* A flow mapping without one: add it first inside the braces. */
            const char *b = strchr(line, '{') + 1;
            snprintf(edited, sizeof edited, "%.*s data_dir: %s/gwdata%s%s", (int)(b - line), line,
                     r->tmpdir, b[strspn(b, " ")] == '}' ? "" : ",", b);
            has_data_dir = 1;
            s = edited;
        }
        { /* the ports, on the line as edited */
            const char *const start = s;
            while (*s && o + 16 < sizeof buf) {
                /* ":PORT", or the key "port: PORT" / "dtls_port: PORT" (a
                 * whole word: not the tail of "transport: tcp" or "report: 5"). */
                size_t klen = !strncmp(s, "port: ", 6)         ? 5
                              : !strncmp(s, "dtls_port: ", 11) ? 10
                                                               : 0;
                int key = klen && s[klen + 1] >= '0' && s[klen + 1] <= '9' &&
                          (s == start || !(isalnum((unsigned char)s[-1]) || s[-1] == '_'));
                if (key) {
                    memcpy(buf + o, s, klen);
                    o += klen;
                    s += klen;
                }
                if ((key || *s == ':') && s[1] >= '0' && s[1] <= '9') {
                    char *end;
                    unsigned long p = strtoul(s + 1, &end, 10);
                    int hit = 0;
                    uint32_t np = p < 65536 ? map_port(r, (uint32_t)p, &hit) : 0;
                    if (hit && !(*end >= '0' && *end <= '9')) {
                        o += (size_t)snprintf(buf + o, sizeof buf - o, "%c%u",
                                              *s == ':' ? ':' : ' ', np);
                        s = end;
                        continue;
                    }
                }
                buf[o++] = *s++;
            }
            buf[o] = 0;
        }
        if (!strncmp(line, "gateway:", 8) && !has_data_dir) {
            /* The file has none: insert one right under gateway:. */
            o += (size_t)snprintf(buf + o, sizeof buf - o, "  data_dir: %s/gwdata\n", r->tmpdir);
            has_data_dir = 1;
        }
        while (out && len + o + 1 > cap) {
            char *n2 = realloc(out, cap * 2);
            if (!n2) {
                free(out);
                out = NULL;
            }
            out = n2;
            cap *= 2;
        }
        if (out) {
            memcpy(out + len, buf, o);
            len += o;
            out[len] = 0;
        }
    }
    fclose(f);
    if (!out) {
        setup_error(r, "out of memory");
        return SIM_ERR;
    }
    snprintf(r->gw_config, sizeof r->gw_config, "%s/gateway.yaml", r->tmpdir);
    int rc = write_text(r->gw_config, out);
    free(out);
    if (rc != SIM_OK)
        setup_error(r, "cannot write %s", r->gw_config);
    return rc;
}

/* ---- the platform (Paho) ---- */

static int platform_start(run *r)
{
    char err[300];
    snprintf(r->client_id, sizeof r->client_id, "sim-run-%ld", (long)getpid());
    snprintf(r->topic, sizeof r->topic, "%s/%s/#", r->rc->topic_prefix,
             r->rc->gateway_id[0] ? r->rc->gateway_id : "+");
    /* A persistent session (several broker nodes) is removed at the end: its
     * client id names this process, so nothing could ever resume it. */
    sim_mqtt_sub_opts o = {r->rc->broker, r->client_id,        r->topic, 1, NULL, NULL, NULL,
                           QUEUE_MAX,     "sim run: platform", r->quiet, 0};
    r->client = sim_mqtt_sub_start(&o, err, sizeof err);
    if (!r->client) {
        setup_error(r, "platform: %s", err);
        return SIM_ERR;
    }
    r->have_client = 1;
    return SIM_OK;
}

/* Last topic level: readings, events, alarms, status, ... */
static const char *topic_kind(const char *topic)
{
    const char *s = strrchr(topic, '/');
    return s ? s + 1 : topic;
}

static double scen_t(const run *r, uint64_t ns)
{
    return ((double)ns - (double)r->ctx.t0_ns) / 1e9 * r->ctx.speed;
}

/* The first sequence number of the gateway we started (a fresh outbox): its
 * start line names the last one committed, which a new data directory takes
 * from the clock. 0 (the first seq received starts the sequence) if unknown. */
static uint64_t gw_first_seq(const run *r)
{
    FILE *f = fopen(r->gw.log, "r");
    char line[1024];
    unsigned long long seq = 0;
    const char *p;
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, " last sequence)") && (p = strrchr(line, '(')))
            seq = strtoull(p + 1, NULL, 10);
    if (f)
        fclose(f);
    return seq ? seq + 1 : 0;
}

/* Moves what Paho queued into the timeline. */
static void drain(run *r)
{
    rmsg *m = sim_mqtt_sub_take(r->client, 0);
    sim_mqtt_sub_state st;
    sim_mqtt_sub_state_get(r->client, &st);
    r->sum.msgs_dropped = st.dropped;
    while (m) {
        rmsg *next = m->next;
        const char *k = topic_kind(m->topic);
        double t = scen_t(r, m->at_ns);
        r->last_msg_ns = m->at_ns;
        if (r->capture) {
            fputs(m->topic, r->capture);
            fputc(' ', r->capture);
            for (size_t i = 0; i < m->len; i++) /* one message, one line */
                if (m->payload[i] == '\n')
                    fputs("\\n", r->capture);
                else
                    fputc(m->payload[i], r->capture);
            fputc('\n', r->capture);
        }
        if (!strcmp(k, "status")) {
            r->sum.msgs_status++;
            if (!m->retained && strstr(m->payload, "\"online\"") && !r->gw_ready) {
                r->gw_ready = 1;
                if (r->rc->gw_binary[0])
                    r->tl->seq_base = gw_first_seq(r);
            }
        } else if (!strcmp(k, "forecasts")) {
            r->sum.msgs_other++; /* counted as other; their items go to the timeline */
            if (r->ctx.t0_ns && sim_tl_message(r->tl, t, k, m->payload, m->len) == SIM_ENOMEM)
                r->sum.msgs_dropped++;
        } else if (!strcmp(k, "readings") || !strcmp(k, "events") || !strcmp(k, "alarms")) {
            if (k[0] == 'r')
                r->sum.msgs_readings++;
            else if (k[0] == 'e')
                r->sum.msgs_events++;
            else
                r->sum.msgs_alarms++;
            if (r->ctx.t0_ns && sim_tl_message(r->tl, t, k, m->payload, m->len) == SIM_ENOMEM)
                r->sum.msgs_dropped++;
            if (r->ctx.t0_ns && r->html)
                sim_html_note(r->html, k, m->payload, r->wall_off + (double)m->at_ns / 1e9);
        } else {
            r->sum.msgs_other++;
        }
        free(m);
        m = next;
    }
}

/* ---- devices ---- */

static int find_device(const sim_scenario *s, const char *id, const sim_group **g, uint32_t *k)
{
    char buf[SIM_NAME_MAX];
    for (int i = 0; i < s->ngroups; i++)
        for (uint32_t j = 0; j < s->groups[i].count; j++)
            if (!sim_format_id(s->groups[i].id_tmpl, s->groups[i].first + j, buf, sizeof buf) &&
                !strcmp(buf, id)) {
                *g = &s->groups[i];
                *k = j;
                return 1;
            }
    return 0;
}

/* The sent series the `after:` expectations look at, from the curves as
 * encoded (written values are not modelled). */
static int sample_crossings(run *r)
{
    double dur = r->duration, step = dur / 20000;
    if (step < 0.01)
        step = 0.01;
    if (step > 1)
        step = 1;
    for (int i = 0; i < r->rc->nexpects; i++) {
        const sim_expect *x = &r->rc->expects[i];
        if (!x->has_after)
            continue;
        for (int d = 0; d < x->ndevs; d++) {
            const sim_group *g;
            uint32_t k;
            int64_t di = sim_tl_find(r->tl, x->devs[d]), mi = sim_tl_find(r->tl, x->after_metric);
            int done = 0;
            for (size_t s = 0; di >= 0 && mi >= 0 && s < r->tl->nsent && !done; s++)
                done = r->tl->sent[s].dev == (uint32_t)di && r->tl->sent[s].metric == (uint32_t)mi;
            if (done || !find_device(r->scn, x->devs[d], &g, &k))
                continue;
            const sim_regdef *reg =
                sim_run_metric_reg(r->rc, g, x->after_metric, x->after_table, x->after_addr);
            if (!reg) {
                if (g->nregs > 0) {
                    setup_error(r, "expect line %d: %s has no register %d for %s", x->line,
                                x->devs[d], x->after_addr, x->after_metric);
                    return SIM_ERR;
                }
                continue; /* a kind without registers: the evaluator says so */
            }
            sim_curve_state st = {-1, 0};
            uint64_t n = (uint64_t)(dur / step);
            for (uint64_t j = 0; j <= n; j++) {
                double t = (double)j * step;
                if (sim_tl_sent(r->tl, t, x->devs[d], x->after_metric,
                                sim_reg_sent_value(reg, t, k, &st)) != SIM_OK) {
                    setup_error(r, "out of memory");
                    return SIM_ERR;
                }
            }
        }
    }
    return SIM_OK;
}

/* Raises the open-file soft limit to the hard limit: a device kind holds a
 * listener and a connection per device. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int devices_start(run *r)
{
    struct rlimit rl;
    raise_nofile();
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur < (rlim_t)r->scn->ndevices * 2 + 256)
        r->ctx.park_listeners = 1;
    r->ctx.t0_ns = uv_hrtime();
    r->kinds_started = 1; /* stop closes whatever groups did start (kstate set) */
    for (int i = 0; i < r->scn->ngroups; i++) {
        sim_group *g = &r->scn->groups[i];
        if (g->kind->start(&r->ctx, g) != SIM_OK) {
            setup_error(r, "devices of group on line %d did not start (see above)", g->line);
            return SIM_ERR;
        }
    }
    return SIM_OK;
}

static void devices_stop(run *r)
{
    if (!r->kinds_started)
        return;
    r->kinds_started = 0;
    for (int i = 0; i < r->scn->ngroups; i++) {
        sim_group *g = &r->scn->groups[i];
        if (g->kind && g->kstate)
            g->kind->stop(&r->ctx, g);
    }
}

/* Devices asked at least once and requests served, from the kinds' stats. */
static void device_counts(run *r)
{
    cJSON *arr = cJSON_CreateArray();
    if (!arr)
        return;
    for (int i = 0; i < r->scn->ngroups; i++) {
        sim_group *g = &r->scn->groups[i];
        if (g->kind && g->kstate && g->kind->stats)
            g->kind->stats(&r->ctx, g, arr);
    }
    uint32_t asked = 0;
    double req = 0;
    cJSON *d;
    cJSON_ArrayForEach(d, arr)
    {
        cJSON *q = cJSON_GetObjectItemCaseSensitive(d, "requests");
        if (cJSON_IsNumber(q)) {
            req += q->valuedouble;
            asked += q->valuedouble > 0;
        }
    }
    cJSON_Delete(arr);
    r->sum.devices_served = asked;
    r->sum.requests = (uint64_t)req;
}

/* ---- progress and the verdict ---- */

static void evaluate(run *r, int final, sim_verdict *v, int *pass, int *fail)
{
    *pass = *fail = 0;
    r->tl->end_t = final ? r->end_t : sim_now(&r->ctx);
    for (int i = 0; i < r->rc->nexpects; i++) {
        sim_expect_eval(&r->rc->expects[i], r->tl, final, &v[i]);
        *pass += v[i].status == SIM_V_PASS;
        *fail += v[i].status == SIM_V_FAIL;
    }
}

static void progress(run *r)
{
    sim_verdict *v = calloc((size_t)(r->rc->nexpects ? r->rc->nexpects : 1), sizeof *v);
    int pass = 0, fail = 0;
    if (!v)
        return;
    device_counts(r);
    evaluate(r, 0, v, &pass, &fail);
    char alarms[160];
    sim_report_alarm_counts(alarms, sizeof alarms, r->tl);
    fprintf(stderr,
            "sim run: t=%.0fs/%.0fs | devices %u/%u asked, %llu requests | platform %llu msgs: "
            "%llu readings, %llu events, %s | expectations %d pass, %d fail, %d open\n",
            sim_now(&r->ctx), r->duration, r->sum.devices_served, r->scn->ndevices,
            (unsigned long long)r->sum.requests,
            (unsigned long long)(r->sum.msgs_readings + r->sum.msgs_events + r->sum.msgs_alarms),
            (unsigned long long)r->tl->readings, (unsigned long long)r->tl->events, alarms, pass,
            fail, r->rc->nexpects - pass - fail);
    free(v);
}

/* ---- the phases ---- */

static int tcp_accepts(uint32_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static int broker_spawn(run *r)
{
    char conf[600], text[1024];
    snprintf(conf, sizeof conf, "%s/mosquitto.conf", r->tmpdir);
    snprintf(text, sizeof text,
             "listener %u 127.0.0.1\nallow_anonymous true\npersistence false\n"
             "max_queued_messages 0\nmax_inflight_messages 0\nlog_dest stdout\n%s",
             r->broker_port, getuid() == 0 ? "user root\n" : "");
    if (write_text(conf, text) != SIM_OK) {
        setup_error(r, "cannot write %s", conf);
        return SIM_ERR;
    }
    char *argv[] = {"mosquitto", "-c", conf, NULL};
    int rc = child_spawn(r, &r->broker, "mosquitto", argv);
    if (rc) {
        setup_error(r, "cannot start mosquitto: %s", uv_strerror(rc));
        return SIM_ERR;
    }
    if (!r->quiet)
        fprintf(stderr, "sim run: mosquitto pid %d on 127.0.0.1:%u\n", r->broker.proc.pid,
                r->broker_port);
    return SIM_OK;
}

static int gateway_spawn(run *r)
{
    if (derive_gateway_config(r) != SIM_OK)
        return SIM_ERR;
    char *argv[] = {r->rc->gw_binary, "-c", r->gw_config, NULL};
    int rc = child_spawn(r, &r->gw, "gateway", argv);
    if (rc) {
        setup_error(r, "cannot start the gateway %s: %s", r->rc->gw_binary, uv_strerror(rc));
        return SIM_ERR;
    }
    if (!r->quiet)
        fprintf(stderr, "sim run: gateway pid %d with %s (from %s)\n", r->gw.proc.pid, r->gw_config,
                r->rc->gw_config);
    return SIM_OK;
}

/* Says whether the platform's persistent session left the broker. */
static void session_note(run *r, const sim_mqtt_sub_state *st)
{
    if (!st->persistent || !st->connected_once)
        return;
    if (st->session_removed) {
        if (!r->quiet)
            fprintf(stderr, "sim run: platform session %s removed from the broker\n", r->client_id);
        return;
    }
    fprintf(stderr,
            "sim run: platform: could not remove the session %s from the broker (%s); it "
            "collects messages until a client connects with that id and a clean session\n",
            r->client_id, st->remove_error[0] ? st->remove_error : "no answer in time");
}

static void close_handles(run *r)
{
    if (r->stopping_handles)
        return;
    r->stopping_handles = 1;
    uv_close((uv_handle_t *)&r->tick, NULL);
    uv_close((uv_handle_t *)&r->sig_int, NULL);
    uv_close((uv_handle_t *)&r->sig_term, NULL);
}

static void on_tick(uv_timer_t *t)
{
    run *r = t->data;
    double in_phase = secs_since(r->phase_ns);
    if (r->have_client)
        drain(r);
    switch (r->phase) {
    case PH_BROKER:
        if (!r->rc->broker_start) {
            set_phase(r, PH_PLATFORM);
        } else if (!r->broker.spawned) {
            broker_spawn(r);
        } else if (r->broker.exited) {
            log_tail(&r->broker, 8);
            setup_error(r, "mosquitto exited (status %lld) before accepting connections",
                        (long long)r->broker.status);
        } else if (tcp_accepts(r->broker_port)) {
            set_phase(r, PH_PLATFORM);
        } else if (in_phase > BROKER_WAIT_S) {
            setup_error(r, "mosquitto did not accept connections on port %u within %gs",
                        r->broker_port, BROKER_WAIT_S);
        }
        break;
    case PH_PLATFORM: {
        if (!r->have_client) {
            platform_start(r);
            break;
        }
        sim_mqtt_sub_state st;
        sim_mqtt_sub_state_get(r->client, &st);
        int sub = st.subscribed, failed = st.sub_failed;
        const char *err = st.last_error;
        if (failed)
            setup_error(r, "platform: the broker refused the subscription to %s", r->topic);
        else if (sub)
            set_phase(r, PH_DEVICES);
        else if (in_phase > SUBSCRIBE_WAIT_S)
            setup_error(r, "platform: no subscription on %s within %gs%s%s", r->rc->broker,
                        SUBSCRIBE_WAIT_S, err[0] ? ": " : "", err);
        break;
    }
    case PH_DEVICES:
        if (sample_crossings(r) == SIM_OK && devices_start(r) == SIM_OK) {
            r->start_ns = uv_hrtime();
            set_phase(r, PH_GATEWAY);
            if (!r->quiet)
                fprintf(stderr,
                        "sim run: %u devices up; scenario '%s', %gs at speed %g (%.1fs wall)\n",
                        r->scn->ndevices, r->scn->name, r->duration, r->ctx.speed,
                        r->duration / r->ctx.speed);
        }
        break;
    case PH_GATEWAY:
        if (!r->rc->gw_binary[0]) {
            r->reached_run = 1;
            set_phase(r, PH_RUN);
        } else if (!r->gw.spawned) {
            gateway_spawn(r);
        } else if (r->gw.exited) {
            log_tail(&r->gw, 12);
            setup_error(r, "the gateway exited (status %lld) before it came online",
                        (long long)r->gw.status);
        } else if (r->gw_ready) {
            if (!r->quiet)
                fprintf(stderr, "sim run: gateway online at t=%.1fs\n", sim_now(&r->ctx));
            r->reached_run = 1;
            set_phase(r, PH_RUN);
        } else if (in_phase > GATEWAY_WAIT_S) {
            log_tail(&r->gw, 12);
            setup_error(r, "the gateway published no online status within %gs", GATEWAY_WAIT_S);
        }
        break;
    case PH_RUN:
        if (r->gw.spawned && r->gw.exited) {
            log_tail(&r->gw, 12);
            snprintf(r->sum.setup_note, sizeof r->sum.setup_note,
                     "the gateway exited during the run (status %lld) at t=%.1fs",
                     (long long)r->gw.status, sim_now(&r->ctx));
            fprintf(stderr, "sim run: %s\n", r->sum.setup_note);
            r->end_t = sim_now(&r->ctx);
            set_phase(r, PH_GW_STOP);
            break;
        }
        if (!r->quiet && secs_since(r->last_progress_ns) >= r->progress_s) {
            r->last_progress_ns = uv_hrtime();
            progress(r);
        }
        if (sim_now(&r->ctx) >= r->duration) {
            r->end_t = r->duration;
            set_phase(r, PH_GW_STOP);
        }
        break;
    case PH_GW_STOP:
        if (!child_alive(&r->gw)) {
            set_phase(r, PH_QUIET);
        } else if (!r->gw.killed) {
            proc_cpu(r->gw.proc.pid, &r->gw_cpu);
            uv_process_kill(&r->gw.proc, SIGTERM);
            r->gw.killed = 1;
        } else if (in_phase > GW_STOP_WAIT_S && r->gw.killed == 1) {
            fprintf(stderr, "sim run: the gateway did not stop within %gs: SIGKILL\n",
                    GW_STOP_WAIT_S);
            uv_process_kill(&r->gw.proc, SIGKILL);
            r->gw.killed = 2;
        }
        break;
    case PH_QUIET: {
        double quiet_for = r->last_msg_ns ? secs_since(r->last_msg_ns) : in_phase;
        if (!r->have_client || r->setup_failed || (quiet_for >= QUIET_S && in_phase >= QUIET_S) ||
            in_phase > QUIET_MAX_S)
            set_phase(r, PH_DISCONNECT);
        break;
    }
    case PH_DISCONNECT: {
        if (!r->have_client) {
            set_phase(r, PH_STOP);
            break;
        }
        /* Also with the connection lost: a persistent session is removed
         * then too (sim_mqtt_sub_disconnect). */
        int started = 1;
        if (!r->disconnect_asked) {
            r->disconnect_asked = 1;
            started = sim_mqtt_sub_disconnect(r->client, DISCONNECT_MS, 0) == SIM_OK;
        }
        sim_mqtt_sub_state st;
        sim_mqtt_sub_state_get(r->client, &st);
        if (!started || st.disconnected || in_phase > DISCONNECT_WAIT_S) {
            session_note(r, &st);
            set_phase(r, PH_STOP);
        }
        break;
    }
    case PH_STOP:
        if (r->kinds_started) {
            device_counts(r);
            devices_stop(r);
        }
        if (!child_alive(&r->broker)) {
            set_phase(r, PH_DONE);
            close_handles(r);
        } else if (!r->broker.killed) {
            proc_cpu(r->broker.proc.pid, &r->broker_cpu);
            uv_process_kill(&r->broker.proc, SIGTERM);
            r->broker.killed = 1;
        } else if (in_phase > BROKER_STOP_WAIT_S && r->broker.killed == 1) {
            uv_process_kill(&r->broker.proc, SIGKILL);
            r->broker.killed = 2;
        }
        break;
    default:
        break;
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    run *r = h->data;
    if (r->phase >= PH_GW_STOP) {
        fprintf(stderr, "sim run: already stopping\n");
        return;
    }
    fprintf(stderr, "sim run: interrupted (signal %d): stopping\n", signum);
    if (r->phase == PH_RUN) {
        r->interrupted = 1;
        r->end_t = sim_now(&r->ctx);
        set_phase(r, PH_GW_STOP);
    } else {
        setup_error(r, "interrupted before the run started");
    }
}

/* ---- command line ---- */

static const char *arg_value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "sim run: %s needs a value\n", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

static int num_arg(const char *flag, const char *v, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (end == v || *end || errno || !(d >= lo) || d > hi) {
        fprintf(stderr, "sim run: %s: expected a number in %g..%g\n", flag, lo, hi);
        return SIM_EINVAL;
    }
    *out = d;
    return SIM_OK;
}

static void run_usage(FILE *f)
{
    fprintf(f,
            "usage: sim run SCENARIO [--speed X] [--duration D] [--broker-port N]\n"
            "               [--base-port M] [--gateway BIN] [--report FILE.json] [--csv FILE]\n"
            "               [--csv-step S] [--html FILE.html] [--progress S] [--quiet] [--keep]\n"
            "               [--capture FILE]\n");
}

/* Peer groups whose port is one of the broker's (mqtt-gauge) are its
 * clients: they follow --broker-port, not --base-port. */
static int broker_client(const sim_group *g, uint32_t p1, uint32_t p2, uint32_t p3)
{
    return g->kind && g->kind->peer && g->port && (g->port == p1 || g->port == p2 || g->port == p3);
}

/* Applies --broker-port and --base-port: moves the scenario's ports and
 * records the old -> new map the gateway config is rewritten with. */
static int apply_ports(run *r, double broker_port, double base_port)
{
    sim_run_conf *rc = r->rc;
    uint32_t old_broker = uri_port(rc->broker);
    r->broker_port = rc->broker_port ? rc->broker_port : old_broker;
    uint32_t orig_broker = r->broker_port;
    if (broker_port > 0 && strchr(rc->broker, ',')) {
        /* One port cannot stand for several nodes: say so rather than move one. */
        fprintf(stderr,
                "sim run: --broker-port moves the one broker of platform.broker; it lists "
                "several nodes (%s): give their ports in the scenario instead\n",
                rc->broker);
        return SIM_EINVAL;
    }
    if (broker_port > 0) {
        for (int i = 0; i < r->scn->ngroups; i++)
            if (broker_client(&r->scn->groups[i], old_broker, orig_broker, 0))
                r->scn->groups[i].port = (uint32_t)broker_port;
        if (old_broker && r->nports < 64)
            r->ports[r->nports++] = (port_map){old_broker, (uint32_t)broker_port, 1};
        if (rc->broker_port && rc->broker_port != old_broker && r->nports < 64)
            r->ports[r->nports++] = (port_map){rc->broker_port, (uint32_t)broker_port, 1};
        uri_set_port(rc->broker, sizeof rc->broker, (uint32_t)broker_port);
        r->broker_port = (uint32_t)broker_port;
    }
    if (rc->broker_start && !r->broker_port) {
        fprintf(stderr, "sim run: broker.start needs a port (broker.port or in platform.broker)\n");
        return SIM_EINVAL;
    }
    if (base_port > 0) {
        uint32_t keep[3] = {old_broker, orig_broker, r->broker_port};
        char err[160];
        if (sim_scenario_move_ports(r->scn, (uint32_t)base_port, keep, 3, r->ports, &r->nports, 64,
                                    err, sizeof err)) {
            fprintf(stderr, "sim run: %s\n", err);
            return SIM_EINVAL;
        }
    }
    return SIM_OK;
}

int sim_run_main(int argc, char **argv)
{
    const char *scenario = NULL, *gw_binary = NULL;
    double speed = 0, duration = 0, broker_port = 0, base_port = 0;
    char err[512];
    int code = 2;
    run *r = calloc(1, sizeof *r);
    if (!r)
        return 2;
    r->csv_step = 1;
    r->progress_s = 3;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--quiet")) {
            r->quiet = 1;
            continue;
        }
        if (!strcmp(a, "--keep")) {
            r->keep = 1;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            run_usage(stdout);
            free(r);
            return 0;
        }
        if (a[0] != '-') {
            if (scenario) {
                fprintf(stderr, "sim run: one scenario only\n");
                goto usage;
            }
            scenario = a;
            continue;
        }
        if (!(v = arg_value(argc, argv, &i)))
            goto usage;
        if (!strcmp(a, "--scenario"))
            scenario = v;
        else if (!strcmp(a, "--speed")) {
            if (num_arg(a, v, 1e-6, 1e6, &speed))
                goto usage;
        } else if (!strcmp(a, "--duration")) {
            if (sim_parse_duration(v, &duration) || !(duration > 0)) {
                fprintf(stderr, "sim run: --duration: a duration > 0 (5m)\n");
                goto usage;
            }
        } else if (!strcmp(a, "--broker-port")) {
            if (num_arg(a, v, 1, 65535, &broker_port))
                goto usage;
        } else if (!strcmp(a, "--base-port")) {
            if (num_arg(a, v, 1, 65535, &base_port))
                goto usage;
        } else if (!strcmp(a, "--gateway"))
            gw_binary = v;
        else if (!strcmp(a, "--report"))
            r->report_path = v;
        else if (!strcmp(a, "--csv"))
            r->csv_path = v;
        else if (!strcmp(a, "--capture"))
            r->capture_path = v;
        else if (!strcmp(a, "--html"))
            r->html_path = v;
        else if (!strcmp(a, "--csv-step")) {
            if (sim_parse_duration(v, &r->csv_step) || !(r->csv_step >= 0.01)) {
                fprintf(stderr, "sim run: --csv-step: a duration >= 10ms\n");
                goto usage;
            }
        } else if (!strcmp(a, "--progress")) {
            if (num_arg(a, v, 0.1, 3600, &r->progress_s))
                goto usage;
        } else {
            fprintf(stderr, "sim run: unknown option %s\n", a);
            goto usage;
        }
    }
    if (!scenario) {
        fprintf(stderr, "sim run: a scenario file is required\n");
        goto usage;
    }
    r->scn = sim_scenario_load(scenario, err, sizeof err);
    if (!r->scn) {
        fprintf(stderr, "sim run: %s\n", err);
        free(r);
        return 2;
    }
    r->rc = r->scn->run;
    if (!r->rc || !r->rc->broker[0]) {
        fprintf(stderr, "sim run: %s has no platform: {broker: ...} to watch (see docs/sim.md)\n",
                scenario);
        sim_scenario_free(r->scn);
        free(r);
        return 2;
    }
    if (gw_binary && r->rc->gw_config[0])
        snprintf(r->rc->gw_binary, sizeof r->rc->gw_binary, "%s", gw_binary);
    if (apply_ports(r, broker_port, base_port) != SIM_OK) {
        sim_scenario_free(r->scn);
        free(r);
        return 2;
    }
    r->ctx.speed = speed > 0 ? speed : r->rc->speed > 0 ? r->rc->speed : 1;
    r->duration = duration > 0 ? duration : r->rc->duration;
    r->ctx.scn = r->scn;
    r->ctx.bind = "127.0.0.1";
    r->ctx.quiet = 1; /* the kinds' own chatter; progress lines are ours */
    r->tl = sim_tl_new(MAX_READINGS_KEPT);
    if (r->tl)
        r->tl->speed = r->ctx.speed;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    r->wall_off = (double)now.tv_sec + now.tv_nsec / 1e9 - (double)uv_hrtime() / 1e9;
    if (r->html_path && !(r->html = calloc(1, sizeof *r->html)))
        r->tl = (sim_tl_free(r->tl), NULL);
    snprintf(r->tmpdir, sizeof r->tmpdir, "/tmp/sim-run.XXXXXX");
    if (!r->tl || !mkdtemp(r->tmpdir)) {
        fprintf(stderr, "sim run: cannot create a work folder: %s\n", strerror(errno));
        sim_tl_free(r->tl);
        sim_scenario_free(r->scn);
        free(r);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (r->capture_path && !(r->capture = fopen(r->capture_path, "w"))) {
        fprintf(stderr, "sim run: --capture %s: %s\n", r->capture_path, strerror(errno));
        sim_tl_free(r->tl);
        sim_scenario_free(r->scn);
        free(r);
        return 2;
    }

    r->loop = uv_default_loop();
    r->ctx.loop = r->loop;
    uv_timer_init(r->loop, &r->tick);
    uv_signal_init(r->loop, &r->sig_int);
    uv_signal_init(r->loop, &r->sig_term);
    r->tick.data = r->sig_int.data = r->sig_term.data = r;
    uv_signal_start(&r->sig_int, on_signal, SIGINT);
    uv_signal_start(&r->sig_term, on_signal, SIGTERM);
    uint64_t wall0 = uv_hrtime();
    set_phase(r, PH_BROKER);
    uv_timer_start(&r->tick, on_tick, 0, TICK_MS);
    uv_run(r->loop, UV_RUN_DEFAULT);

    for (int i = 0; i < r->scn->ngroups; i++) {
        sim_group *g = &r->scn->groups[i];
        if (g->kind && g->kstate)
            g->kind->destroy(&r->ctx, g);
    }
    if (uv_loop_close(r->loop) != 0)
        fprintf(stderr, "sim run: loop still had handles at exit\n");
    if (r->have_client) {
        drain(r);
        sim_mqtt_sub_free(r->client);
    }

    if (r->setup_failed || !r->reached_run) {
        code = 2;
        fprintf(stderr, "sim run: no verdict (setup failed); files kept in %s\n", r->tmpdir);
    } else {
        sim_verdict *v = calloc((size_t)(r->rc->nexpects ? r->rc->nexpects : 1), sizeof *v);
        int pass = 0, fail = 0;
        if (!v) {
            code = 2;
        } else {
            evaluate(r, 1, v, &pass, &fail);
            r->sum.scenario = r->scn->name;
            r->sum.speed = r->ctx.speed;
            r->sum.scenario_s = r->end_t;
            r->sum.wall_s = (double)(uv_hrtime() - wall0) / 1e9;
            r->sum.devices = r->scn->ndevices;
            r->sum.interrupted = r->interrupted;
            self_cpu(&r->sum.sim);
            r->sum.gateway = r->gw_cpu;
            r->sum.broker = r->broker_cpu;
            if (r->tl->readings_not_kept && !r->sum.setup_note[0])
                snprintf(r->sum.setup_note, sizeof r->sum.setup_note,
                         "%llu readings counted but not kept for the CSV (over %d)",
                         (unsigned long long)r->tl->readings_not_kept, MAX_READINGS_KEPT);
            int failed = sim_report_print(stdout, r->rc, v, r->tl, &r->sum);
            code = failed || r->interrupted ? 1 : 0;
            if (r->report_path && sim_report_json(r->report_path, r->rc, v, r->tl, &r->sum))
                code = code ? code : 2;
            if (r->csv_path && sim_report_csv(r->csv_path, r->scn, r->tl, r->csv_step))
                code = code ? code : 2;
            if (r->html_path &&
                sim_report_html(r->html_path, r->rc, v, r->tl, &r->sum, r->html) != SIM_OK)
                code = code ? code : 2;
            free(v);
        }
    }
    if (code != 2 && !r->keep)
        nftw(r->tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    else if (r->keep && code != 2)
        fprintf(stderr, "sim run: files kept in %s\n", r->tmpdir);
    if (r->capture && fclose(r->capture)) {
        fprintf(stderr, "sim run: --capture %s: %s\n", r->capture_path, strerror(errno));
        code = code ? code : 2;
    }
    sim_tl_free(r->tl);
    sim_scenario_free(r->scn);
    free(r->html);
    free(r);
    return code;
usage:
    run_usage(stderr);
    free(r);
    return 2;
}
