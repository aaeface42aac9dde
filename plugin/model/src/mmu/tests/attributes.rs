//! Memory attributes (`attributes.rs`): private/shared conversions and what
//! they zap.

use super::*;

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
