#!/usr/bin/env python3
"""Python reference of `cementleak analyze`: the same steps, written idiomatically with pydicom, numpy,
scipy.ndimage and onnxruntime, to compare speed (scripts/bench_analyze.sh) and results with the Rust binary.

    .venv/bin/python scripts/reference/analyze.py --scan S [--baseline B] [--previous P] --out OUT_DIR
        [--model models/leak_site.onnx | --no-model]

Steps: load the three series (pydicom, sorted along the slice normal, rescaled to HU) -> anatomy of the
treated vertebra (anatomy.py, after src/anatomy) -> cement (cement.py, after src/cement: registration,
resampling, metal removal, hysteresis, components, partial-volume volumes) -> leak sites (leaks.py: rules
after src/leaks/rules.rs, ONNX model on 7 x 24^3 patches, fusion) -> alert (config/alert_policy.toml) ->
OUT_DIR/report.json (schema cementleak.report/1), written atomically.

When models/leak_site.onnx does not exist yet, a PLACEHOLDER graph with the same input/output shapes is built
(leaks.placeholder_model) so that inference is timed; its opinions are meaningless and the report says so in
`warnings` and `generator.model.file`.

Exit status: 0 on success, 2 for unusable input (one line on stderr), like the Rust CLI.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

T_START = time.perf_counter()

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import anatomy  # noqa: E402
import cement  # noqa: E402
import keyimages  # noqa: E402
import leaks  # noqa: E402
from load import LoadError, load_series  # noqa: E402

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = None

LEVELS = ["continue", "reduce", "pause", "stop"]
DEFAULT_POLICY = {
    "reduce_within_mm": 5.0,
    "standard_aliquot_ml": [1.0, 1.0],
    "reduced_aliquot_ml": [0.3, 0.5],
    "growth_threshold_ml": 0.02,
    "sites": {
        "canal": {"present": "stop", "new": "stop", "growing": "stop"},
        "posterior_vein": {"present": "continue", "new": "pause", "growing": "pause"},
        "paraspinal": {"present": "continue", "new": "pause", "growing": "pause"},
        "disc": {"present": "continue", "new": "continue", "growing": "pause"},
    },
}
PLANE_SLACK_MM = 6.0
MAX_CANDIDATES = 4000


def load_policy(path: str) -> dict:
    policy = json.loads(json.dumps(DEFAULT_POLICY))
    if tomllib and os.path.exists(path):
        with open(path, "rb") as f:
            data = tomllib.load(f)
        sites = data.pop("sites", {})
        policy.update(data)
        policy["sites"].update(sites)
    return policy


def decide(policy, obs, wall_mm):
    level, reasons = 0, []

    def raise_(to, why):
        nonlocal level
        if to > 0:
            reasons.append(f"{LEVELS[to]}: {why}")
        level = max(level, to)

    for lk in obs:
        site = "canal" if lk["foraminal"] else lk["site"]
        rule = policy["sites"].get(site)
        if rule is None:
            continue
        name = "canal (foraminal)" if lk["foraminal"] else lk["site"].replace("_", " ")
        what = f"leak #{lk['id']} {name} {lk['volume_ml']:.2f} mL"
        verdict = (LEVELS.index(rule["present"]), f"{what} present")
        change = None
        if lk["new"] is True:
            change = (LEVELS.index(rule["new"]), f"{what} is new since the previous scan")
        elif lk["new"] is None:
            change = (LEVELS.index(rule["new"]), f"{what}, no previous scan to tell whether it is new")
        elif lk["grew_ml"] is not None and lk["grew_ml"] > policy["growth_threshold_ml"]:
            change = (LEVELS.index(rule["growing"]), f"{what} grew by {lk['grew_ml']:.2f} mL")
        if change and change[0] > verdict[0]:
            verdict = change
        raise_(*verdict)
    if wall_mm is not None and wall_mm <= policy["reduce_within_mm"]:
        raise_(1, f"cement {wall_mm:.1f} mm from the posterior wall (limit {policy['reduce_within_mm']:.1f} mm)")
    aliquot = {0: policy["standard_aliquot_ml"], 1: policy["reduced_aliquot_ml"]}.get(level)
    return {"level": LEVELS[level], "next_aliquot_ml": aliquot, "reasons": reasons}


def wall_distance(intra_voxels_lps: np.ndarray, wall: dict):
    """Smallest distance from intravertebral cement to the posterior wall (as src/analyze/measure.rs)."""
    if len(intra_voxels_lps) == 0:
        return None
    d = (wall["point"] - intra_voxels_lps) @ wall["normal"]
    nearest = float(d.min())
    if nearest <= 0.0 or len(wall["points"]) == 0:
        return max(nearest, 0.0)
    cand = intra_voxels_lps[d <= nearest + PLANE_SLACK_MM]
    if len(cand) > MAX_CANDIDATES:
        cand = cand[np.argpartition(d[d <= nearest + PLANE_SLACK_MM], MAX_CANDIDATES)[:MAX_CANDIDATES]]
    from scipy.spatial import cKDTree

    return float(cKDTree(wall["points"]).query(cand)[0].min())


def r(v, n):
    return None if v is None else round(float(v), n)


def write_atomically(obj, path):
    tmp = path + ".partial"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scan", required=True)
    ap.add_argument("--baseline")
    ap.add_argument("--previous")
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "leak_site.onnx"))
    ap.add_argument("--no-model", action="store_true")
    ap.add_argument("--policy", default=os.path.join(ROOT, "config", "alert_policy.toml"))
    a = ap.parse_args(argv)

    timing = {}
    warnings = []
    t = t_cli = time.perf_counter()
    keyimages.remove_stale(a.out)
    try:
        scan = load_series(a.scan)
        base = load_series(a.baseline) if a.baseline else None
        prev = load_series(a.previous) if a.previous else None
    except LoadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    timing["load"] = (time.perf_counter() - t) * 1e3
    t_analysis = time.perf_counter()

    model = None
    if not a.no_model:
        path, placeholder = a.model, False
        if not os.path.exists(path):
            path = os.path.join(ROOT, "target", "reference", "leak_site_PLACEHOLDER_timing_only.onnx")
            placeholder = True
            if not os.path.exists(path):
                leaks.placeholder_model(path)
            warnings.append(
                "leak-site model: PLACEHOLDER graph (untrained, timing only) because models/leak_site.onnx is "
                "missing; model opinions are meaningless"
            )
        model = leaks.Model(path, placeholder)
    else:
        warnings.append("site from anatomical rules only (no model)")

    g = scan.geometry
    t = time.perf_counter()
    # As in Rust: the anatomy comes from the baseline (no cement to confuse it) when there is one on the
    # scan's grid; the Rust carry through the registration is left out (it is a resampling of labels).
    seg = base if base is not None and base.hu.shape == scan.hu.shape else scan
    try:
        anat = anatomy.segment(seg.hu, seg.geometry)
    except anatomy.AnatomyError as e:
        anat = None
        warnings.append(f"{e}; leaks could not be assessed")
    timing["anatomy"] = (time.perf_counter() - t) * 1e3

    report_leaks = []
    cement_report = {
        "total_volume_ml": 0.0,
        "intravertebral_volume_ml": 0.0,
        "new_volume_ml": None,
        "posterior_wall_distance_mm": None,
        "fill_fraction": None,
    }
    vertebra = {"found": False, "level": None, "posterior_wall_intact": None}
    alert = {"level": "continue", "next_aliquot_ml": None, "reasons": []}
    policy = load_policy(a.policy)
    if anat is not None:
        warnings += anat["warnings"]
        t = time.perf_counter()
        body = anat["labels"] == 1
        fnd = cement.detect(
            scan.hu,
            g,
            body,
            (base.hu, base.geometry) if base else None,
            (prev.hu, prev.geometry) if prev else None,
        )
        timing["cement"] = (time.perf_counter() - t) * 1e3
        warnings += fnd["warnings"]

        t = time.perf_counter()
        lo = fnd["crop_lo"]
        crop = tuple(slice(lo[k], lo[k] + fnd["crop_shape"][k]) for k in range(3))
        intra_full = np.zeros(scan.hu.shape, dtype=bool)
        intra_full[crop] = fnd["intravertebral"]
        frame = leaks.SiteFrame(anat, g)
        rules = []
        for c in fnd["leaks"]:
            c["voxels_scan"] = c["voxels"] + lo
            rules.append(leaks.decide_rule(frame.evidence(anat["labels"], c["voxels_scan"])))
        probs = [None] * len(rules)
        if model is not None and fnd["leaks"]:
            patches = np.stack(
                [
                    leaks.extract_patch(scan.hu, g, anat["labels"], intra_full, c["voxels_scan"], c["centroid"], anat)
                    for c in fnd["leaks"]
                ]
            )
            probs = list(model.predict(patches))
        suppressed = 0.0
        kept = []
        for c, rule, p in zip(fnd["leaks"], rules, probs):
            v = leaks.fuse(rule, p, c["volume_ml"])
            if not v["keep"]:
                suppressed += c["volume_ml"]
                warnings.append(
                    f"a {c['volume_ml']:.3f} mL component near {np.round(c['centroid'], 1).tolist()} was taken "
                    "for an artefact by the model and not reported"
                )
                continue
            kept.append((c, rule, p, v))
        for i, (c, rule, p, v) in enumerate(kept, start=1):
            new = None if c["previous_ml"] is None else bool(c["previous_ml"] < cement.P["min_leak_ml"])
            grew = round(c["volume_ml"] - c["previous_ml"], 4) if new is False else None
            report_leaks.append(
                {
                    "id": i,
                    "site": v["site"],
                    "foraminal": bool(v["foraminal"]),
                    "volume_ml": round(c["volume_ml"], 4),
                    "centroid_lps_mm": [round(float(x), 2) for x in c["centroid"]],
                    "max_hu": float(round(c["max_hu"])),
                    "new": new,
                    "grew_ml": grew,
                    "confidence": round(v["confidence"], 3),
                    "model_site": None if p is None else leaks.CLASSES[int(np.argmax(p))],
                    "model_probabilities": None
                    if p is None
                    else {k: round(float(x), 4) for k, x in zip(leaks.CLASSES, p)},
                    "rule_site": rule["site"],
                    "review": bool(v["review"]),
                }
            )
        timing["leaks"] = (time.perf_counter() - t) * 1e3

        t = time.perf_counter()
        cg = fnd["crop_geometry"]
        intra_lps = cg.index_to_lps(np.argwhere(fnd["intravertebral"]).astype(float))
        wall_mm = wall_distance(intra_lps, anat["wall"])
        alert = decide(policy, report_leaks, wall_mm)
        if prev is None and report_leaks:
            warnings.append("no previous scan: every leak is treated as possibly new")
        timing["alert"] = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        label_map = keyimages.label_map(
            anat["labels"],
            lo,
            fnd["crop_shape"],
            fnd["cement"],
            fnd["metal"],
            [(c, v["site"]) for c, _, _, v in kept],
        )
        timing["labels"] = (time.perf_counter() - t) * 1e3
        cement_centre = intra_lps.mean(axis=0) if len(intra_lps) else None
        total = max(fnd["total_ml"] - suppressed, 0.0)
        vertebra = {
            "found": True,
            "level": None,
            "centroid_lps_mm": [round(float(x), 2) for x in anat["body_centroid"]],
            "body_volume_ml": round(anat["body_volume_ml"], 2),
            "posterior_wall_intact": anat["wall"]["intact"],
        }
        cement_report = {
            "total_volume_ml": round(total, 3),
            "intravertebral_volume_ml": round(fnd["intravertebral_ml"], 3),
            "new_volume_ml": r(fnd["new_ml"], 3),
            "posterior_wall_distance_mm": r(wall_mm, 1),
            "fill_fraction": round(min(max(fnd["intravertebral_ml"] / anat["body_volume_ml"], 0.0), 1.0), 3)
            if anat["body_volume_ml"] > 0
            else None,
        }
    else:
        alert = decide(policy, [], None)
    timing["analysis"] = (time.perf_counter() - t_analysis) * 1e3
    os.makedirs(a.out, exist_ok=True)
    t = time.perf_counter()
    keyimages.write_key_images(
        a.out,
        scan.hu,
        g,
        label_map if anat is not None else np.zeros(scan.hu.shape, np.uint8),
        cement_centre if anat is not None else None,
        anat["body_centroid"] if anat is not None else g.index_to_lps((np.array(scan.hu.shape) - 1) / 2.0),
        report_leaks,
        alert,
    )
    timing["key_images"] = (time.perf_counter() - t) * 1e3
    timing["total"] = (time.perf_counter() - t_cli) * 1e3
    timing["process"] = (time.perf_counter() - T_START) * 1e3
    if anat is not None:
        for k, v in anat["timings"].items():
            timing[f"anatomy.{k.removesuffix('_ms')}"] = v
        for k, v in fnd["timings"].items():
            timing[f"cement.{k.removesuffix('_ms')}"] = v

    report = {
        "schema": "cementleak.report/1",
        "generator": {
            "name": "cementleak-python-reference",
            "version": "0.1.0",
            "model": None
            if model is None
            else {"file": os.path.relpath(model.path, ROOT) if model else None, "sha256": model.sha256},
        },
        "input": {
            "scan": scan.info,
            "baseline": base.info if base else None,
            "previous": prev.info if prev else None,
        },
        "vertebra": vertebra,
        "cement": cement_report,
        "leaks": report_leaks,
        "alert": alert,
        "timing_ms": {k: round(v, 2) for k, v in timing.items()},
        "warnings": warnings,
    }
    write_atomically(report, os.path.join(a.out, "report.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
