/* The table of compiled-in protocols: adding one adds a line here. */
#include "protocols/protocol.h"

#include <string.h>

extern const gw_protocol gw_proto_modbus_tcp;
extern const gw_protocol gw_proto_modbus_rtu;
extern const gw_protocol gw_proto_modbus_dtu;
extern const gw_protocol gw_proto_synthetic;
extern const gw_protocol gw_proto_coap, gw_proto_mqtt_devices;
extern const gw_protocol gw_proto_sl651;
extern const gw_protocol gw_proto_hj212;

const gw_protocol *const gw_protocols[] = {
    &gw_proto_modbus_tcp, &gw_proto_modbus_rtu, &gw_proto_modbus_dtu,
    &gw_proto_synthetic,  &gw_proto_coap,       &gw_proto_mqtt_devices,
    &gw_proto_sl651,      &gw_proto_hj212,      NULL,
};

const gw_protocol *gw_protocol_find(const char *name)
{
    for (size_t i = 0; gw_protocols[i]; i++)
        if (strcmp(gw_protocols[i]->name, name) == 0)
            return gw_protocols[i];
    return NULL;
}
