// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * desc.c: the IDT and exception dispatch.
 *
 * Every vector goes through isr.S to exception_dispatch(), which picks, in
 * order: the handler a test installed, an ASM_TRY fixup for the faulting
 * RIP, or the default handler (print everything, report a failure, exit).
 * One IDT and one handler table serve every CPU; what ASM_TRY records is
 * per CPU (struct percpu).
 */
#include "internal.h"

struct idt_entry {
	u16 offset_lo;
	u16 selector;
	u8 ist;
	u8 type_attr;
	u16 offset_mid;
	u32 offset_hi;
	u32 reserved;
} __attribute__((packed));

struct ex_table_entry {
	u64 insn_rip;
	u64 fixup_rip;
};

/* Interrupt gate (IF cleared on entry), present, DPL 0. */
#define IDT_TYPE_INTR_GATE 0x8e
#define ISR_STUB_SIZE 16

extern const char isr_stubs[];
extern const struct ex_table_entry __ex_table_start[], __ex_table_end[];

static struct idt_entry idt[256] __attribute__((aligned(16)));
static ex_handler_t handlers[256];

u64 exception_error_code(void) { return this_cpu()->ex_last_error_code; }
u64 exception_cr2(void) { return this_cpu()->ex_last_cr2; }

bool exception_has_error_code(int vector)
{
	switch (vector) {
	case DF_VECTOR:
	case TS_VECTOR:
	case NP_VECTOR:
	case SS_VECTOR:
	case GP_VECTOR:
	case PF_VECTOR:
	case AC_VECTOR:
	case CP_VECTOR:
	case VC_VECTOR:
	case SX_VECTOR:
		return true; /* keep in sync with HAS_ERROR_CODE in isr.S */
	default:
		return false;
	}
}

const char *exception_mnemonic(int vector)
{
	static const char *const names[32] = {
		"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM",
		"#DF", "", "#TS", "#NP", "#SS", "#GP", "#PF", "",
		"#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "", "",
		"", "", "", "", "#HV", "#VC", "#SX", "",
	};

	return vector >= 0 && vector < 32 ? names[vector] : "";
}

void idt_load(void)
{
	struct {
		u16 limit;
		u64 base;
	} __attribute__((packed)) idtr = { sizeof(idt) - 1, (u64)(uintptr_t)idt };

	asm volatile("lidt %0" :: "m"(idtr));
}

/*
 * Ends the run in a triple fault: with an empty IDT the ud2's #UD cannot be
 * delivered (#GP), nor can that #GP (#DF), nor the #DF: the CPU shuts down,
 * and QEMU reports a triple fault whose undeliverable exception is #GP.
 */
void triple_fault(void)
{
	struct {
		u16 limit;
		u64 base;
	} __attribute__((packed)) empty = { 0, 0 };

	asm volatile("cli; lidt %0; ud2" :: "m"(empty));
	for (;;)
		;
}

void idt_init(void)
{
	for (int v = 0; v < 256; v++) {
		u64 rip = (u64)(uintptr_t)isr_stubs + (u64)v * ISR_STUB_SIZE;

		idt[v] = (struct idt_entry){
			.offset_lo = (u16)rip,
			.selector = KERNEL_CS,
			.type_attr = IDT_TYPE_INTR_GATE,
			.offset_mid = (u16)(rip >> 16),
			.offset_hi = (u32)(rip >> 32),
		};
	}
	idt_load();
}

ex_handler_t handle_exception(int vector, ex_handler_t fn)
{
	ex_handler_t old;

	if (vector < 0 || vector > 255) {
		printf("handle_exception: bad vector %d\n", vector);
		abort();
	}
	/* Other CPUs may dispatch concurrently: one atomic pointer store. */
	old = __atomic_exchange_n(&handlers[vector], fn, __ATOMIC_SEQ_CST);
	return old;
}

static bool run_fixup(struct ex_regs *regs, u64 cr2)
{
	for (const struct ex_table_entry *e = __ex_table_start; e < __ex_table_end; e++) {
		if (e->insn_rip != regs->rip)
			continue;
		struct percpu *cpu = this_cpu();

		cpu->ex_last_error_code = regs->error_code;
		cpu->ex_last_cr2 = cr2;
		cpu->ex_last_vector = (int)regs->vector;
		regs->rip = e->fixup_rip;
		return true;
	}
	return false;
}

static void dump_regs(const struct ex_regs *r)
{
	printf("rax=%016lx rbx=%016lx rcx=%016lx rdx=%016lx\n", r->rax, r->rbx, r->rcx, r->rdx);
	printf("rsi=%016lx rdi=%016lx rbp=%016lx rsp=%016lx\n", r->rsi, r->rdi, r->rbp, r->rsp);
	printf("r8 =%016lx r9 =%016lx r10=%016lx r11=%016lx\n", r->r8, r->r9, r->r10, r->r11);
	printf("r12=%016lx r13=%016lx r14=%016lx r15=%016lx\n", r->r12, r->r13, r->r14, r->r15);
	printf("rip=%016lx cs=%04lx rflags=%08lx ss=%04lx cr0=%lx cr3=%lx cr4=%lx\n",
	       r->rip, r->cs, r->rflags, r->ss, read_cr0(), read_cr3(), read_cr4());
}

static void unhandled_exception(struct ex_regs *regs, u64 cr2)
{
	struct percpu *cpu = this_cpu();
	int v = (int)regs->vector;

	if (cpu->in_unhandled) {
		/* Faulted while reporting a fault: don't risk a loop. */
		printf("\nnested unhandled exception %d at rip=%lx on cpu %d\n", v, regs->rip,
		       cpu->id);
		outl(1, 0xf4);
		for (;;)
			hlt();
	}
	cpu->in_unhandled = true;
	/* The whole dump in one piece, even if other CPUs print. */
	console_lock();
	printf("\nUnhandled exception %d %s", v, exception_mnemonic(v));
	if (exception_has_error_code(v))
		printf(" error_code=%lx", regs->error_code);
	printf(" rip=%lx cr2=%lx", regs->rip, cr2);
	if (smp_online_cpus > 1)
		printf(" on cpu %d (x2APIC ID %u)", cpu->id, cpu->apic_id);
	printf("\n");
	/*
	 * A CPU that pushes no error code where isr.S expects one (or the
	 * reverse) shifts the whole frame by a slot; CS is where that shows.
	 */
	if (regs->cs != KERNEL_CS)
		printf("note: saved CS is %lx, not %x: the frame is probably shifted "
		       "(CPU and isr.S disagree on whether vector %d pushes an error code; "
		       "if the CPU pushed none, the real rip is %lx)\n",
		       regs->cs, KERNEL_CS, v, regs->error_code);
	dump_regs(regs);
	if (v == VE_VECTOR)
		tdx_dump_ve();
	console_unlock();
	report(false, "unhandled exception %d %s at rip=%lx", v, exception_mnemonic(v), regs->rip);
	exit(1);
}

void exception_dispatch(struct ex_regs *regs)
{
	/* Read CR2 first: anything below may fault and overwrite it. */
	u64 cr2 = read_cr2();
	ex_handler_t fn = __atomic_load_n(&handlers[regs->vector], __ATOMIC_ACQUIRE);

	/* user_run()'s instruction at CPL 3 (user.c). */
	if ((regs->cs & 3) == 3 && user_exception(regs))
		return;

	/*
	 * An SNP guest's #VC, a TD's #VE: the runtime emulates what it knows
	 * (snp.c, tdx.c); anything else (e.g. a page not validated or not
	 * accepted) may be an ASM_TRY. A TD's #VE handling must read the VE
	 * information before anything here may print (tdx.c).
	 */
	if (fn)
		fn(regs);
	else if (regs->vector == VC_VECTOR && snp_handle_vc(regs))
		;
	else if (regs->vector == VE_VECTOR && tdx_ve_entry(regs))
		;
	else if (!run_fixup(regs, cr2))
		unhandled_exception(regs, cr2);
}
