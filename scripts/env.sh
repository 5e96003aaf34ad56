# Sourced by the project's scripts: points ONNX Runtime users at the library inside the project venv.
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_lib=$(ls "$_root"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -n1 || true)
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$_lib}"
export CEMENTLEAK_DATA="${CEMENTLEAK_DATA:-$_root/../shared/data}"
unset _root _lib
