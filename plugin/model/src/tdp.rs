//! TDP page tables: the table arena, roots, the walker, map and zap
//! (arch/x86/kvm/mmu/tdp_iter.c, tdp_mmu.c).
//!
//! Tables are 512 atomic SPTEs, allocated from an arena that only grows in
//! chunks and recycles freed tables through a free list. A non-leaf SPTE holds
//! a table index instead of a host physical address, which keeps the crate
//! free of unsafe code.
//!
//! Concurrency follows the TDP MMU:
//! - Faults install entries under `mmu_lock` held for read, with
//!   compare-and-exchange on the SPTE (`tdp_mmu_set_spte_atomic()`); a fault
//!   that loses a race uses what the winner installed. Faults never remove or
//!   free anything.
//! - Zaps run with `mmu_lock` held for write (the model's host-side
//!   operations are exclusive) and may free tables.
//! - Lookups take no lock at all. KVM's lockless walkers are protected by RCU
//!   (`walk_shadow_page_lockless_begin()`), which safe Rust cannot express
//!   cheaply; the model instead brackets every write-locked section with a
//!   sequence counter (a seqlock) and a lookup that overlaps one retries. A
//!   table freed by a zap is reused only by a later fault, i.e. after the
//!   counter moved, so a lookup that followed a stale table pointer always
//!   fails validation (see `Vm::lookup`).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;

use parking_lot::Mutex;

use crate::addr::{Gfn, GfnRange, PageLevel};
use crate::spte;

/// Entries per table.
pub(crate) const TABLE_ENTRIES: usize = 512;
const CHUNK_SHIFT: u32 = 6;
const CHUNK_TABLES: usize = 1 << CHUNK_SHIFT;
/// 2^14 chunks of 64 tables: 2^20 tables (4 GiB of tables), enough for 2 TiB
/// mapped at 4K.
const MAX_CHUNKS: usize = 1 << 14;

/// One table: 512 SPTEs, and what [`TableArena::leaf_table_uniform`]
/// proved about them.
struct Table {
    sptes: [AtomicU64; TABLE_ENTRIES],
    /// The MMU seqlock value + 1 at which a scan found the 512 entries
    /// uniform, 0 if none did. Only a write-locked section makes a uniform
    /// table non-uniform, and it moves the seqlock; what a fault does under
    /// the read lock only installs an entry or adds permission bits.
    uniform_at: AtomicU64,
}

impl Table {
    fn new() -> Table {
        Table {
            sptes: std::array::from_fn(|_| AtomicU64::new(spte::SHADOW_NONPRESENT_VALUE)),
            uniform_at: AtomicU64::new(0),
        }
    }
}

/// The arena all roots' tables live in.
pub(crate) struct TableArena {
    /// Fixed-size arrays so that the walker's indexing needs no length load
    /// or bounds check beyond the masks.
    chunks: Box<[OnceLock<Box<[Table; CHUNK_TABLES]>>; MAX_CHUNKS]>,
    /// Next never-used table index. Index 0 is never handed out, so a packed
    /// root of 0 means "no root".
    next: AtomicU32,
    free: Mutex<Vec<u32>>,
    live: AtomicU64,
}

impl std::fmt::Debug for TableArena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableArena")
            .field("live_tables", &self.live.load(Ordering::Relaxed))
            .finish()
    }
}

/// A leaf found by [`TableArena::leaves`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LeafEntry {
    pub gfn: Gfn,
    pub level: PageLevel,
    pub spte: u64,
}

/// What a zap did.
#[derive(Clone, Debug, Default)]
pub(crate) struct ZapOutcome {
    /// Leaves zapped, by level (index 0 = 4K).
    pub leaves: [u64; 3],
    /// The gfn ranges of the zapped leaves, when asked for.
    pub leaf_ranges: Vec<GfnRange>,
    /// Non-leaf entries zapped (tables freed).
    pub tables_freed: u64,
}

impl ZapOutcome {
    pub fn total_leaves(&self) -> u64 {
        self.leaves.iter().sum()
    }
}

/// What [`TableArena::map`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MapOutcome {
    /// A new leaf was installed.
    Installed { spte: u64, level: PageLevel },
    /// A leaf was already there (another vCPU won, or a huge leaf covers it).
    Spurious { spte: u64, level: PageLevel },
    /// The arena is full.
    OutOfTables,
}

const fn index_at(gfn: u64, level: u8) -> usize {
    ((gfn >> (9 * (level as u32 - 1))) & (TABLE_ENTRIES as u64 - 1)) as usize
}

const fn span_at(level: u8) -> u64 {
    1 << (9 * (level as u32 - 1))
}

impl TableArena {
    pub fn new() -> TableArena {
        TableArena {
            chunks: (0..MAX_CHUNKS)
                .map(|_| OnceLock::new())
                .collect::<Vec<_>>()
                .into_boxed_slice()
                .try_into()
                .unwrap_or_else(|_| unreachable!("MAX_CHUNKS chunks were collected")),
            next: AtomicU32::new(1),
            free: Mutex::new(Vec::new()),
            live: AtomicU64::new(0),
        }
    }

    #[inline(always)]
    fn table(&self, table: u32) -> Option<&Table> {
        let chunk = self.chunks.get((table >> CHUNK_SHIFT) as usize)?.get()?;
        chunk.get(table as usize & (CHUNK_TABLES - 1))
    }

    #[inline(always)]
    fn slot(&self, table: u32, index: usize) -> Option<&AtomicU64> {
        self.table(table)?.sptes.get(index)
    }

    /// Reads one SPTE; an index that names no table reads as non-present
    /// (only a lookup racing a zap can see one, and it is then discarded).
    #[inline(always)]
    fn load(&self, table: u32, index: usize) -> u64 {
        match self.slot(table, index) {
            Some(s) => s.load(Ordering::Acquire),
            None => spte::SHADOW_NONPRESENT_VALUE,
        }
    }

    fn store(&self, table: u32, index: usize, value: u64) {
        if let Some(s) = self.slot(table, index) {
            s.store(value, Ordering::Release);
        }
    }

    /// Number of tables in use.
    pub fn live_tables(&self) -> u64 {
        self.live.load(Ordering::Relaxed)
    }

    /// Allocates a zeroed table (`tdp_mmu_alloc_sp()`).
    pub fn alloc(&self) -> Option<u32> {
        let t = match self.free.lock().pop() {
            Some(t) => t,
            None => {
                let t = self.next.fetch_add(1, Ordering::Relaxed);
                let chunk = (t >> CHUNK_SHIFT) as usize;
                let cell = self.chunks.get(chunk)?;
                cell.get_or_init(|| {
                    (0..CHUNK_TABLES)
                        .map(|_| Table::new())
                        .collect::<Vec<_>>()
                        .into_boxed_slice()
                        .try_into()
                        .unwrap_or_else(|_| unreachable!("CHUNK_TABLES tables were collected"))
                });
                t
            }
        };
        self.live.fetch_add(1, Ordering::Relaxed);
        Some(t)
    }

    /// Returns a table whose entries are all non-present to the free list.
    fn release(&self, table: u32) {
        invariant!(
            self.is_empty(table),
            "freeing a table that still has entries"
        );
        self.live.fetch_sub(1, Ordering::Relaxed);
        self.free.lock().push(table);
    }

    fn is_empty(&self, table: u32) -> bool {
        (0..TABLE_ENTRIES).all(|i| !spte::is_present(self.load(table, i)))
    }

    /// Walks from `top` (at `root_level`) to the leaf mapping `gfn`
    /// (`tdp_iter` down one path). Lock-free; see the module comment.
    #[inline(always)]
    pub fn walk(&self, top: u32, root_level: u8, gfn: u64) -> Option<(u64, PageLevel)> {
        let mut table = top;
        let mut level = root_level;
        loop {
            let spte = self.load(table, index_at(gfn, level));
            if !spte::is_present(spte) {
                return None;
            }
            if spte::is_leaf(spte, level) {
                return PageLevel::from_number(level).map(|l| (spte, l));
            }
            if level <= 1 {
                return None;
            }
            table = spte::table(spte);
            level -= 1;
        }
    }

    /// Whether the 4K leaf mapping `gfn` sits in a last-level table whose
    /// 512 entries are 4K leaves with the same bits, mapping one run of
    /// contiguous backing frames: then every page of `gfn`'s 2M-aligned
    /// range translates as `gfn` does, moved by its offset. Lock-free like
    /// [`TableArena::walk`]; the caller reads the MMU seqlock `seq` (even)
    /// before and validates it after. The last entry and every 64th are
    /// compared first: a table being filled in order (a guest accepting or
    /// touching a range page by page) fails at once, and one with holes of
    /// any size mostly after a few loads.
    ///
    /// A table found uniform at `seq` is remembered: until the seqlock
    /// moves, entries can only gain permission bits, so a later call needs
    /// only `gfn`'s entry to still follow entry 0 (an entry that gained
    /// bits is then asked about with a full scan; one that did not answers
    /// for the others with the fewer bits, which is safe).
    pub fn leaf_table_uniform(&self, top: u32, root_level: u8, gfn: u64, seq: u64) -> bool {
        let mut table = top;
        for level in (2..=root_level).rev() {
            let spte = self.load(table, index_at(gfn, level));
            if !spte::is_present(spte) || spte::is_leaf(spte, level) {
                return false;
            }
            table = spte::table(spte);
        }
        let Some(t) = self.table(table) else {
            return false;
        };
        let load = |i: usize| t.sptes[i].load(Ordering::Acquire);
        let first = load(0);
        let last = TABLE_ENTRIES - 1;
        // The next frame of entry i is entry i + 1's: adding to the pfn
        // field must not carry out of it.
        let step = 1u64 << spte::SPTE_PAYLOAD_SHIFT;
        let same = |i: usize| load(i) == first + i as u64 * step;
        let proved = seq.wrapping_add(1);
        if t.uniform_at.load(Ordering::Acquire) == proved {
            return same(index_at(gfn, 1));
        }
        let room = spte::SPTE_BASE_ADDR_MASK - (first & spte::SPTE_BASE_ADDR_MASK);
        let uniform = spte::is_present(first)
            && room >= last as u64 * step
            && same(last)
            && (64..last).step_by(64).all(same)
            && (1..last).all(same);
        if uniform {
            t.uniform_at.store(proved, Ordering::Release);
        }
        uniform
    }

    /// ORs `bits` into the leaf mapping `gfn` and returns its level, or
    /// `None` if no leaf maps it. The caller holds `mmu_lock` (for read is
    /// enough: only bits the lookup treats as "more allowed" are set).
    pub fn leaf_fetch_or(
        &self,
        top: u32,
        root_level: u8,
        gfn: u64,
        bits: u64,
    ) -> Option<PageLevel> {
        let mut table = top;
        let mut level = root_level;
        loop {
            let slot = self.slot(table, index_at(gfn, level))?;
            let spte = slot.load(Ordering::Acquire);
            if !spte::is_present(spte) {
                return None;
            }
            if spte::is_leaf(spte, level) {
                slot.fetch_or(bits, Ordering::AcqRel);
                return PageLevel::from_number(level);
            }
            if level <= 1 {
                return None;
            }
            table = spte::table(spte);
            level -= 1;
        }
    }

    /// Installs a leaf for `gfn` at `goal` or the largest smaller level that
    /// is free (`kvm_tdp_mmu_map()`), linking tables on the way down.
    /// `make_leaf(level)` builds the leaf SPTE for the `level` page holding
    /// `gfn`. The caller holds `mmu_lock` for read.
    ///
    /// Where KVM finds a non-leaf at the goal level it replaces it with the
    /// huge leaf and flushes (`tdp_mmu_map_handle_target_level()`); the model
    /// never frees under the read lock, so it maps at the next smaller level
    /// instead. Host-side zaps prune emptied tables of direct roots, which is
    /// what lets huge pages come back after a conversion.
    pub fn map(
        &self,
        top: u32,
        root_level: u8,
        gfn: u64,
        goal: PageLevel,
        make_leaf: impl Fn(PageLevel) -> u64,
    ) -> MapOutcome {
        let mut table = top;
        let mut level = root_level;
        let mut goal = goal.number();
        loop {
            let idx = index_at(gfn, level);
            let Some(slot) = self.slot(table, idx) else {
                return MapOutcome::OutOfTables;
            };
            let mut cur = slot.load(Ordering::Acquire);
            if level == goal {
                let Some(pl) = PageLevel::from_number(level) else {
                    return MapOutcome::OutOfTables;
                };
                if !spte::is_present(cur) {
                    let leaf = make_leaf(pl);
                    match slot.compare_exchange(
                        spte::SHADOW_NONPRESENT_VALUE,
                        leaf,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => {
                            return MapOutcome::Installed {
                                spte: leaf,
                                level: pl,
                            }
                        }
                        Err(now) => cur = now,
                    }
                }
                if spte::is_leaf(cur, level) {
                    return MapOutcome::Spurious {
                        spte: cur,
                        level: pl,
                    };
                }
                // A table already sits where the huge leaf would go.
                goal -= 1;
            } else if !spte::is_present(cur) {
                let Some(t) = self.alloc() else {
                    return MapOutcome::OutOfTables;
                };
                match slot.compare_exchange(
                    spte::SHADOW_NONPRESENT_VALUE,
                    spte::make_nonleaf(t),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => cur = spte::make_nonleaf(t),
                    Err(now) => {
                        // Never published: reusable at once.
                        self.release(t);
                        cur = now;
                    }
                }
            }
            if level > goal {
                if spte::is_leaf(cur, level) {
                    let pl = PageLevel::from_number(level).unwrap_or(PageLevel::Size4K);
                    return MapOutcome::Spurious {
                        spte: cur,
                        level: pl,
                    };
                }
                table = spte::table(cur);
                level -= 1;
            }
        }
    }

    /// Zaps every leaf overlapping `range` under the root `top`
    /// (`tdp_mmu_zap_leafs()`): a huge leaf that only partly overlaps is zapped
    /// whole. With `prune`, tables left empty are freed too (direct roots;
    /// never the TDX mirror, whose Secure-EPT pages go only at teardown). The
    /// caller holds `mmu_lock` for write.
    pub fn zap_leafs(
        &self,
        top: u32,
        root_level: u8,
        range: GfnRange,
        prune: bool,
        out: &mut ZapOutcome,
    ) {
        if range.is_empty() {
            return;
        }
        self.zap_leafs_in(top, root_level, 0, range, prune, out);
    }

    fn zap_leafs_in(
        &self,
        table: u32,
        level: u8,
        base: u64,
        range: GfnRange,
        prune: bool,
        out: &mut ZapOutcome,
    ) {
        let span = span_at(level);
        let table_end = base.saturating_add(span.saturating_mul(TABLE_ENTRIES as u64));
        let start = range.start().raw().max(base);
        let end = range.end().raw().min(table_end);
        if start >= end {
            return;
        }
        let first = ((start - base) / span) as usize;
        let last = ((end - 1 - base) / span) as usize;
        for idx in first..=last.min(TABLE_ENTRIES - 1) {
            let cur = self.load(table, idx);
            if !spte::is_present(cur) {
                continue;
            }
            let entry_gfn = base + idx as u64 * span;
            if spte::is_leaf(cur, level) {
                self.store(table, idx, spte::SHADOW_NONPRESENT_VALUE);
                out.leaves[(level - 1).min(2) as usize] += 1;
                if let Some(r) = GfnRange::from_start_len(Gfn::new(entry_gfn), span) {
                    out.leaf_ranges.push(r);
                }
            } else {
                let child = spte::table(cur);
                self.zap_leafs_in(child, level - 1, entry_gfn, range, prune, out);
                if prune && self.is_empty(child) {
                    self.store(table, idx, spte::SHADOW_NONPRESENT_VALUE);
                    self.release(child);
                    out.tables_freed += 1;
                }
            }
        }
    }

    /// Zaps everything under `top`, then frees `top` itself
    /// (`tdp_mmu_zap_root()`). Leaves go in a first pass and non-leaves in a
    /// second, the order the TDX module requires (a Secure-EPT page can only be
    /// removed once no leaf below it remains; KVM's two-pass zap of a root does
    /// the same at the 1G level).
    pub fn zap_root(&self, top: u32, root_level: u8, out: &mut ZapOutcome) {
        if let Some(all) =
            GfnRange::from_start_len(Gfn::new(0), span_at(root_level) * TABLE_ENTRIES as u64)
        {
            self.zap_leafs(top, root_level, all, false, out);
        }
        self.free_tables(top, root_level, out);
        self.release(top);
        out.tables_freed += 1;
    }

    fn free_tables(&self, table: u32, level: u8, out: &mut ZapOutcome) {
        for idx in 0..TABLE_ENTRIES {
            let cur = self.load(table, idx);
            if spte::is_present(cur) && !spte::is_leaf(cur, level) {
                let child = spte::table(cur);
                self.free_tables(child, level - 1, out);
                self.store(table, idx, spte::SHADOW_NONPRESENT_VALUE);
                self.release(child);
                out.tables_freed += 1;
            }
        }
    }

    /// Every leaf under `top`, in gfn order (for invariants and tests).
    pub fn leaves(&self, top: u32, root_level: u8) -> Vec<LeafEntry> {
        let mut out = Vec::new();
        self.leaves_in(top, root_level, 0, &mut out);
        out
    }

    fn leaves_in(&self, table: u32, level: u8, base: u64, out: &mut Vec<LeafEntry>) {
        let span = span_at(level);
        for idx in 0..TABLE_ENTRIES {
            let cur = self.load(table, idx);
            if !spte::is_present(cur) {
                continue;
            }
            let gfn = base + idx as u64 * span;
            if spte::is_leaf(cur, level) {
                if let Some(l) = PageLevel::from_number(level) {
                    out.push(LeafEntry {
                        gfn: Gfn::new(gfn),
                        level: l,
                        spte: cur,
                    });
                }
            } else {
                self.leaves_in(spte::table(cur), level - 1, gfn, out);
            }
        }
    }

    /// Number of tables reachable from `top`, `top` included.
    pub fn tables_under(&self, top: u32, root_level: u8) -> u64 {
        let mut n = 1;
        if root_level > 1 {
            for idx in 0..TABLE_ENTRIES {
                let cur = self.load(top, idx);
                if spte::is_present(cur) && !spte::is_leaf(cur, root_level) {
                    n += self.tables_under(spte::table(cur), root_level - 1);
                }
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Pfn;
    use crate::spte::make_leaf;
    use crate::types::Perms;

    fn leaf_for(gfn: u64) -> impl Fn(PageLevel) -> u64 {
        move |l: PageLevel| make_leaf(Pfn::new(0x1000 + (gfn & !(l.pages() - 1))), l, Perms::RWX)
    }

    /// A table proved uniform is remembered until the seqlock moves; an
    /// entry that gained bits meanwhile is not answered for by the others,
    /// and a full scan at a new seqlock value sees it.
    #[test]
    fn uniform_table_is_remembered_per_seqlock_value() {
        let a = TableArena::new();
        let top = a.alloc().unwrap();
        for g in 0..512 {
            a.map(top, 4, g, PageLevel::Size4K, leaf_for(g));
        }
        assert!(a.leaf_table_uniform(top, 4, 7, 0));
        assert!(a.leaf_table_uniform(top, 4, 300, 0));
        // What an accept does under the read lock: one entry gains a bit.
        a.leaf_fetch_or(top, 4, 9, spte::SPTE_GUEST_ACCESSIBLE)
            .unwrap();
        assert!(!a.leaf_table_uniform(top, 4, 9, 0), "the changed entry");
        assert!(a.leaf_table_uniform(top, 4, 10, 0), "the others, as before");
        assert!(
            !a.leaf_table_uniform(top, 4, 10, 2),
            "a new seqlock value scans"
        );
        // Zapped (under the write lock, which moves the seqlock): gone.
        let mut out = ZapOutcome::default();
        a.zap_leafs(top, 4, GfnRange::one(Gfn::new(9)), false, &mut out);
        a.map(top, 4, 9, PageLevel::Size4K, leaf_for(9));
        assert!(a.leaf_table_uniform(top, 4, 10, 4));
        let mut out = ZapOutcome::default();
        a.zap_leafs(top, 4, GfnRange::one(Gfn::new(500)), false, &mut out);
        assert!(!a.leaf_table_uniform(top, 4, 10, 6));
    }

    #[test]
    fn map_walk_zap() {
        let a = TableArena::new();
        let top = a.alloc().unwrap();
        assert!(matches!(
            a.map(top, 4, 5, PageLevel::Size4K, leaf_for(5)),
            MapOutcome::Installed { .. }
        ));
        assert!(matches!(
            a.map(top, 4, 5, PageLevel::Size4K, leaf_for(5)),
            MapOutcome::Spurious { .. }
        ));
        let (s, l) = a.walk(top, 4, 5).unwrap();
        assert_eq!(l, PageLevel::Size4K);
        assert_eq!(spte::pfn(s), Pfn::new(0x1005));
        assert!(a.walk(top, 4, 6).is_none());
        // A 2M leaf elsewhere.
        assert!(matches!(
            a.map(top, 4, 0x400 + 7, PageLevel::Size2M, leaf_for(0x407)),
            MapOutcome::Installed {
                level: PageLevel::Size2M,
                ..
            }
        ));
        let (s, l) = a.walk(top, 4, 0x5ff).unwrap();
        assert_eq!((spte::pfn(s), l), (Pfn::new(0x1400), PageLevel::Size2M));
        // A 2M goal where 4K leaves already hang falls back to 4K.
        assert!(matches!(
            a.map(top, 4, 9, PageLevel::Size2M, leaf_for(9)),
            MapOutcome::Installed {
                level: PageLevel::Size4K,
                ..
            }
        ));
        assert_eq!(a.leaves(top, 4).len(), 3);
        // Zapping [0x500, 0x501) drops the whole 2M leaf; pruning frees
        // nothing else because gfns 5 and 9 remain.
        let mut out = ZapOutcome::default();
        a.zap_leafs(top, 4, GfnRange::one(Gfn::new(0x500)), true, &mut out);
        assert_eq!(out.leaves, [0, 1, 0]);
        assert_eq!(
            out.leaf_ranges,
            vec![GfnRange::from_start_len(Gfn::new(0x400), 512).unwrap()]
        );
        assert!(a.walk(top, 4, 0x400).is_none());
        let before = a.live_tables();
        let mut out = ZapOutcome::default();
        a.zap_leafs(
            top,
            4,
            GfnRange::new(Gfn::new(0), Gfn::new(16)).unwrap(),
            true,
            &mut out,
        );
        assert_eq!(out.total_leaves(), 2);
        assert_eq!(out.tables_freed, 3);
        assert_eq!(a.live_tables(), before - 3);
        assert_eq!(a.tables_under(top, 4), 1);
    }

    #[test]
    fn zap_root_frees_every_table() {
        let a = TableArena::new();
        let top = a.alloc().unwrap();
        for g in [0u64, 1 << 20, 1 << 30, 12345] {
            a.map(top, 4, g, PageLevel::Size4K, leaf_for(g));
        }
        let mut out = ZapOutcome::default();
        a.zap_root(top, 4, &mut out);
        assert_eq!(out.total_leaves(), 4);
        assert_eq!(a.live_tables(), 0);
        // Freed tables are reused.
        let t = a.alloc().unwrap();
        assert!(a.is_empty(t));
    }
}
