//! The `snp` target: see `cvmem::fuzz::snp`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cvmem::fuzz::snp::run(data));
