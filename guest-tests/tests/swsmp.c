/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * swsmp: a KVM_X86_SW_PROTECTED_VM guest (vm-type=sw-protected) converting
 * and touching memory on several vCPUs at once (MTTCG), as tdxsmp and
 * snpsmp do for a TD and an SNP guest, for the sw-protected stress run
 * (manifest sw-stress, guest-tests/control/stress.sh).
 *
 * A sw-protected VM has no alias bit: memory attributes alone say whether
 * a GPA is private, and the guest converts with the KVM hypercall
 * KVM_HC_MAP_GPA_RANGE (Documentation/virt/kvm/x86/hypercalls.rst), which
 * KVM hands to the VMM (KVM_EXIT_HYPERCALL); QEMU converts and discards
 * the side left (kvm_convert_memory()), so a converted page reads zero.
 *
 *  1. KVM's private_mem_conversions_test ranges, each CPU in its own area,
 *     all CPUs at once: contents discarded on every conversion, data
 *     written after it kept, the rest of the area untouched.
 *  2. A stress loop: every CPU writes a secret into its own pages while
 *     private, converts them to shared (the secret must be gone: zeros),
 *     writes the round's value and reads it back, and converts them back;
 *     meanwhile all CPUs add to one counter on an always-shared page with
 *     `lock xadd`: no write may be lost. At the end each CPU's pages are
 *     left shared with the last round's value, which the BSP checks.
 * -append rounds=N: the stress loop's rounds (default 40). -append plain:
 * a default VM (no private memory): no conversions, the same writes and
 * checks, for default-stress (the only VM type with the zap quirk).
 */
#include "libcflat.h"
#include "conversions.h"
#include "pci.h"

#define KVM_HC_MAP_GPA_RANGE 12
#define KVM_MAP_GPA_RANGE_ENCRYPTED (1ul << 4)
#define KVM_MAP_GPA_RANGE_4K 0
#define SZ_2M (2ul << 20)
#define AREA_SIZE (4 * SZ_2M)
#define STRESS_ROUNDS 40
#define STRESS_PAGES 8
#define ADDS_PER_ROUND 500

static int rounds = STRESS_ROUNDS;
static bool plain;
static u8 *areas[MAX_CPUS];
static volatile u64 *counter;
static volatile int failures[MAX_CPUS];

static u64 map_gpa_range(u64 gpa, u64 len, bool private)
{
	u64 nr = KVM_HC_MAP_GPA_RANGE;

	asm volatile("vmcall"
		     : "+a"(nr)
		     : "b"(gpa), "c"(len / PAGE_SIZE),
		       "d"((private ? KVM_MAP_GPA_RANGE_ENCRYPTED : 0) | KVM_MAP_GPA_RANGE_4K)
		     : "memory");
	return nr;
}

static void conversions(void *unused)
{
	u8 *area = areas[smp_id()];
	u64 base = ptr_to_pa(area);

	for (unsigned int i = 0; i < ARRAY_SIZE(conversion_ranges); i++) {
		u64 off = conversion_ranges[i].offset, size = conversion_ranges[i].size;

		memset(area, 0x11, AREA_SIZE);
		CPU_CHECK(map_gpa_range(base + off, size, true) == 0);
		CPU_CHECK(all_bytes(area + off, size, 0));
		CPU_CHECK(all_bytes(area, off, 0x11));
		CPU_CHECK(all_bytes(area + off + size, AREA_SIZE - off - size, 0x11));
		memset(area + off, 0x22, size);
		CPU_CHECK(all_bytes(area + off, size, 0x22));
		CPU_CHECK(map_gpa_range(base + off, size, false) == 0);
		CPU_CHECK(all_bytes(area + off, size, 0));
		memset(area + off, 0x33, size);
		CPU_CHECK(all_bytes(area + off, size, 0x33));
	}
	(void)unused;
}

static void stress(void *unused)
{
	int id = smp_id();
	u8 *p = areas[id];
	u64 base = ptr_to_pa(p), len = STRESS_PAGES * PAGE_SIZE;
	u8 secret = 0xc0 | id;

	for (int round = 0; round < rounds; round++) {
		u8 value = (u8)(round * 8 + id) & 0x7f; /* never a secret */

		if (!plain) {
			CPU_CHECK(map_gpa_range(base, len, true) == 0);
			memset(p, secret, len);
			CPU_CHECK(map_gpa_range(base, len, false) == 0);
			/* The private secret must be gone once the pages are shared. */
			CPU_CHECK(all_bytes(p, len, 0));
		}
		memset(p, value, len);
		for (int k = 0; k < ADDS_PER_ROUND; k++)
			__atomic_fetch_add(counter, 1, __ATOMIC_SEQ_CST);
		CPU_CHECK(all_bytes(p, len, value));
	}
	(void)unused;
}

int main(void)
{
	int n = smp_cpus(), bad = 0;

	rounds = (int)cmdline_u64("rounds", STRESS_ROUNDS);
	plain = cmdline_has("plain");
	report(n >= 2, "%d vCPUs", n);
	/* As tdxsmp: stress.sh churns this BAR's memslot, found by address. */
	if (find_ivshmem() >= 0)
		printf("STRESS: ivshmem bar=%lx\n", pci_bar64(find_ivshmem(), PCI_BAR2));
	for (int i = 0; i < n; i++)
		areas[i] = pa_to_ptr(phys_alloc_pages_aligned(AREA_SIZE / PAGE_SIZE, SZ_2M));
	counter = alloc_page();
	*counter = 0;

	if (!plain) {
		on_cpus(conversions, NULL);
		for (int i = 0; i < n; i++)
			bad += failures[i];
		report(bad == 0, "conversion ranges on %d vCPUs at once: %d failed checks", n,
		       bad);
	}

	on_cpus(stress, NULL);
	bad = 0;
	for (int i = 0; i < n; i++)
		bad += failures[i];
	report(bad == 0, "flip stress: secrets gone once shared, values kept (%d failed checks)",
	       bad);
	bad = 0;
	for (int i = 0; i < n; i++)
		bad += !all_bytes(areas[i], STRESS_PAGES * PAGE_SIZE,
				  (u8)((rounds - 1) * 8 + i) & 0x7f);
	report(bad == 0, "every shared page holds the last value written (%d CPUs not)", bad);
	report(*counter == (u64)n * ADDS_PER_ROUND * (u64)rounds,
	       "shared counter: %lu adds, none lost", *counter);
	return 0;
}
