//! Stage 3 on a full-size series: 512 x 512 x 40 scan, baseline and previous scan (0.7 mm pixels, 2.5 mm
//! slices, prone), with motion between them. `cargo bench --bench cement`; the median is printed by
//! criterion and saved in target/criterion/cement_detect/.../estimates.json.

#[path = "../tests/cement_support/mod.rs"]
mod cement_support;

use cement_support::{pose, render, standard_grid, Scene};
use cementleak::cement::{detect, CementInputs, CementParams};
use cementleak::volume::{Lps, PatientPosition};
use criterion::{criterion_group, criterion_main, Criterion};
use std::time::Duration;

fn bench(c: &mut Criterion) {
    cementleak::cli::init_logging();
    let centre = Lps([12.0, -30.0, 410.0]);
    let (g, dims) = standard_grid(PatientPosition::Hfp, 512, centre);
    let base = render(&Scene::baseline(), g, dims, &pose(centre, [0.0, 0.0, 1.0], 0.0, [0.0; 3]), 1);
    let prev = render(&Scene::earlier(), g, dims, &pose(centre, [1.0, 0.2, 0.0], 0.7, [-0.4, 0.3, 0.5]), 2);
    let now = render(&Scene::injected(), g, dims, &pose(centre, [0.3, -0.5, 1.0], 1.0, [0.6, -0.5, 0.62]), 3);
    let inputs = CementInputs {
        scan: &now.ct,
        baseline: Some(&base.ct),
        previous: Some(&prev.ct),
        body: &now.body,
        canal: None,
    };
    let params = CementParams::default();
    match detect(&inputs, &params) {
        Ok(f) => eprintln!(
            "check: intravertebral {:.3} mL (truth {:.3}), {} leaks (truth {}), new {:?} mL",
            f.intravertebral_ml,
            now.truth.intravertebral_ml,
            f.leaks.len(),
            now.truth.leak_ml.len(),
            f.new_since_previous_ml
        ),
        Err(e) => panic!("detection failed: {e}"),
    }
    let mut group = c.benchmark_group("cement_detect");
    group.sample_size(20).measurement_time(Duration::from_secs(20));
    group.bench_function("512x512x40_scan_baseline_previous", |b| b.iter(|| detect(&inputs, &params)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
