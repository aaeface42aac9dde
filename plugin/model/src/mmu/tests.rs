use super::*;
use crate::rmp::RmpPageSize;

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
    let evs: Vec<Event> = rx.try_iter().collect();
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
    let evs: Vec<Event> = rx.try_iter().collect();
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
    let evs: Vec<Event> = rx.try_iter().collect();
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
        gpaw: crate::vm::Gpaw::Bits52,
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
