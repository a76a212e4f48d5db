/* `sim run --html REPORT.html`: one self-contained page a person reads after a
 * rehearsal. Everything is inline (CSS, SVG, a few lines of JS; no fonts,
 * images or scripts from elsewhere), so it opens from a mail attachment or a
 * CI artifact. Sections: the verdict (each expectation PASS/FAIL with its
 * evidence), per device the values received over scenario time with the
 * alarm thresholds the gateway reported and the expectations' crossings drawn
 * as dashed lines, alarm transitions (class alarm-marker) and events marked,
 * and the gateway's delivery latency as a histogram. The page is built in
 * memory and written through a temporary file and a rename. */
#include "sim/report.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_DEVICES 30 /* charts drawn; the rest are named */
#define MAX_METRICS 6  /* per device */
#define MAX_POINTS 2000
#define W 900
#define H 130
#define X0 48
#define X1 (W - 12)
#define Y0 14
#define Y1 (H - 22)

const double sim_lat_edges[SIM_LAT_BINS] = {0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2,
                                            0.5,   1,     2,     5,    10,   30,   60,  INFINITY};

static const char *const level_color[5] = {"#777", "#1e6fd9", "#d4a000", "#f07800", "#d02020"};

/* "2026-11-23T15:40:00.123Z" -> Unix seconds, or NAN. */
static double iso_time(const char *s)
{
    struct tm tm;
    double sec;
    memset(&tm, 0, sizeof tm);
    if (!s ||
        sscanf(s, "%4d-%2d-%2dT%2d:%2d:%lf", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &sec) != 6 ||
        s[strlen(s) - 1] != 'Z')
        return NAN;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (double)timegm(&tm) + sec;
}

static void note_latency(sim_html_extra *x, double lat)
{
    if (isnan(lat))
        return;
    if (lat < 0)
        lat = 0; /* the two stamps are milliseconds apart on one host */
    int b = 0;
    while (b < SIM_LAT_BINS - 1 && lat >= sim_lat_edges[b])
        b++;
    x->lat_bins[b]++;
    if (!x->lat_n || lat < x->lat_min)
        x->lat_min = lat;
    if (!x->lat_n || lat > x->lat_max)
        x->lat_max = lat;
    x->lat_n++;
    x->lat_sum += lat;
}

static void note_threshold(sim_html_extra *x, const cJSON *it)
{
    const char *dev = cJSON_GetStringValue(cJSON_GetObjectItem(it, "device"));
    const char *metric = cJSON_GetStringValue(cJSON_GetObjectItem(it, "metric"));
    const cJSON *th = cJSON_GetObjectItem(it, "threshold");
    int level = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(it, "level"));
    if (!dev || !metric || !cJSON_IsNumber(th) || level < 1 || level > 4)
        return;
    for (int i = 0; i < x->nthr; i++)
        if (x->thr[i].level == level && x->thr[i].value == th->valuedouble &&
            !strcmp(x->thr[i].dev, dev) && !strcmp(x->thr[i].metric, metric))
            return;
    if (x->nthr == SIM_HTML_THRESHOLDS)
        return;
    sim_threshold *t = &x->thr[x->nthr++];
    snprintf(t->dev, sizeof t->dev, "%s", dev);
    snprintf(t->metric, sizeof t->metric, "%s", metric);
    t->level = level;
    t->value = th->valuedouble;
}

void sim_html_note(sim_html_extra *x, const char *kind, const char *payload, double wall_s)
{
    cJSON *root = cJSON_Parse(payload);
    const cJSON *items = cJSON_GetObjectItem(root, "items"), *it;
    int alarms = !strcmp(kind, "alarms");
    cJSON_ArrayForEach(it, items)
    {
        const char *stamp = cJSON_GetStringValue(cJSON_GetObjectItem(it, alarms ? "at" : "recv"));
        note_latency(x, wall_s - iso_time(stamp));
        if (alarms)
            note_threshold(x, it);
    }
    cJSON_Delete(root);
}

/* ---- writing ---- */

static void esc(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '&':
            fputs("&amp;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

static const char *result_class(int st)
{
    return st == SIM_V_PASS ? "pass" : st == SIM_V_FAIL ? "fail" : "pending";
}

static const char *const css =
    "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:960px}"
    "h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}"
    ".verdict{font-weight:bold;padding:4px 10px;border-radius:4px;color:#fff;display:inline-block}"
    ".ok{background:#2a8a3a}.bad{background:#c62828}"
    "table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:4px 6px;"
    "vertical-align:top;text-align:left}tr.pass td.r{color:#2a8a3a;font-weight:bold}"
    "tr.fail td.r{color:#c62828;font-weight:bold}tr.fail{background:#fdecea}"
    "td.ev{font-size:12px;color:#444}.dev h3{font-size:14px;margin:14px 0 2px;cursor:pointer}"
    ".dev.folded svg{display:none}svg{display:block;background:#fafafa;margin:2px 0}"
    "svg text{font:10px sans-serif;fill:#555}.note{color:#666;font-size:12px}";

/* Tiny and optional: folds a device's charts on a click, and counts the rows
 * so the header says it once the page is read. */
static const char *const js =
    "document.querySelectorAll('.dev h3').forEach(function(h){h.onclick=function(){"
    "h.parentNode.classList.toggle('folded');};});"
    "var p=document.querySelectorAll('tr.exp.pass').length,"
    "n=document.querySelectorAll('tr.exp').length;"
    "document.getElementById('tally').textContent=p+' of '+n+' expectations passed';"
    "document.body.setAttribute('data-rendered','1');";

static double xpos(double t, double end)
{
    return X0 + (end > 0 ? t / end : 0) * (X1 - X0);
}

typedef struct chart {
    uint32_t dev, metric; /* interned; metric UINT32_MAX = none (events only) */
    size_t n, cap, stride, seen;
    double *t, *v;
} chart;

static int chart_add(chart *c, double t, double v)
{
    if (c->seen++ % c->stride)
        return 0;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        double *nt = realloc(c->t, cap * sizeof *nt);
        if (!nt)
            return -1;
        c->t = nt;
        double *nv = realloc(c->v, cap * sizeof *nv);
        if (!nv)
            return -1;
        c->v = nv;
        c->cap = cap;
    }
    c->t[c->n] = t;
    c->v[c->n++] = v;
    return 0;
}

/* The dashed lines of one chart: the gateway's thresholds for this device and
 * metric, and the `crosses` of expectations about it. */
typedef struct hline {
    double v;
    int level; /* 0: an expectation's */
    char label[48];
} hline;

static int hlines(const sim_run_conf *rc, const sim_timeline *tl, const sim_html_extra *x,
                  const chart *c, hline *out, int cap)
{
    int n = 0;
    const char *dev = tl->names[c->dev], *metric = tl->names[c->metric];
    for (int i = 0; x && i < x->nthr && n < cap; i++)
        if (!strcmp(x->thr[i].dev, dev) && !strcmp(x->thr[i].metric, metric)) {
            out[n].v = x->thr[i].value;
            out[n].level = x->thr[i].level;
            snprintf(out[n++].label, sizeof out->label, "%s %g", sim_level_name(x->thr[i].level),
                     x->thr[i].value);
        }
    for (int i = 0; rc && i < rc->nexpects && n < cap; i++) {
        const sim_expect *e = &rc->expects[i];
        int mine = e->ndevs == 0;
        for (int d = 0; d < e->ndevs && !mine; d++)
            mine = !strcmp(e->devs[d], dev);
        if (e->has_after && mine && !strcmp(e->after_metric, metric)) {
            out[n].v = e->crosses;
            out[n].level = 0;
            snprintf(out[n++].label, sizeof out->label, "[%d] crosses %g", i + 1, e->crosses);
        }
    }
    return n;
}

static void draw_marks(FILE *f, const sim_timeline *tl, uint32_t dev, double end)
{
    for (size_t i = 0; i < tl->nal; i++) {
        const sim_rx_alarm *a = &tl->al[i];
        if (a->dev != dev)
            continue;
        double x = xpos(a->t, end);
        int lv = a->level >= 0 && a->level <= 4 ? a->level : 0;
        int clear = !strcmp(a->state, "cleared");
        fprintf(f,
                "<line class=\"alarm-marker lv-%d\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" "
                "stroke=\"%s\" stroke-width=\"2\"%s><title>",
                lv, x, x, Y0, Y1, level_color[clear ? 0 : lv],
                clear ? " stroke-dasharray=\"2 3\"" : "");
        esc(f, a->alarm);
        fprintf(f, " %s %s at t=%.1fs</title></line>", a->state, sim_level_name(a->level), a->t);
    }
    for (size_t i = 0; i < tl->nev; i++) {
        const sim_rx_event *e = &tl->ev[i];
        if (e->dev != dev)
            continue;
        fprintf(f,
                "<circle class=\"event-marker\" cx=\"%.1f\" cy=\"%d\" r=\"4\" fill=\"%s\"><title>",
                xpos(e->t, end), Y0 - 6, e->active ? "#6a1b9a" : "#bbb");
        esc(f, e->event);
        fprintf(f, " %s at t=%.1fs</title></circle>", e->active ? "active" : "ended", e->t);
    }
}

static void draw_chart(FILE *f, const sim_run_conf *rc, const sim_timeline *tl,
                       const sim_html_extra *x, const chart *c, double end)
{
    hline hl[16];
    int nh = c->metric == UINT32_MAX ? 0 : hlines(rc, tl, x, c, hl, 16);
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < c->n; i++) {
        lo = fmin(lo, c->v[i]);
        hi = fmax(hi, c->v[i]);
    }
    for (int i = 0; i < nh; i++) {
        lo = fmin(lo, hl[i].v);
        hi = fmax(hi, hl[i].v);
    }
    if (!isfinite(lo)) {
        lo = 0;
        hi = 1;
    }
    if (hi - lo < 1e-9) {
        lo -= 0.5;
        hi += 0.5;
    }
    double pad = (hi - lo) * 0.08;
    lo -= pad;
    hi += pad;
#define YPOS(v) (Y1 - ((v)-lo) / (hi - lo) * (Y1 - Y0))
    fprintf(f, "<svg width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" data-metric=\"", W, H, W, H);
    esc(f, c->metric == UINT32_MAX ? "" : tl->names[c->metric]);
    fprintf(f, "\"><line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"#ccc\"/>", X0, X1, Y1,
            Y1);
    for (int k = 0; k <= 4; k++) {
        double t = end * k / 4;
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"%s\">t=%.0fs</text>", xpos(t, end),
                H - 6,
                k == 0   ? "start"
                : k == 4 ? "end"
                         : "middle",
                t);
    }
    if (c->metric != UINT32_MAX) {
        fprintf(f, "<text x=\"2\" y=\"%d\">%.4g</text><text x=\"2\" y=\"%d\">%.4g</text>", Y0 + 8,
                hi - pad, Y1, lo + pad);
        fprintf(f, "<text x=\"%d\" y=\"%d\">", X0 + 4, Y0 + 2);
        esc(f, tl->names[c->metric]);
        fputs("</text>", f);
    } else {
        fprintf(f, "<text x=\"%d\" y=\"%d\">events and alarms (no readings)</text>", X0 + 4,
                Y0 + 12);
    }
    for (int i = 0; i < nh; i++) {
        double y = YPOS(hl[i].v);
        fprintf(f,
                "<line class=\"threshold\" x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" "
                "stroke=\"%s\" stroke-dasharray=\"6 4\"/><text x=\"%d\" y=\"%.1f\" "
                "text-anchor=\"end\">",
                X0, X1, y, y, hl[i].level ? level_color[hl[i].level] : "#555", X1 - 2, y - 2);
        esc(f, hl[i].label);
        fputs("</text>", f);
    }
    if (c->n) {
        fputs("<polyline class=\"values\" fill=\"none\" stroke=\"#1565c0\" stroke-width=\"1.5\" "
              "points=\"",
              f);
        for (size_t i = 0; i < c->n; i++)
            fprintf(f, "%.1f,%.1f ", xpos(c->t[i], end), YPOS(c->v[i]));
        fputs("\"/>", f);
    }
#undef YPOS
    draw_marks(f, tl, c->dev, end);
    fputs("</svg>\n", f);
}

static int is_listed(const uint32_t *devs, int n, uint32_t d)
{
    for (int i = 0; i < n; i++)
        if (devs[i] == d)
            return 1;
    return 0;
}

/* The devices to draw, most interesting first: those expectations name, then
 * those with alarms, with events, with readings. */
static int pick_devices(const sim_run_conf *rc, const sim_timeline *tl, uint32_t *out, int *more)
{
    int n = 0, extra = 0;
    uint8_t *seen = calloc(tl->nnames ? tl->nnames : 1, 1);
    if (!seen)
        return 0;
    for (size_t i = 0; i < tl->nrd; i++)
        seen[tl->rd[i].dev] |= 1;
    for (size_t i = 0; i < tl->nev; i++)
        seen[tl->ev[i].dev] |= 2;
    for (size_t i = 0; i < tl->nal; i++)
        seen[tl->al[i].dev] |= 4;
    for (int i = 0; rc && i < rc->nexpects; i++)
        for (int d = 0; d < rc->expects[i].ndevs; d++) {
            int64_t k = sim_tl_find(tl, rc->expects[i].devs[d]);
            if (k >= 0 && seen[k] && !is_listed(out, n, (uint32_t)k)) {
                if (n < MAX_DEVICES)
                    out[n++] = (uint32_t)k;
            }
        }
    static const uint8_t order[] = {4, 2, 1};
    for (size_t o = 0; o < sizeof order; o++)
        for (uint32_t k = 0; k < tl->nnames; k++)
            if ((seen[k] & order[o]) && !is_listed(out, n, k)) {
                if (n < MAX_DEVICES)
                    out[n++] = k;
                else if (o == 0 || !(seen[k] & (order[o] << 1)))
                    extra++;
            }
    free(seen);
    *more = extra;
    return n;
}

static void draw_devices(FILE *f, const sim_run_conf *rc, const sim_timeline *tl,
                         const sim_html_extra *x)
{
    uint32_t devs[MAX_DEVICES];
    int more = 0, nd = pick_devices(rc, tl, devs, &more);
    double end = tl->end_t > 0 ? tl->end_t : 1;
    chart *ch = calloc((size_t)nd * MAX_METRICS + 1, sizeof *ch);
    int nch = 0;
    if (!ch) {
        fputs("<p class=\"note\">out of memory drawing the timeline</p>", f);
        return;
    }
    /* One chart per (device, metric), MAX_METRICS per device, in the order
     * readings arrived; every device has at least its marks. */
    for (int d = 0; d < nd; d++) {
        int first = nch, have = 0;
        for (size_t i = 0; i < tl->nrd && have < MAX_METRICS; i++) {
            if (tl->rd[i].dev != devs[d] || !tl->rd[i].has_value)
                continue;
            int known = 0;
            for (int c = first; c < nch; c++)
                known |= ch[c].metric == tl->rd[i].metric;
            if (!known) {
                ch[nch].dev = devs[d];
                ch[nch++].metric = tl->rd[i].metric;
                have++;
            }
        }
        if (!have) {
            ch[nch].dev = devs[d];
            ch[nch++].metric = UINT32_MAX;
        }
    }
    for (int c = 0; c < nch; c++) {
        size_t cnt = 0;
        for (size_t i = 0; i < tl->nrd; i++)
            cnt += tl->rd[i].dev == ch[c].dev && tl->rd[i].metric == ch[c].metric;
        ch[c].stride = cnt > MAX_POINTS ? (cnt + MAX_POINTS - 1) / MAX_POINTS : 1;
        for (size_t i = 0; i < tl->nrd; i++)
            if (tl->rd[i].dev == ch[c].dev && tl->rd[i].metric == ch[c].metric &&
                tl->rd[i].has_value && chart_add(&ch[c], tl->rd[i].t, tl->rd[i].value))
                break;
    }
    for (int c = 0; c < nch; c++) {
        if (c == 0 || ch[c].dev != ch[c - 1].dev) {
            fputs("<div class=\"dev\" data-device=\"", f);
            esc(f, tl->names[ch[c].dev]);
            fputs("\"><h3>", f);
            esc(f, tl->names[ch[c].dev]);
            fputs("</h3>\n", f);
        }
        draw_chart(f, rc, tl, x, &ch[c], end);
        if (c == nch - 1 || ch[c + 1].dev != ch[c].dev)
            fputs("</div>\n", f);
    }
    if (more)
        fprintf(f, "<p class=\"note\">%d more devices reported; not drawn.</p>\n", more);
    if (!nd)
        fputs("<p class=\"note\">nothing reached the platform.</p>\n", f);
    for (int c = 0; c < nch; c++) {
        free(ch[c].t);
        free(ch[c].v);
    }
    free(ch);
}

/* The upper edge of the bin where the q-quantile falls. */
static double quantile(const sim_html_extra *x, double q)
{
    uint64_t want = (uint64_t)ceil(q * (double)x->lat_n), acc = 0;
    for (int b = 0; b < SIM_LAT_BINS; b++)
        if ((acc += x->lat_bins[b]) >= want && acc)
            return b == SIM_LAT_BINS - 1 ? x->lat_max : fmin(sim_lat_edges[b], x->lat_max);
    return x->lat_max;
}

static void fmt_s(char *out, size_t cap, double s)
{
    if (s < 1)
        snprintf(out, cap, "%.0f ms", s * 1000);
    else
        snprintf(out, cap, "%.2f s", s);
}

static void draw_latency(FILE *f, const sim_html_extra *x)
{
    if (!x || !x->lat_n) {
        fputs("<p class=\"note\">no item carried a receive time.</p>\n", f);
        return;
    }
    char a[32], b[32], c[32], d[32], e[32];
    fmt_s(a, sizeof a, x->lat_min);
    fmt_s(b, sizeof b, quantile(x, 0.5));
    fmt_s(c, sizeof c, quantile(x, 0.95));
    fmt_s(d, sizeof d, quantile(x, 0.99));
    fmt_s(e, sizeof e, x->lat_max);
    fprintf(f,
            "<p id=\"latency-stats\">%llu items: min %s, median &le; %s, p95 &le; %s, p99 &le; "
            "%s, max %s, mean %.0f ms (gateway receive &rarr; platform, wall clock)</p>\n",
            (unsigned long long)x->lat_n, a, b, c, d, e, x->lat_sum / (double)x->lat_n * 1000);
    uint64_t top = 1;
    for (int i = 0; i < SIM_LAT_BINS; i++)
        if (x->lat_bins[i] > top)
            top = x->lat_bins[i];
    int bw = (X1 - X0) / SIM_LAT_BINS;
    fprintf(f, "<svg id=\"latency\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\">", W, 160, W,
            160);
    for (int i = 0; i < SIM_LAT_BINS; i++) {
        double h = 110.0 * (double)x->lat_bins[i] / (double)top;
        char lab[32];
        if (i == SIM_LAT_BINS - 1)
            snprintf(lab, sizeof lab, "more");
        else
            fmt_s(lab, sizeof lab, sim_lat_edges[i]);
        fprintf(f,
                "<rect class=\"bin\" x=\"%d\" y=\"%.1f\" width=\"%d\" height=\"%.1f\" "
                "fill=\"#1565c0\"><title>&lt; %s: %llu</title></rect>"
                "<text x=\"%d\" y=\"150\" text-anchor=\"middle\">&lt;%s</text>",
                X0 + i * bw + 2, 125 - h, bw - 4, h, lab, (unsigned long long)x->lat_bins[i],
                X0 + i * bw + bw / 2, lab);
        if (x->lat_bins[i])
            fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"middle\">%llu</text>",
                    X0 + i * bw + bw / 2, 121 - h, (unsigned long long)x->lat_bins[i]);
    }
    fputs("</svg>\n", f);
}

int sim_report_html(const char *path, const sim_run_conf *rc, const sim_verdict *v,
                    const sim_timeline *tl, const sim_run_summary *sum, const sim_html_extra *x)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return SIM_ERR;
    int failed = 0;
    for (int i = 0; i < rc->nexpects; i++)
        failed += v[i].status != SIM_V_PASS;
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
          "<meta name=\"viewport\" content=\"width=device-width\"><title>Rehearsal: ",
          f);
    esc(f, sum->scenario);
    fprintf(f, "</title><style>%s</style></head>\n<body>\n<h1>", css);
    esc(f, sum->scenario);
    fprintf(f,
            "</h1>\n<p><span class=\"verdict %s\" id=\"verdict\">%s</span> <span id=\"tally\">"
            "%d of %d expectations passed</span>%s</p>\n",
            failed || sum->interrupted ? "bad" : "ok", failed || sum->interrupted ? "FAIL" : "PASS",
            rc->nexpects - failed, rc->nexpects, sum->interrupted ? " (interrupted)" : "");
    fprintf(f,
            "<p class=\"note\">speed %g, scenario t=0..%.1fs, %.1fs wall; %u devices, %u asked by "
            "the gateway; items: readings %llu, events %llu, alarm transitions %llu, duplicates "
            "%llu.</p>\n",
            sum->speed, sum->scenario_s, sum->wall_s, sum->devices, sum->devices_served,
            (unsigned long long)tl->readings, (unsigned long long)tl->events,
            (unsigned long long)tl->alarms, (unsigned long long)tl->duplicates);

    fputs("<h2>Expectations</h2>\n<table id=\"expectations\"><tr><th>#</th><th>result</th>"
          "<th>expectation</th><th>evidence</th></tr>\n",
          f);
    for (int i = 0; i < rc->nexpects; i++) {
        fprintf(f, "<tr class=\"exp %s\" id=\"exp-%d\"><td>%d</td><td class=\"r\">%s</td><td>",
                result_class(v[i].status), i + 1, i + 1,
                v[i].status == SIM_V_PASS   ? "PASS"
                : v[i].status == SIM_V_FAIL ? "FAIL"
                                            : "PENDING");
        esc(f, rc->expects[i].label);
        fprintf(f, " <span class=\"note\">(line %d)</span></td><td class=\"ev\">",
                rc->expects[i].line);
        esc(f, v[i].evidence);
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n<h2>Timeline</h2>\n<p class=\"note\">Values received per device over "
          "scenario time; dashed: alarm thresholds the gateway reported (coloured by level) and "
          "expectations' crossings (grey); vertical lines: alarm transitions (dotted: cleared); "
          "dots: events (purple active, grey ended). Click a device to fold it.</p>\n",
          f);
    draw_devices(f, rc, tl, x);
    fputs("<h2>Delivery latency</h2>\n", f);
    draw_latency(f, x);
    fprintf(f, "<script>%s</script>\n</body></html>", js);
    if (fclose(f) != 0) {
        free(text);
        return SIM_ERR;
    }
    int rcode = sim_report_write(path, text);
    free(text);
    return rcode;
}
