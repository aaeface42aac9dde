//! What an SEV-ES guest cannot run natively once launched (#VC with the
//! SVM exit code), and CPUID and the SEV MSRs as the guest sees them.

use super::*;
use crate::hooks::{Host, InsnAction};
use crate::kvm::pv_cpuid::{kvm_cpuid, KVM_CPUID_LAST, KVM_CPUID_SIGNATURE};
use crate::vmm::{vector, Vmm};

/// #VC with `exit_code`: an intercepted instruction of an SEV-ES guest
/// (APM §15.35.4).
pub(super) fn vc(exit_code: u64) -> InsnAction {
    InsnAction::Fault(fault(vector::VC, Some(exit_code as u32), None))
}

/// The MSRs whose state lives in the VMSA, which KVM does not intercept for
/// an SEV-ES guest (arch/x86/kvm/svm/svm.c `direct_access_msrs`,
/// `sev_es_init_vmcb()`): they run natively.
pub(super) fn msr_passes_through(msr: u32) -> bool {
    matches!(
        msr,
        0xC000_0080..=0xC000_0084 // EFER, STAR, LSTAR, CSTAR, SFMASK
            | 0xC000_0100..=0xC000_0103 // FS/GS/KERNEL_GS_BASE, TSC_AUX
            | 0x174..=0x176 // SYSENTER_CS/ESP/EIP
            | 0x277 // PAT
    )
}

/// CPUID 0x8000001F EBX[11:6]: physical address bits the memory
/// encryption takes away.
pub const REDUCED_PHYS_BITS: u32 = 1;

impl SnpFirmware {
    /// CPUID as an SNP guest sees it (through #VC and the GHCB, or natively
    /// before launch): QEMU's CPU model with the memory-encryption leaf and
    /// KVM's paravirtual block.
    pub fn cpuid(&self, vmm: &Vmm, leaf: u32, subleaf: u32, host: &dyn Host) -> [u32; 4] {
        self.cpuid_of(vmm, leaf, subleaf, &|l, s| host.cpuid(l, s))
    }

    /// CPUID as the guest sees it, over the CPU model's `model`.
    pub(super) fn cpuid_of(
        &self,
        vmm: &Vmm,
        leaf: u32,
        subleaf: u32,
        model: &dyn Fn(u32, u32) -> [u32; 4],
    ) -> [u32; 4] {
        match leaf {
            0x8000_0000 => {
                let mut r = model(leaf, 0);
                r[0] = r[0].max(0x8000_001F);
                r
            }
            // EAX: SEV (1), SEV-ES (3), SNP (4), VMPL (5); EBX: C-bit
            // position (5:0), physical address bit reduction (11:6), 4
            // VMPLs (15:12) (APM vol. 3, CPUID Fn8000_001F). The reduction
            // is QEMU's sev-snp-guest `reduced-phys-bits` default, 1 (QEMU
            // refuses 0: target/i386/sev.c).
            0x8000_001F => {
                let c_bit = u32::from(vmm.vm().config().c_bit);
                [
                    (1 << 1) | (1 << 3) | (1 << 4) | (1 << 5),
                    c_bit | (REDUCED_PHYS_BITS << 6) | (4 << 12),
                    0,
                    0,
                ]
            }
            KVM_CPUID_SIGNATURE..=KVM_CPUID_LAST => kvm_cpuid(leaf),
            _ => model(leaf, subleaf),
        }
    }

    /// RDMSR as the guest gets it: the SEV MSRs here, the rest from QEMU.
    pub(super) fn rdmsr(&self, vcpu: u32, msr: u32, host: &dyn Host) -> Option<u64> {
        match msr {
            msr::SEV_STATUS => Some(SEV_STATUS_VALUE),
            msr::GHCB => Some(self.vcpu(vcpu).map_or(0, |v| v.lock().ghcb_msr)),
            _ => host.rdmsr(msr),
        }
    }

    /// WRMSR; `false` for #GP.
    pub(super) fn wrmsr(&self, vcpu: u32, msr: u32, value: u64, host: &dyn Host) -> bool {
        match msr {
            msr::SEV_STATUS => false,
            msr::GHCB => {
                if let Some(v) = self.vcpu(vcpu) {
                    v.lock().ghcb_msr = value;
                }
                true
            }
            _ => host.wrmsr(msr, value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::Regs;

    use crate::hooks::fake::{FakeHost, MEM};

    use crate::snp::testutil::*;

    #[test]
    fn launched_guests_get_vc_for_intercepted_instructions() {
        let kvm = guest(MEM);
        let host = FakeHost::new();
        let _snp = kvm.flavour_as::<SnpFirmware>();
        let mut regs = Regs::default();
        let code = |a: InsnAction| match a {
            InsnAction::Fault(f) if f.vector == vector::VC => f.error_code,
            _ => None,
        };
        for (insn, want) in [
            (Insn::Cpuid, exit::CPUID),
            (Insn::Ioio, exit::IOIO),
            (Insn::Vmmcall, exit::VMMCALL),
        ] {
            assert_eq!(
                code(kvm.insn(0, insn, &mut regs, &host).0),
                Some(want as u32)
            );
        }
        regs.gpr[gpr::RCX] = 0x830; // x2APIC ICR: intercepted
        assert_eq!(
            code(kvm.insn(0, Insn::Wrmsr, &mut regs, &host).0),
            Some(0x7c)
        );
        regs.gpr[gpr::RCX] = 0xC000_0101; // GS_BASE: in the VMSA
        assert_eq!(
            kvm.insn(0, Insn::Wrmsr, &mut regs, &host).0,
            InsnAction::Decline
        );
        regs.gpr[gpr::RCX] = u64::from(msr::SEV_STATUS);
        assert_eq!(
            kvm.insn(0, Insn::Rdmsr, &mut regs, &host).0,
            InsnAction::Done
        );
        assert_eq!((regs.gpr[gpr::RAX], regs.gpr[gpr::RDX]), (7, 0));
        assert_eq!(kvm.insn(0, Insn::Wrmsr, &mut regs, &host).0, gp0());
    }
}
