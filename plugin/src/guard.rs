//! Keeps panics from crossing into QEMU, and stops the VM after one.
//!
//! Unwinding out of an `extern "C"` function aborts the process (Rust 1.81+),
//! which would take the guest down with a message nobody reads. Every callback
//! QEMU makes into cvmem runs inside [`guard`]: a panic is caught, reported
//! once on stderr in one line with the callback's name, and the callback
//! returns a safe value chosen by its caller. A panic leaves cvmem's state
//! unknown (a model operation may have stopped halfway), so from then on
//! cvmem fails closed: [`failed`] is true, and `ffi.rs` stops the VM at the
//! next stage-2 or instruction callback of any vCPU, as QEMU stops a KVM
//! guest whose KVM_RUN failed (docs/plugin.md, "How a run ends").
//!
//! With the cargo feature `panic-inject` (a test build, never the default)
//! `CVMEM_PANIC_INJECT=CALLBACK` makes the first call of that callback
//! panic, so that a test can prove the above for every callback.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Once, OnceLock};

/// How many panics were caught at the FFI boundary; shown in the summary.
pub static CAUGHT_PANICS: AtomicU64 = AtomicU64::new(0);

/// Set by the first caught panic: cvmem stops the VM.
static FAILED: AtomicBool = AtomicBool::new(false);

/// The first panic: "CALLBACK: MESSAGE (at FILE:LINE)".
static FIRST: OnceLock<String> = OnceLock::new();

/// Called once after the first panic: `ffi.rs` makes every vCPU come back
/// to a callback soon, where it is stopped.
static ON_FAILURE: OnceLock<fn()> = OnceLock::new();

/// Sets what to do once after the first panic.
pub fn on_failure(f: fn()) {
    let _ = ON_FAILURE.set(f);
}

thread_local! {
    /// Where the panic being unwound on this thread began (the hook's).
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
    /// Whether this thread runs inside [`guard`], which reports panics.
    static GUARDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Replaces Rust's default panic output (a `thread ... panicked at` line
/// and a backtrace note, on top of [`guard`]'s own line) with nothing but
/// a record of where the panic began, which [`guard`] adds to its line.
/// For the plugin only: unit tests keep the default hook.
pub fn quiet_panic_output() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let at = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()));
            if GUARDED.with(std::cell::Cell::get) {
                LOCATION.with(|l| *l.borrow_mut() = at);
            } else {
                // A thread of cvmem's own outside any callback (the trace
                // writer, the control socket's listener): its end is seen
                // elsewhere (the summary's trace line), but say why.
                let thread = std::thread::current();
                eprintln!(
                    "cvmem: internal error in thread {}: {} (at {})",
                    thread.name().unwrap_or("?"),
                    info.payload()
                        .downcast_ref::<&str>()
                        .copied()
                        .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
                        .unwrap_or("(no message)"),
                    at.as_deref().unwrap_or("?")
                );
            }
        }));
    });
}

/// Whether a callback has panicked: the run must stop.
#[inline]
pub fn failed() -> bool {
    FAILED.load(Ordering::Relaxed)
}

/// The first panic, "CALLBACK: MESSAGE (at FILE:LINE)", if there was one.
pub fn first_panic() -> Option<&'static str> {
    FIRST.get().map(String::as_str)
}

/// Runs `f`; if it panics, reports it and returns `on_panic` instead.
///
/// `AssertUnwindSafe` is sound here in the sense that matters: state touched by
/// a panicking callback is either atomics or behind locks that `parking_lot`
/// does not poison, and cvmem stops the VM rather than go on with it.
pub fn guard<R>(callback: &str, on_panic: R, f: impl FnOnce() -> R) -> R {
    let outer = GUARDED.with(|g| g.replace(true));
    let result = catch_unwind(AssertUnwindSafe(|| {
        inject::maybe_panic(callback);
        f()
    }));
    GUARDED.with(|g| g.set(outer));
    match result {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(no message)");
            let at = LOCATION
                .with(|l| l.borrow_mut().take())
                .map(|at| format!(" (at {at})"))
                .unwrap_or_default();
            let what = format!("{callback}: {}{at}", msg.replace('\n', " "));
            let _ = FIRST.set(what.clone());
            FAILED.store(true, Ordering::Relaxed);
            if CAUGHT_PANICS.fetch_add(1, Ordering::Relaxed) == 0 {
                eprintln!("cvmem: internal error in {what}; cvmem stops the VM");
                if let Some(f) = ON_FAILURE.get() {
                    f();
                }
            }
            on_panic
        }
    }
}

/// The panic-injection hook (feature `panic-inject`).
#[cfg(feature = "panic-inject")]
pub mod inject {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::OnceLock;

    /// The callback named by `CVMEM_PANIC_INJECT`, read once.
    fn target() -> Option<&'static str> {
        static TARGET: OnceLock<Option<String>> = OnceLock::new();
        TARGET
            .get_or_init(|| std::env::var("CVMEM_PANIC_INJECT").ok())
            .as_deref()
    }

    /// Panics at the first call of the chosen callback.
    pub fn maybe_panic(callback: &str) {
        static FIRED: AtomicBool = AtomicBool::new(false);
        if target() == Some(callback) && !FIRED.swap(true, Ordering::Relaxed) {
            panic!("injected panic (CVMEM_PANIC_INJECT={callback})");
        }
    }
}

/// Without the feature: nothing.
#[cfg(not(feature = "panic-inject"))]
pub mod inject {
    /// Does nothing.
    #[inline(always)]
    pub fn maybe_panic(_callback: &str) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The guard names of a source file: `guard("NAME", ...`.
    fn guard_names(src: &str) -> Vec<String> {
        src.match_indices("guard(\n")
            .chain(src.match_indices("guard(\""))
            .filter_map(|(at, _)| {
                let rest = src[at + 6..].trim_start();
                let rest = rest.strip_prefix('"')?;
                Some(rest[..rest.find('"')?].to_owned())
            })
            .collect()
    }

    /// Every callback QEMU can call (an `extern "C" fn` with a body in
    /// ffi.rs) runs its body inside `guard`, and every guard has a
    /// panic-injection test in the manifest (`expect = internal:NAME`, run
    /// by scripts/panic-test).
    #[test]
    fn every_callback_is_guarded_and_has_a_panic_test() {
        let ffi = include_str!("ffi.rs");
        let mut callbacks = Vec::new();
        for (at, _) in ffi
            .match_indices("\nunsafe extern \"C\" fn ")
            .chain(ffi.match_indices("\npub unsafe extern \"C\" fn "))
        {
            // A function at the top level: its body ends at the next "}" in
            // column 0.
            let head = &ffi[at + 1..];
            let name = &head[head.find(" fn ").unwrap() + 4..];
            let name = &name[..name.find('(').unwrap()];
            let body = &head[head.find('{').unwrap()..head.find("\n}\n").unwrap()];
            assert!(
                body.contains("guard(") || body.contains("stage2::<"),
                "extern \"C\" fn {name} has no guard"
            );
            callbacks.push(name.to_owned());
        }
        let callbacks = callbacks.len();
        assert!(callbacks >= 15, "{callbacks} callbacks found");
        assert!(include_str!("ffi.rs").contains("guard(\n        \"stage2\""));
        let manifest = include_str!("../../guest-tests/manifest");
        let mut names = guard_names(ffi);
        names.extend(guard_names(include_str!("control.rs")));
        assert!(names.len() >= 16, "{names:?}");
        for name in names {
            assert!(
                manifest.contains(&format!("expect = internal:{name}\n")),
                "no panic test for callback {name} in guest-tests/manifest"
            );
        }
    }

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
        assert!(failed());
        assert!(first_panic().is_some_and(|p| p.starts_with("t: boom")));
    }
}
