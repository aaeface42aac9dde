//! cvmem-snp-verify: checks, on the host, an SNP attestation report a
//! guest fetched through configfs-tsm, as a guest owner's verifier would.
//!
//! ```text
//! cvmem-snp-verify LOG [--ark ARK.der | --any-ark] [--measurement HEX]
//! ```
//!
//! LOG holds the lines guest-tests/linux/init prints (`od -An -tx1`
//! output, prefixed): `SNP-INBLOB:` the 64 bytes written to inblob,
//! `SNP-OUTBLOB:` the report read from outblob, `SNP-AUXBLOB:` the
//! certificate table read from auxblob. The check: the chain ARK -> ASK ->
//! VCEK verifies, the VCEK signs the report, REPORT_DATA is the inblob, and
//! the table's ARK is the trusted one: by default this installation's
//! (`$CVMEM_CACHE/snp-keys/ark.der`, which the plugin made); with
//! `--measurement`, MEASUREMENT is HEX (what `cvmem measure` computes for
//! the firmware the guest started from). Exit status 0
//! when all hold, 1 when one does not, 2 on bad usage or input.

use std::path::PathBuf;
use std::process::ExitCode;

// The plugin's verifier (cert_table is the plugin's side of it).
#[path = "../src/snp/attest/verify.rs"]
#[allow(dead_code)]
mod verify;

/// The bytes of the hex lines of `log` that start with `tag`.
fn blob(log: &str, tag: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut seen = false;
    for line in log.lines() {
        let Some(at) = line.find(tag) else { continue };
        seen = true;
        for word in line[at + tag.len()..].split_whitespace() {
            let b = u8::from_str_radix(word, 16)
                .map_err(|_| format!("{tag} line with '{word}', not a hex byte"))?;
            out.push(b);
        }
    }
    if !seen {
        return Err(format!("no {tag} lines in the log"));
    }
    Ok(out)
}

fn installation_ark() -> Result<PathBuf, String> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let cache = env("CVMEM_CACHE")
        .or_else(|| {
            env("XDG_CACHE_HOME")
                .or_else(|| env("HOME").map(|h| h.join(".cache")))
                .map(|c| c.join("cvmem"))
        })
        .ok_or("no CVMEM_CACHE, XDG_CACHE_HOME or HOME: give --ark or --any-ark")?;
    Ok(cache.join("snp-keys").join("ark.der"))
}

fn run(args: &[String]) -> Result<bool, String> {
    let usage = "usage: cvmem-snp-verify LOG [--ark ARK.der | --any-ark] [--measurement HEX]";
    let Some((log, mut rest)) = args.split_first() else {
        return Err(usage.into());
    };
    let (mut ark, mut any_ark, mut want) = (None, false, None);
    while let Some((flag, more)) = rest.split_first() {
        rest = more;
        let mut value = || match rest.split_first() {
            Some((v, more)) => {
                rest = more;
                Ok(v.clone())
            }
            None => Err(format!("{flag} needs a value; {usage}")),
        };
        match flag.as_str() {
            "--ark" if ark.is_none() => ark = Some(PathBuf::from(value()?)),
            "--any-ark" => any_ark = true,
            "--measurement" if want.is_none() => want = Some(value()?.to_ascii_lowercase()),
            _ => return Err(usage.into()),
        }
    }
    let ark = match (ark, any_ark) {
        (Some(_), true) => return Err(usage.into()),
        (None, true) => None,
        (Some(p), false) => Some(p),
        (None, false) => Some(installation_ark()?),
    };
    let text = std::fs::read(log).map_err(|e| format!("{log}: {e}"))?;
    let text = String::from_utf8_lossy(&text).replace('\r', "");
    let data = blob(&text, "SNP-INBLOB:")?;
    let report = blob(&text, "SNP-OUTBLOB:")?;
    let table = blob(&text, "SNP-AUXBLOB:")?;
    let ark = match ark {
        Some(p) => Some(std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?),
        None => None,
    };
    match verify::verify_report(&report, &table, ark.as_deref(), Some(&data)) {
        Ok(r) => {
            let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
            if let Some(w) = want.filter(|w| *w != hex(&r.measurement)) {
                println!(
                    "cvmem-snp-verify: FAILED: MEASUREMENT {}, not the expected {w}",
                    hex(&r.measurement)
                );
                return Ok(false);
            }
            println!(
                "cvmem-snp-verify: report version {} verifies: chain ARK -> ASK -> VCEK, \
                 VCEK signature, REPORT_DATA echoed; VMPL {}, MEASUREMENT {}",
                r.version,
                r.vmpl,
                hex(&r.measurement)
            );
            Ok(true)
        }
        Err(e) => {
            println!("cvmem-snp-verify: FAILED: {e}");
            Ok(false)
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("cvmem-snp-verify: {e}");
            ExitCode::from(2)
        }
    }
}
