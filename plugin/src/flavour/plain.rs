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
pub struct Plain;

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
                cx.vmm.hypercall(cx.regs, &mut cx.fx);
                InsnAction::Done
            }
            _ => InsnAction::Decline,
        }
    }

    #[inline]
    fn stage2(&self, vmm: &Vmm, req: &Stage2Request, fx: &mut Effects) -> Stage2Answer {
        let model = vmm
            .vm()
            .stage2(VcpuId(req.vcpu_index), req.gpa, model_access(req.access));
        vmm.answer(self, req, model, fx)
    }
}
