#!/usr/bin/env bash
# Fuzz the DICOM loader (parse + decode one file from bytes: cementleak::load::dicom::load_dicom_bytes).
#
# Usage: scripts/fuzz.sh [SECONDS]   (default 600)
# Needs cargo-fuzz (`cargo install cargo-fuzz`). Only stable Rust exists here, so RUSTC_BOOTSTRAP=1 lets
# cargo-fuzz pass its nightly-only flags. One core only (-jobs=1 -workers=1), under nice.
# The corpus is seeded at run time from copies of the shared codec files and real slices (never committed:
# fuzz/corpus is git-ignored) plus the small synthetic seeds in fixtures/fuzz-seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${1:-600}"
DATA="${CEMENTLEAK_DATA:-$PWD/../shared/data}"
CORPUS=fuzz/corpus/load_bytes
mkdir -p "$CORPUS"
if [ -d "$DATA/codecs" ]; then
  cp -n "$DATA"/codecs/*.dcm "$CORPUS"/ 2>/dev/null || true
fi
if [ -d "$DATA/real/totalseg-t12/dicom" ]; then
  # Two real slices are enough: the rest are the same encoding.
  ls "$DATA"/real/totalseg-t12/dicom/*.dcm | head -2 | xargs -I{} cp -n {} "$CORPUS"/
fi
cp -n fixtures/fuzz-seeds/* "$CORPUS"/ 2>/dev/null || true
cd fuzz
RUSTC_BOOTSTRAP=1 nice -n 10 cargo fuzz run load_bytes -s none -O -a corpus/load_bytes -- \
  -jobs=1 -workers=1 -max_total_time="$SECONDS_TO_RUN" -timeout=30 -rss_limit_mb=3072 -print_final_stats=1
