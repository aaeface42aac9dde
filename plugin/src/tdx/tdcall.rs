//! TDCALL: the TDX module's leaves a TD calls (TDG.VP.INFO, TDG.MEM.PAGE.ACCEPT,
//! TDG.VM.RD/WR, TDG.SYS.RD); TDG.VP.VMCALL is in `tdvmcall.rs`, the
//! measurement leaves in `report.rs`, TDG.VP.VEINFO.GET in `ve.rs`.

use super::*;
use crate::effects::Effects;
use crate::hooks::{gpr, InsnAction, Regs};
use crate::vmm::Vmm;
use cvmem_model::{AcceptOutcome, Alias, BackingAddr, Gpa, SeptState, VcpuId};
use std::sync::atomic::Ordering;

impl TdxModule {
    /// A TDCALL from `vcpu`.
    pub fn tdcall(&self, cx: &mut Ctx<'_>) -> InsnAction {
        self.stats.tdcalls.fetch_add(1, Ordering::Relaxed);
        // By leaf, whatever its version (TDG.VM.RD version 1 counts as VM.RD).
        let by_leaf = cx.regs.gpr[gpr::RAX] & !(0xff << 16);
        if let Some(c) = self.stats.by_leaf.get(by_leaf as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if cx.regs.cpl != 0 {
            return gp0();
        }
        let (vmm, vcpu, host) = (cx.vmm, cx.vcpu, cx.host);
        self.ensure_launched(vmm);
        self.vcpu_enter(vcpu, host);
        let rax = cx.regs.gpr[gpr::RAX];
        // RAX bits 15:0 the leaf, 23:16 its version, 63:24 reserved; only
        // TDG.VM.RD has a version above 0 (tdx_td_dispatcher.c).
        let (rax, version) = (rax & 0xffff, (rax >> 16) & 0xff);
        if cx.regs.gpr[gpr::RAX] >> 24 != 0 || (version > 0 && rax != leaf::VM_RD) {
            cx.regs.gpr[gpr::RAX] = operand_invalid(status::OPERAND_RAX);
            return InsnAction::Done;
        }
        let regs = &mut *cx.regs;
        let st = match rax {
            leaf::VP_VMCALL => return self.vp_vmcall(cx),
            leaf::VP_INFO => self.vp_info(vmm, vcpu, regs),
            leaf::MR_RTMR_EXTEND => self.rtmr_extend(vmm, regs, host),
            leaf::VP_VEINFO_GET => self.veinfo_get(vcpu, regs),
            leaf::MR_REPORT => self.mr_report(vmm, regs, host),
            leaf::VP_CPUIDVE_SET => self.cpuidve_set(vcpu, regs.gpr[gpr::RCX]),
            leaf::MEM_PAGE_ACCEPT => {
                let rcx = regs.gpr[gpr::RCX];
                match self.accept(vmm, vcpu, rcx, &mut cx.fx) {
                    Ok(st) => st,
                    Err(action) => return action,
                }
            }
            leaf::VM_RD => self.vm_rd_wr(vmm, host, regs, false, version),
            leaf::VM_WR => self.vm_rd_wr(vmm, host, regs, true, 0),
            leaf::VP_RD => self.vp_rd_wr(vcpu, regs, false),
            leaf::VP_WR => self.vp_rd_wr(vcpu, regs, true),
            leaf::SYS_RD => {
                if regs.gpr[gpr::RDX] == field::TDX_FEATURES0 {
                    // The optional features cvmem implements.
                    regs.gpr[gpr::R8] = field::TDX_FEATURES0_TDG_VP_RDWR
                        | field::TDX_FEATURES0_CPUID_VIRT_GUEST_CTRL
                        | field::TDX_FEATURES0_VE_REDUCTION;
                    0
                } else {
                    status::METADATA_FIELD_ID_INCORRECT
                }
            }
            _ => operand_invalid(status::OPERAND_RAX),
        };
        cx.regs.gpr[gpr::RAX] = st;
        InsnAction::Done
    }

    pub(super) fn vp_info(&self, vmm: &Vmm, vcpu: u32, regs: &mut Regs) -> u64 {
        let Some(info) = vmm.vm().tdx_vp_info(VcpuId(vcpu)) else {
            return operand_invalid(status::OPERAND_RAX);
        };
        regs.gpr[gpr::RCX] = info.rcx;
        regs.gpr[gpr::RDX] = info.rdx;
        regs.gpr[gpr::R8] = info.r8;
        regs.gpr[gpr::R9] = info.r9;
        regs.gpr[gpr::R10] = info.r10;
        regs.gpr[gpr::R11] = info.r11;
        0
    }

    /// The QEMU address of the private, accepted page holding `gpa` (which
    /// must not have the shared bit), for the module's own memory operands.
    pub(super) fn private_operand(&self, vmm: &Vmm, gpa: u64) -> Option<BackingAddr> {
        let vm = vmm.vm();
        let d = vm.decode(Gpa::new(gpa))?;
        if d.alias == Alias::Shared
            || !vm.is_private(d.gfn)
            || vm.tdx_sept_state(d.gfn).0 != SeptState::Mapped
        {
            return None;
        }
        vmm.backing_of(d.gfn)?.checked_add(d.offset)
    }

    /// TDG.MEM.PAGE.ACCEPT with RCX = GPA | level. The module's TD exit for
    /// a page that is not there yet is handled as KVM handles it (map and
    /// AUG), then the TDCALL runs again. `Ok`: the status; `Err`: an
    /// exception instead. The effects of every exit go to `fx`.
    pub(super) fn accept(
        &self,
        vmm: &Vmm,
        vcpu: u32,
        rcx: u64,
        fx: &mut Effects,
    ) -> Result<u64, InsnAction> {
        let vm = vmm.vm();
        let id = VcpuId(vcpu);
        // Each round either completes or maps one more piece; a few rounds
        // cover AUG after an implicit conversion.
        for _ in 0..4 {
            match vm.tdx_accept(id, rcx) {
                AcceptOutcome::Accepted { range } => {
                    self.stats.accepts.fetch_add(range.len(), Ordering::Relaxed);
                    // The module zeroes accepted pages (init_sept_4k_page()).
                    fx.clear.extend(vmm.backing_ranges(range));
                    return Ok(0);
                }
                AcceptOutcome::Status(st) => return Ok(st.0),
                AcceptOutcome::ExitToHost { gpa, .. } => {
                    if let Err(fault) = vm.tdx_handle_accept_exit(id, gpa) {
                        vmm.accept_exit_fault(self, vcpu, fault, fx)?;
                    }
                }
            }
        }
        vmm.stop(format!(
            "TDG.MEM.PAGE.ACCEPT of {rcx:#x} on vCPU {vcpu} made no progress in 4 exits"
        ));
        Err(InsnAction::Stop)
    }

    /// TDG.VP.CPUIDVE.SET (`tdg_vp_cpuidve_set.c`): RCX bit 0 makes every
    /// CPUID at CPL 0 raise #VE, bit 1 every CPUID above; other bits are
    /// TDX_OPERAND_INVALID.
    pub(super) fn cpuidve_set(&self, vcpu: u32, rcx: u64) -> u64 {
        if rcx & !0b11 != 0 {
            return operand_invalid(status::OPERAND_RCX);
        }
        match self.vcpus.get(vcpu as usize) {
            Some(v) => {
                let mut v = v.lock();
                v.cpuid_supervisor_ve = (rcx & 1) as u8;
                v.cpuid_user_ve = ((rcx >> 1) & 1) as u8;
                0
            }
            None => operand_invalid(status::OPERAND_RAX),
        }
    }

    /// TD_CTLS: PENDING_VE_DISABLE is ATTRIBUTES.SEPT_VE_DISABLE, as
    /// TDH.MNG.INIT sets it (`tdh_mng_init.c`), and stays so (no
    /// CONFIG_FLAGS.FLEXIBLE_PENDING_VE); the rest is what the guest wrote.
    pub(super) fn td_ctls(&self, vmm: &Vmm) -> u64 {
        let pending_ve_disable = if vmm.vm().config().td_attributes.sept_ve_disable() {
            field::TD_CTLS_PENDING_VE_DISABLE
        } else {
            0
        };
        self.td_ctls.load(Ordering::Relaxed) | pending_ve_disable
    }

    /// A guest write of TD_CTLS (`md_td_write_element()`, metadata_td.c)
    /// with `writable` its guest write mask: the old value, or the status.
    /// A change to a bit the mask names but the guest may not write, or to
    /// PENDING_VE_DISABLE without CONFIG_FLAGS.FLEXIBLE_PENDING_VE, is
    /// TDX_METADATA_FIELD_VALUE_NOT_VALID; then the module's special write
    /// handling ([`td_ctls_write`]).
    pub(super) fn write_td_ctls(
        &self,
        vmm: &Vmm,
        value: u64,
        request: u64,
        writable: u64,
    ) -> Result<u64, u64> {
        let m = request & writable;
        // PENDING_VE_DISABLE: a mask may name it but its value may not
        // change; it is kept outside the cell.
        let fixed_mask = field::TD_CTLS_PENDING_VE_DISABLE;
        let fixed = self.td_ctls(vmm) & fixed_mask;
        // md_check_forbidden_bits_unchanged(): bits the mask names that the
        // guest may not write must keep their value.
        let forbidden = (request & !writable) | (m & fixed_mask);
        let updated = self
            .td_ctls
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |stored| {
                let old = stored | fixed;
                if (old ^ value) & forbidden != 0 {
                    return None;
                }
                let new = td_ctls_write(old, (old & !m) | (value & m))?;
                Some(new & !fixed_mask)
            });
        match updated {
            Ok(stored) => Ok(stored | fixed),
            Err(_) => Err(status::METADATA_FIELD_VALUE_NOT_VALID),
        }
    }
}

/// Whether the VMM configured every vCPU's x2APIC ID
/// (TDCS.TOPOLOGY_ENUM_CONFIGURED): KVM gives each vCPU its ID at
/// TDH.VP.INIT, so a KVM TD always has it.
pub(super) const TOPOLOGY_ENUM_CONFIGURED: bool = true;

/// The module's special write handling of TD_CTLS by a guest
/// (`md_td_write_element()`, case MD_TDCS_TD_CTLS_FIELD_ID, TDX module
/// releases with #VE reduction): with LOCK set nothing may change;
/// REDUCE_VE turns ENUM_TOPOLOGY and VIRT_CPUID2 on with it; ENUM_TOPOLOGY
/// needs TOPOLOGY_ENUM_CONFIGURED. `None`: TDX_METADATA_FIELD_VALUE_NOT_VALID.
pub(super) fn td_ctls_write(old: u64, new: u64) -> Option<u64> {
    if old & field::TD_CTLS_LOCK != 0 {
        return (new == old).then_some(old);
    }
    let mut new = new;
    if new & field::TD_CTLS_REDUCE_VE != 0 {
        new |= field::TD_CTLS_ENUM_TOPOLOGY | field::TD_CTLS_VIRT_CPUID2;
    }
    if new & field::TD_CTLS_ENUM_TOPOLOGY != 0 && !TOPOLOGY_ENUM_CONFIGURED {
        return None;
    }
    if new & !field::TD_CTLS_GUEST_WRITABLE != 0 {
        return None;
    }
    Some(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Config;
    use crate::hooks::fake::report_ram;
    use crate::hooks::fake::{FakeHost, MEM};
    use crate::hooks::Host;
    use crate::hooks::{Access, Stage2Answer};
    use crate::kvm::Kvm;
    use crate::tdx::testutil::*;
    use cvmem_model::BackingAddr;
    use cvmem_model::{TdAttributes, VmType};
    #[test]
    fn accept_clears_and_reports_double_accept_and_size_mismatch() {
        let kvm = td(8 << 20, TdAttributes::SEPT_VE_DISABLE);
        let host = FakeHost::new();
        access(&kvm, 0x1000, Access::Read);
        host.phys_write(BackingAddr::new(0xa0_0000), &[0xaa; 64]);
        let r = call(&kvm, &host, leaf::MEM_PAGE_ACCEPT, &[(gpr::RCX, 0xa0_0000)]);
        assert_eq!(r.gpr[gpr::RAX], 0);
        let mut b = [0xffu8; 64];
        host.phys_read(BackingAddr::new(0xa0_0000), &mut b);
        assert_eq!(b, [0; 64], "accepted pages read zero");
        let r = call(&kvm, &host, leaf::MEM_PAGE_ACCEPT, &[(gpr::RCX, 0xa0_0000)]);
        assert_eq!(
            r.gpr[gpr::RAX] & 0xFFFF_FFFF_0000_0000,
            TdxStatus::PAGE_ALREADY_ACCEPTED.0
        );
        assert!(matches!(
            access(&kvm, 0xa0_0000, Access::Write),
            Stage2Answer::Allow { .. }
        ));
        // 2M over a region holding an accepted 4K page.
        let r = call(
            &kvm,
            &host,
            leaf::MEM_PAGE_ACCEPT,
            &[(gpr::RCX, 0xa0_0000 | 1)],
        );
        assert_eq!(
            r.gpr[gpr::RAX] & 0xFFFF_FFFF_0000_0000,
            TdxStatus::PAGE_SIZE_MISMATCH.0
        );
        // A fresh 2M region: KVM maps TDX private memory at 4K only, so
        // the module finds a 4K table there (Linux then accepts 4K pages).
        let r = call(
            &kvm,
            &host,
            leaf::MEM_PAGE_ACCEPT,
            &[(gpr::RCX, 0xc0_0000 | 1)],
        );
        assert_eq!(
            r.gpr[gpr::RAX],
            TdxStatus::PAGE_SIZE_MISMATCH.with_detail(1).0
        );
        // With 2M private mappings it accepts whole.
        let config = Config {
            vm_type: VmType::Tdx,
            accept: AcceptPolicy::Below(8 << 20),
            private_max_level: Some(cvmem_model::PageLevel::Size2M),
            ..Config::default()
        };
        let kvm = Kvm::new(&config, 1).unwrap();
        report_ram(&kvm);
        access(&kvm, 0x1000, Access::Read);
        host.phys_write(BackingAddr::new(0xdf_f000), &[1; 8]);
        let r = call(
            &kvm,
            &host,
            leaf::MEM_PAGE_ACCEPT,
            &[(gpr::RCX, 0xc0_0000 | 1)],
        );
        assert_eq!(r.gpr[gpr::RAX], 0);
        let mut b = [1u8; 8];
        host.phys_read(BackingAddr::new(0xdf_f000), &mut b);
        assert_eq!(b, [0; 8]);
        assert!(matches!(
            access(&kvm, 0xdf_f000, Access::Write),
            Stage2Answer::Allow { .. }
        ));
        // Misaligned and reserved operands.
        let r = call(&kvm, &host, leaf::MEM_PAGE_ACCEPT, &[(gpr::RCX, 0xe0_0800)]);
        assert!(TdxStatus(r.gpr[gpr::RAX]).is_error());
    }
    /// With strict=on, ACCEPT of a page the TD converted to shared is an
    /// exit to the VMM that QEMU answers with a conversion, as for strict=off:
    /// the module never raises #VE for ACCEPT (before, cvmem raised one on
    /// the TDCALL, and a #VE handler that retried the accept recursed).
    #[test]
    fn accept_of_a_shared_page_converts_under_strict_without_ve() {
        let config = Config {
            vm_type: VmType::Tdx,
            accept: AcceptPolicy::Below(MEM),
            td_attributes: TdAttributes(TdAttributes::SEPT_VE_DISABLE),
            strict: true,
            map_gpa_chunk: 2 << 20,
            ..Config::default()
        };
        let kvm = Kvm::new(&config, 1).unwrap();
        report_ram(&kvm);
        let host = FakeHost::new();
        access(&kvm, 0x1000, Access::Read);
        let r = vmcall(&kvm, &host, vmcall::MAP_GPA, &[SHARED | 0x40_0000, 0x1000]);
        assert_eq!(r.gpr[gpr::R10], 0);
        assert!(!kvm.vm().is_private(cvmem_model::Gfn::new(0x400)));
        // strict=on: the TD's own private access to it is a #VE.
        assert!(matches!(
            access(&kvm, 0x40_0000, Access::Read),
            Stage2Answer::Fault(f) if f.vector == crate::vmm::vector::VE
        ));
        let _ = call(&kvm, &host, leaf::VP_VEINFO_GET, &[]);
        // ACCEPT: converted back to private, then accepted.
        let r = call(&kvm, &host, leaf::MEM_PAGE_ACCEPT, &[(gpr::RCX, 0x40_0000)]);
        assert_eq!(r.gpr[gpr::RAX], 0);
        assert!(kvm.vm().is_private(cvmem_model::Gfn::new(0x400)));
        let stats = &kvm.flavour_as::<TdxModule>().stats;
        assert_eq!(
            stats.ves.load(Ordering::Relaxed),
            1,
            "only the access's #VE"
        );
        assert!(matches!(
            access(&kvm, 0x40_0000, Access::Read),
            Stage2Answer::Allow { .. }
        ));
    }
    #[test]
    fn metadata_fields() {
        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        let host = FakeHost::new();
        let rd = |f| call(&kvm, &host, leaf::VM_RD, &[(gpr::RDX, f)]);
        assert_eq!(rd(field::CONFIG_FLAGS).gpr[gpr::R8], 0, "48-bit GPAW");
        assert_eq!(rd(field::TOPOLOGY_ENUM_CONFIGURED).gpr[gpr::R8], 1);
        assert_eq!(
            rd(0x1234).gpr[gpr::RAX],
            status::METADATA_FIELD_ID_INCORRECT
        );
        let wr = |f, v, m| {
            call(
                &kvm,
                &host,
                leaf::VM_WR,
                &[(gpr::RDX, f), (gpr::R8, v), (gpr::R9, m)],
            )
        };
        // PENDING_VE_DISABLE follows ATTRIBUTES.SEPT_VE_DISABLE.
        let pending = field::TD_CTLS_PENDING_VE_DISABLE;
        let topology = field::TD_CTLS_ENUM_TOPOLOGY;
        assert_eq!(rd(field::TD_CTLS).gpr[gpr::R8], pending);
        // Bits the guest may not write must keep their value.
        let r = wr(field::TD_CTLS, u64::MAX, u64::MAX);
        assert_eq!(r.gpr[gpr::RAX], status::METADATA_FIELD_VALUE_NOT_VALID);
        let r = wr(field::TD_CTLS, topology, topology);
        assert_eq!((r.gpr[gpr::RAX], r.gpr[gpr::R8]), (0, pending));
        assert_eq!(rd(field::TD_CTLS).gpr[gpr::R8], pending | topology);
        // PENDING_VE_DISABLE may be named, not changed (no
        // FLEXIBLE_PENDING_VE).
        let r = wr(field::TD_CTLS, 0, pending);
        assert_eq!(r.gpr[gpr::RAX], status::METADATA_FIELD_VALUE_NOT_VALID);
        let r = wr(field::TD_CTLS, pending, pending | topology);
        assert_eq!((r.gpr[gpr::RAX], r.gpr[gpr::R8]), (0, pending | topology));
        assert_eq!(rd(field::TD_CTLS).gpr[gpr::R8], pending);
        // REDUCE_VE (Linux's reduce_unnecessary_ve()) brings ENUM_TOPOLOGY
        // and VIRT_CPUID2 with it.
        let reduce = field::TD_CTLS_REDUCE_VE;
        let cpuid2 = field::TD_CTLS_VIRT_CPUID2;
        let r = wr(field::TD_CTLS, reduce, reduce);
        assert_eq!((r.gpr[gpr::RAX], r.gpr[gpr::R8]), (0, pending));
        let all = pending | topology | cpuid2 | reduce;
        assert_eq!(rd(field::TD_CTLS).gpr[gpr::R8], all);
        // ENUM_TOPOLOGY cannot be cleared under REDUCE_VE; REDUCE_VE can.
        let r = wr(field::TD_CTLS, 0, topology);
        assert_eq!((r.gpr[gpr::RAX], r.gpr[gpr::R8]), (0, all));
        assert_eq!(rd(field::TD_CTLS).gpr[gpr::R8], all);
        assert_eq!(wr(field::TD_CTLS, 0, reduce).gpr[gpr::RAX], 0);
        assert_eq!(rd(field::TD_CTLS).gpr[gpr::R8], pending | topology | cpuid2);
        // Reserved bits are not writable.
        assert_eq!(
            wr(field::TD_CTLS, 1 << 4, 1 << 4).gpr[gpr::RAX],
            status::METADATA_FIELD_NOT_WRITABLE
        );
        // LOCK: from then on only writes that change nothing succeed.
        let lock = field::TD_CTLS_LOCK;
        assert_eq!(wr(field::TD_CTLS, lock, lock).gpr[gpr::RAX], 0);
        let locked = pending | topology | cpuid2 | lock;
        assert_eq!(
            wr(field::TD_CTLS, reduce, reduce).gpr[gpr::RAX],
            status::METADATA_FIELD_VALUE_NOT_VALID
        );
        assert_eq!(
            wr(field::TD_CTLS, 0, lock).gpr[gpr::RAX],
            status::METADATA_FIELD_VALUE_NOT_VALID
        );
        let r = wr(field::TD_CTLS, topology, topology);
        assert_eq!((r.gpr[gpr::RAX], r.gpr[gpr::R8]), (0, locked));
        assert_eq!(rd(field::TD_CTLS).gpr[gpr::R8], locked);
        let td0 = td(MEM, 0);
        let r = call(&td0, &host, leaf::VM_RD, &[(gpr::RDX, field::TD_CTLS)]);
        assert_eq!(r.gpr[gpr::R8], 0, "SEPT_VE_DISABLE clear");
        let r = call(
            &td0,
            &host,
            leaf::VM_WR,
            &[
                (gpr::RDX, field::TD_CTLS),
                (gpr::R8, pending),
                (gpr::R9, pending),
            ],
        );
        assert_eq!(r.gpr[gpr::RAX], status::METADATA_FIELD_VALUE_NOT_VALID);
        assert_eq!(
            wr(field::CONFIG_FLAGS, 2, 2).gpr[gpr::RAX],
            status::METADATA_FIELD_NOT_WRITABLE
        );
        assert_eq!(wr(field::NOTIFY_ENABLES, 0, u64::MAX).gpr[gpr::RAX], 0);
        let r = call(
            &kvm,
            &host,
            leaf::SYS_RD,
            &[(gpr::RDX, field::TDX_FEATURES0)],
        );
        assert_eq!(
            (r.gpr[gpr::RAX], r.gpr[gpr::R8]),
            (
                0,
                field::TDX_FEATURES0_TDG_VP_RDWR
                    | field::TDX_FEATURES0_CPUID_VIRT_GUEST_CTRL
                    | field::TDX_FEATURES0_VE_REDUCTION
            )
        );
    }
}
