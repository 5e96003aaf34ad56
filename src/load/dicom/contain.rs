//! Third-party parsers and decoders (dicom-rs, its codecs) can panic on damaged files. [`contained`] runs
//! them so that such a panic becomes an error value, and keeps the panic's message and backtrace off stderr:
//! the user gets the loader's one-line error (exit 2), the message goes to the debug log.
//!
//! The panic hook is process-wide, so [`install_panic_hook`] (called once by the binary) wraps the default
//! one: a panic on a thread that is inside [`contained`] is logged at debug level, any other panic is
//! reported as before (it is a bug of ours and must stay loud).

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    /// How many [`contained`] calls this thread is inside.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Run `f`; a panic inside it is returned as `Err` with the panic's message.
pub fn contained<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    DEPTH.with(|d| d.set(d.get() + 1));
    let result = catch_unwind(AssertUnwindSafe(f));
    DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    result.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string())
    })
}

/// Keep panics inside [`contained`] quiet (debug log); leave every other panic to the previous hook.
pub fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if DEPTH.with(Cell::get) > 0 {
            tracing::debug!("third-party decoder panicked (turned into a load error): {info}");
        } else {
            previous(info);
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_with_its_message() {
        assert_eq!(contained(|| 7), Ok(7));
        let e = contained(|| -> u8 { panic!("index out of bounds: {}", 3) });
        assert_eq!(e, Err("index out of bounds: 3".to_string()));
        // The depth is back to zero: a later panic outside is not swallowed by the hook.
        assert_eq!(DEPTH.with(Cell::get), 0);
    }
}
