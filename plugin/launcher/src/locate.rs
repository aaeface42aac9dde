//! Finding (and building when missing) what a run needs: the patched QEMU,
//! libcvmem.so and the guest images (efiboot.elf), in an installation
//! (scripts/install) first, then in the checkout this binary was built from.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// The top of the cvmem checkout this binary was built from.
pub fn tree() -> PathBuf {
    // plugin/launcher -> the top.
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    top.canonicalize().unwrap_or(top)
}

/// What scripts/install puts under PREFIX, relative to it, besides
/// bin/cvmem: the launcher finds its files there from its own path.
pub const INSTALLED_QEMU: &str = "libexec/cvmem/qemu-system-x86_64";
pub const INSTALLED_PLUGIN: &str = "lib/cvmem/libcvmem.so";
pub const INSTALLED_SHARE: &str = "share/cvmem";
pub const INSTALLED_HEADER: &str = "share/cvmem/qemu-plugin-cvm.h";

/// The PREFIX of an installation that holds `exe`: PREFIX/bin/cvmem with a
/// PREFIX/share/cvmem directory beside it.
pub fn prefix_of(exe: &Path) -> Option<PathBuf> {
    let bin = exe.parent()?;
    if bin.file_name()? != "bin" {
        return None;
    }
    let prefix = bin.parent()?;
    prefix
        .join(INSTALLED_SHARE)
        .is_dir()
        .then(|| prefix.to_path_buf())
}

/// The installation this binary runs from, if any (/proc/self/exe: a
/// symbolic link to PREFIX/bin/cvmem counts as the file it names).
pub fn prefix() -> Option<PathBuf> {
    prefix_of(&std::env::current_exe().ok()?)
}

/// PREFIX/`rel` of this binary's installation, if that file is there.
fn installed(rel: &str) -> Option<PathBuf> {
    prefix().map(|p| p.join(rel)).filter(|p| p.is_file())
}

/// The cvm plugin API header QEMU and the plugin were built against: the
/// installation's copy, else the checkout's.
pub fn api_header() -> PathBuf {
    installed(INSTALLED_HEADER)
        .unwrap_or_else(|| tree().join("qemu-patches/include/qemu-plugin-cvm.h"))
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The patched qemu-system-x86_64: `$CVMEM_QEMU`, else the installation's
/// PREFIX/libexec/cvmem/qemu-system-x86_64, else the last line of the
/// checkout's `scripts/build-qemu` (which builds it the first time, cached
/// after).
pub fn qemu() -> Result<PathBuf> {
    let path = match env_path("CVMEM_QEMU").or_else(|| installed(INSTALLED_QEMU)) {
        Some(p) => p,
        None => {
            let script = tree().join("scripts/build-qemu");
            eprintln!(
                "cvmem: finding QEMU: {} (the first build takes minutes)",
                script.display()
            );
            let out = Command::new(&script)
                .stdin(Stdio::null())
                .stderr(Stdio::inherit())
                .output()
                .with_context(|| format!("cannot run {}", script.display()))?;
            if !out.status.success() {
                bail!("{} failed ({})", script.display(), out.status);
            }
            let stdout = String::from_utf8_lossy(&out.stdout);
            match stdout.lines().rev().find(|l| !l.trim().is_empty()) {
                Some(last) => PathBuf::from(last.trim()),
                None => bail!("{} printed no path", script.display()),
            }
        }
    };
    if !path.is_file() {
        bail!("no QEMU at {}", path.display());
    }
    Ok(path)
}

/// Where cargo puts release builds of this tree.
fn target_release() -> PathBuf {
    env_path("CARGO_TARGET_DIR")
        .unwrap_or_else(|| tree().join("target"))
        .join("release")
}

/// The places libcvmem.so may be, best first: the installation's
/// PREFIX/lib/cvmem, next to this binary (where cargo builds both), then
/// the tree's target directory.
fn plugin_candidates() -> Vec<PathBuf> {
    let mut c: Vec<PathBuf> = installed(INSTALLED_PLUGIN).into_iter().collect();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        c.push(dir.join("libcvmem.so"));
    }
    c.push(target_release().join("libcvmem.so"));
    c
}

/// libcvmem.so: `$CVMEM_PLUGIN`, else in the installation, next to this
/// binary or in the tree's target/release, built with `cargo build --release -p cvmem` if missing.
pub fn plugin() -> Result<PathBuf> {
    if let Some(p) = env_path("CVMEM_PLUGIN") {
        if !p.is_file() {
            bail!("no plugin at {} ($CVMEM_PLUGIN)", p.display());
        }
        return Ok(p);
    }
    if let Some(p) = plugin_candidates().into_iter().find(|p| p.is_file()) {
        return Ok(p);
    }
    eprintln!("cvmem: building the plugin: cargo build --release -p cvmem");
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--release", "-p", "cvmem"])
        .current_dir(tree())
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo build --release -p cvmem failed ({status})");
    }
    match plugin_candidates().into_iter().find(|p| p.is_file()) {
        Some(p) => Ok(p),
        None => bail!(
            "cargo built no libcvmem.so in {}",
            target_release().display()
        ),
    }
}

/// guest-tests/boot/efiboot.c's image: efiboot.fd, a TD's firmware, when
/// `firmware` (cmdline::efiboot_firmware), else the Multiboot efiboot.elf;
/// from the installation's PREFIX/share/cvmem unless `$CVMEM_GUEST_BUILD`
/// is set, else built (with the guest tests) into `$CVMEM_GUEST_BUILD` or
/// the checkout's target/guest-tests by `make -C guest-tests`.
pub fn efiboot(firmware: bool) -> Result<PathBuf> {
    let name = if firmware {
        "efiboot.fd"
    } else {
        "efiboot.elf"
    };
    if env_path("CVMEM_GUEST_BUILD").is_none() {
        if let Some(p) = installed(&format!("{INSTALLED_SHARE}/{name}")) {
            return Ok(p);
        }
    }
    let out = env_path("CVMEM_GUEST_BUILD").unwrap_or_else(|| tree().join("target/guest-tests"));
    let image = out.join(name);
    let status = Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(tree().join("guest-tests"))
        .arg(format!("O={}", out.display()))
        .arg(&image)
        .stdin(Stdio::null())
        // make's chatter is not the guest's console.
        .stdout(Stdio::from(std::io::stderr().as_fd().try_clone_to_owned()?))
        .status()
        .context("cannot run make")?;
    if !status.success() || !image.is_file() {
        bail!(
            "{} does not build (make -C guest-tests O={})",
            image.display(),
            out.display()
        );
    }
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_installation_is_found_from_the_binary() {
        let d = std::env::temp_dir().join(format!("cvmem-prefix-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("bin")).unwrap();
        // No share/cvmem: a bin directory is not an installation of cvmem.
        assert_eq!(prefix_of(&d.join("bin/cvmem")), None);
        std::fs::create_dir_all(d.join(INSTALLED_SHARE)).unwrap();
        assert_eq!(prefix_of(&d.join("bin/cvmem")), Some(d.clone()));
        // A binary elsewhere (target/release/cvmem) is not installed.
        std::fs::create_dir_all(d.join("release")).unwrap();
        assert_eq!(prefix_of(&d.join("release/cvmem")), None);
        std::fs::remove_dir_all(&d).unwrap();
        // This test's own binary is in target/*/deps.
        assert_eq!(prefix(), None);
    }
}
