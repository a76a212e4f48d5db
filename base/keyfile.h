/* Secret key files: strict permissions and hex contents. A key file must be a
 * regular file that neither group nor others can read or write (mode 0600 or
 * 0400): a readable key is refused with an error naming the file and its mode,
 * never its contents. Symmetric keys are stored as one line of hex digits.
 * Messages written to err name the file only; no byte of a key ever reaches
 * them. Callers wipe what they read with OPENSSL_cleanse when done. */
#ifndef GW_BASE_KEYFILE_H
#define GW_BASE_KEYFILE_H

#include <stddef.h>
#include <stdint.h>

/* 0 when path is a regular file with no group/other permission bits, else
 * GW_EINVAL (or GW_ENOTFOUND) with a message in err. */
int gw_keyfile_check(const char *path, char *err, size_t errlen);

/* Reads a hex key file (checked as above) into out: the file must hold
 * exactly `want` bytes as 2*want hex digits (surrounding white space allowed).
 * Returns 0 or a negative GW_E* code with a message in err. */
int gw_keyfile_read_hex(const char *path, uint8_t *out, size_t want, char *err, size_t errlen);

/* Writes text to a new file created with mode 0600 (O_EXCL: an existing file is
 * never overwritten), then fsyncs it. Returns 0 or GW_EINVAL with err. */
int gw_keyfile_write(const char *path, const char *text, size_t len, int mode, char *err,
                     size_t errlen);

#endif
