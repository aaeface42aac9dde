//! The TDX module's CPUID table and how TDH.MNG.INIT turns it, the CPU's
//! CPUID and the TD's parameters into the values a TD reads.
//!
//! Oracles (TDX module 1.5, github intel/tdx-module branch tdx_1.5):
//! - `include/auto_gen/cpuid_configurations.c`: [`CPUID_TABLE`] (the
//!   lookup table with its fixed-1 and fixed-0-or-dynamic bits, merged
//!   with the configurable table's config-direct and allow-direct bits),
//!   and the XFAM masks.
//! - `src/common/helpers/helpers.c` `complete_cpuid_handling()` (at
//!   TDH.SYS.INIT) and `src/vmm_dispatcher/api_calls/tdh_mng_init.c`
//!   `read_and_set_cpuid_configurations()`: the per-leaf computation in
//!   [`TdCpuid::new`].
//! - `src/td_dispatcher/vm_exits/td_cpuid.c` `td_cpuid_exit()`: what a
//!   CPUID does at run time ([`TdCpuid::answer`]).
//!
//! cvmem's "CPU" is QEMU's CPU model, and the VMM's CPUID configuration
//! (TD_PARAMS.CPUID_CONFIG, which QEMU fills from its CPU model and KVM
//! masks to the configurable bits) is that same model: so a bit the module
//! passes from the CPU or lets the VMM configure is QEMU's, and a feature
//! TCG lacks stays 0 where the module would refuse such a CPU.

/// One leaf (and sub-leaf) of the module's table; registers in EAX, EBX,
/// ECX, EDX order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuidEntry {
    /// The leaf.
    pub leaf: u32,
    /// The sub-leaf, or `None` where ECX is not an input.
    pub subleaf: Option<u32>,
    /// A CPUID of it always raises #VE.
    pub faulting: bool,
    /// Bits forced to 1.
    pub fixed1: [u32; 4],
    /// Bits forced to 0 or computed by the module.
    pub fixed0_or_dynamic: [u32; 4],
    /// Bits the VMM sets (CONFIG_DIRECT).
    pub config_direct: [u32; 4],
    /// Bits the VMM may clear (ALLOW_DIRECT).
    pub allow_direct: [u32; 4],
}

const fn c(
    leaf: u32,
    subleaf: Option<u32>,
    faulting: bool,
    fixed1: [u32; 4],
    fixed0_or_dynamic: [u32; 4],
    config_direct: [u32; 4],
    allow_direct: [u32; 4],
) -> CpuidEntry {
    CpuidEntry {
        leaf,
        subleaf,
        faulting,
        fixed1,
        fixed0_or_dynamic,
        config_direct,
        allow_direct,
    }
}

/// TDX module 1.5 `cpuid_lookup[]` with `cpuid_configurable[]` merged in,
/// sorted by leaf and sub-leaf. A leaf or sub-leaf that is not here raises
/// #VE (exit reason 10).
#[rustfmt::skip]
pub const CPUID_TABLE: [CpuidEntry; 64] = [
    c(0x0, None, false, [0x00000023, 0x00000000, 0x00000000, 0x00000000], [0xffffffdc, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x1, None, false, [0x00000000, 0x00000000, 0x80000000, 0x00000200], [0xf000c000, 0xff0000ff, 0x08010060, 0x40120400], [0x0fff3fff, 0x00ff0000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x31044d88, 0xb8440000]),
    c(0x3, None, false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x4, Some(0x0), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00003c00, 0x00000000, 0x00000000, 0x00000004], [0xffffc3ff, 0xfffff000, 0xffffffff, 0xfffffffb], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x4, Some(0x1), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00003c00, 0x00000000, 0x00000000, 0x00000004], [0xffffc3ff, 0xfffff000, 0xffffffff, 0xfffffffb], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x4, Some(0x2), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00003c00, 0x00000000, 0x00000000, 0x00000004], [0xffffc3ff, 0xfffff000, 0xffffffff, 0xfffffffb], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x4, Some(0x3), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00003c00, 0x00000000, 0x00000000, 0xfffffff8], [0xffffc3ff, 0xfffff000, 0xffffffff, 0x00000007], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x4, Some(0x4), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x5, None, false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0xffff0000, 0xffff0000, 0xfffffffc, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x6, None, true, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x7, Some(0x0), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00404006, 0x643e8010, 0x002298c3], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0xdc2b9b18, 0x02417f65, 0x0005411c]),
    c(0x7, Some(0x1), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0xffffe2cf, 0xffffffff, 0xffffffff, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00001d30, 0x00000000, 0x00000000, 0x00000000]),
    c(0x7, Some(0x2), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffc0], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000028]),
    c(0x8, None, false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0xa, None, false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0xffff6000], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0xd, Some(0x0), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0xfff9fd18, 0xffffffff, 0x00000000, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0xd, Some(0x1), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0xffffffe0, 0xffffffff, 0xffff26ff, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0xd, Some(0x2), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0xd, Some(0x3), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0xd, Some(0x4), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0xd, Some(0x5), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0xd, Some(0x6), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0xd, Some(0x7), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0xd, Some(0x8), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0xd, Some(0x9), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0xd, Some(0xa), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0xd, Some(0xb), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0xd, Some(0xc), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0xd, Some(0xd), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0xd, Some(0xe), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0xd, Some(0xf), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0xd, Some(0x10), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0xd, Some(0x11), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0xd, Some(0x12), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0xe, None, false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x11, None, false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x12, None, false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x13, None, false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x14, Some(0x0), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0xfffffe00, 0x7ffffff0, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x14, Some(0x1), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x0000fff8, 0x00000000, 0xffffffff, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x15, None, false, [0x00000001, 0x00000000, 0x017d7840, 0x00000000], [0xfffffffe, 0x00000000, 0xfe8287bf, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x19, None, false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0xfffffff8, 0xffffffeb, 0xfffffffd, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x1c, None, false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x000000ff, 0x00000000, 0x00000000, 0x00000000]),
    c(0x1d, Some(0x0), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x1d, Some(0x1), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x1e, None, false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x1f, Some(0x0), true, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x1f, Some(0x1), true, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x1f, Some(0x2), true, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x1f, Some(0x3), true, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x1f, Some(0x4), true, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x1f, Some(0x5), true, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x20, None, false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x21, Some(0x0), false, [0x00000000, 0x65746e49, 0x20202020, 0x5844546c], [0xffffffff, 0x9a8b91b6, 0xdfdfdfdf, 0xa7bbab93], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x22, None, false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x23, Some(0x0), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0xfffffff0, 0x00000000, 0xffffffff, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x0000000f, 0x00000000, 0x00000000, 0x00000000]),
    c(0x23, Some(0x1), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0xffffffff, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x23, Some(0x2), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x23, Some(0x3), false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0xffffffff, 0xffffffff, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x80000000, None, false, [0x80000008, 0x00000000, 0x00000000, 0x00000000], [0x7ffffff7, 0xffffffff, 0xffffffff, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x80000001, None, false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0xffffffff, 0xffffffff, 0xfffffede, 0xd3efffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x80000006, None, true, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x80000007, None, false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0xffffffff, 0xffffffff, 0xffffffff, 0xfffffeff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000, 0x00000000, 0x00000000]),
    c(0x80000008, None, false, [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0xffff0000, 0xfffffdff, 0xffffffff, 0xffffffff], [0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000200, 0x00000000, 0x00000000]),
];

/// `CPUID_LAST_BASE_LEAF`: the last leaf of the virtual basic range.
pub const LAST_BASE_LEAF: u32 = 0x23;
/// `CPUID_LAST_EXTENDED_LEAF`: the least extended maximum the module
/// accepts of a CPU.
pub const LAST_EXTENDED_LEAF: u32 = 0x8000_0008;
/// The hypervisor range, never remapped (`CPUID_RESERVED_START/END`).
pub const RESERVED: std::ops::RangeInclusive<u32> = 0x4000_0000..=0x4fff_ffff;

/// XFAM bits that clear CPUID bits when they are 0: (XFAM bit, [EAX, EBX,
/// ECX, EDX]) (`xfam_mask_0x1_0xffffffff` ... `xfam_mask_0xd_0x1`).
pub mod xfam_masks {
    #![allow(missing_docs)]
    pub const LEAF_1: &[(u32, [u32; 4])] = &[(2, [0, 0, 0x3000_1000, 0])];
    pub const LEAF_7_0: &[(u32, [u32; 4])] = &[
        (2, [0, 0x20, 0x600, 0]),
        (5, [0, 0xdc23_0000, 0x5842, 0x0080_010c]),
        (6, [0, 0xdc23_0000, 0x5842, 0x0080_010c]),
        (7, [0, 0xdc23_0000, 0x5842, 0x0080_010c]),
        (8, [0, 0x0200_0000, 0, 0]),
        (9, [0, 0, 0x8, 0]),
        (11, [0, 0, 0x80, 0x0010_0000]),
        (12, [0, 0, 0x80, 0x0010_0000]),
        (14, [0, 0, 0, 0x20]),
        (15, [0, 0, 0, 0x0008_0000]),
        (17, [0, 0, 0, 0x0340_0000]),
        (18, [0, 0, 0, 0x0340_0000]),
    ];
    pub const LEAF_7_1: &[(u32, [u32; 4])] = &[
        (5, [0x30, 0, 0, 0]),
        (6, [0x30, 0, 0, 0]),
        (7, [0x30, 0, 0, 0]),
    ];
    pub const LEAF_D_0: &[(u32, [u32; 4])] = &[
        (2, [0x4, 0, 0, 0]),
        (5, [0xe0, 0, 0, 0]),
        (6, [0xe0, 0, 0, 0]),
        (7, [0xe0, 0, 0, 0]),
        (9, [0x200, 0, 0, 0]),
        (17, [0x0006_0000, 0, 0, 0]),
        (18, [0x0006_0000, 0, 0, 0]),
    ];
    pub const LEAF_D_1: &[(u32, [u32; 4])] = &[
        (8, [0, 0, 0x100, 0]),
        (11, [0, 0, 0x1800, 0]),
        (12, [0, 0, 0x1800, 0]),
        (14, [0, 0, 0x4000, 0]),
        (15, [0, 0, 0x8000, 0]),
    ];
}

/// Bits of the fixed-0-or-dynamic masks that are dynamic: computed by the
/// module at TDH.MNG.INIT or at each CPUID rather than forced to 0
/// (leaf, sub-leaf, [EAX, EBX, ECX, EDX]): leaf 1's initial APIC ID and
/// OSXSAVE, 7.0's OSPKE, 0xD.0/0xD.1 EBX (the XSAVE area size for the
/// current XCR0/XSS), 0x15 EBX (TSC_FREQUENCY), 0x80000001 EDX.SYSCALL.
/// For the generated views and the tests (`tables.rs`).
#[cfg(test)]
pub const DYNAMIC: &[(u32, Option<u32>, [u32; 4])] = &[
    (1, None, [0, 0xff00_0000, 1 << 27, 0]),
    (7, Some(0), [0, 0, 1 << 4, 0]),
    (0xd, Some(0), [0, 0xffff_ffff, 0, 0]),
    (0xd, Some(1), [0, 0xffff_ffff, 0, 0]),
    (0x15, None, [0, 0xffff_ffff, 0, 0]),
    (0x8000_0001, None, [0, 0, 0, 1 << 11]),
];

/// The dynamic bits of `e` ([`DYNAMIC`]).
#[cfg(test)]
pub fn dynamic_bits(e: &CpuidEntry) -> [u32; 4] {
    DYNAMIC
        .iter()
        .find(|d| d.0 == e.leaf && d.1 == e.subleaf)
        .map_or([0; 4], |d| d.2)
}

/// `XCR0_USER_BIT_MASK` and `XCR0_SUPERVISOR_BIT_MASK` (x86_defs.h): the
/// XSAVE components the module knows.
pub const XCR0_USER: u64 = 0x0006_02ff;
pub const XCR0_SUPERVISOR: u64 = 0x0001_fd00;

/// The table index of `leaf`.`subleaf` (`get_cpuid_lookup_entry()`).
pub fn lookup(leaf: u32, subleaf: u32) -> Option<usize> {
    CPUID_TABLE
        .iter()
        .position(|e| e.leaf == leaf && e.subleaf.is_none_or(|s| s == subleaf))
}

fn apply_xfam_masks(v: &mut [u32; 4], xfam: u64, masks: &[(u32, [u32; 4])]) {
    for (bit, m) in masks {
        if xfam & (1 << bit) == 0 {
            for i in 0..4 {
                v[i] &= !m[i];
            }
        }
    }
}

/// The TD's parameters the CPUID values depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TdParams {
    /// TD ATTRIBUTES.
    pub attributes: u64,
    /// XFAM.
    pub xfam: u64,
    /// TSC_FREQUENCY, in units of 25 MHz.
    pub tsc_frequency: u32,
}

/// The XFAM a TD gets: every XSAVE component QEMU's CPU model supports
/// that the module knows, as QEMU's tdx-guest configures it from the CPU
/// model (x87 and SSE are always there).
pub fn xfam_of(cpu: &dyn Fn(u32, u32) -> [u32; 4]) -> u64 {
    let d0 = cpu(0xd, 0);
    let d1 = cpu(0xd, 1);
    let xcr0 = u64::from(d0[0]) | (u64::from(d0[3]) << 32);
    let xss = u64::from(d1[2]) | (u64::from(d1[3]) << 32);
    (xcr0 & XCR0_USER) | (xss & XCR0_SUPERVISOR) | 0b11
}

/// `TDX_XFAM_FIXED0` (td_control_structures.h): the XFAM bits a TD may
/// have: x87, SSE, AVX, AVX-512 (5-7), PT, PK, CET (11, 12), ULI, LBR and
/// AMX (17, 18).
pub const XFAM_FIXED0: u64 = 0x0006_dbe7;
/// `TDX_XFAM_FIXED1`: x87 and SSE.
pub const XFAM_FIXED1: u64 = 0b11;

/// The name of XFAM (XCR0/IA32_XSS) bit `bit`.
pub fn xfam_bit_name(bit: u32) -> &'static str {
    match bit {
        0 => "x87",
        1 => "SSE",
        2 => "AVX",
        3 => "MPX BNDREGS",
        4 => "MPX BNDCSR",
        5 => "AVX-512 opmask",
        6 => "AVX-512 ZMM_Hi256",
        7 => "AVX-512 Hi16_ZMM",
        8 => "PT",
        9 => "PK",
        10 => "PASID",
        11 => "CET_U",
        12 => "CET_S",
        13 => "HDC",
        14 => "ULI",
        15 => "LBR",
        16 => "HWP",
        17 => "AMX XTILECFG",
        18 => "AMX XTILEDATA",
        _ => "reserved",
    }
}

/// TDH.MNG.INIT's `check_xfam()` without the CPU: every bit allowed by
/// XFAM_FIXED0, x87 and SSE set, AVX-512's three components together and
/// with AVX, CET_U with CET_S, AMX's two together. `Err`: one line.
pub fn check_xfam(xfam: u64) -> Result<(), String> {
    let bits = |m: u64| (0..64).filter(move |b| m & (1 << b) != 0);
    if let Some(b) = bits(xfam & !XFAM_FIXED0).next() {
        return Err(format!(
            "XFAM {xfam:#x}: bit {b} ({}) is fixed 0 in the TDX module",
            xfam_bit_name(b)
        ));
    }
    if xfam & XFAM_FIXED1 != XFAM_FIXED1 {
        return Err(format!(
            "XFAM {xfam:#x}: bits 0 and 1 (x87, SSE) are fixed 1 in the TDX module"
        ));
    }
    let has = |b: u32| xfam & (1 << b) != 0;
    let all_or_none = |bs: &[u32]| bs.iter().all(|&b| has(b)) || !bs.iter().any(|&b| has(b));
    if !all_or_none(&[5, 6, 7]) || (has(5) && !has(2)) {
        return Err(format!(
            "XFAM {xfam:#x}: AVX-512 needs bits 5, 6 and 7 together, and AVX (bit 2)"
        ));
    }
    if !all_or_none(&[11, 12]) {
        return Err(format!("XFAM {xfam:#x}: CET needs bits 11 and 12 together"));
    }
    if !all_or_none(&[17, 18]) {
        return Err(format!("XFAM {xfam:#x}: AMX needs bits 17 and 18 together"));
    }
    Ok(())
}

/// The state components of `xfam` the CPU (QEMU's CPU model) lacks:
/// `check_xfam()` takes XCR0 and IA32_XSS as TDH.SYS.INIT found them
/// supported (CPUID 0xD.0 EDX:EAX, 0xD.1 EDX:ECX). `Err`: one line.
pub fn check_xfam_cpu(xfam: u64, cpu: &dyn Fn(u32, u32) -> [u32; 4]) -> Result<(), String> {
    let d0 = cpu(0xd, 0);
    let d1 = cpu(0xd, 1);
    let supported = (u64::from(d0[0]) | (u64::from(d0[3]) << 32))
        | (u64::from(d1[2]) | (u64::from(d1[3]) << 32));
    let missing = xfam & !supported;
    let names: Vec<String> = (0..64u32)
        .filter(|b| missing & (1 << b) != 0)
        .map(|b| format!("{b} ({})", xfam_bit_name(b)))
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    Err(format!(
        "xfam={xfam:#x}: QEMU's CPU model has no XSAVE state component {}, which a TDX \
         host would need: drop it from xfam=",
        names.join(", ")
    ))
}

/// The XSAVE area size (standard format) for the user components of
/// `xfam`: what CPUID(0xD,0).EBX says with XCR0 = those components
/// (`calculate_xsave_area_max_size()`), from the components' offsets and
/// sizes in CPUID(0xD,n).
pub fn xsave_size(xfam: u64, cpu: &dyn Fn(u32, u32) -> [u32; 4]) -> u32 {
    (2..=18u32)
        .filter(|&i| xfam & XCR0_USER & (1 << i) != 0)
        .map(|i| {
            let r = cpu(0xd, i);
            r[1].saturating_add(r[0])
        })
        .fold(576, u32::max)
}

/// The TD's CPUID values for every table entry, as TDH.MNG.INIT leaves
/// them in the TDCS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdCpuid {
    /// Per [`CPUID_TABLE`] entry.
    pub values: Vec<[u32; 4]>,
    /// CPUID(0x80000000).EAX of the CPU (`cpuid_last_extended_leaf`).
    pub last_extended_leaf: u32,
}

impl TdCpuid {
    /// The values over the CPU `cpu` (which answers 0 for leaves above its
    /// maximum, as the module's CPU has every leaf of the table), with
    /// the VMM's configuration equal to the CPU's.
    pub fn new(td: &TdParams, cpu: &dyn Fn(u32, u32) -> [u32; 4]) -> TdCpuid {
        let bit = |v: u32, n: u32| v & (1 << n) != 0;
        let xfam = td.xfam;
        let mut monitor = false;
        let mut la57 = false;
        let values = CPUID_TABLE
            .iter()
            .map(|e| {
                let native = cpu(e.leaf, e.subleaf.unwrap_or(0));
                // complete_cpuid_handling() at TDH.SYS.INIT.
                let mut v = [0u32; 4];
                for i in 0..4 {
                    v[i] = (native[i] & !e.fixed0_or_dynamic[i]) | e.fixed1[i];
                }
                // The configurable bits: QEMU's configuration, masked by
                // KVM to what the module lets it configure.
                for i in 0..4 {
                    let config = native[i] & (e.config_direct[i] | e.allow_direct[i]);
                    v[i] &= !e.fixed0_or_dynamic[i];
                    v[i] |= e.fixed1[i];
                    v[i] = (v[i] & !e.config_direct[i]) | (config & e.config_direct[i]);
                    v[i] &= config | !e.allow_direct[i];
                }
                match (e.leaf, e.subleaf) {
                    (1, _) => {
                        if xfam & (1 << 2) == 0 {
                            apply_xfam_masks(&mut v, xfam, xfam_masks::LEAF_1);
                        }
                        monitor = bit(v[2], 3);
                    }
                    (5, _) if !monitor => v = [0; 4],
                    (7, Some(0)) => {
                        apply_xfam_masks(&mut v, xfam, xfam_masks::LEAF_7_0);
                        // ECX.PKS (31) reflects ATTRIBUTES.PKS (30);
                        // ECX.KL_SUPPORTED (23) is 0.
                        v[2] &= !((1 << 31) | (1 << 23));
                        if td.attributes & (1 << 30) != 0 {
                            v[2] |= 1 << 31;
                        }
                        la57 = bit(v[2], 16);
                    }
                    (7, Some(1)) => apply_xfam_masks(&mut v, xfam, xfam_masks::LEAF_7_1),
                    // ALLOW_PERFMON: the native values only with PERFMON.
                    (0xa, _) if td.attributes & (1 << 63) == 0 => v = [0; 4],
                    (0xd, Some(0)) => {
                        apply_xfam_masks(&mut v, xfam, xfam_masks::LEAF_D_0);
                        v[2] = xsave_size(xfam, cpu);
                    }
                    (0xd, Some(1)) => apply_xfam_masks(&mut v, xfam, xfam_masks::LEAF_D_1),
                    (0xd, Some(n)) if xfam & (1u64 << n) == 0 => v = [0; 4],
                    (0x14, _) if xfam & (1 << 8) == 0 => v = [0; 4],
                    // EAX = 1 and ECX = 25 MHz are fixed, so EBX is the
                    // TSC frequency in units of 25 MHz.
                    (0x15, _) => v[1] = td.tsc_frequency,
                    // Key Locker.
                    (0x19, _) => v = [0; 4],
                    (0x1c, _) if xfam & (1 << 15) == 0 => v = [0; 4],
                    (0x1d, _) if xfam & (0b11 << 17) != 0b11 << 17 => v = [0; 4],
                    (0x8000_0008, _) => {
                        v[0] = (v[0] & !0xff00) | (if la57 { 57 } else { 48 } << 8);
                    }
                    _ => {}
                }
                v
            })
            .collect();
        TdCpuid {
            values,
            // The module refuses a CPU with less (TDH.SYS.INIT), as cvmem
            // refuses such a CPU model (machine.rs).
            last_extended_leaf: cpu(0x8000_0000, 0)[0].max(LAST_EXTENDED_LEAF),
        }
    }

    /// `td_cpuid_exit()`: the table index a CPUID of `leaf`.`subleaf`
    /// reads, or `None` for a #VE. A leaf above its range's maximum reads
    /// the last basic leaf, outside the hypervisor range.
    pub fn index(&self, leaf: u32, subleaf: u32) -> Option<usize> {
        lookup(self.resolve(leaf), subleaf).filter(|&i| !CPUID_TABLE[i].faulting)
    }

    /// The leaf a CPUID of `leaf` reads: one above its range's maximum
    /// reads the last basic leaf, outside the hypervisor range.
    pub fn resolve(&self, leaf: u32) -> u32 {
        if !RESERVED.contains(&leaf)
            && (leaf > self.last_extended_leaf || (LAST_BASE_LEAF + 1..0x8000_0000).contains(&leaf))
        {
            LAST_BASE_LEAF
        } else {
            leaf
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_its_masks_disjoint() {
        for w in CPUID_TABLE.windows(2) {
            let key = |e: &CpuidEntry| (e.leaf, e.subleaf.unwrap_or(0));
            assert!(key(&w[0]) < key(&w[1]), "{:#x}", w[1].leaf);
        }
        for e in &CPUID_TABLE {
            for i in 0..4 {
                // "The bits in the lookup tables are mutually exclusive".
                let masks = [
                    e.fixed1[i],
                    e.fixed0_or_dynamic[i],
                    e.config_direct[i],
                    e.allow_direct[i],
                ];
                for a in 0..4 {
                    for b in a + 1..4 {
                        assert_eq!(masks[a] & masks[b], 0, "{:#x} reg {i}", e.leaf);
                    }
                }
            }
        }
        assert_eq!(lookup(0, 7), lookup(0, 0), "leaf 0 has no sub-leaves");
        assert_eq!(lookup(4, 5), None);
        assert_eq!(lookup(0xb, 0), None);
    }

    /// Over a CPU that sets every bit, every value has its fixed-1 bits and
    /// none of its fixed-0 bits but the dynamic ones.
    #[test]
    fn fixed_bits_hold_over_a_cpu_of_all_ones() {
        let ones = |_, _| [u32::MAX; 4];
        for xfam in [0b11, 0b111, XCR0_USER | XCR0_SUPERVISOR] {
            let td = TdParams {
                attributes: 0,
                xfam,
                tsc_frequency: 0,
            };
            let t = TdCpuid::new(&td, &ones);
            for (e, v) in CPUID_TABLE.iter().zip(&t.values) {
                let dynamic = dynamic_bits(e);
                for i in 0..4 {
                    assert_eq!(v[i] & e.fixed1[i], e.fixed1[i], "{:#x} reg {i}", e.leaf);
                    assert_eq!(
                        v[i] & e.fixed0_or_dynamic[i] & !dynamic[i],
                        0,
                        "{:#x}.{:?} reg {i}",
                        e.leaf,
                        e.subleaf
                    );
                }
            }
            let v = |leaf, sub| t.values[lookup(leaf, sub).unwrap()];
            assert_eq!(v(0, 0)[0], LAST_BASE_LEAF);
            // XFAM masks: AVX (bit 2) decides leaf 1 ECX.AVX/FMA/F16C and
            // 0xD.0 EAX bit 2; a component's sub-leaf is 0 without it.
            assert_eq!(v(1, 0)[2] & 0x3000_1000 != 0, xfam & 4 != 0);
            assert_eq!(v(0xd, 0)[0] & 4 != 0, xfam & 4 != 0);
            assert_eq!(v(0xd, 2) != [0; 4], xfam & 4 != 0);
            // Without PERFMON leaf 0xA is 0; PT (XFAM 8) gates 0x14.
            assert_eq!(v(0xa, 0), [0; 4]);
            assert_eq!(v(0x14, 0) != [0; 4], xfam & (1 << 8) != 0);
        }
    }

    #[test]
    fn configurable_bits_follow_the_cpu_and_leaves_remap() {
        // A CPU with nothing set: only fixed-1 bits remain.
        let zero = |leaf: u32, _| {
            if leaf == 0x8000_0000 {
                [0x8000_0008, 0, 0, 0]
            } else {
                [0; 4]
            }
        };
        let td = TdParams {
            attributes: 0,
            xfam: 0b11,
            tsc_frequency: 0,
        };
        let t = TdCpuid::new(&td, &zero);
        for (e, v) in CPUID_TABLE.iter().zip(&t.values) {
            let mut want = e.fixed1;
            if (e.leaf, e.subleaf) == (0xd, Some(0)) {
                want[2] = 576; // the legacy area and header
            }
            if e.leaf == 0x8000_0008 {
                want[0] |= 48 << 8;
            }
            assert_eq!(*v, want, "{:#x}.{:?}", e.leaf, e.subleaf);
        }
        assert_eq!(t.index(0x24, 0), lookup(LAST_BASE_LEAF, 0));
        assert_eq!(t.index(0x8000_0009, 0), lookup(LAST_BASE_LEAF, 0));
        assert_eq!(
            t.index(0x4000_0000, 0),
            None,
            "the hypervisor range is the VMM's"
        );
        assert_eq!(t.index(6, 0), None, "faulting");
        assert_eq!(t.index(0x8000_0007, 0), lookup(0x8000_0007, 0));
    }
}
