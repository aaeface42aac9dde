//! The `args` target: the plugin's arguments as QEMU hands them over (the
//! `-plugin` option split at commas), and the number syntax they and the
//! control socket share.
//!
//! Invariants: parsing never panics; a refusal names an argument that was
//! given (or the CPUID/secrets pair) and explains itself on one line; an
//! accepted configuration either makes a plugin or is refused by it with a
//! message; `parse_size` reads back every number it is given in decimal,
//! hexadecimal and with a K suffix.

use crate::args::{self, Request};
use crate::plugin::{Mode, Plugin};

/// Runs one input; panics if an invariant breaks.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let argv: Vec<&str> = text.split(',').collect();
    // Messages quote the values given: one line if the input is.
    let one_line = !text.contains('\n');
    match args::parse(&argv) {
        Ok(Request::Help) => assert!(!args::help().is_empty()),
        Ok(Request::Run(mut config)) => {
            // No files or sockets from a fuzzer.
            config.trace = None;
            config.control = None;
            match Plugin::new(config, Mode::Enforcing { api_version: 5 }, 2) {
                Ok(p) => assert!(p.banner().starts_with("cvmem: vm-type=")),
                Err(e) => assert!(!e.is_empty() && (!one_line || !e.contains('\n')), "{e:?}"),
            }
        }
        Err(e) => {
            assert!(
                argv.contains(&e.arg.as_str()) || e.arg.starts_with("snp-cpuid="),
                "the error names no argument given: {e}"
            );
            assert!(
                !e.reason.is_empty() && (!one_line || !e.reason.contains('\n')),
                "reason: {:?}",
                e.reason
            );
        }
    }
    if data.len() >= 8 {
        let n = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
        assert_eq!(args::parse_size(&n.to_string()), Some(n));
        assert_eq!(args::parse_size(&format!("{n:#x}")), Some(n));
        let k = n >> 10;
        assert_eq!(args::parse_size(&format!("{k}K")), Some(k << 10));
    }
}
