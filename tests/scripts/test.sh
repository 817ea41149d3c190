#!/usr/bin/env bash
# README "command 2": install dependencies, build plainly and with
# AddressSanitizer+UBSan, run every suite of the plain build and the unit
# and integration suites of the other, then the fuzzers and benchmarks.
# Prints "N passed, N failed" (meson tests, both builds) and exits non-zero
# on any failure.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

bash tests/scripts/deps.sh

passed=0
failed=0
skipped=0
status=0

# Add the results of one meson-logs/testlog.json to the totals.
count_results() {
	local log=$1/meson-logs/testlog.json
	local counts
	if [[ ! -f $log ]]; then
		return 0
	fi
	counts=$(python3 - "$log" <<'PY'
import json, sys
ok = bad = skip = 0
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    line = line.strip()
    if not line:
        continue
    r = json.loads(line).get("result", "")
    if r in ("OK", "EXPECTEDFAIL"):
        ok += 1
    elif r == "SKIP":
        skip += 1
    else:
        bad += 1
print(ok, bad, skip)
PY
)
	read -r p f s <<<"$counts"
	passed=$((passed + p))
	failed=$((failed + f))
	skipped=$((skipped + s))
}

# Configure a build dir fresh (wipe when it exists) and build it.
setup_build() {
	local dir=$1
	shift
	if [[ -d $dir/meson-private ]]; then
		meson setup "$dir" --wipe "$@" && meson compile -C "$dir"
	else
		rm -rf "$dir"
		meson setup "$dir" "$@" && meson compile -C "$dir"
	fi
}

# Build dir $1 with meson options "${@:2}"; a build that does not
# compile counts as one failure (and false).
build() {
	local dir=$1
	shift
	if ! setup_build "$dir" "$@"; then
		echo "== $dir: build failed"
		failed=$((failed + 1))
		status=1
		return 1
	fi
}

# Run the suites "${@:2}" of build dir $1 and add up the results (each
# meson test run rewrites testlog.json, so count after each).
run_suites() {
	local dir=$1
	shift
	rm -f "$dir/meson-logs/testlog.json"
	if ! meson test -C "$dir" --print-errorlogs "$@"; then
		status=1
	fi
	count_results "$dir"
}

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
echo "== build (debugoptimized)"
plain_ok=true
build build || plain_ok=false
echo "== build with address,undefined sanitizers"
asan_ok=true
export CC=gcc
build build-asan -Db_sanitize=address,undefined -Dbuildtype=debug ||
	asan_ok=false

# Most tests wait (on PostgreSQL, timers, the other processes) far more
# than they compute, so the plain build's suites run beside the sanitizer
# build's unit and integration suites: one after the other took 40
# minutes on 2 cores.  What asserts on timing runs after, on a quiet
# machine: suite timing and the slow-client storm (slow: its p99), then
# the benchmarks.  The sanitizer build leaves out the fault storm, the
# slow clients and the unprepared re-runs (the same code).
echo "== test: the plain build's suites beside the sanitizer build's"
plain_log=$(mktemp)
if $plain_ok; then
	meson test -C build --print-errorlogs --no-suite timing --no-suite slow \
		>"$plain_log" 2>&1 &
	plain_pid=$!
fi
if $asan_ok; then
	run_suites build-asan --suite unit --suite integration \
		--no-suite unprepared --no-suite timing
fi
if $plain_ok; then
	wait "$plain_pid" || status=1
	echo "== the plain build's suites"
	cat "$plain_log"
	count_results build
fi
rm -f "$plain_log"
echo "== suites that assert on timing, one at a time"
if $plain_ok; then
	for suite in timing slow; do
		run_suites build --suite "$suite"
	done
fi
if $asan_ok; then
	run_suites build-asan --suite timing
fi
bash tests/scripts/fuzz.sh || { echo "== fuzzing failed"; failed=$((failed + 1)); status=1; }
echo "== benchmarks (suite bench, plain build)"
bash tests/scripts/bench.sh build || { echo "== benchmarks failed"; failed=$((failed + 1)); status=1; }

if ((skipped > 0)); then
	echo "($skipped skipped)"
fi
if ((failed > 0)); then
	status=1
fi
echo "$passed passed, $failed failed"
exit "$status"
