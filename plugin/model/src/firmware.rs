//! What a confidential guest's firmware image tells the VMM about its
//! launch: the GUIDed table at the end of an OVMF image, with the SEV
//! metadata (the pages an SNP launch validates, and where the CPUID and
//! secrets pages go), the SEV-ES reset block (where APs start) and the
//! TDVF metadata (what a TD's launch adds and measures).
//!
//! Layouts, as QEMU reads them (hw/i386/pc_sysfw_ovmf.c, target/i386/sev.c,
//! QEMU 10.1's hw/i386/tdvf.c) and OVMF writes them
//! (OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.asm):
//!
//! - the table ends 32 bytes before the image's end with a footer: a u16
//!   length of the whole table (footer included) and the footer GUID
//!   96b582de-1fb2-45f7-baea-a366c55a082d; entries run backwards from
//!   there, each its data, a u16 length (data + 18) and its GUID;
//! - SEV metadata: entry dc886566-984a-4798-a75e-5585a7bf67cc holds a u32
//!   offset from the image's end to "ASEV", u32 length, u32 version, u32
//!   count, then (u32 base, u32 length, u32 type) per section;
//! - SEV-ES reset block: entry 00f771de-1a7e-4fcb-890e-68c77e2fb44e holds
//!   the u32 address where APs start;
//! - TDVF metadata: entry e47a6535-984a-4798-865e-4685a7bf8ec2 holds a u32
//!   offset from the image's end to "TDVF", u32 length, u32 version (1),
//!   u32 count, then 32-byte sections (u32 data offset, u32 raw size, u64
//!   address, u64 size, u32 type, u32 attributes).

/// A GUID in the byte order firmware stores it (the first three fields
/// little-endian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// The GUID of its canonical text form's fields.
    pub const fn new(a: u32, b: u16, c: u16, d: [u8; 8]) -> Guid {
        let a = a.to_le_bytes();
        let b = b.to_le_bytes();
        let c = c.to_le_bytes();
        Guid([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5],
            d[6], d[7],
        ])
    }
}

/// The OVMF table's footer.
pub const TABLE_FOOTER: Guid = Guid::new(
    0x96b5_82de,
    0x1fb2,
    0x45f7,
    [0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d],
);
/// The SEV metadata's offset.
pub const SEV_METADATA: Guid = Guid::new(
    0xdc88_6566,
    0x984a,
    0x4798,
    [0xa7, 0x5e, 0x55, 0x85, 0xa7, 0xbf, 0x67, 0xcc],
);
/// The SEV-ES reset block (QEMU's SEV_INFO_BLOCK_GUID).
pub const SEV_ES_RESET_BLOCK: Guid = Guid::new(
    0x00f7_71de,
    0x1a7e,
    0x4fcb,
    [0x89, 0x0e, 0x68, 0xc7, 0x7e, 0x2f, 0xb4, 0x4e],
);
/// The TDVF metadata's offset (QEMU's TDX_METADATA_OFFSET_GUID).
pub const TDX_METADATA: Guid = Guid::new(
    0xe47a_6535,
    0x984a,
    0x4798,
    [0x86, 0x5e, 0x46, 0x85, 0xa7, 0xbf, 0x8e, 0xc2],
);

/// Bytes after the table footer: the reset vector and its alignment.
const AFTER_FOOTER: usize = 32;

/// Why an image's metadata cannot be used (one line each).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FirmwareError {
    /// The table's or an entry's length points outside the image.
    BadTable,
    /// The metadata lies outside the image or is too short for its count.
    BadMetadata(&'static str),
    /// A TDVF section breaks a rule of QEMU's `tdvf_parse_and_check_section_entry()`.
    BadTdvfSection(usize, &'static str),
}

impl std::fmt::Display for FirmwareError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FirmwareError::BadTable => f.write_str("the OVMF GUIDed table is corrupt"),
            FirmwareError::BadMetadata(what) => write!(f, "the {what} metadata is corrupt"),
            FirmwareError::BadTdvfSection(i, why) => write!(f, "TDVF section {i}: {why}"),
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The entries of an image's OVMF table, as (GUID, data); empty if the
/// image has no table (not OVMF).
pub fn ovmf_table(image: &[u8]) -> Result<Vec<(Guid, &[u8])>, FirmwareError> {
    let Some(footer) = image.len().checked_sub(AFTER_FOOTER + 16) else {
        return Ok(Vec::new());
    };
    if image[footer..footer + 16] != TABLE_FOOTER.0 || footer < 2 {
        return Ok(Vec::new());
    }
    let total = usize::from(u16_at(image, footer - 2).ok_or(FirmwareError::BadTable)?);
    let mut len = total
        .checked_sub(18)
        .filter(|&l| l <= footer - 2)
        .ok_or(FirmwareError::BadTable)?;
    let mut end = footer - 2;
    let mut out = Vec::new();
    while len >= 18 {
        let guid = Guid(image[end - 16..end].try_into().expect("16 bytes"));
        let entry = usize::from(u16_at(image, end - 18).ok_or(FirmwareError::BadTable)?);
        if entry < 18 || entry > len {
            return Err(FirmwareError::BadTable);
        }
        out.push((guid, &image[end - entry..end - 18]));
        end -= entry;
        len -= entry;
    }
    Ok(out)
}

/// The data of `guid`'s entry in the image's OVMF table.
fn entry(image: &[u8], guid: Guid) -> Result<Option<&[u8]>, FirmwareError> {
    Ok(ovmf_table(image)?
        .into_iter()
        .find(|(g, _)| *g == guid)
        .map(|(_, d)| d))
}

/// The metadata an entry points at: its start in the image.
fn metadata_start(
    image: &[u8],
    guid: Guid,
    what: &'static str,
) -> Result<Option<usize>, FirmwareError> {
    let Some(data) = entry(image, guid)? else {
        return Ok(None);
    };
    let offset = u32_at(data, 0).ok_or(FirmwareError::BadMetadata(what))? as usize;
    image
        .len()
        .checked_sub(offset)
        .filter(|&s| s + 16 <= image.len())
        .map(Some)
        .ok_or(FirmwareError::BadMetadata(what))
}

/// What an SEV metadata section is (QEMU's `ovmf_sev_metadata_desc_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SevSectionKind {
    /// Memory the VMM validates at launch (SNP_LAUNCH_UPDATE, page type ZERO).
    SnpSecMem,
    /// Where the secrets page goes (page type SECRETS).
    SnpSecrets,
    /// Where the CPUID page goes (page type CPUID).
    Cpuid,
    /// The SVSM calling area.
    SvsmCaa,
    /// The kernel hashes of a measured direct boot.
    SnpKernelHashes,
    /// A type this parser does not know.
    Other(u32),
}

impl SevSectionKind {
    fn from_raw(t: u32) -> SevSectionKind {
        match t {
            1 => SevSectionKind::SnpSecMem,
            2 => SevSectionKind::SnpSecrets,
            3 => SevSectionKind::Cpuid,
            4 => SevSectionKind::SvsmCaa,
            0x10 => SevSectionKind::SnpKernelHashes,
            t => SevSectionKind::Other(t),
        }
    }
}

/// One SEV metadata section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SevSection {
    /// Its guest-physical base.
    pub base: u64,
    /// Its length in bytes.
    pub len: u64,
    /// What the VMM does with it.
    pub kind: SevSectionKind,
}

/// The SEV metadata ("ASEV") of an OVMF image; `None` if it has none.
pub fn sev_metadata(image: &[u8]) -> Result<Option<Vec<SevSection>>, FirmwareError> {
    const WHAT: &str = "SEV";
    let Some(start) = metadata_start(image, SEV_METADATA, WHAT)? else {
        return Ok(None);
    };
    let m = &image[start..];
    if &m[0..4] != b"ASEV" {
        return Err(FirmwareError::BadMetadata(WHAT));
    }
    let count = u32_at(m, 12).ok_or(FirmwareError::BadMetadata(WHAT))? as usize;
    (0..count)
        .map(|i| {
            let at = 16 + 12 * i;
            match (u32_at(m, at), u32_at(m, at + 4), u32_at(m, at + 8)) {
                (Some(base), Some(len), Some(kind)) => Ok(SevSection {
                    base: u64::from(base),
                    len: u64::from(len),
                    kind: SevSectionKind::from_raw(kind),
                }),
                _ => Err(FirmwareError::BadMetadata(WHAT)),
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Where an SEV-ES image's APs start (the reset block); `None` if it has
/// no reset block.
pub fn sev_es_reset_vector(image: &[u8]) -> Result<Option<u32>, FirmwareError> {
    match entry(image, SEV_ES_RESET_BLOCK)? {
        Some(d) => u32_at(d, 0)
            .map(Some)
            .ok_or(FirmwareError::BadMetadata("SEV-ES reset block")),
        None => Ok(None),
    }
}

/// What a TDVF section is (TDVF design guide, QEMU's tdvf.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TdvfSectionKind {
    /// The boot firmware volume: copied into the TD and measured.
    Bfv,
    /// The configuration firmware volume (variables).
    Cfv,
    /// Where the VMM writes the TD HOB.
    TdHob,
    /// Temporary memory the firmware uses before it accepts memory.
    TempMem,
}

/// One TDVF section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TdvfSection {
    /// Where its data starts in the image.
    pub data_offset: u32,
    /// How much of the image it copies.
    pub data_len: u32,
    /// Its guest-physical address.
    pub address: u64,
    /// Its size in the TD.
    pub size: u64,
    /// What it is.
    pub kind: TdvfSectionKind,
    /// Attribute MR_EXTEND: measured into MRTD with TDH.MR.EXTEND.
    pub mr_extend: bool,
    /// Attribute PAGE_AUG: added after launch (TDH.MEM.PAGE.AUG) instead.
    pub page_aug: bool,
}

/// The TDVF metadata of an OVMF image, checked as QEMU checks it; `None`
/// if it has none.
pub fn tdvf_metadata(image: &[u8]) -> Result<Option<Vec<TdvfSection>>, FirmwareError> {
    const WHAT: &str = "TDVF";
    let Some(start) = metadata_start(image, TDX_METADATA, WHAT)? else {
        return Ok(None);
    };
    let m = &image[start..];
    let bad = FirmwareError::BadMetadata(WHAT);
    if &m[0..4] != b"TDVF" || u32_at(m, 8) != Some(1) {
        return Err(bad);
    }
    let len = u32_at(m, 4).ok_or(bad.clone())? as usize;
    let count = u32_at(m, 12).ok_or(bad.clone())? as usize;
    if count < 2 || len != 16 + 32 * count || len > m.len() {
        return Err(bad);
    }
    let mut out = Vec::new();
    for i in 0..count {
        let s = 16 + 32 * i;
        let (Some(data_offset), Some(data_len), Some(address), Some(size), Some(kind), Some(attrs)) = (
            u32_at(m, s),
            u32_at(m, s + 4),
            u64_at(m, s + 8),
            u64_at(m, s + 16),
            u32_at(m, s + 24),
            u32_at(m, s + 28),
        ) else {
            return Err(bad);
        };
        let section_err = |why| FirmwareError::BadTdvfSection(i, why);
        if size < u64::from(data_len) {
            return Err(section_err("its raw data is larger than its memory"));
        }
        if address % 4096 != 0 || size % 4096 != 0 {
            return Err(section_err("not page aligned"));
        }
        let kind = match kind {
            0 => TdvfSectionKind::Bfv,
            1 => TdvfSectionKind::Cfv,
            2 => TdvfSectionKind::TdHob,
            3 => TdvfSectionKind::TempMem,
            _ => return Err(section_err("a section type QEMU does not support")),
        };
        let copies = matches!(kind, TdvfSectionKind::Bfv | TdvfSectionKind::Cfv);
        if copies != (data_len != 0) {
            return Err(section_err(if copies {
                "a firmware volume without data"
            } else {
                "a memory section with data"
            }));
        }
        if copies && (data_offset as usize).saturating_add(data_len as usize) > image.len() {
            return Err(section_err("its data lies outside the image"));
        }
        out.push(TdvfSection {
            data_offset,
            data_len,
            address,
            size,
            kind,
            mr_extend: attrs & 1 != 0,
            page_aug: attrs & 2 != 0,
        });
    }
    Ok(Some(out))
}

/// An OVMF-style image of `size` bytes whose GUIDed table holds TDVF
/// metadata for `sections` (placed just below the table), everything else
/// zero: for tests and tools that need a firmware image of a given shape.
/// The section data the BFV/CFV entries point at is the caller's to fill.
pub fn tdvf_image(size: usize, sections: &[TdvfSection]) -> Vec<u8> {
    let mut meta = Vec::new();
    meta.extend_from_slice(b"TDVF");
    meta.extend_from_slice(&((16 + 32 * sections.len()) as u32).to_le_bytes());
    meta.extend_from_slice(&1u32.to_le_bytes());
    meta.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    for s in sections {
        let kind: u32 = match s.kind {
            TdvfSectionKind::Bfv => 0,
            TdvfSectionKind::Cfv => 1,
            TdvfSectionKind::TdHob => 2,
            TdvfSectionKind::TempMem => 3,
        };
        let attrs = u32::from(s.mr_extend) | u32::from(s.page_aug) << 1;
        for w in [s.data_offset, s.data_len] {
            meta.extend_from_slice(&w.to_le_bytes());
        }
        meta.extend_from_slice(&s.address.to_le_bytes());
        meta.extend_from_slice(&s.size.to_le_bytes());
        meta.extend_from_slice(&kind.to_le_bytes());
        meta.extend_from_slice(&attrs.to_le_bytes());
    }
    // The table: one entry (the metadata's offset from the image's end),
    // then its length and GUID, the table's length and the footer GUID.
    let table_len = 4 + 18 + 18;
    let table_at = size - AFTER_FOOTER - table_len;
    let meta_at = table_at - meta.len();
    let mut img = vec![0u8; size];
    img[meta_at..table_at].copy_from_slice(&meta);
    let mut table = Vec::new();
    table.extend_from_slice(&((size - meta_at) as u32).to_le_bytes());
    table.extend_from_slice(&22u16.to_le_bytes());
    table.extend_from_slice(&TDX_METADATA.0);
    table.extend_from_slice(&(table_len as u16).to_le_bytes());
    table.extend_from_slice(&TABLE_FOOTER.0);
    img[table_at..table_at + table_len].copy_from_slice(&table);
    img
}

/// An OVMF-style image of `size` bytes whose GUIDed table holds SEV
/// metadata for `sections` (base, length, type), placed just below the
/// table, and a SEV-ES reset block with `reset_eip` if given; everything
/// else zero: for tests and tools that need an SNP firmware image.
pub fn sev_image(size: usize, sections: &[(u32, u32, u32)], reset_eip: Option<u32>) -> Vec<u8> {
    let mut meta = Vec::new();
    meta.extend_from_slice(b"ASEV");
    for w in [16 + 12 * sections.len() as u32, 1, sections.len() as u32] {
        meta.extend_from_slice(&w.to_le_bytes());
    }
    for &(base, len, kind) in sections {
        for w in [base, len, kind] {
            meta.extend_from_slice(&w.to_le_bytes());
        }
    }
    // Entries as (GUID, data), nearest the footer first.
    let mut entries: Vec<(Guid, Vec<u8>)> = Vec::new();
    if let Some(eip) = reset_eip {
        entries.push((SEV_ES_RESET_BLOCK, eip.to_le_bytes().to_vec()));
    }
    let sev = !sections.is_empty();
    if sev {
        entries.push((SEV_METADATA, Vec::new()));
    }
    let mut table_len = 18;
    for (_, d) in &entries {
        table_len += 18 + d.len().max(4);
    }
    let table_at = size - AFTER_FOOTER - table_len;
    let meta_at = table_at - meta.len();
    if sev {
        let offset = ((size - meta_at) as u32).to_le_bytes().to_vec();
        entries.last_mut().expect("the metadata entry").1 = offset;
    }
    let mut table = Vec::new();
    for (g, d) in entries.iter().rev() {
        table.extend_from_slice(d);
        table.extend_from_slice(&((d.len() + 18) as u16).to_le_bytes());
        table.extend_from_slice(&g.0);
    }
    table.extend_from_slice(&(table_len as u16).to_le_bytes());
    table.extend_from_slice(&TABLE_FOOTER.0);
    let mut img = vec![0u8; size];
    if sev {
        img[meta_at..table_at].copy_from_slice(&meta);
    }
    img[table_at..table_at + table_len].copy_from_slice(&table);
    img
}

/// Checks what an SNP launch from OVMF needs beyond the metadata's form
/// (QEMU's target/i386/sev.c): the CPUID and secrets pages, every section
/// within the low 4 GiB (the metadata's fields are 32-bit) and not empty,
/// and the SEV-ES reset block the APs' VMSAs start at. Returns where APs
/// start.
pub fn sev_check_layout(sections: &[SevSection], reset_eip: Option<u32>) -> Result<u32, String> {
    for kind in [SevSectionKind::Cpuid, SevSectionKind::SnpSecrets] {
        if !sections.iter().any(|s| s.kind == kind) {
            return Err(format!("its SEV metadata has no {kind:?} section"));
        }
    }
    if let Some(s) = sections
        .iter()
        .find(|s| s.len == 0 || s.base + s.len > 1 << 32)
    {
        return Err(format!(
            "its SEV metadata section {:?} at {:#x} (+{:#x}) is empty or crosses 4 GiB",
            s.kind, s.base, s.len
        ));
    }
    reset_eip.ok_or_else(|| "it has no SEV-ES reset block for the APs".into())
}

/// Checks the rules a TD launch needs beyond QEMU's per-section ones: at
/// least one boot firmware volume, exactly one TD HOB (the address the
/// vCPUs get in RCX and R8), and no two sections sharing a page (each page
/// is added once: TDH.MEM.PAGE.ADD of a page already in the Secure EPT
/// fails).
pub fn tdvf_check_layout(sections: &[TdvfSection]) -> Result<(), String> {
    // No GPA reaches 2^52 (the widest GPAW).
    if let Some(i) = sections.iter().position(|s| {
        s.address
            .checked_add(s.size)
            .is_none_or(|end| end > 1 << 52)
    }) {
        return Err(format!(
            "TDVF section {i} lies beyond the guest-physical address space"
        ));
    }
    let count = |k| sections.iter().filter(|s| s.kind == k).count();
    if count(TdvfSectionKind::Bfv) == 0 {
        return Err("the TDVF metadata has no boot firmware volume (BFV)".into());
    }
    if count(TdvfSectionKind::TdHob) != 1 {
        return Err("the TDVF metadata must have exactly one TD_HOB section".into());
    }
    let mut spans: Vec<(u64, u64, usize)> = sections
        .iter()
        .enumerate()
        .map(|(i, s)| (s.address, s.address.saturating_add(s.size), i))
        .collect();
    spans.sort_unstable();
    for w in spans.windows(2) {
        if w[1].0 < w[0].1 {
            let (a, b) = (w[0].2.min(w[1].2), w[0].2.max(w[1].2));
            return Err(format!(
                "TDVF sections {a} and {b} overlap at {:#x}",
                w[1].0
            ));
        }
    }
    Ok(())
}

/// MRTD after a TD's launch from TDVF `image` with `sections` (TDX
/// module ABI, MRTD: each TDH.MEM.PAGE.ADD extends a 128-byte block with
/// "MEM.PAGE.ADD" and the page's GPA at byte 16; each TDH.MR.EXTEND a
/// block with "MR.EXTEND" and the chunk's GPA, then the chunk's 256
/// bytes). Sections go in metadata order, each page added and then, for
/// MR_EXTEND sections, extended in 16 chunks (KVM's
/// `tdx_gmem_post_populate()`); PAGE_AUG sections are not added. A page
/// holds the section's data from the image (BFV, CFV), `hob` (the TD
/// HOB), or zeros, and zeros past the data.
pub fn tdvf_mrtd(image: &[u8], sections: &[TdvfSection], hob: &[u8]) -> [u8; 48] {
    use sha2::{Digest, Sha384};
    fn block(what: &[u8], gpa: u64) -> [u8; 128] {
        let mut b = [0u8; 128];
        b[..what.len()].copy_from_slice(what);
        b[16..24].copy_from_slice(&gpa.to_le_bytes());
        b
    }
    let mut mrtd = Sha384::new();
    for s in sections.iter().filter(|s| !s.page_aug) {
        let data: &[u8] = match s.kind {
            TdvfSectionKind::Bfv | TdvfSectionKind::Cfv => {
                let start = (s.data_offset as usize).min(image.len());
                let end = start.saturating_add(s.data_len as usize).min(image.len());
                &image[start..end]
            }
            TdvfSectionKind::TdHob => hob,
            TdvfSectionKind::TempMem => &[],
        };
        for offset in (0..s.size).step_by(4096) {
            let gpa = s.address + offset;
            mrtd.update(block(b"MEM.PAGE.ADD", gpa));
            if !s.mr_extend {
                continue;
            }
            let mut page = [0u8; 4096];
            let from = (offset as usize).min(data.len());
            let to = (offset as usize + 4096).min(data.len());
            page[..to - from].copy_from_slice(&data[from..to]);
            for (i, chunk) in page.chunks(256).enumerate() {
                mrtd.update(block(b"MR.EXTEND", gpa + (i * 256) as u64));
                mrtd.update(chunk);
            }
        }
    }
    mrtd.finalize().into()
}

/// What the TD HOB says about a range of the TD's RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TdRam {
    /// Added at launch (TDH.MEM.PAGE.ADD): ordinary system memory.
    Added,
    /// Left for the guest to accept (TDG.MEM.PAGE.ACCEPT).
    Unaccepted,
}

/// A range of the TD's RAM, `[start, end)`, in the TD HOB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TdRamEntry {
    /// The first byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// Added or not.
    pub kind: TdRam,
}

/// The TD's RAM as the TD HOB lists it, in address order: the RAM ranges
/// `ram`, unaccepted except where a section the launch adds (`added`)
/// covers them (QEMU 10.1 `tdx_init_ram_entries()` and
/// `tdx_accept_ram_range()`). Both inputs are `[start, end)` pairs.
pub fn td_ram_entries(ram: &[(u64, u64)], added: &[(u64, u64)]) -> Vec<TdRamEntry> {
    let mut ram = ram.to_vec();
    ram.sort_unstable();
    let mut added = added.to_vec();
    added.sort_unstable();
    let mut out = Vec::new();
    let mut push = |start: u64, end: u64, kind| {
        if start < end {
            match out.last_mut() {
                Some(TdRamEntry {
                    end: e, kind: k, ..
                }) if *e == start && *k == kind => *e = end,
                _ => out.push(TdRamEntry { start, end, kind }),
            }
        }
    };
    for (start, end) in ram {
        let mut at = start;
        for &(a, b) in &added {
            let (a, b) = (a.max(at), b.min(end));
            if a >= b {
                continue;
            }
            push(at, a, TdRam::Unaccepted);
            push(a, b, TdRam::Added);
            at = b;
        }
        push(at, end, TdRam::Unaccepted);
    }
    out
}

/// EFI HOB types and resource types (UEFI PI spec vol. 3, 5.2-5.5).
mod hob {
    pub const HANDOFF: u16 = 0x0001;
    pub const RESOURCE_DESCRIPTOR: u16 = 0x0003;
    pub const END_OF_HOB_LIST: u16 = 0xffff;
    pub const HANDOFF_TABLE_VERSION: u32 = 0x0009;
    pub const RESOURCE_SYSTEM_MEMORY: u32 = 0x0000;
    pub const RESOURCE_MEMORY_UNACCEPTED: u32 = 0x0007;
    /// PRESENT | INITIALIZED | TESTED: what QEMU gives both kinds.
    pub const ATTRIBUTES: u32 = 0x0000_0007;
    pub const HANDOFF_LEN: usize = 56;
    pub const RESOURCE_LEN: usize = 48;
    pub const END_LEN: usize = 8;
}

/// The TD HOB a TD's firmware finds at `hob_gpa` (TDVF design guide, "TD
/// HOB"; laid out as QEMU 10.1's `tdvf_hob_create()` does): a PHIT whose
/// EfiEndOfHobList is the guest address just past the list, one resource
/// descriptor per RAM entry (system memory for added ranges, unaccepted
/// memory for the rest), and the end-of-list HOB. `Err` if it does not fit
/// in the section's `hob_size` bytes.
pub fn td_hob(hob_gpa: u64, hob_size: u64, ram: &[TdRamEntry]) -> Result<Vec<u8>, String> {
    let len = hob::HANDOFF_LEN + hob::RESOURCE_LEN * ram.len() + hob::END_LEN;
    if len as u64 > hob_size {
        return Err(format!(
            "the TD HOB needs {len} bytes for {} RAM ranges but its TDVF section has {hob_size}",
            ram.len()
        ));
    }
    let mut out = Vec::with_capacity(len);
    let header = |out: &mut Vec<u8>, kind: u16, len: usize| {
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&(len as u16).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
    };
    header(&mut out, hob::HANDOFF, hob::HANDOFF_LEN);
    out.extend_from_slice(&hob::HANDOFF_TABLE_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // BootMode: full configuration
    out.extend_from_slice(&[0; 32]); // EfiMemoryTop .. EfiFreeMemoryBottom: unused
    out.extend_from_slice(&(hob_gpa + len as u64).to_le_bytes());
    for e in ram {
        header(&mut out, hob::RESOURCE_DESCRIPTOR, hob::RESOURCE_LEN);
        out.extend_from_slice(&[0; 16]); // Owner: the zero GUID
        let kind = match e.kind {
            TdRam::Added => hob::RESOURCE_SYSTEM_MEMORY,
            TdRam::Unaccepted => hob::RESOURCE_MEMORY_UNACCEPTED,
        };
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&hob::ATTRIBUTES.to_le_bytes());
        out.extend_from_slice(&e.start.to_le_bytes());
        out.extend_from_slice(&(e.end - e.start).to_le_bytes());
    }
    header(&mut out, hob::END_OF_HOB_LIST, hob::END_LEN);
    debug_assert_eq!(out.len(), len);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image of `size` bytes whose table holds `entries` (GUID, data),
    /// the first one nearest the footer, as OVMF lays them out.
    fn image(size: usize, entries: &[(Guid, Vec<u8>)]) -> Vec<u8> {
        let mut table = Vec::new();
        for (g, d) in entries.iter().rev() {
            table.extend_from_slice(d);
            table.extend_from_slice(&((d.len() + 18) as u16).to_le_bytes());
            table.extend_from_slice(&g.0);
        }
        table.extend_from_slice(&((table.len() + 18) as u16).to_le_bytes());
        table.extend_from_slice(&TABLE_FOOTER.0);
        let mut img = vec![0u8; size];
        let at = size - AFTER_FOOTER - table.len();
        img[at..at + table.len()].copy_from_slice(&table);
        img
    }

    fn put(img: &mut [u8], at: usize, words: &[u32]) {
        for (i, w) in words.iter().enumerate() {
            img[at + 4 * i..at + 4 * i + 4].copy_from_slice(&w.to_le_bytes());
        }
    }

    #[test]
    fn guids_are_stored_little_endian() {
        // 96b582de-1fb2-45f7-... as the bytes OVMF writes.
        assert_eq!(
            &TABLE_FOOTER.0[..8],
            &[0xde, 0x82, 0xb5, 0x96, 0xb2, 0x1f, 0xf7, 0x45]
        );
    }

    #[test]
    fn no_table_no_metadata() {
        let img = vec![0u8; 8192];
        assert_eq!(ovmf_table(&img), Ok(Vec::new()));
        assert_eq!(sev_metadata(&img), Ok(None));
        assert_eq!(tdvf_metadata(&img), Ok(None));
        assert_eq!(ovmf_table(&[0u8; 10]), Ok(Vec::new()));
    }

    #[test]
    fn sev_metadata_and_reset_block() {
        let size = 0x10000;
        let mut img = image(
            size,
            &[
                (SEV_ES_RESET_BLOCK, 0xfffff000u32.to_le_bytes().to_vec()),
                (SEV_METADATA, 0x1000u32.to_le_bytes().to_vec()),
            ],
        );
        let m = size - 0x1000;
        img[m..m + 4].copy_from_slice(b"ASEV");
        put(&mut img, m + 4, &[16 + 36, 1, 3]);
        put(
            &mut img,
            m + 16,
            &[
                0x80_0000, 0x9000, 1, 0x80_d000, 0x1000, 2, 0x80_e000, 0x1000, 3,
            ],
        );
        let s = sev_metadata(&img).unwrap().unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(
            s[0],
            SevSection {
                base: 0x80_0000,
                len: 0x9000,
                kind: SevSectionKind::SnpSecMem
            }
        );
        assert_eq!(s[2].kind, SevSectionKind::Cpuid);
        assert_eq!(sev_es_reset_vector(&img), Ok(Some(0xfffff000)));
        assert_eq!(tdvf_metadata(&img), Ok(None));
        // A signature that is not ASEV, an offset past the start.
        img[m] = b'X';
        assert_eq!(sev_metadata(&img), Err(FirmwareError::BadMetadata("SEV")));
        let img = image(size, &[(SEV_METADATA, 0x20000u32.to_le_bytes().to_vec())]);
        assert_eq!(sev_metadata(&img), Err(FirmwareError::BadMetadata("SEV")));
    }

    fn tdvf(sections: &[[u32; 8]]) -> Vec<u8> {
        let size = 0x10000;
        let mut img = image(size, &[(TDX_METADATA, 0x2000u32.to_le_bytes().to_vec())]);
        let m = size - 0x2000;
        img[m..m + 4].copy_from_slice(b"TDVF");
        put(
            &mut img,
            m + 4,
            &[16 + 32 * sections.len() as u32, 1, sections.len() as u32],
        );
        for (i, s) in sections.iter().enumerate() {
            put(&mut img, m + 16 + 32 * i, s);
        }
        img
    }

    // DataOffset, RawDataSize, MemoryAddress (lo, hi), MemoryDataSize (lo,
    // hi), Type, Attributes.
    const BFV: [u32; 8] = [0x8000, 0x4000, 0xffff_c000, 0, 0x4000, 0, 0, 1];
    const HOB: [u32; 8] = [0, 0, 0x80_9000, 0, 0x2000, 0, 2, 0];
    const TEMP: [u32; 8] = [0, 0, 0x80_0000, 0, 0x9000, 0, 3, 0];

    #[test]
    fn tdvf_metadata_as_qemu_checks_it() {
        let s = tdvf_metadata(&tdvf(&[BFV, HOB, TEMP])).unwrap().unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(
            s[0],
            TdvfSection {
                data_offset: 0x8000,
                data_len: 0x4000,
                address: 0xffff_c000,
                size: 0x4000,
                kind: TdvfSectionKind::Bfv,
                mr_extend: true,
                page_aug: false
            }
        );
        assert_eq!(s[1].kind, TdvfSectionKind::TdHob);
        // QEMU's refusals: fewer than two sections, an unaligned address,
        // a firmware volume without data, memory with data, unknown types.
        let err = |sections: &[[u32; 8]]| tdvf_metadata(&tdvf(sections)).unwrap_err().to_string();
        assert!(err(&[BFV]).contains("TDVF metadata is corrupt"));
        let mut bad = HOB;
        bad[2] = 0x80_9001;
        assert!(err(&[BFV, bad]).contains("not page aligned"));
        let mut bad = BFV;
        bad[1] = 0;
        assert!(err(&[bad, HOB]).contains("without data"));
        let mut bad = TEMP;
        bad[1] = 0x10;
        assert!(err(&[BFV, bad]).contains("with data"));
        let mut bad = TEMP;
        bad[6] = 5;
        assert!(err(&[BFV, bad]).contains("does not support"));
        let mut bad = BFV;
        bad[0] = 0xfff0;
        assert!(err(&[bad, HOB]).contains("outside the image"));
    }

    #[test]
    fn a_corrupt_table_is_an_error_not_a_panic() {
        let mut img = image(0x4000, &[(SEV_METADATA, vec![0; 4])]);
        let footer = img.len() - AFTER_FOOTER - 16;
        // The entry's own length larger than the table.
        img[footer - 2 - 16 - 2] = 0xff;
        assert_eq!(ovmf_table(&img), Err(FirmwareError::BadTable));
        // The table's length larger than the image.
        img[footer - 2] = 0xff;
        img[footer - 1] = 0xff;
        assert_eq!(ovmf_table(&img), Err(FirmwareError::BadTable));
    }

    fn section(kind: TdvfSectionKind, address: u64, size: u64) -> TdvfSection {
        TdvfSection {
            data_offset: 0,
            data_len: 0,
            address,
            size,
            kind,
            mr_extend: false,
            page_aug: false,
        }
    }

    #[test]
    fn a_td_layout_needs_a_bfv_one_hob_and_no_overlap() {
        use TdvfSectionKind::*;
        let good = [
            section(Bfv, 0xffe0_0000, 0x20_0000),
            section(TdHob, 0x80_9000, 0x2000),
            section(TempMem, 0x80_b000, 0x2000),
        ];
        assert_eq!(tdvf_check_layout(&good), Ok(()));
        assert!(tdvf_check_layout(&good[1..]).unwrap_err().contains("BFV"));
        let huge = [good[0], good[1], section(TempMem, u64::MAX - 0xfff, 0x2000)];
        assert!(tdvf_check_layout(&huge)
            .unwrap_err()
            .contains("section 2 lies beyond"));
        let two_hobs = [good[0], good[1], section(TdHob, 0x90_0000, 0x1000)];
        assert!(tdvf_check_layout(&two_hobs).unwrap_err().contains("TD_HOB"));
        let overlap = [good[0], good[1], section(TempMem, 0x80_a000, 0x2000)];
        assert_eq!(
            tdvf_check_layout(&overlap),
            Err("TDVF sections 1 and 2 overlap at 0x80a000".into())
        );
    }

    #[test]
    fn ram_entries_split_around_what_the_launch_adds() {
        let ram = [
            (0x1_0000_0000, 0x1_4000_0000),
            (0, 0xa_0000),
            (0x10_0000, 0x8000_0000),
        ];
        let added = [
            (0x80_9000, 0x80_b000),
            (0x80_b000, 0x80_d000),
            (0x81_0000, 0x82_0000),
        ];
        let e = td_ram_entries(&ram, &added);
        let want = [
            (0, 0xa_0000, TdRam::Unaccepted),
            (0x10_0000, 0x80_9000, TdRam::Unaccepted),
            (0x80_9000, 0x80_d000, TdRam::Added),
            (0x80_d000, 0x81_0000, TdRam::Unaccepted),
            (0x81_0000, 0x82_0000, TdRam::Added),
            (0x82_0000, 0x8000_0000, TdRam::Unaccepted),
            (0x1_0000_0000, 0x1_4000_0000, TdRam::Unaccepted),
        ];
        let got: Vec<_> = e.iter().map(|e| (e.start, e.end, e.kind)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn the_td_hob_is_a_phit_the_resources_and_an_end() {
        let ram = [
            TdRamEntry {
                start: 0,
                end: 0x80_0000,
                kind: TdRam::Unaccepted,
            },
            TdRamEntry {
                start: 0x80_0000,
                end: 0x80_2000,
                kind: TdRam::Added,
            },
        ];
        let h = td_hob(0x80_9000, 0x2000, &ram).unwrap();
        assert_eq!(h.len(), 56 + 2 * 48 + 8);
        // PHIT: type 1, length 56, version 9, EfiEndOfHobList past the list.
        assert_eq!(u16_at(&h, 0), Some(1));
        assert_eq!(u16_at(&h, 2), Some(56));
        assert_eq!(u32_at(&h, 8), Some(9));
        assert_eq!(u64_at(&h, 48), Some(0x80_9000 + h.len() as u64));
        // The second resource: system memory, present|initialized|tested.
        let r = &h[56 + 48..];
        assert_eq!((u16_at(r, 0), u16_at(r, 2)), (Some(3), Some(48)));
        assert_eq!((u32_at(r, 24), u32_at(r, 28)), (Some(0), Some(7)));
        assert_eq!(
            (u64_at(r, 32), u64_at(r, 40)),
            (Some(0x80_0000), Some(0x2000))
        );
        assert_eq!(u32_at(&h[56..], 24), Some(7), "unaccepted");
        assert_eq!(u16_at(&h, h.len() - 8), Some(0xffff));
        assert!(td_hob(0x80_9000, 100, &ram)
            .unwrap_err()
            .contains("needs 160 bytes"));
    }

    #[test]
    fn a_built_tdvf_image_parses_back() {
        use TdvfSectionKind::*;
        let bfv = TdvfSection {
            data_offset: 0x1000,
            data_len: 0x2000,
            address: 0xffff_1000,
            size: 0x2000,
            kind: Bfv,
            mr_extend: true,
            page_aug: false,
        };
        let sections = [bfv, section(TdHob, 0x80_9000, 0x2000)];
        let img = tdvf_image(0x1_0000, &sections);
        assert_eq!(tdvf_metadata(&img), Ok(Some(sections.to_vec())));
        assert_eq!(ovmf_table(&img).map(|t| t.len()), Ok(1));
    }
}
