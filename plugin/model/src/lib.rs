//! cvmem-model: everything in cvmem that decides.
//!
//! The model is pure Rust with no QEMU and no unsafe code, so that it can be
//! tested, fuzzed and benchmarked without an emulator. The plugin (the cdylib
//! in `plugin/src`) turns guest events into calls on this crate and obeys its
//! answers.
//!
//! At its heart is a KVM-style TDP MMU ([`Vm`]): memslots, memory attributes,
//! a direct root for shared memory and a mirror root for private memory, a
//! fault path that maps on first access, zaps with KVM's policies, the
//! `mmu_invalidate_seq` protocol, and a TLB model. It follows
//! arch/x86/kvm/mmu/ and virt/kvm/kvm_main.c; comments name the KVM function
//! each rule comes from.
//!
//! # Modules
//!
//! - [`addr`]: one newtype per address space ([`Gpa`], [`Gfn`],
//!   [`BackingAddr`], [`Pfn`]), half-open [`GfnRange`], typed [`PageLevel`].
//! - [`types`]: the vocabulary every other module speaks: [`VcpuId`],
//!   [`Access`], [`Perms`], [`RootId`], [`RootRole`], [`Translation`],
//!   [`Stage2`], [`Stage2Fault`], [`FlushRequest`], [`ZapReason`], [`Gpaw`].
//!   It depends on [`addr`] only.
//! - [`config`]: [`VmType`], [`VmConfig`], the private/shared alias of a GPA
//!   ([`AliasLayout`]: TDX shared bit at GPAW-1, SNP C-bit).
//! - [`memslot`]: memslots and KVM's validation with KVM's errno names.
//! - [`attrs`]: memory attributes (private ranges) and huge-page mixed
//!   tracking.
//! - [`sept`]: the TDX Secure EPT: per-GFN states ([`SeptState`]), the host
//!   SEAMCALLs (ADD, AUG, BLOCK, TRACK, REMOVE, PROMOTE, DEMOTE) with the
//!   TDX module's status codes ([`TdxStatus`]), TDG.MEM.PAGE.ACCEPT
//!   ([`AcceptOutcome`]), TD ATTRIBUTES and TDG.VP.INFO.
//! - [`spte`]: the SPTE encoding.
//! - [`tdp`]: page tables (the arena), the walker, map and zap.
//! - [`vm`]: the [`Vm`]'s state and constructor; `vcpu`: per-vCPU state.
//! - [`mmu`]: what the MMU does to the [`Vm`], one file per concept:
//!   lookup, fault, zap, memslots, attributes, the TLB model, host/device
//!   accesses. It names no VM type: private memory goes through
//!   `private`, the backends behind KVM's `kvm_x86_ops` private hooks
//!   (software-protected, TDX Secure EPT, SNP RMP).
//! - `tdx` and `snp`: the operations only a TD or an SNP guest has
//!   ([`Vm::tdx_accept`], [`Vm::tdx_page_add`], [`Vm::snp_stage2`],
//!   [`Vm::snp_pvalidate`], [`Vm::snp_rmpadjust`], ...).
//! - [`rmp`]: the SEV-SNP Reverse Map Table ([`Rmp`]): RMPUPDATE, PSMASH,
//!   PVALIDATE, RMPADJUST and the RMP access checks. An SNP [`Vm`] owns one
//!   and drives it as KVM does (arch/x86/kvm/svm/sev.c): a guest_memfd
//!   memslot's backing is covered at create and freed at delete,
//!   `sev_gmem_prepare()` on private faults, `sev_gmem_invalidate()` on
//!   conversion to shared, `sev_handle_rmp_fault()` (PSMASH + zap) on RMP
//!   #NPFs. Zaps never touch it.
//! - [`tlb`]: flush tokens ([`Flush`]) and the TLB model.
//! - [`event`]: typed [`Event`]s and [`Stats`].
//!
//! # Using it from the plugin
//!
//! ```
//! use cvmem_model::*;
//!
//! // (a) Create the VM from the command line's configuration.
//! let vm = Vm::new(VmConfig { max_vcpus: 2, ..VmConfig::new(VmType::Tdx) }).unwrap();
//!
//! // (b) QEMU's memory listener reports RAM: one memslot per section.
//! let flush = vm
//!     .set_memory_region(MemoryRegion {
//!         slot: MemslotId(0),
//!         flags: MemslotFlags::GUEST_MEMFD,
//!         guest_phys_addr: Gpa::new(0),
//!         memory_size: 64 << 20,
//!         backing: BackingAddr::new(0x7f00_0000_0000),
//!     })
//!     .unwrap();
//! assert!(vm.flush(flush).is_none()); // creating a slot unmaps nothing
//!
//! // (d) The guest's memory starts private (e.g. KVM_SET_MEMORY_ATTRIBUTES
//! // issued by the VMM at boot, later MapGPA / page-state changes).
//! let all = GfnRange::from_start_len(Gfn::new(0), (64 << 20) >> 12).unwrap();
//! let flush = vm.set_memory_attributes(all, true).unwrap();
//! vm.flush(flush);
//!
//! // (c) At each softTLB fill, on any vCPU thread, without a global lock:
//! let vcpu = VcpuId(1);
//! match vm.stage2(vcpu, Gpa::new(0x1234), Access::Write) {
//!     Stage2::Mapped(t) => {
//!         assert!(t.private && t.perms.write);
//!         assert_eq!(t.backing, BackingAddr::new(0x7f00_0000_1000));
//!     }
//!     Stage2::Fault(f) => unreachable!("{f:?}"),
//! }
//! // The shared alias of a private page is a memory-fault exit: the guest
//! // asked for an implicit conversion.
//! let shared = vm.alias().encode(Gfn::new(1), Alias::Shared);
//! assert!(matches!(
//!     vm.stage2(vcpu, shared, Access::Read),
//!     Stage2::Fault(Stage2Fault::MemoryFault { private: false, .. })
//! ));
//!
//! // (d) Conversion to shared: the private alias is zapped; (e) the token
//! // says which softTLBs to flush.
//! let flush = vm.set_memory_attributes(GfnRange::one(Gfn::new(1)), false).unwrap();
//! assert_eq!(vm.flush(flush), Some(FlushRequest::REMOTE_ALL));
//! // TDX: the page left the Secure EPT (BLOCK, TRACK, REMOVE); content gone.
//! assert_eq!(vm.tdx_sept_state(Gfn::new(1)).0, SeptState::Free);
//!
//! // (g) TDX: the initial image was added before finalize (faults until now
//! // did TDH.MEM.PAGE.ADD: MAPPED). After KVM_TDX_FINALIZE_VM, private
//! // memory arrives PENDING (TDH.MEM.PAGE.AUG) and the guest must accept it.
//! assert!(vm.tdx_finalize().is_success());
//! vm.flush(vm.set_memory_attributes(GfnRange::one(Gfn::new(1)), true).unwrap());
//! let gpa = Gpa::new(0x1000);
//! assert!(matches!(
//!     vm.stage2(vcpu, gpa, Access::Read),
//!     Stage2::Fault(Stage2Fault::VirtualizationException { .. }) // #VE
//! ));
//! // The guest's TDG.MEM.PAGE.ACCEPT(gpa | 4K level):
//! match vm.tdx_accept(vcpu, gpa.raw()) {
//!     AcceptOutcome::Accepted { range } => assert_eq!(range, GfnRange::one(Gfn::new(1))),
//!     other => unreachable!("{other:?}"),
//! }
//! assert!(matches!(vm.stage2(vcpu, gpa, Access::Read), Stage2::Mapped(_)));
//!
//! // (f) Statistics (and, with `event_capacity > 0`, typed events).
//! assert_eq!(vm.stats().maps[0], 2); // gfn 1 mapped twice (ADD, then AUG)
//! ```
//!
//! Every operation that invalidates translations returns a `#[must_use]`
//! [`Flush`]; pass it to [`Vm::flush`], which updates the TLB model and
//! returns the [`FlushRequest`] to carry out in QEMU (a softTLB flush of one
//! vCPU or of all of them), or drop it with [`Flush::ignore`].
//!
//! # Concurrency
//!
//! [`Vm::lookup`] (and the hit path of [`Vm::stage2`]) reads only atomics and
//! takes no lock; faults take `mmu_lock` for read; host operations (memslot
//! changes, conversions, zaps) are exclusive and move `mmu_invalidate_seq`, so
//! a fault computed across one is retried, never installed. See [`mmu`].
//!
//! # Exits
//!
//! | [`Stage2Fault`]   | KVM                                              | plugin does              |
//! |-------------------|--------------------------------------------------|--------------------------|
//! | `Mmio`            | no memslot, `KVM_EXIT_MMIO`                      | emulate the access       |
//! | `MemoryFault`     | alias/attribute mismatch, `KVM_EXIT_MEMORY_FAULT`| implicit conversion      |
//! | `ReadOnlyWrite`   | write to `KVM_MEM_READONLY`, emulated as MMIO    | emulate the write        |
//! | `ReservedGpa`     | GPA bits above the address width                 | guest fault              |
//! | `VirtualizationException` | TDX: access to a PENDING page, the TDX module injects #VE | raise #VE with the VE info |
//! | `SeptBlocked`     | TDX: Secure-EPT entry BLOCKED, EPT-violation exit, KVM retries | re-execute the access |
//! | `VmDead`          | TDX: PENDING access with `SEPT_VE_DISABLE`, `kvm_vm_dead()` | stop the guest |
//! | `PageNotValidated` | SNP: private access to an unvalidated page, `#VC(0x404)` (no exit) | raise #VC |
//! | `RmpNestedPageFault` | SNP: RMP `#VMEXIT(NPF)` `sev_handle_rmp_fault()` cannot fix (re-faults forever on hardware) | report; stop the guest |
//! | `RmpSmashed`      | SNP: RMP #NPF fixed by PSMASH + `kvm_zap_gfn_range()` | perform `flush`, re-execute |
//! | `RmpCiphertextRead` | SNP: C-bit-clear read of an assigned page (allowed, ciphertext) | emulate: all ones |
//! | `GmemPrepareFailed` | SNP: `sev_gmem_prepare()` failed, `KVM_RUN` fails | stop the guest |
//!
//! SNP: call [`Vm::snp_stage2`] (not [`Vm::stage2`], which is KVM's nested
//! walk without the hardware's RMP check) for every softTLB fill, with the
//! C-bit of the guest's stage-1 PTE in the GPA and the vCPU's VMPL/CPL and
//! page-walk flag in [`SnpAccessCtx`]. PVALIDATE goes to
//! [`Vm::snp_pvalidate`] and RMPADJUST to [`Vm::snp_rmpadjust`]
//! ([`SnpInsnOutcome`]: write EAX (and CF), flush, re-execute on `Retry`,
//! raise the fault of `Fault`, #UD on `Unsupported`). Check DMA with
//! [`Vm::device_access`] and host page clearing with
//! [`Vm::host_write_allowed`]; [`Event::RmpUnassigned`] names the frames
//! whose content is gone.
//!
//! TDX accept protocol: the guest's TDG.MEM.PAGE.ACCEPT goes to
//! [`Vm::tdx_accept`]; write [`AcceptOutcome::status`] to RAX (on `Accepted`
//! also zero the range's backing: the TDX module zeroes accepted pages); on
//! [`AcceptOutcome::ExitToHost`] call [`Vm::tdx_handle_accept_exit`] (KVM AUGs
//! the page) and re-execute the TDCALL. Build the initial image with
//! [`Vm::tdx_page_add`] (KVM_TDX_INIT_MEM_REGION) and then call
//! [`Vm::tdx_finalize`] (KVM_TDX_FINALIZE_VM) before the vCPUs run.
//!
//! # Where the model differs from KVM, and why
//!
//! - Private memory of sw-protected and SNP VMs lives in a mirror-role root,
//!   as the issue asks; KVM maps it in the single direct root (only TDX has
//!   mirror roots). Since a gfn is mapped through one alias at a time, the
//!   mappings and zaps are the same.
//! - A fault never replaces a page table by a huge leaf (KVM does, and
//!   flushes); it maps at the next smaller level instead, because the model
//!   frees nothing under `mmu_lock` held for read. Host-side zaps free page
//!   tables they empty (except the TDX mirror's), so huge pages come back
//!   after a conversion once the small leaves are zapped.
//! - Memslot delete/move also moves `mmu_invalidate_seq`, and a fault checks
//!   the memslot generation before installing; KVM relies on SRCU
//!   (`synchronize_srcu()` after publishing the invalid slot) instead.
//! - Roots invalidated by a fast zap are zapped and freed inside the same
//!   exclusive operation.
//! - Huge-page mixed tracking is kept per gfn with the attributes, not per
//!   memslot in `lpage_info`; slot edges and gfn/backing alignment are
//!   checked from the memslot at fault time.
//! - SNP: a guest_memfd lives and dies with its memslot (one backing range
//!   per slot; binding an already bound backing is `EEXIST` as in
//!   `kvm_gmem_bind()`). Deleting the slot frees the guest_memfd: its pages
//!   are unassigned (`sev_gmem_invalidate()`) and the RMP stops covering
//!   the backing; KVM only unbinds and frees when the file is released. A
//!   guest_memfd slot cannot move (`EINVAL`, as KVM), so a move never
//!   touches the RMP.
//! - SNP: conversion to shared invalidates the guest_memfd range at once
//!   (KVM: when the VMM punches the hole, which QEMU does right after the
//!   conversion). Shared and private aliases share one backing page here
//!   (docs/architecture.md, "One backing page per GPA"), so the page must be hypervisor-owned before it is used
//!   shared.
//! - SNP: private memory is mapped at 2M when the attributes and the memslot
//!   allow it (mainline guest_memfd has no huge folios yet, so KVM maps 4K).
//!   Once a 2M RMP page is cut (PSMASH) it stays 4K: KVM never merges RMP
//!   entries, so private mappings of that range stay 4K.
//! - SNP: a device access to a frame that is private by its attributes is
//!   refused even if its page is not assigned yet (on hardware the device
//!   would reach the separate shared page; here both aliases share it).
//! - SNP: a 2M PVALIDATE/RMPADJUST over a 4K nested leaf is
//!   `FAIL_SIZEMISMATCH` before any RMP entry is read.
//! - No memslot may share backing with a guest_memfd slot (`EEXIST`, as
//!   for a second binding of a guest_memfd range). In KVM another slot may
//!   alias the VMM's memory at will, since private memory lives apart in
//!   the guest_memfd; here a frame's shared and private aliases share one
//!   backing page, so an alias slot would reach private memory through the
//!   shared alias.
//! - Dirty logging is not modelled: `KVM_MEM_LOG_DIRTY_PAGES` is accepted and
//!   recorded only. As in KVM, `KVM_MEM_READONLY` and `KVM_MEM_GUEST_MEMFD`
//!   cannot change on an existing slot (`EINVAL`).
#![forbid(unsafe_code)]

/// An internal invariant of the model (a SEAMCALL that cannot fail, an RMP
/// coverage that must exist): checked in debug builds and whenever the
/// `invariants` feature is on, which `scripts/test` turns on for its
/// release-mode test run. The plugin's own release build leaves them out:
/// they sit on the fault and zap paths.
macro_rules! invariant {
    ($($arg:tt)*) => {
        if cfg!(any(debug_assertions, feature = "invariants")) {
            assert!($($arg)*);
        }
    };
}

mod addr;
mod attrs;
mod config;
mod event;
pub mod firmware;
mod memslot;
mod mmu;
mod private;
mod rmp;
mod sept;
mod snp;
pub mod snp_launch;
mod spte;
mod tdp;
mod tdx;
mod tlb;
mod types;
mod vcpu;
mod vm;

pub use addr::{BackingAddr, Gfn, GfnRange, Gpa, Gva, PageLevel, Pfn, PAGE_SHIFT, PAGE_SIZE};
pub use attrs::{MemAttrs, RangeSet};
pub use config::{Alias, AliasLayout, ConfigError, DecodedGpa, VmConfig, VmType};
pub use event::{Event, Stamped, Stats};
pub use memslot::{
    MemoryRegion, Memslot, MemslotChange, MemslotError, MemslotFlags, MemslotId, MemslotSet,
    KVM_USER_MEM_SLOTS,
};
pub use mmu::{AttrError, FaultOutcome, PendingFault, TlbAccess, ZapFilter};
pub use rmp::{
    Asid, CoverError, DeviceAccess, GuestAccess, HostRmpFault, PfnRange, PsmashError,
    PvalidateError, PvalidateOutcome, Rmp, RmpAccess, RmpAccessKind, RmpCheck, RmpEntry, RmpFault,
    RmpFaultFix, RmpInsnTarget, RmpOwner, RmpPageSize, RmpReader, RmpState, RmpadjustAttrs,
    RmpadjustError, SnpGuest, Vmpl, VmplPerms, SVM_EXIT_PAGE_NOT_VALIDATED,
};
pub use sept::{AcceptOutcome, Sept, SeptAccess, SeptState, TdAttributes, TdVpInfo, TdxStatus};
pub use snp::{SnpAccessCtx, SnpInsnOutcome};
pub use tlb::{Flush, ZapRecord};
pub use types::{
    Access, FlushKind, FlushRequest, FlushTarget, Gpaw, Perms, RmpupdateError, RootId, RootRole,
    Stage2, Stage2Fault, Translation, VcpuId, VeInfo, ZapReason,
};
pub use vm::{MappedLeaf, Vm};
