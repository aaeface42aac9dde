//! A proptest state machine for an SEV-SNP VM with the RMP wired in: random
//! sequences of guest_memfd memslot create/delete, conversions, accesses
//! with and without the C-bit (through [`Vm::snp_stage2`]), PVALIDATE and
//! RMPADJUST, zaps and flushes. A reference tracks which gfns the guest
//! validated since their page was last discarded. Invariants, after every
//! step:
//!
//! - `no_private_access_unvalidated`: a private access (C-bit, fetch) that is
//!   allowed hits a page whose RMP entry is assigned to the guest, records
//!   that gfn, is validated, and the guest validated the gfn (reference)
//!   since the page was last discarded.
//! - `zap_keeps_validation`: a zap that frees nothing (`zap_gfn_range`,
//!   `zap_all_fast`) leaves every RMP entry as it was.
//! - `unassign_needs_fresh_pvalidate`: after a conversion to shared (or a
//!   memslot delete) the frames' pages are hypervisor-owned and the
//!   reference forgets their validation; a later private access needs a new
//!   PVALIDATE (checked by `no_private_access_unvalidated`).
//! - `private_never_device_or_host_writable`: a frame private by attributes
//!   or assigned in the RMP is never writable by a device, and an assigned
//!   page never by the host.
//! - `one_gpa_per_validated_page`: every assigned entry records the gfn its
//!   memslot maps it at, and no two validated entries record the same gfn.
//! - `nested_and_rmp_sizes_agree`: no private leaf is larger than the RMP
//!   page of its backing.
//! - `revoke_returns_flush`: a PVALIDATE that rescinds validation returns a
//!   flush.

use std::collections::{BTreeMap, BTreeSet};

use cvmem_model::*;
use proptest::prelude::*;

mod soak;

/// 8 MiB of gfns, two 2M-aligned candidate slot bases per 4M.
const UNIVERSE: u64 = 2048;
const VCPUS: u32 = 2;
const CTX: SnpAccessCtx = SnpAccessCtx {
    vmpl: Vmpl::Vmpl0,
    user: false,
    page_walk: false,
};

#[derive(Clone, Debug)]
enum Action {
    Create {
        id: u16,
        base: u64,
        npages: u64,
        backing_pfn: u64,
    },
    Delete {
        id: u16,
    },
    Convert {
        start: u64,
        len: u64,
        private: bool,
    },
    Access {
        vcpu: u32,
        gfn: u64,
        c_bit: bool,
        access: Access,
    },
    Pvalidate {
        vcpu: u32,
        gfn: u64,
        huge: bool,
        validate: bool,
    },
    Rmpadjust {
        vcpu: u32,
        gfn: u64,
        perms: u8,
    },
    ZapRange {
        start: u64,
        len: u64,
    },
    ZapAllFast,
    FlushAll,
}

fn action() -> impl Strategy<Value = Action> {
    let gfn = prop_oneof![0..UNIVERSE, (0..UNIVERSE / 512).prop_map(|h| h * 512),];
    let access = prop_oneof![Just(Access::Read), Just(Access::Write), Just(Access::Fetch)];
    prop_oneof![
        2 => (0u16..3, 0..UNIVERSE / 256, prop_oneof![Just(1u64), Just(256), Just(512), Just(1024)],
              prop_oneof![Just(0x10_0000u64), Just(0x10_0100), Just(0x20_0000), Just(0x30_0001)])
            .prop_map(|(id, b, npages, backing_pfn)| Action::Create {
                id,
                base: b * 256,
                npages: npages.min(UNIVERSE - b * 256),
                backing_pfn,
            }),
        1 => (0u16..3).prop_map(|id| Action::Delete { id }),
        3 => (gfn.clone(), prop_oneof![Just(1u64), Just(3), Just(512), 1..1024u64], any::<bool>())
            .prop_map(|(start, len, private)| Action::Convert { start, len: len.min(UNIVERSE - start).max(1), private }),
        8 => (0..VCPUS, gfn.clone(), any::<bool>(), access)
            .prop_map(|(vcpu, gfn, c_bit, access)| Action::Access { vcpu, gfn, c_bit, access }),
        5 => (0..VCPUS, gfn.clone(), any::<bool>(), prop_oneof![4 => Just(true), 1 => Just(false)])
            .prop_map(|(vcpu, gfn, huge, validate)| Action::Pvalidate { vcpu, gfn, huge, validate }),
        1 => (0..VCPUS, gfn.clone(), 0u8..16).prop_map(|(vcpu, gfn, perms)| Action::Rmpadjust { vcpu, gfn, perms }),
        1 => (gfn, 1..1024u64).prop_map(|(start, len)| Action::ZapRange { start, len }),
        1 => Just(Action::ZapAllFast),
        2 => Just(Action::FlushAll),
    ]
}

#[derive(Clone, Copy, Debug)]
struct RSlot {
    base: u64,
    npages: u64,
    backing_pfn: u64,
}

impl RSlot {
    fn range(&self) -> GfnRange {
        GfnRange::from_start_len(Gfn::new(self.base), self.npages).unwrap()
    }
}

struct Machine {
    vm: Vm,
    slots: BTreeMap<u16, RSlot>,
    /// Gfns the guest validated since their page was last discarded.
    validated: BTreeSet<u64>,
    pending: Vec<Flush>,
}

fn rmp_snapshot(vm: &Vm) -> Vec<(Pfn, RmpEntry)> {
    let mut out = Vec::new();
    for r in vm.snp_rmp_covered() {
        for p in r.start().raw()..r.end().raw() {
            out.push((Pfn::new(p), vm.snp_rmp_entry(Pfn::new(p)).unwrap()));
        }
    }
    out
}

impl Machine {
    fn new() -> Machine {
        Machine {
            vm: Vm::new(VmConfig {
                max_vcpus: VCPUS,
                max_level: PageLevel::Size2M,
                ..VmConfig::new(VmType::Snp)
            })
            .unwrap(),
            slots: BTreeMap::new(),
            validated: BTreeSet::new(),
            pending: Vec::new(),
        }
    }

    fn forget(&mut self, range: GfnRange) {
        for g in range.iter() {
            self.validated.remove(&g.raw());
        }
    }

    fn gpa(&self, gfn: u64, c_bit: bool) -> Gpa {
        let alias = if c_bit { Alias::Private } else { Alias::Shared };
        self.vm.alias().encode(Gfn::new(gfn), alias)
    }

    fn step(&mut self, a: &Action) -> Result<(), TestCaseError> {
        match *a {
            Action::Create {
                id,
                base,
                npages,
                backing_pfn,
            } => {
                let r = self.vm.set_memory_region(MemoryRegion {
                    slot: MemslotId(id),
                    flags: MemslotFlags::GUEST_MEMFD,
                    guest_phys_addr: Gpa::new(base << 12),
                    memory_size: npages << 12,
                    backing: BackingAddr::new(backing_pfn << 12),
                });
                if let Ok(f) = r {
                    self.pending.push(f);
                    let s = RSlot {
                        base,
                        npages,
                        backing_pfn,
                    };
                    // A new guest_memfd starts with nothing validated.
                    self.forget(s.range());
                    self.slots.insert(id, s);
                }
            }
            Action::Delete { id } => {
                if let Ok(f) = self.vm.delete_memslot(MemslotId(id)) {
                    self.pending.push(f);
                    let s = self.slots.remove(&id).unwrap();
                    self.forget(s.range());
                    for p in s.backing_pfn..s.backing_pfn + s.npages {
                        prop_assert_eq!(self.vm.snp_rmp_entry(Pfn::new(p)), None);
                    }
                }
            }
            Action::Convert {
                start,
                len,
                private,
            } => {
                let range = GfnRange::from_start_len(Gfn::new(start), len).unwrap();
                let f = self.vm.set_memory_attributes(range, private).unwrap();
                self.pending.push(f);
                if !private {
                    self.forget(range);
                    for g in range.iter() {
                        let e = self.vm.snp_rmp_entry_of(self.gpa(g.raw(), false));
                        prop_assert!(
                            e.is_none_or(|e| !e.assigned),
                            "unassign_needs_fresh_pvalidate: {g:?} {e:?}"
                        );
                    }
                }
            }
            Action::Access {
                vcpu,
                gfn,
                c_bit,
                access,
            } => {
                let gpa = self.gpa(gfn, c_bit);
                let mut r = self.vm.snp_stage2(VcpuId(vcpu), gpa, access, CTX);
                if let Stage2::Fault(Stage2Fault::RmpSmashed { .. }) = r {
                    r = self.vm.snp_stage2(VcpuId(vcpu), gpa, access, CTX);
                }
                let private = c_bit || access == Access::Fetch;
                match r {
                    Stage2::Mapped(t) => {
                        prop_assert_eq!(t.private, private);
                        prop_assert_eq!(t.gfn, Gfn::new(gfn));
                        if private {
                            let e = self.vm.snp_rmp_entry(t.backing.pfn());
                            prop_assert!(
                                e.is_some_and(|e| e.assigned
                                    && e.validated
                                    && e.gfn == t.gfn
                                    && e.asid == self.vm.config().asid),
                                "no_private_access_unvalidated: {t:?} {e:?}"
                            );
                            prop_assert!(
                                self.validated.contains(&gfn),
                                "no_private_access_unvalidated: gfn {gfn} not validated by the guest"
                            );
                        } else {
                            prop_assert!(!t.perms.exec);
                        }
                    }
                    Stage2::Fault(f) => match f {
                        Stage2Fault::PageNotValidated { .. } => {
                            prop_assert!(private);
                        }
                        Stage2Fault::MemoryFault { .. } | Stage2Fault::Mmio { .. } => {}
                        f => prop_assert!(false, "unexpected {f:?}"),
                    },
                }
            }
            Action::Pvalidate {
                vcpu,
                gfn,
                huge,
                validate,
            } => {
                let gpa = self.gpa(gfn, true);
                let rcx = huge as u64;
                for _ in 0..3 {
                    match self
                        .vm
                        .snp_pvalidate(VcpuId(vcpu), gpa, Vmpl::Vmpl0, rcx, validate)
                    {
                        SnpInsnOutcome::Retry { flush } => {
                            prop_assert!(flush.is_needed());
                            self.pending.push(flush);
                            continue;
                        }
                        SnpInsnOutcome::Completed { eax, cf, flush } => {
                            if eax == 0 {
                                let size = if huge {
                                    PageLevel::Size2M
                                } else {
                                    PageLevel::Size4K
                                };
                                let r = GfnRange::page_containing(Gfn::new(gfn), size);
                                for g in r.iter() {
                                    if validate {
                                        self.validated.insert(g.raw());
                                    } else {
                                        self.validated.remove(&g.raw());
                                    }
                                }
                                if !validate && !cf {
                                    prop_assert!(flush.is_needed(), "revoke_returns_flush");
                                }
                            } else {
                                prop_assert!(
                                    (eax == 1 && huge && gfn % 512 != 0) || eax == 6,
                                    "pvalidate eax {eax}"
                                );
                            }
                            self.pending.push(flush);
                        }
                        SnpInsnOutcome::Fault(
                            Stage2Fault::MemoryFault { .. } | Stage2Fault::Mmio { .. },
                        ) => {}
                        other => prop_assert!(false, "pvalidate: {other:?}"),
                    }
                    break;
                }
            }
            Action::Rmpadjust { vcpu, gfn, perms } => {
                let gpa = self.gpa(gfn, true);
                let rdx = 1 | ((perms as u64) << 8);
                for _ in 0..3 {
                    match self
                        .vm
                        .snp_rmpadjust(VcpuId(vcpu), gpa, Vmpl::Vmpl0, 0, rdx)
                    {
                        SnpInsnOutcome::Retry { flush } => {
                            self.pending.push(flush);
                            continue;
                        }
                        SnpInsnOutcome::Completed { flush, .. } => self.pending.push(flush),
                        SnpInsnOutcome::Fault(Stage2Fault::PageNotValidated { .. }) => {
                            prop_assert!(!self.validated.contains(&gfn));
                        }
                        SnpInsnOutcome::Fault(
                            Stage2Fault::MemoryFault { .. } | Stage2Fault::Mmio { .. },
                        ) => {}
                        other => prop_assert!(false, "rmpadjust: {other:?}"),
                    }
                    break;
                }
            }
            Action::ZapRange { start, len } => {
                let before = rmp_snapshot(&self.vm);
                let range = GfnRange::from_start_len(Gfn::new(start), len).unwrap();
                self.pending
                    .push(self.vm.zap_gfn_range(range, ZapFilter::ALL));
                prop_assert_eq!(before, rmp_snapshot(&self.vm), "zap_keeps_validation");
            }
            Action::ZapAllFast => {
                let before = rmp_snapshot(&self.vm);
                self.pending.push(self.vm.zap_all_fast());
                prop_assert_eq!(before, rmp_snapshot(&self.vm), "zap_keeps_validation");
            }
            Action::FlushAll => {
                for f in self.pending.drain(..) {
                    self.vm.flush(f);
                }
            }
        }
        self.invariants()
    }

    fn invariants(&self) -> Result<(), TestCaseError> {
        let vm = &self.vm;
        let slots = vm.memslots();
        let mut validated_gfns = BTreeSet::new();
        for (pfn, e) in rmp_snapshot(vm) {
            // The slot whose backing holds pfn (bindings are unique).
            let s = self
                .slots
                .values()
                .find(|s| (s.backing_pfn..s.backing_pfn + s.npages).contains(&pfn.raw()));
            prop_assert!(s.is_some(), "covered {pfn:?} without a guest_memfd slot");
            let s = s.unwrap();
            let gfn = s.base + pfn.raw() - s.backing_pfn;
            let gpa = self.gpa(gfn, false);
            if e.assigned {
                prop_assert_eq!(e.gfn.raw(), gfn, "one_gpa_per_validated_page: {:?}", e);
                prop_assert!(
                    !vm.host_write_allowed(gpa),
                    "private_never_device_or_host_writable: host"
                );
            }
            if e.validated {
                prop_assert!(
                    validated_gfns.insert(e.gfn),
                    "one_gpa_per_validated_page: {:?} twice",
                    e.gfn
                );
            }
            if e.assigned || vm.is_private(Gfn::new(gfn)) {
                prop_assert_eq!(
                    vm.device_access(gpa, true),
                    DeviceAccess::Blocked,
                    "private_never_device_or_host_writable: device"
                );
            }
        }
        for l in vm.leaves().iter().filter(|l| l.role == RootRole::Mirror) {
            let e = vm.snp_rmp_entry(l.pfn).unwrap();
            prop_assert!(e.assigned, "private leaf over an unassigned page {l:?}");
            prop_assert!(
                e.page_size.level() >= l.level,
                "nested_and_rmp_sizes_agree: {l:?} {e:?}"
            );
            prop_assert!(slots.find(l.range.start()).is_some());
        }
        Ok(())
    }
}

fn run(actions: &[Action]) -> Result<(), TestCaseError> {
    let mut m = Machine::new();
    for a in actions {
        m.step(a)?;
    }
    let f = m.vm.teardown();
    m.vm.flush(f);
    for (_, e) in rmp_snapshot(&m.vm) {
        prop_assert!(!e.assigned, "teardown frees guest_memfd");
    }
    Ok(())
}

#[test]
fn snp_vm_rmp() {
    let m = soak::Machine {
        file: file!(),
        name: "snp_vm_rmp",
        invariants: &[
            "no_private_access_unvalidated",
            "zap_keeps_validation",
            "unassign_needs_fresh_pvalidate",
            "private_never_device_or_host_writable",
            "one_gpa_per_validated_page",
            "nested_and_rmp_sizes_agree",
            "revoke_returns_flush",
        ],
    };
    soak::run(
        &m,
        prop::collection::vec(action(), 1..120),
        Vec::len,
        |actions| run(&actions),
    );
}

/// The reference's validation bookkeeping is only as good as the actions
/// reaching validated private accesses: make sure a fixed sequence does.
#[test]
fn snp_vm_rmp_reaches_validated_accesses() {
    let mut m = Machine::new();
    let seq = [
        Action::Create {
            id: 0,
            base: 0,
            npages: 1024,
            backing_pfn: 0x10_0000,
        },
        Action::Convert {
            start: 0,
            len: 1024,
            private: true,
        },
        Action::Pvalidate {
            vcpu: 0,
            gfn: 512,
            huge: true,
            validate: true,
        },
        Action::Access {
            vcpu: 1,
            gfn: 600,
            c_bit: true,
            access: Access::Write,
        },
        Action::ZapAllFast,
        Action::ZapRange {
            start: 0,
            len: 1024,
        },
        Action::Access {
            vcpu: 1,
            gfn: 600,
            c_bit: true,
            access: Access::Write,
        },
    ];
    for a in &seq {
        m.step(a).unwrap();
    }
    assert!(m.validated.contains(&600));
    assert!(matches!(
        m.vm.snp_stage2(VcpuId(0), m.gpa(600, true), Access::Read, CTX),
        Stage2::Mapped(_)
    ));
}
