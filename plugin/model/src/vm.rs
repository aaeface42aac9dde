//! VM types, with KVM's names (KVM_X86_DEFAULT_VM, KVM_X86_SW_PROTECTED_VM,
//! KVM_X86_TDX_VM, KVM_X86_SNP_VM in arch/x86/include/uapi/asm/kvm.h).

use std::fmt;
use std::str::FromStr;

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
}
