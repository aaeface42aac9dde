//! Plugin arguments, parsed the way QEMU's own plugins parse theirs.
//!
//! QEMU splits `-plugin libcvmem.so,a=b,c=d` at commas and hands the plugin
//! one `key=value` string per argument (plugins/loader.c). Boolean values take
//! the spellings of QEMU's `qapi_bool_parse` (on/yes/true/y, off/no/false/n),
//! which is what `qemu_plugin_bool_parse` accepts.
//!
//! Every argument is validated before the plugin does anything: an unknown
//! key, a missing value, a repeated key or a bad value is an [`ArgError`] whose
//! message names the argument, and the plugin then refuses to install, which
//! makes QEMU exit with a non-zero status.

use std::fmt;

use cvmem_model::{Gpaw, PageLevel, TdAttributes, VmType};

/// The validated configuration of one plugin instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `vm-type=`: the KVM VM type whose memory semantics the guest gets.
    pub vm_type: VmType,
    /// `test=`: a test device the guest can drive (see `testdev.rs`).
    pub test: TestMode,
    /// `gpaw=`: the guest physical address width (TDX: the shared bit is
    /// bit GPAW-1).
    pub gpaw: Gpaw,
    /// `td-attributes=`: TD ATTRIBUTES of a TDX guest.
    pub td_attributes: TdAttributes,
    /// `accept=`: which private memory of a TD (accepted) or an SNP guest
    /// (validated) is ready at launch.
    pub accept: AcceptPolicy,
    /// `snp-cpuid=`, `snp-secrets=`: where an SNP guest's launch places its
    /// CPUID page and its secrets page.
    pub snp_pages: SnpPages,
    /// `strict=`: a guest access through the wrong alias is a fault for the
    /// guest instead of an implicit conversion.
    pub strict: bool,
    /// `slot-zap-all=`: KVM_X86_QUIRK_SLOT_ZAP_ALL (honoured by vm-type=default
    /// only, as in KVM).
    pub slot_zap_all: bool,
    /// `map-gpa-chunk=`: TDX MapGPA converts at most this many bytes per
    /// TDVMCALL, then answers RETRY with the resume address; an SNP
    /// page-state change through the GHCB at most this many per VMGEXIT.
    pub map_gpa_chunk: u64,
    /// `xfam=`: TD XFAM; `None`: what QEMU's CPU model supports, as QEMU's
    /// `tdx-guest` takes it from the CPU model.
    pub xfam: Option<u64>,
    /// `private-max-level=`: the largest private mapping (`None`: the VM
    /// type's default, 4K for TDX as in KVM today).
    pub private_max_level: Option<PageLevel>,
    /// `trace=`: write every event, one JSON object a line, to this file.
    pub trace: Option<String>,
    /// `flush-check=`: the missing-flush detector (see `flushcheck.rs`).
    pub flush_check: bool,
    /// `control=`: the control socket's path (see `control.rs`).
    pub control: Option<String>,
    /// `vm-stop=`: what QEMU does when the modelled KVM stops the VM.
    pub vm_stop: VmStopAction,
}

/// `vm-stop=`: what happens when the modelled KVM stops the VM (as QEMU
/// stops a KVM guest whose KVM_RUN failed, e.g. on a memory-fault exit it
/// refuses to convert).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum VmStopAction {
    /// QEMU's behaviour: the VM pauses in the internal-error state, for
    /// the monitor or a debugger (the default).
    #[default]
    Pause,
    /// QEMU exits with status 1: for test runs with nobody at the monitor.
    Exit,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            vm_type: VmType::Default,
            test: TestMode::None,
            gpaw: Gpaw::Bits48,
            // QEMU's tdx-guest object sets SEPT_VE_DISABLE by default
            // (property sept-ve-disable=on), as Linux requires of a
            // non-debug TD.
            td_attributes: TdAttributes(TdAttributes::SEPT_VE_DISABLE),
            accept: AcceptPolicy::All,
            snp_pages: SnpPages::default(),
            strict: false,
            slot_zap_all: true,
            map_gpa_chunk: 64 << 20,
            xfam: None,
            private_max_level: None,
            trace: None,
            flush_check: false,
            control: None,
            vm_stop: VmStopAction::Pause,
        }
    }
}

/// Where the launch of an SNP guest places the pages the AMD-SP fills
/// (SNP_LAUNCH_UPDATE page types CPUID and SECRETS): what firmware
/// metadata names for OVMF, and for a direct boot what the loader and the
/// VMM agree on. The defaults are those of guest-tests/boot/efiboot.c
/// (`SNP_CPUID_PAGE`, `SNP_SECRETS_PAGE` in guest-tests/runtime/snp.h):
/// two pages below the EBDA that SeaBIOS leaves alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnpPages {
    /// The CPUID page's guest-physical address.
    pub cpuid: u64,
    /// The secrets page's guest-physical address.
    pub secrets: u64,
}

impl Default for SnpPages {
    fn default() -> Self {
        SnpPages {
            cpuid: 0x9e000,
            secrets: 0x9d000,
        }
    }
}

/// Parses a page address for `snp-cpuid=`/`snp-secrets=`.
fn snp_page(v: &str) -> Result<u64, String> {
    let at = parse_size(v).ok_or_else(|| format!("'{v}' is not an address"))?;
    if at % 4096 != 0 {
        return Err(format!("{at:#x} is not 4K aligned"));
    }
    Ok(at)
}

/// `accept=`: the state of a TD's private memory when it starts running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptPolicy {
    /// Every private page is added with TDH.MEM.PAGE.ADD and accepted, as
    /// after firmware that accepts all memory (the default).
    All,
    /// Pages below this guest-physical address are added and accepted;
    /// pages above are left for the guest to accept (TDH.MEM.PAGE.AUG on
    /// first access, then TDG.MEM.PAGE.ACCEPT), as with lazy acceptance.
    Below(u64),
}

impl AcceptPolicy {
    /// The first frame not ready at launch (`u64::MAX` for all).
    pub fn ready_below_gfn(self) -> u64 {
        match self {
            AcceptPolicy::All => u64::MAX,
            AcceptPolicy::Below(at) => at / cvmem_model::PAGE_SIZE,
        }
    }
}

/// `test=`: which test device to give the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TestMode {
    /// None (the default).
    #[default]
    None,
    /// The hooks test device: the guest drives the stage-2 and instruction
    /// hooks with VMCALLs.
    Hooks,
}

/// What the arguments ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Run with this configuration.
    Run(Config),
    /// Print [`HELP`] and stop.
    Help,
}

/// A refused argument: the argument as given and why it is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgError {
    /// The argument exactly as QEMU passed it.
    pub arg: String,
    /// Why it is refused.
    pub reason: String,
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid argument '{}': {} (try 'help')",
            self.arg, self.reason
        )
    }
}

impl std::error::Error for ArgError {}

/// One plugin option: its key, its entry in `help`, and how its value
/// sets the configuration. [`OPTIONS`] is the one table the parser, the
/// list of known keys and the help text derive from; unit tests check
/// [`Config`] (one field per option, each named by its option) and the
/// plugin reference in docs/plugin.md (the options, their usage and
/// defaults) against it.
struct Opt {
    key: &'static str,
    /// The key with its values, as `help` shows it (`gpaw=48|52`).
    usage: &'static str,
    /// The help text, a line each.
    help: &'static [&'static str],
    /// Sets the configuration from the value; `Err`: why it is refused.
    set: fn(&mut Config, &str) -> Result<(), String>,
}

/// Every option but `help`, in the order `help` lists them.
const OPTIONS: &[Opt] = &[
    Opt {
        key: "vm-type",
        usage: "vm-type=default|sw-protected|tdx|snp",
        help: &["KVM VM type to model (default: default)"],
        set: |config, v| {
            config.vm_type = v.parse().map_err(|e| format!("{e}"))?;
            Ok(())
        },
    },
    Opt {
        key: "test",
        usage: "test=none|hooks",
        help: &["test device for the guest (default: none)"],
        set: |config, v| {
            config.test = match v {
                "none" => TestMode::None,
                "hooks" => TestMode::Hooks,
                _ => return Err(format!("unknown test device '{v}' (none, hooks)")),
            };
            Ok(())
        },
    },
    Opt {
        key: "gpaw",
        usage: "gpaw=48|52",
        help: &[
            "guest physical address width; TDX shared bit GPAW-1",
            "(default: 48)",
        ],
        set: |config, v| {
            config.gpaw = match v {
                "48" => Gpaw::Bits48,
                "52" => Gpaw::Bits52,
                _ => return Err(format!("GPAW must be 48 or 52, not '{v}'")),
            };
            Ok(())
        },
    },
    Opt {
        key: "td-attributes",
        usage: "td-attributes=N",
        help: &[
            "TD ATTRIBUTES: bit 0 DEBUG, bit 28 SEPT_VE_DISABLE",
            "(default: 0x10000000)",
        ],
        set: |config, v| {
            let bits = parse_size(v).ok_or_else(|| format!("'{v}' is not a number"))?;
            let known = TdAttributes::DEBUG | TdAttributes::SEPT_VE_DISABLE;
            if let Some(b) = (0..64).find(|b| bits & !known & (1 << b) != 0) {
                return Err(format!(
                    "TD attribute bit {b} ({}) cannot be honoured: cvmem implements DEBUG \
                     (bit 0) and SEPT_VE_DISABLE (bit 28)",
                    td_attribute_name(b)
                ));
            }
            config.td_attributes = TdAttributes(bits);
            Ok(())
        },
    },
    Opt {
        key: "xfam",
        usage: "xfam=N",
        help: &[
            "TD XFAM, the XSAVE state components a TD may enable",
            "(default: those QEMU's CPU model has)",
        ],
        set: |config, v| {
            let bits = parse_size(v).ok_or_else(|| format!("'{v}' is not a number"))?;
            crate::tdx::cpuid_table::check_xfam(bits)?;
            config.xfam = Some(bits);
            Ok(())
        },
    },
    Opt {
        key: "accept",
        usage: "accept=all|ADDR",
        help: &[
            "private memory ready at launch: all, or below ADDR",
            "(e.g. 64M); the rest waits for the guest's TDX ACCEPT",
            "or SNP PVALIDATE (default: all)",
        ],
        set: |config, v| {
            config.accept = match v {
                "all" => AcceptPolicy::All,
                _ => {
                    let at = parse_size(v)
                        .ok_or_else(|| format!("'{v}' is neither 'all' nor an address"))?;
                    if at % 4096 != 0 {
                        return Err(format!("{at:#x} is not 4K aligned"));
                    }
                    AcceptPolicy::Below(at)
                }
            };
            Ok(())
        },
    },
    Opt {
        key: "snp-cpuid",
        usage: "snp-cpuid=ADDR",
        help: &[
            "SNP: where the launch places the CPUID page",
            "(default: 0x9e000)",
        ],
        set: |config, v| {
            config.snp_pages.cpuid = snp_page(v)?;
            Ok(())
        },
    },
    Opt {
        key: "snp-secrets",
        usage: "snp-secrets=ADDR",
        help: &[
            "SNP: where the launch places the secrets page",
            "(default: 0x9d000)",
        ],
        set: |config, v| {
            config.snp_pages.secrets = snp_page(v)?;
            Ok(())
        },
    },
    Opt {
        key: "strict",
        usage: "strict=on|off",
        help: &[
            "an access through the wrong alias faults (TDX: #VE,",
            "SNP: #PF with the RMP bit)",
            "instead of converting the page (default: off)",
        ],
        set: |config, v| {
            config.strict =
                parse_bool(v).ok_or_else(|| format!("'{v}' is not a boolean (on/off)"))?;
            Ok(())
        },
    },
    Opt {
        key: "slot-zap-all",
        usage: "slot-zap-all=on|off",
        help: &[
            "KVM_X86_QUIRK_SLOT_ZAP_ALL, for vm-type=default",
            "(default: on)",
        ],
        set: |config, v| {
            config.slot_zap_all =
                parse_bool(v).ok_or_else(|| format!("'{v}' is not a boolean (on/off)"))?;
            Ok(())
        },
    },
    Opt {
        key: "map-gpa-chunk",
        usage: "map-gpa-chunk=SIZE",
        help: &[
            "TDX MapGPA and SNP GHCB page-state changes convert at",
            "most SIZE per call, then return (default: 64M)",
        ],
        set: |config, v| {
            let n = parse_size(v).ok_or_else(|| format!("'{v}' is not a size"))?;
            if n == 0 || n % 4096 != 0 {
                return Err(format!("{n:#x} is not a non-zero multiple of 4K"));
            }
            config.map_gpa_chunk = n;
            Ok(())
        },
    },
    Opt {
        key: "private-max-level",
        usage: "private-max-level=4K|2M",
        help: &[
            "largest private mapping (default: the VM type's; TDX",
            "4K as in KVM, so a 2M ACCEPT gets PAGE_SIZE_MISMATCH)",
        ],
        set: |config, v| {
            config.private_max_level = Some(match v {
                "4K" | "4k" => PageLevel::Size4K,
                "2M" | "2m" => PageLevel::Size2M,
                _ => return Err(format!("'{v}' is not 4K or 2M")),
            });
            Ok(())
        },
    },
    Opt {
        key: "trace",
        usage: "trace=PATH",
        help: &[
            "write every memslot change, fault, map, zap, flush,",
            "conversion, accept, violation and injected exception",
            "to PATH, one JSON object a line (default: no trace)",
        ],
        set: |config, v| {
            // Whether the file can be created is checked when the
            // plugin starts (Plugin::new), with the same wording.
            if v.is_empty() {
                return Err("'trace' needs a file name ('trace=PATH')".into());
            }
            config.trace = Some(v.to_owned());
            Ok(())
        },
    },
    Opt {
        key: "flush-check",
        usage: "flush-check=on|off",
        help: &[
            "report every guest access through a translation the",
            "model zapped but has not flushed yet, with the zap; a",
            "debugging option: a callback per guest load and store",
            "(default: off)",
        ],
        set: |config, v| {
            config.flush_check =
                parse_bool(v).ok_or_else(|| format!("'{v}' is not a boolean (on/off)"))?;
            Ok(())
        },
    },
    Opt {
        key: "control",
        usage: "control=PATH",
        help: &[
            "a Unix socket taking JSON requests for the host side:",
            "memslots, attributes, zaps, flushes (see docs/control.md)",
        ],
        set: |config, v| {
            // The socket is made when the plugin starts (Plugin::new).
            if v.is_empty() {
                return Err("'control' needs a socket path ('control=PATH')".into());
            }
            config.control = Some(v.to_owned());
            Ok(())
        },
    },
    Opt {
        key: "vm-stop",
        usage: "vm-stop=pause|exit",
        help: &[
            "when the modelled KVM stops the VM (as QEMU stops a",
            "KVM guest on a failed KVM_RUN): pause it in the",
            "internal-error state as QEMU does, or exit QEMU with",
            "status 1 (default: pause)",
        ],
        set: |config, v| {
            config.vm_stop = match v {
                "pause" => VmStopAction::Pause,
                "exit" => VmStopAction::Exit,
                _ => return Err(format!("'{v}' is not pause or exit")),
            };
            Ok(())
        },
    },
];

/// `help`'s own entry, last in the help text.
const HELP_USAGE: (&str, &str) = ("help", "print this text and exit");

/// The keys cvmem knows, for error messages.
fn keys() -> Vec<&'static str> {
    OPTIONS
        .iter()
        .map(|o| o.key)
        .chain([HELP_USAGE.0])
        .collect()
}

/// One line per argument, shown for `help`.
pub fn help() -> String {
    // The usage in a column of 16 after two spaces; a longer one gets a
    // line of its own.
    fn entry(out: &mut String, usage: &str, help: &[&str]) {
        let mut lines = help.iter();
        if usage.len() < 16 {
            let first = lines.next().copied().unwrap_or("");
            out.push_str(&format!("  {usage:<16}{first}\n"));
        } else {
            out.push_str(&format!("  {usage}\n"));
        }
        for l in lines {
            out.push_str(&format!("{:18}{l}\n", ""));
        }
    }
    let mut out = String::from(
        "cvmem: confidential-VM memory semantics for TCG guests\n\
         usage: -plugin /path/to/libcvmem.so[,key=value...]\n",
    );
    for o in OPTIONS {
        entry(&mut out, o.usage, o.help);
    }
    entry(&mut out, HELP_USAGE.0, &[HELP_USAGE.1]);
    out
}

/// Parses QEMU's spelling of a boolean, as `qapi_bool_parse` does.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "on" | "yes" | "true" | "y" => Some(true),
        "off" | "no" | "false" | "n" => Some(false),
        _ => None,
    }
}

/// Parses a size or address: decimal or `0x` hexadecimal, with an optional
/// `K`, `M` or `G` suffix (binary units).
pub fn parse_size(value: &str) -> Option<u64> {
    let (digits, shift) = match value.as_bytes().last()? {
        b'K' | b'k' => (&value[..value.len() - 1], 10),
        b'M' | b'm' => (&value[..value.len() - 1], 20),
        b'G' | b'g' => (&value[..value.len() - 1], 30),
        _ => (value, 0),
    };
    let n = match digits.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None => digits.parse().ok()?,
    };
    n.checked_mul(1 << shift)
}

/// Parses the plugin's arguments, in the order QEMU passed them.
pub fn parse<S: AsRef<str>>(argv: &[S]) -> Result<Request, ArgError> {
    let mut config = Config::default();
    let mut seen: Vec<&str> = Vec::new();
    let mut help = false;

    for raw in argv {
        let raw = raw.as_ref();
        let error = |reason: String| ArgError {
            arg: raw.to_owned(),
            reason,
        };
        // `help` may come bare (`,help`) or as a boolean (`,help=on`).
        let (key, value) = match raw.split_once('=') {
            Some((key, value)) => (key, Some(value)),
            None => (raw, None),
        };
        let keys = keys();
        if !keys.contains(&key) {
            return Err(error(format!(
                "unknown key '{key}' (known keys: {})",
                keys.join(", ")
            )));
        }
        if seen.contains(&key) {
            return Err(error(format!("'{key}' is given more than once")));
        }
        seen.push(key);

        match (key, value) {
            ("help", None) => help = true,
            ("help", Some(v)) => {
                help = parse_bool(v)
                    .ok_or_else(|| error(format!("'{v}' is not a boolean (on/off)")))?;
            }
            (_, None) => return Err(error(format!("'{key}' needs a value ('{key}=...')"))),
            (_, Some(v)) => {
                let opt = OPTIONS
                    .iter()
                    .find(|o| o.key == key)
                    .expect("keys() lists OPTIONS");
                (opt.set)(&mut config, v).map_err(error)?;
            }
        }
    }

    if config.snp_pages.cpuid == config.snp_pages.secrets {
        return Err(ArgError {
            arg: format!("snp-cpuid={:#x}", config.snp_pages.cpuid),
            reason: "the CPUID and secrets pages need two different pages (snp-secrets=)".into(),
        });
    }

    Ok(if help {
        Request::Help
    } else {
        Request::Run(config)
    })
}

/// The name of TD ATTRIBUTES bit `bit` (TDX module ABI, `td_param_attributes_t`)
/// and why cvmem cannot give it.
fn td_attribute_name(bit: u32) -> &'static str {
    match bit {
        16 => "ICSSD, no TDX Connect",
        27 => "LASS, not in QEMU's TCG CPU",
        29 => "MIGRATABLE, no migration TD",
        30 => "PKS, not in QEMU's TCG CPU",
        31 => "KL, no Key Locker in QEMU's TCG CPU",
        62 => "TPA, no TD partitioning",
        63 => "PERFMON, no PMU in QEMU's TCG CPU",
        _ => "reserved",
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Config {
        match parse(args) {
            Ok(Request::Run(c)) => c,
            other => panic!("expected a run configuration, got {other:?}"),
        }
    }

    fn refused(args: &[&str]) -> String {
        parse(args).unwrap_err().to_string()
    }

    #[test]
    fn snp_page_defaults_are_those_efiboot_reads() {
        let header = include_str!("../../guest-tests/runtime/snp.h");
        let d = SnpPages::default();
        for (name, at) in [("SNP_CPUID_PAGE", d.cpuid), ("SNP_SECRETS_PAGE", d.secrets)] {
            let line = format!("#define {name} {at:#x}ul");
            assert!(header.contains(&line), "snp.h lacks '{line}'");
        }
    }

    #[test]
    fn no_arguments_give_the_defaults() {
        assert_eq!(run(&[]), Config::default());
        assert_eq!(run(&[]).vm_type, VmType::Default);
    }

    #[test]
    fn every_vm_type_is_accepted() {
        for t in VmType::ALL {
            assert_eq!(run(&[&format!("vm-type={t}")]).vm_type, t);
        }
    }

    #[test]
    fn trace_file() {
        assert_eq!(run(&[]).trace, None);
        assert_eq!(
            run(&["trace=/tmp/t.jsonl"]).trace.as_deref(),
            Some("/tmp/t.jsonl")
        );
        assert!(refused(&["trace="]).contains("'trace=': 'trace' needs a file name"));
        assert!(refused(&["trace"]).contains("'trace' needs a value"));
    }

    #[test]
    fn vm_stop_action() {
        assert_eq!(run(&[]).vm_stop, VmStopAction::Pause);
        assert_eq!(run(&["vm-stop=exit"]).vm_stop, VmStopAction::Exit);
        assert_eq!(run(&["vm-stop=pause"]).vm_stop, VmStopAction::Pause);
        assert!(refused(&["vm-stop=quit"]).contains("'vm-stop=quit': 'quit' is not pause or exit"));
    }

    #[test]
    fn test_device() {
        assert_eq!(run(&[]).test, TestMode::None);
        assert_eq!(run(&["test=hooks"]).test, TestMode::Hooks);
        assert!(refused(&["test=x"]).contains("'test=x'"));
    }

    #[test]
    fn help_bare_or_boolean() {
        assert_eq!(parse(&["help"]), Ok(Request::Help));
        assert_eq!(parse(&["vm-type=tdx", "help=on"]), Ok(Request::Help));
        assert_eq!(run(&["help=off"]), Config::default());
    }

    #[test]
    fn unknown_key_names_the_argument() {
        let msg = refused(&["vm-type=tdx", "vmtype=tdx"]);
        assert!(msg.contains("'vmtype=tdx'"), "{msg}");
        assert!(msg.contains("unknown key 'vmtype'"), "{msg}");
    }

    #[test]
    fn bad_value_names_the_argument() {
        let msg = refused(&["vm-type=sev"]);
        assert!(msg.starts_with("invalid argument 'vm-type=sev'"), "{msg}");
        let msg = refused(&["help=maybe"]);
        assert!(msg.contains("'help=maybe'"), "{msg}");
    }

    #[test]
    fn missing_value_and_repeats_are_refused() {
        assert!(refused(&["vm-type"]).contains("needs a value"));
        assert!(refused(&["vm-type="]).contains("unknown VM type ''"));
        let msg = refused(&["vm-type=tdx", "vm-type=snp"]);
        assert!(msg.contains("'vm-type=snp'") && msg.contains("more than once"));
    }

    #[test]
    fn errors_are_one_line() {
        for bad in [&["x=1"][..], &["vm-type=?"], &["help=2"], &["vm-type"]] {
            assert!(!refused(bad).contains('\n'));
        }
    }

    #[test]
    fn confidential_vm_options() {
        let c = run(&[
            "vm-type=tdx",
            "gpaw=52",
            "td-attributes=0x1",
            "accept=64M",
            "strict=on",
            "slot-zap-all=off",
            "map-gpa-chunk=2M",
            "private-max-level=2M",
        ]);
        assert_eq!(c.private_max_level, Some(PageLevel::Size2M));
        assert!(refused(&["private-max-level=1G"]).contains("'private-max-level=1G'"));
        assert_eq!(c.gpaw, Gpaw::Bits52);
        assert_eq!(c.td_attributes, TdAttributes(1));
        assert_eq!(c.accept, AcceptPolicy::Below(64 << 20));
        assert!(c.strict && !c.slot_zap_all);
        assert_eq!(c.map_gpa_chunk, 2 << 20);
        assert_eq!(run(&["accept=all"]).accept, AcceptPolicy::All);
        assert_eq!(
            run(&["accept=0x100000"]).accept,
            AcceptPolicy::Below(0x10_0000)
        );
        assert!(refused(&["gpaw=40"]).contains("'gpaw=40'"));
        assert!(refused(&["td-attributes=0x2"]).contains("TD attribute bit 1 (reserved)"));
        assert!(refused(&["td-attributes=0x8000000000000000"]).contains("bit 63 (PERFMON"));
        assert_eq!(run(&["xfam=0x207"]).xfam, Some(0x207));
        assert_eq!(run(&[]).xfam, None);
        assert!(refused(&["xfam=0x1"]).contains("fixed 1"));
        assert!(refused(&["xfam=0x1b"]).contains("bit 3 (MPX BNDREGS) is fixed 0"));
        assert!(refused(&["xfam=0x23"]).contains("AVX-512 needs"));
        assert!(refused(&["xfam=0xe3"]).contains("AVX-512 needs"));
        assert!(refused(&["xfam=0x803"]).contains("CET needs"));
        assert!(refused(&["xfam=0x20003"]).contains("AMX needs"));
        assert!(refused(&["accept=0x1001"]).contains("not 4K aligned"));
        let c = run(&["snp-cpuid=0x80e000", "snp-secrets=0x80d000"]);
        assert_eq!(
            (c.snp_pages.cpuid, c.snp_pages.secrets),
            (0x80e000, 0x80d000)
        );
        assert!(refused(&["snp-cpuid=0x9e001"]).contains("not 4K aligned"));
        assert!(refused(&["snp-cpuid=0x9d000"]).contains("two different pages"));
        assert!(refused(&["accept=some"]).contains("'accept=some'"));
        assert!(refused(&["map-gpa-chunk=0"]).contains("'map-gpa-chunk=0'"));
        assert!(refused(&["strict=2"]).contains("'strict=2'"));
        assert!(run(&["flush-check=on"]).flush_check && !run(&[]).flush_check);
        assert!(refused(&["flush-check=2"]).contains("'flush-check=2'"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("0x1000"), Some(4096));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("0x10K"), Some(16 << 10));
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("M"), None);
        assert_eq!(parse_size("99999999999999999999G"), None);
        assert_eq!(parse_size("17179869184G"), None);
    }

    #[test]
    fn booleans_follow_qapi_bool_parse() {
        for t in ["on", "yes", "true", "y"] {
            assert_eq!(parse_bool(t), Some(true));
        }
        for f in ["off", "no", "false", "n"] {
            assert_eq!(parse_bool(f), Some(false));
        }
        assert_eq!(parse_bool("1"), None);
        assert_eq!(parse_bool("ON"), None);
    }

    /// Every option of the table is a known key, listed in the help text
    /// and in the unknown-key message, and takes its documented form.
    #[test]
    fn the_option_table_drives_keys_and_help() {
        let help = help();
        let unknown = refused(&["no-such-key=1"]);
        for o in OPTIONS {
            assert!(o.usage.starts_with(o.key), "{}", o.usage);
            assert!(help.contains(&format!("  {}", o.usage)), "{}", o.key);
            assert!(unknown.contains(o.key), "{}", o.key);
            let bad = refused(&[&format!("{}=", o.key)]);
            assert!(!bad.contains("unknown key"), "{bad}");
        }
        assert!(help.ends_with("  help            print this text and exit\n"));
    }

    /// Every field of [`Config`] by name, with its value: the destructuring
    /// names every field, so a new field does not compile until it is
    /// listed here, and then [`every_option_sets_its_own_field`] wants an
    /// option that sets it.
    fn fields(c: &Config) -> Vec<(&'static str, String)> {
        let Config {
            vm_type,
            test,
            gpaw,
            td_attributes,
            accept,
            snp_pages: SnpPages { cpuid, secrets },
            strict,
            slot_zap_all,
            map_gpa_chunk,
            xfam,
            private_max_level,
            trace,
            flush_check,
            control,
            vm_stop,
        } = c;
        vec![
            ("vm_type", format!("{vm_type:?}")),
            ("test", format!("{test:?}")),
            ("gpaw", format!("{gpaw:?}")),
            ("td_attributes", format!("{td_attributes:?}")),
            ("accept", format!("{accept:?}")),
            ("snp_pages.cpuid", format!("{cpuid:?}")),
            ("snp_pages.secrets", format!("{secrets:?}")),
            ("strict", format!("{strict:?}")),
            ("slot_zap_all", format!("{slot_zap_all:?}")),
            ("map_gpa_chunk", format!("{map_gpa_chunk:?}")),
            ("xfam", format!("{xfam:?}")),
            ("private_max_level", format!("{private_max_level:?}")),
            ("trace", format!("{trace:?}")),
            ("flush_check", format!("{flush_check:?}")),
            ("control", format!("{control:?}")),
            ("vm_stop", format!("{vm_stop:?}")),
        ]
    }

    /// A value other than the default for each option.
    fn example(key: &str) -> &'static str {
        match key {
            "vm-type" => "tdx",
            "test" => "hooks",
            "gpaw" => "52",
            "td-attributes" => "0x1",
            "xfam" => "0x207",
            "accept" => "64M",
            "snp-cpuid" => "0x80e000",
            "snp-secrets" => "0x80d000",
            "strict" => "on",
            "slot-zap-all" => "off",
            "map-gpa-chunk" => "2M",
            "private-max-level" => "2M",
            "trace" => "/tmp/t.jsonl",
            "flush-check" => "on",
            "control" => "/tmp/c.sock",
            "vm-stop" => "exit",
            _ => panic!("option '{key}' has no example value here"),
        }
    }

    /// The `OPTIONS` table and [`Config`] agree: each option sets one field
    /// and no other option sets it, every field has its option, and the
    /// field's doc comment names the option.
    #[test]
    fn every_option_sets_its_own_field() {
        let source = include_str!("args.rs");
        let defaults = fields(&Config::default());
        let mut set_by: Vec<(&str, &str)> = Vec::new();
        for o in OPTIONS {
            let c = run(&[&format!("{}={}", o.key, example(o.key))]);
            let changed: Vec<&str> = fields(&c)
                .iter()
                .zip(&defaults)
                .filter(|(now, default)| now.1 != default.1)
                .map(|(now, _)| now.0)
                .collect();
            assert_eq!(changed.len(), 1, "{} sets {changed:?}", o.key);
            if let Some((other, _)) = set_by.iter().find(|(_, f)| *f == changed[0]) {
                panic!("{} and {other} both set {}", o.key, changed[0]);
            }
            set_by.push((o.key, changed[0]));
            // The doc comment above the field (`snp_pages` for both of
            // its parts) names the option.
            let field = changed[0].split('.').next().unwrap();
            let at = source
                .find(&format!("    pub {field}: "))
                .unwrap_or_else(|| panic!("no field {field} in Config"));
            let doc: String = source[..at]
                .lines()
                .rev()
                .take_while(|l| l.trim_start().starts_with("///"))
                .collect();
            assert!(
                doc.contains(&format!("`{}=`", o.key)),
                "the doc of Config::{field} does not name `{}=`",
                o.key
            );
        }
        let unset: Vec<&str> = defaults
            .iter()
            .map(|f| f.0)
            .filter(|f| !set_by.iter().any(|(_, s)| s == f))
            .collect();
        assert!(unset.is_empty(), "no option sets {unset:?}");
    }

    /// docs/plugin.md's argument table lists the options of `OPTIONS`, in
    /// its order, with their usage as `help` shows it, then `help`; a
    /// default it gives as one value is the default of [`Config`].
    #[test]
    fn the_plugin_reference_lists_the_options() {
        let page = include_str!("../../docs/plugin.md");
        let table = page
            .split("\n## Arguments\n")
            .nth(1)
            .expect("docs/plugin.md has an Arguments section")
            .split("\n\n")
            .find(|p| p.starts_with("| argument |"))
            .expect("the Arguments section has the table");
        let rows: Vec<Vec<String>> = table
            .lines()
            .skip(2)
            .map(|row| {
                // Cells split at `|` but not at the escaped `\|`.
                let row = row.replace("\\|", "\u{0}");
                row.trim_matches('|')
                    .split('|')
                    .map(|cell| cell.trim().replace('\u{0}', "|"))
                    .collect()
            })
            .collect();
        let documented: Vec<&str> = rows
            .iter()
            .map(|r| {
                r[0].strip_prefix('`')
                    .and_then(|u| u.strip_suffix('`'))
                    .unwrap_or_else(|| panic!("'{}' is not one code span", r[0]))
            })
            .collect();
        let expected: Vec<&str> = OPTIONS
            .iter()
            .map(|o| o.usage)
            .chain([HELP_USAGE.0])
            .collect();
        assert_eq!(documented, expected);
        for (row, o) in rows.iter().zip(OPTIONS) {
            let default = &row[1];
            if let Some(v) = default.strip_prefix('`').and_then(|d| d.strip_suffix('`')) {
                assert_eq!(
                    run(&[&format!("{}={v}", o.key)]),
                    Config::default(),
                    "docs/plugin.md says {}={v} is the default",
                    o.key
                );
            }
        }
    }
}
