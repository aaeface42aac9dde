//! The `snp` target: an SNP guest, launched with its first 2 MiB
//! of 4 validated and a GHCB registered at 3 MiB (shared), whose vCPUs issue
//! what the guest controls: GHCB MSR protocol requests, GHCB pages (NAE
//! events, page-state changes, MMIO, AP creation, guest requests),
//! PVALIDATE and RMPADJUST with arbitrary operands through page tables the
//! input points anywhere, other intercepted instructions with arbitrary
//! registers, and accesses through either alias, while the host converts,
//! zaps and changes memslots through the control socket. Besides the
//! session's checks, PVALIDATE and RMPADJUST return only the codes the
//! APM defines.

use cvmem_model::VmType;

use super::input::Input;
use super::ops;
use super::session::{Session, RAM};
use crate::args::{AcceptPolicy, Config};
use crate::hooks::{gpr, Insn, InsnAction, Regs};
use crate::snp::{exit, msr, proto};

/// The C-bit: SNP's private alias.
const C_BIT: u64 = 1 << 51;
/// The GHCB the prologue registers (vCPU 0 and 1).
const GHCB: u64 = 0x30_0000;
/// The page tables PVALIDATE and RMPADJUST walk.
const TABLES: u64 = 0x1_0000;
/// The linear addresses those tables map: a 4K page (to the input's
/// target) and a 2M page.
const LA_4K: u64 = 0x4000_0000;
const LA_2M: u64 = 0x4020_0000;
/// Operations taken from one input.
const MAX_OPS: usize = 48;

/// GHCB field offsets (GHCB specification, table "GHCB layout").
mod off {
    pub const RAX: usize = 0x1f8;
    pub const RCX: usize = 0x308;
    pub const RDX: usize = 0x310;
    pub const RBX: usize = 0x318;
    pub const EXIT_CODE: usize = 0x390;
    pub const EXIT_INFO_1: usize = 0x398;
    pub const EXIT_INFO_2: usize = 0x3a0;
    pub const SCRATCH: usize = 0x3a8;
    pub const VALID_BITMAP: usize = 0x3f0;
    pub const SHARED_BUFFER: usize = 0x800;
    pub const USAGE: usize = 0xffc;
}

const EXIT_CODES: &[u64] = &[
    exit::CPUID,
    exit::IOIO,
    exit::MSR,
    exit::VMMCALL,
    exit::NPF,
    exit::MMIO_READ,
    exit::MMIO_WRITE,
    exit::NMI_COMPLETE,
    exit::AP_HLT_LOOP,
    exit::AP_JUMP_TABLE,
    exit::PSC,
    exit::GUEST_REQUEST,
    exit::EXT_GUEST_REQUEST,
    exit::AP_CREATION,
    exit::HV_FEATURES,
    exit::TERM_REQUEST,
    exit::UNSUPPORTED_EVENT,
];

const MSR_CODES: &[u64] = &[
    proto::SEV_INFO_REQ,
    proto::CPUID_REQ,
    proto::PREF_GPA_REQ,
    proto::REG_GPA_REQ,
    proto::PSC_REQ,
    proto::HV_FT_REQ,
    proto::TERM_REQ,
];

/// Runs one input; panics if an invariant breaks.
pub fn run(data: &[u8]) {
    let mut i = Input::new(data);
    let config = Config {
        vm_type: VmType::Snp,
        accept: AcceptPolicy::Below(RAM / 2),
        map_gpa_chunk: 64 << 10,
        slot_zap_all: false,
        ..Config::default()
    };
    let mut s = Session::new(config, &[(0, RAM)]);
    // The first access with paging on launches the guest.
    s.access(0, 0x1000 | C_BIT, crate::hooks::Access::Read, 0, false);
    tables(&s, 0);
    for vcpu in 0..2 {
        // Make the GHCB page shared, then register it.
        msr_call(&mut s, vcpu, (2 << 52) | GHCB | proto::PSC_REQ);
        msr_call(&mut s, vcpu, GHCB | proto::REG_GPA_REQ);
    }
    s.check();
    for _ in 0..MAX_OPS {
        if i.is_empty() || s.stopped {
            break;
        }
        match i.u8() % 9 {
            0 => ops::access(&mut s, &mut i, C_BIT),
            1 => {
                let vcpu = u32::from(i.u8());
                let code = i.pick(MSR_CODES);
                msr_call(&mut s, vcpu, code | (i.u64() << 12));
            }
            2 | 3 => ghcb_call(&mut s, &mut i),
            4 => psc(&mut s, &mut i),
            5 => rmp_insn(&mut s, &mut i, Insn::Pvalidate),
            6 => rmp_insn(&mut s, &mut i, Insn::Rmpadjust),
            7 => ops::insn(
                &mut s,
                &mut i,
                &[
                    Insn::Cpuid,
                    Insn::Rdmsr,
                    Insn::Wrmsr,
                    Insn::Vmmcall,
                    Insn::Vmcall,
                    Insn::Ioio,
                    Insn::Hlt,
                    Insn::Vmgexit,
                    Insn::Tdcall,
                ],
                C_BIT,
            ),
            _ => ops::control(&mut s, &mut i),
        }
        s.check();
    }
    s.finish();
}

/// Long-mode page tables at [`TABLES`]: [`LA_4K`] maps `target` (its
/// C-bit as given), [`LA_2M`] the 2M page at 2 MiB. The registers of a
/// vCPU using them.
fn tables(s: &Session, target: u64) -> Regs {
    let put = |at: u64, v: u64| {
        s.host.mem.borrow_mut()[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes())
    };
    put(TABLES, (TABLES + 0x1000) | C_BIT | 3); // PML4[0]
    put(TABLES + 0x1000 + 8, (TABLES + 0x2000) | C_BIT | 3); // PDPT[1]
    put(TABLES + 0x2000, (TABLES + 0x3000) | C_BIT | 3); // PD[0]
    put(TABLES + 0x2000 + 8, 0x20_0000 | C_BIT | 0x83); // PD[1]: 2M
    put(TABLES + 0x3000, target | 3); // PT[0]
    Regs {
        cr0: (1 << 31) | 1,
        cr3: TABLES | C_BIT,
        cr4: 1 << 5,
        efer: (1 << 10) | (1 << 8),
        insn_len: 4,
        ..Regs::default()
    }
}

/// WRMSR of the GHCB MSR, then VMGEXIT.
fn msr_call(s: &mut Session, vcpu: u32, value: u64) {
    let mut regs = Regs::default();
    regs.gpr[gpr::RCX] = u64::from(msr::GHCB);
    regs.gpr[gpr::RAX] = value & 0xffff_ffff;
    regs.gpr[gpr::RDX] = value >> 32;
    regs.insn_len = 2;
    s.insn(vcpu, Insn::Wrmsr, &mut regs);
    s.insn(vcpu, Insn::Vmgexit, &mut regs);
}

fn put(s: &Session, at: usize, v: u64) {
    s.host.mem.borrow_mut()[GHCB as usize + at..GHCB as usize + at + 8]
        .copy_from_slice(&v.to_le_bytes());
}

/// Marks the GHCB field at `at` valid.
fn valid(s: &Session, at: usize) {
    let bit = at / 8;
    s.host.mem.borrow_mut()[GHCB as usize + off::VALID_BITMAP + bit / 8] |= 1 << (bit % 8);
}

/// A GHCB page filled from the input (an NAE event), then VMGEXIT with
/// the GHCB MSR at it (or, rarely, anywhere).
fn ghcb_call(s: &mut Session, i: &mut Input) {
    let vcpu = u32::from(i.u8());
    s.host.mem.borrow_mut()[GHCB as usize..GHCB as usize + 0x1000].fill(0);
    let fields = [
        (off::EXIT_CODE, i.value(EXIT_CODES)),
        (
            off::EXIT_INFO_1,
            i.value(&[0, 1, 2, GHCB + 0x800, 0x80_0000 | C_BIT]),
        ),
        (
            off::EXIT_INFO_2,
            i.value(&[0, 1, 4, 8, 0x1000, GHCB + 0x900]),
        ),
        (
            off::SCRATCH,
            i.value(&[GHCB + off::SHARED_BUFFER as u64, GHCB + 0xff0, 0x80_0000]),
        ),
        (off::RAX, i.value(&[0, 1, 0x8000_0000, 0x8000_001f])),
        (off::RCX, i.value(&[0, 1, 0xc001_0130, 0x1b])),
        (off::RDX, i.value(&[0, 1])),
        (off::RBX, i.value(&[0, 1])),
    ];
    let mask = i.u8();
    for (n, &(at, v)) in fields.iter().enumerate() {
        put(s, at, v);
        if mask & (1 << n) == 0 {
            valid(s, at);
        }
    }
    let buf = i.slice(2032);
    s.host.mem.borrow_mut()[GHCB as usize + off::SHARED_BUFFER..][..buf.len()].copy_from_slice(buf);
    if i.u8() == 0xff {
        put(s, off::USAGE - 4, u64::from(i.u32()) << 32);
    }
    let at = if i.u8() == 0xfe { i.u64() } else { GHCB };
    msr_call(s, vcpu, at);
}

/// A page-state change through the GHCB: a descriptor of entries over
/// guest memory from the input.
fn psc(s: &mut Session, i: &mut Input) {
    let vcpu = u32::from(i.u8());
    s.host.mem.borrow_mut()[GHCB as usize..GHCB as usize + 0x1000].fill(0);
    let n = u64::from(i.u8() % 8) + 1;
    let cur = if i.u8() == 0xff {
        u64::from(i.u16())
    } else {
        0
    };
    let end = if i.u8() == 0xff {
        u64::from(i.u16())
    } else {
        n - 1
    };
    let buf = GHCB as usize + off::SHARED_BUFFER;
    let mut d = vec![0u8; 8 + 8 * n as usize];
    d[0..2].copy_from_slice(&(cur as u16).to_le_bytes());
    d[2..4].copy_from_slice(&(end as u16).to_le_bytes());
    for e in 0..n as usize {
        let gfn = u64::from(i.u16()) % ((RAM >> 12) + 4);
        let op = i.pick(&[proto::PSC_OP_PRIVATE, proto::PSC_OP_SHARED, 0, 3]);
        let huge = u64::from(i.u8() & 1);
        let cur_page = if i.u8() == 0xff {
            u64::from(i.u16()) & 0xfff
        } else {
            0
        };
        let entry = cur_page | (gfn << 12) | (op << 52) | (huge << 56);
        d[8 + 8 * e..16 + 8 * e].copy_from_slice(&entry.to_le_bytes());
    }
    s.host.mem.borrow_mut()[buf..buf + d.len()].copy_from_slice(&d);
    for (at, v) in [
        (off::EXIT_CODE, exit::PSC),
        (off::EXIT_INFO_1, 0),
        (off::EXIT_INFO_2, 0),
        (off::SCRATCH, GHCB + off::SHARED_BUFFER as u64),
    ] {
        put(s, at, v);
        valid(s, at);
    }
    msr_call(s, vcpu, GHCB);
}

/// PVALIDATE or RMPADJUST of the page the input points the 4K mapping at
/// (C-bit or not), through the 4K or the 2M mapping or any address, with
/// RCX and RDX from the input.
fn rmp_insn(s: &mut Session, i: &mut Input, insn: Insn) {
    let vcpu = u32::from(i.u8());
    let target = ops::gpa(i, C_BIT) & !0xfff;
    let mut regs = tables(s, target);
    regs.gpr[gpr::RAX] = match i.u8() % 4 {
        0 => LA_2M,
        1 => i.u64(),
        _ => LA_4K | (u64::from(i.u16()) & 0xfff),
    };
    regs.gpr[gpr::RCX] = i.value(&[0, 1, 0x101, 0x201, 0x301, 0x1_0001]);
    regs.gpr[gpr::RDX] = i.value(&[0, 1, 0x0f01, 0x1_0001, 0xf02]);
    regs.cpl = u32::from(i.u8() & 3);
    if s.insn(vcpu, insn, &mut regs) == InsnAction::Done {
        // APM vol. 3, PVALIDATE and RMPADJUST: SUCCESS, FAIL_INPUT,
        // FAIL_PERMISSION, FAIL_SIZEMISMATCH.
        let eax = regs.gpr[gpr::RAX];
        assert!(
            [0, 1, 2, 6].contains(&eax),
            "{insn:?}: undocumented return code {eax:#x}"
        );
    }
}
