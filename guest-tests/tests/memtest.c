// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * memtest: 64 MiB of RAM through the guest's own 4 KiB-page mapping.
 *
 * A fresh PML4 maps TEST_VA.. onto a 64 MiB physical block above the image,
 * page by page in a scrambled order (virtual page i -> frame frame_of(i)),
 * so that a wrong translation cannot hide behind a linear layout. Every
 * 8-byte word holds a hash of its own pa: written through the high mapping,
 * it is checked through the identity map (does each store land in the frame
 * the PTE names?) and through the high mapping again. A second pass visits
 * pages in another scrambled order, and its read-back touches a different
 * page on every access, to keep the TLB missing.
 */
#include "libcflat.h"

/* PML4 slot 1, so the walk to it allocates a table at every level. */
#define TEST_VA 0x8000000000ul
#define TEST_BYTES (64ul << 20)
#define TEST_PAGES (TEST_BYTES / PAGE_SIZE) /* a power of two */
#define WORDS_PER_PAGE (PAGE_SIZE / sizeof(u64))
#define SEED_1 0x0123456789abcdeful
#define SEED_2 0xfedcba9876543210ul

static u64 frames_pa; /* base of the 64 MiB physical block */

/* An odd multiplier makes i -> a * i + c a bijection modulo a power of two. */
static u64 frame_of(u64 page)
{
	return (page * 0x2f3b + 0x1234) & (TEST_PAGES - 1);
}

static u64 thrash_order(u64 step)
{
	return (step * 0x1a5d + 0x777) & (TEST_PAGES - 1);
}

static u64 page_va(u64 page)
{
	return TEST_VA + page * PAGE_SIZE;
}

static u64 page_pa(u64 page)
{
	return frames_pa + frame_of(page) * PAGE_SIZE;
}

/* A bijection of pa (odd multiply, then xorshift): no two words alike. */
static u64 pattern(u64 pa, u64 seed)
{
	u64 x = (pa ^ seed) * 0x9e3779b97f4a7c15ul;

	return x ^ (x >> 31);
}

static volatile u64 *word_ptr(u64 va, u64 word)
{
	return (volatile u64 *)(uintptr_t)(va + word * sizeof(u64));
}

struct verify {
	const char *how;
	u64 bad;
};

static void check_word(struct verify *v, u64 va, u64 pa, u64 seed)
{
	u64 got = *(volatile u64 *)(uintptr_t)va, want = pattern(pa, seed);

	if (got == want)
		return;
	if (!v->bad)
		report_info("%s: first mismatch at va %lx (pa %lx): %lx, want %lx",
			    v->how, va, pa, got, want);
	v->bad++;
}

static void write_page(u64 page, u64 seed)
{
	u64 va = page_va(page), pa = page_pa(page);

	for (u64 w = 0; w < WORDS_PER_PAGE; w++)
		*word_ptr(va, w) = pattern(pa + w * sizeof(u64), seed);
}

static void verify_identity(u64 seed, const char *what)
{
	struct verify v = { .how = what };

	barrier();
	for (u64 pa = frames_pa; pa < frames_pa + TEST_BYTES; pa += sizeof(u64))
		check_word(&v, pa, pa, seed);
	report(!v.bad, "%s: %lu of %lu words wrong", what, v.bad, TEST_BYTES / 8);
}

static void verify_high_sequential(u64 seed)
{
	struct verify v = { .how = "high mapping" };

	barrier();
	for (u64 page = 0; page < TEST_PAGES; page++)
		for (u64 off = 0; off < PAGE_SIZE; off += sizeof(u64))
			check_word(&v, page_va(page) + off, page_pa(page) + off, seed);
	report(!v.bad, "read back through the high mapping: %lu words wrong", v.bad);
}

/*
 * Round r reads word (r + step) % 512 of every page, pages in thrash order:
 * each access is on another page than the last, and all TEST_PAGES * 512
 * words are read once.
 */
static void verify_high_interleaved(u64 seed)
{
	struct verify v = { .how = "high mapping, one word per page" };

	barrier();
	for (u64 r = 0; r < WORDS_PER_PAGE; r++) {
		for (u64 step = 0; step < TEST_PAGES; step++) {
			u64 page = thrash_order(step);
			u64 off = ((r + step) % WORDS_PER_PAGE) * sizeof(u64);

			check_word(&v, page_va(page) + off, page_pa(page) + off, seed);
		}
	}
	report(!v.bad, "read back page-interleaved through the high mapping: %lu words wrong",
	       v.bad);
}

static bool map_test_area(u64 *pml4)
{
	u64 *pte;

	for (u64 page = 0; page < TEST_PAGES; page++)
		install_page(pml4, page_va(page), page_pa(page), PT_PRESENT | PT_WRITABLE);
	pte = get_pte(pml4, page_va(TEST_PAGES - 1));
	return pte && (*pte & PT_ADDR_MASK) == page_pa(TEST_PAGES - 1) &&
	       !(*pte & PT_PAGE_SIZE);
}

int main(void)
{
	u64 boot_cr3 = read_cr3();
	u64 *pml4;

	/* 64 MiB plus its page tables (32 PTs and a few more). */
	if (phys_pages_free() < TEST_PAGES + 64) {
		report_skip("needs more than %lu MiB of free RAM, has %lu pages",
			    TEST_BYTES >> 20, phys_pages_free());
		return 0;
	}
	frames_pa = phys_alloc_pages(TEST_PAGES);
	report_info("%lu MiB at pa %lx, mapped at va %lx with 4K pages",
		    TEST_BYTES >> 20, frames_pa, TEST_VA);

	pml4 = new_pml4();
	report(map_test_area(pml4), "map %lu pages", TEST_PAGES);
	write_cr3(ptr_to_pa(pml4));
	/* Still running means the copied identity map works: code runs from it. */
	report(read_cr3() == ptr_to_pa(pml4), "own CR3 loaded");

	report_prefix_push("pass 1");
	for (u64 page = 0; page < TEST_PAGES; page++)
		write_page(page, SEED_1);
	report(true, "wrote %lu MiB through the high mapping", TEST_BYTES >> 20);
	verify_identity(SEED_1, "read back through the identity map");
	verify_high_sequential(SEED_1);
	report_prefix_pop();

	report_prefix_push("pass 2 (TLB thrash)");
	for (u64 step = 0; step < TEST_PAGES; step++)
		write_page(thrash_order(step), SEED_2);
	report(true, "wrote pages in scrambled order");
	verify_identity(SEED_2, "read back through the identity map");
	verify_high_interleaved(SEED_2);
	report_prefix_pop();

	write_cr3(boot_cr3);
	verify_identity(SEED_2, "back on the boot CR3: identity map");
	return 0;
}
