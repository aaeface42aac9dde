//! The fault path (`kvm_tdp_page_fault()`): resolve outside `mmu_lock`,
//! install under it for read unless an invalidation raced
//! (`is_page_fault_stale()`).

use std::sync::atomic::Ordering;

use super::lookup::make_translation;
use crate::addr::{Gfn, GfnRange, Gpa, PageLevel};
use crate::attrs::MemAttrs;
use crate::config::Alias;
use crate::event::{Counters, Event};
use crate::memslot::Memslot;
use crate::private::{PrivateAccess, PrivateMem, PrivateOutcome};
use crate::spte;
use crate::tdp::MapOutcome;
use crate::types::{Access, Perms, RootRole, Stage2, Stage2Fault, Translation, VcpuId};
use crate::vm::{unpack_root, Vm};

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
}

impl Vm {
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
        // A private fault holds the guest_memfd invalidate lock (if the
        // backend has one) from before its snapshots to the prepare, so
        // that they cannot predate an invalidation the prepare follows.
        let _gmem = if dec.alias == Alias::Private {
            self.private.gmem_read()
        } else {
            None
        };
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
        if is_private {
            // kvm_mmu_faultin_pfn_private(): the backend prepares the page
            // (gmem_prepare) and caps the level (private_max_mapping_level).
            goal = match self.private.private_max_level(slot.pfn_of(gfn), gfn, goal) {
                Ok(level) => level,
                Err(error) => {
                    return Err(self.exit(
                        vcpu,
                        access,
                        Stage2Fault::GmemPrepareFailed { gpa, error },
                    ));
                }
            };
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
    pub(crate) fn max_mapping_level(
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

    /// Second half of a fault, under `mmu_lock` for read: if nothing
    /// invalidated a frame its leaf would map since [`Vm::fault_begin`]
    /// (`is_page_fault_stale()`, over the goal level's page), installs the
    /// leaf (`kvm_tdp_mmu_map()`); otherwise installs nothing and asks for a
    /// retry.
    pub fn fault_finish(&self, p: PendingFault) -> FaultOutcome {
        self.fault_finish_for(p, false)
    }

    /// [`Vm::fault_finish`]; with `for_accept` a PENDING page is the goal (the
    /// fault serves a TDG.MEM.PAGE.ACCEPT exit, not a guest access).
    pub(crate) fn fault_finish_for(&self, p: PendingFault, for_accept: bool) -> FaultOutcome {
        let state = self.mmu_lock.read();
        if state.dead {
            return FaultOutcome::Exit(Stage2Fault::Dead);
        }
        // The memslot generation stands in for KVM's SRCU grace period: a
        // fault that resolved against an older memslot set never installs.
        if self.memslots.load().generation() != p.slots_generation
            || self.invalidate_retry_range(p.mmu_seq, GfnRange::page_containing(p.gfn, p.goal))
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
        let private = p.role == RootRole::Mirror;
        let accessible = if private && !self.private.private_leaf_accessible(gfn) {
            0
        } else {
            spte::SPTE_GUEST_ACCESSIBLE
        };
        let out = self
            .arena
            .map(top, self.root_level, gfn.raw(), p.goal, |level| {
                spte::make_leaf(slot.pfn_of(gfn.align_down(level)), level, perms) | accessible
            });
        let private_access = if private {
            let installed = match out {
                MapOutcome::Installed { spte, level } => Some((spte, level)),
                _ => None,
            };
            self.private.set_private_spte(gfn, installed)
        } else {
            PrivateAccess::Accessible
        };
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
        match self
            .private
            .private_outcome(private_access, p.gpa, p.access, for_accept)
        {
            PrivateOutcome::Mapped => FaultOutcome::Mapped(t),
            PrivateOutcome::Retry => self.retry(p.vcpu, gfn),
            PrivateOutcome::Exit(f) => {
                if let Stage2Fault::VmDead { .. } = f {
                    // kvm_vm_dead(): every later fault exits too.
                    self.vm_dead.store(true, Ordering::Release);
                }
                self.exit(p.vcpu, p.access, f)
            }
        }
    }

    pub(crate) fn exit(&self, vcpu: VcpuId, access: Access, fault: Stage2Fault) -> FaultOutcome {
        self.counters.exit(&fault);
        self.events.emit(|| Event::FaultExit {
            vcpu,
            access,
            fault,
        });
        FaultOutcome::Exit(fault)
    }

    pub(crate) fn retry(&self, vcpu: VcpuId, gfn: Gfn) -> FaultOutcome {
        Counters::inc(&self.counters.fault_retries);
        self.events.emit(|| Event::FaultRetry { vcpu, gfn });
        FaultOutcome::Retry
    }
}
