/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * conversions.h: what the conversion tests share (convert, snpsmp,
 * tdxsmp).
 */
#ifndef CVMEM_CONVERSIONS_H
#define CVMEM_CONVERSIONS_H

#include "libcflat.h"

/*
 * KVM's private_mem_conversions_test ranges: offset and size inside a test
 * area of at least 4 MiB (4K and 2M pieces, aligned and not).
 */
static const struct {
	u64 offset, size;
} conversion_ranges[] = {
	{ 0, PAGE_SIZE },
	{ 0, 2ul << 20 },
	{ PAGE_SIZE, PAGE_SIZE },
	{ PAGE_SIZE, 2ul << 20 },
	{ 2ul << 20, PAGE_SIZE },
};

/*
 * A check on any CPU: a failure prints the condition with the CPU and
 * counts in the test's `failures[smp_id()]` (the test reports the sum).
 */
#define CPU_CHECK(cond) \
	do { \
		if (!(cond)) { \
			printf("cpu %d: %s failed (line %d)\n", smp_id(), #cond, __LINE__); \
			failures[smp_id()]++; \
		} \
	} while (0)

#endif
