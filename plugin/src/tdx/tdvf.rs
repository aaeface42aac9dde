//! A TD started as the TDX module starts one, from a TDVF image (stock
//! OVMF built with TDX support): the `-bios` image in private RAM, its
//! metadata's sections added at launch with TDH.MEM.PAGE.ADD (and
//! TDH.MR.EXTEND where the section asks), the TD HOB describing the TD's
//! RAM, and every vCPU at the reset vector in the state TDH.VP.INIT gives
//! it. INIT and SIPI do not reach such a TD.
//!
//! Sources: QEMU 10.1's `hw/i386/tdvf.c` and `target/i386/kvm/tdx.c`
//! (`tdx_finalize_vm()`: sections in metadata order, TD_HOB and TempMem
//! added unmeasured, `tdx_post_init_vcpus()`: the HOB's address as the
//! vCPUs' initial RCX), KVM's `tdx_gmem_post_populate()` (a page is added,
//! then extended 256 bytes at a time), the TDX module 1.5's
//! `tdh_vp_init.c` and `td_vmcs_init.c` (the initial vCPU state).

use super::*;
use crate::hooks::{gpr, FirmwarePlace, InitSipi, Segment, VcpuState};
use crate::machine::CpuModel;
use cvmem_model::firmware::{self, TdvfSection, TdvfSectionKind};
use cvmem_model::{Gfn, Gpa, Gpaw};

const PAGE: u64 = 4096;

/// The TDVF image QEMU loaded and its metadata.
#[derive(Debug)]
pub(super) struct Tdvf {
    /// Where the image is mapped: 4 GiB - its size.
    gpa: u64,
    image: Vec<u8>,
    sections: Vec<TdvfSection>,
    /// TDH.VP.INIT's RDX for every vCPU: CPUID(1).EAX, read at
    /// machine-ready.
    fms: OnceLock<u32>,
}

impl Tdvf {
    fn hob(&self) -> &TdvfSection {
        self.sections
            .iter()
            .find(|s| s.kind == TdvfSectionKind::TdHob)
            .expect("tdvf_check_layout() found one")
    }
}

/// The private-capable RAM, as `[start, end)` GPAs.
fn private_ram(vmm: &Vmm) -> Vec<(u64, u64)> {
    let mut ram: Vec<(u64, u64)> = vmm
        .vm()
        .memslots()
        .iter()
        .filter(|s| s.private_capable())
        .map(|s| (s.range().start().gpa().raw(), s.range().end().gpa().raw()))
        .collect();
    ram.sort_unstable();
    ram
}

/// Whether the sorted ranges `ram` cover `[start, end)`.
fn covers(ram: &[(u64, u64)], start: u64, end: u64) -> bool {
    let mut at = start;
    for &(a, b) in ram {
        if a <= at && at < b {
            at = b;
        }
    }
    at >= end
}

/// What TDVF reads of the vCPU's initial registers, besides the fixed
/// state: RBX the GPA width, RCX and R8 the TD HOB's address (KVM's
/// KVM_TDX_INIT_VCPU argument, which QEMU sets to it), RDX CPUID(1).EAX,
/// RSI the vCPU index (`init_vcpu_gprs_and_registers()`).
fn initial_state(vcpu: u32, gpaw: Gpaw, hob: u64, fms: u32) -> VcpuState {
    // VMCS access rights in the VMCB encoding: bits 7:0 and 15:12 -> 11:8.
    let flat = |attrib| Segment {
        selector: 0,
        attrib,
        limit: 0xffff_ffff,
        base: 0,
    };
    let data = flat(0xc93);
    let mut gpr = [0u64; 16];
    gpr[gpr::RBX] = u64::from(gpaw.bits());
    gpr[gpr::RCX] = hob;
    gpr[gpr::R8] = hob;
    gpr[gpr::RDX] = u64::from(fms);
    gpr[gpr::RSI] = u64::from(vcpu);
    VcpuState {
        cs: flat(0xc9b),
        ds: data,
        es: data,
        fs: data,
        gs: data,
        ss: data,
        // Unusable (access rights 0x10082): not present here.
        ldtr: Segment {
            limit: 0xffff,
            ..Segment::default()
        },
        tr: Segment {
            attrib: 0x08b,
            limit: 0xffff,
            ..Segment::default()
        },
        gdtr: Segment {
            limit: 0xffff,
            ..Segment::default()
        },
        idtr: Segment::default(),
        // PE | NE; CR4.MCE (VMXE, which the module also sets, is hidden
        // from the guest by the CR4 read shadow).
        cr0: 0x21,
        cr4: 0x40,
        // SCE | LME | NXE: paging on with PAE enters long mode directly.
        efer: 0x901,
        dr6: 0xffff_0ff0,
        dr7: 0x400,
        rflags: 0x2,
        rip: 0xffff_fff0,
        gpr,
        xcr0: 1,
        pat: 0x0007_0406_0007_0406,
        x87_fcw: 0x37f,
        x87_ftw: 0xffff,
        mxcsr: 0x1f80,
        ..VcpuState::default()
    }
}

impl TdxModule {
    /// The `-bios` image at `gpa`: a TDVF goes into private RAM, to be
    /// added at launch; an image without an OVMF table (SeaBIOS, for
    /// cvmem's Multiboot loader) stays QEMU's ROM and runs before the
    /// launch. An OVMF image without TDVF metadata, or with metadata a TD
    /// cannot launch from, is refused.
    pub(super) fn take_firmware(&self, gpa: u64, image: &[u8]) -> Result<FirmwarePlace, String> {
        let sections = match firmware::tdvf_metadata(image) {
            Ok(Some(sections)) => sections,
            Ok(None) if firmware::ovmf_table(image).is_ok_and(|t| t.is_empty()) => {
                return Ok(FirmwarePlace::Rom)
            }
            Ok(None) => {
                return Err(
                    "the -bios image is OVMF without TDVF metadata: a TD needs OVMF \
                            built with TDX support (OvmfPkgX64 or IntelTdx)"
                        .into(),
                )
            }
            Err(e) => return Err(format!("the -bios image cannot start a TD: {e}")),
        };
        firmware::tdvf_check_layout(&sections)
            .map_err(|e| format!("the -bios image cannot start a TD: {e}"))?;
        let _ = self.tdvf.set(Tdvf {
            gpa,
            image: image.to_vec(),
            sections,
            fms: OnceLock::new(),
        });
        Ok(FirmwarePlace::Ram)
    }

    /// Whether the TD starts from a TDVF (else from SeaBIOS and cvmem's
    /// loader, launched at the first access with paging on).
    pub(super) fn has_tdvf(&self) -> bool {
        self.tdvf.get().is_some()
    }

    /// Machine-ready: reads CPUID(1).EAX for TDH.VP.INIT and checks that
    /// every section lies in private RAM (a TD too small for its firmware
    /// is refused here, before anything runs).
    pub(super) fn check_tdvf(&self, vmm: &Vmm, cpu: &dyn CpuModel) -> Result<(), String> {
        let Some(fw) = self.tdvf.get() else {
            return Ok(());
        };
        let _ = fw.fms.set(cpu.cpuid(1, 0)[0]);
        let private = private_ram(vmm);
        for (i, s) in fw.sections.iter().enumerate() {
            let end = s.address.saturating_add(s.size);
            if !covers(&private, s.address, end) {
                return Err(format!(
                    "TDVF section {i} ({:?}) at {:#x}..{end:#x} is not guest RAM: give the TD \
                     more memory with -m",
                    s.kind, s.address
                ));
            }
        }
        Ok(())
    }

    /// KVM_TDX_INIT_MEM_REGION for each TDVF section, then
    /// KVM_TDX_FINALIZE_VM, once, at the first machine reset (when QEMU's
    /// memory map is final: the reset remaps the legacy BIOS area, which
    /// splits the RAM memslot, and deleting a memslot removes a TD's
    /// private pages) and before any vCPU runs: the firmware volumes'
    /// content (in place where QEMU mapped the image, else copied), the TD
    /// HOB written, temporary memory zeroed; each page added, and measured
    /// with its content where the section has MR_EXTEND. Sections with
    /// PAGE_AUG are left for the firmware to accept. The writes go into
    /// `fx`.
    fn launch_tdvf(&self, vmm: &Vmm, fw: &Tdvf, fx: &mut Effects) -> Result<(), String> {
        let vm = vmm.vm();
        let private = private_ram(vmm);
        // The TD's RAM: every private memslot but the firmware's own.
        let fw_end = fw.gpa + fw.image.len() as u64;
        let ram: Vec<(u64, u64)> = private
            .iter()
            .flat_map(|&(a, b)| [(a, b.min(fw.gpa)), (a.max(fw_end), b)])
            .filter(|&(a, b)| a < b)
            .collect();
        let launched: Vec<(u64, u64)> = fw
            .sections
            .iter()
            .filter(|s| !s.page_aug)
            .filter(|s| matches!(s.kind, TdvfSectionKind::TdHob | TdvfSectionKind::TempMem))
            .map(|s| (s.address, s.address + s.size))
            .collect();
        let hob_section = fw.hob();
        let hob = firmware::td_hob(
            hob_section.address,
            hob_section.size,
            &firmware::td_ram_entries(&ram, &launched),
        )?;

        let addr = |gpa: u64| vmm.qemu_addr(Gpa::new(gpa));
        for s in &fw.sections {
            match s.kind {
                TdvfSectionKind::Bfv | TdvfSectionKind::Cfv => {
                    if s.address != fw.gpa + u64::from(s.data_offset) {
                        fx.clear.push((addr(s.address), s.size));
                        let (start, len) = (s.data_offset as usize, s.data_len as usize);
                        fx.write
                            .push((addr(s.address), fw.image[start..start + len].to_vec()));
                    }
                }
                TdvfSectionKind::TdHob => {
                    fx.clear.push((addr(s.address), s.size));
                    fx.write.push((addr(s.address), hob.clone()));
                }
                TdvfSectionKind::TempMem => fx.clear.push((addr(s.address), s.size)),
            }
        }

        let mut added = Vec::new();
        for s in fw.sections.iter().filter(|s| !s.page_aug) {
            let range = GfnRange::new(
                Gpa::new(s.address).gfn(),
                Gfn::new((s.address + s.size) / PAGE),
            )
            .ok_or_else(|| format!("TDVF section at {:#x} is empty", s.address))?;
            vm.tdx_page_add(range).map_err(|e| {
                format!(
                    "TDH.MEM.PAGE.ADD of the TDVF section at {:#x}: {e}",
                    s.address
                )
            })?;
            self.stats
                .pages_added
                .fetch_add(range.len(), Ordering::Relaxed);
            added.push(range);
        }
        let _ = self
            .mrtd
            .set(firmware::tdvf_mrtd(&fw.image, &fw.sections, &hob));
        *self.added.lock() = added;
        let st = vm.tdx_finalize();
        if !st.is_success() {
            return Err(format!("TDH.MR.FINALIZE failed: {st}"));
        }
        self.launched.store(true, Ordering::Release);
        Ok(())
    }

    /// A machine reset: with a TDVF every vCPU starts at the reset vector
    /// in the state TDH.VP.INIT gives it; `None` otherwise.
    /// The first reset launches the TD (see [`TdxModule::launch_tdvf`]);
    /// a launch that fails ends QEMU, as a failed KVM_TDX_FINALIZE_VM does.
    pub(super) fn reset_state(&self, vmm: &Vmm, vcpu: u32, fx: &mut Effects) -> Option<VcpuState> {
        let fw = self.tdvf.get()?;
        let fms = *fw.fms.get()?;
        self.launch.call_once(|| {
            if let Err(e) = self.launch_tdvf(vmm, fw, fx) {
                eprintln!("cvmem: the TD cannot launch: {e}");
                std::process::exit(1);
            }
        });
        Some(initial_state(
            vcpu,
            vmm.vm().config().gpaw,
            fw.hob().address,
            fms,
        ))
    }

    /// INIT and SIPI to a TD started from a TDVF are dropped, and counted
    /// (KVM blocks both for a TD). The legacy start (SeaBIOS and cvmem's
    /// loader) still needs them for its APs.
    pub(super) fn drop_init_sipi(&self, event: InitSipi) -> bool {
        if !self.has_tdvf() {
            return false;
        }
        let counter = match event {
            InitSipi::Init => &self.stats.inits_dropped,
            InitSipi::Sipi(_) => &self.stats.sipis_dropped,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::report::Sha384Digest;
    use super::*;
    use sha2::{Digest, Sha384};

    /// A 128-byte MRTD extension block: `what` at byte 0, the GPA at byte 16
    /// (TDX module ABI: TDH.MEM.PAGE.ADD and TDH.MR.EXTEND).
    fn mrtd_block(what: &[u8], gpa: u64) -> [u8; 128] {
        let mut block = [0u8; 128];
        block[..what.len()].copy_from_slice(what);
        block[16..24].copy_from_slice(&gpa.to_le_bytes());
        block
    }

    use crate::flavour::Flavour;
    use crate::hooks::fake::FakeHost;
    use crate::hooks::Host;
    use crate::tdx::testutil::td;
    use cvmem_model::BackingAddr;

    /// CPUID(1).EAX of a made-up Intel model.
    struct Intel;
    impl CpuModel for Intel {
        fn cpuid(&self, leaf: u32, _: u32) -> [u32; 4] {
            if leaf == 1 {
                [0x806f8, 0, 0, 0]
            } else {
                [0; 4]
            }
        }
    }

    /// A 64 KiB TDVF at 14 MiB (inside the test TD's 16 MiB of RAM): a
    /// measured BFV of 8 KiB, an unmeasured CFV of 4 KiB, the TD HOB and
    /// 8 KiB of temporary memory.
    const FW: u64 = 0xe0_0000;
    fn sections() -> Vec<TdvfSection> {
        let sec = |data_offset, data_len, address, size, kind, mr_extend| TdvfSection {
            data_offset,
            data_len,
            address,
            size,
            kind,
            mr_extend,
            page_aug: false,
        };
        vec![
            sec(
                0x8000,
                0x2000,
                FW + 0x8000,
                0x2000,
                TdvfSectionKind::Bfv,
                true,
            ),
            sec(
                0x4000,
                0x1000,
                FW + 0x4000,
                0x1000,
                TdvfSectionKind::Cfv,
                false,
            ),
            sec(0, 0, 0x80_9000, 0x2000, TdvfSectionKind::TdHob, false),
            sec(0, 0, 0x80_b000, 0x2000, TdvfSectionKind::TempMem, false),
        ]
    }
    fn image() -> Vec<u8> {
        let mut img = firmware::tdvf_image(0x1_0000, &sections());
        img[0x8000..0x8010].copy_from_slice(b"the BFV's bytes.");
        img
    }

    /// Loads `img` at FW as QEMU would, launches the TD at its first
    /// reset; the module, its vCPU 1 state and the launch's writes.
    fn launch(img: &[u8]) -> (crate::kvm::Kvm, VcpuState, Effects) {
        let kvm = td(0, 0);
        let host = FakeHost::new();
        host.phys_write(BackingAddr::new(FW), img);
        assert_eq!(kvm.flavour.firmware(FW, img), Ok(FirmwarePlace::Ram));
        let mut fx = Effects::default();
        kvm.flavour
            .machine_ready(&kvm.vmm, &Intel, &mut fx)
            .unwrap();
        let state = kvm.flavour.vcpu_reset(&kvm.vmm, 1, &mut fx).unwrap();
        (kvm, state, fx)
    }

    fn module(kvm: &crate::kvm::Kvm) -> &TdxModule {
        kvm.flavour.as_any().downcast_ref::<TdxModule>().unwrap()
    }

    #[test]
    fn the_launch_adds_every_section_and_measures_the_bfv_with_its_content() {
        let (kvm, state, fx) = launch(&image());
        let tdx = module(&kvm);
        assert!(tdx.launched());
        assert_eq!(tdx.stats.pages_added.load(Ordering::Relaxed), 2 + 1 + 2 + 2);
        assert_eq!(state.gpr[gpr::RCX], 0x80_9000, "the HOB's address");
        assert_eq!(state.gpr[gpr::RSI], 1);
        assert_eq!(state.gpr[gpr::RDX], 0x806f8);
        // MRTD as the module computes it, section by section in metadata
        // order: MEM.PAGE.ADD per page, and for the BFV 16 MR.EXTENDs of
        // 256 bytes each after its page.
        let img = image();
        let mut want = Sha384::new();
        for s in sections() {
            for off in (0..s.size).step_by(4096) {
                want.update(mrtd_block(b"MEM.PAGE.ADD", s.address + off));
                if s.mr_extend {
                    for i in 0..16u64 {
                        let at = (s.data_offset as u64 + off + i * 256) as usize;
                        want.update(mrtd_block(b"MR.EXTEND", s.address + off + i * 256));
                        want.update(&img[at..at + 256]);
                    }
                }
            }
        }
        let want: Sha384Digest = want.finalize().into();
        assert_eq!(tdx.mrtd(), &want);
        // The HOB went into the launch's writes: a PHIT, then the RAM,
        // unaccepted up to the HOB, which is added with the temp memory.
        let (at, hob) = fx
            .write
            .iter()
            .find(|(at, _)| at.raw() == 0x80_9000)
            .expect("the TD HOB is written");
        assert_eq!(at.raw(), 0x80_9000);
        let u64_at = |o: usize| u64::from_le_bytes(hob[o..o + 8].try_into().unwrap());
        let u32_at = |o: usize| u32::from_le_bytes(hob[o..o + 4].try_into().unwrap());
        let first = 56;
        assert_eq!((u32_at(first + 24), u64_at(first + 32)), (7, 0));
        assert_eq!(u64_at(first + 40), 0x80_9000);
        let second = first + 48;
        assert_eq!((u32_at(second + 24), u64_at(second + 32)), (0, 0x80_9000));
        assert_eq!(u64_at(second + 40), 0x4000, "TD_HOB and TempMem, merged");
    }

    #[test]
    fn mrtd_follows_the_measured_firmware_only() {
        let base = launch(&image());
        let mut bfv = image();
        bfv[0x9fff] ^= 1;
        let changed = launch(&bfv);
        assert_ne!(module(&base.0).mrtd(), module(&changed.0).mrtd());
        let mut cfv = image();
        cfv[0x4000] ^= 1;
        let unmeasured = launch(&cfv);
        assert_eq!(module(&base.0).mrtd(), module(&unmeasured.0).mrtd());
    }

    #[test]
    fn only_a_td_started_from_tdvf_drops_init_and_sipi() {
        let host = crate::hooks::fake::FakeHost::new();
        let legacy = td(0, 0);
        assert!(!legacy.flavour.init_sipi(&host, 1, InitSipi::Init));
        let (kvm, _, _) = launch(&image());
        assert!(kvm.flavour.init_sipi(&host, 1, InitSipi::Init));
        assert!(kvm.flavour.init_sipi(&host, 1, InitSipi::Sipi(0x9a)));
        assert!(kvm.flavour.init_sipi(&host, 2, InitSipi::Sipi(0x9a)));
        let stats = &module(&kvm).stats;
        assert_eq!(stats.inits_dropped.load(Ordering::Relaxed), 1);
        assert_eq!(stats.sipis_dropped.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn images_a_td_cannot_start_from_are_refused_in_one_line() {
        let kvm = td(0, 0);
        // No OVMF table at all (SeaBIOS): QEMU's ROM, for cvmem's loader.
        assert_eq!(
            kvm.flavour.firmware(FW, &[0; 0x1_0000]),
            Ok(FirmwarePlace::Rom)
        );
        // OVMF without TDVF metadata.
        let mut no_tdvf = image();
        let guid = &firmware::TDX_METADATA.0;
        let at = no_tdvf.windows(16).position(|w| w == guid).unwrap();
        no_tdvf[at] ^= 0xff;
        let e = kvm.flavour.firmware(FW, &no_tdvf).unwrap_err();
        assert!(e.contains("without TDVF metadata"), "{e}");
        // Two sections on one page.
        let mut s = sections();
        s[3].address = 0x80_a000;
        let e = kvm
            .flavour
            .firmware(FW, &firmware::tdvf_image(0x1_0000, &s))
            .unwrap_err();
        assert!(e.contains("sections 2 and 3 overlap"), "{e}");
        assert!(!e.contains('\n'));
        // A section beyond the RAM: refused at machine-ready.
        let mut s = sections();
        s[3].address = 0x200_0000;
        let kvm = td(0, 0);
        let img = firmware::tdvf_image(0x1_0000, &s);
        kvm.flavour.firmware(FW, &img).unwrap();
        let e = kvm
            .flavour
            .machine_ready(&kvm.vmm, &Intel, &mut Effects::default())
            .unwrap_err();
        assert!(
            e.contains("is not guest RAM: give the TD more memory with -m"),
            "{e}"
        );
    }

    #[test]
    fn the_initial_state_is_the_modules() {
        let s = initial_state(3, Gpaw::Bits52, 0x80_9000, 0x806f8);
        assert_eq!(
            (s.rip, s.cr0, s.efer, s.rflags),
            (0xffff_fff0, 0x21, 0x901, 2)
        );
        assert_eq!(s.cs.attrib, 0xc9b, "32-bit code, granular");
        assert_eq!((s.ss.attrib, s.ss.limit), (0xc93, 0xffff_ffff));
        assert_eq!(s.gpr[gpr::RBX], 52);
        assert_eq!((s.gpr[gpr::RCX], s.gpr[gpr::R8]), (0x80_9000, 0x80_9000));
        assert_eq!((s.gpr[gpr::RDX], s.gpr[gpr::RSI]), (0x806f8, 3));
        assert_eq!(initial_state(0, Gpaw::Bits48, 0, 0).gpr[gpr::RBX], 48);
    }
}
