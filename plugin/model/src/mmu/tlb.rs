//! The TLB model's interface on the VM: performing flush tokens, recording
//! and probing cached translations, missing-flush detection.

use std::sync::atomic::Ordering;

use crate::addr::{GfnRange, Gpa};
use crate::event::{Counters, Event};
use crate::private::PrivateMem;
use crate::tlb::{Flush, ZapRecord};
use crate::types::{
    Access, FlushKind, FlushRequest, FlushTarget, RootId, RootRole, Stage2, Stage2Fault,
    Translation, VcpuId, ZapReason,
};
use crate::vm::Vm;

/// The answer of the TLB model to a simulated guest access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlbAccess {
    /// The vCPU's TLB held a translation. `stale` says it no longer matches
    /// the tables: a zap happened and its flush has not.
    Hit {
        /// The cached translation.
        translation: Translation,
        /// Whether the tables now say otherwise.
        stale: bool,
    },
    /// Miss: the model was asked and the result cached.
    Filled(Translation),
    /// Miss, and the model refused the access.
    Fault(Stage2Fault),
}

impl Vm {
    /// Performs the bookkeeping of `flush` in the TLB model and returns what
    /// the plugin must flush in QEMU (`None`: nothing).
    pub fn flush(&self, flush: Flush) -> Option<FlushRequest> {
        let req = flush.into_request()?;
        Counters::inc(&self.counters.flushes);
        if req.target == FlushTarget::AllVcpus {
            Counters::inc(&self.counters.flushes_all_vcpus);
        }
        for (i, v) in self.vcpus.iter().enumerate() {
            if req.covers(VcpuId(i as u32)) {
                v.tlb.lock().apply(req.kind, req.gfns);
            }
        }
        self.private.tlb_flushed(req, self.config.max_vcpus);
        self.events.emit(|| Event::Flush { request: req });
        Some(req)
    }

    /// A guest-requested flush of one vCPU (e.g. INVEPT single-context
    /// analogue): a token for the caller to pass to [`Vm::flush`].
    pub fn request_flush(&self, vcpu: VcpuId, kind: FlushKind) -> Flush {
        Flush::new(FlushRequest {
            target: FlushTarget::Vcpu(vcpu),
            kind,
            gfns: None,
        })
    }

    /// Records that the plugin installed `t` for `gpa` in `vcpu`'s softTLB.
    pub fn tlb_record(&self, vcpu: VcpuId, gpa: Gpa, t: Translation) {
        if let Some(v) = self.vcpus.get(vcpu.0 as usize) {
            let role = if t.private {
                RootRole::Mirror
            } else {
                RootRole::Direct
            };
            v.tlb.lock().insert(gpa.gfn().raw(), t, role.index());
        }
    }

    /// Records in `vcpu`'s TLB model the translation the current tables give
    /// for `gpa` (the one a stage-2 fill just handed to QEMU), and returns
    /// it; `None` if the tables do not map `gpa`.
    pub fn tlb_record_current(&self, vcpu: VcpuId, gpa: Gpa) -> Option<Translation> {
        let t = {
            let _r = self.mmu_lock.read();
            self.walk_read_locked(gpa)
        }?;
        self.tlb_record(vcpu, gpa, t);
        Some(t)
    }

    /// Simulates a guest access through `vcpu`'s TLB: a cached translation
    /// that allows `access` is used as is (stale or not, as hardware would);
    /// otherwise the model is asked ([`Vm::stage2`]) and the answer cached.
    pub fn tlb_access(&self, vcpu: VcpuId, gpa: Gpa, access: Access) -> TlbAccess {
        if let Some(hit) = self.tlb_probe(vcpu, gpa, access) {
            return hit;
        }
        match self.stage2(vcpu, gpa, access) {
            Stage2::Mapped(t) => {
                self.tlb_record(vcpu, gpa, t);
                TlbAccess::Filled(t)
            }
            Stage2::Fault(f) => TlbAccess::Fault(f),
        }
    }

    /// The cached translation `vcpu` would use for `access` to `gpa`, and
    /// whether it is stale (missing-flush detection), without filling.
    pub fn tlb_probe(&self, vcpu: VcpuId, gpa: Gpa, access: Access) -> Option<TlbAccess> {
        let v = self.vcpus.get(vcpu.0 as usize)?;
        let e = v.tlb.lock().get(gpa.gfn().raw())?;
        if !e.translation.perms.allow(access) {
            return None;
        }
        Some(TlbAccess::Hit {
            translation: e.translation,
            stale: !self.explains(gpa, &e.translation),
        })
    }

    /// Whether the current tables still map `gpa` the way `t` says.
    pub(crate) fn explains(&self, gpa: Gpa, t: &Translation) -> bool {
        let cur = {
            let _r = self.mmu_lock.read();
            self.walk_read_locked(gpa)
        };
        cur.is_some_and(|c| {
            c.backing == t.backing
                && c.private == t.private
                && (!t.perms.write || c.perms.write)
                && (!t.perms.exec || c.perms.exec)
        })
    }

    /// Missing-flush detection on or off. While on, every zap marks the
    /// TLB-model entries it makes stale with a [`ZapRecord`], and
    /// [`Vm::tlb_missing_flush`] reports their use. Off (the default), zaps
    /// only bump a counter.
    pub fn set_tlb_tracking(&self, on: bool) {
        self.tlb_tracking.store(on, Ordering::Relaxed);
    }

    /// Records a zap of `range` in root `root` against every vCPU's TLB
    /// model (runs under mmu_lock for write, so zaps are numbered in the
    /// order they change the tables).
    pub(crate) fn tlb_mark_zapped(
        &self,
        root: RootId,
        role: RootRole,
        range: GfnRange,
        reason: ZapReason,
    ) {
        let seq = self.zap_seq.fetch_add(1, Ordering::Relaxed) + 1;
        if !self.tlb_tracking.load(Ordering::Relaxed) {
            return;
        }
        let zap = ZapRecord {
            seq,
            root,
            role,
            range,
            reason,
        };
        for v in self.vcpus.iter() {
            v.tlb.lock().mark_zapped(zap);
        }
    }

    /// Missing-flush detection: if `vcpu`'s TLB model holds a translation
    /// for `gpa` (raw, alias bits included) whose leaf a zap removed and no
    /// flush has dropped since, that translation and the zap. An access
    /// through it is one the zap's flush should have prevented.
    pub fn tlb_missing_flush(&self, vcpu: VcpuId, gpa: Gpa) -> Option<(Translation, ZapRecord)> {
        let v = self.vcpus.get(vcpu.0 as usize)?;
        let e = v.tlb.lock().get(gpa.gfn().raw())?;
        Some((e.translation, e.zapped?))
    }

    /// The translations in `vcpu`'s TLB model, keyed by raw gfn.
    pub fn tlb_entries(&self, vcpu: VcpuId) -> Vec<(u64, Translation)> {
        self.vcpus
            .get(vcpu.0 as usize)
            .map(|v| {
                v.tlb
                    .lock()
                    .entries()
                    .map(|(k, e)| (k, e.translation))
                    .collect()
            })
            .unwrap_or_default()
    }
}
