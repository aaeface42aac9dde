//! PVALIDATE and RMPADJUST: the guest's RMP instructions.

use super::*;
use crate::flavour::Ctx;
use crate::hooks::{gpr, InsnAction, RFLAGS_CF};
use crate::paging;
use cvmem_model::{SnpInsnOutcome, VcpuId, Vmpl};
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
        let gpa = match paging::linear_to_gpa(vmm, regs, regs.gpr[gpr::RAX], host) {
            Ok(gpa) => gpa,
            Err(f) => return InsnAction::Fault(f),
        };
        let (rcx, rdx) = (regs.gpr[gpr::RCX], regs.gpr[gpr::RDX]);
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
                    match vmm.exit_fault(self, vcpu, f, regs.gpr[gpr::RAX], fx) {
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
    use crate::hooks::{Access, Stage2Answer};
    use crate::paging::linear_to_gpa;
    use crate::snp::testutil::*;

    #[test]
    fn the_walker_follows_c_bit_tables_and_keeps_the_leaf_c_bit() {
        let kvm = guest(MEM);
        let vmm = &kvm.vmm;
        let host = FakeHost::new();
        let regs = tables(&host, 0x80_0000 | C_BIT);
        assert_eq!(
            linear_to_gpa(vmm, &regs, 0x4000_0123, &host),
            Ok(Gpa::new(0x80_0123 | C_BIT))
        );
        assert_eq!(
            linear_to_gpa(vmm, &regs, 0x4020_1234, &host),
            Ok(Gpa::new(0x20_1234 | C_BIT))
        );
        let pf = linear_to_gpa(vmm, &regs, 0x4000_1000, &host).unwrap_err();
        assert_eq!((pf.vector, pf.cr2), (vector::PF, Some(0x4000_1000)));
        // Paging off: the linear address is the GPA.
        let off = Regs::default();
        assert_eq!(
            linear_to_gpa(vmm, &off, 0x1234, &host),
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
}
