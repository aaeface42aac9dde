//! The SNP backend: the RMP behind guest_memfd (arch/x86/kvm/svm/sev.c,
//! the `sev_gmem_*` hooks). KVM's MMU knows nothing of the RMP; these are
//! the only places it changes outside the guest's own RMP instructions
//! (crate::snp).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::PrivateMem;
use crate::addr::{Gfn, GfnRange, PageLevel, Pfn};
use crate::config::VmConfig;
use crate::event::{Counters, Event, EventSink};
use crate::memslot::{Memslot, MemslotError};
use crate::rmp::{Asid, CoverError, DeviceAccess, PfnRange, Rmp};
use crate::types::RmpupdateError;

/// An SNP guest's private-memory state.
#[derive(Debug)]
pub(crate) struct Snp {
    /// The Reverse Map Table, covering the backing of every guest_memfd
    /// memslot.
    pub rmp: Rmp,
    /// KVM's guest_memfd `filemap_invalidate_lock`. Private faults hold
    /// it for read from their snapshots to `sev_gmem_prepare()`; the host
    /// operations that return pages to the hypervisor (`sev_gmem_invalidate()`
    /// on conversion to shared, memslot delete, teardown) hold it for write
    /// until the attributes/memslots they publish are visible. So a fault
    /// never re-assigns a page after the invalidation that freed it.
    /// Lock order: `slots_lock`, `gmem_lock`, `mmu_lock`.
    pub gmem_lock: RwLock<()>,
    /// The guest's ASID.
    pub asid: Asid,
}

impl Snp {
    pub fn new(config: &VmConfig, generation: Arc<AtomicU64>) -> Snp {
        Snp {
            rmp: Rmp::with_generation(generation),
            gmem_lock: RwLock::new(()),
            asid: config.asid,
        }
    }
}

impl PrivateMem for Snp {
    #[inline]
    fn gmem_read(&self) -> Option<RwLockReadGuard<'_, ()>> {
        // kvm_gmem_get_pfn() holds the guest_memfd invalidate lock across
        // sev_gmem_prepare(); the fault takes it before its snapshots so
        // that they cannot predate an invalidation the prepare follows.
        Some(self.gmem_lock.read())
    }

    fn gmem_write(&self) -> Option<RwLockWriteGuard<'_, ()>> {
        Some(self.gmem_lock.write())
    }

    #[inline]
    fn private_max_level(
        &self,
        pfn: Pfn,
        gfn: Gfn,
        goal: PageLevel,
    ) -> Result<PageLevel, RmpupdateError> {
        // kvm_mmu_faultin_pfn_private(): kvm_gmem_get_pfn() prepares the
        // page (sev_gmem_prepare(): assigned to the guest, unvalidated, 2M
        // if the whole 2M page may be), then kvm_max_private_mapping_level()
        // caps the level by the RMP page size (sev_gmem_max_mapping_level()):
        // nested and RMP page sizes must agree. An RMP page the guest
        // validated stays as it is.
        self.rmp.gmem_prepare(pfn, gfn, goal, self.asid)?;
        Ok(goal.min(self.rmp.gmem_max_mapping_level(pfn)))
    }

    fn gmem_bind(&self, slot: &Memslot) -> Result<(), MemslotError> {
        if !slot.private_capable() {
            return Ok(());
        }
        // kvm_gmem_bind(): the guest_memfd range (here the backing) is bound
        // to this slot, and the RMP covers it, every page hypervisor-owned
        // until a private fault prepares it. MemslotSet::check() refused a
        // backing another slot is bound to, so the RMP cannot cover it yet;
        // the error stays as a guard.
        let pfns = PfnRange::from_start_len(slot.backing.pfn(), slot.npages)
            .ok_or(MemslotError::TooLarge)?;
        self.rmp.add_covered(pfns).map_err(|e| match e {
            CoverError::OutOfMemory => MemslotError::OutOfMemory,
            _ => MemslotError::GmemBound(slot.id),
        })
    }

    fn gmem_grow(&self, grown: &Memslot) -> Result<(), MemslotError> {
        let pfns = PfnRange::from_start_len(grown.backing.pfn(), grown.npages)
            .ok_or(MemslotError::TooLarge)?;
        self.rmp.grow_covered(pfns).map_err(|e| match e {
            CoverError::OutOfMemory => MemslotError::OutOfMemory,
            _ => MemslotError::GmemBound(grown.id),
        })
    }

    fn gmem_unbind(&self, slot: &Memslot) {
        // The RMP stops covering the backing of the released guest_memfd.
        let pfns = PfnRange::from_start_len(slot.backing.pfn(), slot.npages);
        let removed = pfns.map(|r| self.rmp.remove_covered(r));
        invariant!(
            matches!(removed, Some(Ok(()))),
            "RMP coverage of slot {slot:?}: {removed:?}"
        );
    }

    /// `sev_gmem_invalidate()`: every assigned page of the range returns to
    /// the hypervisor, unvalidated. Emits [`Event::RmpUnassigned`]. The
    /// caller holds `gmem_lock` for write.
    fn gmem_invalidate(
        &self,
        slot: &Memslot,
        range: GfnRange,
        counters: &Counters,
        events: &EventSink,
    ) -> u64 {
        let Some(pfns) = PfnRange::from_start_len(slot.pfn_of(range.start()), range.len()) else {
            return 0;
        };
        let pages = self.rmp.gmem_invalidate(pfns);
        if pages > 0 {
            Counters::add(&counters.rmp_pages_unassigned, pages);
            events.emit(|| Event::RmpUnassigned { range, pages });
        }
        pages
    }

    fn device_access(&self, pfn: Pfn, write: bool) -> DeviceAccess {
        self.rmp.check_device_access(pfn, write)
    }

    /// APM Table 15-39: a host write to an assigned page is a #PF with the
    /// RMP bit.
    fn host_write_allowed(&self, pfn: Pfn) -> bool {
        self.rmp.check_host_write(pfn, PageLevel::Size4K).is_ok()
    }
}
