//! The one-screen report printed when QEMU exits.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::guard::CAUGHT_PANICS;
use crate::plugin::{Mode, Plugin};

/// Renders the exit summary of `plugin` after `elapsed` of guest run time.
pub fn render(plugin: &Plugin, elapsed: Duration) -> String {
    let mut out = String::new();
    let rule = "-".repeat(60);
    // Writing into a String cannot fail.
    let _ = writeln!(out, "{rule}");
    let _ = writeln!(out, "cvmem summary");
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
    let _ = writeln!(
        out,
        "  stage-2       {} requests ({} page-walk, {} faults)",
        stats.total(|s| &s.stage2),
        stats.total(|s| &s.stage2_page_walk),
        stats.total(|s| &s.stage2_faults)
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
        m.lookups, m.faults, m.maps[0], m.maps[1], m.maps[2], m.mmio_exits
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
        plugin.kvm.implicit_conversions.load(Ordering::Relaxed)
    );
    if let Some(tdx) = &plugin.kvm.tdx {
        let t = &tdx.stats;
        let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "  tdx           {} TDCALLs, {} TDVMCALLs, {} #VE, {} pages accepted, {} MapGPA, {} pages added at launch",
            n(&t.tdcalls),
            n(&t.tdvmcalls),
            n(&t.ves),
            n(&t.accepts),
            n(&t.map_gpa),
            n(&t.pages_added)
        );
        let _ = writeln!(out, "  tdx calls     {}", t.calls());
        let _ = writeln!(
            out,
            "  tdx #VE       {} port I/O, {} HLT, {} other; {} #DF (a #VE over unread VE info)",
            n(&t.io_ves),
            n(&t.hlt_ves),
            n(&t.ves).saturating_sub(n(&t.io_ves) + n(&t.hlt_ves)),
            n(&t.double_ves)
        );
    }
    if let Some(snp) = &plugin.kvm.snp {
        let _ = writeln!(out, "  snp           {}", snp.summary());
    }
    if plugin.mode == Mode::Audit {
        let _ = writeln!(
            out,
            "  audit         {} RAM accesses checked, {} would have been refused",
            stats.total(|s| &s.audit_accesses),
            stats.total(|s| &s.audit_violations)
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
    }
    let _ = writeln!(
        out,
        "  device DMA    {} pages checked, {} refused",
        stats.dma_checked.load(Ordering::Relaxed),
        stats.dma_refused.load(Ordering::Relaxed)
    );
    let _ = writeln!(out, "  run time      {:.3} s", elapsed.as_secs_f64());
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
    }
}
