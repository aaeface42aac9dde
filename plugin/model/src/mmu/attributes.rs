//! `KVM_SET_MEMORY_ATTRIBUTES`: private/shared conversion.

use std::sync::Arc;

use super::ZapFilter;
use crate::addr::{Gfn, GfnRange};
use crate::attrs::MemAttrs;
use crate::event::{Counters, Event};
use crate::private::PrivateMem;
use crate::tlb::Flush;
use crate::types::ZapReason;
use crate::vm::Vm;

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

impl Vm {
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
        let _gmem = if private {
            None
        } else {
            self.private.gmem_write()
        };
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
        if !private {
            // The side being left is discarded (docs/architecture.md, "A
            // conversion discards the side left"): QEMU punches the guest_memfd range and the
            // backend's gmem_invalidate returns the pages to the host (SNP:
            // sev_gmem_invalidate(), unvalidated; converting back needs a
            // fresh PVALIDATE). Done while the invalidation is in progress,
            // after the private zap (whose flush drops every translation of
            // the pages). Conversion to private needs no backend change: the
            // next fault prepares.
            for s in slots.in_range(range).filter(|s| s.private_capable()) {
                if let Some(r) = s.range().intersect(range) {
                    self.private
                        .gmem_invalidate(s, r, &self.counters, &self.events);
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
}
