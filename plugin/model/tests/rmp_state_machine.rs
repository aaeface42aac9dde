//! A proptest state machine for the SEV-SNP RMP: random sequences of
//! RMPUPDATE (assign/unassign, 4K/2M), PSMASH, PVALIDATE, RMPADJUST, KVM's
//! gmem prepare/invalidate, guest accesses, host writes and device accesses,
//! checked after every step against these invariants:
//!
//! - `assigned_not_host_writable`: an assigned page is never writable by the
//!   host, a device, or a guest C-bit-clear write (APM Table 15-39).
//! - `validated_gpas_unique`: a validated entry is assigned, and no two
//!   validated entries of one ASID record the same GPA (the hypervisor side
//!   here maps each gfn to one backing page, as KVM's memslots do).
//! - `no_private_access_unvalidated`: a private guest access succeeds only on
//!   an assigned, validated page of the guest's ASID at the accessed GPA.
//! - `update_resets`: a successful RMPUPDATE leaves every entry it wrote
//!   unvalidated with no VMPL1-3 permission and no VMSA bit; an unassign
//!   leaves hypervisor-owned default entries.
//! - `psmash_preserves`: PSMASH changes only the page size of the 512
//!   entries.
//! - `pvalidate_cf`: PVALIDATE reports NoUpdate (CF=1) exactly when the
//!   validated bit already had the requested value, and otherwise flips it
//!   on exactly the pages of the requested size.
//! - `failed_ops_change_nothing`: an instruction that fails leaves the table
//!   as it was.

use cvmem_model::*;
use proptest::prelude::*;

mod soak;

const P0: u64 = 0x4000;
/// Four 2M regions.
const NPAGES: u64 = 2048;
const G0: u64 = 0x800;

fn pfn(i: u64) -> Pfn {
    Pfn::new(P0 + i)
}

fn gfn(i: u64) -> Gfn {
    Gfn::new(G0 + i)
}

#[derive(Clone, Debug)]
enum Action {
    Update {
        page: u64,
        two_m: bool,
        assign: bool,
        asid: u32,
    },
    Psmash {
        page: u64,
    },
    Pvalidate {
        page: u64,
        two_m: bool,
        npt_2m: bool,
        validate: bool,
        vmpl: u64,
        wrong_gfn: bool,
    },
    Rmpadjust {
        page: u64,
        two_m: bool,
        npt_2m: bool,
        vmpl: u64,
        rdx: u64,
    },
    Access {
        page: u64,
        c_bit: bool,
        kind: RmpAccessKind,
        npt_2m: bool,
        vmpl: u64,
        asid: u32,
    },
    HostWrite {
        page: u64,
        two_m: bool,
    },
    Device {
        page: u64,
        write: bool,
    },
    GmemPrepare {
        page: u64,
        two_m: bool,
    },
    GmemInvalidate {
        page: u64,
        len: u64,
    },
}

fn action() -> impl Strategy<Value = Action> {
    // Pages cluster on 2M heads so that 2M operations hit aligned frames.
    let page = prop_oneof![0..NPAGES, (0..NPAGES / 512).prop_map(|h| h * 512)];
    let kind = prop_oneof![
        Just(RmpAccessKind::Read),
        Just(RmpAccessKind::Write),
        Just(RmpAccessKind::Fetch),
        Just(RmpAccessKind::PageWalk)
    ];
    let rdx = (0u64..5, 0u64..16, any::<bool>())
        .prop_map(|(t, p, v)| t | (p << 8) | if v { 1 << 16 } else { 0 });
    prop_oneof![
        3 => (page.clone(), any::<bool>(), any::<bool>(), 1u32..3)
            .prop_map(|(page, two_m, assign, asid)| Action::Update { page, two_m, assign, asid }),
        1 => page.clone().prop_map(|page| Action::Psmash { page }),
        4 => (page.clone(), any::<bool>(), any::<bool>(), any::<bool>(), prop_oneof![4 => Just(0u64), 1 => 1u64..3], prop::bool::weighted(0.1))
            .prop_map(|(page, two_m, npt_2m, validate, vmpl, wrong_gfn)| Action::Pvalidate { page, two_m, npt_2m, validate, vmpl, wrong_gfn }),
        2 => (page.clone(), any::<bool>(), any::<bool>(), 0u64..3, rdx)
            .prop_map(|(page, two_m, npt_2m, vmpl, rdx)| Action::Rmpadjust { page, two_m, npt_2m, vmpl, rdx }),
        6 => (page.clone(), any::<bool>(), kind, any::<bool>(), 0u64..4, 1u32..3)
            .prop_map(|(page, c_bit, kind, npt_2m, vmpl, asid)| Action::Access { page, c_bit, kind, npt_2m, vmpl, asid }),
        2 => (page.clone(), any::<bool>()).prop_map(|(page, two_m)| Action::HostWrite { page, two_m }),
        2 => (page.clone(), any::<bool>()).prop_map(|(page, write)| Action::Device { page, write }),
        2 => (page.clone(), any::<bool>()).prop_map(|(page, two_m)| Action::GmemPrepare { page, two_m }),
        1 => (page, 1u64..1100).prop_map(|(page, len)| Action::GmemInvalidate { page, len }),
    ]
}

fn level(two_m: bool) -> PageLevel {
    if two_m {
        PageLevel::Size2M
    } else {
        PageLevel::Size4K
    }
}

fn head(page: u64, two_m: bool) -> u64 {
    if two_m {
        page & !511
    } else {
        page
    }
}

fn snapshot(r: &Rmp) -> Vec<RmpEntry> {
    (0..NPAGES).map(|i| r.entry(pfn(i)).unwrap()).collect()
}

fn run(actions: &[Action]) -> Result<(), TestCaseError> {
    let r = Rmp::new();
    r.add_covered(PfnRange::from_start_len(Pfn::new(P0), NPAGES).unwrap())
        .unwrap();
    let guest_asid = Asid::new(1).unwrap();
    for (step, a) in actions.iter().enumerate() {
        let before = snapshot(&r);
        match *a {
            Action::Update {
                page,
                two_m,
                assign,
                asid,
            } => {
                let h = head(page, two_m);
                let state = if assign {
                    RmpState {
                        gfn: gfn(h),
                        assigned: true,
                        page_size: if two_m {
                            RmpPageSize::Size2M
                        } else {
                            RmpPageSize::Size4K
                        },
                        immutable: false,
                        asid: Asid::new(asid).unwrap(),
                    }
                } else {
                    RmpState {
                        page_size: if two_m {
                            RmpPageSize::Size2M
                        } else {
                            RmpPageSize::Size4K
                        },
                        ..RmpState::default()
                    }
                };
                let res = r.rmpupdate(pfn(page), state);
                let after = snapshot(&r);
                if res.is_ok() {
                    let n = if two_m { 512 } else { 1 };
                    for i in h..h + n {
                        let e = after[i as usize];
                        // update_resets
                        prop_assert!(!e.validated && !e.vmsa, "step {step}: {e:?}");
                        prop_assert_eq!(e.perms, [VmplPerms::NONE; 3]);
                        if !assign {
                            prop_assert_eq!(e, RmpEntry::default());
                        } else {
                            prop_assert_eq!(e.gfn, gfn(i));
                        }
                    }
                } else {
                    // failed_ops_change_nothing
                    prop_assert!(
                        after == before,
                        "step {step}: failed RMPUPDATE changed the RMP"
                    );
                }
            }
            Action::Psmash { page } => {
                let res = r.psmash(pfn(page));
                let after = snapshot(&r);
                match res {
                    Ok(()) => {
                        // psmash_preserves
                        for i in 0..NPAGES as usize {
                            let want = if (page..page + 512).contains(&(i as u64)) {
                                RmpEntry {
                                    page_size: RmpPageSize::Size4K,
                                    ..before[i]
                                }
                            } else {
                                before[i]
                            };
                            prop_assert_eq!(after[i], want, "step {}", step);
                        }
                    }
                    Err(_) => prop_assert!(after == before),
                }
            }
            Action::Pvalidate {
                page,
                two_m,
                npt_2m,
                validate,
                vmpl,
                wrong_gfn,
            } => {
                let target = RmpInsnTarget {
                    gfn: if wrong_gfn { gfn(page + 1) } else { gfn(page) },
                    pfn: pfn(page),
                    npt_level: level(npt_2m),
                };
                let guest = SnpGuest {
                    asid: guest_asid,
                    vmpl: Vmpl::from_number(vmpl).unwrap(),
                };
                let res = r.pvalidate(guest, target, two_m as u64, validate);
                let after = snapshot(&r);
                match res {
                    Ok(outcome) => {
                        let h = head(page, two_m);
                        let n = if two_m { 512 } else { 1 };
                        let e = before[h as usize];
                        // pvalidate_cf
                        prop_assert_eq!(outcome.cf(), e.validated == validate);
                        for i in 0..NPAGES {
                            let want = if (h..h + n).contains(&i) {
                                RmpEntry {
                                    validated: validate,
                                    ..before[i as usize]
                                }
                            } else {
                                before[i as usize]
                            };
                            prop_assert_eq!(after[i as usize], want);
                        }
                        prop_assert!(e.assigned && e.asid == guest_asid && e.gfn == target.gfn);
                    }
                    Err(_) => prop_assert!(after == before),
                }
            }
            Action::Rmpadjust {
                page,
                two_m,
                npt_2m,
                vmpl,
                rdx,
            } => {
                let target = RmpInsnTarget {
                    gfn: gfn(page),
                    pfn: pfn(page),
                    npt_level: level(npt_2m),
                };
                let guest = SnpGuest {
                    asid: guest_asid,
                    vmpl: Vmpl::from_number(vmpl).unwrap(),
                };
                let res = r.rmpadjust(guest, target, two_m as u64, rdx);
                let after = snapshot(&r);
                match res {
                    Ok(()) => {
                        let attrs = RmpadjustAttrs::from_rdx(rdx).unwrap();
                        prop_assert!(attrs.target > guest.vmpl);
                        let h = head(page, two_m);
                        let e = before[h as usize];
                        prop_assert!(e.validated && e.perms_of(guest.vmpl).contains(attrs.perms));
                        prop_assert_eq!(after[h as usize].perms_of(attrs.target), attrs.perms);
                    }
                    Err(_) => prop_assert!(after == before),
                }
            }
            Action::Access {
                page,
                c_bit,
                kind,
                npt_2m,
                vmpl,
                asid,
            } => {
                let access = GuestAccess {
                    pfn: pfn(page),
                    gfn: gfn(page),
                    c_bit,
                    npt_level: level(npt_2m),
                    kind,
                    user: false,
                };
                let guest = SnpGuest {
                    asid: Asid::new(asid).unwrap(),
                    vmpl: Vmpl::from_number(vmpl).unwrap(),
                };
                let res = r.check_guest_access(guest, &access);
                let mut reader = r.reader();
                prop_assert_eq!(reader.check_guest_access(guest, &access), res);
                let e = before[page as usize];
                if access.effective_c_bit() {
                    if res.is_ok() {
                        // no_private_access_unvalidated
                        prop_assert!(
                            e.assigned
                                && e.validated
                                && e.asid == guest.asid
                                && e.gfn == access.gfn,
                            "step {step}: private access allowed on {e:?}"
                        );
                    }
                } else if kind == RmpAccessKind::Write {
                    // assigned_not_host_writable (guest shared writes)
                    let h = head(page, npt_2m) as usize;
                    let n = if npt_2m { 512 } else { 1 };
                    let any = before[h..h + n].iter().any(|x| x.assigned);
                    prop_assert_eq!(res.is_err(), any);
                } else {
                    prop_assert_eq!(
                        res,
                        Ok(if e.assigned {
                            RmpAccess::Ciphertext
                        } else {
                            RmpAccess::Plain
                        })
                    );
                }
            }
            Action::HostWrite { page, two_m } => {
                let res = r.check_host_write(pfn(page), level(two_m));
                let h = head(page, two_m) as usize;
                let n = if two_m { 512 } else { 1 };
                let any = before[h..h + n].iter().any(|x| x.assigned);
                prop_assert_eq!(res.is_err(), any);
            }
            Action::Device { page, write } => {
                let res = r.check_device_access(pfn(page), write);
                let want = match (before[page as usize].assigned, write) {
                    (false, _) => DeviceAccess::Allowed,
                    (true, false) => DeviceAccess::Encrypted,
                    (true, true) => DeviceAccess::Blocked,
                };
                prop_assert_eq!(res, want);
            }
            Action::GmemPrepare { page, two_m } => {
                let res = r.gmem_prepare(pfn(page), gfn(page), level(two_m), guest_asid);
                let e = r.entry(pfn(page)).unwrap();
                prop_assert!(res.is_ok());
                prop_assert!(e.assigned && e.gfn == gfn(page));
                if before[page as usize].assigned {
                    // Already assigned: untouched (validation survives).
                    prop_assert!(snapshot(&r) == before);
                }
            }
            Action::GmemInvalidate { page, len } => {
                let len = len.min(NPAGES - page);
                r.gmem_invalidate(PfnRange::from_start_len(pfn(page), len).unwrap());
                let after = snapshot(&r);
                for i in page..page + len {
                    prop_assert_eq!(after[i as usize], RmpEntry::default());
                }
            }
        }
        check_invariants(&r, step)?;
    }
    Ok(())
}

fn check_invariants(r: &Rmp, step: usize) -> Result<(), TestCaseError> {
    let mut validated = std::collections::BTreeSet::new();
    for i in 0..NPAGES {
        let e = r.entry(pfn(i)).unwrap();
        if e.assigned {
            // assigned_not_host_writable
            prop_assert!(r.check_host_write(pfn(i), PageLevel::Size4K).is_err());
            prop_assert_eq!(r.check_device_access(pfn(i), true), DeviceAccess::Blocked);
        }
        if e.validated {
            // validated_gpas_unique
            prop_assert!(e.assigned, "step {step}: validated but unassigned {e:?}");
            prop_assert!(
                validated.insert((e.asid, e.gfn)),
                "step {step}: two validated pages for {:?}",
                (e.asid, e.gfn)
            );
        }
        if !e.assigned {
            prop_assert_eq!(e, RmpEntry::default());
        }
    }
    Ok(())
}

#[test]
fn rmp_state_machine() {
    let m = soak::Machine {
        file: file!(),
        name: "rmp_state_machine",
        invariants: &[
            "assigned_not_host_writable",
            "validated_gpas_unique",
            "no_private_access_unvalidated",
            "update_resets",
            "psmash_preserves",
            "pvalidate_cf",
            "failed_ops_change_nothing",
        ],
    };
    soak::run(
        &m,
        prop::collection::vec(action(), 1..120),
        Vec::len,
        |actions| run(&actions),
    );
}
