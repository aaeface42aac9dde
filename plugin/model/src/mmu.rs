//! The VM: memslots, attributes, TDP roots, the fault path, zaps and the
//! invalidation protocol (arch/x86/kvm/mmu/mmu.c, tdp_mmu.c,
//! virt/kvm/kvm_main.c).
//!
//! # Locks and snapshots
//!
//! | KVM                          | model                                        |
//! |------------------------------|----------------------------------------------|
//! | `kvm->slots_lock`            | `slots_lock`: serialises host operations     |
//! | `kvm->memslots` under SRCU   | `memslots`: an `ArcSwap` snapshot + generation |
//! | `kvm->mem_attr_array` (RCU)  | `attrs`: an `ArcSwap` snapshot               |
//! | `kvm->mmu_lock` (rwlock)     | `mmu_lock`: faults read, zaps write          |
//! | lockless walks under RCU     | `mmu_seqlock` around every write section     |
//! | `mmu_invalidate_seq` & co.   | the same names, atomics                      |
//!
//! A stage-2 lookup ([`Vm::lookup`]) reads only atomics: the current root of
//! the role, the SPTEs on one path and the seqlock twice. A fault
//! ([`Vm::fault_begin`] + [`Vm::fault_finish`]) resolves the memslot and
//! attributes from snapshots without any lock, then installs under `mmu_lock`
//! held for read after checking that no invalidation touched the gfn in
//! between (`is_page_fault_stale()`).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use crossbeam::utils::CachePadded;
use parking_lot::{Mutex, RwLock, RwLockWriteGuard};

use crate::addr::{BackingAddr, Gfn, GfnRange, Gpa, PageLevel, Pfn, PAGE_SIZE};
use crate::attrs::MemAttrs;
use crate::config::{Alias, AliasLayout, ConfigError, DecodedGpa, VmConfig, VmType};
use crate::event::{Counters, Event, EventSink, Stamped, Stats};
use crate::memslot::{
    MemoryRegion, Memslot, MemslotChange, MemslotError, MemslotFlags, MemslotId, MemslotSet,
};
use crate::rmp::{PfnRange, Rmp, RmpReader};
use crate::sept::{AcceptOutcome, Sept, SeptAccess, SeptState, TdVpInfo, TdxStatus};
use crate::spte;
use crate::tdp::{LeafEntry, MapOutcome, TableArena, ZapOutcome};
use crate::tlb::{Flush, VcpuTlb, ZapRecord};
use crate::types::{
    Access, FlushKind, FlushRequest, FlushTarget, Perms, RootId, RootRole, Stage2, Stage2Fault,
    Translation, VcpuId, VeInfo, ZapReason,
};

/// The end of one fault attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultOutcome {
    /// Mapped (installed now or found installed).
    Mapped(Translation),
    /// An invalidation or memslot change raced with the fault: nothing was
    /// installed; fault again (`RET_PF_RETRY`).
    Retry,
    /// Exit to the VMM / emulation.
    Exit(Stage2Fault),
}

/// A fault resolved outside `mmu_lock` (`kvm_mmu_faultin_pfn()` done), waiting
/// for [`Vm::fault_finish`] to install it. Carries the `mmu_invalidate_seq`
/// and memslot generation it was computed under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingFault {
    vcpu: VcpuId,
    gpa: Gpa,
    access: Access,
    gfn: Gfn,
    role: RootRole,
    goal: PageLevel,
    slot: Memslot,
    mmu_seq: u64,
    slots_generation: u64,
}

impl PendingFault {
    /// The `mmu_invalidate_seq` snapshot (`fault->mmu_seq`).
    pub fn mmu_seq(&self) -> u64 {
        self.mmu_seq
    }

    /// The level the fault will try to map at (`fault->goal_level`).
    pub fn goal_level(&self) -> PageLevel {
        self.goal
    }
}

/// Filter for range zaps (KVM's `attr_filter`, `KVM_FILTER_SHARED` /
/// `KVM_FILTER_PRIVATE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ZapFilter {
    /// Zap the shared (direct) roots.
    pub shared: bool,
    /// Zap the private (mirror) root.
    pub private: bool,
}

impl ZapFilter {
    /// Both.
    pub const ALL: ZapFilter = ZapFilter {
        shared: true,
        private: true,
    };

    fn has(self, role: RootRole) -> bool {
        match role {
            RootRole::Direct => self.shared,
            RootRole::Mirror => self.private,
        }
    }
}

/// A refused `KVM_SET_MEMORY_ATTRIBUTES`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttrError {
    /// Empty range, range beyond the address width, or PRIVATE on a VM
    /// without private memory. EINVAL.
    Invalid,
}

impl AttrError {
    /// KVM's errno name.
    pub const fn errno(&self) -> &'static str {
        "EINVAL"
    }
}

impl std::fmt::Display for AttrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EINVAL: invalid memory attributes request")
    }
}

impl std::error::Error for AttrError {}

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

/// The answer of the TLB model to a simulated guest access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlbAccess {
    /// The vCPU's TLB held a translation. `stale` says it no longer matches
    /// the tables: a zap happened and its flush has not.
    Hit {
        /// The cached translation.
        translation: Translation,
        /// Whether the tables now say otherwise.
        stale: bool,
    },
    /// Miss: the model was asked and the result cached.
    Filled(Translation),
    /// Miss, and the model refused the access.
    Fault(Stage2Fault),
}

struct RootInfo {
    id: RootId,
    role: RootRole,
    top: u32,
    exported: bool,
}

/// State guarded by `mmu_lock`.
struct MmuState {
    roots: Vec<RootInfo>,
    next_root_id: u32,
    dead: bool,
}

/// The leaf a vCPU's last walk found, reusable while the TDP is unchanged
/// (the seqlock still reads `seq`): a second-level TLB in front of the walk,
/// as a hardware page walker caches its last translation. Exact: only
/// leaves the guest may access, found in the first root the alias selects,
/// are kept, and everything that changes a present leaf runs with the
/// seqlock taken (`mmu_write`); what runs under the read lock only installs
/// leaves in empty slots or makes a leaf accessible.
#[derive(Clone, Copy)]
struct CachedLeaf {
    seq: u64,
    alias: Alias,
    /// The leaf's first gfn.
    base: u64,
    level: PageLevel,
    role: RootRole,
    root: RootId,
    spte: u64,
}

/// Entries of a vCPU's leaf cache, indexed by the gfn's 2M frame: enough
/// for the data and page-table pages a softTLB fill alternates between.
const LEAF_CACHE_ENTRIES: usize = 64;

/// A vCPU's [`CachedLeaf`]s, direct-mapped.
struct LeafCache([Option<CachedLeaf>; LEAF_CACHE_ENTRIES]);

impl Default for LeafCache {
    fn default() -> LeafCache {
        LeafCache([None; LEAF_CACHE_ENTRIES])
    }
}

impl LeafCache {
    fn slot(&mut self, gfn: u64) -> &mut Option<CachedLeaf> {
        &mut self.0[(gfn >> 9) as usize % LEAF_CACHE_ENTRIES]
    }
}

#[derive(Default)]
struct VcpuState {
    lookups: AtomicU64,
    lookup_hits: AtomicU64,
    /// Only the vCPU's own thread locks it; a `try_lock` that fails skips
    /// the cache.
    leaf: Mutex<LeafCache>,
    tlb: Mutex<VcpuTlb>,
    /// SNP: this vCPU's RMP reader (segment snapshot cached per thread).
    /// Only the vCPU's own thread locks it, so `try_lock` always succeeds;
    /// if it ever does not, the check goes to the shared [`Rmp`].
    rmp_reader: Mutex<Option<RmpReader>>,
}

/// A VM's memory model. `Sync`: share it between vCPU threads in an `Arc`.
pub struct Vm {
    config: VmConfig,
    alias: AliasLayout,
    root_level: u8,
    arena: TableArena,
    /// Per role: `RootId << 32 | top table`, 0 when there is none. The only
    /// root state the lookup reads.
    current_roots: [AtomicU64; 2],
    /// Odd while a write-locked MMU section runs (see tdp.rs).
    mmu_seqlock: AtomicU64,
    mmu_invalidate_seq: AtomicU64,
    mmu_invalidate_in_progress: AtomicU32,
    mmu_invalidate_range_start: AtomicU64,
    mmu_invalidate_range_end: AtomicU64,
    mmu_lock: RwLock<MmuState>,
    slots_lock: Mutex<()>,
    memslots: ArcSwap<MemslotSet>,
    attrs: ArcSwap<MemAttrs>,
    vcpus: Box<[CachePadded<VcpuState>]>,
    /// Missing-flush detection: zaps mark the TLB-model entries they make
    /// stale ([`Vm::set_tlb_tracking`]).
    tlb_tracking: AtomicBool,
    /// Zaps so far that removed a leaf (numbers [`ZapRecord`]s).
    zap_seq: AtomicU64,
    counters: Counters,
    events: EventSink,
    /// TDX: the Secure EPT. Lock order: `mmu_lock`, then `sept`. Changed by
    /// faults (AUG/ADD, under `mmu_lock` read), ACCEPT (read), zaps (write).
    sept: Mutex<Sept>,
    /// TDX: TDH.MR.FINALIZE done (changed under `mmu_lock` write).
    tdx_finalized: AtomicBool,
    /// TDX: KVM killed the VM (`kvm_vm_dead()`).
    vm_dead: AtomicBool,
    /// SNP: the Reverse Map Table, covering the backing of every guest_memfd
    /// memslot. Empty for other types.
    rmp: Rmp,
    /// SNP: KVM's guest_memfd `filemap_invalidate_lock`. Private faults hold
    /// it for read from their snapshots to `sev_gmem_prepare()`; the host
    /// operations that return pages to the hypervisor (`sev_gmem_invalidate()`
    /// on conversion to shared, memslot delete, teardown) hold it for write
    /// until the attributes/memslots they publish are visible. So a fault
    /// never re-assigns a page after the invalidation that freed it.
    /// Lock order: `slots_lock`, `gmem_lock`, `mmu_lock`.
    gmem_lock: RwLock<()>,
    /// `KVM_X86_QUIRK_SLOT_ZAP_ALL` in effect now: the configuration's
    /// value, changed by [`Vm::set_slot_zap_all_quirk`].
    slot_zap_all: AtomicBool,
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
const INVALID_GFN: u64 = u64::MAX;

/// A write-locked MMU section: holds `mmu_lock` for write and keeps the
/// seqlock odd, so lockless lookups overlapping it retry.
struct MmuWrite<'a> {
    vm: &'a Vm,
    state: RwLockWriteGuard<'a, MmuState>,
}

impl Drop for MmuWrite<'_> {
    fn drop(&mut self) {
        self.vm.mmu_seqlock.fetch_add(1, Ordering::Release);
    }
}

const fn pack_root(id: RootId, top: u32) -> u64 {
    ((id.0 as u64) << 32) | top as u64
}

const fn unpack_root(packed: u64) -> (RootId, u32) {
    (RootId((packed >> 32) as u32), packed as u32)
}

impl Vm {
    /// Creates a VM (`KVM_CREATE_VM`) with an empty direct root and, for VM
    /// types with private memory, the mirror root.
    pub fn new(config: VmConfig) -> Result<Vm, ConfigError> {
        config.validate()?;
        let rmp = Rmp::new();
        let snp = config.vm_type == VmType::Snp;
        let vcpus = (0..config.max_vcpus)
            .map(|_| {
                CachePadded::new(VcpuState {
                    rmp_reader: Mutex::new(snp.then(|| rmp.reader())),
                    ..VcpuState::default()
                })
            })
            .collect();
        let vm = Vm {
            alias: AliasLayout::new(&config),
            root_level: config.gpaw.tdp_root_level(),
            arena: TableArena::new(),
            current_roots: [AtomicU64::new(0), AtomicU64::new(0)],
            mmu_seqlock: AtomicU64::new(0),
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
            sept: Mutex::new(Sept::new(config.gpaw, config.max_vcpus)),
            tdx_finalized: AtomicBool::new(false),
            vm_dead: AtomicBool::new(false),
            rmp,
            gmem_lock: RwLock::new(()),
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

    /// The VM type.
    pub fn vm_type(&self) -> VmType {
        self.config.vm_type
    }

    /// The GPA alias layout.
    pub fn alias(&self) -> AliasLayout {
        self.alias
    }

    fn mmu_write(&self) -> MmuWrite<'_> {
        let state = self.mmu_lock.write();
        self.mmu_seqlock.fetch_add(1, Ordering::AcqRel);
        MmuWrite { vm: self, state }
    }

    // ----- the hot path ---------------------------------------------------

    /// The stage-2 lookup of a mapped page, for a softTLB fill: no lock, no
    /// allocation, no fault-in. `None` means "not mapped with these
    /// permissions, or a host operation is running": call [`Vm::fault_in`]
    /// (or use [`Vm::stage2`], which does both).
    #[inline]
    pub fn lookup(&self, vcpu: VcpuId, gpa: Gpa, access: Access) -> Option<Translation> {
        let v = self.vcpus.get(vcpu.0 as usize);
        if let Some(v) = v {
            bump(&v.lookups);
        }
        let t = self.walk_cached(v.map(|v| &v.leaf), gpa)?;
        if !t.perms.allow(access) {
            return None;
        }
        if let Some(v) = v {
            bump(&v.lookup_hits);
        }
        Some(t)
    }

    /// Lock-free walk of the roots `gpa`'s alias selects, validated by the
    /// seqlock.
    #[inline(always)]
    fn walk_current(&self, gpa: Gpa) -> Option<Translation> {
        self.walk_cached(None, gpa)
    }

    /// [`Vm::walk_current`] through a vCPU's [`CachedLeaf`].
    #[inline(always)]
    fn walk_cached(&self, cache: Option<&Mutex<LeafCache>>, gpa: Gpa) -> Option<Translation> {
        let dec = self.alias.decode(gpa)?;
        let roles: &[RootRole] = match dec.alias {
            Alias::Shared => &[RootRole::Direct],
            Alias::Private => &[RootRole::Mirror],
            Alias::ByAttributes => &[RootRole::Direct, RootRole::Mirror],
        };
        let gfn = dec.gfn.raw();
        let s1 = self.mmu_seqlock.load(Ordering::Acquire);
        if s1 & 1 != 0 {
            return None;
        }
        let mut cached = cache.and_then(|c| c.try_lock());
        if let Some(c) = cached.as_deref_mut().and_then(|c| c.slot(gfn).as_ref()) {
            if c.seq == s1 && c.alias == dec.alias && gfn & !(c.level.pages() - 1) == c.base {
                return Some(make_translation(dec.gfn, c.role, c.root, c.spte, c.level));
            }
        }
        let mut found = None;
        for &role in roles {
            let packed = self.current_roots[role.index()].load(Ordering::Acquire);
            if packed == 0 {
                continue;
            }
            let (root, top) = unpack_root(packed);
            if let Some((spte, level)) = self.arena.walk(top, self.root_level, gfn) {
                found = Some((role, root, spte, level));
                break;
            }
        }
        // Every load above is Acquire, so this one cannot move before them: if
        // any of them saw a write from a write-locked section, the seqlock
        // has moved.
        if self.mmu_seqlock.load(Ordering::Acquire) != s1 {
            return None;
        }
        let (role, root, spte, level) = found?;
        // TDX: a mirror leaf whose Secure-EPT entry is not MAPPED.
        if !spte::is_guest_accessible(spte) {
            return None;
        }
        if let Some(c) = cached.as_deref_mut() {
            if role == roles[0] {
                *c.slot(gfn) = Some(CachedLeaf {
                    seq: s1,
                    alias: dec.alias,
                    base: gfn & !(level.pages() - 1),
                    level,
                    role,
                    root,
                    spte,
                });
            }
        }
        Some(make_translation(dec.gfn, role, root, spte, level))
    }

    /// The full stage-2 answer for a softTLB fill: [`Vm::lookup`], and on a
    /// miss [`Vm::fault_in`].
    #[inline]
    pub fn stage2(&self, vcpu: VcpuId, gpa: Gpa, access: Access) -> Stage2 {
        match self.lookup(vcpu, gpa, access) {
            Some(t) => Stage2::Mapped(t),
            None => self.fault_in(vcpu, gpa, access),
        }
    }

    // ----- the fault path -------------------------------------------------

    /// Handles a stage-2 fault to the end, retrying while invalidations race
    /// with it (`kvm_tdp_page_fault()` re-entered until it stops returning
    /// `RET_PF_RETRY`).
    pub fn fault_in(&self, vcpu: VcpuId, gpa: Gpa, access: Access) -> Stage2 {
        loop {
            let outcome = match self.fault_begin(vcpu, gpa, access) {
                Ok(p) => self.fault_finish(p),
                Err(o) => o,
            };
            match outcome {
                FaultOutcome::Mapped(t) => return Stage2::Mapped(t),
                FaultOutcome::Exit(f) => return Stage2::Fault(f),
                FaultOutcome::Retry => std::thread::yield_now(),
            }
        }
    }

    /// First half of a fault, without `mmu_lock` (`kvm_mmu_faultin_pfn()`):
    /// snapshots `mmu_invalidate_seq`, then decides from the memslot and
    /// attribute snapshots whether the access exits, and at which level it
    /// would map. `Err` carries an exit or an early retry.
    pub fn fault_begin(
        &self,
        vcpu: VcpuId,
        gpa: Gpa,
        access: Access,
    ) -> Result<PendingFault, FaultOutcome> {
        Counters::inc(&self.counters.faults);
        if self.vm_dead.load(Ordering::Acquire) {
            return Err(FaultOutcome::Exit(Stage2Fault::VmDead { gpa }));
        }
        let Some(dec) = self.alias.decode(gpa) else {
            return Err(self.exit(vcpu, access, Stage2Fault::ReservedGpa { gpa }));
        };
        // SNP private: kvm_gmem_get_pfn() holds the guest_memfd invalidate
        // lock across sev_gmem_prepare(); take it before the snapshots so
        // that they cannot predate an invalidation the prepare follows.
        let snp_private = self.is_snp() && dec.alias == Alias::Private;
        let _gmem = snp_private.then(|| self.gmem_lock.read());
        // fault->mmu_seq = kvm->mmu_invalidate_seq; smp_rmb();
        let mmu_seq = self.mmu_invalidate_seq.load(Ordering::Acquire);
        let slots = self.memslots.load();
        let attrs = self.attrs.load();
        let gfn = dec.gfn;
        let attr_private = self.config.vm_type.has_private_mem() && attrs.is_private(gfn);
        let is_private = match dec.alias {
            Alias::Shared => false,
            Alias::Private => true,
            Alias::ByAttributes => attr_private,
        };
        // The mismatch check comes first, before the memslot lookup
        // (kvm_mmu_faultin_pfn()).
        if is_private != attr_private {
            return Err(self.exit(
                vcpu,
                access,
                Stage2Fault::MemoryFault {
                    gpa,
                    gfn,
                    private: is_private,
                },
            ));
        }
        let Some(slot) = slots.find(gfn).copied() else {
            // A private access with no memslot cannot be MMIO
            // (kvm_handle_noslot_fault()).
            let f = if is_private {
                Stage2Fault::MemoryFault {
                    gpa,
                    gfn,
                    private: true,
                }
            } else {
                Stage2Fault::Mmio { gpa }
            };
            return Err(self.exit(vcpu, access, f));
        };
        if slot.invalid {
            // The slot is being deleted or moved: retry until it is gone.
            return Err(self.retry(vcpu, gfn));
        }
        if is_private && !slot.private_capable() {
            return Err(self.exit(
                vcpu,
                access,
                Stage2Fault::MemoryFault {
                    gpa,
                    gfn,
                    private: true,
                },
            ));
        }
        if access == Access::Write && slot.readonly() {
            return Err(self.exit(vcpu, access, Stage2Fault::ReadOnlyWrite { gpa }));
        }
        // mmu_invalidate_retry_gfn_unsafe(): bail out early, without the lock.
        if self.invalidate_retry_gfn(mmu_seq, gfn) {
            return Err(self.retry(vcpu, gfn));
        }
        let role = if is_private {
            RootRole::Mirror
        } else {
            RootRole::Direct
        };
        let mut goal = self.max_mapping_level(&slot, &attrs, gfn, is_private);
        if is_private && self.is_tdx() && !self.tdx_finalized.load(Ordering::Acquire) {
            // TDH.MEM.PAGE.ADD maps 4K pages only.
            goal = PageLevel::Size4K;
        }
        if snp_private {
            // kvm_mmu_faultin_pfn_private(): kvm_gmem_get_pfn() prepares the
            // page (sev_gmem_prepare(): assigned to the guest, unvalidated,
            // 2M if the whole 2M page may be), then
            // kvm_max_private_mapping_level() caps the level by the RMP page
            // size (sev_gmem_max_mapping_level()): nested and RMP page sizes
            // must agree. An RMP page the guest validated stays as it is.
            let pfn = slot.pfn_of(gfn);
            if let Err(error) = self.rmp.gmem_prepare(pfn, gfn, goal, self.config.asid) {
                return Err(self.exit(vcpu, access, Stage2Fault::GmemPrepareFailed { gpa, error }));
            }
            goal = goal.min(self.rmp.gmem_max_mapping_level(pfn));
        }
        Ok(PendingFault {
            vcpu,
            gpa,
            access,
            gfn,
            role,
            goal,
            slot,
            mmu_seq,
            slots_generation: slots.generation(),
        })
    }

    /// `kvm_mmu_max_mapping_level()`: the largest level at which `gfn` may be
    /// mapped: the configured maximum (and the private maximum for private
    /// memory), then down while the memslot disallows it (edges, misaligned
    /// backing) or the attributes are mixed (`lpage_info` mixed flag).
    fn max_mapping_level(
        &self,
        slot: &Memslot,
        attrs: &MemAttrs,
        gfn: Gfn,
        private: bool,
    ) -> PageLevel {
        let mut max = self.config.max_level;
        if private {
            max = max.min(self.config.private_max_level);
        }
        let mut level = max;
        while level > PageLevel::Size4K {
            let mixed = self.config.vm_type.has_private_mem() && attrs.is_mixed(level, gfn);
            if slot.allows_huge(gfn, level) && !mixed {
                return level;
            }
            level = level.smaller().unwrap_or(PageLevel::Size4K);
        }
        PageLevel::Size4K
    }

    /// `mmu_invalidate_retry_gfn()`: whether an invalidation that may cover
    /// `gfn` ran since `mmu_seq` was taken or is running now.
    fn invalidate_retry_gfn(&self, mmu_seq: u64, gfn: Gfn) -> bool {
        if self.mmu_invalidate_in_progress.load(Ordering::Acquire) != 0 {
            let start = self.mmu_invalidate_range_start.load(Ordering::Acquire);
            let end = self.mmu_invalidate_range_end.load(Ordering::Acquire);
            // Dropping mmu_lock between begin() and range_add() would be a
            // bug; be conservative as KVM is.
            if start == INVALID_GFN || end == INVALID_GFN {
                return true;
            }
            if (start..end).contains(&gfn.raw()) {
                return true;
            }
        }
        self.mmu_invalidate_seq.load(Ordering::Acquire) != mmu_seq
    }

    /// Second half of a fault, under `mmu_lock` for read: if nothing
    /// invalidated the gfn since [`Vm::fault_begin`] (`is_page_fault_stale()`),
    /// installs the leaf (`kvm_tdp_mmu_map()`); otherwise installs nothing
    /// and asks for a retry.
    pub fn fault_finish(&self, p: PendingFault) -> FaultOutcome {
        self.fault_finish_for(p, false)
    }

    /// [`Vm::fault_finish`]; with `for_accept` a PENDING page is the goal (the
    /// fault serves a TDG.MEM.PAGE.ACCEPT exit, not a guest access).
    fn fault_finish_for(&self, p: PendingFault, for_accept: bool) -> FaultOutcome {
        let state = self.mmu_lock.read();
        if state.dead {
            return FaultOutcome::Exit(Stage2Fault::Dead);
        }
        // The memslot generation stands in for KVM's SRCU grace period: a
        // fault that resolved against an older memslot set never installs.
        if self.memslots.load().generation() != p.slots_generation
            || self.invalidate_retry_gfn(p.mmu_seq, p.gfn)
        {
            drop(state);
            return self.retry(p.vcpu, p.gfn);
        }
        let packed = self.current_roots[p.role.index()].load(Ordering::Acquire);
        if packed == 0 {
            return FaultOutcome::Exit(Stage2Fault::Dead);
        }
        let (root, top) = unpack_root(packed);
        let perms = if p.slot.readonly() {
            Perms::RX
        } else {
            Perms::RWX
        };
        let slot = p.slot;
        let gfn = p.gfn;
        let tdx_private = p.role == RootRole::Mirror && self.is_tdx();
        // finalize() takes mmu_lock for write, so this is stable until the
        // read lock is dropped.
        let finalized = self.tdx_finalized.load(Ordering::Acquire);
        // A TDX private page is guest-accessible at once only if PAGE.ADD
        // makes it MAPPED (before finalize); PAGE.AUG makes it PENDING.
        let accessible = if tdx_private && finalized {
            0
        } else {
            spte::SPTE_GUEST_ACCESSIBLE
        };
        let out = self
            .arena
            .map(top, self.root_level, gfn.raw(), p.goal, |level| {
                spte::make_leaf(slot.pfn_of(gfn.align_down(level)), level, perms) | accessible
            });
        let mut sept_access = SeptAccess::Mapped;
        if tdx_private {
            let mut sept = self.sept.lock();
            if let MapOutcome::Installed { spte, level } = out {
                // KVM's set_external_spte: tdx_sept_link_private_spt() for a
                // new Secure-EPT page, then tdx_sept_set_private_spte(): AUG
                // once the TD runs; before that the page is premapped and
                // KVM_TDX_INIT_MEM_REGION ADDs it (one step here).
                let first = gfn.align_down(level);
                if level == PageLevel::Size4K && !sept.has_table(first) {
                    let st = sept.sept_add(first);
                    debug_assert!(st.is_success(), "SEPT.ADD {first:?}: {st:?}");
                }
                let st = if finalized {
                    sept.page_aug(first, level, spte::pfn(spte))
                } else {
                    sept.page_add(first, spte::pfn(spte))
                };
                debug_assert!(st.is_success(), "AUG/ADD {first:?}: {st:?}");
            }
            sept_access = sept.access(gfn);
        }
        drop(state);
        let (spte, level) = match out {
            MapOutcome::Installed { spte, level } => {
                Counters::inc(&self.counters.maps[level.number() as usize - 1]);
                self.events.emit(|| Event::Map {
                    vcpu: p.vcpu,
                    root,
                    role: p.role,
                    gfn: gfn.align_down(level),
                    level,
                    pfn: spte::pfn(spte),
                });
                (spte, level)
            }
            MapOutcome::Spurious { spte, level } => {
                Counters::inc(&self.counters.spurious_faults);
                self.events.emit(|| Event::FaultSpurious {
                    vcpu: p.vcpu,
                    gfn,
                    level,
                });
                (spte, level)
            }
            MapOutcome::OutOfTables => return FaultOutcome::Exit(Stage2Fault::OutOfTables),
        };
        let t = make_translation(gfn, p.role, root, spte, level);
        match sept_access {
            SeptAccess::Mapped => FaultOutcome::Mapped(t),
            SeptAccess::Pending if for_accept => FaultOutcome::Mapped(t),
            SeptAccess::Pending => {
                // tdx_handle_ept_violation(): #VE in the guest unless
                // SEPT_VE_DISABLE, in which case KVM kills the VM.
                let f = if self.config.td_attributes.sept_ve_disable() {
                    self.vm_dead.store(true, Ordering::Release);
                    Stage2Fault::VmDead { gpa: p.gpa }
                } else {
                    Stage2Fault::VirtualizationException {
                        gpa: p.gpa,
                        ve: VeInfo::pending_access(p.gpa, p.access),
                    }
                };
                self.exit(p.vcpu, p.access, f)
            }
            SeptAccess::Blocked => {
                self.exit(p.vcpu, p.access, Stage2Fault::SeptBlocked { gpa: p.gpa })
            }
            // Another vCPU installed the leaf and has not AUGed it yet.
            SeptAccess::NotPresent => self.retry(p.vcpu, gfn),
        }
    }

    fn exit(&self, vcpu: VcpuId, access: Access, fault: Stage2Fault) -> FaultOutcome {
        self.counters.exit(&fault);
        self.events.emit(|| Event::FaultExit {
            vcpu,
            access,
            fault,
        });
        FaultOutcome::Exit(fault)
    }

    fn retry(&self, vcpu: VcpuId, gfn: Gfn) -> FaultOutcome {
        Counters::inc(&self.counters.fault_retries);
        self.events.emit(|| Event::FaultRetry { vcpu, gfn });
        FaultOutcome::Retry
    }

    // ----- memslots -------------------------------------------------------

    /// `KVM_SET_USER_MEMORY_REGION2`: creates, moves, deletes or changes the
    /// flags of a memslot. Move and delete first publish the slot as invalid
    /// (faults on it retry), zap per the VM's policy
    /// (`kvm_arch_flush_shadow_memslot()`), then commit.
    pub fn set_memory_region(&self, req: MemoryRegion) -> Result<Flush, MemslotError> {
        let _slots_lock = self.slots_lock.lock();
        if self.mmu_lock.read().dead {
            return Ok(Flush::none());
        }
        let cur = self.memslots.load_full();
        let upd = cur.check(&req, self.config.vm_type, self.alias)?;
        if upd.old == upd.new {
            return Ok(Flush::none());
        }
        if let (true, MemslotChange::Create, Some(new)) = (self.is_snp(), upd.change, upd.new) {
            if new.private_capable() {
                // kvm_gmem_bind(): the guest_memfd range (here the backing)
                // is bound to this slot, and the RMP covers it, every page
                // hypervisor-owned until a private fault prepares it.
                // check() refused a backing another slot is bound to, so
                // the RMP cannot cover it yet; the error stays as a guard.
                let pfns = PfnRange::from_start_len(new.backing.pfn(), new.npages)
                    .ok_or(MemslotError::TooLarge)?;
                self.rmp
                    .add_covered(pfns)
                    .map_err(|_| MemslotError::GmemBound(req.slot))?;
            }
        }
        Counters::inc(&self.counters.memslot_changes);
        self.events.emit(|| Event::Memslot {
            change: upd.change,
            slot: req.slot,
            old: upd.old.map(|s| s.range()),
            new: upd.new.map(|s| s.range()),
        });
        let flush = match (upd.change, upd.old) {
            (MemslotChange::Delete | MemslotChange::Move, Some(old)) => {
                // kvm_invalidate_memslot()
                let invalid = Memslot {
                    invalid: true,
                    ..old
                };
                self.memslots
                    .store(Arc::new(cur.with(Some(old.id), Some(invalid))));
                let flush = self.flush_shadow_memslot(&old);
                // SNP: deleting a guest_memfd slot frees its pages (the
                // model's guest_memfd lives and dies with the slot):
                // sev_gmem_invalidate() returns them to the hypervisor, then
                // the RMP stops covering the backing. A guest_memfd slot
                // cannot move (PrivateSlotImmutable), so a move never
                // touches the RMP.
                let _gmem = (self.is_snp() && old.private_capable()).then(|| {
                    let g = self.gmem_lock.write();
                    self.snp_gmem_invalidate(&old, old.range());
                    let pfns = PfnRange::from_start_len(old.backing.pfn(), old.npages);
                    let removed = pfns.map(|r| self.rmp.remove_covered(r));
                    debug_assert!(
                        matches!(removed, Some(Ok(()))),
                        "RMP coverage of slot {old:?}: {removed:?}"
                    );
                    g
                });
                let now = self.memslots.load_full();
                self.memslots
                    .store(Arc::new(now.with(Some(old.id), upd.new)));
                flush
            }
            _ => {
                // Create and flags-only changes map nothing new and unmap
                // nothing (dirty logging is not modelled).
                self.memslots
                    .store(Arc::new(cur.with(upd.old.map(|s| s.id), upd.new)));
                Flush::none()
            }
        };
        Ok(flush)
    }

    /// Creates memslot `id` over `range`, backed from `backing` on: the
    /// KVM_MR_CREATE case of [`Vm::set_memory_region`].
    pub fn create_memslot(
        &self,
        id: MemslotId,
        range: GfnRange,
        backing: BackingAddr,
        flags: MemslotFlags,
    ) -> Result<Flush, MemslotError> {
        if let Some(s) = self.memslots.load().by_id(id) {
            return Err(MemslotError::Overlap {
                slot: id,
                existing: s.id,
            });
        }
        self.set_memory_region(MemoryRegion {
            slot: id,
            flags,
            guest_phys_addr: range
                .start()
                .checked_gpa()
                .ok_or(MemslotError::BeyondMaxGfn)?,
            memory_size: range
                .len()
                .checked_mul(PAGE_SIZE)
                .ok_or(MemslotError::TooLarge)?,
            backing,
        })
    }

    /// Moves memslot `id` to start at `base` (KVM_MR_MOVE; a PCI BAR move).
    pub fn move_memslot(&self, id: MemslotId, base: Gfn) -> Result<Flush, MemslotError> {
        let old = *self
            .memslots
            .load()
            .by_id(id)
            .ok_or(MemslotError::NoSuchSlot(id))?;
        self.set_memory_region(MemoryRegion {
            slot: id,
            flags: old.flags,
            guest_phys_addr: base.checked_gpa().ok_or(MemslotError::BeyondMaxGfn)?,
            memory_size: old.npages * PAGE_SIZE,
            backing: old.backing,
        })
    }

    /// Deletes memslot `id` (KVM_MR_DELETE).
    pub fn delete_memslot(&self, id: MemslotId) -> Result<Flush, MemslotError> {
        self.set_memory_region(MemoryRegion {
            slot: id,
            flags: MemslotFlags::NONE,
            guest_phys_addr: Gpa::new(0),
            memory_size: 0,
            backing: BackingAddr::new(0),
        })
    }

    /// `kvm_arch_flush_shadow_memslot()`: with `KVM_X86_QUIRK_SLOT_ZAP_ALL` in
    /// effect (default VMs only) a fast zap of every direct root; otherwise
    /// only the slot's leaves, in every root.
    fn flush_shadow_memslot(&self, slot: &Memslot) -> Flush {
        if self.slot_zap_all() {
            self.zap_all_fast_reason(ZapReason::ZapAllFast)
        } else {
            self.zap_range_reason(slot.range(), ZapFilter::ALL, ZapReason::MemslotLeafs)
        }
    }

    /// Whether memslot moves and deletions zap every direct root
    /// (`KVM_X86_QUIRK_SLOT_ZAP_ALL` in effect) rather than the slot's leaves.
    pub fn slot_zap_all(&self) -> bool {
        self.slot_zap_all.load(Ordering::Relaxed)
    }

    /// Turns `KVM_X86_QUIRK_SLOT_ZAP_ALL` on or off for later memslot
    /// changes. Only default VMs honour the quirk (the others always zap
    /// the slot's leaves), so for them this is refused with `false`. KVM
    /// itself can only disable a quirk (`KVM_CAP_DISABLE_QUIRKS2` ORs into
    /// `disabled_quirks`); enabling it again is cvmem's, for comparison runs.
    pub fn set_slot_zap_all_quirk(&self, on: bool) -> bool {
        let _slots_lock = self.slots_lock.lock();
        if !self.config.vm_type.honours_slot_zap_all_quirk() {
            return false;
        }
        self.slot_zap_all.store(on, Ordering::Relaxed);
        true
    }

    /// The current memslots.
    pub fn memslots(&self) -> Arc<MemslotSet> {
        self.memslots.load_full()
    }

    // ----- zaps -----------------------------------------------------------

    /// `kvm_zap_gfn_range()` / `kvm_unmap_gfn_range()`: zaps the leaves of the
    /// roots `filter` selects that overlap `range`, inside an invalidation
    /// (`mmu_invalidate_seq` moves). The mirror root keeps its tables.
    pub fn zap_gfn_range(&self, range: GfnRange, filter: ZapFilter) -> Flush {
        let _slots_lock = self.slots_lock.lock();
        self.zap_range_reason(range, filter, ZapReason::Range)
    }

    fn zap_range_reason(&self, range: GfnRange, filter: ZapFilter, reason: ZapReason) -> Flush {
        if range.is_empty() {
            return Flush::none();
        }
        let mut w = self.mmu_write();
        w.invalidate_begin();
        w.invalidate_range_add(range);
        let zapped = w.zap_leafs(range, filter, reason);
        w.invalidate_end(range);
        drop(w);
        self.counted(Flush::remote_if(zapped))
    }

    /// `kvm_mmu_zap_all_fast()`: invalidates every direct root at once; vCPUs
    /// move to a fresh root. A root exported to an external consumer stays
    /// valid and has its leaves zapped instead. The mirror root is never
    /// touched ("external page tables don't support fast zapping").
    pub fn zap_all_fast(&self) -> Flush {
        let _slots_lock = self.slots_lock.lock();
        self.zap_all_fast_reason(ZapReason::ZapAllFast)
    }

    fn zap_all_fast_reason(&self, reason: ZapReason) -> Flush {
        let mut w = self.mmu_write();
        if w.state.dead {
            return Flush::none();
        }
        let all = GfnRange::new(Gfn::new(0), self.alias.max_gfn()).unwrap_or_default();
        w.invalidate_begin();
        w.invalidate_range_add(all);
        let zapped = w.zap_all_direct(reason);
        w.invalidate_end(all);
        drop(w);
        // With EPT, entries of the old root are tagged by the old EPTP and
        // each vCPU flushes its current root when it loads the new one
        // (kvm_mmu_load()). QEMU's softTLB has no tags, so every vCPU must
        // drop everything.
        self.counted(Flush::remote_if(zapped))
    }

    /// Marks the current root of `role` as exported to an external consumer
    /// (e.g. an IOMMU sharing the tables): fast zaps then zap its leaves
    /// instead of replacing it.
    pub fn export_root(&self, role: RootRole) -> Option<RootId> {
        let mut w = self.mmu_write();
        let r = w.state.roots.iter_mut().find(|r| r.role == role)?;
        r.exported = true;
        Some(r.id)
    }

    /// VM teardown (`kvm_arch_destroy_vm()`): zaps and frees every root,
    /// leaves before non-leaves. Afterwards every fault exits with
    /// [`Stage2Fault::Dead`].
    pub fn teardown(&self) -> Flush {
        let _slots_lock = self.slots_lock.lock();
        let mut w = self.mmu_write();
        if w.state.dead {
            return Flush::none();
        }
        w.state.dead = true;
        let roots: Vec<RootInfo> = std::mem::take(&mut w.state.roots);
        let mut any = false;
        for r in &roots {
            self.current_roots[r.role.index()].store(0, Ordering::Release);
        }
        for r in roots {
            any |= w.free_root(&r, ZapReason::Teardown);
        }
        drop(w);
        if self.is_snp() {
            // The guest_memfd files are released (kvm_gmem_release() ->
            // sev_gmem_invalidate() as the folios are freed).
            let _gmem = self.gmem_lock.write();
            for s in self.memslots.load().iter().filter(|s| s.private_capable()) {
                self.snp_gmem_invalidate(s, s.range());
            }
        }
        self.counted(Flush::remote_if(any))
    }

    fn counted(&self, flush: Flush) -> Flush {
        if flush.is_needed() {
            Counters::inc(&self.counters.zaps);
        }
        flush
    }

    // ----- memory attributes ----------------------------------------------

    /// `KVM_SET_MEMORY_ATTRIBUTES` (`kvm_vm_set_mem_attributes()`): makes
    /// `range` private or shared. This is what MapGPA, the SNP page-state
    /// change and `KVM_HC_MAP_GPA_RANGE` end in.
    ///
    /// 1. Nothing to do if the whole range already has the attribute.
    /// 2. Pre phase, per memslot the range touches, under `mmu_lock`:
    ///    `kvm_mmu_invalidate_begin()` once, `kvm_mmu_invalidate_range_add()`,
    ///    then zap the leaves of the alias being left only
    ///    (`kvm_arch_pre_set_memory_attributes()`: to private, the shared
    ///    alias; to shared, the private alias).
    /// 3. Store the attributes (outside `mmu_lock`).
    /// 4. Post phase: the huge-page mixed tracking is updated
    ///    (`kvm_arch_post_set_memory_attributes()`) and
    ///    `kvm_mmu_invalidate_end()` bumps `mmu_invalidate_seq`.
    ///
    /// Faults for gfns in the range that run between 2 and 4 see the
    /// invalidation in progress and retry. Both sides of a conversion read as
    /// zero afterwards (the side left is discarded): the plugin clears the
    /// backing of the converted frames.
    pub fn set_memory_attributes(
        &self,
        range: GfnRange,
        private: bool,
    ) -> Result<Flush, AttrError> {
        if range.is_empty() || range.end() > self.alias.max_gfn() {
            return Err(AttrError::Invalid);
        }
        if private && !self.config.vm_type.has_private_mem() {
            return Err(AttrError::Invalid);
        }
        let _slots_lock = self.slots_lock.lock();
        // SNP to shared: held until the shared attributes are visible, so no
        // private fault prepares a page again after it was invalidated.
        let _gmem = (self.is_snp() && !private).then(|| self.gmem_lock.write());
        let attrs = self.attrs.load_full();
        if attrs.range_is(range, private) {
            return Ok(Flush::none());
        }
        let slots = self.memslots.load_full();
        let touched: Vec<GfnRange> = slots
            .in_range(range)
            .filter_map(|s| s.range().intersect(range))
            .collect();
        let leaving = if private {
            ZapFilter {
                shared: true,
                private: false,
            }
        } else {
            ZapFilter {
                shared: false,
                private: true,
            }
        };
        let mut zapped = false;
        if !touched.is_empty() {
            let mut w = self.mmu_write();
            w.invalidate_begin();
            for r in &touched {
                w.invalidate_range_add(*r);
                zapped |= w.zap_leafs(*r, leaving, ZapReason::Conversion);
            }
        }
        if self.is_snp() && !private {
            // The side being left is discarded (DESIGN.md "Memory
            // content"): QEMU punches the guest_memfd range and KVM's
            // sev_gmem_invalidate() returns the pages to the hypervisor,
            // unvalidated. Converting back needs a fresh PVALIDATE. Done
            // while the invalidation is in progress, after the private zap
            // (whose flush drops every translation of the pages). Conversion
            // to private needs no RMP change: the next fault prepares.
            for s in slots.in_range(range).filter(|s| s.private_capable()) {
                if let Some(r) = s.range().intersect(range) {
                    self.snp_gmem_invalidate(s, r);
                }
            }
        }
        let mut new = (*attrs).clone();
        new.set(range, private);
        new.post_set(range);
        self.attrs.store(Arc::new(new));
        if !touched.is_empty() {
            let mut w = self.mmu_write();
            w.invalidate_end(range);
        }
        Counters::inc(&self.counters.conversions);
        Counters::add(&self.counters.frames_converted, range.len());
        self.events.emit(|| Event::Conversion { range, private });
        Ok(self.counted(Flush::remote_if(zapped)))
    }

    /// Whether `gfn` is private (`kvm_mem_is_private()`).
    pub fn is_private(&self, gfn: Gfn) -> bool {
        self.attrs.load().is_private(gfn)
    }

    /// The current attributes.
    pub fn attributes(&self) -> Arc<MemAttrs> {
        self.attrs.load_full()
    }

    // ----- TDX -------------------------------------------------------------

    fn is_tdx(&self) -> bool {
        self.config.vm_type == VmType::Tdx
    }

    /// TDX: the Secure-EPT state of private `gfn` and the size of its leaf.
    pub fn tdx_sept_state(&self, gfn: Gfn) -> (SeptState, PageLevel) {
        self.sept.lock().state(gfn)
    }

    /// TDX: every Secure-EPT leaf (frames, state), in gfn order.
    pub fn tdx_sept_leaves(&self) -> Vec<(GfnRange, SeptState)> {
        self.sept.lock().leaves()
    }

    /// TDX: whether TDH.MR.FINALIZE ran.
    pub fn tdx_is_finalized(&self) -> bool {
        self.tdx_finalized.load(Ordering::Acquire)
    }

    /// TDX: TDG.VP.INFO for `vcpu` (`None` for other VM types or a bad
    /// vCPU index). Every configured vCPU counts as initialised.
    pub fn tdx_vp_info(&self, vcpu: VcpuId) -> Option<TdVpInfo> {
        if !self.is_tdx() || vcpu.0 >= self.config.max_vcpus {
            return None;
        }
        Some(TdVpInfo::new(
            self.config.gpaw,
            self.config.td_attributes,
            self.config.max_vcpus,
            self.config.max_vcpus,
            vcpu.0,
        ))
    }

    /// TDX: KVM_TDX_INIT_MEM_REGION: maps each frame of `range` in the mirror
    /// root (`kvm_tdp_map_page()`) and adds it with TDH.MEM.PAGE.ADD (MAPPED,
    /// part of the measured initial image). The frames must be private and
    /// in a guest_memfd memslot. Errors: `TDX_OP_STATE_INCORRECT` after
    /// finalize (KVM: -EINVAL), `TDX_OPERAND_INVALID` for a frame that cannot
    /// be mapped privately (KVM: -EINVAL / -EFAULT), `TDX_EPT_ENTRY_STATE_INCORRECT`
    /// if a frame is already in the Secure EPT.
    pub fn tdx_page_add(&self, range: GfnRange) -> Result<(), TdxStatus> {
        if !self.is_tdx() {
            return Err(TdxStatus::OPERAND_INVALID);
        }
        for gfn in range.iter() {
            if self.tdx_is_finalized() {
                return Err(TdxStatus::OP_STATE_INCORRECT);
            }
            if self.sept.lock().state(gfn).0 != SeptState::Free {
                return Err(TdxStatus::EPT_ENTRY_STATE_INCORRECT.rcx());
            }
            let gpa = self.alias.encode(gfn, Alias::Private);
            match self.fault_in(VcpuId(0), gpa, Access::Write) {
                Stage2::Mapped(_) => {}
                Stage2::Fault(_) => return Err(TdxStatus::OPERAND_INVALID.rcx()),
            }
        }
        Ok(())
    }

    /// TDX: KVM_TDX_FINALIZE_VM (TDH.MR.FINALIZE): the build phase ends;
    /// later private faults AUG pages PENDING for the guest to accept.
    /// `TDX_OP_STATE_INCORRECT` if already finalized or not a TD.
    pub fn tdx_finalize(&self) -> TdxStatus {
        if !self.is_tdx() {
            return TdxStatus::OP_STATE_INCORRECT;
        }
        let _w = self.mmu_write();
        let st = self.sept.lock().finalize();
        if st.is_success() {
            self.tdx_finalized.store(true, Ordering::Release);
        }
        st
    }

    /// TDX: the guest's TDG.MEM.PAGE.ACCEPT with `rcx` = GPA | level, from
    /// `vcpu`'s thread. Takes `mmu_lock` for read only: the PENDING -> MAPPED
    /// change and the accessible bit it sets in the mirror leaf only grant
    /// access, so no lookup can act on a stale "not accessible".
    ///
    /// The plugin writes [`AcceptOutcome::status`] to RAX; on
    /// [`AcceptOutcome::Accepted`] it also zeroes the backing of the range.
    /// On [`AcceptOutcome::ExitToHost`] it calls [`Vm::tdx_handle_accept_exit`]
    /// (KVM maps and AUGs the page) and then re-executes the TDCALL. For a
    /// VM that is not a TD the answer is `TDX_OPERAND_INVALID` (the plugin
    /// raises #UD instead: TDCALL does not exist there).
    pub fn tdx_accept(&self, vcpu: VcpuId, rcx: u64) -> AcceptOutcome {
        if !self.is_tdx() {
            return AcceptOutcome::Status(TdxStatus::OPERAND_INVALID.rcx());
        }
        let state = self.mmu_lock.read();
        let out = self.sept.lock().accept(rcx);
        if let AcceptOutcome::Accepted { range } = out {
            let packed = self.current_roots[RootRole::Mirror.index()].load(Ordering::Acquire);
            if packed != 0 {
                let (_, top) = unpack_root(packed);
                let set = self.arena.leaf_fetch_or(
                    top,
                    self.root_level,
                    range.start().raw(),
                    spte::SPTE_GUEST_ACCESSIBLE,
                );
                debug_assert!(set.is_some(), "accepted {range:?} has no mirror leaf");
            }
            drop(state);
            Counters::inc(&self.counters.sept_accepts);
            self.events.emit(|| Event::SeptAccepted { vcpu, range });
        }
        out
    }

    /// TDX: KVM's handling of the EPT-violation exit an ACCEPT of a page that
    /// is not present took (`tdx_handle_ept_violation()` treats it as a write
    /// fault): maps the page in the mirror root and AUGs it (PENDING). `Ok`
    /// when the page is ready for the guest to re-execute the TDCALL (PENDING
    /// or already MAPPED); otherwise the exit KVM would take (e.g.
    /// `MemoryFault` if the page is shared: the guest must MapGPA first).
    pub fn tdx_handle_accept_exit(&self, vcpu: VcpuId, gpa: Gpa) -> Result<(), Stage2Fault> {
        loop {
            let outcome = match self.fault_begin(vcpu, gpa, Access::Write) {
                Ok(p) => self.fault_finish_for(p, true),
                Err(o) => o,
            };
            match outcome {
                FaultOutcome::Mapped(_) => return Ok(()),
                FaultOutcome::Exit(f) => return Err(f),
                FaultOutcome::Retry => std::thread::yield_now(),
            }
        }
    }

    // ----- TLB model --------------------------------------------------------

    /// Performs the bookkeeping of `flush` in the TLB model and returns what
    /// the plugin must flush in QEMU (`None`: nothing).
    pub fn flush(&self, flush: Flush) -> Option<FlushRequest> {
        let req = flush.into_request()?;
        Counters::inc(&self.counters.flushes);
        if req.target == FlushTarget::AllVcpus {
            Counters::inc(&self.counters.flushes_all_vcpus);
        }
        let mut sept = self.is_tdx().then(|| self.sept.lock());
        for (i, v) in self.vcpus.iter().enumerate() {
            if req.covers(VcpuId(i as u32)) {
                v.tlb.lock().apply(req.kind);
                // The softTLB flush is the TD exit + re-entry at which the
                // TDX module flushes: the vCPU leaves its TLB epoch.
                if let Some(s) = sept.as_mut() {
                    s.vcpu_flushed(i);
                }
            }
        }
        drop(sept);
        self.events.emit(|| Event::Flush { request: req });
        Some(req)
    }

    /// A guest-requested flush of one vCPU (e.g. INVEPT single-context
    /// analogue): a token for the caller to pass to [`Vm::flush`].
    pub fn request_flush(&self, vcpu: VcpuId, kind: FlushKind) -> Flush {
        Flush::new(FlushRequest {
            target: FlushTarget::Vcpu(vcpu),
            kind,
        })
    }

    /// Records that the plugin installed `t` for `gpa` in `vcpu`'s softTLB.
    pub fn tlb_record(&self, vcpu: VcpuId, gpa: Gpa, t: Translation) {
        if let Some(v) = self.vcpus.get(vcpu.0 as usize) {
            let role = if t.private {
                RootRole::Mirror
            } else {
                RootRole::Direct
            };
            v.tlb.lock().insert(gpa.gfn().raw(), t, role.index());
        }
    }

    /// Records in `vcpu`'s TLB model the translation the current tables give
    /// for `gpa` (the one a stage-2 fill just handed to QEMU), and returns
    /// it; `None` if the tables do not map `gpa`.
    pub fn tlb_record_current(&self, vcpu: VcpuId, gpa: Gpa) -> Option<Translation> {
        let t = {
            let _r = self.mmu_lock.read();
            self.walk_current(gpa)
        }?;
        self.tlb_record(vcpu, gpa, t);
        Some(t)
    }

    /// Simulates a guest access through `vcpu`'s TLB: a cached translation
    /// that allows `access` is used as is (stale or not, as hardware would);
    /// otherwise the model is asked ([`Vm::stage2`]) and the answer cached.
    pub fn tlb_access(&self, vcpu: VcpuId, gpa: Gpa, access: Access) -> TlbAccess {
        if let Some(hit) = self.tlb_probe(vcpu, gpa, access) {
            return hit;
        }
        match self.stage2(vcpu, gpa, access) {
            Stage2::Mapped(t) => {
                self.tlb_record(vcpu, gpa, t);
                TlbAccess::Filled(t)
            }
            Stage2::Fault(f) => TlbAccess::Fault(f),
        }
    }

    /// The cached translation `vcpu` would use for `access` to `gpa`, and
    /// whether it is stale (missing-flush detection), without filling.
    pub fn tlb_probe(&self, vcpu: VcpuId, gpa: Gpa, access: Access) -> Option<TlbAccess> {
        let v = self.vcpus.get(vcpu.0 as usize)?;
        let e = v.tlb.lock().get(gpa.gfn().raw())?;
        if !e.translation.perms.allow(access) {
            return None;
        }
        Some(TlbAccess::Hit {
            translation: e.translation,
            stale: !self.explains(gpa, &e.translation),
        })
    }

    /// Whether the current tables still map `gpa` the way `t` says.
    fn explains(&self, gpa: Gpa, t: &Translation) -> bool {
        // Under mmu_lock for read no write section runs, so the lockless
        // walk cannot fail validation.
        let cur = {
            let _r = self.mmu_lock.read();
            self.walk_current(gpa)
        };
        cur.is_some_and(|c| {
            c.backing == t.backing
                && c.private == t.private
                && (!t.perms.write || c.perms.write)
                && (!t.perms.exec || c.perms.exec)
        })
    }

    /// Missing-flush detection on or off. While on, every zap marks the
    /// TLB-model entries it makes stale with a [`ZapRecord`], and
    /// [`Vm::tlb_missing_flush`] reports their use. Off (the default), zaps
    /// only bump a counter.
    pub fn set_tlb_tracking(&self, on: bool) {
        self.tlb_tracking.store(on, Ordering::Relaxed);
    }

    /// Records a zap of `range` in root `root` against every vCPU's TLB
    /// model (runs under mmu_lock for write, so zaps are numbered in the
    /// order they change the tables).
    fn tlb_mark_zapped(&self, root: RootId, role: RootRole, range: GfnRange, reason: ZapReason) {
        let seq = self.zap_seq.fetch_add(1, Ordering::Relaxed) + 1;
        if !self.tlb_tracking.load(Ordering::Relaxed) {
            return;
        }
        let zap = ZapRecord {
            seq,
            root,
            role,
            range,
            reason,
        };
        for v in self.vcpus.iter() {
            v.tlb.lock().mark_zapped(zap);
        }
    }

    /// Missing-flush detection: if `vcpu`'s TLB model holds a translation
    /// for `gpa` (raw, alias bits included) whose leaf a zap removed and no
    /// flush has dropped since, that translation and the zap. An access
    /// through it is one the zap's flush should have prevented.
    pub fn tlb_missing_flush(&self, vcpu: VcpuId, gpa: Gpa) -> Option<(Translation, ZapRecord)> {
        let v = self.vcpus.get(vcpu.0 as usize)?;
        let e = v.tlb.lock().get(gpa.gfn().raw())?;
        Some((e.translation, e.zapped?))
    }

    /// The translations in `vcpu`'s TLB model, keyed by raw gfn.
    pub fn tlb_entries(&self, vcpu: VcpuId) -> Vec<(u64, Translation)> {
        self.vcpus
            .get(vcpu.0 as usize)
            .map(|v| {
                v.tlb
                    .lock()
                    .entries()
                    .map(|(k, e)| (k, e.translation))
                    .collect()
            })
            .unwrap_or_default()
    }

    // ----- introspection --------------------------------------------------

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
        s.frames_needing_accept = self.sept.lock().pending_frames();
        s.events_dropped = self.events.dropped();
        s
    }

    /// Decodes `gpa` with this VM's alias layout.
    pub fn decode(&self, gpa: Gpa) -> Option<DecodedGpa> {
        self.alias.decode(gpa)
    }
}

/// Counts without a locked read-modify-write: each vCPU index is used by one
/// thread at a time (QEMU runs a vCPU on one thread), so a plain load and
/// store is exact then and merely loses counts otherwise.
#[inline(always)]
fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

#[inline(always)]
fn make_translation(
    gfn: Gfn,
    role: RootRole,
    root: RootId,
    spte: u64,
    level: PageLevel,
) -> Translation {
    let off = gfn.raw() & (level.pages() - 1);
    Translation {
        gfn,
        backing: Pfn::new(spte::pfn(spte).raw().wrapping_add(off)).addr(),
        level,
        perms: spte::perms(spte),
        private: role == RootRole::Mirror,
        root,
    }
}

impl MmuWrite<'_> {
    /// `kvm_mmu_invalidate_begin()`.
    fn invalidate_begin(&mut self) {
        let vm = self.vm;
        if vm.mmu_invalidate_in_progress.fetch_add(1, Ordering::AcqRel) == 0 {
            vm.mmu_invalidate_range_start
                .store(INVALID_GFN, Ordering::Release);
            vm.mmu_invalidate_range_end
                .store(INVALID_GFN, Ordering::Release);
        }
    }

    /// `kvm_mmu_invalidate_range_add()`: widens the in-progress range.
    fn invalidate_range_add(&mut self, range: GfnRange) {
        let vm = self.vm;
        let s = vm.mmu_invalidate_range_start.load(Ordering::Acquire);
        let e = vm.mmu_invalidate_range_end.load(Ordering::Acquire);
        let (ns, ne) = if s == INVALID_GFN {
            (range.start().raw(), range.end().raw())
        } else {
            (s.min(range.start().raw()), e.max(range.end().raw()))
        };
        vm.mmu_invalidate_range_start.store(ns, Ordering::Release);
        vm.mmu_invalidate_range_end.store(ne, Ordering::Release);
    }

    /// `kvm_mmu_invalidate_end()`: bumps `mmu_invalidate_seq` before dropping
    /// the in-progress count, so a fault that checks after the count drops
    /// sees the new sequence.
    fn invalidate_end(&mut self, range: GfnRange) {
        let vm = self.vm;
        let seq = vm.mmu_invalidate_seq.fetch_add(1, Ordering::AcqRel) + 1;
        vm.mmu_invalidate_in_progress.fetch_sub(1, Ordering::AcqRel);
        vm.events.emit(|| Event::Invalidated { seq, range });
    }

    fn new_root(&mut self, role: RootRole) -> Option<RootId> {
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

    /// Whether zaps of this root free emptied tables. The TDX mirror keeps
    /// its Secure-EPT pages until teardown.
    fn prunes(&self, role: RootRole) -> bool {
        !(role == RootRole::Mirror && self.vm.config.vm_type == VmType::Tdx)
    }

    /// Zaps leaves in `range` of every live root `filter` selects; true if
    /// anything was zapped (the caller flushes).
    fn zap_leafs(&mut self, range: GfnRange, filter: ZapFilter, reason: ZapReason) -> bool {
        let vm = self.vm;
        let mut any = false;
        let roots: Vec<(RootId, RootRole, u32)> = self
            .state
            .roots
            .iter()
            .filter(|r| filter.has(r.role))
            .map(|r| (r.id, r.role, r.top))
            .collect();
        for (id, role, top) in roots {
            let mut out = ZapOutcome::default();
            vm.arena
                .zap_leafs(top, vm.root_level, range, self.prunes(role), &mut out);
            any |= self.account_zap(id, role, range, &out, reason);
        }
        any
    }

    /// Counts, emits events, and (TDX mirror) marks dropped private pages as
    /// needing re-accept. True if a leaf was zapped.
    fn account_zap(
        &mut self,
        id: RootId,
        role: RootRole,
        range: GfnRange,
        out: &ZapOutcome,
        reason: ZapReason,
    ) -> bool {
        let vm = self.vm;
        let leaves = out.total_leaves();
        Counters::add(&vm.counters.leaves_zapped, leaves);
        Counters::add(&vm.counters.tables_freed, out.tables_freed);
        if leaves > 0 {
            vm.tlb_mark_zapped(id, role, range, reason);
            vm.events.emit(|| Event::Zap {
                root: id,
                role,
                range,
                leaves,
                reason,
            });
        }
        if out.tables_freed > 0 {
            vm.events.emit(|| Event::ZapNonLeaf {
                root: id,
                role,
                tables: out.tables_freed,
                reason,
            });
        }
        if role == RootRole::Mirror && vm.is_tdx() {
            let mut sept = vm.sept.lock();
            if reason == ZapReason::Teardown {
                sept.reclaim_all();
            } else {
                for r in &out.leaf_ranges {
                    Self::sept_remove_private_spte(&mut sept, *r);
                    Counters::inc(&vm.counters.sept_removes);
                    vm.events.emit(|| Event::SeptRemoved { range: *r });
                }
            }
        }
        leaves > 0
    }

    /// KVM's `tdx_sept_remove_private_spte()` for one zapped mirror leaf:
    /// TDH.MEM.RANGE.BLOCK (`tdx_sept_zap_private_spte()`), TDH.MEM.TRACK and
    /// the kick of every vCPU out of guest mode (`tdx_track()`), then
    /// TDH.MEM.PAGE.REMOVE (`tdx_sept_drop_private_spte()`). The kick is the
    /// flush this zap returns: KVM's request waits for every vCPU to leave
    /// guest mode, so the plugin performs the flush before any vCPU runs
    /// again. Before finalize `tdx_track()` does nothing and REMOVE needs no
    /// tracking.
    fn sept_remove_private_spte(sept: &mut Sept, r: GfnRange) {
        let level = if r.len() == 1 {
            PageLevel::Size4K
        } else {
            PageLevel::Size2M
        };
        let st = sept.range_block(r.start(), level);
        debug_assert!(
            st.is_success() || st.class() == TdxStatus::GPA_RANGE_ALREADY_BLOCKED,
            "BLOCK {r:?}: {st:?}"
        );
        if sept.is_finalized() {
            let st = sept.track();
            debug_assert!(st.is_success(), "TRACK: {st:?}");
            sept.kick_all_vcpus();
        }
        let st = sept.page_remove(r.start(), level);
        debug_assert!(st.is_success(), "REMOVE {r:?}: {st:?}");
    }

    /// The direct-root half of `kvm_mmu_zap_all_fast()`.
    fn zap_all_direct(&mut self, reason: ZapReason) -> bool {
        let vm = self.vm;
        let all = GfnRange::new(Gfn::new(0), vm.alias.max_gfn()).unwrap_or_default();
        let direct: Vec<usize> = (0..self.state.roots.len())
            .filter(|&i| self.state.roots[i].role == RootRole::Direct)
            .collect();
        let mut any = false;
        for i in direct.into_iter().rev() {
            if self.state.roots[i].exported {
                let (id, top) = (self.state.roots[i].id, self.state.roots[i].top);
                let mut out = ZapOutcome::default();
                vm.arena.zap_leafs(top, vm.root_level, all, true, &mut out);
                any |= self.account_zap(id, RootRole::Direct, all, &out, reason);
            } else {
                let old = self.state.roots.remove(i);
                self.new_root(RootRole::Direct);
                Counters::inc(&vm.counters.roots_invalidated);
                vm.events.emit(|| Event::RootInvalidated {
                    root: old.id,
                    role: old.role,
                });
                any |= self.free_root(&old, reason);
            }
        }
        any
    }

    /// `tdp_mmu_zap_root()` + freeing: leaves first, then the tables.
    fn free_root(&mut self, r: &RootInfo, reason: ZapReason) -> bool {
        let vm = self.vm;
        let mut out = ZapOutcome::default();
        vm.arena.zap_root(r.top, vm.root_level, &mut out);
        let all = GfnRange::new(Gfn::new(0), vm.alias.max_gfn()).unwrap_or_default();
        self.account_zap(r.id, r.role, all, &out, reason)
    }
}

mod snp;
pub use snp::{SnpAccessCtx, SnpInsnOutcome};

#[cfg(test)]
mod tests;
