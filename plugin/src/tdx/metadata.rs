//! TD metadata as a guest reads and writes it with TDG.VM.RD/WR and
//! TDG.VP.RD/WR: the TDX module's field IDs and its TD- and VCPU-scope
//! field tables (TDX module 1.5, `tdx_api_defs.h` `md_field_id_t`,
//! `tdr_tdcs_fields_lookup.c`, `tdvps_fields_lookup.c`,
//! `td_vmcs_fields_lookup.c`, `metadata_generic.c`, `metadata_td.c`,
//! `metadata_vp.c`, `tdg_vm_rd_wr.c`, `tdg_vp_rd_wr.c`).

use super::*;
use crate::hooks::{gpr, Host, Regs};
use crate::vmm::Vmm;
use std::sync::atomic::Ordering;
use TdAnswer::*;

/// One entry of a metadata field table (`md_lookup_t`): `fields` fields of
/// `elems` elements each, from the base field ID's field code on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MdEntry {
    pub name: &'static str,
    pub base: u64,
    pub fields: u32,
    pub elems: u32,
    pub guest_rd: u64,
    pub guest_wr: u64,
}

const fn md(
    name: &'static str,
    base: u64,
    fields: u32,
    elems: u32,
    guest_rd: u64,
    guest_wr: u64,
) -> MdEntry {
    MdEntry {
        name,
        base,
        fields,
        elems,
        guest_rd,
        guest_wr,
    }
}

/// `MD_FIELD_ID_NA`.
pub const FIELD_ID_NA: u64 = u64::MAX;
/// FIELD_CODE, bits 23:0.
const FIELD_CODE: u64 = 0xff_ffff;
/// CONTEXT_CODE, bits 54:52: 2 for VCPU scope.
const CONTEXT_MASK: u64 = 0b111 << 52;
const CONTEXT_VP: u64 = 2 << 52;
/// What `md_check_as_single_element_id()` wants 0: RESERVED_0 (31:24),
/// LAST_ELEMENT_IN_FIELD (37:34), LAST_FIELD_IN_SEQUENCE (46:38),
/// RESERVED_1 (49:47), RESERVED_2 (55), RESERVED_3 (62).
const NOT_SINGLE_ELEMENT: u64 =
    (0xff << 24) | (0xf << 34) | (0x1ff << 38) | (0b111 << 47) | (1 << 55) | (1 << 62);

/// CLASS_CODE, bits 61:56.
fn class_of(id: u64) -> u64 {
    (id >> 56) & 0x3f
}

/// The mask of an element of ELEMENT_SIZE_CODE (bits 33:32) of `id`.
fn size_mask(id: u64) -> u64 {
    match (id >> 32) & 3 {
        0 => 0xff,
        1 => 0xffff,
        2 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

/// Where a VCPU-scope field ID falls (`md_find_entry_idx()`): the TD VMCS
/// (class 0) or an entry of [`TDVPS_TABLE`] and the element's index in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VpField {
    Vmcs,
    Tdvps(usize, u32),
}

/// `md_find_entry_idx()` in VCPU scope, by class and field code.
pub fn find_vp(id: u64) -> Option<VpField> {
    let (class, code) = (class_of(id), id & FIELD_CODE);
    if class == 0 {
        return TD_VMCS_FIELDS
            .iter()
            .any(|&(c, n)| (u64::from(c)..u64::from(c) + u64::from(n)).contains(&code))
            .then_some(VpField::Vmcs);
    }
    TDVPS_TABLE.iter().enumerate().find_map(|(i, e)| {
        let first = e.base & FIELD_CODE;
        let n = u64::from(e.fields) * u64::from(e.elems);
        (class_of(e.base) == class && (first..first + n).contains(&code))
            .then(|| VpField::Tdvps(i, (code - first) as u32))
    })
}

/// The guest-readable element after `after` (`None`: from the start) in
/// the module's order (the TD VMCS, none of it guest-readable, then the
/// TDVPS table): `md_get_next_element_in_context()` for a guest read.
/// [`FIELD_ID_NA`] past the last.
pub fn next_readable(after: Option<(usize, u32)>) -> u64 {
    let (mut i, mut elem) = match after {
        Some((i, e)) => (i, e + 1),
        None => (0, 0),
    };
    while let Some(e) = TDVPS_TABLE.get(i) {
        if e.guest_rd != 0 && elem < e.fields * e.elems {
            return (e.base & !FIELD_CODE) | ((e.base & FIELD_CODE) + u64::from(elem));
        }
        i += 1;
        elem = 0;
    }
    FIELD_ID_NA
}

/// The module's CPUID lookup order (`cpuid_lookup[]` indices, which
/// TDVPS.CPUID_CONTROL follows): leaf and sub-leaf of each index.
#[rustfmt::skip]
pub const CPUID_LOOKUP_ORDER: [(u32, Option<u32>); 64] = [
    (0x1, None),
    (0x4, Some(0x0)),
    (0x4, Some(0x1)),
    (0x4, Some(0x2)),
    (0x4, Some(0x3)),
    (0x7, Some(0x0)),
    (0x7, Some(0x1)),
    (0xa, None),
    (0x1c, None),
    (0x80000008, None),
    (0x0, None),
    (0x3, None),
    (0x4, Some(0x4)),
    (0x6, None),
    (0x7, Some(0x2)),
    (0x8, None),
    (0xd, Some(0x0)),
    (0xd, Some(0x1)),
    (0xd, Some(0x2)),
    (0xd, Some(0x3)),
    (0xd, Some(0x4)),
    (0xd, Some(0x5)),
    (0xd, Some(0x6)),
    (0xd, Some(0x7)),
    (0xd, Some(0x8)),
    (0xd, Some(0x9)),
    (0xd, Some(0xa)),
    (0xd, Some(0xb)),
    (0xd, Some(0xc)),
    (0xd, Some(0xd)),
    (0xd, Some(0xe)),
    (0xd, Some(0xf)),
    (0xd, Some(0x10)),
    (0xd, Some(0x11)),
    (0xd, Some(0x12)),
    (0xe, None),
    (0x11, None),
    (0x12, None),
    (0x13, None),
    (0x14, Some(0x0)),
    (0x14, Some(0x1)),
    (0x15, None),
    (0x19, None),
    (0x1d, Some(0x0)),
    (0x1d, Some(0x1)),
    (0x1e, None),
    (0x1f, Some(0x0)),
    (0x1f, Some(0x1)),
    (0x1f, Some(0x2)),
    (0x1f, Some(0x3)),
    (0x1f, Some(0x4)),
    (0x1f, Some(0x5)),
    (0x20, None),
    (0x21, Some(0x0)),
    (0x80000000, None),
    (0x80000001, None),
    (0x80000006, None),
    (0x80000007, None),
    (0x22, None),
    (0x23, Some(0x0)),
    (0x23, Some(0x1)),
    (0x23, Some(0x2)),
    (0x23, Some(0x3)),
    (0x5, None),
];

/// The CPUID_CONTROL index of CPUID `leaf`.`subleaf` (the table entry the
/// module finds for it).
pub fn cpuid_control_index(leaf: u32, subleaf: u32) -> Option<usize> {
    CPUID_LOOKUP_ORDER
        .iter()
        .position(|&(l, s)| l == leaf && s.is_none_or(|s| s == subleaf))
}

/// TDX module 1.5 `tdvps_lookup[]` (tdvps_fields_lookup.c), in its order,
/// without the nine per-L2-VM entries at its end (a TD without L2 VMs,
/// as KVM makes them, has none): name, base field ID, fields, elements
/// per field, guest read mask, guest write mask (both within the
/// element's size).
#[rustfmt::skip]
pub const TDVPS_TABLE: [MdEntry; 110] = [
    md("VAPIC", 0x0120000300000000, 128, 1, 0x0, 0x0),
    md("EXIT_REASON", 0x0220000200000000, 1, 1, 0x0, 0x0),
    md("VALID", 0x0220000200000001, 1, 1, 0x0, 0x0),
    md("EXIT_QUALIFICATION", 0x0220000300000002, 1, 1, 0x0, 0x0),
    md("GLA", 0x0220000300000003, 1, 1, 0x0, 0x0),
    md("GPA", 0x0220000300000004, 1, 1, 0x0, 0x0),
    md("EPTP_INDEX", 0x0220000100000005, 1, 1, 0x0, 0x0),
    md("INSTRUCTION_LENGTH", 0x8220000200000010, 1, 1, 0x0, 0x0),
    md("INSTRUCTION_INFORMATION", 0x8220000200000011, 1, 1, 0x0, 0x0),
    md("RAX", 0x1020000300000000, 1, 1, 0x0, 0x0),
    md("RCX", 0x1020000300000001, 1, 1, 0x0, 0x0),
    md("RDX", 0x1020000300000002, 1, 1, 0x0, 0x0),
    md("RBX", 0x1020000300000003, 1, 1, 0x0, 0x0),
    md("RSP_PLACEHOLDER", 0x1020000300000004, 1, 1, 0x0, 0x0),
    md("RBP", 0x1020000300000005, 1, 1, 0x0, 0x0),
    md("RSI", 0x1020000300000006, 1, 1, 0x0, 0x0),
    md("RDI", 0x1020000300000007, 1, 1, 0x0, 0x0),
    md("R8", 0x1020000300000008, 1, 1, 0x0, 0x0),
    md("R9", 0x1020000300000009, 1, 1, 0x0, 0x0),
    md("R10", 0x102000030000000a, 1, 1, 0x0, 0x0),
    md("R11", 0x102000030000000b, 1, 1, 0x0, 0x0),
    md("R12", 0x102000030000000c, 1, 1, 0x0, 0x0),
    md("R13", 0x102000030000000d, 1, 1, 0x0, 0x0),
    md("R14", 0x102000030000000e, 1, 1, 0x0, 0x0),
    md("R15", 0x102000030000000f, 1, 1, 0x0, 0x0),
    md("DR0", 0x1120000300000000, 1, 1, 0x0, 0x0),
    md("DR1", 0x1120000300000001, 1, 1, 0x0, 0x0),
    md("DR2", 0x1120000300000002, 1, 1, 0x0, 0x0),
    md("DR3", 0x1120000300000003, 1, 1, 0x0, 0x0),
    md("DR6", 0x1120000300000006, 1, 1, 0x0, 0x0),
    md("XCR0", 0x1120000300000020, 1, 1, 0x0, 0x0),
    md("CR2", 0x1120000300000028, 1, 1, 0x0, 0x0),
    md("VCPU_STATE_DETAILS", 0x9120000300000100, 1, 1, 0x0, 0x0),
    md("XBUFF", 0x1220000300000000, 1536, 1, 0x0, 0x0),
    md("IA32_SPEC_CTRL", 0x1320000300000048, 1, 1, 0x0, 0x0),
    md("IA32_UMWAIT_CONTROL", 0x13200003000000e1, 1, 1, 0x0, 0x0),
    md("IA32_TSX_CTRL", 0x1320000300000122, 1, 1, 0x0, 0x0),
    md("IA32_PERFEVTSELx", 0x1320000300000186, 8, 1, 0x0, 0x0),
    md("MSR_OFFCORE_RSPx", 0x13200003000001a6, 2, 1, 0x0, 0x0),
    md("IA32_XFD", 0x13200003000001c4, 1, 1, 0x0, 0x0),
    md("IA32_XFD_ERR", 0x13200003000001c5, 1, 1, 0x0, 0x0),
    md("IA32_FIXED_CTRx", 0x1320000300000309, 7, 1, 0x0, 0x0),
    md("IA32_PERF_METRICS", 0x1320000300000329, 1, 1, 0x0, 0x0),
    md("IA32_FIXED_CTR_CTRL", 0x132000030000038d, 1, 1, 0x0, 0x0),
    md("IA32_PERF_GLOBAL_STATUS", 0x132000030000038e, 1, 1, 0x0, 0x0),
    md("IA32_PEBS_ENABLE", 0x13200003000003f1, 1, 1, 0x0, 0x0),
    md("MSR_PEBS_DATA_CFG", 0x13200003000003f2, 1, 1, 0x0, 0x0),
    md("MSR_PEBS_LD_LAT", 0x13200003000003f6, 1, 1, 0x0, 0x0),
    md("MSR_PEBS_FRONTEND", 0x13200003000003f7, 1, 1, 0x0, 0x0),
    md("IA32_A_PMCx", 0x13200003000004c1, 8, 1, 0x0, 0x0),
    md("IA32_DS_AREA", 0x1320000300000600, 1, 1, 0x0, 0x0),
    md("IA32_XSS", 0x1320000300000da0, 1, 1, 0x0, 0x0),
    md("IA32_LBR_DEPTH", 0x13200003000014cf, 1, 1, 0x0, 0x0),
    md("IA32_UARCH_MISC_CTL", 0x1320000300001b01, 1, 1, 0x0, 0x0),
    md("IA32_STAR", 0x1320000300002081, 1, 1, 0x0, 0x0),
    md("IA32_LSTAR", 0x1320000300002082, 1, 1, 0x0, 0x0),
    md("IA32_FMASK", 0x1320000300002084, 1, 1, 0x0, 0x0),
    md("IA32_KERNEL_GS_BASE", 0x1320000300002102, 1, 1, 0x0, 0x0),
    md("IA32_TSC_AUX", 0x1320000300002103, 1, 1, 0x0, 0x0),
    md("VCPU_STATE", 0xa020000000000000, 1, 1, 0x0, 0x0),
    md("VCPU_INDEX", 0xa020000200000002, 1, 1, 0xffffffff, 0x0),
    md("NUM_TDVPS_PAGES", 0xa020000000000003, 1, 1, 0x0, 0x0),
    md("ASSOC_LPID", 0xa020000200000004, 1, 1, 0x0, 0x0),
    md("VCPU_EPOCH", 0xa020000300000006, 1, 1, 0x0, 0x0),
    md("CPUID_SUPERVISOR_VE", 0xa020000000000007, 1, 1, 0xff, 0xff),
    md("CPUID_USER_VE", 0xa020000000000008, 1, 1, 0xff, 0xff),
    md("LAST_EXIT_TSC", 0xa02000030000000a, 1, 1, 0x0, 0x0),
    md("PEND_NMI", 0x202000000000000b, 1, 1, 0x0, 0x0),
    md("XFAM", 0x202000030000000c, 1, 1, 0x0, 0x0),
    md("LAST_EPF_GPA_LIST_IDX", 0xa02000000000000d, 1, 1, 0x0, 0x0),
    md("POSSIBLY_EPF_STEPPING", 0xa02000000000000e, 1, 1, 0x0, 0x0),
    md("LAST_TD_EXIT", 0xa02000000000000f, 1, 1, 0x0, 0x0),
    md("TDVPS_PAGE_PA", 0xa020000300000010, 15, 1, 0x0, 0x0),
    md("HP_LOCK_BUSY_START", 0xa020000300000030, 1, 1, 0x0, 0x0),
    md("HP_LOCK_BUSY", 0xa020000000000031, 1, 1, 0x0, 0x0),
    md("LAST_SEAMDB_INDEX", 0xa020000300000032, 1, 1, 0x0, 0x0),
    md("NMI_UNBLOCKING_DUE_TO_IRET", 0xa020000000000040, 1, 1, 0x0, 0x0),
    md("CURR_VM", 0xa020000100000041, 1, 1, 0x0, 0x0),
    md("L2_EXIT_HOST_ROUTING", 0xa020000000000042, 1, 1, 0x0, 0x0),
    md("VM_LAUNCHED", 0xa020000000000044, 4, 1, 0x0, 0x0),
    md("LP_DEPENDENT_HPA_UPDATED", 0xa020000000000048, 4, 1, 0x0, 0x0),
    md("MODULE_DEPENDENT_FIELDS_UPDATED", 0xa02000000000004c, 4, 1, 0x0, 0x0),
    md("L2_CTLS", 0xa020000300000050, 4, 1, 0xffffffffffffffff, 0x7),
    md("L2_DEBUG_CTLS", 0xa020000300000054, 4, 1, 0x0, 0x0),
    md("TSC_DEADLINE", 0xa020000300000058, 4, 1, 0xffffffffffffffff, 0xffffffffffffffff),
    md("SHADOW_TSC_DEADLINE", 0xa02000030000005c, 4, 1, 0x0, 0x0),
    md("BASE_L2_CR0_GUEST_HOST_MASK", 0xa020000300000080, 1, 1, 0x0, 0x0),
    md("BASE_L2_CR0_READ_SHADOW", 0xa020000300000081, 1, 1, 0x0, 0x0),
    md("BASE_L2_CR4_GUEST_HOST_MASK", 0xa020000300000082, 1, 1, 0x0, 0x0),
    md("BASE_L2_CR4_READ_SHADOW", 0xa020000300000083, 1, 1, 0x0, 0x0),
    md("SHADOW_CR0_GUEST_HOST_MASK", 0xa020000300000084, 4, 1, 0x0, 0x0),
    md("SHADOW_CR0_READ_SHADOW", 0xa020000300000088, 4, 1, 0x0, 0x0),
    md("SHADOW_CR4_GUEST_HOST_MASK", 0xa02000030000008c, 4, 1, 0x0, 0x0),
    md("SHADOW_CR4_READ_SHADOW", 0xa020000300000090, 4, 1, 0x0, 0x0),
    md("SHADOW_INSTRUCTION_TIMEOUT_CONTROL", 0xa020000200000094, 4, 1, 0x0, 0x0),
    md("SHADOW_PID_HPA", 0xa020000300000098, 4, 1, 0x0, 0x0),
    md("SHADOW_PINBASED_EXEC_CTLS", 0xa02000020000009c, 4, 1, 0x0, 0x0),
    md("SHADOW_PLE_GAP", 0xa0200002000000a4, 4, 1, 0x0, 0x0),
    md("SHADOW_PLE_WINDOW", 0xa0200002000000a8, 4, 1, 0x0, 0x0),
    md("SHADOW_POSTED_INT_NOTIFICATION_VECTOR", 0xa0200001000000ac, 4, 1, 0x0, 0x0),
    md("SHADOW_PROCBASED_EXEC_CTLS2", 0xa0200002000000b0, 4, 1, 0x0, 0x0),
    md("SHADOW_SHARED_EPTP", 0xa0200003000000b4, 4, 1, 0x0, 0x0),
    md("L2_ENTER_GUEST_STATE_GPA", 0xa020000300000100, 4, 1, 0x0, 0x0),
    md("L2_ENTER_GUEST_STATE_HPA", 0xa020000300000104, 4, 1, 0x0, 0x0),
    md("VE_INFO_GPA", 0xa020000300000108, 4, 1, 0x0, 0x0),
    md("VE_INFO_HPA", 0xa02000030000010c, 4, 1, 0x0, 0x0),
    md("L2_VAPIC_GPA", 0xa020000300000110, 4, 1, 0x0, 0x0),
    md("L2_VAPIC_HPA", 0xa020000300000114, 4, 1, 0x0, 0x0),
    md("CPUID_CONTROL", 0xa120000000000000, 128, 1, 0xff, 0x3),
    md("LAST_EPF_GPA_LIST", 0xa220000300000200, 32, 1, 0x0, 0x0),
];

/// The TD VMCS fields of TDX module 1.5 `td_vmcs_lookup[]`
/// (td_vmcs_fields_lookup.c): field code (the VMCS encoding) and count.
/// None is guest-readable or -writable.
#[rustfmt::skip]
pub const TD_VMCS_FIELDS: [(u32, u32); 144] = [
    (0x0, 1), (0x2, 1), (0x4, 1), (0x6, 1), (0x800, 1), (0x802, 1), (0x804, 1), (0x806, 1),
    (0x808, 1), (0x80a, 1), (0x80c, 1), (0x80e, 1), (0x810, 1), (0x812, 1), (0x814, 1),
    (0x2000, 2), (0x2004, 1), (0x2006, 1), (0x2008, 1), (0x200a, 1), (0x200c, 1), (0x200e, 1),
    (0x2010, 1), (0x2012, 1), (0x2014, 1), (0x2016, 1), (0x2018, 1), (0x201a, 1), (0x201c, 4),
    (0x2024, 1), (0x2026, 1), (0x2028, 1), (0x202a, 1), (0x202c, 1), (0x202e, 1), (0x2032, 1),
    (0x2034, 1), (0x2036, 1), (0x2038, 1), (0x203a, 1), (0x203c, 1), (0x203e, 1), (0x2040, 1),
    (0x204a, 1), (0x204c, 1), (0x2400, 1), (0x2800, 1), (0x2802, 1), (0x2804, 1), (0x2806, 1),
    (0x2808, 1), (0x280a, 4), (0x2814, 1), (0x2816, 1), (0x2818, 1), (0x4000, 1), (0x4002, 1),
    (0x4004, 1), (0x4006, 1), (0x4008, 1), (0x400a, 1), (0x400c, 1), (0x400e, 1), (0x4010, 1),
    (0x4012, 1), (0x4014, 1), (0x4016, 1), (0x4018, 1), (0x401a, 1), (0x401c, 1), (0x401e, 1),
    (0x4020, 1), (0x4022, 1), (0x4024, 1), (0x4026, 1), (0x4400, 1), (0x4402, 1), (0x4404, 1),
    (0x4406, 1), (0x4408, 1), (0x440a, 1), (0x440c, 1), (0x440e, 1), (0x4800, 1), (0x4802, 1),
    (0x4804, 1), (0x4806, 1), (0x4808, 1), (0x480a, 1), (0x480c, 1), (0x480e, 1), (0x4810, 1),
    (0x4812, 1), (0x4814, 1), (0x4816, 1), (0x4818, 1), (0x481a, 1), (0x481c, 1), (0x481e, 1),
    (0x4820, 1), (0x4822, 1), (0x4824, 1), (0x4826, 1), (0x4828, 1), (0x482a, 1), (0x482e, 1),
    (0x6000, 1), (0x6002, 1), (0x6004, 1), (0x6006, 1), (0x6008, 4), (0x6400, 1), (0x6402, 1),
    (0x6404, 1), (0x6406, 1), (0x6408, 1), (0x640a, 1), (0x6800, 1), (0x6802, 1), (0x6804, 1),
    (0x6806, 1), (0x6808, 1), (0x680a, 1), (0x680c, 1), (0x680e, 1), (0x6810, 1), (0x6812, 1),
    (0x6814, 1), (0x6816, 1), (0x6818, 1), (0x681a, 1), (0x681c, 1), (0x681e, 1), (0x6820, 1),
    (0x6822, 1), (0x6824, 1), (0x6826, 1), (0x6828, 1), (0x682a, 1), (0x682c, 1), (0x6c08, 1),
    (0x6c14, 1), (0x6c16, 1), (0x6c1a, 1),
];

impl TdxModule {
    /// TDG.VP.RD (`write` false) and TDG.VP.WR (`tdg_vp_rd_wr.c`): RDX the
    /// field ID, R8 the value (and on return the value read, or the old
    /// value), R9 the write mask; RCX must be 0. A read returns the next
    /// guest-readable field ID in RDX; a read of the null field ID returns
    /// the first, with TDX_METADATA_FIRST_FIELD_ID_IN_CONTEXT. The module's
    /// checks and status codes: a field ID that is not one element, or not
    /// in the tables, TDX_METADATA_FIELD_ID_INCORRECT; a field the guest
    /// may not read TDX_METADATA_FIELD_NOT_READABLE; a write mask with no
    /// bit the guest may write TDX_METADATA_FIELD_NOT_WRITABLE; a change to
    /// a bit the mask names but the guest may not write
    /// TDX_METADATA_FIELD_VALUE_NOT_VALID (`md_vp_write_element()`).
    pub(super) fn vp_rd_wr(&self, vcpu: u32, regs: &mut Regs, write: bool) -> u64 {
        let requested = regs.gpr[gpr::RDX];
        if !write {
            regs.gpr[gpr::RDX] = FIELD_ID_NA;
        }
        let (value, request) = (regs.gpr[gpr::R8], regs.gpr[gpr::R9]);
        regs.gpr[gpr::R8] = 0;
        if regs.gpr[gpr::RCX] != 0 {
            return operand_invalid(status::OPERAND_RCX);
        }
        let Some(slot) = self.vcpus.get(vcpu as usize) else {
            return operand_invalid(status::OPERAND_RAX);
        };
        let id = (requested & !CONTEXT_MASK) | CONTEXT_VP;
        if !write && id | CONTEXT_MASK == FIELD_ID_NA {
            regs.gpr[gpr::RDX] = next_readable(None);
            return status::METADATA_FIRST_FIELD_ID_IN_CONTEXT;
        }
        if id & NOT_SINGLE_ELEMENT != 0 {
            return status::METADATA_FIELD_ID_INCORRECT;
        }
        let (i, elem) = match find_vp(id) {
            None => return status::METADATA_FIELD_ID_INCORRECT,
            // No TD VMCS field is the guest's to read or write.
            Some(VpField::Vmcs) if write => return status::METADATA_FIELD_NOT_WRITABLE,
            Some(VpField::Vmcs) => return status::METADATA_FIELD_NOT_READABLE,
            Some(VpField::Tdvps(i, elem)) => (i, elem),
        };
        let e = &TDVPS_TABLE[i];
        let size = size_mask(e.base);
        let mut v = slot.lock();
        let old = vp_field(&v, e.name, vcpu, elem).unwrap_or(0) & size;
        if !write {
            if e.guest_rd == 0 {
                return status::METADATA_FIELD_NOT_READABLE;
            }
            regs.gpr[gpr::R8] = old & e.guest_rd;
            regs.gpr[gpr::RDX] = next_readable(Some((i, elem)));
            return 0;
        }
        let combined = e.guest_wr & request;
        if combined == 0 {
            return status::METADATA_FIELD_NOT_WRITABLE;
        }
        // A write of the whole element compares the forbidden bits with 0.
        let read = if combined == size { 0 } else { old };
        if (read ^ value) & (request & !e.guest_wr) != 0 {
            return status::METADATA_FIELD_VALUE_NOT_VALID;
        }
        let new = ((read & !combined) | (value & combined)) & size;
        set_vp_field(&mut v, e.name, elem, new);
        regs.gpr[gpr::R8] = old & e.guest_rd;
        0
    }
}

/// How cvmem answers a guest read of a TD-scope field (the TD's state
/// where cvmem has it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TdAnswer {
    /// Not guest-readable (guest read mask 0): never answered.
    Hidden,
    /// TD_UUID.
    TdUuid,
    /// NUM_VCPUS.
    NumVcpus,
    /// NUM_L2_VMS.
    NoL2Vms,
    /// ATTRIBUTES.
    Attributes,
    /// XFAM.
    Xfam,
    /// MAX_VCPUS.
    MaxVcpus,
    /// GPAW.
    Gpaw,
    /// TSC_FREQUENCY.
    TscFrequency,
    /// NOTIFY_ENABLES.
    NotifyEnables,
    /// CONFIG_FLAGS.
    ConfigFlags,
    /// TD_CTLS.
    TdCtls,
    /// TOPOLOGY_ENUM_CONFIGURED.
    TopologyEnumConfigured,
    /// MRTD.
    Mrtd,
    /// MRCONFIGID, MROWNER, MROWNERCONFIG.
    NotGiven,
    /// RTMR.
    Rtmr,
    /// PRE_IMPORT_UUID.
    NoMigration,
    /// SERVTD_HASH, SERVTD_NUM, SERVTD_BINDINGS_TABLE.
    NoServiceTd,
}

impl TdAnswer {
    /// What the guest reads, for docs (`tables.rs`).
    #[cfg(test)]
    pub fn describe(self) -> &'static str {
        match self {
            TdAnswer::Hidden => "not guest-readable",
            TdAnswer::TdUuid => {
                "0 (the module draws 256 random bits at TDH.MNG.CREATE; cvmem has no TD UUID)"
            }
            TdAnswer::NumVcpus => "the vCPU count (KVM initializes every vCPU of a TD)",
            TdAnswer::NoL2Vms => "0: KVM gives a TD no L2 VM",
            TdAnswer::Attributes => "the TD's ATTRIBUTES (`td-attributes=`), as TDG.VP.INFO",
            TdAnswer::Xfam => "the TD's XFAM, as in the TDREPORT",
            TdAnswer::MaxVcpus => "the vCPU count, as TDG.VP.INFO",
            TdAnswer::Gpaw => "1 for a 52-bit GPAW, 0 for 48 (TD_PARAMS.CONFIG_FLAGS.GPAW)",
            TdAnswer::TscFrequency => {
                "0, as CPUID 0x15 EBX (cvmem does not tell the TSC frequency; docs/tdx.md)"
            }
            TdAnswer::NotifyEnables => "what the guest wrote (bit 0; no notification is sent)",
            TdAnswer::ConfigFlags => {
                "GPAW (bit 0) for a 52-bit GPAW; not KVM's NO_RBP_MOD (bit 2), which cvmem does not model (docs/tdx.md)"
            }
            TdAnswer::TdCtls => {
                "PENDING_VE_DISABLE from ATTRIBUTES.SEPT_VE_DISABLE, the rest as written"
            }
            TdAnswer::TopologyEnumConfigured => "1: KVM gives every vCPU its x2APIC ID",
            TdAnswer::Mrtd => "MRTD, as in the TDREPORT",
            TdAnswer::NotGiven => "0, as in the TDREPORT (cvmem takes none from the VMM)",
            TdAnswer::Rtmr => "RTMR 0-3 (TDG.MR.RTMR.EXTEND), as in the TDREPORT",
            TdAnswer::NoMigration => "0: no migration",
            TdAnswer::NoServiceTd => "0: no service TD is bound",
        }
    }
}

/// One entry of the TD-scope field table: the module's entry and how
/// cvmem answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TdEntry {
    pub md: MdEntry,
    pub answer: TdAnswer,
}

const fn tdf(
    name: &'static str,
    base: u64,
    fields: u32,
    elems: u32,
    guest_rd: u64,
    guest_wr: u64,
    answer: TdAnswer,
) -> TdEntry {
    TdEntry {
        md: md(name, base, fields, elems, guest_rd, guest_wr),
        answer,
    }
}

/// TDX module 1.5 `tdr_tdcs_lookup[]` (include/auto_gen/
/// tdr_tdcs_fields_lookup.c), in its order: name, base field ID, fields,
/// elements per field, guest read mask, guest write mask (within the
/// element's size), cvmem's answer. Without the three L2_SEPT_ROOT_n
/// entries at its end (`md_get_lookup_table()` leaves out those of L2 VMs
/// a TD does not have, and a KVM TD has none). Two entries follow the
/// module releases with #VE reduction (TDX module ABI spec; Linux
/// `asm/shared/tdx.h`) rather than 1.5.01: TD_CTLS's guest write mask
/// ([`field::TD_CTLS_GUEST_WRITABLE`], 1.5.01 has PENDING_VE_DISABLE
/// only) and TOPOLOGY_ENUM_CONFIGURED (Linux's `TDCS_TOPO_ENUM_CONFIGURED`,
/// an 8-bit field cvmem makes wholly guest-readable).
#[rustfmt::skip]
pub const TDCS_TABLE: [TdEntry; 81] = [
    tdf("FATAL", 0x8010_0000_0000_0001, 1, 1, 0x0, 0, Hidden),
    tdf("NUM_TDCX", 0x8010_0002_0000_0002, 1, 1, 0x0, 0, Hidden),
    tdf("CHLDCNT", 0x8010_0003_0000_0004, 1, 1, 0x0, 0, Hidden),
    tdf("LIFECYCLE_STATE", 0x8010_0002_0000_0005, 1, 1, 0x0, 0, Hidden),
    tdf("TDCX_PA", 0x8010_0003_0000_0010, 9, 1, 0x0, 0, Hidden),
    tdf("TD_UUID", 0x8010_0003_0000_0020, 1, 4, u64::MAX, 0, TdUuid),
    tdf("HKID", 0x8110_0001_0000_0001, 1, 1, 0x0, 0, Hidden),
    tdf("PKG_CONFIG_BITMAP", 0x8110_0003_0000_0002, 1, 1, 0x0, 0, Hidden),
    tdf("HANDOFF_VERSION", 0x8210_0001_0000_0000, 1, 1, 0x0, 0, Hidden),
    tdf("SEAMDB_INDEX", 0x8210_0003_0000_0001, 1, 1, 0x0, 0, Hidden),
    tdf("SEAMDB_NONCE", 0x8210_0003_0000_0002, 1, 4, 0x0, 0, Hidden),
    tdf("NUM_VCPUS", 0x9010_0002_0000_0001, 1, 1, 0xffffffff, 0, NumVcpus),
    tdf("NUM_ASSOC_VCPUS", 0x9010_0002_0000_0002, 1, 1, 0x0, 0, Hidden),
    tdf("OP_STATE", 0x9010_0002_0000_0004, 1, 1, 0x0, 0, Hidden),
    tdf("NUM_L2_VMS", 0x9010_0001_0000_0005, 1, 1, 0xffff, 0, NoL2Vms),
    tdf("ATTRIBUTES", 0x1110_0003_0000_0000, 1, 1, u64::MAX, 0, Attributes),
    tdf("XFAM", 0x1110_0003_0000_0001, 1, 1, u64::MAX, 0, Xfam),
    tdf("MAX_VCPUS", 0x1110_0002_0000_0002, 1, 1, 0xffffffff, 0, MaxVcpus),
    tdf("GPAW", 0x1110_0000_0000_0003, 1, 1, 0xff, 0, Gpaw),
    tdf("EPTP", 0x1110_0003_0000_0004, 1, 1, 0x0, 0, Hidden),
    tdf("TSC_OFFSET", 0x1110_0003_0000_000a, 1, 1, 0x0, 0, Hidden),
    tdf("TSC_MULTIPLIER", 0x1110_0003_0000_000b, 1, 1, 0x0, 0, Hidden),
    tdf("TSC_FREQUENCY", 0x1110_0001_0000_000c, 1, 1, 0xffff, 0, TscFrequency),
    tdf("VIRTUAL_TSC", 0x1110_0003_0000_000d, 1, 1, 0x0, 0, Hidden),
    tdf("NUM_CPUID_VALUES", 0x9110_0001_0000_000e, 1, 1, 0x0, 0, Hidden),
    tdf("XBUFF_SIZE", 0x9110_0002_0000_000f, 1, 1, 0x0, 0, Hidden),
    tdf("NOTIFY_ENABLES", 0x9110_0003_0000_0010, 1, 1, 0x1, 0x1, NotifyEnables),
    tdf("HP_LOCK_TIMEOUT", 0x9110_0003_0000_0011, 1, 1, 0x0, 0, Hidden),
    tdf("VM_CTLS", 0x9110_0003_0000_0012, 4, 1, 0x0, 0, Hidden),
    tdf("CONFIG_FLAGS", 0x1110_0003_0000_0016, 1, 1, u64::MAX, 0, ConfigFlags),
    tdf("TD_CTLS", 0x1110_0003_0000_0017, 1, 1, u64::MAX, field::TD_CTLS_GUEST_WRITABLE, TdCtls),
    tdf("TOPOLOGY_ENUM_CONFIGURED", 0x9110_0000_0000_0019, 1, 1, 0xff, 0, TopologyEnumConfigured),
    tdf("CPUID_VALID", 0x9110_0000_0000_0080, 80, 1, 0x0, 0, Hidden),
    tdf("XBUFF_OFFSETS", 0x9110_0002_0000_0800, 19, 1, 0x0, 0, Hidden),
    tdf("TD_EPOCH", 0x9210_0003_0000_0000, 1, 1, 0x0, 0, Hidden),
    tdf("REFCOUNT", 0x9210_0001_0000_0001, 2, 1, 0x0, 0, Hidden),
    tdf("MRTD", 0x1310_0003_0000_0000, 1, 6, u64::MAX, 0, Mrtd),
    tdf("MRCONFIGID", 0x1310_0003_0000_0010, 1, 6, u64::MAX, 0, NotGiven),
    tdf("MROWNER", 0x1310_0003_0000_0018, 1, 6, u64::MAX, 0, NotGiven),
    tdf("MROWNERCONFIG", 0x1310_0003_0000_0020, 1, 6, u64::MAX, 0, NotGiven),
    tdf("RTMR", 0x1310_0003_0000_0040, 4, 6, u64::MAX, 0, Rtmr),
    tdf("CPUID_VALUES", 0x9410_0003_0000_0000, 80, 2, 0x0, 0, Hidden),
    tdf("VIRTUAL_IA32_ARCH_CAPABILITIES", 0x9610_0003_0000_010a, 1, 1, 0x0, 0, Hidden),
    tdf("VIRTUAL_IA32_VMX_BASIC", 0x9610_0003_0000_0480, 1, 1, 0x0, 0, Hidden),
    tdf("VIRTUAL_IA32_VMX_MISC", 0x9610_0003_0000_0485, 1, 1, 0x0, 0, Hidden),
    tdf("VIRTUAL_IA32_VMX_CR0_FIXED0", 0x9610_0003_0000_0486, 1, 1, 0x0, 0, Hidden),
    tdf("VIRTUAL_IA32_VMX_CR0_FIXED1", 0x9610_0003_0000_0487, 1, 1, 0x0, 0, Hidden),
    tdf("VIRTUAL_IA32_VMX_CR4_FIXED0", 0x9610_0003_0000_0488, 1, 1, 0x0, 0, Hidden),
    tdf("VIRTUAL_IA32_VMX_CR4_FIXED1", 0x9610_0003_0000_0489, 1, 1, 0x0, 0, Hidden),
    tdf("VIRTUAL_IA32_VMX_PROCBASED_CTLS2", 0x9610_0003_0000_048b, 1, 1, 0x0, 0, Hidden),
    tdf("VIRTUAL_IA32_VMX_EPT_VPID_CAP", 0x9610_0003_0000_048c, 1, 1, 0x0, 0, Hidden),
    tdf("VIRTUAL_IA32_VMX_TRUE_PINBASED_CTLS", 0x9610_0003_0000_048d, 1, 1, 0x0, 0, Hidden),
    tdf("VIRTUAL_IA32_VMX_TRUE_PROCBASED_CTLS", 0x9610_0003_0000_048e, 1, 1, 0x0, 0, Hidden),
    tdf("VIRTUAL_IA32_VMX_TRUE_EXIT_CTLS", 0x9610_0003_0000_048f, 1, 1, 0x0, 0, Hidden),
    tdf("VIRTUAL_IA32_VMX_TRUE_ENTRY_CTLS", 0x9610_0003_0000_0490, 1, 1, 0x0, 0, Hidden),
    tdf("VIRTUAL_IA32_VMX_VMFUNC", 0x9610_0003_0000_0491, 1, 1, 0x0, 0, Hidden),
    tdf("VIRTUAL_IA32_VMX_PROCBASED_CTLS3", 0x9610_0003_0000_0492, 1, 1, 0x0, 0, Hidden),
    tdf("VIRTUAL_IA32_VMX_EXIT_CTLS2", 0x9610_0003_0000_0493, 1, 1, 0x0, 0, Hidden),
    tdf("MIG_DEC_KEY_SET", 0x9810_0000_0000_0001, 1, 1, 0x0, 0, Hidden),
    tdf("EXPORT_COUNT", 0x9810_0002_0000_0002, 1, 1, 0x0, 0, Hidden),
    tdf("IMPORT_COUNT", 0x9810_0002_0000_0003, 1, 1, 0x0, 0, Hidden),
    tdf("MIG_EPOCH", 0x9810_0002_0000_0004, 1, 1, 0x0, 0, Hidden),
    tdf("BW_EPOCH", 0x9810_0003_0000_0005, 1, 1, 0x0, 0, Hidden),
    tdf("TOTAL_MB_COUNT", 0x9810_0003_0000_0006, 1, 1, 0x0, 0, Hidden),
    tdf("MIG_DEC_KEY", 0x9810_0003_0000_0010, 1, 4, 0x0, 0, Hidden),
    tdf("MIG_DEC_WORKING_KEY", 0x9810_0003_0000_0014, 1, 4, 0x0, 0, Hidden),
    tdf("MIG_ENC_KEY", 0x9810_0003_0000_0018, 1, 4, 0x0, 0, Hidden),
    tdf("MIG_ENC_WORKING_KEY", 0x9810_0003_0000_001c, 1, 4, 0x0, 0, Hidden),
    tdf("MIG_VERSION", 0x9810_0001_0000_0020, 1, 1, 0x0, 0, Hidden),
    tdf("MIG_WORKING_VERSION", 0x9810_0001_0000_0021, 1, 1, 0x0, 0, Hidden),
    tdf("DIRTY_COUNT", 0x9810_0003_0000_0030, 1, 1, 0x0, 0, Hidden),
    tdf("MIG_COUNT", 0x9810_0003_0000_0031, 1, 1, 0x0, 0, Hidden),
    tdf("NUM_MIGS", 0x9810_0001_0000_0032, 1, 1, 0x0, 0, Hidden),
    tdf("NUM_MIGRATED_VCPUS", 0x9810_0002_0000_0034, 1, 1, 0x0, 0, Hidden),
    tdf("PRE_IMPORT_UUID", 0x9810_0003_0000_0040, 1, 4, u64::MAX, 0, NoMigration),
    tdf("SERVTD_HASH", 0x9910_0003_0000_0000, 1, 6, u64::MAX, 0, NoServiceTd),
    tdf("SERVTD_NUM", 0x9910_0001_0000_0006, 1, 1, 0xffff, 0, NoServiceTd),
    tdf("SERVTD_BINDINGS_TABLE", 0x9910_0003_0000_0080, 1, 16, u64::MAX, 0, NoServiceTd),
    tdf("MIGSC_LINKS", 0x9a10_0003_0000_0000, 512, 1, 0x0, 0, Hidden),
    tdf("MSR_BITMAPS", 0x2010_0003_0000_0000, 512, 1, 0x0, 0, Hidden),
    tdf("SEPT_ROOT", 0x2110_0003_0000_0000, 512, 1, 0x0, 0, Hidden),
];

/// The TDCS class of CPUID_VALUES: its field code is the CPUID leaf and
/// sub-leaf (`md_field_id_t.cpuid_field_code`).
const CLASS_CPUID: u64 = 0x14;

/// `md_find_entry_idx()` over [`TDCS_TABLE`], by class and field code:
/// the entry and the element's index in it. A CPUID_VALUES ID is found by
/// its element bit alone, as the module does.
pub fn find_td(id: u64) -> Option<(usize, u32)> {
    let class = class_of(id);
    let code = if class == CLASS_CPUID {
        id & 1
    } else {
        id & FIELD_CODE
    };
    TDCS_TABLE.iter().enumerate().find_map(|(i, e)| {
        let first = e.md.base & FIELD_CODE;
        let n = u64::from(e.md.fields) * u64::from(e.md.elems);
        (class_of(e.md.base) == class && (first..first + n).contains(&code))
            .then(|| (i, (code - first) as u32))
    })
}

/// `md_td_get_element()`'s checks of a CPUID_VALUES ID: reserved bits of
/// its field code (23:17), a leaf and sub-leaf the module's CPUID lookup
/// does not have (TDX_METADATA_FIELD_ID_INCORRECT), a faulting leaf
/// (TDX_METADATA_FIELD_NOT_READABLE; every other leaf is valid in a TD
/// that TDH.MNG.INIT configured).
fn check_cpuid_id(id: u64) -> Result<(), u64> {
    if id & (0x7f << 17) != 0 {
        return Err(status::METADATA_FIELD_ID_INCORRECT);
    }
    let leaf = ((id >> 9) & 0x7f) as u32 | (((id >> 16) & 1) as u32) << 31;
    let subleaf = if id & (1 << 8) != 0 {
        u32::MAX
    } else {
        ((id >> 1) & 0x7f) as u32
    };
    if cpuid_control_index(leaf, subleaf).is_none() {
        return Err(status::METADATA_FIELD_ID_INCORRECT);
    }
    let faulting = crate::tdx::cpuid_table::CPUID_TABLE
        .iter()
        .any(|e| e.leaf == leaf && e.subleaf.is_none_or(|s| s == subleaf) && e.faulting);
    if faulting {
        return Err(status::METADATA_FIELD_NOT_READABLE);
    }
    Ok(())
}

/// The guest-readable TD-scope element after `after` (`None`: from the
/// start), in table order: `md_get_next_element_in_context()` for a guest
/// read. [`FIELD_ID_NA`] past the last.
pub fn next_readable_td(after: Option<(usize, u32)>) -> u64 {
    let (mut i, mut elem) = match after {
        Some((i, e)) => (i, e + 1),
        None => (0, 0),
    };
    while let Some(e) = TDCS_TABLE.get(i).map(|e| e.md) {
        if e.guest_rd != 0 && elem < e.fields * e.elems {
            return (e.base & !FIELD_CODE) | ((e.base & FIELD_CODE) + u64::from(elem));
        }
        i += 1;
        elem = 0;
    }
    FIELD_ID_NA
}

/// CONTEXT_CODE 1: TD scope.
const CONTEXT_TD: u64 = 1 << 52;

/// TD_PARAMS.CONFIG_FLAGS.GPAW (bit 0; TDX module `config_flags_t`,
/// Linux `TDX_CONFIG_FLAGS_MAX_GPAW`). KVM's `setup_tdparams()` also sets
/// NO_RBP_MOD (bit 2), after which the module refuses a TDG.VP.VMCALL
/// that exposes RBP (`tdg_vp_vmcall.c`); cvmem does not model it, as the
/// OVMF its Linux tests boot exposes RBP (EDK2's older
/// TDVMCALL_EXPOSE_REGS_MASK 0xffec), so CONFIG_FLAGS reads without it.
pub const CONFIG_FLAGS_GPAW: u64 = 1 << 0;

impl TdxModule {
    /// TDG.VM.RD (`write` false) and TDG.VM.WR (`tdg_vm_rd_wr.c`,
    /// `md_td_read_element()`/`md_td_write_element()` in metadata_td.c):
    /// RDX the field ID (its context code ignored), R8 the value (on
    /// return the value read, or the old value), R9 the write mask; RCX
    /// (the VM) must be 0. `version` is TDG.VM.RD's (RAX bits 23:16): 1
    /// returns the next guest-readable field ID in RDX, and a read of the
    /// null ID the first, with TDX_METADATA_FIRST_FIELD_ID_IN_CONTEXT.
    /// An ID that is not one element or not in [`TDCS_TABLE`] is
    /// TDX_METADATA_FIELD_ID_INCORRECT; a field the guest may not read
    /// TDX_METADATA_FIELD_NOT_READABLE; a write mask with no bit the guest
    /// may write TDX_METADATA_FIELD_NOT_WRITABLE; a change to a bit the
    /// mask names but the guest may not write
    /// TDX_METADATA_FIELD_VALUE_NOT_VALID (`md_check_forbidden_bits_unchanged()`).
    pub(super) fn vm_rd_wr(
        &self,
        vmm: &Vmm,
        host: &dyn Host,
        regs: &mut Regs,
        write: bool,
        version: u64,
    ) -> u64 {
        let requested = regs.gpr[gpr::RDX];
        let enumerate = !write && version > 0;
        if enumerate {
            regs.gpr[gpr::RDX] = FIELD_ID_NA;
        }
        let (value, request) = (regs.gpr[gpr::R8], regs.gpr[gpr::R9]);
        regs.gpr[gpr::R8] = 0;
        if !write && version > 1 {
            return operand_invalid(status::OPERAND_RAX);
        }
        if regs.gpr[gpr::RCX] != 0 {
            return operand_invalid(status::OPERAND_RCX);
        }
        let id = (requested & !CONTEXT_MASK) | CONTEXT_TD;
        if enumerate && id | CONTEXT_MASK == FIELD_ID_NA {
            regs.gpr[gpr::RDX] = next_readable_td(None);
            return status::METADATA_FIRST_FIELD_ID_IN_CONTEXT;
        }
        if id & NOT_SINGLE_ELEMENT != 0 {
            return status::METADATA_FIELD_ID_INCORRECT;
        }
        let Some((i, elem)) = find_td(id) else {
            return status::METADATA_FIELD_ID_INCORRECT;
        };
        if class_of(id) == CLASS_CPUID {
            if let Err(st) = check_cpuid_id(id) {
                return st;
            }
        }
        let e = TDCS_TABLE[i];
        let size = size_mask(e.md.base);
        if !write {
            if e.md.guest_rd == 0 {
                return status::METADATA_FIELD_NOT_READABLE;
            }
            regs.gpr[gpr::R8] = self.td_field(vmm, host, e.answer, elem) & size & e.md.guest_rd;
            if enumerate {
                regs.gpr[gpr::RDX] = next_readable_td(Some((i, elem)));
            }
            return 0;
        }
        let combined = e.md.guest_wr & request;
        if combined == 0 {
            return status::METADATA_FIELD_NOT_WRITABLE;
        }
        let old = match e.answer {
            TdAnswer::TdCtls => self.write_td_ctls(vmm, value, request, e.md.guest_wr),
            TdAnswer::NotifyEnables => {
                let updated =
                    self.notify_enables
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                            ((old ^ value) & request & !e.md.guest_wr == 0)
                                .then_some((old & !combined) | (value & combined))
                        });
                updated.map_err(|_| status::METADATA_FIELD_VALUE_NOT_VALID)
            }
            // Only TD_CTLS and NOTIFY_ENABLES have a guest write mask.
            _ => unreachable!("{} has no guest write mask", e.md.name),
        };
        match old {
            Ok(old) => {
                regs.gpr[gpr::R8] = old & size & e.md.guest_rd;
                0
            }
            Err(st) => st,
        }
    }

    /// The value of element `elem` of a guest-readable TD-scope field.
    fn td_field(&self, vmm: &Vmm, host: &dyn Host, answer: TdAnswer, elem: u32) -> u64 {
        let config = vmm.vm().config();
        // A 48-byte measurement as six little-endian quadwords.
        let qword = |m: &[u8], i: u32| {
            let at = i as usize % 6 * 8;
            m.get(at..at + 8)
                .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
        };
        let wide = config.gpaw == cvmem_model::Gpaw::Bits52;
        match answer {
            TdAnswer::Hidden
            | TdAnswer::TdUuid
            | TdAnswer::NoL2Vms
            | TdAnswer::NotGiven
            | TdAnswer::NoMigration
            | TdAnswer::NoServiceTd => 0,
            TdAnswer::NumVcpus | TdAnswer::MaxVcpus => u64::from(config.max_vcpus),
            TdAnswer::Attributes => config.td_attributes.0,
            TdAnswer::Xfam => self.td_xfam(host),
            TdAnswer::Gpaw => u64::from(wide),
            TdAnswer::TscFrequency => u64::from(super::cpuid::TSC_FREQUENCY),
            TdAnswer::NotifyEnables => self.notify_enables.load(Ordering::Relaxed),
            TdAnswer::ConfigFlags => {
                if wide {
                    CONFIG_FLAGS_GPAW
                } else {
                    0
                }
            }
            TdAnswer::TdCtls => self.td_ctls(vmm),
            TdAnswer::TopologyEnumConfigured => u64::from(super::tdcall::TOPOLOGY_ENUM_CONFIGURED),
            TdAnswer::Mrtd => qword(self.mrtd(), elem),
            TdAnswer::Rtmr => {
                let rtmr = self.rtmr.lock();
                rtmr.get(elem as usize / 6).map_or(0, |m| qword(m, elem))
            }
        }
    }
}

/// The value of a guest-accessible TDVPS element; `None` for the fields
/// no guest reaches (never read: their read mask is 0).
fn vp_field(v: &TdVcpu, name: &str, vcpu: u32, elem: u32) -> Option<u64> {
    let e = elem as usize;
    Some(match name {
        "VCPU_INDEX" => u64::from(vcpu),
        "CPUID_SUPERVISOR_VE" => u64::from(v.cpuid_supervisor_ve),
        "CPUID_USER_VE" => u64::from(v.cpuid_user_ve),
        "CPUID_CONTROL" => u64::from(*v.cpuid_control.get(e)?),
        "L2_CTLS" => *v.l2_ctls.get(e)?,
        "TSC_DEADLINE" => *v.tsc_deadline.get(e)?,
        _ => return None,
    })
}

/// Stores a guest write of a TDVPS element (only the fields with a guest
/// write mask get here). L2_CTLS and TSC_DEADLINE of a VM the TD does not
/// have are only stored, as the module's special write handling ignores
/// them.
fn set_vp_field(v: &mut TdVcpu, name: &str, elem: u32, value: u64) {
    let e = elem as usize;
    match name {
        "CPUID_SUPERVISOR_VE" => v.cpuid_supervisor_ve = value as u8,
        "CPUID_USER_VE" => v.cpuid_user_ve = value as u8,
        "CPUID_CONTROL" => {
            if let Some(c) = v.cpuid_control.get_mut(e) {
                *c = value as u8;
            }
        }
        "L2_CTLS" => {
            if let Some(c) = v.l2_ctls.get_mut(e) {
                *c = value;
            }
        }
        "TSC_DEADLINE" => {
            if let Some(c) = v.tsc_deadline.get_mut(e) {
                *c = value;
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::fake::{FakeHost, MEM};
    use crate::hooks::Insn;
    use crate::tdx::report::sha384;
    use crate::tdx::testutil::*;
    use crate::vmm::vector;
    use cvmem_model::TdAttributes;

    const VCPU_INDEX: u64 = 0xa020_0002_0000_0002;
    const CPUID_SUPERVISOR_VE: u64 = 0xa020_0000_0000_0007;
    const CPUID_USER_VE: u64 = 0xa020_0000_0000_0008;
    const L2_CTLS: u64 = 0xa020_0003_0000_0050;
    const TSC_DEADLINE: u64 = 0xa020_0003_0000_0058;
    const CPUID_CONTROL: u64 = 0xa120_0000_0000_0000;

    #[test]
    fn the_tables_are_the_modules() {
        // The entries are in field order within a class and do not overlap.
        for w in TDVPS_TABLE.windows(2) {
            if class_of(w[0].base) == class_of(w[1].base) {
                let end = (w[0].base & FIELD_CODE) + u64::from(w[0].fields * w[0].elems);
                assert!(end <= w[1].base & FIELD_CODE, "{} {}", w[0].name, w[1].name);
            }
        }
        let readable: Vec<_> = TDVPS_TABLE
            .iter()
            .filter(|e| e.guest_rd != 0)
            .map(|e| e.name)
            .collect();
        assert_eq!(
            readable,
            [
                "VCPU_INDEX",
                "CPUID_SUPERVISOR_VE",
                "CPUID_USER_VE",
                "L2_CTLS",
                "TSC_DEADLINE",
                "CPUID_CONTROL"
            ]
        );
        // Every CPUID lookup index names a leaf of cvmem's table.
        for &(l, s) in &CPUID_LOOKUP_ORDER {
            assert!(
                crate::tdx::cpuid_table::CPUID_TABLE
                    .iter()
                    .any(|e| e.leaf == l && e.subleaf == s),
                "{l:#x}.{s:?}"
            );
        }
        assert_eq!(cpuid_control_index(1, 7), Some(0));
        assert_eq!(cpuid_control_index(0, 0), Some(10));
        assert_eq!(cpuid_control_index(0xd, 0x13), None);
    }

    #[test]
    fn vp_rd_wr_follow_the_field_table() {
        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        let host = FakeHost::new();
        let rd = |id: u64| {
            let r = call(&kvm, &host, leaf::VP_RD, &[(gpr::RDX, id)]);
            (r.gpr[gpr::RAX], r.gpr[gpr::R8], r.gpr[gpr::RDX])
        };
        let wr = |id: u64, v: u64, m: u64| {
            let r = call(
                &kvm,
                &host,
                leaf::VP_WR,
                &[(gpr::RDX, id), (gpr::R8, v), (gpr::R9, m)],
            );
            (r.gpr[gpr::RAX], r.gpr[gpr::R8])
        };
        // The null field ID: the first readable one.
        assert_eq!(
            rd(FIELD_ID_NA),
            (status::METADATA_FIRST_FIELD_ID_IN_CONTEXT, 0, VCPU_INDEX)
        );
        // Each read names the next readable element.
        assert_eq!(rd(VCPU_INDEX), (0, 0, CPUID_SUPERVISOR_VE));
        assert_eq!(rd(CPUID_SUPERVISOR_VE), (0, 0, CPUID_USER_VE));
        assert_eq!(rd(CPUID_USER_VE), (0, 0, L2_CTLS));
        assert_eq!(rd(L2_CTLS + 3), (0, 0, TSC_DEADLINE));
        assert_eq!(rd(TSC_DEADLINE), (0, u64::MAX, TSC_DEADLINE + 1));
        assert_eq!(rd(TSC_DEADLINE + 3), (0, 0, CPUID_CONTROL));
        assert_eq!(rd(CPUID_CONTROL + 127), (0, 0, FIELD_ID_NA));
        // The context code is ignored on input.
        assert_eq!(rd(VCPU_INDEX & !CONTEXT_MASK).0, 0);
        // Not one element, not in the tables, not readable.
        assert_eq!(
            rd(VCPU_INDEX | (1 << 34)).0,
            status::METADATA_FIELD_ID_INCORRECT
        );
        assert_eq!(
            rd(VCPU_INDEX | (1 << 24)).0,
            status::METADATA_FIELD_ID_INCORRECT
        );
        assert_eq!(
            rd(0xa020_0000_0000_00ff).0,
            status::METADATA_FIELD_ID_INCORRECT
        );
        assert_eq!(
            rd(CPUID_CONTROL + 128).0,
            status::METADATA_FIELD_ID_INCORRECT
        );
        // L2 MSR bitmaps: no L2 VM, no entry.
        assert_eq!(
            rd(0x2520_0003_0000_0000).0,
            status::METADATA_FIELD_ID_INCORRECT
        );
        assert_eq!(
            rd(0x1020_0003_0000_0000).0,
            status::METADATA_FIELD_NOT_READABLE,
            "RAX"
        );
        assert_eq!(
            rd(0x0024_0001_0000_0000).0,
            status::METADATA_FIELD_NOT_READABLE,
            "VMCS VPID"
        );
        assert_eq!(
            rd(0x0024_0001_0000_0001).0,
            status::METADATA_FIELD_ID_INCORRECT,
            "no VMCS field"
        );
        let r = call(
            &kvm,
            &host,
            leaf::VP_RD,
            &[(gpr::RDX, VCPU_INDEX), (gpr::RCX, 1)],
        );
        assert_eq!(
            (r.gpr[gpr::RAX], r.gpr[gpr::RDX]),
            (operand_invalid(status::OPERAND_RCX), FIELD_ID_NA)
        );
        // Writes.
        assert_eq!(
            wr(VCPU_INDEX, 1, u64::MAX).0,
            status::METADATA_FIELD_NOT_WRITABLE
        );
        assert_eq!(
            wr(0x1020_0003_0000_0000, 1, u64::MAX).0,
            status::METADATA_FIELD_NOT_WRITABLE
        );
        assert_eq!(wr(CPUID_SUPERVISOR_VE, 1, 1), (0, 0));
        assert_eq!(rd(CPUID_SUPERVISOR_VE).1, 1);
        // A bit above the element's size named in the mask must keep 0.
        assert_eq!(
            wr(CPUID_USER_VE, 0x100, u64::MAX).0,
            status::METADATA_FIELD_VALUE_NOT_VALID
        );
        // CPUID_CONTROL: bits 1:0 only.
        assert_eq!(
            wr(CPUID_CONTROL + 5, 0xff, 0xff).0,
            status::METADATA_FIELD_VALUE_NOT_VALID
        );
        assert_eq!(wr(CPUID_CONTROL + 5, 0xfd, 0x3), (0, 0));
        assert_eq!(rd(CPUID_CONTROL + 5).1, 1);
        assert_eq!(
            wr(L2_CTLS + 1, 0xf, 0xf).0,
            status::METADATA_FIELD_VALUE_NOT_VALID
        );
        assert_eq!(wr(L2_CTLS + 1, 7, 7), (0, 0));
        assert_eq!(wr(TSC_DEADLINE, 5, u64::MAX), (0, u64::MAX));
        assert_eq!(rd(TSC_DEADLINE).1, 5);
    }

    /// CPUID_CONTROL makes one leaf (the module's lookup index) raise #VE
    /// at a CPL; CPUID_SUPERVISOR_VE is TDG.VP.CPUIDVE.SET's bit 0.
    #[test]
    fn cpuid_control_raises_ve_for_one_leaf() {
        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        let host = FakeHost::new();
        access(&kvm, 0x1000, crate::hooks::Access::Read);
        let cpuid = |leaf: u64, cpl: u32| {
            let mut regs = Regs {
                insn_len: 2,
                cr0: super::super::msr::CR0_PG | 1,
                cpl,
                ..Regs::default()
            };
            regs.gpr[gpr::RAX] = leaf;
            let a = kvm.insn(0, Insn::Cpuid, &mut regs, &host).0;
            let ve = matches!(a, InsnAction::Fault(f) if f.vector == vector::VE);
            if ve {
                let _ = call(&kvm, &host, leaf::VP_VEINFO_GET, &[]);
            }
            ve
        };
        let wr = |id: u64, v: u64| {
            call(
                &kvm,
                &host,
                leaf::VP_WR,
                &[(gpr::RDX, id), (gpr::R8, v), (gpr::R9, 0xff)],
            )
            .gpr[gpr::RAX]
        };
        // Leaf 1 is lookup index 0: user #VE only.
        assert_eq!(wr(CPUID_CONTROL, 2), 0);
        assert!(cpuid(1, 3));
        assert!(!cpuid(1, 0));
        assert!(!cpuid(0, 3));
        assert_eq!(wr(CPUID_CONTROL, 0), 0);
        assert!(!cpuid(1, 3));
        assert_eq!(
            call(&kvm, &host, leaf::VP_CPUIDVE_SET, &[(gpr::RCX, 1)]).gpr[gpr::RAX],
            0
        );
        let r = call(&kvm, &host, leaf::VP_RD, &[(gpr::RDX, CPUID_SUPERVISOR_VE)]);
        assert_eq!(r.gpr[gpr::R8], 1);
        assert!(cpuid(0, 0));
        assert_eq!(wr(CPUID_SUPERVISOR_VE, 0), 0);
        assert!(!cpuid(0, 0));
    }

    /// TDG.VM.RD of every element of every TD-scope field the guest may
    /// read, against the TDREPORT and the TD's configuration; the error
    /// statuses for every other field and for malformed IDs.
    #[test]
    fn vm_rd_wr_answer_every_td_field() {
        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        let host = FakeHost::new();
        access(&kvm, 0x1000, crate::hooks::Access::Read);
        host.phys_write(cvmem_model::BackingAddr::new(0x3000), &[9; 48]);
        for rtmr in [1, 3] {
            let r = call(
                &kvm,
                &host,
                leaf::MR_RTMR_EXTEND,
                &[(gpr::RCX, 0x3000), (gpr::RDX, rtmr)],
            );
            assert_eq!(r.gpr[gpr::RAX], 0);
        }
        let r = call(
            &kvm,
            &host,
            leaf::MR_REPORT,
            &[(gpr::RCX, 0x4000), (gpr::RDX, 0x2000)],
        );
        assert_eq!(r.gpr[gpr::RAX], 0);
        let mut rep = [0u8; 1024];
        host.phys_read(cvmem_model::BackingAddr::new(0x4000), &mut rep);
        // TDINFO_STRUCT quadword `q`.
        let tdinfo =
            |q: usize| u64::from_le_bytes(rep[512 + q * 8..520 + q * 8].try_into().unwrap());
        let rd = |id: u64, version: u64| {
            let r = call(&kvm, &host, leaf::VM_RD | version << 16, &[(gpr::RDX, id)]);
            (r.gpr[gpr::RAX], r.gpr[gpr::R8], r.gpr[gpr::RDX])
        };
        let wr = |id: u64, v: u64, m: u64| {
            let r = call(
                &kvm,
                &host,
                leaf::VM_WR,
                &[(gpr::RDX, id), (gpr::R8, v), (gpr::R9, m)],
            );
            (r.gpr[gpr::RAX], r.gpr[gpr::R8])
        };
        let mut readable = 0;
        for e in TDCS_TABLE.iter().map(|e| e.md) {
            let n = e.fields * e.elems;
            for elem in 0..n {
                let id = e.base + u64::from(elem);
                let i = elem as u64;
                if e.guest_rd == 0 {
                    if elem == 0 || elem == n - 1 {
                        let st = rd(id, 0).0;
                        assert_eq!(st, status::METADATA_FIELD_NOT_READABLE, "{}", e.name);
                        if class_of(e.base) != CLASS_CPUID {
                            let st = wr(id, 0, u64::MAX).0;
                            assert_eq!(st, status::METADATA_FIELD_NOT_WRITABLE, "{}", e.name);
                        }
                    }
                    continue;
                }
                readable += 1;
                let want = match e.name {
                    "NUM_VCPUS" | "MAX_VCPUS" => 2,
                    "ATTRIBUTES" => tdinfo(0),
                    "XFAM" => tdinfo(1),
                    "MRTD" => tdinfo(2 + elem as usize),
                    "MRCONFIGID" => tdinfo(8 + elem as usize),
                    "MROWNER" => tdinfo(14 + elem as usize),
                    "MROWNERCONFIG" => tdinfo(20 + elem as usize),
                    "RTMR" => tdinfo(26 + elem as usize),
                    "SERVTD_HASH" => tdinfo(50 + elem as usize),
                    // 48-bit GPAW.
                    "GPAW" | "CONFIG_FLAGS" => 0,
                    "TD_CTLS" => field::TD_CTLS_PENDING_VE_DISABLE,
                    "TOPOLOGY_ENUM_CONFIGURED" => 1,
                    "TD_UUID"
                    | "NUM_L2_VMS"
                    | "TSC_FREQUENCY"
                    | "NOTIFY_ENABLES"
                    | "PRE_IMPORT_UUID"
                    | "SERVTD_NUM"
                    | "SERVTD_BINDINGS_TABLE" => 0,
                    other => panic!("{other}: no expectation"),
                };
                let (st, value, _) = rd(id, 0);
                assert_eq!((st, value), (0, want), "{}[{i}]", e.name);
                // Version 0 leaves RDX alone; the context code is ignored.
                assert_eq!(rd(id, 0).2, id);
                assert_eq!(rd(id & !CONTEXT_MASK, 0).1, want, "{}", e.name);
                if e.guest_wr == 0 {
                    let st = wr(id, 0, u64::MAX).0;
                    assert_eq!(st, status::METADATA_FIELD_NOT_WRITABLE, "{}", e.name);
                }
            }
            // One past the entry's last element is no field.
            let past = e.base + u64::from(n);
            if find_td(past).is_none() {
                assert_eq!(
                    rd(past, 0).0,
                    status::METADATA_FIELD_ID_INCORRECT,
                    "{}",
                    e.name
                );
            }
        }
        assert_eq!(readable, 4 + 4 * 6 + 4 * 6 + 4 + 6 + 16 + 12);
        // vm_rd_wr() writes these two only.
        let writable: Vec<_> = TDCS_TABLE
            .iter()
            .filter(|e| e.md.guest_wr != 0)
            .map(|e| e.md.name)
            .collect();
        assert_eq!(writable, ["NOTIFY_ENABLES", "TD_CTLS"]);
        // The entries are in field order within a class and do not overlap.
        for w in TDCS_TABLE.windows(2).map(|w| (w[0].md, w[1].md)) {
            if class_of(w.0.base) == class_of(w.1.base) {
                let end = (w.0.base & FIELD_CODE) + u64::from(w.0.fields * w.0.elems);
                assert!(end <= w.1.base & FIELD_CODE, "{} {}", w.0.name, w.1.name);
            }
        }
        // The RTMRs hold what was extended.
        let extended = sha384(&[&[0u8; 48], &[9u8; 48]]);
        let rtmr1 = (0..6).map(|q| rd(0x1310_0003_0000_0046 + q, 0).1);
        let bytes: Vec<u8> = rtmr1.flat_map(u64::to_le_bytes).collect();
        assert_eq!(bytes, extended);
        let tdx = kvm.flavour.as_any().downcast_ref::<TdxModule>().unwrap();
        let vm_rds_before = tdx.stats.by_leaf[leaf::VM_RD as usize].load(Ordering::Relaxed);
        // Version 1 walks every readable element in table order.
        let (st, _, mut id) = rd(FIELD_ID_NA, 1);
        assert_eq!(st, status::METADATA_FIRST_FIELD_ID_IN_CONTEXT);
        assert_eq!(id, 0x8010_0003_0000_0020, "TD_UUID");
        let mut walked = 0;
        while id != FIELD_ID_NA {
            let (st, _, next) = rd(id, 1);
            assert_eq!(st, 0, "{id:#x}");
            walked += 1;
            id = next;
        }
        assert_eq!(walked, readable);
        // Version 1 counts as VM.RD: the null ID and each step.
        let vm_rds = tdx.stats.by_leaf[leaf::VM_RD as usize].load(Ordering::Relaxed);
        assert_eq!(vm_rds - vm_rds_before, walked + 1);
        // Version 0 of a null ID is a malformed ID; versions above 1, and
        // any for another leaf, are TDX_OPERAND_INVALID.
        assert_eq!(rd(FIELD_ID_NA, 0).0, status::METADATA_FIELD_ID_INCORRECT);
        assert_eq!(
            rd(field::TD_CTLS, 2).0,
            operand_invalid(status::OPERAND_RAX)
        );
        let r = call(
            &kvm,
            &host,
            leaf::VM_WR | 1 << 16,
            &[(gpr::RDX, field::NOTIFY_ENABLES)],
        );
        assert_eq!(r.gpr[gpr::RAX], operand_invalid(status::OPERAND_RAX));
        // Not one element; RCX not 0.
        for bad in [1 << 24, 1 << 34, 1 << 38, 1 << 47, 1 << 55, 1 << 62] {
            let st = rd(field::TD_CTLS | bad, 0).0;
            assert_eq!(st, status::METADATA_FIELD_ID_INCORRECT, "{bad:#x}");
        }
        let r = call(
            &kvm,
            &host,
            leaf::VM_RD,
            &[(gpr::RDX, field::TD_CTLS), (gpr::RCX, 1)],
        );
        assert_eq!(r.gpr[gpr::RAX], operand_invalid(status::OPERAND_RCX));
        // Linux's IDs (element size code 0) name the same fields.
        assert_eq!(rd(field::NOTIFY_ENABLES, 0), (0, 0, field::NOTIFY_ENABLES));
        assert_eq!(rd(field::TOPOLOGY_ENUM_CONFIGURED, 0).1, 1);
        // The L2 VMs' Secure EPT roots: no L2 VM, no entry.
        assert_eq!(
            rd(0x2510_0003_0000_0000, 0).0,
            status::METADATA_FIELD_ID_INCORRECT
        );
        // CPUID_VALUES, by leaf and sub-leaf: leaf 1 (no sub-leaf) is not
        // the guest's; 0x1f.0 is faulting; 0x4.7 and reserved bits are no
        // field.
        let cpuid = |leaf: u64, sub: Option<u64>| {
            0x9410_0003_0000_0000
                | (leaf & 0x7f) << 9
                | (leaf >> 31) << 16
                | sub.map_or(1 << 8, |s| s << 1)
        };
        assert_eq!(rd(cpuid(1, None), 0).0, status::METADATA_FIELD_NOT_READABLE);
        assert_eq!(
            rd(cpuid(1, None) + 1, 0).0,
            status::METADATA_FIELD_NOT_READABLE
        );
        assert_eq!(
            wr(cpuid(1, None), 0, 1).0,
            status::METADATA_FIELD_NOT_WRITABLE
        );
        assert_eq!(
            wr(cpuid(0x8000_0008, None), 0, 1).0,
            status::METADATA_FIELD_NOT_WRITABLE
        );
        assert_eq!(
            wr(cpuid(0x1f, Some(0)), 0, 1).0,
            status::METADATA_FIELD_NOT_READABLE
        );
        assert_eq!(
            rd(cpuid(4, Some(7)), 0).0,
            status::METADATA_FIELD_ID_INCORRECT
        );
        assert_eq!(
            rd(cpuid(1, None) | 1 << 17, 0).0,
            status::METADATA_FIELD_ID_INCORRECT
        );
        // NOTIFY_ENABLES: bit 0 only, the old value in R8.
        let notify = field::NOTIFY_ENABLES;
        assert_eq!(wr(notify, 0, 2).0, status::METADATA_FIELD_NOT_WRITABLE);
        assert_eq!(wr(notify, 3, 3).0, status::METADATA_FIELD_VALUE_NOT_VALID);
        assert_eq!(wr(notify, 1, 3), (0, 0));
        assert_eq!(wr(notify, 0, 1), (0, 1));
        assert_eq!(wr(notify, 1, 1), (0, 0));
        assert_eq!(rd(notify, 0).1, 1);
    }

    /// GPAW and CONFIG_FLAGS follow a 52-bit GPAW.
    #[test]
    fn vm_rd_reports_a_52_bit_gpaw() {
        let config = crate::args::Config {
            vm_type: cvmem_model::VmType::Tdx,
            gpaw: cvmem_model::Gpaw::Bits52,
            ..crate::args::Config::default()
        };
        let kvm = crate::kvm::Kvm::new(&config, 1).unwrap();
        crate::hooks::fake::report_ram(&kvm);
        let host = FakeHost::new();
        let rd = |id: u64| call(&kvm, &host, leaf::VM_RD, &[(gpr::RDX, id)]).gpr[gpr::R8];
        assert_eq!(rd(0x1110_0000_0000_0003), 1, "GPAW");
        assert_eq!(rd(field::CONFIG_FLAGS), CONFIG_FLAGS_GPAW);
        assert_eq!(rd(0x1110_0002_0000_0002), 1, "MAX_VCPUS");
    }
}
