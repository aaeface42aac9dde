/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tdx.h: helpers for tests of a TDX guest (a TD), written against the ABI
 * Linux uses (arch/x86/include/asm/shared/tdx.h, tdx_errno.h,
 * arch/x86/coco/tdx/tdx.c) and the TDX module / GHCI specifications.
 *
 * tdcall() is in tdx.S; everything else is inline. Nothing here checks that
 * the guest is a TD: TDCALL raises #UD elsewhere (use is_tdx_guest()).
 *
 * Shared memory: a TD reaches the shared (VMM-visible) alias of a GPA by
 * setting the shared bit, bit GPAW-1 of the GPA (tdx_shared_mask()), in the
 * page-table entry; the runtime's page-table helpers keep every address bit
 * of PT_ADDR_MASK (51:12), so
 *
 *	install_page(pml4, va, pa | tdx_shared_mask(), PT_PRESENT | PT_WRITABLE);
 *
 * maps va to the shared alias of pa (install_page_shared() does that).
 * The CPU takes a PTE address bit at or above MAXPHYADDR as reserved (#PF
 * with PFERR_RSVD), and QEMU's -cpu max has 40 physical address bits: a TD
 * test needs `-cpu max,phys-bits=52` (GPAW 52) or phys-bits=48 (GPAW 48).
 */
#ifndef CVMEM_TDX_H
#define CVMEM_TDX_H

#include "libcflat.h"

#define TDX_CPUID_LEAF_ID 0x21
#define TDX_IDENT "IntelTDX    " /* CPUID 0x21.0: EBX, EDX, ECX */

/* ---- TDCALL leaves (RAX) ---------------------------------------------- */

#define TDG_VP_VMCALL 0
#define TDG_VP_INFO 1
#define TDG_MR_RTMR_EXTEND 2
#define TDG_VP_VEINFO_GET 3
#define TDG_MR_REPORT 4
#define TDG_VP_CPUIDVE_SET 5
#define TDG_MEM_PAGE_ACCEPT 6
#define TDG_VM_RD 7
#define TDG_VM_WR 8
#define TDG_VP_RD 9
#define TDG_VP_WR 10
#define TDG_SYS_RD 11

/* Page levels of TDG.MEM.PAGE.ACCEPT's RCX[2:0] (Linux's TDX_PS_*). */
#define TDX_PS_4K 0
#define TDX_PS_2M 1
#define TDX_PS_1G 2

/* ---- TDX module status codes (RAX after TDCALL) --------------------------- */

/* Bits 63:32 are the class, bits 31:0 details (e.g. the operand ID). */
#define TDX_STATUS_MASK 0xFFFFFFFF00000000ul
#define TDX_SUCCESS 0ul
#define TDX_NON_RECOVERABLE_VCPU 0x4000000100000000ul
#define TDX_NON_RECOVERABLE_TD 0x4000000200000000ul
#define TDX_INTERRUPTED_RESUMABLE 0x8000000300000000ul
#define TDX_OPERAND_INVALID 0xC000010000000000ul
#define TDX_OPERAND_BUSY 0x8000020000000000ul
#define TDX_PREVIOUS_TLB_EPOCH_BUSY 0x8000020100000000ul
#define TDX_PAGE_METADATA_INCORRECT 0xC000030000000000ul
#define TDX_OP_STATE_INCORRECT 0xC000060800000000ul
#define TDX_EPT_WALK_FAILED 0xC0000B0000000000ul
#define TDX_GPA_RANGE_NOT_BLOCKED 0xC0000B0600000000ul
#define TDX_GPA_RANGE_ALREADY_BLOCKED 0x00000B0700000000ul
#define TDX_TLB_TRACKING_NOT_DONE 0xC0000B0800000000ul
#define TDX_EPT_INVALID_PROMOTE_CONDITIONS 0xC0000B0900000000ul
#define TDX_PAGE_ALREADY_ACCEPTED 0x00000B0A00000000ul /* detail: the mapped level */
#define TDX_PAGE_SIZE_MISMATCH 0xC0000B0B00000000ul
#define TDX_EPT_ENTRY_STATE_INCORRECT 0xC0000B0D00000000ul
#define TDX_NO_VALID_VE_INFO 0xC000070400000000ul
#define TDX_METADATA_FIELD_ID_INCORRECT 0xC0000C0000000000ul
#define TDX_METADATA_FIELD_NOT_WRITABLE 0xC0000C0100000000ul
#define TDX_METADATA_FIELD_NOT_READABLE 0xC0000C0200000000ul
#define TDX_METADATA_FIELD_VALUE_NOT_VALID 0xC0000C0300000000ul
#define TDX_METADATA_FIRST_FIELD_ID_IN_CONTEXT 0x00000C0B00000000ul
#define TDX_OPERAND_ID_RCX 0x01 /* e.g. TDX_OPERAND_INVALID | TDX_OPERAND_ID_RCX */

static inline u64 tdx_status_class(u64 rax) { return rax & TDX_STATUS_MASK; }

/* ---- TD attributes (TDG.VP.INFO RDX) ------------------------------------- */

#define TDX_ATTR_DEBUG (1ul << 0)
#define TDX_ATTR_HGS_PLUS_PROF (1ul << 4)
#define TDX_ATTR_PERF_PROF (1ul << 5)
#define TDX_ATTR_PMT_PROF (1ul << 6)
#define TDX_ATTR_ICSSD (1ul << 16)
#define TDX_ATTR_LASS (1ul << 27)
#define TDX_ATTR_SEPT_VE_DISABLE (1ul << 28)
#define TDX_ATTR_MIGRATABLE (1ul << 29)
#define TDX_ATTR_PKS (1ul << 30)
#define TDX_ATTR_KL (1ul << 31)
#define TDX_ATTR_TPA (1ul << 62)
#define TDX_ATTR_PERFMON (1ul << 63)

/* ---- TDG.VP.VMCALL (GHCI) ----------------------------------------------- */

/* TD-scope metadata fields (Linux asm/shared/tdx.h) for TDG.VM.RD/WR. */
#define TDCS_TDX_FEATURES0 0x0A00000300000008ul /* TDG.SYS.RD */
#define TDCS_CONFIG_FLAGS 0x1110000300000016ul
#define TDCS_TD_CTLS 0x1110000300000017ul
#define TDCS_NOTIFY_ENABLES 0x9100000000000010ul
#define TDCS_TOPOLOGY_ENUM_CONFIGURED 0x9100000000000019ul
#define TDCS_CONFIG_FLEXIBLE_PENDING_VE (1ul << 1)
#define TDCS_CONFIG_GPAW (1ul << 0)
/* More TD-scope fields a guest reads (TDX module tdr_tdcs_fields_lookup.c). */
#define TDCS_ATTRIBUTES 0x1110000300000000ul
#define TDCS_XFAM 0x1110000300000001ul
#define TDCS_MAX_VCPUS 0x1110000200000002ul
#define TDCS_GPAW 0x1110000000000003ul
#define TDCS_EPTP 0x1110000300000004ul
#define TDCS_NUM_VCPUS 0x9010000200000001ul
#define TDCS_MRTD 0x1310000300000000ul /* 6 elements */
#define TDCS_RTMR 0x1310000300000040ul /* 4 fields of 6 elements */
#define TDG_VM_RD_VERSION1 (1ul << 16) /* RAX: returns the next field ID */
#define TD_CTLS_PENDING_VE_DISABLE (1ul << 0)
#define TD_CTLS_ENUM_TOPOLOGY (1ul << 1)
#define TD_CTLS_VIRT_CPUID2 (1ul << 2)
#define TD_CTLS_REDUCE_VE (1ul << 3)
#define TD_CTLS_LOCK (1ul << 63)
#define TDX_FEATURES0_TDG_VP_RDWR (1ul << 3)
#define TDX_FEATURES0_CPUID_VIRT_GUEST_CTRL (1ul << 5)
#define TDX_FEATURES0_VE_REDUCTION (1ul << 30)

/* VCPU-scope metadata (TDX module 1.5 tdvps_fields_lookup.c) for TDG.VP.RD/WR. */
#define TDVPS_VCPU_INDEX 0xA020000200000002ul
#define TDVPS_CPUID_SUPERVISOR_VE 0xA020000000000007ul
#define TDVPS_CPUID_USER_VE 0xA020000000000008ul
#define TDVPS_CPUID_CONTROL 0xA120000000000000ul /* + the module's CPUID lookup index */
#define TDVPS_RAX 0x1020000300000000ul

#define TDX_HYPERCALL_STANDARD 0 /* R10 on entry: the GHCI's ABI (else vendor) */

/* Sub-functions (R11): GHCI leaves, and VMX exit reasons for instructions. */
#define TDVMCALL_GET_TD_VM_CALL_INFO 0x10000
#define TDVMCALL_MAP_GPA 0x10001
#define TDVMCALL_GET_QUOTE 0x10002
#define TDVMCALL_REPORT_FATAL_ERROR 0x10003
#define TDVMCALL_SETUP_EVENT_NOTIFY_INTERRUPT 0x10004
#define EXIT_REASON_CPUID 10
#define EXIT_REASON_HLT 12
#define EXIT_REASON_CR_ACCESS 28
#define EXIT_REASON_IO_INSTRUCTION 30
#define EXIT_REASON_MSR_READ 31
#define EXIT_REASON_MSR_WRITE 32
#define EXIT_REASON_EPT_VIOLATION 48 /* #VE.RequestMMIO */

/* Status (R10 on return). */
#define TDVMCALL_STATUS_SUCCESS 0x0000000000000000ul
#define TDVMCALL_STATUS_RETRY 0x0000000000000001ul
#define TDVMCALL_STATUS_INVALID_OPERAND 0x8000000000000000ul
#define TDVMCALL_STATUS_GPA_INUSE 0x8000000000000001ul /* GHCI; not in Linux */
#define TDVMCALL_STATUS_ALIGN_ERROR 0x8000000000000002ul
#define TDVMCALL_STATUS_SUBFUNC_UNSUPPORTED 0x8000000000000003ul

/* RCX of TDG.VP.VMCALL: bit n exposes GPR n (RAX 0, RCX 1, RDX 2, RBX 3, ...). */
#define TDX_RDX (1ul << 2)
#define TDX_RBX (1ul << 3)
#define TDX_RSI (1ul << 6)
#define TDX_RDI (1ul << 7)
#define TDX_R8 (1ul << 8)
#define TDX_R9 (1ul << 9)
#define TDX_R10 (1ul << 10)
#define TDX_R11 (1ul << 11)
#define TDX_R12 (1ul << 12)
#define TDX_R13 (1ul << 13)
#define TDX_R14 (1ul << 14)
#define TDX_R15 (1ul << 15)
/* What Linux's __tdx_hypercall() exposes: every argument register. */
#define TDVMCALL_EXPOSE_REGS_MASK                                         \
	(TDX_RDX | TDX_RBX | TDX_RSI | TDX_RDI | TDX_R8 | TDX_R9 | TDX_R10 | \
	 TDX_R11 | TDX_R12 | TDX_R13 | TDX_R14 | TDX_R15)

/* ---- Calls ------------------------------------------------------------- */

/*
 * The registers of a TDCALL besides RAX, in Linux's struct tdx_module_args
 * order (tdx.S depends on it).
 */
struct tdx_module_args {
	u64 rcx, rdx, r8, r9, r10, r11, r12, r13, r14, r15, rbx, rdi, rsi;
};

/*
 * TDCALL (66 0F 01 CC) with RAX = leaf and every register of *args; all of
 * them come back into *args. Returns RAX, the TDX module status.
 */
u64 tdcall(u64 leaf, struct tdx_module_args *args);

/*
 * TDG.VP.VMCALL as Linux's __tdx_hypercall(): RCX = TDVMCALL_EXPOSE_REGS_MASK
 * (args->rcx is overwritten), the caller sets R10 (TDX_HYPERCALL_STANDARD),
 * R11 (the sub-function) and the sub-function's registers. Returns R10, the
 * TDVMCALL status; outputs are in *args. A failing TDCALL itself (RAX != 0)
 * is a broken TDX module, for which Linux panics: here the test aborts.
 */
static inline u64 tdvmcall(struct tdx_module_args *args)
{
	u64 rax;

	args->rcx = TDVMCALL_EXPOSE_REGS_MASK;
	rax = tdcall(TDG_VP_VMCALL, args);
	if (rax) {
		printf("tdvmcall: TDCALL(TDG.VP.VMCALL) failed: rax %lx (r11 %lx)\n", rax,
		       args->r11);
		abort();
	}
	return args->r10;
}

/* A standard TDVMCALL with sub-function fn and arguments R12-R15. */
static inline u64 tdvmcall4(u64 fn, u64 r12, u64 r13, u64 r14, u64 r15)
{
	struct tdx_module_args args = {
		.r10 = TDX_HYPERCALL_STANDARD,
		.r11 = fn,
		.r12 = r12,
		.r13 = r13,
		.r14 = r14,
		.r15 = r15,
	};

	return tdvmcall(&args);
}

/* ---- Guest helpers ------------------------------------------------------ */

/* CPUID leaf 0x21 subleaf 0 says "IntelTDX    " (EBX, EDX, ECX), as Linux
 * checks it (without looking at the maximum leaf first). */
static inline bool is_tdx_guest(void)
{
	struct cpuid r = cpuid_indexed(TDX_CPUID_LEAF_ID, 0);
	u32 sig[3] = { r.b, r.d, r.c };

	return !memcmp(sig, TDX_IDENT, sizeof(sig));
}

/* TDG.VP.INFO, decoded. */
struct tdx_vp_info {
	u64 status;      /* RAX */
	unsigned int gpaw; /* RCX[5:0]: guest physical address width, 48 or 52 */
	u64 attributes;  /* RDX: TD ATTRIBUTES (TDX_ATTR_*) */
	u32 num_vcpus;   /* R8[31:0] */
	u32 max_vcpus;   /* R8[63:32] */
	u32 vcpu_index;  /* R9[31:0]: the calling vCPU */
	u64 r10;         /* feature bits (bit 0: TDG.SYS.RD available) */
};

static inline struct tdx_vp_info tdx_vp_info(void)
{
	struct tdx_module_args args = { 0 };
	struct tdx_vp_info info;

	info.status = tdcall(TDG_VP_INFO, &args);
	info.gpaw = (unsigned int)(args.rcx & 0x3f);
	info.attributes = args.rdx;
	info.num_vcpus = (u32)args.r8;
	info.max_vcpus = (u32)(args.r8 >> 32);
	info.vcpu_index = (u32)args.r9;
	info.r10 = args.r10;
	return info;
}

/* The shared bit, 1 << (GPAW - 1), as Linux's tdx_parse_tdinfo() finds it;
 * 0 if TDG.VP.INFO fails. */
static inline u64 tdx_shared_mask(void)
{
	struct tdx_vp_info info = tdx_vp_info();

	if (info.status || !info.gpaw)
		return 0;
	return 1ul << (info.gpaw - 1);
}

/*
 * TDG.MEM.PAGE.ACCEPT of the private page at gpa: RCX = gpa | level
 * (TDX_PS_4K, TDX_PS_2M). Returns RAX: TDX_SUCCESS, or e.g.
 * TDX_PAGE_ALREADY_ACCEPTED, TDX_PAGE_SIZE_MISMATCH,
 * TDX_OPERAND_INVALID | TDX_OPERAND_ID_RCX (compare tdx_status_class()).
 */
static inline u64 tdx_accept_page(u64 gpa, int level)
{
	struct tdx_module_args args = { .rcx = gpa | (u64)level };

	return tdcall(TDG_MEM_PAGE_ACCEPT, &args);
}

/*
 * MapGPA: asks the VMM to map [gpa, gpa + size) private (shared = false) or
 * shared (true: the shared bit is set on both ends, as Linux's
 * tdx_map_gpa() does with cc_mkdec()). On TDVMCALL_STATUS_RETRY the VMM
 * says in R11 where to go on; like Linux, this goes on from there if R11
 * lies in the range and gives up after 3 RETRYs in a row without progress.
 * Returns the last TDVMCALL status: TDVMCALL_STATUS_SUCCESS, an error, or
 * TDVMCALL_STATUS_RETRY if it gave up (no progress, or R11 out of range).
 */
static inline u64 tdx_map_gpa(u64 gpa, u64 size, bool shared)
{
	u64 start = gpa, end = gpa + size;
	int retries = 0;

	if (shared) {
		u64 mask = tdx_shared_mask();

		start |= mask;
		end |= mask;
	}
	for (;;) {
		struct tdx_module_args args = {
			.r10 = TDX_HYPERCALL_STANDARD,
			.r11 = TDVMCALL_MAP_GPA,
			.r12 = start,
			.r13 = end - start,
		};
		u64 status = tdvmcall(&args);

		if (status != TDVMCALL_STATUS_RETRY)
			return status;
		/* R11 comes from the untrusted VMM. */
		if (args.r11 < start || args.r11 >= end)
			return status;
		if (args.r11 == start) {
			if (++retries == 3)
				return status;
			continue;
		}
		start = args.r11;
		retries = 0;
	}
}

/*
 * Maps the 4 KiB page at va to the shared alias of pa in pml4: install_page()
 * with the shared bit (tdx_shared_mask(), one TDG.VP.INFO) in the PTE's
 * address. Flushing and other CPUs: as install_page().
 */
static inline void install_page_shared(u64 *pml4, u64 va, u64 pa, u64 flags)
{
	install_page(pml4, va, pa | tdx_shared_mask(), flags);
}

/* ---- #VE (tdx.c) -------------------------------------------------------- */

/*
 * In a running TD, port I/O and HLT raise #VE. The runtime's #VE entry
 * reads the VE information (TDG.VP.VEINFO.GET) before anything else and
 * emulates them with TDVMCALL IO / HLT; any other #VE goes on to ASM_TRY
 * or the default handler, its VE information kept for tdx_veinfo_get().
 * A test that installs its own #VE handler (handle_exception(VE_VECTOR,
 * fn)) runs first and instead of the runtime's: it must read the VE
 * information before any output or port access (a #VE while it is unread
 * is a #DF) and may chain with tdx_handle_ve(regs, &ve).
 */

/*
 * Emulates the #VE described by ve (TDG.VP.VEINFO.GET's registers: RCX
 * exit reason, RDX exit qualification, R10 instruction length) if it is
 * port I/O (reason 30; IN/OUT, INS/OUTS with REP) or HLT (12), and skips
 * the instruction by the reported length. False for anything else, or if
 * the VMM refused the TDVMCALL.
 */
bool tdx_handle_ve(struct ex_regs *regs, const struct tdx_module_args *ve);

/*
 * TDG.VP.VEINFO.GET as a test after ASM_TRY sees it: the VE information
 * the runtime read for this CPU's last #VE that it passed on, once, in
 * TDG.VP.VEINFO.GET's registers (status TDX_SUCCESS); without one, the
 * TDCALL itself (e.g. TDX_NO_VALID_VE_INFO).
 */
u64 tdx_veinfo_get(struct tdx_module_args *a);

/* #VEs the runtime emulated: EXIT_REASON_IO_INSTRUCTION, _HLT, _CPUID, _MSR_READ, _MSR_WRITE; else passed on. */
u64 tdx_ve_count(u64 exit_reason);

#endif /* CVMEM_TDX_H */
