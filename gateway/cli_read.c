/* gateway read: polls one Modbus device with a profile and prints the decoded
 * readings, for a vendor checking a register map on the bench. --raw shows the
 * wire too: each planned request, the words (or bits) that came back in hex or
 * the exception by name, and each point's own words beside its value. --watch
 * repeats until Ctrl-C or --count reads. A command-line tool may block, so it
 * uses libmodbus directly (TCP or RTU); the requests and the decoding are the
 * gateway's own (gw_profile_*). check-profile --against runs the same read. */
#include "adapters/modbus_profile.h"
#include "base/cfgmap.h"
#include "base/embedded.h"
#include "base/model.h"
#include "gateway/cli.h"
#include "protocols/modbus_common.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <modbus.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define MAX_SITE 8
#define MAX_DIRS 4
#define REQ_BUF 256 /* bytes of one answer: 125 registers or 2000 bits */

static void usage(void)
{
    fprintf(stderr,
            "usage: gateway read --profile NAME|FILE.yaml (--connect tcp://HOST:PORT | --rtu DEV\n"
            "                    [--baud 9600] [--parity N|E|O] [--stop-bits 1|2]) [--unit N]\n"
            "                    [--timeout MS] [--param KEY=VALUE]... [--profile-dir DIR]...\n"
            "                    [--raw] [--watch INTERVAL [--count N]] [--strict] [--json]\n");
}

static const char *fc_name(int fc)
{
    static const char *const names[] = {"derived", "coils", "discrete inputs", "holding registers",
                                        "input registers"};
    return fc >= 0 && fc <= 4 ? names[fc] : "?";
}

/* One read of the whole plan: the answers and what the printers need. */
struct cycle {
    const gw_profile *p;
    const gw_mb_request *reqs;
    size_t n;
    gw_mb_result *res;
    uint8_t *bufs; /* n * REQ_BUF */
    int json, raw, strict;
    int printed, bad;
};

/* A point's own words (registers) or bit as text, from the answer of the request
 * that covers it; "" for a derived point or a failed request. */
static void point_raw(const struct cycle *c, const gw_profile_point_info *pi, char *out, size_t cap)
{
    out[0] = '\0';
    for (size_t i = 0; pi->fc && i < c->n; i++) {
        const gw_mb_request *q = &c->reqs[i];
        if (q->fc != pi->fc || pi->address < q->addr || pi->address >= q->addr + q->count)
            continue;
        if (c->res[i].status != 0)
            return;
        unsigned off = pi->address - q->addr;
        size_t len = 0;
        for (unsigned k = 0; k < pi->count && len + 6 < cap; k++) {
            unsigned o = off + k;
            if (q->fc <= 2)
                len += (size_t)snprintf(out + len, cap - len, "%u",
                                        (c->res[i].data[o / 8] >> (o % 8)) & 1u);
            else
                len += (size_t)snprintf(out + len, cap - len, "%s%02X%02X", k ? " " : "",
                                        c->res[i].data[2 * o], c->res[i].data[2 * o + 1]);
        }
        return;
    }
}

static int print_reading(void *ctx, const gw_reading *r)
{
    struct cycle *c = ctx;
    char raw[64] = "";
    gw_profile_point_info pi;
    int idx = gw_profile_metric_find(c->p, r->metric);
    if (c->raw && idx >= 0 && gw_profile_point_get(c->p, (size_t)idx, &pi) == 0)
        point_raw(c, &pi, raw, sizeof(raw));
    /* Printed as it will be published (the profile's decimals). */
    double v = r->value;
    if (r->places) {
        double scale = 1;
        for (int i = 1; i < r->places; i++)
            scale *= 10;
        v = round(v * scale) / scale + 0.0;
    }
    if (c->json) {
        printf("%s{\"metric\": \"%s\", \"value\": %.10g, \"unit\": \"%s\", \"quality\": \"%s\"",
               c->printed ? ",\n " : "[", r->metric, v, r->unit, gw_quality_name(r->quality));
        if (r->reason)
            printf(", \"reason\": \"%s\"", gw_reason_name(r->reason));
        if (c->raw)
            printf(", \"raw\": \"%s\"", raw);
        printf("}");
    } else {
        printf("%-24s %14.10g %-10s %-9s %-12s %s\n", r->metric, v, r->unit,
               gw_quality_name(r->quality), r->reason ? gw_reason_name(r->reason) : "", raw);
    }
    c->bad |= r->quality != GW_Q_GOOD;
    c->printed++;
    return GW_OK;
}

static int print_event(void *ctx, const gw_event *e)
{
    struct cycle *c = ctx;
    if (c->json)
        printf("%s{\"event\": \"%s\", \"active\": %s, \"text\": \"%s\"}", c->printed ? ",\n " : "[",
               e->kind, e->active ? "true" : "false", e->detail);
    else
        printf("%-24s %14s %-10s %-9s %-12s %s\n", e->kind, e->active ? "ACTIVE" : "inactive",
               "(event)", "", "", e->detail);
    c->printed++;
    return GW_OK;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads one planned request into buf (wire order). Returns the status as in
 * gw_mb_result. */
static int read_one(modbus_t *ctx, const gw_mb_request *q, uint8_t *buf, int quiet)
{
    uint16_t regs[125];
    uint8_t bits[2000];
    int rc;
    switch (q->fc) {
    case 1:
        rc = modbus_read_bits(ctx, q->addr, q->count, bits);
        break;
    case 2:
        rc = modbus_read_input_bits(ctx, q->addr, q->count, bits);
        break;
    case 3:
        rc = modbus_read_registers(ctx, q->addr, q->count, regs);
        break;
    default:
        rc = modbus_read_input_registers(ctx, q->addr, q->count, regs);
        break;
    }
    if (rc == -1) {
        int e = errno;
        if (!quiet)
            fprintf(stderr, "gateway read: fc %u at %u x %u: %s\n", q->fc, q->addr, q->count,
                    modbus_strerror(e));
        if (e > MODBUS_ENOBASE && e <= EMBXGTAR)
            return e - MODBUS_ENOBASE;
        return e == ETIMEDOUT ? GW_EAGAIN : GW_EMALFORMED;
    }
    if (rc != q->count)
        return GW_EMALFORMED;
    if (q->fc <= 2) {
        memset(buf, 0, (size_t)(q->count + 7) / 8);
        for (int k = 0; k < q->count; k++)
            if (bits[k])
                buf[k / 8] |= (uint8_t)(1u << (k % 8));
    } else {
        for (int k = 0; k < q->count; k++) {
            buf[2 * k] = (uint8_t)(regs[k] >> 8);
            buf[2 * k + 1] = (uint8_t)regs[k];
        }
    }
    return 0;
}

/* The names of the points a request reads, comma separated. */
static void request_points(const gw_profile *p, const gw_mb_request *q, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < gw_profile_point_count(p) && len < cap; i++) {
        gw_profile_point_info pi;
        if (gw_profile_point_get(p, i, &pi) || pi.fc != q->fc || pi.address < q->addr ||
            pi.address >= q->addr + q->count)
            continue;
        int n = snprintf(out + len, cap - len, "%s%s", len ? ", " : "", pi.name);
        len += n > 0 ? (size_t)n : 0;
    }
}

static void print_request(const struct cycle *c, size_t i)
{
    const gw_mb_request *q = &c->reqs[i];
    const gw_mb_result *r = &c->res[i];
    char names[256];
    request_points(c->p, q, names, sizeof(names));
    printf("request %zu/%zu: FC %02u %s 0x%04X..0x%04X (%u): %s\n", i + 1, c->n, q->fc,
           fc_name(q->fc), q->addr, q->addr + q->count - 1u, q->count, names);
    if (r->status > 0) {
        printf("  <- exception %02X %s\n", (unsigned)r->status, gw_mb_exception_name(r->status));
    } else if (r->status < 0) {
        printf("  <- %s\n", r->status == GW_EAGAIN ? "no answer (timeout)" : "malformed answer");
    } else {
        printf("  <-");
        for (unsigned k = 0; k < q->count; k++) {
            if (q->fc <= 2)
                printf("%s%u", k % 8 ? "" : " ", (r->data[k / 8] >> (k % 8)) & 1u);
            else
                printf(" %02X%02X", r->data[2 * k], r->data[2 * k + 1]);
            if (k % 16 == 15 && k + 1 < q->count)
                printf("\n    ");
        }
        printf("\n");
    }
}

/* Reads and prints the plan once. Returns 0 when every request was answered (and, with
 * strict, every reading is good), 1 otherwise. */
static int run_cycle(modbus_t *ctx, struct cycle *c, const gw_param *site, size_t nsite)
{
    int failed = 0;
    for (size_t i = 0; i < c->n; i++) {
        uint8_t *buf = c->bufs + i * REQ_BUF;
        c->res[i].status = read_one(ctx, &c->reqs[i], buf, c->raw);
        c->res[i].data = c->res[i].status == 0 ? buf : NULL;
        c->res[i].len = c->res[i].status != 0 ? 0
                        : c->reqs[i].fc <= 2  ? (size_t)(c->reqs[i].count + 7) / 8
                                              : (size_t)c->reqs[i].count * 2;
        if (c->res[i].status == GW_EAGAIN)
            modbus_flush(ctx);
        if (c->raw && !c->json)
            print_request(c, i);
        failed |= c->res[i].status != 0;
    }
    if (!c->json)
        printf("%-24s %14s %-10s %-9s %-12s %s\n", "METRIC", "VALUE", "UNIT", "QUALITY", "REASON",
               c->raw ? "RAW" : "");
    c->printed = 0;
    c->bad = 0;
    gw_sink sink = {print_reading, print_event, c};
    gw_profile_decode(c->p, site, nsite, c->res, c->n, now_ms(), &sink);
    if (c->json)
        printf("%s]\n", c->printed ? "" : "[");
    fflush(stdout);
    return failed || (c->strict && c->bad) ? 1 : 0;
}

/* The profiles a --profile NAME may be: built in, and *.yaml in the given folders. */
static void list_profiles(const char *const *dirs, int ndirs)
{
    const char *prefix = "adapters/profiles/";
    fprintf(stderr, "built-in profiles:");
    for (const struct gw_embedded *e = gw_embedded_files; e->name; e++) {
        size_t l = strlen(e->name);
        if (!strncmp(e->name, prefix, strlen(prefix)) && l > 5 && !strcmp(e->name + l - 5, ".yaml"))
            fprintf(stderr, " %.*s", (int)(l - strlen(prefix) - 5), e->name + strlen(prefix));
    }
    fprintf(stderr, "\n");
    for (int i = 0; i < ndirs; i++) {
        DIR *d = opendir(dirs[i]);
        fprintf(stderr, "profiles in %s:", dirs[i]);
        for (struct dirent *de; d && (de = readdir(d));) {
            size_t l = strlen(de->d_name);
            if (l > 5 && !strcmp(de->d_name + l - 5, ".yaml"))
                fprintf(stderr, " %.*s", (int)(l - 5), de->d_name);
        }
        fprintf(stderr, "%s\n", d ? "" : " (cannot open the folder)");
        if (d)
            closedir(d);
    }
    if (ndirs == 0)
        fprintf(stderr, "(--profile-dir DIR adds a folder of your own; a path to a .yaml file "
                        "works too)\n");
}

/* A profile named with a '/' or ending in .yaml is a file; a name is looked up in the
 * folders, then among the built-in ones, as the gateway does (profile_dirs). */
static int load_profile(const char *name, const char *const *dirs, int ndirs, gw_profile **p)
{
    char err[512], path[512];
    size_t nl = strlen(name);
    int rc = GW_ENOTFOUND;
    if (strchr(name, '/') || (nl > 5 && !strcmp(name + nl - 5, ".yaml"))) {
        rc = gw_profile_load_file(p, name, err, sizeof(err));
    } else {
        for (int i = 0; i < ndirs && rc == GW_ENOTFOUND; i++) {
            struct stat st;
            snprintf(path, sizeof(path), "%s/%s.yaml", dirs[i], name);
            if (stat(path, &st) == 0)
                rc = gw_profile_load_file(p, path, err, sizeof(err));
        }
        if (rc == GW_ENOTFOUND)
            rc = gw_profile_load_embedded(p, name, err, sizeof(err));
        if (rc == GW_ENOTFOUND) {
            fprintf(stderr, "gateway read: no profile '%s'\n", name);
            list_profiles(dirs, ndirs);
            return 1;
        }
    }
    if (rc) {
        fprintf(stderr, "gateway read: %s\n", err);
        return 1;
    }
    return 0;
}

static volatile sig_atomic_t stop_requested;

static void on_sigint(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* Sleeps ms unless Ctrl-C comes first. */
static void pause_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (!stop_requested && nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

int gw_cli_read(int argc, char **argv)
{
    const char *profile = NULL, *connect = NULL, *rtu = NULL;
    const char *dirs[MAX_DIRS];
    int ndirs = 0;
    long unit = 1, baud = 9600, stop_bits = 1, timeout = 1000, count = 0;
    int64_t watch_ms = 0;
    char parity = 'N';
    int json = 0, raw = 0, strict = 0;
    gw_param site[MAX_SITE];
    size_t nsite = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "--json") || !strcmp(a, "--raw") || !strcmp(a, "--strict")) {
            *(a[2] == 'j' ? &json : a[2] == 'r' ? &raw : &strict) = 1;
            continue;
        }
        if (!v) {
            usage();
            return 2;
        }
        i++;
        if (!strcmp(a, "--profile"))
            profile = v;
        else if (!strcmp(a, "--profile-dir") && ndirs < MAX_DIRS)
            dirs[ndirs++] = v;
        else if (!strcmp(a, "--connect"))
            connect = v;
        else if (!strcmp(a, "--rtu"))
            rtu = v;
        else if (!strcmp(a, "--unit"))
            unit = strtol(v, &end, 10);
        else if (!strcmp(a, "--baud"))
            baud = strtol(v, &end, 10);
        else if (!strcmp(a, "--stop-bits"))
            stop_bits = strtol(v, &end, 10);
        else if (!strcmp(a, "--timeout"))
            timeout = strtol(v, &end, 10);
        else if (!strcmp(a, "--count"))
            count = strtol(v, &end, 10);
        else if (!strcmp(a, "--watch")) {
            if (gw_parse_duration_ms(v, &watch_ms) || watch_ms < 100 || watch_ms > 86400000) {
                fprintf(stderr,
                        "gateway read: --watch takes an interval from 100ms to 1d, like "
                        "2s (got '%s')\n",
                        v);
                return 2;
            }
        } else if (!strcmp(a, "--parity") && strlen(v) == 1 && strchr("NEO", v[0]))
            parity = v[0];
        else if (!strcmp(a, "--param") && nsite < MAX_SITE && strchr(v, '=')) {
            const char *eq = strchr(v, '=');
            size_t kl = (size_t)(eq - v);
            if (kl == 0 || kl >= sizeof(site[0].key)) {
                usage();
                return 2;
            }
            memcpy(site[nsite].key, v, kl);
            site[nsite].key[kl] = '\0';
            site[nsite].value = strtod(eq + 1, &end);
            nsite++;
        } else {
            usage();
            return 2;
        }
        if (end && *end) {
            fprintf(stderr, "gateway read: %s: '%s' is not a number\n", a, v);
            return 2;
        }
    }
    if (!profile || (!connect == !rtu) || unit < 0 || unit > 255 || timeout < 1 ||
        timeout > 60000 || (stop_bits != 1 && stop_bits != 2) || count < 0 ||
        (count && !watch_ms)) {
        usage();
        return 2;
    }

    gw_profile *p = NULL;
    if (load_profile(profile, dirs, ndirs, &p))
        return 1;

    modbus_t *ctx = NULL;
    if (connect) {
        char host[128];
        const char *hp = strncmp(connect, "tcp://", 6) == 0 ? connect + 6 : NULL;
        const char *colon = hp ? strrchr(hp, ':') : NULL;
        char *end = NULL;
        long port = colon ? strtol(colon + 1, &end, 10) : 0;
        if (!colon || (size_t)(colon - hp) >= sizeof(host) || *end || port < 1 || port > 65535) {
            fprintf(stderr, "gateway read: --connect must be tcp://HOST:PORT\n");
            gw_profile_free(p);
            return 2;
        }
        memcpy(host, hp, (size_t)(colon - hp));
        host[colon - hp] = '\0';
        ctx = modbus_new_tcp(host, (int)port);
    } else {
        ctx = modbus_new_rtu(rtu, (int)baud, parity, 8, (int)stop_bits);
    }
    if (!ctx || modbus_connect(ctx) == -1) {
        fprintf(stderr, "gateway read: cannot connect to %s: %s\n", connect ? connect : rtu,
                modbus_strerror(errno));
        if (ctx)
            modbus_free(ctx);
        gw_profile_free(p);
        return 1;
    }
    modbus_set_slave(ctx, (int)unit);
    modbus_set_response_timeout(ctx, (uint32_t)(timeout / 1000), (uint32_t)(timeout % 1000) * 1000);

    struct cycle c = {.p = p, .json = json, .raw = raw, .strict = strict};
    c.n = gw_profile_requests(p, &c.reqs);
    c.res = calloc(c.n ? c.n : 1, sizeof(*c.res));
    c.bufs = calloc(c.n ? c.n : 1, REQ_BUF);
    int failed = 0;
    if (!c.res || !c.bufs) {
        fprintf(stderr, "gateway read: out of memory\n");
        failed = 1;
    }
    /* Ctrl-C ends a watch between reads: the connection is closed and the exit is clean. */
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    stop_requested = 0;
    if (watch_ms) {
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
    }
    long done = 0;
    while (!failed || watch_ms) {
        if (c.res == NULL || c.bufs == NULL)
            break;
        if (watch_ms && !json) {
            char when[32];
            time_t t = time(NULL);
            strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
            printf("--- read %ld at %s\n", done + 1, when);
        }
        failed |= run_cycle(ctx, &c, site, nsite);
        done++;
        if (!watch_ms || (count && done >= count) || stop_requested)
            break;
        pause_ms(watch_ms);
        if (stop_requested)
            break;
    }
    if (watch_ms) {
        if (!json)
            printf("--- %ld read%s%s\n", done, done == 1 ? "" : "s",
                   stop_requested ? ", stopped by signal" : "");
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
    }
    free(c.res);
    free(c.bufs);
    modbus_close(ctx);
    modbus_free(ctx);
    gw_profile_free(p);
    return failed ? 1 : 0;
}
