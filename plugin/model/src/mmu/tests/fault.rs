//! The fault path (`fault.rs`): mapping sizes, exits, TDX aliases, and faults
//! racing with invalidations.

use super::*;

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
