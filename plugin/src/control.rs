//! `control=PATH`: a Unix socket through which a script drives the host side
//! while the guest runs, as a VMM drives KVM with ioctls.
//!
//! One JSON request a line, one JSON reply a line: `{"ok": true, ...}` or
//! `{"ok": false, "error": "..."}`. Requests are objects with a `cmd`:
//!
//! | cmd | fields | KVM |
//! |---|---|---|
//! | `list-memslots` | | the model's memslots and QEMU's RAM sections |
//! | `create-memslot` | `slot`, `gpa`, `size`, `flags`?, `backing`? | `KVM_SET_USER_MEMORY_REGION2`, KVM_MR_CREATE |
//! | `delete-memslot` | `slot` | the same with size 0, KVM_MR_DELETE |
//! | `move-memslot` | `slot`, `gpa` | KVM_MR_MOVE |
//! | `set-memslot-flags` | `slot`, `flags` | KVM_MR_FLAGS_ONLY |
//! | `set-attributes` | `gpa`, `size`, `attributes`, `flags`? | `KVM_SET_MEMORY_ATTRIBUTES` as QEMU's `kvm_convert_memory()` issues it |
//! | `zap` | `gpa`, `size`, `roots`?, `flush`? | `kvm_zap_gfn_range()` |
//! | `zap-all` | `flush`? | `kvm_mmu_zap_all_fast()` |
//! | `flush` | `kind` (`current`/`all`), `vcpu`? | `KVM_REQ_TLB_FLUSH_CURRENT` / `KVM_REQ_TLB_FLUSH` |
//! | `set-zap-quirk` | `enabled` | `KVM_CAP_DISABLE_QUIRKS2` of `KVM_X86_QUIRK_SLOT_ZAP_ALL` |
//! | `stats` | | the model's and the plugin's counters |
//! | `write` | `gpa`, `value` | the VMM storing 8 bytes into QEMU's RAM at `gpa`, a QEMU address, through its mapping |
//! | `trace` | `on` | start or stop writing the trace of `trace=PATH` |
//!
//! The list of commands and their fields is also [`crate::commands::COMMANDS`],
//! from which `cvmem-ctl` prints its usage; a test checks the two agree.
//!
//! Numbers are JSON numbers or strings (`"0x1000"`, `"64M"`). Every request
//! is checked as KVM checks the ioctl (the model's [`MemslotError`] and
//! [`AttrError`](cvmem_model::AttrError) carry KVM's errno), and its effects
//! (softTLB flushes, discarded memory) are carried out exactly as for
//! QEMU's own reports, through [`ControlHost`].
//!
//! **Backing.** A memslot's backing address is a QEMU guest-physical
//! address (see `kvm.rs`), so a slot made here must be backed by RAM QEMU
//! has: `[backing, backing + size)` (by default `backing = gpa`) must lie
//! inside one RAM section QEMU reported and has not deleted — re-creating a
//! slot QEMU made, a part of one, or an alias of its RAM at another GPA. A
//! read-only section only backs a `READONLY` slot.
//!
//! Nothing a client sends may hurt the VM: a line is at most
//! [`MAX_LINE`] bytes, malformed or unknown requests get an error reply,
//! a panic while handling one is caught and answered as an error, and a
//! client that goes away mid-request is dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicU32, Ordering};

use cvmem_model::{
    BackingAddr, FlushKind, Gfn, GfnRange, Gpa, MemoryRegion, MemslotError, MemslotFlags,
    MemslotId, VcpuId, ZapFilter, PAGE_SIZE,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::effects::Effects;
use crate::flavour::Flavour as _;
use crate::guard::guard;
use crate::plugin::Plugin;

/// How every error reply's `error` starts, followed by a colon: KVM's
/// errno names for a refused request, `bad request` for a line that is no
/// request, the connection's own errors (docs/control.md, "Errors").
/// `error_reply` insists on it in debug builds; the fuzzing seam checks
/// every reply against it.
pub const ERROR_CODES: &[&str] = &[
    "EINVAL",
    "EEXIST",
    "EFAULT",
    "ENOENT",
    "bad request",
    // A request line longer than MAX_LINE (the connection closes).
    "E2BIG",
    // MAX_CLIENTS are connected already.
    "EBUSY",
    // A panic while handling the request, caught (a bug).
    "EIO",
];

/// The longest request line accepted.
pub const MAX_LINE: usize = 64 * 1024;

/// Clients served at once; more are refused with an error line.
const MAX_CLIENTS: u32 = 8;

/// `KVM_MEMORY_ATTRIBUTE_PRIVATE` (include/uapi/linux/kvm.h).
pub const KVM_MEMORY_ATTRIBUTE_PRIVATE: u64 = 1 << 3;

/// What QEMU must do for the control socket: implemented over the cvm API
/// in `ffi.rs`, whose calls are safe from any thread.
pub trait ControlHost: Sync {
    /// A client thread starts: it must be known to QEMU's RCU before it
    /// touches guest memory.
    fn thread_start(&self);
    /// The client thread is leaving (after `thread_start`).
    fn thread_exit(&self);
    /// Carries out a model operation's effects as the callbacks do.
    fn apply(&self, effects: Effects);
    /// Writes `bytes` into QEMU's memory at `at`.
    fn phys_write(&self, at: BackingAddr, bytes: &[u8]) -> bool;
}

/// A number given as a JSON number or a string (`0x...`, `64M`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Num(pub u64);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Num, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Num(n)),
            Raw::S(s) => crate::args::parse_size(&s)
                .map(Num)
                .ok_or_else(|| serde::de::Error::custom(format!("'{s}' is not a number"))),
        }
    }
}

/// Which roots a zap covers (KVM's `attr_filter`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Roots {
    /// Shared (direct) and private (mirror).
    #[default]
    All,
    /// The direct roots.
    Shared,
    /// The mirror root.
    Private,
}

/// Which flush.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum FlushKindArg {
    /// `KVM_REQ_TLB_FLUSH_CURRENT`.
    Current,
    /// `KVM_REQ_TLB_FLUSH`.
    All,
}

fn yes() -> bool {
    true
}

/// One request.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
#[allow(missing_docs)]
pub enum Command {
    ListMemslots,
    CreateMemslot {
        slot: Num,
        gpa: Num,
        size: Num,
        #[serde(default)]
        flags: Option<Num>,
        #[serde(default)]
        backing: Option<Num>,
    },
    DeleteMemslot {
        slot: Num,
    },
    MoveMemslot {
        slot: Num,
        gpa: Num,
    },
    SetMemslotFlags {
        slot: Num,
        flags: Num,
    },
    SetAttributes {
        gpa: Num,
        size: Num,
        attributes: Num,
        #[serde(default)]
        flags: Option<Num>,
    },
    Zap {
        gpa: Num,
        size: Num,
        #[serde(default)]
        roots: Roots,
        #[serde(default = "yes")]
        flush: bool,
    },
    ZapAll {
        #[serde(default = "yes")]
        flush: bool,
    },
    Flush {
        kind: FlushKindArg,
        #[serde(default)]
        vcpu: Option<Num>,
    },
    SetZapQuirk {
        enabled: bool,
    },
    Stats,
    Write {
        gpa: Num,
        value: Num,
    },
    /// Start (`on: true`) or stop writing the trace of `trace=PATH`.
    Trace {
        on: bool,
    },
}

/// Parses one request line.
pub fn parse(line: &str) -> Result<Command, String> {
    serde_json::from_str(line).map_err(|e| format!("bad request: {e}"))
}

/// The reply to a failed request.
pub fn error_reply(e: &str) -> Value {
    debug_assert!(
        ERROR_CODES
            .iter()
            .any(|c| e.strip_prefix(c).is_some_and(|r| r.starts_with(':'))),
        "an error reply without its code: {e}"
    );
    json!({"ok": false, "error": e})
}

/// A slot id as KVM takes it: bits 15:0 the id, 31:16 the address space
/// (`KVM_ADDRESS_SPACE_NUM`; cvmem models address space 0 only).
fn slot_id(n: Num) -> Result<MemslotId, String> {
    if n.0 > u64::from(u16::MAX) {
        return Err(format!(
            "EINVAL: slot {:#x}: address space {} is not modelled",
            n.0,
            n.0 >> 16
        ));
    }
    Ok(MemslotId(n.0 as u16))
}

/// A page-aligned, non-empty, non-wrapping byte range as frames, as
/// `kvm_vm_ioctl_set_mem_attributes()` checks it (the width check is the
/// model's).
fn gfn_range(gpa: u64, size: u64) -> Result<GfnRange, String> {
    if gpa % PAGE_SIZE != 0 || size % PAGE_SIZE != 0 {
        return Err("EINVAL: address or size not page aligned".into());
    }
    if size == 0 || gpa.checked_add(size).is_none() {
        return Err("EINVAL: empty or wrapping range".into());
    }
    GfnRange::from_start_len(Gpa::new(gpa).gfn(), size / PAGE_SIZE)
        .ok_or_else(|| "EINVAL: range out of bounds".into())
}

/// KVM's 32 flag bits; anything wider is all unknown flags (EINVAL).
fn flag_bits(n: u64) -> MemslotFlags {
    MemslotFlags::from_bits(u32::try_from(n).unwrap_or(u32::MAX))
}

fn memslot_err(e: MemslotError) -> String {
    e.to_string()
}

/// Runs `cmd` against `plugin`, carrying out its effects through `host`.
pub fn execute(plugin: &Plugin, host: &dyn ControlHost, cmd: Command) -> Result<Value, String> {
    let kvm = &plugin.kvm;
    let vm = kvm.vm();
    match cmd {
        Command::ListMemslots => {
            let slots: Vec<Value> = vm
                .memslots()
                .iter()
                .map(|s| {
                    json!({
                        "slot": s.id.0,
                        "gpa": s.base_gfn.gpa().raw(),
                        "size": s.npages * PAGE_SIZE,
                        "backing": s.backing.raw(),
                        "flags": s.flags.bits(),
                        "invalid": s.invalid,
                    })
                })
                .collect();
            let ram: Vec<Value> = kvm
                .qemu_ram
                .lock()
                .iter()
                .map(|r| json!({"gpa": r.addr.raw(), "size": r.size, "readonly": r.readonly, "name": r.name}))
                .collect();
            Ok(json!({"memslots": slots, "qemu_ram": ram}))
        }
        Command::CreateMemslot {
            slot,
            gpa,
            size,
            flags,
            backing,
        } => {
            let id = slot_id(slot)?;
            let flags = flag_bits(flags.map_or(0, |f| f.0));
            let backing = BackingAddr::new(backing.unwrap_or(gpa).0);
            let ram = kvm.qemu_ram.lock();
            if vm.memslots().by_id(id).is_some() {
                return Err(format!(
                    "EEXIST: slot {} exists (move-memslot, set-memslot-flags or delete-memslot it)",
                    id.0
                ));
            }
            // Checked by KVM first (size, alignment, wrap, flags, overlap);
            // the backing check is cvmem's and comes after KVM's.
            let region = MemoryRegion {
                slot: id,
                flags,
                guest_phys_addr: Gpa::new(gpa.0),
                memory_size: size.0,
                backing,
            };
            vm.memslots()
                .check(&region, vm.vm_type(), vm.alias())
                .map_err(memslot_err)?;
            let end = backing.checked_add(size.0).ok_or("EINVAL: backing wraps")?;
            let section = ram
                .iter()
                .find(|r| r.addr <= backing && end <= r.end())
                .ok_or_else(|| {
                    format!(
                        "EFAULT: backing {backing:#x}+{:#x} is not inside one RAM section QEMU \
                         reported (see list-memslots' qemu_ram)",
                        size.0
                    )
                })?;
            if section.readonly && !flags.contains(MemslotFlags::READONLY) {
                return Err(format!(
                    "EFAULT: backing {backing:#x} is read-only ({}): give flags READONLY (2)",
                    section.name
                ));
            }
            let flush = vm.set_memory_region(region).map_err(memslot_err)?;
            drop(ram);
            host.apply(Effects::flush(vm.flush(flush)));
            Ok(json!({}))
        }
        Command::DeleteMemslot { slot } => {
            let id = slot_id(slot)?;
            let ram = kvm.qemu_ram.lock();
            let flush = vm.delete_memslot(id).map_err(memslot_err)?;
            drop(ram);
            host.apply(Effects::flush(vm.flush(flush)));
            Ok(json!({}))
        }
        Command::MoveMemslot { slot, gpa } => {
            let id = slot_id(slot)?;
            if gpa.0 % PAGE_SIZE != 0 {
                return Err(memslot_err(MemslotError::Unaligned));
            }
            let ram = kvm.qemu_ram.lock();
            let flush = vm
                .move_memslot(id, Gfn::new(gpa.0 / PAGE_SIZE))
                .map_err(memslot_err)?;
            drop(ram);
            host.apply(Effects::flush(vm.flush(flush)));
            Ok(json!({}))
        }
        Command::SetMemslotFlags { slot, flags } => {
            let id = slot_id(slot)?;
            let ram = kvm.qemu_ram.lock();
            let old = *vm
                .memslots()
                .by_id(id)
                .ok_or(MemslotError::NoSuchSlot(id))
                .map_err(memslot_err)?;
            let flush = vm
                .set_memory_region(MemoryRegion {
                    slot: id,
                    flags: flag_bits(flags.0),
                    guest_phys_addr: old.base_gfn.gpa(),
                    memory_size: old.npages * PAGE_SIZE,
                    backing: old.backing,
                })
                .map_err(memslot_err)?;
            drop(ram);
            host.apply(Effects::flush(vm.flush(flush)));
            Ok(json!({}))
        }
        Command::SetAttributes {
            gpa,
            size,
            attributes,
            flags,
        } => {
            // kvm_vm_ioctl_set_mem_attributes(): flags must be 0, the
            // attributes among the supported ones (PRIVATE where the VM
            // type has private memory, else none), the range aligned,
            // non-empty and not wrapping.
            if flags.is_some_and(|f| f.0 != 0) {
                return Err("EINVAL: flags must be 0".into());
            }
            let supported = if vm.vm_type().has_private_mem() {
                KVM_MEMORY_ATTRIBUTE_PRIVATE
            } else {
                0
            };
            if attributes.0 & !supported != 0 {
                return Err(format!(
                    "EINVAL: unsupported attributes {:#x} (supported: {supported:#x})",
                    attributes.0
                ));
            }
            let range = gfn_range(gpa.0, size.0)?;
            if range.end() > vm.alias().max_gfn() {
                return Err("EINVAL: range beyond the guest address width".into());
            }
            let private = attributes.0 & KVM_MEMORY_ATTRIBUTE_PRIVATE != 0;
            // As QEMU's kvm_convert_memory(): the side left is discarded.
            let mut effects = Effects::NONE;
            kvm.vmm
                .convert(range, private, true, &mut effects)
                .map_err(|e| format!("EINVAL: {e}"))?;
            host.apply(effects);
            Ok(json!({}))
        }
        Command::Zap {
            gpa,
            size,
            roots,
            flush,
        } => {
            let range = gfn_range(gpa.0, size.0)?;
            if range.end() > vm.alias().max_gfn() {
                return Err("EINVAL: range beyond the guest address width".into());
            }
            let filter = match roots {
                Roots::All => ZapFilter::ALL,
                Roots::Shared => ZapFilter {
                    shared: true,
                    private: false,
                },
                Roots::Private => ZapFilter {
                    shared: false,
                    private: true,
                },
            };
            let token = vm.zap_gfn_range(range, filter);
            Ok(json!({"flushed": finish(vm, host, token, flush)}))
        }
        Command::ZapAll { flush } => {
            let token = vm.zap_all_fast();
            Ok(json!({"flushed": finish(vm, host, token, flush)}))
        }
        Command::Flush { kind, vcpu } => {
            let kind = match kind {
                FlushKindArg::Current => FlushKind::CurrentRoot,
                FlushKindArg::All => FlushKind::AllRoots,
            };
            let n = vm.config().max_vcpus;
            let vcpus: Vec<u32> = match vcpu {
                Some(v) if v.0 >= u64::from(n) => {
                    return Err(format!("EINVAL: no vCPU {} (the VM has {n})", v.0))
                }
                Some(v) => vec![v.0 as u32],
                None => (0..n).collect(),
            };
            let mut effects = Effects::NONE;
            for v in vcpus {
                effects.merge(Effects::flush(vm.flush(vm.request_flush(VcpuId(v), kind))));
            }
            host.apply(effects);
            Ok(json!({}))
        }
        Command::SetZapQuirk { enabled } => {
            if !vm.set_slot_zap_all_quirk(enabled) {
                return Err(format!(
                    "EINVAL: vm-type={} does not honour KVM_X86_QUIRK_SLOT_ZAP_ALL",
                    vm.vm_type()
                ));
            }
            Ok(json!({"slot_zap_all": vm.slot_zap_all()}))
        }
        Command::Trace { on } => match &plugin.trace {
            Some(t) => Ok(json!({"was_on": t.set_recording(on), "on": on})),
            None => Err("ENOENT: no trace: start QEMU with the plugin argument trace=PATH".into()),
        },
        Command::Stats => {
            let s = vm.stats();
            let cached = plugin.sync_stage2_cache();
            let mut reply = json!({
                "vm_type": vm.vm_type().to_string(),
                "slot_zap_all": vm.slot_zap_all(),
                "lookups": s.lookups + cached,
                "lookup_hits": s.lookup_hits + cached,
                "stage2_cache_hits": cached,
                "faults": s.faults,
                "fault_retries": s.fault_retries,
                "maps": s.maps,
                "mmio_exits": s.mmio_exits,
                "memory_fault_exits": s.memory_fault_exits,
                "zaps": s.zaps,
                "leaves_zapped": s.leaves_zapped,
                "roots_invalidated": s.roots_invalidated,
                "flushes": s.flushes,
                "flushes_all_vcpus": s.flushes_all_vcpus,
                "conversions": s.conversions,
                "frames_converted": s.frames_converted,
                "memslot_changes": s.memslot_changes,
                "mmu_invalidate_seq": s.mmu_invalidate_seq,
                "frames_needing_accept": s.frames_needing_accept,
                "sept_removes": s.sept_removes,
                "sept_accepts": s.sept_accepts,
                "rmp_pages_unassigned": s.rmp_pages_unassigned,
                "memslot_adds": kvm.memslot_adds.load(Ordering::Relaxed),
                "memslot_dels": kvm.memslot_dels.load(Ordering::Relaxed),
                "implicit_conversions": kvm.vmm.implicit_conversions.load(Ordering::Relaxed),
            });
            if let Some((name, stats)) = kvm.flavour.stats() {
                reply[name] = stats;
            }
            Ok(reply)
        }
        Command::Write { gpa, value } => {
            // A VMM reaches guest memory through its own mapping: QEMU's
            // RAM, never private memory (as for devices).
            // `gpa` names QEMU's memory (a RAM section), not the guest's.
            let at = BackingAddr::new(gpa.0);
            let end = at.checked_add(8).ok_or("EINVAL: address wraps")?;
            let in_ram = kvm
                .qemu_ram
                .lock()
                .iter()
                .any(|r| !r.readonly && r.addr <= at && end <= r.end());
            if !in_ram {
                return Err(format!(
                    "EFAULT: {:#x} is not in QEMU's writable RAM",
                    gpa.0
                ));
            }
            let last = at.checked_add(7).expect("end did not wrap");
            if !kvm.host_access_allowed(at) || !kvm.host_access_allowed(last) {
                return Err(format!("EFAULT: {:#x} is private memory", gpa.0));
            }
            if !host.phys_write(at, &value.0.to_le_bytes()) {
                return Err(format!("EFAULT: QEMU refused the write at {:#x}", gpa.0));
            }
            Ok(json!({}))
        }
    }
}

/// Flushes as a zap asks (or leaves the stale translations, for
/// experiments with the missing-flush detector); whether a flush was sent.
fn finish(
    vm: &cvmem_model::Vm,
    host: &dyn ControlHost,
    token: cvmem_model::Flush,
    flush: bool,
) -> bool {
    if flush {
        let req = vm.flush(token);
        let sent = req.is_some();
        host.apply(Effects::flush(req));
        sent
    } else {
        token.ignore();
        false
    }
}

/// Answers one request line; never panics.
pub fn handle_line(plugin: &Plugin, host: &dyn ControlHost, line: &str) -> Value {
    guard(
        "control",
        error_reply("EIO: internal error (see QEMU's stderr)"),
        || match parse(line).and_then(|cmd| execute(plugin, host, cmd)) {
            Ok(mut v) => {
                if let Some(o) = v.as_object_mut() {
                    o.insert("ok".into(), Value::Bool(true));
                }
                v
            }
            Err(e) => error_reply(&e),
        },
    )
}

/// Makes the socket at `path`: a stale socket there is removed, anything
/// else is refused.
pub fn bind(path: &str) -> Result<UnixListener, String> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(format!("{path} exists and is not a socket"));
        }
        std::fs::remove_file(path).map_err(|e| format!("cannot remove the old socket: {e}"))?;
    }
    UnixListener::bind(path).map_err(|e| format!("cannot make the socket: {e}"))
}

/// Removes the socket at exit (if it is still ours: a socket).
pub fn unlink(path: &str) {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = std::fs::remove_file(path);
    }
}

/// Serves `listener` from a thread of its own, a thread per client.
pub fn serve(
    listener: UnixListener,
    plugin: &'static Plugin,
    host: &'static dyn ControlHost,
) -> Result<(), String> {
    static CLIENTS: AtomicU32 = AtomicU32::new(0);
    std::thread::Builder::new()
        .name("cvmem-control".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else {
                    // Out of file descriptors, say: do not spin.
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    continue;
                };
                if CLIENTS.fetch_add(1, Ordering::Relaxed) >= MAX_CLIENTS {
                    CLIENTS.fetch_sub(1, Ordering::Relaxed);
                    let _ = writeln!(stream, "{}", error_reply("EBUSY: too many clients"));
                    continue;
                }
                let spawned = std::thread::Builder::new()
                    .name("cvmem-control-client".into())
                    .spawn(move || {
                        host.thread_start();
                        // A panic is caught here, so the thread always
                        // unregisters.
                        guard("control_client", (), || client(stream, plugin, host));
                        host.thread_exit();
                        CLIENTS.fetch_sub(1, Ordering::Relaxed);
                    });
                if spawned.is_err() {
                    CLIENTS.fetch_sub(1, Ordering::Relaxed);
                }
            }
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the control thread: {e}"))
}

/// One client: request lines until it closes; a line too long or not UTF-8
/// gets an error, the first ends the connection.
fn client(stream: UnixStream, plugin: &Plugin, host: &dyn ControlHost) {
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut input = BufReader::new(stream);
    loop {
        let mut buf = Vec::new();
        let limit = (MAX_LINE + 1) as u64;
        match input.by_ref().take(limit).read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let complete = buf.last() == Some(&b'\n');
        if !complete && buf.len() > MAX_LINE {
            let _ = writeln!(out, "{}", error_reply("E2BIG: request longer than 64 KiB"));
            return;
        }
        if !complete {
            // The client closed mid-request: nothing to answer.
            return;
        }
        let reply = match std::str::from_utf8(&buf) {
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) => handle_line(plugin, host, line.trim()),
            Err(_) => error_reply("bad request: not UTF-8"),
        };
        if writeln!(out, "{reply}").is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Config;
    use crate::memslots::{MemslotOp, RamSection};
    use crate::plugin::Mode;
    use cvmem_model::VmType;
    use parking_lot::Mutex;

    const MB: u64 = 1 << 20;

    /// Records what the plugin asked QEMU to do.
    #[derive(Default)]
    struct FakeHost {
        applied: Mutex<Vec<Effects>>,
        writes: Mutex<Vec<(u64, Vec<u8>)>>,
        /// Threads registered, and unregistered again.
        threads: Mutex<(u32, u32)>,
    }

    impl ControlHost for FakeHost {
        fn thread_start(&self) {
            self.threads.lock().0 += 1;
        }
        fn thread_exit(&self) {
            self.threads.lock().1 += 1;
        }
        fn apply(&self, effects: Effects) {
            self.applied.lock().push(effects);
        }
        fn phys_write(&self, at: BackingAddr, bytes: &[u8]) -> bool {
            self.writes.lock().push((at.raw(), bytes.to_vec()));
            true
        }
    }

    /// A plugin of `vm_type` with QEMU's RAM reported: 0-640K, 1M-128M.
    fn plugin(vm_type: VmType) -> Plugin {
        let config = Config {
            vm_type,
            ..Config::default()
        };
        let p = Plugin::new(config, Mode::Enforcing { api_version: 5 }, 2).unwrap();
        for (gpa, size) in [(0, 0xa0000), (MB, 127 * MB)] {
            let s = RamSection {
                addr: BackingAddr::new(gpa),
                size,
                readonly: false,
                name: "pc.ram".into(),
            };
            p.memslot(MemslotOp::Add, s);
        }
        p
    }

    fn run(p: &Plugin, host: &FakeHost, line: &str) -> Value {
        handle_line(p, host, line)
    }

    fn ok(v: &Value) -> bool {
        v["ok"] == Value::Bool(true)
    }

    fn err(v: &Value) -> String {
        assert_eq!(v["ok"], Value::Bool(false), "{v}");
        v["error"].as_str().unwrap().to_owned()
    }

    #[test]
    fn parsing() {
        assert_eq!(parse(r#"{"cmd":"stats"}"#), Ok(Command::Stats));
        assert_eq!(
            parse(r#"{"cmd":"move-memslot","slot":"3","gpa":"0x100000"}"#),
            Ok(Command::MoveMemslot {
                slot: Num(3),
                gpa: Num(MB)
            })
        );
        assert_eq!(
            parse(r#"{"cmd":"zap","gpa":"64M","size":4096}"#),
            Ok(Command::Zap {
                gpa: Num(64 * MB),
                size: Num(4096),
                roots: Roots::All,
                flush: true
            })
        );
        for bad in [
            "",
            "{",
            "[]",
            "null",
            r#"{"cmd":"reboot"}"#,
            r#"{"slot":1}"#,
            r#"{"cmd":"delete-memslot"}"#,
            r#"{"cmd":"delete-memslot","slot":-1}"#,
            r#"{"cmd":"delete-memslot","slot":"x"}"#,
            r#"{"cmd":"delete-memslot","slot":1,"extra":2}"#,
            r#"{"cmd":"delete-memslot","slot":1e30}"#,
            r#"{"cmd":"flush","kind":"some"}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hostile_requests_get_errors() {
        let p = plugin(VmType::Default);
        let h = FakeHost::default();
        let before = p.kvm.vm().memslots().len();
        assert!(err(&run(&p, &h, "not json")).starts_with("bad request"));
        assert!(err(&run(&p, &h, r#"{"cmd":"format-disk"}"#)).contains("unknown variant"));
        // Huge, unaligned, wrapping and out-of-range requests.
        let huge = r#"{"cmd":"zap","gpa":0,"size":"0xfffffffffffff000"}"#;
        assert!(err(&run(&p, &h, huge)).starts_with("EINVAL"));
        let wrap =
            r#"{"cmd":"set-attributes","gpa":"0xfffffffffffff000","size":8192,"attributes":0}"#;
        assert!(err(&run(&p, &h, wrap)).starts_with("EINVAL"));
        let unaligned = r#"{"cmd":"create-memslot","slot":9,"gpa":4097,"size":4096}"#;
        assert!(err(&run(&p, &h, unaligned)).starts_with("EINVAL"));
        let too_big = r#"{"cmd":"create-memslot","slot":9,"gpa":0,"size":"0x8000000000000"}"#;
        assert!(err(&run(&p, &h, too_big)).starts_with("EINVAL"));
        let big_id = r#"{"cmd":"create-memslot","slot":40000,"gpa":"200M","size":4096}"#;
        assert!(err(&run(&p, &h, big_id)).starts_with("EINVAL"));
        let as_id = r#"{"cmd":"delete-memslot","slot":"0x10000"}"#;
        assert!(err(&run(&p, &h, as_id)).contains("address space 1"));
        // Overlapping an existing slot: KVM's EEXIST.
        let overlap = r#"{"cmd":"create-memslot","slot":9,"gpa":"2M","size":4096}"#;
        assert!(err(&run(&p, &h, overlap)).starts_with("EEXIST"));
        // An existing id.
        let exists = r#"{"cmd":"create-memslot","slot":0,"gpa":"200M","size":4096}"#;
        assert!(err(&run(&p, &h, exists)).starts_with("EEXIST"));
        // Not backed by QEMU's RAM.
        let unbacked = r#"{"cmd":"create-memslot","slot":9,"gpa":"200M","size":4096}"#;
        assert!(err(&run(&p, &h, unbacked)).starts_with("EFAULT"));
        let flags = r#"{"cmd":"set-memslot-flags","slot":0,"flags":"0x100"}"#;
        assert!(err(&run(&p, &h, flags)).starts_with("EINVAL"));
        let gmem = r#"{"cmd":"set-memslot-flags","slot":0,"flags":4}"#;
        assert!(err(&run(&p, &h, gmem)).starts_with("EINVAL"));
        let private = r#"{"cmd":"set-attributes","gpa":0,"size":4096,"attributes":8}"#;
        assert!(err(&run(&p, &h, private)).contains("unsupported attributes"));
        let vcpu = r#"{"cmd":"flush","kind":"all","vcpu":2}"#;
        assert!(err(&run(&p, &h, vcpu)).contains("no vCPU 2"));
        let write = r#"{"cmd":"write","gpa":"200M","value":1}"#;
        assert!(err(&run(&p, &h, write)).starts_with("EFAULT"));
        assert!(err(&run(&p, &h, r#"{"cmd":"delete-memslot","slot":77}"#)).contains("no slot 77"));
        // Nothing changed.
        assert_eq!(p.kvm.vm().memslots().len(), before);
        assert!(h.applied.lock().is_empty());
        assert!(ok(&run(&p, &h, r#"{"cmd":"stats"}"#)));
    }

    #[test]
    fn delete_and_recreate_a_slot() {
        let p = plugin(VmType::Default);
        let h = FakeHost::default();
        let vm = p.kvm.vm();
        let gpa = Gpa::new(64 * MB);
        assert!(matches!(
            p.kvm.vm().stage2(VcpuId(0), gpa, cvmem_model::Access::Read),
            cvmem_model::Stage2::Mapped(_)
        ));
        let list = run(&p, &h, r#"{"cmd":"list-memslots"}"#);
        assert!(ok(&list));
        let slot = list["memslots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["gpa"] == MB)
            .unwrap()["slot"]
            .as_u64()
            .unwrap();
        let del = format!(r#"{{"cmd":"delete-memslot","slot":{slot}}}"#);
        assert!(ok(&run(&p, &h, &del)));
        // Zap-all quirk: every vCPU is flushed.
        assert_eq!(
            h.applied.lock().last().unwrap().flush.map(|f| f.target),
            Some(cvmem_model::FlushTarget::AllVcpus)
        );
        assert!(vm.memslots().find(gpa.gfn()).is_none());
        // A sub-range of QEMU's RAM, then the rest.
        let part = format!(r#"{{"cmd":"create-memslot","slot":{slot},"gpa":"1M","size":"63M"}}"#);
        assert!(ok(&run(&p, &h, &part)));
        let rest = r#"{"cmd":"create-memslot","slot":30,"gpa":"64M","size":"64M"}"#;
        assert!(ok(&run(&p, &h, rest)));
        assert_eq!(vm.memslots().find(gpa.gfn()).unwrap().id, MemslotId(30));
        // An alias of QEMU's RAM elsewhere, then moved.
        let alias = r#"{"cmd":"create-memslot","slot":31,"gpa":"1G","size":"1M","backing":"2M"}"#;
        assert!(ok(&run(&p, &h, alias)));
        let mv = r#"{"cmd":"move-memslot","slot":31,"gpa":"2G"}"#;
        assert!(ok(&run(&p, &h, mv)));
        let s = *vm.memslots().by_id(MemslotId(31)).unwrap();
        assert_eq!((s.base_gfn.gpa().raw(), s.backing.raw()), (2 << 30, 2 * MB));
        // Flags only: dirty logging on.
        assert!(ok(&run(
            &p,
            &h,
            r#"{"cmd":"set-memslot-flags","slot":31,"flags":1}"#
        )));
        // The quirk off: a deletion zaps only the slot's leaves.
        let q = run(&p, &h, r#"{"cmd":"set-zap-quirk","enabled":false}"#);
        assert_eq!(q["slot_zap_all"], Value::Bool(false));
        assert!(ok(&run(&p, &h, r#"{"cmd":"delete-memslot","slot":31}"#)));
        // Zap without flush leaves the flush to the client.
        let z = run(
            &p,
            &h,
            r#"{"cmd":"zap","gpa":"64M","size":4096,"flush":false}"#,
        );
        assert_eq!(z["flushed"], Value::Bool(false), "{z}");
        assert!(ok(&run(
            &p,
            &h,
            r#"{"cmd":"flush","kind":"current","vcpu":1}"#
        )));
        assert!(ok(&run(&p, &h, r#"{"cmd":"zap-all"}"#)));
        assert!(ok(&run(
            &p,
            &h,
            r#"{"cmd":"write","gpa":"64M","value":"0x600d"}"#
        )));
        assert_eq!(
            h.writes.lock()[0],
            (64 * MB, 0x600du64.to_le_bytes().to_vec())
        );
    }

    #[test]
    fn attributes_convert_as_qemu_does() {
        let p = plugin(VmType::SwProtected);
        let h = FakeHost::default();
        let req = r#"{"cmd":"set-attributes","gpa":"64M","size":8192,"attributes":8}"#;
        // The shared side is discarded.
        assert!(ok(&run(&p, &h, req)));
        assert_eq!(
            h.applied.lock().last().unwrap().clear,
            vec![(BackingAddr::new(64 * MB), 8192)]
        );
        assert!(p.kvm.vm().is_private(Gpa::new(64 * MB).gfn()));
        // Beyond QEMU's RAM: refused, as QEMU refuses it.
        let mmio = r#"{"cmd":"set-attributes","gpa":"200M","size":4096,"attributes":8}"#;
        assert!(err(&run(&p, &h, mmio)).starts_with("EINVAL"));
        let p = plugin(VmType::Tdx);
        // A TD's RAM is private from the start; to shared discards it.
        let shared = r#"{"cmd":"set-attributes","gpa":"64M","size":8192,"attributes":0}"#;
        assert!(ok(&run(&p, &h, shared)));
        assert_eq!(
            h.applied.lock().last().unwrap().clear,
            vec![(BackingAddr::new(64 * MB), 8192)]
        );
        assert!(!p.kvm.vm().is_private(Gpa::new(64 * MB).gfn()));
        // A second guest_memfd slot over the same backing: EEXIST.
        let alias = r#"{"cmd":"create-memslot","slot":40,"gpa":"1G","size":4096,"backing":"64M","flags":4}"#;
        assert!(err(&run(&p, &h, alias)).contains("overlaps a guest_memfd slot"));
        // So is a plain slot: its shared alias would reach the private
        // pages of the TD's RAM (the control fuzz target's find).
        let alias =
            r#"{"cmd":"create-memslot","slot":41,"gpa":"1G","size":4096,"backing":"0x100000"}"#;
        assert!(err(&run(&p, &h, alias)).starts_with("EEXIST"));
        let q = run(&p, &h, r#"{"cmd":"set-zap-quirk","enabled":true}"#);
        assert!(err(&q).contains("does not honour"));
        let bad = r#"{"cmd":"set-attributes","gpa":"64M","size":8192,"attributes":8,"flags":1}"#;
        assert!(err(&run(&p, &h, bad)).contains("flags must be 0"));
    }

    /// Each client thread registers with QEMU's RCU before its first
    /// request and unregisters as it leaves.
    #[test]
    fn client_threads_register_and_unregister() {
        use std::io::{BufRead, BufReader, Write};
        let dir = std::env::temp_dir().join(format!("cvmem-serve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s");
        let path = path.to_str().unwrap();
        let plugin: &'static Plugin = Box::leak(Box::new(plugin(VmType::Default)));
        let host: &'static FakeHost = Box::leak(Box::default());
        serve(bind(path).unwrap(), plugin, host).unwrap();
        let wait_for = |want: (u32, u32)| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while *host.threads.lock() != want {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{:?}",
                    host.threads.lock()
                );
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        };
        for i in 1..=2 {
            let mut s = UnixStream::connect(path).unwrap();
            writeln!(s, r#"{{"cmd":"stats"}}"#).unwrap();
            let mut line = String::new();
            BufReader::new(&s).read_line(&mut line).unwrap();
            assert!(line.contains(r#""ok":true"#), "{line}");
            // Registered while it serves, unregistered once the client left.
            assert_eq!(*host.threads.lock(), (i, i - 1));
            drop(s);
            wait_for((i, i));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Hostile clients through a real socket (issue 24's faults): one that
    /// sends a 100 MB line gets one E2BIG line and is disconnected after
    /// reading no more than the limit, one that leaves mid-request or
    /// before its reply is dropped; the next client is served, and the
    /// plugin did nothing on their behalf.
    #[test]
    fn hostile_clients_leave_the_socket_serving() {
        use std::io::{BufRead, BufReader, Write};
        let dir = std::env::temp_dir().join(format!("cvmem-hostile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s");
        let path = path.to_str().unwrap().to_owned();
        let plugin: &'static Plugin = Box::leak(Box::new(plugin(VmType::Default)));
        let host: &'static FakeHost = Box::leak(Box::default());
        serve(bind(&path).unwrap(), plugin, host).unwrap();
        let reply = |s: &UnixStream| {
            let mut line = String::new();
            BufReader::new(s).read_line(&mut line).unwrap();
            line
        };

        // 100 MB without a newline, then one: the writer is cut off.
        let big = UnixStream::connect(&path).unwrap();
        let mut w = big.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            let chunk = vec![b'x'; 1 << 20];
            let mut sent = 0usize;
            for _ in 0..100 {
                match w.write_all(&chunk) {
                    Ok(()) => sent += chunk.len(),
                    Err(_) => return (sent, true),
                }
            }
            (sent, w.write_all(b"\n").is_err())
        });
        let line = reply(&big);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ok"], false, "{line}");
        assert!(
            v["error"].as_str().unwrap().starts_with("E2BIG: "),
            "{line}"
        );
        let (sent, cut_off) = writer.join().unwrap();
        assert!(cut_off, "the server read all {sent} bytes of a 100 MB line");
        let mut rest = String::new();
        assert_eq!(
            BufReader::new(&big).read_line(&mut rest).unwrap_or(0),
            0,
            "the connection is closed after E2BIG: {rest}"
        );

        // Gone mid-request, and gone before the reply.
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(br#"{"cmd":"delete-memslot","slot":"#).unwrap();
        drop(s);
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(b"{\"cmd\":\"zap-all\"}\n").unwrap();
        drop(s);

        // The next client is served; nothing was deleted for the first.
        let mut s = UnixStream::connect(&path).unwrap();
        writeln!(s, r#"{{"cmd":"list-memslots"}}"#).unwrap();
        let line = reply(&s);
        assert!(line.contains(r#""ok":true"#), "{line}");
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["memslots"].as_array().unwrap().len(), 2, "{v}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stale_socket_is_replaced_other_files_refused() {
        let dir = std::env::temp_dir().join(format!("cvmem-control-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s");
        let path = path.to_str().unwrap();
        let first = bind(path).unwrap();
        drop(first);
        assert!(bind(path).is_ok(), "a stale socket is replaced");
        unlink(path);
        std::fs::write(path, "x").unwrap();
        assert!(bind(path).unwrap_err().contains("not a socket"));
        assert!(std::fs::read(path).is_ok(), "the file is left alone");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The table cvmem-ctl's usage comes from names exactly the requests
    /// this socket takes.
    #[test]
    fn the_command_table_names_every_request() {
        // serde lists the variants it expects after an unknown one.
        let e = parse(r#"{"cmd":"no-such-command"}"#).unwrap_err();
        let expected: Vec<&str> = e
            .split("expected one of ")
            .nth(1)
            .expect("serde lists the variants")
            .split(", ")
            .map(|v| v.trim_matches(|c: char| c == '`' || !c.is_ascii_graphic()))
            .map(|v| v.split('`').next().unwrap_or(v))
            .collect();
        let mut table: Vec<&str> = crate::commands::COMMANDS.iter().map(|c| c.0).collect();
        let mut expected = expected;
        table.sort_unstable();
        expected.sort_unstable();
        assert_eq!(table, expected);
    }
}
