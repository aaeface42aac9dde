//! The model's vocabulary: the words every other module speaks (vCPUs,
//! accesses and permissions, roots, translations, stage-2 faults, flush
//! requests, zap reasons, the guest physical address width).
//!
//! This module depends on nothing in the crate but [`crate::addr`], so any
//! module may use it without creating an import cycle. A type belongs here
//! when two or more concepts (the TDP, the TLB model, events, a private-memory
//! backend, the MMU) name it; a type only one concept uses stays with it.

use crate::addr::{BackingAddr, Gfn, GfnRange, Gpa, Gva, PageLevel, Pfn};

/// A vCPU index (QEMU's `cpu_index`, KVM's `vcpu_idx`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VcpuId(pub u32);

/// The kind of a guest access (KVM's `PFERR_WRITE_MASK` / `PFERR_FETCH_MASK`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// A data read.
    Read,
    /// A data write.
    Write,
    /// An instruction fetch.
    Fetch,
}

/// Permissions of a leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Perms {
    /// Guest reads allowed.
    pub read: bool,
    /// Guest writes allowed.
    pub write: bool,
    /// Guest instruction fetches allowed.
    pub exec: bool,
}

impl Perms {
    /// Read, write and execute.
    pub const RWX: Perms = Perms {
        read: true,
        write: true,
        exec: true,
    };
    /// Read and execute (a read-only memslot).
    pub const RX: Perms = Perms {
        read: true,
        write: false,
        exec: true,
    };

    /// Whether these permissions allow `access`.
    pub const fn allow(self, access: Access) -> bool {
        match access {
            Access::Read => self.read,
            Access::Write => self.write,
            Access::Fetch => self.exec,
        }
    }
}

/// An identifier for a TDP root, never reused while the VM lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RootId(pub u32);

/// Which kind of root (KVM's `enum kvm_tdp_mmu_root_types`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RootRole {
    /// A direct root (`KVM_DIRECT_ROOTS`): shared memory of private-memory VMs
    /// and all memory of default VMs. Replaced by a fast zap.
    Direct,
    /// The mirror root (`KVM_MIRROR_ROOTS`): private memory. For TDX it mirrors
    /// the Secure-EPT (`is_mirror_sp()`); cvmem uses the same kind of root for
    /// the private pages of sw-protected and SNP VMs. Never replaced while the
    /// VM lives.
    Mirror,
}

impl RootRole {
    /// Both roles.
    pub const ALL: [RootRole; 2] = [RootRole::Direct, RootRole::Mirror];

    pub(crate) const fn index(self) -> usize {
        match self {
            RootRole::Direct => 0,
            RootRole::Mirror => 1,
        }
    }
}

/// A translation the model allows: what the plugin puts in QEMU's softTLB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Translation {
    /// The 4K frame accessed, alias bits stripped.
    pub gfn: Gfn,
    /// The backing address of that 4K frame.
    pub backing: BackingAddr,
    /// The size of the leaf that maps it.
    pub level: PageLevel,
    /// What the leaf allows.
    pub perms: Perms,
    /// Whether it maps private memory (mirror root).
    pub private: bool,
    /// The root the leaf lives in.
    pub root: RootId,
}

impl Translation {
    /// The frames the leaf covers.
    pub fn page(&self) -> GfnRange {
        GfnRange::page_containing(self.gfn, self.level)
    }

    /// The backing address of the leaf's first frame.
    pub fn page_backing(&self) -> BackingAddr {
        let off = self.gfn.raw() & (self.level.pages() - 1);
        Pfn::new(self.backing.pfn().raw().wrapping_sub(off)).addr()
    }
}

/// Why the model refuses a stage-2 access: the exit KVM would take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage2Fault {
    /// No memslot: emulated MMIO (`KVM_EXIT_MMIO`; `kvm_handle_noslot_fault()`).
    Mmio {
        /// The faulting GPA.
        gpa: Gpa,
    },
    /// The access's private/shared alias disagrees with the gfn's attributes,
    /// or a private access hit a slot that cannot be private
    /// (`KVM_EXIT_MEMORY_FAULT`, `kvm_mmu_prepare_memory_fault_exit()`): the
    /// VMM converts the page (implicit conversion) or kills the guest.
    MemoryFault {
        /// The faulting GPA.
        gpa: Gpa,
        /// The frame, alias stripped.
        gfn: Gfn,
        /// Whether the access was private (`KVM_MEMORY_EXIT_FLAG_PRIVATE`).
        private: bool,
    },
    /// A write to a read-only memslot: KVM emulates it as an MMIO write
    /// (`KVM_PFN_ERR_RO_FAULT` -> `RET_PF_EMULATE`).
    ReadOnlyWrite {
        /// The faulting GPA.
        gpa: Gpa,
    },
    /// The GPA has bits set beyond the guest's address width.
    ReservedGpa {
        /// The faulting GPA.
        gpa: Gpa,
    },
    /// TDX: a private access to a PENDING page (AUGed, not yet accepted) with
    /// `SEPT_VE_DISABLE` clear: the TDX module injects a #VE (EPT violation,
    /// exit reason 48) into the guest with this VE info; nothing exits to
    /// the host. The plugin raises #VE; the guest reads the info with
    /// TDG.VP.VEINFO.GET.
    VirtualizationException {
        /// The faulting GPA.
        gpa: Gpa,
        /// What TDG.VP.VEINFO.GET returns.
        ve: VeInfo,
    },
    /// TDX: the Secure-EPT entry is BLOCKED (TDH.MEM.RANGE.BLOCK, a zap in
    /// progress): EPT-violation exit to the host, which retries the fault
    /// (`RET_PF_RETRY`) once the zap is done. The plugin re-executes the access.
    SeptBlocked {
        /// The faulting GPA.
        gpa: Gpa,
    },
    /// TDX: a private access to a PENDING page with `SEPT_VE_DISABLE` set
    /// exits to the host, and KVM kills the VM ("Guest access before
    /// accepting", `tdx_is_sept_violation_unexpected_pending()` then
    /// `kvm_vm_dead()` in `tdx_handle_ept_violation()`; newer KVM reports a
    /// memory-fault exit with size 0 instead, which also ends the VM).
    /// Every later fault also ends here. The plugin stops the guest.
    VmDead {
        /// The GPA of the access that killed it.
        gpa: Gpa,
    },
    /// SNP: a private access (C-bit set in the GPA, and every instruction
    /// fetch and page-table read, whose effective C-bit is 1) to a page the
    /// guest has not validated: `#VC` with error code
    /// `SVM_EXIT_PAGE_NOT_VALIDATED` (0x404, APM §15.36.10). Raised in the
    /// guest; nothing exits to the host. The plugin raises #VC with that
    /// error code (CR2 is not written: a #VC reports the GPA through the
    /// GHCB, not CR2); the guest PVALIDATEs the page or panics.
    PageNotValidated {
        /// The faulting GPA.
        gpa: Gpa,
    },
    /// SNP: an RMP check failed with `#VMEXIT(NPF)` and KVM cannot resolve
    /// it: `sev_handle_rmp_fault()` finds nothing to PSMASH (the page is
    /// owned by someone else or recorded at another GPA, a VMPL permission is
    /// missing, or a C-bit-clear write hit an assigned page). On hardware the
    /// vCPU re-enters and faults again forever. `error_code` is EXITINFO1
    /// ([`crate::rmp::pferr`]: bit 31 RMP, bit 34 ENC, bit 36 VMPL, ...).
    /// The plugin shows it to the guest as a #PF carrying that error code's
    /// low 32 bits (the RMP bit 31 included) and CR2 = the faulting linear
    /// address, rather than loop forever as the hardware would.
    RmpNestedPageFault {
        /// The faulting GPA.
        gpa: Gpa,
        /// The #NPF error code (EXITINFO1).
        error_code: u64,
    },
    /// SNP: an RMP #NPF that KVM resolved (`sev_handle_rmp_fault()`): the 2M
    /// RMP entry was PSMASHed and the 2M gfn range zapped
    /// (`kvm_zap_gfn_range()`). The model already did its bookkeeping of the
    /// flush; the plugin performs `flush` (if any) and re-executes the access.
    RmpSmashed {
        /// The faulting GPA.
        gpa: Gpa,
        /// What to flush in QEMU before re-executing.
        flush: Option<FlushRequest>,
    },
    /// SNP: a C-bit-clear read of a page assigned to a guest. Allowed, but it
    /// returns ciphertext (APM Table 15-39: the read is not checked). cvmem
    /// keeps one backing page for both aliases and cannot produce the
    /// ciphertext, so the plugin stops the VM (the VM stop names it) rather
    /// than let the plaintext through.
    RmpCiphertextRead {
        /// The GPA read.
        gpa: Gpa,
    },
    /// SNP: `sev_gmem_prepare()` failed (RMPUPDATE refused): `KVM_RUN`
    /// fails with a memory-fault exit. The plugin stops the guest.
    GmemPrepareFailed {
        /// The faulting GPA.
        gpa: Gpa,
        /// The RMPUPDATE error.
        error: RmpupdateError,
    },
    /// The page-table arena is exhausted.
    OutOfTables,
    /// The VM was torn down.
    Dead,
}

/// The #VE information the TDX module stores for an EPT-violation #VE
/// (TDG.VP.VEINFO.GET: RCX exit reason, RDX exit qualification, R8 GLA, R9 GPA).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VeInfo {
    /// `EXIT_REASON_EPT_VIOLATION` (48).
    pub exit_reason: u32,
    /// The EPT-violation exit qualification (Intel SDM Table 28-7): bit 0
    /// data read, bit 1 data write, bit 2 instruction fetch; bits 5:3 (the
    /// entry's permissions) are 0 for a PENDING page. The model leaves bits
    /// 7 and 8 clear; the plugin sets bit 7 (GLA valid), and bit 8 for the
    /// final address rather than a page-table read, when paging is on.
    pub exit_qualification: u64,
    /// The guest linear address: 0 from the model; the plugin fills it in
    /// from the request when paging is on (bit 7 of the qualification).
    pub gla: Gva,
    /// The faulting GPA.
    pub gpa: Gpa,
}

impl VeInfo {
    /// `EXIT_REASON_EPT_VIOLATION`.
    pub const EXIT_REASON_EPT_VIOLATION: u32 = 48;

    /// The VE info of an `access` to `gpa` that met a PENDING page.
    pub const fn pending_access(gpa: Gpa, access: Access) -> VeInfo {
        let q = match access {
            Access::Read => 1 << 0,
            Access::Write => 1 << 1,
            Access::Fetch => 1 << 2,
        };
        VeInfo {
            exit_reason: Self::EXIT_REASON_EPT_VIOLATION,
            exit_qualification: q,
            gla: Gva::new(0),
            gpa,
        }
    }
}

/// The answer to a stage-2 access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage2 {
    /// Allowed: install this translation.
    Mapped(Translation),
    /// Refused.
    Fault(Stage2Fault),
}

/// Which vCPUs a flush targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlushTarget {
    /// One vCPU (`kvm_make_request()` on that vCPU).
    Vcpu(VcpuId),
    /// Every vCPU (`kvm_make_all_cpus_request()`).
    AllVcpus,
}

/// What a flush removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FlushKind {
    /// `KVM_REQ_TLB_FLUSH_CURRENT`.
    CurrentRoot,
    /// `KVM_REQ_TLB_FLUSH`.
    AllRoots,
}

/// A flush the plugin must perform in QEMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlushRequest {
    /// Which vCPUs.
    pub target: FlushTarget,
    /// What to drop.
    pub kind: FlushKind,
    /// The only frames whose translations changed, when the change is that
    /// narrow (`kvm_flush_remote_tlbs_range()`); `None` is every frame. A
    /// vCPU that caches no translation of these frames need not flush.
    pub gfns: Option<GfnRange>,
}

impl FlushRequest {
    /// `kvm_flush_remote_tlbs()`: every root of every vCPU.
    pub const REMOTE_ALL: FlushRequest = FlushRequest {
        target: FlushTarget::AllVcpus,
        kind: FlushKind::AllRoots,
        gfns: None,
    };

    /// `kvm_flush_remote_tlbs_range()`: every root of every vCPU, for the
    /// translations of `gfns`.
    pub const fn remote_range(gfns: GfnRange) -> FlushRequest {
        FlushRequest {
            gfns: Some(gfns),
            ..FlushRequest::REMOTE_ALL
        }
    }

    /// Whether this request covers `vcpu`.
    pub fn covers(&self, vcpu: VcpuId) -> bool {
        match self.target {
            FlushTarget::AllVcpus => true,
            FlushTarget::Vcpu(v) => v == vcpu,
        }
    }

    /// One request covering both: the wider target and kind, and the
    /// frames from the lowest to the highest of both (every frame if either
    /// has no range).
    pub fn merge(self, other: FlushRequest) -> FlushRequest {
        let target = match (self.target, other.target) {
            (FlushTarget::Vcpu(a), FlushTarget::Vcpu(b)) if a == b => FlushTarget::Vcpu(a),
            _ => FlushTarget::AllVcpus,
        };
        let gfns = match (self.gfns, other.gfns) {
            (Some(a), Some(b)) => GfnRange::new(a.start().min(b.start()), a.end().max(b.end())),
            _ => None,
        };
        FlushRequest {
            target,
            kind: self.kind.max(other.kind),
            gfns,
        }
    }
}

/// Why leaves were zapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ZapReason {
    /// Memslot move/delete, slot leaves only (`kvm_mmu_zap_memslot_leafs()`).
    MemslotLeafs,
    /// Fast zap of every direct root (`kvm_mmu_zap_all_fast()`), from a
    /// memslot change under `KVM_X86_QUIRK_SLOT_ZAP_ALL` or asked for directly.
    ZapAllFast,
    /// The pre phase of a memory-attribute change.
    Conversion,
    /// An explicit gfn-range zap (`kvm_zap_gfn_range()`).
    Range,
    /// VM teardown (`kvm_mmu_zap_all()`, then the mirror root).
    Teardown,
}

/// The guest physical address width of a TD (TDX `GPAW`, TD_PARAMS.CONFIG_FLAGS
/// bit 0). The shared bit is bit `GPAW - 1` (arch/x86/coco/tdx/tdx.c,
/// `cc_mkdec()`), and KVM's `kvm_gfn_direct_bits()` is that bit for a TD.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Gpaw {
    /// 48-bit guest physical addresses (4-level EPT); shared bit 47.
    #[default]
    Bits48,
    /// 52-bit guest physical addresses (5-level EPT); shared bit 51.
    Bits52,
}

impl Gpaw {
    /// The width in bits.
    pub const fn bits(self) -> u32 {
        match self {
            Gpaw::Bits48 => 48,
            Gpaw::Bits52 => 52,
        }
    }

    /// The number of TDP levels that cover this width (4 or 5, as EPT).
    pub const fn tdp_root_level(self) -> u8 {
        match self {
            Gpaw::Bits48 => 4,
            Gpaw::Bits52 => 5,
        }
    }
}

/// A failed RMPUPDATE; the discriminant is the EAX value (APM vol. 3;
/// Linux `RMPUPDATE_FAIL_OVERLAP` = 4 in arch/x86/include/asm/sev.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RmpupdateError {
    /// `FAIL_INPUT` (1): the page is not covered, a 2M page is not 2M aligned
    /// (frame or GPA) or not wholly covered, or an unassigned state carries
    /// an ASID, GPA or immutable bit.
    FailInput = 1,
    /// `FAIL_PERMISSION` (2): the entry is immutable.
    FailPermission = 2,
    /// `FAIL_OVERLAP` (4): a 4K update inside an assigned 2M page, or a 2M
    /// update over assigned 4K pages.
    FailOverlap = 4,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perms_allow() {
        assert!(Perms::RX.allow(Access::Fetch));
        assert!(!Perms::RX.allow(Access::Write));
    }
}
