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
//! | 6 TDG.MEM.PAGE.ACCEPT | the model's Secure EPT (4K, 2M) |
//! | 7/8 TDG.VM.RD/WR | CONFIG_FLAGS, TD_CTLS, NOTIFY_ENABLES, TOPOLOGY_ENUM_CONFIGURED |
//! | 11 TDG.SYS.RD | TDX_FEATURES0 (no optional feature) |
//!
//! | TDVMCALL | here |
//! |---|---|
//! | 0x10000 GetTdVmCallInfo | leaf 0: no optional sub-function |
//! | 0x10001 MapGPA | KVM's checks, then conversions as QEMU does them, `map-gpa-chunk=` bytes per call then RETRY |
//! | 0x10002 GetQuote | the buffer's status becomes "service unavailable": cvmem has no quoting enclave |
//! | 0x10003 ReportFatalError | the message is shown and QEMU's guest-panic action runs |
//! | 10 CPUID, 30 IO, 31/32 MSR, 48 MMIO | QEMU answers, through the cvm host services |
//! | 12 HLT | the vCPU halts until an interrupt is pending (R12 = 0: whatever RFLAGS.IF says) or, R12 = 1, as HLT with interrupts off would |
//!
//! | #VE (after launch) | VE info: exit reason, qualification, GLA, GPA, R10 instruction length |
//! | --- | --- |
//! | EPT violation: a PENDING private page (SEPT_VE_DISABLE clear), MMIO through the shared alias, `strict=` wrong alias | 48, SDM Table 28-7, the linear and guest-physical address, 0 |
//! | IN, OUT, INS, OUTS (every form) | 30, SDM Table 28-5 (size, IN, string, REP, immediate, port), 0, 0, the length |
//! | HLT | 12, 0, 0, 0, 1 (the length) |
//! | any of them while the last VE info is unread | #DF (error code 0) instead, as the module's `tdx_inject_ve()` |
//!
//! CPUID and the MSRs the module virtualizes run without a #VE (the module
//! answers CPUID, QEMU the MSRs). Before launch (SeaBIOS, the option ROMs)
//! nothing raises #VE.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Once, OnceLock};

use cvmem_model::{
    AcceptOutcome, Alias, Gfn, GfnRange, Gpa, SeptState, TdxStatus, VcpuId, VeInfo, PAGE_SIZE,
};
use parking_lot::Mutex;
use sha2::{Digest, Sha384};

use crate::args::AcceptPolicy;
use crate::hooks::{gpr, Fault, Host, Insn, InsnAction, Regs};
use crate::kvm::{vector, Effects, Kvm};

/// TDCALL leaf numbers (RAX bits 15:0).
pub mod leaf {
    #![allow(missing_docs)]
    pub const VP_VMCALL: u64 = 0;
    pub const VP_INFO: u64 = 1;
    pub const MR_RTMR_EXTEND: u64 = 2;
    pub const VP_VEINFO_GET: u64 = 3;
    pub const MR_REPORT: u64 = 4;
    pub const MEM_PAGE_ACCEPT: u64 = 6;
    pub const VM_RD: u64 = 7;
    pub const VM_WR: u64 = 8;
    pub const SYS_RD: u64 = 11;
}

/// TDX module status codes beyond the Secure-EPT ones the model defines
/// (TDX module `tdx_error_codes_defs.h`).
pub mod status {
    #![allow(missing_docs)]
    pub const NO_VALID_VE_INFO: u64 = 0xC000_0704_0000_0000;
    pub const METADATA_FIELD_ID_INCORRECT: u64 = 0xC000_0C00_0000_0000;
    pub const METADATA_FIELD_NOT_WRITABLE: u64 = 0xC000_0C01_0000_0000;
    /// Operand IDs in bits 31:0 of TDX_OPERAND_INVALID: the register.
    pub const OPERAND_RAX: u64 = 0;
    pub const OPERAND_RCX: u64 = 1;
    pub const OPERAND_RDX: u64 = 2;
    pub const OPERAND_R8: u64 = 8;
}

/// TDVMCALL sub-functions (R11) and status codes (R10), GHCI spec and
/// Linux `asm/shared/tdx.h`.
pub mod tdvmcall {
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
    pub const QUOTE_ERROR: u64 = 0x8000_0000_0000_0000;
    pub const QUOTE_SERVICE_UNAVAILABLE: u64 = 0x8000_0000_0000_0001;

    /// ReportFatalError R12 bit 63: R13 holds a GPA of more data.
    pub const FATAL_GPA_VALID: u64 = 1 << 63;
}

/// TD-scope metadata fields (Linux `asm/shared/tdx.h`).
pub mod field {
    #![allow(missing_docs)]
    pub const TDX_FEATURES0: u64 = 0x0A00_0003_0000_0008;
    pub const CONFIG_FLAGS: u64 = 0x1110_0003_0000_0016;
    pub const TD_CTLS: u64 = 0x1110_0003_0000_0017;
    pub const NOTIFY_ENABLES: u64 = 0x9100_0000_0000_0010;
    pub const TOPOLOGY_ENUM_CONFIGURED: u64 = 0x9100_0000_0000_0019;
    /// TD_CTLS.ENUM_TOPOLOGY: the only TD_CTLS bit a guest may change here
    /// (CONFIG_FLAGS.FLEXIBLE_PENDING_VE is clear, so PENDING_VE_DISABLE
    /// follows ATTRIBUTES.SEPT_VE_DISABLE; REDUCE_VE needs a TDX_FEATURES0
    /// bit cvmem does not report).
    pub const TD_CTLS_ENUM_TOPOLOGY: u64 = 1 << 1;
    pub const TD_CTLS_PENDING_VE_DISABLE: u64 = 1 << 0;
}

/// Bits of TDG.VP.VMCALL's RCX: which GPRs the guest exposes to the VMM.
mod expose {
    /// RAX, RCX and RSP can never be exposed; R10 and R11 always must be
    /// (TDX module ABI, TDG.VP.VMCALL operand checks). Bits 31:16 select XMM
    /// registers (allowed, none of cvmem's handlers use them); 63:32 are
    /// reserved.
    pub const FORBIDDEN: u64 = (1 << 0) | (1 << 1) | (1 << 4) | (0xFFFF_FFFF << 32);
    pub const REQUIRED: u64 = (1 << 10) | (1 << 11);
}

/// Size of a TDREPORT_STRUCT and of its REPORTDATA.
const TDREPORT_LEN: usize = 1024;
const REPORTDATA_LEN: usize = 64;
/// SHA-384 digest length.
const SHA384_LEN: usize = 48;

type Sha384Digest = [u8; SHA384_LEN];

fn sha384(parts: &[&[u8]]) -> Sha384Digest {
    let mut h = Sha384::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Per-vCPU state of the module.
#[derive(Debug, Default)]
struct TdVcpu {
    /// The #VE information of a #VE not yet read by TDG.VP.VEINFO.GET,
    /// with the instruction length of an instruction-caused #VE (0 for an
    /// EPT violation, where it is not defined).
    ve: Option<(VeInfo, u32)>,
    /// KVM_TDX_INIT_VCPU's part that cvmem can only do from inside the
    /// vCPU (its local APIC in x2APIC mode) is done.
    initialized: bool,
}

/// CPUID leaf 0's EBX, EDX, ECX on Intel: "Genu", "ineI", "ntel".
const GENUINE_INTEL: [u32; 3] = [
    u32::from_le_bytes(*b"Genu"),
    u32::from_le_bytes(*b"ineI"),
    u32::from_le_bytes(*b"ntel"),
];

/// KVM's paravirtual CPUID leaves (Linux `asm/kvm_para.h`,
/// Documentation/virt/kvm/x86/cpuid.rst): 0x40000000 has the signature
/// "KVMKVMKVM\0\0\0" and the highest KVM leaf; 0x40000001 the features.
const KVM_CPUID_SIGNATURE: u32 = 0x4000_0000;
const KVM_CPUID_FEATURES: u32 = 0x4000_0001;
/// The hypervisor range the TDX module leaves to the VMM (it raises #VE for
/// 0x40000000-0x4FFFFFFF; KVM answers its own 0x400000xx block).
const KVM_CPUID_LAST: u32 = 0x4000_00ff;

/// KVM's answer to a leaf of its paravirtual block, as a TD on KVM sees it
/// (through #VE and TDVMCALL CPUID on hardware). The signature is what makes
/// Linux take KVM's x86_hyper_kvm ops, whose `x2apic_available()` lets a
/// guest without interrupt remapping keep x2APIC on (`try_to_enable_x2apic()`);
/// without it Linux turns x2APIC off and touches the xAPIC page, which a TD
/// cannot. No paravirtual feature is offered (EAX of 0x40000001 is 0): cvmem
/// models none of kvmclock, steal time, PV EOI or PV TLB flush, and a TD
/// uses none of them that need the host to read its memory.
fn kvm_cpuid(leaf: u32) -> [u32; 4] {
    match leaf {
        KVM_CPUID_SIGNATURE => [
            KVM_CPUID_FEATURES,
            u32::from_le_bytes(*b"KVMK"),
            u32::from_le_bytes(*b"VMKV"),
            u32::from_le_bytes(*b"M\0\0\0"),
        ],
        _ => [0; 4],
    }
}

/// VMX basic exit reasons of instruction-caused #VEs (SDM Appendix C).
const EXIT_REASON_HLT: u32 = 12;
const EXIT_REASON_IO_INSTRUCTION: u32 = 30;

/// The VMX exit qualification of an I/O instruction (SDM vol. 3C Table
/// 28-5) from the SVM IOIO EXITINFO1 QEMU gives (APM vol. 2 15.10.2):
/// bits 2:0 the size - 1 (0, 1 or 3), bit 3 IN, bit 4 string, bit 5 REP,
/// bit 6 the operand encoding (1: an immediate port, which EXITINFO1 does
/// not say: `imm`), bits 31:16 the port.
fn io_exit_qualification(info: u64, imm: bool) -> u64 {
    let size: u64 = if info & (1 << 4) != 0 {
        1
    } else if info & (1 << 5) != 0 {
        2
    } else {
        4
    };
    let mut q = (size - 1) | (info & 0xffff_0000);
    for (svm, vmx) in [(0, 3), (2, 4), (3, 5)] {
        if info & (1 << svm) != 0 {
            q |= 1 << vmx;
        }
    }
    if imm {
        q |= 1 << 6;
    }
    q
}

/// Whether the I/O instruction at `regs.rip` takes its port as an imm8
/// (IN/OUT E4-E7 ib) rather than from DX (EC-EF, INS/OUTS): the second
/// last byte is the opcode and the last the port, where DX forms end with
/// their opcode after prefixes (none of which is E4-E7). Read through the
/// guest's page tables (a TD runs in long mode, CS base 0, so RIP is the
/// linear address); unreadable bytes count as DX, which Linux ignores.
fn io_operand_is_immediate(kvm: &Kvm, regs: &Regs, host: &dyn Host) -> bool {
    if regs.info & (1 << 2) != 0 || regs.insn_len < 2 {
        return false;
    }
    let at = regs.rip.wrapping_add(u64::from(regs.insn_len) - 2);
    let mut b = [0u8; 2];
    if !crate::paging::read_linear(kvm, regs, at, &mut b, host) {
        return false;
    }
    (0xe4..=0xe7).contains(&b[0]) && u64::from(b[1]) == (regs.info >> 16) & 0xff
}

/// IA32_APIC_BASE and its bits (SDM vol. 3 11.4.4, 11.12.1).
mod apic_base {
    pub const MSR: u32 = 0x1b;
    pub const BSP: u64 = 1 << 8;
    pub const EXTD: u64 = 1 << 10;
    pub const EN: u64 = 1 << 11;
}

/// Counters for the summary.
#[derive(Debug, Default)]
pub struct TdxStats {
    /// TDCALLs.
    pub tdcalls: AtomicU64,
    /// TDVMCALLs.
    pub tdvmcalls: AtomicU64,
    /// #VEs injected.
    pub ves: AtomicU64,
    /// Of those, for port I/O and for HLT.
    pub io_ves: AtomicU64,
    pub hlt_ves: AtomicU64,
    /// #VEs that found the last one's information unread: #DF instead.
    pub double_ves: AtomicU64,
    /// Pages accepted by the guest.
    pub accepts: AtomicU64,
    /// MapGPA calls that changed memory.
    pub map_gpa: AtomicU64,
    /// Pages added with TDH.MEM.PAGE.ADD at launch.
    pub pages_added: AtomicU64,
    /// TDCALLs by leaf (0-11; others are not counted here).
    pub by_leaf: [AtomicU64; 12],
    /// TDVMCALLs by sub-function, in the order of [`TDVMCALL_NAMES`].
    pub by_tdvmcall: [AtomicU64; TDVMCALL_NAMES.len()],
}

/// TDCALL leaf names for the summary, by leaf number (TDX module ABI).
pub const TDCALL_NAMES: [&str; 12] = [
    "VP.VMCALL",
    "VP.INFO",
    "MR.RTMR.EXTEND",
    "VP.VEINFO.GET",
    "MR.REPORT",
    "VP.CPUIDVE.SET",
    "MEM.PAGE.ACCEPT",
    "VM.RD",
    "VM.WR",
    "VP.RD",
    "VP.WR",
    "SYS.RD",
];

/// TDVMCALL sub-functions for the summary; the last counts KVM hypercalls
/// (R10 != 0) and unknown sub-functions.
pub const TDVMCALL_NAMES: [&str; 11] = [
    "GetTdVmCallInfo",
    "MapGPA",
    "GetQuote",
    "ReportFatalError",
    "CPUID",
    "HLT",
    "IO",
    "RDMSR",
    "WRMSR",
    "MMIO",
    "other",
];

impl TdxStats {
    /// The nonzero per-leaf and per-sub-function counts, "NAME N, ...".
    pub fn calls(&self) -> String {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let leaves = self
            .by_leaf
            .iter()
            .zip(TDCALL_NAMES)
            .skip(1) // VP.VMCALL: by sub-function below
            .chain(self.by_tdvmcall.iter().zip(TDVMCALL_NAMES));
        let parts: Vec<String> = leaves
            .filter(|(c, _)| n(c) != 0)
            .map(|(c, name)| format!("{name} {}", n(c)))
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
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
    notify_enables: AtomicU64,
    launched: AtomicBool,
    launch: Once,
    /// The warning about QEMU's CPU vendor was printed.
    vendor_warned: AtomicBool,
    /// `accept=`.
    pub accept: AcceptPolicy,
    /// `map-gpa-chunk=`.
    pub map_gpa_chunk: u64,
    /// Counters.
    pub stats: TdxStats,
}

/// The result of handling a TDCALL: what QEMU does with the instruction,
/// and the memory/TLB effects.
pub type TdcallResult = (InsnAction, Effects);

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
            notify_enables: AtomicU64::new(0),
            launched: AtomicBool::new(false),
            launch: Once::new(),
            vendor_warned: AtomicBool::new(false),
            accept,
            map_gpa_chunk,
            stats: TdxStats::default(),
        }
    }

    /// Whether the TD runs (TDH.MR.FINALIZE done).
    pub fn launched(&self) -> bool {
        self.launched.load(Ordering::Acquire)
    }

    /// MRTD: each TDH.MEM.PAGE.ADD at launch extended it with a 128-byte
    /// block, "MEM.PAGE.ADD" and the GPA at byte 16 (TDX module ABI, MRTD
    /// measurement). Content is not extended (no TDH.MR.EXTEND), as for
    /// TDVF's temporary memory. All zero before launch.
    fn mrtd(&self) -> &Sha384Digest {
        const NONE_YET: Sha384Digest = [0; SHA384_LEN];
        if !self.launched() {
            return &NONE_YET;
        }
        self.mrtd.get_or_init(|| {
            let mut mrtd = Sha384::new();
            for gfn in self.added.lock().iter().flat_map(|r| r.iter()) {
                let mut block = [0u8; 128];
                block[..12].copy_from_slice(b"MEM.PAGE.ADD");
                block[16..24].copy_from_slice(&gfn.gpa().raw().to_le_bytes());
                mrtd.update(block);
            }
            mrtd.finalize().into()
        })
    }

    /// Builds and launches the TD once, on the first guest access with
    /// paging on: every private page below the `accept=` boundary is added
    /// with TDH.MEM.PAGE.ADD (its content, loaded by QEMU, becomes the
    /// initial image and is measured into MRTD by GPA), then TDH.MR.FINALIZE.
    ///
    /// cvmem has no TDVF: before this point SeaBIOS and QEMU's option ROMs
    /// load the guest the way the VMM fills a TD's initial memory, outside
    /// TD semantics. Callers that arrive while another vCPU launches wait.
    pub fn ensure_launched(&self, kvm: &Kvm) {
        if self.launched() {
            return;
        }
        self.launch.call_once(|| {
            // No memslot appears while the TD launches: audit mode's
            // learning decides by launched() what a new page gets.
            let _ram = kvm.qemu_ram.lock();
            let vm = kvm.vm();
            let limit = self.accept.ready_below_gfn();
            let mut added = Vec::new();
            let slots = vm.memslots();
            for slot in slots.iter().filter(|s| s.private_capable()) {
                let r = slot.range();
                let end = r.end().raw().min(limit);
                if r.start().raw() >= end {
                    continue;
                }
                let add = GfnRange::new(r.start(), Gfn::new(end)).expect("start < end");
                if let Err(e) = vm.tdx_page_add(add) {
                    eprintln!(
                        "cvmem: TDH.MEM.PAGE.ADD of {:#x}..{:#x} failed: {e}",
                        add.start().gpa().raw(),
                        add.end().gpa().raw()
                    );
                    continue;
                }
                added.push(add);
                self.stats
                    .pages_added
                    .fetch_add(add.len(), Ordering::Relaxed);
            }
            *self.added.lock() = added;
            let st = vm.tdx_finalize();
            if !st.is_success() {
                eprintln!("cvmem: TDH.MR.FINALIZE failed: {st}");
            }
            self.launched.store(true, Ordering::Release);
        });
    }

    /// Audit mode: `gfn` is RAM learned after launch (`learn.rs`), which
    /// enforcing mode knew at launch. Below `accept=` it gets what
    /// TDH.MEM.PAGE.ADD gave it there, MAPPED, here through the AUG and
    /// TDG.MEM.PAGE.ACCEPT the model has after finalization (its content is
    /// not touched: audit mode only observes); above it stays PENDING. It
    /// counts as added at launch; MRTD is not extended, as audit mode sees
    /// no TDCALL and so no TDREPORT. Before launch nothing is done: the
    /// launch adds it. The caller holds `Kvm::qemu_ram`.
    pub fn add_learned(&self, kvm: &Kvm, gfn: Gfn, vcpu: u32) {
        if !self.launched() || gfn.raw() >= self.accept.ready_below_gfn() {
            return;
        }
        let vm = kvm.vm();
        let id = VcpuId(vcpu);
        // RCX: the page's GPA, level 0 (4K).
        let rcx = gfn.gpa().raw();
        for _ in 0..4 {
            match vm.tdx_accept(id, rcx) {
                AcceptOutcome::Accepted { .. } => {
                    self.stats.pages_added.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                AcceptOutcome::Status(st) => {
                    eprintln!("cvmem: audit: adding {rcx:#x} as at launch: {st}");
                    return;
                }
                AcceptOutcome::ExitToHost { gpa, .. } => {
                    if let Err(f) = vm.tdx_handle_accept_exit(id, gpa) {
                        eprintln!("cvmem: audit: adding {rcx:#x} as at launch: {f:?}");
                        return;
                    }
                }
            }
        }
    }

    /// Finishes `vcpu`'s KVM_TDX_INIT_VCPU on its first TDCALL or CPUID
    /// after launch: a TD's local APIC runs in x2APIC mode from the start
    /// (KVM `tdx_vcpu_init()` sets IA32_APIC_BASE to APIC_DEFAULT_PHYS_BASE
    /// | LAPIC_MODE_X2APIC, plus BSP for the boot vCPU; the TDX module
    /// virtualizes only the x2APIC). Linux's TDX guest relies on it: it
    /// finds x2APIC enabled (`check_x2apic()`) and never touches the xAPIC
    /// page, which in a TD is private GPA space with no memory behind it.
    ///
    /// cvmem has no vCPU-creation hook with QEMU's MSR service, so this is
    /// done at the vCPU's first instruction the module sees; the launch
    /// itself runs with paging on before any RDMSR of the guest's kernel
    /// (Linux's first TDCALL, TDG.VP.INFO in `tdx_early_init()`, and its
    /// CPUIDs come first). The switch xAPIC -> x2APIC keeps base and BSP.
    pub fn vcpu_enter(&self, vcpu: u32, host: &dyn Host) {
        if !self.launched() {
            return;
        }
        let Some(slot) = self.vcpus.get(vcpu as usize) else {
            return;
        };
        let mut v = slot.lock();
        if v.initialized {
            return;
        }
        v.initialized = true;
        let old = host.rdmsr(apic_base::MSR).unwrap_or(0);
        let new = 0xfee0_0000 | (old & apic_base::BSP) | apic_base::EN | apic_base::EXTD;
        if old != new && !host.wrmsr(apic_base::MSR, new) {
            eprintln!("cvmem: vCPU {vcpu}: IA32_APIC_BASE {old:#x} -> {new:#x} (x2APIC) refused");
        }
    }

    /// Records the #VE information of a #VE about to be injected in `vcpu`
    /// (`insn_len`: the instruction length of an instruction-caused #VE, 0
    /// for an EPT violation) and returns the exception to raise: #VE, or
    /// #DF if the previous #VE's information is still unread. The TDX
    /// module delivers a #VE only while VE_INFO.VALID is clear; "a nested
    /// #VE which occurs before [TDG.VP.VEINFO.GET] will raise a #DF and is
    /// not recoverable" (Linux `tdx_get_ve_info()`; the module's
    /// `tdx_inject_ve()` injects #DF instead). So a guest's #VE handler
    /// must read the VE information before anything that may #VE again,
    /// port I/O (a console line) and HLT included. `None`: no such vCPU.
    pub fn record_ve(&self, vcpu: u32, ve: VeInfo, insn_len: u32) -> Option<Fault> {
        let mut v = self.vcpus.get(vcpu as usize)?.lock();
        if v.ve.is_some() {
            self.stats.double_ves.fetch_add(1, Ordering::Relaxed);
            return Some(Fault {
                vector: vector::DF,
                error_code: Some(0),
                cr2: None,
            });
        }
        v.ve = Some((ve, insn_len));
        self.stats.ves.fetch_add(1, Ordering::Relaxed);
        Some(Fault {
            vector: vector::VE,
            error_code: None,
            cr2: None,
        })
    }

    /// An instruction the TDX module does not let a TD execute: port I/O
    /// (every IN, OUT, INS, OUTS) and HLT exit to the module, which
    /// reflects them to the guest as a #VE with the exit reason, the exit
    /// qualification and the instruction length in the VE information
    /// (TDX module base spec, "#VE on instruction execution": IN/OUT/INS/
    /// OUTS and HLT are among the unconditionally #VE-inducing
    /// instructions). The guest emulates them with TDVMCALL IO or HLT and
    /// skips the instruction by that length (Linux `handle_io()`,
    /// `handle_halt()`, `ve_instr_len()`). Before launch (SeaBIOS, the
    /// option ROMs: the VMM's loader, not the TD) the instructions run as
    /// they are. `None`: QEMU runs the instruction.
    pub fn instruction_ve(
        &self,
        kvm: &Kvm,
        vcpu: u32,
        insn: Insn,
        regs: &Regs,
        host: &dyn Host,
    ) -> Option<InsnAction> {
        if !self.launched() {
            return None;
        }
        let (exit_reason, exit_qualification) = match insn {
            Insn::Ioio => {
                let imm = io_operand_is_immediate(kvm, regs, host);
                (
                    EXIT_REASON_IO_INSTRUCTION,
                    io_exit_qualification(regs.info, imm),
                )
            }
            Insn::Hlt => (EXIT_REASON_HLT, 0),
            _ => return None,
        };
        let ve = VeInfo {
            exit_reason,
            exit_qualification,
            gla: 0,
            gpa: Gpa::new(0),
        };
        let by_reason = match insn {
            Insn::Ioio => &self.stats.io_ves,
            _ => &self.stats.hlt_ves,
        };
        let fault = self.record_ve(vcpu, ve, regs.insn_len)?;
        if fault.vector == vector::VE {
            by_reason.fetch_add(1, Ordering::Relaxed);
        }
        Some(InsnAction::Fault(fault))
    }

    /// CPUID as the TD sees it: leaf 0x21 is the TDX module's
    /// ("IntelTDX    ", Linux `TDX_IDENT`), leaf 0 reports it as present
    /// and the vendor as GenuineIntel, which the TDX module fixes (TDX
    /// module ABI, CPUID virtualization: leaf 0 EBX/ECX/EDX are fixed
    /// fields). Leaves that raising the maximum basic leaf brings into
    /// range but QEMU does not implement read as zero: QEMU answers a
    /// leaf above its maximum with its highest leaf, as Intel CPUs do, and
    /// Linux would take that for the TSC/crystal ratio of leaf 0x15 (a
    /// TSC of a few kHz) or for topology in leaf 0x1f (a bitmap walk past
    /// its end in `topology_init_possible_cpus()`).
    /// `None`: QEMU answers.
    pub fn cpuid(&self, regs: &mut Regs, host: &dyn Host) -> Option<()> {
        let leaf = regs.gpr[gpr::RAX] as u32;
        let out = match leaf {
            0 => {
                let mut r = host.cpuid(0, 0);
                if [r[1], r[3], r[2]] != GENUINE_INTEL
                    && !self.vendor_warned.swap(true, Ordering::Relaxed)
                {
                    eprintln!(
                        "cvmem: a TD runs on an Intel CPU, but QEMU's CPU model is not \
                         GenuineIntel: give QEMU -cpu max,vendor=GenuineIntel,phys-bits=52 \
                         (the guest is told GenuineIntel; QEMU emulates its own vendor)"
                    );
                }
                r[0] = r[0].max(0x21);
                [r[1], r[3], r[2]] = GENUINE_INTEL;
                r
            }
            1 => {
                // ECX bit 31: a TD always runs under a hypervisor (fixed
                // to 1 by the TDX module).
                let mut r = host.cpuid(1, 0);
                r[2] |= 1 << 31;
                r
            }
            1..0x21 if leaf > host.cpuid(0, 0)[0] => [0; 4],
            KVM_CPUID_SIGNATURE..=KVM_CPUID_LAST => kvm_cpuid(leaf),
            0x21 => {
                let sub = regs.gpr[gpr::RCX] as u32;
                if sub == 0 {
                    // EBX, EDX, ECX spell "IntelTDX    ".
                    let word = |s: &[u8; 4]| u32::from_le_bytes(*s);
                    [0, word(b"Inte"), word(b"    "), word(b"lTDX")]
                } else {
                    [0; 4]
                }
            }
            _ => return None,
        };
        for (i, r) in [gpr::RAX, gpr::RBX, gpr::RCX, gpr::RDX]
            .into_iter()
            .enumerate()
        {
            regs.gpr[r] = u64::from(out[i]);
        }
        Some(())
    }

    /// A TDCALL from `vcpu`.
    pub fn tdcall(&self, kvm: &Kvm, vcpu: u32, regs: &mut Regs, host: &dyn Host) -> TdcallResult {
        self.stats.tdcalls.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.stats.by_leaf.get(regs.gpr[gpr::RAX] as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if regs.cpl != 0 {
            return (gp0(), Effects::NONE);
        }
        self.ensure_launched(kvm);
        self.vcpu_enter(vcpu, host);
        let rax = regs.gpr[gpr::RAX];
        // RAX bits 15:0 the leaf, 23:16 its version (0 for every leaf here),
        // 63:24 reserved.
        if rax >> 16 != 0 {
            regs.gpr[gpr::RAX] = operand_invalid(status::OPERAND_RAX);
            return (InsnAction::Done, Effects::NONE);
        }
        let mut effects = Effects::NONE;
        let st = match rax {
            leaf::VP_VMCALL => return self.vp_vmcall(kvm, regs, host),
            leaf::VP_INFO => self.vp_info(kvm, vcpu, regs),
            leaf::MR_RTMR_EXTEND => self.rtmr_extend(kvm, regs, host),
            leaf::VP_VEINFO_GET => self.veinfo_get(vcpu, regs),
            leaf::MR_REPORT => self.mr_report(kvm, regs, host),
            leaf::MEM_PAGE_ACCEPT => match self.accept(kvm, vcpu, regs.gpr[gpr::RCX]) {
                Ok((st, e)) => {
                    effects = e;
                    st
                }
                Err(action) => return (action, Effects::NONE),
            },
            leaf::VM_RD => self.vm_rd(regs),
            leaf::VM_WR => self.vm_wr(regs),
            leaf::SYS_RD => {
                if regs.gpr[gpr::RDX] == field::TDX_FEATURES0 {
                    regs.gpr[gpr::R8] = 0;
                    0
                } else {
                    status::METADATA_FIELD_ID_INCORRECT
                }
            }
            _ => operand_invalid(status::OPERAND_RAX),
        };
        regs.gpr[gpr::RAX] = st;
        (InsnAction::Done, effects)
    }

    fn vp_info(&self, kvm: &Kvm, vcpu: u32, regs: &mut Regs) -> u64 {
        let Some(info) = kvm.vm().tdx_vp_info(VcpuId(vcpu)) else {
            return operand_invalid(status::OPERAND_RAX);
        };
        regs.gpr[gpr::RCX] = info.rcx;
        regs.gpr[gpr::RDX] = info.rdx;
        regs.gpr[gpr::R8] = info.r8;
        regs.gpr[gpr::R9] = info.r9;
        regs.gpr[gpr::R10] = info.r10;
        regs.gpr[gpr::R11] = info.r11;
        0
    }

    fn veinfo_get(&self, vcpu: u32, regs: &mut Regs) -> u64 {
        let Some((ve, insn_len)) = self
            .vcpus
            .get(vcpu as usize)
            .and_then(|v| v.lock().ve.take())
        else {
            return status::NO_VALID_VE_INFO;
        };
        regs.gpr[gpr::RCX] = u64::from(ve.exit_reason);
        regs.gpr[gpr::RDX] = ve.exit_qualification;
        regs.gpr[gpr::R8] = ve.gla;
        regs.gpr[gpr::R9] = ve.gpa.raw();
        // Bits 31:0 the instruction length (0 where not defined, as for an
        // EPT violation), 63:32 the instruction information (none of the
        // exits here has any).
        regs.gpr[gpr::R10] = u64::from(insn_len);
        0
    }

    /// The QEMU address of the private, accepted page holding `gpa` (which
    /// must not have the shared bit), for the module's own memory operands.
    fn private_operand(&self, kvm: &Kvm, gpa: u64) -> Option<u64> {
        let vm = kvm.vm();
        let d = vm.decode(Gpa::new(gpa))?;
        if d.alias == Alias::Shared
            || !vm.is_private(d.gfn)
            || vm.tdx_sept_state(d.gfn).0 != SeptState::Mapped
        {
            return None;
        }
        Some(kvm.backing_of(d.gfn)? + d.offset)
    }

    fn rtmr_extend(&self, kvm: &Kvm, regs: &mut Regs, host: &dyn Host) -> u64 {
        let (gpa, index) = (regs.gpr[gpr::RCX], regs.gpr[gpr::RDX]);
        if gpa % 64 != 0 {
            return operand_invalid(status::OPERAND_RCX);
        }
        let Some(at) = self.private_operand(kvm, gpa) else {
            return operand_invalid(status::OPERAND_RCX);
        };
        if index >= 4 {
            return operand_invalid(status::OPERAND_RDX);
        }
        let mut data = [0u8; SHA384_LEN];
        if !host.phys_read(at, &mut data) {
            return operand_invalid(status::OPERAND_RCX);
        }
        let mut rtmr = self.rtmr.lock();
        let r = &mut rtmr[index as usize];
        *r = sha384(&[&r[..], &data]);
        0
    }

    /// TDG.MR.REPORT: RCX = GPA of the 1024-byte TDREPORT_STRUCT (1024-byte
    /// aligned), RDX = GPA of the 64-byte REPORTDATA (64-byte aligned), R8 =
    /// sub-type 0. Both private and accepted.
    fn mr_report(&self, kvm: &Kvm, regs: &mut Regs, host: &dyn Host) -> u64 {
        let (out, data_gpa, subtype) = (regs.gpr[gpr::RCX], regs.gpr[gpr::RDX], regs.gpr[gpr::R8]);
        let Some(out_at) = (out % TDREPORT_LEN as u64 == 0)
            .then(|| self.private_operand(kvm, out))
            .flatten()
        else {
            return operand_invalid(status::OPERAND_RCX);
        };
        let Some(data_at) = (data_gpa % REPORTDATA_LEN as u64 == 0)
            .then(|| self.private_operand(kvm, data_gpa))
            .flatten()
        else {
            return operand_invalid(status::OPERAND_RDX);
        };
        if subtype != 0 {
            return operand_invalid(status::OPERAND_R8);
        }
        let mut reportdata = [0u8; REPORTDATA_LEN];
        if !host.phys_read(data_at, &mut reportdata) {
            return operand_invalid(status::OPERAND_RDX);
        }
        let report = self.tdreport(kvm, &reportdata, host);
        if !host.phys_write(out_at, &report) {
            return operand_invalid(status::OPERAND_RCX);
        }
        0
    }

    /// A TDREPORT_STRUCT (TDX module ABI spec, TDREPORT_STRUCT; Linux
    /// `TDX_REPORT_LEN`): REPORTMACSTRUCT (256 bytes), TEE_TCB_INFO (239) and
    /// 17 reserved bytes, TDINFO_STRUCT (512). The MAC is all zero: the
    /// report is unsigned and no verifier will accept it.
    pub fn tdreport(
        &self,
        kvm: &Kvm,
        reportdata: &[u8; REPORTDATA_LEN],
        host: &dyn Host,
    ) -> [u8; TDREPORT_LEN] {
        let mut r = [0u8; TDREPORT_LEN];
        // TDINFO_STRUCT at 512.
        let attributes = kvm.vm().tdx_vp_info(VcpuId(0)).map_or(0, |i| i.rdx);
        let xcr0 = host.cpuid(0xd, 0);
        let xfam = u64::from(xcr0[0]) | u64::from(xcr0[3]) << 32;
        {
            let td = &mut r[512..];
            td[0..8].copy_from_slice(&attributes.to_le_bytes());
            td[8..16].copy_from_slice(&xfam.to_le_bytes());
            td[16..64].copy_from_slice(self.mrtd());
            // MRCONFIGID, MROWNER, MROWNERCONFIG (64..208): zero, as when
            // the VMM gives none.
            let rtmr = self.rtmr.lock();
            for (i, m) in rtmr.iter().enumerate() {
                td[208 + i * SHA384_LEN..208 + (i + 1) * SHA384_LEN].copy_from_slice(m);
            }
            // SERVTD_HASH (400..448) and reserved: zero.
        }
        // TEE_TCB_INFO at 256: VALID (8 bytes) says which fields are
        // meaningful; cvmem has no SEAM module, so none are.
        let tee_tcb_info_hash = sha384(&[&r[256..256 + 239]]);
        let tee_info_hash = sha384(&[&r[512..1024]]);
        // REPORTMACSTRUCT at 0: REPORTTYPE (type 0x81 = TDX, subtype 0,
        // version 0), reserved, CPUSVN (zero), the two hashes, REPORTDATA,
        // reserved, MAC (zero: unsigned).
        r[0] = 0x81;
        r[32..80].copy_from_slice(&tee_tcb_info_hash);
        r[80..128].copy_from_slice(&tee_info_hash);
        r[128..192].copy_from_slice(reportdata);
        r
    }

    /// TDG.MEM.PAGE.ACCEPT with RCX = GPA | level. The module's TD exit for
    /// a page that is not there yet is handled as KVM handles it (map and
    /// AUG), then the TDCALL runs again. `Err`: an exception instead.
    fn accept(&self, kvm: &Kvm, vcpu: u32, rcx: u64) -> Result<(u64, Effects), InsnAction> {
        let vm = kvm.vm();
        let id = VcpuId(vcpu);
        let mut effects = Effects::NONE;
        // Each round either completes or maps one more piece; a few rounds
        // cover AUG after an implicit conversion.
        for _ in 0..4 {
            match vm.tdx_accept(id, rcx) {
                AcceptOutcome::Accepted { range } => {
                    self.stats.accepts.fetch_add(range.len(), Ordering::Relaxed);
                    // The module zeroes accepted pages (init_sept_4k_page()).
                    effects.clear.extend(kvm.backing_ranges(range));
                    return Ok((0, effects));
                }
                AcceptOutcome::Status(st) => return Ok((st.0, effects)),
                AcceptOutcome::ExitToHost { gpa, .. } => match vm.tdx_handle_accept_exit(id, gpa) {
                    Ok(()) => {}
                    Err(fault) => match kvm.exit_fault(vcpu, fault, 0) {
                        Ok(e) => {
                            effects.merge(e);
                        }
                        Err(action) => return Err(action),
                    },
                },
            }
        }
        kvm.stop(format!(
            "TDG.MEM.PAGE.ACCEPT of {rcx:#x} on vCPU {vcpu} made no progress in 4 exits"
        ));
        Err(InsnAction::Stop)
    }

    fn vm_rd(&self, regs: &mut Regs) -> u64 {
        let value = match regs.gpr[gpr::RDX] {
            field::CONFIG_FLAGS => 0,
            field::TD_CTLS => self.td_ctls(),
            field::NOTIFY_ENABLES => self.notify_enables.load(Ordering::Relaxed),
            field::TOPOLOGY_ENUM_CONFIGURED => 1,
            _ => return status::METADATA_FIELD_ID_INCORRECT,
        };
        regs.gpr[gpr::R8] = value;
        0
    }

    fn td_ctls(&self) -> u64 {
        self.td_ctls.load(Ordering::Relaxed)
    }

    /// TDG.VM.WR: RDX field, R8 value, R9 write mask; R8 returns the old
    /// value. Bits the guest may not write are left alone.
    fn vm_wr(&self, regs: &mut Regs) -> u64 {
        let (value, mask) = (regs.gpr[gpr::R8], regs.gpr[gpr::R9]);
        let (cell, writable) = match regs.gpr[gpr::RDX] {
            field::TD_CTLS => (&self.td_ctls, field::TD_CTLS_ENUM_TOPOLOGY),
            field::NOTIFY_ENABLES => (&self.notify_enables, 1),
            field::CONFIG_FLAGS | field::TOPOLOGY_ENUM_CONFIGURED => {
                return status::METADATA_FIELD_NOT_WRITABLE
            }
            _ => return status::METADATA_FIELD_ID_INCORRECT,
        };
        let m = mask & writable;
        let old = cell
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |o| {
                Some((o & !m) | (value & m))
            })
            .unwrap_or_else(|o| o);
        regs.gpr[gpr::R8] = old;
        0
    }

    /// TDG.VP.VMCALL: checks RCX, gives the VMM only the exposed registers,
    /// and returns only those.
    fn vp_vmcall(&self, kvm: &Kvm, regs: &mut Regs, host: &dyn Host) -> TdcallResult {
        let mask = regs.gpr[gpr::RCX];
        if mask & expose::FORBIDDEN != 0 || mask & expose::REQUIRED != expose::REQUIRED {
            regs.gpr[gpr::RAX] = operand_invalid(status::OPERAND_RCX);
            return (InsnAction::Done, Effects::NONE);
        }
        self.stats.tdvmcalls.fetch_add(1, Ordering::Relaxed);
        let exposed = |i: usize| mask & (1 << i) != 0;
        let mut vmm = [0u64; 16];
        for (i, v) in vmm.iter_mut().enumerate() {
            if exposed(i) {
                *v = regs.gpr[i];
            }
        }
        // GHCI TDG.VP.VMCALL<Instruction.HLT>: R12 is the guest's "interrupt
        // blocked" flag; KVM halts the vCPU (kvm_emulate_halt_noskip()) and
        // wakes it on a pending interrupt unless the flag was set. What the
        // VMM sees decides (registers not exposed read as 0).
        let hlt = (vmm[gpr::R10], vmm[gpr::R11]) == (0, tdvmcall::HLT);
        let irq_blocked = vmm[gpr::R12] != 0;
        let effects = self.tdvmcall(kvm, &mut vmm, mask, host);
        for (i, v) in vmm.iter().enumerate() {
            if exposed(i) {
                regs.gpr[i] = *v;
            }
        }
        regs.gpr[gpr::RAX] = 0;
        if hlt && vmm[gpr::R10] == tdvmcall::SUCCESS {
            return (
                InsnAction::Halt {
                    irq_wakes: !irq_blocked,
                },
                effects,
            );
        }
        (InsnAction::Done, effects)
    }

    /// KVM's `handle_tdvmcall()`: R10 = 0 is a standard TDVMCALL with the
    /// sub-function in R11; R10 != 0 is a KVM hypercall with number R10.
    /// The status goes to R10.
    fn tdvmcall(&self, kvm: &Kvm, r: &mut [u64; 16], mask: u64, host: &dyn Host) -> Effects {
        use tdvmcall::*;
        let counter = match (r[gpr::R10], r[gpr::R11]) {
            (0, GET_TD_VM_CALL_INFO) => 0,
            (0, MAP_GPA) => 1,
            (0, GET_QUOTE) => 2,
            (0, REPORT_FATAL_ERROR) => 3,
            (0, CPUID) => 4,
            (0, HLT) => 5,
            (0, IO) => 6,
            (0, MSR_READ) => 7,
            (0, MSR_WRITE) => 8,
            (0, EPT_VIOLATION) => 9,
            _ => 10,
        };
        self.stats.by_tdvmcall[counter].fetch_add(1, Ordering::Relaxed);
        if r[gpr::R10] != 0 {
            // tdx_emulate_vmcall(): KVM's hypercall ABI in R10..R14.
            let mut hc = Regs {
                cpl: 0,
                ..Regs::default()
            };
            hc.gpr[gpr::RAX] = r[gpr::R10];
            hc.gpr[gpr::RBX] = r[gpr::R11];
            hc.gpr[gpr::RCX] = r[gpr::R12];
            hc.gpr[gpr::RDX] = r[gpr::R13];
            hc.gpr[gpr::RSI] = r[gpr::R14];
            let e = kvm.hypercall(&mut hc);
            r[gpr::R10] = hc.gpr[gpr::RAX];
            return e;
        }
        let (a, b, c, d) = (r[gpr::R12], r[gpr::R13], r[gpr::R14], r[gpr::R15]);
        let mut effects = Effects::NONE;
        let status = match r[gpr::R11] {
            GET_TD_VM_CALL_INFO => {
                if a == 0 {
                    for i in [gpr::R11, gpr::R12, gpr::R13, gpr::R14] {
                        r[i] = 0;
                    }
                    SUCCESS
                } else {
                    INVALID_OPERAND
                }
            }
            MAP_GPA => {
                let (st, next, e) = self.map_gpa(kvm, a, b);
                effects = e;
                if let Some(next) = next {
                    r[gpr::R11] = next;
                }
                st
            }
            GET_QUOTE => self.get_quote(kvm, a, b, host),
            REPORT_FATAL_ERROR => {
                self.report_fatal_error(kvm, r, mask, host);
                SUCCESS
            }
            CPUID => {
                // KVM answers from the CPUID table QEMU gave it, its own
                // paravirtual leaves included.
                let leaf = a as u32;
                let out = if (KVM_CPUID_SIGNATURE..=KVM_CPUID_LAST).contains(&leaf) {
                    kvm_cpuid(leaf)
                } else {
                    host.cpuid(leaf, b as u32)
                };
                for (i, reg) in [gpr::R12, gpr::R13, gpr::R14, gpr::R15]
                    .into_iter()
                    .enumerate()
                {
                    r[reg] = u64::from(out[i]);
                }
                SUCCESS
            }
            HLT => SUCCESS,
            IO => {
                // tdx_emulate_io(): R12 size, R13 direction, R14 port, R15 data.
                if !matches!(a, 1 | 2 | 4) || b > 1 || c > 0xffff {
                    INVALID_OPERAND
                } else {
                    let v = host.pio(c as u16, a as u8, b == 1, d as u32);
                    if b == 0 {
                        r[gpr::R11] = u64::from(v);
                    }
                    SUCCESS
                }
            }
            MSR_READ => match u32::try_from(a).ok().and_then(|m| host.rdmsr(m)) {
                Some(v) => {
                    r[gpr::R11] = v;
                    SUCCESS
                }
                None => INVALID_OPERAND,
            },
            MSR_WRITE => match u32::try_from(a) {
                Ok(m) if host.wrmsr(m, b) => SUCCESS,
                _ => INVALID_OPERAND,
            },
            EPT_VIOLATION => match self.mmio(kvm, a, b, c, d, host) {
                Some(v) => {
                    if b == 0 {
                        r[gpr::R11] = v;
                    }
                    SUCCESS
                }
                None => INVALID_OPERAND,
            },
            _ => SUBFUNC_UNSUPPORTED,
        };
        r[gpr::R10] = status;
        effects
    }

    /// MapGPA (`tdx_map_gpa()` in KVM): R12 the start GPA (the shared bit
    /// says which way), R13 the size. KVM refuses unaligned, empty,
    /// wrapping or out-of-GPAW ranges and ranges whose ends are on
    /// different sides; QEMU then converts (`kvm_convert_memory()`). At most
    /// `map_gpa_chunk` bytes are converted per call: if more remain the
    /// answer is RETRY with R11 = where to resume (GHCI MapGPA). On a
    /// failure R11 is the GPA that failed.
    fn map_gpa(&self, kvm: &Kvm, gpa: u64, size: u64) -> (u64, Option<u64>, Effects) {
        use tdvmcall::*;
        let vm = kvm.vm();
        let width = vm.config().gpaw.bits();
        let legal = |g: u64| g >> width == 0;
        let shared_bit = 1u64 << (width - 1);
        if gpa % PAGE_SIZE != 0
            || size % PAGE_SIZE != 0
            || size == 0
            || gpa.checked_add(size).is_none()
            || !legal(gpa)
            || !legal(gpa + size - 1)
            || (gpa & shared_bit) != ((gpa + size - 1) & shared_bit)
        {
            return (INVALID_OPERAND, None, Effects::NONE);
        }
        let private = gpa & shared_bit == 0;
        let len = size.min(self.map_gpa_chunk);
        let start = (gpa & !shared_bit) / PAGE_SIZE;
        let range =
            GfnRange::from_start_len(Gfn::new(start), len / PAGE_SIZE).expect("checked above");
        match kvm.convert(range, private, true) {
            Ok(effects) => {
                self.stats.map_gpa.fetch_add(1, Ordering::Relaxed);
                if len < size {
                    (RETRY, Some(gpa + len), effects)
                } else {
                    (SUCCESS, None, effects)
                }
            }
            Err(msg) => {
                eprintln!("cvmem: TDVMCALL MapGPA {gpa:#x}+{size:#x}: {msg}");
                (INVALID_OPERAND, Some(gpa), Effects::NONE)
            }
        }
    }

    /// GetQuote: R12 the shared GPA of the buffer, R13 its size, both 4K
    /// aligned (QEMU `tdx_handle_get_quote()`); header: version (1), status,
    /// in_len, out_len. cvmem has no quote generation service, so the
    /// status becomes GET_QUOTE_SERVICE_UNAVAILABLE, as QEMU answers
    /// without a quote-generation socket.
    fn get_quote(&self, kvm: &Kvm, gpa: u64, size: u64, host: &dyn Host) -> u64 {
        use tdvmcall::*;
        let vm = kvm.vm();
        let Some(d) = vm.decode(Gpa::new(gpa)) else {
            return INVALID_OPERAND;
        };
        if d.alias != Alias::Shared {
            return INVALID_OPERAND;
        }
        if gpa % PAGE_SIZE != 0 || size % PAGE_SIZE != 0 || size == 0 {
            return ALIGN_ERROR;
        }
        if vm.is_private(d.gfn) {
            return INVALID_OPERAND;
        }
        let Some(at) = kvm.backing_of(d.gfn) else {
            return INVALID_OPERAND;
        };
        let mut header = [0u8; 16];
        if !host.phys_read(at, &mut header) {
            return INVALID_OPERAND;
        }
        if u64::from_le_bytes(header[..8].try_into().expect("8 bytes")) != QUOTE_VERSION {
            return INVALID_OPERAND;
        }
        let st = QUOTE_SERVICE_UNAVAILABLE.to_le_bytes();
        if !host.phys_write(at + 8, &st) {
            return INVALID_OPERAND;
        }
        SUCCESS
    }

    /// ReportFatalError: R12 the error code, R13 an optional GPA, and a
    /// message of up to 64 bytes in R14, R15, RBX, RDI, RSI, R8, R9, RDX
    /// when R14 is exposed (GHCI; QEMU `tdx_handle_report_fatal_error()`).
    fn report_fatal_error(&self, kvm: &Kvm, r: &[u64; 16], mask: u64, host: &dyn Host) {
        let code = r[gpr::R12];
        let mut message = String::new();
        if mask & (1 << gpr::R14) != 0 {
            let bytes: Vec<u8> = [
                gpr::R14,
                gpr::R15,
                gpr::RBX,
                gpr::RDI,
                gpr::RSI,
                gpr::R8,
                gpr::R9,
                gpr::RDX,
            ]
            .iter()
            .flat_map(|&i| r[i].to_le_bytes())
            .take_while(|&b| b != 0)
            .collect();
            message = String::from_utf8_lossy(&bytes).into_owned();
        }
        let gpa = if code & tdvmcall::FATAL_GPA_VALID != 0 {
            format!(" (data at GPA {:#x})", r[gpr::R13])
        } else {
            String::new()
        };
        eprintln!("cvmem: the TD reported a fatal error {code:#x}{gpa}: {message}");
        kvm.lifecycle.guest_panic(format!(
            "the TD reported a fatal error (TDG.VP.VMCALL<ReportFatalError>) \
             {code:#x}{gpa}: \"{}\"",
            message.escape_debug()
        ));
        host.guest_panicked();
    }

    /// #VE.RequestMMIO: R12 size, R13 direction, R14 the shared GPA, R15
    /// the data (`tdx_emulate_mmio()`: the GPA must be shared, the access
    /// must stay in one page and must not hit a memslot).
    fn mmio(
        &self,
        kvm: &Kvm,
        size: u64,
        dir: u64,
        gpa: u64,
        data: u64,
        host: &dyn Host,
    ) -> Option<u64> {
        if !matches!(size, 1 | 2 | 4 | 8) || dir > 1 {
            return None;
        }
        let vm = kvm.vm();
        let d = vm.decode(Gpa::new(gpa))?;
        if d.alias != Alias::Shared {
            return None;
        }
        let addr = d.gfn.gpa().raw() | d.offset;
        if (addr ^ (addr + size - 1)) & !(PAGE_SIZE - 1) != 0 {
            return None;
        }
        if vm.memslots().find(d.gfn).is_some() {
            return None;
        }
        let n = size as usize;
        if dir == 1 {
            let bytes = data.to_le_bytes();
            // Unassigned space drops the write, as QEMU does.
            host.phys_write(addr, &bytes[..n]);
            Some(0)
        } else {
            let mut bytes = [0u8; 8];
            if !host.phys_read(addr, &mut bytes[..n]) {
                bytes = [0; 8];
            }
            Some(u64::from_le_bytes(bytes))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Config;
    use crate::hooks::fake::{report_ram, FakeHost, MEM};
    use crate::hooks::{prot, Access, Stage2Answer, Stage2Request};
    use crate::memslots::{MemslotOp, RamSection};
    use cvmem_model::{TdAttributes, VmType};

    const SHARED: u64 = 1 << 47;

    /// A launched TD with 16 MiB of RAM, private memory accepted below
    /// `accept_below`.
    fn td(accept_below: u64, attributes: u64) -> Kvm {
        let config = Config {
            vm_type: VmType::Tdx,
            accept: AcceptPolicy::Below(accept_below),
            td_attributes: TdAttributes(attributes),
            map_gpa_chunk: 2 << 20,
            ..Config::default()
        };
        let kvm = Kvm::new(&config, 2).unwrap();
        report_ram(&kvm);
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

    fn tdcall(kvm: &Kvm, host: &FakeHost, regs: &mut Regs) -> InsnAction {
        let tdx = kvm.tdx.as_ref().unwrap();
        let (action, effects) = tdx.tdcall(kvm, 0, regs, host);
        for (gpa, len) in effects.clear {
            host.phys_write(gpa, &vec![0; len as usize]);
        }
        action
    }

    fn call(kvm: &Kvm, host: &FakeHost, leaf: u64, args: &[(usize, u64)]) -> Regs {
        let mut regs = Regs::default();
        regs.gpr[gpr::RAX] = leaf;
        for &(r, v) in args {
            regs.gpr[r] = v;
        }
        assert_eq!(tdcall(kvm, host, &mut regs), InsnAction::Done);
        regs
    }

    /// A TDVMCALL exposing R10-R15; returns the registers after.
    fn vmcall(kvm: &Kvm, host: &FakeHost, sub: u64, args: &[u64]) -> Regs {
        let (r, action) = vmcall_action(kvm, host, 0xfc00, sub, args);
        assert_eq!(action, InsnAction::Done);
        r
    }

    /// A TDVMCALL exposing the registers of `mask`; the registers after
    /// and the callback's answer.
    fn vmcall_action(
        kvm: &Kvm,
        host: &FakeHost,
        mask: u64,
        sub: u64,
        args: &[u64],
    ) -> (Regs, InsnAction) {
        let mut regs = Regs::default();
        regs.gpr[gpr::RAX] = leaf::VP_VMCALL;
        regs.gpr[gpr::RCX] = mask;
        regs.gpr[gpr::R11] = sub;
        for (i, &v) in args.iter().enumerate() {
            regs.gpr[gpr::R12 + i] = v;
        }
        let action = tdcall(kvm, host, &mut regs);
        assert_eq!(regs.gpr[gpr::RAX], 0);
        (regs, action)
    }

    #[test]
    fn hlt_halts_the_vcpu_as_kvm_does() {
        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        let host = FakeHost::new();
        let halt = |mask, args: &[u64]| {
            let (r, action) = vmcall_action(&kvm, &host, mask, tdvmcall::HLT, args);
            (r.gpr[gpr::R10], action)
        };
        // R12 = 0: interrupts not blocked, a pending one wakes the vCPU
        // even with RFLAGS.IF clear (Linux's tdx_safe_halt()).
        assert_eq!(
            halt(0xfc00, &[0]),
            (0, InsnAction::Halt { irq_wakes: true })
        );
        // R12 = 1: blocked, the vCPU halts as HLT would (Linux's tdx_halt()
        // with interrupts off).
        assert_eq!(
            halt(0xfc00, &[1]),
            (0, InsnAction::Halt { irq_wakes: false })
        );
        // R12 not exposed: the VMM reads 0.
        assert_eq!(
            halt(0x0c00, &[1]),
            (0, InsnAction::Halt { irq_wakes: true })
        );
        // R11 = 12 under R10 != 0 is KVM hypercall 12's argument, no HLT.
        let mut regs = Regs::default();
        regs.gpr[gpr::RAX] = leaf::VP_VMCALL;
        regs.gpr[gpr::RCX] = 0xfc00;
        regs.gpr[gpr::R10] = 1;
        regs.gpr[gpr::R11] = tdvmcall::HLT;
        assert_eq!(tdcall(&kvm, &host, &mut regs), InsnAction::Done);
    }

    #[test]
    fn cpuid_reports_tdx() {
        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        let tdx = kvm.tdx.as_ref().unwrap();
        let host = FakeHost::new();
        let mut regs = Regs::default();
        regs.gpr[gpr::RAX] = 0x21;
        tdx.cpuid(&mut regs, &host).unwrap();
        let mut sig = Vec::new();
        for r in [gpr::RBX, gpr::RDX, gpr::RCX] {
            sig.extend((regs.gpr[r] as u32).to_le_bytes());
        }
        assert_eq!(&sig, b"IntelTDX    ");
        regs.gpr[gpr::RAX] = 0;
        tdx.cpuid(&mut regs, &host).unwrap();
        assert!(regs.gpr[gpr::RAX] >= 0x21);
        let mut vendor = Vec::new();
        for r in [gpr::RBX, gpr::RDX, gpr::RCX] {
            vendor.extend((regs.gpr[r] as u32).to_le_bytes());
        }
        assert_eq!(&vendor, b"GenuineIntel", "the TDX module fixes the vendor");
        regs.gpr[gpr::RAX] = 1;
        tdx.cpuid(&mut regs, &host).unwrap();
        assert_eq!(regs.gpr[gpr::RCX], 0x8000_000c, "the hypervisor bit");
        // KVM's signature, and no paravirtual feature.
        regs.gpr[gpr::RAX] = 0x4000_0000;
        tdx.cpuid(&mut regs, &host).unwrap();
        let mut sig = Vec::new();
        for r in [gpr::RBX, gpr::RCX, gpr::RDX] {
            sig.extend((regs.gpr[r] as u32).to_le_bytes());
        }
        assert_eq!(
            (regs.gpr[gpr::RAX], &sig[..]),
            (0x4000_0001, &b"KVMKVMKVM\0\0\0"[..])
        );
        regs.gpr[gpr::RAX] = 0x4000_0001;
        tdx.cpuid(&mut regs, &host).unwrap();
        assert_eq!(&regs.gpr[..4], &[0; 4]);
        regs.gpr[gpr::RAX] = 2;
        assert!(tdx.cpuid(&mut regs, &host).is_none());
        // FakeHost's maximum basic leaf is 0x1f: 0x20 is brought into range
        // by leaf 0x21 and reads as zero, not as QEMU's highest leaf.
        regs.gpr[gpr::RAX] = 0x1f;
        assert!(tdx.cpuid(&mut regs, &host).is_none());
        regs.gpr[gpr::RAX] = 0x20;
        regs.gpr[gpr::RBX] = 7;
        tdx.cpuid(&mut regs, &host).unwrap();
        assert_eq!(&regs.gpr[..4], &[0; 4]);
    }

    #[test]
    fn a_vcpu_enters_the_td_in_x2apic_mode() {
        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        let tdx = kvm.tdx.as_ref().unwrap();
        let host = FakeHost::new();
        // Before launch (SeaBIOS, the option ROMs) the APIC stays as it is.
        tdx.vcpu_enter(0, &host);
        assert_eq!(host.apic_base.get(), 0xfee0_0900);
        // The first TDCALL launches the TD and puts the vCPU's APIC in
        // x2APIC mode at the default base, BSP kept (KVM tdx_vcpu_init()).
        host.apic_base.set(0xfed0_0900);
        call(&kvm, &host, leaf::VP_INFO, &[]);
        assert_eq!(host.apic_base.get(), 0xfee0_0d00);
        // Once: what the guest does with it later is its business.
        host.apic_base.set(0xfee0_0900);
        call(&kvm, &host, leaf::VP_INFO, &[]);
        assert_eq!(host.apic_base.get(), 0xfee0_0900);
        assert_eq!(tdx.stats.calls(), "VP.INFO 2");
        vmcall(&kvm, &host, tdvmcall::CPUID, &[0, 0]);
        assert_eq!(tdx.stats.calls(), "VP.INFO 2, CPUID 1");
        // An AP (no BSP bit) gets x2APIC on its own first TDCALL or CPUID.
        host.apic_base.set(0xfee0_0800);
        tdx.vcpu_enter(1, &host);
        assert_eq!(host.apic_base.get(), 0xfee0_0c00);
    }

    #[test]
    fn launch_adds_below_the_boundary_and_pending_pages_give_ve_info_once() {
        let kvm = td(8 << 20, 0);
        let host = FakeHost::new();
        // Before paging: the VMM's loader, identity.
        let mut req = Stage2Request {
            gpa: 0x9000,
            gva: 0x9000,
            vcpu_index: 0,
            access: Access::Write,
            cpl: 0,
            page_walk: false,
            paging: false,
            stage1_prot: prot::ALL,
        };
        assert!(matches!(
            kvm.stage2(&req).0,
            Stage2Answer::Allow {
                backing_gpa: 0x9000,
                ..
            }
        ));
        assert!(!kvm.tdx.as_ref().unwrap().launched());
        assert!(kvm.host_access_allowed(0x9000));
        req.paging = true;
        assert!(matches!(kvm.stage2(&req).0, Stage2Answer::Allow { .. }));
        assert!(kvm.vm().tdx_is_finalized());
        assert!(!kvm.host_access_allowed(0x9000), "private after launch");
        assert_eq!(
            kvm.tdx
                .as_ref()
                .unwrap()
                .stats
                .pages_added
                .load(Ordering::Relaxed),
            2048
        );
        // Above the boundary: AUG, PENDING, #VE (SEPT_VE_DISABLE clear).
        assert!(matches!(
            access(&kvm, 0x90_0010, Access::Read),
            Stage2Answer::Fault(Fault { vector: 20, .. })
        ));
        let r = call(&kvm, &host, leaf::VP_VEINFO_GET, &[]);
        assert_eq!(r.gpr[gpr::RAX], 0);
        assert_eq!(r.gpr[gpr::RCX], 48);
        assert_eq!(r.gpr[gpr::R9], 0x90_0010);
        assert_eq!(r.gpr[gpr::R8], 0x7000_1000);
        assert_eq!(
            r.gpr[gpr::RDX] & 0x187,
            0x181,
            "read, GLA valid, translated"
        );
        let r = call(&kvm, &host, leaf::VP_VEINFO_GET, &[]);
        assert_eq!(r.gpr[gpr::RAX], status::NO_VALID_VE_INFO);
        // A second #VE while the first is unread is a #DF (error code 0).
        assert!(matches!(
            access(&kvm, 0x90_1000, Access::Read),
            Stage2Answer::Fault(Fault { vector: 20, .. })
        ));
        assert!(matches!(
            access(&kvm, 0x90_2000, Access::Read),
            Stage2Answer::Fault(Fault {
                vector: 8,
                error_code: Some(0),
                ..
            })
        ));
    }

    #[test]
    fn accept_clears_and_reports_double_accept_and_size_mismatch() {
        let kvm = td(8 << 20, TdAttributes::SEPT_VE_DISABLE);
        let host = FakeHost::new();
        access(&kvm, 0x1000, Access::Read);
        host.phys_write(0xa0_0000, &[0xaa; 64]);
        let r = call(&kvm, &host, leaf::MEM_PAGE_ACCEPT, &[(gpr::RCX, 0xa0_0000)]);
        assert_eq!(r.gpr[gpr::RAX], 0);
        let mut b = [0xffu8; 64];
        host.phys_read(0xa0_0000, &mut b);
        assert_eq!(b, [0; 64], "accepted pages read zero");
        let r = call(&kvm, &host, leaf::MEM_PAGE_ACCEPT, &[(gpr::RCX, 0xa0_0000)]);
        assert_eq!(
            r.gpr[gpr::RAX] & 0xFFFF_FFFF_0000_0000,
            TdxStatus::PAGE_ALREADY_ACCEPTED.0
        );
        assert!(matches!(
            access(&kvm, 0xa0_0000, Access::Write),
            Stage2Answer::Allow { .. }
        ));
        // 2M over a region holding an accepted 4K page.
        let r = call(
            &kvm,
            &host,
            leaf::MEM_PAGE_ACCEPT,
            &[(gpr::RCX, 0xa0_0000 | 1)],
        );
        assert_eq!(
            r.gpr[gpr::RAX] & 0xFFFF_FFFF_0000_0000,
            TdxStatus::PAGE_SIZE_MISMATCH.0
        );
        // A fresh 2M region: KVM maps TDX private memory at 4K only, so
        // the module finds a 4K table there (Linux then accepts 4K pages).
        let r = call(
            &kvm,
            &host,
            leaf::MEM_PAGE_ACCEPT,
            &[(gpr::RCX, 0xc0_0000 | 1)],
        );
        assert_eq!(
            r.gpr[gpr::RAX],
            TdxStatus::PAGE_SIZE_MISMATCH.with_detail(1).0
        );
        // With 2M private mappings it accepts whole.
        let config = Config {
            vm_type: VmType::Tdx,
            accept: AcceptPolicy::Below(8 << 20),
            private_max_level: Some(cvmem_model::PageLevel::Size2M),
            ..Config::default()
        };
        let kvm = Kvm::new(&config, 1).unwrap();
        kvm.memslot(
            MemslotOp::Add,
            &RamSection {
                gpa: 0,
                size: MEM,
                readonly: false,
                name: "ram".into(),
            },
        )
        .unwrap();
        access(&kvm, 0x1000, Access::Read);
        host.phys_write(0xdf_f000, &[1; 8]);
        let r = call(
            &kvm,
            &host,
            leaf::MEM_PAGE_ACCEPT,
            &[(gpr::RCX, 0xc0_0000 | 1)],
        );
        assert_eq!(r.gpr[gpr::RAX], 0);
        let mut b = [1u8; 8];
        host.phys_read(0xdf_f000, &mut b);
        assert_eq!(b, [0; 8]);
        assert!(matches!(
            access(&kvm, 0xdf_f000, Access::Write),
            Stage2Answer::Allow { .. }
        ));
        // Misaligned and reserved operands.
        let r = call(&kvm, &host, leaf::MEM_PAGE_ACCEPT, &[(gpr::RCX, 0xe0_0800)]);
        assert!(TdxStatus(r.gpr[gpr::RAX]).is_error());
    }

    #[test]
    fn map_gpa_converts_in_chunks_with_retry() {
        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        let host = FakeHost::new();
        access(&kvm, 0x1000, Access::Read);
        host.phys_write(0x40_0000, b"secret");
        // 3 MiB to shared with a 2 MiB chunk: RETRY at +2M, then done.
        let r = vmcall(
            &kvm,
            &host,
            tdvmcall::MAP_GPA,
            &[SHARED | 0x40_0000, 3 << 20],
        );
        assert_eq!(r.gpr[gpr::R10], tdvmcall::RETRY);
        assert_eq!(r.gpr[gpr::R11], SHARED | 0x60_0000);
        let r = vmcall(
            &kvm,
            &host,
            tdvmcall::MAP_GPA,
            &[SHARED | 0x60_0000, 1 << 20],
        );
        assert_eq!(r.gpr[gpr::R10], 0);
        let mut b = [1u8; 6];
        host.phys_read(0x40_0000, &mut b);
        assert_eq!(b, [0; 6], "content of the private side is gone");
        assert!(!kvm.vm().is_private(Gfn::new(0x6ff)));
        assert!(kvm.host_access_allowed(0x40_0000));
        assert!(matches!(
            access(&kvm, SHARED | 0x40_0000, Access::Write),
            Stage2Answer::Allow {
                backing_gpa: 0x40_0000,
                ..
            }
        ));
        // Back to private: must be accepted again.
        let r = vmcall(&kvm, &host, tdvmcall::MAP_GPA, &[0x40_0000, 0x1000]);
        assert_eq!(r.gpr[gpr::R10], 0);
        assert!(kvm.vm().is_private(Gfn::new(0x400)));
        let r = call(&kvm, &host, leaf::MEM_PAGE_ACCEPT, &[(gpr::RCX, 0x40_0000)]);
        assert_eq!(r.gpr[gpr::RAX], 0);
        // KVM's operand checks.
        for (gpa, size) in [
            (0x40_0800, 0x1000),
            (0x40_0000, 0x800),
            (0x40_0000, 0),
            (1 << 48, 0x1000),
            (SHARED - 0x1000, 0x2000),
        ] {
            let r = vmcall(&kvm, &host, tdvmcall::MAP_GPA, &[gpa, size]);
            assert_eq!(
                r.gpr[gpr::R10],
                tdvmcall::INVALID_OPERAND,
                "{gpa:#x}+{size:#x}"
            );
        }
        // Private conversion of space that is not RAM: R11 names the GPA.
        let r = vmcall(&kvm, &host, tdvmcall::MAP_GPA, &[0x1_0000_0000, 0x1000]);
        assert_eq!(
            (r.gpr[gpr::R10], r.gpr[gpr::R11]),
            (tdvmcall::INVALID_OPERAND, 0x1_0000_0000)
        );
    }

    #[test]
    fn vp_vmcall_checks_and_filters_exposed_registers() {
        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        let host = FakeHost::new();
        for bad in [0xfc01, 0xfc02, 0xfc10, 0x0400, 0x1_0000_fc00] {
            let r = call(
                &kvm,
                &host,
                leaf::VP_VMCALL,
                &[(gpr::RCX, bad), (gpr::R11, tdvmcall::HLT)],
            );
            assert_eq!(
                r.gpr[gpr::RAX],
                operand_invalid(status::OPERAND_RCX),
                "{bad:#x}"
            );
        }
        // CPUID with R12/R13 exposed but R14/R15 not: only R12/R13 change.
        let r = call(
            &kvm,
            &host,
            leaf::VP_VMCALL,
            &[
                (gpr::RCX, 0x3c00),
                (gpr::R11, tdvmcall::CPUID),
                (gpr::R12, 7),
                (gpr::R13, 1),
                (gpr::R14, 0x77),
            ],
        );
        assert_eq!(
            (
                r.gpr[gpr::R10],
                r.gpr[gpr::R12],
                r.gpr[gpr::R13],
                r.gpr[gpr::R14]
            ),
            (0, 7, 1, 0x77)
        );
        // Unknown sub-functions and KVM hypercalls through R10.
        let r = vmcall(&kvm, &host, 0x12345, &[]);
        assert_eq!(r.gpr[gpr::R10], tdvmcall::SUBFUNC_UNSUPPORTED);
        let r = call(
            &kvm,
            &host,
            leaf::VP_VMCALL,
            &[(gpr::RCX, 0xfc00), (gpr::R10, 99)],
        );
        assert_eq!(
            r.gpr[gpr::R10],
            crate::kvm::hc::err(crate::kvm::hc::KVM_ENOSYS)
        );
        // Unknown leaf, non-zero version, CPL 3.
        let r = call(&kvm, &host, 5, &[]);
        assert_eq!(r.gpr[gpr::RAX], operand_invalid(0));
        let r = call(&kvm, &host, 1 << 16 | leaf::VP_INFO, &[]);
        assert_eq!(r.gpr[gpr::RAX], operand_invalid(0));
        let mut regs = Regs {
            cpl: 3,
            ..Regs::default()
        };
        assert!(matches!(
            tdcall(&kvm, &host, &mut regs),
            InsnAction::Fault(Fault { vector: 13, .. })
        ));
    }

    #[test]
    fn shared_mmio_is_a_ve_that_the_guest_emulates() {
        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        let host = FakeHost::new();
        let ioapic = 0xfec0_0000 | SHARED;
        // Before launch (paging off) the VMM's loader reaches MMIO directly.
        let mut req = Stage2Request {
            gpa: 0xfec0_0000,
            gva: 0xfec0_0000,
            vcpu_index: 0,
            access: Access::Write,
            cpl: 0,
            page_walk: false,
            paging: false,
            stage1_prot: prot::ALL,
        };
        assert!(matches!(
            kvm.stage2(&req).0,
            Stage2Answer::Allow {
                backing_gpa: 0xfec0_0000,
                ..
            }
        ));
        // In the running TD: an EPT-violation #VE with the shared GPA, read
        // once with TDG.VP.VEINFO.GET; the guest then asks for the access.
        call(&kvm, &host, leaf::VP_INFO, &[]);
        assert!(matches!(
            access(&kvm, ioapic | 0x10, Access::Write),
            Stage2Answer::Fault(Fault { vector: 20, .. })
        ));
        let r = call(&kvm, &host, leaf::VP_VEINFO_GET, &[]);
        assert_eq!((r.gpr[gpr::RCX], r.gpr[gpr::R9]), (48, ioapic | 0x10));
        assert_eq!(
            r.gpr[gpr::RDX] & 0x187,
            0x182,
            "write, GLA valid, translated"
        );
        let r = vmcall(
            &kvm,
            &host,
            tdvmcall::EPT_VIOLATION,
            &[4, 1, ioapic | 0x10, 7],
        );
        assert_eq!(r.gpr[gpr::R10], tdvmcall::SUCCESS);
        // Page-walk reads are not the TD's MMIO (and never reach here on
        // hardware); with paging off nothing is the TD's.
        req.gpa = ioapic;
        req.paging = true;
        req.page_walk = true;
        assert!(matches!(kvm.stage2(&req).0, Stage2Answer::Allow { .. }));
    }

    /// An instruction at `rip` in long mode on an identity map of the first
    /// 2 MiB (tables at 0x10000), with the bytes `code` there.
    fn insn_regs(host: &FakeHost, rip: u64, code: &[u8], info: u64) -> Regs {
        let put = |at: u64, v: u64| {
            host.mem.borrow_mut()[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes())
        };
        put(0x10000, 0x11000 | 3); // PML4[0]
        put(0x11000, 0x12000 | 3); // PDPT[0]
        put(0x12000, 0x83); // PD[0]: 2M page at 0
        host.phys_write(rip, code);
        Regs {
            cr0: (1 << 31) | 1,
            cr3: 0x10000,
            cr4: 1 << 5,
            efer: (1 << 10) | (1 << 8),
            rip,
            insn_len: code.len() as u32,
            info,
            ..Regs::default()
        }
    }

    #[test]
    fn port_io_and_hlt_raise_ve_in_a_running_td() {
        const IN: u64 = 1;
        const STR: u64 = 1 << 2;
        const REP: u64 = 1 << 3;
        const SZ8: u64 = 1 << 4;
        const SZ16: u64 = 1 << 5;
        const SZ32: u64 = 1 << 6;
        const A64: u64 = 1 << 9;
        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        let tdx = kvm.tdx.as_ref().unwrap();
        let host = FakeHost::new();
        let ve = |regs: &Regs, insn| tdx.instruction_ve(&kvm, 0, insn, regs, &host);
        let ve_fault = Some(InsnAction::Fault(Fault {
            vector: vector::VE,
            error_code: None,
            cr2: None,
        }));
        // out %al, $0xf4
        let out = insn_regs(&host, 0x5000, &[0xe6, 0xf4], 0xf4 << 16 | SZ8 | A64);
        // Before launch (SeaBIOS, paging off) the instructions run.
        assert_eq!(ve(&out, Insn::Ioio), None);
        assert_eq!(ve(&out, Insn::Hlt), None);
        access(&kvm, 0x1000, Access::Read);
        assert!(tdx.launched());
        assert_eq!(ve(&out, Insn::Ioio), ve_fault);
        // Exit reason 30, qualification as SDM Table 28-5 (size 1, OUT,
        // immediate, port 0xf4), the instruction's length in R10.
        let r = call(&kvm, &host, leaf::VP_VEINFO_GET, &[]);
        assert_eq!(
            (
                r.gpr[gpr::RAX],
                r.gpr[gpr::RCX],
                r.gpr[gpr::RDX],
                r.gpr[gpr::R10]
            ),
            (0, 30, 0xf4 << 16 | 1 << 6, 2)
        );
        assert_eq!((r.gpr[gpr::R8], r.gpr[gpr::R9]), (0, 0));
        // in (%dx), %ax; in $0xec, %eax (an imm8 that looks like an
        // opcode); outl %eax, (%dx); rep outsb; rep insw.
        for (code, info, qual) in [
            (
                &[0x66, 0xed][..],
                0x3fd << 16 | IN | SZ16 | A64,
                0x3fd << 16 | 1 << 3 | 1,
            ),
            (
                &[0xe5, 0xec][..],
                0xec << 16 | IN | SZ32 | A64,
                0xec << 16 | 1 << 6 | 1 << 3 | 3,
            ),
            (&[0xef][..], 0xcfc << 16 | SZ32 | A64, 0xcfc << 16 | 3),
            (
                &[0xf3, 0x6e][..],
                0x3f8 << 16 | STR | REP | SZ8 | A64,
                0x3f8 << 16 | 3 << 4,
            ),
            (
                &[0x66, 0xf3, 0x6d][..],
                0x510 << 16 | IN | STR | REP | SZ16 | A64,
                0x510 << 16 | 7 << 3 | 1,
            ),
        ] {
            let regs = insn_regs(&host, 0x6000, code, info);
            assert_eq!(ve(&regs, Insn::Ioio), ve_fault);
            let r = call(&kvm, &host, leaf::VP_VEINFO_GET, &[]);
            assert_eq!(
                (r.gpr[gpr::RCX], r.gpr[gpr::RDX], r.gpr[gpr::R10]),
                (30, qual, code.len() as u64),
                "{code:x?}"
            );
        }
        // HLT: exit reason 12, no qualification, length 1.
        let hlt = insn_regs(&host, 0x7000, &[0xf4], 0);
        assert_eq!(ve(&hlt, Insn::Hlt), ve_fault);
        // Port I/O or an EPT violation before TDG.VP.VEINFO.GET (a #VE
        // handler that prints first): #DF, and the first VE info stays.
        assert_eq!(
            ve(&out, Insn::Ioio),
            Some(InsnAction::Fault(Fault {
                vector: vector::DF,
                error_code: Some(0),
                cr2: None,
            }))
        );
        assert!(matches!(
            access(&kvm, SHARED | 0xfec0_0000, Access::Read),
            Stage2Answer::Fault(Fault { vector: 8, .. })
        ));
        let r = call(&kvm, &host, leaf::VP_VEINFO_GET, &[]);
        assert_eq!(
            (r.gpr[gpr::RCX], r.gpr[gpr::RDX], r.gpr[gpr::R10]),
            (12, 0, 1)
        );
        let r = call(&kvm, &host, leaf::VP_VEINFO_GET, &[]);
        assert_eq!(r.gpr[gpr::RAX], status::NO_VALID_VE_INFO);
        let s = &tdx.stats;
        assert_eq!(
            [&s.ves, &s.io_ves, &s.hlt_ves, &s.double_ves].map(|c| c.load(Ordering::Relaxed)),
            [7, 6, 1, 2]
        );
    }

    #[test]
    fn io_msr_mmio_hlt_and_info() {
        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        let host = FakeHost::new();
        let r = vmcall(&kvm, &host, tdvmcall::IO, &[1, 0, 0x3f8, 0]);
        assert_eq!((r.gpr[gpr::R10], r.gpr[gpr::R11]), (0, 0x5a));
        let r = vmcall(&kvm, &host, tdvmcall::IO, &[2, 1, 0x510, 0x1234]);
        assert_eq!(r.gpr[gpr::R10], 0);
        assert_eq!(host.io.borrow()[1], (0x510, 2, true, 0x1234));
        for bad in [[3, 0, 0x80, 0], [1, 2, 0x80, 0], [1, 0, 0x1_0000, 0]] {
            assert_eq!(
                vmcall(&kvm, &host, tdvmcall::IO, &bad).gpr[gpr::R10],
                tdvmcall::INVALID_OPERAND
            );
        }
        // The vCPU entered the TD with its APIC in x2APIC mode.
        let r = vmcall(&kvm, &host, tdvmcall::MSR_READ, &[0x1b]);
        assert_eq!((r.gpr[gpr::R10], r.gpr[gpr::R11]), (0, 0xfee0_0d00));
        assert_eq!(
            vmcall(&kvm, &host, tdvmcall::MSR_READ, &[0x12345]).gpr[gpr::R10],
            tdvmcall::INVALID_OPERAND
        );
        assert_eq!(
            vmcall(&kvm, &host, tdvmcall::MSR_WRITE, &[0x1b, 1]).gpr[gpr::R10],
            0
        );
        assert_eq!(
            vmcall(&kvm, &host, tdvmcall::MSR_WRITE, &[7, 1]).gpr[gpr::R10],
            tdvmcall::INVALID_OPERAND
        );
        // MMIO: shared, outside memslots, within one page.
        let r = vmcall(
            &kvm,
            &host,
            tdvmcall::EPT_VIOLATION,
            &[4, 0, SHARED | 0xfed0_0000, 0],
        );
        assert_eq!(r.gpr[gpr::R10], 0);
        for bad in [
            [4, 0, 0xfed0_0000, 0],
            [3, 0, SHARED | 0xfed0_0000, 0],
            [8, 0, SHARED | 0xfed0_0ffc, 0],
            [4, 0, SHARED | 0x1000, 0],
        ] {
            assert_eq!(
                vmcall(&kvm, &host, tdvmcall::EPT_VIOLATION, &bad).gpr[gpr::R10],
                tdvmcall::INVALID_OPERAND
            );
        }
        let r = call(&kvm, &host, leaf::VP_INFO, &[]);
        assert_eq!(
            (r.gpr[gpr::RCX], r.gpr[gpr::RDX], r.gpr[gpr::R8]),
            (48, TdAttributes::SEPT_VE_DISABLE, 2 | 2 << 32)
        );
        let r = vmcall(&kvm, &host, tdvmcall::GET_TD_VM_CALL_INFO, &[0]);
        assert_eq!(r.gpr[gpr::R10], 0);
    }

    #[test]
    fn metadata_fields() {
        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        let host = FakeHost::new();
        let rd = |f| call(&kvm, &host, leaf::VM_RD, &[(gpr::RDX, f)]);
        assert_eq!(rd(field::CONFIG_FLAGS).gpr[gpr::R8], 0);
        assert_eq!(rd(field::TOPOLOGY_ENUM_CONFIGURED).gpr[gpr::R8], 1);
        assert_eq!(
            rd(0x1234).gpr[gpr::RAX],
            status::METADATA_FIELD_ID_INCORRECT
        );
        let wr = |f, v, m| {
            call(
                &kvm,
                &host,
                leaf::VM_WR,
                &[(gpr::RDX, f), (gpr::R8, v), (gpr::R9, m)],
            )
        };
        let r = wr(field::TD_CTLS, u64::MAX, u64::MAX);
        assert_eq!((r.gpr[gpr::RAX], r.gpr[gpr::R8]), (0, 0));
        assert_eq!(
            rd(field::TD_CTLS).gpr[gpr::R8],
            field::TD_CTLS_ENUM_TOPOLOGY
        );
        assert_eq!(
            wr(field::CONFIG_FLAGS, 2, 2).gpr[gpr::RAX],
            status::METADATA_FIELD_NOT_WRITABLE
        );
        assert_eq!(wr(field::NOTIFY_ENABLES, 0, u64::MAX).gpr[gpr::RAX], 0);
        let r = call(
            &kvm,
            &host,
            leaf::SYS_RD,
            &[(gpr::RDX, field::TDX_FEATURES0)],
        );
        assert_eq!((r.gpr[gpr::RAX], r.gpr[gpr::R8]), (0, 0));
    }

    #[test]
    fn report_rtmr_quote_and_fatal_error() {
        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        let host = FakeHost::new();
        access(&kvm, 0x1000, Access::Read);
        host.phys_write(0x2000, &[7; 64]);
        host.phys_write(0x3000, &[9; 48]);
        let r = call(
            &kvm,
            &host,
            leaf::MR_RTMR_EXTEND,
            &[(gpr::RCX, 0x3000), (gpr::RDX, 2)],
        );
        assert_eq!(r.gpr[gpr::RAX], 0);
        let r = call(
            &kvm,
            &host,
            leaf::MR_RTMR_EXTEND,
            &[(gpr::RCX, 0x3000), (gpr::RDX, 4)],
        );
        assert_eq!(r.gpr[gpr::RAX], operand_invalid(status::OPERAND_RDX));
        let r = call(
            &kvm,
            &host,
            leaf::MR_REPORT,
            &[(gpr::RCX, 0x4000), (gpr::RDX, 0x2000)],
        );
        assert_eq!(r.gpr[gpr::RAX], 0);
        let mut rep = [0u8; 1024];
        host.phys_read(0x4000, &mut rep);
        assert_eq!(rep[0], 0x81);
        assert_eq!(&rep[128..192], &[7; 64]);
        assert_eq!(&rep[224..256], &[0; 32], "MAC: unsigned");
        assert_eq!(
            u64::from_le_bytes(rep[512..520].try_into().unwrap()),
            TdAttributes::SEPT_VE_DISABLE
        );
        let expect = sha384(&[&[0u8; 48], &[9u8; 48]]);
        assert_eq!(&rep[512 + 208 + 96..512 + 208 + 144], &expect, "RTMR2");
        assert_eq!(&rep[80..128], &sha384(&[&rep[512..]]), "TEE_INFO_HASH");
        // MRTD: one "MEM.PAGE.ADD" block per page added at launch (all of
        // the 16 MiB), computed when first reported.
        let mut mrtd = Sha384::new();
        for gfn in 0..MEM / PAGE_SIZE {
            let mut block = [0u8; 128];
            block[..12].copy_from_slice(b"MEM.PAGE.ADD");
            block[16..24].copy_from_slice(&(gfn * PAGE_SIZE).to_le_bytes());
            mrtd.update(block);
        }
        let mrtd: Sha384Digest = mrtd.finalize().into();
        assert_eq!(&rep[528..576], &mrtd, "MRTD");
        for (rcx, rdx, r8, op) in [
            (0x4100, 0x2000, 0, status::OPERAND_RCX),
            (0x4000, 0x2010, 0, status::OPERAND_RDX),
            (SHARED | 0x4000, 0x2000, 0, status::OPERAND_RCX),
            (0x4000, 0x2000, 1, status::OPERAND_R8),
        ] {
            let r = call(
                &kvm,
                &host,
                leaf::MR_REPORT,
                &[(gpr::RCX, rcx), (gpr::RDX, rdx), (gpr::R8, r8)],
            );
            assert_eq!(r.gpr[gpr::RAX], operand_invalid(op));
        }
        // GetQuote in a shared buffer: service unavailable.
        vmcall(
            &kvm,
            &host,
            tdvmcall::MAP_GPA,
            &[SHARED | 0x10_0000, 0x1000],
        );
        host.phys_write(0x10_0000, &1u64.to_le_bytes());
        let r = vmcall(
            &kvm,
            &host,
            tdvmcall::GET_QUOTE,
            &[SHARED | 0x10_0000, 0x1000],
        );
        assert_eq!(r.gpr[gpr::R10], 0);
        let mut st = [0u8; 8];
        host.phys_read(0x10_0008, &mut st);
        assert_eq!(u64::from_le_bytes(st), tdvmcall::QUOTE_SERVICE_UNAVAILABLE);
        assert_eq!(
            vmcall(&kvm, &host, tdvmcall::GET_QUOTE, &[0x10_0000, 0x1000]).gpr[gpr::R10],
            tdvmcall::INVALID_OPERAND
        );
        assert_eq!(
            vmcall(
                &kvm,
                &host,
                tdvmcall::GET_QUOTE,
                &[SHARED | 0x10_0000, 0x800]
            )
            .gpr[gpr::R10],
            tdvmcall::ALIGN_ERROR
        );
        // ReportFatalError with a message in R14.. .
        let msg = u64::from_le_bytes(*b"boom!\0\0\0");
        let r = call(
            &kvm,
            &host,
            leaf::VP_VMCALL,
            &[
                (gpr::RCX, 0xfc00),
                (gpr::R11, tdvmcall::REPORT_FATAL_ERROR),
                (gpr::R14, msg),
            ],
        );
        assert_eq!(r.gpr[gpr::R10], 0);
        assert!(host.panicked.get());
    }

    #[test]
    fn strict_mode_gives_ve_instead_of_converting() {
        let config = Config {
            vm_type: VmType::Tdx,
            strict: true,
            ..Config::default()
        };
        let kvm = Kvm::new(&config, 1).unwrap();
        kvm.memslot(
            MemslotOp::Add,
            &RamSection {
                gpa: 0,
                size: MEM,
                readonly: false,
                name: "ram".into(),
            },
        )
        .unwrap();
        access(&kvm, 0x1000, Access::Read);
        assert!(matches!(
            access(&kvm, SHARED | 0x5000, Access::Write),
            Stage2Answer::Fault(Fault { vector: 20, .. })
        ));
        assert!(kvm.vm().is_private(Gfn::new(5)), "not converted");
        let host = FakeHost::new();
        let r = call(&kvm, &host, leaf::VP_VEINFO_GET, &[]);
        assert_eq!(r.gpr[gpr::R9], SHARED | 0x5000);
        // Without strict: converted, retried.
        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        access(&kvm, 0x1000, Access::Read);
        assert_eq!(
            access(&kvm, SHARED | 0x5000, Access::Write),
            Stage2Answer::Retry
        );
        assert!(!kvm.vm().is_private(Gfn::new(5)));
        // A private access to MMIO: QEMU cannot convert it; the VM stops
        // and the summary says which access stopped it.
        assert_eq!(access(&kvm, 0xfed0_0000, Access::Read), Stage2Answer::Stop);
        assert!(kvm.is_dead());
        assert!(kvm.lifecycle.describe().starts_with(
            "VM stopped by the modelled KVM: vCPU 0 read of GPA 0xfed00000 through the private alias"
        ));
    }
}
