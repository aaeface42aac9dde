//! How the model's state machines run: a proptest runner per machine, its
//! case count from `PROPTEST_CASES` (256 by default; `scripts/soak` asks
//! for many more), failures saved next to the test file
//! (`tests/NAME.proptest-regressions`, replayed first on every later run),
//! and with `CVMEM_SOAK` set a summary line per machine that
//! `scripts/soak` adds up:
//!
//! ```text
//! soak: MACHINE sequences=N steps=S seconds=T invariants=a,b,c
//! ```
//!
//! Every machine checks all its invariants after every step.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};

/// One state machine: where it is, what it is called, what it checks.
pub struct Machine {
    /// `file!()` of the test file (the regressions go next to it).
    pub file: &'static str,
    /// The test's name.
    pub name: &'static str,
    /// The invariants it checks after every step, as its file documents
    /// them.
    pub invariants: &'static [&'static str],
}

/// Runs `test` on `strategy`'s sequences (`steps` says how long one is);
/// panics with the minimal failing sequence if one fails.
pub fn run<S: Strategy>(
    m: &Machine,
    strategy: S,
    steps: impl Fn(&S::Value) -> usize,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let config = Config {
        source_file: Some(m.file),
        max_shrink_iters: 2000,
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel(
            "proptest-regressions",
        ))),
        // PROPTEST_CASES, else 256.
        ..Config::default()
    };
    let cases = AtomicU64::new(0);
    let total_steps = AtomicU64::new(0);
    let start = Instant::now();
    let mut runner = TestRunner::new(config);
    let result = runner.run(&strategy, |v| {
        cases.fetch_add(1, Ordering::Relaxed);
        total_steps.fetch_add(steps(&v) as u64, Ordering::Relaxed);
        test(v)
    });
    if std::env::var_os("CVMEM_SOAK").is_some() {
        println!(
            "soak: {} sequences={} steps={} seconds={:.3} invariants={}",
            m.name,
            cases.load(Ordering::Relaxed),
            total_steps.load(Ordering::Relaxed),
            start.elapsed().as_secs_f64(),
            m.invariants.join(","),
        );
    }
    if let Err(e) = result {
        panic!("{}: {e}", m.name);
    }
}
