//! SEV-SNP: the RMP wired into the VM (arch/x86/kvm/svm/sev.c).
//!
//! KVM's MMU knows nothing of the RMP: it maps private memory from
//! guest_memfd, and the hardware checks every access against the RMP after
//! the nested walk. The model splits the same way. [`Vm::stage2`] is the
//! nested walk (KVM's answer); [`Vm::snp_stage2`] adds the hardware's RMP
//! check and is what the plugin calls for an SNP guest. KVM's RMP changes
//! are exactly these (nothing else touches the RMP, zaps included):
//!
//! | KVM (sev.c)               | model                                               |
//! |---------------------------|-----------------------------------------------------|
//! | `sev_gmem_prepare()`      | [`Vm::fault_begin`], private faults: assign, unvalidated |
//! | `sev_gmem_max_mapping_level()` | [`Vm::fault_begin`]: caps the goal level       |
//! | `sev_gmem_invalidate()`   | conversion to shared, guest_memfd memslot delete, teardown |
//! | `sev_handle_rmp_fault()`  | an RMP #NPF on a private 2M RMP page: PSMASH, zap the 2M range |
//!
//! and the guest's PVALIDATE and RMPADJUST ([`Vm::snp_pvalidate`],
//! [`Vm::snp_rmpadjust`]), which the hardware performs without KVM.

use std::sync::atomic::Ordering;

use crate::addr::{Gfn, GfnRange, Gpa, PageLevel, Pfn};
use crate::config::Alias;
use crate::event::{Counters, Event};
use crate::mmu::ZapFilter;
use crate::private::snp::Snp;
use crate::rmp::{
    GuestAccess, PfnRange, PvalidateError, PvalidateOutcome, RmpAccess, RmpAccessKind, RmpEntry,
    RmpFault, RmpFaultFix, RmpInsnTarget, RmpPageSize, RmpadjustAttrs, RmpadjustError, SnpGuest,
    Vmpl,
};
use crate::tlb::Flush;
use crate::types::{Access, Perms, Stage2, Stage2Fault, Translation, VcpuId};
use crate::types::{RmpupdateError, ZapReason};
use crate::vm::Vm;

/// What the plugin knows about an SNP guest access besides its GPA and kind.
/// The C-bit is the GPA's alias bit (the plugin passes the GPA with the
/// C-bit of the guest's stage-1 PTE, as [`crate::AliasLayout`] decodes it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SnpAccessCtx {
    /// The VMPL the vCPU runs at.
    pub vmpl: Vmpl,
    /// CPL 3 (selects Execute-User, sets the U bit of an error code).
    pub user: bool,
    /// A read of a guest page-table entry during the stage-1 walk (effective
    /// C-bit 1, the RMP's PageWalk row).
    pub page_walk: bool,
}

/// The end of a guest PVALIDATE or RMPADJUST ([`Vm::snp_pvalidate`],
/// [`Vm::snp_rmpadjust`]).
#[must_use = "a completed RMP instruction may carry a flush; a retry needs one"]
#[derive(Debug, PartialEq, Eq)]
pub enum SnpInsnOutcome {
    /// The instruction completed: write `eax` to EAX; PVALIDATE also writes
    /// `cf` to rFLAGS.CF (1: nothing changed, `PVALIDATE_FAIL_NOUPDATE`).
    /// Pass `flush` to [`Vm::flush`]: it is needed when the guest lost
    /// validity or permissions on the page (PVALIDATE rescind, RMPADJUST
    /// revoke), so that no softTLB entry keeps allowing what the RMP now
    /// refuses.
    Completed {
        /// EAX: 0, `FAIL_INPUT` (1), `FAIL_PERMISSION` (2),
        /// `FAIL_SIZEMISMATCH` (6).
        eax: u32,
        /// rFLAGS.CF (PVALIDATE only).
        cf: bool,
        /// The flush to perform.
        flush: Flush,
    },
    /// The instruction took an RMP #NPF that KVM resolved
    /// (`sev_handle_rmp_fault()`: PSMASH of the 2M RMP entry, zap of the 2M
    /// gfn range): pass `flush` to [`Vm::flush`] and re-execute the
    /// instruction. This is what a 4K PVALIDATE of a 2M page does first.
    Retry {
        /// The zap's flush.
        flush: Flush,
    },
    /// The nested walk or the RMP refused: the exit or guest fault of that
    /// [`Stage2Fault`] (e.g. `MemoryFault` for a shared gfn: the VMM converts
    /// it, then the guest re-executes; `PageNotValidated`: #VC 0x404 from
    /// RMPADJUST of an unvalidated page; `RmpNestedPageFault`: unresolvable).
    Fault(Stage2Fault),
    /// Not an SNP guest: the instruction does not exist (#UD).
    Unsupported,
}

impl SnpInsnOutcome {
    fn eax(eax: Option<u32>) -> SnpInsnOutcome {
        SnpInsnOutcome::Completed {
            // Fault variants are handled before; FAIL_INPUT is the safe
            // fallback should a new error lack a code.
            eax: eax.unwrap_or(1),
            cf: false,
            flush: Flush::none(),
        }
    }
}

impl Vm {
    /// Whether an invalidation ran since `seq` was read, or is running.
    #[inline]
    fn invalidated_since(&self, seq: u64) -> bool {
        self.mmu_invalidate_in_progress.load(Ordering::Acquire) != 0
            || self.mmu_invalidate_seq.load(Ordering::Acquire) != seq
    }

    /// The RMP check of one access, through `vcpu`'s reader.
    #[inline(always)]
    fn rmp_check(
        &self,
        snp: &Snp,
        vcpu: VcpuId,
        guest: SnpGuest,
        access: &GuestAccess,
    ) -> Result<RmpAccess, RmpFault> {
        if let Some(v) = self.vcpus.get(vcpu.0 as usize) {
            if let Some(mut r) = v.rmp_reader.try_lock() {
                if let Some(r) = r.as_mut() {
                    return r.check_guest_access(guest, access);
                }
            }
        }
        snp.rmp.check_guest_access(guest, access)
    }

    /// Whether the answer [`Vm::snp_stage2`] gave through `t` holds for
    /// every page of `t`'s 2M-aligned guest range, moved by the offset, while
    /// the stage-2 generation holds: the nested mapping of the range is one
    /// huge leaf or 512 alike 4K leaves ([`Vm::leaf_range_uniform`]) over
    /// one 2M-aligned backing region, whose RMP entries are alike
    /// ([`crate::rmp::Rmp::region_alike`]). The RMP check is per 4K page
    /// (APM §15.36.10); this finds when its 512 outcomes are one.
    pub fn snp_range_alike(&self, t: &Translation) -> bool {
        let Some(snp) = self.private.snp() else {
            return false;
        };
        let pages = PageLevel::Size2M.pages();
        let offset = t.gfn.raw() % pages;
        let head = t.backing.pfn().raw().wrapping_sub(offset);
        // The RMP's answer first: it costs a few loads, the TDP's a table.
        head % pages == 0
            && snp.rmp.region_alike(Pfn::new(head))
            && (t.level != PageLevel::Size4K || self.leaf_range_uniform(t))
    }

    /// The stage-2 answer for an SNP guest's softTLB fill: the nested walk
    /// ([`Vm::lookup`], on a miss the fault path with `sev_gmem_prepare()`),
    /// then the RMP check of APM Table 15-39 on the translation found, hit or
    /// fault-in. For other VM types this is [`Vm::stage2`].
    ///
    /// The access is private when the GPA carries the C-bit, and always for
    /// instruction fetches and page-table reads (their effective C-bit is 1,
    /// APM §15.36.10): those use the private alias whatever the GPA says.
    ///
    /// The translation's permissions are what both the nested leaf and the
    /// RMP allow for the alias it was filled through, so that the softTLB
    /// entry never allows an access the RMP would refuse: a shared
    /// translation never allows fetches (they are private), a fetch through a
    /// C-bit-clear mapping allows fetches only, a page-table read allows
    /// reads only, and at VMPL1-3 each permission is the VMPL mask's.
    ///
    /// Outcomes beyond [`Vm::stage2`]'s: `PageNotValidated` (#VC 0x404),
    /// `RmpNestedPageFault` (an #NPF KVM cannot resolve), `RmpSmashed`
    /// (resolved: flush and re-execute), `RmpCiphertextRead` (emulate a read
    /// of all ones), `GmemPrepareFailed`.
    #[inline]
    pub fn snp_stage2(&self, vcpu: VcpuId, gpa: Gpa, access: Access, ctx: SnpAccessCtx) -> Stage2 {
        let Some(snp) = self.private.snp() else {
            return self.stage2(vcpu, gpa, access);
        };
        let Some(dec) = self.alias.decode(gpa) else {
            return self.stage2(vcpu, gpa, access);
        };
        let c_bit = dec.alias == Alias::Private;
        let private = c_bit || access == Access::Fetch || ctx.page_walk;
        let walk_gpa = if private && !c_bit {
            Gpa::new(gpa.raw() | self.alias.alias_mask())
        } else {
            gpa
        };
        let kind = match access {
            _ if ctx.page_walk => RmpAccessKind::PageWalk,
            Access::Read => RmpAccessKind::Read,
            Access::Write => RmpAccessKind::Write,
            Access::Fetch => RmpAccessKind::Fetch,
        };
        let guest = SnpGuest {
            asid: self.config.asid,
            vmpl: ctx.vmpl,
        };
        // The hot path: a lookup hit whose RMP check passes.
        if let Some(t) = self.lookup(vcpu, walk_gpa, access) {
            let ga = GuestAccess {
                pfn: t.backing.pfn(),
                gfn: t.gfn,
                c_bit: private,
                npt_level: t.level,
                kind,
                user: ctx.user,
            };
            if let Ok(RmpAccess::Plain) = self.rmp_check(snp, vcpu, guest, &ga) {
                return Stage2::Mapped(self.snp_perms(snp, vcpu, guest, t, &ga, c_bit, ctx));
            }
        }
        loop {
            let seq = self.mmu_invalidate_seq.load(Ordering::Acquire);
            let t = match self.stage2(vcpu, walk_gpa, access) {
                Stage2::Mapped(t) => t,
                fault => return fault,
            };
            let ga = GuestAccess {
                pfn: t.backing.pfn(),
                gfn: t.gfn,
                c_bit: private,
                npt_level: t.level,
                kind,
                user: ctx.user,
            };
            match self.rmp_check(snp, vcpu, guest, &ga) {
                Ok(RmpAccess::Plain) => {
                    return Stage2::Mapped(self.snp_perms(snp, vcpu, guest, t, &ga, c_bit, ctx));
                }
                Ok(RmpAccess::Ciphertext) => {
                    return self.snp_exit(vcpu, access, Stage2Fault::RmpCiphertextRead { gpa });
                }
                Err(RmpFault::PageNotValidated) => {
                    return self.snp_exit(vcpu, access, Stage2Fault::PageNotValidated { gpa });
                }
                Err(RmpFault::NestedPageFault { error_code, .. }) => {
                    // A host operation changed the tables and the RMP under
                    // the translation (e.g. a conversion zapped and
                    // invalidated it): walk again, as the re-executed access
                    // would.
                    if self.invalidated_since(seq) {
                        self.retry(vcpu, t.gfn);
                        std::thread::yield_now();
                        continue;
                    }
                    let f = match self.snp_handle_rmp_fault(snp, vcpu, &t, private) {
                        Some(flush) => Stage2Fault::RmpSmashed {
                            gpa,
                            flush: self.flush(flush),
                        },
                        None => Stage2Fault::RmpNestedPageFault { gpa, error_code },
                    };
                    return self.snp_exit(vcpu, access, f);
                }
            }
        }
    }

    fn snp_exit(&self, vcpu: VcpuId, access: Access, fault: Stage2Fault) -> Stage2 {
        let _ = self.exit(vcpu, access, fault);
        Stage2::Fault(fault)
    }

    /// The permissions of an allowed SNP translation (see [`Vm::snp_stage2`]).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn snp_perms(
        &self,
        snp: &Snp,
        vcpu: VcpuId,
        guest: SnpGuest,
        mut t: Translation,
        ga: &GuestAccess,
        c_bit: bool,
        ctx: SnpAccessCtx,
    ) -> Translation {
        let allows = |kind| {
            let a = GuestAccess { kind, ..*ga };
            self.rmp_check(snp, vcpu, guest, &a) == Ok(RmpAccess::Plain)
        };
        let p = t.perms;
        t.perms = if ctx.page_walk {
            Perms {
                read: p.read,
                write: false,
                exec: false,
            }
        } else if !ga.c_bit {
            // Shared: fetches are private; a write must pass the
            // Hypervisor-Owned check over the whole nested leaf.
            Perms {
                read: p.read,
                write: p.write && (ga.kind == RmpAccessKind::Write || allows(RmpAccessKind::Write)),
                exec: false,
            }
        } else if !c_bit {
            // A fetch through a C-bit-clear stage-1 mapping: data accesses
            // through it are shared and must ask again.
            Perms {
                read: false,
                write: false,
                exec: p.exec,
            }
        } else if guest.vmpl == Vmpl::Vmpl0 {
            // VMPL0 has every permission on a validated page.
            p
        } else {
            Perms {
                read: p.read && (ga.kind == RmpAccessKind::Read || allows(RmpAccessKind::Read)),
                write: p.write && (ga.kind == RmpAccessKind::Write || allows(RmpAccessKind::Write)),
                exec: p.exec && (ga.kind == RmpAccessKind::Fetch || allows(RmpAccessKind::Fetch)),
            }
        };
        t
    }

    /// `sev_handle_rmp_fault()` for an RMP #NPF on translation `t`: if the
    /// gfn is private and its page is an assigned 2M RMP page, PSMASH it and
    /// zap the 2M gfn range (`kvm_zap_gfn_range()`), so that the retried
    /// access maps 4K. Returns the zap's flush then; `None` when KVM has
    /// nothing to fix (shared gfn: KVM warns; unassigned page; already 4K:
    /// "likely spurious").
    fn snp_handle_rmp_fault(
        &self,
        snp: &Snp,
        vcpu: VcpuId,
        t: &Translation,
        private: bool,
    ) -> Option<Flush> {
        if !private || !self.is_private(t.gfn) {
            return None;
        }
        if snp.rmp.handle_rmp_fault(t.backing.pfn()) != RmpFaultFix::Smashed {
            return None;
        }
        let range = GfnRange::page_containing(t.gfn, PageLevel::Size2M);
        Counters::inc(&self.counters.rmp_smashes);
        self.events.emit(|| Event::RmpSmashed { vcpu, range });
        Some(self.zap_range_reason(range, ZapFilter::ALL, ZapReason::Range))
    }

    /// The nested translation of an RMP instruction's target: the private
    /// alias of `gfn`, faulted in if not mapped (the hardware's nested walk
    /// takes an #NPF with the ENC bit, which KVM resolves by preparing and
    /// mapping the page).
    fn snp_insn_translate(&self, vcpu: VcpuId, gfn: Gfn) -> Result<Translation, Stage2Fault> {
        match self.stage2(vcpu, self.alias.encode(gfn, Alias::Private), Access::Read) {
            Stage2::Mapped(t) => Ok(t),
            Stage2::Fault(f) => Err(f),
        }
    }

    /// An RMP #NPF taken by PVALIDATE or RMPADJUST (e.g. SIZEM: a 4K request
    /// over a 2M RMP page): KVM's `sev_handle_rmp_fault()`.
    fn snp_insn_npf(
        &self,
        snp: &Snp,
        vcpu: VcpuId,
        gpa: Gpa,
        t: &Translation,
        error_code: u64,
    ) -> SnpInsnOutcome {
        match self.snp_handle_rmp_fault(snp, vcpu, t, true) {
            Some(flush) => SnpInsnOutcome::Retry { flush },
            None => {
                let f = Stage2Fault::RmpNestedPageFault { gpa, error_code };
                let _ = self.exit(vcpu, Access::Read, f);
                SnpInsnOutcome::Fault(f)
            }
        }
    }

    /// The guest's PVALIDATE on `vcpu` running at `vmpl`: RAX translated by
    /// the plugin through the guest's page tables to `gpa` (the C-bit need
    /// not be set: PVALIDATE always names the private page), RCX = `rcx`
    /// (page size), RDX = `validate`.
    ///
    /// Finds the gfn's nested leaf, faulting it in if needed (preparing the
    /// page), and runs [`crate::Rmp::pvalidate`]. Outcomes:
    /// - `Completed { eax, cf, flush }`: write EAX and CF; a rescind
    ///   (`validate == false`) that changed the page needs `flush`.
    ///   `FAIL_SIZEMISMATCH` (a 2M request over 4K RMP entries or a 4K
    ///   nested leaf): the guest retries page by page.
    /// - `Retry { flush }`: a 4K request hit a 2M RMP page; KVM PSMASHed it
    ///   and zapped the 2M range. Flush, then re-execute.
    /// - `Fault(f)`: the nested walk's exit (a shared gfn: `MemoryFault`,
    ///   the VMM converts it to private), or an RMP #NPF KVM cannot resolve.
    /// - `Unsupported`: not an SNP guest (#UD).
    pub fn snp_pvalidate(
        &self,
        vcpu: VcpuId,
        gpa: Gpa,
        vmpl: Vmpl,
        rcx: u64,
        validate: bool,
    ) -> SnpInsnOutcome {
        let Some(snp) = self.private.snp() else {
            return SnpInsnOutcome::Unsupported;
        };
        let Some(dec) = self.alias.decode(gpa) else {
            return SnpInsnOutcome::Fault(Stage2Fault::ReservedGpa { gpa });
        };
        // The checks that need no RMP entry come first (Rmp::pvalidate's
        // order), so that a bad request does not fault a page in.
        if vmpl != Vmpl::Vmpl0 {
            return SnpInsnOutcome::eax(PvalidateError::FailPermission.eax());
        }
        let size = match RmpPageSize::from_rcx(rcx) {
            Some(size) if dec.gfn.raw() % size.pages() == 0 => size,
            _ => return SnpInsnOutcome::eax(PvalidateError::FailInput.eax()),
        };
        let guest = SnpGuest {
            asid: self.config.asid,
            vmpl,
        };
        let size_mismatch = PvalidateError::FailSizeMismatch.eax();
        self.snp_rmp_insn(snp, vcpu, gpa, dec.gfn, size, size_mismatch, |target| {
            match snp.rmp.pvalidate(guest, target, rcx, validate) {
                Ok(out) => {
                    let mut flush = Flush::none();
                    if out == PvalidateOutcome::Updated {
                        let range = GfnRange::page_containing(dec.gfn, size.level());
                        Counters::inc(&self.counters.rmp_guest_updates);
                        self.events.emit(|| Event::RmpGuestUpdate {
                            vcpu,
                            range,
                            validated: Some(validate),
                        });
                        // Rescinding validation: every cached translation
                        // of the page must go (the guest follows with a TLB
                        // invalidation on hardware); no other changed.
                        flush = self.counted(Flush::remote_range_if(!validate, range));
                    }
                    Ok(SnpInsnOutcome::Completed {
                        eax: 0,
                        cf: out.cf(),
                        flush,
                    })
                }
                Err(PvalidateError::Fault(f)) => Err(f),
                Err(e) => Ok(SnpInsnOutcome::eax(e.eax())),
            }
        })
    }

    /// The guest's RMPADJUST on `vcpu` running at `vmpl`: RAX translated to
    /// `gpa` as for [`Vm::snp_pvalidate`], RCX = `rcx` (page size), RDX =
    /// `rdx` (target VMPL, permission mask, VMSA bit).
    ///
    /// Outcomes as [`Vm::snp_pvalidate`] (no CF); a change that removes a
    /// permission the target VMPL had needs `flush`; RMPADJUST of a page that
    /// is not validated is `Fault(PageNotValidated)` (#VC 0x404).
    pub fn snp_rmpadjust(
        &self,
        vcpu: VcpuId,
        gpa: Gpa,
        vmpl: Vmpl,
        rcx: u64,
        rdx: u64,
    ) -> SnpInsnOutcome {
        let Some(snp) = self.private.snp() else {
            return SnpInsnOutcome::Unsupported;
        };
        let Some(dec) = self.alias.decode(gpa) else {
            return SnpInsnOutcome::Fault(Stage2Fault::ReservedGpa { gpa });
        };
        let (size, attrs) = match (RmpPageSize::from_rcx(rcx), RmpadjustAttrs::from_rdx(rdx)) {
            (Some(s), Some(a)) if dec.gfn.raw() % s.pages() == 0 => (s, a),
            _ => return SnpInsnOutcome::eax(RmpadjustError::FailInput.eax()),
        };
        if attrs.target <= vmpl {
            return SnpInsnOutcome::eax(RmpadjustError::FailPermission.eax());
        }
        let guest = SnpGuest {
            asid: self.config.asid,
            vmpl,
        };
        let size_mismatch = RmpadjustError::FailSizeMismatch.eax();
        self.snp_rmp_insn(snp, vcpu, gpa, dec.gfn, size, size_mismatch, |target| {
            let before = snp.rmp.entry(target.pfn);
            match snp.rmp.rmpadjust(guest, target, rcx, rdx) {
                Ok(()) => {
                    let range = GfnRange::page_containing(dec.gfn, size.level());
                    Counters::inc(&self.counters.rmp_guest_updates);
                    self.events.emit(|| Event::RmpGuestUpdate {
                        vcpu,
                        range,
                        validated: None,
                    });
                    let lost =
                        before.is_some_and(|e| !attrs.perms.contains(e.perms_of(attrs.target)));
                    Ok(SnpInsnOutcome::Completed {
                        eax: 0,
                        cf: false,
                        flush: self.counted(Flush::remote_range_if(lost, range)),
                    })
                }
                Err(RmpadjustError::Fault(f)) => Err(f),
                Err(e) => Ok(SnpInsnOutcome::eax(e.eax())),
            }
        })
    }

    /// What PVALIDATE and RMPADJUST share once their inputs are checked:
    /// find the gfn's nested leaf (faulting it in, as the hardware's nested
    /// walk would exit to KVM), refuse a 2M request over a 4K leaf with
    /// `size_mismatch` (APM Table 15-40: decided by the nested walk before
    /// any RMP entry is read, since with a 4K leaf the backing of a 2M-aligned
    /// gfn need not be 2M aligned), then run `insn` on the target. An RMP
    /// nested page fault is retried if an invalidation raced with it, else
    /// resolved as KVM does; an unvalidated page is #VC.
    #[allow(clippy::too_many_arguments)]
    fn snp_rmp_insn(
        &self,
        snp: &Snp,
        vcpu: VcpuId,
        gpa: Gpa,
        gfn: Gfn,
        size: RmpPageSize,
        size_mismatch: Option<u32>,
        mut insn: impl FnMut(RmpInsnTarget) -> Result<SnpInsnOutcome, RmpFault>,
    ) -> SnpInsnOutcome {
        loop {
            let seq = self.mmu_invalidate_seq.load(Ordering::Acquire);
            let t = match self.snp_insn_translate(vcpu, gfn) {
                Ok(t) => t,
                Err(f) => return SnpInsnOutcome::Fault(f),
            };
            if size == RmpPageSize::Size2M && t.level == PageLevel::Size4K {
                return SnpInsnOutcome::eax(size_mismatch);
            }
            let target = RmpInsnTarget {
                gfn,
                pfn: t.backing.pfn(),
                npt_level: t.level,
            };
            match insn(target) {
                Ok(out) => return out,
                Err(RmpFault::NestedPageFault { error_code, .. }) => {
                    if self.invalidated_since(seq) {
                        self.retry(vcpu, gfn);
                        std::thread::yield_now();
                        continue;
                    }
                    return self.snp_insn_npf(snp, vcpu, gpa, &t, error_code);
                }
                Err(RmpFault::PageNotValidated) => {
                    let f = Stage2Fault::PageNotValidated { gpa };
                    let _ = self.exit(vcpu, Access::Read, f);
                    return SnpInsnOutcome::Fault(f);
                }
            }
        }
    }

    /// SNP_LAUNCH_UPDATE of `range` (KVM `snp_launch_update()` ->
    /// `kvm_gmem_populate()` -> `sev_gmem_post_populate()`, SEV-SNP firmware
    /// ABI 8.17): every private frame of a guest_memfd memslot is assigned
    /// to the guest at 4K (`rmp_make_private(..., PG_LEVEL_4K, ...)`) and the
    /// firmware leaves it validated, its content kept as the initial image.
    /// Frames that are shared or not guest_memfd RAM are skipped (KVM
    /// refuses to populate them). Returns the number of pages launched.
    pub fn snp_launch_update(&self, range: GfnRange) -> Result<u64, RmpupdateError> {
        let Some(snp) = self.private.snp() else {
            return Ok(0);
        };
        let _gmem = snp.gmem_lock.write();
        let slots = self.memslots.load();
        let attrs = self.attrs.load();
        let asid = self.config.asid;
        let mut launched = 0;
        // Private RAM of private-capable slots, in runs: the firmware
        // assigns and validates each page (Rmp::launch_validated).
        for slot in slots.in_range(range).filter(|s| s.private_capable()) {
            let Some(part) = range.intersect(slot.range()) else {
                continue;
            };
            for run in attrs.private_ranges().intersecting(part) {
                let pfns = PfnRange::from_start_len(slot.pfn_of(run.start()), run.len())
                    .ok_or(RmpupdateError::FailInput)?;
                snp.rmp.launch_validated(pfns, run.start(), asid)?;
                launched += run.len();
            }
        }
        Ok(launched)
    }

    /// SNP: the RMP entry of backing frame `pfn` (RMPREAD), `None` if the RMP
    /// does not cover it.
    pub fn snp_rmp_entry(&self, pfn: Pfn) -> Option<RmpEntry> {
        self.private.snp()?.rmp.entry(pfn)
    }

    /// SNP: the RMP entry of the backing of `gpa`'s gfn.
    pub fn snp_rmp_entry_of(&self, gpa: Gpa) -> Option<RmpEntry> {
        self.private.snp()?.rmp.entry(self.backing_pfn(gpa)?.1)
    }

    /// SNP: the backing ranges the RMP covers (one per guest_memfd memslot).
    pub fn snp_rmp_covered(&self) -> Vec<PfnRange> {
        self.private
            .snp()
            .map(|snp| snp.rmp.covered())
            .unwrap_or_default()
    }
}
