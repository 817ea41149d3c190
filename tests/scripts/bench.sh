#!/usr/bin/env bash
# Run the benchmarks (meson suite 'bench', tests/bench/) on a build dir
# (default: build, which must exist) and print their summaries.  Each
# benchmark starts its own PostgreSQL, finx-sandbox and finxd.  Exits
# non-zero when a benchmark fails (a failed flow; latency targets are
# binding only with BENCH_STRICT=1).
#   bash tests/scripts/bench.sh [BUILD_DIR]
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
dir=${1:-build}

meson compile -C "$dir" >/dev/null
status=0
meson test -C "$dir" --benchmark --suite bench --verbose --print-errorlogs ||
	status=1
exit "$status"
