/* The table of device kinds. A new kind is one dev_<kind>.c file exporting a
 * sim_kind (how its devices run) and one line here, plus its scenario half: one
 * scn_<kind>.c exporting a sim_scn_kind (its keys, scn.h) and one line in
 * scenario.c's table. */
#include "sim/kind.h"

#include <string.h>

static const sim_kind *const kinds[] = {
    &sim_kind_modbus_tcp, &sim_kind_modbus_rtu, &sim_kind_modbus_dtu, &sim_kind_sl651,
    &sim_kind_hj212,      &sim_kind_coap_smoke, &sim_kind_mqtt_gauge, &sim_kind_coap_cover,
};

const sim_kind *sim_kind_find(const char *name)
{
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(kinds[i]->name, name) == 0)
            return kinds[i];
    return NULL;
}
