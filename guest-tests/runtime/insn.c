// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * insn.c: the instruction decoder of insn.h, shared by the #VC handler
 * (snp.c) and the #VE handler (tdx.c).
 */
#include "insn.h"

void decode_prefixes(struct insn *in, u64 rip)
{
	in->start = in->p = (const u8 *)rip;
	for (;;) {
		u8 b = *in->p;

		if (b == 0x66)
			in->opsize16 = true;
		else if (b == 0x67)
			in->addr32 = true;
		else if (b == 0xf3)
			in->rep = true;
		else if (b == 0x64 || b == 0x65)
			in->seg_fs_gs = true;
		else if (b == 0x26 || b == 0x2e || b == 0x36 || b == 0x3e || b == 0xf2 || b == 0xf0)
			; /* ignored in 64-bit mode / for these instructions */
		else
			break;
		in->p++;
	}
	if ((*in->p & 0xf0) == 0x40)
		in->rex = *in->p++;
}

u64 *insn_gpr(struct ex_regs *r, int n)
{
	switch (n) {
	case 0: return &r->rax;
	case 1: return &r->rcx;
	case 2: return &r->rdx;
	case 3: return &r->rbx;
	case 4: return &r->rsp;
	case 5: return &r->rbp;
	case 6: return &r->rsi;
	case 7: return &r->rdi;
	default: return &r->r8 + (n - 8);
	}
}

/* Reads register n of size bytes; without REX, byte registers 4-7 are AH..BH. */
u64 reg_read(struct ex_regs *r, const struct insn *in, int n, int size)
{
	if (size == 1 && !in->rex && n >= 4 && n < 8)
		return (*insn_gpr(r, n - 4) >> 8) & 0xff;
	return *insn_gpr(r, n) & size_mask(size);
}

/* Writes as the CPU does: 32-bit writes zero-extend, 8/16-bit ones merge. */
void reg_write(struct ex_regs *r, const struct insn *in, int n, int size, u64 v)
{
	u64 *reg;

	if (size == 1 && !in->rex && n >= 4 && n < 8) {
		reg = insn_gpr(r, n - 4);
		*reg = (*reg & ~0xff00ul) | (v & 0xff) << 8;
		return;
	}
	reg = insn_gpr(r, n);
	if (size == 4)
		*reg = (u32)v;
	else if (size == 8)
		*reg = v;
	else
		*reg = (*reg & ~size_mask(size)) | (v & size_mask(size));
}

/* Decodes ModRM (+SIB, displacement) at in->p for a memory operand. */
bool decode_modrm(struct insn *in, struct ex_regs *r, struct modrm *m)
{
	u8 modrm = *in->p++;
	int base = -1, index = -1, scale = 0;
	s64 disp = 0;

	m->mod = modrm >> 6;
	m->reg = ((modrm >> 3) & 7) | (in->rex & REX_R ? 8 : 0);
	m->rm = modrm & 7;
	m->rip_rel = false;
	if (m->mod == 3)
		return false; /* a register operand: no memory access */
	if (m->rm == 4) {
		u8 sib = *in->p++;

		scale = sib >> 6;
		index = ((sib >> 3) & 7) | (in->rex & REX_X ? 8 : 0);
		if (index == 4)
			index = -1; /* no index */
		base = (sib & 7) | (in->rex & REX_B ? 8 : 0);
		if ((sib & 7) == 5 && m->mod == 0) {
			base = -1;
			disp = *(const int32_t *)in->p;
			in->p += 4;
		}
	} else if (m->rm == 5 && m->mod == 0) {
		m->rip_rel = true;
		disp = *(const int32_t *)in->p;
		in->p += 4;
	} else {
		base = m->rm | (in->rex & REX_B ? 8 : 0);
	}
	if (m->mod == 1) {
		disp = *(const int8_t *)in->p;
		in->p += 1;
	} else if (m->mod == 2) {
		disp = *(const int32_t *)in->p;
		in->p += 4;
	}
	m->ea = (u64)disp;
	if (base >= 0)
		m->ea += *insn_gpr(r, base);
	if (index >= 0)
		m->ea += *insn_gpr(r, index) << scale;
	return true;
}

bool io_insn_decode(struct ex_regs *regs, struct io_insn *io)
{
	struct insn in = { 0 };
	u8 op;

	decode_prefixes(&in, regs->rip);
	op = *in.p++;
	*io = (struct io_insn){ 0 };
	switch (op) {
	case 0xe4: case 0xe5: case 0xe6: case 0xe7: /* IN/OUT with imm8 port */
		io->port = *in.p++;
		io->imm = true;
		break;
	case 0xec: case 0xed: case 0xee: case 0xef: /* IN/OUT with DX */
		io->port = (u16)regs->rdx;
		break;
	case 0x6c: case 0x6d: case 0x6e: case 0x6f: /* INS/OUTS */
		io->port = (u16)regs->rdx;
		io->string = true;
		break;
	default:
		return false;
	}
	if (in.seg_fs_gs && io->string)
		return false;
	io->in = op == 0xe4 || op == 0xe5 || op == 0xec || op == 0xed || op == 0x6c || op == 0x6d;
	io->size = !(op & 1) ? 1 : in.opsize16 ? 2 : 4;
	io->rep = io->string && in.rep;
	io->amask = in.addr32 ? 0xfffffffful : ~0ul;
	io->len = (unsigned int)(in.p - in.start);
	return true;
}

void io_set_ax(struct ex_regs *regs, int size, u64 v)
{
	v &= size_mask(size);
	regs->rax = size == 4 ? v : (regs->rax & ~size_mask(size)) | v;
}

bool io_string(struct ex_regs *regs, const struct io_insn *io,
	       bool (*xfer)(void *ctx, const struct io_insn *io, u32 *value), void *ctx)
{
	u64 amask = io->amask;
	u64 total = io->rep ? regs->rcx & amask : 1;
	s64 step = (regs->rflags & (1ul << 10)) ? -io->size : io->size; /* DF */
	u64 *reg = io->in ? &regs->rdi : &regs->rsi;

	for (; total; total--) {
		void *at = (void *)(*reg & amask);
		u32 v = 0;

		if (!io->in)
			memcpy(&v, at, io->size);
		if (!xfer(ctx, io, &v))
			return false;
		if (io->in)
			memcpy(at, &v, io->size);
		*reg = (*reg & ~amask) | ((*reg + step) & amask);
		if (io->rep)
			regs->rcx = (regs->rcx & ~amask) | ((regs->rcx - 1) & amask);
	}
	return true;
}
