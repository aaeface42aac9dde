//! Disjoint half-open spans of `u64` keys, each with a base value that
//! advances with the key (`value(k) = base + (k - start)`): a gfn range with
//! the pfn of its first frame, or a run of 2M regions. Memory in a uniform
//! state is kept as spans and split only where pages diverge, as KVM's
//! xarray of memory attributes and the TDX module's 2M/1G mappings do.

use std::collections::BTreeMap;

/// A set of disjoint spans `[start, end)`, each carrying `base`, the value
/// of its first key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Spans {
    /// start -> (end, base); disjoint, never empty.
    map: BTreeMap<u64, (u64, u64)>,
    /// Keys covered, summed over the spans.
    keys: u64,
}

impl Spans {
    /// The span containing `k`: (start, end, base).
    fn span_of(&self, k: u64) -> Option<(u64, u64, u64)> {
        self.map
            .range(..=k)
            .next_back()
            .filter(|(_, &(end, _))| k < end)
            .map(|(&s, &(e, b))| (s, e, b))
    }

    /// The value of `k`, if a span covers it.
    pub fn get(&self, k: u64) -> Option<u64> {
        self.span_of(k).map(|(s, _, b)| b + (k - s))
    }

    /// Whether a span covers `k`.
    pub fn contains(&self, k: u64) -> bool {
        self.span_of(k).is_some()
    }

    /// The first covered key in `[start, end)`.
    pub fn first_in(&self, start: u64, end: u64) -> Option<u64> {
        if start >= end {
            return None;
        }
        if self.contains(start) {
            return Some(start);
        }
        self.map.range(start..end).next().map(|(&s, _)| s)
    }

    /// Whether any key of `[start, end)` is covered.
    pub fn overlaps(&self, start: u64, end: u64) -> bool {
        self.first_in(start, end).is_some()
    }

    /// Covers `[start, end)` with values from `base`. The keys must not be
    /// covered yet (`false`, nothing changed, if one is).
    pub fn insert(&mut self, start: u64, end: u64, base: u64) -> bool {
        if start >= end {
            return true;
        }
        if self.overlaps(start, end) {
            return false;
        }
        self.map.insert(start, (end, base));
        self.keys += end - start;
        true
    }

    /// Uncovers `[start, end)`, splitting the spans at its edges; returns
    /// the pieces removed as (start, end, base), in key order.
    pub fn remove(&mut self, start: u64, end: u64) -> Vec<(u64, u64, u64)> {
        let mut out = Vec::new();
        if start >= end {
            return out;
        }
        // Every span that overlaps [start, end): the one holding `start`
        // and those starting inside.
        let first = self.span_of(start).map(|(s, _, _)| s).unwrap_or(start);
        let hit: Vec<(u64, u64, u64)> = self
            .map
            .range(first..end)
            .map(|(&s, &(e, b))| (s, e, b))
            .filter(|&(_, e, _)| e > start)
            .collect();
        for (s, e, b) in hit {
            self.map.remove(&s);
            if s < start {
                self.map.insert(s, (start, b));
            }
            if e > end {
                self.map.insert(end, (e, b + (end - s)));
            }
            let (rs, re) = (s.max(start), e.min(end));
            out.push((rs, re, b + (rs - s)));
            self.keys -= re - rs;
        }
        out
    }

    /// Uncovers `k`; its value if it was covered.
    pub fn take(&mut self, k: u64) -> Option<u64> {
        // The common answer, a key no span covers, with one lookup.
        self.span_of(k)?;
        self.remove(k, k + 1).first().map(|&(_, _, b)| b)
    }

    /// Every span, (start, end, base), in key order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        self.map.iter().map(|(&s, &(e, b))| (s, e, b))
    }

    /// Keys covered.
    pub fn keys(&self) -> u64 {
        self.keys
    }

    /// Spans held (what the representation costs).
    pub fn spans(&self) -> usize {
        self.map.len()
    }

    /// Uncovers everything.
    pub fn clear(&mut self) {
        self.map.clear();
        self.keys = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u64, u64, u64),
        Remove(u64, u64),
        Take(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u64..200, 1u64..40, 0u64..1000).prop_map(|(s, l, b)| Op::Insert(s, s + l, b)),
            (0u64..200, 1u64..40).prop_map(|(s, l)| Op::Remove(s, s + l)),
            (0u64..200).prop_map(Op::Take),
        ]
    }

    proptest! {
        /// The spans and a per-key map agree after any sequence of inserts,
        /// removals and takes: a split that lost or moved one key's value
        /// fails here.
        #[test]
        fn spans_agree_with_a_per_key_map(ops in proptest::collection::vec(op(), 1..60)) {
            let mut spans = Spans::default();
            let mut keys: BTreeMap<u64, u64> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(s, e, b) => {
                        let free = (s..e).all(|k| !keys.contains_key(&k));
                        prop_assert_eq!(spans.insert(s, e, b), free);
                        if free {
                            keys.extend((s..e).map(|k| (k, b + (k - s))));
                        }
                    }
                    Op::Remove(s, e) => {
                        let pieces = spans.remove(s, e);
                        let mut removed = Vec::new();
                        for (ps, pe, pb) in pieces {
                            prop_assert!(s <= ps && pe <= e && ps < pe);
                            removed.extend((ps..pe).map(|k| (k, pb + (k - ps))));
                        }
                        let want: Vec<(u64, u64)> =
                            keys.range(s..e).map(|(&k, &v)| (k, v)).collect();
                        prop_assert_eq!(removed, want);
                        for k in s..e {
                            keys.remove(&k);
                        }
                    }
                    Op::Take(k) => prop_assert_eq!(spans.take(k), keys.remove(&k)),
                }
                for k in 0..260 {
                    prop_assert_eq!(spans.get(k), keys.get(&k).copied(), "key {}", k);
                }
                prop_assert_eq!(spans.keys(), keys.len() as u64);
                for (s, e) in [(0, 260), (10, 11), (50, 90), (199, 240)] {
                    prop_assert_eq!(
                        spans.first_in(s, e),
                        keys.range(s..e).next().map(|(&k, _)| k)
                    );
                }
            }
        }
    }

    #[test]
    fn a_split_keeps_both_sides() {
        let mut s = Spans::default();
        assert!(s.insert(0, 1 << 24, 1 << 20));
        assert_eq!(s.take(5), Some((1 << 20) + 5));
        assert_eq!(s.get(4), Some((1 << 20) + 4));
        assert_eq!(s.get(5), None);
        assert_eq!(s.get(6), Some((1 << 20) + 6));
        assert_eq!(s.spans(), 2);
        assert_eq!(s.keys(), (1 << 24) - 1);
        assert!(!s.insert(3, 6, 0), "3 and 4 are covered");
        assert!(s.insert(5, 6, 7));
        assert_eq!(
            s.remove(2, 8),
            vec![(2, 5, (1 << 20) + 2), (5, 6, 7), (6, 8, (1 << 20) + 6)]
        );
    }
}
