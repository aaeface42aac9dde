//! Keeps panics from crossing into QEMU.
//!
//! Unwinding out of an `extern "C"` function aborts the process (Rust 1.81+),
//! which would take the guest down with a message nobody reads. Every callback
//! QEMU makes into cvmem runs inside [`guard`]: a panic is caught, reported
//! once on stderr with the callback's name, and the callback returns a safe
//! value chosen by its caller.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};

/// How many panics were caught at the FFI boundary; shown in the summary.
pub static CAUGHT_PANICS: AtomicU64 = AtomicU64::new(0);

/// Runs `f`; if it panics, reports it and returns `on_panic` instead.
///
/// `AssertUnwindSafe` is sound here in the sense that matters: state touched by
/// a panicking callback is either atomics or behind locks that `parking_lot`
/// does not poison, and the model's invariants are rechecked by its own tests.
pub fn guard<R>(callback: &str, on_panic: R, f: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let n = CAUGHT_PANICS.fetch_add(1, Ordering::Relaxed);
            if n == 0 {
                let msg = payload
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("(no message)");
                eprintln!("cvmem: internal error in {callback}: {msg}");
            }
            on_panic
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_passes_through() {
        assert_eq!(guard("t", 0, || 7), 7);
    }

    #[test]
    fn panic_becomes_the_fallback_and_is_counted() {
        let before = CAUGHT_PANICS.load(Ordering::Relaxed);
        let r = guard("t", -1, || -> i32 { panic!("boom") });
        assert_eq!(r, -1);
        assert!(CAUGHT_PANICS.load(Ordering::Relaxed) > before);
    }
}
