//! Zaps (tdp_mmu.c `kvm_tdp_mmu_zap_leafs()`, `kvm_mmu_zap_all_fast()`,
//! teardown). Zaps return a [`Flush`]; the caller decides when to flush.

use std::sync::atomic::Ordering;

use crate::addr::{Gfn, GfnRange};
use crate::event::{Counters, Event};
use crate::private::PrivateMem;
use crate::tdp::ZapOutcome;
use crate::tlb::Flush;
use crate::types::{RootId, RootRole, ZapReason};
use crate::vm::{MmuWrite, RootInfo, Vm};

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

impl Vm {
    /// `kvm_zap_gfn_range()` / `kvm_unmap_gfn_range()`: zaps the leaves of the
    /// roots `filter` selects that overlap `range`, inside an invalidation
    /// (`mmu_invalidate_seq` moves). The mirror root keeps its tables.
    pub fn zap_gfn_range(&self, range: GfnRange, filter: ZapFilter) -> Flush {
        let _slots_lock = self.slots_lock.lock();
        self.zap_range_reason(range, filter, ZapReason::Range)
    }

    pub(crate) fn zap_range_reason(
        &self,
        range: GfnRange,
        filter: ZapFilter,
        reason: ZapReason,
    ) -> Flush {
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

    pub(crate) fn zap_all_fast_reason(&self, reason: ZapReason) -> Flush {
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
    /// [`Stage2Fault::Dead`](crate::Stage2Fault::Dead).
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
        // The guest_memfd files are released (kvm_gmem_release() ->
        // gmem_invalidate as the folios are freed).
        let _gmem = self.private.gmem_write();
        for s in self.memslots.load().iter().filter(|s| s.private_capable()) {
            self.private
                .gmem_invalidate(s, s.range(), &self.counters, &self.events);
        }
        self.counted(Flush::remote_if(any))
    }

    pub(crate) fn counted(&self, flush: Flush) -> Flush {
        if flush.is_needed() {
            Counters::inc(&self.counters.zaps);
        }
        flush
    }
}

impl MmuWrite<'_> {
    /// Whether zaps of this root free emptied tables (the backend decides
    /// for the private root: the TDX mirror keeps its Secure-EPT pages until
    /// teardown).
    pub(crate) fn prunes(&self, role: RootRole) -> bool {
        role == RootRole::Direct || self.vm.private.prunes_private_root()
    }

    /// Zaps leaves in `range` of every live root `filter` selects; true if
    /// anything was zapped (the caller flushes).
    pub(crate) fn zap_leafs(
        &mut self,
        range: GfnRange,
        filter: ZapFilter,
        reason: ZapReason,
    ) -> bool {
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
            if role == RootRole::Mirror {
                // The leaves the backend keeps as spans (premapped at launch).
                out.leaves[0] +=
                    vm.private
                        .remove_premapped(range, false, &vm.counters, &vm.events);
            }
            any |= self.account_zap(id, role, range, &out, reason);
        }
        any
    }

    /// Counts, emits events, and (TDX mirror) marks dropped private pages as
    /// needing re-accept. True if a leaf was zapped.
    pub(crate) fn account_zap(
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
        if role == RootRole::Mirror {
            vm.private.remove_private_sptes(
                &out.leaf_ranges,
                reason == ZapReason::Teardown,
                &vm.counters,
                &vm.events,
            );
        }
        leaves > 0
    }

    /// The direct-root half of `kvm_mmu_zap_all_fast()`.
    pub(crate) fn zap_all_direct(&mut self, reason: ZapReason) -> bool {
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
    pub(crate) fn free_root(&mut self, r: &RootInfo, reason: ZapReason) -> bool {
        let vm = self.vm;
        let mut out = ZapOutcome::default();
        vm.arena.zap_root(r.top, vm.root_level, &mut out);
        let all = GfnRange::new(Gfn::new(0), vm.alias.max_gfn()).unwrap_or_default();
        if r.role == RootRole::Mirror {
            out.leaves[0] += vm.private.remove_premapped(
                all,
                reason == ZapReason::Teardown,
                &vm.counters,
                &vm.events,
            );
        }
        self.account_zap(r.id, r.role, all, &out, reason)
    }
}
