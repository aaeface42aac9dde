//! The `control` target: see `cvmem::fuzz::control`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cvmem::fuzz::control::run(data));
