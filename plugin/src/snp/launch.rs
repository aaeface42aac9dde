//! Launching the guest: SNP_LAUNCH_UPDATE of the RAM ready at launch.

use super::*;
use crate::effects::Effects;
use crate::vmm::Vmm;
use cvmem_model::{Gfn, GfnRange};
use std::sync::atomic::Ordering;

impl SnpFirmware {
    /// Audit mode: `gfn` is RAM learned after launch (`learn.rs`), which
    /// enforcing mode knew at launch. Below `accept=` it is launched now
    /// (SNP_LAUNCH_UPDATE: assigned, validated); above it stays as launch
    /// left it, unvalidated (the zeroing is not done: audit mode only
    /// observes). Before launch nothing is done: the launch takes it.
    pub(super) fn add_learned_page(&self, vmm: &Vmm, gfn: Gfn) {
        if !self.launched() || gfn.raw() >= self.accept.ready_below_gfn() {
            return;
        }
        match vmm.vm().snp_launch_update(GfnRange::one(gfn)) {
            Ok(n) => {
                self.stats.pages_launched.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => eprintln!(
                "cvmem: audit: SNP_LAUNCH_UPDATE of {:#x}: {e:?}",
                gfn.gpa().raw()
            ),
        }
    }

    /// Launches the guest once, on its first access with paging on (see the
    /// module comment): SNP_LAUNCH_UPDATE of the private RAM below
    /// `accept=`, and the rest zeroed (guest_memfd hands out cleared pages).
    /// The memory to clear goes to `fx`.
    pub fn ensure_launched(&self, vmm: &Vmm, fx: &mut Effects) {
        if self.launched() {
            return;
        }
        self.launch.call_once(|| {
            // No RAM is learned while the guest launches (audit mode).
            let _learning = vmm.learn_lock.lock();
            let vm = vmm.vm();
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
                    fx.clear.extend(vmm.backing_ranges(rest));
                }
            }
            self.launched.store(true, Ordering::Release);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::vector;
    use cvmem_model::BackingAddr;
    #[allow(unused_imports)]
    use cvmem_model::Gpa;

    use crate::hooks::fake::MEM;
    use crate::hooks::{Access, Stage2Answer, Stage2Request};

    use crate::snp::testutil::*;

    #[test]
    fn paging_off_accesses_are_private_after_launch() {
        let kvm = guest(MEM);
        let answer = kvm
            .stage2(&Stage2Request {
                gpa: Gpa::new(0x8000),
                gva: 0x8000,
                vcpu_index: 1,
                access: Access::Write,
                cpl: 0,
                page_walk: false,
                paging: false,
            })
            .0;
        assert!(matches!(
            answer,
            Stage2Answer::Allow { backing, .. } if backing == BackingAddr::new(0x8000)
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
