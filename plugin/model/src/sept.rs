//! The TDX Secure EPT: the per-private-GFN state the TDX module keeps, the
//! host SEAMCALLs that move it (as KVM's arch/x86/kvm/vmx/tdx.c issues them),
//! the guest's TDG.MEM.PAGE.ACCEPT, and the TD configuration TDG.VP.INFO
//! reports.
//!
//! Sources (facts only): the Intel TDX Module ABI spec and the TDX module's
//! own sources (src/vmm_dispatcher/api_calls/tdh_mem_*.c,
//! src/td_dispatcher/tdcall_leaf_handlers/tdg_mem_page_accept.c); Linux
//! arch/x86/include/asm/shared/tdx_errno.h (status values),
//! arch/x86/coco/tdx/tdx-shared.c (`try_accept_one()`), arch/x86/kvm/vmx/tdx.c.
//!
//! # Model
//!
//! A 2M region of the private GPA space is, at the Secure-EPT level that maps
//! it, one of: FREE (no entry), a 2M leaf, or a non-leaf entry pointing to a
//! Secure-EPT page of 512 4K entries (added by TDH.MEM.SEPT.ADD, which KVM
//! issues from `tdx_sept_link_private_spt()` before the first 4K page of the
//! region; KVM frees Secure-EPT pages only at teardown). Levels above 2M are
//! always present here (KVM links them on demand and never unlinks them while
//! the TD lives), so "the walk failed" means "stopped at the 2M entry".
//!
//! Leaf states are the TDX module's SEPT_FREE, SEPT_PENDING, SEPT_MAPPED,
//! SEPT_BLOCKED and SEPT_PENDING_BLOCKED ([`SeptState`]). A blocked entry
//! records the TD epoch at the block (the module's PAMT.BEPOCH); it may be
//! removed, promoted or demoted only once the block is TLB-tracked: TDH.MEM.TRACK
//! moved the TD epoch past BEPOCH and every vCPU has left the old epoch. A
//! vCPU leaves an epoch by a TD exit and re-entry, at which the TDX module
//! flushes its EPT translations; in cvmem that is a flush of its softTLB
//! ([`Sept::vcpu_flushed`], called by [`crate::Vm::flush`]).
//!
//! # Pages added at launch, as spans
//!
//! KVM_TDX_INIT_MEM_REGION premaps every page of the initial image at 4K in
//! the mirror root and TDH.MEM.PAGE.ADDs it: one Secure-EPT entry (and one
//! mirror leaf) per 4K page, 16 MB of model state and 0.15 s per GiB when
//! all RAM is added. The model keeps such pages as spans instead
//! ([`Sept::page_add_range`]): a span of gfns, the pfn of its first page, and
//! the 2M regions whose Secure-EPT pages the launch linked. A page in a span
//! is, for every question asked of the Secure EPT, a MAPPED 4K leaf under a
//! Secure-EPT page, and for the mirror root a premapped, guest-accessible 4K
//! leaf ([`crate::Vm::leaves`] lists it). It becomes an entry of its own only
//! when the pages diverge: the guest's first access to it (the fault installs
//! the mirror leaf it had from the premap, [`Sept::materialize`]), a SEAMCALL
//! on it, or a zap (which removes it from the span: BLOCK, TRACK and REMOVE
//! of a page the guest never reached, see [`Sept::remove_added`]).
//!
//! Before TDH.MR.FINALIZE no vCPU runs and the module requires no blocking or
//! tracking before REMOVE/PROMOTE/DEMOTE (`op_state_is_tlb_tracking_required()`);
//! KVM's `tdx_track()` returns early then too.

use std::collections::BTreeMap;
use std::fmt;

mod spans;
use spans::Spans;

use crate::addr::{Gfn, GfnRange, Gpa, PageLevel, Pfn, PAGE_SHIFT};
use crate::types::Gpaw;

/// A TDX module status as returned in RAX by a SEAMCALL or TDCALL: the status
/// class in bits 63:32, details (often the operand ID) in bits 31:0.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TdxStatus(pub u64);

impl TdxStatus {
    /// `TDX_SUCCESS`.
    pub const SUCCESS: TdxStatus = TdxStatus(0);
    /// `TDX_OPERAND_INVALID` (Linux tdx_errno.h).
    pub const OPERAND_INVALID: TdxStatus = TdxStatus(0xC000_0100_0000_0000);
    /// `TDX_OPERAND_BUSY` (Linux tdx_errno.h).
    pub const OPERAND_BUSY: TdxStatus = TdxStatus(0x8000_0200_0000_0000);
    /// `TDX_PREVIOUS_TLB_EPOCH_BUSY` (Linux tdx_errno.h): TDH.MEM.TRACK while a
    /// vCPU still runs in the epoch before the current one.
    pub const PREVIOUS_TLB_EPOCH_BUSY: TdxStatus = TdxStatus(0x8000_0201_0000_0000);
    /// `TDX_OP_STATE_INCORRECT` (TDX module tdx_error_codes_defs): e.g. PAGE.ADD
    /// after finalize, PAGE.AUG before.
    pub const OP_STATE_INCORRECT: TdxStatus = TdxStatus(0xC000_0608_0000_0000);
    /// `TDX_EPT_WALK_FAILED` (Linux tdx_errno.h): the Secure-EPT walk stopped
    /// above the requested level.
    pub const EPT_WALK_FAILED: TdxStatus = TdxStatus(0xC000_0B00_0000_0000);
    /// `TDX_GPA_RANGE_NOT_BLOCKED` (TDX module error codes).
    pub const GPA_RANGE_NOT_BLOCKED: TdxStatus = TdxStatus(0xC000_0B06_0000_0000);
    /// `TDX_GPA_RANGE_ALREADY_BLOCKED` (TDX module error codes; not an error:
    /// bit 63 clear).
    pub const GPA_RANGE_ALREADY_BLOCKED: TdxStatus = TdxStatus(0x0000_0B07_0000_0000);
    /// `TDX_TLB_TRACKING_NOT_DONE` (TDX module error codes).
    pub const TLB_TRACKING_NOT_DONE: TdxStatus = TdxStatus(0xC000_0B08_0000_0000);
    /// `TDX_EPT_INVALID_PROMOTE_CONDITIONS` (TDX module error codes).
    pub const EPT_INVALID_PROMOTE_CONDITIONS: TdxStatus = TdxStatus(0xC000_0B09_0000_0000);
    /// `TDX_PAGE_ALREADY_ACCEPTED` (TDX module error codes; not an error:
    /// bit 63 clear).
    pub const PAGE_ALREADY_ACCEPTED: TdxStatus = TdxStatus(0x0000_0B0A_0000_0000);
    /// `TDX_PAGE_SIZE_MISMATCH` (TDX module error codes).
    pub const PAGE_SIZE_MISMATCH: TdxStatus = TdxStatus(0xC000_0B0B_0000_0000);
    /// `TDX_EPT_ENTRY_STATE_INCORRECT` (Linux tdx_errno.h).
    pub const EPT_ENTRY_STATE_INCORRECT: TdxStatus = TdxStatus(0xC000_0B0D_0000_0000);

    /// `TDX_OPERAND_ID_RCX` (Linux tdx_errno.h): the detail most Secure-EPT
    /// SEAMCALLs report.
    pub const OPERAND_ID_RCX: u64 = 0x01;

    /// `TDX_SEAMCALL_STATUS_MASK`: the status class.
    pub const fn class(self) -> TdxStatus {
        TdxStatus(self.0 & 0xFFFF_FFFF_0000_0000)
    }

    /// The detail bits 31:0 (operand ID, or the Secure-EPT level for ACCEPT).
    pub const fn detail(self) -> u32 {
        self.0 as u32
    }

    /// This class with `detail` in bits 31:0.
    pub const fn with_detail(self, detail: u64) -> TdxStatus {
        TdxStatus((self.0 & 0xFFFF_FFFF_0000_0000) | (detail & 0xFFFF_FFFF))
    }

    /// This class with `TDX_OPERAND_ID_RCX`.
    pub const fn rcx(self) -> TdxStatus {
        self.with_detail(Self::OPERAND_ID_RCX)
    }

    /// `TDX_SUCCESS`, exactly.
    pub const fn is_success(self) -> bool {
        self.0 == 0
    }

    /// Bit 63: an error (as opposed to success or a warning such as
    /// `TDX_PAGE_ALREADY_ACCEPTED`).
    pub const fn is_error(self) -> bool {
        self.0 >> 63 != 0
    }

    /// The spec name of the class.
    pub const fn name(self) -> &'static str {
        match self.class().0 {
            0 => "TDX_SUCCESS",
            0xC000_0100_0000_0000 => "TDX_OPERAND_INVALID",
            0x8000_0200_0000_0000 => "TDX_OPERAND_BUSY",
            0x8000_0201_0000_0000 => "TDX_PREVIOUS_TLB_EPOCH_BUSY",
            0xC000_0608_0000_0000 => "TDX_OP_STATE_INCORRECT",
            0xC000_0B00_0000_0000 => "TDX_EPT_WALK_FAILED",
            0xC000_0B06_0000_0000 => "TDX_GPA_RANGE_NOT_BLOCKED",
            0x0000_0B07_0000_0000 => "TDX_GPA_RANGE_ALREADY_BLOCKED",
            0xC000_0B08_0000_0000 => "TDX_TLB_TRACKING_NOT_DONE",
            0xC000_0B09_0000_0000 => "TDX_EPT_INVALID_PROMOTE_CONDITIONS",
            0x0000_0B0A_0000_0000 => "TDX_PAGE_ALREADY_ACCEPTED",
            0xC000_0B0B_0000_0000 => "TDX_PAGE_SIZE_MISMATCH",
            0xC000_0B0D_0000_0000 => "TDX_EPT_ENTRY_STATE_INCORRECT",
            _ => "TDX_(unknown)",
        }
    }
}

impl fmt::Debug for TdxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({:#x})", self.name(), self.0)
    }
}

impl fmt::Display for TdxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// TD ATTRIBUTES (TD_PARAMS.ATTRIBUTES; Linux arch/x86/coco/tdx/tdx.c
/// `ATTR_DEBUG`, `ATTR_SEPT_VE_DISABLE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct TdAttributes(pub u64);

impl TdAttributes {
    /// `ATTR_DEBUG`, bit 0: an off-TD debugger may access the TD.
    pub const DEBUG: u64 = 1 << 0;
    /// `ATTR_SEPT_VE_DISABLE`, bit 28: an access to a PENDING page is not a
    /// #VE in the guest but an EPT-violation exit to the host.
    pub const SEPT_VE_DISABLE: u64 = 1 << 28;

    /// Whether `SEPT_VE_DISABLE` is set.
    pub const fn sept_ve_disable(self) -> bool {
        self.0 & Self::SEPT_VE_DISABLE != 0
    }

    /// Whether `DEBUG` is set.
    pub const fn debug(self) -> bool {
        self.0 & Self::DEBUG != 0
    }
}

/// The outputs of TDG.VP.INFO (TDCALL leaf 1), register by register, as
/// Linux's `tdx_parse_tdinfo()` reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TdVpInfo {
    /// RCX: bits 5:0 GPAW (48 or 52), the rest reserved 0.
    pub rcx: u64,
    /// RDX: the TD ATTRIBUTES.
    pub rdx: u64,
    /// R8: bits 31:0 NUM_VCPUS, bits 63:32 MAX_VCPUS.
    pub r8: u64,
    /// R9: bits 31:0 VCPU_INDEX of the calling vCPU.
    pub r9: u64,
    /// R10: feature bits (bit 0 SYS_RD); cvmem reports none.
    pub r10: u64,
    /// R11: reserved, 0.
    pub r11: u64,
}

impl TdVpInfo {
    /// TDG.VP.INFO for vCPU `vcpu_index` of a TD with `num_vcpus` of
    /// `max_vcpus` vCPUs.
    pub const fn new(
        gpaw: Gpaw,
        attributes: TdAttributes,
        num_vcpus: u32,
        max_vcpus: u32,
        vcpu_index: u32,
    ) -> TdVpInfo {
        TdVpInfo {
            rcx: gpaw.bits() as u64,
            rdx: attributes.0,
            r8: (num_vcpus as u64) | ((max_vcpus as u64) << 32),
            r9: vcpu_index as u64,
            r10: 0,
            r11: 0,
        }
    }
}

/// The state of a Secure-EPT leaf entry (the TDX module's SEPT_* states that
/// a non-migrating, non-L2 TD can reach).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SeptState {
    /// SEPT_FREE: no page.
    Free,
    /// SEPT_PENDING: added by TDH.MEM.PAGE.AUG, not yet accepted by the guest.
    Pending,
    /// SEPT_MAPPED: guest-accessible (accepted, or added by TDH.MEM.PAGE.ADD).
    Mapped,
    /// SEPT_BLOCKED: a MAPPED entry after TDH.MEM.RANGE.BLOCK.
    Blocked,
    /// SEPT_PENDING_BLOCKED: a PENDING entry after TDH.MEM.RANGE.BLOCK.
    PendingBlocked,
}

impl SeptState {
    /// Either blocked state (`sept_state_is_any_blocked()`).
    pub const fn is_blocked(self) -> bool {
        matches!(self, SeptState::Blocked | SeptState::PendingBlocked)
    }

    /// The state TDH.MEM.RANGE.BLOCK leaves (`block_sept_entry()`).
    const fn blocked(self) -> SeptState {
        match self {
            SeptState::Pending | SeptState::PendingBlocked => SeptState::PendingBlocked,
            _ => SeptState::Blocked,
        }
    }

    /// The state before the block (what DEMOTE gives the 4K entries, and
    /// what TDH.MEM.RANGE.UNBLOCK restores).
    const fn unblocked(self) -> SeptState {
        match self {
            SeptState::PendingBlocked => SeptState::Pending,
            SeptState::Blocked => SeptState::Mapped,
            s => s,
        }
    }
}

/// What a guest access to a private GFN meets in the Secure EPT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SeptAccess {
    /// MAPPED: allowed.
    Mapped,
    /// PENDING: #VE or an exit, per `SEPT_VE_DISABLE`.
    Pending,
    /// BLOCKED or PENDING_BLOCKED: EPT-violation exit to the host.
    Blocked,
    /// FREE (or no Secure-EPT page): EPT-violation exit; KVM maps the page.
    NotPresent,
}

/// The answer to TDG.MEM.PAGE.ACCEPT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AcceptOutcome {
    /// `TDX_SUCCESS`: `range` went PENDING -> MAPPED; the TDX module zeroed
    /// it (`init_sept_4k_page()`), so the plugin clears its backing.
    Accepted {
        /// The frames accepted.
        range: GfnRange,
    },
    /// The TDCALL completes with this status in RAX (and no state change):
    /// `TDX_PAGE_ALREADY_ACCEPTED` or `TDX_PAGE_SIZE_MISMATCH` with the
    /// Secure-EPT level in the detail bits, or `TDX_OPERAND_INVALID` with
    /// `TDX_OPERAND_ID_RCX`.
    Status(TdxStatus),
    /// The module TD-exits with an EPT violation (extended exit qualification
    /// type ACCEPT, `async_tdexit_ept_violation(.., VMX_EEQ_ACCEPT)`): the page
    /// is not PENDING or not present at the requested level. The host
    /// handles the fault (KVM: TDH.MEM.PAGE.AUG), then the vCPU re-executes
    /// the TDCALL.
    ExitToHost {
        /// The GPA being accepted (aligned to `level`).
        gpa: Gpa,
        /// The level the guest asked for.
        level: PageLevel,
    },
}

impl AcceptOutcome {
    /// RAX as the guest sees it, or `None` for a TD exit (the TDCALL is
    /// re-executed).
    pub const fn status(self) -> Option<TdxStatus> {
        match self {
            AcceptOutcome::Accepted { .. } => Some(TdxStatus::SUCCESS),
            AcceptOutcome::Status(s) => Some(s),
            AcceptOutcome::ExitToHost { .. } => None,
        }
    }
}

/// TDX's Secure-EPT level number in RCX bits 2:0 (0 = 4K, 1 = 2M, 2 = 1G).
pub const fn tdx_level(level: PageLevel) -> u64 {
    level.number() as u64 - 1
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Leaf {
    state: SeptState,
    pfn: Pfn,
    /// The TD epoch at the last block (PAMT.BEPOCH).
    bepoch: u64,
}

/// A 2M-level Secure-EPT entry.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pde {
    /// A 2M leaf.
    Leaf(Leaf),
    /// A Secure-EPT page of 512 4K entries (FREE ones absent); `blocked` is
    /// the BEPOCH of a non-leaf block (SEPT_NL_BLOCKED), for PROMOTE.
    Table {
        ptes: BTreeMap<u16, Leaf>,
        blocked: Option<u64>,
    },
}

/// The Secure EPT of one TD, with its epoch tracking and build state. Not
/// synchronised: [`crate::Vm`] keeps it behind a lock.
#[derive(Clone, Debug)]
pub struct Sept {
    gpaw: Gpaw,
    /// 2M-region index (gfn >> 9) -> entry.
    pdes: BTreeMap<u64, Pde>,
    /// TDCS.TD_EPOCH.
    td_epoch: u64,
    /// The epoch each vCPU runs in (it left every earlier one).
    vcpu_epoch: Vec<u64>,
    finalized: bool,
    pending_frames: u64,
    /// Pages added at launch that have no entry of their own yet (see the
    /// module comment): gfn -> pfn. Disjoint from the explicit entries.
    added: Spans,
    /// 2M regions whose Secure-EPT page the launch linked and that have no
    /// `pdes` entry yet: each is a Secure-EPT page whose entries are the
    /// `added` pages in it (the rest FREE).
    added_tables: Spans,
}

const PTES: u64 = 512;

fn region(gfn: Gfn) -> u64 {
    gfn.raw() >> 9
}

fn pte_index(gfn: Gfn) -> u16 {
    (gfn.raw() & (PTES - 1)) as u16
}

fn frames(level: PageLevel) -> u64 {
    level.pages()
}

impl Sept {
    /// An empty Secure EPT for a TD of `max_vcpus` vCPUs, not finalized.
    pub fn new(gpaw: Gpaw, max_vcpus: u32) -> Sept {
        Sept {
            gpaw,
            pdes: BTreeMap::new(),
            td_epoch: 1,
            vcpu_epoch: vec![1; max_vcpus as usize],
            finalized: false,
            pending_frames: 0,
            added: Spans::default(),
            added_tables: Spans::default(),
        }
    }

    /// Whether TDH.MR.FINALIZE ran (KVM's `TD_STATE_RUNNABLE`).
    pub fn is_finalized(&self) -> bool {
        self.finalized
    }

    /// TDCS.TD_EPOCH.
    pub fn td_epoch(&self) -> u64 {
        self.td_epoch
    }

    /// Frames in PENDING or PENDING_BLOCKED state.
    pub fn pending_frames(&self) -> u64 {
        self.pending_frames
    }

    /// TDH.MR.FINALIZE (KVM_TDX_FINALIZE_VM): ends the build phase; from now
    /// on PAGE.ADD is refused and PAGE.AUG allowed. `TDX_OP_STATE_INCORRECT`
    /// if already finalized.
    pub fn finalize(&mut self) -> TdxStatus {
        if self.finalized {
            return TdxStatus::OP_STATE_INCORRECT;
        }
        self.finalized = true;
        TdxStatus::SUCCESS
    }

    /// The state of the leaf mapping `gfn` and its size (FREE/4K if none).
    pub fn state(&self, gfn: Gfn) -> (SeptState, PageLevel) {
        let added = || {
            if self.added.contains(gfn.raw()) {
                SeptState::Mapped
            } else {
                SeptState::Free
            }
        };
        match self.pdes.get(&region(gfn)) {
            Some(Pde::Leaf(l)) => (l.state, PageLevel::Size2M),
            Some(Pde::Table { ptes, .. }) => (
                ptes.get(&pte_index(gfn)).map_or_else(added, |l| l.state),
                PageLevel::Size4K,
            ),
            None => (added(), PageLevel::Size4K),
        }
    }

    /// What a guest access to private `gfn` meets.
    pub fn access(&self, gfn: Gfn) -> SeptAccess {
        match self.state(gfn).0 {
            SeptState::Mapped => SeptAccess::Mapped,
            SeptState::Pending => SeptAccess::Pending,
            SeptState::Blocked | SeptState::PendingBlocked => SeptAccess::Blocked,
            SeptState::Free => SeptAccess::NotPresent,
        }
    }

    /// Every leaf: (frames, level, state), in gfn order.
    pub fn leaves(&self) -> Vec<(GfnRange, SeptState)> {
        let mut out: Vec<(GfnRange, SeptState)> = self
            .added
            .iter()
            .flat_map(|(s, e, _)| s..e)
            .map(|g| (GfnRange::one(Gfn::new(g)), SeptState::Mapped))
            .collect();
        for (&r, pde) in &self.pdes {
            match pde {
                Pde::Leaf(l) => out.push((
                    GfnRange::page_containing(Gfn::new(r << 9), PageLevel::Size2M),
                    l.state,
                )),
                Pde::Table { ptes, .. } => {
                    for (&i, l) in ptes {
                        out.push((GfnRange::one(Gfn::new((r << 9) | i as u64)), l.state));
                    }
                }
            }
        }
        out.sort_by_key(|(r, _)| r.start());
        out
    }

    /// Whether the 2M region holding `gfn` has a Secure-EPT page (a non-leaf
    /// 2M entry).
    pub fn has_table(&self, gfn: Gfn) -> bool {
        matches!(self.pdes.get(&region(gfn)), Some(Pde::Table { .. }))
            || self.added_tables.contains(region(gfn))
    }

    /// VM teardown: every page is reclaimed (TDH.PHYMEM.PAGE.RECLAIM after
    /// the HKID is freed), no blocking or tracking needed.
    pub fn reclaim_all(&mut self) {
        self.pdes.clear();
        self.added.clear();
        self.added_tables.clear();
        self.pending_frames = 0;
    }

    // ----- pages added at launch, as spans ----------------------------------

    /// KVM_TDX_INIT_MEM_REGION of `range` at once: TDH.MEM.SEPT.ADD of every
    /// Secure-EPT page it needs and TDH.MEM.PAGE.ADD of each page, MAPPED at
    /// 4K with pfns from `pfn` on, kept as a span (module comment). Adds the
    /// longest prefix of `range` whose frames are FREE and under no 2M leaf,
    /// and returns its end; `Err` with `TDX_OP_STATE_INCORRECT` after
    /// finalize.
    pub fn page_add_range(&mut self, range: GfnRange, pfn: Pfn) -> Result<Gfn, TdxStatus> {
        if self.finalized {
            return Err(TdxStatus::OP_STATE_INCORRECT);
        }
        let (start, end) = (range.start().raw(), self.first_not_free(range).raw());
        if start >= end {
            return Ok(Gfn::new(start));
        }
        let inserted = self.added.insert(start, end, pfn.raw());
        invariant!(inserted, "page_add_range {start:#x}..{end:#x} overlaps");
        // The regions that have no Secure-EPT page yet get one.
        let mut r = start >> 9;
        while r <= (end - 1) >> 9 {
            if !self.pdes.contains_key(&r) && !self.added_tables.contains(r) {
                let next_taken = self
                    .pdes
                    .range(r..)
                    .next()
                    .map(|(&k, _)| k)
                    .into_iter()
                    .chain(self.added_tables.first_in(r, u64::MAX))
                    .min()
                    .unwrap_or(u64::MAX);
                let stop = next_taken.min(((end - 1) >> 9) + 1);
                self.added_tables.insert(r, stop, 0);
                r = stop;
            } else {
                r += 1;
            }
        }
        Ok(Gfn::new(end))
    }

    /// The first frame of `range` that is not FREE (or lies under a 2M leaf),
    /// or `range.end()`.
    fn first_not_free(&self, range: GfnRange) -> Gfn {
        let (start, end) = (range.start().raw(), range.end().raw());
        let mut first = end;
        if let Some(g) = self.added.first_in(start, end) {
            first = g;
        }
        for (&r, pde) in self.pdes.range(start >> 9..=(end.max(1) - 1) >> 9) {
            let base = r << 9;
            let g = match pde {
                Pde::Leaf(_) => base.max(start),
                Pde::Table { ptes, .. } => {
                    let lo = start.saturating_sub(base).min(PTES) as u16;
                    let hi = (end - base).min(PTES) as u16;
                    match ptes.range(lo..hi).next() {
                        Some((&i, _)) => base + i as u64,
                        None => continue,
                    }
                }
            };
            first = first.min(g);
            break;
        }
        Gfn::new(first)
    }

    /// The pfn of `gfn` if it is a page added at launch that has no entry of
    /// its own yet (a premapped mirror leaf the guest has not reached).
    pub fn added_pfn(&self, gfn: Gfn) -> Option<Pfn> {
        self.added.get(gfn.raw()).map(Pfn::new)
    }

    /// Pages added at launch without an entry of their own, as (first gfn,
    /// first pfn, pages) spans in gfn order.
    pub fn added_spans(&self) -> Vec<(Gfn, Pfn, u64)> {
        self.added
            .iter()
            .map(|(s, e, b)| (Gfn::new(s), Pfn::new(b), e - s))
            .collect()
    }

    /// What the span representation holds: (pages added at launch without
    /// an entry of their own, spans and 2M-region runs that keep them).
    pub fn added_footprint(&self) -> (u64, usize) {
        (
            self.added.keys(),
            self.added.spans() + self.added_tables.spans(),
        )
    }

    /// Whether a page added at launch without an entry of its own lies in
    /// `range`, or a Secure-EPT page the launch linked without a `pdes` entry
    /// overlaps it (what a fault mapping `range` as one leaf must not cover).
    pub fn added_overlaps(&self, range: GfnRange) -> bool {
        let (s, e) = (range.start().raw(), range.end().raw());
        self.added.overlaps(s, e) || self.added_tables.overlaps(s >> 9, (e + 511) >> 9)
    }

    /// Gives region `r`'s Secure-EPT page linked at launch an entry of its
    /// own (its pages stay in `added` until each is materialized).
    fn own_table(&mut self, r: u64) {
        if self.added_tables.take(r).is_some() {
            invariant!(!self.pdes.contains_key(&r), "region {r:#x} has two tables");
            self.pdes.insert(
                r,
                Pde::Table {
                    ptes: BTreeMap::new(),
                    blocked: None,
                },
            );
        }
    }

    /// Gives `gfn`, if it is a page added at launch without an entry of its
    /// own, its MAPPED 4K entry (the pages diverge; module comment). Returns
    /// its pfn if it was one.
    pub fn materialize(&mut self, gfn: Gfn) -> Option<Pfn> {
        self.own_table(region(gfn));
        let pfn = self.added.take(gfn.raw())?;
        if let Some(Pde::Table { ptes, .. }) = self.pdes.get_mut(&region(gfn)) {
            ptes.insert(
                pte_index(gfn),
                Leaf {
                    state: SeptState::Mapped,
                    pfn: Pfn::new(pfn),
                    bepoch: 0,
                },
            );
        } else {
            invariant!(false, "added {gfn:?} has no Secure-EPT page");
        }
        Some(Pfn::new(pfn))
    }

    /// Every page of the 2M region at `gfn` added at launch gets its own
    /// entry (before an operation on the region as a whole).
    fn materialize_region(&mut self, gfn: Gfn) {
        self.own_table(region(gfn));
        let base = region(gfn) << 9;
        let removed = self.added.remove(base, base + PTES);
        if let Some(Pde::Table { ptes, .. }) = self.pdes.get_mut(&region(gfn)) {
            for (s, e, pfn) in removed {
                for g in s..e {
                    ptes.insert(
                        (g - base) as u16,
                        Leaf {
                            state: SeptState::Mapped,
                            pfn: Pfn::new(pfn + (g - s)),
                            bepoch: 0,
                        },
                    );
                }
            }
        } else {
            invariant!(
                removed.is_empty(),
                "added pages at {gfn:?} have no Secure-EPT page"
            );
        }
    }

    /// The pages a zap of `range` finds added at launch without an entry of
    /// their own leave the Secure EPT: for each, the BLOCK, TRACK and REMOVE
    /// KVM's `tdx_sept_remove_private_spte()` issues for a zapped mirror
    /// leaf. None of them was ever reached by a vCPU (its first access would
    /// have given it an entry), so one TRACK and kick stands for them all.
    /// Returns the spans removed.
    pub fn remove_added(&mut self, range: GfnRange) -> Vec<GfnRange> {
        let removed = self.added.remove(range.start().raw(), range.end().raw());
        if !removed.is_empty() && self.finalized {
            let st = self.track();
            invariant!(st.is_success(), "TRACK: {st:?}");
            self.kick_all_vcpus();
        }
        removed
            .into_iter()
            .filter_map(|(s, e, _)| GfnRange::new(Gfn::new(s), Gfn::new(e)))
            .collect()
    }

    // ----- epochs -------------------------------------------------------

    /// A vCPU left its epoch: it TD-exited and re-entered (at which the TDX
    /// module flushes its EPT translations), which for cvmem is a flush of
    /// its softTLB. It now runs in the current epoch.
    pub fn vcpu_flushed(&mut self, vcpu: usize) {
        if let Some(e) = self.vcpu_epoch.get_mut(vcpu) {
            *e = self.td_epoch;
        }
    }

    /// Every vCPU left its epoch: KVM's `kvm_make_all_cpus_request(kvm,
    /// KVM_REQ_OUTSIDE_GUEST_MODE)` after TDH.MEM.TRACK in `tdx_track()`,
    /// which waits until each vCPU is out of guest mode.
    pub fn kick_all_vcpus(&mut self) {
        let e = self.td_epoch;
        self.vcpu_epoch.iter_mut().for_each(|v| *v = e);
    }

    /// `is_tlb_tracked()`: a block taken in epoch `bepoch` is tracked once
    /// TRACK moved the epoch past it and no vCPU still runs in it.
    fn tlb_tracked(&self, bepoch: u64) -> bool {
        !self.finalized || (self.td_epoch > bepoch && self.vcpu_epoch.iter().all(|&e| e > bepoch))
    }

    /// TDH.MEM.TRACK: increments TD_EPOCH. Fails with
    /// `TDX_PREVIOUS_TLB_EPOCH_BUSY` while a vCPU still runs in the epoch
    /// before the current one (KVM's `tdx_track()` comment: an increase to
    /// N + 1 succeeds only if no vCPU runs with N - 1).
    pub fn track(&mut self) -> TdxStatus {
        if self.vcpu_epoch.iter().any(|&e| e < self.td_epoch) {
            return TdxStatus::PREVIOUS_TLB_EPOCH_BUSY;
        }
        self.td_epoch += 1;
        TdxStatus::SUCCESS
    }

    // ----- host SEAMCALLs ---------------------------------------------------

    fn check_level(gfn: Gfn, level: PageLevel, max: PageLevel) -> Result<(), TdxStatus> {
        // verify_page_info_input(): level in range, GPA aligned to it.
        if level > max || !gfn.is_aligned(level) {
            return Err(TdxStatus::OPERAND_INVALID.rcx());
        }
        Ok(())
    }

    /// The 4K entry slot for `gfn`, or the walk failure.
    fn pte_mut(&mut self, gfn: Gfn) -> Result<&mut BTreeMap<u16, Leaf>, TdxStatus> {
        match self.pdes.get_mut(&region(gfn)) {
            Some(Pde::Table { ptes, .. }) => Ok(ptes),
            // No Secure-EPT page, or a 2M leaf above the requested level.
            _ => Err(TdxStatus::EPT_WALK_FAILED.rcx()),
        }
    }

    fn add_leaf(&mut self, gfn: Gfn, level: PageLevel, pfn: Pfn, state: SeptState) -> TdxStatus {
        if let Err(e) = Self::check_level(gfn, level, PageLevel::Size2M) {
            return e;
        }
        let leaf = Leaf {
            state,
            pfn,
            bepoch: 0,
        };
        if level == PageLevel::Size2M {
            if self.pdes.contains_key(&region(gfn)) || self.added_tables.contains(region(gfn)) {
                return TdxStatus::EPT_ENTRY_STATE_INCORRECT.rcx();
            }
            self.pdes.insert(region(gfn), Pde::Leaf(leaf));
        } else {
            if self.added.contains(gfn.raw()) {
                return TdxStatus::EPT_ENTRY_STATE_INCORRECT.rcx();
            }
            self.own_table(region(gfn));
            let ptes = match self.pte_mut(gfn) {
                Ok(p) => p,
                Err(e) => return e,
            };
            if ptes.contains_key(&pte_index(gfn)) {
                return TdxStatus::EPT_ENTRY_STATE_INCORRECT.rcx();
            }
            ptes.insert(pte_index(gfn), leaf);
        }
        if state == SeptState::Pending {
            self.pending_frames += frames(level);
        }
        TdxStatus::SUCCESS
    }

    /// TDH.MEM.SEPT.ADD for the 4K-level Secure-EPT page under the 2M entry
    /// of `gfn` (KVM's `tdx_sept_link_private_spt()`). The 2M entry must be
    /// FREE, else `TDX_EPT_ENTRY_STATE_INCORRECT` (the module's generic state
    /// check; KVM never links a page twice).
    pub fn sept_add(&mut self, gfn: Gfn) -> TdxStatus {
        if self.pdes.contains_key(&region(gfn)) || self.added_tables.contains(region(gfn)) {
            return TdxStatus::EPT_ENTRY_STATE_INCORRECT.rcx();
        }
        self.pdes.insert(
            region(gfn),
            Pde::Table {
                ptes: BTreeMap::new(),
                blocked: None,
            },
        );
        TdxStatus::SUCCESS
    }

    /// TDH.MEM.PAGE.ADD: adds a 4K page of the initial image, MAPPED
    /// (KVM_TDX_INIT_MEM_REGION, `tdx_gmem_post_populate()`). Only before
    /// finalize (`TDX_OP_STATE_INCORRECT`); needs the Secure-EPT page
    /// (`TDX_EPT_WALK_FAILED`) and a FREE entry (`TDX_EPT_ENTRY_STATE_INCORRECT`).
    pub fn page_add(&mut self, gfn: Gfn, pfn: Pfn) -> TdxStatus {
        if self.finalized {
            return TdxStatus::OP_STATE_INCORRECT;
        }
        self.add_leaf(gfn, PageLevel::Size4K, pfn, SeptState::Mapped)
    }

    /// TDH.MEM.PAGE.AUG: adds a PENDING page at 4K or 2M (KVM's
    /// `tdx_mem_page_aug()` from the fault path). Only after finalize
    /// (`TDX_OP_STATE_INCORRECT`); 4K needs the Secure-EPT page
    /// (`TDX_EPT_WALK_FAILED`); the entry must be FREE
    /// (`TDX_EPT_ENTRY_STATE_INCORRECT`; at 2M a Secure-EPT page is not FREE).
    pub fn page_aug(&mut self, gfn: Gfn, level: PageLevel, pfn: Pfn) -> TdxStatus {
        if !self.finalized {
            return TdxStatus::OP_STATE_INCORRECT;
        }
        self.add_leaf(gfn, level, pfn, SeptState::Pending)
    }

    fn leaf_mut(&mut self, gfn: Gfn, level: PageLevel) -> Result<&mut Leaf, TdxStatus> {
        if level == PageLevel::Size4K {
            self.materialize(gfn);
        }
        match (level, self.pdes.get_mut(&region(gfn))) {
            (PageLevel::Size2M, Some(Pde::Leaf(l))) => Ok(l),
            (PageLevel::Size2M, _) => Err(TdxStatus::EPT_ENTRY_STATE_INCORRECT.rcx()),
            (_, Some(Pde::Table { ptes, .. })) => ptes
                .get_mut(&pte_index(gfn))
                .ok_or(TdxStatus::EPT_ENTRY_STATE_INCORRECT.rcx()),
            (_, _) => Err(TdxStatus::EPT_WALK_FAILED.rcx()),
        }
    }

    /// TDH.MEM.RANGE.BLOCK (KVM's `tdx_sept_zap_private_spte()`): a MAPPED or
    /// PENDING leaf becomes BLOCKED / PENDING_BLOCKED, and a 2M non-leaf
    /// entry NL_BLOCKED (before PROMOTE); BEPOCH := TD_EPOCH. A FREE entry is
    /// `TDX_EPT_ENTRY_STATE_INCORRECT`, a blocked one
    /// `TDX_GPA_RANGE_ALREADY_BLOCKED` (tdh_mem_range_block.c).
    pub fn range_block(&mut self, gfn: Gfn, level: PageLevel) -> TdxStatus {
        if let Err(e) = Self::check_level(gfn, level, PageLevel::Size2M) {
            return e;
        }
        let epoch = self.td_epoch;
        if level == PageLevel::Size2M {
            self.own_table(region(gfn));
            if let Some(Pde::Table { blocked, .. }) = self.pdes.get_mut(&region(gfn)) {
                if blocked.is_some() {
                    return TdxStatus::GPA_RANGE_ALREADY_BLOCKED.rcx();
                }
                *blocked = Some(epoch);
                return TdxStatus::SUCCESS;
            }
        }
        let leaf = match self.leaf_mut(gfn, level) {
            Ok(l) => l,
            Err(e) => return e,
        };
        if leaf.state.is_blocked() {
            return TdxStatus::GPA_RANGE_ALREADY_BLOCKED.rcx();
        }
        leaf.state = leaf.state.blocked();
        leaf.bepoch = epoch;
        TdxStatus::SUCCESS
    }

    /// TDH.MEM.RANGE.UNBLOCK: a blocked leaf goes back to MAPPED / PENDING.
    /// `TDX_GPA_RANGE_NOT_BLOCKED` if it is not blocked; like REMOVE it needs
    /// the block tracked (`TDX_TLB_TRACKING_NOT_DONE`).
    pub fn range_unblock(&mut self, gfn: Gfn, level: PageLevel) -> TdxStatus {
        if let Err(e) = Self::check_level(gfn, level, PageLevel::Size2M) {
            return e;
        }
        let leaf = match self.leaf_mut(gfn, level) {
            Ok(l) => *l,
            Err(e) => return e,
        };
        if !leaf.state.is_blocked() {
            return TdxStatus::GPA_RANGE_NOT_BLOCKED.rcx();
        }
        if !self.tlb_tracked(leaf.bepoch) {
            return TdxStatus::TLB_TRACKING_NOT_DONE.rcx();
        }
        if let Ok(l) = self.leaf_mut(gfn, level) {
            l.state = l.state.unblocked();
        }
        TdxStatus::SUCCESS
    }

    /// TDH.MEM.PAGE.REMOVE (KVM's `tdx_sept_drop_private_spte()`): a blocked
    /// leaf becomes FREE, once the block is tracked. Not blocked:
    /// `TDX_GPA_RANGE_NOT_BLOCKED`; not tracked: `TDX_TLB_TRACKING_NOT_DONE`
    /// (tdh_mem_page_remove.c). Before finalize neither is required. The
    /// Secure-EPT page stays.
    pub fn page_remove(&mut self, gfn: Gfn, level: PageLevel) -> TdxStatus {
        if let Err(e) = Self::check_level(gfn, level, PageLevel::Size2M) {
            return e;
        }
        let leaf = match self.leaf_mut(gfn, level) {
            Ok(l) => *l,
            Err(e) => return e,
        };
        if self.finalized {
            if !leaf.state.is_blocked() {
                return TdxStatus::GPA_RANGE_NOT_BLOCKED.rcx();
            }
            if !self.tlb_tracked(leaf.bepoch) {
                return TdxStatus::TLB_TRACKING_NOT_DONE.rcx();
            }
        }
        if matches!(leaf.state, SeptState::Pending | SeptState::PendingBlocked) {
            self.pending_frames -= frames(level);
        }
        if level == PageLevel::Size2M {
            self.pdes.remove(&region(gfn));
        } else if let Some(Pde::Table { ptes, .. }) = self.pdes.get_mut(&region(gfn)) {
            ptes.remove(&pte_index(gfn));
        }
        TdxStatus::SUCCESS
    }

    /// TDH.MEM.PAGE.PROMOTE: merges the 512 4K entries under the 2M entry of
    /// `gfn` into a 2M leaf. The 2M entry must be a non-leaf
    /// (`TDX_EPT_ENTRY_STATE_INCORRECT`), blocked (`TDX_GPA_RANGE_NOT_BLOCKED`)
    /// and tracked (`TDX_TLB_TRACKING_NOT_DONE`); the 512 entries must all be
    /// MAPPED or all PENDING, with contiguous 2M-aligned pages
    /// (`TDX_EPT_INVALID_PROMOTE_CONDITIONS`; `is_sept_page_valid_for_merge()`).
    /// The 2M leaf takes the entries' state.
    pub fn page_promote(&mut self, gfn: Gfn) -> TdxStatus {
        if !gfn.is_aligned(PageLevel::Size2M) {
            return TdxStatus::OPERAND_INVALID.rcx();
        }
        self.materialize_region(gfn);
        let Some(Pde::Table { ptes, blocked }) = self.pdes.get(&region(gfn)) else {
            return TdxStatus::EPT_ENTRY_STATE_INCORRECT.rcx();
        };
        if self.finalized {
            let Some(bepoch) = *blocked else {
                return TdxStatus::GPA_RANGE_NOT_BLOCKED.rcx();
            };
            if !self.tlb_tracked(bepoch) {
                return TdxStatus::TLB_TRACKING_NOT_DONE.rcx();
            }
        }
        let Some(first) = ptes.get(&0).copied() else {
            return TdxStatus::EPT_INVALID_PROMOTE_CONDITIONS.rcx();
        };
        let ok = ptes.len() as u64 == PTES
            && matches!(first.state, SeptState::Mapped | SeptState::Pending)
            && first.pfn.raw() % PTES == 0
            && ptes
                .iter()
                .all(|(&i, l)| l.state == first.state && l.pfn.raw() == first.pfn.raw() + i as u64);
        if !ok {
            return TdxStatus::EPT_INVALID_PROMOTE_CONDITIONS.rcx();
        }
        self.pdes.insert(
            region(gfn),
            Pde::Leaf(Leaf {
                state: first.state,
                pfn: first.pfn,
                bepoch: 0,
            }),
        );
        TdxStatus::SUCCESS
    }

    /// TDH.MEM.PAGE.DEMOTE: splits the 2M leaf at `gfn` into a Secure-EPT page
    /// of 512 4K entries in the leaf's unblocked state. The entry must be a
    /// 2M leaf (`TDX_EPT_ENTRY_STATE_INCORRECT`), blocked
    /// (`TDX_GPA_RANGE_NOT_BLOCKED`) and tracked (`TDX_TLB_TRACKING_NOT_DONE`)
    /// (tdh_mem_page_demote.c).
    pub fn page_demote(&mut self, gfn: Gfn) -> TdxStatus {
        if !gfn.is_aligned(PageLevel::Size2M) {
            return TdxStatus::OPERAND_INVALID.rcx();
        }
        let Some(Pde::Leaf(leaf)) = self.pdes.get(&region(gfn)).cloned() else {
            return TdxStatus::EPT_ENTRY_STATE_INCORRECT.rcx();
        };
        if self.finalized {
            if !leaf.state.is_blocked() {
                return TdxStatus::GPA_RANGE_NOT_BLOCKED.rcx();
            }
            if !self.tlb_tracked(leaf.bepoch) {
                return TdxStatus::TLB_TRACKING_NOT_DONE.rcx();
            }
        }
        let state = leaf.state.unblocked();
        let ptes = (0..PTES as u16)
            .map(|i| {
                (
                    i,
                    Leaf {
                        state,
                        pfn: Pfn::new(leaf.pfn.raw() + i as u64),
                        bepoch: 0,
                    },
                )
            })
            .collect();
        self.pdes.insert(
            region(gfn),
            Pde::Table {
                ptes,
                blocked: None,
            },
        );
        TdxStatus::SUCCESS
    }

    // ----- guest TDCALL -------------------------------------------------

    /// TDG.MEM.PAGE.ACCEPT (TDCALL leaf 6) with RCX = GPA | level (bits 2:0:
    /// 0 = 4K, 1 = 2M), as tdg_mem_page_accept.c decides:
    ///
    /// - RCX level above 2M, reserved bits 11:3, a GPA not aligned to the
    ///   level, a GPA beyond GPAW or with the shared bit set:
    ///   `TDX_OPERAND_INVALID | RCX` (Linux's `try_accept_one()` falls back
    ///   from 1G to 2M to 4K on any non-zero status).
    /// - The walk stops above the requested level at a MAPPED leaf:
    ///   `TDX_PAGE_ALREADY_ACCEPTED` with that leaf's level as detail; at any
    ///   other leaf or a missing Secure-EPT page: EPT-violation exit.
    /// - The entry at the requested level is a Secure-EPT page (2M accept of a
    ///   region mapped at 4K): `TDX_PAGE_SIZE_MISMATCH` with detail 1; the
    ///   guest retries at 4K.
    /// - A MAPPED leaf: `TDX_PAGE_ALREADY_ACCEPTED` with its level.
    /// - A PENDING leaf: MAPPED, zeroed, `TDX_SUCCESS`.
    /// - FREE or blocked: EPT-violation exit; KVM AUGs (or waits for the
    ///   block to end) and the guest re-executes the TDCALL.
    ///
    /// Linux's early `tdg_accept_page()` took `TDX_PAGE_ALREADY_ACCEPTED` as
    /// success; today's `try_accept_one()` treats every non-zero RAX as a
    /// failure of that size.
    pub fn accept(&mut self, rcx: u64) -> AcceptOutcome {
        let invalid = AcceptOutcome::Status(TdxStatus::OPERAND_INVALID.rcx());
        let level = match rcx & 7 {
            0 => PageLevel::Size4K,
            1 => PageLevel::Size2M,
            _ => return invalid,
        };
        let gpa = rcx & !0xFFF;
        if rcx & 0xFF8 != 0 || gpa & (level.size_bytes() - 1) != 0 {
            return invalid;
        }
        // check_gpa_validity(.., PRIVATE_ONLY): below GPAW, shared bit clear.
        if gpa >> (self.gpaw.bits() - 1) != 0 {
            return invalid;
        }
        let gfn = Gfn::new(gpa >> PAGE_SHIFT);
        let exit = AcceptOutcome::ExitToHost {
            gpa: Gpa::new(gpa),
            level,
        };
        let r = region(gfn);
        // A page added at launch without an entry of its own is a MAPPED 4K
        // leaf under a Secure-EPT page: answered without giving it one.
        match level {
            PageLevel::Size2M if self.added_tables.contains(r) => {
                return AcceptOutcome::Status(
                    TdxStatus::PAGE_SIZE_MISMATCH.with_detail(tdx_level(PageLevel::Size2M)),
                )
            }
            PageLevel::Size4K if self.added.contains(gfn.raw()) => {
                return AcceptOutcome::Status(
                    TdxStatus::PAGE_ALREADY_ACCEPTED.with_detail(tdx_level(PageLevel::Size4K)),
                )
            }
            PageLevel::Size4K if self.added_tables.contains(r) => return exit,
            _ => {}
        }
        let (leaf_level, leaf) = match (level, self.pdes.get_mut(&r)) {
            (PageLevel::Size2M, Some(Pde::Table { .. })) => {
                return AcceptOutcome::Status(
                    TdxStatus::PAGE_SIZE_MISMATCH.with_detail(tdx_level(PageLevel::Size2M)),
                )
            }
            (_, Some(Pde::Leaf(l))) => (PageLevel::Size2M, l),
            (PageLevel::Size4K, Some(Pde::Table { ptes, .. })) => {
                match ptes.get_mut(&pte_index(gfn)) {
                    Some(l) => (PageLevel::Size4K, l),
                    None => return exit,
                }
            }
            _ => return exit,
        };
        match leaf.state {
            SeptState::Mapped => AcceptOutcome::Status(
                TdxStatus::PAGE_ALREADY_ACCEPTED.with_detail(tdx_level(leaf_level)),
            ),
            SeptState::Pending if leaf_level == level => {
                leaf.state = SeptState::Mapped;
                self.pending_frames -= frames(level);
                AcceptOutcome::Accepted {
                    range: GfnRange::page_containing(gfn, level),
                }
            }
            // A PENDING 2M leaf for a 4K request, FREE, or blocked.
            _ => exit,
        }
    }
}

#[cfg(test)]
mod tests;
