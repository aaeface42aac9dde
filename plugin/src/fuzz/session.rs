//! One fuzzing session: a plugin as QEMU installs it, guest RAM behind it
//! (`hooks::fake::FakeHost`), a control-socket client and
//! an in-memory trace. Every operation goes through the entry point QEMU
//! or a client would use (`Plugin::stage2`, `Plugin::insn`,
//! `control::handle_line`), its effects are carried out as `ffi.rs` does,
//! and [`Session::check`] then checks the isolation invariants:
//!
//! - no shared-alias translation reaches private memory: no leaf of a
//!   direct (shared) root maps a private backing page, and no shared-alias
//!   access is allowed to one;
//! - no device and no host write reaches private memory once the guest has
//!   launched (`Kvm::host_access_allowed`, what DMA and the control
//!   socket's `write` ask; checked at the ends and the middle of every run
//!   of private frames), and the socket never wrote to private memory;
//! - every control reply is `{"ok": true}` or an error that starts with a
//!   documented code ([`crate::control::ERROR_CODES`]);
//! - an answer's backing is its memslot's (the address itself where no
//!   slot is: emulated MMIO), an injected exception has an
//!   architectural vector, cleared and written memory lies in QEMU's RAM;
//! - an answer QEMU's stage-2 cache would reuse (its span, the generation
//!   it was given at) is the plugin's fresh answer (checked per access);
//! - at the end, the trace is JSON lines that say what they are, closed by
//!   an `end` line whose count is right.
//!
//! A backing page is private when a guest_memfd memslot maps it at a gfn
//! whose memory attributes say private or, for SNP, when the RMP assigns
//! it to the guest. Panics are failures too: libFuzzer's panic hook aborts on any.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use cvmem_model::{Alias, BackingAddr, Gpa, Pfn, RootRole, VmType, PAGE_SIZE};
use parking_lot::Mutex;
use serde_json::Value;

use crate::args::Config;
use crate::control::{self, ControlHost};
use crate::effects::Effects;
use crate::flavour::Flavour as _;
use crate::hooks::fake::FakeHost;
use crate::hooks::{prot, Access, Host as _, Insn, InsnAction, Regs, Stage2Answer, Stage2Request};
use crate::memslots::{MemslotOp, RamSection};
use crate::plugin::{Mode, Plugin};

/// vCPUs of every session.
pub const VCPUS: u32 = 2;

/// Guest RAM of every session: 4 MiB at QEMU address 0, small enough that
/// checking every page after every operation stays cheap.
pub const RAM: u64 = 4 << 20;

/// A set of backing frames of the fake's memory, one bit each.
pub struct Frames(Vec<u64>);

impl Frames {
    fn new() -> Frames {
        Frames(vec![0; (RAM / PAGE_SIZE / 64) as usize])
    }

    fn insert(&mut self, pfn: u64) {
        assert!(
            pfn < RAM / PAGE_SIZE,
            "a backing frame {pfn:#x} outside QEMU's memory"
        );
        self.0[(pfn / 64) as usize] |= 1 << (pfn % 64);
    }

    /// Whether `pfn` is in the set.
    pub fn contains(&self, pfn: u64) -> bool {
        self.0
            .get((pfn / 64) as usize)
            .is_some_and(|w| w & (1 << (pfn % 64)) != 0)
    }

    /// The runs of frames in the set, as half-open ranges.
    fn runs(&self) -> Vec<(u64, u64)> {
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for (i, &w) in self.0.iter().enumerate() {
            if w == 0 {
                continue;
            }
            for bit in 0..64 {
                if w & (1 << bit) == 0 {
                    continue;
                }
                let pfn = i as u64 * 64 + bit;
                match runs.last_mut() {
                    Some((_, end)) if *end == pfn => *end += 1,
                    _ => runs.push((pfn, pfn + 1)),
                }
            }
        }
        runs
    }
}

/// The trace writer's output, kept for [`Session::finish`].
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The control socket's host side: what a request asked QEMU to do, carried
/// out by the session once the request is answered.
#[derive(Default)]
struct Ctl {
    effects: Mutex<Vec<Effects>>,
    writes: Mutex<Vec<(BackingAddr, Vec<u8>)>>,
}

impl ControlHost for Ctl {
    fn thread_start(&self) {}
    fn thread_exit(&self) {}
    fn apply(&self, effects: Effects) {
        self.effects.lock().push(effects);
    }
    fn phys_write(&self, at: BackingAddr, bytes: &[u8]) -> bool {
        let fits = at
            .raw()
            .checked_add(bytes.len() as u64)
            .is_some_and(|end| end <= RAM);
        if fits {
            self.writes.lock().push((at, bytes.to_vec()));
        }
        fits
    }
}

/// A stage-2 cache entry's key: vCPU, the span's first GPA (alias bits
/// included), its size, CPL 3, page walk.
type S2Key = (u32, u64, u64, bool, bool);

/// What QEMU keeps for a span: the generation read before the callback,
/// the backing of the span's first page, the protection.
#[derive(Clone, Copy, Debug)]
struct S2Entry {
    generation: u64,
    backing: u64,
    prot: u32,
}

/// The spans QEMU's stage-2 cache keeps answers for.
const S2_SPANS: [u64; 3] = [0x1000, 0x20_0000, 0x4000_0000];

/// The protection bit an access needs (QEMU's `1 << access_type`).
fn prot_of(access: Access) -> u32 {
    match access {
        Access::Read => prot::READ,
        Access::Write => prot::WRITE,
        Access::Fetch => prot::EXEC,
    }
}

/// A plugin, its guest memory, a control client and the trace.
pub struct Session {
    /// The plugin under test.
    pub plugin: Plugin,
    /// Guest memory (QEMU addresses 0..[`RAM`]) and the host services.
    pub host: FakeHost,
    ctl: Ctl,
    trace: Sink,
    /// Backing pages that shared-alias accesses were allowed to, since the
    /// last check.
    shared_allowed: Vec<u64>,
    /// QEMU's stage-2 cache as patch 0025 keeps it, for every vCPU and
    /// span size: what an answer marked cacheable lets QEMU reuse.
    s2_cache: HashMap<S2Key, S2Entry>,
    /// The modelled KVM stopped the VM: guest operations end.
    pub stopped: bool,
    /// The operations so far and their answers, printed if an invariant
    /// breaks (with `CVMEM_FUZZ_LOG` set, as they happen).
    log: Vec<String>,
    echo: bool,
}

impl Drop for Session {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("cvmem fuzz: the operations of the failing input:");
            for l in &self.log {
                eprintln!("  {l}");
            }
        }
    }
}

impl Session {
    /// A plugin configured by `config`, a trace on, QEMU's RAM reported as
    /// the sections `ram` (gpa, size), inside the first [`RAM`] bytes.
    pub fn new(config: Config, ram: &[(u64, u64)]) -> Session {
        let trace = Sink::default();
        let config = Config {
            trace: Some("fuzz.jsonl".into()),
            ..config
        };
        let plugin = Plugin::with_trace_output(
            config,
            Mode::Enforcing { api_version: 5 },
            VCPUS,
            Box::new(trace.clone()),
        )
        .expect("the session's configuration is valid");
        let mut s = Session {
            plugin,
            host: FakeHost::with_mem(RAM),
            ctl: Ctl::default(),
            trace,
            shared_allowed: Vec::new(),
            s2_cache: HashMap::new(),
            stopped: false,
            log: Vec::new(),
            echo: std::env::var_os("CVMEM_FUZZ_LOG").is_some(),
        };
        for &(gpa, size) in ram {
            assert!(gpa + size <= RAM);
            let e = s.plugin.memslot(
                MemslotOp::Add,
                RamSection {
                    addr: BackingAddr::new(gpa),
                    size,
                    readonly: false,
                    name: "pc.ram".into(),
                },
            );
            s.apply(e);
        }
        s
    }

    fn log(&mut self, entry: String) {
        if self.echo {
            eprintln!("{entry}");
        }
        self.log.push(entry);
    }

    /// The VM type.
    pub fn vm_type(&self) -> VmType {
        self.plugin.kvm.vm().vm_type()
    }

    /// Carries out a callback's effects as `ffi::apply` does.
    fn apply(&mut self, effects: Effects) {
        for (at, len) in effects.clear {
            let end = at.raw().checked_add(len);
            assert!(
                end.is_some_and(|end| end <= RAM),
                "the plugin discarded {len:#x} bytes at {:#x}, outside QEMU's RAM",
                at.raw()
            );
            self.host.mem.borrow_mut()[at.raw() as usize..(at.raw() + len) as usize].fill(0);
        }
        for (at, bytes) in effects.write {
            assert!(
                self.host.phys_write(at, &bytes),
                "the plugin wrote {} bytes at {:#x}, outside QEMU's RAM",
                bytes.len(),
                at.raw()
            );
        }
    }

    /// A guest access (stage-2 request) of `vcpu` at `gpa`.
    pub fn access(&mut self, vcpu: u32, gpa: u64, access: Access, cpl: u8, page_walk: bool) {
        let req = Stage2Request {
            gpa: Gpa::new(gpa),
            gva: cvmem_model::Gva::new(0x7000_1000),
            vcpu_index: vcpu % VCPUS,
            access,
            cpl: cpl & 3,
            page_walk,
            paging: true,
        };
        let key = |span: u64| {
            (
                req.vcpu_index,
                gpa & !(span - 1),
                span,
                req.cpl == 3,
                page_walk,
            )
        };
        // What QEMU's stage-2 cache would answer without asking: the fresh
        // answer must be the same (more protection is fine: a fault-in
        // grants without moving the generation).
        let generation = self
            .plugin
            .kvm
            .vm()
            .stage2_generation()
            .load(Ordering::Acquire);
        let cached = S2_SPANS.iter().find_map(|&span| {
            let e = self.s2_cache.get(&key(span))?;
            (e.generation == generation && e.prot & prot_of(access) != 0)
                .then(|| (e.backing + (gpa & (span - 1) & !(PAGE_SIZE - 1)), span))
        });
        let (answer, effects) = self.plugin.stage2(&req);
        self.log(format!("access {req:x?} -> {answer:x?} {effects:x?}"));
        if let Some((backing, span)) = cached {
            assert!(
                matches!(answer, Stage2Answer::Allow { backing: b, prot: p, .. }
                    if b.raw() & !(PAGE_SIZE - 1) == backing && p & prot_of(access) != 0),
                "QEMU's stage-2 cache would answer {gpa:#x} with {backing:#x} (a {span:#x} span \
                 of generation {generation}); the plugin answers {answer:x?}"
            );
        }
        if let Stage2Answer::Allow {
            backing,
            prot: p,
            cache_span,
            ..
        } = answer
        {
            if cache_span != 0 {
                let span = if cache_span >= 0x20_0000 {
                    cache_span
                } else {
                    PAGE_SIZE
                };
                self.s2_cache.insert(
                    key(span),
                    S2Entry {
                        generation,
                        backing: (backing.raw() & !(PAGE_SIZE - 1))
                            - (gpa & (span - 1) & !(PAGE_SIZE - 1)),
                        prot: p,
                    },
                );
            }
        }
        self.apply(effects);
        match answer {
            Stage2Answer::Allow {
                backing,
                prot: p,
                page_size,
                cache_span,
            } => {
                assert!(
                    matches!(page_size, 0x1000 | 0x20_0000 | 0x4000_0000),
                    "page size {page_size:#x}"
                );
                // QEMU may reuse the answer for the whole span: the mapping
                // the answer came from, or the 2M range of a 4K leaf (whose
                // exactness the cache model above checks).
                assert!(
                    cache_span == 0
                        || (cache_span.is_power_of_two()
                            && (0x1000..=page_size.max(0x20_0000)).contains(&cache_span)),
                    "cache span {cache_span:#x} for a {page_size:#x} mapping"
                );
                assert_eq!(p & !prot::ALL, 0, "protection bits {p:#x}");
                let vm = self.plugin.kvm.vm();
                // A memslot's frame is its backing; a GPA no slot maps is
                // emulated MMIO, which QEMU resolves at the address itself.
                let expected = vm.decode(Gpa::new(gpa)).map(|d| {
                    vm.memslots()
                        .find(d.gfn)
                        .map_or(d.gfn.gpa().raw(), |slot| slot.backing_of(d.gfn).raw())
                });
                assert!(
                    expected.is_some_and(|e| (e ^ backing.raw()) & !(page_size - 1) == 0),
                    "{gpa:#x} allowed to {:#x}, not its memslot's backing {expected:x?}",
                    backing.raw()
                );
                // SNP's fetches and page-table reads are private whatever
                // the C-bit (APM vol. 2 §15.34.5): only its data accesses
                // without the C-bit are shared.
                let snp_private =
                    vm.vm_type() == VmType::Snp && (page_walk || access == Access::Fetch);
                if vm.vm_type().has_private_mem()
                    && !snp_private
                    && vm
                        .decode(Gpa::new(gpa))
                        .is_some_and(|d| d.alias == Alias::Shared)
                {
                    self.shared_allowed.push(backing.raw());
                }
            }
            Stage2Answer::Fault(f) => check_fault(f),
            Stage2Answer::Retry => {}
            Stage2Answer::Stop => self.stopped = true,
        }
    }

    /// An instruction of `vcpu` with `regs`; the registers after.
    pub fn insn(&mut self, vcpu: u32, insn: Insn, regs: &mut Regs) -> InsnAction {
        let before = *regs;
        let (action, effects) = self.plugin.insn(vcpu % VCPUS, insn, regs, &self.host);
        self.log(format!(
            "{insn:?} vcpu {vcpu} {before:x?} -> {action:x?} {regs:x?} {effects:x?}"
        ));
        self.apply(effects);
        match action {
            InsnAction::Fault(f) => check_fault(f),
            InsnAction::Stop => self.stopped = true,
            InsnAction::Decline | InsnAction::Done | InsnAction::Halt { .. } => {}
        }
        action
    }

    /// One control-socket request line; its reply.
    pub fn control(&mut self, line: &str) -> Value {
        let reply = control::handle_line(&self.plugin, &self.ctl, line);
        self.log(format!("control {line} -> {reply}"));
        match reply["ok"] {
            Value::Bool(true) => {}
            Value::Bool(false) => {
                let e = reply["error"].as_str().unwrap_or_default();
                assert!(!e.starts_with("EIO"), "{line:?} panicked: {e}");
                assert!(
                    control::ERROR_CODES
                        .iter()
                        .any(|c| e.strip_prefix(c).is_some_and(|r| r.starts_with(':'))),
                    "undocumented error for {line:?}: {e:?}"
                );
            }
            _ => panic!("a reply without ok: {reply}"),
        }
        let effects: Vec<Effects> = std::mem::take(&mut *self.ctl.effects.lock());
        for e in effects {
            self.apply(e);
        }
        let writes: Vec<_> = std::mem::take(&mut *self.ctl.writes.lock());
        // Before the launch the VMM writes the guest's image, private
        // memory included (as QEMU's loaders and fw_cfg DMA do).
        if !writes.is_empty() && self.plugin.kvm.flavour.launched() {
            let private = self.private_backing();
            for (at, bytes) in &writes {
                let first = at.raw() >> 12;
                let last = (at.raw() + bytes.len() as u64 - 1) >> 12;
                assert!(
                    (first..=last).all(|pfn| !private.contains(pfn)),
                    "the control socket wrote private memory at {:#x}",
                    at.raw()
                );
            }
        }
        for (at, bytes) in writes {
            self.host.phys_write(at, &bytes);
        }
        reply
    }

    /// The backing pages (frame numbers) that hold private memory.
    pub fn private_backing(&self) -> Frames {
        let vm = self.plugin.kvm.vm();
        let mut private = Frames::new();
        if !vm.vm_type().has_private_mem() {
            return private;
        }
        // Private memory lives in guest_memfd slots only: a private access
        // anywhere else stops the VM.
        let attrs = vm.attributes();
        for s in vm.memslots().iter().filter(|s| s.private_capable()) {
            for r in attrs.private_ranges().intersecting(s.range()) {
                let first = s.pfn_of(r.start()).raw();
                for pfn in first..first + r.len() {
                    private.insert(pfn);
                }
            }
        }
        if vm.vm_type() == VmType::Snp {
            for r in vm.snp_rmp_covered() {
                for pfn in r.start().raw()..r.end().raw() {
                    if vm.snp_rmp_entry(Pfn::new(pfn)).is_some_and(|e| e.assigned) {
                        private.insert(pfn);
                    }
                }
            }
        }
        private
    }

    /// The isolation invariants (see the module comment).
    pub fn check(&mut self) {
        let vm = self.plugin.kvm.vm();
        if !vm.vm_type().has_private_mem() {
            self.shared_allowed.clear();
            return;
        }
        let private = self.private_backing();
        for leaf in vm.leaves() {
            if leaf.role != RootRole::Direct {
                continue;
            }
            for i in 0..leaf.range.len() {
                let pfn = leaf.pfn.raw() + i;
                assert!(
                    !private.contains(pfn),
                    "a shared leaf maps private memory: gfn {:#x} -> pfn {pfn:#x} ({leaf:?})",
                    leaf.range.start().raw() + i
                );
            }
        }
        for at in self.shared_allowed.drain(..) {
            assert!(
                !private.contains(at >> 12),
                "a shared-alias access was allowed to private memory at {at:#x}"
            );
        }
        if self.plugin.kvm.flavour.launched() {
            // Each run of private frames at its ends and middle: where a
            // range computation goes wrong, and cheap enough to do after
            // every operation.
            for (start, end) in private.runs() {
                for pfn in [start, start + (end - start) / 2, end - 1] {
                    assert!(
                        !self
                            .plugin
                            .kvm
                            .host_access_allowed(BackingAddr::new(pfn * PAGE_SIZE)),
                        "a device may reach private memory at pfn {pfn:#x}"
                    );
                }
            }
        }
    }

    /// Stops the trace and checks what the writer wrote.
    pub fn finish(self) {
        let report = self
            .plugin
            .finish_trace()
            .expect("every session has a trace");
        assert_eq!(report.tally.error, None);
        let out = self.trace.0.lock();
        let text = std::str::from_utf8(&out).expect("the trace is UTF-8");
        assert!(text.ends_with('\n'), "the trace ends with a whole line");
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let l: Line = serde_json::from_str(line).unwrap_or_else(|e| {
                panic!("trace line {} is not a trace line ({e}): {line}", i + 1)
            });
            assert!(!l.kind.is_empty(), "no type: {line}");
            assert!(l.vcpu.is_none_or(|c| c < VCPUS), "bad vcpu: {line}");
            for h in [l.gfn, l.gpa, l.pfn, l.cr2, l.error_code]
                .into_iter()
                .flatten()
            {
                assert!(
                    h.strip_prefix("0x")
                        .is_some_and(|x| u64::from_str_radix(x, 16).is_ok()),
                    "not a hex number: {line}"
                );
            }
            assert_eq!(
                l.kind == "end",
                i + 1 == lines.len(),
                "the end line is last and only last: {line}"
            );
            if l.kind == "end" {
                assert_eq!(
                    l.events,
                    Some(i as u64),
                    "the end line counts the events: {line}"
                );
            }
        }
        assert!(!lines.is_empty(), "an end line");
    }
}

/// What every trace line has (docs/trace.md), and the fields that hold
/// numbers in hexadecimal strings.
#[derive(serde::Deserialize)]
struct Line<'a> {
    // Read only to insist on it: a line without a time does not parse.
    #[allow(dead_code)]
    t: u64,
    #[serde(rename = "type")]
    kind: &'a str,
    vcpu: Option<u32>,
    gfn: Option<&'a str>,
    gpa: Option<&'a str>,
    pfn: Option<&'a str>,
    cr2: Option<&'a str>,
    error_code: Option<&'a str>,
    events: Option<u64>,
}

/// An exception the plugin raises has an architectural vector.
fn check_fault(f: crate::hooks::Fault) {
    assert!(f.vector < 32, "vector {} is not an exception", f.vector);
}
