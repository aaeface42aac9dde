//! The TDX counters for the summary.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters for the summary.
#[derive(Debug, Default)]
pub struct TdxStats {
    /// TDCALLs.
    pub tdcalls: AtomicU64,
    /// TDVMCALLs.
    pub tdvmcalls: AtomicU64,
    /// #VEs injected.
    pub ves: AtomicU64,
    /// Of those, for port I/O and for HLT.
    pub io_ves: AtomicU64,
    pub hlt_ves: AtomicU64,
    /// #VEs that found the last one's information unread: #DF instead.
    pub double_ves: AtomicU64,
    /// Pages accepted by the guest.
    pub accepts: AtomicU64,
    /// MapGPA calls that changed memory.
    pub map_gpa: AtomicU64,
    /// Pages added with TDH.MEM.PAGE.ADD at launch.
    pub pages_added: AtomicU64,
    /// TDCALLs by leaf (0-11; others are not counted here).
    pub by_leaf: [AtomicU64; 12],
    /// TDVMCALLs by sub-function, in the order of [`TDVMCALL_NAMES`].
    pub by_tdvmcall: [AtomicU64; TDVMCALL_NAMES.len()],
}

/// TDCALL leaf names for the summary, by leaf number (TDX module ABI).
pub const TDCALL_NAMES: [&str; 12] = [
    "VP.VMCALL",
    "VP.INFO",
    "MR.RTMR.EXTEND",
    "VP.VEINFO.GET",
    "MR.REPORT",
    "VP.CPUIDVE.SET",
    "MEM.PAGE.ACCEPT",
    "VM.RD",
    "VM.WR",
    "VP.RD",
    "VP.WR",
    "SYS.RD",
];

/// TDVMCALL sub-functions for the summary; the last counts KVM hypercalls
/// (R10 != 0) and unknown sub-functions.
pub const TDVMCALL_NAMES: [&str; 11] = [
    "GetTdVmCallInfo",
    "MapGPA",
    "GetQuote",
    "ReportFatalError",
    "CPUID",
    "HLT",
    "IO",
    "RDMSR",
    "WRMSR",
    "MMIO",
    "other",
];

impl TdxStats {
    /// The nonzero per-leaf and per-sub-function counts, "NAME N, ...".
    pub fn calls(&self) -> String {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let leaves = self
            .by_leaf
            .iter()
            .zip(TDCALL_NAMES)
            .skip(1) // VP.VMCALL: by sub-function below
            .chain(self.by_tdvmcall.iter().zip(TDVMCALL_NAMES));
        let parts: Vec<String> = leaves
            .filter(|(c, _)| n(c) != 0)
            .map(|(c, name)| format!("{name} {}", n(c)))
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}
