//! The VM ([`Vm`]): its state and how it is made. What is done to it lives
//! by concept in [`crate::mmu`] (lookup, fault, zap, memslots, attributes,
//! the TLB model) and in the TDX and SNP parts.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use crossbeam::utils::CachePadded;
use parking_lot::{Mutex, RwLock, RwLockWriteGuard};

use crate::addr::{Gfn, GfnRange, Gpa, PageLevel, Pfn};
use crate::attrs::MemAttrs;
use crate::config::{AliasLayout, ConfigError, DecodedGpa, VmConfig, VmType};
use crate::event::{Counters, Event, EventSink, Stamped, Stats};
use crate::memslot::MemslotSet;
use crate::private::{Backend, PrivateMem};
use crate::spte;
use crate::tdp::{LeafEntry, TableArena};
use crate::types::{Perms, RootId, RootRole};
use crate::vcpu::VcpuState;

/// A leaf as seen by [`Vm::leaves`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MappedLeaf {
    /// The root.
    pub root: RootId,
    /// Its role.
    pub role: RootRole,
    /// The frames the leaf covers.
    pub range: GfnRange,
    /// Leaf size.
    pub level: PageLevel,
    /// Backing frame of the first frame.
    pub pfn: Pfn,
    /// Permissions.
    pub perms: Perms,
}

pub(crate) struct RootInfo {
    pub(crate) id: RootId,
    pub(crate) role: RootRole,
    pub(crate) top: u32,
    pub(crate) exported: bool,
}

/// State guarded by `mmu_lock`.
pub(crate) struct MmuState {
    pub(crate) roots: Vec<RootInfo>,
    pub(crate) next_root_id: u32,
    pub(crate) dead: bool,
}

/// A VM's memory model. `Sync`: share it between vCPU threads in an `Arc`.
pub struct Vm {
    pub(crate) config: VmConfig,
    pub(crate) alias: AliasLayout,
    pub(crate) root_level: u8,
    pub(crate) arena: TableArena,
    /// Per role: `RootId << 32 | top table`, 0 when there is none. The only
    /// root state the lookup reads.
    pub(crate) current_roots: [AtomicU64; 2],
    /// Odd while a write-locked MMU section runs (see tdp.rs); the RMP
    /// adds 2 after each of its changes. Also the stage-2 generation
    /// ([`Vm::stage2_generation`]).
    pub(crate) mmu_seqlock: Arc<AtomicU64>,
    pub(crate) mmu_invalidate_seq: AtomicU64,
    pub(crate) mmu_invalidate_in_progress: AtomicU32,
    pub(crate) mmu_invalidate_range_start: AtomicU64,
    pub(crate) mmu_invalidate_range_end: AtomicU64,
    pub(crate) mmu_lock: RwLock<MmuState>,
    pub(crate) slots_lock: Mutex<()>,
    pub(crate) memslots: ArcSwap<MemslotSet>,
    pub(crate) attrs: ArcSwap<MemAttrs>,
    pub(crate) vcpus: Box<[CachePadded<VcpuState>]>,
    /// Missing-flush detection: zaps mark the TLB-model entries they make
    /// stale ([`Vm::set_tlb_tracking`]).
    pub(crate) tlb_tracking: AtomicBool,
    /// Zaps so far that removed a leaf (numbers [`ZapRecord`]s).
    pub(crate) zap_seq: AtomicU64,
    pub(crate) counters: Counters,
    pub(crate) events: EventSink,
    /// KVM killed the VM (`kvm_vm_dead()`; TDX: an access to a PENDING
    /// page with `SEPT_VE_DISABLE`).
    pub(crate) vm_dead: AtomicBool,
    /// The private-memory backend: KVM's `kvm_x86_ops` private hooks and
    /// the hardware state behind them (TDX Secure EPT, SNP RMP).
    pub(crate) private: Backend,
    /// `KVM_X86_QUIRK_SLOT_ZAP_ALL` in effect now: the configuration's
    /// value, changed by [`Vm::set_slot_zap_all_quirk`].
    pub(crate) slot_zap_all: AtomicBool,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm")
            .field("config", &self.config)
            .field("arena", &self.arena)
            .finish_non_exhaustive()
    }
}

/// `INVALID_GPA` for the invalidation range.
pub(crate) const INVALID_GFN: u64 = u64::MAX;

/// A write-locked MMU section: holds `mmu_lock` for write and keeps the
/// seqlock odd, so lockless lookups overlapping it retry.
pub(crate) struct MmuWrite<'a> {
    pub(crate) vm: &'a Vm,
    pub(crate) state: RwLockWriteGuard<'a, MmuState>,
}

impl Drop for MmuWrite<'_> {
    fn drop(&mut self) {
        self.vm.mmu_seqlock.fetch_add(1, Ordering::Release);
    }
}

pub(crate) const fn pack_root(id: RootId, top: u32) -> u64 {
    ((id.0 as u64) << 32) | top as u64
}

pub(crate) const fn unpack_root(packed: u64) -> (RootId, u32) {
    (RootId((packed >> 32) as u32), packed as u32)
}
impl Vm {
    /// Creates a VM (`KVM_CREATE_VM`) with an empty direct root and, for VM
    /// types with private memory, the mirror root.
    pub fn new(config: VmConfig) -> Result<Vm, ConfigError> {
        config.validate()?;
        let mmu_seqlock = Arc::new(AtomicU64::new(0));
        let private = Backend::new(&config, &mmu_seqlock);
        let vcpus = (0..config.max_vcpus)
            .map(|_| {
                CachePadded::new(VcpuState {
                    rmp_reader: Mutex::new(private.snp().map(|s| s.rmp.reader())),
                    ..VcpuState::default()
                })
            })
            .collect();
        let vm = Vm {
            alias: AliasLayout::new(&config),
            root_level: config.gpaw.tdp_root_level(),
            arena: TableArena::new(),
            current_roots: [AtomicU64::new(0), AtomicU64::new(0)],
            mmu_seqlock,
            mmu_invalidate_seq: AtomicU64::new(0),
            mmu_invalidate_in_progress: AtomicU32::new(0),
            mmu_invalidate_range_start: AtomicU64::new(INVALID_GFN),
            mmu_invalidate_range_end: AtomicU64::new(INVALID_GFN),
            mmu_lock: RwLock::new(MmuState {
                roots: Vec::new(),
                next_root_id: 1,
                dead: false,
            }),
            slots_lock: Mutex::new(()),
            memslots: ArcSwap::from_pointee(MemslotSet::new()),
            attrs: ArcSwap::from_pointee(MemAttrs::new()),
            vcpus,
            tlb_tracking: AtomicBool::new(false),
            zap_seq: AtomicU64::new(0),
            counters: Counters::default(),
            events: EventSink::new(config.event_capacity),
            vm_dead: AtomicBool::new(false),
            private,
            slot_zap_all: AtomicBool::new(config.slot_zap_all()),
            config,
        };
        {
            let mut w = vm.mmu_write();
            w.new_root(RootRole::Direct);
            if vm.config.vm_type.has_private_mem() {
                w.new_root(RootRole::Mirror);
            }
        }
        Ok(vm)
    }

    /// The configuration.
    pub fn config(&self) -> &VmConfig {
        &self.config
    }

    /// The stage-2 generation: changes after every change of the model
    /// that can make a stage-2 answer it gave wrong (a write-locked MMU
    /// section: zaps, conversions, memslot changes, roots; an RMP change).
    /// What the lock-free lookup validates its per-vCPU leaf cache with,
    /// and what QEMU's stage-2 cache (`qemu_plugin_cvm_s2_cache_enable`)
    /// compares. Changes under `mmu_lock` held for read only grant access
    /// (a fault installing a leaf, ACCEPT marking one accessible), so an
    /// answer that allowed an access stays right across them.
    pub fn stage2_generation(&self) -> &AtomicU64 {
        &self.mmu_seqlock
    }

    /// The VM type.
    pub fn vm_type(&self) -> VmType {
        self.config.vm_type
    }

    /// The GPA alias layout.
    pub fn alias(&self) -> AliasLayout {
        self.alias
    }

    pub(crate) fn mmu_write(&self) -> MmuWrite<'_> {
        let state = self.mmu_lock.write();
        self.mmu_seqlock.fetch_add(1, Ordering::AcqRel);
        MmuWrite { vm: self, state }
    }
    /// The current root of `role`.
    pub fn root_id(&self, role: RootRole) -> Option<RootId> {
        let p = self.current_roots[role.index()].load(Ordering::Acquire);
        (p != 0).then(|| unpack_root(p).0)
    }

    /// Number of page tables under the current root of `role` (0 if none).
    pub fn root_tables(&self, role: RootRole) -> u64 {
        let _r = self.mmu_lock.read();
        let p = self.current_roots[role.index()].load(Ordering::Acquire);
        if p == 0 {
            return 0;
        }
        self.arena.tables_under(unpack_root(p).1, self.root_level)
    }

    /// Every leaf of every live root, sorted by role then gfn.
    pub fn leaves(&self) -> Vec<MappedLeaf> {
        let state = self.mmu_lock.read();
        let mut out = Vec::new();
        for r in &state.roots {
            let first = out.len();
            for LeafEntry { gfn, level, spte } in self.arena.leaves(r.top, self.root_level) {
                out.push(MappedLeaf {
                    root: r.id,
                    role: r.role,
                    range: GfnRange::from_start_len(gfn, level.pages()).unwrap_or_default(),
                    level,
                    pfn: spte::pfn(spte),
                    perms: spte::perms(spte),
                });
            }
            if r.role == RootRole::Mirror {
                // The 4K leaves premapped at launch that the backend keeps as
                // spans (writable: KVM_TDX_INIT_MEM_REGION maps them so).
                let premapped = self.private.premapped_spans();
                for (gfn, pfn, pages) in premapped {
                    for i in 0..pages {
                        out.push(MappedLeaf {
                            root: r.id,
                            role: r.role,
                            range: GfnRange::one(Gfn::new(gfn.raw() + i)),
                            level: PageLevel::Size4K,
                            pfn: Pfn::new(pfn.raw() + i),
                            perms: Perms::RWX,
                        });
                    }
                }
                out[first..].sort_by_key(|l| l.range.start());
            }
        }
        out
    }

    /// `kvm->mmu_invalidate_seq`.
    pub fn mmu_invalidate_seq(&self) -> u64 {
        self.mmu_invalidate_seq.load(Ordering::Acquire)
    }

    /// A receiver for the typed events (`None` if `event_capacity` is 0).
    /// Every receiver takes from the same queue.
    pub fn events(&self) -> Option<crossbeam::channel::Receiver<Stamped>> {
        self.events.receiver()
    }

    /// Time zero of the events' [`Stamped::t_ns`] (when the VM was made).
    pub fn event_epoch(&self) -> std::time::Instant {
        self.events.epoch()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        self.counters.fill(&mut s);
        for v in self.vcpus.iter() {
            s.lookups += v.lookups.load(Ordering::Relaxed);
            s.lookup_hits += v.lookup_hits.load(Ordering::Relaxed);
        }
        s.mmu_invalidate_seq = self.mmu_invalidate_seq();
        s.live_tables = self.arena.live_tables();
        s.frames_needing_accept = self.private.pending_frames();
        s.events_dropped = self.events.dropped();
        s
    }

    /// Decodes `gpa` with this VM's alias layout.
    pub fn decode(&self, gpa: Gpa) -> Option<DecodedGpa> {
        self.alias.decode(gpa)
    }
}

impl MmuWrite<'_> {
    pub(crate) fn new_root(&mut self, role: RootRole) -> Option<RootId> {
        let top = self.vm.arena.alloc()?;
        let id = RootId(self.state.next_root_id);
        self.state.next_root_id += 1;
        self.state.roots.push(RootInfo {
            id,
            role,
            top,
            exported: false,
        });
        self.vm.current_roots[role.index()].store(pack_root(id, top), Ordering::Release);
        self.vm
            .events
            .emit(|| Event::RootCreated { root: id, role });
        Some(id)
    }
}
