/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * isr.S: one 16-byte entry stub per vector (0-255) and the common path that
 * builds a struct ex_regs (libcflat.h) and calls exception_dispatch().
 *
 * The CPU pushes an error code only for some vectors; the stubs push a dummy
 * 0 for the others so that every frame has the same layout. The list below
 * follows the architecture (Intel SDM vol. 3 6.15, AMD APM vol. 2 8.2):
 * #DF(8), #TS(10), #NP(11), #SS(12), #GP(13), #PF(14), #AC(17), #CP(21),
 * #VC(29), #SX(30). #VE(20) has none. Note that QEMU 10.0's TCG
 * (exception_has_error_code() in target/i386/tcg/seg_helper.c) only pushes
 * one for 8, 10-14 and 17; a #CP/#VC raised by an unpatched QEMU arrives
 * one slot short, which the default handler points out (saved CS != 0x08).
 */

#define HAS_ERROR_CODE(v) ((v) == 8 || ((v) >= 10 && (v) <= 14) || (v) == 17 || \
			   (v) == 21 || (v) == 29 || (v) == 30)

	.text
	.balign 16
	.globl isr_stubs
isr_stubs:
	.set vec, 0
	.rept 256
	/* desc.c expects stub v at isr_stubs + 16 * v; .org fails the build
	 * ("attempt to move .org backwards") if a stub outgrows 16 bytes. */
	.org isr_stubs + 16 * vec, 0xcc
	.if HAS_ERROR_CODE(vec) == 0
	pushq $0
	.endif
	/* push imm8 sign-extends: vectors >= 128 are masked in isr_common. */
	pushq $vec
	jmp isr_common
	.set vec, vec + 1
	.endr

	/*
	 * On entry the CPU has aligned RSP to 16 and pushed 5 qwords (ss, rsp,
	 * rflags, cs, rip), the stub 2 (error code, vector); with the 15 GPRs
	 * below that is 22 qwords, so RSP is 16-byte aligned at the call, as
	 * the SysV ABI wants.
	 */
isr_common:
	pushq %r15
	pushq %r14
	pushq %r13
	pushq %r12
	pushq %r11
	pushq %r10
	pushq %r9
	pushq %r8
	pushq %rdi
	pushq %rsi
	pushq %rbp
	pushq %rbx
	pushq %rdx
	pushq %rcx
	pushq %rax
	andq $0xff, 15*8(%rsp)
	cld
	movq %rsp, %rdi
	call exception_dispatch
	popq %rax
	popq %rcx
	popq %rdx
	popq %rbx
	popq %rbp
	popq %rsi
	popq %rdi
	popq %r8
	popq %r9
	popq %r10
	popq %r11
	popq %r12
	popq %r13
	popq %r14
	popq %r15
	addq $16, %rsp		/* vector, error code */
	iretq

	.section .note.GNU-stack, "", @progbits
