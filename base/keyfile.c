/* Key files: see keyfile.h. */
#include "base/keyfile.h"

#include "base/hex.h"
#include "base/model.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int gw_keyfile_check(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (!path || !path[0]) {
        snprintf(err, errlen, "no key file given");
        return GW_EINVAL;
    }
    if (stat(path, &st)) {
        snprintf(err, errlen, "key file %s: %s", path, strerror(errno));
        return errno == ENOENT ? GW_ENOTFOUND : GW_EINVAL;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "key file %s is not a regular file", path);
        return GW_EINVAL;
    }
    if (st.st_mode & 077) {
        snprintf(err, errlen,
                 "key file %s has mode %04o: group or others may access it; "
                 "refusing it (chmod 600 %s)",
                 path, (unsigned)(st.st_mode & 07777), path);
        return GW_EINVAL;
    }
    return GW_OK;
}

int gw_keyfile_read_hex(const char *path, uint8_t *out, size_t want, char *err, size_t errlen)
{
    int rc = gw_keyfile_check(path, err, errlen);
    if (rc)
        return rc;
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(err, errlen, "key file %s: %s", path, strerror(errno));
        return GW_EINVAL;
    }
    char text[160];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    int more = fgetc(f) != EOF;
    fclose(f);
    text[n] = '\0';
    size_t a = 0, b = n;
    while (a < b && isspace((unsigned char)text[a]))
        a++;
    while (b > a && isspace((unsigned char)text[b - 1]))
        b--;
    rc = GW_OK;
    if (more || b - a != 2 * want || gw_hex_decode(text + a, b - a, out, want) != (int)want) {
        snprintf(err, errlen, "key file %s must hold exactly %zu hex digits (a %zu-byte key)", path,
                 2 * want, want);
        OPENSSL_cleanse(out, want);
        rc = GW_EINVAL;
    }
    OPENSSL_cleanse(text, sizeof(text));
    return rc;
}

int gw_keyfile_write(const char *path, const char *text, size_t len, int mode, char *err,
                     size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)mode);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return GW_EINVAL;
    }
    /* The umask may have cleared bits but never adds any; make the mode exact. */
    int ok =
        fchmod(fd, (mode_t)mode) == 0 && write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
    int e = errno;
    close(fd);
    if (!ok) {
        unlink(path);
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return GW_EINVAL;
    }
    return GW_OK;
}
