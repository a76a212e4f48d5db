#ifndef GW_MODBUS_INTERNAL_H
#define GW_MODBUS_INTERNAL_H
/* The loaded form of a Modbus profile, shared by the loader
 * (modbus_profile.c), the expression compiler (modbus_expr.c) and the decoder
 * (modbus_decode.c). Not for use outside these files. */
#include "adapters/modbus_profile.h"

#define MB_MAX_CODES 32
#define MB_MAX_PARAMS 16
#define MB_MAX_UNREADABLE 32
#define MB_MAX_EXPR 64  /* operations in one compiled expression */
#define MB_MAX_DEPTH 16 /* nesting of parentheses and unary signs */
#define MB_MAX_EXPR_LEN 255
#define MB_MAX_STRING 64  /* registers in a string point */
#define MB_MAX_EVENTS 32  /* events or codes on one point */
#define MB_MAX_APPLIES 16 /* points a code's reason marks */

/* Kinds are ordered by their read function code (fc = kind + 1). */
enum { MB_COIL = 0, MB_DISCRETE, MB_HOLDING, MB_INPUT, MB_DERIVED };

enum {
    MB_T_BOOL = 0,
    MB_T_BITS,
    MB_T_INT16,
    MB_T_UINT16,
    MB_T_INT32,
    MB_T_UINT32,
    MB_T_INT64,
    MB_T_UINT64,
    MB_T_FLOAT32,
    MB_T_FLOAT64,
    MB_T_BCD16,
    MB_T_BCD32,
    MB_T_STRING,
    MB_T_BCD, /* alias of bcd16 while loading only */
    MB_T_DERIVED
};

enum {
    MB_OP_NUM = 0,
    MB_OP_POINT,
    MB_OP_PARAM,
    MB_OP_ADD,
    MB_OP_SUB,
    MB_OP_MUL,
    MB_OP_DIV,
    MB_OP_NEG
};

typedef struct mb_op {
    uint8_t op;
    uint16_t idx; /* point or param index */
    double num;
} mb_op;

typedef struct mb_ucode {
    int64_t code;
    double factor;
    int has_factor;
    char unit[GW_UNIT_MAX];
} mb_ucode;

/* One entry of a point's events (a bit, or the point's own bool value) or
 * codes (a value mapped to an event or a quality reason). */
typedef struct mb_event {
    char name[GW_KEY_MAX]; /* event kind; "" for a code that maps to a reason */
    int64_t code;          /* codes: the value */
    uint8_t has_bit, bit;  /* events: the bit (0..31); without it the value itself */
    uint8_t active_low;    /* events: the condition holds while the bit is 0 */
    uint8_t reason;        /* codes: gw_reason for the applies_to points (GW_R_NONE: none) */
    uint8_t quality;       /* codes: the quality it gives them (bad or uncertain) */
    uint16_t slot;         /* index of the event in the profile's edge state */
} mb_event;

typedef struct mb_point {
    char name[GW_KEY_MAX];
    char metric[GW_KEY_MAX];
    char unit[GW_UNIT_MAX];
    uint8_t kind;     /* MB_COIL.. MB_DERIVED */
    uint8_t type;     /* MB_T_* */
    uint8_t nbytes;   /* bytes of a numeric value on the wire (2, 4, 8) */
    uint8_t order[8]; /* wire byte i carries value byte order[i] (0 = most significant) */
    uint8_t has_bit, bit, width;
    uint8_t writable, internal, write_fc;
    uint8_t scaled_by_ref; /* has decimals_from or unit_from */
    uint8_t has_min, has_max, has_deadband, deadband_pct;
    uint16_t addr;
    uint16_t count; /* registers or bits read */
    double scale, offset, min, max, deadband;
    int64_t max_silence_ms;
    int decimals_from, unit_from; /* point index or -1 */
    mb_ucode *codes;              /* owned */
    size_t ncodes;
    mb_op *expr; /* owned */
    size_t nexpr;
    int8_t decimals;  /* places published after the point, -1 = as computed */
    uint8_t is_codes; /* evs are codes (an enumeration), not bits */
    mb_event *evs;    /* owned; a point with events or codes emits no reading */
    size_t nevs;
    uint16_t applies[MB_MAX_APPLIES]; /* codes: the points a reason marks */
    size_t napplies;
    size_t req;       /* the planned request that reads it */
    uint16_t req_off; /* register or bit offset inside that request */
} mb_point;

typedef struct mb_param {
    char name[GW_KEY_MAX];
    double def;
    int has_def;
    int fallback; /* point index or -1 */
} mb_param;

typedef struct mb_range {
    uint8_t kind;
    uint16_t from, to; /* inclusive */
} mb_range;

struct gw_profile {
    char name[64];
    char device_type[GW_KEY_MAX];
    char description[256];
    char vendor[64];
    int64_t max_gap, max_gap_bits, max_regs, max_bits;
    mb_point *points; /* owned */
    size_t npoints;
    mb_param params[MB_MAX_PARAMS];
    size_t nparams;
    mb_range unreadable[MB_MAX_UNREADABLE];
    size_t nunreadable;
    gw_mb_request *reqs; /* owned */
    size_t nreqs;
    char (*evnames)[GW_KEY_MAX]; /* owned: the named events, in edge-state order */
    size_t nevnames;
};

/* A value being decoded. */
typedef struct mb_val {
    double v;
    uint8_t q; /* gw_quality */
    uint8_t r; /* gw_reason */
} mb_val;

/* Compiles text for point self (derived points may use points defined before
 * self, register points anywhere, and params). Returns 0, or GW_EINVAL with a
 * message (no position) in msg. On success *ops is owned by the caller. */
int mb_expr_compile(const gw_profile *p, size_t self, const char *text, mb_op **ops, size_t *nops,
                    char *msg, size_t msglen);
/* Evaluates a compiled expression over point values and param values. */
mb_val mb_expr_eval(const mb_op *ops, size_t nops, const mb_val *points, const mb_val *params);

#endif
