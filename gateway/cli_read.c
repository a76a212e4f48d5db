/* gateway read: polls one Modbus device once with a profile and prints the
 * decoded readings, for a vendor checking a register map on the bench. A
 * command-line tool may block, so it uses libmodbus directly (TCP or RTU);
 * the requests and the decoding are the gateway's own (gw_profile_*). */
#include "adapters/modbus_profile.h"
#include "gateway/cli.h"
#include "base/model.h"

#include <errno.h>
#include <modbus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define MAX_SITE 8

static void usage(void)
{
    fprintf(stderr,
            "usage: gateway read --profile NAME|FILE.yaml (--connect tcp://HOST:PORT | --rtu DEV\n"
            "                    [--baud 9600] [--parity N|E|O] [--stop-bits 1|2]) [--unit N]\n"
            "                    [--timeout MS] [--param KEY=VALUE]... [--json]\n");
}

struct out {
    int json;
    int n;
};

static int print_reading(void *ctx, const gw_reading *r)
{
    struct out *o = ctx;
    if (o->json) {
        printf("%s{\"metric\": \"%s\", \"value\": %.10g, \"unit\": \"%s\", \"quality\": \"%s\"",
               o->n ? ",\n " : "[", r->metric, r->value, r->unit, gw_quality_name(r->quality));
        if (r->reason)
            printf(", \"reason\": \"%s\"", gw_reason_name(r->reason));
        printf("}");
    } else {
        printf("%-24s %14.6g %-10s %-8s %s\n", r->metric, r->value, r->unit,
               gw_quality_name(r->quality), r->reason ? gw_reason_name(r->reason) : "");
    }
    o->n++;
    return GW_OK;
}

static int print_event(void *ctx, const gw_event *e)
{
    struct out *o = ctx;
    if (o->json)
        printf("%s{\"metric\": \"%s\", \"text\": \"%s\"}", o->n ? ",\n " : "[", e->kind, e->detail);
    else
        printf("%-24s %s\n", e->kind, e->detail);
    o->n++;
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
static int read_one(modbus_t *ctx, const gw_mb_request *q, uint8_t *buf)
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

int gw_cli_read(int argc, char **argv)
{
    const char *profile = NULL, *connect = NULL, *rtu = NULL;
    long unit = 1, baud = 9600, stop_bits = 1, timeout = 1000;
    char parity = 'N';
    int json = 0;
    gw_param site[MAX_SITE];
    size_t nsite = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        }
        if (!v) {
            usage();
            return 2;
        }
        i++;
        if (!strcmp(a, "--profile"))
            profile = v;
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
        else if (!strcmp(a, "--parity") && strlen(v) == 1 && strchr("NEO", v[0]))
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
        timeout > 60000 || (stop_bits != 1 && stop_bits != 2)) {
        usage();
        return 2;
    }

    char err[512];
    gw_profile *p = NULL;
    size_t pl = strlen(profile);
    int rc = pl > 5 && !strcmp(profile + pl - 5, ".yaml")
                 ? gw_profile_load_file(&p, profile, err, sizeof(err))
                 : gw_profile_load_embedded(&p, profile, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "gateway read: %s\n",
                rc == GW_ENOTFOUND ? "no such built-in profile (give a .yaml file)" : err);
        return 1;
    }

    modbus_t *ctx = NULL;
    if (connect) {
        char host[128];
        const char *hp = strncmp(connect, "tcp://", 6) == 0 ? connect + 6 : NULL;
        const char *colon = hp ? strrchr(hp, ':') : NULL;
        if (!colon || (size_t)(colon - hp) >= sizeof(host)) {
            fprintf(stderr, "gateway read: --connect must be tcp://HOST:PORT\n");
            gw_profile_free(p);
            return 2;
        }
        memcpy(host, hp, (size_t)(colon - hp));
        host[colon - hp] = '\0';
        ctx = modbus_new_tcp(host, atoi(colon + 1));
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

    const gw_mb_request *reqs;
    size_t n = gw_profile_requests(p, &reqs);
    gw_mb_result *res = calloc(n ? n : 1, sizeof(*res));
    uint8_t *bufs = calloc(n ? n : 1, 256);
    int failed = 0;
    if (!res || !bufs) {
        fprintf(stderr, "gateway read: out of memory\n");
        failed = 1;
    }
    for (size_t i = 0; !failed && i < n; i++) {
        res[i].status = read_one(ctx, &reqs[i], bufs + i * 256);
        if (res[i].status == 0) {
            res[i].data = bufs + i * 256;
            res[i].len =
                reqs[i].fc <= 2 ? (size_t)(reqs[i].count + 7) / 8 : (size_t)reqs[i].count * 2;
        }
        if (res[i].status == GW_EAGAIN)
            modbus_flush(ctx);
    }
    if (!failed) {
        if (!json)
            printf("%-24s %14s %-10s %-8s %s\n", "METRIC", "VALUE", "UNIT", "QUALITY", "REASON");
        struct out o = {json, 0};
        gw_sink sink = {print_reading, print_event, &o};
        gw_profile_decode(p, site, nsite, res, n, now_ms(), &sink);
        if (json)
            printf("%s]\n", o.n ? "" : "[");
        for (size_t i = 0; i < n; i++)
            failed |= res[i].status != 0;
    }
    free(res);
    free(bufs);
    modbus_close(ctx);
    modbus_free(ctx);
    gw_profile_free(p);
    return failed ? 1 : 0;
}
