#!/usr/bin/env bash
# Generates four phantom injection sequences, one per leak site, prone and supine and decubitus, and
# validates one DICOM file per series with dciodvfy when it is installed.
#   scripts/phantom_demo.sh [OUT_DIR]      (default: phantom_demo/)
# Montages: OUT_DIR/<case>/scan_*/montage.png
set -euo pipefail
OUT=${1:-phantom_demo}
cd "$(dirname "$0")/.."
cargo build --release --quiet
B=./target/release/cementleak
mkdir -p "$OUT"
$B phantom --out "$OUT/canal_hfp"      --seed 101 --level L2  --position HFP  --leaks canal --wall-intact false --steps 6
$B phantom --out "$OUT/vein_hfs"       --seed 102 --level T12 --position HFS  --leaks posterior_vein --steps 6
$B phantom --out "$OUT/disc_hfdl"      --seed 103 --level L4  --position HFDL --leaks disc --steps 6
$B phantom --out "$OUT/paraspinal_hfdr" --seed 104 --level T9 --position HFDR --leaks paraspinal --steps 6
if command -v dciodvfy >/dev/null; then
  for s in "$OUT"/*/scan_*/dicom; do
    f=$(ls "$s" | head -1)
    errs=$(dciodvfy "$s/$f" 2>&1 | grep -c '^Error' || true)
    warns=$(dciodvfy "$s/$f" 2>&1 | grep -c '^Warning' || true)
    echo "dciodvfy $s/$f: $errs errors, $warns warnings"
  done
fi
