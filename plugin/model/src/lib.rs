//! cvmem-model: everything in cvmem that decides.
//!
//! The model is pure Rust with no QEMU and no unsafe code, so that it can be
//! tested, fuzzed and benchmarked without an emulator. The plugin (the cdylib
//! in `plugin/src`) turns guest events into calls on this crate and obeys its
//! answers.
#![forbid(unsafe_code)]

pub mod vm;

pub use vm::VmType;
