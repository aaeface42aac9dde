//! The SNP counters for the summary.

use super::*;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters for the summary.
#[derive(Debug, Default)]
pub struct SnpStats {
    /// VMGEXITs.
    pub vmgexits: AtomicU64,
    /// ... of them through the MSR protocol.
    pub msr_protocol: AtomicU64,
    /// #VCs raised: intercepted instructions, MMIO, unvalidated pages.
    pub vcs: AtomicU64,
    /// PVALIDATEs.
    pub pvalidates: AtomicU64,
    /// RMPADJUSTs.
    pub rmpadjusts: AtomicU64,
    /// Pages converted by page-state changes.
    pub psc_pages: AtomicU64,
    /// GHCB requests refused with an error.
    pub ghcb_errors: AtomicU64,
    /// Page-state changes refused (not private-capable RAM: QEMU's
    /// `kvm_convert_memory()` fails them).
    pub psc_refused: AtomicU64,
    /// Pages launched with SNP_LAUNCH_UPDATE.
    pub pages_launched: AtomicU64,
    /// SNP_GUEST_REQUESTs (plain and extended).
    pub guest_requests: AtomicU64,
    /// ... answered with an error (firmware or VMM).
    pub guest_request_errors: AtomicU64,
    /// Attestation reports made.
    pub reports: AtomicU64,
    /// AP creation requests (NAE 0x80000013) past the GHCB validation.
    pub ap_requests: AtomicU64,
    /// ... refused with GHCB_ERR_INVALID_INPUT (sev_snp_ap_creation()).
    pub ap_refused: AtomicU64,
    /// ... that started a vCPU from its VMSA.
    pub ap_created: AtomicU64,
    /// ... that destroyed a vCPU (AP_DESTROY).
    pub ap_destroyed: AtomicU64,
    /// ... accepted but whose VMSA could not run (or left for an INIT).
    pub ap_failed: AtomicU64,
}

impl SnpStats {
    /// The counters for the control socket's `stats`.
    pub fn json(&self) -> serde_json::Value {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "vmgexits": n(&self.vmgexits),
            "msr_protocol": n(&self.msr_protocol),
            "vcs": n(&self.vcs),
            "pvalidates": n(&self.pvalidates),
            "rmpadjusts": n(&self.rmpadjusts),
            "psc_pages": n(&self.psc_pages),
            "ghcb_errors": n(&self.ghcb_errors),
            "psc_refused": n(&self.psc_refused),
            "pages_launched": n(&self.pages_launched),
            "guest_requests": n(&self.guest_requests),
            "guest_request_errors": n(&self.guest_request_errors),
            "reports": n(&self.reports),
            "ap_requests": n(&self.ap_requests),
            "ap_refused": n(&self.ap_refused),
            "ap_created": n(&self.ap_created),
            "ap_destroyed": n(&self.ap_destroyed),
            "ap_failed": n(&self.ap_failed),
        })
    }
}

impl SnpFirmware {
    /// The summary line.
    pub fn summary(&self) -> String {
        let s = &self.stats;
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let _ = write!(
            out,
            "{} VMGEXITs ({} MSR protocol, {} refused), {} #VC, {} PVALIDATE, {} RMPADJUST, \
             {} pages changed by PSC ({} requests refused), {} pages launched, \
             {} guest requests ({} refused, {} reports), \
             {} AP creation requests ({} created, {} destroyed, {} refused, {} not started)",
            n(&s.vmgexits),
            n(&s.msr_protocol),
            n(&s.ghcb_errors),
            n(&s.vcs),
            n(&s.pvalidates),
            n(&s.rmpadjusts),
            n(&s.psc_pages),
            n(&s.psc_refused),
            n(&s.pages_launched),
            n(&s.guest_requests),
            n(&s.guest_request_errors),
            n(&s.reports),
            n(&s.ap_requests),
            n(&s.ap_created),
            n(&s.ap_destroyed),
            n(&s.ap_refused),
            n(&s.ap_failed)
        );
        out
    }
}
