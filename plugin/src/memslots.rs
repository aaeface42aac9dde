//! What QEMU's memory listener reports: the RAM sections a VMM would give KVM
//! as memslots (`KVM_SET_USER_MEMORY_REGION`). [`crate::kvm::Kvm::memslot`]
//! turns them into the model's memslots.
//!
//! QEMU deletes a section before it adds its replacement, so a moved PCI BAR
//! is a deletion and a creation, exactly the sequence after which KVM zaps.

/// One RAM section of the guest-physical address space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RamSection {
    /// First guest-physical address, page aligned.
    pub gpa: u64,
    /// Size in bytes, a page multiple.
    pub size: u64,
    /// Guest writes are MMIO writes (ROM, ROM device in ROMD mode).
    pub readonly: bool,
    /// QEMU's memory-region name.
    pub name: String,
}

impl RamSection {
    /// One past the last address.
    pub fn end(&self) -> u64 {
        self.gpa.saturating_add(self.size)
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
