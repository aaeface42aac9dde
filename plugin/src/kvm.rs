//! The modelled KVM: owns the model's [`Vm`], turns QEMU's memslot reports
//! into memslots, answers the stage-2 callback from the model's TDP, and
//! handles the exits KVM would hand to QEMU the way QEMU would.
//!
//! | model answer | KVM / QEMU | here |
//! |---|---|---|
//! | mapped | the TDP maps it | allow: backing, permissions, leaf size |
//! | `Mmio`, `ReadOnlyWrite` | `KVM_EXIT_MMIO`, QEMU emulates | allow at the guest-physical address (alias stripped): QEMU's memory core does the MMIO or drops the ROM write |
//! | `Mmio` in a running TD | the shared EPT's MMIO entry raises #VE (EPT violation) | #VE; the guest emulates it with TDVMCALL #VE.RequestMMIO |
//! | `Mmio` in an SEV-ES/SNP guest | #VC(NPF) | #VC; the guest emulates it through the GHCB |
//! | `MemoryFault` | `KVM_EXIT_MEMORY_FAULT`, QEMU's `kvm_convert_memory()` | implicit conversion of the page, the side left discarded (zeroed), then retry |
//! | `MemoryFault` to private where no guest_memfd memslot is (MMIO through a TD's or SNP guest's private alias) | `kvm_convert_memory()` refuses, QEMU stops the VM | the VM stops, the access named |
//! | `SeptBlocked` | KVM retries the fault | retry |
//! | `VirtualizationException` | the TDX module injects #VE | #VE |
//! | `ReservedGpa` | reserved bits in the guest's tables | #PF with RSVD |
//! | `VmDead`, `Dead`, `OutOfTables` | the VM is dead / `-ENOMEM`: `KVM_RUN` fails, QEMU stops the VM | the VM stops, with a message: nothing is allowed unchecked |
//!
//! QEMU's view and the model's are kept identical: a memslot's backing
//! address is the QEMU guest-physical address where QEMU put the section,
//! so an allowed translation is a QEMU address that QEMU resolves to RAM.

use std::sync::atomic::{AtomicU64, Ordering};

use cvmem_model::{
    Access as ModelAccess, BackingAddr, DeviceAccess, FlushRequest, FlushTarget, Gfn, GfnRange,
    Gpa, MemoryRegion, MemslotFlags, MemslotId, SnpAccessCtx, Stage2, Stage2Fault, VcpuId, VeInfo,
    Vm, VmConfig, VmType, Vmpl, PAGE_SIZE,
};

use crate::args::Config;
use crate::flushcheck::FlushCheck;
use crate::hooks::{gpr, prot, Access, Fault, InsnAction, Regs, Stage2Answer, Stage2Request};
use crate::lifecycle::Lifecycle;
use crate::memslots::{MemslotOp, RamSection};
use crate::snp::{self, SnpFirmware};
use crate::tdx::TdxModule;

/// What the plugin must do in QEMU besides answering the callback.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// Flush these softTLBs.
    pub flush: Option<FlushTarget>,
    /// Zero these guest-physical ranges (QEMU addresses, bytes): the side of
    /// a conversion being left is discarded, as QEMU+KVM discard it.
    pub clear: Vec<(u64, u64)>,
}

impl Effects {
    /// No effect.
    pub const NONE: Effects = Effects {
        flush: None,
        clear: Vec::new(),
    };

    /// The flush of `req`, if any.
    pub fn flush(req: Option<FlushRequest>) -> Effects {
        Effects {
            flush: req.map(|r| r.target),
            clear: Vec::new(),
        }
    }

    /// Whether there is nothing to do (the hot path's usual answer).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.flush.is_none() && self.clear.is_empty()
    }

    /// Adds `other`'s effects to these: both clears, the wider flush.
    pub fn merge(&mut self, other: Effects) {
        self.clear.extend(other.clear);
        self.flush = match (self.flush, other.flush) {
            (Some(a), Some(b)) if a != b => Some(FlushTarget::AllVcpus),
            (a, b) => a.or(b),
        };
    }
}

/// Exception vectors cvmem raises.
pub mod vector {
    #![allow(missing_docs)]
    pub const DF: u8 = 8;
    pub const PF: u8 = 14;
    pub const VE: u8 = 20;
    pub const VC: u8 = 29;
}

/// #VC error code (the exit code) of an access to a page that is not
/// validated (GHCB spec, SVM_EXIT_NPF... VMGEXIT exit codes: 0x404).
const SVM_EXIT_NPF_PAGE_NOT_VALIDATED: u32 = 0x404;

/// #PF error-code bits (Intel SDM vol. 3 4.7).
mod pferr {
    pub const PRESENT: u32 = 1 << 0;
    pub const WRITE: u32 = 1 << 1;
    pub const USER: u32 = 1 << 2;
    pub const RSVD: u32 = 1 << 3;
    pub const FETCH: u32 = 1 << 4;
    pub const RMP: u32 = 1 << 31;
}

/// KVM hypercall numbers and status codes (include/uapi/linux/kvm_para.h,
/// Documentation/virt/kvm/x86/hypercalls.rst). A hypercall is VMCALL with
/// the number in RAX and arguments in RBX, RCX, RDX, RSI; the status comes
/// back in RAX, negative on error.
pub mod hc {
    /// Map a GPA range private or shared.
    pub const KVM_HC_MAP_GPA_RANGE: u64 = 12;
    /// `KVM_ENOSYS`: unknown or disabled hypercall.
    pub const KVM_ENOSYS: u64 = 1000;
    /// `KVM_EINVAL`: bad arguments.
    pub const KVM_EINVAL: u64 = 22;
    /// `KVM_EPERM`: hypercall from CPL > 0.
    pub const KVM_EPERM: u64 = 1;
    /// KVM_HC_MAP_GPA_RANGE attributes: bits 3:0 the preferred page size
    /// (0 4K, 1 2M, 2 1G).
    pub const KVM_MAP_GPA_RANGE_PAGE_SZ_MASK: u64 = 0xf;
    /// KVM_HC_MAP_GPA_RANGE attributes: bit 4, encrypted (private).
    pub const KVM_MAP_GPA_RANGE_ENCRYPTED: u64 = 1 << 4;

    /// `-code` as the guest sees it in RAX.
    pub const fn err(code: u64) -> u64 {
        code.wrapping_neg()
    }
}

/// The modelled KVM of one QEMU process.
#[derive(Debug)]
pub struct Kvm {
    vm: Vm,
    /// Sections QEMU added as memslots.
    pub memslot_adds: AtomicU64,
    /// Memslots QEMU deleted.
    pub memslot_dels: AtomicU64,
    /// Implicit conversions done on memory-fault exits.
    pub implicit_conversions: AtomicU64,
    /// How the run goes: shutdowns, resets, the guest's fatal errors, and
    /// whether this KVM stopped the VM.
    pub lifecycle: Lifecycle,
    /// `strict=`: wrong-alias accesses fault instead of converting.
    strict: bool,
    /// The TDX module, for `vm-type=tdx`.
    pub tdx: Option<TdxModule>,
    /// The SNP firmware and GHCB handling, for `vm-type=snp`.
    pub snp: Option<SnpFirmware>,
    /// `flush-check=on`: the missing-flush detector, which learns every
    /// translation handed to QEMU.
    pub flush_check: Option<FlushCheck>,
    /// The RAM sections QEMU has reported and not deleted: what a memslot
    /// made through the control socket may be backed by.
    pub qemu_ram: parking_lot::Mutex<Vec<RamSection>>,
}

impl Kvm {
    /// Creates the VM (`KVM_CREATE_VM` of the configured type) for
    /// `max_vcpus` vCPUs.
    pub fn new(config: &Config, max_vcpus: u32) -> Result<Kvm, String> {
        let vm_type = config.vm_type;
        let max_vcpus = max_vcpus.max(1);
        let vm_config = VmConfig {
            max_vcpus,
            gpaw: config.gpaw,
            td_attributes: config.td_attributes,
            slot_zap_all_quirk: config.slot_zap_all,
            private_max_level: config
                .private_max_level
                .unwrap_or(vm_type.default_private_max_level()),
            // Events only for a trace: without one the model builds none.
            event_capacity: if config.trace.is_some() {
                crate::trace::CAPACITY
            } else {
                0
            },
            ..VmConfig::new(vm_type)
        };
        let vm = Vm::new(vm_config).map_err(|e| format!("cannot create the {vm_type} VM: {e}"))?;
        let flush_check = config.flush_check.then(|| FlushCheck::new(&vm, max_vcpus));
        Ok(Kvm {
            flush_check,
            vm,
            memslot_adds: AtomicU64::new(0),
            memslot_dels: AtomicU64::new(0),
            implicit_conversions: AtomicU64::new(0),
            // KVM protects the vCPU state of a TD and of an SEV-ES/SNP
            // guest: QEMU cannot reset it (kvm_cpus_are_resettable()).
            lifecycle: Lifecycle::new(!matches!(vm_type, VmType::Tdx | VmType::Snp)),
            strict: config.strict,
            tdx: (vm_type == VmType::Tdx)
                .then(|| TdxModule::new(max_vcpus, config.accept, config.map_gpa_chunk)),
            snp: (vm_type == VmType::Snp)
                .then(|| SnpFirmware::new(max_vcpus, config.accept, config.map_gpa_chunk)),
            qemu_ram: parking_lot::Mutex::new(Vec::new()),
        })
    }

    /// A VM of `vm_type` with the default options.
    #[cfg(test)]
    pub fn with_type(vm_type: VmType, max_vcpus: u32) -> Result<Kvm, String> {
        Kvm::new(
            &Config {
                vm_type,
                ..Config::default()
            },
            max_vcpus,
        )
    }

    /// The model.
    pub fn vm(&self) -> &Vm {
        &self.vm
    }

    /// Applies a memslot report of QEMU's memory listener, as QEMU's KVM
    /// listener would (`kvm_set_phys_mem()`): a new slot per added section,
    /// private-capable (`KVM_MEM_GUEST_MEMFD`) when the VM type has private
    /// memory and the section is writable RAM.
    pub fn memslot(&self, op: MemslotOp, s: &RamSection) -> Result<Effects, String> {
        if s.size == 0 || s.gpa.checked_add(s.size).is_none() {
            return Err(format!(
                "empty or wrapping section {:#x}+{:#x}",
                s.gpa, s.size
            ));
        }
        // Held throughout: QEMU's listener runs under the big QEMU lock, one
        // report at a time, and the control socket takes this lock too, so
        // the snapshot below (and the free slot id) cannot change under us.
        let mut ram = self.qemu_ram.lock();
        ram.retain(|r| r.gpa != s.gpa || r.size != s.size);
        if op == MemslotOp::Add {
            ram.push(s.clone());
        }
        let slots = self.vm.memslots();
        match op {
            // QEMU's kvm_set_phys_mem() gives no slot to read-only memory
            // where KVM refuses KVM_MEM_READONLY (TDX, SNP): the guest's
            // accesses there are MMIO.
            _ if s.readonly && !self.vm.vm_type().allows_readonly_memslots() => Ok(Effects::NONE),
            MemslotOp::Add => {
                let id = (0..=u16::MAX)
                    .map(MemslotId)
                    .find(|&id| slots.by_id(id).is_none())
                    .ok_or("no free memslot id")?;
                let mut flags = MemslotFlags::NONE;
                if s.readonly {
                    flags = flags | MemslotFlags::READONLY;
                } else if self.vm.vm_type().has_private_mem() {
                    flags = flags | MemslotFlags::GUEST_MEMFD;
                }
                let flush = self
                    .vm
                    .set_memory_region(MemoryRegion {
                        slot: id,
                        flags,
                        guest_phys_addr: Gpa::new(s.gpa),
                        memory_size: s.size,
                        backing: BackingAddr::new(s.gpa),
                    })
                    .map_err(|e| format!("memslot {:#x}+{:#x} ({}): {e}", s.gpa, s.size, s.name))?;
                self.memslot_adds.fetch_add(1, Ordering::Relaxed);
                let mut effects = Effects::flush(self.vm.flush(flush));
                if (self.tdx.is_some() || self.snp.is_some())
                    && flags.contains(MemslotFlags::GUEST_MEMFD)
                {
                    // QEMU makes a TD's or an SNP guest's guest_memfd RAM
                    // private when it adds the slot (kvm_set_phys_mem() ->
                    // kvm_set_memory_attributes_private()).
                    let range = GfnRange::from_start_len(Gpa::new(s.gpa).gfn(), s.size / PAGE_SIZE)
                        .ok_or("section out of range")?;
                    let flush = self
                        .vm
                        .set_memory_attributes(range, true)
                        .map_err(|e| format!("making {:#x}+{:#x} private: {e}", s.gpa, s.size))?;
                    effects.merge(Effects::flush(self.vm.flush(flush)));
                }
                Ok(effects)
            }
            MemslotOp::Del => {
                let Some(slot) = slots
                    .iter()
                    .find(|m| m.base_gfn.gpa().raw() == s.gpa && m.npages * PAGE_SIZE == s.size)
                else {
                    // A ROM device that left ROMD mode before it was added.
                    return Ok(Effects::NONE);
                };
                let flush = self
                    .vm
                    .delete_memslot(slot.id)
                    .map_err(|e| format!("deleting memslot {:#x}: {e}", s.gpa))?;
                self.memslot_dels.fetch_add(1, Ordering::Relaxed);
                Ok(Effects::flush(self.vm.flush(flush)))
            }
        }
    }

    /// The stage-2 answer for `req`. The hot path: a lookup hit reads a few
    /// atomics.
    pub fn stage2(&self, req: &Stage2Request) -> (Stage2Answer, Effects) {
        if let Some(tdx) = &self.tdx {
            if !tdx.launched() {
                if !req.paging {
                    // The VMM still builds the TD (see
                    // TdxModule::ensure_launched()).
                    return (Stage2Answer::identity(req), Effects::NONE);
                }
                tdx.ensure_launched(self);
            }
        }
        let mut launch = Effects::NONE;
        let mut gpa = req.gpa;
        if let Some(snp) = &self.snp {
            if !snp.launched() {
                if !req.paging {
                    // The VMM still builds the guest (SnpFirmware docs).
                    return (Stage2Answer::identity(req), Effects::NONE);
                }
                launch = snp.ensure_launched(self);
            }
            // With paging off every access of an SEV guest is private (APM
            // vol. 2 §15.34.5): the AP trampoline runs on private memory.
            if !req.paging {
                gpa |= self.vm.alias().alias_mask();
            }
        }
        let access = model_access(req.access);
        let (vcpu, gpa) = (VcpuId(req.vcpu_index), Gpa::new(gpa));
        let answer = if self.vm.vm_type() == VmType::Snp {
            // The RMP check runs on every translation of an SNP guest.
            let ctx = SnpAccessCtx {
                vmpl: Vmpl::Vmpl0,
                user: req.cpl == 3,
                page_walk: req.page_walk,
            };
            self.vm.snp_stage2(vcpu, gpa, access, ctx)
        } else {
            self.vm.stage2(vcpu, gpa, access)
        };
        match answer {
            Stage2::Mapped(t) => {
                let mut p = 0;
                if t.perms.read {
                    p |= prot::READ;
                }
                if t.perms.write {
                    p |= prot::WRITE;
                }
                if t.perms.exec {
                    p |= prot::EXEC;
                }
                let answer = Stage2Answer::Allow {
                    backing_gpa: t.backing.raw(),
                    prot: p,
                    page_size: t.level.size_bytes(),
                };
                (answer, launch)
            }
            Stage2::Fault(f) => {
                let (answer, effects) = self.fault_answer(req, f);
                launch.merge(effects);
                (answer, launch)
            }
        }
    }

    /// What the guest sees of a stage-2 fault: handled by KVM or QEMU and
    /// retried, allowed for QEMU's memory core, or an exception.
    fn fault_answer(&self, req: &Stage2Request, fault: Stage2Fault) -> (Stage2Answer, Effects) {
        let raise = |vector, error_code, cr2| {
            (
                Stage2Answer::Fault(Fault {
                    vector,
                    error_code,
                    cr2,
                }),
                Effects::NONE,
            )
        };
        match fault {
            // An SEV-ES guest's MMIO is a #VC(NPF): KVM's MMIO SPTEs have
            // reserved bits set, so the access faults into the guest, which
            // emulates it through the GHCB (APM vol. 2 §15.35.6).
            Stage2Fault::Mmio { .. } if self.snp.is_some() => {
                self.count_vc();
                raise(vector::VC, Some(snp::exit::NPF as u32), None)
            }
            // A TD's MMIO is a #VE: KVM's shared-EPT MMIO entries leave #VE
            // unsuppressed (TDX has no instruction decode in the host), so
            // the access becomes an EPT-violation #VE and the guest emulates
            // it with TDVMCALL #VE.RequestMMIO (Linux handle_mmio()).
            // Page-walk reads and accesses with paging off (the VMM's
            // loader before launch) are not the TD's.
            Stage2Fault::Mmio { gpa }
                if req.paging
                    && !req.page_walk
                    && self.tdx.as_ref().is_some_and(|t| t.launched()) =>
            {
                self.inject_ve(
                    req,
                    gpa,
                    VeInfo::pending_access(gpa, model_access(req.access)),
                )
            }
            Stage2Fault::Mmio { gpa } | Stage2Fault::ReadOnlyWrite { gpa } => {
                (self.unaliased(gpa), Effects::NONE)
            }
            Stage2Fault::MemoryFault { gpa, gfn, private } => {
                if self.strict {
                    self.strict_fault(req, gpa)
                } else {
                    self.implicit_conversion(req, gfn, private)
                }
            }
            Stage2Fault::SeptBlocked { .. } => (Stage2Answer::Retry, Effects::NONE),
            Stage2Fault::VirtualizationException { gpa, ve } => self.inject_ve(req, gpa, ve),
            Stage2Fault::ReservedGpa { .. } => {
                let mut code = pferr::PRESENT | pferr::RSVD;
                match req.access {
                    Access::Write if !req.page_walk => code |= pferr::WRITE,
                    Access::Fetch => code |= pferr::FETCH,
                    _ => {}
                }
                if req.cpl == 3 {
                    code |= pferr::USER;
                }
                raise(vector::PF, Some(code), Some(req.gva))
            }
            Stage2Fault::PageNotValidated { .. } => {
                self.count_vc();
                raise(vector::VC, Some(SVM_EXIT_NPF_PAGE_NOT_VALIDATED), None)
            }
            // KVM's sev_handle_rmp_fault() ran (PSMASH and a zap): flush and
            // let the access run again.
            Stage2Fault::RmpSmashed { flush, .. } => (
                Stage2Answer::Retry,
                Effects {
                    flush: flush.map(|r| r.target),
                    clear: Vec::new(),
                },
            ),
            // A nested page fault with the RMP bit that KVM cannot resolve:
            // on hardware the guest would take the same #NPF forever; cvmem
            // shows it to the guest as a #PF with the RMP bit (bit 31) and
            // the rest of the nested fault's error code.
            Stage2Fault::RmpNestedPageFault { error_code, .. } => {
                raise(vector::PF, Some(error_code as u32), Some(req.gva))
            }
            // A read of an assigned page without the C-bit (ciphertext), a
            // failed RMPUPDATE: not modelled as guest-visible, so fail closed.
            Stage2Fault::RmpCiphertextRead { .. }
            | Stage2Fault::GmemPrepareFailed { .. }
            | Stage2Fault::VmDead { .. }
            | Stage2Fault::Dead
            | Stage2Fault::OutOfTables => self.stop(format!(
                "{fault:?} on vCPU {}'s {} of GPA {:#x}",
                req.vcpu_index,
                access_name(req.access),
                req.gpa
            )),
        }
    }

    /// Counts a #VC raised at a translation in the SNP summary.
    fn count_vc(&self) {
        if let Some(snp) = &self.snp {
            snp.stats.vcs.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The VM cannot go on (KVM killed it, or QEMU would have stopped it on
    /// this exit): said on stderr, recorded for the summary, and QEMU stops
    /// the VM as it stops a KVM guest whose KVM_RUN failed.
    pub fn stop(&self, why: String) -> (Stage2Answer, Effects) {
        eprintln!("cvmem: stopping the VM: {why}");
        self.lifecycle.stopped(why);
        (Stage2Answer::Stop, Effects::NONE)
    }

    /// Injects a #VE with `ve` (the linear address filled in from `req`).
    fn inject_ve(&self, req: &Stage2Request, gpa: Gpa, mut ve: VeInfo) -> (Stage2Answer, Effects) {
        // Exit qualification bit 7: the linear address is valid; bit 8: the
        // access was to the translated address, not a paging structure
        // (SDM Table 28-7).
        if req.paging {
            ve.gla = req.gva;
            ve.exit_qualification |= 1 << 7;
            if !req.page_walk {
                ve.exit_qualification |= 1 << 8;
            }
        }
        match self
            .tdx
            .as_ref()
            .and_then(|t| t.record_ve(req.vcpu_index, ve, 0))
        {
            Some(fault) => (Stage2Answer::Fault(fault), Effects::NONE),
            None => self.stop(format!(
                "EPT violation at GPA {:#x} on vCPU {}, which the TDX module does not have",
                gpa.raw(),
                req.vcpu_index
            )),
        }
    }

    /// `strict=on`: an access through the wrong alias is not converted.
    /// A TD gets a #VE (EPT violation) for it; an SNP guest the #PF with
    /// the RMP bit the hardware gives for an access to a page the guest
    /// does not own in that alias (APM Table 15-39); other VM types have no
    /// way to tell the guest, so the VM stops as QEMU stops it when it
    /// refuses a memory-fault exit.
    fn strict_fault(&self, req: &Stage2Request, gpa: Gpa) -> (Stage2Answer, Effects) {
        if self.snp.is_some() {
            let mut code = pferr::PRESENT | pferr::RMP;
            match req.access {
                Access::Write if !req.page_walk => code |= pferr::WRITE,
                Access::Fetch => code |= pferr::FETCH,
                _ => {}
            }
            if req.cpl == 3 {
                code |= pferr::USER;
            }
            return (
                Stage2Answer::Fault(Fault {
                    vector: vector::PF,
                    error_code: Some(code),
                    cr2: Some(req.gva),
                }),
                Effects::NONE,
            );
        }
        if self.tdx.is_some() {
            self.inject_ve(
                req,
                gpa,
                VeInfo::pending_access(gpa, model_access(req.access)),
            )
        } else {
            self.stop(format!(
                "strict=on: vCPU {} {} of GPA {:#x} through the wrong alias",
                req.vcpu_index,
                access_name(req.access),
                gpa.raw()
            ))
        }
    }

    /// Allows `req` at its guest-physical address with the alias bits
    /// stripped, for QEMU's memory core to handle (MMIO, ROM).
    fn unaliased(&self, gpa: Gpa) -> Stage2Answer {
        let gpa = self
            .vm
            .decode(gpa)
            .map_or(gpa.raw(), |d| d.gfn.gpa().raw() | d.offset);
        Stage2Answer::Allow {
            backing_gpa: gpa,
            prot: prot::ALL,
            page_size: PAGE_SIZE,
        }
    }

    /// The guest touched a page through the other alias: convert it, as QEMU
    /// does on `KVM_EXIT_MEMORY_FAULT` (`kvm_convert_memory()`), discarding
    /// the content of the side being left. QEMU refuses to make anything
    /// but guest_memfd RAM private and stops the VM.
    fn implicit_conversion(
        &self,
        req: &Stage2Request,
        gfn: Gfn,
        private: bool,
    ) -> (Stage2Answer, Effects) {
        match self.convert(GfnRange::one(gfn), private, true) {
            Ok(effects) => {
                self.implicit_conversions.fetch_add(1, Ordering::Relaxed);
                (Stage2Answer::Retry, effects)
            }
            // A private access where no guest_memfd memslot is (MMIO
            // through the private alias): QEMU's kvm_convert_memory() makes
            // only guest_memfd RAM private and stops the VM. Shared MMIO
            // is what a TD's #VE and an SNP guest's #VC are for.
            Err(_) if private => self.stop(format!(
                "vCPU {} {} of GPA {:#x} through the private alias, where no guest_memfd \
                 memslot is (KVM_EXIT_MEMORY_FAULT; QEMU's kvm_convert_memory() refuses to \
                 make it private; MMIO must be mapped shared)",
                req.vcpu_index,
                access_name(req.access),
                gfn.gpa().raw() | (req.gpa & (PAGE_SIZE - 1))
            )),
            Err(e) => self.stop(format!(
                "vCPU {} {} of GPA {:#x} needs a conversion QEMU refuses: {e}",
                req.vcpu_index,
                access_name(req.access),
                gfn.gpa().raw() | (req.gpa & (PAGE_SIZE - 1))
            )),
        }
    }

    /// A memory-fault exit taken outside a translation (e.g. by a TDX
    /// ACCEPT of a page that is still shared), handled like one met at
    /// softTLB fill: `Ok` with effects when the operation may be retried,
    /// `Err` with what the instruction does instead (raise an exception, or
    /// stop the VM). `gva` is the linear address the instruction named (CR2
    /// of a #PF).
    pub fn exit_fault(
        &self,
        vcpu: u32,
        fault: Stage2Fault,
        gva: u64,
    ) -> Result<Effects, InsnAction> {
        let gpa = match fault {
            Stage2Fault::MemoryFault { gpa, .. } | Stage2Fault::VmDead { gpa } => gpa.raw(),
            _ => 0,
        };
        let req = Stage2Request {
            gpa,
            gva,
            vcpu_index: vcpu,
            access: Access::Write,
            cpl: 0,
            page_walk: false,
            paging: false,
        };
        match self.fault_answer(&req, fault) {
            (Stage2Answer::Fault(f), _) => Err(InsnAction::Fault(f)),
            (Stage2Answer::Stop, _) => Err(InsnAction::Stop),
            (_, effects) => Ok(effects),
        }
    }

    /// A guest VMCALL: KVM's hypercall ABI (`kvm_emulate_hypercall()` in
    /// arch/x86/kvm/x86.c). Writes the status to RAX; returns what to do in
    /// QEMU.
    pub fn hypercall(&self, regs: &mut Regs) -> Effects {
        let nr = regs.gpr[gpr::RAX];
        let (status, effects) = if regs.cpl != 0 {
            // Hypercalls are for the guest kernel only.
            (hc::err(hc::KVM_EPERM), Effects::NONE)
        } else if nr == hc::KVM_HC_MAP_GPA_RANGE && self.vm.vm_type() == VmType::SwProtected {
            let (a0, a1, a2) = (regs.gpr[gpr::RBX], regs.gpr[gpr::RCX], regs.gpr[gpr::RDX]);
            match self.map_gpa_range(a0, a1, a2) {
                Ok(effects) => (0, effects),
                Err(code) => (hc::err(code), Effects::NONE),
            }
        } else {
            // Unknown, or not enabled for this VM type (KVM exits to
            // userspace for KVM_HC_MAP_GPA_RANGE only where the VMM turned
            // on KVM_CAP_EXIT_HYPERCALL; QEMU does for private memory).
            (hc::err(hc::KVM_ENOSYS), Effects::NONE)
        };
        regs.gpr[gpr::RAX] = status;
        effects
    }

    /// KVM_HC_MAP_GPA_RANGE: KVM checks the range (`PAGE_ALIGNED(gpa)`, a
    /// non-zero page count that does not wrap), then exits to QEMU, which
    /// converts (`kvm_handle_hc_map_gpa_range()` -> `kvm_convert_memory()`):
    /// KVM_SET_MEMORY_ATTRIBUTES, and the content of the side being left is
    /// discarded. Where QEMU would stop the VM (a range that is not
    /// private-capable RAM, reserved attribute bits, which hypercalls.rst
    /// says must be zero), cvmem returns `-KVM_EINVAL` to the guest instead
    /// and says so on stderr.
    fn map_gpa_range(&self, gpa: u64, npages: u64, attrs: u64) -> Result<Effects, u64> {
        let gfn = gpa >> PAGE_SIZE.trailing_zeros();
        if gpa % PAGE_SIZE != 0 || npages == 0 || gfn.checked_add(npages).is_none() {
            return Err(hc::KVM_EINVAL);
        }
        let reserved = !(hc::KVM_MAP_GPA_RANGE_PAGE_SZ_MASK | hc::KVM_MAP_GPA_RANGE_ENCRYPTED);
        if attrs & reserved != 0 || attrs & hc::KVM_MAP_GPA_RANGE_PAGE_SZ_MASK > 2 {
            eprintln!("cvmem: KVM_HC_MAP_GPA_RANGE: reserved attribute bits in {attrs:#x}");
            return Err(hc::KVM_EINVAL);
        }
        let private = attrs & hc::KVM_MAP_GPA_RANGE_ENCRYPTED != 0;
        let range = GfnRange::from_start_len(Gfn::new(gfn), npages).ok_or(hc::KVM_EINVAL)?;
        self.convert(range, private, false).map_err(|e| {
            eprintln!("cvmem: KVM_HC_MAP_GPA_RANGE {gpa:#x}+{npages} pages: {e}");
            hc::KVM_EINVAL
        })
    }

    /// Converts `range` to private or shared as QEMU's `kvm_convert_memory()`
    /// does: KVM_SET_MEMORY_ATTRIBUTES, and the content of every frame that
    /// changes side is discarded. QEMU converts only guest_memfd-backed RAM;
    /// with `lenient_shared` a conversion to shared of space that is not
    /// such RAM (MMIO a TD shares) is accepted, as QEMU accepts it.
    pub fn convert(
        &self,
        range: GfnRange,
        private: bool,
        lenient_shared: bool,
    ) -> Result<Effects, String> {
        let slots = self.vm.memslots();
        let covered: u64 = slots
            .iter()
            .filter(|s| s.private_capable() && !s.invalid)
            .filter_map(|s| s.range().intersect(range))
            .map(|r| r.len())
            .sum();
        if covered != range.len() && (private || !lenient_shared) {
            return Err("not all private-capable RAM (QEMU would stop the VM)".into());
        }
        // Frames that change side lose their content.
        let attrs_before = self.vm.attributes();
        let changing: Vec<GfnRange> = if private {
            let mut shared = vec![range];
            for p in attrs_before.private_ranges().iter() {
                shared = shared.into_iter().flat_map(|r| subtract(r, p)).collect();
            }
            shared
        } else {
            attrs_before
                .private_ranges()
                .iter()
                .filter_map(|p| p.intersect(range))
                .collect()
        };
        let flush = self
            .vm
            .set_memory_attributes(range, private)
            .map_err(|e| e.to_string())?;
        Ok(Effects {
            flush: self.vm.flush(flush).map(|r| r.target),
            clear: changing
                .iter()
                .flat_map(|&r| self.backing_ranges(r))
                .collect(),
        })
    }

    /// The QEMU ranges (start, bytes) backing the frames of `range` that
    /// memslots hold. Backing addresses are QEMU guest-physical addresses
    /// (see the module comment): a slot QEMU reported maps frames to
    /// themselves, one moved or made through the control socket need not.
    pub fn backing_ranges(&self, range: GfnRange) -> Vec<(u64, u64)> {
        let slots = self.vm.memslots();
        slots
            .iter()
            .filter_map(|s| Some((s, s.range().intersect(range)?)))
            .map(|(s, r)| (s.backing_of(r.start()).raw(), r.len() * PAGE_SIZE))
            .collect()
    }

    /// Whether a device or the host (a device's DMA, a host write through
    /// the control socket, GHCB MMIO emulation) may touch QEMU's memory at
    /// `qemu_addr`: not if a GPA the guest uses for it is private (TDX
    /// private pages and SNP guest-owned pages are out of a device's reach;
    /// a sw-protected VM's private memory is guest_memfd, which QEMU does not
    /// map). Those GPAs differ from the address for a slot that was moved or
    /// aliased (see the module comment on backing addresses).
    pub fn host_access_allowed(&self, qemu_addr: u64) -> bool {
        // While the VMM builds the guest, its devices (fw_cfg DMA) load the
        // image.
        if !self.launched() {
            return true;
        }
        self.vm
            .device_access_backing(BackingAddr::new(qemu_addr), false)
            == DeviceAccess::Allowed
    }

    /// Whether the guest runs: a TD or SNP guest once launched, any other
    /// VM from the start.
    pub fn launched(&self) -> bool {
        self.tdx.as_ref().is_none_or(|t| t.launched())
            && self.snp.as_ref().is_none_or(|s| s.launched())
    }

    /// The QEMU address backing `gfn`, if a memslot holds it.
    pub fn backing_of(&self, gfn: Gfn) -> Option<u64> {
        let slots = self.vm.memslots();
        let slot = slots.find(gfn)?;
        Some(slot.pfn_of(gfn).addr().raw())
    }
}

/// "read", "write" or "fetch", for messages.
fn access_name(access: Access) -> &'static str {
    match access {
        Access::Read => "read",
        Access::Write => "write",
        Access::Fetch => "fetch",
    }
}

/// The model's name for a QEMU access kind.
fn model_access(access: Access) -> ModelAccess {
    match access {
        Access::Read => ModelAccess::Read,
        Access::Write => ModelAccess::Write,
        Access::Fetch => ModelAccess::Fetch,
    }
}

/// `a` without `b`: zero, one or two ranges.
fn subtract(a: GfnRange, b: GfnRange) -> Vec<GfnRange> {
    if !a.overlaps(b) {
        return vec![a];
    }
    [
        GfnRange::new(a.start(), b.start()),
        GfnRange::new(b.end(), a.end()),
    ]
    .into_iter()
    .flatten()
    .filter(|r| !r.is_empty())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(gpa: u64, size: u64, readonly: bool) -> RamSection {
        RamSection {
            gpa,
            size,
            readonly,
            name: "ram".into(),
        }
    }

    fn req(gpa: u64, access: Access) -> Stage2Request {
        Stage2Request {
            gpa,
            gva: 0x40_0000,
            vcpu_index: 0,
            access,
            cpl: 0,
            page_walk: false,
            paging: true,
        }
    }

    #[test]
    fn ram_is_mapped_through_the_model_and_mmio_passes_through() {
        let kvm = Kvm::with_type(VmType::Default, 1).unwrap();
        kvm.memslot(MemslotOp::Add, &section(0, 0xa_0000, false))
            .unwrap();
        kvm.memslot(MemslotOp::Add, &section(0x10_0000, 0x100_0000, false))
            .unwrap();
        kvm.memslot(MemslotOp::Add, &section(0xfffc_0000, 0x4_0000, true))
            .unwrap();
        let (a, e) = kvm.stage2(&req(0x12_3456, Access::Write));
        assert_eq!(e, Effects::NONE);
        match a {
            Stage2Answer::Allow {
                backing_gpa, prot, ..
            } => {
                assert_eq!(backing_gpa & !0xfff, 0x12_3000);
                assert_eq!(prot & prot::WRITE, prot::WRITE);
            }
            other => panic!("{other:?}"),
        }
        // The VGA hole: no memslot, QEMU emulates.
        assert!(matches!(
            kvm.stage2(&req(0xb_8000, Access::Write)).0,
            Stage2Answer::Allow {
                backing_gpa: 0xb_8000,
                ..
            }
        ));
        // A ROM write reaches QEMU, which drops it.
        assert!(matches!(
            kvm.stage2(&req(0xffff_fff0, Access::Write)).0,
            Stage2Answer::Allow {
                backing_gpa: 0xffff_fff0,
                ..
            }
        ));
        assert_eq!(kvm.vm().stats().maps.iter().sum::<u64>(), 1);
        // Deleting the slot unmaps it and asks for a flush.
        let e = kvm
            .memslot(MemslotOp::Del, &section(0x10_0000, 0x100_0000, false))
            .unwrap();
        assert!(e.flush.is_some());
        assert!(matches!(
            kvm.stage2(&req(0x12_3456, Access::Read)).0,
            Stage2Answer::Allow {
                backing_gpa: 0x12_3456,
                ..
            }
        ));
        assert_eq!(kvm.vm().memslots().iter().count(), 2);
    }

    /// The model's memslot holding `gpa`: (start, size).
    fn slot_at(kvm: &Kvm, gpa: u64) -> Option<(u64, u64)> {
        let slots = kvm.vm().memslots();
        slots
            .find(Gpa::new(gpa).gfn())
            .map(|s| (s.base_gfn.gpa().raw(), s.npages * PAGE_SIZE))
    }

    #[test]
    fn a_bar_move_is_a_deletion_then_a_creation() {
        let kvm = Kvm::with_type(VmType::Default, 1).unwrap();
        kvm.memslot(MemslotOp::Add, &section(0, 0xa0000, false))
            .unwrap();
        kvm.memslot(MemslotOp::Add, &section(0xfe00_0000, 0x10_0000, false))
            .unwrap();
        assert_eq!(slot_at(&kvm, 0xfe00_1234), Some((0xfe00_0000, 0x10_0000)));
        kvm.memslot(MemslotOp::Del, &section(0xfe00_0000, 0x10_0000, false))
            .unwrap();
        kvm.memslot(MemslotOp::Add, &section(0x8000_0000, 0x10_0000, false))
            .unwrap();
        assert_eq!(slot_at(&kvm, 0xfe00_1234), None);
        assert_eq!(slot_at(&kvm, 0x800f_ffff), Some((0x8000_0000, 0x10_0000)));
        assert_eq!(slot_at(&kvm, 0x8010_0000), None);
        let counts = (
            kvm.memslot_adds.load(Ordering::Relaxed),
            kvm.memslot_dels.load(Ordering::Relaxed),
        );
        assert_eq!(counts, (3, 1));
        let order: Vec<u64> = kvm
            .vm()
            .memslots()
            .iter()
            .map(|s| s.base_gfn.gpa().raw())
            .collect();
        assert_eq!(order, [0, 0x8000_0000]);
    }

    #[test]
    fn overlaps_unknown_deletions_and_empty_sections_are_refused() {
        let kvm = Kvm::with_type(VmType::Default, 1).unwrap();
        kvm.memslot(MemslotOp::Add, &section(0x1000, 0x2000, false))
            .unwrap();
        assert!(kvm
            .memslot(MemslotOp::Add, &section(0x2000, 0x1000, false))
            .is_err());
        // An unknown deletion (a ROM device that left ROMD mode) is ignored.
        assert_eq!(
            kvm.memslot(MemslotOp::Del, &section(0x1000, 0x1000, false)),
            Ok(Effects::NONE)
        );
        assert!(kvm
            .memslot(MemslotOp::Add, &section(0x9000, 0, false))
            .is_err());
        assert!(kvm
            .memslot(MemslotOp::Add, &section(u64::MAX - 0xfff, 0x2000, false))
            .is_err());
        let counts = (
            kvm.memslot_adds.load(Ordering::Relaxed),
            kvm.memslot_dels.load(Ordering::Relaxed),
        );
        assert_eq!(counts, (1, 0));
        assert_eq!(slot_at(&kvm, 0x1000), Some((0x1000, 0x2000)));
    }

    #[test]
    fn a_shared_access_to_private_memory_converts_the_page() {
        let kvm = Kvm::with_type(VmType::Tdx, 1).unwrap();
        kvm.memslot(MemslotOp::Add, &section(0, 0x100_0000, false))
            .unwrap();
        let gfn = Gfn::new(0x42);
        kvm.vm()
            .set_memory_attributes(GfnRange::one(gfn), true)
            .unwrap()
            .ignore();
        // GPAW 48: the shared bit is bit 47.
        let shared = (1 << 47) | 0x42_010;
        let (a, e) = kvm.stage2(&req(shared, Access::Read));
        assert_eq!(a, Stage2Answer::Retry);
        assert_eq!(e.clear, [(0x42_000, PAGE_SIZE)]);
        assert!(!kvm.vm().is_private(gfn));
        assert!(matches!(
            kvm.stage2(&req(shared, Access::Read)).0,
            Stage2Answer::Allow { backing_gpa, .. } if backing_gpa & !0xfff == 0x42_000
        ));
        assert_eq!(kvm.implicit_conversions.load(Ordering::Relaxed), 1);
        // The private alias of the now shared page converts it back.
        assert_eq!(
            kvm.stage2(&req(0x42_010, Access::Read)).0,
            Stage2Answer::Retry
        );
        assert!(kvm.vm().is_private(gfn));
    }
}
