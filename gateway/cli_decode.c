#include "gateway/cli.h"

#include <stdio.h>

int gw_cli_decode(int argc, char **argv)
{
    fprintf(stderr, "gateway decode: not built yet\n");
    return 2;
}
