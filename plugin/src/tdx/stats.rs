//! The TDX counters for the summary.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use super::vmcall;

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
    /// Of those, for CPUID, RDMSR and WRMSR.
    pub cpuid_ves: AtomicU64,
    pub rdmsr_ves: AtomicU64,
    pub wrmsr_ves: AtomicU64,
    /// CR-access #VEs and #GPs (MOV to CR0/CR4, `cr.rs`).
    pub cr_ves: AtomicU64,
    pub cr_gps: AtomicU64,
    /// XSETBVs refused with #GP (`xsetbv.rs`).
    pub xsetbv_gps: AtomicU64,
    /// VMCALL #VEs (in the summary's "other").
    pub vmcall_ves: AtomicU64,
    /// #VEs that found the last one's information unread: #DF instead.
    pub double_ves: AtomicU64,
    /// Pages accepted by the guest.
    pub accepts: AtomicU64,
    /// MapGPA calls that changed memory.
    pub map_gpa: AtomicU64,
    /// Pages added with TDH.MEM.PAGE.ADD at launch.
    pub pages_added: AtomicU64,
    /// INIT and SIPI sent to the TD, dropped (a TD started from TDVF).
    pub inits_dropped: AtomicU64,
    pub sipis_dropped: AtomicU64,
    /// TDCALLs by leaf (0-11; others are not counted here).
    pub by_leaf: [AtomicU64; 12],
    /// TDVMCALLs by sub-function, in the order of [`TDVMCALLS`], then the
    /// others.
    pub by_tdvmcall: [AtomicU64; TDVMCALLS.len() + 1],
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

/// The TDVMCALL sub-functions (R10 = 0, R11) counted by name, in the
/// summary's order; KVM hypercalls (R10 != 0) and unknown sub-functions
/// count as "other", the counter after these.
pub const TDVMCALLS: [(u64, &str); 10] = [
    (vmcall::GET_TD_VM_CALL_INFO, "GetTdVmCallInfo"),
    (vmcall::MAP_GPA, "MapGPA"),
    (vmcall::GET_QUOTE, "GetQuote"),
    (vmcall::REPORT_FATAL_ERROR, "ReportFatalError"),
    (vmcall::CPUID, "CPUID"),
    (vmcall::HLT, "HLT"),
    (vmcall::IO, "IO"),
    (vmcall::MSR_READ, "RDMSR"),
    (vmcall::MSR_WRITE, "WRMSR"),
    (vmcall::EPT_VIOLATION, "MMIO"),
];

impl TdxStats {
    /// Counts a TDVMCALL with `r10` and `r11`.
    pub fn count_tdvmcall(&self, r10: u64, r11: u64) {
        let i = TDVMCALLS
            .iter()
            .position(|&(sub, _)| r10 == 0 && r11 == sub)
            .unwrap_or(TDVMCALLS.len());
        self.by_tdvmcall[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The TDVMCALL counters with their names.
    fn tdvmcalls(&self) -> impl Iterator<Item = (&AtomicU64, &'static str)> {
        let names = TDVMCALLS.iter().map(|&(_, name)| name).chain(["other"]);
        self.by_tdvmcall.iter().zip(names)
    }

    /// The nonzero per-leaf and per-sub-function counts, "NAME N, ...".
    pub fn calls(&self) -> String {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let leaves = self
            .by_leaf
            .iter()
            .zip(TDCALL_NAMES)
            .skip(1) // VP.VMCALL: by sub-function below
            .chain(self.tdvmcalls());
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

    /// The summary's TDX lines.
    pub fn summary(&self, out: &mut String) {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "  tdx           {} TDCALLs, {} TDVMCALLs, {} #VE, {} pages accepted, {} MapGPA, {} pages added at launch",
            n(&self.tdcalls),
            n(&self.tdvmcalls),
            n(&self.ves),
            n(&self.accepts),
            n(&self.map_gpa),
            n(&self.pages_added)
        );
        let _ = writeln!(out, "  tdx calls     {}", self.calls());
        let _ = writeln!(
            out,
            "  tdx #VE       {} port I/O, {} HLT, {} other; {} #DF (a #VE over unread VE info); {} CPUID, {} RDMSR, {} WRMSR, {} CR (and {} CR #GP); {} XSETBV #GP",
            n(&self.io_ves),
            n(&self.hlt_ves),
            n(&self.ves).saturating_sub(
                n(&self.io_ves)
                    + n(&self.hlt_ves)
                    + n(&self.cpuid_ves)
                    + n(&self.rdmsr_ves)
                    + n(&self.wrmsr_ves)
                    + n(&self.cr_ves)
            ),
            n(&self.double_ves),
            n(&self.cpuid_ves),
            n(&self.rdmsr_ves),
            n(&self.wrmsr_ves),
            n(&self.cr_ves),
            n(&self.cr_gps),
            n(&self.xsetbv_gps),
        );
    }

    /// The counters for the control socket's `stats`.
    pub fn json(&self) -> serde_json::Value {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let leaves: serde_json::Map<String, serde_json::Value> = self
            .by_leaf
            .iter()
            .zip(TDCALL_NAMES)
            .map(|(c, name)| (name.to_string(), n(c).into()))
            .collect();
        let tdvmcalls: serde_json::Map<String, serde_json::Value> = self
            .tdvmcalls()
            .map(|(c, name)| (name.to_string(), n(c).into()))
            .collect();
        serde_json::json!({
            "tdcalls": n(&self.tdcalls),
            "tdvmcalls": n(&self.tdvmcalls),
            "ves": n(&self.ves),
            "io_ves": n(&self.io_ves),
            "hlt_ves": n(&self.hlt_ves),
            "cpuid_ves": n(&self.cpuid_ves),
            "rdmsr_ves": n(&self.rdmsr_ves),
            "wrmsr_ves": n(&self.wrmsr_ves),
            "cr_ves": n(&self.cr_ves),
            "cr_gps": n(&self.cr_gps),
            "xsetbv_gps": n(&self.xsetbv_gps),
            "double_ves": n(&self.double_ves),
            "accepts": n(&self.accepts),
            "map_gpa": n(&self.map_gpa),
            "pages_added": n(&self.pages_added),
            "inits_dropped": n(&self.inits_dropped),
            "sipis_dropped": n(&self.sipis_dropped),
            "by_leaf": leaves,
            "by_tdvmcall": tdvmcalls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tdvmcalls_count_by_name_and_the_rest_as_other() {
        let s = TdxStats::default();
        s.count_tdvmcall(0, vmcall::MAP_GPA);
        s.count_tdvmcall(0, vmcall::EPT_VIOLATION);
        s.count_tdvmcall(0, 0x1234);
        s.count_tdvmcall(12, vmcall::MAP_GPA); // a KVM hypercall
        assert_eq!(s.calls(), "MapGPA 1, MMIO 1, other 2");
    }
}
