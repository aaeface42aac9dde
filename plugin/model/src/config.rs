//! VM types, with KVM's names (KVM_X86_DEFAULT_VM, KVM_X86_SW_PROTECTED_VM,
//! KVM_X86_TDX_VM, KVM_X86_SNP_VM in arch/x86/include/uapi/asm/kvm.h).

use std::fmt;
use std::str::FromStr;

use crate::addr::{Gfn, Gpa, PageLevel};
use crate::rmp::Asid;
use crate::sept::TdAttributes;
use crate::types::Gpaw;

/// The kind of VM the guest runs in, as KVM's `KVM_CREATE_VM` type argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum VmType {
    /// KVM_X86_DEFAULT_VM: no private memory.
    #[default]
    Default,
    /// KVM_X86_SW_PROTECTED_VM: private memory tracked by attributes only.
    SwProtected,
    /// KVM_X86_TDX_VM: Intel TDX trust domain.
    Tdx,
    /// KVM_X86_SNP_VM: AMD SEV-SNP guest.
    Snp,
}

impl VmType {
    /// Every VM type, in KVM's numbering order.
    pub const ALL: [VmType; 4] = [
        VmType::Default,
        VmType::SwProtected,
        VmType::Tdx,
        VmType::Snp,
    ];

    /// The name used on cvmem's command line (`vm-type=...`).
    pub const fn name(self) -> &'static str {
        match self {
            VmType::Default => "default",
            VmType::SwProtected => "sw-protected",
            VmType::Tdx => "tdx",
            VmType::Snp => "snp",
        }
    }

    /// Whether the VM has private memory at all (KVM's
    /// `kvm_arch_has_private_mem()`).
    pub const fn has_private_mem(self) -> bool {
        !matches!(self, VmType::Default)
    }
}

impl fmt::Display for VmType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error for a `vm-type` that cvmem does not know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownVmType(pub String);

impl fmt::Display for UnknownVmType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown VM type '{}' (expected one of: default, sw-protected, tdx, snp)",
            self.0
        )
    }
}

impl std::error::Error for UnknownVmType {}

impl FromStr for VmType {
    type Err = UnknownVmType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        VmType::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| UnknownVmType(s.to_owned()))
    }
}

impl VmType {
    /// Whether memslot move/delete follows `KVM_X86_QUIRK_SLOT_ZAP_ALL` for
    /// this type. Only KVM_X86_DEFAULT_VM honours the quirk; every other type
    /// always zaps only the slot's leaves (`kvm_memslot_flush_zap_all()` in
    /// arch/x86/kvm/mmu/mmu.c, Documentation/virt/kvm/api.rst).
    pub const fn honours_slot_zap_all_quirk(self) -> bool {
        matches!(self, VmType::Default)
    }

    /// Whether read-only memslots are allowed. KVM refuses `KVM_MEM_READONLY`
    /// for VMs with protected state (`kvm_arch_has_readonly_mem()` is
    /// `!kvm->arch.has_protected_state`: TDX and SEV-ES/SNP).
    pub const fn allows_readonly_memslots(self) -> bool {
        matches!(self, VmType::Default | VmType::SwProtected)
    }

    /// The largest page KVM maps for private memory of this type by default:
    /// TDX maps private memory at 4K only (`tdx_gmem_private_max_mapping_level()`
    /// in arch/x86/kvm/vmx/tdx.c), SNP is bounded by the 2M RMP page size
    /// (`sev_gmem_max_mapping_level()`); sw-protected uses 2M here so that the
    /// mixed-attribute tracking is exercised.
    pub const fn default_private_max_level(self) -> PageLevel {
        match self {
            VmType::Tdx => PageLevel::Size4K,
            _ => PageLevel::Size2M,
        }
    }
}

/// Which alias of a guest frame an access names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alias {
    /// The shared (or, for VMs without private memory, the only) alias.
    Shared,
    /// The private alias: TDX shared bit clear, SNP C-bit set.
    Private,
    /// No alias bit exists; the memory attributes decide, as KVM does for
    /// KVM_X86_SW_PROTECTED_VM (`kvm_mmu_page_fault()` sets
    /// `PFERR_PRIVATE_ACCESS` from `kvm_mem_is_private()`).
    ByAttributes,
}

/// A GPA split into the frame it names and the alias it uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DecodedGpa {
    /// The frame, alias bit stripped (what memslots and attributes index).
    pub gfn: Gfn,
    /// The byte offset inside the 4K frame.
    pub offset: u64,
    /// The alias used.
    pub alias: Alias,
}

/// How a VM type encodes the private/shared alias in a GPA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AliasLayout {
    vm_type: VmType,
    /// The alias bit, if the type has one (TDX shared bit, SNP C-bit).
    alias_bit: Option<u32>,
    /// GPAs must be below 2^width (alias bit included).
    width: u32,
}

impl AliasLayout {
    /// The layout of a VM built from `config` (which must be valid).
    pub const fn new(config: &VmConfig) -> AliasLayout {
        let width = config.gpaw.bits();
        let alias_bit = match config.vm_type {
            VmType::Tdx => Some(width - 1),
            VmType::Snp => Some(config.c_bit as u32),
            VmType::Default | VmType::SwProtected => None,
        };
        AliasLayout {
            vm_type: config.vm_type,
            alias_bit,
            width,
        }
    }

    /// The alias bit as a GPA mask (0 if none).
    pub const fn alias_mask(self) -> u64 {
        match self.alias_bit {
            Some(b) => 1 << b,
            None => 0,
        }
    }

    /// One past the largest gfn a memslot may cover: the address width without
    /// the alias bit. For TDX this is KVM's rule that memslots may not include
    /// the shared bit (`kvm_is_gfn_alias()` check in
    /// `kvm_arch_prepare_memory_region()`, arch/x86/kvm/x86.c).
    pub const fn max_gfn(self) -> Gfn {
        let bits = match (self.vm_type, self.alias_bit) {
            (VmType::Tdx, Some(b)) => b,
            (VmType::Snp, Some(b)) if b < self.width => b,
            _ => self.width,
        };
        Gfn::new(1 << (bits - crate::addr::PAGE_SHIFT))
    }

    /// Splits `gpa` into frame and alias; `None` if it has bits set above the
    /// address width (a reserved-bit access, never a memslot).
    pub const fn decode(self, gpa: Gpa) -> Option<DecodedGpa> {
        let raw = gpa.raw();
        let mask = self.alias_mask();
        let stripped = raw & !mask;
        if stripped >> self.width != 0 {
            return None;
        }
        let alias = match self.vm_type {
            VmType::Default => Alias::Shared,
            VmType::SwProtected => Alias::ByAttributes,
            VmType::Tdx if raw & mask != 0 => Alias::Shared,
            VmType::Tdx => Alias::Private,
            VmType::Snp if raw & mask != 0 => Alias::Private,
            VmType::Snp => Alias::Shared,
        };
        Some(DecodedGpa {
            gfn: Gpa::new(stripped).gfn(),
            offset: gpa.page_offset(),
            alias,
        })
    }

    /// The GPA of `gfn` through `alias` (`ByAttributes` and types without an
    /// alias bit give the plain address).
    pub const fn encode(self, gfn: Gfn, alias: Alias) -> Gpa {
        let plain = gfn.gpa().raw();
        let raw = match (self.vm_type, alias) {
            (VmType::Tdx, Alias::Shared) | (VmType::Snp, Alias::Private) => {
                plain | self.alias_mask()
            }
            _ => plain,
        };
        Gpa::new(raw)
    }
}

/// Everything needed to create a [`crate::Vm`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmConfig {
    /// The VM type.
    pub vm_type: VmType,
    /// Guest physical address width (TDX GPAW; also the TDP depth).
    pub gpaw: Gpaw,
    /// SNP C-bit position (CPUID `0x8000001F` `EBX[5:0]`); ignored for other types.
    pub c_bit: u8,
    /// `KVM_X86_QUIRK_SLOT_ZAP_ALL`: enabled by default in KVM. Only honoured
    /// by [`VmType::Default`].
    pub slot_zap_all_quirk: bool,
    /// Number of vCPUs (vCPU indexes are `0..max_vcpus`).
    pub max_vcpus: u32,
    /// Largest leaf the TDP MMU installs for shared/normal memory (KVM's
    /// `max_huge_page_level`, 1G when the host supports it).
    pub max_level: PageLevel,
    /// Largest leaf for private memory; see
    /// [`VmType::default_private_max_level`].
    pub private_max_level: PageLevel,
    /// Capacity of the typed-event channel; 0 disables events.
    pub event_capacity: usize,
    /// TDX: the TD ATTRIBUTES (TD_PARAMS.ATTRIBUTES; `SEPT_VE_DISABLE` decides
    /// whether a guest access to a PENDING page is a #VE or kills the VM).
    /// With `gpaw` and `max_vcpus` this is what TDG.VP.INFO reports
    /// ([`crate::Vm::tdx_vp_info`]). Ignored for other types.
    pub td_attributes: TdAttributes,
    /// SNP: the guest's ASID, what the RMP records as the owner of its
    /// private pages (KVM allocates it in `sev_asid_new()`; SNP guests use
    /// ASIDs 1..=`min_sev_asid - 1`, never 0, which means "hypervisor").
    /// Ignored for other types.
    pub asid: Asid,
}

impl VmConfig {
    /// The defaults KVM would use for `vm_type`: GPAW 48, C-bit 51, the quirk
    /// enabled, 1G huge pages, one vCPU, no events.
    pub const fn new(vm_type: VmType) -> VmConfig {
        VmConfig {
            vm_type,
            gpaw: Gpaw::Bits48,
            c_bit: 51,
            slot_zap_all_quirk: true,
            max_vcpus: 1,
            max_level: PageLevel::Size1G,
            private_max_level: vm_type.default_private_max_level(),
            event_capacity: 0,
            td_attributes: TdAttributes(0),
            asid: DEFAULT_SNP_ASID,
        }
    }

    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_vcpus == 0 || self.max_vcpus > MAX_VCPUS {
            return Err(ConfigError::VcpuCount(self.max_vcpus));
        }
        // The C-bit is an address bit above 4G and below the 52-bit limit of
        // x86 physical addresses (AMD APM vol. 2, 15.34.1). It may lie above
        // the guest's MAXPHYADDR (EPYC: C-bit 51 with 48 address bits).
        if self.vm_type == VmType::Snp && !(32..52).contains(&self.c_bit) {
            return Err(ConfigError::CBit(self.c_bit));
        }
        // ASID 0 is the hypervisor's: an RMP entry with ASID 0 is
        // hypervisor- or AMD-SP-owned (APM Table 15-35), so no guest runs
        // with it (`sev_asid_new()` starts at 1).
        if self.vm_type == VmType::Snp && self.asid == Asid::HYPERVISOR {
            return Err(ConfigError::Asid(self.asid.raw()));
        }
        Ok(())
    }

    /// Whether memslot move/delete zaps every root (`KVM_X86_QUIRK_SLOT_ZAP_ALL`
    /// in effect) rather than only the slot's leaves.
    pub const fn slot_zap_all(&self) -> bool {
        self.vm_type.honours_slot_zap_all_quirk() && self.slot_zap_all_quirk
    }
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig::new(VmType::Default)
    }
}

/// The ASID [`VmConfig::new`] gives an SNP guest: the first guest ASID.
pub const DEFAULT_SNP_ASID: Asid = match Asid::new(1) {
    Some(a) => a,
    None => unreachable!(),
};

/// The most vCPUs a VM may have (KVM_MAX_VCPUS on x86).
pub const MAX_VCPUS: u32 = 4096;

/// A refused [`VmConfig`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// `max_vcpus` is 0 or above [`MAX_VCPUS`].
    VcpuCount(u32),
    /// The SNP C-bit is not an address bit in 32..52.
    CBit(u8),
    /// ASID 0 for an SNP guest (0 means "hypervisor" in the RMP).
    Asid(u32),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::VcpuCount(n) => {
                write!(f, "max-vcpus={n} is out of range (1..={MAX_VCPUS})")
            }
            ConfigError::CBit(b) => write!(f, "c-bit={b} is not an address bit in 32..52"),
            ConfigError::Asid(a) => {
                write!(f, "asid={a} is the hypervisor's; SNP guests need 1..=1023")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in VmType::ALL {
            assert_eq!(t.name().parse::<VmType>(), Ok(t));
        }
    }

    #[test]
    fn unknown_name_is_refused() {
        let err = "sev".parse::<VmType>().unwrap_err();
        assert!(err.to_string().contains("'sev'"));
    }

    #[test]
    fn only_default_lacks_private_memory() {
        assert!(!VmType::Default.has_private_mem());
        assert!(VmType::SwProtected.has_private_mem());
        assert!(VmType::Tdx.has_private_mem());
        assert!(VmType::Snp.has_private_mem());
    }

    #[test]
    fn tdx_shared_bit_is_gpaw_minus_one() {
        for (gpaw, bit) in [(Gpaw::Bits48, 47), (Gpaw::Bits52, 51)] {
            let cfg = VmConfig {
                gpaw,
                ..VmConfig::new(VmType::Tdx)
            };
            let l = AliasLayout::new(&cfg);
            let shared = l.decode(Gpa::new((1 << bit) | 0x5123)).unwrap();
            assert_eq!(shared.alias, Alias::Shared);
            assert_eq!(shared.gfn, Gfn::new(5));
            assert_eq!(shared.offset, 0x123);
            assert_eq!(l.decode(Gpa::new(0x5000)).unwrap().alias, Alias::Private);
            assert_eq!(l.decode(Gpa::new(1 << gpaw.bits())), None);
            assert_eq!(l.max_gfn(), Gfn::new(1 << (bit - 12)));
            assert_eq!(
                l.encode(Gfn::new(5), Alias::Shared).raw(),
                (1 << bit) | 0x5000
            );
        }
    }

    #[test]
    fn snp_c_bit_marks_private() {
        let cfg = VmConfig {
            c_bit: 47,
            ..VmConfig::new(VmType::Snp)
        };
        cfg.validate().unwrap();
        let l = AliasLayout::new(&cfg);
        assert_eq!(
            l.decode(Gpa::new((1 << 47) | 0x1000)).unwrap().alias,
            Alias::Private
        );
        assert_eq!(l.decode(Gpa::new(0x1000)).unwrap().alias, Alias::Shared);
        assert_eq!(
            l.encode(Gfn::new(1), Alias::Private).raw(),
            (1 << 47) | 0x1000
        );
        let bad = VmConfig {
            c_bit: 12,
            ..VmConfig::new(VmType::Snp)
        };
        assert_eq!(bad.validate(), Err(ConfigError::CBit(12)));
        assert_eq!(VmConfig::new(VmType::Snp).asid.raw(), 1);
        let bad = VmConfig {
            asid: Asid::HYPERVISOR,
            ..VmConfig::new(VmType::Snp)
        };
        assert_eq!(bad.validate(), Err(ConfigError::Asid(0)));
        // Other types ignore it.
        let tdx = VmConfig {
            asid: Asid::HYPERVISOR,
            ..VmConfig::new(VmType::Tdx)
        };
        assert_eq!(tdx.validate(), Ok(()));
    }

    #[test]
    fn default_and_sw_protected_have_no_alias_bit() {
        let l = AliasLayout::new(&VmConfig::new(VmType::Default));
        assert_eq!(
            l.decode(Gpa::new(0x8000_0000)).unwrap().alias,
            Alias::Shared
        );
        let l = AliasLayout::new(&VmConfig::new(VmType::SwProtected));
        assert_eq!(
            l.decode(Gpa::new(0x8000_0000)).unwrap().alias,
            Alias::ByAttributes
        );
        assert_eq!(l.max_gfn(), Gfn::new(1 << 36));
    }

    #[test]
    fn only_default_vms_honour_the_slot_zap_quirk() {
        assert!(VmConfig::new(VmType::Default).slot_zap_all());
        for t in [VmType::SwProtected, VmType::Tdx, VmType::Snp] {
            assert!(!VmConfig::new(t).slot_zap_all());
        }
        let off = VmConfig {
            slot_zap_all_quirk: false,
            ..VmConfig::new(VmType::Default)
        };
        assert!(!off.slot_zap_all());
    }
}
