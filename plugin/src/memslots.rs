//! What QEMU's memory listener reports: the RAM sections a VMM would give KVM
//! as memslots (`KVM_SET_USER_MEMORY_REGION`). [`crate::kvm::Kvm::memslot`]
//! turns them into the model's memslots.
//!
//! QEMU deletes a section before it adds its replacement, so a moved PCI BAR
//! is a deletion and a creation, exactly the sequence after which KVM zaps.

use cvmem_model::BackingAddr;

/// One RAM section of the guest-physical address space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RamSection {
    /// First address, page aligned: a QEMU address (QEMU's `hwaddr` in the
    /// system address space, `offset_within_address_space`). The memslot
    /// QEMU's report makes has its guest-physical address and its backing
    /// here, so the slot's GPA is this address taken as a GPA
    /// ([`crate::kvm::Kvm::memslot`]).
    pub addr: BackingAddr,
    /// Size in bytes, a page multiple.
    pub size: u64,
    /// Guest writes are MMIO writes (ROM, ROM device in ROMD mode).
    pub readonly: bool,
    /// QEMU's memory-region name.
    pub name: String,
}

impl RamSection {
    /// One past the last address (saturating at the top of the space).
    pub fn end(&self) -> BackingAddr {
        BackingAddr::new(self.addr.raw().saturating_add(self.size))
    }
}

/// What QEMU did to a section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemslotOp {
    /// The section appeared.
    Add,
    /// The section disappeared.
    Del,
}
