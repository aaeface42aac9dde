//! SNP_GUEST_REQUEST and SNP_EXTENDED_GUEST_REQUEST (NAE 0x80000011 and
//! 0x80000012; GHCB specification "SNP Guest Request", "SNP Extended Guest
//! Request"), as KVM's `snp_handle_guest_req()` and
//! `snp_handle_ext_guest_req()` (arch/x86/kvm/svm/sev.c) hand them to the
//! AMD-SP, whose side is [`super::attest`].
//!
//! KVM reads the request page (SW_EXITINFO1) through the guest's shared
//! memory into its own buffer, has the firmware answer into its response
//! buffer and copies that to the response page (SW_EXITINFO2), whatever
//! the firmware said; SW_EXITINFO2 becomes `SNP_GUEST_ERR(0, fw_err)`. The
//! pages are page aligned and differ (`sev_es_validate_vmgexit()`, checked
//! in nae.rs). A page that is private has no shared content the guest
//! wrote: QEMU discarded the shared side when it converted the page, so
//! KVM reads zeros (a message the firmware refuses, INVALID_PARAM) and
//! its write lands where the guest does not look. cvmem, with one backing
//! page per GPA, reads zeros and leaves the private page as it is; a GPA no
//! memslot covers is treated the same (KVM fails KVM_RUN with -EIO there).
//!
//! The extended request, for MSG_REPORT_REQ, also takes RAX (the GPA of a
//! page-aligned buffer) and RBX (its size in pages) for the certificate
//! table (GUID, offset, length entries ending in 24 zero bytes, then the
//! DER certificates of the ARK, ASK and VCEK). Too small a buffer is
//! answered `SNP_GUEST_ERR(SNP_GUEST_VMM_ERR_INVALID_LEN, 0)` with RBX the
//! pages needed, and the request does not reach the firmware (the guest
//! retries it as a plain request, Linux's `__handle_guest_request()`, so
//! the sequence number is not lost). KVM 6.12 writes an empty table
//! there; cvmem writes the table as KVM with certificates from userspace
//! does (newer kernels, and the GHCB specification).

use super::attest::keys::{self, Keys};
use super::attest::message::{self, msg_type, status};
use super::attest::report::{self, Guest};
use super::attest::verify::{cert_table, guid};
use super::ghcb::{ghcb_err, off, Ghcb};
use super::SnpFirmware;
use crate::hooks::Host;
use crate::vmm::Vmm;
use cvmem_model::snp_launch::{LaunchDigest, PageType};
use cvmem_model::{GfnRange, PAGE_SIZE};
use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

/// `SNP_GUEST_ERR(SNP_GUEST_VMM_ERR_INVALID_LEN, 0)` (include/uapi/linux/sev-guest.h).
pub const VMM_ERR_INVALID_LEN: u64 = 1 << 32;
/// `SNP_GUEST_ERR(SNP_GUEST_VMM_ERR_GENERIC, 0)`: the host side failed (here:
/// no key hierarchy could be made or read; the reason is on stderr).
pub const VMM_ERR_GENERIC: u64 = 0xFFFF_FFFF_0000_0000;

/// The launch digest, with the content-less pages launched since it was
/// last read not yet folded in. Each launched page is one SHA-384 over its
/// PAGE_INFO, chained, so a launch of all of a 64 GiB guest's RAM costs
/// 16M hashes; only a report reads the digest, so the ranges wait here, in
/// launch order, and the first report folds them: the same updates in the
/// same order, the same MEASUREMENT, paid only by a guest that asks.
#[derive(Debug, Default)]
struct Measured {
    digest: LaunchDigest,
    /// (page type, first GFN, pages), in launch order.
    pending: Vec<(PageType, u64, u64)>,
}

impl Measured {
    fn fold(&mut self) -> &LaunchDigest {
        for (page_type, gfn, pages) in self.pending.drain(..) {
            for g in gfn..gfn + pages {
                self.digest.update(page_type, g * PAGE_SIZE, None);
            }
        }
        &self.digest
    }
}

/// The firmware's attestation state of one guest, and KVM's buffers.
#[derive(Debug)]
pub struct Attest {
    /// The launch digest, updated by every SNP_LAUNCH_UPDATE.
    digest: Mutex<Measured>,
    /// KVM's `guest_req_mutex` and what it guards: the firmware's message
    /// counts per VMPCK and KVM's response buffer (copied to the guest's
    /// response page on every request, as KVM does).
    state: Mutex<State>,
    /// The key hierarchy, read or made at the first report.
    keys: OnceLock<Result<Arc<Keys>, String>>,
    /// Where the hierarchy lives (`$CVMEM_CACHE/snp-keys`).
    key_dir: Option<PathBuf>,
    /// REPORT_ID, made at launch start.
    report_id: [u8; 32],
}

#[derive(Debug)]
struct State {
    counts: [u64; 4],
    response: Vec<u8>,
}

impl Attest {
    /// The state of a new guest.
    pub fn new() -> Attest {
        let mut report_id = [0u8; 32];
        // Without randomness the ID is zero; nothing depends on it.
        let _ = getrandom::fill(&mut report_id);
        Attest {
            digest: Mutex::new(Measured::default()),
            state: Mutex::new(State {
                counts: [0; 4],
                response: vec![0; PAGE_SIZE as usize],
            }),
            keys: OnceLock::new(),
            key_dir: keys::default_dir(),
            report_id,
        }
    }

    /// The digest of a launch computed whole (a guest started from OVMF).
    pub(super) fn set_digest(&self, digest: LaunchDigest) {
        *self.digest.lock() = Measured {
            digest,
            pending: Vec::new(),
        };
    }

    /// Pages launched without content (any type but NORMAL and VMSA):
    /// their PAGE_INFO goes into the digest, in order (see [`Measured`]).
    pub(super) fn launched(&self, page_type: PageType, gfns: GfnRange) {
        let mut d = self.digest.lock();
        let (gfn, pages) = (gfns.start().raw(), gfns.len());
        match d.pending.last_mut() {
            Some((t, g, n)) if *t == page_type && *g + *n == gfn => *n += pages,
            _ => d.pending.push((page_type, gfn, pages)),
        }
    }

    /// The launch digest: MEASUREMENT in a report.
    pub(super) fn measurement(&self) -> [u8; 48] {
        self.digest.lock().fold().digest()
    }

    fn keys(&self) -> Result<Arc<Keys>, String> {
        self.keys
            .get_or_init(|| {
                let dir = self
                    .key_dir
                    .clone()
                    .ok_or("no CVMEM_CACHE, XDG_CACHE_HOME or HOME for the SNP keys")?;
                Keys::load_or_create(&dir)
                    .map(Arc::new)
                    .map_err(|e| format!("the SNP key hierarchy in {}: {e}", dir.display()))
            })
            .clone()
    }

    /// Tests: use `keys` instead of the installation's.
    #[cfg(test)]
    pub fn set_keys(&self, keys: Keys) {
        let _ = self.keys.set(Ok(Arc::new(keys)));
    }
}

impl Default for Attest {
    fn default() -> Self {
        Attest::new()
    }
}

impl SnpFirmware {
    /// A guest request through the GHCB: `req_gpa`, `resp_gpa` are
    /// SW_EXITINFO1/2, already checked. `Ok`: SW_EXITINFO2; `Err`: a
    /// GHCB error.
    pub(super) fn guest_request(
        &self,
        vmm: &Vmm,
        extended: bool,
        req_gpa: u64,
        resp_gpa: u64,
        g: &mut Ghcb,
        host: &dyn Host,
    ) -> Result<u64, u64> {
        self.stats.guest_requests.fetch_add(1, Ordering::Relaxed);
        let request = self.read_shared_page(vmm, req_gpa, host);
        if extended && request[message::hdr::MSG_TYPE] == msg_type::REPORT_REQ {
            let data_gpa = g.input(off::RAX).map_err(|_| ghcb_err::INVALID_INPUT)?;
            let npages = g.input(off::RBX).map_err(|_| ghcb_err::INVALID_INPUT)?;
            if data_gpa % PAGE_SIZE != 0 {
                return Err(ghcb_err::INVALID_INPUT);
            }
            let table = match self.attest.keys() {
                Ok(k) => cert_table(&[
                    (guid::ARK, &k.ark),
                    (guid::ASK, &k.ask),
                    (guid::VCEK, &k.vcek),
                ]),
                Err(e) => return Ok(self.host_failed(&e)),
            };
            let needed = (table.len() as u64).div_ceil(PAGE_SIZE);
            if npages < needed {
                g.set(off::RBX, needed);
                self.stats
                    .guest_request_errors
                    .fetch_add(1, Ordering::Relaxed);
                return Ok(VMM_ERR_INVALID_LEN);
            }
            for (i, chunk) in table.chunks(PAGE_SIZE as usize).enumerate() {
                if let Some(at) = self.shared_backing(vmm, data_gpa + i as u64 * PAGE_SIZE) {
                    host.phys_write(at, chunk);
                }
            }
        }
        let (fw_err, response) = {
            let mut st = self.attest.state.lock();
            let fw_err = match self.firmware_request(&request, &mut st.counts) {
                Ok(page) => {
                    st.response = page;
                    0
                }
                Err(Some(e)) => e,
                Err(None) => return Ok(VMM_ERR_GENERIC),
            };
            (fw_err, st.response.clone())
        };
        if let Some(at) = self.shared_backing(vmm, resp_gpa) {
            host.phys_write(at, &response);
        }
        if fw_err != 0 {
            self.stats
                .guest_request_errors
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(u64::from(fw_err))
    }

    /// The AMD-SP's SNP_GUEST_REQUEST: the response page, or `Err(Some)`
    /// with the firmware's status, `Err(None)` when the host cannot answer.
    fn firmware_request(&self, page: &[u8], counts: &mut [u64; 4]) -> Result<Vec<u8>, Option<u32>> {
        let Some(boot) = self.boot.get() else {
            self.host_failed("no secrets page was made for this guest");
            return Err(None);
        };
        let keys = &boot.secrets.vmpck;
        let req = message::open_request(page, keys, counts).map_err(Some)?;
        let payload = match (req.msg_type, req.msg_version) {
            (msg_type::REPORT_REQ, 1) => {
                let k = self.attest.keys().map_err(|e| {
                    self.host_failed(&e);
                    None
                })?;
                let guest = Guest {
                    measurement: self.attest.measurement(),
                    report_id: self.attest.report_id,
                };
                let rsp = report::respond(&k, &guest, req.vmpck, &req.payload).map_err(Some)?;
                self.stats.reports.fetch_add(1, Ordering::Relaxed);
                rsp
            }
            // MSG_KEY_REQ (derived keys), MSG_CPUID_REQ, export/import/
            // absorb are not modelled: refused as an unknown type is.
            _ => return Err(Some(status::INVALID_PARAM)),
        };
        Ok(message::seal_response(&req, &payload, keys, counts))
    }

    /// Says once why the host side cannot answer; the answer to the guest.
    fn host_failed(&self, why: &str) -> u64 {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| eprintln!("cvmem: SNP guest request: {why}"));
        self.stats
            .guest_request_errors
            .fetch_add(1, Ordering::Relaxed);
        VMM_ERR_GENERIC
    }

    /// The page at `gpa` as KVM's `kvm_read_guest()` sees it: the shared
    /// RAM, zeros for a private page or no RAM (see the module comment).
    fn read_shared_page(&self, vmm: &Vmm, gpa: u64, host: &dyn Host) -> Vec<u8> {
        let mut page = vec![0u8; PAGE_SIZE as usize];
        if let Some(at) = self.shared_backing(vmm, gpa) {
            if !host.phys_read(at, &mut page) {
                page.fill(0);
            }
        }
        page
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{AcceptPolicy, Config};
    use crate::effects::Effects;
    use crate::flavour::Flavour;
    use crate::hooks::fake::{report_ram, FakeHost};
    use crate::kvm::Kvm;
    use crate::snp::attest::keys::test_keys;
    use crate::snp::attest::message::{guest_request, guest_response};
    use crate::snp::attest::verify::verify_report;
    use crate::snp::exit;
    use crate::snp::testutil::*;
    use cvmem_model::VmType;

    const REQ: u64 = 0x60_0000;
    const RESP: u64 = 0x60_1000;
    const CERTS: u64 = 0x61_0000;

    /// A launched SNP guest (RAM below 1 MiB launched) with its secrets
    /// page, the test key hierarchy, the GHCB and the request, response
    /// and certificate pages shared.
    fn snp() -> (Kvm, FakeHost, [u8; 32]) {
        let config = Config {
            vm_type: VmType::Snp,
            accept: AcceptPolicy::Below(0x10_0000),
            map_gpa_chunk: 64 << 10,
            ..Config::default()
        };
        let kvm = Kvm::new(&config, 2).unwrap();
        report_ram(&kvm);
        let snp = kvm.flavour_as::<SnpFirmware>();
        snp.machine_ready(&kvm.vmm, &Amd, &mut Effects::default())
            .unwrap();
        snp.attest.set_keys(test_keys());
        let mut fx = Effects::NONE;
        snp.ensure_launched(&kvm.vmm, &mut fx);
        let host = FakeHost::new();
        ghcb_setup(&kvm, &host);
        for gpa in [REQ, RESP, CERTS, CERTS + 0x1000] {
            assert_eq!(msr_call(&kvm, &host, (2 << 52) | gpa | 0x014), 0x015);
        }
        let vmpck0 = snp.boot.get().unwrap().secrets.vmpck[0];
        (kvm, host, vmpck0)
    }

    fn write(host: &FakeHost, at: u64, data: &[u8]) {
        host.mem.borrow_mut()[at as usize..at as usize + data.len()].copy_from_slice(data);
    }

    fn read(host: &FakeHost, at: u64, len: usize) -> Vec<u8> {
        host.mem.borrow()[at as usize..at as usize + len].to_vec()
    }

    fn report_req(data: &[u8; 64]) -> Vec<u8> {
        let mut r = vec![0u8; report::REQ_LEN];
        r[..64].copy_from_slice(data);
        r
    }

    /// Puts `page` at REQ and runs the (extended, with `certs` = RAX, RBX)
    /// guest request; returns SW_EXITINFO1, SW_EXITINFO2.
    fn request(kvm: &Kvm, host: &FakeHost, page: &[u8], certs: Option<(u64, u64)>) -> (u64, u64) {
        write(host, REQ, page);
        write(host, RESP, &[0xee; 4096]);
        let mut fields = vec![(off::EXIT_INFO_1, REQ), (off::EXIT_INFO_2, RESP)];
        match certs {
            Some((gpa, n)) => {
                fields.push((off::EXIT_CODE, exit::EXT_GUEST_REQUEST));
                fields.push((off::RAX, gpa));
                fields.push((off::RBX, n));
            }
            None => fields.push((off::EXIT_CODE, exit::GUEST_REQUEST)),
        }
        ghcb_call(kvm, host, &fields);
        info(host)
    }

    #[test]
    fn a_report_request_is_answered_with_a_report_the_chain_verifies() {
        let (kvm, host, key) = snp();
        let snp = kvm.flavour_as::<SnpFirmware>();
        let data = [0x42; 64];
        let req = guest_request(&key, 0, 1, msg_type::REPORT_REQ, 1, &report_req(&data));
        assert_eq!(request(&kvm, &host, &req, None), (0, 0));
        let resp = read(&host, RESP, 4096);
        let payload = guest_response(&key, &req, &resp).unwrap();
        assert_eq!(
            &payload[0..8],
            &[0, 0, 0, 0, 0xa0, 4, 0, 0],
            "STATUS 0, REPORT_SIZE 0x4a0"
        );
        let k = test_keys();
        let table = cert_table(&[
            (guid::ARK, &k.ark),
            (guid::ASK, &k.ask),
            (guid::VCEK, &k.vcek),
        ]);
        let r = verify_report(
            &payload[0x20..0x20 + 0x4a0],
            &table,
            Some(&k.ark),
            Some(&data),
        )
        .unwrap();
        assert_eq!(r.vmpl, 0);
        // MEASUREMENT: the 256 pages below 1 MiB and the CPUID and secrets
        // pages, in launch order.
        let mut d = LaunchDigest::default();
        for gfn in (0..0x100).filter(|&g| g != 0x9d && g != 0x9e) {
            d.update(PageType::Unmeasured, gfn << 12, None);
        }
        d.update(PageType::Cpuid, 0x9e000, None);
        d.update(PageType::Secrets, 0x9d000, None);
        assert_eq!(r.measurement, d.digest());
        assert_eq!(snp.stats.reports.load(Ordering::Relaxed), 1);
        // The next request carries seqno 3.
        let next = guest_request(&key, 0, 3, msg_type::REPORT_REQ, 1, &report_req(&data));
        assert_eq!(request(&kvm, &host, &next, None), (0, 0));
        assert!(guest_response(&key, &next, &read(&host, RESP, 4096)).is_ok());
    }

    #[test]
    fn replay_wrong_key_and_bad_messages_are_firmware_errors() {
        let (kvm, host, key) = snp();
        let snp = kvm.flavour_as::<SnpFirmware>();
        let fw = |e: u32| (0, u64::from(e));
        let good = guest_request(&key, 0, 1, msg_type::REPORT_REQ, 1, &report_req(&[1; 64]));
        assert_eq!(request(&kvm, &host, &good, None), (0, 0));
        let answer = read(&host, RESP, 4096);
        // A replay: the firmware refuses it and KVM copies its response
        // buffer, the last answer, again.
        assert_eq!(request(&kvm, &host, &good, None), fw(status::INVALID_PARAM));
        assert_eq!(read(&host, RESP, 4096), answer);
        // Encrypted with VMPCK1 but naming VMPCK0.
        let vmpck1 = snp.boot.get().unwrap().secrets.vmpck[1];
        let wrong = guest_request(
            &vmpck1,
            0,
            3,
            msg_type::REPORT_REQ,
            1,
            &report_req(&[1; 64]),
        );
        assert_eq!(
            request(&kvm, &host, &wrong, None),
            fw(status::INVALID_PARAM)
        );
        // A MSG_REPORT_REQ of the wrong size, an unknown message version,
        // a header version the firmware does not know.
        let short = guest_request(&key, 0, 3, msg_type::REPORT_REQ, 1, &[0; 0x40]);
        assert_eq!(
            request(&kvm, &host, &short, None),
            fw(status::INVALID_PARAM)
        );
        let v2 = guest_request(&key, 0, 3, msg_type::REPORT_REQ, 2, &report_req(&[1; 64]));
        assert_eq!(request(&kvm, &host, &v2, None), fw(status::INVALID_PARAM));
        let mut hv = guest_request(&key, 0, 3, msg_type::REPORT_REQ, 1, &report_req(&[1; 64]));
        hv[message::hdr::HDR_VERSION] = 2;
        assert_eq!(request(&kvm, &host, &hv, None), fw(status::INVALID_PARAM));
        // None of them moved the count: seqno 3 still works.
        let ok = guest_request(&key, 0, 3, msg_type::REPORT_REQ, 1, &report_req(&[1; 64]));
        assert_eq!(request(&kvm, &host, &ok, None), (0, 0));
        assert_eq!(snp.stats.guest_requests.load(Ordering::Relaxed), 7);
        assert_eq!(snp.stats.guest_request_errors.load(Ordering::Relaxed), 5);
        assert!(
            snp.summary()
                .contains("7 guest requests (5 refused, 2 reports)"),
            "{}",
            snp.summary()
        );
    }

    #[test]
    fn a_private_request_page_reads_as_zeros_and_its_response_is_lost() {
        let (kvm, host, key) = snp();
        let good = guest_request(&key, 0, 1, msg_type::REPORT_REQ, 1, &report_req(&[1; 64]));
        // The request page goes back to private: KVM reads its shared side.
        assert_eq!(msr_call(&kvm, &host, (1 << 52) | REQ | 0x014), 0x015);
        assert_eq!(
            request(&kvm, &host, &good, None),
            (0, u64::from(status::INVALID_PARAM))
        );
        // A private response page keeps what the guest had there.
        assert_eq!(msr_call(&kvm, &host, (2 << 52) | REQ | 0x014), 0x015);
        assert_eq!(msr_call(&kvm, &host, (1 << 52) | RESP | 0x014), 0x015);
        assert_eq!(request(&kvm, &host, &good, None), (0, 0));
        assert_eq!(read(&host, RESP, 4096), vec![0xee; 4096]);
        // Misaligned or equal pages are the GHCB's missing input.
        ghcb_call(
            &kvm,
            &host,
            &[
                (off::EXIT_CODE, exit::GUEST_REQUEST),
                (off::EXIT_INFO_1, REQ + 8),
                (off::EXIT_INFO_2, RESP),
            ],
        );
        assert_eq!(info(&host), (2, ghcb_err::MISSING_INPUT));
    }

    #[test]
    fn the_extended_request_returns_the_certificates_or_the_pages_needed() {
        let (kvm, host, key) = snp();
        let data = [9; 64];
        let k = test_keys();
        let table = cert_table(&[
            (guid::ARK, &k.ark),
            (guid::ASK, &k.ask),
            (guid::VCEK, &k.vcek),
        ]);
        let needed = (table.len() as u64).div_ceil(PAGE_SIZE);
        assert!(
            needed == 2,
            "the table fits the two shared pages: {}",
            table.len()
        );
        // One page is too few: RBX says how many, the firmware is not asked
        // (the same seqno works next).
        let req = guest_request(&key, 0, 1, msg_type::REPORT_REQ, 1, &report_req(&data));
        assert_eq!(
            request(&kvm, &host, &req, Some((CERTS, 1))),
            (0, VMM_ERR_INVALID_LEN)
        );
        assert_eq!(get(&host, GHCB + off::RBX as u64), needed);
        assert_eq!(read(&host, RESP, 4096), vec![0xee; 4096]);
        // Enough pages: the table, then the report.
        assert_eq!(request(&kvm, &host, &req, Some((CERTS, needed))), (0, 0));
        let got = read(&host, CERTS, table.len());
        assert_eq!(got, table);
        let payload = guest_response(&key, &req, &read(&host, RESP, 4096)).unwrap();
        verify_report(
            &payload[0x20..0x20 + 0x4a0],
            &got,
            Some(&k.ark),
            Some(&data),
        )
        .unwrap();
        // The sev crate reads the table cvmem writes.
        let mut raw = got.clone();
        let entries =
            sev::firmware::host::CertTableEntry::vec_bytes_to_cert_table(&mut raw).unwrap();
        let chain = sev::certs::snp::Chain::from_cert_table_der(entries).unwrap();
        sev::certs::snp::Verifiable::verify(&chain).unwrap();
        // RAX and RBX are needed, RAX page aligned.
        let next = guest_request(&key, 0, 3, msg_type::REPORT_REQ, 1, &report_req(&data));
        assert_eq!(
            request(&kvm, &host, &next, Some((CERTS + 8, 2))),
            (2, ghcb_err::INVALID_INPUT)
        );
        write(&host, REQ, &next);
        ghcb_call(
            &kvm,
            &host,
            &[
                (off::EXIT_CODE, exit::EXT_GUEST_REQUEST),
                (off::EXIT_INFO_1, REQ),
                (off::EXIT_INFO_2, RESP),
            ],
        );
        assert_eq!(info(&host), (2, ghcb_err::INVALID_INPUT));
    }
}
