//! The SNP secrets page: what the AMD-SP writes into the guest at launch
//! (SNP_LAUNCH_UPDATE with page type SECRETS), above all the VM platform
//! communication keys VMPCK0-3 that guest requests (attestation) are
//! encrypted with.
//!
//! Layout (SNP firmware ABI, "Secrets page format", version 3; Linux
//! `struct snp_secrets_page` in arch/x86/include/asm/sev.h):
//!
//! | offset | field |
//! |---|---|
//! | 0x000 | VERSION (u32) |
//! | 0x004 | IMIEN (bit 0) |
//! | 0x008 | FMS: family, model and stepping, as CPUID 1 EAX |
//! | 0x010 | GOSVW, 16 bytes |
//! | 0x020 | VMPCK0 .. VMPCK3, 32 bytes each |
//! | 0x0a0 | the guest OS area, 96 bytes, zero at launch |
//! | 0x100 | VMSA tweak bitmap, 64 bytes |
//! | 0x140 | SVSM fields, zero without an SVSM |

use cvmem_model::PAGE_SIZE;

/// The secrets page format version written.
pub const VERSION: u32 = 3;
/// Where VMPCK0 starts.
pub const VMPCK_OFFSET: usize = 0x20;
/// A VMPCK's length (AES-256).
pub const VMPCK_LEN: usize = 32;

/// The guest's secrets: fresh for every launch.
#[derive(Clone, PartialEq, Eq)]
pub struct Secrets {
    /// VMPCK0-3: the AES-256-GCM keys of guest messages from VMPL 0-3.
    pub vmpck: [[u8; VMPCK_LEN]; 4],
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys stay out of logs and panics.
        f.write_str("Secrets { .. }")
    }
}

impl Secrets {
    /// New random keys, as the AMD-SP generates them for each guest.
    pub fn generate() -> Result<Secrets, String> {
        let mut vmpck = [[0u8; VMPCK_LEN]; 4];
        for k in &mut vmpck {
            getrandom::fill(k).map_err(|e| format!("no randomness for the VMPCKs: {e}"))?;
        }
        Ok(Secrets { vmpck })
    }

    /// The page, for a CPU whose CPUID 1 EAX is `fms`.
    pub fn page(&self, fms: u32) -> Vec<u8> {
        let mut p = vec![0u8; PAGE_SIZE as usize];
        p[0..4].copy_from_slice(&VERSION.to_le_bytes());
        p[8..12].copy_from_slice(&fms.to_le_bytes());
        for (i, k) in self.vmpck.iter().enumerate() {
            let at = VMPCK_OFFSET + i * VMPCK_LEN;
            p[at..at + VMPCK_LEN].copy_from_slice(k);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fresh_and_where_linux_reads_them() {
        let a = Secrets::generate().unwrap();
        let b = Secrets::generate().unwrap();
        assert_ne!(a, b);
        assert_ne!(a.vmpck[0], a.vmpck[1]);
        let p = a.page(0x00a0_0f11);
        assert_eq!(&p[0..4], &3u32.to_le_bytes());
        assert_eq!(&p[8..12], &0x00a0_0f11u32.to_le_bytes());
        // Linux: vmpck0 at 0x20, vmpck3 at 0x80, os_area at 0xa0.
        assert_eq!(&p[0x20..0x40], &a.vmpck[0]);
        assert_eq!(&p[0x80..0xa0], &a.vmpck[3]);
        assert!(p[0xa0..].iter().all(|&b| b == 0));
        assert_eq!(format!("{a:?}"), "Secrets { .. }");
    }
}
