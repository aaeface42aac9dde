//! The launch digest: what the SNP firmware folds every SNP_LAUNCH_UPDATE
//! into, and MEASUREMENT in the attestation report after
//! SNP_LAUNCH_FINISH.
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
//! and the SHA-384 of it is the new digest (the `sev` crate's
//! `measurement::gctx::Gctx::update` computes the same chain).

use sha2::{Digest, Sha384};

/// PAGE_TYPE values (ABI table "Page types"); cvmem launches no NORMAL,
/// VMSA or ZERO pages (no firmware image, no VMSA content of its own).
#[allow(dead_code)]
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

    /// The digest so far.
    pub fn digest(&self) -> [u8; 48] {
        self.digest
    }
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
}
