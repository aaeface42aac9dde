//! The `args` target: see `cvmem::fuzz::args`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cvmem::fuzz::args::run(data));
