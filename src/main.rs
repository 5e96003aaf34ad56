//! `cementleak` command line. Exit status: 0 success, 2 unusable input (one line on stderr), 1 other failure.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

use cementleak::cli;

#[derive(Parser)]
#[command(name = "cementleak", version, about = "Bone-cement leak detection on vertebroplasty CT")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Analyse one injection scan: cement, leaks by site, alert; writes OUT/report.json (+ masks, key images).
    Analyze(cli::analyze::Args),
    /// Describe the CT series at PATH: modality, position, orientation, shape, spacing, HU range, encoding.
    Info(cli::info::Args),
    /// Generate a synthetic vertebroplasty injection sequence with ground truth.
    Phantom(cli::phantom::Args),
    /// Segment the treated vertebra's anatomy (body, canal, discs, posterior elements).
    Segment(cli::segment::Args),
    /// Export leak-component patches from phantom sequences for training the leak-site model.
    Patches(cli::patches::Args),
}

fn main() -> ExitCode {
    cli::init_logging();
    // A damaged file can make a third-party decoder panic; the loader turns that into its one-line error.
    cementleak::load::dicom::contain::install_panic_hook();
    let args = Cli::parse();
    let result = match args.command {
        Command::Analyze(a) => cli::analyze::run(a),
        Command::Info(a) => cli::info::run(a),
        Command::Phantom(a) => cli::phantom::run(a),
        Command::Segment(a) => cli::segment::run(a),
        Command::Patches(a) => cli::patches::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the chain joined with ": ".
            eprintln!("cementleak: error: {err:#}");
            ExitCode::from(cli::exit_code(&err))
        }
    }
}
