/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * user.S: running one instruction at CPL 3 (user.c). user_enter() saves the
 * callee-saved registers and RSP, loads every GPR from a struct user_regs
 * and IRETQs to the instruction's stub at CPL 3 with RFLAGS.IF and IOPL 0.
 * The stub is the instruction and a UD2: whatever exception ends the CPL 3
 * run (the instruction's own, or the UD2's #UD after it completed) comes
 * back through exception_dispatch(), which points the frame at
 * user_return on the saved stack (desc.c, user.c).
 */
#define USER_CS (0x28 | 3)
#define USER_DS (0x20 | 3)

	.text
	/* void user_enter(const struct user_regs *r, u64 rip, u64 rsp) */
	.globl user_enter
user_enter:
	pushq %rbx
	pushq %rbp
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, user_kernel_rsp(%rip)
	pushq $USER_DS
	pushq %rdx		/* RSP at CPL 3 */
	pushq $0x2		/* RFLAGS: IF 0, IOPL 0 */
	pushq $USER_CS
	pushq %rsi		/* the stub */
	movq %rdi, %rax
	movq 8(%rax), %rcx
	movq 16(%rax), %rdx
	movq 24(%rax), %rbx
	movq 32(%rax), %rbp
	movq 40(%rax), %rsi
	movq 48(%rax), %rdi
	movq 56(%rax), %r8
	movq 64(%rax), %r9
	movq 72(%rax), %r10
	movq 80(%rax), %r11
	movq 88(%rax), %r12
	movq 96(%rax), %r13
	movq 104(%rax), %r14
	movq 112(%rax), %r15
	movq 0(%rax), %rax
	iretq

	/* exception_dispatch() returns here, at CPL 0 on the saved stack. */
	.globl user_return
user_return:
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbp
	popq %rbx
	ret

	/*
	 * The stubs, one a 16 bytes: the instruction, then UD2. Data here:
	 * user_init() copies them into a page of their own that CPL 3 may
	 * run (no relocation inside), so that no image grows by a page.
	 */
	.section .rodata
	.globl user_stubs, user_stubs_end
user_stubs:
	.set n, 0
.macro stub bytes:vararg
	.org user_stubs + 16 * n, 0xcc
	.byte \bytes
	ud2
	.set n, n + 1
.endm
	stub 0x66, 0x0f, 0x01, 0xcc	/* 0 TDCALL */
	stub 0x0f, 0x01, 0xc1		/* 1 VMCALL */
	stub 0x0f, 0x01, 0xd9		/* 2 VMMCALL */
	stub 0xf3, 0x0f, 0x01, 0xd9	/* 3 VMGEXIT (REP VMMCALL) */
	stub 0xf2, 0x0f, 0x01, 0xff	/* 4 PVALIDATE */
	stub 0xf3, 0x0f, 0x01, 0xfe	/* 5 RMPADJUST */
	stub 0x0f, 0x32			/* 6 RDMSR */
	stub 0x0f, 0x30			/* 7 WRMSR */
	stub 0x0f, 0xa2			/* 8 CPUID */
	stub 0xf4			/* 9 HLT */
	stub 0xec			/* 10 IN AL, DX */
	stub 0xef			/* 11 OUT DX, EAX */
	stub 0x0f, 0x22, 0xe0		/* 12 MOV CR4, RAX */
	stub 0x0f, 0x22, 0xc0		/* 13 MOV CR0, RAX */
	.org user_stubs + 16 * n, 0xcc
user_stubs_end:

	.section .note.GNU-stack, "", @progbits
