//! PVALIDATE and RMPADJUST: the guest's RMP instructions.

use super::*;
use crate::flavour::Ctx;
use crate::hooks::{gpr, InsnAction, RFLAGS_CF};
use crate::paging;
use cvmem_model::{Gva, PvalidateError, RmpPageSize, RmpadjustAttrs, SnpInsnOutcome, VcpuId, Vmpl};
use std::sync::atomic::Ordering;

impl SnpFirmware {
    /// PVALIDATE (`pvalidate`) or RMPADJUST: RAX is a linear address,
    /// translated through the guest's page tables; then the model's RMP.
    /// An exit on the way (the page is shared: KVM's memory-fault exit, the
    /// VMM converts; a 2M RMP page under a 4K request: PSMASH) is handled and
    /// the instruction runs again, as the guest would re-execute it.
    pub(super) fn rmp_insn(&self, cx: &mut Ctx<'_>, pvalidate: bool) -> InsnAction {
        if cx.regs.cpl != 0 {
            return gp0();
        }
        let (vmm, vcpu, host) = (cx.vmm, cx.vcpu, cx.host);
        let regs = &mut *cx.regs;
        let fx = &mut cx.fx;
        let counter = if pvalidate {
            &self.stats.pvalidates
        } else {
            &self.stats.rmpadjusts
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let vm = vmm.vm();
        let (rax, rcx, rdx) = (regs.gpr[gpr::RAX], regs.gpr[gpr::RCX], regs.gpr[gpr::RDX]);
        // The register operands are checked before RAX is translated (APM
        // vol. 3 PVALIDATE, RMPADJUST): a bad RCX or RDX, or a 2M request
        // at a linear address not 2M aligned, is FAIL_INPUT in EAX even
        // where RAX is not mapped; RAX's bits 11:0 are ignored. The vCPU
        // runs at VMPL0, so PVALIDATE's FAIL_PERMISSION cannot come first.
        let operands = RmpPageSize::from_operands(rax, rcx).is_some()
            && (pvalidate || RmpadjustAttrs::from_rdx(rdx).is_some());
        if !operands {
            regs.gpr[gpr::RAX] = u64::from(PvalidateError::FailInput.eax().unwrap_or(1));
            if pvalidate {
                regs.rflags &= !RFLAGS_CF;
            }
            return InsnAction::Done;
        }
        let gpa = match paging::linear_to_gpa(vmm, regs, Gva::new(rax), host) {
            Ok(gpa) => gpa,
            Err(f) => return InsnAction::Fault(f),
        };
        // Each exit resolves one obstacle (a conversion, a PSMASH); more
        // than a few in a row means another vCPU keeps undoing them.
        for _ in 0..8 {
            let outcome = if pvalidate {
                vm.snp_pvalidate(VcpuId(vcpu), gpa, Vmpl::Vmpl0, rcx, rdx & 1 != 0)
            } else {
                vm.snp_rmpadjust(VcpuId(vcpu), gpa, Vmpl::Vmpl0, rcx, rdx)
            };
            match outcome {
                SnpInsnOutcome::Completed { eax, cf, flush } => {
                    regs.gpr[gpr::RAX] = u64::from(eax);
                    if pvalidate {
                        regs.rflags = (regs.rflags & !RFLAGS_CF) | if cf { RFLAGS_CF } else { 0 };
                    }
                    fx.push_flush(vm.flush(flush));
                    return InsnAction::Done;
                }
                SnpInsnOutcome::Retry { flush } => fx.push_flush(vm.flush(flush)),
                SnpInsnOutcome::Fault(f) => {
                    match vmm.exit_fault(self, vcpu, f, Gva::new(regs.gpr[gpr::RAX]), fx) {
                        Ok(()) => {}
                        Err(action) => return action,
                    }
                }
                SnpInsnOutcome::Unsupported => return InsnAction::Decline,
            }
        }
        // Other vCPUs kept undoing what each exit resolved: KVM would
        // loop; cvmem stops rather than spin.
        vmm.stop(format!(
            "{} on vCPU {vcpu} made no progress in 8 exits",
            if pvalidate { "PVALIDATE" } else { "RMPADJUST" }
        ));
        InsnAction::Stop
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::fake::MEM;
    use crate::hooks::Regs;
    use crate::vmm::vector;

    use crate::hooks::fake::FakeHost;
    use crate::hooks::{Access, Insn, Stage2Answer};
    use crate::paging::linear_to_gpa;
    use crate::snp::testutil::*;

    #[test]
    fn the_walker_follows_c_bit_tables_and_keeps_the_leaf_c_bit() {
        let kvm = guest(MEM);
        let vmm = &kvm.vmm;
        let host = FakeHost::new();
        let regs = tables(&host, 0x80_0000 | C_BIT);
        assert_eq!(
            linear_to_gpa(vmm, &regs, Gva::new(0x4000_0123), &host),
            Ok(Gpa::new(0x80_0123 | C_BIT))
        );
        assert_eq!(
            linear_to_gpa(vmm, &regs, Gva::new(0x4020_1234), &host),
            Ok(Gpa::new(0x20_1234 | C_BIT))
        );
        let pf = linear_to_gpa(vmm, &regs, Gva::new(0x4000_1000), &host).unwrap_err();
        assert_eq!((pf.vector, pf.cr2), (vector::PF, Some(0x4000_1000)));
        // Paging off: the linear address is the GPA.
        let off = Regs::default();
        assert_eq!(
            linear_to_gpa(vmm, &off, Gva::new(0x1234), &host),
            Ok(Gpa::new(0x1234))
        );
    }
    #[test]
    fn pvalidate_through_the_page_tables() {
        let kvm = guest(8 << 20);
        let host = FakeHost::new();
        let mut regs = tables(&host, 0x90_0000 | C_BIT);
        // 0x90_0000 (9 MiB) is above the launch boundary: not validated.
        assert_eq!(
            access(&kvm, 0x90_0000 | C_BIT, Access::Read),
            Stage2Answer::Fault(Fault {
                vector: vector::VC,
                error_code: Some(0x404),
                cr2: None
            })
        );
        assert_eq!(
            pvalidate(&kvm, &host, &mut regs, 0x4000_0000, 0, 1),
            InsnAction::Done
        );
        assert_eq!((regs.gpr[gpr::RAX], regs.rflags & RFLAGS_CF), (0, 0));
        assert!(matches!(
            access(&kvm, 0x90_0000 | C_BIT, Access::Write),
            Stage2Answer::Allow { .. }
        ));
        // Again: no update, CF set.
        pvalidate(&kvm, &host, &mut regs, 0x4000_0000, 0, 1);
        assert_eq!(
            (regs.gpr[gpr::RAX], regs.rflags & RFLAGS_CF),
            (0, RFLAGS_CF)
        );
        // Rescind: #VC again.
        pvalidate(&kvm, &host, &mut regs, 0x4000_0000, 0, 0);
        assert_eq!((regs.gpr[gpr::RAX], regs.rflags & RFLAGS_CF), (0, 0));
        assert!(matches!(
            access(&kvm, 0x90_0000 | C_BIT, Access::Read),
            Stage2Answer::Fault(_)
        ));
        // A bad page size: FAIL_INPUT; an unmapped address: #PF; CPL 3: #GP.
        pvalidate(&kvm, &host, &mut regs, 0x4000_0000, 7, 1);
        assert_eq!(regs.gpr[gpr::RAX], 1);
        assert!(matches!(
            pvalidate(&kvm, &host, &mut regs, 0x5000_0000, 0, 1),
            InsnAction::Fault(Fault {
                vector: vector::PF,
                ..
            })
        ));
        regs.cpl = 3;
        assert!(matches!(
            pvalidate(&kvm, &host, &mut regs, 0x4000_0000, 0, 1),
            InsnAction::Fault(Fault { vector: 13, .. })
        ));
    }

    #[test]
    fn rax_alignment_of_pvalidate_and_rmpadjust() {
        let kvm = guest(8 << 20);
        let host = FakeHost::new();
        let mut regs = tables(&host, 0x90_0000 | C_BIT);
        // 4K with RAX not 4K aligned: bits 11:0 are ignored, the page
        // containing the address is validated.
        assert_eq!(
            pvalidate(&kvm, &host, &mut regs, 0x4000_0abc, 0, 1),
            InsnAction::Done
        );
        assert_eq!((regs.gpr[gpr::RAX], regs.rflags & RFLAGS_CF), (0, 0));
        assert!(matches!(
            access(&kvm, 0x90_0000 | C_BIT, Access::Read),
            Stage2Answer::Allow { .. }
        ));
        pvalidate(&kvm, &host, &mut regs, 0x4000_0fff, 0, 1);
        assert_eq!(
            (regs.gpr[gpr::RAX], regs.rflags & RFLAGS_CF),
            (0, RFLAGS_CF),
            "the same page: already validated"
        );
        // 2M with RAX not 2M aligned: FAIL_INPUT, CF clear, nothing
        // changed, and checked before the walk: an unmapped 2M-unaligned
        // address is FAIL_INPUT, not #PF.
        regs.rflags |= RFLAGS_CF;
        assert_eq!(
            pvalidate(&kvm, &host, &mut regs, 0x4020_1000, 1, 1),
            InsnAction::Done
        );
        assert_eq!((regs.gpr[gpr::RAX], regs.rflags & RFLAGS_CF), (1, 0));
        assert_eq!(
            pvalidate(&kvm, &host, &mut regs, 0x5000_1000, 1, 1),
            InsnAction::Done
        );
        assert_eq!(regs.gpr[gpr::RAX], 1);
        assert!(matches!(
            pvalidate(&kvm, &host, &mut regs, 0x5000_0000, 1, 1),
            InsnAction::Fault(Fault {
                vector: vector::PF,
                ..
            })
        ));
        // 2M at a 2M-aligned address with bits 11:0 set: the 2M page at
        // 0x4020_0000 (launched at 4K: FAIL_SIZEMISMATCH, not FAIL_INPUT).
        pvalidate(&kvm, &host, &mut regs, 0x4020_0abc, 1, 1);
        assert_eq!(regs.gpr[gpr::RAX], 6);
        // RMPADJUST: the same rule; RDX is checked before the walk too.
        let mut adjust = |la: u64, rcx: u64, rdx: u64| {
            regs.gpr[gpr::RAX] = la;
            regs.gpr[gpr::RCX] = rcx;
            regs.gpr[gpr::RDX] = rdx;
            let action = kvm.insn(0, Insn::Rmpadjust, &mut regs, &host).0;
            (action, regs.gpr[gpr::RAX])
        };
        assert_eq!(adjust(0x4000_0abc, 0, 0x101), (InsnAction::Done, 0));
        assert_eq!(adjust(0x4020_1000, 1, 0x101), (InsnAction::Done, 1));
        assert_eq!(adjust(0x5000_1000, 1, 0x101), (InsnAction::Done, 1));
        assert_eq!(adjust(0x5000_0000, 0, 1 << 17), (InsnAction::Done, 1));
        assert!(matches!(
            adjust(0x5000_0000, 0, 0x101).0,
            InsnAction::Fault(Fault {
                vector: vector::PF,
                ..
            })
        ));
    }
}
