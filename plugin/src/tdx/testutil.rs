//! Helpers for the TDX unit tests: a launched TD and its calls.

use super::*;
use crate::args::AcceptPolicy;
use crate::hooks::{gpr, Host, InsnAction, Regs};
use crate::kvm::Kvm;
use cvmem_model::BackingAddr;

use crate::args::Config;
use crate::hooks::fake::{report_ram, FakeHost};
use cvmem_model::{TdAttributes, VmType};
pub(crate) const SHARED: u64 = 1 << 47;
/// A launched TD with 16 MiB of RAM, private memory accepted below
/// `accept_below`.
pub(crate) fn td(accept_below: u64, attributes: u64) -> Kvm {
    let config = Config {
        vm_type: VmType::Tdx,
        accept: AcceptPolicy::Below(accept_below),
        td_attributes: TdAttributes(attributes),
        map_gpa_chunk: 2 << 20,
        ..Config::default()
    };
    let kvm = Kvm::new(&config, 2).unwrap();
    report_ram(&kvm);
    kvm
}
pub(crate) use crate::hooks::fake::access;
pub(crate) fn tdcall(kvm: &Kvm, host: &FakeHost, regs: &mut Regs) -> InsnAction {
    let (action, effects) = kvm.insn(0, Insn::Tdcall, regs, host);
    for (at, len) in effects.clear {
        host.phys_write(at, &vec![0; len as usize]);
    }
    action
}
pub(crate) fn call(kvm: &Kvm, host: &FakeHost, leaf: u64, args: &[(usize, u64)]) -> Regs {
    let mut regs = Regs::default();
    regs.gpr[gpr::RAX] = leaf;
    for &(r, v) in args {
        regs.gpr[r] = v;
    }
    assert_eq!(tdcall(kvm, host, &mut regs), InsnAction::Done);
    regs
}
/// A TDVMCALL exposing R10-R15; returns the registers after.
pub(crate) fn vmcall(kvm: &Kvm, host: &FakeHost, sub: u64, args: &[u64]) -> Regs {
    let (r, action) = vmcall_action(kvm, host, 0xfc00, sub, args);
    assert_eq!(action, InsnAction::Done);
    r
}
/// A TDVMCALL exposing the registers of `mask`; the registers after
/// and the callback's answer.
pub(crate) fn vmcall_action(
    kvm: &Kvm,
    host: &FakeHost,
    mask: u64,
    sub: u64,
    args: &[u64],
) -> (Regs, InsnAction) {
    let mut regs = Regs::default();
    regs.gpr[gpr::RAX] = leaf::VP_VMCALL;
    regs.gpr[gpr::RCX] = mask;
    regs.gpr[gpr::R11] = sub;
    for (i, &v) in args.iter().enumerate() {
        regs.gpr[gpr::R12 + i] = v;
    }
    let action = tdcall(kvm, host, &mut regs);
    assert_eq!(regs.gpr[gpr::RAX], 0);
    (regs, action)
}
/// An instruction at `rip` in long mode on an identity map of the first
/// 2 MiB (tables at 0x10000), with the bytes `code` there.
pub(crate) fn insn_regs(host: &FakeHost, rip: u64, code: &[u8], info: u64) -> Regs {
    let put = |at: u64, v: u64| {
        host.mem.borrow_mut()[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes())
    };
    put(0x10000, 0x11000 | 3); // PML4[0]
    put(0x11000, 0x12000 | 3); // PDPT[0]
    put(0x12000, 0x83); // PD[0]: 2M page at 0
    host.phys_write(BackingAddr::new(rip), code);
    Regs {
        cr0: (1 << 31) | 1,
        cr3: 0x10000,
        cr4: 1 << 5,
        efer: (1 << 10) | (1 << 8),
        rip,
        insn_len: code.len() as u32,
        info,
        ..Regs::default()
    }
}
