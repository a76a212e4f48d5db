#!/bin/sh
# Turns files into a C table {name, bytes, length} so the gateway carries its
# default config and the shipped device profiles without needing the source tree.
set -eu
echo '#include <stddef.h>'
echo '#include "base/embedded.h"'
i=0
for f in "$@"; do
    printf 'static const char f%d[] = {' "$i"
    od -An -v -tx1 "$f" | tr -s ' \n' ' ' | sed 's/ *$//; s/^ //; s/ /,0x/g; s/^/0x/'
    echo ',0x00};'
    i=$((i + 1))
done
echo 'const struct gw_embedded gw_embedded_files[] = {'
i=0
for f in "$@"; do
    printf '    {"%s", f%d, sizeof(f%d) - 1},\n' "$f" "$i" "$i"
    i=$((i + 1))
done
echo '    {NULL, NULL, 0}};'
