//! Posterior elements: bone behind the posterior wall (pedicles, laminae, transverse, articular and spinous
//! processes) that is connected to the ring around this vertebra's canal, over the vertebra's height (the
//! laminae and inferior processes hang lower than the body, so the range extends below it).

use super::canal::Canal;
use super::context::Fine;
use super::morphology::{dilate, label3};
use ndarray::{Array3, Axis, Zip};

/// Transverse processes reach about 40–45 mm from the midline (lumbar).
const MAX_LATERAL_MM: f64 = 45.0;

pub fn segment(
    f: &Fine,
    canal: &Canal,
    body: &Array3<bool>,
    k_lo: f64,
    k_hi: f64,
    bone_hu: f32,
) -> Array3<bool> {
    let [nk, nj, ni] = f.dims();
    let lat = f.px(MAX_LATERAL_MM);
    let k0 = k_lo.ceil().max(0.0) as usize;
    let k1 = (k_hi.floor().max(0.0) as usize).min(nk.saturating_sub(1));
    let mut cand = Array3::<bool>::from_elem((nk, nj, ni), false);
    let mut near_canal = Array3::<bool>::from_elem((nk, nj, ni), false);
    // Slices in parallel: each is filled from its own inputs only.
    Zip::indexed(cand.axis_iter_mut(Axis(0))).and(near_canal.axis_iter_mut(Axis(0))).par_for_each(
        |k, mut cand_k, mut near_k| {
            if k < k0 || k > k1 {
                return;
            }
            let ring = dilate(&canal.mask.index_axis(Axis(0), k).to_owned(), f.px(3.0) as f32);
            near_k.assign(&ring);
            let front = canal.front_j[k] - f.px(1.0);
            for j in 0..nj {
                if (j as f64) < front {
                    continue;
                }
                for i in 0..ni {
                    if (i as f64 - canal.center_i).abs() > lat {
                        continue;
                    }
                    let v = f.hu[(k, j, i)];
                    cand_k[(j, i)] = v >= bone_hu && !canal.mask[(k, j, i)] && !body[(k, j, i)];
                }
            }
        },
    );
    let (lab, sizes) = label3(&cand);
    let mut keep = vec![false; sizes.len()];
    ndarray::Zip::from(&lab).and(&near_canal).for_each(|&l, &n| {
        if l > 0 && n {
            keep[l as usize] = true;
        }
    });
    lab.mapv(|l| l > 0 && keep[l as usize])
}
