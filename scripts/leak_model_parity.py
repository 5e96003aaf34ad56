#!/usr/bin/env python3
"""Reference run of the leak-site model for tests/leak_model.rs: onnxruntime on .npy patches.

    .venv/bin/python scripts/leak_model_parity.py MODEL.onnx PATCH.npy [PATCH.npy ...]

Prints one JSON list per patch on stdout: the softmax of the model's logits, in class order.
"""

import json
import sys

import numpy as np
import onnxruntime as ort


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    sess = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
    batch = np.stack([np.load(p) for p in sys.argv[2:]]).astype(np.float32)
    logits = sess.run(["logits"], {"patch": batch})[0].astype(np.float64)
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    json.dump(p.tolist(), sys.stdout)
    print()


if __name__ == "__main__":
    main()
