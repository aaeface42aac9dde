//! Memslot changes (`memslots.rs`): moves, the KVM_SET_USER_MEMORY_REGION
//! wrappers, growing slots, the zap-all quirk.

use super::*;

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
