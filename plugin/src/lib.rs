//! libcvmem.so: a QEMU TCG plugin that gives a guest the memory semantics of a
//! confidential VM (Intel TDX, AMD SEV-SNP), with the hypervisor side modelled
//! the way KVM does it.
//!
//! Everything that decides lives in the `cvmem-model` crate. This crate is the
//! thin layer between QEMU and the model:
//!
//! - [`args`] parses the `-plugin libcvmem.so,key=value,...` arguments;
//! - [`plugin`] holds the running plugin's configuration and counters;
//! - [`hooks`] is the safe view of the cvm API's hook types;
//! - [`kvm`] is the modelled KVM: it owns the model's VM, makes memslots of
//!   QEMU's RAM sections, answers stage-2 requests and handles exits;
//! - [`memslots`] is what QEMU's memory listener reports;
//! - [`learn`] is audit mode's stand-in for it: guest RAM learned from the
//!   guest's accesses;
//! - [`lifecycle`] records how the run ends (shutdowns, resets, triple
//!   faults, the guest's fatal errors, the VM stopped) for the summary;
//! - [`machine`] refuses CPU models a VM type cannot run on, before the
//!   guest runs;
//! - [`tdx`] is the TDX module's TDCALL interface and KVM's TDVMCALL handling;
//! - [`testdev`] is a test device through which guest tests drive the hooks;
//! - [`trace`] writes `trace=PATH`, the JSON-lines event trace, from a
//!   thread of its own;
//! - [`control`] serves `control=PATH`, the host side's JSON socket;
//! - [`summary`] renders the one-screen report printed when QEMU exits;
//! - [`guard`] keeps panics from crossing into QEMU;
//! - `ffi` (not built for unit tests) is the only module with `unsafe`: the
//!   exported `qemu_plugin_install`, the callbacks QEMU calls, and the
//!   bindings to the cvm API that the patch series adds to QEMU.

pub mod args;
pub mod control;
pub mod flushcheck;
pub mod guard;
pub mod hooks;
pub mod kvm;
pub mod learn;
pub mod lifecycle;
pub mod machine;
pub mod memslots;
pub mod paging;
pub mod plugin;
pub mod snp;
pub mod summary;
pub mod tdx;
pub mod testdev;
pub mod trace;

// The FFI layer references symbols that only QEMU provides; unit tests link
// without QEMU, so they exercise the pure modules above instead.
#[cfg(not(test))]
mod ffi;
