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

// ----- pages added at launch as spans --------------------------------------

mod added_as_spans {
    use super::*;
    use proptest::prelude::*;

    /// Frames of the model universe: eight 2M regions.
    const UNIVERSE: u64 = 8 * 512;

    #[derive(Clone, Debug)]
    enum Op {
        Aug(u64, bool),
        Block(u64, bool),
        Unblock(u64, bool),
        Remove(u64, bool),
        Promote(u64),
        Demote(u64),
        Accept(u64, bool),
        Track,
        Flush(usize),
        RemoveAdded(u64, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        let gfn = 0..UNIVERSE;
        prop_oneof![
            (gfn.clone(), any::<bool>()).prop_map(|(g, h)| Op::Aug(g, h)),
            (gfn.clone(), any::<bool>()).prop_map(|(g, h)| Op::Block(g, h)),
            (gfn.clone(), any::<bool>()).prop_map(|(g, h)| Op::Unblock(g, h)),
            (gfn.clone(), any::<bool>()).prop_map(|(g, h)| Op::Remove(g, h)),
            gfn.clone().prop_map(Op::Promote),
            gfn.clone().prop_map(Op::Demote),
            (gfn.clone(), any::<bool>()).prop_map(|(g, h)| Op::Accept(g, h)),
            Just(Op::Track),
            (0usize..2).prop_map(Op::Flush),
            (gfn, 1u64..1200).prop_map(|(g, l)| Op::RemoveAdded(g, l)),
        ]
    }

    fn lvl(huge: bool) -> PageLevel {
        if huge {
            G2M
        } else {
            G4K
        }
    }

    fn at(g: u64, huge: bool) -> Gfn {
        Gfn::new(if huge { g & !511 } else { g })
    }

    fn pf(g: u64) -> Pfn {
        Pfn::new(0x8_0000 + g)
    }

    type View = (
        Vec<(SeptState, PageLevel, bool)>,
        Vec<(GfnRange, SeptState)>,
        u64,
    );

    /// Everything a caller can observe of a Secure EPT.
    fn view(s: &Sept) -> View {
        let per_page = (0..UNIVERSE)
            .map(|g| {
                let (st, l) = s.state(Gfn::new(g));
                (st, l, s.has_table(Gfn::new(g)))
            })
            .collect();
        (per_page, s.leaves(), s.pending_frames())
    }

    proptest! {
        /// A Secure EPT whose launch pages were added as spans
        /// (`page_add_range`) and one where each was added by its own
        /// TDH.MEM.SEPT.ADD + TDH.MEM.PAGE.ADD answer every SEAMCALL and
        /// TDCALL alike and look alike page by page after each: a split that
        /// lost or moved a page's state fails here.
        #[test]
        fn spans_and_per_page_entries_agree(
            adds in proptest::collection::vec((0..UNIVERSE, 1u64..1500), 1..4),
            ops in proptest::collection::vec(op(), 1..80),
        ) {
            let mut spans = Sept::new(Gpaw::Bits48, 2);
            let mut pages = Sept::new(Gpaw::Bits48, 2);
            for (start, len) in adds {
                let end = (start + len).min(UNIVERSE);
                let range = GfnRange::new(Gfn::new(start), Gfn::new(end)).unwrap();
                let got = spans.page_add_range(range, pf(start)).unwrap();
                // The reference stops at the first page it cannot add.
                let mut want = Gfn::new(end);
                for g in start..end {
                    let gfn = Gfn::new(g);
                    if !pages.has_table(gfn) && pages.state(gfn).0 == SeptState::Free {
                        prop_assert_eq!(pages.sept_add(gfn), S);
                    }
                    if pages.page_add(gfn, pf(g)) != S {
                        want = gfn;
                        break;
                    }
                }
                prop_assert_eq!(got, want);
                prop_assert_eq!(view(&spans), view(&pages));
            }
            prop_assert_eq!(spans.finalize(), S);
            prop_assert_eq!(pages.finalize(), S);
            for op in ops {
                let (a, b) = match op {
                    Op::Aug(g, h) => {
                        let gfn = at(g, h);
                        (spans.page_aug(gfn, lvl(h), pf(gfn.raw())), pages.page_aug(gfn, lvl(h), pf(gfn.raw())))
                    }
                    Op::Block(g, h) => (spans.range_block(at(g, h), lvl(h)), pages.range_block(at(g, h), lvl(h))),
                    Op::Unblock(g, h) => (spans.range_unblock(at(g, h), lvl(h)), pages.range_unblock(at(g, h), lvl(h))),
                    Op::Remove(g, h) => (spans.page_remove(at(g, h), lvl(h)), pages.page_remove(at(g, h), lvl(h))),
                    Op::Promote(g) => (spans.page_promote(at(g, true)), pages.page_promote(at(g, true))),
                    Op::Demote(g) => (spans.page_demote(at(g, true)), pages.page_demote(at(g, true))),
                    Op::Accept(g, h) => {
                        let rcx = (at(g, h).raw() << 12) | h as u64;
                        prop_assert_eq!(spans.accept(rcx), pages.accept(rcx));
                        (S, S)
                    }
                    Op::Track => {
                        // As KVM's tdx_track(): TRACK, then every vCPU out.
                        let r = (spans.track(), pages.track());
                        spans.kick_all_vcpus();
                        pages.kick_all_vcpus();
                        r
                    }
                    Op::Flush(v) => {
                        spans.vcpu_flushed(v);
                        pages.vcpu_flushed(v);
                        (S, S)
                    }
                    Op::RemoveAdded(g, l) => {
                        // A zap of pages the guest never reached: the per-page
                        // reference BLOCKs, TRACKs and REMOVEs each.
                        let r = GfnRange::new(Gfn::new(g), Gfn::new((g + l).min(UNIVERSE))).unwrap();
                        let removed = spans.remove_added(r);
                        let mut n = 0;
                        for piece in &removed {
                            for gfn in piece.iter() {
                                prop_assert!(r.contains(gfn));
                                prop_assert_eq!(pages.state(gfn), (SeptState::Mapped, G4K));
                                prop_assert_eq!(pages.range_block(gfn, G4K), S);
                                n += 1;
                            }
                        }
                        if n > 0 {
                            prop_assert_eq!(pages.track(), S);
                            pages.kick_all_vcpus();
                            for piece in &removed {
                                for gfn in piece.iter() {
                                    prop_assert_eq!(pages.page_remove(gfn, G4K), S);
                                }
                            }
                        }
                        (S, S)
                    }
                };
                prop_assert_eq!(a, b, "{:?}", op);
                prop_assert_eq!(spans.td_epoch(), pages.td_epoch());
                prop_assert_eq!(view(&spans), view(&pages), "after {:?}", op);
            }
            spans.reclaim_all();
            prop_assert!(spans.leaves().is_empty());
            prop_assert_eq!(spans.added_footprint(), (0, 0));
        }
    }

    #[test]
    fn a_64_gib_launch_is_a_few_spans() {
        let mut s = Sept::new(Gpaw::Bits48, 1);
        let all = GfnRange::from_start_len(Gfn::new(0x100), 16 << 20).unwrap();
        assert_eq!(s.page_add_range(all, Pfn::new(0x100)), Ok(all.end()));
        assert_eq!(s.added_footprint(), (16 << 20, 2));
        assert_eq!(s.finalize(), S);
        assert_eq!(s.state(Gfn::new(0x12345)), (SeptState::Mapped, G4K));
        // The first access gives the page an entry; its neighbours stay spans.
        assert_eq!(s.materialize(Gfn::new(0x12345)), Some(Pfn::new(0x12345)));
        // Two spans of pages, two runs of Secure-EPT pages linked at launch
        // around the region that now has an entry of its own.
        assert_eq!(s.added_footprint(), ((16 << 20) - 1, 4));
        assert_eq!(s.state(Gfn::new(0x12344)), (SeptState::Mapped, G4K));
        assert_eq!(s.added_pfn(Gfn::new(0x12346)), Some(Pfn::new(0x12346)));
        assert_eq!(
            s.accept(Gfn::new(0x12346).gpa().raw()),
            AcceptOutcome::Status(TdxStatus::PAGE_ALREADY_ACCEPTED)
        );
        assert_eq!(
            s.page_add_range(all, Pfn::new(0)),
            Err(TdxStatus::OP_STATE_INCORRECT)
        );
    }
}
