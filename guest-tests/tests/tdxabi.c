// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * tdxabi: the TDX guest helpers of tdx.h, and page-table entries with
 * address bits as high as a TD's shared bit, before a TDX front end exists.
 *
 *  - Always: a PTE whose address has bit 47 or bit 51 set (the shared bit
 *    for GPAW 48 / 52). Below MAXPHYADDR (CPUID 0x80000008 EAX[7:0]; QEMU's
 *    -cpu max: 40 unless phys-bits= says otherwise) the access must not
 *    fault; at or above it, #PF with PFERR_RSVD (QEMU 10's TCG leaves
 *    PFERR_PRESENT clear in that error code, where hardware sets it). What
 *    the access does without a plugin (QEMU takes the address literally:
 *    no RAM there) is reported. The plugin's default VM type has a 48-bit
 *    GPA space of its own and answers a GPA with bit 51 with #PF RSVD, so
 *    under the plugin run this with phys-bits=48.
 *  - With `-append testdev` (the plugin's hooks test device, whose TDCALL
 *    answers RAX = 0, RCX = ~RCX, R10 = RDX + R8 and leaves the rest):
 *    tdcall() and tdvmcall() move every register of struct
 *    tdx_module_args in and out, and the helpers built on them run.
 */
#include "libcflat.h"
#include "tdx.h"

#define TEST_VA 0x8000000000ul /* PML4 slot 1: nothing else there */

static unsigned int maxphyaddr(void)
{
	if (cpuid(0x80000000).a < 0x80000008)
		return 36;
	return cpuid(0x80000008).a & 0xff;
}

/* Loads TEST_VA; returns the vector (-1: none), the value in *val. */
static int try_load(u64 *val)
{
	u64 v = 0;

	asm volatile(ASM_TRY("1f") "movq (%1), %0\n1:" : "+r"(v) : "r"(TEST_VA) : "memory");
	*val = v;
	return exception_vector();
}

static void test_high_pte_bit(u64 *pml4, u64 *page, unsigned int bit, unsigned int maxpa)
{
	u64 pa = ptr_to_pa(page);
	u64 alias = pa | (1ul << bit);
	u64 val = 0;
	int vec;

	install_page(pml4, TEST_VA, alias, PT_PRESENT | PT_WRITABLE);
	report((*get_pte(pml4, TEST_VA) & PT_ADDR_MASK) == alias,
	       "PTE address keeps bit %u (%lx)", bit, *get_pte(pml4, TEST_VA) & PT_ADDR_MASK);
	vec = try_load(&val);
	if (bit >= maxpa) {
		report(vec == PF_VECTOR && (exception_error_code() & PFERR_RSVD),
		       "bit %u >= MAXPHYADDR %u: #PF with RSVD (vector %d, error code %lx)", bit,
		       maxpa, vec, vec == PF_VECTOR ? exception_error_code() : 0);
	} else {
		report(vec == -1, "bit %u < MAXPHYADDR %u: no fault (vector %d, error code %lx, cr2 %lx)", bit, maxpa,
		       vec, exception_error_code(), exception_cr2());
		if (vec == -1) {
			*(volatile u64 *)TEST_VA = 0xdeadbeeful;
			report_info("via pa %lx: load gives %lx, a store leaves RAM at pa %lx "
				    "holding %lx", alias, val, pa, *page);
		}
	}
}

static void test_pte_bits(void)
{
	unsigned int maxpa = maxphyaddr();
	u64 *pml4 = new_pml4();
	u64 *page = alloc_page();
	u64 old_cr3 = read_cr3();

	report_prefix_push("PTE");
	report_info("MAXPHYADDR %u", maxpa);
	page[0] = 0x1122334455667788ul;
	write_cr3(ptr_to_pa(pml4));
	test_high_pte_bit(pml4, page, 47, maxpa);
	test_high_pte_bit(pml4, page, 51, maxpa);
	write_cr3(old_cr3);
	report_prefix_pop();
}

static void test_tdcall_regs(void)
{
	struct tdx_module_args in = {
		.rcx = 0x1111, .rdx = 0x2222, .r8 = 0x3333, .r9 = 0x4444,
		.r10 = 0x5555, .r11 = 0x6666, .r12 = 0x7777, .r13 = 0x8888,
		.r14 = 0x9999, .r15 = 0xaaaa, .rbx = 0xbbbb, .rdi = 0xcccc,
		.rsi = 0xdddd,
	};
	struct tdx_module_args out = in;
	u64 rax = tdcall(TDG_VP_INFO, &out);

	report(rax == 0, "tdcall() returns RAX (%lx)", rax);
	report(out.rcx == ~in.rcx && out.r10 == in.rdx + in.r8,
	       "RCX and R10 come back from the TDCALL (rcx %lx, r10 %lx)", out.rcx, out.r10);
	report(out.rdx == in.rdx && out.r8 == in.r8 && out.r9 == in.r9 && out.r11 == in.r11 &&
	       out.r12 == in.r12 && out.r13 == in.r13 && out.r14 == in.r14 &&
	       out.r15 == in.r15 && out.rbx == in.rbx && out.rdi == in.rdi && out.rsi == in.rsi,
	       "RDX, R8, R9, R11-R15, RBX, RDI, RSI go in and come back");
}

static void test_tdvmcall(void)
{
	struct tdx_module_args args = {
		.r10 = TDX_HYPERCALL_STANDARD, .r11 = TDVMCALL_MAP_GPA,
		.rdx = 40, .r8 = 2, .r12 = 0x1000, .r13 = 0x2000,
	};
	u64 status = tdvmcall(&args);

	report(status == 42 && args.r10 == 42, "tdvmcall() returns R10 (%lx)", status);
	report(args.rcx == ~(u64)TDVMCALL_EXPOSE_REGS_MASK,
	       "RCX was the expose mask %lx (came back as %lx)",
	       (u64)TDVMCALL_EXPOSE_REGS_MASK, args.rcx);
	report(args.r11 == TDVMCALL_MAP_GPA && args.r12 == 0x1000 && args.r13 == 0x2000,
	       "R11-R13 come back");
	/* RDX = R8 = 0: the test device's R10 is 0, SUCCESS. */
	report(tdvmcall4(EXIT_REASON_HLT, 0, 0, 0, 0) == TDVMCALL_STATUS_SUCCESS,
	       "tdvmcall4() returns R10");
	report(tdx_map_gpa(0x100000, 0x1000, false) == TDVMCALL_STATUS_SUCCESS,
	       "tdx_map_gpa() returns the status");
	report(tdx_accept_page(0x200000, TDX_PS_2M) == TDX_SUCCESS, "tdx_accept_page() returns RAX");
}

int main(void)
{
	report(!is_tdx_guest(), "not a TD: CPUID 0x21 has no \"%s\"", TDX_IDENT);
	test_pte_bits();
	if (cmdline_has("testdev")) {
		report_prefix_push("testdev");
		test_tdcall_regs();
		test_tdvmcall();
		report_prefix_pop();
	}
	return 0;
}
