//! XSETBV in a TD: the instruction exits to the TDX module unconditionally,
//! and the module refuses with #GP(0) what the CPU would refuse and, on
//! top of that, any XCR0 bit outside the TD's XFAM.
//!
//! Oracles (TDX module 1.5, github intel/tdx-module branch tdx_1.5):
//! - `src/td_dispatcher/vm_exits/td_xsetbv.c`
//!   (`td_xsetbv_instruction_exit()`): ECX other than 0 is #GP(0); an
//!   XCR0 that `check_guest_xcr0_value()` refuses is #GP(0); otherwise the
//!   module writes XCR0 and the TD goes on.
//! - `src/common/helpers/helpers.c` (`check_guest_xcr0_value()`): the
//!   rules of [`xcr0_allowed`], after Intel SDM vol. 1, 13.3.
//!
//! QEMU hands XSETBV over after the checks that come before a VM exit on
//! hardware (#UD without CR4.OSXSAVE, #GP outside ring 0); a value the
//! module accepts goes on to QEMU's own checks and its write of XCR0,
//! which refuse nothing the module's checks let through.

use super::*;
use crate::hooks::gpr;

/// XCR0 (`ia32_xcr0_t`) bits the combination rules name.
mod xcr0 {
    pub const X87: u64 = 1 << 0;
    pub const SSE: u64 = 1 << 1;
    pub const AVX: u64 = 1 << 2;
    pub const OPMASK: u64 = 1 << 5;
    pub const ZMM_HI256: u64 = 1 << 6;
    pub const HI16_ZMM: u64 = 1 << 7;
    pub const XTILECFG: u64 = 1 << 17;
    pub const XTILEDATA: u64 = 1 << 18;
}

/// `check_guest_xcr0_value()`: whether XSETBV may write `value` to XCR0
/// when the CPU supports the XCR0 bits of `supported` (CPUID 0xD.0
/// EDX:EAX) and the TD has XFAM `xfam`.
pub fn xcr0_allowed(value: u64, supported: u64, xfam: u64) -> bool {
    use xcr0::*;
    let has = |bits: u64| value & bits == bits;
    let all_or_none = |bits: u64| value & bits == 0 || has(bits);
    value & !(supported & xfam) == 0
        && has(X87)
        && (!has(AVX) || has(SSE))
        && (!has(OPMASK) || has(AVX))
        && all_or_none(OPMASK | ZMM_HI256 | HI16_ZMM)
        && all_or_none(XTILECFG | XTILEDATA)
}

impl TdxModule {
    /// XSETBV in a launched TD (before launch, and with paging off in a TD
    /// without TDVF, it is the VMM's loader's and runs as QEMU runs it).
    pub(super) fn xsetbv_insn(&self, cx: &mut Ctx<'_>) -> InsnAction {
        if self.loader_runs(cx.regs) {
            return InsnAction::Decline;
        }
        let g = &cx.regs.gpr;
        let value = (g[gpr::RDX] & 0xffff_ffff) << 32 | (g[gpr::RAX] & 0xffff_ffff);
        let d0 = super::cpuid::cpu_of(cx.host)(0xd, 0);
        let supported = u64::from(d0[0]) | u64::from(d0[3]) << 32;
        if g[gpr::RCX] as u32 != 0 || !xcr0_allowed(value, supported, self.td_xfam(cx.host)) {
            self.stats.xsetbv_gps.fetch_add(1, Ordering::Relaxed);
            return gp0();
        }
        InsnAction::Decline
    }
}

#[cfg(test)]
mod tests {
    use super::xcr0::*;
    use super::*;

    /// A CPU with every XCR0 component TDX module 1.5 knows.
    const ALL: u64 = cpuid_table::XCR0_USER;

    #[test]
    fn xcr0_rules_are_the_modules() {
        // (value, XFAM, allowed): helpers.c's checks one at a time.
        let table = [
            (X87, ALL, true),
            (X87 | SSE, ALL, true),
            (X87 | SSE | AVX, ALL, true),
            (0, ALL, false),
            (SSE, ALL, false),
            (X87 | AVX, ALL, false),
            (X87 | SSE | AVX, X87 | SSE, false),
            (X87 | SSE | AVX | OPMASK | ZMM_HI256 | HI16_ZMM, ALL, true),
            (X87 | SSE | OPMASK | ZMM_HI256 | HI16_ZMM, ALL, false),
            (X87 | SSE | AVX | OPMASK, ALL, false),
            (X87 | SSE | AVX | ZMM_HI256 | HI16_ZMM, ALL, false),
            (X87 | SSE | AVX | HI16_ZMM, ALL, false),
            (X87 | SSE | XTILECFG | XTILEDATA, ALL, true),
            (X87 | SSE | XTILECFG, ALL, false),
            (X87 | SSE | XTILEDATA, ALL, false),
            (X87 | 1 << 9, ALL, true),
            (X87 | 1 << 9, X87 | SSE, false),
            // Supervisor components are IA32_XSS's, never XCR0's.
            (X87 | 1 << 8, ALL | 1 << 8, false),
            (X87 | 1 << 63, !0, false),
        ];
        for (value, xfam, want) in table {
            assert_eq!(
                xcr0_allowed(value, ALL, xfam),
                want,
                "XCR0 {value:#x}, XFAM {xfam:#x}"
            );
        }
        // What the CPU lacks is refused whatever XFAM says.
        assert!(!xcr0_allowed(X87 | SSE | AVX, X87 | SSE, ALL));
    }

    #[test]
    fn xsetbv_through_the_hook() {
        use crate::hooks::fake::{access, FakeHost, MEM};
        use crate::hooks::{Access, Regs};
        use crate::tdx::testutil::*;
        use cvmem_model::TdAttributes;

        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        // The fake CPU's CPUID 0xD.0 offers x87, AVX and MPX, no SSE.
        let host = FakeHost::new();
        let xsetbv = |ecx: u64, value: u64| {
            let mut regs = Regs {
                insn_len: 3,
                cr0: 0x8000_0031,
                cr4: 1 << 18,
                ..Regs::default()
            };
            regs.gpr[gpr::RCX] = ecx;
            regs.gpr[gpr::RAX] = value & 0xffff_ffff | 0xdead_0000_0000_0000;
            regs.gpr[gpr::RDX] = value >> 32;
            kvm.insn(0, Insn::Xsetbv, &mut regs, &host).0
        };
        assert_eq!(xsetbv(0, 0), InsnAction::Decline, "before launch");
        access(&kvm, 0x1000, Access::Read);
        // RAX's upper half is not XCR0's.
        assert_eq!(xsetbv(0, X87), InsnAction::Decline);
        assert_eq!(xsetbv(1 << 32, X87), InsnAction::Decline, "ECX, not RCX");
        assert_eq!(xsetbv(1, X87), gp0());
        assert_eq!(xsetbv(0, X87 | SSE), gp0(), "SSE: not the CPU's");
        assert_eq!(xsetbv(0, X87 | AVX), gp0(), "AVX without SSE");
        assert_eq!(xsetbv(0, 0), gp0(), "no x87");
        let tdx = kvm.flavour.as_any().downcast_ref::<TdxModule>().unwrap();
        assert_eq!(tdx.stats.xsetbv_gps.load(Ordering::Relaxed), 4);
    }
}
