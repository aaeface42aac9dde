//! #VE: the virtualization exceptions the TDX module injects (EPT
//! violations, instructions a TD may not execute) and their VE information.

use super::*;
use crate::hooks::{gpr, Fault, Host, Insn, InsnAction, Regs};
use crate::vmm::{vector, Vmm};
use cvmem_model::{Gpa, Gva, VeInfo};
use std::sync::atomic::Ordering;

/// VMX basic exit reasons of instruction-caused #VEs (SDM Appendix C).
pub(super) const EXIT_REASON_HLT: u32 = 12;
pub(super) const EXIT_REASON_VMCALL: u32 = 18;

pub(super) const EXIT_REASON_IO_INSTRUCTION: u32 = 30;

/// The VMX exit qualification of an I/O instruction (SDM vol. 3C Table
/// 28-5) from the SVM IOIO EXITINFO1 QEMU gives (APM vol. 2 15.10.2):
/// bits 2:0 the size - 1 (0, 1 or 3), bit 3 IN, bit 4 string, bit 5 REP,
/// bit 6 the operand encoding (1: an immediate port, which EXITINFO1 does
/// not say: `imm`), bits 31:16 the port.
pub(super) fn io_exit_qualification(info: u64, imm: bool) -> u64 {
    let size: u64 = if info & (1 << 4) != 0 {
        1
    } else if info & (1 << 5) != 0 {
        2
    } else {
        4
    };
    let mut q = (size - 1) | (info & 0xffff_0000);
    for (svm, vmx) in [(0, 3), (2, 4), (3, 5)] {
        if info & (1 << svm) != 0 {
            q |= 1 << vmx;
        }
    }
    if imm {
        q |= 1 << 6;
    }
    q
}

/// Whether the I/O instruction at `regs.rip` takes its port as an imm8
/// (IN/OUT E4-E7 ib) rather than from DX (EC-EF, INS/OUTS): the second
/// last byte is the opcode and the last the port, where DX forms end with
/// their opcode after prefixes (none of which is E4-E7). Read through the
/// guest's page tables (a TD runs in long mode, CS base 0, so RIP is the
/// linear address); unreadable bytes count as DX, which Linux ignores.
pub(super) fn io_operand_is_immediate(vmm: &Vmm, regs: &Regs, host: &dyn Host) -> bool {
    if regs.info & (1 << 2) != 0 || regs.insn_len < 2 {
        return false;
    }
    let at = Gva::new(regs.rip.wrapping_add(u64::from(regs.insn_len) - 2));
    let mut b = [0u8; 2];
    if !crate::paging::read_linear(vmm, regs, at, &mut b, host) {
        return false;
    }
    (0xe4..=0xe7).contains(&b[0]) && u64::from(b[1]) == (regs.info >> 16) & 0xff
}

impl TdxModule {
    /// The module's `td_generic_ve_exit(exit_reason, 0)` for the
    /// instruction of `cx` (CPUID, RDMSR, WRMSR): VE info with exit
    /// qualification, GLA and GPA 0 and the instruction length, counted in
    /// `counter` when it is a #VE (not the #DF of unread VE info).
    pub(super) fn generic_ve(
        &self,
        cx: &mut crate::flavour::Ctx<'_>,
        exit_reason: u32,
        counter: &std::sync::atomic::AtomicU64,
    ) -> InsnAction {
        self.qualified_ve(cx, exit_reason, 0, counter)
    }

    /// As [`Self::generic_ve`], with the exit qualification the module
    /// passes on (`tdx_inject_ve(reason, qualification, ...)`; a CR
    /// access's, td_other_exits.c).
    pub(super) fn qualified_ve(
        &self,
        cx: &mut crate::flavour::Ctx<'_>,
        exit_reason: u32,
        exit_qualification: u64,
        counter: &std::sync::atomic::AtomicU64,
    ) -> InsnAction {
        let ve = VeInfo {
            exit_reason,
            exit_qualification,
            gla: Gva::new(0),
            gpa: cvmem_model::Gpa::new(0),
        };
        match self.record_ve(cx.vcpu, ve, cx.regs.insn_len) {
            Some(fault) => {
                if fault.vector == crate::vmm::vector::VE {
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                InsnAction::Fault(fault)
            }
            None => gp0(),
        }
    }

    /// A #VE for an EPT violation met at softTLB fill: `ve` with the
    /// linear address and its exit-qualification bits filled in from `req`
    /// (paging on), recorded, and raised (or #DF over unread VE info). The
    /// VM stops if `req`'s vCPU is not one the module has.
    pub(super) fn stage2_ve(
        &self,
        vmm: &Vmm,
        req: &Stage2Request,
        gpa: Gpa,
        mut ve: VeInfo,
    ) -> Stage2Answer {
        // Exit qualification bit 7: the linear address is valid; bit 8: the
        // access was to the translated address, not a paging structure
        // (SDM Table 28-7).
        if req.paging {
            ve.gla = req.gva;
            ve.exit_qualification |= 1 << 7;
            if !req.page_walk {
                ve.exit_qualification |= 1 << 8;
            }
        }
        if vmm.audit {
            // Counted as refused; the guest never sees it, so no VE
            // information waits to be read (which would make the next #VE
            // a #DF).
            return Stage2Answer::Fault(Fault {
                vector: vector::VE,
                error_code: None,
                cr2: None,
            });
        }
        match self.record_ve(req.vcpu_index, ve, 0) {
            Some(fault) => Stage2Answer::Fault(fault),
            None => vmm.stop(format!(
                "EPT violation at GPA {:#x} on vCPU {}, which the TDX module does not have",
                gpa.raw(),
                req.vcpu_index
            )),
        }
    }

    /// Records the #VE information of a #VE about to be injected in `vcpu`
    /// (`insn_len`: the instruction length of an instruction-caused #VE, 0
    /// for an EPT violation) and returns the exception to raise: #VE, or
    /// #DF if the previous #VE's information is still unread. The TDX
    /// module delivers a #VE only while VE_INFO.VALID is clear; "a nested
    /// #VE which occurs before [TDG.VP.VEINFO.GET] will raise a #DF and is
    /// not recoverable" (Linux `tdx_get_ve_info()`; the module's
    /// `tdx_inject_ve()` injects #DF instead). So a guest's #VE handler
    /// must read the VE information before anything that may #VE again,
    /// port I/O (a console line) and HLT included. `None`: no such vCPU.
    pub fn record_ve(&self, vcpu: u32, ve: VeInfo, insn_len: u32) -> Option<Fault> {
        let mut v = self.vcpus.get(vcpu as usize)?.lock();
        if v.ve.is_some() {
            self.stats.double_ves.fetch_add(1, Ordering::Relaxed);
            return Some(Fault {
                vector: vector::DF,
                error_code: Some(0),
                cr2: None,
            });
        }
        v.ve = Some((ve, insn_len));
        self.stats.ves.fetch_add(1, Ordering::Relaxed);
        Some(Fault {
            vector: vector::VE,
            error_code: None,
            cr2: None,
        })
    }

    /// An instruction the TDX module does not let a TD execute: port I/O
    /// (every IN, OUT, INS, OUTS) and HLT exit to the module, which
    /// reflects them to the guest as a #VE with the exit reason, the exit
    /// qualification and the instruction length in the VE information
    /// (TDX module base spec, "#VE on instruction execution": IN/OUT/INS/
    /// OUTS and HLT are among the unconditionally #VE-inducing
    /// instructions). The guest emulates them with TDVMCALL IO or HLT and
    /// skips the instruction by that length (Linux `handle_io()`,
    /// `handle_halt()`, `ve_instr_len()`). Before launch (SeaBIOS, the
    /// option ROMs: the VMM's loader, not the TD) the instructions run as
    /// they are. `None`: QEMU runs the instruction.
    pub fn instruction_ve(
        &self,
        vmm: &Vmm,
        vcpu: u32,
        insn: Insn,
        regs: &Regs,
        host: &dyn Host,
    ) -> Option<InsnAction> {
        if !self.launched() {
            return None;
        }
        let (exit_reason, exit_qualification) = match insn {
            Insn::Ioio => {
                let imm = io_operand_is_immediate(vmm, regs, host);
                (
                    EXIT_REASON_IO_INSTRUCTION,
                    io_exit_qualification(regs.info, imm),
                )
            }
            Insn::Hlt => (EXIT_REASON_HLT, 0),
            _ => return None,
        };
        let ve = VeInfo {
            exit_reason,
            exit_qualification,
            gla: Gva::new(0),
            gpa: Gpa::new(0),
        };
        let by_reason = match insn {
            Insn::Ioio => &self.stats.io_ves,
            _ => &self.stats.hlt_ves,
        };
        let fault = self.record_ve(vcpu, ve, regs.insn_len)?;
        if fault.vector == vector::VE {
            by_reason.fetch_add(1, Ordering::Relaxed);
        }
        Some(InsnAction::Fault(fault))
    }

    /// VMCALL in a TD: the module reflects the exit as a #VE with exit
    /// reason 18 and the instruction length (tdx_td_dispatcher.c,
    /// VMEXIT_REASON_VMCALL_INSTRUCTION -> td_generic_ve_exit()), at any
    /// CPL; a TD asks its VMM with TDG.VP.VMCALL instead (Linux
    /// `tdx_kvm_hypercall()`). While the VMM's loader runs (before launch,
    /// or paging off without TDVF) it is KVM's hypercall, as for any guest.
    pub(super) fn vmcall_insn(&self, cx: &mut crate::flavour::Ctx<'_>) -> InsnAction {
        if self.loader_runs(cx.regs) {
            cx.vmm.hypercall(self, cx.regs, &mut cx.fx);
            return InsnAction::Done;
        }
        self.generic_ve(cx, EXIT_REASON_VMCALL, &self.stats.vmcall_ves)
    }

    pub(super) fn veinfo_get(&self, vcpu: u32, regs: &mut Regs) -> u64 {
        let Some((ve, insn_len)) = self
            .vcpus
            .get(vcpu as usize)
            .and_then(|v| v.lock().ve.take())
        else {
            return status::NO_VALID_VE_INFO;
        };
        regs.gpr[gpr::RCX] = u64::from(ve.exit_reason);
        regs.gpr[gpr::RDX] = ve.exit_qualification;
        regs.gpr[gpr::R8] = ve.gla.raw();
        regs.gpr[gpr::R9] = ve.gpa.raw();
        // Bits 31:0 the instruction length (0 where not defined, as for an
        // EPT violation), 63:32 the instruction information (none of the
        // exits here has any).
        regs.gpr[gpr::R10] = u64::from(insn_len);
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Config;
    use crate::hooks::fake::report_ram;
    use crate::hooks::fake::{FakeHost, MEM};
    use crate::hooks::{Access, Stage2Answer, Stage2Request};
    use crate::kvm::Kvm;
    use crate::tdx::testutil::*;
    use cvmem_model::BackingAddr;
    use cvmem_model::Gfn;
    #[allow(unused_imports)]
    use cvmem_model::Gpa;
    use cvmem_model::{TdAttributes, VmType};
    #[test]
    fn shared_mmio_is_a_ve_that_the_guest_emulates() {
        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        let host = FakeHost::new();
        let ioapic = 0xfec0_0000 | SHARED;
        // Before launch (paging off) the VMM's loader reaches MMIO directly.
        let mut req = Stage2Request {
            gpa: Gpa::new(0xfec0_0000),
            gva: Gva::new(0xfec0_0000),
            vcpu_index: 0,
            access: Access::Write,
            cpl: 0,
            page_walk: false,
            paging: false,
        };
        assert!(matches!(
            kvm.stage2(&req).0,
            Stage2Answer::Allow { backing, .. } if backing == BackingAddr::new(0xfec0_0000)
        ));
        // In the running TD: an EPT-violation #VE with the shared GPA, read
        // once with TDG.VP.VEINFO.GET; the guest then asks for the access.
        call(&kvm, &host, leaf::VP_INFO, &[]);
        assert!(matches!(
            access(&kvm, ioapic | 0x10, Access::Write),
            Stage2Answer::Fault(Fault { vector: 20, .. })
        ));
        let r = call(&kvm, &host, leaf::VP_VEINFO_GET, &[]);
        assert_eq!((r.gpr[gpr::RCX], r.gpr[gpr::R9]), (48, ioapic | 0x10));
        assert_eq!(
            r.gpr[gpr::RDX] & 0x187,
            0x182,
            "write, GLA valid, translated"
        );
        let r = vmcall(
            &kvm,
            &host,
            vmcall::EPT_VIOLATION,
            &[4, 1, ioapic | 0x10, 7],
        );
        assert_eq!(r.gpr[gpr::R10], vmcall::SUCCESS);
        // Page-walk reads are not the TD's MMIO (and never reach here on
        // hardware); with paging off nothing is the TD's.
        req.gpa = Gpa::new(ioapic);
        req.paging = true;
        req.page_walk = true;
        assert!(matches!(kvm.stage2(&req).0, Stage2Answer::Allow { .. }));
    }
    /// VMCALL: KVM's hypercall while the VMM's loader runs; in the running
    /// TD the module's #VE with exit reason 18 and the instruction length
    /// (tdx_td_dispatcher.c), never a hypercall.
    #[test]
    fn vmcall_in_a_running_td_is_a_ve() {
        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        let tdx = kvm.flavour_as::<TdxModule>();
        let host = FakeHost::new();
        let mut regs = insn_regs(&host, 0x5000, &[0x0f, 0x01, 0xc1], 0);
        // An unknown hypercall number: -KVM_ENOSYS from KVM.
        regs.gpr[gpr::RAX] = 0xdead;
        assert_eq!(
            kvm.insn(0, Insn::Vmcall, &mut regs, &host).0,
            InsnAction::Done
        );
        assert_eq!(regs.gpr[gpr::RAX], (-1000i64) as u64);
        access(&kvm, 0x1000, Access::Read);
        assert!(tdx.launched());
        regs.gpr[gpr::RAX] = 0xdead;
        assert_eq!(
            kvm.insn(0, Insn::Vmcall, &mut regs, &host).0,
            InsnAction::Fault(Fault {
                vector: vector::VE,
                error_code: None,
                cr2: None,
            })
        );
        assert_eq!(regs.gpr[gpr::RAX], 0xdead, "no hypercall ran");
        let r = call(&kvm, &host, leaf::VP_VEINFO_GET, &[]);
        assert_eq!(
            (
                r.gpr[gpr::RAX],
                r.gpr[gpr::RCX],
                r.gpr[gpr::RDX],
                r.gpr[gpr::R10]
            ),
            (0, 18, 0, 3)
        );
        assert_eq!(tdx.stats.vmcall_ves.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn port_io_and_hlt_raise_ve_in_a_running_td() {
        const IN: u64 = 1;
        const STR: u64 = 1 << 2;
        const REP: u64 = 1 << 3;
        const SZ8: u64 = 1 << 4;
        const SZ16: u64 = 1 << 5;
        const SZ32: u64 = 1 << 6;
        const A64: u64 = 1 << 9;
        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        let tdx = kvm.flavour_as::<TdxModule>();
        let host = FakeHost::new();
        let ve = |regs: &Regs, insn| tdx.instruction_ve(&kvm.vmm, 0, insn, regs, &host);
        let ve_fault = Some(InsnAction::Fault(Fault {
            vector: vector::VE,
            error_code: None,
            cr2: None,
        }));
        // out %al, $0xf4
        let out = insn_regs(&host, 0x5000, &[0xe6, 0xf4], 0xf4 << 16 | SZ8 | A64);
        // Before launch (SeaBIOS, paging off) the instructions run.
        assert_eq!(ve(&out, Insn::Ioio), None);
        assert_eq!(ve(&out, Insn::Hlt), None);
        access(&kvm, 0x1000, Access::Read);
        assert!(tdx.launched());
        assert_eq!(ve(&out, Insn::Ioio), ve_fault);
        // Exit reason 30, qualification as SDM Table 28-5 (size 1, OUT,
        // immediate, port 0xf4), the instruction's length in R10.
        let r = call(&kvm, &host, leaf::VP_VEINFO_GET, &[]);
        assert_eq!(
            (
                r.gpr[gpr::RAX],
                r.gpr[gpr::RCX],
                r.gpr[gpr::RDX],
                r.gpr[gpr::R10]
            ),
            (0, 30, 0xf4 << 16 | 1 << 6, 2)
        );
        assert_eq!((r.gpr[gpr::R8], r.gpr[gpr::R9]), (0, 0));
        // in (%dx), %ax; in $0xec, %eax (an imm8 that looks like an
        // opcode); outl %eax, (%dx); rep outsb; rep insw.
        for (code, info, qual) in [
            (
                &[0x66, 0xed][..],
                0x3fd << 16 | IN | SZ16 | A64,
                0x3fd << 16 | 1 << 3 | 1,
            ),
            (
                &[0xe5, 0xec][..],
                0xec << 16 | IN | SZ32 | A64,
                0xec << 16 | 1 << 6 | 1 << 3 | 3,
            ),
            (&[0xef][..], 0xcfc << 16 | SZ32 | A64, 0xcfc << 16 | 3),
            (
                &[0xf3, 0x6e][..],
                0x3f8 << 16 | STR | REP | SZ8 | A64,
                0x3f8 << 16 | 3 << 4,
            ),
            (
                &[0x66, 0xf3, 0x6d][..],
                0x510 << 16 | IN | STR | REP | SZ16 | A64,
                0x510 << 16 | 7 << 3 | 1,
            ),
        ] {
            let regs = insn_regs(&host, 0x6000, code, info);
            assert_eq!(ve(&regs, Insn::Ioio), ve_fault);
            let r = call(&kvm, &host, leaf::VP_VEINFO_GET, &[]);
            assert_eq!(
                (r.gpr[gpr::RCX], r.gpr[gpr::RDX], r.gpr[gpr::R10]),
                (30, qual, code.len() as u64),
                "{code:x?}"
            );
        }
        // HLT: exit reason 12, no qualification, length 1.
        let hlt = insn_regs(&host, 0x7000, &[0xf4], 0);
        assert_eq!(ve(&hlt, Insn::Hlt), ve_fault);
        // Port I/O or an EPT violation before TDG.VP.VEINFO.GET (a #VE
        // handler that prints first): #DF, and the first VE info stays.
        assert_eq!(
            ve(&out, Insn::Ioio),
            Some(InsnAction::Fault(Fault {
                vector: vector::DF,
                error_code: Some(0),
                cr2: None,
            }))
        );
        assert!(matches!(
            access(&kvm, SHARED | 0xfec0_0000, Access::Read),
            Stage2Answer::Fault(Fault { vector: 8, .. })
        ));
        let r = call(&kvm, &host, leaf::VP_VEINFO_GET, &[]);
        assert_eq!(
            (r.gpr[gpr::RCX], r.gpr[gpr::RDX], r.gpr[gpr::R10]),
            (12, 0, 1)
        );
        let r = call(&kvm, &host, leaf::VP_VEINFO_GET, &[]);
        assert_eq!(r.gpr[gpr::RAX], status::NO_VALID_VE_INFO);
        let s = &tdx.stats;
        assert_eq!(
            [&s.ves, &s.io_ves, &s.hlt_ves, &s.double_ves].map(|c| c.load(Ordering::Relaxed)),
            [7, 6, 1, 2]
        );
    }
    #[test]
    fn strict_mode_gives_ve_instead_of_converting() {
        let config = Config {
            vm_type: VmType::Tdx,
            strict: true,
            ..Config::default()
        };
        let kvm = Kvm::new(&config, 1).unwrap();
        report_ram(&kvm);
        access(&kvm, 0x1000, Access::Read);
        assert!(matches!(
            access(&kvm, SHARED | 0x5000, Access::Write),
            Stage2Answer::Fault(Fault { vector: 20, .. })
        ));
        assert!(kvm.vm().is_private(Gfn::new(5)), "not converted");
        let host = FakeHost::new();
        let r = call(&kvm, &host, leaf::VP_VEINFO_GET, &[]);
        assert_eq!(r.gpr[gpr::R9], SHARED | 0x5000);
        // Without strict: converted, retried.
        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        access(&kvm, 0x1000, Access::Read);
        assert_eq!(
            access(&kvm, SHARED | 0x5000, Access::Write),
            Stage2Answer::Retry
        );
        assert!(!kvm.vm().is_private(Gfn::new(5)));
        // A private access to MMIO: QEMU cannot convert it; the VM stops
        // and the summary says which access stopped it.
        assert_eq!(access(&kvm, 0xfed0_0000, Access::Read), Stage2Answer::Stop);
        assert!(kvm.vmm.lifecycle.is_dead());
        assert!(kvm.vmm.lifecycle.describe().starts_with(
            "VM stopped by the modelled KVM: vCPU 0 read of GPA 0xfed00000 through the private alias"
        ));
    }
}
