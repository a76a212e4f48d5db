#include "gateway/cli.h"

#include <stdio.h>

int gw_cli_read(int argc, char **argv)
{
    fprintf(stderr, "gateway read: not built yet\n");
    return 2;
}
