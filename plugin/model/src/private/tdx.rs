//! The TDX backend: the TDX module's Secure EPT behind the mirror root
//! (arch/x86/kvm/vmx/tdx.c, the `tdx_sept_*` hooks).

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use super::{PrivateAccess, PrivateMem, PrivateOutcome};
use crate::addr::{Gfn, GfnRange, Gpa, PageLevel, Pfn};
use crate::config::VmConfig;
use crate::event::{Counters, Event, EventSink};
use crate::sept::{Sept, SeptAccess, TdAttributes, TdxStatus};
use crate::spte;
use crate::types::{Access, FlushRequest, Stage2Fault, VcpuId, VeInfo};

/// A TD's private-memory state.
#[derive(Debug)]
pub(crate) struct Tdx {
    /// The Secure EPT. Lock order: `mmu_lock`, then `sept`. Changed by
    /// faults (AUG/ADD, under `mmu_lock` read), ACCEPT (read), zaps (write).
    pub sept: Mutex<Sept>,
    /// TDH.MR.FINALIZE done (changed under `mmu_lock` write).
    pub finalized: AtomicBool,
    /// TD ATTRIBUTES (`SEPT_VE_DISABLE`).
    pub td_attributes: TdAttributes,
}

impl Tdx {
    pub fn new(config: &VmConfig) -> Tdx {
        Tdx {
            sept: Mutex::new(Sept::new(config.gpaw, config.max_vcpus)),
            finalized: AtomicBool::new(false),
            td_attributes: config.td_attributes,
        }
    }

    /// Whether TDH.MR.FINALIZE ran.
    pub fn is_finalized(&self) -> bool {
        self.finalized.load(Ordering::Acquire)
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
        invariant!(
            st.is_success() || st.class() == TdxStatus::GPA_RANGE_ALREADY_BLOCKED,
            "BLOCK {r:?}: {st:?}"
        );
        if sept.is_finalized() {
            let st = sept.track();
            invariant!(st.is_success(), "TRACK: {st:?}");
            sept.kick_all_vcpus();
        }
        let st = sept.page_remove(r.start(), level);
        invariant!(st.is_success(), "REMOVE {r:?}: {st:?}");
    }
}

impl PrivateMem for Tdx {
    #[inline]
    fn private_max_level(
        &self,
        _pfn: crate::addr::Pfn,
        gfn: Gfn,
        goal: PageLevel,
    ) -> Result<PageLevel, crate::types::RmpupdateError> {
        // TDH.MEM.PAGE.ADD maps 4K pages only.
        if !self.is_finalized() {
            return Ok(PageLevel::Size4K);
        }
        // Where the launch premapped pages, KVM's mirror root has 4K leaves
        // under a page table, and a fault there maps at 4K; the model keeps
        // them as spans (no table yet), so it caps the level itself.
        let mut level = goal;
        while level > PageLevel::Size4K
            && self
                .sept
                .lock()
                .added_overlaps(GfnRange::page_containing(gfn, level))
        {
            level = level.smaller().unwrap_or(PageLevel::Size4K);
        }
        Ok(level)
    }

    #[inline]
    fn private_leaf_accessible(&self, gfn: Gfn) -> bool {
        // A TDX private page is guest-accessible at once only if PAGE.ADD
        // makes it MAPPED (before finalize, or a page premapped and added
        // at launch whose leaf the model installs only now); PAGE.AUG makes
        // it PENDING. finalize() takes mmu_lock for write, and premapped
        // pages leave their span only under it (zaps) or as this leaf is
        // installed, so this is stable while the fault holds it for read.
        !self.is_finalized() || self.sept.lock().added_pfn(gfn).is_some()
    }

    fn premapped_spans(&self) -> Vec<(Gfn, Pfn, u64)> {
        self.sept.lock().added_spans()
    }

    fn remove_premapped(
        &self,
        range: GfnRange,
        teardown: bool,
        counters: &Counters,
        events: &EventSink,
    ) -> u64 {
        let mut sept = self.sept.lock();
        if teardown {
            // remove_private_sptes() reclaims them with everything else.
            return sept.added_footprint().0;
        }
        let removed = sept.remove_added(range);
        let mut n = 0;
        for r in removed {
            n += r.len();
            Counters::add(&counters.sept_removes, r.len());
            events.emit(|| Event::SeptRemoved { range: r });
        }
        n
    }

    fn set_private_spte(&self, gfn: Gfn, installed: Option<(u64, PageLevel)>) -> PrivateAccess {
        let finalized = self.is_finalized();
        let mut sept = self.sept.lock();
        if let Some((spte, level)) = installed.filter(|_| sept.added_pfn(gfn).is_some()) {
            // The leaf KVM_TDX_INIT_MEM_REGION premapped, installed at the
            // first access: the page was ADDed then and is MAPPED.
            let pfn = sept.materialize(gfn);
            invariant!(
                level == PageLevel::Size4K && pfn == Some(spte::pfn(spte)),
                "premapped {gfn:?}: leaf {level:?} {spte:#x}, added {pfn:?}"
            );
        } else if let Some((spte, level)) = installed {
            // KVM's set_external_spte: tdx_sept_link_private_spt() for a
            // new Secure-EPT page, then tdx_sept_set_private_spte(): AUG
            // once the TD runs; before that the page is premapped and
            // KVM_TDX_INIT_MEM_REGION ADDs it (one step here).
            let first = gfn.align_down(level);
            if level == PageLevel::Size4K && !sept.has_table(first) {
                let st = sept.sept_add(first);
                invariant!(st.is_success(), "SEPT.ADD {first:?}: {st:?}");
            }
            let st = if finalized {
                sept.page_aug(first, level, spte::pfn(spte))
            } else {
                sept.page_add(first, spte::pfn(spte))
            };
            invariant!(st.is_success(), "AUG/ADD {first:?}: {st:?}");
        }
        match sept.access(gfn) {
            SeptAccess::Mapped => PrivateAccess::Accessible,
            SeptAccess::Pending => PrivateAccess::Pending,
            SeptAccess::Blocked => PrivateAccess::Blocked,
            SeptAccess::NotPresent => PrivateAccess::NotPresent,
        }
    }

    fn private_outcome(
        &self,
        a: PrivateAccess,
        gpa: Gpa,
        access: Access,
        for_accept: bool,
    ) -> PrivateOutcome {
        match a {
            PrivateAccess::Accessible => PrivateOutcome::Mapped,
            PrivateAccess::Pending if for_accept => PrivateOutcome::Mapped,
            PrivateAccess::Pending => {
                // tdx_handle_ept_violation(): #VE in the guest unless
                // SEPT_VE_DISABLE, in which case KVM kills the VM.
                PrivateOutcome::Exit(if self.td_attributes.sept_ve_disable() {
                    Stage2Fault::VmDead { gpa }
                } else {
                    Stage2Fault::VirtualizationException {
                        gpa,
                        ve: VeInfo::pending_access(gpa, access),
                    }
                })
            }
            PrivateAccess::Blocked => PrivateOutcome::Exit(Stage2Fault::SeptBlocked { gpa }),
            // Another vCPU installed the leaf and has not AUGed it yet.
            PrivateAccess::NotPresent => PrivateOutcome::Retry,
        }
    }

    /// The TDX mirror keeps its Secure-EPT pages until teardown.
    fn prunes_private_root(&self) -> bool {
        false
    }

    fn remove_private_sptes(
        &self,
        leaf_ranges: &[GfnRange],
        teardown: bool,
        counters: &Counters,
        events: &EventSink,
    ) {
        let mut sept = self.sept.lock();
        if teardown {
            sept.reclaim_all();
        } else {
            for r in leaf_ranges {
                Self::sept_remove_private_spte(&mut sept, *r);
                Counters::inc(&counters.sept_removes);
                events.emit(|| Event::SeptRemoved { range: *r });
            }
        }
    }

    fn tlb_flushed(&self, req: FlushRequest, vcpus: u32) {
        // The softTLB flush is the TD exit + re-entry at which the TDX
        // module flushes: the vCPU leaves its TLB epoch. A flush of a range
        // is no such exit: QEMU skips it on a vCPU that maps none of it.
        if req.gfns.is_some() {
            return;
        }
        let mut sept = self.sept.lock();
        for i in 0..vcpus {
            if req.covers(VcpuId(i)) {
                sept.vcpu_flushed(i as usize);
            }
        }
    }

    fn pending_frames(&self) -> u64 {
        self.sept.lock().pending_frames()
    }
}
