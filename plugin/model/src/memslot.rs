//! Memslots as KVM has them (virt/kvm/kvm_main.c, `__kvm_set_memory_region()`;
//! Documentation/virt/kvm/api.rst, KVM_SET_USER_MEMORY_REGION2).
//!
//! A memslot maps a half-open gfn range to backing memory. QEMU's memory
//! listener reports RAM sections; the plugin turns each into a
//! [`MemoryRegion`] request, exactly as QEMU's KVM accelerator would. The set
//! of slots is immutable once built ([`MemslotSet`]): a change builds a new set
//! with a bumped generation, and the VM publishes it as a snapshot, as KVM
//! swaps `kvm->memslots` under SRCU.

use std::fmt;

use crate::addr::{BackingAddr, Gfn, GfnRange, Gpa, PageLevel, Pfn, PAGE_SHIFT, PAGE_SIZE};
use crate::config::{AliasLayout, VmType};

/// A memslot id (the low 16 bits of KVM's `slot` field; cvmem models one
/// address space, so the address-space id bits are always 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemslotId(pub u16);

/// Userspace memslots per address space on x86 (`KVM_USER_MEM_SLOTS`:
/// `KVM_MEM_SLOTS_NUM` 32767 minus `KVM_INTERNAL_MEM_SLOTS` 3).
pub const KVM_USER_MEM_SLOTS: u16 = 32764;

/// The largest slot in pages (`KVM_MEM_MAX_NR_PAGES` on x86: 2^31 - 1).
pub const KVM_MEM_MAX_NR_PAGES: u64 = (1 << 31) - 1;

/// Memslot flags, with KVM's uapi values (include/uapi/linux/kvm.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MemslotFlags(u32);

impl MemslotFlags {
    /// No flag.
    pub const NONE: MemslotFlags = MemslotFlags(0);
    /// `KVM_MEM_LOG_DIRTY_PAGES`: accepted and recorded; dirty logging itself
    /// is not modelled.
    pub const LOG_DIRTY_PAGES: MemslotFlags = MemslotFlags(1 << 0);
    /// `KVM_MEM_READONLY`: guest writes exit to the VMM as MMIO writes.
    pub const READONLY: MemslotFlags = MemslotFlags(1 << 1);
    /// `KVM_MEM_GUEST_MEMFD`: the slot can back private memory (cvmem calls
    /// this "private-capable").
    pub const GUEST_MEMFD: MemslotFlags = MemslotFlags(1 << 2);

    const ALL: u32 = 0b111;

    /// The flags from KVM's raw bits.
    pub const fn from_bits(bits: u32) -> MemslotFlags {
        MemslotFlags(bits)
    }

    /// KVM's raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether every flag of `other` is set in `self`.
    pub const fn contains(self, other: MemslotFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// `self | other`.
    pub const fn union(self, other: MemslotFlags) -> MemslotFlags {
        MemslotFlags(self.0 | other.0)
    }
}

impl std::ops::BitOr for MemslotFlags {
    type Output = MemslotFlags;

    fn bitor(self, rhs: MemslotFlags) -> MemslotFlags {
        self.union(rhs)
    }
}

/// A memslot request, as `struct kvm_userspace_memory_region2`: a size of 0
/// deletes the slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemoryRegion {
    /// The slot id.
    pub slot: MemslotId,
    /// Flags.
    pub flags: MemslotFlags,
    /// First guest-physical address (alias bits clear).
    pub guest_phys_addr: Gpa,
    /// Size in bytes; 0 deletes the slot.
    pub memory_size: u64,
    /// The backing address of the first byte (KVM's `userspace_addr`).
    pub backing: BackingAddr,
}

/// One memslot (KVM's `struct kvm_memory_slot`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Memslot {
    /// The slot id.
    pub id: MemslotId,
    /// First frame.
    pub base_gfn: Gfn,
    /// Number of frames.
    pub npages: u64,
    /// Backing address of `base_gfn`.
    pub backing: BackingAddr,
    /// Flags.
    pub flags: MemslotFlags,
    /// KVM_MEMSLOT_INVALID: the slot is being deleted or moved; faults on it
    /// are retried until the change is done (`kvm_invalidate_memslot()`).
    pub invalid: bool,
}

impl Memslot {
    /// The frames the slot covers.
    pub fn range(&self) -> GfnRange {
        // Validated at creation: base + npages does not overflow.
        GfnRange::from_start_len(self.base_gfn, self.npages).unwrap_or_default()
    }

    /// Whether guest writes are refused (`KVM_MEM_READONLY`).
    pub fn readonly(&self) -> bool {
        self.flags.contains(MemslotFlags::READONLY)
    }

    /// Whether the slot can back private memory (`kvm_slot_can_be_private()`).
    pub fn private_capable(&self) -> bool {
        self.flags.contains(MemslotFlags::GUEST_MEMFD)
    }

    /// The backing frame of `gfn`, which must lie in the slot
    /// (`__gfn_to_hva_memslot()`).
    pub fn pfn_of(&self, gfn: Gfn) -> Pfn {
        let off = gfn.raw().wrapping_sub(self.base_gfn.raw());
        Pfn::new(self.backing.pfn().raw().wrapping_add(off))
    }

    /// The backing address of `gfn`, which must lie in the slot.
    pub fn backing_of(&self, gfn: Gfn) -> BackingAddr {
        self.pfn_of(gfn).addr()
    }

    /// Whether a `level` page at `gfn` may be mapped huge as far as the slot
    /// is concerned: the whole page lies in the slot, and the gfn and backing
    /// address are equally aligned inside it. These are the conditions under
    /// which `kvm_alloc_memslot_metadata()` leaves `disallow_lpage` clear
    /// (arch/x86/kvm/x86.c).
    pub fn allows_huge(&self, gfn: Gfn, level: PageLevel) -> bool {
        let page = GfnRange::page_containing(gfn, level);
        let misaligned = (self.base_gfn.raw() ^ self.backing.pfn().raw()) & (level.pages() - 1);
        self.range().contains_range(page) && misaligned == 0
    }
}

/// What a memslot request does (KVM's `enum kvm_mr_change`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemslotChange {
    /// KVM_MR_CREATE.
    Create,
    /// KVM_MR_DELETE.
    Delete,
    /// KVM_MR_MOVE.
    Move,
    /// KVM_MR_FLAGS_ONLY.
    FlagsOnly,
    /// Not a KVM change: audit mode learned more of the RAM a slot stands
    /// for, and the slot grew over it, absorbing the slots it reached
    /// ([`crate::Vm::grow_memslot`]). Nothing is zapped.
    Grow,
}

/// A refused memslot request. Each variant is one of KVM's checks in
/// `__kvm_set_memory_region()` / `check_memory_region_flags()` /
/// `kvm_arch_prepare_memory_region()`; [`MemslotError::errno`] gives the errno
/// KVM returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemslotError {
    /// Unknown flag, or a flag the VM type does not allow (READONLY on a VM
    /// with protected state, GUEST_MEMFD without private memory). EINVAL.
    InvalidFlags(MemslotFlags),
    /// Slot id at or above `KVM_USER_MEM_SLOTS`. EINVAL.
    BadSlotId(MemslotId),
    /// Size, guest address or backing address not page aligned. EINVAL.
    Unaligned,
    /// More than `KVM_MEM_MAX_NR_PAGES`, or the range wraps. EINVAL.
    TooLarge,
    /// The range reaches beyond the guest's address width or into the alias
    /// bit. EINVAL.
    BeyondMaxGfn,
    /// Delete or modify of a slot that does not exist. EINVAL.
    NoSuchSlot(MemslotId),
    /// A modify that changes the backing address, the size or READONLY. EINVAL.
    ImmutableChange(MemslotId),
    /// A modify of a guest_memfd slot: private slots can only be deleted.
    /// EINVAL.
    PrivateSlotImmutable(MemslotId),
    /// The slot being created has a backing that overlaps a guest_memfd
    /// slot's (or, a guest_memfd slot, any slot's). A guest_memfd range can
    /// be bound to one memslot only (`kvm_gmem_bind()`: EEXIST); here the
    /// backing stands for the guest_memfd offset (and for SNP, the RMP
    /// covers each backing once), and a shared slot over it would reach
    /// private memory, which shares the backing (cvmem's rule, also EEXIST).
    GmemBound(MemslotId),
    /// Create or move onto frames another slot covers. EEXIST.
    Overlap {
        /// The slot asked for.
        slot: MemslotId,
        /// The slot already there.
        existing: MemslotId,
    },
    /// The host could not allocate the model state the slot needs (for
    /// SNP, its RMP entries; KVM fails such allocations with ENOMEM).
    OutOfMemory,
}

impl MemslotError {
    /// KVM's errno name for the error.
    pub const fn errno(&self) -> &'static str {
        match self {
            MemslotError::Overlap { .. } | MemslotError::GmemBound(_) => "EEXIST",
            MemslotError::OutOfMemory => "ENOMEM",
            _ => "EINVAL",
        }
    }
}

impl fmt::Display for MemslotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.errno();
        match self {
            MemslotError::InvalidFlags(fl) => write!(f, "{e}: invalid flags {:#x}", fl.bits()),
            MemslotError::BadSlotId(id) => write!(f, "{e}: slot id {} out of range", id.0),
            MemslotError::Unaligned => write!(f, "{e}: size or address not page aligned"),
            MemslotError::TooLarge => write!(f, "{e}: slot too large or wraps"),
            MemslotError::BeyondMaxGfn => write!(f, "{e}: slot beyond the guest address width"),
            MemslotError::NoSuchSlot(id) => write!(f, "{e}: no slot {}", id.0),
            MemslotError::ImmutableChange(id) => {
                write!(f, "{e}: slot {} may only change base or flags", id.0)
            }
            MemslotError::PrivateSlotImmutable(id) => {
                write!(f, "{e}: private slot {} may only be deleted", id.0)
            }
            MemslotError::GmemBound(id) => {
                write!(
                    f,
                    "{e}: slot {}'s backing overlaps a guest_memfd slot's (or, guest_memfd, \
                     another slot's)",
                    id.0
                )
            }
            MemslotError::Overlap { slot, existing } => {
                write!(f, "{e}: slot {} overlaps slot {}", slot.0, existing.0)
            }
            MemslotError::OutOfMemory => {
                write!(f, "{e}: the host cannot allocate the slot's model state")
            }
        }
    }
}

impl std::error::Error for MemslotError {}

/// A validated request: what changes, and the slot before and after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemslotUpdate {
    /// The kind of change.
    pub change: MemslotChange,
    /// The slot before (None for Create).
    pub old: Option<Memslot>,
    /// The slot after (None for Delete).
    pub new: Option<Memslot>,
}

/// An immutable set of memslots, sorted by base gfn, with a generation
/// (`struct kvm_memslots`).
#[derive(Clone, Debug, Default)]
pub struct MemslotSet {
    generation: u64,
    slots: Vec<Memslot>,
}

impl MemslotSet {
    /// The empty set at generation 0.
    pub fn new() -> MemslotSet {
        MemslotSet::default()
    }

    /// Bumped by every change (`kvm_swap_active_memslots()`).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Every slot, sorted by base gfn.
    pub fn iter(&self) -> impl Iterator<Item = &Memslot> {
        self.slots.iter()
    }

    /// The number of slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there is no slot.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The slot covering `gfn` (`search_memslots()`: binary search over the
    /// slots sorted by base gfn).
    pub fn find(&self, gfn: Gfn) -> Option<&Memslot> {
        let i = self.slots.partition_point(|s| s.base_gfn <= gfn);
        let s = self.slots.get(i.checked_sub(1)?)?;
        s.range().contains(gfn).then_some(s)
    }

    /// The slot with `id`.
    pub fn by_id(&self, id: MemslotId) -> Option<&Memslot> {
        self.slots.iter().find(|s| s.id == id)
    }

    /// The slots intersecting `range`, sorted
    /// (`kvm_for_each_memslot_in_gfn_range()`).
    pub fn in_range(&self, range: GfnRange) -> impl Iterator<Item = &Memslot> {
        let first = self
            .slots
            .partition_point(|s| s.range().end() <= range.start());
        self.slots[first..]
            .iter()
            .take_while(move |s| s.base_gfn < range.end())
            .filter(move |s| s.range().overlaps(range))
    }

    /// Validates `req` against this set for a VM of `vm_type` whose GPAs are
    /// laid out as `alias`, following `__kvm_set_memory_region()`.
    pub fn check(
        &self,
        req: &MemoryRegion,
        vm_type: VmType,
        alias: AliasLayout,
    ) -> Result<MemslotUpdate, MemslotError> {
        // check_memory_region_flags(): only known flags; READONLY needs
        // kvm_arch_has_readonly_mem(); GUEST_MEMFD needs private memory and
        // excludes dirty logging.
        let fl = req.flags;
        let mut valid = MemslotFlags::LOG_DIRTY_PAGES.bits();
        if vm_type.allows_readonly_memslots() {
            valid |= MemslotFlags::READONLY.bits();
        }
        if vm_type.has_private_mem() {
            valid |= MemslotFlags::GUEST_MEMFD.bits();
            if fl.contains(MemslotFlags::GUEST_MEMFD) {
                valid &= !MemslotFlags::LOG_DIRTY_PAGES.bits();
            }
        }
        if fl.bits() & !MemslotFlags::ALL != 0 || fl.bits() & !valid != 0 {
            return Err(MemslotError::InvalidFlags(fl));
        }
        if req.slot.0 >= KVM_USER_MEM_SLOTS {
            return Err(MemslotError::BadSlotId(req.slot));
        }
        if req.memory_size % PAGE_SIZE != 0
            || !req.guest_phys_addr.is_page_aligned()
            || !req.backing.is_page_aligned()
        {
            return Err(MemslotError::Unaligned);
        }
        if req
            .guest_phys_addr
            .raw()
            .checked_add(req.memory_size)
            .is_none()
            || req.backing.raw().checked_add(req.memory_size).is_none()
        {
            return Err(MemslotError::TooLarge);
        }
        let npages = req.memory_size >> PAGE_SHIFT;
        if npages > KVM_MEM_MAX_NR_PAGES {
            return Err(MemslotError::TooLarge);
        }
        let old = self.by_id(req.slot).copied();
        if npages == 0 {
            // KVM_MR_DELETE of a slot that does not exist is -EINVAL.
            return match old {
                Some(old) => Ok(MemslotUpdate {
                    change: MemslotChange::Delete,
                    old: Some(old),
                    new: None,
                }),
                None => Err(MemslotError::NoSuchSlot(req.slot)),
            };
        }
        let base_gfn = req.guest_phys_addr.gfn();
        let new = Memslot {
            id: req.slot,
            base_gfn,
            npages,
            backing: req.backing,
            flags: fl,
            invalid: false,
        };
        // kvm_arch_prepare_memory_region(): the slot must be below the
        // largest gfn the TDP can map, and (TDX) must not include the shared
        // bit.
        if new.range().end() > alias.max_gfn() {
            return Err(MemslotError::BeyondMaxGfn);
        }
        let change = match old {
            None => MemslotChange::Create,
            Some(old) => {
                // "Private memslots are immutable, they can only be deleted":
                // KVM tests the request's flags; the model also refuses
                // dropping GUEST_MEMFD from an existing private slot.
                if new.private_capable() || old.private_capable() {
                    return Err(MemslotError::PrivateSlotImmutable(req.slot));
                }
                if old.backing != new.backing
                    || old.npages != new.npages
                    || old.readonly() != new.readonly()
                {
                    return Err(MemslotError::ImmutableChange(req.slot));
                }
                if old.base_gfn != new.base_gfn {
                    MemslotChange::Move
                } else if old.flags != new.flags {
                    MemslotChange::FlagsOnly
                } else {
                    // Nothing to change: KVM returns 0 without doing anything.
                    return Ok(MemslotUpdate {
                        change: MemslotChange::FlagsOnly,
                        old: Some(old),
                        new: Some(old),
                    });
                }
            }
        };
        if matches!(change, MemslotChange::Create | MemslotChange::Move) {
            // kvm_check_memslot_overlap(): EEXIST.
            if let Some(existing) = self.in_range(new.range()).find(|s| s.id != req.slot) {
                return Err(MemslotError::Overlap {
                    slot: req.slot,
                    existing: existing.id,
                });
            }
        }
        if change == MemslotChange::Create {
            // kvm_gmem_bind(): a guest_memfd range is bound to one memslot
            // only (EEXIST); the backing stands for the guest_memfd offset.
            // And no other slot may map a guest_memfd slot's backing: in
            // KVM a shared slot maps the VMM's memory, never the
            // guest_memfd's, but here both aliases of a frame share one
            // backing page, so a slot aliasing it would reach private
            // memory through the shared alias (found by the `control`
            // fuzz target; docs/fuzzing.md).
            let (start, end) = (new.backing.raw(), new.backing.raw() + req.memory_size);
            if self.slots.iter().any(|s| {
                let b = s.backing.raw();
                (new.private_capable() || s.private_capable())
                    && b < end
                    && start < b + s.npages * PAGE_SIZE
            }) {
                return Err(MemslotError::GmemBound(req.slot));
            }
        }
        Ok(MemslotUpdate {
            change,
            old,
            new: Some(new),
        })
    }

    /// Validates growing slot `id` to cover `range`, for
    /// [`crate::Vm::grow_memslot`] (audit mode's RAM discovery, not a KVM
    /// request): `range` contains the slot and keeps within the size limit
    /// and the address width; every frame the slot had keeps its backing;
    /// every other slot `range` reaches lies inside it, is valid, has the
    /// same flags and the backing the grown slot gives its frames (it is
    /// absorbed); and a guest_memfd slot's new backing is bound to no slot
    /// but those. Returns the grown slot and the slots it absorbs.
    pub fn check_grow(
        &self,
        id: MemslotId,
        range: GfnRange,
        alias: AliasLayout,
    ) -> Result<(Memslot, Vec<Memslot>), MemslotError> {
        let old = *self.by_id(id).ok_or(MemslotError::NoSuchSlot(id))?;
        if old.invalid || !range.contains_range(old.range()) {
            return Err(MemslotError::ImmutableChange(id));
        }
        if range.len() > KVM_MEM_MAX_NR_PAGES {
            return Err(MemslotError::TooLarge);
        }
        if range.end() > alias.max_gfn() {
            return Err(MemslotError::BeyondMaxGfn);
        }
        // The frames below the old base get the backing frames below its
        // backing, which must exist, and so must those above.
        let below = old.base_gfn.raw() - range.start().raw();
        let first = old
            .backing
            .pfn()
            .raw()
            .checked_sub(below)
            .ok_or(MemslotError::TooLarge)?;
        if first
            .checked_add(range.len())
            .is_none_or(|end| end > u64::MAX >> PAGE_SHIFT)
        {
            return Err(MemslotError::TooLarge);
        }
        let new = Memslot {
            base_gfn: range.start(),
            npages: range.len(),
            backing: Pfn::new(first).addr(),
            ..old
        };
        let mut absorbed = Vec::new();
        for s in self.in_range(range).filter(|s| s.id != id) {
            let fits = range.contains_range(s.range())
                && !s.invalid
                && s.flags == old.flags
                && s.backing.is_page_aligned()
                && new.pfn_of(s.base_gfn) == s.backing.pfn();
            if !fits {
                return Err(MemslotError::Overlap {
                    slot: id,
                    existing: s.id,
                });
            }
            absorbed.push(*s);
        }
        if new.private_capable() {
            let (start, end) = (
                new.backing.raw(),
                new.backing.raw() + range.len() * PAGE_SIZE,
            );
            if self.slots.iter().any(|s| {
                let b = s.backing.raw();
                s.id != id
                    && !absorbed.iter().any(|a| a.id == s.id)
                    && s.private_capable()
                    && b < end
                    && start < b + s.npages * PAGE_SIZE
            }) {
                return Err(MemslotError::GmemBound(id));
            }
        }
        Ok((new, absorbed))
    }

    /// A new set, one generation on, with `grown` in place of the slot of
    /// its id and without `absorbed` (as [`MemslotSet::check_grow`] gave
    /// them).
    pub fn with_grown(&self, grown: Memslot, absorbed: &[Memslot]) -> MemslotSet {
        let mut slots: Vec<Memslot> = self
            .slots
            .iter()
            .filter(|s| s.id != grown.id && !absorbed.iter().any(|a| a.id == s.id))
            .copied()
            .collect();
        let i = slots.partition_point(|s| s.base_gfn < grown.base_gfn);
        slots.insert(i, grown);
        MemslotSet {
            generation: self.generation + 1,
            slots,
        }
    }

    /// A new set, one generation on, with `old` removed (if any) and `new`
    /// inserted (if any). `old` is matched by id.
    pub fn with(&self, old: Option<MemslotId>, new: Option<Memslot>) -> MemslotSet {
        let mut slots: Vec<Memslot> = self
            .slots
            .iter()
            .filter(|s| Some(s.id) != old)
            .copied()
            .collect();
        if let Some(n) = new {
            let i = slots.partition_point(|s| s.base_gfn < n.base_gfn);
            slots.insert(i, n);
        }
        MemslotSet {
            generation: self.generation + 1,
            slots,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::VmConfig;

    fn region(id: u16, gpa: u64, size: u64, backing: u64, flags: MemslotFlags) -> MemoryRegion {
        MemoryRegion {
            slot: MemslotId(id),
            flags,
            guest_phys_addr: Gpa::new(gpa),
            memory_size: size,
            backing: BackingAddr::new(backing),
        }
    }

    fn apply(set: &MemslotSet, vm: VmType, r: MemoryRegion) -> Result<MemslotSet, MemslotError> {
        let alias = AliasLayout::new(&VmConfig::new(vm));
        let u = set.check(&r, vm, alias)?;
        Ok(set.with(u.old.map(|s| s.id), u.new))
    }

    #[test]
    fn create_find_delete() {
        let s = MemslotSet::new();
        let s = apply(
            &s,
            VmType::Default,
            region(0, 0, 1 << 20, 0x10_0000, MemslotFlags::NONE),
        )
        .unwrap();
        let s = apply(
            &s,
            VmType::Default,
            region(1, 2 << 20, 1 << 20, 0x90_0000, MemslotFlags::NONE),
        )
        .unwrap();
        assert_eq!(s.generation(), 2);
        assert_eq!(s.find(Gfn::new(0)).unwrap().id, MemslotId(0));
        assert_eq!(s.find(Gfn::new(255)).unwrap().id, MemslotId(0));
        assert!(s.find(Gfn::new(256)).is_none());
        let s1 = s.find(Gfn::new(0x201)).unwrap();
        assert_eq!(s1.backing_of(Gfn::new(0x201)), BackingAddr::new(0x90_1000));
        let s = apply(&s, VmType::Default, region(0, 0, 0, 0, MemslotFlags::NONE)).unwrap();
        assert!(s.find(Gfn::new(0)).is_none());
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn kvm_validation_errors() {
        let s = apply(
            &MemslotSet::new(),
            VmType::Default,
            region(0, 0, 1 << 20, 0, MemslotFlags::NONE),
        )
        .unwrap();
        let e = |r| apply(&s, VmType::Default, r).unwrap_err();
        assert_eq!(
            e(region(1, 0x8_0000, 1 << 20, 0, MemslotFlags::NONE)).errno(),
            "EEXIST"
        );
        assert_eq!(
            e(region(1, 0x800, 4096, 0, MemslotFlags::NONE)),
            MemslotError::Unaligned
        );
        assert_eq!(
            e(region(1, 1 << 30, 100, 0, MemslotFlags::NONE)),
            MemslotError::Unaligned
        );
        assert_eq!(
            e(region(7, 0, 0, 0, MemslotFlags::NONE)),
            MemslotError::NoSuchSlot(MemslotId(7))
        );
        assert_eq!(
            e(region(40000, 1 << 30, 4096, 0, MemslotFlags::NONE)),
            MemslotError::BadSlotId(MemslotId(40000))
        );
        assert_eq!(
            e(region(0, 0, 2 << 20, 0, MemslotFlags::NONE)),
            MemslotError::ImmutableChange(MemslotId(0))
        );
        assert_eq!(
            e(region(0, 0, 1 << 20, 0, MemslotFlags::READONLY)),
            MemslotError::ImmutableChange(MemslotId(0))
        );
        assert!(matches!(
            e(region(1, 1 << 30, 4096, 0, MemslotFlags::GUEST_MEMFD)),
            MemslotError::InvalidFlags(_)
        ));
        assert_eq!(
            e(region(1, 1 << 48, 4096, 0, MemslotFlags::NONE)),
            MemslotError::BeyondMaxGfn
        );
        assert_eq!(
            e(region(
                1,
                1 << 40,
                (KVM_MEM_MAX_NR_PAGES + 1) << 12,
                0,
                MemslotFlags::NONE
            )),
            MemslotError::TooLarge
        );
        // Flags-only change and a move are accepted.
        let u = s
            .check(
                &region(0, 0, 1 << 20, 0, MemslotFlags::LOG_DIRTY_PAGES),
                VmType::Default,
                AliasLayout::new(&VmConfig::new(VmType::Default)),
            )
            .unwrap();
        assert_eq!(u.change, MemslotChange::FlagsOnly);
        let u = s
            .check(
                &region(0, 1 << 30, 1 << 20, 0, MemslotFlags::NONE),
                VmType::Default,
                AliasLayout::new(&VmConfig::new(VmType::Default)),
            )
            .unwrap();
        assert_eq!(u.change, MemslotChange::Move);
    }

    #[test]
    fn vm_type_flag_rules() {
        let s = MemslotSet::new();
        // Protected-state VMs refuse read-only slots.
        for t in [VmType::Tdx, VmType::Snp] {
            assert!(matches!(
                apply(&s, t, region(0, 0, 4096, 0, MemslotFlags::READONLY)),
                Err(MemslotError::InvalidFlags(_))
            ));
        }
        assert!(apply(
            &s,
            VmType::SwProtected,
            region(0, 0, 4096, 0, MemslotFlags::READONLY)
        )
        .is_ok());
        // guest_memfd excludes dirty logging and makes the slot delete-only.
        let p = MemslotFlags::GUEST_MEMFD;
        assert!(matches!(
            apply(
                &s,
                VmType::Tdx,
                region(0, 0, 4096, 0, p | MemslotFlags::LOG_DIRTY_PAGES)
            ),
            Err(MemslotError::InvalidFlags(_))
        ));
        let s = apply(&s, VmType::Tdx, region(0, 0, 4096, 0, p)).unwrap();
        assert_eq!(
            apply(&s, VmType::Tdx, region(0, 1 << 20, 4096, 0, p)).unwrap_err(),
            MemslotError::PrivateSlotImmutable(MemslotId(0))
        );
        assert!(apply(&s, VmType::Tdx, region(0, 0, 0, 0, p)).is_ok());
        // TDX slots stay below the shared bit.
        assert_eq!(
            apply(&s, VmType::Tdx, region(1, 1 << 47, 4096, 0, p)).unwrap_err(),
            MemslotError::BeyondMaxGfn
        );
    }

    #[test]
    fn in_range_and_huge_alignment() {
        let s = apply(
            &MemslotSet::new(),
            VmType::Default,
            region(0, 0x20_0000, 0x40_0000, 0x4000_0000, MemslotFlags::NONE),
        )
        .unwrap();
        let s = apply(
            &s,
            VmType::Default,
            region(1, 0x80_0000, 0x1000, 0, MemslotFlags::NONE),
        )
        .unwrap();
        let r = GfnRange::new(Gfn::new(0), Gfn::new(0x801)).unwrap();
        assert_eq!(s.in_range(r).count(), 2);
        let r = GfnRange::new(Gfn::new(0x600), Gfn::new(0x800)).unwrap();
        assert_eq!(s.in_range(r).count(), 0);
        let slot = s.find(Gfn::new(0x200)).unwrap();
        assert!(slot.allows_huge(Gfn::new(0x3ff), PageLevel::Size2M));
        assert!(!slot.allows_huge(Gfn::new(0x200), PageLevel::Size1G));
        let skew = Memslot {
            backing: BackingAddr::new(0x4000_1000),
            ..*slot
        };
        assert!(!skew.allows_huge(Gfn::new(0x200), PageLevel::Size2M));
    }
}
