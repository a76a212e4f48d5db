#ifndef SIM_MBTCP_H
#define SIM_MBTCP_H
/* Modbus TCP framing and the request -> response logic (mbtcp.c); pure. */
#include "sim/base.h"

#define SIM_MB_MAX_ADU 260 /* 7-byte MBAP header + 253-byte PDU */

enum { SIM_TAB_COIL = 0, SIM_TAB_DISCRETE, SIM_TAB_HOLDING, SIM_TAB_INPUT, SIM_TAB__COUNT };

typedef struct sim_mb_req {
    uint16_t tid;
    uint16_t proto;
    uint8_t unit;
    uint8_t fc;
    const uint8_t *pdu; /* points into the caller's buffer: function code excluded */
    size_t pdu_len;
} sim_mb_req;

/* Looks at the start of buf: returns the length of one complete frame (>0),
 * 0 if more bytes are needed, or SIM_EMALFORMED if the header cannot be a
 * Modbus TCP frame (protocol id not 0, length field < 2 or > 254). */
int sim_mbtcp_frame(const uint8_t *buf, size_t len, sim_mb_req *out);

/* What a served device exposes to the PDU logic. read fills words (registers)
 * or one uint16 0/1 per bit (coils, discretes) and returns 0 or a Modbus
 * exception code; write gets the same shapes. */
typedef struct sim_regio {
    int (*read)(void *ctx, int table, uint16_t addr, uint16_t count, uint16_t *out);
    int (*write)(void *ctx, int table, uint16_t addr, uint16_t count, const uint16_t *vals);
} sim_regio;

/* Serves one request: writes the complete response ADU (MBAP + PDU) into resp
 * (cap >= SIM_MB_MAX_ADU) and returns its length. A forced exception code
 * (force_exc != 0) answers with that exception instead of touching io. */
size_t sim_mbtcp_serve(const sim_mb_req *rq, const sim_regio *io, void *ctx, int force_exc,
                       uint8_t *resp, size_t cap);
/* Builds an exception response for rq. */
size_t sim_mbtcp_exception(const sim_mb_req *rq, int code, uint8_t *resp, size_t cap);
/* Address range a request touches (for address-scoped faults); 0 if none. */
int sim_mbtcp_range(const sim_mb_req *rq, uint16_t *addr, uint16_t *count);

#endif
