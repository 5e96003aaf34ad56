#!/usr/bin/env bash
# Issue-5 evaluation of `analyze`: held-out phantom sequences (seeds >= 100000; the leak-site model trains on
# `cementleak patches --seeds A..B` with seeds below 100000), hybrid sequences inserted into the real series
# of ../shared/data/real, and the unmodified real CTs. Prints a table, writes target/evaluation.json.
#
#   scripts/evaluate.sh                      # 40 phantom cases x 6 scans (+ baselines), 2 hybrid cases per real vertebra
#   scripts/evaluate.sh --cases 8 --hybrid-cases 1 --matrix 256    # a quick look
#   EVAL_PROFILE=dev scripts/evaluate.sh     # skip the release build (dev is opt-level 2)
#
# Runs at low priority (nice 10) with --threads cases side by side (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f scripts/env.sh ]; then . scripts/env.sh; fi
profile="${EVAL_PROFILE:-release}"
nice -n 10 cargo build --profile "$profile" --example evaluate
dir=$([ "$profile" = dev ] && echo debug || echo "$profile")
exec nice -n 10 "target/$dir/examples/evaluate" "$@"
