/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * efiboot-tdvf.S: what makes efiboot (boot/efiboot.c) a TD's firmware,
 * a -bios image a TD starts from as it starts from OVMF (TDVF): its
 * metadata, the reset vector every vCPU starts at, and the mailbox the
 * application processors wait in until the OS wakes them through the ACPI
 * MADT multiprocessor wakeup structure (ACPI 6.5 §5.2.12.19; Linux
 * arch/x86/kernel/acpi/madt_wakeup.c). Linked by boot/efiboot-fd.ld with
 * efiboot and the runtime into $(O)/efiboot.fd.
 *
 * The image (TDVF design guide §11; QEMU hw/i386/tdvf.c reads it) is
 * efiboot linked at 1 MiB, then zeros, then this file's reset page at
 * 0xfffff000. Its metadata asks the VMM to add at the TD's start
 * (TDH.MEM.PAGE.ADD), before any vCPU runs:
 *
 *   - BFV: the reset page in place, measured (MR.EXTEND);
 *   - BFV: efiboot (text, rodata, data: the first __bfv_size bytes of the
 *     image) copied to 1 MiB, measured;
 *   - TempMem: efiboot's .bss, zeroed;
 *   - TD_HOB: after the .bss, where the VMM writes the TD HOB.
 *
 * Every vCPU then starts at 0xfffffff0 in the state TDH.VP.INIT gives it:
 * 32-bit protected mode, paging off, EFER.LME set, ESI its vCPU index, ECX
 * (and R8) the TD HOB's address. vCPU 0 runs efiboot (boot.S
 * tdvf_start32). The others wait here with paging off until efiboot has
 * filled park_apic_ids from the MADT and set park_release, then spin in
 * the mailbox loop in 64-bit mode on this file's page tables. Everything an
 * AP uses from then on lies in the park area at the start of the image,
 * which efiboot types ACPI NVS in both memory maps, so that the OS leaves
 * it alone while some APs still wait.
 */

#define MAX_CPUS 64 /* runtime/libcflat.h */

/* struct acpi_madt_multiproc_wakeup_mailbox: command, apic_id, wakeup_vector. */
#define MB_COMMAND 0
#define MB_APIC_ID 4
#define MB_WAKEUP_VECTOR 8
#define MP_WAKE_COMMAND_WAKEUP 1
#define MP_WAKE_COMMAND_TEST 2 /* Linux acpi_mp_cpu_die(): the firmware has the CPU */

#define TDG_VP_INFO 1

#define TDVF_SECTION_BFV 0
#define TDVF_SECTION_TD_HOB 2
#define TDVF_SECTION_TEMP_MEM 3
#define TDVF_ATTR_MR_EXTEND 1

	/* The mailbox: one 4 KiB-aligned page (ACPI 6.5 Table 5.44). */
	.section .park.mailbox, "aw"
	.balign 4096
	.globl efiboot_mailbox
efiboot_mailbox:
	.skip 4096

	/* An identity map of the low 1 GiB with 2 MiB pages (all private). */
	.section .park.tables, "aw"
	.balign 4096
park_pml4:
	.quad park_pdpt + 3
	.skip 4096 - 8
park_pdpt:
	.quad park_pd + 3
	.skip 4096 - 8
park_pd:
	.set i, 0
	.rept 512
	.quad (i << 21) | 0x83
	.set i, i + 1
	.endr

	.section .park.text, "ax"
	.balign 4096
	/*
	 * The MADT wakeup structure's reset vector (version 1): Linux sends a
	 * CPU it offlines here (acpi_mp_play_dead(): 64-bit mode, interrupts
	 * off, CR3 an identity map that holds this page). Back to the park
	 * tables first, then the vCPU index from TDG.VP.INFO (R9[31:0]), as
	 * the registers are Linux's, and the mailbox loop.
	 */
	.code64
	.globl efiboot_park_reset
efiboot_park_reset:
	cli
	movl $park_pml4, %eax
	movq %rax, %cr3
	lgdt park_gdt_desc
	movl $TDG_VP_INFO, %eax
	.byte 0x66, 0x0f, 0x01, 0xcc	/* tdcall */
	movl %r9d, %esi
	jmp park_loop_index

	/*
	 * Every vCPU comes here from the reset vector (below). vCPU 0 goes
	 * on to efiboot; an AP waits for park_release with paging off.
	 */
	.code32
	.globl tdvf_entry
tdvf_entry:
	testl %esi, %esi
	jz tdvf_start32
1:	pause
	cmpl $0, park_release
	je 1b
	/* Long mode on the park tables (EFER.LME is set already). */
	movl $park_pml4, %eax
	movl %eax, %cr3
	movl %cr4, %eax
	orl $0x20, %eax			/* PAE */
	movl %eax, %cr4
	lgdt park_gdt_desc
	movl %cr0, %eax
	orl $0x80000000, %eax		/* PG */
	movl %eax, %cr0
	ljmp $0x08, $park64

	.code64
park64:
	movl $0x10, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
park_loop_index:
	/* The APIC ID of vCPU ESI, as the MADT lists the vCPUs in order. */
	movl %esi, %esi
	movl %esi, %edi
	cmpl park_ncpus, %esi
	jae park_loop
	movl park_apic_ids(, %rsi, 4), %edi
	/*
	 * The mailbox protocol (ACPI 6.5 §5.2.12.19, Linux acpi_wakeup_cpu()
	 * and acpi_mp_cpu_die()): the OS writes apic_id and wakeup_vector,
	 * then the command. The AP named reads the vector before it clears
	 * the command (the acknowledgment), since the OS may reuse the
	 * mailbox for the next AP at once, and jumps to the vector in 64-bit
	 * mode on this identity map with interrupts off. TEST is
	 * acknowledged in place.
	 */
park_loop:
	pause
	movzwl efiboot_mailbox + MB_COMMAND, %eax
	testl %eax, %eax
	jz park_loop
	cmpl efiboot_mailbox + MB_APIC_ID, %edi
	jne park_loop
	cmpl $MP_WAKE_COMMAND_WAKEUP, %eax
	je 2f
	cmpl $MP_WAKE_COMMAND_TEST, %eax
	jne park_loop
	movw $0, efiboot_mailbox + MB_COMMAND
	jmp park_loop
2:	movq efiboot_mailbox + MB_WAKEUP_VECTOR, %rax
	movw $0, efiboot_mailbox + MB_COMMAND
	jmp *%rax

	.section .park.data, "aw"
	.balign 8
park_gdt:
	.quad 0
	.quad 0x00af9a000000ffff	/* 0x08: 64-bit code */
	.quad 0x00cf92000000ffff	/* 0x10: data */
park_gdt_desc:
	.word park_gdt_desc - park_gdt - 1
	.quad park_gdt
	/* Written by efiboot (efiboot.c park_aps()) before park_release. */
	.balign 4
	.globl park_release, park_ncpus, park_apic_ids
park_release:
	.long 0
park_ncpus:
	.long 0
park_apic_ids:
	.skip 4 * MAX_CPUS

	/*
	 * The last page of the image, at 0xfffff000: the TDVF metadata, OVMF's
	 * GUIDed table (read backwards from its footer, 32 bytes before the
	 * end) and the reset vector.
	 */
	.section .resetpage, "ax"
tdvf_metadata:
	.ascii "TDVF"
	.long 16 + 32 * 4, 1, 4
	/* Each: data offset in the image, data size, GPA, size, type, attributes. */
	.long __fd_size - 0x1000, 0x1000
	.quad 0xfffff000, 0x1000
	.long TDVF_SECTION_BFV, TDVF_ATTR_MR_EXTEND
	.long 0, __bfv_size
	.quad __image_start, __bfv_size
	.long TDVF_SECTION_BFV, TDVF_ATTR_MR_EXTEND
	.long 0, 0
	.quad __bss_start, __bss_size
	.long TDVF_SECTION_TEMP_MEM, 0
	.long 0, 0
	.quad __td_hob, __td_hob_size
	.long TDVF_SECTION_TD_HOB, 0

	.org 0xfb8
	.long 0x1000			/* the metadata's offset from the end */
	.word 22
	/* e47a6535-984a-4798-865e-4685a7bf8ec2: the TDVF metadata's offset */
	.byte 0x35, 0x65, 0x7a, 0xe4, 0x4a, 0x98, 0x98, 0x47
	.byte 0x86, 0x5e, 0x46, 0x85, 0xa7, 0xbf, 0x8e, 0xc2
	.word 40
	/* 96b582de-1fb2-45f7-baea-a366c55a082d: the table's footer */
	.byte 0xde, 0x82, 0xb5, 0x96, 0xb2, 0x1f, 0xf7, 0x45
	.byte 0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d

	/* 0xfffffff0: every vCPU's first instruction. */
	.org 0xff0
	.code32
	movl $tdvf_entry, %eax
	jmp *%eax
	.org 0x1000

	.section .note.GNU-stack, "", @progbits
