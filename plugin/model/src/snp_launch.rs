//! What an SNP launch measures: the launch digest the SNP firmware folds
//! every SNP_LAUNCH_UPDATE into (MEASUREMENT in the attestation report),
//! the VMSA a vCPU starts from, and the digest of a guest started from an
//! OVMF image with SEV metadata.
//!
//! SEV-SNP firmware ABI, "Launch Digest" and table "PAGE_INFO": for each
//! page launched, the firmware hashes the 0x70-byte PAGE_INFO
//!
//! | offset | field |
//! |---|---|
//! | 0x00 | DIGEST_CUR: the digest so far (48 bytes, zero at LAUNCH_START) |
//! | 0x30 | CONTENTS: SHA-384 of the page for NORMAL and VMSA pages, zero for ZERO, UNMEASURED, SECRETS and CPUID |
//! | 0x60 | LENGTH (u16) = 0x70 |
//! | 0x62 | PAGE_TYPE (u8) |
//! | 0x63 | IMI_PAGE (u8) |
//! | 0x64 | VMPL3_PERMS, VMPL2_PERMS, VMPL1_PERMS (u8 each), reserved |
//! | 0x68 | GPA (u64) |
//!
//! and the SHA-384 of it is the new digest.

use crate::firmware::{SevSection, SevSectionKind};
use sha2::{Digest, Sha384};

/// PAGE_TYPE values (ABI table "Page types").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PageType {
    /// Content measured and encrypted.
    Normal = 1,
    /// A VMSA.
    Vmsa = 2,
    /// A zero page.
    Zero = 3,
    /// Content kept, not measured.
    Unmeasured = 4,
    /// The secrets page.
    Secrets = 5,
    /// The CPUID page.
    Cpuid = 6,
}

/// The launch digest of one guest, updated page by page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchDigest {
    digest: [u8; 48],
}

impl Default for LaunchDigest {
    /// The digest at SNP_LAUNCH_START: zero.
    fn default() -> Self {
        LaunchDigest { digest: [0; 48] }
    }
}

impl LaunchDigest {
    /// One page launched: `contents` is SHA-384 of the page for NORMAL and
    /// VMSA pages, and ignored (zero) for the other types.
    pub fn update(&mut self, page_type: PageType, gpa: u64, contents: Option<&[u8; 48]>) {
        let mut info = [0u8; 0x70];
        info[..0x30].copy_from_slice(&self.digest);
        if matches!(page_type, PageType::Normal | PageType::Vmsa) {
            if let Some(c) = contents {
                info[0x30..0x60].copy_from_slice(c);
            }
        }
        info[0x60..0x62].copy_from_slice(&0x70u16.to_le_bytes());
        info[0x62] = page_type as u8;
        info[0x68..0x70].copy_from_slice(&gpa.to_le_bytes());
        self.digest.copy_from_slice(&Sha384::digest(info));
    }

    /// NORMAL pages with their content: `data`, page by page from `gpa`
    /// (a last partial page counts as padded with zeros, as the firmware
    /// launches whole pages).
    pub fn update_normal(&mut self, gpa: u64, data: &[u8]) {
        for (i, chunk) in data.chunks(PAGE).enumerate() {
            let mut page = [0u8; PAGE];
            page[..chunk.len()].copy_from_slice(chunk);
            let hash: [u8; 48] = Sha384::digest(page).into();
            self.update(PageType::Normal, gpa + (i * PAGE) as u64, Some(&hash));
        }
    }

    /// Pages of `page_type` without content, `len` bytes from `gpa`
    /// (rounded up to whole pages).
    pub fn update_empty(&mut self, page_type: PageType, gpa: u64, len: u64) {
        for i in 0..len.div_ceil(PAGE as u64) {
            self.update(page_type, gpa + i * PAGE as u64, None);
        }
    }

    /// The digest so far.
    pub fn digest(&self) -> [u8; 48] {
        self.digest
    }
}

const PAGE: usize = 4096;

/// The GPA KVM's SNP_LAUNCH_FINISH gives each vCPU's VMSA in the digest
/// (the VMSA is not guest memory; sev-snp-measure and the `sev` crate use
/// the same value).
pub const VMSA_GPA: u64 = 0xffff_ffff_f000;

/// Offsets in the VMSA page (`struct sev_es_save_area`, Linux
/// arch/x86/include/asm/svm.h; APM vol. 2 Table B-4).
pub mod vmsa {
    pub const ES: usize = 0x00;
    pub const CS: usize = 0x10;
    pub const SS: usize = 0x20;
    pub const DS: usize = 0x30;
    pub const FS: usize = 0x40;
    pub const GS: usize = 0x50;
    pub const GDTR: usize = 0x60;
    pub const LDTR: usize = 0x70;
    pub const IDTR: usize = 0x80;
    pub const TR: usize = 0x90;
    pub const EFER: usize = 0xd0;
    pub const CR4: usize = 0x148;
    pub const CR3: usize = 0x150;
    pub const CR0: usize = 0x158;
    pub const DR7: usize = 0x160;
    pub const DR6: usize = 0x168;
    pub const RFLAGS: usize = 0x170;
    pub const RIP: usize = 0x178;
    pub const RSP: usize = 0x1d8;
    pub const RAX: usize = 0x1f8;
    pub const STAR: usize = 0x200;
    pub const LSTAR: usize = 0x208;
    pub const CSTAR: usize = 0x210;
    pub const SFMASK: usize = 0x218;
    pub const KERNEL_GS_BASE: usize = 0x220;
    pub const SYSENTER_CS: usize = 0x228;
    pub const SYSENTER_ESP: usize = 0x230;
    pub const SYSENTER_EIP: usize = 0x238;
    pub const CR2: usize = 0x240;
    pub const G_PAT: usize = 0x268;
    /// RCX; then RDX, RBX, (RSP's unused slot), RBP, RSI, RDI, R8-R15.
    pub const RCX: usize = 0x308;
    pub const RDX: usize = 0x310;
    pub const SEV_FEATURES: usize = 0x3b0;
    pub const XCR0: usize = 0x3e8;
    pub const MXCSR: usize = 0x408;
    pub const X87_FTW: usize = 0x40c;
    pub const X87_FCW: usize = 0x410;
}

/// SEV_FEATURES of a VM QEMU starts without `sev-features`: SNPActive
/// only (APM vol. 2 Table 15-37); what cvmem's SNP guests run with.
pub const SEV_FEATURES_DEFAULT: u64 = 1;

/// Where the bootstrap processor starts: the architectural reset vector.
pub const BSP_RESET_EIP: u32 = 0xffff_fff0;

/// The VMSA a vCPU of an SNP guest started by QEMU and KVM has at
/// SNP_LAUNCH_FINISH: the x86 reset state (QEMU's x86_cpu_reset_hold())
/// as KVM's sev_es_sync_vmsa() writes it, with CS:RIP at `eip` (the reset
/// vector for the BSP, the image's SEV-ES reset block for APs: QEMU's
/// sev_es_set_reset_vector()), RDX the CPU signature (CPUID.1.EAX, as
/// after RESET) and SEV_FEATURES `sev_features`.
pub fn launch_vmsa(eip: u32, cpu_sig: u32, sev_features: u64) -> Vec<u8> {
    let mut p = vec![0u8; PAGE];
    let mut put = |at: usize, bytes: &[u8]| p[at..at + bytes.len()].copy_from_slice(bytes);
    // A segment: selector, attributes (the VMCB's packed form), limit, base.
    let seg = |sel: u16, attrib: u16, base: u64| {
        let mut s = [0u8; 16];
        s[0..2].copy_from_slice(&sel.to_le_bytes());
        s[2..4].copy_from_slice(&attrib.to_le_bytes());
        s[4..8].copy_from_slice(&0xffffu32.to_le_bytes());
        s[8..16].copy_from_slice(&base.to_le_bytes());
        s
    };
    let eip = u64::from(eip);
    // Data segments: present, writable, accessed (0x93); CS: present,
    // readable code, accessed (0x9b); LDT 0x82; a busy 32-bit TSS 0x8b.
    for at in [vmsa::ES, vmsa::SS, vmsa::DS, vmsa::FS, vmsa::GS] {
        put(at, &seg(0, 0x93, 0));
    }
    put(vmsa::CS, &seg(0xf000, 0x9b, eip & 0xffff_0000));
    put(vmsa::GDTR, &seg(0, 0, 0));
    put(vmsa::IDTR, &seg(0, 0, 0));
    put(vmsa::LDTR, &seg(0, 0x82, 0));
    put(vmsa::TR, &seg(0, 0x8b, 0));
    // EFER.SVME (KVM sets it in every SEV-ES VMSA), CR4.MCE, CR0.ET.
    put(vmsa::EFER, &0x1000u64.to_le_bytes());
    put(vmsa::CR4, &0x40u64.to_le_bytes());
    put(vmsa::CR0, &0x10u64.to_le_bytes());
    put(vmsa::DR7, &0x400u64.to_le_bytes());
    put(vmsa::DR6, &0xffff_0ff0u64.to_le_bytes());
    put(vmsa::RFLAGS, &2u64.to_le_bytes());
    put(vmsa::RIP, &(eip & 0xffff).to_le_bytes());
    put(vmsa::G_PAT, &0x0007_0406_0007_0406u64.to_le_bytes());
    put(vmsa::RDX, &u64::from(cpu_sig).to_le_bytes());
    put(vmsa::SEV_FEATURES, &sev_features.to_le_bytes());
    put(vmsa::XCR0, &1u64.to_le_bytes());
    put(vmsa::MXCSR, &0x1f80u32.to_le_bytes());
    put(vmsa::X87_FCW, &0x37fu16.to_le_bytes());
    p
}

/// The page type QEMU launches an SEV metadata section with
/// (target/i386/sev.c, snp_metadata_desc_to_page_type(); kernel hashes are
/// a ZERO page without `kernel-hashes=on`, which cvmem does not offer).
pub fn section_page_type(kind: SevSectionKind) -> PageType {
    match kind {
        SevSectionKind::SnpSecrets => PageType::Secrets,
        SevSectionKind::Cpuid => PageType::Cpuid,
        _ => PageType::Zero,
    }
}

/// The launch digest of an SNP guest QEMU starts from OVMF `image` (mapped
/// to end at 4 GiB) with SEV metadata `sections` and `vcpus` vCPUs: the
/// image as NORMAL pages, then each section with its page type in the
/// metadata's order (the order of QEMU's launch-update list), then at
/// SNP_LAUNCH_FINISH one VMSA per vCPU (KVM's snp_launch_update_vmsa()):
/// the BSP's at the reset vector, the APs' at `ap_eip`.
pub fn ovmf_digest(
    image: &[u8],
    sections: &[SevSection],
    ap_eip: u32,
    vcpus: u32,
    cpu_sig: u32,
    sev_features: u64,
) -> LaunchDigest {
    let mut d = LaunchDigest::default();
    d.update_normal((1u64 << 32) - image.len() as u64, image);
    for s in sections {
        d.update_empty(section_page_type(s.kind), s.base, s.len);
    }
    for i in 0..vcpus {
        let eip = if i == 0 { BSP_RESET_EIP } else { ap_eip };
        let hash: [u8; 48] = Sha384::digest(launch_vmsa(eip, cpu_sig, sev_features)).into();
        d.update(PageType::Vmsa, VMSA_GPA, Some(&hash));
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_info_chain() {
        let mut d = LaunchDigest::default();
        assert_eq!(d.digest(), [0; 48]);
        d.update(PageType::Secrets, 0x9d000, None);
        // By hand: PAGE_INFO with a zero digest and contents.
        let mut info = [0u8; 0x70];
        info[0x60] = 0x70;
        info[0x62] = 5;
        info[0x68..0x70].copy_from_slice(&0x9d000u64.to_le_bytes());
        let first: [u8; 48] = Sha384::digest(info).into();
        assert_eq!(d.digest(), first);
        // The order, the type and the GPA all count.
        let mut a = LaunchDigest::default();
        a.update(PageType::Unmeasured, 0x1000, None);
        a.update(PageType::Unmeasured, 0x2000, None);
        let mut b = LaunchDigest::default();
        b.update(PageType::Unmeasured, 0x2000, None);
        b.update(PageType::Unmeasured, 0x1000, None);
        assert_ne!(a, b);
        let mut c = LaunchDigest::default();
        c.update(PageType::Zero, 0x1000, None);
        c.update(PageType::Unmeasured, 0x2000, None);
        assert_ne!(a, c);
        // Contents count for NORMAL pages only.
        let mut n1 = LaunchDigest::default();
        n1.update(PageType::Normal, 0x1000, Some(&[1; 48]));
        let mut n2 = LaunchDigest::default();
        n2.update(PageType::Normal, 0x1000, Some(&[2; 48]));
        assert_ne!(n1, n2);
        let mut u1 = LaunchDigest::default();
        u1.update(PageType::Unmeasured, 0x1000, Some(&[1; 48]));
        let mut u2 = LaunchDigest::default();
        u2.update(PageType::Unmeasured, 0x1000, None);
        assert_eq!(u1, u2);
    }

    #[test]
    fn normal_pages_hash_their_content_page_by_page() {
        let data = [7u8; 2 * PAGE];
        let mut a = LaunchDigest::default();
        a.update_normal(0x10000, &data);
        let mut b = LaunchDigest::default();
        let h: [u8; 48] = Sha384::digest([7u8; PAGE]).into();
        b.update(PageType::Normal, 0x10000, Some(&h));
        b.update(PageType::Normal, 0x11000, Some(&h));
        assert_eq!(a, b);
    }

    #[test]
    fn vmsa_fields() {
        let v = launch_vmsa(0x80b004, 0x00a00f11, 1);
        let u64_at = |o: usize| u64::from_le_bytes(v[o..o + 8].try_into().unwrap());
        // CS base from the reset block address, RIP its low 16 bits.
        assert_eq!(u64_at(vmsa::CS + 8), 0x80_0000);
        assert_eq!(u64_at(vmsa::RIP), 0xb004);
        assert_eq!(u64_at(vmsa::RDX), 0x00a00f11);
        assert_eq!(u64_at(vmsa::SEV_FEATURES), 1);
        let bsp = launch_vmsa(BSP_RESET_EIP, 0x00a00f11, 1);
        let at = |o: usize| u64::from_le_bytes(bsp[o..o + 8].try_into().unwrap());
        assert_eq!((at(vmsa::CS + 8), at(vmsa::RIP)), (0xffff_0000, 0xfff0));
    }
}
