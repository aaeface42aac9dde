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

/// A 4K leaf answers for its whole 2M range only when the 511 others of
/// its table are there with the same bits over contiguous backing: a
/// missing page, a page converted away, or two memslots whose backing is
/// not contiguous each make the range non-uniform; a huge leaf never is.
#[test]
fn a_2m_range_of_alike_4k_leaves_is_uniform() {
    let vm = vm(VmType::Tdx);
    slot(&vm, 0, 0, 6 * MB, 0x4000_0000, MemslotFlags::GUEST_MEMFD).ignore();
    vm.flush(vm.set_memory_attributes(range(0, 1536), true).unwrap());
    let map = |g: u64| mapped(vm.stage2(V0, private(&vm, g), Access::Write));
    // gfns 512..1024: every page but the last, then the last.
    for g in 512..1023 {
        map(g);
    }
    let t = map(700);
    assert_eq!(t.level, PageLevel::Size4K);
    assert!(!vm.leaf_range_uniform(&t), "page 1023 missing");
    map(1023);
    assert!(vm.leaf_range_uniform(&t));
    assert!(vm.leaf_range_uniform(&map(512)));
    // Every page but the first of gfns 1024..1536.
    for g in 1025..1536 {
        map(g);
    }
    assert!(!vm.leaf_range_uniform(&map(1100)), "page 1024 missing");
    // A page converted to shared leaves a hole.
    vm.flush(vm.set_memory_attributes(range(600, 1), false).unwrap());
    assert!(!vm.leaf_range_uniform(&map(700)));
    // The shared alias of a default VM: 2M leaves are their own span.
    let plain = super::vm(VmType::Default);
    slot(&plain, 0, 0, 4 * MB, 0x4000_0000, MemslotFlags::NONE).ignore();
    let t = mapped(plain.stage2(V0, Gpa::new(0x1000), Access::Read));
    assert_eq!(t.level, PageLevel::Size2M);
    assert!(!plain.leaf_range_uniform(&t));
    // Two slots in one 2M range: 4K leaves, alike but for the frame, which
    // is contiguous only if the second slot's backing follows the first's.
    let two_slots = |second: u64| {
        let vm = super::vm(VmType::Default);
        slot(&vm, 0, 0, MB, 0x4000_0000, MemslotFlags::NONE).ignore();
        slot(&vm, 1, MB, MB, second, MemslotFlags::NONE).ignore();
        for g in 0..512 {
            mapped(vm.stage2(V0, Gpa::new(g << 12), Access::Read));
        }
        let t = mapped(vm.stage2(V0, Gpa::new(0x5000), Access::Read));
        assert_eq!(t.level, PageLevel::Size4K);
        vm.leaf_range_uniform(&t)
    };
    assert!(!two_slots(0x8000_0000));
    assert!(two_slots(0x4010_0000));
}

/// In a running TD, a page the host added but the guest has not accepted
/// (PENDING: a leaf without guest access) keeps its 2M range from being
/// uniform until it is accepted.
#[test]
fn a_pending_page_breaks_the_uniform_range() {
    let vm = vm(VmType::Tdx);
    slot(&vm, 0, 0, 4 * MB, 0x4000_0000, MemslotFlags::GUEST_MEMFD).ignore();
    vm.flush(vm.set_memory_attributes(range(0, 1024), true).unwrap());
    assert!(vm.tdx_finalize().is_success());
    let accept = |g: u64| loop {
        match vm.tdx_accept(V0, g << 12) {
            crate::sept::AcceptOutcome::ExitToHost { gpa, .. } => {
                vm.tdx_handle_accept_exit(V0, gpa).unwrap()
            }
            out => break out,
        }
    };
    for g in 512..1023 {
        assert!(matches!(
            accept(g),
            crate::sept::AcceptOutcome::Accepted { .. }
        ));
    }
    // The last page faults in as PENDING: a #VE, and a leaf in the table.
    assert!(matches!(
        vm.stage2(V0, private(&vm, 1023), Access::Read),
        Stage2::Fault(Stage2Fault::VirtualizationException { .. })
    ));
    let t = mapped(vm.stage2(V0, private(&vm, 600), Access::Read));
    assert!(!vm.leaf_range_uniform(&t), "page 1023 pending");
    assert!(matches!(
        accept(1023),
        crate::sept::AcceptOutcome::Accepted { .. }
    ));
    assert!(vm.leaf_range_uniform(&t));
}
