/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * boot.S: Multiboot v1 entry, 32-bit protected mode to 64-bit long mode.
 *
 * QEMU's -kernel loads a Multiboot image only as ELF32 (it refuses an
 * EM_X86_64 ELF) and enters it in 32-bit protected mode with paging off,
 * EAX = 0x2BADB002 and EBX = the Multiboot info block. The image is linked
 * as ELF64 and converted with `objcopy -O elf32-i386` (see the Makefile):
 * the program headers keep their addresses, so this 32-bit code and the
 * 64-bit code after it load together at 1 MiB.
 *
 * Application processors (smp.c) come in through ap_trampoline, which
 * smp_init() copies below 1 MiB for the SIPI: real mode -> 32-bit protected
 * mode on this file's GDT -> ap_start32, which enters long mode exactly as
 * the BSP does (ENTER_LONG_MODE, the boot page tables) -> ap_start64.
 */

#define MB_MAGIC 0x1badb002
#define MB_FLAGS 0x00000003 /* bit 0: page-align modules, bit 1: want mem_* */
#define MB_BOOT_MAGIC 0x2badb002
#define TDVF_BOOT_MAGIC 0x46564454 /* "TDVF" */

#define CR0_PE (1 << 0)
#define CR0_MP (1 << 1)
#define CR0_EM (1 << 2)
#define CR0_NE (1 << 5)
#define CR0_WP (1 << 16)
#define CR0_PG (1 << 31)
#define CR4_PAE (1 << 5)
#define CR4_OSFXSR (1 << 9)
#define CR4_OSXMMEXCPT (1 << 10)
#define MSR_EFER 0xc0000080
#define EFER_LME (1 << 8)
#define EFER_NXE (1 << 11)
#define MSR_AMD64_SEV 0xc0010131
#define SEV_STATUS_SNP 2 /* bit number */
#define CPUID_8000001F_EAX_SEV 1 /* bit number */

#define PTE_P (1 << 0)
#define PTE_W (1 << 1)
#define PTE_PS (1 << 7)

#define BOOT_STACK_SIZE (32 * 1024)
#define KERNEL_CS 0x08
#define KERNEL_DS 0x10
#define KERNEL_CS32 0x18

/*
 * From 32-bit protected mode with paging off to compatibility mode on the
 * boot page tables (the caller far-jumps to a 64-bit CS). Clobbers EAX,
 * EBX, ECX, EDX. Runs no CPUID: an SNP guest's AP gets here after launch
 * with paging off and no IDT, where CPUID would raise a fatal #VC.
 */
.macro ENTER_LONG_MODE
	movl $boot_pml4_table, %eax
	movl %eax, %cr3

	/* OSFXSR too, so that a test may use SSE in inline asm. */
	movl %cr4, %eax
	orl $(CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT), %eax
	movl %eax, %cr4

	/* LME, and NXE if the BSP found NX (no CPUID here: see boot_efer). */
	movl $MSR_EFER, %ecx
	rdmsr
	orl boot_efer, %eax
	wrmsr

	/* WP: supervisor writes honour read-only PTEs, which tests rely on. */
	movl %cr0, %eax
	andl $~CR0_EM, %eax
	orl $(CR0_PE | CR0_MP | CR0_NE | CR0_WP | CR0_PG), %eax
	movl %eax, %cr0

	/* Now in compatibility mode on the current CS; load our GDT for the far jump. */
	lgdt gdt_desc
.endm

	/* QEMU looks for the header in the first 8 KiB of the file, 4-byte aligned. */
	.section .multiboot, "a"
	.balign 4
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)

	.section .text.boot, "ax"
	.code32
	.globl _start
_start:
	cli
	cld
	/* Keep magic and info pointer out of the registers rep stos uses. */
	movl %eax, %ebp
	movl %ebx, %esi

	/* Zero .bss ourselves: it holds the page tables and the stack. */
	movl $__bss_start, %edi
	movl $__bss_end, %ecx
	subl %edi, %ecx
	shrl $2, %ecx
	xorl %eax, %eax
	rep stosl

	movl $boot_stack_top, %esp

	/* No long mode: nothing below can work; leave QEMU with status 3. */
	movl $0x80000000, %eax
	cpuid
	cmpl $0x80000001, %eax
	jb no_long_mode
	movl $0x80000001, %eax
	cpuid
	btl $29, %edx
	jnc no_long_mode

	/* CPUID.80000001H:EDX bit 20 (NX) decides whether EFER.NXE may be set (else #GP). */
	movl $0x80000001, %eax
	cpuid
	movl $EFER_LME, %eax
	btl $20, %edx
	jnc 1f
	orl $EFER_NXE, %eax
1:	movl %eax, boot_efer

	/*
	 * SEV-SNP (as Linux's sev_enable(), arch/x86/boot/compressed/sev.c):
	 * CPUID 0x8000001F EAX bit 1 says SEV, then SEV_STATUS bit 2 says
	 * SNP, and EBX[5:0] is the C-bit position. Before the first access
	 * with paging on the VMM is still building the guest: CPUID and
	 * RDMSR run natively here.
	 */
	movl $0x80000000, %eax
	cpuid
	cmpl $0x8000001f, %eax
	jb .Lsnp_done
	movl $0x8000001f, %eax
	cpuid
	btl $CPUID_8000001F_EAX_SEV, %eax
	jnc .Lsnp_done
	movl %ebx, %edi
	movl $MSR_AMD64_SEV, %ecx
	rdmsr
	movl %eax, boot_sev_status
	movl %edx, boot_sev_status + 4
	btl $SEV_STATUS_SNP, %eax
	jnc .Lsnp_done
	andl $0x3f, %edi
	movl %edi, boot_c_bit
	movl %edi, %ecx
	movl $1, %eax
	movl $boot_c_bit_mask, %edx
	cmpl $32, %ecx
	jb 1f
	subl $32, %ecx
	addl $4, %edx
1:	shll %cl, %eax
	movl %eax, (%edx)
	/*
	 * RAM is private: the 2 MiB pages up to 1 MiB + Multiboot mem_upper
	 * (rounded up) get the C-bit. The MMIO hole above stays shared: a
	 * private access there would kill the guest.
	 */
	xorl %eax, %eax
	testl $1, (%esi)		/* Multiboot flags: mem_* valid */
	jz 1f
	movl 8(%esi), %eax		/* mem_upper, KiB from 1 MiB */
1:	addl $(1024 + 2047), %eax
	shrl $11, %eax
	cmpl $2048, %eax
	jbe 1f
	movl $2048, %eax
1:	movl %eax, boot_private_pdes
.Lsnp_done:

	jmp build_page_tables

	/*
	 * The boot vCPU of a TD started from a TDVF image (boot/efiboot-tdvf.S
	 * jumps here from the reset vector): 32-bit protected mode with paging
	 * off in the state TDH.VP.INIT gives it, ECX the TD HOB's address.
	 * EFER already has LME and NXE (the module's initial 0x901), and
	 * CPUID, which may be a #VE in a TD, must wait for the IDT. There is
	 * no SEV here. runtime_start() gets TDVF_BOOT_MAGIC and the HOB.
	 */
	.globl tdvf_start32
tdvf_start32:
	cli
	cld
	movl %ecx, %esi
	movl $TDVF_BOOT_MAGIC, %ebp
	movl $__bss_start, %edi
	movl $__bss_end, %ecx
	subl %edi, %ecx
	shrl $2, %ecx
	xorl %eax, %eax
	rep stosl
	movl $boot_stack_top, %esp
	movl $(EFER_LME | EFER_NXE), boot_efer

build_page_tables:
	/* PML4[0] -> PDPT, PDPT[0..3] -> 4 PDs, PD entries: 2 MiB identity pages. */
	movl $boot_pdpt, %eax
	orl $(PTE_P | PTE_W), %eax
	movl %eax, boot_pml4_table

	movl $boot_pd, %eax
	orl $(PTE_P | PTE_W), %eax
	xorl %ecx, %ecx
1:	movl %eax, boot_pdpt(, %ecx, 8)
	addl $4096, %eax
	incl %ecx
	cmpl $4, %ecx
	jb 1b

	/* The C-bit mask is 0 but in an SNP guest, boot_private_pdes 0 too. */
	movl $(PTE_P | PTE_W | PTE_PS), %eax
	xorl %ecx, %ecx
1:	movl %eax, boot_pd(, %ecx, 8)	/* high dword stays 0 from the bss clear... */
	cmpl boot_private_pdes, %ecx
	jae 2f
	movl boot_c_bit_mask, %edx	/* ...but for private RAM in an SNP guest */
	orl %edx, boot_pd(, %ecx, 8)
	movl boot_c_bit_mask + 4, %edx
	movl %edx, boot_pd + 4(, %ecx, 8)
2:	addl $(1 << 21), %eax
	incl %ecx
	cmpl $2048, %ecx
	jb 1b

	ENTER_LONG_MODE
	ljmp $KERNEL_CS, $start64

no_long_mode:
	movw $0xf4, %dx
	movl $1, %eax
	outl %eax, %dx
1:	hlt
	jmp 1b

	/*
	 * An AP, from ap_trampoline: protected mode, CS = KERNEL_CS32 of gdt,
	 * paging off, interrupts off.
	 */
	.globl ap_start32
ap_start32:
	movw $KERNEL_DS, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movw %ax, %fs
	movw %ax, %gs
	ENTER_LONG_MODE
	ljmp $KERNEL_CS, $ap_start64

	.code64
start64:
	movw $KERNEL_DS, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movw %ax, %fs
	movw %ax, %gs
	/* The upper halves of GPRs are undefined after the mode switch. */
	movl $boot_stack_top, %esp
	movl %ebp, %edi		/* arg 1: Multiboot magic */
	movl %esi, %esi		/* arg 2: Multiboot info pa */
	xorl %ebp, %ebp		/* end of frame-pointer chains */
	call runtime_start
1:	cli
	hlt
	jmp 1b

	/*
	 * Each AP takes the next slot (1, 2, ...) of smp.c's tables in arrival
	 * order; smp_init() numbers the CPUs by APIC ID afterwards. An AP
	 * beyond the slots smp_init() prepared parks here for good.
	 */
ap_start64:
	movw $KERNEL_DS, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movw %ax, %fs
	movw %ax, %gs
	movl $1, %eax
	lock xaddl %eax, ap_arrived(%rip)
	incl %eax
	cmpl ap_slots(%rip), %eax
	jae ap_park
	movq ap_stack_tops(, %rax, 8), %rsp
	testq %rsp, %rsp
	jz ap_park
	movl %eax, %edi		/* arg 1: slot */
	xorl %ebp, %ebp
	call ap_main
ap_park:
	cli
	hlt
	jmp ap_park

	/*
	 * The SIPI entry: smp_init() copies [ap_trampoline, ap_trampoline_end)
	 * to AP_TRAMPOLINE_PA, and the AP starts here in real mode with
	 * CS = AP_TRAMPOLINE_PA >> 4, IP = 0. Position independent but for
	 * the far jump, whose target is in the image above 1 MiB.
	 */
	.section .rodata.ap_trampoline, "a"
	.code16
	.globl ap_trampoline, ap_trampoline_end
ap_trampoline:
	cli
	cld
	movw %cs, %ax
	movw %ax, %ds
	lgdtl ap_trampoline_gdt_desc - ap_trampoline
	movl %cr0, %eax
	orl $CR0_PE, %eax
	movl %eax, %cr0
	ljmpl $KERNEL_CS32, $ap_start32
	.balign 4
ap_trampoline_gdt_desc:
	.word gdt_end - gdt - 1
	.long gdt
ap_trampoline_end:
	.code64

	.section .rodata
	.balign 8
gdt:
	.quad 0				/* null */
	.quad 0x00af9a000000ffff	/* 0x08: 64-bit code, DPL0 */
	.quad 0x00cf92000000ffff	/* 0x10: data, DPL0 */
	.quad 0x00cf9a000000ffff	/* 0x18: 32-bit code, DPL0 (AP bring-up) */
gdt_end:
gdt_desc:
	.word gdt_end - gdt - 1
	.long gdt

	/*
	 * Filled in by the BSP before paging (after the bss clear): the EFER
	 * bits every CPU sets, and what snp.c needs to know about SEV-SNP.
	 */
	.section .bss
	.balign 8
	.globl boot_efer, boot_sev_status, boot_c_bit, boot_c_bit_mask
boot_sev_status:	/* SEV_STATUS (MSR 0xc0010131) if CPUID says SEV, else 0 */
	.skip 8
boot_c_bit_mask:	/* 1 << C-bit position in an SNP guest, else 0 */
	.skip 8
boot_efer:		/* EFER_LME | EFER_NXE if NX */
	.skip 4
boot_c_bit:		/* CPUID 0x8000001F EBX[5:0] in an SNP guest */
	.skip 4
boot_private_pdes:	/* boot_pd entries that map private RAM (SNP) */
	.skip 4

	.balign 4096
	.globl boot_pml4_table
boot_pml4_table:
	.skip 4096
boot_pdpt:
	.skip 4096
boot_pd:
	.skip 4 * 4096
	.balign 16
boot_stack:
	.skip BOOT_STACK_SIZE
boot_stack_top:

	.section .note.GNU-stack, "", @progbits
