//! The TLB model (`tlb.rs`): stale entries until a flush, flushes of the
//! current root, the zap a flush is owed for.

use super::*;

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
fn range_flush_drops_only_the_range() {
    let vm = vm(VmType::Default);
    slot(&vm, 0, 0, 4 * MB, 0, MemslotFlags::NONE).ignore();
    for v in [V0, VcpuId(1)] {
        for gfn in [5, 6, 0x300] {
            assert!(matches!(
                vm.tlb_access(v, Gfn::new(gfn).gpa(), Access::Read),
                TlbAccess::Filled(_)
            ));
        }
    }
    let req = FlushRequest::remote_range(range(6, 1));
    assert_eq!(vm.flush(Flush::new(req)), Some(req));
    for v in [V0, VcpuId(1)] {
        let mut left: Vec<u64> = vm.tlb_entries(v).iter().map(|(g, _)| *g).collect();
        left.sort_unstable();
        assert_eq!(left, [5, 0x300], "vCPU {v:?}");
    }
    // Merged with a flush of everything, nothing is left.
    let all = Flush::new(req).merge(Flush::remote_if(true));
    assert_eq!(vm.flush(all), Some(FlushRequest::REMOTE_ALL));
    assert!(vm.tlb_entries(V0).is_empty());
}
