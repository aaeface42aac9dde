//! MSRs as a TD sees them: the TDX module's MSR bitmap and its RDMSR/WRMSR
//! exit handlers, and KVM's answer to TDVMCALL<Instruction.RDMSR/WRMSR>.
//!
//! Oracles (TDX module 1.5, github intel/tdx-module branch tdx_1.5):
//! - `include/auto_gen/msr_config_lookup.c`: [`MSR_TABLE`], every MSR the
//!   module names, with the meaning of its read and write bitmap bits and
//!   what the module does when an access exits to it.
//! - `src/common/helpers/helpers.c` (`set_msr_bitmaps()`,
//!   `is_msr_dynamic_bit_cleared()`): the bitmap starts all ones; FIXED_0
//!   bits and dynamic bits whose feature the TD has are cleared (native).
//! - `src/td_dispatcher/vm_exits/td_msr_access.c`: an MSR outside the
//!   bitmap's two ranges, or in them but not in the table, is a #VE; a
//!   table entry's action is #VE, #GP, #GP-or-#VE by a CPUID feature, or
//!   the module's own emulation (IA32_DEBUGCTL, IA32_MISC_ENABLE,
//!   IA32_PERF_CAPABILITIES, IA32_ARCH_CAPABILITIES,
//!   IA32_XAPIC_DISABLE_STATUS, the VMX capability MSRs, IA32_XSS and
//!   IA32_EFER writes).
//! - `src/td_dispatcher/tdx_td_dispatcher.c`: the #VE has exit reason 31
//!   (RDMSR) or 32 (WRMSR) and exit qualification 0; the #GP error code 0.
//!
//! KVM (arch/x86/kvm/vmx/tdx.c, `tdx_has_emulated_msr()`,
//! `tdx_is_read_only_msr()`, `tdx_get_msr()`, `tdx_set_msr()`) answers a
//! TDVMCALL for the MSRs it emulates and INVALID_OPERAND for the rest.
//!
//! Where QEMU's TCG CPU lacks what the module virtualizes, cvmem differs
//! (each listed in docs/tdx.md's MSR table): the VMX capability MSRs read 0
//! (TCG has no VMX, the module derives them from the CPU's), and "native"
//! MSRs are QEMU's, which reads MSRs it does not know as 0 where a CPU
//! would raise #GP.

use super::*;
use crate::hooks::{gpr, Host, InsnAction};
use crate::vmm::Vmm;

/// What a bitmap bit means (`msr_bitmap_bit_type`, helpers.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bit {
    /// Cleared: the access runs natively.
    Fixed0,
    /// Set: the access exits to the module.
    Fixed1,
    /// Cleared if ATTRIBUTES.PERFMON.
    Perfmon,
    /// Cleared if XFAM has CET (bits 11 and 12).
    XfamCet,
    /// Cleared if XFAM has PT (bit 8).
    XfamPt,
    /// Cleared if XFAM has ULI (bit 14).
    XfamUli,
    /// Cleared if XFAM has Arch LBR (bit 15).
    XfamLbr,
    /// Cleared if the TD's CPUID(7,0).ECX.WAITPKG.
    Umwait,
    /// Cleared if the TD's CPUID(0xD,1).EAX.XFD.
    Xfd,
    /// Cleared if ATTRIBUTES.PKS.
    Pks,
    /// Cleared if the TD's CPUID(7,0).EBX has HLE and RTM.
    Tsx,
    /// IA32_PERF_CAPABILITIES and IA32_PERF_METRICS: cleared with PERFMON
    /// and (CAPABILITIES) PT, or (METRICS) the CPU's PERF_METRICS.
    Other,
}

/// What the module does with an access that exits (`msr_bitmap_action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// #VE, exit reason 31 or 32.
    Ve,
    /// #GP(0).
    Gp,
    /// #VE if the TD has the MSR's feature (DCA, TME, MKTME, TSC deadline
    /// in its CPUID), else #GP(0).
    GpOrVe,
    /// Never exits (its bit is FIXED_0); the module would stop on it.
    Fatal,
    /// The module emulates the access.
    Module,
}

/// One entry of the module's MSR lookup table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsrEntry {
    /// The module's name for it.
    pub name: &'static str,
    /// The first and last MSR, inclusive.
    pub first: u32,
    pub last: u32,
    /// Read: bit meaning, exit action.
    pub rd: (Bit, Action),
    /// Write: bit meaning, exit action.
    pub wr: (Bit, Action),
}

const fn e(
    name: &'static str,
    first: u32,
    last: u32,
    rb: Bit,
    ra: Action,
    wb: Bit,
    wa: Action,
) -> MsrEntry {
    MsrEntry {
        name,
        first,
        last,
        rd: (rb, ra),
        wr: (wb, wa),
    }
}

use Action::{Fatal, Gp, GpOrVe, Module, Ve};
use Bit::{
    Fixed0, Fixed1, Other, Perfmon, Pks, Tsx, Umwait, XfamCet, XfamLbr, XfamPt, XfamUli, Xfd,
};

/// TDX module 1.5 `msr_config_lookup.c`, in its order (ascending MSR).
/// MSRs in the bitmap's ranges that are not here have both bits set and
/// exit to a #VE.
#[rustfmt::skip]
pub const MSR_TABLE: [MsrEntry; 134] = [
    e("IA32_TIME_STAMP_COUNTER", 0x10, 0x10, Fixed0, Fatal, Fixed1, Ve),
    e("IA32_SPEC_CTRL", 0x48, 0x48, Fixed0, Fatal, Fixed0, Fatal),
    e("IA32_PRED_CMD", 0x49, 0x49, Fixed0, Fatal, Fixed0, Fatal),
    e("IA32_MKTME_PARTITIONING", 0x87, 0x87, Fixed1, GpOrVe, Fixed1, GpOrVe),
    e("IA32_SGXLEPUBKEYHASHx", 0x8c, 0x8f, Fixed1, Gp, Fixed1, Gp),
    e("MSR_WBINVDP", 0x98, 0x98, Fixed1, Gp, Fixed1, Gp),
    e("MSR_WBNOINVDP", 0x99, 0x99, Fixed1, Gp, Fixed1, Gp),
    e("MSR_INTR_PENDING", 0x9a, 0x9a, Fixed1, Gp, Fixed1, Gp),
    e("IA32_SMM_MONITOR_CTL", 0x9b, 0x9b, Fixed1, Gp, Fixed1, Gp),
    e("IA32_SMBASE", 0x9e, 0x9e, Fixed1, Gp, Fixed1, Gp),
    e("IA32_MISC_PACKAGE_CTLS", 0xbc, 0xbc, Fixed0, Fatal, Fixed1, Ve),
    e("IA32_XAPIC_DISABLE_STATUS", 0xbd, 0xbd, Fixed1, Module, Fixed0, Fatal),
    e("IA32_PMCx", 0xc1, 0xc8, Perfmon, Gp, Perfmon, Gp),
    e("IA32_UMWAIT_CONTROL", 0xe1, 0xe1, Umwait, Gp, Umwait, Gp),
    e("IA32_ARCH_CAPABILITIES", 0x10a, 0x10a, Fixed1, Module, Fixed0, Fatal),
    e("IA32_FLUSH_CMD", 0x10b, 0x10b, Fixed0, Fatal, Fixed0, Fatal),
    e("IA32_TSX_CTRL", 0x122, 0x122, Tsx, Gp, Tsx, Gp),
    e("IA32_SYSENTER_CS", 0x174, 0x174, Fixed0, Fatal, Fixed0, Fatal),
    e("IA32_SYSENTER_ESP", 0x175, 0x175, Fixed0, Fatal, Fixed0, Fatal),
    e("IA32_SYSENTER_EIP", 0x176, 0x176, Fixed0, Fatal, Fixed0, Fatal),
    e("IA32_PERFEVTSELx", 0x186, 0x18d, Perfmon, Gp, Perfmon, Gp),
    e("IA32_OVERCLOCKING_STATUS", 0x195, 0x195, Fixed1, Gp, Fixed1, Gp),
    e("IA32_MISC_ENABLE", 0x1a0, 0x1a0, Perfmon, Module, Fixed1, Ve),
    e("MSR_OFFCORE_RSPx", 0x1a6, 0x1a7, Perfmon, Gp, Perfmon, Gp),
    e("IA32_XFD", 0x1c4, 0x1c4, Xfd, Gp, Xfd, Gp),
    e("IA32_XFD_ERR", 0x1c5, 0x1c5, Xfd, Gp, Xfd, Gp),
    e("IA32_DEBUGCTL", 0x1d9, 0x1d9, Fixed1, Module, Fixed1, Module),
    e("IA32_PLATFORM_DCA_CAP", 0x1f8, 0x1f8, Fixed1, GpOrVe, Fixed1, GpOrVe),
    e("IA32_CPU_DCA_CAP", 0x1f9, 0x1f9, Fixed1, GpOrVe, Fixed1, GpOrVe),
    e("IA32_DCA_0_CAP", 0x1fa, 0x1fa, Fixed1, GpOrVe, Fixed1, GpOrVe),
    e("MSR_SLAM_ENABLE", 0x276, 0x276, Fixed1, Gp, Fixed1, Gp),
    e("IA32_PAT", 0x277, 0x277, Fixed0, Fatal, Fixed0, Fatal),
    e("IA32_FIXED_CTRx", 0x309, 0x310, Perfmon, Gp, Perfmon, Gp),
    e("IA32_PERF_METRICS", 0x329, 0x329, Other, Gp, Other, Gp),
    e("IA32_PERF_CAPABILITIES", 0x345, 0x345, Other, Module, Perfmon, Gp),
    e("IA32_FIXED_CTR_CTRL", 0x38d, 0x38d, Perfmon, Gp, Perfmon, Gp),
    e("IA32_PERF_GLOBAL_STATUS", 0x38e, 0x38e, Perfmon, Gp, Perfmon, Gp),
    e("IA32_PERF_GLOBAL_CTRL", 0x38f, 0x38f, Perfmon, Gp, Perfmon, Gp),
    e("IA32_PERF_GLOBAL_STATUS_RESET", 0x390, 0x390, Perfmon, Gp, Perfmon, Gp),
    e("IA32_PERF_GLOBAL_STATUS_SET", 0x391, 0x391, Perfmon, Gp, Perfmon, Gp),
    e("IA32_PERF_GLOBAL_INUSE", 0x392, 0x392, Perfmon, Gp, Perfmon, Gp),
    e("IA32_PEBS_ENABLE", 0x3f1, 0x3f1, Perfmon, Gp, Perfmon, Gp),
    e("MSR_PEBS_MATRIX_VECT", 0x3f2, 0x3f2, Perfmon, Gp, Perfmon, Gp),
    e("MSR_PEBS_LD_LATENCY", 0x3f6, 0x3f6, Perfmon, Gp, Perfmon, Gp),
    e("MSR_PEBS_FRONTEND", 0x3f7, 0x3f7, Perfmon, Gp, Perfmon, Gp),
    e("IA32_VMX_BASIC", 0x480, 0x480, Fixed1, Module, Fixed1, Gp),
    e("IA32_VMX_PINBASED_CTLS", 0x481, 0x481, Fixed1, Ve, Fixed1, Gp),
    e("IA32_VMX_PROCBASED_CTLS", 0x482, 0x482, Fixed1, Ve, Fixed1, Gp),
    e("IA32_VMX_EXIT_CTLS", 0x483, 0x483, Fixed1, Ve, Fixed1, Gp),
    e("IA32_VMX_ENTRY_CTLS", 0x484, 0x484, Fixed1, Ve, Fixed1, Gp),
    e("IA32_VMX_MISC", 0x485, 0x485, Fixed1, Module, Fixed1, Gp),
    e("IA32_VMX_CR0_FIXED0", 0x486, 0x486, Fixed1, Module, Fixed1, Gp),
    e("IA32_VMX_CR0_FIXED1", 0x487, 0x487, Fixed1, Module, Fixed1, Gp),
    e("IA32_VMX_CR4_FIXED0", 0x488, 0x488, Fixed1, Module, Fixed1, Gp),
    e("IA32_VMX_CR4_FIXED1", 0x489, 0x489, Fixed1, Module, Fixed1, Gp),
    e("IA32_VMX_VMCS_ENUM", 0x48a, 0x48a, Fixed1, Ve, Fixed1, Gp),
    e("IA32_VMX_PROCBASED_CTLS2", 0x48b, 0x48b, Fixed1, Module, Fixed1, Gp),
    e("IA32_VMX_EPT_VPID_CAP", 0x48c, 0x48c, Fixed1, Module, Fixed1, Gp),
    e("IA32_VMX_TRUE_PINBASED_CTLS", 0x48d, 0x48d, Fixed1, Module, Fixed1, Gp),
    e("IA32_VMX_TRUE_PROCBASED_CTLS", 0x48e, 0x48e, Fixed1, Module, Fixed1, Gp),
    e("IA32_VMX_TRUE_EXIT_CTLS", 0x48f, 0x48f, Fixed1, Module, Fixed1, Gp),
    e("IA32_VMX_TRUE_ENTRY_CTLS", 0x490, 0x490, Fixed1, Module, Fixed1, Gp),
    e("IA32_VMX_VMFUNC", 0x491, 0x491, Fixed1, Module, Fixed1, Gp),
    e("IA32_VMX_PROCBASED_CTLS3", 0x492, 0x492, Fixed1, Module, Fixed1, Gp),
    e("IA32_A_PMCx", 0x4c1, 0x4c8, Perfmon, Gp, Perfmon, Gp),
    e("IA32_SGX_SVN_STATUS", 0x500, 0x500, Fixed1, Gp, Fixed1, Gp),
    e("IA32_RTIT_OUTPUT_BASE", 0x560, 0x560, XfamPt, Gp, XfamPt, Gp),
    e("IA32_RTIT_OUTPUT_MASK_PTRS", 0x561, 0x561, XfamPt, Gp, XfamPt, Gp),
    e("IA32_RTIT_CTL", 0x570, 0x570, XfamPt, Gp, XfamPt, Gp),
    e("IA32_RTIT_STATUS", 0x571, 0x571, XfamPt, Gp, XfamPt, Gp),
    e("IA32_RTIT_CR3_MATCH", 0x572, 0x572, XfamPt, Gp, XfamPt, Gp),
    e("IA32_RTIT_ADDR0_A", 0x580, 0x580, XfamPt, Gp, XfamPt, Gp),
    e("IA32_RTIT_ADDR0_B", 0x581, 0x581, XfamPt, Gp, XfamPt, Gp),
    e("IA32_RTIT_ADDR1_A", 0x582, 0x582, XfamPt, Gp, XfamPt, Gp),
    e("IA32_RTIT_ADDR1_B", 0x583, 0x583, XfamPt, Gp, XfamPt, Gp),
    e("IA32_RTIT_ADDR2_A", 0x584, 0x584, XfamPt, Gp, XfamPt, Gp),
    e("IA32_RTIT_ADDR2_B", 0x585, 0x585, XfamPt, Gp, XfamPt, Gp),
    e("IA32_RTIT_ADDR3_A", 0x586, 0x586, XfamPt, Gp, XfamPt, Gp),
    e("IA32_RTIT_ADDR3_B", 0x587, 0x587, XfamPt, Gp, XfamPt, Gp),
    e("IA32_DS_AREA", 0x600, 0x600, Fixed0, Fatal, Fixed0, Fatal),
    e("IA32_U_CET", 0x6a0, 0x6a0, XfamCet, Gp, XfamCet, Gp),
    e("IA32_S_CET", 0x6a2, 0x6a2, XfamCet, Gp, XfamCet, Gp),
    e("IA32_PL0_SSP", 0x6a4, 0x6a4, XfamCet, Gp, XfamCet, Gp),
    e("IA32_PL1_SSP", 0x6a5, 0x6a5, XfamCet, Gp, XfamCet, Gp),
    e("IA32_PL2_SSP", 0x6a6, 0x6a6, XfamCet, Gp, XfamCet, Gp),
    e("IA32_PL3_SSP", 0x6a7, 0x6a7, XfamCet, Gp, XfamCet, Gp),
    e("IA32_INTERRUPT_SSP_TABLE_ADDR", 0x6a8, 0x6a8, XfamCet, Gp, XfamCet, Gp),
    e("IA32_TSC_DEADLINE", 0x6e0, 0x6e0, Fixed1, GpOrVe, Fixed1, GpOrVe),
    e("IA32_PKRS", 0x6e1, 0x6e1, Pks, Gp, Pks, Gp),
    e("Reserved for xAPIC MSRs", 0x800, 0x801, Fixed1, Gp, Fixed1, Gp),
    e("Reserved for xAPIC MSRs", 0x804, 0x807, Fixed1, Gp, Fixed1, Gp),
    e("IA32_X2APIC_TPR", 0x808, 0x808, Fixed0, Fatal, Fixed0, Fatal),
    e("Reserved for xAPIC MSRs", 0x809, 0x809, Fixed0, Fatal, Fixed0, Fatal),
    e("IA32_X2APIC_PPR", 0x80a, 0x80a, Fixed0, Fatal, Fixed0, Fatal),
    e("IA32_X2APIC_EOI", 0x80b, 0x80b, Fixed0, Fatal, Fixed0, Fatal),
    e("Reserved for xAPIC MSRs", 0x80c, 0x80c, Fixed0, Fatal, Fixed0, Fatal),
    e("Reserved for xAPIC MSRs", 0x80e, 0x80e, Fixed0, Fatal, Fixed0, Fatal),
    e("IA32_X2APIC_ISRx", 0x810, 0x817, Fixed0, Fatal, Fixed0, Fatal),
    e("IA32_X2APIC_TMRx", 0x818, 0x81f, Fixed0, Fatal, Fixed0, Fatal),
    e("IA32_X2APIC_IRRx", 0x820, 0x827, Fixed0, Fatal, Fixed0, Fatal),
    e("Reserved for xAPIC MSRs", 0x829, 0x82e, Fixed1, Gp, Fixed1, Gp),
    e("Reserved for xAPIC MSRs", 0x831, 0x831, Fixed1, Gp, Fixed1, Gp),
    e("IA32_X2APIC_SELF_IPI", 0x83f, 0x83f, Fixed0, Fatal, Fixed0, Fatal),
    e("Reserved for xAPIC MSRs", 0x840, 0x87f, Fixed1, Gp, Fixed1, Gp),
    e("Reserved for xAPIC MSRs", 0x880, 0x8bf, Fixed1, Gp, Fixed1, Gp),
    e("Reserved for xAPIC MSRs", 0x8c0, 0x8ff, Fixed1, Gp, Fixed1, Gp),
    e("IA32_TME_CAPABILITY", 0x981, 0x981, Fixed1, GpOrVe, Fixed1, GpOrVe),
    e("IA32_TME_ACTIVATE", 0x982, 0x982, Fixed1, GpOrVe, Fixed1, GpOrVe),
    e("IA32_TME_EXCLUDE_MASK", 0x983, 0x983, Fixed1, GpOrVe, Fixed1, GpOrVe),
    e("IA32_TME_EXCLUDE_BASE", 0x984, 0x984, Fixed1, GpOrVe, Fixed1, GpOrVe),
    e("IA32_UINTR_RR", 0x985, 0x985, XfamUli, Gp, XfamUli, Gp),
    e("IA32_UINTR_HANDLER", 0x986, 0x986, XfamUli, Gp, XfamUli, Gp),
    e("IA32_UINTR_STACKADJUST", 0x987, 0x987, XfamUli, Gp, XfamUli, Gp),
    e("IA32_UINTR_MISC", 0x988, 0x988, XfamUli, Gp, XfamUli, Gp),
    e("IA32_UINTR_PD", 0x989, 0x989, XfamUli, Gp, XfamUli, Gp),
    e("IA32_UINTR_TT", 0x98a, 0x98a, XfamUli, Gp, XfamUli, Gp),
    e("IA32_DEBUG_INTERFACE", 0xc80, 0xc80, Fixed0, Fatal, Fixed1, Ve),
    e("IA32_BNDCFGS", 0xd90, 0xd90, Fixed1, Gp, Fixed1, Gp),
    e("IA32_PASID", 0xd93, 0xd93, Fixed1, Gp, Fixed1, Gp),
    e("IA32_XSS", 0xda0, 0xda0, Fixed0, Fatal, Fixed1, Module),
    e("IA32_LBR_INFO", 0x1200, 0x12ff, XfamLbr, Gp, XfamLbr, Gp),
    e("IA32_LBR_CTL", 0x14ce, 0x14ce, XfamLbr, Gp, XfamLbr, Gp),
    e("IA32_LBR_DEPTH", 0x14cf, 0x14cf, XfamLbr, Gp, XfamLbr, Gp),
    e("IA32_LBR_x_FROM_IP", 0x1500, 0x15ff, XfamLbr, Gp, XfamLbr, Gp),
    e("IA32_LBR_x_TO_IP", 0x1600, 0x16ff, XfamLbr, Gp, XfamLbr, Gp),
    e("IA32_UARCH_MISC_CTL", 0x1b01, 0x1b01, Fixed0, Fatal, Fixed0, Fatal),
    e("IA32_EFER", 0xc0000080, 0xc0000080, Fixed0, Fatal, Fixed1, Module),
    e("IA32_STAR", 0xc0000081, 0xc0000081, Fixed0, Fatal, Fixed0, Fatal),
    e("IA32_LSTAR", 0xc0000082, 0xc0000082, Fixed0, Fatal, Fixed0, Fatal),
    e("IA32_FMASK", 0xc0000084, 0xc0000084, Fixed0, Fatal, Fixed0, Fatal),
    e("IA32_FSBASE", 0xc0000100, 0xc0000100, Fixed0, Fatal, Fixed0, Fatal),
    e("IA32_GSBASE", 0xc0000101, 0xc0000101, Fixed0, Fatal, Fixed0, Fatal),
    e("IA32_KERNEL_GS_BASE", 0xc0000102, 0xc0000102, Fixed0, Fatal, Fixed0, Fatal),
    e("IA32_TSC_AUX", 0xc0000103, 0xc0000103, Fixed0, Fatal, Fixed0, Fatal),
];

/// MSR numbers the module and KVM treat specially.
pub mod index {
    #![allow(missing_docs)]
    pub const APIC_BASE: u32 = 0x1b;
    pub const SMI_COUNT: u32 = 0x34;
    pub const FEAT_CTL: u32 = 0x3a;
    pub const PPIN_CTL: u32 = 0x4e;
    pub const BIOS_UPDT_TRIG: u32 = 0x79;
    pub const BIOS_SIGN_ID: u32 = 0x8b;
    pub const PLATFORM_INFO: u32 = 0xce;
    pub const X2APIC_ID: u32 = 0x802;
    pub const MKTME_PARTITIONING: u32 = 0x87;
    pub const XAPIC_DISABLE_STATUS: u32 = 0xbd;
    pub const ARCH_CAPABILITIES: u32 = 0x10a;
    pub const MCG_CAP: u32 = 0x179;
    pub const MCG_EXT_CTL: u32 = 0x4d0;
    pub const MISC_ENABLE: u32 = 0x1a0;
    pub const DEBUGCTL: u32 = 0x1d9;
    pub const DCA_FIRST: u32 = 0x1f8;
    pub const DCA_LAST: u32 = 0x1fa;
    pub const PERF_METRICS: u32 = 0x329;
    pub const PERF_CAPABILITIES: u32 = 0x345;
    pub const VMX_FIRST: u32 = 0x480;
    pub const VMX_LAST: u32 = 0x492;
    pub const TSC_DEADLINE: u32 = 0x6e0;
    pub const TME_FIRST: u32 = 0x981;
    pub const TME_LAST: u32 = 0x984;
    pub const XSS: u32 = 0xda0;
    pub const EFER: u32 = 0xc000_0080;
    pub const KVM_POLL_CONTROL: u32 = 0x4b56_4d05;
}

/// The VMX bitmap covers MSRs 0-0x1fff and 0xc0000000-0xc0001fff (SDM
/// 25.6.9); the module's `is_msr_covered_by_bitmap()`.
pub fn covered_by_bitmap(msr: u32) -> bool {
    msr < 0x2000 || (0xc000_0000..0xc000_2000).contains(&msr)
}

/// The table entry holding `msr` (`find_msr_entry()`).
pub fn lookup(msr: u32) -> Option<&'static MsrEntry> {
    MSR_TABLE.iter().find(|e| (e.first..=e.last).contains(&msr))
}

/// What the TD was created with that the bitmap and the GP-or-VE actions
/// depend on: ATTRIBUTES, XFAM and the TD's virtual CPUID as TDH.MNG.INIT
/// computed it (`tdcs.executions_ctl_fields.cpuid_flags`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TdMsrConfig {
    /// ATTRIBUTES.PERFMON (bit 63).
    pub perfmon: bool,
    /// ATTRIBUTES.PKS (bit 30).
    pub pks: bool,
    /// XFAM.
    pub xfam: u64,
    /// CPUID(7,0).ECX.WAITPKG (5).
    pub waitpkg: bool,
    /// CPUID(0xD,1).EAX.XFD (4), given an XFAM component that supports it.
    pub xfd: bool,
    /// CPUID(7,0).EBX.HLE (4) and RTM (11).
    pub tsx: bool,
    /// CPUID(1).ECX.TSC_DEADLINE (24).
    pub tsc_deadline: bool,
    /// CPUID(1).ECX.DCA (18).
    pub dca: bool,
    /// CPUID(7,0).ECX.TME (13).
    pub tme: bool,
    /// CPUID(7,0).EDX.PCONFIG (18).
    pub mktme: bool,
    /// IA32_XSS bits the CPU supports: CPUID(0xD,1) EDX:ECX.
    pub xss_supported: u64,
    /// TD_CTLS.REDUCE_VE, as the guest has it set now.
    pub reduce_ve: bool,
    /// TD_CTLS.ENUM_TOPOLOGY, likewise.
    pub enum_topology: bool,
}

/// XFAM bits (XCR0/IA32_XSS numbering).
pub mod xfam {
    #![allow(missing_docs)]
    pub const PT: u64 = 1 << 8;
    pub const CET: u64 = (1 << 11) | (1 << 12);
    pub const ULI: u64 = 1 << 14;
    pub const LBR: u64 = 1 << 15;
}

impl TdMsrConfig {
    /// From ATTRIBUTES, XFAM and the TD's virtual CPUID `cpuid`.
    pub fn new(attributes: u64, xfam: u64, cpuid: &dyn Fn(u32, u32) -> [u32; 4]) -> TdMsrConfig {
        let bit = |v: u32, n: u32| v & (1 << n) != 0;
        let l1 = cpuid(1, 0);
        let l7 = cpuid(7, 0);
        let ld1 = cpuid(0xd, 1);
        TdMsrConfig {
            perfmon: attributes & (1 << 63) != 0,
            pks: attributes & (1 << 30) != 0,
            xfam,
            waitpkg: bit(l7[2], 5),
            xfd: bit(ld1[0], 4),
            tsx: bit(l7[1], 4) && bit(l7[1], 11),
            tsc_deadline: bit(l1[2], 24),
            dca: bit(l1[2], 18),
            tme: bit(l7[2], 13),
            mktme: bit(l7[3], 18),
            xss_supported: u64::from(ld1[2]) | (u64::from(ld1[3]) << 32),
            reduce_ve: false,
            enum_topology: false,
        }
    }

    /// This TD's configuration under TD_CTLS `ctls`: REDUCE_VE, and the
    /// CPUID flags `update_mutable_cpuid_flags()` clears with it (no
    /// FEATURE_PARAVIRT_CTLS in cvmem): DCA, TSC deadline, TME, PCONFIG.
    pub fn with_td_ctls(mut self, ctls: u64) -> TdMsrConfig {
        self.reduce_ve = ctls & super::field::TD_CTLS_REDUCE_VE != 0;
        self.enum_topology = ctls & super::field::TD_CTLS_ENUM_TOPOLOGY != 0;
        if self.reduce_ve {
            self.dca = false;
            self.tsc_deadline = false;
            self.tme = false;
            self.mktme = false;
        }
        self
    }

    /// `is_msr_dynamic_bit_cleared()`: whether a dynamic bit is cleared
    /// (the access runs natively) for this TD. PERF_METRICS needs the CPU's
    /// PERF_CAPABILITIES.PERF_METRICS_AVAILABLE as well, which only matters
    /// with PERFMON (never set in cvmem).
    fn dynamic_cleared(&self, bit: Bit, msr: u32) -> bool {
        let has = |mask: u64| self.xfam & mask == mask;
        match bit {
            Bit::Fixed0 | Bit::Fixed1 => false,
            Bit::Perfmon => self.perfmon,
            Bit::XfamCet => has(xfam::CET),
            Bit::XfamPt => has(xfam::PT),
            Bit::XfamUli => has(xfam::ULI),
            Bit::XfamLbr => has(xfam::LBR),
            Bit::Umwait => self.waitpkg,
            Bit::Xfd => self.xfd,
            Bit::Pks => self.pks,
            Bit::Tsx => self.tsx,
            Bit::Other => match msr {
                index::PERF_CAPABILITIES => self.perfmon && has(xfam::PT),
                index::PERF_METRICS => false,
                _ => false,
            },
        }
    }

    /// The GP-or-VE choice of `rd_wr_msr_generic_case()`: #VE if the TD
    /// has the feature the MSR belongs to.
    fn gp_or_ve(&self, msr: u32) -> MsrClass {
        let has = match msr {
            index::DCA_FIRST..=index::DCA_LAST => self.dca,
            index::TME_FIRST..=index::TME_LAST => self.tme,
            index::MKTME_PARTITIONING => self.mktme,
            index::TSC_DEADLINE => self.tsc_deadline,
            _ => false,
        };
        if has {
            MsrClass::Ve
        } else {
            MsrClass::Gp
        }
    }

    /// What RDMSR (`write` false) or WRMSR of `msr` does in this TD.
    pub fn classify(&self, msr: u32, write: bool) -> MsrClass {
        if !covered_by_bitmap(msr) {
            return MsrClass::Ve;
        }
        if ctls_msr(self, msr, write).is_some() {
            return MsrClass::Module;
        }
        let Some(entry) = lookup(msr) else {
            // An MSR the table does not name: #VE (CONFIG_PARAVIRT), #GP
            // under REDUCE_VE (`rd_wr_msr_generic_case()`). The x2APIC
            // registers the CPU does not virtualize (ID, version, LDR,
            // SVR, ESR, ICR, the LVT and timer) stay #VE: a guest cannot
            // send an IPI otherwise, and the module's newer MSR table
            // (not published with its source) lists them with action VE.
            return if self.reduce_ve && !X2APIC.contains(&msr) {
                MsrClass::Gp
            } else {
                MsrClass::Ve
            };
        };
        let (bit, action) = if write { entry.wr } else { entry.rd };
        if bit == Bit::Fixed0 || self.dynamic_cleared(bit, msr) {
            return MsrClass::Native;
        }
        match action {
            // The VMX capability MSRs the module does not emulate: #GP
            // under REDUCE_VE (`td_rdmsr_exit()`).
            Action::Ve
                if !write
                    && self.reduce_ve
                    && (index::VMX_FIRST..=index::VMX_LAST).contains(&msr) =>
            {
                MsrClass::Gp
            }
            Action::Ve => MsrClass::Ve,
            Action::Gp => MsrClass::Gp,
            Action::GpOrVe => self.gp_or_ve(msr),
            Action::Module => MsrClass::Module,
            // The table never pairs a set bit with FATAL_ERROR (a unit test
            // checks); the module would stop the TD.
            Action::Fatal => MsrClass::Gp,
        }
    }
}

/// The x2APIC MSR range.
pub const X2APIC: std::ops::RangeInclusive<u32> = 0x800..=0x8ff;

/// An access `td_rdmsr_exit()`/`td_wrmsr_exit()` of a module with #VE
/// reduction handle before the table, by TD_CTLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtlsMsr {
    /// RDMSR reads this value.
    Read(u64),
    /// RDMSR reads the vCPU's SMI count (TDVPS), 0 until written.
    ReadSmiCount,
    /// WRMSR sets the vCPU's SMI count (not the CPU's).
    WriteSmiCount,
    /// WRMSR is dropped.
    Ignore,
    /// WRMSR of IA32_MISC_ENABLE, checked and kept in TDVPS
    /// ([`misc_enable_write`]).
    MiscEnable,
}

/// The module's REDUCE_VE and ENUM_TOPOLOGY special cases
/// (`td_rdmsr_exit()`, `td_wrmsr_exit()`): `None` where the table decides.
pub fn ctls_msr(cfg: &TdMsrConfig, msr: u32, write: bool) -> Option<CtlsMsr> {
    if msr == index::X2APIC_ID && !write {
        // The virtual x2APIC ID; the caller reads it.
        return cfg.enum_topology.then_some(CtlsMsr::Read(0));
    }
    if !cfg.reduce_ve {
        return None;
    }
    Some(match (msr, write) {
        (index::SMI_COUNT, false) => CtlsMsr::ReadSmiCount,
        (index::SMI_COUNT, true) => CtlsMsr::WriteSmiCount,
        // Locked.
        (index::FEAT_CTL | index::PPIN_CTL, false) => CtlsMsr::Read(1),
        (index::BIOS_SIGN_ID, false) => CtlsMsr::Read(0xffff_ffff),
        (index::BIOS_SIGN_ID | index::BIOS_UPDT_TRIG, true) => CtlsMsr::Ignore,
        (index::PLATFORM_INFO, false) => CtlsMsr::Read(0),
        (index::MISC_ENABLE, true) => CtlsMsr::MiscEnable,
        _ => return None,
    })
}

/// The outcome of a module-emulated WRMSR of IA32_MISC_ENABLE under
/// REDUCE_VE (`wrmsr_ia32_misc_enable()`): `Ok` the value TDVPS keeps,
/// `Err` #GP (`true`) or #VE (`false`). `old` is the vCPU's value.
pub fn misc_enable_write(old: u64, value: u64) -> Result<u64, bool> {
    // Bits that are #GP(0) unless 0 (the ABI spec's table).
    const GP_ON_NON_0: u64 = 0xffff_ffff_ff3a_e776;
    const PERFMON_AVAILABLE: u64 = 1 << 7;
    const BTS_UNAVAILABLE: u64 = 1 << 11;
    const PEBS_UNAVAILABLE: u64 = 1 << 12;
    const EST: u64 = 1 << 16;
    const MONITOR_FSM: u64 = 1 << 18;
    const LIMIT_CPUID_MAXVAL: u64 = 1 << 22;
    const XTPR_MESSAGE_DISABLE: u64 = 1 << 23;
    if value & GP_ON_NON_0 != 0 {
        return Err(true);
    }
    let read_only = PERFMON_AVAILABLE | BTS_UNAVAILABLE | PEBS_UNAVAILABLE;
    let value = (value & !read_only) | (old & read_only);
    // A cvmem TD has no EST (under REDUCE_VE without
    // FEATURE_PARAVIRT_CTLS) and no xTPR update control.
    if value & EST != 0 {
        return Err(true);
    }
    if (value ^ old) & MONITOR_FSM != 0 || value & LIMIT_CPUID_MAXVAL != 0 {
        return Err(false);
    }
    if value & XTPR_MESSAGE_DISABLE != 0 {
        return Err(true);
    }
    Ok(value)
}

/// What an RDMSR or WRMSR does in a TD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrClass {
    /// Runs natively: here QEMU's TCG CPU does it.
    Native,
    /// #GP(0).
    Gp,
    /// #VE, exit reason 31 or 32: the guest asks the VMM with TDVMCALL.
    Ve,
    /// The module emulates it.
    Module,
}

/// IA32_ARCH_CAPABILITIES bits the module passes from the CPU with no
/// configuration (`init_virt_ia32_arch_capabilities()`, virt_msr_helpers.c,
/// with TD_PARAMS' MSR_CONFIG_CTLS.IA32_ARCH_CAP clear as QEMU leaves it):
/// 0-3, 5, 6, 8, 12-15 and 19; SSB_NO (4), BHI_NO (20) and PBRSB_NO (24)
/// are allow-direct and forced to 0; TSX_CTRL (7) only with TSX; the rest
/// fixed 0.
pub const ARCH_CAPABILITIES_NATIVE: u64 = 0x0008_f16f;
const ARCH_CAPABILITIES_TSX_CTRL: u64 = 1 << 7;

/// IA32_DEBUGCTL (msr_defs.h `ia32_debugctl_t`): reserved bits 3-5 and
/// 16-63, TR (6), BTS (7), EN_UNCORE_PMI (13).
mod debugctl {
    pub const RESERVED: u64 = (0b111 << 3) | !0xffff;
    pub const TR: u64 = 1 << 6;
    pub const BTS: u64 = 1 << 7;
    pub const EN_UNCORE_PMI: u64 = 1 << 13;
}

/// IA32_EFER: SCE (0), LMA (10).
mod efer {
    pub const SCE: u64 = 1 << 0;
    pub const LMA: u64 = 1 << 10;
}

/// IA32_MISC_ENABLE: PERFMON_AVAILABLE (7), PEBS_UNAVAILABLE (12).
mod misc_enable {
    pub const PERFMON_AVAILABLE: u64 = 1 << 7;
    pub const PEBS_UNAVAILABLE: u64 = 1 << 12;
}

/// The module's emulation of an RDMSR that exits with action OTHER
/// (`td_rdmsr_exit()`); `debugctl` is the vCPU's IA32_DEBUGCTL.
pub fn module_rdmsr(cfg: &TdMsrConfig, msr: u32, debugctl: u64, host: &dyn Host) -> u64 {
    match msr {
        index::DEBUGCTL => debugctl & !debugctl::EN_UNCORE_PMI,
        // Without PERFMON: the CPU's value, perfmon unavailable, PEBS
        // unavailable.
        index::MISC_ENABLE => {
            (host.rdmsr(msr).unwrap_or(0) & !misc_enable::PERFMON_AVAILABLE)
                | misc_enable::PEBS_UNAVAILABLE
        }
        // Without PERFMON: 0.
        index::PERF_CAPABILITIES => 0,
        index::ARCH_CAPABILITIES => {
            let mut keep = ARCH_CAPABILITIES_NATIVE;
            if cfg.tsx {
                keep |= ARCH_CAPABILITIES_TSX_CTRL;
            }
            host.rdmsr(msr).unwrap_or(0) & keep
        }
        // LEGACY_XAPIC_DISABLED: a TD's APIC is always x2APIC.
        index::XAPIC_DISABLE_STATUS => 1,
        // The module returns virtual VMX capabilities derived from the
        // CPU's (tdcs.virt_msrs); TCG has no VMX, so there is nothing to
        // derive them from: 0, listed in docs/tdx.md.
        index::VMX_FIRST..=index::VMX_LAST => 0,
        // No other MSR has action OTHER on read (a unit test checks).
        _ => 0,
    }
}

/// The TD's initial IA32_EFER (`td_vmcs_init.c`: 0x901, SCE, LME and NXE),
/// which a guest can change only in SCE afterwards ([`module_wrmsr`]). A
/// cvmem TD launches in whatever mode its loader left it (a Linux kernel
/// with only LME set), so its vCPUs get these bits where KVM_TDX_INIT_VCPU
/// would have given them: at their first TDCALL, CPUID or MSR access.
pub const INITIAL_EFER: u64 = 0x901;

/// Gives vCPU `vcpu` the module's initial EFER bits.
pub fn init_vcpu_efer(vcpu: u32, host: &dyn Host) {
    let Some(old) = host.rdmsr(index::EFER) else {
        return;
    };
    let new = old | INITIAL_EFER;
    if old != new && !host.wrmsr(index::EFER, new) {
        eprintln!(
            "cvmem: vCPU {vcpu}: IA32_EFER {old:#x} -> {new:#x} (the TD's initial EFER) refused"
        );
    }
}

/// The outcome of a WRMSR the module emulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleWrite {
    /// Done; `Some` new IA32_DEBUGCTL to keep.
    Done(Option<u64>),
    /// #GP(0).
    Gp,
    /// #VE (exit reason 32).
    Ve,
}

/// The module's emulation of a WRMSR that exits with action OTHER
/// (`wrmsr_ia32_xss()`, `wrmsr_ia32_debugctl()`, `wrmsr_ia32_efer()`).
/// `old_efer` is the vCPU's EFER.
pub fn module_wrmsr(
    cfg: &TdMsrConfig,
    msr: u32,
    value: u64,
    debugctl: u64,
    old_efer: u64,
    host: &dyn Host,
) -> ModuleWrite {
    match msr {
        index::XSS => {
            if value & !(cfg.xss_supported & cfg.xfam) != 0 {
                return ModuleWrite::Gp;
            }
            host.wrmsr(msr, value);
            ModuleWrite::Done(None)
        }
        index::DEBUGCTL => {
            if value & debugctl::RESERVED != 0 {
                return ModuleWrite::Gp;
            }
            // TR without BTS (trace messages) only in debug mode: #VE.
            if value & debugctl::TR != 0 && value & debugctl::BTS == 0 {
                return ModuleWrite::Ve;
            }
            let kept = (value & !debugctl::EN_UNCORE_PMI) | (debugctl & debugctl::EN_UNCORE_PMI);
            ModuleWrite::Done(Some(kept))
        }
        index::EFER => {
            // LMA is read-only; only SCE may change.
            let new = (value & !efer::LMA) | (old_efer & efer::LMA);
            let old = (old_efer & !efer::SCE) | (new & efer::SCE);
            if old != new {
                return ModuleWrite::Ve;
            }
            host.wrmsr(msr, new);
            ModuleWrite::Done(None)
        }
        _ => ModuleWrite::Ve,
    }
}

/// `tdx_has_emulated_msr()` (Linux 6.16 arch/x86/kvm/vmx/tdx.c, with the
/// x2APIC ranges as "KVM: TDX: Fix APIC MSR ranges in
/// tdx_has_emulated_msr()" corrects them): the MSRs KVM emulates for a TD.
pub fn kvm_has_emulated_msr(msr: u32) -> bool {
    match msr {
        0x8b // IA32_UCODE_REV
        | index::ARCH_CAPABILITIES
        | 0x1fc // IA32_POWER_CTL
        | 0x277 // IA32_CR_PAT
        | 0xfe // MTRRcap
        | 0x200..=0x26f // MTRR phys base/mask, fixed ranges
        | 0x2ff // MTRRdefType
        | index::TSC_DEADLINE
        | index::MISC_ENABLE
        | 0xce // PLATFORM_INFO
        | 0x140 // MISC_FEATURES_ENABLES
        | index::APIC_BASE
        | index::EFER
        | index::FEAT_CTL
        | index::MCG_CAP
        | 0x17a // MCG_STATUS
        | 0x17b // MCG_CTL
        | index::MCG_EXT_CTL
        | 0x400..=0x47f // MCx_{CTL,STATUS,ADDR,MISC}, 32 banks
        | 0x280..=0x29f // MCx_CTL2, 32 banks
        | index::KVM_POLL_CONTROL => true,
        // The x2APIC registers the CPU virtualizes (TPR, PPR, EOI, ISR,
        // TMR, IRR) live in the virtual-APIC page KVM cannot see.
        0x808 | 0x80a | 0x80b | 0x810..=0x827 => false,
        0x800..=0x8ff => true,
        _ => false,
    }
}

/// `tdx_is_read_only_msr()`.
pub fn kvm_read_only_msr(msr: u32) -> bool {
    matches!(msr, index::APIC_BASE | index::EFER | index::FEAT_CTL)
}

/// MCG_CAP.MCG_LMCE_P (27); FEAT_CTL LOCKED (0), LMCE_ENABLED (20).
const MCG_LMCE_P: u64 = 1 << 27;
const FEAT_CTL_LOCKED: u64 = 1 << 0;
const FEAT_CTL_LMCE_ENABLED: u64 = 1 << 20;

/// TDVMCALL<Instruction.RDMSR> as KVM answers it (`tdx_get_msr()`);
/// `None`: INVALID_OPERAND.
pub fn kvm_rdmsr(msr: u32, host: &dyn Host) -> Option<u64> {
    let lmce = || host.rdmsr(index::MCG_CAP).unwrap_or(0) & MCG_LMCE_P != 0;
    match msr {
        index::FEAT_CTL => Some(if lmce() {
            FEAT_CTL_LOCKED | FEAT_CTL_LMCE_ENABLED
        } else {
            FEAT_CTL_LOCKED
        }),
        index::MCG_EXT_CTL if !lmce() => None,
        m if kvm_has_emulated_msr(m) => host.rdmsr(m),
        _ => None,
    }
}

/// TDVMCALL<Instruction.WRMSR> as KVM answers it (`tdx_set_msr()`);
/// `false`: INVALID_OPERAND.
pub fn kvm_wrmsr(msr: u32, value: u64, host: &dyn Host) -> bool {
    if kvm_read_only_msr(msr) || !kvm_has_emulated_msr(msr) {
        return false;
    }
    if msr == index::MCG_EXT_CTL && host.rdmsr(index::MCG_CAP).unwrap_or(0) & MCG_LMCE_P == 0 {
        return false;
    }
    host.wrmsr(msr, value)
}

/// CR0.PG.
pub(super) const CR0_PG: u64 = 1 << 31;

/// VMX basic exit reasons of MSR #VEs (SDM Appendix C).
pub(super) const EXIT_REASON_MSR_READ: u32 = 31;
pub(super) const EXIT_REASON_MSR_WRITE: u32 = 32;

impl TdxModule {
    /// What the TD's MSR bitmap depends on, from its ATTRIBUTES, XFAM and
    /// CPUID values.
    pub(super) fn msr_config(&self, vmm: &Vmm, host: &dyn Host) -> TdMsrConfig {
        *self.msr_config.get_or_init(|| {
            let td = self.td_cpuid(vmm, host);
            let cpu = super::cpuid::cpu_of(host);
            let value =
                |leaf, sub| super::cpuid_table::lookup(leaf, sub).map_or([0; 4], |i| td.values[i]);
            let xfam = self.td_xfam(host);
            let mut cfg = TdMsrConfig::new(vmm.vm().config().td_attributes.0, xfam, &value);
            // IA32_XSS bits the CPU supports (`ia32_xss_supported_mask`,
            // TDH.SYS.INIT), not the TD's virtual CPUID.
            let d1 = cpu(0xd, 1);
            cfg.xss_supported =
                (u64::from(d1[2]) | (u64::from(d1[3]) << 32)) & super::cpuid_table::XCR0_SUPERVISOR;
            cfg
        })
    }

    /// RDMSR or WRMSR in a launched TD, as the module handles it. Before
    /// launch (the VMM's loader) and for native MSRs QEMU runs it
    /// (`Decline`).
    pub(super) fn msr_insn(&self, cx: &mut Ctx<'_>, write: bool) -> InsnAction {
        if self.loader_runs(cx.regs) {
            return InsnAction::Decline;
        }
        self.vcpu_enter(cx.vcpu, cx.host);
        let cfg = self
            .msr_config(cx.vmm, cx.host)
            .with_td_ctls(self.td_ctls_set());
        let m = cx.regs.gpr[gpr::RCX] as u32;
        if let Some(special) = ctls_msr(&cfg, m, write) {
            return self.ctls_msr_insn(cx, special, m);
        }
        match cfg.classify(m, write) {
            MsrClass::Native => InsnAction::Decline,
            MsrClass::Gp => gp0(),
            MsrClass::Ve => self.msr_ve(cx, write),
            MsrClass::Module => {
                let Some(slot) = self.vcpus.get(cx.vcpu as usize) else {
                    return gp0();
                };
                let (debugctl, misc_enable) = {
                    let v = slot.lock();
                    (v.debugctl, v.misc_enable)
                };
                if let (false, Some(value), index::MISC_ENABLE) = (write, misc_enable, m) {
                    cx.regs.gpr[gpr::RAX] = value & 0xffff_ffff;
                    cx.regs.gpr[gpr::RDX] = value >> 32;
                    return InsnAction::Done;
                }
                if write {
                    let value =
                        (cx.regs.gpr[gpr::RDX] << 32) | (cx.regs.gpr[gpr::RAX] & 0xffff_ffff);
                    match module_wrmsr(&cfg, m, value, debugctl, cx.regs.efer, cx.host) {
                        ModuleWrite::Done(new) => {
                            if let Some(new) = new {
                                slot.lock().debugctl = new;
                            }
                            InsnAction::Done
                        }
                        ModuleWrite::Gp => gp0(),
                        ModuleWrite::Ve => self.msr_ve(cx, write),
                    }
                } else {
                    let v = module_rdmsr(&cfg, m, debugctl, cx.host);
                    cx.regs.gpr[gpr::RAX] = v & 0xffff_ffff;
                    cx.regs.gpr[gpr::RDX] = v >> 32;
                    InsnAction::Done
                }
            }
        }
    }

    /// An access [`ctls_msr`] names, as the module emulates it.
    fn ctls_msr_insn(&self, cx: &mut Ctx<'_>, special: CtlsMsr, m: u32) -> InsnAction {
        let Some(slot) = self.vcpus.get(cx.vcpu as usize) else {
            return gp0();
        };
        let value = (cx.regs.gpr[gpr::RDX] << 32) | (cx.regs.gpr[gpr::RAX] & 0xffff_ffff);
        let read = match special {
            CtlsMsr::Read(_) if m == index::X2APIC_ID => {
                u64::from(super::cpuid::x2apic_id(cx.host))
            }
            CtlsMsr::Read(v) => v,
            CtlsMsr::ReadSmiCount => slot.lock().smi_count,
            CtlsMsr::WriteSmiCount => {
                slot.lock().smi_count = value;
                return InsnAction::Done;
            }
            CtlsMsr::Ignore => return InsnAction::Done,
            CtlsMsr::MiscEnable => {
                let cfg = self.msr_config(cx.vmm, cx.host);
                let mut v = slot.lock();
                let old = v
                    .misc_enable
                    .unwrap_or_else(|| module_rdmsr(&cfg, index::MISC_ENABLE, 0, cx.host));
                return match misc_enable_write(old, value) {
                    Ok(new) => {
                        v.misc_enable = Some(new);
                        InsnAction::Done
                    }
                    Err(true) => gp0(),
                    Err(false) => {
                        drop(v);
                        self.msr_ve(cx, true)
                    }
                };
            }
        };
        cx.regs.gpr[gpr::RAX] = read & 0xffff_ffff;
        cx.regs.gpr[gpr::RDX] = read >> 32;
        InsnAction::Done
    }

    /// The #VE of an MSR access: exit reason 31 or 32, qualification 0
    /// (`td_generic_ve_exit(vm_exit_reason, 0)`), the instruction length.
    fn msr_ve(&self, cx: &mut Ctx<'_>, write: bool) -> InsnAction {
        if write {
            self.generic_ve(cx, EXIT_REASON_MSR_WRITE, &self.stats.wrmsr_ves)
        } else {
            self.generic_ve(cx, EXIT_REASON_MSR_READ, &self.stats.rdmsr_ves)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::fake::{FakeHost, MEM};
    use crate::hooks::{Access, Regs};
    use crate::tdx::testutil::*;
    use crate::vmm::vector;
    use cvmem_model::TdAttributes;

    /// A TD as cvmem makes them: no PERFMON or PKS, XFAM x87, SSE, AVX.
    fn cvmem_td() -> TdMsrConfig {
        TdMsrConfig {
            xfam: 0b111,
            ..TdMsrConfig::default()
        }
    }

    #[test]
    fn the_table_is_sorted_disjoint_and_in_the_bitmap() {
        for w in MSR_TABLE.windows(2) {
            assert!(w[0].last < w[1].first, "{} / {}", w[0].name, w[1].name);
        }
        for e in &MSR_TABLE {
            assert!(e.first <= e.last, "{}", e.name);
            assert!(covered_by_bitmap(e.first) && covered_by_bitmap(e.last));
            // FATAL_ERROR goes with a cleared bit and only with one: an
            // access that exits always has something to do.
            for (bit, action) in [e.rd, e.wr] {
                assert_eq!(bit == Fixed0, action == Fatal, "{}", e.name);
            }
        }
    }

    #[test]
    fn every_module_emulated_access_is_one_the_module_handles() {
        let rd_handled = |m: u32| {
            matches!(
                m,
                index::DEBUGCTL
                    | index::MISC_ENABLE
                    | index::PERF_CAPABILITIES
                    | index::ARCH_CAPABILITIES
                    | index::XAPIC_DISABLE_STATUS
                    | index::VMX_FIRST..=index::VMX_LAST
            )
        };
        for e in &MSR_TABLE {
            for m in e.first..=e.last {
                if e.rd.1 == Module {
                    assert!(rd_handled(m), "{} {m:#x}", e.name);
                }
                if e.wr.1 == Module {
                    assert!(
                        matches!(m, index::XSS | index::DEBUGCTL | index::EFER),
                        "{}",
                        e.name
                    );
                }
                if e.rd.1 == GpOrVe || e.wr.1 == GpOrVe {
                    let all = TdMsrConfig {
                        dca: true,
                        tme: true,
                        mktme: true,
                        tsc_deadline: true,
                        ..TdMsrConfig::default()
                    };
                    assert_eq!(all.gp_or_ve(m), MsrClass::Ve, "{} names a feature", e.name);
                }
            }
        }
    }

    #[test]
    fn classes_follow_the_bitmap_and_the_actions() {
        use MsrClass::*;
        let td = cvmem_td();
        for (m, rd, wr) in [
            (0x10, Native, Ve),            // TSC: writes #VE
            (0x48, Native, Native),        // SPEC_CTRL
            (index::APIC_BASE, Ve, Ve),    // not in the table
            (0x8c, Gp, Gp),                // SGXLEPUBKEYHASH
            (0xc1, Gp, Gp),                // PMC: no PERFMON
            (0xe1, Gp, Gp),                // UMWAIT: no WAITPKG
            (0x1a0, Module, Ve),           // MISC_ENABLE
            (0x1d9, Module, Module),       // DEBUGCTL
            (0x1f8, Gp, Gp),               // DCA: not in CPUID
            (0x277, Native, Native),       // PAT
            (0x345, Module, Gp),           // PERF_CAPABILITIES
            (0x480, Module, Gp),           // VMX_BASIC
            (0x481, Ve, Gp),               // VMX_PINBASED_CTLS
            (0x6a0, Gp, Gp),               // U_CET: no CET in XFAM
            (index::TSC_DEADLINE, Gp, Gp), // not in CPUID
            (0x800, Gp, Gp),               // xAPIC-reserved
            (0x802, Ve, Ve),               // x2APIC ID
            (0x808, Native, Native),       // x2APIC TPR
            (0x830, Ve, Ve),               // x2APIC ICR
            (0x83f, Native, Native),       // SELF_IPI
            (0x8ff, Gp, Gp),
            (index::XSS, Native, Module),
            (0x1b01, Native, Native), // UARCH_MISC_CTL
            (0x1fff, Ve, Ve),         // in the bitmap, not the table
            (0x2000, Ve, Ve),         // beyond the bitmap
            (index::EFER, Native, Module),
            (0xc000_0081, Native, Native), // STAR
            (0xc000_0083, Ve, Ve),         // CSTAR: not in the table
            (index::KVM_POLL_CONTROL, Ve, Ve),
        ] {
            assert_eq!(
                (td.classify(m, false), td.classify(m, true)),
                (rd, wr),
                "{m:#x}"
            );
        }
        // Dynamic bits: the TD's features make them native, GP-or-VE
        // actions #VE.
        let rich = TdMsrConfig {
            perfmon: true,
            pks: true,
            xfam: 0b111 | xfam::CET | xfam::PT | xfam::ULI | xfam::LBR,
            waitpkg: true,
            tsc_deadline: true,
            ..cvmem_td()
        };
        for m in [0xc1, 0x6a0, 0x570, 0x985, 0x14ce, 0xe1, 0x6e1, 0x1a0] {
            assert_eq!(rich.classify(m, false), Native, "{m:#x}");
        }
        assert_eq!(rich.classify(index::TSC_DEADLINE, true), Ve);
        assert_eq!(rich.classify(index::PERF_CAPABILITIES, false), Native);
        assert_eq!(rich.classify(index::PERF_CAPABILITIES, true), Native);
    }

    #[test]
    fn module_emulation_of_efer_debugctl_xss_and_reads() {
        let host = FakeHost::new();
        let td = TdMsrConfig {
            xss_supported: 1 << 8,
            ..cvmem_td()
        };
        let lma = 1 << 10;
        let lme_nxe_sce = (1 << 8) | (1 << 11) | 1;
        // EFER: SCE may change, LMA is kept, anything else is a #VE.
        let efer = |v| module_wrmsr(&td, index::EFER, v, 0, lma | lme_nxe_sce, &host);
        assert_eq!(efer(lme_nxe_sce & !1), ModuleWrite::Done(None));
        assert_eq!(efer(lme_nxe_sce), ModuleWrite::Done(None));
        assert_eq!(efer(lme_nxe_sce & !(1 << 11)), ModuleWrite::Ve);
        // DEBUGCTL: reserved bits #GP, TR without BTS #VE, bit 13 kept.
        let dbg = |v, old| module_wrmsr(&td, index::DEBUGCTL, v, old, 0, &host);
        assert_eq!(dbg(1 << 3, 0), ModuleWrite::Gp);
        assert_eq!(dbg(1 << 16, 0), ModuleWrite::Gp);
        assert_eq!(dbg(1 << 6, 0), ModuleWrite::Ve);
        assert_eq!(dbg(0b11 << 6, 0), ModuleWrite::Done(Some(0b11 << 6)));
        assert_eq!(dbg(1 << 13, 0), ModuleWrite::Done(Some(0)));
        assert_eq!(dbg(0, 1 << 13), ModuleWrite::Done(Some(1 << 13)));
        assert_eq!(module_rdmsr(&td, index::DEBUGCTL, (1 << 13) | 1, &host), 1);
        // XSS: only bits the CPU supports and XFAM enables (PT, bit 8,
        // is not in this XFAM).
        let xss = |v| module_wrmsr(&td, index::XSS, v, 0, 0, &host);
        assert_eq!(xss(0), ModuleWrite::Done(None));
        assert_eq!(xss(1 << 8), ModuleWrite::Gp);
        assert_eq!(module_rdmsr(&td, index::XAPIC_DISABLE_STATUS, 0, &host), 1);
        assert_eq!(module_rdmsr(&td, index::PERF_CAPABILITIES, 0, &host), 0);
        assert_eq!(module_rdmsr(&td, 0x486, 0, &host), 0);
    }

    #[test]
    fn kvm_answers_tdvmcall_msrs_it_emulates() {
        let host = FakeHost::new();
        assert_eq!(kvm_rdmsr(index::APIC_BASE, &host), Some(0xfee0_0900));
        assert!(
            !kvm_wrmsr(index::APIC_BASE, 0xfee0_0d00, &host),
            "read-only"
        );
        assert!(!kvm_wrmsr(index::EFER, 0, &host), "read-only");
        assert_eq!(
            kvm_rdmsr(index::FEAT_CTL, &host),
            Some(1),
            "locked, no LMCE"
        );
        assert!(!kvm_wrmsr(index::FEAT_CTL, 1, &host));
        assert_eq!(kvm_rdmsr(index::MCG_EXT_CTL, &host), None, "no LMCE");
        for m in [
            0x10,
            0x48,
            0x808,
            0x80a,
            0x80b,
            0x810,
            0x817,
            0x818,
            0x827,
            0x1234_5678,
        ] {
            assert!(!kvm_has_emulated_msr(m), "{m:#x}");
        }
        for m in [
            0x802, 0x80f, 0x828, 0x830, 0x838, 0x83f, 0x200, 0x26f, 0x2ff, 0x400, 0x47f,
        ] {
            assert!(kvm_has_emulated_msr(m), "{m:#x}");
        }
    }

    fn msr_insn(kvm: &crate::kvm::Kvm, host: &FakeHost, write: bool, m: u32) -> InsnAction {
        let mut regs = Regs {
            insn_len: 2,
            cr0: CR0_PG | 1,
            efer: (1 << 10) | (1 << 8),
            ..Regs::default()
        };
        regs.gpr[gpr::RCX] = u64::from(m);
        let insn = if write { Insn::Wrmsr } else { Insn::Rdmsr };
        kvm.insn(0, insn, &mut regs, host).0
    }

    #[test]
    fn rdmsr_and_wrmsr_in_a_td_raise_ve_or_gp_after_launch() {
        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        let host = FakeHost::new();
        // Before launch (the VMM's loader): QEMU runs them.
        assert_eq!(msr_insn(&kvm, &host, false, 0x802), InsnAction::Decline);
        access(&kvm, 0x1000, Access::Read);
        let ve = |a: InsnAction| matches!(a, InsnAction::Fault(f) if f.vector == vector::VE);
        for (write, m, reason) in [(false, 0x802, 31), (true, 0x10, 32), (true, 0x830, 32)] {
            assert!(ve(msr_insn(&kvm, &host, write, m)), "{m:#x}");
            let r = call(&kvm, &host, leaf::VP_VEINFO_GET, &[]);
            assert_eq!(
                (r.gpr[gpr::RCX], r.gpr[gpr::RDX], r.gpr[gpr::R10]),
                (reason, 0, 2),
                "{m:#x}"
            );
        }
        assert_eq!(msr_insn(&kvm, &host, false, 0x800), gp0());
        // Paging off (an AP's real-mode trampoline): QEMU's, as before launch.
        let mut regs = Regs {
            insn_len: 2,
            ..Regs::default()
        };
        regs.gpr[gpr::RCX] = 0x802;
        assert_eq!(
            kvm.insn(0, Insn::Rdmsr, &mut regs, &host).0,
            InsnAction::Decline
        );
        regs.gpr[gpr::RAX] = 2;
        assert_eq!(
            kvm.insn(0, Insn::Cpuid, &mut regs, &host).0,
            InsnAction::Decline
        );
        assert_eq!(msr_insn(&kvm, &host, false, 0x48), InsnAction::Decline);
        assert_eq!(msr_insn(&kvm, &host, false, 0xbd), InsnAction::Done);
        let s = &kvm.flavour_as::<TdxModule>().stats;
        assert_eq!(
            (
                s.rdmsr_ves.load(Ordering::Relaxed),
                s.wrmsr_ves.load(Ordering::Relaxed)
            ),
            (1, 2)
        );
    }

    /// REDUCE_VE (td_msr_access.c of a module with #VE reduction): MSRs
    /// the table does not name are #GP instead of #VE, the x2APIC
    /// registers excepted; the module answers the BIOS, SMI count,
    /// FEATURE_CONTROL and PLATFORM_INFO MSRs itself; VMX capability MSRs
    /// it does not emulate are #GP; the TSC deadline MSR follows the
    /// cleared CPUID bit. ENUM_TOPOLOGY alone makes the x2APIC ID readable.
    #[test]
    fn reduce_ve_turns_config_paravirt_ves_into_gp_or_emulation() {
        let base = cvmem_td();
        let on = base.with_td_ctls(field::TD_CTLS_REDUCE_VE | field::TD_CTLS_ENUM_TOPOLOGY);
        use MsrClass::{Gp, Module, Ve};
        #[rustfmt::skip]
        let cases: &[(u32, bool, MsrClass, MsrClass)] = &[
            // msr, write, REDUCE_VE off, on
            (0x34, false, Ve, Module),    // SMI_COUNT
            (0x34, true, Ve, Module),
            (0x3a, false, Ve, Module),    // FEATURE_CONTROL: 1 (locked)
            (0x3a, true, Ve, Gp),
            (0x4e, false, Ve, Module),    // PPIN_CTL
            (0x79, true, Ve, Module),     // BIOS_UPDT_TRIG: dropped
            (0x8b, false, Ve, Module),    // BIOS_SIGN_ID
            (0xce, false, Ve, Module),    // PLATFORM_INFO
            (0x1a0, true, Ve, Module),    // MISC_ENABLE
            (0x2ff, false, Ve, Gp),       // MTRR_DEF_TYPE: not in the table
            (0x481, false, Ve, Gp),       // VMX_PINBASED_CTLS
            (0x6e0, false, Ve, Gp),       // TSC_DEADLINE (if the CPU has it)
            (0x802, false, Ve, Module),   // x2APIC ID
            (0x830, true, Ve, Ve),        // x2APIC ICR stays #VE
            (0x10, true, Ve, Ve),         // TSC write: NON_CONFIG_PARAVIRT
            (0x4000_0000, false, Ve, Ve), // outside the bitmap
            (0x800, false, Gp, Gp),
        ];
        let mut with_deadline = base;
        with_deadline.tsc_deadline = true;
        for &(m, write, off, reduced) in cases {
            let cfg = if m == 0x6e0 { with_deadline } else { base };
            assert_eq!(cfg.classify(m, write), off, "{m:#x} {write}");
            let on = if m == 0x6e0 {
                with_deadline.with_td_ctls(field::TD_CTLS_REDUCE_VE)
            } else {
                on
            };
            assert_eq!(on.classify(m, write), reduced, "{m:#x} {write} REDUCE_VE");
        }
        let topo = base.with_td_ctls(field::TD_CTLS_ENUM_TOPOLOGY);
        assert_eq!(topo.classify(0x802, false), Module);
        assert_eq!(topo.classify(0x2ff, false), Ve);
        assert_eq!(ctls_msr(&on, 0x3a, false), Some(CtlsMsr::Read(1)));
        assert_eq!(ctls_msr(&on, 0x8b, false), Some(CtlsMsr::Read(0xffff_ffff)));
        // IA32_MISC_ENABLE writes (wrmsr_ia32_misc_enable()).
        let old = 1 | (1 << 7) | (1 << 11) | (1 << 12);
        assert_eq!(misc_enable_write(old, 1), Ok(old));
        assert_eq!(misc_enable_write(old, 1 << 2), Err(true), "#GP bit");
        assert_eq!(misc_enable_write(old, old | (1 << 16)), Err(true), "EST");
        assert_eq!(
            misc_enable_write(old, old | (1 << 18)),
            Err(false),
            "MONITOR"
        );
        assert_eq!(misc_enable_write(old, old | (1 << 23)), Err(true), "xTPR");
    }

    #[test]
    fn reduce_ve_set_by_the_guest_changes_what_an_msr_access_does() {
        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        let host = FakeHost::new();
        access(&kvm, 0x1000, Access::Read);
        let ve = |a: InsnAction| matches!(a, InsnAction::Fault(f) if f.vector == vector::VE);
        assert!(ve(msr_insn(&kvm, &host, false, 0x8b)));
        let _ = call(&kvm, &host, leaf::VP_VEINFO_GET, &[]);
        let reduce = field::TD_CTLS_REDUCE_VE;
        let r = call(
            &kvm,
            &host,
            leaf::VM_WR,
            &[
                (gpr::RDX, field::TD_CTLS),
                (gpr::R8, reduce),
                (gpr::R9, reduce),
            ],
        );
        assert_eq!(r.gpr[gpr::RAX], 0);
        let mut regs = Regs {
            insn_len: 2,
            cr0: CR0_PG | 1,
            ..Regs::default()
        };
        regs.gpr[gpr::RCX] = 0x8b;
        assert_eq!(
            kvm.insn(0, Insn::Rdmsr, &mut regs, &host).0,
            InsnAction::Done
        );
        assert_eq!((regs.gpr[gpr::RAX], regs.gpr[gpr::RDX]), (0xffff_ffff, 0));
        // SMI_COUNT keeps what the guest wrote.
        regs.gpr[gpr::RCX] = 0x34;
        regs.gpr[gpr::RAX] = 7;
        assert_eq!(
            kvm.insn(0, Insn::Wrmsr, &mut regs, &host).0,
            InsnAction::Done
        );
        regs.gpr[gpr::RAX] = 0;
        assert_eq!(
            kvm.insn(0, Insn::Rdmsr, &mut regs, &host).0,
            InsnAction::Done
        );
        assert_eq!(regs.gpr[gpr::RAX], 7);
        // The x2APIC ID is QEMU's CPUID(0xB).EDX.
        regs.gpr[gpr::RCX] = 0x802;
        assert_eq!(
            kvm.insn(0, Insn::Rdmsr, &mut regs, &host).0,
            InsnAction::Done
        );
        assert_eq!(regs.gpr[gpr::RAX], u64::from(host.cpuid(0xb, 0)[3]));
        assert_eq!(msr_insn(&kvm, &host, false, 0x2ff), gp0());
        assert!(ve(msr_insn(&kvm, &host, true, 0x830)));
    }
}
