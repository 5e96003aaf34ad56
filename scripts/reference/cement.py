"""Stage 3 of the Python reference: new PMMA on the scan, following `src/cement` with numpy/scipy.

crop around the body (30 mm) -> rigid registration of baseline and previous (robust Gauss-Newton on ~6000
bone-edge points, coarse-to-fine over Gaussian-smoothed copies, Huber weights, backtracking) -> trilinear
resampling onto the crop -> metal lines (26-components >= 2800 HU, RANSAC + PCA, thin-run test) ->
hysteresis (seed >= 1000 HU and +700 HU over baseline, grow >= 500 HU and +350 HU) -> partial-volume
fractions -> intravertebral cement and 26-connected leak components, each with its previous-scan volume.
"""

from __future__ import annotations

import math
import time

import numpy as np
from scipy import ndimage as ndi

from load import Geometry

P = dict(
    roi_margin_mm=30.0,
    seed_hu=1000.0,
    seed_rise_hu=700.0,
    grow_hu=500.0,
    grow_rise_hu=350.0,
    no_baseline_seed_hu=1500.0,
    no_baseline_grow_hu=1000.0,
    cortex_shell_mm=2.0,
    metal_hu=2800.0,
    needle_radius_mm=1.2,
    metal_margin_mm=1.0,
    min_line_length_mm=8.0,
    body_tolerance_mm=1.0,
    min_leak_ml=0.01,
    min_cement_voxels=2,
    previous_margin_mm=1.0,
    registration_points=6000,
    max_motion_mm=10.0,
    max_motion_deg=8.0,
)
S26 = np.ones((3, 3, 3), dtype=bool)
FULL_FRACTION = 0.7
MIN_CONTRAST = 300.0
RING_MM = 3.0


def radius_voxels(g: Geometry, mm: float, minimum: int):
    return [max(int(round(max(mm / s, 0.0))), minimum) for s in g.spacing]


def box_dilate(m: np.ndarray, r) -> np.ndarray:
    if not any(r):
        return m.copy()
    return ndi.binary_dilation(m, structure=np.ones([2 * v + 1 for v in r], dtype=bool))


def box_erode(m: np.ndarray, r) -> np.ndarray:
    # Outside the crop counts as inside the mask (the crop never cuts the body).
    return ndi.binary_erosion(m, structure=np.ones([2 * v + 1 for v in r], dtype=bool), border_value=1)


def q_round(v: np.ndarray, q: float) -> float:
    v = np.asarray(v).ravel()
    if v.size == 0:
        return float("nan")
    k = int(round((v.size - 1) * q))
    return float(np.partition(v, k)[k])


# ---------------------------------------------------------------- rigid transforms


def rodrigues(w):
    th = float(np.linalg.norm(w))
    if th < 1e-15:
        return np.eye(3)
    k = np.asarray(w) / th
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(th) * K + (1 - math.cos(th)) * K @ K


class Rigid:
    def __init__(self, R=None, t=None):
        self.R = np.eye(3) if R is None else R
        self.t = np.zeros(3) if t is None else t

    def apply(self, p):
        return p @ self.R.T + self.t

    @staticmethod
    def about(c, w, shift):
        R = rodrigues(w)
        return Rigid(R, c - R @ c + shift)

    def after(self, first: "Rigid") -> "Rigid":
        return Rigid(self.R @ first.R, self.R @ first.t + self.t)

    def rotation_deg(self):
        return math.degrees(math.acos(np.clip((np.trace(self.R) - 1) / 2, -1, 1)))

    def to_json(self):
        return {"rotation": self.R.tolist(), "translation": self.t.tolist()}


# ---------------------------------------------------------------- trilinear sampling with gradient


class Sampler:
    def __init__(self, data: np.ndarray, g: Geometry):
        self.d = data
        self.g = g
        self.inv = g.inverse

    def index(self, p):
        return (p - self.g.origin) @ self.inv.T

    def _cells(self, u):
        n = np.array(self.d.shape)
        ok = np.all((u >= -0.5) & (u <= n - 0.5), axis=1)
        uc = np.clip(u, 0, n - 1)
        i0 = np.minimum(np.floor(uc).astype(np.int64), np.maximum(n - 2, 0))
        f = uc - i0
        return ok, i0, f

    def value_grad(self, p, grad=True):
        u = self.index(p)
        ok, i0, f = self._cells(u)
        d = self.d
        z0, y0, x0 = i0[:, 0], i0[:, 1], i0[:, 2]
        z1, y1, x1 = z0 + 1, y0 + 1, x0 + 1
        fz, fy, fx = f[:, 0], f[:, 1], f[:, 2]
        c000, c001, c010, c011 = d[z0, y0, x0], d[z0, y0, x1], d[z0, y1, x0], d[z0, y1, x1]
        c100, c101, c110, c111 = d[z1, y0, x0], d[z1, y0, x1], d[z1, y1, x0], d[z1, y1, x1]
        c00 = c000 + (c001 - c000) * fx
        c01 = c010 + (c011 - c010) * fx
        c10 = c100 + (c101 - c100) * fx
        c11 = c110 + (c111 - c110) * fx
        c0 = c00 + (c01 - c00) * fy
        c1 = c10 + (c11 - c10) * fy
        v = c0 + (c1 - c0) * fz
        if not grad:
            return ok, v
        dz = c1 - c0
        dy = (c01 - c00) * (1 - fz) + (c11 - c10) * fz
        dx = ((c001 - c000) * (1 - fy) + (c011 - c010) * fy) * (1 - fz) + (
            (c101 - c100) * (1 - fy) + (c111 - c110) * fy
        ) * fz
        gr = np.column_stack([dz, dy, dx]) @ self.inv
        return ok, v, gr


def smooth(data: np.ndarray, sigma_vox) -> np.ndarray:
    return ndi.gaussian_filter(data, sigma_vox, mode="nearest", truncate=3.0)


def jitter(n: int) -> np.ndarray:
    """Deterministic offsets in [-0.5, 0.5) voxel, the same 64-bit mix as register.rs."""
    with np.errstate(over="ignore"):
        x = np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15) ^ np.uint64(0xD1B54A32D192ED03)
        out = np.empty((n, 3))
        for a in range(3):
            x ^= x >> np.uint64(33)
            x = x * np.uint64(0xFF51AFD7ED558CCD)
            x ^= x >> np.uint64(29)
            out[:, a] = (x >> np.uint64(11)).astype(np.float64) / float(1 << 53) - 0.5
    return out


def grow_box(lo, hi, m, shape):
    return [max(lo[a] - m[a], 0) for a in range(3)], [min(hi[a] + m[a], shape[a] - 1) for a in range(3)]


def register(fixed: np.ndarray, g: Geometry, body_box, moving: np.ndarray, mg_full: Geometry):
    """Map of current-scan LPS -> moving-scan LPS, or raises RuntimeError (then identity is used)."""
    COARSE, FINE, MINV = 2.0, 0.7, 1.0
    ilo, ihi = grow_box(body_box[0], body_box[1], radius_voxels(g, 10.0, 1), fixed.shape)
    pad = [int(math.ceil(3 * max(COARSE / s, MINV))) + 1 for s in g.spacing]
    lo, hi = grow_box(ilo, ihi, pad, fixed.shape)
    fdata = fixed[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1, lo[2] : hi[2] + 1]
    fg = g.cropped(lo)
    # Moving box: the fixed box mapped to the moving grid, padded for motion.
    corners = np.array([[(fdata.shape[a] - 1) if (c >> a) & 1 else 0 for a in range(3)] for c in range(8)], float)
    u = mg_full.lps_to_index(fg.index_to_lps(corners))
    padm = np.ceil(min(P["max_motion_mm"], 5.0) / mg_full.spacing) + 2
    ml = np.maximum(np.floor(u.min(axis=0) - padm), 0).astype(int)
    mh = np.minimum(np.ceil(u.max(axis=0) + padm), np.array(moving.shape) - 1).astype(int)
    if (mh < ml).any():
        raise RuntimeError("the earlier scan does not cover the vertebra")
    mdata = moving[ml[0] : mh[0] + 1, ml[1] : mh[1] + 1, ml[2] : mh[2] + 1]
    mg = mg_full.cropped(ml)

    near_hyper = box_dilate(fdata >= 1800.0, radius_voxels(fg, 3.0, 1))
    sig = lambda mm, sp: [max(mm / s, MINV) for s in sp]  # noqa: E731
    fsm_fine = smooth(fdata, sig(FINE, fg.spacing))
    inner = np.zeros(fdata.shape, dtype=bool)
    inner[
        ilo[0] - lo[0] : ihi[0] - lo[0] + 1, ilo[1] - lo[1] : ihi[1] - lo[1] + 1, ilo[2] - lo[2] : ihi[2] - lo[2] + 1
    ] = True
    cand = np.argwhere((fdata >= 150.0) & (fdata <= 1500.0) & ~near_hyper & inner)
    if len(cand) < 200:
        raise RuntimeError(f"only {len(cand)} bone voxels near the body to register on")
    # Gradient at voxel centres (trilinear gradient at a node: forward differences).
    ok, _, gr = Sampler(fsm_fine, fg).value_grad(fg.index_to_lps(cand.astype(float)))
    mag = np.where(ok, np.linalg.norm(gr, axis=1), -1.0)
    n = min(P["registration_points"], len(cand))
    top = np.argpartition(-mag, n - 1)[:n]
    pts = fg.index_to_lps(cand[top] + jitter(n))
    centre = pts.mean(axis=0)

    t = Rigid()
    identity_cost = None
    final_cost = math.inf

    def residuals(ms, fvals, tr):
        ok, v = ms.value_grad(tr.apply(pts), grad=False)
        return ok & np.isfinite(fvals), v - fvals

    def med_abs(ms, fvals, tr):
        ok, r = residuals(ms, fvals, tr)
        return float(np.median(np.abs(r[ok]))) if ok.any() else math.inf

    def cost(ms, fvals, tr, h):
        ok, r = residuals(ms, fvals, tr)
        a = np.abs(r)
        c = np.where(a <= h, 0.5 * a * a, h * (a - 0.5 * h))
        return float(np.where(ok, c, 4 * h * h).sum()) / len(pts)

    for level, sigma in enumerate((COARSE, FINE)):
        fsm = fsm_fine if level == 1 else smooth(fdata, sig(sigma, fg.spacing))
        ms = Sampler(smooth(mdata, sig(sigma, mg.spacing)), mg)
        okf, fv = Sampler(fsm, fg).value_grad(pts, grad=False)
        fvals = np.where(okf, fv, np.nan).astype(np.float64)
        if level == 1:
            identity_cost = med_abs(ms, fvals, Rigid())
        huber = 1.5 * 1.4826 * med_abs(ms, fvals, t) + 1e-3
        c = cost(ms, fvals, t, huber)
        max_iter, tol = (25, 5e-3) if level == 0 else (40, 1e-3)
        for _ in range(max_iter):
            q = t.apply(pts)
            okm, m, gq = ms.value_grad(q)
            ok = okm & np.isfinite(fvals)
            if ok.sum() < max(len(pts) // 5, 50):
                raise RuntimeError("the earlier scan does not overlap the vertebra")
            r = (m - fvals)[ok]
            J = np.column_stack([np.cross(q[ok] - t.apply(centre), gq[ok]), gq[ok]])
            w = np.where(np.abs(r) <= huber, 1.0, huber / np.maximum(np.abs(r), 1e-12))
            H = (J * w[:, None]).T @ J
            H[np.diag_indices(6)] *= 1 + 1e-3
            H[np.diag_indices(6)] += 1e-9
            try:
                step = np.linalg.solve(H, -(J * (w * r)[:, None]).sum(axis=0))
            except np.linalg.LinAlgError:
                raise RuntimeError("registration is ill-conditioned") from None
            accepted = None
            for alpha in (1.0, 0.5, 0.25, 0.125):
                dw, dt = step[:3] * alpha, step[3:] * alpha
                cand_t = Rigid.about(t.apply(centre), dw, dt).after(t)
                cc = cost(ms, fvals, cand_t, huber)
                if cc < c:
                    accepted = (cand_t, cc, np.linalg.norm(dt), np.linalg.norm(dw))
                    break
            if accepted is None:
                break
            t, c = accepted[0], accepted[1]
            if accepted[2] < tol and accepted[3] < tol / 50:
                break
        if level == 1:
            final_cost = med_abs(ms, fvals, t)
    shift = float(np.linalg.norm(t.apply(centre) - centre))
    angle = t.rotation_deg()
    if not (math.isfinite(shift) and math.isfinite(angle)):
        raise RuntimeError("registration diverged")
    if shift > P["max_motion_mm"] or angle > P["max_motion_deg"]:
        raise RuntimeError(f"registration found {shift:.1f} mm / {angle:.1f} degrees, beyond what is expected")
    if identity_cost is not None and final_cost > identity_cost * 1.05 + 1.0:
        raise RuntimeError("registration did not improve the match")
    return t


def resample_onto(moving: np.ndarray, mg: Geometry, t: Rigid, cg: Geometry, shape) -> np.ndarray:
    """The moving scan at t(p) for every crop voxel p (trilinear); NaN beyond half a voxel outside it."""
    # crop index -> LPS -> moved LPS -> moving index is one affine map.
    A = mg.inverse @ t.R @ cg.matrix
    b = mg.inverse @ (t.R @ cg.origin + t.t - mg.origin)
    v = ndi.affine_transform(moving, A, b, output_shape=shape, order=1, mode="nearest", prefilter=False)
    padded = np.pad(np.ones(moving.shape, dtype=np.uint8), 1)
    inside = ndi.affine_transform(padded, A, b + 1, output_shape=shape, order=0, mode="constant", cval=0)
    return np.where(inside > 0, v, np.nan).astype(np.float32)


# ---------------------------------------------------------------- metal


def seg_offset(a, b, p):
    ab = b - a
    l2 = float(ab @ ab)
    tt = np.clip(((p - a) @ ab) / l2, 0, 1) if l2 > 0 else np.zeros(len(p))
    return p - (a + tt[:, None] * ab)


def fit_metal_lines(allp: np.ndarray, base, cg: Geometry, shape, rng):
    r_in = P["needle_radius_mm"] + P["metal_margin_mm"]
    remaining = allp.copy()
    out = []
    stride = max(len(allp) // 3000, 1)
    sub = allp[::stride]
    for _ in range(4):
        if len(remaining) < 4:
            break
        i = rng.integers(len(remaining), size=300)
        j = rng.integers(len(remaining), size=300)
        d = remaining[j] - remaining[i]
        nd = np.linalg.norm(d, axis=1)
        good = nd >= 3.0
        if not good.any():
            break
        c, d = remaining[i][good], d[good] / nd[good][:, None]
        rel = sub[None, :, :] - c[:, None, :]  # L x N x 3
        tt = np.einsum("lnk,lk->ln", rel, d)
        rad = np.linalg.norm(rel - tt[..., None] * d[:, None, :], axis=2)
        score = (rad <= r_in).sum(axis=1) - ((rad > r_in) & (rad <= r_in + RING_MM)).sum(axis=1)
        b = int(np.argmax(score))
        lc, ld = c[b], d[b]
        for _ in range(3):  # PCA refinement on the inliers
            rel = remaining - lc
            rad = np.linalg.norm(rel - np.outer(rel @ ld, ld), axis=1)
            inl = remaining[rad <= r_in]
            if len(inl) < 3:
                lc = None
                break
            lc = inl.mean(axis=0)
            w, v = np.linalg.eigh(np.cov((inl - lc).T))
            nv = v[:, -1]
            ld = nv if nv @ ld >= 0 else -nv
        if lc is None:
            break
        seg = thin_run(allp, lc, ld, r_in, base, cg, shape)
        if seg is None:
            break
        out.append(seg)
        remaining = remaining[np.linalg.norm(seg_offset(seg[0], seg[1], remaining), axis=1) > r_in]
    return out


def thin_run(allp, c, d, r_in, base, cg: Geometry, shape):
    w = max(1.0, float(cg.spacing.max()))
    rel = allp - c
    t = rel @ d
    rad = np.linalg.norm(rel - np.outer(t, d), axis=1)
    tin = t[rad <= r_in]
    if tin.size == 0 or tin.max() <= tin.min():
        return None
    tmin, tmax = tin.min(), tin.max()
    nb = int(math.floor((tmax - tmin) / w)) + 1
    inr = (t >= tmin) & (t <= tmax)
    bins = np.minimum(((t - tmin) / w).astype(np.int64), nb - 1)
    cyl = np.bincount(bins[inr & (rad <= r_in)], minlength=nb)
    ring = np.bincount(bins[inr & (rad > r_in) & (rad <= r_in + RING_MM)], minlength=nb)
    thin = (cyl > 0) & (ring * 2 <= cyl)
    best, start = (0, 0), 0
    for b in range(nb + 1):
        if b == nb or not thin[b]:
            if b - start > best[1] - best[0]:
                best = (start, b)
            start = b + 1
    lo, hi = best
    if (hi - lo) * w < P["min_line_length_mm"]:
        return None

    def was_metal(b):
        if base is None:
            return True
        p = c + d * (tmin + (b + 0.5) * w)
        v = np.rint(cg.lps_to_index(p)).astype(int)
        if (v < 0).any() or (v >= np.array(shape)).any():
            return False
        x = base[tuple(v)]
        return bool(np.isnan(x) or x >= P["metal_hu"] * 0.5)

    while lo > 0 and cyl[lo - 1] > 0 and was_metal(lo - 1):
        lo -= 1
    while hi < nb and cyl[hi] > 0 and was_metal(hi):
        hi += 1
    t0, t1 = tmin + lo * w, min(tmin + hi * w, tmax)
    return c + d * t0, c + d * t1


def detect_metal(img, base, cg: Geometry, shape):
    sat = img >= P["metal_hu"]
    lab, n = ndi.label(sat, structure=S26)
    rng = np.random.default_rng(0x5EED3E7A1)
    segments = []
    if n:
        objs = ndi.find_objects(lab)
        for k, sl in enumerate(objs, start=1):
            idx = np.argwhere(lab[sl] == k) + np.array([s.start for s in sl])
            if len(idx) < 4:
                continue
            segments += fit_metal_lines(cg.index_to_lps(idx.astype(float)), base, cg, shape, rng)
    core = np.zeros(shape, dtype=bool)
    band = np.zeros(shape, dtype=bool)
    if base is not None:
        core |= sat & (base >= P["metal_hu"])
    r_core = P["needle_radius_mm"]
    r_all = r_core + P["metal_margin_mm"]
    edges = cg.axes * cg.spacing[:, None]
    max_half = float(cg.spacing.max()) / 2
    for a, b in segments:
        ua, ub = cg.lps_to_index(a), cg.lps_to_index(b)
        m = (r_all + max_half) / cg.spacing + 1
        lo = np.maximum(np.floor(np.minimum(ua, ub) - m), 0).astype(int)
        hi = np.minimum(np.ceil(np.maximum(ua, ub) + m), np.array(shape) - 1).astype(int)
        if (hi < lo).any():
            continue
        idx = np.indices(hi - lo + 1).reshape(3, -1).T + lo
        off = seg_offset(a, b, cg.index_to_lps(idx.astype(float)))
        dist = np.linalg.norm(off, axis=1)
        u = off / np.maximum(dist, 1e-12)[:, None]
        half = np.where(dist > 1e-12, np.abs(u @ edges.T).sum(axis=1) / 2, 0.0)
        zc, yc, xc = idx.T
        incore = dist <= r_core
        core[zc[incore], yc[incore], xc[incore]] = True
        inband = ~incore & (dist <= r_all + half)
        band[zc[inband], yc[inband], xc[inband]] = True
    band &= ~core
    return core, band, segments


# ---------------------------------------------------------------- cement mask, fractions, split


def cement_mask(img, base, metal, band, cortex):
    needs_density = base is None or np.isnan(base).any()
    valid = ~metal & ~np.isnan(img)
    if base is not None:
        hasb = ~np.isnan(base)
        rise = img - np.where(hasb, base, 0)
        seed_b = ~band & (img >= P["seed_hu"]) & (rise >= P["seed_rise_hu"])
        grow_b = (img >= P["grow_hu"]) & (rise >= np.where(band, P["seed_rise_hu"], P["grow_rise_hu"]))
    else:
        hasb = np.zeros(img.shape, dtype=bool)
        seed_b = grow_b = hasb
    if needs_density:
        dense = (img >= P["no_baseline_seed_hu"]) & ~metal
        thick = ndi.binary_dilation(ndi.binary_erosion(dense, S26, border_value=1), S26)
        allowed = ~cortex | thick
        seed_n = allowed & ~band & (img >= P["no_baseline_seed_hu"])
        grow_n = allowed & (img >= np.where(band, P["no_baseline_seed_hu"], P["no_baseline_grow_hu"]))
    else:
        seed_n = grow_n = np.zeros(img.shape, dtype=bool)
    seed = valid & np.where(hasb, seed_b, seed_n)
    grow = valid & np.where(hasb, grow_b, grow_n)
    lab, n = ndi.label(grow | seed, structure=S26)
    keep = np.zeros(n + 1, dtype=bool)
    keep[np.unique(lab[seed])] = True
    keep[0] = False
    mask = keep[lab]
    lab, n = ndi.label(mask, structure=S26)
    sizes = np.bincount(lab.ravel())
    small = sizes < P["min_cement_voxels"]
    small[0] = False
    mask &= ~small[lab]
    return mask


def interior(mask):
    m = np.pad(mask, 1, constant_values=False)
    out = mask.copy()
    for ax in range(3):
        for s in (1, -1):
            out &= np.roll(m, s, axis=ax)[1:-1, 1:-1, 1:-1]
    return out


def cement_density(img, cement, fallback):
    core = img[cement & interior(cement)]
    if core.size >= 8:
        return q_round(core, 0.95)
    if cement.any():
        return max(q_round(img[cement], 0.9), fallback)
    return fallback


def tissue_median(img, cement, metal, body, inside, max_hu):
    flat = slice(None, None, 3)
    i, c, m, b = img.ravel()[flat], cement.ravel()[flat], metal.ravel()[flat], body.ravel()[flat]
    v = i[(b == inside) & ~c & ~m & (i >= -200) & (i <= max_hu)]
    return q_round(v, 0.5) if v.size else (200.0 if inside else 40.0)


def fraction_map(img, base, cement, metal, body, cg, density):
    shell = box_dilate(cement, radius_voxels(cg, 1.0, 1))
    bg_in = tissue_median(img, cement, metal, body, True, 700.0)
    bg_out = tissue_median(img, cement, metal, body, False, 300.0)
    b = np.where(body, bg_in, bg_out).astype(np.float32)
    if base is not None:
        b = np.where(np.isnan(base), b, base)
    f = np.clip((img - b) / np.maximum(density - b, MIN_CONTRAST), 0, 1)
    f = np.where((cement | (shell & ~metal)) & ~np.isnan(img), f, 0.0)
    full = cement & (f >= FULL_FRACTION) & interior(cement)
    return np.where(full, 1.0, f).astype(np.float32)


def split(img, cement, frac, region, cg: Geometry, prev_frac):
    ml = cg.voxel_ml()
    leak_vox = cement & ~region
    comp, nc = ndi.label(leak_vox, structure=S26)
    label = np.where(cement & region, 1, 0).astype(np.int32)
    label[comp > 0] = comp[comp > 0] + 1
    win = [2 * v + 1 for v in radius_voxels(cg, 1.0, 1)]
    free = lambda: (label == 0) & ~cement & (frac > 0)  # noqa: E731
    leak_lab = np.where(cement & (label >= 2), label, 0)
    d = ndi.grey_dilation(leak_lab, size=win)
    sel = free() & ~region & (d > 0)
    label[sel] = d[sel]
    d = ndi.binary_dilation(cement & (label == 1), np.ones(win, dtype=bool))
    label[free() & d] = 1
    d = ndi.grey_dilation(leak_lab, size=win)
    sel = free() & (d > 0)
    label[sel] = d[sel]

    nl = nc + 2
    sel = (label > 0) & (frac > 0)
    lsel = label[sel]
    w = frac[sel].astype(np.float64)
    vol = np.bincount(lsel, weights=w, minlength=nl) * ml
    lps = cg.index_to_lps(np.argwhere(sel).astype(float))
    wsum = np.stack([np.bincount(lsel, weights=w * lps[:, a], minlength=nl) for a in range(3)], axis=1)
    kept = cement.copy()
    near_region = ndi.binary_dilation(region, S26)
    pwin = np.ones([2 * v + 1 for v in radius_voxels(cg, P["previous_margin_mm"], 1)], dtype=bool)
    leaks = []
    objs = ndi.find_objects(comp)
    for k in range(nc):
        m = comp == k + 1
        l = k + 2
        if vol[l] < P["min_leak_ml"]:
            kept &= ~m
            continue
        prev_ml = None
        if prev_frac is not None:
            sl = tuple(slice(max(s.start - 2, 0), s.stop + 2) for s in objs[k])
            grown = ndi.binary_dilation(m[sl], pwin)
            prev_ml = float(prev_frac[sl][grown & ~region[sl]].sum()) * ml
        leaks.append(
            {
                "voxels": np.argwhere(m),
                "mask_crop": m,
                "volume_ml": float(vol[l]),
                "centroid": wsum[l] / (vol[l] / ml),
                "max_hu": float(img[m].max()),
                "touches_body": bool((m & near_region).any()),
                "previous_ml": prev_ml,
            }
        )
    leaks.sort(key=lambda x: -x["volume_ml"])
    for i, lk in enumerate(leaks):
        lk["id"] = i + 1
    return {"cement": kept, "intravertebral": cement & region, "intravertebral_ml": float(vol[1]), "leaks": leaks}


def detect(scan_hu, g: Geometry, body_full: np.ndarray, baseline=None, previous=None) -> dict:
    """`baseline`/`previous`: (hu, geometry) or None. Returns findings on the crop plus its placement."""
    timings = {}
    t0 = time.perf_counter()
    warnings = []
    nz = np.argwhere(body_full)
    if len(nz) == 0:
        raise ValueError("the vertebral body mask is empty")
    blo, bhi = nz.min(axis=0), nz.max(axis=0)
    lo, hi = grow_box(blo, bhi, radius_voxels(g, P["roi_margin_mm"], 1), scan_hu.shape)
    crop = tuple(slice(lo[a], hi[a] + 1) for a in range(3))
    img = np.nan_to_num(scan_hu[crop], nan=-1024.0).astype(np.float32)
    body = body_full[crop]
    cg = g.cropped(lo)
    shape = img.shape
    body_box = (blo - np.array(lo), bhi - np.array(lo))

    def bring(vol, what):
        if vol is None:
            return None
        hu, mg = vol
        try:
            t = register(img, cg, body_box, hu, mg)
        except RuntimeError as e:
            warnings.append(f"{what} registration failed ({e}); compared without motion correction")
            t = Rigid()
        res = resample_onto(hu, mg, t, cg, shape)
        outside = int(np.isnan(res).sum())
        if outside * 20 > res.size:
            warnings.append(f"{what} scan covers only {100 * (1 - outside / res.size):.0f}% of the region")
        return t, res

    base = bring(baseline, "baseline")
    prev = bring(previous, "previous")
    timings["register_ms"] = (time.perf_counter() - t0) * 1e3
    if base is None:
        warnings.append("no baseline scan: cement found from density, shape and anatomy alone")
    base_img = base[1] if base else None
    t1 = time.perf_counter()
    core, band, segments = detect_metal(img, base_img, cg, shape)
    cortex = body & ~box_erode(body, radius_voxels(cg, P["cortex_shell_mm"], 1))
    cement = cement_mask(img, base_img, core, band, cortex)
    density = cement_density(img, cement, 2000.0)
    metal = core | (band & ~cement)
    frac = fraction_map(img, base_img, cement, metal, body, cg, density)
    prev_frac = None
    if prev is not None:
        pimg = prev[1]
        pc = cement_mask(pimg, base_img, core, band, cortex)
        pd = cement_density(pimg, pc, density)
        pm = core | (band & ~pc)
        prev_frac = fraction_map(pimg, base_img, pc, pm, body, cg, pd)
    region = box_dilate(body, radius_voxels(cg, P["body_tolerance_mm"], 0))
    sp = split(img, cement, frac, region, cg, prev_frac)
    total = sp["intravertebral_ml"] + sum(l["volume_ml"] for l in sp["leaks"])
    new_ml = None
    if prev_frac is not None:
        before = float(prev_frac.astype(np.float64).sum()) * cg.voxel_ml()
        if total - before < -0.2:
            warnings.append(f"the previous scan shows more cement ({before:.2f} mL) than this one ({total:.2f} mL)")
        new_ml = max(total - before, 0.0)
    timings["detect_ms"] = (time.perf_counter() - t1) * 1e3
    return {
        "crop_lo": np.array(lo),
        "crop_geometry": cg,
        "crop_shape": shape,
        "img": img,
        "cement": sp["cement"],
        "metal": metal,
        "intravertebral": sp["intravertebral"],
        "intravertebral_ml": sp["intravertebral_ml"],
        "leaks": sp["leaks"],
        "total_ml": total,
        "new_ml": new_ml,
        "baseline_registration": base[0] if base else None,
        "previous_registration": prev[0] if prev else None,
        "metal_segments": segments,
        "density": density,
        "warnings": warnings,
        "timings": timings,
    }
