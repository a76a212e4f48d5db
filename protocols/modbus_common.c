/* Shared by the Modbus transports: framing helpers, result collection with
 * report-by-exception and online/offline events, and lateness statistics. */
#include "protocols/modbus_common.h"

#include "base/crc16.h"
#include "base/json.h"
#include "base/log.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- Framing ---- */

uint16_t gw_mb_crc16(const uint8_t *p, size_t n)
{
    return gw_crc16_modbus(p, n);
}

size_t gw_mb_pdu_read(uint8_t *pdu, uint8_t fc, uint16_t addr, uint16_t count)
{
    pdu[0] = fc;
    pdu[1] = (uint8_t)(addr >> 8);
    pdu[2] = (uint8_t)addr;
    pdu[3] = (uint8_t)(count >> 8);
    pdu[4] = (uint8_t)count;
    return 5;
}

size_t gw_mb_pdu_write(uint8_t *pdu, uint8_t fc, uint16_t addr, uint16_t count, const uint8_t *data,
                       size_t len)
{
    pdu[0] = fc;
    pdu[1] = (uint8_t)(addr >> 8);
    pdu[2] = (uint8_t)addr;
    if (fc == 5 || fc == 6) {
        if (len != 2)
            return 0;
        pdu[3] = data[0];
        pdu[4] = data[1];
        return 5;
    }
    if (fc != 15 && fc != 16)
        return 0;
    size_t want = fc == 15 ? (size_t)(count + 7) / 8 : (size_t)count * 2;
    if (count == 0 || len != want || 6 + len > GW_MB_PDU_MAX)
        return 0;
    pdu[3] = (uint8_t)(count >> 8);
    pdu[4] = (uint8_t)count;
    pdu[5] = (uint8_t)len;
    memcpy(pdu + 6, data, len);
    return 6 + len;
}

size_t gw_mb_adu_tcp(uint8_t *out, uint16_t tid, uint8_t unit, const uint8_t *pdu, size_t n)
{
    out[0] = (uint8_t)(tid >> 8);
    out[1] = (uint8_t)tid;
    out[2] = out[3] = 0;
    out[4] = (uint8_t)((n + 1) >> 8);
    out[5] = (uint8_t)(n + 1);
    out[6] = unit;
    memcpy(out + 7, pdu, n);
    return 7 + n;
}

size_t gw_mb_adu_rtu(uint8_t *out, uint8_t unit, const uint8_t *pdu, size_t n)
{
    out[0] = unit;
    memcpy(out + 1, pdu, n);
    uint16_t crc = gw_mb_crc16(out, n + 1);
    out[n + 1] = (uint8_t)crc;
    out[n + 2] = (uint8_t)(crc >> 8);
    return n + 3;
}

int gw_mb_rtu_answer_len(const uint8_t *buf, size_t len, uint8_t fc)
{
    if (len < 2)
        return 0;
    if (buf[1] == (uint8_t)(fc | 0x80))
        return 5;
    if (buf[1] != fc)
        return GW_EMALFORMED;
    switch (fc) {
    case 1:
    case 2:
    case 3:
    case 4:
        if (len < 3)
            return 0;
        if (buf[2] == 0 || buf[2] > 250)
            return GW_EMALFORMED;
        return 5 + buf[2];
    case 5:
    case 6:
    case 15:
    case 16:
        return 8;
    default:
        return GW_EMALFORMED;
    }
}

int gw_mb_rtu_check(const uint8_t *f, size_t len)
{
    if (len < 4)
        return GW_EMALFORMED;
    uint16_t crc = gw_mb_crc16(f, len - 2);
    if (f[len - 2] != (uint8_t)crc || f[len - 1] != (uint8_t)(crc >> 8))
        return GW_ECRC;
    return GW_OK;
}

int gw_mb_read_answer(const gw_mb_request *r, const uint8_t *pdu, size_t len, const uint8_t **data,
                      size_t *dlen)
{
    if (len < 2)
        return GW_EMALFORMED;
    if (pdu[0] == (uint8_t)(r->fc | 0x80))
        return len == 2 && pdu[1] ? pdu[1] : GW_EMALFORMED;
    size_t want = r->fc <= 2 ? (size_t)(r->count + 7) / 8 : (size_t)r->count * 2;
    if (pdu[0] != r->fc || pdu[1] != want || len != 2 + want)
        return GW_EMALFORMED;
    *data = pdu + 2;
    *dlen = want;
    return 0;
}

int gw_mb_write_answer(const uint8_t *req, size_t reqlen, const uint8_t *pdu, size_t len)
{
    if (len < 2 || reqlen < 5)
        return GW_EMALFORMED;
    if (pdu[0] == (uint8_t)(req[0] | 0x80))
        return len == 2 && pdu[1] ? pdu[1] : GW_EMALFORMED;
    /* FC 5/6 echo the request; FC 15/16 echo address and count. */
    if (len != 5 || memcmp(pdu, req, 5) != 0)
        return GW_EMALFORMED;
    return 0;
}

const char *gw_mb_exception_name(int code)
{
    static const char *const names[] = {NULL,
                                        "ILLEGAL FUNCTION",
                                        "ILLEGAL DATA ADDRESS",
                                        "ILLEGAL DATA VALUE",
                                        "SERVER DEVICE FAILURE",
                                        "ACKNOWLEDGE",
                                        "SERVER DEVICE BUSY",
                                        NULL,
                                        "MEMORY PARITY ERROR",
                                        NULL,
                                        "GATEWAY PATH UNAVAILABLE",
                                        "GATEWAY TARGET DEVICE FAILED TO RESPOND"};
    const char *n = code > 0 && code < 12 ? names[code] : NULL;
    return n ? n : "UNKNOWN EXCEPTION";
}

int gw_mb_write_arg(const gw_profile *p, const char *arg, char *point, size_t pointcap,
                    double *value, char *why, size_t whylen)
{
    const char *eq = arg ? strchr(arg, '=') : NULL;
    char *end = NULL;
    if (eq)
        *value = strtod(eq + 1, &end);
    if (!eq || eq == arg || (size_t)(eq - arg) >= pointcap || end == eq + 1 || *end) {
        snprintf(why, whylen, "write takes POINT=VALUE (got '%.40s')", arg ? arg : "");
        return GW_EINVAL;
    }
    memcpy(point, arg, (size_t)(eq - arg));
    point[eq - arg] = '\0';
    gw_profile_point_info pi;
    int i = gw_profile_point_find(p, point);
    if (i < 0 || gw_profile_point_get(p, (size_t)i, &pi)) {
        snprintf(why, whylen, "no point '%s' in profile %s", point, gw_profile_name(p));
        return GW_EINVAL;
    }
    if (!pi.writable) {
        snprintf(why, whylen, "point '%s' is read-only", point);
        return GW_EINVAL;
    }
    return 0;
}

int gw_mb_write_result(char *out, size_t cap, const char *point, double value, const uint8_t *pdu,
                       size_t len)
{
    gw_jbuf b;
    char num[16];
    gw_jbuf_init(&b, out, cap);
    gw_json_raw(&b, "{\"point\":");
    gw_json_str(&b, point);
    gw_json_raw(&b, ",\"value\":");
    gw_json_num(&b, value);
    snprintf(num, sizeof(num), "%u", pdu[0]);
    gw_json_raw(&b, ",\"fc\":");
    gw_json_raw(&b, num);
    snprintf(num, sizeof(num), "%u", (unsigned)(pdu[1] << 8 | pdu[2]));
    gw_json_raw(&b, ",\"address\":");
    gw_json_raw(&b, num);
    /* FC 5/6: one word at 3; FC 16: count words after the byte count at 5;
     * FC 15: count coils packed from the lowest bit after the byte count. */
    size_t from = pdu[0] == 5 || pdu[0] == 6 ? 3 : 6;
    size_t n = pdu[0] == 5 || pdu[0] == 6 ? 1 : (size_t)(pdu[3] << 8 | pdu[4]);
    gw_json_raw(&b, pdu[0] == 15 ? ",\"coils\":[" : ",\"words\":[");
    for (size_t k = 0; k < n; k++) {
        unsigned v;
        if (pdu[0] == 15)
            v = from + k / 8 < len ? (pdu[from + k / 8] >> (k % 8)) & 1u : 0;
        else
            v = from + 2 * k + 1 < len ? (unsigned)(pdu[from + 2 * k] << 8 | pdu[from + 2 * k + 1])
                                       : 0;
        snprintf(num, sizeof(num), "%s%u", k ? "," : "", v);
        gw_json_raw(&b, num);
    }
    gw_json_raw(&b, "]}");
    return b.overflow ? GW_EFULL : 0;
}

/* ---- Statistics ---- */

static gw_mb_stats stats;
static gw_tw_timer stats_timer; /* on the core's wheel: nothing to close */
static gw_tw *stats_wheel;
static char stats_path[256]; /* gateway.modbus_stats, resolved; empty: none */
static int stats_refs;
static int64_t stats_last_log;
static gw_mb_stats stats_at_log;

gw_mb_stats *gw_mb_stats_get(void)
{
    return &stats;
}

int gw_mb_late_bucket(int64_t us)
{
    int64_t ms = us / 1000;
    if (ms < 0)
        ms = 0;
    if (ms < 100)
        return (int)ms;
    if (ms < 1000)
        return 100 + (int)(ms / 100) - 1;
    return GW_MB_LATE_BUCKETS - 1;
}

int64_t gw_mb_late_bucket_ms(int b)
{
    if (b < 100)
        return b + 1;
    if (b < GW_MB_LATE_BUCKETS - 1)
        return (int64_t)(b - 99 + 1) * 100;
    return 1000000; /* open-ended */
}

int64_t gw_mb_late_quantile(const uint64_t *h, double q)
{
    uint64_t total = 0;
    for (int i = 0; i < GW_MB_LATE_BUCKETS; i++)
        total += h[i];
    if (!total)
        return 0;
    uint64_t want = (uint64_t)ceil(q * (double)total), acc = 0;
    if (want == 0)
        want = 1;
    for (int i = 0; i < GW_MB_LATE_BUCKETS; i++) {
        acc += h[i];
        if (acc >= want)
            return gw_mb_late_bucket_ms(i);
    }
    return gw_mb_late_bucket_ms(GW_MB_LATE_BUCKETS - 1);
}

/* Writes the counters as JSON to path (temporary name, then rename, so a
 * reader never sees half a file). */
static void stats_write(const char *path)
{
    char tmp[512];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    const gw_mb_stats *s = &stats;
    fprintf(f,
            "{\"cycles\": %llu, \"cycles_failed\": %llu, \"requests\": %llu, \"timeouts\": %llu, "
            "\"exceptions\": %llu, \"malformed\": %llu, \"readings\": %llu, "
            "\"rbe_suppressed\": %llu, \"events\": %llu, \"late_p50_ms\": %lld, "
            "\"late_p99_ms\": %lld, \"late_max_us\": %lld, \"late_bucket_ms\": [",
            (unsigned long long)s->cycles, (unsigned long long)s->cycles_failed,
            (unsigned long long)s->requests, (unsigned long long)s->timeouts,
            (unsigned long long)s->exceptions, (unsigned long long)s->malformed,
            (unsigned long long)s->readings, (unsigned long long)s->rbe_suppressed,
            (unsigned long long)s->events, (long long)gw_mb_late_quantile(s->late, 0.5),
            (long long)gw_mb_late_quantile(s->late, 0.99), (long long)s->late_max_us);
    for (int i = 0; i < GW_MB_LATE_BUCKETS; i++)
        fprintf(f, "%s%lld", i ? ", " : "", (long long)gw_mb_late_bucket_ms(i));
    fprintf(f, "], \"late\": [");
    for (int i = 0; i < GW_MB_LATE_BUCKETS; i++)
        fprintf(f, "%s%llu", i ? ", " : "", (unsigned long long)s->late[i]);
    fprintf(f, "]}\n");
    if (fclose(f) == 0)
        rename(tmp, path);
}

static void on_stats_timer(gw_tw_timer *t)
{
    int64_t now = gw_tw_now(stats_wheel);
    /* Every second only for the statistics file; without one, the log line
     * every 30 s is the only reason to wake (an idle gateway stays asleep). */
    gw_tw_start(stats_wheel, &stats_timer, now + (stats_path[0] ? 1000 : 30000), on_stats_timer);
    if (stats_path[0])
        stats_write(stats_path);
    if (now - stats_last_log < 29000)
        return;
    /* Lateness of the last 30 s, not since start. */
    uint64_t h[GW_MB_LATE_BUCKETS];
    for (int i = 0; i < GW_MB_LATE_BUCKETS; i++)
        h[i] = stats.late[i] - stats_at_log.late[i];
    double secs = stats_last_log ? (double)(now - stats_last_log) / 1000.0 : 30.0;
    GW_INFO("modbus",
            "cycles %.0f/s (%llu failed) requests %llu timeouts %llu exceptions %llu | readings "
            "%llu, %llu suppressed by deadband | lateness p50 %lld ms p99 %lld ms",
            (double)(stats.cycles - stats_at_log.cycles) / secs,
            (unsigned long long)(stats.cycles_failed - stats_at_log.cycles_failed),
            (unsigned long long)(stats.requests - stats_at_log.requests),
            (unsigned long long)(stats.timeouts - stats_at_log.timeouts),
            (unsigned long long)(stats.exceptions - stats_at_log.exceptions),
            (unsigned long long)(stats.readings - stats_at_log.readings),
            (unsigned long long)(stats.rbe_suppressed - stats_at_log.rbe_suppressed),
            (long long)gw_mb_late_quantile(h, 0.5), (long long)gw_mb_late_quantile(h, 0.99));
    stats_at_log = stats;
    stats_last_log = now;
}

void gw_mb_stats_ref(gw_core *core)
{
    if (stats_refs++ == 0) {
        stats_wheel = gw_core_wheel(core);
        gw_strlcpy(stats_path, gw_core_config(core)->modbus_stats, sizeof(stats_path));
        stats_last_log = gw_tw_now(stats_wheel);
        stats_at_log = stats;
        gw_tw_start(stats_wheel, &stats_timer, stats_last_log + (stats_path[0] ? 1000 : 30000),
                    on_stats_timer);
    }
}

void gw_mb_stats_unref(void)
{
    if (stats_refs > 0 && --stats_refs == 0) {
        if (stats_path[0])
            stats_write(stats_path);
        gw_tw_stop(&stats_timer);
    }
}

/* ---- Scheduling ---- */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

int64_t gw_mb_first_due(const char *id, int64_t now, int64_t interval)
{
    return now + (int64_t)(hash_str(id) % (uint64_t)interval);
}

int64_t gw_mb_slot_due(const char *id, int64_t now, int64_t interval, int64_t slots)
{
    if (slots < 1)
        slots = 1;
    if (slots > interval)
        slots = interval;
    int64_t phase = (int64_t)(hash_str(id) % (uint64_t)slots) * (interval / slots);
    int64_t at = now - now % interval + phase;
    return at >= now ? at : at + interval;
}

int64_t gw_mb_slots(size_t n, int64_t interval)
{
    int64_t slots = (int64_t)((n + GW_MB_SLOT_POLLS - 1) / GW_MB_SLOT_POLLS);
    return slots < 1 ? 1 : slots > interval ? interval : slots;
}

int64_t gw_mb_next_due(int64_t due, int64_t now, int64_t interval, uint64_t *skipped)
{
    due += interval;
    if (due <= now) {
        /* We fell behind (a loop stall, a suspended process): skip, keep phase. */
        int64_t missed = (now - due) / interval + 1;
        *skipped += (uint64_t)missed;
        due += missed * interval;
    }
    return due;
}

/* ---- Profiles ---- */

#define EVENTS_KEY "modbus.events." /* + device id: the status events' state, persisted */

/* A profile named with a '/' is a file of its own (adapters/profiles/README.md),
 * a relative path taken from the folder of the config file that names it. The
 * core's copy of the config names that file: dev->conf.file points into the
 * config as loaded, which gw_core_start moves into the core and clears. */
static const char *profile_ref(const gw_device *dev, char *buf, size_t cap)
{
    const char *name = dev->conf.profile, *file = gw_core_config(dev->core)->source;
    const char *slash = file ? strrchr(file, '/') : NULL;
    if (!strchr(name, '/') || name[0] == '/' || !slash ||
        snprintf(buf, cap, "%.*s/%s", (int)(slash - file), file, name) >= (int)cap)
        return name;
    return buf;
}

static void *profile_load(gw_core *core, const char *name, char *err, size_t errlen)
{
    gw_profile *p = NULL;
    if (strchr(name, '/'))
        return gw_profile_load_file(&p, name, err, errlen) ? NULL : p;
    int rc = GW_ENOTFOUND;
    for (int i = 0; i < gw_core_config(core)->nprofile_dirs && rc == GW_ENOTFOUND; i++) {
        char path[512];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s.yaml", gw_core_config(core)->profile_dirs[i], name);
        if (stat(path, &st) == 0)
            rc = gw_profile_load_file(&p, path, err, errlen);
    }
    if (rc == GW_ENOTFOUND)
        rc = gw_profile_load_embedded(&p, name, err, errlen);
    if (rc == GW_ENOTFOUND)
        snprintf(err, errlen, "profile '%s' not found in profile_dirs or the built-in set", name);
    return rc ? NULL : p;
}

static void profile_release(void *p)
{
    gw_profile_free(p);
}

const gw_profile *gw_mb_profile(gw_core *core, const char *name, char *err, size_t errlen)
{
    return gw_core_shared(core, name, profile_load, profile_release, err, errlen);
}

int gw_mb_check_profile(const gw_device *dev, char *err, size_t errlen)
{
    if (!dev->conf.profile[0]) {
        snprintf(err, errlen, "key 'profile' is required for %s", dev->conf.protocol);
        return GW_EINVAL;
    }
    char ref[512];
    return gw_mb_profile(dev->core, profile_ref(dev, ref, sizeof(ref)), err, errlen) ? GW_OK
                                                                                     : GW_EINVAL;
}

const char *gw_mb_device_type(const gw_device *dev)
{
    char err[256], ref[512];
    const gw_profile *p =
        gw_mb_profile(dev->core, profile_ref(dev, ref, sizeof(ref)), err, sizeof(err));
    return p ? gw_profile_device_type(p) : NULL;
}

/* ---- Result collection ---- */

/* Data bytes of the answer to r. */
static size_t req_bytes(const gw_mb_request *r)
{
    return r->fc <= 2 ? (size_t)(r->count + 7) / 8 : (size_t)r->count * 2;
}

/* Offset of request i's data: the requests before it, in order. */
static size_t req_off(const gw_mb_poll *p, size_t i)
{
    const gw_mb_request *reqs = gw_mb_poll_reqs(p);
    size_t off = 0;
    for (size_t k = 0; k < i; k++)
        off += req_bytes(&reqs[k]);
    return off;
}

/* The parts of a poll's block, in order (aligned: gw_mb_rbe and gw_param
 * are multiples of 8 bytes). */
static size_t rbe_bytes(const gw_mb_poll *p)
{
    return p->has_rbe ? gw_profile_point_count(p->profile) * sizeof(gw_mb_rbe) : 0;
}

static gw_mb_rbe *poll_rbe(const gw_mb_poll *p)
{
    return p->has_rbe ? (gw_mb_rbe *)p->block : NULL;
}

static gw_param *poll_params(const gw_mb_poll *p)
{
    return p->nparams ? (gw_param *)(p->block + rbe_bytes(p)) : NULL;
}

static int16_t *poll_status(const gw_mb_poll *p)
{
    return (int16_t *)(p->block + rbe_bytes(p) + p->nparams * sizeof(gw_param));
}

static uint8_t *poll_data(const gw_mb_poll *p)
{
    return (uint8_t *)(poll_status(p) + p->nreq);
}

static uint8_t *poll_evstate(const gw_mb_poll *p)
{
    return poll_data(p) + p->data_bytes;
}

/* The adapter that decodes registers: the same for every device, looked up once. */
static const gw_adapter *regs_adapter(void)
{
    static const gw_adapter *a;
    if (!a)
        a = gw_adapter_for_payload(GW_PAYLOAD_REGISTERS);
    return a;
}

int gw_mb_poll_init(gw_mb_poll *p, gw_device *dev, char *err, size_t errlen)
{
    memset(p, 0, sizeof(*p));
    p->dev = dev;
    const gw_adapter *ad = regs_adapter();
    if (!ad || !ad->decode_registers) {
        snprintf(err, errlen, "no registers adapter is compiled in");
        return GW_EINVAL;
    }
    char ref[512];
    p->profile = gw_mb_profile(dev->core, profile_ref(dev, ref, sizeof(ref)), err, errlen);
    if (!p->profile)
        return GW_EINVAL;
    const gw_mb_request *reqs;
    size_t nreq = gw_profile_requests(p->profile, &reqs);
    size_t npoints = gw_profile_point_count(p->profile);
    p->nreq = (uint16_t)nreq;
    size_t data_bytes = req_off(p, nreq);
    if (nreq > GW_PROFILE_MAX_POINTS || data_bytes > UINT16_MAX || dev->conf.about->nparams < 0 ||
        dev->conf.about->nparams > UINT16_MAX) {
        snprintf(err, errlen, "too many planned reads or site values");
        return GW_EINVAL;
    }
    p->data_bytes = (uint16_t)data_bytes;
    /* Most devices have no site values: no room is kept for them. */
    p->nparams = (uint16_t)dev->conf.about->nparams;
    /* Report-by-exception state only for a profile with a deadband: without
     * one every reading reports and the state would never be read. */
    for (size_t i = 0; i < npoints && !p->has_rbe; i++) {
        gw_profile_point_info info;
        p->has_rbe = gw_profile_point_get(p->profile, i, &info) == 0 && info.has_deadband;
    }
    size_t ev_bytes = gw_profile_event_count(p->profile) + 1;
    p->block = calloc(1, rbe_bytes(p) + p->nparams * sizeof(gw_param) + nreq * sizeof(int16_t) +
                             data_bytes + ev_bytes);
    if (!p->block) {
        snprintf(err, errlen, "out of memory");
        return GW_ENOMEM;
    }
    gw_param *params = poll_params(p);
    for (size_t i = 0; i < p->nparams; i++) {
        gw_strlcpy(params[i].key, dev->conf.about->param_keys[i], sizeof(params[i].key));
        params[i].value = dev->conf.about->param_vals[i];
    }
    /* Status events are edges against the last state, kept across restarts so a standing
     * condition is not raised again (as SL651 keeps its 45H word). */
    char key[GW_ID_MAX + sizeof EVENTS_KEY];
    void *val;
    size_t vlen;
    snprintf(key, sizeof key, "%s%s", EVENTS_KEY, dev->conf.id);
    if (gw_core_state_get(dev->core, key, &val, &vlen) == GW_OK)
        gw_profile_event_state_load(p->profile, poll_evstate(p), val, vlen);
    return GW_OK;
}

void gw_mb_poll_free(gw_mb_poll *p)
{
    free(p->block);
    p->block = NULL;
}

int gw_mb_poll_begin(gw_mb_poll *p, int64_t due_ms)
{
    if (p->in_cycle) {
        p->dev->polls_skipped++;
        return GW_EAGAIN;
    }
    p->in_cycle = 1;
    p->cur = 0;
    p->attempt = 0;
    p->answered = 0;
    p->sent = 0;
    p->due_ms = due_ms;
    int16_t *st = poll_status(p);
    for (size_t i = 0; i < p->nreq; i++)
        st[i] = GW_EAGAIN;
    return GW_OK;
}

const gw_mb_request *gw_mb_poll_reqs(const gw_mb_poll *p)
{
    const gw_mb_request *reqs;
    gw_profile_requests(p->profile, &reqs);
    return reqs;
}

const gw_mb_request *gw_mb_poll_current(const gw_mb_poll *p)
{
    return p->in_cycle && p->cur < p->nreq ? &gw_mb_poll_reqs(p)[p->cur] : NULL;
}

void gw_mb_poll_sent(gw_mb_poll *p)
{
    gw_mb_poll_sent_at(p, (int64_t)(uv_hrtime() / 1000), 1);
}

void gw_mb_poll_sent_at(gw_mb_poll *p, int64_t hrtime_us, size_t nreq)
{
    stats.requests += nreq;
    if (p->sent)
        return;
    p->sent = 1;
    int64_t late_us = hrtime_us - p->due_ms * 1000;
    if (late_us < 0)
        late_us = 0; /* the loop clock is coarser than hrtime */
    stats.late[gw_mb_late_bucket(late_us)]++;
    if (late_us > stats.late_max_us)
        stats.late_max_us = late_us;
}

int gw_mb_poll_result(gw_mb_poll *p, int status, const uint8_t *data, size_t len)
{
    if (!p->in_cycle || p->cur >= p->nreq)
        return 1;
    if (status == 0 && len != req_bytes(&gw_mb_poll_reqs(p)[p->cur]))
        status = GW_EMALFORMED;
    /* A status is 0, an exception code (1..255) or a GW_E* code: int16_t holds them. */
    poll_status(p)[p->cur] = (int16_t)status;
    if (status == 0)
        memcpy(poll_data(p) + req_off(p, p->cur), data, len);
    if (status >= 0)
        p->answered++;
    if (status > 0)
        stats.exceptions++;
    if (status == GW_EMALFORMED || status == GW_ECRC)
        stats.malformed++;
    gw_proto_counters *pc = &p->dev->pc;
    pc->frames += status >= 0 || status == GW_EMALFORMED || status == GW_ECRC;
    pc->crc_errors += status == GW_ECRC;
    pc->malformed += status == GW_EMALFORMED;
    p->cur++;
    p->attempt = 0;
    return p->cur >= p->nreq;
}

int gw_mb_poll_answer(gw_mb_poll *p, const uint8_t *pdu, size_t len)
{
    const gw_mb_request *q = gw_mb_poll_current(p);
    if (!q)
        return 1;
    const uint8_t *data = NULL;
    size_t dlen = 0;
    int st = gw_mb_read_answer(q, pdu, len, &data, &dlen);
    if (st == GW_EMALFORMED)
        GW_LOG_RL(GW_LOG_WARN, 10000, p->dev->conf.protocol, "[%s] malformed answer to fc %u at %u",
                  p->dev->conf.id, q->fc, q->addr);
    return gw_mb_poll_result(p, st, data, dlen);
}

int gw_mb_poll_timeout(gw_mb_poll *p)
{
    stats.timeouts++;
    p->dev->pc.timeouts++;
    if (p->attempt < p->dev->conf.retries) { /* retries <= 10 (config) */
        p->attempt++;
        return 1;
    }
    if (p->answered)
        gw_mb_poll_result(p, GW_EAGAIN, NULL, 0);
    else
        gw_mb_poll_fail_rest(p, GW_EAGAIN);
    return 0;
}

void gw_mb_poll_fail_rest(gw_mb_poll *p, int code)
{
    int16_t *st = poll_status(p);
    for (size_t i = p->cur; i < p->nreq; i++)
        st[i] = (int16_t)code;
    p->cur = p->nreq;
}

/* Report-by-exception in front of the core: a reading goes on when its quality
 * or reason changed, when it moved past the point's deadband, or when the
 * point's max_silence elapsed; points without a deadband always report. */
static int sink_reading(void *ctx, const gw_reading *r)
{
    gw_mb_poll *p = ctx;
    const gw_profile *prof = p->profile;
    gw_mb_rbe *rbe = poll_rbe(p);
    int idx = -1;
    if (rbe && p->rbe_hint < gw_profile_point_count(p->profile)) {
        gw_profile_point_info info;
        if (gw_profile_point_get(prof, (size_t)p->rbe_hint, &info) == 0 &&
            strcmp(info.metric, r->metric) == 0)
            idx = p->rbe_hint;
    }
    if (idx < 0 && rbe)
        idx = gw_profile_metric_find(prof, r->metric);
    if (idx >= 0) {
        p->rbe_hint = (uint16_t)(idx + 1);
        gw_mb_rbe *st = &rbe[idx];
        int report = st->at_ms <= 0 || st->quality != r->quality || st->reason != r->reason ||
                     gw_profile_rbe_should_report(prof, (size_t)idx, st->value, st->at_ms, r->value,
                                                  r->recv_ms) != 0;
        if (!report) {
            stats.rbe_suppressed++;
            return GW_OK;
        }
        st->value = r->value;
        st->at_ms = r->recv_ms;
        st->quality = r->quality;
        st->reason = r->reason;
    }
    gw_reading copy = *r;
    stats.readings++;
    gw_core_reading(p->dev->core, p->dev, &copy);
    return GW_OK;
}

static int sink_event(void *ctx, const gw_event *e)
{
    gw_mb_poll *p = ctx;
    int edge = gw_profile_event_edge(p->profile, poll_evstate(p), e);
    if (edge == 0)
        return GW_OK; /* a status event that did not change says nothing new */
    p->ev_dirty |= edge == 1;
    gw_event copy = *e;
    stats.events++;
    gw_core_event(p->dev->core, p->dev, &copy);
    return GW_OK;
}

void gw_mb_poll_finish(gw_mb_poll *p)
{
    gw_device *d = p->dev;
    if (!p->in_cycle)
        return;
    p->in_cycle = 0;
    d->polls++;
    stats.cycles++;
    int was = d->online;
    if (!p->answered) {
        d->polls_failed++;
        stats.cycles_failed++;
        gw_core_failed(d->core, d, "no answer"); /* offline after offline_after in a row */
    } else {
        gw_core_seen(d->core, d, NULL);
    }
    stats.events += d->online != was; /* the core emitted online or offline */
    if (d->online == 0)
        return; /* the event said it; no stream of bad readings */
    gw_sink sink = {sink_reading, sink_event, p};
    p->rbe_hint = 0;
    /* The results the adapter reads, built for the call (nreq <= GW_PROFILE_MAX_POINTS). */
    gw_mb_result res[GW_PROFILE_MAX_POINTS];
    const gw_mb_request *reqs = gw_mb_poll_reqs(p);
    const int16_t *st = poll_status(p);
    const uint8_t *data = poll_data(p);
    for (size_t i = 0, off = 0; i < p->nreq; off += req_bytes(&reqs[i]), i++) {
        res[i].status = st[i];
        res[i].data = st[i] == 0 ? data + off : NULL;
        res[i].len = st[i] == 0 ? req_bytes(&reqs[i]) : 0;
    }
    gw_core_batch_begin(d->core); /* the poll's readings: one outbox row */
    int rc = regs_adapter()->decode_registers(p->profile, poll_params(p), p->nparams, res, p->nreq,
                                              gw_now_ms(), &sink);
    gw_core_batch_end(d->core);
    if (rc)
        GW_LOG_RL(GW_LOG_WARN, 10000, p->dev->conf.protocol, "[%s] decoding failed: %d", d->conf.id,
                  rc);
    if (p->ev_dirty) {
        /* Queued after the events it reflects, in the same commit group. */
        char key[GW_ID_MAX + sizeof EVENTS_KEY], text[GW_PROFILE_MAX_EVENTS * (GW_KEY_MAX + 3)];
        int n = gw_profile_event_state_save(p->profile, poll_evstate(p), text, sizeof text);
        snprintf(key, sizeof key, "%s%s", EVENTS_KEY, d->conf.id);
        if (n < 0 || gw_core_state_put(d->core, key, text, (size_t)n) != GW_OK)
            GW_LOG_RL(GW_LOG_WARN, 10000, p->dev->conf.protocol, "[%s] event state not persisted",
                      d->conf.id);
        p->ev_dirty = 0;
    }
}
