//! Address spaces and page sizes.
//!
//! One newtype per address space, as KVM names them: a guest-physical
//! address ([`Gpa`]), a guest frame number ([`Gfn`]), a guest-virtual
//! address ([`Gva`]), the address of the
//! memory that backs a guest page ([`BackingAddr`], KVM's hva/pfn: for cvmem
//! it is whatever the plugin registers for a memslot, typically QEMU's host
//! pointer or ram_addr) and its frame number ([`Pfn`]). There is no `From<u64>`
//! between them: crossing from one space to another is a named method
//! ([`Gpa::gfn`], [`Gfn::gpa`], [`BackingAddr::pfn`]). Arithmetic is checked
//! and says so in its name.
//!
//! Ranges of frames are half-open, `[start, end)`, as everywhere in KVM's MMU
//! (`struct kvm_gfn_range` in include/linux/kvm_host.h).

use std::fmt;

/// log2 of the base page size (KVM's `PAGE_SHIFT`).
pub const PAGE_SHIFT: u32 = 12;
/// The base page size in bytes.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

macro_rules! address_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(u64);

        impl $name {
            /// Makes a value of this address space from its raw number.
            pub const fn new(raw: u64) -> Self {
                Self(raw)
            }

            /// The raw number.
            pub const fn raw(self) -> u64 {
                self.0
            }

            /// `self + n`, or `None` on overflow.
            pub const fn checked_add(self, n: u64) -> Option<Self> {
                match self.0.checked_add(n) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }

            /// `self - n`, or `None` on underflow.
            pub const fn checked_sub(self, n: u64) -> Option<Self> {
                match self.0.checked_sub(n) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }

            /// The distance `self - base`, or `None` if `base > self`.
            pub const fn offset_from(self, base: Self) -> Option<u64> {
                self.0.checked_sub(base.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:#x})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}

address_newtype!(
    /// A guest-physical address, possibly carrying alias bits (the TDX shared
    /// bit or the SNP C-bit); see [`crate::config::AliasLayout`].
    Gpa
);
address_newtype!(
    /// A guest frame number: a [`Gpa`] without alias bits, shifted by
    /// [`PAGE_SHIFT`]. Memslots, attributes and TDP entries are indexed by gfn.
    Gfn
);
address_newtype!(
    /// The address of the memory backing a guest page (KVM's hva for normal
    /// memslots, the guest_memfd page for private memory). cvmem treats it as
    /// an opaque number that the plugin registered with a memslot.
    BackingAddr
);
address_newtype!(
    /// A guest-virtual (linear) address: what the guest's own page tables
    /// translate to a [`Gpa`] (stage 1), and what CR2 and a #VE's guest
    /// linear address report. The model never translates one; the plugin
    /// walks the guest's tables for instructions that take one.
    Gva
);
address_newtype!(
    /// A backing page frame number (KVM's pfn): [`BackingAddr`] >> [`PAGE_SHIFT`].
    Pfn
);

impl Gpa {
    /// The frame this address lies in. Alias bits are kept: strip them with
    /// [`crate::config::AliasLayout::decode`] first.
    pub const fn gfn(self) -> Gfn {
        Gfn(self.0 >> PAGE_SHIFT)
    }

    /// The byte offset inside the 4K page.
    pub const fn page_offset(self) -> u64 {
        self.0 & (PAGE_SIZE - 1)
    }

    /// Whether the address is 4K aligned.
    pub const fn is_page_aligned(self) -> bool {
        self.page_offset() == 0
    }
}

impl Gfn {
    /// The address of the first byte of the frame, or `None` if it does not
    /// fit in 64 bits.
    pub const fn checked_gpa(self) -> Option<Gpa> {
        if self.0 > (u64::MAX >> PAGE_SHIFT) {
            None
        } else {
            Some(Gpa(self.0 << PAGE_SHIFT))
        }
    }

    /// The address of the first byte of the frame. Gfns built from a [`Gpa`]
    /// always fit; a gfn above 2^52 wraps (use [`Gfn::checked_gpa`] then).
    pub const fn gpa(self) -> Gpa {
        Gpa(self.0.wrapping_shl(PAGE_SHIFT))
    }

    /// Rounds down to the first frame of the `level` page containing `self`.
    pub const fn align_down(self, level: PageLevel) -> Gfn {
        Gfn(self.0 & !(level.pages() - 1))
    }

    /// Whether `self` is the first frame of a `level` page.
    pub const fn is_aligned(self, level: PageLevel) -> bool {
        self.0 & (level.pages() - 1) == 0
    }
}

impl BackingAddr {
    /// The frame this address lies in.
    pub const fn pfn(self) -> Pfn {
        Pfn(self.0 >> PAGE_SHIFT)
    }

    /// Whether the address is 4K aligned.
    pub const fn is_page_aligned(self) -> bool {
        self.0 & (PAGE_SIZE - 1) == 0
    }
}

impl Pfn {
    /// The address of the first byte of the frame (wraps above 2^52 frames,
    /// which no pfn made from a [`BackingAddr`] reaches).
    pub const fn addr(self) -> BackingAddr {
        BackingAddr(self.0.wrapping_shl(PAGE_SHIFT))
    }
}

/// The size of a leaf translation (KVM's `PG_LEVEL_4K`, `PG_LEVEL_2M`,
/// `PG_LEVEL_1G` in arch/x86/include/asm/pgtable_types.h). The discriminant is
/// KVM's level number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PageLevel {
    /// A 4 KiB page.
    Size4K = 1,
    /// A 2 MiB page.
    Size2M = 2,
    /// A 1 GiB page.
    Size1G = 3,
}

impl PageLevel {
    /// Every leaf size, smallest first.
    pub const ALL: [PageLevel; 3] = [PageLevel::Size4K, PageLevel::Size2M, PageLevel::Size1G];
    /// The huge sizes, smallest first (KVM's lpage_info levels).
    pub const HUGE: [PageLevel; 2] = [PageLevel::Size2M, PageLevel::Size1G];

    /// KVM's level number: 1 for 4K, 2 for 2M, 3 for 1G.
    pub const fn number(self) -> u8 {
        self as u8
    }

    /// The level for KVM's level number, if it is a leaf size.
    pub const fn from_number(n: u8) -> Option<PageLevel> {
        match n {
            1 => Some(PageLevel::Size4K),
            2 => Some(PageLevel::Size2M),
            3 => Some(PageLevel::Size1G),
            _ => None,
        }
    }

    /// log2 of the number of 4K frames in a page of this size (KVM's
    /// `KVM_HPAGE_GFN_SHIFT`).
    pub const fn gfn_shift(self) -> u32 {
        (self as u32 - 1) * 9
    }

    /// The number of 4K frames in a page of this size (`KVM_PAGES_PER_HPAGE`).
    pub const fn pages(self) -> u64 {
        1 << self.gfn_shift()
    }

    /// The size in bytes.
    pub const fn size_bytes(self) -> u64 {
        self.pages() << PAGE_SHIFT
    }

    /// The next smaller size, if any.
    pub const fn smaller(self) -> Option<PageLevel> {
        PageLevel::from_number(self as u8 - 1)
    }
}

impl fmt::Display for PageLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PageLevel::Size4K => "4K",
            PageLevel::Size2M => "2M",
            PageLevel::Size1G => "1G",
        })
    }
}

/// A half-open range of frames `[start, end)` (KVM's `struct kvm_gfn_range`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct GfnRange {
    start: Gfn,
    end: Gfn,
}

impl GfnRange {
    /// `[start, end)`, or `None` if `end < start`.
    pub const fn new(start: Gfn, end: Gfn) -> Option<GfnRange> {
        if end.0 < start.0 {
            None
        } else {
            Some(GfnRange { start, end })
        }
    }

    /// `[start, start + npages)`, or `None` on overflow.
    pub const fn from_start_len(start: Gfn, npages: u64) -> Option<GfnRange> {
        match start.0.checked_add(npages) {
            Some(end) => Some(GfnRange {
                start,
                end: Gfn(end),
            }),
            None => None,
        }
    }

    /// The single frame `[gfn, gfn + 1)` (saturating at the top).
    pub const fn one(gfn: Gfn) -> GfnRange {
        GfnRange {
            start: gfn,
            end: Gfn(gfn.0.saturating_add(1)),
        }
    }

    /// The `level` page containing `gfn`.
    pub const fn page_containing(gfn: Gfn, level: PageLevel) -> GfnRange {
        let start = gfn.align_down(level);
        GfnRange {
            start,
            end: Gfn(start.0.saturating_add(level.pages())),
        }
    }

    /// The first frame.
    pub const fn start(self) -> Gfn {
        self.start
    }

    /// One past the last frame.
    pub const fn end(self) -> Gfn {
        self.end
    }

    /// The number of frames.
    pub const fn len(self) -> u64 {
        self.end.0 - self.start.0
    }

    /// Whether the range has no frame.
    pub const fn is_empty(self) -> bool {
        self.end.0 == self.start.0
    }

    /// Whether `gfn` lies in the range.
    pub const fn contains(self, gfn: Gfn) -> bool {
        self.start.0 <= gfn.0 && gfn.0 < self.end.0
    }

    /// Whether `other` lies entirely in the range (an empty `other` always
    /// does).
    pub const fn contains_range(self, other: GfnRange) -> bool {
        other.is_empty() || (self.start.0 <= other.start.0 && other.end.0 <= self.end.0)
    }

    /// Whether the two ranges share a frame.
    pub const fn overlaps(self, other: GfnRange) -> bool {
        self.start.0 < other.end.0 && other.start.0 < self.end.0
    }

    /// The frames in both ranges, or `None` if they share none.
    pub fn intersect(self, other: GfnRange) -> Option<GfnRange> {
        let start = self.start.max(other.start);
        let end = self.end.min(other.end);
        (start < end).then_some(GfnRange { start, end })
    }

    /// Iterates over the frames.
    pub fn iter(self) -> impl Iterator<Item = Gfn> {
        (self.start.0..self.end.0).map(Gfn)
    }
}

impl fmt::Debug for GfnRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x})", self.start.0, self.end.0)
    }
}

impl fmt::Display for GfnRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_cross_only_by_name() {
        let gpa = Gpa::new(0x1234_5678);
        assert_eq!(gpa.gfn(), Gfn::new(0x12345));
        assert_eq!(gpa.page_offset(), 0x678);
        assert_eq!(gpa.gfn().gpa(), Gpa::new(0x1234_5000));
        assert_eq!(
            BackingAddr::new(0x7f00_0000_1000).pfn().addr().raw(),
            0x7f00_0000_1000
        );
        assert_eq!(Gfn::new(u64::MAX).checked_gpa(), None);
    }

    #[test]
    fn checked_arithmetic_reports_overflow() {
        assert_eq!(Gfn::new(u64::MAX).checked_add(1), None);
        assert_eq!(Gfn::new(0).checked_sub(1), None);
        assert_eq!(Gfn::new(5).offset_from(Gfn::new(3)), Some(2));
        assert_eq!(Gfn::new(3).offset_from(Gfn::new(5)), None);
    }

    #[test]
    fn levels_have_kvm_sizes() {
        assert_eq!(PageLevel::Size4K.pages(), 1);
        assert_eq!(PageLevel::Size2M.pages(), 512);
        assert_eq!(PageLevel::Size1G.pages(), 512 * 512);
        assert_eq!(PageLevel::Size2M.size_bytes(), 2 << 20);
        assert_eq!(PageLevel::Size1G.smaller(), Some(PageLevel::Size2M));
        assert_eq!(PageLevel::Size4K.smaller(), None);
        assert_eq!(
            Gfn::new(0x3ff).align_down(PageLevel::Size2M),
            Gfn::new(0x200)
        );
        assert!(Gfn::new(0x40000).is_aligned(PageLevel::Size1G));
    }

    #[test]
    fn ranges_are_half_open() {
        let r = GfnRange::new(Gfn::new(10), Gfn::new(20)).unwrap();
        assert!(r.contains(Gfn::new(10)));
        assert!(!r.contains(Gfn::new(20)));
        assert_eq!(r.len(), 10);
        assert!(GfnRange::new(Gfn::new(2), Gfn::new(1)).is_none());
        let s = GfnRange::from_start_len(Gfn::new(15), 10).unwrap();
        assert_eq!(r.intersect(s), GfnRange::new(Gfn::new(15), Gfn::new(20)));
        assert!(r.overlaps(s));
        let t = GfnRange::from_start_len(Gfn::new(20), 1).unwrap();
        assert!(!r.overlaps(t));
        assert_eq!(r.intersect(t), None);
        assert!(r.contains_range(GfnRange::from_start_len(Gfn::new(12), 3).unwrap()));
        assert_eq!(GfnRange::from_start_len(Gfn::new(u64::MAX), 2), None);
        assert_eq!(r.iter().count(), 10);
    }
}
