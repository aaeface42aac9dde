//! Device and host access (`host.rs`).

use super::*;

/// A device addresses the memory behind the memslots, which need not sit
/// at the GPAs the guest uses: a slot moved to 1G keeps its backing at 64M,
/// and a private page there is out of a device's reach at 64M, not at 1G.
#[test]
fn devices_are_judged_by_the_gpas_that_use_their_backing() {
    use crate::rmp::DeviceAccess;
    let vm = vm(VmType::SwProtected);
    let pm = pmem(VmType::SwProtected);
    vm.flush(slot(&vm, 0, 0, 16 * MB, 0, pm));
    vm.flush(slot(&vm, 1, GB, 2 * MB, 64 * MB, pm));
    vm.flush(vm.set_memory_attributes(range(GB >> 12, 1), true).unwrap());
    let dev = |addr: u64, write| vm.device_access_backing(BackingAddr::new(addr), write);
    assert_eq!(dev(64 * MB, true), DeviceAccess::Blocked);
    assert_eq!(dev(64 * MB + 0xff8, false), DeviceAccess::Encrypted);
    // The next page of the slot is shared; so is slot 0's memory.
    assert_eq!(dev(64 * MB + 0x1000, true), DeviceAccess::Allowed);
    assert_eq!(dev(0x1000, true), DeviceAccess::Allowed);
    // Memory no slot backs (the slot's GPA itself among it) is no guest's.
    assert_eq!(dev(GB, true), DeviceAccess::Allowed);
    assert_eq!(dev(512 * MB, true), DeviceAccess::Allowed);
    // No second slot may alias the same backing, not even a shared-only
    // one: its shared alias would reach the private page.
    let alias = MemoryRegion {
        slot: MemslotId(2),
        flags: MemslotFlags::NONE,
        guest_phys_addr: Gpa::new(2 * GB),
        memory_size: 2 * MB,
        backing: BackingAddr::new(64 * MB),
    };
    assert_eq!(
        vm.set_memory_region(alias).map(Flush::ignore),
        Err(MemslotError::GmemBound(MemslotId(2)))
    );
    assert_eq!(dev(64 * MB, true), DeviceAccess::Blocked);
    vm.flush(vm.set_memory_attributes(range(GB >> 12, 1), false).unwrap());
    assert_eq!(dev(64 * MB, true), DeviceAccess::Allowed);
}
