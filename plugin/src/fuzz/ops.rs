//! Operations every binary harness shares: guest accesses, host requests
//! through the control socket and instructions with arbitrary registers,
//! read from the input.

use super::input::Input;
use super::session::{Session, RAM};
use crate::hooks::{Access, Insn, Regs};

/// Frames of guest RAM.
const FRAMES: u64 = RAM >> 12;

/// A guest-physical address: mostly a page of guest memory (a byte
/// offset into it, `alias` ORed in when the next bit says so), else any
/// 64-bit value.
pub fn gpa(i: &mut Input, alias: u64) -> u64 {
    match i.u8() % 4 {
        0 => i.u64(),
        mode => {
            let page = u64::from(i.u16()) % (FRAMES + 16);
            let off = if mode == 3 {
                u64::from(i.u16()) & 0xfff
            } else {
                0
            };
            let alias = if i.u8() & 1 == 1 { alias } else { 0 };
            (page << 12) | off | alias
        }
    }
}

/// A size: mostly pages (4K, 2M or a count of 4K pages), else any value.
pub fn size(i: &mut Input) -> u64 {
    match i.u8() % 4 {
        0 => i.u64(),
        1 => 2 << 20,
        _ => (u64::from(i.u8()) + 1) << 12,
    }
}

/// A guest access: vCPU, address, kind, CPL, page walk or not.
pub fn access(s: &mut Session, i: &mut Input, alias: u64) {
    let vcpu = u32::from(i.u8());
    let gpa = gpa(i, alias);
    let bits = i.u8();
    let access = [Access::Read, Access::Write, Access::Fetch][usize::from(bits & 3) % 3];
    s.access(vcpu, gpa, access, (bits >> 2) & 3, bits & 0x10 != 0);
}

/// A host request as the control socket takes it, its numbers from the
/// input.
pub fn control(s: &mut Session, i: &mut Input) {
    let line = match i.u8() % 10 {
        0 => format!(
            r#"{{"cmd":"set-attributes","gpa":{},"size":{},"attributes":{}}}"#,
            gpa(i, 0),
            size(i),
            i.pick(&[0, 8, 8, 0x10])
        ),
        1 => format!(
            r#"{{"cmd":"zap","gpa":{},"size":{},"roots":"{}","flush":{}}}"#,
            gpa(i, 0),
            size(i),
            i.pick(&["all", "shared", "private"]),
            i.u8() & 1 == 0
        ),
        2 => format!(r#"{{"cmd":"zap-all","flush":{}}}"#, i.u8() & 1 == 0),
        3 => format!(
            r#"{{"cmd":"flush","kind":"{}","vcpu":{}}}"#,
            i.pick(&["current", "all"]),
            i.u8() % 3
        ),
        4 => format!(r#"{{"cmd":"delete-memslot","slot":{}}}"#, i.u8() % 4),
        5 => format!(
            r#"{{"cmd":"create-memslot","slot":{},"gpa":{},"size":{},"flags":{},"backing":{}}}"#,
            i.u8() % 4,
            gpa(i, 0),
            size(i),
            i.pick(&[0, 1, 2, 4, 5]),
            gpa(i, 0)
        ),
        6 => format!(
            r#"{{"cmd":"move-memslot","slot":{},"gpa":{}}}"#,
            i.u8() % 4,
            gpa(i, 0)
        ),
        7 => format!(r#"{{"cmd":"set-zap-quirk","enabled":{}}}"#, i.u8() & 1 == 0),
        8 => format!(
            r#"{{"cmd":"write","gpa":{},"value":{}}}"#,
            gpa(i, 0) | (u64::from(i.u8()) & 7),
            i.u64()
        ),
        _ => format!(
            r#"{{"cmd":"set-memslot-flags","slot":{},"flags":{}}}"#,
            i.u8() % 4,
            i.pick(&[0, 1, 2, 4])
        ),
    };
    s.control(&line);
}

/// Registers with every general-purpose register from the input (mostly
/// small or address-like values) and a CPL.
pub fn regs(i: &mut Input, alias: u64) -> Regs {
    let mut r = Regs::default();
    for g in &mut r.gpr {
        *g = match i.u8() % 4 {
            0 => 0,
            1 => u64::from(i.u8()),
            2 => gpa(i, alias),
            _ => i.u64(),
        };
    }
    r.cpl = u32::from(i.u8() & 3);
    r.insn_len = 3;
    r
}

/// An instruction among `kinds` with registers from the input.
pub fn insn(s: &mut Session, i: &mut Input, kinds: &[Insn], alias: u64) {
    let vcpu = u32::from(i.u8());
    let insn = i.pick(kinds);
    let mut r = regs(i, alias);
    s.insn(vcpu, insn, &mut r);
}
