//! MSG_REPORT_REQ, MSG_REPORT_RSP and the ATTESTATION_REPORT (SEV-SNP
//! firmware ABI, tables "MSG_REPORT_REQ Message Structure",
//! "MSG_REPORT_RSP Message Structure" and "ATTESTATION_REPORT Structure";
//! Linux `struct snp_report_req` in include/uapi/linux/sev-guest.h).
//!
//! The report is version 2 (ABI 1.51-1.54: no CPUID fields; version 3
//! adds the CPU's family, model and stepping, which a TCG CPU model has
//! no SNP-capable values for, and the `sev` crate refuses to parse a v3
//! report of an unknown family). Fields cvmem sets:
//!
//! | field | value |
//! |---|---|
//! | VERSION | 2 |
//! | GUEST_SVN, FAMILY_ID, IMAGE_ID, ID_KEY_DIGEST, AUTHOR_KEY_DIGEST | 0: no ID block at SNP_LAUNCH_FINISH |
//! | POLICY | [`POLICY`] = 0x30000: SMT allowed (bit 16), reserved bit 17 set, ABI 0.0 minimum, no debug, no migration agent, single socket not required |
//! | VMPL | the VMPL the request asked for |
//! | SIGNATURE_ALGO | 1: ECDSA P-384 with SHA-384 |
//! | CURRENT_TCB, REPORTED_TCB, COMMITTED_TCB, LAUNCH_TCB | 0 in every SPL (boot loader, TEE, SNP, microcode; Genoa layout): no AMD firmware version, so a verifier's minimum-TCB policy rejects it |
//! | PLATFORM_INFO | 0: SMT and TSME not reported enabled |
//! | KEY_INFO (0x48) | 0: signed with the VCEK, chip key not masked, no author key |
//! | REPORT_DATA | the request's 64 bytes |
//! | MEASUREMENT | the launch digest ([`super::measure`]) |
//! | HOST_DATA | 0 (none given at SNP_LAUNCH_FINISH) |
//! | REPORT_ID | random per guest (the firmware makes it at SNP_LAUNCH_START) |
//! | REPORT_ID_MA | all ones: no migration agent |
//! | CHIP_ID | [`super::keys::Keys::chip_id`] |
//! | CURRENT/COMMITTED version | 1.51, build 0 |
//! | SIGNATURE (0x2A0) | R and S, 72 bytes each, little endian, over bytes 0x000-0x29F |

use super::keys::Keys;
use super::message::status;
use p384::ecdsa::signature::Signer;

/// The guest policy reported (see the module comment).
pub const POLICY: u64 = 0x3_0000;
/// The report's size.
pub const REPORT_LEN: usize = 0x4a0;
/// MSG_REPORT_REQ's size.
pub const REQ_LEN: usize = 0x60;
/// MSG_REPORT_RSP's header before the report.
pub const RSP_HDR_LEN: usize = 0x20;
/// The signed part of the report.
pub const SIGNED_LEN: usize = 0x2a0;

/// What the firmware knows of the guest when it makes a report.
#[derive(Debug)]
pub struct Guest {
    /// The launch digest.
    pub measurement: [u8; 48],
    /// REPORT_ID.
    pub report_id: [u8; 32],
}

/// The ATTESTATION_REPORT for REPORT_DATA `data` at `vmpl`, signed.
pub fn report(keys: &Keys, guest: &Guest, data: &[u8; 64], vmpl: u32) -> Vec<u8> {
    let mut r = vec![0u8; REPORT_LEN];
    let mut put = |at: usize, bytes: &[u8]| r[at..at + bytes.len()].copy_from_slice(bytes);
    put(0x00, &2u32.to_le_bytes());
    put(0x08, &POLICY.to_le_bytes());
    put(0x30, &vmpl.to_le_bytes());
    put(0x34, &1u32.to_le_bytes());
    put(0x50, data);
    put(0x90, &guest.measurement);
    put(0x140, &guest.report_id);
    put(0x160, &[0xff; 32]);
    put(0x1a0, &keys.chip_id());
    // CURRENT_BUILD, CURRENT_MINOR, CURRENT_MAJOR; the same committed.
    put(0x1e8, &[0, 51, 1]);
    put(0x1ec, &[0, 51, 1]);
    let sig: p384::ecdsa::Signature = keys.vcek_key.sign(&r[..SIGNED_LEN]);
    let (rr, ss) = sig.split_bytes();
    let le = |b: &[u8]| b.iter().rev().copied().collect::<Vec<u8>>();
    r[0x2a0..0x2a0 + 48].copy_from_slice(&le(&rr));
    r[0x2e8..0x2e8 + 48].copy_from_slice(&le(&ss));
    r
}

/// The MSG_REPORT_RSP payload for a MSG_REPORT_REQ `req` (its plaintext)
/// from a message under VMPCK `vmpck`. A request from VMPCK n counts as
/// from VMPL n; asking for a VMPL below that, or above 3, is STATUS
/// INVALID_PARAM; KEY_SEL (bits 1:0 of offset 0x44) other than 0 (either)
/// or 1 (VCEK) names a key cvmem has not (no VLEK): INVALID_KEY. `Err`: the
/// request is malformed (the message fails with that status).
pub fn respond(keys: &Keys, guest: &Guest, vmpck: u8, req: &[u8]) -> Result<Vec<u8>, u32> {
    if req.len() != REQ_LEN {
        return Err(status::INVALID_PARAM);
    }
    let mut data = [0u8; 64];
    data.copy_from_slice(&req[..64]);
    let vmpl = u32::from_le_bytes(req[0x40..0x44].try_into().expect("4"));
    let key_sel = u32::from_le_bytes(req[0x44..0x48].try_into().expect("4")) & 3;
    let mut rsp = vec![0u8; RSP_HDR_LEN];
    let st = if vmpl > 3 || vmpl < u32::from(vmpck) {
        status::INVALID_PARAM
    } else if key_sel > 1 {
        status::INVALID_KEY
    } else {
        0
    };
    rsp[0..4].copy_from_slice(&st.to_le_bytes());
    if st == 0 {
        rsp[4..8].copy_from_slice(&(REPORT_LEN as u32).to_le_bytes());
        rsp.extend_from_slice(&report(keys, guest, &data, vmpl));
    }
    Ok(rsp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snp::attest::keys::test_keys;
    use crate::snp::attest::verify::{cert_table, guid, verify_report};

    fn guest() -> Guest {
        Guest {
            measurement: [0x5a; 48],
            report_id: [7; 32],
        }
    }

    fn req(data: &[u8; 64], vmpl: u32, key_sel: u32) -> Vec<u8> {
        let mut r = vec![0u8; REQ_LEN];
        r[..64].copy_from_slice(data);
        r[0x40..0x44].copy_from_slice(&vmpl.to_le_bytes());
        r[0x44..0x48].copy_from_slice(&key_sel.to_le_bytes());
        r
    }

    #[test]
    fn a_signed_report_the_sev_crate_verifies() {
        let k = test_keys();
        let data = [0xab; 64];
        let rsp = respond(&k, &guest(), 0, &req(&data, 1, 0)).unwrap();
        assert_eq!(&rsp[0..8], &[0, 0, 0, 0, 0xa0, 4, 0, 0]);
        let report = &rsp[RSP_HDR_LEN..];
        let table = cert_table(&[
            (guid::ARK, &k.ark),
            (guid::ASK, &k.ask),
            (guid::VCEK, &k.vcek),
        ]);
        let r = verify_report(report, &table, Some(&k.ark), Some(&data)).unwrap();
        assert_eq!(r.version, 2);
        assert_eq!(r.vmpl, 1);
        assert_eq!(r.measurement, [0x5a; 48]);
        assert_eq!(r.report_id, [7; 32]);
        assert_eq!(r.chip_id, k.chip_id());
        assert_eq!(r.host_data, [0; 32]);
        assert_eq!(u64::from(r.policy), POLICY);
        // Another REPORT_DATA is noticed, and so is a changed byte.
        assert!(verify_report(report, &table, None, Some(&[0; 64])).is_err());
        let mut bad = report.to_vec();
        bad[0x90] ^= 1;
        let err = verify_report(&bad, &table, None, None).unwrap_err();
        assert!(err.contains("signature does not verify"), "{err}");
        // A foreign trust anchor is refused.
        assert!(verify_report(report, &table, Some(&k.ask), None).is_err());
    }

    #[test]
    fn status_for_bad_vmpl_and_key() {
        let k = test_keys();
        let st = |vmpck, vmpl, sel| {
            let rsp = respond(&k, &guest(), vmpck, &req(&[0; 64], vmpl, sel)).unwrap();
            (u32::from_le_bytes(rsp[0..4].try_into().unwrap()), rsp.len())
        };
        assert_eq!(st(0, 4, 0), (status::INVALID_PARAM, RSP_HDR_LEN));
        assert_eq!(st(2, 1, 0), (status::INVALID_PARAM, RSP_HDR_LEN));
        assert_eq!(st(0, 0, 2), (status::INVALID_KEY, RSP_HDR_LEN));
        assert_eq!(st(2, 3, 1), (0, RSP_HDR_LEN + REPORT_LEN));
        assert_eq!(
            respond(&k, &guest(), 0, &[0; 0x50]).unwrap_err(),
            status::INVALID_PARAM
        );
    }
}
