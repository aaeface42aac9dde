/*
 * fuzz.h - seeded random operands for the hostile-guest tests (tdxfuzz,
 * snpfuzz): a xorshift64* generator seeded from `-append seed=N` and a
 * value generator biased toward the edge cases an ABI must refuse.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef CVMEM_FUZZ_H
#define CVMEM_FUZZ_H

#include "libcflat.h"

static u64 fuzz_state = 1;

/* Seeds the generator from `seed=N` on the command line (default 1; 0, a
 * fixed point of xorshift, counts as 1). Returns the seed. */
static inline u64 fuzz_seed(void)
{
	fuzz_state = cmdline_u64("seed", 1) ?: 1;
	return fuzz_state;
}

/* The next random value (xorshift64*). */
static inline u64 rnd(void)
{
	fuzz_state ^= fuzz_state >> 12;
	fuzz_state ^= fuzz_state << 25;
	fuzz_state ^= fuzz_state >> 27;
	return fuzz_state * 0x2545F4914F6CDD1Dul;
}

/* A random value biased toward edge cases. */
static inline u64 operand(void)
{
	switch (rnd() % 6) {
	case 0:
		return 0;
	case 1:
		return ~0ul;
	case 2:
		return rnd() & 0xfff;
	case 3:
		return 1ul << (rnd() % 64);
	default:
		return rnd();
	}
}

#endif
