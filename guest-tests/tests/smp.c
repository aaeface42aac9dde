// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * smp: the runtime's multi-processor support (run with -smp 4).
 *
 *  - smp_cpus() matches -smp (fw_cfg) and every CPU comes up: each writes
 *    its smp_id() and x2APIC ID into a shared array;
 *  - on_cpu() runs a function on one AP and waits; on_cpu_async() and
 *    on_cpus_wait() run on all APs at once;
 *  - a counter incremented with `lock xadd` by every CPU at once (MTTCG)
 *    ends at ncpus * 100000;
 *  - ASM_TRY and the exception handlers work on an AP: a #GP and a #PF
 *    taken there are recorded per CPU, not on CPU 0;
 *  - report() from several CPUs at once keeps lines and counts whole.
 *
 * With `-append fail-ap-exception` an AP runs an unhandled ud2 at the end,
 * which must fail the run (QEMU exit status 3) like one on CPU 0.
 */
#include "libcflat.h"

#define EXPECTED_CPUS 4
#define COUNT_PER_CPU 100000
#define UNMAPPED_VA 0x8000000000ul /* PML4 slot 1: not mapped */

static int ncpus;
static volatile int seen_id[MAX_CPUS];
static volatile u32 seen_apic[MAX_CPUS];
static volatile u64 counter;

static void record_id(void *arg)
{
	(void)arg;
	seen_id[smp_id()] = smp_id() + 1; /* 0: not seen */
	seen_apic[smp_id()] = apic_id();
}

static void test_bring_up(void)
{
	bool ids_ok = true, apic_ok = true;

	report_prefix_push("bring-up");
	report(ncpus == EXPECTED_CPUS, "smp_cpus() is %d (-smp %d)", ncpus, EXPECTED_CPUS);
	report(smp_id() == 0, "main() runs on CPU 0");
	smp_init();
	for (int cpu = 1; cpu < ncpus; cpu++)
		on_cpu_async(cpu, record_id, NULL);
	record_id(NULL);
	on_cpus_wait();
	for (int cpu = 0; cpu < ncpus; cpu++) {
		if (seen_id[cpu] != cpu + 1)
			ids_ok = false;
		if (seen_apic[cpu] != cpu_apic_id(cpu) || (cpu && seen_apic[cpu] <= seen_apic[cpu - 1]))
			apic_ok = false;
		report_info("CPU %d: x2APIC ID %u", cpu, seen_apic[cpu]);
	}
	report(ids_ok, "every CPU ran and wrote its own id");
	report(apic_ok, "x2APIC IDs are distinct and increase with the CPU number");
	report(cpus_active() == 0, "no CPU busy after on_cpus_wait()");
	report((rdmsr(MSR_IA32_APICBASE) & (APICBASE_EN | APICBASE_EXTD)) ==
	       (APICBASE_EN | APICBASE_EXTD), "CPU 0 is in x2APIC mode");
	report_prefix_pop();
}

static void add_counter(void *arg)
{
	u64 one = 1;

	(void)arg;
	for (int i = 0; i < COUNT_PER_CPU; i++) {
		u64 v = one;

		asm volatile("lock xaddq %0, %1" : "+r"(v), "+m"(counter) :: "memory");
	}
}

static void test_counter(void)
{
	counter = 0;
	on_cpus(add_counter, NULL);
	report(counter == (u64)ncpus * COUNT_PER_CPU, "lock xadd counter: %lu, want %lu",
	       counter, (u64)ncpus * COUNT_PER_CPU);
}

struct on_cpu_check {
	int ran_on;
	u64 value;
};

static void on_cpu_fn(void *arg)
{
	struct on_cpu_check *c = arg;

	c->ran_on = smp_id();
	c->value *= 3;
}

static void test_on_cpu(void)
{
	bool ok = true;

	for (int cpu = 0; cpu < ncpus; cpu++) {
		struct on_cpu_check c = { -1, 7 };

		on_cpu(cpu, on_cpu_fn, &c);
		if (c.ran_on != cpu || c.value != 21) {
			report_info("on_cpu(%d): ran on %d, value %lu", cpu, c.ran_on, c.value);
			ok = false;
		}
	}
	report(ok, "on_cpu() runs on the CPU asked for and waits for it");
}

struct fault_result {
	int gp_vector, pf_vector, ok_vector;
	u64 pf_cr2;
};

static struct fault_result fault_results[MAX_CPUS];

static void take_faults(void *arg)
{
	struct fault_result *r = &fault_results[smp_id()];
	u64 v;

	(void)arg;
	asm volatile(ASM_TRY("1f") "mov %w0, %%fs\n1:" :: "r"(0x1234) : "memory");
	r->gp_vector = exception_vector();
	asm volatile(ASM_TRY("1f") "movq (%1), %0\n1:" : "=r"(v) : "r"(UNMAPPED_VA) : "memory");
	r->pf_vector = exception_vector();
	r->pf_cr2 = exception_cr2();
	asm volatile(ASM_TRY("1f") "movq (%1), %0\n1:" : "=r"(v) : "r"(&counter) : "memory");
	r->ok_vector = exception_vector();
}

static void test_exceptions(void)
{
	bool ok = true;
	int v;

	report_prefix_push("ASM_TRY");
	/* CPU 0's own record: a #UD, which the APs' tries must not change. */
	asm volatile(ASM_TRY("1f") "ud2\n1:" ::: "memory");
	for (int cpu = 1; cpu < ncpus; cpu++)
		on_cpu_async(cpu, take_faults, NULL);
	on_cpus_wait();
	v = exception_vector();
	report(v == UD_VECTOR, "CPU 0's record is its own (vector %d)", v);
	take_faults(NULL);
	for (int cpu = 0; cpu < ncpus; cpu++) {
		struct fault_result *r = &fault_results[cpu];

		if (r->gp_vector != GP_VECTOR || r->pf_vector != PF_VECTOR ||
		    r->pf_cr2 != UNMAPPED_VA || r->ok_vector != -1) {
			report_info("CPU %d: #GP try %d, #PF try %d cr2 %lx, no-fault try %d", cpu,
				    r->gp_vector, r->pf_vector, r->pf_cr2, r->ok_vector);
			ok = false;
		}
	}
	report(ok, "#GP and #PF on every CPU are caught and recorded");
	report_prefix_pop();
}

static volatile int ud_on[MAX_CPUS];

static void ud_handler(struct ex_regs *regs)
{
	ud_on[smp_id()]++;
	regs->rip += 2;
}

static void do_ud(void *arg)
{
	(void)arg;
	asm volatile("ud2" ::: "memory");
}

static void test_handlers(void)
{
	bool ok = true;

	handle_exception(UD_VECTOR, ud_handler);
	on_cpus(do_ud, NULL);
	handle_exception(UD_VECTOR, NULL);
	for (int cpu = 0; cpu < ncpus; cpu++)
		ok &= ud_on[cpu] == 1;
	report(ok, "an installed #UD handler runs on the CPU that took the #UD");
}

static void report_from(void *arg)
{
	(void)arg;
	for (int i = 0; i < 5; i++)
		report(true, "report %d from CPU %d", i, smp_id());
}

static void test_reports(void)
{
	struct report_stats before = report_stats(), after;

	on_cpus(report_from, NULL);
	after = report_stats();
	report(after.tests - before.tests == 5u * (unsigned int)ncpus,
	       "%d CPUs reporting at once: %u reports counted", ncpus,
	       after.tests - before.tests);
}

int main(void)
{
	ncpus = smp_cpus();
	test_bring_up();
	if (ncpus < 2) {
		report_skip("one CPU: nothing more to test");
		return 0;
	}
	test_on_cpu();
	test_counter();
	test_exceptions();
	test_handlers();
	test_reports();
	if (cmdline_has("fail-ap-exception"))
		on_cpu(ncpus - 1, do_ud, NULL); /* no handler: the run fails here */
	return 0;
}
