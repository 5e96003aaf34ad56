//! Loading benchmark (release build: `cargo bench --bench load`).
//!
//! Series: the real 20-slice JPEG 2000 series (`real/totalseg-t12/dicom`, skipped when the shared data is
//! absent) and an uncompressed explicit-VR-little-endian 512 x 512 x 60 series written here to a temp dir
//! and flushed to disk (`sync_all`), so that no writeback runs while we measure. That series is measured
//! twice: as written (page cache as dicom-rs's writes left it) and after its pages were dropped and read
//! back from disk once; the kernel caches the two differently, which moves the floor and the load.
//!
//! The I/O floor is the fastest way we know to bring the same files' bytes into memory, page cache warm, in
//! parallel (rayon, like the loader): the faster of reading each file into a fresh `Vec` (`std::fs::read`)
//! and reading it into a buffer each thread reuses. Sequential reading is printed for reference.
//!
//! The loader reads each uncompressed 16-bit file's samples straight into its slice of the volume and
//! rescales them there (src/load/dicom/direct.rs). The floor stays a plain read, what the acceptance line
//! asks ("the time to read the same files' bytes"). For honesty one more reference line is printed, not
//! part of the floor: mapping each file (populated) and reading every byte through the map, in parallel,
//! and the load's ratio to that.
//!
//! The machine this runs on is shared and its load changes within seconds, so the cases are measured in
//! interleaved rounds (floor, load, floor, ... in one round, then the next round) and the ratio is taken per
//! round: its median compares load and floor under the same load. Medians of the times are printed too.
//!
//! One more line, for reading the ratio (not part of the floor): the time to get a fresh output volume of the
//! same size from the kernel and touch each of its pages once, in parallel, with the same huge-page hint the
//! loader gives. The loader pays this (the kernel zeroes every fresh page on first touch); the floor, whose
//! buffers come back from the allocator's free lists, does not. The volume is i16 (src/volume says why):
//! the f32 volume of sessions 1-6 paid twice this zeroing and twice the writes, 4.3-6x the floor in all.
//!
//! `LOAD_BENCH_PROFILE=N cargo bench --bench load` only loads the uncompressed series N times (for `perf`).

#[path = "../tests/load_synth/mod.rs"]
mod load_synth;

use cementleak::load::dicom::load_dicom;
use cementleak::load::LoadOptions;
use rayon::prelude::*;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

const ROUNDS: usize = 15;
const WARMUP: usize = 2;

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

fn ms(f: &mut dyn FnMut()) -> f64 {
    let t0 = Instant::now();
    f();
    t0.elapsed().as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bench(name: &str, dir: &Path) {
    let files = files_of(dir);
    let bytes: u64 = files.iter().map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum();
    let voxels = load_dicom(dir, &LoadOptions::default()).expect("load").volume.data.len();
    let mut read_seq = || {
        for p in &files {
            std::hint::black_box(std::fs::read(p).expect("read"));
        }
    };
    let mut read_par = || {
        files.par_iter().for_each(|p| {
            std::hint::black_box(std::fs::read(p).expect("read"));
        })
    };
    let mut read_reuse = || {
        files.par_iter().for_each_init(Vec::new, |buf: &mut Vec<u8>, p| {
            buf.clear();
            std::fs::File::open(p).and_then(|mut f| f.read_to_end(buf)).expect("read");
            std::hint::black_box(&buf);
        })
    };
    let mut load = || {
        std::hint::black_box(load_dicom(dir, &LoadOptions::default()).expect("load"));
    };
    let mut map_read = || {
        files.par_iter().for_each(|p| {
            let f = std::fs::File::open(p).expect("open");
            // SAFETY: a private read-only map of a file nobody truncates during the benchmark.
            let m = unsafe { memmap2::MmapOptions::new().populate().map(&f) }.expect("mmap");
            let sum = m.chunks_exact(8).fold(0u64, |a, c| {
                a.wrapping_add(u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            });
            std::hint::black_box(sum);
        })
    };
    let mut headers = || {
        std::hint::black_box(cementleak::load::dicom::scan::scan(dir).expect("scan"));
    };
    let mut touch = || {
        // The loader's buffer: zeroed, with the same huge-page hint (`volume::huge`).
        let mut a = cementleak::volume::huge::zeroed::<i16>([voxels, 1, 1]);
        let v = a.as_slice_mut().expect("standard layout");
        // One write per 4 KiB page faults every page in, as the decoders' first writes do.
        v.par_chunks_mut(1 << 19).for_each(|c| c.iter_mut().step_by(2048).for_each(|x| *x = 1));
        std::hint::black_box(&v);
    };
    // [seq, par, reuse, load, touch, headers, map_read] per round.
    let mut rounds: Vec<[f64; 7]> = Vec::new();
    for r in 0..WARMUP + ROUNDS {
        let t = [
            ms(&mut read_seq),
            ms(&mut read_par),
            ms(&mut read_reuse),
            ms(&mut load),
            ms(&mut touch),
            ms(&mut headers),
            ms(&mut map_read),
        ];
        if r >= WARMUP {
            rounds.push(t);
        }
    }
    let col = |i: usize| median(rounds.iter().map(|t| t[i]).collect());
    let floor = |t: &[f64; 7]| t[1].min(t[2]);
    let ratio = median(rounds.iter().map(|t| t[3] / floor(t)).collect());
    let ratio_seq = median(rounds.iter().map(|t| t[3] / t[0]).collect());
    let ratios: Vec<f64> = rounds.iter().map(|t| t[3] / floor(t)).collect();
    let (lo, hi) = ratios.iter().fold((f64::MAX, 0f64), |(l, h), r| (l.min(*r), h.max(*r)));
    let touch_ratio = median(rounds.iter().map(|t| t[4] / floor(t)).collect());
    println!(
        "{name}: {} files, {:.1} MB, {ROUNDS} rounds | read sequential {:.1} ms | read parallel {:.1} ms | read parallel reused buffers {:.1} ms | floor {:.1} ms | load {:.1} ms | load/floor median {ratio:.2}x (rounds {lo:.2}-{hi:.2}x) | load/read_seq {ratio_seq:.2}x",
        files.len(),
        bytes as f64 / 1e6,
        col(0),
        col(1),
        col(2),
        median(rounds.iter().map(floor).collect()),
        col(3),
    );
    println!(
        "{name}: fresh {:.0} MB output, first touch {:.1} ms = {touch_ratio:.2}x floor (inside load); load without it {:.2}x floor; header scan {:.1} ms = {:.2}x floor (inside load)",
        voxels as f64 * 2.0 / 1e6,
        col(4),
        median(rounds.iter().map(|t| (t[3] - t[4]) / floor(t)).collect()),
        col(5),
        median(rounds.iter().map(|t| t[5] / floor(t)).collect()),
    );
    println!(
        "{name}: reference, not the floor: map + read every byte {:.1} ms = {:.2}x floor, load/that {:.2}x",
        col(6),
        median(rounds.iter().map(|t| t[6] / floor(t)).collect()),
        median(rounds.iter().map(|t| t[3] / t[6]).collect()),
    );
}

fn main() {
    // `cargo test --benches` runs this with --bench absent; only run when asked to benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    println!("threads: {}", rayon::current_num_threads());
    if let Ok(l) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average: {}", l.trim());
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    for k in 0..60 {
        let mut s = load_synth::Slice::axial("1.2.826.0.1.3680043.9.7.1", 1.25 * k as f64, 512);
        s.instance = k + 1;
        let path = tmp.path().join(format!("slice{k:03}.dcm"));
        s.write(&path);
        std::fs::File::open(&path).and_then(|f| f.sync_all()).expect("sync");
    }
    if let Ok(n) = std::env::var("LOAD_BENCH_PROFILE") {
        for _ in 0..n.parse::<usize>().unwrap_or(100) {
            std::hint::black_box(load_dicom(tmp.path(), &LoadOptions::default()).expect("load"));
        }
        return;
    }
    bench("uncompressed 512x512x60, as written", tmp.path());
    // The same files after being dropped from the page cache and read back once, as a series read from disk
    // is cached: the kernel then holds them in larger pages than it did for dicom-rs's small writes, which
    // changes the cost of every later read (floor and load alike).
    for p in files_of(tmp.path()) {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(&p).expect("open");
        // SAFETY: a hint on an open descriptor; it changes no memory of ours.
        let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(rc, 0, "posix_fadvise");
        std::hint::black_box(std::fs::read(&p).expect("read"));
    }
    bench("uncompressed 512x512x60, read back from disk", tmp.path());
    let real = std::env::var_os("CEMENTLEAK_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"))
        .join("real/totalseg-t12/dicom");
    if real.exists() {
        bench("jpeg2000 512x512x20 (totalseg-t12)", &real);
    } else {
        println!("SKIP: {} not found (set CEMENTLEAK_DATA)", real.display());
    }
    if let Ok(l) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average: {}", l.trim());
    }
}
