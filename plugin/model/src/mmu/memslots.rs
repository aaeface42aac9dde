//! `KVM_SET_USER_MEMORY_REGION2` and `kvm_arch_flush_shadow_memslot()`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::ZapFilter;
use crate::addr::{BackingAddr, Gfn, GfnRange, Gpa, PAGE_SIZE};
use crate::event::{Counters, Event};
use crate::memslot::{
    MemoryRegion, Memslot, MemslotChange, MemslotError, MemslotFlags, MemslotId, MemslotSet,
};
use crate::private::PrivateMem;
use crate::tlb::Flush;
use crate::types::ZapReason;
use crate::vm::Vm;

impl Vm {
    /// Grows memslot `id` to cover `range`, merging into it the slots it
    /// reaches (see [`MemslotSet::check_grow`] for what is refused). This is
    /// no KVM operation: it is how audit mode, which learns guest RAM a page
    /// at a time from the accesses it observes, makes its slots what the
    /// VMM's would have been had it known the RAM from the start. Nothing is
    /// zapped and no frame changes backing, so every mapping stays valid; a
    /// fault that raced with the change sees a new generation and retries.
    /// A guest_memfd slot's backing stays bound ([`PrivateMem::gmem_grow`]).
    pub fn grow_memslot(&self, id: MemslotId, range: GfnRange) -> Result<(), MemslotError> {
        let _slots_lock = self.slots_lock.lock();
        if self.mmu_lock.read().dead {
            return Ok(());
        }
        let cur = self.memslots.load_full();
        let (grown, absorbed) = cur.check_grow(id, range, self.alias)?;
        let old = cur.by_id(id).copied();
        if old == Some(grown) && absorbed.is_empty() {
            return Ok(());
        }
        if grown.private_capable() {
            self.private.gmem_grow(&grown)?;
        }
        Counters::inc(&self.counters.memslot_changes);
        self.events.emit(|| Event::Memslot {
            change: MemslotChange::Grow,
            slot: id,
            old: old.map(|s| s.range()),
            new: Some(grown.range()),
        });
        self.memslots
            .store(Arc::new(cur.with_grown(grown, &absorbed)));
        Ok(())
    }

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
        if let (MemslotChange::Create, Some(new)) = (upd.change, upd.new) {
            // kvm_gmem_bind() for a guest_memfd slot (SNP: the RMP starts
            // covering its backing).
            self.private.gmem_bind(&new)?;
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
                // Deleting a guest_memfd slot frees its pages (the model's
                // guest_memfd lives and dies with the slot): gmem_invalidate
                // returns them to the host (SNP: sev_gmem_invalidate(), then
                // the RMP stops covering the backing). A guest_memfd slot
                // cannot move (PrivateSlotImmutable), so a move never
                // touches them.
                let _gmem = if old.private_capable() {
                    let g = self.private.gmem_write();
                    self.private
                        .gmem_invalidate(&old, old.range(), &self.counters, &self.events);
                    self.private.gmem_unbind(&old);
                    g
                } else {
                    None
                };
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
    pub(crate) fn flush_shadow_memslot(&self, slot: &Memslot) -> Flush {
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
}
