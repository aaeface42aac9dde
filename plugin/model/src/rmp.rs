//! The AMD SEV-SNP Reverse Map Table (RMP).
//!
//! One [`RmpEntry`] per 4K page of system physical memory. For cvmem the
//! "system physical address" of a guest page is its backing address
//! ([`BackingAddr`](crate::BackingAddr) / [`Pfn`]), so the RMP covers the backing of the ranges
//! the plugin registers ([`Rmp::add_covered`]); everything else is
//! hypervisor-owned, as memory beyond `RMP_END` is on hardware (AMD APM vol. 2
//! §15.36.5: "pages not covered by the RMP are permanent hypervisor pages").
//!
//! What is modelled, and where each rule comes from:
//!
//! | operation                  | model                          | source                                            |
//! |----------------------------|--------------------------------|---------------------------------------------------|
//! | RMP entry fields           | [`RmpEntry`]                   | APM vol. 2 Table 15-34; Linux `struct rmpentry_raw` (arch/x86/virt/svm/sev.c) |
//! | owner of a page            | [`RmpOwner`]                   | APM Table 15-35                                   |
//! | RMPUPDATE                  | [`Rmp::rmpupdate`]             | APM §15.36.5-7, vol. 3 RMPUPDATE; return codes as Linux `RMPUPDATE_FAIL_OVERLAP` (asm/sev.h) |
//! | PSMASH                     | [`Rmp::psmash`]                | APM §15.36.11, vol. 3 PSMASH                      |
//! | PVALIDATE                  | [`Rmp::pvalidate`]             | APM §15.36.6, Table 15-40, vol. 3 PVALIDATE; Linux `pvalidate()` (asm/sev.h) |
//! | RMPADJUST                  | [`Rmp::rmpadjust`]             | APM §15.36.7, Table 15-36, vol. 3 RMPADJUST       |
//! | access checks              | [`Rmp::check_guest_access`], [`Rmp::check_host_write`], [`Rmp::check_device_access`] | APM §15.36.10, Table 15-39 |
//! | KVM's use of them          | [`Rmp::gmem_prepare`], [`Rmp::gmem_invalidate`], [`Rmp::gmem_max_mapping_level`], [`Rmp::handle_rmp_fault`] | arch/x86/kvm/svm/sev.c |
//!
//! # Concurrency
//!
//! The checks run on every softTLB fill, on every vCPU thread, and take no
//! lock: the covered segments are an [`ArcSwap`] snapshot and each entry is
//! two `AtomicU64`s read under a per-entry sequence count (a seqlock whose
//! counter shares the second word with the VMPL permissions). Every mutation
//! (host instructions, guest instructions, coverage changes) is serialised by
//! one mutex, so at most one writer touches an entry at a time; hardware
//! reports concurrent RMP updates as `FAIL_INUSE`, which the model therefore
//! never returns.
//!
//! A 2M RMP entry is stored as 512 4K entries with the page-size bit set and
//! consecutive GPAs, which is what PSMASH produces from it (APM §15.36.11);
//! hardware keeps the authoritative state in the 2M-aligned entry (Linux
//! `__snp_lookup_rmpentry()` reads `pfn & PFN_PMD_MASK`). Storing it in every
//! 4K entry makes the per-access check one entry read.

use std::fmt;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytemuck::allocation::try_zeroed_slice_box;
use bytemuck::Zeroable;
use parking_lot::{Mutex, MutexGuard};

use crate::addr::{Gfn, PageLevel, Pfn};
use crate::types::RmpupdateError;

/// 4K frames in a 2M page.
const PAGES_2M: u64 = 512;

// ----- small types ---------------------------------------------------------

/// An address space identifier. SNP guests have a non-zero ASID; zero means
/// the hypervisor (APM Table 15-35). The RMP entry holds 10 bits of it (Linux
/// `struct rmpentry_raw`, `asid : 10`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Asid(u16);

impl Asid {
    /// ASID 0: hypervisor-owned (unassigned) and AMD-SP-owned pages.
    pub const HYPERVISOR: Asid = Asid(0);
    /// The largest ASID an RMP entry can hold.
    pub const MAX: u32 = (1 << 10) - 1;

    /// The ASID `raw`, or `None` if it does not fit in an RMP entry.
    pub const fn new(raw: u32) -> Option<Asid> {
        if raw > Asid::MAX {
            None
        } else {
            Some(Asid(raw as u16))
        }
    }

    /// The number.
    pub const fn raw(self) -> u32 {
        self.0 as u32
    }
}

/// The RMP's page size (Linux `RMP_PG_SIZE_4K` = 0, `RMP_PG_SIZE_2M` = 1; the
/// value is what PVALIDATE and RMPADJUST take in RCX).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum RmpPageSize {
    /// A 4K page (`RMP_PG_SIZE_4K`).
    #[default]
    Size4K = 0,
    /// A 2M page (`RMP_PG_SIZE_2M`).
    Size2M = 1,
}

impl RmpPageSize {
    /// The size encoded in bit 0 of RCX for PVALIDATE / RMPADJUST; `None` if
    /// other bits are set (the instruction then fails with `FAIL_INPUT`).
    pub const fn from_rcx(rcx: u64) -> Option<RmpPageSize> {
        match rcx {
            0 => Some(RmpPageSize::Size4K),
            1 => Some(RmpPageSize::Size2M),
            _ => None,
        }
    }

    /// PVALIDATE's and RMPADJUST's page size, RCX, checked against their
    /// linear address, RAX, as the instructions check them before RAX is
    /// translated (APM vol. 3, PVALIDATE and RMPADJUST: a 2M request whose
    /// address is not 2M aligned fails with `FAIL_INPUT` in EAX, no
    /// exception). Bits 11:0 of RAX are the offset in the page and count
    /// for neither size: the instruction acts on the page containing the
    /// address, as a 4K request with an unaligned RAX shows. `None`: the
    /// instruction fails with `FAIL_INPUT`, whether RAX is mapped or not.
    pub const fn from_operands(rax: u64, rcx: u64) -> Option<RmpPageSize> {
        match RmpPageSize::from_rcx(rcx) {
            Some(RmpPageSize::Size2M) if rax & 0x1f_f000 != 0 => None,
            size => size,
        }
    }

    /// Linux `PG_LEVEL_TO_RMP()`: 4K for 4K, 2M for anything larger.
    pub const fn from_level(level: PageLevel) -> RmpPageSize {
        match level {
            PageLevel::Size4K => RmpPageSize::Size4K,
            _ => RmpPageSize::Size2M,
        }
    }

    /// Linux `RMP_TO_PG_LEVEL()`.
    pub const fn level(self) -> PageLevel {
        match self {
            RmpPageSize::Size4K => PageLevel::Size4K,
            RmpPageSize::Size2M => PageLevel::Size2M,
        }
    }

    /// 4K frames in a page of this size.
    pub const fn pages(self) -> u64 {
        match self {
            RmpPageSize::Size4K => 1,
            RmpPageSize::Size2M => PAGES_2M,
        }
    }
}

/// A Virtual Machine Privilege Level (APM §15.36.7). VMPL0 is the most
/// privileged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum Vmpl {
    /// VMPL0: implicitly has every permission on its pages.
    #[default]
    Vmpl0 = 0,
    /// VMPL1.
    Vmpl1 = 1,
    /// VMPL2.
    Vmpl2 = 2,
    /// VMPL3.
    Vmpl3 = 3,
}

impl Vmpl {
    /// Every VMPL, most privileged first.
    pub const ALL: [Vmpl; 4] = [Vmpl::Vmpl0, Vmpl::Vmpl1, Vmpl::Vmpl2, Vmpl::Vmpl3];

    /// The VMPL numbered `n`, if it exists (four are modelled).
    pub const fn from_number(n: u64) -> Option<Vmpl> {
        match n {
            0 => Some(Vmpl::Vmpl0),
            1 => Some(Vmpl::Vmpl1),
            2 => Some(Vmpl::Vmpl2),
            3 => Some(Vmpl::Vmpl3),
            _ => None,
        }
    }

    /// The number.
    pub const fn number(self) -> u8 {
        self as u8
    }
}

/// A VMPL permission mask (APM Table 15-36). Bit 4 (supervisor shadow stack,
/// VmplSSS) is not modelled: cvmem's CPUID does not report VmplSSS.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VmplPerms(u8);

impl VmplPerms {
    /// No access.
    pub const NONE: VmplPerms = VmplPerms(0);
    /// Bit 0: data reads.
    pub const READ: VmplPerms = VmplPerms(1 << 0);
    /// Bit 1: data writes.
    pub const WRITE: VmplPerms = VmplPerms(1 << 1);
    /// Bit 2: instruction fetches at CPL 3.
    pub const EXEC_USER: VmplPerms = VmplPerms(1 << 2);
    /// Bit 3: instruction fetches at CPL 0-2.
    pub const EXEC_SUPERVISOR: VmplPerms = VmplPerms(1 << 3);
    /// Every modelled permission (what VMPL0 implicitly has).
    pub const ALL: VmplPerms = VmplPerms(0xf);

    /// The mask from its bits; `None` if a bit outside [`VmplPerms::ALL`] is
    /// set.
    pub const fn from_bits(bits: u8) -> Option<VmplPerms> {
        if bits & !VmplPerms::ALL.0 != 0 {
            None
        } else {
            Some(VmplPerms(bits))
        }
    }

    /// The bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every permission in `other` is in `self`.
    pub const fn contains(self, other: VmplPerms) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union.
    pub const fn union(self, other: VmplPerms) -> VmplPerms {
        VmplPerms(self.0 | other.0)
    }
}

impl fmt::Debug for VmplPerms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = |p: VmplPerms, ch: char| if self.contains(p) { ch } else { '-' };
        write!(
            f,
            "VmplPerms({}{}{}{})",
            c(VmplPerms::READ, 'r'),
            c(VmplPerms::WRITE, 'w'),
            c(VmplPerms::EXEC_USER, 'u'),
            c(VmplPerms::EXEC_SUPERVISOR, 's')
        )
    }
}

/// A half-open range of backing frames `[start, end)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PfnRange {
    start: Pfn,
    end: Pfn,
}

impl PfnRange {
    /// `[start, start + npages)`, or `None` on overflow.
    pub const fn from_start_len(start: Pfn, npages: u64) -> Option<PfnRange> {
        match start.raw().checked_add(npages) {
            Some(end) => Some(PfnRange {
                start,
                end: Pfn::new(end),
            }),
            None => None,
        }
    }

    /// The first frame.
    pub const fn start(self) -> Pfn {
        self.start
    }

    /// One past the last frame.
    pub const fn end(self) -> Pfn {
        self.end
    }

    /// The number of frames.
    pub const fn len(self) -> u64 {
        self.end.raw() - self.start.raw()
    }

    /// Whether the range has no frame.
    pub const fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// Whether `pfn` lies in the range.
    pub const fn contains(self, pfn: Pfn) -> bool {
        self.start.raw() <= pfn.raw() && pfn.raw() < self.end.raw()
    }

    const fn overlaps(self, other: PfnRange) -> bool {
        self.start.raw() < other.end.raw() && other.start.raw() < self.end.raw()
    }
}

impl fmt::Debug for PfnRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x})", self.start.raw(), self.end.raw())
    }
}

// ----- the entry -----------------------------------------------------------

/// Who owns a page (APM Table 15-35).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RmpOwner {
    /// Assigned = 0 (or not covered by the RMP).
    Hypervisor,
    /// Assigned = 1, ASID = the guest's.
    Guest(Asid),
    /// Assigned = 1, ASID = 0: the AMD Secure Processor (firmware pages,
    /// normally immutable).
    AmdSp,
}

/// One RMP entry as RMPREAD would report it, plus the fields only hardware
/// sees (validated, VMSA, VMPL permissions; APM Table 15-34).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct RmpEntry {
    /// Assigned to a guest or the AMD-SP.
    pub assigned: bool,
    /// The size of the RMP page this 4K entry belongs to.
    pub page_size: RmpPageSize,
    /// Software cannot change the entry (only the AMD-SP can).
    pub immutable: bool,
    /// The guest validated the page with PVALIDATE.
    pub validated: bool,
    /// The page is a VMSA (set by RMPADJUST at VMPL0, or the AMD-SP).
    pub vmsa: bool,
    /// The owning guest's ASID (0 for hypervisor and AMD-SP pages).
    pub asid: Asid,
    /// The guest frame this 4K page is mapped at (`Guest_Physical_Address`);
    /// for a 2M page, the 2M entry's GPA plus this page's offset.
    pub gfn: Gfn,
    /// VMPL1..VMPL3 permission masks (VMPL0 has all permissions).
    pub perms: [VmplPerms; 3],
}

impl RmpEntry {
    /// The owner (APM Table 15-35).
    pub const fn owner(&self) -> RmpOwner {
        if !self.assigned {
            RmpOwner::Hypervisor
        } else if self.asid.0 == 0 {
            RmpOwner::AmdSp
        } else {
            RmpOwner::Guest(self.asid)
        }
    }

    /// The permissions `vmpl` has on the page (VMPL0: all).
    pub const fn perms_of(&self, vmpl: Vmpl) -> VmplPerms {
        match vmpl {
            Vmpl::Vmpl0 => VmplPerms::ALL,
            v => self.perms[v as usize - 1],
        }
    }
}

// Packing. Word `lo` holds what the VMPL0 check needs; word `hi` holds the
// VMSA bit, the VMPL1-3 masks and the entry's sequence count.
const LO_ASSIGNED: u64 = 1 << 0;
const LO_SIZE_2M: u64 = 1 << 1;
const LO_IMMUTABLE: u64 = 1 << 2;
const LO_VALIDATED: u64 = 1 << 3;
const LO_GFN_SHIFT: u32 = 12;
const LO_GFN_MASK: u64 = (1 << 40) - 1;
const LO_ASID_SHIFT: u32 = 52;
const HI_PERMS_MASK: u64 = 0xfff;
const HI_VMSA: u64 = 1 << 12;
const HI_DATA_MASK: u64 = HI_PERMS_MASK | HI_VMSA;
const HI_SEQ_ONE: u64 = 1 << 16;

/// The largest guest frame an entry can record (52-bit GPAs).
pub const RMP_MAX_GFN: u64 = LO_GFN_MASK;

fn pack(e: &RmpEntry) -> (u64, u64) {
    let mut lo = (e.gfn.raw() & LO_GFN_MASK) << LO_GFN_SHIFT;
    lo |= (e.asid.0 as u64) << LO_ASID_SHIFT;
    if e.assigned {
        lo |= LO_ASSIGNED;
    }
    if e.page_size == RmpPageSize::Size2M {
        lo |= LO_SIZE_2M;
    }
    if e.immutable {
        lo |= LO_IMMUTABLE;
    }
    if e.validated {
        lo |= LO_VALIDATED;
    }
    let mut hi = 0;
    for (i, p) in e.perms.iter().enumerate() {
        hi |= (p.0 as u64) << (4 * i);
    }
    if e.vmsa {
        hi |= HI_VMSA;
    }
    (lo, hi)
}

fn unpack(lo: u64, hi: u64) -> RmpEntry {
    let perm = |i: u32| VmplPerms(((hi >> (4 * i)) & 0xf) as u8);
    RmpEntry {
        assigned: lo & LO_ASSIGNED != 0,
        page_size: if lo & LO_SIZE_2M != 0 {
            RmpPageSize::Size2M
        } else {
            RmpPageSize::Size4K
        },
        immutable: lo & LO_IMMUTABLE != 0,
        validated: lo & LO_VALIDATED != 0,
        vmsa: hi & HI_VMSA != 0,
        asid: Asid(((lo >> LO_ASID_SHIFT) & 0x3ff) as u16),
        gfn: Gfn::new((lo >> LO_GFN_SHIFT) & LO_GFN_MASK),
        perms: [perm(0), perm(1), perm(2)],
    }
}

/// One entry: 16 bytes, as the hardware's: word 0 (`lo`, see `LO_*`) and
/// word 1 (`hi`, see `HI_*`). An array rather than a struct so that a table
/// of them can be allocated zeroed ([`bytemuck::Zeroable`]): all zeros is a
/// hypervisor-owned entry, so a covered range costs host memory only where
/// its entries were written, as the hardware RMP's untouched pages would if
/// it were paged.
type Slot = [AtomicU64; 2];

/// The seqlock over a [`Slot`].
trait SlotOps {
    fn read(&self) -> (u64, u64);
    fn read_lo(&self) -> u64;
    fn write(&self, lo: u64, hi_data: u64);
}

impl SlotOps for Slot {
    /// Seqlock read: `hi` carries the sequence count (odd while a writer is
    /// between its two stores).
    #[inline(always)]
    fn read(&self) -> (u64, u64) {
        let [lo_word, hi_word] = self;
        loop {
            let h1 = hi_word.load(Ordering::Acquire);
            if h1 & HI_SEQ_ONE != 0 {
                std::hint::spin_loop();
                continue;
            }
            let lo = lo_word.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            let h2 = hi_word.load(Ordering::Relaxed);
            if h1 == h2 {
                return (lo, h1 & HI_DATA_MASK);
            }
        }
    }

    /// The first word alone: one atomic load, consistent by itself. Enough
    /// for every check but VMPL1-3 permissions.
    #[inline(always)]
    fn read_lo(&self) -> u64 {
        self[0].load(Ordering::Acquire)
    }

    /// Seqlock write; the caller holds the RMP's write lock.
    fn write(&self, lo: u64, hi_data: u64) {
        let [lo_word, hi_word] = self;
        let h = hi_word.load(Ordering::Relaxed);
        let seq = h & !HI_DATA_MASK;
        hi_word.store((seq + HI_SEQ_ONE) | (h & HI_DATA_MASK), Ordering::Relaxed);
        fence(Ordering::Release);
        lo_word.store(lo, Ordering::Relaxed);
        hi_word.store((seq + 2 * HI_SEQ_ONE) | hi_data, Ordering::Release);
    }
}

/// The entries of one covered backing range.
struct Segment {
    range: PfnRange,
    slots: Box<[Slot]>,
    /// Per 2M region (indexed from `range.start` aligned down to 2M): how
    /// many of its 4K entries are assigned, for the 2M Hypervisor-Owned
    /// check (APM §15.36.10).
    assigned_2m: Box<[AtomicU32]>,
    /// Per 2M region, same index: 0 if its entries are in `slots`, else the
    /// `lo` word of its first entry, every other entry being the same with
    /// the guest frame counting up and a zero `hi` (a launch's assigned,
    /// validated 4K pages at consecutive GPAs, [`Rmp::launch_validated`]).
    /// Such a region's slots are not written, so a launch costs no host
    /// memory per page; the first write to one of its entries writes all
    /// 512 out ([`Segment::materialize`]) under the write lock.
    uniform: Box<[AtomicU64]>,
}

impl Segment {
    /// A segment of hypervisor-owned entries, allocated zeroed: the host
    /// backs only the pages of the table that are later written. Fails
    /// with [`CoverError::OutOfMemory`] where the allocation does.
    fn new(range: PfnRange) -> Result<Segment, CoverError> {
        let first = range.start.raw() / PAGES_2M;
        let last = range.end.raw().div_ceil(PAGES_2M);
        Ok(Segment {
            range,
            slots: zeroed_table(range.len())?,
            assigned_2m: zeroed_table(last - first)?,
            uniform: zeroed_table(last - first)?,
        })
    }

    #[inline(always)]
    fn slot(&self, pfn: Pfn) -> &Slot {
        &self.slots[(pfn.raw() - self.range.start.raw()) as usize]
    }

    #[inline(always)]
    fn region_index(&self, pfn: Pfn) -> usize {
        (pfn.raw() / PAGES_2M - self.range.start.raw() / PAGES_2M) as usize
    }

    /// The `lo` word of `pfn` in a uniform region, if its region is one.
    #[inline(always)]
    fn uniform_lo(&self, pfn: Pfn) -> Option<u64> {
        // Acquire: pairs with the Release in `materialize`, so that a zero
        // here means the slots already hold the region's entries.
        let t = self.uniform[self.region_index(pfn)].load(Ordering::Acquire);
        (t != 0).then(|| t + ((pfn.raw() % PAGES_2M) << LO_GFN_SHIFT))
    }

    /// The entry of `pfn` as its two words (seqlock read).
    #[inline(always)]
    fn read(&self, pfn: Pfn) -> (u64, u64) {
        match self.uniform_lo(pfn) {
            Some(lo) => (lo, 0),
            None => self.slot(pfn).read(),
        }
    }

    /// The first word of `pfn`'s entry: enough for every check but VMPL1-3
    /// permissions.
    #[inline(always)]
    fn read_lo(&self, pfn: Pfn) -> u64 {
        match self.uniform_lo(pfn) {
            Some(lo) => lo,
            None => self.slot(pfn).read_lo(),
        }
    }

    /// Writes a uniform region's entries into its slots, so that one of
    /// them can change; the caller holds the write lock. Readers see the
    /// same entries before and after.
    fn materialize(&self, pfn: Pfn) {
        let region = &self.uniform[self.region_index(pfn)];
        let t = region.load(Ordering::Relaxed);
        if t == 0 {
            return;
        }
        let head = pfn.raw() & !(PAGES_2M - 1);
        for i in 0..PAGES_2M {
            self.slot(Pfn::new(head + i))
                .write(t + (i << LO_GFN_SHIFT), 0);
        }
        region.store(0, Ordering::Release);
    }

    fn any_assigned(&self) -> bool {
        self.assigned_2m
            .iter()
            .any(|c| c.load(Ordering::Relaxed) != 0)
    }
}

/// `n` zeroed elements, or [`CoverError::OutOfMemory`].
fn zeroed_table<T: Zeroable>(n: u64) -> Result<Box<[T]>, CoverError> {
    usize::try_from(n)
        .ok()
        .and_then(|n| try_zeroed_slice_box(n).ok())
        .ok_or(CoverError::OutOfMemory)
}

/// Why [`Rmp::add_covered`] or [`Rmp::remove_covered`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CoverError {
    /// An empty range, or one that overlaps a covered range (add) or is not
    /// exactly one covered range (remove).
    Invalid,
    /// A page in the range is still assigned: make it shared first
    /// ([`Rmp::gmem_invalidate`]), as KVM does before guest_memfd pages go
    /// back to the host.
    Assigned,
    /// The host could not allocate the entries.
    OutOfMemory,
}

impl fmt::Display for CoverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CoverError::Invalid => "RMP coverage: invalid or overlapping range",
            CoverError::Assigned => "RMP coverage: range still has assigned pages",
            CoverError::OutOfMemory => "RMP coverage: cannot allocate the entries",
        })
    }
}

impl std::error::Error for CoverError {}

// ----- faults --------------------------------------------------------------

/// `#PF` / `#VMEXIT(NPF)` error code bits (APM §15.36.10; KVM's `PFERR_*` in
/// arch/x86/include/asm/kvm_host.h).
pub mod pferr {
    /// The translation was present (bit 0).
    pub const PRESENT: u64 = 1 << 0;
    /// A write (bit 1).
    pub const WRITE: u64 = 1 << 1;
    /// At CPL 3 (bit 2).
    pub const USER: u64 = 1 << 2;
    /// An instruction fetch (bit 4).
    pub const FETCH: u64 = 1 << 4;
    /// An RMP or VMPL check failed (bit 31, `PFERR_GUEST_RMP_MASK`).
    pub const RMP: u64 = 1 << 31;
    /// The fault was on the final guest physical address
    /// (`PFERR_GUEST_FINAL_MASK`).
    pub const GUEST_FINAL: u64 = 1 << 32;
    /// The fault was on a guest page-table access (`PFERR_GUEST_PAGE_MASK`).
    pub const GUEST_PAGE: u64 = 1 << 33;
    /// The guest's effective C-bit was 1 (`PFERR_GUEST_ENC_MASK`).
    pub const ENC: u64 = 1 << 34;
    /// PVALIDATE/RMPADJUST size mismatch with the RMP
    /// (`PFERR_GUEST_SIZEM_MASK`).
    pub const SIZEM: u64 = 1 << 35;
    /// A VMPL permission check failed (`PFERR_GUEST_VMPL_MASK`).
    pub const VMPL: u64 = 1 << 36;
}

/// The `#VC` error code of an access to a page that is not validated
/// (`PAGE_NOT_VALIDATED`, APM §15.36.10).
pub const SVM_EXIT_PAGE_NOT_VALIDATED: u64 = 0x404;

/// Which RMP check failed (APM §15.36.10 names them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RmpCheck {
    /// RMP-Covered: the page has no RMP entry.
    Covered,
    /// Guest-Owned: not assigned, or assigned to another ASID.
    GuestOwned,
    /// Reverse-Map: the entry records another GPA.
    ReverseMap,
    /// Mutable: the entry is immutable.
    Mutable,
    /// Page-Size: the nested page size and the RMP page size differ.
    PageSize,
    /// Validated: the page is not validated.
    Validated,
    /// VMPL: the VMPL permission mask forbids the access.
    Vmpl,
    /// Hypervisor-Owned: a page (any 4K page of a 2M page) is assigned.
    HypervisorOwned,
    /// PVALIDATE/RMPADJUST at 4K over a 2M page (APM Table 15-40).
    InstructionSize,
}

/// A failed RMP check seen by the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RmpFault {
    /// `#VMEXIT(NPF)` with `EXITINFO1 = error_code` (bits in [`pferr`]): the
    /// modelled KVM handles it (`sev_handle_rmp_fault()`, or a
    /// `KVM_EXIT_MEMORY_FAULT` for an implicit conversion).
    NestedPageFault {
        /// `EXITINFO1`.
        error_code: u64,
        /// The check that failed.
        check: RmpCheck,
    },
    /// `#VC` with error code [`SVM_EXIT_PAGE_NOT_VALIDATED`] (CR2 is not
    /// written).
    PageNotValidated,
}

impl RmpFault {
    /// The check that failed.
    pub const fn check(&self) -> RmpCheck {
        match self {
            RmpFault::NestedPageFault { check, .. } => *check,
            RmpFault::PageNotValidated => RmpCheck::Validated,
        }
    }
}

/// A host write that the RMP refuses: on hardware a `#PF` in the host with
/// the RMP bit set (APM Table 15-39, "Host ... data write ... #PF").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HostRmpFault {
    /// The `#PF` error code (`PRESENT | WRITE | RMP`).
    pub error_code: u64,
    /// The first assigned page found.
    pub pfn: Pfn,
}

// ----- access descriptions --------------------------------------------------

/// The guest whose accesses and instructions are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SnpGuest {
    /// The guest's ASID.
    pub asid: Asid,
    /// The VMPL the vCPU runs at.
    pub vmpl: Vmpl,
}

/// The kind of a guest access (APM Table 15-39 rows).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RmpAccessKind {
    /// A data read.
    Read,
    /// A data write.
    Write,
    /// An instruction fetch (effective C-bit always 1).
    Fetch,
    /// A guest page-table read during the stage-1 walk (effective C-bit
    /// always 1).
    PageWalk,
}

/// One guest access after the nested translation succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GuestAccess {
    /// The backing page accessed (the system physical page).
    pub pfn: Pfn,
    /// The guest frame accessed, C-bit stripped.
    pub gfn: Gfn,
    /// The C-bit of the guest's stage-1 mapping (ignored for fetches and page
    /// walks, whose effective C-bit is 1).
    pub c_bit: bool,
    /// The size of the nested (stage-2) leaf that maps the page.
    pub npt_level: PageLevel,
    /// What the access does.
    pub kind: RmpAccessKind,
    /// Whether the access is at CPL 3 (selects Execute-User over
    /// Execute-Supervisor and sets the U bit of the error code).
    pub user: bool,
}

impl GuestAccess {
    /// The effective C-bit (APM §15.36.10: fetches and page-table accesses
    /// are always private).
    pub const fn effective_c_bit(&self) -> bool {
        self.c_bit || matches!(self.kind, RmpAccessKind::Fetch | RmpAccessKind::PageWalk)
    }

    const fn error_code(&self) -> u64 {
        let mut e = pferr::PRESENT | pferr::RMP;
        match self.kind {
            RmpAccessKind::Write => e |= pferr::WRITE,
            RmpAccessKind::Fetch => e |= pferr::FETCH,
            _ => {}
        }
        if self.user {
            e |= pferr::USER;
        }
        if matches!(self.kind, RmpAccessKind::PageWalk) {
            e |= pferr::GUEST_PAGE;
        } else {
            e |= pferr::GUEST_FINAL;
        }
        if self.effective_c_bit() {
            e |= pferr::ENC;
        }
        e
    }
}

/// An access the RMP allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RmpAccess {
    /// The access sees the page's content.
    Plain,
    /// A C-bit-clear read of a page assigned to a guest: allowed, but on
    /// hardware it returns ciphertext (the read is not checked, APM Table
    /// 15-39); the plugin returns all ones.
    Ciphertext,
}

/// What a device (DMA) access to a page may do (docs/architecture.md,
/// "Devices never reach private memory").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceAccess {
    /// A hypervisor-owned page: the access goes through.
    Allowed,
    /// A read of an assigned page: return all ones (the data is encrypted
    /// with the guest's key).
    Encrypted,
    /// A write to an assigned page: dropped (the IOMMU's RMP check refuses
    /// it, as the CPU refuses host writes, APM Table 15-39).
    Blocked,
}

// ----- instruction results ---------------------------------------------------

/// The RMPUPDATE input (Linux `struct rmp_state`, arch/x86/include/asm/sev.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct RmpState {
    /// The new guest frame (must be 0 when unassigning).
    pub gfn: Gfn,
    /// Assign (1) or return to the hypervisor (0).
    pub assigned: bool,
    /// The new page size.
    pub page_size: RmpPageSize,
    /// Make the entry immutable (AMD-SP pages).
    pub immutable: bool,
    /// The new owner's ASID (must be 0 when unassigning).
    pub asid: Asid,
}

/// A failed PSMASH; the discriminant is the EAX value (APM vol. 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PsmashError {
    /// `FAIL_INPUT` (1): not 2M aligned, or the 2M range is not covered.
    FailInput = 1,
    /// `FAIL_BADADDR` (7): the entry is not an assigned 2M page.
    FailBadAddr = 7,
}

/// A successful PVALIDATE: EAX = 0 and CF tells whether the entry changed
/// (Linux `pvalidate()` reads CF and reports `PVALIDATE_FAIL_NOUPDATE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PvalidateOutcome {
    /// The validated bit changed: EAX = 0, CF = 0.
    Updated,
    /// The validated bit already had the requested value: EAX = 0, CF = 1.
    NoUpdate,
}

impl PvalidateOutcome {
    /// rFLAGS.CF after the instruction.
    pub const fn cf(self) -> bool {
        matches!(self, PvalidateOutcome::NoUpdate)
    }
}

/// A failed PVALIDATE: a return code in EAX, or an exception.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PvalidateError {
    /// `FAIL_INPUT` (1): bad RCX, or a 2M request on a GPA that is not 2M
    /// aligned.
    FailInput,
    /// `FAIL_PERMISSION` (2): not executed at VMPL0 (PVALIDATE "can only be
    /// performed at VMPL0", Linux commit "x86/sev: Perform PVALIDATE using
    /// the SVSM when not at VMPL0").
    FailPermission,
    /// `FAIL_SIZEMISMATCH` (6): a 2M request over 4K RMP entries or a 4K
    /// nested mapping (APM §15.36.6, Table 15-40); the guest retries each 4K
    /// page (Linux `pvalidate_pages()`).
    FailSizeMismatch,
    /// The instruction faulted (`#VMEXIT(NPF)` with the RMP bit).
    Fault(RmpFault),
}

impl PvalidateError {
    /// The EAX value, or `None` for a fault.
    pub const fn eax(&self) -> Option<u32> {
        match self {
            PvalidateError::FailInput => Some(1),
            PvalidateError::FailPermission => Some(2),
            PvalidateError::FailSizeMismatch => Some(6),
            PvalidateError::Fault(_) => None,
        }
    }
}

/// RMPADJUST's RDX (APM vol. 3; coconut-svsm `RMPFlags`; Linux
/// `RMPADJUST_VMSA_PAGE_BIT` = bit 16): bits 7:0 target VMPL, bits 15:8
/// permission mask, bit 16 VMSA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RmpadjustAttrs {
    /// The VMPL whose permissions change.
    pub target: Vmpl,
    /// Its new permission mask.
    pub perms: VmplPerms,
    /// The new VMSA bit.
    pub vmsa: bool,
}

impl RmpadjustAttrs {
    /// Decodes RDX; `None` (→ `FAIL_INPUT`) for an unknown VMPL or a set
    /// reserved bit (including the unmodelled supervisor-shadow-stack bit).
    pub const fn from_rdx(rdx: u64) -> Option<RmpadjustAttrs> {
        if rdx >> 17 != 0 {
            return None;
        }
        let Some(target) = Vmpl::from_number(rdx & 0xff) else {
            return None;
        };
        let Some(perms) = VmplPerms::from_bits(((rdx >> 8) & 0xff) as u8) else {
            return None;
        };
        Some(RmpadjustAttrs {
            target,
            perms,
            vmsa: rdx & (1 << 16) != 0,
        })
    }
}

/// A failed RMPADJUST: a return code in EAX, or an exception.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RmpadjustError {
    /// `FAIL_INPUT` (1): bad RCX/RDX, or a 2M request on an unaligned GPA.
    FailInput,
    /// `FAIL_PERMISSION` (2): the target VMPL is not less privileged than the
    /// current one, the new mask grants what the current VMPL lacks, or the
    /// VMSA bit is set from above VMPL0 (APM §15.36.7, §15.36.12).
    FailPermission,
    /// `FAIL_SIZEMISMATCH` (6): a 2M request over 4K RMP entries (Table
    /// 15-40).
    FailSizeMismatch,
    /// The instruction faulted.
    Fault(RmpFault),
}

impl RmpadjustError {
    /// The EAX value, or `None` for a fault.
    pub const fn eax(&self) -> Option<u32> {
        match self {
            RmpadjustError::FailInput => Some(1),
            RmpadjustError::FailPermission => Some(2),
            RmpadjustError::FailSizeMismatch => Some(6),
            RmpadjustError::Fault(_) => None,
        }
    }
}

/// A guest RMP instruction's operands after the plugin translated RAX (a
/// guest virtual address) through the guest's page tables and the nested
/// translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RmpInsnTarget {
    /// The guest frame (C-bit stripped) RAX translates to.
    pub gfn: Gfn,
    /// Its backing frame.
    pub pfn: Pfn,
    /// The nested leaf size mapping it.
    pub npt_level: PageLevel,
}

/// What [`Rmp::handle_rmp_fault`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RmpFaultFix {
    /// Nothing to fix here (already 4K, or not assigned): let the guest retry
    /// or handle the fault elsewhere.
    None,
    /// The 2M entry was PSMASHed: zap the nested mappings of the 2M gfn range
    /// so that they come back at 4K (`kvm_zap_gfn_range()`).
    Smashed,
}

// ----- the table -----------------------------------------------------------

/// The covered segments, sorted by address, disjoint.
type Segments = Vec<Arc<Segment>>;

/// A per-thread handle for the hot path: [`RmpReader::check_guest_access`]
/// is [`Rmp::check_guest_access`] with the segment snapshot cached in the
/// handle (one atomic load to revalidate it, `arc_swap::Cache`) instead of an
/// [`ArcSwap`] load per access. Keep one per vCPU thread.
pub struct RmpReader {
    cache: arc_swap::cache::Cache<Arc<ArcSwap<Segments>>, Arc<Segments>>,
}

impl fmt::Debug for RmpReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RmpReader").finish_non_exhaustive()
    }
}

impl RmpReader {
    /// [`Rmp::check_guest_access`], lock-free and without touching shared
    /// cache lines other than the entry and the snapshot pointer.
    #[inline]
    pub fn check_guest_access(
        &mut self,
        guest: SnpGuest,
        access: &GuestAccess,
    ) -> Result<RmpAccess, RmpFault> {
        check_guest_access(self.cache.load(), guest, access)
    }
}

/// The Reverse Map Table. `Sync`: share it between vCPU threads.
pub struct Rmp {
    /// In an `Arc` so that [`RmpReader`]s can own a handle to it.
    segments: Arc<ArcSwap<Segments>>,
    write_lock: Mutex<()>,
    /// Bumped by 2 after every change (see [`RmpWrite`]): the VM's stage-2
    /// generation, shared with its MMU seqlock, whose parity it keeps.
    generation: Arc<AtomicU64>,
}

/// The RMP's write lock, held while entries change; dropping it bumps the
/// generation, so that whoever cached an answer that read the RMP before
/// (QEMU's stage-2 cache) asks again.
struct RmpWrite<'a> {
    _lock: MutexGuard<'a, ()>,
    generation: &'a AtomicU64,
}

impl Drop for RmpWrite<'_> {
    fn drop(&mut self) {
        self.generation.fetch_add(2, Ordering::Release);
    }
}

impl fmt::Debug for Rmp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let segs = self.segments.load();
        f.debug_struct("Rmp")
            .field("covered", &segs.iter().map(|s| s.range).collect::<Vec<_>>())
            .finish()
    }
}

impl Default for Rmp {
    fn default() -> Self {
        Rmp::new()
    }
}

fn find(segs: &[Arc<Segment>], pfn: Pfn) -> Option<&Segment> {
    let i = segs.partition_point(|s| s.range.end.raw() <= pfn.raw());
    let s = segs.get(i)?;
    s.range.contains(pfn).then_some(&**s)
}

impl Rmp {
    /// An RMP covering nothing: every page is hypervisor-owned.
    pub fn new() -> Rmp {
        Rmp::with_generation(Arc::new(AtomicU64::new(0)))
    }

    /// [`Rmp::new`], bumping `generation` by 2 after every change.
    pub fn with_generation(generation: Arc<AtomicU64>) -> Rmp {
        Rmp {
            segments: Arc::new(ArcSwap::from_pointee(Vec::new())),
            write_lock: Mutex::new(()),
            generation,
        }
    }

    /// Takes the write lock; the generation moves when it is dropped.
    fn write_lock(&self) -> RmpWrite<'_> {
        RmpWrite {
            _lock: self.write_lock.lock(),
            generation: &self.generation,
        }
    }

    // ----- coverage --------------------------------------------------------

    /// Covers `range` with hypervisor-owned entries (the state the AMD-SP
    /// initialises the RMP to, APM §15.36.4). Refuses an empty range or one
    /// overlapping a covered range.
    pub fn add_covered(&self, range: PfnRange) -> Result<(), CoverError> {
        if range.is_empty() {
            return Err(CoverError::Invalid);
        }
        let _w = self.write_lock();
        let cur = self.segments.load_full();
        if cur.iter().any(|s| s.range.overlaps(range)) {
            return Err(CoverError::Invalid);
        }
        let mut next: Vec<Arc<Segment>> = cur.iter().cloned().collect();
        let at = next.partition_point(|s| s.range.start.raw() < range.start.raw());
        next.insert(at, Arc::new(Segment::new(range)?));
        self.segments.store(Arc::new(next));
        Ok(())
    }

    /// Covers `range`, which may contain covered ranges but not overlap
    /// one partly: they become part of it with their entries, and its other
    /// frames start hypervisor-owned, as [`Rmp::add_covered`] leaves them.
    /// Afterwards `range` is one covered range (for [`Rmp::remove_covered`]).
    /// For memslots that grow in audit mode ([`crate::Vm::grow_memslot`]);
    /// it copies the entries it absorbs, so keep such ranges small.
    pub fn grow_covered(&self, range: PfnRange) -> Result<(), CoverError> {
        if range.is_empty() {
            return Err(CoverError::Invalid);
        }
        let _w = self.write_lock();
        let cur = self.segments.load_full();
        let inside = |s: &Segment| {
            range.start.raw() <= s.range.start.raw() && s.range.end.raw() <= range.end.raw()
        };
        if cur.iter().any(|s| s.range.overlaps(range) && !inside(s)) {
            return Err(CoverError::Invalid);
        }
        // Every mutation holds the write lock, so the absorbed entries
        // cannot change while they are copied; a reader still holding the
        // old segments sees what was true until the new ones are stored.
        let grown = Segment::new(range)?;
        for old in cur.iter().filter(|s| s.range.overlaps(range)) {
            for pfn in (old.range.start.raw()..old.range.end.raw()).map(Pfn::new) {
                let (lo, hi) = old.read(pfn);
                if lo & LO_ASSIGNED != 0 {
                    grown.assigned_2m[grown.region_index(pfn)].fetch_add(1, Ordering::Relaxed);
                }
                grown.slot(pfn).write(lo, hi);
            }
        }
        let mut next: Vec<Arc<Segment>> = cur
            .iter()
            .filter(|s| !s.range.overlaps(range))
            .cloned()
            .collect();
        let at = next.partition_point(|s| s.range.start.raw() < range.start.raw());
        next.insert(at, Arc::new(grown));
        self.segments.store(Arc::new(next));
        Ok(())
    }

    /// Stops covering `range`, which must be exactly a range given to
    /// [`Rmp::add_covered`] and have no assigned page left.
    pub fn remove_covered(&self, range: PfnRange) -> Result<(), CoverError> {
        let _w = self.write_lock();
        let cur = self.segments.load_full();
        let Some(i) = cur.iter().position(|s| s.range == range) else {
            return Err(CoverError::Invalid);
        };
        if cur[i].any_assigned() {
            return Err(CoverError::Assigned);
        }
        let mut next: Vec<Arc<Segment>> = cur.iter().cloned().collect();
        next.remove(i);
        self.segments.store(Arc::new(next));
        Ok(())
    }

    /// The covered ranges, in address order.
    pub fn covered(&self) -> Vec<PfnRange> {
        self.segments.load().iter().map(|s| s.range).collect()
    }

    /// A per-thread handle for the per-access check (see [`RmpReader`]).
    pub fn reader(&self) -> RmpReader {
        RmpReader {
            cache: arc_swap::cache::Cache::new(self.segments.clone()),
        }
    }

    /// Whether `pfn` has an RMP entry.
    pub fn is_covered(&self, pfn: Pfn) -> bool {
        find(&self.segments.load(), pfn).is_some()
    }

    /// The entry of `pfn` (RMPREAD), or `None` if it is not covered.
    pub fn entry(&self, pfn: Pfn) -> Option<RmpEntry> {
        let segs = self.segments.load();
        let (lo, hi) = find(&segs, pfn)?.read(pfn);
        Some(unpack(lo, hi))
    }

    /// The frames covered by the RMP page of `size` containing `pfn`, if all
    /// of them lie in one segment.
    fn page_of(segs: &[Arc<Segment>], pfn: Pfn, size: RmpPageSize) -> Option<(&Segment, Pfn)> {
        let head = Pfn::new(pfn.raw() & !(size.pages() - 1));
        let seg = find(segs, head)?;
        let last = Pfn::new(head.raw() + size.pages() - 1);
        seg.range.contains(last).then_some((seg, head))
    }

    fn write(seg: &Segment, pfn: Pfn, new: &RmpEntry) {
        seg.materialize(pfn);
        let slot = seg.slot(pfn);
        let (old_lo, _) = slot.read();
        let (lo, hi) = pack(new);
        let was = old_lo & LO_ASSIGNED != 0;
        if was != new.assigned {
            let c = &seg.assigned_2m[seg.region_index(pfn)];
            if new.assigned {
                c.fetch_add(1, Ordering::Relaxed);
            } else {
                c.fetch_sub(1, Ordering::Relaxed);
            }
        }
        slot.write(lo, hi);
    }

    // ----- host instructions ----------------------------------------------

    /// RMPUPDATE `pfn` to `state` (APM §15.36.5; vol. 3 RMPUPDATE).
    ///
    /// Every update resets the validated bit, the VMSA bit and the VMPL1-3
    /// masks (VMPL0 keeps all permissions): "once validated, a page that the
    /// hypervisor unassigns, reassigns or remaps becomes unvalidated"
    /// (§15.36.6) and "RMPUPDATE assigning a page gives VMPL0 full
    /// permissions and the other VMPLs none" (§15.36.7). A 2M update writes
    /// all 512 entries.
    pub fn rmpupdate(&self, pfn: Pfn, state: RmpState) -> Result<(), RmpupdateError> {
        let _w = self.write_lock();
        self.rmpupdate_locked(pfn, state)
    }

    fn rmpupdate_locked(&self, pfn: Pfn, state: RmpState) -> Result<(), RmpupdateError> {
        let segs = self.segments.load();
        let size = state.page_size;
        if find(&segs, pfn).is_none() {
            return Err(RmpupdateError::FailInput);
        }
        if pfn.raw() % size.pages() != 0 || state.gfn.raw() > RMP_MAX_GFN {
            return Err(RmpupdateError::FailInput);
        }
        if state.assigned {
            if state.gfn.raw() % size.pages() != 0 {
                return Err(RmpupdateError::FailInput);
            }
        } else if state.asid != Asid::HYPERVISOR || state.immutable || state.gfn.raw() != 0 {
            return Err(RmpupdateError::FailInput);
        }
        let Some((seg, head)) = Rmp::page_of(&segs, pfn, size) else {
            return Err(RmpupdateError::FailInput);
        };
        // The entry being replaced, and the 2M page around a 4K update.
        let (lo, _) = seg.read(head);
        if lo & LO_IMMUTABLE != 0 {
            return Err(RmpupdateError::FailPermission);
        }
        match size {
            RmpPageSize::Size4K => {
                // A 4K update inside an assigned 2M page: PSMASH first (Linux
                // sev_gmem_invalidate() does so before a 4K rmp_make_shared()).
                if lo & LO_ASSIGNED != 0 && lo & LO_SIZE_2M != 0 {
                    return Err(RmpupdateError::FailOverlap);
                }
            }
            RmpPageSize::Size2M => {
                // A 2M update needs the 512 entries to be one 2M page or
                // unassigned 4K pages.
                for i in 0..PAGES_2M {
                    let (l, _) = seg.read(Pfn::new(head.raw() + i));
                    if l & LO_ASSIGNED != 0 && l & LO_SIZE_2M == 0 {
                        return Err(RmpupdateError::FailOverlap);
                    }
                    if l & LO_IMMUTABLE != 0 {
                        return Err(RmpupdateError::FailPermission);
                    }
                }
            }
        }
        for i in 0..size.pages() {
            let e = RmpEntry {
                assigned: state.assigned,
                page_size: if state.assigned {
                    size
                } else {
                    RmpPageSize::Size4K
                },
                immutable: state.immutable,
                validated: false,
                vmsa: false,
                asid: state.asid,
                gfn: if state.assigned {
                    Gfn::new(state.gfn.raw() + i)
                } else {
                    Gfn::new(0)
                },
                perms: [VmplPerms::NONE; 3],
            };
            Rmp::write(seg, Pfn::new(head.raw() + i), &e);
        }
        Ok(())
    }

    /// The RMP side of SNP_LAUNCH_UPDATE for the 4K pages of `pfns`, at
    /// guest frames from `gfn`: each page assigned to `asid` at 4K (Linux
    /// `rmp_make_private()`, as KVM's `sev_gmem_post_populate()` does) and
    /// validated, as the firmware leaves a launched page (SNP firmware ABI,
    /// SNP_LAUNCH_UPDATE). The result is that of the updates one page at a
    /// time, up to the first error; a whole 2M region whose entries are all
    /// hypervisor-owned becomes a uniform region (see [`Segment`]) without
    /// writing its 512 entries, so launching a large guest costs neither
    /// time nor host memory per page.
    pub fn launch_validated(
        &self,
        pfns: PfnRange,
        gfn: Gfn,
        asid: Asid,
    ) -> Result<(), RmpupdateError> {
        let _w = self.write_lock();
        let segs = self.segments.load();
        let mut p = pfns.start.raw();
        while p < pfns.end.raw() {
            let pfn = Pfn::new(p);
            let g = gfn.raw() + (p - pfns.start.raw());
            let seg = find(&segs, pfn).ok_or(RmpupdateError::FailInput)?;
            let next_region = (p | (PAGES_2M - 1)) + 1;
            let i = seg.region_index(pfn);
            let whole = p % PAGES_2M == 0
                && next_region <= pfns.end.raw()
                && seg.range.contains(Pfn::new(next_region - 1))
                && g + PAGES_2M - 1 <= RMP_MAX_GFN
                && asid != Asid::HYPERVISOR
                && seg.assigned_2m[i].load(Ordering::Relaxed) == 0
                && seg.uniform[i].load(Ordering::Relaxed) == 0;
            if whole {
                // Unassigned entries are all zero (RMPUPDATE clears every
                // field when it unassigns), so nothing in the slots is lost.
                invariant!(
                    (0..PAGES_2M).all(|k| seg.slot(Pfn::new(p + k)).read() == (0, 0)),
                    "an unassigned RMP entry holds data in the 2M region at {p:#x}"
                );
                let (lo, _) = pack(&RmpEntry {
                    assigned: true,
                    page_size: RmpPageSize::Size4K,
                    immutable: false,
                    validated: true,
                    vmsa: false,
                    asid,
                    gfn: Gfn::new(g),
                    perms: [VmplPerms::NONE; 3],
                });
                seg.assigned_2m[i].store(PAGES_2M as u32, Ordering::Relaxed);
                seg.uniform[i].store(lo, Ordering::Release);
                p = next_region;
                continue;
            }
            self.rmpupdate_locked(
                pfn,
                RmpState {
                    gfn: Gfn::new(g),
                    assigned: true,
                    page_size: RmpPageSize::Size4K,
                    immutable: false,
                    asid,
                },
            )?;
            let (l, h) = seg.read(pfn);
            let mut e = unpack(l, h);
            e.validated = true;
            Rmp::write(seg, pfn, &e);
            p += 1;
        }
        Ok(())
    }

    /// PSMASH: splits the assigned 2M page at `pfn` into 512 4K entries with
    /// consecutive GPAs, keeping every other field, the validated bit and the
    /// VMPL masks included (APM §15.36.11).
    pub fn psmash(&self, pfn: Pfn) -> Result<(), PsmashError> {
        let _w = self.write_lock();
        self.psmash_locked(pfn)
    }

    fn psmash_locked(&self, pfn: Pfn) -> Result<(), PsmashError> {
        let segs = self.segments.load();
        if pfn.raw() % PAGES_2M != 0 {
            return Err(PsmashError::FailInput);
        }
        let Some((seg, head)) = Rmp::page_of(&segs, pfn, RmpPageSize::Size2M) else {
            return Err(PsmashError::FailInput);
        };
        let (lo, _) = seg.read(head);
        if lo & LO_ASSIGNED == 0 || lo & LO_SIZE_2M == 0 {
            return Err(PsmashError::FailBadAddr);
        }
        for i in 0..PAGES_2M {
            let p = Pfn::new(head.raw() + i);
            let (l, h) = seg.read(p);
            let mut e = unpack(l, h);
            e.page_size = RmpPageSize::Size4K;
            Rmp::write(seg, p, &e);
        }
        Ok(())
    }

    /// Linux `rmp_make_private()` (arch/x86/virt/svm/sev.c): assign `pfn`
    /// (4K, or the 2M page it heads) to `asid` at `gfn`, unvalidated.
    pub fn rmp_make_private(
        &self,
        pfn: Pfn,
        gfn: Gfn,
        level: PageLevel,
        asid: Asid,
        immutable: bool,
    ) -> Result<(), RmpupdateError> {
        self.rmpupdate(
            pfn,
            RmpState {
                gfn,
                assigned: true,
                page_size: RmpPageSize::from_level(level),
                immutable,
                asid,
            },
        )
    }

    /// Linux `rmp_make_shared()`: return `pfn` (4K, or the 2M page it heads)
    /// to the hypervisor.
    pub fn rmp_make_shared(&self, pfn: Pfn, level: PageLevel) -> Result<(), RmpupdateError> {
        self.rmpupdate(
            pfn,
            RmpState {
                page_size: RmpPageSize::from_level(level),
                ..RmpState::default()
            },
        )
    }

    // ----- KVM's use (arch/x86/kvm/svm/sev.c) ------------------------------

    /// `sev_gmem_prepare()`: at fault-in of a private page, assign its
    /// backing to the guest, unvalidated. Does nothing if `pfn` is already
    /// assigned (a page the guest validated stays validated across zaps and
    /// re-faults). Uses one 2M entry when `max_level` allows it and the
    /// whole 2M-aligned pfn range is still hypervisor-owned
    /// (`is_large_rmp_possible()`); the caller guarantees that `gfn` and
    /// `pfn` are congruent modulo 2M then (guest_memfd folio order). Returns
    /// the RMP level of the page.
    pub fn gmem_prepare(
        &self,
        pfn: Pfn,
        gfn: Gfn,
        max_level: PageLevel,
        asid: Asid,
    ) -> Result<PageLevel, RmpupdateError> {
        let _w = self.write_lock();
        let segs = self.segments.load();
        let Some(seg) = find(&segs, pfn) else {
            return Err(RmpupdateError::FailInput);
        };
        let (lo, _) = seg.read(pfn);
        if lo & LO_ASSIGNED != 0 {
            return Ok(if lo & LO_SIZE_2M != 0 {
                PageLevel::Size2M
            } else {
                PageLevel::Size4K
            });
        }
        let large = max_level >= PageLevel::Size2M
            && pfn.raw() % PAGES_2M == gfn.raw() % PAGES_2M
            && Rmp::page_of(&segs, pfn, RmpPageSize::Size2M).is_some_and(|(s, head)| {
                s.assigned_2m[s.region_index(head)].load(Ordering::Relaxed) == 0
            });
        let (size, pfn, gfn) = if large {
            (
                RmpPageSize::Size2M,
                Pfn::new(pfn.raw() & !(PAGES_2M - 1)),
                Gfn::new(gfn.raw() & !(PAGES_2M - 1)),
            )
        } else {
            (RmpPageSize::Size4K, pfn, gfn)
        };
        self.rmpupdate_locked(
            pfn,
            RmpState {
                gfn,
                assigned: true,
                page_size: size,
                immutable: false,
                asid,
            },
        )?;
        Ok(size.level())
    }

    /// `sev_gmem_invalidate()`: return every assigned page of `range` to the
    /// hypervisor (guest_memfd freeing its pages, e.g. on conversion to
    /// shared). A 2M entry wholly inside the range is unassigned at once; one
    /// that the range cuts is PSMASHed first. Immutable pages are skipped
    /// (KVM WARNs). Returns the number of 4K pages unassigned.
    pub fn gmem_invalidate(&self, range: PfnRange) -> u64 {
        let _w = self.write_lock();
        // Segments change only under the write lock, which we hold.
        let segs = self.segments.load();
        let end = range.end.raw();
        let mut pfn = range.start.raw();
        let mut count = 0;
        while pfn < end {
            // Skip what holds no assigned page, a segment gap or a 2M
            // region at a time: the cost is what is assigned, not the span
            // (a 64 GiB conversion with 64 MiB private).
            let Some(seg) = find(&segs, Pfn::new(pfn)) else {
                pfn = segs
                    .iter()
                    .map(|s| s.range.start.raw())
                    .find(|&s| s > pfn)
                    .unwrap_or(end);
                continue;
            };
            if seg.assigned_2m[seg.region_index(Pfn::new(pfn))].load(Ordering::Relaxed) == 0 {
                pfn = ((pfn / PAGES_2M + 1) * PAGES_2M).min(seg.range.end.raw());
                continue;
            }
            let (lo, hi) = seg.read(Pfn::new(pfn));
            let e = unpack(lo, hi);
            if !e.assigned || e.immutable {
                pfn += 1;
                continue;
            }
            let use_2m = e.page_size == RmpPageSize::Size2M
                && pfn % PAGES_2M == 0
                && range.end.raw() >= pfn + PAGES_2M;
            if e.page_size == RmpPageSize::Size2M && !use_2m {
                // Cannot fail: the entry is an assigned 2M page.
                let _ = self.psmash_locked(Pfn::new(pfn & !(PAGES_2M - 1)));
            }
            let size = if use_2m {
                RmpPageSize::Size2M
            } else {
                RmpPageSize::Size4K
            };
            if self
                .rmpupdate_locked(
                    Pfn::new(pfn),
                    RmpState {
                        page_size: size,
                        ..RmpState::default()
                    },
                )
                .is_ok()
            {
                count += size.pages();
            }
            pfn += size.pages();
        }
        count
    }

    /// `sev_gmem_max_mapping_level()`: the largest nested leaf that may map
    /// private `pfn`: its RMP page size if assigned, else 4K (the nested and
    /// RMP page sizes must agree, APM §15.36.10 Page-Size check).
    pub fn gmem_max_mapping_level(&self, pfn: Pfn) -> PageLevel {
        match self.entry(pfn) {
            Some(e) if e.assigned => e.page_size.level(),
            _ => PageLevel::Size4K,
        }
    }

    /// `sev_handle_rmp_fault()`: a nested page fault with the RMP bit on
    /// private `pfn`. If the page is a 2M RMP page (a 4K PVALIDATE/RMPADJUST
    /// with SIZEM, or a 4K nested mapping of it), PSMASH it; the caller then
    /// zaps the 2M gfn range.
    pub fn handle_rmp_fault(&self, pfn: Pfn) -> RmpFaultFix {
        let _w = self.write_lock();
        match self.entry(pfn) {
            Some(e) if e.assigned && e.page_size == RmpPageSize::Size2M => {
                match self.psmash_locked(Pfn::new(pfn.raw() & !(PAGES_2M - 1))) {
                    Ok(()) => RmpFaultFix::Smashed,
                    Err(_) => RmpFaultFix::None,
                }
            }
            _ => RmpFaultFix::None,
        }
    }

    // ----- guest instructions ---------------------------------------------

    /// The ownership checks PVALIDATE and RMPADJUST share with accesses
    /// (Guest-Owned, Reverse-Map, Mutable) on the entry of `pfn`, and the 4K
    /// request over a 2M page or 2M nested leaf (APM §15.36.6, Table 15-40:
    /// `#VMEXIT(NPF)` with SIZEM, fixed by the hypervisor's PSMASH).
    fn insn_checks(
        guest: SnpGuest,
        t: RmpInsnTarget,
        size: RmpPageSize,
        e: &RmpEntry,
        covered: bool,
    ) -> Result<(), RmpFault> {
        let npf = |check, extra| RmpFault::NestedPageFault {
            error_code: pferr::PRESENT | pferr::RMP | pferr::ENC | pferr::GUEST_FINAL | extra,
            check,
        };
        if !covered {
            return Err(npf(RmpCheck::Covered, 0));
        }
        if !e.assigned || e.asid != guest.asid || guest.asid == Asid::HYPERVISOR {
            return Err(npf(RmpCheck::GuestOwned, 0));
        }
        if e.gfn != t.gfn {
            return Err(npf(RmpCheck::ReverseMap, 0));
        }
        if e.immutable {
            return Err(npf(RmpCheck::Mutable, 0));
        }
        if size == RmpPageSize::Size4K
            && (e.page_size == RmpPageSize::Size2M || t.npt_level > PageLevel::Size4K)
        {
            return Err(npf(RmpCheck::InstructionSize, pferr::SIZEM));
        }
        Ok(())
    }

    /// PVALIDATE (APM §15.36.6, vol. 3): set (`validate`) or clear the
    /// validated bit of the 4K or 2M page at `target`.
    ///
    /// Order of the checks: VMPL0 only (`FAIL_PERMISSION`); RCX and a 2M
    /// GPA's alignment (`FAIL_INPUT`); the entry's ownership, GPA and
    /// mutability, and a 4K request over a 2M page (`#VMEXIT(NPF)`); a 2M
    /// request over 4K entries or a 4K nested leaf (`FAIL_SIZEMISMATCH`);
    /// then the update, or `NoUpdate` (CF = 1) if the bit already has the
    /// requested value.
    pub fn pvalidate(
        &self,
        guest: SnpGuest,
        target: RmpInsnTarget,
        rcx: u64,
        validate: bool,
    ) -> Result<PvalidateOutcome, PvalidateError> {
        if guest.vmpl != Vmpl::Vmpl0 {
            return Err(PvalidateError::FailPermission);
        }
        let Some(size) = RmpPageSize::from_rcx(rcx) else {
            return Err(PvalidateError::FailInput);
        };
        if target.gfn.raw() % size.pages() != 0 {
            return Err(PvalidateError::FailInput);
        }
        let _w = self.write_lock();
        let segs = self.segments.load();
        let head = Pfn::new(target.pfn.raw() & !(size.pages() - 1));
        let (e, seg) = match find(&segs, head) {
            Some(s) => {
                let (l, h) = s.read(head);
                (unpack(l, h), Some(s))
            }
            None => (RmpEntry::default(), None),
        };
        Rmp::insn_checks(guest, target, size, &e, seg.is_some()).map_err(PvalidateError::Fault)?;
        let Some(seg) = seg else {
            unreachable!("insn_checks refuses uncovered pages");
        };
        if size == RmpPageSize::Size2M
            && (e.page_size == RmpPageSize::Size4K || target.npt_level == PageLevel::Size4K)
        {
            return Err(PvalidateError::FailSizeMismatch);
        }
        if e.validated == validate {
            return Ok(PvalidateOutcome::NoUpdate);
        }
        for i in 0..size.pages() {
            let p = Pfn::new(head.raw() + i);
            let (l, h) = seg.read(p);
            let mut x = unpack(l, h);
            x.validated = validate;
            Rmp::write(seg, p, &x);
        }
        Ok(PvalidateOutcome::Updated)
    }

    /// RMPADJUST (APM §15.36.7, vol. 3): set the VMPL permission mask and
    /// VMSA bit that `attrs` gives for a less privileged VMPL on the 4K or
    /// 2M page at `target`.
    ///
    /// Order: RCX/RDX and 2M alignment (`FAIL_INPUT`); target VMPL not above
    /// the current one (`FAIL_PERMISSION`); ownership, GPA, mutability and a
    /// 4K request over a 2M page (`#VMEXIT(NPF)`); a 2M request over 4K
    /// entries (`FAIL_SIZEMISMATCH`); the page must be validated
    /// (`#VC(PAGE_NOT_VALIDATED)`); the new mask may not exceed the current
    /// VMPL's, and only VMPL0 may set the VMSA bit (`FAIL_PERMISSION`).
    pub fn rmpadjust(
        &self,
        guest: SnpGuest,
        target: RmpInsnTarget,
        rcx: u64,
        rdx: u64,
    ) -> Result<(), RmpadjustError> {
        let Some(size) = RmpPageSize::from_rcx(rcx) else {
            return Err(RmpadjustError::FailInput);
        };
        let Some(attrs) = RmpadjustAttrs::from_rdx(rdx) else {
            return Err(RmpadjustError::FailInput);
        };
        if target.gfn.raw() % size.pages() != 0 {
            return Err(RmpadjustError::FailInput);
        }
        if attrs.target <= guest.vmpl {
            return Err(RmpadjustError::FailPermission);
        }
        let _w = self.write_lock();
        let segs = self.segments.load();
        let head = Pfn::new(target.pfn.raw() & !(size.pages() - 1));
        let (e, seg) = match find(&segs, head) {
            Some(s) => {
                let (l, h) = s.read(head);
                (unpack(l, h), Some(s))
            }
            None => (RmpEntry::default(), None),
        };
        Rmp::insn_checks(guest, target, size, &e, seg.is_some()).map_err(RmpadjustError::Fault)?;
        let Some(seg) = seg else {
            unreachable!("insn_checks refuses uncovered pages");
        };
        if size == RmpPageSize::Size2M && e.page_size == RmpPageSize::Size4K {
            return Err(RmpadjustError::FailSizeMismatch);
        }
        if !e.validated {
            return Err(RmpadjustError::Fault(RmpFault::PageNotValidated));
        }
        if !e.perms_of(guest.vmpl).contains(attrs.perms)
            || (attrs.vmsa && guest.vmpl != Vmpl::Vmpl0)
        {
            return Err(RmpadjustError::FailPermission);
        }
        for i in 0..size.pages() {
            let p = Pfn::new(head.raw() + i);
            let (l, h) = seg.read(p);
            let mut x = unpack(l, h);
            x.perms[attrs.target as usize - 1] = attrs.perms;
            x.vmsa = attrs.vmsa;
            Rmp::write(seg, p, &x);
        }
        Ok(())
    }

    // ----- access checks (APM §15.36.10, Table 15-39) ----------------------

    /// Whether every 4K page of `[head, head + npages)` is hypervisor-owned
    /// (the Hypervisor-Owned check; a 2M or 1G access checks its whole 2M
    /// page). Returns the first assigned page.
    #[inline]
    fn first_assigned(segs: &[Arc<Segment>], head: Pfn, npages: u64) -> Option<Pfn> {
        let end = head.raw() + npages;
        let mut pfn = head.raw();
        while pfn < end {
            let Some(seg) = find(segs, Pfn::new(pfn)) else {
                // Uncovered pages are hypervisor-owned; skip to the next
                // segment.
                let next = segs
                    .iter()
                    .map(|s| s.range.start.raw())
                    .find(|&s| s > pfn)
                    .unwrap_or(end);
                pfn = next;
                continue;
            };
            let seg_end = seg.range.end.raw().min(end);
            while pfn < seg_end {
                let region_end = ((pfn / PAGES_2M) + 1) * PAGES_2M;
                let c = seg.assigned_2m[seg.region_index(Pfn::new(pfn))].load(Ordering::Acquire);
                if c == 0 {
                    pfn = region_end.min(seg_end);
                    continue;
                }
                let stop = region_end.min(seg_end);
                while pfn < stop {
                    let (lo, _) = seg.read(Pfn::new(pfn));
                    if lo & LO_ASSIGNED != 0 {
                        return Some(Pfn::new(pfn));
                    }
                    pfn += 1;
                }
            }
        }
        None
    }

    /// The RMP check of one guest access by an SNP-active guest (APM Table
    /// 15-39), run at every stage-2 translation after the nested walk
    /// succeeded.
    ///
    /// - Effective C-bit 1 (private data, every fetch and page walk):
    ///   RMP-Covered, Guest-Owned, Reverse-Map, Mutable and Page-Size fail
    ///   with `#VMEXIT(NPF)`; then Validated with `#VC(PAGE_NOT_VALIDATED)`;
    ///   then the VMPL mask with `#VMEXIT(NPF)` and the VMPL bit. The order
    ///   is the table's priority.
    /// - C-bit 0 write: Hypervisor-Owned over the whole nested leaf (2M for a
    ///   2M or 1G leaf) fails with `#VMEXIT(NPF)`.
    /// - C-bit 0 read: not checked; an assigned page reads as
    ///   [`RmpAccess::Ciphertext`].
    #[inline]
    pub fn check_guest_access(
        &self,
        guest: SnpGuest,
        access: &GuestAccess,
    ) -> Result<RmpAccess, RmpFault> {
        check_guest_access(&self.segments.load(), guest, access)
    }

    /// Whether every guest access check in the 2M-aligned region holding
    /// `pfn` has the same outcome for pages at guest frames that move with
    /// the page, as far as can be told at once: a region launched whole
    /// (a uniform region of [`Segment`]: assigned, validated, the guest
    /// frame counting up), or one with no assigned page (every entry
    /// hypervisor-owned, whatever else it holds). Regions assigned page by
    /// page answer `false`: comparing 512 entries on every fill costs more
    /// than it saves while the guest validates memory (each PVALIDATE moves
    /// the stage-2 generation). Lock-free; a change meanwhile moves the
    /// stage-2 generation. A region not wholly in one covered range is
    /// alike only if nothing covers any of it.
    pub fn region_alike(&self, pfn: Pfn) -> bool {
        let head = Pfn::new(pfn.raw() & !(PAGES_2M - 1));
        let segs = self.segments.load();
        let Some(seg) = find(&segs, head) else {
            let end = head.raw() + PAGES_2M;
            let i = segs.partition_point(|s| s.range.end.raw() <= head.raw());
            return segs.get(i).is_none_or(|s| s.range.start.raw() >= end);
        };
        seg.range.contains(Pfn::new(head.raw() + PAGES_2M - 1))
            && (seg.uniform_lo(head).is_some()
                || seg.assigned_2m[seg.region_index(head)].load(Ordering::Acquire) == 0)
    }

    /// The RMP check of a host (hypervisor) write or page-table access to
    /// the `level` page at `pfn` (APM Table 15-39: Hypervisor-Owned, else
    /// `#PF` with the RMP bit). Host reads are not checked.
    pub fn check_host_write(&self, pfn: Pfn, level: PageLevel) -> Result<(), HostRmpFault> {
        let pages = if level == PageLevel::Size4K {
            1
        } else {
            PAGES_2M
        };
        let head = Pfn::new(pfn.raw() & !(pages - 1));
        match Rmp::first_assigned(&self.segments.load(), head, pages) {
            None => Ok(()),
            Some(pfn) => Err(HostRmpFault {
                error_code: pferr::PRESENT | pferr::WRITE | pferr::RMP,
                pfn,
            }),
        }
    }

    /// The check of a device (DMA) access to the 4K page at `pfn`: assigned
    /// pages are neither readable (all ones) nor writable (dropped) by
    /// devices.
    pub fn check_device_access(&self, pfn: Pfn, write: bool) -> DeviceAccess {
        match self.entry(pfn) {
            Some(e) if e.assigned => {
                if write {
                    DeviceAccess::Blocked
                } else {
                    DeviceAccess::Encrypted
                }
            }
            _ => DeviceAccess::Allowed,
        }
    }
}

/// The body of [`Rmp::check_guest_access`] over one segment snapshot.
#[inline]
fn check_guest_access(
    segs: &[Arc<Segment>],
    guest: SnpGuest,
    access: &GuestAccess,
) -> Result<RmpAccess, RmpFault> {
    let seg = find(segs, access.pfn);
    if !access.effective_c_bit() {
        let Some(seg) = seg else {
            return Ok(RmpAccess::Plain);
        };
        if access.kind == RmpAccessKind::Write {
            let pages = if access.npt_level == PageLevel::Size4K {
                1
            } else {
                PAGES_2M
            };
            let head = Pfn::new(access.pfn.raw() & !(pages - 1));
            if Rmp::first_assigned(segs, head, pages).is_some() {
                return Err(RmpFault::NestedPageFault {
                    error_code: access.error_code(),
                    check: RmpCheck::HypervisorOwned,
                });
            }
            return Ok(RmpAccess::Plain);
        }
        let lo = seg.read_lo(access.pfn);
        return Ok(if lo & LO_ASSIGNED != 0 {
            RmpAccess::Ciphertext
        } else {
            RmpAccess::Plain
        });
    }
    let npf = |check| RmpFault::NestedPageFault {
        error_code: access.error_code(),
        check,
    };
    let Some(seg) = seg else {
        return Err(npf(RmpCheck::Covered));
    };
    // VMPL0 needs only the first word; VMPL1-3 read both words consistently.
    let (lo, hi) = if guest.vmpl == Vmpl::Vmpl0 {
        (seg.read_lo(access.pfn), 0)
    } else {
        seg.read(access.pfn)
    };
    let asid = (lo >> LO_ASID_SHIFT) & 0x3ff;
    if lo & LO_ASSIGNED == 0 || asid != guest.asid.0 as u64 || asid == 0 {
        return Err(npf(RmpCheck::GuestOwned));
    }
    if (lo >> LO_GFN_SHIFT) & LO_GFN_MASK != access.gfn.raw() {
        return Err(npf(RmpCheck::ReverseMap));
    }
    if lo & LO_IMMUTABLE != 0 {
        return Err(npf(RmpCheck::Mutable));
    }
    if (lo & LO_SIZE_2M != 0) != (access.npt_level != PageLevel::Size4K) {
        return Err(npf(RmpCheck::PageSize));
    }
    if lo & LO_VALIDATED == 0 {
        return Err(RmpFault::PageNotValidated);
    }
    if guest.vmpl != Vmpl::Vmpl0 {
        let perms = VmplPerms(((hi >> (4 * (guest.vmpl as u32 - 1))) & 0xf) as u8);
        let need = match access.kind {
            RmpAccessKind::Read | RmpAccessKind::PageWalk => VmplPerms::READ,
            RmpAccessKind::Write => VmplPerms::WRITE,
            RmpAccessKind::Fetch if access.user => VmplPerms::EXEC_USER,
            RmpAccessKind::Fetch => VmplPerms::EXEC_SUPERVISOR,
        };
        // Write without read is an illegal mask: data accesses fault
        // (APM §15.36.7).
        let illegal = perms.contains(VmplPerms::WRITE)
            && !perms.contains(VmplPerms::READ)
            && access.kind != RmpAccessKind::Fetch;
        if illegal || !perms.contains(need) {
            return Err(RmpFault::NestedPageFault {
                error_code: access.error_code() | pferr::VMPL,
                check: RmpCheck::Vmpl,
            });
        }
    }
    Ok(RmpAccess::Plain)
}

#[cfg(test)]
mod tests;
