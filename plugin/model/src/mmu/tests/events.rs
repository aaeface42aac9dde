//! The events the MMU records for faults, maps, zaps, flushes and conversions.

use super::*;

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
