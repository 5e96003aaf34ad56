#!/usr/bin/env python3
"""Train the leak-site model on patches from `cementleak patches` and export it to ONNX.

    .venv/bin/python scripts/train_leak_model.py \
        --train target/leak_patches/train --test target/leak_patches/test \
        --out models/leak_site.onnx --metrics models/leak_site.metrics.json

Reads DIR/patches.csv and the .npy patches of each folder (float32 [7, 24, 24, 24], channel order of
src/leaks/patch.rs). Train and test folders must come from disjoint seed ranges (checked). A small 3-D CNN
is trained on CPU with fixed seeds and class weights (inverse class frequency), evaluated on the held-out
folder through the exported ONNX graph (onnxruntime, the shipped artifact, not the torch module), and the
confusion matrix, accuracy and data counts are written to the metrics JSON.

The ONNX graph: input `patch` [batch, 7, 24, 24, 24] -> output `logits` [batch, 5] (softmax is applied by the
Rust side), class order and patch layout stored in the metadata keys `cementleak.classes` and
`cementleak.patch`, which src/leaks/model.rs checks on load.
"""

import argparse
import csv
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

CLASSES = ["canal", "posterior_vein", "disc", "paraspinal", "not_cement"]
CHANNELS = ["hu", "component", "intravertebral_cement", "body", "canal", "disc", "posterior_elements"]
PATCH_SIZE = 24
PATCH_SPACING_MM = 1.5
# Must equal src/leaks/model.rs::patch_layout() (Rust prints 1.5 as "1.5").
PATCH_LAYOUT = f"{','.join(CHANNELS)};{PATCH_SIZE};{PATCH_SPACING_MM}"
OPSET = 17


def load_folder(folder):
    rows = list(csv.DictReader(open(Path(folder) / "patches.csv", newline="")))
    x = np.zeros((len(rows), len(CHANNELS), PATCH_SIZE, PATCH_SIZE, PATCH_SIZE), dtype=np.float32)
    for i, r in enumerate(rows):
        a = np.load(Path(folder) / r["file"])
        if a.shape != x.shape[1:] or a.dtype != np.float32:
            sys.exit(f"{r['file']}: shape {a.shape} {a.dtype}, expected {x.shape[1:]} float32")
        x[i] = a
    y = np.array([CLASSES.index(r["label"]) for r in rows], dtype=np.int64)
    return x, y, rows


def load_all(folders):
    parts = [load_folder(f) for f in folders]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    rows = [r for p in parts for r in p[2]]
    return x, y, rows


def counts(y):
    return {c: int((y == i).sum()) for i, c in enumerate(CLASSES)}


def confusion(y_true, y_pred):
    m = np.zeros((len(CLASSES), len(CLASSES)), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        m[t, p] += 1
    return m


def report(name, y_true, y_pred):
    m = confusion(y_true, y_pred)
    recall = {c: (float(m[i, i] / m[i].sum()) if m[i].sum() else None) for i, c in enumerate(CLASSES)}
    acc = float((y_true == y_pred).mean()) if len(y_true) else None
    leak = y_true != CLASSES.index("not_cement")
    site_acc = float((y_true[leak] == y_pred[leak]).mean()) if leak.any() else None
    print(f"{name}: n={len(y_true)} accuracy={acc} site accuracy on true leaks={site_acc}")
    print("  truth \\ predicted " + " ".join(f"{c[:10]:>10}" for c in CLASSES))
    for i, c in enumerate(CLASSES):
        print(f"  {c:>17} " + " ".join(f"{v:>10d}" for v in m[i]))
    return {
        "n": int(len(y_true)),
        "accuracy": acc,
        "site_accuracy_on_true_leaks": site_acc,
        "recall": recall,
        "confusion_matrix": {"rows_truth_cols_predicted": CLASSES, "matrix": m.tolist()},
    }


# src/leaks/site.rs::Site::danger_rank: when rules and model name different sites the more dangerous wins.
DANGER_RANK = {"canal": 0, "posterior_vein": 1, "paraspinal": 2, "disc": 3}
# src/leaks/classify.rs: NOT_CEMENT_SUPPRESS, SUPPRESS_MAX_ML.
NOT_CEMENT_SUPPRESS = 0.9
SUPPRESS_MAX_ML = 0.2


def fused_class(rule_site, probabilities, volume_ml):
    """The site `leaks::classify::fuse` reports for one component (its site decision only, for the card's
    comparison of model, rules and fusion on the same held-out components). `not_cement` = suppressed."""
    best = int(np.argmax(probabilities))
    name = CLASSES[best]
    if name == "not_cement":
        suppress = (probabilities[best] >= NOT_CEMENT_SUPPRESS and rule_site != "canal"
                    and volume_ml < SUPPRESS_MAX_ML)
        return CLASSES.index("not_cement") if suppress else CLASSES.index(rule_site)
    if name == rule_site:
        return best
    return CLASSES.index(min((name, rule_site), key=DANGER_RANK.__getitem__))


def markdown_table(m):
    lines = ["| | " + " | ".join(CLASSES) + " |", "| --- |" + " --- |" * len(CLASSES)]
    for i, c in enumerate(CLASSES):
        lines.append(f"| {c} | " + " | ".join(str(v) for v in m[i]) + " |")
    return "\n".join(lines)


def build_model(torch):
    nn = torch.nn

    def block(cin, cout):
        return [nn.Conv3d(cin, cout, 3, padding=1), nn.BatchNorm3d(cout), nn.ReLU(), nn.MaxPool3d(2)]

    # 24^3 -> 12^3 -> 6^3 -> 3^3; the flattened 3^3 grid keeps where things are relative to the centre
    # (posterior of the wall, above the endplate), which a global pool would throw away.
    return nn.Sequential(
        *block(len(CHANNELS), 8),
        *block(8, 16),
        *block(16, 32),
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Linear(32 * 27, 48),
        nn.ReLU(),
        nn.Linear(48, len(CLASSES)),
    )


def augment(torch, xb, gen):
    """Flip superior-inferior (the sites are symmetric about the body's mid-height), shift by up to 2 voxels,
    and jitter the HU channel: component centroids and HU calibration vary between scanners."""
    n = xb.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    xb = torch.where(flip[:, None, None, None, None], xb.flip(2), xb)
    shifts = torch.randint(-2, 3, (3,), generator=gen).tolist()
    xb = torch.roll(xb, shifts=shifts, dims=(2, 3, 4))
    hu = xb[:, :1] * (1.0 + 0.05 * torch.randn(n, 1, 1, 1, 1, generator=gen))
    hu = hu + 0.02 * torch.randn(hu.shape, generator=gen)
    return torch.cat([hu, xb[:, 1:]], dim=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", nargs="+", required=True, help="patch folders to train on")
    ap.add_argument("--test", nargs="+", required=True, help="held-out patch folders (disjoint seeds)")
    ap.add_argument("--out", default="models/leak_site.onnx")
    ap.add_argument("--metrics", default="models/leak_site.metrics.json")
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--max-not-cement", type=int, default=200,
                    help="train on at most this many not_cement patches (a fixed random subset): the pipeline "
                         "finds ~10 false components per phantom scan, and more of them only costs time")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=20261124)
    # One thread: on a shared 2-core machine two torch threads spin-wait and run 5-7x slower (measured).
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)

    t0 = time.time()
    xtr, ytr, rtr = load_all(args.train)
    xte, yte, rte = load_all(args.test)
    seeds_tr = {int(r["seed"]) for r in rtr}
    seeds_te = {int(r["seed"]) for r in rte}
    if seeds_tr & seeds_te:
        sys.exit(f"train and test share seeds {sorted(seeds_tr & seeds_te)[:10]}")
    print(f"loaded {len(ytr)} train patches {counts(ytr)}, {len(yte)} test patches {counts(yte)} "
          f"in {time.time() - t0:.0f} s")

    available = counts(ytr)
    neg = np.flatnonzero(ytr == CLASSES.index("not_cement"))
    if len(neg) > args.max_not_cement:
        drop = np.random.RandomState(args.seed).choice(neg, len(neg) - args.max_not_cement, replace=False)
        keep = np.setdiff1d(np.arange(len(ytr)), drop)
        xtr, ytr, rtr = xtr[keep], ytr[keep], [rtr[i] for i in keep]
        print(f"not_cement subsampled to {args.max_not_cement} of {len(neg)}")

    freq = np.bincount(ytr, minlength=len(CLASSES)).astype(np.float64)
    if (freq == 0).any():
        sys.exit(f"no training patch for {[c for c, f in zip(CLASSES, freq) if f == 0]}")
    # Inverse frequency, normalised to mean 1: every class weighs the same in the loss.
    weights = freq.sum() / (len(CLASSES) * freq)
    print("class weights", dict(zip(CLASSES, np.round(weights, 3).tolist())))

    model = build_model(torch)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=args.epochs * ((len(ytr) + args.batch - 1) // args.batch)
    )
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32))
    gen = torch.Generator().manual_seed(args.seed)
    xtr_t, ytr_t = torch.from_numpy(xtr), torch.from_numpy(ytr)
    t_train = time.time()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(ytr), generator=gen)
        total = 0.0
        for i in range(0, len(order), args.batch):
            idx = order[i : i + args.batch]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            xb = augment(torch, xtr_t[idx], gen)
            loss = loss_fn(model(xb), ytr_t[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss) * len(idx)
        print(f"epoch {epoch + 1}/{args.epochs} loss {total / len(ytr):.4f} ({time.time() - t_train:.0f} s)",
              flush=True)
    train_s = time.time() - t_train

    model.eval()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(1, len(CHANNELS), PATCH_SIZE, PATCH_SIZE, PATCH_SIZE)
    torch.onnx.export(
        model, (dummy,), str(out), input_names=["patch"], output_names=["logits"],
        dynamic_axes={"patch": {0: "batch"}, "logits": {0: "batch"}}, opset_version=OPSET, dynamo=False,
    )
    import onnx

    m = onnx.load(str(out))
    for k, v in {"cementleak.classes": ",".join(CLASSES), "cementleak.patch": PATCH_LAYOUT,
                 "cementleak.output": "logits"}.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    m.doc_string = "cementleak leak-site classifier; see models/leak_site.md"
    onnx.checker.check_model(m)
    onnx.save(m, str(out))

    # Evaluate the artifact that ships: onnxruntime on the exported file.
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(str(out), opts, providers=["CPUExecutionProvider"])

    def logits(x):
        return np.concatenate([sess.run(["logits"], {"patch": x[i : i + 64]})[0] for i in range(0, len(x), 64)])

    lte = logits(xte)
    with torch.no_grad():
        lt = torch.cat([model(torch.from_numpy(xte[i : i + 64])) for i in range(0, len(xte), 64)]).numpy()
    torch_vs_onnx = float(np.abs(lt - lte).max()) if len(lte) else 0.0
    pte = lte.argmax(1)
    ptr = logits(xtr).argmax(1)
    t_inf = time.time()
    logits(xte[:64])
    ms_per_patch = (time.time() - t_inf) * 1000 / max(1, min(64, len(xte)))

    print(f"torch vs onnxruntime max |logit difference| {torch_vs_onnx:.2e}")
    train_rep = report("train", ytr, ptr)
    test_rep = report("held-out", yte, pte)
    # The same held-out components through the anatomical rules alone and through the fusion (rules +
    # model), when the patches were exported with the rules' reading (column rule_site).
    fusion = {}
    if rte and "rule_site" in rte[0]:
        z = lte - lte.max(axis=1, keepdims=True)
        prob = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        rule_pred = np.array([CLASSES.index(r["rule_site"]) for r in rte])
        fused_pred = np.array([fused_class(r["rule_site"], prob[i], float(r["volume_ml"]))
                               for i, r in enumerate(rte)])
        fusion = {"rules": report("held-out, rules alone", yte, rule_pred),
                  "fusion": report("held-out, rules + model fused", yte, fused_pred)}
        fusion["rules"]["markdown"] = markdown_table(fusion["rules"]["confusion_matrix"]["matrix"])
        fusion["fusion"]["markdown"] = markdown_table(fusion["fusion"]["confusion_matrix"]["matrix"])
    src_te = np.array([r.get("source", "pipeline") for r in rte])
    by_source = {s: report(f"held-out, source {s}", yte[src_te == s], pte[src_te == s])
                 for s in sorted(set(src_te))}

    data = open(out, "rb").read()
    metrics = {
        "model": out.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
        "parameters": int(n_params),
        "opset": OPSET,
        "command": "scripts/train_leak_model.py " + " ".join(sys.argv[1:]),
        "torch_version": torch.__version__,
        "train": {"folders": args.train, "seeds": [min(seeds_tr), max(seeds_tr)],
                  "patches_available": available, "patches": counts(ytr), "class_weights": dict(zip(CLASSES, weights.tolist()))},
        "test": {"folders": args.test, "seeds": [min(seeds_te), max(seeds_te)], "patches": counts(yte)},
        "epochs": args.epochs,
        "training_seconds": round(train_s, 1),
        "threads": args.threads,
        "torch_vs_onnxruntime_max_abs_logit_diff": torch_vs_onnx,
        "onnxruntime_ms_per_patch_batch64": round(ms_per_patch, 3),
        "train_metrics": train_rep,
        "held_out": test_rep,
        "held_out_by_source": by_source,
        "held_out_rules_and_fusion": fusion,
    }
    test_rep["markdown"] = markdown_table(test_rep["confusion_matrix"]["matrix"])
    Path(args.metrics).write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"wrote {out} ({len(data) / 1e6:.2f} MB, {n_params} parameters) and {args.metrics}; "
          f"training {train_s:.0f} s")
    # The model card's tables (models/leak_site.md), rows truth, columns predicted.
    print("\nheld-out confusion matrix, model (onnxruntime on the exported file):\n" + test_rep["markdown"])
    for k in ("rules", "fusion"):
        if k in fusion:
            print(f"\nheld-out confusion matrix, {k} (not_cement column: suppressed):\n" + fusion[k]["markdown"])


if __name__ == "__main__":
    main()
