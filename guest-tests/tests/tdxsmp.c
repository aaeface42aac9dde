/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tdxsmp: a TD converting and touching memory on several vCPUs at once
 * (MTTCG: one host thread per vCPU).
 *
 *  1. KVM's private_mem_conversions_test ranges, each CPU in its own area,
 *     all CPUs at once: MapGPA to shared and back, accept, contents
 *     discarded on every conversion, data written after it kept.
 *  2. A stress loop: every CPU flips its own pages between private and
 *     shared, writing a secret while private; the shared alias must never
 *     show a secret. Meanwhile all CPUs add to one counter on an always
 *     shared page with `lock xadd`: no write may be lost.
 *  3. TDVMCALL<HLT> with interrupts blocked (R12 = 1, IF clear) on CPU 1:
 *     its own timer interrupt does not wake it, an NMI from CPU 0 does.
 */
#include "libcflat.h"
#include "pci.h"
#include "conversions.h"
#include "tdx.h"

#define SZ_2M (2ul << 20)
#define AREA_SIZE (4 * SZ_2M)
#define SHARED_VA 0x200000000ul
#define STRESS_ROUNDS 40 /* -append rounds=N: more, for a longer stress */
#define STRESS_PAGES 8
#define COUNTER_ADDS 20000

static u64 shared_bit;
static int rounds = STRESS_ROUNDS;
static u8 *areas[MAX_CPUS];
static volatile u64 *counter; /* through the shared alias */
static volatile int failures[MAX_CPUS];

static void *shared_alias(u64 pa)
{
	return (void *)(SHARED_VA + pa);
}

static void map_shared(u64 pa, u64 len)
{
	for (u64 off = 0; off < len; off += PAGE_SIZE)
		install_page(boot_pml4(), SHARED_VA + pa + off, (pa + off) | shared_bit,
			     PT_PRESENT | PT_WRITABLE);
}

static bool accept_range(u64 pa, u64 len)
{
	for (u64 off = 0; off < len; off += PAGE_SIZE)
		if (tdx_accept_page(pa + off, 0) != 0)
			return false;
	return true;
}

static void conversions(void *unused)
{
	u8 *area = areas[smp_id()];
	u64 base = ptr_to_pa(area);
	u8 *sh = shared_alias(base);

	for (unsigned int i = 0; i < ARRAY_SIZE(conversion_ranges); i++) {
		u64 off = conversion_ranges[i].offset, size = conversion_ranges[i].size;

		memset(area, 0x11, AREA_SIZE);
		CPU_CHECK(tdx_map_gpa(base + off, size, true) == 0);
		CPU_CHECK(all_bytes(sh + off, size, 0));
		CPU_CHECK(all_bytes(area, off, 0x11));
		CPU_CHECK(all_bytes(area + off + size, AREA_SIZE - off - size, 0x11));
		memset(sh + off, 0x22, size);
		CPU_CHECK(all_bytes(sh + off, size, 0x22));
		CPU_CHECK(tdx_map_gpa(base + off, size, false) == 0);
		CPU_CHECK(accept_range(base + off, size));
		CPU_CHECK(all_bytes(area + off, size, 0));
		memset(area + off, 0x33, size);
		CPU_CHECK(all_bytes(area + off, size, 0x33));
	}
	(void)unused;
}

static void stress(void *unused)
{
	int id = smp_id();
	u64 base = ptr_to_pa(areas[id]);
	u8 *priv = areas[id], *sh = shared_alias(base);
	u8 secret = 0xc0 | id;

	for (int round = 0; round < rounds; round++) {
		u64 len = STRESS_PAGES * PAGE_SIZE;

		memset(priv, secret, len);
		CPU_CHECK(tdx_map_gpa(base, len, true) == 0);
		/* The private secret must never show through the shared alias. */
		for (u64 i = 0; i < len; i++)
			if (sh[i] == secret) {
				CPU_CHECK(sh[i] != secret);
				break;
			}
		memset(sh, round, len);
		for (int k = 0; k < COUNTER_ADDS / STRESS_ROUNDS; k++)
			__atomic_fetch_add(counter, 1, __ATOMIC_SEQ_CST);
		CPU_CHECK(all_bytes(sh, len, round));
		CPU_CHECK(tdx_map_gpa(base, len, false) == 0);
		CPU_CHECK(accept_range(base, len));
		CPU_CHECK(all_bytes(priv, len, 0));
	}
	(void)unused;
}

#define HALT_TIMER_VECTOR 0xe1
#define MS (1000 * 1000) /* QEMU's APIC timer counts nanoseconds */

static volatile int halt_state; /* 1: about to halt, 2: back, 3: refused */
static volatile int halt_nmis, halt_ticks;
static volatile int woke_nmis, woke_ticks; /* as CPU 1 saw them on its return */

static void halt_nmi(struct ex_regs *regs)
{
	(void)regs;
	halt_nmis++;
}

static void halt_timer(struct ex_regs *regs)
{
	(void)regs;
	halt_ticks++;
	wrmsr(MSR_X2APIC_EOI, 0);
}

/* CPU 1: its timer armed for 5 ms, then a halt that says IRQs are blocked. */
static void blocked_halt(void *unused)
{
	struct tdx_module_args a = { .r11 = EXIT_REASON_HLT, .r12 = 1 };
	u64 st;

	(void)unused;
	apic_timer_oneshot(HALT_TIMER_VECTOR, 0, 5 * MS);
	halt_state = 1;
	st = tdvmcall(&a);
	woke_nmis = halt_nmis;
	woke_ticks = halt_ticks;
	halt_state = st == 0 ? 2 : 3;
}

/* Spins on this CPU's APIC timer (masked: no interrupt) for @ns. */
static void wait_ns(u64 ns)
{
	apic_timer_oneshot(HALT_TIMER_VECTOR, APIC_LVT_MASKED, ns);
	while (rdmsr(MSR_X2APIC_TIMER_CURRENT))
		pause();
}

static void test_blocked_halt(void)
{
	report_prefix_push("TDVMCALL HLT, R12 = 1");
	handle_exception(NMI_VECTOR, halt_nmi);
	handle_exception(HALT_TIMER_VECTOR, halt_timer);
	on_cpu_async(1, blocked_halt, NULL);
	while (halt_state != 1)
		pause();
	wait_ns(50 * MS);
	report(halt_state == 1 && halt_nmis == 0 && halt_ticks == 0,
	       "CPU 1 stays halted when its timer fires (IF clear, interrupts blocked)");
	x2apic_icr_write(APIC_DM_NMI, cpu_apic_id(1));
	while (halt_state == 1)
		pause();
	report(halt_state == 2 && woke_nmis == 1 && woke_ticks == 0,
	       "an NMI wakes it; the timer interrupt waits for IF (%d NMI, %d ticks)", woke_nmis,
	       woke_ticks);
	on_cpus_wait();
	/* Back in its idle loop (sti; hlt) CPU 1 takes the timer interrupt. */
	wait_ns(10 * MS);
	report(halt_ticks == 1, "taken once CPU 1 sets IF (%d)", halt_ticks);
	handle_exception(NMI_VECTOR, NULL);
	handle_exception(HALT_TIMER_VECTOR, NULL);
	report_prefix_pop();
}

int main(void)
{
	int n = smp_cpus();

	rounds = (int)cmdline_u64("rounds", STRESS_ROUNDS);
	u64 counter_pa;
	int bad = 0;

	shared_bit = tdx_shared_mask();
	report(n >= 2, "%d vCPUs", n);
	/*
	 * The stress tests' control script (guest-tests/control/stress.sh)
	 * deletes, moves and re-creates the memslot of an ivshmem BAR this
	 * guest never touches: it finds the slot by this address.
	 */
	if (find_ivshmem() >= 0)
		printf("STRESS: ivshmem bar=%lx\n", pci_bar64(find_ivshmem(), PCI_BAR2));
	for (int i = 0; i < n; i++) {
		u64 pa = phys_alloc_pages_aligned(AREA_SIZE / PAGE_SIZE, SZ_2M);

		areas[i] = pa_to_ptr(pa);
		map_shared(pa, AREA_SIZE);
	}
	counter_pa = ptr_to_pa(alloc_page());
	report(tdx_map_gpa(counter_pa, PAGE_SIZE, true) == 0, "counter page shared");
	map_shared(counter_pa, PAGE_SIZE);
	counter = shared_alias(counter_pa);
	*counter = 0;

	on_cpus(conversions, NULL);
	for (int i = 0; i < n; i++)
		bad += failures[i];
	report(bad == 0, "conversion ranges on %d vCPUs at once: %d failed checks", n, bad);

	on_cpus(stress, NULL);
	bad = 0;
	for (int i = 0; i < n; i++)
		bad += failures[i];
	report(bad == 0, "flip stress: no secret through the shared alias (%d failed checks)",
	       bad);
	report(*counter == (u64)n * (COUNTER_ADDS / STRESS_ROUNDS) * (u64)rounds,
	       "shared counter: %lu adds, none lost", *counter);
	test_blocked_halt();
	return 0;
}
