/* Allocation failure at the 1st, 2nd, 3rd... allocation until the operation succeeds
 * (SQLite's habit), over the decoders, the config loader and the store. Each failure
 * must come back as an error return: no crash, and (run it under ASan: `make
 * SANITIZE=address,undefined build/san/tests/test_alloc_fail`) no leak.
 *
 * The failing allocator is this binary's own malloc/calloc/realloc/strdup/strndup: an
 * executable's definitions take precedence for every shared library too (cJSON, libyaml,
 * SQLite, libcbor), and they forward to the sanitizer's allocator when one is loaded
 * (its __interceptor_* entry points) or to glibc's otherwise, so free() stays the one
 * that matches. Only this test binary carries it. */
#include "adapters/cbor_map.h"
#include "adapters/json_map.h"
#include "adapters/modbus_profile.h"
#include "adapters/smoke_nb100.h"
#include "gateway/config.h"
#include "base/model.h"
#include "gateway/store.h"
#include "base/yamldoc.h"
#include "protocols/hj212.h"
#include "protocols/sl651.h"

#include <cjson/cJSON.h>
#include <execinfo.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

/* ---- the failing allocator ---- */

extern void *__interceptor_malloc(size_t) __attribute__((weak));
extern void *__interceptor_calloc(size_t, size_t) __attribute__((weak));
extern void *__interceptor_realloc(void *, size_t) __attribute__((weak));
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);

static long fail_at;         /* 0: never fail; N: fail the Nth allocation after arming */
static long alloc_count;     /* allocations since arming */
static int failed;           /* the armed failure happened */
static int trace;            /* print a backtrace at each failure (ALLOC_FAIL_TRACE set) */
static int this_thread_only; /* count only the arming thread's allocations */
static pthread_t armed_thread;

/* These run before the sanitizer has set itself up (the loader allocates early), so
 * they must not be instrumented. */
#define NO_SAN __attribute__((no_sanitize("address", "undefined")))

/* Decides whether this allocation fails. Allocations on other threads (the store's) are
 * counted too: they are part of the operation. */
NO_SAN static int should_fail(void)
{
    if (__atomic_load_n(&fail_at, __ATOMIC_SEQ_CST) == 0)
        return 0;
    if (this_thread_only && !pthread_equal(pthread_self(), armed_thread))
        return 0;
    long n = __atomic_add_fetch(&alloc_count, 1, __ATOMIC_SEQ_CST);
    if (n == __atomic_load_n(&fail_at, __ATOMIC_SEQ_CST)) {
        __atomic_store_n(&failed, 1, __ATOMIC_SEQ_CST);
        if (trace) {
            /* ALLOC_FAIL_TRACE=1: where each failing allocation was asked for. */
            void *frames[16];
            char msg[48];
            int k = snprintf(msg, sizeof msg, "-- allocation %ld fails at:\n", n);
            write(2, msg, (size_t)k);
            backtrace_symbols_fd(frames, backtrace(frames, 16), 2);
        }
        return 1;
    }
    return 0;
}

NO_SAN void *malloc(size_t n)
{
    if (should_fail())
        return NULL;
    return __interceptor_malloc ? __interceptor_malloc(n) : __libc_malloc(n);
}

NO_SAN void *calloc(size_t n, size_t m)
{
    if (should_fail())
        return NULL;
    return __interceptor_calloc ? __interceptor_calloc(n, m) : __libc_calloc(n, m);
}

NO_SAN void *realloc(void *p, size_t n)
{
    if (should_fail())
        return NULL;
    return __interceptor_realloc ? __interceptor_realloc(p, n) : __libc_realloc(p, n);
}

NO_SAN char *strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    return d ? memcpy(d, s, n) : NULL;
}

NO_SAN char *strndup(const char *s, size_t max)
{
    size_t n = strnlen(s, max);
    char *d = malloc(n + 1);
    if (!d)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static void arm(long n)
{
    trace = getenv("ALLOC_FAIL_TRACE") != NULL;
    armed_thread = pthread_self();
    __atomic_store_n(&alloc_count, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&failed, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&fail_at, n, __ATOMIC_SEQ_CST);
}

static int disarm(void)
{
    __atomic_store_n(&fail_at, 0, __ATOMIC_SEQ_CST);
    return __atomic_load_n(&failed, __ATOMIC_SEQ_CST);
}

/* Runs op with the Nth allocation failing, N = 1, 2, ..., until a run in which no
 * allocation failed; that run must succeed. An earlier run returns an error or, when
 * the code recovered, OK with a complete result (each op checks its own). Returns the
 * number of allocations the successful run made. */
typedef int (*op_fn)(void *arg);

/* What an op produced (counts, lengths), compared with an unfailed run. */
static long sig;

static long fail_each(const char *name, op_fn op, void *arg)
{
    sig = -1;
    if (op(arg) != GW_OK)
        fail_msg("%s: fails with no allocation failing", name);
    long want = sig;
    for (long n = 1; n < 100000; n++) {
        sig = -1;
        arm(n);
        int rc = op(arg);
        int hit = disarm();
        if (!hit) {
            if (rc != GW_OK || sig != want)
                fail_msg("%s: rc %d, result %ld (want %ld) with no allocation failing", name, rc,
                         sig, want);
            return n - 1;
        }
        if (rc == GW_OK && sig != want)
            fail_msg("%s: allocation %ld failed, the operation returned OK with result %ld "
                     "instead of %ld (something was silently lost)",
                     name, n, sig, want);
    }
    fail_msg("%s: did not finish", name);
    return -1;
}

/* ---- operations ---- */

static int count_reading(void *ctx, const gw_reading *r)
{
    (void)r;
    (*(int *)ctx)++;
    return 0;
}

static int count_event(void *ctx, const gw_event *e)
{
    (void)e;
    (*(int *)ctx)++;
    return 0;
}

static int hexbytes(const char *s, uint8_t *out, size_t cap)
{
    size_t n = 0;
    for (; s[0] && s[1] && n < cap; s += 2) {
        unsigned v;
        if (sscanf(s, "%2x", &v) != 1)
            break;
        out[n++] = (uint8_t)v;
    }
    return (int)n;
}

typedef struct frame_in {
    uint8_t b[2048];
    size_t n;
} frame_in;

/* SL651: frame parse, body decode and the JSON rendering. */
static int op_sl651(void *arg)
{
    const frame_in *in = arg;
    gw_sl651_frame f;
    gw_sl651_stats st = {0};
    int rc = gw_sl651_frame_parse(in->b, in->n, &f, &st);
    if (rc < 0)
        return rc;
    int n = 0;
    gw_sink s = {count_reading, count_event, &n};
    gw_sl651_report rep;
    rc = gw_sl651_decode(&f, NULL, &s, &rep);
    if (rc < 0 && rc != GW_EMALFORMED)
        return rc;
    char *js = gw_sl651_to_json(&f, NULL);
    if (!js)
        return GW_ENOMEM;
    sig = n * 100000L + (long)strlen(js);
    free(js);
    return GW_OK;
}

typedef struct text_in {
    const char *s;
    size_t n;
} text_in;

/* HJ 212: the packet decoded and rendered as JSON. */
static int op_hj212(void *arg)
{
    const text_in *in = arg;
    cJSON *j = gw_hj212_to_json(GW_HJ212_2017, in->s, in->n);
    if (!j)
        return GW_ENOMEM;
    int err = cJSON_GetObjectItem(j, "error") != NULL;
    char *txt = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!txt)
        return GW_ENOMEM;
    sig = (long)strlen(txt);
    free(txt);
    return err ? GW_ERR : GW_OK;
}

static const char *JMAP = "time: ts\n"
                          "points:\n"
                          "  - {path: data.depth, metric: water_depth, unit: cm, scale: 0.1}\n"
                          "  - {path: bat, metric: battery_voltage, unit: V}\n"
                          "events:\n"
                          "  - {path: alarm.smoke, kind: fire_alarm, detail: json}\n";

/* json_map: the map loaded from YAML, then a payload decoded through it. */
static int op_json_map(void *arg)
{
    (void)arg;
    gw_ydoc doc;
    char err[256];
    gw_jmap *m = NULL;
    int rc = gw_ydoc_parse(&doc, "map.yaml", JMAP, strlen(JMAP), err, sizeof err);
    if (rc == GW_OK)
        rc = gw_jmap_load(&m, doc.root, "json_map", err, sizeof err);
    gw_ydoc_free(&doc);
    if (rc)
        return rc;
    static const char *js = "{\"ts\":1760000000,\"data\":{\"depth\":123},\"bat\":3.6,"
                            "\"alarm\":{\"smoke\":true}}";
    int n = 0;
    gw_sink s = {count_reading, count_event, &n};
    rc = gw_jmap_decode(m, js, strlen(js), 0, &s);
    gw_jmap_free(m);
    sig = n;
    return rc < 0 ? rc : GW_OK;
}

/* {"ts": 1(1760000000), "data": {"depth": 123}, "bat": 3.6, "alarm": {"smoke": true}} */
static const uint8_t CBOR[] = {0xa4, 0x62, 0x74, 0x73, 0xc1, 0x1a, 0x68, 0xe7, 0x78, 0x00, 0x64,
                               0x64, 0x61, 0x74, 0x61, 0xa1, 0x65, 0x64, 0x65, 0x70, 0x74, 0x68,
                               0x18, 0x7b, 0x63, 0x62, 0x61, 0x74, 0xfb, 0x40, 0x0c, 0xcc, 0xcc,
                               0xcc, 0xcc, 0xcc, 0xcd, 0x65, 0x61, 0x6c, 0x61, 0x72, 0x6d, 0xa1,
                               0x65, 0x73, 0x6d, 0x6f, 0x6b, 0x65, 0xf5};

static int op_cbor_map(void *arg)
{
    const gw_jmap *m = arg;
    int n = 0;
    gw_sink s = {count_reading, count_event, &n};
    int rc = gw_cbor_decode(m, CBOR, sizeof CBOR, 0, &s);
    if (rc < 0)
        return rc;
    cJSON *j = NULL;
    rc = gw_cbor_to_json(CBOR, sizeof CBOR, &j);
    if (rc == GW_OK && !j)
        return GW_ERR;
    if (rc != GW_OK && j)
        return GW_ERR; /* a failed conversion leaves nothing behind */
    char *txt = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (rc == GW_OK && !txt)
        return GW_ENOMEM;
    sig = n * 100000L + (txt ? (long)strlen(txt) : 0);
    free(txt);
    return rc < 0 ? rc : GW_OK;
}

static int op_nb100(void *arg)
{
    const frame_in *in = arg;
    int n = 0;
    gw_sink s = {count_reading, count_event, &n};
    int rc = gw_adapter_smoke_nb100.decode(in->b, in->n, 0, &s);
    sig = n;
    return rc < 0 ? rc : GW_OK;
}

static int op_profile(void *arg)
{
    const char *name = arg;
    gw_profile *p = NULL;
    char err[256];
    int rc = gw_profile_load_embedded(&p, name, err, sizeof err);
    if (rc == GW_OK) {
        const gw_mb_request *reqs;
        sig = (long)gw_profile_point_count(p) * 1000 + (long)gw_profile_requests(p, &reqs);
    }
    gw_profile_free(p);
    return rc;
}

static int op_config(void *arg)
{
    gw_config cfg;
    char err[1024];
    int rc = gw_config_load(&cfg, arg, err, sizeof err);
    if (rc == GW_OK) {
        sig = cfg.ndevices * 10000L + cfg.nlisteners * 100L + (cfg.rules ? (long)cfg.rules->n : 0);
        gw_config_free(&cfg);
    }
    return rc;
}

/* The store: open, a row on each lane, flush (commit), fetch them back, close. Every
 * row accepted must come back from the fetch: an allocation failing inside a commit
 * must be an error, never a silent loss. */
typedef struct store_run {
    int flushed, flush_status, fetched;
} store_run;

static void on_flush(void *ctx, int status)
{
    store_run *r = ctx;
    r->flushed = 1;
    r->flush_status = status;
}

static void on_fetch(void *ctx, const gw_rows *rows)
{
    store_run *r = ctx;
    r->fetched += (int)rows->n;
}

typedef struct store_env {
    const char *dir;
    uv_loop_t *loop; /* made outside the armed window: libuv aborts when its own init fails */
} store_env;

static int op_store(void *arg)
{
    const store_env *env = arg;
    const char *dir = env->dir;
    char path[512];
    snprintf(path, sizeof path, "%s/outbox.db", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/outbox.db-wal", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/outbox.db-shm", dir);
    unlink(path);
    gw_store_config cfg = {.max_bytes = 1 << 20, .commit_window = 1, .queue_max = 16};
    snprintf(cfg.path, sizeof cfg.path, "%s/outbox.db", dir);
    uv_loop_t *loop = env->loop;
    char err[256];
    int rc = GW_OK, accepted = 0;
    store_run r = {0};
    gw_store *s = gw_store_open(loop, &cfg, NULL, NULL, err, sizeof err);
    if (!s) {
        rc = GW_ERR;
        goto out;
    }
    if (gw_store_put(s, GW_LANE_TELE, GW_KIND_READING, 1, "{\"r\":1}", 7) == GW_OK)
        accepted++;
    if (gw_store_put(s, GW_LANE_PRIO, GW_KIND_EVENT, 2, "{\"e\":1}", 7) == GW_OK)
        accepted++;
    if (gw_store_flush(s, on_flush, &r) != GW_OK) {
        rc = GW_ENOMEM;
    } else {
        for (int i = 0; i < 2000 && !r.flushed; i++)
            uv_run(loop, UV_RUN_ONCE);
        if (!r.flushed || r.flush_status)
            rc = GW_ERR;
    }
    if (rc == GW_OK) {
        /* Fetches are answered in order: wait for both callbacks by waiting on a flush. */
        int f1 = gw_store_fetch(s, GW_LANE_TELE, 0, 10, 4096, on_fetch, &r);
        int f2 = gw_store_fetch(s, GW_LANE_PRIO, 0, 10, 4096, on_fetch, &r);
        r.flushed = 0;
        int f3 = gw_store_flush(s, on_flush, &r);
        if (f1 || f2 || f3) {
            rc = GW_ENOMEM;
        } else {
            for (int i = 0; i < 2000 && !r.flushed; i++)
                uv_run(loop, UV_RUN_ONCE);
            if (!r.flushed || r.flush_status)
                rc = GW_ERR;
            sig = r.fetched;
        }
        if (accepted != 2 && rc == GW_OK)
            rc = GW_ENOMEM;
    }
    gw_store_close(s);
out:
    uv_run(loop, UV_RUN_DEFAULT);
    return rc;
}

/* ---- tests ---- */

static void decoders(void **state)
{
    (void)state;
    /* Every own SL651 vector (HEX and ASCII) is a frame line of tests/vectors. */
    FILE *fp = fopen("tests/vectors/sl651_own.txt", "r");
    assert_non_null(fp);
    char line[4096];
    int nvec = 0;
    static frame_in in;
    while (fgets(line, sizeof line, fp)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0] || line[0] == '#')
            continue;
        in.n = (size_t)hexbytes(line, in.b, sizeof in.b);
        char name[64];
        snprintf(name, sizeof name, "sl651 vector %d", ++nvec);
        fail_each(name, op_sl651, &in);
    }
    fclose(fp);
    assert_true(nvec > 5);

    fp = fopen("tests/vectors/hj212_own.txt", "r");
    assert_non_null(fp);
    nvec = 0;
    while (fgets(line, sizeof line, fp)) {
        line[strcspn(line, "\r\n")] = '\0';
        char *sp = strchr(line, ' ');
        if (line[0] == '#' || !sp || strncmp(sp + 1, "##", 2))
            continue;
        text_in t = {sp + 1, strlen(sp + 1)};
        char name[64];
        snprintf(name, sizeof name, "hj212 %.*s", (int)(sp - line), line);
        fail_each(name, op_hj212, &t);
        nvec++;
    }
    fclose(fp);
    assert_true(nvec > 3);

    assert_true(fail_each("json_map", op_json_map, NULL) > 0);

    gw_ydoc doc;
    char err[256];
    gw_jmap *m = NULL;
    assert_int_equal(gw_ydoc_parse(&doc, "map.yaml", JMAP, strlen(JMAP), err, sizeof err), 0);
    assert_int_equal(gw_jmap_load(&m, doc.root, "json_map", err, sizeof err), 0);
    gw_ydoc_free(&doc);
    assert_true(fail_each("cbor_map", op_cbor_map, m) > 0);
    gw_jmap_free(m);

    /* An NB-100 report (as tests/unit/test_smoke_nb100.c builds it), smoke event set. */
    static const uint8_t nb[] = {0xA5, 0x5A, 0x01, 24,   0x86, 0x12, 0x34, 0x56, 0x78, 0x90,
                                 0x12, 0x3F, 0x02, 0x01, 0x02, 0x68, 0xE7, 0x78, 0x00, 0x00,
                                 0x01, 0x0B, 0x86, 0x00, 0x0C, 0x00, 0xD7, 0xB0};
    memcpy(in.b, nb, sizeof nb);
    in.n = sizeof nb;
    uint16_t c = gw_nb100_crc(in.b, in.n);
    in.b[in.n++] = (uint8_t)(c >> 8);
    in.b[in.n++] = (uint8_t)c;
    fail_each("smoke_nb100", op_nb100, &in);
}

static void profiles(void **state)
{
    (void)state;
    static const char *names[] = {"radar-level", "flowmeter-float-cdab", "pressure-transmitter",
                                  "waterlogging-wl100", "alarm-output"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        assert_true(fail_each(names[i], op_profile, (void *)names[i]) > 0);
}

static void config(void **state)
{
    (void)state;
    /* The shipped default: devices of every protocol, rules, uplink, store. */
    assert_true(fail_each("config", op_config, "gateway/default.yaml") > 0);
}

static void store(void **state)
{
    (void)state;
    char dir[] = "/tmp/gw-allocfail-XXXXXX";
    assert_non_null(mkdtemp(dir));
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    store_env env = {dir, &loop};
    /* The open and insert path, on the calling thread. The store thread's commit path is
     * left out: a failed allocation there today loses the group or a flush/fetch callback
     * (see the closing note of issue 16); it is being reworked separately. */
    this_thread_only = 1;
    assert_true(fail_each("store", op_store, &env) > 0);
    this_thread_only = 0;
    assert_int_equal(uv_loop_close(&loop), 0);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* A telemetry put whose copy cannot be allocated must give its queue slot back: with
 * queue_max 1 the next put is accepted, not refused as if the queue were full. */
static void store_put_enomem_keeps_slot(void **state)
{
    (void)state;
    char dir[] = "/tmp/gw-allocfail-XXXXXX";
    assert_non_null(mkdtemp(dir));
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    gw_store_config cfg = {.max_bytes = 1 << 20, .commit_window = 1000, .queue_max = 1};
    snprintf(cfg.path, sizeof cfg.path, "%s/outbox.db", dir);
    char err[256];
    gw_store *s = gw_store_open(&loop, &cfg, NULL, NULL, err, sizeof err);
    assert_non_null(s);
    this_thread_only = 1;
    arm(1);
    int rc = gw_store_put(s, GW_LANE_TELE, GW_KIND_READING, 1, "{}", 2);
    disarm();
    this_thread_only = 0;
    assert_int_equal(rc, GW_ENOMEM);
    assert_int_equal(gw_store_put(s, GW_LANE_TELE, GW_KIND_READING, 2, "{}", 2), GW_OK);
    gw_store_stats st;
    gw_store_get_stats(s, &st);
    assert_int_equal(st.tele_refused_queue, 0);
    gw_store_close(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(decoders),
        cmocka_unit_test(profiles),
        cmocka_unit_test(config),
        cmocka_unit_test(store),
        cmocka_unit_test(store_put_enomem_keeps_slot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
