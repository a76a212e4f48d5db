/* The stand-in city platform: subscribes to the gateway's topics and prints
 * every message as one line "<topic> <payload>" (or a readable summary with
 * --pretty). The subscriber is sim/mqtt.h's: Paho's threads queue the
 * messages, this thread takes them and prints. */
#include "sim/base.h"
#include "sim/mqtt.h"
#include "sim/platform.h"
#include "sim/stats.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PLAT_QUEUE_MAX 100000 /* messages waiting to be printed; more are dropped and counted */

static volatile sig_atomic_t plat_stop;

static void on_sig(int s)
{
    (void)s;
    plat_stop = 1;
}

/* Prints bytes with line breaks escaped, so one message stays one line. */
static void put_line_safe(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n')
            fputs("\\n", stdout);
        else if (s[i] == '\r')
            fputs("\\r", stdout);
        else
            putchar(s[i]);
    }
}

static const char *jstr(const cJSON *o, const char *k, char *buf, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (cJSON_IsString(v))
        return v->valuestring;
    if (cJSON_IsNumber(v)) {
        snprintf(buf, cap, "%g", v->valuedouble);
        return buf;
    }
    if (cJSON_IsBool(v))
        return cJSON_IsTrue(v) ? "true" : "false";
    return NULL;
}

/* A few device types as a duty officer says them; others print as they are. */
static const char *type_words(const char *type)
{
    static const char *const map[][2] = {
        {"waterlogging", "积水"}, {"smoke_detector", "烟感"}, {"river", "河道水位"},
        {"rain_gauge", "雨量"},   {"tank", "水箱"},           {"manhole", "井盖"},
        {"gateway", "网关"},
    };
    for (size_t i = 0; type && i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(type, map[i][0]))
            return map[i][1];
    return type ? type : "-";
}

/* " @ <site name> (<address>)" from an item's place (or a birth's site), or "". */
static void place_words(const cJSON *place, char *out, size_t cap)
{
    char b1[8], b2[8];
    const char *name = place ? jstr(place, "name", b1, sizeof b1) : NULL;
    const char *addr = place ? jstr(place, "address", b2, sizeof b2) : NULL;
    out[0] = 0;
    if (name && addr)
        snprintf(out, cap, " @ %s (%s)", name, addr);
    else if (name || addr)
        snprintf(out, cap, " @ %s", name ? name : addr);
}

/* An alarm as a person reads it: state, level, what, where, the value against
 * the threshold it crossed (or the clear threshold it fell back past), and
 * the rule's text. */
static void print_alarm(const char *clock, const cJSON *it)
{
    char b[10][48], where[400], upper[16];
    const char *state = jstr(it, "state", b[0], sizeof b[0]);
    const char *lname = jstr(it, "level_name", b[1], sizeof b[1]);
    const char *dev = jstr(it, "device", b[2], sizeof b[2]);
    const char *metric = jstr(it, "metric", b[3], sizeof b[3]);
    const char *value = jstr(it, "value", b[4], sizeof b[4]);
    const char *unit = jstr(it, "unit", b[5], sizeof b[5]);
    const char *thr = jstr(it, "threshold", b[6], sizeof b[6]);
    const char *dir = jstr(it, "direction", b[7], sizeof b[7]);
    const char *type = jstr(it, "type", b[8], sizeof b[8]);
    const char *text = jstr(it, "text", b[9], 0);
    const cJSON *ths = cJSON_GetObjectItemCaseSensitive(it, "thresholds");
    char cb[48];
    const char *clear = ths ? jstr(ths, "clear", cb, sizeof cb) : NULL;
    int below = dir && !strcmp(dir, "below");
    int cleared = state && !strcmp(state, "cleared");
    char pb[16], lvb[16];
    const char *prev = jstr(it, "prev_level", pb, sizeof pb);
    const char *lvl = jstr(it, "level", lvb, sizeof lvb);
    /* Going down, the value is set against the clear threshold it passed. */
    int falling = cleared || (prev && lvl && atoi(lvl) < atoi(prev));
    size_t i = 0;
    for (; lname && lname[i] && i + 1 < sizeof upper; i++)
        upper[i] = (char)(lname[i] >= 'a' && lname[i] <= 'z' ? lname[i] - 32 : lname[i]);
    upper[i] = 0;
    place_words(cJSON_GetObjectItemCaseSensitive(it, "place"), where, sizeof where);
    const char *cmp = falling ? (below ? ">" : "<") : (below ? "≤" : "≥");
    const char *against = falling && clear ? clear : thr;
    printf("%s ALARM %s %s%s%s %s%s: %s %s%s%s %s %s%s%s%s%s\n", clock, state ? state : "-",
           cleared ? "" : upper, cleared ? "" : " ", type_words(type), dev ? dev : "-", where,
           metric ? metric : "-", value ? value : "-", unit ? " " : "", unit ? unit : "", cmp,
           against ? against : "-", unit ? " " : "", unit ? unit : "", text ? " — " : "",
           text ? text : "");
}

static void print_meta(const char *clock, const sim_mqtt_msg *e, const cJSON *root)
{
    char b[6][48], where[400];
    const char *kind = jstr(root, "kind", b[0], sizeof b[0]);
    if (kind && !strcmp(kind, "inventory")) {
        const char *count = jstr(root, "count", b[1], sizeof b[1]);
        printf("%s INVENTORY %s devices\n", clock, count ? count : "?");
        return;
    }
    const char *dev = jstr(root, "device", b[1], sizeof b[1]);
    const char *type = jstr(root, "type", b[2], sizeof b[2]);
    const char *vendor = jstr(root, "vendor", b[3], sizeof b[3]);
    const char *model = jstr(root, "model", b[4], sizeof b[4]);
    const char *online = jstr(root, "online", b[5], sizeof b[5]);
    place_words(cJSON_GetObjectItemCaseSensitive(root, "site"), where, sizeof where);
    printf("%s DEVICE %s %s%s%s%s%s%s %s\n", clock, dev ? dev : e->topic, type_words(type),
           vendor ? " " : "", vendor ? vendor : "", model ? " " : "", model ? model : "", where,
           online ? (!strcmp(online, "true") ? "online" : "offline") : "");
}

static void print_pretty(const sim_mqtt_msg *e)
{
    char clock[16], b1[32], b2[32], b3[32];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(clock, sizeof clock, "%H:%M:%S", &tm);
    cJSON *root = cJSON_ParseWithLength(e->payload, e->len);
    const cJSON *items = root ? cJSON_GetObjectItemCaseSensitive(root, "items") : NULL;
    if (e->len == 0 && strstr(e->topic, "/devices/")) {
        printf("%s DEVICE %s removed\n", clock, strrchr(e->topic, '/') + 1);
        return;
    }
    if (root && cJSON_GetObjectItemCaseSensitive(root, "kind") && !cJSON_IsArray(items)) {
        print_meta(clock, e, root);
        cJSON_Delete(root);
        return;
    }
    if (!cJSON_IsArray(items)) {
        printf("%s %s ", clock, e->topic);
        put_line_safe(e->payload, e->len);
        putchar('\n');
        cJSON_Delete(root);
        return;
    }
    const char *top_dev = jstr(root, "device", b3, sizeof b3);
    const char *top_type = jstr(root, "type", b1, sizeof b1);
    int alarm_topic = strstr(e->topic, "alarm") != NULL || (top_type && !strcmp(top_type, "alarm"));
    const cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        char v1[32], v2[32], v3[32], v4[32];
        const char *dev = jstr(it, "device", v1, sizeof v1);
        const char *metric = jstr(it, "metric", v2, sizeof v2);
        const char *level = jstr(it, "level", v3, sizeof v3);
        const char *state = jstr(it, "state", v4, sizeof v4);
        const char *type = jstr(it, "type", b2, sizeof b2);
        if (!dev)
            dev = top_dev ? top_dev : "-";
        if (!metric)
            metric = jstr(it, "key", b2, sizeof b2);
        const char *event = jstr(it, "event", b1, sizeof b1);
        char fb[32], cb[32], xb[64];
        if (jstr(it, "forecast", fb, sizeof fb)) {
            const char *lead = jstr(it, "lead_min", fb, sizeof fb);
            const char *cross = jstr(it, "crossing", cb, sizeof cb);
            const char *detail = jstr(it, "detail", xb, sizeof xb);
            printf("%s FORECAST %-9s %s %s level=%s crossing=%s lead=%s min%s%s\n", clock,
                   state ? state : "-", dev, metric ? metric : "-", level ? level : "-",
                   cross ? cross : "-", lead ? lead : "-", detail ? " " : "", detail ? detail : "");
        } else if (alarm_topic || level || (type && !strcmp(type, "alarm"))) {
            print_alarm(clock, it);
        } else if (event) {
            char ab[32], db[64], where[400];
            const char *active = jstr(it, "active", ab, sizeof ab);
            const char *detail = jstr(it, "detail", db, sizeof db);
            place_words(cJSON_GetObjectItemCaseSensitive(it, "place"), where, sizeof where);
            printf("%s EVENT %s%s %s%s%s%s\n", clock, dev, where, event,
                   active && !strcmp(active, "false") ? " (ended)" : "", detail ? " " : "",
                   detail ? detail : "");
        } else {
            char vb[32], ub[32], qb[32];
            const char *value = jstr(it, "value", vb, sizeof vb);
            const char *unit = jstr(it, "unit", ub, sizeof ub);
            const char *q = jstr(it, "quality", qb, sizeof qb);
            printf("%s %s %s = %s%s%s [%s]\n", clock, dev, metric ? metric : "-",
                   value ? value : "null", unit ? " " : "", unit ? unit : "", q ? q : "?");
        }
    }
    cJSON_Delete(root);
}

static int read_password(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "sim: platform: %s: %s\n", path, strerror(errno));
        return SIM_ERR;
    }
    if (!fgets(out, (int)cap, f))
        out[0] = 0;
    fclose(f);
    out[strcspn(out, "\r\n")] = 0;
    return SIM_OK;
}

static int parse_num_arg(const char *flag, const char *v, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (end == v || *end || errno || d < lo || d > hi) {
        fprintf(stderr, "sim: %s: expected a number in %g..%g\n", flag, lo, hi);
        return SIM_EINVAL;
    }
    *out = d;
    return SIM_OK;
}

int sim_platform_main(int argc, char **argv)
{
    const char *broker = NULL, *topic = "#", *ca = NULL, *user = NULL, *pwfile = NULL;
    char client_id[64], password[256] = "";
    double count = 0, timeout = 0, qos = 1;
    int pretty = 0, rc = 0, named = 0;
    snprintf(client_id, sizeof client_id, "sim-platform-%ld", (long)getpid());
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (!strcmp(a, "--pretty")) {
            pretty = 1;
            continue;
        }
        if (!has_val) {
            fprintf(stderr, "sim: %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--broker"))
            broker = v;
        else if (!strcmp(a, "--topic"))
            topic = v;
        else if (!strcmp(a, "--count")) {
            if (parse_num_arg(a, v, 1, 1e12, &count))
                return 2;
        } else if (!strcmp(a, "--timeout")) {
            if (parse_num_arg(a, v, 0.001, 1e7, &timeout))
                return 2;
        } else if (!strcmp(a, "--qos")) {
            if (parse_num_arg(a, v, 0, 2, &qos))
                return 2;
        } else if (!strcmp(a, "--client-id")) {
            snprintf(client_id, sizeof client_id, "%s", v);
            named = 1;
        } else if (!strcmp(a, "--ca"))
            ca = v;
        else if (!strcmp(a, "--user"))
            user = v;
        else if (!strcmp(a, "--password-file"))
            pwfile = v;
        else {
            fprintf(stderr, "sim: platform: unknown option %s\n", a);
            return 2;
        }
    }
    if (!broker) {
        fprintf(stderr, "sim: platform: --broker URI is required (tcp://127.0.0.1:1883)\n");
        return 2;
    }
    if (pwfile && read_password(pwfile, password, sizeof password))
        return 2;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sig;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* A persistent session (several broker nodes) stays only under a client
     * id the operator chose, which a later run can resume; the generated one
     * names this process and is removed at the end. */
    sim_mqtt_sub_opts so = {broker,   client_id,      topic,           (int)qos, ca,   user,
                            password, PLAT_QUEUE_MAX, "sim: platform", 0,        named};
    char err[300];
    sim_mqtt_sub *p = sim_mqtt_sub_start(&so, err, sizeof err);
    if (!p) {
        fprintf(stderr, "sim: platform: %s\n", err);
        return strncmp(err, "bad broker", 10) == 0 ? 2 : 3;
    }

    struct timespec start, deadline;
    clock_gettime(CLOCK_MONOTONIC, &start);
    deadline = start;
    if (timeout > 0) {
        deadline.tv_sec += (time_t)timeout;
        deadline.tv_nsec += (long)((timeout - (double)(time_t)timeout) * 1e9);
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    uint64_t got = 0;
    int reported_error = 0, announced = 0;
    for (;;) {
        /* Wake at least every 200 ms to notice signals and the deadline. */
        int wait_ms = 200;
        if (timeout > 0) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            double left = (double)(deadline.tv_sec - now.tv_sec) * 1e3 +
                          (double)(deadline.tv_nsec - now.tv_nsec) / 1e6;
            wait_ms = left < 0 ? 0 : left < 200 ? (int)left + 1 : 200;
        }
        sim_mqtt_msg *batch = plat_stop ? NULL : sim_mqtt_sub_take(p, wait_ms);
        sim_mqtt_sub_state st;
        sim_mqtt_sub_state_get(p, &st);
        if (st.subscribed && !announced) {
            fprintf(stderr, "sim: platform subscribed to %s\n", topic);
            announced = 1;
        }
        if (!reported_error && st.last_error[0] && !st.connected_once) {
            fprintf(stderr, "sim: platform: connect failed: %s (retrying)\n", st.last_error);
            reported_error = 1;
        }
        int done = 0;
        while (batch) {
            sim_mqtt_msg *e = batch;
            batch = e->next;
            if (!done) {
                if (pretty) {
                    print_pretty(e);
                } else {
                    fputs(e->topic, stdout);
                    putchar(' ');
                    put_line_safe(e->payload, e->len);
                    putchar('\n');
                }
                fflush(stdout);
                got++;
                if (count > 0 && got >= (uint64_t)count)
                    done = 1;
            }
            free(e);
        }
        if (done)
            break;
        if (st.sub_failed) {
            fprintf(stderr, "sim: platform: subscribe to %s refused\n", topic);
            rc = 3;
            break;
        }
        if (plat_stop)
            break;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (timeout > 0 && (now.tv_sec > deadline.tv_sec ||
                            (now.tv_sec == deadline.tv_sec && now.tv_nsec >= deadline.tv_nsec))) {
            if (count > 0) {
                fprintf(stderr, "sim: platform: timeout after %llu of %.0f messages\n",
                        (unsigned long long)got, count);
                rc = 1;
            }
            break;
        }
    }

    sim_mqtt_sub_disconnect(p, 2000, 10000);
    sim_mqtt_sub_state st;
    sim_mqtt_sub_state_get(p, &st);
    sim_mqtt_sub_free(p);
    if (st.persistent && st.connected_once && !named && !st.session_removed)
        fprintf(stderr, "sim: platform: could not remove the session %s from the broker (%s)\n",
                client_id, st.remove_error[0] ? st.remove_error : "no answer in time");
    else if (st.persistent && st.connected_once)
        fprintf(stderr, "sim: platform: session %s %s\n", client_id,
                named ? "kept in the broker (--client-id)" : "removed from the broker");
    if (st.dropped)
        fprintf(stderr, "sim: platform: %llu messages dropped (print queue full)\n",
                (unsigned long long)st.dropped);
    fprintf(stderr, "sim: platform received %llu messages\n", (unsigned long long)got);
    sim_stats_print_cpu(stderr);
    return rc;
}
