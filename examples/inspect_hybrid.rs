//! One hybrid case scan by scan, leak by leak: what the evaluation scores, with the evidence behind each
//! verdict (rule zone fractions and shape, model probabilities, the truth and anatomy labels under each
//! detected and each true leak). For finding why a hybrid leak was missed, misplaced or made up.
//!
//!   cargo run --example inspect_hybrid -- --series trunk --label 31 --seed 200000 --sites canal [--step 5]
//!
//! Seeds and site patterns as `scripts/evaluate.sh` gives them (hybrid seeds from 200000, one per vertebra in
//! the order trunk 31, 30, 29, 28, 27, then t12 32).

use cementleak::alert::AlertPolicy;
use cementleak::analyze::{AnalyzeInputs, Analyzer};
use cementleak::anatomy::TargetHint;
use cementleak::cement::CementComponent;
use cementleak::eval::as_scan;
use cementleak::leaks::rules::SiteFrame;
use cementleak::leaks::{LeakModel, Site};
use cementleak::load::{load_scan, LoadOptions, Scan};
use cementleak::phantom::hybrid::{generate_hybrid, HybridInputs, HybridSpec};
use cementleak::volume::{labels, LabelVolume, Lps};
use clap::Parser;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value = "trunk", value_parser = ["trunk", "t12"])]
    series: String,
    #[arg(long)]
    label: u32,
    #[arg(long)]
    seed: u64,
    /// Comma-separated leak sites (canal, posterior_vein, disc, paraspinal).
    #[arg(long, value_delimiter = ',')]
    sites: Vec<Site>,
    #[arg(long, default_value_t = 6)]
    steps: usize,
    /// Only this scan (1-based); all when absent.
    #[arg(long)]
    step: Option<usize>,
    #[arg(long, default_value = cementleak::leaks::model::DEFAULT_MODEL_PATH)]
    model: PathBuf,
    #[arg(long)]
    no_model: bool,
    #[arg(long)]
    data: Option<PathBuf>,
    /// Print a sagittal map (z down, y across) at this LPS x (mm) for each scan shown: our anatomy label /
    /// true label per point, and the CT.
    #[arg(long)]
    sagittal_x: Option<f64>,
}

/// One character per label: body B, canal C, disc D, posterior elements P, cement *, leaks c v d p, needle N.
fn ch(l: u8) -> char {
    match l {
        0 => '.',
        1 => 'B',
        2 => 'C',
        3 => 'D',
        4 => 'P',
        10 => '*',
        11 => 'c',
        12 => 'v',
        13 => 'd',
        14 => 'p',
        20 => 'N',
        _ => '?',
    }
}

fn sagittal(x: f64, centre: Lps, maps: &[(&str, &LabelVolume)], ct: &cementleak::volume::CtVolume) {
    let zs: Vec<f64> = (-10..=10).map(|k| centre.0[2] + 20.0 - 2.0 * (k + 10) as f64).collect();
    let ys: Vec<f64> = (0..40).map(|k| centre.0[1] - 30.0 + 1.5 * k as f64).collect();
    println!("   sagittal x {x:.1}: y {:.1}..{:.1} step 1.5 (left = anterior)", ys[0], ys[ys.len() - 1]);
    for z in zs {
        let mut line = format!("   z {z:7.1} ");
        for (_, m) in maps {
            for &y in &ys {
                line.push(m.at_lps(Lps([x, y, z])).map(|&l| ch(l)).unwrap_or(' '));
            }
            line.push_str("  ");
        }
        for &y in &ys {
            let v = ct.at_lps(Lps([x, y, z])).map(|&v| v as f64).unwrap_or(-1000.0);
            line.push(if v > 1000.0 {
                '#'
            } else if v > 300.0 {
                '+'
            } else if v > 150.0 {
                ':'
            } else {
                ' '
            });
        }
        println!("{line}");
    }
    println!(
        "   maps: {:?} then CT (# > 1000, + > 300, : > 150 HU)",
        maps.iter().map(|m| m.0).collect::<Vec<_>>()
    );
}

fn label_counts(map: &LabelVolume, voxels: &[[usize; 3]]) -> BTreeMap<u8, usize> {
    let mut m = BTreeMap::new();
    for v in voxels {
        *m.entry(map.data.get(*v).copied().unwrap_or(255)).or_insert(0) += 1;
    }
    m
}

fn centroid(map: &LabelVolume, voxels: &[[usize; 3]]) -> Lps {
    let n = voxels.len().max(1) as f64;
    let mut s = [0.0; 3];
    for v in voxels {
        let p = map.geometry.voxel_to_lps(*v);
        for (a, x) in s.iter_mut().zip(p.0) {
            *a += x;
        }
    }
    Lps([s[0] / n, s[1] / n, s[2] / n])
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error,jpeg2k=off,openjp2=off"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    let dir = a
        .data
        .clone()
        .or_else(|| std::env::var_os("CEMENTLEAK_DATA").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    let o = LoadOptions::default();
    let inputs = if a.series == "trunk" {
        let t = dir.join("real/totalseg-trunk");
        HybridInputs {
            ct: load_scan(&t.join("ct.nii.gz"), &o)?,
            vertebra: load_scan(&t.join("vertebrae.nii.gz"), &o)?.volume,
            body: Some(load_scan(&t.join("vertebral_bodies_and_discs.nii.gz"), &o)?.volume),
        }
    } else {
        let t = dir.join("real/totalseg-t12");
        HybridInputs {
            ct: load_scan(&t.join("dicom"), &o)?,
            vertebra: load_scan(&t.join("segmentation.nii.gz"), &o)?.volume,
            body: None,
        }
    };
    let mut spec = HybridSpec::new(a.seed, a.label);
    spec.leak_sites = Some(a.sites.clone());
    spec.steps = Some(a.steps);
    let case = generate_hybrid(&inputs, &spec)?;
    let model = if a.no_model { None } else { Some(LeakModel::load(&a.model)?) };
    let mut analyzer = Analyzer::new(AlertPolicy::default(), model);
    let pos = case.summary.position;
    let scans: Vec<Scan> =
        case.scans.iter().enumerate().map(|(k, s)| as_scan(&s.ct, &format!("scan{k}"), pos)).collect();
    let g = case.scans[0].ct.geometry;
    println!("grid spacing {:?} shape {:?}", g.spacing.zyx(), case.scans[0].ct.shape());
    for k in 1..scans.len() {
        if a.step.is_some_and(|s| s != k) {
            continue;
        }
        let truth = &case.scans[k];
        let an = analyzer.run(&AnalyzeInputs {
            scan: &scans[k],
            baseline: Some(&scans[0]),
            previous: Some(&scans[k - 1]),
            hint: TargetHint::Auto,
        })?;
        println!(
            "== scan {k}: alert {:?}, intravertebral truth {:.3} / ours {:.3} mL, wall {:?} mm (truth {:?})",
            an.report.alert.level,
            truth.truth.intravertebral_cement_ml,
            an.report.cement.intravertebral_volume_ml,
            an.report.cement.posterior_wall_distance_mm,
            truth.truth.posterior_wall_distance_mm
        );
        println!(
            "   needle tips (truth) {:?}",
            truth.truth.needle_tips_lps_mm.iter().map(|p| p.to_string()).collect::<Vec<_>>()
        );
        let Some(anat) = an.anatomy.as_ref() else {
            println!("   no anatomy");
            continue;
        };
        println!(
            "   anatomy: centroid {} wall point {} normal {:?} axis {:?}",
            anat.body_centroid, anat.posterior_wall.point, anat.posterior_wall.normal.0, anat.spine_axis.0
        );
        if let (Some(x), Ok(base)) =
            (a.sagittal_x, cementleak::anatomy::segment(&scans[0].volume, TargetHint::Auto))
        {
            println!("   baseline segmentation, our labels on the baseline grid:");
            sagittal(x, anat.body_centroid, &[("baseline", &base.labels)], &case.scans[0].ct);
        }
        if let Some(x) = a.sagittal_x {
            sagittal(
                x,
                anat.body_centroid,
                &[("ours", &anat.labels), ("output", &an.labels), ("truth", &truth.labels)],
                &truth.ct,
            );
        }
        let frame = SiteFrame::new(anat);
        for t in &truth.truth.leaks {
            let code = t.site.label();
            let vox: Vec<[usize; 3]> = truth
                .labels
                .data
                .indexed_iter()
                .filter(|(_, &l)| l == code)
                .map(|((a, b, c), _)| [a, b, c])
                .collect();
            let comp = CementComponent {
                id: 0,
                voxels: vox.clone(),
                volume_ml: t.volume_ml,
                centroid: t.centroid_lps_mm,
                max_hu: 0.0,
                touches_body: true,
                previous_ml: None,
            };
            let r = frame.classify(&anat.labels, &comp);
            println!(
                "   truth {} {:.4} mL at {} ({} vox): our anatomy labels {:?}, our output labels {:?}, \
                 true-anatomy labels {:?}; rules on truth voxels -> {} {:?}",
                t.site,
                t.volume_ml,
                t.centroid_lps_mm,
                vox.len(),
                label_counts(&anat.labels, &vox),
                label_counts(&an.labels, &vox),
                label_counts(&truth.anatomy, &vox),
                r.site,
                r.evidence
            );
        }
        for l in &an.leaks {
            let c = &l.component;
            println!(
                "   leak {} {:.4} mL at {} (vox centroid {}), max {:.0} HU, verdict {} conf {:.2} review {}; \
                 rule {} {:?}; model {:?}; truth labels {:?}; true anatomy {:?}; our anatomy {:?}",
                l.id,
                c.volume_ml,
                c.centroid,
                centroid(&truth.labels, &c.voxels),
                c.max_hu,
                l.verdict.site,
                l.verdict.confidence,
                l.verdict.review,
                l.rule.site,
                l.rule.evidence,
                l.model.map(|m| m.probabilities),
                label_counts(&truth.labels, &c.voxels),
                label_counts(&truth.anatomy, &c.voxels),
                label_counts(&anat.labels, &c.voxels)
            );
        }
        for l in &an.leaks {
            let hu = |k: usize| -> Vec<i32> {
                l.component
                    .voxels
                    .iter()
                    .take(12)
                    .map(|v| case.scans[k].ct.data.get(*v).map_or(0, |&h| h as i32))
                    .collect()
            };
            println!(
                "   leak {} HU now {:?} previous {:?} baseline {:?} (same voxel index)",
                l.id,
                hu(k),
                hu(k - 1),
                hu(0)
            );
        }
        for c in &an.suppressed {
            println!(
                "   suppressed {:.4} mL at {}; truth labels {:?}",
                c.volume_ml,
                c.centroid,
                label_counts(&truth.labels, &c.voxels)
            );
        }
        for w in &an.report.warnings {
            println!("   warning: {w}");
        }
    }
    let _ = labels::CANAL;
    Ok(())
}
