//! The guest's outcome, from the first line of the plugin's exit summary
//! (`cvmem summary: HOW`, plugin/src/lifecycle.rs), and the exit code
//! `cvmem run` returns for it.

/// How a run ended, as `cvmem run` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The guest powered off, or a guest test passed (isa-debug-exit 0:
    /// QEMU's status 1).
    Passed,
    /// A triple fault.
    TripleFault,
    /// The guest reported a fatal error (a TD's ReportFatalError, an SNP
    /// termination request) or QEMU's panic device fired.
    GuestPanic,
    /// The modelled KVM stopped the VM.
    Stopped,
    /// QEMU exited without a plugin summary: it refused to start (a bad
    /// option, the plugin refused its arguments) or died.
    QemuRefused,
    /// Anything else: a reset request, a signal, a guest test's failure
    /// (isa-debug-exit with another status), audit mode's unknown ending
    /// with a non-zero status.
    Other,
}

/// The exit codes, for `--help` and the docs.
pub const EXIT_CODES: &str = "\
Exit codes of `cvmem run` (from the first line of the plugin's summary):
  0  the guest powered off, or a guest test passed (isa-debug-exit status 1)
  1  cvmem itself failed (QEMU or the plugin could not be found or built)
  2  a bad command line, refused before QEMU ran
  3  triple fault
  4  guest panic (TD ReportFatalError, SNP termination request)
  5  VM stopped by the modelled KVM
  6  QEMU refused to start (or died) before the plugin summarised the run
  7  anything else (a reset request, a signal such as Ctrl-C, a guest test
     that failed, a run of unknown ending with QEMU status non-zero)";

impl Outcome {
    /// The process exit code.
    pub fn code(&self) -> u8 {
        match self {
            Outcome::Passed => 0,
            Outcome::TripleFault => 3,
            Outcome::GuestPanic => 4,
            Outcome::Stopped => 5,
            Outcome::QemuRefused => 6,
            Outcome::Other => 7,
        }
    }

    /// A few words for the last line cvmem prints.
    pub fn describe(&self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::TripleFault => "triple fault",
            Outcome::GuestPanic => "guest panic",
            Outcome::Stopped => "VM stopped by the modelled KVM",
            Outcome::QemuRefused => "QEMU refused to start (no plugin summary)",
            Outcome::Other => "another ending",
        }
    }
}

/// The summary's title prefix.
pub const SUMMARY_PREFIX: &str = "cvmem summary: ";

/// The outcome of a run from the plugin summary's first line (`None`: QEMU
/// printed none) and QEMU's exit status (`None`: killed by a signal).
pub fn outcome(title: Option<&str>, qemu_status: Option<i32>) -> Outcome {
    let Some(title) = title else {
        return Outcome::QemuRefused;
    };
    let how = title
        .strip_prefix(SUMMARY_PREFIX)
        .unwrap_or(title)
        .trim_end();
    if how == "the guest powered off" || how.starts_with("the guest powered off (") {
        Outcome::Passed
    } else if let Some(rest) = how.strip_prefix("the guest asked QEMU to exit with status ") {
        // Status 1 is a guest test's pass (isa-debug-exit 0); 3 its failure.
        if rest.starts_with("1 ") {
            Outcome::Passed
        } else {
            Outcome::Other
        }
    } else if how.starts_with("triple fault") {
        Outcome::TripleFault
    } else if how.starts_with("guest panic") {
        Outcome::GuestPanic
    } else if how.starts_with("VM stopped by the modelled KVM") {
        Outcome::Stopped
    } else if how.starts_with("(audit mode") {
        // An unpatched QEMU does not say how the run ended: its status does.
        match qemu_status {
            Some(0) => Outcome::Passed,
            _ => Outcome::Other,
        }
    } else {
        Outcome::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(title: &str) -> u8 {
        outcome(Some(title), Some(0)).code()
    }

    #[test]
    fn titles() {
        // Every form docs/trace.md lists, as lifecycle.rs writes it.
        assert_eq!(o("cvmem summary: the guest powered off"), 0);
        assert_eq!(
            o("cvmem summary: the guest powered off (after a reset: the guest requested a reset; QEMU reset the machine)"),
            0
        );
        assert_eq!(
            o("cvmem summary: the guest asked QEMU to exit with status 1 (isa-debug-exit)"),
            0
        );
        assert_eq!(
            o("cvmem summary: the guest asked QEMU to exit with status 3 (isa-debug-exit)"),
            7
        );
        assert_eq!(
            o("cvmem summary: the guest asked QEMU to exit with status 13 (isa-debug-exit)"),
            7
        );
        assert_eq!(
            o("cvmem summary: triple fault on vCPU 0 at RIP 0x102a4c: #GP (vector 13) could not be delivered; QEMU ended the run (-no-reboot)"),
            3
        );
        assert_eq!(
            o("cvmem summary: triple fault on vCPU 1 at RIP 0x1: #PF (vector 14) could not be delivered; its vCPUs cannot be reset (protected state, as under KVM), so QEMU ended the VM"),
            3
        );
        assert_eq!(
            o("cvmem summary: guest panic: the TD reported a fatal error (TDG.VP.VMCALL<ReportFatalError>) 0x0: \"guest says bye\""),
            4
        );
        assert_eq!(o("cvmem summary: guest panic: the SNP guest requested termination: reason set 2, code 23"), 4);
        assert_eq!(o("cvmem summary: guest panic (reported to QEMU)"), 4);
        assert_eq!(
            o("cvmem summary: VM stopped by the modelled KVM: vCPU 0 read of GPA 0xfec00000 through the private alias, where no guest_memfd memslot is"),
            5
        );
        assert_eq!(
            o("cvmem summary: the guest requested a reset; QEMU ended the run (-no-reboot)"),
            7
        );
        assert_eq!(o("cvmem summary: ended by the host (a signal)"), 7);
        assert_eq!(
            o("cvmem summary: ended by the host (the monitor's quit)"),
            7
        );
        assert_eq!(
            o("cvmem summary: QEMU exited while the guest ran, with no shutdown request (an exit() in QEMU)"),
            7
        );
        assert_eq!(o("cvmem summary: the guest powered offX"), 7);
    }

    #[test]
    fn no_summary_and_audit() {
        assert_eq!(outcome(None, Some(1)), Outcome::QemuRefused);
        assert_eq!(outcome(None, None), Outcome::QemuRefused);
        let audit = "cvmem summary: (audit mode: an unpatched QEMU does not say how the run ended)";
        assert_eq!(outcome(Some(audit), Some(0)), Outcome::Passed);
        assert_eq!(outcome(Some(audit), Some(1)), Outcome::Other);
        assert_eq!(outcome(Some(audit), None), Outcome::Other);
    }

    #[test]
    fn codes_are_distinct_and_documented() {
        let all = [
            Outcome::Passed,
            Outcome::TripleFault,
            Outcome::GuestPanic,
            Outcome::Stopped,
            Outcome::QemuRefused,
            Outcome::Other,
        ];
        let mut codes: Vec<u8> = all.iter().map(Outcome::code).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        for c in codes {
            assert!(EXIT_CODES.contains(&format!("\n  {c}  ")), "{c} documented");
        }
        assert!(EXIT_CODES.contains("\n  1  ") && EXIT_CODES.contains("\n  2  "));
    }
}
