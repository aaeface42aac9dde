//! The `tdx` target: a TD, launched with its first 2 MiB of 4 accepted, whose
//! vCPUs issue TDCALL leaves and TDVMCALLs (MapGPA, GetQuote, MMIO, port
//! I/O, MSRs, CPUID, fatal errors, ...) with arbitrary registers, other
//! intercepted instructions, and accesses through either alias, while the
//! host converts, zaps and changes memslots through the control socket.
//! The first byte chooses the TD attributes (SEPT_VE_DISABLE or not) and
//! whether private memory may be mapped 2M.
//!
//! Besides the session's checks, every completed TDCALL returns a TDX
//! module status the ABI defines in RAX, and every TDVMCALL a GHCI status
//! in R10.

use cvmem_model::{PageLevel, TdAttributes, TdxStatus, VmType};

use super::input::Input;
use super::ops;
use super::session::{Session, RAM};
use crate::args::{AcceptPolicy, Config};
use crate::hooks::{gpr, Access, Insn, InsnAction, Regs};
use crate::tdx::{leaf, status, vmcall};

/// The shared bit of a TD with GPAW 48.
const SHARED: u64 = 1 << 47;
/// Operations taken from one input.
const MAX_OPS: usize = 48;

const LEAVES: &[u64] = &[
    leaf::VP_VMCALL,
    leaf::VP_INFO,
    leaf::MR_RTMR_EXTEND,
    leaf::VP_VEINFO_GET,
    leaf::MR_REPORT,
    leaf::MEM_PAGE_ACCEPT,
    leaf::VM_RD,
    leaf::VM_WR,
    leaf::SYS_RD,
    5,
    9,
    0x1_0006,
];

const SUBS: &[u64] = &[
    vmcall::GET_TD_VM_CALL_INFO,
    vmcall::MAP_GPA,
    vmcall::GET_QUOTE,
    vmcall::REPORT_FATAL_ERROR,
    vmcall::CPUID,
    vmcall::HLT,
    vmcall::IO,
    vmcall::MSR_READ,
    vmcall::MSR_WRITE,
    vmcall::EPT_VIOLATION,
    0x10004,
];

/// Runs one input; panics if an invariant breaks.
pub fn run(data: &[u8]) {
    let mut i = Input::new(data);
    let head = i.u8();
    let config = Config {
        vm_type: VmType::Tdx,
        accept: AcceptPolicy::Below(RAM / 2),
        td_attributes: TdAttributes(if head & 1 == 0 {
            TdAttributes::SEPT_VE_DISABLE
        } else {
            0
        }),
        private_max_level: (head & 2 != 0).then_some(PageLevel::Size2M),
        map_gpa_chunk: 2 << 20,
        slot_zap_all: false,
        ..Config::default()
    };
    let mut s = Session::new(config, &[(0, RAM)]);
    // The first access with paging on launches the TD.
    s.access(0, 0x1000, Access::Read, 0, false);
    s.check();
    for _ in 0..MAX_OPS {
        if i.is_empty() || s.stopped {
            break;
        }
        match i.u8() % 6 {
            0 => ops::access(&mut s, &mut i, SHARED),
            1 | 2 => tdcall(&mut s, &mut i),
            3 => tdvmcall(&mut s, &mut i),
            4 => ops::insn(
                &mut s,
                &mut i,
                &[
                    Insn::Tdcall,
                    Insn::Cpuid,
                    Insn::Rdmsr,
                    Insn::Wrmsr,
                    Insn::Vmcall,
                    Insn::Ioio,
                    Insn::Hlt,
                    Insn::CrWrite,
                    Insn::Xsetbv,
                    Insn::Vmgexit,
                    Insn::Pvalidate,
                ],
                SHARED,
            ),
            _ => ops::control(&mut s, &mut i),
        }
        s.check();
    }
    s.finish();
}

/// A TDCALL: the leaf mostly a known one, the operands (RCX, RDX, R8,
/// R9) mostly guest addresses with a level in their low bits, or small.
fn tdcall(s: &mut Session, i: &mut Input) {
    let vcpu = u32::from(i.u8());
    let mut regs = Regs::default();
    regs.gpr[gpr::RAX] = i.value(LEAVES);
    for r in [gpr::RCX, gpr::RDX, gpr::R8, gpr::R9] {
        regs.gpr[r] = match i.u8() % 3 {
            0 => ops::gpa(i, SHARED) | u64::from(i.u8() & 3),
            1 => i.value(&[0, 1, 2, 0x9010_0001_0000_0000, 0x9810_0003_0000_0000]),
            _ => i.u64(),
        };
    }
    regs.cpl = u32::from(i.u8() & 3);
    regs.insn_len = 4;
    checked_tdcall(s, vcpu, regs);
}

/// A TDCALL whose completion status must be one the ABI defines.
fn checked_tdcall(s: &mut Session, vcpu: u32, mut regs: Regs) {
    let before = regs;
    if s.insn(vcpu, Insn::Tdcall, &mut regs) != InsnAction::Done {
        return;
    }
    let rax = regs.gpr[gpr::RAX];
    let class = rax & 0xFFFF_FFFF_0000_0000;
    assert!(
        TdxStatus(rax).name() != "TDX_(unknown)"
            || [
                status::NO_VALID_VE_INFO,
                status::METADATA_FIELD_ID_INCORRECT,
                status::METADATA_FIELD_NOT_WRITABLE,
                status::METADATA_FIELD_NOT_READABLE,
                status::METADATA_FIELD_VALUE_NOT_VALID,
            ]
            .contains(&class),
        "TDCALL {:#x}: undocumented status {rax:#x}",
        before.gpr[gpr::RAX]
    );
    // A standard TDVMCALL (R10 0 on entry, exposed) answers in R10 with a
    // GHCI status; R10 non-zero is a KVM hypercall, which answers KVM's.
    let exposed = before.gpr[gpr::RCX] & (1 << gpr::R10) != 0;
    if before.gpr[gpr::RAX] == leaf::VP_VMCALL && rax == 0 && exposed && before.gpr[gpr::R10] == 0 {
        let r10 = regs.gpr[gpr::R10];
        assert!(
            [
                vmcall::SUCCESS,
                vmcall::RETRY,
                vmcall::INVALID_OPERAND,
                vmcall::ALIGN_ERROR,
                vmcall::SUBFUNC_UNSUPPORTED,
            ]
            .contains(&r10),
            "TDVMCALL {:#x}: undocumented status {r10:#x}",
            before.gpr[gpr::R11]
        );
    }
}

/// A TDVMCALL (TDG.VP.VMCALL): exposed registers, R10 (0: standard), the
/// sub-function in R11 and its arguments in R12-R15 from the input.
fn tdvmcall(s: &mut Session, i: &mut Input) {
    let vcpu = u32::from(i.u8());
    let mut regs = Regs::default();
    regs.gpr[gpr::RAX] = leaf::VP_VMCALL;
    regs.gpr[gpr::RCX] = i.value(&[0xfc00, 0xff00, 0xfffc, 0]);
    regs.gpr[gpr::R10] = i.value(&[0]);
    regs.gpr[gpr::R11] = i.value(SUBS);
    for r in gpr::R12..=gpr::R15 {
        regs.gpr[r] = match i.u8() % 3 {
            0 => ops::gpa(i, SHARED),
            1 => ops::size(i),
            _ => i.u64(),
        };
    }
    regs.insn_len = 4;
    checked_tdcall(s, vcpu, regs);
}
