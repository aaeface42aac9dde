//! Which [`Flavour`] a VM type gets: the one place that names them all.

use cvmem_model::{Stage2Fault, VmType};

use crate::args::Config;
use crate::effects::Effects;
use crate::flavour::plain::Plain;
use crate::flavour::{Ctx, Flavour};
use crate::hooks::{
    FirmwarePlace, Host, InitSipi, Insn, InsnAction, Stage2Answer, Stage2Request, VcpuState,
};
use crate::machine::CpuModel;
use crate::snp::SnpFirmware;
use crate::tdx::TdxModule;
use crate::vmm::Vmm;

/// The flavour of one VM, dispatched by `match` rather than through a
/// vtable: the stage-2 lookup runs on every softTLB fill, and a match
/// lets the compiler inline each flavour's lookup into the modelled
/// KVM's (a `Box<dyn Flavour>` cost about 10% more instructions per fill;
/// see the commit that made this an enum).
// One per VM, so its size does not matter; boxing the large variants would
// put back the indirection the enum avoids.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum AnyFlavour {
    /// `default`, `sw-protected`.
    Plain(Plain),
    /// `tdx`.
    Tdx(TdxModule),
    /// `snp`.
    Snp(SnpFirmware),
}

/// The flavour of `config`'s VM type, for `max_vcpus` vCPUs.
pub fn for_config(config: &Config, max_vcpus: u32) -> AnyFlavour {
    match config.vm_type {
        VmType::Default | VmType::SwProtected => {
            AnyFlavour::Plain(Plain::new(config.vm_type.has_private_mem()))
        }
        VmType::Tdx => AnyFlavour::Tdx({
            let mut td = TdxModule::new(max_vcpus, config.accept, config.map_gpa_chunk);
            td.xfam = config.xfam;
            td
        }),
        VmType::Snp => AnyFlavour::Snp(SnpFirmware::new(
            max_vcpus,
            config.accept,
            config.map_gpa_chunk,
            config.snp_pages,
        )),
    }
}

/// Runs `$e` with `$f` bound to the flavour inside `$self`.
macro_rules! each {
    ($self:ident, $f:ident => $e:expr) => {
        match $self {
            AnyFlavour::Plain($f) => $e,
            AnyFlavour::Tdx($f) => $e,
            AnyFlavour::Snp($f) => $e,
        }
    };
}

impl Flavour for AnyFlavour {
    fn insn_kinds(&self) -> &'static [Insn] {
        each!(self, f => Flavour::insn_kinds(f))
    }

    fn insn(&self, cx: &mut Ctx<'_>, insn: Insn) -> InsnAction {
        each!(self, f => Flavour::insn(f, cx, insn))
    }

    #[inline]
    fn launched(&self) -> bool {
        each!(self, f => Flavour::launched(f))
    }

    #[inline]
    fn stage2(&self, vmm: &Vmm, req: &Stage2Request, fx: &mut Effects) -> Stage2Answer {
        each!(self, f => Flavour::stage2(f, vmm, req, fx))
    }

    fn guest_fault(
        &self,
        vmm: &Vmm,
        req: &Stage2Request,
        fault: &Stage2Fault,
    ) -> Option<Stage2Answer> {
        each!(self, f => Flavour::guest_fault(f, vmm, req, fault))
    }

    fn firmware(&self, gpa: u64, image: &[u8]) -> Result<FirmwarePlace, String> {
        each!(self, f => Flavour::firmware(f, gpa, image))
    }

    fn machine_ready(&self, vmm: &Vmm, cpu: &dyn CpuModel, fx: &mut Effects) -> Result<(), String> {
        each!(self, f => Flavour::machine_ready(f, vmm, cpu, fx))
    }

    fn vcpu_reset(&self, vmm: &Vmm, vcpu: u32, fx: &mut Effects) -> Option<VcpuState> {
        each!(self, f => Flavour::vcpu_reset(f, vmm, vcpu, fx))
    }

    fn init_sipi(&self, host: &dyn Host, vcpu: u32, event: InitSipi) -> bool {
        each!(self, f => Flavour::init_sipi(f, host, vcpu, event))
    }

    fn private_by_default(&self) -> bool {
        each!(self, f => Flavour::private_by_default(f))
    }

    fn protects_vcpu_state(&self) -> bool {
        each!(self, f => Flavour::protects_vcpu_state(f))
    }

    fn add_learned(&self, vmm: &Vmm, gfn: cvmem_model::Gfn, vcpu: u32) {
        each!(self, f => Flavour::add_learned(f, vmm, gfn, vcpu))
    }

    fn summary(&self, out: &mut String) {
        each!(self, f => Flavour::summary(f, out))
    }

    fn stats(&self) -> Option<(&'static str, serde_json::Value)> {
        each!(self, f => Flavour::stats(f))
    }

    #[cfg(test)]
    fn as_any(&self) -> &dyn std::any::Any {
        each!(self, f => Flavour::as_any(f))
    }
}
