/* Loading the profiles compiled into the binary (scripts/embed.sh). Kept apart
 * from the loader so tools and fuzz targets can link the loader without the
 * generated table. */
#include "adapters/modbus_profile.h"

#include "base/embedded.h"

#include <stdio.h>
#include <string.h>

int gw_profile_load_embedded(gw_profile **out, const char *name, char *err, size_t errlen)
{
    char path[128];
    *out = NULL;
    if (!name || !*name || strchr(name, '/') ||
        snprintf(path, sizeof(path), "adapters/profiles/%s.yaml", name) >= (int)sizeof(path)) {
        snprintf(err, errlen, "bad profile name '%s'", name ? name : "");
        return GW_EINVAL;
    }
    for (const struct gw_embedded *e = gw_embedded_files; e->name; e++)
        if (strcmp(e->name, path) == 0)
            return gw_profile_load_text(out, e->name, e->data, e->len, err, errlen);
    snprintf(err, errlen, "no built-in profile '%s'", name);
    return GW_ENOTFOUND;
}
