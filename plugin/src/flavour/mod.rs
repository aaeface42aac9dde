//! What makes one VM type differ from another, behind one trait: the
//! instructions its guests hand to the plugin and how they are emulated,
//! its launch, its part of the stage-2 fault policy, and its counters. The
//! VMM core ([`Vmm`]) and the modelled KVM ([`crate::kvm`]) know no flavour
//! by name; `flavours.rs` picks one per `vm-type=`.
//!
//! | flavour | file | instructions | launch | faults it shows the guest |
//! |---|---|---|---|---|
//! | default, sw-protected | `flavour/plain.rs` | VMCALL (KVM's hypercalls) | none | none |
//! | tdx | `tdx/` | TDCALL, CPUID, VMCALL, port I/O, HLT | at the first access with paging on | #VE: MMIO, pending pages, `strict=` |
//! | snp | `snp/` | VMGEXIT, VMMCALL, PVALIDATE, RMPADJUST, CPUID, RDMSR, WRMSR, port I/O | at the first access with paging on | #VC: MMIO, unvalidated pages; #PF with the RMP bit for `strict=` |

pub mod plain;

use std::fmt::Debug;

use crate::effects::Effects;
use crate::hooks::{
    FirmwarePlace, Host, InitSipi, Insn, InsnAction, Regs, Stage2Answer, Stage2Request, VcpuState,
};
use crate::machine::CpuModel;
use crate::vmm::Vmm;
use cvmem_model::Vm;

/// An instruction exit being handled: the vCPU, its registers, QEMU's
/// services, the VMM core, and the effects the handlers accumulate for
/// QEMU. A handler changes the registers, pushes effects into `fx`, and
/// returns what QEMU does with the instruction.
pub struct Ctx<'a> {
    /// The vCPU index.
    pub vcpu: u32,
    /// Its registers (written back when the action says so).
    pub regs: &'a mut Regs,
    /// QEMU's services while the callback runs.
    pub host: &'a dyn Host,
    /// The VMM core.
    pub vmm: &'a Vmm,
    /// Flushes and discarded memory for QEMU, carried out after the
    /// callback.
    pub fx: Effects,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("vcpu", &self.vcpu)
            .field("regs", &self.regs)
            .field("fx", &self.fx)
            .finish_non_exhaustive()
    }
}

impl<'a> Ctx<'a> {
    /// A context for `vcpu`'s instruction, with no effects yet.
    pub fn new(vcpu: u32, regs: &'a mut Regs, host: &'a dyn Host, vmm: &'a Vmm) -> Ctx<'a> {
        Ctx {
            vcpu,
            regs,
            host,
            vmm,
            fx: Effects::NONE,
        }
    }
}

/// One VM type's behaviour. Implementations: [`plain::Plain`],
/// [`crate::tdx::TdxModule`], [`crate::snp::SnpFirmware`].
pub trait Flavour: Debug + Send + Sync {
    /// The instruction kinds the plugin registers for.
    fn insn_kinds(&self) -> &'static [Insn];

    /// Emulates (or declines) one of [`Flavour::insn_kinds`].
    fn insn(&self, cx: &mut Ctx<'_>, insn: Insn) -> InsnAction;

    /// Whether the guest runs (launched, for a flavour that has a launch).
    fn launched(&self) -> bool {
        true
    }

    /// The stage-2 answer to `req`: the guest launched first if this is its
    /// first access with paging on (the launch's effects into `fx`), the
    /// model asked, and its answer handed to [`Vmm::answer`] with `self`
    /// for the faults the flavour shows its own way. The hot path: one
    /// call per softTLB fill.
    fn stage2(&self, vmm: &Vmm, req: &Stage2Request, fx: &mut Effects) -> Stage2Answer;

    /// How much of the guest-physical space around a translation the model
    /// found QEMU's stage-2 cache may answer the same way, until the
    /// model's generation changes (`qemu_plugin_cvm_s2_cache_enable`): the
    /// whole stage-2 mapping, or the 2M range of a 4K leaf whose 511
    /// neighbours map alike ([`Vm::leaf_range_uniform`]), unless the
    /// flavour checks more than the TDP leaf per page.
    fn stage2_cache_span(&self, vm: &Vm, t: &cvmem_model::Translation) -> u64 {
        if vm.leaf_range_uniform(t) {
            cvmem_model::PageLevel::Size2M.size_bytes()
        } else {
            t.level.size_bytes()
        }
    }

    /// The flavour's own answer to a stage-2 fault it shows the guest (a
    /// #VE, a #VC, an RMP #PF), or `None` for the VMM core's generic
    /// handling. A `MemoryFault` comes here only with `strict=on`: the
    /// access went through the wrong alias.
    fn guest_fault(
        &self,
        _vmm: &Vmm,
        _req: &Stage2Request,
        _fault: &cvmem_model::Stage2Fault,
    ) -> Option<Stage2Answer> {
        None
    }

    /// QEMU loads the `-bios` image `image` at `gpa` while it builds the
    /// machine: where it goes. `Err` refuses the image with one line.
    fn firmware(&self, _gpa: u64, _image: &[u8]) -> Result<FirmwarePlace, String> {
        Ok(FirmwarePlace::Rom)
    }

    /// QEMU has built the machine and no vCPU has run: the flavour reads
    /// what its launch needs of the CPU model, and a flavour that launches
    /// before the first instruction does so (memory it writes into `fx`).
    /// `Err` refuses the configuration with one line (QEMU exits before
    /// the guest runs).
    fn machine_ready(
        &self,
        _vmm: &Vmm,
        _cpu: &dyn CpuModel,
        _fx: &mut Effects,
    ) -> Result<(), String> {
        Ok(())
    }

    /// A machine reset: the state `vcpu` starts from, or `None` for the
    /// architectural one (APs waiting for a SIPI).
    fn vcpu_reset(&self, _vmm: &Vmm, _vcpu: u32, _fx: &mut Effects) -> Option<VcpuState> {
        None
    }

    /// An INIT or SIPI reaches `vcpu`: `true` drops it (the flavour may
    /// start the vCPU itself through `host`).
    fn init_sipi(&self, _host: &dyn Host, _vcpu: u32, _event: InitSipi) -> bool {
        false
    }

    /// Whether KVM_HC_MAP_GPA_RANGE reaches the VMM, which converts: KVM
    /// exits to userspace for it only where the VMM enabled the exit with
    /// KVM_CAP_EXIT_HYPERCALL (`kvm_emulate_hypercall()`,
    /// `user_exit_on_hypercall()`); elsewhere the guest gets
    /// `-KVM_ENOSYS` ([`Vmm::hypercall`]). cvmem's sw-protected VM converts
    /// this way; a TD converts with MapGPA and an SNP guest with the GHCB's
    /// page-state change.
    fn map_gpa_range_hypercall(&self) -> bool {
        false
    }

    /// Whether QEMU makes guest_memfd RAM private when it adds the memslot
    /// (`kvm_set_phys_mem()` -> `kvm_set_memory_attributes_private()`, for
    /// a TD and an SNP guest).
    fn private_by_default(&self) -> bool {
        false
    }

    /// Whether KVM protects the vCPU state, so that QEMU cannot reset it
    /// (`kvm_cpus_are_resettable()`: a TD, an SEV-ES/SNP guest).
    fn protects_vcpu_state(&self) -> bool {
        false
    }

    /// Audit mode: `gfn` is RAM learned after the launch (`learn.rs`),
    /// which enforcing mode knew at launch; give it what the launch would
    /// have (a TD's page added below `accept=`, an SNP guest's launched).
    /// The caller holds [`Vmm::learn_lock`].
    fn add_learned(&self, _vmm: &Vmm, _gfn: cvmem_model::Gfn, _vcpu: u32) {}

    /// The flavour's lines of the summary, each ending in a newline.
    fn summary(&self, _out: &mut String) {}

    /// The flavour's counters for the control socket's `stats`: a key and
    /// an object, or `None`.
    fn stats(&self) -> Option<(&'static str, serde_json::Value)> {
        None
    }

    /// The flavour as its own type, for unit tests.
    #[cfg(test)]
    fn as_any(&self) -> &dyn std::any::Any;
}
