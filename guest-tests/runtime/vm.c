// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * vm.c: 4-level page-table helpers.
 *
 * Levels are numbered as the SDM's walk goes: 4 = PML4, 3 = PDPT, 2 = PD,
 * 1 = PT. Every table is one page from alloc_page(), below 4 GiB, so its pa
 * is also its pointer in the identity map that every PML4 here carries.
 */
#include "libcflat.h"

#define PT_ENTRIES 512
#define PT_LEVEL_BITS 9
/* Non-leaf entries grant everything; the leaf alone decides the access. */
#define TABLE_FLAGS (PT_PRESENT | PT_WRITABLE | PT_USER)
/* In a 2 MiB/1 GiB leaf bit 12 is PAT; in a 4 KiB PTE, PAT is bit 7. */
#define PT_LARGE_PAT (1ul << 12)
#define PT_4K_PAT (1ul << 7)

extern u64 boot_pml4_table[];

static unsigned int level_shift(int level)
{
	return PAGE_SHIFT + PT_LEVEL_BITS * (level - 1);
}

static unsigned int pt_index(u64 va, int level)
{
	return (va >> level_shift(level)) & (PT_ENTRIES - 1);
}

static u64 *table_of(u64 entry)
{
	return pa_to_ptr(entry & PT_ADDR_MASK);
}

static bool is_leaf(u64 entry, int level)
{
	return level == 1 || ((level == 2 || level == 3) && (entry & PT_PAGE_SIZE));
}

static void check_va(u64 va, u64 align)
{
	/* 4-level paging: bits 63:47 must all equal bit 47. */
	u64 top = va >> 47;

	if ((top != 0 && top != 0x1ffff) || (va & (align - 1))) {
		printf("page tables: va %lx is not canonical or not %lx-aligned\n", va, align);
		abort();
	}
}

u64 *boot_pml4(void)
{
	return boot_pml4_table;
}

static u64 *copy_table(const u64 *src, int level)
{
	u64 *dst = alloc_page();

	for (int i = 0; i < PT_ENTRIES; i++) {
		u64 e = src[i];

		if ((e & PT_PRESENT) && !is_leaf(e, level))
			e = ptr_to_pa(copy_table(table_of(e), level - 1)) | (e & ~PT_ADDR_MASK);
		dst[i] = e;
	}
	return dst;
}

u64 *new_pml4(void)
{
	return copy_table(boot_pml4_table, 4);
}

/*
 * Replaces the 1 GiB/2 MiB leaf *entry at level with a table of 512 pages
 * one level down that translate exactly as it did. No flush is needed for
 * that: any cached translation is still right. Whoever changes one of the
 * new entries flushes that address (invlpg drops large-page entries too).
 */
static void split_large_page(u64 *entry, int level)
{
	u64 old = *entry;
	u64 size = 1ul << level_shift(level);
	u64 child_size = 1ul << level_shift(level - 1);
	u64 base_pa = old & PT_ADDR_MASK & ~(size - 1);
	u64 attrs = old & ~PT_ADDR_MASK;
	u64 *table = alloc_page();

	if (level - 1 == 1) {
		attrs &= ~PT_PAGE_SIZE;
		if (old & PT_LARGE_PAT)
			attrs |= PT_4K_PAT;
	} else {
		attrs |= old & PT_LARGE_PAT;
	}
	for (int i = 0; i < PT_ENTRIES; i++)
		table[i] = (base_pa + (u64)i * child_size) | attrs;
	*entry = ptr_to_pa(table) | TABLE_FLAGS;
}

/* The entry for va at leaf_level, creating or splitting tables above it. */
static u64 *walk_create(u64 *pml4, u64 va, int leaf_level)
{
	u64 *table = pml4;

	for (int level = 4; level > leaf_level; level--) {
		u64 *entry = &table[pt_index(va, level)];

		if (!(*entry & PT_PRESENT))
			*entry = ptr_to_pa(alloc_page()) | TABLE_FLAGS;
		else if (is_leaf(*entry, level))
			split_large_page(entry, level);
		table = table_of(*entry);
	}
	return &table[pt_index(va, leaf_level)];
}

static void install(u64 *pml4, u64 va, u64 pa, u64 flags, int level)
{
	u64 size = 1ul << level_shift(level);
	u64 *entry;

	check_va(va, size);
	if ((pa & (size - 1)) || (pa & ~PT_ADDR_MASK)) {
		printf("page tables: pa %lx is not a %lx-aligned physical address\n", pa, size);
		abort();
	}
	entry = walk_create(pml4, va, level);
	*entry = pa | flags | (level > 1 ? PT_PAGE_SIZE : 0);
	if ((read_cr3() & PT_ADDR_MASK) == ptr_to_pa(pml4))
		invlpg(va);
}

void install_page(u64 *pml4, u64 va, u64 pa, u64 flags)
{
	install(pml4, va, pa, flags, 1);
}

void install_large_page(u64 *pml4, u64 va, u64 pa, u64 flags)
{
	install(pml4, va, pa, flags, 2);
}

u64 *get_pte(u64 *pml4, u64 va)
{
	u64 *table = pml4;

	check_va(va, 1);
	for (int level = 4;; level--) {
		u64 *entry = &table[pt_index(va, level)];

		if (is_leaf(*entry, level))
			return entry;
		if (!(*entry & PT_PRESENT))
			return NULL;
		table = table_of(*entry);
	}
}
