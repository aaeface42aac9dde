//! The guest's stage-1 page tables, walked in software for instructions
//! whose operand is a linear address (PVALIDATE, RMPADJUST) or whose bytes
//! the plugin must read (a TD's I/O instruction, for its #VE information).

use cvmem_model::{Gpa, Gva, PAGE_SIZE};

use crate::hooks::{Fault, Host, Regs};
use crate::vmm::{vector, Vmm};

/// Translates linear address `la` through the guest's page tables, as the
/// CPU does for PVALIDATE's and RMPADJUST's RAX (APM vol. 2 §5.3-5.5): the
/// GPA with the leaf's C-bit, or the #PF (not present) to raise. Tables are
/// read at their QEMU address ([`Vmm::qemu_addr`]: alias bits removed, and
/// through the memslot that holds them).
pub fn linear_to_gpa(vmm: &Vmm, regs: &Regs, la: Gva, host: &dyn Host) -> Result<Gpa, Fault> {
    const CR0_PG: u64 = 1 << 31;
    const CR4_PSE: u64 = 1 << 4;
    const CR4_PAE: u64 = 1 << 5;
    const CR4_LA57: u64 = 1 << 12;
    const EFER_LMA: u64 = 1 << 10;
    const PRESENT: u64 = 1 << 0;
    const PS: u64 = 1 << 7;
    const ADDR: u64 = 0x000f_ffff_ffff_f000;
    let long = regs.efer & EFER_LMA != 0;
    let la = if long {
        la.raw()
    } else {
        la.raw() & 0xffff_ffff
    };
    if regs.cr0 & CR0_PG == 0 {
        return Ok(Gpa::new(la));
    }
    // #PF, not present; U for CPL 3.
    let not_present = || Fault {
        vector: vector::PF,
        error_code: Some(if regs.cpl == 3 { 1 << 2 } else { 0 }),
        cr2: Some(la),
    };
    // Per level, top down: the index's shift and width, and whether a PS
    // entry maps a page there.
    let (root, levels, wide): (u64, &[(u32, u64, bool)], bool) = if long {
        const L5: [(u32, u64, bool); 5] = [
            (48, 0x1ff, false),
            (39, 0x1ff, false),
            (30, 0x1ff, true),
            (21, 0x1ff, true),
            (12, 0x1ff, true),
        ];
        let n = if regs.cr4 & CR4_LA57 != 0 { 0 } else { 1 };
        (regs.cr3 & ADDR, &L5[n..], true)
    } else if regs.cr4 & CR4_PAE != 0 {
        const PAE: [(u32, u64, bool); 3] = [(30, 0x3, false), (21, 0x1ff, true), (12, 0x1ff, true)];
        (regs.cr3 & 0xffff_ffe0, &PAE, true)
    } else {
        const LEGACY: [(u32, u64, bool); 2] = [(22, 0x3ff, true), (12, 0x3ff, true)];
        (regs.cr3 & 0xffff_f000, &LEGACY, false)
    };
    let (entry_size, addr_mask) = if wide { (8, ADDR) } else { (4, 0xffff_f000) };
    let mut table = root;
    for (i, &(shift, index_mask, large)) in levels.iter().enumerate() {
        let entry = Gpa::new(table + ((la >> shift) & index_mask) * entry_size);
        let at = vmm.qemu_addr(entry);
        let mut b = [0u8; 8];
        if !host.phys_read(at, &mut b[..entry_size as usize]) {
            return Err(not_present());
        }
        let pte = u64::from_le_bytes(b);
        if pte & PRESENT == 0 {
            return Err(not_present());
        }
        let last = i + 1 == levels.len();
        let ps = large && pte & PS != 0 && (wide || regs.cr4 & CR4_PSE != 0);
        if last || ps {
            let page = (1u64 << shift) - 1;
            let frame = if wide { pte & ADDR } else { pte & 0xffff_f000 };
            return Ok(Gpa::new((frame & !page) | (la & page)));
        }
        table = pte & addr_mask;
    }
    Err(not_present())
}

/// Reads `buf.len()` bytes of guest memory at linear address `la` through
/// the guest's page tables (one walk per page touched); `false` if a page is
/// not mapped or not memory.
pub fn read_linear(vmm: &Vmm, regs: &Regs, la: Gva, buf: &mut [u8], host: &dyn Host) -> bool {
    let vm = vmm.vm();
    let mut done = 0;
    while done < buf.len() {
        let at = Gva::new(la.raw().wrapping_add(done as u64));
        let n = ((PAGE_SIZE - at.raw() % PAGE_SIZE) as usize).min(buf.len() - done);
        let Ok(gpa) = linear_to_gpa(vmm, regs, at, host) else {
            return false;
        };
        let Some(qemu) = vm
            .decode(gpa)
            .and_then(|d| vmm.backing_of(d.gfn)?.checked_add(d.offset))
        else {
            return false;
        };
        if !host.phys_read(qemu, &mut buf[done..done + n]) {
            return false;
        }
        done += n;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::fake::{report_ram, FakeHost, MEM};
    use crate::kvm::Kvm;
    use cvmem_model::BackingAddr;
    use cvmem_model::VmType;

    #[test]
    fn linear_reads_cross_pages_and_stop_outside_memory() {
        let kvm = Kvm::with_type(VmType::Default, 1).unwrap();
        report_ram(&kvm);
        let host = FakeHost::new();
        host.phys_write(BackingAddr::new(0x1ffe), &[1, 2, 3, 4]);
        // Paging off: linear = guest-physical.
        let regs = Regs::default();
        let mut b = [0u8; 4];
        assert!(read_linear(
            &kvm.vmm,
            &regs,
            Gva::new(0x1ffe),
            &mut b,
            &host
        ));
        assert_eq!(b, [1, 2, 3, 4]);
        assert!(!read_linear(
            &kvm.vmm,
            &regs,
            Gva::new(MEM - 2),
            &mut b,
            &host
        ));
    }
}
