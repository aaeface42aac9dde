/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tdvf-mini: the smallest firmware a TD can start from, a 64 KiB -bios
 * image with TDVF metadata (guest-tests/manifest: tdvf-mini). It checks
 * what the TDX module and the VMM give a TD at its start:
 *
 * - every vCPU begins here, at the reset vector, in 32-bit protected mode
 *   with paging off, RSI its index and RCX the TD HOB's address
 *   (TDH.VP.INIT); APs count in their own TempMem slot without being
 *   started by anyone;
 * - the TD HOB the VMM wrote: a PHIT whose EfiEndOfHobList lies inside the
 *   section, and resource descriptors, the first unaccepted memory at 0;
 * - INIT and SIPI do not reach a TD: after the BSP sends INIT-SIPI-SIPI to
 *   vCPU 1 through TDVMCALL<WRMSR> of the x2APIC ICR (as Linux does after
 *   the #VE for it), vCPU 1 goes on counting where it was.
 *
 * The BSP reports on the serial port through TDVMCALL<IO> and ends with
 * isa-debug-exit (status 1: pass, 3: fail), as the guest-test runtime does.
 *
 * Layout (the image is mapped at 0xffff0000): code from the start, the
 * TDVF metadata at 0xf000, the OVMF GUIDed table ending 32 bytes before
 * the end, the reset vector at 0xfff0.
 */

#define IMAGE_BASE	0xffff0000
#define HOB		0x809000
#define PML4		0x80b000
#define PDPT		0x80c000
#define COUNTERS	0x80d000
#define STACK_TOP	0x80f000
#define X2APIC_ICR	0x830

	.section .text
	.code32
	.globl _start
_start:
	cld
	test	%esi, %esi
	jnz	ap
	mov	%ecx, %edi			/* the TD HOB (RCX) */

	/* Identity-map the low 4 GiB with 1 GiB pages, then long mode
	 * (EFER.LME is set by TDH.VP.INIT). */
	movl	$(PDPT | 3), PML4
	movl	$0, PML4 + 4
	xor	%eax, %eax
	mov	$PDPT, %ebx
1:	mov	%eax, %edx
	shl	$30, %edx
	or	$0x83, %edx
	mov	%edx, (%ebx, %eax, 8)
	movl	$0, 4(%ebx, %eax, 8)
	inc	%eax
	cmp	$4, %eax
	jne	1b
	mov	$PML4, %eax
	mov	%eax, %cr3
	mov	%cr4, %eax
	or	$0x20, %eax			/* PAE */
	mov	%eax, %cr4
	lgdt	gdt_desc
	mov	%cr0, %eax
	or	$0x80000000, %eax		/* PG: IA-32e mode */
	mov	%eax, %cr0
	ljmp	$0x08, $long_mode

	/* An AP: counts in its slot, forever. */
ap:	lea	COUNTERS(, %esi, 4), %ebx
2:	lock incl (%ebx)
	pause
	jmp	2b

	.code64
long_mode:
	mov	$0x10, %ax
	mov	%ax, %ds
	mov	%ax, %es
	mov	%ax, %ss
	mov	$STACK_TOP, %rsp
	xor	%r15d, %r15d			/* failures */

	/* The TD HOB. */
	lea	msg_hob(%rip), %rsi
	xor	%ebx, %ebx
	cmpw	$0x0001, (%rdi)			/* PHIT */
	jne	3f
	cmpl	$9, 8(%rdi)			/* its version */
	jne	3f
	mov	48(%rdi), %rax			/* EfiEndOfHobList */
	cmp	%rdi, %rax
	jbe	3f
	lea	0x2000(%rdi), %rcx
	cmp	%rcx, %rax
	ja	3f
	cmpw	$0x0003, 56(%rdi)		/* a resource descriptor */
	jne	3f
	cmpl	$7, 56+24(%rdi)			/* unaccepted memory */
	jne	3f
	cmpq	$0, 56+32(%rdi)			/* at 0 */
	jne	3f
	inc	%ebx
3:	call	report

	/* The AP runs without INIT-SIPI: its counter moves. */
	lea	msg_ap(%rip), %rsi
	call	ap_moves
	call	report

	/* INIT, then SIPI twice (vector 0x10: 0x10000), to vCPU 1. */
	mov	$0x0000000100004500, %r13	/* dest 1, INIT, assert */
	call	icr
	mov	$0x0000000100004610, %r13	/* dest 1, start-up */
	call	icr
	mov	$0x0000000100004610, %r13	/* (the VMM may change R13) */
	call	icr
	lea	msg_init(%rip), %rsi
	call	ap_moves
	call	report

	lea	msg_summary0(%rip), %rsi
	test	%r15d, %r15d
	jz	4f
	lea	msg_summary1(%rip), %rsi
4:	call	puts
	/* isa-debug-exit: QEMU exits with (value << 1) | 1. */
	mov	%r15d, %eax
	test	%eax, %eax
	setnz	%al
	movzbl	%al, %eax
	mov	$0xf4, %r14d
	mov	$4, %r12d
	call	outp
	/* QEMU ends the run soon after (a shutdown request); wait without
	 * HLT, which would be a #VE here. */
10:	pause
	jmp	10b

/* %ebx = 1 if AP 1's counter moves over a while, else 0. */
ap_moves:
	mov	COUNTERS + 4, %r8d
	mov	$2000000, %ecx
5:	mov	COUNTERS + 4, %eax
	cmp	%r8d, %eax
	jne	6f
	pause
	dec	%ecx
	jnz	5b
	xor	%ebx, %ebx
	ret
6:	mov	$1, %ebx
	ret

/* TDVMCALL<WRMSR>(X2APIC_ICR, %r13): the TDX module exits to the VMM. */
icr:	mov	$X2APIC_ICR, %r12d
	mov	$32, %r11d
	jmp	tdvmcall

/* TDVMCALL<IO> OUT of %eax to port %r14 with size %r12. */
outp:	mov	%rax, %r15
	push	%r15
	mov	$1, %r13d			/* write */
	mov	$30, %r11d
	call	tdvmcall
	pop	%r15
	ret

/* TDG.VP.VMCALL with R10 = 0 and R11-R15 as set; R10-R15 exposed. */
tdvmcall:
	push	%rax
	push	%rcx
	xor	%eax, %eax
	mov	$0xfc00, %ecx
	xor	%r10d, %r10d
	.byte	0x66, 0x0f, 0x01, 0xcc		/* tdcall */
	pop	%rcx
	pop	%rax
	ret

/* "PASS: " or "FAIL: " (%ebx), the text at %rsi, a newline. */
report:	push	%rsi
	lea	msg_pass(%rip), %rsi
	test	%ebx, %ebx
	jnz	7f
	inc	%r15d
	lea	msg_fail(%rip), %rsi
7:	call	puts
	pop	%rsi
	call	puts
	ret

/* The NUL-terminated string at %rsi on COM1. */
puts:	push	%r15
	push	%rax
8:	lodsb
	test	%al, %al
	jz	9f
	push	%rsi
	movzbl	%al, %eax
	mov	$0x3f8, %r14d
	mov	$1, %r12d
	push	%r13
	call	outp1
	pop	%r13
	pop	%rsi
	jmp	8b
9:	pop	%rax
	pop	%r15
	ret
outp1:	mov	%rax, %r15
	mov	$1, %r13d
	mov	$30, %r11d
	jmp	tdvmcall

msg_pass:	.asciz "PASS: "
msg_fail:	.asciz "FAIL: "
msg_hob:	.asciz "the TD HOB: a PHIT, then unaccepted memory from 0\n"
msg_ap:		.asciz "vCPU 1 runs from the reset vector without INIT-SIPI\n"
msg_init:	.asciz "INIT and SIPI to vCPU 1 do not reset it: it goes on counting\n"
msg_summary0:	.asciz "SUMMARY: 3 tests, 0 unexpected failures\n"
msg_summary1:	.asciz "SUMMARY: 3 tests, 1 unexpected failures\n"

	.balign 8
gdt:	.quad	0
	.quad	0x00af9a000000ffff		/* 0x08: 64-bit code */
	.quad	0x00cf92000000ffff		/* 0x10: data */
gdt_desc:
	.word	gdt_desc - gdt - 1
	.long	gdt

	/* TDVF metadata (TDVF design guide; cvmem_model::firmware). */
	.org	0xf000
tdvf_metadata:
	.ascii	"TDVF"
	.long	16 + 32 * 3, 1, 3
	/* BFV: the whole image, measured. */
	.long	0, 0x10000
	.quad	IMAGE_BASE, 0x10000
	.long	0, 1
	/* TD_HOB */
	.long	0, 0
	.quad	HOB, 0x2000
	.long	2, 0
	/* TempMem: page tables, counters, stack */
	.long	0, 0
	.quad	PML4, 0x4000
	.long	3, 0

	/* The GUIDed table, read backwards from its footer. */
	.org	0xffb8
	.long	0x10000 - 0xf000		/* the metadata's offset from the end */
	.word	22
	/* e47a6535-984a-4798-865e-4685a7bf8ec2 */
	.byte	0x35, 0x65, 0x7a, 0xe4, 0x4a, 0x98, 0x98, 0x47
	.byte	0x86, 0x5e, 0x46, 0x85, 0xa7, 0xbf, 0x8e, 0xc2
	.word	40
	/* the footer: 96b582de-1fb2-45f7-baea-a366c55a082d */
	.byte	0xde, 0x82, 0xb5, 0x96, 0xb2, 0x1f, 0xf7, 0x45
	.byte	0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d

	/* The reset vector: 0xfffffff0. */
	.org	0xfff0
	.code32
	jmp	_start
	.org	0x10000
