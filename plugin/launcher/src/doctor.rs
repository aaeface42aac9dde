//! `cvmem doctor`: checks the setup and says what is missing, one line
//! each.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use crate::cmdline::FIRMWARE_DIRS;
use crate::locate;

/// The cvm API version qemu-patches/include/qemu-plugin-cvm.h declares
/// (what the plugin is built against).
pub fn header_api_version(header: &str) -> Option<u32> {
    header.lines().find_map(|l| {
        let rest = l
            .trim()
            .strip_prefix("#define QEMU_PLUGIN_CVM_API_VERSION")?;
        rest.trim().parse().ok()
    })
}

/// The version in the plugin's install line: `cvmem: vm-type=default
/// mode=enforcing (cvm plugin API v7)`.
pub fn banner_api_version(stderr: &str) -> Option<u32> {
    stderr.lines().find_map(|l| {
        let rest = l.split("mode=enforcing (cvm plugin API v").nth(1)?;
        rest.split(')').next()?.parse().ok()
    })
}

/// Whether one of the directories holds a file named `name`.
fn firmware_file(name: &str) -> Option<PathBuf> {
    FIRMWARE_DIRS
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// libclang, which bindgen loads to build the plugin.
fn libclang() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("LIBCLANG_PATH") {
        dirs.push(p.into());
    }
    dirs.push("/usr/lib/x86_64-linux-gnu".into());
    dirs.push("/usr/lib64".into());
    dirs.push("/usr/lib".into());
    if let Ok(rd) = std::fs::read_dir("/usr/lib") {
        dirs.extend(
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("llvm-"))
                })
                .map(|p| p.join("lib")),
        );
    }
    dirs.iter().find_map(|d| {
        std::fs::read_dir(d)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name().is_some_and(|n| {
                    n.to_string_lossy().starts_with("libclang")
                        && n.to_string_lossy().contains(".so")
                })
            })
    })
}

fn on_path(prog: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {prog}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Loads the plugin into QEMU with no machine and quits at once through
/// the monitor: the plugin's install line says which API version QEMU has.
fn plugin_banner(qemu: &Path, plugin: &Path) -> std::io::Result<String> {
    let mut child = Command::new(qemu)
        .args([
            "-machine",
            "none",
            "-display",
            "none",
            "-nodefaults",
            "-monitor",
            "stdio",
            "-plugin",
        ])
        .arg(format!("{},vm-type=default", plugin.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        // QEMU may have refused the plugin and gone already.
        let _ = stdin.write_all(b"quit\n");
    }
    let out = child.wait_with_output()?;
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Runs the checks, printing `ok` or `missing` lines; exit 1 if anything
/// is missing.
pub fn doctor() -> ExitCode {
    let mut missing = 0;
    let ok = |what: String| println!("ok       {what}");
    let mut report = |problem: String| {
        println!("missing  {problem}");
        missing += 1;
    };

    for (name, why) in [
        ("bios-256k.bin", "SeaBIOS (apt-get install seabios)"),
        (
            "linuxboot_dma.bin",
            "QEMU's linuxboot ROM for -kernel (apt-get install qemu-system-data)",
        ),
        (
            "multiboot_dma.bin",
            "QEMU's Multiboot ROM for efiboot and test images (apt-get install qemu-system-data)",
        ),
    ] {
        match firmware_file(name) {
            Some(p) => ok(format!("{name}: {}", p.display())),
            None => report(format!("{name} in {}: {why}", FIRMWARE_DIRS.join(" "))),
        }
    }
    // Where QEMU, the plugin and efiboot come from: an installation
    // (scripts/install) needs no build tools; the checkout builds them.
    let installed = locate::prefix().filter(|p| {
        [
            locate::INSTALLED_QEMU,
            locate::INSTALLED_PLUGIN,
            locate::INSTALLED_HEADER,
        ]
        .iter()
        .map(|r| p.join(r))
        .chain(["efiboot.fd", "efiboot.elf"].map(|f| p.join(locate::INSTALLED_SHARE).join(f)))
        .all(|f| f.is_file())
    });
    match &installed {
        Some(p) => ok(format!(
            "installed in {}: QEMU, the plugin and efiboot come from there",
            p.display()
        )),
        None => {
            match locate::prefix() {
                Some(p) => report(format!(
                    "an incomplete installation in {}: run scripts/install {} again",
                    p.display(),
                    p.display()
                )),
                None => ok(format!(
                    "from the checkout {}: it builds QEMU, the plugin and efiboot",
                    locate::tree().display()
                )),
            }
            match libclang() {
                Some(p) => ok(format!("libclang for bindgen: {}", p.display())),
                None => report(
                    "libclang for bindgen, to build the plugin (apt-get install libclang-dev)"
                        .into(),
                ),
            }
            for prog in ["gcc", "make"] {
                if on_path(prog) {
                    ok(prog.to_string());
                } else {
                    report(format!("{prog}: to build efiboot and the guest tests"));
                }
            }
        }
    }
    if on_path("nm") {
        ok("nm".into());
    } else {
        report("nm: to check QEMU's exports (binutils)".into());
    }
    if let Some(p) = &installed {
        for f in ["efiboot.fd", "efiboot.elf"] {
            ok(format!(
                "{f}: {}",
                p.join(locate::INSTALLED_SHARE).join(f).display()
            ));
        }
    }

    let header = locate::api_header();
    let want = std::fs::read_to_string(&header)
        .ok()
        .and_then(|h| header_api_version(&h));
    match want {
        Some(v) => ok(format!("cvm plugin API v{v} ({})", header.display())),
        None => report(format!(
            "QEMU_PLUGIN_CVM_API_VERSION in {}",
            header.display()
        )),
    }

    let qemu = match locate::qemu() {
        Ok(q) => {
            ok(format!("QEMU: {}", q.display()));
            Some(q)
        }
        Err(e) => {
            report(format!("the patched QEMU: {e:#} (scripts/build-qemu)"));
            None
        }
    };
    if let Some(q) = &qemu {
        let nm = Command::new("nm")
            .arg("-D")
            .arg(q)
            .stderr(Stdio::null())
            .output();
        let exports = nm
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.ends_with(" T qemu_plugin_cvm_api_version"))
            })
            .unwrap_or(false);
        if exports {
            ok("QEMU exports qemu_plugin_cvm_api_version (the patch series is in)".into());
        } else {
            report(format!(
                "qemu_plugin_cvm_api_version in {}: not the patched QEMU (scripts/build-qemu)",
                q.display()
            ));
        }
    }
    let plugin = match locate::plugin() {
        Ok(p) => {
            ok(format!("plugin: {}", p.display()));
            Some(p)
        }
        Err(e) => {
            report(format!("libcvmem.so: {e:#}"));
            None
        }
    };
    if let (Some(q), Some(p)) = (&qemu, &plugin) {
        match plugin_banner(q, p) {
            Ok(stderr) => match (banner_api_version(&stderr), want) {
                (Some(got), Some(want)) if got == want => ok(format!(
                    "the plugin runs in QEMU in enforcing mode, cvm plugin API v{got}"
                )),
                (Some(got), Some(want)) => report(format!(
                    "QEMU and the plugin agree on v{got}, but {} says v{want}: \
                     rebuild both (scripts/build-qemu, cargo build --release)",
                    header.display()
                )),
                (Some(got), None) => ok(format!("the plugin runs in QEMU, cvm plugin API v{got}")),
                (None, _) => {
                    let why = stderr
                        .lines()
                        .find(|l| l.starts_with("cvmem: ") || l.contains("plugin"))
                        .unwrap_or("no install line");
                    report(format!("the plugin in enforcing mode in this QEMU: {why}"));
                }
            },
            Err(e) => report(format!("running {}: {e}", q.display())),
        }
    }

    if missing == 0 {
        println!("everything cvmem run needs is there");
        ExitCode::SUCCESS
    } else {
        println!("{missing} missing");
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        let h = "/* x */\n#define QEMU_PLUGIN_CVM_API_VERSION 7\nuint32_t f(void);\n";
        assert_eq!(header_api_version(h), Some(7));
        assert_eq!(header_api_version("#define OTHER 7"), None);
        let real = std::fs::read_to_string(locate::api_header()).unwrap();
        assert!(header_api_version(&real).is_some());
        assert_eq!(
            banner_api_version("x\ncvmem: vm-type=default mode=enforcing (cvm plugin API v12)\n"),
            Some(12)
        );
        assert_eq!(
            banner_api_version(
                "cvmem: vm-type=default mode=audit: this QEMU has no cvm plugin API"
            ),
            None
        );
    }
}
