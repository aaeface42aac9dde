/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * snp.h: helpers for tests of an AMD SEV-SNP guest, written against the
 * ABI Linux uses (arch/x86/include/asm/sev-common.h, svm.h, sev.h,
 * arch/x86/boot/compressed/sev.c, arch/x86/coco/sev/) and the GHCB
 * specification. The runtime itself (snp.c) runs every SNP guest: boot.S
 * detects SNP before paging and sets the C-bit in the boot identity map for
 * RAM, runtime_start() and ap_main() give each CPU a GHCB before its first
 * intercepted instruction, and a #VC handler emulates CPUID, port I/O, MSRs,
 * VMMCALL and simple MMIO MOVs through the GHCB. HLT raises no #VC: it is
 * an automatic exit of SEV-ES (the hypervisor halts the vCPU; Linux's #VC
 * handler has no HLT case and KVM takes no HLT through the GHCB).
 *
 * Memory: a page-table entry with the C-bit (snp_c_bit_mask(), bit 51 under
 * `-cpu max,phys-bits=52`) set maps the private (encrypted) page, one
 * without it the shared page. In an SNP guest the boot identity map is
 * private for RAM and shared for the MMIO hole, so pa_to_ptr(pa) reaches a
 * RAM page's private alias. Page-table reads and instruction fetches are
 * always private. install_page() keeps every address bit of PT_ADDR_MASK
 * (51:12), so
 *
 *	install_page(pml4, va, pa | snp_c_bit_mask(), PT_PRESENT | PT_WRITABLE);
 *
 * maps va to the private page and install_page(pml4, va, pa, ...) to the
 * shared one. The tables vm.c builds keep the C-bit out of non-leaf entries.
 *
 * Conversions follow Linux: to make a page shared, rescind its validation
 * (PVALIDATE) while it is private, ask the hypervisor for the page-state
 * change, then map it without the C-bit; to make it private, page-state
 * change first, then PVALIDATE through a private mapping. Either way the
 * content is gone.
 */
#ifndef CVMEM_SNP_H
#define CVMEM_SNP_H

#include "libcflat.h"

/* ---- MSRs and CPUID ------------------------------------------------------ */

#define MSR_AMD64_SEV 0xc0010131ul        /* SEV_STATUS */
#define MSR_AMD64_SEV_ENABLED (1ul << 0)
#define MSR_AMD64_SEV_ES_ENABLED (1ul << 1)
#define MSR_AMD64_SEV_SNP_ENABLED (1ul << 2)
#define MSR_AMD64_SEV_ES_GHCB 0xc0010130ul /* the GHCB MSR */

#define CPUID_MEM_ENCRYPT 0x8000001f
#define CPUID_8000001F_EAX_SME (1u << 0)
#define CPUID_8000001F_EAX_SEV (1u << 1)
#define CPUID_8000001F_EAX_SEV_ES (1u << 3)
#define CPUID_8000001F_EAX_SNP (1u << 4)
#define CPUID_8000001F_EAX_VMPL (1u << 5)

/* ---- Pages the launch fills --------------------------------------------- */

/*
 * Where cvmem's launch puts the SNP CPUID and secrets pages unless told
 * otherwise (plugin arguments snp-cpuid= and snp-secrets=, whose defaults
 * plugin/src/args.rs checks against these): two pages below SeaBIOS's EBDA.
 */
#define SNP_CPUID_PAGE 0x9e000ul
#define SNP_SECRETS_PAGE 0x9d000ul

/* The CPUID page (Linux struct snp_cpuid_table): count, then 48-byte entries. */
#define SNP_CPUID_COUNT_MAX 64
/* The secrets page (Linux struct snp_secrets_page). */
#define SNP_SECRETS_VERSION_OFF 0x0
#define SNP_SECRETS_VMPCK0_OFF 0x20

/* ---- SVM exit codes (the #VC error code, GHCB SW_EXITCODE) -------------- */

#define SVM_EXIT_CPUID 0x072ul
#define SVM_EXIT_HLT 0x078ul
#define SVM_EXIT_IOIO 0x07bul
#define SVM_EXIT_MSR 0x07cul
#define SVM_EXIT_VMMCALL 0x081ul
#define SVM_EXIT_NPF 0x400ul
/* #VC only: a private access to a page the guest has not validated. */
#define SVM_EXIT_PAGE_NOT_VALIDATED 0x404ul
#define SVM_VMGEXIT_MMIO_READ 0x80000001ul
#define SVM_VMGEXIT_MMIO_WRITE 0x80000002ul
#define SVM_VMGEXIT_NMI_COMPLETE 0x80000003ul
#define SVM_VMGEXIT_AP_HLT_LOOP 0x80000004ul
#define SVM_VMGEXIT_AP_JUMP_TABLE 0x80000005ul
#define SVM_VMGEXIT_SET_AP_JUMP_TABLE 0
#define SVM_VMGEXIT_GET_AP_JUMP_TABLE 1
#define SVM_VMGEXIT_PSC 0x80000010ul
#define SVM_VMGEXIT_GUEST_REQUEST 0x80000011ul
#define SVM_VMGEXIT_EXT_GUEST_REQUEST 0x80000012ul
#define SVM_VMGEXIT_AP_CREATION 0x80000013ul
#define SVM_VMGEXIT_HV_FEATURES 0x8000fffdul
#define SVM_VMGEXIT_TERM_REQUEST 0x8000fffeul
#define SVM_VMGEXIT_UNSUPPORTED_EVENT 0x8000fffful

/* SVM IOIO exit information (exit_info_1 of SVM_EXIT_IOIO). */
#define SVM_IOIO_TYPE_IN (1ul << 0)
#define SVM_IOIO_STR (1ul << 2)
#define SVM_IOIO_REP (1ul << 3)
#define SVM_IOIO_SZ8 (1ul << 4)
#define SVM_IOIO_SZ16 (1ul << 5)
#define SVM_IOIO_SZ32 (1ul << 6)
#define SVM_IOIO_A16 (1ul << 7)
#define SVM_IOIO_A32 (1ul << 8)
#define SVM_IOIO_A64 (1ul << 9)
#define SVM_IOIO_SEG_SHIFT 10 /* 3 bits: ES 0, CS 1, SS 2, DS 3, FS 4, GS 5 */
#define SVM_IOIO_SEG_ES (0ul << SVM_IOIO_SEG_SHIFT)
#define SVM_IOIO_SEG_DS (3ul << SVM_IOIO_SEG_SHIFT)
#define SVM_IOIO_PORT_SHIFT 16

/* An event in SW_EXITINFO2 when SW_EXITINFO1 says 1 (e.g. #GP from an MSR). */
#define SVM_EVTINJ_VEC_MASK 0xfful
#define SVM_EVTINJ_TYPE_SHIFT 8
#define SVM_EVTINJ_TYPE_EXEPT (3ul << SVM_EVTINJ_TYPE_SHIFT)
#define SVM_EVTINJ_VALID_ERR (1ul << 11)
#define SVM_EVTINJ_VALID (1ul << 31)
#define SNP_GP_EVENT (SVM_EVTINJ_VALID | SVM_EVTINJ_TYPE_EXEPT | GP_VECTOR) /* 0x8000030d */

/* ---- The GHCB MSR protocol (sev-common.h) ------------------------------- */

#define GHCB_MSR_INFO_MASK 0xffful
#define GHCB_MSR_SEV_INFO_RESP 0x001ul
#define GHCB_MSR_SEV_INFO_REQ 0x002ul
#define GHCB_MSR_CPUID_REQ 0x004ul
#define GHCB_MSR_CPUID_RESP 0x005ul
#define GHCB_MSR_AP_RESET_HOLD_REQ 0x006ul
#define GHCB_MSR_AP_RESET_HOLD_RESP 0x007ul
#define GHCB_MSR_PREF_GPA_REQ 0x010ul
#define GHCB_MSR_PREF_GPA_RESP 0x011ul
#define GHCB_MSR_PREF_GPA_NONE 0xffffffffffffful /* GPA field 63:12: no preference */
#define GHCB_MSR_REG_GPA_REQ 0x012ul
#define GHCB_MSR_REG_GPA_RESP 0x013ul
#define GHCB_MSR_PSC_REQ 0x014ul
#define GHCB_MSR_PSC_RESP 0x015ul
#define GHCB_MSR_HV_FT_REQ 0x080ul
#define GHCB_MSR_HV_FT_RESP 0x081ul
#define GHCB_MSR_TERM_REQ 0x100ul

/* SEV_INFO response: max protocol 63:48, min 47:32, C-bit position 31:24. */
#define GHCB_MSR_PROTO_MAX(v) (((v) >> 48) & 0xffff)
#define GHCB_MSR_PROTO_MIN(v) (((v) >> 32) & 0xffff)
#define GHCB_MSR_CBIT(v) (((v) >> 24) & 0xff)
/* CPUID request: function 63:32, register 31:30 (0 EAX .. 3 EDX). */
#define GHCB_CPUID_REQ(fn, reg) (GHCB_MSR_CPUID_REQ | ((u64)(reg) & 3) << 30 | (u64)(fn) << 32)
/* Page-state change request: operation 55:52, GFN 51:12; error in 63:32. */
#define GHCB_MSR_PSC_REQ_GFN(gfn, op) \
	(GHCB_MSR_PSC_REQ | ((u64)(gfn) & ((1ul << 40) - 1)) << 12 | ((u64)(op) & 0xf) << 52)
#define GHCB_MSR_TERM(set, code) \
	(GHCB_MSR_TERM_REQ | ((u64)(set) & 0xf) << 12 | ((u64)(code) & 0xff) << 16)

#define GHCB_HV_FT_SNP (1ul << 0)
#define GHCB_HV_FT_SNP_AP_CREATION (1ul << 1)

/* Page-state change operations (MSR protocol and struct psc_entry). */
#define SNP_PAGE_STATE_PRIVATE 1
#define SNP_PAGE_STATE_SHARED 2

/* Termination reason sets and codes (sev-common.h). */
#define SEV_TERM_SET_GEN 0
#define GHCB_SEV_ES_GEN_REQ 0
#define GHCB_SEV_ES_PROT_UNSUPPORTED 1
#define GHCB_SNP_UNSUPPORTED 2
#define SEV_TERM_SET_LINUX 1 /* the runtime uses Linux's codes for its own failures */
#define GHCB_TERM_REGISTER 0
#define GHCB_TERM_PSC 1
#define GHCB_TERM_PVALIDATE 2

/* GHCB protocol version the runtime speaks. */
#define GHCB_PROTOCOL_VERSION 2

/* ---- The GHCB page (Linux struct ghcb; offsets as in the GHCB spec) ----- */

#define GHCB_CPL 0x0cb /* u8 */
#define GHCB_XSS 0x140
#define GHCB_DR7 0x160
#define GHCB_RIP 0x178
#define GHCB_RSP 0x1d8
#define GHCB_RAX 0x1f8
#define GHCB_RCX 0x308
#define GHCB_RDX 0x310
#define GHCB_RBX 0x318
#define GHCB_RBP 0x328
#define GHCB_RSI 0x330
#define GHCB_RDI 0x338
#define GHCB_R8 0x340
#define GHCB_SW_EXIT_CODE 0x390
#define GHCB_SW_EXIT_INFO_1 0x398
#define GHCB_SW_EXIT_INFO_2 0x3a0
#define GHCB_SW_SCRATCH 0x3a8
#define GHCB_XCR0 0x3e8
#define GHCB_VALID_BITMAP 0x3f0 /* 16 bytes: bit n = the qword at offset 8n */
#define GHCB_SHARED_BUFFER 0x800
#define GHCB_SHARED_BUF_SIZE 2032
#define GHCB_PROTOCOL_VERSION_OFF 0xffa /* u16 */
#define GHCB_USAGE 0xffc /* u32, 0 = the standard GHCB */

struct ghcb {
	u8 bytes[PAGE_SIZE];
} __attribute__((aligned(PAGE_SIZE)));

/* SW_EXITINFO1[31:0] on return (the GHCB spec's "VMM error" answers). */
#define GHCB_RESULT_OK 0
#define GHCB_RESULT_EVENT 1 /* SW_EXITINFO2 holds an event to inject */
#define GHCB_RESULT_ERROR 2 /* SW_EXITINFO2 holds a GHCB_ERR_* */
#define GHCB_ERR_NOT_REGISTERED 1
#define GHCB_ERR_INVALID_USAGE 2
#define GHCB_ERR_INVALID_SCRATCH_AREA 3
#define GHCB_ERR_MISSING_INPUT 4
#define GHCB_ERR_INVALID_INPUT 5
#define GHCB_ERR_INVALID_EVENT 6

static inline u64 ghcb_get(const struct ghcb *g, unsigned int off)
{
	return *(const volatile u64 *)&g->bytes[off];
}

/* True if the qword at off (or the byte, for GHCB_CPL) is marked valid. */
static inline bool ghcb_is_valid(const struct ghcb *g, unsigned int off)
{
	unsigned int bit = off / 8;

	return g->bytes[GHCB_VALID_BITMAP + bit / 8] & (1u << (bit % 8));
}

static inline void ghcb_mark_valid(struct ghcb *g, unsigned int off)
{
	unsigned int bit = off / 8;

	g->bytes[GHCB_VALID_BITMAP + bit / 8] |= (u8)(1u << (bit % 8));
}

/* Writes a save-area qword and marks it valid. */
static inline void ghcb_set(struct ghcb *g, unsigned int off, u64 v)
{
	*(volatile u64 *)&g->bytes[off] = v;
	ghcb_mark_valid(g, off);
}

static inline void ghcb_set_cpl(struct ghcb *g, u8 cpl)
{
	g->bytes[GHCB_CPL] = cpl;
	ghcb_mark_valid(g, GHCB_CPL);
}

/* ---- Page-state change descriptor (struct snp_psc_desc) ------------------ */

#define VMGEXIT_PSC_MAX_ENTRY 253

struct psc_hdr {
	u16 cur_entry;
	u16 end_entry;
	u32 reserved;
} __attribute__((packed));

/* An entry: cur_page 11:0, gfn 51:12, operation 55:52, pagesize 56 (2M). */
#define PSC_ENTRY(gfn, op, huge) \
	(((u64)(gfn) & ((1ul << 40) - 1)) << 12 | ((u64)(op) & 0xf) << 52 | (u64)!!(huge) << 56)
#define PSC_ENTRY_CUR_PAGE(e) ((e) & 0xfff)
#define PSC_ENTRY_GFN(e) (((e) >> 12) & ((1ul << 40) - 1))
#define PSC_ENTRY_OP(e) (((e) >> 52) & 0xf)
#define PSC_ENTRY_2M(e) (((e) >> 56) & 1)

struct snp_psc_desc {
	struct psc_hdr hdr;
	u64 entries[VMGEXIT_PSC_MAX_ENTRY];
} __attribute__((packed));

/* KVM's errors in SW_EXITINFO2 of a failed page-state change. */
#define VMGEXIT_PSC_ERROR_GENERIC (0x100ul << 32)
#define VMGEXIT_PSC_ERROR_INVALID_HDR ((1ul << 32) | 1)
#define VMGEXIT_PSC_ERROR_INVALID_ENTRY ((1ul << 32) | 2)

/* ---- PVALIDATE and RMPADJUST -------------------------------------------- */

#define RMP_PG_SIZE_4K 0
#define RMP_PG_SIZE_2M 1

/* Return codes (EAX); PVALIDATE_FAIL_NOUPDATE is Linux's name for CF = 1. */
#define PVALIDATE_OK 0
#define PVALIDATE_FAIL_INPUT 1
#define PVALIDATE_FAIL_SIZEMISMATCH 6
#define PVALIDATE_FAIL_NOUPDATE 255
#define RMPADJUST_OK 0
#define RMPADJUST_FAIL_INPUT 1
#define RMPADJUST_FAIL_PERMISSION 2
#define RMPADJUST_FAIL_SIZEMISMATCH 6

/* RMPADJUST RDX: target VMPL 7:0, permissions 15:8, VMSA 16. */
#define VMPL_PERM_READ (1ul << 8)
#define VMPL_PERM_WRITE (1ul << 9)
#define VMPL_PERM_EXEC_USER (1ul << 10)
#define VMPL_PERM_EXEC_SUPER (1ul << 11)
#define VMPL_PERM_ALL (VMPL_PERM_READ | VMPL_PERM_WRITE | VMPL_PERM_EXEC_USER | VMPL_PERM_EXEC_SUPER)
#define RMPADJUST_VMSA_PAGE_BIT (1ul << 16)

/*
 * PVALIDATE (F2 0F 01 FF) of the page at va (RAX), size RMP_PG_SIZE_* (RCX),
 * validate or rescind (RDX). Returns EAX; *cf gets CF (1: the RMP entry was
 * not changed, e.g. validating a page that already is).
 */
static inline u32 pvalidate_raw(u64 va, u64 size, u64 validate, bool *cf)
{
	u32 rc;
	bool c;

	asm volatile(".byte 0xf2, 0x0f, 0x01, 0xff"
		     : "=a"(rc), "=@ccc"(c)
		     : "a"(va), "c"(size), "d"(validate)
		     : "memory");
	if (cf)
		*cf = c;
	return rc;
}

/* As Linux's pvalidate(): EAX, or PVALIDATE_FAIL_NOUPDATE if EAX = 0 and CF = 1. */
static inline int pvalidate(u64 va, int size, bool validate)
{
	bool cf;
	u32 rc = pvalidate_raw(va, (u64)size, validate, &cf);

	return rc == 0 && cf ? PVALIDATE_FAIL_NOUPDATE : (int)rc;
}

/* RMPADJUST (F3 0F 01 FE): va in RAX, size in RCX, attributes in RDX. Returns EAX. */
static inline u32 rmpadjust(u64 va, u64 size, u64 attrs)
{
	u32 rc;

	asm volatile(".byte 0xf3, 0x0f, 0x01, 0xfe"
		     : "=a"(rc)
		     : "a"(va), "c"(size), "d"(attrs)
		     : "memory", "cc");
	return rc;
}

/* VMGEXIT (rep vmmcall, F3 0F 01 D9): the guest exits to the hypervisor. */
static inline void vmgexit(void)
{
	asm volatile("rep; vmmcall" ::: "memory");
}

/* ---- The runtime's SNP state and services (snp.c) ------------------------ */

/* SEV_STATUS says SNP (boot.S read it before paging). */
bool is_snp_guest(void);
u64 snp_sev_status(void);      /* SEV_STATUS as boot.S read it; 0 if not SEV */
unsigned int snp_c_bit(void);  /* CPUID 0x8000001F EBX[5:0] */
u64 snp_c_bit_mask(void);      /* 1 << snp_c_bit() in an SNP guest, else 0 */

/*
 * One request of the GHCB MSR protocol: writes req to the GHCB MSR, VMGEXIT,
 * returns what the hypervisor left in the MSR. The GHCB page protocol
 * (ghcb_call()) rewrites the MSR before every exit, so the two mix freely.
 */
static inline u64 snp_msr_protocol(u64 req)
{
	wrmsr(MSR_AMD64_SEV_ES_GHCB, req);
	vmgexit();
	return rdmsr(MSR_AMD64_SEV_ES_GHCB);
}

/* Terminates the guest through the MSR protocol (GHCB_MSR_TERM_REQ). */
void snp_terminate(unsigned int reason_set, unsigned int reason_code) __noreturn;

/*
 * This CPU's GHCB (mapped shared, registered). Use it as
 *
 *	struct ghcb *g = ghcb_start();       // valid bitmap cleared
 *	ghcb_set(g, GHCB_RAX, leaf);
 *	ghcb_set(g, GHCB_RCX, subleaf);
 *	r = ghcb_call(g, SVM_EXIT_CPUID, 0, 0);
 *	... ghcb_get(g, GHCB_RBX) ...
 *	ghcb_end(g);
 *
 * with no intercepted instruction (printf!) between start and end: a #VC
 * there saves and restores the GHCB around its own use, so it is safe but
 * pointless. ghcb_call() fills SW_EXITCODE/INFO1/INFO2, the protocol version
 * and usage, writes the GHCB MSR and exits; it returns SW_EXITINFO1, whose
 * low 32 bits are GHCB_RESULT_* (details in SW_EXITINFO2).
 */
struct ghcb *ghcb_start(void);
u64 ghcb_call(struct ghcb *g, u64 exit_code, u64 info1, u64 info2);
void ghcb_end(struct ghcb *g);
u64 ghcb_pa(const struct ghcb *g); /* the GPA, for SW_SCRATCH: ghcb_pa(g) + GHCB_SHARED_BUFFER */

/*
 * Page-state change of [gpa, gpa + npages * 4K) to op (SNP_PAGE_STATE_*)
 * through the GHCB page: descriptors of up to 253 entries, 2M entries where
 * use_2m and the range allows, each re-issued until the hypervisor has
 * processed every entry (it may stop after a chunk with cur_entry/cur_page
 * advanced, as Linux's vmgexit_psc() expects). Returns 0, or the first
 * failing SW_EXITINFO2 (VMGEXIT_PSC_ERROR_*, a GHCB_ERR_* with bit 63 set
 * when SW_EXITINFO1 was not 0, or ~0 if the hypervisor made no progress 3
 * times in a row or went backwards).
 */
u64 snp_page_state_change(u64 gpa, u64 npages, int op, bool use_2m);
/* One page through the MSR protocol: the response's error (63:32), or ~0 for a bad response. */
u64 snp_page_state_change_msr(u64 gpa, int op);

/*
 * PVALIDATE [va, va + npages * 4K): 2M steps where va is 2M aligned and at
 * least 2M remain (if use_2m), falling back to 4K on FAIL_SIZEMISMATCH as
 * Linux's pvalidate_pages() does. Returns 0 or the first failing code
 * (PVALIDATE_FAIL_NOUPDATE included unless allow_noupdate).
 */
int snp_pvalidate_range(u64 va, u64 npages, bool validate, bool use_2m, bool allow_noupdate);

/*
 * Linux's order for conversions, on the pages at gpa reached privately
 * through va (which must stay mapped with the C-bit; the caller maps the
 * shared alias itself): snp_make_shared() rescinds (a page that is not
 * validated is fine) and changes the state to shared; snp_make_private()
 * changes it to private and validates. Return 0 or the first failure
 * (a PVALIDATE code, or a page-state-change error).
 */
u64 snp_make_shared(u64 va, u64 gpa, u64 npages);
u64 snp_make_private(u64 va, u64 gpa, u64 npages);

/*
 * The same on the boot identity map (pa < 4 GiB): set_memory_shared()
 * converts and then clears the C-bit in the identity PTEs of the pages
 * (splitting 2M pages, invlpg on this CPU only), set_memory_private() sets
 * the C-bit again and converts back. The content is lost either way.
 */
u64 set_memory_shared(u64 pa, u64 npages);
u64 set_memory_private(u64 pa, u64 npages);

/*
 * The #VC handler: emulates the instruction at regs->rip for the exit code
 * in regs->error_code (CPUID, IOIO incl. string forms, MSR, VMMCALL,
 * NPF as MMIO for MOV forms) through this CPU's GHCB, advances RIP and
 * returns true; returns false for any other exit code or an instruction it
 * cannot decode. A #GP the hypervisor asks for (refused MSR) is dispatched
 * like a real one (handler, ASM_TRY fixup, or a failure). An error answer
 * from the hypervisor fails the test with the details.
 *
 * The runtime calls it for every #VC that reaches no handler a test
 * installed; a test's own #VC handler may call it too. A #VC it does not
 * take (e.g. SVM_EXIT_PAGE_NOT_VALIDATED) goes to ASM_TRY or fails the run.
 */
bool snp_handle_vc(struct ex_regs *regs);

/* #VCs this CPU took with exit code code (only the emulated ones are counted). */
u64 snp_vc_count(u64 code);

#endif /* CVMEM_SNP_H */
