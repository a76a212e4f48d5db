/* Expectations of a rehearsal, judged over a timeline: what the sim sent
 * (samples of its own curves) and what reached the platform (uplink items,
 * stamped with the scenario time they arrived). Pure: no clock, no I/O; the
 * uplink JSON is parsed here with cJSON so tests can feed real messages. */
#include "sim/expect.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* Arrivals are stamped on the platform client's thread and converted to
 * scenario time; at high --speed a millisecond of wall time is many of
 * scenario time, so an item caused by a scheduled event can be stamped a
 * hair before that event's time. `of` windows open this much earlier. */
#define SIM_OF_SLACK_S 1.0

/* ---- the timeline ---- */

sim_timeline *sim_tl_new(size_t max_readings)
{
    sim_timeline *tl = calloc(1, sizeof *tl);
    if (tl)
        tl->max_readings = max_readings;
    return tl;
}

void sim_tl_free(sim_timeline *tl)
{
    if (!tl)
        return;
    free(tl->names);
    free(tl->hslots);
    free(tl->dev_type);
    free(tl->dev_readings);
    free(tl->dev_last_seq);
    free(tl->dev_out_of_order);
    free(tl->dev_online);
    sim_gw_free(tl->gws, tl->ngws);
    free(tl->rd);
    free(tl->ev);
    free(tl->al);
    free(tl->sent);
    free(tl->fc);
    free(tl->seqbits);
    free(tl);
}

static uint32_t hash_str(const char *s)
{
    uint32_t h = 2166136261u;
    while (*s)
        h = (h ^ (uint8_t)*s++) * 16777619u;
    return h;
}

int64_t sim_tl_find(const sim_timeline *tl, const char *name)
{
    if (!tl->hcap)
        return -1;
    for (uint32_t i = hash_str(name) & (tl->hcap - 1);; i = (i + 1) & (tl->hcap - 1)) {
        uint32_t s = tl->hslots[i];
        if (!s)
            return -1;
        if (strcmp(tl->names[s - 1], name) == 0)
            return s - 1;
    }
}

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return SIM_OK;
    size_t nc = *cap ? *cap * 2 : 64;
    while (nc < need)
        nc *= 2;
    void *np = realloc(*p, nc * size);
    if (!np)
        return SIM_ENOMEM;
    memset((char *)np + *cap * size, 0, (nc - *cap) * size);
    *p = np;
    *cap = nc;
    return SIM_OK;
}

static int rehash(sim_timeline *tl, uint32_t ncap)
{
    uint32_t *ns = calloc(ncap, sizeof *ns);
    if (!ns)
        return SIM_ENOMEM;
    for (uint32_t k = 0; k < tl->nnames; k++) {
        uint32_t i = hash_str(tl->names[k]) & (ncap - 1);
        while (ns[i])
            i = (i + 1) & (ncap - 1);
        ns[i] = k + 1;
    }
    free(tl->hslots);
    tl->hslots = ns;
    tl->hcap = ncap;
    return SIM_OK;
}

/* Interns name (cut at SIM_NAME_MAX - 1 bytes); returns its index or < 0. */
static int64_t intern(sim_timeline *tl, const char *name)
{
    char cut[SIM_NAME_MAX];
    snprintf(cut, sizeof cut, "%s", name);
    int64_t k = sim_tl_find(tl, cut);
    if (k >= 0)
        return k;
    if (tl->nnames == UINT32_MAX - 1)
        return SIM_ENOMEM;
    if ((uint64_t)(tl->nnames + 1) * 2 > tl->hcap &&
        rehash(tl, tl->hcap ? tl->hcap * 2 : 64) != SIM_OK)
        return SIM_ENOMEM;
    if (tl->nnames == tl->capnames) {
        size_t cap = tl->capnames, c2;
#define G(arr)                                                                                     \
    do {                                                                                           \
        c2 = cap;                                                                                  \
        if (grow((void **)&tl->arr, &c2, cap + 1, sizeof *tl->arr))                                \
            return SIM_ENOMEM;                                                                     \
    } while (0)
        G(names);
        G(dev_type);
        G(dev_readings);
        G(dev_last_seq);
        G(dev_out_of_order);
        G(dev_online);
#undef G
        tl->capnames = (uint32_t)c2;
    }
    memcpy(tl->names[tl->nnames], cut, sizeof cut);
    uint32_t i = hash_str(cut) & (tl->hcap - 1);
    while (tl->hslots[i])
        i = (i + 1) & (tl->hcap - 1);
    tl->hslots[i] = tl->nnames + 1;
    return tl->nnames++;
}

/* The seq bitmap spans at most this many sequence numbers; an item beyond it
 * is kept but not de-duplicated (a hostile or corrupt seq cannot make the
 * map huge). */
#define SEQ_SPAN_MAX (1ull << 28)

/* Marks seq as seen. Returns 1 if new, 0 if seen before, SIM_EINVAL if it
 * falls outside what the map may span, SIM_ENOMEM. */
static int seq_mark(sim_timeline *tl, uint64_t seq)
{
    if (!tl->seqbits) {
        tl->seq_lo = seq > 4096 ? (seq - 4096) & ~63ull : 0;
        tl->seq_words = 128;
        tl->seqbits = calloc(tl->seq_words, sizeof(uint64_t));
        if (!tl->seqbits)
            return SIM_ENOMEM;
        tl->seq_min = tl->seq_max = seq;
    }
    if (seq < tl->seq_lo) {
        uint64_t lo = seq > 4096 ? (seq - 4096) & ~63ull : 0;
        uint64_t shift = (tl->seq_lo - lo) / 64;
        if ((tl->seq_words + shift) * 64 > SEQ_SPAN_MAX)
            return SIM_EINVAL;
        uint64_t *nb = calloc(tl->seq_words + shift, sizeof(uint64_t));
        if (!nb)
            return SIM_ENOMEM;
        memcpy(nb + shift, tl->seqbits, tl->seq_words * sizeof(uint64_t));
        free(tl->seqbits);
        tl->seqbits = nb;
        tl->seq_words += shift;
        tl->seq_lo = lo;
    }
    uint64_t off = seq - tl->seq_lo;
    if (off / 64 >= tl->seq_words) {
        uint64_t nw = tl->seq_words;
        while (off / 64 >= nw)
            nw *= 2;
        if (nw * 64 > SEQ_SPAN_MAX)
            return SIM_EINVAL;
        uint64_t *nb = realloc(tl->seqbits, nw * sizeof(uint64_t));
        if (!nb)
            return SIM_ENOMEM;
        memset(nb + tl->seq_words, 0, (nw - tl->seq_words) * sizeof(uint64_t));
        tl->seqbits = nb;
        tl->seq_words = nw;
    }
    uint64_t bit = 1ull << (off % 64);
    if (tl->seqbits[off / 64] & bit)
        return 0;
    tl->seqbits[off / 64] |= bit;
    if (seq < tl->seq_min)
        tl->seq_min = seq;
    if (seq > tl->seq_max)
        tl->seq_max = seq;
    return 1;
}

static int seq_seen(const sim_timeline *tl, uint64_t seq)
{
    if (!tl->seqbits || seq < tl->seq_lo)
        return 0;
    uint64_t off = seq - tl->seq_lo;
    return off / 64 < tl->seq_words && (tl->seqbits[off / 64] >> (off % 64)) & 1;
}

uint64_t sim_tl_seq_gaps(const sim_timeline *tl, uint64_t from, uint64_t to, uint64_t *first)
{
    uint64_t missing = 0;
    *first = 0;
    if (!tl->seqbits || to < from)
        return 0;
    for (uint64_t s = from; s <= to; s++) {
        if (!seq_seen(tl, s)) {
            if (!missing)
                *first = s;
            missing++;
        }
    }
    return missing;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int jnum(const cJSON *o, const char *k, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v))
        return 0;
    *out = v->valuedouble;
    return 1;
}

static void cpy(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s ? s : "");
}

/* Registers the item's seq; returns 1 new, 0 duplicate. An item without a
 * seq (or outside the map) is taken as new and counted under no_seq. */
static int item_seq(sim_timeline *tl, const cJSON *it, uint64_t *seq)
{
    double d;
    *seq = 0;
    if (!jnum(it, "seq", &d) || !(d >= 1) || d > 9007199254740992.0) {
        tl->no_seq++;
        return 1;
    }
    *seq = (uint64_t)d;
    int r = seq_mark(tl, *seq);
    if (r == 0) {
        tl->duplicates++;
        return 0;
    }
    if (r < 0) {
        tl->no_seq++;
        if (r == SIM_ENOMEM)
            return SIM_ENOMEM;
    }
    return 1;
}

static int add_reading(sim_timeline *tl, double t, const cJSON *it)
{
    const char *dev = jstr(it, "device"), *metric = jstr(it, "metric");
    if (!dev || !metric) {
        tl->malformed++;
        return 0;
    }
    uint64_t seq;
    int r = item_seq(tl, it, &seq);
    if (r <= 0)
        return r;
    int64_t d = intern(tl, dev), m = intern(tl, metric);
    if (d < 0 || m < 0)
        return SIM_ENOMEM;
    const char *type = jstr(it, "type");
    if (type && !tl->dev_type[d]) {
        int64_t ty = intern(tl, type);
        if (ty < 0)
            return SIM_ENOMEM;
        tl->dev_type[d] = (uint32_t)ty + 1;
    }
    tl->readings++;
    tl->dev_readings[d]++;
    tl->dev_online[d] = 1;
    if (seq) {
        if (seq < tl->dev_last_seq[d])
            tl->dev_out_of_order[d]++;
        else
            tl->dev_last_seq[d] = seq;
    }
    if (tl->max_readings && tl->nrd >= tl->max_readings) {
        tl->readings_not_kept++;
        return 1;
    }
    if (grow((void **)&tl->rd, &tl->caprd, tl->nrd + 1, sizeof *tl->rd))
        return SIM_ENOMEM;
    sim_rx_reading *x = &tl->rd[tl->nrd++];
    x->t = t;
    x->seq = seq;
    x->dev = (uint32_t)d;
    x->metric = (uint32_t)m;
    x->has_value = (uint8_t)jnum(it, "value", &x->value);
    const char *q = jstr(it, "quality");
    x->quality = !q                        ? SIM_Q_UNKNOWN
                 : !strcmp(q, "good")      ? SIM_Q_GOOD
                 : !strcmp(q, "uncertain") ? SIM_Q_UNCERTAIN
                 : !strcmp(q, "bad")       ? SIM_Q_BAD
                                           : SIM_Q_UNKNOWN;
    return 1;
}

static int add_event(sim_timeline *tl, double t, const cJSON *it)
{
    const char *dev = jstr(it, "device"), *ev = jstr(it, "event");
    if (!dev || !ev) {
        tl->malformed++;
        return 0;
    }
    uint64_t seq;
    int r = item_seq(tl, it, &seq);
    if (r <= 0)
        return r;
    int64_t d = intern(tl, dev);
    if (d < 0 || grow((void **)&tl->ev, &tl->capev, tl->nev + 1, sizeof *tl->ev))
        return SIM_ENOMEM;
    const char *type = jstr(it, "type");
    if (type && !tl->dev_type[d]) {
        int64_t ty = intern(tl, type);
        if (ty < 0)
            return SIM_ENOMEM;
        tl->dev_type[d] = (uint32_t)ty + 1;
    }
    sim_rx_event *x = &tl->ev[tl->nev++];
    x->t = t;
    x->seq = seq;
    x->dev = (uint32_t)d;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(it, "active");
    x->active = cJSON_IsBool(a) ? cJSON_IsTrue(a) : cJSON_IsNumber(a) ? a->valuedouble != 0 : 1;
    cpy(x->event, sizeof x->event, ev);
    if (!strcmp(ev, "online") && x->active)
        tl->dev_online[d] = 1;
    tl->events++;
    return 1;
}

/* What alarm and forecast items share: device, state, seq and level. Returns
 * 1 with them set, 0 for a malformed item or a duplicate, or < 0. */
static int transition_item(sim_timeline *tl, const cJSON *it, int64_t *d, uint64_t *seq, int *level)
{
    const char *dev = jstr(it, "device"), *state = jstr(it, "state");
    double lv = 0;
    if (!dev || !state) {
        tl->malformed++;
        return 0;
    }
    int r = item_seq(tl, it, seq);
    if (r <= 0)
        return r;
    if ((*d = intern(tl, dev)) < 0)
        return SIM_ENOMEM;
    if (!jnum(it, "level", &lv))
        lv = sim_level_parse(jstr(it, "level_name"));
    *level = lv >= 0 && lv <= 4 ? (int)lv : 0;
    return 1;
}

static int add_alarm(sim_timeline *tl, double t, const cJSON *it)
{
    const char *state = jstr(it, "state");
    int64_t d;
    uint64_t seq;
    int level, r = transition_item(tl, it, &d, &seq, &level);
    if (r <= 0)
        return r;
    if (grow((void **)&tl->al, &tl->capal, tl->nal + 1, sizeof *tl->al))
        return SIM_ENOMEM;
    sim_rx_alarm *x = &tl->al[tl->nal++];
    x->t = t;
    x->seq = seq;
    x->dev = (uint32_t)d;
    x->level = level;
    x->has_value = jnum(it, "value", &x->value);
    cpy(x->alarm, sizeof x->alarm, jstr(it, "alarm"));
    cpy(x->rule, sizeof x->rule, jstr(it, "rule"));
    cpy(x->metric, sizeof x->metric, jstr(it, "metric"));
    cpy(x->state, sizeof x->state, state);
    tl->alarms++;
    if (!strcmp(state, "raised") || !strcmp(state, "updated"))
        tl->alarms_by_level[x->level]++;
    return 1;
}

/* "2026-11-23T15:40:00.123Z" -> ms since the epoch; 0 when malformed. */
static int64_t iso_ms(const char *s)
{
    int y, mo, d, h, mi, sec, ms;
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &y, &mo, &d, &h, &mi, &sec, &ms) != 7)
        return 0;
    y -= mo <= 2; /* days from civil (proleptic Gregorian) */
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400, doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t days = era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
    return ((days * 24 + h) * 60 + mi) * 60000 + sec * 1000LL + ms;
}

static int add_forecast(sim_timeline *tl, double t, const cJSON *it)
{
    const char *state = jstr(it, "state");
    double lead = 0;
    int64_t d;
    uint64_t seq;
    int level, r = transition_item(tl, it, &d, &seq, &level);
    if (r <= 0)
        return r;
    if (grow((void **)&tl->fc, &tl->capfc, tl->nfc + 1, sizeof *tl->fc))
        return SIM_ENOMEM;
    sim_rx_forecast *x = &tl->fc[tl->nfc++];
    x->t = t;
    x->seq = seq;
    x->dev = (uint32_t)d;
    x->level = level;
    x->lead_s = jnum(it, "lead_min", &lead) ? lead * 60 : 0;
    int64_t at = iso_ms(jstr(it, "at"));
    const cJSON *cr = cJSON_GetObjectItemCaseSensitive(it, "crossings");
    for (int l = 0; l <= 4; l++) {
        int64_t c = l ? iso_ms(jstr(cr, sim_level_name(l))) : 0;
        x->lead_l[l] = c && at ? (double)(c - at) / 1000.0 : NAN;
    }
    cpy(x->forecast, sizeof x->forecast, jstr(it, "forecast"));
    cpy(x->rule, sizeof x->rule, jstr(it, "rule"));
    cpy(x->state, sizeof x->state, state);
    cpy(x->detail, sizeof x->detail, jstr(it, "detail"));
    tl->forecasts++;
    return 1;
}

int sim_tl_message(sim_timeline *tl, double t, const char *kind, const char *payload, size_t len)
{
    int (*add)(sim_timeline *, double, const cJSON *);
    if (!strcmp(kind, "readings"))
        add = add_reading;
    else if (!strcmp(kind, "events"))
        add = add_event;
    else if (!strcmp(kind, "alarms"))
        add = add_alarm;
    else if (!strcmp(kind, "forecasts"))
        add = add_forecast;
    else
        return 0;
    cJSON *root = cJSON_ParseWithLength(payload, len);
    const cJSON *items = root ? cJSON_GetObjectItemCaseSensitive(root, "items") : NULL;
    if (!cJSON_IsArray(items)) {
        tl->malformed++;
        cJSON_Delete(root);
        return SIM_EMALFORMED;
    }
    int n = 0;
    const cJSON *it;
    const cJSON *gw = cJSON_GetObjectItemCaseSensitive(root, "gw");
    cJSON_ArrayForEach(it, items)
    {
        if (!cJSON_IsObject(it)) {
            tl->malformed++;
            continue;
        }
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(it, "seq");
        if (cJSON_IsString(gw) && cJSON_IsNumber(seq) && seq->valuedouble >= 1)
            sim_gw_note(&tl->gws, &tl->ngws, gw->valuestring, (uint64_t)seq->valuedouble);
        int r = add(tl, t, it);
        if (r < 0) {
            cJSON_Delete(root);
            return r;
        }
        n += r;
    }
    cJSON_Delete(root);
    return n;
}

int sim_tl_sent(sim_timeline *tl, double t, const char *device, const char *metric, double value)
{
    int64_t d = intern(tl, device), m = intern(tl, metric);
    if (d < 0 || m < 0 || grow((void **)&tl->sent, &tl->capsent, tl->nsent + 1, sizeof *tl->sent))
        return SIM_ENOMEM;
    sim_sent *s = &tl->sent[tl->nsent++];
    s->t = t;
    s->value = value;
    s->dev = (uint32_t)d;
    s->metric = (uint32_t)m;
    return SIM_OK;
}

/* ---- evaluation ---- */

static int ev_printf(sim_verdict *v, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int ev_printf(sim_verdict *v, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->evidence, sizeof v->evidence, fmt, ap);
    va_end(ap);
    v->status = status;
    return status;
}

/* Appends to the evidence. */
static void ev_add(sim_verdict *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void ev_add(sim_verdict *v, const char *fmt, ...)
{
    size_t n = strlen(v->evidence);
    if (n + 1 >= sizeof v->evidence)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->evidence + n, sizeof v->evidence - n, fmt, ap);
    va_end(ap);
}

/* Does device index d belong to the expectation? (no list = every device) */
static int about(const sim_expect *x, const sim_timeline *tl, uint32_t d)
{
    if (x->ndevs == 0)
        return 1;
    for (int i = 0; i < x->ndevs; i++)
        if (strcmp(tl->names[d], x->devs[i]) == 0)
            return 1;
    return 0;
}

/* "up-1" or "site underpass-1 (up-1, up-2)" or "every device". */
static void who(const sim_expect *x, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = 0;
    if (x->ndevs == 0) {
        snprintf(out, cap, "every device");
        return;
    }
    if (x->site[0])
        n = (size_t)snprintf(out, cap, "site %s (", x->site);
    for (int i = 0; i < x->ndevs && n < cap; i++) {
        if (i == 4 && x->ndevs > 5) {
            n += (size_t)snprintf(out + n, cap - n, ", ... %d devices", x->ndevs);
            break;
        }
        n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? ", " : "", x->devs[i]);
    }
    if (x->site[0] && n < cap)
        snprintf(out + n, cap - n, ")");
}

/* First upward crossing of x->crosses by the sent series of x->after_metric
 * among the expectation's devices: the first sample >= crosses whose previous
 * sample of the same series was below (or that starts the series), up to
 * tl->end_t (series may be sampled ahead of the run). Returns
 * the time, or -1; *maxv / *maxt / *dev_out describe the highest sample or
 * the crossing sample. */
static double crossing(const sim_expect *x, const sim_timeline *tl, double *val, double *maxv,
                       double *maxt, uint32_t *dev_out, size_t *nsamples)
{
    int64_t m = sim_tl_find(tl, x->after_metric);
    double best = -1;
    *maxv = -INFINITY;
    *maxt = -1;
    *nsamples = 0;
    if (m < 0)
        return -1;
    /* Per series "was below" state: samples of a series are in time order,
     * but series interleave, so remember the last value per device. */
    uint8_t *below = calloc(tl->nnames ? tl->nnames : 1, 1);
    uint8_t *seen = calloc(tl->nnames ? tl->nnames : 1, 1);
    if (!below || !seen) {
        free(below);
        free(seen);
        return -1;
    }
    for (size_t i = 0; i < tl->nsent; i++) {
        const sim_sent *s = &tl->sent[i];
        if (s->metric != (uint32_t)m || !about(x, tl, s->dev))
            continue;
        if (s->t > tl->end_t)
            continue; /* sampled ahead of time: not sent yet */
        (*nsamples)++;
        if (s->value > *maxv) {
            *maxv = s->value;
            *maxt = s->t;
        }
        int up = s->value >= x->crosses;
        if (up && (!seen[s->dev] || below[s->dev]) && (best < 0 || s->t < best)) {
            best = s->t;
            *val = s->value;
            *dev_out = s->dev;
        }
        seen[s->dev] = 1;
        below[s->dev] = !up;
    }
    free(below);
    free(seen);
    return best;
}

static int alarm_counts(const sim_rx_alarm *a, const sim_expect *x)
{
    if (strcmp(a->state, "raised") != 0 && strcmp(a->state, "updated") != 0)
        return 0;
    if (x->rule[0] && strcmp(a->rule, x->rule) != 0)
        return 0;
    return a->level >= (x->level ? x->level : 1);
}

/* Lists up to 3 alarm transitions of the expectation's devices (any level),
 * for evidence when the wanted one did not come. */
static void other_alarms(const sim_expect *x, const sim_timeline *tl, sim_verdict *v)
{
    int n = 0;
    for (size_t i = 0; i < tl->nal; i++) {
        const sim_rx_alarm *a = &tl->al[i];
        if (!about(x, tl, a->dev))
            continue;
        if (n < 3)
            ev_add(v, "%s %s %s %s at t=%.1fs", n ? ";" : " alarms seen:", a->alarm, a->state,
                   sim_level_name(a->level), a->t);
        n++;
    }
    if (n > 3)
        ev_add(v, " (+%d more)", n - 3);
    if (n == 0)
        ev_add(v, " no alarm transition at all for them");
}

static int eval_alarm(const sim_expect *x, const sim_timeline *tl, int final, sim_verdict *v)
{
    char w[256];
    who(x, w, sizeof w);
    double base = x->of >= 0 ? x->of : -1;
    double cval = 0, maxv, maxt;
    uint32_t cdev = 0;
    size_t ns = 0;
    if (x->has_after) {
        base = crossing(x, tl, &cval, &maxv, &maxt, &cdev, &ns);
        if (base < 0) {
            if (!final)
                return ev_printf(v, SIM_V_PENDING, "%s has not crossed %g yet", x->after_metric,
                                 x->crosses);
            if (ns == 0)
                return ev_printf(v, SIM_V_FAIL,
                                 "no sent %s values for %s: the sim cannot tell when it crossed %g",
                                 x->after_metric, w, x->crosses);
            return ev_printf(v, SIM_V_FAIL,
                             "the sent %s never crossed %g during the run (highest %g at t=%.1fs): "
                             "the scenario does not exercise this alarm",
                             x->after_metric, x->crosses, maxv, maxt);
        }
    }
    v->base = base;
    const sim_rx_alarm *hit = NULL;
    for (size_t i = 0; i < tl->nal; i++) {
        const sim_rx_alarm *a = &tl->al[i];
        if (!about(x, tl, a->dev) || !alarm_counts(a, x))
            continue;
        if (x->of >= 0 && !x->has_after && a->t < x->of - SIM_OF_SLACK_S)
            continue; /* before the moment it is about */
        if (!hit || a->t < hit->t)
            hit = a;
    }
    char basetxt[160] = "";
    if (x->has_after)
        snprintf(basetxt, sizeof basetxt, "%s crossed %g at t=%.1fs on %s (sent %g); ",
                 x->after_metric, x->crosses, base, tl->names[cdev], cval);
    else if (x->of >= 0)
        snprintf(basetxt, sizeof basetxt, "counting from t=%.1fs; ", x->of);
    if (hit) {
        v->at = hit->t;
        snprintf(v->alarm, sizeof v->alarm, "%s", hit->alarm);
        char val[48] = "";
        if (hit->has_value)
            snprintf(val, sizeof val, " value %g", hit->value);
        double lat = base >= 0 ? hit->t - base : -1;
        v->latency = lat;
        int late = base >= 0 && x->within >= 0 && lat > x->within;
        ev_printf(v, late ? SIM_V_FAIL : SIM_V_PASS,
                  "%salarm %s %s %s (rule %s, %s)%s reached the platform at t=%.1fs", basetxt,
                  hit->alarm, hit->state, sim_level_name(hit->level),
                  hit->rule[0] ? hit->rule : "?", tl->names[hit->dev], val, hit->t);
        if (base >= 0)
            ev_add(v, ", latency %.1fs%s%s", lat, lat < 0 ? " (before the crossing)" : "",
                   late ? "" : "");
        if (late)
            ev_add(v, ": later than the %gs allowed", x->within);
        return v->status;
    }
    /* Nothing yet: decided once the window has passed or the run ended. */
    double deadline = base >= 0 && x->within >= 0 ? base + x->within : -1;
    if (!final && (deadline < 0 || tl->end_t < deadline))
        return ev_printf(v, SIM_V_PENDING, "%swaiting for an alarm >= %s", basetxt,
                         sim_level_name(x->level));
    ev_printf(v, SIM_V_FAIL, "%sno alarm >= %s%s%s for %s reached the platform", basetxt,
              sim_level_name(x->level), x->rule[0] ? " of rule " : "", x->rule, w);
    if (deadline >= 0)
        ev_add(v, " by t=%.1fs", deadline);
    ev_add(v, " (run ended at t=%.1fs);", tl->end_t);
    other_alarms(x, tl, v);
    return SIM_V_FAIL;
}

static int eval_no_alarm(const sim_expect *x, const sim_timeline *tl, int final, sim_verdict *v)
{
    char w[256];
    who(x, w, sizeof w);
    const sim_rx_alarm *hit = NULL;
    size_t n = 0;
    for (size_t i = 0; i < tl->nal; i++) {
        const sim_rx_alarm *a = &tl->al[i];
        if (!about(x, tl, a->dev) || !alarm_counts(a, x))
            continue;
        if (!hit)
            hit = a;
        n++;
    }
    if (hit) {
        v->at = hit->t;
        snprintf(v->alarm, sizeof v->alarm, "%s", hit->alarm);
        ev_printf(v, SIM_V_FAIL, "alarm %s %s %s (rule %s, %s)", hit->alarm, hit->state,
                  sim_level_name(hit->level), hit->rule[0] ? hit->rule : "?", tl->names[hit->dev]);
        if (hit->has_value)
            ev_add(v, " value %g", hit->value);
        ev_add(v, " reached the platform at t=%.1fs", hit->t);
        if (n > 1)
            ev_add(v, "; %zu alarm transitions in all", n);
        return SIM_V_FAIL;
    }
    uint64_t rd = 0;
    for (int i = 0; i < x->ndevs; i++) {
        int64_t d = sim_tl_find(tl, x->devs[i]);
        if (d >= 0)
            rd += tl->dev_readings[d];
    }
    if (x->ndevs == 0)
        rd = tl->readings;
    if (!final)
        return ev_printf(v, SIM_V_PENDING, "no alarm so far for %s (%llu readings)", w,
                         (unsigned long long)rd);
    if (rd == 0)
        return ev_printf(v, SIM_V_FAIL,
                         "no alarm, but no reading of %s reached the platform either: "
                         "silence proves nothing",
                         w);
    return ev_printf(v, SIM_V_PASS,
                     "no alarm >= %s for %s during the run (%llu readings, t=0..%.1fs)",
                     sim_level_name(x->level ? x->level : 1), w, (unsigned long long)rd, tl->end_t);
}

static int eval_no_loss(const sim_expect *x, const sim_timeline *tl, int final, sim_verdict *v)
{
    char w[256];
    who(x, w, sizeof w);
    if (!final)
        return ev_printf(v, SIM_V_PENDING, "checked at the end (%llu duplicates so far)",
                         (unsigned long long)tl->duplicates);
    if (!tl->seqbits)
        return ev_printf(v, SIM_V_FAIL, "no item with a sequence number reached the platform");
    uint64_t lo = tl->seq_base ? tl->seq_base : tl->seq_min, hi = tl->seq_max;
    uint64_t rd = 0, ooo = 0, first = 0;
    int silent = 0;
    char silent_name[SIM_NAME_MAX] = "";
    if (x->ndevs) {
        for (int i = 0; i < x->ndevs; i++) {
            int64_t d = sim_tl_find(tl, x->devs[i]);
            if (d < 0 || tl->dev_readings[d] == 0) {
                if (!silent++)
                    snprintf(silent_name, sizeof silent_name, "%s", x->devs[i]);
                continue;
            }
            rd += tl->dev_readings[d];
            ooo += tl->dev_out_of_order[d];
        }
    } else {
        rd = tl->readings;
        for (uint32_t d = 0; d < tl->nnames; d++)
            ooo += tl->dev_out_of_order[d];
    }
    uint64_t missing = sim_tl_seq_gaps(tl, lo, hi, &first);
    if (missing || ooo || silent || rd == 0) {
        ev_printf(v, SIM_V_FAIL, "%s:", w);
        if (missing)
            ev_add(v,
                   " %llu of seq %llu..%llu never arrived (first missing %llu; seq is per "
                   "gateway, so a gap may be any device's);",
                   (unsigned long long)missing, (unsigned long long)lo, (unsigned long long)hi,
                   (unsigned long long)first);
        if (ooo)
            ev_add(v, " %llu readings arrived out of seq order;", (unsigned long long)ooo);
        if (silent)
            ev_add(v, " %d device(s) sent no reading at all (first %s);", silent, silent_name);
        if (rd == 0)
            ev_add(v, " no readings;");
        ev_add(v, " %llu duplicates", (unsigned long long)tl->duplicates);
        return SIM_V_FAIL;
    }
    return ev_printf(v, SIM_V_PASS,
                     "%llu readings of %s; seq %llu..%llu complete (%llu items), in order; %llu "
                     "duplicates (allowed, de-duplicated by id)",
                     (unsigned long long)rd, w, (unsigned long long)lo, (unsigned long long)hi,
                     (unsigned long long)(hi - lo + 1), (unsigned long long)tl->duplicates);
}

static int eval_online(const sim_expect *x, const sim_timeline *tl, int final, sim_verdict *v)
{
    uint32_t n = 0, listed = 0;
    int64_t ty = x->type[0] ? sim_tl_find(tl, x->type) : -1;
    size_t plen = strlen(x->prefix);
    char missing[160] = "";
    size_t ml = 0;
    for (uint32_t d = 0; d < tl->nnames; d++) {
        if (!tl->dev_online[d] || !about(x, tl, d))
            continue;
        if (x->type[0] && (ty < 0 || tl->dev_type[d] != (uint32_t)ty + 1))
            continue;
        if (plen && strncmp(tl->names[d], x->prefix, plen) != 0)
            continue;
        n++;
    }
    /* Name a few listed devices that never showed up. */
    for (int i = 0; i < x->ndevs && ml + 1 < sizeof missing; i++) {
        int64_t d = sim_tl_find(tl, x->devs[i]);
        if (d >= 0 && tl->dev_online[d])
            continue;
        if (listed++ < 5)
            ml += (size_t)snprintf(missing + ml, sizeof missing - ml, "%s%s", ml ? ", " : "",
                                   x->devs[i]);
    }
    char scope[128];
    snprintf(scope, sizeof scope, "%s%s%s%s%s", x->type[0] ? "type " : "", x->type,
             x->type[0] && plen ? ", " : "", plen ? "prefix " : "", x->prefix);
    if (n >= x->count)
        return ev_printf(v, SIM_V_PASS,
                         "%u devices%s%s%s reported online or sent readings (wanted %u)", n,
                         scope[0] ? " (" : "", scope, scope[0] ? ")" : "", x->count);
    if (!final)
        return ev_printf(v, SIM_V_PENDING, "%u of %u online so far", n, x->count);
    ev_printf(v, SIM_V_FAIL, "only %u of %u devices%s%s%s reported online or sent readings", n,
              x->count, scope[0] ? " (" : "", scope, scope[0] ? ")" : "");
    if (listed)
        ev_add(v, "; never heard from: %s%s", missing, listed > 5 ? ", ..." : "");
    return SIM_V_FAIL;
}

static int eval_event(const sim_expect *x, const sim_timeline *tl, int final, sim_verdict *v)
{
    char w[256];
    who(x, w, sizeof w);
    const sim_rx_event *hit = NULL, *early = NULL;
    double base = x->of >= 0 ? x->of : -1;
    v->base = base;
    for (size_t i = 0; i < tl->nev; i++) {
        const sim_rx_event *e = &tl->ev[i];
        if (e->active == x->ended || strcmp(e->event, x->event) != 0 || !about(x, tl, e->dev))
            continue;
        if (base >= 0 && e->t < base - SIM_OF_SLACK_S) {
            if (!early)
                early = e;
            continue;
        }
        if (!hit || e->t < hit->t)
            hit = e;
    }
    if (hit) {
        double lat = base >= 0 ? hit->t - base : -1;
        int late = base >= 0 && x->within >= 0 && lat > x->within;
        v->at = hit->t;
        v->latency = lat;
        ev_printf(v, late ? SIM_V_FAIL : SIM_V_PASS,
                  "event %s%s from %s (seq %llu) reached the platform at t=%.1fs", hit->event,
                  x->ended ? " ended" : "", tl->names[hit->dev], (unsigned long long)hit->seq,
                  hit->t);
        if (base >= 0)
            ev_add(v, ", %.1fs after t=%.1fs", lat, base);
        if (late)
            ev_add(v, ": later than the %gs allowed", x->within);
        return v->status;
    }
    double deadline = base >= 0 && x->within >= 0 ? base + x->within : -1;
    if (!final && (deadline < 0 || tl->end_t < deadline))
        return ev_printf(v, SIM_V_PENDING, "waiting for event %s%s", x->event,
                         x->ended ? " ended" : "");
    ev_printf(v, SIM_V_FAIL, "no %s%s event from %s reached the platform", x->event,
              x->ended ? " ended" : "", w);
    if (base >= 0)
        ev_add(v, " between t=%.1fs and %s", base, deadline >= 0 ? "" : "the end");
    if (deadline >= 0)
        ev_add(v, "t=%.1fs", deadline);
    if (early)
        ev_add(v, " (one arrived earlier, at t=%.1fs)", early->t);
    ev_add(v, "; run ended at t=%.1fs", tl->end_t);
    return SIM_V_FAIL;
}

/* No `event` item of that name (active or ended) from the devices during the
 * run, and something (a reading or another event) from them arrived: silence
 * proves nothing. A forbidden event fails at once. */
static int eval_no_event(const sim_expect *x, const sim_timeline *tl, int final, sim_verdict *v)
{
    char w[256];
    who(x, w, sizeof w);
    const sim_rx_event *hit = NULL;
    uint64_t n = 0, heard = 0;
    for (size_t i = 0; i < tl->nev; i++) {
        const sim_rx_event *e = &tl->ev[i];
        if (!about(x, tl, e->dev))
            continue;
        heard++;
        if (strcmp(e->event, x->event) != 0)
            continue;
        if (!hit || e->t < hit->t)
            hit = e;
        n++;
    }
    if (hit) {
        v->at = hit->t;
        ev_printf(v, SIM_V_FAIL, "event %s%s from %s (seq %llu) reached the platform at t=%.1fs",
                  hit->event, hit->active ? "" : " ended", tl->names[hit->dev],
                  (unsigned long long)hit->seq, hit->t);
        if (n > 1)
            ev_add(v, "; %llu %s events in all", (unsigned long long)n, x->event);
        return SIM_V_FAIL;
    }
    uint64_t rd = 0;
    for (int i = 0; i < x->ndevs; i++) {
        int64_t d = sim_tl_find(tl, x->devs[i]);
        if (d >= 0)
            rd += tl->dev_readings[d];
    }
    if (!final)
        return ev_printf(v, SIM_V_PENDING, "no %s event so far from %s", x->event, w);
    if (rd + heard == 0)
        return ev_printf(v, SIM_V_FAIL,
                         "no %s event, but nothing else of %s reached the platform either: "
                         "silence proves nothing",
                         x->event, w);
    return ev_printf(v, SIM_V_PASS,
                     "no %s event from %s during the run (%llu readings, %llu other events, "
                     "t=0..%.1fs)",
                     x->event, w, (unsigned long long)rd, (unsigned long long)heard, tl->end_t);
}

/* ---- forecasts ---- */

static int forecast_counts(const sim_rx_forecast *f, const sim_expect *x)
{
    if (strcmp(f->state, "raised") != 0 && strcmp(f->state, "updated") != 0)
        return 0;
    if (x->rule[0] && strcmp(f->rule, x->rule) != 0)
        return 0;
    return f->level >= (x->level ? x->level : 1);
}

/* The predicted crossing of `level` by forecast f in scenario time (the
 * item's own level when it lists none for it): its leads are wall time at the
 * gateway, and the scenario runs `speed` times faster. */
static double predicted(const sim_rx_forecast *f, int level, const sim_timeline *tl)
{
    double lead =
        level >= 1 && level <= 4 && !isnan(f->lead_l[level]) ? f->lead_l[level] : f->lead_s;
    return f->t + lead * (tl->speed > 0 ? tl->speed : 1);
}

/* "a forecast >= L for D arrives at least N before the actual crossing":
 * the first forecast transition that counts, before the sent curve crosses;
 * lead = crossing - its arrival. The evidence gives the forecast error of the
 * first and of the last forecast before the crossing. */
static int eval_lead_time(const sim_expect *x, const sim_timeline *tl, int final, sim_verdict *v)
{
    char w[256];
    who(x, w, sizeof w);
    double cval = 0, maxv, maxt;
    uint32_t cdev = 0;
    size_t ns = 0;
    double base = crossing(x, tl, &cval, &maxv, &maxt, &cdev, &ns);
    if (base < 0) {
        if (!final)
            return ev_printf(v, SIM_V_PENDING, "%s has not crossed %g yet", x->after_metric,
                             x->crosses);
        return ev_printf(v, SIM_V_FAIL,
                         ns ? "the sent %s never crossed %g during the run: the scenario does "
                              "not exercise this forecast"
                            : "no sent %s values: the sim cannot tell when it crossed %g",
                         x->after_metric, x->crosses);
    }
    v->base = base;
    const sim_rx_forecast *first = NULL, *last = NULL;
    for (size_t i = 0; i < tl->nfc; i++) {
        const sim_rx_forecast *f = &tl->fc[i];
        if (!about(x, tl, f->dev) || !forecast_counts(f, x) || f->t > base)
            continue;
        if (!first || f->t < first->t)
            first = f;
        if (!last || f->t >= last->t)
            last = f;
    }
    if (!first) {
        ev_printf(v, SIM_V_FAIL,
                  "%s crossed %g at t=%.1fs on %s (sent %g); no forecast >= %s%s%s for %s "
                  "reached the platform before it;",
                  x->after_metric, x->crosses, base, tl->names[cdev], cval,
                  sim_level_name(x->level), x->rule[0] ? " of rule " : "", x->rule, w);
        int n = 0;
        for (size_t i = 0; i < tl->nfc; i++) {
            const sim_rx_forecast *f = &tl->fc[i];
            if (!about(x, tl, f->dev))
                continue;
            if (n < 3)
                ev_add(v, "%s %s %s %s at t=%.1fs", n ? ";" : " forecasts seen:", f->forecast,
                       f->state, sim_level_name(f->level), f->t);
            n++;
        }
        if (!n)
            ev_add(v, " no forecast at all for them");
        return SIM_V_FAIL;
    }
    v->at = first->t;
    v->latency = first->t - base;
    v->lead = base - first->t;
    v->error = predicted(first, x->level, tl) - base;
    v->has_lead = 1;
    snprintf(v->alarm, sizeof v->alarm, "%s", first->forecast);
    int short_ = v->lead < x->at_least;
    ev_printf(v, short_ ? SIM_V_FAIL : SIM_V_PASS,
              "%s crossed %g at t=%.1fs on %s (sent %g); forecast %s %s %s reached the platform "
              "at t=%.1fs: lead %.1fs (%.1f min), predicted %s crossing t=%.1fs (error %+.1fs)",
              x->after_metric, x->crosses, base, tl->names[cdev], cval, first->forecast,
              first->state, sim_level_name(first->level), first->t, v->lead, v->lead / 60,
              sim_level_name(x->level), predicted(first, x->level, tl), v->error);
    if (last != first)
        ev_add(v, "; last forecast before it at t=%.1fs predicted t=%.1fs (error %+.1fs)", last->t,
               predicted(last, x->level, tl), predicted(last, x->level, tl) - base);
    if (short_)
        ev_add(v, ": less than the %gs (%.1f min) wanted", x->at_least, x->at_least / 60);
    return v->status;
}

static int eval_no_forecast(const sim_expect *x, const sim_timeline *tl, int final, sim_verdict *v)
{
    char w[256];
    who(x, w, sizeof w);
    const sim_rx_forecast *hit = NULL;
    size_t n = 0;
    for (size_t i = 0; i < tl->nfc; i++) {
        const sim_rx_forecast *f = &tl->fc[i];
        if (!about(x, tl, f->dev) || !forecast_counts(f, x))
            continue;
        if (!hit)
            hit = f;
        n++;
    }
    if (hit) {
        v->at = hit->t;
        snprintf(v->alarm, sizeof v->alarm, "%s", hit->forecast);
        return ev_printf(v, SIM_V_FAIL,
                         "forecast %s %s %s reached the platform at t=%.1fs, predicting a "
                         "crossing at t=%.1fs (%zu such transitions)",
                         hit->forecast, hit->state, sim_level_name(hit->level), hit->t,
                         predicted(hit, hit->level, tl), n);
    }
    if (!final)
        return ev_printf(v, SIM_V_PENDING, "no forecast >= %s for %s so far",
                         sim_level_name(x->level), w);
    return ev_printf(v, SIM_V_PASS,
                     "no forecast >= %s for %s in %.1fs (%llu forecast "
                     "transitions in all)",
                     sim_level_name(x->level), w, tl->end_t, (unsigned long long)tl->forecasts);
}

int sim_expect_eval(const sim_expect *x, const sim_timeline *tl, int final, sim_verdict *out)
{
    memset(out, 0, sizeof *out);
    out->at = out->base = out->latency = -1;
    switch (x->kind) {
    case SIM_X_ALARM:
        return eval_alarm(x, tl, final, out);
    case SIM_X_NO_ALARM:
        return eval_no_alarm(x, tl, final, out);
    case SIM_X_NO_READING_LOST:
        return eval_no_loss(x, tl, final, out);
    case SIM_X_ONLINE:
        return eval_online(x, tl, final, out);
    case SIM_X_EVENT:
        return eval_event(x, tl, final, out);
    case SIM_X_NO_EVENT:
        return eval_no_event(x, tl, final, out);
    case SIM_X_LEAD_TIME:
        return eval_lead_time(x, tl, final, out);
    case SIM_X_NO_FORECAST:
        return eval_no_forecast(x, tl, final, out);
    }
    return ev_printf(out, SIM_V_FAIL, "unknown expectation kind %d", (int)x->kind);
}
