//! Guest messages (SEV-SNP firmware ABI, chapter "Guest Messages", table
//! "Message Header"; Linux `struct snp_guest_msg_hdr` in
//! arch/x86/include/asm/sev.h and `enc_payload()`/`verify_and_dec_payload()`
//! in drivers/virt/coco/sev-guest/sev-guest.c).
//!
//! A message is one 4 KiB page: a 0x60-byte header, then the payload
//! encrypted with AES-256-GCM under the VMPCK the header names. The IV is
//! the 64-bit sequence number (little endian, then zeros: 96 bits), the
//! additional authenticated data the header's bytes 0x30..0x60, the 16-byte
//! tag at offset 0. The firmware keeps a message count per VMPCK: a
//! request must carry count + 1 and the response carries count + 2, which
//! becomes the count (Linux's `snp_inc_msg_seqno()` adds 2).

use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit};

/// Firmware status codes (ABI table "Status Codes"; Linux
/// include/uapi/linux/psp-sev.h `SEV_RET_*`).
pub mod status {
    /// A parameter of the command or message is not valid.
    pub const INVALID_PARAM: u32 = 0x16;
    /// The message count would overflow (IV reuse).
    pub const AEAD_OFLOW: u32 = 0x1d;
    /// KEY_SEL names a key that is not available.
    pub const INVALID_KEY: u32 = 0x27;
}

/// Header offsets.
pub mod hdr {
    #![allow(missing_docs)]
    pub const AUTHTAG: usize = 0x00;
    pub const SEQNO: usize = 0x20;
    pub const ALGO: usize = 0x30;
    pub const HDR_VERSION: usize = 0x31;
    pub const HDR_SIZE: usize = 0x32;
    pub const MSG_TYPE: usize = 0x34;
    pub const MSG_VERSION: usize = 0x35;
    pub const MSG_SIZE: usize = 0x36;
    pub const MSG_VMPCK: usize = 0x3c;
    /// The header's size, and where the payload starts.
    pub const LEN: usize = 0x60;
    /// The authenticated (not encrypted) part of the header.
    pub const AAD: core::ops::Range<usize> = 0x30..0x60;
}

/// ALGO: AES-256-GCM, the only one.
pub const ALGO_AES_256_GCM: u8 = 1;
/// HDR_VERSION understood.
pub const HDR_VERSION: u8 = 1;
/// The GCM tag's length.
pub const TAG_LEN: usize = 16;
/// A message page.
pub const PAGE: usize = 4096;
/// The largest payload in a page.
pub const MAX_PAYLOAD: usize = PAGE - hdr::LEN;

/// Message types (ABI table "Message Type Encodings"; Linux `enum msg_type`).
pub mod msg_type {
    #![allow(missing_docs)]
    /// MSG_KEY_REQ: not modelled (refused as an unknown type).
    #[cfg(test)]
    pub const KEY_REQ: u8 = 3;
    pub const REPORT_REQ: u8 = 5;
}

/// A decrypted, authenticated request.
#[derive(Debug)]
pub struct Request {
    /// MSG_TYPE.
    pub msg_type: u8,
    /// MSG_VERSION.
    pub msg_version: u8,
    /// MSG_VMPCK: the key, and the VMPL the message counts as from.
    pub vmpck: u8,
    /// MSG_SEQNO.
    pub seqno: u64,
    /// The plaintext payload (MSG_SIZE bytes).
    pub payload: Vec<u8>,
}

fn cipher(key: &[u8; 32]) -> Aes256Gcm {
    Aes256Gcm::new(GenericArray::from_slice(key))
}

fn iv(seqno: u64) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[..8].copy_from_slice(&seqno.to_le_bytes());
    iv
}

/// The firmware's side of a request page: checks the header, the sequence
/// number against `counts` (per VMPCK: the last sequence number the
/// firmware answered with), authenticates and decrypts with `keys`. `Err`
/// is the firmware status. The count moves only when the answer is made
/// ([`seal_response`]).
pub fn open_request(page: &[u8], keys: &[[u8; 32]; 4], counts: &[u64; 4]) -> Result<Request, u32> {
    let u16_at = |o: usize| u16::from_le_bytes([page[o], page[o + 1]]);
    if page.len() != PAGE
        || page[hdr::ALGO] != ALGO_AES_256_GCM
        || page[hdr::HDR_VERSION] != HDR_VERSION
        || usize::from(u16_at(hdr::HDR_SIZE)) != hdr::LEN
    {
        return Err(status::INVALID_PARAM);
    }
    let vmpck = page[hdr::MSG_VMPCK];
    let size = usize::from(u16_at(hdr::MSG_SIZE));
    if usize::from(vmpck) >= keys.len() || size > MAX_PAYLOAD - TAG_LEN {
        return Err(status::INVALID_PARAM);
    }
    let seqno = u64::from_le_bytes(page[hdr::SEQNO..hdr::SEQNO + 8].try_into().expect("8"));
    let count = counts[usize::from(vmpck)];
    // A response needs count + 2: the count must not wrap.
    if count.checked_add(2).is_none() {
        return Err(status::AEAD_OFLOW);
    }
    if seqno != count + 1 {
        return Err(status::INVALID_PARAM);
    }
    let mut payload = page[hdr::LEN..hdr::LEN + size].to_vec();
    let tag = GenericArray::clone_from_slice(&page[hdr::AUTHTAG..hdr::AUTHTAG + TAG_LEN]);
    cipher(&keys[usize::from(vmpck)])
        .decrypt_in_place_detached(
            GenericArray::from_slice(&iv(seqno)),
            &page[hdr::AAD],
            &mut payload,
            &tag,
        )
        .map_err(|_| status::INVALID_PARAM)?;
    Ok(Request {
        msg_type: page[hdr::MSG_TYPE],
        msg_version: page[hdr::MSG_VERSION],
        vmpck,
        seqno,
        payload,
    })
}

/// The response page to `req`: type + 1, the same version and VMPCK,
/// sequence number + 1, `payload` encrypted. Advances the VMPCK's count.
pub fn seal_response(
    req: &Request,
    payload: &[u8],
    keys: &[[u8; 32]; 4],
    counts: &mut [u64; 4],
) -> Vec<u8> {
    let seqno = req.seqno + 1;
    let mut page = vec![0u8; PAGE];
    page[hdr::SEQNO..hdr::SEQNO + 8].copy_from_slice(&seqno.to_le_bytes());
    page[hdr::ALGO] = ALGO_AES_256_GCM;
    page[hdr::HDR_VERSION] = HDR_VERSION;
    page[hdr::HDR_SIZE..hdr::HDR_SIZE + 2].copy_from_slice(&(hdr::LEN as u16).to_le_bytes());
    page[hdr::MSG_TYPE] = req.msg_type + 1;
    page[hdr::MSG_VERSION] = req.msg_version;
    page[hdr::MSG_SIZE..hdr::MSG_SIZE + 2].copy_from_slice(&(payload.len() as u16).to_le_bytes());
    page[hdr::MSG_VMPCK] = req.vmpck;
    let mut body = payload.to_vec();
    let (head, rest) = page.split_at_mut(hdr::LEN);
    let tag = cipher(&keys[usize::from(req.vmpck)])
        .encrypt_in_place_detached(
            GenericArray::from_slice(&iv(seqno)),
            &head[hdr::AAD],
            &mut body,
        )
        .expect("a payload within a page encrypts");
    head[hdr::AUTHTAG..hdr::AUTHTAG + TAG_LEN].copy_from_slice(&tag);
    rest[..body.len()].copy_from_slice(&body);
    counts[usize::from(req.vmpck)] = seqno;
    page
}

/// The guest's side (Linux `enc_payload()`), for tests: a request page.
#[cfg(test)]
pub fn guest_request(
    key: &[u8; 32],
    vmpck: u8,
    seqno: u64,
    ty: u8,
    version: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut page = vec![0u8; PAGE];
    page[hdr::SEQNO..hdr::SEQNO + 8].copy_from_slice(&seqno.to_le_bytes());
    page[hdr::ALGO] = ALGO_AES_256_GCM;
    page[hdr::HDR_VERSION] = HDR_VERSION;
    page[hdr::HDR_SIZE..hdr::HDR_SIZE + 2].copy_from_slice(&(hdr::LEN as u16).to_le_bytes());
    page[hdr::MSG_TYPE] = ty;
    page[hdr::MSG_VERSION] = version;
    page[hdr::MSG_SIZE..hdr::MSG_SIZE + 2].copy_from_slice(&(payload.len() as u16).to_le_bytes());
    page[hdr::MSG_VMPCK] = vmpck;
    let mut body = payload.to_vec();
    let (head, rest) = page.split_at_mut(hdr::LEN);
    let tag = cipher(key)
        .encrypt_in_place_detached(
            GenericArray::from_slice(&iv(seqno)),
            &head[hdr::AAD],
            &mut body,
        )
        .unwrap();
    head[..TAG_LEN].copy_from_slice(&tag);
    rest[..body.len()].copy_from_slice(&body);
    page
}

/// The guest's side (Linux `verify_and_dec_payload()`), for tests: the
/// response's header checks and its payload.
#[cfg(test)]
pub fn guest_response(key: &[u8; 32], req: &[u8], resp: &[u8]) -> Result<Vec<u8>, String> {
    let seq = |p: &[u8]| u64::from_le_bytes(p[hdr::SEQNO..hdr::SEQNO + 8].try_into().unwrap());
    if seq(resp) != seq(req) + 1 {
        return Err(format!("seqno {} after {}", seq(resp), seq(req)));
    }
    if resp[hdr::MSG_TYPE] != req[hdr::MSG_TYPE] + 1
        || resp[hdr::MSG_VERSION] != req[hdr::MSG_VERSION]
    {
        return Err("type or version".into());
    }
    let size = usize::from(u16::from_le_bytes([
        resp[hdr::MSG_SIZE],
        resp[hdr::MSG_SIZE + 1],
    ]));
    let mut body = resp[hdr::LEN..hdr::LEN + size].to_vec();
    cipher(key)
        .decrypt_in_place_detached(
            GenericArray::from_slice(&iv(seq(resp))),
            &resp[hdr::AAD],
            &mut body,
            GenericArray::from_slice(&resp[..TAG_LEN]),
        )
        .map_err(|_| "authentication".to_string())?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: [[u8; 32]; 4] = [[1; 32], [2; 32], [3; 32], [4; 32]];

    #[test]
    fn round_trip_and_the_count() {
        let mut counts = [0u64; 4];
        let req = guest_request(&KEYS[2], 2, 1, msg_type::REPORT_REQ, 1, b"hello");
        let r = open_request(&req, &KEYS, &counts).unwrap();
        assert_eq!((r.vmpck, r.seqno, &r.payload[..]), (2, 1, &b"hello"[..]));
        let resp = seal_response(&r, b"world", &KEYS, &mut counts);
        assert_eq!(counts, [0, 0, 2, 0]);
        assert_eq!(guest_response(&KEYS[2], &req, &resp).unwrap(), b"world");
        // The next request is 3; 1 again is a replay, 5 skips one.
        assert_eq!(
            open_request(&req, &KEYS, &counts).unwrap_err(),
            status::INVALID_PARAM
        );
        let skip = guest_request(&KEYS[2], 2, 5, msg_type::REPORT_REQ, 1, b"x");
        assert_eq!(
            open_request(&skip, &KEYS, &counts).unwrap_err(),
            status::INVALID_PARAM
        );
        let next = guest_request(&KEYS[2], 2, 3, msg_type::REPORT_REQ, 1, b"x");
        assert!(open_request(&next, &KEYS, &counts).is_ok());
        // Another VMPCK has its own count.
        let other = guest_request(&KEYS[0], 0, 1, msg_type::REPORT_REQ, 1, b"x");
        assert!(open_request(&other, &KEYS, &counts).is_ok());
    }

    #[test]
    fn wrong_key_tampering_and_bad_headers() {
        let counts = [0u64; 4];
        // Encrypted with VMPCK1 but naming VMPCK0.
        let wrong = guest_request(&KEYS[1], 0, 1, msg_type::REPORT_REQ, 1, b"hello");
        assert_eq!(
            open_request(&wrong, &KEYS, &counts).unwrap_err(),
            status::INVALID_PARAM
        );
        // The header is authenticated: a changed type fails.
        let mut changed = guest_request(&KEYS[0], 0, 1, msg_type::REPORT_REQ, 1, b"hello");
        changed[hdr::MSG_TYPE] = msg_type::KEY_REQ;
        assert_eq!(
            open_request(&changed, &KEYS, &counts).unwrap_err(),
            status::INVALID_PARAM
        );
        let good = guest_request(&KEYS[0], 0, 1, msg_type::REPORT_REQ, 1, b"hello");
        for (at, v) in [
            (hdr::ALGO, 2u8),
            (hdr::HDR_VERSION, 2),
            (hdr::HDR_SIZE, 0x50),
            (hdr::MSG_VMPCK, 4),
            (hdr::MSG_SIZE + 1, 0x10), // 4096 + 5 bytes
        ] {
            let mut p = good.clone();
            p[at] = v;
            assert_eq!(
                open_request(&p, &KEYS, &counts).unwrap_err(),
                status::INVALID_PARAM,
                "{at:#x}"
            );
        }
        // The last count before wrapping.
        let mut full = [0u64; 4];
        full[0] = u64::MAX - 1;
        assert_eq!(
            open_request(&good, &KEYS, &full).unwrap_err(),
            status::AEAD_OFLOW
        );
    }
}
