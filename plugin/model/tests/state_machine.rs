//! A proptest state machine: random sequences of memslot create/move/delete,
//! attribute changes, accesses from several vCPUs through the TLB model, zaps
//! and flushes, checked after every step against a flat reference (one entry
//! per gfn) and against these invariants:
//!
//! - `leaf_in_live_memslot`: every leaf of every root lies inside one live
//!   memslot and maps that slot's backing, with the slot's permissions (so no
//!   huge page spans a memslot edge).
//! - `leaf_attrs_uniform`: a leaf of the direct root covers only shared
//!   frames, a leaf of the mirror root only private frames (so no huge page
//!   spans mixed attributes, and a conversion leaves no leaf of the alias
//!   being left).
//! - `delete_leaves_no_leaf_of_the_slot`: after a memslot delete or move, no
//!   root holds a leaf of the old range, under either policy.
//! - `slot_leafs_zaps_only_the_slot`: the slot-leafs policy removes no leaf
//!   outside the slot.
//! - `zap_all_leaves_nothing_reachable`: the zap-all policy leaves no direct
//!   leaf at all (default VMs).
//! - `conversion_zaps_only_what_it_must`: a conversion removes only leaves of
//!   the alias being left that overlap the range.
//! - `mirror_root_survives`: the mirror root keeps its id for the VM's
//!   life, and for TDX never loses a page table (leaves only) before
//!   teardown, where leaves go before non-leaves.
//! - `tlb_hit_explained`: every TLB hit is either what the reference says
//!   now, or stale while a flush token is still outstanding.
//! - `access_matches_reference`: every TLB fill or fault is what the flat
//!   reference predicts (exit kind, backing address, private, writable).
//! - `invalidate_seq_monotonic`: `mmu_invalidate_seq` never goes back.

use std::collections::{BTreeMap, BTreeSet};

use cvmem_model::*;
use proptest::prelude::*;

mod soak;

/// The gfn universe: 16 MiB, with accesses a bit beyond it (MMIO).
const UNIVERSE: u64 = 4096;
const VCPUS: u32 = 3;

#[derive(Clone, Debug)]
enum Action {
    SetSlot {
        id: u16,
        base: u64,
        npages: u64,
        backing_pfn: u64,
        readonly: bool,
        gmem: bool,
    },
    Move {
        id: u16,
        base: u64,
    },
    Delete {
        id: u16,
    },
    SetAttrs {
        start: u64,
        len: u64,
        private: bool,
    },
    Access {
        vcpu: u32,
        gfn: u64,
        private_alias: bool,
        access: Access,
    },
    ZapRange {
        start: u64,
        len: u64,
    },
    ZapAllFast,
    FlushAll,
    Export,
}

fn action() -> impl Strategy<Value = Action> {
    let gfn = prop_oneof![
        0..UNIVERSE,
        (0..UNIVERSE / 512).prop_map(|h| h * 512),
        UNIVERSE..UNIVERSE + 600
    ];
    let access = prop_oneof![Just(Access::Read), Just(Access::Write), Just(Access::Fetch)];
    prop_oneof![
        3 => (0u16..4, 0..UNIVERSE / 256, prop_oneof![Just(1u64), Just(16), Just(256), Just(512), Just(1024), Just(1536)],
              prop_oneof![Just(0x10_0000u64), Just(0x10_0001), Just(0x20_0000)], any::<bool>(), any::<bool>())
            .prop_map(|(id, b, npages, backing_pfn, ro, gmem)| Action::SetSlot {
                id,
                base: b * 256,
                npages,
                backing_pfn,
                readonly: ro && !gmem,
                gmem,
            }),
        1 => (0u16..4, 0..UNIVERSE / 256).prop_map(|(id, b)| Action::Move { id, base: b * 256 }),
        1 => (0u16..4).prop_map(|id| Action::Delete { id }),
        3 => (0..UNIVERSE, prop_oneof![Just(1u64), Just(7), Just(512), Just(1024), 1..2048u64], any::<bool>())
            .prop_map(|(start, len, private)| Action::SetAttrs { start, len, private }),
        10 => (0..VCPUS, gfn, any::<bool>(), access).prop_map(|(vcpu, gfn, private_alias, access)| Action::Access {
            vcpu,
            gfn,
            private_alias,
            access
        }),
        1 => (0..UNIVERSE, 1..1024u64).prop_map(|(start, len)| Action::ZapRange { start, len }),
        1 => Just(Action::ZapAllFast),
        2 => Just(Action::FlushAll),
        1 => Just(Action::Export),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RSlot {
    base: u64,
    npages: u64,
    backing_pfn: u64,
    readonly: bool,
    gmem: bool,
}

impl RSlot {
    fn contains(&self, gfn: u64) -> bool {
        (self.base..self.base + self.npages).contains(&gfn)
    }
    fn range(&self) -> GfnRange {
        GfnRange::from_start_len(Gfn::new(self.base), self.npages).unwrap()
    }
}

/// The flat reference: slots, and one attribute per gfn.
#[derive(Default)]
struct Reference {
    slots: BTreeMap<u16, RSlot>,
    private: BTreeSet<u64>,
}

#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Mapped {
        backing: u64,
        private: bool,
        writable: bool,
    },
    Fault(&'static str),
}

impl Reference {
    fn slot_of(&self, gfn: u64) -> Option<&RSlot> {
        self.slots.values().find(|s| s.contains(gfn))
    }

    fn expect(&self, t: VmType, gfn: u64, alias: Alias, access: Access) -> Expect {
        let attr_private = t.has_private_mem() && self.private.contains(&gfn);
        let is_private = match alias {
            Alias::Shared => false,
            Alias::Private => true,
            Alias::ByAttributes => attr_private,
        };
        if is_private != attr_private {
            return Expect::Fault("memory");
        }
        let Some(s) = self.slot_of(gfn) else {
            return Expect::Fault(if is_private { "memory" } else { "mmio" });
        };
        if is_private && !s.gmem {
            return Expect::Fault("memory");
        }
        if access == Access::Write && s.readonly {
            return Expect::Fault("ro");
        }
        Expect::Mapped {
            backing: (s.backing_pfn + gfn - s.base) << 12,
            private: is_private,
            writable: !s.readonly,
        }
    }
}

fn fault_name(f: &Stage2Fault) -> &'static str {
    match f {
        Stage2Fault::Mmio { .. } => "mmio",
        Stage2Fault::MemoryFault { .. } => "memory",
        Stage2Fault::ReadOnlyWrite { .. } => "ro",
        Stage2Fault::ReservedGpa { .. } => "reserved",
        Stage2Fault::VirtualizationException { .. } => "ve",
        Stage2Fault::SeptBlocked { .. } => "sept-blocked",
        Stage2Fault::VmDead { .. } => "vm-dead",
        Stage2Fault::PageNotValidated { .. } => "not-validated",
        Stage2Fault::RmpNestedPageFault { .. } => "rmp-npf",
        Stage2Fault::RmpSmashed { .. } => "rmp-smashed",
        Stage2Fault::RmpCiphertextRead { .. } => "ciphertext",
        Stage2Fault::GmemPrepareFailed { .. } => "gmem-prepare",
        Stage2Fault::OutOfTables => "oom",
        Stage2Fault::Dead => "dead",
    }
}

fn matches_expect(t: &Translation, e: &Expect) -> bool {
    matches!(e, Expect::Mapped { backing, private, writable }
        if t.backing.raw() == *backing && t.private == *private && t.perms.write == *writable)
}

fn leaf_set(vm: &Vm) -> BTreeSet<(u8, u64, u8)> {
    vm.leaves()
        .iter()
        .map(|l| (l.role as u8, l.range.start().raw(), l.level.number()))
        .collect()
}

fn key_role(k: &(u8, u64, u8)) -> RootRole {
    if k.0 == RootRole::Direct as u8 {
        RootRole::Direct
    } else {
        RootRole::Mirror
    }
}

fn key_range(k: &(u8, u64, u8)) -> GfnRange {
    let level = PageLevel::from_number(k.2).unwrap();
    GfnRange::from_start_len(Gfn::new(k.1), level.pages()).unwrap()
}

struct Machine {
    t: VmType,
    vm: Vm,
    reference: Reference,
    pending: Vec<Flush>,
    mirror: Option<RootId>,
    mirror_tables: u64,
    seq: u64,
    exported: bool,
}

impl Machine {
    fn new(t: VmType, quirk: bool) -> Machine {
        let vm = Vm::new(VmConfig {
            max_vcpus: VCPUS,
            max_level: PageLevel::Size2M,
            slot_zap_all_quirk: quirk,
            event_capacity: 1 << 16,
            ..VmConfig::new(t)
        })
        .unwrap();
        let mirror = vm.root_id(RootRole::Mirror);
        Machine {
            t,
            vm,
            reference: Reference::default(),
            pending: Vec::new(),
            mirror,
            mirror_tables: 1,
            seq: 0,
            exported: false,
        }
    }

    fn region(&self, id: u16, s: Option<RSlot>) -> MemoryRegion {
        let s = s.unwrap_or(RSlot {
            base: 0,
            npages: 0,
            backing_pfn: 0,
            readonly: false,
            gmem: false,
        });
        let mut flags = MemslotFlags::NONE;
        if s.readonly {
            flags = flags | MemslotFlags::READONLY;
        }
        if s.gmem {
            flags = flags | MemslotFlags::GUEST_MEMFD;
        }
        MemoryRegion {
            slot: MemslotId(id),
            flags,
            guest_phys_addr: Gpa::new(s.base << 12),
            memory_size: s.npages << 12,
            backing: BackingAddr::new(s.backing_pfn << 12),
        }
    }

    /// The errno KVM would give, or None if the request is accepted.
    fn expect_slot(&self, id: u16, new: Option<RSlot>) -> Option<&'static str> {
        let old = self.reference.slots.get(&id);
        let Some(n) = new else {
            return old.is_none().then_some("EINVAL");
        };
        if (n.readonly && !self.t.allows_readonly_memslots())
            || (n.gmem && !self.t.has_private_mem())
        {
            return Some("EINVAL");
        }
        if let Some(o) = old {
            if o.gmem
                || n.gmem
                || o.backing_pfn != n.backing_pfn
                || o.npages != n.npages
                || o.readonly != n.readonly
            {
                return Some("EINVAL");
            }
            if o.base == n.base {
                return None;
            }
        }
        let overlap = self
            .reference
            .slots
            .iter()
            .any(|(&i, s)| i != id && s.base < n.base + n.npages && n.base < s.base + s.npages);
        // A guest_memfd range (here: the backing) binds to one slot only
        // (kvm_gmem_bind(): EEXIST), for every VM type, and no other slot
        // may share its backing (cvmem's rule: private memory shares it).
        let bound = old.is_none()
            && self.reference.slots.iter().any(|(&i, s)| {
                i != id
                    && (s.gmem || n.gmem)
                    && s.backing_pfn < n.backing_pfn + n.npages
                    && n.backing_pfn < s.backing_pfn + s.npages
            });
        (overlap || bound).then_some("EEXIST")
    }

    fn slot_change(&mut self, id: u16, new: Option<RSlot>) -> Result<(), TestCaseError> {
        let want = self.expect_slot(id, new);
        let before = leaf_set(&self.vm);
        let old = self.reference.slots.get(&id).copied();
        let got = self.vm.set_memory_region(self.region(id, new));
        match (got, want) {
            (Ok(f), None) => {
                self.pending.push(f);
                match new {
                    Some(n) => self.reference.slots.insert(id, n),
                    None => self.reference.slots.remove(&id),
                };
                // A delete or move zaps the old range.
                if let Some(o) = old.filter(|o| new.is_none_or(|n| n.base != o.base)) {
                    let after = leaf_set(&self.vm);
                    for k in &after {
                        prop_assert!(
                            !key_range(k).overlaps(o.range()),
                            "delete_leaves_no_leaf_of_the_slot: {k:?} in {:?}",
                            o.range()
                        );
                    }
                    if self.vm.config().slot_zap_all() {
                        for k in &after {
                            prop_assert!(
                                key_role(k) != RootRole::Direct,
                                "zap_all_leaves_nothing_reachable: {k:?}"
                            );
                        }
                    } else {
                        for k in before.iter().filter(|k| !key_range(k).overlaps(o.range())) {
                            prop_assert!(
                                after.contains(k),
                                "slot_leafs_zaps_only_the_slot: lost {k:?}"
                            );
                        }
                    }
                }
            }
            (Err(e), Some(errno)) => prop_assert_eq!(e.errno(), errno, "{:?}", e),
            (got, want) => prop_assert!(false, "memslot {id} {new:?}: got {got:?}, want {want:?}"),
        }
        Ok(())
    }

    fn step(&mut self, a: &Action) -> Result<(), TestCaseError> {
        match *a {
            Action::SetSlot {
                id,
                base,
                npages,
                backing_pfn,
                readonly,
                gmem,
            } => {
                let n = RSlot {
                    base,
                    npages: npages.min(UNIVERSE - base).max(1),
                    backing_pfn,
                    readonly,
                    gmem,
                };
                self.slot_change(id, Some(n))?;
            }
            Action::Move { id, base } => {
                if let Some(o) = self.reference.slots.get(&id).copied() {
                    self.slot_change(id, Some(RSlot { base, ..o }))?;
                }
            }
            Action::Delete { id } => self.slot_change(id, None)?,
            Action::SetAttrs {
                start,
                len,
                private,
            } => {
                let range = GfnRange::from_start_len(Gfn::new(start), len).unwrap();
                let before = leaf_set(&self.vm);
                match self.vm.set_memory_attributes(range, private) {
                    Ok(f) => {
                        prop_assert!(self.t.has_private_mem() || !private);
                        self.pending.push(f);
                        for g in start..start + len {
                            if private {
                                self.reference.private.insert(g);
                            } else {
                                self.reference.private.remove(&g);
                            }
                        }
                        let leaving = if private {
                            RootRole::Direct
                        } else {
                            RootRole::Mirror
                        };
                        let after = leaf_set(&self.vm);
                        for k in &before {
                            let must_stay = key_role(k) != leaving || !key_range(k).overlaps(range);
                            if must_stay {
                                prop_assert!(
                                    after.contains(k),
                                    "conversion_zaps_only_what_it_must: lost {k:?}"
                                );
                            }
                        }
                    }
                    Err(e) => {
                        prop_assert!(private && !self.t.has_private_mem(), "{e:?}");
                    }
                }
            }
            Action::Access {
                vcpu,
                gfn,
                private_alias,
                access,
            } => {
                let alias = match self.t {
                    VmType::Default => Alias::Shared,
                    VmType::SwProtected => Alias::ByAttributes,
                    _ if private_alias => Alias::Private,
                    _ => Alias::Shared,
                };
                let gpa = self.vm.alias().encode(Gfn::new(gfn), alias);
                let want = self.reference.expect(self.t, gfn, alias, access);
                match self.vm.tlb_access(VcpuId(vcpu), gpa, access) {
                    TlbAccess::Filled(t) => {
                        prop_assert!(
                            matches_expect(&t, &want),
                            "access_matches_reference: {t:?} vs {want:?}"
                        );
                        prop_assert_eq!(t.gfn, Gfn::new(gfn));
                    }
                    TlbAccess::Fault(f) => {
                        prop_assert_eq!(
                            Expect::Fault(fault_name(&f)),
                            want,
                            "access_matches_reference"
                        );
                    }
                    TlbAccess::Hit { translation, stale } => {
                        if stale {
                            prop_assert!(
                                !self.pending.iter().all(|f| !f.is_needed()),
                                "tlb_hit_explained: stale hit {translation:?} with no flush outstanding"
                            );
                        } else {
                            prop_assert!(
                                matches_expect(&translation, &want),
                                "tlb_hit_explained: {translation:?} vs {want:?}"
                            );
                        }
                    }
                }
            }
            Action::ZapRange { start, len } => {
                let range = GfnRange::from_start_len(Gfn::new(start), len).unwrap();
                let f = self.vm.zap_gfn_range(range, ZapFilter::ALL);
                self.pending.push(f);
                for k in leaf_set(&self.vm) {
                    prop_assert!(!key_range(&k).overlaps(range), "zap left {k:?}");
                }
            }
            Action::ZapAllFast => {
                let f = self.vm.zap_all_fast();
                self.pending.push(f);
                prop_assert!(self.vm.leaves().iter().all(|l| l.role == RootRole::Mirror));
            }
            Action::FlushAll => {
                for f in self.pending.drain(..) {
                    self.vm.flush(f);
                }
            }
            Action::Export => {
                if !self.exported {
                    self.exported = true;
                    let id = self.vm.export_root(RootRole::Direct);
                    prop_assert!(id.is_some());
                }
            }
        }
        self.invariants()
    }

    fn invariants(&mut self) -> Result<(), TestCaseError> {
        let slots = self.vm.memslots();
        let attrs = self.vm.attributes();
        for l in self.vm.leaves() {
            let slot = slots.find(l.range.start());
            prop_assert!(
                slot.is_some_and(|s| s.range().contains_range(l.range)),
                "leaf_in_live_memslot: {l:?}"
            );
            let s = slot.unwrap();
            prop_assert_eq!(
                l.pfn,
                s.pfn_of(l.range.start()),
                "leaf_in_live_memslot: backing of {:?}",
                l
            );
            prop_assert_eq!(
                l.perms.write,
                !s.readonly(),
                "leaf_in_live_memslot: perms of {:?}",
                l
            );
            if self.t.has_private_mem() {
                let want = Some(l.role == RootRole::Mirror);
                prop_assert_eq!(
                    attrs.private_ranges().uniform(l.range),
                    want,
                    "leaf_attrs_uniform: {:?}",
                    l
                );
            } else {
                prop_assert_eq!(l.role, RootRole::Direct);
            }
        }
        prop_assert!(attrs.mixed_is_consistent());
        if let Some(m) = self.mirror {
            prop_assert_eq!(
                self.vm.root_id(RootRole::Mirror),
                Some(m),
                "mirror_root_survives"
            );
            if self.t == VmType::Tdx {
                let tables = self.vm.root_tables(RootRole::Mirror);
                prop_assert!(
                    tables >= self.mirror_tables,
                    "mirror_root_survives: tables went {} -> {tables}",
                    self.mirror_tables
                );
                self.mirror_tables = tables;
            }
        }
        let seq = self.vm.mmu_invalidate_seq();
        prop_assert!(seq >= self.seq, "invalidate_seq_monotonic");
        self.seq = seq;
        Ok(())
    }

    fn teardown(mut self) -> Result<(), TestCaseError> {
        let rx_events = Vm::events(&self.vm);
        let f = self.vm.teardown();
        self.pending.push(f);
        prop_assert!(self.vm.leaves().is_empty());
        prop_assert_eq!(self.vm.stats().live_tables, 0);
        if let Some(rx) = rx_events {
            // Leaves before non-leaves in the mirror root.
            let evs: Vec<Event> = rx.try_iter().map(|s| s.event).collect();
            let last_leaf = evs.iter().rposition(|e| {
                matches!(
                    e,
                    Event::Zap {
                        role: RootRole::Mirror,
                        reason: ZapReason::Teardown,
                        ..
                    }
                )
            });
            let first_nonleaf = evs.iter().position(|e| {
                matches!(
                    e,
                    Event::ZapNonLeaf {
                        role: RootRole::Mirror,
                        reason: ZapReason::Teardown,
                        ..
                    }
                )
            });
            if let (Some(l), Some(n)) = (last_leaf, first_nonleaf) {
                prop_assert!(
                    l < n,
                    "mirror_root_survives: non-leaf zapped before a leaf at teardown"
                );
            }
            if self.t == VmType::Tdx {
                prop_assert!(
                    !evs.iter().any(|e| matches!(e, Event::ZapNonLeaf { role: RootRole::Mirror, reason, .. } if *reason != ZapReason::Teardown)),
                    "mirror_root_survives: TDX mirror lost a table before teardown"
                );
            }
        }
        for f in self.pending.drain(..) {
            self.vm.flush(f);
        }
        Ok(())
    }
}

fn run(t: VmType, quirk: bool, actions: &[Action]) -> Result<(), TestCaseError> {
    let mut m = Machine::new(t, quirk);
    for a in actions {
        m.step(a)?;
    }
    m.teardown()
}

/// The invariants every machine here checks after every step.
const INVARIANTS: &[&str] = &[
    "leaf_in_live_memslot",
    "leaf_attrs_uniform",
    "delete_leaves_no_leaf_of_the_slot",
    "slot_leafs_zaps_only_the_slot",
    "zap_all_leaves_nothing_reachable",
    "conversion_zaps_only_what_it_must",
    "mirror_root_survives",
    "tlb_hit_explained",
    "access_matches_reference",
    "invalidate_seq_monotonic",
];

fn machine(t: VmType, quirk: bool, name: &'static str) {
    let m = soak::Machine {
        file: file!(),
        name,
        invariants: INVARIANTS,
    };
    soak::run(
        &m,
        prop::collection::vec(action(), 1..100),
        Vec::len,
        |actions| run(t, quirk, &actions),
    );
}

#[test]
fn default_vm_zap_all() {
    machine(VmType::Default, true, "default_vm_zap_all");
}

#[test]
fn default_vm_slot_leafs() {
    machine(VmType::Default, false, "default_vm_slot_leafs");
}

#[test]
fn sw_protected_vm() {
    machine(VmType::SwProtected, true, "sw_protected_vm");
}

#[test]
fn tdx_vm() {
    machine(VmType::Tdx, true, "tdx_vm");
}

#[test]
fn snp_vm() {
    machine(VmType::Snp, true, "snp_vm");
}
