//! Table-driven tests: one row per case of the AMD APM (vol. 2 §15.36, vol. 3
//! instruction pages) or of KVM's use of the RMP (arch/x86/kvm/svm/sev.c);
//! each row names its source.

use super::*;
use crate::memslot::MemslotError;

/// First covered frame: 2M aligned, four 2M regions.
const P0: u64 = 0x1000;
const NPAGES: u64 = 4 * PAGES_2M;
/// The guest frame `P0` is mapped at (2M aligned).
const G0: u64 = 0x200;
const ASID: Asid = Asid(5);
const OTHER: Asid = Asid(6);
const V0: SnpGuest = SnpGuest {
    asid: ASID,
    vmpl: Vmpl::Vmpl0,
};
const V1: SnpGuest = SnpGuest {
    asid: ASID,
    vmpl: Vmpl::Vmpl1,
};
const V2: SnpGuest = SnpGuest {
    asid: ASID,
    vmpl: Vmpl::Vmpl2,
};

fn pfn(i: u64) -> Pfn {
    Pfn::new(P0 + i)
}

fn gfn(i: u64) -> Gfn {
    Gfn::new(G0 + i)
}

fn rmp() -> Rmp {
    let r = Rmp::new();
    r.add_covered(PfnRange::from_start_len(Pfn::new(P0), NPAGES).unwrap())
        .unwrap();
    r
}

/// Page `i` assigned to `ASID` at `gfn(i)`, 4K.
fn a4(r: &Rmp, i: u64) {
    r.rmp_make_private(pfn(i), gfn(i), PageLevel::Size4K, ASID, false)
        .unwrap();
}

/// The 2M page starting at page `i` assigned at 2M.
fn a2(r: &Rmp, i: u64) {
    r.rmp_make_private(pfn(i), gfn(i), PageLevel::Size2M, ASID, false)
        .unwrap();
}

fn t4(i: u64) -> RmpInsnTarget {
    RmpInsnTarget {
        gfn: gfn(i),
        pfn: pfn(i),
        npt_level: PageLevel::Size4K,
    }
}

fn t2(i: u64) -> RmpInsnTarget {
    RmpInsnTarget {
        npt_level: PageLevel::Size2M,
        ..t4(i)
    }
}

fn val(r: &Rmp, t: RmpInsnTarget, rcx: u64) {
    r.pvalidate(V0, t, rcx, true).unwrap();
}

fn e(r: &Rmp, i: u64) -> RmpEntry {
    r.entry(pfn(i)).unwrap()
}

fn npf(check: RmpCheck, extra: u64) -> RmpFault {
    RmpFault::NestedPageFault {
        error_code: pferr::PRESENT | pferr::RMP | pferr::ENC | pferr::GUEST_FINAL | extra,
        check,
    }
}

type Prep = fn(&Rmp);

// ----- PVALIDATE ------------------------------------------------------------

struct PvRow {
    what: &'static str,
    source: &'static str,
    prep: Prep,
    guest: SnpGuest,
    target: RmpInsnTarget,
    rcx: u64,
    validate: bool,
    expect: Result<PvalidateOutcome, PvalidateError>,
    after: fn(&Rmp) -> bool,
}

#[test]
fn pvalidate_table() {
    use PvalidateError as E;
    use PvalidateOutcome as O;
    let any = |_: &Rmp| true;
    let rows = [
        PvRow {
            what: "4K validate of an assigned unvalidated page",
            source: "APM §15.36.6",
            prep: |r| a4(r, 0),
            guest: V0,
            target: t4(0),
            rcx: 0,
            validate: true,
            expect: Ok(O::Updated),
            after: |r| e(r, 0).validated && !e(r, 1).validated,
        },
        PvRow {
            what: "validate of a validated page: no update, CF=1",
            source: "APM vol. 3 PVALIDATE; Linux pvalidate() PVALIDATE_FAIL_NOUPDATE",
            prep: |r| {
                a4(r, 0);
                val(r, t4(0), 0)
            },
            guest: V0,
            target: t4(0),
            rcx: 0,
            validate: true,
            expect: Ok(O::NoUpdate),
            after: |r| e(r, 0).validated,
        },
        PvRow {
            what: "invalidate (RDX=0) of a validated page",
            source: "APM §15.36.6 (rescind validation)",
            prep: |r| {
                a4(r, 0);
                val(r, t4(0), 0)
            },
            guest: V0,
            target: t4(0),
            rcx: 0,
            validate: false,
            expect: Ok(O::Updated),
            after: |r| !e(r, 0).validated,
        },
        PvRow {
            what: "invalidate of an unvalidated page: no update",
            source: "APM vol. 3 PVALIDATE",
            prep: |r| a4(r, 0),
            guest: V0,
            target: t4(0),
            rcx: 0,
            validate: false,
            expect: Ok(O::NoUpdate),
            after: |r| !e(r, 0).validated,
        },
        PvRow {
            what: "2M validate of a 2M page validates its 512 entries",
            source: "APM §15.36.6, §15.36.11",
            prep: |r| a2(r, 0),
            guest: V0,
            target: t2(0),
            rcx: 1,
            validate: true,
            expect: Ok(O::Updated),
            after: |r| (0..PAGES_2M).all(|i| e(r, i).validated) && !e(r, PAGES_2M).validated,
        },
        PvRow {
            what: "not at VMPL0",
            source: "Linux 'x86/sev: Perform PVALIDATE using the SVSM when not at VMPL0'",
            prep: |r| a4(r, 0),
            guest: V1,
            target: t4(0),
            rcx: 0,
            validate: true,
            expect: Err(E::FailPermission),
            after: |r| !e(r, 0).validated,
        },
        PvRow {
            what: "RCX neither 0 nor 1",
            source: "APM vol. 3 PVALIDATE (FAIL_INPUT)",
            prep: |r| a4(r, 0),
            guest: V0,
            target: t4(0),
            rcx: 2,
            validate: true,
            expect: Err(E::FailInput),
            after: any,
        },
        PvRow {
            what: "2M on a GPA that is not 2M aligned",
            source: "APM vol. 3 PVALIDATE (FAIL_INPUT)",
            prep: |r| a2(r, 0),
            guest: V0,
            target: t2(1),
            rcx: 1,
            validate: true,
            expect: Err(E::FailInput),
            after: |r| !e(r, 0).validated,
        },
        PvRow {
            what: "2M request over 4K RMP entries",
            source: "APM Table 15-40 (FAIL_SIZEMISMATCH)",
            prep: |r| a4(r, 0),
            guest: V0,
            target: t2(0),
            rcx: 1,
            validate: true,
            expect: Err(E::FailSizeMismatch),
            after: |r| !e(r, 0).validated,
        },
        PvRow {
            what: "2M request over a 4K nested mapping",
            source: "APM §15.36.6",
            prep: |r| a2(r, 0),
            guest: V0,
            target: t4(0),
            rcx: 1,
            validate: true,
            expect: Err(E::FailSizeMismatch),
            after: |r| !e(r, 0).validated,
        },
        PvRow {
            what: "4K request over a 2M RMP entry: #NPF with SIZEM",
            source: "APM Table 15-40; KVM sev_handle_rmp_fault() case 1",
            prep: |r| a2(r, 0),
            guest: V0,
            target: t4(3),
            rcx: 0,
            validate: true,
            expect: Err(E::Fault(npf(RmpCheck::InstructionSize, pferr::SIZEM))),
            after: |r| !e(r, 3).validated,
        },
        PvRow {
            what: "4K request over a 2M nested mapping: #NPF with SIZEM",
            source: "APM §15.36.6",
            prep: |r| a4(r, 0),
            guest: V0,
            target: t2(0),
            rcx: 0,
            validate: true,
            expect: Err(E::Fault(npf(RmpCheck::InstructionSize, pferr::SIZEM))),
            after: |r| !e(r, 0).validated,
        },
        PvRow {
            what: "page not assigned",
            source: "APM §15.36.10 Guest-Owned",
            prep: |_| {},
            guest: V0,
            target: t4(0),
            rcx: 0,
            validate: true,
            expect: Err(E::Fault(npf(RmpCheck::GuestOwned, 0))),
            after: |r| !e(r, 0).validated,
        },
        PvRow {
            what: "page of another ASID",
            source: "APM §15.36.10 Guest-Owned",
            prep: |r| {
                r.rmp_make_private(pfn(0), gfn(0), PageLevel::Size4K, OTHER, false)
                    .unwrap()
            },
            guest: V0,
            target: t4(0),
            rcx: 0,
            validate: true,
            expect: Err(E::Fault(npf(RmpCheck::GuestOwned, 0))),
            after: |r| !e(r, 0).validated,
        },
        PvRow {
            what: "GPA differs from the entry's",
            source: "APM §15.36.10 Reverse-Map",
            prep: |r| {
                r.rmp_make_private(pfn(0), gfn(7), PageLevel::Size4K, ASID, false)
                    .unwrap()
            },
            guest: V0,
            target: t4(0),
            rcx: 0,
            validate: true,
            expect: Err(E::Fault(npf(RmpCheck::ReverseMap, 0))),
            after: |r| !e(r, 0).validated,
        },
        PvRow {
            what: "immutable entry",
            source: "APM §15.36.10 Mutable",
            prep: |r| {
                r.rmp_make_private(pfn(0), gfn(0), PageLevel::Size4K, ASID, true)
                    .unwrap()
            },
            guest: V0,
            target: t4(0),
            rcx: 0,
            validate: true,
            expect: Err(E::Fault(npf(RmpCheck::Mutable, 0))),
            after: |r| !e(r, 0).validated,
        },
        PvRow {
            what: "page not covered by the RMP",
            source: "APM §15.36.10 RMP-Covered",
            prep: |_| {},
            guest: V0,
            target: RmpInsnTarget {
                pfn: Pfn::new(P0 + NPAGES),
                ..t4(0)
            },
            rcx: 0,
            validate: true,
            expect: Err(E::Fault(npf(RmpCheck::Covered, 0))),
            after: any,
        },
    ];
    for row in rows {
        let r = rmp();
        (row.prep)(&r);
        let got = r.pvalidate(row.guest, row.target, row.rcx, row.validate);
        assert_eq!(got, row.expect, "{} ({})", row.what, row.source);
        assert!(
            (row.after)(&r),
            "state after: {} ({})",
            row.what,
            row.source
        );
    }
    assert_eq!(PvalidateError::FailInput.eax(), Some(1));
    assert_eq!(PvalidateError::FailPermission.eax(), Some(2));
    assert_eq!(PvalidateError::FailSizeMismatch.eax(), Some(6));
    assert!(PvalidateOutcome::NoUpdate.cf() && !PvalidateOutcome::Updated.cf());
}

// ----- RMPADJUST ------------------------------------------------------------

const RW: u64 = (VmplPerms::READ.0 | VmplPerms::WRITE.0) as u64;
const R: u64 = VmplPerms::READ.0 as u64;

fn rdx(target: u64, perms: u64, vmsa: bool) -> u64 {
    target | (perms << 8) | if vmsa { 1 << 16 } else { 0 }
}

fn validated4(r: &Rmp) {
    a4(r, 0);
    val(r, t4(0), 0);
}

struct AdjRow {
    what: &'static str,
    source: &'static str,
    prep: Prep,
    guest: SnpGuest,
    target: RmpInsnTarget,
    rcx: u64,
    rdx: u64,
    expect: Result<(), RmpadjustError>,
    after: fn(&Rmp) -> bool,
}

#[test]
fn rmpadjust_table() {
    use RmpadjustError as E;
    let unchanged = |r: &Rmp| e(r, 0).perms == [VmplPerms::NONE; 3] && !e(r, 0).vmsa;
    let rows = [
        AdjRow {
            what: "VMPL0 grants VMPL1 read+write",
            source: "APM §15.36.7",
            prep: validated4,
            guest: V0,
            target: t4(0),
            rcx: 0,
            rdx: rdx(1, RW, false),
            expect: Ok(()),
            after: |r| e(r, 0).perms_of(Vmpl::Vmpl1).bits() == RW as u8,
        },
        AdjRow {
            what: "VMPL0 revokes what it granted",
            source: "APM §15.36.7",
            prep: |r| {
                validated4(r);
                r.rmpadjust(V0, t4(0), 0, rdx(1, RW, false)).unwrap()
            },
            guest: V0,
            target: t4(0),
            rcx: 0,
            rdx: rdx(1, 0, false),
            expect: Ok(()),
            after: |r| e(r, 0).perms_of(Vmpl::Vmpl1) == VmplPerms::NONE,
        },
        AdjRow {
            what: "target VMPL equal to the current one (VMPL0 -> VMPL0)",
            source: "APM §15.36.7 (only numerically higher VMPLs)",
            prep: validated4,
            guest: V0,
            target: t4(0),
            rcx: 0,
            rdx: rdx(0, RW, false),
            expect: Err(E::FailPermission),
            after: unchanged,
        },
        AdjRow {
            what: "VMPL1 targets VMPL1",
            source: "APM §15.36.7",
            prep: validated4,
            guest: V1,
            target: t4(0),
            rcx: 0,
            rdx: rdx(1, 0, false),
            expect: Err(E::FailPermission),
            after: unchanged,
        },
        AdjRow {
            what: "VMPL1 grants VMPL2 write that VMPL1 lacks",
            source: "APM §15.36.7 (no permission beyond the current mask)",
            prep: |r| {
                validated4(r);
                r.rmpadjust(V0, t4(0), 0, rdx(1, R, false)).unwrap()
            },
            guest: V1,
            target: t4(0),
            rcx: 0,
            rdx: rdx(2, RW, false),
            expect: Err(E::FailPermission),
            after: |r| e(r, 0).perms_of(Vmpl::Vmpl2) == VmplPerms::NONE,
        },
        AdjRow {
            what: "VMPL1 grants VMPL2 read that VMPL1 has",
            source: "APM §15.36.7",
            prep: |r| {
                validated4(r);
                r.rmpadjust(V0, t4(0), 0, rdx(1, R, false)).unwrap()
            },
            guest: V1,
            target: t4(0),
            rcx: 0,
            rdx: rdx(2, R, false),
            expect: Ok(()),
            after: |r| e(r, 0).perms_of(Vmpl::Vmpl2) == VmplPerms::READ,
        },
        AdjRow {
            what: "VMSA bit set by VMPL0",
            source: "APM §15.36.12 (VMSA field set by the AMD-SP or RMPADJUST at VMPL0); Linux RMPADJUST_VMSA_PAGE_BIT",
            prep: validated4,
            guest: V0,
            target: t4(0),
            rcx: 0,
            rdx: rdx(1, 0, true),
            expect: Ok(()),
            after: |r| e(r, 0).vmsa,
        },
        AdjRow {
            what: "VMSA bit set from VMPL1",
            source: "APM §15.36.12",
            prep: |r| {
                validated4(r);
                r.rmpadjust(V0, t4(0), 0, rdx(1, RW, false)).unwrap()
            },
            guest: V1,
            target: t4(0),
            rcx: 0,
            rdx: rdx(2, 0, true),
            expect: Err(E::FailPermission),
            after: |r| !e(r, 0).vmsa,
        },
        AdjRow {
            what: "target VMPL 4 does not exist",
            source: "APM vol. 3 RMPADJUST (FAIL_INPUT)",
            prep: validated4,
            guest: V0,
            target: t4(0),
            rcx: 0,
            rdx: rdx(4, R, false),
            expect: Err(E::FailInput),
            after: unchanged,
        },
        AdjRow {
            what: "reserved RDX bit 17",
            source: "APM vol. 3 RMPADJUST (FAIL_INPUT)",
            prep: validated4,
            guest: V0,
            target: t4(0),
            rcx: 0,
            rdx: rdx(1, R, false) | 1 << 17,
            expect: Err(E::FailInput),
            after: unchanged,
        },
        AdjRow {
            what: "RCX neither 0 nor 1",
            source: "APM vol. 3 RMPADJUST (FAIL_INPUT)",
            prep: validated4,
            guest: V0,
            target: t4(0),
            rcx: 3,
            rdx: rdx(1, R, false),
            expect: Err(E::FailInput),
            after: unchanged,
        },
        AdjRow {
            what: "2M request over 4K entries",
            source: "APM Table 15-40 (FAIL_SIZEMISMATCH)",
            prep: validated4,
            guest: V0,
            target: t2(0),
            rcx: 1,
            rdx: rdx(1, R, false),
            expect: Err(E::FailSizeMismatch),
            after: unchanged,
        },
        AdjRow {
            what: "4K request over a 2M entry: #NPF with SIZEM",
            source: "APM Table 15-40; KVM sev_handle_rmp_fault() case 1",
            prep: |r| {
                a2(r, 0);
                val(r, t2(0), 1)
            },
            guest: V0,
            target: t4(0),
            rcx: 0,
            rdx: rdx(1, R, false),
            expect: Err(E::Fault(npf(RmpCheck::InstructionSize, pferr::SIZEM))),
            after: unchanged,
        },
        AdjRow {
            what: "2M request over a 2M entry adjusts all 512",
            source: "APM §15.36.7",
            prep: |r| {
                a2(r, 0);
                val(r, t2(0), 1)
            },
            guest: V0,
            target: t2(0),
            rcx: 1,
            rdx: rdx(3, R, false),
            expect: Ok(()),
            after: |r| (0..PAGES_2M).all(|i| e(r, i).perms_of(Vmpl::Vmpl3) == VmplPerms::READ),
        },
        AdjRow {
            what: "page not validated",
            source: "APM vol. 3 RMPADJUST (page must be validated)",
            prep: |r| a4(r, 0),
            guest: V0,
            target: t4(0),
            rcx: 0,
            rdx: rdx(1, R, false),
            expect: Err(E::Fault(RmpFault::PageNotValidated)),
            after: unchanged,
        },
        AdjRow {
            what: "page not assigned to the guest",
            source: "APM §15.36.10 Guest-Owned",
            prep: |_| {},
            guest: V0,
            target: t4(0),
            rcx: 0,
            rdx: rdx(1, R, false),
            expect: Err(E::Fault(npf(RmpCheck::GuestOwned, 0))),
            after: unchanged,
        },
    ];
    for row in rows {
        let r = rmp();
        (row.prep)(&r);
        let got = r.rmpadjust(row.guest, row.target, row.rcx, row.rdx);
        assert_eq!(got, row.expect, "{} ({})", row.what, row.source);
        assert!(
            (row.after)(&r),
            "state after: {} ({})",
            row.what,
            row.source
        );
    }
}

// ----- RMPUPDATE and PSMASH -------------------------------------------------

fn st(i: u64, size: RmpPageSize) -> RmpState {
    RmpState {
        gfn: gfn(i),
        assigned: true,
        page_size: size,
        immutable: false,
        asid: ASID,
    }
}

struct UpdRow {
    what: &'static str,
    source: &'static str,
    prep: Prep,
    pfn: Pfn,
    state: RmpState,
    expect: Result<(), RmpupdateError>,
    after: fn(&Rmp) -> bool,
}

#[test]
fn rmpupdate_table() {
    use RmpupdateError as E;
    let any = |_: &Rmp| true;
    let rows = [
        UpdRow {
            what: "assign 4K: guest-owned, unvalidated, VMPL1-3 no access",
            source: "APM §15.36.5, §15.36.6, §15.36.7",
            prep: |_| {},
            pfn: pfn(0),
            state: st(0, RmpPageSize::Size4K),
            expect: Ok(()),
            after: |r| {
                let x = e(r, 0);
                x.owner() == RmpOwner::Guest(ASID)
                    && x.gfn == gfn(0)
                    && !x.validated
                    && x.perms == [VmplPerms::NONE; 3]
                    && x.perms_of(Vmpl::Vmpl0) == VmplPerms::ALL
            },
        },
        UpdRow {
            what: "unassign a validated page with permissions: all cleared",
            source: "APM §15.36.6 (deassign makes the page unvalidated); Linux rmp_make_shared()",
            prep: |r| {
                validated4(r);
                r.rmpadjust(V0, t4(0), 0, rdx(1, RW, true)).unwrap()
            },
            pfn: pfn(0),
            state: RmpState::default(),
            expect: Ok(()),
            after: |r| e(r, 0) == RmpEntry::default(),
        },
        UpdRow {
            what: "remap a validated page to another GPA: unvalidated",
            source: "APM §15.36.6 (remap makes the page unvalidated)",
            prep: validated4,
            pfn: pfn(0),
            state: st(9, RmpPageSize::Size4K),
            expect: Ok(()),
            after: |r| e(r, 0).gfn == gfn(9) && !e(r, 0).validated,
        },
        UpdRow {
            what: "assign 2M: 512 entries, consecutive GPAs",
            source: "APM §15.36.5, §15.36.11",
            prep: |_| {},
            pfn: pfn(PAGES_2M),
            state: st(PAGES_2M, RmpPageSize::Size2M),
            expect: Ok(()),
            after: |r| {
                (0..PAGES_2M).all(|i| {
                    let x = e(r, PAGES_2M + i);
                    x.assigned && x.page_size == RmpPageSize::Size2M && x.gfn == gfn(PAGES_2M + i)
                }) && !e(r, 0).assigned
            },
        },
        UpdRow {
            what: "re-assign an assigned validated 2M page at 2M: unvalidated",
            source: "APM §15.36.6",
            prep: |r| {
                a2(r, 0);
                val(r, t2(0), 1)
            },
            pfn: pfn(0),
            state: st(0, RmpPageSize::Size2M),
            expect: Ok(()),
            after: |r| !e(r, 0).validated && !e(r, 511).validated,
        },
        UpdRow {
            what: "page not covered",
            source: "APM vol. 3 RMPUPDATE (FAIL_INPUT)",
            prep: |_| {},
            pfn: Pfn::new(P0 - 1),
            state: st(0, RmpPageSize::Size4K),
            expect: Err(E::FailInput),
            after: any,
        },
        UpdRow {
            what: "2M on a frame that is not 2M aligned",
            source: "APM vol. 3 RMPUPDATE (FAIL_INPUT)",
            prep: |_| {},
            pfn: pfn(1),
            state: st(0, RmpPageSize::Size2M),
            expect: Err(E::FailInput),
            after: |r| !e(r, 1).assigned,
        },
        UpdRow {
            what: "2M on a GPA that is not 2M aligned",
            source: "APM §15.36.5 (GPA and page size match the nested mapping)",
            prep: |_| {},
            pfn: pfn(0),
            state: st(1, RmpPageSize::Size2M),
            expect: Err(E::FailInput),
            after: |r| !e(r, 0).assigned,
        },
        UpdRow {
            what: "2M page not wholly covered",
            source: "APM §15.36.4 (entries exist only up to RMP_END)",
            prep: |_| {},
            pfn: pfn(NPAGES),
            state: st(NPAGES, RmpPageSize::Size2M),
            expect: Err(E::FailInput),
            after: any,
        },
        UpdRow {
            what: "unassign with an ASID",
            source: "APM Table 15-35 (hypervisor pages: Assigned=0, ASID=0)",
            prep: |r| a4(r, 0),
            pfn: pfn(0),
            state: RmpState {
                asid: ASID,
                ..RmpState::default()
            },
            expect: Err(E::FailInput),
            after: |r| e(r, 0).assigned,
        },
        UpdRow {
            what: "immutable entry",
            source: "APM §15.36.5 (immutable pages need the AMD-SP)",
            prep: |r| {
                r.rmp_make_private(pfn(0), gfn(0), PageLevel::Size4K, Asid::HYPERVISOR, true)
                    .unwrap()
            },
            pfn: pfn(0),
            state: RmpState::default(),
            expect: Err(E::FailPermission),
            after: |r| e(r, 0).owner() == RmpOwner::AmdSp,
        },
        UpdRow {
            what: "2M over an assigned 4K entry",
            source: "APM vol. 3 RMPUPDATE; Linux RMPUPDATE_FAIL_OVERLAP",
            prep: |r| a4(r, 7),
            pfn: pfn(0),
            state: st(0, RmpPageSize::Size2M),
            expect: Err(E::FailOverlap),
            after: |r| !e(r, 0).assigned && e(r, 7).page_size == RmpPageSize::Size4K,
        },
        UpdRow {
            what: "4K inside an assigned 2M page",
            source: "APM vol. 3 RMPUPDATE; Linux sev_gmem_invalidate() PSMASHes first",
            prep: |r| a2(r, 0),
            pfn: pfn(3),
            state: RmpState::default(),
            expect: Err(E::FailOverlap),
            after: |r| e(r, 3).assigned,
        },
    ];
    for row in rows {
        let r = rmp();
        (row.prep)(&r);
        let got = r.rmpupdate(row.pfn, row.state);
        assert_eq!(got, row.expect, "{} ({})", row.what, row.source);
        assert!(
            (row.after)(&r),
            "state after: {} ({})",
            row.what,
            row.source
        );
    }
    assert_eq!(Asid::new(Asid::MAX + 1), None);
    assert_eq!(Asid::new(1023).map(Asid::raw), Some(1023));
}

#[test]
fn psmash_table() {
    struct Row {
        what: &'static str,
        source: &'static str,
        prep: Prep,
        pfn: Pfn,
        expect: Result<(), PsmashError>,
    }
    let rows = [
        Row {
            what: "assigned 2M page",
            source: "APM §15.36.11",
            prep: |r| a2(r, 0),
            pfn: pfn(0),
            expect: Ok(()),
        },
        Row {
            what: "frame not 2M aligned",
            source: "APM vol. 3 PSMASH (FAIL_INPUT)",
            prep: |r| a2(r, 0),
            pfn: pfn(5),
            expect: Err(PsmashError::FailInput),
        },
        Row {
            what: "not covered",
            source: "APM vol. 3 PSMASH (FAIL_INPUT)",
            prep: |_| {},
            pfn: pfn(NPAGES),
            expect: Err(PsmashError::FailInput),
        },
        Row {
            what: "4K entries",
            source: "APM vol. 3 PSMASH (FAIL_BADADDR)",
            prep: |r| a4(r, 0),
            pfn: pfn(0),
            expect: Err(PsmashError::FailBadAddr),
        },
        Row {
            what: "unassigned",
            source: "APM vol. 3 PSMASH (FAIL_BADADDR)",
            prep: |_| {},
            pfn: pfn(0),
            expect: Err(PsmashError::FailBadAddr),
        },
    ];
    for row in rows {
        let r = rmp();
        (row.prep)(&r);
        assert_eq!(
            r.psmash(row.pfn),
            row.expect,
            "{} ({})",
            row.what,
            row.source
        );
    }
}

#[test]
fn psmash_keeps_validated_and_vmpl_perms() {
    // APM §15.36.11: "all other fields are copied from the 2M entry".
    let r = rmp();
    a2(&r, 0);
    val(&r, t2(0), 1);
    r.rmpadjust(V0, t2(0), 1, rdx(2, RW, false)).unwrap();
    let before: Vec<RmpEntry> = (0..PAGES_2M).map(|i| e(&r, i)).collect();
    r.psmash(pfn(0)).unwrap();
    for (i, b) in before.iter().enumerate() {
        let a = e(&r, i as u64);
        assert_eq!(a.page_size, RmpPageSize::Size4K);
        assert_eq!(
            RmpEntry {
                page_size: RmpPageSize::Size2M,
                ..a
            },
            *b
        );
    }
    // Now 4K PVALIDATE works without a fault, and 4K RMPUPDATE too.
    assert_eq!(
        r.pvalidate(V0, t4(3), 0, false),
        Ok(PvalidateOutcome::Updated)
    );
    r.rmp_make_shared(pfn(4), PageLevel::Size4K).unwrap();
    assert!(e(&r, 5).validated && !e(&r, 4).assigned);
}

// ----- access checks (APM Table 15-39) -------------------------------------

fn acc(i: u64, c_bit: bool, level: PageLevel, kind: RmpAccessKind) -> GuestAccess {
    GuestAccess {
        pfn: pfn(i),
        gfn: gfn(i),
        c_bit,
        npt_level: level,
        kind,
        user: false,
    }
}

const K4: PageLevel = PageLevel::Size4K;
const M2: PageLevel = PageLevel::Size2M;

struct AccRow {
    what: &'static str,
    source: &'static str,
    prep: Prep,
    guest: SnpGuest,
    access: GuestAccess,
    expect: Result<RmpAccess, RmpFault>,
}

#[test]
fn guest_access_table() {
    use RmpAccess::{Ciphertext, Plain};
    use RmpAccessKind::{Fetch, PageWalk, Read, Write};
    let fin = pferr::PRESENT | pferr::RMP | pferr::GUEST_FINAL;
    let private = |extra| fin | pferr::ENC | extra;
    let f = |check, error_code| Err(RmpFault::NestedPageFault { error_code, check });
    let rows = [
        AccRow {
            what: "private read of a validated page",
            source: "APM Table 15-39 (C=1: all checks pass)",
            prep: validated4,
            guest: V0,
            access: acc(0, true, K4, Read),
            expect: Ok(Plain),
        },
        AccRow {
            what: "private read of an unvalidated page",
            source: "APM §15.36.10 (#VC PAGE_NOT_VALIDATED, 0x404)",
            prep: |r| a4(r, 0),
            guest: V0,
            access: acc(0, true, K4, Read),
            expect: Err(RmpFault::PageNotValidated),
        },
        AccRow {
            what: "private write of a hypervisor-owned page",
            source: "APM Table 15-39 Guest-Owned",
            prep: |_| {},
            guest: V0,
            access: acc(0, true, K4, Write),
            expect: f(RmpCheck::GuestOwned, private(pferr::WRITE)),
        },
        AccRow {
            what: "private read of another guest's page",
            source: "APM Table 15-39 Guest-Owned",
            prep: |r| {
                r.rmp_make_private(pfn(0), gfn(0), K4, OTHER, false)
                    .unwrap()
            },
            guest: V0,
            access: acc(0, true, K4, Read),
            expect: f(RmpCheck::GuestOwned, private(0)),
        },
        AccRow {
            what: "private read through a GPA the entry does not record",
            source: "APM Table 15-39 Reverse-Map",
            prep: |r| r.rmp_make_private(pfn(0), gfn(1), K4, ASID, false).unwrap(),
            guest: V0,
            access: acc(0, true, K4, Read),
            expect: f(RmpCheck::ReverseMap, private(0)),
        },
        AccRow {
            what: "private read of an immutable page",
            source: "APM Table 15-39 Mutable",
            prep: |r| r.rmp_make_private(pfn(0), gfn(0), K4, ASID, true).unwrap(),
            guest: V0,
            access: acc(0, true, K4, Read),
            expect: f(RmpCheck::Mutable, private(0)),
        },
        AccRow {
            what: "2M nested leaf over 4K RMP entries",
            source: "APM Table 15-39 Page-Size",
            prep: validated4,
            guest: V0,
            access: acc(0, true, M2, Read),
            expect: f(RmpCheck::PageSize, private(0)),
        },
        AccRow {
            what: "4K nested leaf over a 2M RMP entry",
            source: "APM Table 15-39 Page-Size; KVM sev_handle_rmp_fault() case 2",
            prep: |r| {
                a2(r, 0);
                val(r, t2(0), 1)
            },
            guest: V0,
            access: acc(9, true, K4, Read),
            expect: f(RmpCheck::PageSize, private(0)),
        },
        AccRow {
            what: "2M nested leaf over a validated 2M entry",
            source: "APM Table 15-39",
            prep: |r| {
                a2(r, 0);
                val(r, t2(0), 1)
            },
            guest: V0,
            access: acc(9, true, M2, Write),
            expect: Ok(Plain),
        },
        AccRow {
            what: "Page-Size outranks Validated: #NPF, not #VC",
            source: "APM §15.36.10 (priority example)",
            prep: |r| a4(r, 0),
            guest: V0,
            access: acc(0, true, M2, Read),
            expect: f(RmpCheck::PageSize, private(0)),
        },
        AccRow {
            what: "private access to a page the RMP does not cover",
            source: "APM Table 15-39 RMP-Covered",
            prep: |_| {},
            guest: V0,
            access: GuestAccess {
                pfn: Pfn::new(P0 + NPAGES),
                ..acc(0, true, K4, Read)
            },
            expect: f(RmpCheck::Covered, private(0)),
        },
        AccRow {
            what: "fetch with C=0 is private (effective C-bit 1)",
            source: "APM §15.36.10 (fetches always C=1)",
            prep: |_| {},
            guest: V0,
            access: acc(0, false, K4, Fetch),
            expect: f(RmpCheck::GuestOwned, private(pferr::FETCH)),
        },
        AccRow {
            what: "page-table walk with C=0 is private",
            source: "APM §15.36.10 (page-table accesses always C=1)",
            prep: |_| {},
            guest: V0,
            access: acc(0, false, K4, PageWalk),
            expect: f(
                RmpCheck::GuestOwned,
                pferr::PRESENT | pferr::RMP | pferr::GUEST_PAGE | pferr::ENC,
            ),
        },
        AccRow {
            what: "shared (C=0) write to a guest-owned page",
            source: "APM Table 15-39 (C=0 write: Hypervisor-Owned)",
            prep: validated4,
            guest: V0,
            access: acc(0, false, K4, Write),
            expect: f(RmpCheck::HypervisorOwned, fin | pferr::WRITE),
        },
        AccRow {
            what: "shared write through a 2M leaf whose 2M page holds one assigned 4K page",
            source: "APM §15.36.10 Hypervisor-Owned (all 4K pages of a 2M access)",
            prep: |r| a4(r, 100),
            guest: V0,
            access: acc(3, false, M2, Write),
            expect: f(RmpCheck::HypervisorOwned, fin | pferr::WRITE),
        },
        AccRow {
            what: "shared write to a hypervisor-owned page",
            source: "APM Table 15-39",
            prep: |r| a4(r, 1),
            guest: V0,
            access: acc(0, false, K4, Write),
            expect: Ok(Plain),
        },
        AccRow {
            what: "shared read of a guest-owned page: not checked, ciphertext",
            source: "APM Table 15-39 (no row for C=0 reads)",
            prep: validated4,
            guest: V0,
            access: acc(0, false, K4, Read),
            expect: Ok(Ciphertext),
        },
        AccRow {
            what: "shared read of a hypervisor-owned page",
            source: "APM Table 15-39",
            prep: |_| {},
            guest: V0,
            access: acc(0, false, K4, Read),
            expect: Ok(Plain),
        },
        AccRow {
            what: "VMPL1 read without the read permission",
            source: "APM Table 15-36, §15.36.10 (VMPL bit 36)",
            prep: validated4,
            guest: V1,
            access: acc(0, true, K4, Read),
            expect: f(RmpCheck::Vmpl, private(pferr::VMPL)),
        },
        AccRow {
            what: "VMPL1 read with the read permission",
            source: "APM Table 15-36",
            prep: |r| {
                validated4(r);
                r.rmpadjust(V0, t4(0), 0, rdx(1, R, false)).unwrap()
            },
            guest: V1,
            access: acc(0, true, K4, Read),
            expect: Ok(Plain),
        },
        AccRow {
            what: "VMPL1 write with write but no read: illegal mask",
            source: "APM §15.36.7 (write without read is illegal)",
            prep: |r| {
                validated4(r);
                r.rmpadjust(V0, t4(0), 0, rdx(1, VmplPerms::WRITE.0 as u64, false))
                    .unwrap()
            },
            guest: V1,
            access: acc(0, true, K4, Write),
            expect: f(RmpCheck::Vmpl, private(pferr::WRITE | pferr::VMPL)),
        },
        AccRow {
            what: "VMPL2 CPL3 fetch with only Execute-Supervisor",
            source: "APM Table 15-36 (Execute-User for CPL 3)",
            prep: |r| {
                validated4(r);
                r.rmpadjust(
                    V0,
                    t4(0),
                    0,
                    rdx(2, VmplPerms::EXEC_SUPERVISOR.0 as u64, false),
                )
                .unwrap()
            },
            guest: V2,
            access: GuestAccess {
                user: true,
                ..acc(0, true, K4, Fetch)
            },
            expect: f(
                RmpCheck::Vmpl,
                private(pferr::FETCH | pferr::USER | pferr::VMPL),
            ),
        },
        AccRow {
            what: "VMPL2 CPL0 fetch with Execute-Supervisor",
            source: "APM Table 15-36",
            prep: |r| {
                validated4(r);
                r.rmpadjust(
                    V0,
                    t4(0),
                    0,
                    rdx(2, VmplPerms::EXEC_SUPERVISOR.0 as u64, false),
                )
                .unwrap()
            },
            guest: V2,
            access: acc(0, true, K4, Fetch),
            expect: Ok(Plain),
        },
        AccRow {
            what: "Validated outranks VMPL: #VC",
            source: "APM §15.36.10 (VMPL check has the lowest priority)",
            prep: |r| a4(r, 0),
            guest: V1,
            access: acc(0, true, K4, Read),
            expect: Err(RmpFault::PageNotValidated),
        },
    ];
    for row in rows {
        let r = rmp();
        (row.prep)(&r);
        let got = r.check_guest_access(row.guest, &row.access);
        assert_eq!(got, row.expect, "{} ({})", row.what, row.source);
    }
}

#[test]
fn host_and_device_table() {
    // APM Table 15-39: host writes need Hypervisor-Owned (#PF with the RMP
    // bit); host reads are not checked. Devices: docs/architecture.md,
    // "Devices never reach private memory".
    let r = rmp();
    a4(&r, 5);
    let fault = Err(HostRmpFault {
        error_code: pferr::PRESENT | pferr::WRITE | pferr::RMP,
        pfn: pfn(5),
    });
    assert_eq!(r.check_host_write(pfn(5), K4), fault);
    assert_eq!(r.check_host_write(pfn(6), K4), Ok(()));
    assert_eq!(r.check_host_write(pfn(0), M2), fault, "2M covers page 5");
    assert_eq!(r.check_host_write(pfn(PAGES_2M), M2), Ok(()));
    assert_eq!(r.check_host_write(Pfn::new(1), K4), Ok(()), "not covered");
    assert_eq!(
        r.check_device_access(pfn(5), false),
        DeviceAccess::Encrypted
    );
    assert_eq!(r.check_device_access(pfn(5), true), DeviceAccess::Blocked);
    assert_eq!(r.check_device_access(pfn(6), true), DeviceAccess::Allowed);
    assert_eq!(
        r.check_device_access(Pfn::new(1), true),
        DeviceAccess::Allowed
    );
    // AMD-SP pages are assigned too.
    r.rmp_make_private(pfn(7), Gfn::new(0), K4, Asid::HYPERVISOR, true)
        .unwrap();
    assert!(r.check_host_write(pfn(7), K4).is_err());
}

// ----- KVM's use (arch/x86/kvm/svm/sev.c) ----------------------------------

#[test]
fn gmem_prepare_matches_sev_gmem_prepare() {
    let r = rmp();
    // A whole shared 2M range and a 2M-capable folio: one 2M entry.
    assert_eq!(r.gmem_prepare(pfn(3), gfn(3), M2, ASID), Ok(M2));
    assert!((0..PAGES_2M).all(|i| e(&r, i).assigned && e(&r, i).gfn == gfn(i)));
    assert_eq!(r.gmem_max_mapping_level(pfn(3)), M2);
    // Already assigned: nothing changes, validation survives (a zap and
    // re-fault of the page needs no new PVALIDATE).
    val(&r, t2(0), 1);
    assert_eq!(r.gmem_prepare(pfn(3), gfn(3), M2, ASID), Ok(M2));
    assert!(e(&r, 3).validated);
    // A 2M range with an assigned 4K page: 4K entries.
    a4(&r, PAGES_2M + 1);
    assert_eq!(
        r.gmem_prepare(pfn(PAGES_2M + 7), gfn(PAGES_2M + 7), M2, ASID),
        Ok(K4)
    );
    assert_eq!(e(&r, PAGES_2M + 7).page_size, RmpPageSize::Size4K);
    assert!(!e(&r, PAGES_2M + 8).assigned);
    // max_level 4K: 4K even when 2M is free.
    assert_eq!(
        r.gmem_prepare(pfn(2 * PAGES_2M), gfn(2 * PAGES_2M), K4, ASID),
        Ok(K4)
    );
    assert_eq!(r.gmem_max_mapping_level(pfn(2 * PAGES_2M)), K4);
    assert_eq!(r.gmem_max_mapping_level(pfn(2 * PAGES_2M + 1)), K4);
    // gfn and pfn not congruent modulo 2M: 4K.
    assert_eq!(
        r.gmem_prepare(pfn(3 * PAGES_2M), gfn(3 * PAGES_2M + 1), M2, ASID),
        Ok(K4)
    );
    assert_eq!(
        r.gmem_prepare(Pfn::new(1), Gfn::new(1), M2, ASID),
        Err(RmpupdateError::FailInput)
    );
}

#[test]
fn gmem_invalidate_matches_sev_gmem_invalidate() {
    let r = rmp();
    a2(&r, 0);
    val(&r, t2(0), 1);
    a4(&r, PAGES_2M);
    // Converting one 4K page of the 2M page: PSMASH, then unassign it only.
    let one = PfnRange::from_start_len(pfn(10), 1).unwrap();
    assert_eq!(r.gmem_invalidate(one), 1);
    assert!(!e(&r, 10).assigned && !e(&r, 10).validated);
    assert!(e(&r, 11).assigned && e(&r, 11).validated);
    assert_eq!(e(&r, 11).page_size, RmpPageSize::Size4K);
    // Everything else.
    let all = PfnRange::from_start_len(pfn(0), NPAGES).unwrap();
    assert_eq!(r.gmem_invalidate(all), PAGES_2M - 1 + 1);
    assert!((0..NPAGES).all(|i| e(&r, i) == RmpEntry::default()));
    // A whole 2M entry goes back at once.
    a2(&r, PAGES_2M);
    assert_eq!(
        r.gmem_invalidate(PfnRange::from_start_len(pfn(PAGES_2M), PAGES_2M).unwrap()),
        PAGES_2M
    );
    assert!(!e(&r, PAGES_2M + 5).assigned);
}

#[test]
fn handle_rmp_fault_smashes_2m_pages_only() {
    let r = rmp();
    a2(&r, 0);
    a4(&r, PAGES_2M);
    assert_eq!(r.handle_rmp_fault(pfn(4)), RmpFaultFix::Smashed);
    assert_eq!(e(&r, 4).page_size, RmpPageSize::Size4K);
    assert_eq!(r.handle_rmp_fault(pfn(4)), RmpFaultFix::None);
    assert_eq!(r.handle_rmp_fault(pfn(PAGES_2M)), RmpFaultFix::None);
    assert_eq!(r.handle_rmp_fault(pfn(2 * PAGES_2M)), RmpFaultFix::None);
    // After the split, the 4K PVALIDATE that faulted succeeds.
    assert_eq!(
        r.pvalidate(V0, t4(4), 0, true),
        Ok(PvalidateOutcome::Updated)
    );
}

// ----- coverage and concurrency ---------------------------------------------

#[test]
fn coverage_add_remove() {
    let r = rmp();
    let range = PfnRange::from_start_len(Pfn::new(P0), NPAGES).unwrap();
    let overlap = PfnRange::from_start_len(Pfn::new(P0 + NPAGES - 1), 4).unwrap();
    assert_eq!(r.add_covered(overlap), Err(CoverError::Invalid));
    let below = PfnRange::from_start_len(Pfn::new(0x10), 0x10).unwrap();
    r.add_covered(below).unwrap();
    assert_eq!(r.covered(), vec![below, range]);
    assert!(r.is_covered(Pfn::new(0x1f)) && !r.is_covered(Pfn::new(0x20)));
    assert_eq!(
        r.add_covered(PfnRange::from_start_len(Pfn::new(0x100), 0).unwrap()),
        Err(CoverError::Invalid)
    );
    a4(&r, 3);
    assert_eq!(r.remove_covered(range), Err(CoverError::Assigned));
    r.rmp_make_shared(pfn(3), K4).unwrap();
    r.remove_covered(range).unwrap();
    assert_eq!(r.remove_covered(range), Err(CoverError::Invalid));
    assert_eq!(r.entry(pfn(3)), None);
    // Uncovered pages are hypervisor-owned for every check.
    assert_eq!(r.check_device_access(pfn(3), true), DeviceAccess::Allowed);
}

/// Resident memory of this process in KiB (Linux), for the cost test.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Covering 64 GiB (16M entries, 256 MiB of table) costs host memory only
/// for the entries written: the table is allocated zeroed, and zero is a
/// hypervisor-owned entry (issue 23: model memory in proportion to what
/// the guest touches).
#[test]
fn coverage_costs_only_the_entries_written() {
    let Some(before) = rss_kib() else {
        return;
    };
    let r = Rmp::new();
    let pages = 64 << (30 - 12);
    let range = PfnRange::from_start_len(Pfn::new(1 << 20), pages).unwrap();
    r.add_covered(range).unwrap();
    for i in [0, pages / 2, pages - 1] {
        let p = Pfn::new((1 << 20) + i);
        r.rmp_make_private(p, Gfn::new(i), K4, ASID, false).unwrap();
        assert!(r.entry(p).unwrap().assigned);
    }
    assert!(!r.entry(Pfn::new((1 << 20) + 1)).unwrap().assigned);
    let grown = rss_kib().unwrap().saturating_sub(before);
    // Other tests run beside this one in the process: the bound is loose,
    // but a table written in full would add 262,144 KiB.
    assert!(grown < 64 * 1024, "covering 64 GiB grew RSS by {grown} KiB");
}

/// A table the host cannot allocate is refused, not an abort.
#[test]
fn coverage_refuses_what_cannot_be_allocated() {
    assert_eq!(
        zeroed_table::<Slot>(1 << 62).err(),
        Some(CoverError::OutOfMemory)
    );
    assert_eq!(
        MemslotError::OutOfMemory.errno(),
        "ENOMEM",
        "KVM's errno for a failed allocation"
    );
}

#[test]
fn coverage_grows_over_covered_ranges_keeping_their_entries() {
    let r = Rmp::new();
    let range = |start: u64, len: u64| PfnRange::from_start_len(Pfn::new(P0 + start), len).unwrap();
    r.add_covered(range(0, 1)).unwrap();
    r.add_covered(range(2, 1)).unwrap();
    r.add_covered(range(0x100, 4)).unwrap();
    a4(&r, 0);
    val(&r, t4(0), 0);
    a4(&r, 2);
    // A range reaching into a covered range without containing it.
    assert_eq!(r.grow_covered(range(1, 0x100)), Err(CoverError::Invalid));
    assert_eq!(r.grow_covered(range(4, 0)), Err(CoverError::Invalid));
    r.grow_covered(range(0, 4)).unwrap();
    assert_eq!(r.covered(), vec![range(0, 4), range(0x100, 4)]);
    // The absorbed entries are kept, the new frames hypervisor-owned.
    assert!(e(&r, 0).assigned && e(&r, 0).validated);
    assert!(e(&r, 2).assigned && !e(&r, 2).validated);
    assert_eq!(e(&r, 1), RmpEntry::default());
    assert_eq!(e(&r, 3), RmpEntry::default());
    // The 2M region's count of assigned pages came along: the grown range
    // is still in use, and free again once both pages are shared.
    assert_eq!(r.remove_covered(range(0, 4)), Err(CoverError::Assigned));
    r.rmp_make_shared(pfn(0), K4).unwrap();
    r.rmp_make_shared(pfn(2), K4).unwrap();
    r.remove_covered(range(0, 4)).unwrap();
    assert_eq!(r.covered(), vec![range(0x100, 4)]);
}

#[test]
fn entries_never_tear() {
    // Writers replace whole entries; readers must see each entry as one of
    // the written states (gfn and VMPL1 mask written together).
    let r = Arc::new(rmp());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let r = r.clone();
            let stop = stop.clone();
            let reads = reads.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    reads.fetch_add(1, Ordering::Relaxed);
                    let x = r.entry(pfn(0)).unwrap();
                    assert_eq!(x.perms[0].bits() as u64, x.gfn.raw() & 0xf, "{x:?}");
                    assert_eq!(x.perms[2].bits() as u64, (x.gfn.raw() >> 4) & 0xf);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let segs = r.segments.load_full();
    let mut k = 0u64;
    while k < 200_000 || reads.load(Ordering::Relaxed) < 100_000 {
        k += 1;
        let _w = r.write_lock.lock();
        let x = RmpEntry {
            assigned: true,
            gfn: Gfn::new(k & 0xff),
            asid: ASID,
            perms: [
                VmplPerms((k & 0xf) as u8),
                VmplPerms::NONE,
                VmplPerms(((k >> 4) & 0xf) as u8),
            ],
            ..RmpEntry::default()
        };
        Rmp::write(&segs[0], pfn(0), &x);
    }
    stop.store(true, Ordering::Relaxed);
    let total: u64 = readers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(total >= 100_000);
}

#[test]
fn pack_round_trips() {
    let x = RmpEntry {
        assigned: true,
        page_size: RmpPageSize::Size2M,
        immutable: true,
        validated: true,
        vmsa: true,
        asid: Asid(Asid::MAX as u16),
        gfn: Gfn::new(RMP_MAX_GFN),
        perms: [VmplPerms::ALL, VmplPerms::READ, VmplPerms::EXEC_USER],
    };
    let (lo, hi) = pack(&x);
    assert_eq!(unpack(lo, hi), x);
    assert_eq!(hi & !HI_DATA_MASK, 0);
    let d = RmpEntry::default();
    let (lo, hi) = pack(&d);
    assert_eq!((lo, hi), (0, 0));
    assert_eq!(unpack(lo, hi), d);
}

#[test]
fn operands_checked_before_the_translation() {
    // APM vol. 3 PVALIDATE, RMPADJUST: RCX bit 0 is the size, any other bit
    // FAIL_INPUT; a 2M request needs a 2M-aligned RAX (FAIL_INPUT); bits
    // 11:0 of RAX are the offset in the page, ignored for either size.
    let rows: [(u64, u64, Option<RmpPageSize>, &str); 10] = [
        (0x4000_0000, 0, Some(RmpPageSize::Size4K), "4K, aligned"),
        (
            0x4000_0123,
            0,
            Some(RmpPageSize::Size4K),
            "4K, RAX 11:0 ignored",
        ),
        (
            0x4000_0fff,
            0,
            Some(RmpPageSize::Size4K),
            "4K, last byte of the page",
        ),
        (
            0x4000_1000,
            0,
            Some(RmpPageSize::Size4K),
            "4K in a 2M region",
        ),
        (0x4020_0000, 1, Some(RmpPageSize::Size2M), "2M, aligned"),
        (
            0x4020_0abc,
            1,
            Some(RmpPageSize::Size2M),
            "2M, RAX 11:0 ignored",
        ),
        (0x4020_1000, 1, None, "2M, RAX 4K but not 2M aligned"),
        (
            0x403f_f000,
            1,
            None,
            "2M, RAX in the last 4K of the 2M page",
        ),
        (0x4000_0000, 2, None, "RCX = 2"),
        (0x4000_0000, 1 << 32, None, "RCX reserved bit 32"),
    ];
    for (rax, rcx, want, what) in rows {
        assert_eq!(RmpPageSize::from_operands(rax, rcx), want, "{what}");
    }
}

/// QEMU's stage-2 cache keeps an answer that read the RMP only while the
/// generation stands still: every change of an entry moves it, by 2 (the
/// parity belongs to the MMU's seqlock it is shared with), and checks do not.
#[test]
fn every_rmp_change_moves_the_generation() {
    let g = Arc::new(AtomicU64::new(0));
    let r = Rmp::with_generation(Arc::clone(&g));
    let mut last = 0;
    let mut moved = |what: &str| {
        let now = g.load(Ordering::Acquire);
        assert!(
            now > last && (now - last) % 2 == 0,
            "{what}: {last} -> {now}"
        );
        last = now;
    };
    r.add_covered(PfnRange::from_start_len(Pfn::new(P0), NPAGES).unwrap())
        .unwrap();
    moved("add_covered");
    a4(&r, 0);
    moved("rmp_make_private");
    val(&r, t4(0), 0);
    moved("pvalidate");
    r.rmpadjust(V0, t4(0), 0, rdx(1, 0xf, false)).unwrap();
    moved("rmpadjust");
    let before = g.load(Ordering::Acquire);
    let _ = r.check_guest_access(V0, &acc(0, true, PageLevel::Size4K, RmpAccessKind::Read));
    let _ = r.entry(pfn(0));
    assert_eq!(g.load(Ordering::Acquire), before, "a check changed nothing");
    r.rmp_make_shared(pfn(0), PageLevel::Size4K).unwrap();
    moved("rmp_make_shared");
    r.remove_covered(PfnRange::from_start_len(Pfn::new(P0), NPAGES).unwrap())
        .unwrap();
    moved("remove_covered");
}

// ----- launch in bulk ---------------------------------------------------------

/// SNP_LAUNCH_UPDATE's RMP side one page at a time, as `launch_validated`
/// must behave: `rmp_make_private()` at 4K, then the firmware's validation.
fn launch_one_by_one(r: &Rmp, pfns: PfnRange, g: Gfn, asid: Asid) -> Result<(), RmpupdateError> {
    for (k, p) in (pfns.start.raw()..pfns.end.raw()).enumerate() {
        let gfn = Gfn::new(g.raw() + k as u64);
        r.rmp_make_private(Pfn::new(p), gfn, K4, asid, false)?;
        let guest = SnpGuest {
            asid,
            vmpl: Vmpl::Vmpl0,
        };
        let target = RmpInsnTarget {
            gfn,
            pfn: Pfn::new(p),
            npt_level: K4,
        };
        r.pvalidate(guest, target, 0, true).unwrap();
    }
    Ok(())
}

fn all_entries(r: &Rmp) -> Vec<RmpEntry> {
    (0..NPAGES).map(|i| r.entry(pfn(i)).unwrap()).collect()
}

/// Starting states: fresh; a 4K page of another guest in region 1; an
/// assigned 2M page in region 2 (FAIL_OVERLAP); an immutable page in
/// region 1 (FAIL_PERMISSION).
type Prestate = (&'static str, fn(&Rmp));

fn launch_prestates() -> Vec<Prestate> {
    vec![
        ("fresh", |_| {}),
        ("4K assigned elsewhere", |r| {
            r.rmp_make_private(pfn(PAGES_2M + 7), Gfn::new(3), K4, OTHER, false)
                .unwrap()
        }),
        ("2M assigned", |r| a2(r, 2 * PAGES_2M)),
        ("immutable", |r| {
            r.rmp_make_private(pfn(PAGES_2M + 9), gfn(PAGES_2M + 9), K4, ASID, true)
                .unwrap()
        }),
    ]
}

/// A launch in bulk leaves every entry, and returns the error, exactly as
/// the page-by-page updates do, whatever the range and the starting state;
/// and a later change of one page of a uniform region leaves its other
/// entries as they were.
#[test]
fn launch_in_bulk_is_the_updates_one_by_one() {
    let ranges = [
        (0, NPAGES),
        (3, NPAGES - 5),
        (PAGES_2M, 2 * PAGES_2M),
        (PAGES_2M - 1, PAGES_2M + 2),
        (10, 20),
    ];
    for (name, prestate) in launch_prestates() {
        for (start, end) in ranges {
            let pfns = PfnRange::from_start_len(pfn(start), end - start).unwrap();
            let (bulk, each) = (rmp(), rmp());
            prestate(&bulk);
            prestate(&each);
            let got = bulk.launch_validated(pfns, gfn(start), ASID);
            let want = launch_one_by_one(&each, pfns, gfn(start), ASID);
            let case = format!("{name}, pages {start:#x}..{end:#x}");
            assert_eq!(got, want, "{case}");
            assert_eq!(all_entries(&bulk), all_entries(&each), "{case}");
            for i in [0, PAGES_2M, 2 * PAGES_2M, 3 * PAGES_2M] {
                assert_eq!(
                    bulk.segments.load()[0].assigned_2m[(i / PAGES_2M) as usize]
                        .load(Ordering::Relaxed),
                    each.segments.load()[0].assigned_2m[(i / PAGES_2M) as usize]
                        .load(Ordering::Relaxed),
                    "{case}: assigned count of region {i:#x}"
                );
            }
            // One page of region 1 changes in each way the guest or the
            // host can change it; its neighbours keep their entries.
            let p = PAGES_2M + 100;
            let target = t4(p);
            type Change = (&'static str, fn(&Rmp, RmpInsnTarget));
            let changes: [Change; 3] = [
                ("rescind", |r, t| {
                    let _ = r.pvalidate(V0, t, 0, false);
                }),
                ("rmpadjust", |r, t| {
                    let _ = r.rmpadjust(V0, t, 0, 1 | (0xf << 8));
                }),
                ("make shared", |r, t| {
                    let _ = r.rmp_make_shared(t.pfn, K4);
                }),
            ];
            for (what, change) in changes {
                change(&bulk, target);
                change(&each, target);
                assert_eq!(all_entries(&bulk), all_entries(&each), "{case}, {what}");
            }
        }
    }
}

/// A launched 2M region is uniform: its slots are not written (the launch
/// costs no memory per page) until one of its entries changes.
#[test]
fn launch_in_bulk_writes_no_entry_of_a_whole_region() {
    let r = rmp();
    let pfns = PfnRange::from_start_len(pfn(0), NPAGES).unwrap();
    r.launch_validated(pfns, gfn(0), ASID).unwrap();
    let seg = r.segments.load_full();
    let written = |s: &Segment| {
        (0..NPAGES)
            .filter(|&i| s.slot(pfn(i)).read() != (0, 0))
            .count()
    };
    assert_eq!(written(&seg[0]), 0);
    let e = r.entry(pfn(PAGES_2M + 5)).unwrap();
    assert!(e.assigned && e.validated && e.gfn == gfn(PAGES_2M + 5) && e.asid == ASID);
    r.pvalidate(V0, t4(PAGES_2M + 5), 0, false).unwrap();
    assert_eq!(
        written(&seg[0]),
        PAGES_2M as usize,
        "one region written out"
    );
}

/// Readers racing with the write-out of a uniform region see each entry
/// as it was: the write-out changes no entry.
#[test]
fn materializing_never_shows_a_reader_a_wrong_entry() {
    for _ in 0..200 {
        let r = Arc::new(rmp());
        let pfns = PfnRange::from_start_len(pfn(0), PAGES_2M).unwrap();
        r.launch_validated(pfns, gfn(0), ASID).unwrap();
        let reader = {
            let r = r.clone();
            std::thread::spawn(move || {
                for k in 0..2000u64 {
                    let i = (k * 37) % PAGES_2M;
                    if i == 1 {
                        continue;
                    }
                    let e = r.entry(pfn(i)).unwrap();
                    assert!(e.assigned && e.validated && e.gfn == gfn(i), "{i}: {e:?}");
                }
            })
        };
        r.pvalidate(V0, t4(1), 0, false).unwrap();
        reader.join().unwrap();
    }
}

/// A 2M region is alike when every entry is hypervisor-owned, or when it
/// was launched whole; pages assigned one by one, or a launched region
/// one of whose entries changed, are not (see `Rmp::region_alike`).
#[test]
fn region_alike_takes_launched_and_unassigned_regions() {
    let r = rmp();
    // P0 is 2M-aligned: the first region is pages 0..512.
    assert_eq!(P0 % 512, 0);
    assert!(r.region_alike(pfn(7)), "all hypervisor-owned");
    for i in 0..512 {
        a4(&r, i);
        val(&r, t4(i), 0);
    }
    assert!(!r.region_alike(pfn(0)), "assigned page by page");
    for i in 0..512 {
        r.rmpupdate(pfn(i), RmpState::default()).unwrap();
    }
    assert!(r.region_alike(pfn(3)), "all returned to the hypervisor");
    // The second region, launched as a whole: uniform, alike.
    r.launch_validated(
        PfnRange::from_start_len(pfn(512), 512).unwrap(),
        gfn(512),
        ASID,
    )
    .unwrap();
    assert!(r.region_alike(pfn(700)));
    // Other VMPL1 permissions on one page (RMPADJUST) break it.
    r.rmpadjust(V0, t4(600), 0, rdx(1, 0x1, false)).unwrap();
    assert!(!r.region_alike(pfn(700)));
    // Beyond what is covered: hypervisor-owned.
    assert!(r.region_alike(Pfn::new(P0 + NPAGES + 5000)));
}
