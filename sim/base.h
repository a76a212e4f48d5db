#ifndef SIM_BASE_H
#define SIM_BASE_H
/* What every file of the simulator shares: its error codes. Errors are
 * negative return codes; 0 is success. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum {
    SIM_OK = 0,
    SIM_ERR = -1,
    SIM_ENOMEM = -2,
    SIM_EMALFORMED = -3, /* untrusted bytes failed to parse */
    SIM_EINVAL = -4,
};

#endif
