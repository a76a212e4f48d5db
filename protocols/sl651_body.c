/* SL651-2014 body decoding: serial, send time, station, observation time and the
 * elements of reports, for both encodings. Element identifiers follow the standard's
 * element table (HEX identifier and ASCII guide symbol side by side). */
#include "protocols/sl651.h"

#include "base/hex.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

enum {
    K_NUM = 0, /* packed BCD value */
    K_LEVEL,   /* packed BCD water level: base and correction apply */
    K_STATUS,  /* 45: 32-bit status and alarm bitmap */
    K_DRP,     /* F4: 12 five-minute rainfalls, 1 byte each, 0.1 mm, FF invalid */
    K_DRZ,     /* F5..FC: 12 five-minute relative levels, 2 bytes each, 0.01 m, FFFF invalid */
    K_STEP,    /* 04: time step code DDHHMM */
    K_SKIP,    /* known, fixed length, no reading (durations, gate numbers, ...) */
    K_OBS,     /* F0F0 observation time */
    K_ADDR,    /* F1F1 station address */
    K_TEXT,    /* F2F2 manual-set text to the end of the body */
    K_VAR      /* F3 picture: no length, element parsing stops */
};

typedef struct elem {
    uint8_t id;
    const char *guide; /* ASCII guide symbol */
    const char *metric;
    const char *unit;
    uint8_t kind;
    uint8_t digits, dec; /* Table C.1 N(digits, dec); the definition byte is what decodes */
} elem;

/* Table C.1 of SL651-2014, 01H..75H and F0H..FDH. Names and N(x,y) cross-checked against
 * two public implementations (see docs/sl651-hj212.md). */
static const elem elems[] = {
    {0x01, "AC", "section_area", "m2", K_NUM, 8, 2},
    {0x02, "AI", "air_temperature", "degC", K_NUM, 3, 1},
    {0x03, "C", "water_temperature", "degC", K_NUM, 3, 1},
    {0x04, "DR", NULL, NULL, K_STEP, 6, 0},
    {0x05, "DT", NULL, NULL, K_SKIP, 5, 2},
    {0x06, "ED", "evaporation_day", "mm", K_NUM, 5, 1},
    {0x07, "EJ", "evaporation_current", "mm", K_NUM, 5, 1},
    {0x08, "FL", "air_pressure", "hPa", K_NUM, 5, 0},
    {0x09, "GH", "gate_opening", "m", K_NUM, 5, 2},
    {0x0A, "GN", NULL, NULL, K_SKIP, 3, 0},
    {0x0B, "GS", NULL, NULL, K_SKIP, 1, 0},
    {0x0C, "GT", "gates_open", "", K_NUM, 3, 0},
    {0x0D, "GTP", "ground_temperature", "degC", K_NUM, 3, 1},
    {0x0E, "H", "groundwater_depth", "m", K_NUM, 6, 2},
    {0x0F, "HW", "wave_height", "m", K_NUM, 5, 2},
    {0x10, "M10", "soil_moisture_10cm", "%", K_NUM, 4, 1},
    {0x11, "M20", "soil_moisture_20cm", "%", K_NUM, 4, 1},
    {0x12, "M30", "soil_moisture_30cm", "%", K_NUM, 4, 1},
    {0x13, "M40", "soil_moisture_40cm", "%", K_NUM, 4, 1},
    {0x14, "M50", "soil_moisture_50cm", "%", K_NUM, 4, 1},
    {0x15, "M60", "soil_moisture_60cm", "%", K_NUM, 4, 1},
    {0x16, "M80", "soil_moisture_80cm", "%", K_NUM, 4, 1},
    {0x17, "M100", "soil_moisture_100cm", "%", K_NUM, 4, 1},
    {0x18, "MST", "humidity", "%", K_NUM, 4, 1},
    {0x19, "NS", "machines_running", "", K_NUM, 2, 0},
    {0x1A, "P1", "rain_1h", "mm", K_NUM, 5, 1},
    {0x1B, "P2", "rain_2h", "mm", K_NUM, 5, 1},
    {0x1C, "P3", "rain_3h", "mm", K_NUM, 5, 1},
    {0x1D, "P6", "rain_6h", "mm", K_NUM, 5, 1},
    {0x1E, "P12", "rain_12h", "mm", K_NUM, 5, 1},
    {0x1F, "PD", "rain_day", "mm", K_NUM, 5, 1},
    {0x20, "PJ", "rain_current", "mm", K_NUM, 5, 1},
    {0x21, "PN01", "rain_1min", "mm", K_NUM, 5, 1},
    {0x22, "PN05", "rain_5min", "mm", K_NUM, 5, 1},
    {0x23, "PN10", "rain_10min", "mm", K_NUM, 5, 1},
    {0x24, "PN30", "rain_30min", "mm", K_NUM, 5, 1},
    {0x25, "PR", "rain_storm", "mm", K_NUM, 5, 1},
    {0x26, "PT", "rain_total", "mm", K_NUM, 6, 1},
    {0x27, "Q", "flow", "m3/s", K_NUM, 9, 3},
    {0x28, "Q1", "flow_intake_1", "m3/s", K_NUM, 9, 3},
    {0x29, "Q2", "flow_intake_2", "m3/s", K_NUM, 9, 3},
    {0x2A, "Q3", "flow_intake_3", "m3/s", K_NUM, 9, 3},
    {0x2B, "Q4", "flow_intake_4", "m3/s", K_NUM, 9, 3},
    {0x2C, "Q5", "flow_intake_5", "m3/s", K_NUM, 9, 3},
    {0x2D, "Q6", "flow_intake_6", "m3/s", K_NUM, 9, 3},
    {0x2E, "Q7", "flow_intake_7", "m3/s", K_NUM, 9, 3},
    {0x2F, "Q8", "flow_intake_8", "m3/s", K_NUM, 9, 3},
    {0x30, "QA", "flow_outflow_total", "m3/s", K_NUM, 9, 3},
    {0x31, "QZ", "flow_gate", "m3/s", K_NUM, 9, 3},
    {0x32, "SW", "sediment_discharge", "1e4t", K_NUM, 11, 3},
    {0x33, "UC", "wind_direction", "", K_NUM, 2, 0},
    {0x34, "UE", "wind_force", "", K_NUM, 2, 0},
    {0x35, "US", "wind_speed", "m/s", K_NUM, 4, 1},
    {0x36, "VA", "velocity_mean", "m/s", K_NUM, 5, 3},
    {0x37, "VJ", "velocity", "m/s", K_NUM, 5, 3},
    {0x38, "VT", "supply_voltage", "V", K_NUM, 4, 2},
    {0x39, "Z", "water_level", "m", K_LEVEL, 7, 3},
    {0x3A, "ZB", "water_level_down", "m", K_LEVEL, 7, 3},
    {0x3B, "ZU", "water_level_up", "m", K_LEVEL, 7, 3},
    {0x3C, "Z1", "water_level_intake_1", "m", K_LEVEL, 7, 3},
    {0x3D, "Z2", "water_level_intake_2", "m", K_LEVEL, 7, 3},
    {0x3E, "Z3", "water_level_intake_3", "m", K_LEVEL, 7, 3},
    {0x3F, "Z4", "water_level_intake_4", "m", K_LEVEL, 7, 3},
    {0x40, "Z5", "water_level_intake_5", "m", K_LEVEL, 7, 3},
    {0x41, "Z6", "water_level_intake_6", "m", K_LEVEL, 7, 3},
    {0x42, "Z7", "water_level_intake_7", "m", K_LEVEL, 7, 3},
    {0x43, "Z8", "water_level_intake_8", "m", K_LEVEL, 7, 3},
    {0x44, "SQ", "sediment_concentration", "kg/m3", K_NUM, 9, 3},
    {0x45, "ZT", NULL, NULL, K_STATUS, 8, 0},
    {0x46, "pH", "ph", "", K_NUM, 4, 2},
    {0x47, "DO", "dissolved_oxygen", "mg/L", K_NUM, 4, 2},
    {0x48, "COND", "conductivity", "uS/cm", K_NUM, 5, 0},
    {0x49, "TURB", "turbidity", "NTU", K_NUM, 3, 0},
    {0x4A, "CODMN", "permanganate_index", "mg/L", K_NUM, 4, 1},
    {0x4B, "REDOX", "redox_potential", "mV", K_NUM, 5, 1},
    {0x4C, "NH4N", "ammonia_nitrogen", "mg/L", K_NUM, 6, 2},
    {0x4D, "TP", "total_phosphorus", "mg/L", K_NUM, 5, 3},
    {0x4E, "TN", "total_nitrogen", "mg/L", K_NUM, 5, 2},
    {0x4F, "TOC", "total_organic_carbon", "mg/L", K_NUM, 4, 2},
    {0x50, "CU", "copper", "mg/L", K_NUM, 7, 4},
    {0x51, "ZN", "zinc", "mg/L", K_NUM, 6, 4},
    {0x52, "SE", "selenium", "mg/L", K_NUM, 7, 5},
    {0x53, "AS", "arsenic", "mg/L", K_NUM, 7, 5},
    {0x54, "THG", "mercury_total", "mg/L", K_NUM, 7, 5},
    {0x55, "CD", "cadmium", "mg/L", K_NUM, 7, 5},
    {0x56, "PB", "lead", "mg/L", K_NUM, 7, 5},
    {0x57, "CHLA", "chlorophyll_a", "mg/L", K_NUM, 4, 2},
    {0x58, "WP1", "water_pressure_1", "kPa", K_NUM, 5, 2},
    {0x59, "WP2", "water_pressure_2", "kPa", K_NUM, 5, 2},
    {0x5A, "WP3", "water_pressure_3", "kPa", K_NUM, 5, 2},
    {0x5B, "WP4", "water_pressure_4", "kPa", K_NUM, 5, 2},
    {0x5C, "WP5", "water_pressure_5", "kPa", K_NUM, 5, 2},
    {0x5D, "WP6", "water_pressure_6", "kPa", K_NUM, 5, 2},
    {0x5E, "WP7", "water_pressure_7", "kPa", K_NUM, 5, 2},
    {0x5F, "WP8", "water_pressure_8", "kPa", K_NUM, 5, 2},
    {0x60, "SYL1", "water_meter_1_remaining", "m3", K_NUM, 11, 3},
    {0x61, "SYL2", "water_meter_2_remaining", "m3", K_NUM, 11, 3},
    {0x62, "SYL3", "water_meter_3_remaining", "m3", K_NUM, 11, 3},
    {0x63, "SYL4", "water_meter_4_remaining", "m3", K_NUM, 11, 3},
    {0x64, "SYL5", "water_meter_5_remaining", "m3", K_NUM, 11, 3},
    {0x65, "SYL6", "water_meter_6_remaining", "m3", K_NUM, 11, 3},
    {0x66, "SYL7", "water_meter_7_remaining", "m3", K_NUM, 11, 3},
    {0x67, "SYL8", "water_meter_8_remaining", "m3", K_NUM, 11, 3},
    {0x68, "SBL1", "water_meter_1_hourly", "m3/h", K_NUM, 10, 2},
    {0x69, "SBL2", "water_meter_2_hourly", "m3/h", K_NUM, 10, 2},
    {0x6A, "SBL3", "water_meter_3_hourly", "m3/h", K_NUM, 10, 2},
    {0x6B, "SBL4", "water_meter_4_hourly", "m3/h", K_NUM, 10, 2},
    {0x6C, "SBL5", "water_meter_5_hourly", "m3/h", K_NUM, 10, 2},
    {0x6D, "SBL6", "water_meter_6_hourly", "m3/h", K_NUM, 10, 2},
    {0x6E, "SBL7", "water_meter_7_hourly", "m3/h", K_NUM, 10, 2},
    {0x6F, "SBL8", "water_meter_8_hourly", "m3/h", K_NUM, 10, 2},
    {0x70, "VTA", "ac_voltage_a", "V", K_NUM, 4, 1},
    {0x71, "VTB", "ac_voltage_b", "V", K_NUM, 4, 1},
    {0x72, "VTC", "ac_voltage_c", "V", K_NUM, 4, 1},
    {0x73, "VIA", "ac_current_a", "A", K_NUM, 4, 1},
    {0x74, "VIB", "ac_current_b", "A", K_NUM, 4, 1},
    {0x75, "VIC", "ac_current_c", "A", K_NUM, 4, 1},
    {0xF0, "TT", NULL, NULL, K_OBS, 10, 0},
    {0xF1, "ST", NULL, NULL, K_ADDR, 10, 0},
    {0xF2, "RGZS", NULL, NULL, K_TEXT, 0, 0},
    {0xF3, "PIC", NULL, NULL, K_VAR, 0, 0},
    {0xF4, "DRP", "rain_5min", "mm", K_DRP, 0, 1},
    {0xF5, "DRZ1", "water_level", "m", K_DRZ, 0, 2},
    {0xF6, "DRZ2", "water_level_2", "m", K_DRZ, 0, 2},
    {0xF7, "DRZ3", "water_level_3", "m", K_DRZ, 0, 2},
    {0xF8, "DRZ4", "water_level_4", "m", K_DRZ, 0, 2},
    {0xF9, "DRZ5", "water_level_5", "m", K_DRZ, 0, 2},
    {0xFA, "DRZ6", "water_level_6", "m", K_DRZ, 0, 2},
    {0xFB, "DRZ7", "water_level_7", "m", K_DRZ, 0, 2},
    {0xFC, "DRZ8", "water_level_8", "m", K_DRZ, 0, 2},
    {0xFD, "DATA", NULL, NULL, K_SKIP, 0, 0},
};
#define N_ELEMS (sizeof elems / sizeof elems[0])

/* elems[] is sorted by id (the test checks it): binary search. */
static const elem *elem_by_id(uint8_t id)
{
    size_t lo = 0, hi = N_ELEMS;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (elems[mid].id == id)
            return &elems[mid];
        if (elems[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static const elem *elem_by_guide(const char *g, size_t n)
{
    for (size_t i = 0; i < N_ELEMS; i++)
        if (strlen(elems[i].guide) == n && strncmp(elems[i].guide, g, n) == 0)
            return &elems[i];
    for (size_t i = 0; i < N_ELEMS; i++)
        if (strlen(elems[i].guide) == n && strncasecmp(elems[i].guide, g, n) == 0)
            return &elems[i];
    return NULL;
}

const char *gw_sl651_element_metric(uint8_t id, const char **unit)
{
    const elem *e = elem_by_id(id);
    if (!e || !e->metric)
        return NULL;
    if (unit)
        *unit = e->unit;
    return e->metric;
}

static uint8_t fixed_bytes(const elem *e)
{
    if (e->kind == K_DRP)
        return 12;
    if (e->kind == K_DRZ)
        return 24;
    if (e->kind == K_OBS || e->kind == K_ADDR)
        return 5;
    return (uint8_t)((e->digits + 1) / 2);
}

int gw_sl651_element_info(uint8_t id, gw_sl651_element *out)
{
    const elem *e = elem_by_id(id);
    if (!e || !out)
        return GW_ENOTFOUND;
    out->id = e->id;
    out->guide = e->guide;
    out->metric = e->metric;
    out->unit = e->unit;
    out->digits = e->digits;
    out->decimals = e->dec;
    out->bytes = e->kind == K_TEXT || e->kind == K_VAR ? 0 : fixed_bytes(e);
    return GW_OK;
}

const char *gw_sl651_function_name(uint8_t fn)
{
    static const char *const names[] = {
        "test",           /* 30 */
        "equal_interval", /* 31 */
        "timed",          /* 32 */
        "extra",          /* 33 */
        "hourly",         /* 34 */
        "manual",         /* 35 */
        "picture",        /* 36 */
        "query_realtime", /* 37 */
        "query_period",   /* 38 */
        "query_manual",   /* 39 */
        "query_element",  /* 3A */
    };
    static const char *const names40[] = {
        "set_basic_config", "read_basic_config", "set_run_config", "read_run_config",
        "query_pump",       "query_version",     "query_status",   "init_storage",
        "factory_reset",    "change_password",   "set_clock",      "set_ic_card",
        "pump_control",     "valve_control",     "gate_control",   "water_quota",
        "query_events",     "query_clock",
    };
    if (fn == 0x2F)
        return "keepalive";
    if (fn >= 0x30 && fn <= 0x3A)
        return names[fn - 0x30];
    if (fn >= 0x40 && fn <= 0x51)
        return names40[fn - 0x40];
    if (fn >= 0xE0)
        return "custom";
    return "unknown";
}

/* ---- decoding context ----------------------------------------------------------------------- */

typedef struct dctx {
    const gw_sl651_station_cfg *cfg;
    const gw_sink *sink;
    gw_sl651_report *rep;
    int64_t obs_ms;  /* current observation time (F0F0), else the send time */
    int64_t step_ms; /* from a 04 time step element, 0 when none */
    int step_zero;   /* a 04 element said 000000: F4..FC run in whole hours */
} dctx;

static unsigned quirks(const dctx *c)
{
    return c->cfg ? c->cfg->quirks : 0;
}

static void note_unknown(dctx *c, uint16_t id)
{
    if (c->rep->unknown < GW_SL651_UNKNOWN_MAX)
        c->rep->unknown_ids[c->rep->unknown] = id;
    c->rep->unknown++;
}

static const gw_sl651_override *find_override(const dctx *c, uint16_t id)
{
    if (!c->cfg || !c->cfg->overrides)
        return NULL;
    for (size_t i = 0; i < c->cfg->n_overrides; i++)
        if (c->cfg->overrides[i].element == id && c->cfg->overrides[i].metric)
            return &c->cfg->overrides[i];
    return NULL;
}

static int emit(dctx *c, const char *metric, const char *unit, double v, int q, int reason,
                int64_t obs_ms)
{
    gw_reading r;
    memset(&r, 0, sizeof r);
    gw_strlcpy(r.metric, metric, sizeof r.metric);
    gw_strlcpy(r.unit, unit ? unit : "", sizeof r.unit);
    r.value = v;
    r.quality = (uint8_t)q;
    r.reason = (uint8_t)reason;
    r.obs_ms = obs_ms;
    c->rep->readings++;
    if (reason == GW_R_MISSING)
        c->rep->missing++;
    if (c->sink && c->sink->reading)
        return c->sink->reading(c->sink->ctx, &r);
    return GW_OK;
}

static double level_adjust(const dctx *c, double v)
{
    if (!c->cfg)
        return v;
    return c->cfg->base_level + v + c->cfg->correction;
}

/* Status and alarm bits of element 45 that become events. Bit 7 is inverted: 0 means the
 * cabinet door is open. */
static const struct {
    uint8_t bit;
    uint8_t inverted;
    const char *kind;
} status_bits[] = {
    {0, 0, "ac_power_lost"},     {1, 0, "battery_low"},         {2, 0, "level_over_limit"},
    {3, 0, "flow_alarm"},        {4, 0, "water_quality_alarm"}, {5, 0, "flow_meter_fault"},
    {6, 0, "level_meter_fault"}, {7, 1, "door_open"},           {8, 0, "storage_fault"},
};

static int emit_status(dctx *c, uint32_t bits)
{
    c->rep->has_status = 1;
    c->rep->status = bits;
    uint32_t prev = c->cfg && c->cfg->status_known ? c->cfg->status_prev : GW_SL651_STATUS_NORMAL;
    for (size_t i = 0; i < sizeof status_bits / sizeof status_bits[0]; i++) {
        if (((bits ^ prev) >> status_bits[i].bit & 1u) == 0)
            continue; /* edge-triggered: an unchanged condition says nothing new */
        gw_event e;
        memset(&e, 0, sizeof e);
        gw_strlcpy(e.kind, status_bits[i].kind, sizeof e.kind);
        unsigned set = (bits >> status_bits[i].bit) & 1u;
        e.active = (uint8_t)(status_bits[i].inverted ? !set : set);
        e.obs_ms = c->obs_ms;
        snprintf(e.detail, sizeof e.detail, "sl651 45H bit%u=%u status=0x%08X",
                 (unsigned)status_bits[i].bit, set, (unsigned)bits);
        c->rep->events++;
        if (c->sink && c->sink->event) {
            int r = c->sink->event(c->sink->ctx, &e);
            if (r < 0)
                return r;
        }
    }
    return GW_OK;
}

/* Time of five-minute sample k of hour h of an F4..FC element. */
static int64_t sample_ms(const dctx *c, int h, int k)
{
    const int64_t five = 5 * 60 * 1000;
    int64_t obs = c->obs_ms + (int64_t)h * 3600000;
    if (c->cfg && c->cfg->drp_forward)
        return obs + k * five;
    return obs - 11 * five + k * five;
}

/* raw[12] from F4 (step 1 byte) or F5..FC (2 bytes), hour h of a run (0 otherwise). */
static int emit_series(dctx *c, const elem *e, const gw_sl651_override *ov, const uint8_t *p,
                       size_t n, int h)
{
    const char *metric = ov ? ov->metric : e->metric;
    const char *unit = ov ? ov->unit : e->unit;
    int level = e->kind == K_DRZ;
    size_t w = level ? 2 : 1;
    for (int k = 0; k < 12 && (size_t)(k + 1) * w <= n; k++) {
        unsigned raw = level ? (unsigned)(p[2 * k] << 8 | p[2 * k + 1]) : p[k];
        int r;
        if (raw == (level ? 0xFFFFu : 0xFFu))
            r = emit(c, metric, unit, 0, GW_Q_BAD, GW_R_MISSING, sample_ms(c, h, k));
        else if (level)
            r = emit(c, metric, unit, level_adjust(c, raw / 100.0), GW_Q_GOOD, GW_R_NONE,
                     sample_ms(c, h, k));
        else
            r = emit(c, metric, unit, raw / 10.0, GW_Q_GOOD, GW_R_NONE, sample_ms(c, h, k));
        if (r < 0)
            return r;
    }
    return GW_OK;
}

static const double pow10_tab[8] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7};

/* Decodes a packed BCD value of n bytes with dec decimals. Returns 1 ok, 0 missing
 * (all F), -1 invalid digits. */
static int bcd_value(const uint8_t *p, size_t n, unsigned dec, double *out)
{
    size_t i = 0;
    int neg = 0, allf = 1;
    for (size_t k = 0; k < n; k++)
        if (p[k] != 0xFF)
            allf = 0;
    if (allf)
        return 0;
    if (n > 1 && p[0] == 0xFF) {
        neg = 1;
        i = 1;
    }
    if (n - i > 9) /* more digits than a double holds exactly */
        return -1;
    uint64_t v = 0;
    for (; i < n; i++) {
        unsigned hi = p[i] >> 4, lo = p[i] & 15;
        if (hi > 9 || lo > 9)
            return -1;
        v = v * 100 + hi * 10 + lo;
    }
    double d = (double)v / pow10_tab[dec & 7];
    *out = neg ? -d : d;
    return 1;
}

static int emit_number(dctx *c, const char *metric, const char *unit, int level, const uint8_t *p,
                       size_t n, unsigned dec, int64_t obs)
{
    double v = 0;
    int k = bcd_value(p, n, dec, &v);
    if (k < 0) {
        c->rep->bad_bcd++;
        return GW_OK;
    }
    if (k == 0)
        return emit(c, metric, unit, 0, GW_Q_BAD, GW_R_MISSING, obs);
    return emit(c, metric, unit, level ? level_adjust(c, v) : v, GW_Q_GOOD, GW_R_NONE, obs);
}

static int bcd2(uint8_t b)
{
    if ((b >> 4) > 9 || (b & 15) > 9)
        return -1;
    return (b >> 4) * 10 + (b & 15);
}

/* Reads a BCD time of 5 (no seconds) or 6 bytes. */
static int bcd_time(const uint8_t *p, int with_seconds, gw_sl651_time *t, int64_t *ms)
{
    int v[6] = {0};
    for (int i = 0; i < (with_seconds ? 6 : 5); i++)
        if ((v[i] = bcd2(p[i])) < 0)
            return GW_EMALFORMED;
    t->yy = (uint8_t)v[0];
    t->mo = (uint8_t)v[1];
    t->dd = (uint8_t)v[2];
    t->hh = (uint8_t)v[3];
    t->mi = (uint8_t)v[4];
    t->ss = (uint8_t)v[5];
    return gw_sl651_time_to_ms(t, ms) == GW_OK ? GW_OK : GW_EMALFORMED;
}

static void addr_hex(const uint8_t *p, char out[11])
{
    out[gw_hex_put(p, 5, out)] = '\0';
}

/* ---- HEX body ------------------------------------------------------------------------------- */

/* F2: the manual-set text runs to the end of the body. One event carries it. */
static int emit_manual(dctx *c, const uint8_t *p, size_t n)
{
    gw_sl651_report *rep = c->rep;
    size_t k = 0;
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\0' || p[n - 1] == '\r' || p[n - 1] == '\n'))
        n--;
    for (size_t i = 0; i < n && k + 1 < sizeof rep->manual; i++)
        rep->manual[k++] = (char)(p[i] >= 0x20 && p[i] < 0x7F ? p[i] : '?');
    rep->manual[k] = '\0';
    rep->has_manual = 1;
    gw_event e;
    memset(&e, 0, sizeof e);
    gw_strlcpy(e.kind, "manual_set", sizeof e.kind);
    gw_strlcpy(e.detail, rep->manual, sizeof e.detail);
    e.active = 1;
    e.obs_ms = c->obs_ms;
    rep->events++;
    if (c->sink && c->sink->event)
        return c->sink->event(c->sink->ctx, &e);
    return GW_OK;
}

/* F4..FC at p[0..n): one hour, or whole hours after a 000000 step code. Returns the
 * bytes used (0 when they do not fit: truncated) or a sink error. */
static int hex_series(dctx *c, const elem *e, const gw_sl651_override *ov, uint8_t def,
                      const uint8_t *p, size_t n, size_t *used)
{
    size_t w = fixed_bytes(e);
    *used = 0;
    if ((size_t)(def >> 3) != w)
        c->rep->fixed_len++; /* Table C.1 fixes the length: the definition byte is wrong */
    size_t hours = 1;
    if (c->step_zero) {
        /* The definition byte cannot express a run (5 bits): the run is the rest of the
         * body, in whole hours. */
        hours = n / w;
        if (hours * w != n)
            c->rep->truncated = 1;
    }
    if (hours == 0 || n < w) {
        c->rep->truncated = 1;
        return GW_OK;
    }
    for (size_t h = 0; h < hours; h++) {
        int r = emit_series(c, e, ov, p + h * w, w, (int)h);
        if (r < 0)
            return r;
    }
    if (c->step_zero)
        c->rep->hours += (unsigned)hours;
    *used = hours * w;
    return GW_OK;
}

/* Element loop over p[0..n). Returns GW_OK or a sink error. */
static int hex_elements(dctx *c, const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t id = p[i];
        if (id == 0xFF) { /* custom FFxx element: FF xx def value */
            if (n - i < 3) {
                c->rep->truncated = 1;
                return GW_OK;
            }
            uint8_t def = p[i + 2];
            size_t len = def >> 3;
            if (n - i - 3 < len) {
                c->rep->truncated = 1;
                return GW_OK;
            }
            uint16_t key = (uint16_t)(0xFF00 | p[i + 1]);
            const gw_sl651_override *ov = find_override(c, key);
            if (ov) {
                int r = emit_number(c, ov->metric, ov->unit, ov->level, p + i + 3, len, def & 7,
                                    c->obs_ms);
                if (r < 0)
                    return r;
            } else {
                note_unknown(c, key);
            }
            i += 3 + len;
            continue;
        }
        const elem *e = elem_by_id(id);
        if (n - i < 2) {
            c->rep->truncated = 1;
            return GW_OK;
        }
        uint8_t def = p[i + 1];
        if (e && (e->kind == K_OBS || e->kind == K_ADDR)) {
            int quirk = def == 0x28 && (quirks(c) & GW_SL651_Q_ID28);
            if ((def != id && !quirk) || n - i < 7) {
                c->rep->truncated = 1;
                return GW_OK;
            }
            if (quirk)
                c->rep->quirks_used++;
            if (e->kind == K_OBS) {
                gw_sl651_time t;
                int64_t ms;
                if (bcd_time(p + i + 2, 0, &t, &ms) != GW_OK) {
                    c->rep->truncated = 1;
                    return GW_OK;
                }
                c->rep->has_obs = 1;
                c->rep->obs_time = t;
                c->rep->obs_ms = c->obs_ms = ms;
            } else {
                c->rep->has_station = 1;
                addr_hex(p + i + 2, c->rep->station_hex);
            }
            i += 7;
            continue;
        }
        if (e && e->kind == K_TEXT) {
            if (def != id) {
                c->rep->truncated = 1;
                return GW_OK;
            }
            return emit_manual(c, p + i + 2, n - i - 2);
        }
        if (e && e->kind == K_VAR) {
            if (def != id) {
                note_unknown(c, id);
                c->rep->truncated = 1;
                return GW_OK;
            }
            /* F3F3: the picture bytes run to the end of the body (function 36). */
            c->rep->picture = p + i + 2;
            c->rep->picture_len = n - i - 2;
            return GW_OK;
        }
        const gw_sl651_override *ov = find_override(c, id);
        if (e && (e->kind == K_DRP || e->kind == K_DRZ)) {
            size_t used = 0;
            int r = hex_series(c, e, ov, def, p + i + 2, n - i - 2, &used);
            if (r < 0)
                return r;
            if (used == 0)
                return GW_OK;
            i += 2 + used;
            continue;
        }
        size_t len = def >> 3;
        unsigned dec = def & 7;
        if (n - i - 2 < len) {
            c->rep->truncated = 1;
            return GW_OK;
        }
        const uint8_t *v = p + i + 2;
        i += 2 + len;
        int r = GW_OK;
        int kind = e ? e->kind : -1;
        if (ov && (kind < 0 || kind == K_NUM || kind == K_LEVEL || kind == K_SKIP))
            kind = ov->level ? K_LEVEL : K_NUM;
        switch (kind) {
        case K_NUM:
        case K_LEVEL: {
            const char *metric = ov ? ov->metric : e->metric;
            const char *unit = ov ? ov->unit : e->unit;
            if (len == 0)
                break;
            if (c->step_ms > 0) {
                /* Equal-interval report: the element is followed by more values of the
                 * same length, one per time step, filling the rest of the body. */
                size_t extra = (n - i) / len;
                for (size_t k = 0; k <= extra && r >= 0; k++)
                    r = emit_number(c, metric, unit, kind == K_LEVEL, v + k * len, len, dec,
                                    c->obs_ms + (int64_t)k * c->step_ms);
                i += extra * len;
                if (i < n)
                    c->rep->truncated = 1;
                return r;
            }
            r = emit_number(c, metric, unit, kind == K_LEVEL, v, len, dec, c->obs_ms);
            break;
        }
        case K_STATUS:
            if (len != 4) {
                note_unknown(c, id);
                break;
            }
            r = emit_status(c, (uint32_t)v[0] << 24 | (uint32_t)v[1] << 16 | (uint32_t)v[2] << 8 |
                                   v[3]);
            break;
        case K_STEP: {
            if (len != 3) {
                note_unknown(c, id);
                break;
            }
            int d = bcd2(v[0]), h = bcd2(v[1]), m = bcd2(v[2]);
            if (d < 0 || h < 0 || m < 0) {
                c->rep->bad_bcd++;
                break;
            }
            c->step_ms = ((int64_t)d * 1440 + h * 60 + m) * 60000;
            c->step_zero = c->step_ms == 0;
            break;
        }
        default: /* K_SKIP or not in the table */
            note_unknown(c, id);
            break;
        }
        if (r < 0)
            return r;
    }
    return GW_OK;
}

/* The F1F1 / F0F0 guide pair at p, or F1 28 / F0 28 from a station configured with
 * that quirk (counted). */
static int guide_at(dctx *c, const uint8_t *p, uint8_t id)
{
    if (p[0] != id)
        return 0;
    if (p[1] == id)
        return 1;
    if (p[1] == 0x28 && (quirks(c) & GW_SL651_Q_ID28)) {
        c->rep->quirks_used++;
        return 1;
    }
    return 0;
}

/* Report functions whose body carries F1F1 address, station type and F0F0. */
static int is_report(uint8_t fn)
{
    return (fn >= 0x30 && fn <= 0x34) || fn == 0x36 || fn == 0x37 || fn == 0x38 || fn == 0x3A;
}

static int decode_hex(dctx *c, const gw_sl651_frame *f)
{
    const uint8_t *p = f->body;
    size_t n = f->body_len;
    gw_sl651_report *rep = c->rep;
    if (n == 0 && f->direction == GW_SL651_DIR_DOWN) {
        rep->function_known = 1;
        return GW_OK;
    }
    if (n < 8)
        return GW_EMALFORMED;
    rep->serial = (uint16_t)(p[0] << 8 | p[1]);
    if (bcd_time(p + 2, 1, &rep->send_time, &rep->send_ms) != GW_OK)
        return GW_EMALFORMED;
    c->obs_ms = rep->send_ms;
    p += 8;
    n -= 8;
    if (f->direction == GW_SL651_DIR_DOWN || f->function == 0x2F) {
        rep->function_known = 1;
        return GW_OK;
    }
    int has_type = is_report(f->function);
    if (has_type || f->function == 0x35 || f->function == 0x46) {
        if (n >= 2 && guide_at(c, p, 0xF1)) {
            if (n < 7 + (size_t)has_type)
                return GW_EMALFORMED;
            rep->has_station = 1;
            addr_hex(p + 2, rep->station_hex);
            p += 7;
            n -= 7;
            if (has_type) {
                rep->station_type = p[0];
                p++;
                n--;
            }
        } else if (has_type) {
            return GW_EMALFORMED;
        }
        if (has_type) {
            if (n < 7 || !guide_at(c, p, 0xF0))
                return GW_EMALFORMED;
            if (bcd_time(p + 2, 0, &rep->obs_time, &rep->obs_ms) != GW_OK)
                return GW_EMALFORMED;
            rep->has_obs = 1;
            c->obs_ms = rep->obs_ms;
            p += 7;
            n -= 7;
        }
        rep->function_known = 1;
        return hex_elements(c, p, n);
    }
    /* Configuration answers, pictures, custom codes: header only, the rest is skipped. */
    rep->function_known = 0;
    return GW_OK;
}

/* ---- ASCII body ---------------------------------------------------------------------------- */

typedef struct tok {
    const char *s;
    size_t n;
} tok;

/* Next space-separated token of the body; 0 at the end. */
static int next_tok(const uint8_t *p, size_t n, size_t *pos, tok *t)
{
    size_t i = *pos;
    while (i < n && (p[i] == ' ' || p[i] == '\r' || p[i] == '\n'))
        i++;
    if (i >= n) {
        *pos = i;
        return 0;
    }
    size_t s = i;
    while (i < n && p[i] != ' ' && p[i] != '\r' && p[i] != '\n')
        i++;
    t->s = (const char *)p + s;
    t->n = i - s;
    *pos = i;
    return 1;
}

/* Strict decimal: [-]digits[.digits], at most 15 digits. */
static int parse_dec(const tok *t, double *out)
{
    size_t i = 0;
    int neg = 0, digits = 0, frac = -1;
    uint64_t v = 0;
    if (t->n && t->s[0] == '-') {
        neg = 1;
        i = 1;
    }
    for (; i < t->n; i++) {
        char ch = t->s[i];
        if (ch == '.' && frac < 0) {
            frac = 0;
            continue;
        }
        if (ch < '0' || ch > '9' || ++digits > 15)
            return -1;
        v = v * 10 + (uint64_t)(ch - '0');
        if (frac >= 0)
            frac++;
    }
    if (!digits)
        return -1;
    double d = (double)v;
    for (int k = 0; k < frac; k++)
        d /= 10;
    *out = neg ? -d : d;
    return 0;
}

static int tok_time(const tok *t, int with_seconds, gw_sl651_time *tm, int64_t *ms)
{
    uint8_t b[6];
    size_t want = with_seconds ? 12 : 10;
    if (t->n != want || gw_hex_decode(t->s, want, b, sizeof b) < 0)
        return GW_EMALFORMED;
    return bcd_time(b, with_seconds, tm, ms);
}

static int ascii_element(dctx *c, const elem *e, const tok *val)
{
    uint8_t raw[24];
    const gw_sl651_override *ov = find_override(c, e->id);
    int kind = e->kind;
    if (ov && (kind == K_NUM || kind == K_LEVEL || kind == K_SKIP))
        kind = ov->level ? K_LEVEL : K_NUM;
    switch (kind) {
    case K_NUM:
    case K_LEVEL: {
        double v;
        if (parse_dec(val, &v) < 0) {
            c->rep->bad_bcd++;
            return GW_OK;
        }
        if (kind == K_LEVEL)
            v = level_adjust(c, v);
        return emit(c, ov ? ov->metric : e->metric, ov ? ov->unit : e->unit, v, GW_Q_GOOD,
                    GW_R_NONE, c->obs_ms);
    }
    case K_STATUS: {
        if (gw_hex_decode(val->s, val->n, raw, sizeof raw) != 4) {
            note_unknown(c, e->id);
            return GW_OK;
        }
        return emit_status(c, (uint32_t)raw[0] << 24 | (uint32_t)raw[1] << 16 |
                                  (uint32_t)raw[2] << 8 | raw[3]);
    }
    case K_DRP:
    case K_DRZ: {
        /* One hour of hex characters, or whole hours after a 000000 step code. */
        size_t w = fixed_bytes(e), hours = val->n / (2 * w);
        if (hours == 0 || hours * 2 * w != val->n || (hours > 1 && !c->step_zero)) {
            c->rep->bad_bcd++;
            return GW_OK;
        }
        for (size_t h = 0; h < hours; h++) {
            if (gw_hex_decode(val->s + h * 2 * w, 2 * w, raw, sizeof raw) != (int)w) {
                c->rep->bad_bcd++;
                return GW_OK;
            }
            int r = emit_series(c, e, ov, raw, w, (int)h);
            if (r < 0)
                return r;
        }
        if (c->step_zero)
            c->rep->hours += (unsigned)hours;
        return GW_OK;
    }
    case K_OBS: {
        gw_sl651_time t;
        int64_t ms;
        if (tok_time(val, 0, &t, &ms) != GW_OK) {
            c->rep->truncated = 1;
            return GW_EMALFORMED;
        }
        c->rep->has_obs = 1;
        c->rep->obs_time = t;
        c->rep->obs_ms = c->obs_ms = ms;
        return GW_OK;
    }
    case K_ADDR:
        if (val->n == 10 && gw_hex_decode(val->s, 10, raw, sizeof raw) == 5) {
            c->rep->has_station = 1;
            addr_hex(raw, c->rep->station_hex);
        }
        return GW_OK;
    default:
        note_unknown(c, e->id);
        return GW_OK;
    }
}

/* "DRxnn": x = D (days), H (hours) or N (minutes), nn two digits. */
static int ascii_step(dctx *c, const tok *t)
{
    if (t->n != 5 || t->s[3] < '0' || t->s[3] > '9' || t->s[4] < '0' || t->s[4] > '9')
        return -1;
    int64_t v = (t->s[3] - '0') * 10 + (t->s[4] - '0');
    int64_t mul = t->s[2] == 'D' ? 1440 : t->s[2] == 'H' ? 60 : t->s[2] == 'N' ? 1 : 0;
    if (!mul)
        return -1;
    c->step_ms = v * mul * 60000;
    c->step_zero = c->step_ms == 0;
    return 0;
}

static int decode_ascii(dctx *c, const gw_sl651_frame *f)
{
    const uint8_t *p = f->body;
    size_t n = f->body_len, pos = 0;
    gw_sl651_report *rep = c->rep;
    tok t, v;
    if (n == 0 && f->direction == GW_SL651_DIR_DOWN) {
        rep->function_known = 1;
        return GW_OK;
    }
    /* Serial (4 hex chars) and send time (12 digits), with or without a space between. */
    if (!next_tok(p, n, &pos, &t))
        return GW_EMALFORMED;
    tok ts;
    if (t.n == 16) {
        ts.s = t.s + 4;
        ts.n = 12;
    } else if (t.n == 4) {
        if (!next_tok(p, n, &pos, &ts))
            return GW_EMALFORMED;
    } else {
        return GW_EMALFORMED;
    }
    uint8_t sb[2];
    if (gw_hex_decode(t.s, 4, sb, sizeof sb) != 2)
        return GW_EMALFORMED;
    rep->serial = (uint16_t)(sb[0] << 8 | sb[1]);
    if (tok_time(&ts, 1, &rep->send_time, &rep->send_ms) != GW_OK)
        return GW_EMALFORMED;
    c->obs_ms = rep->send_ms;
    if (f->direction == GW_SL651_DIR_DOWN || f->function == 0x2F) {
        rep->function_known = 1;
        return GW_OK;
    }
    int has_type = is_report(f->function);
    if (!has_type && f->function != 0x35 && f->function != 0x46) {
        rep->function_known = 0;
        return GW_OK;
    }
    rep->function_known = 1;
    size_t save = pos;
    if (next_tok(p, n, &pos, &t) && t.n == 2 && memcmp(t.s, "ST", 2) == 0) {
        uint8_t a[5];
        if (!next_tok(p, n, &pos, &v) || v.n != 10 || gw_hex_decode(v.s, 10, a, sizeof a) != 5)
            return GW_EMALFORMED;
        rep->has_station = 1;
        addr_hex(a, rep->station_hex);
        if (has_type) {
            if (!next_tok(p, n, &pos, &t) || t.n != 1)
                return GW_EMALFORMED;
            rep->station_type = (uint8_t)t.s[0];
        }
    } else if (has_type) {
        return GW_EMALFORMED;
    } else {
        pos = save;
    }
    if (has_type) {
        if (!next_tok(p, n, &pos, &t) || t.n != 2 || memcmp(t.s, "TT", 2) != 0 ||
            !next_tok(p, n, &pos, &v) || tok_time(&v, 0, &rep->obs_time, &rep->obs_ms) != GW_OK)
            return GW_EMALFORMED;
        rep->has_obs = 1;
        c->obs_ms = rep->obs_ms;
    }
    while (next_tok(p, n, &pos, &t)) {
        if (t.n == 5 && t.s[0] == 'D' && t.s[1] == 'R' && ascii_step(c, &t) == 0)
            continue;
        const elem *e = elem_by_guide(t.s, t.n);
        if (e && e->kind == K_TEXT) {
            size_t from = pos < n && p[pos] == ' ' ? pos + 1 : pos;
            return emit_manual(c, p + from, n - from);
        }
        if (e && e->kind == K_VAR) {
            note_unknown(c, e->id);
            rep->truncated = 1;
            return GW_OK;
        }
        if (!next_tok(p, n, &pos, &v)) {
            rep->truncated = 1;
            return GW_OK;
        }
        if (!e) {
            note_unknown(c, 0xFFFF);
            continue;
        }
        int r = ascii_element(c, e, &v);
        if (r == GW_EMALFORMED)
            return GW_OK; /* a bad TT inside the elements: stop, keep what was emitted */
        if (r < 0)
            return r;
    }
    return GW_OK;
}

int gw_sl651_decode(const gw_sl651_frame *f, const gw_sl651_station_cfg *cfg, const gw_sink *sink,
                    gw_sl651_report *rep)
{
    gw_sl651_report local;
    if (!f || (!f->body && f->body_len))
        return GW_EINVAL;
    if (!rep)
        rep = &local;
    memset(rep, 0, sizeof *rep);
    dctx c = {cfg, sink, rep, 0, 0, 0};
    if (f->encoding == GW_SL651_ENC_ASCII)
        return decode_ascii(&c, f);
    return decode_hex(&c, f);
}
