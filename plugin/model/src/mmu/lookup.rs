//! The hot path: the lockless stage-2 lookup of a softTLB fill
//! (`kvm_tdp_mmu_walk_lockless_begin()` and the walk of tdp_iter.c), and
//! [`Vm::stage2`], which faults in on a miss.

use std::sync::atomic::Ordering;

use parking_lot::Mutex;

use crate::addr::{Gfn, Gpa, PageLevel, Pfn};
use crate::config::Alias;
use crate::spte;
use crate::types::{Access, RootId, RootRole, Stage2, Translation, VcpuId};
use crate::vcpu::{bump, CachedLeaf, LeafCache};
use crate::vm::{unpack_root, Vm};

impl Vm {
    /// The stage-2 lookup of a mapped page, for a softTLB fill: no lock, no
    /// allocation, no fault-in. `None` means "not mapped with these
    /// permissions, or a host operation is running": call [`Vm::fault_in`]
    /// (or use [`Vm::stage2`], which does both).
    #[inline]
    pub fn lookup(&self, vcpu: VcpuId, gpa: Gpa, access: Access) -> Option<Translation> {
        let v = self.vcpus.get(vcpu.0 as usize);
        if let Some(v) = v {
            bump(&v.lookups);
        }
        let t = self.walk_cached(v.map(|v| &v.leaf), gpa)?;
        if !t.perms.allow(access) {
            return None;
        }
        if let Some(v) = v {
            bump(&v.lookup_hits);
        }
        Some(t)
    }

    /// Lock-free walk of the roots `gpa`'s alias selects, validated by the
    /// seqlock.
    #[inline(always)]
    pub(crate) fn walk_current(&self, gpa: Gpa) -> Option<Translation> {
        self.walk_cached(None, gpa)
    }

    /// [`Vm::walk_current`] for a caller holding `mmu_lock` for read. No
    /// write-locked section runs then, but RMP changes move the seqlock too
    /// (it is the shared stage-2 generation) without taking that lock: a
    /// walk one of them overlapped is walked again, not taken for "not
    /// mapped".
    pub(crate) fn walk_read_locked(&self, gpa: Gpa) -> Option<Translation> {
        loop {
            let seq = self.mmu_seqlock.load(Ordering::Acquire);
            let t = self.walk_current(gpa);
            if t.is_some() || self.mmu_seqlock.load(Ordering::Acquire) == seq {
                return t;
            }
        }
    }

    /// [`Vm::walk_current`] through a vCPU's [`CachedLeaf`].
    #[inline(always)]
    pub(crate) fn walk_cached(
        &self,
        cache: Option<&Mutex<LeafCache>>,
        gpa: Gpa,
    ) -> Option<Translation> {
        let dec = self.alias.decode(gpa)?;
        let roles: &[RootRole] = match dec.alias {
            Alias::Shared => &[RootRole::Direct],
            Alias::Private => &[RootRole::Mirror],
            Alias::ByAttributes => &[RootRole::Direct, RootRole::Mirror],
        };
        let gfn = dec.gfn.raw();
        let s1 = self.mmu_seqlock.load(Ordering::Acquire);
        if s1 & 1 != 0 {
            return None;
        }
        let mut cached = cache.and_then(|c| c.try_lock());
        if let Some(c) = cached.as_deref_mut().and_then(|c| c.slot(gfn).as_ref()) {
            if c.seq == s1 && c.alias == dec.alias && gfn & !(c.level.pages() - 1) == c.base {
                return Some(make_translation(dec.gfn, c.role, c.root, c.spte, c.level));
            }
        }
        let mut found = None;
        for &role in roles {
            let packed = self.current_roots[role.index()].load(Ordering::Acquire);
            if packed == 0 {
                continue;
            }
            let (root, top) = unpack_root(packed);
            if let Some((spte, level)) = self.arena.walk(top, self.root_level, gfn) {
                found = Some((role, root, spte, level));
                break;
            }
        }
        // Every load above is Acquire, so this one cannot move before them: if
        // any of them saw a write from a write-locked section, the seqlock
        // has moved.
        if self.mmu_seqlock.load(Ordering::Acquire) != s1 {
            return None;
        }
        let (role, root, spte, level) = found?;
        // TDX: a mirror leaf whose Secure-EPT entry is not MAPPED.
        if !spte::is_guest_accessible(spte) {
            return None;
        }
        if let Some(c) = cached.as_deref_mut() {
            if role == roles[0] {
                *c.slot(gfn) = Some(CachedLeaf {
                    seq: s1,
                    alias: dec.alias,
                    base: gfn & !(level.pages() - 1),
                    level,
                    role,
                    root,
                    spte,
                });
            }
        }
        Some(make_translation(dec.gfn, role, root, spte, level))
    }

    /// Whether `t`, a translation [`Vm::lookup`] gave, is a 4K leaf whose
    /// 2M-aligned range the TDP maps alike: 512 leaves of the same root,
    /// with the same permissions and state, over contiguous backing frames
    /// ([`crate::tdp::TableArena::leaf_table_uniform`]). Then the answer for
    /// every page of the range is `t`'s moved by the offset, for as long as
    /// [`Vm::stage2_generation`] holds (the changes that could break that
    /// are write-locked sections). What lets QEMU's stage-2 cache keep one
    /// answer for a 2M range a TD maps at 4K, as hardware's paging-structure
    /// caches keep the EPT's upper levels; `false` is always correct.
    pub fn leaf_range_uniform(&self, t: &Translation) -> bool {
        if t.level != PageLevel::Size4K {
            return false;
        }
        let s1 = self.mmu_seqlock.load(Ordering::Acquire);
        let role = if t.private {
            RootRole::Mirror
        } else {
            RootRole::Direct
        };
        let packed = self.current_roots[role.index()].load(Ordering::Acquire);
        if s1 & 1 != 0 || packed == 0 {
            return false;
        }
        let (root, top) = unpack_root(packed);
        root == t.root
            && self
                .arena
                .leaf_table_uniform(top, self.root_level, t.gfn.raw(), s1)
            && self.mmu_seqlock.load(Ordering::Acquire) == s1
    }

    /// The full stage-2 answer for a softTLB fill: [`Vm::lookup`], and on a
    /// miss [`Vm::fault_in`].
    #[inline]
    pub fn stage2(&self, vcpu: VcpuId, gpa: Gpa, access: Access) -> Stage2 {
        match self.lookup(vcpu, gpa, access) {
            Some(t) => Stage2::Mapped(t),
            None => self.fault_in(vcpu, gpa, access),
        }
    }
}

#[inline(always)]
pub(crate) fn make_translation(
    gfn: Gfn,
    role: RootRole,
    root: RootId,
    spte: u64,
    level: PageLevel,
) -> Translation {
    let off = gfn.raw() & (level.pages() - 1);
    Translation {
        gfn,
        backing: Pfn::new(spte::pfn(spte).raw().wrapping_add(off)).addr(),
        level,
        perms: spte::perms(spte),
        private: role == RootRole::Mirror,
        root,
    }
}
