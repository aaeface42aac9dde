//! The TDX module's guest interface (TDCALL) and KVM's handling of the
//! TDVMCALLs a TD makes, for `vm-type=tdx`.
//!
//! Oracles: the Intel TDX Module ABI spec (leaf numbers, operands, status
//! codes), the GHCI spec (TDVMCALL sub-functions and their status codes),
//! Linux `arch/x86/include/asm/shared/tdx.h` and `arch/x86/coco/tdx/tdx.c`
//! (what a guest sends and expects) and `arch/x86/kvm/vmx/tdx.c` (what KVM
//! answers, and what it leaves to QEMU's `target/i386/kvm/tdx.c`).
//!
//! | TDCALL leaf | here |
//! |---|---|
//! | 0 TDG.VP.VMCALL | the TDVMCALLs below, with the module's register-exposure rules |
//! | 1 TDG.VP.INFO | GPAW, ATTRIBUTES, vCPU counts and index |
//! | 2 TDG.MR.RTMR.EXTEND | SHA-384 extend of RTMR 0-3 |
//! | 3 TDG.VP.VEINFO.GET | the #VE information of the last #VE, once |
//! | 4 TDG.MR.REPORT | a TDREPORT_STRUCT of the documented layout, **MAC all zero (unsigned)** |
//! | 5 TDG.VP.CPUIDVE.SET | CPUID at CPL 0 and/or 3 always raises #VE (`tdg_vp_cpuidve_set.c`) |
//! | 6 TDG.MEM.PAGE.ACCEPT | the model's Secure EPT (4K, 2M) |
//! | 7/8 TDG.VM.RD/WR | every TD-scope field of the module's table (`metadata.rs` `TDCS_TABLE`): the guest reads TD_UUID, NUM_VCPUS, NUM_L2_VMS, ATTRIBUTES, XFAM, MAX_VCPUS, GPAW, TSC_FREQUENCY, NOTIFY_ENABLES, CONFIG_FLAGS, TD_CTLS, TOPOLOGY_ENUM_CONFIGURED, MRTD, MRCONFIGID, MROWNER, MROWNERCONFIG, RTMR, PRE_IMPORT_UUID and the SERVTD fields, writes NOTIFY_ENABLES and TD_CTLS (REDUCE_VE and friends); TDG.VM.RD version 1 enumerates |
//! | 9/10 TDG.VP.RD/WR | the TDVPS fields a guest may read or write (`metadata.rs`): VCPU_INDEX, CPUID_SUPERVISOR_VE/USER_VE, CPUID_CONTROL, L2_CTLS, TSC_DEADLINE |
//! | 11 TDG.SYS.RD | TDX_FEATURES0 (TDG_VP_RDWR, CPUID_VIRT_GUEST_CTRL, VE_REDUCTION) |
//!
//! | TDVMCALL | here |
//! |---|---|
//! | 0x10000 GetTdVmCallInfo | leaf 0: no optional sub-function |
//! | 0x10001 MapGPA | KVM's checks, then conversions as QEMU does them, `map-gpa-chunk=` bytes per call then RETRY |
//! | 0x10002 GetQuote | the buffer's status becomes "service unavailable": cvmem has no quoting enclave |
//! | 0x10003 ReportFatalError | the message is shown and QEMU's guest-panic action runs |
//! | 10 CPUID | KVM's `tdx_emulate_cpuid()`: QEMU's CPU model, KVM's paravirtual leaves |
//! | 31/32 RDMSR/WRMSR | KVM's `tdx_get_msr()`/`tdx_set_msr()`: the MSRs it emulates for a TD (`msr.rs`), through QEMU |
//! | 30 IO, 48 MMIO | QEMU answers, through the cvm host services |
//! | 12 HLT | the vCPU halts until an interrupt is pending (R12 = 0: whatever RFLAGS.IF says) or, R12 = 1, as HLT with interrupts off would |
//!
//! | #VE (after launch) | VE info: exit reason, qualification, GLA, GPA, R10 instruction length |
//! | --- | --- |
//! | EPT violation: a PENDING private page (SEPT_VE_DISABLE clear), MMIO through the shared alias, `strict=` wrong alias | 48, SDM Table 28-7, the linear and guest-physical address, 0 |
//! | IN, OUT, INS, OUTS (every form) | 30, SDM Table 28-5 (size, IN, string, REP, immediate, port), 0, 0, the length |
//! | HLT | 12, 0, 0, 0, 1 (the length) |
//! | CPUID of a leaf outside the module's table, or faulting (`cpuid_table.rs`) | 10, 0, 0, 0, 2 |
//! | RDMSR/WRMSR the module's MSR bitmap and actions make #VE (`msr.rs`) | 31/32, 0, 0, 0, 2 |
//! | MOV to CR0/CR4 of a bit the module owns, where its exit handler makes it a #VE (`cr.rs`) | 28, SDM Table 28-3 (CR, access type, register), 0, 0, the length |
//! | any of them while the last VE info is unread | #DF (error code 0) instead, as the module's `tdx_inject_ve()` |
//!
//! CPUID answers from the module's table over QEMU's CPU model
//! (`cpuid_table.rs`, `cpuid.rs`); RDMSR/WRMSR run natively (on QEMU's
//! CPU), raise #GP or #VE, or are emulated as the module's MSR bitmap and
//! exit handlers say (`msr.rs`). docs/tdx-tables.md lists every leaf and
//! MSR, generated from those tables (`tables.rs`). Before launch (SeaBIOS,
//! the option ROMs), and with paging off, nothing raises #VE.

mod cpuid;
pub mod cpuid_table;
pub mod cr;
mod launch;
pub mod metadata;
pub mod msr;
mod report;
mod stats;
#[cfg(test)]
mod tables;
mod tdcall;
mod tdvf;
mod tdvmcall;
#[cfg(test)]
mod testutil;
mod ve;
mod xsetbv;

use report::{Sha384Digest, SHA384_LEN};
pub use stats::TdxStats;

use crate::args::AcceptPolicy;
use crate::effects::Effects;
use crate::flavour::{Ctx, Flavour};
use crate::hooks::{
    Fault, FirmwarePlace, Host, InitSipi, Insn, InsnAction, Stage2Answer, Stage2Request, VcpuState,
};
use crate::machine::CpuModel;
use crate::vmm::{model_access, Vmm};
use cvmem_model::{GfnRange, Stage2Fault, TdxStatus, VcpuId, VeInfo};
use parking_lot::Mutex;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Once, OnceLock};

/// TDCALL leaf numbers (RAX bits 15:0).
pub mod leaf {
    #![allow(missing_docs)]
    pub const VP_VMCALL: u64 = 0;
    pub const VP_INFO: u64 = 1;
    pub const MR_RTMR_EXTEND: u64 = 2;
    pub const VP_VEINFO_GET: u64 = 3;
    pub const MR_REPORT: u64 = 4;
    pub const VP_CPUIDVE_SET: u64 = 5;
    pub const MEM_PAGE_ACCEPT: u64 = 6;
    pub const VM_RD: u64 = 7;
    pub const VM_WR: u64 = 8;
    pub const VP_RD: u64 = 9;
    pub const VP_WR: u64 = 10;
    pub const SYS_RD: u64 = 11;
}

/// TDX module status codes beyond the Secure-EPT ones the model defines
/// (TDX module `tdx_error_codes_defs.h`).
pub mod status {
    #![allow(missing_docs)]
    pub const NO_VALID_VE_INFO: u64 = 0xC000_0704_0000_0000;
    pub const METADATA_FIELD_ID_INCORRECT: u64 = 0xC000_0C00_0000_0000;
    pub const METADATA_FIELD_NOT_WRITABLE: u64 = 0xC000_0C01_0000_0000;
    pub const METADATA_FIELD_NOT_READABLE: u64 = 0xC000_0C02_0000_0000;
    pub const METADATA_FIRST_FIELD_ID_IN_CONTEXT: u64 = 0x0000_0C0B_0000_0000;
    pub const METADATA_FIELD_VALUE_NOT_VALID: u64 = 0xC000_0C03_0000_0000;
    /// Operand IDs in bits 31:0 of TDX_OPERAND_INVALID: the register.
    pub const OPERAND_RAX: u64 = 0;
    pub const OPERAND_RCX: u64 = 1;
    pub const OPERAND_RDX: u64 = 2;
    pub const OPERAND_R8: u64 = 8;
}

/// TDVMCALL sub-functions (R11) and status codes (R10), GHCI spec and
/// Linux `asm/shared/tdx.h`.
pub mod vmcall {
    #![allow(missing_docs)]
    pub const GET_TD_VM_CALL_INFO: u64 = 0x10000;
    pub const MAP_GPA: u64 = 0x10001;
    pub const GET_QUOTE: u64 = 0x10002;
    pub const REPORT_FATAL_ERROR: u64 = 0x10003;
    pub const CPUID: u64 = 10;
    pub const HLT: u64 = 12;
    pub const IO: u64 = 30;
    pub const MSR_READ: u64 = 31;
    pub const MSR_WRITE: u64 = 32;
    pub const EPT_VIOLATION: u64 = 48;

    pub const SUCCESS: u64 = 0;
    pub const RETRY: u64 = 1;
    pub const INVALID_OPERAND: u64 = 0x8000_0000_0000_0000;
    pub const ALIGN_ERROR: u64 = 0x8000_0000_0000_0002;
    pub const SUBFUNC_UNSUPPORTED: u64 = 0x8000_0000_0000_0003;

    /// GetQuote buffer header: `version` must be 1; `status` values.
    pub const QUOTE_VERSION: u64 = 1;
    pub const QUOTE_SERVICE_UNAVAILABLE: u64 = 0x8000_0000_0000_0001;

    /// ReportFatalError R12 bit 63: R13 holds a GPA of more data.
    pub const FATAL_GPA_VALID: u64 = 1 << 63;
}

/// TD-scope metadata fields (Linux `asm/shared/tdx.h`; the TD-scope field
/// table is `metadata::TDCS_TABLE`).
pub mod field {
    #![allow(missing_docs)]
    pub const TDX_FEATURES0: u64 = 0x0A00_0003_0000_0008;
    #[cfg(test)]
    pub const CONFIG_FLAGS: u64 = 0x1110_0003_0000_0016;
    #[cfg(test)]
    pub const TD_CTLS: u64 = 0x1110_0003_0000_0017;
    #[cfg(test)]
    pub const NOTIFY_ENABLES: u64 = 0x9100_0000_0000_0010;
    #[cfg(test)]
    pub const TOPOLOGY_ENUM_CONFIGURED: u64 = 0x9100_0000_0000_0019;
    /// TD_CTLS.PENDING_VE_DISABLE: ATTRIBUTES.SEPT_VE_DISABLE, which the
    /// guest may name in a write but not change (CONFIG_FLAGS.
    /// FLEXIBLE_PENDING_VE is clear).
    pub const TD_CTLS_PENDING_VE_DISABLE: u64 = 1 << 0;
    /// TD_CTLS.ENUM_TOPOLOGY: CPUID 0xB/0x1F and the x2APIC ID MSR are
    /// virtualized instead of raising #VE.
    pub const TD_CTLS_ENUM_TOPOLOGY: u64 = 1 << 1;
    /// TD_CTLS.VIRT_CPUID2: CPUID 2 is virtualized instead of raising #VE.
    pub const TD_CTLS_VIRT_CPUID2: u64 = 1 << 2;
    /// TD_CTLS.REDUCE_VE: #VE reduction (implies ENUM_TOPOLOGY and
    /// VIRT_CPUID2).
    pub const TD_CTLS_REDUCE_VE: u64 = 1 << 3;
    /// TD_CTLS.LOCK: once set, no TD_CTLS bit may change.
    pub const TD_CTLS_LOCK: u64 = 1 << 63;
    /// The TD_CTLS bits a guest may write (the TDCS field table's guest
    /// write mask): the four controls and LOCK.
    pub const TD_CTLS_GUEST_WRITABLE: u64 = TD_CTLS_PENDING_VE_DISABLE
        | TD_CTLS_ENUM_TOPOLOGY
        | TD_CTLS_VIRT_CPUID2
        | TD_CTLS_REDUCE_VE
        | TD_CTLS_LOCK;
    /// TDX_FEATURES0.TDG_VP_RDWR (bit 3): TDG.VP.RD and TDG.VP.WR.
    pub const TDX_FEATURES0_TDG_VP_RDWR: u64 = 1 << 3;
    /// TDX_FEATURES0.CPUID_VIRT_GUEST_CTRL (bit 5): TDVPS.CPUID_CONTROL.
    pub const TDX_FEATURES0_CPUID_VIRT_GUEST_CTRL: u64 = 1 << 5;
    /// TDX_FEATURES0.VE_REDUCTION (bit 30): TD_CTLS.REDUCE_VE is offered.
    pub const TDX_FEATURES0_VE_REDUCTION: u64 = 1 << 30;
}

/// Per-vCPU state of the module.
#[derive(Debug)]
struct TdVcpu {
    /// The #VE information of a #VE not yet read by TDG.VP.VEINFO.GET,
    /// with the instruction length of an instruction-caused #VE (0 for an
    /// EPT violation, where it is not defined).
    ve: Option<(VeInfo, u32)>,
    /// KVM_TDX_INIT_VCPU's part that cvmem can only do from inside the
    /// vCPU (its local APIC in x2APIC mode) is done.
    initialized: bool,
    /// IA32_DEBUGCTL, which the module keeps in the TD's VMCS (an exit
    /// for every access; see `msr.rs`).
    debugctl: u64,
    /// TDVPS.CPUID_SUPERVISOR_VE and CPUID_USER_VE (TDG.VP.CPUIDVE.SET,
    /// TDG.VP.WR): every CPUID at CPL 0, or above, raises #VE if not 0.
    cpuid_supervisor_ve: u8,
    cpuid_user_ve: u8,
    /// TDVPS.CPUID_CONTROL, by the module's CPUID lookup index: bit 0 a
    /// #VE for that leaf at CPL 0, bit 1 above.
    cpuid_control: [u8; 128],
    /// TDVPS.L2_CTLS and TSC_DEADLINE, per VM (0 the TD, 1-3 L2 VMs, none
    /// of which a KVM TD has): what TDG.VP.WR stored.
    l2_ctls: [u64; 4],
    tsc_deadline: [u64; 4],
    /// MSR_SMI_COUNT as the guest wrote it under REDUCE_VE (TDVPS).
    smi_count: u64,
    /// IA32_MISC_ENABLE once the guest wrote it under REDUCE_VE (TDVPS).
    misc_enable: Option<u64>,
}

impl Default for TdVcpu {
    /// As TDH.VP.INIT leaves it (`init_tdvps_fields()`: TSC_DEADLINE of
    /// the TD itself all ones).
    fn default() -> TdVcpu {
        TdVcpu {
            ve: None,
            initialized: false,
            debugctl: 0,
            cpuid_supervisor_ve: 0,
            cpuid_user_ve: 0,
            cpuid_control: [0; 128],
            l2_ctls: [0; 4],
            tsc_deadline: [u64::MAX, 0, 0, 0],
            smi_count: 0,
            misc_enable: None,
        }
    }
}

/// The modelled TDX module of one TD.
#[derive(Debug)]
pub struct TdxModule {
    vcpus: Box<[Mutex<TdVcpu>]>,
    rtmr: Mutex<[Sha384Digest; 4]>,
    /// The ranges TDH.MEM.PAGE.ADD added at launch, in order; MRTD is
    /// computed from them when a TDREPORT first needs it, so that a large TD
    /// does not pay a SHA-384 block per page at boot.
    added: Mutex<Vec<GfnRange>>,
    mrtd: OnceLock<Sha384Digest>,
    td_ctls: AtomicU64,
    /// What the MSR bitmap depends on, computed at the first MSR access
    /// after launch (the module computes it at TDH.MNG.INIT).
    msr_config: OnceLock<msr::TdMsrConfig>,
    /// The CR0/CR4 masks and shadows, computed at the first CR write
    /// after launch (the module's TDH.VP.INIT sets them in the VMCS).
    cr_config: OnceLock<cr::CrConfig>,
    notify_enables: AtomicU64,
    launched: AtomicBool,
    launch: Once,
    /// The TDVF image, when the TD starts from one.
    tdvf: OnceLock<tdvf::Tdvf>,
    /// The TD's CPUID values (TDH.MNG.INIT), computed at the first CPUID
    /// or MSR access after launch.
    td_cpuid: OnceLock<cpuid_table::TdCpuid>,
    /// `accept=`.
    pub accept: AcceptPolicy,
    /// `map-gpa-chunk=`.
    pub map_gpa_chunk: u64,
    /// `xfam=`; `None`: the CPU model's components.
    pub xfam: Option<u64>,
    /// Counters.
    pub stats: TdxStats,
}

fn gp0() -> InsnAction {
    InsnAction::Fault(Fault {
        vector: 13,
        error_code: Some(0),
        cr2: None,
    })
}

fn operand_invalid(operand: u64) -> u64 {
    TdxStatus::OPERAND_INVALID.with_detail(operand).0
}

impl TdxModule {
    /// The module of a TD with `max_vcpus` vCPUs.
    pub fn new(max_vcpus: u32, accept: AcceptPolicy, map_gpa_chunk: u64) -> TdxModule {
        TdxModule {
            vcpus: (0..max_vcpus.max(1))
                .map(|_| Mutex::new(TdVcpu::default()))
                .collect(),
            rtmr: Mutex::new([[0; SHA384_LEN]; 4]),
            added: Mutex::new(Vec::new()),
            mrtd: OnceLock::new(),
            td_ctls: AtomicU64::new(0),
            msr_config: OnceLock::new(),
            cr_config: OnceLock::new(),
            notify_enables: AtomicU64::new(0),
            launched: AtomicBool::new(false),
            launch: Once::new(),
            tdvf: OnceLock::new(),
            td_cpuid: OnceLock::new(),
            accept,
            map_gpa_chunk,
            xfam: None,
            stats: TdxStats::default(),
        }
    }

    /// The TD's XFAM: `xfam=`, or every component QEMU's CPU model has (as
    /// QEMU's `tdx-guest` builds TD_PARAMS from the CPU model).
    fn td_xfam(&self, host: &dyn Host) -> u64 {
        self.xfam
            .unwrap_or_else(|| cpuid_table::xfam_of(&cpuid::cpu_of(host)))
    }

    /// TD_CTLS as the guest set it, without PENDING_VE_DISABLE (which
    /// follows ATTRIBUTES): what CPUID and MSR virtualization consult.
    fn td_ctls_set(&self) -> u64 {
        self.td_ctls.load(Ordering::Relaxed)
    }

    /// Whether the TD runs (TDH.MR.FINALIZE done).
    pub fn launched(&self) -> bool {
        self.launched.load(Ordering::Acquire)
    }

    /// Whether the instruction in `regs` belongs to the VMM's loader rather
    /// than the TD, so that CPUID and MSRs are QEMU's: before the launch,
    /// and, in a TD started without TDVF, with paging off (SeaBIOS, and the
    /// real-mode trampoline of an AP cvmem starts through INIT-SIPI, which
    /// no TD vCPU ever runs). A TD started from TDVF runs its firmware with
    /// paging off from the reset vector, in the module's hands.
    fn loader_runs(&self, regs: &crate::hooks::Regs) -> bool {
        !self.launched() || (!self.has_tdvf() && regs.cr0 & msr::CR0_PG == 0)
    }

    /// A translation before launch: the VMM still builds the TD (paging
    /// off: the identity, see ensure_launched()), or its first access with
    /// paging on launches it (`None`: look it up). Out of line, off the
    /// hot path.
    #[cold]
    #[inline(never)]
    fn stage2_before_launch(&self, vmm: &Vmm, req: &Stage2Request) -> Option<Stage2Answer> {
        if !req.paging {
            return Some(Stage2Answer::identity(req));
        }
        self.ensure_launched(vmm);
        None
    }
}

impl Flavour for TdxModule {
    #[cfg(test)]
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn insn_kinds(&self) -> &'static [Insn] {
        &[
            Insn::Tdcall,
            Insn::Cpuid,
            Insn::Vmcall,
            Insn::Ioio,
            Insn::Hlt,
            Insn::Rdmsr,
            Insn::Wrmsr,
            Insn::CrWrite,
            Insn::Xsetbv,
        ]
    }

    fn insn(&self, cx: &mut Ctx<'_>, insn: Insn) -> InsnAction {
        match insn {
            Insn::Vmcall => self.vmcall_insn(cx),
            Insn::Tdcall => self.tdcall(cx),
            Insn::Rdmsr => self.msr_insn(cx, false),
            Insn::Wrmsr => self.msr_insn(cx, true),
            Insn::Ioio | Insn::Hlt => self
                .instruction_ve(cx.vmm, cx.vcpu, insn, cx.regs, cx.host)
                .unwrap_or(InsnAction::Decline),
            Insn::Cpuid => self.cpuid_insn(cx),
            Insn::CrWrite => self.cr_insn(cx),
            Insn::Xsetbv => self.xsetbv_insn(cx),
            _ => InsnAction::Decline,
        }
    }

    fn launched(&self) -> bool {
        TdxModule::launched(self)
    }

    // Always: left to itself the compiler keeps it out of line, which
    // costs a TD about 5% more instructions per softTLB fill (callgrind).
    #[inline(always)]
    fn stage2(&self, vmm: &Vmm, req: &Stage2Request, fx: &mut Effects) -> Stage2Answer {
        if !self.launched() {
            if let Some(answer) = self.stage2_before_launch(vmm, req) {
                return answer;
            }
        }
        let model = vmm
            .vm()
            .stage2(VcpuId(req.vcpu_index), req.gpa, model_access(req.access));
        vmm.answer(self, req, model, fx)
    }

    fn guest_fault(
        &self,
        vmm: &Vmm,
        req: &Stage2Request,
        fault: &Stage2Fault,
    ) -> Option<Stage2Answer> {
        let pending = |gpa| VeInfo::pending_access(gpa, model_access(req.access));
        match *fault {
            // A TD's MMIO is a #VE: KVM's shared-EPT MMIO entries leave #VE
            // unsuppressed (TDX has no instruction decode in the host), so
            // the access becomes an EPT-violation #VE and the guest emulates
            // it with TDVMCALL #VE.RequestMMIO (Linux handle_mmio()).
            // Page-walk reads and accesses with paging off (the VMM's
            // loader before launch) are not the TD's.
            Stage2Fault::Mmio { gpa } if req.paging && !req.page_walk && self.launched() => {
                Some(self.stage2_ve(vmm, req, gpa, pending(gpa)))
            }
            Stage2Fault::VirtualizationException { gpa, ve } => {
                Some(self.stage2_ve(vmm, req, gpa, ve))
            }
            // strict=on: an access through the wrong alias is an EPT
            // violation #VE rather than a conversion.
            Stage2Fault::MemoryFault { gpa, .. } => {
                Some(self.stage2_ve(vmm, req, gpa, pending(gpa)))
            }
            _ => None,
        }
    }

    fn firmware(&self, gpa: u64, image: &[u8]) -> Result<FirmwarePlace, String> {
        self.take_firmware(gpa, image)
    }

    fn machine_ready(
        &self,
        vmm: &Vmm,
        cpu: &dyn CpuModel,
        _fx: &mut Effects,
    ) -> Result<(), String> {
        if let Some(xfam) = self.xfam {
            cpuid_table::check_xfam_cpu(xfam, &|l, s| cpu.cpuid(l, s))?;
        }
        self.check_tdvf(vmm, cpu)
    }

    fn vcpu_reset(&self, vmm: &Vmm, vcpu: u32, fx: &mut Effects) -> Option<VcpuState> {
        self.reset_state(vmm, vcpu, fx)
    }

    fn init_sipi(&self, _host: &dyn Host, _vcpu: u32, event: InitSipi) -> bool {
        self.drop_init_sipi(event)
    }

    fn private_by_default(&self) -> bool {
        true
    }

    fn protects_vcpu_state(&self) -> bool {
        true
    }

    fn add_learned(&self, vmm: &Vmm, gfn: cvmem_model::Gfn, vcpu: u32) {
        self.add_learned_page(vmm, gfn, vcpu);
    }

    fn summary(&self, out: &mut String) {
        self.stats.summary(out);
        if self.has_tdvf() {
            let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "  tdx start     from TDVF at the reset vector; {} INIT and {} SIPI dropped",
                n(&self.stats.inits_dropped),
                n(&self.stats.sipis_dropped)
            );
        }
    }

    fn stats(&self) -> Option<(&'static str, serde_json::Value)> {
        Some(("tdx", self.stats.json()))
    }
}
