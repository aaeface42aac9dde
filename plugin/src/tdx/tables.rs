//! The generated views of the module's tables: docs/tdx-tables.md (what
//! the module does with every CPUID leaf and MSR it names, and what cvmem
//! does) and guest-tests/tests/tdxcpu_tables.h (the same tables for the
//! `tdxcpu` guest test). Both are made from `cpuid_table.rs` and `msr.rs`
//! (the doc also from `cr.rs` and `metadata.rs`)
//! and checked here against the files in the tree, so they cannot drift;
//! `CVMEM_REGENERATE=1 cargo test -p cvmem generated_tables` rewrites them.

use super::cpuid_table::{dynamic_bits, CPUID_TABLE};
use super::cr::{cr0, cr4, cr_write, CrConfig, CrCpu, CrWrite, Start, CR0_NAMES, CR4_TABLE};
use super::metadata::TDCS_TABLE;
use super::msr::{Action, Bit, MsrClass, TdMsrConfig, MSR_TABLE};
use std::fmt::Write as _;

const DOC: &str = "docs/tdx-tables.md";
const HEADER: &str = "guest-tests/tests/tdxcpu_tables.h";

fn bit_name(b: Bit) -> &'static str {
    match b {
        Bit::Fixed0 => "FIXED0",
        Bit::Fixed1 => "FIXED1",
        Bit::Perfmon => "PERFMON",
        Bit::XfamCet => "XFAM_CET",
        Bit::XfamPt => "XFAM_PT",
        Bit::XfamUli => "XFAM_ULI",
        Bit::XfamLbr => "XFAM_LBR",
        Bit::Umwait => "UMWAIT",
        Bit::Xfd => "XFD",
        Bit::Pks => "PKS",
        Bit::Tsx => "TSX",
        Bit::Other => "OTHER",
    }
}

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Ve => "VE",
        Action::Gp => "GP",
        Action::GpOrVe => "GP_OR_VE",
        Action::Fatal => "FATAL",
        Action::Module => "MODULE",
    }
}

/// What the module does with one access, in words.
fn module_words(bit: Bit, action: Action) -> String {
    let exit = match action {
        Action::Ve => "#VE",
        Action::Gp => "#GP",
        Action::GpOrVe => "#VE if the TD has the feature, else #GP",
        Action::Fatal => "-",
        Action::Module => "emulated by the module",
    };
    match bit {
        Bit::Fixed0 => "native".into(),
        Bit::Fixed1 => exit.into(),
        b => format!("native with {}, else {exit}", bit_name(b)),
    }
}

fn class_words(c: MsrClass) -> &'static str {
    match c {
        MsrClass::Native => "QEMU's",
        MsrClass::Gp => "#GP",
        MsrClass::Ve => "#VE",
        MsrClass::Module => "emulated",
    }
}

fn range(first: u32, last: u32) -> String {
    if first == last {
        format!("{first:#x}")
    } else {
        format!("{first:#x}-{last:#x}")
    }
}

fn regs(v: [u32; 4]) -> String {
    if v == [0; 4] {
        "-".into()
    } else {
        v.iter()
            .map(|r| format!("{r:08x}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// docs/tdx-tables.md.
pub fn doc() -> String {
    // A TD on QEMU's TCG: none of the features the dynamic bits and the
    // GP-or-VE actions depend on (see the notes).
    let td = TdMsrConfig {
        xfam: 0b111,
        ..TdMsrConfig::default()
    };
    let mut s = String::new();
    s.push_str(
        "# TDX: the module's CPUID and MSR tables, and cvmem's\n\n\
         Generated from `plugin/src/tdx/cpuid_table.rs` and `plugin/src/tdx/msr.rs` \
         (TDX module 1.5, `include/auto_gen/cpuid_configurations.c` and \
         `msr_config_lookup.c`) by `plugin/src/tdx/tables.rs`; a unit test keeps it \
         current (`CVMEM_REGENERATE=1 cargo test -p cvmem generated_tables`).\n\n\
         ## MSRs\n\n\
         An MSR outside 0-0x1fff and 0xc0000000-0xc0001fff, or inside them but not \
         listed here, raises #VE (exit reason 31 for RDMSR, 32 for WRMSR) on both \
         reads and writes; the guest asks the VMM with TDVMCALL<Instruction.RDMSR/WRMSR>, \
         which KVM answers only for the MSRs it emulates for a TD \
         (`tdx_has_emulated_msr()`; APIC_BASE, EFER and FEAT_CTL read-only).\n\n\
         \"native with X\": the access runs natively when the TD has X (ATTRIBUTES.PERFMON \
         or PKS, XFAM CET/PT/ULI/LBR, CPUID WAITPKG/XFD/TSX), else exits with the action. \
         The cvmem column is a TD on QEMU's TCG CPU, which has none of them (cvmem refuses \
         PERFMON and PKS; TCG implements no CET, PT, ULI, Arch LBR, WAITPKG, XFD, TSX, DCA, \
         TME, PCONFIG or TSC deadline). It differs from the module where the module would \
         refuse such a CPU, and in two ways everywhere:\n\n\
         - \"QEMU's\": the access runs on QEMU's TCG CPU, which reads an MSR it does not \
         implement as 0 and ignores writes to it, where a CPU raises #GP.\n\
         - The VMX capability MSRs the module emulates read 0: the module derives them \
         from the CPU's, and TCG has no VMX.\n\n\
         | MSR | module's name | RDMSR: module | WRMSR: module | cvmem RDMSR / WRMSR |\n\
         |---|---|---|---|---|\n",
    );
    for e in &MSR_TABLE {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} / {} |",
            range(e.first, e.last),
            e.name,
            module_words(e.rd.0, e.rd.1),
            module_words(e.wr.0, e.wr.1),
            class_words(td.classify(e.first, false)),
            class_words(td.classify(e.first, true)),
        );
    }
    s.push_str(
        "\n## CPUID\n\n\
         A leaf or sub-leaf not listed here, or marked faulting, raises #VE (exit \
         reason 10); the guest asks the VMM with TDVMCALL<Instruction.CPUID> (Linux does \
         only for the hypervisor range 0x40000000-0x4fffffff and reads 0 otherwise). A \
         leaf above the CPU's extended maximum, or between 0x24 and 0x7fffffff, reads as \
         leaf 0x23. A value is the CPU's (QEMU's CPU model) with the fixed-0-or-dynamic \
         bits cleared, the fixed-1 bits set, config-direct bits as the VMM configures them \
         and allow-direct bits cleared unless it sets them (cvmem's configuration is \
         QEMU's CPU model), then the per-leaf rules of TDH.MNG.INIT (XFAM, ATTRIBUTES, the \
         XSAVE size, leaf 5 without MONITOR, 0xA without PERFMON) and the dynamic fields \
         at each CPUID (registers EAX EBX ECX EDX, in hexadecimal). cvmem differs in:\n\n\
         - 0x15 EBX (TSC_FREQUENCY) is 0: TCG's local APIC timer counts at 1 GHz, not the \
         25 MHz crystal the leaf names (KVM sets a TD's APIC bus to 25 MHz), and Linux takes \
         its APIC timer period from the leaf.\n\
         - 0x80000001 EDX.SYSCALL follows EFER.LMA rather than the 64-bit mode of CS \
         (cvmem's instruction hook does not see CS.L).\n\
         - A feature the module passes from the CPU or lets the VMM configure is QEMU's: \
         what TCG lacks reads 0.\n\n\
         | leaf.sub | faulting | fixed-1 | fixed-0 or dynamic | of those, dynamic | config-direct | allow-direct |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for e in &CPUID_TABLE {
        let sub = e.subleaf.map_or(String::new(), |n| format!(".{n:#x}"));
        let _ = writeln!(
            s,
            "| {:#x}{sub} | {} | {} | {} | {} | {} | {} |",
            e.leaf,
            if e.faulting { "yes" } else { "" },
            regs(e.fixed1),
            regs(e.fixed0_or_dynamic),
            regs(dynamic_bits(e)),
            regs(e.config_direct),
            regs(e.allow_direct),
        );
    }
    cr_doc(&mut s);
    td_metadata_doc(&mut s);
    s
}

/// QEMU's `-cpu max` under TCG as the module's CPU, for the CR bits
/// (target/i386/cpu.c TCG_*_FEATURES): UMIP, LA57, FSGSBASE, XSAVE,
/// SMEP, SMAP, PKU, PKS; no SMX, PCID, Key Locker, CET or UINTR.
fn tcg_max_cpu() -> CrCpu {
    CrCpu::of(&|leaf, _| match leaf {
        1 => [0, 0, 1 << 26, 0],
        7 => [
            0,
            1 | 1 << 7 | 1 << 20,
            1 << 2 | 1 << 3 | 1 << 16 | 1 << 31,
            0,
        ],
        _ => [0; 4],
    })
}

/// The XFAM and ATTRIBUTES of cvmem's TD on `-cpu max`: x87, SSE, AVX,
/// PKRU; no PKS, no KL.
const TD_XFAM: u64 = 0x207;
const TD_ATTRIBUTES: u64 = 0;

/// CR0 and CR4 of the guest test runtime in a TD (guest-tests/runtime/
/// boot.S: PE MP ET NE WP PG; PAE MCE OSFXSR OSXMMEXCPT), from which a
/// bit is flipped.
const BASE_CR0: u64 = cr0::PE | cr0::MP | cr0::ET | cr0::NE | cr0::WP | cr0::PG;
const BASE_CR4: u64 = (1 << 5) | cr4::MCE | (1 << 9) | (1 << 10);

/// The outcome of flipping `bit` of `cr` from the base.
fn flip(cfg: &CrConfig, cr: u32, bit: u32) -> CrWrite {
    let (base, cur0, cur4) = if cr == 0 {
        (BASE_CR0, BASE_CR0, BASE_CR4)
    } else {
        (BASE_CR4, BASE_CR0, BASE_CR4)
    };
    cr_write(cfg, Start::VpInit, cr, base ^ 1u64 << bit, cur0, cur4)
}

fn flip_words(cfg: &CrConfig, cr: u32, bit: u32) -> &'static str {
    let base = if cr == 0 { BASE_CR0 } else { BASE_CR4 };
    match flip(cfg, cr, bit) {
        CrWrite::Native => "native",
        CrWrite::Value(v) if v == base => "ignored",
        CrWrite::Value(_) => "done by the module",
        CrWrite::Gp => "#GP",
        CrWrite::Ve => "#VE",
        CrWrite::Fatal => "the TD fails",
    }
}

/// The outcome codes of tdxcpu_tables.h.
fn flip_code(cfg: &CrConfig, cr: u32, bit: u32) -> &'static str {
    match flip_words(cfg, cr, bit) {
        "native" => "CR_NATIVE",
        "ignored" => "CR_IGNORED",
        "#GP" => "CR_GP",
        "#VE" => "CR_VE",
        _ => "CR_MODULE",
    }
}

/// Every CR bit the tables describe: (cr, bit, name), CR0 31:0 and
/// CR4 25:0, then one reserved bit of each above.
fn cr_bits() -> Vec<(u32, u32, &'static str)> {
    let mut v: Vec<_> = (0..32).map(|b| (0, b, CR0_NAMES[b as usize])).collect();
    v.push((0, 32, ""));
    v.extend(CR4_TABLE.iter().map(|b| (4, b.bit, b.name)));
    v.extend([(4, 26, ""), (4, 32, "")]);
    v
}

/// The TD-scope fields a guest may read (TDG.VM.RD) or write (TDG.VM.WR).
fn td_metadata_doc(s: &mut String) {
    s.push_str(
        "\n## TD metadata (TDG.VM.RD/WR)\n\n\
         Generated from `plugin/src/tdx/metadata.rs` `TDCS_TABLE` (TDX module 1.5 \
         `tdr_tdcs_fields_lookup.c`, `metadata_td.c`, `tdg_vm_rd_wr.c`): the TD-scope fields \
         a guest may read, with their field IDs (context code 1; the module ignores it on \
         input), elements, guest read and write masks, and what cvmem answers. Every other \
         field of the module's table reads TDX_METADATA_FIELD_NOT_READABLE and writes \
         TDX_METADATA_FIELD_NOT_WRITABLE; an ID outside the table, or not one element, is \
         TDX_METADATA_FIELD_ID_INCORRECT.\n\n\
         | field | base ID | elements | guest read mask | guest write mask | cvmem answers |\n\
         |---|---|---|---|---|---|\n",
    );
    for e in TDCS_TABLE.iter().filter(|e| e.md.guest_rd != 0) {
        let n = e.md.fields * e.md.elems;
        let _ = writeln!(
            s,
            "| {} | {:#018x} | {n} | {:#x} | {:#x} | {} |",
            e.md.name,
            e.md.base,
            e.md.guest_rd,
            e.md.guest_wr,
            e.answer.describe()
        );
    }
}

fn cr_doc(s: &mut String) {
    let module = CrConfig::new(CrCpu::of(&|_, _| [!0; 4]), TD_XFAM, TD_ATTRIBUTES);
    let cvmem = CrConfig::new(tcg_max_cpu(), TD_XFAM, TD_ATTRIBUTES);
    s.push_str(
        "\n## CR0 and CR4\n\n\
         Generated from `plugin/src/tdx/cr.rs` (TDX module 1.5 `td_vmcs_init.c`, \
         `td_other_exits.c`, `helpers.c`). A MOV to CR0 or CR4 exits to the module when a \
         bit of its guest/host mask differs from the read shadow (CR0: PE, NE set; NW, CD, \
         6-15, 17, 19-28 and 32-63 clear. CR4: MCE set; VMXE, SMXE, 15, 26-63, and KL, PKS, \
         CET, UINTR, PKE unless the TD's ATTRIBUTES or XFAM have them, clear; and every bit \
         the CPU's IA32_VMX_CR0/CR4_FIXED0/1 fix). The module then raises #GP(0) for values \
         the CPU would refuse (FIXED0/FIXED1, PG without PE, features the TD lacks, WP and CET) \
         and a #VE with exit reason 28 and the exit qualification of the access otherwise, \
         except that CR0's reserved bits 6-15, 17 and 19-28 are silently ignored. Other \
         writes run natively, with QEMU's checks. LMSW and CLTS never exit in a TD (the masks \
         own no bit of CR0 3:1, and PE, which LMSW cannot clear, is 1 in the shadow).\n\n\
         Each row flips one bit of the CR0 and CR4 a guest-test TD runs with \
         (CR0 PE MP ET NE WP PG, CR4 PAE MCE OSFXSR OSXMMEXCPT) in a TD with XFAM 0x207 \
         (x87, SSE, AVX, PKRU) and no ATTRIBUTES.PKS or KL. \"module\" is the module on a \
         CPU with every CR4 feature it knows; \"cvmem\" is the module's rules on QEMU's \
         `-cpu max` (TCG: no SMX, PCID, Key Locker, CET or UINTR), so SMXE and PCIDE are \
         #GP where the module's CPU has them. The `tdx-cpu` guest test writes every bit.\n\n\
         A TD started without TDVF (cvmem's SeaBIOS loader) may begin with CR4.MCE clear or \
         CR0.CD/NW set, which no TD has: there a write that keeps such a bit, or brings it to \
         the module's value, is native (`cr.rs` `Start::Loader`).\n\n\
         | register.bit | name | module's | flipped: module | flipped: cvmem |\n\
         |---|---|---|---|---|\n",
    );
    for (cr, bit, name) in cr_bits() {
        let (mask, shadow) = if cr == 0 {
            (module.cr0_mask, module.cr0_shadow)
        } else {
            (module.cr4_mask, module.cr4_shadow)
        };
        let owner = if mask & 1u64 << bit == 0 {
            "no"
        } else if shadow & 1u64 << bit != 0 {
            "yes, 1"
        } else {
            "yes, 0"
        };
        let bits = match bit {
            32 if cr == 0 => "32-63".to_string(),
            32 => "32-63".to_string(),
            26 if cr == 4 => "26-31".to_string(),
            b => b.to_string(),
        };
        let _ = writeln!(
            s,
            "| CR{cr}.{bits} | {name} | {owner} | {} | {} |",
            flip_words(&module, cr, bit),
            flip_words(&cvmem, cr, bit)
        );
    }
}

/// guest-tests/tests/tdxcpu_tables.h.
pub fn header() -> String {
    let mut s = String::new();
    s.push_str(
        "/* SPDX-License-Identifier: GPL-2.0-or-later */\n\
         /*\n \
         * Generated by plugin/src/tdx/tables.rs from the TDX module 1.5 tables\n \
         * (plugin/src/tdx/msr.rs, cpuid_table.rs); do not edit. Regenerate with\n \
         * CVMEM_REGENERATE=1 cargo test -p cvmem generated_tables\n \
         */\n\
         #ifndef TDXCPU_TABLES_H\n#define TDXCPU_TABLES_H\n\n",
    );
    s.push_str("enum tdx_msr_bit {");
    for (i, b) in [
        Bit::Fixed0,
        Bit::Fixed1,
        Bit::Perfmon,
        Bit::XfamCet,
        Bit::XfamPt,
        Bit::XfamUli,
        Bit::XfamLbr,
        Bit::Umwait,
        Bit::Xfd,
        Bit::Pks,
        Bit::Tsx,
        Bit::Other,
    ]
    .into_iter()
    .enumerate()
    {
        let _ = write!(
            s,
            "{}MSR_BIT_{} = {i},",
            if i % 4 == 0 { "\n\t" } else { " " },
            bit_name(b)
        );
    }
    s.push_str("\n};\n\nenum tdx_msr_action {");
    for (i, a) in [
        Action::Ve,
        Action::Gp,
        Action::GpOrVe,
        Action::Fatal,
        Action::Module,
    ]
    .into_iter()
    .enumerate()
    {
        let _ = write!(s, " MSR_ACT_{} = {i},", action_name(a));
    }
    s.push_str(
        " };\n\n\
         struct tdx_msr_entry {\n\tconst char *name;\n\tu32 first, last;\n\t\
         u8 rd_bit, rd_act, wr_bit, wr_act;\n};\n\n\
         static const struct tdx_msr_entry tdx_msr_table[] = {\n",
    );
    for e in &MSR_TABLE {
        let _ = writeln!(
            s,
            "\t{{ \"{}\", {:#x}, {:#x}, MSR_BIT_{}, MSR_ACT_{}, MSR_BIT_{}, MSR_ACT_{} }},",
            e.name,
            e.first,
            e.last,
            bit_name(e.rd.0),
            action_name(e.rd.1),
            bit_name(e.wr.0),
            action_name(e.wr.1)
        );
    }
    s.push_str(
        "};\n\n\
         /* subleaf ~0u: ECX is no input. Registers EAX, EBX, ECX, EDX. */\n\
         struct tdx_cpuid_entry {\n\tu32 leaf, subleaf;\n\tbool faulting;\n\t\
         u32 fixed1[4], fixed0[4], dynamic[4];\n};\n\n\
         static const struct tdx_cpuid_entry tdx_cpuid_table[] = {\n",
    );
    let arr = |v: [u32; 4]| format!("{{ {:#x}, {:#x}, {:#x}, {:#x} }}", v[0], v[1], v[2], v[3]);
    for e in &CPUID_TABLE {
        let _ = writeln!(
            s,
            "\t{{ {:#x}, {:#x}, {}, {}, {}, {} }},",
            e.leaf,
            e.subleaf.unwrap_or(u32::MAX),
            e.faulting,
            arr(e.fixed1),
            arr(e.fixed0_or_dynamic),
            arr(dynamic_bits(e))
        );
    }
    s.push_str(
        "};\n\n\
         /*\n \
         * CR0 and CR4: what flipping each bit of TDXCPU_CR0/CR4 does in a TD on\n \
         * -cpu max (plugin/src/tdx/cr.rs). CR_IGNORED: the write completes\n \
         * without the bit; a #VE has exit reason 28.\n \
         */\n\
         enum tdx_cr_outcome { CR_NATIVE, CR_IGNORED, CR_GP, CR_VE, CR_MODULE };\n\n",
    );
    let _ = write!(
        s,
        "#define TDXCPU_CR0 {BASE_CR0:#x}ul\n#define TDXCPU_CR4 {BASE_CR4:#x}ul\n\n\
         struct tdx_cr_bit {{\n\tu8 cr, bit;\n\tconst char *name;\n\tu8 outcome;\n}};\n\n\
         static const struct tdx_cr_bit tdx_cr_table[] = {{\n"
    );
    let cvmem = CrConfig::new(tcg_max_cpu(), TD_XFAM, TD_ATTRIBUTES);
    for (cr, bit, name) in cr_bits() {
        let _ = writeln!(
            s,
            "\t{{ {cr}, {bit}, \"{name}\", {} }},",
            flip_code(&cvmem, cr, bit)
        );
    }
    s.push_str("};\n\n#endif\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The files in the tree are what the tables make; CVMEM_REGENERATE=1
    /// rewrites them.
    #[test]
    fn generated_tables() {
        let top = env!("CARGO_MANIFEST_DIR");
        for (path, text) in [(DOC, doc()), (HEADER, header())] {
            let file = format!("{top}/{path}");
            if std::env::var_os("CVMEM_REGENERATE").is_some() {
                std::fs::write(&file, &text).unwrap();
            }
            let old = std::fs::read_to_string(&file).unwrap_or_default();
            assert!(
                old == text,
                "{path} is not what the tables make: run CVMEM_REGENERATE=1 cargo test -p cvmem generated_tables"
            );
        }
    }
}
