#ifndef SIM_RTU_H
#define SIM_RTU_H
/* Modbus RTU framing (rtu.c); pure. */
#include "sim/base.h"

#define SIM_RTU_MAX 256 /* address + PDU (253) + CRC */

/* CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF); sent low byte first. */
uint16_t sim_crc16(const uint8_t *p, size_t n);
/* Appends the CRC to f[0..n) (room for 2 more bytes); returns n + 2. */
size_t sim_rtu_seal(uint8_t *f, size_t n);
/* 1 if the last two bytes of f[0..n) (n >= 3) are the CRC of the others. */
int sim_rtu_crc_ok(const uint8_t *f, size_t n);
/* Expected length of the request starting at buf (address, function, data,
 * CRC) from the function code's rules: >0 the length, 0 more bytes needed to
 * tell, SIM_EINVAL a function code without a length rule. */
int sim_rtu_request_len(const uint8_t *buf, size_t len);
/* The same for an answer (what a master expects back). */
int sim_rtu_response_len(const uint8_t *buf, size_t len);

enum { SIM_RTU_MORE = 0, SIM_RTU_FRAME = 1, SIM_RTU_JUNK = 2 };

/* Finds the next request in buf[0..len). idle = the line has been silent for
 * 3.5 characters since the last byte. Returns
 *   SIM_RTU_FRAME: a request with a good CRC at buf + *skip, *flen bytes (the
 *                  *skip bytes before it are junk);
 *   SIM_RTU_MORE:  wait for more bytes or silence; the first *skip bytes are junk;
 *   SIM_RTU_JUNK:  (idle only) nothing in buf can become a request: drop *skip = len.
 * With idle set, bytes a length rule cannot frame (an unknown function code)
 * form one frame when their CRC checks. Bounded: O(len * SIM_RTU_MAX). */
int sim_rtu_split(const uint8_t *buf, size_t len, int idle, size_t *skip, size_t *flen);
/* Turns a Modbus TCP response ADU (MBAP + PDU) into an RTU frame with CRC in
 * out (cap >= SIM_RTU_MAX); returns its length, 0 if adu is too short. */
size_t sim_rtu_from_adu(const uint8_t *adu, size_t len, uint8_t *out, size_t cap);
/* Fault bytes: flips both CRC bytes (the frame stays otherwise identical). */
void sim_rtu_corrupt_crc(uint8_t *f, size_t n);
/* Replaces f[0..n) by pseudo-random bytes (xorshift state *rng) whose CRC
 * never checks. */
void sim_rtu_garbage(uint8_t *f, size_t n, uint64_t *rng);
/* How many bytes a truncated answer of n bytes keeps (half, at least 1). */
size_t sim_rtu_truncated_len(size_t n);

#endif
