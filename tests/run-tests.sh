#!/usr/bin/env bash
# Runs every test suite and ends with one line: "N passed, N failed".
#   B=build tests/run-tests.sh        (B=build/san under SAN=1)
# Each cmocka binary in $B/tests/ counts its own cases, and so does each
# tests/integration/test_*.sh (it prints the same summary lines); each
# tests/check_*.sh is one case.  A binary that crashes or times out counts as one failure.
# Output of each suite goes to $B/test-logs/; a failing suite's log is shown.
set -u
B=${B:-build}
TIMEOUT=${ZPF_TEST_TIMEOUT:-900}
logs="$B/test-logs"
mkdir -p "$logs"
passed=0 failed=0

run_suite() { # name, command...
    local name=$1; shift
    local log="$logs/$name.log" start=$SECONDS rc
    timeout --kill-after=10 "$TIMEOUT" "$@" >"$log" 2>&1
    rc=$?
    local p f
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
    p=${p:-0}; f=${f:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi   # crash, timeout, script failure
    if [ "$rc" -eq 0 ] && [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then p=1; fi  # a check script
    passed=$((passed + p)); failed=$((failed + f))
    printf '%-28s %4d passed %4d failed  %4ds\n' "$name" "$p" "$f" $((SECONDS - start))
    if [ "$f" -ne 0 ]; then
        echo "---- $log (last 60 lines)"; tail -n 60 "$log"; echo "----"
    fi
}

for t in tests/check_*.sh; do
    [ -e "$t" ] && run_suite "$(basename "$t" .sh)" bash "$t"
done
for t in "$B"/tests/test_*; do
    [ -x "$t" ] && run_suite "$(basename "$t")" "$t"
done
# Real zpfd processes on loopback and in network namespaces ($B/zpfd).
for t in tests/integration/test_*.sh; do
    [ -e "$t" ] && run_suite "$(basename "$t" .sh)" env B="$B" bash "$t"
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
