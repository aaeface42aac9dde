//! What a guest owner's verifier does with an SNP attestation report and
//! the certificate table of an extended guest request: the chain ARK ->
//! ASK -> VCEK and the report's signature, checked with the `sev` crate
//! (virtee; `crypto_nossl`), the verifier snpguest uses.
//!
//! Self-contained (std and `sev` only): `cvmem-snp-verify`
//! (plugin/ctl/snp_verify.rs) includes this file, the plugin's tests use it.

use sev::certs::snp::{ca, Certificate, Chain, Verifiable};
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;

/// The GUIDs of the certificate table (GHCB specification, "SNP Extended
/// Guest Request"; Linux `include/linux/psp-sev.h` comments, the `sev`
/// crate's `CertType`), in the table's byte order (RFC 4122, as
/// `uuid::Uuid::as_bytes()`).
pub mod guid {
    /// c0b406a4-a803-4952-9743-3fb6014cd0ae: the AMD Root Key.
    pub const ARK: [u8; 16] = [
        0xc0, 0xb4, 0x06, 0xa4, 0xa8, 0x03, 0x49, 0x52, 0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c, 0xd0,
        0xae,
    ];
    /// 4ab7b379-bbac-4fe4-a02f-05aef327c782: the AMD SEV Signing Key.
    pub const ASK: [u8; 16] = [
        0x4a, 0xb7, 0xb3, 0x79, 0xbb, 0xac, 0x4f, 0xe4, 0xa0, 0x2f, 0x05, 0xae, 0xf3, 0x27, 0xc7,
        0x82,
    ];
    /// 63da758d-e664-4564-adc5-f4b93be8accd: the VCEK.
    pub const VCEK: [u8; 16] = [
        0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac,
        0xcd,
    ];
}

/// A certificate of a table: its GUID and DER.
pub type Entry = ([u8; 16], Vec<u8>);

/// A certificate table entry: GUID (16 bytes), offset and length (u32 LE
/// each) of the certificate from the start of the table.
const ENTRY_LEN: usize = 24;

/// The certificate table for `certs` (GUID, DER): the entries, an all-zero
/// entry that ends the table, then the certificates.
pub fn cert_table(certs: &[([u8; 16], &[u8])]) -> Vec<u8> {
    let mut table = Vec::new();
    let mut data = Vec::new();
    let mut offset = ENTRY_LEN * (certs.len() + 1);
    for (g, der) in certs {
        table.extend_from_slice(g);
        table.extend_from_slice(&(offset as u32).to_le_bytes());
        table.extend_from_slice(&(der.len() as u32).to_le_bytes());
        data.extend_from_slice(der);
        offset += der.len();
    }
    table.extend_from_slice(&[0u8; ENTRY_LEN]);
    table.extend_from_slice(&data);
    table
}

/// The entries of a certificate table, up to the all-zero one; an entry
/// reaching past `table` is an error.
pub fn parse_cert_table(table: &[u8]) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    for at in (0..).step_by(ENTRY_LEN) {
        let e = table
            .get(at..at + ENTRY_LEN)
            .ok_or("the certificate table has no terminating entry")?;
        if e.iter().all(|&b| b == 0) {
            return Ok(out);
        }
        let mut g = [0u8; 16];
        g.copy_from_slice(&e[..16]);
        let word = |i: usize| u32::from_le_bytes([e[i], e[i + 1], e[i + 2], e[i + 3]]) as usize;
        let (offset, len) = (word(16), word(20));
        let der = table
            .get(offset..offset.saturating_add(len))
            .ok_or_else(|| format!("certificate {} reaches past the table", out.len()))?;
        out.push((g, der.to_vec()));
    }
    unreachable!("the loop returns")
}

/// The chain in a certificate table: ARK, ASK and VCEK by GUID.
pub fn chain_of(table: &[u8]) -> Result<Chain, String> {
    let entries = parse_cert_table(table)?;
    let find = |g: [u8; 16], what: &str| -> Result<Certificate, String> {
        let der = entries
            .iter()
            .find(|(eg, _)| *eg == g)
            .map(|(_, d)| d)
            .ok_or_else(|| format!("no {what} certificate in the table"))?;
        Certificate::from_der(der).map_err(|e| format!("the {what} certificate: {e}"))
    };
    Ok(Chain {
        ca: ca::Chain {
            ark: find(guid::ARK, "ARK")?,
            ask: find(guid::ASK, "ASK")?,
        },
        vek: find(guid::VCEK, "VCEK")?,
    })
}

/// Verifies `report` (the raw ATTESTATION_REPORT) against the chain in
/// `table`: the ARK is self-signed and signs the ASK, the ASK signs the
/// VCEK (RSA-PSS, SHA-384), the VCEK signs the report (ECDSA P-384,
/// SHA-384); with `ark`, the table's ARK must be that certificate (the
/// verifier's trust anchor); with `report_data`, REPORT_DATA must be it.
/// Returns the parsed report.
pub fn verify_report(
    report: &[u8],
    table: &[u8],
    ark: Option<&[u8]>,
    report_data: Option<&[u8]>,
) -> Result<AttestationReport, String> {
    let chain = chain_of(table)?;
    if let Some(ark) = ark {
        let have = chain.ca.ark.to_der().map_err(|e| e.to_string())?;
        if have != ark {
            return Err("the table's ARK is not the trusted one".into());
        }
    }
    (&chain)
        .verify()
        .map_err(|e| format!("the certificate chain does not verify: {e}"))?;
    let parsed = AttestationReport::from_bytes(report)
        .map_err(|e| format!("the report does not parse: {e}"))?;
    (&chain, &parsed)
        .verify()
        .map_err(|e| format!("the report's signature does not verify: {e}"))?;
    if parsed.sig_algo != 1 {
        return Err(format!(
            "SIGNATURE_ALGO is {}, not 1 (ECDSA P-384 with SHA-384)",
            parsed.sig_algo
        ));
    }
    if let Some(want) = report_data {
        if parsed.report_data[..] != *want {
            return Err("REPORT_DATA is not the data the guest asked for".into());
        }
    }
    Ok(parsed)
}
