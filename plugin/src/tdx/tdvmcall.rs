//! TDG.VP.VMCALL: the module's register-exposure rules, and KVM's (and
//! QEMU's) handling of the TDVMCALLs a TD makes (`handle_tdvmcall()`).

use super::cpuid::{kvm_cpuid, KVM_CPUID_LAST, KVM_CPUID_SIGNATURE};
use super::*;
use crate::effects::Effects;
use crate::hooks::{gpr, Host, InsnAction, Regs};
use crate::vmm::Vmm;
use cvmem_model::{Alias, Gfn, GfnRange, Gpa, PAGE_SIZE};
use std::sync::atomic::Ordering;

/// Bits of TDG.VP.VMCALL's RCX: which GPRs the guest exposes to the VMM.
pub(super) mod expose {
    /// RAX, RCX and RSP can never be exposed; R10 and R11 always must be
    /// (TDX module ABI, TDG.VP.VMCALL operand checks). Bits 31:16 select XMM
    /// registers (allowed, none of cvmem's handlers use them); 63:32 are
    /// reserved.
    pub const FORBIDDEN: u64 = (1 << 0) | (1 << 1) | (1 << 4) | (0xFFFF_FFFF << 32);
    pub const REQUIRED: u64 = (1 << 10) | (1 << 11);
}

impl TdxModule {
    /// TDG.VP.VMCALL: checks RCX, gives the VMM only the exposed registers,
    /// and returns only those.
    pub(super) fn vp_vmcall(&self, cx: &mut Ctx<'_>) -> InsnAction {
        let mask = cx.regs.gpr[gpr::RCX];
        if mask & expose::FORBIDDEN != 0 || mask & expose::REQUIRED != expose::REQUIRED {
            cx.regs.gpr[gpr::RAX] = operand_invalid(status::OPERAND_RCX);
            return InsnAction::Done;
        }
        self.stats.tdvmcalls.fetch_add(1, Ordering::Relaxed);
        let exposed = |i: usize| mask & (1 << i) != 0;
        // The registers as the VMM sees them.
        let mut vmm = [0u64; 16];
        for (i, v) in vmm.iter_mut().enumerate() {
            if exposed(i) {
                *v = cx.regs.gpr[i];
            }
        }
        // GHCI TDG.VP.VMCALL<Instruction.HLT>: R12 is the guest's "interrupt
        // blocked" flag; KVM halts the vCPU (kvm_emulate_halt_noskip()) and
        // wakes it on a pending interrupt unless the flag was set. What the
        // VMM sees decides (registers not exposed read as 0).
        let hlt = (vmm[gpr::R10], vmm[gpr::R11]) == (0, vmcall::HLT);
        let irq_blocked = vmm[gpr::R12] != 0;
        self.tdvmcall(cx, &mut vmm, mask);
        for (i, v) in vmm.iter().enumerate() {
            if exposed(i) {
                cx.regs.gpr[i] = *v;
            }
        }
        cx.regs.gpr[gpr::RAX] = 0;
        if hlt && vmm[gpr::R10] == vmcall::SUCCESS {
            return InsnAction::Halt {
                irq_wakes: !irq_blocked,
            };
        }
        InsnAction::Done
    }

    /// KVM's `handle_tdvmcall()`: R10 = 0 is a standard TDVMCALL with the
    /// sub-function in R11; R10 != 0 is a KVM hypercall with number R10.
    /// The status goes to R10. `r` holds the registers the guest exposed.
    pub(super) fn tdvmcall(&self, cx: &mut Ctx<'_>, r: &mut [u64; 16], mask: u64) {
        use vmcall::*;
        let (vmm, host) = (cx.vmm, cx.host);
        self.stats.count_tdvmcall(r[gpr::R10], r[gpr::R11]);
        if r[gpr::R10] != 0 {
            // tdx_emulate_vmcall(): KVM's hypercall ABI in R10..R14.
            let mut hc = Regs {
                cpl: 0,
                ..Regs::default()
            };
            hc.gpr[gpr::RAX] = r[gpr::R10];
            hc.gpr[gpr::RBX] = r[gpr::R11];
            hc.gpr[gpr::RCX] = r[gpr::R12];
            hc.gpr[gpr::RDX] = r[gpr::R13];
            hc.gpr[gpr::RSI] = r[gpr::R14];
            vmm.hypercall(&mut hc, &mut cx.fx);
            r[gpr::R10] = hc.gpr[gpr::RAX];
            return;
        }
        let (a, b, c, d) = (r[gpr::R12], r[gpr::R13], r[gpr::R14], r[gpr::R15]);
        let status = match r[gpr::R11] {
            GET_TD_VM_CALL_INFO => {
                if a == 0 {
                    for i in [gpr::R11, gpr::R12, gpr::R13, gpr::R14] {
                        r[i] = 0;
                    }
                    SUCCESS
                } else {
                    INVALID_OPERAND
                }
            }
            MAP_GPA => {
                let (st, next) = self.map_gpa(vmm, a, b, &mut cx.fx);
                if let Some(next) = next {
                    r[gpr::R11] = next;
                }
                st
            }
            GET_QUOTE => self.get_quote(vmm, a, b, host),
            REPORT_FATAL_ERROR => {
                self.report_fatal_error(vmm, r, mask, host);
                SUCCESS
            }
            CPUID => {
                // KVM answers from the CPUID table QEMU gave it, its own
                // paravirtual leaves included.
                let leaf = a as u32;
                let out = if (KVM_CPUID_SIGNATURE..=KVM_CPUID_LAST).contains(&leaf) {
                    kvm_cpuid(leaf)
                } else {
                    host.cpuid(leaf, b as u32)
                };
                for (i, reg) in [gpr::R12, gpr::R13, gpr::R14, gpr::R15]
                    .into_iter()
                    .enumerate()
                {
                    r[reg] = u64::from(out[i]);
                }
                SUCCESS
            }
            HLT => SUCCESS,
            IO => {
                // tdx_emulate_io(): R12 size, R13 direction, R14 port, R15 data.
                if !matches!(a, 1 | 2 | 4) || b > 1 || c > 0xffff {
                    INVALID_OPERAND
                } else {
                    let v = host.pio(c as u16, a as u8, b == 1, d as u32);
                    if b == 0 {
                        r[gpr::R11] = u64::from(v);
                    }
                    SUCCESS
                }
            }
            // KVM's tdx_get_msr()/tdx_set_msr(): only the MSRs it emulates
            // for a TD, then QEMU's emulation (kvm_{get,set}_msr_common()).
            MSR_READ => match u32::try_from(a)
                .ok()
                .and_then(|m| super::msr::kvm_rdmsr(m, host))
            {
                Some(v) => {
                    r[gpr::R11] = v;
                    SUCCESS
                }
                None => INVALID_OPERAND,
            },
            MSR_WRITE => match u32::try_from(a) {
                Ok(m) if super::msr::kvm_wrmsr(m, b, host) => SUCCESS,
                _ => INVALID_OPERAND,
            },
            EPT_VIOLATION => match self.mmio(vmm, a, b, c, d, host) {
                Some(v) => {
                    if b == 0 {
                        r[gpr::R11] = v;
                    }
                    SUCCESS
                }
                None => INVALID_OPERAND,
            },
            _ => SUBFUNC_UNSUPPORTED,
        };
        r[gpr::R10] = status;
    }

    /// MapGPA (`tdx_map_gpa()` in KVM): R12 the start GPA (the shared bit
    /// says which way), R13 the size. KVM refuses unaligned, empty,
    /// wrapping or out-of-GPAW ranges and ranges whose ends are on
    /// different sides; QEMU then converts (`kvm_convert_memory()`). At most
    /// `map_gpa_chunk` bytes are converted per call: if more remain the
    /// answer is RETRY with R11 = where to resume (GHCI MapGPA). On a
    /// failure R11 is the GPA that failed. Returns the status and the new
    /// R11, if any; the conversion's effects go to `fx`.
    pub(super) fn map_gpa(
        &self,
        vmm: &Vmm,
        gpa: u64,
        size: u64,
        fx: &mut Effects,
    ) -> (u64, Option<u64>) {
        use vmcall::*;
        let vm = vmm.vm();
        let width = vm.config().gpaw.bits();
        let legal = |g: u64| g >> width == 0;
        let shared_bit = 1u64 << (width - 1);
        if gpa % PAGE_SIZE != 0
            || size % PAGE_SIZE != 0
            || size == 0
            || gpa.checked_add(size).is_none()
            || !legal(gpa)
            || !legal(gpa + size - 1)
            || (gpa & shared_bit) != ((gpa + size - 1) & shared_bit)
        {
            return (INVALID_OPERAND, None);
        }
        let private = gpa & shared_bit == 0;
        let len = size.min(self.map_gpa_chunk);
        let start = (gpa & !shared_bit) / PAGE_SIZE;
        let range =
            GfnRange::from_start_len(Gfn::new(start), len / PAGE_SIZE).expect("checked above");
        match vmm.convert(range, private, true, fx) {
            Ok(()) => {
                self.stats.map_gpa.fetch_add(1, Ordering::Relaxed);
                if len < size {
                    (RETRY, Some(gpa + len))
                } else {
                    (SUCCESS, None)
                }
            }
            Err(msg) => {
                eprintln!("cvmem: TDVMCALL MapGPA {gpa:#x}+{size:#x}: {msg}");
                (INVALID_OPERAND, Some(gpa))
            }
        }
    }

    /// ReportFatalError: R12 the error code, R13 an optional GPA, and a
    /// message of up to 64 bytes in R14, R15, RBX, RDI, RSI, R8, R9, RDX
    /// when R14 is exposed (GHCI; QEMU `tdx_handle_report_fatal_error()`).
    pub(super) fn report_fatal_error(&self, vmm: &Vmm, r: &[u64; 16], mask: u64, host: &dyn Host) {
        let code = r[gpr::R12];
        let mut message = String::new();
        if mask & (1 << gpr::R14) != 0 {
            let bytes: Vec<u8> = [
                gpr::R14,
                gpr::R15,
                gpr::RBX,
                gpr::RDI,
                gpr::RSI,
                gpr::R8,
                gpr::R9,
                gpr::RDX,
            ]
            .iter()
            .flat_map(|&i| r[i].to_le_bytes())
            .take_while(|&b| b != 0)
            .collect();
            message = String::from_utf8_lossy(&bytes).into_owned();
        }
        let gpa = if code & vmcall::FATAL_GPA_VALID != 0 {
            format!(" (data at GPA {:#x})", r[gpr::R13])
        } else {
            String::new()
        };
        eprintln!("cvmem: the TD reported a fatal error {code:#x}{gpa}: {message}");
        vmm.lifecycle.guest_panic(format!(
            "the TD reported a fatal error (TDG.VP.VMCALL<ReportFatalError>) \
             {code:#x}{gpa}: \"{}\"",
            message.escape_debug()
        ));
        host.guest_panicked();
    }

    /// #VE.RequestMMIO: R12 size, R13 direction, R14 the shared GPA, R15
    /// the data (`tdx_emulate_mmio()`: the GPA must be shared, the access
    /// must stay in one page and must not hit a memslot).
    pub(super) fn mmio(
        &self,
        vmm: &Vmm,
        size: u64,
        dir: u64,
        gpa: u64,
        data: u64,
        host: &dyn Host,
    ) -> Option<u64> {
        if !matches!(size, 1 | 2 | 4 | 8) || dir > 1 {
            return None;
        }
        let vm = vmm.vm();
        let d = vm.decode(Gpa::new(gpa))?;
        if d.alias != Alias::Shared {
            return None;
        }
        let addr = d.gfn.gpa().raw() | d.offset;
        if (addr ^ (addr + size - 1)) & !(PAGE_SIZE - 1) != 0 {
            return None;
        }
        if vm.memslots().find(d.gfn).is_some() {
            return None;
        }
        // No memslot: QEMU's MMIO at the unaliased GPA.
        let at = vmm.unaliased_addr(Gpa::new(gpa));
        let n = size as usize;
        if dir == 1 {
            let bytes = data.to_le_bytes();
            // Unassigned space drops the write, as QEMU does.
            host.phys_write(at, &bytes[..n]);
            Some(0)
        } else {
            let mut bytes = [0u8; 8];
            if !host.phys_read(at, &mut bytes[..n]) {
                bytes = [0; 8];
            }
            Some(u64::from_le_bytes(bytes))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cvmem_model::BackingAddr;

    use crate::hooks::fake::{FakeHost, MEM};
    use crate::hooks::{Access, Stage2Answer};

    use crate::tdx::testutil::*;
    use cvmem_model::TdAttributes;
    #[test]
    fn hlt_halts_the_vcpu_as_kvm_does() {
        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        let host = FakeHost::new();
        let halt = |mask, args: &[u64]| {
            let (r, action) = vmcall_action(&kvm, &host, mask, vmcall::HLT, args);
            (r.gpr[gpr::R10], action)
        };
        // R12 = 0: interrupts not blocked, a pending one wakes the vCPU
        // even with RFLAGS.IF clear (Linux's tdx_safe_halt()).
        assert_eq!(
            halt(0xfc00, &[0]),
            (0, InsnAction::Halt { irq_wakes: true })
        );
        // R12 = 1: blocked, the vCPU halts as HLT would (Linux's tdx_halt()
        // with interrupts off).
        assert_eq!(
            halt(0xfc00, &[1]),
            (0, InsnAction::Halt { irq_wakes: false })
        );
        // R12 not exposed: the VMM reads 0.
        assert_eq!(
            halt(0x0c00, &[1]),
            (0, InsnAction::Halt { irq_wakes: true })
        );
        // R11 = 12 under R10 != 0 is KVM hypercall 12's argument, no HLT.
        let mut regs = Regs::default();
        regs.gpr[gpr::RAX] = leaf::VP_VMCALL;
        regs.gpr[gpr::RCX] = 0xfc00;
        regs.gpr[gpr::R10] = 1;
        regs.gpr[gpr::R11] = vmcall::HLT;
        assert_eq!(tdcall(&kvm, &host, &mut regs), InsnAction::Done);
    }
    #[test]
    fn map_gpa_converts_in_chunks_with_retry() {
        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        let host = FakeHost::new();
        access(&kvm, 0x1000, Access::Read);
        host.phys_write(BackingAddr::new(0x40_0000), b"secret");
        // 3 MiB to shared with a 2 MiB chunk: RETRY at +2M, then done.
        let r = vmcall(&kvm, &host, vmcall::MAP_GPA, &[SHARED | 0x40_0000, 3 << 20]);
        assert_eq!(r.gpr[gpr::R10], vmcall::RETRY);
        assert_eq!(r.gpr[gpr::R11], SHARED | 0x60_0000);
        let r = vmcall(&kvm, &host, vmcall::MAP_GPA, &[SHARED | 0x60_0000, 1 << 20]);
        assert_eq!(r.gpr[gpr::R10], 0);
        let mut b = [1u8; 6];
        host.phys_read(BackingAddr::new(0x40_0000), &mut b);
        assert_eq!(b, [0; 6], "content of the private side is gone");
        assert!(!kvm.vm().is_private(Gfn::new(0x6ff)));
        assert!(kvm.host_access_allowed(BackingAddr::new(0x40_0000)));
        assert!(matches!(
            access(&kvm, SHARED | 0x40_0000, Access::Write),
            Stage2Answer::Allow { backing, .. } if backing == BackingAddr::new(0x40_0000)
        ));
        // Back to private: must be accepted again.
        let r = vmcall(&kvm, &host, vmcall::MAP_GPA, &[0x40_0000, 0x1000]);
        assert_eq!(r.gpr[gpr::R10], 0);
        assert!(kvm.vm().is_private(Gfn::new(0x400)));
        let r = call(&kvm, &host, leaf::MEM_PAGE_ACCEPT, &[(gpr::RCX, 0x40_0000)]);
        assert_eq!(r.gpr[gpr::RAX], 0);
        // KVM's operand checks.
        for (gpa, size) in [
            (0x40_0800, 0x1000),
            (0x40_0000, 0x800),
            (0x40_0000, 0),
            (1 << 48, 0x1000),
            (SHARED - 0x1000, 0x2000),
        ] {
            let r = vmcall(&kvm, &host, vmcall::MAP_GPA, &[gpa, size]);
            assert_eq!(
                r.gpr[gpr::R10],
                vmcall::INVALID_OPERAND,
                "{gpa:#x}+{size:#x}"
            );
        }
        // Private conversion of space that is not RAM: R11 names the GPA.
        let r = vmcall(&kvm, &host, vmcall::MAP_GPA, &[0x1_0000_0000, 0x1000]);
        assert_eq!(
            (r.gpr[gpr::R10], r.gpr[gpr::R11]),
            (vmcall::INVALID_OPERAND, 0x1_0000_0000)
        );
    }
    #[test]
    fn vp_vmcall_checks_and_filters_exposed_registers() {
        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        let host = FakeHost::new();
        for bad in [0xfc01, 0xfc02, 0xfc10, 0x0400, 0x1_0000_fc00] {
            let r = call(
                &kvm,
                &host,
                leaf::VP_VMCALL,
                &[(gpr::RCX, bad), (gpr::R11, vmcall::HLT)],
            );
            assert_eq!(
                r.gpr[gpr::RAX],
                operand_invalid(status::OPERAND_RCX),
                "{bad:#x}"
            );
        }
        // CPUID with R12/R13 exposed but R14/R15 not: only R12/R13 change.
        let r = call(
            &kvm,
            &host,
            leaf::VP_VMCALL,
            &[
                (gpr::RCX, 0x3c00),
                (gpr::R11, vmcall::CPUID),
                (gpr::R12, 7),
                (gpr::R13, 1),
                (gpr::R14, 0x77),
            ],
        );
        assert_eq!(
            (
                r.gpr[gpr::R10],
                r.gpr[gpr::R12],
                r.gpr[gpr::R13],
                r.gpr[gpr::R14]
            ),
            (0, 7, 1, 0x77)
        );
        // Unknown sub-functions and KVM hypercalls through R10.
        let r = vmcall(&kvm, &host, 0x12345, &[]);
        assert_eq!(r.gpr[gpr::R10], vmcall::SUBFUNC_UNSUPPORTED);
        let r = call(
            &kvm,
            &host,
            leaf::VP_VMCALL,
            &[(gpr::RCX, 0xfc00), (gpr::R10, 99)],
        );
        assert_eq!(
            r.gpr[gpr::R10],
            crate::vmm::hc::err(crate::vmm::hc::KVM_ENOSYS)
        );
        // A leaf cvmem does not implement (12, TDG.SYS.RDALL), non-zero
        // version, CPL 3.
        let r = call(&kvm, &host, 12, &[]);
        assert_eq!(r.gpr[gpr::RAX], operand_invalid(0));
        let r = call(&kvm, &host, 1 << 16 | leaf::VP_INFO, &[]);
        assert_eq!(r.gpr[gpr::RAX], operand_invalid(0));
        let mut regs = Regs {
            cpl: 3,
            ..Regs::default()
        };
        assert!(matches!(
            tdcall(&kvm, &host, &mut regs),
            InsnAction::Fault(Fault { vector: 13, .. })
        ));
    }
    #[test]
    fn io_msr_mmio_hlt_and_info() {
        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        let host = FakeHost::new();
        let r = vmcall(&kvm, &host, vmcall::IO, &[1, 0, 0x3f8, 0]);
        assert_eq!((r.gpr[gpr::R10], r.gpr[gpr::R11]), (0, 0x5a));
        let r = vmcall(&kvm, &host, vmcall::IO, &[2, 1, 0x510, 0x1234]);
        assert_eq!(r.gpr[gpr::R10], 0);
        assert_eq!(host.io.borrow()[1], (0x510, 2, true, 0x1234));
        for bad in [[3, 0, 0x80, 0], [1, 2, 0x80, 0], [1, 0, 0x1_0000, 0]] {
            assert_eq!(
                vmcall(&kvm, &host, vmcall::IO, &bad).gpr[gpr::R10],
                vmcall::INVALID_OPERAND
            );
        }
        // The vCPU entered the TD with its APIC in x2APIC mode.
        let r = vmcall(&kvm, &host, vmcall::MSR_READ, &[0x1b]);
        assert_eq!((r.gpr[gpr::R10], r.gpr[gpr::R11]), (0, 0xfee0_0d00));
        assert_eq!(
            vmcall(&kvm, &host, vmcall::MSR_READ, &[0x12345]).gpr[gpr::R10],
            vmcall::INVALID_OPERAND
        );
        // KVM keeps IA32_APIC_BASE read-only for a TD; MTRRdefType it
        // emulates (FakeHost refuses it: INVALID_OPERAND from QEMU's side).
        assert_eq!(
            vmcall(&kvm, &host, vmcall::MSR_WRITE, &[0x1b, 1]).gpr[gpr::R10],
            vmcall::INVALID_OPERAND
        );
        assert_eq!(
            vmcall(&kvm, &host, vmcall::MSR_WRITE, &[7, 1]).gpr[gpr::R10],
            vmcall::INVALID_OPERAND
        );
        // MMIO: shared, outside memslots, within one page.
        let r = vmcall(
            &kvm,
            &host,
            vmcall::EPT_VIOLATION,
            &[4, 0, SHARED | 0xfed0_0000, 0],
        );
        assert_eq!(r.gpr[gpr::R10], 0);
        for bad in [
            [4, 0, 0xfed0_0000, 0],
            [3, 0, SHARED | 0xfed0_0000, 0],
            [8, 0, SHARED | 0xfed0_0ffc, 0],
            [4, 0, SHARED | 0x1000, 0],
        ] {
            assert_eq!(
                vmcall(&kvm, &host, vmcall::EPT_VIOLATION, &bad).gpr[gpr::R10],
                vmcall::INVALID_OPERAND
            );
        }
        let r = call(&kvm, &host, leaf::VP_INFO, &[]);
        assert_eq!(
            (r.gpr[gpr::RCX], r.gpr[gpr::RDX], r.gpr[gpr::R8]),
            (48, TdAttributes::SEPT_VE_DISABLE, 2 | 2 << 32)
        );
        let r = vmcall(&kvm, &host, vmcall::GET_TD_VM_CALL_INFO, &[0]);
        assert_eq!(r.gpr[gpr::R10], 0);
    }
}
