//! What `cvmem run` was asked for, checked: every refusal the launcher
//! makes before QEMU runs is here, one line each, as pure functions of the
//! options and what the files begin with.

use std::fmt;
use std::path::{Path, PathBuf};

/// The KVM VM type the guest gets (the plugin's `vm-type=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum VmType {
    /// An Intel TDX guest (a TD).
    Tdx,
    /// An AMD SEV-SNP guest.
    Snp,
    /// KVM_X86_SW_PROTECTED_VM: private memory by memory attributes only.
    SwProtected,
    /// An ordinary VM, with cvmem's second-stage model.
    Default,
}

impl VmType {
    /// The plugin's name for it.
    pub fn name(self) -> &'static str {
        match self {
            VmType::Tdx => "tdx",
            VmType::Snp => "snp",
            VmType::SwProtected => "sw-protected",
            VmType::Default => "default",
        }
    }

    /// Whether the guest's memory is private (`accept=` applies).
    pub fn is_confidential(self) -> bool {
        matches!(self, VmType::Tdx | VmType::Snp)
    }
}

/// Debian's OVMF (package ovmf): `--firmware ovmf`.
pub const DEBIAN_OVMF: &str = "/usr/share/ovmf/OVMF.fd";

/// Who loads the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS and QEMU's linuxboot option ROM (`-kernel`, `-initrd`,
    /// `-append`).
    Seabios,
    /// SeaBIOS starts guest-tests/boot/efiboot.c, which hands Linux EFI boot
    /// information (ACPI, SMBIOS, the unaccepted-memory table).
    Efiboot,
    /// A firmware image given to QEMU as `-bios`.
    Path(PathBuf),
}

impl Firmware {
    /// Parses `seabios`, `efiboot` or a path.
    pub fn parse(s: &str) -> Result<Firmware, String> {
        match s {
            "seabios" => Ok(Firmware::Seabios),
            "efiboot" => Ok(Firmware::Efiboot),
            "ovmf" => Ok(Firmware::Path(PathBuf::from(DEBIAN_OVMF))),
            "" => Err("empty firmware".into()),
            path => Ok(Firmware::Path(PathBuf::from(path))),
        }
    }
}

/// What a `--kernel` file is, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelKind {
    /// A Linux bzImage ("HdrS" at 0x202, the setup header's magic).
    BzImage,
    /// A Multiboot (version 1) image, such as the guest tests' NAME.elf.
    Multiboot,
}

/// Multiboot 1: the header's magic, within the first 8 KiB, 4-aligned;
/// QEMU's loader (hw/i386/multiboot.c) looks below 8192 - 48.
const MULTIBOOT_MAGIC: u32 = 0x1bad_b002;
const MULTIBOOT_SEARCH: usize = 8192;
const MULTIBOOT_SEARCH_END: usize = MULTIBOOT_SEARCH - 48;

/// What `head` (the first bytes of a file, at least 8 KiB if it has them)
/// holds: a bzImage, a Multiboot image, or neither.
pub fn kernel_kind(head: &[u8]) -> Option<KernelKind> {
    if head.get(0x202..0x206) == Some(b"HdrS") {
        return Some(KernelKind::BzImage);
    }
    let word = |off: usize| {
        head.get(off..off + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let end = head.len().min(MULTIBOOT_SEARCH_END);
    (0..end).step_by(4).find_map(|off| {
        let (magic, flags, sum) = (word(off)?, word(off + 4)?, word(off + 8)?);
        (magic == MULTIBOOT_MAGIC && magic.wrapping_add(flags).wrapping_add(sum) == 0)
            .then_some(KernelKind::Multiboot)
    })
}

/// What a `--disk` image is, from its first bytes: the two formats QEMU
/// boots a guest's disk from that cvmem passes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskFormat {
    /// A raw disk (anything without a known image header).
    Raw,
    /// A qcow2 image (QEMU's block/qcow2.c: "QFI\xfb", version 2 or 3).
    Qcow2,
}

impl DiskFormat {
    /// QEMU's name for it (`-drive format=`).
    pub fn name(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

/// The format of a disk image whose first bytes are `head`, or the name of
/// another image format cvmem does not pass on. The headers are those
/// QEMU's format probes look for (block/qcow2.c `qcow2_probe()`,
/// block/qcow.c, block/qed.c, block/vmdk.c, block/vdi.c, block/vhdx.c,
/// block/vpc.c); QEMU's own probe would also take them, but it refuses to
/// write block 0 of an image it guessed raw, so cvmem names the format.
pub fn disk_format(head: &[u8]) -> Result<DiskFormat, &'static str> {
    let at = |off: usize, magic: &[u8]| head.get(off..off + magic.len()) == Some(magic);
    if at(0, b"QFI\xfb") {
        let version = head
            .get(4..8)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        return match version {
            2 | 3 => Ok(DiskFormat::Qcow2),
            _ => Err("qcow (version 1)"),
        };
    }
    if at(0, b"QED\0") {
        return Err("QED");
    }
    if at(0, b"KDMV") || at(0, b"# Disk DescriptorFile") {
        return Err("VMDK");
    }
    // VDI: the signature 0xbeda107f (little-endian) at offset 0x40.
    if at(0x40, &0xbeda_107fu32.to_le_bytes()) {
        return Err("VDI");
    }
    if at(0, b"vhdxfile") {
        return Err("VHDX");
    }
    if at(0, b"conectix") {
        return Err("VHD (vpc)");
    }
    Ok(DiskFormat::Raw)
}

/// Parses a size: decimal or `0x` hexadecimal with an optional `K`, `M` or
/// `G` suffix (binary units). A bare number is `bare_unit` bytes (QEMU's
/// `-m` takes MiB, the plugin bytes).
pub fn parse_size(s: &str, bare_unit: u64) -> Result<u64, String> {
    let t = s.trim();
    let (num, unit) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&t[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&t[..i], 1 << 30),
        _ => (t, bare_unit),
    };
    let n = match num.strip_prefix("0x").or_else(|| num.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => num.parse::<u64>(),
    }
    .map_err(|_| format!("'{s}' is not a size (such as 512M or 1G)"))?;
    n.checked_mul(unit)
        .ok_or_else(|| format!("'{s}' is too large"))
}

/// The options of `cvmem run`, as given (paths not yet looked at).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunOptions {
    pub vm_type: Option<VmType>,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub append: Option<String>,
    pub firmware: Option<Firmware>,
    pub smp: Option<u32>,
    pub memory: Option<String>,
    pub accept: Option<String>,
    pub trace: Option<PathBuf>,
    pub control: Option<PathBuf>,
    pub disk: Option<PathBuf>,
    pub snapshot: bool,
    pub extra: Vec<String>,
}

/// A run that can go ahead: every option checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunConfig {
    pub vm_type: VmType,
    /// The kernel and what it is.
    pub kernel: Option<(PathBuf, KernelKind)>,
    pub initrd: Option<PathBuf>,
    /// The kernel command line as the user gave it.
    pub append: Option<String>,
    pub firmware: Firmware,
    pub smp: Option<u32>,
    /// Guest RAM in bytes.
    pub memory: u64,
    /// Private memory ready at launch, in bytes (`accept=`); above it the
    /// guest accepts (validates) its pages itself.
    pub accept: Option<u64>,
    pub trace: Option<PathBuf>,
    pub control: Option<PathBuf>,
    /// A disk image for a virtio-blk disk, and its format.
    pub disk: Option<(PathBuf, DiskFormat)>,
    /// Writes to the disk go to a temporary file (`snapshot=on`).
    pub snapshot: bool,
    pub extra: Vec<String>,
}

/// Why `cvmem run` will not start QEMU: one line naming the problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal(pub String);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the checks need to know about the files: whether one exists and
/// its first bytes. The real one reads the file system; tests fake it.
pub trait Files {
    /// Whether `path` exists.
    fn exists(&self, path: &Path) -> bool;
    /// The first 8 KiB of `path` (fewer if it is shorter), or an error
    /// message.
    fn head(&self, path: &Path) -> Result<Vec<u8>, String>;
    /// All of `path` (a firmware image), or an error message.
    fn read(&self, path: &Path) -> Result<Vec<u8>, String>;
}

/// The file system.
#[derive(Debug)]
pub struct RealFiles;

impl Files for RealFiles {
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn head(&self, path: &Path) -> Result<Vec<u8>, String> {
        use std::io::Read;
        let mut buf = Vec::with_capacity(MULTIBOOT_SEARCH + 16);
        std::fs::File::open(path)
            .and_then(|f| f.take(MULTIBOOT_SEARCH as u64 + 16).read_to_end(&mut buf))
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Ok(buf)
    }

    fn read(&self, path: &Path) -> Result<Vec<u8>, String> {
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    }
}

/// Why firmware image `image` cannot start a `vm_type` guest under cvmem,
/// or `None` if it can: a TD starts from an image with sound TDVF metadata
/// (see cvmem_model::firmware); an SNP guest from one with sound SEV
/// metadata and a SEV-ES reset block.
fn firmware_refusal(vm_type: VmType, image: &[u8]) -> Option<String> {
    use cvmem_model::firmware::{
        sev_check_layout, sev_es_reset_vector, sev_metadata, tdvf_check_layout, tdvf_metadata,
    };
    let cannot = |e: &dyn std::fmt::Display| {
        Some(format!(
            "{e}, so it cannot start a {} guest",
            vm_type.name()
        ))
    };
    let missing = |what: &str| {
        Some(format!(
            "it has no {what} metadata, so it cannot start a {} guest (Debian's \
             /usr/share/ovmf/OVMF.fd has it)",
            vm_type.name()
        ))
    };
    match vm_type {
        VmType::Tdx => match tdvf_metadata(image) {
            Err(e) => cannot(&e),
            Ok(None) => missing("TDVF"),
            Ok(Some(sections)) => tdvf_check_layout(&sections).err().and_then(|e| cannot(&e)),
        },
        _ => match sev_metadata(image) {
            Err(e) => cannot(&e),
            Ok(None) => missing("SEV (\"ASEV\")"),
            Ok(Some(sections)) => match sev_es_reset_vector(image) {
                Err(e) => cannot(&e),
                Ok(reset) => sev_check_layout(&sections, reset)
                    .err()
                    .and_then(|e| cannot(&e)),
            },
        },
    }
}

/// 1 GiB for a Linux guest, 256 MiB for a Multiboot test image (as the
/// guest-test runner gives them).
const DEFAULT_MEMORY: u64 = 1 << 30;
const DEFAULT_MEMORY_IMAGE: u64 = 256 << 20;

/// Checks `opts` against each other and the files, before anything is
/// built or run.
pub fn check(opts: &RunOptions, files: &dyn Files) -> Result<RunConfig, Refusal> {
    let no = |s: String| Err(Refusal(s));
    let vm_type = opts.vm_type.unwrap_or(VmType::Default);

    // Files first: a typo is the likeliest problem.
    let mut kernel = None;
    if let Some(k) = &opts.kernel {
        if !files.exists(k) {
            return no(format!("--kernel {}: no such file", k.display()));
        }
        let head = files.head(k).map_err(Refusal)?;
        match kernel_kind(&head) {
            Some(kind) => kernel = Some((k.clone(), kind)),
            None => {
                return no(format!(
                    "--kernel {}: not a bzImage (no \"HdrS\" at offset 0x202 of the setup \
                     header) nor a Multiboot image",
                    k.display()
                ))
            }
        }
    }
    if let Some(i) = &opts.initrd {
        if opts.kernel.is_none() {
            return no("--initrd without --kernel: the initrd goes with a kernel".into());
        }
        if !files.exists(i) {
            return no(format!("--initrd {}: no such file", i.display()));
        }
    }
    if opts.append.is_some() && opts.kernel.is_none() {
        return no("--append without --kernel: the command line goes with a kernel".into());
    }
    if opts.smp == Some(0) {
        return no("--smp 0: a guest needs at least one vCPU".into());
    }
    let mut disk = None;
    if let Some(d) = &opts.disk {
        if !files.exists(d) {
            return no(format!("--disk {}: no such file", d.display()));
        }
        let head = files.head(d).map_err(|e| Refusal(format!("--disk {e}")))?;
        match disk_format(&head) {
            Ok(format) => disk = Some((d.clone(), format)),
            Err(other) => {
                return no(format!(
                    "--disk {}: a {other} image; give a raw or qcow2 one (qemu-img convert -O \
                     qcow2)",
                    d.display()
                ))
            }
        }
    } else if opts.snapshot {
        return no("--snapshot without --disk: it keeps a --disk image unwritten".into());
    }
    let kind = kernel.as_ref().map(|(_, kind)| *kind);

    // The loader: efiboot for a TD's or an SNP guest's Linux, which learns
    // of unaccepted memory and finds its ACPI tables in ACPI memory (and an
    // SNP guest its CC blob) only through EFI or setup_data; SeaBIOS for
    // everything else.
    let firmware = match (&opts.firmware, kind) {
        (Some(fw), _) => fw.clone(),
        (None, Some(KernelKind::BzImage)) if vm_type.is_confidential() => Firmware::Efiboot,
        (None, _) => Firmware::Seabios,
    };
    // Without a kernel the firmware boots the disk by its own default boot
    // path: OVMF's removable-media path, SeaBIOS's boot sector. A TD starts
    // only from TDVF and an SNP guest only from OVMF (cvmem's SeaBIOS start
    // is for a kernel it loads), and efiboot has no disk driver.
    if disk.is_some() && kind.is_none() {
        match &firmware {
            Firmware::Efiboot => {
                return no(
                    "--firmware efiboot cannot boot a --disk (it loads a --kernel through \
                     fw_cfg and has no disk driver); give --firmware ovmf or an OVMF image PATH"
                        .into(),
                )
            }
            Firmware::Seabios if vm_type.is_confidential() => {
                return no(format!(
                "--disk without --kernel: {} boots its disk through OVMF; give --firmware ovmf or \
                     an OVMF image PATH",
                if vm_type == VmType::Tdx {
                    "a TD (from TDVF)"
                } else {
                    "an SNP guest"
                }
            ))
            }
            _ => {}
        }
    }
    match (&firmware, kind) {
        (Firmware::Efiboot, None) => {
            return no("--firmware efiboot boots a Linux --kernel, and none was given".into())
        }
        (Firmware::Efiboot, Some(KernelKind::Multiboot)) => {
            return no(format!(
                "--firmware efiboot boots a Linux bzImage; {} is a Multiboot image \
                 (use --firmware seabios)",
                opts.kernel.as_deref().unwrap_or(Path::new("")).display()
            ))
        }
        // A TD's efiboot is its firmware (efiboot.fd), given the kernel
        // through fw_cfg; elsewhere it is a Multiboot image under SeaBIOS,
        // whose module strings are "FILE ARGS": no space in FILE.
        (Firmware::Efiboot, Some(KernelKind::BzImage)) if vm_type == VmType::Tdx => {}
        (Firmware::Efiboot, Some(KernelKind::BzImage)) => {
            for p in [&opts.kernel, &opts.initrd].into_iter().flatten() {
                if p.to_string_lossy().contains(' ') {
                    return no(format!(
                        "{}: efiboot's module list cannot name a file with a space in its path",
                        p.display()
                    ));
                }
            }
        }
        (Firmware::Path(p), _) => {
            if !files.exists(p) {
                return no(format!("--firmware {}: no such file", p.display()));
            }
            if vm_type.is_confidential() {
                let image = files
                    .read(p)
                    .map_err(|e| Refusal(format!("--firmware {e}")))?;
                if let Some(why) = firmware_refusal(vm_type, &image) {
                    return no(format!("--firmware {}: {why}", p.display()));
                }
            }
            if kind == Some(KernelKind::Multiboot) {
                return no("a Multiboot --kernel needs --firmware seabios".into());
            }
        }
        (Firmware::Seabios, _) => {}
    }

    let memory = match &opts.memory {
        Some(m) => parse_size(m, 1 << 20).map_err(|e| Refusal(format!("-m {e}")))?,
        None if kind == Some(KernelKind::Multiboot) => DEFAULT_MEMORY_IMAGE,
        None => DEFAULT_MEMORY,
    };
    if memory < (16 << 20) || memory % (1 << 20) != 0 {
        return no(format!(
            "-m {}: give a whole number of MiB, at least 16M",
            opts.memory.as_deref().unwrap_or("")
        ));
    }

    let mut accept = None;
    if let Some(a) = &opts.accept {
        if !vm_type.is_confidential() {
            return no(format!(
                "--accept is for TDX and SNP guests (the plugin's accept=); a {} VM has no \
                 memory to accept",
                vm_type.name()
            ));
        }
        let size = parse_size(a, 1).map_err(|e| Refusal(format!("--accept {e}")))?;
        if size == 0 || size % (2 << 20) != 0 {
            return no(format!(
                "--accept {a}: give a non-zero multiple of 2M (efiboot's unaccepted-memory \
                 bitmap has 2 MiB units)"
            ));
        }
        if size > memory {
            return no(format!(
                "--accept {a}: more than the guest's {} MiB of RAM",
                memory >> 20
            ));
        }
        if kind == Some(KernelKind::BzImage) && firmware == Firmware::Seabios {
            return no(format!(
                "--accept {a} with --firmware seabios: nothing would tell Linux about the \
                 unaccepted memory (it learns of it only through EFI); use --firmware efiboot"
            ));
        }
        if let Firmware::Path(p) = &firmware {
            return no(format!(
                "--accept {a} with --firmware {}: the firmware decides what it accepts \
                 (a TD's launch adds only its TDVF sections)",
                p.display()
            ));
        }
        accept = Some(size);
    }

    Ok(RunConfig {
        vm_type,
        kernel,
        initrd: opts.initrd.clone(),
        append: opts.append.clone(),
        firmware,
        smp: opts.smp,
        memory,
        accept,
        trace: opts.trace.clone(),
        control: opts.control.clone(),
        disk,
        snapshot: opts.snapshot,
        extra: opts.extra.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Files by name: their first bytes.
    struct Fake(HashMap<PathBuf, Vec<u8>>);

    impl Files for Fake {
        fn exists(&self, path: &Path) -> bool {
            self.0.contains_key(path)
        }
        fn head(&self, path: &Path) -> Result<Vec<u8>, String> {
            self.0.get(path).cloned().ok_or_else(|| "gone".into())
        }

        fn read(&self, path: &Path) -> Result<Vec<u8>, String> {
            self.head(path)
        }
    }

    fn bzimage() -> Vec<u8> {
        let mut b = vec![0u8; 0x400];
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b
    }

    fn multiboot(at: usize) -> Vec<u8> {
        let mut b = vec![0u8; at + 64];
        let flags = 0x0001_0003u32;
        let sum = 0u32.wrapping_sub(MULTIBOOT_MAGIC).wrapping_sub(flags);
        b[at..at + 4].copy_from_slice(&MULTIBOOT_MAGIC.to_le_bytes());
        b[at + 4..at + 8].copy_from_slice(&flags.to_le_bytes());
        b[at + 8..at + 12].copy_from_slice(&sum.to_le_bytes());
        b
    }

    fn files() -> Fake {
        let mut m = HashMap::new();
        m.insert(PathBuf::from("vmlinuz"), bzimage());
        m.insert(PathBuf::from("test.elf"), multiboot(0x1000));
        m.insert(PathBuf::from("initrd.cpio"), b"070701".to_vec());
        m.insert(PathBuf::from("README"), b"hello".repeat(1000));
        m.insert(PathBuf::from("OVMF.fd"), vec![0xff; 64]);
        m.insert(PathBuf::from("sev.fd"), sev_image(true));
        m.insert(PathBuf::from("sev-no-secrets.fd"), sev_image(false));
        m.insert(PathBuf::from("tdvf.fd"), tdvf_image(false));
        m.insert(PathBuf::from("overlap.fd"), tdvf_image(true));
        m.insert(PathBuf::from("my dir/vmlinuz"), bzimage());
        m.insert(PathBuf::from("disk.img"), vec![0; 0x1000]);
        m.insert(PathBuf::from("disk.qcow2"), qcow(3));
        m.insert(PathBuf::from("old.qcow"), qcow(1));
        m.insert(PathBuf::from("disk.vmdk"), b"KDMV\x01\0\0\0".to_vec());
        Fake(m)
    }

    /// The start of a qcow image of `version` (block/qcow2.h QCowHeader:
    /// magic, then the version, big-endian).
    fn qcow(version: u32) -> Vec<u8> {
        let mut b = b"QFI\xfb".to_vec();
        b.extend(version.to_be_bytes());
        b.resize(0x200, 0);
        b
    }

    /// A 64 KiB TDVF image: a BFV, the TD HOB, and temporary memory that
    /// shares the HOB's page if `overlap`.
    fn tdvf_image(overlap: bool) -> Vec<u8> {
        use cvmem_model::firmware::{TdvfSection, TdvfSectionKind};
        let sec = |data_len, address, size, kind| TdvfSection {
            data_offset: if data_len > 0 { 0x1000 } else { 0 },
            data_len,
            address,
            size,
            kind,
            mr_extend: data_len > 0,
            page_aug: false,
        };
        let temp = if overlap { 0x80_9000 } else { 0x80_b000 };
        cvmem_model::firmware::tdvf_image(
            0x1_0000,
            &[
                sec(0x1000, 0xffff_1000, 0x1000, TdvfSectionKind::Bfv),
                sec(0, 0x80_9000, 0x2000, TdvfSectionKind::TdHob),
                sec(0, temp, 0x1000, TdvfSectionKind::TempMem),
            ],
        )
    }

    /// A 64 KiB image whose OVMF table holds SEV metadata (SEC memory and
    /// a CPUID page; the secrets page only if `secrets`) and a reset block.
    fn sev_image(secrets: bool) -> Vec<u8> {
        let mut sections = vec![(0x80_0000, 0x9000, 1), (0x80_e000, 0x1000, 3)];
        if secrets {
            sections.push((0x80_d000, 0x1000, 2));
        }
        cvmem_model::firmware::sev_image(0x10000, &sections, Some(0x80_b004))
    }

    fn linux(vm: VmType) -> RunOptions {
        RunOptions {
            vm_type: Some(vm),
            kernel: Some("vmlinuz".into()),
            initrd: Some("initrd.cpio".into()),
            ..RunOptions::default()
        }
    }

    fn refused(opts: &RunOptions) -> String {
        match check(opts, &files()) {
            Err(Refusal(why)) => {
                assert!(!why.contains('\n'), "one line: {why}");
                why
            }
            Ok(cfg) => panic!("accepted: {cfg:?}"),
        }
    }

    #[test]
    fn kinds() {
        assert_eq!(kernel_kind(&bzimage()), Some(KernelKind::BzImage));
        assert_eq!(kernel_kind(&multiboot(0)), Some(KernelKind::Multiboot));
        assert_eq!(
            kernel_kind(&multiboot(0x1fd0)),
            None,
            "where QEMU does not look"
        );
        assert_eq!(kernel_kind(&multiboot(0x1fcc)), Some(KernelKind::Multiboot));
        let mut bad_sum = multiboot(0x100);
        bad_sum[0x108] ^= 1;
        assert_eq!(kernel_kind(&bad_sum), None);
        let mut unaligned = vec![0u8; 2];
        unaligned.extend(multiboot(0x100));
        assert_eq!(kernel_kind(&unaligned), None);
        assert_eq!(kernel_kind(b""), None);
        assert_eq!(kernel_kind(b"\x7fELF"), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1G", 1 << 20), Ok(1 << 30));
        assert_eq!(parse_size("512", 1 << 20), Ok(512 << 20));
        assert_eq!(parse_size("256M", 1), Ok(256 << 20));
        assert_eq!(parse_size("0x200000", 1), Ok(2 << 20));
        assert_eq!(parse_size("64k", 1), Ok(64 << 10));
        assert!(parse_size("lots", 1).is_err());
        assert!(parse_size("", 1).is_err());
        assert!(parse_size("99999999999999999G", 1).is_err());
    }

    #[test]
    fn defaults() {
        let cfg = check(&linux(VmType::Tdx), &files()).unwrap();
        assert_eq!(
            cfg.firmware,
            Firmware::Efiboot,
            "a TD's Linux boots through EFI"
        );
        assert_eq!(cfg.memory, 1 << 30);
        let cfg = check(&linux(VmType::Default), &files()).unwrap();
        assert_eq!(cfg.firmware, Firmware::Seabios);
        assert_eq!(cfg.kernel.unwrap().1, KernelKind::BzImage);
        let cfg = check(
            &RunOptions {
                vm_type: Some(VmType::Tdx),
                kernel: Some("test.elf".into()),
                ..RunOptions::default()
            },
            &files(),
        )
        .unwrap();
        assert_eq!(cfg.firmware, Firmware::Seabios);
        assert_eq!(cfg.memory, 256 << 20);
        let cfg = check(&RunOptions::default(), &files()).unwrap();
        assert_eq!(cfg.vm_type, VmType::Default);
    }

    #[test]
    fn accept() {
        let mut o = linux(VmType::Tdx);
        o.accept = Some("256M".into());
        assert_eq!(check(&o, &files()).unwrap().accept, Some(256 << 20));

        for vm in [VmType::Default, VmType::SwProtected] {
            let mut o = linux(vm);
            o.accept = Some("256M".into());
            assert!(refused(&o).contains("TDX and SNP"));
        }
        let mut o = linux(VmType::Tdx);
        o.accept = Some("256M".into());
        o.firmware = Some(Firmware::Seabios);
        assert!(refused(&o).contains("use --firmware efiboot"));
        o.firmware = None;
        o.accept = Some("3M".into());
        assert!(refused(&o).contains("multiple of 2M"));
        o.accept = Some("2G".into());
        assert!(refused(&o).contains("more than"));
        o.accept = Some("many".into());
        assert!(refused(&o).contains("not a size"));
        let mut o = linux(VmType::Tdx);
        o.firmware = Some(Firmware::Path("tdvf.fd".into()));
        o.accept = Some("64M".into());
        assert!(refused(&o).contains("the firmware decides what it accepts"));
        // An SNP guest's Linux boots through efiboot, which hands it the
        // unaccepted-memory table; through SeaBIOS nothing would.
        let mut o = linux(VmType::Snp);
        o.accept = Some("64M".into());
        let cfg = check(&o, &files()).unwrap();
        assert_eq!(
            (cfg.firmware, cfg.accept),
            (Firmware::Efiboot, Some(64 << 20))
        );
        o.firmware = Some(Firmware::Seabios);
        assert!(refused(&o).contains("use --firmware efiboot"));
        // A test image may be left unvalidated memory.
        let o = RunOptions {
            vm_type: Some(VmType::Snp),
            kernel: Some("test.elf".into()),
            accept: Some("64M".into()),
            ..RunOptions::default()
        };
        assert_eq!(check(&o, &files()).unwrap().accept, Some(64 << 20));
    }

    #[test]
    fn files_and_kernels() {
        let mut o = linux(VmType::Default);
        o.kernel = Some("README".into());
        assert!(refused(&o).contains("not a bzImage"));
        o.kernel = Some("nope".into());
        assert!(refused(&o).contains("no such file"));
        let mut o = linux(VmType::Default);
        o.initrd = Some("nope.cpio".into());
        assert!(refused(&o).contains("--initrd nope.cpio: no such file"));
        let mut o = linux(VmType::Default);
        o.kernel = None;
        assert!(refused(&o).contains("--initrd without --kernel"));
        let o = RunOptions {
            append: Some("quiet".into()),
            ..RunOptions::default()
        };
        assert!(refused(&o).contains("--append without --kernel"));
        let mut o = linux(VmType::Default);
        o.smp = Some(0);
        assert!(refused(&o).contains("--smp 0"));
        let mut o = linux(VmType::Default);
        o.memory = Some("1000K".into());
        assert!(refused(&o).contains("whole number of MiB"));
    }

    #[test]
    fn disk_formats() {
        assert_eq!(disk_format(&[0; 512]), Ok(DiskFormat::Raw));
        assert_eq!(disk_format(b""), Ok(DiskFormat::Raw));
        assert_eq!(disk_format(&qcow(2)), Ok(DiskFormat::Qcow2));
        assert_eq!(disk_format(&qcow(3)), Ok(DiskFormat::Qcow2));
        assert_eq!(disk_format(&qcow(1)), Err("qcow (version 1)"));
        assert_eq!(disk_format(b"QED\0rest"), Err("QED"));
        assert_eq!(disk_format(b"# Disk DescriptorFile\n"), Err("VMDK"));
        assert_eq!(disk_format(b"vhdxfile...."), Err("VHDX"));
        assert_eq!(disk_format(b"conectix...."), Err("VHD (vpc)"));
        let mut vdi = vec![0u8; 0x200];
        vdi[0x40..0x44].copy_from_slice(&[0x7f, 0x10, 0xda, 0xbe]);
        assert_eq!(disk_format(&vdi), Err("VDI"));
    }

    #[test]
    fn disks() {
        // A TD boots its disk through TDVF.
        let td_disk = |firmware: Option<Firmware>| RunOptions {
            vm_type: Some(VmType::Tdx),
            firmware,
            disk: Some("disk.img".into()),
            ..RunOptions::default()
        };
        let cfg = check(&td_disk(Some(Firmware::Path("tdvf.fd".into()))), &files()).unwrap();
        assert_eq!(cfg.disk, Some(("disk.img".into(), DiskFormat::Raw)));
        assert!(!cfg.snapshot);
        assert_eq!(cfg.kernel, None);
        // Not through SeaBIOS (the default without a kernel) nor efiboot.
        let why = refused(&td_disk(None));
        assert!(
            why.contains("a TD (from TDVF) boots its disk through OVMF; give --firmware"),
            "{why}"
        );
        let why = refused(&td_disk(Some(Firmware::Seabios)));
        assert!(why.contains("give --firmware ovmf"), "{why}");
        let why = refused(&td_disk(Some(Firmware::Efiboot)));
        assert!(why.contains("efiboot cannot boot a --disk"), "{why}");
        let mut o = td_disk(Some(Firmware::Seabios));
        o.vm_type = Some(VmType::Snp);
        assert!(refused(&o).contains("an SNP guest boots its disk through OVMF;"));
        // An ordinary VM's SeaBIOS boots a disk itself.
        o.vm_type = Some(VmType::Default);
        o.firmware = None;
        assert_eq!(check(&o, &files()).unwrap().firmware, Firmware::Seabios);
        // With a kernel the disk is only attached: the loaders as before.
        let mut o = linux(VmType::Tdx);
        o.disk = Some("disk.qcow2".into());
        o.snapshot = true;
        let cfg = check(&o, &files()).unwrap();
        assert_eq!(cfg.firmware, Firmware::Efiboot);
        assert_eq!(cfg.disk, Some(("disk.qcow2".into(), DiskFormat::Qcow2)));
        assert!(cfg.snapshot);
        // Files and formats.
        o.disk = Some("nope.img".into());
        assert!(refused(&o).contains("--disk nope.img: no such file"));
        o.disk = Some("disk.vmdk".into());
        let why = refused(&o);
        assert!(why.contains("a VMDK image; give a raw or qcow2"), "{why}");
        o.disk = Some("old.qcow".into());
        assert!(refused(&o).contains("qcow (version 1)"));
        o.disk = None;
        assert!(refused(&o).contains("--snapshot without --disk"));
    }

    #[test]
    fn firmwares() {
        assert_eq!(Firmware::parse("seabios"), Ok(Firmware::Seabios));
        assert_eq!(Firmware::parse("efiboot"), Ok(Firmware::Efiboot));
        assert_eq!(Firmware::parse("x.fd"), Ok(Firmware::Path("x.fd".into())));

        let mut o = linux(VmType::Default);
        o.firmware = Some(Firmware::Path("missing.fd".into()));
        assert!(refused(&o).contains("no such file"));
        o.firmware = Some(Firmware::Path("OVMF.fd".into()));
        assert_eq!(
            check(&o, &files()).unwrap().firmware,
            Firmware::Path("OVMF.fd".into())
        );
        // A TD or SNP guest: the image's metadata is looked at first.
        for (vm, what) in [(VmType::Tdx, "no TDVF metadata"), (VmType::Snp, "no SEV")] {
            let mut o = linux(vm);
            o.firmware = Some(Firmware::Path("OVMF.fd".into()));
            let why = refused(&o);
            assert!(why.contains(what) && why.contains("cannot start"), "{why}");
        }
        let mut o = linux(VmType::Snp);
        o.firmware = Some(Firmware::Path("sev-no-secrets.fd".into()));
        let why = refused(&o);
        assert!(why.contains("no SnpSecrets section"), "{why}");
        // An SNP guest starts from sound SEV metadata.
        o.firmware = Some(Firmware::Path("sev.fd".into()));
        assert_eq!(
            check(&o, &files()).unwrap().firmware,
            Firmware::Path("sev.fd".into())
        );
        // The same image has no TDVF metadata.
        o.vm_type = Some(VmType::Tdx);
        assert!(refused(&o).contains("no TDVF metadata"));
        // A TD starts from sound TDVF metadata, not from overlapping sections.
        o.firmware = Some(Firmware::Path("tdvf.fd".into()));
        assert_eq!(
            check(&o, &files()).unwrap().firmware,
            Firmware::Path("tdvf.fd".into())
        );
        o.firmware = Some(Firmware::Path("overlap.fd".into()));
        let why = refused(&o);
        assert!(why.contains("sections 1 and 2 overlap"), "{why}");
        assert_eq!(
            Firmware::parse("ovmf"),
            Ok(Firmware::Path(DEBIAN_OVMF.into()))
        );
        let o = RunOptions {
            firmware: Some(Firmware::Efiboot),
            ..RunOptions::default()
        };
        assert!(refused(&o).contains("none was given"));
        let o = RunOptions {
            kernel: Some("test.elf".into()),
            firmware: Some(Firmware::Efiboot),
            ..RunOptions::default()
        };
        assert!(refused(&o).contains("Multiboot"));
        // Multiboot modules ("FILE ARGS") under SeaBIOS cannot name a path
        // with a space; a TD's efiboot.fd takes the kernel through fw_cfg.
        let mut o = linux(VmType::Snp);
        o.kernel = Some("my dir/vmlinuz".into());
        assert!(refused(&o).contains("space"));
        o.vm_type = Some(VmType::Tdx);
        assert_eq!(check(&o, &files()).unwrap().firmware, Firmware::Efiboot);
        o.vm_type = Some(VmType::Snp);
        o.firmware = Some(Firmware::Seabios);
        assert!(
            check(&o, &files()).is_ok(),
            "SeaBIOS's -kernel takes any path"
        );
    }
}
