//! VMGEXIT and the GHCB page: its layout and valid bitmap, scratch areas,
//! and the guest's termination requests.

use super::*;
use crate::effects::Effects;
use crate::hooks::{Host, InsnAction};
use crate::vmm::Vmm;
use cvmem_model::{BackingAddr, Gfn, Gpa, PAGE_SHIFT, PAGE_SIZE};
use std::sync::atomic::Ordering;

/// Errors reported with `SW_EXITINFO1 = 2` (sev-common.h `GHCB_ERR_*`).
/// `GHCB_ERR_NOT_REGISTERED` (1) is not among them: KVM answers an
/// unregistered GHCB by failing KVM_RUN (see [`SnpFirmware::ghcb_page`]).
pub mod ghcb_err {
    #![allow(missing_docs)]
    pub const INVALID_USAGE: u64 = 2;
    pub const INVALID_SCRATCH_AREA: u64 = 3;
    pub const MISSING_INPUT: u64 = 4;
    pub const INVALID_INPUT: u64 = 5;
    pub const INVALID_EVENT: u64 = 6;
}

/// Offsets in the GHCB page (Linux `struct ghcb`, GHCB spec table 3). A
/// field's bit in the valid bitmap is its offset / 8.
pub(super) mod off {
    pub const CPL: usize = 0xcb;
    pub const RAX: usize = 0x1f8;
    pub const RCX: usize = 0x308;
    pub const RDX: usize = 0x310;
    pub const RBX: usize = 0x318;
    pub const RSI: usize = 0x330;
    pub const EXIT_CODE: usize = 0x390;
    pub const EXIT_INFO_1: usize = 0x398;
    pub const EXIT_INFO_2: usize = 0x3a0;
    pub const SCRATCH: usize = 0x3a8;
    pub const XCR0: usize = 0x3e8;
    pub const VALID_BITMAP: usize = 0x3f0;
    pub const SHARED_BUFFER: usize = 0x800;
    pub const SHARED_BUFFER_LEN: usize = 2032;
    pub const USAGE: usize = 0xffc;
}

/// A scratch area outside the GHCB may span this much
/// (`GHCB_SCRATCH_AREA_LIMIT`).
pub(super) const SCRATCH_AREA_LIMIT: u64 = 16 * PAGE_SIZE;

/// A human name for a termination reason (sev-common.h reason sets 0 and 1).
pub(super) fn term_reason(set: u64, code: u64) -> &'static str {
    match (set, code) {
        (0, 0) => "general termination request",
        (0, 1) => "GHCB protocol version not supported",
        (0, 2) => "SNP not supported",
        (1, 0) => "GHCB registration failed",
        (1, 1) => "page-state change failed",
        (1, 2) => "PVALIDATE failed",
        (1, 3) => "not running at VMPL0",
        _ => "unknown reason",
    }
}

/// Where a NAE event's data lives.
#[derive(Clone, Copy, Debug)]
pub(super) enum Scratch {
    /// In the GHCB's shared buffer: byte offset in the page.
    InGhcb { off: usize, len: usize },
    /// In other shared guest memory.
    Guest { gpa: u64, len: u64 },
}

impl Scratch {
    pub(super) fn len(&self) -> u64 {
        match *self {
            Scratch::InGhcb { len, .. } => len as u64,
            Scratch::Guest { len, .. } => len,
        }
    }
}

/// A snapshot of a guest's GHCB page, with the valid bitmap the guest set
/// (KVM clears the page's bitmap on entry and marks what it writes back).
pub(super) struct Ghcb {
    pub(super) page: Vec<u8>,
    valid: [u8; 16],
    /// The exit made a vCPU's entry fail: the VM stops, as QEMU stops it
    /// on KVM's `KVM_EXIT_FAIL_ENTRY` (AP creation with a bad VMSA).
    pub(super) entry_failed: bool,
}

impl Ghcb {
    pub(super) fn new(mut page: Vec<u8>) -> Ghcb {
        let mut valid = [0u8; 16];
        valid.copy_from_slice(&page[off::VALID_BITMAP..off::VALID_BITMAP + 16]);
        page[off::VALID_BITMAP..off::VALID_BITMAP + 16].fill(0);
        Ghcb {
            page,
            valid,
            entry_failed: false,
        }
    }

    pub(super) fn u64_at(&self, o: usize) -> u64 {
        u64::from_le_bytes(self.page[o..o + 8].try_into().expect("8 bytes"))
    }

    pub(super) fn u32_at(&self, o: usize) -> u32 {
        u32::from_le_bytes(self.page[o..o + 4].try_into().expect("4 bytes"))
    }

    pub(super) fn is_valid(&self, o: usize) -> bool {
        let bit = o / 8;
        self.valid[bit / 8] & (1 << (bit % 8)) != 0
    }

    /// A field the exit needs: `GHCB_ERR_MISSING_INPUT` if the guest did
    /// not mark it valid. CPL is a byte.
    pub(super) fn input(&self, o: usize) -> Result<u64, u64> {
        if !self.is_valid(o) {
            return Err(ghcb_err::MISSING_INPUT);
        }
        Ok(if o == off::CPL {
            u64::from(self.page[o])
        } else {
            self.u64_at(o)
        })
    }

    /// A field the exit may use: its value if valid, else 0 (KVM's
    /// `kvm_ghcb_get_*_if_valid()`).
    pub(super) fn optional(&self, o: usize) -> u64 {
        self.input(o).unwrap_or(0)
    }

    /// Writes a field back and marks it valid.
    pub(super) fn set(&mut self, o: usize, v: u64) {
        self.page[o..o + 8].copy_from_slice(&v.to_le_bytes());
        let bit = o / 8;
        self.page[off::VALID_BITMAP + bit / 8] |= 1 << (bit % 8);
    }

    /// Asks the guest to raise `event` (`SW_EXITINFO1 = 1`).
    pub(super) fn raise(&mut self, event: u64) {
        self.set(off::EXIT_INFO_1, 1);
        self.set(off::EXIT_INFO_2, event);
    }
}

impl SnpFirmware {
    /// VMGEXIT: the MSR protocol when the GHCB MSR carries a request code,
    /// else the GHCB page it points to.
    pub(super) fn vmgexit(&self, cx: &mut Ctx<'_>) -> InsnAction {
        self.stats.vmgexits.fetch_add(1, Ordering::Relaxed);
        let (vmm, vcpu, host) = (cx.vmm, cx.vcpu, cx.host);
        let Some(state) = self.vcpu(vcpu) else {
            return InsnAction::Done;
        };
        let (value, registered) = {
            let s = state.lock();
            (s.ghcb_msr, s.registered)
        };
        if value & proto::INFO_MASK != 0 {
            self.stats.msr_protocol.fetch_add(1, Ordering::Relaxed);
            let response = self.msr_protocol(vmm, value, host, &mut cx.fx);
            let mut s = state.lock();
            s.ghcb_msr = response;
            if response & proto::INFO_MASK == proto::REG_GPA_RESP {
                s.registered = Some(response & !proto::INFO_MASK);
            }
            return InsnAction::Done;
        }
        self.ghcb_page(vmm, vcpu, value, registered, host, &mut cx.fx)
    }

    /// The guest asked to be terminated: say why and stop the VM as QEMU
    /// does on KVM's SEV termination event.
    pub(super) fn terminate(&self, vmm: &Vmm, set: u64, code: u64, host: &dyn Host) {
        let why = format!(
            "the SNP guest requested termination: reason set {set}, code {code} ({})",
            term_reason(set, code)
        );
        eprintln!("cvmem: {why}");
        vmm.lifecycle.guest_panic(why);
        host.guest_panicked();
    }

    /// A VMGEXIT through the GHCB page at `gpa`, in the order of KVM's
    /// `sev_handle_vmgexit()` (arch/x86/kvm/svm/sev.c):
    ///
    /// - GPA 0 ("GHCB gpa is not set") and a GPA that no memslot covers
    ///   (`kvm_vcpu_map()` fails) are ignored: the guest resumes.
    /// - A GHCB GPA other than the one the vCPU registered through the MSR
    ///   protocol (`ghcb_gpa_is_registered()`, checked for every SNP guest
    ///   before the exit is looked at) makes KVM_RUN fail with -EINVAL, and
    ///   QEMU stops the VM: [`InsnAction::Stop`].
    /// - A registered GHCB that is not shared RAM is ignored too: KVM would
    ///   map the shared side of a private page, which here is the private
    ///   page itself (one backing page per GPA).
    pub(super) fn ghcb_page(
        &self,
        vmm: &Vmm,
        vcpu: u32,
        gpa: u64,
        registered: Option<u64>,
        host: &dyn Host,
        fx: &mut Effects,
    ) -> InsnAction {
        // KVM's memslots hold GPAs without the C-bit, so a GHCB MSR with
        // the C-bit (or any bit above the guest's memory) names no memslot.
        if gpa == 0 || vmm.backing_of(Gfn::new(gpa >> PAGE_SHIFT)).is_none() {
            return InsnAction::Done;
        }
        if registered != Some(gpa) {
            let was = registered.map_or_else(|| "none".to_owned(), |r| format!("{r:#x}"));
            vmm.stop(format!(
                "vCPU {vcpu} VMGEXIT through the GHCB at GPA {gpa:#x}, which it has not \
                 registered (registered: {was}); KVM's sev_handle_vmgexit() fails KVM_RUN \
                 with -EINVAL"
            ));
            return InsnAction::Stop;
        }
        let Some(backing) = self.shared_backing(vmm, gpa) else {
            return InsnAction::Done;
        };
        let mut page = vec![0u8; PAGE_SIZE as usize];
        // A GPA with bits 11:0 set is an MSR-protocol request, never here.
        if !host.phys_read(backing, &mut page) {
            return InsnAction::Done;
        }
        let mut g = Ghcb::new(page);
        if let Err(code) = self.nae(vmm, vcpu, gpa, &mut g, host, fx) {
            self.stats.ghcb_errors.fetch_add(1, Ordering::Relaxed);
            g.set(off::EXIT_INFO_1, 2);
            g.set(off::EXIT_INFO_2, code);
        }
        host.phys_write(backing, &g.page);
        if g.entry_failed {
            InsnAction::Stop
        } else {
            InsnAction::Done
        }
    }

    /// The QEMU address of the shared RAM page of `gpa` (alias bits
    /// removed), if it is one.
    pub(super) fn shared_backing(&self, vmm: &Vmm, gpa: u64) -> Option<BackingAddr> {
        let vm = vmm.vm();
        let d = vm.decode(Gpa::new(gpa))?;
        if vm.is_private(d.gfn) {
            return None;
        }
        vmm.backing_of(d.gfn)?.checked_add(d.offset)
    }

    /// Checks a scratch area of `len` bytes at `gpa` (`setup_vmgexit_scratch()`):
    /// inside the GHCB's shared buffer, or up to 16 pages of other shared RAM.
    pub(super) fn scratch(
        &self,
        vmm: &Vmm,
        ghcb_gpa: u64,
        gpa: u64,
        len: u64,
    ) -> Result<Scratch, u64> {
        let end = gpa.checked_add(len).ok_or(ghcb_err::INVALID_SCRATCH_AREA)?;
        if gpa == 0 {
            return Err(ghcb_err::INVALID_SCRATCH_AREA);
        }
        if gpa & !(PAGE_SIZE - 1) == ghcb_gpa {
            let buf = ghcb_gpa + off::SHARED_BUFFER as u64;
            if gpa < buf || end > buf + off::SHARED_BUFFER_LEN as u64 {
                return Err(ghcb_err::INVALID_SCRATCH_AREA);
            }
            return Ok(Scratch::InGhcb {
                off: (gpa - ghcb_gpa) as usize,
                len: len as usize,
            });
        }
        if len > SCRATCH_AREA_LIMIT {
            return Err(ghcb_err::INVALID_SCRATCH_AREA);
        }
        let mut page = gpa & !(PAGE_SIZE - 1);
        while page < end {
            if self.shared_backing(vmm, page).is_none() {
                return Err(ghcb_err::INVALID_SCRATCH_AREA);
            }
            page += PAGE_SIZE;
        }
        Ok(Scratch::Guest { gpa, len })
    }

    pub(super) fn scratch_read(
        &self,
        vmm: &Vmm,
        area: Scratch,
        g: &Ghcb,
        host: &dyn Host,
    ) -> Result<Vec<u8>, u64> {
        match area {
            Scratch::InGhcb { off, len } => Ok(g.page[off..off + len].to_vec()),
            Scratch::Guest { gpa, len } => {
                let mut buf = vec![0; len as usize];
                let backing = self
                    .shared_backing(vmm, gpa)
                    .ok_or(ghcb_err::INVALID_SCRATCH_AREA)?;
                if !host.phys_read(backing, &mut buf) {
                    return Err(ghcb_err::INVALID_SCRATCH_AREA);
                }
                Ok(buf)
            }
        }
    }

    pub(super) fn scratch_write(
        &self,
        vmm: &Vmm,
        area: Scratch,
        data: &[u8],
        g: &mut Ghcb,
        host: &dyn Host,
    ) -> Result<(), u64> {
        match area {
            Scratch::InGhcb { off, len } => {
                let n = len.min(data.len());
                g.page[off..off + n].copy_from_slice(&data[..n]);
                Ok(())
            }
            Scratch::Guest { gpa, .. } => {
                let backing = self
                    .shared_backing(vmm, gpa)
                    .ok_or(ghcb_err::INVALID_SCRATCH_AREA)?;
                if host.phys_write(backing, data) {
                    Ok(())
                } else {
                    Err(ghcb_err::INVALID_SCRATCH_AREA)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::hooks::fake::{FakeHost, MEM};
    use crate::hooks::{gpr, Insn, Regs};
    use crate::kvm::Kvm;

    use crate::snp::nae::GP_EVENT;
    use crate::snp::testutil::*;

    /// Writes the GHCB MSR of vCPU 0 and runs VMGEXIT; returns its action.
    fn vmgexit_at(kvm: &Kvm, host: &FakeHost, msr_value: u64) -> InsnAction {
        let mut regs = Regs::default();
        regs.gpr[gpr::RCX] = u64::from(msr::GHCB);
        regs.gpr[gpr::RAX] = msr_value & 0xffff_ffff;
        regs.gpr[gpr::RDX] = msr_value >> 32;
        kvm.insn(0, Insn::Wrmsr, &mut regs, host);
        kvm.insn(0, Insn::Vmgexit, &mut regs, host).0
    }

    #[test]
    fn an_unregistered_ghcb_stops_the_vm_as_kvm_run_fails() {
        // KVM's sev_handle_vmgexit(): GPA 0 and a GPA no memslot covers are
        // ignored; one the vCPU did not register fails KVM_RUN (-EINVAL).
        let kvm = guest(MEM);
        let host = FakeHost::new();
        assert_eq!(vmgexit_at(&kvm, &host, 0), InsnAction::Done);
        assert_eq!(vmgexit_at(&kvm, &host, MEM + 0x1000), InsnAction::Done);
        assert_eq!(vmgexit_at(&kvm, &host, GHCB | C_BIT), InsnAction::Done);
        assert!(!kvm.vmm.lifecycle.is_dead());
        // Registered elsewhere, then used at GHCB (shared RAM): stopped,
        // the GPA named, and the page left as it was.
        assert_eq!(msr_call(&kvm, &host, (2 << 52) | GHCB | 0x014), 0x015);
        assert_eq!(msr_call(&kvm, &host, 0x50_0000 | 0x012), 0x50_0000 | 0x013);
        put(&host, GHCB + off::EXIT_CODE as u64, exit::HV_FEATURES);
        assert_eq!(vmgexit_at(&kvm, &host, GHCB), InsnAction::Stop);
        assert!(kvm.vmm.lifecycle.is_dead());
        let why = kvm.vmm.lifecycle.describe();
        assert!(
            why.contains("VMGEXIT through the GHCB at GPA 0x400000, which it has not registered")
                && why.contains("registered: 0x500000"),
            "{why}"
        );
        assert_eq!(info(&host), (0, 0));
    }

    #[test]
    fn a_private_unregistered_ghcb_stops_the_vm_too() {
        // KVM checks the registration before it reads the page: a private
        // page that was never registered stops the VM as well.
        let kvm = guest(MEM);
        let host = FakeHost::new();
        assert_eq!(vmgexit_at(&kvm, &host, GHCB), InsnAction::Stop);
        assert!(kvm
            .vmm
            .lifecycle
            .describe()
            .contains("GPA 0x400000, which it has not registered (registered: none)"));
    }

    #[test]
    fn ghcb_page_exits() {
        let kvm = guest(MEM);
        let host = FakeHost::new();
        ghcb_setup(&kvm, &host);
        let std = |code| {
            [
                (off::EXIT_CODE, code),
                (off::EXIT_INFO_1, 0),
                (off::EXIT_INFO_2, 0),
            ]
        };
        ghcb_call(&kvm, &host, &std(exit::HV_FEATURES));
        assert_eq!(info(&host), (0, 0b11), "SNP and AP creation");
        // CPUID.
        let mut f = std(exit::CPUID).to_vec();
        f.push((off::RAX, 0x8000_001F));
        ghcb_call(&kvm, &host, &f);
        assert_eq!(
            get(&host, GHCB + off::RBX as u64),
            51 | (1 << 6) | (4 << 12)
        );
        // OUT and IN.
        let mut f = std(exit::IOIO).to_vec();
        f[1].1 = (0x3f8 << 16) | (1 << 4);
        f.push((off::RAX, 0x141));
        ghcb_call(&kvm, &host, &f);
        f[1].1 |= 1;
        ghcb_call(&kvm, &host, &f);
        assert_eq!(get(&host, GHCB + off::RAX as u64), 0x15a);
        assert_eq!(
            host.io.borrow()[..],
            [(0x3f8, 1, true, 0x41), (0x3f8, 1, false, 0)]
        );
        // MSR: a refused one asks for #GP.
        let mut f = std(exit::MSR).to_vec();
        f.push((off::RCX, 0x1234));
        ghcb_call(&kvm, &host, &f);
        assert_eq!(info(&host), (1, GP_EVENT));
        // Missing input, bad usage, unknown event.
        ghcb_call(&kvm, &host, &std(exit::CPUID));
        assert_eq!(info(&host), (2, ghcb_err::MISSING_INPUT));
        ghcb_call(&kvm, &host, &std(0x1234));
        assert_eq!(info(&host), (2, ghcb_err::INVALID_EVENT));
        // HLT is an automatic exit, never a GHCB event.
        ghcb_call(&kvm, &host, &std(0x78)); // SVM_EXIT_HLT
        assert_eq!(info(&host), (2, ghcb_err::INVALID_EVENT));
    }
}
