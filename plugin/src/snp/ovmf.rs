//! An SNP guest started from OVMF with SEV metadata, as QEMU's
//! target/i386/sev.c and KVM launch one: the `-bios` image in private RAM;
//! at the first machine reset (the memory map is final then; QEMU launches
//! at machine-done) SNP_LAUNCH_UPDATE of the image (NORMAL, measured),
//! then of each metadata section with its page type (SnpSecMem ZERO,
//! SECRETS and CPUID filled as the AMD-SP fills them); nothing else of the
//! RAM is validated: OVMF validates what it uses itself. MEASUREMENT is the
//! digest of those pages and of one VMSA per vCPU
//! (`cvmem_model::snp_launch::ovmf_digest`). The BSP starts at the reset
//! vector from the architectural reset state, which is what its launch VMSA
//! holds; APs start when the guest creates them (SNP AP creation, `ap.rs`)
//! or at their first SIPI, from their launch VMSA at the reset block, not
//! at the SIPI vector (KVM's sev_vcpu_deliver_sipi_vector()): a later SIPI
//! cannot change the protected state and changes nothing here.

use super::*;
use crate::effects::Effects;
use crate::hooks::FirmwarePlace;
use crate::vmm::Vmm;
use cvmem_model::firmware::{self, SevSection, SevSectionKind};
use cvmem_model::snp_launch;
use cvmem_model::GfnRange;

/// The OVMF image QEMU loaded and its SEV metadata.
#[derive(Debug)]
pub(super) struct Ovmf {
    /// Where the image is mapped: 4 GiB - its size.
    gpa: u64,
    /// The image, measured at launch.
    image: Vec<u8>,
    sections: Vec<SevSection>,
    /// Where APs start (the SEV-ES reset block), in their launch VMSAs.
    ap_eip: u32,
}

impl Ovmf {
    /// The base of the first section of `kind`.
    pub(super) fn base_of(&self, kind: SevSectionKind) -> Option<u64> {
        self.sections
            .iter()
            .find(|s| s.kind == kind)
            .map(|s| s.base)
    }
}

/// The frames of `len` bytes from `base`, whole pages.
fn frames(base: u64, len: u64) -> Option<GfnRange> {
    GfnRange::new(
        Gpa::new(base).gfn(),
        Gpa::new(base + len.max(1) + PAGE_SIZE - 1).gfn(),
    )
}

impl SnpFirmware {
    /// The `-bios` image at `gpa`: OVMF with SEV metadata goes into private
    /// RAM; an image without an OVMF table (SeaBIOS, for cvmem's loader)
    /// stays ROM; OVMF without SEV metadata, without the CPUID and secrets
    /// pages an SNP guest needs, or without the SEV-ES reset block QEMU
    /// starts APs from, is refused.
    pub(super) fn take_firmware(&self, gpa: u64, image: &[u8]) -> Result<FirmwarePlace, String> {
        let cannot =
            |e: &dyn std::fmt::Display| format!("the -bios image cannot start an SNP guest: {e}");
        let sections = match firmware::sev_metadata(image) {
            Ok(Some(s)) => s,
            Ok(None) if firmware::ovmf_table(image).is_ok_and(|t| t.is_empty()) => {
                return Ok(FirmwarePlace::Rom)
            }
            Ok(None) => {
                return Err(cannot(
                    &"it is OVMF without SEV metadata (build OVMF with SEV support)",
                ))
            }
            Err(e) => return Err(cannot(&e)),
        };
        let reset = firmware::sev_es_reset_vector(image).map_err(|e| cannot(&e))?;
        let ap_eip = firmware::sev_check_layout(&sections, reset).map_err(|e| cannot(&e))?;
        let _ = self.ovmf.set(Ovmf {
            gpa,
            image: image.to_vec(),
            sections,
            ap_eip,
        });
        Ok(FirmwarePlace::Ram)
    }

    /// Whether the guest starts from OVMF.
    pub(super) fn has_ovmf(&self) -> bool {
        self.ovmf.get().is_some()
    }

    /// An INIT or SIPI to `vcpu` of a guest started from OVMF: SIPIs are
    /// dropped, the first one to each vCPU starting it from its launch VMSA;
    /// INIT goes to QEMU (the vCPU waits for a SIPI) until then, and is
    /// dropped after it: KVM keeps a protected vCPU's registers at INIT
    /// (the vCPU here is not paused until the next SIPI, as KVM's is). A
    /// guest from cvmem's loader has no launch VMSAs: QEMU handles both,
    /// as in a plain VM.
    pub(super) fn ovmf_init_sipi(&self, host: &dyn Host, vcpu: u32, event: InitSipi) -> bool {
        let Some(ovmf) = self.ovmf.get() else {
            return false;
        };
        let Some(v) = self.vcpus.get(vcpu as usize) else {
            return true;
        };
        let mut v = v.lock();
        if event == InitSipi::Init {
            return v.received_first_sipi;
        }
        let first = !std::mem::replace(&mut v.received_first_sipi, true);
        drop(v);
        if first {
            let sig = self.boot.get().map_or(0, |b| b.fms);
            let page = snp_launch::launch_vmsa(ovmf.ap_eip, sig, ap::VM_SEV_FEATURES);
            host.vcpu_set_state(vcpu, &ap::vmsa_state(&page));
        }
        true
    }

    /// The machine is ready: every SEV metadata section must be guest RAM
    /// (QEMU's snp_populate_metadata_pages() exits when one is not).
    pub(super) fn check_ovmf_sections(&self, vmm: &Vmm) -> Result<(), String> {
        let Some(ovmf) = self.ovmf.get() else {
            return Ok(());
        };
        let slots = vmm.vm().memslots();
        for s in &ovmf.sections {
            let inside = frames(s.base, s.len).is_some_and(|r| {
                r.iter().all(|g| {
                    slots
                        .iter()
                        .any(|m| m.private_capable() && m.range().contains(g))
                })
            });
            if !inside {
                return Err(format!(
                    "OVMF's SEV metadata section {:?} at {:#x}..{:#x} is not guest RAM: give the \
                     guest more memory with -m",
                    s.kind,
                    s.base,
                    s.base + s.len
                ));
            }
        }
        Ok(())
    }

    /// The launch from OVMF (see the module comment); RAM that is not
    /// launched is cleared (guest_memfd hands out zeroed pages).
    pub(super) fn launch_ovmf(&self, vmm: &Vmm, ovmf: &Ovmf, fx: &mut Effects) {
        let vm = vmm.vm();
        let image = frames(ovmf.gpa, ovmf.image.len() as u64);
        let launched: Vec<GfnRange> = image
            .into_iter()
            .chain(ovmf.sections.iter().filter_map(|s| frames(s.base, s.len)))
            .collect();
        for slot in vm.memslots().iter().filter(|s| s.private_capable()) {
            let r = slot.range();
            if image.is_some_and(|i| i.contains(r.start())) {
                continue;
            }
            fx.clear.extend(vmm.backing_ranges(r));
        }
        for r in &launched {
            self.launch_update(vmm, *r);
        }
        self.write_boot_pages(vmm, fx);
        let (vcpus, sig) = (
            self.vcpus.len() as u32,
            self.boot.get().map_or(0, |b| b.fms),
        );
        self.attest.set_digest(snp_launch::ovmf_digest(
            &ovmf.image,
            &ovmf.sections,
            ovmf.ap_eip,
            vcpus,
            sig,
            ap::VM_SEV_FEATURES,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An OVMF-shaped image with SEV metadata `sections` and a reset block.
    fn image(sections: &[(u32, u32, u32)], reset_block: bool) -> Vec<u8> {
        firmware::sev_image(0x10000, sections, reset_block.then_some(0x80_b004))
    }

    #[test]
    fn the_first_sipi_starts_an_ap_from_its_launch_vmsa() {
        use crate::hooks::fake::FakeHost;
        let fw = SnpFirmware::new(2, AcceptPolicy::All, PAGE_SIZE, SnpPages::default());
        let host = FakeHost::default();
        // Without OVMF, QEMU starts APs at the SIPI vector.
        assert!(!fw.ovmf_init_sipi(&host, 1, InitSipi::Sipi(0x10)));
        fw.take_firmware(0xffff_0000, &image(&GOOD, true)).unwrap();
        assert!(!fw.ovmf_init_sipi(&host, 1, InitSipi::Init));
        assert!(fw.ovmf_init_sipi(&host, 1, InitSipi::Sipi(0x10)));
        let started = host.vcpu_states.borrow().clone();
        let [(vcpu, Some(state))] = started.as_slice() else {
            panic!("{started:?}");
        };
        // CS:IP from the reset block (0x80b004), not from the vector.
        assert_eq!((*vcpu, state.cs.base, state.rip), (1, 0x80_0000, 0xb004));
        assert_eq!(state.cs.selector, 0xf000);
        // A second SIPI is dropped and starts nothing; INIT no longer
        // resets the vCPU.
        assert!(fw.ovmf_init_sipi(&host, 1, InitSipi::Sipi(0x10)));
        assert_eq!(host.vcpu_states.borrow().len(), 1);
        assert!(fw.ovmf_init_sipi(&host, 1, InitSipi::Init));
        assert!(!fw.ovmf_init_sipi(&host, 0, InitSipi::Init));
    }

    fn take(img: &[u8]) -> Result<FirmwarePlace, String> {
        SnpFirmware::new(2, AcceptPolicy::All, PAGE_SIZE, SnpPages::default())
            .take_firmware(0xffff_0000, img)
    }

    const GOOD: [(u32, u32, u32); 3] = [
        (0x80_0000, 0x9000, 1),
        (0x80_d000, 0x1000, 2),
        (0x80_e000, 0x1000, 3),
    ];

    #[test]
    fn ovmf_with_sev_metadata_goes_to_private_ram() {
        let fw = SnpFirmware::new(2, AcceptPolicy::All, PAGE_SIZE, SnpPages::default());
        assert_eq!(
            fw.take_firmware(0xffff_0000, &image(&GOOD, true)),
            Ok(FirmwarePlace::Ram)
        );
        assert!(fw.has_ovmf());
        // The CPUID and secrets pages go where the metadata says.
        assert_eq!(
            (fw.pages().cpuid, fw.pages().secrets),
            (0x80_e000, 0x80_d000)
        );
    }

    #[test]
    fn seabios_stays_rom() {
        assert_eq!(take(&[0u8; 0x10000]), Ok(FirmwarePlace::Rom));
    }

    #[test]
    fn unusable_images_are_refused() {
        let e = take(&image(&GOOD, false)).unwrap_err();
        assert!(e.contains("no SEV-ES reset block"), "{e}");
        let e = take(&image(&GOOD[..2], true)).unwrap_err();
        assert!(e.contains("no Cpuid section"), "{e}");
        let e = take(&image(&[GOOD[0], GOOD[2]], true)).unwrap_err();
        assert!(e.contains("no SnpSecrets section"), "{e}");
        let e = take(&image(
            &[GOOD[0], GOOD[1], GOOD[2], (0x80_f000, 0, 1)],
            true,
        ))
        .unwrap_err();
        assert!(e.contains("empty or crosses 4 GiB"), "{e}");
        // OVMF (it has a table) without SEV metadata.
        let only_reset = firmware::sev_image(0x10000, &[], Some(0x80_b004));
        assert!(take(&only_reset)
            .unwrap_err()
            .contains("without SEV metadata"));
    }

    /// MEASUREMENT of an OVMF launch is what the `sev` crate's port of
    /// sev-snp-measure computes for the same image, vCPU count, CPU
    /// signature and SEV features: an independent implementation of the
    /// page order, the page types and the VMSA layout.
    #[test]
    fn ovmf_digest_matches_the_sev_crate() {
        use sev::measurement::snp::{snp_calc_launch_digest, SnpMeasurementArgs};
        use sev::measurement::vcpu_types::CpuType;
        use sev::measurement::vmsa::{GuestFeatures, VMMType};
        // Debian's OVMF layout: SEC memory, secrets, CPUID, more SEC
        // memory, the kernel hashes page and the SVSM calling area.
        let layout = [
            (0x80_0000, 0x9000, 1),
            (0x80_a000, 0x3000, 1),
            (0x80_d000, 0x1000, 2),
            (0x80_e000, 0x1000, 3),
            (0x80_f000, 0x1000, 1),
            (0x81_0000, 0x1000, 0x10),
            (0x81_1000, 0x1000, 4),
        ];
        let mut img = firmware::sev_image(0x2_0000, &layout, Some(0x80_b004));
        // Some content, so that the NORMAL pages' hashes differ.
        for (i, b) in img.iter_mut().take(0x1_0000).enumerate() {
            *b = (i * 7 % 251) as u8;
        }
        let sections = firmware::sev_metadata(&img).unwrap().unwrap();
        let path = std::env::temp_dir().join(format!("cvmem-ovmf-{}.fd", std::process::id()));
        std::fs::write(&path, &img).unwrap();
        for (vcpus, cpu) in [(1, CpuType::EpycV4), (4, CpuType::EpycMilan)] {
            let theirs = snp_calc_launch_digest(SnpMeasurementArgs {
                vcpus,
                vcpu_type: cpu,
                ovmf_file: path.clone(),
                guest_features: GuestFeatures::default(),
                kernel_file: None,
                initrd_file: None,
                append: None,
                ovmf_hash_str: None,
                vmm_type: Some(VMMType::QEMU),
            })
            .unwrap();
            let ours = snp_launch::ovmf_digest(
                &img,
                &sections,
                0x80_b004,
                vcpus,
                cpu.sig() as u32,
                ap::VM_SEV_FEATURES,
            );
            assert_eq!(
                theirs.get_hex_ld(),
                hex(&ours.digest()),
                "{vcpus} vCPUs of {cpu:?}"
            );
        }
        let _ = std::fs::remove_file(&path);
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
