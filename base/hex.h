/* Hexadecimal text <-> bytes, the one copy the gateway side uses (the simulator keeps its
 * own on purpose: it is an independent peer). Pure functions: no allocation, no I/O.
 * Both cases of digit are accepted on input; output is upper case, as SL651 and the
 * vendor tools print it. */
#ifndef GW_BASE_HEX_H
#define GW_BASE_HEX_H

#include <stddef.h>
#include <stdint.h>

/* The value 0..15 of one hex digit, or -1 when c is not one. */
int gw_hex_digit(int c);

/* Decodes exactly `chars` hex digits at s into chars/2 bytes at out. Returns the number of
 * bytes, or -1 when chars is odd, the bytes would not fit in cap, or a character is not a
 * hex digit (out may then be partly written). */
int gw_hex_decode(const char *s, size_t chars, uint8_t *out, size_t cap);

/* The value of exactly `chars` hex digits at s (1 to 7, so it fits a long everywhere),
 * or -1 when chars is out of range or a character is not a hex digit. */
long gw_hex_value(const char *s, size_t chars);

/* Writes the 2*n upper-case digits of b[0..n) to out, with NO terminating NUL (callers
 * write frames in place). Returns 2*n. */
size_t gw_hex_put(const uint8_t *b, size_t n, char *out);

/* The upper-case digit of a value 0..15 (only the low four bits are used). */
char gw_hex_char(unsigned v);

#endif
