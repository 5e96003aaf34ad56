#!/usr/bin/env bash
# Retrains the leak-site model end to end on what the current code hands it, in one invocation:
#   1. builds `cementleak` (dev profile, opt-level 2: no release build on the shared machine);
#   2. exports the held-out and the training patches with `cementleak patches` (the inference path,
#      `analyze::locate`), seeds and phantom settings of models/leak_site.md;
#   3. installs torch + onnx into .venv if missing (`scripts/setup.sh --train`);
#   4. trains and exports models/leak_site.onnx (scripts/train_leak_model.py: fixed seeds, CPU, 1 thread),
#      which prints the held-out confusion matrices (model, rules, fusion) as the card's markdown tables;
#   5. checks Rust (`ort`) against Python onnxruntime on the same patches (`cargo test --test leak_model`)
#      and the 5 MB size limit.
# Run it after merging anatomy or cement changes, then copy the printed tables into models/leak_site.md.
#
#   scripts/retrain_leak_model.sh                 # everything (about 60-75 min on the shared 2-core machine)
#   SKIP_EXPORT=1 scripts/retrain_leak_model.sh   # reuse target/leak_patches (training + checks, ~5 min)
#   TRUTH_BODY=1 scripts/retrain_leak_model.sh    # also export the truth-body split's extra positives
#
# Everything runs at nice 10. Step times are printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

out_dir=${PATCH_DIR:-target/leak_patches}
phantom=(--model-mm 1.0 --fov-mm 180 --steps 3)
extra=()
[ "${TRUTH_BODY:-0}" = 1 ] && extra+=(--truth-body)
times=()
step() {
  local name=$1
  shift
  local t0
  t0=$(date +%s)
  printf '\n== %s: %s\n' "$name" "$*" >&2
  "$@"
  times+=("$name $(($(date +%s) - t0)) s")
}

step build nice -n 10 cargo build --bin cementleak
if [ "${SKIP_EXPORT:-0}" != 1 ]; then
  rm -rf "$out_dir/test" "$out_dir/train"
  step export-test nice -n 10 ./target/debug/cementleak patches --out "$out_dir/test" --seeds 5000..5036 \
    --split test "${phantom[@]}" "${extra[@]}"
  step export-train nice -n 10 ./target/debug/cementleak patches --out "$out_dir/train" --seeds 1000..1060 \
    --split train "${phantom[@]}" "${extra[@]}"
fi
step setup scripts/setup.sh --train
step train nice -n 10 .venv/bin/python scripts/train_leak_model.py --train "$out_dir/train" \
  --test "$out_dir/test" --out models/leak_site.onnx --metrics models/leak_site.metrics.json
. scripts/env.sh
step parity nice -n 10 cargo test --test leak_model -- --nocapture

size=$(stat -c %s models/leak_site.onnx)
printf '\nmodels/leak_site.onnx: %s bytes, SHA-256 %s\n' "$size" "$(sha256sum models/leak_site.onnx | cut -d' ' -f1)"
if [ "$size" -gt 5000000 ]; then
  echo "models/leak_site.onnx is over the 5 MB limit" >&2
  exit 1
fi
printf 'step times: %s\n' "$(IFS=';'; echo "${times[*]}")"
