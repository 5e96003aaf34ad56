#!/usr/bin/env bash
# The demo: build cementleak and run it on a built-in example.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. scripts/env.sh
cargo build --release --locked -q
echo "TODO: demo input" >&2
