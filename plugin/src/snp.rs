//! The SEV-SNP guest interface for `vm-type=snp`: what the SNP hardware and
//! firmware (PVALIDATE, RMPADJUST, #VC, SNP_LAUNCH_UPDATE) and KVM's GHCB
//! handling give a guest.
//!
//! Oracles: AMD APM vol. 2 §15.35 (SEV-ES: #VC, the GHCB MSR), §15.36 (the
//! RMP, PVALIDATE, RMPADJUST); the GHCB specification (MSR protocol, NAE
//! events, page layout); Linux `arch/x86/include/asm/sev-common.h` and
//! `svm.h` (the encodings a guest uses); `arch/x86/kvm/svm/sev.c` (what KVM
//! answers: `sev_handle_vmgexit()`, `sev_es_validate_vmgexit()`,
//! `sev_handle_vmgexit_msr_protocol()`, `setup_vmgexit_scratch()`,
//! `snp_begin_psc()`).
//!
//! | guest does | here |
//! |---|---|
//! | CPUID 0x8000001F, SEV_STATUS (0xC0010131) | SEV, SEV-ES, SNP, VMPL; C-bit 51, 4 VMPLs; status SEV/SEV-ES/SNP and nothing else |
//! | GHCB MSR (0xC0010130) | per vCPU, read and written without an intercept |
//! | CPUID, RDMSR/WRMSR (intercepted MSRs), IN/OUT/INS/OUTS, VMMCALL, MMIO | #VC with the SVM exit code, once launched |
//! | HLT | no #VC: an automatic exit (KVM halts the vCPU; Linux's #VC handler has no HLT case), so QEMU halts it |
//! | VMGEXIT, MSR protocol | SEV info, CPUID, GHCB GPA registration, page-state change, hypervisor features, termination |
//! | VMGEXIT, GHCB page | CPUID, IOIO (string forms too), MSR, VMMCALL (KVM hypercalls), MMIO, page-state change (partial progress every `map-gpa-chunk=`), AP jump table, AP HLT loop (returns at once), NMI complete, HV features, termination; HLT (0x78) is not a GHCB event (KVM's `sev_es_validate_vmgexit()`: GHCB_ERR_INVALID_EVENT) |
//! | SNP_GUEST_REQUEST | **unsupported**: `SNP_GUEST_ERR(SNP_GUEST_VMM_ERR_GENERIC, 0)`; cvmem has no AMD-SP to sign a report |
//! | PVALIDATE, RMPADJUST | RAX translated through the guest's page tables, then the model's RMP |
//!
//! Launch. cvmem has no OVMF: SeaBIOS and QEMU's Multiboot loader run before
//! launch (paging off, nothing checked, nothing intercepted). The first
//! guest access with paging on launches the guest: SNP_LAUNCH_UPDATE of the
//! private RAM below `accept=` (validated, content kept), the rest private,
//! unvalidated and zeroed as fresh guest_memfd pages are.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Once;

use cvmem_model::{Gfn, GfnRange, Gpa, SnpInsnOutcome, VcpuId, Vmpl, PAGE_SIZE};
use parking_lot::Mutex;

use crate::args::AcceptPolicy;
use crate::hooks::{gpr, Fault, Host, Insn, InsnAction, Regs, RFLAGS_CF};
use crate::kvm::{vector, Effects, Kvm};
use crate::paging;

/// The SEV MSRs.
pub mod msr {
    /// The GHCB MSR (APM §15.35.5).
    pub const GHCB: u32 = 0xC001_0130;
    /// SEV_STATUS, read only (APM §15.34.10).
    pub const SEV_STATUS: u32 = 0xC001_0131;
}

/// SEV_STATUS: SEV, SEV-ES and SNP enabled; no optional feature (vTOM,
/// reflect-#VC, restricted injection, secure TSC...) is modelled.
pub const SEV_STATUS_VALUE: u64 = 0b111;

/// SVM exit codes used as #VC error codes and GHCB `SW_EXITCODE`s (APM
/// vol. 2 appendix C, GHCB spec table "NAE events").
pub mod exit {
    #![allow(missing_docs)]
    pub const CPUID: u64 = 0x72;
    pub const HLT: u64 = 0x78;
    pub const IOIO: u64 = 0x7b;
    pub const MSR: u64 = 0x7c;
    pub const VMMCALL: u64 = 0x81;
    pub const NPF: u64 = 0x400;
    pub const MMIO_READ: u64 = 0x8000_0001;
    pub const MMIO_WRITE: u64 = 0x8000_0002;
    pub const NMI_COMPLETE: u64 = 0x8000_0003;
    pub const AP_HLT_LOOP: u64 = 0x8000_0004;
    pub const AP_JUMP_TABLE: u64 = 0x8000_0005;
    pub const PSC: u64 = 0x8000_0010;
    pub const GUEST_REQUEST: u64 = 0x8000_0011;
    pub const EXT_GUEST_REQUEST: u64 = 0x8000_0012;
    pub const HV_FEATURES: u64 = 0x8000_FFFD;
    pub const TERM_REQUEST: u64 = 0x8000_FFFE;
    pub const UNSUPPORTED_EVENT: u64 = 0x8000_FFFF;
}

/// The GHCB MSR protocol (sev-common.h): request and response codes in
/// bits 11:0, data above.
pub mod msr_protocol {
    #![allow(missing_docs)]
    pub const INFO_MASK: u64 = 0xfff;
    pub const SEV_INFO_RESP: u64 = 0x001;
    pub const SEV_INFO_REQ: u64 = 0x002;
    pub const CPUID_REQ: u64 = 0x004;
    pub const CPUID_RESP: u64 = 0x005;
    pub const REG_GPA_REQ: u64 = 0x012;
    pub const REG_GPA_RESP: u64 = 0x013;
    pub const PSC_REQ: u64 = 0x014;
    pub const PSC_RESP: u64 = 0x015;
    /// KVM's generic failure answer: bit 63 set in the error field.
    pub const PSC_RESP_ERROR: u64 = (1 << 63) | PSC_RESP;
    pub const HV_FT_REQ: u64 = 0x080;
    pub const HV_FT_RESP: u64 = 0x081;
    pub const TERM_REQ: u64 = 0x100;
    /// The GHCB protocol versions KVM offers (`GHCB_VERSION_MAX/MIN`).
    pub const VERSION_MAX: u64 = 2;
    pub const VERSION_MIN: u64 = 1;
    /// Hypervisor features: SNP (the only one cvmem has; no AP creation).
    pub const HV_FT_SNP: u64 = 1 << 0;
    /// Page-state change operations.
    pub const PSC_OP_PRIVATE: u64 = 1;
    pub const PSC_OP_SHARED: u64 = 2;
}

/// Errors reported with `SW_EXITINFO1 = 2` (sev-common.h `GHCB_ERR_*`).
pub mod ghcb_err {
    #![allow(missing_docs)]
    pub const NOT_REGISTERED: u64 = 1;
    pub const INVALID_USAGE: u64 = 2;
    pub const INVALID_SCRATCH_AREA: u64 = 3;
    pub const MISSING_INPUT: u64 = 4;
    pub const INVALID_INPUT: u64 = 5;
    pub const INVALID_EVENT: u64 = 6;
}

/// Page-state change results in `SW_EXITINFO2` (KVM's `VMGEXIT_PSC_ERROR_*`).
pub mod psc_err {
    #![allow(missing_docs)]
    pub const INVALID_HDR: u64 = (1 << 32) | 1;
    pub const INVALID_ENTRY: u64 = (1 << 32) | 2;
    pub const GENERIC: u64 = 0x100 << 32;
    /// At most this many entries in a descriptor (`VMGEXIT_PSC_MAX_ENTRY`).
    pub const MAX_ENTRY: u64 = 253;
}

/// `SNP_GUEST_ERR(SNP_GUEST_VMM_ERR_GENERIC, 0)`: the answer to every guest
/// request (include/uapi/linux/sev-guest.h).
pub const GUEST_REQUEST_UNSUPPORTED: u64 = 0xFFFF_FFFF_0000_0000;

/// The event a refused MSR access asks the guest to raise: #GP, an
/// exception, valid (`X86_TRAP_GP | SVM_EVTINJ_TYPE_EXEPT | SVM_EVTINJ_VALID`).
pub const GP_EVENT: u64 = 13 | (3 << 8) | (1 << 31);

/// Offsets in the GHCB page (Linux `struct ghcb`, GHCB spec table 3). A
/// field's bit in the valid bitmap is its offset / 8.
mod off {
    pub const CPL: usize = 0xcb;
    pub const RAX: usize = 0x1f8;
    pub const RCX: usize = 0x308;
    pub const RDX: usize = 0x310;
    pub const RBX: usize = 0x318;
    pub const RSI: usize = 0x330;
    pub const EXIT_CODE: usize = 0x390;
    pub const EXIT_INFO_1: usize = 0x398;
    pub const EXIT_INFO_2: usize = 0x3a0;
    pub const SCRATCH: usize = 0x3a8;
    pub const XCR0: usize = 0x3e8;
    pub const VALID_BITMAP: usize = 0x3f0;
    pub const SHARED_BUFFER: usize = 0x800;
    pub const SHARED_BUFFER_LEN: usize = 2032;
    pub const USAGE: usize = 0xffc;
}

/// A scratch area outside the GHCB may span this much
/// (`GHCB_SCRATCH_AREA_LIMIT`).
const SCRATCH_AREA_LIMIT: u64 = 16 * PAGE_SIZE;

/// Counters for the summary.
#[derive(Debug, Default)]
pub struct SnpStats {
    /// VMGEXITs.
    pub vmgexits: AtomicU64,
    /// ... of them through the MSR protocol.
    pub msr_protocol: AtomicU64,
    /// #VCs raised: intercepted instructions, MMIO, unvalidated pages.
    pub vcs: AtomicU64,
    /// PVALIDATEs.
    pub pvalidates: AtomicU64,
    /// RMPADJUSTs.
    pub rmpadjusts: AtomicU64,
    /// Pages converted by page-state changes.
    pub psc_pages: AtomicU64,
    /// GHCB requests refused with an error.
    pub ghcb_errors: AtomicU64,
    /// Page-state changes refused (not private-capable RAM: QEMU's
    /// `kvm_convert_memory()` fails them).
    pub psc_refused: AtomicU64,
    /// Pages launched with SNP_LAUNCH_UPDATE.
    pub pages_launched: AtomicU64,
}

/// Per-vCPU state.
#[derive(Debug, Default)]
struct SnpVcpu {
    /// The GHCB MSR.
    ghcb_msr: u64,
    /// The GHCB GPA registered through the MSR protocol.
    registered: Option<u64>,
}

/// The SNP side of one guest: firmware, hardware and KVM's GHCB handling.
#[derive(Debug)]
pub struct SnpFirmware {
    vcpus: Box<[Mutex<SnpVcpu>]>,
    /// The SEV-ES AP jump table the guest set.
    ap_jump_table: AtomicU64,
    launched: AtomicBool,
    launch: Once,
    /// `accept=`: RAM below it is launched (validated).
    pub accept: AcceptPolicy,
    /// `map-gpa-chunk=`: a GHCB page-state change converts at most this many
    /// bytes per VMGEXIT, then returns with the progress recorded.
    pub psc_chunk: u64,
    /// Counters.
    pub stats: SnpStats,
}

fn fault(vector: u8, error_code: Option<u32>, cr2: Option<u64>) -> Fault {
    Fault {
        vector,
        error_code,
        cr2,
    }
}

/// #VC with `exit_code`: an intercepted instruction of an SEV-ES guest
/// (APM §15.35.4).
fn vc(exit_code: u64) -> InsnAction {
    InsnAction::Fault(fault(vector::VC, Some(exit_code as u32), None))
}

fn gp0() -> InsnAction {
    InsnAction::Fault(fault(13, Some(0), None))
}

/// The MSRs whose state lives in the VMSA, which KVM does not intercept for
/// an SEV-ES guest (arch/x86/kvm/svm/svm.c `direct_access_msrs`,
/// `sev_es_init_vmcb()`): they run natively.
fn msr_passes_through(msr: u32) -> bool {
    matches!(
        msr,
        0xC000_0080..=0xC000_0084 // EFER, STAR, LSTAR, CSTAR, SFMASK
            | 0xC000_0100..=0xC000_0103 // FS/GS/KERNEL_GS_BASE, TSC_AUX
            | 0x174..=0x176 // SYSENTER_CS/ESP/EIP
            | 0x277 // PAT
    )
}

/// A human name for a termination reason (sev-common.h reason sets 0 and 1).
fn term_reason(set: u64, code: u64) -> &'static str {
    match (set, code) {
        (0, 0) => "general termination request",
        (0, 1) => "GHCB protocol version not supported",
        (0, 2) => "SNP not supported",
        (1, 0) => "GHCB registration failed",
        (1, 1) => "page-state change failed",
        (1, 2) => "PVALIDATE failed",
        (1, 3) => "not running at VMPL0",
        _ => "unknown reason",
    }
}

impl SnpFirmware {
    /// The SNP side of a guest with `max_vcpus` vCPUs.
    pub fn new(max_vcpus: u32, accept: AcceptPolicy, psc_chunk: u64) -> SnpFirmware {
        SnpFirmware {
            vcpus: (0..max_vcpus.max(1))
                .map(|_| Mutex::new(SnpVcpu::default()))
                .collect(),
            ap_jump_table: AtomicU64::new(0),
            launched: AtomicBool::new(false),
            launch: Once::new(),
            accept,
            psc_chunk: psc_chunk.max(PAGE_SIZE),
            stats: SnpStats::default(),
        }
    }

    /// Whether the guest runs (SNP_LAUNCH_FINISH done).
    pub fn launched(&self) -> bool {
        self.launched.load(Ordering::Acquire)
    }

    /// Launches the guest once, on its first access with paging on (see the
    /// module comment): SNP_LAUNCH_UPDATE of the private RAM below
    /// `accept=`, and the rest zeroed (guest_memfd hands out cleared pages).
    /// Returns the memory to clear.
    pub fn ensure_launched(&self, kvm: &Kvm) -> Effects {
        let mut effects = Effects::NONE;
        if self.launched() {
            return effects;
        }
        self.launch.call_once(|| {
            // No memslot appears while the guest launches: audit mode's
            // learning decides by launched() what a new page gets.
            let _ram = kvm.qemu_ram.lock();
            let vm = kvm.vm();
            let limit = self.accept.ready_below_gfn();
            let slots = vm.memslots();
            for slot in slots.iter().filter(|s| s.private_capable()) {
                let r = slot.range();
                let split = Gfn::new(r.end().raw().min(limit).max(r.start().raw()));
                if let Some(launch) = GfnRange::new(r.start(), split).filter(|g| !g.is_empty()) {
                    match vm.snp_launch_update(launch) {
                        Ok(n) => {
                            self.stats.pages_launched.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(e) => eprintln!(
                            "cvmem: SNP_LAUNCH_UPDATE of {:#x}..{:#x} failed: {e:?}",
                            launch.start().gpa().raw(),
                            launch.end().gpa().raw()
                        ),
                    }
                }
                if let Some(rest) = GfnRange::new(split, r.end()).filter(|g| !g.is_empty()) {
                    effects.clear.extend(kvm.backing_ranges(rest));
                }
            }
            self.launched.store(true, Ordering::Release);
        });
        effects
    }

    /// Audit mode: `gfn` is RAM learned after launch (`learn.rs`), which
    /// enforcing mode knew at launch. Below `accept=` it is launched now
    /// (SNP_LAUNCH_UPDATE: assigned, validated); above it stays as launch
    /// left it, unvalidated (the zeroing is not done: audit mode only
    /// observes). Before launch nothing is done: the launch takes it. The
    /// caller holds `Kvm::qemu_ram`.
    pub fn add_learned(&self, kvm: &Kvm, gfn: Gfn) {
        if !self.launched() || gfn.raw() >= self.accept.ready_below_gfn() {
            return;
        }
        match kvm.vm().snp_launch_update(GfnRange::one(gfn)) {
            Ok(n) => {
                self.stats.pages_launched.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => eprintln!(
                "cvmem: audit: SNP_LAUNCH_UPDATE of {:#x}: {e:?}",
                gfn.gpa().raw()
            ),
        }
    }

    fn vcpu(&self, vcpu: u32) -> Option<&Mutex<SnpVcpu>> {
        self.vcpus.get(vcpu as usize)
    }

    /// CPUID as an SNP guest sees it (through #VC and the GHCB, or natively
    /// before launch): QEMU's CPU model with the memory-encryption leaf.
    pub fn cpuid(&self, kvm: &Kvm, leaf: u32, subleaf: u32, host: &dyn Host) -> [u32; 4] {
        match leaf {
            0x8000_0000 => {
                let mut r = host.cpuid(leaf, 0);
                r[0] = r[0].max(0x8000_001F);
                r
            }
            // EAX: SEV (1), SEV-ES (3), SNP (4), VMPL (5); EBX: C-bit
            // position, no physical address bit reduction, 4 VMPLs (APM
            // vol. 3, CPUID Fn8000_001F).
            0x8000_001F => {
                let c_bit = u32::from(kvm.vm().config().c_bit);
                [
                    (1 << 1) | (1 << 3) | (1 << 4) | (1 << 5),
                    c_bit | (4 << 12),
                    0,
                    0,
                ]
            }
            _ => host.cpuid(leaf, subleaf),
        }
    }

    /// RDMSR as the guest gets it: the SEV MSRs here, the rest from QEMU.
    fn rdmsr(&self, vcpu: u32, msr: u32, host: &dyn Host) -> Option<u64> {
        match msr {
            msr::SEV_STATUS => Some(SEV_STATUS_VALUE),
            msr::GHCB => Some(self.vcpu(vcpu).map_or(0, |v| v.lock().ghcb_msr)),
            _ => host.rdmsr(msr),
        }
    }

    /// WRMSR; `false` for #GP.
    fn wrmsr(&self, vcpu: u32, msr: u32, value: u64, host: &dyn Host) -> bool {
        match msr {
            msr::SEV_STATUS => false,
            msr::GHCB => {
                if let Some(v) = self.vcpu(vcpu) {
                    v.lock().ghcb_msr = value;
                }
                true
            }
            _ => host.wrmsr(msr, value),
        }
    }

    /// Handles an instruction of an SNP guest.
    pub fn insn(
        &self,
        kvm: &Kvm,
        vcpu: u32,
        insn: Insn,
        regs: &mut Regs,
        host: &dyn Host,
    ) -> (InsnAction, Effects) {
        let launched = self.launched();
        let intercept = |exit_code| {
            self.stats.vcs.fetch_add(1, Ordering::Relaxed);
            (vc(exit_code), Effects::NONE)
        };
        match insn {
            Insn::Vmgexit => self.vmgexit(kvm, vcpu, host),
            Insn::Pvalidate => self.rmp_insn(kvm, vcpu, regs, host, true),
            Insn::Rmpadjust => self.rmp_insn(kvm, vcpu, regs, host, false),
            Insn::Cpuid if launched => intercept(exit::CPUID),
            Insn::Cpuid => {
                let out = self.cpuid(
                    kvm,
                    regs.gpr[gpr::RAX] as u32,
                    regs.gpr[gpr::RCX] as u32,
                    host,
                );
                for (r, v) in [gpr::RAX, gpr::RBX, gpr::RCX, gpr::RDX]
                    .into_iter()
                    .zip(out)
                {
                    regs.gpr[r] = u64::from(v);
                }
                (InsnAction::Done, Effects::NONE)
            }
            Insn::Rdmsr | Insn::Wrmsr => {
                let m = regs.gpr[gpr::RCX] as u32;
                if m != msr::SEV_STATUS && m != msr::GHCB {
                    if launched && !msr_passes_through(m) {
                        return intercept(exit::MSR);
                    }
                    return (InsnAction::Decline, Effects::NONE);
                }
                if insn == Insn::Wrmsr {
                    let value = (regs.gpr[gpr::RDX] << 32) | (regs.gpr[gpr::RAX] & 0xffff_ffff);
                    if !self.wrmsr(vcpu, m, value, host) {
                        return (gp0(), Effects::NONE);
                    }
                } else {
                    let value = self.rdmsr(vcpu, m, host).unwrap_or(0);
                    regs.gpr[gpr::RAX] = value & 0xffff_ffff;
                    regs.gpr[gpr::RDX] = value >> 32;
                }
                (InsnAction::Done, Effects::NONE)
            }
            Insn::Ioio if launched => intercept(exit::IOIO),
            Insn::Vmmcall if launched => intercept(exit::VMMCALL),
            // Before launch VMMCALL is KVM's hypercall, as for any AMD guest.
            Insn::Vmmcall => (InsnAction::Done, kvm.hypercall(regs)),
            _ => (InsnAction::Decline, Effects::NONE),
        }
    }

    /// PVALIDATE (`pvalidate`) or RMPADJUST: RAX is a linear address,
    /// translated through the guest's page tables; then the model's RMP.
    /// An exit on the way (the page is shared: KVM's memory-fault exit, the
    /// VMM converts; a 2M RMP page under a 4K request: PSMASH) is handled and
    /// the instruction runs again, as the guest would re-execute it.
    fn rmp_insn(
        &self,
        kvm: &Kvm,
        vcpu: u32,
        regs: &mut Regs,
        host: &dyn Host,
        pvalidate: bool,
    ) -> (InsnAction, Effects) {
        if regs.cpl != 0 {
            return (gp0(), Effects::NONE);
        }
        let counter = if pvalidate {
            &self.stats.pvalidates
        } else {
            &self.stats.rmpadjusts
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let vm = kvm.vm();
        let alias_mask = vm.alias().alias_mask();
        let gpa = match paging::linear_to_gpa(regs, regs.gpr[gpr::RAX], alias_mask, host) {
            Ok(gpa) => Gpa::new(gpa),
            Err(f) => return (InsnAction::Fault(f), Effects::NONE),
        };
        let (rcx, rdx) = (regs.gpr[gpr::RCX], regs.gpr[gpr::RDX]);
        let mut effects = Effects::NONE;
        // Each exit resolves one obstacle (a conversion, a PSMASH); more
        // than a few in a row means another vCPU keeps undoing them.
        for _ in 0..8 {
            let outcome = if pvalidate {
                vm.snp_pvalidate(VcpuId(vcpu), gpa, Vmpl::Vmpl0, rcx, rdx & 1 != 0)
            } else {
                vm.snp_rmpadjust(VcpuId(vcpu), gpa, Vmpl::Vmpl0, rcx, rdx)
            };
            match outcome {
                SnpInsnOutcome::Completed { eax, cf, flush } => {
                    regs.gpr[gpr::RAX] = u64::from(eax);
                    if pvalidate {
                        regs.rflags = (regs.rflags & !RFLAGS_CF) | if cf { RFLAGS_CF } else { 0 };
                    }
                    effects.merge(Effects::flush(vm.flush(flush)));
                    return (InsnAction::Done, effects);
                }
                SnpInsnOutcome::Retry { flush } => effects.merge(Effects::flush(vm.flush(flush))),
                SnpInsnOutcome::Fault(f) => match kvm.exit_fault(vcpu, f, regs.gpr[gpr::RAX]) {
                    Ok(e) => effects.merge(e),
                    Err(action) => return (action, effects),
                },
                SnpInsnOutcome::Unsupported => return (InsnAction::Decline, effects),
            }
        }
        // Other vCPUs kept undoing what each exit resolved: KVM would
        // loop; cvmem stops rather than spin.
        kvm.stop(format!(
            "{} on vCPU {vcpu} made no progress in 8 exits",
            if pvalidate { "PVALIDATE" } else { "RMPADJUST" }
        ));
        (InsnAction::Stop, effects)
    }

    /// VMGEXIT: the MSR protocol when the GHCB MSR carries a request code,
    /// else the GHCB page it points to.
    fn vmgexit(&self, kvm: &Kvm, vcpu: u32, host: &dyn Host) -> (InsnAction, Effects) {
        self.stats.vmgexits.fetch_add(1, Ordering::Relaxed);
        let Some(state) = self.vcpu(vcpu) else {
            return (InsnAction::Done, Effects::NONE);
        };
        let (value, registered) = {
            let s = state.lock();
            (s.ghcb_msr, s.registered)
        };
        if value & msr_protocol::INFO_MASK != 0 {
            self.stats.msr_protocol.fetch_add(1, Ordering::Relaxed);
            let (response, effects) = self.msr_protocol(kvm, value, host);
            let mut s = state.lock();
            s.ghcb_msr = response;
            if response & msr_protocol::INFO_MASK == msr_protocol::REG_GPA_RESP {
                s.registered = Some(response & !msr_protocol::INFO_MASK);
            }
            return (InsnAction::Done, effects);
        }
        (
            InsnAction::Done,
            self.ghcb_page(kvm, vcpu, value, registered, host),
        )
    }

    /// One MSR-protocol request; returns the new GHCB MSR value. An unknown
    /// request leaves the MSR as it is, as KVM does.
    fn msr_protocol(&self, kvm: &Kvm, value: u64, host: &dyn Host) -> (u64, Effects) {
        use msr_protocol as p;
        let data = value >> 12;
        match value & p::INFO_MASK {
            p::SEV_INFO_REQ => {
                let c_bit = u64::from(kvm.vm().config().c_bit);
                let info = (p::VERSION_MAX << 48) | (p::VERSION_MIN << 32) | (c_bit << 24);
                (info | p::SEV_INFO_RESP, Effects::NONE)
            }
            p::CPUID_REQ => {
                let reg = (value >> 30) & 3;
                let out = self.cpuid(kvm, (value >> 32) as u32, 0, host);
                let v = u64::from(out[reg as usize]);
                ((v << 32) | (reg << 30) | p::CPUID_RESP, Effects::NONE)
            }
            // KVM records the GFN and echoes it (sev.c, GHCB_MSR_REG_GPA_REQ).
            p::REG_GPA_REQ => ((data << 12) | p::REG_GPA_RESP, Effects::NONE),
            p::PSC_REQ => {
                let gfn = data & ((1 << 40) - 1);
                let op = (value >> 52) & 0xf;
                if op != p::PSC_OP_PRIVATE && op != p::PSC_OP_SHARED {
                    return (p::PSC_RESP_ERROR, Effects::NONE);
                }
                match kvm.convert(GfnRange::one(Gfn::new(gfn)), op == p::PSC_OP_PRIVATE, false) {
                    Ok(effects) => {
                        self.stats.psc_pages.fetch_add(1, Ordering::Relaxed);
                        (p::PSC_RESP, effects)
                    }
                    Err(_) => {
                        self.stats.psc_refused.fetch_add(1, Ordering::Relaxed);
                        (p::PSC_RESP_ERROR, Effects::NONE)
                    }
                }
            }
            p::HV_FT_REQ => ((p::HV_FT_SNP << 12) | p::HV_FT_RESP, Effects::NONE),
            p::TERM_REQ => {
                self.terminate(kvm, (value >> 12) & 0xf, (value >> 16) & 0xff, host);
                (value, Effects::NONE)
            }
            _ => (value, Effects::NONE),
        }
    }

    /// The guest asked to be terminated: say why and stop the VM as QEMU
    /// does on KVM's SEV termination event.
    fn terminate(&self, kvm: &Kvm, set: u64, code: u64, host: &dyn Host) {
        let why = format!(
            "the SNP guest requested termination: reason set {set}, code {code} ({})",
            term_reason(set, code)
        );
        eprintln!("cvmem: {why}");
        kvm.lifecycle.guest_panic(why);
        host.guest_panicked();
    }

    /// A VMGEXIT through the GHCB page at `gpa`. KVM ignores a VMGEXIT whose
    /// GHCB it cannot map; here that is one that is not shared RAM (a
    /// private page would show the host ciphertext). An unregistered GHCB,
    /// which KVM refuses for SNP, gets `GHCB_ERR_NOT_REGISTERED`.
    fn ghcb_page(
        &self,
        kvm: &Kvm,
        vcpu: u32,
        gpa: u64,
        registered: Option<u64>,
        host: &dyn Host,
    ) -> Effects {
        let Some(backing) = self.shared_backing(kvm, gpa) else {
            return Effects::NONE;
        };
        let mut page = vec![0u8; PAGE_SIZE as usize];
        if gpa % PAGE_SIZE != 0 || !host.phys_read(backing, &mut page) {
            return Effects::NONE;
        }
        let mut g = Ghcb::new(page);
        let result = if registered != Some(gpa) {
            Err(ghcb_err::NOT_REGISTERED)
        } else {
            self.nae(kvm, vcpu, gpa, &mut g, host)
        };
        let effects = match result {
            Ok(effects) => effects,
            Err(code) => {
                self.stats.ghcb_errors.fetch_add(1, Ordering::Relaxed);
                g.set(off::EXIT_INFO_1, 2);
                g.set(off::EXIT_INFO_2, code);
                Effects::NONE
            }
        };
        host.phys_write(backing, &g.page);
        effects
    }

    /// The QEMU address of the shared RAM page of `gpa` (alias bits
    /// removed), if it is one.
    fn shared_backing(&self, kvm: &Kvm, gpa: u64) -> Option<u64> {
        let vm = kvm.vm();
        let d = vm.decode(Gpa::new(gpa))?;
        if vm.is_private(d.gfn) {
            return None;
        }
        Some(kvm.backing_of(d.gfn)? | d.offset)
    }

    /// A non-automatic exit through the GHCB (`sev_es_validate_vmgexit()`
    /// then `sev_handle_vmgexit()`): `Err` is a `GHCB_ERR_*`.
    fn nae(
        &self,
        kvm: &Kvm,
        vcpu: u32,
        ghcb_gpa: u64,
        g: &mut Ghcb,
        host: &dyn Host,
    ) -> Result<Effects, u64> {
        if g.u32_at(off::USAGE) != 0 {
            return Err(ghcb_err::INVALID_USAGE);
        }
        let code = g.input(off::EXIT_CODE)?;
        let info1 = g.input(off::EXIT_INFO_1)?;
        let info2 = g.input(off::EXIT_INFO_2)?;
        g.set(off::EXIT_INFO_1, 0);
        g.set(off::EXIT_INFO_2, 0);
        let mut effects = Effects::NONE;
        match code {
            exit::CPUID => {
                let leaf = g.input(off::RAX)?;
                if leaf as u32 == 0xd {
                    g.input(off::XCR0)?;
                }
                let sub = g.optional(off::RCX);
                let out = self.cpuid(kvm, leaf as u32, sub as u32, host);
                for (o, v) in [off::RAX, off::RBX, off::RCX, off::RDX]
                    .into_iter()
                    .zip(out)
                {
                    g.set(o, u64::from(v));
                }
            }
            exit::IOIO => self.ioio(kvm, ghcb_gpa, info1, info2, g, host)?,
            exit::MSR => {
                let m = g.input(off::RCX)? as u32;
                if info1 == 0 {
                    match self.rdmsr(vcpu, m, host) {
                        Some(v) => {
                            g.set(off::RAX, v & 0xffff_ffff);
                            g.set(off::RDX, v >> 32);
                        }
                        None => g.raise(GP_EVENT),
                    }
                } else {
                    let v = (g.input(off::RDX)? << 32) | (g.input(off::RAX)? & 0xffff_ffff);
                    if !self.wrmsr(vcpu, m, v, host) {
                        g.raise(GP_EVENT);
                    }
                }
            }
            // AP_HLT_LOOP: KVM holds the AP until a SIPI (AP reset hold),
            // which QEMU only delivers to a CPU waiting for one after INIT;
            // cvmem returns at once, as a spurious wake-up would.
            exit::NMI_COMPLETE | exit::AP_HLT_LOOP => {}
            exit::VMMCALL => {
                let mut regs = Regs {
                    cpl: (g.input(off::CPL)? & 3) as u32,
                    ..Regs::default()
                };
                regs.gpr[gpr::RAX] = g.input(off::RAX)?;
                for (r, o) in [
                    (gpr::RBX, off::RBX),
                    (gpr::RCX, off::RCX),
                    (gpr::RDX, off::RDX),
                ] {
                    regs.gpr[r] = g.optional(o);
                }
                regs.gpr[gpr::RSI] = g.optional(off::RSI);
                effects = kvm.hypercall(&mut regs);
                g.set(off::RAX, regs.gpr[gpr::RAX]);
            }
            exit::MMIO_READ | exit::MMIO_WRITE => {
                let scratch = g.input(off::SCRATCH)?;
                let area = self.scratch(kvm, ghcb_gpa, scratch, info2)?;
                self.mmio(kvm, info1, code == exit::MMIO_WRITE, area, g, host)?;
            }
            exit::AP_JUMP_TABLE => match info1 {
                0 => self.ap_jump_table.store(info2, Ordering::Relaxed),
                1 => g.set(off::EXIT_INFO_2, self.ap_jump_table.load(Ordering::Relaxed)),
                _ => return Err(ghcb_err::INVALID_INPUT),
            },
            exit::PSC => {
                let scratch = g.input(off::SCRATCH)?;
                let (result, e) = self.psc(kvm, ghcb_gpa, scratch, g, host)?;
                g.set(off::EXIT_INFO_2, result);
                effects = e;
            }
            exit::GUEST_REQUEST | exit::EXT_GUEST_REQUEST => {
                if info1 % PAGE_SIZE != 0 || info2 % PAGE_SIZE != 0 || info1 == info2 {
                    return Err(ghcb_err::MISSING_INPUT);
                }
                g.set(off::EXIT_INFO_2, GUEST_REQUEST_UNSUPPORTED);
            }
            exit::HV_FEATURES => g.set(off::EXIT_INFO_2, msr_protocol::HV_FT_SNP),
            exit::TERM_REQUEST => self.terminate(kvm, info1 & 0xf, (info1 >> 4) & 0xff, host),
            exit::UNSUPPORTED_EVENT => {
                let why = format!(
                    "the SNP guest met an event it cannot handle \
                     (SVM_VMGEXIT_UNSUPPORTED_EVENT, exit info {info1:#x}, {info2:#x})"
                );
                eprintln!("cvmem: {why}");
                kvm.lifecycle.guest_panic(why);
                host.guest_panicked();
            }
            _ => return Err(ghcb_err::INVALID_EVENT),
        }
        Ok(effects)
    }

    /// IOIO through the GHCB: `info1` in the SVM IOIO encoding; string
    /// forms move `info2` items through the scratch area.
    fn ioio(
        &self,
        kvm: &Kvm,
        ghcb_gpa: u64,
        info1: u64,
        info2: u64,
        g: &mut Ghcb,
        host: &dyn Host,
    ) -> Result<(), u64> {
        let port = (info1 >> 16) as u16;
        let size: u8 = match (info1 >> 4) & 7 {
            1 => 1,
            2 => 2,
            4 => 4,
            _ => return Err(ghcb_err::INVALID_INPUT),
        };
        let is_in = info1 & 1 != 0;
        let mask = if size == 4 {
            u64::from(u32::MAX)
        } else {
            (1u64 << (8 * size)) - 1
        };
        if info1 & (1 << 2) != 0 {
            let bytes = info2
                .checked_mul(u64::from(size))
                .ok_or(ghcb_err::INVALID_INPUT)?;
            let scratch = g.input(off::SCRATCH)?;
            let area = self.scratch(kvm, ghcb_gpa, scratch, bytes)?;
            if is_in {
                let data: Vec<u8> = (0..info2)
                    .flat_map(|_| {
                        let v = host.pio(port, size, false, 0);
                        v.to_le_bytes()[..usize::from(size)].to_vec()
                    })
                    .collect();
                self.scratch_write(kvm, area, &data, g, host)?;
            } else {
                let data = self.scratch_read(kvm, area, g, host)?;
                for item in data.chunks(usize::from(size)) {
                    let mut b = [0u8; 4];
                    b[..item.len()].copy_from_slice(item);
                    host.pio(port, size, true, u32::from_le_bytes(b));
                }
            }
        } else if is_in {
            let v = u64::from(host.pio(port, size, false, 0)) & mask;
            // KVM keeps RAX's upper bytes for 1- and 2-byte INs.
            let old = if size < 4 { g.optional(off::RAX) } else { 0 };
            g.set(off::RAX, (old & !mask) | v);
        } else {
            let v = g.input(off::RAX)? & mask;
            host.pio(port, size, true, v as u32);
        }
        Ok(())
    }

    /// MMIO through the GHCB, done by QEMU. Private RAM is out of the host's
    /// reach: it reads as all ones and takes no writes, as for a device.
    fn mmio(
        &self,
        kvm: &Kvm,
        gpa: u64,
        write: bool,
        area: Scratch,
        g: &mut Ghcb,
        host: &dyn Host,
    ) -> Result<(), u64> {
        let vm = kvm.vm();
        let d = vm.decode(Gpa::new(gpa)).ok_or(ghcb_err::INVALID_INPUT)?;
        let addr = d.gfn.gpa().raw() | d.offset;
        let len = area.len();
        if len == 0 || len > 8 || (addr ^ (addr + len - 1)) & !(PAGE_SIZE - 1) != 0 {
            return Err(ghcb_err::INVALID_INPUT);
        }
        let reachable = kvm.host_access_allowed(addr);
        if write {
            let data = self.scratch_read(kvm, area, g, host)?;
            if reachable {
                host.phys_write(addr, &data);
            }
        } else {
            let mut data = vec![0xffu8; len as usize];
            if reachable && !host.phys_read(addr, &mut data) {
                data.fill(0xff);
            }
            self.scratch_write(kvm, area, &data, g, host)?;
        }
        Ok(())
    }

    /// A page-state change through the GHCB (`snp_begin_psc()`): the
    /// descriptor at `scratch`, processed from `cur_entry` (and each entry
    /// from `cur_page`) for at most `psc_chunk` bytes, progress written back.
    /// Returns the `SW_EXITINFO2` result and the conversions' effects.
    fn psc(
        &self,
        kvm: &Kvm,
        ghcb_gpa: u64,
        scratch: u64,
        g: &mut Ghcb,
        host: &dyn Host,
    ) -> Result<(u64, Effects), u64> {
        let hdr_area = self.scratch(kvm, ghcb_gpa, scratch, 8)?;
        let hdr = self.scratch_read(kvm, hdr_area, g, host)?;
        let cur = u64::from(u16::from_le_bytes([hdr[0], hdr[1]]));
        let end = u64::from(u16::from_le_bytes([hdr[2], hdr[3]]));
        if end >= psc_err::MAX_ENTRY {
            return Ok((psc_err::INVALID_HDR, Effects::NONE));
        }
        let area = self.scratch(kvm, ghcb_gpa, scratch, 8 + 8 * (end + 1))?;
        let mut desc = self.scratch_read(kvm, area, g, host)?;
        // The work, entry by entry from `cur_entry`, within the budget: each
        // step's range, its operation and the entry's new value.
        let mut budget = self.psc_chunk / PAGE_SIZE;
        let mut result = 0;
        let mut steps: Vec<PscStep> = Vec::new();
        for idx in cur..=end {
            let at = 8 + 8 * idx as usize;
            let e = u64::from_le_bytes(desc[at..at + 8].try_into().expect("8 bytes"));
            let cur_page = e & 0xfff;
            let gfn = (e >> 12) & ((1 << 40) - 1);
            let op = (e >> 52) & 0xf;
            let npages = if (e >> 56) & 1 != 0 { 512 } else { 1 };
            if cur_page > npages || gfn % npages != 0 {
                result = psc_err::INVALID_ENTRY;
                break;
            }
            let todo = (npages - cur_page).min(budget);
            let private = match op {
                msr_protocol::PSC_OP_PRIVATE => Some(true),
                msr_protocol::PSC_OP_SHARED => Some(false),
                // Other operations (PSMASH, UNSMASH) complete without
                // effect, as in KVM.
                _ => None,
            };
            if private.is_some() {
                budget -= todo;
            }
            steps.push(PscStep {
                idx,
                at,
                start: gfn + cur_page,
                pages: todo,
                private,
                entry: (e & !0xfff) | (cur_page + todo),
                done: cur_page + todo == npages,
            });
            if cur_page + todo < npages {
                break;
            }
        }
        // Adjacent steps with the same operation become one conversion, as
        // KVM merges them into one KVM_HC_MAP_GPA_RANGE exit; a step's
        // progress is recorded once its conversion succeeded.
        let mut effects = Effects::NONE;
        let mut idx = cur;
        let mut i = 0;
        'runs: while i < steps.len() {
            let mut j = i + 1;
            while j < steps.len()
                && steps[j].private == steps[i].private
                && steps[j].start == steps[j - 1].start + steps[j - 1].pages
            {
                j += 1;
            }
            let pages: u64 = steps[i..j].iter().map(|s| s.pages).sum();
            if let (Some(private), true) = (steps[i].private, pages > 0) {
                let range = GfnRange::from_start_len(Gfn::new(steps[i].start), pages)
                    .ok_or(ghcb_err::INVALID_INPUT)?;
                match kvm.convert(range, private, false) {
                    Ok(e) => effects.merge(e),
                    Err(_) => {
                        self.stats.psc_refused.fetch_add(1, Ordering::Relaxed);
                        result = psc_err::GENERIC;
                        break 'runs;
                    }
                }
                self.stats.psc_pages.fetch_add(pages, Ordering::Relaxed);
            }
            for s in &steps[i..j] {
                desc[s.at..s.at + 8].copy_from_slice(&s.entry.to_le_bytes());
                idx = if s.done { s.idx + 1 } else { s.idx };
            }
            i = j;
        }
        desc[0..2].copy_from_slice(&(idx as u16).to_le_bytes());
        self.scratch_write(kvm, area, &desc, g, host)?;
        Ok((result, effects))
    }

    /// Checks a scratch area of `len` bytes at `gpa` (`setup_vmgexit_scratch()`):
    /// inside the GHCB's shared buffer, or up to 16 pages of other shared RAM.
    fn scratch(&self, kvm: &Kvm, ghcb_gpa: u64, gpa: u64, len: u64) -> Result<Scratch, u64> {
        let end = gpa.checked_add(len).ok_or(ghcb_err::INVALID_SCRATCH_AREA)?;
        if gpa == 0 {
            return Err(ghcb_err::INVALID_SCRATCH_AREA);
        }
        if gpa & !(PAGE_SIZE - 1) == ghcb_gpa {
            let buf = ghcb_gpa + off::SHARED_BUFFER as u64;
            if gpa < buf || end > buf + off::SHARED_BUFFER_LEN as u64 {
                return Err(ghcb_err::INVALID_SCRATCH_AREA);
            }
            return Ok(Scratch::InGhcb {
                off: (gpa - ghcb_gpa) as usize,
                len: len as usize,
            });
        }
        if len > SCRATCH_AREA_LIMIT {
            return Err(ghcb_err::INVALID_SCRATCH_AREA);
        }
        let mut page = gpa & !(PAGE_SIZE - 1);
        while page < end {
            if self.shared_backing(kvm, page).is_none() {
                return Err(ghcb_err::INVALID_SCRATCH_AREA);
            }
            page += PAGE_SIZE;
        }
        Ok(Scratch::Guest { gpa, len })
    }

    fn scratch_read(
        &self,
        kvm: &Kvm,
        area: Scratch,
        g: &Ghcb,
        host: &dyn Host,
    ) -> Result<Vec<u8>, u64> {
        match area {
            Scratch::InGhcb { off, len } => Ok(g.page[off..off + len].to_vec()),
            Scratch::Guest { gpa, len } => {
                let mut buf = vec![0; len as usize];
                let backing = self
                    .shared_backing(kvm, gpa)
                    .ok_or(ghcb_err::INVALID_SCRATCH_AREA)?;
                if !host.phys_read(backing, &mut buf) {
                    return Err(ghcb_err::INVALID_SCRATCH_AREA);
                }
                Ok(buf)
            }
        }
    }

    fn scratch_write(
        &self,
        kvm: &Kvm,
        area: Scratch,
        data: &[u8],
        g: &mut Ghcb,
        host: &dyn Host,
    ) -> Result<(), u64> {
        match area {
            Scratch::InGhcb { off, len } => {
                let n = len.min(data.len());
                g.page[off..off + n].copy_from_slice(&data[..n]);
                Ok(())
            }
            Scratch::Guest { gpa, .. } => {
                let backing = self
                    .shared_backing(kvm, gpa)
                    .ok_or(ghcb_err::INVALID_SCRATCH_AREA)?;
                if host.phys_write(backing, data) {
                    Ok(())
                } else {
                    Err(ghcb_err::INVALID_SCRATCH_AREA)
                }
            }
        }
    }

    /// The summary line.
    pub fn summary(&self) -> String {
        let s = &self.stats;
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let _ = write!(
            out,
            "{} VMGEXITs ({} MSR protocol, {} refused), {} #VC, {} PVALIDATE, {} RMPADJUST, \
             {} pages changed by PSC ({} requests refused), {} pages launched",
            n(&s.vmgexits),
            n(&s.msr_protocol),
            n(&s.ghcb_errors),
            n(&s.vcs),
            n(&s.pvalidates),
            n(&s.rmpadjusts),
            n(&s.psc_pages),
            n(&s.psc_refused),
            n(&s.pages_launched)
        );
        out
    }
}

/// One entry's share of a page-state change.
#[derive(Clone, Copy, Debug)]
struct PscStep {
    /// The entry's index and byte offset in the descriptor.
    idx: u64,
    at: usize,
    /// The frames to convert.
    start: u64,
    pages: u64,
    /// To private or shared; `None`: an operation without effect.
    private: Option<bool>,
    /// The entry with its progress (`cur_page`) updated.
    entry: u64,
    /// The entry is complete after this step.
    done: bool,
}

/// Where a NAE event's data lives.
#[derive(Clone, Copy, Debug)]
enum Scratch {
    /// In the GHCB's shared buffer: byte offset in the page.
    InGhcb { off: usize, len: usize },
    /// In other shared guest memory.
    Guest { gpa: u64, len: u64 },
}

impl Scratch {
    fn len(&self) -> u64 {
        match *self {
            Scratch::InGhcb { len, .. } => len as u64,
            Scratch::Guest { len, .. } => len,
        }
    }
}

/// A snapshot of a guest's GHCB page, with the valid bitmap the guest set
/// (KVM clears the page's bitmap on entry and marks what it writes back).
struct Ghcb {
    page: Vec<u8>,
    valid: [u8; 16],
}

impl Ghcb {
    fn new(mut page: Vec<u8>) -> Ghcb {
        let mut valid = [0u8; 16];
        valid.copy_from_slice(&page[off::VALID_BITMAP..off::VALID_BITMAP + 16]);
        page[off::VALID_BITMAP..off::VALID_BITMAP + 16].fill(0);
        Ghcb { page, valid }
    }

    fn u64_at(&self, o: usize) -> u64 {
        u64::from_le_bytes(self.page[o..o + 8].try_into().expect("8 bytes"))
    }

    fn u32_at(&self, o: usize) -> u32 {
        u32::from_le_bytes(self.page[o..o + 4].try_into().expect("4 bytes"))
    }

    fn is_valid(&self, o: usize) -> bool {
        let bit = o / 8;
        self.valid[bit / 8] & (1 << (bit % 8)) != 0
    }

    /// A field the exit needs: `GHCB_ERR_MISSING_INPUT` if the guest did
    /// not mark it valid. CPL is a byte.
    fn input(&self, o: usize) -> Result<u64, u64> {
        if !self.is_valid(o) {
            return Err(ghcb_err::MISSING_INPUT);
        }
        Ok(if o == off::CPL {
            u64::from(self.page[o])
        } else {
            self.u64_at(o)
        })
    }

    /// A field the exit may use: its value if valid, else 0 (KVM's
    /// `kvm_ghcb_get_*_if_valid()`).
    fn optional(&self, o: usize) -> u64 {
        self.input(o).unwrap_or(0)
    }

    /// Writes a field back and marks it valid.
    fn set(&mut self, o: usize, v: u64) {
        self.page[o..o + 8].copy_from_slice(&v.to_le_bytes());
        let bit = o / 8;
        self.page[off::VALID_BITMAP + bit / 8] |= 1 << (bit % 8);
    }

    /// Asks the guest to raise `event` (`SW_EXITINFO1 = 1`).
    fn raise(&mut self, event: u64) {
        self.set(off::EXIT_INFO_1, 1);
        self.set(off::EXIT_INFO_2, event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Config;
    use crate::hooks::fake::{report_ram, FakeHost, MEM};
    use crate::hooks::{prot, Access, Stage2Answer, Stage2Request};
    use crate::paging::linear_to_gpa;
    use cvmem_model::VmType;

    const C_BIT: u64 = 1 << 51;

    /// An SNP guest with 16 MiB of RAM, launched, RAM below `accept_below`
    /// validated.
    fn guest(accept_below: u64) -> Kvm {
        let config = Config {
            vm_type: VmType::Snp,
            accept: AcceptPolicy::Below(accept_below),
            map_gpa_chunk: 64 << 10,
            ..Config::default()
        };
        let kvm = Kvm::new(&config, 2).unwrap();
        report_ram(&kvm);
        let e = kvm.snp.as_ref().unwrap().ensure_launched(&kvm);
        let rest: Vec<_> = (accept_below < MEM)
            .then_some((accept_below, MEM - accept_below))
            .into_iter()
            .collect();
        assert_eq!(e.clear, rest);
        kvm
    }

    fn access(kvm: &Kvm, gpa: u64, a: Access) -> Stage2Answer {
        kvm.stage2(&Stage2Request {
            gpa,
            gva: 0x7000_1000,
            vcpu_index: 0,
            access: a,
            cpl: 0,
            page_walk: false,
            paging: true,
            stage1_prot: prot::ALL,
        })
        .0
    }

    /// Long-mode page tables at 0x10000 mapping 0x4000_0000 (4K) to
    /// `target` and 0x4020_0000 (2M) to 2 MiB, entries carrying the C-bit.
    fn tables(host: &FakeHost, target: u64) -> Regs {
        let put = |at: u64, v: u64| {
            host.mem.borrow_mut()[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes())
        };
        put(0x10000, 0x11000 | C_BIT | 3); // PML4[0]
        put(0x11000 + 8, 0x12000 | C_BIT | 3); // PDPT[1]: 1G..2G
        put(0x12000, 0x13000 | C_BIT | 3); // PD[0]
        put(0x12000 + 8, 0x20_0000 | C_BIT | 0x83); // PD[1]: 2M page
        put(0x13000, target | 3); // PT[0]
        Regs {
            cr0: (1 << 31) | 1,
            cr3: 0x10000 | C_BIT,
            cr4: 1 << 5,
            efer: (1 << 10) | (1 << 8),
            ..Regs::default()
        }
    }

    fn pvalidate(
        kvm: &Kvm,
        host: &FakeHost,
        regs: &mut Regs,
        la: u64,
        rcx: u64,
        rdx: u64,
    ) -> InsnAction {
        regs.gpr[gpr::RAX] = la;
        regs.gpr[gpr::RCX] = rcx;
        regs.gpr[gpr::RDX] = rdx;
        let snp = kvm.snp.as_ref().unwrap();
        snp.insn(kvm, 0, Insn::Pvalidate, regs, host).0
    }

    #[test]
    fn the_walker_follows_c_bit_tables_and_keeps_the_leaf_c_bit() {
        let host = FakeHost::new();
        let regs = tables(&host, 0x80_0000 | C_BIT);
        assert_eq!(
            linear_to_gpa(&regs, 0x4000_0123, C_BIT, &host),
            Ok(0x80_0123 | C_BIT)
        );
        assert_eq!(
            linear_to_gpa(&regs, 0x4020_1234, C_BIT, &host),
            Ok(0x20_1234 | C_BIT)
        );
        let pf = linear_to_gpa(&regs, 0x4000_1000, C_BIT, &host).unwrap_err();
        assert_eq!((pf.vector, pf.cr2), (vector::PF, Some(0x4000_1000)));
        // Paging off: the linear address is the GPA.
        let off = Regs::default();
        assert_eq!(linear_to_gpa(&off, 0x1234, C_BIT, &host), Ok(0x1234));
    }

    #[test]
    fn pvalidate_through_the_page_tables() {
        let kvm = guest(8 << 20);
        let host = FakeHost::new();
        let mut regs = tables(&host, 0x90_0000 | C_BIT);
        // 0x90_0000 (9 MiB) is above the launch boundary: not validated.
        assert_eq!(
            access(&kvm, 0x90_0000 | C_BIT, Access::Read),
            Stage2Answer::Fault(Fault {
                vector: vector::VC,
                error_code: Some(0x404),
                cr2: None
            })
        );
        assert_eq!(
            pvalidate(&kvm, &host, &mut regs, 0x4000_0000, 0, 1),
            InsnAction::Done
        );
        assert_eq!((regs.gpr[gpr::RAX], regs.rflags & RFLAGS_CF), (0, 0));
        assert!(matches!(
            access(&kvm, 0x90_0000 | C_BIT, Access::Write),
            Stage2Answer::Allow { .. }
        ));
        // Again: no update, CF set.
        pvalidate(&kvm, &host, &mut regs, 0x4000_0000, 0, 1);
        assert_eq!(
            (regs.gpr[gpr::RAX], regs.rflags & RFLAGS_CF),
            (0, RFLAGS_CF)
        );
        // Rescind: #VC again.
        pvalidate(&kvm, &host, &mut regs, 0x4000_0000, 0, 0);
        assert_eq!((regs.gpr[gpr::RAX], regs.rflags & RFLAGS_CF), (0, 0));
        assert!(matches!(
            access(&kvm, 0x90_0000 | C_BIT, Access::Read),
            Stage2Answer::Fault(_)
        ));
        // A bad page size: FAIL_INPUT; an unmapped address: #PF; CPL 3: #GP.
        pvalidate(&kvm, &host, &mut regs, 0x4000_0000, 7, 1);
        assert_eq!(regs.gpr[gpr::RAX], 1);
        assert!(matches!(
            pvalidate(&kvm, &host, &mut regs, 0x5000_0000, 0, 1),
            InsnAction::Fault(Fault {
                vector: vector::PF,
                ..
            })
        ));
        regs.cpl = 3;
        assert!(matches!(
            pvalidate(&kvm, &host, &mut regs, 0x4000_0000, 0, 1),
            InsnAction::Fault(Fault { vector: 13, .. })
        ));
    }

    #[test]
    fn launched_guests_get_vc_for_intercepted_instructions() {
        let kvm = guest(MEM);
        let host = FakeHost::new();
        let snp = kvm.snp.as_ref().unwrap();
        let mut regs = Regs::default();
        let code = |a: InsnAction| match a {
            InsnAction::Fault(f) if f.vector == vector::VC => f.error_code,
            _ => None,
        };
        for (insn, want) in [
            (Insn::Cpuid, exit::CPUID),
            (Insn::Ioio, exit::IOIO),
            (Insn::Vmmcall, exit::VMMCALL),
        ] {
            assert_eq!(
                code(snp.insn(&kvm, 0, insn, &mut regs, &host).0),
                Some(want as u32)
            );
        }
        regs.gpr[gpr::RCX] = 0x830; // x2APIC ICR: intercepted
        assert_eq!(
            code(snp.insn(&kvm, 0, Insn::Wrmsr, &mut regs, &host).0),
            Some(0x7c)
        );
        regs.gpr[gpr::RCX] = 0xC000_0101; // GS_BASE: in the VMSA
        assert_eq!(
            snp.insn(&kvm, 0, Insn::Wrmsr, &mut regs, &host).0,
            InsnAction::Decline
        );
        regs.gpr[gpr::RCX] = u64::from(msr::SEV_STATUS);
        assert_eq!(
            snp.insn(&kvm, 0, Insn::Rdmsr, &mut regs, &host).0,
            InsnAction::Done
        );
        assert_eq!((regs.gpr[gpr::RAX], regs.gpr[gpr::RDX]), (7, 0));
        assert_eq!(snp.insn(&kvm, 0, Insn::Wrmsr, &mut regs, &host).0, gp0());
    }

    /// Writes the GHCB MSR of vCPU 0 and runs VMGEXIT; returns the MSR.
    fn msr_call(kvm: &Kvm, host: &FakeHost, value: u64) -> u64 {
        let snp = kvm.snp.as_ref().unwrap();
        let mut regs = Regs::default();
        regs.gpr[gpr::RCX] = u64::from(msr::GHCB);
        regs.gpr[gpr::RAX] = value & 0xffff_ffff;
        regs.gpr[gpr::RDX] = value >> 32;
        snp.insn(kvm, 0, Insn::Wrmsr, &mut regs, host);
        let (_, e) = snp.insn(kvm, 0, Insn::Vmgexit, &mut regs, host);
        for (gpa, len) in e.clear {
            host.mem.borrow_mut()[gpa as usize..(gpa + len) as usize].fill(0);
        }
        snp.rdmsr(0, msr::GHCB, host).unwrap()
    }

    #[test]
    fn msr_protocol() {
        let kvm = guest(MEM);
        let host = FakeHost::new();
        assert_eq!(
            msr_call(&kvm, &host, 0x002),
            (2 << 48) | (1 << 32) | (51 << 24) | 1
        );
        assert_eq!(msr_call(&kvm, &host, 0x080), (1 << 12) | 0x081);
        // CPUID 0x8000001F EBX through the MSR protocol.
        let ebx = msr_call(&kvm, &host, (0x8000_001F << 32) | (1 << 30) | 0x004);
        assert_eq!(ebx, ((51 | (4 << 12)) << 32) | (1 << 30) | 0x005);
        assert_eq!(
            msr_call(&kvm, &host, (0x123 << 12) | 0x012),
            (0x123 << 12) | 0x013
        );
        // Page-state change of one page to shared and back.
        let gfn = 0x300u64;
        host.mem.borrow_mut()[0x30_0000] = 0xaa;
        assert_eq!(
            msr_call(&kvm, &host, (2 << 52) | (gfn << 12) | 0x014),
            0x015
        );
        assert!(!kvm.vm().is_private(Gfn::new(gfn)));
        assert_eq!(host.mem.borrow()[0x30_0000], 0, "contents are discarded");
        assert_eq!(
            msr_call(&kvm, &host, (1 << 52) | (gfn << 12) | 0x014),
            0x015
        );
        assert!(kvm.vm().is_private(Gfn::new(gfn)));
        // A bad operation, a GFN outside RAM: the error answer.
        assert_eq!(
            msr_call(&kvm, &host, (3 << 52) | (gfn << 12) | 0x014),
            msr_protocol::PSC_RESP_ERROR
        );
        assert_eq!(
            msr_call(&kvm, &host, (1 << 52) | (0xfff_0000 << 12) | 0x014),
            msr_protocol::PSC_RESP_ERROR
        );
        // Unknown requests leave the MSR alone; termination stops the VM.
        assert_eq!(msr_call(&kvm, &host, 0xabc), 0xabc);
        assert!(!host.panicked.get());
        assert_eq!(
            msr_call(&kvm, &host, (3 << 16) | (1 << 12) | 0x100),
            (3 << 16) | (1 << 12) | 0x100
        );
        assert!(host.panicked.get());
    }

    const GHCB: u64 = 0x40_0000;

    /// Makes the page at GHCB shared and registered for vCPU 0.
    fn ghcb_setup(kvm: &Kvm, host: &FakeHost) {
        assert_eq!(msr_call(kvm, host, (2 << 52) | GHCB | 0x014), 0x015);
        assert_eq!(msr_call(kvm, host, GHCB | 0x012), GHCB | 0x013);
    }

    fn put(host: &FakeHost, at: u64, v: u64) {
        host.mem.borrow_mut()[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes());
    }

    fn get(host: &FakeHost, at: u64) -> u64 {
        u64::from_le_bytes(
            host.mem.borrow()[at as usize..at as usize + 8]
                .try_into()
                .unwrap(),
        )
    }

    /// Fills the GHCB with `fields` (offset, value), all marked valid, and
    /// runs VMGEXIT with the GHCB MSR at the page.
    fn ghcb_call(kvm: &Kvm, host: &FakeHost, fields: &[(usize, u64)]) {
        host.mem.borrow_mut()[GHCB as usize..(GHCB + 0x800) as usize].fill(0);
        for &(o, v) in fields {
            put(host, GHCB + o as u64, v);
            let bit = o / 8;
            host.mem.borrow_mut()[GHCB as usize + off::VALID_BITMAP + bit / 8] |= 1 << (bit % 8);
        }
        assert_eq!(msr_call(kvm, host, GHCB), GHCB);
    }

    fn info(host: &FakeHost) -> (u64, u64) {
        (
            get(host, GHCB + off::EXIT_INFO_1 as u64),
            get(host, GHCB + off::EXIT_INFO_2 as u64),
        )
    }

    #[test]
    fn ghcb_page_exits() {
        let kvm = guest(MEM);
        let host = FakeHost::new();
        // Not registered yet (and still private): nothing happens.
        ghcb_call(
            &kvm,
            &host,
            &[
                (off::EXIT_CODE, exit::HV_FEATURES),
                (off::EXIT_INFO_1, 0),
                (off::EXIT_INFO_2, 0),
            ],
        );
        assert_eq!(info(&host), (0, 0));
        ghcb_setup(&kvm, &host);
        let std = |code| {
            [
                (off::EXIT_CODE, code),
                (off::EXIT_INFO_1, 0),
                (off::EXIT_INFO_2, 0),
            ]
        };
        ghcb_call(&kvm, &host, &std(exit::HV_FEATURES));
        assert_eq!(info(&host), (0, 1));
        // CPUID.
        let mut f = std(exit::CPUID).to_vec();
        f.push((off::RAX, 0x8000_001F));
        ghcb_call(&kvm, &host, &f);
        assert_eq!(get(&host, GHCB + off::RBX as u64), 51 | (4 << 12));
        // OUT and IN.
        let mut f = std(exit::IOIO).to_vec();
        f[1].1 = (0x3f8 << 16) | (1 << 4);
        f.push((off::RAX, 0x141));
        ghcb_call(&kvm, &host, &f);
        f[1].1 |= 1;
        ghcb_call(&kvm, &host, &f);
        assert_eq!(get(&host, GHCB + off::RAX as u64), 0x15a);
        assert_eq!(
            host.io.borrow()[..],
            [(0x3f8, 1, true, 0x41), (0x3f8, 1, false, 0)]
        );
        // MSR: a refused one asks for #GP.
        let mut f = std(exit::MSR).to_vec();
        f.push((off::RCX, 0x1234));
        ghcb_call(&kvm, &host, &f);
        assert_eq!(info(&host), (1, GP_EVENT));
        // Missing input, bad usage, unknown event.
        ghcb_call(&kvm, &host, &std(exit::CPUID));
        assert_eq!(info(&host), (2, ghcb_err::MISSING_INPUT));
        ghcb_call(&kvm, &host, &std(0x1234));
        assert_eq!(info(&host), (2, ghcb_err::INVALID_EVENT));
        // HLT is an automatic exit, never a GHCB event.
        ghcb_call(&kvm, &host, &std(exit::HLT));
        assert_eq!(info(&host), (2, ghcb_err::INVALID_EVENT));
        // The guest request is answered as unsupported.
        let mut f = std(exit::GUEST_REQUEST).to_vec();
        f[1].1 = 0x1000;
        f[2].1 = 0x2000;
        ghcb_call(&kvm, &host, &f);
        assert_eq!(info(&host), (0, GUEST_REQUEST_UNSUPPORTED));
    }

    #[test]
    fn psc_through_the_ghcb_makes_partial_progress() {
        let kvm = guest(MEM);
        let host = FakeHost::new();
        ghcb_setup(&kvm, &host);
        let desc = GHCB + off::SHARED_BUFFER as u64;
        // Entries: 2M at 8 MiB to shared, 4K at 1 MiB to shared, a bad
        // entry (2M, unaligned).
        let entry = |gfn: u64, op: u64, huge: u64| (huge << 56) | (op << 52) | (gfn << 12);
        let run = || {
            ghcb_call(
                &kvm,
                &host,
                &[
                    (off::EXIT_CODE, exit::PSC),
                    (off::EXIT_INFO_1, 0),
                    (off::EXIT_INFO_2, 0),
                    (off::SCRATCH, desc),
                ],
            )
        };
        let load = || {
            put(&host, desc, 1 << 16); // cur 0, end 1
            put(&host, desc + 8, entry(0x800, 2, 1));
            put(&host, desc + 16, entry(0x100, 2, 0));
        };
        host.mem.borrow_mut()[0x80_0000..0x80_0000 + 0x800].fill(0x5a);
        ghcb_call(&kvm, &host, &[]);
        load();
        // The chunk is 64K: 16 pages per VMGEXIT.
        run();
        assert_eq!(info(&host), (0, 0));
        assert_eq!(get(&host, desc) & 0xffff, 0, "still on entry 0");
        assert_eq!(get(&host, desc + 8) & 0xfff, 16);
        let mut calls = 1;
        while get(&host, desc) & 0xffff <= 1 {
            run();
            assert_eq!(info(&host), (0, 0));
            calls += 1;
            assert!(calls < 100);
        }
        assert_eq!(calls, 33);
        assert_eq!(get(&host, desc + 8) & 0xfff, 512);
        assert!(!kvm.vm().is_private(Gfn::new(0x9ff)) && !kvm.vm().is_private(Gfn::new(0x100)));
        assert!(kvm.vm().is_private(Gfn::new(0xa00)));
        assert_eq!(host.mem.borrow()[0x80_0000], 0);
        // A bad header and a bad entry.
        put(&host, desc, 300 << 16);
        run();
        assert_eq!(info(&host), (0, psc_err::INVALID_HDR));
        put(&host, desc, 0);
        put(&host, desc + 8, entry(0x801, 1, 1));
        run();
        assert_eq!(info(&host), (0, psc_err::INVALID_ENTRY));
        // Adjacent entries with one operation are one conversion, as KVM
        // merges them; a gap or another operation starts a new one.
        let before = kvm.vm().stats().conversions;
        put(&host, desc, 3 << 16);
        for (i, e) in [
            entry(0x200, 2, 0),
            entry(0x201, 2, 0),
            entry(0x202, 2, 0),
            entry(0x300, 2, 0),
        ]
        .into_iter()
        .enumerate()
        {
            put(&host, desc + 8 + 8 * i as u64, e);
        }
        run();
        assert_eq!(info(&host), (0, 0));
        assert_eq!(get(&host, desc) & 0xffff, 4);
        assert_eq!(kvm.vm().stats().conversions - before, 2);
    }

    #[test]
    fn paging_off_accesses_are_private_after_launch() {
        let kvm = guest(MEM);
        let answer = kvm
            .stage2(&Stage2Request {
                gpa: 0x8000,
                gva: 0x8000,
                vcpu_index: 1,
                access: Access::Write,
                cpl: 0,
                page_walk: false,
                paging: false,
                stage1_prot: prot::ALL,
            })
            .0;
        assert!(matches!(
            answer,
            Stage2Answer::Allow {
                backing_gpa: 0x8000,
                ..
            }
        ));
        assert!(kvm.vm().is_private(Gfn::new(8)));
        // Shared MMIO is #VC(NPF).
        assert_eq!(
            access(&kvm, 0xfe00_0000, Access::Read),
            Stage2Answer::Fault(Fault {
                vector: vector::VC,
                error_code: Some(exit::NPF as u32),
                cr2: None
            })
        );
    }
}
