// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * selftest: checks the runtime itself, so that a failure in a real test is
 * not a runtime bug: printf, exception frames and handlers (with and
 * without an error code), ASM_TRY, page-table helpers, CPUID/MSRs and the
 * result counting.
 *
 * Command-line words (QEMU -append) exercise the failure paths, for the
 * runner's own tests: "fail-report" adds one failing report (QEMU must exit
 * 3), "fail-exception" runs an unhandled ud2 (same), "triple-fault" ends
 * the run in a triple fault (for the plugin summary's account of it).
 */
#include "libcflat.h"

/* An address no boot or new_pml4() mapping covers: PML4 slot 1. */
#define UNMAPPED_VA 0x8000000000ul
#define HANDLER_RAX 0x5a5a5a5a12345678ul

static void check_fmt(const char *want, const char *fmt, ...) __printf(2, 3);

static void check_fmt(const char *want, const char *fmt, ...)
{
	char buf[64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	report(!strcmp(buf, want), "\"%s\" gives \"%s\" (got \"%s\")", fmt, want, buf);
}

static void test_printf(void)
{
	char small[4];
	int n;

	report_prefix_push("printf");
	check_fmt("-42 42 4294967254", "%d %u %u", -42, 42, (unsigned int)-42);
	check_fmt("-9223372036854775808", "%ld", (long)(-9223372036854775807L - 1));
	check_fmt("ff FF 0xdeadbeef", "%x %X %p", 255u, 255u, (void *)0xdeadbeeful);
	check_fmt("00001234 0123456789abcdef", "%08x %016lx", 0x1234u, 0x0123456789abcdeful);
	check_fmt("ffffffffffffffff", "%llx", ~0ull);
	check_fmt("[   7] [7   ] [-0007]", "[%4d] [%-4d] [%05d]", 7, 7, -7);
	check_fmt("a hi|", "%c %s|", 'a', "hi");
	check_fmt("100%", "%d%%", 100);
	n = snprintf(small, sizeof(small), "%s", "truncated");
	report(n == 9 && !strcmp(small, "tru"), "snprintf truncates and returns full length");
	report_prefix_pop();
}

static volatile int ud_count;
static volatile u64 ud_rip;

static void ud_handler(struct ex_regs *regs)
{
	ud_count++;
	ud_rip = regs->rip;
	regs->rip += 2; /* ud2 is 0f 0b */
}

static void test_ud(void)
{
	u64 insn_rip;

	report_prefix_push("#UD");
	report(handle_exception(UD_VECTOR, ud_handler) == NULL, "no handler installed before");
	asm volatile("lea 1f(%%rip), %0\n\t"
		     "1: ud2" : "=r"(insn_rip) :: "memory");
	report(ud_count == 1, "handler ran once");
	report(ud_rip == insn_rip, "frame rip %lx is the ud2 at %lx", ud_rip, insn_rip);
	report(handle_exception(UD_VECTOR, NULL) == ud_handler, "uninstall returns the handler");
	report_prefix_pop();
}

/* Set by the faulting asm before the fault, read by pf_handler. */
static u64 pf_insn_rip, pf_next_rip;
static volatile u64 pf_cr2, pf_error_code, pf_rip, pf_cs;

static void pf_handler(struct ex_regs *regs)
{
	pf_cr2 = read_cr2();
	pf_error_code = regs->error_code;
	pf_rip = regs->rip;
	pf_cs = regs->cs;
	if (regs->rip != pf_insn_rip) {
		printf("pf_handler: #PF at unexpected rip %lx\n", regs->rip);
		abort();
	}
	regs->rax = HANDLER_RAX; /* comes back as the load's result */
	regs->rip = pf_next_rip;
}

static u64 pf_access(u64 va, bool write)
{
	u64 val = 0;

	pf_cr2 = pf_error_code = pf_rip = 0;
	if (write)
		asm volatile("lea 1f(%%rip), %%rdx\n\t"
			     "mov %%rdx, %[insn]\n\t"
			     "lea 2f(%%rip), %%rdx\n\t"
			     "mov %%rdx, %[next]\n\t"
			     "1: movq %%rcx, (%[va])\n\t"
			     "2:"
			     : "+a"(val), [insn] "=m"(pf_insn_rip), [next] "=m"(pf_next_rip)
			     : [va] "r"(va), "c"(0ul) : "rdx", "memory");
	else
		asm volatile("lea 1f(%%rip), %%rdx\n\t"
			     "mov %%rdx, %[insn]\n\t"
			     "lea 2f(%%rip), %%rdx\n\t"
			     "mov %%rdx, %[next]\n\t"
			     "1: movq (%[va]), %%rax\n\t"
			     "2:"
			     : "+a"(val), [insn] "=m"(pf_insn_rip), [next] "=m"(pf_next_rip)
			     : [va] "r"(va) : "rdx", "memory");
	return val;
}

static void test_pf(void)
{
	u64 val;

	report_prefix_push("#PF");
	handle_exception(PF_VECTOR, pf_handler);

	val = pf_access(UNMAPPED_VA + 0x123, false);
	report(pf_rip == pf_insn_rip && pf_cs == KERNEL_CS, "read: frame rip/cs point at the load");
	report(pf_cr2 == UNMAPPED_VA + 0x123, "read: cr2 %lx", pf_cr2);
	report(pf_error_code == 0, "read: error code %lx is not-present|read|supervisor",
	       pf_error_code);
	report(val == HANDLER_RAX, "handler's rax reaches the interrupted code");

	pf_access(UNMAPPED_VA + 0x1000, true);
	report(pf_cr2 == UNMAPPED_VA + 0x1000, "write: cr2 %lx", pf_cr2);
	report(pf_error_code == PFERR_WRITE, "write: error code %lx is not-present|write",
	       pf_error_code);

	handle_exception(PF_VECTOR, NULL);
	report_prefix_pop();
}

static void test_asm_try(void)
{
	u64 val = 0;

	report_prefix_push("ASM_TRY");
	/* 0x1234 is far past the GDT limit: #GP with the selector as error code. */
	asm volatile(ASM_TRY("1f") "movw %w0, %%fs\n1:" :: "r"(0x1234) : "memory");
	report(exception_vector() == GP_VECTOR, "bad selector load: vector %d", exception_vector());
	report(exception_error_code() == 0x1234, "#GP error code %lx is the selector",
	       exception_error_code());

	asm volatile(ASM_TRY("1f") "movq (%1), %0\n1:"
		     : "+r"(val) : "r"(UNMAPPED_VA) : "memory");
	report(exception_vector() == PF_VECTOR && exception_cr2() == UNMAPPED_VA,
	       "unmapped load: vector %d, cr2 %lx", exception_vector(), exception_cr2());

	asm volatile(ASM_TRY("1f") "movq (%1), %0\n1:"
		     : "+r"(val) : "r"(&val) : "memory");
	report(exception_vector() == -1, "no fault: vector stays -1");
	report_prefix_pop();
}

static volatile u64 bp_rip, soft_vector;

static void bp_handler(struct ex_regs *regs)
{
	bp_rip = regs->rip;
}

static void soft_handler(struct ex_regs *regs)
{
	soft_vector = regs->vector;
}

/* int3 is a trap: the frame holds the next rip, and plain return resumes. */
static void test_trap(void)
{
	u64 next_rip;

	handle_exception(BP_VECTOR, bp_handler);
	asm volatile("lea 1f(%%rip), %0\n\t"
		     "int3\n"
		     "1:" : "=r"(next_rip) :: "memory");
	report(bp_rip == next_rip, "#BP: trap frame rip %lx is after the int3 (%lx)",
	       bp_rip, next_rip);
	handle_exception(BP_VECTOR, NULL);

	/* Stubs for vectors >= 128 push a sign-extended imm8: check the masking. */
	handle_exception(0x80, soft_handler);
	handle_exception(0xfe, soft_handler);
	asm volatile("int $0x80" ::: "memory");
	report(soft_vector == 0x80, "int $0x80 arrives as vector %lx", soft_vector);
	asm volatile("int $0xfe" ::: "memory");
	report(soft_vector == 0xfe, "int $0xfe arrives as vector %lx", soft_vector);
	handle_exception(0x80, NULL);
	handle_exception(0xfe, NULL);
}

static void test_paging(void)
{
	u64 *pml4 = new_pml4();
	u64 old_cr3 = read_cr3();
	u64 high_va = UNMAPPED_VA + 0x5000;
	/* Three pages at the start of one 2 MiB page of the identity map. */
	u64 a_pa = phys_alloc_pages_aligned(3, LARGE_PAGE_SIZE);
	u64 b_pa = a_pa + PAGE_SIZE, c_pa = a_pa + 2 * PAGE_SIZE;
	volatile u64 *a = pa_to_ptr(a_pa), *b = pa_to_ptr(b_pa), *c = pa_to_ptr(c_pa);
	u64 *pte;

	report_prefix_push("paging");
	*a = 0xaaaa;
	*b = 0xbbbb;
	*c = 0xcccc;

	install_page(pml4, high_va, a_pa, PT_PRESENT | PT_WRITABLE);
	install_page(pml4, high_va + PAGE_SIZE, a_pa, PT_PRESENT);
	/* Point b's identity va at c's frame: splits the 2 MiB page. */
	install_page(pml4, b_pa, c_pa, PT_PRESENT | PT_WRITABLE);
	write_cr3(ptr_to_pa(pml4));

	report(*(volatile u64 *)high_va == 0xaaaa, "high va reads the page it maps");
	*(volatile u64 *)high_va = 0xa1a1;
	report(*b == 0xcccc, "b's va, remapped, reads c's frame");
	report(*a == 0xa1a1 && *c == 0xcccc, "rest of the split 2 MiB page is still identity");
	pte = get_pte(pml4, b_pa);
	report(pte && (*pte & PT_ADDR_MASK) == c_pa && !(*pte & PT_PAGE_SIZE),
	       "get_pte finds the 4K entry");
	pte = get_pte(pml4, 3ul << 30);
	report(pte && (*pte & PT_PAGE_SIZE), "get_pte finds a 2M leaf elsewhere");
	report(get_pte(pml4, UNMAPPED_VA + (1ul << 30)) == NULL, "get_pte: NULL when unmapped");

	/* CR0.WP is set: a supervisor write to a read-only page faults. */
	asm volatile(ASM_TRY("1f") "movq %1, (%0)\n1:"
		     :: "r"(high_va + PAGE_SIZE), "r"(1ul) : "memory");
	report(exception_vector() == PF_VECTOR &&
	       exception_error_code() == (PFERR_PRESENT | PFERR_WRITE),
	       "write to read-only page: vector %d error code %lx",
	       exception_vector(), exception_error_code());

	write_cr3(old_cr3);
	report(*b == 0xbbbb, "boot map: b's va reads b again");
	pte = get_pte(boot_pml4(), b_pa);
	report(pte && (*pte & PT_PAGE_SIZE), "boot map untouched by the split");
	report_prefix_pop();
}

static void test_cpu(void)
{
	struct cpuid r = cpuid(0);
	char vendor[13];
	u64 efer = rdmsr(MSR_EFER);

	report_prefix_push("cpu");
	memcpy(vendor, &r.b, 4);
	memcpy(vendor + 4, &r.d, 4);
	memcpy(vendor + 8, &r.c, 4);
	vendor[12] = '\0';
	report_info("vendor %s, max leaf %x", vendor, r.a);
	report(r.a >= 1, "cpuid max basic leaf >= 1");
	report((cpuid(0x80000001).d >> 29) & 1, "cpuid reports long mode");
	report((efer & (EFER_LME | EFER_LMA)) == (EFER_LME | EFER_LMA), "EFER.LME and LMA set");
	report((read_cr0() & (X86_CR0_PG | X86_CR0_WP)) == (X86_CR0_PG | X86_CR0_WP) &&
	       (read_cr4() & X86_CR4_PAE), "CR0.PG, CR0.WP, CR4.PAE set");
	report(!(read_rflags() & (1 << 9)), "interrupts are off");
	report_prefix_pop();
}

static void test_boot_info(void)
{
	report_prefix_push("boot");
	report_info("RAM ends at %lx (mem_upper %u KiB), image ends at %lx, Multiboot info at %x, %lu pages free",
		    boot_info.ram_end_pa, boot_info.mem_upper_kib, boot_info.image_end_pa, boot_info.mbi_pa,
		    phys_pages_free());
	report_info("cmdline \"%s\"", boot_info.cmdline);
	report(boot_info.ram_end_pa > boot_info.image_end_pa, "RAM extends past the image");
	report(boot_info.image_end_pa < (2ul << 20), "image is small and loaded at 1 MiB");
	report_prefix_pop();
}

static void test_counting(void)
{
	struct report_stats before = report_stats(), after;

	report_prefix_push("counting");
	report_skip("a skip counts as a test");
	report(true, "a pass counts as a test");
	after = report_stats();
	report(after.tests == before.tests + 2 && after.skipped == before.skipped + 1 &&
	       after.failures == before.failures, "stats: %u tests, %u failures, %u skipped",
	       after.tests, after.failures, after.skipped);
	report_prefix_pop();
}

int main(void)
{
	report(true, "serial output works");
	test_printf();
	test_ud();
	test_pf();
	test_asm_try();
	test_trap();
	test_paging();
	test_cpu();
	test_boot_info();
	test_counting();

	if (cmdline_has("fail-report"))
		report(false, "deliberate failure (fail-report on the command line)");
	if (cmdline_has("fail-exception"))
		asm volatile("ud2");
	if (cmdline_has("triple-fault")) {
		report_info("triple-faulting on purpose");
		triple_fault();
	}
	return 0;
}
