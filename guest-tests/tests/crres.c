/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * crres: MOV to CR4 with a reserved bit set, and MOV to CR3 in long mode
 * with a bit beyond the physical address width, raise #GP(0) (SDM vol. 2,
 * "MOV—Move to/from Control Registers"), and change nothing. Stock QEMU
 * 10.0 took an SVM exit there outside any SVM guest and the vCPU hung
 * (patch 0024).
 */
#include "libcflat.h"

#define CR4_RESERVED_15 (1ul << 15)

static int try_write_cr(int cr, u64 val)
{
	if (cr == 3)
		asm volatile(ASM_TRY("1f") "mov %0, %%cr3\n1:" :: "r"(val) : "memory");
	else
		asm volatile(ASM_TRY("1f") "mov %0, %%cr4\n1:" :: "r"(val) : "memory");
	return exception_vector();
}

int main(void)
{
	u64 cr3 = read_cr3(), cr4 = read_cr4();
	unsigned int phys_bits = cpuid(0x80000008).a & 0xff;
	int v;

	v = try_write_cr(4, cr4 | CR4_RESERVED_15);
	report(v == GP_VECTOR && exception_error_code() == 0 && read_cr4() == cr4,
	       "MOV to CR4 with reserved bit 15: #GP(0), CR4 unchanged (vector %d)", v);

	if (phys_bits >= 52) {
		report_skip("MOV to CR3 beyond MAXPHYADDR: %u physical address bits", phys_bits);
	} else {
		v = try_write_cr(3, cr3 | 1ul << phys_bits);
		report(v == GP_VECTOR && exception_error_code() == 0 && read_cr3() == cr3,
		       "MOV to CR3 with bit %u (MAXPHYADDR %u) set: #GP(0), CR3 unchanged (vector %d)",
		       phys_bits, phys_bits, v);
	}
	/* A write that is allowed still works. */
	v = try_write_cr(4, cr4);
	report(v == -1 && read_cr4() == cr4, "MOV to CR4 of its own value: no fault");
	return 0;
}
