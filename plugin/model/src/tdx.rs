//! TDX: the operations only a TD has (arch/x86/kvm/vmx/tdx.c): the build
//! phase (KVM_TDX_INIT_MEM_REGION, KVM_TDX_FINALIZE_VM), the guest's
//! TDG.MEM.PAGE.ACCEPT and TDG.VP.INFO, and Secure-EPT introspection. What
//! the generic MMU asks of TDX goes through the backend hooks
//! (crate::private::tdx).

use std::sync::atomic::Ordering;

use crate::addr::{Gfn, GfnRange, Gpa, PageLevel};
use crate::event::{Counters, Event};
use crate::mmu::FaultOutcome;
use crate::sept::{AcceptOutcome, SeptState, TdVpInfo, TdxStatus};
use crate::spte;
use crate::types::{Access, RootRole, Stage2Fault, VcpuId};
use crate::vm::{unpack_root, Vm};

impl Vm {
    /// TDX: the Secure-EPT state of private `gfn` and the size of its leaf
    /// (`(Free, 4K)` for a VM that is not a TD: it has no Secure EPT).
    pub fn tdx_sept_state(&self, gfn: Gfn) -> (SeptState, PageLevel) {
        match self.private.tdx() {
            Some(tdx) => tdx.sept.lock().state(gfn),
            None => (SeptState::Free, PageLevel::Size4K),
        }
    }

    /// TDX: every Secure-EPT leaf (frames, state), in gfn order.
    pub fn tdx_sept_leaves(&self) -> Vec<(GfnRange, SeptState)> {
        self.private
            .tdx()
            .map(|tdx| tdx.sept.lock().leaves())
            .unwrap_or_default()
    }

    /// TDX: whether TDH.MR.FINALIZE ran.
    pub fn tdx_is_finalized(&self) -> bool {
        self.private.tdx().is_some_and(|tdx| tdx.is_finalized())
    }

    /// TDX: TDG.VP.INFO for `vcpu` (`None` for other VM types or a bad
    /// vCPU index). Every configured vCPU counts as initialised.
    pub fn tdx_vp_info(&self, vcpu: VcpuId) -> Option<TdVpInfo> {
        if self.private.tdx().is_none() || vcpu.0 >= self.config.max_vcpus {
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
    /// in a writable guest_memfd memslot. Errors: `TDX_OP_STATE_INCORRECT`
    /// after finalize (KVM: -EINVAL), `TDX_OPERAND_INVALID` for a frame that
    /// cannot be mapped privately (KVM: -EINVAL / -EFAULT),
    /// `TDX_EPT_ENTRY_STATE_INCORRECT` if a frame is already in the Secure
    /// EPT; the frames before the first that fails are added.
    ///
    /// The pages are kept as spans, their mirror leaves and Secure-EPT
    /// entries made at each page's first access (crate::sept, "Pages added
    /// at launch, as spans"): adding all of a 64 GiB guest's RAM costs a few
    /// spans, not 16 million entries.
    pub fn tdx_page_add(&self, range: GfnRange) -> Result<(), TdxStatus> {
        let Some(tdx) = self.private.tdx() else {
            return Err(TdxStatus::OPERAND_INVALID);
        };
        if range.is_empty() {
            return Ok(());
        }
        let _w = self.mmu_write();
        if tdx.is_finalized() {
            return Err(TdxStatus::OP_STATE_INCORRECT);
        }
        let slots = self.memslots.load();
        let attrs = self.attrs.load();
        let mirror = self.current_roots[RootRole::Mirror.index()].load(Ordering::Acquire);
        let mut start = range.start();
        while start < range.end() {
            // The frames from `start` a fault could map privately and
            // writably (what kvm_tdp_map_page() of each would need): one
            // memslot, private by the attributes.
            let mappable = slots.find(start).copied().and_then(|slot| {
                if slot.invalid
                    || !slot.private_capable()
                    || slot.readonly()
                    || mirror == 0
                    || self.vm_dead.load(Ordering::Acquire)
                {
                    return None;
                }
                let end = range.end().min(slot.range().end());
                let piece = GfnRange::new(start, end)?;
                let private = attrs.private_ranges().intersecting(piece);
                let first = private.first().filter(|p| p.start() <= start)?;
                let end = first.end().min(end);
                Some((slot, GfnRange::new(start, end)?))
            });
            let mut sept = tdx.sept.lock();
            let Some((slot, piece)) = mappable else {
                // The per-page order: a frame already in the Secure EPT is
                // refused for that first.
                return Err(if sept.state(start).0 != SeptState::Free {
                    TdxStatus::EPT_ENTRY_STATE_INCORRECT.rcx()
                } else {
                    TdxStatus::OPERAND_INVALID.rcx()
                });
            };
            let end = sept.page_add_range(piece, slot.pfn_of(start))?;
            if end < piece.end() {
                return Err(TdxStatus::EPT_ENTRY_STATE_INCORRECT.rcx());
            }
            start = end;
        }
        Ok(())
    }

    /// TDX: KVM_TDX_FINALIZE_VM (TDH.MR.FINALIZE): the build phase ends;
    /// later private faults AUG pages PENDING for the guest to accept.
    /// `TDX_OP_STATE_INCORRECT` if already finalized or not a TD.
    pub fn tdx_finalize(&self) -> TdxStatus {
        let Some(tdx) = self.private.tdx() else {
            return TdxStatus::OP_STATE_INCORRECT;
        };
        let _w = self.mmu_write();
        let st = tdx.sept.lock().finalize();
        if st.is_success() {
            tdx.finalized.store(true, Ordering::Release);
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
        let Some(tdx) = self.private.tdx() else {
            return AcceptOutcome::Status(TdxStatus::OPERAND_INVALID.rcx());
        };
        let state = self.mmu_lock.read();
        let out = tdx.sept.lock().accept(rcx);
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
                invariant!(set.is_some(), "accepted {range:?} has no mirror leaf");
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
}
