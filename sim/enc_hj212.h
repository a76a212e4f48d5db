#ifndef SIM_ENC_HJ212_H
#define SIM_ENC_HJ212_H
/* HJ 212-2017 packets (enc_hj212.c): pure encoders and the small parser a
 * station needs for the centre's answers. Written from the standard. */
#include "sim/clock.h"

#define SIM_HJ212_MAX_PACKET 1036 /* ## + 4 + 1024 + 4 + CR LF */
/* The HJ212 CRC over the data segment: reg = 0xFFFF; reg = (reg >> 8) ^ byte;
 * then 8 shifts with 0xA001. Not the Modbus CRC. */
uint16_t sim_hj212_crc(const uint8_t *p, size_t n);
/* QN: 17 digits YYYYMMDDhhmmsszzz. */
void sim_hj212_qn(const sim_dt *t, char out[18]);
/* Writes "##" + 4-digit length + segment + 4 hex CRC + CR LF, the segment
 * being "QN=..;ST=..;CN=..;PW=..;MN=..;Flag=..;CP=&&cp&&" (QN left out when
 * qn is NULL). Returns the packet length or SIM_EINVAL. */
int sim_hj212_packet(char *out, size_t cap, const char *qn, const char *st, int cn, const char *pw,
                     const char *mn, int flag, const char *cp);
/* Rewrites packet in[0..len) into out with a malformed CP (its closing "&&"
 * and its first '=' removed), length and CRC recomputed so that only the CP
 * is wrong. Returns the new length or SIM_EINVAL. */
int sim_hj212_malform(const char *in, size_t len, char *out, size_t cap);
/* One part of a split packet: PNUM/PNO in the header, Flag bit D set (same return as
 * sim_hj212_packet). */
int sim_hj212_packet_part(char *out, size_t cap, const char *qn, const char *st, int cn,
                          const char *pw, const char *mn, int flag, int pnum, int pno,
                          const char *cp);
/* Rewrites the CRC digits as CRC-16/Modbus, low byte first (the crc_lsb quirk). */
void sim_hj212_crc_modbus_lsb(char *pkt, size_t len);

/* Makes a packet's CRC wrong by changing its four CRC characters only. */
void sim_hj212_bad_crc(char *pkt, size_t len);

typedef struct sim_hj212_msg {
    int cn;          /* -1 if absent */
    char qn[24];     /* "" if absent */
    const char *seg; /* data segment, points into the caller's buffer */
    size_t seg_len;
} sim_hj212_msg;
/* Reads one packet at buf[0] (must start "##"): its length (>0, CR LF
 * included), 0 if more bytes are needed, SIM_EMALFORMED (skip a byte). */
int sim_hj212_parse(const char *buf, size_t len, sim_hj212_msg *out);

#endif
