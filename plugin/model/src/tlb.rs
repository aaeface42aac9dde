//! TLB flushes and the per-vCPU TLB model.
//!
//! Every operation that invalidates translations returns a [`Flush`] token
//! (the idea of x86_64's `MapperFlush`, and of KVM's zap functions returning
//! `flush` for the caller to act on). The token is `#[must_use]` and not
//! `Clone`: the caller passes it to [`crate::Vm::flush`], which updates the TLB
//! model and answers the [`FlushRequest`] the plugin turns into QEMU softTLB
//! flushes, or drops it on purpose with [`Flush::ignore`]. Nothing flushes
//! behind the caller's back.
//!
//! KVM's two flavours (arch/x86/include/asm/kvm_host.h):
//! - `KVM_REQ_TLB_FLUSH_CURRENT`: flush the translations of the vCPU's current
//!   root only ([`FlushKind::CurrentRoot`]).
//! - `KVM_REQ_TLB_FLUSH`: flush everything the vCPU may cache, every root
//!   ([`FlushKind::AllRoots`]). Unmapping memory always needs this on every
//!   vCPU (`kvm_flush_remote_tlbs()`), because any vCPU may have cached the
//!   translation through any root.
//!
//! QEMU's softTLB is not tagged by root, so the plugin flushes the whole
//! softTLB of each targeted vCPU for either kind; the model keeps the
//! distinction so that it can say which cached translations a flush removed.

use std::collections::HashMap;

use crate::addr::GfnRange;
use crate::types::{FlushKind, FlushRequest, RootId, RootRole, Translation, ZapReason};

/// A pending TLB flush: the result of an operation that invalidated
/// translations. Pass it to [`crate::Vm::flush`] or drop it with
/// [`Flush::ignore`].
#[must_use = "stale translations stay usable until this flush is performed: pass it to Vm::flush"]
#[derive(Debug, PartialEq, Eq)]
pub struct Flush {
    req: Option<FlushRequest>,
}

impl Flush {
    /// Nothing to flush.
    pub const fn none() -> Flush {
        Flush { req: None }
    }

    pub(crate) const fn new(req: FlushRequest) -> Flush {
        Flush { req: Some(req) }
    }

    /// `flush ? REMOTE_ALL : none`.
    pub(crate) const fn remote_if(flush: bool) -> Flush {
        if flush {
            Flush::new(FlushRequest::REMOTE_ALL)
        } else {
            Flush::none()
        }
    }

    /// `flush ? kvm_flush_remote_tlbs_range(gfns) : none`.
    pub(crate) const fn remote_range_if(flush: bool, gfns: GfnRange) -> Flush {
        if flush {
            Flush::new(FlushRequest::remote_range(gfns))
        } else {
            Flush::none()
        }
    }

    /// Whether a flush is needed.
    pub const fn is_needed(&self) -> bool {
        self.req.is_some()
    }

    /// The flush the token stands for.
    pub const fn request(&self) -> Option<FlushRequest> {
        self.req
    }

    /// One token covering both (KVM accumulates `flush |= ...`).
    pub fn merge(self, other: Flush) -> Flush {
        let req = match (self.req, other.req) {
            (Some(a), Some(b)) => Some(a.merge(b)),
            (a, b) => a.or(b),
        };
        Flush { req }
    }

    /// Drops the token without flushing. Only correct when the caller knows
    /// no vCPU can hold a translation the operation invalidated.
    pub fn ignore(self) {}

    pub(crate) fn into_request(self) -> Option<FlushRequest> {
        self.req
    }
}

/// A zap that removed the leaf behind a cached translation: what the
/// missing-flush detector names when the translation is used before a flush.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZapRecord {
    /// Which zap of the VM's life (1 is the first), in the order they ran.
    pub seq: u64,
    /// The root zapped.
    pub root: RootId,
    /// Its role.
    pub role: RootRole,
    /// The range asked for.
    pub range: GfnRange,
    /// Why.
    pub reason: ZapReason,
}

/// One cached translation in the TLB model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlbEntry {
    /// What was installed.
    pub translation: Translation,
    /// The last zap that removed the translation's leaf since it was
    /// installed (only kept while [`crate::Vm::set_tlb_tracking`] is on).
    /// A flush drops the entry, so a marked entry is a stale one that a
    /// flush still owes.
    pub zapped: Option<ZapRecord>,
}

/// The model of one vCPU's TLB (QEMU's softTLB, as far as stage 2 goes):
/// translations keyed by the raw GPA frame (alias bits included), tagged by
/// the root they came from.
#[derive(Debug, Default)]
pub(crate) struct VcpuTlb {
    entries: HashMap<u64, TlbEntry>,
    /// The roots the vCPU used last (its "current" roots), by role index.
    loaded: [Option<RootId>; 2],
}

impl VcpuTlb {
    pub fn get(&self, raw_gfn: u64) -> Option<TlbEntry> {
        self.entries.get(&raw_gfn).copied()
    }

    pub fn insert(&mut self, raw_gfn: u64, t: Translation, role_index: usize) {
        if let Some(slot) = self.loaded.get_mut(role_index) {
            *slot = Some(t.root);
        }
        self.entries.insert(
            raw_gfn,
            TlbEntry {
                translation: t,
                zapped: None,
            },
        );
    }

    /// Marks the entries `zap` made stale: those of its root whose leaf
    /// overlaps its range (a zap of one 4K frame removes the whole 2M leaf
    /// that maps it, and so every translation taken from that leaf).
    /// Returns how many.
    pub fn mark_zapped(&mut self, zap: ZapRecord) -> usize {
        let mut n = 0;
        for e in self.entries.values_mut() {
            let t = &e.translation;
            if t.root == zap.root && zap.range.overlaps(t.page()) {
                e.zapped = Some(zap);
                n += 1;
            }
        }
        n
    }

    /// Drops the entries `kind` and `gfns` cover (see [`FlushRequest`]).
    /// Returns how many.
    pub fn apply(&mut self, kind: FlushKind, gfns: Option<GfnRange>) -> usize {
        let before = self.entries.len();
        let loaded = self.loaded;
        let covered = |e: &TlbEntry| {
            let t = &e.translation;
            (kind == FlushKind::AllRoots || loaded.contains(&Some(t.root)))
                && gfns.is_none_or(|g| g.contains(t.gfn))
        };
        if kind == FlushKind::AllRoots && gfns.is_none() {
            self.entries.clear();
        } else {
            self.entries.retain(|_, e| !covered(e));
        }
        before - self.entries.len()
    }

    pub fn entries(&self) -> impl Iterator<Item = (u64, TlbEntry)> + '_ {
        self.entries.iter().map(|(k, v)| (*k, *v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Gfn;
    use crate::types::{FlushTarget, VcpuId};

    #[test]
    fn merge_widens() {
        let one = |v| {
            Flush::new(FlushRequest {
                target: FlushTarget::Vcpu(VcpuId(v)),
                kind: FlushKind::CurrentRoot,
                gfns: None,
            })
        };
        let m = one(1).merge(one(1));
        assert_eq!(m.request().unwrap().target, FlushTarget::Vcpu(VcpuId(1)));
        let m = one(1).merge(one(2));
        assert_eq!(m.request().unwrap().target, FlushTarget::AllVcpus);
        assert_eq!(m.request().unwrap().kind, FlushKind::CurrentRoot);
        let m = Flush::none().merge(Flush::remote_if(true));
        assert_eq!(m.request(), Some(FlushRequest::REMOTE_ALL));
        assert!(!Flush::none().merge(Flush::none()).is_needed());
        Flush::remote_if(false).ignore();
        assert!(FlushRequest::REMOTE_ALL.covers(VcpuId(9)));
    }

    #[test]
    fn merged_ranges_cover_both() {
        let r = |start, end| GfnRange::new(Gfn::new(start), Gfn::new(end)).unwrap();
        let one = |start, end| Flush::remote_range_if(true, r(start, end));
        let m = one(0x10, 0x11).merge(one(0x40, 0x42));
        assert_eq!(m.request(), Some(FlushRequest::remote_range(r(0x10, 0x42))));
        let m = one(0x10, 0x11).merge(Flush::remote_if(true));
        assert_eq!(m.request(), Some(FlushRequest::REMOTE_ALL));
        assert!(!Flush::remote_range_if(false, r(1, 2)).is_needed());
    }
}
