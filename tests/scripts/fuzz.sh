#!/usr/bin/env bash
# Build the libFuzzer targets (clang, ASan+UBSan) in build-fuzz and run
# each for FUZZ_SECONDS (default 20) on a scratch copy of its seed corpus
# in tests/fuzz/corpus/<target>.  Prints executions per target; exits
# non-zero when a build fails or any target crashes, leaks or times out.
#
#   FUZZ_SECONDS=600 tests/scripts/fuzz.sh          # longer runs
#   FUZZ_TARGETS="fuzz_callback" tests/scripts/fuzz.sh
#   FUZZ_BUILD=/tmp/build-fuzz tests/scripts/fuzz.sh
# Crash inputs are kept in $FUZZ_BUILD/fuzz-out/<target>/ (crash-*, leak-*).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

seconds=${FUZZ_SECONDS:-20}
build=${FUZZ_BUILD:-build-fuzz}
targets=${FUZZ_TARGETS:-fuzz_callback fuzz_finx_json fuzz_config fuzz_cursor fuzz_request}

if [[ -d $build/meson-private ]]; then
	CC=clang meson setup "$build" --reconfigure -Dfuzz=true \
		-Db_sanitize=address,undefined -Db_lundef=false >/dev/null
else
	CC=clang meson setup "$build" -Dfuzz=true \
		-Db_sanitize=address,undefined -Db_lundef=false >/dev/null
fi
build=$(cd "$build" && pwd)
meson compile -C "$build" $(printf 'tests/fuzz/%s ' $targets) >/dev/null

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

status=0
out=$build/fuzz-out
for t in $targets; do
	name=${t#fuzz_}
	work=$out/$t
	rm -rf "$work"
	mkdir -p "$work/corpus"
	cp tests/fuzz/corpus/"$name"/* "$work/corpus/" 2>/dev/null || true
	log=$work/fuzz.log
	rc=0
	(cd "$work" && "$build/tests/fuzz/$t" -max_total_time="$seconds" \
		-print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
		-max_len=65536 corpus "$root/tests/fuzz/corpus/$name") \
		>"$log" 2>&1 || rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)
	if ((rc != 0)); then
		echo "$t: FAILED (exit $rc) after ${execs:-?} executions; see $log"
		grep -m 5 -E 'ERROR|SUMMARY|runtime error' "$log" || true
		status=1
	else
		echo "$t: ${execs:-?} executions in ${seconds}s (${cov:-cov: ?})"
	fi
done
exit "$status"
