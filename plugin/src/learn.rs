//! Audit mode's knowledge of guest RAM, learned from the guest's accesses.
//!
//! An unpatched QEMU reports no memslots (that callback is part of the
//! patch series), so the model would know no RAM and take every access for
//! MMIO. What the stock API does say, in the memory callback, is whether an
//! access reached I/O and, if not, its guest-physical address: such a page
//! is RAM QEMU has. Audit mode learns each one as QEMU's memory listener
//! would have reported it ([`Kvm::memslot`](crate::kvm::Kvm::memslot)): a
//! memslot over it, private-capable (guest_memfd) where the VM type has
//! private memory, and made private for a TD or an SNP guest, as QEMU makes
//! such RAM private when it adds the slot.
//!
//! **Granularity.** Only pages the guest touched without I/O become RAM, so
//! a learned slot never covers MMIO, nor ROM the guest has not touched. ROM
//! the guest reads cannot be told from RAM through the stock API (neither
//! is I/O to QEMU's softTLB) and is learned as RAM: where enforcing mode has
//! no slot for it (a TD's or SNP guest's ROM is MMIO, a #VE or #VC), audit
//! mode does not count those reads. A page next to a learned slot grows the
//! slot ([`Vm::grow_memslot`](cvmem_model::Vm::grow_memslot), which zaps
//! nothing), and a page that closes a gap merges two, so a guest ends with
//! about one slot per run of RAM it used, not one per page: KVM, and the
//! model, allow 32764. An SNP guest_memfd slot stays inside one 2 MiB
//! region, because growing it copies its RMP entries. A page that finds no
//! slot id left is RAM without a slot, and accesses to it go unchecked
//! (counted apart, never counted as refused).
//!
//! **Launch.** Enforcing mode knows all RAM before the guest runs, and a TD
//! or SNP guest launches at its first access with paging on: every private
//! page below `accept=` is added (TDH.MEM.PAGE.ADD) or launched
//! (SNP_LAUNCH_UPDATE), the rest is left PENDING or unvalidated. Audit mode
//! launches at the same point, with the RAM learned by then. RAM learned
//! later was there at launch in enforcing mode, so it gets what launch
//! would have given it: below `accept=` it is added or launched as it is
//! learned, above it stays pending. Audit mode's count of refusals is
//! therefore what enforcing mode would have refused of the same accesses:
//! a TD's access above `accept=` is a #VE there (its guest cannot accept in
//! an unpatched QEMU, where TDCALL is #UD), counted at every access, since
//! nothing stops the guest here.
//!
//! **Concurrency.** The hot path, an access to a page already learned, is a
//! binary search in a snapshot of the learned ranges ([`ArcSwap`]), no
//! lock. Learning takes the lock QEMU's memslot reports, the control socket
//! take (`Kvm::qemu_ram`) and the lock the TD/SNP launch takes
//! (`Vmm::learn_lock`), so pages learned from
//! several vCPU threads at once (MTTCG) are learned one at a time, each
//! exactly once, and a page is either learned before the launch (and
//! launched with it) or after (and added as it is learned).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use cvmem_model::KVM_USER_MEM_SLOTS;
use cvmem_model::{
    BackingAddr, Gfn, GfnRange, MemoryRegion, Memslot, MemslotFlags, MemslotId, PageLevel, VmType,
    PAGE_SIZE,
};

use crate::flavour::Flavour as _;
use crate::kvm::Kvm;
use crate::memslots::RamSection;

/// The name learned RAM has among QEMU's RAM sections (the control
/// socket's `list-memslots`).
pub const LEARNED_RAM: &str = "ram (learned in audit mode)";

/// What audit mode knows of a guest page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    /// RAM with a memslot over it (learned, or the host's).
    Ram,
    /// RAM that got no memslot: every slot id was taken.
    NoSlot,
    /// Not seen yet.
    Unknown,
}

/// The learned ranges: sorted, disjoint and never adjacent.
#[derive(Clone, Debug, Default)]
struct Known {
    /// All learned RAM.
    ram: Vec<GfnRange>,
    /// The part of it without a memslot.
    no_slot: Vec<GfnRange>,
}

impl Known {
    fn page(&self, gfn: Gfn) -> Page {
        if !contains(&self.ram, gfn) {
            Page::Unknown
        } else if contains(&self.no_slot, gfn) {
            Page::NoSlot
        } else {
            Page::Ram
        }
    }
}

fn contains(ranges: &[GfnRange], gfn: Gfn) -> bool {
    let i = ranges.partition_point(|r| r.end() <= gfn);
    ranges.get(i).is_some_and(|r| r.contains(gfn))
}

/// Adds `gfn` (in none of them) to `ranges`, merging it with the ranges it
/// touches. Returns the range it is now part of and the ranges that one
/// replaced.
fn insert(ranges: &mut Vec<GfnRange>, gfn: Gfn) -> (GfnRange, Vec<GfnRange>) {
    let next = Gfn::new(gfn.raw() + 1);
    // The first range ending at or after gfn: ending at it, it is the left
    // neighbour; else the right one, if it starts right after.
    let i = ranges.partition_point(|r| r.end() < gfn);
    let left = ranges.get(i).filter(|r| r.end() == gfn).copied();
    let j = if left.is_some() { i + 1 } else { i };
    let right = ranges.get(j).filter(|r| r.start() == next).copied();
    let start = left.map_or(gfn, |r| r.start());
    let end = right.map_or(next, |r| r.end());
    let merged = GfnRange::new(start, end).unwrap_or_else(|| GfnRange::one(gfn));
    let replaced: Vec<GfnRange> = left.into_iter().chain(right).collect();
    ranges.splice(i..i + replaced.len(), [merged]);
    (merged, replaced)
}

/// Counters for the summary.
#[derive(Debug, Default)]
pub struct LearnStats {
    /// Pages learned.
    pub pages: AtomicU64,
    /// Memslots made for a page with no learned neighbour.
    pub slots_made: AtomicU64,
    /// Memslots grown by a page.
    pub slots_grown: AtomicU64,
    /// Memslots merged into a neighbour by a page between them.
    pub slots_merged: AtomicU64,
    /// Pages learned without a memslot (no slot id left).
    pub no_slot_pages: AtomicU64,
}

/// Audit mode's RAM learner: one per VM.
#[derive(Debug, Default)]
pub struct RamLearner {
    known: ArcSwap<Known>,
    /// Counters.
    pub stats: LearnStats,
}

impl RamLearner {
    /// What is known of `gfn`: the hot path, no lock.
    #[inline]
    pub fn page(&self, gfn: Gfn) -> Page {
        self.known.load().page(gfn)
    }

    /// The learned RAM: (ranges, pages, of which without a memslot).
    pub fn learned(&self) -> (usize, u64, u64) {
        let known = self.known.load();
        let pages = |v: &[GfnRange]| v.iter().map(|r| r.len()).sum::<u64>();
        (known.ram.len(), pages(&known.ram), pages(&known.no_slot))
    }

    /// The guest reached RAM at `gfn` on `vcpu`: learns it if it is new
    /// (see the module comment) and says what it is now.
    pub fn learn(&self, kvm: &Kvm, gfn: Gfn, vcpu: u32) -> Page {
        // Serialises learning with QEMU's memslot reports, the control
        // socket and the TD/SNP launch (see the module comment).
        let mut qemu_ram = kvm.qemu_ram.lock();
        let _launch = kvm.vmm.learn_lock.lock();
        let known = self.known.load_full();
        let page = known.page(gfn);
        if page != Page::Unknown {
            // Another vCPU learned it while this one waited.
            return page;
        }
        let mut next = Known::clone(&known);
        let (ram, replaced) = insert(&mut next.ram, gfn);
        let slotted = self.give_slot(kvm, gfn);
        if slotted {
            kvm.flavour.add_learned(&kvm.vmm, gfn, vcpu);
        } else {
            insert(&mut next.no_slot, gfn);
            self.stats.no_slot_pages.fetch_add(1, Ordering::Relaxed);
        }
        // QEMU's RAM as the control socket sees it: memslots it makes must
        // lie in RAM QEMU has.
        // Learned slots have identity backing (see `give_slot`): the
        // QEMU address of a frame is its GPA.
        let bytes = |r: &GfnRange| {
            let qemu = BackingAddr::new(r.start().gpa().raw());
            (qemu, r.len() * PAGE_SIZE)
        };
        qemu_ram.retain(|s| {
            s.name != LEARNED_RAM || !replaced.iter().any(|r| bytes(r) == (s.addr, s.size))
        });
        let (addr, size) = bytes(&ram);
        qemu_ram.push(RamSection {
            addr,
            size,
            readonly: false,
            name: LEARNED_RAM.into(),
        });
        self.stats.pages.fetch_add(1, Ordering::Relaxed);
        self.known.store(Arc::new(next));
        if slotted {
            Page::Ram
        } else {
            Page::NoSlot
        }
    }

    /// Puts a memslot over `gfn` as QEMU's report of it would have (growing
    /// or merging learned slots next to it), and makes it private where
    /// QEMU would. False if no slot id is left.
    fn give_slot(&self, kvm: &Kvm, gfn: Gfn) -> bool {
        let vm = kvm.vm();
        let slots = vm.memslots();
        if slots.find(gfn).is_some() {
            // The host's own slot (the control socket moved one here).
            return true;
        }
        let flags = if vm.vm_type().has_private_mem() {
            MemslotFlags::GUEST_MEMFD
        } else {
            MemslotFlags::NONE
        };
        // Growing an SNP guest_memfd slot copies its RMP entries: keep such
        // slots inside one 2M region.
        let bounded = vm.vm_type() == VmType::Snp && flags.contains(MemslotFlags::GUEST_MEMFD);
        let region = GfnRange::page_containing(gfn, PageLevel::Size2M);
        // A slot learning made: identity backing (a QEMU address, as for
        // QEMU's reports), these flags, not being deleted.
        let learned = |s: &&Memslot| {
            !s.invalid
                && s.flags == flags
                && s.backing.raw() == s.base_gfn.gpa().raw()
                && (!bounded || region.contains_range(s.range()))
        };
        let left = gfn
            .raw()
            .checked_sub(1)
            .and_then(|g| slots.find(Gfn::new(g)))
            .filter(learned)
            .copied();
        let right = slots.find(Gfn::new(gfn.raw() + 1)).filter(learned).copied();
        // gfn lies in no slot, so the left one ends at it and the right one
        // starts after it.
        let grow = match (left, right) {
            (Some(l), Some(r)) => Some((l.id, l.base_gfn, r.range().end(), true)),
            (Some(l), None) => Some((l.id, l.base_gfn, Gfn::new(gfn.raw() + 1), false)),
            (None, Some(r)) => Some((r.id, gfn, r.range().end(), false)),
            (None, None) => None,
        };
        let grown = grow.and_then(|(id, start, end, merge)| {
            let range = GfnRange::new(start, end)?;
            match vm.grow_memslot(id, range) {
                Ok(()) => {
                    let c = if merge {
                        &self.stats.slots_merged
                    } else {
                        &self.stats.slots_grown
                    };
                    c.fetch_add(1, Ordering::Relaxed);
                    Some(())
                }
                Err(e) => {
                    eprintln!("cvmem: audit: growing memslot {} over {range}: {e}", id.0);
                    None
                }
            }
        });
        if grown.is_none() {
            let Some(id) = free_slot_id(&slots) else {
                return false;
            };
            let made = vm.set_memory_region(MemoryRegion {
                slot: id,
                flags,
                guest_phys_addr: gfn.gpa(),
                memory_size: PAGE_SIZE,
                backing: BackingAddr::new(gfn.gpa().raw()),
            });
            match made {
                Ok(flush) => {
                    vm.flush(flush);
                    self.stats.slots_made.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    eprintln!("cvmem: audit: memslot for {:#x}: {e}", gfn.gpa().raw());
                    return false;
                }
            }
        }
        if kvm.flavour.private_by_default() && flags.contains(MemslotFlags::GUEST_MEMFD) {
            // kvm_set_phys_mem() -> kvm_set_memory_attributes_private(), as
            // in Kvm::memslot.
            match vm.set_memory_attributes(GfnRange::one(gfn), true) {
                Ok(flush) => {
                    vm.flush(flush);
                }
                Err(e) => eprintln!("cvmem: audit: making {:#x} private: {e}", gfn.gpa().raw()),
            }
        }
        true
    }
}

/// The lowest memslot id not in use, if KVM has one left.
fn free_slot_id(slots: &cvmem_model::MemslotSet) -> Option<MemslotId> {
    let mut used = vec![false; usize::from(KVM_USER_MEM_SLOTS)];
    for s in slots.iter() {
        if let Some(u) = used.get_mut(usize::from(s.id.0)) {
            *u = true;
        }
    }
    let free = used.iter().position(|u| !u)?;
    u16::try_from(free).ok().map(MemslotId)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{AcceptPolicy, Config};
    use crate::hooks::Access;
    use crate::plugin::{Mode, Plugin};
    use cvmem_model::{Gpa, Gva, SeptState, TdAttributes};

    const MB: u64 = 1 << 20;

    fn audit(config: Config) -> Plugin {
        Plugin::new(config, Mode::Audit, 4).unwrap()
    }

    fn typed(vm_type: VmType) -> Config {
        Config {
            vm_type,
            ..Config::default()
        }
    }

    /// A TD whose pending pages raise #VE (SEPT_VE_DISABLE clear), with
    /// private memory ready below `accept`.
    fn td(accept: u64) -> Config {
        Config {
            vm_type: VmType::Tdx,
            td_attributes: TdAttributes(0),
            accept: AcceptPolicy::Below(accept),
            ..Config::default()
        }
    }

    /// The model's memslots: (gfn, pages).
    fn slots(p: &Plugin) -> Vec<(u64, u64)> {
        p.kvm
            .vm()
            .memslots()
            .iter()
            .map(|s| (s.base_gfn.raw(), s.npages))
            .collect()
    }

    fn learner(p: &Plugin) -> &RamLearner {
        p.kvm.audit.as_ref().unwrap()
    }

    fn touch(p: &Plugin, gpa: u64, paging: bool) {
        p.audit_access(
            0,
            Gpa::new(gpa),
            Gva::new(0x4000_0000 + gpa),
            Access::Write,
            paging,
        );
    }

    fn counts(p: &Plugin) -> (u64, u64, u64) {
        let s = &p.stats;
        (
            s.total(|v| &v.audit_accesses),
            s.total(|v| &v.audit_violations),
            s.total(|v| &v.audit_unchecked),
        )
    }

    #[test]
    fn insert_merges_neighbours() {
        let mut v = Vec::new();
        let r = |a: u64, b: u64| GfnRange::new(Gfn::new(a), Gfn::new(b)).unwrap();
        assert_eq!(insert(&mut v, Gfn::new(5)), (r(5, 6), vec![]));
        assert_eq!(insert(&mut v, Gfn::new(7)), (r(7, 8), vec![]));
        assert_eq!(insert(&mut v, Gfn::new(4)), (r(4, 6), vec![r(5, 6)]));
        assert_eq!(insert(&mut v, Gfn::new(0)), (r(0, 1), vec![]));
        assert_eq!(v, [r(0, 1), r(4, 6), r(7, 8)]);
        assert_eq!(
            insert(&mut v, Gfn::new(6)),
            (r(4, 8), vec![r(4, 6), r(7, 8)])
        );
        assert_eq!(v, [r(0, 1), r(4, 8)]);
        assert!(contains(&v, Gfn::new(7)) && !contains(&v, Gfn::new(8)));
        assert!(!contains(&v, Gfn::new(1)) && !contains(&v, Gfn::new(3)));
    }

    /// Pages touched in a scrambled order end as one slot per run of RAM,
    /// and what was never touched (the VGA hole, ROM) is in none.
    #[test]
    fn slots_grow_and_merge_but_never_cover_an_untouched_page() {
        let p = audit(Config::default());
        // 0x1000..0x9f000 below the VGA hole, 1M..3M above it, scrambled:
        // i -> 0x2f3b * i + 0x1234 is a bijection modulo 512.
        let low: Vec<u64> = (0..0x9e).map(|i| 0x1000 + i * 0x1000).collect();
        let high: Vec<u64> = (0..512)
            .map(|i| MB + ((i * 0x2f3b + 0x1234) % 512) * 0x1000)
            .collect();
        for &gpa in high.iter().chain(&low).chain(&high) {
            touch(&p, gpa + 0x18, true);
        }
        assert_eq!(slots(&p), [(0x1, 0x9e), (0x100, 0x200)]);
        let l = learner(&p);
        assert_eq!(l.learned(), (2, 0x9e + 0x200, 0));
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let made = n(&l.stats.slots_made);
        assert!(made > 2, "scrambled pages start several slots");
        assert_eq!(made - n(&l.stats.slots_merged), 2);
        assert_eq!(n(&l.stats.pages), 0x9e + 0x200);
        for gfn in [0, 0x9f, 0xa0, 0xb8, 0xc0, 0xff, 0x300] {
            assert_eq!(l.page(Gfn::new(gfn)), Page::Unknown, "{gfn:#x}");
            assert!(p.kvm.vm().memslots().find(Gfn::new(gfn)).is_none());
        }
        // Every access was checked, none refused: a default VM's RAM.
        assert_eq!(counts(&p), (2 * 512 + 0x9e, 0, 0));
        // The control socket sees the learned RAM as QEMU's.
        let ram = p.kvm.qemu_ram.lock();
        let mut sections: Vec<_> = ram.iter().map(|s| (s.addr.raw(), s.size)).collect();
        sections.sort_unstable();
        assert_eq!(sections, [(0x1000, 0x9e000), (MB, 2 * MB)]);
    }

    /// vCPU threads learning the same pages at once (MTTCG): each page is
    /// learned once, and the slots come out as from one thread.
    #[test]
    fn concurrent_learning_is_learning_once() {
        let p = audit(typed(VmType::SwProtected));
        let pages = 4096u64;
        std::thread::scope(|s| {
            for t in 0..4u32 {
                let p = &p;
                s.spawn(move || {
                    for i in 0..pages {
                        // Each thread its own order over the same pages.
                        let page = (i * (2 * u64::from(t) + 1) * 0x9e5 + u64::from(t)) % pages;
                        p.audit_access(
                            t,
                            Gpa::new(0x10_0000 + page * 0x1000),
                            Gva::new(0),
                            Access::Read,
                            true,
                        );
                    }
                });
            }
        });
        assert_eq!(slots(&p), [(0x100, pages)]);
        let l = learner(&p);
        assert_eq!(l.stats.pages.load(Ordering::Relaxed), pages);
        assert_eq!(l.learned(), (1, pages, 0));
        assert_eq!(counts(&p), (4 * pages, 0, 0));
        // Private-capable, as QEMU gives a sw-protected VM's RAM; shared
        // until the guest converts it.
        let vm = p.kvm.vm();
        assert!(vm.memslots().iter().all(|s| s.private_capable()));
        assert!(!vm.is_private(Gfn::new(0x100)));
    }

    /// A TD launches at its first access with paging on, with the RAM
    /// learned by then; RAM learned later is added as at launch below
    /// accept=, and above it stays PENDING: each access there is a #VE in
    /// enforcing mode, so it counts as refused. An implicit conversion is no
    /// refusal.
    #[test]
    fn a_td_counts_what_enforcing_mode_refuses() {
        let p = audit(td(16 * MB));
        let tdx = p.kvm.flavour_as::<crate::tdx::TdxModule>();
        let vm = p.kvm.vm();
        // The loader before launch (paging off): learned, nothing checked
        // for the TD yet, even above accept=.
        touch(&p, 0x7000, false);
        touch(&p, 0x7008, false);
        touch(&p, 20 * MB, false);
        assert!(!tdx.launched());
        assert_eq!(counts(&p), (3, 0, 0));
        // Paging on: launch. The pages learned so far below accept= are
        // added; the one above is not.
        touch(&p, 0x8000, true);
        assert!(tdx.launched());
        assert_eq!(tdx.stats.pages_added.load(Ordering::Relaxed), 2);
        assert_eq!(vm.tdx_sept_state(Gfn::new(0x7)).0, SeptState::Mapped);
        // Learned after launch below accept=: as if added then.
        touch(&p, 15 * MB, true);
        assert_eq!(vm.tdx_sept_state(Gfn::new(0xf00)).0, SeptState::Mapped);
        assert_eq!(tdx.stats.pages_added.load(Ordering::Relaxed), 3);
        assert_eq!(counts(&p), (5, 0, 0));
        // Above accept=: PENDING, a #VE at every access.
        touch(&p, 20 * MB, true);
        touch(&p, 20 * MB + 8, true);
        touch(&p, 24 * MB, true);
        assert_eq!(counts(&p), (8, 3, 0));
        assert_eq!(vm.tdx_sept_state(Gfn::new(0x1800)).0, SeptState::Pending);
        // Nothing was raised: no VE information waits, and the summary's
        // #VE counts stay at zero.
        assert_eq!(tdx.stats.ves.load(Ordering::Relaxed), 0);
        assert_eq!(tdx.stats.double_ves.load(Ordering::Relaxed), 0);
        // A shared access to private memory converts it (QEMU on a
        // memory-fault exit): not refused.
        let shared = (1 << 47) | 0x7000;
        p.audit_access(0, Gpa::new(shared), Gva::new(0), Access::Read, true);
        assert_eq!(counts(&p), (9, 3, 0));
        assert!(!vm.is_private(Gfn::new(0x7)));
        assert_eq!(p.kvm.vmm.implicit_conversions.load(Ordering::Relaxed), 1);
    }

    /// With SEPT_VE_DISABLE (QEMU's default) enforcing mode would have
    /// stopped the TD at its first pending access: from then on everything
    /// counts as refused.
    #[test]
    fn a_td_with_sept_ve_disable_dies_at_its_first_pending_access() {
        let p = audit(Config {
            td_attributes: Config::default().td_attributes,
            ..td(MB)
        });
        touch(&p, 0x1000, true);
        touch(&p, 2 * MB, true);
        touch(&p, 0x1000, true);
        assert_eq!(counts(&p), (3, 2, 0));
        assert!(p.kvm.vmm.lifecycle.is_dead());
    }

    /// What the host does stays done: a learned slot the control socket
    /// deletes is not made again, and a TD's access there is MMIO, a #VE.
    #[test]
    fn a_deleted_learned_slot_is_not_learned_again() {
        let p = audit(td(16 * MB));
        touch(&p, 0x5000, true);
        let id = p.kvm.vm().memslots().find(Gfn::new(5)).unwrap().id;
        p.kvm.vm().flush(p.kvm.vm().delete_memslot(id).unwrap());
        touch(&p, 0x5000, true);
        assert_eq!(counts(&p), (2, 1, 0));
        assert!(p.kvm.vm().memslots().is_empty());
    }

    /// An SNP guest_memfd slot never crosses a 2M boundary (growing it
    /// copies its RMP entries); other types' slots do.
    #[test]
    fn snp_slots_stay_inside_2m() {
        for (vm_type, want) in [
            (VmType::Snp, vec![(0x1fe, 2), (0x200, 0x200), (0x400, 1)]),
            (VmType::Tdx, vec![(0x1fe, 0x203)]),
        ] {
            let p = audit(typed(vm_type));
            for gfn in (0x1fe..0x401).rev() {
                touch(&p, gfn << 12, false);
            }
            assert_eq!(slots(&p), want, "{vm_type}");
            assert_eq!(learner(&p).learned(), (1, 0x203, 0));
        }
    }

    /// An SNP guest in an unpatched QEMU does not know it is one: its
    /// accesses carry no C-bit, so they are shared, and the private pages
    /// they reach are converted, not refused; with strict=on they are #PF.
    /// With paging off after launch (an AP's start-up code) they are
    /// private: a page above accept= is not validated, a #VC.
    #[test]
    fn an_snp_guest_counts_conversions_as_allowed_unless_strict() {
        let snp = |strict| {
            audit(Config {
                vm_type: VmType::Snp,
                accept: AcceptPolicy::Below(16 * MB),
                strict,
                ..Config::default()
            })
        };
        let p = snp(false);
        touch(&p, 0x3000, false);
        touch(&p, 0x3000, true);
        assert!(p.kvm.flavour_as::<crate::snp::SnpFirmware>().launched());
        touch(&p, 20 * MB, true);
        assert_eq!(counts(&p), (3, 0, 0));
        assert_eq!(p.kvm.vmm.implicit_conversions.load(Ordering::Relaxed), 2);
        // Private (paging off) above accept=: unvalidated.
        touch(&p, 24 * MB, false);
        assert_eq!(counts(&p), (4, 1, 0));
        // Below accept=, learned after launch: launched as it is learned.
        touch(&p, 8 * MB, false);
        assert_eq!(counts(&p), (5, 1, 0));
        let e = p.kvm.vm().snp_rmp_entry_of(Gpa::new(8 * MB)).unwrap();
        assert!(e.assigned && e.validated, "{e:?}");

        let p = snp(true);
        touch(&p, 0x3000, true);
        touch(&p, 0x4000, true);
        assert_eq!(counts(&p), (2, 2, 0));
    }
}
