//! Generates Rust bindings for the cvm plugin-API header that the patch series
//! adds to QEMU (qemu-patches/include/qemu-plugin-cvm.h).
//!
//! The bindings are of bindgen's dynamic-loading kind: a struct of function
//! pointers filled by dlsym at install time, so the plugin has no link-time
//! dependency on the patched QEMU and also loads in a stock one.

use std::env;
use std::path::PathBuf;

fn main() {
    let header = "qemu-patches/include/qemu-plugin-cvm.h";
    println!("cargo:rerun-if-changed={header}");
    println!("cargo:rerun-if-changed=build.rs");

    let bindings = bindgen::Builder::default()
        .header(header)
        .allowlist_function("qemu_plugin_cvm_.*")
        .allowlist_var("QEMU_PLUGIN_CVM_.*")
        .allowlist_type("qemu_plugin_cvm_.*")
        .dynamic_library_name("CvmApi")
        // Each function is an Option-like Result: the plugin decides what a
        // missing symbol means (no symbol at all: an unpatched QEMU).
        .dynamic_link_require_all(false)
        .layout_tests(false)
        .generate()
        .unwrap_or_else(|e| {
            panic!("bindgen failed on {header}: {e} (is libclang-dev installed? run scripts/setup)")
        });

    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindings
        .write_to_file(out.join("cvm_bindings.rs"))
        .expect("cannot write cvm_bindings.rs");
}
