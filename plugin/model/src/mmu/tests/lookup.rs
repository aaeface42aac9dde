//! The TDP lookup (`lookup.rs`): the per-vCPU leaf cache, the walk's depth,
//! and the stage-2 generation that lets QEMU reuse an answer.

use super::*;

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
