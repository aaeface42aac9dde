//! SEV-SNP: the RMP wired into the VM (the `private/snp.rs` backend, `snp.rs`).

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
    // Rescinding needs a flush of the page's translations (the 2M page):
    // the softTLB may hold them.
    let (eax, _, f) = done(vm.snp_pvalidate(V0, private(&vm, 0), Vmpl::Vmpl0, 1, false));
    let rescinded = FlushRequest::remote_range(range(0, 512));
    assert_eq!((eax, f.request()), (0, Some(rescinded)));
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
    // Revoking needs a flush of the page's translations.
    let (eax, _, f) = done(vm.snp_rmpadjust(V0, gpa, Vmpl::Vmpl0, 0, 1));
    let revoked = FlushRequest::remote_range(range(gpa.gfn().raw() & !(1 << 39), 1));
    assert_eq!((eax, f.request()), (0, Some(revoked)));
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
