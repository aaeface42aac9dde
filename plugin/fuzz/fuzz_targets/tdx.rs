//! The `tdx` target: see `cvmem::fuzz::tdx`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cvmem::fuzz::tdx::run(data));
