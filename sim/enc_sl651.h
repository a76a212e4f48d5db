#ifndef SIM_ENC_SL651_H
#define SIM_ENC_SL651_H
/* SL651-2014 HEX frames (enc_sl651.c): pure encoders and the small parser a
 * station needs for the centre's confirms. Written from the standard, sharing
 * nothing with gateway/. */
#include "sim/clock.h"

/* A bounded write cursor: writes past cap set overflow and are dropped. */
typedef struct sim_wbuf {
    uint8_t *p;
    size_t cap, len;
    int overflow;
} sim_wbuf;

#define SIM_SL651_MAX_FRAME 4113 /* 12-bit body length + 17 framing bytes */
enum {
    SIM_SL651_STX = 0x02,
    SIM_SL651_ETX = 0x03,
    SIM_SL651_EOT = 0x04,
    SIM_SL651_ENQ = 0x05,
    SIM_SL651_ACK = 0x06,
    SIM_SL651_NAK = 0x15,
    SIM_SL651_ETB = 0x17,
    SIM_SL651_ESC = 0x1B,
};

/* CRC-16, reflected polynomial 0xA001, initial 0xFFFF (SL651 sends it high
 * byte first). */
uint16_t sim_sl651_crc(const uint8_t *p, size_t n);
/* Up to 10 hex digits ("0012345678"), left-padded with zeros -> 5 bytes. */
int sim_sl651_addr_parse(const char *hex, uint8_t out[5]);

typedef struct sim_sl651_hdr {
    uint8_t centre;
    uint8_t station[5];
    uint16_t password;
    uint8_t fc;
    uint8_t down; /* 1: centre -> station (station address first) */
    uint8_t end;  /* ETX, ETB, EOT, ESC, ...; 0 = ETX */
} sim_sl651_hdr;

/* Frames body[0..blen) as one HEX frame (7E7E ... STX body end CRC) into out.
 * Returns the frame length, or SIM_EINVAL (body over 4095 bytes, no room). */
int sim_sl651_frame(const sim_sl651_hdr *h, const uint8_t *body, size_t blen, uint8_t *out,
                    size_t cap);
/* One M3 packet (SYN): the length counts the 3 counter bytes (SL651-2014 Table 22). */
int sim_sl651_frame_m3(const sim_sl651_hdr *h, unsigned total, unsigned no, const uint8_t *body,
                       size_t blen, uint8_t *out, size_t cap);
/* Body pieces. head: serial (2) + send time (6, BCD YYMMDDhhmmss).
 * station: F1F1 + address + type, then F0F0 + observation time (5, BCD). */
void sim_sl651_put_head(sim_wbuf *b, uint16_t serial, const sim_dt *send);
void sim_sl651_put_station(sim_wbuf *b, const uint8_t station[5], uint8_t type, const sim_dt *obs);
/* Element id, definition byte (length << 3 | decimals), value as packed BCD
 * without the point; a negative value takes a leading FF byte; NaN writes all
 * FF (missing). SIM_EINVAL (nothing written) if the value does not fit. */
int sim_sl651_put_num(sim_wbuf *b, uint8_t id, int nbytes, int decimals, double v);
/* Element id, definition byte and raw bytes (45 status, F4, F5). */
void sim_sl651_put_raw(sim_wbuf *b, uint8_t id, uint8_t def, const uint8_t *data, size_t n);

typedef struct sim_sl651_msg {
    int down;
    uint8_t centre;
    uint8_t station[5];
    uint16_t password;
    uint8_t fc;
    uint8_t end;
    const uint8_t *body; /* points into the caller's buffer */
    size_t blen;
    uint16_t serial;    /* 0 if the body is shorter than 2 bytes */
    unsigned total, no; /* packet counter of a SYN frame, else 0 */
} sim_sl651_msg;

/* Reads one HEX frame at buf[0]: returns its length (>0), 0 if more bytes are
 * needed, SIM_EMALFORMED if buf[0] does not start a valid frame (bad start,
 * length, STX, end char or CRC: the caller skips a byte and looks again). */
int sim_sl651_parse(const uint8_t *buf, size_t len, sim_sl651_msg *out);

/* Makes a frame's CRC wrong by changing its two CRC bytes and nothing else. */
void sim_sl651_bad_crc(uint8_t *frame, size_t len);

#endif
