#!/usr/bin/env bash
# Installs what cementleak's build, tests and scripts need on a fresh Debian machine; quick when all is there.
#   - Debian packages: dicom3tools (dciodvfy), dcmtk (dcmdump) to validate the DICOM we write
#   - Rust toolchain: must already be on PATH (rustup); checked, not installed
#   - .venv: onnxruntime (its libonnxruntime.so is what the Rust binary loads), numpy, pydicom for
#     reference scripts. Versions pinned in scripts/requirements.txt.
#   - with --train: also torch and onnx for scripts/train_leak_model.py (scripts/requirements-train.txt;
#     about 3 minutes and 5 GB, so only on request).
# Prints the ONNX Runtime library path at the end; scripts source scripts/env.sh to get it.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'setup: %s\n' "$*" >&2; }

command -v cargo >/dev/null || { log "cargo not found: install Rust with rustup first"; exit 1; }

apt_pkgs=(dicom3tools dcmtk)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  log "installing Debian packages: ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

train=0
for arg in "$@"; do
  case "$arg" in
    --train) train=1 ;;
    *) log "unknown option $arg (only --train)"; exit 1 ;;
  esac
done

req=scripts/requirements.txt
stamp=.venv/.requirements.sha256
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "creating .venv with $(tr '\n' ' ' < "$req")"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
fi
if [ "$train" = 1 ]; then
  treq=scripts/requirements-train.txt
  tstamp=.venv/.requirements-train.sha256
  twant=$(sha256sum "$treq" | cut -d' ' -f1)
  if [ "$(cat "$tstamp" 2>/dev/null)" != "$twant" ]; then
    log "installing training packages: $(grep -v '^#' "$treq" | tr '\n' ' ')"
    .venv/bin/pip install -q --disable-pip-version-check -r "$treq"
    echo "$twant" > "$tstamp"
  fi
fi

# shellcheck source=scripts/env.sh
. scripts/env.sh
[ -f "$ORT_DYLIB_PATH" ] || { log "onnxruntime library missing at $ORT_DYLIB_PATH"; exit 1; }
log "ready (ORT_DYLIB_PATH=$ORT_DYLIB_PATH)"
