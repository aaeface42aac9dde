//! The GHCB MSR protocol: requests carried in the GHCB MSR itself.

use super::*;
use crate::effects::Effects;
use crate::hooks::Host;
use crate::vmm::Vmm;
use cvmem_model::{Gfn, GfnRange};
use std::sync::atomic::Ordering;

impl SnpFirmware {
    /// One MSR-protocol request; returns the new GHCB MSR value (effects of
    /// a page-state change go to `fx`). An unknown
    /// request leaves the MSR as it is, as KVM does.
    pub(super) fn msr_protocol(
        &self,
        vmm: &Vmm,
        value: u64,
        host: &dyn Host,
        fx: &mut Effects,
    ) -> u64 {
        use proto as p;
        let data = value >> 12;
        match value & p::INFO_MASK {
            p::SEV_INFO_REQ => {
                let c_bit = u64::from(vmm.vm().config().c_bit);
                let info = (p::VERSION_MAX << 48) | (p::VERSION_MIN << 32) | (c_bit << 24);
                info | p::SEV_INFO_RESP
            }
            p::CPUID_REQ => {
                let reg = (value >> 30) & 3;
                let out = self.cpuid(vmm, (value >> 32) as u32, 0, host);
                let v = u64::from(out[reg as usize]);
                (v << 32) | (reg << 30) | p::CPUID_RESP
            }
            // KVM has no preferred GHCB GPA: it answers with the GPA field
            // all ones, GHCB_MSR_PREF_GPA_NONE (sev.c,
            // sev_handle_vmgexit_msr_protocol(), GHCB_MSR_PREF_GPA_REQ).
            p::PREF_GPA_REQ => (p::PREF_GPA_NONE << 12) | p::PREF_GPA_RESP,
            // KVM records the GFN and echoes it (sev.c, GHCB_MSR_REG_GPA_REQ).
            p::REG_GPA_REQ => (data << 12) | p::REG_GPA_RESP,
            p::PSC_REQ => {
                let gfn = data & ((1 << 40) - 1);
                let op = (value >> 52) & 0xf;
                if op != p::PSC_OP_PRIVATE && op != p::PSC_OP_SHARED {
                    return p::PSC_RESP_ERROR;
                }
                match vmm.convert(
                    GfnRange::one(Gfn::new(gfn)),
                    op == p::PSC_OP_PRIVATE,
                    false,
                    fx,
                ) {
                    Ok(()) => {
                        self.stats.psc_pages.fetch_add(1, Ordering::Relaxed);
                        p::PSC_RESP
                    }
                    Err(_) => {
                        self.stats.psc_refused.fetch_add(1, Ordering::Relaxed);
                        p::PSC_RESP_ERROR
                    }
                }
            }
            p::HV_FT_REQ => (p::HV_FT_SUPPORTED << 12) | p::HV_FT_RESP,
            p::TERM_REQ => {
                self.terminate(vmm, (value >> 12) & 0xf, (value >> 16) & 0xff, host);
                value
            }
            _ => value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::hooks::fake::{FakeHost, MEM};

    use crate::snp::testutil::*;

    #[test]
    fn msr_protocol() {
        let kvm = guest(MEM);
        let host = FakeHost::new();
        assert_eq!(
            msr_call(&kvm, &host, 0x002),
            (2 << 48) | (1 << 32) | (51 << 24) | 1
        );
        assert_eq!(
            msr_call(&kvm, &host, 0x080),
            (0b11 << 12) | 0x081,
            "SNP and AP creation"
        );
        // CPUID 0x8000001F EBX through the MSR protocol.
        let ebx = msr_call(&kvm, &host, (0x8000_001F << 32) | (1 << 30) | 0x004);
        assert_eq!(ebx, ((51 | (1 << 6) | (4 << 12)) << 32) | (1 << 30) | 0x005);
        assert_eq!(
            msr_call(&kvm, &host, (0x123 << 12) | 0x012),
            (0x123 << 12) | 0x013
        );
        // The preferred GHCB GPA: none, whatever the request's data bits.
        assert_eq!(msr_call(&kvm, &host, 0x010), 0xffff_ffff_ffff_f011);
        assert_eq!(
            msr_call(&kvm, &host, (0xabc << 12) | 0x010),
            0xffff_ffff_ffff_f011
        );
        // Page-state change of one page to shared and back.
        let gfn = 0x300u64;
        host.mem.borrow_mut()[0x30_0000] = 0xaa;
        assert_eq!(
            msr_call(&kvm, &host, (2 << 52) | (gfn << 12) | 0x014),
            0x015
        );
        assert!(!kvm.vm().is_private(Gfn::new(gfn)));
        assert_eq!(host.mem.borrow()[0x30_0000], 0, "contents are discarded");
        assert_eq!(
            msr_call(&kvm, &host, (1 << 52) | (gfn << 12) | 0x014),
            0x015
        );
        assert!(kvm.vm().is_private(Gfn::new(gfn)));
        // A bad operation, a GFN outside RAM: the error answer.
        assert_eq!(
            msr_call(&kvm, &host, (3 << 52) | (gfn << 12) | 0x014),
            proto::PSC_RESP_ERROR
        );
        assert_eq!(
            msr_call(&kvm, &host, (1 << 52) | (0xfff_0000 << 12) | 0x014),
            proto::PSC_RESP_ERROR
        );
        // Unknown requests leave the MSR alone; termination stops the VM.
        assert_eq!(msr_call(&kvm, &host, 0xabc), 0xabc);
        assert!(!host.panicked.get());
        assert_eq!(
            msr_call(&kvm, &host, (3 << 16) | (1 << 12) | 0x100),
            (3 << 16) | (1 << 12) | 0x100
        );
        assert!(host.panicked.get());
    }
}
