//! Per-vCPU state: the lookup counters, the leaf cache in front of the
//! lockless walk, the TLB model and (SNP) the vCPU's RMP reader. Only the
//! vCPU's own thread touches its entry, so none of it is contended.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::addr::PageLevel;
use crate::config::Alias;
use crate::rmp::RmpReader;
use crate::tlb::VcpuTlb;
use crate::types::{RootId, RootRole};

/// The leaf a vCPU's last walk found, reusable while the TDP is unchanged
/// (the seqlock still reads `seq`): a second-level TLB in front of the walk,
/// as a hardware page walker caches its last translation. Exact: only
/// leaves the guest may access, found in the first root the alias selects,
/// are kept, and everything that changes a present leaf runs with the
/// seqlock taken (`mmu_write`); what runs under the read lock only installs
/// leaves in empty slots or makes a leaf accessible.
#[derive(Clone, Copy)]
pub(crate) struct CachedLeaf {
    pub(crate) seq: u64,
    pub(crate) alias: Alias,
    /// The leaf's first gfn.
    pub(crate) base: u64,
    pub(crate) level: PageLevel,
    pub(crate) role: RootRole,
    pub(crate) root: RootId,
    pub(crate) spte: u64,
}

/// Entries of a vCPU's leaf cache, indexed by the gfn's 2M frame: enough
/// for the data and page-table pages a softTLB fill alternates between.
const LEAF_CACHE_ENTRIES: usize = 64;

/// A vCPU's [`CachedLeaf`]s, direct-mapped.
pub(crate) struct LeafCache(pub(crate) [Option<CachedLeaf>; LEAF_CACHE_ENTRIES]);

impl Default for LeafCache {
    fn default() -> LeafCache {
        LeafCache([None; LEAF_CACHE_ENTRIES])
    }
}

impl LeafCache {
    pub(crate) fn slot(&mut self, gfn: u64) -> &mut Option<CachedLeaf> {
        &mut self.0[(gfn >> 9) as usize % LEAF_CACHE_ENTRIES]
    }
}

#[derive(Default)]
pub(crate) struct VcpuState {
    pub(crate) lookups: AtomicU64,
    pub(crate) lookup_hits: AtomicU64,
    /// Only the vCPU's own thread locks it; a `try_lock` that fails skips
    /// the cache.
    pub(crate) leaf: Mutex<LeafCache>,
    pub(crate) tlb: Mutex<VcpuTlb>,
    /// SNP: this vCPU's RMP reader (segment snapshot cached per thread).
    /// Only the vCPU's own thread locks it, so `try_lock` always succeeds;
    /// if it ever does not, the check goes to the shared [`Rmp`].
    pub(crate) rmp_reader: Mutex<Option<RmpReader>>,
}

/// Counts without a locked read-modify-write: each vCPU index is used by one
/// thread at a time (QEMU runs a vCPU on one thread), so a plain load and
/// store is exact then and merely loses counts otherwise.
#[inline(always)]
pub(crate) fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}
