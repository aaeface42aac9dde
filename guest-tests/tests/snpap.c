/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * snpap: SEV-SNP AP creation (GHCB NAE event 0x80000013, GHCB spec §4.1.8)
 * as KVM answers it (arch/x86/kvm/svm/sev.c, sev_snp_ap_creation()), the
 * guest side written after Linux's wakeup_cpu_via_vmgexit() and
 * snp_set_vmsa() (arch/x86/coco/sev/core.c). Needs -smp 2.
 *
 * The test builds VMSA pages that start vCPU 1 in 64-bit mode on the
 * boot page tables, marks them VMSAs with RMPADJUST (VMPL0 targeting
 * VMPL1 with the VMSA bit, as Linux does) and asks for AP_CREATE,
 * AP_DESTROY and AP_CREATE again; requests KVM refuses get
 * SW_EXITINFO1 = 2, SW_EXITINFO2 = GHCB_ERR_INVALID_INPUT.
 *
 * -append no-vmsa asks for an AP whose page is no VMSA (no RMPADJUST):
 * its VMRUN fails and the VM stops, as QEMU stops on KVM_EXIT_FAIL_ENTRY.
 * -append vmsa-features does the same with a VMSA whose SEV_FEATURES lack
 * SNP_ACTIVE.
 */
#include "libcflat.h"
#include "snp.h"

#define SZ_2M (2ul << 20)
#define AP_CREATE_ON_INIT 0ul
#define AP_CREATE 1ul
#define AP_DESTROY 2ul
#define SEV_FEAT_SNP_ACTIVE (1ul << 0)
#define SEV_FEAT_RESTRICTED_INJECTION (1ul << 3)
#define EFER_SVME (1ul << 12)
/* How long to wait for the AP, in TSC ticks (TCG: the host's TSC). */
#define WAIT_TICKS (10ul * 1000 * 1000 * 1000)

/* struct vmcb_seg and the offsets of struct sev_es_save_area (asm/svm.h). */
struct vmcb_seg {
	u16 selector;
	u16 attrib;
	u32 limit;
	u64 base;
} __attribute__((packed));

enum { SEG_ES, SEG_CS, SEG_SS, SEG_DS, SEG_FS, SEG_GS, SEG_GDTR, SEG_LDTR, SEG_IDTR, SEG_TR };
#define VMSA_VMPL 0xca
#define VMSA_EFER 0xd0
#define VMSA_CR4 0x148
#define VMSA_CR3 0x150
#define VMSA_CR0 0x158
#define VMSA_DR7 0x160
#define VMSA_DR6 0x168
#define VMSA_RFLAGS 0x170
#define VMSA_RIP 0x178
#define VMSA_RSP 0x1d8
#define VMSA_RAX 0x1f8
#define VMSA_G_PAT 0x268
#define VMSA_RDI 0x338
#define VMSA_SEV_FEATURES 0x3b0
#define VMSA_XCR0 0x3e8
#define VMSA_MXCSR 0x408
#define VMSA_X87_FTW 0x40c
#define VMSA_X87_FCW 0x410

struct desc_ptr {
	u16 limit;
	u64 base;
} __attribute__((packed));

static volatile u64 ap_mailbox;
static volatile u64 ap_counter;
static u8 ap_stack[4096] __attribute__((aligned(16)));

/* The AP's code: no intercepted instruction, no per-CPU area. */
static void __attribute__((noreturn, used)) ap_report(u64 value)
{
	ap_mailbox = value;
	for (;;)
		asm volatile("cli; hlt");
}

static void __attribute__((noreturn, used)) ap_spin(u64 unused)
{
	(void)unused;
	for (;;) {
		ap_counter++;
		asm volatile("pause" ::: "memory");
	}
}

static void vmsa_put(u8 *v, unsigned int off, u64 value)
{
	*(u64 *)(v + off) = value;
}

/*
 * A VMSA page (not 2M aligned) that starts fn(arg) in 64-bit mode on this
 * CPU's page tables, GDT and IDT; RMPADJUSTed into a VMSA if mark.
 */
static u8 *new_vmsa(void (*fn)(u64), u64 arg, u64 features, bool mark)
{
	struct vmcb_seg *seg;
	struct desc_ptr gdtr, idtr;
	u8 *v;

	do
		v = alloc_page();
	while ((ptr_to_pa(v) & (SZ_2M - 1)) == 0);
	seg = (struct vmcb_seg *)v;
	asm volatile("sgdt %0; sidt %1" : "=m"(gdtr), "=m"(idtr));
	/* Descriptor bits 47:40 in attrib 7:0, 55:52 in 11:8. */
	seg[SEG_CS] = (struct vmcb_seg){ KERNEL_CS, 0xa9a, 0xffffffff, 0 };
	seg[SEG_DS] = (struct vmcb_seg){ KERNEL_DS, 0xc92, 0xffffffff, 0 };
	seg[SEG_ES] = seg[SEG_DS];
	seg[SEG_SS] = seg[SEG_DS];
	seg[SEG_FS] = seg[SEG_DS];
	seg[SEG_GS] = seg[SEG_DS];
	seg[SEG_GDTR] = (struct vmcb_seg){ 0, 0, gdtr.limit, gdtr.base };
	seg[SEG_IDTR] = (struct vmcb_seg){ 0, 0, idtr.limit, idtr.base };
	seg[SEG_LDTR] = (struct vmcb_seg){ 0, 0x82, 0xffff, 0 };
	seg[SEG_TR] = (struct vmcb_seg){ 0, 0x8b, 0xffff, 0 };
	v[VMSA_VMPL] = 0;
	vmsa_put(v, VMSA_EFER, rdmsr(MSR_EFER) | EFER_SVME);
	vmsa_put(v, VMSA_CR0, read_cr0());
	vmsa_put(v, VMSA_CR3, read_cr3());
	vmsa_put(v, VMSA_CR4, read_cr4());
	vmsa_put(v, VMSA_DR7, 0x400);
	vmsa_put(v, VMSA_DR6, 0xffff0ff0);
	vmsa_put(v, VMSA_RFLAGS, 2);
	vmsa_put(v, VMSA_RIP, (u64)(uintptr_t)fn);
	/* As after a call: RSP + 8 16-byte aligned. */
	vmsa_put(v, VMSA_RSP, (u64)(uintptr_t)(ap_stack + sizeof(ap_stack)) - 8);
	vmsa_put(v, VMSA_RDI, arg);
	vmsa_put(v, VMSA_G_PAT, 0x0007040600070406ul);
	vmsa_put(v, VMSA_XCR0, 1);
	*(u32 *)(v + VMSA_MXCSR) = 0x1f80;
	*(u16 *)(v + VMSA_X87_FTW) = 0x5555;
	*(u16 *)(v + VMSA_X87_FCW) = 0x37f;
	vmsa_put(v, VMSA_SEV_FEATURES, features);
	if (mark) {
		u32 rc = rmpadjust((u64)(uintptr_t)v, RMP_PG_SIZE_4K, RMPADJUST_VMSA_PAGE_BIT | 1);

		report(rc == RMPADJUST_OK, "RMPADJUST marks the page at %lx a VMSA (%u)", ptr_to_pa(v),
		       rc);
	}
	return v;
}

/* An AP creation request; returns SW_EXITINFO1, *info2 SW_EXITINFO2. */
static u64 ap_request(u64 apic, u64 request, u64 gpa, bool with_rax, u64 rax, u64 *info2)
{
	struct ghcb *g = ghcb_start();
	u64 info1;

	if (with_rax)
		ghcb_set(g, GHCB_RAX, rax);
	info1 = ghcb_call(g, SVM_VMGEXIT_AP_CREATION, apic << 32 | request, gpa);
	*info2 = ghcb_get(g, GHCB_SW_EXIT_INFO_2);
	ghcb_end(g);
	return info1;
}

static bool wait_until(volatile u64 *p, u64 value)
{
	u64 start = rdtsc();

	while (*p != value)
		if (rdtsc() - start > WAIT_TICKS)
			return false;
	return true;
}

static void spin_ticks(u64 ticks)
{
	u64 start = rdtsc();

	while (rdtsc() - start < ticks)
		asm volatile("pause");
}

static void test_features(void)
{
	struct ghcb *g;
	u64 resp, info1, info2;

	report_prefix_push("HV features");
	resp = snp_msr_protocol(GHCB_MSR_HV_FT_REQ);
	report((resp & GHCB_MSR_INFO_MASK) == GHCB_MSR_HV_FT_RESP &&
		       (resp >> 12) == (GHCB_HV_FT_SNP | GHCB_HV_FT_SNP_AP_CREATION),
	       "MSR protocol: SNP and AP creation (%lx)", resp);
	g = ghcb_start();
	info1 = ghcb_call(g, SVM_VMGEXIT_HV_FEATURES, 0, 0);
	info2 = ghcb_get(g, GHCB_SW_EXIT_INFO_2);
	ghcb_end(g);
	report(info1 == 0 && info2 == (GHCB_HV_FT_SNP | GHCB_HV_FT_SNP_AP_CREATION),
	       "GHCB: SNP and AP creation (%lx, %lx)", info1, info2);
	report_prefix_pop();
}

static void test_refused(u64 target)
{
	u8 *v = new_vmsa(ap_report, 0xbad, SEV_FEAT_SNP_ACTIVE, true);
	u64 pa = ptr_to_pa(v), info1, info2;
	const struct {
		const char *what;
		u64 apic, request, gpa;
		bool with_rax;
		u64 rax, err;
	} cases[] = {
		{ "an unaligned VMSA GPA", target, AP_CREATE, pa + 8, true, SEV_FEAT_SNP_ACTIVE,
		  GHCB_ERR_INVALID_INPUT },
		{ "a 2M-aligned VMSA GPA (the SNP erratum)", target, AP_CREATE,
		  (pa + SZ_2M) & ~(SZ_2M - 1), true, SEV_FEAT_SNP_ACTIVE, GHCB_ERR_INVALID_INPUT },
		{ "an unknown APIC ID", 7, AP_CREATE, pa, true, SEV_FEAT_SNP_ACTIVE,
		  GHCB_ERR_INVALID_INPUT },
		{ "SEV features with another injection mode", target, AP_CREATE, pa, true,
		  SEV_FEAT_SNP_ACTIVE | SEV_FEAT_RESTRICTED_INJECTION, GHCB_ERR_INVALID_INPUT },
		{ "an unknown request", target, 3, pa, true, SEV_FEAT_SNP_ACTIVE,
		  GHCB_ERR_INVALID_INPUT },
		{ "VMPL1 (an unknown request to KVM)", target, 1ul << 16 | AP_CREATE, pa, true,
		  SEV_FEAT_SNP_ACTIVE, GHCB_ERR_INVALID_INPUT },
		{ "no RAX", target, AP_CREATE, pa, false, 0, GHCB_ERR_MISSING_INPUT },
	};

	report_prefix_push("refused");
	for (unsigned int i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		info1 = ap_request(cases[i].apic, cases[i].request, cases[i].gpa, cases[i].with_rax,
				   cases[i].rax, &info2);
		report(info1 == GHCB_RESULT_ERROR && info2 == cases[i].err, "%s: error %lx/%lx",
		       cases[i].what, info1, info2);
	}
	spin_ticks(WAIT_TICKS / 50);
	report(ap_mailbox == 0, "no AP ran");
	report_prefix_pop();
}

static void test_create_destroy(u64 target)
{
	u8 *first = new_vmsa(ap_report, 1, SEV_FEAT_SNP_ACTIVE, true);
	u8 *spin = new_vmsa(ap_spin, 0, SEV_FEAT_SNP_ACTIVE, true);
	u8 *again = new_vmsa(ap_report, 2, SEV_FEAT_SNP_ACTIVE, true);
	u64 info1, info2, c1, c2;

	report_prefix_push("create");
	info1 = ap_request(target, AP_CREATE, ptr_to_pa(first), true, SEV_FEAT_SNP_ACTIVE, &info2);
	report(info1 == 0, "AP_CREATE of APIC ID %lu accepted (%lx/%lx)", target, info1, info2);
	report(wait_until(&ap_mailbox, 1), "the AP ran from the VMSA and reported (%lu)",
	       ap_mailbox);

	/* Re-created while it halts: it runs the new VMSA. */
	info1 = ap_request(target, AP_CREATE, ptr_to_pa(spin), true, SEV_FEAT_SNP_ACTIVE, &info2);
	report(info1 == 0, "AP_CREATE of the halted AP accepted (%lx/%lx)", info1, info2);
	spin_ticks(WAIT_TICKS / 50);
	report(ap_counter != 0, "the AP runs its new VMSA (counter %lu)", ap_counter);
	report_prefix_pop();

	report_prefix_push("destroy");
	info1 = ap_request(target, AP_DESTROY, 0, false, 0, &info2);
	report(info1 == 0, "AP_DESTROY accepted without RAX (%lx/%lx)", info1, info2);
	spin_ticks(WAIT_TICKS / 50);
	c1 = ap_counter;
	spin_ticks(WAIT_TICKS / 20);
	c2 = ap_counter;
	report(c1 != 0 && c1 == c2, "the destroyed AP no longer runs (counter %lu, then %lu)", c1,
	       c2);
	info1 = ap_request(target, AP_CREATE, ptr_to_pa(again), true, SEV_FEAT_SNP_ACTIVE, &info2);
	report(info1 == 0, "AP_CREATE after AP_DESTROY accepted (%lx/%lx)", info1, info2);
	report(wait_until(&ap_mailbox, 2), "the re-created AP ran and reported (%lu)", ap_mailbox);
	report(ap_counter == c2, "and not the old VMSA");
	report_prefix_pop();
}

static void __noreturn bad_vmsa(u64 target, bool mark, u64 features)
{
	u8 *v = new_vmsa(ap_report, 3, features, mark);
	u64 info2;

	report_info("AP_CREATE with %s", mark ? "SEV_FEATURES lacking SNP_ACTIVE" : "no VMSA page");
	ap_request(target, AP_CREATE, ptr_to_pa(v), true, SEV_FEAT_SNP_ACTIVE, &info2);
	report(false, "the VM went on after a failed VMRUN (AP mailbox %lu)", ap_mailbox);
	exit(report_summary(0));
}

int main(void)
{
	u64 target;

	if (!is_snp_guest()) {
		report(false, "not an SNP guest (vm-type=snp, -cpu max,phys-bits=52?)");
		return 1;
	}
	target = apic_id() == 0 ? 1 : 0;
	if (cmdline_has("no-vmsa"))
		bad_vmsa(target, false, SEV_FEAT_SNP_ACTIVE);
	if (cmdline_has("vmsa-features"))
		bad_vmsa(target, true, 0);
	test_features();
	test_refused(target);
	test_create_destroy(target);
	return 0;
}
