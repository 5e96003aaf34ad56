//! `cementleak phantom --hybrid CT --vertebra-mask FILE --vertebra-label N ...`: needle, cement and leaks
//! inserted into a real CT (see `phantom::hybrid`).

use super::phantom::{bar, build_spec, Args};
use crate::cli::InputError;
use crate::load::{load_scan, LoadOptions};
use crate::phantom::hybrid::{generate_hybrid_with, HybridInputs, HybridSpec};
use crate::phantom::{self, PhantomError};
use anyhow::Context;

pub fn run(a: Args) -> anyhow::Result<()> {
    let (Some(ct_path), Some(vm), Some(label)) = (&a.hybrid, &a.vertebra_mask, a.vertebra_label) else {
        return Err(InputError("--hybrid needs --vertebra-mask and --vertebra-label".into()).into());
    };
    // The synthetic options parse the same way (level, leaks, needles, wire, volume, steps, motion).
    let ps = build_spec(&a)?;
    let opts = LoadOptions::default();
    let ct = load_scan(ct_path, &opts)?;
    let vertebra = load_scan(vm, &opts)?.volume;
    let body = a.body_mask.as_ref().map(|p| load_scan(p, &opts)).transpose()?.map(|s| s.volume);
    let mut spec = HybridSpec::new(a.seed, label);
    spec.body_label = a.body_label;
    spec.disc_label = a.disc_label;
    spec.level = ps.level;
    spec.leak_sites = ps.leak_sites;
    spec.bilateral = ps.bilateral;
    spec.thermocouple = ps.thermocouple;
    spec.steps = ps.steps;
    spec.total_ml = ps.total_ml;
    spec.motion = ps.motion;
    let t0 = std::time::Instant::now();
    let pb = bar(1, "hybrid");
    let case = generate_hybrid_with(&HybridInputs { ct, vertebra, body }, &spec, &mut |d, n| {
        pb.set_length(n as u64);
        pb.set_position(d as u64);
    })
    .map_err(|e| match e {
        PhantomError::InvalidSpec(m) | PhantomError::Hybrid(m) => anyhow::Error::new(InputError(m)),
        o => anyhow::Error::new(o),
    })?;
    pb.finish();
    let pb = bar(case.scans.len() as u64, "write");
    phantom::write::write_case_with(&case, &a.out, &mut |d, _| pb.set_position(d as u64))
        .with_context(|| format!("writing the case to {}", a.out.display()))?;
    pb.finish();
    let s = &case.summary;
    let last = case.scans.last().map(|s| &s.truth);
    println!(
        "{}: hybrid seed {} level {} {} scans {} leaks {:?} intravertebral {:.2} mL (total {:.1} s)",
        a.out.display(),
        s.seed,
        s.level,
        s.position,
        s.scans,
        last.map(|t| t
            .leaks
            .iter()
            .map(|l| format!("{} {:.3} mL", l.site.name(), l.volume_ml))
            .collect::<Vec<_>>())
            .unwrap_or_default(),
        last.map(|t| t.intravertebral_cement_ml).unwrap_or(0.0),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
