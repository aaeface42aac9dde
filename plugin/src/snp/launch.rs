//! Launching the guest: SNP_LAUNCH_UPDATE of the RAM ready at launch and
//! of the CPUID and secrets pages the AMD-SP fills (a guest started from
//! OVMF: `ovmf.rs`).

use super::*;
use crate::effects::Effects;
use crate::machine::CpuModel;
use crate::vmm::Vmm;
use cvmem_model::snp_launch::PageType;
use cvmem_model::{Gfn, GfnRange};
use std::sync::atomic::Ordering;

impl SnpFirmware {
    /// When the machine is ready: the CPUID page from the CPU model, as
    /// QEMU builds it at SNP_LAUNCH_START, and fresh secrets. `Err`: the
    /// configuration cannot launch (one line).
    pub(super) fn prepare_boot_pages(&self, vmm: &Vmm, cpu: &dyn CpuModel) -> Result<(), String> {
        let slots = vmm.vm().memslots();
        let pages = self.pages();
        for (what, key, gpa) in [
            ("CPUID", "snp-cpuid", pages.cpuid),
            ("secrets", "snp-secrets", pages.secrets),
        ] {
            let gfn = Gpa::new(gpa).gfn();
            if !slots
                .iter()
                .any(|s| s.private_capable() && s.range().contains(gfn))
            {
                return Err(format!(
                    "the SNP {what} page at {gpa:#x} is not guest RAM: give {key}= an address \
                     in RAM below -m"
                ));
            }
        }
        let model = |leaf, sub| cpu.cpuid(leaf, sub);
        let entries = cpuid_table::entries(&|leaf, sub| self.cpuid_of(vmm, leaf, sub, &model))?;
        let boot = BootPages {
            cpuid: cpuid_table::page(&entries),
            secrets: Secrets::generate()?,
            fms: cpu.cpuid(1, 0)[0],
        };
        let _ = self.boot.set(boot);
        Ok(())
    }

    /// Audit mode: `gfn` is RAM learned after launch (`learn.rs`), which
    /// enforcing mode knew at launch. Below `accept=` it is launched now
    /// (SNP_LAUNCH_UPDATE: assigned, validated); above it stays as launch
    /// left it, unvalidated (the zeroing is not done: audit mode only
    /// observes). Before launch nothing is done: the launch takes it.
    pub(super) fn add_learned_page(&self, vmm: &Vmm, gfn: Gfn) {
        if !self.launched() || self.has_ovmf() || gfn.raw() >= self.accept.ready_below_gfn() {
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

    /// Launches the guest once: from OVMF at the first machine reset
    /// (`ovmf.rs`), else on its first access with paging on (see the
    /// module comment). The memory to clear and write goes to `fx`.
    pub fn ensure_launched(&self, vmm: &Vmm, fx: &mut Effects) {
        if self.launched() {
            return;
        }
        self.launch.call_once(|| {
            // No RAM is learned while the guest launches (audit mode).
            let _learning = vmm.learn_lock.lock();
            match self.ovmf.get() {
                Some(ovmf) => self.launch_ovmf(vmm, ovmf, fx),
                None => self.launch_loaded(vmm, fx),
            }
            self.launched.store(true, Ordering::Release);
        });
    }

    /// SNP_LAUNCH_UPDATE of `range`: assigned and validated, counted.
    pub(super) fn launch_update(&self, vmm: &Vmm, range: GfnRange) {
        match vmm.vm().snp_launch_update(range) {
            Ok(n) => {
                self.stats.pages_launched.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => eprintln!(
                "cvmem: SNP_LAUNCH_UPDATE of {:#x}..{:#x} failed: {e:?}",
                range.start().gpa().raw(),
                range.end().gpa().raw()
            ),
        }
    }

    /// Writes the CPUID and secrets pages, as the AMD-SP does at their
    /// SNP_LAUNCH_UPDATE.
    pub(super) fn write_boot_pages(&self, vmm: &Vmm, fx: &mut Effects) {
        let pages = self.pages();
        if let Some(boot) = self.boot.get() {
            for (gpa, bytes) in [
                (pages.cpuid, boot.cpuid.clone()),
                (pages.secrets, boot.secrets.page(boot.fms)),
            ] {
                let range = GfnRange::one(Gpa::new(gpa).gfn());
                if let Some(&(at, _)) = vmm.backing_ranges(range).first() {
                    fx.write.push((at, bytes));
                }
            }
        }
    }

    /// The launch of a guest SeaBIOS and cvmem's loader start: the private
    /// RAM below `accept=` (UNMEASURED: its content is what SeaBIOS and the
    /// loader left, which the plugin does not read at launch), the rest
    /// zeroed (guest_memfd hands out cleared pages), then the CPUID and
    /// secrets pages with their types, whatever `accept=` says. Each page
    /// goes into the launch digest in that order.
    fn launch_loaded(&self, vmm: &Vmm, fx: &mut Effects) {
        let vm = vmm.vm();
        let limit = self.accept.ready_below_gfn();
        let pages = self.pages();
        let special = [pages.cpuid, pages.secrets].map(|g| Gpa::new(g).gfn());
        let launch = |range: GfnRange, page_type| {
            self.launch_update(vmm, range);
            self.attest.launched(page_type, range);
        };
        for slot in vm.memslots().iter().filter(|s| s.private_capable()) {
            let r = slot.range();
            let split = Gfn::new(r.end().raw().min(limit).max(r.start().raw()));
            if let Some(ready) = GfnRange::new(r.start(), split) {
                for part in without(ready, &special) {
                    launch(part, PageType::Unmeasured);
                }
            }
            if let Some(rest) = GfnRange::new(split, r.end()).filter(|g| !g.is_empty()) {
                fx.clear.extend(vmm.backing_ranges(rest));
            }
        }
        if self.boot.get().is_some() {
            launch(GfnRange::one(special[0]), PageType::Cpuid);
            launch(GfnRange::one(special[1]), PageType::Secrets);
            self.write_boot_pages(vmm, fx);
        }
    }
}

/// `range` without the frames of `holes`, as ranges in order.
fn without(range: GfnRange, holes: &[Gfn]) -> Vec<GfnRange> {
    let mut holes: Vec<Gfn> = holes
        .iter()
        .copied()
        .filter(|g| range.contains(*g))
        .collect();
    holes.sort();
    let mut out = Vec::new();
    let mut start = range.start();
    for h in holes {
        if let Some(part) = GfnRange::new(start, h).filter(|p| !p.is_empty()) {
            out.push(part);
        }
        start = Gfn::new(start.raw().max(h.raw() + 1));
    }
    if let Some(part) = GfnRange::new(start, range.end()).filter(|p| !p.is_empty()) {
        out.push(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Config;
    use crate::flavour::Flavour;
    use crate::kvm::Kvm;
    use crate::vmm::vector;
    use cvmem_model::BackingAddr;
    #[allow(unused_imports)]
    use cvmem_model::Gpa;

    use crate::hooks::fake::MEM;
    use crate::hooks::{Access, Stage2Answer, Stage2Request};

    use crate::snp::testutil::*;

    fn snp_guest(config: Config) -> Kvm {
        let kvm = Kvm::new(&config, 1).unwrap();
        crate::hooks::fake::report_ram(&kvm);
        kvm
    }

    fn snp_config() -> Config {
        Config {
            vm_type: cvmem_model::VmType::Snp,
            accept: crate::args::AcceptPolicy::Below(0x10_0000),
            ..Config::default()
        }
    }

    #[test]
    fn the_launch_places_the_cpuid_and_secrets_pages() {
        let kvm = snp_guest(snp_config());
        let snp = kvm.flavour_as::<SnpFirmware>();
        snp.machine_ready(&kvm.vmm, &Amd, &mut Effects::default())
            .unwrap();
        let mut fx = Effects::NONE;
        snp.ensure_launched(&kvm.vmm, &mut fx);
        let [(cpuid_at, cpuid), (secrets_at, secrets)] = &fx.write[..] else {
            panic!("two pages written: {:?}", fx.write.len());
        };
        assert_eq!(*cpuid_at, BackingAddr::new(0x9e000));
        assert_eq!(*secrets_at, BackingAddr::new(0x9d000));
        // Leaves 0, 1, KVM's signature 0x40000000 (0x40000001 is all
        // zeros), 0x80000000, 0x80000008 and the SNP leaf 0x8000001F
        // (which raised the extended maximum) with the C-bit.
        let count = u32::from_le_bytes(cpuid[0..4].try_into().unwrap());
        assert_eq!(count, 6);
        let sig = 16 + 2 * 48;
        assert_eq!(&cpuid[sig..sig + 4], &0x4000_0000u32.to_le_bytes());
        assert_eq!(&cpuid[sig + 28..sig + 32], b"KVMK");
        let last = 16 + 5 * 48;
        assert_eq!(&cpuid[last..last + 4], &0x8000_001Fu32.to_le_bytes());
        assert_eq!(cpuid[last + 28] & 0x3f, 51);
        assert_eq!(&secrets[0..4], &3u32.to_le_bytes());
        assert_eq!(&secrets[8..12], &0x00a0_0f11u32.to_le_bytes());
        let keys = &snp
            .boot
            .get()
            .expect("made when the machine was ready")
            .secrets;
        assert_eq!(&secrets[0x20..0x40], &keys.vmpck[0]);
        // Both pages are the guest's and validated, as after
        // SNP_LAUNCH_UPDATE, with the rest below accept=.
        for gpa in [0x9d000, 0x9e000, 0x9c000, 0x9f000] {
            let e = kvm.vm().snp_rmp_entry_of(Gpa::new(gpa)).unwrap();
            assert!(e.assigned && e.validated, "{gpa:#x}: {e:?}");
        }
        assert_eq!(snp.stats.pages_launched.load(Ordering::Relaxed), 256);
    }

    #[test]
    fn the_pages_must_be_guest_ram() {
        let mut config = snp_config();
        config.snp_pages.secrets = 0x4000_0000;
        let kvm = snp_guest(config);
        let snp = kvm.flavour_as::<SnpFirmware>();
        let err = snp
            .machine_ready(&kvm.vmm, &Amd, &mut Effects::default())
            .unwrap_err();
        assert!(
            err.contains("secrets page at 0x40000000 is not guest RAM"),
            "{err}"
        );
    }

    #[test]
    fn paging_off_accesses_are_private_after_launch() {
        let kvm = guest(MEM);
        let answer = kvm
            .stage2(&Stage2Request {
                gpa: Gpa::new(0x8000),
                gva: cvmem_model::Gva::new(0x8000),
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
