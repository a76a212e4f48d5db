/* The table of compiled-in adapters: adding a device type adds one line here
 * (and one C file beside this one). */
#include "adapters/adapter.h"

#include <string.h>

extern const gw_adapter gw_adapter_smoke_nb100, gw_adapter_json_map;
extern const gw_adapter gw_adapter_cbor_map;

const gw_adapter *const gw_adapters[] = {
    &gw_adapter_smoke_nb100,
    &gw_adapter_json_map,
    &gw_adapter_cbor_map,
    NULL,
};

const gw_adapter *gw_adapter_find(const char *name)
{
    for (size_t i = 0; gw_adapters[i]; i++)
        if (strcmp(gw_adapters[i]->name, name) == 0)
            return gw_adapters[i];
    return NULL;
}
