//! SNP attestation: what the AMD-SP (the SNP firmware) answers to a guest's
//! encrypted messages, and the key hierarchy that signs its reports.
//!
//! - [`message`]: the guest message protocol of SNP_GUEST_REQUEST (SEV-SNP
//!   firmware ABI, chapter "Guest Messages": the message header,
//!   AES-256-GCM with the VMPCK named in the header, the sequence number the
//!   firmware keeps per VMPCK);
//! - [`report`]: MSG_REPORT_REQ / MSG_REPORT_RSP and the ATTESTATION_REPORT
//!   structure (version 2), signed with the VCEK;
//! - the launch digest, MEASUREMENT in the report, is the model's
//!   [`cvmem_model::snp_launch`];
//! - [`keys`]: the ARK, ASK and VCEK of this installation and their
//!   certificates, kept under `$CVMEM_CACHE/snp-keys/`;
//! - [`verify`]: what a guest owner's verifier does with a report and the
//!   certificate table (the `sev` crate's chain and report verification),
//!   shared with `cvmem-snp-verify`.
//!
//! KVM's side (the NAE events 0x80000011/0x80000012, the certificate
//! buffer, SW_EXITINFO2) is in [`super::guest_request`].

pub mod keys;
pub mod message;
pub mod report;
// The plugin itself only writes what a verifier reads: it verifies in tests.
#[cfg_attr(not(test), allow(dead_code))]
pub mod verify;
