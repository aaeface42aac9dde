//! The running plugin: its configuration, the mode it found QEMU in, and its
//! counters. One instance lives for the whole QEMU process.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use crossbeam::utils::CachePadded;
use cvmem_model::{BackingAddr, Gpa, Gva};

use crate::args::{Config, TestMode};
use crate::effects::Effects;
use crate::flavour::Flavour as _;
use crate::hooks::{Access, Host, Insn, InsnAction, Regs, Stage2Answer, Stage2Request};
use crate::kvm::Kvm;
use crate::learn::Page;
use crate::memslots::{MemslotOp, RamSection};
use crate::testdev::TestDev;
use crate::trace::{InsnOutcome, PluginEvent, Tracer};

/// How much of the guest's memory semantics cvmem can enforce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// QEMU carries the cvmem patch series with this cvm API version: cvmem
    /// takes part in translation and instruction emulation.
    Enforcing {
        /// The version QEMU reported through `qemu_plugin_cvm_api_version`.
        api_version: u32,
    },
    /// An unpatched QEMU (no cvm API): cvmem can only observe the guest
    /// through the stock plugin API and report what it would have refused.
    Audit,
}

impl Mode {
    /// Chooses the mode from what QEMU offers and what the plugin was built
    /// for. `qemu_version` is `None` when QEMU has no cvm API at all.
    ///
    /// The cvm API has no compatibility between versions (see the header), so
    /// a patched QEMU with another version is refused rather than guessed at.
    pub fn negotiate(qemu_version: Option<u32>, built_for: u32) -> Result<Mode, String> {
        match qemu_version {
            None => Ok(Mode::Audit),
            Some(v) if v == built_for => Ok(Mode::Enforcing { api_version: v }),
            Some(v) => Err(format!(
                "QEMU implements cvm plugin API version {v}, but this libcvmem.so was built for \
                 version {built_for}; rebuild QEMU with scripts/build-qemu"
            )),
        }
    }
}

/// Counters of one vCPU, on their own cache line so that vCPU threads do
/// not contend on the hot path.
#[derive(Debug, Default)]
pub struct VcpuStats {
    /// Stage-2 requests (softTLB fills).
    pub stage2: AtomicU64,
    /// Stage-2 requests for page-walk accesses.
    pub stage2_page_walk: AtomicU64,
    /// Stage-2 requests answered with a fault.
    pub stage2_faults: AtomicU64,
    /// Of `stage2`: softTLB fills QEMU's stage-2 cache answered without a
    /// callback (copied from QEMU by [`Plugin::sync_stage2_cache`]).
    pub stage2_cached: AtomicU64,
    /// Of `stage2_page_walk`: those the cache answered.
    pub stage2_cached_page_walk: AtomicU64,
    /// Instructions handed to the plugin.
    pub insns: AtomicU64,
    /// Audit mode: guest RAM accesses checked after the fact.
    pub audit_accesses: AtomicU64,
    /// Audit mode: checked accesses that enforcing mode would have refused.
    pub audit_violations: AtomicU64,
    /// Audit mode: RAM accesses not checked, their page having no memslot
    /// (KVM's slots were used up).
    pub audit_unchecked: AtomicU64,
    /// #VE raised in the guest (stage 2 or at an instruction).
    pub injected_ve: AtomicU64,
    /// #VC raised in the guest.
    pub injected_vc: AtomicU64,
    /// Other exceptions raised in the guest (#PF with the RMP bit, #GP, #MC, ...).
    pub injected_other: AtomicU64,
}

impl VcpuStats {
    /// Counts an exception raised in the guest.
    pub fn injected(&self, fault: &crate::hooks::Fault) {
        let c = match fault.vector {
            crate::vmm::vector::VE => &self.injected_ve,
            crate::vmm::vector::VC => &self.injected_vc,
            _ => &self.injected_other,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// vCPU counters are kept in this many shards (vCPU index modulo).
const STAT_SHARDS: usize = 16;

/// Counters kept while the guest runs.
#[derive(Debug, Default)]
pub struct Stats {
    /// vCPUs QEMU has initialised.
    pub vcpus: AtomicU32,
    /// Device accesses checked, in pages.
    pub dma_checked: AtomicU64,
    /// Device accesses refused, in pages.
    pub dma_refused: AtomicU64,
    /// Memslot reports the model refused (overlaps, bad sections).
    pub memslot_rejected: AtomicU64,
    per_vcpu: [CachePadded<VcpuStats>; STAT_SHARDS],
}

impl Stats {
    /// The counters of `vcpu_index`'s shard.
    pub fn vcpu(&self, vcpu_index: u32) -> &VcpuStats {
        &self.per_vcpu[vcpu_index as usize % STAT_SHARDS]
    }

    /// How many shards the per-vCPU counters have: they are exact per vCPU
    /// for that many vCPUs.
    pub fn shards(&self) -> usize {
        STAT_SHARDS
    }

    /// Sums one counter over all vCPUs.
    pub fn total(&self, field: impl Fn(&VcpuStats) -> &AtomicU64) -> u64 {
        self.per_vcpu
            .iter()
            .map(|s| field(s).load(Ordering::Relaxed))
            .sum()
    }
}

/// The plugin instance.
#[derive(Debug)]
pub struct Plugin {
    /// The validated arguments.
    pub config: Config,
    /// What QEMU lets cvmem do.
    pub mode: Mode,
    /// Counters for the summary.
    pub stats: Stats,
    /// When the plugin was installed.
    pub started: Instant,
    /// The test device, with `test=hooks`.
    pub testdev: Option<TestDev>,
    /// The modelled KVM, which decides.
    pub kvm: Kvm,
    /// `trace=`: the event trace's writer.
    pub trace: Option<Tracer>,
    /// Set when QEMU's stage-2 cache is on: what it answered for a vCPU
    /// (-1: all), as (fills, page-walk fills).
    pub stage2_cache: OnceLock<fn(i32) -> (u64, u64)>,
    /// The first RAM section the model refused before the machine was
    /// ready. QEMU aborts when KVM refuses a memslot (`kvm_set_phys_mem()`:
    /// "error registering slot"); cvmem refuses at machine-ready instead,
    /// naming it, so that no guest runs with RAM the model does not know.
    pub memslot_refusal: OnceLock<String>,
}

/// Whether QEMU may cache this plugin's stage-2 answers: not while the
/// missing-flush detector must see every fill, nor with the test device,
/// whose rules are not part of the model's generation.
pub fn stage2_cacheable(config: &Config) -> bool {
    !config.flush_check && config.test != TestMode::Hooks
}

impl Plugin {
    /// A new plugin instance for a guest of up to `max_vcpus` vCPUs,
    /// installed now.
    pub fn new(config: Config, mode: Mode, max_vcpus: u32) -> Result<Self, String> {
        Plugin::with_tracer(config, mode, max_vcpus, |path, kvm| {
            Tracer::start(
                path,
                kvm.vm().events(),
                kvm.vm().event_epoch(),
                crate::trace::CAPACITY,
            )
        })
    }

    /// As [`Plugin::new`], the trace (if `config.trace` asks for one)
    /// written to `out` instead of the file: the fuzzing seam checks every
    /// line the writer encodes.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn with_trace_output(
        config: Config,
        mode: Mode,
        max_vcpus: u32,
        out: Box<dyn std::io::Write + Send>,
    ) -> Result<Self, String> {
        Plugin::with_tracer(config, mode, max_vcpus, |_, kvm| {
            Tracer::with_output(
                out,
                kvm.vm().events(),
                kvm.vm().event_epoch(),
                crate::trace::CAPACITY,
            )
            .map_err(|e| format!("cannot start the trace writer: {e}"))
        })
    }

    fn with_tracer(
        config: Config,
        mode: Mode,
        max_vcpus: u32,
        start: impl FnOnce(&str, &Kvm) -> Result<Tracer, String>,
    ) -> Result<Self, String> {
        let mut kvm = Kvm::new(&config, max_vcpus)?;
        if mode == Mode::Audit {
            kvm.start_audit();
        }
        let trace = match &config.trace {
            Some(path) => Some(start(path, &kvm).map_err(|reason| {
                crate::args::ArgError {
                    arg: format!("trace={path}"),
                    reason,
                }
                .to_string()
            })?),
            None => None,
        };
        Ok(Plugin {
            kvm,
            trace,
            testdev: (config.test == TestMode::Hooks).then(TestDev::default),
            config,
            mode,
            stats: Stats::default(),
            started: Instant::now(),
            stage2_cache: OnceLock::new(),
            memslot_refusal: OnceLock::new(),
        })
    }

    /// Copies what QEMU's stage-2 cache answered into the counters: every
    /// fill it answered counts as a stage-2 request and, being a TDP hit the
    /// model answered before, as a lookup and a lookup hit. Returns the
    /// fills answered, over all vCPUs.
    pub fn sync_stage2_cache(&self) -> u64 {
        let Some(cached) = self.stage2_cache.get() else {
            return 0;
        };
        let mut shards = vec![(0u64, 0u64); self.stats.shards()];
        let vcpus = self.stats.vcpus.load(Ordering::Relaxed);
        for v in 0..vcpus {
            let (hits, walks) = cached(v as i32);
            let shard = &mut shards[v as usize % self.stats.shards()];
            shard.0 += hits;
            shard.1 += walks;
        }
        for (v, (hits, walks)) in shards.iter().enumerate() {
            let s = self.stats.vcpu(v as u32);
            s.stage2_cached.store(*hits, Ordering::Relaxed);
            s.stage2_cached_page_walk.store(*walks, Ordering::Relaxed);
        }
        shards.iter().map(|s| s.0).sum()
    }

    /// Stops the trace (if any): the writer writes what is queued and the
    /// final line, and closes the file. Later calls return the same report.
    pub fn finish_trace(&self) -> Option<crate::trace::TraceReport> {
        let t = self.trace.as_ref()?;
        let lifecycle = &self.kvm.vmm.lifecycle;
        let ending = crate::trace::Ending {
            how: lifecycle.describe(),
            early: lifecycle.ended_early(),
        };
        Some(t.finish_ending(self.kvm.vm().stats().events_dropped, Some(ending)))
    }

    /// Records a plugin event if tracing.
    #[inline]
    pub fn trace(&self, vcpu: Option<u32>, make: impl FnOnce() -> PluginEvent) {
        if let Some(t) = &self.trace {
            t.emit(vcpu, make());
        }
    }

    /// The instruction kinds to register for.
    pub fn insn_kinds(&self) -> &'static [Insn] {
        if self.testdev.is_some() {
            &Insn::ALL
        } else {
            self.kvm.flavour.insn_kinds()
        }
    }

    /// Decides a guest-physical access at softTLB fill, and says what to do
    /// in QEMU besides. The hot path.
    #[inline]
    pub fn stage2(&self, req: &Stage2Request) -> (Stage2Answer, Effects) {
        let stats = self.stats.vcpu(req.vcpu_index);
        stats.stage2.fetch_add(1, Ordering::Relaxed);
        if req.page_walk {
            stats.stage2_page_walk.fetch_add(1, Ordering::Relaxed);
        }
        let decided = self.decide(req);
        match decided.0 {
            Stage2Answer::Fault(fault) => self.stage2_fault(req, stats, fault),
            Stage2Answer::Stop => self.trace(Some(req.vcpu_index), || PluginEvent::VmStopped {
                gpa: Some(req.gpa.raw()),
            }),
            _ => {}
        }
        decided
    }

    /// Counts and traces a fault the stage-2 callback raises. Kept out of
    /// line: the common answer is Allow, and with it the hot path is what
    /// it was before tracing existed.
    #[cold]
    #[inline(never)]
    fn stage2_fault(&self, req: &Stage2Request, stats: &VcpuStats, fault: crate::hooks::Fault) {
        stats.stage2_faults.fetch_add(1, Ordering::Relaxed);
        stats.injected(&fault);
        self.trace(Some(req.vcpu_index), || PluginEvent::Inject {
            fault,
            gpa: Some(req.gpa.raw()),
            access: Some(req.access),
        });
    }

    /// The stage-2 decision, shared by enforcing and audit mode: a test
    /// device rule if one covers the page, else the model.
    fn decide(&self, req: &Stage2Request) -> (Stage2Answer, Effects) {
        if let Some(answer) = self.testdev.as_ref().and_then(|dev| dev.stage2(req)) {
            return (answer, Effects::NONE);
        }
        self.kvm.stage2(req)
    }

    /// `flush-check=on`: a guest load or store at `gva` happened (QEMU's
    /// memory callback, after the access); reports it if it went through a
    /// translation a zap left stale (see `flushcheck.rs`).
    pub fn flush_check_access(&self, vcpu_index: u32, gva: Gva, access: Access) {
        let Some(fc) = &self.kvm.flush_check else {
            return;
        };
        if let Some(report) = fc.access(self.kvm.vm(), vcpu_index, gva, access) {
            self.trace(Some(vcpu_index), || PluginEvent::MissingFlush(report));
        }
    }

    /// Audit mode: a guest load or store reached guest RAM at `gpa` (QEMU's
    /// memory callback, after the access), with paging on or off. Learns
    /// the page if it is new (`learn.rs`), checks the access as the stage-2
    /// callback would have, and counts it as refused if enforcing mode
    /// would have answered it with an exception (or stopped the VM). An
    /// answer to retry (an implicit conversion done, a blocked Secure-EPT
    /// entry) is no refusal: the access is decided again, as QEMU retries.
    pub fn audit_access(&self, vcpu_index: u32, gpa: Gpa, gva: Gva, access: Access, paging: bool) {
        /// Retries before an access is left undecided (enforcing mode
        /// would retry on; none is refused for it).
        const RETRIES: usize = 4;
        let Some(learner) = &self.kvm.audit else {
            return;
        };
        let stats = self.stats.vcpu(vcpu_index);
        // QEMU's RAM has no alias bits; decoding keeps an address that had
        // them (or reserved bits) from being learned as a page of its own.
        let Some(gfn) = self.kvm.vm().decode(gpa).map(|d| d.gfn) else {
            stats.audit_unchecked.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let page = match learner.page(gfn) {
            Page::Unknown => learner.learn(&self.kvm, gfn, vcpu_index),
            page => page,
        };
        if page != Page::Ram {
            stats.audit_unchecked.fetch_add(1, Ordering::Relaxed);
            return;
        }
        stats.audit_accesses.fetch_add(1, Ordering::Relaxed);
        if self.kvm.vmm.lifecycle.is_dead() {
            // Enforcing mode would have stopped the VM already.
            stats.audit_violations.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let req = Stage2Request {
            gpa,
            gva,
            vcpu_index,
            access,
            cpl: 0,
            page_walk: false,
            paging,
        };
        for _ in 0..RETRIES {
            match self.decide(&req).0 {
                Stage2Answer::Allow { .. } => return,
                Stage2Answer::Retry => continue,
                Stage2Answer::Fault(_) | Stage2Answer::Stop => {
                    stats.audit_violations.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }

    /// Whether audit mode needs to know if paging is on at each access: a
    /// TD or an SNP guest launches at its first access with paging on, and
    /// an SNP guest's accesses with paging off are private.
    pub fn audit_needs_paging(&self) -> bool {
        self.mode == Mode::Audit && self.kvm.flavour.private_by_default()
    }

    /// Emulates an instruction the plugin registered for.
    pub fn insn(
        &self,
        vcpu: u32,
        insn: Insn,
        regs: &mut Regs,
        host: &dyn Host,
    ) -> (InsnAction, Effects) {
        let stats = self.stats.vcpu(vcpu);
        stats.insns.fetch_add(1, Ordering::Relaxed);
        if self.trace.is_none() {
            let (action, effects) = self.insn_untraced(vcpu, insn, regs, host);
            if let InsnAction::Fault(fault) = &action {
                stats.injected(fault);
            }
            return (action, effects);
        }
        let rax = regs.gpr[0];
        let (action, effects) = self.insn_untraced(vcpu, insn, regs, host);
        let outcome = match action {
            InsnAction::Done | InsnAction::Halt { .. } => InsnOutcome::Done,
            InsnAction::Decline => InsnOutcome::Declined,
            InsnAction::Fault(fault) => {
                stats.injected(&fault);
                self.trace(Some(vcpu), || PluginEvent::Inject {
                    fault,
                    gpa: None,
                    access: None,
                });
                InsnOutcome::Fault
            }
            InsnAction::Stop => {
                self.trace(Some(vcpu), || PluginEvent::VmStopped { gpa: None });
                InsnOutcome::Stopped
            }
        };
        // CPUID, MSRs, I/O and HLT are too frequent to be worth a line each
        // (their #VC, if any, has one above).
        if matches!(
            insn,
            Insn::Tdcall
                | Insn::Vmgexit
                | Insn::Vmcall
                | Insn::Vmmcall
                | Insn::Pvalidate
                | Insn::Rmpadjust
        ) {
            self.trace(Some(vcpu), || PluginEvent::Insn { insn, rax, outcome });
        }
        (action, effects)
    }

    fn insn_untraced(
        &self,
        vcpu: u32,
        insn: Insn,
        regs: &mut Regs,
        host: &dyn Host,
    ) -> (InsnAction, Effects) {
        if let Some(dev) = &self.testdev {
            let (action, flush) = dev.insn(vcpu, insn, regs, self.kvm.vm(), host);
            if action != InsnAction::Decline {
                return (action, Effects::flush_all_of(flush));
            }
        }
        self.kvm.insn(vcpu, insn, regs, host)
    }

    /// QEMU's memory listener added or deleted a RAM section. Runs on the
    /// main-loop thread.
    pub fn memslot(&self, op: MemslotOp, section: RamSection) -> Effects {
        if let Some(dev) = &self.testdev {
            dev.memslot(op, &section);
        }
        match self.kvm.memslot(op, &section) {
            Ok(effects) => effects,
            Err(e) => {
                eprintln!("cvmem: {e}");
                self.stats.memslot_rejected.fetch_add(1, Ordering::Relaxed);
                if op == MemslotOp::Add {
                    let _ = self.memslot_refusal.set(e);
                }
                Effects::NONE
            }
        }
    }

    /// Whether a device may access the page of `gpa`, the QEMU address QEMU
    /// reports for the DMA (a backing address, see
    /// [`Kvm::host_access_allowed`]). Runs on whichever thread emulates the
    /// device.
    pub fn dma_allowed(&self, gpa: u64, is_write: bool) -> bool {
        self.stats.dma_checked.fetch_add(1, Ordering::Relaxed);
        // Devices never reach private memory (docs/architecture.md).
        let allowed = self.testdev.as_ref().is_none_or(|dev| dev.dma_allowed(gpa))
            && self.kvm.host_access_allowed(BackingAddr::new(gpa));
        if !allowed {
            self.stats.dma_refused.fetch_add(1, Ordering::Relaxed);
            self.trace(None, || PluginEvent::DmaBlocked {
                gpa,
                write: is_write,
            });
        }
        allowed
    }

    /// Called when QEMU brings a vCPU up.
    pub fn vcpu_init(&self, _vcpu_index: u32) {
        self.stats.vcpus.fetch_add(1, Ordering::Relaxed);
    }

    /// The line printed when the plugin installs.
    pub fn banner(&self) -> String {
        match self.mode {
            Mode::Enforcing { api_version } => format!(
                "cvmem: vm-type={} mode=enforcing (cvm plugin API v{api_version})\n",
                self.config.vm_type
            ),
            Mode::Audit => format!(
                "cvmem: vm-type={} mode=audit: this QEMU has no cvm plugin API \
                 (unpatched), so cvmem enforces nothing: it checks guest RAM accesses after \
                 the fact and counts what it would have refused\n",
                self.config.vm_type
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(Mode::negotiate(None, 1), Ok(Mode::Audit));
        assert_eq!(
            Mode::negotiate(Some(1), 1),
            Ok(Mode::Enforcing { api_version: 1 })
        );
        let err = Mode::negotiate(Some(2), 1).unwrap_err();
        assert!(
            err.contains("version 2") && err.contains("version 1"),
            "{err}"
        );
    }

    #[test]
    fn vcpus_are_counted() {
        let p = Plugin::new(Config::default(), Mode::Audit, 1).unwrap();
        p.vcpu_init(0);
        p.vcpu_init(1);
        assert_eq!(p.stats.vcpus.load(Ordering::Relaxed), 2);
    }

    /// A host for instructions that must not need one.
    struct NoHost;

    impl Host for NoHost {
        fn cpuid(&self, _: u32, _: u32) -> [u32; 4] {
            unreachable!()
        }
        fn rdmsr(&self, _: u32) -> Option<u64> {
            unreachable!()
        }
        fn wrmsr(&self, _: u32, _: u64) -> bool {
            unreachable!()
        }
        fn pio(&self, _: u16, _: u8, _: bool, _: u32) -> u32 {
            unreachable!()
        }
        fn phys_read(&self, _: BackingAddr, _: &mut [u8]) -> bool {
            unreachable!()
        }
        fn phys_write(&self, _: BackingAddr, _: &[u8]) -> bool {
            unreachable!()
        }
        fn guest_panicked(&self) {
            unreachable!()
        }
        fn vcpu_set_state(&self, _: u32, _: &crate::hooks::VcpuState) -> bool {
            unreachable!()
        }
        fn vcpu_park(&self, _: u32) -> bool {
            unreachable!()
        }
    }

    #[test]
    fn io_and_hlt_are_the_test_devices_only() {
        let p = Plugin::new(Config::default(), Mode::Audit, 1).unwrap();
        assert!(!p.insn_kinds().contains(&Insn::Ioio));
        assert!(!p.insn_kinds().contains(&Insn::Hlt));

        let config = Config {
            test: TestMode::Hooks,
            ..Config::default()
        };
        let p = Plugin::new(config, Mode::Audit, 1).unwrap();
        assert!(p.insn_kinds().contains(&Insn::Ioio) && p.insn_kinds().contains(&Insn::Hlt));
        for insn in [Insn::Ioio, Insn::Hlt] {
            let mut regs = Regs {
                info: 0x0080_0210,
                ..Regs::default()
            };
            let (action, effects) = p.insn(0, insn, &mut regs, &NoHost);
            assert_eq!(action, InsnAction::Decline, "{insn:?}");
            assert_eq!(effects, Effects::NONE);
        }
    }

    #[test]
    fn banner_names_mode_and_type() {
        let p = Plugin::new(Config::default(), Mode::Enforcing { api_version: 1 }, 1).unwrap();
        assert!(p.banner().contains("vm-type=default mode=enforcing"));
        let p = Plugin::new(Config::default(), Mode::Audit, 1).unwrap();
        assert!(p.banner().contains("mode=audit"));
    }
}
