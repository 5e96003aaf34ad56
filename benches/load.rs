//! Loading benchmark (release build: `cargo bench --bench load`).
//!
//! Series: the real 20-slice JPEG 2000 series (`real/totalseg-t12/dicom`, skipped when the shared data is
//! absent) and an uncompressed explicit-VR-little-endian 512 x 512 x 60 series written here to a temp dir.
//! For each, in the same run, the I/O floor = the time to read the same files' bytes (page cache warm),
//! both sequentially and in parallel (rayon, like the loader). Prints the median of repeated runs and the
//! ratio load / floor; the goal is uncompressed load within 3x of the I/O floor.
//!
//! For reading the ratio, one more line (not part of the floor): the time to get a fresh output volume of the
//! same size from the kernel and touch each of its pages once, in parallel, with the same huge-page hint the
//! loader gives. The loader pays this (the kernel zeroes every fresh page on first touch); the floor, which
//! reads into buffers malloc hands back from earlier iterations, does not.

#[path = "../tests/load_synth/mod.rs"]
mod load_synth;

use cementleak::load::dicom::load_dicom;
use cementleak::load::LoadOptions;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Instant;

const RUNS: usize = 15;

fn files_of(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect();
    v.sort();
    v
}

fn median_ms(mut f: impl FnMut()) -> f64 {
    f();
    f();
    let mut t: Vec<f64> = (0..RUNS)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[RUNS / 2]
}

fn bench(name: &str, dir: &Path) {
    let files = files_of(dir);
    let bytes: u64 = files.iter().map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum();
    let seq = median_ms(|| {
        for p in &files {
            std::hint::black_box(std::fs::read(p).expect("read"));
        }
    });
    let par = median_ms(|| {
        files.par_iter().for_each(|p| {
            std::hint::black_box(std::fs::read(p).expect("read"));
        })
    });
    let load = median_ms(|| {
        std::hint::black_box(load_dicom(dir, &LoadOptions::default()).expect("load"));
    });
    let voxels = load_dicom(dir, &LoadOptions::default()).expect("load").volume.data.len();
    let touch = median_ms(|| {
        let mut v = vec![0f32; voxels];
        advise_huge_pages(&v);
        // One write per 4 KiB page faults every page in, as the decoders' first writes do.
        v.par_chunks_mut(1 << 18).for_each(|c| c.iter_mut().step_by(1024).for_each(|x| *x = 1.0));
        std::hint::black_box(&v);
    });
    println!(
        "{name}: {} files, {:.1} MB | read sequential {seq:.1} ms | read parallel {par:.1} ms | load {load:.1} ms | load/read_seq {:.2}x | load/read_par {:.2}x",
        files.len(),
        bytes as f64 / 1e6,
        load / seq,
        load / par
    );
    println!(
        "{name}: fresh {:.0} MB output, first touch {touch:.1} ms = {:.2}x read_par (inside load); load without it {:.2}x read_par",
        voxels as f64 * 4.0 / 1e6,
        touch / par,
        (load - touch) / par
    );
}

/// The loader's hint (src/load/dicom/buffer.rs): transparent huge pages for the volume.
fn advise_huge_pages(v: &[f32]) {
    let start = v.as_ptr() as usize;
    let first = start.next_multiple_of(4096);
    let end = (start + std::mem::size_of_val(v)) / 4096 * 4096;
    if end > first {
        // SAFETY: a page-aligned range inside the live allocation; a hint that leaves contents unchanged.
        unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE) };
    }
}

fn main() {
    // `cargo test --benches` runs this with --bench absent; only run when asked to benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    println!("threads: {}", rayon::current_num_threads());
    let tmp = tempfile::tempdir().expect("tempdir");
    for k in 0..60 {
        let mut s = load_synth::Slice::axial("1.2.826.0.1.3680043.9.7.1", 1.25 * k as f64, 512);
        s.instance = k + 1;
        s.write(&tmp.path().join(format!("slice{k:03}.dcm")));
    }
    bench("uncompressed 512x512x60", tmp.path());
    let real = std::env::var_os("CEMENTLEAK_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"))
        .join("real/totalseg-t12/dicom");
    if real.exists() {
        bench("jpeg2000 512x512x20 (totalseg-t12)", &real);
    } else {
        println!("SKIP: {} not found (set CEMENTLEAK_DATA)", real.display());
    }
}
