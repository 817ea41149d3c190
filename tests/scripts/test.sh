#!/usr/bin/env bash
# README "command 2": install dependencies, build, run every test suite,
# then build again with AddressSanitizer+UBSan and run every suite again.
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

# Build, run every suite and add up the results; a build that does not
# compile counts as one failure.
build_and_test() {
	local dir=$1
	shift
	rm -f "$dir/meson-logs/testlog.json"
	if ! setup_build "$dir" "$@"; then
		echo "== $dir: build failed"
		failed=$((failed + 1))
		status=1
		return 0
	fi
	if ! meson test -C "$dir" --print-errorlogs "${test_suites[@]}"; then
		status=1
	fi
	count_results "$dir"
}

echo "== build (debugoptimized) and test"
test_suites=() # every suite, the browser test included
build_and_test build

echo "== build with address,undefined sanitizers and test"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export CC=gcc
# Not the fault storm (suite storm, tests/integration/it_storm.c): it runs
# once, in the plain build above.
test_suites=(--suite unit --suite integration)
build_and_test build-asan -Db_sanitize=address,undefined \
	-Dbuildtype=debug
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
