// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * benchtlb: the memory workload of scripts/bench. It maps `mib=` MiB
 * (default 256) of RAM with 4 KiB pages at a high virtual address and visits
 * every page once per pass, for `passes=` passes (default 128), in a
 * scrambled order that never touches the same page twice in a row. Each
 * pass starts with a CR3 reload, which makes QEMU flush its softTLB: every
 * page visit is a softTLB miss, a page walk and a TLB fill, the path where
 * cvmem's stage-2 callback runs. That is the worst case for enforcing mode;
 * a guest that stays on its pages longer pays the same per fill over more
 * work.
 *
 * The work is fixed (pages * (passes + 1) visits, printed as "INFO: work:
 * N page visits"), so the run time of the whole QEMU process measures the
 * cost. Each visit reads one word and writes the
 * next pass's value into it; every pass checks what the last one wrote, so
 * a benchmark run that computed wrong translations fails instead of
 * measuring them.
 *
 * Runs under every VM type: none, default, sw-protected (shared memory),
 * tdx (private, accepted at launch) and snp (private, validated at launch;
 * the 4K mappings carry the C-bit, as the runtime's identity map does).
 */
#include "libcflat.h"
#include "snp.h"

/* PML4 slot 1: nothing else is mapped there. */
#define TEST_VA 0x8000000000ul
#define WORDS_PER_PAGE (PAGE_SIZE / sizeof(u64))

static u64 npages; /* a power of two */
static u64 frames_pa;

/* An odd multiplier makes i -> a * i + c a bijection modulo a power of two. */
static u64 frame_of(u64 page)
{
	return (page * 0x2f3b + 0x1234) & (npages - 1);
}

/* Consecutive steps land on pages far apart, never on the same page. */
static u64 visit_order(u64 step)
{
	return (step * 0x1a5d + 0x777) & (npages - 1);
}

/* The word of a page that passes touch: spread over the page's cache lines. */
static volatile u64 *visit_word(u64 page)
{
	return (volatile u64 *)(uintptr_t)(TEST_VA + page * PAGE_SIZE +
					   (page % WORDS_PER_PAGE) * sizeof(u64));
}

static u64 value(u64 page, u64 pass)
{
	u64 x = (page ^ (pass << 40)) * 0x9e3779b97f4a7c15ul;

	return x ^ (x >> 29);
}

int main(void)
{
	u64 mib = cmdline_u64("mib", 256), passes = cmdline_u64("passes", 128);
	u64 boot_cr3 = read_cr3(), bad = 0, *pml4;
	u64 c_bit = snp_c_bit_mask(); /* 0 but in an SNP guest */

	npages = mib << (20 - PAGE_SHIFT);
	if (!mib || (npages & (npages - 1)) || !passes) {
		report(false, "mib=%lu passes=%lu: need a power of two and at least one pass", mib,
		       passes);
		return 1;
	}
	/* The frames plus their page tables (one per 512 pages, and a few). */
	if (phys_pages_free() < npages + npages / 512 + 16) {
		report(false, "%lu MiB do not fit in %lu free pages: give QEMU more -m", mib,
		       phys_pages_free());
		return 1;
	}
	frames_pa = phys_alloc_pages(npages);
	pml4 = new_pml4();
	for (u64 page = 0; page < npages; page++)
		install_page(pml4, TEST_VA + page * PAGE_SIZE,
			     (frames_pa + frame_of(page) * PAGE_SIZE) | c_bit, PT_PRESENT | PT_WRITABLE);
	write_cr3(ptr_to_pa(pml4));
	report_info("%lu MiB (%lu 4K pages) at pa %lx, %lu passes", mib, npages, frames_pa, passes);

	for (u64 step = 0; step < npages; step++) {
		u64 page = visit_order(step);

		*visit_word(page) = value(page, 0);
	}
	for (u64 pass = 1; pass <= passes; pass++) {
		write_cr3(ptr_to_pa(pml4));
		for (u64 step = 0; step < npages; step++) {
			u64 page = visit_order(step);
			volatile u64 *w = visit_word(page);

			if (*w != value(page, pass - 1))
				bad++;
			*w = value(page, pass);
		}
	}
	write_cr3(boot_cr3);
	report(!bad, "%lu page visits through 4K mappings, %lu wrong values", npages * (passes + 1),
	       bad);

	/* The last pass's values, through the identity map: the right frames. */
	bad = 0;
	for (u64 page = 0; page < npages; page++) {
		u64 pa = frames_pa + frame_of(page) * PAGE_SIZE + (page % WORDS_PER_PAGE) * sizeof(u64);

		if (*(volatile u64 *)pa_to_ptr(pa) != value(page, passes))
			bad++;
	}
	report(!bad, "identity map sees what the 4K mappings wrote: %lu wrong", bad);
	report_info("work: %lu page visits", npages * (passes + 1));
	return 0;
}
