//! Benchmarks of the model's hot path and host-side operations.
//!
//! `cargo bench -p cvmem-model` runs them all; `cargo bench -p cvmem-model --
//! lookup` only the lookups.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, Bencher, BenchmarkGroup, Criterion, SamplingMode,
};
use cvmem_model::*;

const MB: u64 = 1 << 20;
const GB: u64 = 1 << 30;
const V0: VcpuId = VcpuId(0);

fn vm(t: VmType, max_level: PageLevel, quirk: bool) -> Vm {
    Vm::new(VmConfig {
        max_level,
        private_max_level: max_level.min(t.default_private_max_level()),
        slot_zap_all_quirk: quirk,
        max_vcpus: 4,
        ..VmConfig::new(t)
    })
    .unwrap()
}

fn add_slot(vm: &Vm, id: u16, gpa: u64, size: u64) {
    let flags = if vm.vm_type().has_private_mem() {
        MemslotFlags::GUEST_MEMFD
    } else {
        MemslotFlags::NONE
    };
    vm.set_memory_region(MemoryRegion {
        slot: MemslotId(id),
        flags,
        guest_phys_addr: Gpa::new(gpa),
        memory_size: size,
        backing: BackingAddr::new(0x7f00_0000_0000 + gpa),
    })
    .unwrap()
    .ignore();
}

/// Faults in every 4K frame of `[gpa, gpa + size)` through `alias`.
fn prefault(vm: &Vm, gpa: u64, size: u64, alias: Alias) {
    let mut g = gpa >> 12;
    while g < (gpa + size) >> 12 {
        let t = match vm.stage2(V0, vm.alias().encode(Gfn::new(g), alias), Access::Write) {
            Stage2::Mapped(t) => t,
            Stage2::Fault(f) => panic!("{f:?}"),
        };
        g = t.page().end().raw();
    }
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("stage2_lookup");
    for (name, t, level, alias) in [
        (
            "default_4k",
            VmType::Default,
            PageLevel::Size4K,
            Alias::Shared,
        ),
        (
            "default_2m",
            VmType::Default,
            PageLevel::Size2M,
            Alias::Shared,
        ),
        (
            "tdx_private_4k",
            VmType::Tdx,
            PageLevel::Size4K,
            Alias::Private,
        ),
        (
            "sw_protected_private_4k",
            VmType::SwProtected,
            PageLevel::Size4K,
            Alias::ByAttributes,
        ),
    ] {
        let vm = vm(t, level, true);
        add_slot(&vm, 0, 0, 64 * MB);
        if alias != Alias::Shared {
            let all = GfnRange::from_start_len(Gfn::new(0), (64 * MB) >> 12).unwrap();
            vm.set_memory_attributes(all, true).unwrap().ignore();
        }
        prefault(&vm, 0, 64 * MB, alias);
        // 4096 pages spread over the slot, visited in a scrambled order.
        let gpas: Vec<Gpa> = (0..4096u64)
            .map(|i| vm.alias().encode(Gfn::new((i * 2654435761) % 16384), alias))
            .collect();
        let mut i = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(vm.lookup(V0, black_box(gpas[i]), Access::Read))
            })
        });
    }
    // lookup TDX private accepted (with SEPT check): a finalized TD whose
    // pages were AUGed on fault and accepted by the guest, so the lookup
    // passes the Secure-EPT (accessible-bit) check.
    {
        let vm = vm(VmType::Tdx, PageLevel::Size4K, true);
        add_slot(&vm, 0, 0, 64 * MB);
        let all = GfnRange::from_start_len(Gfn::new(0), (64 * MB) >> 12).unwrap();
        vm.set_memory_attributes(all, true).unwrap().ignore();
        assert!(vm.tdx_finalize().is_success());
        for gfn in 0..(64 * MB) >> 12 {
            let gpa = vm.alias().encode(Gfn::new(gfn), Alias::Private);
            assert!(matches!(
                vm.stage2(V0, gpa, Access::Write),
                Stage2::Fault(Stage2Fault::VirtualizationException { .. })
            ));
            assert!(matches!(
                vm.tdx_accept(V0, gpa.raw()),
                AcceptOutcome::Accepted { .. }
            ));
        }
        let gpas: Vec<Gpa> = (0..4096u64)
            .map(|i| {
                vm.alias()
                    .encode(Gfn::new((i * 2654435761) % 16384), Alias::Private)
            })
            .collect();
        assert!(vm.lookup(V0, gpas[1], Access::Read).is_some());
        let mut i = 0;
        g.bench_function("tdx_private_4k_accepted_sept", |b| {
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(vm.lookup(V0, black_box(gpas[i]), Access::Read))
            })
        });
    }
    // SNP private, validated: the plugin's full stage-2 answer for an SNP
    // guest (Vm::snp_stage2): the lookup hit plus the RMP check through the
    // vCPU's RmpReader. Compare with sw_protected_private_4k / tdx_private_4k
    // (plain lookup of a private 4K leaf).
    {
        let vm = vm(VmType::Snp, PageLevel::Size4K, true);
        add_slot(&vm, 0, 0, 64 * MB);
        let all = GfnRange::from_start_len(Gfn::new(0), (64 * MB) >> 12).unwrap();
        vm.set_memory_attributes(all, true).unwrap().ignore();
        for gfn in 0..(64 * MB) >> 12 {
            let gpa = vm.alias().encode(Gfn::new(gfn), Alias::Private);
            match vm.snp_pvalidate(V0, gpa, Vmpl::Vmpl0, 0, true) {
                SnpInsnOutcome::Completed { eax: 0, flush, .. } => flush.ignore(),
                other => panic!("{other:?}"),
            }
        }
        let gpas: Vec<Gpa> = (0..4096u64)
            .map(|i| {
                vm.alias()
                    .encode(Gfn::new((i * 2654435761) % 16384), Alias::Private)
            })
            .collect();
        let ctx = SnpAccessCtx::default();
        assert!(matches!(
            vm.snp_stage2(V0, gpas[1], Access::Read, ctx),
            Stage2::Mapped(_)
        ));
        let mut i = 0;
        g.bench_function("snp_private_4k_validated", |b| {
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(vm.snp_stage2(V0, black_box(gpas[i]), Access::Read, ctx))
            })
        });
        // The same VM, plain lookup (no RMP check): the baseline.
        let mut i = 0;
        g.bench_function("snp_private_4k_lookup_only", |b| {
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(vm.lookup(V0, black_box(gpas[i]), Access::Read))
            })
        });
    }
    g.finish();
}

/// The same lookup from several threads at once (MTTCG): per-lookup time
/// stays flat when nothing is shared but read-only cache lines.
fn lookup_parallel(c: &mut Criterion) {
    let mut g = c.benchmark_group("stage2_lookup_parallel");
    let vm = std::sync::Arc::new(
        Vm::new(VmConfig {
            max_level: PageLevel::Size4K,
            max_vcpus: 4,
            ..VmConfig::new(VmType::Default)
        })
        .unwrap(),
    );
    add_slot(&vm, 0, 0, 64 * MB);
    prefault(&vm, 0, 64 * MB, Alias::Shared);
    for threads in [1u32, 2] {
        g.bench_function(format!("{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                let t0 = Instant::now();
                std::thread::scope(|s| {
                    for t in 0..threads {
                        let vm = &vm;
                        s.spawn(move || {
                            for i in 0..iters {
                                let gfn = (i.wrapping_mul(2654435761) + t as u64 * 977) % 16384;
                                black_box(vm.lookup(VcpuId(t), Gpa::new(gfn << 12), Access::Read));
                            }
                        });
                    }
                });
                t0.elapsed()
            })
        });
    }
    g.finish();
}

fn fault_in(c: &mut Criterion) {
    let mut g = c.benchmark_group("fault_in");
    for (name, t, level, alias) in [
        ("4k", VmType::Default, PageLevel::Size4K, Alias::Shared),
        ("2m", VmType::Default, PageLevel::Size2M, Alias::Shared),
        (
            "sw_protected_private_4k",
            VmType::SwProtected,
            PageLevel::Size4K,
            Alias::ByAttributes,
        ),
    ] {
        let vm = vm(t, level, false);
        add_slot(&vm, 0, 0, 4 * GB);
        let all = GfnRange::from_start_len(Gfn::new(0), (4 * GB) >> 12).unwrap();
        if alias != Alias::Shared {
            vm.set_memory_attributes(all, true).unwrap().ignore();
        }
        let pages = (4 * GB) / level.size_bytes();
        let mut next = 0u64;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    if next == pages {
                        vm.zap_gfn_range(all, ZapFilter::ALL).ignore();
                        next = 0;
                    }
                    let gfn = Gfn::new(next * level.pages());
                    let gpa = vm.alias().encode(gfn, alias);
                    next += 1;
                    let t0 = Instant::now();
                    black_box(vm.stage2(V0, gpa, Access::Write));
                    total += t0.elapsed();
                }
                total
            })
        });
    }
    // A finalized TD: the first access to a private page makes KVM's fault
    // path TDH.MEM.PAGE.AUG it (PENDING) and the guest gets a #VE.
    {
        let vm = vm(VmType::Tdx, PageLevel::Size4K, false);
        add_slot(&vm, 0, 0, 4 * GB);
        let all = GfnRange::from_start_len(Gfn::new(0), (4 * GB) >> 12).unwrap();
        vm.set_memory_attributes(all, true).unwrap().ignore();
        assert!(vm.tdx_finalize().is_success());
        let pages = (4 * GB) >> 12;
        let mut next = 0u64;
        g.bench_function("tdx_private_4k_aug", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    if next == pages {
                        vm.zap_gfn_range(all, ZapFilter::ALL).ignore();
                        next = 0;
                    }
                    let gpa = vm.alias().encode(Gfn::new(next), Alias::Private);
                    next += 1;
                    let t0 = Instant::now();
                    let r = vm.stage2(V0, gpa, Access::Write);
                    total += t0.elapsed();
                    assert!(matches!(
                        r,
                        Stage2::Fault(Stage2Fault::VirtualizationException { .. })
                    ));
                }
                total
            })
        });
    }
    g.finish();
}

/// Times `op` alone; `reset` runs untimed before every iteration and puts
/// back what the last `op` took away. For host-side operations of
/// milliseconds on a VM built once: criterion's flat sampling with a short
/// target takes 10 samples of a few iterations each, whatever --quick or
/// --measurement-time say.
fn time_with_reset(b: &mut Bencher, mut reset: impl FnMut(), mut op: impl FnMut()) {
    b.iter_custom(|iters| {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            reset();
            let t0 = Instant::now();
            op();
            total += t0.elapsed();
        }
        total
    })
}

fn heavy_group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_millis(100));
    g
}

/// Deleting memslot 1 (1 GiB at 1 GiB) with 4K leaves mapped, under each
/// zap policy: the default VM's KVM_X86_QUIRK_SLOT_ZAP_ALL (every root
/// dropped, all 4 GiB refault), the same VM without the quirk and the
/// private-memory types (only the slot's leaves; TDX removes its private
/// pages from the Secure EPT leaves first). `slot_leafs_1g_mapped` deletes
/// the same slot with only its own 1 GiB mapped: zapping the slot's leaves
/// should cost the same as with 4 GiB mapped (proportional to the slot, not
/// to all mapped memory).
fn slot_delete(c: &mut Criterion) {
    let mut g = heavy_group(c, "delete_1g_slot_4k");
    for (name, t, quirk, alias, mapped) in [
        ("zap_all", VmType::Default, true, Alias::Shared, 4 * GB),
        ("slot_leafs", VmType::Default, false, Alias::Shared, 4 * GB),
        (
            "slot_leafs_1g_mapped",
            VmType::Default,
            false,
            Alias::Shared,
            GB,
        ),
        (
            "sw_protected_private",
            VmType::SwProtected,
            false,
            Alias::ByAttributes,
            4 * GB,
        ),
        ("tdx_private", VmType::Tdx, false, Alias::Private, 4 * GB),
        ("snp_private", VmType::Snp, false, Alias::Private, 4 * GB),
    ] {
        let vm = vm(t, PageLevel::Size4K, quirk);
        for i in 0..4 {
            add_slot(&vm, i, i as u64 * GB, GB);
        }
        if alias != Alias::Shared {
            let all = GfnRange::from_start_len(Gfn::new(0), (4 * GB) >> 12).unwrap();
            vm.set_memory_attributes(all, true).unwrap().ignore();
        }
        // Slot 1 last, so that "1 GiB mapped" is slot 1's.
        let first = if mapped == GB { GB } else { 0 };
        g.bench_function(name, |b| {
            time_with_reset(
                b,
                || {
                    if vm.memslots().by_id(MemslotId(1)).is_none() {
                        add_slot(&vm, 1, GB, GB);
                    }
                    prefault(&vm, first, mapped.min(4 * GB - first), alias);
                },
                || {
                    let f = vm
                        .set_memory_region(MemoryRegion {
                            slot: MemslotId(1),
                            flags: MemslotFlags::NONE,
                            guest_phys_addr: Gpa::new(GB),
                            memory_size: 0,
                            backing: BackingAddr::new(0),
                        })
                        .unwrap();
                    black_box(vm.flush(f));
                },
            )
        });
    }
    g.finish();
}

/// Converting 1 GiB with every 4K page mapped on the side being left (and
/// once with nothing mapped): KVM_SET_MEMORY_ATTRIBUTES, or MapGPA / page
/// state change, which end in the same call. TDX and SNP convert private to
/// shared (TDX removes the private pages, SNP returns them to the
/// hypervisor in the RMP); sw-protected converts shared to private.
fn conversion(c: &mut Criterion) {
    let mut g = heavy_group(c, "convert_1g");
    for (name, t, to_private, mapped) in [
        ("sw_protected_mapped_4k", VmType::SwProtected, true, true),
        ("sw_protected_unmapped", VmType::SwProtected, true, false),
        ("tdx_mapped_4k", VmType::Tdx, false, true),
        ("snp_mapped_4k", VmType::Snp, false, true),
    ] {
        let vm = vm(t, PageLevel::Size4K, false);
        add_slot(&vm, 0, 0, GB);
        let all = GfnRange::from_start_len(Gfn::new(0), GB >> 12).unwrap();
        let alias = if to_private {
            Alias::Shared
        } else {
            Alias::Private
        };
        g.bench_function(name, |b| {
            time_with_reset(
                b,
                || {
                    vm.set_memory_attributes(all, !to_private).unwrap().ignore();
                    if mapped {
                        let a = if t == VmType::SwProtected {
                            Alias::ByAttributes
                        } else {
                            alias
                        };
                        prefault(&vm, 0, GB, a);
                    }
                },
                || {
                    let f = vm.set_memory_attributes(all, to_private).unwrap();
                    black_box(vm.flush(f));
                },
            )
        });
    }
    g.finish();
}

/// A 64 GiB slot with 64 MiB of it mapped at 4K (issue 23: zaps and
/// conversions cost what is mapped, not what the slot spans): converting
/// all 64 GiB to the other side, and deleting the slot. Compare with
/// `convert_64m`, the same 64 MiB converted alone: the two should be close.
fn big_slot(c: &mut Criterion) {
    const SPAN: u64 = 64 * GB;
    const MAPPED: u64 = 64 * MB;
    let mut g = heavy_group(c, "slot_64g_64m_mapped");
    for (name, t) in [
        ("sw_protected", VmType::SwProtected),
        ("tdx", VmType::Tdx),
        ("snp", VmType::Snp),
    ] {
        let vm = vm(t, PageLevel::Size4K, false);
        let (to_private, alias) = if t == VmType::SwProtected {
            (true, Alias::ByAttributes)
        } else {
            (false, Alias::Private)
        };
        let setup = |span: u64| {
            if vm.memslots().by_id(MemslotId(0)).is_none() {
                add_slot(&vm, 0, 0, SPAN);
            }
            let all = GfnRange::from_start_len(Gfn::new(0), span >> 12).unwrap();
            vm.set_memory_attributes(all, !to_private).unwrap().ignore();
            prefault(&vm, 0, MAPPED, alias);
            all
        };
        for (what, span) in [("convert_64g", SPAN), ("convert_64m", MAPPED)] {
            g.bench_function(format!("{name}_{what}"), |b| {
                let range = std::cell::Cell::new(None);
                time_with_reset(
                    b,
                    || range.set(Some(setup(span))),
                    || {
                        let all = range.get().unwrap();
                        let f = vm.set_memory_attributes(all, to_private).unwrap();
                        black_box(vm.flush(f));
                    },
                )
            });
        }
        g.bench_function(format!("{name}_delete"), |b| {
            time_with_reset(
                b,
                || {
                    setup(SPAN);
                },
                || {
                    let f = vm
                        .set_memory_region(MemoryRegion {
                            slot: MemslotId(0),
                            flags: MemslotFlags::NONE,
                            guest_phys_addr: Gpa::new(0),
                            memory_size: 0,
                            backing: BackingAddr::new(0),
                        })
                        .unwrap();
                    black_box(vm.flush(f));
                },
            )
        });
    }
    g.finish();
}

/// The TDX Secure-EPT state of one private 4K page, alone (the model's
/// `Sept::access`, what the slow path asks on a fault). The hot path never
/// asks: a mirror leaf's SPTE carries whether the guest may use it, so
/// `stage2_lookup/tdx_private_4k_accepted_sept` is the check as every
/// softTLB fill of a TD pays it.
fn sept_check(c: &mut Criterion) {
    let mut g = c.benchmark_group("sept");
    let mut sept = Sept::new(Gpaw::Bits48, 4);
    let npages = (64 * MB) >> 12;
    for i in 0..npages {
        if i % 512 == 0 {
            assert!(sept.sept_add(Gfn::new(i)).is_success());
        }
        assert!(sept
            .page_add(Gfn::new(i), Pfn::new((0x7f00_0000_0000u64 >> 12) + i))
            .is_success());
    }
    let mut i = 0u64;
    g.bench_function("sept access 4K", |b| {
        b.iter(|| {
            i += 1;
            let gfn = Gfn::new(i.wrapping_mul(2654435761) & (npages - 1));
            black_box(sept.access(black_box(gfn)))
        })
    });
    g.finish();
}

/// The SEV-SNP RMP check of one private 4K access (APM Table 15-39), alone:
/// what every softTLB fill of an SNP guest adds to the stage-2 lookup.
fn rmp_check(c: &mut Criterion) {
    let mut g = c.benchmark_group("rmp");
    let rmp = Rmp::new();
    let base = 0x7f00_0000_0000u64 >> 12;
    let npages = (64 * MB) >> 12;
    rmp.add_covered(PfnRange::from_start_len(Pfn::new(base), npages).unwrap())
        .unwrap();
    let asid = Asid::new(1).unwrap();
    let guest = SnpGuest {
        asid,
        vmpl: Vmpl::Vmpl0,
    };
    for i in 0..npages {
        rmp.rmp_make_private(
            Pfn::new(base + i),
            Gfn::new(i),
            PageLevel::Size4K,
            asid,
            false,
        )
        .unwrap();
        let target = RmpInsnTarget {
            gfn: Gfn::new(i),
            pfn: Pfn::new(base + i),
            npt_level: PageLevel::Size4K,
        };
        rmp.pvalidate(guest, target, 0, true).unwrap();
    }
    // Pages spread over the range in a scrambled order, computed in the loop
    // (npages is a power of two) so that the harness reads no table of its
    // own.
    let access = |i: u64| {
        let g = i.wrapping_mul(2654435761) & (npages - 1);
        GuestAccess {
            pfn: Pfn::new(base + g),
            gfn: Gfn::new(g),
            c_bit: true,
            npt_level: PageLevel::Size4K,
            kind: RmpAccessKind::Read,
            user: false,
        }
    };
    // The plugin keeps one reader per vCPU thread.
    let mut reader = rmp.reader();
    let mut i = 0u64;
    g.bench_function("rmp check 4K", |b| {
        b.iter(|| {
            i += 1;
            black_box(reader.check_guest_access(guest, &black_box(access(i))))
        })
    });
    let mut i = 0u64;
    g.bench_function("rmp check 4K (Rmp, no reader)", |b| {
        b.iter(|| {
            i += 1;
            black_box(rmp.check_guest_access(guest, &black_box(access(i))))
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    lookup,
    lookup_parallel,
    fault_in,
    slot_delete,
    conversion,
    big_slot,
    sept_check,
    rmp_check
);
criterion_main!(benches);
