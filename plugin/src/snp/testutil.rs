//! Helpers for the SNP unit tests: a launched guest, its page tables and
//! its GHCB.

use super::*;
use crate::args::AcceptPolicy;
use crate::hooks::{gpr, Insn, InsnAction, Regs};
use crate::kvm::Kvm;
use crate::snp::ghcb::off;
use cvmem_model::BackingAddr;

use crate::args::Config;
use crate::hooks::fake::{report_ram, FakeHost, MEM};
use cvmem_model::VmType;
pub(crate) const C_BIT: u64 = 1 << 51;
/// An SNP guest with 16 MiB of RAM, launched, RAM below `accept_below`
/// validated.
pub(crate) fn guest(accept_below: u64) -> Kvm {
    guest_with_ram(accept_below, MEM)
}

/// [`guest`] with only the first `ram` bytes of the fake's memory
/// reported as RAM (its guest_memfd slot); the rest is QEMU memory no
/// slot maps yet.
pub(crate) fn guest_with_ram(accept_below: u64, ram: u64) -> Kvm {
    let config = Config {
        vm_type: VmType::Snp,
        accept: AcceptPolicy::Below(accept_below),
        map_gpa_chunk: 64 << 10,
        ..Config::default()
    };
    let kvm = Kvm::new(&config, 2).unwrap();
    if ram == MEM {
        report_ram(&kvm);
    } else {
        let section = crate::memslots::RamSection {
            addr: BackingAddr::new(0),
            size: ram,
            readonly: false,
            name: "ram".into(),
        };
        kvm.memslot(crate::memslots::MemslotOp::Add, &section)
            .unwrap();
    }
    let mut e = Effects::NONE;
    kvm.flavour_as::<SnpFirmware>()
        .ensure_launched(&kvm.vmm, &mut e);
    let rest: Vec<_> = (accept_below < ram)
        .then_some((BackingAddr::new(accept_below), ram - accept_below))
        .into_iter()
        .collect();
    assert_eq!(e.clear, rest);
    kvm
}
pub(crate) use crate::hooks::fake::access;
/// Long-mode page tables at 0x10000 mapping 0x4000_0000 (4K) to
/// `target` and 0x4020_0000 (2M) to 2 MiB, entries carrying the C-bit.
pub(crate) fn tables(host: &FakeHost, target: u64) -> Regs {
    let put = |at: u64, v: u64| {
        host.mem.borrow_mut()[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes())
    };
    put(0x10000, 0x11000 | C_BIT | 3); // PML4[0]
    put(0x11000 + 8, 0x12000 | C_BIT | 3); // PDPT[1]: 1G..2G
    put(0x12000, 0x13000 | C_BIT | 3); // PD[0]
    put(0x12000 + 8, 0x20_0000 | C_BIT | 0x83); // PD[1]: 2M page
    put(0x13000, target | 3); // PT[0]
    Regs {
        cr0: (1 << 31) | 1,
        cr3: 0x10000 | C_BIT,
        cr4: 1 << 5,
        efer: (1 << 10) | (1 << 8),
        ..Regs::default()
    }
}
pub(crate) fn pvalidate(
    kvm: &Kvm,
    host: &FakeHost,
    regs: &mut Regs,
    la: u64,
    rcx: u64,
    rdx: u64,
) -> InsnAction {
    regs.gpr[gpr::RAX] = la;
    regs.gpr[gpr::RCX] = rcx;
    regs.gpr[gpr::RDX] = rdx;
    let _snp = kvm.flavour_as::<SnpFirmware>();
    kvm.insn(0, Insn::Pvalidate, regs, host).0
}
/// Writes the GHCB MSR of vCPU 0 and runs VMGEXIT; returns the MSR.
pub(crate) fn msr_call(kvm: &Kvm, host: &FakeHost, value: u64) -> u64 {
    let snp = kvm.flavour_as::<SnpFirmware>();
    let mut regs = Regs::default();
    regs.gpr[gpr::RCX] = u64::from(msr::GHCB);
    regs.gpr[gpr::RAX] = value & 0xffff_ffff;
    regs.gpr[gpr::RDX] = value >> 32;
    kvm.insn(0, Insn::Wrmsr, &mut regs, host);
    let (_, e) = kvm.insn(0, Insn::Vmgexit, &mut regs, host);
    for (at, len) in e.clear {
        let at = at.raw();
        host.mem.borrow_mut()[at as usize..(at + len) as usize].fill(0);
    }
    snp.rdmsr(0, msr::GHCB, host).unwrap()
}
pub(crate) const GHCB: u64 = 0x40_0000;
/// Makes the page at GHCB shared and registered for vCPU 0.
pub(crate) fn ghcb_setup(kvm: &Kvm, host: &FakeHost) {
    assert_eq!(msr_call(kvm, host, (2 << 52) | GHCB | 0x014), 0x015);
    assert_eq!(msr_call(kvm, host, GHCB | 0x012), GHCB | 0x013);
}
pub(crate) fn put(host: &FakeHost, at: u64, v: u64) {
    host.mem.borrow_mut()[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes());
}
pub(crate) fn get(host: &FakeHost, at: u64) -> u64 {
    u64::from_le_bytes(
        host.mem.borrow()[at as usize..at as usize + 8]
            .try_into()
            .unwrap(),
    )
}
/// Fills the GHCB with `fields` (offset, value), all marked valid, and
/// runs VMGEXIT with the GHCB MSR at the page.
pub(crate) fn ghcb_call(kvm: &Kvm, host: &FakeHost, fields: &[(usize, u64)]) {
    host.mem.borrow_mut()[GHCB as usize..(GHCB + 0x800) as usize].fill(0);
    for &(o, v) in fields {
        put(host, GHCB + o as u64, v);
        let bit = o / 8;
        host.mem.borrow_mut()[GHCB as usize + off::VALID_BITMAP + bit / 8] |= 1 << (bit % 8);
    }
    assert_eq!(msr_call(kvm, host, GHCB), GHCB);
}
pub(crate) fn info(host: &FakeHost) -> (u64, u64) {
    (
        get(host, GHCB + off::EXIT_INFO_1 as u64),
        get(host, GHCB + off::EXIT_INFO_2 as u64),
    )
}

/// An AMD CPU model with a few leaves, for the machine-ready step.
pub(crate) struct Amd;

impl crate::machine::CpuModel for Amd {
    fn cpuid(&self, leaf: u32, _: u32) -> [u32; 4] {
        match leaf {
            0 => [1, 0x6874_7541, 0x444d_4163, 0x6974_6e65],
            1 => [0x00a0_0f11, 0x800, 0, 0x078b_fbff],
            0x8000_0000 => [0x8000_0008, 0, 0, 0],
            0x8000_0008 => [0x3034, 0, 0, 0],
            _ => [0; 4],
        }
    }
}
