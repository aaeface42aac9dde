//! The running plugin: its configuration, the mode it found QEMU in, and its
//! counters. One instance lives for the whole QEMU process.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use crate::args::Config;

/// How much of the guest's memory semantics cvmem can enforce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// QEMU carries the cvmem patch series with this cvm API version: cvmem
    /// takes part in translation and instruction emulation.
    Enforcing {
        /// The version QEMU reported through `qemu_plugin_cvm_api_version`.
        api_version: u32,
    },
    /// An unpatched QEMU (no cvm API): cvmem can only observe the guest
    /// through the stock plugin API and report what it would have refused.
    Audit,
}

impl Mode {
    /// Chooses the mode from what QEMU offers and what the plugin was built
    /// for. `qemu_version` is `None` when QEMU has no cvm API at all.
    ///
    /// The cvm API has no compatibility between versions (see the header), so
    /// a patched QEMU with another version is refused rather than guessed at.
    pub fn negotiate(qemu_version: Option<u32>, built_for: u32) -> Result<Mode, String> {
        match qemu_version {
            None => Ok(Mode::Audit),
            Some(v) if v == built_for => Ok(Mode::Enforcing { api_version: v }),
            Some(v) => Err(format!(
                "QEMU implements cvm plugin API version {v}, but this libcvmem.so was built for \
                 version {built_for}; rebuild QEMU with scripts/build-qemu"
            )),
        }
    }

    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Enforcing { .. } => "enforcing",
            Mode::Audit => "audit",
        }
    }
}

/// Counters kept while the guest runs. Each is updated by a single atomic
/// instruction on the path that counts it.
#[derive(Debug, Default)]
pub struct Stats {
    /// vCPUs QEMU has initialised.
    pub vcpus: AtomicU32,
}

/// The plugin instance.
#[derive(Debug)]
pub struct Plugin {
    /// The validated arguments.
    pub config: Config,
    /// What QEMU lets cvmem do.
    pub mode: Mode,
    /// Counters for the summary.
    pub stats: Stats,
    /// When the plugin was installed.
    pub started: Instant,
}

impl Plugin {
    /// A new plugin instance, installed now.
    pub fn new(config: Config, mode: Mode) -> Self {
        Plugin {
            config,
            mode,
            stats: Stats::default(),
            started: Instant::now(),
        }
    }

    /// Called when QEMU brings a vCPU up.
    pub fn vcpu_init(&self, _vcpu_index: u32) {
        self.stats.vcpus.fetch_add(1, Ordering::Relaxed);
    }

    /// The line printed when the plugin installs.
    pub fn banner(&self) -> String {
        match self.mode {
            Mode::Enforcing { api_version } => format!(
                "cvmem: vm-type={} mode=enforcing (cvm plugin API v{api_version})\n",
                self.config.vm_type
            ),
            Mode::Audit => format!(
                "cvmem: vm-type={} mode=audit: this QEMU has no cvm plugin API \
                 (unpatched), so cvmem observes and enforces nothing\n",
                self.config.vm_type
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(Mode::negotiate(None, 1), Ok(Mode::Audit));
        assert_eq!(
            Mode::negotiate(Some(1), 1),
            Ok(Mode::Enforcing { api_version: 1 })
        );
        let err = Mode::negotiate(Some(2), 1).unwrap_err();
        assert!(
            err.contains("version 2") && err.contains("version 1"),
            "{err}"
        );
    }

    #[test]
    fn vcpus_are_counted() {
        let p = Plugin::new(Config::default(), Mode::Audit);
        p.vcpu_init(0);
        p.vcpu_init(1);
        assert_eq!(p.stats.vcpus.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn banner_names_mode_and_type() {
        let p = Plugin::new(Config::default(), Mode::Enforcing { api_version: 1 });
        assert!(p.banner().contains("vm-type=default mode=enforcing"));
        let p = Plugin::new(Config::default(), Mode::Audit);
        assert!(p.banner().contains("mode=audit"));
    }
}
