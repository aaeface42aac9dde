//! Building and launching the TD (TDH.MEM.PAGE.ADD, TDH.MR.FINALIZE) and
//! the part of KVM_TDX_INIT_VCPU done at a vCPU's first exit.

use super::*;
use crate::hooks::Host;
use crate::vmm::Vmm;
use cvmem_model::{Gfn, GfnRange};
use std::sync::atomic::Ordering;

/// IA32_APIC_BASE and its bits (SDM vol. 3 11.4.4, 11.12.1).
pub(super) mod apic_base {
    pub const MSR: u32 = 0x1b;
    pub const BSP: u64 = 1 << 8;
    pub const EXTD: u64 = 1 << 10;
    pub const EN: u64 = 1 << 11;
}

impl TdxModule {
    /// Audit mode: `gfn` is RAM learned after launch (`learn.rs`), which
    /// enforcing mode knew at launch. Below `accept=` it gets what
    /// TDH.MEM.PAGE.ADD gave it there, MAPPED, here through the AUG and
    /// TDG.MEM.PAGE.ACCEPT the model has after finalization (its content is
    /// not touched: audit mode only observes); above it stays PENDING. It
    /// counts as added at launch; MRTD is not extended, as audit mode sees
    /// no TDCALL and so no TDREPORT. Before launch nothing is done: the
    /// launch adds it.
    pub(super) fn add_learned_page(&self, vmm: &Vmm, gfn: Gfn, vcpu: u32) {
        if !self.launched() || gfn.raw() >= self.accept.ready_below_gfn() {
            return;
        }
        let vm = vmm.vm();
        let id = cvmem_model::VcpuId(vcpu);
        // RCX: the page's GPA, level 0 (4K).
        let rcx = gfn.gpa().raw();
        for _ in 0..4 {
            match vm.tdx_accept(id, rcx) {
                cvmem_model::AcceptOutcome::Accepted { .. } => {
                    self.stats.pages_added.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                cvmem_model::AcceptOutcome::Status(st) => {
                    eprintln!("cvmem: audit: adding {rcx:#x} as at launch: {st}");
                    return;
                }
                cvmem_model::AcceptOutcome::ExitToHost { gpa, .. } => {
                    if let Err(f) = vm.tdx_handle_accept_exit(id, gpa) {
                        eprintln!("cvmem: audit: adding {rcx:#x} as at launch: {f:?}");
                        return;
                    }
                }
            }
        }
    }

    /// Builds and launches the TD once, on the first guest access with
    /// paging on: every private page below the `accept=` boundary is added
    /// with TDH.MEM.PAGE.ADD (its content, loaded by QEMU, becomes the
    /// initial image and is measured into MRTD by GPA), then TDH.MR.FINALIZE.
    ///
    /// cvmem has no TDVF: before this point SeaBIOS and QEMU's option ROMs
    /// load the guest the way the VMM fills a TD's initial memory, outside
    /// TD semantics. Callers that arrive while another vCPU launches wait.
    pub fn ensure_launched(&self, vmm: &Vmm) {
        if self.launched() {
            return;
        }
        self.launch.call_once(|| {
            // No RAM is learned while the TD launches (audit mode).
            let _learning = vmm.learn_lock.lock();
            let vm = vmm.vm();
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
        super::msr::init_vcpu_efer(vcpu, host);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::gpr;
    use cvmem_model::BackingAddr;
    #[allow(unused_imports)]
    use cvmem_model::Gpa;

    use crate::hooks::fake::{FakeHost, MEM};
    use crate::hooks::{Access, Stage2Answer, Stage2Request};

    use crate::tdx::testutil::*;
    use cvmem_model::TdAttributes;
    #[test]
    fn a_vcpu_enters_the_td_in_x2apic_mode() {
        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        let tdx = kvm.flavour_as::<TdxModule>();
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
        vmcall(&kvm, &host, vmcall::CPUID, &[0, 0]);
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
            gpa: Gpa::new(0x9000),
            gva: cvmem_model::Gva::new(0x9000),
            vcpu_index: 0,
            access: Access::Write,
            cpl: 0,
            page_walk: false,
            paging: false,
        };
        assert!(matches!(
            kvm.stage2(&req).0,
            Stage2Answer::Allow { backing, .. } if backing == BackingAddr::new(0x9000)
        ));
        assert!(!kvm.flavour_as::<TdxModule>().launched());
        assert!(kvm.host_access_allowed(BackingAddr::new(0x9000)));
        req.paging = true;
        assert!(matches!(kvm.stage2(&req).0, Stage2Answer::Allow { .. }));
        assert!(kvm.vm().tdx_is_finalized());
        assert!(
            !kvm.host_access_allowed(BackingAddr::new(0x9000)),
            "private after launch"
        );
        assert_eq!(
            kvm.flavour_as::<TdxModule>()
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
}
