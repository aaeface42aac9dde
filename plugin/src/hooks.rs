//! Safe Rust views of the cvm API's hook types, independent of the FFI.
//!
//! `ffi.rs` converts QEMU's C structures into these types and back; the
//! plugin's decisions are written against them, so they can be unit-tested
//! without QEMU.

use cvmem_model::{BackingAddr, Gpa, Gva};

/// The kind of a guest memory access (QEMU's `MMUAccessType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A data load.
    Read,
    /// A data store (page-walk accesses are reported as stores too).
    Write,
    /// An instruction fetch.
    Fetch,
}

impl Access {
    /// Converts QEMU's numbering; anything unknown is treated as a write,
    /// the most demanding kind.
    pub fn from_raw(raw: u8) -> Access {
        match raw {
            0 => Access::Read,
            2 => Access::Fetch,
            _ => Access::Write,
        }
    }
}

/// Protection bits of a translation (QEMU's PAGE_READ/WRITE/EXEC).
pub mod prot {
    /// Readable.
    pub const READ: u32 = 0x1;
    /// Writable.
    pub const WRITE: u32 = 0x2;
    /// Executable.
    pub const EXEC: u32 = 0x4;
    /// Everything.
    pub const ALL: u32 = READ | WRITE | EXEC;
}

/// One guest-physical access to decide at softTLB fill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage2Request {
    /// The guest-physical address, alias bits included.
    pub gpa: Gpa,
    /// The linear address being translated.
    pub gva: Gva,
    /// The vCPU doing the access.
    pub vcpu_index: u32,
    /// What kind of access.
    pub access: Access,
    /// Current privilege level.
    pub cpl: u8,
    /// Whether this reads a paging-structure entry.
    pub page_walk: bool,
    /// Whether CR0.PG is set.
    pub paging: bool,
}

/// An exception to raise in the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Fault {
    /// Vector, 0-31.
    pub vector: u8,
    /// The error code, if the vector takes one.
    pub error_code: Option<u32>,
    /// The value to load into CR2 (#PF).
    pub cr2: Option<u64>,
}

/// The stage-2 decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage2Answer {
    /// Install a translation to `backing` with `prot`, for a mapping of
    /// `page_size` bytes.
    Allow {
        /// The QEMU address backing the page: a memslot's backing, or (MMIO,
        /// ROM, a VM without stage 2) the guest-physical address with the
        /// alias bits removed, which is where QEMU put that space.
        backing: BackingAddr,
        /// The accesses the softTLB entry may serve.
        prot: u32,
        /// Size of the stage-2 mapping. QEMU does not take it: its softTLB
        /// keeps the guest's page size, as a TLB's combined mapping of one
        /// linear page does; the fuzzer checks `backing` and `cache_span`
        /// against it.
        page_size: u64,
        /// 0, or the aligned span around the page for which QEMU's stage-2
        /// cache may give the same answer until the model's generation
        /// changes (see [`crate::flavour::Flavour::stage2_cache_span`]).
        cache_span: u64,
    },
    /// Raise this exception.
    Fault(Fault),
    /// Run the translation again (the plugin changed state).
    Retry,
    /// The VM cannot go on: QEMU stops it as it stops a KVM guest whose
    /// KVM_RUN failed (the modelled KVM said why on stderr).
    Stop,
}

impl Stage2Answer {
    /// Identity, everything allowed: what a VM without a stage 2 sees.
    pub fn identity(req: &Stage2Request) -> Stage2Answer {
        Stage2Answer::Allow {
            backing: BackingAddr::new(req.gpa.raw()),
            prot: prot::ALL,
            page_size: 4096,
            cache_span: 0,
        }
    }
}

/// Instructions the plugin may emulate (enum qemu_plugin_cvm_insn, whose
/// numbers `ffi.rs` checks these against at compile time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Insn {
    /// 66 0F 01 CC
    Tdcall = 0,
    /// F3 0F 01 D9
    Vmgexit = 1,
    /// 0F 01 C1
    Vmcall = 2,
    /// 0F 01 D9
    Vmmcall = 3,
    /// F2 0F 01 FF
    Pvalidate = 4,
    /// F3 0F 01 FE
    Rmpadjust = 5,
    /// 0F A2
    Cpuid = 6,
    /// 0F 32
    Rdmsr = 7,
    /// 0F 30
    Wrmsr = 8,
    /// IN, OUT, INS, OUTS (every form), after their I/O permission checks.
    /// The callback may only decline or fault; [`Regs::info`] holds the
    /// access in the SVM IOIO `EXITINFO1` encoding (APM vol. 2 15.10.2).
    Ioio = 9,
    /// F4, after its CPL check.
    Hlt = 10,
    /// MOV to CR0/CR4, CLTS, LMSW, after their CPL check: an intercept
    /// (decline or fault; `Done` makes a MOV write the value left in its
    /// source register). [`Regs::info`] holds the VMX exit qualification
    /// (SDM vol. 3C Table 28-3); a MOV's source register holds the value.
    CrWrite = 11,
    /// 0F 01 D1, after its #UD and CPL checks, with CR4.OSXSAVE set: an
    /// intercept (decline or fault); ECX and EDX:EAX in the registers.
    Xsetbv = 12,
}

impl Insn {
    /// Every kind, in the header's numbering.
    pub const ALL: [Insn; 13] = [
        Insn::Tdcall,
        Insn::Vmgexit,
        Insn::Vmcall,
        Insn::Vmmcall,
        Insn::Pvalidate,
        Insn::Rmpadjust,
        Insn::Cpuid,
        Insn::Rdmsr,
        Insn::Wrmsr,
        Insn::Ioio,
        Insn::Hlt,
        Insn::CrWrite,
        Insn::Xsetbv,
    ];

    /// The header's number for this kind.
    pub const fn raw(self) -> u32 {
        self as u32
    }

    /// The kind for a header number.
    pub fn from_raw(raw: u32) -> Option<Insn> {
        Insn::ALL.get(raw as usize).copied()
    }

    /// A registration mask for `kinds`.
    pub fn mask(kinds: &[Insn]) -> u32 {
        kinds.iter().fold(0, |m, i| m | 1 << i.raw())
    }
}

/// General-register indices, x86 encoding order.
pub mod gpr {
    #![allow(missing_docs)]
    // The whole encoding, used or not: a table with holes invites a wrong
    // index.
    #![allow(dead_code)]
    pub const RAX: usize = 0;
    pub const RCX: usize = 1;
    pub const RDX: usize = 2;
    pub const RBX: usize = 3;
    pub const RSP: usize = 4;
    pub const RBP: usize = 5;
    pub const RSI: usize = 6;
    pub const RDI: usize = 7;
    pub const R8: usize = 8;
    pub const R9: usize = 9;
    pub const R10: usize = 10;
    pub const R11: usize = 11;
    pub const R12: usize = 12;
    pub const R13: usize = 13;
    pub const R14: usize = 14;
    pub const R15: usize = 15;
}

/// RFLAGS.CF.
pub const RFLAGS_CF: u64 = 1 << 0;

/// The vCPU state an emulated instruction sees and may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Regs {
    /// General registers (written back on `Done`).
    pub gpr: [u64; 16],
    /// RFLAGS (arithmetic flags written back on `Done`).
    pub rflags: u64,
    /// Address of the instruction.
    pub rip: u64,
    /// CR0.
    pub cr0: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// EFER.
    pub efer: u64,
    /// Current privilege level.
    pub cpl: u32,
    /// Instruction length.
    pub insn_len: u32,
    /// Kind-specific information: for [`Insn::Ioio`] the SVM IOIO
    /// `EXITINFO1` of the access (APM vol. 2 15.10.2: bit 0 IN, 2 string,
    /// 3 REP prefix, 4-6 operand size 1/2/4, 7-9 address size 16/32/64,
    /// 31:16 port); for [`Insn::CrWrite`] the VMX exit qualification (SDM
    /// vol. 3C Table 28-3: 3:0 the CR, 5:4 the access type, 6 LMSW's
    /// operand type, 11:8 MOV's register, 31:16 LMSW's source); 0 for the
    /// other kinds.
    pub info: u64,
}

/// What the instruction callback did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsnAction {
    /// Not ours: QEMU does what it does without the hook.
    Decline,
    /// Emulated; registers are written back.
    Done,
    /// Emulated, registers written back, then the vCPU halts as KVM's
    /// `kvm_emulate_halt_noskip()` does. `irq_wakes`: a pending interrupt
    /// wakes it even with RFLAGS.IF clear (the guest said its interrupts are
    /// not blocked, as TDVMCALL<HLT> with R12 = 0 does); otherwise it wakes
    /// as a HLT would.
    Halt { irq_wakes: bool },
    /// Raise this exception at the instruction.
    Fault(Fault),
    /// The VM cannot go on: stopped as for [`Stage2Answer::Stop`], the
    /// vCPU at the instruction.
    Stop,
}

/// Where QEMU puts the `-bios` image (the cvm API's
/// `qemu_plugin_cvm_firmware_cb_t` answers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirmwarePlace {
    /// QEMU's read-only ROM, copied in at every reset: a guest whose
    /// firmware is not part of its launch.
    Rom,
    /// Writable RAM at the same address, loaded once: private memory the
    /// launch adds (a TD's TDVF).
    Ram,
}

/// An inter-processor event the plugin may drop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitSipi {
    /// INIT: reset, then wait for a SIPI.
    Init,
    /// A SIPI with its vector.
    Sipi(u8),
}

/// A segment register, GDTR or IDTR in the VMCB/VMSA encoding (APM vol. 2
/// §15.5.1): `attrib` holds descriptor bits 47:40 in 7:0 and 55:52 in 11:8.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Segment {
    /// The selector.
    pub selector: u16,
    /// The attributes.
    pub attrib: u16,
    /// The limit, byte granular.
    pub limit: u32,
    /// The base.
    pub base: u64,
}

/// A vCPU's register state as an SEV-ES VMSA holds it, for
/// [`Host::vcpu_set_state`] (the cvm API's `qemu_plugin_cvm_vcpu_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct VcpuState {
    pub es: Segment,
    pub cs: Segment,
    pub ss: Segment,
    pub ds: Segment,
    pub fs: Segment,
    pub gs: Segment,
    pub ldtr: Segment,
    pub tr: Segment,
    pub gdtr: Segment,
    pub idtr: Segment,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    pub dr6: u64,
    pub dr7: u64,
    pub rflags: u64,
    pub rip: u64,
    /// In [`gpr`] order.
    pub gpr: [u64; 16],
    pub xcr0: u64,
    /// IA32_PAT (the VMSA's G_PAT).
    pub pat: u64,
    pub star: u64,
    pub lstar: u64,
    pub cstar: u64,
    pub sfmask: u64,
    pub kernel_gs_base: u64,
    pub sysenter_cs: u64,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    pub x87_fcw: u16,
    /// Two bits a register, 3: empty.
    pub x87_ftw: u16,
    pub mxcsr: u32,
}

/// What the emulated TDX module, SNP firmware and KVM need from QEMU while
/// an instruction callback runs: the services QEMU+KVM give a VMM handling an
/// exit. Called on the vCPU thread of the instruction, inside the callback.
/// `ffi.rs` implements it over the cvm API; unit tests use a fake.
pub trait Host {
    /// CPUID `leaf`.`subleaf` as QEMU's CPU model answers it: EAX, EBX, ECX,
    /// EDX.
    fn cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4];
    /// RDMSR of `msr` as QEMU emulates it; `None` where RDMSR would #GP.
    fn rdmsr(&self, msr: u32) -> Option<u64>;
    /// WRMSR; `false` where WRMSR would #GP.
    fn wrmsr(&self, msr: u32, value: u64) -> bool;
    /// A port I/O access of `size` bytes (1, 2 or 4); returns what was read
    /// (0 for a write).
    fn pio(&self, port: u16, size: u8, write: bool, value: u32) -> u32;
    /// Reads QEMU's memory or MMIO at `at` (a memslot's backing, or a
    /// guest-physical address outside memslots: see
    /// [`Vmm::qemu_addr`](crate::vmm::Vmm::qemu_addr)), bypassing stage 2
    /// and the device check; `false` if part of it is not backed.
    fn phys_read(&self, at: BackingAddr, buf: &mut [u8]) -> bool;
    /// Writes QEMU's memory or MMIO, like [`Host::phys_read`].
    fn phys_write(&self, at: BackingAddr, buf: &[u8]) -> bool;
    /// The guest reported a fatal error: stop the VM as QEMU does on a guest
    /// panic (`qemu_system_guest_panicked()`, so `-action panic=` applies).
    fn guest_panicked(&self);
    /// Starts vCPU `vcpu` from `state` (loaded on its own thread before it
    /// runs again: out of halt, park or the wait for a SIPI); `false` if
    /// there is no such vCPU.
    fn vcpu_set_state(&self, vcpu: u32, state: &VcpuState) -> bool;
    /// Halts vCPU `vcpu` so that nothing wakes it until
    /// [`Host::vcpu_set_state`]; `false` if there is no such vCPU.
    fn vcpu_park(&self, vcpu: u32) -> bool;
}

/// A [`Host`] for unit tests.
#[cfg(any(test, feature = "fuzzing"))]
pub mod fake {
    use std::cell::{Cell, RefCell};

    use cvmem_model::BackingAddr;

    use super::Host;

    /// 16 MiB of guest memory at QEMU address 0, a port and MSR space.
    #[derive(Debug)]
    pub struct FakeHost {
        /// Guest memory at QEMU address 0.
        pub mem: RefCell<Vec<u8>>,
        /// Set by `guest_panicked`.
        pub panicked: Cell<bool>,
        /// Port accesses: port, size, write, value.
        pub io: RefCell<Vec<(u16, u8, bool, u32)>>,
        /// IA32_APIC_BASE (MSR 0x1b), the only MSR there is: xAPIC enabled
        /// at the default base, BSP.
        pub apic_base: Cell<u64>,
        /// vCPUs started (`Some` state) or parked (`None`), in order.
        pub vcpu_states: RefCell<Vec<(u32, Option<super::VcpuState>)>>,
    }

    /// Bytes of guest memory.
    pub const MEM: u64 = 16 << 20;

    /// vCPU 0's stage-2 request for `gpa` with paging on (a linear address
    /// of no meaning), answered by `kvm`.
    pub fn access(kvm: &crate::kvm::Kvm, gpa: u64, a: super::Access) -> super::Stage2Answer {
        kvm.stage2(&super::Stage2Request {
            gpa: cvmem_model::Gpa::new(gpa),
            gva: cvmem_model::Gva::new(0x7000_1000),
            vcpu_index: 0,
            access: a,
            cpl: 0,
            page_walk: false,
            paging: true,
        })
        .0
    }

    /// QEMU reports the fake's memory to `kvm` as one RAM section at 0.
    pub fn report_ram(kvm: &crate::kvm::Kvm) {
        let ram = crate::memslots::RamSection {
            addr: BackingAddr::new(0),
            size: MEM,
            readonly: false,
            name: "ram".into(),
        };
        kvm.memslot(crate::memslots::MemslotOp::Add, &ram).unwrap();
    }

    impl Default for FakeHost {
        fn default() -> FakeHost {
            FakeHost::new()
        }
    }

    impl FakeHost {
        /// Zeroed memory, no I/O yet.
        pub fn new() -> FakeHost {
            FakeHost::with_mem(MEM)
        }

        /// [`FakeHost::new`] with `bytes` of memory instead of [`MEM`].
        pub fn with_mem(bytes: u64) -> FakeHost {
            FakeHost {
                mem: RefCell::new(vec![0; bytes as usize]),
                panicked: Cell::new(false),
                io: RefCell::new(Vec::new()),
                apic_base: Cell::new(0xfee0_0900),
                vcpu_states: RefCell::new(Vec::new()),
            }
        }
    }

    impl Host for FakeHost {
        fn cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4] {
            // Leaf 0: maximum basic leaf 0x1f.
            [
                if leaf == 0 { 0x1f } else { leaf.min(0x1f) },
                subleaf,
                0xc,
                0xd,
            ]
        }
        fn rdmsr(&self, msr: u32) -> Option<u64> {
            (msr == 0x1b).then_some(self.apic_base.get())
        }
        fn wrmsr(&self, msr: u32, value: u64) -> bool {
            if msr == 0x1b {
                self.apic_base.set(value);
            }
            msr == 0x1b
        }
        fn pio(&self, port: u16, size: u8, write: bool, value: u32) -> u32 {
            self.io.borrow_mut().push((port, size, write, value));
            if write {
                0
            } else {
                0x5a
            }
        }
        fn phys_read(&self, at: BackingAddr, buf: &mut [u8]) -> bool {
            let gpa = at.raw();
            let m = self.mem.borrow();
            let Some(src) = (gpa as usize)
                .checked_add(buf.len())
                .and_then(|end| m.get(gpa as usize..end))
            else {
                return false;
            };
            buf.copy_from_slice(src);
            true
        }
        fn phys_write(&self, at: BackingAddr, buf: &[u8]) -> bool {
            let gpa = at.raw();
            let mut m = self.mem.borrow_mut();
            let Some(dst) = (gpa as usize)
                .checked_add(buf.len())
                .and_then(|end| m.get_mut(gpa as usize..end))
            else {
                return false;
            };
            dst.copy_from_slice(buf);
            true
        }
        fn guest_panicked(&self) {
            self.panicked.set(true);
        }
        fn vcpu_set_state(&self, vcpu: u32, state: &super::VcpuState) -> bool {
            self.vcpu_states.borrow_mut().push((vcpu, Some(*state)));
            true
        }
        fn vcpu_park(&self, vcpu: u32) -> bool {
            self.vcpu_states.borrow_mut().push((vcpu, None));
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_kind_in_numbering_order() {
        // ffi.rs checks each number against the header; here ALL, which
        // from_raw indexes, must agree with those numbers.
        for (n, i) in Insn::ALL.iter().enumerate() {
            assert_eq!(i.raw(), n as u32);
            assert_eq!(Insn::from_raw(n as u32), Some(*i));
        }
        assert_eq!(Insn::from_raw(13), None);
        assert_eq!(Insn::mask(&[Insn::Tdcall, Insn::Cpuid]), 0b100_0001);
    }

    #[test]
    fn access_numbering() {
        assert_eq!(Access::from_raw(0), Access::Read);
        assert_eq!(Access::from_raw(1), Access::Write);
        assert_eq!(Access::from_raw(2), Access::Fetch);
    }
}
