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
//! | VMGEXIT, MSR protocol | SEV info, CPUID, preferred GHCB GPA (none), GHCB GPA registration, page-state change, hypervisor features, termination |
//! | VMGEXIT, GHCB page | CPUID, IOIO (string forms too), MSR, VMMCALL (KVM hypercalls), MMIO, page-state change (partial progress every `map-gpa-chunk=`), AP jump table, AP HLT loop (returns at once), NMI complete, HV features, termination; HLT (0x78) is not a GHCB event (KVM's `sev_es_validate_vmgexit()`: GHCB_ERR_INVALID_EVENT) |
//! | SNP_GUEST_REQUEST, SNP_EXTENDED_GUEST_REQUEST | the AMD-SP's guest messages: MSG_REPORT_REQ answered with a report signed by the installation's VCEK, the extended request's certificate table (`guest_request.rs`, `attest/`) |
//! | VMGEXIT, AP creation (0x80000013) | KVM's checks (APIC ID, injection mode, VMSA GPA); the target starts from the VMSA if it is a validated VMSA page (else the VM stops, as on VMRUN's failure), or is parked by AP_DESTROY (ap.rs) |
//! | PVALIDATE, RMPADJUST | RAX translated through the guest's page tables, then the model's RMP |
//!
//! Launch. cvmem has no OVMF: SeaBIOS and QEMU's Multiboot loader run before
//! launch (paging off, nothing checked, nothing intercepted). The first
//! guest access with paging on launches the guest: SNP_LAUNCH_UPDATE of the
//! private RAM below `accept=` (validated, content kept), the rest private,
//! unvalidated and zeroed as fresh guest_memfd pages are.

mod ap;
pub mod attest;
pub mod cpuid_table;
mod ghcb;
mod guest_request;
mod intercept;
mod launch;
mod msr_protocol;
mod nae;
mod ovmf;
mod psc;
mod rmp_insn;
pub mod secrets;
mod stats;
#[cfg(test)]
mod testutil;

use intercept::{msr_passes_through, vc};
pub use stats::SnpStats;

use std::fmt::Write as _;

use crate::args::{AcceptPolicy, SnpPages};
use crate::effects::Effects;
use crate::flavour::{Ctx, Flavour};
use crate::hooks::{gpr, Fault, Host, InitSipi, Insn, InsnAction, Stage2Answer, Stage2Request};
use crate::machine::CpuModel;
use crate::vmm::{model_access, pf_error_code, pferr, vector, Vmm};
use cvmem_model::{Gpa, SnpAccessCtx, Stage2Fault, VcpuId, Vmpl, PAGE_SIZE};
use parking_lot::Mutex;
use secrets::Secrets;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Once;
use std::sync::OnceLock;

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
    pub const IOIO: u64 = 0x7b;
    pub const MSR: u64 = 0x7c;
    pub const VMMCALL: u64 = 0x81;
    pub const NPF: u64 = 0x400;
    /// #VC error code of an access to a page that is not validated
    /// (SVM_EXIT_NPF with the page-not-validated code).
    pub const NPF_PAGE_NOT_VALIDATED: u64 = 0x404;
    pub const MMIO_READ: u64 = 0x8000_0001;
    pub const MMIO_WRITE: u64 = 0x8000_0002;
    pub const NMI_COMPLETE: u64 = 0x8000_0003;
    pub const AP_HLT_LOOP: u64 = 0x8000_0004;
    pub const AP_JUMP_TABLE: u64 = 0x8000_0005;
    pub const PSC: u64 = 0x8000_0010;
    pub const GUEST_REQUEST: u64 = 0x8000_0011;
    pub const EXT_GUEST_REQUEST: u64 = 0x8000_0012;
    pub const AP_CREATION: u64 = 0x8000_0013;
    pub const HV_FEATURES: u64 = 0x8000_FFFD;
    pub const TERM_REQUEST: u64 = 0x8000_FFFE;
    pub const UNSUPPORTED_EVENT: u64 = 0x8000_FFFF;
}

/// The GHCB MSR protocol (sev-common.h): request and response codes in
/// bits 11:0, data above.
pub mod proto {
    #![allow(missing_docs)]
    pub const INFO_MASK: u64 = 0xfff;
    pub const SEV_INFO_RESP: u64 = 0x001;
    pub const SEV_INFO_REQ: u64 = 0x002;
    pub const CPUID_REQ: u64 = 0x004;
    pub const CPUID_RESP: u64 = 0x005;
    pub const PREF_GPA_REQ: u64 = 0x010;
    pub const PREF_GPA_RESP: u64 = 0x011;
    /// The GPA field (bits 63:12) of a PREF_GPA_RESP without a preference
    /// (`GHCB_MSR_PREF_GPA_NONE`).
    pub const PREF_GPA_NONE: u64 = 0xf_ffff_ffff_ffff;
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
    /// Hypervisor features (`GHCB_HV_FT_*`): SNP, and AP creation.
    pub const HV_FT_SNP: u64 = 1 << 0;
    pub const HV_FT_SNP_AP_CREATION: u64 = 1 << 1;
    /// What KVM offers (`GHCB_HV_FT_SUPPORTED`, sev.c).
    pub const HV_FT_SUPPORTED: u64 = HV_FT_SNP | HV_FT_SNP_AP_CREATION;
    /// Page-state change operations.
    pub const PSC_OP_PRIVATE: u64 = 1;
    pub const PSC_OP_SHARED: u64 = 2;
}

/// Per-vCPU state.
#[derive(Debug, Default)]
struct SnpVcpu {
    /// Whether a SIPI has started the vCPU from its launch VMSA (KVM's
    /// `sev_es.received_first_sipi`).
    received_first_sipi: bool,
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
    /// `snp-cpuid=`, `snp-secrets=`: where the launch places those pages
    /// (see [`SnpFirmware::pages`]).
    pub pages: SnpPages,
    /// The OVMF image, when the guest starts from one.
    ovmf: OnceLock<ovmf::Ovmf>,
    /// What the launch writes into them, made when the machine is ready.
    boot: OnceLock<BootPages>,
    /// Attestation: the launch digest, the message counts, the keys.
    attest: guest_request::Attest,
    /// Counters.
    pub stats: SnpStats,
}

/// The contents of the pages the AMD-SP fills at launch.
#[derive(Debug)]
struct BootPages {
    /// The CPUID page.
    cpuid: Vec<u8>,
    /// The guest's keys.
    secrets: Secrets,
    /// CPUID 1 EAX, for the secrets page.
    fms: u32,
}

fn fault(vector: u8, error_code: Option<u32>, cr2: Option<u64>) -> Fault {
    Fault {
        vector,
        error_code,
        cr2,
    }
}

fn gp0() -> InsnAction {
    InsnAction::Fault(fault(13, Some(0), None))
}

impl SnpFirmware {
    /// Where the CPUID and secrets pages go: OVMF's SEV metadata says, or
    /// else `snp-cpuid=` and `snp-secrets=`.
    pub fn pages(&self) -> SnpPages {
        match self.ovmf.get() {
            Some(o) => SnpPages {
                cpuid: o
                    .base_of(cvmem_model::firmware::SevSectionKind::Cpuid)
                    .unwrap_or(self.pages.cpuid),
                secrets: o
                    .base_of(cvmem_model::firmware::SevSectionKind::SnpSecrets)
                    .unwrap_or(self.pages.secrets),
            },
            None => self.pages,
        }
    }

    /// The SNP side of a guest with `max_vcpus` vCPUs.
    pub fn new(
        max_vcpus: u32,
        accept: AcceptPolicy,
        psc_chunk: u64,
        pages: SnpPages,
    ) -> SnpFirmware {
        SnpFirmware {
            vcpus: (0..max_vcpus.max(1))
                .map(|_| Mutex::new(SnpVcpu::default()))
                .collect(),
            ap_jump_table: AtomicU64::new(0),
            launched: AtomicBool::new(false),
            launch: Once::new(),
            accept,
            psc_chunk: psc_chunk.max(PAGE_SIZE),
            pages,
            ovmf: OnceLock::new(),
            boot: OnceLock::new(),
            attest: guest_request::Attest::new(),
            stats: SnpStats::default(),
        }
    }

    /// Whether the guest runs (SNP_LAUNCH_FINISH done).
    pub fn launched(&self) -> bool {
        self.launched.load(Ordering::Acquire)
    }

    /// A translation before launch: the VMM still builds the guest (paging
    /// off: the identity, see launch.rs), or its first access with paging
    /// on launches it (`None`: look it up). Out of line, off the hot path.
    #[cold]
    #[inline(never)]
    fn stage2_before_launch(
        &self,
        vmm: &Vmm,
        req: &Stage2Request,
        fx: &mut Effects,
    ) -> Option<Stage2Answer> {
        if !req.paging {
            return Some(Stage2Answer::identity(req));
        }
        self.ensure_launched(vmm, fx);
        None
    }

    fn vcpu(&self, vcpu: u32) -> Option<&Mutex<SnpVcpu>> {
        self.vcpus.get(vcpu as usize)
    }
}

impl Flavour for SnpFirmware {
    #[cfg(test)]
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn insn_kinds(&self) -> &'static [Insn] {
        // VMCALL is Intel's: #UD on AMD, as QEMU raises it.
        &[
            Insn::Vmgexit,
            Insn::Vmmcall,
            Insn::Pvalidate,
            Insn::Rmpadjust,
            Insn::Cpuid,
            Insn::Rdmsr,
            Insn::Wrmsr,
            Insn::Ioio,
            // Not HLT: an SEV-ES automatic exit, QEMU halts the vCPU.
        ]
    }

    fn insn(&self, cx: &mut Ctx<'_>, insn: Insn) -> InsnAction {
        let launched = self.launched();
        let intercept = |exit_code| {
            self.stats.vcs.fetch_add(1, Ordering::Relaxed);
            vc(exit_code)
        };
        let (vmm, vcpu, host) = (cx.vmm, cx.vcpu, cx.host);
        match insn {
            Insn::Vmgexit => self.vmgexit(cx),
            Insn::Pvalidate => self.rmp_insn(cx, true),
            Insn::Rmpadjust => self.rmp_insn(cx, false),
            Insn::Cpuid if launched => intercept(exit::CPUID),
            Insn::Cpuid => {
                let out = self.cpuid(
                    vmm,
                    cx.regs.gpr[gpr::RAX] as u32,
                    cx.regs.gpr[gpr::RCX] as u32,
                    host,
                );
                for (r, v) in [gpr::RAX, gpr::RBX, gpr::RCX, gpr::RDX]
                    .into_iter()
                    .zip(out)
                {
                    cx.regs.gpr[r] = u64::from(v);
                }
                InsnAction::Done
            }
            Insn::Rdmsr | Insn::Wrmsr => {
                let m = cx.regs.gpr[gpr::RCX] as u32;
                if m != msr::SEV_STATUS && m != msr::GHCB {
                    if launched && !msr_passes_through(m) {
                        return intercept(exit::MSR);
                    }
                    return InsnAction::Decline;
                }
                if insn == Insn::Wrmsr {
                    let value =
                        (cx.regs.gpr[gpr::RDX] << 32) | (cx.regs.gpr[gpr::RAX] & 0xffff_ffff);
                    if !self.wrmsr(vcpu, m, value, host) {
                        return gp0();
                    }
                } else {
                    let value = self.rdmsr(vcpu, m, host).unwrap_or(0);
                    cx.regs.gpr[gpr::RAX] = value & 0xffff_ffff;
                    cx.regs.gpr[gpr::RDX] = value >> 32;
                }
                InsnAction::Done
            }
            Insn::Ioio if launched => intercept(exit::IOIO),
            Insn::Vmmcall if launched => intercept(exit::VMMCALL),
            // Before launch VMMCALL is KVM's hypercall, as for any AMD guest.
            Insn::Vmmcall => {
                vmm.hypercall(self, cx.regs, &mut cx.fx);
                InsnAction::Done
            }
            _ => InsnAction::Decline,
        }
    }

    fn launched(&self) -> bool {
        SnpFirmware::launched(self)
    }

    #[inline]
    fn stage2(&self, vmm: &Vmm, req: &Stage2Request, fx: &mut Effects) -> Stage2Answer {
        let mut gpa = req.gpa;
        if !self.launched() {
            if let Some(answer) = self.stage2_before_launch(vmm, req, fx) {
                return answer;
            }
        }
        // With paging off every access of an SEV guest is private (APM
        // vol. 2 §15.34.5): the AP trampoline runs on private memory.
        if !req.paging {
            gpa = Gpa::new(gpa.raw() | vmm.vm().alias().alias_mask());
        }
        // The RMP check runs on every translation of an SNP guest.
        let ctx = SnpAccessCtx {
            vmpl: Vmpl::Vmpl0,
            user: req.cpl == 3,
            page_walk: req.page_walk,
        };
        let model = vmm
            .vm()
            .snp_stage2(VcpuId(req.vcpu_index), gpa, model_access(req.access), ctx);
        vmm.answer(self, req, model, fx)
    }

    /// The RMP is checked per 4K page (APM §15.36.10), whatever the size
    /// of the nested mapping: one page per answer, or the 2M range whose
    /// nested mapping and RMP entries are alike page by page.
    fn stage2_cache_span(&self, vm: &cvmem_model::Vm, t: &cvmem_model::Translation) -> u64 {
        if vm.snp_range_alike(t) {
            cvmem_model::PageLevel::Size2M.size_bytes()
        } else {
            cvmem_model::PAGE_SIZE
        }
    }

    fn guest_fault(
        &self,
        vmm: &Vmm,
        req: &Stage2Request,
        fault: &Stage2Fault,
    ) -> Option<Stage2Answer> {
        let raise = |vector, error_code, cr2| {
            Some(Stage2Answer::Fault(Fault {
                vector,
                error_code,
                cr2,
            }))
        };
        match *fault {
            // An SEV-ES guest's MMIO is a #VC(NPF): KVM's MMIO SPTEs have
            // reserved bits set, so the access faults into the guest, which
            // emulates it through the GHCB (APM vol. 2 §15.35.6).
            // Audit mode raises nothing: no #VC is counted.
            Stage2Fault::Mmio { .. } => {
                if !vmm.audit {
                    self.stats.vcs.fetch_add(1, Ordering::Relaxed);
                }
                raise(vector::VC, Some(exit::NPF as u32), None)
            }
            Stage2Fault::PageNotValidated { .. } => {
                if !vmm.audit {
                    self.stats.vcs.fetch_add(1, Ordering::Relaxed);
                }
                raise(vector::VC, Some(exit::NPF_PAGE_NOT_VALIDATED as u32), None)
            }
            // strict=on: the #PF with the RMP bit the hardware gives for an
            // access to a page the guest does not own in that alias (APM
            // Table 15-39).
            Stage2Fault::MemoryFault { .. } => raise(
                vector::PF,
                Some(pf_error_code(req, pferr::PRESENT | pferr::RMP)),
                Some(req.gva.raw()),
            ),
            _ => None,
        }
    }

    fn machine_ready(
        &self,
        vmm: &Vmm,
        cpu: &dyn CpuModel,
        _fx: &mut Effects,
    ) -> Result<(), String> {
        self.check_ovmf_sections(vmm)?;
        self.prepare_boot_pages(vmm, cpu)
    }

    fn firmware(&self, gpa: u64, image: &[u8]) -> Result<crate::hooks::FirmwarePlace, String> {
        self.take_firmware(gpa, image)
    }

    fn init_sipi(&self, host: &dyn Host, vcpu: u32, event: InitSipi) -> bool {
        self.ovmf_init_sipi(host, vcpu, event)
    }

    fn vcpu_reset(
        &self,
        vmm: &Vmm,
        _vcpu: u32,
        fx: &mut Effects,
    ) -> Option<crate::hooks::VcpuState> {
        // OVMF: the launch happens before the first instruction, at the
        // first reset (the memory map is final then); the vCPUs start from
        // the architectural reset state, as QEMU's launch VMSA for the BSP.
        if self.has_ovmf() {
            self.ensure_launched(vmm, fx);
        }
        None
    }

    fn private_by_default(&self) -> bool {
        true
    }

    fn protects_vcpu_state(&self) -> bool {
        true
    }

    fn add_learned(&self, vmm: &Vmm, gfn: cvmem_model::Gfn, _vcpu: u32) {
        self.add_learned_page(vmm, gfn);
    }

    fn summary(&self, out: &mut String) {
        let _ = writeln!(out, "  snp           {}", self.summary());
    }

    fn stats(&self) -> Option<(&'static str, serde_json::Value)> {
        Some(("snp", self.stats.json()))
    }
}
