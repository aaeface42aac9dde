//! SNP AP creation (GHCB NAE event 0x80000013, GHCB spec §4.1.8 "SNP AP
//! Creation"), as KVM implements it in `arch/x86/kvm/svm/sev.c` (Linux
//! 6.12): `sev_es_validate_vmgexit()` (RAX must be valid unless the request
//! is AP_DESTROY), `sev_snp_ap_creation()` (the checks and their order,
//! errors answered `SW_EXITINFO1 = 2`, `SW_EXITINFO2 = GHCB_ERR_INVALID_INPUT`
//! by `sev_handle_vmgexit()`), and `__sev_snp_update_protected_guest_state()`
//! (what the target vCPU does with the request).
//!
//! KVM records the request on the target vCPU and kicks it; at its next
//! entry the target loads the VMSA (`KVM_REQ_UPDATE_PROTECTED_GUEST_STATE`).
//! Here the target is started at once through the host (QEMU loads the
//! state on the target's thread before it runs again), with the checks
//! the target's entry makes done by the requesting vCPU:
//!
//! - the VMSA GPA must be in a memslot (`kvm_gmem_get_pfn()`), else the
//!   target stays halted and not runnable (the update fails after
//!   `mp_state = KVM_MP_STATE_HALTED`);
//! - VMRUN requires the page to be assigned to the guest, validated and a
//!   VMSA in the RMP (APM vol. 2 §15.36.10 "Virtual Machine Save Area";
//!   §15.36.5: RMPADJUST sets the VMSA bit), with SEV_FEATURES.SNP_ACTIVE
//!   set (§15.35.1): otherwise VMRUN fails with VMEXIT_INVALID, KVM returns
//!   `KVM_EXIT_FAIL_ENTRY` and QEMU stops the VM (`kvm_cpu_exec()`). cvmem
//!   stops it at the VMGEXIT that asked for the start.
//!
//! AP_DESTROY leaves the target halted and not runnable (the update with
//! no VMSA). AP_CREATE_ON_INIT is checked and recorded as KVM does, but
//! applies at the target's next INIT, which the plugin does not see: only a
//! later AP_CREATE starts that vCPU.

use super::ghcb::{ghcb_err, off, Ghcb};
use super::*;
use crate::hooks::{Host, Segment, VcpuState};
use cvmem_model::RmpOwner;

/// The `SW_EXITINFO1` requests (`SVM_VMGEXIT_AP_*`, asm/svm.h).
pub mod request {
    #![allow(missing_docs)]
    pub const CREATE_ON_INIT: u32 = 0;
    pub const CREATE: u32 = 1;
    pub const DESTROY: u32 = 2;
}

/// SEV_FEATURES bits (APM vol. 2 Table 15-37; `SVM_SEV_FEAT_*`).
pub mod sev_feat {
    /// SNP is active.
    pub const SNP_ACTIVE: u64 = 1 << 0;
    /// `SVM_SEV_FEAT_INT_INJ_MODES`: restricted and alternate injection.
    pub const INT_INJ_MODES: u64 = (1 << 3) | (1 << 4);
}

/// The VM's SEV features (KVM's `sev->vmsa_features`): SNP only, as
/// SEV_STATUS says (its bits 63:2 are SEV_FEATURES).
pub const VM_SEV_FEATURES: u64 = SEV_STATUS_VALUE >> 2;
// What the launch measures in every VMSA (`cvmem measure` assumes it).
const _: () = assert!(VM_SEV_FEATURES == cvmem_model::snp_launch::SEV_FEATURES_DEFAULT);

use cvmem_model::snp_launch::vmsa;

/// What became of an AP creation request that KVM accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ApOutcome {
    /// The target runs from the VMSA.
    Started,
    /// The target is halted and not runnable (destroyed, or its VMSA is
    /// outside every memslot).
    Parked,
    /// Recorded for the target's next INIT.
    OnInit,
    /// The target's VMRUN would fail: the VM stops.
    EntryFailed,
}

fn le64(p: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(p[o..o + 8].try_into().expect("8 bytes"))
}

fn le32(p: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(p[o..o + 4].try_into().expect("4 bytes"))
}

fn le16(p: &[u8], o: usize) -> u16 {
    u16::from_le_bytes(p[o..o + 2].try_into().expect("2 bytes"))
}

fn segment(p: &[u8], o: usize) -> Segment {
    Segment {
        selector: le16(p, o),
        attrib: le16(p, o + 2),
        limit: le32(p, o + 4),
        base: le64(p, o + 8),
    }
}

/// The register state of a VMSA page.
pub(super) fn vmsa_state(p: &[u8]) -> VcpuState {
    let mut gpr = [0u64; 16];
    gpr[gpr::RAX] = le64(p, vmsa::RAX);
    gpr[gpr::RSP] = le64(p, vmsa::RSP);
    // RCX, RDX, RBX, -, RBP, RSI, RDI, R8..R15 from 0x308 on: encoding
    // order from RCX, with RSP's slot unused.
    for (i, r) in (1..16).enumerate() {
        if r != gpr::RSP {
            gpr[r] = le64(p, vmsa::RCX + 8 * i);
        }
    }
    VcpuState {
        es: segment(p, vmsa::ES),
        cs: segment(p, vmsa::CS),
        ss: segment(p, vmsa::SS),
        ds: segment(p, vmsa::DS),
        fs: segment(p, vmsa::FS),
        gs: segment(p, vmsa::GS),
        ldtr: segment(p, vmsa::LDTR),
        tr: segment(p, vmsa::TR),
        gdtr: segment(p, vmsa::GDTR),
        idtr: segment(p, vmsa::IDTR),
        cr0: le64(p, vmsa::CR0),
        cr2: le64(p, vmsa::CR2),
        cr3: le64(p, vmsa::CR3),
        cr4: le64(p, vmsa::CR4),
        efer: le64(p, vmsa::EFER),
        dr6: le64(p, vmsa::DR6),
        dr7: le64(p, vmsa::DR7),
        rflags: le64(p, vmsa::RFLAGS),
        rip: le64(p, vmsa::RIP),
        gpr,
        xcr0: le64(p, vmsa::XCR0),
        pat: le64(p, vmsa::G_PAT),
        star: le64(p, vmsa::STAR),
        lstar: le64(p, vmsa::LSTAR),
        cstar: le64(p, vmsa::CSTAR),
        sfmask: le64(p, vmsa::SFMASK),
        kernel_gs_base: le64(p, vmsa::KERNEL_GS_BASE),
        sysenter_cs: le64(p, vmsa::SYSENTER_CS),
        sysenter_esp: le64(p, vmsa::SYSENTER_ESP),
        sysenter_eip: le64(p, vmsa::SYSENTER_EIP),
        x87_fcw: le16(p, vmsa::X87_FCW),
        x87_ftw: le16(p, vmsa::X87_FTW),
        mxcsr: le32(p, vmsa::MXCSR),
    }
}

impl SnpFirmware {
    /// `SVM_VMGEXIT_AP_CREATION` from the GHCB page: `Err` is a GHCB error
    /// (`GHCB_ERR_MISSING_INPUT` from the validation, `INVALID_INPUT` from
    /// `sev_snp_ap_creation()`).
    pub(super) fn ap_creation(
        &self,
        vmm: &Vmm,
        info1: u64,
        info2: u64,
        g: &Ghcb,
        host: &dyn Host,
    ) -> Result<ApOutcome, u64> {
        // KVM takes the request from SW_EXITINFO1[31:0], the VMPL field
        // (bits 31:16, where Linux puts its VMPL) included: a VMPL other
        // than 0 makes an unknown request. cvmem's guests run at VMPL0.
        let req = info1 as u32;
        let apic_id = (info1 >> 32) as u32;
        // sev_es_validate_vmgexit(): RAX (the SEV features) must be valid
        // unless the request destroys.
        let rax = if req != request::DESTROY {
            g.input(off::RAX)?
        } else {
            0
        };
        self.stats.ap_requests.fetch_add(1, Ordering::Relaxed);
        let refuse = |why: String| {
            eprintln!("cvmem: vmgexit: {why}");
            self.stats.ap_refused.fetch_add(1, Ordering::Relaxed);
            Err(ghcb_err::INVALID_INPUT)
        };
        // kvm_get_vcpu_by_id(): QEMU numbers the vCPUs by APIC ID (0..n-1
        // with the default topology), and so are they here.
        if apic_id as usize >= self.vcpus.len() {
            return refuse(format!("invalid AP APIC ID [{apic_id:#x}] from guest"));
        }
        // The interrupt-injection mode must not change.
        if req < request::DESTROY && (rax ^ VM_SEV_FEATURES) & sev_feat::INT_INJ_MODES != 0 {
            return refuse(format!("invalid AP injection mode [{rax:#x}] from guest"));
        }
        match req {
            request::CREATE_ON_INIT | request::CREATE => {
                // page_address_valid(): page aligned and a legal GPA.
                let maxphyaddr = self.cpuid(vmm, 0x8000_0008, 0, host)[0] & 0xff;
                if info2 % PAGE_SIZE != 0 || (maxphyaddr < 64 && info2 >> maxphyaddr != 0) {
                    return refuse(format!("invalid AP VMSA address [{info2:#x}] from guest"));
                }
                // The SNP erratum: a 2M-aligned VMSA may collide with a
                // large page's RMP entry.
                if info2 % (2 << 20) == 0 {
                    return refuse(format!(
                        "AP VMSA address [{info2:#x}] from guest is unsafe as it is 2M aligned"
                    ));
                }
            }
            request::DESTROY => {}
            _ => return refuse(format!("invalid AP creation request [{req:#x}] from guest")),
        }
        let outcome = match req {
            request::CREATE_ON_INIT => ApOutcome::OnInit,
            request::DESTROY => {
                host.vcpu_park(apic_id);
                ApOutcome::Parked
            }
            _ => self.ap_start(vmm, apic_id, info2, host),
        };
        let counter = match outcome {
            ApOutcome::Started => &self.stats.ap_created,
            ApOutcome::Parked if req == request::DESTROY => &self.stats.ap_destroyed,
            _ => &self.stats.ap_failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(outcome)
    }

    /// The target's entry with the VMSA at `gpa`
    /// (`__sev_snp_update_protected_guest_state()`, then VMRUN).
    fn ap_start(&self, vmm: &Vmm, target: u32, gpa: u64, host: &dyn Host) -> ApOutcome {
        let vm = vmm.vm();
        let in_slot = vm.decode(Gpa::new(gpa)).and_then(|d| vmm.backing_of(d.gfn));
        let Some(backing) = in_slot else {
            eprintln!("cvmem: snp: AP state update failed: VMSA {gpa:#x} is in no memslot");
            host.vcpu_park(target);
            return ApOutcome::Parked;
        };
        let entry = vm.snp_rmp_entry_of(Gpa::new(gpa));
        let rmp_ok =
            entry.is_some_and(|e| matches!(e.owner(), RmpOwner::Guest(_)) && e.validated && e.vmsa);
        let mut page = vec![0u8; PAGE_SIZE as usize];
        let read = host.phys_read(backing, &mut page);
        let features = le64(&page, vmsa::SEV_FEATURES);
        if !rmp_ok || !read || features & sev_feat::SNP_ACTIVE == 0 || features != VM_SEV_FEATURES {
            vmm.stop(format!(
                "VMRUN of vCPU {target} failed (KVM_EXIT_FAIL_ENTRY): the VMSA at {gpa:#x} {}",
                if rmp_ok {
                    format!("has SEV_FEATURES {features:#x}, not {VM_SEV_FEATURES:#x}")
                } else {
                    "is not a validated guest page with the RMP's VMSA bit".to_string()
                }
            ));
            return ApOutcome::EntryFailed;
        }
        host.vcpu_set_state(target, &vmsa_state(&page));
        ApOutcome::Started
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::fake::{FakeHost, MEM};
    use crate::hooks::{Insn, Regs};
    use crate::kvm::Kvm;
    use crate::snp::testutil::*;

    /// The VMSA page of the tests: 3 MiB, 4K but not 2M aligned, below the
    /// launch boundary (validated).
    const VMSA: u64 = 0x30_0000;

    /// A real-mode VMSA as Linux's `wakeup_cpu_via_vmgexit()` fills one,
    /// with `features` in SEV_FEATURES.
    fn write_vmsa(host: &FakeHost, at: u64, features: u64) {
        host.mem.borrow_mut()[at as usize..(at + PAGE_SIZE) as usize].fill(0);
        // CS: selector 0x9000, base 0x90000, limit 0xffff, attrib 0x9b.
        put(host, at + vmsa::CS as u64, 0xffff_009b_9000);
        put(host, at + vmsa::CS as u64 + 8, 0x9_0000);
        put(host, at + vmsa::RIP as u64, 0x123);
        put(host, at + vmsa::RFLAGS as u64, 2);
        put(host, at + vmsa::EFER as u64, 1 << 12);
        put(host, at + vmsa::CR0 as u64, 0x10);
        put(host, at + vmsa::G_PAT as u64, 0x0007_0406_0007_0406);
        put(host, at + vmsa::RCX as u64, 0xc1);
        put(host, at + vmsa::RCX as u64 + 8 * 14, 0xf15); // R15
        put(host, at + vmsa::SEV_FEATURES as u64, features);
        put(host, at + vmsa::MXCSR as u64, 0x5555_0000_1f80);
    }

    /// RMPADJUST at VMPL0 of the page mapped at 0x4000_0000 (`target`),
    /// target VMPL1 with the VMSA bit, as Linux's `snp_set_vmsa()` does.
    fn make_vmsa(kvm: &Kvm, host: &FakeHost, target: u64) {
        let mut regs = tables(host, target | C_BIT);
        regs.gpr[gpr::RAX] = 0x4000_0000;
        regs.gpr[gpr::RCX] = 0;
        regs.gpr[gpr::RDX] = (1 << 16) | 1;
        assert_eq!(
            kvm.insn(0, Insn::Rmpadjust, &mut regs, host).0,
            InsnAction::Done
        );
        assert_eq!(regs.gpr[gpr::RAX], 0, "RMPADJUST succeeded");
    }

    /// A launched two-vCPU guest with a registered GHCB.
    fn setup() -> (Kvm, FakeHost) {
        let kvm = guest(MEM);
        let host = FakeHost::new();
        ghcb_setup(&kvm, &host);
        (kvm, host)
    }

    /// Runs the AP creation VMGEXIT; returns the action, SW_EXITINFO1/2.
    fn ap_create(
        kvm: &Kvm,
        host: &FakeHost,
        info1: u64,
        info2: u64,
        rax: Option<u64>,
    ) -> (InsnAction, (u64, u64)) {
        host.mem.borrow_mut()[GHCB as usize..(GHCB + 0x800) as usize].fill(0);
        let mut fields = vec![
            (off::EXIT_CODE, exit::AP_CREATION),
            (off::EXIT_INFO_1, info1),
            (off::EXIT_INFO_2, info2),
        ];
        if let Some(rax) = rax {
            fields.push((off::RAX, rax));
        }
        for &(o, v) in &fields {
            put(host, GHCB + o as u64, v);
            let bit = o / 8;
            host.mem.borrow_mut()[GHCB as usize + off::VALID_BITMAP + bit / 8] |= 1 << (bit % 8);
        }
        let mut regs = Regs::default();
        regs.gpr[gpr::RCX] = u64::from(msr::GHCB);
        regs.gpr[gpr::RAX] = GHCB & 0xffff_ffff;
        kvm.insn(0, Insn::Wrmsr, &mut regs, host);
        let (action, _) = kvm.insn(0, Insn::Vmgexit, &mut regs, host);
        (action, info(host))
    }

    fn snp(kvm: &Kvm) -> &SnpFirmware {
        kvm.flavour_as::<SnpFirmware>()
    }

    const REFUSED: (u64, u64) = (2, ghcb_err::INVALID_INPUT);

    #[test]
    fn hv_features_offer_ap_creation_in_both_protocols() {
        let (kvm, host) = setup();
        assert_eq!(msr_call(&kvm, &host, 0x080), (0b11 << 12) | 0x081);
        ghcb_setup(&kvm, &host);
        ghcb_call(
            &kvm,
            &host,
            &[
                (off::EXIT_CODE, exit::HV_FEATURES),
                (off::EXIT_INFO_1, 0),
                (off::EXIT_INFO_2, 0),
            ],
        );
        assert_eq!(info(&host), (0, 0b11));
    }

    #[test]
    fn create_starts_the_target_from_the_vmsa() {
        let (kvm, host) = setup();
        write_vmsa(&host, VMSA, VM_SEV_FEATURES);
        make_vmsa(&kvm, &host, VMSA);
        let (action, result) = ap_create(&kvm, &host, (1 << 32) | 1, VMSA, Some(1));
        assert_eq!((action, result), (InsnAction::Done, (0, 0)));
        let started = host.vcpu_states.borrow().clone();
        assert_eq!(started.len(), 1);
        let (vcpu, state) = started[0];
        let state = state.expect("started, not parked");
        assert_eq!(vcpu, 1);
        assert_eq!(
            state.cs,
            Segment {
                selector: 0x9000,
                attrib: 0x9b,
                limit: 0xffff,
                base: 0x9_0000
            }
        );
        assert_eq!((state.rip, state.rflags, state.cr0), (0x123, 2, 0x10));
        assert_eq!((state.efer, state.pat), (1 << 12, 0x0007_0406_0007_0406));
        assert_eq!((state.gpr[gpr::RCX], state.gpr[gpr::R15]), (0xc1, 0xf15));
        assert_eq!((state.mxcsr, state.x87_ftw), (0x1f80, 0x5555));
        let s = &snp(&kvm).stats;
        assert_eq!(s.ap_created.load(Ordering::Relaxed), 1);
        assert!(snp(&kvm)
            .summary()
            .contains("1 AP creation requests (1 created"));
    }

    #[test]
    fn destroy_parks_and_a_new_create_starts_again() {
        let (kvm, host) = setup();
        write_vmsa(&host, VMSA, VM_SEV_FEATURES);
        make_vmsa(&kvm, &host, VMSA);
        // AP_DESTROY needs no RAX.
        assert_eq!(
            ap_create(&kvm, &host, (1 << 32) | 2, 0, None),
            (InsnAction::Done, (0, 0))
        );
        assert_eq!(
            ap_create(&kvm, &host, (1 << 32) | 1, VMSA, Some(1)),
            (InsnAction::Done, (0, 0))
        );
        let log: Vec<_> = host
            .vcpu_states
            .borrow()
            .iter()
            .map(|(v, s)| (*v, s.is_some()))
            .collect();
        assert_eq!(log, [(1, false), (1, true)]);
        assert_eq!(snp(&kvm).stats.ap_destroyed.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn kvm_refuses_bad_requests_with_invalid_input() {
        let (kvm, host) = setup();
        write_vmsa(&host, VMSA, VM_SEV_FEATURES);
        make_vmsa(&kvm, &host, VMSA);
        type Case = (&'static str, u64, u64, Option<u64>, (u64, u64));
        let cases: [Case; 9] = [
            ("unknown APIC ID", (2 << 32) | 1, VMSA, Some(1), REFUSED),
            (
                "restricted injection",
                (1 << 32) | 1,
                VMSA,
                Some(1 | (1 << 3)),
                REFUSED,
            ),
            (
                "alternate injection",
                (1 << 32) | 1,
                VMSA,
                Some(1 | (1 << 4)),
                REFUSED,
            ),
            ("unaligned VMSA", (1 << 32) | 1, VMSA + 8, Some(1), REFUSED),
            (
                "2M-aligned VMSA",
                (1 << 32) | 1,
                0x40_0000,
                Some(1),
                REFUSED,
            ),
            (
                "GPA beyond MAXPHYADDR",
                (1 << 32) | 1,
                1 << 60,
                Some(1),
                REFUSED,
            ),
            ("unknown request", (1 << 32) | 3, VMSA, Some(1), REFUSED),
            ("VMPL1", (1 << 32) | (1 << 16) | 1, VMSA, Some(1), REFUSED),
            (
                "no RAX",
                (1 << 32) | 1,
                VMSA,
                None,
                (2, ghcb_err::MISSING_INPUT),
            ),
        ];
        for (what, info1, info2, rax, want) in cases {
            assert_eq!(
                ap_create(&kvm, &host, info1, info2, rax),
                (InsnAction::Done, want),
                "{what}"
            );
        }
        assert!(host.vcpu_states.borrow().is_empty(), "nothing started");
        // The other SEV feature bits are not compared (KVM checks only the
        // injection modes): the VMSA's own SEV_FEATURES are what VMRUN checks.
        assert_eq!(
            ap_create(&kvm, &host, (1 << 32) | 1, VMSA, Some(1 | (1 << 5))),
            (InsnAction::Done, (0, 0))
        );
        assert_eq!(snp(&kvm).stats.ap_refused.load(Ordering::Relaxed), 8);
    }

    #[test]
    fn a_page_that_is_no_vmsa_fails_the_entry_and_stops_the_vm() {
        let (kvm, host) = setup();
        // Validated and private, but no RMPADJUST with the VMSA bit.
        write_vmsa(&host, VMSA, VM_SEV_FEATURES);
        assert_eq!(
            ap_create(&kvm, &host, (1 << 32) | 1, VMSA, Some(1)),
            (InsnAction::Stop, (0, 0))
        );
        // A VMSA page whose SEV_FEATURES lack SNP_ACTIVE.
        let (kvm, host) = setup();
        write_vmsa(&host, VMSA, 0);
        make_vmsa(&kvm, &host, VMSA);
        assert_eq!(
            ap_create(&kvm, &host, (1 << 32) | 1, VMSA, Some(1)),
            (InsnAction::Stop, (0, 0))
        );
        assert!(host.vcpu_states.borrow().is_empty());
        assert_eq!(snp(&kvm).stats.ap_failed.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_vmsa_outside_every_memslot_leaves_the_target_parked() {
        let (kvm, host) = setup();
        let beyond = MEM + 0x1000;
        assert_eq!(
            ap_create(&kvm, &host, (1 << 32) | 1, beyond, Some(1)),
            (InsnAction::Done, (0, 0))
        );
        assert_eq!(*host.vcpu_states.borrow(), [(1, None)]);
    }

    #[test]
    fn create_on_init_is_checked_and_starts_nothing_now() {
        let (kvm, host) = setup();
        write_vmsa(&host, VMSA, VM_SEV_FEATURES);
        make_vmsa(&kvm, &host, VMSA);
        assert_eq!(
            ap_create(&kvm, &host, 1 << 32, VMSA + 1, Some(1)),
            (InsnAction::Done, REFUSED)
        );
        assert_eq!(
            ap_create(&kvm, &host, 1 << 32, VMSA, Some(1)),
            (InsnAction::Done, (0, 0))
        );
        assert!(host.vcpu_states.borrow().is_empty());
    }
}
