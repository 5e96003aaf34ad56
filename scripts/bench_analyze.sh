#!/usr/bin/env bash
# Benchmark of `cementleak analyze` (Rust, release build) against the Python reference of the same steps
# (scripts/reference/analyze.py), side by side in one run, on a fixed 512 x 512 x 40 phantom sequence with
# baseline and previous scans.
#
#   scripts/bench_analyze.sh [RUNS]          (default 7; run it under `nice` on a shared machine)
#
# Environment:
#   BENCH_DIR   where the phantom and outputs go (default out/bench_analyze)
#   BENCH_SEED  phantom seed (default 21: L1, lytic, canal + paraspinal leak in the last scan)
#   BENCH_PY_ARGS  extra arguments for the Python reference (e.g. --no-model)
#
# Each run is timed from process start to process exit with report.json written (checked), alternating
# Rust and Python so that machine load hits both alike; one untimed warm-up of each fills the page cache.
# Prints medians, min/max, the Python/Rust ratio and both per-stage `timing_ms`; writes a JSON summary to
# $BENCH_DIR/summary.json.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-7}
dir=${BENCH_DIR:-out/bench_analyze}
seed=${BENCH_SEED:-21}
log() { printf 'bench: %s\n' "$*" >&2; }

scripts/setup.sh
# shellcheck source=scripts/env.sh
. scripts/env.sh

log "building cementleak --release"
cargo build --release --quiet
bin=target/release/cementleak
"$bin" analyze --help >/dev/null 2>&1 || { log "this build has no 'analyze' subcommand (merge main first)"; exit 1; }

phantom="$dir/phantom_seed$seed"
if [ ! -f "$phantom/case.json" ]; then
  log "generating phantom sequence (seed $seed, 512 x 512 x 40) in $phantom"
  rm -rf "$phantom"
  "$bin" phantom --out "$phantom" --seed "$seed" --matrix 512 --slices 40 --steps 3 --leaks canal,paraspinal >&2
fi
mapfile -t scans < <(find "$phantom/" -maxdepth 1 -name 'scan_*' -type d | sort)
[ "${#scans[@]}" -ge 3 ] || { log "phantom has fewer than 3 scans"; exit 1; }
baseline="${scans[0]}/dicom"
previous="${scans[${#scans[@]}-2]}/dicom"
scan="${scans[${#scans[@]}-1]}/dicom"

exec .venv/bin/python scripts/bench_analyze.py --runs "$runs" --dir "$dir" --bin "$bin" \
  --scan "$scan" --baseline "$baseline" --previous "$previous" --truth "${scans[${#scans[@]}-1]}/truth.json" \
  -- ${BENCH_PY_ARGS:-}
