/* `gateway admin`: the admin socket's client. It sends one command line and
 * prints the answer: the JSON as it came with --json (for scripts), or a
 * table for people. The socket is found from --socket, else from the config
 * given with -c, else from the packaged config when it exists. */
#include "gateway/admin.h"

#include "gateway/config.h"
#include "base/model.h"
#include "gateway/status.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define PACKAGED_CONFIG "/etc/citygw/citygw.yaml"
#define FALLBACK_SOCKET "/var/lib/gw/admin.sock"
#define REPLY_MAX (64u << 20) /* bound on an answer (10,000 devices are ~3 MiB) */
#define WAIT_MS 10000

static void usage(FILE *f)
{
    fprintf(f,
            "usage: gateway admin [--socket PATH | -c CONFIG] [--json] VERB\n"
            "verbs:\n"
            "  status                      counters, outbox, uplink and health\n"
            "  devices                     every device: state, last heard, site\n"
            "  device ID                   one device with its last values\n"
            "  alarms                      active alarms by level\n"
            "  ack ALARM-ID [BY]           acknowledge an active alarm\n"
            "  device ID VERB [ARG]        a protocol command on a device (e.g. query)\n"
            "  cmd NAME [JSON]             a platform command, run locally (docs/uplink.md)\n"
            "The socket: --socket, else gateway.admin_socket of -c CONFIG, else of "
            "%s when it exists, else %s.\n",
            PACKAGED_CONFIG, FALLBACK_SOCKET);
}

/* Sends line, collects the whole answer into b (bounded in size and time). */
static int request(const char *path, const char *line, gw_sbuf *b)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
        fprintf(stderr, "gateway admin: %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return 1;
    }
    /* A gateway that refuses us (peer check, busy) answers and closes: the
     * write may then fail with EPIPE, which must not kill this process before
     * it says why. */
    int wrote = send(fd, line, strlen(line), MSG_NOSIGNAL) >= 0;
    int werr = errno;
    char buf[65536];
    ssize_t n = 0;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    while (b->len < REPLY_MAX && poll(&pfd, 1, WAIT_MS) > 0 && (n = read(fd, buf, sizeof(buf))) > 0)
        gw_sbuf_put(b, buf, (size_t)n);
    close(fd);
    if (b->oom || !b->p) {
        if (!wrote)
            fprintf(stderr,
                    "gateway admin: %s: the gateway closed the connection (%s): not allowed "
                    "for this user, or busy\n",
                    path, strerror(werr));
        else
            fprintf(stderr, "gateway admin: no answer from %s\n", path);
        return 1;
    }
    return 0;
}

static const char *str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : cJSON_IsTrue(v) ? 1 : 0;
}

static void age_text(char *out, size_t cap, const cJSON *v)
{
    if (!cJSON_IsNumber(v))
        snprintf(out, cap, "never");
    else if (v->valuedouble < 120)
        snprintf(out, cap, "%.0fs", v->valuedouble);
    else if (v->valuedouble < 7200)
        snprintf(out, cap, "%.0fm", v->valuedouble / 60);
    else
        snprintf(out, cap, "%.1fh", v->valuedouble / 3600);
}

static void print_status(const cJSON *j)
{
    const cJSON *ob = cJSON_GetObjectItemCaseSensitive(j, "outbox");
    const cJSON *up = cJSON_GetObjectItemCaseSensitive(j, "uplink");
    const cJSON *he = cJSON_GetObjectItemCaseSensitive(j, "health");
    printf("gateway        %s\n", str(j, "gateway"));
    printf("health         %s\n", str(he, "status"));
    const cJSON *r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(he, "reasons")) if (cJSON_IsString(r))
        printf("               - %s\n", r->valuestring);
    printf("devices        %.0f (%.0f online, %.0f offline)\n", num(j, "devices"), num(j, "online"),
           num(j, "offline"));
    printf("readings       %.0f accepted, %.0f refused (queue full)\n", num(j, "readings"),
           num(j, "refused_queue_full"));
    printf("active alarms  %.0f\n", num(j, "active_alarms"));
    printf(
        "outbox         %.0f priority + %.0f telemetry rows, %.0f of %.0f bytes, oldest %.0f s\n",
        num(ob, "rows_priority"), num(ob, "rows_telemetry"), num(ob, "bytes"), num(ob, "max_bytes"),
        num(ob, "oldest_telemetry_s"));
    printf("uplink         %s %s, %.0f in flight, %.0f rows acknowledged\n", str(up, "uri"),
           num(up, "connected") ? "connected" : "DOWN", num(up, "in_flight"),
           num(up, "rows_acked"));
}

static void print_devices(const cJSON *j)
{
    const cJSON *devs = cJSON_GetObjectItemCaseSensitive(j, "devices");
    int wid = 2, wty = 4;
    const cJSON *d;
    cJSON_ArrayForEach(d, devs)
    {
        int a = (int)strlen(str(d, "id")), b = (int)strlen(str(d, "type"));
        wid = a > wid ? a : wid;
        wty = b > wty ? b : wty;
    }
    printf("%-*s  %-*s  %-12s  %-7s  %6s  %s\n", wid, "ID", wty, "TYPE", "PROTOCOL", "STATE",
           "SEEN", "SITE");
    cJSON_ArrayForEach(d, devs)
    {
        char age[16];
        age_text(age, sizeof(age), cJSON_GetObjectItemCaseSensitive(d, "seen_age_s"));
        printf("%-*s  %-*s  %-12s  %-7s  %6s  %s\n", wid, str(d, "id"), wty, str(d, "type"),
               str(d, "protocol"), str(d, "state"), age, str(d, "site"));
    }
    printf("%.0f devices\n", num(j, "total"));
}

static void print_device(const cJSON *d)
{
    char age[16];
    age_text(age, sizeof(age), cJSON_GetObjectItemCaseSensitive(d, "seen_age_s"));
    printf("device    %s (%s over %s)\nsite      %s\nstate     %s, last heard %s ago\n"
           "polls     %.0f (%.0f failed), %.0f readings\n",
           str(d, "id"), str(d, "type"), str(d, "protocol"), str(d, "site"), str(d, "state"), age,
           num(d, "polls"), num(d, "polls_failed"), num(d, "readings"));
    printf("%-24s  %14s  %-8s  %-9s  %s\n", "METRIC", "VALUE", "UNIT", "QUALITY", "AGE");
    const cJSON *v;
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(d, "values"))
    {
        age_text(age, sizeof(age), cJSON_GetObjectItemCaseSensitive(v, "age_s"));
        printf("%-24s  %14.6g  %-8s  %-9s  %s\n", str(v, "metric"), num(v, "value"), str(v, "unit"),
               str(v, "quality"), age);
    }
}

static void print_alarms(const cJSON *j)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "alarms");
    int wid = 2;
    const cJSON *a;
    cJSON_ArrayForEach(a, list)
    {
        int n = (int)strlen(str(a, "id"));
        wid = n > wid ? n : wid;
    }
    printf("%-*s  %-6s  %-5s  %-16s  %-16s  %12s  %s\n", wid, "ID", "LEVEL", "ACKED", "DEVICE",
           "METRIC", "VALUE", "RAISED (UTC)");
    /* Highest level first. */
    for (int level = 4; level >= 0; level--) {
        cJSON_ArrayForEach(a, list)
        {
            if ((int)num(a, "level") != level)
                continue;
            time_t t = (time_t)(num(a, "raised_ms") / 1000);
            struct tm tm;
            char when[32];
            gmtime_r(&t, &tm);
            strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
            printf("%-*s  %-6s  %-5s  %-16s  %-16s  %12.6g  %s\n", wid, str(a, "id"),
                   str(a, "level_name"), num(a, "acked") ? "yes" : "no", str(a, "device"),
                   str(a, "metric"), num(a, "value"), when);
        }
    }
    printf("%.0f active\n", num(j, "active"));
}

int gw_admin_main(int argc, char **argv)
{
    const char *sock = NULL, *config = NULL;
    int json = 0, i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--socket") && i + 1 < argc) {
            sock = argv[++i];
        } else if (!strcmp(argv[i], "-c") && i + 1 < argc) {
            config = argv[++i];
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (i == argc) {
        usage(stderr);
        return 2;
    }
    char path[108];
    if (!sock) {
        if (!config && access(PACKAGED_CONFIG, R_OK) == 0)
            config = PACKAGED_CONFIG;
        if (config) {
            gw_config cfg;
            char err[1024];
            if (gw_config_load(&cfg, config, err, sizeof(err))) {
                fprintf(stderr, "gateway admin: %s\n", err);
                return 1;
            }
            gw_strlcpy(path, cfg.admin_socket, sizeof(path)); /* a socket path fits 108 */
            gw_config_free(&cfg);
            if (!path[0]) {
                fprintf(stderr, "gateway admin: %s disables the admin socket\n", config);
                return 1;
            }
            sock = path;
        } else {
            sock = FALLBACK_SOCKET;
        }
    }
    char line[512] = "";
    for (int k = i; k < argc; k++) {
        if (strlen(line) + strlen(argv[k]) + 2 >= sizeof(line)) {
            fprintf(stderr, "gateway admin: command too long\n");
            return 2;
        }
        strcat(line, argv[k]);
        strcat(line, k + 1 < argc ? " " : "\n");
    }
    gw_sbuf b = {0};
    if (request(sock, line, &b))
        return 1;
    if (!strncmp(b.p, "error:", 6)) {
        fputs(b.p, stderr);
        gw_sbuf_free(&b);
        return 1;
    }
    const char *verb = argv[i];
    int tabular = !strcmp(verb, "status") || !strcmp(verb, "devices") || !strcmp(verb, "alarms") ||
                  (!strcmp(verb, "device") && argc - i == 2);
    cJSON *j = tabular && !json ? cJSON_Parse(b.p) : NULL;
    if (!j) {
        fputs(b.p, stdout);
    } else if (verb[0] == 's') {
        print_status(j);
    } else if (!strcmp(verb, "devices")) {
        print_devices(j);
    } else if (verb[0] == 'd') {
        print_device(j);
    } else {
        print_alarms(j);
    }
    cJSON_Delete(j);
    gw_sbuf_free(&b);
    return 0;
}
