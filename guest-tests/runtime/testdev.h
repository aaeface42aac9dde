/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The plugin's hooks test device (plugin argument test=hooks): a guest
 * reaches it with VMCALL and RAX = TESTDEV_MAGIC | op. The ops are listed
 * in plugin/src/testdev.rs.
 */
#ifndef CVMEM_TESTDEV_H
#define CVMEM_TESTDEV_H

#include "libcflat.h"

#define TESTDEV_MAGIC 0x63766d00ul
#define OP_DENY 1
#define OP_REMAP 2
#define OP_CLEAR 3
#define OP_FLUSH 4
#define OP_MEMSLOT_FIND 5
#define OP_MEMSLOT_LOG 6
#define OP_DMA_BLOCK 7
#define OP_DMA_BLOCKED 8
#define OP_RETRY_ONCE 9
#define OP_RETRIES 10
#define OP_HOST_CPUID 11
#define OP_HOST_PIO 12
#define OP_HOST_MSR 13
#define OP_HOST_PANIC 14
#define OP_IOIO_LAST 15
#define OP_IOIO_FAULT 16
#define OP_HLT_SKIP 17
#define OP_HLTS 18
#define OP_ZAP_NOFLUSH 19
#define HOST_PIO_READ (~0ul)
#define NO_ERROR_CODE (~0ul)
#define TESTDEV_LEAF 0x40000f00u
#define TESTDEV_MSR 0x40000f00u

/* Registers RAX, RBX, RCX, RDX after a test-device call. */
struct testdev_regs {
	u64 rax, rbx, rcx, rdx;
};

static inline struct testdev_regs testdev_call(u64 op, u64 a1, u64 a2, u64 a3)
{
	struct testdev_regs r = { TESTDEV_MAGIC | op, a1, a2, a3 };

	asm volatile("vmcall" : "+a"(r.rax), "+b"(r.rbx), "+c"(r.rcx), "+d"(r.rdx) :: "memory");
	return r;
}

static inline u64 testdev(u64 op, u64 a1, u64 a2, u64 a3)
{
	return testdev_call(op, a1, a2, a3).rax;
}

#endif
