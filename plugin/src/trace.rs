//! `trace=PATH`: every event of the model and of the plugin, one JSON object
//! a line, written by a thread of its own.
//!
//! Two bounded channels feed the writer: the model's (its typed
//! [`cvmem_model::Event`]s, stamped when they happen) and the plugin's own
//! ([`PluginEvent`]: what only the plugin knows, such as an exception raised
//! in the guest or a device access refused). Neither side ever blocks: when a
//! channel is full the event is dropped and counted, and the counts are the
//! trace's last line and part of the exit summary. Without `trace=` the model
//! has no channel and the plugin no [`Tracer`], so the hot path tests one
//! `Option` and builds nothing.
//!
//! The writer drains whatever both channels hold, orders that batch by time
//! and appends it to a `BufWriter`, which it flushes whenever no event has
//! come for [`IDLE_FLUSH`], so that a QEMU killed outright (SIGKILL) leaves
//! a trace that ends at most that long before it died. The first write
//! error (a full file system, a file size limit) ends the writing: from
//! then on events are counted, not written, so the file is JSON lines up
//! to its last complete line (a partial line may follow it) and never has
//! a gap in the middle. Lines are therefore in time order except
//! where an event reached its channel after a later one of the other channel
//! had been written (rare, a few microseconds apart): `t` is authoritative.
//! The schema is in docs/trace.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{bounded, never, select, Receiver, Sender, TrySendError};
use cvmem_model::Stage2Fault;
use cvmem_model::ZapReason;
use cvmem_model::{
    Event, FlushKind, FlushTarget, GfnRange, MemslotChange, RootRole, Stamped, PAGE_SHIFT,
};
use parking_lot::Mutex;

use crate::flushcheck::MissingFlush;
use crate::hooks::{Access, Fault, Insn};

/// Events each channel holds before new ones are dropped.
pub const CAPACITY: usize = 1 << 16;

/// How long the writer waits for more events before it flushes what it
/// has buffered to the file.
pub const IDLE_FLUSH: Duration = Duration::from_millis(100);

/// What only the plugin knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PluginEvent {
    /// An exception raised in the guest: by the stage-2 callback (`gpa` is
    /// the access's) or at an instruction (`gpa` is `None`).
    Inject {
        /// The exception.
        fault: Fault,
        /// The guest-physical access that raised it, if any.
        gpa: Option<u64>,
        /// What kind of access, if any.
        access: Option<Access>,
    },
    /// A device access to guest memory was refused.
    DmaBlocked {
        /// The page's guest-physical address.
        gpa: u64,
        /// Whether the device wrote.
        write: bool,
    },
    /// The plugin asked QEMU to flush softTLBs.
    FlushSent {
        /// Whose.
        target: FlushTarget,
    },
    /// A TDCALL, VMGEXIT, PVALIDATE, ... handed to the plugin (not CPUID,
    /// MSRs, I/O or HLT, which are too many to be worth a line each).
    Insn {
        /// Which instruction.
        insn: Insn,
        /// RAX on entry (the TDCALL leaf, the GHCB MSR value, ...).
        rax: u64,
        /// What the plugin did with it.
        outcome: InsnOutcome,
    },
    /// `flush-check=on`: a guest access went through a translation a zap
    /// left stale, before the zap's flush.
    MissingFlush(MissingFlush),
    /// The modelled KVM stopped the VM (stderr and the summary say why).
    VmStopped {
        /// The guest-physical access that stopped it, if it was one.
        gpa: Option<u64>,
    },
}

/// What became of an instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsnOutcome {
    /// Emulated.
    Done,
    /// Left to QEMU.
    Declined,
    /// An exception was raised at it.
    Fault,
    /// The VM stopped at it.
    Stopped,
}

/// A plugin event and when and where it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Nanoseconds since the trace's epoch.
    pub t_ns: u64,
    /// The vCPU, if there is one.
    pub vcpu: Option<u32>,
    /// What happened.
    pub event: PluginEvent,
}

/// What the writer saw, for the exit summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Lines written, the final one excluded.
    pub written: u64,
    /// Events per `type`.
    pub by_type: BTreeMap<&'static str, u64>,
    /// Events per vCPU, per `type`.
    pub by_vcpu: BTreeMap<u32, BTreeMap<&'static str, u64>>,
    /// Events per memslot id, per `type` (events with a frame inside a
    /// slot, as the slots were when the event happened).
    pub by_slot: BTreeMap<u16, BTreeMap<&'static str, u64>>,
    /// Events not written because tracing was stopped (the control
    /// socket's `trace` command): plugin events when they happened, model
    /// events when the writer took them.
    pub paused: u64,
    /// The first write error, if any: the trace ends at its last complete
    /// line, and nothing was written after it.
    pub error: Option<String>,
    /// Events not written because of the write error.
    pub lost: u64,
}

/// How the guest's run ended, for the trace's last line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ending {
    /// The summary's title (`Lifecycle::describe`).
    pub how: String,
    /// The run was cut short from outside (a signal, the monitor's quit,
    /// QEMU giving up) rather than ended by the guest or the modelled KVM.
    pub early: bool,
}

/// What the writer gets when it is to stop.
#[derive(Debug, Default)]
struct Stop {
    t_ns: u64,
    model_dropped: u64,
    plugin_dropped: u64,
    paused: u64,
    ending: Option<Ending>,
}

/// What the trace ended with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceReport {
    /// What was written.
    pub tally: Tally,
    /// Model events dropped because the channel was full.
    pub model_dropped: u64,
    /// Plugin events dropped because the channel was full.
    pub plugin_dropped: u64,
}

/// The stop channel and the writer thread.
type Writer = (Sender<Stop>, JoinHandle<Tally>);

/// The plugin's side of the trace.
#[derive(Debug)]
pub struct Tracer {
    tx: Sender<Record>,
    dropped: AtomicU64,
    epoch: Instant,
    /// Whether events are written (tracing started) or counted as paused.
    recording: Arc<AtomicBool>,
    /// Plugin events not queued because tracing was stopped.
    paused: AtomicU64,
    /// The stop channel and the writer thread, until [`Tracer::finish`].
    writer: Mutex<Option<Writer>>,
    /// Kept after [`Tracer::finish`] for the summary.
    report: Mutex<Option<TraceReport>>,
}

impl Tracer {
    /// Creates `path` and starts the writer over the model's events `model`
    /// (stamped from `epoch`) and the plugin's, each channel holding
    /// `capacity` events. Fails if the file cannot be created.
    pub fn start(
        path: &str,
        model: Option<Receiver<Stamped>>,
        epoch: Instant,
        capacity: usize,
    ) -> Result<Tracer, String> {
        let file = File::create(path).map_err(|e| format!("cannot create '{path}': {e}"))?;
        Tracer::writing(Box::new(file), Some(path), model, epoch, capacity)
            .map_err(|e| format!("cannot start the trace writer: {e}"))
    }

    /// As [`Tracer::start`], writing to `out`.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn with_output(
        out: Box<dyn Write + Send>,
        model: Option<Receiver<Stamped>>,
        epoch: Instant,
        capacity: usize,
    ) -> std::io::Result<Tracer> {
        Tracer::writing(out, None, model, epoch, capacity)
    }

    /// The writer over `out`; a write error is reported on stderr at once
    /// when `path` names the file.
    fn writing(
        out: Box<dyn Write + Send>,
        path: Option<&str>,
        model: Option<Receiver<Stamped>>,
        epoch: Instant,
        capacity: usize,
    ) -> std::io::Result<Tracer> {
        let path = path.map(str::to_owned);
        let (tx, rx) = bounded(capacity);
        let (stop_tx, stop_rx) = bounded(1);
        let recording = Arc::new(AtomicBool::new(true));
        let writing = Arc::clone(&recording);
        let handle = std::thread::Builder::new()
            .name("cvmem-trace".into())
            .spawn(move || {
                write_all(
                    BufWriter::new(out),
                    path.as_deref(),
                    model,
                    rx,
                    stop_rx,
                    &writing,
                )
            })?;
        Ok(Tracer {
            tx,
            dropped: AtomicU64::new(0),
            epoch,
            recording,
            paused: AtomicU64::new(0),
            writer: Mutex::new(Some((stop_tx, handle))),
            report: Mutex::new(None),
        })
    }

    /// Queues `event` of `vcpu`, or counts it dropped if the writer is behind
    /// (or gone).
    pub fn emit(&self, vcpu: Option<u32>, event: PluginEvent) {
        if !self.recording.load(Ordering::Acquire) {
            self.paused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let record = Record {
            t_ns: u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX),
            vcpu,
            event,
        };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(record)
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Starts (`true`) or stops writing events; returns whether it was
    /// writing. While stopped, the writer counts what it would have written
    /// (`paused` in the final line and the summary): nothing is lost
    /// silently.
    pub fn set_recording(&self, on: bool) -> bool {
        self.recording.swap(on, Ordering::AcqRel)
    }

    /// Plugin events dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Stops the writer: it writes what the channels hold, a final line with
    /// the drop counts (`model_dropped` from the model's statistics), flushes
    /// and closes the file. Later calls return the same report.
    #[cfg(test)]
    pub fn finish(&self, model_dropped: u64) -> TraceReport {
        self.finish_ending(model_dropped, None)
    }

    /// [`Tracer::finish`], with how the run ended in the last line.
    pub fn finish_ending(&self, model_dropped: u64, ending: Option<Ending>) -> TraceReport {
        if let Some((stop, handle)) = self.writer.lock().take() {
            let plugin_dropped = self.dropped();
            let _ = stop.send(Stop {
                t_ns: u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX),
                model_dropped,
                plugin_dropped,
                paused: self.paused.load(Ordering::Relaxed),
                ending,
            });
            let tally = handle.join().unwrap_or_else(|_| Tally {
                error: Some("the trace writer panicked".into()),
                ..Tally::default()
            });
            *self.report.lock() = Some(TraceReport {
                tally,
                model_dropped,
                plugin_dropped,
            });
        }
        self.report.lock().clone().unwrap_or_default()
    }
}

/// One line to write.
enum Item {
    Model(Stamped),
    Plugin(Record),
}

impl Item {
    fn t_ns(&self) -> u64 {
        match self {
            Item::Model(s) => s.t_ns,
            Item::Plugin(r) => r.t_ns,
        }
    }
}

/// The writer thread: until a stop message arrives, drains both channels
/// batch by batch, in time order within a batch, and flushes when idle.
fn write_all<W: Write>(
    mut out: BufWriter<W>,
    path: Option<&str>,
    model: Option<Receiver<Stamped>>,
    plugin: Receiver<Record>,
    stop: Receiver<Stop>,
    recording: &AtomicBool,
) -> Tally {
    let model = model.unwrap_or_else(never);
    let mut tally = Tally::default();
    let mut slots = SlotMap::default();
    let mut batch: Vec<Item> = Vec::new();
    let mut line = String::new();
    // The first write error ends the writing (see the module's comment).
    // The lines still in the buffer (one of them perhaps written in part)
    // are lost, not written.
    let failed = |tally: &mut Tally, buffered: &[u8], e: std::io::Error| {
        if tally.error.is_none() {
            let lines = bytecount(buffered);
            tally.written -= lines.min(tally.written);
            tally.lost += lines;
            if let Some(path) = path {
                // Formatted first and written at once: eprintln! writes each
                // piece with its own write(2), and the guest's serial output,
                // often the same file, could land between them.
                let line = format!(
                    "cvmem: cannot write the trace '{path}': {e}; it ends at its last \
                     complete line, later events are counted, not written (the run goes on)\n"
                );
                eprint!("{line}");
            }
            tally.error = Some(e.to_string());
        }
    };
    loop {
        let mut end = None;
        select! {
            recv(model) -> m => if let Ok(m) = m { batch.push(Item::Model(m)) },
            recv(plugin) -> p => if let Ok(p) = p { batch.push(Item::Plugin(p)) },
            recv(stop) -> s => end = Some(s.unwrap_or_default()),
            default(IDLE_FLUSH) => {
                if tally.error.is_none() && !out.buffer().is_empty() {
                    if let Err(e) = out.flush() {
                        failed(&mut tally, out.buffer(), e);
                    }
                }
                continue;
            }
        }
        batch.extend(model.try_iter().map(Item::Model));
        batch.extend(plugin.try_iter().map(Item::Plugin));
        batch.sort_by_key(Item::t_ns);
        for item in batch.drain(..) {
            line.clear();
            let (kind, vcpu, gfn) = match &item {
                Item::Model(s) => encode_model(s, &mut line),
                Item::Plugin(r) => encode_plugin(r, &mut line),
            };
            // A memslot event counts for its own slot; others for the slot
            // their frame lies in.
            let slot = if let Item::Model(Stamped {
                event: Event::Memslot { slot, old, new, .. },
                ..
            }) = &item
            {
                slots.update(slot.0, *old, *new);
                Some(slot.0)
            } else {
                gfn.and_then(|g| slots.find(g))
            };
            if !recording.load(Ordering::Acquire) {
                tally.paused += 1;
                continue;
            }
            if tally.error.is_some() {
                tally.lost += 1;
                continue;
            }
            line.push('\n');
            match out.write_all(line.as_bytes()) {
                Ok(()) => tally.count(kind, vcpu, slot),
                Err(e) => {
                    tally.lost += 1;
                    failed(&mut tally, out.buffer(), e);
                }
            }
        }
        if let Some(stop) = end {
            tally.paused += stop.paused;
            if tally.error.is_none() {
                if let Err(e) = out.flush() {
                    failed(&mut tally, out.buffer(), e);
                }
            }
            if tally.error.is_none() {
                line.clear();
                encode_end(&tally, &stop, &mut line);
                line.push('\n');
                if let Err(e) = out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
                    // Only the end line was left to write.
                    failed(&mut tally, &[], e);
                }
            }
            if tally.error.is_some() {
                // Dropping the BufWriter would write what it still holds,
                // after the error, once there is room again: a gap in
                // the middle of the file. Drop it unwritten.
                drop(out.into_parts());
            }
            return tally;
        }
    }
}

/// The lines in `bytes`.
fn bytecount(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

impl Tally {
    fn count(&mut self, kind: &'static str, vcpu: Option<u32>, slot: Option<u16>) {
        self.written += 1;
        *self.by_type.entry(kind).or_default() += 1;
        if let Some(v) = vcpu {
            *self.by_vcpu.entry(v).or_default().entry(kind).or_default() += 1;
        }
        if let Some(s) = slot {
            *self.by_slot.entry(s).or_default().entry(kind).or_default() += 1;
        }
    }
}

/// The memslots as the trace has told them so far (start gfn -> end, id).
#[derive(Default)]
struct SlotMap(BTreeMap<u64, (u64, u16)>);

impl SlotMap {
    fn update(&mut self, id: u16, old: Option<GfnRange>, new: Option<GfnRange>) {
        if let Some(old) = old {
            self.0.remove(&old.start().raw());
        }
        if let Some(new) = new {
            self.0.insert(new.start().raw(), (new.end().raw(), id));
        }
    }

    fn find(&self, gfn: u64) -> Option<u16> {
        let (_, &(end, id)) = self.0.range(..=gfn).next_back()?;
        (gfn < end).then_some(id)
    }
}

/// The frame of `gpa` for the per-memslot counts, alias bits (a TD's shared
/// bit 47 or 51) stripped: cvmem's RAM lies below 2^47.
fn frame(gpa: u64) -> u64 {
    (gpa & ((1 << 47) - 1)) >> PAGE_SHIFT
}

/// Appends `"key":value` (with a leading comma).
macro_rules! field {
    ($out:expr, $key:literal, hex $v:expr) => {{
        let _ = write!($out, concat!(",\"", $key, "\":\"{:#x}\""), $v);
    }};
    ($out:expr, $key:literal, str $v:expr) => {{
        let _ = write!($out, concat!(",\"", $key, "\":\"{}\""), $v);
    }};
    ($out:expr, $key:literal, $v:expr) => {{
        let _ = write!($out, concat!(",\"", $key, "\":{}"), $v);
    }};
}

/// `{"t":T,"type":"KIND","vcpu":V` (no closing brace).
fn head(out: &mut String, t_ns: u64, kind: &str, vcpu: Option<u32>) {
    let _ = write!(out, "{{\"t\":{t_ns},\"type\":\"{kind}\",\"vcpu\":");
    match vcpu {
        Some(v) => {
            let _ = write!(out, "{v}");
        }
        None => out.push_str("null"),
    }
}

fn range(out: &mut String, r: &GfnRange) {
    field!(out, "gfn", hex r.start().raw());
    field!(out, "npages", r.end().raw() - r.start().raw());
}

fn role(r: RootRole) -> &'static str {
    match r {
        RootRole::Direct => "direct",
        RootRole::Mirror => "mirror",
    }
}

fn reason(r: ZapReason) -> &'static str {
    match r {
        ZapReason::MemslotLeafs => "memslot-leafs",
        ZapReason::ZapAllFast => "zap-all-fast",
        ZapReason::Conversion => "conversion",
        ZapReason::Range => "range",
        ZapReason::Teardown => "teardown",
    }
}

fn target(out: &mut String, t: FlushTarget) {
    match t {
        FlushTarget::Vcpu(v) => {
            field!(out, "target", v.0);
        }
        FlushTarget::AllVcpus => {
            field!(out, "target", str "all");
        }
    }
}

fn model_access(a: cvmem_model::Access) -> &'static str {
    match a {
        cvmem_model::Access::Read => "read",
        cvmem_model::Access::Write => "write",
        cvmem_model::Access::Fetch => "fetch",
    }
}

/// The name and GPA of a stage-2 exit. No catch-all: a new fault kind in
/// the model must get a name here.
fn exit_name(f: &Stage2Fault) -> (&'static str, Option<u64>) {
    match f {
        Stage2Fault::Mmio { gpa } => ("mmio", Some(gpa.raw())),
        Stage2Fault::MemoryFault { gpa, .. } => ("memory-fault", Some(gpa.raw())),
        Stage2Fault::ReadOnlyWrite { gpa } => ("readonly-write", Some(gpa.raw())),
        Stage2Fault::ReservedGpa { gpa } => ("reserved-gpa", Some(gpa.raw())),
        Stage2Fault::VirtualizationException { gpa, .. } => ("sept-pending-ve", Some(gpa.raw())),
        Stage2Fault::SeptBlocked { gpa } => ("sept-blocked", Some(gpa.raw())),
        Stage2Fault::VmDead { gpa } => ("sept-pending-vm-dead", Some(gpa.raw())),
        Stage2Fault::PageNotValidated { gpa } => ("rmp-not-validated", Some(gpa.raw())),
        Stage2Fault::RmpNestedPageFault { gpa, .. } => ("rmp-npf", Some(gpa.raw())),
        Stage2Fault::RmpSmashed { gpa, .. } => ("rmp-smashed", Some(gpa.raw())),
        Stage2Fault::RmpCiphertextRead { gpa } => ("rmp-ciphertext-read", Some(gpa.raw())),
        Stage2Fault::GmemPrepareFailed { gpa, .. } => ("gmem-prepare-failed", Some(gpa.raw())),
        Stage2Fault::OutOfTables => ("out-of-tables", None),
        Stage2Fault::Dead => ("dead", None),
    }
}

/// Whether a stage-2 exit is an SEPT (TDX) or RMP (SNP) violation.
fn violation(f: &Stage2Fault) -> Option<&'static str> {
    match f {
        Stage2Fault::VirtualizationException { .. } | Stage2Fault::VmDead { .. } => Some("sept"),
        Stage2Fault::PageNotValidated { .. } | Stage2Fault::RmpNestedPageFault { .. } => {
            Some("rmp")
        }
        _ => None,
    }
}

/// Encodes a model event into `out` (no newline). Returns its `type`, its
/// vCPU and a frame it concerns (for the per-memslot counts).
pub fn encode_model(s: &Stamped, out: &mut String) -> (&'static str, Option<u32>, Option<u64>) {
    let (kind, vcpu, gfn): (&'static str, Option<u32>, Option<u64>) = match &s.event {
        Event::FaultExit {
            vcpu,
            access,
            fault,
        } => {
            let (name, gpa) = exit_name(fault);
            let kind = match violation(fault) {
                Some("sept") => "sept-violation",
                Some(_) => "rmp-violation",
                None => "fault-exit",
            };
            head(out, s.t_ns, kind, Some(vcpu.0));
            field!(out, "exit", str name);
            field!(out, "access", str model_access(*access));
            if let Some(gpa) = gpa {
                field!(out, "gpa", hex gpa);
            }
            if let Stage2Fault::RmpNestedPageFault { error_code, .. } = fault {
                field!(out, "error_code", hex * error_code);
            }
            (kind, Some(vcpu.0), gpa.map(frame))
        }
        Event::FaultRetry { vcpu, gfn } => {
            head(out, s.t_ns, "fault-retry", Some(vcpu.0));
            field!(out, "gfn", hex gfn.raw());
            ("fault-retry", Some(vcpu.0), Some(gfn.raw()))
        }
        Event::FaultSpurious { vcpu, gfn, level } => {
            head(out, s.t_ns, "fault-spurious", Some(vcpu.0));
            field!(out, "gfn", hex gfn.raw());
            field!(out, "level", str level);
            ("fault-spurious", Some(vcpu.0), Some(gfn.raw()))
        }
        Event::Map {
            vcpu,
            root,
            role: r,
            gfn,
            level,
            pfn,
        } => {
            head(out, s.t_ns, "map", Some(vcpu.0));
            field!(out, "root", root.0);
            field!(out, "role", str role(*r));
            field!(out, "gfn", hex gfn.raw());
            field!(out, "level", str level);
            field!(out, "pfn", hex pfn.raw());
            ("map", Some(vcpu.0), Some(gfn.raw()))
        }
        Event::Zap {
            root,
            role: r,
            range: g,
            leaves,
            reason: why,
        } => {
            head(out, s.t_ns, "zap", None);
            field!(out, "root", root.0);
            field!(out, "role", str role(*r));
            range(out, g);
            field!(out, "leaves", leaves);
            field!(out, "reason", str reason(*why));
            ("zap", None, Some(g.start().raw()))
        }
        Event::ZapNonLeaf {
            root,
            role: r,
            tables,
            reason: why,
        } => {
            head(out, s.t_ns, "zap-tables", None);
            field!(out, "root", root.0);
            field!(out, "role", str role(*r));
            field!(out, "tables", tables);
            field!(out, "reason", str reason(*why));
            ("zap-tables", None, None)
        }
        Event::RootCreated { root, role: r } => {
            head(out, s.t_ns, "root-created", None);
            field!(out, "root", root.0);
            field!(out, "role", str role(*r));
            ("root-created", None, None)
        }
        Event::RootInvalidated { root, role: r } => {
            head(out, s.t_ns, "root-invalidated", None);
            field!(out, "root", root.0);
            field!(out, "role", str role(*r));
            ("root-invalidated", None, None)
        }
        Event::Flush { request } => {
            head(out, s.t_ns, "flush", None);
            target(out, request.target);
            let kind = match request.kind {
                FlushKind::CurrentRoot => "current-root",
                FlushKind::AllRoots => "all-roots",
            };
            field!(out, "kind", str kind);
            ("flush", None, None)
        }
        Event::Conversion { range: g, private } => {
            head(out, s.t_ns, "conversion", None);
            range(out, g);
            field!(out, "to", str if *private { "private" } else { "shared" });
            ("conversion", None, Some(g.start().raw()))
        }
        Event::SeptRemoved { range: g } => {
            head(out, s.t_ns, "sept-removed", None);
            range(out, g);
            ("sept-removed", None, Some(g.start().raw()))
        }
        Event::SeptAccepted { vcpu, range: g } => {
            head(out, s.t_ns, "accept", Some(vcpu.0));
            range(out, g);
            ("accept", Some(vcpu.0), Some(g.start().raw()))
        }
        Event::RmpUnassigned { range: g, pages } => {
            head(out, s.t_ns, "rmp-unassigned", None);
            range(out, g);
            field!(out, "pages", pages);
            ("rmp-unassigned", None, Some(g.start().raw()))
        }
        Event::RmpSmashed { vcpu, range: g } => {
            head(out, s.t_ns, "rmp-smashed", Some(vcpu.0));
            range(out, g);
            ("rmp-smashed", Some(vcpu.0), Some(g.start().raw()))
        }
        Event::RmpGuestUpdate {
            vcpu,
            range: g,
            validated,
        } => {
            let kind = if validated.is_some() {
                "pvalidate"
            } else {
                "rmpadjust"
            };
            head(out, s.t_ns, kind, Some(vcpu.0));
            range(out, g);
            if let Some(v) = validated {
                field!(out, "validated", v);
            }
            (kind, Some(vcpu.0), Some(g.start().raw()))
        }
        Event::Memslot {
            change,
            slot,
            old,
            new,
        } => {
            head(out, s.t_ns, "memslot", None);
            let change = match change {
                MemslotChange::Create => "create",
                MemslotChange::Delete => "delete",
                MemslotChange::Move => "move",
                MemslotChange::FlagsOnly => "flags",
                MemslotChange::Grow => "grow",
            };
            field!(out, "change", str change);
            field!(out, "slot", slot.0);
            for (key, r) in [("old", old), ("new", new)] {
                match r {
                    Some(r) => {
                        let _ = write!(
                            out,
                            ",\"{key}\":{{\"gfn\":\"{:#x}\",\"npages\":{}}}",
                            r.start().raw(),
                            r.end().raw() - r.start().raw()
                        );
                    }
                    None => {
                        let _ = write!(out, ",\"{key}\":null");
                    }
                }
            }
            ("memslot", None, None)
        }
        Event::Invalidated { seq, range: g } => {
            head(out, s.t_ns, "invalidate", None);
            field!(out, "seq", seq);
            range(out, g);
            ("invalidate", None, None)
        }
    };
    out.push('}');
    (kind, vcpu, gfn)
}

/// How an access is spelt in the trace.
fn access_name(a: Access) -> &'static str {
    match a {
        Access::Read => "read",
        Access::Write => "write",
        Access::Fetch => "fetch",
    }
}

/// The conventional name of an exception vector.
pub fn vector_name(v: u8) -> &'static str {
    const NAMES: [&str; 32] = [
        "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "#CSO", "#TS", "#NP", "#SS",
        "#GP", "#PF", "#15", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "#22", "#23", "#24", "#25",
        "#26", "#27", "#HV", "#VC", "#SX", "#31",
    ];
    NAMES.get(usize::from(v)).copied().unwrap_or("?")
}

/// Encodes a plugin event into `out` (no newline). Returns its `type`, its
/// vCPU and a frame it concerns.
pub fn encode_plugin(r: &Record, out: &mut String) -> (&'static str, Option<u32>, Option<u64>) {
    let (kind, gfn) = match &r.event {
        PluginEvent::Inject { fault, gpa, access } => {
            let kind = match fault.vector {
                20 => "ve-injected",
                29 => "vc-injected",
                _ => "exception-injected",
            };
            head(out, r.t_ns, kind, r.vcpu);
            field!(out, "vector", fault.vector);
            field!(out, "name", str vector_name(fault.vector));
            if let Some(e) = fault.error_code {
                field!(out, "error_code", hex e);
            }
            if let Some(cr2) = fault.cr2 {
                field!(out, "cr2", hex cr2);
            }
            if let Some(gpa) = gpa {
                field!(out, "gpa", hex * gpa);
            }
            if let Some(a) = access {
                field!(out, "access", str access_name(*a));
            }
            (kind, None)
        }
        PluginEvent::DmaBlocked { gpa, write } => {
            head(out, r.t_ns, "dma-blocked", r.vcpu);
            field!(out, "gpa", hex * gpa);
            field!(out, "write", write);
            ("dma-blocked", Some(frame(*gpa)))
        }
        PluginEvent::FlushSent { target: t } => {
            head(out, r.t_ns, "flush-sent", r.vcpu);
            target(out, *t);
            ("flush-sent", None)
        }
        PluginEvent::Insn { insn, rax, outcome } => {
            head(out, r.t_ns, "insn", r.vcpu);
            field!(out, "insn", str format!("{insn:?}").to_lowercase());
            field!(out, "rax", hex * rax);
            let o = match outcome {
                InsnOutcome::Done => "done",
                InsnOutcome::Declined => "declined",
                InsnOutcome::Fault => "fault",
                InsnOutcome::Stopped => "stopped",
            };
            field!(out, "outcome", str o);
            ("insn", None)
        }
        PluginEvent::MissingFlush(m) => {
            head(out, r.t_ns, "missing-flush", r.vcpu);
            field!(out, "gva", hex m.gva.raw());
            field!(out, "gpa", hex m.gpa.raw());
            field!(out, "access", str access_name(m.access));
            field!(out, "backing", hex m.translation.backing.raw());
            field!(out, "zap_seq", m.zap.seq);
            field!(out, "zap_root", m.zap.root.0);
            field!(out, "zap_role", str role(m.zap.role));
            field!(out, "zap_gfn", hex m.zap.range.start().raw());
            field!(out, "zap_npages", m.zap.range.len());
            field!(out, "zap_reason", str reason(m.zap.reason));
            ("missing-flush", Some(frame(m.gpa.raw())))
        }
        PluginEvent::VmStopped { gpa } => {
            head(out, r.t_ns, "vm-stopped", r.vcpu);
            if let Some(gpa) = gpa {
                field!(out, "gpa", hex * gpa);
            }
            ("vm-stopped", None)
        }
    };
    out.push('}');
    (kind, r.vcpu, gfn)
}

/// The last line: how many events were written and dropped.
fn encode_end(tally: &Tally, stop: &Stop, out: &mut String) {
    let _ = write!(
        out,
        "{{\"t\":{},\"type\":\"end\",\"vcpu\":null,\"events\":{},\"dropped\":{},\"model_dropped\":{},\"plugin_dropped\":{},\"paused\":{}",
        stop.t_ns,
        tally.written,
        stop.model_dropped + stop.plugin_dropped,
        stop.model_dropped,
        stop.plugin_dropped,
        tally.paused
    );
    if let Some(e) = &stop.ending {
        // The title is plugin text; serde_json quotes it.
        let _ = write!(
            out,
            ",\"ended\":{},\"early\":{}",
            serde_json::Value::String(e.how.clone()),
            e.early
        );
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use cvmem_model::{FlushRequest, Gfn, MemslotId, RootId, VcpuId};
    use std::sync::Arc;

    fn model(t_ns: u64, event: Event) -> String {
        let mut s = String::new();
        encode_model(&Stamped { t_ns, event }, &mut s);
        s
    }

    fn plugin(vcpu: Option<u32>, event: PluginEvent) -> String {
        let mut s = String::new();
        encode_plugin(
            &Record {
                t_ns: 7,
                vcpu,
                event,
            },
            &mut s,
        );
        s
    }

    fn range(start: u64, npages: u64) -> GfnRange {
        GfnRange::from_start_len(Gfn::new(start), npages).unwrap()
    }

    #[test]
    fn model_events_encode_as_one_object() {
        assert_eq!(
            model(
                5,
                Event::Zap {
                    root: RootId(2),
                    role: RootRole::Mirror,
                    range: range(0x120, 1),
                    leaves: 1,
                    reason: ZapReason::Conversion,
                }
            ),
            r#"{"t":5,"type":"zap","vcpu":null,"root":2,"role":"mirror","gfn":"0x120","npages":1,"leaves":1,"reason":"conversion"}"#
        );
        assert_eq!(
            model(
                6,
                Event::Flush {
                    request: FlushRequest {
                        target: FlushTarget::Vcpu(VcpuId(3)),
                        kind: FlushKind::CurrentRoot,
                        gfns: None,
                    }
                }
            ),
            r#"{"t":6,"type":"flush","vcpu":null,"target":3,"kind":"current-root"}"#
        );
        assert_eq!(
            model(
                7,
                Event::Conversion {
                    range: range(0, 16),
                    private: false
                }
            ),
            r#"{"t":7,"type":"conversion","vcpu":null,"gfn":"0x0","npages":16,"to":"shared"}"#
        );
        assert_eq!(
            model(
                8,
                Event::Memslot {
                    change: MemslotChange::Move,
                    slot: MemslotId(4),
                    old: Some(range(0x100, 2)),
                    new: None,
                }
            ),
            r#"{"t":8,"type":"memslot","vcpu":null,"change":"move","slot":4,"old":{"gfn":"0x100","npages":2},"new":null}"#
        );
        assert_eq!(
            model(
                9,
                Event::SeptAccepted {
                    vcpu: VcpuId(1),
                    range: range(0x4000, 1)
                }
            ),
            r#"{"t":9,"type":"accept","vcpu":1,"gfn":"0x4000","npages":1}"#
        );
        assert_eq!(
            model(
                10,
                Event::FaultExit {
                    vcpu: VcpuId(0),
                    access: cvmem_model::Access::Write,
                    fault: Stage2Fault::PageNotValidated {
                        gpa: cvmem_model::Gpa::new(0x5000)
                    },
                }
            ),
            r#"{"t":10,"type":"rmp-violation","vcpu":0,"exit":"rmp-not-validated","access":"write","gpa":"0x5000"}"#
        );
    }

    #[test]
    fn missing_flush_encodes_with_its_zap() {
        use cvmem_model::{BackingAddr, Perms, Translation, ZapRecord};
        let report = MissingFlush {
            vcpu: 1,
            gva: cvmem_model::Gva::new(0xffff_8000_0020_0008),
            gpa: cvmem_model::Gpa::new(0x20_0008),
            access: Access::Write,
            translation: Translation {
                gfn: Gfn::new(0x200),
                backing: BackingAddr::new(0x7f00_0020_0000),
                level: cvmem_model::PageLevel::Size2M,
                perms: Perms::RWX,
                private: false,
                root: RootId(3),
            },
            zap: ZapRecord {
                seq: 9,
                root: RootId(3),
                role: RootRole::Direct,
                range: range(0x200, 1),
                reason: ZapReason::Range,
            },
        };
        assert_eq!(
            plugin(Some(1), PluginEvent::MissingFlush(report)),
            r#"{"t":7,"type":"missing-flush","vcpu":1,"gva":"0xffff800000200008","gpa":"0x200008","access":"write","backing":"0x7f0000200000","zap_seq":9,"zap_root":3,"zap_role":"direct","zap_gfn":"0x200","zap_npages":1,"zap_reason":"range"}"#
        );
    }

    #[test]
    fn plugin_events_encode_as_one_object() {
        let ve = Fault {
            vector: 20,
            error_code: None,
            cr2: None,
        };
        assert_eq!(
            plugin(
                Some(0),
                PluginEvent::Inject {
                    fault: ve,
                    gpa: Some(0x8000_0000_1000),
                    access: Some(Access::Read)
                }
            ),
            r##"{"t":7,"type":"ve-injected","vcpu":0,"vector":20,"name":"#VE","gpa":"0x800000001000","access":"read"}"##
        );
        let vc = Fault {
            vector: 29,
            error_code: Some(0x72),
            cr2: None,
        };
        assert_eq!(
            plugin(
                Some(1),
                PluginEvent::Inject {
                    fault: vc,
                    gpa: None,
                    access: None
                }
            ),
            r##"{"t":7,"type":"vc-injected","vcpu":1,"vector":29,"name":"#VC","error_code":"0x72"}"##
        );
        assert_eq!(
            plugin(
                None,
                PluginEvent::DmaBlocked {
                    gpa: 0x3000,
                    write: true
                }
            ),
            r#"{"t":7,"type":"dma-blocked","vcpu":null,"gpa":"0x3000","write":true}"#
        );
        assert_eq!(
            plugin(
                None,
                PluginEvent::FlushSent {
                    target: FlushTarget::AllVcpus
                }
            ),
            r#"{"t":7,"type":"flush-sent","vcpu":null,"target":"all"}"#
        );
        assert_eq!(
            plugin(
                Some(0),
                PluginEvent::Insn {
                    insn: Insn::Tdcall,
                    rax: 6,
                    outcome: InsnOutcome::Done
                }
            ),
            r#"{"t":7,"type":"insn","vcpu":0,"insn":"tdcall","rax":"0x6","outcome":"done"}"#
        );
    }

    /// An output whose writes wait until the test opens the gate (drops
    /// the sender), so that the channel fills up.
    struct Gated {
        gate: Receiver<()>,
        out: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gated {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.gate.recv();
            self.out.lock().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Stopped tracing (the control socket's `trace` command) counts what
    /// it does not write, and starting again writes again.
    #[test]
    fn stopped_tracing_counts_what_it_skips() {
        let (open, gate) = bounded::<()>(0);
        drop(open);
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = Box::new(Gated {
            gate,
            out: out.clone(),
        });
        let tracer = Tracer::with_output(sink, None, Instant::now(), 64).unwrap();
        let blocked = |i: u64| PluginEvent::DmaBlocked {
            gpa: i << 12,
            write: true,
        };
        assert!(tracer.set_recording(false));
        for i in 0..3 {
            tracer.emit(None, blocked(i));
        }
        assert!(!tracer.set_recording(true));
        tracer.emit(None, blocked(9));
        let report = tracer.finish(0);
        assert_eq!((report.tally.written, report.tally.paused), (1, 3));
        let text = String::from_utf8(out.lock().clone()).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains(r#""gpa":"0x9000""#), "{text}");
        assert!(
            text.lines().last().unwrap().ends_with(r#""paused":3}"#),
            "{text}"
        );
    }

    #[test]
    fn a_full_channel_drops_and_counts_and_the_last_line_says_so() {
        let (open, gate) = bounded::<()>(0);
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = Box::new(Gated {
            gate,
            out: out.clone(),
        });
        let tracer = Tracer::with_output(sink, None, Instant::now(), 1).unwrap();
        const N: u64 = 1000;
        for i in 0..N {
            tracer.emit(
                Some(0),
                PluginEvent::DmaBlocked {
                    gpa: i << 12,
                    write: false,
                },
            );
        }
        // The writer blocks once its BufWriter (8 KiB, lines of 60 bytes
        // or more) writes through: it takes at most 8192 / 60 + 1 events,
        // the channel one more, and the rest is dropped.
        let dropped = tracer.dropped();
        assert!(dropped >= N - 8192 / 60 - 2, "{dropped}");
        drop(open);
        let report = tracer.finish(3);
        assert_eq!(report.plugin_dropped, dropped);
        assert_eq!(report.model_dropped, 3);
        assert_eq!(report.tally.written + dropped, N);
        assert_eq!(
            report.tally.by_type.get("dma-blocked"),
            Some(&(N - dropped))
        );
        let text = String::from_utf8(out.lock().clone()).unwrap();
        let last = text.lines().last().unwrap();
        assert!(
            last.contains(&format!(
                r#""type":"end","vcpu":null,"events":{},"dropped":{},"model_dropped":3,"plugin_dropped":{dropped},"paused":0}}"#,
                N - dropped,
                dropped + 3
            )),
            "{last}"
        );
        assert_eq!(text.lines().count() as u64, N - dropped + 1);
        // Finishing again returns the same report; emitting afterwards is
        // counted, not lost silently.
        assert_eq!(tracer.finish(0), report);
        tracer.emit(None, PluginEvent::VmStopped { gpa: Some(0) });
        assert_eq!(tracer.dropped(), dropped + 1);
    }

    #[test]
    fn per_memslot_counts_follow_the_slots() {
        let (open, gate) = bounded::<()>(0);
        drop(open);
        let out = Arc::new(Mutex::new(Vec::new()));
        let (mtx, mrx) = bounded(16);
        let tracer =
            Tracer::with_output(Box::new(Gated { gate, out }), Some(mrx), Instant::now(), 16)
                .unwrap();
        let ev = |t_ns, event| Stamped { t_ns, event };
        mtx.send(ev(
            1,
            Event::Memslot {
                change: MemslotChange::Create,
                slot: MemslotId(2),
                old: None,
                new: Some(range(0x100, 0x100)),
            },
        ))
        .unwrap();
        mtx.send(ev(
            2,
            Event::Conversion {
                range: range(0x180, 1),
                private: true,
            },
        ))
        .unwrap();
        mtx.send(ev(
            3,
            Event::Conversion {
                range: range(0x300, 1),
                private: true,
            },
        ))
        .unwrap();
        let report = tracer.finish(0);
        assert_eq!(report.tally.by_type.get("conversion"), Some(&2));
        assert_eq!(report.tally.by_slot.len(), 1);
        assert_eq!(report.tally.by_slot[&2].get("conversion"), Some(&1));
    }

    /// A file that takes `room` bytes, then fails as a full file system
    /// does (a partial write, then ENOSPC); `room` may grow afterwards, as
    /// when space is freed.
    struct Full {
        room: Arc<Mutex<usize>>,
        out: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut room = self.room.lock();
            if *room == 0 {
                return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC
            }
            let n = buf.len().min(*room);
            *room -= n;
            self.out.lock().extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A full file system (issue 24's faults): the file is JSON lines up to
    /// its last complete line, nothing is written after the first error
    /// even when space comes back, and every event is either written or
    /// counted lost.
    #[test]
    fn a_full_file_system_ends_the_trace_at_a_complete_line() {
        let room = Arc::new(Mutex::new(20_000));
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = Box::new(Full {
            room: room.clone(),
            out: out.clone(),
        });
        let tracer = Tracer::with_output(sink, None, Instant::now(), 1 << 12).unwrap();
        const N: u64 = 2000;
        for i in 0..N {
            tracer.emit(
                Some(1),
                PluginEvent::DmaBlocked {
                    gpa: i << 12,
                    write: true,
                },
            );
            if i == N / 2 {
                // Let the writer meet the error, then free space.
                std::thread::sleep(Duration::from_millis(300));
                *room.lock() = usize::MAX;
            }
        }
        let report = tracer.finish(0);
        let t = report.tally;
        assert_eq!(
            t.error.as_deref().map(|e| e.contains("os error 28")),
            Some(true)
        );
        assert_eq!(t.written + t.lost + tracer.dropped(), N);
        assert!(t.lost > 0);
        let text = out.lock().clone();
        assert_eq!(text.len(), 20_000, "written after the error");
        let complete = &text[..=text.iter().rposition(|&b| b == b'\n').unwrap()];
        let lines: Vec<&str> = std::str::from_utf8(complete).unwrap().lines().collect();
        assert_eq!(lines.len() as u64, t.written, "complete lines");
        for l in &lines {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["type"], "dma-blocked", "{l}");
        }
    }

    /// An idle writer flushes: a QEMU killed with SIGKILL leaves the events
    /// of all but its last moments.
    #[test]
    fn an_idle_writer_flushes() {
        let room = Arc::new(Mutex::new(usize::MAX));
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = Box::new(Full {
            room,
            out: out.clone(),
        });
        let tracer = Tracer::with_output(sink, None, Instant::now(), 16).unwrap();
        tracer.emit(None, PluginEvent::VmStopped { gpa: None });
        let deadline = Instant::now() + IDLE_FLUSH * 20;
        while out.lock().is_empty() {
            assert!(Instant::now() < deadline, "not flushed when idle");
            std::thread::sleep(IDLE_FLUSH / 4);
        }
        assert!(out.lock().ends_with(b"\n"));
        // How the run ended goes into the last line.
        tracer.finish_ending(
            0,
            Some(Ending {
                how: "ended by the host (a \"signal\")".into(),
                early: true,
            }),
        );
        let text = String::from_utf8(out.lock().clone()).unwrap();
        let end: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(end["type"], "end");
        assert_eq!(end["ended"], "ended by the host (a \"signal\")");
        assert_eq!(end["early"], true);
        assert_eq!(end["events"], 1);
    }

    #[test]
    fn an_uncreatable_file_is_refused() {
        let e = Tracer::start("/nonexistent-dir/x.jsonl", None, Instant::now(), 4).unwrap_err();
        assert!(
            e.contains("cannot create '/nonexistent-dir/x.jsonl'"),
            "{e}"
        );
    }
}
