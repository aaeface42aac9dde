/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * snpsmp: an SNP guest converting and touching memory on several vCPUs at
 * once (MTTCG: one host thread per vCPU), each through its own GHCB.
 *
 *  1. KVM's private_mem_conversions_test ranges, each CPU in its own area,
 *     all CPUs at once: rescind + page-state change to shared, then
 *     page-state change to private + PVALIDATE (Linux's order), contents
 *     discarded on every conversion, data written after it kept.
 *  2. A stress loop: every CPU flips its own pages between private and
 *     shared, writing a secret while private; the shared alias must never
 *     show a secret. Meanwhile all CPUs add to one counter on an always
 *     shared page with `lock xadd`: no write may be lost. Every CPU also
 *     takes #VCs (CPUID) while the others convert.
 *
 * Before both, a rescind on CPU 0 of a page CPU 1 has read: CPU 1's next
 * read must fault, its cached translation flushed.
 */
#include "libcflat.h"
#include "pci.h"
#include "conversions.h"
#include "snp.h"

#define SZ_2M (2ul << 20)
#define AREA_SIZE (4 * SZ_2M)
#define SHARED_VA 0x200000000ul
#define STRESS_ROUNDS 40 /* -append rounds=N: more, for a longer stress */
#define STRESS_PAGES 8
#define COUNTER_ADDS 20000

static int rounds = STRESS_ROUNDS;
static u8 *areas[MAX_CPUS];
static volatile u64 *counter; /* through the shared alias */
static volatile int failures[MAX_CPUS];
static u32 cpuid0_a;

static void *shared_alias(u64 pa)
{
	return (void *)(SHARED_VA + pa);
}

/* Maps [pa, pa + len) without the C-bit at SHARED_VA + pa. */
static void map_shared(u64 pa, u64 len)
{
	for (u64 off = 0; off < len; off += PAGE_SIZE)
		install_page(boot_pml4(), SHARED_VA + pa + off, pa + off, PT_PRESENT | PT_WRITABLE);
}

/*
 * A rescind on one vCPU reaches the translation another vCPU has cached
 * (QEMU flushes that vCPU, on its own thread, before it runs on).
 */
static u64 remote_pa;
static volatile int remote_vector;
static volatile u64 remote_value, remote_code;

static void touch_remote_page(void *unused)
{
	u64 v = 0;

	asm volatile(ASM_TRY("1f") "movq (%1), %0\n1:" : "+r"(v) : "r"(pa_to_ptr(remote_pa)) : "memory");
	remote_vector = exception_vector();
	remote_code = remote_vector == VC_VECTOR ? exception_error_code() : 0;
	remote_value = v;
	(void)unused;
}

static void test_remote_rescind(void)
{
	remote_pa = ptr_to_pa(alloc_page());
	*(volatile u64 *)pa_to_ptr(remote_pa) = 0x5e7ec7;
	on_cpu(1, touch_remote_page, NULL);
	report(remote_vector == -1 && remote_value == 0x5e7ec7, "CPU 1 reads a private page");
	report(pvalidate(remote_pa, RMP_PG_SIZE_4K, false) == 0, "CPU 0 rescinds it");
	on_cpu(1, touch_remote_page, NULL);
	report(remote_vector == VC_VECTOR && remote_code == SVM_EXIT_PAGE_NOT_VALIDATED,
	       "CPU 1's cached translation is gone: #VC 0x404 (vector %d, %lx)", remote_vector,
	       remote_code);
	report(pvalidate(remote_pa, RMP_PG_SIZE_4K, true) == 0, "CPU 0 validates it again");
	on_cpu(1, touch_remote_page, NULL);
	report(remote_vector == -1 && remote_value == 0x5e7ec7, "CPU 1 reads it again");
}

static void conversions(void *unused)
{
	u8 *area = areas[smp_id()];
	u64 base = ptr_to_pa(area);
	u8 *sh = shared_alias(base);

	for (unsigned int i = 0; i < ARRAY_SIZE(conversion_ranges); i++) {
		u64 off = conversion_ranges[i].offset, size = conversion_ranges[i].size;
		u64 npages = size / PAGE_SIZE;

		memset(area, 0x11, AREA_SIZE);
		CPU_CHECK(snp_make_shared((u64)area + off, base + off, npages) == 0);
		CPU_CHECK(all_bytes(sh + off, size, 0));
		CPU_CHECK(all_bytes(area, off, 0x11));
		CPU_CHECK(all_bytes(area + off + size, AREA_SIZE - off - size, 0x11));
		memset(sh + off, 0x22, size);
		CPU_CHECK(all_bytes(sh + off, size, 0x22));
		CPU_CHECK(snp_make_private((u64)area + off, base + off, npages) == 0);
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
	u64 len = STRESS_PAGES * PAGE_SIZE;

	for (int round = 0; round < rounds; round++) {
		memset(priv, secret, len);
		/* Alternate the MSR protocol and the GHCB page for the change. */
		if (round & 1) {
			CPU_CHECK(snp_make_shared((u64)priv, base, STRESS_PAGES) == 0);
		} else {
			CPU_CHECK(snp_pvalidate_range((u64)priv, STRESS_PAGES, false, false, false) == 0);
			for (u64 p = 0; p < STRESS_PAGES; p++)
				CPU_CHECK(snp_page_state_change_msr(base + p * PAGE_SIZE,
								SNP_PAGE_STATE_SHARED) == 0);
		}
		/* The private secret must never show through the shared alias. */
		for (u64 i = 0; i < len; i++)
			if (sh[i] == secret) {
				CPU_CHECK(sh[i] != secret);
				break;
			}
		memset(sh, round, len);
		for (int k = 0; k < COUNTER_ADDS / STRESS_ROUNDS; k++)
			__atomic_fetch_add(counter, 1, __ATOMIC_SEQ_CST);
		CPU_CHECK(cpuid(0).a == cpuid0_a); /* a #VC while the others convert */
		CPU_CHECK(all_bytes(sh, len, round));
		CPU_CHECK(snp_make_private((u64)priv, base, STRESS_PAGES) == 0);
		CPU_CHECK(all_bytes(priv, len, 0));
	}
	(void)unused;
}

int main(void)
{
	int n = smp_cpus();

	rounds = (int)cmdline_u64("rounds", STRESS_ROUNDS);
	u64 counter_pa;
	int bad = 0;

	report(is_snp_guest(), "SNP guest");
	report(n >= 2, "%d vCPUs", n);
	/*
	 * The stress tests' control script (guest-tests/control/stress.sh)
	 * deletes, moves and re-creates the memslot of an ivshmem BAR this
	 * guest never touches: it finds the slot by this address.
	 */
	if (find_ivshmem() >= 0)
		printf("STRESS: ivshmem bar=%lx\n", pci_bar64(find_ivshmem(), PCI_BAR2));
	cpuid0_a = cpuid(0).a;
	for (int i = 0; i < n; i++) {
		u64 pa = phys_alloc_pages_aligned(AREA_SIZE / PAGE_SIZE, SZ_2M);

		areas[i] = pa_to_ptr(pa);
		map_shared(pa, AREA_SIZE);
	}
	counter_pa = ptr_to_pa(alloc_page());
	report(snp_make_shared(counter_pa, counter_pa, 1) == 0, "counter page shared");
	map_shared(counter_pa, PAGE_SIZE);
	counter = shared_alias(counter_pa);
	*counter = 0;

	smp_init();
	report(smp_cpus() == n, "every AP came up with its own GHCB");
	test_remote_rescind();

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
	return 0;
}
