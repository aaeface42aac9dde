//! What the MMU does to a [`Vm`], one file per concept as in
//! arch/x86/kvm/mmu/ (mmu.c, tdp_mmu.c) and virt/kvm/kvm_main.c:
//!
//! - `lookup`: the lockless stage-2 walk of a softTLB fill ([`Vm::lookup`],
//!   [`Vm::stage2`]).
//! - `fault`: the fault path ([`Vm::fault_in`], [`Vm::fault_begin`],
//!   [`Vm::fault_finish`]).
//! - `zap`: range zaps, the fast zap, teardown ([`ZapFilter`]).
//! - `memslots`: `KVM_SET_USER_MEMORY_REGION2`.
//! - `attributes`: `KVM_SET_MEMORY_ATTRIBUTES` ([`AttrError`]).
//! - `tlb`: performing flush tokens and the TLB model ([`TlbAccess`]).
//! - this file: the `mmu_invalidate_seq` protocol every host operation and
//!   every fault follows.
//!
//! The [`Vm`]'s state is defined in [`crate::vm`].
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

use std::sync::atomic::Ordering;

use crate::addr::{Gfn, GfnRange, PageLevel};
use crate::event::Event;
use crate::vm::{MmuWrite, Vm, INVALID_GFN};

impl Vm {
    /// `mmu_invalidate_retry_gfn()`: whether an invalidation that may cover
    /// `gfn` ran since `mmu_seq` was taken or is running now.
    pub(crate) fn invalidate_retry_gfn(&self, mmu_seq: u64, gfn: Gfn) -> bool {
        self.invalidate_retry_range(mmu_seq, GfnRange::page_containing(gfn, PageLevel::Size4K))
    }

    /// [`Vm::invalidate_retry_gfn`] for every frame a leaf about to be
    /// installed would map: a huge leaf must not cover a frame whose
    /// invalidation is in progress, even where the faulting frame lies
    /// outside it. A conversion of one 4K page inside a 2M page that a
    /// neighbour's fault prepared and sized before the conversion began
    /// (SNP: an assigned 2M RMP entry the conversion then PSMASHes) would
    /// otherwise install a 2M leaf over the converted page after its zap,
    /// a leaf the next `invalidate_end()` cannot take back. KVM gets the
    /// same guarantee from guest_memfd, whose invalidation of a page inside
    /// a huge folio covers the whole folio.
    pub(crate) fn invalidate_retry_range(&self, mmu_seq: u64, range: GfnRange) -> bool {
        if self.mmu_invalidate_in_progress.load(Ordering::Acquire) != 0 {
            let start = self.mmu_invalidate_range_start.load(Ordering::Acquire);
            let end = self.mmu_invalidate_range_end.load(Ordering::Acquire);
            // Dropping mmu_lock between begin() and range_add() would be a
            // bug; be conservative as KVM is.
            if start == INVALID_GFN || end == INVALID_GFN {
                return true;
            }
            if start < range.end().raw() && range.start().raw() < end {
                return true;
            }
        }
        self.mmu_invalidate_seq.load(Ordering::Acquire) != mmu_seq
    }
}

impl MmuWrite<'_> {
    /// `kvm_mmu_invalidate_begin()`.
    pub(crate) fn invalidate_begin(&mut self) {
        let vm = self.vm;
        if vm.mmu_invalidate_in_progress.fetch_add(1, Ordering::AcqRel) == 0 {
            vm.mmu_invalidate_range_start
                .store(INVALID_GFN, Ordering::Release);
            vm.mmu_invalidate_range_end
                .store(INVALID_GFN, Ordering::Release);
        }
    }

    /// `kvm_mmu_invalidate_range_add()`: widens the in-progress range.
    pub(crate) fn invalidate_range_add(&mut self, range: GfnRange) {
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
    pub(crate) fn invalidate_end(&mut self, range: GfnRange) {
        let vm = self.vm;
        let seq = vm.mmu_invalidate_seq.fetch_add(1, Ordering::AcqRel) + 1;
        vm.mmu_invalidate_in_progress.fetch_sub(1, Ordering::AcqRel);
        vm.events.emit(|| Event::Invalidated { seq, range });
    }
}

mod attributes;
mod fault;
mod host;
mod lookup;
mod memslots;
mod tlb;
mod zap;

pub use attributes::AttrError;
pub use fault::{FaultOutcome, PendingFault};
pub use tlb::TlbAccess;
pub use zap::ZapFilter;

#[cfg(test)]
mod tests;
