//! What the plugin must do in QEMU besides answering a callback: the
//! softTLB flushes and the discarded memory a model operation asks for.
//! Handlers accumulate them in one [`Effects`] (the one in their
//! [`Ctx`](crate::flavour::Ctx) for an instruction) and the FFI layer
//! carries them out once the callback returns.

use cvmem_model::{BackingAddr, FlushKind, FlushRequest, FlushTarget};

/// What the plugin must do in QEMU besides answering the callback.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// Flush these softTLBs (QEMU's have no root tags: the kind does not
    /// matter; the range lets a vCPU that maps none of it skip the flush).
    pub flush: Option<FlushRequest>,
    /// Discard these ranges of QEMU's memory (start, bytes): afterwards
    /// they read as zero, as memory QEMU+KVM discard does (the side of a
    /// conversion being left, a page a TD accepts, RAM a launch leaves
    /// out). Pages that already read as zero are left unwritten, so that
    /// RAM the guest never touched stays unallocated in QEMU.
    pub clear: Vec<(BackingAddr, u64)>,
    /// Then write these bytes into QEMU's memory: pages the VMM fills at
    /// launch (the SNP CPUID and secrets pages).
    pub write: Vec<(BackingAddr, Vec<u8>)>,
}

impl Effects {
    /// No effect.
    pub const NONE: Effects = Effects {
        flush: None,
        clear: Vec::new(),
        write: Vec::new(),
    };

    /// The flush of `req`, if any.
    pub fn flush(req: Option<FlushRequest>) -> Effects {
        Effects {
            flush: req,
            ..Effects::NONE
        }
    }

    /// Whether there is nothing to do (the hot path's usual answer).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.flush.is_none() && self.clear.is_empty() && self.write.is_empty()
    }

    /// Adds a flush the model asked for (the wider of the two if there is
    /// one already).
    pub fn push_flush(&mut self, req: Option<FlushRequest>) {
        self.merge(Effects::flush(req));
    }

    /// Adds `other`'s effects to these: both clears and writes, the wider
    /// flush.
    pub fn merge(&mut self, other: Effects) {
        self.clear.extend(other.clear);
        self.write.extend(other.write);
        self.flush = match (self.flush, other.flush) {
            (Some(a), Some(b)) => Some(a.merge(b)),
            (a, b) => a.or(b),
        };
    }

    /// A flush of every translation `target` caches (the test device's).
    pub fn flush_all_of(target: Option<FlushTarget>) -> Effects {
        Effects::flush(target.map(|target| FlushRequest {
            target,
            kind: FlushKind::AllRoots,
            gfns: None,
        }))
    }
}
