#!/bin/sh
# Rebuilds docs/config.md: the hand-written head plus the generated key tables.
set -eu
B=${BUILD:-build}
{ cat docs/config.head.md; "$B/gateway" --config-reference; } > docs/config.md
