"""Stage 2 of the Python reference: the treated vertebra, following `src/anatomy` (module docs and code)
step by step with numpy / scipy.ndimage equivalents. Not bit-identical (different RNG for RANSAC, scipy's
Euclidean distance transform and labelling instead of the hand-written ones), but the same steps on the same
grids, so it does the same amount of work.

1. target: needle by RANSAC on >= 2500 HU voxels; the canal line on a coarse 2 mm LPS grid (soft tissue
   enclosed by bone in 8 directions, votes, per-slice blob nearest the peak, line fit);
2. vertebra frame (superior along the canal, posterior, left) at 1.25-1.5 mm, trilinear, Gaussian 1.2 mm;
3. canal (hole in the bone ring, template where open), body axis, core profile, footprints, body/disc
   segmentation of the profile (semi-Markov DP), endplate planes, discs, posterior elements, posterior wall;
4. labels back to the scan grid (nearest neighbour).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from load import Geometry

OUTSIDE_HU = -4000.0
MISSING = OUTSIDE_HU + 0.5
CEMENT_HU = 1800.0
METAL_HU = 2500.0
NEEDLE_RADIUS_MM = 2.0
NEEDLE_MIN_LENGTH_MM = 20.0
COARSE_STEP_MM = 2.0
DENSE_HU = 150.0
CANAL_MAX_HU = 70.0
CANAL_MIN_HU = -300.0
ENCLOSURE_MM = 30.0
LINE_HALF_SPAN_MM = 25.0
FRAME_HALF_HEIGHT_MM = 48.0
FRAME_ANTERIOR_MM = 75.0
FRAME_POSTERIOR_MM = 65.0
FRAME_HALF_WIDTH_MM = 55.0
RING_HU = 110.0
POSTERIOR_BONE_HU = 150.0
FIRST_BONE_HU = 100.0
SOFT_HU = 40.0
MAX_WALL_GAP_MM = 12.0
MAX_INNER_GAP_MM = 6.0
MIN_BODY_MM, MAX_BODY_MM = 14.0, 45.0
MIN_DISC_MM, MAX_DISC_MM = 3.0, 18.0
EDGE_HALF_MM = 4.5
REFINE_MM = 5.0
CANAL_MIN_AREA, CANAL_MAX_AREA = 40.0, 900.0
RING_CLOSE_MM = 2.0
FORAMEN_REACH_MM = 10.0
MAX_LATERAL_MM = 45.0
CORTEX_ABOVE_MARROW_HU = 100.0
MAX_GAP_MM2 = 25.0
BULGE_MM = 3.0

LPS_SUP = np.array([0.0, 0.0, 1.0])
LPS_POST = np.array([0.0, 1.0, 0.0])
LPS_LEFT = np.array([1.0, 0.0, 0.0])
LPS_ANT = -LPS_POST


# ---------------------------------------------------------------- grids


@dataclass
class Frame:
    origin: np.ndarray
    axes: np.ndarray  # rows: unit LPS of index axes 0, 1, 2
    step: np.ndarray  # mm
    dims: tuple

    def index_to_lps(self, idx):
        return self.origin + (np.asarray(idx, dtype=np.float64) * self.step) @ self.axes

    def lps_to_index(self, p):
        return ((np.asarray(p, dtype=np.float64) - self.origin) @ self.axes.T) / self.step

    def voxel_ml(self):
        return float(np.prod(self.step)) / 1000.0

    def resample(self, hu: np.ndarray, g: Geometry) -> np.ndarray:
        """Trilinear sampling of the scan on this frame (OUTSIDE_HU beyond half a voxel past the edge)."""
        base = g.lps_to_index(self.origin)
        cols = np.array([g.lps_to_index(self.origin + self.axes[a] * self.step[a]) - base for a in range(3)])
        k, j, i = (np.arange(n, dtype=np.float32) for n in self.dims)
        coords = np.empty((3,) + tuple(self.dims), dtype=np.float32)
        for d in range(3):
            coords[d] = (
                base[d]
                + k[:, None, None] * cols[0, d]
                + j[None, :, None] * cols[1, d]
                + i[None, None, :] * cols[2, d]
            )
        out = ndi.map_coordinates(hu, coords, order=1, mode="nearest", prefilter=False)
        inside = np.ones(self.dims, dtype=bool)
        for d in range(3):
            inside &= (coords[d] > -0.5) & (coords[d] < hu.shape[d] - 0.5)
        out[~inside] = OUTSIDE_HU
        return out


def gaussian_missing(vol: np.ndarray, sigma) -> np.ndarray:
    """Gaussian smoothing that leaves samples outside the scan out of the average (normalised convolution)."""
    valid = vol > MISSING
    num = ndi.gaussian_filter(np.where(valid, vol, 0.0).astype(np.float32), sigma, mode="constant", truncate=3.0)
    den = ndi.gaussian_filter(valid.astype(np.float32), sigma, mode="constant", truncate=3.0)
    return np.where(valid, num / np.maximum(den, 1e-6), vol).astype(np.float32)


# ---------------------------------------------------------------- 2D morphology (distance-transform based)


def dilate(m: np.ndarray, r: float) -> np.ndarray:
    if not m.any():
        return m.copy()
    return ndi.distance_transform_edt(~m) <= r


def erode(m: np.ndarray, r: float) -> np.ndarray:
    if not m.any():
        return m.copy()
    p = np.pad(m, 1, constant_values=False)
    return (ndi.distance_transform_edt(p) > r)[1:-1, 1:-1]


def close(m: np.ndarray, r: float) -> np.ndarray:
    if not m.any():
        return m.copy()
    p = int(math.ceil(r)) + 1
    big = np.pad(m, p, constant_values=False)
    d = dilate(big, r)
    if d.all():
        return np.ones_like(m)
    e = ndi.distance_transform_edt(d) > r
    return e[p:-p, p:-p]


def open_(m: np.ndarray, r: float) -> np.ndarray:
    return dilate(erode(m, r), r)


def component_at(m: np.ndarray, seed, max_r: float) -> np.ndarray:
    lab, n = ndi.label(m)
    if n == 0:
        return np.zeros_like(m)
    h, w = m.shape
    r = int(math.ceil(max_r))
    sy, sx = int(round(seed[0])), int(round(seed[1]))
    y0, y1, x0, x1 = max(sy - r, 0), min(sy + r, h - 1), max(sx - r, 0), min(sx + r, w - 1)
    if y0 > y1 or x0 > x1:
        return np.zeros_like(m)
    win = lab[y0 : y1 + 1, x0 : x1 + 1]
    yy, xx = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
    d = np.sqrt((yy - seed[0]) ** 2 + (xx - seed[1]) ** 2)
    ok = (win > 0) & (d <= max_r)
    if not ok.any():
        return np.zeros_like(m)
    flat = np.argmin(np.where(ok, d, np.inf))
    return lab == win.flat[flat]


def quantile(v: np.ndarray, q: float):
    v = np.asarray(v).ravel()
    if v.size == 0:
        return None
    k = int(round((v.size - 1) * q))
    return float(np.partition(v, k)[k])


def median(v):
    v = np.asarray(v).ravel()
    if v.size == 0:
        return None
    k = v.size // 2
    return float(np.partition(v, k)[k])


# ---------------------------------------------------------------- target


def find_needle(hu: np.ndarray, g: Geometry):
    idx = np.argwhere(hu >= METAL_HU)
    if len(idx) < 5:
        return None
    if len(idx) > 4000:
        idx = idx[:: len(idx) // 4000 + 1]
    pts = g.index_to_lps(idx)
    rng = np.random.default_rng(7)
    best = None
    for _ in range(300):
        a, b = pts[rng.integers(len(pts))], pts[rng.integers(len(pts))]
        dv = b - a
        n = np.linalg.norm(dv)
        if n < 8.0:
            continue
        d = dv / n
        rel = pts - a
        t = rel @ d
        perp = np.linalg.norm(rel - t[:, None] * d, axis=1)
        along = np.sort(t[perp <= NEEDLE_RADIUS_MM])
        shell = t[(perp > NEEDLE_RADIUS_MM) & (perp <= 3 * NEEDLE_RADIUS_MM)]
        if along.size == 0:
            continue
        breaks = np.nonzero(np.diff(along) > 5.0)[0]
        starts = np.concatenate(([0], breaks + 1))
        ends = np.concatenate((breaks + 1, [along.size]))
        lens = along[ends - 1] - along[starts]
        r = int(np.argmax(lens))
        t0, t1 = along[starts[r]], along[ends[r] - 1]
        length = t1 - t0
        if length < NEEDLE_MIN_LENGTH_MM:
            continue
        nseg = max(int(math.ceil(length / 5.0)), 1)
        on = np.bincount(np.minimum(((along[starts[r] : ends[r]] - t0) / 5.0).astype(int), nseg - 1), minlength=nseg)
        sh = shell[(shell >= t0) & (shell <= t1)]
        off = np.bincount(np.minimum(((sh - t0) / 5.0).astype(int), nseg - 1), minlength=nseg)
        if np.count_nonzero(off <= on) < 0.5 * nseg:
            continue
        if best is None or length > best[0]:
            e0, e1 = a + d * t0, a + d * t1
            tip, entry = (e0, e1) if np.dot(e0 - e1, LPS_ANT) > 0 else (e1, e0)
            best = (length, tip, entry)
    return None if best is None else {"tip": best[1], "entry": best[2]}


def coarse_frame(hu: np.ndarray, g: Geometry, z_range) -> Frame:
    s = hu.shape
    corners = np.array([[(s[a] - 1) if (c >> a) & 1 else 0 for a in range(3)] for c in range(8)], dtype=float)
    p = g.index_to_lps(corners)
    lo, hi = p.min(axis=0), p.max(axis=0)
    if z_range is not None:
        lo[2] = max(lo[2], z_range[0])
        hi[2] = max(min(hi[2], z_range[1]), lo[2])
    sup = np.max(np.abs(g.axes @ LPS_SUP * g.spacing))
    zstep = max(COARSE_STEP_MM, min(sup, 5.0))
    step = np.array([zstep, COARSE_STEP_MM, COARSE_STEP_MM])
    extent = np.array([hi[2] - lo[2], hi[1] - lo[1], hi[0] - lo[0]])
    dims = tuple(int(math.floor(extent[a] / step[a])) + 1 for a in range(3))
    return Frame(origin=lo.copy(), axes=np.array([LPS_SUP, LPS_POST, LPS_LEFT]), step=step, dims=dims)


def enclosed_soft(vol: np.ndarray, step: float) -> np.ndarray:
    """Per slice (axis 0), soft-tissue pixels with dense bone met within ENCLOSURE_MM in all 8 directions."""
    dense = vol >= DENSE_HU
    _, h, w = vol.shape
    max_steps = int(math.ceil(ENCLOSURE_MM / step))
    count = np.zeros(vol.shape, dtype=np.uint8)
    for dy, dx in [(0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1)]:
        limit = int(math.ceil(max_steps / math.sqrt(2))) if dy and dx else max_steps
        met = np.zeros(vol.shape, dtype=bool)
        for s in range(limit + 1):
            oy, ox = s * dy, s * dx
            if abs(oy) >= h or abs(ox) >= w:
                break
            ys_dst = slice(max(0, -oy), h - max(0, oy))
            xs_dst = slice(max(0, -ox), w - max(0, ox))
            ys_src = slice(max(0, oy), h - max(0, -oy))
            xs_src = slice(max(0, ox), w - max(0, -ox))
            met[:, ys_dst, xs_dst] |= dense[:, ys_src, xs_src]
        count += met
    return (count == 8) & (vol >= CANAL_MIN_HU) & (vol < CANAL_MAX_HU)


def fit_lines(s: np.ndarray):
    if len(s) < 3 or np.var(s[:, 0]) < 1e-12:
        return s[:, 1].mean(), 0.0, s[:, 2].mean(), 0.0
    by, ay = np.polyfit(s[:, 0], s[:, 1], 1)
    bx, ax = np.polyfit(s[:, 0], s[:, 2], 1)
    return ay, by, ax, bx


def canal_line(hu: np.ndarray, g: Geometry, near: np.ndarray):
    margin = LINE_HALF_SPAN_MM + 4.0
    f = coarse_frame(hu, g, (near[2] - margin, near[2] + margin))
    vol = gaussian_missing(f.resample(hu, g), [0.0, 1.0, 1.0])
    kz = f.lps_to_index(near)[0]
    half = LINE_HALF_SPAN_MM / f.step[0]
    k0 = int(max(math.floor(kz - half), 0))
    k1 = min(int(max(math.ceil(kz + half), 0)), f.dims[0] - 1)
    if k0 > k1:
        raise AnatomyError("the point of interest is outside the scan")
    cands = enclosed_soft(vol[k0 : k1 + 1], f.step[1])
    votes = cands.sum(axis=0).astype(np.float32)
    r = int(round(6.0 / f.step[1]))
    sm = ndi.uniform_filter(votes, size=2 * r + 1, mode="constant") * (2 * r + 1) ** 2
    near_idx = f.lps_to_index(near)
    yy, xx = np.indices(sm.shape)
    score = np.where(sm > 0.01, sm - 1e-6 * ((yy - near_idx[1]) ** 2 + (xx - near_idx[2]) ** 2), -np.inf)
    if not np.isfinite(score).any():
        raise AnatomyError("no spinal canal enclosed by bone was found near the level of interest")
    py, px = np.unravel_index(np.argmax(score), score.shape)
    max_d = 12.0 / f.step[1]
    samples = []
    area_px = f.step[1] * f.step[2]
    for kk in range(cands.shape[0]):
        lab, n = ndi.label(cands[kk])
        if n == 0:
            continue
        ids = np.arange(1, n + 1)
        sizes = ndi.sum_labels(np.ones_like(lab), lab, ids)
        cy = ndi.sum_labels(yy, lab, ids) / sizes
        cx = ndi.sum_labels(xx, lab, ids) / sizes
        ok = (sizes * area_px >= 20.0) & (sizes * area_px <= 1200.0)
        d = np.hypot(cy - py, cx - px)
        ok &= d <= max_d
        if ok.any():
            b = np.argmin(np.where(ok, d, np.inf))
            samples.append((k0 + kk, cy[b], cx[b]))
    if not samples:
        raise AnatomyError("the spinal canal could not be followed")
    s = np.array(samples, dtype=np.float64)
    ay, by, ax, bx = fit_lines(s)
    if len(s) >= 4:
        res = np.hypot(ay + by * s[:, 0] - s[:, 1], ax + bx * s[:, 0] - s[:, 2])
        kept = s[res <= 4.0 / f.step[1]]
        if len(kept) >= 2:
            ay, by, ax, bx = fit_lines(kept)
    p0 = f.index_to_lps([kz, ay + by * kz, ax + bx * kz])
    p1 = f.index_to_lps([kz + 1, ay + by * (kz + 1), ax + bx * (kz + 1)])
    d = p1 - p0
    n = np.linalg.norm(d)
    return p0, (d / n if n > 1e-12 else LPS_SUP.copy())


class AnatomyError(Exception):
    pass


# ---------------------------------------------------------------- fine frame steps


@dataclass
class Fine:
    frame: Frame
    hu: np.ndarray
    raw: np.ndarray
    center: np.ndarray
    step: float

    def px(self, mm):
        return mm / self.step


@dataclass
class Canal:
    mask: np.ndarray
    enclosed: np.ndarray
    front_j: np.ndarray
    half_width: float
    center_i: float


def extent(m: np.ndarray, axis: int):
    nz = np.nonzero(m.any(axis=1 - axis))[0]
    if nz.size == 0:
        return 0.0, 0.0
    return float(nz[0]), float(nz[-1])


def segment_canal(f: Fine, dense_hu: float) -> Canal:
    nk, nj, ni = f.hu.shape
    seed = (f.center[1], f.center[2])
    holes = []
    for k in range(nk):
        sl = f.hu[k]
        ring = (sl >= dense_hu) & (sl < CEMENT_HU)
        c = close(ring, f.px(RING_CLOSE_MM))
        hole = ndi.binary_fill_holes(c) & ~c
        comp = component_at(hole, seed, f.px(8.0))
        area = comp.sum() * f.step * f.step
        holes.append(comp if CANAL_MIN_AREA <= area <= CANAL_MAX_AREA else None)
    areas = [h.sum() for h in holes if h is not None]
    typical = median(np.array(areas, dtype=np.float32)) or 0.0
    holes = [h if h is not None and h.sum() <= 1.8 * max(typical, 1.0) else None for h in holes]
    ok = [h for h in holes if h is not None]
    if ok:
        votes = np.sum(ok, axis=0)
        template = 2 * votes >= len(ok)
    else:
        jj, ii = np.indices((nj, ni))
        template = np.hypot(jj - seed[0], ii - seed[1]) <= f.px(7.0)
    tmin_i, tmax_i = extent(template, 1)
    half_width = max((tmax_i - tmin_i) / 2.0, f.px(4.0))
    center_i = (tmax_i + tmin_i) / 2.0
    tmin_j, tmax_j = extent(template, 0)
    tpl_wide = dilate(template, f.px(1.0))
    jj, ii = np.indices((nj, ni))
    band0 = (jj >= tmin_j) & (jj <= tmax_j) & (np.abs(ii - center_i) <= half_width + f.px(FORAMEN_REACH_MM))
    mask = np.zeros((nk, nj, ni), dtype=bool)
    for k in range(nk):
        if holes[k] is not None:
            mask[k] = holes[k]
            continue
        sl = f.hu[k]
        not_bone = ~((sl >= dense_hu) & (sl < CEMENT_HU))
        canal = tpl_wide & not_bone
        grown = component_at((band0 & not_bone) | canal, seed, f.px(8.0))
        mask[k] = canal | grown
    band_i = f.px(4.0)
    mid_cols = np.abs(np.arange(ni) - center_i) <= band_i
    front = np.full(nk, tmin_j)
    rows_hit = mask[:, :, mid_cols].any(axis=2)
    for k in range(nk):
        nz = np.nonzero(rows_hit[k])[0]
        if nz.size:
            front[k] = nz[0]
    return Canal(mask, np.array([h is not None for h in holes]), front, half_width, center_i)


def body_axis(f: Fine, canal: Canal):
    nk, nj, ni = f.hu.shape
    band = int(round(f.px(4.0)))
    ci = int(round(canal.center_i))
    i0, i1 = max(ci - band, 0), min(ci + band, ni - 1)
    centres, depths = [], []
    colmean = f.hu[:, :, i0 : i1 + 1].mean(axis=2)
    gap_max = f.px(MAX_INNER_GAP_MM)
    for k in range(nk):
        front = canal.front_j[k]
        max_d = min(int(math.floor(front)), nj)
        js = np.maximum(int(front) - np.arange(max_d), 0)
        prof = colmean[k, js]
        if len(prof) < 10 and (prof <= OUTSIDE_HU + 1).any():
            continue
        head = np.nonzero(prof[: int(f.px(MAX_WALL_GAP_MM)) + 1] >= FIRST_BONE_HU)[0]
        if head.size == 0:
            continue
        start = end = int(head[0])
        gap = 0
        for d in range(start, len(prof)):
            if prof[d] >= FIRST_BONE_HU:
                end, gap = d, 0
            else:
                gap += 1
                if gap > gap_max:
                    break
        depth = (end - start + 1) * f.step
        if depth >= 12.0:
            centres.append(front - (start + end) / 2.0)
            depths.append(depth)
    if not centres:
        raise AnatomyError("no bone in front of the spinal canal")
    return {"j": median(np.float32(centres)), "i": canal.center_i, "depth_mm": median(np.float32(depths))}


def core_profile(f: Fine, ax) -> list:
    r = f.px(min(max(ax["depth_mm"] / 3.0, 4.0), 9.0))
    nk, nj, ni = f.hu.shape
    j0, j1 = max(int(math.floor(ax["j"] - r)), 0), min(int(math.ceil(ax["j"] + r)), nj - 1)
    i0, i1 = max(int(math.floor(ax["i"] - r)), 0), min(int(math.ceil(ax["i"] + r)), ni - 1)
    jj, ii = np.mgrid[j0 : j1 + 1, i0 : i1 + 1]
    disc = (jj - ax["j"]) ** 2 + (ii - ax["i"]) ** 2 <= r * r
    win = f.hu[:, j0 : j1 + 1, i0 : i1 + 1][:, disc]
    out = []
    for k in range(nk):
        v = win[k]
        if v.size == 0 or (v <= OUTSIDE_HU + 1).any():
            out.append(None)
        else:
            out.append(float(np.minimum(v, CEMENT_HU).astype(np.float64).mean()))
    return out


def footprints(f: Fine, canal: Canal, ax, edge_hu: float) -> np.ndarray:
    nk, nj, ni = f.hu.shape
    semi_ap = ax["depth_mm"] / 2.0 + 6.0
    semi_lr = 0.9 * ax["depth_mm"] + 8.0
    jj, ii = np.indices((nj, ni))
    ellipse = ((jj - ax["j"]) * f.step / semi_ap) ** 2 + ((ii - ax["i"]) * f.step / semi_lr) ** 2 <= 1.0
    out = np.zeros((nk, nj, ni), dtype=bool)
    for k in range(nk):
        sl = f.hu[k]
        cw = dilate(canal.mask[k], f.px(1.0))
        wall = canal.front_j[k] + f.px(1.0)
        d = (sl >= edge_hu) & (sl < CEMENT_HU) & ~cw & (jj <= wall) & ellipse
        d = ndi.binary_fill_holes(close(d, f.px(1.5)))
        d = open_(d, f.px(2.5))
        comp = component_at(d, (ax["j"], ax["i"]), f.px(10.0))
        comp = ndi.binary_fill_holes(close(comp, f.px(2.0)))
        out[k] = comp & ~cw
    return out


@dataclass
class KPlane:
    a: float
    b: float = 0.0
    c: float = 0.0

    def at(self, j, i):
        return self.a + self.b * j + self.c * i


def fit_plane(samples: np.ndarray, fallback: KPlane, tol: float, max_slope: float) -> KPlane:
    def solve(s):
        if len(s) < 12:
            return None
        A = np.column_stack([np.ones(len(s)), s[:, 0], s[:, 1]])
        coef, *_ = np.linalg.lstsq(A, s[:, 2], rcond=None)
        return KPlane(*coef)

    p = solve(samples)
    if p is None:
        return fallback
    kept = samples[np.abs(p.at(samples[:, 0], samples[:, 1]) - samples[:, 2]) <= tol]
    p = solve(kept) or p
    if abs(p.b) > max_slope or abs(p.c) > max_slope:
        return fallback
    return p


def alternate(profile, t: float, step: float):
    """Body/disc segments of the profile (semi-Markov DP with anatomical lengths), as in discs.rs."""
    n = len(profile)
    L = lambda mm: max(int(round(mm / step)), 1)  # noqa: E731
    bmin, bmax, dmin, dmax = L(MIN_BODY_MM), L(MAX_BODY_MM), L(MIN_DISC_MM), L(MAX_DISC_MM)
    sc = [0.0 if p is None else min(max(p - t, -60.0), 60.0) for p in profile]
    cum = np.concatenate(([0.0], np.cumsum(sc))).tolist()
    NEG = -math.inf
    best = [[NEG, NEG] for _ in range(n + 1)]
    back = [[0, 0] for _ in range(n + 1)]
    for k in range(1, n + 1):
        for s in (0, 1):
            lo, hi = (bmin, bmax) if s == 1 else (dmin, dmax)
            bk, bv = 0, NEG
            for ln in range(1, min(k, hi) + 1):
                a = k - ln
                if ln < lo and not (a == 0 or k == n):
                    continue
                prev = 0.0 if a == 0 else best[a][1 - s]
                if prev == NEG:
                    continue
                seg = cum[k] - cum[a]
                v = prev + (seg if s == 1 else -seg)
                if v > bv:
                    bv, bk = v, a
            best[k][s], back[k][s] = bv, bk
    out = []
    s = 1 if best[n][1] >= best[n][0] else 0
    k = n
    while k > 0 and best[k][s] != NEG:
        a = back[k][s]
        out.append((a, k, s == 1))
        k, s = a, 1 - s
    return out[::-1]


def levels(f: Fine, ax, profile, kc: float, foot: np.ndarray):
    vals = np.array([p for p in profile if p is not None], dtype=np.float32)
    hb, hd = quantile(vals, 0.75), quantile(vals, 0.08)
    if hb is None:
        raise AnatomyError("the body axis lies outside the scan")
    nk = len(profile)
    med = quantile(vals, 0.5)
    t = (med + hd) / 2.0
    present = [k for k, p in enumerate(profile) if p is not None]
    first, last = present[0], present[-1] + 1
    segs = [(a + first, b + first, s) for a, b, s in alternate(profile[first:last], t, f.step)]
    kci = max(int(round(kc)), 0)
    bodies = [s for s in range(len(segs)) if segs[s][2]]
    if not bodies:
        raise AnatomyError("no vertebral body along the spine near the level of interest")

    def dist(s):
        a, b, _ = segs[s]
        return 0 if a <= kci < b else min(abs(a - kci), abs(b - 1 - kci))

    ti = min(bodies, key=dist)
    target = segs[ti][:2]
    bottom0, top0 = target[0] - 0.5, target[1] - 0.5
    body_level = quantile(np.array([p for p in profile[target[0] : target[1]] if p is not None]), 0.5) or hb
    up = segs[ti + 1] if ti + 1 < len(segs) and not segs[ti + 1][2] else None
    dn = segs[ti - 1] if ti >= 1 and not segs[ti - 1][2] else None
    up_end = up[1] - 0.5 if up else None
    dn_end = dn[0] - 0.5 if dn else None
    next_up = up is not None and up[1] < last
    next_dn = dn is not None and dn[0] > first

    mid = min((target[0] + target[1]) // 2, nk - 1)
    cj, ci = np.nonzero(foot[mid])
    keep = np.hypot(cj - ax["j"], ci - ax["i"]) * f.step < ax["depth_mm"] * 0.6
    cj, ci = cj[keep], ci[keep]
    w = int(round(f.px(REFINE_MM)))
    half = max(int(round(f.px(EDGE_HALF_MM))), 1)
    min_step = 0.2 * max(body_level - hd, 10.0)
    colv = np.clip(f.hu[:, cj, ci], hd - 50.0, body_level + 150.0).astype(np.float64)  # nk x ncol
    cum = np.vstack([np.zeros((1, colv.shape[1])), np.cumsum(colv, axis=0)])
    outside = (f.raw[:, cj, ci] <= OUTSIDE_HU + 1).astype(np.int32)
    cum_out = np.vstack([np.zeros((1, outside.shape[1]), dtype=np.int32), np.cumsum(outside, axis=0)])

    def edges(frm: float, high_below: bool):
        b0 = int(round(frm + 0.5))
        best = np.full(colv.shape[1], -np.inf)
        best_b = np.zeros(colv.shape[1])
        for b in range(b0 - w, b0 + w + 1):
            if b - half < 0 or b + half > nk:
                continue
            bad = (cum_out[b + half] - cum_out[b - half]) > 0
            below = (cum[b] - cum[b - half]) / half
            above = (cum[b + half] - cum[b]) / half
            st = below - above if high_below else above - below
            st = np.where(bad, -np.inf, st)
            better = st > best
            best = np.where(better, st, best)
            best_b = np.where(better, b, best_b)
        ok = best >= min_step
        return np.column_stack([cj[ok], ci[ok], best_b[ok] - 0.5]).astype(np.float64)

    def fit(frm, high_below):
        p = fit_plane(edges(frm, high_below), KPlane(frm), f.px(2.0), 0.3)
        return KPlane(frm) if abs(p.at(ax["j"], ax["i"]) - frm) > w else p

    top = fit(top0, True)
    bottom = fit(bottom0, False)
    min_disc = f.px(MIN_DISC_MM)
    top_c, bottom_c = top.at(ax["j"], ax["i"]), bottom.at(ax["j"], ax["i"])
    above = below = None
    if up_end is not None:
        p = fit(up_end, False) if next_up else KPlane(up_end)
        above = KPlane(max(up_end, top_c + min_disc)) if p.at(ax["j"], ax["i"]) < top_c + min_disc else p
    if dn_end is not None:
        p = fit(dn_end, True) if next_dn else KPlane(dn_end)
        below = KPlane(min(dn_end, bottom_c - min_disc)) if p.at(ax["j"], ax["i"]) > bottom_c - min_disc else p
    return {"bottom": bottom, "top": top, "below_end": below, "above_end": above, "body_hu": body_level}


def posterior_elements(f: Fine, canal: Canal, body, k_lo, k_hi, bone_hu):
    nk, nj, ni = f.hu.shape
    k0 = int(max(math.ceil(k_lo), 0))
    k1 = min(int(max(math.floor(k_hi), 0)), nk - 1)
    cand = np.zeros((nk, nj, ni), dtype=bool)
    near = np.zeros((nk, nj, ni), dtype=bool)
    jj, ii = np.indices((nj, ni))
    lat_ok = np.abs(ii - canal.center_i) <= f.px(MAX_LATERAL_MM)
    for k in range(k0, k1 + 1):
        near[k] = dilate(canal.mask[k], f.px(3.0))
        cand[k] = (jj >= canal.front_j[k] - f.px(1.0)) & lat_ok & (f.hu[k] >= bone_hu) & ~canal.mask[k] & ~body[k]
    lab, n = ndi.label(cand)
    if n == 0:
        return cand
    keep = np.zeros(n + 1, dtype=bool)
    keep[np.unique(lab[near & (lab > 0)])] = True
    keep[0] = False
    return keep[lab]


def posterior_wall(f: Fine, canal: Canal, body, k_lo, k_hi, marrow_hu, voxel):
    nk, nj, ni = f.hu.shape
    h = k_hi - k_lo
    k0 = int(max(math.ceil(k_lo + 0.1 * h), 0))
    k1 = min(int(max(math.floor(k_hi - 0.1 * h), 0)), nk - 1)
    i0 = int(max(math.floor(canal.center_i - canal.half_width), 0))
    i1 = min(int(math.ceil(canal.center_i + canal.half_width)), ni - 1)
    if k0 > k1 or i0 > i1:
        return None
    sub = body[k0 : k1 + 1, :, i0 : i1 + 1]  # k, j, i
    has = sub.any(axis=1)
    lastj = nj - 1 - np.argmax(sub[:, ::-1, :], axis=1)
    grid = np.where(has, lastj, np.nan).astype(np.float64)
    if not has.any():
        return None
    med_j = median(grid[has].astype(np.float32))
    normal = f.frame.axes[1]
    point = f.frame.index_to_lps([(k0 + k1) / 2.0, med_j + 0.5, canal.center_i])
    ka, ib = np.nonzero(has)
    js = grid[ka, ib]
    pts = f.frame.index_to_lps(np.column_stack([ka + k0, js + 0.5, ib + i0]))
    back, fwd = int(math.ceil(f.px(2.0))), int(math.ceil(f.px(3.0)))
    peaks = np.full(len(js), -np.inf, dtype=np.float32)
    for o in range(-back, fwd + 1):
        q = np.clip(js.astype(int) + o, 0, nj - 1)
        peaks = np.maximum(peaks, f.raw[ka + k0, q, ib + i0])
    defect = np.zeros(grid.shape, dtype=bool)
    bulge = np.zeros(grid.shape, dtype=bool)
    defect[ka, ib] = peaks < marrow_hu + CORTEX_ABOVE_MARROW_HU
    bulge[ka, ib] = (js - med_j) * f.step > BULGE_MM

    def largest(m):
        lab, n = ndi.label(m)
        return 0.0 if n == 0 else float(np.bincount(lab.ravel())[1:].max()) * f.step * f.step

    ld, lb = largest(defect), largest(bulge)
    judgeable = voxel[0] <= 1.2 and voxel[1] <= 3.0
    return {
        "points": pts,
        "normal": normal,
        "point": point,
        "defect_fraction": float(defect.sum()) / len(js),
        "intact": (ld < MAX_GAP_MM2 and lb < MAX_GAP_MM2) if judgeable else None,
    }


def labels_to_scan(frame: Frame, lab: np.ndarray, shape, g: Geometry) -> np.ndarray:
    """Nearest-neighbour transfer of the frame labels to the scan grid (0 outside the frame)."""
    corners = np.array([[frame.dims[a] if (c >> a) & 1 else -1 for a in range(3)] for c in range(8)], float)
    q = g.lps_to_index(frame.index_to_lps(corners))
    lo = np.clip(np.floor(q.min(axis=0)), 0, shape).astype(int)
    hi = np.clip(np.ceil(q.max(axis=0)) + 1, 0, shape).astype(int)
    out = np.zeros(shape, dtype=np.uint8)
    if (hi <= lo).any():
        return out
    # scan index -> frame index is affine.
    A = (frame.axes @ g.matrix) / frame.step[:, None]
    b = (frame.axes @ (g.origin - frame.origin)) / frame.step + A @ lo
    out[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = ndi.affine_transform(
        lab, A, b, output_shape=tuple(hi - lo), order=0, mode="constant", cval=0
    )
    return out


# ---------------------------------------------------------------- the whole stage


def segment(hu: np.ndarray, g: Geometry) -> dict:
    t_all = time.perf_counter()
    timings = {}
    warnings = []
    t = time.perf_counter()
    needle = find_needle(hu, g)
    centre = g.index_to_lps((np.array(hu.shape) - 1.0) / 2.0)
    p, source = (needle["tip"], "needle") if needle else (centre, "scan_centre")
    line_pt, ax0 = canal_line(hu, g, p)
    timings["target_ms"] = (time.perf_counter() - t) * 1e3

    t = time.perf_counter()
    a1 = LPS_POST - ax0 * np.dot(LPS_POST, ax0)
    a1 = a1 / np.linalg.norm(a1)
    a2 = np.cross(a1, ax0)
    level_pt = line_pt + ax0 * np.dot(p - line_pt, ax0)
    step = float(np.clip(min(g.spacing[1], g.spacing[2]), 1.25, 1.5))
    dims = (
        int(2 * FRAME_HALF_HEIGHT_MM / step) + 1,
        int((FRAME_ANTERIOR_MM + FRAME_POSTERIOR_MM) / step) + 1,
        int(2 * FRAME_HALF_WIDTH_MM / step) + 1,
    )
    origin = level_pt - ax0 * FRAME_HALF_HEIGHT_MM - a1 * FRAME_ANTERIOR_MM - a2 * FRAME_HALF_WIDTH_MM
    frame = Frame(origin, np.array([ax0, a1, a2]), np.full(3, step), dims)
    raw = frame.resample(hu, g)
    smooth = gaussian_missing(raw, [1.2 / step] * 3)
    center = np.array([FRAME_HALF_HEIGHT_MM, FRAME_ANTERIOR_MM, FRAME_HALF_WIDTH_MM]) / step
    f = Fine(frame, smooth, raw, center, step)
    timings["resample_ms"] = (time.perf_counter() - t) * 1e3

    t = time.perf_counter()
    canal = segment_canal(f, RING_HU)
    if not canal.enclosed.any():
        warnings.append("the spinal canal is not enclosed by bone in any slice; canal shape assumed")
    ax = body_axis(f, canal)
    profile = core_profile(f, ax)
    marrow0 = quantile(np.array([v for v in profile if v is not None], np.float32), 0.75) or 200.0
    edge_hu = float(np.clip((marrow0 + SOFT_HU) / 2.0, 70.0, 200.0))
    foot = footprints(f, canal, ax, edge_hu)
    lv = levels(f, ax, profile, f.center[0], foot)
    nk, nj, ni = dims
    kk, jj, ii = np.indices(dims, dtype=np.float64)
    lab = np.zeros(dims, dtype=np.uint8)
    body = foot & (kk > lv["bottom"].at(jj, ii)) & (kk < lv["top"].at(jj, ii))
    lab[body] = 1
    if not body.any():
        raise AnatomyError("empty body cross-section")

    def disc_foot(near: KPlane, inward: float):
        kc = near.at(ax["j"], ax["i"])
        acc = np.zeros((nj, ni), dtype=bool)
        for d in (1, 2, 3):
            k = round(kc + inward * d)
            if 0 <= k < nk:
                acc |= foot[int(k)]
        return ndi.binary_fill_holes(close(acc, f.px(2.0)))

    for near, far, up in ((lv["top"], lv["above_end"], True), (lv["bottom"], lv["below_end"], False)):
        if far is None:
            continue
        fp = disc_foot(near, -1.0 if up else 1.0)
        a, b = near.at(jj, ii), far.at(jj, ii)
        inside = (kk > a) & (kk < b) if up else (kk < a) & (kk > b)
        sel = (lab == 0) & fp[None] & ~canal.mask & (f.raw > OUTSIDE_HU + 1.0) & inside
        lab[sel] = 3
    b_lo, b_hi = lv["bottom"].at(ax["j"], ax["i"]), lv["top"].at(ax["j"], ax["i"])
    quarter = 0.25 * (b_hi - b_lo)
    k_lo = min(lv["below_end"].at(ax["j"], ax["i"]) if lv["below_end"] else b_lo, b_lo - quarter)
    k_hi = max(lv["above_end"].at(ax["j"], ax["i"]) if lv["above_end"] else b_hi, b_hi + quarter)
    sel = canal.mask & (lab == 0) & (kk >= k_lo) & (kk <= k_hi)
    lab[sel] = 2
    height = (b_hi - b_lo) * step
    post = posterior_elements(
        f, canal, body, b_lo - 0.3 * (b_hi - b_lo), b_hi + 0.15 * (b_hi - b_lo), max(POSTERIOR_BONE_HU, edge_hu)
    )
    lab[post & (lab == 0)] = 4
    voxel = (max(g.spacing[1], g.spacing[2]), abs(g.spacing[0]))
    marrow = f.hu[body & (f.hu >= -100.0) & (f.hu < 600.0)]
    marrow_hu = median(marrow) if marrow.size else lv["body_hu"]
    wall = posterior_wall(f, canal, body, b_lo, b_hi, marrow_hu, voxel)
    if wall is None:
        raise AnatomyError("no posterior wall behind the body")
    timings["segment_ms"] = (time.perf_counter() - t) * 1e3

    t = time.perf_counter()
    scan_labels = labels_to_scan(frame, lab, hu.shape, g)
    bidx = np.argwhere(scan_labels == 1)
    if len(bidx) == 0:
        raise AnatomyError("the body falls outside the scan grid")
    centroid = g.index_to_lps(bidx.mean(axis=0))
    body_ml = float(body.sum()) * frame.voxel_ml()
    timings["to_scan_ms"] = (time.perf_counter() - t) * 1e3
    timings["total_ms"] = (time.perf_counter() - t_all) * 1e3

    def plane(pl: KPlane, sign: float):
        point = frame.index_to_lps([pl.at(ax["j"], ax["i"]), ax["j"], ax["i"]])
        n = ax0 - a1 * pl.b - a2 * pl.c
        return point, sign * n / np.linalg.norm(n)

    endplates = {"superior": plane(lv["top"], 1.0), "inferior": plane(lv["bottom"], -1.0)}
    return {
        "labels": scan_labels,
        "body_centroid": centroid,
        "body_volume_ml": body_ml,
        "wall": wall,
        "height_mm": height,
        "target_source": source,
        "needle_tip": needle["tip"] if needle else None,
        "spine_axis": ax0,
        "frame": frame,
        "endplates": endplates,
        "timings": timings,
        "warnings": warnings,
    }
