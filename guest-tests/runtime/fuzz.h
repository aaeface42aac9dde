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

/*
 * What an instruction must do at CPL 3 (fuzz_user_phase()): raise #GP(0),
 * raise #UD, raise a #VE the runtime does not emulate, complete (perhaps
 * through a #VE or #VC the runtime emulated), or any of #GP, #UD and
 * completing (where the answer depends on the VMM: the guest must only
 * come back and run on).
 */
enum user_expect { EXPECT_GP0, EXPECT_UD, EXPECT_VE, EXPECT_DONE, EXPECT_ANY };

static const char *const user_insn_names[USER_NR_INSNS] = {
	"TDCALL", "VMCALL", "VMMCALL", "VMGEXIT", "PVALIDATE", "RMPADJUST", "RDMSR",
	"WRMSR", "CPUID", "HLT", "IN", "OUT", "MOV CR4", "MOV CR0",
};

/*
 * The ring-3 phase of the hostile-guest tests: `iterations` times a random
 * instruction of every kind the plugin takes, at CPL 3, with every GPR
 * random; each must end as `expect` says. Returns the number that did
 * not (the first few are printed).
 */
static inline u64 fuzz_user_phase(const enum user_expect expect[USER_NR_INSNS], int iterations)
{
	u64 bad = 0, done = 0, gp = 0, ud = 0;

	user_init();
	for (int i = 0; i < iterations; i++) {
		enum user_insn insn = (enum user_insn)(rnd() % USER_NR_INSNS);
		struct user_regs r = {
			operand(), operand(), operand(), operand(), operand(),
			operand(), operand(), operand(), operand(), operand(),
			operand(), operand(), operand(), operand(), operand(),
		};
		struct user_result res = user_run(insn, &r);
		bool ok;

		done += res.completed;
		gp += !res.completed && res.vector == GP_VECTOR;
		ud += !res.completed && res.vector == UD_VECTOR;
		switch (expect[insn]) {
		case EXPECT_GP0:
			ok = !res.completed && res.vector == GP_VECTOR && res.error_code == 0;
			break;
		case EXPECT_UD:
			ok = !res.completed && res.vector == UD_VECTOR;
			break;
		case EXPECT_VE:
			ok = !res.completed && res.vector == VE_VECTOR;
			break;
		case EXPECT_DONE:
			ok = res.completed;
			break;
		default:
			ok = res.completed || res.vector == GP_VECTOR || res.vector == UD_VECTOR;
			break;
		}
		if (!ok && bad++ < 5)
			printf("CPL 3 %s (rax %lx rcx %lx): %s vector %d error code %lx at %lx\n",
			       user_insn_names[insn], r.rax, r.rcx,
			       res.completed ? "completed," : "", res.vector, res.error_code,
			       res.rip);
	}
	report_info("CPL 3: %d instructions, %lu completed, %lu #GP, %lu #UD", iterations, done,
		    gp, ud);
	return bad;
}

#endif
