#!/bin/sh
# make bench: every benchmark, one table each, results under bench/results/.
# Timing belongs here, never in tests. The machine is shared: compare ratios
# measured in one run, not absolute figures across runs.
set -u
B=${BUILD:-build}
mkdir -p bench/results "$B/bench"
CC=${CC:-cc}
CF="-O2 -std=c11 -D_GNU_SOURCE -I."
echo "== rules engine"
$CC $CF bench/rules_bench.c rules/rules.c base/model.c -lm -o "$B/bench/rules_bench" &&
    "$B/bench/rules_bench" | tee bench/results/rules.txt
echo "== SL651 decoding"
$CC $CF bench/sl651_decode_bench.c protocols/sl651_codec.c protocols/sl651_body.c base/model.c \
    base/civil.c base/crc16.c base/hex.c -o "$B/bench/sl651_decode_bench" && "$B/bench/sl651_decode_bench" | tee bench/results/sl651.txt
echo "== core: throughput, alarm latency, memory"
bench/core_bench.sh
for extra in bench/dest_bench.sh bench/cost_bench.sh bench/modbus_bench.sh bench/mem_bench.sh bench/coap_bench.sh bench/sl651_e2e.sh bench/protect_bench.sh; do
    if [ -x "$extra" ]; then
        echo "== $extra"
        "$extra" # each names its shell (bash for arrays)
    fi
done
