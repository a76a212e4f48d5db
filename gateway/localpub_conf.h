#ifndef GW_LOCALPUB_CONF_H
#define GW_LOCALPUB_CONF_H
/* The `local_mqtt:` section as gw_config holds it (keys: gateway/config.c),
 * apart from localpub.h so the config layer names it without the client. */
#include <stdint.h>

typedef struct gw_localpub_config {
    char uri[256];
    char client_id[128];
    char username[128];
    char password_file[256];
    int64_t queue_max;
} gw_localpub_config;

#endif
