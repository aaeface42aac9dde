//! Multi-threaded stress: vCPU threads look up and fault while a host thread
//! churns memslots, attributes and zaps. Checked on every access:
//! - no torn translation: a mapping's backing address always belongs to the
//!   gfn asked for, in one memslot incarnation;
//! - no stale install: a mapping never comes from a memslot incarnation that
//!   was deleted before the access began, nor from attributes that were
//!   replaced before it began.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use cvmem_model::*;

const NPAGES: u64 = 4096;
const GEN_SHIFT: u32 = 36;
const READERS: u32 = 3;

fn region(gen: u64, flags: MemslotFlags) -> MemoryRegion {
    MemoryRegion {
        slot: MemslotId(0),
        flags,
        guest_phys_addr: Gpa::new(0),
        memory_size: if gen == 0 { 0 } else { NPAGES << 12 },
        backing: BackingAddr::new(gen << GEN_SHIFT),
    }
}

/// Lets the readers make some progress (at most 2 ms), without the host
/// yielding its time slice away on an oversubscribed machine.
fn wait_progress(progress: &AtomicU64, n: u64) {
    let start = progress.load(Relaxed);
    let t0 = Instant::now();
    while progress.load(Relaxed) < start + n && t0.elapsed() < Duration::from_millis(2) {
        std::hint::spin_loop();
    }
}

/// A tiny xorshift so that threads pick different pages without a crate.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

#[test]
fn memslot_churn_never_installs_a_deleted_incarnation() {
    for quirk in [true, false] {
        let vm = Arc::new(
            Vm::new(VmConfig {
                max_vcpus: READERS,
                slot_zap_all_quirk: quirk,
                ..VmConfig::new(VmType::Default)
            })
            .unwrap(),
        );
        let created = Arc::new(AtomicU64::new(0));
        let deleted = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(AtomicU64::new(0));
        let readers: Vec<_> = (0..READERS)
            .map(|v| {
                let (vm, created, deleted, done) =
                    (vm.clone(), created.clone(), deleted.clone(), done.clone());
                let progress = progress.clone();
                thread::spawn(move || {
                    let mut x = 0x9e37_79b9_7f4a_7c15 ^ (v as u64 + 1);
                    let (mut mapped, mut accesses) = (0u64, 0u64);
                    while !done.load(SeqCst) {
                        let gfn = next(&mut x) % NPAGES;
                        let access = [Access::Read, Access::Write, Access::Fetch][(x % 3) as usize];
                        let d = deleted.load(SeqCst);
                        let r = if x & 8 == 0 {
                            vm.stage2(VcpuId(v), Gpa::new(gfn << 12), access)
                        } else {
                            match vm.lookup(VcpuId(v), Gpa::new(gfn << 12), access) {
                                Some(t) => Stage2::Mapped(t),
                                None => Stage2::Fault(Stage2Fault::Mmio { gpa: Gpa::new(0) }),
                            }
                        };
                        let c = created.load(SeqCst);
                        accesses += 1;
                        progress.fetch_add(1, Relaxed);
                        match r {
                            Stage2::Mapped(t) => {
                                mapped += 1;
                                let gen = t.backing.raw() >> GEN_SHIFT;
                                let off = t.backing.raw() & ((1 << GEN_SHIFT) - 1);
                                assert_eq!(
                                    off,
                                    gfn << 12,
                                    "torn translation {t:?} for gfn {gfn:#x}"
                                );
                                assert!(
                                    gen > d,
                                    "stale install: gen {gen} was deleted before the access ({d})"
                                );
                                assert!(gen <= c, "gen {gen} from the future ({c})");
                                assert_eq!(t.gfn, Gfn::new(gfn));
                            }
                            Stage2::Fault(Stage2Fault::Mmio { .. }) => {}
                            Stage2::Fault(f) => panic!("{f:?}"),
                        }
                    }
                    (mapped, accesses)
                })
            })
            .collect();
        for gen in 1..=400u64 {
            // Announced before it exists: a reader may see it as soon as
            // set_memory_region publishes it.
            created.store(gen, SeqCst);
            vm.set_memory_region(region(gen, MemslotFlags::NONE))
                .unwrap()
                .ignore();
            wait_progress(&progress, 64);
            if gen % 7 == 0 {
                let f = vm.zap_all_fast();
                vm.flush(f);
            }
            if gen % 5 == 0 {
                let r = GfnRange::from_start_len(Gfn::new(gen * 13 % NPAGES), 300).unwrap();
                let f = vm.zap_gfn_range(r, ZapFilter::ALL);
                vm.flush(f);
            }
            let f = vm.set_memory_region(region(0, MemslotFlags::NONE)).unwrap();
            vm.flush(f);
            deleted.store(gen, SeqCst);
        }
        done.store(true, SeqCst);
        let mut mapped = 0;
        for r in readers {
            mapped += r.join().unwrap().0;
        }
        assert!(mapped > 0);
        assert!(vm.leaves().is_empty());
        let f = vm.teardown();
        vm.flush(f);
        assert_eq!(vm.stats().live_tables, 0);
    }
}

#[test]
fn conversion_churn_never_installs_the_old_alias() {
    for t in [VmType::Tdx, VmType::Snp, VmType::SwProtected] {
        let vm = Arc::new(
            Vm::new(VmConfig {
                max_vcpus: READERS,
                ..VmConfig::new(t)
            })
            .unwrap(),
        );
        vm.set_memory_region(region(1, MemslotFlags::GUEST_MEMFD))
            .unwrap()
            .ignore();
        let all = GfnRange::from_start_len(Gfn::new(0), NPAGES).unwrap();
        // Epoch k: the whole slot is private iff k is odd. `busy` is set while
        // a conversion runs.
        let epoch = Arc::new(AtomicU64::new(0));
        let busy = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(AtomicU64::new(0));
        let readers: Vec<_> = (0..READERS)
            .map(|v| {
                let (vm, epoch, busy, done) = (vm.clone(), epoch.clone(), busy.clone(), done.clone());
                let progress = progress.clone();
                thread::spawn(move || {
                    let mut x = 0x2545_f491_4f6c_dd1d ^ (v as u64 + 7);
                    let mut checked = 0u64;
                    while !done.load(SeqCst) {
                        let gfn = next(&mut x) % NPAGES;
                        let alias = match t {
                            VmType::SwProtected => Alias::ByAttributes,
                            _ if x & 1 == 0 => Alias::Private,
                            _ => Alias::Shared,
                        };
                        let gpa = vm.alias().encode(Gfn::new(gfn), alias);
                        let (b0, e0) = (busy.load(SeqCst), epoch.load(SeqCst));
                        let r = vm.stage2(VcpuId(v), gpa, Access::Write);
                        // busy before epoch: a conversion that ends between
                        // the two loads must not look like a stable window.
                        let b1 = busy.load(SeqCst);
                        let e1 = epoch.load(SeqCst);
                        progress.fetch_add(1, Relaxed);
                        if let Stage2::Mapped(tr) = r {
                            assert_eq!(tr.backing.raw() & ((1 << GEN_SHIFT) - 1), gfn << 12, "torn {tr:?}");
                            if alias != Alias::ByAttributes {
                                assert_eq!(tr.private, alias == Alias::Private);
                            }
                        }
                        if b0 || b1 || e0 != e1 {
                            continue;
                        }
                        // Attributes were stable for the whole access.
                        checked += 1;
                        let private = e0 % 2 == 1;
                        match (r, alias) {
                            (Stage2::Mapped(tr), _) => {
                                assert_eq!(tr.private, private, "stale alias installed: {tr:?} at epoch {e0}")
                            }
                            (Stage2::Fault(Stage2Fault::MemoryFault { private: p, .. }), a) => {
                                assert_ne!(a, Alias::ByAttributes);
                                assert_ne!(
                                    p,
                                    private,
                                    "{t}: memory fault although the alias matches at epoch {e0} gfn {gfn:#x}; now private={} epoch={} busy={}",
                                    vm.is_private(Gfn::new(gfn)),
                                    epoch.load(SeqCst),
                                    busy.load(SeqCst)
                                );
                            }
                            (Stage2::Fault(f), _) => panic!("{f:?}"),
                        }
                    }
                    checked
                })
            })
            .collect();
        for k in 1..=600u64 {
            busy.store(true, SeqCst);
            let f = vm.set_memory_attributes(all, k % 2 == 1).unwrap();
            vm.flush(f);
            epoch.store(k, SeqCst);
            busy.store(false, SeqCst);
            wait_progress(&progress, 64);
            if k % 11 == 0 {
                let r = GfnRange::from_start_len(Gfn::new(k % NPAGES), 64).unwrap();
                let f = vm.zap_gfn_range(r, ZapFilter::ALL);
                vm.flush(f);
            }
        }
        done.store(true, SeqCst);
        let checked: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
        assert!(checked > 0, "{t}: no access ran in a stable window");
        let attrs = vm.attributes();
        for l in vm.leaves() {
            assert_eq!(
                attrs.private_ranges().uniform(l.range),
                Some(l.role == RootRole::Mirror)
            );
        }
    }
}
