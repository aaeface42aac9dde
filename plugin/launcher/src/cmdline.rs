//! The QEMU command line of a checked run: a pure function of the
//! configuration and the paths, so that every VM type and loader can be
//! tested without QEMU.

use std::path::{Path, PathBuf};

use crate::config::{DiskFormat, Firmware, KernelKind, RunConfig, VmType};

/// Firmware for the source-built QEMU (bios-256k.bin, linuxboot_dma.bin,
/// multiboot_dma.bin, ...): Debian's packages.
pub const FIRMWARE_DIRS: [&str; 3] = [
    "/usr/share/seabios",
    "/usr/lib/ipxe/qemu",
    "/usr/share/qemu",
];

/// Where the programs and images a run needs are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    /// The patched qemu-system-x86_64.
    pub qemu: PathBuf,
    /// libcvmem.so.
    pub plugin: PathBuf,
    /// guest-tests/boot/efiboot.c's image, when the loader is efiboot: for
    /// a TD efiboot.fd, a firmware with TDVF metadata
    /// (guest-tests/boot/efiboot-tdvf.S), else the Multiboot efiboot.elf.
    pub efiboot: Option<PathBuf>,
}

/// The CPU model a VM type needs: a TD an Intel CPU (TCG's `max` is an AMD
/// model, and Linux's AMD setup would overwrite its TDX memory-encryption
/// vendor), TDX and SNP 52 physical address bits (page-table bits above
/// phys-bits are reserved to QEMU's page walker, and the shared bit or
/// C-bit must reach the plugin).
pub fn cpu_model(vm: VmType) -> &'static str {
    match vm {
        VmType::Tdx => "max,vendor=GenuineIntel,phys-bits=52",
        VmType::Snp => "max,phys-bits=52",
        VmType::SwProtected | VmType::Default => "max",
    }
}

/// Doubles the commas of a value inside a QEMU option (`-plugin`,
/// `-initrd`'s Multiboot module list), where a single one separates.
pub fn qemu_escape(s: &str) -> String {
    s.replace(',', ",,")
}

fn lossy(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The top of the RAM below 4 GiB on QEMU's `pc` machine (pc_piix.c): all
/// of it below 3.5 GiB, else 3 GiB (gigabyte_align).
pub fn low_memory_top(memory: u64) -> u64 {
    if memory >= 0xe000_0000 {
        0xc000_0000
    } else {
        memory
    }
}

/// Whether `cmdline` sets kernel parameter `key` (`key=...` or bare).
fn has_param(cmdline: &str, key: &str) -> bool {
    cmdline
        .split_whitespace()
        .any(|w| w == key || w.strip_prefix(key).is_some_and(|r| r.starts_with('=')))
}

/// The Linux command line: the console on the serial port and a panic that
/// ends the run (`panic=-1` reboots at once, and QEMU has `-no-reboot`)
/// unless the user chose otherwise, then the user's, then for a TD booted
/// by SeaBIOS the `memmap=` that types SeaBIOS's ACPI tables (top 128K of
/// low RAM) and SMBIOS (the BIOS area) as ACPI data: SeaBIOS calls them
/// reserved, and Linux maps reserved memory of a TD shared, which converts
/// those private pages and loses the tables (no DSDT, no ACPI power-off).
/// TDVF, and efiboot, put them in ACPI memory themselves.
pub fn linux_cmdline(cfg: &RunConfig) -> String {
    let user = cfg.append.as_deref().unwrap_or("").trim();
    let mut args = Vec::new();
    if !has_param(user, "console") {
        args.push("console=ttyS0".to_owned());
    }
    if !has_param(user, "panic") {
        args.push("panic=-1".to_owned());
    }
    if !user.is_empty() {
        args.push(user.to_owned());
    }
    if cfg.vm_type == VmType::Tdx && cfg.firmware == Firmware::Seabios && !has_param(user, "memmap")
    {
        let acpi = low_memory_top(cfg.memory) - (128 << 10);
        args.push(format!("memmap=128K#{acpi:#x}"));
        args.push("memmap=64K#0xf0000".to_owned());
    }
    args.join(" ")
}

/// The plugin's arguments: vm-type, accept=, trace=, control= and
/// `vm-stop=exit`, so that a VM the modelled KVM stops ends QEMU instead
/// of waiting paused for a monitor nobody is at.
pub fn plugin_args(cfg: &RunConfig) -> Vec<String> {
    let mut a = vec![format!("vm-type={}", cfg.vm_type.name())];
    // A TD from efiboot.fd starts with its TDVF sections added, nothing
    // more: --accept is efiboot's own (see qemu_args()).
    if let Some(accept) = cfg.accept.filter(|_| !efiboot_firmware(cfg)) {
        a.push(format!("accept={}M", accept >> 20));
    }
    if let Some(t) = &cfg.trace {
        a.push(format!("trace={}", lossy(t)));
    }
    if let Some(c) = &cfg.control {
        a.push(format!("control={}", lossy(c)));
    }
    a.push("vm-stop=exit".to_owned());
    a
}

/// Whether efiboot runs as the TD's firmware (efiboot.fd): every TD's
/// efiboot does, as a TD starts from TDVF at the reset vector and its APs
/// wait in a mailbox instead of for INIT-SIPI (issue 19); an SNP guest's
/// and a default VM's efiboot is a Multiboot image under SeaBIOS.
pub fn efiboot_firmware(cfg: &RunConfig) -> bool {
    cfg.firmware == Firmware::Efiboot && cfg.vm_type == VmType::Tdx
}

/// The `-drive` of a `--disk`: no interface of its own (the device below
/// takes it), the format given rather than probed, and with `snapshot`
/// the writes going to a temporary file QEMU drops at exit.
pub fn drive_option(image: &Path, format: DiskFormat, snapshot: bool) -> String {
    let mut d = format!("if=none,id=disk0,format={}", format.name());
    if snapshot {
        d.push_str(",snapshot=on");
    }
    d.push_str(",file=");
    d.push_str(&qemu_escape(&lossy(image)));
    d
}

/// The virtio-blk device of a `--disk`. A TD's or an SNP guest's virtio
/// devices get what QEMU gives every virtio device of a machine with a
/// confidential-guest-support object (hw/core/machine.c,
/// `machine_run_board_init()`): `disable-legacy=on` and
/// `iommu_platform=on` (VIRTIO_F_ACCESS_PLATFORM), so that the driver maps
/// its buffers through the DMA API, which bounces them through shared
/// memory (OVMF's IoMmu, Linux's swiotlb). Without them Linux refuses the
/// device ("device must provide VIRTIO_F_ACCESS_PLATFORM") and OVMF's
/// legacy virtio driver hands it private addresses, whose DMA cvmem
/// refuses as KVM never lets a device reach private memory.
pub fn disk_device(vm: VmType) -> String {
    let mut d = "virtio-blk-pci,drive=disk0".to_owned();
    if vm.is_confidential() {
        d.push_str(",disable-legacy=on,iommu_platform=on");
    }
    d
}

/// The QEMU arguments (after the program) of a run.
pub fn qemu_args(cfg: &RunConfig, paths: &Paths) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    // OVMF and TDVF run on q35, as QEMU's TDX and SNP documentation has it.
    let machine = match cfg.firmware {
        Firmware::Path(_) => "q35",
        _ if efiboot_firmware(cfg) => "q35",
        _ => "pc",
    };
    push(&["-machine", machine, "-cpu", cpu_model(cfg.vm_type)]);
    push(&["-m", &format!("{}M", cfg.memory >> 20)]);
    if let Some(n) = cfg.smp {
        push(&["-smp", &n.to_string()]);
    }
    // The console is the serial port on the terminal; no display, no
    // default devices (a TD must have no VGA: Linux's VGA console writes
    // 0xb8000 through the private alias, which stops the VM), no monitor
    // in the way of Ctrl-C (which ends QEMU: the summary says "a signal").
    // A reset ends the run (-no-reboot), and so does a guest's panic
    // report (a TD's ReportFatalError, an SNP termination request), which
    // would otherwise pause the VM.
    push(&[
        "-display",
        "none",
        "-nodefaults",
        "-serial",
        "stdio",
        "-no-reboot",
    ]);
    push(&["-action", "panic=exit-failure"]);
    for dir in FIRMWARE_DIRS {
        push(&["-L", dir]);
    }
    if let Firmware::Path(p) = &cfg.firmware {
        push(&["-bios", &lossy(p)]);
    }
    match (&cfg.kernel, &cfg.firmware) {
        (None, _) => {}
        (Some((k, KernelKind::Multiboot)), _) => {
            // A guest test image: it reports its verdict through
            // isa-debug-exit (QEMU exits with 2 * code + 1).
            push(&["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
            push(&["-kernel", &lossy(k)]);
            if let Some(i) = &cfg.initrd {
                push(&["-initrd", &lossy(i)]);
            }
            if let Some(s) = &cfg.append {
                push(&["-append", s]);
            }
        }
        (Some((k, KernelKind::BzImage)), Firmware::Efiboot) if efiboot_firmware(cfg) => {
            // efiboot.fd is the TD's firmware: the kernel, initrd and
            // command line reach it through fw_cfg as OVMF's do, its own
            // arguments through the fw_cfg file opt/cvmem/efiboot.
            let fd = paths.efiboot.as_deref().unwrap_or(Path::new("efiboot.fd"));
            push(&["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
            push(&["-bios", &lossy(fd)]);
            push(&["-kernel", &lossy(k)]);
            if let Some(i) = &cfg.initrd {
                push(&["-initrd", &lossy(i)]);
            }
            push(&["-append", &linux_cmdline(cfg)]);
            if let Some(a) = cfg.accept {
                push(&[
                    "-fw_cfg",
                    &format!("name=opt/cvmem/efiboot,string=accept={}M", a >> 20),
                ]);
            }
        }
        (Some((k, KernelKind::BzImage)), Firmware::Efiboot) => {
            // efiboot is a Multiboot image; the kernel with its command line
            // is module 1 ("FILE ARGS"), the initrd module 2, separated by
            // commas (",," for one inside a module).
            let efiboot = paths.efiboot.as_deref().unwrap_or(Path::new("efiboot.elf"));
            push(&["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
            push(&["-kernel", &lossy(efiboot)]);
            let eargs = cfg
                .accept
                .map(|s| format!("accept={}M", s >> 20))
                .unwrap_or_default();
            push(&["-append", &eargs]);
            let mut modules = qemu_escape(&format!("{} {}", lossy(k), linux_cmdline(cfg)));
            if let Some(i) = &cfg.initrd {
                modules.push(',');
                modules.push_str(&qemu_escape(&lossy(i)));
            }
            push(&["-initrd", &modules]);
        }
        (Some((k, KernelKind::BzImage)), Firmware::Seabios | Firmware::Path(_)) => {
            push(&["-kernel", &lossy(k)]);
            if let Some(i) = &cfg.initrd {
                push(&["-initrd", &lossy(i)]);
            }
            push(&["-append", &linux_cmdline(cfg)]);
        }
    }
    if let Some((image, format)) = &cfg.disk {
        push(&["-drive", &drive_option(image, *format, cfg.snapshot)]);
        push(&["-device", &disk_device(cfg.vm_type)]);
    }
    let pargs: Vec<String> = plugin_args(cfg).iter().map(|s| qemu_escape(s)).collect();
    push(&[
        "-plugin",
        &format!("{},{}", qemu_escape(&lossy(&paths.plugin)), pargs.join(",")),
    ]);
    a.extend(cfg.extra.iter().cloned());
    a
}

/// The command line as one shell-quoted, copy-pasteable line.
pub fn shell_line(program: &Path, args: &[String]) -> String {
    let prog = lossy(program);
    std::iter::once(prog.as_str())
        .chain(args.iter().map(String::as_str))
        .map(|w| shlex::try_quote(w).map_or_else(|_| format!("{w:?}"), |q| q.into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> Paths {
        Paths {
            qemu: "/q/qemu-system-x86_64".into(),
            plugin: "/t/libcvmem.so".into(),
            efiboot: Some("/t/guest-tests/efiboot.elf".into()),
        }
    }

    fn linux(vm: VmType, firmware: Firmware) -> RunConfig {
        RunConfig {
            vm_type: vm,
            kernel: Some(("/k/vmlinuz".into(), KernelKind::BzImage)),
            initrd: Some("/k/initrd.cpio".into()),
            append: Some("cvmem.expect=tdx".into()),
            firmware,
            smp: None,
            memory: 1 << 30,
            accept: None,
            trace: None,
            control: None,
            disk: None,
            snapshot: false,
            extra: vec![],
        }
    }

    /// The value after the first `opt`.
    fn opt<'a>(args: &'a [String], opt: &str) -> Option<&'a str> {
        let i = args.iter().position(|a| a == opt)?;
        args.get(i + 1).map(String::as_str)
    }

    fn count(args: &[String], opt: &str) -> usize {
        args.iter().filter(|a| *a == opt).count()
    }

    #[test]
    fn cpu_per_vm_type() {
        let cpu = |vm| {
            opt(&qemu_args(&linux(vm, Firmware::Seabios), &paths()), "-cpu").map(str::to_owned)
        };
        assert_eq!(
            cpu(VmType::Tdx).as_deref(),
            Some("max,vendor=GenuineIntel,phys-bits=52")
        );
        assert_eq!(cpu(VmType::Snp).as_deref(), Some("max,phys-bits=52"));
        assert_eq!(cpu(VmType::SwProtected).as_deref(), Some("max"));
        assert_eq!(cpu(VmType::Default).as_deref(), Some("max"));
    }

    #[test]
    fn common_devices_and_firmware_dirs() {
        for vm in [
            VmType::Tdx,
            VmType::Snp,
            VmType::SwProtected,
            VmType::Default,
        ] {
            let a = qemu_args(&linux(vm, Firmware::Seabios), &paths());
            assert_eq!(opt(&a, "-machine"), Some("pc"));
            assert_eq!(opt(&a, "-m"), Some("1024M"));
            assert_eq!(opt(&a, "-display"), Some("none"));
            assert_eq!(opt(&a, "-serial"), Some("stdio"));
            assert_eq!(opt(&a, "-action"), Some("panic=exit-failure"));
            assert!(a.contains(&"-nodefaults".to_owned()) && a.contains(&"-no-reboot".to_owned()));
            assert_eq!(count(&a, "-L"), 3);
            assert!(!a.contains(&"-smp".to_owned()) && !a.contains(&"-bios".to_owned()));
            assert_eq!(
                opt(&a, "-plugin"),
                Some(format!("/t/libcvmem.so,vm-type={},vm-stop=exit", vm.name()).as_str())
            );
        }
    }

    #[test]
    fn seabios_linux() {
        let a = qemu_args(&linux(VmType::Default, Firmware::Seabios), &paths());
        assert_eq!(opt(&a, "-kernel"), Some("/k/vmlinuz"));
        assert_eq!(opt(&a, "-initrd"), Some("/k/initrd.cpio"));
        assert_eq!(
            opt(&a, "-append"),
            Some("console=ttyS0 panic=-1 cvmem.expect=tdx")
        );
        assert_eq!(count(&a, "-device"), 0, "no isa-debug-exit for Linux");
    }

    #[test]
    fn seabios_td_gets_memmap() {
        let mut cfg = linux(VmType::Tdx, Firmware::Seabios);
        let a = qemu_args(&cfg, &paths());
        // What the linux-tdx guest test gives -m 1G.
        assert_eq!(
            opt(&a, "-append"),
            Some(
                "console=ttyS0 panic=-1 cvmem.expect=tdx memmap=128K#0x3ffe0000 memmap=64K#0xf0000"
            )
        );
        cfg.memory = 2 << 30;
        assert!(linux_cmdline(&cfg).contains("memmap=128K#0x7ffe0000"));
        cfg.memory = 4 << 30;
        assert!(linux_cmdline(&cfg).contains("memmap=128K#0xbffe0000"));
        cfg.append = Some("console=hvc0 panic=10 memmap=1M#0x100000".into());
        assert_eq!(
            linux_cmdline(&cfg),
            "console=hvc0 panic=10 memmap=1M#0x100000"
        );
        // Not for other types, nor through efiboot.
        assert!(!linux_cmdline(&linux(VmType::Snp, Firmware::Seabios)).contains("memmap"));
        assert!(!linux_cmdline(&linux(VmType::Tdx, Firmware::Efiboot)).contains("memmap"));
    }

    #[test]
    fn efiboot_is_a_tds_firmware() {
        let mut cfg = linux(VmType::Tdx, Firmware::Efiboot);
        cfg.accept = Some(256 << 20);
        cfg.smp = Some(4);
        cfg.append = Some("a=b,c".into());
        let mut p = paths();
        p.efiboot = Some("/t/guest-tests/efiboot.fd".into());
        let a = qemu_args(&cfg, &p);
        assert_eq!(opt(&a, "-machine"), Some("q35"));
        assert_eq!(opt(&a, "-bios"), Some("/t/guest-tests/efiboot.fd"));
        assert_eq!(opt(&a, "-kernel"), Some("/k/vmlinuz"));
        assert_eq!(opt(&a, "-initrd"), Some("/k/initrd.cpio"));
        assert_eq!(opt(&a, "-append"), Some("console=ttyS0 panic=-1 a=b,c"));
        assert_eq!(
            opt(&a, "-fw_cfg"),
            Some("name=opt/cvmem/efiboot,string=accept=256M")
        );
        assert_eq!(opt(&a, "-smp"), Some("4"));
        // The launch adds the TDVF sections only: no accept= for the plugin.
        assert_eq!(
            opt(&a, "-plugin"),
            Some("/t/libcvmem.so,vm-type=tdx,vm-stop=exit")
        );
        cfg.accept = None;
        assert_eq!(opt(&qemu_args(&cfg, &p), "-fw_cfg"), None);
    }

    #[test]
    fn efiboot_linux() {
        let mut cfg = linux(VmType::Snp, Firmware::Efiboot);
        cfg.accept = Some(256 << 20);
        cfg.smp = Some(2);
        cfg.append = Some("a=b,c".into());
        let a = qemu_args(&cfg, &paths());
        assert_eq!(opt(&a, "-kernel"), Some("/t/guest-tests/efiboot.elf"));
        assert_eq!(opt(&a, "-append"), Some("accept=256M"));
        assert_eq!(
            opt(&a, "-initrd"),
            Some("/k/vmlinuz console=ttyS0 panic=-1 a=b,,c,/k/initrd.cpio")
        );
        assert_eq!(
            opt(&a, "-device"),
            Some("isa-debug-exit,iobase=0xf4,iosize=0x04")
        );
        assert_eq!(opt(&a, "-smp"), Some("2"));
        assert_eq!(
            opt(&a, "-plugin"),
            Some("/t/libcvmem.so,vm-type=snp,accept=256M,vm-stop=exit")
        );
        cfg.accept = None;
        cfg.initrd = None;
        let a = qemu_args(&cfg, &paths());
        assert_eq!(opt(&a, "-append"), Some(""));
        assert_eq!(
            opt(&a, "-initrd"),
            Some("/k/vmlinuz console=ttyS0 panic=-1 a=b,,c")
        );
    }

    #[test]
    fn multiboot_image() {
        let cfg = RunConfig {
            kernel: Some(("/g/selftest.elf".into(), KernelKind::Multiboot)),
            initrd: None,
            append: Some("triple-fault".into()),
            memory: 256 << 20,
            ..linux(VmType::Default, Firmware::Seabios)
        };
        let a = qemu_args(&cfg, &paths());
        assert_eq!(opt(&a, "-kernel"), Some("/g/selftest.elf"));
        assert_eq!(
            opt(&a, "-append"),
            Some("triple-fault"),
            "as given, no console="
        );
        assert_eq!(
            opt(&a, "-device"),
            Some("isa-debug-exit,iobase=0xf4,iosize=0x04")
        );
        assert_eq!(opt(&a, "-m"), Some("256M"));
        assert!(!a.contains(&"-initrd".to_owned()));
    }

    #[test]
    fn firmware_path_and_no_kernel() {
        let mut cfg = linux(VmType::Default, Firmware::Path("/fw/OVMF.fd".into()));
        let a = qemu_args(&cfg, &paths());
        assert_eq!(opt(&a, "-bios"), Some("/fw/OVMF.fd"));
        assert_eq!(opt(&a, "-kernel"), Some("/k/vmlinuz"));
        cfg.kernel = None;
        cfg.initrd = None;
        cfg.append = None;
        let a = qemu_args(&cfg, &paths());
        assert!(!a
            .iter()
            .any(|s| s == "-kernel" || s == "-append" || s == "-initrd"));
    }

    #[test]
    fn disk_through_ovmf() {
        // A TD booting its disk from TDVF: no kernel, the firmware's boot
        // path; the device as QEMU makes it for a confidential machine.
        let mut cfg = linux(VmType::Tdx, Firmware::Path("/fw/OVMF.fd".into()));
        cfg.kernel = None;
        cfg.initrd = None;
        cfg.append = None;
        cfg.disk = Some(("/d/disk,1.img".into(), DiskFormat::Raw));
        let a = qemu_args(&cfg, &paths());
        assert_eq!(opt(&a, "-machine"), Some("q35"));
        assert_eq!(opt(&a, "-bios"), Some("/fw/OVMF.fd"));
        assert_eq!(
            opt(&a, "-drive"),
            Some("if=none,id=disk0,format=raw,file=/d/disk,,1.img")
        );
        assert_eq!(
            opt(&a, "-device"),
            Some("virtio-blk-pci,drive=disk0,disable-legacy=on,iommu_platform=on")
        );
        assert!(!a
            .iter()
            .any(|s| s == "-kernel" || s == "-append" || s == "-initrd"));
        assert_eq!(count(&a, "-drive"), 1);
        cfg.snapshot = true;
        cfg.disk = Some(("/d/disk.qcow2".into(), DiskFormat::Qcow2));
        cfg.vm_type = VmType::Snp;
        let a = qemu_args(&cfg, &paths());
        assert_eq!(
            opt(&a, "-drive"),
            Some("if=none,id=disk0,format=qcow2,snapshot=on,file=/d/disk.qcow2")
        );
        assert_eq!(
            opt(&a, "-device"),
            Some("virtio-blk-pci,drive=disk0,disable-legacy=on,iommu_platform=on")
        );
        // An ordinary VM's virtio device stays as QEMU makes it; a kernel
        // given too boots as before, the disk beside it.
        let mut cfg = linux(VmType::Default, Firmware::Seabios);
        cfg.disk = Some(("/d/disk.img".into(), DiskFormat::Raw));
        let a = qemu_args(&cfg, &paths());
        assert_eq!(opt(&a, "-device"), Some("virtio-blk-pci,drive=disk0"));
        assert_eq!(opt(&a, "-kernel"), Some("/k/vmlinuz"));
        assert_eq!(opt(&a, "-machine"), Some("pc"));
        // No disk, no drive.
        let a = qemu_args(&linux(VmType::Tdx, Firmware::Seabios), &paths());
        assert_eq!(count(&a, "-drive"), 0);
    }

    #[test]
    fn plugin_options_and_extra() {
        let mut cfg = linux(VmType::Snp, Firmware::Seabios);
        cfg.trace = Some("/tmp/a,b.jsonl".into());
        cfg.control = Some("/tmp/c.sock".into());
        cfg.extra = vec!["-d".into(), "plugin".into()];
        let mut p = paths();
        p.plugin = "/odd,dir/libcvmem.so".into();
        let a = qemu_args(&cfg, &p);
        assert_eq!(
            opt(&a, "-plugin"),
            Some("/odd,,dir/libcvmem.so,vm-type=snp,trace=/tmp/a,,b.jsonl,control=/tmp/c.sock,vm-stop=exit")
        );
        assert_eq!(
            &a[a.len() - 2..],
            ["-d", "plugin"],
            "extra arguments come last"
        );
    }

    #[test]
    fn quoting() {
        let line = shell_line(
            Path::new("/q/qemu"),
            &[
                "-append".into(),
                "console=ttyS0 a=\"b\"".into(),
                "-m".into(),
                "1G".into(),
                "".into(),
            ],
        );
        assert_eq!(line, r#"/q/qemu -append 'console=ttyS0 a="b"' -m 1G ''"#);
        assert_eq!(shlex::split(&line).unwrap()[2], "console=ttyS0 a=\"b\"");
    }

    #[test]
    fn params() {
        assert!(has_param("quiet console=hvc0", "console"));
        assert!(!has_param("consoleblank=0", "console"));
        assert!(has_param("memmap", "memmap"));
    }
}
