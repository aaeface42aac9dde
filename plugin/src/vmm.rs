//! The modelled VMM core that every VM flavour shares: KVM's generic exit
//! handling (memory-fault exits and QEMU's implicit conversions, the
//! hypercall ABI, stopping the VM) and the services a flavour's handlers
//! use (conversions, backing addresses, device-access checks). It knows no
//! flavour: where KVM's answer depends on the VM type it asks the
//! [`Flavour`] it is given.
//!
//! | model answer | KVM / QEMU | here |
//! |---|---|---|
//! | `Mmio`, `ReadOnlyWrite` | `KVM_EXIT_MMIO`, QEMU emulates | allow at the guest-physical address (alias stripped): QEMU's memory core does the MMIO or drops the ROM write; a flavour may instead show MMIO to the guest (a TD's #VE, an SNP guest's #VC) |
//! | `MemoryFault` | `KVM_EXIT_MEMORY_FAULT`, QEMU's `kvm_convert_memory()` | implicit conversion of the page, the side left discarded (zeroed), then retry; `strict=on`: the flavour's fault, or the VM stops |
//! | `MemoryFault` to private where no guest_memfd memslot is (MMIO through a TD's or SNP guest's private alias) | `kvm_convert_memory()` refuses, QEMU stops the VM | the VM stops, the access named |
//! | `SeptBlocked` | KVM retries the fault | retry |
//! | `VirtualizationException` | the TDX module injects #VE | the flavour's #VE |
//! | `ReservedGpa` | reserved bits in the guest's tables | #PF with RSVD |
//! | `PageNotValidated` | #VC(NPF, page not validated) | #VC |
//! | `RmpNestedPageFault` | a nested page fault KVM cannot resolve | #PF with the RMP bit and the nested fault's error code |
//! | `RmpSmashed` | KVM ran PSMASH and zapped | flush, retry |
//! | `RmpCiphertextRead`, `GmemPrepareFailed`, `VmDead`, `Dead`, `OutOfTables` | not guest-visible / the VM is dead / `-ENOMEM`: `KVM_RUN` fails, QEMU stops the VM | the VM stops, with a message: nothing is allowed unchecked |
//!
//! QEMU's view and the model's are kept identical: a memslot's backing
//! address is the QEMU guest-physical address where QEMU put the section,
//! so an allowed translation is a QEMU address that QEMU resolves to RAM.

use std::sync::atomic::{AtomicU64, Ordering};

use cvmem_model::{
    Access as ModelAccess, BackingAddr, DeviceAccess, Gfn, GfnRange, Gpa, Gva, Stage2, Stage2Fault,
    Vm, PAGE_SIZE,
};

use crate::effects::Effects;
use crate::flavour::Flavour;
use crate::hooks::{gpr, prot, Access, Fault, InsnAction, Regs, Stage2Answer, Stage2Request};
use crate::lifecycle::Lifecycle;

/// Exception vectors cvmem raises.
pub mod vector {
    #![allow(missing_docs)]
    pub const DF: u8 = 8;
    pub const PF: u8 = 14;
    pub const VE: u8 = 20;
    pub const VC: u8 = 29;
}

/// #PF error-code bits (Intel SDM vol. 3 4.7).
pub mod pferr {
    #![allow(missing_docs)]
    pub const PRESENT: u32 = 1 << 0;
    pub const WRITE: u32 = 1 << 1;
    pub const USER: u32 = 1 << 2;
    pub const RSVD: u32 = 1 << 3;
    pub const FETCH: u32 = 1 << 4;
    pub const RMP: u32 = 1 << 31;
}

/// #VC error code (the exit code) of an access to a page that is not
/// validated (GHCB spec, SVM_EXIT_NPF... VMGEXIT exit codes: 0x404).
const SVM_EXIT_NPF_PAGE_NOT_VALIDATED: u32 = 0x404;

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

/// The VMM core of one QEMU process: the model's VM and what KVM and QEMU
/// do with its exits, whatever the VM type.
#[derive(Debug)]
pub struct Vmm {
    vm: Vm,
    /// Implicit conversions done on memory-fault exits.
    pub implicit_conversions: AtomicU64,
    /// How the run goes: shutdowns, resets, the guest's fatal errors, and
    /// whether this KVM stopped the VM.
    pub lifecycle: Lifecycle,
    /// `strict=`: wrong-alias accesses fault instead of converting.
    strict: bool,
    /// Audit mode (an unpatched QEMU): answers are counted, not carried
    /// out, so nothing is recorded for an exception the guest never gets.
    pub audit: bool,
    /// Serialises audit mode's learning of RAM (`learn.rs`) with a TD's or
    /// SNP guest's launch: a page learned while the guest launches is
    /// either launched with it or added after, never missed.
    pub learn_lock: parking_lot::Mutex<()>,
    /// Whether QEMU's stage-2 cache takes the answers' spans
    /// ([`crate::plugin::stage2_cacheable`], never in audit mode): without
    /// it the span, which may read a whole TDP table, is not worked out.
    pub cache_spans: bool,
}

impl Vmm {
    /// The core around `vm`.
    pub fn new(vm: Vm, lifecycle: Lifecycle, strict: bool, cache_spans: bool) -> Vmm {
        Vmm {
            vm,
            implicit_conversions: AtomicU64::new(0),
            lifecycle,
            strict,
            audit: false,
            learn_lock: parking_lot::Mutex::new(()),
            cache_spans,
        }
    }

    /// The model.
    pub fn vm(&self) -> &Vm {
        &self.vm
    }

    /// The answer to `req` from the model's `stage2`: the translation it
    /// found, or what the guest sees of its fault ([`Vmm::fault_answer`],
    /// out of line). Every flavour's lookup ends here; kept inline so the
    /// common answer, a translation, costs no call.
    #[inline(always)]
    pub fn answer<F: Flavour>(
        &self,
        flavour: &F,
        req: &Stage2Request,
        stage2: Stage2,
        fx: &mut Effects,
    ) -> Stage2Answer {
        match stage2 {
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
                Stage2Answer::Allow {
                    backing: t.backing,
                    prot: p,
                    page_size: t.level.size_bytes(),
                    cache_span: if self.cache_spans {
                        flavour.stage2_cache_span(&self.vm, &t)
                    } else {
                        0
                    },
                }
            }
            Stage2::Fault(f) => self.fault_answer(flavour, req, f, fx),
        }
    }

    /// What the guest sees of a stage-2 fault: handled by KVM or QEMU and
    /// retried, allowed for QEMU's memory core, or an exception. `flavour`
    /// answers first for the faults it shows the guest its own way (see
    /// [`Flavour::guest_fault`]); effects go to `fx`.
    pub fn fault_answer(
        &self,
        flavour: &dyn Flavour,
        req: &Stage2Request,
        fault: Stage2Fault,
        fx: &mut Effects,
    ) -> Stage2Answer {
        self.fault_answer_strict(flavour, req, fault, self.strict, fx)
    }

    /// [`Vmm::fault_answer`] with `strict` in place of `strict=`.
    fn fault_answer_strict(
        &self,
        flavour: &dyn Flavour,
        req: &Stage2Request,
        fault: Stage2Fault,
        strict: bool,
        fx: &mut Effects,
    ) -> Stage2Answer {
        // A memory fault is the flavour's only with strict=on; otherwise
        // QEMU converts.
        let flavours = !matches!(fault, Stage2Fault::MemoryFault { .. }) || strict;
        if flavours {
            if let Some(answer) = flavour.guest_fault(self, req, &fault) {
                return answer;
            }
        }
        let raise = |vector, error_code, cr2| {
            Stage2Answer::Fault(Fault {
                vector,
                error_code,
                cr2,
            })
        };
        match fault {
            Stage2Fault::Mmio { gpa } | Stage2Fault::ReadOnlyWrite { gpa } => self.unaliased(gpa),
            // strict=on and the flavour has no way to tell the guest: the VM
            // stops as QEMU stops it when it refuses a memory-fault exit.
            Stage2Fault::MemoryFault { gpa, .. } if strict => self.stop(format!(
                "strict=on: vCPU {} {} of GPA {:#x} through the wrong alias",
                req.vcpu_index,
                access_name(req.access),
                gpa.raw()
            )),
            Stage2Fault::MemoryFault { gfn, private, .. } => {
                self.implicit_conversion(req, gfn, private, fx)
            }
            Stage2Fault::SeptBlocked { .. } => Stage2Answer::Retry,
            Stage2Fault::VirtualizationException { gpa, .. } => self.stop(format!(
                "EPT violation at GPA {:#x} on vCPU {}, which the TDX module does not have",
                gpa.raw(),
                req.vcpu_index
            )),
            Stage2Fault::ReservedGpa { .. } => raise(
                vector::PF,
                Some(pf_error_code(req, pferr::PRESENT | pferr::RSVD)),
                Some(req.gva.raw()),
            ),
            Stage2Fault::PageNotValidated { .. } => {
                raise(vector::VC, Some(SVM_EXIT_NPF_PAGE_NOT_VALIDATED), None)
            }
            // KVM's sev_handle_rmp_fault() ran (PSMASH and a zap): flush and
            // let the access run again.
            Stage2Fault::RmpSmashed { flush, .. } => {
                fx.push_flush(flush);
                Stage2Answer::Retry
            }
            // A nested page fault with the RMP bit that KVM cannot resolve:
            // on hardware the guest would take the same #NPF forever; cvmem
            // injects a #PF with the RMP bit (bit 31) and the rest of the
            // nested fault's error code instead, CR2 the linear address.
            Stage2Fault::RmpNestedPageFault { error_code, .. } => {
                raise(vector::PF, Some(error_code as u32), Some(req.gva.raw()))
            }
            // A read of an assigned page without the C-bit (ciphertext), a
            // failed RMPUPDATE: not modelled as guest-visible, so fail
            // closed: the VM stops.
            Stage2Fault::RmpCiphertextRead { .. }
            | Stage2Fault::GmemPrepareFailed { .. }
            | Stage2Fault::VmDead { .. }
            | Stage2Fault::Dead
            | Stage2Fault::OutOfTables => self.stop(format!(
                "vCPU {}'s {} of GPA {:#x}: {}",
                req.vcpu_index,
                access_name(req.access),
                req.gpa.raw(),
                fatal_why(&fault)
            )),
        }
    }

    /// The VM cannot go on (KVM killed it, or QEMU would have stopped it on
    /// this exit): said on stderr once, recorded for the summary, and QEMU
    /// stops the VM as it stops a KVM guest whose KVM_RUN failed. In audit
    /// mode nothing stops; every later access counts as refused.
    pub fn stop(&self, why: String) -> Stage2Answer {
        if !self.lifecycle.is_dead() {
            if self.audit {
                eprintln!(
                    "cvmem: audit: enforcing mode would have stopped the VM here: {why}; \
                     every later access counts as refused"
                );
            } else {
                eprintln!("cvmem: stopping the VM: {why}");
            }
        }
        self.lifecycle.stopped(why);
        Stage2Answer::Stop
    }

    /// Allows `req` at its guest-physical address with the alias bits
    /// stripped, for QEMU's memory core to handle (MMIO, ROM).
    fn unaliased(&self, gpa: Gpa) -> Stage2Answer {
        Stage2Answer::Allow {
            backing: self.unaliased_addr(gpa),
            prot: prot::ALL,
            page_size: PAGE_SIZE,
            cache_span: 0,
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
        fx: &mut Effects,
    ) -> Stage2Answer {
        match self.convert(GfnRange::one(gfn), private, true, fx) {
            Ok(()) => {
                self.implicit_conversions.fetch_add(1, Ordering::Relaxed);
                Stage2Answer::Retry
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
                gfn.gpa().raw() | (req.gpa.raw() & (PAGE_SIZE - 1))
            )),
            Err(e) => self.stop(format!(
                "vCPU {} {} of GPA {:#x} needs a conversion QEMU refuses: {e}",
                req.vcpu_index,
                access_name(req.access),
                gfn.gpa().raw() | (req.gpa.raw() & (PAGE_SIZE - 1))
            )),
        }
    }

    /// A memory-fault exit taken outside a translation (e.g. by a TDX
    /// ACCEPT of a page that is still shared), handled like one met at
    /// softTLB fill: `Ok` when the operation may be retried (effects in
    /// `fx`), `Err` with what the instruction does instead (raise an
    /// exception, or stop the VM). `gva` is the linear address the
    /// instruction named (CR2 of a #PF).
    pub fn exit_fault(
        &self,
        flavour: &dyn Flavour,
        vcpu: u32,
        fault: Stage2Fault,
        gva: Gva,
        fx: &mut Effects,
    ) -> Result<(), InsnAction> {
        self.exit_fault_strict(flavour, vcpu, fault, gva, self.strict, fx)
    }

    /// The TDX module's exit for TDG.MEM.PAGE.ACCEPT of a page the TD made
    /// shared: an EPT violation the module hands to the VMM, never a #VE
    /// (the module raises no #VE for ACCEPT: it returns a status or exits,
    /// TDX module `tdg_mem_page_accept.c`). KVM finds the GPA's attribute
    /// shared and exits with KVM_EXIT_MEMORY_FAULT, and QEMU converts
    /// (`kvm_convert_memory()`), whatever `strict=` says about the guest's
    /// own accesses.
    pub fn accept_exit_fault(
        &self,
        flavour: &dyn Flavour,
        vcpu: u32,
        fault: Stage2Fault,
        fx: &mut Effects,
    ) -> Result<(), InsnAction> {
        self.exit_fault_strict(flavour, vcpu, fault, Gva::new(0), false, fx)
    }

    fn exit_fault_strict(
        &self,
        flavour: &dyn Flavour,
        vcpu: u32,
        fault: Stage2Fault,
        gva: Gva,
        strict: bool,
        fx: &mut Effects,
    ) -> Result<(), InsnAction> {
        let gpa = match fault {
            Stage2Fault::MemoryFault { gpa, .. } | Stage2Fault::VmDead { gpa } => gpa,
            _ => Gpa::new(0),
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
        let mut effects = Effects::NONE;
        match self.fault_answer_strict(flavour, &req, fault, strict, &mut effects) {
            Stage2Answer::Fault(f) => Err(InsnAction::Fault(f)),
            Stage2Answer::Stop => Err(InsnAction::Stop),
            _ => {
                fx.merge(effects);
                Ok(())
            }
        }
    }

    /// A guest VMCALL: KVM's hypercall ABI (`kvm_emulate_hypercall()` in
    /// arch/x86/kvm/x86.c), for a VM of `flavour`. Writes the status to
    /// RAX; returns what to do in QEMU to `fx`.
    pub fn hypercall(&self, flavour: &dyn Flavour, regs: &mut Regs, fx: &mut Effects) {
        let nr = regs.gpr[gpr::RAX];
        let status = if regs.cpl != 0 {
            // Hypercalls are for the guest kernel only.
            hc::err(hc::KVM_EPERM)
        } else if nr == hc::KVM_HC_MAP_GPA_RANGE && flavour.map_gpa_range_hypercall() {
            let (a0, a1, a2) = (regs.gpr[gpr::RBX], regs.gpr[gpr::RCX], regs.gpr[gpr::RDX]);
            match self.map_gpa_range(a0, a1, a2, fx) {
                Ok(()) => 0,
                Err(code) => hc::err(code),
            }
        } else {
            // Unknown, or not enabled for this VM type (KVM exits to
            // userspace for KVM_HC_MAP_GPA_RANGE only where the VMM turned
            // on KVM_CAP_EXIT_HYPERCALL; QEMU does for private memory).
            hc::err(hc::KVM_ENOSYS)
        };
        regs.gpr[gpr::RAX] = status;
    }

    /// KVM_HC_MAP_GPA_RANGE: KVM checks the range (`PAGE_ALIGNED(gpa)`, a
    /// non-zero page count that does not wrap), then exits to QEMU, which
    /// converts (`kvm_handle_hc_map_gpa_range()` -> `kvm_convert_memory()`):
    /// KVM_SET_MEMORY_ATTRIBUTES, and the content of the side being left is
    /// discarded. Where QEMU would stop the VM (a range that is not
    /// private-capable RAM, reserved attribute bits, which hypercalls.rst
    /// says must be zero), cvmem returns `-KVM_EINVAL` to the guest instead
    /// and says so on stderr.
    fn map_gpa_range(
        &self,
        gpa: u64,
        npages: u64,
        attrs: u64,
        fx: &mut Effects,
    ) -> Result<(), u64> {
        let gfn = Gpa::new(gpa).gfn();
        if gpa % PAGE_SIZE != 0 || npages == 0 || gfn.checked_add(npages).is_none() {
            return Err(hc::KVM_EINVAL);
        }
        let reserved = !(hc::KVM_MAP_GPA_RANGE_PAGE_SZ_MASK | hc::KVM_MAP_GPA_RANGE_ENCRYPTED);
        if attrs & reserved != 0 || attrs & hc::KVM_MAP_GPA_RANGE_PAGE_SZ_MASK > 2 {
            eprintln!("cvmem: KVM_HC_MAP_GPA_RANGE: reserved attribute bits in {attrs:#x}");
            return Err(hc::KVM_EINVAL);
        }
        let private = attrs & hc::KVM_MAP_GPA_RANGE_ENCRYPTED != 0;
        let range = GfnRange::from_start_len(gfn, npages).ok_or(hc::KVM_EINVAL)?;
        self.convert(range, private, false, fx).map_err(|e| {
            eprintln!("cvmem: KVM_HC_MAP_GPA_RANGE {gpa:#x}+{npages} pages: {e}");
            hc::KVM_EINVAL
        })
    }

    /// Converts `range` to private or shared as QEMU's `kvm_convert_memory()`
    /// does: KVM_SET_MEMORY_ATTRIBUTES, and the content of every frame that
    /// changes side is discarded. QEMU converts only guest_memfd-backed RAM;
    /// with `lenient_shared` a conversion to shared of space that is not
    /// such RAM (MMIO a TD shares) is accepted, as QEMU accepts it. The
    /// flush and the discarded ranges go to `fx`.
    pub fn convert(
        &self,
        range: GfnRange,
        private: bool,
        lenient_shared: bool,
        fx: &mut Effects,
    ) -> Result<(), String> {
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
        fx.push_flush(self.vm.flush(flush));
        fx.clear
            .extend(changing.iter().flat_map(|&r| self.backing_ranges(r)));
        Ok(())
    }

    /// The QEMU ranges (start, bytes) backing the frames of `range` that
    /// memslots hold. Backing addresses are QEMU guest-physical addresses
    /// (see the module comment): a slot QEMU reported maps frames to
    /// themselves, one moved or made through the control socket need not.
    pub fn backing_ranges(&self, range: GfnRange) -> Vec<(BackingAddr, u64)> {
        let slots = self.vm.memslots();
        slots
            .iter()
            .filter_map(|s| Some((s, s.range().intersect(range)?)))
            .map(|(s, r)| (s.backing_of(r.start()), r.len() * PAGE_SIZE))
            .collect()
    }

    /// Whether a device or the host (a device's DMA, a host write through
    /// the control socket, GHCB MMIO emulation) may touch QEMU's memory at
    /// `qemu_addr` once the guest runs: not if a GPA the guest uses for it
    /// is private (TDX private pages and SNP guest-owned pages are out of a
    /// device's reach; a sw-protected VM's private memory is guest_memfd,
    /// which QEMU does not map). Those GPAs differ from the address for a
    /// slot that was moved or aliased (see the module comment on backing
    /// addresses).
    pub fn device_access_allowed(&self, qemu_addr: BackingAddr) -> bool {
        self.vm.device_access_backing(qemu_addr, false) == DeviceAccess::Allowed
    }

    /// The QEMU address backing `gfn`, if a memslot holds it.
    pub fn backing_of(&self, gfn: Gfn) -> Option<BackingAddr> {
        let slots = self.vm.memslots();
        let slot = slots.find(gfn)?;
        Some(slot.pfn_of(gfn).addr())
    }

    /// `gpa` with its alias bits removed, taken as a QEMU address: where
    /// QEMU's memory core finds what no memslot holds (MMIO, ROM, holes),
    /// as QEMU handles an MMIO exit at the guest-physical address.
    pub fn unaliased_addr(&self, gpa: Gpa) -> BackingAddr {
        BackingAddr::new(
            self.vm
                .decode(gpa)
                .map_or(gpa.raw(), |d| d.gfn.gpa().raw() | d.offset),
        )
    }

    /// The QEMU address of the guest-physical address `gpa` (alias bits
    /// ignored): its memslot's backing if one holds it, else the address
    /// itself as QEMU sees MMIO ([`Vmm::unaliased_addr`]). The one
    /// crossing from the guest's address space to QEMU's: a memslot that
    /// was moved or made through the control socket has a backing other
    /// than its GPA.
    pub fn qemu_addr(&self, gpa: Gpa) -> BackingAddr {
        self.vm
            .decode(gpa)
            .and_then(|d| Some(BackingAddr::new(self.backing_of(d.gfn)?.raw() | d.offset)))
            .unwrap_or_else(|| self.unaliased_addr(gpa))
    }
}

/// The #PF error code of `req` with `base` (PRESENT and RSVD or RMP): W for
/// a write that is not a page-walk access (the walker's A/D updates are
/// reported as writes), I/D for a fetch, U/S at CPL 3.
pub fn pf_error_code(req: &Stage2Request, base: u32) -> u32 {
    let mut code = base;
    match req.access {
        Access::Write if !req.page_walk => code |= pferr::WRITE,
        Access::Fetch => code |= pferr::FETCH,
        _ => {}
    }
    if req.cpl == 3 {
        code |= pferr::USER;
    }
    code
}

/// "read", "write" or "fetch", for messages.
pub fn access_name(access: Access) -> &'static str {
    match access {
        Access::Read => "read",
        Access::Write => "write",
        Access::Fetch => "fetch",
    }
}

/// The model's name for a QEMU access kind.
pub fn model_access(access: Access) -> ModelAccess {
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

/// Why a stage-2 fault ends the VM, in a line (the summary's first).
fn fatal_why(fault: &Stage2Fault) -> String {
    match fault {
        Stage2Fault::VmDead { .. } => "the TD touched a page it has not accepted, with \
            SEPT_VE_DISABLE set, so KVM killed it (\"Guest access before accepting\")"
            .into(),
        Stage2Fault::RmpCiphertextRead { .. } => "a C-bit-clear read of a page assigned to \
            the guest, which returns ciphertext on hardware; cvmem has none to give"
            .into(),
        Stage2Fault::GmemPrepareFailed { error, .. } => {
            format!("KVM could not prepare the guest_memfd page (RMPUPDATE: {error:?})")
        }
        Stage2Fault::OutOfTables => "the model's page-table arena is exhausted".into(),
        Stage2Fault::Dead => "the VM was already torn down".into(),
        other => format!("{other:?}"),
    }
}
