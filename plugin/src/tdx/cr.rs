//! CR0 and CR4 writes in a TD: the TDX module's guest/host masks and read
//! shadows, and what its CR-access exit handler does with a write that
//! exits.
//!
//! Oracles (TDX module 1.5, github intel/tdx-module branch tdx_1.5):
//! - `src/common/data_structures/td_vmcs_init.c` (`init_td_vmcs()`): the
//!   CR0 and CR4 guest/host masks and read shadows of the TD's VMCS,
//!   [`CrConfig::new`].
//! - `src/td_dispatcher/vm_exits/td_other_exits.c` (`td_cr_access_exit()`):
//!   MOV to CR0/CR4 goes to `write_guest_cr0()`/`write_guest_cr4()`, whose
//!   answer is #GP(0), a #VE with exit reason 28 (CR access) and the exit
//!   qualification of the exit, or the write; LMSW writes CR0[3:1].
//! - `src/common/helpers/helpers.c` (`write_guest_cr0()`,
//!   `write_guest_cr4()`, `is_guest_cr4_allowed_by_td_config()`): the
//!   checks, [`cr0_exit`] and [`cr4_exit`].
//! - Intel SDM vol. 3C 26.1.3 and 26.3 ("Instructions That Cause VM Exits
//!   Conditionally", "Changes to Instruction Behavior in VMX Non-Root
//!   Operation"): which writes exit, and that a write that does not keeps
//!   the bits the mask owns ([`cr_write`]).
//!
//! Linux (`arch/x86/coco/tdx/tdx.c`) never expects a CR #VE: its
//! `virt_exception_kernel()` treats exit reason 28 as unknown and panics,
//! so a Linux TD only ever makes writes that run natively.
//!
//! The module runs on a CPU whose IA32_VMX_CR0/CR4_FIXED0/1 say which
//! bits must be 1 or 0; cvmem's CPU is QEMU's CPU model, so [`CrCpu`]
//! derives them from its CPUID (what a VMX CPU with those features
//! reports). The native checks of a write that does not exit are QEMU's.

use super::*;
use crate::hooks::{Host, InsnAction};

/// VMX basic exit reason of a control-register access (SDM Appendix C).
pub(super) const EXIT_REASON_CR_ACCESS: u32 = 28;

/// CR0 bits (SDM vol. 3A 2.5).
pub mod cr0 {
    #![allow(missing_docs)]
    // The architectural set, used or not (tests and tables name them).
    #![allow(dead_code)]
    pub const PE: u64 = 1 << 0;
    pub const MP: u64 = 1 << 1;
    pub const EM: u64 = 1 << 2;
    pub const TS: u64 = 1 << 3;
    pub const ET: u64 = 1 << 4;
    pub const NE: u64 = 1 << 5;
    pub const WP: u64 = 1 << 16;
    pub const AM: u64 = 1 << 18;
    pub const NW: u64 = 1 << 29;
    pub const CD: u64 = 1 << 30;
    pub const PG: u64 = 1 << 31;
    /// Bits 28-19, 17 and 15-6: reserved, and silently ignored by
    /// `write_guest_cr0()` (helpers.c, x86_defs.h `CR0_IGNORED_MASK`).
    pub const IGNORED: u64 = 0x1ffa_ffc0;
}

/// CR4 bits (SDM vol. 3A 2.5; x86_defs.h `ia32_cr4_t`).
pub mod cr4 {
    #![allow(missing_docs)]
    pub const MCE: u64 = 1 << 6;
    pub const VMXE: u64 = 1 << 13;
    pub const SMXE: u64 = 1 << 14;
    pub const KL: u64 = 1 << 19;
    pub const PKE: u64 = 1 << 22;
    pub const CET: u64 = 1 << 23;
    pub const PKS: u64 = 1 << 24;
    pub const UINTR: u64 = 1 << 25;
    /// Bit 15 and bits 63-26: reserved for the module 1.5.
    pub const RESERVED: u64 = (1 << 15) | !((1 << 26) - 1);
}

/// Where a CPU's support for a CR4 bit comes from: IA32_VMX_CR4_FIXED1
/// has the bit when the CPU has the feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cr4Support {
    /// Every CPU the module runs on (VME-OSXMMEXCPT; VMXE: the module
    /// needs VMX).
    Always,
    /// CPUID(leaf, subleaf) register (0 EAX, 1 EBX, 2 ECX, 3 EDX) bit.
    Cpuid(u32, u32, usize, u32),
    /// Reserved: bit 15 and 26-63.
    Never,
}

/// A CR4 bit as the module 1.5 knows it.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(test), allow(dead_code))]
pub struct Cr4Bit {
    /// The bit.
    pub bit: u32,
    /// SDM name.
    pub name: &'static str,
    /// What makes the CPU allow it.
    pub support: Cr4Support,
}

const fn b4(bit: u32, name: &'static str, support: Cr4Support) -> Cr4Bit {
    Cr4Bit { bit, name, support }
}

/// CR4 bits 0-25 (`ia32_cr4_t`), with the CPUID feature that makes a CPU
/// accept each (SDM vol. 3A 2.5; the CPUID bits of vol. 2A, CPUID).
pub const CR4_TABLE: [Cr4Bit; 26] = {
    use Cr4Support::*;
    [
        b4(0, "VME", Always),
        b4(1, "PVI", Always),
        b4(2, "TSD", Always),
        b4(3, "DE", Always),
        b4(4, "PSE", Always),
        b4(5, "PAE", Always),
        b4(6, "MCE", Always),
        b4(7, "PGE", Always),
        b4(8, "PCE", Always),
        b4(9, "OSFXSR", Always),
        b4(10, "OSXMMEXCPT", Always),
        b4(11, "UMIP", Cpuid(7, 0, 2, 2)),
        b4(12, "LA57", Cpuid(7, 0, 2, 16)),
        b4(13, "VMXE", Always),
        b4(14, "SMXE", Cpuid(1, 0, 2, 6)),
        b4(15, "reserved", Never),
        b4(16, "FSGSBASE", Cpuid(7, 0, 1, 0)),
        b4(17, "PCIDE", Cpuid(1, 0, 2, 17)),
        b4(18, "OSXSAVE", Cpuid(1, 0, 2, 26)),
        b4(19, "KL", Cpuid(7, 0, 2, 23)),
        b4(20, "SMEP", Cpuid(7, 0, 1, 7)),
        b4(21, "SMAP", Cpuid(7, 0, 1, 20)),
        b4(22, "PKE", Cpuid(7, 0, 2, 3)),
        b4(23, "CET", Cpuid(7, 0, 2, 7)),
        b4(24, "PKS", Cpuid(7, 0, 2, 31)),
        b4(25, "UINTR", Cpuid(7, 0, 3, 5)),
    ]
};

/// CR0 bit names, 0-31 (SDM vol. 3A 2.5).
#[cfg_attr(not(test), allow(dead_code))]
pub const CR0_NAMES: [&str; 32] = [
    "PE", "MP", "EM", "TS", "ET", "NE", "", "", "", "", "", "", "", "", "", "", "WP", "", "AM", "",
    "", "", "", "", "", "", "", "", "", "NW", "CD", "PG",
];

/// The module's CPU: its IA32_VMX_CR0/CR4_FIXED0/1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrCpu {
    /// IA32_VMX_CR0_FIXED0.
    pub cr0_fixed0: u64,
    /// IA32_VMX_CR0_FIXED1.
    pub cr0_fixed1: u64,
    /// IA32_VMX_CR4_FIXED0.
    pub cr4_fixed0: u64,
    /// IA32_VMX_CR4_FIXED1.
    pub cr4_fixed1: u64,
}

impl CrCpu {
    /// A VMX CPU with the features `cpu` (CPUID) has: CR0 must have PE,
    /// NE and PG and may have any of bits 31:0 (every VMX CPU's
    /// 0x80000021 and 0xffffffff), CR4 must have VMXE and may have the
    /// bits of [`CR4_TABLE`] whose feature the CPU has.
    pub fn of(cpu: &dyn Fn(u32, u32) -> [u32; 4]) -> CrCpu {
        let cr4_fixed1 = CR4_TABLE
            .iter()
            .filter(|b| match b.support {
                Cr4Support::Always => true,
                Cr4Support::Cpuid(leaf, sub, reg, bit) => cpu(leaf, sub)[reg] & (1 << bit) != 0,
                Cr4Support::Never => false,
            })
            .fold(0, |m, b| m | 1u64 << b.bit);
        CrCpu {
            cr0_fixed0: cr0::PE | cr0::NE | cr0::PG,
            cr0_fixed1: 0xffff_ffff,
            cr4_fixed0: cr4::VMXE,
            cr4_fixed1,
        }
    }
}

/// The TD's CR virtualization: the VMCS's masks and shadows and what the
/// exit handler checks against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrConfig {
    /// The CPU's fixed bits.
    pub cpu: CrCpu,
    /// CR0 guest/host mask: bits the module owns.
    pub cr0_mask: u64,
    /// CR0 read shadow.
    pub cr0_shadow: u64,
    /// CR4 guest/host mask.
    pub cr4_mask: u64,
    /// CR4 read shadow.
    pub cr4_shadow: u64,
    /// TD XFAM.
    pub xfam: u64,
    /// TD ATTRIBUTES.
    pub attributes: u64,
}

/// XFAM bits (`ia32_xcr0_t`): PK 9, CET_U 11, CET_S 12, ULI 14.
const XFAM_PK: u64 = 1 << 9;
const XFAM_CET: u64 = (1 << 11) | (1 << 12);
const XFAM_ULI: u64 = 1 << 14;
/// ATTRIBUTES bits: KL 31, PKS 30.
const ATTR_KL: u64 = 1 << 31;
const ATTR_PKS: u64 = 1 << 30;

impl CrConfig {
    /// `init_td_vmcs()` for the TD's L1 VMCS (td_vmcs_init.c, vm_id 0).
    pub fn new(cpu: CrCpu, xfam: u64, attributes: u64) -> CrConfig {
        // td_vmcs_init.c "L1 CR0 Guest/Host Mask": FIXED0 but PG (the TD
        // is an unrestricted guest), ~FIXED1, PE, NE, NW, CD and the
        // reserved bits 63-32, 28-19, 17, 15-6.
        let cr0_mask = ((cpu.cr0_fixed0 | !cpu.cr0_fixed1) & !cr0::PG)
            | cr0::PE
            | cr0::NE
            | cr0::NW
            | cr0::CD
            | !0xffff_ffffu64
            | cr0::IGNORED;
        // td_vmcs_init.c "L1 CR0 Read Shadow": FIXED0, PE, NE.
        let cr0_shadow = cpu.cr0_fixed0 | cr0::PE | cr0::NE;
        // td_vmcs_init.c "L1 CR4 Guest/Host Mask": FIXED0, ~FIXED1, MCE,
        // VMXE, SMXE, 15, 63-26; PKE, CET, UINTR without their XFAM bits;
        // KL and PKS without their ATTRIBUTES.
        let mut cr4_mask =
            cpu.cr4_fixed0 | !cpu.cr4_fixed1 | cr4::MCE | cr4::VMXE | cr4::SMXE | cr4::RESERVED;
        if xfam & XFAM_PK == 0 {
            cr4_mask |= cr4::PKE;
        }
        if xfam & XFAM_CET != XFAM_CET {
            cr4_mask |= cr4::CET;
        }
        if xfam & XFAM_ULI == 0 {
            cr4_mask |= cr4::UINTR;
        }
        if attributes & ATTR_KL == 0 {
            cr4_mask |= cr4::KL;
        }
        if attributes & ATTR_PKS == 0 {
            cr4_mask |= cr4::PKS;
        }
        // td_vmcs_init.c "L1 CR4 Read Shadow": FIXED0 but VMXE, and MCE.
        let cr4_shadow = (cpu.cr4_fixed0 & !cr4::VMXE) | cr4::MCE;
        CrConfig {
            cpu,
            cr0_mask,
            cr0_shadow,
            cr4_mask,
            cr4_shadow,
            xfam,
            attributes,
        }
    }
}

/// What becomes of a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrWrite {
    /// No exit, and the value is written as it is (the bits the mask
    /// owns already have it): the CPU's (QEMU's) own checks apply.
    Native,
    /// This value is written instead: the bits the mask owns kept (no
    /// exit), or the module completing an exit.
    Value(u64),
    /// #GP(0).
    Gp,
    /// #VE, exit reason 28 with the access's exit qualification.
    Ve,
    /// An exit the module does not expect: it fails a non-debug TD
    /// (tdx_td_dispatcher.c, TDX_NON_RECOVERABLE_TD), and the VM stops.
    Fatal,
}

/// `write_guest_cr0(value, false)` (helpers.c), after an exit.
pub fn cr0_exit(cfg: &CrConfig, value: u64, cur_cr0: u64, cur_cr4: u64) -> CrWrite {
    // helpers.c: natively invalid values (FIXED0 but PE and PG, FIXED1)
    // are #GP(0).
    let fixed0 = cfg.cpu.cr0_fixed0 & !(cr0::PE | cr0::PG);
    if !value & fixed0 != 0 || value & !cfg.cpu.cr0_fixed1 != 0 {
        return CrWrite::Gp;
    }
    // helpers.c: PG without PE is architecturally illegal: #GP(0).
    if value & cr0::PE == 0 && value & cr0::PG != 0 {
        return CrWrite::Gp;
    }
    // helpers.c: WP cleared while CR4.CET is set: #GP(0).
    if cur_cr4 & cr4::CET != 0 && value & cr0::WP == 0 {
        return CrWrite::Gp;
    }
    // helpers.c: a change of a bit the module owns (PE cleared, NE
    // cleared, NW or CD set, bits 63-32) is a #VE.
    if value & cr0::PE == 0
        || value & cr0::NE == 0
        || value & (cr0::NW | cr0::CD) != 0
        || value >> 32 != 0
    {
        return CrWrite::Ve;
    }
    // helpers.c: written, with bits 28-19, 17 and 15-6 left as they were.
    CrWrite::Value((value & !cr0::IGNORED) | (cur_cr0 & cr0::IGNORED))
}

/// `write_guest_cr4()` (helpers.c), after an exit.
pub fn cr4_exit(cfg: &CrConfig, value: u64, cur_cr0: u64) -> CrWrite {
    // helpers.c: natively invalid values (FIXED0 but VMXE, FIXED1): #GP(0).
    let fixed0 = cfg.cpu.cr4_fixed0 & !cr4::VMXE;
    if !value & fixed0 != 0 || value & !cfg.cpu.cr4_fixed1 != 0 {
        return CrWrite::Gp;
    }
    // helpers.c is_guest_cr4_allowed_by_td_config(): features the TD's
    // XFAM or ATTRIBUTES lack (KL always): #GP(0).
    let xfam = cfg.xfam;
    if (xfam & XFAM_PK == 0 && value & cr4::PKE != 0)
        || (xfam & XFAM_CET != XFAM_CET && value & cr4::CET != 0)
        || (xfam & XFAM_ULI == 0 && value & cr4::UINTR != 0)
        || value & cr4::KL != 0
        || (cfg.attributes & ATTR_PKS == 0 && value & cr4::PKS != 0)
    {
        return CrWrite::Gp;
    }
    // helpers.c: CET set while CR0.WP is clear: #GP(0).
    if value & cr4::CET != 0 && cur_cr0 & cr0::WP == 0 {
        return CrWrite::Gp;
    }
    // helpers.c: any other exit (MCE cleared, VMXE or SMXE set) is a #VE.
    CrWrite::Ve
}

/// How the TD's vCPU state began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// TDH.VP.INIT's state (a TD from TDVF): the bits the module owns
    /// have their read-shadow values from the first instruction on.
    VpInit,
    /// cvmem's loader (SeaBIOS, no TDVF), which may leave an owned bit
    /// away from the shadow (CR4.MCE clear, CR0.CD and NW set from reset),
    /// a state no TD has. A write that keeps such a bit as it is, or
    /// brings it to the shadow value, is then not an exit: otherwise
    /// Linux's first CR4 write, which keeps MCE as it finds it, would be a
    /// #VE before it has an IDT. (cvmem deviates here; docs/tdx.md.)
    Loader,
}

/// MOV to CR0 (`cr` 0) or CR4 (4) of `value` in a TD (SDM 26.1.3: it exits
/// if a bit the mask owns differs from the read shadow; 26.3: otherwise
/// those bits keep their value), then `td_cr_access_exit()`.
pub fn cr_write(
    cfg: &CrConfig,
    start: Start,
    cr: u32,
    value: u64,
    cur_cr0: u64,
    cur_cr4: u64,
) -> CrWrite {
    let (mask, shadow, cur) = if cr == 0 {
        (cfg.cr0_mask, cfg.cr0_shadow, cur_cr0)
    } else {
        (cfg.cr4_mask, cfg.cr4_shadow, cur_cr4)
    };
    let mut exits = (value ^ shadow) & mask;
    if start == Start::Loader && (cur ^ shadow) & mask != 0 {
        exits &= value ^ cur;
        if exits == 0 {
            return CrWrite::Native;
        }
    }
    if exits != 0 {
        return if cr == 0 {
            cr0_exit(cfg, value, cur_cr0, cur_cr4)
        } else {
            cr4_exit(cfg, value, cur_cr0)
        };
    }
    let kept = (value & !mask) | (cur & mask);
    if kept == value {
        CrWrite::Native
    } else {
        CrWrite::Value(kept)
    }
}

/// LMSW of `source` (its low 16 bits): SDM 26.1.3, it exits if CR0 mask
/// bit 0 is set, the shadow's clear and the source's set, or if a mask bit
/// of 3:1 differs between source and shadow. The module's masks own PE
/// with a shadow of 1, and none of 3:1, so LMSW never exits in a TD; when
/// it would, `td_cr_access_exit()` writes CR0[3:1] from it
/// (td_other_exits.c `CR0_L1_LMSW_MASK`).
pub fn lmsw(cfg: &CrConfig, source: u64, cur_cr0: u64) -> CrWrite {
    let (mask, shadow) = (cfg.cr0_mask, cfg.cr0_shadow);
    let pe_exit = mask & shadow & cr0::PE == 0 && mask & cr0::PE != 0 && source & cr0::PE != 0;
    if pe_exit || (source ^ shadow) & mask & 0xe != 0 {
        return CrWrite::Value((source & 0xe) | (cur_cr0 & !0xe));
    }
    CrWrite::Native
}

/// CLTS: SDM 26.1.3, it exits if CR0.TS is set in both mask and shadow,
/// which the module's never are (td_vmcs_init.c); an exit would be
/// unexpected and `td_cr_access_exit()` fails the TD.
pub fn clts(cfg: &CrConfig) -> CrWrite {
    if cfg.cr0_mask & cfg.cr0_shadow & cr0::TS != 0 {
        CrWrite::Fatal
    } else {
        CrWrite::Native
    }
}

/// The access type of a CR-access exit qualification (SDM Table 28-3).
const ACCESS_MOV_TO_CR: u64 = 0;
const ACCESS_CLTS: u64 = 2;
const ACCESS_LMSW: u64 = 3;

impl TdxModule {
    /// The TD's CR virtualization, computed at the first CR write after
    /// launch (the module sets its VMCS up at TDH.VP.INIT).
    fn cr_config(&self, vmm: &Vmm, host: &dyn Host) -> &CrConfig {
        self.cr_config.get_or_init(|| {
            let cpu = super::cpuid::cpu_of(host);
            CrConfig::new(
                CrCpu::of(&cpu),
                self.td_xfam(host),
                vmm.vm().config().td_attributes.0,
            )
        })
    }

    /// A write of CR0 or CR4 (MOV, CLTS, LMSW) in a launched TD; before
    /// launch (and with paging off in a TD without TDVF: the VMM's loader)
    /// it runs as QEMU runs it.
    pub(super) fn cr_insn(&self, cx: &mut Ctx<'_>) -> InsnAction {
        if self.loader_runs(cx.regs) {
            return InsnAction::Decline;
        }
        let cfg = *self.cr_config(cx.vmm, cx.host);
        let start = if self.has_tdvf() {
            Start::VpInit
        } else {
            Start::Loader
        };
        let qual = cx.regs.info & 0xffff_ffff;
        let cr = (qual & 0xf) as u32;
        let reg = ((qual >> 8) & 0xf) as usize;
        let (cr0, cr4) = (cx.regs.cr0, cx.regs.cr4);
        let outcome = match (qual >> 4) & 3 {
            ACCESS_MOV_TO_CR if cr == 0 || cr == 4 => {
                cr_write(&cfg, start, cr, cx.regs.gpr[reg], cr0, cr4)
            }
            ACCESS_CLTS => clts(&cfg),
            ACCESS_LMSW => lmsw(&cfg, qual >> 16, cr0),
            // QEMU hands over only MOV to CR0/CR4, CLTS and LMSW.
            _ => CrWrite::Native,
        };
        match outcome {
            CrWrite::Native => InsnAction::Decline,
            // Only a MOV can be given another value (LMSW never exits).
            CrWrite::Value(v) if (qual >> 4) & 3 == ACCESS_MOV_TO_CR => {
                cx.regs.gpr[reg] = v;
                InsnAction::Done
            }
            CrWrite::Value(_) => InsnAction::Decline,
            CrWrite::Gp => {
                self.stats.cr_gps.fetch_add(1, Ordering::Relaxed);
                gp0()
            }
            // td_other_exits.c: tdx_inject_ve(VMEXIT_REASON_CR_ACCESS,
            // vm_exit_qualification.raw, ...).
            CrWrite::Ve => self.qualified_ve(cx, EXIT_REASON_CR_ACCESS, qual, &self.stats.cr_ves),
            CrWrite::Fatal => InsnAction::Stop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CPU with every CR4 feature the module 1.5 knows.
    pub(crate) fn full_cpu() -> CrCpu {
        CrCpu::of(&|_, _| [!0; 4])
    }

    fn td(xfam: u64, attributes: u64) -> CrConfig {
        CrConfig::new(full_cpu(), xfam, attributes)
    }

    /// CR0 and CR4 of a Linux TD in 64-bit mode.
    const CR0: u64 = cr0::PE | cr0::MP | cr0::ET | cr0::NE | cr0::WP | cr0::AM | cr0::PG;
    const CR4: u64 = (1 << 5) | cr4::MCE | (1 << 7) | (1 << 9) | (1 << 10) | (1 << 18);

    #[test]
    fn masks_and_shadows_are_the_modules() {
        let c = td(0x207, 0);
        // PE, NE, 6-15, 17, 19-28, NW, CD, 32-63.
        assert_eq!(c.cr0_mask, 0xffff_ffff_7ffa_ffe1);
        assert_eq!(c.cr0_shadow, 0x8000_0021);
        // MCE, VMXE, SMXE, 15, KL, CET, PKS, UINTR, 26-63; PKE owned by
        // the guest with XFAM PK.
        assert_eq!(c.cr4_mask, 0xffff_ffff_ff88_e040);
        assert_eq!(c.cr4_shadow, cr4::MCE);
        assert_ne!(td(0x7, 0).cr4_mask & cr4::PKE, 0);
        assert_eq!(td(0x1a07, 1 << 30).cr4_mask & (cr4::CET | cr4::PKS), 0);
    }

    #[test]
    fn cr0_guest_bits_run_natively() {
        let c = td(0x7, 0);
        for bit in [cr0::MP, cr0::EM, cr0::TS, cr0::WP, cr0::AM, cr0::PG] {
            assert_eq!(
                cr_write(&c, Start::VpInit, 0, CR0 ^ bit, CR0, CR4),
                CrWrite::Native,
                "{bit:#x}"
            );
        }
    }

    #[test]
    fn cr0_module_bits_are_ve_or_gp_as_helpers_c_says() {
        let c = td(0x7, 0);
        let w = |v| cr_write(&c, Start::VpInit, 0, v, CR0, CR4);
        assert_eq!(w(CR0 & !cr0::PE & !cr0::PG), CrWrite::Ve);
        assert_eq!(w(CR0 & !cr0::PE), CrWrite::Gp, "PG without PE");
        assert_eq!(w(CR0 & !cr0::NE), CrWrite::Gp, "NE is in FIXED0");
        assert_eq!(w(CR0 | cr0::NW), CrWrite::Ve);
        assert_eq!(w(CR0 | cr0::CD), CrWrite::Ve);
        assert_eq!(w(CR0 | 1 << 32), CrWrite::Gp, "beyond FIXED1");
        // Reserved bits 6-15, 17, 19-28: the write completes without them.
        for bit in (6..16).chain([17]).chain(19..29) {
            assert_eq!(w(CR0 | 1 << bit), CrWrite::Value(CR0), "bit {bit}");
        }
        // WP cleared with CET on.
        assert_eq!(
            cr_write(&c, Start::VpInit, 0, CR0 & !cr0::WP, CR0, CR4 | cr4::CET),
            CrWrite::Native,
            "no exit: WP is the guest's, the CPU checks CET"
        );
        assert_eq!(cr0_exit(&c, CR0 & !cr0::WP, CR0, cr4::CET), CrWrite::Gp);
    }

    #[test]
    fn cr4_bits_follow_fixed1_xfam_and_attributes() {
        let c = td(0x7, 0);
        let w = |v| cr_write(&c, Start::VpInit, 4, v, CR0, CR4);
        assert_eq!(w(CR4 & !cr4::MCE), CrWrite::Ve);
        assert_eq!(w(CR4 | cr4::VMXE), CrWrite::Ve);
        assert_eq!(w(CR4 | cr4::SMXE), CrWrite::Ve, "a CPU with SMX");
        for bit in [15, 26, 40, 63] {
            assert_eq!(w(CR4 | 1 << bit), CrWrite::Gp, "reserved {bit}");
        }
        for bit in [cr4::KL, cr4::PKE, cr4::CET, cr4::PKS, cr4::UINTR] {
            assert_eq!(w(CR4 | bit), CrWrite::Gp, "{bit:#x} not in the TD");
        }
        for bit in [0, 1, 2, 3, 4, 7, 8, 11, 12, 16, 17, 20, 21] {
            assert_eq!(w(CR4 ^ 1 << bit), CrWrite::Native, "bit {bit}");
        }
        // PKE with XFAM PK, PKS with ATTRIBUTES.PKS, CET with XFAM CET.
        let rich = td(0x5a07, 1 << 30);
        assert_eq!(
            cr_write(&rich, Start::VpInit, 4, CR4 | cr4::PKE | cr4::PKS, CR0, CR4),
            CrWrite::Native
        );
        assert_eq!(
            cr_write(&rich, Start::VpInit, 4, CR4 | cr4::CET, CR0, CR4),
            CrWrite::Native
        );
        // A CPU without SMX or LA57: SMXE and LA57 are beyond FIXED1.
        let bare = CrConfig::new(CrCpu::of(&|_, _| [0; 4]), 0x7, 0);
        assert_eq!(
            cr_write(&bare, Start::VpInit, 4, CR4 | cr4::SMXE, CR0, CR4),
            CrWrite::Gp
        );
        assert_eq!(
            cr_write(&bare, Start::VpInit, 4, CR4 | 1 << 12, CR0, CR4),
            CrWrite::Gp
        );
        // CET with WP clear (module's check after an exit).
        assert_eq!(cr4_exit(&rich, CR4 | cr4::CET, CR0 & !cr0::WP), CrWrite::Gp);
    }

    #[test]
    fn loader_leftovers_are_no_exit_until_the_guest_fixes_them() {
        let c = td(0x7, 0);
        let cr4 = CR4 & !cr4::MCE;
        // Kept clear, or set: no exit. Once set, clearing it is the #VE.
        assert_eq!(
            cr_write(&c, Start::Loader, 4, cr4 | 1 << 7, CR0, cr4),
            CrWrite::Native
        );
        assert_eq!(
            cr_write(&c, Start::Loader, 4, CR4, CR0, cr4),
            CrWrite::Native
        );
        assert_eq!(cr_write(&c, Start::Loader, 4, cr4, CR0, CR4), CrWrite::Ve);
        assert_eq!(
            cr_write(&c, Start::VpInit, 4, cr4 | 1 << 7, CR0, cr4),
            CrWrite::Ve
        );
        // Other owned bits are still the module's.
        assert_eq!(
            cr_write(&c, Start::Loader, 4, cr4 | cr4::VMXE, CR0, cr4),
            CrWrite::Ve
        );
        let cr0 = CR0 | cr0::CD | cr0::NW;
        assert_eq!(
            cr_write(&c, Start::Loader, 0, cr0 & !cr0::AM, cr0, CR4),
            CrWrite::Native
        );
        assert_eq!(
            cr_write(&c, Start::Loader, 0, CR0, cr0, CR4),
            CrWrite::Native
        );
        assert_eq!(
            cr_write(&c, Start::Loader, 0, cr0 & !cr0::NE, cr0, CR4),
            CrWrite::Gp
        );
    }

    /// MOV to CR through the instruction hook of a launched TD: #VE with
    /// exit reason 28, the qualification and the length in VEINFO.GET,
    /// #GP, a value of the module's, or QEMU's write; QEMU's before launch.
    #[test]
    fn cr_writes_through_the_hook() {
        use crate::hooks::fake::{access, FakeHost, MEM};
        use crate::hooks::{gpr, Access, Insn, Regs};
        use crate::tdx::testutil::*;
        use crate::vmm::vector;
        use cvmem_model::TdAttributes;

        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        let host = FakeHost::new();
        // The fake CPU has no XSAVE: OSXSAVE would be beyond FIXED1.
        const CR4: u64 = super::tests::CR4 & !(1 << 18);
        let mov = |cr: u64, reg: usize, value: u64| {
            let mut regs = Regs {
                insn_len: 3,
                cr0: CR0,
                cr4: CR4,
                efer: (1 << 10) | (1 << 8),
                info: cr | (reg as u64) << 8,
                ..Regs::default()
            };
            regs.gpr[reg] = value;
            let action = kvm.insn(0, Insn::CrWrite, &mut regs, &host).0;
            (action, regs.gpr[reg])
        };
        assert_eq!(
            mov(4, 0, CR4 | cr4::VMXE).0,
            InsnAction::Decline,
            "before launch"
        );
        access(&kvm, 0x1000, Access::Read);
        let (a, _) = mov(4, gpr::R9, CR4 | cr4::VMXE);
        assert!(
            matches!(a, InsnAction::Fault(f) if f.vector == vector::VE),
            "{a:?}"
        );
        let r = call(&kvm, &host, leaf::VP_VEINFO_GET, &[]);
        assert_eq!(
            (r.gpr[gpr::RCX], r.gpr[gpr::RDX], r.gpr[gpr::R10]),
            (28, 4 | 9 << 8, 3)
        );
        let (a, _) = mov(0, gpr::RAX, CR0 | 1 << 32);
        assert!(matches!(a, InsnAction::Fault(f) if f.vector == 13 && f.error_code == Some(0)));
        assert_eq!(mov(0, gpr::RBX, CR0 | 1 << 6), (InsnAction::Done, CR0));
        assert_eq!(mov(0, gpr::RBX, CR0 & !cr0::WP).0, InsnAction::Decline);
        let tdx = kvm.flavour.as_any().downcast_ref::<TdxModule>().unwrap();
        assert_eq!(tdx.stats.cr_ves.load(Ordering::Relaxed), 1);
        assert_eq!(tdx.stats.cr_gps.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn lmsw_and_clts_never_exit_in_a_td() {
        let c = td(0x7, 0);
        for src in 0..16 {
            assert_eq!(lmsw(&c, src, CR0), CrWrite::Native, "{src:#x}");
        }
        assert_eq!(clts(&c), CrWrite::Native);
        // A mask owning TS with TS in the shadow would exit.
        let mut t = c;
        t.cr0_mask |= cr0::TS;
        t.cr0_shadow |= cr0::TS;
        assert_eq!(clts(&t), CrWrite::Fatal);
        assert_eq!(lmsw(&t, 0x1, CR0), CrWrite::Value(CR0 & !0xe));
    }
}
