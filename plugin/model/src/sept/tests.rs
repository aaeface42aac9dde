//! Table-driven cases of the TDX module's Secure-EPT rules.

use super::*;

const S: TdxStatus = TdxStatus::SUCCESS;
const G0: Gfn = Gfn::new(0x200); // a 2M-aligned region
const G2M: PageLevel = PageLevel::Size2M;
const G4K: PageLevel = PageLevel::Size4K;

fn g(n: u64) -> Gfn {
    Gfn::new(0x200 + n)
}

fn pfn(g: Gfn) -> Pfn {
    Pfn::new(0x10_0000 + g.raw())
}

/// A finalized TD of 2 vCPUs with a Secure-EPT page over `G0` and the 4K
/// pages 0 (PENDING) and 1 (MAPPED), and a PENDING 2M leaf at 0x400.
fn td() -> Sept {
    let mut s = Sept::new(Gpaw::Bits48, 2);
    assert_eq!(s.sept_add(G0), S);
    assert_eq!(s.page_add(g(1), pfn(g(1))), S);
    assert_eq!(s.finalize(), S);
    assert_eq!(s.page_aug(g(0), G4K, pfn(g(0))), S);
    assert_eq!(s.page_aug(Gfn::new(0x400), G2M, pfn(Gfn::new(0x400))), S);
    s
}

fn rcx(gfn: Gfn, level: u64) -> u64 {
    (gfn.raw() << 12) | level
}

#[test]
fn status_values_and_names() {
    for (s, v, name) in [
        (
            TdxStatus::OPERAND_INVALID,
            0xC000_0100_0000_0000u64,
            "TDX_OPERAND_INVALID",
        ),
        (
            TdxStatus::EPT_WALK_FAILED,
            0xC000_0B00_0000_0000,
            "TDX_EPT_WALK_FAILED",
        ),
        (
            TdxStatus::EPT_ENTRY_STATE_INCORRECT,
            0xC000_0B0D_0000_0000,
            "TDX_EPT_ENTRY_STATE_INCORRECT",
        ),
        (
            TdxStatus::PAGE_ALREADY_ACCEPTED,
            0x0000_0B0A_0000_0000,
            "TDX_PAGE_ALREADY_ACCEPTED",
        ),
        (
            TdxStatus::PAGE_SIZE_MISMATCH,
            0xC000_0B0B_0000_0000,
            "TDX_PAGE_SIZE_MISMATCH",
        ),
        (
            TdxStatus::TLB_TRACKING_NOT_DONE,
            0xC000_0B08_0000_0000,
            "TDX_TLB_TRACKING_NOT_DONE",
        ),
        (
            TdxStatus::GPA_RANGE_NOT_BLOCKED,
            0xC000_0B06_0000_0000,
            "TDX_GPA_RANGE_NOT_BLOCKED",
        ),
        (
            TdxStatus::GPA_RANGE_ALREADY_BLOCKED,
            0x0000_0B07_0000_0000,
            "TDX_GPA_RANGE_ALREADY_BLOCKED",
        ),
    ] {
        assert_eq!(s.0, v);
        assert_eq!(s.rcx().name(), name);
        assert_eq!(s.rcx().detail(), 1);
    }
    assert!(!TdxStatus::PAGE_ALREADY_ACCEPTED.is_error());
    assert!(TdxStatus::PAGE_SIZE_MISMATCH.is_error());
}

#[test]
fn host_operations_table() {
    type Op = fn(&mut Sept) -> TdxStatus;
    let cases: &[(&str, Op, TdxStatus)] = &[
        (
            "ADD after finalize",
            |s| s.page_add(g(5), pfn(g(5))),
            TdxStatus::OP_STATE_INCORRECT,
        ),
        ("AUG 4K", |s| s.page_aug(g(5), G4K, pfn(g(5))), S),
        (
            "AUG over PENDING",
            |s| s.page_aug(g(0), G4K, pfn(g(0))),
            TdxStatus::EPT_ENTRY_STATE_INCORRECT.rcx(),
        ),
        (
            "AUG over MAPPED",
            |s| s.page_aug(g(1), G4K, pfn(g(1))),
            TdxStatus::EPT_ENTRY_STATE_INCORRECT.rcx(),
        ),
        (
            "AUG 4K without SEPT page",
            |s| s.page_aug(Gfn::new(0x800), G4K, Pfn::new(1)),
            TdxStatus::EPT_WALK_FAILED.rcx(),
        ),
        (
            "AUG 4K under a 2M leaf",
            |s| s.page_aug(Gfn::new(0x401), G4K, Pfn::new(1)),
            TdxStatus::EPT_WALK_FAILED.rcx(),
        ),
        (
            "AUG 2M over SEPT page",
            |s| s.page_aug(G0, G2M, pfn(G0)),
            TdxStatus::EPT_ENTRY_STATE_INCORRECT.rcx(),
        ),
        (
            "AUG 2M misaligned",
            |s| s.page_aug(g(1), G2M, pfn(g(1))),
            TdxStatus::OPERAND_INVALID.rcx(),
        ),
        (
            "AUG 1G",
            |s| s.page_aug(Gfn::new(0), PageLevel::Size1G, Pfn::new(0)),
            TdxStatus::OPERAND_INVALID.rcx(),
        ),
        (
            "SEPT.ADD twice",
            |s| s.sept_add(G0),
            TdxStatus::EPT_ENTRY_STATE_INCORRECT.rcx(),
        ),
        ("BLOCK MAPPED", |s| s.range_block(g(1), G4K), S),
        ("BLOCK PENDING", |s| s.range_block(g(0), G4K), S),
        (
            "BLOCK FREE",
            |s| s.range_block(g(7), G4K),
            TdxStatus::EPT_ENTRY_STATE_INCORRECT.rcx(),
        ),
        (
            "BLOCK without SEPT page",
            |s| s.range_block(Gfn::new(0x800), G4K),
            TdxStatus::EPT_WALK_FAILED.rcx(),
        ),
        (
            "BLOCK twice",
            |s| {
                s.range_block(g(1), G4K);
                s.range_block(g(1), G4K)
            },
            TdxStatus::GPA_RANGE_ALREADY_BLOCKED.rcx(),
        ),
        (
            "REMOVE unblocked",
            |s| s.page_remove(g(1), G4K),
            TdxStatus::GPA_RANGE_NOT_BLOCKED.rcx(),
        ),
        (
            "REMOVE FREE",
            |s| s.page_remove(g(7), G4K),
            TdxStatus::EPT_ENTRY_STATE_INCORRECT.rcx(),
        ),
        (
            "REMOVE before TRACK",
            |s| {
                s.range_block(g(1), G4K);
                s.page_remove(g(1), G4K)
            },
            TdxStatus::TLB_TRACKING_NOT_DONE.rcx(),
        ),
        (
            "REMOVE after TRACK, vCPUs in old epoch",
            |s| {
                s.range_block(g(1), G4K);
                assert_eq!(s.track(), S);
                s.vcpu_flushed(0);
                s.page_remove(g(1), G4K)
            },
            TdxStatus::TLB_TRACKING_NOT_DONE.rcx(),
        ),
        (
            "REMOVE after TRACK and every vCPU flushed",
            |s| {
                s.range_block(g(1), G4K);
                assert_eq!(s.track(), S);
                s.vcpu_flushed(0);
                s.vcpu_flushed(1);
                s.page_remove(g(1), G4K)
            },
            S,
        ),
        (
            "REMOVE after TRACK and kick",
            |s| {
                s.range_block(g(0), G4K);
                s.track();
                s.kick_all_vcpus();
                s.page_remove(g(0), G4K)
            },
            S,
        ),
        (
            "TRACK twice without the vCPUs leaving",
            |s| {
                s.track();
                s.track()
            },
            TdxStatus::PREVIOUS_TLB_EPOCH_BUSY,
        ),
        (
            "UNBLOCK unblocked",
            |s| s.range_unblock(g(1), G4K),
            TdxStatus::GPA_RANGE_NOT_BLOCKED.rcx(),
        ),
        (
            "PROMOTE a leaf",
            |s| s.page_promote(Gfn::new(0x400)),
            TdxStatus::EPT_ENTRY_STATE_INCORRECT.rcx(),
        ),
        (
            "PROMOTE unblocked",
            |s| s.page_promote(G0),
            TdxStatus::GPA_RANGE_NOT_BLOCKED.rcx(),
        ),
        (
            "PROMOTE untracked",
            |s| {
                s.range_block(G0, G2M);
                s.page_promote(G0)
            },
            TdxStatus::TLB_TRACKING_NOT_DONE.rcx(),
        ),
        (
            "PROMOTE mixed",
            |s| {
                s.range_block(G0, G2M);
                s.track();
                s.kick_all_vcpus();
                s.page_promote(G0)
            },
            TdxStatus::EPT_INVALID_PROMOTE_CONDITIONS.rcx(),
        ),
        (
            "DEMOTE a SEPT page",
            |s| s.page_demote(G0),
            TdxStatus::EPT_ENTRY_STATE_INCORRECT.rcx(),
        ),
        (
            "DEMOTE unblocked",
            |s| s.page_demote(Gfn::new(0x400)),
            TdxStatus::GPA_RANGE_NOT_BLOCKED.rcx(),
        ),
        (
            "DEMOTE untracked",
            |s| {
                s.range_block(Gfn::new(0x400), G2M);
                s.page_demote(Gfn::new(0x400))
            },
            TdxStatus::TLB_TRACKING_NOT_DONE.rcx(),
        ),
    ];
    for (name, op, want) in cases {
        let mut s = td();
        assert_eq!(op(&mut s), *want, "{name}");
    }
}

#[test]
fn aug_before_finalize_and_remove_without_tracking() {
    let mut s = Sept::new(Gpaw::Bits48, 1);
    s.sept_add(G0);
    assert_eq!(
        s.page_aug(g(0), G4K, pfn(g(0))),
        TdxStatus::OP_STATE_INCORRECT
    );
    assert_eq!(s.page_add(g(0), pfn(g(0))), S);
    assert_eq!(s.state(g(0)), (SeptState::Mapped, G4K));
    // Before finalize nothing needs blocking or tracking.
    assert_eq!(s.page_remove(g(0), G4K), S);
    assert_eq!(s.state(g(0)).0, SeptState::Free);
    assert_eq!(s.finalize(), S);
    assert_eq!(s.finalize(), TdxStatus::OP_STATE_INCORRECT);
}

#[test]
fn block_states_and_unblock() {
    let mut s = td();
    assert_eq!(s.range_block(g(0), G4K), S);
    assert_eq!(s.range_block(g(1), G4K), S);
    assert_eq!(s.state(g(0)).0, SeptState::PendingBlocked);
    assert_eq!(s.state(g(1)).0, SeptState::Blocked);
    assert_eq!(s.access(g(1)), SeptAccess::Blocked);
    assert_eq!(
        s.range_unblock(g(1), G4K),
        TdxStatus::TLB_TRACKING_NOT_DONE.rcx()
    );
    s.track();
    s.kick_all_vcpus();
    assert_eq!(s.range_unblock(g(1), G4K), S);
    assert_eq!(s.access(g(1)), SeptAccess::Mapped);
    assert_eq!(s.pending_frames(), 513);
    assert_eq!(s.page_remove(g(0), G4K), S);
    assert_eq!(s.pending_frames(), 512);
    // The Secure-EPT page stays; AUG again is PENDING (re-accept needed).
    assert!(s.has_table(g(0)));
    assert_eq!(s.page_aug(g(0), G4K, pfn(g(0))), S);
    assert_eq!(s.access(g(0)), SeptAccess::Pending);
}

#[test]
fn accept_table() {
    let r2m = Gfn::new(0x400);
    let cases: &[(&str, u64, AcceptOutcome)] = &[
        (
            "4K PENDING",
            rcx(g(0), 0),
            AcceptOutcome::Accepted {
                range: GfnRange::one(g(0)),
            },
        ),
        (
            "4K MAPPED",
            rcx(g(1), 0),
            AcceptOutcome::Status(TdxStatus::PAGE_ALREADY_ACCEPTED.with_detail(0)),
        ),
        (
            "4K FREE",
            rcx(g(2), 0),
            AcceptOutcome::ExitToHost {
                gpa: g(2).gpa(),
                level: G4K,
            },
        ),
        (
            "4K no SEPT page",
            rcx(Gfn::new(0x800), 0),
            AcceptOutcome::ExitToHost {
                gpa: Gfn::new(0x800).gpa(),
                level: G4K,
            },
        ),
        (
            "4K in PENDING 2M leaf",
            rcx(Gfn::new(0x401), 0),
            AcceptOutcome::ExitToHost {
                gpa: Gfn::new(0x401).gpa(),
                level: G4K,
            },
        ),
        (
            "2M PENDING",
            rcx(r2m, 1),
            AcceptOutcome::Accepted {
                range: GfnRange::page_containing(r2m, G2M),
            },
        ),
        (
            "2M over 4K mapping",
            rcx(G0, 1),
            AcceptOutcome::Status(TdxStatus::PAGE_SIZE_MISMATCH.with_detail(1)),
        ),
        (
            "2M FREE",
            rcx(Gfn::new(0x800), 1),
            AcceptOutcome::ExitToHost {
                gpa: Gfn::new(0x800).gpa(),
                level: G2M,
            },
        ),
        (
            "1G level",
            rcx(Gfn::new(0), 2),
            AcceptOutcome::Status(TdxStatus::OPERAND_INVALID.rcx()),
        ),
        (
            "level 7",
            rcx(g(0), 7),
            AcceptOutcome::Status(TdxStatus::OPERAND_INVALID.rcx()),
        ),
        (
            "2M misaligned",
            rcx(g(1), 1),
            AcceptOutcome::Status(TdxStatus::OPERAND_INVALID.rcx()),
        ),
        (
            "reserved bits",
            rcx(g(0), 0) | 0x10,
            AcceptOutcome::Status(TdxStatus::OPERAND_INVALID.rcx()),
        ),
        (
            "shared alias",
            rcx(g(0), 0) | (1 << 47),
            AcceptOutcome::Status(TdxStatus::OPERAND_INVALID.rcx()),
        ),
        (
            "beyond GPAW",
            rcx(g(0), 0) | (1 << 50),
            AcceptOutcome::Status(TdxStatus::OPERAND_INVALID.rcx()),
        ),
    ];
    for (name, rcx, want) in cases {
        let mut s = td();
        assert_eq!(s.accept(*rcx), *want, "{name}");
    }
    // After the accepts the pages are MAPPED; a 4K accept inside the 2M leaf
    // is ALREADY_ACCEPTED at level 1.
    let mut s = td();
    s.accept(rcx(g(0), 0));
    s.accept(rcx(r2m, 1));
    assert_eq!(s.access(g(0)), SeptAccess::Mapped);
    assert_eq!(s.pending_frames(), 0);
    assert_eq!(
        s.accept(rcx(Gfn::new(0x401), 0)),
        AcceptOutcome::Status(TdxStatus::PAGE_ALREADY_ACCEPTED.with_detail(1))
    );
    // Blocked: exit.
    s.range_block(g(1), G4K);
    assert!(matches!(
        s.accept(rcx(g(1), 0)),
        AcceptOutcome::ExitToHost { .. }
    ));
}

#[test]
fn promote_and_demote_round_trip() {
    let mut s = td();
    for i in 2..512 {
        assert_eq!(s.page_aug(g(i), G4K, pfn(g(i))), S);
    }
    // 0 PENDING, 1 MAPPED, rest PENDING: not promotable until page 1 matches.
    s.range_block(G0, G2M);
    s.track();
    s.kick_all_vcpus();
    assert_eq!(
        s.page_promote(G0),
        TdxStatus::EPT_INVALID_PROMOTE_CONDITIONS.rcx()
    );
    let mut s = td();
    s.accept(rcx(g(0), 0));
    for i in 2..512 {
        s.page_aug(g(i), G4K, pfn(g(i)));
        s.accept(rcx(g(i), 0));
    }
    s.range_block(G0, G2M);
    s.track();
    s.kick_all_vcpus();
    assert_eq!(s.page_promote(G0), S);
    assert_eq!(s.state(g(77)), (SeptState::Mapped, G2M));
    assert!(!s.has_table(G0));
    assert_eq!(s.page_demote(G0), TdxStatus::GPA_RANGE_NOT_BLOCKED.rcx());
    s.range_block(G0, G2M);
    s.track();
    s.kick_all_vcpus();
    assert_eq!(s.page_demote(G0), S);
    assert_eq!(s.state(g(77)), (SeptState::Mapped, G4K));
    assert_eq!(s.leaves().len(), 512 + 1);
    // Discontiguous pages cannot be promoted.
    let mut s = Sept::new(Gpaw::Bits48, 1);
    s.sept_add(G0);
    for i in 0..512 {
        s.page_add(g(i), Pfn::new(0x10_0000 + (i ^ 1)));
    }
    assert_eq!(
        s.page_promote(G0),
        TdxStatus::EPT_INVALID_PROMOTE_CONDITIONS.rcx()
    );
}

#[test]
fn td_vp_info_registers() {
    let attrs = TdAttributes(TdAttributes::SEPT_VE_DISABLE | TdAttributes::DEBUG);
    let i = TdVpInfo::new(Gpaw::Bits52, attrs, 3, 4, 2);
    assert_eq!(i.rcx & 0x3f, 52);
    assert_eq!(i.rdx, (1 << 28) | 1);
    assert_eq!(i.r8, 3 | (4 << 32));
    assert_eq!(i.r9, 2);
    assert!(attrs.sept_ve_disable() && attrs.debug());
}
