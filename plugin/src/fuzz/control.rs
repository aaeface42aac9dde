//! The `control` target: request lines as a client sends them to the
//! control socket, against a VM whose QEMU reported two RAM sections
//! (0-640K and 1M-4M), mixed with guest accesses so that the host's
//! requests meet installed translations.
//!
//! The input's first byte chooses the VM type (default, sw-protected,
//! TDX, SNP) and the zap quirk; the rest is lines. A line starting with
//! `a` is a guest access, `a GPA [r|w|x] [VCPU]` (hexadecimal GPA, alias
//! bits included); every other line goes to the socket's line handler as
//! the client thread hands it over (trimmed, blank lines skipped).

use cvmem_model::VmType;

use super::session::{Session, RAM};
use crate::args::{AcceptPolicy, Config};
use crate::hooks::Access;

/// Lines taken from one input.
const MAX_LINES: usize = 64;

/// Runs one input; panics if an invariant breaks.
pub fn run(data: &[u8]) {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let vm_type = [
        VmType::Default,
        VmType::SwProtected,
        VmType::Tdx,
        VmType::Snp,
    ][usize::from(head % 4)];
    let config = Config {
        vm_type,
        slot_zap_all: head & 4 == 0,
        accept: AcceptPolicy::Below(RAM / 2),
        ..Config::default()
    };
    let mut s = Session::new(config, &[(0, 0xa_0000), (0x10_0000, RAM - 0x10_0000)]);
    let text = String::from_utf8_lossy(rest);
    for line in text.lines().take(MAX_LINES) {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match line.strip_prefix('a') {
            Some(args) => {
                if s.stopped {
                    continue;
                }
                let mut words = args.split_whitespace();
                let Some(gpa) = words
                    .next()
                    .and_then(|w| u64::from_str_radix(w.trim_start_matches("0x"), 16).ok())
                else {
                    continue;
                };
                let access = match words.next() {
                    Some("w") => Access::Write,
                    Some("x") => Access::Fetch,
                    _ => Access::Read,
                };
                let vcpu = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
                s.access(vcpu, gpa, access, 0, false);
            }
            None => {
                s.control(line);
            }
        }
        s.check();
    }
    s.finish();
}
