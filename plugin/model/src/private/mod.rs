//! The private-memory backends behind one interface: KVM's
//! `kvm_x86_ops` private-memory hooks (arch/x86/include/asm/kvm-x86-ops.h).
//!
//! The generic MMU ([`crate::mmu`]) knows no VM type by name. Where KVM's
//! TDP MMU calls into TDX or SEV through a hook, the model calls
//! [`PrivateMem`] on the VM's [`Backend`]:
//!
//! | KVM hook                                  | [`PrivateMem`]                  |
//! |-------------------------------------------|---------------------------------|
//! | `private_max_mapping_level` / `gmem_max_mapping_level`, `gmem_prepare` | [`PrivateMem::private_max_level`] |
//! | `link_external_spt`, `set_external_spte`  | [`PrivateMem::set_private_spte`] |
//! | `remove_external_spte`, `free_external_spt` | [`PrivateMem::remove_private_sptes`], [`PrivateMem::remove_premapped`] |
//! | (the premap of KVM_TDX_INIT_MEM_REGION, kept as spans) | [`PrivateMem::premapped_spans`] |
//! | `gmem_invalidate`                         | [`PrivateMem::gmem_invalidate`] |
//! | `kvm_gmem_bind()` / release               | [`PrivateMem::gmem_bind`], [`PrivateMem::gmem_unbind`] |
//! | (hardware) the per-access check of a host or device access | [`PrivateMem::device_access`], [`PrivateMem::host_write_allowed`] |
//!
//! Three backends: software-protected ([`SwProtected`], attributes only; also
//! the default VM's, whose memory is never private), TDX ([`tdx::Tdx`]: the
//! Secure EPT behind the mirror root) and SNP ([`snp::Snp`]: the RMP). The
//! operations only one of them has (TDG.MEM.PAGE.ACCEPT, PVALIDATE, ...)
//! are methods of the [`crate::Vm`] in crate::tdx and crate::snp.
//!
//! [`Backend`] is an enum, not a `dyn PrivateMem`: the hooks run on the
//! fault path, and a `match` on a small enum inlines where a virtual call
//! cannot. The lookup hit path calls no hook at all.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use parking_lot::{RwLockReadGuard, RwLockWriteGuard};

use crate::addr::{Gfn, GfnRange, Gpa, PageLevel, Pfn};
use crate::config::{VmConfig, VmType};
use crate::event::{Counters, EventSink};
use crate::memslot::{Memslot, MemslotError};
use crate::rmp::DeviceAccess;
use crate::types::{Access, FlushRequest, RmpupdateError, Stage2Fault};

pub(crate) mod snp;
pub(crate) mod tdx;

/// Where a private leaf stands after [`PrivateMem::set_private_spte`]
/// (for TDX: its Secure-EPT state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PrivateAccess {
    /// The guest may use it.
    Accessible,
    /// Mapped, but the guest must accept it first (TDX PENDING).
    Pending,
    /// Being zapped (TDX BLOCKED).
    Blocked,
    /// Another vCPU installed the leaf and has not finished (TDX: not AUGed
    /// yet).
    NotPresent,
}

/// What a fault that mapped a private leaf ends in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PrivateOutcome {
    /// Install the translation.
    Mapped,
    /// Fault again (`RET_PF_RETRY`).
    Retry,
    /// Exit or guest fault.
    Exit(Stage2Fault),
}

/// KVM's private-memory hooks. Every method has the behaviour of a VM whose
/// private memory is tracked by attributes alone (KVM_X86_SW_PROTECTED_VM),
/// so a backend overrides only what its hardware adds.
pub(crate) trait PrivateMem {
    /// The guest_memfd invalidate lock (`filemap_invalidate_lock`) for
    /// read, if this backend's prepare and invalidate need one: a private
    /// fault holds it from its snapshots to the install.
    fn gmem_read(&self) -> Option<RwLockReadGuard<'_, ()>> {
        None
    }

    /// The same lock for write, held by the host operations that return
    /// pages to the host (conversion to shared, memslot delete, teardown)
    /// until what they publish is visible.
    fn gmem_write(&self) -> Option<RwLockWriteGuard<'_, ()>> {
        None
    }

    /// `gmem_prepare` + `private_max_mapping_level`: prepares the backing of
    /// private `gfn` (`pfn`) for the guest and caps the level a fault may
    /// map it at (at most `goal`, already capped by the memslot, the
    /// attributes and the configured private maximum).
    fn private_max_level(
        &self,
        _pfn: Pfn,
        _gfn: Gfn,
        goal: PageLevel,
    ) -> Result<PageLevel, RmpupdateError> {
        Ok(goal)
    }

    /// Whether the private leaf a fault installs now for `gfn` is
    /// guest-accessible at once (TDX after finalize: no, AUG makes it
    /// PENDING, unless it is a page premapped at launch).
    fn private_leaf_accessible(&self, _gfn: Gfn) -> bool {
        true
    }

    /// Private 4K leaves the mirror root has but keeps as spans instead of
    /// SPTEs (TDX: the pages KVM_TDX_INIT_MEM_REGION premapped that no vCPU
    /// has reached yet): (first gfn, first pfn, pages). A fault on one
    /// installs its SPTE ([`PrivateMem::set_private_spte`]).
    fn premapped_spans(&self) -> Vec<(Gfn, Pfn, u64)> {
        Vec::new()
    }

    /// A zap of `range` in the private root: the premapped leaves of
    /// [`PrivateMem::premapped_spans`] in it are zapped too (at teardown
    /// all of them, with [`PrivateMem::remove_private_sptes`]). Returns how
    /// many 4K leaves that was.
    fn remove_premapped(
        &self,
        _range: GfnRange,
        _teardown: bool,
        _counters: &Counters,
        _events: &EventSink,
    ) -> u64 {
        0
    }

    /// `set_external_spte`: called under `mmu_lock` (read) after a fault
    /// found or installed a private leaf for `gfn`; `installed` is the new
    /// leaf's (SPTE, level) if this fault installed it.
    fn set_private_spte(&self, _gfn: Gfn, _installed: Option<(u64, PageLevel)>) -> PrivateAccess {
        PrivateAccess::Accessible
    }

    /// What the fault ends in for a private leaf in state `a`; `for_accept`
    /// when the fault serves the guest's accept rather than an access.
    fn private_outcome(
        &self,
        _a: PrivateAccess,
        _gpa: Gpa,
        _access: Access,
        _for_accept: bool,
    ) -> PrivateOutcome {
        PrivateOutcome::Mapped
    }

    /// Whether zaps of the private root free the tables they empty.
    fn prunes_private_root(&self) -> bool {
        true
    }

    /// `remove_external_spte` for the private leaves a zap removed
    /// (`leaf_ranges`), or at teardown everything.
    fn remove_private_sptes(
        &self,
        _leaf_ranges: &[GfnRange],
        _teardown: bool,
        _counters: &Counters,
        _events: &EventSink,
    ) {
    }

    /// `kvm_gmem_bind()`: a guest_memfd memslot is created.
    fn gmem_bind(&self, _slot: &Memslot) -> Result<(), MemslotError> {
        Ok(())
    }

    /// The guest_memfd of a deleted memslot is released. The caller holds
    /// [`PrivateMem::gmem_write`] and invalidated the slot first.
    fn gmem_unbind(&self, _slot: &Memslot) {}

    /// A guest_memfd memslot grew to `grown` (audit mode's learned RAM, see
    /// [`Vm::grow_memslot`](crate::Vm::grow_memslot)): its backing is bound
    /// as a whole (SNP: the RMP covers it, absorbed entries kept).
    fn gmem_grow(&self, _grown: &Memslot) -> Result<(), MemslotError> {
        Ok(())
    }

    /// `gmem_invalidate` for the backing of `range` (inside `slot`): its
    /// pages return to the host. Returns how many changed.
    fn gmem_invalidate(
        &self,
        _slot: &Memslot,
        _range: GfnRange,
        _counters: &Counters,
        _events: &EventSink,
    ) -> u64 {
        0
    }

    /// The vCPUs `req` covers flushed their softTLBs (for TDX: the TD exit
    /// and re-entry at which the TDX module flushes).
    fn tlb_flushed(&self, _req: FlushRequest, _vcpus: u32) {}

    /// Frames the guest must still accept (TDX PENDING).
    fn pending_frames(&self) -> u64 {
        0
    }

    /// The hardware's check of a device (DMA) access to backing frame `pfn`
    /// whose gfn is not private by its attributes.
    fn device_access(&self, _pfn: Pfn, _write: bool) -> DeviceAccess {
        DeviceAccess::Allowed
    }

    /// The hardware's check of a host write to backing frame `pfn`.
    fn host_write_allowed(&self, _pfn: Pfn) -> bool {
        true
    }
}

/// KVM_X86_SW_PROTECTED_VM (and the default VM): private memory is an
/// attribute only; every hook keeps its default.
#[derive(Debug)]
pub(crate) struct SwProtected;

impl PrivateMem for SwProtected {}

/// The VM's backend, dispatched statically.
#[derive(Debug)]
pub(crate) enum Backend {
    /// Default and sw-protected VMs.
    SwProtected(SwProtected),
    /// A TD.
    Tdx(tdx::Tdx),
    /// An SEV-SNP guest.
    Snp(snp::Snp),
}

impl Backend {
    /// The backend of a VM built from `config`.
    /// `generation` is the VM's stage-2 generation ([`crate::Vm::stage2_generation`]),
    /// which a backend with state of its own in the answer (the RMP) bumps.
    pub fn new(config: &VmConfig, generation: &Arc<AtomicU64>) -> Backend {
        match config.vm_type {
            VmType::Default | VmType::SwProtected => Backend::SwProtected(SwProtected),
            VmType::Tdx => Backend::Tdx(tdx::Tdx::new(config)),
            VmType::Snp => Backend::Snp(snp::Snp::new(config, Arc::clone(generation))),
        }
    }

    /// The TDX backend, if this is a TD.
    #[inline(always)]
    pub fn tdx(&self) -> Option<&tdx::Tdx> {
        match self {
            Backend::Tdx(t) => Some(t),
            _ => None,
        }
    }

    /// The SNP backend, if this is an SNP guest.
    #[inline(always)]
    pub fn snp(&self) -> Option<&snp::Snp> {
        match self {
            Backend::Snp(s) => Some(s),
            _ => None,
        }
    }
}

/// Forwards each hook to the backend in use.
macro_rules! dispatch {
    ($self:ident, $b:ident => $e:expr) => {
        match $self {
            Backend::SwProtected($b) => $e,
            Backend::Tdx($b) => $e,
            Backend::Snp($b) => $e,
        }
    };
}

impl PrivateMem for Backend {
    #[inline]
    fn gmem_read(&self) -> Option<RwLockReadGuard<'_, ()>> {
        dispatch!(self, b => b.gmem_read())
    }
    #[inline]
    fn gmem_write(&self) -> Option<RwLockWriteGuard<'_, ()>> {
        dispatch!(self, b => b.gmem_write())
    }
    #[inline]
    fn private_max_level(
        &self,
        pfn: Pfn,
        gfn: Gfn,
        goal: PageLevel,
    ) -> Result<PageLevel, RmpupdateError> {
        dispatch!(self, b => b.private_max_level(pfn, gfn, goal))
    }
    #[inline]
    fn private_leaf_accessible(&self, gfn: Gfn) -> bool {
        dispatch!(self, b => b.private_leaf_accessible(gfn))
    }
    fn premapped_spans(&self) -> Vec<(Gfn, Pfn, u64)> {
        dispatch!(self, b => b.premapped_spans())
    }
    fn remove_premapped(
        &self,
        range: GfnRange,
        teardown: bool,
        counters: &Counters,
        events: &EventSink,
    ) -> u64 {
        dispatch!(self, b => b.remove_premapped(range, teardown, counters, events))
    }
    #[inline]
    fn set_private_spte(&self, gfn: Gfn, installed: Option<(u64, PageLevel)>) -> PrivateAccess {
        dispatch!(self, b => b.set_private_spte(gfn, installed))
    }
    #[inline]
    fn private_outcome(
        &self,
        a: PrivateAccess,
        gpa: Gpa,
        access: Access,
        for_accept: bool,
    ) -> PrivateOutcome {
        dispatch!(self, b => b.private_outcome(a, gpa, access, for_accept))
    }
    #[inline]
    fn prunes_private_root(&self) -> bool {
        dispatch!(self, b => b.prunes_private_root())
    }
    fn remove_private_sptes(
        &self,
        leaf_ranges: &[GfnRange],
        teardown: bool,
        counters: &Counters,
        events: &EventSink,
    ) {
        dispatch!(self, b => b.remove_private_sptes(leaf_ranges, teardown, counters, events))
    }
    fn gmem_bind(&self, slot: &Memslot) -> Result<(), MemslotError> {
        dispatch!(self, b => b.gmem_bind(slot))
    }
    fn gmem_unbind(&self, slot: &Memslot) {
        dispatch!(self, b => b.gmem_unbind(slot))
    }
    fn gmem_grow(&self, grown: &Memslot) -> Result<(), MemslotError> {
        dispatch!(self, b => b.gmem_grow(grown))
    }
    fn gmem_invalidate(
        &self,
        slot: &Memslot,
        range: GfnRange,
        counters: &Counters,
        events: &EventSink,
    ) -> u64 {
        dispatch!(self, b => b.gmem_invalidate(slot, range, counters, events))
    }
    fn tlb_flushed(&self, req: FlushRequest, vcpus: u32) {
        dispatch!(self, b => b.tlb_flushed(req, vcpus))
    }
    fn pending_frames(&self) -> u64 {
        dispatch!(self, b => b.pending_frames())
    }
    fn device_access(&self, pfn: Pfn, write: bool) -> DeviceAccess {
        dispatch!(self, b => b.device_access(pfn, write))
    }
    fn host_write_allowed(&self, pfn: Pfn) -> bool {
        dispatch!(self, b => b.host_write_allowed(pfn))
    }
}
