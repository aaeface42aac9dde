//! CPUID as a TD sees it: the leaves the TDX module fixes, and KVM's
//! paravirtual block.

use super::*;
use crate::hooks::{gpr, Host, Regs};
use std::sync::atomic::Ordering;

/// CPUID leaf 0's EBX, EDX, ECX on Intel: "Genu", "ineI", "ntel".
pub(super) const GENUINE_INTEL: [u32; 3] = [
    u32::from_le_bytes(*b"Genu"),
    u32::from_le_bytes(*b"ineI"),
    u32::from_le_bytes(*b"ntel"),
];

pub(super) use crate::kvm::pv_cpuid::{kvm_cpuid, KVM_CPUID_LAST, KVM_CPUID_SIGNATURE};

impl TdxModule {
    /// CPUID as the TD sees it: leaf 0x21 is the TDX module's
    /// ("IntelTDX    ", Linux `TDX_IDENT`), leaf 0 reports it as present
    /// and the vendor as GenuineIntel, which the TDX module fixes (TDX
    /// module ABI, CPUID virtualization: leaf 0 EBX/ECX/EDX are fixed
    /// fields). Leaves that raising the maximum basic leaf brings into
    /// range but QEMU does not implement read as zero: QEMU answers a
    /// leaf above its maximum with its highest leaf, as Intel CPUs do, and
    /// Linux would take that for the TSC/crystal ratio of leaf 0x15 (a
    /// TSC of a few kHz) or for topology in leaf 0x1f (a bitmap walk past
    /// its end in `topology_init_possible_cpus()`).
    /// `None`: QEMU answers.
    pub fn cpuid(&self, regs: &mut Regs, host: &dyn Host) -> Option<()> {
        let leaf = regs.gpr[gpr::RAX] as u32;
        let out = match leaf {
            0 => {
                let mut r = host.cpuid(0, 0);
                if [r[1], r[3], r[2]] != GENUINE_INTEL
                    && !self.vendor_warned.swap(true, Ordering::Relaxed)
                {
                    eprintln!(
                        "cvmem: a TD runs on an Intel CPU, but QEMU's CPU model is not \
                         GenuineIntel: give QEMU -cpu max,vendor=GenuineIntel,phys-bits=52 \
                         (the guest is told GenuineIntel; QEMU emulates its own vendor)"
                    );
                }
                r[0] = r[0].max(0x21);
                [r[1], r[3], r[2]] = GENUINE_INTEL;
                r
            }
            1 => {
                // ECX bit 31: a TD always runs under a hypervisor (fixed
                // to 1 by the TDX module).
                let mut r = host.cpuid(1, 0);
                r[2] |= 1 << 31;
                r
            }
            1..0x21 if leaf > host.cpuid(0, 0)[0] => [0; 4],
            KVM_CPUID_SIGNATURE..=KVM_CPUID_LAST => kvm_cpuid(leaf),
            0x21 => {
                let sub = regs.gpr[gpr::RCX] as u32;
                if sub == 0 {
                    // EBX, EDX, ECX spell "IntelTDX    ".
                    let word = |s: &[u8; 4]| u32::from_le_bytes(*s);
                    [0, word(b"Inte"), word(b"    "), word(b"lTDX")]
                } else {
                    [0; 4]
                }
            }
            _ => return None,
        };
        for (i, r) in [gpr::RAX, gpr::RBX, gpr::RCX, gpr::RDX]
            .into_iter()
            .enumerate()
        {
            regs.gpr[r] = u64::from(out[i]);
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::hooks::fake::{FakeHost, MEM};

    use crate::tdx::testutil::*;
    use cvmem_model::TdAttributes;
    #[test]
    fn cpuid_reports_tdx() {
        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        let tdx = kvm.flavour_as::<TdxModule>();
        let host = FakeHost::new();
        let mut regs = Regs::default();
        regs.gpr[gpr::RAX] = 0x21;
        tdx.cpuid(&mut regs, &host).unwrap();
        let mut sig = Vec::new();
        for r in [gpr::RBX, gpr::RDX, gpr::RCX] {
            sig.extend((regs.gpr[r] as u32).to_le_bytes());
        }
        assert_eq!(&sig, b"IntelTDX    ");
        regs.gpr[gpr::RAX] = 0;
        tdx.cpuid(&mut regs, &host).unwrap();
        assert!(regs.gpr[gpr::RAX] >= 0x21);
        let mut vendor = Vec::new();
        for r in [gpr::RBX, gpr::RDX, gpr::RCX] {
            vendor.extend((regs.gpr[r] as u32).to_le_bytes());
        }
        assert_eq!(&vendor, b"GenuineIntel", "the TDX module fixes the vendor");
        regs.gpr[gpr::RAX] = 1;
        tdx.cpuid(&mut regs, &host).unwrap();
        assert_eq!(regs.gpr[gpr::RCX], 0x8000_000c, "the hypervisor bit");
        // KVM's signature, and no paravirtual feature.
        regs.gpr[gpr::RAX] = 0x4000_0000;
        tdx.cpuid(&mut regs, &host).unwrap();
        let mut sig = Vec::new();
        for r in [gpr::RBX, gpr::RCX, gpr::RDX] {
            sig.extend((regs.gpr[r] as u32).to_le_bytes());
        }
        assert_eq!(
            (regs.gpr[gpr::RAX], &sig[..]),
            (0x4000_0001, &b"KVMKVMKVM\0\0\0"[..])
        );
        regs.gpr[gpr::RAX] = 0x4000_0001;
        tdx.cpuid(&mut regs, &host).unwrap();
        assert_eq!(&regs.gpr[..4], &[0; 4]);
        regs.gpr[gpr::RAX] = 2;
        assert!(tdx.cpuid(&mut regs, &host).is_none());
        // FakeHost's maximum basic leaf is 0x1f: 0x20 is brought into range
        // by leaf 0x21 and reads as zero, not as QEMU's highest leaf.
        regs.gpr[gpr::RAX] = 0x1f;
        assert!(tdx.cpuid(&mut regs, &host).is_none());
        regs.gpr[gpr::RAX] = 0x20;
        regs.gpr[gpr::RBX] = 7;
        tdx.cpuid(&mut regs, &host).unwrap();
        assert_eq!(&regs.gpr[..4], &[0; 4]);
    }
}
