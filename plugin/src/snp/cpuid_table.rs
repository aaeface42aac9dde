//! The SNP CPUID page: the CPUID values the guest may trust, placed in its
//! memory at launch (SNP_LAUNCH_UPDATE with page type CPUID).
//!
//! The VMM proposes one entry per CPUID function (and sub-function) the
//! guest's CPU model has; the AMD-SP checks them and writes the page. An
//! SNP guest takes CPUID from this page and asks the hypervisor only for
//! the few per-vCPU fields it patches in (Linux `snp_cpuid()` and
//! `snp_cpuid_postprocess()` in arch/x86/coco/sev/shared.c). A function
//! missing from the table reads as zeros when it lies within the ranges
//! the table's own leaves 0, 0x40000000 and 0x80000000 announce, so
//! all-zero entries are left out, as QEMU does.
//!
//! Layout (SNP firmware ABI, "CPUID_FUNCTION" and the CPUID page; Linux
//! `struct snp_cpuid_table`): u32 count, 12 reserved bytes, then up to 64
//! entries of 48 bytes: EAX_IN, ECX_IN (u32), XCR0_IN, XSS_IN (u64), EAX,
//! EBX, ECX, EDX (u32), 8 reserved bytes.
//!
//! Not modelled: the firmware's CPUID policy, which refuses or clears
//! bits a guest may not be given; cvmem's table holds what the guest's
//! CPU model reports, the values cvmem answers CPUID #VCs with.

use cvmem_model::PAGE_SIZE;

/// The firmware's limit on entries (SNP firmware ABI; Linux
/// `SNP_CPUID_COUNT_MAX`).
pub const MAX_ENTRIES: usize = 64;
const HEADER: usize = 16;
const ENTRY: usize = 48;

/// One entry of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuidEntry {
    /// The function (EAX in).
    pub leaf: u32,
    /// The sub-function (ECX in), 0 for functions that have none.
    pub subleaf: u32,
    /// XCR0 the entry holds for (leaf 0xD sub-functions 0 and 1), else 0.
    pub xcr0_in: u64,
    /// EAX, EBX, ECX, EDX.
    pub regs: [u32; 4],
}

/// The functions whose ECX selects a sub-function (Linux
/// `cpuid_function_is_indexed()`).
fn indexed(leaf: u32) -> bool {
    matches!(
        leaf,
        0x4 | 0x7
            | 0xb
            | 0xd
            | 0xf
            | 0x10
            | 0x12
            | 0x14
            | 0x17
            | 0x18
            | 0x1d
            | 0x1e
            | 0x1f
            | 0x24
            | 0x8000_001d
            | 0x8000_0020
            | 0x8000_0026
    )
}

/// The sub-functions of `leaf` worth an entry, given `cpuid`.
fn subleaves(leaf: u32, cpuid: &dyn Fn(u32, u32) -> [u32; 4]) -> Vec<u32> {
    // Enumeration ends where a level reports type 0; 64 is a bound for
    // a CPU model that never does.
    let until = |stop: &dyn Fn([u32; 4]) -> bool| -> Vec<u32> {
        (0..64).take_while(|&s| !stop(cpuid(leaf, s))).collect()
    };
    match leaf {
        // Cache parameters: EAX[4:0] type 0 ends the list.
        0x4 | 0x8000_001d => until(&|r| r[0] & 0x1f == 0),
        // Extended topology: ECX[15:8] level type 0 ends it.
        0xb | 0x1f => until(&|r| (r[2] >> 8) & 0xff == 0),
        // EAX of sub-function 0 is the last sub-function.
        0x7 | 0x14 | 0x17 | 0x18 | 0x1d | 0x1e | 0x24 => (0..=cpuid(leaf, 0)[0].min(63)).collect(),
        // XSAVE: 0 and 1, then one per supported state component.
        0xd => {
            let [xcr0_lo, _, _, xcr0_hi] = cpuid(0xd, 0);
            let [_, _, xss_lo, xss_hi] = cpuid(0xd, 1);
            let supported = (u64::from(xcr0_hi) << 32 | u64::from(xcr0_lo))
                | (u64::from(xss_hi) << 32 | u64::from(xss_lo));
            [0, 1]
                .into_iter()
                .chain((2..63).filter(|&i| supported & (1u64 << i) != 0))
                .collect()
        }
        0xf => vec![0, 1],
        0x10 => (0..4).collect(),
        // SGX is not given to SNP guests.
        0x12 => Vec::new(),
        // Every other function, indexed or not, at sub-function 0.
        _ => vec![0],
    }
}

/// The entries the VMM proposes for a CPU model whose CPUID (as the guest
/// sees it) is `cpuid`: every standard, hypervisor and extended function up
/// to the maximum leaf 0/0x40000000/0x80000000 report, all-zero ones left
/// out. `Err` if they do not fit in [`MAX_ENTRIES`].
pub fn entries(cpuid: &dyn Fn(u32, u32) -> [u32; 4]) -> Result<Vec<CpuidEntry>, String> {
    let mut out = Vec::new();
    let range = |base: u32, out: &mut Vec<CpuidEntry>| {
        let max = cpuid(base, 0)[0];
        // A range that is not there reports garbage or zero as its maximum.
        if max < base || max > base + 0xff {
            return;
        }
        for leaf in base..=max {
            for subleaf in subleaves(leaf, cpuid) {
                let regs = cpuid(leaf, subleaf);
                if regs == [0; 4] {
                    continue;
                }
                // The XSAVE size entries are those of XCR0 = x87 only
                // (QEMU's sev.c sets XCR0_IN 1 for them; Linux looks for
                // 1 or 3 with XSS_IN 0 and computes the rest itself).
                let xcr0_in = u64::from(leaf == 0xd && subleaf <= 1);
                out.push(CpuidEntry {
                    leaf,
                    subleaf: if indexed(leaf) { subleaf } else { 0 },
                    xcr0_in,
                    regs,
                });
            }
        }
    };
    range(0, &mut out);
    range(0x4000_0000, &mut out);
    range(0x8000_0000, &mut out);
    if out.len() > MAX_ENTRIES {
        return Err(format!(
            "the CPU model has {} CPUID entries, more than the {MAX_ENTRIES} an SNP CPUID page \
             holds: use a smaller model (-cpu EPYC-v4,phys-bits=52)",
            out.len()
        ));
    }
    Ok(out)
}

/// The CPUID page holding `entries` (at most [`MAX_ENTRIES`]).
pub fn page(entries: &[CpuidEntry]) -> Vec<u8> {
    let mut p = vec![0u8; PAGE_SIZE as usize];
    let n = entries.len().min(MAX_ENTRIES);
    p[0..4].copy_from_slice(&(n as u32).to_le_bytes());
    for (i, e) in entries[..n].iter().enumerate() {
        let o = HEADER + i * ENTRY;
        p[o..o + 4].copy_from_slice(&e.leaf.to_le_bytes());
        p[o + 4..o + 8].copy_from_slice(&e.subleaf.to_le_bytes());
        p[o + 8..o + 16].copy_from_slice(&e.xcr0_in.to_le_bytes());
        // XSS_IN (o + 16) stays 0.
        for (r, v) in e.regs.iter().enumerate() {
            let at = o + 24 + 4 * r;
            p[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small CPU model: leaves 0-0xD, no hypervisor range, extended up
    /// to 0x8000001F, x87+SSE+AVX in XCR0.
    fn model(leaf: u32, sub: u32) -> [u32; 4] {
        match (leaf, sub) {
            (0, _) => [0xd, 0x6874_7541, 0x444d_4163, 0x6974_6e65],
            (1, _) => [0x00a0_0f11, 0x0000_0800, 0x8020_0000, 0x078b_fbff],
            (4, s) if s < 3 => [0x121 + s, 0x1c0_003f, 0x3f, 0],
            (7, 0) => [1, 0x219c_07ab, 0, 0],
            (7, 1) => [0x10, 0, 0, 0],
            (0xb, 0) => [0, 1, 0x100, 0],
            (0xb, 1) => [0, 1, 0x201, 0],
            (0xd, 0) => [0x7, 0x340, 0x340, 0],
            (0xd, 1) => [0xf, 0x340, 0, 0],
            (0xd, 2) => [0x100, 0x240, 0, 0],
            (0x4000_0000, _) => [0, 0, 0, 0],
            (0x8000_0000, _) => [0x8000_001f, 0, 0, 0],
            (0x8000_001f, _) => [0x3a, 0x4073, 0, 0],
            _ => [0; 4],
        }
    }

    #[test]
    fn the_table_lists_every_nonzero_function_and_subfunction() {
        let e = entries(&model).unwrap();
        let keys: Vec<(u32, u32)> = e.iter().map(|e| (e.leaf, e.subleaf)).collect();
        assert_eq!(
            keys,
            [
                (0, 0),
                (1, 0),
                (4, 0),
                (4, 1),
                (4, 2),
                (7, 0),
                (7, 1),
                (0xb, 0),
                (0xb, 1),
                (0xd, 0),
                (0xd, 1),
                (0xd, 2),
                (0x8000_0000, 0),
                (0x8000_001f, 0),
            ]
        );
        let xcr0: Vec<u64> = e.iter().map(|e| e.xcr0_in).collect();
        assert_eq!(&xcr0[9..12], &[1, 1, 0]);
    }

    #[test]
    fn the_page_has_linux_layout() {
        let e = entries(&model).unwrap();
        let p = page(&e);
        assert_eq!(u32::from_le_bytes(p[0..4].try_into().unwrap()), 14);
        // Entry 9: leaf 0xD sub 0, XCR0_IN 1, EBX 0x340.
        let o = HEADER + 9 * ENTRY;
        assert_eq!(u32::from_le_bytes(p[o..o + 4].try_into().unwrap()), 0xd);
        assert_eq!(u64::from_le_bytes(p[o + 8..o + 16].try_into().unwrap()), 1);
        assert_eq!(
            u32::from_le_bytes(p[o + 28..o + 32].try_into().unwrap()),
            0x340
        );
    }

    #[test]
    fn too_many_functions_are_refused() {
        let big = |leaf: u32, sub: u32| match leaf {
            0 => [0x50, 1, 1, 1],
            _ if leaf < 0x51 => [leaf, sub, 1, 1],
            _ => [0; 4],
        };
        let err = entries(&big).unwrap_err();
        assert!(err.contains("more than the 64"), "{err}");
    }
}
