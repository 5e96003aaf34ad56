//! Command-line front ends. Each subcommand has an `Args` (clap) and a `run` returning `anyhow::Result`;
//! the typed errors of the library stages are classified here into exit codes.

pub mod analyze;
pub mod info;
pub mod patches;
pub mod phantom;
pub mod phantom_hybrid;
pub mod segment;

use crate::load::LoadError;

/// An input the user must fix (exit code 2), for problems found outside the loader.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// 2 for unusable input, 1 for everything else.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    let is_input = err
        .chain()
        .any(|e| e.downcast_ref::<LoadError>().is_some() || e.downcast_ref::<InputError>().is_some());
    if is_input {
        2
    } else {
        1
    }
}

/// Logs go to stderr (stdout is for machine output); `RUST_LOG` overrides the default `warn`.
pub fn init_logging() {
    // Decoder crates log their own failures as ERROR; the loader reports them once, as a LoadError.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,jpeg2k=off,openjp2=off"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Write command output to stdout. A closed pipe (`cementleak info X | head`) ends output quietly instead of
/// panicking the way `println!` does.
pub fn print_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
