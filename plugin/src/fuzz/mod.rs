//! The fuzzing seam: one harness per untrusted input, each driving the
//! real code without QEMU and checking invariants after every operation
//! ([`session::Session::check`]). `plugin/fuzz` (cargo fuzz, libFuzzer)
//! calls them with the `fuzzing` feature; the unit tests below replay the
//! committed corpora through them in every test build (docs/fuzzing.md).
//!
//! | target | input | harness |
//! |---|---|---|
//! | `control` | control-socket request lines against a VM with memslots, and guest accesses | [`control::run`] |
//! | `snp` | the GHCB MSR protocol, GHCB pages and NAE events, PVALIDATE and RMPADJUST, other intercepted instructions, host requests | [`snp::run`] |
//! | `tdx` | TDCALL leaves and TDVMCALLs with arbitrary registers, other instructions, host requests | [`tdx::run`] |
//! | `args` | the plugin's `key=value` arguments | [`args::run`] |
//!
//! The trace writer's encoding is checked in every session
//! ([`session::Session::finish`]): each harness runs with a trace on.

pub mod args;
pub mod control;
mod input;
mod ops;
mod session;
pub mod snp;
pub mod tdx;

/// A harness: runs one input, panics if an invariant breaks.
pub type Harness = fn(&[u8]);

/// The targets, by name, as `plugin/fuzz/fuzz_targets/` names them.
pub const TARGETS: &[(&str, Harness)] = &[
    ("control", control::run),
    ("snp", snp::run),
    ("tdx", tdx::run),
    ("args", args::run),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Every committed corpus input (seeds, interesting inputs, the inputs
    /// of bugs found) runs clean through its harness in the ordinary test
    /// build, so a regression shows in `cargo test` without cargo-fuzz.
    #[test]
    fn committed_corpora_pass() {
        let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugin/fuzz/corpus");
        for (name, run) in TARGETS {
            let dir = top.join(name);
            let mut n = 0;
            for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
                let path = entry.unwrap().path();
                // CVMEM_FUZZ_ONLY=PART: only the inputs whose path has PART.
                if let Ok(part) = std::env::var("CVMEM_FUZZ_ONLY") {
                    if !path.to_string_lossy().contains(&part) {
                        n += 1;
                        continue;
                    }
                }
                let data = std::fs::read(&path).unwrap();
                eprintln!("{name}: {}", path.display());
                run(&data);
                n += 1;
            }
            assert!(n > 0, "no corpus for {name} in {dir:?}");
        }
    }
}
