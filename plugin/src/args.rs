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

use cvmem_model::VmType;

/// The validated configuration of one plugin instance.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Config {
    /// `vm-type=`: the KVM VM type whose memory semantics the guest gets.
    pub vm_type: VmType,
    /// `test=`: a test device the guest can drive (see `testdev.rs`).
    pub test: TestMode,
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

/// One line per argument, shown for `help`.
pub const HELP: &str = "\
cvmem: confidential-VM memory semantics for TCG guests
usage: -plugin /path/to/libcvmem.so[,key=value...]
  vm-type=default|sw-protected|tdx|snp
                  KVM VM type to model (default: default)
  test=none|hooks test device for the guest (default: none)
  help            print this text and exit
";

/// The keys cvmem knows, for error messages.
const KEYS: &[&str] = &["vm-type", "test", "help"];

/// Parses QEMU's spelling of a boolean, as `qapi_bool_parse` does.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "on" | "yes" | "true" | "y" => Some(true),
        "off" | "no" | "false" | "n" => Some(false),
        _ => None,
    }
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
        if !KEYS.contains(&key) {
            return Err(error(format!(
                "unknown key '{key}' (known keys: {})",
                KEYS.join(", ")
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
            ("vm-type", Some(v)) => {
                config.vm_type = v.parse().map_err(|e| error(format!("{e}")))?;
            }
            ("test", Some(v)) => {
                config.test = match v {
                    "none" => TestMode::None,
                    "hooks" => TestMode::Hooks,
                    _ => return Err(error(format!("unknown test device '{v}' (none, hooks)"))),
                };
            }
            _ => unreachable!("every key in KEYS has a branch"),
        }
    }

    Ok(if help {
        Request::Help
    } else {
        Request::Run(config)
    })
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
}
