// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * alloc.c: the physical page allocator, a bump pointer over
 * [free_pa, end_pa). Test images run once and exit, so nothing is freed;
 * contiguous multi-page allocations (memtest's 64 MiB) come for free.
 */
#include "internal.h"

static u64 next_pa, end_pa;

void phys_alloc_init(u64 start_pa, u64 limit_pa)
{
	next_pa = start_pa;
	end_pa = ALIGN_DOWN(limit_pa, PAGE_SIZE);
}

u64 phys_alloc_pages_aligned(u64 npages, u64 align_bytes)
{
	u64 pa;

	if (align_bytes < PAGE_SIZE)
		align_bytes = PAGE_SIZE;
	if (align_bytes & (align_bytes - 1))
		return 0;
	pa = ALIGN_UP(next_pa, align_bytes);
	/* Written so that a huge npages cannot wrap around. */
	if (pa > end_pa || npages > (end_pa - pa) / PAGE_SIZE)
		return 0;
	next_pa = pa + npages * PAGE_SIZE;
	return pa;
}

u64 phys_alloc_pages(u64 npages)
{
	return phys_alloc_pages_aligned(npages, PAGE_SIZE);
}

u64 phys_pages_free(void)
{
	return (end_pa - next_pa) / PAGE_SIZE;
}

void *alloc_page(void)
{
	u64 pa = phys_alloc_pages(1);

	if (!pa) {
		printf("alloc_page: out of memory (RAM ends at %lx)\n", end_pa);
		abort();
	}
	return memset(pa_to_ptr(pa), 0, PAGE_SIZE);
}
