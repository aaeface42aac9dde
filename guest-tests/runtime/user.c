// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * user.c: one instruction at CPL 3, for tests that check what an
 * instruction does from user mode (tdxfuzz's and snpfuzz's ring-3 phase).
 *
 * user_init() gives the BSP a GDT with DPL 3 code and data segments and a
 * 64-bit TSS (RSP0: the stack exceptions from CPL 3 switch to; no I/O
 * permission bitmap, so IN/OUT at CPL 3 with IOPL 0 raise #GP, SDM vol. 1
 * 19.5), and sets the U bit on the paging entries that map the stubs
 * (user.S, copied into a page of the allocator's). user_run() loads every GPR, enters the instruction's stub at
 * CPL 3 with IF and IOPL 0, and returns how the CPL 3 run ended: an
 * exception at the instruction, or the UD2 after it (it completed). A #VE
 * or #VC at CPL 3 goes to the runtime's handler first, as Linux handles
 * a user CPUID: if it emulates the instruction, the stub runs on.
 */
#include "internal.h"

#define USER_DS_SEL 0x20
#define USER_CS_SEL 0x28
#define TSS_SEL 0x30
#define KERNEL_DS_SEL 0x10

struct tss64 {
	u32 reserved0;
	u64 rsp0, rsp1, rsp2;
	u64 reserved1;
	u64 ist[7];
	u64 reserved2;
	u16 reserved3;
	u16 iomap_base;
} __attribute__((packed));

extern const char user_stubs[], user_stubs_end[];
void user_enter(const struct user_regs *r, u64 rip, u64 rsp);
void user_return(void);
/* The kernel RSP user_enter() saved, for exception_dispatch(). */
u64 user_kernel_rsp;

static u64 gdt[8] __attribute__((aligned(16)));
static struct tss64 tss __attribute__((aligned(16)));
/* Pages from the allocator at user_init(): no image grows for them. */
static u8 *stubs, *user_stack, *ring0_stack;
static bool user_active;
static struct user_result result;

/* Sets the U bit on every paging entry on the way to va's leaf. */
static void allow_user(u64 va)
{
	/* The tables lie in the identity map; the C-bit is not an address bit. */
	const u64 addr = (BOOT_IDENTITY_MAP_END - 1) & ~0xffful;
	u64 *table = pa_to_ptr(read_cr3() & addr);

	for (int level = 4; level >= 1; level--) {
		u64 *e = &table[(va >> (12 + 9 * (level - 1))) & 511];

		*e |= PT_USER;
		if (level == 1 || ((level == 2 || level == 3) && (*e & PT_PAGE_SIZE)))
			break;
		table = pa_to_ptr(*e & addr);
	}
}

void user_init(void)
{
	struct {
		u16 limit;
		u64 base;
	} __attribute__((packed)) gdtr;
	u64 base = (u64)(uintptr_t)&tss, limit = sizeof(tss) - 1;

	asm volatile("sgdt %0" : "=m"(gdtr));
	/* The runtime's four (null, code64, data, code32), then ours. */
	for (int i = 0; i < 4; i++)
		gdt[i] = ((const u64 *)(uintptr_t)gdtr.base)[i];
	gdt[USER_DS_SEL / 8] = 0x00cff2000000fffful; /* data, DPL 3 */
	gdt[USER_CS_SEL / 8] = 0x00affa000000fffful; /* 64-bit code, DPL 3 */
	/* An available 64-bit TSS (type 9), present, DPL 0 (SDM vol. 3 8.2.3). */
	gdt[TSS_SEL / 8] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ul << 40) |
			   (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
	gdt[TSS_SEL / 8 + 1] = base >> 32;
	stubs = alloc_page();
	user_stack = alloc_page();
	ring0_stack = alloc_page();
	memcpy(stubs, user_stubs, (u64)(user_stubs_end - user_stubs));
	tss.rsp0 = (u64)(uintptr_t)(ring0_stack + PAGE_SIZE);
	tss.iomap_base = sizeof(tss); /* no bitmap: every port needs CPL <= IOPL */
	gdtr.limit = sizeof(gdt) - 1;
	gdtr.base = (u64)(uintptr_t)gdt;
	asm volatile("lgdt %0" :: "m"(gdtr));
	asm volatile("ltr %w0" :: "r"(TSS_SEL));
	allow_user((u64)(uintptr_t)stubs);
	allow_user((u64)(uintptr_t)user_stack);
	write_cr3(read_cr3());
}

struct user_result user_run(enum user_insn insn, const struct user_regs *regs)
{
	result = (struct user_result){ .vector = -1 };
	user_active = true;
	user_enter(regs, (u64)(uintptr_t)stubs + 16 * (u64)insn,
		   (u64)(uintptr_t)(user_stack + PAGE_SIZE));
	user_active = false;
	return result;
}

bool user_exception(struct ex_regs *regs)
{
	u64 stub;

	if (!user_active)
		return false;
	if (regs->vector == VE_VECTOR && tdx_ve_entry(regs))
		return true;
	if (regs->vector == VC_VECTOR && snp_handle_vc(regs))
		return true;
	stub = (u64)(uintptr_t)stubs + (regs->rip - (u64)(uintptr_t)stubs) / 16 * 16;
	result.vector = (int)regs->vector;
	result.error_code = regs->error_code;
	result.completed = regs->vector == UD_VECTOR && regs->rip != stub;
	result.rip = regs->rip;
	/* Back to user_return at CPL 0, on the stack user_enter() left. */
	regs->rip = (u64)(uintptr_t)user_return;
	regs->cs = KERNEL_CS;
	regs->ss = KERNEL_DS_SEL;
	regs->rsp = user_kernel_rsp;
	regs->rflags = 0x2;
	return true;
}
