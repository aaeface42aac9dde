// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * smp.c: per-CPU areas, AP bring-up and on_cpu().
 *
 * Every CPU's GS base points at its struct percpu (internal.h). smp_init()
 * puts the BSP's local APIC in x2APIC mode, copies boot.S's real-mode
 * trampoline to AP_TRAMPOLINE_PA and sends INIT, SIPI, SIPI to all but
 * itself through the x2APIC ICR (MSR 0x830): no access to the xAPIC MMIO
 * page, which a TDX guest could only reach through a shared alias. Each AP
 * comes up in boot.S's ap_start64 on the boot page tables, takes a slot
 * and a stack, and lands in ap_main(): per-CPU area, IDT, in an SNP guest
 * its GHCB (prepared by smp_init(), registered by the AP before its first
 * intercepted instruction), x2APIC, then the idle loop. Work reaches it through its per-CPU mailbox plus a fixed IPI
 * (SMP_IPI_VECTOR) that wakes it from hlt.
 */
#include "internal.h"
#include "fw_cfg.h"

#define AP_STACK_SIZE (32 * 1024)
/* How long smp_init() waits for the APs, in TSC ticks (TCG: the host's TSC). */
#define AP_WAIT_TICKS (20ul * 1000 * 1000 * 1000)
#define CPUID_1_ECX_X2APIC (1u << 21)

_Static_assert(__builtin_offsetof(struct percpu, self) == 0, "this_cpu() reads %gs:0");
_Static_assert(__builtin_offsetof(struct percpu, ex_last_vector) == PERCPU_EX_LAST_VECTOR,
	       "ASM_TRY writes %gs:PERCPU_EX_LAST_VECTOR");
_Static_assert(__builtin_offsetof(struct percpu, id) == PERCPU_ID, "smp_id() reads %gs:PERCPU_ID");

struct percpu percpu_area[MAX_CPUS];
int smp_online_cpus = 1;

/* Read by boot.S's ap_start64. */
u32 ap_arrived;              /* APs that took a slot */
u32 ap_slots;                /* slots 0..ap_slots-1 exist; 0 is the BSP's */
u64 ap_stack_tops[MAX_CPUS]; /* by slot; 0: no stack */

extern const char ap_trampoline[], ap_trampoline_end[];

static struct percpu *cpus[MAX_CPUS]; /* by smp_id() */
static int nr_cpus;                   /* smp_cpus(), once read */
static bool smp_up;

static void percpu_setup(int slot)
{
	struct percpu *p = &percpu_area[slot];

	p->self = p;
	p->ex_last_vector = -1;
	p->id = slot ? -1 : 0; /* APs: numbered once all are up */
}

static void percpu_load(struct percpu *p)
{
	wrmsr(MSR_GS_BASE, (u64)(uintptr_t)p);
}

void percpu_init_bsp(void)
{
	percpu_setup(0);
	percpu_load(&percpu_area[0]);
	cpus[0] = &percpu_area[0];
}

int smp_cpus(void)
{
	/* Only CPU 0 runs before smp_init(), which reads it first: no race
	 * on the fw_cfg selector. */
	if (!nr_cpus) {
		u16 n = 0;

		if (fw_cfg_present())
			fw_cfg_read(FW_CFG_NB_CPUS, &n, sizeof(n));
		nr_cpus = n ? n : 1;
	}
	return nr_cpus;
}

u32 apic_id(void)
{
	/* Leaf 0xB is valid if subleaf 0 reports logical processors (EBX). */
	if (cpuid(0).a >= 0xb && (cpuid_indexed(0xb, 0).b & 0xffff))
		return cpuid_indexed(0xb, 0).d;
	return cpuid(1).b >> 24;
}

u32 cpu_apic_id(int cpu)
{
	if (cpu < 0 || cpu >= smp_online_cpus) {
		printf("cpu_apic_id: no CPU %d (%d online)\n", cpu, smp_online_cpus);
		abort();
	}
	return cpus[cpu]->apic_id;
}

bool x2apic_enable(void)
{
	u64 base;

	if (!(cpuid(1).c & CPUID_1_ECX_X2APIC))
		return false;
	base = rdmsr(MSR_IA32_APICBASE);
	if ((base & (APICBASE_EN | APICBASE_EXTD)) == (APICBASE_EN | APICBASE_EXTD))
		return true; /* e.g. a TDX guest: the TDX module starts it there */
	/* Disabled -> x2APIC is not a valid transition: go through xAPIC. */
	if (!(base & APICBASE_EN))
		wrmsr(MSR_IA32_APICBASE, base | APICBASE_EN);
	wrmsr(MSR_IA32_APICBASE, base | APICBASE_EN | APICBASE_EXTD);
	return true;
}

static void apic_sw_enable(void)
{
	wrmsr(MSR_X2APIC_SVR, APIC_SVR_ENABLE | APIC_SPURIOUS_VECTOR);
}

/* The wake-up IPI: the idle loop does the work once hlt returns. */
static void smp_ipi_handler(struct ex_regs *regs)
{
	(void)regs;
	wrmsr(MSR_X2APIC_EOI, 0);
}

/* A spurious interrupt takes no EOI. */
static void spurious_handler(struct ex_regs *regs)
{
	(void)regs;
}

static __attribute__((noreturn)) void ap_idle(struct percpu *cpu)
{
	for (;;) {
		void (*fn)(void *) = __atomic_load_n(&cpu->fn, __ATOMIC_ACQUIRE);

		if (!fn) {
			/*
			 * sti's shadow covers hlt: an IPI that arrived since
			 * the load (pending while IF was clear) ends this hlt.
			 */
			asm volatile("sti; hlt; cli" ::: "memory");
			continue;
		}
		cpu->fn = NULL;
		fn(cpu->arg);
		cli(); /* fn may have set IF */
		__atomic_store_n(&cpu->done, cpu->done + 1, __ATOMIC_RELEASE);
		__atomic_store_n(&cpu->busy, 0, __ATOMIC_RELEASE);
	}
}

void ap_main(int slot)
{
	struct percpu *cpu = &percpu_area[slot];

	percpu_load(cpu);
	idt_load();
	snp_init_ap(cpu); /* before the first CPUID, MSR or port access */
	x2apic_enable(); /* smp_init() checked CPUID on the BSP */
	apic_sw_enable();
	cpu->apic_id = apic_id();
	__atomic_store_n(&cpu->online, true, __ATOMIC_RELEASE);
	ap_idle(cpu);
}

static int aps_online(int n)
{
	int online = 0;

	for (int slot = 1; slot < n; slot++)
		online += __atomic_load_n(&percpu_area[slot].online, __ATOMIC_ACQUIRE);
	return online;
}

void smp_init(void)
{
	size_t tramp_size = (size_t)(ap_trampoline_end - ap_trampoline);
	int n, online;
	u64 start;

	if (smp_up)
		return;
	if (smp_id() != 0) {
		printf("smp_init: called on CPU %d, not the BSP\n", smp_id());
		abort();
	}
	n = smp_cpus();
	if (n > MAX_CPUS) {
		printf("smp_init: %d CPUs, more than MAX_CPUS (%d)\n", n, MAX_CPUS);
		abort();
	}
	if (!x2apic_enable()) {
		report(false, "smp_init: no x2APIC (CPUID.1:ECX[21] clear)");
		exit(1);
	}
	apic_sw_enable();
	percpu_area[0].apic_id = apic_id();
	handle_exception(SMP_IPI_VECTOR, smp_ipi_handler);
	handle_exception(APIC_SPURIOUS_VECTOR, spurious_handler);
	if (n == 1) {
		smp_up = true;
		return;
	}

	for (int slot = 1; slot < n; slot++) {
		u64 pa = phys_alloc_pages(AP_STACK_SIZE / PAGE_SIZE);

		if (!pa) {
			printf("smp_init: no memory for the stack of AP %d\n", slot);
			abort();
		}
		percpu_setup(slot);
		ap_stack_tops[slot] = pa + AP_STACK_SIZE;
		snp_prepare_ap(slot);
	}
	ap_arrived = 0;
	ap_slots = (u32)n;
	memcpy(pa_to_ptr(AP_TRAMPOLINE_PA), ap_trampoline, tramp_size);
	asm volatile("mfence" ::: "memory");

	/* INIT, then two SIPIs as the MP spec has it; QEMU needs no delays. */
	x2apic_icr_write(APIC_DEST_ALLBUT | APIC_DM_INIT | APIC_INT_ASSERT, 0);
	x2apic_icr_write(APIC_DEST_ALLBUT | APIC_DM_STARTUP | (u32)(AP_TRAMPOLINE_PA >> 12), 0);
	x2apic_icr_write(APIC_DEST_ALLBUT | APIC_DM_STARTUP | (u32)(AP_TRAMPOLINE_PA >> 12), 0);

	start = rdtsc();
	while ((online = aps_online(n)) < n - 1) {
		if (rdtsc() - start > AP_WAIT_TICKS) {
			report(false, "smp_init: %d of %d APs came up (%u took a slot)",
			       online, n - 1, __atomic_load_n(&ap_arrived, __ATOMIC_RELAXED));
			exit(1);
		}
		pause();
	}

	/* Number the APs by x2APIC ID (insertion sort of slots 1..n-1). */
	for (int slot = 1; slot < n; slot++) {
		struct percpu *p = &percpu_area[slot];
		int i = slot;

		while (i > 1 && cpus[i - 1]->apic_id > p->apic_id) {
			cpus[i] = cpus[i - 1];
			i--;
		}
		cpus[i] = p;
	}
	for (int i = 1; i < n; i++)
		cpus[i]->id = i;
	__atomic_store_n(&smp_online_cpus, n, __ATOMIC_RELEASE);
	smp_up = true;
}

static struct percpu *target_cpu(int cpu, const char *who)
{
	smp_init();
	if (cpu < 0 || cpu >= smp_online_cpus) {
		printf("%s: no CPU %d (%d online)\n", who, cpu, smp_online_cpus);
		abort();
	}
	if (cpu == 0) {
		printf("%s: CPU 0 runs main() and takes no work from CPU %d\n", who, smp_id());
		abort();
	}
	return cpus[cpu];
}

/* Claims cpu's mailbox, posts fn and wakes it; returns the ticket to wait for. */
static u64 post(struct percpu *c, void (*fn)(void *), void *arg)
{
	int idle;
	u64 ticket;

	for (;;) {
		idle = 0;
		if (__atomic_compare_exchange_n(&c->busy, &idle, 1, false, __ATOMIC_ACQUIRE,
						__ATOMIC_RELAXED))
			break;
		pause();
	}
	ticket = __atomic_load_n(&c->done, __ATOMIC_ACQUIRE) + 1;
	c->arg = arg;
	__atomic_store_n(&c->fn, fn, __ATOMIC_RELEASE);
	x2apic_icr_write(APIC_DM_FIXED | SMP_IPI_VECTOR, c->apic_id);
	return ticket;
}

static void wait_done(struct percpu *c, u64 ticket)
{
	while (__atomic_load_n(&c->done, __ATOMIC_ACQUIRE) < ticket)
		pause();
}

void on_cpu_async(int cpu, void (*fn)(void *), void *arg)
{
	if (cpu == smp_id()) {
		fn(arg);
		return;
	}
	post(target_cpu(cpu, "on_cpu_async"), fn, arg);
}

void on_cpu(int cpu, void (*fn)(void *), void *arg)
{
	struct percpu *c;

	if (cpu == smp_id()) {
		fn(arg);
		return;
	}
	c = target_cpu(cpu, "on_cpu");
	wait_done(c, post(c, fn, arg));
}

void on_cpus(void (*fn)(void *), void *arg)
{
	u64 tickets[MAX_CPUS];

	smp_init();
	if (smp_id() != 0) {
		printf("on_cpus: called on CPU %d; only CPU 0 can include itself and CPU 0\n",
		       smp_id());
		abort();
	}
	for (int cpu = 1; cpu < smp_online_cpus; cpu++)
		tickets[cpu] = post(cpus[cpu], fn, arg);
	fn(arg);
	for (int cpu = 1; cpu < smp_online_cpus; cpu++)
		wait_done(cpus[cpu], tickets[cpu]);
}

int cpus_active(void)
{
	int active = 0;

	for (int cpu = 1; cpu < smp_online_cpus; cpu++)
		if (cpu != smp_id() && __atomic_load_n(&cpus[cpu]->busy, __ATOMIC_ACQUIRE))
			active++;
	return active;
}

void on_cpus_wait(void)
{
	while (cpus_active())
		pause();
}
