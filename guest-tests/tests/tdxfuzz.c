/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tdxfuzz: a hostile TD. Thousands of seeded random TDCALL leaves,
 * TDVMCALL sub-functions and operands; every status must be one the TDX
 * module ABI or the GHCI documents, and the TD must keep running.
 *
 * Operands that could destroy the test itself are confined: GPAs of
 * memory operations (ACCEPT, MapGPA, REPORT, RTMR) fall in a sacrificial
 * region the test never touches, port and MMIO writes go to harmless
 * places, and ReportFatalError is left out (it ends the TD by design).
 * Then the same instructions and every other one the plugin takes, at
 * CPL 3 with random registers: each must fault as the spec says, never
 * reach the TDX module or the VMM as if from CPL 0.
 * Seed: -append seed=N (default 1).
 */
#include "libcflat.h"
#include "fuzz.h"
#include "tdx.h"

#define ITERATIONS 6000
#define USER_ITERATIONS 2000
#define SACRIFICE_BASE (128ul << 20)
#define SACRIFICE_SIZE (64ul << 20)

/* A GPA in the sacrificial region, sometimes misaligned or shared. */
static u64 sacrificial_gpa(u64 shared_bit)
{
	u64 gpa = SACRIFICE_BASE + (rnd() % SACRIFICE_SIZE);

	if (rnd() % 4)
		gpa &= ~0xffful;
	if (rnd() % 3 == 0)
		gpa |= shared_bit;
	return gpa;
}

static bool documented_tdcall(u64 st)
{
	switch (st & TDX_STATUS_MASK) {
	case TDX_SUCCESS:
	case TDX_OPERAND_INVALID:
	case TDX_PAGE_ALREADY_ACCEPTED:
	case TDX_PAGE_SIZE_MISMATCH:
	case TDX_NO_VALID_VE_INFO:
	case TDX_METADATA_FIELD_ID_INCORRECT:
	case TDX_METADATA_FIELD_NOT_WRITABLE:
	case TDX_METADATA_FIELD_NOT_READABLE:
	case TDX_METADATA_FIELD_VALUE_NOT_VALID:
	case TDX_METADATA_FIRST_FIELD_ID_IN_CONTEXT: /* TDG.VP.RD of the null field ID */
		return true;
	}
	return false;
}

static bool documented_tdvmcall(u64 st, bool kvm_hypercall)
{
	if (kvm_hypercall)
		return st == 0 || (s64)st < 0; /* 0 or -errno */
	return st == TDVMCALL_STATUS_SUCCESS || st == TDVMCALL_STATUS_RETRY ||
	       st == TDVMCALL_STATUS_INVALID_OPERAND || st == TDVMCALL_STATUS_ALIGN_ERROR ||
	       st == TDVMCALL_STATUS_SUBFUNC_UNSUPPORTED;
}

static const u64 subfunctions[] = {
	TDVMCALL_GET_TD_VM_CALL_INFO, TDVMCALL_MAP_GPA, TDVMCALL_GET_QUOTE,
	EXIT_REASON_CPUID, EXIT_REASON_HLT, EXIT_REASON_IO_INSTRUCTION,
	EXIT_REASON_MSR_READ, EXIT_REASON_MSR_WRITE, EXIT_REASON_EPT_VIOLATION,
};

static u64 fuzz_tdvmcall(u64 shared_bit, bool *kvm, u64 *sub)
{
	struct tdx_module_args a = {
		.r12 = operand(), .r13 = operand(), .r14 = operand(), .r15 = operand(),
	};
	u64 n = sizeof(subfunctions) / sizeof(subfunctions[0]), st;

	*kvm = rnd() % 16 == 0;
	a.r10 = *kvm ? 1 + rnd() % 64 : 0;
	a.r11 = rnd() % 8 ? subfunctions[rnd() % n] : operand();
	*sub = a.r11;
	switch (a.r11) {
	case EXIT_REASON_HLT:
		/*
		 * KVM halts the vCPU until an interrupt is pending: pend one
		 * (taken below) and say interrupts are not blocked, or the TD
		 * would sleep for good with IF clear.
		 */
		a.r12 = 0;
		x2apic_icr_write(APIC_DEST_SELF | APIC_DM_FIXED | SMP_IPI_VECTOR, 0);
		break;
	case TDVMCALL_MAP_GPA:
	case TDVMCALL_GET_QUOTE:
		a.r12 = sacrificial_gpa(shared_bit);
		a.r13 = rnd() % 2 ? (rnd() % 1024) * 4096 : operand();
		break;
	case EXIT_REASON_IO_INSTRUCTION:
		if (a.r13 == 1)
			a.r14 = 0x80; /* writes only to the POST port */
		break;
	case EXIT_REASON_MSR_WRITE:
		a.r12 = 0xdead0000 | (rnd() & 0xffff); /* no such MSR */
		break;
	case EXIT_REASON_EPT_VIOLATION:
		a.r13 = 0; /* reads only */
		break;
	case TDVMCALL_REPORT_FATAL_ERROR:
		a.r11 = 0x7fff; /* would end the TD */
		break;
	}
	a.rcx = TDVMCALL_EXPOSE_REGS_MASK;
	st = tdcall(TDG_VP_VMCALL, &a);
	/* The self-IPI of a HLT (or of one the VMM refused). */
	asm volatile("sti; nop; cli" ::: "memory");
	if (st != 0)
		return ~0ul;
	return a.r10;
}

static u64 fuzz_tdcall(u64 shared_bit, u64 *leaf)
{
	struct tdx_module_args a = {
		.rcx = operand(), .rdx = operand(), .r8 = operand(), .r9 = operand(),
		.r10 = operand(), .r11 = operand(),
	};

	*leaf = rnd() % 8 ? rnd() % 13 : operand();
	switch (*leaf) {
	case TDG_VP_VMCALL:
		/*
		 * A random expose mask: TDX_OPERAND_INVALID unless it is valid
		 * (a harmless sub-function: a HLT could sleep for good).
		 */
		a.r10 = 0;
		a.r11 = TDVMCALL_GET_TD_VM_CALL_INFO;
		a.rcx &= 0xffffffff0000fffful;
		break;
	case TDG_MEM_PAGE_ACCEPT:
		a.rcx = sacrificial_gpa(shared_bit) | (rnd() % 4);
		break;
	case TDG_MR_REPORT:
	case TDG_MR_RTMR_EXTEND:
		a.rcx = sacrificial_gpa(shared_bit);
		if (*leaf == TDG_MR_REPORT)
			a.rdx = sacrificial_gpa(shared_bit);
		break;
	case TDG_VM_WR:
		/* Only fields a TD may write without changing its own rules. */
		a.rdx = rnd() % 2 ? TDCS_NOTIFY_ENABLES : operand();
		break;
	}
	return tdcall(*leaf, &a);
}

int main(void)
{
	u64 shared_bit = tdx_shared_mask();
	u64 bad = 0, calls = 0;

	report_info("seed %lu, %d iterations", fuzz_seed(), ITERATIONS);
	smp_init(); /* the x2APIC software-enabled, the IPI vector handled */
	for (int i = 0; i < ITERATIONS; i++) {
		if (rnd() % 2) {
			u64 leaf, st = fuzz_tdcall(shared_bit, &leaf);

			if (!documented_tdcall(st) && bad++ < 5)
				printf("TDCALL leaf %lx: undocumented status %lx\n", leaf, st);
		} else {
			bool kvm;
			u64 sub, st = fuzz_tdvmcall(shared_bit, &kvm, &sub);

			if (!documented_tdvmcall(st, kvm) && bad++ < 5)
				printf("TDVMCALL %lx: undocumented status %lx\n", sub, st);
		}
		calls++;
	}
	report(bad == 0, "%lu calls, %lu undocumented statuses", calls, bad);
	/* A fuzzed TDG.VP.CPUIDVE.SET may have made every CPUID a #VE. */
	{
		struct tdx_module_args a = { 0 };

		tdcall(TDG_VP_CPUIDVE_SET, &a);
	}
	/*
	 * CPL 3: TDCALL is #GP(0) above CPL 0 (TDX module ABI, TDCALL); the
	 * privileged instructions #GP(0) as on bare metal (SDM vol. 2: RDMSR,
	 * WRMSR, HLT, MOV CR; IN/OUT with IOPL 0 and no I/O bitmap); AMD's
	 * VMMCALL, VMGEXIT, PVALIDATE and RMPADJUST #UD on an Intel CPU;
	 * CPUID completes (natively or through the runtime's #VE emulation,
	 * as Linux emulates a user CPUID). VMCALL exits to the module at any
	 * CPL, which reflects it as a #VE (exit reason 18, tdx_td_dispatcher.c)
	 * that the runtime does not emulate.
	 */
	{
		static const enum user_expect expect[USER_NR_INSNS] = {
			[USER_TDCALL] = EXPECT_GP0, [USER_VMCALL] = EXPECT_VE,
			[USER_VMMCALL] = EXPECT_UD, [USER_VMGEXIT] = EXPECT_UD,
			[USER_PVALIDATE] = EXPECT_UD, [USER_RMPADJUST] = EXPECT_UD,
			[USER_RDMSR] = EXPECT_GP0, [USER_WRMSR] = EXPECT_GP0,
			[USER_CPUID] = EXPECT_DONE, [USER_HLT] = EXPECT_GP0,
			[USER_IN] = EXPECT_GP0, [USER_OUT] = EXPECT_GP0,
			[USER_MOV_CR4] = EXPECT_GP0, [USER_MOV_CR0] = EXPECT_GP0,
		};
		u64 wrong = fuzz_user_phase(expect, USER_ITERATIONS);

		report(wrong == 0, "CPL 3: %lu instructions ended otherwise than the spec says",
		       wrong);
	}
	report(is_tdx_guest() && tdx_shared_mask() == shared_bit, "the TD still runs and answers");
	return 0;
}
