#!/usr/bin/env bash
# The demo: builds cementleak, generates a synthetic prone injection sequence (baseline + injections, with a
# canal leak appearing part-way), reads every scan back, and segments the treated vertebra on the last one.
#   scripts/demo.sh [OUT_DIR]        (default: out/demo)
# Pictures: OUT_DIR/case/scan_*/montage.png (ground truth) and OUT_DIR/segment/*.png (what cementleak found).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out/demo}
scripts/setup.sh
. scripts/env.sh
cargo build --release --locked --quiet
B=./target/release/cementleak
rm -rf "$OUT" && mkdir -p "$OUT"

$B phantom --out "$OUT/case" --seed 7 --level L2 --position HFP --leaks canal --steps 5

echo
echo "scan                  read back (cementleak info)                      ground truth"
for scan in "$OUT"/case/scan_*/; do
  name=$(basename "$scan")
  info=$($B info "$scan/dicom" --json)
  .venv/bin/python - "$name" "$scan/truth.json" "$info" <<'PY'
import json, sys
name, truth_path, info = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
t = json.load(open(truth_path))
shape = "x".join(str(v) for v in info["shape"])
leaks = ", ".join(f'{l["site"]} {l["volume_ml"]:.2f} mL' for l in t["leaks"]) or "no leak"
print(f'{name:21s} {shape:12s} {info["series"]["patient_position"] or "-":4s} '
      f'HU {info["hu_min"]:.0f}..{info["hu_max"]:.0f}'.ljust(70)
      + f'cement {t["intravertebral_cement_ml"]:.2f} mL, {leaks} -> {t["expected_alert"]}')
PY
done

last=$(ls -d "$OUT"/case/scan_*/ | tail -n 1)
echo
$B segment "$last/dicom" --out "$OUT/segment"
echo "segmentation of $(basename "$last"): $OUT/segment (labels.nii.gz, PNG overlays, segment.json)"
