//! Attestation: MRTD, the RTMRs (TDG.MR.RTMR.EXTEND), the TDREPORT
//! (TDG.MR.REPORT) and TDVMCALL GetQuote.

use super::*;
use crate::hooks::{gpr, Host, Regs};
use crate::vmm::Vmm;
use cvmem_model::{Alias, Gpa, VcpuId, PAGE_SIZE};
use sha2::{Digest, Sha384};

/// Size of a TDREPORT_STRUCT and of its REPORTDATA.
pub(super) const TDREPORT_LEN: usize = 1024;

pub(super) const REPORTDATA_LEN: usize = 64;

/// SHA-384 digest length.
pub(super) const SHA384_LEN: usize = 48;

pub(super) type Sha384Digest = [u8; SHA384_LEN];

pub(super) fn sha384(parts: &[&[u8]]) -> Sha384Digest {
    let mut h = Sha384::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

impl TdxModule {
    /// MRTD: each TDH.MEM.PAGE.ADD at launch extended it with a 128-byte
    /// block, "MEM.PAGE.ADD" and the GPA at byte 16 (TDX module ABI, MRTD
    /// measurement). Content is not extended (no TDH.MR.EXTEND), as for
    /// TDVF's temporary memory. All zero before launch.
    pub(super) fn mrtd(&self) -> &Sha384Digest {
        const NONE_YET: Sha384Digest = [0; SHA384_LEN];
        if !self.launched() {
            return &NONE_YET;
        }
        self.mrtd.get_or_init(|| {
            let mut mrtd = Sha384::new();
            for gfn in self.added.lock().iter().flat_map(|r| r.iter()) {
                let mut block = [0u8; 128];
                block[..12].copy_from_slice(b"MEM.PAGE.ADD");
                block[16..24].copy_from_slice(&gfn.gpa().raw().to_le_bytes());
                mrtd.update(block);
            }
            mrtd.finalize().into()
        })
    }

    pub(super) fn rtmr_extend(&self, vmm: &Vmm, regs: &mut Regs, host: &dyn Host) -> u64 {
        let (gpa, index) = (regs.gpr[gpr::RCX], regs.gpr[gpr::RDX]);
        if gpa % 64 != 0 {
            return operand_invalid(status::OPERAND_RCX);
        }
        let Some(at) = self.private_operand(vmm, gpa) else {
            return operand_invalid(status::OPERAND_RCX);
        };
        if index >= 4 {
            return operand_invalid(status::OPERAND_RDX);
        }
        let mut data = [0u8; SHA384_LEN];
        if !host.phys_read(at, &mut data) {
            return operand_invalid(status::OPERAND_RCX);
        }
        let mut rtmr = self.rtmr.lock();
        let r = &mut rtmr[index as usize];
        *r = sha384(&[&r[..], &data]);
        0
    }

    /// TDG.MR.REPORT: RCX = GPA of the 1024-byte TDREPORT_STRUCT (1024-byte
    /// aligned), RDX = GPA of the 64-byte REPORTDATA (64-byte aligned), R8 =
    /// sub-type 0. Both private and accepted.
    pub(super) fn mr_report(&self, vmm: &Vmm, regs: &mut Regs, host: &dyn Host) -> u64 {
        let (out, data_gpa, subtype) = (regs.gpr[gpr::RCX], regs.gpr[gpr::RDX], regs.gpr[gpr::R8]);
        let Some(out_at) = (out % TDREPORT_LEN as u64 == 0)
            .then(|| self.private_operand(vmm, out))
            .flatten()
        else {
            return operand_invalid(status::OPERAND_RCX);
        };
        let Some(data_at) = (data_gpa % REPORTDATA_LEN as u64 == 0)
            .then(|| self.private_operand(vmm, data_gpa))
            .flatten()
        else {
            return operand_invalid(status::OPERAND_RDX);
        };
        if subtype != 0 {
            return operand_invalid(status::OPERAND_R8);
        }
        let mut reportdata = [0u8; REPORTDATA_LEN];
        if !host.phys_read(data_at, &mut reportdata) {
            return operand_invalid(status::OPERAND_RDX);
        }
        let report = self.tdreport(vmm, &reportdata, host);
        if !host.phys_write(out_at, &report) {
            return operand_invalid(status::OPERAND_RCX);
        }
        0
    }

    /// A TDREPORT_STRUCT (TDX module ABI spec, TDREPORT_STRUCT; Linux
    /// `TDX_REPORT_LEN`): REPORTMACSTRUCT (256 bytes), TEE_TCB_INFO (239) and
    /// 17 reserved bytes, TDINFO_STRUCT (512). The MAC is all zero: the
    /// report is unsigned and no verifier will accept it.
    pub fn tdreport(
        &self,
        vmm: &Vmm,
        reportdata: &[u8; REPORTDATA_LEN],
        host: &dyn Host,
    ) -> [u8; TDREPORT_LEN] {
        let mut r = [0u8; TDREPORT_LEN];
        // TDINFO_STRUCT at 512.
        let attributes = vmm.vm().tdx_vp_info(VcpuId(0)).map_or(0, |i| i.rdx);
        let xfam = self.td_xfam(host);
        {
            let td = &mut r[512..];
            td[0..8].copy_from_slice(&attributes.to_le_bytes());
            td[8..16].copy_from_slice(&xfam.to_le_bytes());
            td[16..64].copy_from_slice(self.mrtd());
            // MRCONFIGID, MROWNER, MROWNERCONFIG (64..208): zero, as when
            // the VMM gives none.
            let rtmr = self.rtmr.lock();
            for (i, m) in rtmr.iter().enumerate() {
                td[208 + i * SHA384_LEN..208 + (i + 1) * SHA384_LEN].copy_from_slice(m);
            }
            // SERVTD_HASH (400..448) and reserved: zero.
        }
        // TEE_TCB_INFO at 256: VALID (8 bytes) says which fields are
        // meaningful; cvmem has no SEAM module, so none are.
        let tee_tcb_info_hash = sha384(&[&r[256..256 + 239]]);
        let tee_info_hash = sha384(&[&r[512..1024]]);
        // REPORTMACSTRUCT at 0: REPORTTYPE (type 0x81 = TDX, subtype 0,
        // version 0), reserved, CPUSVN (zero), the two hashes, REPORTDATA,
        // reserved, MAC (zero: unsigned).
        r[0] = 0x81;
        r[32..80].copy_from_slice(&tee_tcb_info_hash);
        r[80..128].copy_from_slice(&tee_info_hash);
        r[128..192].copy_from_slice(reportdata);
        r
    }

    /// GetQuote: R12 the shared GPA of the buffer, R13 its size, both 4K
    /// aligned (QEMU `tdx_handle_get_quote()`); header: version (1), status,
    /// in_len, out_len. cvmem has no quote generation service, so the
    /// status becomes GET_QUOTE_SERVICE_UNAVAILABLE, as QEMU answers
    /// without a quote-generation socket.
    pub(super) fn get_quote(&self, vmm: &Vmm, gpa: u64, size: u64, host: &dyn Host) -> u64 {
        use vmcall::*;
        let vm = vmm.vm();
        let Some(d) = vm.decode(Gpa::new(gpa)) else {
            return INVALID_OPERAND;
        };
        if d.alias != Alias::Shared {
            return INVALID_OPERAND;
        }
        if gpa % PAGE_SIZE != 0 || size % PAGE_SIZE != 0 || size == 0 {
            return ALIGN_ERROR;
        }
        if vm.is_private(d.gfn) {
            return INVALID_OPERAND;
        }
        let Some(at) = vmm.backing_of(d.gfn) else {
            return INVALID_OPERAND;
        };
        let mut header = [0u8; 16];
        if !host.phys_read(at, &mut header) {
            return INVALID_OPERAND;
        }
        if u64::from_le_bytes(header[..8].try_into().expect("8 bytes")) != QUOTE_VERSION {
            return INVALID_OPERAND;
        }
        let st = QUOTE_SERVICE_UNAVAILABLE.to_le_bytes();
        if !at.checked_add(8).is_some_and(|a| host.phys_write(a, &st)) {
            return INVALID_OPERAND;
        }
        SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cvmem_model::BackingAddr;

    use crate::hooks::fake::{FakeHost, MEM};
    use crate::hooks::Access;

    use crate::tdx::testutil::*;
    use cvmem_model::TdAttributes;
    #[test]
    fn report_rtmr_quote_and_fatal_error() {
        let kvm = td(MEM, TdAttributes::SEPT_VE_DISABLE);
        let host = FakeHost::new();
        access(&kvm, 0x1000, Access::Read);
        host.phys_write(BackingAddr::new(0x2000), &[7; 64]);
        host.phys_write(BackingAddr::new(0x3000), &[9; 48]);
        let r = call(
            &kvm,
            &host,
            leaf::MR_RTMR_EXTEND,
            &[(gpr::RCX, 0x3000), (gpr::RDX, 2)],
        );
        assert_eq!(r.gpr[gpr::RAX], 0);
        let r = call(
            &kvm,
            &host,
            leaf::MR_RTMR_EXTEND,
            &[(gpr::RCX, 0x3000), (gpr::RDX, 4)],
        );
        assert_eq!(r.gpr[gpr::RAX], operand_invalid(status::OPERAND_RDX));
        let r = call(
            &kvm,
            &host,
            leaf::MR_REPORT,
            &[(gpr::RCX, 0x4000), (gpr::RDX, 0x2000)],
        );
        assert_eq!(r.gpr[gpr::RAX], 0);
        let mut rep = [0u8; 1024];
        host.phys_read(BackingAddr::new(0x4000), &mut rep);
        assert_eq!(rep[0], 0x81);
        assert_eq!(&rep[128..192], &[7; 64]);
        assert_eq!(&rep[224..256], &[0; 32], "MAC: unsigned");
        assert_eq!(
            u64::from_le_bytes(rep[512..520].try_into().unwrap()),
            TdAttributes::SEPT_VE_DISABLE
        );
        let expect = sha384(&[&[0u8; 48], &[9u8; 48]]);
        assert_eq!(&rep[512 + 208 + 96..512 + 208 + 144], &expect, "RTMR2");
        assert_eq!(&rep[80..128], &sha384(&[&rep[512..]]), "TEE_INFO_HASH");
        // MRTD: one "MEM.PAGE.ADD" block per page added at launch (all of
        // the 16 MiB), computed when first reported.
        let mut mrtd = Sha384::new();
        for gfn in 0..MEM / PAGE_SIZE {
            let mut block = [0u8; 128];
            block[..12].copy_from_slice(b"MEM.PAGE.ADD");
            block[16..24].copy_from_slice(&(gfn * PAGE_SIZE).to_le_bytes());
            mrtd.update(block);
        }
        let mrtd: Sha384Digest = mrtd.finalize().into();
        assert_eq!(&rep[528..576], &mrtd, "MRTD");
        for (rcx, rdx, r8, op) in [
            (0x4100, 0x2000, 0, status::OPERAND_RCX),
            (0x4000, 0x2010, 0, status::OPERAND_RDX),
            (SHARED | 0x4000, 0x2000, 0, status::OPERAND_RCX),
            (0x4000, 0x2000, 1, status::OPERAND_R8),
        ] {
            let r = call(
                &kvm,
                &host,
                leaf::MR_REPORT,
                &[(gpr::RCX, rcx), (gpr::RDX, rdx), (gpr::R8, r8)],
            );
            assert_eq!(r.gpr[gpr::RAX], operand_invalid(op));
        }
        // GetQuote in a shared buffer: service unavailable.
        vmcall(&kvm, &host, vmcall::MAP_GPA, &[SHARED | 0x10_0000, 0x1000]);
        host.phys_write(BackingAddr::new(0x10_0000), &1u64.to_le_bytes());
        let r = vmcall(
            &kvm,
            &host,
            vmcall::GET_QUOTE,
            &[SHARED | 0x10_0000, 0x1000],
        );
        assert_eq!(r.gpr[gpr::R10], 0);
        let mut st = [0u8; 8];
        host.phys_read(BackingAddr::new(0x10_0008), &mut st);
        assert_eq!(u64::from_le_bytes(st), vmcall::QUOTE_SERVICE_UNAVAILABLE);
        assert_eq!(
            vmcall(&kvm, &host, vmcall::GET_QUOTE, &[0x10_0000, 0x1000]).gpr[gpr::R10],
            vmcall::INVALID_OPERAND
        );
        assert_eq!(
            vmcall(&kvm, &host, vmcall::GET_QUOTE, &[SHARED | 0x10_0000, 0x800]).gpr[gpr::R10],
            vmcall::ALIGN_ERROR
        );
        // ReportFatalError with a message in R14.. .
        let msg = u64::from_le_bytes(*b"boom!\0\0\0");
        let r = call(
            &kvm,
            &host,
            leaf::VP_VMCALL,
            &[
                (gpr::RCX, 0xfc00),
                (gpr::R11, vmcall::REPORT_FATAL_ERROR),
                (gpr::R14, msg),
            ],
        );
        assert_eq!(r.gpr[gpr::R10], 0);
        assert!(host.panicked.get());
    }
}
