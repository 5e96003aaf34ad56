#!/usr/bin/env python3
"""Timing driver of scripts/bench_analyze.sh: alternates the Rust binary and the Python reference on the same
inputs, measures each process from start to exit (report.json written), and summarises.

Wall time is what the Done-when line asks for; CPU time (user + system of the child, from rusage) is printed
too because on a shared 2-core machine wall time also measures the neighbours.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(cmd, out_dir):
    report = os.path.join(out_dir, "report.json")
    if os.path.exists(report):
        os.remove(report)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if p.returncode != 0 or not os.path.exists(report):
        sys.exit(f"bench: {cmd[0]} failed (exit {p.returncode}): {p.stderr.strip()[-2000:]}")
    with open(report) as f:
        return wall * 1e3, cpu * 1e3, json.load(f)


def stats(v):
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "runs": [round(x, 1) for x in v]}


def med_timing(reports):
    keys = sorted({k for r in reports for k in r.get("timing_ms", {})})
    return {k: round(statistics.median(r["timing_ms"][k] for r in reports if k in r["timing_ms"]), 1) for k in keys}


def summary_of(rep):
    return {
        "alert": rep["alert"]["level"],
        "leaks": [
            {
                "site": l["site"],
                "foraminal": l.get("foraminal"),
                "volume_ml": l["volume_ml"],
                "centroid": l["centroid_lps_mm"],
                "new": l.get("new"),
                "rule_site": l.get("rule_site"),
                "model_site": l.get("model_site"),
            }
            for l in rep["leaks"]
        ],
        "intravertebral_ml": rep["cement"]["intravertebral_volume_ml"],
        "total_ml": rep["cement"]["total_volume_ml"],
        "new_ml": rep["cement"].get("new_volume_ml"),
        "wall_mm": rep["cement"].get("posterior_wall_distance_mm"),
        "body_ml": rep["vertebra"].get("body_volume_ml"),
        "body_centroid": rep["vertebra"].get("centroid_lps_mm"),
        "model": (rep["generator"].get("model") or {}).get("file"),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--scan", required=True)
    ap.add_argument("--baseline", required=True)
    ap.add_argument("--previous", required=True)
    ap.add_argument("--truth")
    ap.add_argument("py_args", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    py_extra = [x for x in a.py_args if x != "--"]
    inputs = ["--scan", a.scan, "--baseline", a.baseline, "--previous", a.previous]
    rs_out, py_out = os.path.join(a.dir, "rust_out"), os.path.join(a.dir, "python_out")
    rust = [a.bin, "analyze", *inputs, "--out", rs_out]
    python = [os.path.join(ROOT, ".venv", "bin", "python"), os.path.join(ROOT, "scripts", "reference", "analyze.py")]
    python += [*inputs, "--out", py_out, *py_extra]

    load_start = os.getloadavg()
    print("bench: one untimed warm-up run of each (page cache) ...", file=sys.stderr)
    timed(rust, rs_out)
    timed(python, py_out)
    rw, rc, pw, pc, rrep, prep = [], [], [], [], [], []
    for i in range(a.runs):
        w, c, rep = timed(rust, rs_out)
        rw.append(w), rc.append(c), rrep.append(rep)
        w2, c2, rep2 = timed(python, py_out)
        pw.append(w2), pc.append(c2), prep.append(rep2)
        print(f"bench: run {i + 1}/{a.runs}: rust {w:8.1f} ms wall {c:8.1f} ms cpu | "
              f"python {w2:8.1f} ms wall {c2:8.1f} ms cpu", file=sys.stderr)

    r, p = stats(rw), stats(pw)
    res = {
        "inputs": {"scan": a.scan, "baseline": a.baseline, "previous": a.previous,
                   "shape_zyx": rrep[-1]["input"]["scan"]["shape_zyx"]},
        "commit": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True).stdout.strip(),
        "machine": {"cpus": os.cpu_count(), "loadavg_at_start": load_start, "loadavg_at_end": os.getloadavg(),
                    "python": platform.python_version()},
        "python_model_is_placeholder": "PLACEHOLDER" in (summary_of(prep[-1])["model"] or ""),
        "runs": a.runs,
        "rust_wall_ms": r,
        "python_wall_ms": p,
        "rust_cpu_ms": stats(rc),
        "python_cpu_ms": stats(pc),
        "ratio_python_over_rust_wall_median": p["median"] / r["median"],
        "ratio_python_over_rust_cpu_median": statistics.median(pc) / statistics.median(rc),
        "budget_ms": 400.0,
        "rust_within_budget": r["median"] <= 400.0,
        "rust_timing_ms_median": med_timing(rrep),
        "python_timing_ms_median": med_timing(prep),
        "rust_report": summary_of(rrep[-1]),
        "python_report": summary_of(prep[-1]),
    }
    if a.truth and os.path.exists(a.truth):
        with open(a.truth) as f:
            t = json.load(f)
        res["truth"] = {
            "alert": t["expected_alert"],
            "leaks": [{"site": l["site"], "foraminal": l["foraminal"], "volume_ml": l["volume_ml"],
                       "centroid": l["centroid_lps_mm"], "new": l["new"]} for l in t["leaks"]],
            "intravertebral_ml": t["intravertebral_cement_ml"],
            "wall_mm": t["posterior_wall_distance_mm"],
        }
    os.makedirs(a.dir, exist_ok=True)
    with open(os.path.join(a.dir, "summary.json"), "w") as f:
        json.dump(res, f, indent=2)
        f.write("\n")

    def line(name, s):
        return f"{name:<8} median {s['median']:8.1f} ms   min {s['min']:8.1f}   max {s['max']:8.1f}"

    print(f"analyze, {res['inputs']['shape_zyx']} with baseline + previous, {a.runs} alternating runs, "
          f"{os.cpu_count()} cpus, load average {load_start[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end")
    if res["python_model_is_placeholder"]:
        print("NOTE: the Python reference ran a PLACEHOLDER ONNX graph (timing only): models/leak_site.onnx is missing")
    print("wall, process start to report.json written:")
    print("  " + line("rust", r) + ("   (<= 400 ms: met)" if r["median"] <= 400 else "   (> 400 ms: NOT met)"))
    print("  " + line("python", p))
    print(f"  ratio python/rust (medians): {res['ratio_python_over_rust_wall_median']:.1f}x")
    print("cpu (user+sys):")
    print("  " + line("rust", res["rust_cpu_ms"]))
    print("  " + line("python", res["python_cpu_ms"]))
    print(f"  ratio python/rust (medians): {res['ratio_python_over_rust_cpu_median']:.1f}x")
    for who in ("rust", "python"):
        tm = res[f"{who}_timing_ms_median"]
        print(f"{who} timing_ms (median per stage): " + ", ".join(f"{k} {v}" for k, v in tm.items()))
    for who in ("rust", "python") + (("truth",) if "truth" in res else ()):
        s = res[f"{who}_report"] if who != "truth" else res["truth"]
        leaks = "; ".join(
            f"{l['site']}{' (foraminal)' if l.get('foraminal') else ''} {l['volume_ml']:.3f} mL at "
            f"{[round(x, 1) for x in l['centroid']]}" for l in s["leaks"]) or "none"
        print(f"{who:<6} alert {s['alert']:<8} intravertebral {s['intravertebral_ml']} mL, wall {s['wall_mm']} mm, "
              f"leaks {len(s['leaks'])}: {leaks}")
    print(f"summary: {os.path.join(a.dir, 'summary.json')}")


if __name__ == "__main__":
    main()
