//! The guest's RAM as QEMU's memory listener reports it: the memslots a VMM
//! would give KVM (`KVM_SET_USER_MEMORY_REGION`), kept in the order QEMU
//! reports them.
//!
//! QEMU deletes a section before it adds its replacement, so a moved PCI BAR
//! is a deletion and a creation, exactly the sequence after which KVM zaps.

/// One RAM section of the guest-physical address space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RamSection {
    /// First guest-physical address, page aligned.
    pub gpa: u64,
    /// Size in bytes, a page multiple.
    pub size: u64,
    /// Guest writes are MMIO writes (ROM, ROM device in ROMD mode).
    pub readonly: bool,
    /// QEMU's memory-region name.
    pub name: String,
}

impl RamSection {
    /// One past the last address.
    pub fn end(&self) -> u64 {
        self.gpa.saturating_add(self.size)
    }

    /// Whether `gpa` lies in the section.
    pub fn contains(&self, gpa: u64) -> bool {
        (self.gpa..self.end()).contains(&gpa)
    }
}

/// What QEMU did to a section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemslotOp {
    /// The section appeared.
    Add,
    /// The section disappeared.
    Del,
}

/// Why a report from QEMU did not fit the current memslots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemslotReportError {
    /// An added section overlaps an existing one (KVM: `EEXIST`).
    Overlap {
        /// The section already there.
        existing: RamSection,
    },
    /// A deleted section matches no memslot. QEMU sends these for ROM
    /// devices that left ROMD mode before they were added; they are
    /// ignored.
    Unknown,
    /// An empty or wrapping section.
    Invalid,
}

/// The current memslots, sorted by address, and how many changes arrived.
#[derive(Debug, Default)]
pub struct Memslots {
    slots: Vec<RamSection>,
    /// Sections added so far.
    pub adds: u64,
    /// Sections deleted so far.
    pub dels: u64,
}

impl Memslots {
    /// No memslots.
    pub const EMPTY: Memslots = Memslots {
        slots: Vec::new(),
        adds: 0,
        dels: 0,
    };

    /// Applies one report from QEMU's memory listener.
    pub fn apply(&mut self, op: MemslotOp, s: RamSection) -> Result<(), MemslotReportError> {
        if s.size == 0 || s.gpa.checked_add(s.size).is_none() {
            return Err(MemslotReportError::Invalid);
        }
        match op {
            MemslotOp::Add => {
                if let Some(existing) = self
                    .slots
                    .iter()
                    .find(|o| o.gpa < s.end() && s.gpa < o.end())
                {
                    return Err(MemslotReportError::Overlap {
                        existing: existing.clone(),
                    });
                }
                let at = self.slots.partition_point(|o| o.gpa < s.gpa);
                self.slots.insert(at, s);
                self.adds += 1;
            }
            MemslotOp::Del => {
                let at = self
                    .slots
                    .iter()
                    .position(|o| o.gpa == s.gpa && o.size == s.size)
                    .ok_or(MemslotReportError::Unknown)?;
                self.slots.remove(at);
                self.dels += 1;
            }
        }
        Ok(())
    }

    /// The memslot containing `gpa`.
    pub fn find(&self, gpa: u64) -> Option<&RamSection> {
        let at = self.slots.partition_point(|s| s.end() <= gpa);
        self.slots.get(at).filter(|s| s.contains(gpa))
    }

    /// All memslots, by address.
    pub fn iter(&self) -> impl Iterator<Item = &RamSection> {
        self.slots.iter()
    }

    /// Guest RAM in bytes (read-only slots excluded).
    pub fn ram_bytes(&self) -> u64 {
        self.slots
            .iter()
            .filter(|s| !s.readonly)
            .map(|s| s.size)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(gpa: u64, size: u64) -> RamSection {
        RamSection {
            gpa,
            size,
            readonly: false,
            name: format!("s{gpa:x}"),
        }
    }

    #[test]
    fn a_bar_move_is_a_deletion_then_a_creation() {
        let mut m = Memslots::default();
        m.apply(MemslotOp::Add, section(0, 0xa0000)).unwrap();
        m.apply(MemslotOp::Add, section(0xfe00_0000, 0x10_0000))
            .unwrap();
        assert_eq!(m.find(0xfe00_1234).unwrap().gpa, 0xfe00_0000);
        m.apply(MemslotOp::Del, section(0xfe00_0000, 0x10_0000))
            .unwrap();
        m.apply(MemslotOp::Add, section(0x8000_0000, 0x10_0000))
            .unwrap();
        assert_eq!(m.find(0xfe00_1234), None);
        assert_eq!(m.find(0x800f_ffff).unwrap().gpa, 0x8000_0000);
        assert_eq!(m.find(0x8010_0000), None);
        assert_eq!((m.adds, m.dels), (3, 1));
        let order: Vec<u64> = m.iter().map(|s| s.gpa).collect();
        assert_eq!(order, [0, 0x8000_0000]);
    }

    #[test]
    fn overlaps_unknown_deletions_and_empty_sections_are_refused() {
        let mut m = Memslots::default();
        m.apply(MemslotOp::Add, section(0x1000, 0x2000)).unwrap();
        assert!(matches!(
            m.apply(MemslotOp::Add, section(0x2000, 0x1000)),
            Err(MemslotReportError::Overlap { .. })
        ));
        assert_eq!(
            m.apply(MemslotOp::Del, section(0x1000, 0x1000)),
            Err(MemslotReportError::Unknown)
        );
        assert_eq!(
            m.apply(MemslotOp::Add, section(0x9000, 0)),
            Err(MemslotReportError::Invalid)
        );
        assert_eq!(
            m.apply(MemslotOp::Add, section(u64::MAX - 0xfff, 0x2000)),
            Err(MemslotReportError::Invalid)
        );
        assert_eq!((m.adds, m.dels), (1, 0));
        assert_eq!(m.ram_bytes(), 0x2000);
    }
}
