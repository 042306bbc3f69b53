#!/bin/sh
# Runs every test: the C unit harness, then busted (unit and functional
# specs). Ends with one line "N passed, N failed[, N skipped]" and exits
# non-zero if anything failed.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export BUILD
export LUA_CPATH="$PWD/$BUILD/lua/?.so;;"
export LUA_PATH="$PWD/spec/support/?.lua;$PWD/lua/?.lua;;"
# a daemon under ASan reports leaks at exit; make them fail its exit status
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:exitcode=66}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

passed=0 failed=0 skipped=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "== C unit tests ($BUILD/unit_tests)"
"$BUILD/unit_tests" >"$log" 2>&1
rc=$?
cat "$log"
line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
if [ -n "$line" ]; then
    passed=$((passed + $(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')))
    failed=$((failed + $(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')))
else
    echo "unit_tests ended without a summary (exit $rc)"
    failed=$((failed + 1))
fi

# busted_pass TITLE [ENV=VALUE] SPEC...: one busted run, its counts added up
busted_pass() {
    title=$1; shift
    echo "== busted specs ($title)"
    env "$@" lua5.4 "$(command -v busted)" -o utfTerminal $BUSTED_ARGS >"$log" 2>&1
    rc=$?
    cat "$log"
    line=$(grep -E '[0-9]+ success(es)? / [0-9]+ failures? / [0-9]+ errors? / [0-9]+ pending' "$log" | tail -n 1)
    if [ -n "$line" ]; then
        s=$(echo "$line" | sed -E 's/^[^0-9]*([0-9]+) success.*/\1/')
        f=$(echo "$line" | sed -E 's/.* ([0-9]+) failures?.*/\1/')
        e=$(echo "$line" | sed -E 's/.* ([0-9]+) errors?.*/\1/')
        p=$(echo "$line" | sed -E 's/.* ([0-9]+) pending.*/\1/')
        passed=$((passed + s))
        failed=$((failed + f + e))
        skipped=$((skipped + p))
    else
        echo "busted ended without a summary (exit $rc)"
        failed=$((failed + 1))
    fi
}

BUSTED_ARGS="$* spec/unit spec/functional"
busted_pass "every spec" POLARIS_TEST_PASS=1
# the plugin runtime and the hostile corpus again, every plugin out of
# process: both isolation modes must give the same results
if [ $# -eq 0 ]; then
    BUSTED_ARGS="spec/functional/plugins_spec.lua spec/functional/attacks_spec.lua spec/functional/limits_spec.lua spec/functional/exec_confine_spec.lua"
    busted_pass "plugins out of process" POLARIS_ISOLATION=process
fi

echo
if [ "$skipped" -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
