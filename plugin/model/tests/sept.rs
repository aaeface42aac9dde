//! Property tests of the TDX Secure EPT.
//!
//! `sept_state_machine`: random SEAMCALL/TDCALL sequences (SEPT.ADD, AUG 4K/2M,
//! ACCEPT 4K/2M, BLOCK, UNBLOCK, TRACK, vCPU flushes and kicks, REMOVE,
//! PROMOTE, DEMOTE) on a bare [`Sept`], checked against an independent
//! record of when each page was blocked, when TRACK ran and when each vCPU
//! last flushed:
//! - `remove_needs_track_and_flush`: a REMOVE (or PROMOTE/DEMOTE/UNBLOCK)
//!   succeeds on a finalized TD only if the entry was blocked, a TRACK ran
//!   after the block, and every vCPU flushed (or was kicked) after that TRACK.
//! - `accept_only_pending`: ACCEPT succeeds only on a PENDING entry of the
//!   requested size; a removed page is FREE and cannot be accepted until a
//!   new AUG.
//! - `pending_count`: the pending-frame count matches the leaves.
//!
//! `tdx_vm`: random conversions, guest accesses, ACCEPTs (with the exit to
//! KVM and the retry), zaps, memslot deletes/re-creates and flushes on a
//! finalized TDX [`Vm`]:
//! - `no_access_to_pending`: no guest access succeeds on a page that is not
//!   MAPPED in the Secure EPT; an access to a PENDING page is a #VE.
//! - `removed_needs_fresh_accept`: after a page leaves the Secure EPT (zap,
//!   conversion, memslot delete), no private access succeeds before the
//!   guest accepted it again.
//! - `sept_matches_mirror`: a Secure-EPT leaf exists iff a mirror leaf of the
//!   same frames exists, and none is left BLOCKED after a host operation.

use std::collections::BTreeSet;

use cvmem_model::*;
use proptest::prelude::*;

mod soak;

const VCPUS: usize = 2;
/// Two 2M regions.
const UNIVERSE: u64 = 1024;

#[derive(Clone, Debug)]
enum SeptOp {
    SeptAdd(u64),
    Aug { gfn: u64, huge: bool },
    Accept { gfn: u64, huge: bool },
    Block { gfn: u64, huge: bool },
    Unblock { gfn: u64, huge: bool },
    Track,
    Flush(usize),
    Kick,
    Remove { gfn: u64, huge: bool },
    Promote(u64),
    Demote(u64),
    AugRegion(u64),
}

fn sept_op() -> impl Strategy<Value = SeptOp> {
    let gfn = prop_oneof![0..UNIVERSE, (0..UNIVERSE / 512).prop_map(|r| r * 512)];
    let region = (0..UNIVERSE / 512).prop_map(|r| r * 512);
    prop_oneof![
        1 => region.clone().prop_map(SeptOp::SeptAdd),
        4 => (gfn.clone(), any::<bool>()).prop_map(|(gfn, huge)| SeptOp::Aug { gfn, huge }),
        4 => (gfn.clone(), any::<bool>()).prop_map(|(gfn, huge)| SeptOp::Accept { gfn, huge }),
        3 => (gfn.clone(), any::<bool>()).prop_map(|(gfn, huge)| SeptOp::Block { gfn, huge }),
        1 => (gfn.clone(), any::<bool>()).prop_map(|(gfn, huge)| SeptOp::Unblock { gfn, huge }),
        2 => Just(SeptOp::Track),
        2 => (0..VCPUS).prop_map(SeptOp::Flush),
        1 => Just(SeptOp::Kick),
        3 => (gfn, any::<bool>()).prop_map(|(gfn, huge)| SeptOp::Remove { gfn, huge }),
        1 => region.clone().prop_map(SeptOp::Promote),
        1 => region.clone().prop_map(SeptOp::Demote),
        1 => region.prop_map(SeptOp::AugRegion),
    ]
}

fn level(huge: bool) -> PageLevel {
    if huge {
        PageLevel::Size2M
    } else {
        PageLevel::Size4K
    }
}

fn run_sept(ops: &[SeptOp]) -> Result<(), TestCaseError> {
    let mut s = Sept::new(Gpaw::Bits48, VCPUS as u32);
    // A small build phase: one page ADDed.
    prop_assert!(s.sept_add(Gfn::new(0)).is_success());
    prop_assert!(s.page_add(Gfn::new(3), Pfn::new(0x1003)).is_success());
    prop_assert!(s.finalize().is_success());
    let mut tracks: Vec<u64> = Vec::new();
    let mut blocked_at: std::collections::BTreeMap<(u64, bool), u64> = Default::default();
    let mut vcpu_flush = [0u64; VCPUS];
    for (step, op) in ops.iter().enumerate() {
        let step = step as u64 + 1;
        let tracked = |key: &(u64, bool), tracks: &Vec<u64>, vcpu_flush: &[u64; VCPUS]| {
            let Some(&b) = blocked_at.get(key) else {
                return false;
            };
            let min_flush = *vcpu_flush.iter().min().unwrap();
            tracks.iter().any(|&t| t > b && t < min_flush)
        };
        match *op {
            SeptOp::SeptAdd(g) => {
                s.sept_add(Gfn::new(g));
            }
            SeptOp::Aug { gfn, huge } => {
                let before = s.state(Gfn::new(gfn));
                let st = s.page_aug(Gfn::new(gfn), level(huge), Pfn::new(0x1000 + gfn));
                if st.is_success() {
                    prop_assert_eq!(before.0, SeptState::Free);
                    prop_assert_eq!(s.state(Gfn::new(gfn)), (SeptState::Pending, level(huge)));
                }
            }
            SeptOp::AugRegion(r) => {
                for i in 0..512 {
                    s.page_aug(Gfn::new(r + i), PageLevel::Size4K, Pfn::new(0x1000 + r + i));
                }
            }
            SeptOp::Accept { gfn, huge } => {
                let l = level(huge);
                let before = s.state(Gfn::new(gfn));
                let out = s.accept((gfn << 12) | (huge as u64));
                if let AcceptOutcome::Accepted { range } = out {
                    prop_assert_eq!(before, (SeptState::Pending, l), "accept_only_pending");
                    prop_assert_eq!(range, GfnRange::page_containing(Gfn::new(gfn), l));
                    prop_assert_eq!(s.state(Gfn::new(gfn)).0, SeptState::Mapped);
                } else {
                    prop_assert_eq!(s.state(Gfn::new(gfn)), before);
                }
                if before.0 == SeptState::Free {
                    prop_assert!(
                        !matches!(out, AcceptOutcome::Accepted { .. }),
                        "accept_only_pending: FREE accepted"
                    );
                }
            }
            SeptOp::Block { gfn, huge } => {
                let st = s.range_block(Gfn::new(gfn), level(huge));
                if st.is_success() {
                    blocked_at.insert((gfn, huge), step);
                }
            }
            SeptOp::Unblock { gfn, huge } => {
                let key = (gfn, huge);
                let ok = tracked(&key, &tracks, &vcpu_flush);
                let st = s.range_unblock(Gfn::new(gfn), level(huge));
                if st.is_success() {
                    prop_assert!(ok, "remove_needs_track_and_flush: UNBLOCK");
                    blocked_at.remove(&key);
                }
            }
            SeptOp::Track => {
                if s.track().is_success() {
                    tracks.push(step);
                }
            }
            SeptOp::Flush(v) => {
                s.vcpu_flushed(v);
                vcpu_flush[v] = step;
            }
            SeptOp::Kick => {
                s.kick_all_vcpus();
                vcpu_flush = [step; VCPUS];
            }
            SeptOp::Remove { gfn, huge } => {
                let key = (gfn, huge);
                let ok = tracked(&key, &tracks, &vcpu_flush);
                let st = s.page_remove(Gfn::new(gfn), level(huge));
                if st.is_success() {
                    prop_assert!(ok, "remove_needs_track_and_flush: {op:?}");
                    blocked_at.remove(&key);
                    prop_assert_eq!(s.state(Gfn::new(gfn)).0, SeptState::Free);
                    // A removed page cannot be accepted.
                    let again = s.accept(gfn << 12);
                    let accepted_again = matches!(again, AcceptOutcome::Accepted { .. });
                    prop_assert!(!accepted_again, "accept of a removed page");
                } else if !ok {
                    prop_assert_ne!(st, TdxStatus::SUCCESS);
                }
            }
            SeptOp::Promote(r) => {
                let key = (r, true);
                let ok = tracked(&key, &tracks, &vcpu_flush);
                if s.page_promote(Gfn::new(r)).is_success() {
                    prop_assert!(ok, "remove_needs_track_and_flush: PROMOTE");
                    blocked_at.remove(&key);
                    blocked_at.retain(|&(g, h), _| h || g / 512 != r / 512);
                }
            }
            SeptOp::Demote(r) => {
                let key = (r, true);
                let ok = tracked(&key, &tracks, &vcpu_flush);
                if s.page_demote(Gfn::new(r)).is_success() {
                    prop_assert!(ok, "remove_needs_track_and_flush: DEMOTE");
                    blocked_at.remove(&key);
                }
            }
        }
        let pending: u64 = s
            .leaves()
            .iter()
            .filter(|(_, st)| matches!(st, SeptState::Pending | SeptState::PendingBlocked))
            .map(|(r, _)| r.len())
            .sum();
        prop_assert_eq!(pending, s.pending_frames(), "pending_count");
    }
    Ok(())
}

// ----- the Vm -------------------------------------------------------------

#[derive(Clone, Debug)]
enum VmOp {
    Convert { start: u64, len: u64, private: bool },
    Access { vcpu: u32, gfn: u64, write: bool },
    Accept { vcpu: u32, gfn: u64, huge: bool },
    Zap { start: u64, len: u64 },
    DeleteSlot,
    CreateSlot,
    Flush,
}

fn vm_op() -> impl Strategy<Value = VmOp> {
    let gfn = 0..UNIVERSE;
    prop_oneof![
        2 => (gfn.clone(), prop_oneof![Just(1u64), Just(8), 1..600u64], any::<bool>())
            .prop_map(|(start, len, private)| VmOp::Convert { start, len, private }),
        6 => (0..VCPUS as u32, gfn.clone(), any::<bool>()).prop_map(|(vcpu, gfn, write)| VmOp::Access { vcpu, gfn, write }),
        5 => (0..VCPUS as u32, gfn.clone(), any::<bool>()).prop_map(|(vcpu, gfn, huge)| VmOp::Accept { vcpu, gfn, huge }),
        1 => (gfn, 1..300u64).prop_map(|(start, len)| VmOp::Zap { start, len }),
        1 => Just(VmOp::DeleteSlot),
        1 => Just(VmOp::CreateSlot),
        2 => Just(VmOp::Flush),
    ]
}

fn create_slot(vm: &Vm) {
    let f = vm
        .set_memory_region(MemoryRegion {
            slot: MemslotId(0),
            flags: MemslotFlags::GUEST_MEMFD,
            guest_phys_addr: Gpa::new(0),
            memory_size: UNIVERSE << 12,
            backing: BackingAddr::new(0x4000_0000),
        })
        .unwrap();
    vm.flush(f);
}

fn run_vm(ops: &[VmOp], ve_disable: bool) -> Result<(), TestCaseError> {
    let attrs = if ve_disable {
        TdAttributes(TdAttributes::SEPT_VE_DISABLE)
    } else {
        TdAttributes(0)
    };
    let vm = Vm::new(VmConfig {
        max_vcpus: VCPUS as u32,
        td_attributes: attrs,
        ..VmConfig::new(VmType::Tdx)
    })
    .unwrap();
    create_slot(&vm);
    let mut slot = true;
    let all = GfnRange::from_start_len(Gfn::new(0), UNIVERSE).unwrap();
    vm.flush(vm.set_memory_attributes(all, true).unwrap());
    // Initial image: 16 pages ADDed (MAPPED).
    vm.tdx_page_add(GfnRange::from_start_len(Gfn::new(0), 16).unwrap())
        .unwrap();
    prop_assert!(vm.tdx_finalize().is_success());
    prop_assert_eq!(
        vm.tdx_page_add(GfnRange::one(Gfn::new(20))),
        Err(TdxStatus::OP_STATE_INCORRECT)
    );
    // Frames the guest accepted (or ADDed) since they last entered the SEPT.
    let mut accepted: BTreeSet<u64> = (0..16).collect();
    let mut pending_flushes: Vec<Flush> = Vec::new();
    for op in ops {
        match *op {
            VmOp::Convert {
                start,
                len,
                private,
            } => {
                let len = len.min(UNIVERSE - start).max(1);
                let r = GfnRange::from_start_len(Gfn::new(start), len).unwrap();
                pending_flushes.push(vm.set_memory_attributes(r, private).unwrap());
                if !private {
                    for g in start..start + len {
                        accepted.remove(&g);
                    }
                }
            }
            VmOp::Access { vcpu, gfn, write } => {
                let gpa = vm.alias().encode(Gfn::new(gfn), Alias::Private);
                let access = if write { Access::Write } else { Access::Read };
                let state = vm.tdx_sept_state(Gfn::new(gfn)).0;
                match vm.stage2(VcpuId(vcpu), gpa, access) {
                    Stage2::Mapped(t) => {
                        prop_assert!(t.private);
                        prop_assert_eq!(
                            vm.tdx_sept_state(Gfn::new(gfn)).0,
                            SeptState::Mapped,
                            "no_access_to_pending"
                        );
                        prop_assert!(
                            accepted.contains(&gfn),
                            "removed_needs_fresh_accept: {gfn:#x}"
                        );
                    }
                    Stage2::Fault(Stage2Fault::VirtualizationException { ve, .. }) => {
                        prop_assert!(!ve_disable);
                        prop_assert_eq!(ve.exit_reason, 48);
                        prop_assert_eq!(ve.gpa, gpa);
                        prop_assert_eq!(vm.tdx_sept_state(Gfn::new(gfn)).0, SeptState::Pending);
                        prop_assert!(!accepted.contains(&gfn));
                    }
                    Stage2::Fault(Stage2Fault::VmDead { .. }) => {
                        prop_assert!(ve_disable);
                        prop_assert!(state == SeptState::Pending || state == SeptState::Free);
                        // Every later fault reports the VM dead too.
                        let dead = matches!(
                            vm.stage2(VcpuId(0), Gpa::new(0xFFF_F000), Access::Read),
                            Stage2::Fault(Stage2Fault::VmDead { .. })
                        );
                        prop_assert!(dead, "VM not dead");
                        return Ok(());
                    }
                    Stage2::Fault(Stage2Fault::MemoryFault { .. }) => {
                        prop_assert!(!vm.is_private(Gfn::new(gfn)) || !slot);
                    }
                    Stage2::Fault(f) => prop_assert!(false, "unexpected {f:?}"),
                }
            }
            VmOp::Accept { vcpu, gfn, huge } => {
                let gfn = if huge { gfn & !511 } else { gfn };
                let rcx = (gfn << 12) | huge as u64;
                // The guest loop: retry after each exit to the host.
                let mut out = vm.tdx_accept(VcpuId(vcpu), rcx);
                let mut exits = 0;
                while let AcceptOutcome::ExitToHost { gpa, .. } = out {
                    exits += 1;
                    prop_assert!(exits < 3, "accept loops: {out:?}");
                    if vm.tdx_handle_accept_exit(VcpuId(vcpu), gpa).is_err() {
                        break;
                    }
                    out = vm.tdx_accept(VcpuId(vcpu), rcx);
                }
                match out {
                    AcceptOutcome::Accepted { range } => {
                        prop_assert!(!huge, "TDX maps private memory at 4K: {range:?}");
                        accepted.insert(gfn);
                    }
                    AcceptOutcome::Status(st) if huge => {
                        prop_assert!(
                            st.class() == TdxStatus::PAGE_SIZE_MISMATCH
                                || st.class() == TdxStatus::OPERAND_INVALID,
                            "{st:?}"
                        );
                    }
                    AcceptOutcome::Status(st) => {
                        prop_assert_eq!(st, TdxStatus::PAGE_ALREADY_ACCEPTED);
                        prop_assert!(accepted.contains(&gfn));
                    }
                    AcceptOutcome::ExitToHost { .. } => {
                        // The page could not be mapped privately.
                        prop_assert!(!vm.is_private(Gfn::new(gfn)) || !slot);
                    }
                }
            }
            VmOp::Zap { start, len } => {
                let r = GfnRange::from_start_len(Gfn::new(start), len).unwrap();
                pending_flushes.push(vm.zap_gfn_range(r, ZapFilter::ALL));
                for g in start..start + len {
                    accepted.remove(&g);
                }
            }
            VmOp::DeleteSlot => {
                if slot {
                    pending_flushes.push(vm.delete_memslot(MemslotId(0)).unwrap());
                    slot = false;
                    accepted.clear();
                }
            }
            VmOp::CreateSlot => {
                if !slot {
                    create_slot(&vm);
                    slot = true;
                }
            }
            VmOp::Flush => {
                for f in pending_flushes.drain(..) {
                    vm.flush(f);
                }
            }
        }
        // sept_matches_mirror.
        let mirror: BTreeSet<(u64, u64)> = vm
            .leaves()
            .iter()
            .filter(|l| l.role == RootRole::Mirror)
            .map(|l| (l.range.start().raw(), l.range.len()))
            .collect();
        let sept = vm.tdx_sept_leaves();
        prop_assert!(
            sept.iter().all(|(_, st)| !st.is_blocked()),
            "sept_matches_mirror: blocked left"
        );
        let sept: BTreeSet<(u64, u64)> = sept
            .iter()
            .map(|(r, _)| (r.start().raw(), r.len()))
            .collect();
        prop_assert_eq!(mirror, sept, "sept_matches_mirror");
    }
    for f in pending_flushes {
        vm.flush(f);
    }
    vm.flush(vm.teardown());
    prop_assert!(vm.tdx_sept_leaves().is_empty());
    Ok(())
}

#[test]
fn sept_state_machine() {
    let m = soak::Machine {
        file: file!(),
        name: "sept_state_machine",
        invariants: &[
            "remove_needs_track_and_flush",
            "accept_only_pending",
            "pending_count",
        ],
    };
    soak::run(
        &m,
        prop::collection::vec(sept_op(), 1..120),
        Vec::len,
        |ops| run_sept(&ops),
    );
}

#[test]
fn tdx_vm() {
    let m = soak::Machine {
        file: file!(),
        name: "tdx_vm_sept",
        invariants: &[
            "no_access_to_pending",
            "removed_needs_fresh_accept",
            "sept_matches_mirror",
        ],
    };
    soak::run(
        &m,
        (
            prop::collection::vec(vm_op(), 1..100),
            prop::bool::weighted(0.2),
        ),
        |(ops, _)| ops.len(),
        |(ops, ve_disable)| run_vm(&ops, ve_disable),
    );
}

#[test]
fn accept_2m_on_4k_mapping_falls_back_like_linux() {
    // Linux's tdx_accept_memory(): 1G, then 2M, then 4K, advancing on success.
    let vm = Vm::new(VmConfig::new(VmType::Tdx)).unwrap();
    create_slot(&vm);
    let all = GfnRange::from_start_len(Gfn::new(0), UNIVERSE).unwrap();
    vm.flush(vm.set_memory_attributes(all, true).unwrap());
    assert!(vm.tdx_finalize().is_success());
    let v = VcpuId(0);
    let accept = |rcx: u64| loop {
        match vm.tdx_accept(v, rcx) {
            AcceptOutcome::ExitToHost { gpa, .. } => vm.tdx_handle_accept_exit(v, gpa).unwrap(),
            out => return out,
        }
    };
    let mut gpa = 0u64;
    let mut tries = Vec::new();
    while gpa < 0x20_0000 {
        let mut done = 0;
        for (lvl, size) in [(2u64, 1u64 << 30), (1, 1 << 21), (0, 1 << 12)] {
            if gpa % size != 0 || 0x20_0000 - gpa < size {
                continue;
            }
            let out = accept(gpa | lvl);
            tries.push((lvl, out.status().unwrap().class()));
            if out.status() == Some(TdxStatus::SUCCESS) {
                done = size;
                break;
            }
        }
        assert_ne!(done, 0, "accept failed at {gpa:#x}");
        gpa += done;
    }
    // The 2M try on a region KVM maps at 4K: the exit AUGs the first 4K page
    // under a new Secure-EPT page, the retry is a size mismatch, and the
    // guest falls back to 4K for all 512 pages.
    assert_eq!(tries[0], (1, TdxStatus::PAGE_SIZE_MISMATCH));
    assert_eq!(tries.iter().filter(|t| t.0 == 0).count(), 512);
    assert_eq!(vm.stats().frames_needing_accept, 0);
    assert_eq!(vm.stats().sept_accepts, 512);
    for g in 0..512 {
        assert_eq!(vm.tdx_sept_state(Gfn::new(g)).0, SeptState::Mapped);
    }
}

#[test]
fn tdx_vp_info_from_the_vm_config() {
    let vm = Vm::new(VmConfig {
        max_vcpus: 4,
        gpaw: Gpaw::Bits52,
        td_attributes: TdAttributes(TdAttributes::SEPT_VE_DISABLE),
        ..VmConfig::new(VmType::Tdx)
    })
    .unwrap();
    let i = vm.tdx_vp_info(VcpuId(3)).unwrap();
    assert_eq!((i.rcx, i.rdx, i.r8, i.r9), (52, 1 << 28, 4 | (4 << 32), 3));
    assert!(vm.tdx_vp_info(VcpuId(4)).is_none());
    let snp = Vm::new(VmConfig::new(VmType::Snp)).unwrap();
    assert!(snp.tdx_vp_info(VcpuId(0)).is_none());
}
