//! The MMU's unit tests, one file per part of `mmu/` (lookup, fault, zap,
//! memslots, attributes, tlb, host), with events and SEV-SNP's RMP on
//! their own; the helpers every file shares are here.

use super::*;
use crate::rmp::RmpPageSize;
use crate::*;

mod attributes;
mod events;
mod fault;
mod host;
mod lookup;
mod memslots;
mod snp;
mod tlb;
mod zap;

const MB: u64 = 1 << 20;
const GB: u64 = 1 << 30;
const V0: VcpuId = VcpuId(0);

fn vm(t: VmType) -> Vm {
    Vm::new(VmConfig {
        max_vcpus: 4,
        event_capacity: 1 << 16,
        ..VmConfig::new(t)
    })
    .unwrap()
}

fn slot(vm: &Vm, id: u16, gpa: u64, size: u64, backing: u64, flags: MemslotFlags) -> Flush {
    vm.set_memory_region(MemoryRegion {
        slot: MemslotId(id),
        flags,
        guest_phys_addr: Gpa::new(gpa),
        memory_size: size,
        backing: BackingAddr::new(backing),
    })
    .unwrap()
}

fn delete(vm: &Vm, id: u16) -> Flush {
    slot(vm, id, 0, 0, 0, MemslotFlags::NONE)
}

fn pmem(t: VmType) -> MemslotFlags {
    if t.has_private_mem() {
        MemslotFlags::GUEST_MEMFD
    } else {
        MemslotFlags::NONE
    }
}

fn mapped(s: Stage2) -> Translation {
    match s {
        Stage2::Mapped(t) => t,
        Stage2::Fault(f) => panic!("expected a mapping, got {f:?}"),
    }
}

fn range(start: u64, len: u64) -> GfnRange {
    GfnRange::from_start_len(Gfn::new(start), len).unwrap()
}

fn shared(vm: &Vm, gfn: u64) -> Gpa {
    vm.alias().encode(Gfn::new(gfn), Alias::Shared)
}

fn private(vm: &Vm, gfn: u64) -> Gpa {
    vm.alias().encode(Gfn::new(gfn), Alias::Private)
}
