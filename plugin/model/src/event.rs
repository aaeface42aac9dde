//! Typed events and statistics.
//!
//! Events leave the model through a bounded crossbeam channel so that the
//! vCPU threads never block on a slow consumer: when the channel is full the
//! event is dropped and counted. No event is produced on the lookup fast path
//! (a TLB fill that hits the tables); faults, maps, zaps, flushes, conversions
//! and memslot changes each produce one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crossbeam::channel::{bounded, Receiver, Sender, TrySendError};

use crate::addr::{Gfn, GfnRange, PageLevel, Pfn};
use crate::memslot::{MemslotChange, MemslotId};
use crate::types::{Access, FlushRequest, RootId, RootRole, Stage2Fault, VcpuId, ZapReason};

/// One thing the model did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A stage-2 fault that ended in an exit rather than a mapping.
    FaultExit {
        /// The faulting vCPU.
        vcpu: VcpuId,
        /// The access.
        access: Access,
        /// Why.
        fault: Stage2Fault,
    },
    /// A fault was computed across an invalidation and retried.
    FaultRetry {
        /// The faulting vCPU.
        vcpu: VcpuId,
        /// The frame.
        gfn: Gfn,
    },
    /// A fault found its leaf already installed (another vCPU won the race,
    /// or the lookup only missed because a host operation was running).
    FaultSpurious {
        /// The faulting vCPU.
        vcpu: VcpuId,
        /// The frame.
        gfn: Gfn,
        /// Size of the leaf found.
        level: PageLevel,
    },
    /// A fault installed a leaf.
    Map {
        /// The faulting vCPU.
        vcpu: VcpuId,
        /// The root.
        root: RootId,
        /// Its role.
        role: RootRole,
        /// First frame of the leaf.
        gfn: Gfn,
        /// Leaf size.
        level: PageLevel,
        /// Backing frame of the leaf's first frame.
        pfn: Pfn,
    },
    /// Leaves were zapped in a root.
    Zap {
        /// The root.
        root: RootId,
        /// Its role.
        role: RootRole,
        /// The range asked for.
        range: GfnRange,
        /// Leaves zapped.
        leaves: u64,
        /// Why.
        reason: ZapReason,
    },
    /// Non-leaf entries (page tables) were zapped in a root.
    ZapNonLeaf {
        /// The root.
        root: RootId,
        /// Its role.
        role: RootRole,
        /// Tables freed.
        tables: u64,
        /// Why.
        reason: ZapReason,
    },
    /// A root was created.
    RootCreated {
        /// The root.
        root: RootId,
        /// Its role.
        role: RootRole,
    },
    /// A root was invalidated (fast zap) and freed.
    RootInvalidated {
        /// The root.
        root: RootId,
        /// Its role.
        role: RootRole,
    },
    /// A flush token was handed to the plugin.
    Flush {
        /// What the plugin must flush.
        request: FlushRequest,
    },
    /// Memory attributes changed.
    Conversion {
        /// The range converted.
        range: GfnRange,
        /// Whether it became private.
        private: bool,
    },
    /// TDX: private pages were removed from the Secure EPT
    /// (TDH.MEM.RANGE.BLOCK, TDH.MEM.TRACK, TDH.MEM.PAGE.REMOVE). Their content
    /// is gone (the plugin zeroes the backing) and the guest must accept them
    /// again after the next fault AUGs them (PENDING).
    SeptRemoved {
        /// The frames.
        range: GfnRange,
    },
    /// TDX: the guest accepted pages (TDG.MEM.PAGE.ACCEPT, PENDING -> MAPPED);
    /// the TDX module zeroed them.
    SeptAccepted {
        /// The accepting vCPU.
        vcpu: VcpuId,
        /// The frames.
        range: GfnRange,
    },
    /// SNP: guest_memfd pages were returned to the hypervisor in the RMP
    /// (`sev_gmem_invalidate()`: RMPUPDATE to hypervisor-owned, unvalidated),
    /// on a conversion to shared, a guest_memfd memslot delete or teardown.
    /// Their content is gone (the plugin zeroes the backing) and the guest
    /// must PVALIDATE them again after the next private fault assigns them.
    /// The SNP counterpart of [`Event::SeptRemoved`].
    RmpUnassigned {
        /// The frames whose backing was invalidated (some may not have been
        /// assigned).
        range: GfnRange,
        /// The 4K pages that were assigned and are now hypervisor-owned.
        pages: u64,
    },
    /// SNP: KVM PSMASHed a 2M RMP entry after an RMP #NPF and zapped the 2M
    /// gfn range (`sev_handle_rmp_fault()`); the page stays assigned and
    /// keeps its validated bit and VMPL masks.
    RmpSmashed {
        /// The faulting vCPU.
        vcpu: VcpuId,
        /// The 2M frame range.
        range: GfnRange,
    },
    /// SNP: a guest PVALIDATE or RMPADJUST changed an RMP entry.
    RmpGuestUpdate {
        /// The vCPU.
        vcpu: VcpuId,
        /// The frames (4K or 2M).
        range: GfnRange,
        /// PVALIDATE: the new validated bit; RMPADJUST: `None`.
        validated: Option<bool>,
    },
    /// A memslot changed.
    Memslot {
        /// The change.
        change: MemslotChange,
        /// The slot.
        slot: MemslotId,
        /// Frames before.
        old: Option<GfnRange>,
        /// Frames after.
        new: Option<GfnRange>,
    },
    /// The invalidation sequence moved (`kvm_mmu_invalidate_end()`).
    Invalidated {
        /// The new `mmu_invalidate_seq`.
        seq: u64,
        /// The range invalidated.
        range: GfnRange,
    },
}

/// An event and when it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamped {
    /// Nanoseconds since the VM's event epoch ([`crate::Vm::event_epoch`]).
    pub t_ns: u64,
    /// What happened.
    pub event: Event,
}

/// Where events go.
#[derive(Debug)]
pub(crate) struct EventSink {
    tx: Option<Sender<Stamped>>,
    rx: Option<Receiver<Stamped>>,
    dropped: AtomicU64,
    epoch: Instant,
}

impl EventSink {
    pub fn new(capacity: usize) -> EventSink {
        if capacity == 0 {
            return EventSink {
                tx: None,
                rx: None,
                dropped: AtomicU64::new(0),
                epoch: Instant::now(),
            };
        }
        let (tx, rx) = bounded(capacity);
        EventSink {
            tx: Some(tx),
            rx: Some(rx),
            dropped: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Whether anyone can receive events.
    #[cfg(test)]
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Sends the event `make` builds, stamped with the time since the
    /// epoch, if events are on. Without a receiver this is one test of an
    /// `Option`: nothing is built and no clock is read.
    #[inline]
    pub fn emit(&self, make: impl FnOnce() -> Event) {
        if let Some(tx) = &self.tx {
            let stamped = Stamped {
                t_ns: u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX),
                event: make(),
            };
            if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(stamped)
            {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn receiver(&self) -> Option<Receiver<Stamped>> {
        self.rx.clone()
    }

    /// When the sink was made: time zero of [`Stamped::t_ns`].
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// A snapshot of the model's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Stage-2 lookups (TLB fills asked of the model).
    pub lookups: u64,
    /// Lookups answered from the tables without a fault.
    pub lookup_hits: u64,
    /// Faults handled (each attempt counts once).
    pub faults: u64,
    /// Faults retried because of an invalidation or memslot change.
    pub fault_retries: u64,
    /// Faults that found a leaf already installed.
    pub spurious_faults: u64,
    /// Leaves installed, by level (4K, 2M, 1G).
    pub maps: [u64; 3],
    /// Faults that ended in an MMIO/emulation exit (no memslot).
    pub mmio_exits: u64,
    /// Faults that ended in `KVM_EXIT_MEMORY_FAULT` (private/shared mismatch).
    pub memory_fault_exits: u64,
    /// Writes to read-only memslots.
    pub readonly_write_exits: u64,
    /// Zap operations.
    pub zaps: u64,
    /// Leaves zapped.
    pub leaves_zapped: u64,
    /// Page tables freed.
    pub tables_freed: u64,
    /// Roots invalidated by fast zaps.
    pub roots_invalidated: u64,
    /// Flush tokens that needed a flush.
    pub flushes: u64,
    /// Of those, how many targeted every vCPU.
    pub flushes_all_vcpus: u64,
    /// Attribute conversions that changed something.
    pub conversions: u64,
    /// Frames whose attribute changed.
    pub frames_converted: u64,
    /// Memslot changes.
    pub memslot_changes: u64,
    /// KVM's `mmu_invalidate_seq`.
    pub mmu_invalidate_seq: u64,
    /// Page tables in use.
    pub live_tables: u64,
    /// TDX: frames PENDING in the Secure EPT (AUGed, not yet accepted).
    pub frames_needing_accept: u64,
    /// TDX: TDH.MEM.PAGE.REMOVE calls (private leaves dropped by zaps).
    pub sept_removes: u64,
    /// TDX: successful TDG.MEM.PAGE.ACCEPT calls.
    pub sept_accepts: u64,
    /// TDX: guest accesses to PENDING pages (#VE or VM killed).
    pub pending_accesses: u64,
    /// SNP: 4K pages returned to the hypervisor by `sev_gmem_invalidate()`.
    pub rmp_pages_unassigned: u64,
    /// SNP: PSMASHes done to resolve RMP #NPFs (`sev_handle_rmp_fault()`).
    pub rmp_smashes: u64,
    /// SNP: accesses refused with `#VC(PAGE_NOT_VALIDATED)`.
    pub page_not_validated_exits: u64,
    /// SNP: RMP #NPFs KVM could not resolve.
    pub rmp_npf_exits: u64,
    /// SNP: PVALIDATE / RMPADJUST that changed an RMP entry.
    pub rmp_guest_updates: u64,
    /// Events dropped because the channel was full.
    pub events_dropped: u64,
}

/// Shared counters (host-side and fault-path; the lookup counters are per
/// vCPU).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub faults: AtomicU64,
    pub fault_retries: AtomicU64,
    pub spurious_faults: AtomicU64,
    pub maps: [AtomicU64; 3],
    pub mmio_exits: AtomicU64,
    pub memory_fault_exits: AtomicU64,
    pub readonly_write_exits: AtomicU64,
    pub zaps: AtomicU64,
    pub leaves_zapped: AtomicU64,
    pub tables_freed: AtomicU64,
    pub roots_invalidated: AtomicU64,
    pub flushes: AtomicU64,
    pub flushes_all_vcpus: AtomicU64,
    pub conversions: AtomicU64,
    pub frames_converted: AtomicU64,
    pub memslot_changes: AtomicU64,
    pub sept_removes: AtomicU64,
    pub sept_accepts: AtomicU64,
    pub pending_accesses: AtomicU64,
    pub rmp_pages_unassigned: AtomicU64,
    pub rmp_smashes: AtomicU64,
    pub page_not_validated_exits: AtomicU64,
    pub rmp_npf_exits: AtomicU64,
    pub rmp_guest_updates: AtomicU64,
}

impl Counters {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn exit(&self, f: &Stage2Fault) {
        match f {
            Stage2Fault::Mmio { .. } => Self::inc(&self.mmio_exits),
            Stage2Fault::MemoryFault { .. } => Self::inc(&self.memory_fault_exits),
            Stage2Fault::ReadOnlyWrite { .. } => Self::inc(&self.readonly_write_exits),
            Stage2Fault::VirtualizationException { .. } | Stage2Fault::VmDead { .. } => {
                Self::inc(&self.pending_accesses)
            }
            Stage2Fault::PageNotValidated { .. } => Self::inc(&self.page_not_validated_exits),
            Stage2Fault::RmpNestedPageFault { .. } => Self::inc(&self.rmp_npf_exits),
            _ => {}
        }
    }

    pub fn fill(&self, s: &mut Stats) {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        s.faults = l(&self.faults);
        s.fault_retries = l(&self.fault_retries);
        s.spurious_faults = l(&self.spurious_faults);
        s.maps = [l(&self.maps[0]), l(&self.maps[1]), l(&self.maps[2])];
        s.mmio_exits = l(&self.mmio_exits);
        s.memory_fault_exits = l(&self.memory_fault_exits);
        s.readonly_write_exits = l(&self.readonly_write_exits);
        s.zaps = l(&self.zaps);
        s.leaves_zapped = l(&self.leaves_zapped);
        s.tables_freed = l(&self.tables_freed);
        s.roots_invalidated = l(&self.roots_invalidated);
        s.flushes = l(&self.flushes);
        s.flushes_all_vcpus = l(&self.flushes_all_vcpus);
        s.conversions = l(&self.conversions);
        s.frames_converted = l(&self.frames_converted);
        s.memslot_changes = l(&self.memslot_changes);
        s.sept_removes = l(&self.sept_removes);
        s.sept_accepts = l(&self.sept_accepts);
        s.pending_accesses = l(&self.pending_accesses);
        s.rmp_pages_unassigned = l(&self.rmp_pages_unassigned);
        s.rmp_smashes = l(&self.rmp_smashes);
        s.page_not_validated_exits = l(&self.page_not_validated_exits);
        s.rmp_npf_exits = l(&self.rmp_npf_exits);
        s.rmp_guest_updates = l(&self.rmp_guest_updates);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_channel_drops_and_counts() {
        let s = EventSink::new(1);
        let rx = s.receiver().unwrap();
        let ev = || Event::Conversion {
            range: GfnRange::one(Gfn::new(1)),
            private: true,
        };
        s.emit(ev);
        s.emit(ev);
        assert_eq!(s.dropped(), 1);
        assert_eq!(rx.try_recv().unwrap().event, ev());
        let off = EventSink::new(0);
        assert!(!off.enabled());
        off.emit(|| unreachable!("disabled sinks never build events"));
    }
}
