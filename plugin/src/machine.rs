//! The machine-ready check: QEMU configurations a VM type cannot run on are
//! refused before the guest runs, with one line naming the option to change.
//!
//! QEMU itself refuses impossible configurations before starting a guest;
//! cvmem does the same for those that would otherwise only hang or die
//! inside the guest. The CPU model is known only once QEMU has built the
//! machine, so the check runs from the machine-ready callback (patch 0016)
//! and reads the model through CPUID, as the guest will.

use cvmem_model::{VmConfig, VmType};

/// The `-cpu` that every check's message suggests for a TD.
const TDX_CPU: &str = "-cpu max,vendor=GenuineIntel,phys-bits=52";
/// The `-cpu` that every check's message suggests for an SNP guest.
const SNP_CPU: &str = "-cpu max,phys-bits=52";

/// What the check needs of QEMU's CPU model: CPUID of vCPU 0.
pub trait CpuModel {
    /// CPUID `leaf`.`subleaf`: EAX, EBX, ECX, EDX.
    fn cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4];
}

/// The vendor string of CPUID leaf 0 (EBX, EDX, ECX).
fn vendor(cpu: &dyn CpuModel) -> String {
    let [_, ebx, ecx, edx] = cpu.cpuid(0, 0);
    let bytes: Vec<u8> = [ebx, edx, ecx]
        .iter()
        .flat_map(|r| r.to_le_bytes())
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// MAXPHYADDR: CPUID 0x80000008 EAX[7:0], or 36 where the leaf is missing
/// (SDM vol. 3 4.1.4).
fn phys_bits(cpu: &dyn CpuModel) -> u32 {
    if cpu.cpuid(0x8000_0000, 0)[0] < 0x8000_0008 {
        return 36;
    }
    cpu.cpuid(0x8000_0008, 0)[0] & 0xff
}

/// CPUID.1:ECX bit 21, x2APIC.
fn has_x2apic(cpu: &dyn CpuModel) -> bool {
    cpu.cpuid(1, 0)[2] & (1 << 21) != 0
}

/// Checks that the VM `config` describes can run on QEMU's CPU model. `Err`
/// is the one line to print (without the `cvmem: ` prefix).
pub fn check(config: &VmConfig, cpu: &dyn CpuModel) -> Result<(), String> {
    match config.vm_type {
        VmType::Tdx => check_tdx(config, cpu),
        VmType::Snp => check_snp(config, cpu),
        VmType::Default | VmType::SwProtected => Ok(()),
    }
}

fn check_tdx(config: &VmConfig, cpu: &dyn CpuModel) -> Result<(), String> {
    // TDX runs on Intel CPUs only, and QEMU's TCG follows the vendor it is
    // given in places (SYSENTER in long mode, MSRs): a TD on an AMD model
    // would see Intel in CPUID and AMD behaviour from the CPU.
    let vendor = vendor(cpu);
    if vendor != "GenuineIntel" {
        return Err(format!(
            "vm-type=tdx needs an Intel CPU model, and QEMU's is {vendor}: \
             add vendor=GenuineIntel to -cpu ({TDX_CPU})"
        ));
    }
    // Every vCPU of a TD runs with its local APIC in x2APIC mode (the TDX
    // module virtualizes only x2APIC; KVM's tdx_vcpu_init() sets it). QEMU
    // refuses the switch to x2APIC on a model without it, and Linux then
    // spins after "IA32_APIC_BASE ... refused".
    if !has_x2apic(cpu) {
        return Err(format!(
            "vm-type=tdx needs x2APIC, which every TD runs in, and QEMU's CPU model has none: \
             use {TDX_CPU} or add +x2apic to -cpu"
        ));
    }
    // The shared bit is bit GPAW-1 of a guest-physical address (TDX module
    // base spec, "GPA space"). QEMU's page walker treats PTE address bits at
    // or above MAXPHYADDR as reserved, so the guest's shared mappings would
    // fault instead of reaching the plugin.
    let gpaw = config.gpaw.bits();
    let phys = phys_bits(cpu);
    if phys < gpaw {
        return Err(format!(
            "vm-type=tdx with gpaw={gpaw} puts the shared bit at bit {}, but QEMU's CPU model \
             has {phys} physical address bits (higher PTE bits are reserved to QEMU's page \
             walker): add phys-bits={gpaw} or more to -cpu ({TDX_CPU})",
            gpaw - 1
        ));
    }
    Ok(())
}

fn check_snp(config: &VmConfig, cpu: &dyn CpuModel) -> Result<(), String> {
    // SEV-SNP is an AMD EPYC feature; Linux's SEV code paths and QEMU's
    // SVM instructions (VMMCALL, VMGEXIT) are AMD's.
    let vendor = vendor(cpu);
    if vendor != "AuthenticAMD" {
        return Err(format!(
            "vm-type=snp needs an AMD CPU model, and QEMU's is {vendor}: \
             remove vendor= from -cpu ({SNP_CPU})"
        ));
    }
    // The C-bit is bit 51 (CPUID 0x8000001F EBX[5:0] as cvmem answers it);
    // QEMU's page walker must see it as an address bit.
    let c_bit = u32::from(config.c_bit);
    let phys = phys_bits(cpu);
    if phys <= c_bit {
        return Err(format!(
            "vm-type=snp puts the C-bit at bit {c_bit}, but QEMU's CPU model has {phys} \
             physical address bits (higher PTE bits are reserved to QEMU's page walker): \
             add phys-bits={} to -cpu ({SNP_CPU})",
            c_bit + 1
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cvmem_model::Gpaw;

    /// A CPU model from a vendor string, MAXPHYADDR and x2APIC.
    struct Model {
        vendor: &'static [u8; 12],
        phys_bits: Option<u32>,
        x2apic: bool,
    }

    impl CpuModel for Model {
        fn cpuid(&self, leaf: u32, _: u32) -> [u32; 4] {
            let word = |i: usize| u32::from_le_bytes(self.vendor[i..i + 4].try_into().unwrap());
            match leaf {
                0 => [0xd, word(0), word(8), word(4)],
                1 => [0, 0, u32::from(self.x2apic) << 21, 0],
                0x8000_0000 => [
                    if self.phys_bits.is_some() {
                        0x8000_0008
                    } else {
                        0x8000_0004
                    },
                    0,
                    0,
                    0,
                ],
                0x8000_0008 => [self.phys_bits.unwrap_or(0), 0, 0, 0],
                _ => [0; 4],
            }
        }
    }

    const INTEL_MAX: Model = Model {
        vendor: b"GenuineIntel",
        phys_bits: Some(52),
        x2apic: true,
    };
    const AMD_MAX: Model = Model {
        vendor: b"AuthenticAMD",
        phys_bits: Some(52),
        x2apic: true,
    };
    /// QEMU's default qemu64: AMD, 40 bits, no x2APIC.
    const QEMU64: Model = Model {
        vendor: b"AuthenticAMD",
        phys_bits: Some(40),
        x2apic: false,
    };

    fn config(vm_type: VmType) -> VmConfig {
        VmConfig::new(vm_type)
    }

    #[test]
    fn the_suggested_models_pass() {
        assert_eq!(check(&config(VmType::Tdx), &INTEL_MAX), Ok(()));
        assert_eq!(check(&config(VmType::Snp), &AMD_MAX), Ok(()));
        for t in [VmType::Default, VmType::SwProtected] {
            assert_eq!(check(&config(t), &QEMU64), Ok(()));
        }
    }

    #[test]
    fn a_td_on_qemu64_is_refused_for_its_vendor_first() {
        let e = check(&config(VmType::Tdx), &QEMU64).unwrap_err();
        assert!(
            e.contains("needs an Intel CPU model, and QEMU's is AuthenticAMD"),
            "{e}"
        );
        assert!(
            e.contains("vendor=GenuineIntel") && !e.contains('\n'),
            "{e}"
        );
    }

    #[test]
    fn a_td_without_x2apic_is_refused() {
        let m = Model {
            x2apic: false,
            ..INTEL_MAX
        };
        let e = check(&config(VmType::Tdx), &m).unwrap_err();
        assert!(e.contains("needs x2APIC") && e.contains("+x2apic"), "{e}");
    }

    #[test]
    fn the_shared_bit_must_be_an_address_bit() {
        let m = Model {
            phys_bits: Some(40),
            ..INTEL_MAX
        };
        let e = check(&config(VmType::Tdx), &m).unwrap_err();
        assert!(e.contains("gpaw=48 puts the shared bit at bit 47"), "{e}");
        assert!(
            e.contains("has 40 physical address bits") && e.contains("phys-bits=48"),
            "{e}"
        );
        // 48 bits carry bit 47; gpaw=52 needs 52.
        let m48 = Model {
            phys_bits: Some(48),
            ..INTEL_MAX
        };
        assert_eq!(check(&config(VmType::Tdx), &m48), Ok(()));
        let gpaw52 = VmConfig {
            gpaw: Gpaw::Bits52,
            ..config(VmType::Tdx)
        };
        assert!(check(&gpaw52, &m48).unwrap_err().contains("bit 51"));
        // No leaf 0x80000008: 36 bits.
        let old = Model {
            phys_bits: None,
            ..INTEL_MAX
        };
        assert!(check(&config(VmType::Tdx), &old)
            .unwrap_err()
            .contains("has 36 physical"));
    }

    #[test]
    fn snp_needs_amd_and_the_c_bit() {
        let e = check(&config(VmType::Snp), &INTEL_MAX).unwrap_err();
        assert!(
            e.contains("needs an AMD CPU model, and QEMU's is GenuineIntel"),
            "{e}"
        );
        let e = check(&config(VmType::Snp), &QEMU64).unwrap_err();
        assert!(
            e.contains("C-bit at bit 51") && e.contains("phys-bits=52"),
            "{e}"
        );
    }
}
