#!/usr/bin/env bash
# The demo: builds cementleak, generates a synthetic prone injection sequence (baseline + injections, with a
# canal leak appearing part-way), reads every scan back, and runs `cementleak analyze` on each injection scan
# (with the baseline and the previous scan), printing its alert next to the truth's expected alert.
#   scripts/demo.sh [OUT_DIR]        (default: out/demo)
# Pictures: OUT_DIR/case/scan_*/montage.png (ground truth) and OUT_DIR/analyze/scan_*/key_*.png (what
# cementleak found).
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

echo
echo "scan                  cementleak analyze (baseline + previous)                          truth"
scans=("$OUT"/case/scan_*/)
base=${scans[0]}
prev=$base
for scan in "${scans[@]:1}"; do
  name=$(basename "$scan")
  RUST_LOG=error $B analyze --scan "$scan/dicom" --baseline "$base/dicom" --previous "$prev/dicom" \
    --out "$OUT/analyze/$name" --masks >/dev/null
  .venv/bin/python - "$name" "$OUT/analyze/$name/report.json" "$scan/truth.json" <<'PY'
import json, sys
name, report_path, truth_path = sys.argv[1:4]
r, t = json.load(open(report_path)), json.load(open(truth_path))
def leaks(ls):
    return ", ".join(f'{l["site"]}{" (foraminal)" if l.get("foraminal") else ""} {l["volume_ml"]:.2f}'
                     for l in ls) or "no leak"
got = f'{r["alert"]["level"]:8s} cement {r["cement"]["intravertebral_volume_ml"]:.2f} mL, {leaks(r["leaks"])}'
want = f'{t["expected_alert"]:8s} cement {t["intravertebral_cement_ml"]:.2f} mL, {leaks(t["leaks"])}'
print(f'{name:21s} {got[:64]:64s} {want}  [{r["timing_ms"]["total"]:.0f} ms]')
PY
  prev=$scan
done
echo "reports, labels.nii.gz and key images: $OUT/analyze/scan_*/"
