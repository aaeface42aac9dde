/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tdx.S: tdcall() (tdx.h), the TDCALL instruction with every register of
 * struct tdx_module_args in and out.
 *
 * TDCALL takes its leaf in RAX and, depending on the leaf, arguments in
 * RCX, RDX, R8-R15, RBX, RDI, RSI; it returns the status in RAX and results
 * in the same registers (TDG.VP.VMCALL passes those that RCX's mask exposes
 * to the VMM and back). All of them are loaded from and stored back to the
 * struct, so one routine serves every leaf.
 */

/* struct tdx_module_args, in tdx.h's order */
#define ARGS_RCX 0
#define ARGS_RDX 8
#define ARGS_R8 16
#define ARGS_R9 24
#define ARGS_R10 32
#define ARGS_R11 40
#define ARGS_R12 48
#define ARGS_R13 56
#define ARGS_R14 64
#define ARGS_R15 72
#define ARGS_RBX 80
#define ARGS_RDI 88
#define ARGS_RSI 96

	.text
	/* u64 tdcall(u64 leaf: RDI, struct tdx_module_args *args: RSI) */
	.globl tdcall
	.type tdcall, @function
tdcall:
	pushq %rbp
	movq %rsp, %rbp
	/* Callee-saved registers that TDCALL may change. */
	pushq %rbx
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	pushq %rsi			/* args, for after the TDCALL */

	movq %rdi, %rax
	movq ARGS_RCX(%rsi), %rcx
	movq ARGS_RDX(%rsi), %rdx
	movq ARGS_R8(%rsi), %r8
	movq ARGS_R9(%rsi), %r9
	movq ARGS_R10(%rsi), %r10
	movq ARGS_R11(%rsi), %r11
	movq ARGS_R12(%rsi), %r12
	movq ARGS_R13(%rsi), %r13
	movq ARGS_R14(%rsi), %r14
	movq ARGS_R15(%rsi), %r15
	movq ARGS_RBX(%rsi), %rbx
	movq ARGS_RDI(%rsi), %rdi
	movq ARGS_RSI(%rsi), %rsi

	.byte 0x66, 0x0f, 0x01, 0xcc	/* tdcall */

	xchgq %rsi, (%rsp)		/* RSI = args, the stack slot = output RSI */
	movq %rcx, ARGS_RCX(%rsi)
	movq %rdx, ARGS_RDX(%rsi)
	movq %r8, ARGS_R8(%rsi)
	movq %r9, ARGS_R9(%rsi)
	movq %r10, ARGS_R10(%rsi)
	movq %r11, ARGS_R11(%rsi)
	movq %r12, ARGS_R12(%rsi)
	movq %r13, ARGS_R13(%rsi)
	movq %r14, ARGS_R14(%rsi)
	movq %r15, ARGS_R15(%rsi)
	movq %rbx, ARGS_RBX(%rsi)
	movq %rdi, ARGS_RDI(%rsi)
	popq ARGS_RSI(%rsi)

	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbx
	popq %rbp
	ret
	.size tdcall, . - tdcall

	.section .note.GNU-stack, "", @progbits
