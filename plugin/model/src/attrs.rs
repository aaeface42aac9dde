//! Memory attributes (KVM_SET_MEMORY_ATTRIBUTES, virt/kvm/kvm_main.c
//! `kvm_vm_set_mem_attributes()`): which gfns are private.
//!
//! KVM keeps the attributes in an xarray indexed by gfn, independent of
//! memslots: attributes exist with or without a slot. Here they are a sorted
//! set of disjoint private ranges ([`RangeSet`]) so that converting 1 GiB is one
//! range operation. Beside them lives the huge-page "mixed" tracking that KVM
//! keeps in each memslot's `lpage_info` (`KVM_LPAGE_MIXED_FLAG`, updated by
//! `kvm_arch_post_set_memory_attributes()` in arch/x86/kvm/mmu/mmu.c): a huge
//! page whose frames do not all share one attribute cannot be mapped huge.
//! cvmem tracks it per gfn rather than per slot; slot edges are checked
//! separately ([`crate::memslot::Memslot::allows_huge`]).

use std::collections::{BTreeMap, BTreeSet};

use crate::addr::{Gfn, GfnRange, PageLevel};

/// A set of gfns stored as disjoint, non-adjacent half-open ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeSet {
    /// start -> end, disjoint and never touching.
    ranges: BTreeMap<u64, u64>,
}

impl RangeSet {
    /// The empty set.
    pub fn new() -> RangeSet {
        RangeSet::default()
    }

    /// Whether `gfn` is in the set.
    pub fn contains(&self, gfn: Gfn) -> bool {
        let g = gfn.raw();
        self.ranges
            .range(..=g)
            .next_back()
            .is_some_and(|(_, &end)| g < end)
    }

    /// `Some(true)` if every frame of `range` is in the set, `Some(false)` if
    /// none is, `None` if mixed (KVM's `kvm_range_has_memory_attributes()`
    /// asked both ways). An empty range is `Some(true)`.
    pub fn uniform(&self, range: GfnRange) -> Option<bool> {
        if range.is_empty() {
            return Some(true);
        }
        let (s, e) = (range.start().raw(), range.end().raw());
        // The range containing or preceding `s`.
        if let Some((_, &end)) = self.ranges.range(..=s).next_back() {
            if s < end {
                return (e <= end).then_some(true);
            }
        }
        // Nothing covers `s`: uniform "absent" iff no range starts in (s, e).
        match self.ranges.range(s..e).next() {
            None => Some(false),
            Some(_) => None,
        }
    }

    /// Adds (`value` true) or removes every frame of `range`.
    pub fn set(&mut self, range: GfnRange, value: bool) {
        if range.is_empty() {
            return;
        }
        let (mut s, mut e) = (range.start().raw(), range.end().raw());
        // Collect every range that overlaps or touches [s, e).
        let touching: Vec<(u64, u64)> = self
            .ranges
            .range(..=e)
            .rev()
            .take_while(|(_, &end)| end >= s)
            .map(|(&a, &b)| (a, b))
            .collect();
        for (a, b) in &touching {
            self.ranges.remove(a);
            if value {
                s = s.min(*a);
                e = e.max(*b);
            } else {
                if *a < s {
                    self.ranges.insert(*a, s.min(*b));
                }
                if *b > e {
                    self.ranges.insert(e.max(*a), *b);
                }
            }
        }
        if value {
            self.ranges.insert(s, e);
        }
    }

    /// The ranges, sorted.
    pub fn iter(&self) -> impl Iterator<Item = GfnRange> + '_ {
        self.ranges
            .iter()
            .filter_map(|(&s, &e)| GfnRange::new(Gfn::new(s), Gfn::new(e)))
    }

    /// The parts of `range` that are in the set.
    pub fn intersecting(&self, range: GfnRange) -> Vec<GfnRange> {
        let mut out = Vec::new();
        let first = self
            .ranges
            .range(..=range.start().raw())
            .next_back()
            .map(|(&s, _)| s)
            .unwrap_or(range.start().raw());
        for (&s, &e) in self.ranges.range(first..range.end().raw()) {
            if let Some(r) =
                GfnRange::new(Gfn::new(s), Gfn::new(e)).and_then(|r| r.intersect(range))
            {
                out.push(r);
            }
        }
        out
    }

    /// The number of frames in the set.
    pub fn frames(&self) -> u64 {
        self.ranges.iter().map(|(s, e)| e - s).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

/// The memory attributes of a VM and the huge-page mixed tracking derived from
/// them. Immutable once published; a conversion builds a new value.
#[derive(Clone, Debug, Default)]
pub struct MemAttrs {
    private: RangeSet,
    /// Huge-page frame numbers (gfn >> level shift) whose frames have mixed
    /// attributes, per level: index 0 is 2M, index 1 is 1G.
    mixed: [BTreeSet<u64>; 2],
}

fn level_index(level: PageLevel) -> Option<usize> {
    match level {
        PageLevel::Size4K => None,
        PageLevel::Size2M => Some(0),
        PageLevel::Size1G => Some(1),
    }
}

impl MemAttrs {
    /// No private memory anywhere.
    pub fn new() -> MemAttrs {
        MemAttrs::default()
    }

    /// `kvm_mem_is_private()`: whether `gfn` has `KVM_MEMORY_ATTRIBUTE_PRIVATE`.
    pub fn is_private(&self, gfn: Gfn) -> bool {
        self.private.contains(gfn)
    }

    /// The private ranges.
    pub fn private_ranges(&self) -> &RangeSet {
        &self.private
    }

    /// Whether the whole of `range` already has the attribute: KVM returns
    /// early from `kvm_vm_set_mem_attributes()` without any invalidation then.
    pub fn range_is(&self, range: GfnRange, private: bool) -> bool {
        self.private.uniform(range) == Some(private)
    }

    /// The `lpage_info` mixed flag of the `level` page holding `gfn`
    /// (`hugepage_test_mixed()`); always false for 4K.
    pub fn is_mixed(&self, level: PageLevel, gfn: Gfn) -> bool {
        level_index(level)
            .is_some_and(|i| self.mixed[i].contains(&(gfn.raw() >> level.gfn_shift())))
    }

    /// The attribute store of the conversion: sets or clears PRIVATE on
    /// `range`. The mixed flags are stale until [`MemAttrs::post_set`].
    pub fn set(&mut self, range: GfnRange, private: bool) {
        self.private.set(range, private);
    }

    /// The post phase (`kvm_arch_post_set_memory_attributes()`): recomputes the
    /// mixed flag of every huge page touching `range`. Pages fully inside it
    /// now have one attribute; only the head and tail page per level need a
    /// real check (KVM's `hugepage_has_attrs()`).
    pub fn post_set(&mut self, range: GfnRange) {
        if range.is_empty() {
            return;
        }
        for level in PageLevel::HUGE {
            let Some(i) = level_index(level) else {
                continue;
            };
            let shift = level.gfn_shift();
            let first = range.start().raw() >> shift;
            let last = (range.end().raw() - 1) >> shift;
            // Drop every flag in [first, last]; re-add head and tail if mixed.
            let gone: Vec<u64> = self.mixed[i].range(first..=last).copied().collect();
            for g in gone {
                self.mixed[i].remove(&g);
            }
            for hp in [first, last] {
                let page = GfnRange::page_containing(Gfn::new(hp << shift), level);
                if self.private.uniform(page).is_none() {
                    self.mixed[i].insert(hp);
                }
            }
        }
    }

    /// Checks the mixed flags against the attributes (for tests).
    pub fn mixed_is_consistent(&self) -> bool {
        PageLevel::HUGE.into_iter().all(|level| {
            let i = level_index(level).unwrap_or(0);
            let shift = level.gfn_shift();
            // Every flagged page is mixed ...
            let flagged_ok = self.mixed[i].iter().all(|&hp| {
                self.private
                    .uniform(GfnRange::page_containing(Gfn::new(hp << shift), level))
                    .is_none()
            });
            // ... and every page holding a range edge that is mixed is flagged.
            let edges_ok = self.private.iter().all(|r| {
                [r.start(), Gfn::new(r.end().raw() - 1)]
                    .into_iter()
                    .all(|g| {
                        let page = GfnRange::page_containing(g, level);
                        self.private.uniform(page).is_some()
                            || self.mixed[i].contains(&(g.raw() >> shift))
                    })
            });
            flagged_ok && edges_ok
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: u64, e: u64) -> GfnRange {
        GfnRange::new(Gfn::new(s), Gfn::new(e)).unwrap()
    }

    #[test]
    fn range_set_merges_and_splits() {
        let mut s = RangeSet::new();
        s.set(r(10, 20), true);
        s.set(r(20, 30), true);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![r(10, 30)]);
        s.set(r(15, 17), false);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![r(10, 15), r(17, 30)]);
        assert!(s.contains(Gfn::new(14)));
        assert!(!s.contains(Gfn::new(15)));
        assert_eq!(s.uniform(r(10, 15)), Some(true));
        assert_eq!(s.uniform(r(15, 17)), Some(false));
        assert_eq!(s.uniform(r(14, 16)), None);
        assert_eq!(s.uniform(r(0, 10)), Some(false));
        assert_eq!(s.uniform(r(0, 11)), None);
        assert_eq!(s.frames(), 18);
        s.set(r(0, 100), false);
        assert!(s.is_empty());
        s.set(r(5, 6), true);
        s.set(r(7, 8), true);
        s.set(r(6, 7), true);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![r(5, 8)]);
        assert_eq!(s.intersecting(r(6, 100)), vec![r(6, 8)]);
    }

    #[test]
    fn mixed_tracking_follows_conversions() {
        let mut a = MemAttrs::new();
        // 4K private inside the first 2M page: that 2M page and its 1G page
        // are mixed.
        let one = r(1, 2);
        a.set(one, true);
        a.post_set(one);
        assert!(a.is_mixed(PageLevel::Size2M, Gfn::new(0)));
        assert!(a.is_mixed(PageLevel::Size1G, Gfn::new(0)));
        assert!(!a.is_mixed(PageLevel::Size2M, Gfn::new(512)));
        assert!(a.mixed_is_consistent());
        // Converting the whole 2M page makes it uniform again.
        let page = r(0, 512);
        a.set(page, true);
        a.post_set(page);
        assert!(!a.is_mixed(PageLevel::Size2M, Gfn::new(0)));
        assert!(a.is_mixed(PageLevel::Size1G, Gfn::new(0)));
        let g = r(0, 1 << 18);
        a.set(g, false);
        a.post_set(g);
        assert!(!a.is_mixed(PageLevel::Size1G, Gfn::new(0)));
        assert!(a.mixed_is_consistent());
        assert!(a.range_is(g, false));
    }
}
