//! Running QEMU with the console on the terminal, passing its stderr on
//! while watching it for the plugin summary's first line.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use anyhow::{Context, Result};

use crate::outcome::SUMMARY_PREFIX;

/// Copies `from` to `to` line by line as it comes, and returns the first
/// line that begins with `cvmem summary: ` (lossily decoded: QEMU's stderr
/// need not be UTF-8).
pub fn tee_summary(from: impl Read, mut to: impl Write) -> Option<String> {
    let mut reader = BufReader::new(from);
    let mut line = Vec::new();
    let mut title = None;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        // A closed terminal must not stop the reading: QEMU would block.
        let _ = to.write_all(&line).and_then(|()| to.flush());
        if title.is_none() && line.starts_with(SUMMARY_PREFIX.as_bytes()) {
            let text = String::from_utf8_lossy(&line);
            title = Some(text.trim_end_matches(['\n', '\r']).to_owned());
        }
    }
    title
}

/// Runs `qemu args` with stdin and stdout on the terminal (the serial
/// console), its stderr passed on; returns its exit status and the
/// summary's first line.
pub fn run_qemu(qemu: &Path, args: &[String]) -> Result<(ExitStatus, Option<String>)> {
    let mut child = Command::new(qemu)
        .args(args)
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", qemu.display()))?;
    // Ctrl-C reaches QEMU too (the same process group): QEMU ends the run
    // ("ended by the host (a signal)") and prints its summary, which cvmem
    // must stay alive to read. QEMU set up its own handlers after exec.
    // SAFETY: signal() with SIG_IGN installs no handler code; nothing else
    // in this process changes SIGINT's disposition concurrently.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
    let stderr = child.stderr.take().context("no stderr pipe")?;
    let reader = std::thread::spawn(move || tee_summary(stderr, std::io::stderr()));
    let status = child.wait().context("waiting for QEMU")?;
    let title = reader.join().unwrap_or(None);
    Ok((status, title))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tee_passes_everything_and_finds_the_title() {
        let input: &[u8] = b"cvmem: vm-type=tdx mode=enforcing (cvm plugin API v7)\n\
            \xff\xfe not utf-8\n\
            cvmem summary: the guest powered off\n  violations    RMP 0\n\
            cvmem summary: a second one\nno newline at the end";
        let mut out = Vec::new();
        let title = tee_summary(input, &mut out);
        assert_eq!(out, input, "passed on byte for byte");
        assert_eq!(
            title.as_deref(),
            Some("cvmem summary: the guest powered off")
        );
        assert_eq!(tee_summary(&b"qemu: bad option\n"[..], Vec::new()), None);
        assert_eq!(
            tee_summary(&b"  cvmem summary: indented\n"[..], Vec::new()),
            None
        );
    }

    #[test]
    fn captured_stderr_to_outcome() {
        use crate::outcome::{outcome, Outcome};
        // A triple-faulting default VM's stderr, as QEMU and the plugin
        // print it.
        let stderr = b"cvmem: vm-type=default mode=enforcing (cvm plugin API v7)\n\
            ------------------------------------------------------------\n\
            cvmem summary: triple fault on vCPU 0 at RIP 0x100f3a: #GP (vector 13) could not be delivered; QEMU ended the run (-no-reboot)\n\
              violations    RMP 0, SEPT 0, #VE 0, #VC 0, other exceptions 0, DMA blocked 0\n";
        let title = tee_summary(&stderr[..], Vec::new());
        assert_eq!(outcome(title.as_deref(), Some(0)), Outcome::TripleFault);
        let refused = b"cvmem: invalid argument 'vm-type=sev': unknown VM type 'sev'\n\
            qemu-system-x86_64: Could not load plugin libcvmem.so: qemu_plugin_install returned error code -1\n";
        let title = tee_summary(&refused[..], Vec::new());
        assert_eq!(outcome(title.as_deref(), Some(1)), Outcome::QemuRefused);
    }
}
