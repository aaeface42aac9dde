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

use super::report::Sha384Digest;
use super::*;
use crate::hooks::{gpr, FirmwarePlace, InitSipi, Segment, VcpuState};
use crate::machine::CpuModel;
use cvmem_model::firmware::{self, TdvfSection, TdvfSectionKind};
use cvmem_model::{Gfn, Gpa, Gpaw};
use sha2::{Digest, Sha384};

const PAGE: u64 = 4096;
/// TDH.MR.EXTEND measures 256 bytes per call.
const EXTEND_CHUNK: usize = 256;

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

    /// The bytes a section's page at `offset` holds after the launch
    /// wrote it (`hob`: the TD HOB's content).
    fn page(&self, s: &TdvfSection, offset: u64, hob: &[u8]) -> [u8; PAGE as usize] {
        let mut page = [0u8; PAGE as usize];
        let data: &[u8] = match s.kind {
            TdvfSectionKind::Bfv | TdvfSectionKind::Cfv => {
                let start = s.data_offset as usize;
                &self.image[start..start + s.data_len as usize]
            }
            TdvfSectionKind::TdHob => hob,
            TdvfSectionKind::TempMem => &[],
        };
        let from = (offset as usize).min(data.len());
        let to = (offset as usize + PAGE as usize).min(data.len());
        page[..to - from].copy_from_slice(&data[from..to]);
        page
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

/// A 128-byte MRTD extension block: `what` at byte 0, the GPA at byte 16
/// (TDX module ABI: TDH.MEM.PAGE.ADD and TDH.MR.EXTEND).
fn mrtd_block(what: &[u8], gpa: u64) -> [u8; 128] {
    let mut block = [0u8; 128];
    block[..what.len()].copy_from_slice(what);
    block[16..24].copy_from_slice(&gpa.to_le_bytes());
    block
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
            .copied()
            .filter(|&(a, b)| b <= fw.gpa || a >= fw_end)
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

        let mut mrtd = Sha384::new();
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
            for offset in (0..s.size).step_by(PAGE as usize) {
                let gpa = s.address + offset;
                mrtd.update(mrtd_block(b"MEM.PAGE.ADD", gpa));
                if s.mr_extend {
                    let page = fw.page(s, offset, &hob);
                    for (i, chunk) in page.chunks(EXTEND_CHUNK).enumerate() {
                        mrtd.update(mrtd_block(b"MR.EXTEND", gpa + (i * EXTEND_CHUNK) as u64));
                        mrtd.update(chunk);
                    }
                }
            }
            self.stats
                .pages_added
                .fetch_add(range.len(), Ordering::Relaxed);
            added.push(range);
        }
        let digest: Sha384Digest = mrtd.finalize().into();
        let _ = self.mrtd.set(digest);
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
    use super::*;

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

    #[test]
    fn mrtd_blocks_carry_the_operation_and_the_gpa() {
        let b = mrtd_block(b"MR.EXTEND", 0xffe2_0100);
        assert_eq!(&b[..9], b"MR.EXTEND");
        assert_eq!(&b[16..24], &0xffe2_0100u64.to_le_bytes());
        assert!(b[9..16].iter().chain(&b[24..]).all(|&x| x == 0));
    }
}
