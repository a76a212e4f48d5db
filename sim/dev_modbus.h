#ifndef SIM_DEV_MODBUS_H
#define SIM_DEV_MODBUS_H
/* A served Modbus device (dev_modbus.c), shared by every Modbus kind. */
#include "sim/scenario.h"

#define SIM_MB_FC_SLOTS 24 /* function codes 0..23 counted one by one, others in slot 0 */

typedef struct sim_mbwrite {
    double t;
    uint16_t addr;
    uint16_t value;
    uint8_t table;
} sim_mbwrite;

/* A group's register map: address - lo -> register definition (-1 none), per table. */
typedef struct sim_regindex {
    int16_t *index[SIM_TAB__COUNT];
    uint32_t lo[SIM_TAB__COUNT], span[SIM_TAB__COUNT];
} sim_regindex;

/* One device's registers, written values and counters. */
typedef struct sim_mbdev {
    const sim_group *g;
    const sim_regindex *ix;
    uint32_t k; /* index within the group: picks per-device curve parameters */
    char id[64];
    int serial; /* the kind has a CRC: bad_crc faults apply */
    uint64_t requests, answers, exceptions, late_dropped;
    uint64_t by_fc[SIM_MB_FC_SLOTS];
    uint64_t faults[SIM_F__COUNT];
    sim_mbwrite *writes; /* owned, at most 1024 */
    uint32_t nwrites, capwrites;
    uint64_t writes_dropped;
    uint16_t (*wwords)[4]; /* per register definition: written words or bit */
    uint8_t *wmask;        /* which words were written */
    sim_curve_state *cst;
} sim_mbdev;

enum { SIM_ACT_ANSWER = 0, SIM_ACT_SILENT, SIM_ACT_DROP };

/* What the faults decided for one request; the kind applies it in its framing. */
typedef struct sim_fault_plan {
    int action;     /* SIM_ACT_* */
    double delay_s; /* > 0: send the answer this much later (wall clock) */
    int garbage;    /* replace the answer by random bytes of the same length */
    int bad_crc;    /* serial kinds: corrupt the CRC */
    int truncated;  /* send only the first half of the answer */
} sim_fault_plan;

/* Builds g's register index into ix (zeroed by the caller); sim_regindex_free frees it. */
int sim_regindex_build(sim_regindex *ix, const sim_group *g);
void sim_regindex_free(sim_regindex *ix);
/* Initialises device k of g (d zeroed by the caller); sim_mbdev_free frees what it holds. */
int sim_mbdev_init(sim_mbdev *d, const sim_group *g, const sim_regindex *ix, uint32_t k);
void sim_mbdev_free(sim_mbdev *d);
/* Serves one request addressed to d at scenario time t: counts it, decides the
 * group's faults into plan and, unless plan->action says otherwise, writes the
 * Modbus TCP response ADU into resp (cap >= SIM_MB_MAX_ADU) and returns its
 * length (0 = no answer). */
size_t sim_mbdev_serve(sim_mbdev *d, const sim_mb_req *rq, double t, uint8_t *resp, size_t cap,
                       sim_fault_plan *plan);
/* Counts a write without an answer (broadcast): applies it, no faults. */
void sim_mbdev_broadcast(sim_mbdev *d, const sim_mb_req *rq, double t);
/* Adds requests, requests_by_fc, answers, exceptions, late_dropped, faults and
 * writes to the cJSON object obj. */
void sim_mbdev_stats(const sim_mbdev *d, void *obj);

#endif
