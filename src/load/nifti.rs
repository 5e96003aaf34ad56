//! NIfTI-1 reader (`.nii`, `.nii.gz`): any scalar datatype, scl_slope/scl_inter applied, to `i16` HU (rounded).
//!
//! Geometry comes from the sform when `sform_code > 0`, else from the qform when `qform_code > 0`
//! (both RAS, converted to LPS by [`Geometry::from_nifti_ras_affine`]); a file with neither gets the
//! NIfTI "method 1" grid (pixdim only) and a warning. NIfTI carries no modality: the file is assumed to be
//! CT in HU, which is what this program is given NIfTI for (exports of CT series by dcm2niix,
//! TotalSegmentator, 3D Slicer); a file that is not CT will fail later checks on its HU range.

use super::{LoadError, Scan, SeriesInfo};
use crate::volume::{hu_i16, Geometry, Volume};
use ndarray::{Array3, Axis, Ix3, Ix4};
use nifti::{InMemNiftiObject, IntoNdArray, NiftiHeader, NiftiObject, NiftiType};
use sha2::{Digest, Sha256};
use std::io::{BufRead, Read};
use std::path::Path;

/// Voxel-count ceiling: 512 x 512 x 2048 (a whole-body thin-slice CT) is 1 GiB of `i16` (2 GiB as f32 on the way); beyond that the
/// file is almost certainly not one CT series (or its header is damaged).
const MAX_VOXELS: usize = 512 * 512 * 2048;
/// Per-axis ceiling for in-plane and slice counts.
const MAX_AXIS: usize = 8192;

pub fn is_nifti_path(path: &Path) -> bool {
    let name = path.to_string_lossy().to_ascii_lowercase();
    name.ends_with(".nii") || name.ends_with(".nii.gz")
}

/// Load a single 3D NIfTI volume (a 4D file with one volume is accepted) as CT in HU.
pub fn load_nifti(path: &Path) -> Result<Scan, LoadError> {
    let err = |reason: String| LoadError::Nifti { path: path.to_path_buf(), reason };
    let meta = std::fs::metadata(path)
        .map_err(|e| LoadError::Io { path: path.to_path_buf(), reason: e.to_string() })?;
    if meta.len() == 0 {
        return Err(err("empty file (0 bytes)".into()));
    }
    let raw_header = read_raw_header(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            err("file ends inside the 348-byte header (truncated, or not NIfTI)".into())
        } else {
            err(format!("cannot read the 348-byte header: {e}"))
        }
    })?;
    let header = NiftiHeader::from_reader(&raw_header[..]).map_err(|e| err(format!("bad header: {e}")))?;
    let shape_ijk = check_shape(path, &header)?;
    let datatype =
        header.data_type().map_err(|e| err(format!("unknown datatype {}: {e}", header.datatype)))?;
    if !matches!(
        datatype,
        NiftiType::Uint8
            | NiftiType::Int8
            | NiftiType::Uint16
            | NiftiType::Int16
            | NiftiType::Uint32
            | NiftiType::Int32
            | NiftiType::Uint64
            | NiftiType::Int64
            | NiftiType::Float32
            | NiftiType::Float64
    ) {
        return Err(err(format!("datatype {datatype:?} is not a scalar CT intensity")));
    }
    if !header.scl_slope.is_finite() || !header.scl_inter.is_finite() {
        return Err(err(format!(
            "scl_slope {} / scl_inter {} are not finite",
            header.scl_slope, header.scl_inter
        )));
    }

    let mut warnings = Vec::new();
    let geometry = geometry_from_header(&header, &mut warnings).map_err(err)?;

    let source = open_maybe_gz(path).map_err(|e| err(format!("cannot open: {e}")))?;
    let obj = InMemNiftiObject::from_reader(source).map_err(|e| match e {
        nifti::NiftiError::IncompatibleLength(got, want) => {
            err(format!("file truncated: {got} voxel bytes where the header needs {want}"))
        }
        nifti::NiftiError::NoVolumeData => {
            err("header-only file (.hdr/.img pair); convert it to a single .nii".into())
        }
        e => err(format!("cannot read voxels: {e}")),
    })?;
    let data =
        obj.into_volume().into_ndarray::<f32>().map_err(|e| err(format!("cannot convert voxels: {e}")))?;
    // nifti gives (i, j, k[, t]) in Fortran order; reversing the axes is a zero-copy view change to
    // [k, j, i] in C order, which is our [slice, row, column].
    let data = match data.ndim() {
        3 => data.into_dimensionality::<Ix3>().map_err(|e| err(e.to_string()))?,
        4 => data.into_dimensionality::<Ix4>().map_err(|e| err(e.to_string()))?.index_axis_move(Axis(3), 0),
        n => return Err(err(format!("{n}-dimensional data; expected one 3D volume"))),
    };
    let data: Array3<f32> = data.reversed_axes();
    debug_assert!(data.is_standard_layout());
    if data.iter().any(|v| !v.is_finite()) {
        warnings.push("NIfTI volume contains NaN or infinite values (stored as 0 / saturated)".into());
    }
    let data: Array3<i16> = data.mapv(hu_i16);
    if data.shape() != [shape_ijk[2], shape_ijk[1], shape_ijk[0]] {
        return Err(err(format!(
            "voxel array shape {:?} disagrees with header {:?}",
            data.shape(),
            shape_ijk
        )));
    }

    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut h = Sha256::new();
    h.update(&raw_header);
    h.update(file_name.as_bytes());
    let digest = h.finalize();
    let id: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    let descrip = String::from_utf8_lossy(&header.descrip).trim_end_matches('\0').trim().to_string();
    let info = SeriesInfo {
        path: path.display().to_string(),
        study_instance_uid: None,
        series_instance_uid: format!("nifti:{id}"),
        series_number: None,
        series_description: (!descrip.is_empty()).then_some(descrip),
        acquisition_time: None,
        modality: "CT".into(),
        patient_position: None,
        encoding: "nifti".into(),
        level: None,
    };
    tracing::debug!(path = %path.display(), shape = ?data.shape(), "loaded NIfTI");
    Ok(Scan { volume: Volume::new(data, geometry), info, warnings })
}

/// The first 348 bytes (the NIfTI-1 header), decompressed when the file is gzip.
fn read_raw_header(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut reader = open_maybe_gz(path)?;
    let mut buf = vec![0u8; 348];
    reader.read_exact(&mut buf)?;
    Ok(buf)
}

/// The file's bytes, gunzipped when they are gzip (by content, not by name: `.nii` files that are really
/// compressed, and the reverse, exist in the wild).
fn open_maybe_gz(path: &Path) -> std::io::Result<Box<dyn Read>> {
    let mut f = std::io::BufReader::new(std::fs::File::open(path)?);
    let gz = f.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    Ok(if gz { Box::new(std::io::BufReader::new(flate2::bufread::GzDecoder::new(f))) } else { Box::new(f) })
}

/// Validated `(ni, nj, nk)`.
fn check_shape(path: &Path, h: &NiftiHeader) -> Result<[usize; 3], LoadError> {
    let err = |reason: String| LoadError::Nifti { path: path.to_path_buf(), reason };
    let dims = h.dim().map_err(|e| err(format!("bad dim field {:?}: {e}", h.dim)))?;
    let dims: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
    if dims.len() < 3 {
        return Err(err(format!("{}-dimensional image {:?}; expected a 3D CT volume", dims.len(), dims)));
    }
    if dims[3..].iter().any(|&d| d > 1) {
        return Err(err(format!(
            "image of shape {dims:?} holds several volumes; give a single 3D CT volume"
        )));
    }
    let ijk = [dims[0], dims[1], dims[2]];
    let total = ijk.iter().product::<usize>();
    if ijk.iter().any(|&d| d > MAX_AXIS) || total > MAX_VOXELS {
        return Err(LoadError::AbsurdSize {
            path: path.to_path_buf(),
            shape: vec![ijk[2], ijk[1], ijk[0]],
            limit: format!("{MAX_AXIS} per axis, {MAX_VOXELS} voxels"),
        });
    }
    Ok(ijk)
}

/// RAS affine chosen by the NIfTI rules (sform, then qform, then pixdim only), as LPS geometry.
fn geometry_from_header(h: &NiftiHeader, warnings: &mut Vec<String>) -> Result<Geometry, String> {
    let affine = if h.sform_code > 0 {
        let r = |row: [f32; 4]| row.map(|v| v as f64);
        [r(h.srow_x), r(h.srow_y), r(h.srow_z), [0.0, 0.0, 0.0, 1.0]]
    } else if h.qform_code > 0 {
        qform::quatern_to_affine(h)?
    } else {
        warnings.push(
            "NIfTI has no orientation (sform_code = qform_code = 0); assumed axis-aligned RAS with pixdim spacing"
                .into(),
        );
        let p = |i: usize| if h.pixdim[i] > 0.0 { h.pixdim[i] as f64 } else { 1.0 };
        [[p(1), 0.0, 0.0, 0.0], [0.0, p(2), 0.0, 0.0], [0.0, 0.0, p(3), 0.0], [0.0, 0.0, 0.0, 1.0]]
    };
    // NIFTI_UNITS_METER = 1, MM = 2, MICRON = 3; 0 (unknown) is taken as millimetres, as every CT exporter
    // we know of means it.
    let to_mm = match h.xyzt_units & 0x07 {
        1 => 1000.0,
        3 => 0.001,
        _ => 1.0,
    };
    let mut affine = affine;
    for row in affine.iter_mut().take(3) {
        for v in row.iter_mut() {
            *v *= to_mm;
        }
    }
    if affine.iter().flatten().any(|v| !v.is_finite()) {
        return Err(format!("affine has non-finite entries: {affine:?}"));
    }
    let g = Geometry::from_nifti_ras_affine(&affine)
        .ok_or_else(|| format!("affine is degenerate: {affine:?}"))?;
    let det = g.axes[0].dot(g.axes[1].cross(g.axes[2]));
    if det.abs() < 1e-3 {
        return Err(format!("affine axes are (nearly) parallel: {affine:?}"));
    }
    Ok(g)
}

/// qform quaternion <-> affine, as in the reference nifti1_io.c (`quatern_to_mat44`, `mat44_to_quatern`).
/// Written here because the nifti crate only offers these behind its `nalgebra` feature.
pub(crate) mod qform {
    use nifti::NiftiHeader;

    /// Quaternion parameters and qfac of a qform.
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub struct Quatern {
        pub b: f64,
        pub c: f64,
        pub d: f64,
        /// +1 or -1: sign applied to the third (k) column, so that the rotation is proper.
        pub qfac: f64,
    }

    /// The qform affine (RAS) of a header.
    pub fn quatern_to_affine(h: &NiftiHeader) -> Result<[[f64; 4]; 4], String> {
        let (b, c, d) = (h.quatern_b as f64, h.quatern_c as f64, h.quatern_d as f64);
        let qfac = if h.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
        let (dx, dy, dz) = (h.pixdim[1] as f64, h.pixdim[2] as f64, h.pixdim[3] as f64);
        if !(dx > 0.0 && dy > 0.0 && dz > 0.0) {
            return Err(format!("qform needs positive pixdim, got {:?}", &h.pixdim[1..4]));
        }
        let r = rotation(b, c, d);
        let s = [dx, dy, dz * qfac];
        let t = [h.quatern_x as f64, h.quatern_y as f64, h.quatern_z as f64];
        let mut m = [[0.0; 4]; 4];
        for row in 0..3 {
            for col in 0..3 {
                m[row][col] = r[row][col] * s[col];
            }
            m[row][3] = t[row];
        }
        m[3][3] = 1.0;
        Ok(m)
    }

    fn rotation(b: f64, c: f64, d: f64) -> [[f64; 3]; 3] {
        let (mut a, mut b, mut c, mut d) = (1.0 - (b * b + c * c + d * d), b, c, d);
        if a < 1e-7 {
            // Numerically a = 0: renormalise (b, c, d), a 180-degree rotation.
            let n = 1.0 / (b * b + c * c + d * d).sqrt();
            b *= n;
            c *= n;
            d *= n;
            a = 0.0;
        } else {
            a = a.sqrt();
        }
        [
            [a * a + b * b - c * c - d * d, 2.0 * (b * c - a * d), 2.0 * (b * d + a * c)],
            [2.0 * (b * c + a * d), a * a + c * c - b * b - d * d, 2.0 * (c * d - a * b)],
            [2.0 * (b * d - a * c), 2.0 * (c * d + a * b), a * a + d * d - c * c - b * b],
        ]
    }

    /// Store the qform of affine `m` in `h`: quaternion, offsets and qfac (`pixdim[0]`). The voxel sizes
    /// (`pixdim[1..4]`) are the caller's. `None` if the affine has a zero column.
    pub fn store_qform(h: &mut NiftiHeader, m: &[[f64; 4]; 4]) -> Option<()> {
        let q = affine_to_quatern(m)?;
        h.quatern_b = q.b as f32;
        h.quatern_c = q.c as f32;
        h.quatern_d = q.d as f32;
        h.quatern_x = m[0][3] as f32;
        h.quatern_y = m[1][3] as f32;
        h.quatern_z = m[2][3] as f32;
        h.pixdim[0] = q.qfac as f32;
        Some(())
    }

    /// Quaternion of the rotation part of an affine; `None` if a column is zero. A sheared affine gets the
    /// rotation of its Gram-Schmidt orthonormalised columns (the qform cannot express shear; the sform
    /// keeps it exactly).
    pub fn affine_to_quatern(m: &[[f64; 4]; 4]) -> Option<Quatern> {
        let col = |c: usize| [m[0][c], m[1][c], m[2][c]];
        let dot = |a: [f64; 3], b: [f64; 3]| a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
        let norm = |a: [f64; 3]| {
            let n = dot(a, a).sqrt();
            (n > 1e-12).then(|| a.map(|v| v / n))
        };
        let sub = |a: [f64; 3], b: [f64; 3], s: f64| [a[0] - s * b[0], a[1] - s * b[1], a[2] - s * b[2]];
        let x = norm(col(0))?;
        let y = norm(sub(col(1), x, dot(col(1), x)))?;
        let z0 = col(2);
        let z = norm(sub(sub(z0, x, dot(z0, x)), y, dot(z0, y)))?;
        // Proper rotation: flip the third column when the frame is left-handed.
        let cross = [x[1] * y[2] - x[2] * y[1], x[2] * y[0] - x[0] * y[2], x[0] * y[1] - x[1] * y[0]];
        let qfac = if dot(cross, z) < 0.0 { -1.0 } else { 1.0 };
        let z = z.map(|v| v * qfac);
        let r = [[x[0], y[0], z[0]], [x[1], y[1], z[1]], [x[2], y[2], z[2]]];
        let (r11, r12, r13) = (r[0][0], r[0][1], r[0][2]);
        let (r21, r22, r23) = (r[1][0], r[1][1], r[1][2]);
        let (r31, r32, r33) = (r[2][0], r[2][1], r[2][2]);
        let trace1 = r11 + r22 + r33 + 1.0;
        let (a, mut b, mut c, mut d);
        if trace1 > 0.5 {
            a = 0.5 * trace1.sqrt();
            b = 0.25 * (r32 - r23) / a;
            c = 0.25 * (r13 - r31) / a;
            d = 0.25 * (r21 - r12) / a;
        } else {
            let xd = 1.0 + r11 - (r22 + r33);
            let yd = 1.0 + r22 - (r11 + r33);
            let zd = 1.0 + r33 - (r11 + r22);
            if xd > 1.0 {
                b = 0.5 * xd.sqrt();
                c = 0.25 * (r12 + r21) / b;
                d = 0.25 * (r13 + r31) / b;
                a = 0.25 * (r32 - r23) / b;
            } else if yd > 1.0 {
                c = 0.5 * yd.sqrt();
                b = 0.25 * (r12 + r21) / c;
                d = 0.25 * (r23 + r32) / c;
                a = 0.25 * (r13 - r31) / c;
            } else {
                d = 0.5 * zd.sqrt();
                b = 0.25 * (r13 + r31) / d;
                c = 0.25 * (r23 + r32) / d;
                a = 0.25 * (r21 - r12) / d;
            }
            if a < 0.0 {
                b = -b;
                c = -c;
                d = -d;
            }
        }
        Some(Quatern { b, c, d, qfac })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn round_trip(m: [[f64; 4]; 4]) {
            let s = |c: usize| (m[0][c].powi(2) + m[1][c].powi(2) + m[2][c].powi(2)).sqrt();
            let mut h = NiftiHeader {
                pixdim: [1.0, s(0) as f32, s(1) as f32, s(2) as f32, 1.0, 1.0, 1.0, 1.0],
                ..NiftiHeader::default()
            };
            store_qform(&mut h, &m).expect("non-singular");
            let back = quatern_to_affine(&h).expect("valid");
            for r in 0..4 {
                for c in 0..4 {
                    assert!((back[r][c] - m[r][c]).abs() < 1e-4, "{m:?} -> {back:?}");
                }
            }
        }

        #[test]
        fn quaternion_round_trips_all_patient_positions_and_flips() {
            use crate::volume::{Geometry, Lps, PatientPosition, Spacing};
            let spacing = Spacing { slice: 2.0, row: 0.7, column: 0.9 };
            for p in PatientPosition::ALL {
                let mut g = Geometry { origin: Lps([10.0, -5.0, 3.0]), spacing, axes: p.axial_axes() };
                round_trip(g.nifti_ras_affine());
                // Slices stacked toward the feet: left-handed index frame, qfac = -1.
                g.axes[0] = g.axes[0] * -1.0;
                round_trip(g.nifti_ras_affine());
            }
            // An oblique rotation exercising the non-trace branches.
            let (c, s) = (0.3f64.cos(), 0.3f64.sin());
            round_trip([[-c, s, 0.0, 1.0], [s, c, 0.0, 2.0], [0.0, 0.0, -1.0, 3.0], [0.0, 0.0, 0.0, 1.0]]);
        }
    }
}
