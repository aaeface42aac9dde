// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * tdx.c: the runtime's #VE handler for TDs (tdx.h).
 *
 * In a running TD port I/O (IN, OUT, INS, OUTS) and HLT do not execute:
 * the TDX module turns them into a #VE (TDX module base spec, "#VE on
 * instruction execution"), and the guest asks the VMM with TDVMCALL IO or
 * HLT, as Linux's virt_exception_kernel() does (arch/x86/coco/tdx/tdx.c:
 * handle_io(), handle_halt()). So do CPUID of a leaf the module leaves to
 * the VMM and RDMSR/WRMSR of an MSR it does not virtualize (exit reasons
 * 10, 31, 32; Linux handle_cpuid(), read_msr(), write_msr()). The VE information must be read with
 * TDG.VP.VEINFO.GET before anything that may #VE again: a #VE while it is
 * unread is a #DF (Linux tdx_get_ve_info()). So the runtime's #VE entry
 * reads it first, before any output, then emulates port I/O and HLT and
 * skips the instruction by the length the module reports; any other #VE
 * (an EPT violation) goes on to ASM_TRY or the default handler, with its
 * VE information kept for tdx_veinfo_get(). A test's own #VE handler
 * (handle_exception(VE_VECTOR, ...)) runs instead of all this: it reads
 * the VE information itself, first, and may pass it to tdx_handle_ve().
 *
 * Boot order: the TD launches at the first access with paging on, in
 * boot.S; runtime_start() loads GS and the IDT and calls tdx_init_bsp()
 * before it parses anything that could report a failure or prints, so
 * every port access of the runtime finds this handler. APs load the IDT
 * first thing in ap_main().
 */
#include "internal.h"
#include "insn.h"
#include "snp.h"
#include "tdx.h"

static bool td_guest;
/* Emulated port I/O, HLT, passed on, CPUID, RDMSR and WRMSR. */
static u64 ve_counts[6];

void tdx_init_bsp(void)
{
	/* CPUID 0x21 before an SNP guest has its GHCB would terminate it. */
	td_guest = !is_snp_guest() && is_tdx_guest();
}

static int ve_count_index(u64 exit_reason)
{
	switch (exit_reason) {
	case EXIT_REASON_IO_INSTRUCTION: return 0;
	case EXIT_REASON_HLT: return 1;
	case EXIT_REASON_CPUID: return 3;
	case EXIT_REASON_MSR_READ: return 4;
	case EXIT_REASON_MSR_WRITE: return 5;
	default: return 2;
	}
}

u64 tdx_ve_count(u64 exit_reason)
{
	return __atomic_load_n(&ve_counts[ve_count_index(exit_reason)], __ATOMIC_RELAXED);
}

/* TDVMCALL IO (GHCI; Linux handle_in()/handle_out()): R12 size, R13 1 for a write, R14 port. */
static bool tdvmcall_io(void *ctx, const struct io_insn *io, u32 *value)
{
	struct tdx_module_args a = {
		.r10 = TDX_HYPERCALL_STANDARD,
		.r11 = EXIT_REASON_IO_INSTRUCTION,
		.r12 = (u64)io->size,
		.r13 = !io->in,
		.r14 = io->port,
		.r15 = io->in ? 0 : *value & size_mask(io->size),
	};

	(void)ctx;
	if (tdvmcall(&a))
		return false;
	if (io->in)
		*value = (u32)(a.r11 & size_mask(io->size));
	return true;
}

/*
 * Exit qualification of an I/O instruction (SDM vol. 3C Table 28-5):
 * bits 2:0 size - 1, 3 IN, 4 string, 5 REP, 6 immediate port, 31:16 port.
 */
static bool ve_io(struct ex_regs *regs, u64 qual)
{
	struct io_insn io = {
		.port = (u16)(qual >> 16),
		.size = (int)(qual & 7) + 1,
		.in = qual & (1 << 3),
		.string = qual & (1 << 4),
		.rep = qual & (1 << 5),
		.imm = qual & (1 << 6),
		.amask = ~0ul,
	};

	if (io.size != 1 && io.size != 2 && io.size != 4)
		return false;
	if (io.string) {
		/* Linux refuses string I/O; here it is simple enough, but the
		 * address size is the instruction's. */
		struct io_insn d;

		if (!io_insn_decode(regs, &d) || !d.string || d.in != io.in || d.size != io.size ||
		    d.port != io.port || d.rep != io.rep)
			return false;
		return io_string(regs, &d, tdvmcall_io, NULL);
	}
	{
		u32 v = (u32)regs->rax;

		if (!tdvmcall_io(NULL, &io, &v))
			return false;
		if (io.in)
			io_set_ax(regs, io.size, v);
	}
	return true;
}

/* TDVMCALL HLT: R12 says whether interrupts are blocked (Linux __halt()). */
static bool ve_hlt(struct ex_regs *regs)
{
	struct tdx_module_args a = {
		.r10 = TDX_HYPERCALL_STANDARD,
		.r11 = EXIT_REASON_HLT,
		.r12 = !(regs->rflags & (1ul << 9)), /* IF */
	};

	return tdvmcall(&a) == 0;
}

/*
 * CPUID: as Linux's handle_cpuid(), only the hypervisor range goes to the
 * VMM (TDVMCALL CPUID: R12 leaf, R13 sub-leaf; R12-R15 EAX-EDX); every
 * other leaf the module does not answer reads 0.
 */
static bool ve_cpuid(struct ex_regs *regs)
{
	struct tdx_module_args a = {
		.r10 = TDX_HYPERCALL_STANDARD,
		.r11 = EXIT_REASON_CPUID,
		.r12 = (u32)regs->rax,
		.r13 = (u32)regs->rcx,
	};

	if (a.r12 < 0x40000000 || a.r12 > 0x4fffffff) {
		regs->rax = regs->rbx = regs->rcx = regs->rdx = 0;
		return true;
	}
	if (tdvmcall(&a))
		return false;
	regs->rax = (u32)a.r12;
	regs->rbx = (u32)a.r13;
	regs->rcx = (u32)a.r14;
	regs->rdx = (u32)a.r15;
	return true;
}

/* TDVMCALL RDMSR (R12 the MSR; R11 the value) and WRMSR (R13 the value). */
static bool ve_msr(struct ex_regs *regs, bool write)
{
	struct tdx_module_args a = {
		.r10 = TDX_HYPERCALL_STANDARD,
		.r11 = write ? EXIT_REASON_MSR_WRITE : EXIT_REASON_MSR_READ,
		.r12 = (u32)regs->rcx,
		.r13 = write ? (regs->rdx << 32) | (u32)regs->rax : 0,
	};

	if (tdvmcall(&a))
		return false;
	if (!write) {
		regs->rax = (u32)a.r11;
		regs->rdx = a.r11 >> 32;
	}
	return true;
}

bool tdx_handle_ve(struct ex_regs *regs, const struct tdx_module_args *ve)
{
	u32 len = (u32)ve->r10; /* bits 31:0 the instruction length */
	bool ok;

	switch (ve->rcx) {
	case EXIT_REASON_IO_INSTRUCTION:
		ok = ve_io(regs, ve->rdx);
		break;
	case EXIT_REASON_HLT:
		ok = ve_hlt(regs);
		break;
	case EXIT_REASON_CPUID:
		ok = ve_cpuid(regs);
		break;
	case EXIT_REASON_MSR_READ:
	case EXIT_REASON_MSR_WRITE:
		ok = ve_msr(regs, ve->rcx == EXIT_REASON_MSR_WRITE);
		break;
	default:
		return false;
	}
	if (!ok || !len)
		return false;
	regs->rip += len;
	__atomic_fetch_add(&ve_counts[ve_count_index(ve->rcx)], 1, __ATOMIC_RELAXED);
	return true;
}

bool tdx_ve_entry(struct ex_regs *regs)
{
	struct percpu *cpu = this_cpu();
	struct tdx_module_args ve = { 0 };

	if (!td_guest)
		return false;
	/* First, before anything that may #VE (or print). */
	if (tdcall(TDG_VP_VEINFO_GET, &ve))
		return false;
	if (tdx_handle_ve(regs, &ve))
		return true;
	__atomic_fetch_add(&ve_counts[ve_count_index(0)], 1, __ATOMIC_RELAXED);
	cpu->ve_info[0] = ve.rcx;
	cpu->ve_info[1] = ve.rdx;
	cpu->ve_info[2] = ve.r8;
	cpu->ve_info[3] = ve.r9;
	cpu->ve_info[4] = ve.r10;
	cpu->ve_info_valid = true;
	return false;
}

void tdx_dump_ve(void)
{
	struct percpu *cpu = this_cpu();

	if (cpu->ve_info_valid)
		printf("VE info: exit reason %lu, qualification %lx, GLA %lx, GPA %lx, "
		       "instruction length %lu\n", cpu->ve_info[0], cpu->ve_info[1],
		       cpu->ve_info[2], cpu->ve_info[3], cpu->ve_info[4] & 0xffffffff);
}

u64 tdx_veinfo_get(struct tdx_module_args *a)
{
	struct percpu *cpu = this_cpu();

	if (!cpu->ve_info_valid)
		return tdcall(TDG_VP_VEINFO_GET, a);
	cpu->ve_info_valid = false;
	a->rcx = cpu->ve_info[0];
	a->rdx = cpu->ve_info[1];
	a->r8 = cpu->ve_info[2];
	a->r9 = cpu->ve_info[3];
	a->r10 = cpu->ve_info[4];
	return TDX_SUCCESS;
}
