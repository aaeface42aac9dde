//! `cvmem`: boot a kernel as a TD, an SNP guest or a plain VM under the
//! patched QEMU with the cvmem plugin, in one command (docs/launcher.md).

mod cmdline;
mod config;
mod doctor;
mod locate;
mod outcome;
mod run;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Firmware, RunOptions, VmType};

#[derive(Debug, Parser)]
#[command(
    name = "cvmem",
    version,
    about = "Boot a kernel as an Intel TDX or AMD SEV-SNP guest (or a plain VM) under TCG, \
             with cvmem's confidential-VM memory semantics",
    after_help = outcome::EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

// One value, parsed once: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a guest: prints the QEMU command line on stderr, runs it with
    /// the serial console on the terminal (Ctrl-C ends it), and exits with
    /// the guest's outcome.
    #[command(after_help = outcome::EXIT_CODES)]
    Run(RunArgs),
    /// Print the patched QEMU's path (building it if needed).
    QemuPath,
    /// Print libcvmem.so's path (building it if needed).
    PluginPath,
    /// Check the setup and say what is missing, one line each.
    Doctor,
    /// Print the MRTD a TD launched from a TDVF image has, or the
    /// MEASUREMENT of an SNP guest launched from OVMF (what a verifier
    /// expects in the TDREPORT or the attestation report).
    Measure {
        /// The firmware image (OVMF with TDX or SEV support), as for `run
        /// --firmware`.
        #[arg(long, value_name = "ovmf|PATH", value_parser = Firmware::parse)]
        firmware: Firmware,
        /// tdx (MRTD) or snp (MEASUREMENT).
        #[arg(long, value_enum, default_value = "tdx")]
        vm_type: VmType,
        /// SNP: the number of vCPUs (each has a VMSA in the measurement).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
        smp: u32,
        /// SNP: the CPU signature (CPUID 1 EAX) the vCPUs start with, as in
        /// their VMSAs' RDX; QEMU's `-cpu max` under TCG has 0x663.
        #[arg(long, default_value = "0x663", value_parser = parse_u32)]
        cpu_sig: u32,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The KVM VM type the guest gets.
    #[arg(long, value_enum, default_value = "default")]
    vm_type: VmType,
    /// A Linux bzImage, or a Multiboot image (a guest test's NAME.elf).
    #[arg(long, value_name = "FILE")]
    kernel: Option<PathBuf>,
    /// The initramfs for --kernel.
    #[arg(long, value_name = "FILE")]
    initrd: Option<PathBuf>,
    /// The kernel command line. Linux gets `console=ttyS0 panic=-1` first
    /// unless it names console= or panic= itself.
    #[arg(long, value_name = "ARGS")]
    append: Option<String>,
    /// Who loads the kernel, or boots the --disk: seabios (QEMU's
    /// linuxboot), efiboot (EFI boot information, needed for --accept in a
    /// TD; the default for a TD's Linux), ovmf (Debian's
    /// /usr/share/ovmf/OVMF.fd) or a firmware image PATH given as -bios on
    /// q35 (for a TD: OVMF with TDVF metadata; for an SNP guest: with SEV
    /// metadata).
    #[arg(long, value_name = "seabios|efiboot|ovmf|PATH", value_parser = Firmware::parse)]
    firmware: Option<Firmware>,
    /// vCPUs.
    #[arg(long, value_name = "N")]
    smp: Option<u32>,
    /// Guest RAM (QEMU's -m: MiB, or with a K/M/G suffix); default 1G for
    /// Linux, 256M for a Multiboot image.
    #[arg(short = 'm', value_name = "SIZE")]
    memory: Option<String>,
    /// TDX/SNP: private memory ready at launch; the guest accepts the rest
    /// itself (a multiple of 2M).
    #[arg(long, value_name = "SIZE")]
    accept: Option<String>,
    /// Write the plugin's event trace (JSON lines) to FILE.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// The plugin's control socket (driven with cvmem-ctl).
    #[arg(long, value_name = "SOCK")]
    control: Option<PathBuf>,
    /// A disk image (raw or qcow2) as a virtio-blk disk, written to unless
    /// --snapshot. Without --kernel the firmware boots it (OVMF: its
    /// \EFI\BOOT\BOOTX64.EFI); a TD or SNP guest then needs --firmware
    /// ovmf or an OVMF image PATH.
    #[arg(long, value_name = "IMG")]
    disk: Option<PathBuf>,
    /// Leave the --disk image as it is: writes go to a temporary file
    /// (QEMU's snapshot=on).
    #[arg(long)]
    snapshot: bool,
    /// More QEMU arguments, after `--`; they come last.
    #[arg(last = true, value_name = "QEMU ARGS")]
    extra: Vec<String>,
}

impl RunArgs {
    fn options(self) -> RunOptions {
        RunOptions {
            vm_type: Some(self.vm_type),
            kernel: self.kernel,
            initrd: self.initrd,
            append: self.append,
            firmware: self.firmware,
            smp: self.smp,
            memory: self.memory,
            accept: self.accept,
            trace: self.trace,
            control: self.control,
            disk: self.disk,
            snapshot: self.snapshot,
            extra: self.extra,
        }
    }
}

/// cvmem's own failure (QEMU or the plugin could not be found or built).
const EXIT_FAILED: u8 = 1;
/// A bad command line, refused before QEMU ran.
const EXIT_REFUSED: u8 = 2;

fn fail(e: anyhow::Error) -> ExitCode {
    eprintln!("cvmem: error: {e:#}");
    ExitCode::from(EXIT_FAILED)
}

fn run(args: RunArgs) -> ExitCode {
    let cfg = match config::check(&args.options(), &config::RealFiles) {
        Ok(cfg) => cfg,
        Err(why) => {
            eprintln!("cvmem: {why}");
            return ExitCode::from(EXIT_REFUSED);
        }
    };
    let paths = (|| {
        Ok::<_, anyhow::Error>(cmdline::Paths {
            qemu: locate::qemu()?,
            plugin: locate::plugin()?,
            efiboot: match cfg.firmware {
                Firmware::Efiboot => Some(locate::efiboot(cmdline::efiboot_firmware(&cfg))?),
                _ => None,
            },
        })
    })();
    let paths = match paths {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let args = cmdline::qemu_args(&cfg, &paths);
    eprintln!("$ {}", cmdline::shell_line(&paths.qemu, &args));
    let (status, title) = match run::run_qemu(&paths.qemu, &args) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let outcome = outcome::outcome(title.as_deref(), status.code());
    eprintln!(
        "cvmem: {} (QEMU {status}): exit code {}",
        outcome.describe(),
        outcome.code()
    );
    ExitCode::from(outcome.code())
}

/// A number in decimal or with 0x.
fn parse_u32(s: &str) -> Result<u32, String> {
    match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    }
    .map_err(|_| format!("'{s}' is not a 32-bit number"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `cvmem measure`: "MRTD <hex>" of the TD launched from `firmware`, or
/// "MEASUREMENT <hex>" of the SNP guest.
fn measure(firmware: &Firmware, vm_type: VmType, smp: u32, cpu_sig: u32) -> Result<String, String> {
    let Firmware::Path(path) = firmware else {
        return Err("--firmware: give an OVMF image (ovmf or a PATH)".into());
    };
    let image = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    match vm_type {
        VmType::Tdx => measure_td(path, &image),
        VmType::Snp => measure_snp(path, &image, smp, cpu_sig),
        _ => Err("--vm-type: only tdx and snp guests are measured".into()),
    }
}

/// The MEASUREMENT of an SNP guest QEMU and KVM launch from OVMF image
/// `image` (cvmem_model::snp_launch::ovmf_digest), with SEV_FEATURES as
/// QEMU's default (SNP active only).
fn measure_snp(path: &Path, image: &[u8], smp: u32, cpu_sig: u32) -> Result<String, String> {
    use cvmem_model::firmware::{sev_es_reset_vector, sev_metadata};
    use cvmem_model::snp_launch::SEV_FEATURES_DEFAULT;
    let sections = sev_metadata(image)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .ok_or_else(|| format!("{}: no SEV metadata", path.display()))?;
    let ap_eip = sev_es_reset_vector(image)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .ok_or_else(|| format!("{}: no SEV-ES reset block", path.display()))?;
    let d = cvmem_model::snp_launch::ovmf_digest(
        image,
        &sections,
        ap_eip,
        smp,
        cpu_sig,
        SEV_FEATURES_DEFAULT,
    );
    Ok(format!("MEASUREMENT {}", hex(&d.digest())))
}

/// The MRTD of a TD launched from TDVF image `image`.
fn measure_td(path: &Path, image: &[u8]) -> Result<String, String> {
    use cvmem_model::firmware::{tdvf_check_layout, tdvf_metadata, tdvf_mrtd, TdvfSectionKind};
    let sections = tdvf_metadata(image)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .ok_or_else(|| format!("{}: no TDVF metadata", path.display()))?;
    tdvf_check_layout(&sections).map_err(|e| format!("{}: {e}", path.display()))?;
    // The TD HOB's content depends on the TD's memory; a firmware that has
    // it measured has an MRTD per memory size, which this does not model.
    if sections
        .iter()
        .any(|s| s.kind == TdvfSectionKind::TdHob && s.mr_extend)
    {
        return Err(format!(
            "{}: its TD HOB is measured, so MRTD depends on the TD's memory",
            path.display()
        ));
    }
    let mrtd = tdvf_mrtd(image, &sections, &[]);
    Ok(format!("MRTD {}", hex(&mrtd)))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Run(args) => run(args),
        Cmd::QemuPath => match locate::qemu() {
            Ok(p) => {
                println!("{}", p.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Cmd::PluginPath => match locate::plugin() {
            Ok(p) => {
                println!("{}", p.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Cmd::Doctor => doctor::doctor(),
        Cmd::Measure {
            firmware,
            vm_type,
            smp,
            cpu_sig,
        } => match measure(&firmware, vm_type, smp, cpu_sig) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(anyhow::anyhow!(e)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_a_run() {
        let cli = Cli::try_parse_from([
            "cvmem",
            "run",
            "--vm-type",
            "tdx",
            "--kernel",
            "k",
            "--initrd",
            "i",
            "--append",
            "a b",
            "-m",
            "2G",
            "--smp",
            "2",
            "--accept",
            "256M",
            "--firmware",
            "efiboot",
            "--",
            "-d",
            "plugin",
        ])
        .unwrap();
        let Cmd::Run(args) = cli.command else {
            panic!()
        };
        let o = args.options();
        assert_eq!(o.vm_type, Some(VmType::Tdx));
        assert_eq!(o.append.as_deref(), Some("a b"));
        assert_eq!(o.memory.as_deref(), Some("2G"));
        assert_eq!(o.firmware, Some(Firmware::Efiboot));
        assert_eq!(o.extra, ["-d", "plugin"]);
        assert_eq!((o.disk, o.snapshot), (None, false));
        let cli = Cli::try_parse_from(["cvmem", "run", "--disk", "d.img", "--snapshot"]).unwrap();
        let Cmd::Run(args) = cli.command else {
            panic!()
        };
        let o = args.options();
        assert_eq!(
            (o.disk.as_deref(), o.snapshot),
            (Some(Path::new("d.img")), true)
        );
        assert!(Cli::try_parse_from(["cvmem", "run", "--vm-type", "sev"]).is_err());
        let cli = Cli::try_parse_from(["cvmem", "run", "--vm-type", "sw-protected"]).unwrap();
        let Cmd::Run(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.vm_type, VmType::SwProtected);
    }

    #[test]
    fn help_lists_exit_codes() {
        let help = Cli::command()
            .find_subcommand_mut("run")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(help.contains("5  VM stopped by the modelled KVM"), "{help}");
    }
}
