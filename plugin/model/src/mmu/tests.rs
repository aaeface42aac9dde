use super::*;
use crate::rmp::RmpPageSize;
use crate::*;

const MB: u64 = 1 << 20;
const GB: u64 = 1 << 30;
const V0: VcpuId = VcpuId(0);

fn vm(t: VmType) -> Vm {
    Vm::new(VmConfig {
        max_vcpus: 4,
        event_capacity: 1 << 16,
        ..VmConfig::new(t)
    })
    .unwrap()
}

fn slot(vm: &Vm, id: u16, gpa: u64, size: u64, backing: u64, flags: MemslotFlags) -> Flush {
    vm.set_memory_region(MemoryRegion {
        slot: MemslotId(id),
        flags,
        guest_phys_addr: Gpa::new(gpa),
        memory_size: size,
        backing: BackingAddr::new(backing),
    })
    .unwrap()
}

fn delete(vm: &Vm, id: u16) -> Flush {
    slot(vm, id, 0, 0, 0, MemslotFlags::NONE)
}

fn pmem(t: VmType) -> MemslotFlags {
    if t.has_private_mem() {
        MemslotFlags::GUEST_MEMFD
    } else {
        MemslotFlags::NONE
    }
}

fn mapped(s: Stage2) -> Translation {
    match s {
        Stage2::Mapped(t) => t,
        Stage2::Fault(f) => panic!("expected a mapping, got {f:?}"),
    }
}

fn range(start: u64, len: u64) -> GfnRange {
    GfnRange::from_start_len(Gfn::new(start), len).unwrap()
}

fn shared(vm: &Vm, gfn: u64) -> Gpa {
    vm.alias().encode(Gfn::new(gfn), Alias::Shared)
}

fn private(vm: &Vm, gfn: u64) -> Gpa {
    vm.alias().encode(Gfn::new(gfn), Alias::Private)
}

/// The per-vCPU leaf cache never outlives a change of the TDP: after a zap,
/// a conversion or a memslot deletion the lookup walks again and sees it.
#[test]
fn the_leaf_cache_follows_every_change() {
    let vm = vm(VmType::SwProtected);
    slot(&vm, 0, 0, 4 * MB, 0x100_0000, MemslotFlags::GUEST_MEMFD).ignore();
    let a = |gfn: u64| Gpa::new(gfn << 12);
    // A 2M leaf; a second lookup in it is served from the cache.
    mapped(vm.stage2(V0, a(5), Access::Write));
    let hits = vm.stats().lookup_hits;
    let t = vm.lookup(V0, a(6), Access::Write).expect("same 2M leaf");
    assert_eq!(
        (t.gfn, t.backing),
        (Gfn::new(6), BackingAddr::new(0x100_6000))
    );
    assert!(!t.private);
    assert_eq!(vm.stats().lookup_hits, hits + 1);
    // Another vCPU has its own cache and walks.
    assert_eq!(
        vm.lookup(VcpuId(1), a(7), Access::Read).map(|t| t.gfn),
        Some(Gfn::new(7))
    );
    // A zap: the cached leaf is gone.
    vm.flush(vm.zap_gfn_range(range(0, 512), ZapFilter::ALL));
    assert_eq!(vm.lookup(V0, a(6), Access::Read), None);
    // Converting to private: the shared leaf goes, the private one comes.
    mapped(vm.stage2(V0, a(6), Access::Read));
    vm.flush(vm.set_memory_attributes(range(0, 512), true).unwrap());
    assert_eq!(vm.lookup(V0, a(6), Access::Read), None);
    let t = mapped(vm.stage2(V0, a(6), Access::Read));
    assert!(t.private);
    assert!(vm.lookup(V0, a(8), Access::Read).unwrap().private);
    // Deleting the slot.
    vm.flush(delete(&vm, 0));
    assert_eq!(vm.lookup(V0, a(8), Access::Read), None);
}

#[test]
fn fault_maps_the_largest_page_the_slot_allows() {
    let vm = vm(VmType::Default);
    slot(&vm, 0, 0, 4 * GB, 0x1_0000_0000, MemslotFlags::NONE).ignore();
    // 1G-aligned slot and backing: 1G pages.
    let t = mapped(vm.stage2(V0, Gpa::new(0x4000_1234), Access::Read));
    assert_eq!(t.level, PageLevel::Size1G);
    assert_eq!(t.backing, BackingAddr::new(0x1_4000_1000));
    assert_eq!(t.page_backing(), BackingAddr::new(0x1_4000_0000));
    // A slot whose backing is only 2M aligned relative to its gfn: 2M pages.
    slot(&vm, 1, 8 * GB, 8 * MB, 0x20_0000, MemslotFlags::NONE).ignore();
    assert_eq!(
        mapped(vm.stage2(V0, Gpa::new(8 * GB), Access::Read)).level,
        PageLevel::Size2M
    );
    // A slot with a 4K skew: 4K pages; so is the head of a slot starting off
    // a 2M boundary.
    slot(&vm, 2, 16 * GB, 8 * MB, 0x1000, MemslotFlags::NONE).ignore();
    assert_eq!(
        mapped(vm.stage2(V0, Gpa::new(16 * GB), Access::Read)).level,
        PageLevel::Size4K
    );
    slot(&vm, 3, 32 * GB + 0x1000, 8 * MB, 0x1000, MemslotFlags::NONE).ignore();
    assert_eq!(
        mapped(vm.stage2(V0, Gpa::new(32 * GB + 0x1000), Access::Read)).level,
        PageLevel::Size4K
    );
    assert_eq!(
        mapped(vm.stage2(V0, Gpa::new(32 * GB + 2 * MB), Access::Read)).level,
        PageLevel::Size2M
    );
    // The lookup now hits without faulting.
    let before = vm.stats();
    assert!(vm
        .lookup(V0, Gpa::new(0x4000_2000), Access::Write)
        .is_some());
    let after = vm.stats();
    assert_eq!(after.faults, before.faults);
    assert_eq!(after.lookup_hits, before.lookup_hits + 1);
    assert_eq!(after.maps, [2, 2, 1]);
}

#[test]
fn max_level_config_is_honoured() {
    let vm = Vm::new(VmConfig {
        max_level: PageLevel::Size4K,
        ..VmConfig::new(VmType::Default)
    })
    .unwrap();
    slot(&vm, 0, 0, GB, 0, MemslotFlags::NONE).ignore();
    assert_eq!(
        mapped(vm.stage2(V0, Gpa::new(0), Access::Read)).level,
        PageLevel::Size4K
    );
}

#[test]
fn exits_follow_kvm() {
    let vm = vm(VmType::Default);
    slot(&vm, 0, 0, MB, 0, MemslotFlags::READONLY).ignore();
    assert_eq!(
        vm.stage2(V0, Gpa::new(2 * MB), Access::Read),
        Stage2::Fault(Stage2Fault::Mmio {
            gpa: Gpa::new(2 * MB)
        })
    );
    let t = mapped(vm.stage2(V0, Gpa::new(0x1000), Access::Fetch));
    assert!(!t.perms.write);
    assert_eq!(
        vm.stage2(V0, Gpa::new(0x1000), Access::Write),
        Stage2::Fault(Stage2Fault::ReadOnlyWrite {
            gpa: Gpa::new(0x1000)
        })
    );
    assert_eq!(
        vm.stage2(V0, Gpa::new(1 << 48), Access::Read),
        Stage2::Fault(Stage2Fault::ReservedGpa {
            gpa: Gpa::new(1 << 48)
        })
    );
    let s = vm.stats();
    assert_eq!((s.mmio_exits, s.readonly_write_exits), (1, 1));
    assert_eq!(
        vm.set_memory_attributes(range(0, 1), true),
        Err(AttrError::Invalid)
    );
}

#[test]
fn tdx_aliases_and_memory_fault_exits() {
    let vm = vm(VmType::Tdx);
    slot(&vm, 0, 0, 4 * MB, 0x10_0000_0000, MemslotFlags::GUEST_MEMFD).ignore();
    slot(&vm, 1, 8 * MB, MB, 0x20_0000_0000, MemslotFlags::NONE).ignore();
    // Everything starts shared.
    let t = mapped(vm.stage2(V0, shared(&vm, 3), Access::Write));
    assert!(!t.private);
    assert_eq!(
        vm.stage2(V0, private(&vm, 3), Access::Read),
        Stage2::Fault(Stage2Fault::MemoryFault {
            gpa: private(&vm, 3),
            gfn: Gfn::new(3),
            private: true
        })
    );
    vm.flush(vm.set_memory_attributes(range(0, 1024), true).unwrap());
    let t = mapped(vm.stage2(V0, private(&vm, 3), Access::Write));
    assert!(t.private);
    // TDX maps private memory at 4K only.
    assert_eq!(t.level, PageLevel::Size4K);
    assert!(matches!(
        vm.stage2(V0, shared(&vm, 3), Access::Read),
        Stage2::Fault(Stage2Fault::MemoryFault { private: false, .. })
    ));
    // Private without guest_memfd: memory fault, not MMIO; private with no
    // slot at all: memory fault too.
    vm.flush(vm.set_memory_attributes(range(2048, 512), true).unwrap());
    assert!(matches!(
        vm.stage2(V0, private(&vm, 2048), Access::Read),
        Stage2::Fault(Stage2Fault::MemoryFault { private: true, .. })
    ));
    vm.set_memory_attributes(range(4096, 1), true)
        .unwrap()
        .ignore();
    assert!(matches!(
        vm.stage2(V0, private(&vm, 4096), Access::Read),
        Stage2::Fault(Stage2Fault::MemoryFault { private: true, .. })
    ));
    assert!(matches!(
        vm.stage2(V0, shared(&vm, 5000), Access::Read),
        Stage2::Fault(Stage2Fault::Mmio { .. })
    ));
}

#[test]
fn sw_protected_follows_attributes() {
    let vm = vm(VmType::SwProtected);
    slot(&vm, 0, 0, 4 * MB, 0, MemslotFlags::GUEST_MEMFD).ignore();
    let t = mapped(vm.stage2(V0, Gpa::new(0x1000), Access::Read));
    assert!(!t.private);
    assert_eq!(t.level, PageLevel::Size2M);
    vm.flush(vm.set_memory_attributes(range(0, 512), true).unwrap());
    let t = mapped(vm.stage2(V0, Gpa::new(0x1000), Access::Read));
    assert!(t.private);
    assert_eq!(t.level, PageLevel::Size2M);
    assert_eq!(vm.stats().memory_fault_exits, 0);
}

#[test]
fn zap_all_quirk_replaces_the_direct_root() {
    let vm = vm(VmType::Default);
    slot(&vm, 0, 0, 8 * MB, 0, MemslotFlags::NONE).ignore();
    slot(&vm, 1, GB, 8 * MB, GB, MemslotFlags::NONE).ignore();
    mapped(vm.stage2(V0, Gpa::new(0), Access::Read));
    mapped(vm.stage2(V0, Gpa::new(GB), Access::Read));
    let root = vm.root_id(RootRole::Direct).unwrap();
    let f = delete(&vm, 1);
    assert_eq!(f.request(), Some(FlushRequest::REMOTE_ALL));
    vm.flush(f);
    assert_ne!(vm.root_id(RootRole::Direct), Some(root));
    // Zap-all: nothing is reachable, not even the other slot's pages.
    assert!(vm.leaves().is_empty());
    assert_eq!(vm.stats().roots_invalidated, 1);
    assert!(matches!(
        vm.stage2(V0, Gpa::new(GB), Access::Read),
        Stage2::Fault(Stage2Fault::Mmio { .. })
    ));
    mapped(vm.stage2(V0, Gpa::new(0), Access::Read));
}

#[test]
fn slot_leafs_policy_zaps_only_the_slot() {
    for t in VmType::ALL {
        let vm = Vm::new(VmConfig {
            slot_zap_all_quirk: t != VmType::Default,
            ..VmConfig::new(t)
        })
        .unwrap();
        assert!(!vm.config().slot_zap_all() || t == VmType::Default);
        if t == VmType::Default {
            // Quirk disabled for the default VM.
            let vm2 = Vm::new(VmConfig {
                slot_zap_all_quirk: false,
                ..VmConfig::new(t)
            })
            .unwrap();
            assert!(!vm2.config().slot_zap_all());
            continue;
        }
        slot(&vm, 0, 0, 8 * MB, 0, pmem(t)).ignore();
        slot(&vm, 1, GB, 8 * MB, GB, pmem(t)).ignore();
        mapped(vm.stage2(V0, shared(&vm, 0), Access::Read));
        mapped(vm.stage2(V0, shared(&vm, GB >> 12), Access::Read));
        let root = vm.root_id(RootRole::Direct);
        vm.flush(delete(&vm, 1));
        assert_eq!(vm.root_id(RootRole::Direct), root, "{t}");
        let leaves = vm.leaves();
        assert_eq!(leaves.len(), 1, "{t}");
        assert_eq!(leaves[0].range.start(), Gfn::new(0));
    }
}

#[test]
fn move_zaps_old_range_and_maps_new() {
    let vm = Vm::new(VmConfig {
        slot_zap_all_quirk: false,
        ..VmConfig::new(VmType::Default)
    })
    .unwrap();
    slot(&vm, 0, 0, 2 * MB, 0x4000_0000, MemslotFlags::NONE).ignore();
    mapped(vm.stage2(V0, Gpa::new(0x1000), Access::Read));
    vm.flush(slot(&vm, 0, GB, 2 * MB, 0x4000_0000, MemslotFlags::NONE));
    assert!(matches!(
        vm.stage2(V0, Gpa::new(0x1000), Access::Read),
        Stage2::Fault(Stage2Fault::Mmio { .. })
    ));
    let t = mapped(vm.stage2(V0, Gpa::new(GB + 0x1000), Access::Read));
    assert_eq!(t.backing, BackingAddr::new(0x4000_1000));
}

#[test]
fn exported_root_survives_zap_all() {
    let vm = vm(VmType::Default);
    slot(&vm, 0, 0, 8 * MB, 0, MemslotFlags::NONE).ignore();
    mapped(vm.stage2(V0, Gpa::new(0), Access::Read));
    let root = vm.export_root(RootRole::Direct).unwrap();
    let f = vm.zap_all_fast();
    assert!(f.is_needed());
    vm.flush(f);
    assert_eq!(vm.root_id(RootRole::Direct), Some(root));
    assert!(vm.leaves().is_empty());
}

#[test]
fn tdx_mirror_root_is_never_zapped_and_dropped_pages_need_accept() {
    let vm = vm(VmType::Tdx);
    slot(&vm, 0, 0, 8 * MB, 0, MemslotFlags::GUEST_MEMFD).ignore();
    vm.flush(vm.set_memory_attributes(range(0, 2048), true).unwrap());
    for g in [0, 1, 600] {
        mapped(vm.stage2(V0, private(&vm, g), Access::Write));
    }
    let mirror = vm.root_id(RootRole::Mirror).unwrap();
    let tables = vm.root_tables(RootRole::Mirror);
    assert!(tables > 1);
    // An explicit fast zap leaves the mirror alone.
    vm.flush(vm.zap_all_fast());
    assert_eq!(
        vm.leaves()
            .iter()
            .filter(|l| l.role == RootRole::Mirror)
            .count(),
        3
    );
    // Converting a page to shared removes it from the mirror (leaf only) and
    // from the Secure EPT (BLOCK, TRACK, REMOVE).
    assert_eq!(vm.tdx_sept_state(Gfn::new(1)).0, SeptState::Mapped);
    vm.flush(vm.set_memory_attributes(range(1, 1), false).unwrap());
    assert_eq!(vm.tdx_sept_state(Gfn::new(1)).0, SeptState::Free);
    assert_eq!(vm.tdx_sept_state(Gfn::new(0)).0, SeptState::Mapped);
    // Deleting the slot removes the rest; the root and its tables stay.
    vm.flush(delete(&vm, 0));
    assert_eq!(vm.root_id(RootRole::Mirror), Some(mirror));
    assert_eq!(vm.root_tables(RootRole::Mirror), tables);
    assert!(vm.leaves().is_empty());
    assert!(vm.tdx_sept_leaves().is_empty());
    assert_eq!(vm.stats().sept_removes, 3);
    // No non-leaf zap of the mirror happened.
    let rx = vm.events().unwrap();
    let evs: Vec<Event> = rx.try_iter().map(|s| s.event).collect();
    assert_eq!(
        evs.iter()
            .filter(|e| matches!(e, Event::SeptRemoved { .. }))
            .count(),
        3
    );
    assert!(!evs.iter().any(|e| matches!(
        e,
        Event::ZapNonLeaf {
            role: RootRole::Mirror,
            ..
        }
    )));
}

#[test]
fn teardown_zaps_leaves_before_non_leaves() {
    let vm = vm(VmType::Tdx);
    slot(&vm, 0, 0, 8 * MB, 0, MemslotFlags::GUEST_MEMFD).ignore();
    vm.flush(vm.set_memory_attributes(range(0, 16), true).unwrap());
    mapped(vm.stage2(V0, private(&vm, 5), Access::Write));
    mapped(vm.stage2(V0, shared(&vm, 700), Access::Write));
    let rx = vm.events().unwrap();
    rx.try_iter().for_each(drop);
    vm.flush(vm.teardown());
    let evs: Vec<Event> = rx.try_iter().map(|s| s.event).collect();
    let leaf = evs
        .iter()
        .position(|e| {
            matches!(
                e,
                Event::Zap {
                    role: RootRole::Mirror,
                    ..
                }
            )
        })
        .unwrap();
    let nonleaf = evs
        .iter()
        .position(|e| {
            matches!(
                e,
                Event::ZapNonLeaf {
                    role: RootRole::Mirror,
                    ..
                }
            )
        })
        .unwrap();
    assert!(leaf < nonleaf);
    assert_eq!(vm.stats().live_tables, 0);
    assert_eq!(
        vm.stage2(V0, private(&vm, 5), Access::Read),
        Stage2::Fault(Stage2Fault::Dead)
    );
}

#[test]
fn conversion_zaps_only_the_alias_being_left_and_tracks_mixed() {
    let vm = vm(VmType::Snp);
    slot(&vm, 0, 0, 4 * MB, 0, MemslotFlags::GUEST_MEMFD).ignore();
    // Shared 2M page at gfn 0.
    assert_eq!(
        mapped(vm.stage2(V0, shared(&vm, 0), Access::Read)).level,
        PageLevel::Size2M
    );
    // Make gfn 512..1024 private; map it private at 2M.
    vm.flush(vm.set_memory_attributes(range(512, 512), true).unwrap());
    assert_eq!(
        mapped(vm.stage2(V0, private(&vm, 600), Access::Read)).level,
        PageLevel::Size2M
    );
    // Converting gfn 700 to shared zaps the private 2M leaf but not the shared
    // one at gfn 0.
    let f = vm.set_memory_attributes(range(700, 1), false).unwrap();
    assert!(f.is_needed());
    vm.flush(f);
    let leaves = vm.leaves();
    assert_eq!(leaves.len(), 1);
    assert_eq!(leaves[0].role, RootRole::Direct);
    // The 2M page is now mixed: 4K on both sides.
    assert_eq!(
        mapped(vm.stage2(V0, private(&vm, 600), Access::Read)).level,
        PageLevel::Size4K
    );
    assert_eq!(
        mapped(vm.stage2(V0, shared(&vm, 700), Access::Read)).level,
        PageLevel::Size4K
    );
    // Converting it back makes the page uniform; after the 4K leaves are gone
    // the next fault could map 2M again (emptied tables were pruned)...
    vm.flush(vm.set_memory_attributes(range(700, 1), true).unwrap());
    assert_eq!(
        mapped(vm.stage2(V0, private(&vm, 700), Access::Read)).level,
        PageLevel::Size4K
    );
    vm.flush(vm.zap_gfn_range(range(512, 512), ZapFilter::ALL));
    // ...but for SNP the RMP decides: converting gfn 700 to shared cut the 2M
    // RMP page (sev_gmem_invalidate() PSMASHed it) and KVM never merges RMP
    // entries back, so sev_gmem_max_mapping_level() keeps private mappings
    // of this 2M range at 4K.
    assert_eq!(
        vm.snp_rmp_entry(Pfn::new(512)).unwrap().page_size,
        RmpPageSize::Size4K
    );
    assert_eq!(
        mapped(vm.stage2(V0, private(&vm, 700), Access::Read)).level,
        PageLevel::Size4K
    );
    assert_eq!(
        mapped(vm.stage2(V0, shared(&vm, 0), Access::Read)).level,
        PageLevel::Size2M
    );
    // Converting a range that already has the attribute does nothing.
    let seq = vm.mmu_invalidate_seq();
    assert!(!vm
        .set_memory_attributes(range(512, 512), true)
        .unwrap()
        .is_needed());
    assert_eq!(vm.mmu_invalidate_seq(), seq);
    assert!(vm.attributes().mixed_is_consistent());
}

#[test]
fn conversion_without_memslot_moves_no_sequence() {
    let vm = vm(VmType::Tdx);
    let seq = vm.mmu_invalidate_seq();
    let f = vm.set_memory_attributes(range(1 << 20, 512), true).unwrap();
    assert!(!f.is_needed());
    assert_eq!(vm.mmu_invalidate_seq(), seq);
    assert!(vm.is_private(Gfn::new(1 << 20)));
}

#[test]
fn fault_across_an_invalidation_is_retried() {
    let vm = vm(VmType::SwProtected);
    slot(&vm, 0, 0, 4 * MB, 0, MemslotFlags::GUEST_MEMFD).ignore();
    // Conversion between the two halves.
    let p = vm.fault_begin(V0, Gpa::new(0x1000), Access::Read).unwrap();
    vm.flush(vm.set_memory_attributes(range(1, 1), true).unwrap());
    assert_eq!(vm.fault_finish(p), FaultOutcome::Retry);
    assert!(vm.leaves().is_empty());
    // Memslot deletion between the two halves.
    let p = vm.fault_begin(V0, Gpa::new(0x1000), Access::Read).unwrap();
    vm.flush(delete(&vm, 0));
    assert_eq!(vm.fault_finish(p), FaultOutcome::Retry);
    assert!(vm.leaves().is_empty());
    // A zap between the two halves.
    slot(&vm, 0, 0, 4 * MB, 0, MemslotFlags::GUEST_MEMFD).ignore();
    let p = vm.fault_begin(V0, Gpa::new(0x3000), Access::Read).unwrap();
    vm.flush(vm.zap_gfn_range(range(0, 1), ZapFilter::ALL));
    assert_eq!(vm.fault_finish(p), FaultOutcome::Retry);
    // Nothing in between: installed.
    let p = vm.fault_begin(V0, Gpa::new(0x3000), Access::Read).unwrap();
    assert!(matches!(vm.fault_finish(p), FaultOutcome::Mapped(_)));
    assert!(vm.stats().fault_retries >= 3);
}

#[test]
fn in_progress_range_blocks_only_its_gfns() {
    let vm = vm(VmType::Default);
    slot(&vm, 0, 0, 4 * MB, 0, MemslotFlags::NONE).ignore();
    {
        let mut w = vm.mmu_write();
        w.invalidate_begin();
        w.invalidate_range_add(range(0, 16));
    }
    // Inside the range: retried before taking the lock.
    assert_eq!(
        vm.fault_begin(V0, Gpa::new(0x1000), Access::Read),
        Err(FaultOutcome::Retry)
    );
    // Outside: fine (4K, because max level is capped by nothing else but the
    // fault is far from the range).
    let p = vm
        .fault_begin(V0, Gpa::new(0x20_0000), Access::Read)
        .unwrap();
    assert!(matches!(vm.fault_finish(p), FaultOutcome::Mapped(_)));
    let p = vm
        .fault_begin(V0, Gpa::new(0x30_0000), Access::Read)
        .unwrap();
    {
        let mut w = vm.mmu_write();
        w.invalidate_end(range(0, 16));
    }
    assert_eq!(vm.fault_finish(p), FaultOutcome::Retry);
}

/// A fault that sized its leaf at 2M before a conversion of one page of
/// that 2M page began must not install the leaf while the conversion runs:
/// the conversion has zapped already and would leave the leaf over the page
/// it converts (for SNP also over the 4K RMP entries its PSMASH leaves, an
/// RMP #NPF on every access through the leaf). Seen as a guest #PF with the
/// RMP bit in an 8-vCPU SNP boot.
#[test]
fn a_huge_leaf_waits_for_an_invalidation_of_any_frame_it_covers() {
    // (A TD's private leaves are 4K here: nothing to hold up.)
    for t in [VmType::SwProtected, VmType::Snp] {
        let vm = vm(t);
        slot(&vm, 0, 0, 4 * MB, 0, MemslotFlags::GUEST_MEMFD).ignore();
        vm.flush(vm.set_memory_attributes(range(512, 512), true).unwrap());
        let p = vm.fault_begin(V0, private(&vm, 600), Access::Read).unwrap();
        // The conversion of gfn 700 is between its zap and its end.
        {
            let mut w = vm.mmu_write();
            w.invalidate_begin();
            w.invalidate_range_add(range(700, 1));
        }
        assert_eq!(vm.fault_finish(p), FaultOutcome::Retry, "{t:?}");
        assert!(vm.leaves().is_empty(), "{t:?}");
        {
            let mut w = vm.mmu_write();
            w.invalidate_end(range(700, 1));
        }
        // A 4K leaf next to the range is not held up.
        vm.flush(vm.set_memory_attributes(range(700, 1), false).unwrap());
        let p = vm.fault_begin(V0, private(&vm, 600), Access::Read).unwrap();
        {
            let mut w = vm.mmu_write();
            w.invalidate_begin();
            w.invalidate_range_add(range(700, 1));
        }
        match vm.fault_finish(p) {
            FaultOutcome::Mapped(t) => assert_eq!(t.level, PageLevel::Size4K),
            other => panic!("{t:?}: expected a 4K mapping, got {other:?}"),
        }
        let mut w = vm.mmu_write();
        w.invalidate_end(range(700, 1));
    }
}

#[test]
fn tlb_model_keeps_stale_entries_until_flushed() {
    let vm = vm(VmType::Default);
    slot(&vm, 0, 0, 4 * MB, 0, MemslotFlags::NONE).ignore();
    let gpa = Gpa::new(0x5000);
    assert!(matches!(
        vm.tlb_access(V0, gpa, Access::Write),
        TlbAccess::Filled(_)
    ));
    assert!(matches!(
        vm.tlb_access(VcpuId(1), gpa, Access::Read),
        TlbAccess::Filled(_)
    ));
    assert!(matches!(
        vm.tlb_access(V0, gpa, Access::Write),
        TlbAccess::Hit { stale: false, .. }
    ));
    let f = vm.zap_gfn_range(range(5, 1), ZapFilter::ALL);
    // Until the flush, both vCPUs still use the old translation and the model
    // knows it is stale.
    assert!(matches!(
        vm.tlb_access(V0, gpa, Access::Write),
        TlbAccess::Hit { stale: true, .. }
    ));
    assert!(matches!(
        vm.tlb_access(VcpuId(1), gpa, Access::Read),
        TlbAccess::Hit { stale: true, .. }
    ));
    // A current-root flush of one vCPU is not enough for the other one.
    vm.flush(vm.request_flush(V0, FlushKind::CurrentRoot));
    assert!(matches!(
        vm.tlb_access(V0, gpa, Access::Write),
        TlbAccess::Filled(_)
    ));
    assert!(matches!(
        vm.tlb_access(VcpuId(1), gpa, Access::Read),
        TlbAccess::Hit { .. }
    ));
    assert_eq!(vm.flush(f), Some(FlushRequest::REMOTE_ALL));
    assert!(vm.tlb_entries(VcpuId(1)).is_empty());
    assert!(matches!(
        vm.tlb_access(VcpuId(1), gpa, Access::Read),
        TlbAccess::Filled(_)
    ));
}

#[test]
fn current_root_flush_keeps_entries_of_old_roots() {
    let vm = vm(VmType::Default);
    slot(&vm, 0, 0, 4 * MB, 0, MemslotFlags::NONE).ignore();
    let gpa = Gpa::new(0x5000);
    assert!(matches!(
        vm.tlb_access(V0, gpa, Access::Read),
        TlbAccess::Filled(_)
    ));
    let f = vm.zap_all_fast();
    // Load the new root by touching another page, then flush current only:
    // the old root's entry stays (KVM_REQ_TLB_FLUSH_CURRENT).
    assert!(matches!(
        vm.tlb_access(V0, Gpa::new(0x20_0000), Access::Read),
        TlbAccess::Filled(_)
    ));
    vm.flush(vm.request_flush(V0, FlushKind::CurrentRoot));
    assert!(matches!(
        vm.tlb_access(V0, gpa, Access::Read),
        TlbAccess::Hit { stale: true, .. }
    ));
    vm.flush(f);
    assert!(vm.tlb_entries(V0).is_empty());
}

#[test]
fn events_cover_fault_map_zap_flush_conversion() {
    let vm = vm(VmType::SwProtected);
    let rx = vm.events().unwrap();
    slot(&vm, 0, 0, 4 * MB, 0, MemslotFlags::GUEST_MEMFD).ignore();
    mapped(vm.stage2(V0, Gpa::new(0), Access::Read));
    let _ = vm.stage2(V0, Gpa::new(GB), Access::Read);
    vm.flush(vm.set_memory_attributes(range(0, 1), true).unwrap());
    let evs: Vec<Event> = rx.try_iter().map(|s| s.event).collect();
    let has = |f: &dyn Fn(&Event) -> bool| evs.iter().any(f);
    assert!(has(&|e| matches!(
        e,
        Event::Memslot {
            change: MemslotChange::Create,
            ..
        }
    )));
    assert!(has(&|e| matches!(
        e,
        Event::Map {
            level: PageLevel::Size2M,
            ..
        }
    )));
    assert!(has(&|e| matches!(
        e,
        Event::FaultExit {
            fault: Stage2Fault::Mmio { .. },
            ..
        }
    )));
    assert!(has(&|e| matches!(
        e,
        Event::Zap {
            reason: ZapReason::Conversion,
            ..
        }
    )));
    assert!(has(&|e| matches!(
        e,
        Event::Conversion { private: true, .. }
    )));
    assert!(has(&|e| matches!(e, Event::Flush { .. })));
    assert!(has(&|e| matches!(e, Event::Invalidated { .. })));
}

#[test]
fn gpaw52_uses_five_levels() {
    let vm = Vm::new(VmConfig {
        gpaw: crate::types::Gpaw::Bits52,
        ..VmConfig::new(VmType::Tdx)
    })
    .unwrap();
    let top = 1u64 << 50;
    slot(&vm, 0, top, 2 * MB, 0, MemslotFlags::GUEST_MEMFD).ignore();
    let gpa = vm.alias().encode(Gfn::new(top >> 12), Alias::Shared);
    assert_eq!(gpa.raw(), top | (1 << 51));
    assert_eq!(
        mapped(vm.stage2(V0, gpa, Access::Read)).level,
        PageLevel::Size2M
    );
}

#[test]
fn memslot_wrappers() {
    let vm = vm(VmType::Default);
    let r = range(0x100, 0x200);
    vm.create_memslot(
        MemslotId(3),
        r,
        BackingAddr::new(0x10_0000),
        MemslotFlags::NONE,
    )
    .unwrap()
    .ignore();
    assert_eq!(
        vm.create_memslot(
            MemslotId(3),
            range(0x1000, 1),
            BackingAddr::new(0),
            MemslotFlags::NONE
        )
        .unwrap_err()
        .errno(),
        "EEXIST"
    );
    mapped(vm.stage2(V0, Gpa::new(0x10_0000), Access::Read));
    vm.flush(vm.move_memslot(MemslotId(3), Gfn::new(0x1000)).unwrap());
    let t = mapped(vm.stage2(V0, Gpa::new(0x100_0000), Access::Read));
    assert_eq!(t.backing, BackingAddr::new(0x10_0000));
    vm.flush(vm.delete_memslot(MemslotId(3)).unwrap());
    assert!(vm.memslots().is_empty());
    assert_eq!(
        vm.delete_memslot(MemslotId(3)).unwrap_err(),
        MemslotError::NoSuchSlot(MemslotId(3))
    );
}

#[test]
fn grow_memslot_merges_slots_and_keeps_every_mapping() {
    let vm = vm(VmType::Default);
    let one = |id: u16, gfn: u64| {
        slot(&vm, id, gfn << 12, 4096, gfn << 12, MemslotFlags::NONE).ignore();
    };
    one(0, 0x100);
    one(1, 0x102);
    one(2, 0x200);
    let t = mapped(vm.stage2(V0, Gpa::new(0x10_0123), Access::Write));
    let before = vm.stats();
    // Growing slot 0 over 0x101 reaches slot 1, which it absorbs.
    vm.grow_memslot(MemslotId(0), range(0x100, 3)).unwrap();
    let slots = vm.memslots();
    let ids: Vec<_> = slots
        .iter()
        .map(|s| (s.id.0, s.base_gfn.raw(), s.npages))
        .collect();
    assert_eq!(ids, [(0, 0x100, 3), (2, 0x200, 1)]);
    // Nothing was zapped: the mapping made before is still looked up.
    let after = vm.stats();
    assert_eq!(
        (after.zaps, after.leaves_zapped),
        (before.zaps, before.leaves_zapped)
    );
    assert_eq!(vm.lookup(V0, Gpa::new(0x10_0123), Access::Write), Some(t));
    let t = mapped(vm.stage2(V0, Gpa::new(0x10_2000), Access::Read));
    assert_eq!(t.backing, BackingAddr::new(0x10_2000));
    // Downwards: the new frames take the backing below the slot's.
    vm.grow_memslot(MemslotId(2), range(0x1fe, 3)).unwrap();
    assert_eq!(
        vm.memslots().find(Gfn::new(0x1fe)).unwrap().backing,
        BackingAddr::new(0x1f_e000)
    );
    // Refused: not containing the slot, half over another slot, a slot of
    // other flags or backing, an unknown slot.
    let err = |id: u16, start: u64, len: u64| {
        vm.grow_memslot(MemslotId(id), range(start, len))
            .unwrap_err()
    };
    assert_eq!(
        err(0, 0x101, 2),
        MemslotError::ImmutableChange(MemslotId(0))
    );
    assert_eq!(
        err(0, 0x100, 0xff),
        MemslotError::Overlap {
            slot: MemslotId(0),
            existing: MemslotId(2)
        }
    );
    slot(&vm, 3, 0x30_0000, 4096, 0x30_0000, MemslotFlags::READONLY).ignore();
    slot(&vm, 4, 0x40_1000, 4096, 0x90_0000, MemslotFlags::NONE).ignore();
    assert!(matches!(err(2, 0x1fe, 0x103), MemslotError::Overlap { .. }));
    vm.grow_memslot(MemslotId(2), range(0x1fe, 0x102)).unwrap();
    vm.flush(vm.delete_memslot(MemslotId(3)).unwrap());
    assert_eq!(
        err(2, 0x1fe, 0x204),
        MemslotError::Overlap {
            slot: MemslotId(2),
            existing: MemslotId(4)
        }
    );
    assert_eq!(err(9, 0x1000, 1), MemslotError::NoSuchSlot(MemslotId(9)));
    // Growing to what the slot is changes nothing.
    let generation = vm.memslots().generation();
    vm.grow_memslot(MemslotId(0), range(0x100, 3)).unwrap();
    assert_eq!(vm.memslots().generation(), generation);
    // A grown slot is deleted like any other.
    vm.flush(vm.delete_memslot(MemslotId(0)).unwrap());
    assert!(vm.memslots().find(Gfn::new(0x101)).is_none());
}

// ----- SEV-SNP: the RMP wired into the VM ----------------------------------

mod snp {
    use super::*;
    use crate::rmp::{pferr, DeviceAccess, RmpPageSize, Vmpl};
    use crate::{SnpAccessCtx, SnpInsnOutcome};

    const CTX: SnpAccessCtx = SnpAccessCtx {
        vmpl: Vmpl::Vmpl0,
        user: false,
        page_walk: false,
    };

    /// An SNP VM with one 4M guest_memfd slot at gfn 0, backing at pfn
    /// 0x1000 (2M aligned, congruent with the gfns), all private.
    fn snp_vm() -> Vm {
        let vm = vm(VmType::Snp);
        slot(&vm, 0, 0, 4 * MB, 0x100_0000, MemslotFlags::GUEST_MEMFD).ignore();
        vm.flush(vm.set_memory_attributes(range(0, 1024), true).unwrap());
        vm
    }

    fn pfn(gfn: u64) -> Pfn {
        Pfn::new(0x1000 + gfn)
    }

    fn done(o: SnpInsnOutcome) -> (u32, bool, Flush) {
        match o {
            SnpInsnOutcome::Completed { eax, cf, flush } => (eax, cf, flush),
            other => panic!("expected completion, got {other:?}"),
        }
    }

    fn fault(s: Stage2) -> Stage2Fault {
        match s {
            Stage2::Fault(f) => f,
            Stage2::Mapped(t) => panic!("expected a fault, got {t:?}"),
        }
    }

    #[test]
    fn launch_update_assigns_and_validates_private_frames_at_4k() {
        // Other VM types launch nothing.
        let tdx = vm(VmType::Tdx);
        slot(&tdx, 0, 0, 4 * MB, 0x100_0000, MemslotFlags::GUEST_MEMFD).ignore();
        assert_eq!(tdx.snp_launch_update(range(0, 16)), Ok(0));
        let vm = snp_vm();
        // Gfns 0x200.. become shared: LAUNCH_UPDATE skips them.
        vm.flush(
            vm.set_memory_attributes(range(0x200, 0x400), false)
                .unwrap(),
        );
        assert_eq!(vm.snp_launch_update(range(0x1f0, 0x210)), Ok(0x10));
        for gfn in 0x1f0..0x200 {
            let e = vm.snp_rmp_entry(pfn(gfn)).unwrap();
            assert!(e.assigned && e.validated, "gfn {gfn:#x}: {e:?}");
            assert_eq!((e.gfn, e.page_size), (Gfn::new(gfn), RmpPageSize::Size4K));
        }
        assert!(!vm.snp_rmp_entry(pfn(0x200)).unwrap().assigned);
        assert!(!vm.snp_rmp_entry(pfn(0x1ef)).unwrap().assigned);
        // A launched page is usable at once, at 4K; its neighbour is not
        // validated yet.
        let t = mapped(vm.snp_stage2(V0, private(&vm, 0x1f8), Access::Write, CTX));
        assert_eq!((t.level, t.backing), (PageLevel::Size4K, pfn(0x1f8).addr()));
        assert!(matches!(
            vm.snp_stage2(V0, private(&vm, 0x1e0), Access::Read, CTX),
            Stage2::Fault(Stage2Fault::PageNotValidated { .. })
        ));
        // PVALIDATE of a launched page changes nothing (CF = 1).
        let (eax, cf, _) = done(vm.snp_pvalidate(V0, private(&vm, 0x1f8), Vmpl::Vmpl0, 0, true));
        assert_eq!((eax, cf), (0, true));
    }

    #[test]
    fn a_grown_guest_memfd_slot_keeps_its_rmp_entries() {
        let vm = vm(VmType::Snp);
        let page = |id: u16, gfn: u64| {
            slot(
                &vm,
                id,
                gfn << 12,
                4096,
                (0x1000 + gfn) << 12,
                MemslotFlags::GUEST_MEMFD,
            )
            .ignore();
        };
        page(0, 0x10);
        page(1, 0x12);
        vm.flush(vm.set_memory_attributes(range(0x10, 3), true).unwrap());
        assert_eq!(vm.snp_launch_update(range(0x10, 3)), Ok(2));
        vm.grow_memslot(MemslotId(0), range(0x10, 3)).unwrap();
        assert_eq!(vm.memslots().len(), 1);
        // The launched pages stay assigned and validated; the frame between
        // them joined the RMP hypervisor-owned, and launches like the rest.
        for gfn in [0x10, 0x12] {
            let e = vm.snp_rmp_entry(pfn(gfn)).unwrap();
            assert!(e.assigned && e.validated, "gfn {gfn:#x}: {e:?}");
        }
        assert!(!vm.snp_rmp_entry(pfn(0x11)).unwrap().assigned);
        assert_eq!(vm.snp_launch_update(range(0x11, 1)), Ok(1));
        mapped(vm.snp_stage2(V0, private(&vm, 0x11), Access::Write, CTX));
        // Another slot's backing is not taken over.
        slot(
            &vm,
            2,
            0x20 << 12,
            4096,
            (0x1000 + 0x14) << 12,
            MemslotFlags::GUEST_MEMFD,
        )
        .ignore();
        assert_eq!(
            vm.grow_memslot(MemslotId(0), range(0x10, 5)),
            Err(MemslotError::GmemBound(MemslotId(0)))
        );
        // Deleting the grown slot gives its pages back and uncovers them.
        vm.flush(vm.delete_memslot(MemslotId(0)).unwrap());
        assert_eq!(vm.snp_rmp_entry(pfn(0x11)), None);
    }

    #[test]
    fn private_fault_prepares_unvalidated_and_pvalidate_opens_it() {
        let vm = snp_vm();
        // The fault assigns the whole 2M page (sev_gmem_prepare), unvalidated:
        // #VC(PAGE_NOT_VALIDATED).
        assert_eq!(
            vm.snp_stage2(V0, private(&vm, 5), Access::Read, CTX),
            Stage2::Fault(Stage2Fault::PageNotValidated {
                gpa: private(&vm, 5)
            })
        );
        let e = vm.snp_rmp_entry(pfn(5)).unwrap();
        assert!(e.assigned && !e.validated);
        assert_eq!((e.gfn, e.page_size), (Gfn::new(5), RmpPageSize::Size2M));
        assert_eq!(e.asid, vm.config().asid);
        // The nested leaf agrees with the RMP page size.
        assert_eq!(
            mapped(vm.stage2(V0, private(&vm, 5), Access::Read)).level,
            PageLevel::Size2M
        );
        // PVALIDATE 2M at gfn 0: EAX 0, CF 0; again: CF 1 (no update).
        let (eax, cf, f) = done(vm.snp_pvalidate(V0, private(&vm, 0), Vmpl::Vmpl0, 1, true));
        assert_eq!((eax, cf, f.is_needed()), (0, false, false));
        let (eax, cf, _) = done(vm.snp_pvalidate(V0, private(&vm, 0), Vmpl::Vmpl0, 1, true));
        assert_eq!((eax, cf), (0, true));
        let t = mapped(vm.snp_stage2(V0, private(&vm, 5), Access::Write, CTX));
        assert!(t.private && t.perms.write && t.perms.exec);
        assert_eq!(t.backing, pfn(5).addr());
        // Bad input: FAIL_INPUT for a 2M request on an unaligned gfn or a bad
        // RCX, FAIL_PERMISSION above VMPL0; nothing changes.
        assert_eq!(
            done(vm.snp_pvalidate(V0, private(&vm, 1), Vmpl::Vmpl0, 1, false)).0,
            1
        );
        assert_eq!(
            done(vm.snp_pvalidate(V0, private(&vm, 0), Vmpl::Vmpl0, 2, false)).0,
            1
        );
        assert_eq!(
            done(vm.snp_pvalidate(V0, private(&vm, 0), Vmpl::Vmpl1, 0, false)).0,
            2
        );
        assert!(vm.snp_rmp_entry(pfn(1)).unwrap().validated);
        // Rescinding needs a flush: the softTLB may hold the page.
        let (eax, _, f) = done(vm.snp_pvalidate(V0, private(&vm, 0), Vmpl::Vmpl0, 1, false));
        assert_eq!((eax, f.request()), (0, Some(FlushRequest::REMOTE_ALL)));
        vm.flush(f);
        assert!(matches!(
            fault(vm.snp_stage2(V0, private(&vm, 5), Access::Read, CTX)),
            Stage2Fault::PageNotValidated { .. }
        ));
        // Other VM types have no PVALIDATE.
        let tdx = super::vm(VmType::Tdx);
        assert_eq!(
            tdx.snp_pvalidate(V0, Gpa::new(0), Vmpl::Vmpl0, 0, true),
            SnpInsnOutcome::Unsupported
        );
    }

    #[test]
    fn pvalidate_4k_of_a_2m_rmp_page_smashes_and_retries() {
        let vm = snp_vm();
        let ev = vm.events().unwrap();
        // The first touch is the PVALIDATE itself: its nested walk faults the
        // page in (2M RMP page, 2M leaf); a 4K request then takes an #NPF
        // with SIZEM, which KVM resolves by PSMASH + zap of the 2M range.
        let f = match vm.snp_pvalidate(V0, private(&vm, 7), Vmpl::Vmpl0, 0, true) {
            SnpInsnOutcome::Retry { flush } => flush,
            other => panic!("{other:?}"),
        };
        assert!(f.is_needed());
        vm.flush(f);
        assert!(vm.leaves().is_empty());
        assert_eq!(
            vm.snp_rmp_entry(pfn(7)).unwrap().page_size,
            RmpPageSize::Size4K
        );
        assert!(ev.try_iter().map(|s| s.event).any(|e| matches!(e, Event::RmpSmashed { range, .. } if range == GfnRange::page_containing(Gfn::new(7), PageLevel::Size2M))));
        // Re-executed: the page maps at 4K now and validates.
        let (eax, cf, _) = done(vm.snp_pvalidate(V0, private(&vm, 7), Vmpl::Vmpl0, 0, true));
        assert_eq!((eax, cf), (0, false));
        let t = mapped(vm.snp_stage2(V0, private(&vm, 7), Access::Read, CTX));
        assert_eq!(t.level, PageLevel::Size4K);
        assert!(matches!(
            fault(vm.snp_stage2(V0, private(&vm, 8), Access::Read, CTX)),
            Stage2Fault::PageNotValidated { .. }
        ));
        // A 2M request over the 4K entries now: FAIL_SIZEMISMATCH.
        assert_eq!(
            done(vm.snp_pvalidate(V0, private(&vm, 0), Vmpl::Vmpl0, 1, true)).0,
            6
        );
        assert_eq!(vm.stats().rmp_smashes, 1);
    }

    #[test]
    fn cutting_a_2m_rmp_page_caps_later_private_mappings_at_4k() {
        let vm = snp_vm();
        mapped(vm.stage2(V0, private(&vm, 0), Access::Read));
        assert_eq!(
            vm.snp_rmp_entry(pfn(3)).unwrap().page_size,
            RmpPageSize::Size2M
        );
        // Converting gfn 300 to shared cuts the 2M RMP page: PSMASH, then
        // gfn 300 alone is unassigned (sev_gmem_invalidate()).
        vm.flush(vm.set_memory_attributes(range(300, 1), false).unwrap());
        assert_eq!(
            vm.snp_rmp_entry(pfn(3)).unwrap().page_size,
            RmpPageSize::Size4K
        );
        assert!(!vm.snp_rmp_entry(pfn(300)).unwrap().assigned);
        vm.flush(vm.set_memory_attributes(range(300, 1), true).unwrap());
        // The attributes are uniform again, but sev_gmem_max_mapping_level()
        // caps the nested leaf at the RMP page size: nested and RMP sizes
        // always agree, so an access never takes the Page-Size #NPF.
        for g in [3, 300] {
            assert_eq!(
                mapped(vm.stage2(V0, private(&vm, g), Access::Read)).level,
                PageLevel::Size4K
            );
        }
    }

    #[test]
    fn zaps_that_free_nothing_keep_validation() {
        let vm = snp_vm();
        assert!(matches!(
            vm.snp_pvalidate(V0, private(&vm, 0), Vmpl::Vmpl0, 1, true),
            SnpInsnOutcome::Completed { eax: 0, .. }
        ));
        let before: Vec<_> = (0..1024).map(|g| vm.snp_rmp_entry(pfn(g))).collect();
        vm.flush(vm.zap_gfn_range(range(0, 1024), ZapFilter::ALL));
        assert!(vm.leaves().is_empty());
        vm.flush(vm.zap_all_fast());
        // A memslot create/delete elsewhere (slot-leafs zap of another range).
        slot(&vm, 1, GB, 2 * MB, 0x4000_0000, MemslotFlags::GUEST_MEMFD).ignore();
        vm.flush(delete(&vm, 1));
        let after: Vec<_> = (0..1024).map(|g| vm.snp_rmp_entry(pfn(g))).collect();
        assert_eq!(before, after);
        // Refaulted: still assigned and validated, no #VC.
        let t = mapped(vm.snp_stage2(V0, private(&vm, 9), Access::Read, CTX));
        assert_eq!(t.level, PageLevel::Size2M);
        assert_eq!(vm.stats().rmp_pages_unassigned, 0);
    }

    #[test]
    fn conversion_to_shared_unassigns_and_needs_a_fresh_pvalidate() {
        let vm = snp_vm();
        let ev = vm.events().unwrap();
        assert!(matches!(
            vm.snp_pvalidate(V0, private(&vm, 0), Vmpl::Vmpl0, 1, true),
            SnpInsnOutcome::Completed { eax: 0, .. }
        ));
        mapped(vm.snp_stage2(V0, private(&vm, 4), Access::Write, CTX));
        assert!(!vm.host_write_allowed(private(&vm, 4)));
        let f = vm.set_memory_attributes(range(4, 2), false).unwrap();
        assert!(f.is_needed());
        vm.flush(f);
        assert!(ev.try_iter().map(|s| s.event).any(|e| e
            == Event::RmpUnassigned {
                range: range(4, 2),
                pages: 2
            }));
        for g in [4, 5] {
            let e = vm.snp_rmp_entry(pfn(g)).unwrap();
            assert!(!e.assigned && !e.validated);
        }
        // The rest of the 2M page keeps its validation (PSMASHed to 4K).
        assert!(vm.snp_rmp_entry(pfn(6)).unwrap().validated);
        // Shared now: the host may clear it, devices may use it, the guest
        // reads and writes it without the C-bit but cannot fetch from it.
        assert!(vm.host_write_allowed(shared(&vm, 4)));
        assert_eq!(
            vm.device_access(shared(&vm, 4), true),
            DeviceAccess::Allowed
        );
        let t = mapped(vm.snp_stage2(V0, shared(&vm, 4), Access::Read, CTX));
        assert!(!t.private && t.perms.write && !t.perms.exec);
        assert!(matches!(
            fault(vm.snp_stage2(V0, shared(&vm, 4), Access::Fetch, CTX)),
            Stage2Fault::MemoryFault { private: true, .. }
        ));
        // Back to private: no RMP change until the next fault, which
        // prepares the page unvalidated.
        vm.flush(vm.set_memory_attributes(range(4, 2), true).unwrap());
        assert!(!vm.snp_rmp_entry(pfn(4)).unwrap().assigned);
        assert!(matches!(
            fault(vm.snp_stage2(V0, private(&vm, 4), Access::Read, CTX)),
            Stage2Fault::PageNotValidated { .. }
        ));
        assert!(matches!(
            vm.snp_pvalidate(V0, private(&vm, 4), Vmpl::Vmpl0, 0, true),
            SnpInsnOutcome::Completed {
                eax: 0,
                cf: false,
                ..
            }
        ));
        mapped(vm.snp_stage2(V0, private(&vm, 4), Access::Read, CTX));
    }

    #[test]
    fn devices_and_the_host_never_write_private_pages() {
        let vm = snp_vm();
        // Private by attributes, not yet assigned: devices are refused, the
        // host may still clear the page (it is hypervisor-owned).
        assert_eq!(
            vm.device_access(private(&vm, 20), true),
            DeviceAccess::Blocked
        );
        assert_eq!(
            vm.device_access(shared(&vm, 20), false),
            DeviceAccess::Encrypted
        );
        assert!(vm.host_write_allowed(shared(&vm, 20)));
        mapped(vm.stage2(V0, private(&vm, 20), Access::Read));
        assert!(!vm.host_write_allowed(shared(&vm, 20)));
        // No memslot: nothing to check.
        assert_eq!(
            vm.device_access(Gpa::new(8 * GB), true),
            DeviceAccess::Allowed
        );
        assert!(vm.host_write_allowed(Gpa::new(8 * GB)));
    }

    #[test]
    fn memslots_bind_and_free_guest_memfd_backing() {
        let vm = snp_vm();
        assert_eq!(vm.snp_rmp_covered().len(), 1);
        // The same backing bound twice: EEXIST.
        let e = vm
            .set_memory_region(MemoryRegion {
                slot: MemslotId(1),
                flags: MemslotFlags::GUEST_MEMFD,
                guest_phys_addr: Gpa::new(GB),
                memory_size: 2 * MB,
                backing: BackingAddr::new(0x100_0000 + 2 * MB),
            })
            .unwrap_err();
        assert_eq!(
            (e, e.errno()),
            (MemslotError::GmemBound(MemslotId(1)), "EEXIST")
        );
        // Nor may a shared slot alias it: its shared alias would reach
        // the private pages, which share the backing.
        let e = vm
            .set_memory_region(MemoryRegion {
                slot: MemslotId(2),
                flags: MemslotFlags::NONE,
                guest_phys_addr: Gpa::new(2 * GB),
                memory_size: 2 * MB,
                backing: BackingAddr::new(0x100_0000),
            })
            .unwrap_err();
        assert_eq!(
            (e, e.errno()),
            (MemslotError::GmemBound(MemslotId(2)), "EEXIST")
        );
        // Shared-only slots are not covered.
        slot(&vm, 2, 2 * GB, 2 * MB, 0x800_0000, MemslotFlags::NONE).ignore();
        assert_eq!(vm.snp_rmp_covered().len(), 1);
        // A guest_memfd slot cannot move (KVM: private memslots are immutable).
        assert_eq!(
            vm.move_memslot(MemslotId(0), Gfn::new(0x10_0000))
                .unwrap_err(),
            MemslotError::PrivateSlotImmutable(MemslotId(0))
        );
        // Delete frees the guest_memfd: pages unassigned, coverage gone.
        mapped(vm.stage2(V0, private(&vm, 0), Access::Read));
        vm.flush(delete(&vm, 0));
        assert!(vm.snp_rmp_covered().is_empty());
        assert_eq!(vm.snp_rmp_entry(pfn(0)), None);
        assert_eq!(vm.stats().rmp_pages_unassigned, 512);
        // Re-created at another GPA: fresh, unassigned pages.
        slot(&vm, 0, GB, 4 * MB, 0x100_0000, MemslotFlags::GUEST_MEMFD).ignore();
        let g = GB >> 12;
        vm.flush(vm.set_memory_attributes(range(g, 1024), true).unwrap());
        assert!(!vm.snp_rmp_entry(pfn(0)).unwrap().assigned);
        assert!(matches!(
            fault(vm.snp_stage2(V0, private(&vm, g), Access::Read, CTX)),
            Stage2Fault::PageNotValidated { .. }
        ));
        assert_eq!(vm.snp_rmp_entry(pfn(0)).unwrap().gfn, Gfn::new(g));
    }

    #[test]
    fn vmpl_permissions_restrict_the_translation_and_revoke_flushes() {
        let vm = snp_vm();
        let gpa = private(&vm, 600);
        assert!(matches!(
            vm.snp_pvalidate(V0, private(&vm, 512), Vmpl::Vmpl0, 1, true),
            SnpInsnOutcome::Completed { eax: 0, .. }
        ));
        let vmpl1 = SnpAccessCtx {
            vmpl: Vmpl::Vmpl1,
            ..CTX
        };
        // VMPL1 has nothing yet: #NPF with the VMPL bit, which KVM cannot fix
        // (the 2M page is PSMASHed first, as sev_handle_rmp_fault() does).
        assert!(matches!(
            fault(vm.snp_stage2(V0, gpa, Access::Read, vmpl1)),
            Stage2Fault::RmpSmashed { .. }
        ));
        match fault(vm.snp_stage2(V0, gpa, Access::Read, vmpl1)) {
            Stage2Fault::RmpNestedPageFault { error_code, .. } => {
                assert_ne!(error_code & pferr::VMPL, 0);
                assert_ne!(error_code & pferr::RMP, 0);
            }
            f => panic!("{f:?}"),
        }
        // RMPADJUST from VMPL0: VMPL1 may read. 4K now (the 2M entry was
        // smashed).
        let rdx = 1 | (1 << 8);
        let (eax, _, f) = done(vm.snp_rmpadjust(V0, gpa, Vmpl::Vmpl0, 0, rdx));
        assert_eq!((eax, f.is_needed()), (0, false));
        let t = mapped(vm.snp_stage2(V0, gpa, Access::Read, vmpl1));
        assert!(t.perms.read && !t.perms.write && !t.perms.exec);
        assert!(matches!(
            fault(vm.snp_stage2(V0, gpa, Access::Write, vmpl1)),
            Stage2Fault::RmpNestedPageFault { .. }
        ));
        // VMPL1 cannot grant itself more, nor adjust VMPL0.
        assert_eq!(
            done(vm.snp_rmpadjust(V0, gpa, Vmpl::Vmpl1, 0, 1 | (0xf << 8))).0,
            2
        );
        // Revoking needs a flush.
        let (eax, _, f) = done(vm.snp_rmpadjust(V0, gpa, Vmpl::Vmpl0, 0, 1));
        assert_eq!((eax, f.request()), (0, Some(FlushRequest::REMOTE_ALL)));
        vm.flush(f);
        // RMPADJUST of a page the guest has not validated: #VC.
        assert_eq!(
            vm.snp_rmpadjust(V0, private(&vm, 5), Vmpl::Vmpl0, 0, rdx),
            SnpInsnOutcome::Retry {
                flush: Flush::remote_if(true)
            }
        );
        assert_eq!(
            vm.snp_rmpadjust(V0, private(&vm, 5), Vmpl::Vmpl0, 0, rdx),
            SnpInsnOutcome::Fault(Stage2Fault::PageNotValidated {
                gpa: private(&vm, 5)
            })
        );
    }

    #[test]
    fn fetches_and_page_walks_are_private_whatever_the_c_bit() {
        let vm = snp_vm();
        assert!(matches!(
            vm.snp_pvalidate(V0, private(&vm, 0), Vmpl::Vmpl0, 1, true),
            SnpInsnOutcome::Completed { eax: 0, .. }
        ));
        // A fetch through a C-bit-clear mapping of a private page: allowed,
        // exec only (data through that mapping is shared: implicit
        // conversion exit).
        let t = mapped(vm.snp_stage2(V0, shared(&vm, 3), Access::Fetch, CTX));
        assert!(t.private && t.perms.exec && !t.perms.read && !t.perms.write);
        assert!(matches!(
            fault(vm.snp_stage2(V0, shared(&vm, 3), Access::Read, CTX)),
            Stage2Fault::MemoryFault { private: false, .. }
        ));
        let walk = SnpAccessCtx {
            page_walk: true,
            ..CTX
        };
        let t = mapped(vm.snp_stage2(V0, shared(&vm, 3), Access::Read, walk));
        assert!(t.private && t.perms.read && !t.perms.write && !t.perms.exec);
        // Other VM types: snp_stage2 is stage2.
        let d = super::vm(VmType::Default);
        slot(&d, 0, 0, 2 * MB, 0, MemslotFlags::NONE).ignore();
        assert_eq!(
            d.snp_stage2(V0, Gpa::new(0x1000), Access::Fetch, CTX),
            d.stage2(V0, Gpa::new(0x1000), Access::Fetch)
        );
    }

    #[test]
    fn c_bit_clear_write_to_an_assigned_page_is_an_rmp_npf() {
        // A shared-only slot whose backing page the RMP assigns to the
        // guest. No memslot change gets there (a slot may not alias a
        // guest_memfd slot's backing), so the test assigns the page
        // itself: the RMP check is the hardware's, whatever the
        // hypervisor did.
        let vm = snp_vm();
        slot(&vm, 1, GB, 4 * KB4, 0x200_0000, MemslotFlags::NONE).ignore();
        let g = shared(&vm, GB >> 12);
        mapped(vm.snp_stage2(V0, g, Access::Write, CTX));
        let rmp = &vm.private.snp().unwrap().rmp;
        let page = Pfn::new(0x2000);
        rmp.add_covered(crate::rmp::PfnRange::from_start_len(page, 1).unwrap())
            .unwrap();
        rmp.gmem_prepare(
            page,
            Gfn::new(GB >> 12),
            PageLevel::Size4K,
            vm.config().asid,
        )
        .unwrap();
        match fault(vm.snp_stage2(V0, g, Access::Write, CTX)) {
            Stage2Fault::RmpNestedPageFault { error_code, .. } => {
                assert_eq!(
                    error_code & (pferr::RMP | pferr::WRITE | pferr::ENC),
                    pferr::RMP | pferr::WRITE
                );
            }
            f => panic!("{f:?}"),
        }
        assert_eq!(
            fault(vm.snp_stage2(V0, g, Access::Read, CTX)),
            Stage2Fault::RmpCiphertextRead { gpa: g }
        );
    }

    const KB4: u64 = 4096;

    #[test]
    fn snp_config_asid() {
        assert!(Vm::new(VmConfig {
            asid: crate::rmp::Asid::HYPERVISOR,
            ..VmConfig::new(VmType::Snp)
        })
        .is_err());
        let vm = Vm::new(VmConfig {
            asid: crate::rmp::Asid::new(7).unwrap(),
            ..VmConfig::new(VmType::Snp)
        })
        .unwrap();
        slot(&vm, 0, 0, 2 * MB, 0, MemslotFlags::GUEST_MEMFD).ignore();
        vm.flush(vm.set_memory_attributes(range(0, 1), true).unwrap());
        mapped(vm.stage2(V0, private(&vm, 0), Access::Read));
        assert_eq!(vm.snp_rmp_entry(Pfn::new(0)).unwrap().asid.raw(), 7);
    }

    #[test]
    fn teardown_frees_guest_memfd() {
        let vm = snp_vm();
        mapped(vm.stage2(V0, private(&vm, 0), Access::Read));
        vm.flush(vm.teardown());
        assert!(!vm.snp_rmp_entry(pfn(0)).unwrap().assigned);
    }
}

#[test]
fn tlb_tracking_names_the_zap_a_flush_is_owed_for() {
    let vm = vm(VmType::Default);
    slot(&vm, 0, 0, 4 * MB, 0, MemslotFlags::NONE).ignore();
    let (gpa, other) = (Gpa::new(0x5000), Gpa::new(0x20_9000));
    // Off (the default): zaps mark nothing.
    vm.tlb_access(V0, gpa, Access::Write);
    vm.zap_gfn_range(range(5, 1), ZapFilter::ALL).ignore();
    assert_eq!(vm.tlb_missing_flush(V0, gpa), None);

    vm.set_tlb_tracking(true);
    vm.flush(vm.request_flush(V0, FlushKind::AllRoots));
    vm.tlb_access(V0, gpa, Access::Write);
    vm.tlb_access(V0, other, Access::Read);
    vm.tlb_access(VcpuId(1), gpa, Access::Read);
    assert_eq!(vm.tlb_missing_flush(V0, gpa), None);
    let f = vm.zap_gfn_range(range(4, 2), ZapFilter::ALL);
    let (t, zap) = vm.tlb_missing_flush(V0, gpa).unwrap();
    assert_eq!(t.gfn, gpa.gfn());
    assert_eq!(zap.range, range(4, 2));
    assert_eq!(zap.reason, ZapReason::Range);
    assert_eq!(zap.root, t.root);
    // The zap names only the leaves it removed, on every vCPU.
    assert_eq!(vm.tlb_missing_flush(V0, other), None);
    assert_eq!(vm.tlb_missing_flush(VcpuId(1), gpa).unwrap().1, zap);
    // A later zap of the same frame is the one named.
    let g = vm.zap_all_fast();
    let (_, last) = vm.tlb_missing_flush(V0, gpa).unwrap();
    assert!(last.seq > zap.seq && last.reason == ZapReason::ZapAllFast);
    // A refill installs a fresh translation; the flush drops everything.
    vm.flush(vm.request_flush(V0, FlushKind::AllRoots));
    vm.tlb_access(V0, gpa, Access::Write);
    assert_eq!(vm.tlb_missing_flush(V0, gpa), None);
    assert!(vm.tlb_missing_flush(VcpuId(1), gpa).is_some());
    vm.flush(f.merge(g));
    assert_eq!(vm.tlb_missing_flush(VcpuId(1), gpa), None);
}

#[test]
fn slot_zap_all_quirk_toggles_for_default_vms_only() {
    let vm = Vm::new(VmConfig::new(VmType::Default)).unwrap();
    assert!(vm.slot_zap_all());
    slot(&vm, 0, 0, 8 * MB, 0, MemslotFlags::NONE).ignore();
    slot(&vm, 1, GB, 8 * MB, GB, MemslotFlags::NONE).ignore();
    mapped(vm.stage2(V0, Gpa::new(0), Access::Read));
    mapped(vm.stage2(V0, Gpa::new(GB), Access::Read));
    // Quirk off: deleting slot 1 zaps only its leaves, the root stays.
    assert!(vm.set_slot_zap_all_quirk(false));
    assert!(!vm.slot_zap_all());
    let root = vm.root_id(RootRole::Direct);
    vm.flush(delete(&vm, 1));
    assert_eq!(vm.root_id(RootRole::Direct), root);
    assert_eq!(vm.leaves().len(), 1);
    // On again: the next deletion replaces the root.
    assert!(vm.set_slot_zap_all_quirk(true));
    vm.flush(delete(&vm, 0));
    assert_ne!(vm.root_id(RootRole::Direct), root);
    for t in [VmType::SwProtected, VmType::Tdx, VmType::Snp] {
        let vm = Vm::new(VmConfig::new(t)).unwrap();
        assert!(!vm.set_slot_zap_all_quirk(true), "{t}");
        assert!(!vm.slot_zap_all(), "{t}");
    }
}

/// A device addresses the memory behind the memslots, which need not sit
/// at the GPAs the guest uses: a slot moved to 1G keeps its backing at 64M,
/// and a private page there is out of a device's reach at 64M, not at 1G.
#[test]
fn devices_are_judged_by_the_gpas_that_use_their_backing() {
    use crate::rmp::DeviceAccess;
    let vm = vm(VmType::SwProtected);
    let pm = pmem(VmType::SwProtected);
    vm.flush(slot(&vm, 0, 0, 16 * MB, 0, pm));
    vm.flush(slot(&vm, 1, GB, 2 * MB, 64 * MB, pm));
    vm.flush(vm.set_memory_attributes(range(GB >> 12, 1), true).unwrap());
    let dev = |addr: u64, write| vm.device_access_backing(BackingAddr::new(addr), write);
    assert_eq!(dev(64 * MB, true), DeviceAccess::Blocked);
    assert_eq!(dev(64 * MB + 0xff8, false), DeviceAccess::Encrypted);
    // The next page of the slot is shared; so is slot 0's memory.
    assert_eq!(dev(64 * MB + 0x1000, true), DeviceAccess::Allowed);
    assert_eq!(dev(0x1000, true), DeviceAccess::Allowed);
    // Memory no slot backs (the slot's GPA itself among it) is no guest's.
    assert_eq!(dev(GB, true), DeviceAccess::Allowed);
    assert_eq!(dev(512 * MB, true), DeviceAccess::Allowed);
    // No second slot may alias the same backing, not even a shared-only
    // one: its shared alias would reach the private page.
    let alias = MemoryRegion {
        slot: MemslotId(2),
        flags: MemslotFlags::NONE,
        guest_phys_addr: Gpa::new(2 * GB),
        memory_size: 2 * MB,
        backing: BackingAddr::new(64 * MB),
    };
    assert_eq!(
        vm.set_memory_region(alias).map(Flush::ignore),
        Err(MemslotError::GmemBound(MemslotId(2)))
    );
    assert_eq!(dev(64 * MB, true), DeviceAccess::Blocked);
    vm.flush(vm.set_memory_attributes(range(GB >> 12, 1), false).unwrap());
    assert_eq!(dev(64 * MB, true), DeviceAccess::Allowed);
}

/// The stage-2 generation QEMU's stage-2 cache compares moves with every
/// change that can take back an answer (a zap, a conversion, a memslot
/// deletion), and an answer that allowed an access before a fault-in still
/// holds after it, unchanged.
#[test]
fn the_stage2_generation_moves_with_every_revoking_change() {
    let vm = vm(VmType::SwProtected);
    slot(&vm, 0, 0, 4 * MB, 0x100_0000, MemslotFlags::GUEST_MEMFD).ignore();
    let a = |gfn: u64| Gpa::new(gfn << 12);
    let g = || {
        vm.stage2_generation()
            .load(std::sync::atomic::Ordering::Acquire)
    };
    let first = mapped(vm.stage2(V0, a(5), Access::Write));
    let g0 = g();
    // Another fault-in grants more and leaves the first answer as it was.
    mapped(vm.stage2(V0, a(600), Access::Write));
    assert_eq!(
        mapped(vm.stage2(V0, a(5), Access::Write)).backing,
        first.backing
    );
    let mut last = g0;
    let mut moved = |what: &str| {
        let now = g();
        assert!(now != last && now % 2 == 0, "{what}: {last} -> {now}");
        last = now;
    };
    vm.flush(vm.zap_gfn_range(range(0, 512), ZapFilter::ALL));
    moved("zap");
    mapped(vm.stage2(V0, a(6), Access::Read));
    vm.flush(vm.set_memory_attributes(range(0, 512), true).unwrap());
    moved("conversion");
    vm.flush(delete(&vm, 0));
    moved("memslot deletion");
}
