#!/bin/sh
# Runs each test binary given, bounded in time, and prints one closing line
# "N passed, N failed" counted from the cmocka summaries. Exit 1 on any failure.
set -u
passed=0
failed=0
broken=""
for t in "$@"; do
    name=$(basename "$t")
    echo "=== $name"
    out=$(mktemp)
    timeout -k 10 "${TEST_TIMEOUT:-600}" "$t" >"$out" 2>&1
    rc=$?
    cat "$out"
    p=$(sed -n 's/^\[  PASSED  \] \([0-9][0-9]*\) test.*/\1/p' "$out" | awk '{s+=$1} END {print s+0}')
    f=$(sed -n 's/^\[  FAILED  \] \([0-9][0-9]*\) test.*/\1/p' "$out" | awk '{s+=$1} END {print s+0}')
    rm -f "$out"
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        # Crashed, timed out or died before cmocka could count: one failure.
        failed=$((failed + 1))
        broken="$broken $name(rc=$rc)"
    elif [ "$rc" -ne 0 ]; then
        broken="$broken $name"
    fi
done
[ -n "$broken" ] && echo "failing:$broken"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
