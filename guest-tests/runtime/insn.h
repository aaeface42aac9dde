/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * insn.h: the runtime's small x86-64 instruction decoder, for the #VC
 * handler of SEV-SNP guests (snp.c) and the #VE handler of TDs (tdx.c):
 * prefixes, REX, ModRM/SIB memory operands, and port I/O instructions.
 * Instruction bytes are read at the interrupted RIP through the identity
 * map (the runtime's code is mapped where it is linked).
 */
#ifndef CVMEM_INSN_H
#define CVMEM_INSN_H

#include "libcflat.h"

struct insn {
	const u8 *p;     /* next byte to decode */
	const u8 *start;
	bool opsize16;   /* 0x66 */
	bool addr32;     /* 0x67 */
	bool rep;        /* 0xf3 */
	bool seg_fs_gs;  /* an FS/GS override: a base the decoder does not apply */
	u8 rex;
};

#define REX_W 8
#define REX_R 4
#define REX_X 2
#define REX_B 1

struct modrm {
	int mod, reg, rm;
	bool rip_rel;
	u64 ea; /* without the RIP-relative part's next-RIP */
};

/* Prefixes and REX of the instruction at rip; in->p then points at the opcode. */
void decode_prefixes(struct insn *in, u64 rip);
/* Decodes ModRM (+SIB, displacement) at in->p; false for a register operand. */
bool decode_modrm(struct insn *in, struct ex_regs *r, struct modrm *m);
/* The register numbered n in the instruction encoding (0 RAX .. 15 R15). */
u64 *insn_gpr(struct ex_regs *r, int n);
u64 reg_read(struct ex_regs *r, const struct insn *in, int n, int size);
void reg_write(struct ex_regs *r, const struct insn *in, int n, int size, u64 v);

static inline u64 size_mask(int size)
{
	return size == 8 ? ~0ul : (1ul << (8 * size)) - 1;
}

/* A port I/O instruction: IN/OUT (imm8 or DX), INS/OUTS (DX, REP). */
struct io_insn {
	u16 port;
	int size;     /* 1, 2 or 4 */
	bool in;      /* IN, INS */
	bool string;  /* INS, OUTS */
	bool rep;
	bool imm;     /* the port is an imm8 */
	u64 amask;    /* the address size of INS/OUTS (0x67: 32-bit) */
	unsigned int len;
};

/*
 * Decodes the I/O instruction at regs->rip; false if it is none (or an
 * INS/OUTS with an FS/GS override, whose base the emulation would miss).
 */
bool io_insn_decode(struct ex_regs *regs, struct io_insn *io);
/* IN's result into AL/AX/EAX as the CPU writes it (EAX zero-extends). */
void io_set_ax(struct ex_regs *regs, int size, u64 v);
/*
 * INS/OUTS element by element, RSI/RDI stepped by DF, RCX counted down
 * for REP (as the CPU leaves them): xfer(ctx, port, size, in, *value)
 * moves one element; false stops (an error) and leaves the registers at
 * the failed element.
 */
bool io_string(struct ex_regs *regs, const struct io_insn *io,
	       bool (*xfer)(void *ctx, const struct io_insn *io, u32 *value), void *ctx);

#endif /* CVMEM_INSN_H */
