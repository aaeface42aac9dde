//! The VM types without a confidential-computing interface: `default` and
//! `sw-protected` (KVM_X86_SW_PROTECTED_VM, private memory without a
//! guest-visible protocol). Their guests reach KVM only through its
//! hypercall ABI.

use cvmem_model::VcpuId;

use super::{Ctx, Flavour};
use crate::effects::Effects;
use crate::hooks::{Insn, InsnAction, Stage2Answer, Stage2Request};
use crate::vmm::{model_access, Vmm};

/// A VM with no flavour of its own.
#[derive(Debug, Default)]
pub struct Plain {
    /// Whether the guest converts with KVM_HC_MAP_GPA_RANGE (a VM with
    /// private memory: `sw-protected`).
    map_gpa_range: bool,
}

impl Plain {
    /// The flavour of a VM with private memory (`private_mem`, KVM's
    /// `kvm_arch_has_private_mem()`) or without: only the former converts,
    /// through KVM_HC_MAP_GPA_RANGE.
    pub fn new(private_mem: bool) -> Plain {
        Plain {
            map_gpa_range: private_mem,
        }
    }
}

impl Flavour for Plain {
    #[cfg(test)]
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn insn_kinds(&self) -> &'static [Insn] {
        // KVM's hypercall ABI is there for every VM type.
        &[Insn::Vmcall]
    }

    fn insn(&self, cx: &mut Ctx<'_>, insn: Insn) -> InsnAction {
        match insn {
            Insn::Vmcall => {
                cx.vmm.hypercall(self, cx.regs, &mut cx.fx);
                InsnAction::Done
            }
            _ => InsnAction::Decline,
        }
    }

    fn map_gpa_range_hypercall(&self) -> bool {
        self.map_gpa_range
    }

    #[inline]
    fn stage2(&self, vmm: &Vmm, req: &Stage2Request, fx: &mut Effects) -> Stage2Answer {
        let model = vmm
            .vm()
            .stage2(VcpuId(req.vcpu_index), req.gpa, model_access(req.access));
        vmm.answer(self, req, model, fx)
    }
}
