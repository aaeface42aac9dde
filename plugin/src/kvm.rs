//! The modelled KVM of one QEMU process: the [`Vmm`] core, the VM type's
//! [`Flavour`], and what QEMU's KVM listener does with memslots. It turns
//! QEMU's memslot reports into memslots, answers the stage-2 callback (the
//! flavour looks the access up, the core handles the fault; see `vmm.rs`
//! for the table of answers) and hands instructions to the flavour. It
//! names no flavour: `flavours.rs` picks it.

use std::sync::atomic::{AtomicU64, Ordering};

use cvmem_model::{
    BackingAddr, GfnRange, Gpa, MemoryRegion, MemslotFlags, MemslotId, Vm, VmConfig, PAGE_SIZE,
};

use crate::args::Config;
use crate::effects::Effects;
use crate::flavour::{Ctx, Flavour};
use crate::flavours::AnyFlavour;
use crate::flushcheck::FlushCheck;
use crate::hooks::{Host, Insn, InsnAction, Regs, Stage2Answer, Stage2Request};
use crate::lifecycle::Lifecycle;
use crate::memslots::{MemslotOp, RamSection};
use crate::vmm::Vmm;

/// KVM's paravirtual CPUID block, as guests whose CPUID the VMM answers
/// (TDX, SNP) get it.
pub mod pv_cpuid {
    /// KVM's paravirtual CPUID leaves (Linux `asm/kvm_para.h`,
    /// Documentation/virt/kvm/x86/cpuid.rst): 0x40000000 has the signature
    /// "KVMKVMKVM\0\0\0" and the highest KVM leaf; 0x40000001 the features.
    pub const KVM_CPUID_SIGNATURE: u32 = 0x4000_0000;

    pub const KVM_CPUID_FEATURES: u32 = 0x4000_0001;

    /// The hypervisor range the TDX module leaves to the VMM (it raises #VE for
    /// 0x40000000-0x4FFFFFFF; KVM answers its own 0x400000xx block).
    pub const KVM_CPUID_LAST: u32 = 0x4000_00ff;

    /// KVM's answer to a leaf of its paravirtual block, as a TD or an SNP guest
    /// on KVM sees it (through #VE and TDVMCALL CPUID, or #VC and the GHCB, on
    /// hardware). The signature is what makes Linux take KVM's x86_hyper_kvm
    /// ops, whose `x2apic_available()` lets a guest without interrupt
    /// remapping keep x2APIC on (`try_to_enable_x2apic()`); without it Linux
    /// turns x2APIC off and touches the xAPIC page, which a TD cannot, and
    /// which an SNP guest reaches only through #VC MMIO emulation (where a
    /// Linux 6.12 race with LA57 oopses: `vc_slow_virt_to_phys()` walks the
    /// page tables with `pgtable_l5_enabled()` false while `identify_cpu()`
    /// has cleared the CPU's feature bits). No paravirtual feature is offered
    /// (EAX of 0x40000001 is 0): cvmem models none of kvmclock, steal time,
    /// PV EOI or PV TLB flush.
    pub fn kvm_cpuid(leaf: u32) -> [u32; 4] {
        match leaf {
            KVM_CPUID_SIGNATURE => [
                KVM_CPUID_FEATURES,
                u32::from_le_bytes(*b"KVMK"),
                u32::from_le_bytes(*b"VMKV"),
                u32::from_le_bytes(*b"M\0\0\0"),
            ],
            _ => [0; 4],
        }
    }
}

/// The modelled KVM of one QEMU process.
#[derive(Debug)]
pub struct Kvm {
    /// The VMM core: the model, exit handling, the run's lifecycle.
    pub vmm: Vmm,
    /// What the VM type adds.
    pub flavour: AnyFlavour,
    /// Sections QEMU added as memslots.
    pub memslot_adds: AtomicU64,
    /// Memslots QEMU deleted.
    pub memslot_dels: AtomicU64,
    /// `flush-check=on`: the missing-flush detector, which learns every
    /// translation handed to QEMU.
    pub flush_check: Option<FlushCheck>,
    /// The RAM sections QEMU has reported and not deleted: what a memslot
    /// made through the control socket may be backed by.
    pub qemu_ram: parking_lot::Mutex<Vec<RamSection>>,
    /// Audit mode (an unpatched QEMU): the RAM learned from guest accesses,
    /// which stands in for QEMU's memslot reports.
    pub audit: Option<crate::learn::RamLearner>,
}

impl Kvm {
    /// Creates the VM (`KVM_CREATE_VM` of the configured type) for
    /// `max_vcpus` vCPUs.
    pub fn new(config: &Config, max_vcpus: u32) -> Result<Kvm, String> {
        let vm_type = config.vm_type;
        let max_vcpus = max_vcpus.max(1);
        let vm_config = VmConfig {
            max_vcpus,
            gpaw: config.gpaw,
            td_attributes: config.td_attributes,
            slot_zap_all_quirk: config.slot_zap_all,
            private_max_level: config
                .private_max_level
                .unwrap_or(vm_type.default_private_max_level()),
            // Events only for a trace: without one the model builds none.
            event_capacity: if config.trace.is_some() {
                crate::trace::CAPACITY
            } else {
                0
            },
            ..VmConfig::new(vm_type)
        };
        let vm = Vm::new(vm_config).map_err(|e| format!("cannot create the {vm_type} VM: {e}"))?;
        let flush_check = config.flush_check.then(|| FlushCheck::new(&vm, max_vcpus));
        let flavour = crate::flavours::for_config(config, max_vcpus);
        let lifecycle = Lifecycle::new(!flavour.protects_vcpu_state());
        Ok(Kvm {
            flush_check,
            vmm: Vmm::new(
                vm,
                lifecycle,
                config.strict,
                crate::plugin::stage2_cacheable(config),
            ),
            flavour,
            memslot_adds: AtomicU64::new(0),
            memslot_dels: AtomicU64::new(0),
            qemu_ram: parking_lot::Mutex::new(Vec::new()),
            audit: None,
        })
    }

    /// Audit mode: memslots come from the RAM the guest is seen to use
    /// (`learn.rs`), and answers are only counted.
    pub fn start_audit(&mut self) {
        self.audit = Some(crate::learn::RamLearner::default());
        self.vmm.audit = true;
        self.vmm.cache_spans = false;
    }

    /// A VM of `vm_type` with the default options.
    #[cfg(test)]
    pub fn with_type(vm_type: cvmem_model::VmType, max_vcpus: u32) -> Result<Kvm, String> {
        Kvm::new(
            &Config {
                vm_type,
                ..Config::default()
            },
            max_vcpus,
        )
    }

    /// The flavour as its own type, for unit tests.
    #[cfg(test)]
    pub fn flavour_as<T: 'static>(&self) -> &T {
        self.flavour
            .as_any()
            .downcast_ref()
            .expect("a flavour of that type")
    }

    /// The model.
    #[inline]
    pub fn vm(&self) -> &Vm {
        self.vmm.vm()
    }

    /// Applies a memslot report of QEMU's memory listener, as QEMU's KVM
    /// listener would (`kvm_set_phys_mem()`): a new slot per added section,
    /// private-capable (`KVM_MEM_GUEST_MEMFD`) when the VM type has private
    /// memory and the section is writable RAM.
    pub fn memslot(&self, op: MemslotOp, s: &RamSection) -> Result<Effects, String> {
        if s.size == 0 || s.addr.checked_add(s.size).is_none() {
            return Err(format!(
                "empty or wrapping section {:#x}+{:#x}",
                s.addr, s.size
            ));
        }
        // The slot's guest-physical address: QEMU's KVM listener gives KVM
        // the section's address as both (`kvm_set_phys_mem()`).
        let gpa = Gpa::new(s.addr.raw());
        // Held throughout: QEMU's listener runs under the big QEMU lock, one
        // report at a time, and the control socket takes this lock too, so
        // the snapshot below (and the free slot id) cannot change under us.
        let mut ram = self.qemu_ram.lock();
        ram.retain(|r| r.addr != s.addr || r.size != s.size);
        if op == MemslotOp::Add {
            ram.push(s.clone());
        }
        let vm = self.vm();
        let slots = vm.memslots();
        match op {
            // QEMU's kvm_set_phys_mem() gives no slot to read-only memory
            // where KVM refuses KVM_MEM_READONLY (TDX, SNP): the guest's
            // accesses there are MMIO.
            _ if s.readonly && !vm.vm_type().allows_readonly_memslots() => Ok(Effects::NONE),
            MemslotOp::Add => {
                let id = (0..=u16::MAX)
                    .map(MemslotId)
                    .find(|&id| slots.by_id(id).is_none())
                    .ok_or("no free memslot id")?;
                let mut flags = MemslotFlags::NONE;
                if s.readonly {
                    flags = flags | MemslotFlags::READONLY;
                } else if vm.vm_type().has_private_mem() {
                    flags = flags | MemslotFlags::GUEST_MEMFD;
                }
                let flush = vm
                    .set_memory_region(MemoryRegion {
                        slot: id,
                        flags,
                        guest_phys_addr: gpa,
                        memory_size: s.size,
                        backing: s.addr,
                    })
                    .map_err(|e| {
                        format!("memslot {:#x}+{:#x} ({}): {e}", s.addr, s.size, s.name)
                    })?;
                self.memslot_adds.fetch_add(1, Ordering::Relaxed);
                let mut effects = Effects::flush(vm.flush(flush));
                if self.flavour.private_by_default() && flags.contains(MemslotFlags::GUEST_MEMFD) {
                    // QEMU makes a TD's or an SNP guest's guest_memfd RAM
                    // private when it adds the slot (kvm_set_phys_mem() ->
                    // kvm_set_memory_attributes_private()).
                    let range = GfnRange::from_start_len(gpa.gfn(), s.size / PAGE_SIZE)
                        .ok_or("section out of range")?;
                    let flush = vm
                        .set_memory_attributes(range, true)
                        .map_err(|e| format!("making {:#x}+{:#x} private: {e}", s.addr, s.size))?;
                    effects.push_flush(vm.flush(flush));
                }
                Ok(effects)
            }
            MemslotOp::Del => {
                let Some(slot) = slots
                    .iter()
                    .find(|m| m.base_gfn.gpa() == gpa && m.npages * PAGE_SIZE == s.size)
                else {
                    // A ROM device that left ROMD mode before it was added.
                    return Ok(Effects::NONE);
                };
                let flush = vm
                    .delete_memslot(slot.id)
                    .map_err(|e| format!("deleting memslot {:#x}: {e}", s.addr))?;
                self.memslot_dels.fetch_add(1, Ordering::Relaxed);
                Ok(Effects::flush(vm.flush(flush)))
            }
        }
    }

    /// The stage-2 answer for `req`, and what QEMU must do besides. The
    /// hot path: the flavour's lookup (a hit reads a few atomics), then the
    /// translation or the core's fault handling ([`Vmm::answer`]).
    #[inline]
    pub fn stage2(&self, req: &Stage2Request) -> (Stage2Answer, Effects) {
        let mut fx = Effects::NONE;
        let answer = self.flavour.stage2(&self.vmm, req, &mut fx);
        (answer, fx)
    }

    /// Emulates `vcpu`'s instruction through the flavour: the action, and
    /// what QEMU must do besides.
    pub fn insn(
        &self,
        vcpu: u32,
        insn: Insn,
        regs: &mut Regs,
        host: &dyn Host,
    ) -> (InsnAction, Effects) {
        let mut cx = Ctx::new(vcpu, regs, host, &self.vmm);
        let action = self.flavour.insn(&mut cx, insn);
        (action, cx.fx)
    }

    /// Whether a device or the host may touch QEMU's memory at `qemu_addr`
    /// (see [`Vmm::device_access_allowed`]); anything goes while the VMM
    /// builds the guest, whose devices (fw_cfg DMA) load the image.
    pub fn host_access_allowed(&self, qemu_addr: BackingAddr) -> bool {
        !self.flavour.launched() || self.vmm.device_access_allowed(qemu_addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::{prot, Access};
    use cvmem_model::BackingAddr;
    #[allow(unused_imports)]
    use cvmem_model::Gpa;
    use cvmem_model::{Gfn, VmType};

    fn section(gpa: u64, size: u64, readonly: bool) -> RamSection {
        RamSection {
            addr: BackingAddr::new(gpa),
            size,
            readonly,
            name: "ram".into(),
        }
    }

    fn req(gpa: u64, access: Access) -> Stage2Request {
        Stage2Request {
            gpa: Gpa::new(gpa),
            gva: cvmem_model::Gva::new(0x40_0000),
            vcpu_index: 0,
            access,
            cpl: 0,
            page_walk: false,
            paging: true,
        }
    }

    /// KVM_HC_MAP_GPA_RANGE converts where the flavour has the hypercall
    /// exit (sw-protected), and is -KVM_ENOSYS elsewhere and -KVM_EPERM
    /// from user mode.
    #[test]
    fn map_gpa_range_hypercall_follows_the_flavour() {
        use crate::hooks::fake::FakeHost;
        use crate::hooks::gpr;
        use crate::vmm::hc;
        let host = FakeHost::new();
        for (vm_type, expected) in [
            (VmType::SwProtected, 0),
            (VmType::Default, hc::err(hc::KVM_ENOSYS)),
        ] {
            let kvm = Kvm::with_type(vm_type, 1).unwrap();
            kvm.memslot(MemslotOp::Add, &section(0, 0x100_0000, false))
                .unwrap();
            let call = |cpl: u32| {
                let mut regs = Regs {
                    cpl,
                    ..Regs::default()
                };
                regs.gpr[gpr::RAX] = hc::KVM_HC_MAP_GPA_RANGE;
                regs.gpr[gpr::RBX] = 0x5000;
                regs.gpr[gpr::RCX] = 2;
                regs.gpr[gpr::RDX] = hc::KVM_MAP_GPA_RANGE_ENCRYPTED;
                let (action, _) = kvm.insn(0, Insn::Vmcall, &mut regs, &host);
                assert_eq!(action, InsnAction::Done);
                regs.gpr[gpr::RAX]
            };
            assert_eq!(call(3), hc::err(hc::KVM_EPERM), "{vm_type}");
            assert!(!kvm.vm().is_private(Gfn::new(5)));
            assert_eq!(call(0), expected, "{vm_type}");
            assert_eq!(kvm.vm().is_private(Gfn::new(6)), expected == 0);
        }
    }

    #[test]
    fn ram_is_mapped_through_the_model_and_mmio_passes_through() {
        let kvm = Kvm::with_type(VmType::Default, 1).unwrap();
        kvm.memslot(MemslotOp::Add, &section(0, 0xa_0000, false))
            .unwrap();
        kvm.memslot(MemslotOp::Add, &section(0x10_0000, 0x100_0000, false))
            .unwrap();
        kvm.memslot(MemslotOp::Add, &section(0xfffc_0000, 0x4_0000, true))
            .unwrap();
        let (a, e) = kvm.stage2(&req(0x12_3456, Access::Write));
        assert_eq!(e, Effects::NONE);
        match a {
            Stage2Answer::Allow { backing, prot, .. } => {
                assert_eq!(backing.raw() & !0xfff, 0x12_3000);
                assert_eq!(prot & prot::WRITE, prot::WRITE);
            }
            other => panic!("{other:?}"),
        }
        // The VGA hole: no memslot, QEMU emulates.
        assert!(matches!(
            kvm.stage2(&req(0xb_8000, Access::Write)).0,
            Stage2Answer::Allow { backing, .. } if backing == BackingAddr::new(0xb_8000)
        ));
        // A ROM write reaches QEMU, which drops it.
        assert!(matches!(
            kvm.stage2(&req(0xffff_fff0, Access::Write)).0,
            Stage2Answer::Allow { backing, .. } if backing == BackingAddr::new(0xffff_fff0)
        ));
        assert_eq!(kvm.vm().stats().maps.iter().sum::<u64>(), 1);
        // Deleting the slot unmaps it and asks for a flush.
        let e = kvm
            .memslot(MemslotOp::Del, &section(0x10_0000, 0x100_0000, false))
            .unwrap();
        assert!(e.flush.is_some());
        assert!(matches!(
            kvm.stage2(&req(0x12_3456, Access::Read)).0,
            Stage2Answer::Allow { backing, .. } if backing == BackingAddr::new(0x12_3456)
        ));
        assert_eq!(kvm.vm().memslots().iter().count(), 2);
    }

    /// The model's memslot holding `gpa`: (start, size).
    fn slot_at(kvm: &Kvm, gpa: u64) -> Option<(u64, u64)> {
        let slots = kvm.vm().memslots();
        slots
            .find(Gpa::new(gpa).gfn())
            .map(|s| (s.base_gfn.gpa().raw(), s.npages * PAGE_SIZE))
    }

    #[test]
    fn a_bar_move_is_a_deletion_then_a_creation() {
        let kvm = Kvm::with_type(VmType::Default, 1).unwrap();
        kvm.memslot(MemslotOp::Add, &section(0, 0xa0000, false))
            .unwrap();
        kvm.memslot(MemslotOp::Add, &section(0xfe00_0000, 0x10_0000, false))
            .unwrap();
        assert_eq!(slot_at(&kvm, 0xfe00_1234), Some((0xfe00_0000, 0x10_0000)));
        kvm.memslot(MemslotOp::Del, &section(0xfe00_0000, 0x10_0000, false))
            .unwrap();
        kvm.memslot(MemslotOp::Add, &section(0x8000_0000, 0x10_0000, false))
            .unwrap();
        assert_eq!(slot_at(&kvm, 0xfe00_1234), None);
        assert_eq!(slot_at(&kvm, 0x800f_ffff), Some((0x8000_0000, 0x10_0000)));
        assert_eq!(slot_at(&kvm, 0x8010_0000), None);
        let counts = (
            kvm.memslot_adds.load(Ordering::Relaxed),
            kvm.memslot_dels.load(Ordering::Relaxed),
        );
        assert_eq!(counts, (3, 1));
        let order: Vec<u64> = kvm
            .vm()
            .memslots()
            .iter()
            .map(|s| s.base_gfn.gpa().raw())
            .collect();
        assert_eq!(order, [0, 0x8000_0000]);
    }

    #[test]
    fn overlaps_unknown_deletions_and_empty_sections_are_refused() {
        let kvm = Kvm::with_type(VmType::Default, 1).unwrap();
        kvm.memslot(MemslotOp::Add, &section(0x1000, 0x2000, false))
            .unwrap();
        assert!(kvm
            .memslot(MemslotOp::Add, &section(0x2000, 0x1000, false))
            .is_err());
        // An unknown deletion (a ROM device that left ROMD mode) is ignored.
        assert_eq!(
            kvm.memslot(MemslotOp::Del, &section(0x1000, 0x1000, false)),
            Ok(Effects::NONE)
        );
        assert!(kvm
            .memslot(MemslotOp::Add, &section(0x9000, 0, false))
            .is_err());
        assert!(kvm
            .memslot(MemslotOp::Add, &section(u64::MAX - 0xfff, 0x2000, false))
            .is_err());
        let counts = (
            kvm.memslot_adds.load(Ordering::Relaxed),
            kvm.memslot_dels.load(Ordering::Relaxed),
        );
        assert_eq!(counts, (1, 0));
        assert_eq!(slot_at(&kvm, 0x1000), Some((0x1000, 0x2000)));
    }

    #[test]
    fn a_shared_access_to_private_memory_converts_the_page() {
        let kvm = Kvm::with_type(VmType::Tdx, 1).unwrap();
        kvm.memslot(MemslotOp::Add, &section(0, 0x100_0000, false))
            .unwrap();
        let gfn = Gfn::new(0x42);
        kvm.vm()
            .set_memory_attributes(GfnRange::one(gfn), true)
            .unwrap()
            .ignore();
        // GPAW 48: the shared bit is bit 47.
        let shared = (1 << 47) | 0x42_010;
        let (a, e) = kvm.stage2(&req(shared, Access::Read));
        assert_eq!(a, Stage2Answer::Retry);
        assert_eq!(e.clear, [(BackingAddr::new(0x42_000), PAGE_SIZE)]);
        assert!(!kvm.vm().is_private(gfn));
        assert!(matches!(
            kvm.stage2(&req(shared, Access::Read)).0,
            Stage2Answer::Allow { backing, .. } if backing.raw() & !0xfff == 0x42_000
        ));
        assert_eq!(kvm.vmm.implicit_conversions.load(Ordering::Relaxed), 1);
        // The private alias of the now shared page converts it back.
        assert_eq!(
            kvm.stage2(&req(0x42_010, Access::Read)).0,
            Stage2Answer::Retry
        );
        assert!(kvm.vm().is_private(gfn));
    }
}
