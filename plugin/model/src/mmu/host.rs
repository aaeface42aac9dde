//! Host and device accesses to guest memory: what the plugin asks before
//! a device model or the plugin itself touches a guest page. The VM's
//! private-memory backend adds its hardware check (SNP: the RMP).

use crate::addr::{BackingAddr, Gfn, Gpa, Pfn};
use crate::private::PrivateMem;
use crate::rmp::DeviceAccess;
use crate::vm::Vm;

impl Vm {
    /// The backing frame of `gpa`'s gfn, if a memslot maps it.
    pub(crate) fn backing_pfn(&self, gpa: Gpa) -> Option<(Gfn, Pfn)> {
        let gfn = self.alias.decode(gpa)?.gfn;
        let slots = self.memslots.load();
        let slot = slots.find(gfn)?;
        Some((gfn, slot.pfn_of(gfn)))
    }

    /// The check of a device (DMA) access to the 4K page of `gpa` (alias bits
    /// ignored: devices see guest-physical memory). Private memory is not
    /// reachable from devices (docs/architecture.md, "Devices never reach private memory"): a frame that is private by its
    /// attributes, or (SNP) whose backing is assigned in the RMP, reads as
    /// all ones ([`DeviceAccess::Encrypted`]) and drops writes
    /// ([`DeviceAccess::Blocked`]). Everything else, including GPAs no
    /// memslot maps, is [`DeviceAccess::Allowed`].
    pub fn device_access(&self, gpa: Gpa, write: bool) -> DeviceAccess {
        let Some((gfn, pfn)) = self.backing_pfn(gpa) else {
            return DeviceAccess::Allowed;
        };
        let refused = if write {
            DeviceAccess::Blocked
        } else {
            DeviceAccess::Encrypted
        };
        if self.config.vm_type.has_private_mem() && self.is_private(gfn) {
            return refused;
        }
        // The hardware's own check (SNP: the RMP).
        self.private.device_access(pfn, write)
    }

    /// [`Vm::device_access`] for a device that addresses the memory behind
    /// the memslots rather than a GPA: QEMU's DMA API works on QEMU's own
    /// view of guest RAM, as a device model behind KVM works on the
    /// userspace mapping (hva). Every frame a memslot backs with `addr`'s
    /// page is checked, so a slot whose memory the guest sees at other GPAs
    /// (moved, or aliased by a second slot) is judged by those GPAs; the
    /// first refusal wins. A page no memslot backs is allowed.
    pub fn device_access_backing(&self, addr: BackingAddr, write: bool) -> DeviceAccess {
        let pfn = addr.pfn().raw();
        let slots = self.memslots.load();
        for s in slots.iter() {
            let off = pfn.wrapping_sub(s.backing.pfn().raw());
            if off >= s.npages {
                continue;
            }
            let gfn = Gfn::new(s.base_gfn.raw() + off);
            let access = self.device_access(gfn.gpa(), write);
            if access != DeviceAccess::Allowed {
                return access;
            }
        }
        DeviceAccess::Allowed
    }

    /// Whether the host (the plugin clearing a page, a device model writing
    /// guest RAM) may write the 4K page of `gpa`: SNP refuses writes to a
    /// page assigned in the RMP (APM Table 15-39: a host write to an
    /// assigned page is a #PF with the RMP bit). Other types, and GPAs no
    /// memslot maps, are always writable by the host.
    pub fn host_write_allowed(&self, gpa: Gpa) -> bool {
        match self.backing_pfn(gpa) {
            Some((_, pfn)) => self.private.host_write_allowed(pfn),
            None => true,
        }
    }
}
