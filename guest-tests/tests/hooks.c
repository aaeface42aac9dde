/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hooks: drives every hook of the cvm plugin API through the plugin's test
 * device (plugin argument test=hooks, see plugin/src/testdev.rs):
 *  - a stage-2 refusal raises the chosen exception with the chosen error
 *    code (#PF with the RMP bit, #VE, #VC), also for a page-walk access;
 *  - a remap is visible after a softTLB flush and not before;
 *  - a RETRY answer (the host-exit path) is invisible to the guest;
 *  - TDCALL, VMGEXIT, PVALIDATE, RMPADJUST reach the plugin, and registers
 *    and CF come back; CPUID and MSR overrides are seen, other leaves and
 *    MSRs behave as before;
 *  - QEMU's host services for the instruction callback (CPUID, port I/O,
 *    MSRs), called by the plugin for this vCPU, agree with the real
 *    instructions;
 *  - every form of IN, OUT, INS and OUTS reaches the plugin with its access
 *    in the SVM IOIO EXITINFO1 encoding and RIP at the instruction, then
 *    runs as usual; a fault the plugin asks for arrives at the instruction
 *    before any of it has happened;
 *  - a HLT the plugin completes returns at once even with interrupts off,
 *    keeping the flags; a declined one sleeps until the APIC timer fires.
 *
 * With `-append panic` it reports a fatal error through the host service
 * and must stop there: -action panic= decides what QEMU does next.
 * With `-append no-testdev` it checks instead that QEMU behaves as it did:
 * those instructions raise #UD, I/O instructions give the same values, and
 * sti; hlt sleeps until the timer; with `-append "no-testdev kvm"` (the
 * plugin loaded without its test device) VMCALL is KVM's hypercall instead.
 */
#include "fw_cfg.h"
#include "testdev.h"

#define MSR_APIC_BASE 0x1b
#define APIC_BASE_EXTD (1ul << 10)
#define MSR_X2APIC_ID 0x802
#define MSR_KERNEL_GS_BASE 0xc0000102

/* EXITINFO1 of an SVM IOIO intercept (AMD APM vol. 2, 15.10.2). */
#define IOIO_TYPE_IN (1ul << 0)
#define IOIO_STR (1ul << 2)
#define IOIO_REP (1ul << 3)
#define IOIO_SZ8 (1ul << 4)
#define IOIO_SZ16 (1ul << 5)
#define IOIO_SZ32 (1ul << 6)
#define IOIO_A32 (1ul << 8)
#define IOIO_A64 (1ul << 9)
#define IOIO_PORT(p) ((u64)(p) << 16)

#define POST_PORT 0x80         /* QEMU's port 80: writes dropped, reads all ones */
#define UNASSIGNED_PORT 0x3000 /* reads all ones */

/* The arithmetic flags (CF PF AF ZF SF OF). */
#define ARITH_FLAGS 0x8d5ul

/* The vector the test gives the x2APIC timer. */
#define TIMER_VECTOR 0x40

static void flush_self(void) { testdev(OP_FLUSH, 1, 0, 0); }

/* Reads *p; returns the vector it raised, or -1. */
static int try_read(volatile u64 *p, u64 *val)
{
	u64 v = 0;

	asm volatile(ASM_TRY("1f") "movq (%1), %0\n1:" : "+r"(v) : "r"(p) : "memory");
	*val = v;
	return exception_vector();
}

static void test_deny(void)
{
	volatile u64 *p = alloc_page();
	u64 v;

	report_prefix_push("deny");
	*p = 0x1234;

	testdev(OP_DENY, ptr_to_pa((void *)p), PF_VECTOR, 0x80000001ul);
	flush_self();
	report(try_read(p, &v) == PF_VECTOR, "#PF raised");
	report(exception_error_code() == 0x80000001ul, "#PF error code with the RMP bit: %lx",
	       exception_error_code());
	report(exception_cr2() == ptr_to_pa((void *)p), "CR2 is the linear address");

	testdev(OP_DENY, ptr_to_pa((void *)p), VE_VECTOR, NO_ERROR_CODE);
	flush_self();
	report(try_read(p, &v) == VE_VECTOR, "#VE raised");
	report(exception_error_code() == 0, "#VE pushes no error code");

	testdev(OP_DENY, ptr_to_pa((void *)p), VC_VECTOR, 0x7b);
	flush_self();
	report(try_read(p, &v) == VC_VECTOR, "#VC raised");
	report(exception_error_code() == 0x7b, "#VC error code (exit code) %lx", exception_error_code());

	testdev(OP_CLEAR, 0, 0, 0);
	flush_self();
	report(try_read(p, &v) == -1 && v == 0x1234, "allowed again after clear and flush");
	report_prefix_pop();
}

static void test_page_walk(void)
{
	u64 *pml4 = new_pml4(), *old = pa_to_ptr(read_cr3());
	u64 va = 0x8000000000ul, pt_page, v;
	volatile u64 *data = alloc_page();

	report_prefix_push("page walk");
	*data = 0x5678;
	install_page(pml4, va, ptr_to_pa((void *)data), PT_PRESENT | PT_WRITABLE);
	pt_page = ptr_to_pa(get_pte(pml4, va)) & ~(PAGE_SIZE - 1);
	write_cr3(ptr_to_pa(pml4));
	report(try_read((u64 *)va, &v) == -1 && v == 0x5678, "mapped through the new tables");

	testdev(OP_DENY, pt_page, VE_VECTOR, NO_ERROR_CODE);
	flush_self();
	report(try_read((u64 *)va, &v) == VE_VECTOR, "refusing the page-table page faults the walk");
	report(try_read(data, &v) == -1 && v == 0x5678, "the data page itself is still allowed");

	testdev(OP_CLEAR, 0, 0, 0);
	flush_self();
	report(try_read((u64 *)va, &v) == -1 && v == 0x5678, "walk allowed again");
	write_cr3(ptr_to_pa(old));
	report_prefix_pop();
}

static void test_remap(void)
{
	volatile u64 *a = alloc_page(), *b = alloc_page();
	u64 v;

	report_prefix_push("remap");
	*a = 0xaaaa;
	*b = 0xbbbb;
	report(*a == 0xaaaa, "page A reads A");
	testdev(OP_REMAP, ptr_to_pa((void *)a), ptr_to_pa((void *)b), 0);
	report(try_read(a, &v) == -1 && v == 0xaaaa, "before a flush, the cached translation is used");
	flush_self();
	report(try_read(a, &v) == -1 && v == 0xbbbb, "after a flush, page A is backed by B");
	testdev(OP_CLEAR, 0, 0, 0);
	testdev(OP_FLUSH, 0, 0, 0);
	report(*a == 0xaaaa, "after clear and a flush of all vCPUs, A reads A");
	report(testdev(99, 0, 0, 0) == ~0ul, "unknown op answers -1");
	report_prefix_pop();
}

/* The host-exit path: the plugin answers RETRY and the access runs again. */
static void test_retry(void)
{
	volatile u64 *p = alloc_page();
	u64 before, v;

	report_prefix_push("retry");
	*p = 0x9abc;
	before = testdev(OP_RETRIES, 0, 0, 0);
	testdev(OP_RETRY_ONCE, ptr_to_pa((void *)p), 0, 0);
	flush_self();
	report(try_read(p, &v) == -1 && v == 0x9abc, "the access completes unnoticed");
	report(testdev(OP_RETRIES, 0, 0, 0) == before + 1, "after one RETRY answer");
	report_prefix_pop();
}

static void test_insns(void)
{
	u64 rax, rcx, rdx, r10;
	u8 cf;
	struct cpuid c;

	report_prefix_push("insn");
	{
		register u64 r8 asm("r8") = 7;
		register u64 r10r asm("r10") = 0;
		rax = 0x99, rcx = 0x1234, rdx = 5;
		asm volatile(".byte 0x66, 0x0f, 0x01, 0xcc" /* tdcall */
			     : "+a"(rax), "+c"(rcx), "+d"(rdx), "+r"(r8), "+r"(r10r) :: "memory");
		r10 = r10r;
	}
	report(rax == 0 && rcx == ~0x1234ul && r10 == 12, "TDCALL: rax %lx rcx %lx r10 %lx", rax, rcx, r10);

	rax = 0x1111, rdx = 0;
	asm volatile(".byte 0xf3, 0x0f, 0x01, 0xd9" /* vmgexit */ : "+a"(rax), "+d"(rdx) :: "memory");
	report(rdx == (0x1111 ^ 0x5a5a), "VMGEXIT: rdx %lx", rdx);

	rax = 5, rcx = 1;
	asm volatile("clc; .byte 0xf2, 0x0f, 0x01, 0xff; setc %2" /* pvalidate */
		     : "+a"(rax), "+c"(rcx), "=r"(cf) :: "memory", "cc");
	report(rax == 0 && cf == 1, "PVALIDATE sets CF");
	rax = 5, rcx = 0;
	asm volatile("stc; .byte 0xf2, 0x0f, 0x01, 0xff; setc %2"
		     : "+a"(rax), "+c"(rcx), "=r"(cf) :: "memory", "cc");
	report(rax == 0 && cf == 0, "PVALIDATE clears CF");

	rax = 0, rcx = 3, rdx = 4;
	asm volatile(".byte 0xf3, 0x0f, 0x01, 0xfe" /* rmpadjust */
		     : "+a"(rax), "+c"(rcx), "+d"(rdx) :: "memory");
	report(rax == 7, "RMPADJUST: rax %lx", rax);

	c = cpuid_indexed(TESTDEV_LEAF, 5);
	report(c.a == 0x656d7663 && c.b == 6, "CPUID override: %x %x", c.a, c.b);
	c = cpuid(0);
	report(c.a >= 1 && c.b != 0, "other CPUID leaves unchanged (max leaf %x)", c.a);

	wrmsr(TESTDEV_MSR, 0x1122334455667788ul);
	report(rdmsr(TESTDEV_MSR) == 0x1122334455667788ul, "MSR override round trip");
	report(rdmsr(MSR_EFER) & EFER_LMA, "other MSRs unchanged (EFER.LMA)");
	report_prefix_pop();
}

static u64 host_pio_read(u16 port, u64 size)
{
	return testdev(OP_HOST_PIO, port, size, HOST_PIO_READ);
}

/* RDMSR; returns the vector it raised, or -1. */
static int try_rdmsr(u32 msr, u64 *val)
{
	u32 lo = 0, hi = 0;

	asm volatile(ASM_TRY("1f") "rdmsr\n1:" : "+a"(lo), "+d"(hi) : "c"(msr) : "memory");
	*val = lo | (u64)hi << 32;
	return exception_vector();
}

static void test_host_services(void)
{
	static const u32 leaves[][2] = {
		{ 0, 0 }, { 1, 0 }, { 7, 0 }, { 0xd, 1 }, { 0x80000000, 0 }, { 0x80000001, 0 },
	};
	struct testdev_regs h;
	struct cpuid c;
	u64 v;
	char sig[5] = { 0 };

	report_prefix_push("host services");
	for (unsigned i = 0; i < ARRAY_SIZE(leaves); i++) {
		c = cpuid_indexed(leaves[i][0], leaves[i][1]);
		h = testdev_call(OP_HOST_CPUID, leaves[i][0], leaves[i][1], 0);
		report(h.rax == c.a && h.rbx == c.b && h.rcx == c.c && h.rdx == c.d,
		       "CPUID %x.%x: %lx %lx %lx %lx", leaves[i][0], leaves[i][1], h.rax, h.rbx,
		       h.rcx, h.rdx);
	}

	/* fw_cfg: select the signature, then read it half through the service. */
	report(testdev(OP_HOST_PIO, FW_CFG_PORT_SEL, 2, FW_CFG_SIGNATURE) == 0, "OUTW to fw_cfg");
	sig[0] = host_pio_read(FW_CFG_PORT_DATA, 1);
	sig[1] = host_pio_read(FW_CFG_PORT_DATA, 1);
	sig[2] = inb(FW_CFG_PORT_DATA);
	sig[3] = inb(FW_CFG_PORT_DATA);
	report(!strcmp(sig, "QEMU"), "fw_cfg signature through the service and IN: %s", sig);
	outw(FW_CFG_SIGNATURE, FW_CFG_PORT_SEL);
	report(host_pio_read(FW_CFG_PORT_DATA, 1) == 'Q', "IN-selected item read through the service");
	report(host_pio_read(0x3000, 4) == 0xffffffff && inl(0x3000) == 0xffffffff,
	       "an unassigned port reads all ones");
	report(host_pio_read(FW_CFG_PORT_DATA, 3) == 0xffffffff, "a bad size is refused");

	h = testdev_call(OP_HOST_MSR, MSR_APIC_BASE, 0, 0);
	report(h.rax == 0 && h.rbx == rdmsr(MSR_APIC_BASE), "RDMSR APIC_BASE: %lx", h.rbx);
	h = testdev_call(OP_HOST_MSR, MSR_EFER, 0, 0);
	report(h.rax == 0 && h.rbx == rdmsr(MSR_EFER), "RDMSR EFER: %lx", h.rbx);
	h = testdev_call(OP_HOST_MSR, MSR_KERNEL_GS_BASE, 1, 0x123456789000ul);
	report(h.rax == 0 && rdmsr(MSR_KERNEL_GS_BASE) == 0x123456789000ul,
	       "WRMSR KERNEL_GS_BASE seen by RDMSR");
	wrmsr(MSR_KERNEL_GS_BASE, 0);

	/* x2APIC registers #GP while the APIC is in xAPIC mode. */
	report(!(rdmsr(MSR_APIC_BASE) & APIC_BASE_EXTD), "APIC in xAPIC mode");
	report(try_rdmsr(MSR_X2APIC_ID, &v) == GP_VECTOR, "RDMSR x2APIC ID raises #GP");
	report(testdev_call(OP_HOST_MSR, MSR_X2APIC_ID, 0, 0).rax == 1,
	       "the service reports #GP for the x2APIC ID");
	report(testdev_call(OP_HOST_MSR, MSR_APIC_BASE, 1, rdmsr(MSR_APIC_BASE) | 1).rax == 1,
	       "the service reports #GP for reserved APIC_BASE bits");
	report_prefix_pop();
}

static u64 ioio_count(void)
{
	return testdev_call(OP_IOIO_LAST, 0, 0, 0).rcx;
}

/*
 * The plugin saw exactly one I/O instruction since ioio_count() gave
 * @count: the one at @rip, with @expect as its EXITINFO1.
 */
static void check_ioio(const char *what, u64 count, u64 rip, u64 expect)
{
	struct testdev_regs l = testdev_call(OP_IOIO_LAST, 0, 0, 0);

	report(l.rax == expect && l.rbx == rip && l.rcx == count + 1,
	       "%s: info %lx (expected %lx), RIP %s, %lu callback(s)", what, l.rax, expect,
	       l.rbx == rip ? "at the instruction" : "elsewhere", l.rcx - count);
}

/*
 * Every form of IN, OUT, INS and OUTS gives its usual result. With the
 * test device, each also reached the plugin once, before it ran, with the
 * access as an SVM IOIO intercept's EXITINFO1 would describe it.
 */
static void test_io(bool testdev)
{
	u8 *buf = alloc_page();
	u64 n = 0, rip, rcx, rsi, rdi;
	u32 v;

	report_prefix_push("io");
#define IO_COUNT() (testdev ? ioio_count() : 0)
#define IO_CHECK(what, expect)                              \
	do {                                                \
		if (testdev)                                \
			check_ioio(what, n, rip, expect);   \
	} while (0)

	n = IO_COUNT();
	asm volatile("lea 1f(%%rip), %0\n1: outb %%al, $0x80" : "=&r"(rip) : "a"(0) : "memory");
	IO_CHECK("OUT imm8, AL", IOIO_PORT(POST_PORT) | IOIO_A64 | IOIO_SZ8);

	n = IO_COUNT();
	asm volatile("lea 1f(%%rip), %0\n1: inb $0x80, %%al" : "=&r"(rip), "=a"(v) : "a"(0) : "memory");
	IO_CHECK("IN AL, imm8", IOIO_PORT(POST_PORT) | IOIO_A64 | IOIO_SZ8 | IOIO_TYPE_IN);
	report((v & 0xff) == 0xff, "IN AL, imm8 reads port 80: %x", v & 0xff);

	n = IO_COUNT();
	asm volatile("lea 1f(%%rip), %0\n1: outw %%ax, %%dx"
		     : "=&r"(rip) : "a"(0x1234), "d"(UNASSIGNED_PORT) : "memory");
	IO_CHECK("OUT DX, AX", IOIO_PORT(UNASSIGNED_PORT) | IOIO_A64 | IOIO_SZ16);

	n = IO_COUNT();
	asm volatile("lea 1f(%%rip), %0\n1: inl %%dx, %%eax"
		     : "=&r"(rip), "=a"(v) : "d"(UNASSIGNED_PORT) : "memory");
	IO_CHECK("IN EAX, DX", IOIO_PORT(UNASSIGNED_PORT) | IOIO_A64 | IOIO_SZ32 | IOIO_TYPE_IN);
	report(v == 0xffffffff, "IN EAX, DX of an unassigned port: %x", v);

	n = IO_COUNT();
	asm volatile("lea 1f(%%rip), %0\n1: outl %%eax, $0x80" : "=&r"(rip) : "a"(0) : "memory");
	IO_CHECK("OUT imm8, EAX", IOIO_PORT(POST_PORT) | IOIO_A64 | IOIO_SZ32);

	rcx = 3, rsi = (u64)buf;
	n = IO_COUNT();
	asm volatile("lea 1f(%%rip), %0\n1: rep outsb"
		     : "=&r"(rip), "+c"(rcx), "+S"(rsi) : "d"(POST_PORT) : "memory");
	IO_CHECK("REP OUTSB", IOIO_PORT(POST_PORT) | IOIO_A64 | IOIO_SZ8 | IOIO_REP | IOIO_STR);
	report(rcx == 0 && rsi == (u64)buf + 3, "REP OUTSB ran 3 times");

	memset(buf, 0x5a, 16);
	rcx = 2, rdi = (u64)buf;
	n = IO_COUNT();
	asm volatile("lea 1f(%%rip), %0\n1: rep insw"
		     : "=&r"(rip), "+c"(rcx), "+D"(rdi) : "d"(UNASSIGNED_PORT) : "memory");
	IO_CHECK("REP INSW", IOIO_PORT(UNASSIGNED_PORT) | IOIO_A64 | IOIO_SZ16 | IOIO_REP |
			     IOIO_STR | IOIO_TYPE_IN);
	report(rcx == 0 && rdi == (u64)buf + 4 && ((u32 *)buf)[0] == 0xffffffff && buf[4] == 0x5a,
	       "REP INSW stored 2 words of all ones");

	rdi = (u64)buf;
	n = IO_COUNT();
	asm volatile("lea 1f(%%rip), %0\n1: insl"
		     : "=&r"(rip), "+D"(rdi) : "d"(UNASSIGNED_PORT) : "memory");
	IO_CHECK("INSL", IOIO_PORT(UNASSIGNED_PORT) | IOIO_A64 | IOIO_SZ32 | IOIO_STR |
			 IOIO_TYPE_IN);
	report(rdi == (u64)buf + 4, "INSL stored a dword");

	/* An address-size prefix: ESI and ECX, and A32 in the EXITINFO1. */
	rcx = 2, rsi = (u64)buf;
	n = IO_COUNT();
	asm volatile("lea 1f(%%rip), %0\n1: addr32 rep outsb"
		     : "=&r"(rip), "+c"(rcx), "+S"(rsi) : "d"(POST_PORT) : "memory");
	IO_CHECK("ADDR32 REP OUTSB", IOIO_PORT(POST_PORT) | IOIO_A32 | IOIO_SZ8 | IOIO_REP |
				     IOIO_STR);
	report(rcx == 0 && rsi == (u64)buf + 2, "ADDR32 REP OUTSB ran twice");

	/* A REP form with a count of zero is handed over too, and does nothing. */
	rcx = 0, rdi = (u64)buf;
	n = IO_COUNT();
	asm volatile("lea 1f(%%rip), %0\n1: rep insb"
		     : "=&r"(rip), "+c"(rcx), "+D"(rdi) : "d"(UNASSIGNED_PORT) : "memory");
	IO_CHECK("REP INSB, count 0", IOIO_PORT(UNASSIGNED_PORT) | IOIO_A64 | IOIO_SZ8 | IOIO_REP |
				      IOIO_STR | IOIO_TYPE_IN);
	report(rdi == (u64)buf, "REP INSB with a count of zero stores nothing");
#undef IO_CHECK
#undef IO_COUNT
	report_prefix_pop();
}

/* The plugin raises an exception in place of an I/O instruction. */
static void test_io_fault(void)
{
	u8 *buf = alloc_page();
	u64 n, rcx = 4, rdi = (u64)buf;

	report_prefix_push("io fault");
	testdev(OP_IOIO_FAULT, VC_VECTOR, 0x7b, 0);
	asm volatile(ASM_TRY("1f") "outb %%al, $0x80\n1:" :: "a"(0) : "memory");
	/* ASM_TRY only catches a fault whose RIP is the instruction's. */
	report(exception_vector() == VC_VECTOR && exception_error_code() == 0x7b,
	       "OUT raises #VC with error code 0x7b (SVM_EXIT_IOIO) at the instruction");

	n = ioio_count();
	asm volatile(ASM_TRY("1f") "outb %%al, $0x80\n1:" :: "a"(0) : "memory");
	report(exception_vector() == -1 && ioio_count() == n + 1, "once: the next OUT runs");

	memset(buf, 0x5a, 8);
	testdev(OP_IOIO_FAULT, GP_VECTOR, 0, 0);
	asm volatile(ASM_TRY("1f") "rep insb\n1:"
		     : "+c"(rcx), "+D"(rdi) : "d"(UNASSIGNED_PORT) : "memory");
	report(exception_vector() == GP_VECTOR && exception_error_code() == 0,
	       "REP INSB raises #GP(0)");
	report(rcx == 4 && rdi == (u64)buf && buf[0] == 0x5a,
	       "before its first iteration: RCX %lx, RDI unchanged, memory unchanged", rcx);
	report_prefix_pop();
}

/* A HLT the plugin completes: no sleep, even with interrupts off. */
static void test_hlt_done(void)
{
	struct testdev_regs before = testdev_call(OP_HLTS, 0, 0, 0), after;
	u64 fb, fa;

	report_prefix_push("hlt done");
	testdev(OP_HLT_SKIP, 1, 0, 0);
	/* CMP leaves the flags to compute lazily: CF and SF set, ZF clear. */
	asm volatile("cli\n\t"
		     "cmpl $1, %k2\n\t"
		     "pushfq; popq %0\n\t"
		     "hlt\n\t"
		     "pushfq; popq %1"
		     : "=&r"(fb), "=&r"(fa) : "r"(0) : "cc", "memory");
	after = testdev_call(OP_HLTS, 0, 0, 0);
	report(after.rax == before.rax + 1 && after.rbx == 0, "cli; hlt returns: one HLT completed");
	report((fb & 1) && !((fb ^ fa) & ARITH_FLAGS), "arithmetic flags kept: %lx -> %lx",
	       fb & ARITH_FLAGS, fa & ARITH_FLAGS);
	report_prefix_pop();
}

static volatile int timer_ticks;

static void timer_handler(struct ex_regs *regs)
{
	(void)regs;
	timer_ticks++;
	wrmsr(MSR_X2APIC_EOI, 0);
}

/* A HLT nobody completes sleeps until an interrupt, as it always did. */
static void test_hlt_sleeps(void)
{
	u64 fb, fa;

	report_prefix_push("hlt");
	smp_init(); /* the x2APIC, software-enabled */
	handle_exception(TIMER_VECTOR, timer_handler);
	timer_ticks = 0;
	apic_timer_oneshot(TIMER_VECTOR, 0, 10 * 1000 * 1000); /* 10 ms */
	asm volatile("cmpl $1, %k2\n\t"
		     "pushfq; popq %0\n\t"
		     "sti; hlt; cli\n\t"
		     "pushfq; popq %1"
		     : "=&r"(fb), "=&r"(fa) : "r"(0) : "cc", "memory");
	report(timer_ticks == 1, "sti; hlt sleeps until the APIC timer fires (%d ticks)",
	       timer_ticks);
	report((fb & 1) && !((fb ^ fa) & ARITH_FLAGS), "arithmetic flags kept: %lx -> %lx",
	       fb & ARITH_FLAGS, fa & ARITH_FLAGS);
	handle_exception(TIMER_VECTOR, NULL);
	report_prefix_pop();
}

/* Runs an instruction given as bytes in the asm string; returns its vector. */
#define TRY_INSN(bytes)                                                       \
	({                                                                    \
		asm volatile(ASM_TRY("1f") bytes "\n1:" ::: "memory", "rax", \
			     "rcx", "rdx");                                   \
		exception_vector();                                           \
	})

static void test_declined(void)
{
	report_prefix_push("no test device");
	report(TRY_INSN(".byte 0x66, 0x0f, 0x01, 0xcc") == UD_VECTOR, "TDCALL raises #UD");
	if (cmdline_has("kvm")) {
		/* The plugin gives every VM type KVM's hypercall ABI. */
		u64 rax = 99;

		asm volatile("vmcall" : "+a"(rax) :: "memory");
		report(rax == -1000ul, "VMCALL is a KVM hypercall: unknown nr gives -KVM_ENOSYS");
	} else {
		report(TRY_INSN("vmcall") == UD_VECTOR, "VMCALL raises #UD");
	}
	report(TRY_INSN(".byte 0xf3, 0x0f, 0x01, 0xd9") == UD_VECTOR, "VMGEXIT raises #UD");
	report(TRY_INSN(".byte 0xf2, 0x0f, 0x01, 0xff") == UD_VECTOR, "PVALIDATE raises #UD");
	report(TRY_INSN(".byte 0xf3, 0x0f, 0x01, 0xfe") == UD_VECTOR, "RMPADJUST raises #UD");
	report(cpuid(TESTDEV_LEAF).a != 0x656d7663, "no CPUID override");
	report_prefix_pop();
}

int main(void)
{
	if (cmdline_has("panic")) {
		printf("INFO: reporting a fatal error\n");
		testdev(OP_HOST_PANIC, 0, 0, 0);
		report(false, "the vCPU runs on after its fatal error");
		return 0;
	}
	if (cmdline_has("no-testdev")) {
		test_declined();
		test_io(false);
		test_hlt_sleeps();
		return 0;
	}
	test_deny();
	test_page_walk();
	test_remap();
	test_retry();
	test_insns();
	test_host_services();
	test_io(true);
	test_io_fault();
	test_hlt_done();
	test_hlt_sleeps();
	return 0;
}
