//! How the guest's run ended: the first line of the exit summary.
//!
//! A user must be able to tell a clean power-off from a crash. QEMU tells
//! the plugin about every shutdown and reset it carries out (patches 0014 and 0015:
//! its ShutdownCause, and where a triple fault happened); the plugin adds
//! what only it knows: a guest's fatal-error report (TDX ReportFatalError,
//! SNP termination request) and the modelled KVM stopping the VM.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

/// Why QEMU ends or restarts a run: QEMU's `ShutdownCause`
/// (qapi/run-state.json), in its numbering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownCause {
    /// No cause recorded.
    None,
    /// QEMU gave up (also a VM stop with `vm-stop=exit`).
    HostError,
    /// The monitor's `quit`.
    HostQmpQuit,
    /// The monitor's `system_reset`.
    HostQmpSystemReset,
    /// A signal (SIGINT, SIGTERM, SIGHUP).
    HostSignal,
    /// The display's window was closed.
    HostUi,
    /// The guest powered off (ACPI, APM, a power-off port).
    GuestShutdown,
    /// The guest asked for a reset, or triple-faulted.
    GuestReset,
    /// The guest panicked (-action panic=...).
    GuestPanic,
    /// A reset of part of the machine.
    SubsystemReset,
    /// A snapshot was loaded.
    SnapshotLoad,
}

impl ShutdownCause {
    /// The cause of QEMU's number `raw`; `None` for numbers QEMU does not
    /// use.
    pub fn from_raw(raw: u32) -> ShutdownCause {
        use ShutdownCause::*;
        [
            None,
            HostError,
            HostQmpQuit,
            HostQmpSystemReset,
            HostSignal,
            HostUi,
            GuestShutdown,
            GuestReset,
            GuestPanic,
            SubsystemReset,
            SnapshotLoad,
        ]
        .get(raw as usize)
        .copied()
        .unwrap_or(None)
    }
}

/// A triple fault: an exception raised while a #DF was being delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TripleFault {
    /// The vCPU.
    pub vcpu: u32,
    /// Its RIP at the faulting instruction.
    pub rip: u64,
    /// The exception that could not be delivered.
    pub vector: u8,
}

/// A shutdown or reset QEMU carries out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shutdown {
    /// Why.
    pub cause: ShutdownCause,
    /// QEMU resets the machine and the guest runs again; otherwise the run
    /// ends.
    pub reset: bool,
    /// Where the guest triple-faulted, if that is why.
    pub triple_fault: Option<TripleFault>,
    /// The status QEMU exits with where the request chose one (a guest's
    /// isa-debug-exit write), else 0.
    pub exit_code: i32,
}

/// The event that ended the run.
#[derive(Clone, Debug, PartialEq, Eq)]
enum End {
    /// QEMU shut the VM down.
    Shutdown(Shutdown),
    /// The guest reported a fatal error to its VMM.
    GuestPanic(String),
    /// The modelled KVM stopped the VM.
    Stopped(String),
    /// cvmem failed: a callback panicked (`guard`), and cvmem stopped the
    /// VM at the next vCPU callback.
    Internal(String),
}

#[derive(Debug, Default)]
struct State {
    /// The first event that ended the run; later ones follow from it (the
    /// shutdown a panic action makes, the quit after a stop).
    end: Option<End>,
    /// Resets after which the guest ran again.
    resets: u64,
    /// What the last of them was.
    last_reset: Option<String>,
}

/// How the run went, for the summary.
#[derive(Debug)]
pub struct Lifecycle {
    /// Whether a reset restarts the guest: false for a TD or an SNP guest,
    /// whose state KVM protects (QEMU's cpus_are_resettable()).
    resettable: bool,
    state: Mutex<State>,
    /// The run ended in a guest panic or a VM stop: [`Lifecycle::is_dead`]
    /// without the lock, for audit mode, which asks at every access.
    dead: AtomicBool,
}

impl Lifecycle {
    /// The lifecycle of a VM whose vCPUs can be reset or not.
    pub fn new(resettable: bool) -> Lifecycle {
        Lifecycle {
            resettable,
            state: Mutex::new(State::default()),
            dead: AtomicBool::new(false),
        }
    }

    /// Whether QEMU may reset the vCPUs.
    pub fn resettable(&self) -> bool {
        self.resettable
    }

    /// QEMU carries out a shutdown or reset.
    pub fn shutdown(&self, ev: Shutdown) {
        let mut s = self.state.lock();
        if ev.reset {
            s.resets += 1;
            s.last_reset = Some(self.describe_shutdown(&ev));
        } else if s.end.is_none() {
            s.end = Some(End::Shutdown(ev));
        }
    }

    /// The guest reported a fatal error (`why`: what it said).
    pub fn guest_panic(&self, why: String) {
        self.died(End::GuestPanic(why));
    }

    /// The modelled KVM stopped the VM (`why`: which access, and the rule).
    pub fn stopped(&self, why: String) {
        self.died(End::Stopped(why));
    }

    /// A callback panicked (`what`: which, and the panic's message). The
    /// VM is dead from here: the vCPU callbacks stop it.
    pub fn internal_error(&self, what: String) {
        self.died(End::Internal(what));
    }

    /// Whether the run was cut short from outside: a signal, the monitor's
    /// quit, the display closed, QEMU giving up on an error of its own, or
    /// an exit() with no shutdown at all. Not when the guest ended it (a
    /// power-off, a reset it cannot survive, a panic) or cvmem stopped it.
    pub fn ended_early(&self) -> bool {
        use ShutdownCause as C;
        match &self.state.lock().end {
            None => true,
            Some(End::Shutdown(ev)) => matches!(
                ev.cause,
                C::HostError | C::HostQmpQuit | C::HostSignal | C::HostUi | C::None
            ),
            Some(End::GuestPanic(_) | End::Stopped(_) | End::Internal(_)) => false,
        }
    }

    /// Records `end` unless the run has ended already.
    fn died(&self, end: End) {
        let mut s = self.state.lock();
        if s.end.is_none() {
            s.end = Some(end);
            self.dead.store(true, Ordering::Relaxed);
        }
    }

    /// Whether the VM was stopped or the guest panicked: it is dead.
    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Relaxed)
    }

    /// How the run ended, in one line.
    pub fn describe(&self) -> String {
        let s = self.state.lock();
        let end = match &s.end {
            None => "QEMU exited while the guest ran, with no shutdown request \
                     (an exit() in QEMU)"
                .to_owned(),
            Some(End::Shutdown(ev)) => self.describe_shutdown(ev),
            Some(End::GuestPanic(why)) => format!("guest panic: {why}"),
            Some(End::Stopped(why)) => format!("VM stopped by the modelled KVM: {why}"),
            Some(End::Internal(why)) => format!("cvmem internal error in {why}"),
        };
        match (s.resets, &s.last_reset) {
            (0, _) | (_, None) => end,
            (1, Some(last)) => format!("{end} (after a reset: {last})"),
            (n, Some(last)) => format!("{end} (after {n} resets, the last: {last})"),
        }
    }

    fn describe_shutdown(&self, ev: &Shutdown) -> String {
        use ShutdownCause as C;
        let what = match (ev.cause, ev.triple_fault) {
            (C::GuestReset, Some(tf)) => format!(
                "triple fault on vCPU {} at RIP {:#x}: {} could not be delivered",
                tf.vcpu,
                tf.rip,
                vector_name(tf.vector)
            ),
            (C::GuestReset, None) => "the guest requested a reset".to_owned(),
            (C::GuestShutdown, _) if ev.exit_code != 0 => {
                return format!(
                    "the guest asked QEMU to exit with status {} (isa-debug-exit)",
                    ev.exit_code
                )
            }
            (C::GuestShutdown, _) => return "the guest powered off".to_owned(),
            (C::GuestPanic, _) => "guest panic (reported to QEMU)".to_owned(),
            (C::HostError, _) => "QEMU ended the run on an error".to_owned(),
            (C::HostQmpQuit, _) => "ended by the host (the monitor's quit)".to_owned(),
            (C::HostQmpSystemReset, _) => "reset by the host (system_reset)".to_owned(),
            (C::HostSignal, _) => "ended by the host (a signal)".to_owned(),
            (C::HostUi, _) => "ended by the host (the display closed)".to_owned(),
            (C::SubsystemReset, _) => "a subsystem reset".to_owned(),
            (C::SnapshotLoad, _) => "a snapshot was loaded".to_owned(),
            (C::None, _) => "shut down (no cause given)".to_owned(),
        };
        let resets = matches!(
            ev.cause,
            C::GuestReset | C::HostQmpSystemReset | C::SubsystemReset
        );
        match (resets, ev.reset) {
            (true, true) => format!("{what}; QEMU reset the machine"),
            (true, false) if !self.resettable => format!(
                "{what}; its vCPUs cannot be reset (protected state, as under KVM), \
                 so QEMU ended the VM"
            ),
            (true, false) => format!("{what}; QEMU ended the run (-no-reboot)"),
            (false, _) => what,
        }
    }
}

/// `#GP (vector 13)` and the like.
pub fn vector_name(vector: u8) -> String {
    let name = match vector {
        0 => "#DE",
        1 => "#DB",
        2 => "NMI",
        3 => "#BP",
        4 => "#OF",
        5 => "#BR",
        6 => "#UD",
        7 => "#NM",
        8 => "#DF",
        10 => "#TS",
        11 => "#NP",
        12 => "#SS",
        13 => "#GP",
        14 => "#PF",
        16 => "#MF",
        17 => "#AC",
        18 => "#MC",
        19 => "#XM",
        20 => "#VE",
        21 => "#CP",
        28 => "#HV",
        29 => "#VC",
        30 => "#SX",
        _ => return format!("vector {vector}"),
    };
    format!("{name} (vector {vector})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shutdown(cause: ShutdownCause, reset: bool) -> Shutdown {
        Shutdown {
            cause,
            reset,
            triple_fault: None,
            exit_code: 0,
        }
    }

    const TF: TripleFault = TripleFault {
        vcpu: 1,
        rip: 0x10_2345,
        vector: 14,
    };

    #[test]
    fn causes_follow_qemus_numbering() {
        assert_eq!(ShutdownCause::from_raw(0), ShutdownCause::None);
        assert_eq!(ShutdownCause::from_raw(6), ShutdownCause::GuestShutdown);
        assert_eq!(ShutdownCause::from_raw(7), ShutdownCause::GuestReset);
        assert_eq!(ShutdownCause::from_raw(10), ShutdownCause::SnapshotLoad);
        assert_eq!(ShutdownCause::from_raw(11), ShutdownCause::None);
    }

    #[test]
    fn no_shutdown_request_is_said_plainly() {
        let l = Lifecycle::new(true);
        assert!(l.describe().starts_with("QEMU exited while the guest ran"));
        assert!(!l.is_dead());
    }

    #[test]
    fn a_power_off_is_clean() {
        let l = Lifecycle::new(true);
        l.shutdown(shutdown(ShutdownCause::GuestShutdown, false));
        assert_eq!(l.describe(), "the guest powered off");
        // isa-debug-exit: a power-off that chose QEMU's exit status.
        let l = Lifecycle::new(true);
        l.shutdown(Shutdown {
            exit_code: 3,
            ..shutdown(ShutdownCause::GuestShutdown, false)
        });
        assert_eq!(
            l.describe(),
            "the guest asked QEMU to exit with status 3 (isa-debug-exit)"
        );
    }

    #[test]
    fn a_triple_fault_names_vcpu_rip_and_vector() {
        let l = Lifecycle::new(true);
        l.shutdown(Shutdown {
            triple_fault: Some(TF),
            ..shutdown(ShutdownCause::GuestReset, false)
        });
        assert_eq!(
            l.describe(),
            "triple fault on vCPU 1 at RIP 0x102345: #PF (vector 14) could not be delivered; \
             QEMU ended the run (-no-reboot)"
        );
        // In a TD, the same ends the VM because it cannot be reset.
        let td = Lifecycle::new(false);
        td.shutdown(Shutdown {
            triple_fault: Some(TF),
            ..shutdown(ShutdownCause::GuestReset, false)
        });
        assert!(td
            .describe()
            .ends_with("cannot be reset (protected state, as under KVM), so QEMU ended the VM"));
    }

    #[test]
    fn resets_the_guest_survives_are_counted_after_the_end() {
        let l = Lifecycle::new(true);
        l.shutdown(Shutdown {
            triple_fault: Some(TF),
            ..shutdown(ShutdownCause::GuestReset, true)
        });
        l.shutdown(shutdown(ShutdownCause::GuestShutdown, false));
        let d = l.describe();
        assert!(
            d.starts_with("the guest powered off (after a reset: triple fault on vCPU 1"),
            "{d}"
        );
        assert!(d.ends_with("QEMU reset the machine)"), "{d}");
        l.shutdown(shutdown(ShutdownCause::GuestReset, true));
        assert!(l
            .describe()
            .contains("(after 2 resets, the last: the guest requested a reset"));
    }

    #[test]
    fn a_panic_or_stop_explains_the_shutdown_that_follows() {
        let l = Lifecycle::new(false);
        l.guest_panic("TDG.VP.VMCALL<ReportFatalError> 0x1: \"oops\"".into());
        l.shutdown(shutdown(ShutdownCause::GuestPanic, false));
        assert!(l.is_dead());
        assert_eq!(
            l.describe(),
            "guest panic: TDG.VP.VMCALL<ReportFatalError> 0x1: \"oops\""
        );
        let l = Lifecycle::new(false);
        l.stopped("read of GPA 0xb8000 through the private alias".into());
        l.stopped("a second reason".into());
        l.shutdown(shutdown(ShutdownCause::HostError, false));
        assert_eq!(
            l.describe(),
            "VM stopped by the modelled KVM: read of GPA 0xb8000 through the private alias"
        );
    }

    #[test]
    fn a_signal_or_quit_ends_early_the_guests_own_end_does_not() {
        let early = |cause| {
            let l = Lifecycle::new(true);
            l.shutdown(shutdown(cause, false));
            l.ended_early()
        };
        assert!(early(ShutdownCause::HostSignal));
        assert!(early(ShutdownCause::HostQmpQuit));
        assert!(!early(ShutdownCause::GuestShutdown));
        assert!(!early(ShutdownCause::GuestPanic));
        assert!(
            Lifecycle::new(true).ended_early(),
            "exit() with no shutdown"
        );
        let l = Lifecycle::new(false);
        l.internal_error("stage2: boom".into());
        l.shutdown(shutdown(ShutdownCause::HostError, false));
        assert!(l.is_dead() && !l.ended_early());
        assert_eq!(l.describe(), "cvmem internal error in stage2: boom");
    }

    #[test]
    fn vector_names() {
        assert_eq!(vector_name(13), "#GP (vector 13)");
        assert_eq!(vector_name(29), "#VC (vector 29)");
        assert_eq!(vector_name(9), "vector 9");
    }
}
