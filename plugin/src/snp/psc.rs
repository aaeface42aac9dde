//! Page-state changes through the GHCB (`snp_begin_psc()`).

use super::ghcb::{ghcb_err, Ghcb};
use super::*;
use crate::effects::Effects;
use crate::hooks::Host;
use crate::vmm::Vmm;
use cvmem_model::{Gfn, GfnRange, PageLevel, PAGE_SIZE};
use std::sync::atomic::Ordering;

/// Page-state change results in `SW_EXITINFO2` (KVM's `VMGEXIT_PSC_ERROR_*`).
pub mod psc_err {
    #![allow(missing_docs)]
    pub const INVALID_HDR: u64 = (1 << 32) | 1;
    pub const INVALID_ENTRY: u64 = (1 << 32) | 2;
    pub const GENERIC: u64 = 0x100 << 32;
    /// At most this many entries in a descriptor (`VMGEXIT_PSC_MAX_ENTRY`).
    pub const MAX_ENTRY: u64 = 253;
}

/// One entry's share of a page-state change.
#[derive(Clone, Copy, Debug)]
pub(super) struct PscStep {
    /// The entry's index and byte offset in the descriptor.
    idx: u64,
    at: usize,
    /// The frames to convert.
    start: Gfn,
    pages: u64,
    /// To private or shared; `None`: an operation without effect.
    private: Option<bool>,
    /// The entry with its progress (`cur_page`) updated.
    entry: u64,
    /// The entry is complete after this step.
    done: bool,
}

impl SnpFirmware {
    /// A page-state change through the GHCB (`snp_begin_psc()`): the
    /// descriptor at `scratch`, processed from `cur_entry` (and each entry
    /// from `cur_page`) for at most `psc_chunk` bytes, progress written back.
    /// Returns the `SW_EXITINFO2` result; the conversions' effects go to
    /// `fx`.
    pub(super) fn psc(
        &self,
        vmm: &Vmm,
        ghcb_gpa: u64,
        scratch: u64,
        g: &mut Ghcb,
        host: &dyn Host,
        fx: &mut Effects,
    ) -> Result<u64, u64> {
        let hdr_area = self.scratch(vmm, ghcb_gpa, scratch, 8)?;
        let hdr = self.scratch_read(vmm, hdr_area, g, host)?;
        let cur = u64::from(u16::from_le_bytes([hdr[0], hdr[1]]));
        let end = u64::from(u16::from_le_bytes([hdr[2], hdr[3]]));
        if end >= psc_err::MAX_ENTRY {
            return Ok(psc_err::INVALID_HDR);
        }
        let area = self.scratch(vmm, ghcb_gpa, scratch, 8 + 8 * (end + 1))?;
        let mut desc = self.scratch_read(vmm, area, g, host)?;
        // The work, entry by entry from `cur_entry`, within the budget: each
        // step's range, its operation and the entry's new value.
        let mut budget = self.psc_chunk / PAGE_SIZE;
        let mut result = 0;
        let mut steps: Vec<PscStep> = Vec::new();
        for idx in cur..=end {
            let at = 8 + 8 * idx as usize;
            let e = u64::from_le_bytes(desc[at..at + 8].try_into().expect("8 bytes"));
            let cur_page = e & 0xfff;
            let gfn = Gfn::new((e >> 12) & ((1 << 40) - 1));
            let op = (e >> 52) & 0xf;
            let level = if (e >> 56) & 1 != 0 {
                PageLevel::Size2M
            } else {
                PageLevel::Size4K
            };
            let npages = level.pages();
            if cur_page > npages || !gfn.is_aligned(level) {
                result = psc_err::INVALID_ENTRY;
                break;
            }
            let todo = (npages - cur_page).min(budget);
            let private = match op {
                proto::PSC_OP_PRIVATE => Some(true),
                proto::PSC_OP_SHARED => Some(false),
                // Other operations (PSMASH, UNSMASH) complete without
                // effect, as in KVM.
                _ => None,
            };
            if private.is_some() {
                budget -= todo;
            }
            steps.push(PscStep {
                idx,
                at,
                start: gfn.checked_add(cur_page).expect("a 40-bit gfn"),
                pages: todo,
                private,
                entry: (e & !0xfff) | (cur_page + todo),
                done: cur_page + todo == npages,
            });
            if cur_page + todo < npages {
                break;
            }
        }
        // Adjacent steps with the same operation become one conversion, as
        // KVM merges them into one KVM_HC_MAP_GPA_RANGE exit; a step's
        // progress is recorded once its conversion succeeded.
        let mut idx = cur;
        let mut i = 0;
        'runs: while i < steps.len() {
            let mut j = i + 1;
            while j < steps.len()
                && steps[j].private == steps[i].private
                && steps[j - 1].start.checked_add(steps[j - 1].pages) == Some(steps[j].start)
            {
                j += 1;
            }
            let pages: u64 = steps[i..j].iter().map(|s| s.pages).sum();
            if let (Some(private), true) = (steps[i].private, pages > 0) {
                let range = GfnRange::from_start_len(steps[i].start, pages)
                    .ok_or(ghcb_err::INVALID_INPUT)?;
                match vmm.convert(range, private, false, fx) {
                    Ok(()) => {}
                    Err(_) => {
                        self.stats.psc_refused.fetch_add(1, Ordering::Relaxed);
                        result = psc_err::GENERIC;
                        break 'runs;
                    }
                }
                self.stats.psc_pages.fetch_add(pages, Ordering::Relaxed);
            }
            for s in &steps[i..j] {
                desc[s.at..s.at + 8].copy_from_slice(&s.entry.to_le_bytes());
                idx = if s.done { s.idx + 1 } else { s.idx };
            }
            i = j;
        }
        desc[0..2].copy_from_slice(&(idx as u16).to_le_bytes());
        self.scratch_write(vmm, area, &desc, g, host)?;
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snp::ghcb::off;

    use crate::hooks::fake::{FakeHost, MEM};

    use crate::snp::testutil::*;

    #[test]
    fn psc_through_the_ghcb_makes_partial_progress() {
        let kvm = guest(MEM);
        let host = FakeHost::new();
        ghcb_setup(&kvm, &host);
        let desc = GHCB + off::SHARED_BUFFER as u64;
        // Entries: 2M at 8 MiB to shared, 4K at 1 MiB to shared, a bad
        // entry (2M, unaligned).
        let entry = |gfn: u64, op: u64, huge: u64| (huge << 56) | (op << 52) | (gfn << 12);
        let run = || {
            ghcb_call(
                &kvm,
                &host,
                &[
                    (off::EXIT_CODE, exit::PSC),
                    (off::EXIT_INFO_1, 0),
                    (off::EXIT_INFO_2, 0),
                    (off::SCRATCH, desc),
                ],
            )
        };
        let load = || {
            put(&host, desc, 1 << 16); // cur 0, end 1
            put(&host, desc + 8, entry(0x800, 2, 1));
            put(&host, desc + 16, entry(0x100, 2, 0));
        };
        host.mem.borrow_mut()[0x80_0000..0x80_0000 + 0x800].fill(0x5a);
        ghcb_call(&kvm, &host, &[]);
        load();
        // The chunk is 64K: 16 pages per VMGEXIT.
        run();
        assert_eq!(info(&host), (0, 0));
        assert_eq!(get(&host, desc) & 0xffff, 0, "still on entry 0");
        assert_eq!(get(&host, desc + 8) & 0xfff, 16);
        let mut calls = 1;
        while get(&host, desc) & 0xffff <= 1 {
            run();
            assert_eq!(info(&host), (0, 0));
            calls += 1;
            assert!(calls < 100);
        }
        assert_eq!(calls, 33);
        assert_eq!(get(&host, desc + 8) & 0xfff, 512);
        assert!(!kvm.vm().is_private(Gfn::new(0x9ff)) && !kvm.vm().is_private(Gfn::new(0x100)));
        assert!(kvm.vm().is_private(Gfn::new(0xa00)));
        assert_eq!(host.mem.borrow()[0x80_0000], 0);
        // A bad header and a bad entry.
        put(&host, desc, 300 << 16);
        run();
        assert_eq!(info(&host), (0, psc_err::INVALID_HDR));
        put(&host, desc, 0);
        put(&host, desc + 8, entry(0x801, 1, 1));
        run();
        assert_eq!(info(&host), (0, psc_err::INVALID_ENTRY));
        // Adjacent entries with one operation are one conversion, as KVM
        // merges them; a gap or another operation starts a new one.
        let before = kvm.vm().stats().conversions;
        put(&host, desc, 3 << 16);
        for (i, e) in [
            entry(0x200, 2, 0),
            entry(0x201, 2, 0),
            entry(0x202, 2, 0),
            entry(0x300, 2, 0),
        ]
        .into_iter()
        .enumerate()
        {
            put(&host, desc + 8 + 8 * i as u64, e);
        }
        run();
        assert_eq!(info(&host), (0, 0));
        assert_eq!(get(&host, desc) & 0xffff, 4);
        assert_eq!(kvm.vm().stats().conversions - before, 2);
    }
}
