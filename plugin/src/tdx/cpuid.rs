//! CPUID in a TD: the TDX module's answer from the TD's CPUID values
//! (`cpuid_table.rs`), its dynamic fields, and #VE (exit reason 10) for
//! the leaves it leaves to the VMM; and KVM's paravirtual block, which the
//! guest reads through TDVMCALL<Instruction.CPUID>.

use super::cpuid_table::{TdCpuid, TdParams};
use super::*;
use crate::hooks::{gpr, Host, Regs};

pub(super) use crate::kvm::pv_cpuid::{kvm_cpuid, KVM_CPUID_LAST, KVM_CPUID_SIGNATURE};

/// VMX basic exit reason of CPUID (SDM Appendix C).
pub(super) const EXIT_REASON_CPUID: u32 = 10;

/// TD_PARAMS.TSC_FREQUENCY (units of 25 MHz), which CPUID 0x15 EBX
/// reports over the module's fixed 25 MHz core crystal (EAX 1, ECX
/// 25,000,000). A TD's local APIC timer counts at that crystal frequency
/// (KVM sets the APIC bus to 25 MHz for a TD), and Linux takes its APIC
/// timer period from leaf 0x15 (`native_calibrate_tsc()`); TCG's APIC timer
/// counts at 1 GHz, so a guest told the truth about the TSC would run its
/// timer 40 times fast (seen: a 5 s Linux boot reporting 40 s). cvmem
/// leaves it 0, as if unknown, and the guest calibrates (docs/tdx.md).
pub const TSC_FREQUENCY: u32 = 0;

/// QEMU's CPU as the module's CPU: leaves above QEMU's maximum basic or
/// extended leaf read 0 (QEMU, as Intel CPUs, would answer its highest
/// basic leaf, which the module's CPU, having every leaf of the table,
/// never does).
pub(super) fn cpu_of(host: &dyn Host) -> impl Fn(u32, u32) -> [u32; 4] + '_ {
    let max_basic = host.cpuid(0, 0)[0];
    let max_ext = host.cpuid(0x8000_0000, 0)[0];
    move |leaf, sub| {
        let beyond = if leaf >= 0x8000_0000 {
            leaf > max_ext
        } else {
            leaf > max_basic
        };
        if beyond {
            [0; 4]
        } else {
            host.cpuid(leaf, sub)
        }
    }
}

impl TdxModule {
    /// The TD's CPUID values, computed at the first use after launch as
    /// TDH.MNG.INIT computes them.
    pub(super) fn td_cpuid(&self, vmm: &Vmm, host: &dyn Host) -> &TdCpuid {
        self.td_cpuid.get_or_init(|| {
            let cpu = cpu_of(host);
            let td = TdParams {
                attributes: vmm.vm().config().td_attributes.0,
                xfam: self.td_xfam(host),
                tsc_frequency: TSC_FREQUENCY,
            };
            TdCpuid::new(&td, &cpu)
        })
    }

    /// CPUID in a launched TD (`td_cpuid_exit()`): the TD's value with the
    /// dynamic fields filled in, or a #VE with exit reason 10 for a leaf
    /// the module does not answer (the guest asks the VMM with TDVMCALL,
    /// Linux `handle_cpuid()`). Before launch QEMU answers (`Decline`).
    pub(super) fn cpuid_insn(&self, cx: &mut Ctx<'_>) -> InsnAction {
        if self.loader_runs(cx.regs) {
            return InsnAction::Decline;
        }
        self.vcpu_enter(cx.vcpu, cx.host);
        let leaf = cx.regs.gpr[gpr::RAX] as u32;
        let subleaf = cx.regs.gpr[gpr::RCX] as u32;
        // The hypervisor range always raises #VE, whatever TD_CTLS says.
        if super::cpuid_table::RESERVED.contains(&leaf) {
            return self.cpuid_ve(cx);
        }
        // TDG.VP.CPUIDVE.SET: the guest asked for a #VE on every CPUID at
        // this CPL.
        // TDG.VP.WR of CPUID_CONTROL: a #VE for this leaf at this CPL
        // (its lookup index, for a leaf the table answers).
        let td = self.td_cpuid(cx.vmm, cx.host);
        let control = super::metadata::cpuid_control_index(td.resolve(leaf), subleaf);
        let ve_here = self.vcpus.get(cx.vcpu as usize).is_some_and(|v| {
            let v = v.lock();
            let per_leaf = control.map_or(0, |i| v.cpuid_control[i]);
            if cx.regs.cpl == 0 {
                v.cpuid_supervisor_ve != 0 || per_leaf & 1 != 0
            } else {
                v.cpuid_user_ve != 0 || per_leaf & 2 != 0
            }
        });
        if ve_here {
            return self.cpuid_ve(cx);
        }
        let Some(v) = td_cpuid_answer(
            td,
            self.td_ctls_set(),
            leaf,
            subleaf,
            cx.vcpu,
            cx.regs,
            cx.host,
        ) else {
            return self.cpuid_ve(cx);
        };
        for (r, value) in [gpr::RAX, gpr::RBX, gpr::RCX, gpr::RDX].into_iter().zip(v) {
            cx.regs.gpr[r] = u64::from(value);
        }
        InsnAction::Done
    }

    fn cpuid_ve(&self, cx: &mut Ctx<'_>) -> InsnAction {
        self.generic_ve(cx, EXIT_REASON_CPUID, &self.stats.cpuid_ves)
    }
}

/// CPUID(2) under TD_CTLS.VIRT_CPUID2: descriptor 0xFF "no cache
/// information, use leaf 4" and 0xFE "no TLB information, use leaf 0x18",
/// in the format's AL = 1 (Linux `reduce_unnecessary_ve()`).
pub const VIRT_CPUID2: [u32; 4] = [0x00fe_ff01, 0, 0, 0];

/// The x2APIC ID of the vCPU running: the VMM's (QEMU's) CPU model gives
/// it in CPUID(0xB).EDX; KVM hands the module the same ID at TDH.VP.INIT.
pub(super) fn x2apic_id(host: &dyn Host) -> u32 {
    host.cpuid(0xb, 0)[3]
}

/// `td_cpuid_exit()` of a TDX module with #VE reduction, after the
/// hypervisor range and TDG.VP.CPUIDVE.SET: the answer to CPUID
/// `leaf`.`subleaf` given TD_CTLS `ctls`, or `None` for a #VE.
/// - VIRT_CPUID2: leaf 2 reads [`VIRT_CPUID2`].
/// - ENUM_TOPOLOGY: leaves 0xB and 0x1F read the VMM's topology (QEMU's
///   CPU model; its 0xB where it has no 0x1F, as the module takes the
///   CPU's 0x1F when the VMM configures none) with EDX the x2APIC ID, and
///   leaf 1 EBX[31:24] is the x2APIC ID instead of the vCPU index.
/// - REDUCE_VE: a leaf the table does not answer (absent, or faulting:
///   6, 0x80000006) reads all 0 instead of raising #VE, and the
///   features a TD must enable through FEATURE_PARAVIRT_CTLS read 0
///   (`update_mutable_cpuid_flags()`; cvmem offers no FEATURE_PARAVIRT_CTLS,
///   so they stay 0).
pub(super) fn td_cpuid_answer(
    td: &TdCpuid,
    ctls: u64,
    leaf: u32,
    subleaf: u32,
    vcpu: u32,
    regs: &Regs,
    host: &dyn Host,
) -> Option<[u32; 4]> {
    let reduce_ve = ctls & field::TD_CTLS_REDUCE_VE != 0;
    let enum_topology = ctls & field::TD_CTLS_ENUM_TOPOLOGY != 0;
    let leaf = td.resolve(leaf);
    match leaf {
        2 => return (ctls & field::TD_CTLS_VIRT_CPUID2 != 0).then_some(VIRT_CPUID2),
        0xb | 0x1f if enum_topology => {
            let max_basic = host.cpuid(0, 0)[0];
            let l = if leaf == 0x1f && max_basic >= 0x1f && host.cpuid(0x1f, 0)[1] != 0 {
                0x1f
            } else {
                0xb
            };
            let mut v = host.cpuid(l, subleaf);
            v[3] = x2apic_id(host);
            return Some(v);
        }
        _ => {}
    }
    let Some(i) = td.index(leaf, subleaf) else {
        return reduce_ve.then_some([0; 4]);
    };
    let e = &super::cpuid_table::CPUID_TABLE[i];
    let mut v = td.values[i];
    dynamic_fields(e.leaf, subleaf, vcpu, regs, host, &mut v);
    if leaf == 1 && enum_topology {
        v[1] = (v[1] & 0x00ff_ffff) | ((x2apic_id(host) & 0xff) << 24);
    }
    if reduce_ve {
        for &(l, s, mask) in PARAVIRT_FEATURES {
            if l == e.leaf && s == e.subleaf {
                for (r, m) in v.iter_mut().zip(mask) {
                    *r &= !m;
                }
            }
        }
    }
    Some(v)
}

/// The CPUID bits `update_mutable_cpuid_flags()` clears under REDUCE_VE
/// unless FEATURE_PARAVIRT_CTLS enables them: leaf 1 ECX EST (7), TM2 (8),
/// DCA (18), TSC_DEADLINE (24); EDX MCE (7), MTRR (12), MCA (14), ACPI
/// (22); leaf 7.0 EBX RDT_M (12), RDT_A (15); ECX TME (13); EDX PCONFIG
/// (18), IA32_CORE_CAPABILITIES (30).
pub const PARAVIRT_FEATURES: &[(u32, Option<u32>, [u32; 4])] = &[
    (
        1,
        None,
        [
            0,
            0,
            (1 << 7) | (1 << 8) | (1 << 18) | (1 << 24),
            (1 << 7) | (1 << 12) | (1 << 14) | (1 << 22),
        ],
    ),
    (
        7,
        Some(0),
        [0, (1 << 12) | (1 << 15), 1 << 13, (1 << 18) | (1 << 30)],
    ),
];

/// The fields `td_cpuid_exit()` fills in at each CPUID: leaf 1 EBX[31:24]
/// the vCPU index and ECX.OSXSAVE from CR4.OSXSAVE; leaf 7.0 ECX.OSPKE
/// from CR4.PKE; leaf 0xD.0/1 EBX (the XSAVE area size for the current
/// XCR0 and IA32_XSS) from the CPU; leaf 0x80000001 EDX.SYSCALL set in
/// 64-bit mode (here: with EFER.LMA, which a TD, always in long mode,
/// has; a TD in compatibility mode would see it set too).
pub(super) fn dynamic_fields(
    leaf: u32,
    subleaf: u32,
    vcpu: u32,
    regs: &Regs,
    host: &dyn Host,
    v: &mut [u32; 4],
) {
    let set = |r: &mut u32, bit: u32, on: bool| {
        *r = (*r & !(1 << bit)) | (u32::from(on) << bit);
    };
    match leaf {
        1 => {
            v[1] = (v[1] & 0x00ff_ffff) | ((vcpu & 0xff) << 24);
            set(&mut v[2], 27, regs.cr4 & (1 << 18) != 0);
        }
        7 if subleaf == 0 => set(&mut v[2], 4, regs.cr4 & (1 << 22) != 0),
        0xd if subleaf <= 1 => v[1] = host.cpuid(0xd, subleaf)[1],
        0x8000_0001 => set(&mut v[3], 11, regs.efer & (1 << 10) != 0),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::vector;

    use crate::hooks::fake::{FakeHost, MEM};

    use crate::tdx::testutil::*;
    use cvmem_model::TdAttributes;

    fn cpuid(kvm: &crate::kvm::Kvm, host: &FakeHost, leaf: u32, sub: u32) -> InsnAction {
        let mut regs = Regs {
            insn_len: 2,
            cr0: super::super::msr::CR0_PG | 1,
            ..Regs::default()
        };
        regs.gpr[gpr::RAX] = u64::from(leaf);
        regs.gpr[gpr::RCX] = u64::from(sub);
        let (a, _) = kvm.insn(0, Insn::Cpuid, &mut regs, host);
        if a == InsnAction::Done {
            // In gpr:: order (RAX, RCX, RDX, RBX).
            let out: Vec<u64> = regs.gpr[..4].to_vec();
            LAST.with(|l| *l.borrow_mut() = out);
        }
        a
    }
    thread_local! {
        static LAST: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    fn last() -> Vec<u64> {
        LAST.with(|l| l.borrow().clone())
    }

    fn launch(kvm: &crate::kvm::Kvm) {
        access(kvm, 0x1000, crate::hooks::Access::Read);
    }

    #[test]
    fn cpuid_answers_from_the_module_table() {
        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        let host = FakeHost::new();
        launch(&kvm);
        // Leaf 0: the maximum basic leaf is the module's 0x23.
        assert_eq!(cpuid(&kvm, &host, 0, 0), InsnAction::Done);
        assert_eq!(last()[0], 0x23);
        // Leaf 0x21: "IntelTDX    " in EBX, EDX, ECX (fixed-1).
        assert_eq!(cpuid(&kvm, &host, 0x21, 0), InsnAction::Done);
        let mut sig = Vec::new();
        for r in [gpr::RBX, gpr::RDX, gpr::RCX] {
            sig.extend((last()[r] as u32).to_le_bytes());
        }
        assert_eq!(&sig, b"IntelTDX    ");
        // Leaf 1: the hypervisor bit (fixed-1), the vCPU index in EBX.
        assert_eq!(cpuid(&kvm, &host, 1, 0), InsnAction::Done);
        assert_ne!(last()[gpr::RCX] & (1 << 31), 0);
        assert_eq!(last()[gpr::RBX] >> 24, 0);
        // Leaf 0x20 (all fixed-0) reads 0 though FakeHost stops at 0x1f.
        assert_eq!(cpuid(&kvm, &host, 0x20, 0), InsnAction::Done);
        assert_eq!(last(), vec![0; 4]);
        let ve = |a: InsnAction| matches!(a, InsnAction::Fault(f) if f.vector == vector::VE);
        // Not in the table (2, 0xB, the hypervisor range, 4.5), or
        // faulting (6, 0x1F): #VE, with the VE info exit reason 10.
        for (leaf, sub) in [
            (2, 0),
            (0xb, 0),
            (4, 5),
            (0x4000_0000, 0),
            (6, 0),
            (0x1f, 0),
            (0x8000_0006, 0),
        ] {
            assert!(ve(cpuid(&kvm, &host, leaf, sub)), "{leaf:#x}.{sub}");
            let r = call(&kvm, &host, leaf::VP_VEINFO_GET, &[]);
            assert_eq!((r.gpr[gpr::RCX], r.gpr[gpr::R10]), (10, 2));
        }
        // Above the maximum basic leaf: the last basic leaf, 0x23, which
        // has sub-leaves 0-3; above the CPU's extended maximum (at least
        // 0x80000008) likewise. The brand string is not in the table.
        assert_eq!(cpuid(&kvm, &host, 0x24, 0), InsnAction::Done);
        assert!(ve(cpuid(&kvm, &host, 0x24, 4)));
        let _ = call(&kvm, &host, leaf::VP_VEINFO_GET, &[]);
        assert_eq!(cpuid(&kvm, &host, 0x8000_0009, 1), InsnAction::Done);
        assert_eq!(cpuid(&kvm, &host, 0x8000_0008, 0), InsnAction::Done);
        assert_eq!(last()[0] & 0xff00, 48 << 8, "LA bits without LA57");
        assert!(ve(cpuid(&kvm, &host, 0x8000_0002, 0)));
        let _ = call(&kvm, &host, leaf::VP_VEINFO_GET, &[]);
        assert_eq!(
            kvm.flavour_as::<TdxModule>()
                .stats
                .cpuid_ves
                .load(Ordering::Relaxed),
            9
        );
    }

    #[test]
    fn cpuidve_set_makes_every_cpuid_at_a_cpl_a_ve() {
        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        let host = FakeHost::new();
        launch(&kvm);
        let set = |rcx| call(&kvm, &host, leaf::VP_CPUIDVE_SET, &[(gpr::RCX, rcx)]).gpr[gpr::RAX];
        assert_eq!(set(4), operand_invalid(status::OPERAND_RCX));
        let ve = |a: InsnAction| matches!(a, InsnAction::Fault(f) if f.vector == vector::VE);
        let at_cpl = |cpl| {
            let mut regs = Regs {
                insn_len: 2,
                cr0: super::super::msr::CR0_PG | 1,
                cpl,
                ..Regs::default()
            };
            let a = kvm.insn(0, Insn::Cpuid, &mut regs, &host).0;
            if ve(a) {
                let _ = call(&kvm, &host, leaf::VP_VEINFO_GET, &[]);
            }
            a
        };
        assert_eq!(set(1), 0);
        assert!(ve(at_cpl(0)), "supervisor");
        assert_eq!(at_cpl(3), InsnAction::Done);
        assert_eq!(set(2), 0);
        assert_eq!(at_cpl(0), InsnAction::Done);
        assert!(ve(at_cpl(3)), "user");
        assert_eq!(set(0), 0);
        assert_eq!(at_cpl(3), InsnAction::Done);
    }

    #[test]
    fn cpuid_runs_natively_before_launch() {
        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        let host = FakeHost::new();
        assert_eq!(cpuid(&kvm, &host, 2, 0), InsnAction::Decline);
    }

    #[test]
    fn dynamic_fields_follow_the_vcpu() {
        let host = FakeHost::new();
        let regs = Regs {
            cr4: (1 << 18) | (1 << 22),
            efer: 1 << 10,
            ..Regs::default()
        };
        let mut v = [0u32; 4];
        dynamic_fields(1, 0, 3, &regs, &host, &mut v);
        assert_eq!(v, [0, 3 << 24, 1 << 27, 0]);
        let mut v = [0u32; 4];
        dynamic_fields(7, 0, 0, &regs, &host, &mut v);
        assert_eq!(v[2], 1 << 4);
        let mut v = [0u32; 4];
        dynamic_fields(0x8000_0001, 0, 0, &regs, &host, &mut v);
        assert_eq!(v[3], 1 << 11);
        let mut v = [0u32; 4];
        dynamic_fields(0xd, 1, 0, &regs, &host, &mut v);
        assert_eq!(v[1], host.cpuid(0xd, 1)[1]);
    }

    /// TD_CTLS set by the guest: VIRT_CPUID2 answers leaf 2,
    /// ENUM_TOPOLOGY leaves 0xB and 0x1F, REDUCE_VE every leaf the table
    /// leaves to the VMM (0) but the hypervisor range, and clears the
    /// features a TD must ask for with FEATURE_PARAVIRT_CTLS.
    #[test]
    fn td_ctls_reduce_the_cpuid_ves() {
        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        let host = FakeHost::new();
        launch(&kvm);
        let ve = |a: InsnAction| matches!(a, InsnAction::Fault(f) if f.vector == vector::VE);
        let wr = |v: u64| {
            call(
                &kvm,
                &host,
                leaf::VM_WR,
                &[
                    (gpr::RDX, field::TD_CTLS),
                    (gpr::R8, v),
                    (gpr::R9, v | field::TD_CTLS_REDUCE_VE),
                ],
            )
            .gpr[gpr::RAX]
        };
        let probe = |leaf, sub| {
            let a = cpuid(&kvm, &host, leaf, sub);
            if ve(a) {
                let _ = call(&kvm, &host, leaf::VP_VEINFO_GET, &[]);
                None
            } else {
                assert_eq!(a, InsnAction::Done);
                Some(last())
            }
        };
        // leaf, sub, ctls: the answer (None: #VE).
        let x2apic = u64::from(host.cpuid(0xb, 0)[3]);
        let l1 = probe(1, 0).unwrap();
        assert_eq!(probe(2, 0), None);
        assert_eq!(wr(field::TD_CTLS_VIRT_CPUID2), 0);
        // In gpr:: order (RAX, RCX, RDX, RBX).
        assert_eq!(probe(2, 0), Some(vec![0x00fe_ff01, 0, 0, 0]));
        assert_eq!(probe(0xb, 0), None);
        assert_eq!(probe(6, 0), None);
        assert_eq!(
            wr(field::TD_CTLS_VIRT_CPUID2 | field::TD_CTLS_ENUM_TOPOLOGY),
            0
        );
        let b = probe(0xb, 1).unwrap();
        let q = host.cpuid(0xb, 1);
        assert_eq!(b, vec![q[0].into(), q[2].into(), x2apic, q[1].into()]);
        assert!(probe(0x1f, 0).is_some());
        assert_eq!(probe(6, 0), None);
        assert_eq!(probe(0x80000002, 0), None);
        assert_eq!(wr(field::TD_CTLS_REDUCE_VE), 0);
        for (leaf, sub) in [(6, 0), (0x80000002, 0), (0x80000006, 0), (0x4, 7), (0xc, 0)] {
            assert_eq!(probe(leaf, sub), Some(vec![0; 4]), "{leaf:#x}.{sub}");
        }
        assert_eq!(probe(0x4000_0000, 0), None, "hypervisor range");
        // Leaf 1: the x2APIC ID in EBX[31:24], no MCE, MTRR, MCA, ACPI,
        // TSC deadline.
        let r1 = probe(1, 0).unwrap();
        assert_eq!(r1[gpr::RBX] >> 24, x2apic & 0xff);
        let edx_cleared = (1 << 7) | (1 << 12) | (1 << 14) | (1 << 22);
        assert_eq!(r1[gpr::RDX], l1[gpr::RDX] & !edx_cleared);
        assert_eq!(r1[gpr::RCX] & (1 << 24), 0);
        // Off again: the leaves raise #VE as before.
        assert_eq!(
            call(
                &kvm,
                &host,
                leaf::VM_WR,
                &[
                    (gpr::RDX, field::TD_CTLS),
                    (gpr::R8, 0),
                    (gpr::R9, field::TD_CTLS_REDUCE_VE)
                ],
            )
            .gpr[gpr::RAX],
            0
        );
        assert_eq!(probe(6, 0), None);
        assert_eq!(probe(1, 0).unwrap()[gpr::RDX], l1[gpr::RDX]);
    }

    /// `xfam=` is the TD's XFAM: CPUID 0xD.0 and the AVX bits of leaf 1
    /// follow it; a component QEMU's CPU lacks is refused before the guest
    /// runs.
    #[test]
    fn xfam_shapes_cpuid_and_is_checked_against_the_cpu() {
        let host = FakeHost::new();
        let kvm_td = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        let m = kvm_td.flavour_as::<TdxModule>();
        assert_eq!(
            m.td_xfam(&host),
            super::super::cpuid_table::xfam_of(&cpu_of(&host))
        );
        let cpu = |l: u32, s: u32| match (l, s) {
            (0xd, 0) => [0x207, 0, 0, 0],
            (0xd, 1) => [0, 0, 0x1800, 0],
            _ => [0; 4],
        };
        use super::super::cpuid_table::check_xfam_cpu;
        assert!(check_xfam_cpu(0x207, &cpu).is_ok());
        assert!(check_xfam_cpu(0x1a07, &cpu).is_ok());
        let e = check_xfam_cpu(0x60003, &cpu).unwrap_err();
        assert!(e.contains("17 (AMX XTILECFG), 18 (AMX XTILEDATA)"), "{e}");
        let e = check_xfam_cpu(0xe7, &cpu).unwrap_err();
        assert!(e.contains("5 (AVX-512 opmask)"), "{e}");
    }
}
