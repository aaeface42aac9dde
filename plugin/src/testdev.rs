//! The hooks test device: lets a guest program drive every hook of the cvm
//! API, so the patch series is tested through the real path.
//!
//! Enabled by the plugin argument `test=hooks`, never otherwise. The guest
//! talks to it with VMCALL (0F 01 C1) and `RAX = TESTDEV_MAGIC | op`, far
//! above KVM's hypercall numbers:
//!
//! | op | name | inputs | effect |
//! |---|---|---|---|
//! | 1 | DENY  | RBX gpa, RCX vector, RDX error code or `u64::MAX` | accesses to the 4K page of gpa raise the vector (CR2 = the linear address for #PF) |
//! | 2 | REMAP | RBX gpa, RCX backing gpa | the page of gpa is backed by the page of backing gpa |
//! | 3 | CLEAR | - | forget every rule |
//! | 4 | FLUSH | RBX 0: every vCPU, else this one | flush the softTLB |
//! | 5 | MEMSLOT_FIND | RBX gpa | RAX size of the memslot holding gpa (0: none), RBX its start, RCX 1 if read-only |
//! | 6 | MEMSLOT_LOG | RBX index | event `index` of QEMU's memslot reports: RAX gpa (`u64::MAX`: no such event), RBX size, RCX 0 add / 1 delete, RDX number of events |
//! | 7 | DMA_BLOCK | RBX gpa | device accesses to the 4K page of gpa are refused |
//! | 8 | DMA_BLOCKED | - | RAX pages of device accesses refused so far |
//! | 9 | RETRY_ONCE | RBX gpa | the next fill of the page answers RETRY (the host-exit path), then the rule goes |
//! | 10 | RETRIES | - | RAX RETRY answers given so far |
//! | 11 | HOST_CPUID | RBX leaf, RCX subleaf | RAX, RBX, RCX, RDX: QEMU's CPUID through the host service |
//! | 12 | HOST_PIO | RBX port, RCX size (1, 2, 4), RDX value to write or `u64::MAX` to read | a port access through the host service; RAX the value read |
//! | 13 | HOST_MSR | RBX MSR, RCX 0 read / 1 write, RDX value to write | an MSR access through the host service; RAX 1 where the instruction would #GP, RBX the value read |
//! | 14 | HOST_PANIC | - | the guest panics through the host service: `-action panic=` applies and the vCPU stops |
//! | 15 | IOIO_LAST | - | RAX [`Regs::info`] of this vCPU's last I/O instruction (0: none yet), RBX its RIP, RCX how many this vCPU's callback saw |
//! | 16 | IOIO_FAULT | RBX vector, RCX error code or `u64::MAX` | this vCPU's next I/O instruction raises the vector (once) |
//! | 17 | HLT_SKIP | RBX n | this vCPU's next n HLTs complete without halting |
//! | 18 | HLTS | - | RAX HLTs this vCPU's callback saw, RBX HLT_SKIPs left |
//! | 19 | ZAP_NOFLUSH | RBX gpa, RCX pages, RDX 0 or 1 | zaps the leaves of `[gfn(gpa), +pages)` (alias bits ignored) in every root of the model; with RDX 0 *without* the flush the zap asks for, so QEMU's softTLB keeps the stale translations (what `flush-check=on` detects), with RDX 1 followed by its flush as KVM does; RAX 1 if a leaf was zapped |
//!
//! RAX returns 0 unless the table says otherwise, or `u64::MAX` for an
//! unknown op. Ops 11-14 exercise QEMU's host services ([`Host`]), which
//! act for the calling vCPU. CLEAR also lifts DMA blocks and drops pending
//! IOIO_FAULTs and HLT_SKIPs. Rules take effect at the
//! next softTLB fill of the page, so a REMAP is seen only after a FLUSH: the
//! softTLB behaves as a TLB.
//!
//! The other instructions answer with values a test can check:
//! TDCALL: RAX = 0, RCX = !RCX, R10 = RDX + R8. VMGEXIT: RDX = RAX ^ 0x5a5a.
//! PVALIDATE: CF = RCX & 1, RAX = 0. RMPADJUST: RAX = RCX + RDX.
//! CPUID leaf 0x40000f00: EAX "cvme", EBX = ECX + 1, other leaves declined.
//! MSR 0x40000f00: a read/write scratch register, other MSRs declined.
//! I/O instructions (IN, OUT, INS, OUTS) and HLT are declined, so QEMU runs
//! them as usual, unless IOIO_FAULT or HLT_SKIP asked otherwise.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use cvmem_model::BackingAddr;
use cvmem_model::{FlushTarget, VcpuId};
use cvmem_model::{GfnRange, Gpa, Vm, ZapFilter, PAGE_SIZE};
use parking_lot::{Mutex, RwLock};

use crate::memslots::{MemslotOp, RamSection};

use crate::hooks::{
    gpr, prot, Fault, Host, Insn, InsnAction, Regs, Stage2Answer, Stage2Request, RFLAGS_CF,
};

/// `RAX` of a test-device VMCALL, without the op ("cvm" and a zero byte).
pub const TESTDEV_MAGIC: u64 = 0x6376_6d00;
/// Declares [`Op`] and its table of C names from one list.
macro_rules! ops {
    ($($op:ident = $n:literal, $c:literal;)*) => {
        /// The test device's operations: `RAX = TESTDEV_MAGIC | op`. The
        /// guest's side is guest-tests/runtime/testdev.h, whose `OP_*`
        /// #defines a unit test checks against [`Op::ALL`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Op {
            $(#[allow(missing_docs)] $op = $n,)*
        }

        impl Op {
            /// Every op with its name in testdev.h.
            pub const ALL: &[(Op, &str)] = &[$((Op::$op, $c),)*];
        }
    };
}

ops! {
    Deny = 1, "OP_DENY";
    Remap = 2, "OP_REMAP";
    Clear = 3, "OP_CLEAR";
    Flush = 4, "OP_FLUSH";
    MemslotFind = 5, "OP_MEMSLOT_FIND";
    MemslotLog = 6, "OP_MEMSLOT_LOG";
    DmaBlock = 7, "OP_DMA_BLOCK";
    DmaBlocked = 8, "OP_DMA_BLOCKED";
    RetryOnce = 9, "OP_RETRY_ONCE";
    Retries = 10, "OP_RETRIES";
    HostCpuid = 11, "OP_HOST_CPUID";
    HostPio = 12, "OP_HOST_PIO";
    HostMsr = 13, "OP_HOST_MSR";
    HostPanic = 14, "OP_HOST_PANIC";
    IoioLast = 15, "OP_IOIO_LAST";
    IoioFault = 16, "OP_IOIO_FAULT";
    HltSkip = 17, "OP_HLT_SKIP";
    Hlts = 18, "OP_HLTS";
    ZapNoflush = 19, "OP_ZAP_NOFLUSH";
}

impl Op {
    /// The op numbered `raw`, if there is one.
    pub fn from_raw(raw: u64) -> Option<Op> {
        Op::ALL
            .iter()
            .find(|&&(op, _)| op as u64 == raw)
            .map(|&(op, _)| op)
    }
}

/// The CPUID leaf the test device answers.
pub const TESTDEV_CPUID_LEAF: u64 = 0x4000_0f00;
/// The MSR the test device implements.
pub const TESTDEV_MSR: u64 = 0x4000_0f00;

const PAGE_MASK: u64 = !0xfff;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    Deny { vector: u8, error_code: Option<u32> },
    Remap { backing_page: u64 },
    RetryOnce,
}

/// What the test device keeps per vCPU about I/O instructions and HLT.
#[derive(Clone, Copy, Debug, Default)]
struct VcpuInsns {
    /// [`Regs::info`] and RIP of the last I/O instruction.
    ioio_last: (u64, u64),
    /// I/O instructions seen.
    ioio_count: u64,
    /// The exception the next I/O instruction raises (IOIO_FAULT).
    ioio_fault: Option<Fault>,
    /// HLTs seen.
    hlts: u64,
    /// How many of the next HLTs complete without halting (HLT_SKIP).
    hlt_skip: u64,
}

/// The test device's state.
#[derive(Debug, Default)]
pub struct TestDev {
    /// Page-aligned gpa -> rule. Few entries, read on every fill.
    rules: RwLock<Vec<(u64, Rule)>>,
    msr: AtomicU64,
    /// Pages devices may not touch.
    dma_blocks: RwLock<Vec<u64>>,
    /// Device accesses refused, in pages.
    dma_blocked: AtomicU64,
    /// RETRY answers given.
    retries: AtomicU64,
    /// QEMU's memslot reports, oldest first, at most `MEMSLOT_LOG_MAX`.
    memslot_log: Mutex<Vec<(MemslotOp, u64, u64)>>,
    /// I/O instructions and HLTs, by vCPU index.
    vcpu_insns: Mutex<HashMap<u32, VcpuInsns>>,
}

/// How many memslot reports the test device remembers.
const MEMSLOT_LOG_MAX: usize = 4096;

impl TestDev {
    /// The stage-2 answer for `req` if a rule covers its page.
    pub fn stage2(&self, req: &Stage2Request) -> Option<Stage2Answer> {
        let page = req.gpa.raw() & PAGE_MASK;
        let rule = self
            .rules
            .read()
            .iter()
            .find(|(p, _)| *p == page)
            .map(|(_, r)| *r);
        if rule == Some(Rule::RetryOnce) {
            self.rules.write().retain(|(p, _)| *p != page);
            self.retries.fetch_add(1, Ordering::Relaxed);
            return Some(Stage2Answer::Retry);
        }
        Some(match rule? {
            Rule::RetryOnce => Stage2Answer::Retry,
            // The guest names the QEMU page it wants mapped instead.
            Rule::Remap { backing_page } => Stage2Answer::Allow {
                backing: BackingAddr::new(backing_page),
                prot: prot::ALL,
                page_size: 4096,
                cache_span: 0,
            },
            Rule::Deny { vector, error_code } => Stage2Answer::Fault(Fault {
                vector,
                error_code,
                cr2: (vector == 14).then_some(req.gva.raw()),
            }),
        })
    }

    /// Whether a device may access the page of `gpa`.
    pub fn dma_allowed(&self, gpa: u64) -> bool {
        let blocked = self.dma_blocks.read().contains(&(gpa & PAGE_MASK));
        if blocked {
            self.dma_blocked.fetch_add(1, Ordering::Relaxed);
        }
        !blocked
    }

    /// Remembers a memslot report for MEMSLOT_LOG.
    pub fn memslot(&self, op: MemslotOp, s: &RamSection) {
        let mut log = self.memslot_log.lock();
        if log.len() < MEMSLOT_LOG_MAX {
            log.push((op, s.addr.raw(), s.size));
        }
    }

    /// What the device knows of `vcpu`'s I/O instructions and HLTs.
    fn vcpu_insns(&self, vcpu: u32) -> VcpuInsns {
        self.vcpu_insns
            .lock()
            .get(&vcpu)
            .copied()
            .unwrap_or_default()
    }

    fn set_rule(&self, page: u64, rule: Rule) {
        let mut rules = self.rules.write();
        rules.retain(|(p, _)| *p != page);
        rules.push((page, rule));
    }

    /// Emulates `insn`; returns what to do and a flush to perform, if any.
    /// `vm` is the model, whose memslots MEMSLOT_FIND reads; `host` gives
    /// QEMU's services to the HOST_* ops.
    pub fn insn(
        &self,
        vcpu: u32,
        insn: Insn,
        regs: &mut Regs,
        vm: &Vm,
        host: &dyn Host,
    ) -> (InsnAction, Option<FlushTarget>) {
        let r = &mut regs.gpr;
        let mut flush = None;
        let action = match insn {
            Insn::Vmcall if r[gpr::RAX] & !0xff == TESTDEV_MAGIC => {
                let (op, a1, a2, a3) = (r[gpr::RAX] & 0xff, r[gpr::RBX], r[gpr::RCX], r[gpr::RDX]);
                r[gpr::RAX] = 0;
                match Op::from_raw(op) {
                    Some(Op::Deny) => self.set_rule(
                        a1 & PAGE_MASK,
                        Rule::Deny {
                            vector: (a2 & 31) as u8,
                            error_code: u32::try_from(a3).ok(),
                        },
                    ),
                    Some(Op::Remap) => self.set_rule(
                        a1 & PAGE_MASK,
                        Rule::Remap {
                            backing_page: a2 & PAGE_MASK,
                        },
                    ),
                    Some(Op::Clear) => {
                        self.rules.write().clear();
                        self.dma_blocks.write().clear();
                        for v in self.vcpu_insns.lock().values_mut() {
                            v.ioio_fault = None;
                            v.hlt_skip = 0;
                        }
                    }
                    Some(Op::Flush) => {
                        flush = Some(if a1 == 0 {
                            FlushTarget::AllVcpus
                        } else {
                            FlushTarget::Vcpu(VcpuId(vcpu))
                        })
                    }
                    Some(Op::MemslotFind) => {
                        let slots = vm.memslots();
                        let found = slots.find(Gpa::new(a1).gfn());
                        r[gpr::RAX] = found.map_or(0, |s| s.npages * PAGE_SIZE);
                        r[gpr::RBX] = found.map_or(0, |s| s.base_gfn.gpa().raw());
                        r[gpr::RCX] = found.map_or(0, |s| u64::from(s.readonly()));
                    }
                    Some(Op::MemslotLog) => {
                        let log = self.memslot_log.lock();
                        let event = usize::try_from(a1).ok().and_then(|i| log.get(i));
                        r[gpr::RAX] = event.map_or(u64::MAX, |e| e.1);
                        r[gpr::RBX] = event.map_or(0, |e| e.2);
                        r[gpr::RCX] = event.map_or(0, |e| u64::from(e.0 == MemslotOp::Del));
                        r[gpr::RDX] = log.len() as u64;
                    }
                    Some(Op::DmaBlock) => {
                        let mut blocks = self.dma_blocks.write();
                        if !blocks.contains(&(a1 & PAGE_MASK)) {
                            blocks.push(a1 & PAGE_MASK);
                        }
                    }
                    Some(Op::DmaBlocked) => r[gpr::RAX] = self.dma_blocked.load(Ordering::Relaxed),
                    Some(Op::RetryOnce) => self.set_rule(a1 & PAGE_MASK, Rule::RetryOnce),
                    Some(Op::Retries) => r[gpr::RAX] = self.retries.load(Ordering::Relaxed),
                    Some(Op::HostCpuid) => {
                        let out = host.cpuid(a1 as u32, a2 as u32);
                        for (reg, v) in [gpr::RAX, gpr::RBX, gpr::RCX, gpr::RDX].iter().zip(out) {
                            r[*reg] = u64::from(v);
                        }
                    }
                    Some(Op::HostPio) => {
                        let size = u8::try_from(a2).unwrap_or(0);
                        let write = a3 != u64::MAX;
                        r[gpr::RAX] = u64::from(host.pio(a1 as u16, size, write, a3 as u32));
                    }
                    Some(Op::HostMsr) => {
                        let result = if a2 == 0 {
                            host.rdmsr(a1 as u32)
                        } else {
                            host.wrmsr(a1 as u32, a3).then_some(0)
                        };
                        r[gpr::RAX] = u64::from(result.is_none());
                        r[gpr::RBX] = result.unwrap_or(0);
                    }
                    Some(Op::HostPanic) => host.guest_panicked(),
                    Some(Op::IoioLast) => {
                        let v = self.vcpu_insns(vcpu);
                        r[gpr::RAX] = v.ioio_last.0;
                        r[gpr::RBX] = v.ioio_last.1;
                        r[gpr::RCX] = v.ioio_count;
                    }
                    Some(Op::IoioFault) => {
                        self.vcpu_insns.lock().entry(vcpu).or_default().ioio_fault = Some(Fault {
                            vector: (a1 & 31) as u8,
                            error_code: u32::try_from(a2).ok(),
                            cr2: None,
                        })
                    }
                    Some(Op::HltSkip) => {
                        self.vcpu_insns.lock().entry(vcpu).or_default().hlt_skip = a1
                    }
                    Some(Op::Hlts) => {
                        let v = self.vcpu_insns(vcpu);
                        r[gpr::RAX] = v.hlts;
                        r[gpr::RBX] = v.hlt_skip;
                    }
                    Some(Op::ZapNoflush) => {
                        let gpa = Gpa::new(a1 & !vm.alias().alias_mask());
                        r[gpr::RAX] = match GfnRange::from_start_len(gpa.gfn(), a2) {
                            Some(range) => {
                                let token = vm.zap_gfn_range(range, ZapFilter::ALL);
                                let zapped = token.is_needed();
                                if a3 == 0 {
                                    // The point of the op: a zap whose flush
                                    // is missing.
                                    token.ignore();
                                } else {
                                    flush = vm.flush(token).map(|req| req.target);
                                }
                                u64::from(zapped)
                            }
                            None => u64::MAX,
                        };
                    }
                    None => r[gpr::RAX] = u64::MAX,
                }
                InsnAction::Done
            }
            Insn::Ioio => {
                let mut all = self.vcpu_insns.lock();
                let v = all.entry(vcpu).or_default();
                v.ioio_last = (regs.info, regs.rip);
                v.ioio_count += 1;
                match v.ioio_fault.take() {
                    Some(fault) => InsnAction::Fault(fault),
                    None => InsnAction::Decline,
                }
            }
            Insn::Hlt => {
                let mut all = self.vcpu_insns.lock();
                let v = all.entry(vcpu).or_default();
                v.hlts += 1;
                if v.hlt_skip > 0 {
                    v.hlt_skip -= 1;
                    InsnAction::Done
                } else {
                    InsnAction::Decline
                }
            }
            Insn::Tdcall => {
                r[gpr::RAX] = 0;
                r[gpr::RCX] = !r[gpr::RCX];
                r[gpr::R10] = r[gpr::RDX].wrapping_add(r[gpr::R8]);
                InsnAction::Done
            }
            Insn::Vmgexit => {
                r[gpr::RDX] = r[gpr::RAX] ^ 0x5a5a;
                InsnAction::Done
            }
            Insn::Pvalidate => {
                regs.rflags = (regs.rflags & !RFLAGS_CF) | (r[gpr::RCX] & 1);
                r[gpr::RAX] = 0;
                InsnAction::Done
            }
            Insn::Rmpadjust => {
                r[gpr::RAX] = r[gpr::RCX].wrapping_add(r[gpr::RDX]);
                InsnAction::Done
            }
            Insn::Cpuid if r[gpr::RAX] & 0xffff_ffff == TESTDEV_CPUID_LEAF => {
                r[gpr::RAX] = u64::from(u32::from_le_bytes(*b"cvme"));
                r[gpr::RBX] = (r[gpr::RCX] & 0xffff_ffff) + 1;
                r[gpr::RCX] = 0;
                r[gpr::RDX] = 0;
                InsnAction::Done
            }
            Insn::Rdmsr if r[gpr::RCX] & 0xffff_ffff == TESTDEV_MSR => {
                let v = self.msr.load(Ordering::Relaxed);
                r[gpr::RAX] = v & 0xffff_ffff;
                r[gpr::RDX] = v >> 32;
                InsnAction::Done
            }
            Insn::Wrmsr if r[gpr::RCX] & 0xffff_ffff == TESTDEV_MSR => {
                let v = (r[gpr::RDX] << 32) | (r[gpr::RAX] & 0xffff_ffff);
                self.msr.store(v, Ordering::Relaxed);
                InsnAction::Done
            }
            _ => InsnAction::Decline,
        };
        (action, flush)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::Access;
    #[allow(unused_imports)]
    use cvmem_model::Gpa;

    /// A host that answers from fixed values and records port writes.
    #[derive(Default)]
    struct FakeHost {
        writes: Mutex<Vec<(u16, u8, u32)>>,
    }

    impl Host for FakeHost {
        fn cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4] {
            [leaf, subleaf, !leaf, 7]
        }
        fn rdmsr(&self, msr: u32) -> Option<u64> {
            (msr == 0x1b).then_some(0xfee0_0900)
        }
        fn wrmsr(&self, msr: u32, _value: u64) -> bool {
            msr == 0x1b
        }
        fn pio(&self, port: u16, size: u8, write: bool, value: u32) -> u32 {
            if write {
                self.writes.lock().push((port, size, value));
                0
            } else {
                u32::from(port) + u32::from(size)
            }
        }
        fn phys_read(&self, _at: BackingAddr, _buf: &mut [u8]) -> bool {
            false
        }
        fn phys_write(&self, _at: BackingAddr, _buf: &[u8]) -> bool {
            false
        }
        fn guest_panicked(&self) {
            self.writes.lock().push((0, 0, 0xdead));
        }
        fn vcpu_set_state(&self, _: u32, _: &crate::hooks::VcpuState) -> bool {
            false
        }
        fn vcpu_park(&self, _: u32) -> bool {
            false
        }
    }

    /// A VM without memslots, for calls that do not read them.
    fn no_slots() -> Vm {
        Vm::new(cvmem_model::VmConfig::new(cvmem_model::VmType::Default)).unwrap()
    }

    fn req(gpa: u64) -> Stage2Request {
        Stage2Request {
            gpa: Gpa::new(gpa),
            gva: cvmem_model::Gva::new(0xdead_b000),
            vcpu_index: 0,
            access: Access::Read,
            cpl: 0,
            page_walk: false,
            paging: true,
        }
    }

    /// A test-device call from vCPU 3: RAX after it and the flush asked for.
    fn call(dev: &TestDev, op: Op, a1: u64, a2: u64, a3: u64) -> (u64, Option<FlushTarget>) {
        call_raw(dev, op as u64, a1, a2, a3)
    }

    /// [`call`] with an op number that need not be an [`Op`].
    fn call_raw(dev: &TestDev, op: u64, a1: u64, a2: u64, a3: u64) -> (u64, Option<FlushTarget>) {
        let mut regs = Regs::default();
        regs.gpr[gpr::RAX] = TESTDEV_MAGIC | op;
        regs.gpr[gpr::RBX] = a1;
        regs.gpr[gpr::RCX] = a2;
        regs.gpr[gpr::RDX] = a3;
        let (action, flush) = dev.insn(
            3,
            Insn::Vmcall,
            &mut regs,
            &no_slots(),
            &FakeHost::default(),
        );
        assert_eq!(action, InsnAction::Done);
        (regs.gpr[gpr::RAX], flush)
    }

    #[test]
    fn rules_drive_stage2() {
        let dev = TestDev::default();
        assert_eq!(dev.stage2(&req(0x5123)), None);
        assert_eq!(call(&dev, Op::Deny, 0x5000, 14, 0x8000_0001).0, 0);
        assert_eq!(
            dev.stage2(&req(0x5123)).unwrap(),
            Stage2Answer::Fault(Fault {
                vector: 14,
                error_code: Some(0x8000_0001),
                cr2: Some(0xdead_b000)
            })
        );
        call(&dev, Op::Deny, 0x5000, 20, u64::MAX);
        assert_eq!(
            dev.stage2(&req(0x5000)).unwrap(),
            Stage2Answer::Fault(Fault {
                vector: 20,
                error_code: None,
                cr2: None
            })
        );
        call(&dev, Op::Remap, 0x6000, 0x9000, 0);
        assert!(matches!(
            dev.stage2(&req(0x6008)),
            Some(Stage2Answer::Allow { backing, .. }) if backing == BackingAddr::new(0x9000)
        ));
        call(&dev, Op::Clear, 0, 0, 0);
        assert_eq!(dev.stage2(&req(0x5000)), None);
    }

    #[test]
    fn flush_requests_and_unknown_ops() {
        let dev = TestDev::default();
        assert_eq!(
            call(&dev, Op::Flush, 0, 0, 0),
            (0, Some(FlushTarget::AllVcpus))
        );
        assert_eq!(
            call(&dev, Op::Flush, 1, 0, 0),
            (0, Some(FlushTarget::Vcpu(VcpuId(3))))
        );
        assert_eq!(call_raw(&dev, 99, 0, 0, 0), (u64::MAX, None));
    }

    #[test]
    fn zap_noflush_zaps_and_asks_for_no_flush() {
        use cvmem_model::{
            Access as A, BackingAddr, MemoryRegion, MemslotFlags, MemslotId, TlbAccess,
        };
        let vm = no_slots();
        vm.set_memory_region(MemoryRegion {
            slot: MemslotId(0),
            flags: MemslotFlags::NONE,
            guest_phys_addr: Gpa::new(0),
            memory_size: 4 << 20,
            backing: BackingAddr::new(0),
        })
        .unwrap()
        .ignore();
        vm.set_tlb_tracking(true);
        let gpa = Gpa::new(0x5000);
        assert!(matches!(
            vm.tlb_access(VcpuId(0), gpa, A::Read),
            TlbAccess::Filled(_)
        ));
        let dev = TestDev::default();
        let zap = |a1, a2, a3| {
            let mut regs = Regs::default();
            regs.gpr[gpr::RAX] = TESTDEV_MAGIC | Op::ZapNoflush as u64;
            regs.gpr[gpr::RBX] = a1;
            regs.gpr[gpr::RCX] = a2;
            regs.gpr[gpr::RDX] = a3;
            let (action, flush) = dev.insn(0, Insn::Vmcall, &mut regs, &vm, &FakeHost::default());
            assert_eq!(action, InsnAction::Done);
            (regs.gpr[gpr::RAX], flush)
        };
        assert_eq!(zap(0x5000, 1, 0), (1, None));
        assert_eq!(vm.tlb_missing_flush(VcpuId(0), gpa).unwrap().1.seq, 1);
        // Nothing left to zap; a range past the top is refused.
        assert_eq!(zap(0x5000, 1, 0), (0, None));
        assert_eq!(zap(0x5000, u64::MAX, 0), (u64::MAX, None));
        // With its flush, as KVM: the model's TLB forgets the translation.
        let _ = vm.stage2(VcpuId(0), gpa, A::Read);
        assert_eq!(zap(0x5000, 1, 1), (1, Some(FlushTarget::AllVcpus)));
        assert_eq!(vm.tlb_missing_flush(VcpuId(0), gpa), None);
    }

    #[test]
    fn other_vmcalls_and_cpuid_leaves_are_declined() {
        let dev = TestDev::default();
        let mut regs = Regs::default();
        regs.gpr[gpr::RAX] = 12; // KVM_HC_MAP_GPA_RANGE: not the test device's
        assert_eq!(
            dev.insn(
                0,
                Insn::Vmcall,
                &mut regs,
                &no_slots(),
                &FakeHost::default()
            )
            .0,
            InsnAction::Decline
        );
        regs.gpr[gpr::RAX] = 0;
        assert_eq!(
            dev.insn(0, Insn::Cpuid, &mut regs, &no_slots(), &FakeHost::default())
                .0,
            InsnAction::Decline
        );
        regs.gpr[gpr::RCX] = 0x10;
        assert_eq!(
            dev.insn(0, Insn::Rdmsr, &mut regs, &no_slots(), &FakeHost::default())
                .0,
            InsnAction::Decline
        );
    }

    #[test]
    fn pvalidate_reports_through_cf_and_msr_keeps_its_value() {
        let dev = TestDev::default();
        let mut regs = Regs {
            rflags: 0x2,
            ..Regs::default()
        };
        regs.gpr[gpr::RCX] = 1;
        dev.insn(
            0,
            Insn::Pvalidate,
            &mut regs,
            &no_slots(),
            &FakeHost::default(),
        );
        assert_eq!(regs.rflags & RFLAGS_CF, RFLAGS_CF);
        regs.gpr[gpr::RCX] = 0;
        dev.insn(
            0,
            Insn::Pvalidate,
            &mut regs,
            &no_slots(),
            &FakeHost::default(),
        );
        assert_eq!(regs.rflags & RFLAGS_CF, 0);

        regs.gpr[gpr::RCX] = TESTDEV_MSR;
        regs.gpr[gpr::RAX] = 0x1111_2222;
        regs.gpr[gpr::RDX] = 0x3333_4444;
        dev.insn(0, Insn::Wrmsr, &mut regs, &no_slots(), &FakeHost::default());
        regs.gpr[gpr::RAX] = 0;
        regs.gpr[gpr::RDX] = 0;
        dev.insn(0, Insn::Rdmsr, &mut regs, &no_slots(), &FakeHost::default());
        assert_eq!(
            (regs.gpr[gpr::RAX], regs.gpr[gpr::RDX]),
            (0x1111_2222, 0x3333_4444)
        );
    }

    #[test]
    fn dma_blocks_and_memslot_log() {
        let dev = TestDev::default();
        assert!(dev.dma_allowed(0x7123));
        call(&dev, Op::DmaBlock, 0x7fff, 0, 0);
        assert!(!dev.dma_allowed(0x7000));
        assert!(dev.dma_allowed(0x8000));
        assert_eq!(call(&dev, Op::DmaBlocked, 0, 0, 0).0, 1);
        call(&dev, Op::Clear, 0, 0, 0);
        assert!(dev.dma_allowed(0x7000));

        let s = RamSection {
            addr: BackingAddr::new(0xfe00_0000),
            size: 0x10_0000,
            readonly: false,
            name: "bar".into(),
        };
        dev.memslot(MemslotOp::Del, &s);
        let mut regs = Regs::default();
        regs.gpr[gpr::RAX] = TESTDEV_MAGIC | Op::MemslotLog as u64;
        regs.gpr[gpr::RBX] = 0;
        dev.insn(
            0,
            Insn::Vmcall,
            &mut regs,
            &no_slots(),
            &FakeHost::default(),
        );
        let g = regs.gpr;
        assert_eq!(
            (g[gpr::RAX], g[gpr::RBX], g[gpr::RCX], g[gpr::RDX]),
            (0xfe00_0000, 0x10_0000, 1, 1)
        );
        regs.gpr[gpr::RAX] = TESTDEV_MAGIC | Op::MemslotLog as u64;
        regs.gpr[gpr::RBX] = 1;
        dev.insn(
            0,
            Insn::Vmcall,
            &mut regs,
            &no_slots(),
            &FakeHost::default(),
        );
        assert_eq!(regs.gpr[gpr::RAX], u64::MAX);

        let kvm = crate::kvm::Kvm::with_type(cvmem_model::VmType::Default, 1).unwrap();
        kvm.memslot(MemslotOp::Add, &s).unwrap();
        regs.gpr[gpr::RAX] = TESTDEV_MAGIC | Op::MemslotFind as u64;
        regs.gpr[gpr::RBX] = 0xfe0f_ffff;
        dev.insn(0, Insn::Vmcall, &mut regs, kvm.vm(), &FakeHost::default());
        let g = regs.gpr;
        assert_eq!(
            (g[gpr::RAX], g[gpr::RBX], g[gpr::RCX]),
            (0x10_0000, 0xfe00_0000, 0)
        );
    }

    /// A test-device call from `vcpu`: RAX, RBX, RCX, RDX after it.
    fn call_on(dev: &TestDev, vcpu: u32, op: Op, a1: u64, a2: u64) -> [u64; 4] {
        let mut regs = Regs::default();
        regs.gpr[gpr::RAX] = TESTDEV_MAGIC | op as u64;
        regs.gpr[gpr::RBX] = a1;
        regs.gpr[gpr::RCX] = a2;
        let host = FakeHost::default();
        let (action, _) = dev.insn(vcpu, Insn::Vmcall, &mut regs, &no_slots(), &host);
        assert_eq!(action, InsnAction::Done);
        let g = regs.gpr;
        [g[gpr::RAX], g[gpr::RBX], g[gpr::RCX], g[gpr::RDX]]
    }

    #[test]
    fn io_instructions_are_recorded_and_faulted_once() {
        let dev = TestDev::default();
        let host = FakeHost::default();
        let io = |vcpu: u32, info: u64, rip: u64| {
            let mut regs = Regs {
                info,
                rip,
                ..Regs::default()
            };
            let before = regs;
            let action = dev.insn(vcpu, Insn::Ioio, &mut regs, &no_slots(), &host).0;
            assert_eq!(regs, before, "the device changes no register");
            action
        };
        assert_eq!(call_on(&dev, 0, Op::IoioLast, 0, 0)[..3], [0, 0, 0]);
        // outb %al, $0x80 in 64-bit code: SZ8, A64, port 0x80.
        assert_eq!(io(0, 0x0080_0210, 0x1000), InsnAction::Decline);
        assert_eq!(io(1, 0x3000_0241, 0x2000), InsnAction::Decline);
        assert_eq!(
            call_on(&dev, 0, Op::IoioLast, 0, 0)[..3],
            [0x0080_0210, 0x1000, 1]
        );
        assert_eq!(
            call_on(&dev, 1, Op::IoioLast, 0, 0)[..3],
            [0x3000_0241, 0x2000, 1]
        );

        call_on(&dev, 0, Op::IoioFault, 29, 0x7b);
        let vc = Fault {
            vector: 29,
            error_code: Some(0x7b),
            cr2: None,
        };
        assert_eq!(io(1, 0x10, 0), InsnAction::Decline, "another vCPU's");
        assert_eq!(io(0, 0x11, 0x1008), InsnAction::Fault(vc));
        assert_eq!(io(0, 0x11, 0x1008), InsnAction::Decline, "only once");
        assert_eq!(call_on(&dev, 0, Op::IoioLast, 0, 0)[..3], [0x11, 0x1008, 3]);

        call_on(&dev, 0, Op::IoioFault, 13, u64::MAX);
        call_on(&dev, 0, Op::Clear, 0, 0);
        assert_eq!(io(0, 0x11, 0), InsnAction::Decline, "CLEAR drops it");
    }

    #[test]
    fn hlt_is_declined_unless_skipped() {
        let dev = TestDev::default();
        let host = FakeHost::default();
        let hlt = |vcpu: u32| {
            let mut regs = Regs::default();
            dev.insn(vcpu, Insn::Hlt, &mut regs, &no_slots(), &host).0
        };
        assert_eq!(hlt(2), InsnAction::Decline);
        call_on(&dev, 2, Op::HltSkip, 2, 0);
        assert_eq!(call_on(&dev, 2, Op::Hlts, 0, 0)[..2], [1, 2]);
        assert_eq!(hlt(0), InsnAction::Decline, "another vCPU's");
        assert_eq!(hlt(2), InsnAction::Done);
        assert_eq!(hlt(2), InsnAction::Done);
        assert_eq!(hlt(2), InsnAction::Decline);
        assert_eq!(call_on(&dev, 2, Op::Hlts, 0, 0)[..2], [4, 0]);
        call_on(&dev, 2, Op::HltSkip, 5, 0);
        call_on(&dev, 2, Op::Clear, 0, 0);
        assert_eq!(hlt(2), InsnAction::Decline, "CLEAR drops the skips");
    }

    #[test]
    fn host_ops_reach_the_host() {
        let dev = TestDev::default();
        let host = FakeHost::default();
        let call_host = |op: Op, a1: u64, a2: u64, a3: u64| {
            let mut regs = Regs::default();
            regs.gpr[gpr::RAX] = TESTDEV_MAGIC | op as u64;
            regs.gpr[gpr::RBX] = a1;
            regs.gpr[gpr::RCX] = a2;
            regs.gpr[gpr::RDX] = a3;
            let (action, _) = dev.insn(0, Insn::Vmcall, &mut regs, &no_slots(), &host);
            assert_eq!(action, InsnAction::Done);
            let g = regs.gpr;
            (g[gpr::RAX], g[gpr::RBX], g[gpr::RCX], g[gpr::RDX])
        };
        assert_eq!(
            call_host(Op::HostCpuid, 0xd, 1, 0),
            (0xd, 1, 0xffff_fff2, 7)
        );
        assert_eq!(call_host(Op::HostPio, 0x511, 1, u64::MAX).0, 0x512);
        assert_eq!(call_host(Op::HostPio, 0x510, 2, 0).0, 0);
        assert_eq!(call_host(Op::HostMsr, 0x1b, 0, 0), (0, 0xfee0_0900, 0, 0));
        assert_eq!(call_host(Op::HostMsr, 0x1b, 1, 5).0, 0);
        assert_eq!(call_host(Op::HostMsr, 0x802, 0, 0).0, 1);
        assert_eq!(call_host(Op::HostMsr, 0x802, 1, 0).0, 1);
        assert_eq!(call_host(Op::HostPanic, 0, 0, 0).0, 0);
        assert_eq!(*host.writes.lock(), vec![(0x510, 2, 0), (0, 0, 0xdead)]);
    }

    /// testdev.h and [`Op`] name the same ops with the same numbers, and
    /// agree on the magic.
    #[test]
    fn ops_match_testdev_h() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/guest-tests/runtime/testdev.h");
        let header = std::fs::read_to_string(path).expect("testdev.h");
        let defines: Vec<(String, u64)> = header
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                (w.next()? == "#define").then_some(())?;
                let (name, value) = (w.next()?, w.next()?);
                let value = value.trim_end_matches("ul").trim_end_matches('u');
                let value = match value.strip_prefix("0x") {
                    Some(hex) => u64::from_str_radix(hex, 16).ok()?,
                    None => value.parse().ok()?,
                };
                Some((name.to_string(), value))
            })
            .collect();
        let mut in_header: Vec<(String, u64)> = defines
            .iter()
            .filter(|(n, _)| n.starts_with("OP_"))
            .cloned()
            .collect();
        let mut in_rust: Vec<(String, u64)> = Op::ALL
            .iter()
            .map(|&(op, name)| (name.to_string(), op as u64))
            .collect();
        in_header.sort();
        in_rust.sort();
        assert_eq!(in_header, in_rust);
        assert!(defines.contains(&("TESTDEV_MAGIC".to_string(), TESTDEV_MAGIC)));
        for &(op, _) in Op::ALL {
            assert_eq!(Op::from_raw(op as u64), Some(op));
        }
        assert_eq!(Op::from_raw(0), None);
    }
}
