//! Non-automatic exits through the GHCB page (`sev_handle_vmgexit()`):
//! CPUID, IOIO, MSR, VMMCALL, MMIO, AP jump table, AP creation (ap.rs),
//! guest requests.

use super::ghcb::{ghcb_err, off, Ghcb, Scratch};
use super::*;
use crate::effects::Effects;
use crate::hooks::{gpr, Host, Regs};
use crate::vmm::Vmm;
use cvmem_model::{Gpa, PAGE_SIZE};
use std::sync::atomic::Ordering;

/// The event a refused MSR access asks the guest to raise: #GP, an
/// exception, valid (`X86_TRAP_GP | SVM_EVTINJ_TYPE_EXEPT | SVM_EVTINJ_VALID`).
pub const GP_EVENT: u64 = 13 | (3 << 8) | (1 << 31);

impl SnpFirmware {
    /// A non-automatic exit through the GHCB (`sev_es_validate_vmgexit()`
    /// then `sev_handle_vmgexit()`): `Err` is a `GHCB_ERR_*`; effects go to
    /// `fx`.
    pub(super) fn nae(
        &self,
        vmm: &Vmm,
        vcpu: u32,
        ghcb_gpa: u64,
        g: &mut Ghcb,
        host: &dyn Host,
        fx: &mut Effects,
    ) -> Result<(), u64> {
        if g.u32_at(off::USAGE) != 0 {
            return Err(ghcb_err::INVALID_USAGE);
        }
        let code = g.input(off::EXIT_CODE)?;
        let info1 = g.input(off::EXIT_INFO_1)?;
        let info2 = g.input(off::EXIT_INFO_2)?;
        g.set(off::EXIT_INFO_1, 0);
        g.set(off::EXIT_INFO_2, 0);
        match code {
            exit::CPUID => {
                let leaf = g.input(off::RAX)?;
                if leaf as u32 == 0xd {
                    g.input(off::XCR0)?;
                }
                let sub = g.optional(off::RCX);
                let out = self.cpuid(vmm, leaf as u32, sub as u32, host);
                for (o, v) in [off::RAX, off::RBX, off::RCX, off::RDX]
                    .into_iter()
                    .zip(out)
                {
                    g.set(o, u64::from(v));
                }
            }
            exit::IOIO => self.ioio(vmm, ghcb_gpa, info1, info2, g, host)?,
            exit::MSR => {
                let m = g.input(off::RCX)? as u32;
                if info1 == 0 {
                    match self.rdmsr(vcpu, m, host) {
                        Some(v) => {
                            g.set(off::RAX, v & 0xffff_ffff);
                            g.set(off::RDX, v >> 32);
                        }
                        None => g.raise(GP_EVENT),
                    }
                } else {
                    let v = (g.input(off::RDX)? << 32) | (g.input(off::RAX)? & 0xffff_ffff);
                    if !self.wrmsr(vcpu, m, v, host) {
                        g.raise(GP_EVENT);
                    }
                }
            }
            // AP_HLT_LOOP: KVM holds the AP until a SIPI (AP reset hold),
            // which QEMU only delivers to a CPU waiting for one after INIT;
            // cvmem returns at once, as a spurious wake-up would.
            exit::NMI_COMPLETE | exit::AP_HLT_LOOP => {}
            exit::VMMCALL => {
                let mut regs = Regs {
                    cpl: (g.input(off::CPL)? & 3) as u32,
                    ..Regs::default()
                };
                regs.gpr[gpr::RAX] = g.input(off::RAX)?;
                for (r, o) in [
                    (gpr::RBX, off::RBX),
                    (gpr::RCX, off::RCX),
                    (gpr::RDX, off::RDX),
                ] {
                    regs.gpr[r] = g.optional(o);
                }
                regs.gpr[gpr::RSI] = g.optional(off::RSI);
                vmm.hypercall(self, &mut regs, fx);
                g.set(off::RAX, regs.gpr[gpr::RAX]);
            }
            exit::MMIO_READ | exit::MMIO_WRITE => {
                let scratch = g.input(off::SCRATCH)?;
                let area = self.scratch(vmm, ghcb_gpa, scratch, info2)?;
                self.mmio(vmm, info1, code == exit::MMIO_WRITE, area, g, host)?;
            }
            exit::AP_JUMP_TABLE => match info1 {
                0 => self.ap_jump_table.store(info2, Ordering::Relaxed),
                1 => g.set(off::EXIT_INFO_2, self.ap_jump_table.load(Ordering::Relaxed)),
                _ => return Err(ghcb_err::INVALID_INPUT),
            },
            exit::PSC => {
                let scratch = g.input(off::SCRATCH)?;
                let result = self.psc(vmm, ghcb_gpa, scratch, g, host, fx)?;
                g.set(off::EXIT_INFO_2, result);
            }
            exit::GUEST_REQUEST | exit::EXT_GUEST_REQUEST => {
                if info1 % PAGE_SIZE != 0 || info2 % PAGE_SIZE != 0 || info1 == info2 {
                    return Err(ghcb_err::MISSING_INPUT);
                }
                let extended = code == exit::EXT_GUEST_REQUEST;
                let result = self.guest_request(vmm, extended, info1, info2, g, host)?;
                g.set(off::EXIT_INFO_2, result);
            }
            exit::HV_FEATURES => g.set(off::EXIT_INFO_2, proto::HV_FT_SUPPORTED),
            exit::AP_CREATION => {
                let outcome = self.ap_creation(vmm, info1, info2, g, host)?;
                g.entry_failed = outcome == super::ap::ApOutcome::EntryFailed;
            }
            exit::TERM_REQUEST => self.terminate(vmm, info1 & 0xf, (info1 >> 4) & 0xff, host),
            exit::UNSUPPORTED_EVENT => {
                let why = format!(
                    "the SNP guest met an event it cannot handle \
                     (SVM_VMGEXIT_UNSUPPORTED_EVENT, exit info {info1:#x}, {info2:#x})"
                );
                eprintln!("cvmem: {why}");
                vmm.lifecycle.guest_panic(why);
                host.guest_panicked();
            }
            _ => return Err(ghcb_err::INVALID_EVENT),
        }
        Ok(())
    }

    /// IOIO through the GHCB: `info1` in the SVM IOIO encoding; string
    /// forms move `info2` items through the scratch area.
    pub(super) fn ioio(
        &self,
        vmm: &Vmm,
        ghcb_gpa: u64,
        info1: u64,
        info2: u64,
        g: &mut Ghcb,
        host: &dyn Host,
    ) -> Result<(), u64> {
        let port = (info1 >> 16) as u16;
        let size: u8 = match (info1 >> 4) & 7 {
            1 => 1,
            2 => 2,
            4 => 4,
            _ => return Err(ghcb_err::INVALID_INPUT),
        };
        let is_in = info1 & 1 != 0;
        let mask = if size == 4 {
            u64::from(u32::MAX)
        } else {
            (1u64 << (8 * size)) - 1
        };
        if info1 & (1 << 2) != 0 {
            let bytes = info2
                .checked_mul(u64::from(size))
                .ok_or(ghcb_err::INVALID_INPUT)?;
            let scratch = g.input(off::SCRATCH)?;
            let area = self.scratch(vmm, ghcb_gpa, scratch, bytes)?;
            if is_in {
                let data: Vec<u8> = (0..info2)
                    .flat_map(|_| {
                        let v = host.pio(port, size, false, 0);
                        v.to_le_bytes()[..usize::from(size)].to_vec()
                    })
                    .collect();
                self.scratch_write(vmm, area, &data, g, host)?;
            } else {
                let data = self.scratch_read(vmm, area, g, host)?;
                for item in data.chunks(usize::from(size)) {
                    let mut b = [0u8; 4];
                    b[..item.len()].copy_from_slice(item);
                    host.pio(port, size, true, u32::from_le_bytes(b));
                }
            }
        } else if is_in {
            let v = u64::from(host.pio(port, size, false, 0)) & mask;
            // KVM keeps RAX's upper bytes for 1- and 2-byte INs.
            let old = if size < 4 { g.optional(off::RAX) } else { 0 };
            g.set(off::RAX, (old & !mask) | v);
        } else {
            let v = g.input(off::RAX)? & mask;
            host.pio(port, size, true, v as u32);
        }
        Ok(())
    }

    /// MMIO through the GHCB, done by QEMU at the QEMU address of `gpa` (a
    /// memslot's backing, or the address itself outside memslots). Private
    /// RAM is out of the host's reach: it reads as all ones and takes no
    /// writes, as for a device.
    pub(super) fn mmio(
        &self,
        vmm: &Vmm,
        gpa: u64,
        write: bool,
        area: Scratch,
        g: &mut Ghcb,
        host: &dyn Host,
    ) -> Result<(), u64> {
        let vm = vmm.vm();
        let d = vm.decode(Gpa::new(gpa)).ok_or(ghcb_err::INVALID_INPUT)?;
        let addr = d.gfn.gpa().raw() | d.offset;
        let len = area.len();
        if len == 0 || len > 8 || (addr ^ (addr + len - 1)) & !(PAGE_SIZE - 1) != 0 {
            return Err(ghcb_err::INVALID_INPUT);
        }
        // The device check and the access are on QEMU's side of the
        // memslot: a slot that was moved or made through the control
        // socket is backed elsewhere than its GPA.
        let at = vmm.qemu_addr(Gpa::new(gpa));
        let reachable = !self.launched() || vmm.device_access_allowed(at);
        if write {
            let data = self.scratch_read(vmm, area, g, host)?;
            if reachable {
                host.phys_write(at, &data);
            }
        } else {
            let mut data = vec![0xffu8; len as usize];
            if reachable && !host.phys_read(at, &mut data) {
                data.fill(0xff);
            }
            self.scratch_write(vmm, area, &data, g, host)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use cvmem_model::{BackingAddr, MemoryRegion, MemslotFlags, MemslotId};

    use super::*;
    use crate::hooks::fake::{FakeHost, MEM};
    use crate::snp::ghcb::off;
    use crate::snp::testutil::*;

    /// GHCB MMIO reaches QEMU's memory at the backing of the memslot that
    /// holds the GPA, not at the GPA: here a slot at 512M backed by QEMU's
    /// QEMU memory at 12M that no guest_memfd slot maps (a slot may not
    /// alias guest_memfd memory), as the control socket's create-memslot
    /// makes one. When the plugin passed addresses as u64, the device
    /// check and the access both took the GPA for a QEMU address and the
    /// write went nowhere.
    #[test]
    fn mmio_reaches_the_backing_of_a_slot_elsewhere_than_its_gpa() {
        let kvm = guest_with_ram(MEM / 2, MEM / 2);
        let host = FakeHost::new();
        ghcb_setup(&kvm, &host);
        kvm.vm()
            .set_memory_region(MemoryRegion {
                slot: MemslotId(9),
                flags: MemslotFlags::NONE,
                guest_phys_addr: Gpa::new(0x2000_0000),
                memory_size: PAGE_SIZE,
                backing: BackingAddr::new(0xc0_0000),
            })
            .unwrap()
            .ignore();
        let buffer = GHCB + off::SHARED_BUFFER as u64;
        let mmio = |code, value| {
            put(&host, buffer, value);
            ghcb_call(
                &kvm,
                &host,
                &[
                    (off::EXIT_CODE, code),
                    (off::EXIT_INFO_1, 0x2000_0010),
                    (off::EXIT_INFO_2, 8),
                    (off::SCRATCH, buffer),
                ],
            );
            assert_eq!(info(&host), (0, 0), "no GHCB error");
            get(&host, buffer)
        };
        mmio(exit::MMIO_WRITE, 0x1122_3344_5566_7788);
        assert_eq!(get(&host, 0xc0_0010), 0x1122_3344_5566_7788);
        put(&host, 0xc0_0010, 0xabcd);
        assert_eq!(mmio(exit::MMIO_READ, 0), 0xabcd);
    }
}
