//! KVM's selftests (tools/testing/selftests/kvm), rewritten as model tests:
//! the same scenarios, driven through the model's API instead of a real
//! guest. Memory content is modelled by a small page store keyed by backing
//! frame, and a conversion discards the content of the converted frames, as
//! QEMU+KVM do.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use cvmem_model::*;
use parking_lot::Mutex;

const PAGE: u64 = 4096;
const MB: u64 = 1 << 20;
const GB: u64 = 1 << 30;

fn region(id: u16, gpa: u64, size: u64, backing: u64, flags: MemslotFlags) -> MemoryRegion {
    MemoryRegion {
        slot: MemslotId(id),
        flags,
        guest_phys_addr: Gpa::new(gpa),
        memory_size: size,
        backing: BackingAddr::new(backing),
    }
}

fn range_bytes(gpa: u64, size: u64) -> GfnRange {
    GfnRange::from_start_len(Gfn::new(gpa / PAGE), size / PAGE).unwrap()
}

/// Lets the vCPU threads make some progress (at most 2 ms) between host
/// operations, without yielding the host's time slice away.
fn wait_progress(progress: &AtomicU64, n: u64) {
    let start = progress.load(Ordering::Relaxed);
    let t0 = std::time::Instant::now();
    while progress.load(Ordering::Relaxed) < start + n
        && t0.elapsed() < std::time::Duration::from_millis(2)
    {
        std::hint::spin_loop();
    }
}

/// The VMM side: the model plus guest memory content (one byte pattern per
/// 4K backing frame; absent = zero).
struct Host {
    vm: Vm,
    mem: Mutex<HashMap<u64, u8>>,
    implicit_conversions: AtomicU64,
}

impl Host {
    fn new(t: VmType, vcpus: u32) -> Arc<Host> {
        Arc::new(Host {
            vm: Vm::new(VmConfig {
                max_vcpus: vcpus,
                ..VmConfig::new(t)
            })
            .unwrap(),
            mem: Mutex::new(HashMap::new()),
            implicit_conversions: AtomicU64::new(0),
        })
    }

    /// KVM_SET_MEMORY_ATTRIBUTES from the VMM, with the flush done at once
    /// and the converted frames discarded.
    fn convert(&self, range: GfnRange, private: bool) {
        let f = self.vm.set_memory_attributes(range, private).unwrap();
        self.vm.flush(f);
        let slots = self.vm.memslots();
        let mut mem = self.mem.lock();
        for g in range.iter() {
            if let Some(s) = slots.find(g) {
                mem.remove(&s.pfn_of(g).raw());
            }
        }
    }

    /// The host writes shared memory directly (the selftest's host-side
    /// memset of the shared view).
    fn host_write(&self, gfn: u64, byte: u8) {
        let slots = self.vm.memslots();
        let s = slots.find(Gfn::new(gfn)).unwrap();
        self.mem.lock().insert(s.pfn_of(Gfn::new(gfn)).raw(), byte);
    }
}

/// One vCPU of the guest.
struct Guest {
    host: Arc<Host>,
    vcpu: VcpuId,
}

impl Guest {
    fn alias(&self, private: bool) -> Alias {
        match self.host.vm.vm_type() {
            VmType::SwProtected => Alias::ByAttributes,
            _ if private => Alias::Private,
            _ => Alias::Shared,
        }
    }

    /// An access through the TLB model; memory-fault exits are handled as
    /// QEMU does (`kvm_convert_memory()` on KVM_EXIT_MEMORY_FAULT): convert
    /// the page and re-enter.
    fn access(&self, gfn: u64, private: bool, access: Access) -> Translation {
        let vm = &self.host.vm;
        let gpa = vm.alias().encode(Gfn::new(gfn), self.alias(private));
        loop {
            match vm.tlb_access(self.vcpu, gpa, access) {
                TlbAccess::Filled(t)
                | TlbAccess::Hit {
                    translation: t,
                    stale: false,
                } => {
                    if vm.vm_type() != VmType::SwProtected {
                        assert_eq!(t.private, private);
                    }
                    return t;
                }
                TlbAccess::Hit {
                    stale: true,
                    translation,
                } => {
                    panic!("stale TLB entry {translation:?}: every conversion was flushed at once")
                }
                TlbAccess::Fault(Stage2Fault::MemoryFault { gfn, private, .. }) => {
                    self.host
                        .implicit_conversions
                        .fetch_add(1, Ordering::Relaxed);
                    self.host.convert(GfnRange::one(gfn), private);
                }
                TlbAccess::Fault(f) => panic!("unexpected exit {f:?} at gfn {gfn:#x}"),
            }
        }
    }

    fn write(&self, gpa: u64, size: u64, private: bool, byte: u8) {
        for g in (gpa / PAGE)..((gpa + size) / PAGE) {
            let t = self.access(g, private, Access::Write);
            self.host.mem.lock().insert(t.backing.pfn().raw(), byte);
        }
    }

    fn check(&self, gpa: u64, size: u64, private: bool, byte: u8) {
        for g in (gpa / PAGE)..((gpa + size) / PAGE) {
            let t = self.access(g, private, Access::Read);
            let got = self
                .host
                .mem
                .lock()
                .get(&t.backing.pfn().raw())
                .copied()
                .unwrap_or(0);
            assert_eq!(got, byte, "gfn {g:#x} private={private}");
        }
    }

    /// KVM_HC_MAP_GPA_RANGE / MapGPA / page-state change: an explicit
    /// conversion requested by the guest.
    fn map(&self, gpa: u64, size: u64, private: bool) {
        self.host.convert(range_bytes(gpa, size), private);
    }
}

/// private_mem_conversions_test: per vCPU, a 4 MiB region; for each stage
/// (offset, size) convert to private, write and check, convert the odd pages
/// back to shared while the even ones stay private, then convert all back.
fn conversions(t: VmType, nr_vcpus: u32, nr_memslots: u16) {
    const PER_CPU: u64 = 4 * MB;
    const BASE: u64 = GB;
    let host = Host::new(t, nr_vcpus);
    let total = PER_CPU * nr_vcpus as u64;
    let per_slot = total / nr_memslots as u64;
    for i in 0..nr_memslots {
        let gpa = BASE + i as u64 * per_slot;
        host.vm
            .set_memory_region(region(
                i,
                gpa,
                per_slot,
                0x7f00_0000_0000 + gpa,
                MemslotFlags::GUEST_MEMFD,
            ))
            .unwrap()
            .ignore();
    }
    let stages: [(u64, u64); 5] = [
        (0, PAGE),
        (0, 2 * MB),
        (PAGE, PAGE),
        (PAGE, 2 * MB),
        (2 * MB, PAGE),
    ];
    let threads: Vec<_> = (0..nr_vcpus)
        .map(|v| {
            let host = host.clone();
            thread::spawn(move || {
                let g = Guest {
                    host,
                    vcpu: VcpuId(v),
                };
                let base = BASE + v as u64 * PER_CPU;
                let init = 0xcc;
                g.write(base, PER_CPU, false, init);
                for (offset, size) in stages {
                    let gpa = base + offset;
                    let (p1, p2, p3) = (0x11, 0x22, 0x33);
                    g.write(gpa, size, false, p1);
                    g.map(gpa, size, true);
                    // Private memory starts zeroed (the shared data was
                    // discarded); write and check the private pattern.
                    g.check(gpa, size, true, 0);
                    g.write(gpa, size, true, p2);
                    g.check(gpa, size, true, p2);
                    // The rest of the region is untouched and still shared.
                    g.check(base, offset, false, init);
                    g.check(gpa + size, base + PER_CPU - gpa - size, false, init);
                    // Odd pages back to shared (holes in the private range).
                    for j in (0..size).step_by(PAGE as usize) {
                        if (j / PAGE) & 1 == 1 {
                            g.map(gpa + j, PAGE, false);
                            g.host.host_write((gpa + j) / PAGE, p3);
                            g.check(gpa + j, PAGE, false, p3);
                        } else {
                            g.check(gpa + j, PAGE, true, p2);
                        }
                    }
                    g.map(gpa, size, false);
                    g.check(gpa, size, false, 0);
                    g.write(gpa, size, false, init);
                }
                // Implicit conversion: touch the private alias of shared
                // memory (TDX/SNP exit with KVM_EXIT_MEMORY_FAULT; QEMU converts).
                if g.host.vm.vm_type() != VmType::SwProtected {
                    g.write(base, 2 * PAGE, true, 0x44);
                    g.check(base, 2 * PAGE, true, 0x44);
                    g.check(base, PAGE, false, 0);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = host.vm.stats();
    assert!(s.conversions > 0 && s.zaps > 0);
    if t != VmType::SwProtected {
        assert!(host.implicit_conversions.load(Ordering::Relaxed) >= 3 * nr_vcpus as u64);
    }
    // No leaf of the wrong alias survived any of it.
    let attrs = host.vm.attributes();
    for l in host.vm.leaves() {
        assert_eq!(
            attrs.private_ranges().uniform(l.range),
            Some(l.role == RootRole::Mirror),
            "{l:?}"
        );
    }
}

#[test]
fn private_mem_conversions_sw_protected() {
    conversions(VmType::SwProtected, 1, 1);
}

#[test]
fn private_mem_conversions_sw_protected_4_vcpus_2_slots() {
    conversions(VmType::SwProtected, 4, 2);
}

#[test]
fn private_mem_conversions_tdx() {
    conversions(VmType::Tdx, 2, 1);
}

#[test]
fn private_mem_conversions_snp() {
    conversions(VmType::Snp, 3, 3);
}

#[test]
fn private_mem_conversions_huge_pages_split_and_recover() {
    // The 2M stage on an sw-protected VM: a shared 2M leaf, then a 4K
    // conversion inside it forces 4K leaves, and converting back lets 2M
    // return once the 4K leaves are zapped.
    let host = Host::new(VmType::SwProtected, 1);
    host.vm
        .set_memory_region(region(
            0,
            GB,
            4 * MB,
            0x7f00_4000_0000,
            MemslotFlags::GUEST_MEMFD,
        ))
        .unwrap()
        .ignore();
    let g = Guest {
        host,
        vcpu: VcpuId(0),
    };
    assert_eq!(
        g.access(GB / PAGE, false, Access::Read).level,
        PageLevel::Size2M
    );
    g.map(GB + PAGE, PAGE, true);
    assert_eq!(
        g.access(GB / PAGE + 1, true, Access::Read).level,
        PageLevel::Size4K
    );
    assert_eq!(
        g.access(GB / PAGE, false, Access::Read).level,
        PageLevel::Size4K
    );
    g.map(GB + PAGE, PAGE, false);
    let f = g
        .host
        .vm
        .zap_gfn_range(range_bytes(GB, 2 * MB), ZapFilter::ALL);
    g.host.vm.flush(f);
    assert_eq!(
        g.access(GB / PAGE + 1, false, Access::Read).level,
        PageLevel::Size2M
    );
}

/// set_memory_region_test, test_move_memory_region: a vCPU keeps reading
/// while the host moves its memslot away and back; every read either maps the
/// slot's backing or exits to MMIO, never anything else.
#[test]
fn set_memory_region_move_while_accessed() {
    for quirk in [true, false] {
        let vm = Arc::new(
            Vm::new(VmConfig {
                max_vcpus: 1,
                slot_zap_all_quirk: quirk,
                ..VmConfig::new(VmType::Default)
            })
            .unwrap(),
        );
        const GPA: u64 = 0xc000_0000;
        const BACKING: u64 = 0x7f00_0000_0000;
        vm.set_memory_region(region(10, GPA, 2 * MB, BACKING, MemslotFlags::NONE))
            .unwrap()
            .ignore();
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(AtomicU64::new(0));
        let reader = {
            let (vm, stop, progress) = (vm.clone(), stop.clone(), progress.clone());
            thread::spawn(move || {
                let (mut mapped, mut mmio) = (0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    progress.fetch_add(1, Ordering::Relaxed);
                    match vm.stage2(VcpuId(0), Gpa::new(GPA + 0x1008), Access::Read) {
                        Stage2::Mapped(t) => {
                            assert_eq!(t.backing.raw(), BACKING + 0x1000);
                            mapped += 1;
                        }
                        Stage2::Fault(Stage2Fault::Mmio { .. }) => mmio += 1,
                        Stage2::Fault(f) => panic!("{f:?}"),
                    }
                }
                (mapped, mmio)
            })
        };
        for _ in 0..300 {
            wait_progress(&progress, 16);
            let f = vm
                .set_memory_region(region(
                    10,
                    GPA + 4 * GB,
                    2 * MB,
                    BACKING,
                    MemslotFlags::NONE,
                ))
                .unwrap();
            vm.flush(f);
            wait_progress(&progress, 16);
            let f = vm
                .set_memory_region(region(10, GPA, 2 * MB, BACKING, MemslotFlags::NONE))
                .unwrap();
            vm.flush(f);
        }
        stop.store(true, Ordering::Relaxed);
        let (mapped, _mmio) = reader.join().unwrap();
        assert!(mapped > 0);
        // Moving onto another slot is refused with EEXIST.
        vm.set_memory_region(region(11, 0, 2 * MB, 0, MemslotFlags::NONE))
            .unwrap()
            .ignore();
        let e = vm
            .set_memory_region(region(10, MB, 2 * MB, BACKING, MemslotFlags::NONE))
            .unwrap_err();
        assert_eq!(e.errno(), "EEXIST");
    }
}

/// set_memory_region_test, test_delete_memory_region: delete the slot the
/// vCPU is reading while it reads, then delete slot 0 (code and stack): the
/// vCPU's instruction fetch from there is no longer backed by memory.
#[test]
fn set_memory_region_delete_while_accessed_and_slot_0() {
    for quirk in [true, false] {
        let vm = Arc::new(
            Vm::new(VmConfig {
                max_vcpus: 1,
                slot_zap_all_quirk: quirk,
                ..VmConfig::new(VmType::Default)
            })
            .unwrap(),
        );
        vm.set_memory_region(region(0, 0, 64 * MB, 0x7f00_0000_0000, MemslotFlags::NONE))
            .unwrap()
            .ignore();
        vm.set_memory_region(region(
            10,
            0xc000_0000,
            2 * MB,
            0x7e00_0000_0000,
            MemslotFlags::NONE,
        ))
        .unwrap()
        .ignore();
        let deleted = Arc::new(AtomicBool::new(false));
        let reader = {
            let (vm, deleted) = (vm.clone(), deleted.clone());
            thread::spawn(move || {
                // Keep reading until a read that started after the delete
                // finished has been seen to exit.
                loop {
                    let after = deleted.load(Ordering::Acquire);
                    let code = vm.stage2(VcpuId(0), Gpa::new(0x1000), Access::Fetch);
                    assert!(matches!(code, Stage2::Mapped(_)));
                    match vm.stage2(VcpuId(0), Gpa::new(0xc000_0000), Access::Read) {
                        Stage2::Mapped(_) => assert!(!after, "read a deleted slot"),
                        Stage2::Fault(Stage2Fault::Mmio { .. }) => {
                            if after {
                                return;
                            }
                        }
                        Stage2::Fault(f) => panic!("{f:?}"),
                    }
                }
            })
        };
        thread::sleep(std::time::Duration::from_millis(5));
        let f = vm
            .set_memory_region(region(10, 0, 0, 0, MemslotFlags::NONE))
            .unwrap();
        vm.flush(f);
        deleted.store(true, Ordering::Release);
        reader.join().unwrap();
        // Delete slot 0: the vCPU's next fetch exits (KVM then fails
        // emulation: KVM_EXIT_INTERNAL_ERROR or a shutdown).
        let f = vm
            .set_memory_region(region(0, 0, 0, 0, MemslotFlags::NONE))
            .unwrap();
        vm.flush(f);
        assert!(matches!(
            vm.stage2(VcpuId(0), Gpa::new(0x1000), Access::Fetch),
            Stage2::Fault(Stage2Fault::Mmio { .. })
        ));
        assert!(vm.leaves().is_empty());
        // Deleting it again: EINVAL.
        let e = vm
            .set_memory_region(region(0, 0, 0, 0, MemslotFlags::NONE))
            .unwrap_err();
        assert_eq!(e.errno(), "EINVAL");
    }
}

/// set_memory_region_test, test_add_max_memory_regions /
/// test_invalid_memory_region_flags / test_add_overlapping_private_memory_regions.
#[test]
fn set_memory_region_limits_flags_and_overlaps() {
    let vm = Vm::new(VmConfig::new(VmType::SwProtected)).unwrap();
    for i in 0..512u16 {
        vm.set_memory_region(region(i, i as u64 * 2 * MB, 2 * MB, 0, MemslotFlags::NONE))
            .unwrap()
            .ignore();
    }
    let e = vm
        .set_memory_region(region(32764, 4 * GB, 2 * MB, 0, MemslotFlags::NONE))
        .unwrap_err();
    assert_eq!(e, MemslotError::BadSlotId(MemslotId(32764)));
    let e = vm
        .set_memory_region(region(
            600,
            8 * GB,
            2 * MB,
            0,
            MemslotFlags::from_bits(1 << 5),
        ))
        .unwrap_err();
    assert!(matches!(e, MemslotError::InvalidFlags(_)));
    // Overlapping private slots: EEXIST, and deleting then re-adding works.
    let vm = Vm::new(VmConfig::new(VmType::SwProtected)).unwrap();
    let p = MemslotFlags::GUEST_MEMFD;
    vm.set_memory_region(region(0, GB, 4 * MB, 0, p))
        .unwrap()
        .ignore();
    // Each guest_memfd slot binds its own backing (kvm_gmem_bind()).
    vm.set_memory_region(region(1, GB + 4 * MB, 4 * MB, 4 * MB, p))
        .unwrap()
        .ignore();
    for (gpa, size) in [
        (GB, 2 * MB),
        (GB + 2 * MB, 4 * MB),
        (GB - 2 * MB, 4 * MB),
        (GB - 2 * MB, 16 * MB),
    ] {
        let e = vm
            .set_memory_region(region(2, gpa, size, 64 * MB, p))
            .unwrap_err();
        assert_eq!(e.errno(), "EEXIST", "{gpa:#x}+{size:#x}");
    }
    vm.set_memory_region(region(0, 0, 0, 0, p))
        .unwrap()
        .ignore();
    vm.set_memory_region(region(2, GB, 4 * MB, 0, p))
        .unwrap()
        .ignore();
}

/// memslot_modification_stress_test: vCPUs fault and access their memory
/// while the host adds and deletes a small memslot over and over (with and
/// without KVM_X86_QUIRK_SLOT_ZAP_ALL). Accesses stay correct; under the
/// quirk every delete throws the vCPUs' mappings away.
#[test]
fn memslot_modification_stress() {
    for quirk in [true, false] {
        const VCPUS: u32 = 2;
        const PER_VCPU: u64 = 8 * MB;
        let vm = Arc::new(
            Vm::new(VmConfig {
                max_vcpus: VCPUS,
                slot_zap_all_quirk: quirk,
                max_level: PageLevel::Size4K,
                ..VmConfig::new(VmType::Default)
            })
            .unwrap(),
        );
        vm.set_memory_region(region(
            0,
            0,
            VCPUS as u64 * PER_VCPU,
            0x7f00_0000_0000,
            MemslotFlags::NONE,
        ))
        .unwrap()
        .ignore();
        let stop = Arc::new(AtomicBool::new(false));
        let vcpus: Vec<_> = (0..VCPUS)
            .map(|v| {
                let (vm, stop) = (vm.clone(), stop.clone());
                thread::spawn(move || {
                    let base = v as u64 * PER_VCPU;
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) || n < 4096 {
                        let gpa = base + (n * PAGE) % PER_VCPU;
                        match vm.stage2(VcpuId(v), Gpa::new(gpa), Access::Write) {
                            Stage2::Mapped(t) => {
                                assert_eq!(t.backing.raw(), 0x7f00_0000_0000 + gpa)
                            }
                            Stage2::Fault(f) => panic!("{f:?}"),
                        }
                        n += 1;
                    }
                })
            })
            .collect();
        const EXTRA: u64 = 1 << 40;
        for _ in 0..500 {
            vm.set_memory_region(region(1, EXTRA, PAGE, 0x7e00_0000_0000, MemslotFlags::NONE))
                .unwrap()
                .ignore();
            let f = vm
                .set_memory_region(region(1, 0, 0, 0, MemslotFlags::NONE))
                .unwrap();
            vm.flush(f);
        }
        stop.store(true, Ordering::Relaxed);
        for v in vcpus {
            v.join().unwrap();
        }
        let s = vm.stats();
        if quirk {
            assert_eq!(s.roots_invalidated, 500);
        } else {
            assert_eq!(s.roots_invalidated, 0);
            // The deletes never touched the vCPUs' memory.
            assert_eq!(s.leaves_zapped, 0);
        }
    }
}
