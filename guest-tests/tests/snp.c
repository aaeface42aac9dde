/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * snp: the SEV-SNP guest ABI as a guest sees it under vm-type=snp, written
 * against Linux's arch/x86/boot/compressed/sev.c, arch/x86/coco/sev/ and
 * the GHCB specification.
 *
 * Run with accept=64M (RAM above 64 MiB starts private, zeroed and not
 * validated) and map-gpa-chunk=2M (a page-state change through the GHCB
 * stops after 2 MiB with its progress in the descriptor). -append strict
 * (with strict=on) checks only the wrong-alias #PF; -append terminate and
 * terminate-ghcb end the guest with a termination request, -append
 * ghcb-unregistered with a VMGEXIT through a GHCB it has not registered.
 */
#include "libcflat.h"
#include "fw_cfg.h"
#include "pci.h"
#include "snp.h"

#define SZ_2M (2ul << 20)
/* Unvalidated memory the test owns: above the accept=64M boundary. */
#define PV_BASE (128ul << 20)      /* PVALIDATE */
#define PSC_BASE (160ul << 20)     /* page-state changes through the GHCB */
#define RMPADJ_BASE (200ul << 20)  /* RMPADJUST */
/* Where shared aliases are mapped: above the 4 GiB identity map. */
#define SHARED_VA 0x200000000ul
/* A second mapping of a private page, for test_rescind_every_alias(). */
#define RESCIND_VA 0x300000000ul
#define IOAPIC_BASE 0xfec00000ul
#define HPET_BASE 0xfed00000ul
#define KVM_ENOSYS 1000
#define MSR_IA32_MISC_ENABLE 0x1a0

/* Maps npages at pa through the shared alias (no C-bit) at SHARED_VA + pa. */
static void *map_shared(u64 pa, u64 npages)
{
	for (u64 i = 0; i < npages; i++)
		install_page(boot_pml4(), SHARED_VA + pa + i * PAGE_SIZE, pa + i * PAGE_SIZE,
			     PT_PRESENT | PT_WRITABLE);
	return (void *)(SHARED_VA + pa);
}

/* A read of *p that may fault: the vector (-1 for none), *v the value. */
static int touch(const volatile void *p, u64 *v)
{
	u64 x = 0;

	asm volatile(ASM_TRY("1f") "movq (%1), %0\n1:" : "+r"(x) : "r"(p) : "memory");
	*v = x;
	return exception_vector();
}

static int touch_write(volatile void *p, u64 v)
{
	asm volatile(ASM_TRY("1f") "movq %1, (%0)\n1:" : : "r"(p), "r"(v) : "memory");
	return exception_vector();
}

/* #VC with exit code code, caught by ASM_TRY. */
static bool is_vc(int vector, u64 code)
{
	return vector == VC_VECTOR && exception_error_code() == code;
}

/* ---- identity and the MSR protocol ------------------------------------------ */

static void test_identity(void)
{
	u64 vcs = snp_vc_count(SVM_EXIT_CPUID);
	struct cpuid c = cpuid(CPUID_MEM_ENCRYPT);
	u64 resp, again;

	report_prefix_push("identity");
	report(is_snp_guest(), "SEV_STATUS says SNP");
	report(snp_sev_status() == 7 && rdmsr(MSR_AMD64_SEV) == 7,
	       "SEV_STATUS = SEV | SEV-ES | SNP (%lx)", rdmsr(MSR_AMD64_SEV));
	report(snp_vc_count(SVM_EXIT_CPUID) == vcs + 1, "CPUID raises #VC (exit code 0x72)");
	report((c.a & 0x3a) == 0x3a, "CPUID 0x8000001F EAX: SEV, SEV-ES, SNP, VMPL (%x)", c.a);
	/* The address reduction is QEMU's reduced-phys-bits default, 1. */
	report((c.b & 0x3f) == 51 && ((c.b >> 6) & 0x3f) == 1 && ((c.b >> 12) & 0xf) == 4,
	       "CPUID 0x8000001F EBX: C-bit 51, address reduction 1, 4 VMPLs (%x)", c.b);
	report(cpuid(0x80000000).a >= CPUID_MEM_ENCRYPT, "CPUID 0x80000000 reaches 0x8000001F");
	report(snp_c_bit_mask() == 1ul << 51, "C-bit mask %lx", snp_c_bit_mask());

	report_prefix_push("MSR protocol");
	resp = snp_msr_protocol(GHCB_MSR_SEV_INFO_REQ);
	report((resp & GHCB_MSR_INFO_MASK) == GHCB_MSR_SEV_INFO_RESP &&
	       GHCB_MSR_PROTO_MAX(resp) == 2 && GHCB_MSR_PROTO_MIN(resp) == 1 &&
	       GHCB_MSR_CBIT(resp) == 51, "SEV_INFO: protocol 1..2, C-bit 51 (%lx)", resp);
	resp = snp_msr_protocol(GHCB_MSR_HV_FT_REQ);
	report(resp == ((GHCB_HV_FT_SNP | GHCB_HV_FT_SNP_AP_CREATION) << 12 | GHCB_MSR_HV_FT_RESP),
	       "HV_FEATURES: SNP and AP creation, as KVM (%lx)", resp);
	vcs = snp_vc_count(SVM_EXIT_MSR);
	resp = snp_msr_protocol(0x0fe | 0xabc000ul);
	/* Before anything prints: a #VC rewrites the MSR for its GHCB call. */
	again = rdmsr(MSR_AMD64_SEV_ES_GHCB);
	vcs = snp_vc_count(SVM_EXIT_MSR) - vcs;
	report(resp == (0x0fe | 0xabc000ul), "an unknown request leaves the MSR unchanged (%lx)",
	       resp);
	report(again == resp && vcs == 0, "the GHCB MSR reads back without a #VC");
	/* KVM has no preferred GHCB GPA: the GPA field all ones (sev.c). */
	resp = snp_msr_protocol(GHCB_MSR_PREF_GPA_REQ);
	again = snp_msr_protocol(GHCB_MSR_PREF_GPA_REQ | 0x123000ul);
	report(resp == (GHCB_MSR_PREF_GPA_NONE << 12 | GHCB_MSR_PREF_GPA_RESP) && again == resp,
	       "PREF_GPA: none, GHCB_MSR_PREF_GPA_NONE (%lx %lx)", resp, again);
	report_prefix_pop();
	report_prefix_pop();
}

/* CPUID leaf through the MSR protocol (subleaf 0): four requests. */
static bool cpuid_msr_protocol(u32 leaf, u32 out[4])
{
	for (int reg = 0; reg < 4; reg++) {
		u64 resp = snp_msr_protocol(GHCB_CPUID_REQ(leaf, reg));

		if ((resp & GHCB_MSR_INFO_MASK) != GHCB_MSR_CPUID_RESP || ((resp >> 30) & 3) != (u64)reg)
			return false;
		out[reg] = (u32)(resp >> 32);
	}
	return true;
}

/* CPUID through the GHCB page. Returns SW_EXITINFO1. */
static u64 cpuid_ghcb(u32 leaf, u32 subleaf, u32 out[4], bool *valid)
{
	struct ghcb *g = ghcb_start();
	u64 r;

	ghcb_set(g, GHCB_RAX, leaf);
	ghcb_set(g, GHCB_RCX, subleaf);
	r = ghcb_call(g, SVM_EXIT_CPUID, 0, 0);
	out[0] = (u32)ghcb_get(g, GHCB_RAX);
	out[1] = (u32)ghcb_get(g, GHCB_RBX);
	out[2] = (u32)ghcb_get(g, GHCB_RCX);
	out[3] = (u32)ghcb_get(g, GHCB_RDX);
	*valid = ghcb_is_valid(g, GHCB_RAX) && ghcb_is_valid(g, GHCB_RBX) &&
		 ghcb_is_valid(g, GHCB_RCX) && ghcb_is_valid(g, GHCB_RDX);
	ghcb_end(g);
	return r;
}

static void test_cpuid(void)
{
	static const u32 leaves[] = { 0, 1, 7, 0xd, 0x80000000, 0x80000001, 0x8000001f };

	report_prefix_push("CPUID");
	for (unsigned int i = 0; i < ARRAY_SIZE(leaves); i++) {
		u32 m[4], gh[4];
		bool valid;
		struct cpuid c = cpuid(leaves[i]);
		bool ok_msr = cpuid_msr_protocol(leaves[i], m);
		u64 r = cpuid_ghcb(leaves[i], 0, gh, &valid);

		/* CPUID 0xD needs XCR0 in the GHCB: the page call above lacks it. */
		if (leaves[i] == 0xd) {
			report(r == GHCB_RESULT_ERROR, "leaf 0xD without XCR0: refused (%lx)", r);
			report(ok_msr && m[0] == c.a && m[1] == c.b && m[2] == c.c && m[3] == c.d,
			       "leaf 0xD: #VC (with XCR0) and MSR protocol agree");
			continue;
		}
		report(ok_msr && r == 0 && valid && m[0] == c.a && m[1] == c.b && m[2] == c.c &&
		       m[3] == c.d && gh[0] == c.a && gh[1] == c.b && gh[2] == c.c && gh[3] == c.d,
		       "leaf %x: instruction (#VC), MSR protocol and GHCB agree (%x %x %x %x)",
		       leaves[i], c.a, c.b, c.c, c.d);
	}
	report_prefix_pop();
}

/* ---- the GHCB page protocol ------------------------------------------------ */

/* A GHCB call with the usage field set to usage (ghcb_call() writes 0). */
static u64 ghcb_call_usage(struct ghcb *g, u64 code, u32 usage)
{
	ghcb_set(g, GHCB_SW_EXIT_CODE, code);
	ghcb_set(g, GHCB_SW_EXIT_INFO_1, 0);
	ghcb_set(g, GHCB_SW_EXIT_INFO_2, 0);
	*(volatile u16 *)&g->bytes[GHCB_PROTOCOL_VERSION_OFF] = GHCB_PROTOCOL_VERSION;
	*(volatile u32 *)&g->bytes[GHCB_USAGE] = usage;
	wrmsr(MSR_AMD64_SEV_ES_GHCB, ghcb_pa(g));
	vmgexit();
	*(volatile u32 *)&g->bytes[GHCB_USAGE] = 0;
	return ghcb_get(g, GHCB_SW_EXIT_INFO_1);
}

struct answer {
	u64 info1, info2;
};

static struct answer ghcb_simple(u64 code, u64 info1, u64 info2, u64 scratch)
{
	struct ghcb *g = ghcb_start();
	struct answer a;

	if (scratch)
		ghcb_set(g, GHCB_SW_SCRATCH, scratch);
	a.info1 = ghcb_call(g, code, info1, info2);
	a.info2 = ghcb_get(g, GHCB_SW_EXIT_INFO_2);
	ghcb_end(g);
	return a;
}

static void test_ghcb(void)
{
	struct ghcb *g;
	struct answer a;
	u64 r, r2, info2, pa, mine;
	u64 other = ptr_to_pa(alloc_page());

	report_prefix_push("GHCB");
	a = ghcb_simple(SVM_VMGEXIT_HV_FEATURES, 0, 0, 0);
	report(a.info1 == 0 && a.info2 == (GHCB_HV_FT_SNP | GHCB_HV_FT_SNP_AP_CREATION),
	       "HV_FEATURES: SNP and AP creation (%lx)", a.info2);

	/* Input errors: SW_EXITINFO1 = 2 and a GHCB_ERR_* in SW_EXITINFO2. */
	g = ghcb_start();
	ghcb_set(g, GHCB_RAX, 0);
	r = ghcb_call_usage(g, SVM_EXIT_CPUID, 1);
	info2 = ghcb_get(g, GHCB_SW_EXIT_INFO_2);
	ghcb_end(g);
	report(r == GHCB_RESULT_ERROR && info2 == GHCB_ERR_INVALID_USAGE,
	       "usage 1: GHCB_ERR_INVALID_USAGE (%lx %lx)", r, info2);
	g = ghcb_start();
	r = ghcb_call(g, SVM_EXIT_CPUID, 0, 0);
	info2 = ghcb_get(g, GHCB_SW_EXIT_INFO_2);
	ghcb_end(g);
	report(r == GHCB_RESULT_ERROR && info2 == GHCB_ERR_MISSING_INPUT,
	       "CPUID without RAX: GHCB_ERR_MISSING_INPUT (%lx %lx)", r, info2);
	a = ghcb_simple(0x12345, 0, 0, 0);
	report(a.info1 == GHCB_RESULT_ERROR && a.info2 == GHCB_ERR_INVALID_EVENT,
	       "unknown exit code: GHCB_ERR_INVALID_EVENT (%lx %lx)", a.info1, a.info2);
	/* HLT is an automatic exit, no GHCB event (KVM's sev_es_validate_vmgexit()). */
	a = ghcb_simple(SVM_EXIT_HLT, 0, 0, 0);
	report(a.info1 == GHCB_RESULT_ERROR && a.info2 == GHCB_ERR_INVALID_EVENT,
	       "HLT (0x78): GHCB_ERR_INVALID_EVENT (%lx %lx)", a.info1, a.info2);
	g = ghcb_start();
	pa = ghcb_pa(g);
	ghcb_end(g);
	a = ghcb_simple(SVM_VMGEXIT_MMIO_READ, IOAPIC_BASE, 4, 0);
	report(a.info1 == GHCB_RESULT_ERROR && a.info2 == GHCB_ERR_MISSING_INPUT,
	       "MMIO without a scratch area: GHCB_ERR_MISSING_INPUT (%lx %lx)", a.info1, a.info2);
	a = ghcb_simple(SVM_VMGEXIT_MMIO_READ, IOAPIC_BASE, 4, pa + 0x10);
	report(a.info1 == GHCB_RESULT_ERROR && a.info2 == GHCB_ERR_INVALID_SCRATCH_AREA,
	       "scratch in the GHCB but outside its buffer: GHCB_ERR_INVALID_SCRATCH_AREA (%lx %lx)",
	       a.info1, a.info2);
	a = ghcb_simple(SVM_VMGEXIT_MMIO_READ, IOAPIC_BASE, 4, other);
	report(a.info1 == GHCB_RESULT_ERROR && a.info2 == GHCB_ERR_INVALID_SCRATCH_AREA,
	       "scratch in private memory: GHCB_ERR_INVALID_SCRATCH_AREA (%lx %lx)",
	       a.info1, a.info2);

	/* AP jump table (SEV-ES): set, then get. */
	a = ghcb_simple(SVM_VMGEXIT_AP_JUMP_TABLE, SVM_VMGEXIT_SET_AP_JUMP_TABLE, 0x9000, 0);
	report(a.info1 == 0, "AP jump table set");
	a = ghcb_simple(SVM_VMGEXIT_AP_JUMP_TABLE, SVM_VMGEXIT_GET_AP_JUMP_TABLE, 0, 0);
	report(a.info1 == 0 && a.info2 == 0x9000, "AP jump table get: %lx", a.info2);
	a = ghcb_simple(SVM_VMGEXIT_AP_JUMP_TABLE, 2, 0, 0);
	report(a.info1 == GHCB_RESULT_ERROR && a.info2 == GHCB_ERR_INVALID_INPUT,
	       "AP jump table op 2: GHCB_ERR_INVALID_INPUT");

	/* No AMD-SP: a guest request gets an error status, never a report. */
	a = ghcb_simple(SVM_VMGEXIT_GUEST_REQUEST, other, other + PAGE_SIZE, 0);
	report(a.info1 == 0 && a.info2 != 0,
	       "SNP guest request: answered unsupported (%lx)", a.info2);
	a = ghcb_simple(SVM_VMGEXIT_GUEST_REQUEST, other + 8, other, 0);
	report(a.info1 == GHCB_RESULT_ERROR, "guest request, misaligned pages: refused (%lx)",
	       a.info2);
	a = ghcb_simple(SVM_VMGEXIT_NMI_COMPLETE, 0, 0, 0);
	report(a.info1 == 0, "NMI complete");

	/*
	 * Registration: REG_GPA of another GPA is echoed, then ours again.
	 * Nothing in between may take a #VC (it would use the GHCB, which
	 * KVM answers by failing KVM_RUN: -append ghcb-unregistered).
	 */
	g = ghcb_start();
	mine = ghcb_pa(g);
	r = snp_msr_protocol(GHCB_MSR_REG_GPA_REQ | (other >> PAGE_SHIFT) << 12);
	r2 = snp_msr_protocol(GHCB_MSR_REG_GPA_REQ | (mine >> PAGE_SHIFT) << 12);
	ghcb_end(g);
	report(r == (GHCB_MSR_REG_GPA_RESP | (other >> PAGE_SHIFT) << 12),
	       "REG_GPA echoes the GFN (%lx)", r);
	report(r2 == (GHCB_MSR_REG_GPA_RESP | (mine >> PAGE_SHIFT) << 12),
	       "registered back (%lx)", r2);
	/* GHCB GPAs KVM cannot map are ignored: 0, above RAM, with the C-bit. */
	g = ghcb_start();
	r = snp_msr_protocol(0);
	r2 = snp_msr_protocol(1ul << 40);
	info2 = snp_msr_protocol(mine | snp_c_bit_mask());
	ghcb_end(g);
	report(r == 0 && r2 == 1ul << 40 && info2 == (mine | snp_c_bit_mask()),
	       "a GHCB at GPA 0, above RAM or with the C-bit: ignored (%lx %lx %lx)", r, r2, info2);
	report(cpuid(0).a >= 0xd, "and #VC works again");
	report_prefix_pop();
}

/* ---- PVALIDATE --------------------------------------------------------------- */

/*
 * PVALIDATE that may fault: EAX (meaningless after a fault), *cf CF, *vec
 * the vector (-1 for none).
 */
static u32 pvalidate_try(u64 va, u64 size, u64 validate, bool *cf, int *vec)
{
	u64 ax = va;
	bool c = false;

	asm volatile(ASM_TRY("1f") ".byte 0xf2, 0x0f, 0x01, 0xff\n1:"
		     : "+a"(ax), "=@ccc"(c)
		     : "c"(size), "d"(validate)
		     : "memory");
	*cf = c;
	*vec = exception_vector();
	return (u32)ax;
}

static void test_pvalidate(void)
{
	volatile u64 *p = pa_to_ptr(PV_BASE);
	u64 va2m = PV_BASE + SZ_2M, v = 0;
	bool cf;
	u32 rc;
	int vec;

	report_prefix_push("PVALIDATE");
	vec = touch(p, &v);
	report(is_vc(vec, SVM_EXIT_PAGE_NOT_VALIDATED),
	       "a private read of an unvalidated page: #VC 0x404 (vector %d, %lx)", vec,
	       exception_error_code());
	vec = touch_write(p, 1);
	report(is_vc(vec, SVM_EXIT_PAGE_NOT_VALIDATED), "and a write too (vector %d, %lx)", vec,
	       exception_error_code());
	rc = pvalidate_raw(PV_BASE, RMP_PG_SIZE_4K, 1, &cf);
	report(rc == PVALIDATE_OK && !cf, "validate 4K: EAX %u, CF %d", rc, cf);
	report(touch(p, &v) == -1 && v == 0 && p[511] == 0, "validated: reads zero");
	p[0] = 0x1234;
	report(p[0] == 0x1234, "and keeps what is written");
	rc = pvalidate_raw(PV_BASE, RMP_PG_SIZE_4K, 1, &cf);
	report(rc == PVALIDATE_OK && cf && p[0] == 0x1234,
	       "validate again: EAX 0, CF 1 (nothing changed), content kept (EAX %u CF %d)", rc, cf);
	rc = pvalidate_raw(PV_BASE, RMP_PG_SIZE_4K, 0, &cf);
	report(rc == PVALIDATE_OK && !cf, "rescind: EAX %u, CF %d", rc, cf);
	vec = touch(p, &v);
	report(is_vc(vec, SVM_EXIT_PAGE_NOT_VALIDATED), "rescinded: #VC 0x404 again");
	report(pvalidate(PV_BASE, RMP_PG_SIZE_4K, false) == PVALIDATE_FAIL_NOUPDATE,
	       "rescind again: CF 1");
	report(pvalidate(PV_BASE, RMP_PG_SIZE_4K, true) == 0, "validated once more");

	/* 2M over 4K RMP entries, and Linux's fallback. */
	report(pvalidate(va2m + PAGE_SIZE, RMP_PG_SIZE_4K, true) == 0, "4K page in a 2M region");
	rc = pvalidate_raw(va2m, RMP_PG_SIZE_2M, 1, &cf);
	report(rc == PVALIDATE_FAIL_SIZEMISMATCH,
	       "2M over 4K entries: FAIL_SIZEMISMATCH (EAX %u)", rc);
	report(snp_pvalidate_range(va2m, 512, true, true, true) == 0,
	       "the 2M region validated 4K by 4K (Linux's pvalidate_pages() fallback)");
	report(all_bytes(pa_to_ptr(va2m), SZ_2M, 0), "and it reads zero");
	rc = pvalidate_raw(va2m + PAGE_SIZE, RMP_PG_SIZE_2M, 1, &cf);
	report(rc == PVALIDATE_FAIL_INPUT, "2M at a GPA not 2M aligned: FAIL_INPUT (%u)", rc);
	/*
	 * RAX's alignment (APM vol. 3 PVALIDATE): checked before the
	 * translation, so a 2M request at an unaligned unmapped address is
	 * FAIL_INPUT, not #PF; bits 11:0 are the offset in the page, ignored.
	 */
	rc = pvalidate_try(0x300001000ul, RMP_PG_SIZE_2M, 1, &cf, &vec);
	report(vec == -1 && rc == PVALIDATE_FAIL_INPUT && !cf,
	       "2M, RAX not 2M aligned and unmapped: FAIL_INPUT, no #PF (vector %d, EAX %u)", vec,
	       rc);
	rc = pvalidate_try(0x300000000ul, RMP_PG_SIZE_2M, 1, &cf, &vec);
	report(vec == PF_VECTOR, "2M, RAX 2M aligned and unmapped: #PF (vector %d)", vec);
	rc = pvalidate_raw(PV_BASE + 0xabc, RMP_PG_SIZE_4K, 0, &cf);
	report(rc == PVALIDATE_OK && !cf && is_vc(touch(p, &v), SVM_EXIT_PAGE_NOT_VALIDATED),
	       "4K, RAX not 4K aligned: the page containing it is rescinded (EAX %u, CF %d)", rc,
	       cf);
	rc = pvalidate_raw(PV_BASE + 0xfff, RMP_PG_SIZE_4K, 1, &cf);
	report(rc == PVALIDATE_OK && !cf && touch(p, &v) == -1,
	       "and validated through its last byte (EAX %u, CF %d)", rc, cf);
	rc = pvalidate_raw(va2m + 0xabc, RMP_PG_SIZE_2M, 1, &cf);
	report(rc == PVALIDATE_FAIL_SIZEMISMATCH,
	       "2M, RAX 2M aligned but for bits 11:0: not FAIL_INPUT (EAX %u)", rc);
	rc = pvalidate_raw(va2m, 2, 1, &cf);
	report(rc == PVALIDATE_FAIL_INPUT, "RCX = 2: FAIL_INPUT (%u)", rc);
	rc = pvalidate_raw(va2m + 2 * SZ_2M, RMP_PG_SIZE_2M, 1, &cf);
	report(rc == PVALIDATE_OK || rc == PVALIDATE_FAIL_SIZEMISMATCH,
	       "2M on a fresh 2M region: %s (%u)", rc ? "FAIL_SIZEMISMATCH (4K mappings)" : "done",
	       rc);
	report_prefix_pop();
}

/* ---- RMPADJUST --------------------------------------------------------------- */

static int rmpadjust_try(u64 va, u64 size, u64 attrs, u32 *rc)
{
	u32 r;

	asm volatile(ASM_TRY("1f") ".byte 0xf3, 0x0f, 0x01, 0xfe\n1:"
		     : "=a"(r) : "a"(va), "c"(size), "d"(attrs) : "memory", "cc");
	*rc = r;
	return exception_vector();
}

static void test_rmpadjust(void)
{
	u64 va = RMPADJ_BASE;
	u32 rc;
	int vec;

	report_prefix_push("RMPADJUST");
	vec = rmpadjust_try(va, RMP_PG_SIZE_4K, 1 | VMPL_PERM_READ, &rc);
	report(is_vc(vec, SVM_EXIT_PAGE_NOT_VALIDATED),
	       "on an unvalidated page: #VC 0x404 (vector %d)", vec);
	report(pvalidate(va, RMP_PG_SIZE_4K, true) == 0, "page validated");
	rc = rmpadjust(va, RMP_PG_SIZE_4K, 1 | VMPL_PERM_READ | VMPL_PERM_WRITE);
	report(rc == RMPADJUST_OK, "grant VMPL1 read+write: %u", rc);
	rc = rmpadjust(va, RMP_PG_SIZE_4K, 3 | VMPL_PERM_ALL);
	report(rc == RMPADJUST_OK, "grant VMPL3 everything: %u", rc);
	rc = rmpadjust(va, RMP_PG_SIZE_4K, 1);
	report(rc == RMPADJUST_OK, "revoke VMPL1: %u", rc);
	rc = rmpadjust(va, RMP_PG_SIZE_4K, 0 | VMPL_PERM_READ);
	report(rc == RMPADJUST_FAIL_PERMISSION, "target VMPL0 (itself): FAIL_PERMISSION (%u)", rc);
	rc = rmpadjust(va, RMP_PG_SIZE_4K, 4 | VMPL_PERM_READ);
	report(rc == RMPADJUST_FAIL_INPUT, "target VMPL4: FAIL_INPUT (%u)", rc);
	rc = rmpadjust(va, 2, 1 | VMPL_PERM_READ);
	report(rc == RMPADJUST_FAIL_INPUT, "RCX = 2: FAIL_INPUT (%u)", rc);
	rc = rmpadjust(va, RMP_PG_SIZE_4K, 1 | 1ul << 17);
	report(rc == RMPADJUST_FAIL_INPUT, "reserved RDX bit 17: FAIL_INPUT (%u)", rc);
	rc = rmpadjust(va, RMP_PG_SIZE_4K, 1 | RMPADJUST_VMSA_PAGE_BIT);
	report(rc == RMPADJUST_OK, "VMSA bit for VMPL1: %u", rc);
	rc = rmpadjust(va, RMP_PG_SIZE_4K, 1);
	report(rc == RMPADJUST_OK, "VMSA bit cleared: %u", rc);
	rc = rmpadjust(va, RMP_PG_SIZE_2M, 1 | VMPL_PERM_READ);
	report(rc == RMPADJUST_FAIL_SIZEMISMATCH, "2M over 4K entries: FAIL_SIZEMISMATCH (%u)", rc);
	rc = rmpadjust(va + PAGE_SIZE, RMP_PG_SIZE_2M, 1 | VMPL_PERM_READ);
	report(rc == RMPADJUST_FAIL_INPUT, "2M at a GPA not 2M aligned: FAIL_INPUT (%u)", rc);
	/* RAX's alignment and RDX are checked before the translation. */
	vec = rmpadjust_try(0x300001000ul, RMP_PG_SIZE_2M, 1 | VMPL_PERM_READ, &rc);
	report(vec == -1 && rc == RMPADJUST_FAIL_INPUT,
	       "2M, RAX not 2M aligned and unmapped: FAIL_INPUT, no #PF (vector %d, EAX %u)", vec,
	       rc);
	vec = rmpadjust_try(0x300000000ul, RMP_PG_SIZE_4K, 1 | 1ul << 17, &rc);
	report(vec == -1 && rc == RMPADJUST_FAIL_INPUT,
	       "reserved RDX bit, RAX unmapped: FAIL_INPUT, no #PF (vector %d, EAX %u)", vec, rc);
	vec = rmpadjust_try(0x300000000ul, RMP_PG_SIZE_4K, 1 | VMPL_PERM_READ, &rc);
	report(vec == PF_VECTOR, "valid operands, RAX unmapped: #PF (vector %d)", vec);
	rc = rmpadjust(va + 0xabc, RMP_PG_SIZE_4K, 1 | VMPL_PERM_READ);
	report(rc == RMPADJUST_OK, "4K, RAX not 4K aligned: the page containing it (%u)", rc);
	report_prefix_pop();
}

/*
 * A rescind takes the page away from every translation that reached it, not
 * only from the address PVALIDATE named: another mapping of the page, and
 * every address whose walk reads a page table in it. Each of those
 * translations is cached when the rescind comes; the next access must miss
 * and fault (QEMU may skip the flush of a vCPU only while it maps nothing
 * of the page).
 */
static void test_rescind_every_alias(void)
{
	u64 pa = ptr_to_pa(alloc_page()), va = RESCIND_VA, pt, v = 0;
	volatile u64 *alias = (volatile u64 *)va;

	report_prefix_push("rescind");
	*(volatile u64 *)pa_to_ptr(pa) = 0xa11a5;
	install_page(boot_pml4(), va, pa | snp_c_bit_mask(), PT_PRESENT | PT_WRITABLE);
	pt = (u64)get_pte(boot_pml4(), va) & ~(PAGE_SIZE - 1);
	report(touch(alias, &v) == -1 && v == 0xa11a5, "a second mapping reads the page");
	report(pvalidate(pa, RMP_PG_SIZE_4K, false) == 0, "rescinded through the first");
	report(is_vc(touch(alias, &v), SVM_EXIT_PAGE_NOT_VALIDATED),
	       "the second mapping's cached translation is gone: #VC 0x404");
	report(pvalidate(pa, RMP_PG_SIZE_4K, true) == 0 && touch(alias, &v) == -1 &&
		       v == 0xa11a5, "validated again: readable, content kept");
	report(pvalidate(pt, RMP_PG_SIZE_4K, false) == 0,
	       "the page table that maps it rescinded (%lx)", pt);
	report(is_vc(touch(alias, &v), SVM_EXIT_PAGE_NOT_VALIDATED),
	       "the walk reads it again: #VC 0x404");
	report(pvalidate(pt, RMP_PG_SIZE_4K, true) == 0 && touch(alias, &v) == -1 &&
		       v == 0xa11a5, "validated again: the mapping works");
	report_prefix_pop();
}

/* ---- page-state changes ----------------------------------------------------- */

static void test_psc_msr(void)
{
	u64 pa = ptr_to_pa(alloc_page());
	volatile u64 *priv = pa_to_ptr(pa), *shared = map_shared(pa, 1);
	u64 err, v = 0;

	report_prefix_push("PSC (MSR protocol)");
	priv[0] = 0x5ec7e7;
	report(pvalidate(pa, RMP_PG_SIZE_4K, false) == 0, "rescinded while private");
	err = snp_page_state_change_msr(pa, SNP_PAGE_STATE_SHARED);
	report(err == 0, "to shared: error %lx", err);
	report(touch(shared, &v) == -1 && v == 0, "the shared page reads zero: the secret is gone");
	shared[0] = 0x5a5a;
	err = snp_page_state_change_msr(pa, SNP_PAGE_STATE_PRIVATE);
	report(err == 0, "back to private: error %lx", err);
	report(is_vc(touch(priv, &v), SVM_EXIT_PAGE_NOT_VALIDATED),
	       "a private page must be validated again: #VC 0x404");
	report(pvalidate(pa, RMP_PG_SIZE_4K, true) == 0 && priv[0] == 0,
	       "validated: the shared data is gone");
	err = snp_page_state_change_msr(pa, 3);
	report(err != 0, "operation 3: refused (%lx)", err);
	err = snp_page_state_change_msr(IOAPIC_BASE, SNP_PAGE_STATE_PRIVATE);
	report(err != 0, "MMIO cannot become private (%lx)", err);
	report_prefix_pop();
}

/* One VMGEXIT of a page-state change descriptor (entries e[0..n)). */
static struct answer psc_once_end(const u64 *e, int n, u16 cur, u16 end, u64 *out,
				  u16 *cur_out)
{
	struct ghcb *g = ghcb_start();
	struct snp_psc_desc *d = (void *)&g->bytes[GHCB_SHARED_BUFFER];
	struct answer a;

	d->hdr = (struct psc_hdr){ .cur_entry = cur, .end_entry = end };
	for (int i = 0; i < n; i++)
		d->entries[i] = e[i];
	ghcb_set(g, GHCB_SW_SCRATCH, ghcb_pa(g) + GHCB_SHARED_BUFFER);
	a.info1 = ghcb_call(g, SVM_VMGEXIT_PSC, 0, 0);
	a.info2 = ghcb_get(g, GHCB_SW_EXIT_INFO_2);
	for (int i = 0; out && i < n; i++)
		out[i] = d->entries[i];
	if (cur_out)
		*cur_out = d->hdr.cur_entry;
	ghcb_end(g);
	return a;
}

static struct answer psc_once(const u64 *e, int n, u16 cur, u64 *out, u16 *cur_out)
{
	return psc_once_end(e, n, cur, (u16)(n - 1), out, cur_out);
}

static void test_psc_ghcb(void)
{
	u64 base = PSC_BASE, n4k = 300, gfn = base >> PAGE_SHIFT;
	volatile u8 *priv = pa_to_ptr(base), *shared = map_shared(base, 8 * 512);
	u64 e[4], out[4], err, v = 0;
	struct answer a;
	u16 cur;
	int rc;

	report_prefix_push("PSC (GHCB)");
	rc = snp_pvalidate_range(base, 8 * 512, true, true, false);
	report(rc == 0, "16 MiB validated (rc %d)", rc);
	memset((void *)priv, 0x5e, 8 * SZ_2M);

	/* Many 4K entries: two descriptors (253 + 47). */
	err = snp_make_shared(base, base, n4k);
	report(err == 0, "%lu pages to shared, rescinded first: %lx", n4k, err);
	report(all_bytes(shared, n4k * PAGE_SIZE, 0), "the shared pages read zero");
	report(all_bytes(priv + n4k * PAGE_SIZE, 2 * SZ_2M - n4k * PAGE_SIZE, 0x5e),
	       "the private pages after them kept their data");
	memset((void *)shared, 0x77, n4k * PAGE_SIZE);
	err = snp_page_state_change(base, n4k, SNP_PAGE_STATE_PRIVATE, false);
	report(err == 0, "back to private: %lx", err);
	report(is_vc(touch(priv, &v), SVM_EXIT_PAGE_NOT_VALIDATED) &&
	       is_vc(touch(priv + (n4k - 1) * PAGE_SIZE, &v), SVM_EXIT_PAGE_NOT_VALIDATED),
	       "converted pages must be validated again (#VC 0x404)");
	report(snp_pvalidate_range(base, n4k, true, false, false) == 0 &&
	       all_bytes(priv, n4k * PAGE_SIZE, 0), "validated: the shared data is gone");

	/* 2M entries, and partial progress every 2 MiB (map-gpa-chunk=2M). */
	e[0] = PSC_ENTRY(gfn + 1024, SNP_PAGE_STATE_SHARED, true);
	e[1] = PSC_ENTRY(gfn + 1536, SNP_PAGE_STATE_SHARED, true);
	e[2] = PSC_ENTRY(gfn + 2048, SNP_PAGE_STATE_SHARED, true);
	report(snp_pvalidate_range(base + 2 * SZ_2M, 3 * 512, false, true, false) == 0,
	       "6 MiB rescinded");
	a = psc_once(e, 3, 0, out, &cur);
	report(a.info1 == 0 && a.info2 == 0 && cur == 1 && PSC_ENTRY_CUR_PAGE(out[0]) == 512,
	       "3 2M entries, one VMGEXIT: stops after 2 MiB (cur_entry %u, cur_page %lu, %lx)",
	       cur, PSC_ENTRY_CUR_PAGE(out[0]), a.info2);
	a = psc_once(out, 3, cur, out, &cur);
	report(a.info2 == 0 && cur == 2, "re-issued: the next 2 MiB (cur_entry %u)", cur);
	a = psc_once(out, 3, cur, out, &cur);
	report(a.info2 == 0 && cur == 3, "and the last (cur_entry %u > end_entry 2)", cur);
	report(all_bytes(shared + 2 * SZ_2M, 3 * SZ_2M, 0), "6 MiB shared, reading zero");

	/* A 4K entry then a 2M one: the chunk ends inside the 2M entry (cur_page). */
	e[0] = PSC_ENTRY(gfn + 2560, SNP_PAGE_STATE_SHARED, false);
	e[1] = PSC_ENTRY(gfn + 3072, SNP_PAGE_STATE_SHARED, true);
	report(snp_pvalidate_range(base + 5 * SZ_2M, 1, false, false, false) == 0 &&
	       snp_pvalidate_range(base + 6 * SZ_2M, 512, false, true, false) == 0,
	       "4K + 2M rescinded");
	a = psc_once(e, 2, 0, out, &cur);
	report(a.info2 == 0 && cur == 1 && PSC_ENTRY_CUR_PAGE(out[1]) == 511,
	       "4K + 2M entries: stops inside the 2M entry (cur_entry %u, cur_page %lu)", cur,
	       PSC_ENTRY_CUR_PAGE(out[1]));
	a = psc_once(out, 2, cur, out, &cur);
	report(a.info2 == 0 && cur == 2 && PSC_ENTRY_CUR_PAGE(out[1]) == 512,
	       "re-issued: done (cur_entry %u, cur_page %lu)", cur, PSC_ENTRY_CUR_PAGE(out[1]));

	/* The helper re-issues by itself; back to private with 2M entries. */
	err = snp_page_state_change(base + 2 * SZ_2M, 3 * 512, SNP_PAGE_STATE_PRIVATE, true);
	report(err == 0, "6 MiB back to private, 2M entries, re-issued by the helper: %lx", err);
	err = snp_make_private(base + 6 * SZ_2M, base + 6 * SZ_2M, 512);
	report(err == 0, "and 2 MiB more with snp_make_private(): %lx", err);
	report(snp_pvalidate_range(base + 2 * SZ_2M, 3 * 512, true, true, false) == 0 &&
	       all_bytes(priv + 2 * SZ_2M, 3 * SZ_2M, 0) && all_bytes(priv + 6 * SZ_2M, SZ_2M, 0),
	       "validated: all zero");

	/* KVM's errors. */
	e[0] = PSC_ENTRY(gfn + 7 * 512, SNP_PAGE_STATE_SHARED, false);
	a = psc_once_end(e, 1, 0, VMGEXIT_PSC_MAX_ENTRY, NULL, NULL);
	report(a.info1 == 0 && a.info2 == VMGEXIT_PSC_ERROR_INVALID_HDR,
	       "end_entry 253: VMGEXIT_PSC_ERROR_INVALID_HDR (%lx)", a.info2);
	e[0] = PSC_ENTRY(gfn + 7 * 512 + 1, SNP_PAGE_STATE_SHARED, true);
	a = psc_once(e, 1, 0, NULL, NULL);
	report(a.info1 == 0 && a.info2 == VMGEXIT_PSC_ERROR_INVALID_ENTRY,
	       "2M entry at a GFN not 2M aligned: VMGEXIT_PSC_ERROR_INVALID_ENTRY (%lx)", a.info2);
	e[0] = PSC_ENTRY(gfn + 7 * 512, SNP_PAGE_STATE_SHARED, false) | 2;
	a = psc_once(e, 1, 0, NULL, NULL);
	report(a.info1 == 0 && a.info2 == VMGEXIT_PSC_ERROR_INVALID_ENTRY,
	       "4K entry with cur_page 2: VMGEXIT_PSC_ERROR_INVALID_ENTRY (%lx)", a.info2);
	e[0] = PSC_ENTRY(IOAPIC_BASE >> PAGE_SHIFT, SNP_PAGE_STATE_PRIVATE, false);
	a = psc_once(e, 1, 0, NULL, NULL);
	report(a.info1 == 0 && a.info2 == VMGEXIT_PSC_ERROR_GENERIC,
	       "MMIO to private: VMGEXIT_PSC_ERROR_GENERIC (%lx)", a.info2);
	e[0] = PSC_ENTRY(gfn + 7 * 512, SNP_PAGE_STATE_SHARED, false);
	a = psc_once(e, 1, 1, NULL, &cur);
	report(a.info1 == 0 && a.info2 == 0 && cur == 1,
	       "cur_entry past end_entry: nothing to do (%lx)", a.info2);
	report(touch(priv + 7 * SZ_2M, &v) == -1, "so that page is still private and validated");
	report_prefix_pop();
}

/* ---- wrong-alias accesses ------------------------------------------------- */

static void test_alias(bool strict)
{
	u64 pa = ptr_to_pa(alloc_page());
	volatile u64 *priv = pa_to_ptr(pa), *shared = map_shared(pa, 1);
	u64 v = 0;
	int vec;

	report_prefix_push(strict ? "strict" : "implicit conversion");
	*priv = 0x77;
	vec = touch(shared, &v);
	if (strict) {
		report(vec == PF_VECTOR && (exception_error_code() & (1ul << 31)),
		       "shared access to a private page: #PF with the RMP bit (vector %d, %lx)",
		       vec, exception_error_code());
		report(exception_cr2() == (u64)shared, "CR2 is the linear address (%lx)",
		       exception_cr2());
		report(*priv == 0x77, "the private page is untouched");
		vec = touch_write(shared, 1);
		report(vec == PF_VECTOR && (exception_error_code() & ((1ul << 31) | PFERR_WRITE)) ==
						   ((1ul << 31) | PFERR_WRITE),
		       "a write: #PF with RMP and W (%lx)", exception_error_code());
	} else {
		report(vec == -1 && v == 0,
		       "shared access converts the page: reads zero (vector %d, %lx)", vec, v);
		*shared = 0x88;
		vec = touch(priv, &v);
		report(is_vc(vec, SVM_EXIT_PAGE_NOT_VALIDATED),
		       "a private access converts it back, not validated: #VC 0x404 (vector %d)",
		       vec);
		report(pvalidate(pa, RMP_PG_SIZE_4K, true) == 0 && *priv == 0,
		       "validated: the shared data is gone (reads zero)");
	}
	report_prefix_pop();
}

/* ---- intercepted instructions through #VC ---------------------------------- */

static u64 msr_ghcb(u32 msr, bool write, u64 value, struct answer *a)
{
	struct ghcb *g = ghcb_start();
	u64 v;

	ghcb_set(g, GHCB_RCX, msr);
	if (write) {
		ghcb_set(g, GHCB_RAX, (u32)value);
		ghcb_set(g, GHCB_RDX, value >> 32);
	}
	a->info1 = ghcb_call(g, SVM_EXIT_MSR, write, 0);
	a->info2 = ghcb_get(g, GHCB_SW_EXIT_INFO_2);
	v = (u32)ghcb_get(g, GHCB_RAX) | ghcb_get(g, GHCB_RDX) << 32;
	ghcb_end(g);
	return v;
}

static void test_msr(void)
{
	u64 vcs = snp_vc_count(SVM_EXIT_MSR), base, misc, v = 0;
	struct answer a;

	report_prefix_push("MSR");
	base = rdmsr(MSR_IA32_APICBASE);
	report(snp_vc_count(SVM_EXIT_MSR) == vcs + 1, "RDMSR APIC_BASE raises #VC 0x7c");
	report(msr_ghcb(MSR_IA32_APICBASE, false, 0, &a) == base && a.info1 == 0,
	       "and agrees with the GHCB MSR exit (%lx)", base);
	vcs = snp_vc_count(SVM_EXIT_MSR);
	v = rdmsr(MSR_EFER) | rdmsr(MSR_GS_BASE) | rdmsr(0x277) | rdmsr(MSR_AMD64_SEV);
	report(snp_vc_count(SVM_EXIT_MSR) == vcs && (rdmsr(MSR_EFER) & EFER_LMA),
	       "EFER, GS_BASE, PAT, SEV_STATUS pass through (no #VC)");
	misc = rdmsr(MSR_IA32_MISC_ENABLE);
	wrmsr(MSR_IA32_MISC_ENABLE, misc);
	report(rdmsr(MSR_IA32_MISC_ENABLE) == misc && snp_vc_count(SVM_EXIT_MSR) == vcs + 3,
	       "WRMSR/RDMSR MISC_ENABLE through #VC (%lx)", misc);
	/* An x2APIC MSR in xAPIC mode: QEMU refuses it, the GHCB asks for #GP. */
	msr_ghcb(MSR_X2APIC_ID, false, 0, &a);
	report(a.info1 == GHCB_RESULT_EVENT && a.info2 == SNP_GP_EVENT,
	       "GHCB RDMSR that would #GP: SW_EXITINFO1 1, #GP event %lx", a.info2);
	asm volatile(ASM_TRY("1f") "rdmsr\n1:" : "=a"(v) : "c"(MSR_X2APIC_ID) : "rdx", "memory");
	report(exception_vector() == GP_VECTOR && exception_error_code() == 0,
	       "RDMSR through #VC: the #GP is injected (vector %d)", exception_vector());
	asm volatile(ASM_TRY("1f") "wrmsr\n1:" : : "c"(MSR_AMD64_SEV), "a"(0), "d"(0) : "memory");
	report(exception_vector() == GP_VECTOR, "WRMSR SEV_STATUS: #GP");
	report_prefix_pop();
}

/*
 * The #VC handler on made-up frames: each instruction's bytes and the exit
 * code its #VC would carry. This runs the runtime's emulation through the
 * GHCB whether or not QEMU intercepts the instruction itself.
 */
static bool fake_vc(const u8 *insn, u64 code, struct ex_regs *r)
{
	r->rip = (u64)insn;
	r->error_code = code;
	r->vector = VC_VECTOR;
	r->cs = KERNEL_CS;
	r->ss = KERNEL_DS;
	r->rflags = 2;
	return snp_handle_vc(r);
}

static void test_vc_frames(void)
{
	static const u8 out_dx_ax[] = { 0x66, 0xef };        /* out %ax, (%dx) */
	static const u8 in_al_dx[] = { 0xec };              /* in (%dx), %al */
	static const u8 rep_insb[] = { 0xf3, 0x6c };        /* rep insb */
	static const u8 rep_outsw[] = { 0xf3, 0x66, 0x6f }; /* rep outsw */
	static const u8 out_imm_al[] = { 0xe6, 0x70 };      /* out %al, $0x70 */
	static const u8 in_al_imm[] = { 0xe4, 0x71 };       /* in $0x71, %al */
	static const u8 in_eax_dx[] = { 0xed };             /* in (%dx), %eax */
	static const u8 out_dx_eax[] = { 0xef };            /* out %eax, (%dx) */
	static const u8 cpuid_insn[] = { 0x0f, 0xa2 };
	static const u8 rdmsr_insn[] = { 0x0f, 0x32 };
	static const u8 vmmcall_insn[] = { 0x0f, 0x01, 0xd9 };
	static const u8 ud2[] = { 0x0f, 0x0b };
	static u16 key = FW_CFG_SIGNATURE;
	char sig[8] = { 0 };
	struct ex_regs r = { 0 };
	u8 cmos;
	bool ok;

	report_prefix_push("#VC frames");
	r.rax = 0xaaaaaaaaaaaa0000ul | FW_CFG_SIGNATURE;
	r.rdx = FW_CFG_PORT_SEL;
	ok = fake_vc(out_dx_ax, SVM_EXIT_IOIO, &r);
	report(ok && r.rip == (u64)out_dx_ax + 2, "OUT DX, AX (66 EF): RIP advanced by 2");
	r.rax = 0x1111111111111111ul;
	r.rdx = FW_CFG_PORT_DATA;
	ok = fake_vc(in_al_dx, SVM_EXIT_IOIO, &r);
	report(ok && r.rax == 0x1111111111111151ul && r.rip == (u64)in_al_dx + 1,
	       "IN AL, DX: 'Q' merged into RAX (%lx)", r.rax);
	r.rdi = (u64)sig;
	r.rcx = 3;
	ok = fake_vc(rep_insb, SVM_EXIT_IOIO, &r);
	report(ok && !memcmp(sig, "EMU", 4) && r.rcx == 0 && r.rdi == (u64)sig + 3,
	       "REP INSB: \"%s\", RCX 0, RDI advanced", sig);
	r.rsi = (u64)&key;
	r.rcx = 1;
	r.rdx = FW_CFG_PORT_SEL;
	ok = fake_vc(rep_outsw, SVM_EXIT_IOIO, &r);
	report(ok && r.rsi == (u64)&key + 2 && r.rcx == 0 && r.rip == (u64)rep_outsw + 3,
	       "REP OUTSW (F3 66 6F): RSI advanced, RCX 0");
	r.rdx = FW_CFG_PORT_DATA;
	r.rdi = (u64)sig;
	r.rcx = 4;
	ok = fake_vc(rep_insb, SVM_EXIT_IOIO, &r);
	report(ok && !memcmp(sig, "QEMU", 5), "which selected the signature again: \"%s\"", sig);
	r.rax = 0xffffffff80000000ul;
	r.rdx = 0xcf8;
	ok = fake_vc(out_dx_eax, SVM_EXIT_IOIO, &r);
	r.rdx = 0xcfc;
	ok = ok && fake_vc(in_eax_dx, SVM_EXIT_IOIO, &r);
	report(ok && r.rax == pci_read(0, 0), "OUT DX, EAX and IN EAX, DX: PCI 00.0 ID %lx", r.rax);
	r.rax = 0x0b;
	ok = fake_vc(out_imm_al, SVM_EXIT_IOIO, &r);
	r.rax = ~0ul;
	ok = ok && fake_vc(in_al_imm, SVM_EXIT_IOIO, &r);
	outb(0x0b, 0x70);
	cmos = inb(0x71);
	report(ok && r.rax == (~0xfful | cmos) && r.rip == (u64)in_al_imm + 2,
	       "OUT imm8, AL and IN AL, imm8: CMOS status B %x (native %x)", (u8)r.rax, cmos);
	r.rax = 0x80000000;
	r.rcx = 0;
	ok = fake_vc(cpuid_insn, SVM_EXIT_CPUID, &r);
	report(ok && r.rax == cpuid(0x80000000).a, "CPUID 0x80000000: %lx", r.rax);
	r.rcx = MSR_IA32_APICBASE;
	r.rdx = ~0ul;
	ok = fake_vc(rdmsr_insn, SVM_EXIT_MSR, &r);
	report(ok && (r.rax | r.rdx << 32) == rdmsr(MSR_IA32_APICBASE), "RDMSR APIC_BASE");
	r.rax = 0x7777;
	ok = fake_vc(vmmcall_insn, SVM_EXIT_VMMCALL, &r);
	report(ok && r.rax == (u64)-KVM_ENOSYS && r.rip == (u64)vmmcall_insn + 3,
	       "VMMCALL unknown hypercall: -KVM_ENOSYS (%lx)", r.rax);
	report(!fake_vc(ud2, SVM_EXIT_IOIO, &r) && !fake_vc(ud2, SVM_EXIT_PAGE_NOT_VALIDATED, &r),
	       "an instruction that does not match, or exit 0x404: not taken");
	report_prefix_pop();
}

static u64 seen_codes[8];
static unsigned int seen;

/* A test's own #VC handler: note the exit code, let the runtime emulate. */
static void recording_vc(struct ex_regs *regs)
{
	if (seen < ARRAY_SIZE(seen_codes))
		seen_codes[seen++] = regs->error_code;
	if (!snp_handle_vc(regs)) {
		report(false, "#VC %lx: the runtime does not take it", regs->error_code);
		exit(1);
	}
}

static void test_own_vc_handler(void)
{
	u32 a;

	seen = 0;
	handle_exception(VC_VECTOR, recording_vc);
	a = cpuid(0).a;
	outb(0x0b, 0x70);
	(void)rdmsr(MSR_IA32_APICBASE);
	handle_exception(VC_VECTOR, NULL);
	report(seen == 3 && seen_codes[0] == SVM_EXIT_CPUID && seen_codes[1] == SVM_EXIT_IOIO &&
	       seen_codes[2] == SVM_EXIT_MSR && a >= 0xd,
	       "a test's #VC handler sees CPUID 0x72, OUT 0x7b, RDMSR 0x7c and chains to the runtime");
}

/* Every #VC the runtime handled so far. */
static u64 all_vc_counts(void)
{
	return snp_vc_count(SVM_EXIT_CPUID) + snp_vc_count(SVM_EXIT_IOIO) +
	       snp_vc_count(SVM_EXIT_MSR) + snp_vc_count(SVM_EXIT_VMMCALL) +
	       snp_vc_count(SVM_EXIT_NPF);
}

static void test_intercepts(void)
{
	u64 io = snp_vc_count(SVM_EXIT_IOIO), vcs;
	u64 vmm = snp_vc_count(SVM_EXIT_VMMCALL), mmio = snp_vc_count(SVM_EXIT_NPF);
	u64 rax = 0x7777, cap;
	u32 ver, ver_ghcb = 0;
	u8 ver8;
	struct answer a;

	struct ghcb *g;

	report_prefix_push("intercepts");
	outb(0x0b, 0x70);
	(void)inb(0x71);
	report(snp_vc_count(SVM_EXIT_IOIO) == io + 2, "OUT and IN raise #VC 0x7b");

	asm volatile("vmmcall" : "+a"(rax) : : "memory");
	report(rax == (u64)-KVM_ENOSYS && snp_vc_count(SVM_EXIT_VMMCALL) == vmm + 1,
	       "VMMCALL through #VC 0x81: unknown hypercall -KVM_ENOSYS (%lx)", rax);

	/*
	 * HLT: an automatic exit, no #VC (a #VC 0x78 here would find no
	 * handler and fail the test); a pending self-IPI ends it.
	 */
	smp_init();
	x2apic_icr_write(APIC_DEST_SELF | APIC_DM_FIXED | SMP_IPI_VECTOR, 0);
	vcs = all_vc_counts();
	asm volatile("sti; hlt; cli" ::: "memory");
	/* One #VC: the IPI handler's EOI (an intercepted x2APIC MSR). */
	report(all_vc_counts() == vcs + 1, "HLT raises no #VC, a pending IPI ends it (%lu #VCs)",
	       all_vc_counts() - vcs);

	/* MMIO: a shared access to a GPA without RAM, decoded and done through the GHCB. */
	*(volatile u32 *)IOAPIC_BASE = 1; /* IOREGSEL: the version register (C7 /0) */
	ver = *(volatile u32 *)(IOAPIC_BASE + 0x10);
	ver8 = *(volatile u8 *)IOAPIC_BASE; /* MOVZX */
	report(snp_vc_count(SVM_EXIT_NPF) == mmio + 3, "MMIO raises #VC 0x400 (NPF)");
	report(((ver >> 16) & 0xff) == 23 && ver8 == 1,
	       "IOAPIC version %x: 24 redirection entries; IOREGSEL byte read %x", ver, ver8);
	g = ghcb_start();
	ghcb_set(g, GHCB_SW_SCRATCH, ghcb_pa(g) + GHCB_SHARED_BUFFER);
	a.info1 = ghcb_call(g, SVM_VMGEXIT_MMIO_READ, IOAPIC_BASE + 0x10, 4);
	memcpy(&ver_ghcb, &g->bytes[GHCB_SHARED_BUFFER], 4);
	ghcb_end(g);
	report(a.info1 == 0 && ver_ghcb == ver, "the GHCB MMIO read agrees (%x)", ver_ghcb);
	cap = *(volatile u64 *)HPET_BASE;
	report(((cap >> 16) & 0xffff) == 0x8086 && (cap >> 32) != 0,
	       "HPET capabilities, a 64-bit MMIO read: vendor %lx, period %lu fs", (cap >> 16) & 0xffff,
	       cap >> 32);
	report_prefix_pop();
}

/* ---- devices ------------------------------------------------------------------ */

static void test_dma(void)
{
	u64 desc_pa = ptr_to_pa(alloc_page()), buf_pa = ptr_to_pa(alloc_page());
	u8 *priv = alloc_page(), *buf = pa_to_ptr(buf_pa);
	struct fw_cfg_dma_access *d = pa_to_ptr(desc_pa);
	u32 ctl;

	report_prefix_push("DMA");
	report(set_memory_shared(desc_pa, 1) == 0 && set_memory_shared(buf_pa, 1) == 0,
	       "descriptor and buffer pages made shared (Linux's order)");
	memset(buf, 0x11, PAGE_SIZE);
	ctl = fw_cfg_dma_read(d, FW_CFG_SIGNATURE, buf, 4);
	report(ctl == 0 && !memcmp(buf, "QEMU", 4), "a device writes a shared page (ctl %x)", ctl);
	memset(priv, 0x22, PAGE_SIZE);
	ctl = fw_cfg_dma_read(d, FW_CFG_SIGNATURE, priv, 4);
	report(ctl == 0 && all_bytes(priv, PAGE_SIZE, 0x22),
	       "a device cannot write a private page (ctl %x, %02x)", ctl, priv[0]);
	report(set_memory_private(buf_pa, 1) == 0 && all_bytes(buf, PAGE_SIZE, 0),
	       "the buffer back to private: validated, reads zero");
	buf[0] = 0x33;
	ctl = fw_cfg_dma_read(d, FW_CFG_SIGNATURE, buf, 4);
	report(buf[0] == 0x33, "and out of the device's reach");
	report_prefix_pop();
}

/* ---- termination ------------------------------------------------------------- */

static void __noreturn terminate(bool ghcb)
{
	report_info("requesting termination through the %s", ghcb ? "GHCB page" : "MSR protocol");
	if (ghcb) {
		struct ghcb *g = ghcb_start();

		/* SW_EXITINFO1: reason set 3:0, reason code 11:4. */
		for (;;)
			ghcb_call(g, SVM_VMGEXIT_TERM_REQUEST, 3 | 0x42 << 4, 0);
	}
	snp_terminate(2, 0x17);
}

int main(void)
{
	if (!is_snp_guest()) {
		report(false, "not an SNP guest (vm-type=snp, -cpu max,phys-bits=52?)");
		return 1;
	}
	if (cmdline_has("terminate"))
		terminate(false);
	if (cmdline_has("terminate-ghcb"))
		terminate(true);
	if (cmdline_has("ghcb-unregistered")) {
		/*
		 * Another GPA registered, then a VMGEXIT through this vCPU's
		 * GHCB: KVM's sev_handle_vmgexit() fails KVM_RUN with -EINVAL
		 * and QEMU stops the VM; no answer reaches the guest.
		 */
		u64 other = ptr_to_pa(alloc_page());
		struct ghcb *g;

		report_info("a VMGEXIT through this vCPU's GHCB with %lx registered", other);
		g = ghcb_start();
		snp_msr_protocol(GHCB_MSR_REG_GPA_REQ | (other >> PAGE_SHIFT) << 12);
		ghcb_set(g, GHCB_RAX, 0);
		ghcb_call(g, SVM_EXIT_CPUID, 0, 0);
		ghcb_end(g);
		report(false, "the VMGEXIT through an unregistered GHCB returned");
		return 0;
	}
	if (cmdline_has("mmio-private")) {
		/*
		 * The IOAPIC mapped with the C-bit (the boot map has it on RAM
		 * only): the #NPF is a private access (PFERR_GUEST_ENC), KVM
		 * exits with KVM_EXIT_MEMORY_FAULT and QEMU cannot convert
		 * MMIO, so the VM stops; no #VC.
		 */
		u64 *pml4 = pa_to_ptr(read_cr3() & PT_ADDR_MASK & ~snp_c_bit_mask());

		install_page(pml4, IOAPIC_BASE, IOAPIC_BASE | snp_c_bit_mask(),
			     PT_PRESENT | PT_WRITABLE);
		invlpg(IOAPIC_BASE);
		report_info("reading the IOAPIC through the private alias");
		(void)*(volatile u32 *)IOAPIC_BASE;
		report(false, "the private MMIO read returned");
		return 0;
	}
	if (cmdline_has("strict")) {
		test_alias(true);
		return 0;
	}
	test_identity();
	test_cpuid();
	test_ghcb();
	test_msr();
	test_vc_frames();
	test_intercepts();
	test_own_vc_handler();
	test_pvalidate();
	test_rmpadjust();
	test_rescind_every_alias();
	test_psc_msr();
	test_psc_ghcb();
	test_alias(false);
	test_dma();
	return 0;
}
