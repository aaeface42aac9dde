//! The bit encoding of a TDP entry (arch/x86/kvm/mmu/spte.h).
//!
//! An SPTE is a `u64`. Like EPT, bits 0-2 are read/write/execute and bit 7
//! marks a huge leaf; like KVM's `SPTE_MMU_PRESENT_MASK`, bit 11 marks a
//! present entry so that a zero SPTE (`SHADOW_NONPRESENT_VALUE`) is non-present
//! regardless of permissions. Bits 12 and up hold the backing pfn of a leaf or
//! the table index of a non-leaf (the model's page tables live in an arena, so
//! a non-leaf names a table rather than a host physical address).

use crate::addr::{PageLevel, Pfn};
use crate::types::Perms;

/// Readable.
pub const SPTE_READ: u64 = 1 << 0;
/// Writable.
pub const SPTE_WRITE: u64 = 1 << 1;
/// Executable.
pub const SPTE_EXEC: u64 = 1 << 2;
/// Huge leaf (EPT bit 7, `PT_PAGE_SIZE_MASK`).
pub const SPTE_LARGE: u64 = 1 << 7;
/// Present (`SPTE_MMU_PRESENT_MASK`, bit 11).
pub const SPTE_PRESENT: u64 = 1 << 11;
/// The payload shift: pfn or table index.
pub const SPTE_PAYLOAD_SHIFT: u32 = 12;
/// The pfn bits of a leaf (51:12, KVM's `SPTE_BASE_ADDR_MASK`).
pub const SPTE_BASE_ADDR_MASK: u64 = ((1 << 52) - 1) & !((1 << 12) - 1);
/// Software-available bit 52: the guest may use this leaf. Set on every leaf
/// except a TDX mirror leaf whose Secure-EPT entry is not MAPPED (PENDING
/// after TDH.MEM.PAGE.AUG, or BLOCKED). The authoritative state is the
/// [`crate::sept::Sept`]; this copy lets the lockless lookup decide with the
/// SPTE load it already does (one AND on a register), instead of a second
/// load from a per-GFN array. It is set only under `mmu_lock` (fault install,
/// ACCEPT) and cleared only in write-locked sections, so a lookup that sees it
/// set and passes the seqlock check saw a MAPPED page.
pub const SPTE_GUEST_ACCESSIBLE: u64 = 1 << 52;

/// The non-present SPTE.
pub const SHADOW_NONPRESENT_VALUE: u64 = 0;

/// A leaf SPTE for `pfn` at `level` (`make_spte()`).
pub const fn make_leaf(pfn: Pfn, level: PageLevel, perms: Perms) -> u64 {
    let mut spte = SPTE_PRESENT | (pfn.raw() << SPTE_PAYLOAD_SHIFT);
    if perms.read {
        spte |= SPTE_READ;
    }
    if perms.write {
        spte |= SPTE_WRITE;
    }
    if perms.exec {
        spte |= SPTE_EXEC;
    }
    if !matches!(level, PageLevel::Size4K) {
        spte |= SPTE_LARGE;
    }
    spte
}

/// A non-leaf SPTE pointing at table `table` (`make_nonleaf_spte()`).
pub const fn make_nonleaf(table: u32) -> u64 {
    SPTE_PRESENT | SPTE_READ | SPTE_WRITE | SPTE_EXEC | ((table as u64) << SPTE_PAYLOAD_SHIFT)
}

/// `is_shadow_present_pte()`.
pub const fn is_present(spte: u64) -> bool {
    spte & SPTE_PRESENT != 0
}

/// `is_last_spte()`: a leaf at `level` (the walker's level, 1 = 4K).
pub const fn is_leaf(spte: u64, level: u8) -> bool {
    level == 1 || spte & SPTE_LARGE != 0
}

/// The backing pfn of a leaf (`spte_to_pfn()`).
pub const fn pfn(spte: u64) -> Pfn {
    Pfn::new((spte & SPTE_BASE_ADDR_MASK) >> SPTE_PAYLOAD_SHIFT)
}

/// Whether the guest may use the leaf ([`SPTE_GUEST_ACCESSIBLE`]).
#[inline(always)]
pub const fn is_guest_accessible(spte: u64) -> bool {
    spte & SPTE_GUEST_ACCESSIBLE != 0
}

/// The table index of a non-leaf.
pub const fn table(spte: u64) -> u32 {
    (spte >> SPTE_PAYLOAD_SHIFT) as u32
}

/// The permissions of a leaf.
pub const fn perms(spte: u64) -> Perms {
    Perms {
        read: spte & SPTE_READ != 0,
        write: spte & SPTE_WRITE != 0,
        exec: spte & SPTE_EXEC != 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_round_trip() {
        let s = make_leaf(Pfn::new(0x12345), PageLevel::Size2M, Perms::RX);
        assert!(is_present(s));
        assert!(is_leaf(s, 2));
        assert_eq!(pfn(s), Pfn::new(0x12345));
        assert_eq!(perms(s), Perms::RX);
        assert!(!is_guest_accessible(s));
        let a = s | SPTE_GUEST_ACCESSIBLE;
        assert!(is_guest_accessible(a));
        assert_eq!(pfn(a), Pfn::new(0x12345));
        let s4 = make_leaf(Pfn::new(1), PageLevel::Size4K, Perms::RWX);
        assert!(!is_leaf(s4, 2));
        assert!(is_leaf(s4, 1));
    }

    #[test]
    fn nonleaf_and_nonpresent() {
        let n = make_nonleaf(77);
        assert!(is_present(n));
        assert!(!is_leaf(n, 3));
        assert_eq!(table(n), 77);
        assert!(!is_present(SHADOW_NONPRESENT_VALUE));
    }
}
