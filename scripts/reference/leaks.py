"""Stage 4 of the Python reference: site of each leak component, two ways, and their fusion.

- rules (as `src/leaks/rules.rs`): each voxel of the component falls in a zone of a frame built from the
  anatomy (spine axis, posterior wall normal, canal midline and width measured on the label map): canal,
  foramen, disc, or outside; plus a venous zone behind the wall at the midline and a tubular shape test;
- model (as `src/leaks/patch.rs` + `model.rs`): a 7 x 24^3 patch at 1.5 mm in a vertebra-aligned frame
  (HU/1000 clipped to -300..3000, the component, intravertebral cement, body, canal, disc, posterior
  elements), run through ONNX Runtime;
- fusion (as `src/leaks/classify.rs`): agreement raises confidence, disagreement asks for review and the
  more dangerous site wins; a confident `not_cement` drops small non-canal components.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
from scipy import ndimage as ndi

SITES = ["canal", "posterior_vein", "disc", "paraspinal"]
CLASSES = SITES + ["not_cement"]
DANGER = {"canal": 0, "posterior_vein": 1, "paraspinal": 2, "disc": 3}

CANAL_MIN_FRACTION = 0.2
DISC_MIN_FRACTION = 0.3
VEIN_BEHIND_WALL_MM = 5.0
VEIN_HALF_WIDTH_MM = 7.0
VEIN_MIN_FRACTION = 0.6
VEIN_ELONGATION = 1.8
VEIN_MAX_WIDTH_MM = 10.0
VEIN_MAX_DEPTH_MM = 6.0
VEIN_MIN_LENGTH_MM = 6.0
DISC_BAND_MM = 15.0

PATCH_SIZE = 24
PATCH_SPACING_MM = 1.5
HU_MIN, HU_MAX, HU_SCALE = -300.0, 3000.0, 1000.0
NOT_CEMENT_SUPPRESS = 0.9
SUPPRESS_MAX_ML = 0.2
REVIEW_BELOW = 0.6


def q_round(v, q):
    v = np.asarray(v).ravel()
    if v.size == 0:
        return None
    k = int(round((v.size - 1) * q))
    return float(np.partition(v, k)[k])


class SiteFrame:
    def __init__(self, anat: dict, g):
        sup = anat["spine_axis"] / np.linalg.norm(anat["spine_axis"])
        n = anat["wall"]["normal"]
        post = n - sup * (n @ sup)
        post /= np.linalg.norm(post)
        self.sup, self.post, self.left = sup, post, np.cross(post, sup)
        self.centre = anat["body_centroid"]
        self.wall_point, self.wall_normal = anat["wall"]["point"], anat["wall"]["normal"]
        self.endplates = [anat["endplates"]["superior"], anat["endplates"]["inferior"]]
        self.g = g
        self.mid, self.half_width, self.depth, self.body_radius = 0.0, 9.0, 16.0, 25.0
        lab = anat["labels"]
        half = max(0.25 * anat["height_mm"], 3.0)
        bi = np.argwhere(lab == 1)
        if len(bi):
            c = self.coords(g.index_to_lps(bi.astype(float)))
            self.body_radius = q_round(np.hypot(c["lateral"], c["ap"]), 0.9)
        ci = np.argwhere(lab == 2)
        if len(ci):
            c = self.coords(g.index_to_lps(ci.astype(float)))
            sel = np.abs(c["along"]) <= half
            lat, depth = c["lateral"][sel], c["behind"][sel]
            if lat.size >= 20:
                self.mid = q_round(lat, 0.5)
                self.half_width = max(q_round(np.abs(lat - self.mid), 0.95), 4.0)
                self.depth = max(q_round(depth, 0.95), 6.0)

    def coords(self, p):
        rel = p - self.centre
        return {
            "along": rel @ self.sup,
            "lateral": rel @ self.left,
            "ap": rel @ self.post,
            "behind": (p - self.wall_point) @ self.wall_normal,
        }

    def evidence(self, labels, voxels):
        p = self.g.index_to_lps(voxels.astype(float))
        lab = labels[tuple(voxels.T)]
        c = self.coords(p)
        off_mid = np.abs(c["lateral"] - self.mid)
        beyond = np.full(len(p), np.inf)
        for pt, nrm in self.endplates:
            d = (p - pt) @ nrm
            beyond = np.where(d > 0, np.minimum(beyond, d), beyond)
        radial = np.hypot(c["lateral"], c["ap"])
        zone = np.full(len(p), 3)  # outside
        canal_like = (c["behind"] > -1.0) & (c["behind"] <= self.depth + 1.0) & (off_mid <= self.half_width)
        zone[canal_like] = 0
        disc_like = (c["behind"] < 0.0) & (radial <= self.body_radius + 2.0) & (beyond > 0.5) & (beyond <= DISC_BAND_MM)
        zone[disc_like] = 2
        zone[lab == 3] = 2
        zone[lab == 2] = np.where(off_mid[lab == 2] > self.half_width + 1.0, 1, 0)
        counts = np.bincount(zone, minlength=4) / len(p)
        venous = float(
            ((off_mid <= VEIN_HALF_WIDTH_MM) & (c["behind"] > -1.5) & (c["behind"] <= VEIN_BEHIND_WALL_MM)).mean()
        )
        ext = lambda x, d: float(x.max() - x.min() + np.abs(self.g.axes @ d * self.g.spacing).sum())  # noqa: E731
        return {
            "canal": counts[0],
            "foramen": counts[1],
            "disc": counts[2],
            "outside": counts[3],
            "venous": venous,
            "length": ext(c["along"], self.sup),
            "width": ext(c["lateral"], self.left),
            "depth": ext(c["behind"], self.post),
        }


def decide_rule(e):
    tubular = (
        e["length"] >= VEIN_MIN_LENGTH_MM
        and e["width"] <= VEIN_MAX_WIDTH_MM
        and e["depth"] <= VEIN_MAX_DEPTH_MM
        and e["length"] >= VEIN_ELONGATION * e["width"]
    )
    in_canal = e["canal"] + e["foramen"]
    if e["venous"] >= VEIN_MIN_FRACTION and tubular:
        site, support = "posterior_vein", e["venous"]
    elif in_canal >= CANAL_MIN_FRACTION:
        site, support = "canal", min(in_canal / 0.5, 1.0)
    elif e["disc"] >= DISC_MIN_FRACTION:
        site, support = "disc", e["disc"]
    else:
        site, support = "paraspinal", e["outside"]
    foraminal = site == "canal" and e["foramen"] >= 0.25 * in_canal
    return {"site": site, "foraminal": bool(foraminal), "confidence": float(np.clip(0.5 + 0.45 * support, 0.5, 0.95))}


# ---------------------------------------------------------------- patches and the model


def extract_patch(hu, g, labels, intra_full, comp_voxels, centroid, anat) -> np.ndarray:
    sup = anat["spine_axis"] / np.linalg.norm(anat["spine_axis"])
    post = np.array([0.0, 1.0, 0.0])
    post = post - sup * (post @ sup)
    post /= np.linalg.norm(post)
    left = np.cross(post, sup)
    lateral = -left if (centroid - anat["body_centroid"]) @ left < 0 else left
    axes = np.array([sup, post, lateral])
    half = (PATCH_SIZE - 1) / 2.0
    k = (np.arange(PATCH_SIZE) - half) * PATCH_SPACING_MM
    offs = k[:, None, None, None] * axes[0] + k[None, :, None, None] * axes[1] + k[None, None, :, None] * axes[2]
    u = g.lps_to_index(centroid + offs)  # 24 x 24 x 24 x 3 scan indices
    lo = np.clip(np.floor(u.reshape(-1, 3).min(axis=0)) - 1, 0, hu.shape).astype(int)
    hi = np.clip(np.ceil(u.reshape(-1, 3).max(axis=0)) + 2, 0, hu.shape).astype(int)
    sl = tuple(slice(lo[a], hi[a]) for a in range(3))
    lab = labels[sl]
    comp = np.zeros(lab.shape, dtype=np.float32)
    v = comp_voxels - lo
    ok = np.all((v >= 0) & (v < lab.shape), axis=1)
    comp[tuple(v[ok].T)] = 1.0
    fields = [
        np.clip(np.nan_to_num(hu[sl], nan=HU_MIN), HU_MIN, HU_MAX),
        comp,
        intra_full[sl].astype(np.float32),
        (lab == 1).astype(np.float32),
        (lab == 2).astype(np.float32),
        (lab == 3).astype(np.float32),
        (lab == 4).astype(np.float32),
    ]
    local = (u - lo).reshape(-1, 3).T
    dims = np.array(lab.shape)[:, None]
    inside = np.all((local > -0.5) & (local < dims - 0.5), axis=0)
    out = np.zeros((len(fields), local.shape[1]), dtype=np.float32)
    for ch, f in enumerate(fields):
        s = ndi.map_coordinates(f, local, order=1, mode="nearest", prefilter=False)
        out[ch] = np.where(inside, s, HU_MIN if ch == 0 else 0.0)
    out[0] /= HU_SCALE
    return out.reshape(len(fields), PATCH_SIZE, PATCH_SIZE, PATCH_SIZE)


def placeholder_model(path: str) -> None:
    """TIMING ONLY: an untrained ONNX graph with the real model's input/output shapes ([N, 7, 24, 24, 24] ->
    [N, 5] softmax) and a comparable amount of compute, built with the onnx helper API. Its opinions mean
    nothing; the reference uses it only until models/leak_site.onnx is on main."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = lambda *s: rng.normal(0, 0.1, s).astype(np.float32)  # noqa: E731
    inits = [
        numpy_helper.from_array(w(16, 7, 3, 3, 3), "c1w"),
        numpy_helper.from_array(np.zeros(16, np.float32), "c1b"),
        numpy_helper.from_array(w(32, 16, 3, 3, 3), "c2w"),
        numpy_helper.from_array(np.zeros(32, np.float32), "c2b"),
        numpy_helper.from_array(w(32, 32, 3, 3, 3), "c3w"),
        numpy_helper.from_array(np.zeros(32, np.float32), "c3b"),
        numpy_helper.from_array(w(32, 5), "fw"),
        numpy_helper.from_array(np.zeros(5, np.float32), "fb"),
    ]
    conv = lambda x, wn, bn, y, s: helper.make_node(  # noqa: E731
        "Conv", [x, wn, bn], [y], kernel_shape=[3, 3, 3], pads=[1] * 6, strides=[s] * 3
    )
    nodes = [
        conv("patch", "c1w", "c1b", "a1", 1),
        helper.make_node("Relu", ["a1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2, 2], strides=[2, 2, 2]),
        conv("p1", "c2w", "c2b", "a2", 1),
        helper.make_node("Relu", ["a2"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2, 2], strides=[2, 2, 2]),
        conv("p2", "c3w", "c3b", "a3", 1),
        helper.make_node("Relu", ["a3"], ["r3"]),
        helper.make_node("GlobalAveragePool", ["r3"], ["g"]),
        helper.make_node("Flatten", ["g"], ["fl"]),
        helper.make_node("Gemm", ["fl", "fw", "fb"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "leak_site_placeholder_TIMING_ONLY",
        [helper.make_tensor_value_info("patch", TensorProto.FLOAT, ["N", 7, PATCH_SIZE, PATCH_SIZE, PATCH_SIZE])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 5])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="reference-placeholder")
    model.ir_version = 8
    onnx.checker.check_model(model)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    onnx.save(model, path)


class Model:
    def __init__(self, path: str, placeholder: bool):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        # The trained model exports `logits` (softmax applied by the caller, as in src/leaks/model.rs); the
        # placeholder exports `probabilities`.
        self.outputs_probabilities = self.session.get_outputs()[0].name == "probabilities"
        classes = self.session.get_modelmeta().custom_metadata_map.get("cementleak.classes")
        if classes is not None and [c.strip() for c in classes.split(",")] != CLASSES:
            raise ValueError(f"{path}: model classes {classes!r}, expected {','.join(CLASSES)}")
        self.placeholder = placeholder
        with open(path, "rb") as f:
            self.sha256 = hashlib.sha256(f.read()).hexdigest()
        self.path = path

    def predict(self, patches: np.ndarray) -> np.ndarray:
        out = np.asarray(self.session.run(None, {self.input: patches.astype(np.float32)})[0], dtype=np.float32)
        if not self.outputs_probabilities:
            e = np.exp(out - out.max(axis=1, keepdims=True))
            out = e / e.sum(axis=1, keepdims=True)
        return out


def fuse(rule, probs, volume_ml):
    base = dict(site=rule["site"], foraminal=rule["foraminal"], confidence=rule["confidence"], keep=True)
    base["review"] = rule["confidence"] < REVIEW_BELOW
    if probs is None:
        return base
    b = int(np.argmax(probs))
    best, p = CLASSES[b], float(probs[b])
    if best == rule["site"]:
        c = 1 - (1 - rule["confidence"]) * (1 - p)
        return {**base, "confidence": float(np.clip(c, 0, 1)), "review": c < REVIEW_BELOW}
    if best != "not_cement":
        site = best if DANGER[best] < DANGER[rule["site"]] else rule["site"]
        rs = rule["confidence"] if site == rule["site"] else 1 - rule["confidence"]
        ms = float(probs[CLASSES.index(site)])
        return {
            "site": site,
            "foraminal": site == "canal" and rule["foraminal"],
            "confidence": float(np.clip(0.5 * (rs + ms), 0, 1)),
            "review": True,
            "keep": True,
        }
    suppress = p >= NOT_CEMENT_SUPPRESS and rule["site"] != "canal" and volume_ml < SUPPRESS_MAX_ML
    ms = float(probs[CLASSES.index(rule["site"])])
    return {**base, "confidence": float(np.clip(0.5 * (rule["confidence"] + ms), 0, 1)), "review": True, "keep": not suppress}
