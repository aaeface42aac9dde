//! Zaps (`zap.rs`): the fast zap of all roots, per-slot zaps, exported and
//! mirror roots, teardown order.

use super::*;

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
