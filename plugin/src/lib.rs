//! libcvmem.so: a QEMU TCG plugin that gives a guest the memory semantics of a
//! confidential VM (Intel TDX, AMD SEV-SNP), with the hypervisor side modelled
//! the way KVM does it.
//!
//! Everything that decides lives in the `cvmem-model` crate. This crate is the
//! thin layer between QEMU and the model:
//!
//! - `args` parses the `-plugin libcvmem.so,key=value,...` arguments;
//! - `plugin` holds the running plugin's configuration and counters;
//! - `hooks` is the safe view of the cvm API's hook types;
//! - `kvm` is the modelled KVM: the VMM core and the VM type's flavour; it
//!   makes memslots of QEMU's RAM sections, answers stage-2 requests and
//!   hands instructions to the flavour;
//! - `vmm` is the VMM core every flavour shares: generic stage-2 fault
//!   handling, implicit conversions, KVM's hypercalls, backing addresses
//!   (`Vmm::qemu_addr`, the one crossing from a GPA to a QEMU address);
//! - `flavour` is the `Flavour` trait (what a VM type adds: its
//!   instructions, stage-2 lookup and launch, the faults it shows the
//!   guest, its counters) and `Ctx`, an instruction handler's context;
//!   `flavour::plain` is default and sw-protected; `flavours` maps
//!   vm-type to a flavour and dispatches by `match`;
//! - `effects` is what QEMU must do after a callback (flushes, discarded
//!   memory);
//! - `commands` is the control socket's command table (cvmem-ctl's
//!   usage; the plugin only tests it);
//! - `memslots` is what QEMU's memory listener reports; `learn` is audit
//!   mode's stand-in for it: guest RAM learned from the guest's accesses;
//! - `lifecycle` records how the run ends (shutdowns, resets, triple
//!   faults, the guest's fatal errors, the VM stopped) for the summary;
//! - `machine` refuses CPU models a VM type cannot run on, before the
//!   guest runs;
//! - `tdx` is the TDX module's TDCALL interface and KVM's TDVMCALL
//!   handling, one file per concept;
//! - `snp` is the SEV-SNP hardware, firmware and KVM's GHCB handling, one
//!   file per concept;
//! - `paging` walks the guest's page tables for instructions whose operand
//!   is a linear address;
//! - `flushcheck` is `flush-check=on`, the missing-flush detector;
//! - `testdev` is a test device through which guest tests drive the hooks;
//! - `trace` writes `trace=PATH`, the JSON-lines event trace, from a
//!   thread of its own;
//! - `control` serves `control=PATH`, the host side's JSON socket;
//! - `summary` renders the one-screen report printed when QEMU exits;
//! - `guard` keeps panics from crossing into QEMU;
//! - `ffi` (not built for unit tests) is the only module with `unsafe`: the
//!   exported `qemu_plugin_install`, the callbacks QEMU calls, and the
//!   bindings to the cvm API that the patch series adds to QEMU;
//! - `fuzz` (feature `fuzzing` and unit tests only) is the fuzzing seam:
//!   harnesses that feed untrusted input to the modules above and check
//!   invariants after every input (docs/fuzzing.md).
//!
//! Every module is private: the crate is a cdylib whose only interface is
//! the C ABI in `ffi`, and private modules let rustc report dead code. The
//! rlib beside it exists for the fuzz targets, which see only `fuzz`.

// The unit-test and fuzzing builds have no `ffi`, the caller of the
// QEMU-facing API (Plugin::stage2, dma_allowed, ...): dead code is judged
// on the real build, which `cargo build` and clippy check without this
// allowance.
#![cfg_attr(any(test, feature = "fuzzing"), allow(dead_code))]

mod args;
// The table is cvmem-ctl's; the plugin only tests it against control.rs.
#[cfg(test)]
mod commands;
mod control;
mod effects;
mod flavour;
mod flavours;
mod flushcheck;
mod guard;
mod hooks;
mod kvm;
mod learn;
mod lifecycle;
mod machine;
mod memslots;
mod paging;
mod plugin;
mod snp;
mod summary;
mod tdx;
mod testdev;
mod trace;
mod vmm;

// The FFI layer references symbols that only QEMU provides; unit tests and
// fuzz targets link without QEMU, so they exercise the pure modules above
// instead.
#[cfg(not(any(test, feature = "fuzzing")))]
mod ffi;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
