"""Stage 6 of the Python reference: the spec label map on the scan grid and the key images (as
`src/analyze/key_images.rs` + `src/render`): 120 mm views at 0.4 mm, bone window, cement and leaks outlined
by site, upscaled x2, alert and reasons written on them; axial, sagittal and coronal through the cement, and
axial + sagittal through each leak."""

from __future__ import annotations

import os
import textwrap

import numpy as np
from PIL import Image, ImageDraw

FOV_MM, PIXEL_MM, UPSCALE = 120.0, 0.4, 2
LINE_CHARS = int(FOV_MM / PIXEL_MM) * UPSCALE // 8 - 1
CEMENT, NEEDLE = 10, 20
SITE_LABEL = {"canal": 11, "posterior_vein": 12, "disc": 13, "paraspinal": 14}
OUTLINED = [CEMENT, 11, 12, 13, 14]
COLOURS = {
    1: (80, 200, 255), 2: (255, 230, 60), 3: (120, 255, 120), 4: (180, 130, 255), 10: (255, 255, 255),
    11: (255, 40, 40), 12: (255, 60, 200), 13: (255, 150, 30), 14: (255, 110, 110), 20: (140, 140, 140),
}
LEVEL_COLOURS = {"continue": (90, 230, 90), "reduce": (255, 220, 60), "pause": (255, 150, 40), "stop": (255, 50, 50)}
PLANES = {  # LPS of the image's +column and +row
    "axial": (np.array([1.0, 0, 0]), np.array([0, 1.0, 0])),
    "sagittal": (np.array([0, 1.0, 0]), np.array([0, 0, -1.0])),
    "coronal": (np.array([1.0, 0, 0]), np.array([0, 0, -1.0])),
}


def label_map(anat_labels, crop_lo, crop_shape, cement, metal, leaks) -> np.ndarray:
    out = anat_labels.copy()
    crop = tuple(slice(crop_lo[a], crop_lo[a] + crop_shape[a]) for a in range(3))
    sub = out[crop]
    sub[metal] = NEEDLE
    sub[cement] = CEMENT
    for c, site in leaks:
        sub[c["mask_crop"]] = SITE_LABEL[site]
    return out


def _view(vol, g, plane, centre, outside):
    n = int(round(FOV_MM / PIXEL_MM))
    u, v = PLANES[plane]
    d = (np.arange(n) + 0.5 - n / 2.0) * PIXEL_MM
    p = centre + d[None, :, None] * u + d[:, None, None] * v  # rows x cols x 3
    idx = np.rint(g.lps_to_index(p)).astype(np.int64)
    ok = np.all((idx >= 0) & (idx < np.array(vol.shape)), axis=-1)
    out = np.full((n, n), outside, dtype=vol.dtype)
    out[ok] = vol[idx[ok, 0], idx[ok, 1], idx[ok, 2]]
    return out


def picture(hu, g, labels, plane, centre, title, alert) -> Image.Image:
    ct = _view(hu, g, plane, centre, -1024.0)
    grey = np.clip((ct - (400.0 - 900.0)) / 1800.0, 0, 1) * 255
    rgb = np.repeat(np.rint(grey).astype(np.uint8)[..., None], 3, axis=2)
    lab = _view(labels, g, plane, centre, 0)
    pad = np.pad(lab, 1, constant_values=255)
    edge = np.zeros(lab.shape, dtype=bool)
    for dr, dc in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        edge |= pad[1 + dr : 1 + dr + lab.shape[0], 1 + dc : 1 + dc + lab.shape[1]] != lab
    for code in OUTLINED:
        rgb[edge & (lab == code)] = COLOURS[code]
    img = Image.fromarray(rgb.repeat(UPSCALE, axis=0).repeat(UPSCALE, axis=1))
    draw = ImageDraw.Draw(img)
    colour = LEVEL_COLOURS[alert["level"]]
    nxt = alert["next_aliquot_ml"]
    if nxt is None:
        nxt_s = "do not inject"
    elif abs(nxt[0] - nxt[1]) < 1e-9:
        nxt_s = f"next {nxt[0]:.1f} mL"
    else:
        nxt_s = f"next {nxt[0]:.1f}-{nxt[1]:.1f} mL"
    draw.text((2, 2), f"{alert['level'].upper()} - {nxt_s}", fill=colour, font_size=16)
    y = 22
    for reason in alert["reasons"]:
        for line in textwrap.wrap(reason, LINE_CHARS):
            draw.text((2, y), line, fill=colour)
            y += 11
    h = img.height
    draw.text((2, h - 24), f"{title} ({plane})", fill=(230, 230, 230))
    x = 2
    for name, code in [("cement", CEMENT)] + list(SITE_LABEL.items()):
        draw.text((x, h - 12), name, fill=COLOURS[code])
        x += 8 * len(name) + 12
    return img


def write_key_images(out_dir, hu, g, labels, cement_centre, body_centre, leaks, alert) -> list:
    centre, what = (cement_centre, "cement") if cement_centre is not None else (body_centre, "vertebra")
    jobs = [(f"key_{what}_{p}", p, centre, what) for p in ("axial", "sagittal", "coronal")]
    for lk in leaks:
        title = f"leak #{lk['id']} {lk['site']} {lk['volume_ml']:.3f} mL"
        for p in ("axial", "sagittal"):
            jobs.append((f"key_leak{lk['id']}_{lk['site']}_{p}", p, np.asarray(lk["centroid_lps_mm"]), title))
    names = []
    for name, plane, c, title in jobs:
        # As the Rust writer: fast deflate, through a temporary file and a rename.
        path = os.path.join(out_dir, name + ".png")
        picture(hu, g, labels, plane, c, title, alert).save(path + ".partial", format="PNG", compress_level=1)
        os.replace(path + ".partial", path)
        names.append(name + ".png")
    return names


def remove_stale(out_dir) -> None:
    """An earlier run's report and key images (as src/cli/analyze.rs does before reading anything)."""
    for name in ["report.json"] + (sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) else []):
        if name == "report.json" or (name.startswith("key_") and name.endswith((".png", ".png.partial"))):
            try:
                os.remove(os.path.join(out_dir, name))
            except FileNotFoundError:
                pass
