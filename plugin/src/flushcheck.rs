//! The missing-flush detector (`flush-check=on`): reports every guest access
//! made through a translation the model has zapped but not yet flushed, with
//! the zap whose flush is missing.
//!
//! QEMU's softTLB is the TLB: once the stage-2 callback allowed a
//! translation, later accesses through it never reach the plugin. So the
//! detector observes accesses the way audit mode does, with QEMU's stock
//! memory callbacks (one after every guest load and store), and checks each
//! against the model's per-vCPU TLB ([`Vm::tlb_missing_flush`]):
//!
//! - at every stage-2 *allow* the model records the translation it handed
//!   to QEMU (`Vm::tlb_record_current`, keyed by the raw GPA frame) and this module
//!   records which linear page it was for (QEMU's softTLB is keyed by the
//!   linear address, and the memory callback gives the linear address and
//!   the backing address, not the raw GPA);
//! - every zap marks the model's entries whose leaf it removed with the zap
//!   ([`cvmem_model::ZapRecord`]), and every flush the model asks for drops
//!   the entries it covers;
//! - an access whose entry is still marked went through a stale translation:
//!   that is a missing flush.
//!
//! A softTLB flush the model does not see (the guest's INVLPG or CR3 write,
//! a test-device FLUSH) leaves the model's entry in place, but the next
//! access then misses in QEMU and its stage-2 fill records a fresh entry
//! before the memory callback runs, so no false report follows. Under MTTCG
//! a zap racing with a fill on another vCPU may go unreported (the fill
//! records after the zap marked); zaps cvmem makes itself always flush.
//!
//! It costs what audit mode costs (a callback per guest access): a
//! debugging option, off by default.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use cvmem_model::VcpuId;
use cvmem_model::{Gpa, Gva, Translation, Vm, ZapRecord};
use parking_lot::Mutex;

use crate::hooks::{Access, Stage2Answer, Stage2Request};

/// How many reports the exit summary keeps word for word.
pub const KEPT: usize = 8;

const PAGE_MASK: u64 = !0xfff;

/// One access through a stale translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MissingFlush {
    /// The vCPU that accessed.
    pub vcpu: u32,
    /// The linear address accessed.
    pub gva: Gva,
    /// The raw guest-physical address (alias bits included) the stale
    /// translation was for.
    pub gpa: Gpa,
    /// Load or store.
    pub access: Access,
    /// The stale translation.
    pub translation: Translation,
    /// The zap that should have been followed by a flush.
    pub zap: ZapRecord,
}

/// The detector's state.
#[derive(Debug)]
pub struct FlushCheck {
    /// Per vCPU: linear page -> raw GPA page of the last allowed fill. Only
    /// the vCPU's own thread locks its map.
    pages: Box<[Mutex<HashMap<Gva, Gpa>>]>,
    /// Accesses reported.
    pub reports: AtomicU64,
    /// The first [`KEPT`] reports.
    pub first: Mutex<Vec<MissingFlush>>,
}

impl FlushCheck {
    /// A detector for `max_vcpus` vCPUs; turns on the model's TLB tracking.
    pub fn new(vm: &Vm, max_vcpus: u32) -> FlushCheck {
        vm.set_tlb_tracking(true);
        FlushCheck {
            pages: (0..max_vcpus.max(1))
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            reports: AtomicU64::new(0),
            first: Mutex::new(Vec::new()),
        }
    }

    /// The stage-2 callback answered `req` with `answer`: if QEMU is about
    /// to cache it, record the translation in the model's TLB and which
    /// linear page it is for. Out of line, and called only with the
    /// detector on, so that the hot path without it keeps its code.
    #[cold]
    #[inline(never)]
    pub fn stage2_answered(&self, vm: &Vm, req: &Stage2Request, answer: &Stage2Answer) {
        // What QEMU caches: the final access's translation, not those of
        // page-table reads.
        if req.page_walk || !matches!(answer, Stage2Answer::Allow { .. }) {
            return;
        }
        if vm
            .tlb_record_current(VcpuId(req.vcpu_index), req.gpa)
            .is_some()
        {
            self.filled(req.vcpu_index, req.gva, req.gpa);
        }
    }

    /// A stage-2 fill for `gva` was allowed with the raw `gpa`.
    pub fn filled(&self, vcpu: u32, gva: Gva, gpa: Gpa) {
        if let Some(m) = self.pages.get(vcpu as usize) {
            m.lock().insert(
                Gva::new(gva.raw() & PAGE_MASK),
                Gpa::new(gpa.raw() & PAGE_MASK),
            );
        }
    }

    /// A guest load or store at `gva` happened: the report if it went
    /// through a translation a zap left stale.
    pub fn access(&self, vm: &Vm, vcpu: u32, gva: Gva, access: Access) -> Option<MissingFlush> {
        let page = *self
            .pages
            .get(vcpu as usize)?
            .lock()
            .get(&Gva::new(gva.raw() & PAGE_MASK))?;
        let gpa = Gpa::new(page.raw() | (gva.raw() & !PAGE_MASK));
        let (translation, zap) = vm.tlb_missing_flush(VcpuId(vcpu), gpa)?;
        let report = MissingFlush {
            vcpu,
            gva,
            gpa,
            access,
            translation,
            zap,
        };
        self.reports.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first.lock();
        if first.len() < KEPT {
            first.push(report);
        }
        Some(report)
    }
}

impl FlushCheck {
    /// The exit summary's lines: the count, then the first reports.
    pub fn summary(&self, out: &mut String) {
        use std::fmt::Write;
        let n = self.reports.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "  missing flush {n} accesses through a zapped, unflushed translation"
        );
        for r in self.first.lock().iter() {
            let access = match r.access {
                Access::Read => "read",
                Access::Write => "write",
                Access::Fetch => "fetch",
            };
            let _ = writeln!(
                out,
                "    vcpu {} {access} gva {:#x} gpa {:#x} (backing {:#x}) after zap #{} of gfn {:#x}+{} in root {} ({:?}, {:?}) with no flush since",
                r.vcpu,
                r.gva.raw(),
                r.gpa.raw(),
                r.translation.backing.raw(),
                r.zap.seq,
                r.zap.range.start().raw(),
                r.zap.range.len(),
                r.zap.root.0,
                r.zap.role,
                r.zap.reason,
            );
        }
        if n > self.first.lock().len() as u64 {
            let _ = writeln!(out, "    ... (the trace has every one)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cvmem_model::{
        BackingAddr, GfnRange, MemoryRegion, MemslotFlags, MemslotId, VmConfig, VmType, ZapFilter,
    };

    #[test]
    fn reports_an_access_through_a_zapped_unflushed_translation() {
        let vm = Vm::new(VmConfig::new(VmType::Default)).unwrap();
        vm.set_memory_region(MemoryRegion {
            slot: MemslotId(0),
            flags: MemslotFlags::NONE,
            guest_phys_addr: Gpa::new(0),
            memory_size: 4 << 20,
            backing: BackingAddr::new(0),
        })
        .unwrap()
        .ignore();
        let fc = FlushCheck::new(&vm, 1);
        let (gva, gpa) = (0xffff_8000_0000_5010u64, 0x5010u64);
        let mut req = Stage2Request {
            gpa: Gpa::new(gpa),
            gva: Gva::new(gva),
            vcpu_index: 0,
            access: Access::Read,
            cpl: 0,
            page_walk: true,
            paging: true,
        };
        let allow = Stage2Answer::Allow {
            backing: cvmem_model::BackingAddr::new(gpa),
            prot: crate::hooks::prot::ALL,
            page_size: 4096,
            cache_span: 0,
        };
        // Before the fill, and for page-table reads and refusals (QEMU caches
        // none of them), nothing is recorded.
        fc.stage2_answered(&vm, &req, &allow);
        assert!(matches!(
            vm.stage2(VcpuId(0), Gpa::new(gpa), cvmem_model::Access::Read),
            cvmem_model::Stage2::Mapped(_)
        ));
        fc.stage2_answered(&vm, &req, &allow);
        req.page_walk = false;
        fc.stage2_answered(&vm, &req, &Stage2Answer::Retry);
        assert!(vm.tlb_entries(VcpuId(0)).is_empty());
        fc.stage2_answered(&vm, &req, &allow);
        assert_eq!(vm.tlb_entries(VcpuId(0)).len(), 1);
        assert_eq!(fc.access(&vm, 0, Gva::new(gva), Access::Read), None);
        let range = GfnRange::from_start_len(Gpa::new(gpa).gfn(), 1).unwrap();
        let flush = vm.zap_gfn_range(range, ZapFilter::ALL);
        let r = fc.access(&vm, 0, Gva::new(gva + 8), Access::Write).unwrap();
        assert_eq!((r.gpa, r.zap.range), (Gpa::new(gpa + 8), range));
        assert_eq!(fc.access(&vm, 0, Gva::new(0x1234_5000), Access::Read), None);
        vm.flush(flush);
        assert_eq!(fc.access(&vm, 0, Gva::new(gva), Access::Read), None);
        assert_eq!(fc.reports.load(Ordering::Relaxed), 1);
        assert_eq!(fc.first.lock().len(), 1);
        let mut out = String::new();
        fc.summary(&mut out);
        assert!(out.contains("missing flush 1 accesses"), "{out}");
        assert!(
            out.contains("write gva 0xffff800000005018 gpa 0x5018"),
            "{out}"
        );
        assert!(
            out.contains("after zap #1 of gfn 0x5+1 in root 1 (Direct, Range)"),
            "{out}"
        );
    }
}
