#ifndef SIM_ENCODE_H
#define SIM_ENCODE_H
/* Values -> register words: types, scales, byte orders (encode.c); pure. */
#include "sim/base.h"

typedef enum {
    SIM_T_UINT16 = 0,
    SIM_T_INT16,
    SIM_T_UINT32,
    SIM_T_INT32,
    SIM_T_FLOAT32,
    SIM_T_UINT64,
    SIM_T_INT64,
    SIM_T_FLOAT64,
    SIM_T_BOOL,
} sim_type;

/* A byte order is a permutation: wire byte i carries value byte perm[i], where
 * value byte 0 is the most significant ("A"). */
typedef struct sim_order {
    uint8_t n; /* 2, 4 or 8; 0 = the type's big-endian default */
    uint8_t perm[8];
} sim_order;

/* Parses a type name ("uint16", "float32", "bool", ...). */
int sim_type_parse(const char *s, sim_type *out);
const char *sim_type_name(sim_type t);
/* Number of 16-bit registers a type occupies (bool: 1 bit, counted as 1). */
int sim_type_regs(sim_type t);
/* Parses "ABCD", "CDAB", "BADC", "DCBA", 64-bit "ABCDEFGH", "GHEFCDAB", ... or
 * any permutation of the first 2/4/8 letters. A 4-letter order given to a
 * 64-bit type is widened the same way (CDAB -> GHEFCDAB: word swap). */
int sim_order_parse(const char *s, sim_order *out);
/* Encodes raw value `raw` (already scaled) as type t in order o into out[0..n)
 * registers, as they appear on the wire (out[0] is the first register). Integer
 * types round to nearest and saturate at the type's range. Returns the number
 * of registers, or SIM_EINVAL. */
int sim_encode(double raw, sim_type t, const sim_order *o, uint16_t out[4]);

#endif
