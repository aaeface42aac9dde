//! The one-screen report printed when QEMU exits.
//!
//! The title line says how the guest's run ended (powered off, a triple
//! fault, a panic, the VM stopped: see `lifecycle.rs`). Violations come next
//! (what the guest did that a real CVM refuses), then the configuration, the counts per kind of
//! event, per memslot and per vCPU, and, with `trace=`, what the trace holds.
//! Guest-test manifests match some lines with `summary =` regexes: keep the
//! wording of existing lines.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::flavour::Flavour as _;
use crate::guard::CAUGHT_PANICS;
use crate::plugin::{Mode, Plugin};
use cvmem_model::MemslotSet;

/// Renders the exit summary of `plugin` after `elapsed` of guest run time.
pub fn render(plugin: &Plugin, elapsed: Duration) -> String {
    let mut out = String::new();
    let rule = "-".repeat(60);
    // Writing into a String cannot fail.
    let _ = writeln!(out, "{rule}");
    let ending = match plugin.mode {
        Mode::Enforcing { .. } => plugin.kvm.vmm.lifecycle.describe(),
        // cvmem's own failure is known in audit mode too.
        Mode::Audit if crate::guard::failed() => plugin.kvm.vmm.lifecycle.describe(),
        // The stock API says nothing of shutdowns and resets.
        Mode::Audit => "(audit mode: an unpatched QEMU does not say how the run ended)".into(),
    };
    let _ = writeln!(out, "cvmem summary: {ending}");
    violations(plugin, &mut out);
    let _ = writeln!(out, "  vm-type       {}", plugin.config.vm_type);
    let _ = match plugin.mode {
        Mode::Enforcing { api_version } => {
            writeln!(
                out,
                "  mode          enforcing (cvm plugin API v{api_version})"
            )
        }
        Mode::Audit => writeln!(out, "  mode          audit (unpatched QEMU)"),
    };
    let _ = writeln!(
        out,
        "  vcpus         {}",
        plugin.stats.vcpus.load(Ordering::Relaxed)
    );
    let stats = &plugin.stats;
    let cached = plugin.sync_stage2_cache();
    let _ = writeln!(
        out,
        "  stage-2       {} requests ({} page-walk, {} faults; {} answered by QEMU's stage-2 cache)",
        stats.total(|s| &s.stage2) + cached,
        stats.total(|s| &s.stage2_page_walk) + stats.total(|s| &s.stage2_cached_page_walk),
        stats.total(|s| &s.stage2_faults),
        cached
    );
    let _ = writeln!(
        out,
        "  instructions  {} emulated or declined",
        stats.total(|s| &s.insns)
    );
    let m = plugin.kvm.vm().stats();
    let _ = writeln!(
        out,
        "  tdp           {} lookups, {} faults, maps 4K/2M/1G {}/{}/{}, {} MMIO exits",
        m.lookups + cached,
        m.faults,
        m.maps[0],
        m.maps[1],
        m.maps[2],
        m.mmio_exits
    );
    let _ = writeln!(
        out,
        "  zaps          {} ({} leaves), {} flushes ({} of all vCPUs)",
        m.zaps, m.leaves_zapped, m.flushes, m.flushes_all_vcpus
    );
    let _ = writeln!(
        out,
        "  conversions   {} ({} frames), {} implicit",
        m.conversions,
        m.frames_converted,
        plugin.kvm.vmm.implicit_conversions.load(Ordering::Relaxed)
    );
    plugin.kvm.flavour.summary(&mut out);
    if let Some(learner) = plugin
        .kvm
        .audit
        .as_ref()
        .filter(|_| plugin.mode == Mode::Audit)
    {
        // Refused: what enforcing mode would have answered with an
        // exception (or by stopping the VM), the model deciding with the
        // memslots learned (learn.rs).
        let _ = writeln!(
            out,
            "  audit         {} RAM accesses checked, {} would have been refused",
            stats.total(|s| &s.audit_accesses),
            stats.total(|s| &s.audit_violations)
        );
        let (ranges, pages, no_slot) = learner.learned();
        let l = &learner.stats;
        let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "  audit RAM     {:.1} MiB learned from guest accesses in {ranges} ranges; memslots {} made, \
             {} grown, {} merged; {} pages and {} accesses without a memslot (unchecked)",
            pages as f64 / 256.0,
            n(&l.slots_made),
            n(&l.slots_grown),
            n(&l.slots_merged),
            no_slot,
            stats.total(|s| &s.audit_unchecked)
        );
    }
    {
        let slots = plugin.kvm.vm().memslots();
        let ram: u64 = slots
            .iter()
            .filter(|s| !s.readonly())
            .map(|s| s.npages)
            .sum();
        let _ = writeln!(
            out,
            "  memslots      {} now, {} MiB RAM ({} added, {} deleted, {} rejected)",
            slots.len(),
            ram >> (20 - 12),
            plugin.kvm.memslot_adds.load(Ordering::Relaxed),
            plugin.kvm.memslot_dels.load(Ordering::Relaxed),
            stats.memslot_rejected.load(Ordering::Relaxed)
        );
        per_memslot(plugin, &slots, &mut out);
    }
    per_vcpu(plugin, &mut out);
    let _ = writeln!(
        out,
        "  device DMA    {} pages checked, {} refused",
        stats.dma_checked.load(Ordering::Relaxed),
        stats.dma_refused.load(Ordering::Relaxed)
    );
    trace(plugin, &mut out);
    let _ = writeln!(out, "  run time      {:.3} s", elapsed.as_secs_f64());
    if let Some(kib) = peak_rss_kib() {
        let _ = writeln!(out, "  peak RSS      {} MiB (QEMU's VmHWM)", kib / 1024);
    }
    let panics = CAUGHT_PANICS.load(Ordering::Relaxed);
    if panics > 0 {
        let _ = writeln!(
            out,
            "  INTERNAL ERRORS caught at the QEMU boundary: {panics}"
        );
    }
    let _ = writeln!(out, "{rule}");
    out
}

/// The first line after the title: everything a real CVM would have refused
/// or reported, and whether the VM survived.
fn violations(plugin: &Plugin, out: &mut String) {
    let m = plugin.kvm.vm().stats();
    let stats = &plugin.stats;
    let rmp = m.page_not_validated_exits + m.rmp_npf_exits;
    let _ = writeln!(
        out,
        "  violations    RMP {rmp}, SEPT {}, #VE {}, #VC {}, other exceptions {}, DMA blocked {}",
        m.pending_accesses,
        stats.total(|s| &s.injected_ve),
        stats.total(|s| &s.injected_vc),
        stats.total(|s| &s.injected_other),
        stats.dma_refused.load(Ordering::Relaxed),
    );
    if let Some(fc) = &plugin.kvm.flush_check {
        fc.summary(out);
    }
}

/// Slots shown one a line; the rest are summed.
const SLOT_LINES: usize = 6;
/// vCPUs shown one a line; the rest are summed.
const VCPU_LINES: usize = 4;

/// The counts of `by_type` as `name n, ...`, the largest first.
fn counts(by_type: Option<&BTreeMap<&'static str, u64>>) -> String {
    let Some(by_type) = by_type else {
        return String::new();
    };
    let mut v: Vec<_> = by_type.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    v.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `bytes` in KiB, MiB or GiB, whichever is whole.
fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b => format!("{} KiB", b >> 10),
    }
}

/// One line per memslot: its frames and, with a trace, its events.
fn per_memslot(plugin: &Plugin, slots: &MemslotSet, out: &mut String) {
    let report = plugin.finish_trace();
    let tally = report.as_ref().map(|r| &r.tally);
    let all: Vec<_> = slots.iter().collect();
    for s in all.iter().take(SLOT_LINES) {
        let r = s.range();
        let events = counts(tally.and_then(|t| t.by_slot.get(&s.id.0)));
        let _ = writeln!(
            out,
            "    slot {:<4} {:#011x}-{:#011x} {:>9}{}{}",
            s.id.0,
            r.start().raw() << 12,
            r.end().raw() << 12,
            size(s.npages << 12),
            if s.readonly() { " ro" } else { "" },
            if events.is_empty() {
                String::new()
            } else {
                format!(": {events}")
            }
        );
    }
    if all.len() > SLOT_LINES {
        let _ = writeln!(out, "    ... {} more slots", all.len() - SLOT_LINES);
    }
}

/// One line per vCPU (the first few), the rest summed.
fn per_vcpu(plugin: &Plugin, out: &mut String) {
    let n = plugin.stats.vcpus.load(Ordering::Relaxed);
    let report = plugin.finish_trace();
    let tally = report.as_ref().map(|r| &r.tally);
    let l = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    // Counters are kept in shards (vCPU index modulo STAT_SHARDS): exact
    // per vCPU up to that many.
    let shown = (n as usize).min(VCPU_LINES).min(plugin.stats.shards());
    for v in 0..shown as u32 {
        let s = plugin.stats.vcpu(v);
        let events = counts(tally.and_then(|t| t.by_vcpu.get(&v)));
        let _ = writeln!(
            out,
            "  vcpu {v:<3}      {} stage-2 ({} faults), {} insns, #VE {}, #VC {}{}",
            l(&s.stage2) + l(&s.stage2_cached),
            l(&s.stage2_faults),
            l(&s.insns),
            l(&s.injected_ve),
            l(&s.injected_vc),
            if events.is_empty() {
                String::new()
            } else {
                format!("; {events}")
            }
        );
    }
    if (n as usize) > shown {
        let _ = writeln!(
            out,
            "  vcpus {shown}..{}   counted in the totals above",
            n - 1
        );
    }
}

/// With `trace=`: where it went, how much, what was dropped, and the counts
/// per event type.
fn trace(plugin: &Plugin, out: &mut String) {
    let (Some(r), Some(path)) = (plugin.finish_trace(), &plugin.config.trace) else {
        return;
    };
    let _ = writeln!(
        out,
        "  trace         {} events to {path}, {} dropped ({} model, {} plugin){}{}",
        r.tally.written,
        r.model_dropped + r.plugin_dropped,
        r.model_dropped,
        r.plugin_dropped,
        if r.tally.paused > 0 {
            format!(", {} not written while stopped", r.tally.paused)
        } else {
            String::new()
        },
        match &r.tally.error {
            Some(e) => format!(
                ", WRITE ERROR: {e}: the file ends at its last complete line, \
                 {} later events not written",
                r.tally.lost
            ),
            None => String::new(),
        }
    );
    // Wrapped at about 100 columns, at most three lines.
    let mut line = String::from("  events       ");
    let mut lines = 0;
    for part in counts(Some(&r.tally.by_type)).split(", ") {
        if line.len() + part.len() > 100 && lines < 2 {
            let _ = writeln!(out, "{}", line.trim_end_matches(','));
            line = String::from("               ");
            lines += 1;
        }
        line.push(' ');
        line.push_str(part);
        line.push(',');
    }
    let _ = writeln!(out, "{}", line.trim_end_matches(','));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Config;
    use cvmem_model::VmType;

    #[test]
    fn summary_shows_configuration_and_counts() {
        let config = Config {
            vm_type: VmType::Tdx,
            ..Config::default()
        };
        let p = Plugin::new(config, Mode::Enforcing { api_version: 1 }, 2).unwrap();
        p.vcpu_init(0);
        p.vcpu_init(1);
        let s = render(&p, Duration::from_millis(1500));
        assert!(s.contains("vm-type       tdx"), "{s}");
        assert!(s.contains("enforcing (cvm plugin API v1)"), "{s}");
        assert!(s.contains("vcpus         2"), "{s}");
        assert!(s.contains("1.500 s"), "{s}");
        assert!(s.lines().count() < 25, "one screen");
        // Violations come first, right after the title.
        assert!(
            s.lines()
                .nth(2)
                .unwrap()
                .starts_with("  violations    RMP 0, SEPT 0, #VE 0"),
            "{s}"
        );
        assert!(s.contains("  vcpu 1  "), "{s}");
        assert!(!s.contains("trace"), "{s}");
    }

    #[test]
    fn summary_with_a_trace_counts_its_events() {
        let path = std::env::temp_dir().join(format!("cvmem-summary-{}.jsonl", std::process::id()));
        let config = Config {
            vm_type: VmType::SwProtected,
            trace: Some(path.to_string_lossy().into_owned()),
            ..Config::default()
        };
        let p = Plugin::new(config, Mode::Enforcing { api_version: 1 }, 1).unwrap();
        p.vcpu_init(0);
        p.memslot(
            crate::memslots::MemslotOp::Add,
            crate::memslots::RamSection {
                addr: cvmem_model::BackingAddr::new(0),
                size: 1 << 20,
                readonly: false,
                name: "pc.ram".into(),
            },
        );
        let s = render(&p, Duration::from_millis(1));
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(
            s.contains("slot 0    0x000000000-0x000100000     1 MiB: memslot 1"),
            "{s}"
        );
        assert!(s.contains(" events to "), "{s}");
        assert!(s.contains(", 0 dropped (0 model, 0 plugin)"), "{s}");
        assert!(s.contains("memslot 1"), "{s}");
        assert!(
            text.lines()
                .any(|l| l.contains(r#""type":"memslot","vcpu":null,"change":"create""#)),
            "{text}"
        );
        assert!(
            text.lines().last().unwrap().contains(r#""type":"end""#),
            "{text}"
        );
    }
}

/// QEMU's peak resident set so far (`VmHWM` of /proc/self/status), in KiB:
/// what a guest run costs the host, model state included (issue 23).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod peak_rss_tests {
    #[test]
    fn vm_hwm_is_read_from_proc_status() {
        let status = "Name:\tqemu\nVmPeak:\t 9000 kB\nVmHWM:\t  112640 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(super::parse_vm_hwm(status), Some(112640));
        assert_eq!(super::parse_vm_hwm("VmRSS: 1 kB\n"), None);
    }
}
