"""Stage 1 of the Python reference: one CT series (a folder of DICOM files) -> HU volume + patient geometry.

Same conventions as `src/volume` and `src/load`: arrays are [slice, row, column]; axis 0 follows the slice
stacking direction (sorted along the slice normal), axis 1 the DICOM column direction cosine (next row),
axis 2 the row direction cosine (next column); positions are DICOM patient coordinates (LPS, mm).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pydicom


class LoadError(Exception):
    """Unusable input (the Rust CLI exits with status 2 on the same conditions)."""


@dataclass
class Geometry:
    origin: np.ndarray  # LPS of voxel [0, 0, 0]
    spacing: np.ndarray  # mm per index step along axes 0, 1, 2 (z, y, x)
    axes: np.ndarray  # 3 x 3, row a = unit LPS vector of index axis a

    @property
    def matrix(self) -> np.ndarray:
        """Columns: LPS step of one index along each axis."""
        return (self.axes * self.spacing[:, None]).T

    @property
    def inverse(self) -> np.ndarray:
        return np.linalg.inv(self.matrix)

    def index_to_lps(self, idx) -> np.ndarray:
        """`idx` (..., 3) continuous indices -> (..., 3) LPS."""
        return self.origin + np.asarray(idx, dtype=np.float64) @ self.matrix.T

    def lps_to_index(self, p) -> np.ndarray:
        return (np.asarray(p, dtype=np.float64) - self.origin) @ self.inverse.T

    def voxel_ml(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0

    def cropped(self, lo) -> "Geometry":
        return Geometry(self.index_to_lps(np.asarray(lo, dtype=np.float64)), self.spacing.copy(), self.axes.copy())


@dataclass
class Scan:
    hu: np.ndarray  # float32 [z, y, x]
    geometry: Geometry
    info: dict = field(default_factory=dict)


def _files(root: str):
    if os.path.isfile(root):
        yield root
        return
    for dirpath, _, names in os.walk(root):
        for n in sorted(names):
            yield os.path.join(dirpath, n)


def load_series(path: str) -> Scan:
    """Read every DICOM CT image under `path` (any names, any nesting) as one series."""
    if not os.path.exists(path):
        raise LoadError(f"{path}: no such file or folder")
    by_series: dict[str, list] = {}
    for f in _files(path):
        try:
            ds = pydicom.dcmread(f)
        except Exception:  # not DICOM: ignored like the Rust loader's non-DICOM files
            continue
        if "PixelData" not in ds or "ImagePositionPatient" not in ds:
            continue
        by_series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(ds)
    if not by_series:
        raise LoadError(f"{path}: no DICOM image with pixel data")
    if len(by_series) > 1:
        raise LoadError(f"{path}: {len(by_series)} series mixed in one folder")
    slices = next(iter(by_series.values()))
    if str(slices[0].get("Modality", "CT")) != "CT":
        raise LoadError(f"{path}: modality {slices[0].Modality}, not CT")

    iop = np.asarray(slices[0].ImageOrientationPatient, dtype=np.float64)
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    slices.sort(key=lambda d: float(np.dot(np.asarray(d.ImagePositionPatient, dtype=np.float64), normal)))
    pos = np.array([np.asarray(d.ImagePositionPatient, dtype=np.float64) for d in slices])

    hu = np.empty((len(slices), int(slices[0].Rows), int(slices[0].Columns)), dtype=np.float32)
    for k, d in enumerate(slices):
        slope = float(d.get("RescaleSlope", 1.0))
        intercept = float(d.get("RescaleIntercept", 0.0))
        hu[k] = d.pixel_array.astype(np.float32) * np.float32(slope) + np.float32(intercept)

    ps = [float(v) for v in slices[0].PixelSpacing]  # [row spacing, column spacing]
    if len(slices) > 1:
        span = pos[-1] - pos[0]
        gap = float(np.linalg.norm(span)) / (len(slices) - 1)
        # Stacking direction from the positions themselves: a tilted gantry gives a sheared axis 0.
        ax0 = span / np.linalg.norm(span)
    else:
        gap = float(slices[0].get("SliceThickness", 1.0))
        ax0 = normal
    geom = Geometry(
        origin=pos[0].copy(),
        spacing=np.array([gap, ps[0], ps[1]]),
        axes=np.array([ax0, col_dir, row_dir]),
    )
    d0 = slices[0]
    info = {
        "path": path,
        "study_instance_uid": str(d0.get("StudyInstanceUID", "")) or None,
        "series_instance_uid": str(d0.get("SeriesInstanceUID", "")),
        "series_number": int(d0.SeriesNumber) if d0.get("SeriesNumber") is not None else None,
        "acquisition_time": str(d0.AcquisitionTime) if d0.get("AcquisitionTime") else None,
        "shape_zyx": list(hu.shape),
        "spacing_zyx_mm": [float(v) for v in geom.spacing],
        "patient_position": str(d0.PatientPosition) if d0.get("PatientPosition") else None,
    }
    return Scan(hu=hu, geometry=geom, info=info)
