#!/bin/sh
# Builds every libFuzzer target tests/fuzz/fuzz_NAME.c and runs each for
# FUZZ_SECONDS on a copy of its seed corpus tests/corpus/NAME/ (the repository is
# never written to). Prints, per target, the executions and the findings, and
# exits non-zero when a target does not build or finds a crash, leak or timeout.
#
# Each fuzz file names what it links with, so a new target needs no edit here:
#   // FUZZ_SOURCES: protocols/foo_codec.c base/model.c
#   // FUZZ_LIBS: -lcjson -lm
#
# Environment:
#   FUZZ_SECONDS   seconds per target (default 60)
#   FUZZ_TARGETS   space-separated names to run (default: every tests/fuzz/fuzz_*.c)
#   FUZZ_JOBS      targets run at the same time (default 1)
#   FUZZ_CC        compiler (default clang-14)
#   FUZZ_OUT       where binaries, logs and findings go (default build/fuzz)
set -u

SECONDS_PER=${FUZZ_SECONDS:-60}
CC=${FUZZ_CC:-clang-14}
OUT=${FUZZ_OUT:-build/fuzz}
JOBS=${FUZZ_JOBS:-1}

case "$SECONDS_PER" in
'' | *[!0-9]*)
    echo "fuzz.sh: FUZZ_SECONDS must be a whole number of seconds" >&2
    exit 2
    ;;
esac
if ! command -v "$CC" >/dev/null 2>&1; then
    echo "fuzz.sh: $CC not found (install clang-14 and libclang-rt-14-dev)" >&2
    exit 2
fi

if [ -n "${FUZZ_TARGETS:-}" ]; then
    targets=$FUZZ_TARGETS
else
    targets=$(for f in tests/fuzz/fuzz_*.c; do [ -e "$f" ] && basename "$f" .c | sed 's/^fuzz_//'; done)
fi
if [ -z "$targets" ]; then
    echo "fuzz.sh: no targets in tests/fuzz/" >&2
    exit 2
fi

mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gwfuzz.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM

CFLAGS_PKG=$(pkg-config --cflags libcjson yaml-0.1 2>/dev/null)

# Reads "// KEY: value" from a fuzz file (first occurrence).
meta() {
    sed -n "s|^// $2:[[:space:]]*||p" "$1" | head -n 1
}

build() {
    name=$1
    src=tests/fuzz/fuzz_$name.c
    if [ ! -f "$src" ]; then
        echo "fuzz.sh: $src does not exist" >&2
        return 1
    fi
    sources=$(meta "$src" FUZZ_SOURCES)
    libs=$(meta "$src" FUZZ_LIBS)
    if [ -z "$sources" ]; then
        echo "fuzz.sh: $src has no '// FUZZ_SOURCES:' line" >&2
        return 1
    fi
    # shellcheck disable=SC2086 # word splitting of the source and library lists is wanted
    "$CC" -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
        -fno-sanitize-recover=all -fno-omit-frame-pointer -I. $CFLAGS_PKG \
        "$src" $sources -o "$OUT/fuzz_$name" $libs >"$OUT/fuzz_$name.build.log" 2>&1
}

# Runs one target; writes "NAME EXECS FINDINGS STATUS" to $WORK/NAME.result.
run_one() {
    name=$1
    dir=$WORK/$name
    mkdir -p "$dir/corpus" "$dir/artifacts"
    if ! build "$name"; then
        echo "$name 0 0 build-failed" >"$WORK/$name.result"
        return
    fi
    [ -d "tests/corpus/$name" ] && cp -R "tests/corpus/$name/." "$dir/corpus/"
    log=$OUT/fuzz_$name.log
    timeout -k 10 $((SECONDS_PER + 120)) "$OUT/fuzz_$name" -max_total_time="$SECONDS_PER" \
        -timeout=10 -print_final_stats=1 -artifact_prefix="$dir/artifacts/" "$dir/corpus" \
        >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units:[[:space:]]*//p' "$log" | tail -n 1)
    findings=$(find "$dir/artifacts" -type f | wc -l | tr -d ' ')
    status=ok
    if [ "$findings" -gt 0 ]; then
        status=findings
        mkdir -p "$OUT/findings/$name"
        cp "$dir/artifacts/"* "$OUT/findings/$name/"
    elif [ "$rc" -ne 0 ]; then
        status="exit-$rc"
    fi
    echo "$name ${execs:-0} $findings $status" >"$WORK/$name.result"
}

running=0
for t in $targets; do
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then
        wait
        running=0
    fi
done
wait

fail=0
printf '%-20s %14s %9s  %s\n' target executions findings status
for t in $targets; do
    if [ -f "$WORK/$t.result" ]; then
        read -r name execs findings status <"$WORK/$t.result"
    else
        name=$t execs=0 findings=0 status=not-run
    fi
    printf '%-20s %14s %9s  %s\n' "$name" "$execs" "$findings" "$status"
    case "$status" in
    ok) ;;
    findings) echo "  reproducers kept in $OUT/findings/$name/ (log: $OUT/fuzz_$name.log)"; fail=1 ;;
    build-failed) echo "  build log: $OUT/fuzz_$name.build.log"; fail=1 ;;
    *) echo "  log: $OUT/fuzz_$name.log"; fail=1 ;;
    esac
done
exit $fail
