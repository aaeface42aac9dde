/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * snpfuzz: a hostile SNP guest. Thousands of seeded random GHCB MSR
 * protocol requests, GHCB page exits (random exit codes, usage, valid
 * bitmaps, scratch areas, page-state change descriptors), PVALIDATE and
 * RMPADJUST operands and memory touches; every answer must be one the
 * GHCB specification, KVM or the APM documents, and the guest must keep
 * running.
 *
 * Operands that could destroy the test itself are confined: every GPA a
 * request may change (page-state changes, PVALIDATE, RMPADJUST, scratch
 * areas, GHCB GPAs) lies in a sacrificial region the test otherwise leaves
 * alone, port writes go to the POST port and MSR writes to MSRs that do
 * not exist, a re-registered GHCB is registered back before anything can
 * take a #VC, and termination requests are left out (they end the guest
 * by design). Then every instruction the plugin takes, at CPL 3 with
 * random registers: each must fault as the APM says, or complete through
 * the runtime's #VC handler. Seed: -append seed=N (default 1).
 */
#include "libcflat.h"
#include "fuzz.h"
#include "snp.h"

#define ITERATIONS 6000
#define USER_ITERATIONS 2000
#define SACRIFICE_BASE (128ul << 20) /* above accept=64M: starts unvalidated */
#define SACRIFICE_SIZE (64ul << 20)
#define SHARED_VA 0x200000000ul      /* the sacrificial region's shared alias */
#define UNMAPPED_VA 0x300000000ul
#define KVM_ENOSYS 1000
#define KVM_EPERM 1

static u64 bad;
static u64 counts[6]; /* MSR protocol, GHCB, PVALIDATE, RMPADJUST, touches, exceptions */

/* A GPA in the sacrificial region, sometimes misaligned or 2M aligned. */
static u64 sacrificial_gpa(void)
{
	u64 gpa = SACRIFICE_BASE + (rnd() % SACRIFICE_SIZE);

	switch (rnd() % 4) {
	case 0:
		return gpa;
	case 1:
		return gpa & ~(LARGE_PAGE_SIZE - 1);
	default:
		return gpa & ~(PAGE_SIZE - 1);
	}
}

static u64 sacrificial_gfn(void)
{
	/* Now and then the IOAPIC's GFN: MMIO, which cannot change state. */
	return rnd() % 16 ? sacrificial_gpa() >> PAGE_SHIFT : 0xfec00;
}

#define BAD(...)                                 \
	do {                                     \
		if (bad++ < 8)                   \
			printf(__VA_ARGS__);     \
	} while (0)

/* ---- the MSR protocol ------------------------------------------------------ */

static void fuzz_msr_protocol(void)
{
	static const u64 codes[] = {
		GHCB_MSR_SEV_INFO_REQ, GHCB_MSR_CPUID_REQ, GHCB_MSR_AP_RESET_HOLD_REQ,
		GHCB_MSR_PREF_GPA_REQ, GHCB_MSR_REG_GPA_REQ, GHCB_MSR_PSC_REQ, GHCB_MSR_HV_FT_REQ,
	};
	u64 code = rnd() % 8 ? codes[rnd() % ARRAY_SIZE(codes)] : rnd() & 0xfff;
	u64 req, resp, info;
	struct ghcb *g;

	if (code == GHCB_MSR_TERM_REQ || code == 0)
		code = GHCB_MSR_HV_FT_REQ;
	req = (operand() & ~GHCB_MSR_INFO_MASK) | code;
	if (code == GHCB_MSR_PSC_REQ)
		req = GHCB_MSR_PSC_REQ_GFN(sacrificial_gfn(), rnd() % 4) |
		      (rnd() % 4 ? 0 : operand() & (0xfful << 56));
	counts[0]++;
	if (code == GHCB_MSR_REG_GPA_REQ) {
		/* Registers another GPA: put ours back before anything can #VC. */
		g = ghcb_start();
		resp = snp_msr_protocol(req);
		info = snp_msr_protocol(GHCB_MSR_REG_GPA_REQ | (ghcb_pa(g) >> PAGE_SHIFT) << 12);
		ghcb_end(g);
		if (resp != (GHCB_MSR_REG_GPA_RESP | (req & ~GHCB_MSR_INFO_MASK)))
			BAD("REG_GPA %lx: answer %lx\n", req, resp);
		if (info != (GHCB_MSR_REG_GPA_RESP | (ghcb_pa(g) >> PAGE_SHIFT) << 12))
			BAD("REG_GPA of the GHCB: answer %lx\n", info);
		return;
	}
	resp = snp_msr_protocol(req);
	info = resp & GHCB_MSR_INFO_MASK;
	switch (code) {
	case GHCB_MSR_SEV_INFO_REQ:
		if (resp != (2ul << 48 | 1ul << 32 | 51ul << 24 | GHCB_MSR_SEV_INFO_RESP))
			BAD("SEV_INFO %lx: answer %lx\n", req, resp);
		break;
	case GHCB_MSR_CPUID_REQ:
		if (info != GHCB_MSR_CPUID_RESP || ((resp >> 30) & 3) != ((req >> 30) & 3))
			BAD("CPUID %lx: answer %lx\n", req, resp);
		break;
	case GHCB_MSR_PSC_REQ:
		if (info != GHCB_MSR_PSC_RESP || (resp & 0xfffff000ul))
			BAD("PSC %lx: answer %lx\n", req, resp);
		break;
	case GHCB_MSR_HV_FT_REQ:
		if (resp != ((GHCB_HV_FT_SNP | GHCB_HV_FT_SNP_AP_CREATION) << 12 | GHCB_MSR_HV_FT_RESP))
			BAD("HV_FT %lx: answer %lx\n", req, resp);
		break;
	case GHCB_MSR_PREF_GPA_REQ:
		if (resp != (GHCB_MSR_PREF_GPA_NONE << 12 | GHCB_MSR_PREF_GPA_RESP))
			BAD("PREF_GPA %lx: answer %lx\n", req, resp);
		break;
	case GHCB_MSR_AP_RESET_HOLD_REQ:
		/* Not offered (unknown: unchanged), or KVM's SEV-ES answer. */
		if (resp != req && info != GHCB_MSR_AP_RESET_HOLD_RESP)
			BAD("AP_RESET_HOLD %lx: answer %lx\n", req, resp);
		break;
	default:
		/* KVM leaves an unknown request in the MSR as it is. */
		if (resp != req)
			BAD("request %lx: answer %lx (not unchanged)\n", req, resp);
		break;
	}
}

/* ---- the GHCB page ----------------------------------------------------------- */

static const u64 exits[] = {
	SVM_EXIT_CPUID, SVM_EXIT_IOIO, SVM_EXIT_MSR, SVM_EXIT_HLT, SVM_EXIT_VMMCALL,
	SVM_VMGEXIT_MMIO_READ, SVM_VMGEXIT_NMI_COMPLETE, SVM_VMGEXIT_AP_HLT_LOOP,
	SVM_VMGEXIT_AP_JUMP_TABLE, SVM_VMGEXIT_PSC, SVM_VMGEXIT_GUEST_REQUEST,
	SVM_VMGEXIT_EXT_GUEST_REQUEST, SVM_VMGEXIT_HV_FEATURES,
};

/* Reads at these ports, 1, 2 or 4 bytes, including past a device's last port (0x3fd). */
static const u16 in_ports[] = { 0x80, 0x71, 0x510, 0x511, 0xcfc, 0x1234, 0x3f8, 0x3fd };

/* A page-state change descriptor of random entries in the shared buffer. */
static void random_psc(struct ghcb *g)
{
	struct snp_psc_desc *d = (void *)&g->bytes[GHCB_SHARED_BUFFER];
	int n = 1 + (int)(rnd() % (rnd() % 4 ? 16 : VMGEXIT_PSC_MAX_ENTRY));

	/*
	 * Every entry the hypervisor may read is one of ours: the rest of the
	 * buffer is cleared (entry 0: GFN 0, operation 0, which does nothing).
	 */
	memset(d->entries, 0, sizeof(d->entries));
	d->hdr.cur_entry = rnd() % 8 ? 0 : (u16)(rnd() % 300);
	d->hdr.end_entry = rnd() % 8 ? (u16)(n - 1) : (u16)operand();
	d->hdr.reserved = rnd() % 8 ? 0 : (u32)operand();
	for (int i = 0; i < n; i++) {
		bool huge = rnd() % 4 == 0;
		u64 gfn = sacrificial_gfn();

		if (huge && rnd() % 4)
			gfn &= ~511ul;
		d->entries[i] = PSC_ENTRY(gfn, rnd() % 8 ? 1 + rnd() % 2 : rnd() % 16, huge) |
				(rnd() % 8 ? 0 : rnd() % 600) | (rnd() % 16 ? 0 : operand() & (0x7ful << 57));
	}
}

static bool documented_ghcb(u64 code, u64 info1, u64 info2, u64 rax, bool *psc_ok)
{
	*psc_ok = false;
	switch ((u32)info1) {
	case GHCB_RESULT_OK:
		break;
	case GHCB_RESULT_EVENT:
		/* Only a refused MSR asks for an event: #GP. */
		return code == SVM_EXIT_MSR && info2 == SNP_GP_EVENT;
	case GHCB_RESULT_ERROR:
		return info2 >= GHCB_ERR_NOT_REGISTERED && info2 <= GHCB_ERR_INVALID_EVENT;
	default:
		return false;
	}
	switch (code) {
	case SVM_VMGEXIT_PSC:
		*psc_ok = true;
		return info2 == 0 || info2 == VMGEXIT_PSC_ERROR_INVALID_HDR ||
		       info2 == VMGEXIT_PSC_ERROR_INVALID_ENTRY || info2 == VMGEXIT_PSC_ERROR_GENERIC;
	case SVM_EXIT_VMMCALL:
		return rax == (u64)-KVM_ENOSYS || rax == (u64)-KVM_EPERM;
	case SVM_VMGEXIT_HV_FEATURES:
		return info2 == (GHCB_HV_FT_SNP | GHCB_HV_FT_SNP_AP_CREATION);
	case SVM_VMGEXIT_GUEST_REQUEST:
	case SVM_VMGEXIT_EXT_GUEST_REQUEST:
		return info2 != 0; /* some failure status: there is no AMD-SP */
	default:
		return true;
	}
}

static void fuzz_ghcb(void)
{
	u64 code = rnd() % 16 ? exits[rnd() % ARRAY_SIZE(exits)] : operand();
	u64 info1 = operand(), info2 = operand(), r, rax;
	u32 usage = rnd() % 16 ? 0 : (u32)operand();
	struct ghcb *g;
	bool psc;
	u64 pa;

	/* Never ask to be terminated; the unsupported-event exit stops the guest too. */
	if (code == SVM_VMGEXIT_TERM_REQUEST || code == SVM_VMGEXIT_UNSUPPORTED_EVENT)
		code = SVM_VMGEXIT_HV_FEATURES;
	g = ghcb_start();
	pa = ghcb_pa(g);
	/* Inputs: the usual ones mostly, anything now and then. */
	if (rnd() % 8)
		ghcb_set(g, GHCB_RAX, rnd() % 2 ? rnd() % 0x20 : operand());
	if (rnd() % 2)
		ghcb_set(g, GHCB_RCX, operand());
	if (rnd() % 2)
		ghcb_set(g, GHCB_RDX, operand());
	if (rnd() % 2)
		ghcb_set(g, GHCB_RBX, operand());
	if (rnd() % 2)
		ghcb_set(g, GHCB_XCR0, rnd() % 2 ? 1 : operand());
	if (rnd() % 2)
		ghcb_set_cpl(g, (u8)(rnd() % 4 ? 0 : rnd()));
	if (rnd() % 8) {
		switch (rnd() % 4) {
		case 0:
			ghcb_set(g, GHCB_SW_SCRATCH, pa + GHCB_SHARED_BUFFER);
			break;
		case 1:
			ghcb_set(g, GHCB_SW_SCRATCH, pa + GHCB_SHARED_BUFFER + (rnd() % GHCB_SHARED_BUF_SIZE));
			break;
		case 2:
			ghcb_set(g, GHCB_SW_SCRATCH, pa + (rnd() % PAGE_SIZE));
			break;
		default:
			ghcb_set(g, GHCB_SW_SCRATCH, rnd() % 2 ? sacrificial_gpa() : operand());
			break;
		}
	}
	/* Now and then a scrambled valid bitmap (the exit's own fields follow). */
	if (rnd() % 16 == 0)
		g->bytes[GHCB_VALID_BITMAP + rnd() % 16] ^= (u8)rnd();
	switch (code) {
	case SVM_EXIT_IOIO: {
		bool in = rnd() % 4 != 0;
		u64 port = in ? in_ports[rnd() % ARRAY_SIZE(in_ports)] : 0x80;

		info1 = port << 16 | (in ? SVM_IOIO_TYPE_IN : 0) | (rnd() % 8) << 4 |
			(rnd() % 4 ? 0 : SVM_IOIO_STR | SVM_IOIO_REP) | SVM_IOIO_A64;
		info2 = rnd() % 4 ? rnd() % 64 : operand();
		break;
	}
	case SVM_EXIT_MSR:
		info1 = rnd() % 4 ? 0 : rnd() % 4 ? 1 : operand();
		if (info1 == 0)
			ghcb_set(g, GHCB_RCX, rnd() % 2 ? operand() : 0xc0000000 | (rnd() & 0x1ff));
		else
			ghcb_set(g, GHCB_RCX, 0xdead0000 | (rnd() & 0xffff)); /* no such MSR */
		break;
	case SVM_VMGEXIT_MMIO_READ:
		info1 = rnd() % 2 ? 0xfec00000 + (rnd() & 0xff) : rnd() % 2 ? sacrificial_gpa() : operand();
		info2 = rnd() % 4 ? 1ul << (rnd() % 4) : operand();
		break;
	case SVM_VMGEXIT_PSC:
		/*
		 * The descriptor must be ours: a scratch area elsewhere (a shared
		 * sacrificial page, an offset into our entries) would hand the
		 * hypervisor GFNs outside the sacrificial region.
		 */
		random_psc(g);
		switch (rnd() % 8) {
		case 0:
			ghcb_set(g, GHCB_SW_SCRATCH, pa + (rnd() % GHCB_SHARED_BUFFER));
			break;
		case 1:
			ghcb_set(g, GHCB_SW_SCRATCH, 0);
			break;
		case 2:
			g->bytes[GHCB_VALID_BITMAP + GHCB_SW_SCRATCH / 64] &= (u8)~(1u << (GHCB_SW_SCRATCH / 8 % 8));
			break;
		default:
			ghcb_set(g, GHCB_SW_SCRATCH, pa + GHCB_SHARED_BUFFER);
			break;
		}
		break;
	case SVM_VMGEXIT_GUEST_REQUEST:
	case SVM_VMGEXIT_EXT_GUEST_REQUEST:
		if (rnd() % 2) {
			info1 = sacrificial_gpa() & ~(PAGE_SIZE - 1);
			info2 = info1 + PAGE_SIZE;
		}
		break;
	}
	ghcb_set(g, GHCB_SW_EXIT_CODE, code);
	ghcb_set(g, GHCB_SW_EXIT_INFO_1, info1);
	ghcb_set(g, GHCB_SW_EXIT_INFO_2, info2);
	*(volatile u16 *)&g->bytes[GHCB_PROTOCOL_VERSION_OFF] = rnd() % 8 ? 2 : (u16)rnd();
	*(volatile u32 *)&g->bytes[GHCB_USAGE] = usage;
	wrmsr(MSR_AMD64_SEV_ES_GHCB, pa);
	vmgexit();
	r = ghcb_get(g, GHCB_SW_EXIT_INFO_1);
	info2 = ghcb_get(g, GHCB_SW_EXIT_INFO_2);
	rax = ghcb_get(g, GHCB_RAX);
	*(volatile u32 *)&g->bytes[GHCB_USAGE] = 0;
	ghcb_end(g);
	counts[1]++;
	if (!documented_ghcb(code, r, info2, rax, &psc))
		BAD("GHCB exit %lx (info1 %lx, usage %x): answer %lx, %lx, rax %lx\n", code, info1,
		    usage, r, info2, rax);
}

/*
 * A GHCB page at a random GPA KVM cannot map (0, with the C-bit, or above
 * RAM): ignored, the guest resumes. A mappable GPA the vCPU has not
 * registered would fail KVM_RUN and stop the VM (snp-ghcb-unregistered).
 */
static void fuzz_foreign_ghcb(void)
{
	u64 gpa;
	u64 resp;

	switch (rnd() % 3) {
	case 0:
		gpa = (sacrificial_gpa() & ~(PAGE_SIZE - 1)) | snp_c_bit_mask();
		break;
	case 1:
		gpa = (operand() | 1ul << 40) & ~0xffful;
		break;
	default:
		gpa = 0;
		break;
	}
	resp = snp_msr_protocol(gpa);
	counts[0]++;
	if (resp != gpa)
		BAD("VMGEXIT with the GHCB MSR at %lx: MSR now %lx\n", gpa, resp);
}

/* ---- PVALIDATE, RMPADJUST, touches ----------------------------------------- */

/* A linear address: the sacrificial region's private or shared alias, or nothing. */
static u64 random_va(void)
{
	u64 gpa = sacrificial_gpa();

	switch (rnd() % 8) {
	case 0:
		return SHARED_VA + gpa;
	case 1:
		return UNMAPPED_VA + (rnd() & 0xfffff);
	default:
		return gpa;
	}
}

static void fuzz_pvalidate(void)
{
	u64 va = random_va(), rcx = rnd() % 4 ? rnd() % 2 : operand(), rdx = operand();
	u32 eax = ~0u;
	bool cf = false;
	int vec;

	asm volatile(ASM_TRY("1f") ".byte 0xf2, 0x0f, 0x01, 0xff\n1:"
		     : "=a"(eax), "=@ccc"(cf) : "a"(va), "c"(rcx), "d"(rdx) : "memory");
	vec = exception_vector();
	counts[2]++;
	if (vec == -1) {
		if (eax != PVALIDATE_OK && eax != PVALIDATE_FAIL_INPUT && eax != PVALIDATE_FAIL_SIZEMISMATCH)
			BAD("PVALIDATE %lx, %lx, %lx: EAX %x\n", va, rcx, rdx, eax);
		else if (cf && eax != PVALIDATE_OK)
			BAD("PVALIDATE %lx, %lx, %lx: EAX %x with CF set\n", va, rcx, rdx, eax);
	} else {
		counts[5]++;
		if (!(vec == PF_VECTOR && va >= UNMAPPED_VA))
			BAD("PVALIDATE %lx, %lx, %lx: exception %d (%lx)\n", va, rcx, rdx, vec,
			    exception_error_code());
	}
}

static void fuzz_rmpadjust(void)
{
	u64 va = random_va(), rcx = rnd() % 4 ? rnd() % 2 : operand();
	u64 rdx = rnd() % 4 ? (rnd() % 5) | (rnd() & 0xf) << 8 | (rnd() % 8 ? 0 : RMPADJUST_VMSA_PAGE_BIT)
			    : operand();
	u32 eax = ~0u;
	int vec;

	asm volatile(ASM_TRY("1f") ".byte 0xf3, 0x0f, 0x01, 0xfe\n1:"
		     : "=a"(eax) : "a"(va), "c"(rcx), "d"(rdx) : "memory", "cc");
	vec = exception_vector();
	counts[3]++;
	if (vec == -1) {
		if (eax != RMPADJUST_OK && eax != RMPADJUST_FAIL_INPUT &&
		    eax != RMPADJUST_FAIL_PERMISSION && eax != RMPADJUST_FAIL_SIZEMISMATCH)
			BAD("RMPADJUST %lx, %lx, %lx: EAX %x\n", va, rcx, rdx, eax);
	} else {
		counts[5]++;
		if (!(vec == PF_VECTOR && va >= UNMAPPED_VA) &&
		    !(vec == VC_VECTOR && exception_error_code() == SVM_EXIT_PAGE_NOT_VALIDATED))
			BAD("RMPADJUST %lx, %lx, %lx: exception %d (%lx)\n", va, rcx, rdx, vec,
			    exception_error_code());
	}
}

/* A read or write of a sacrificial page through either alias. */
static void fuzz_touch(void)
{
	u64 gpa = sacrificial_gpa() & ~7ul;
	volatile u64 *p = (volatile u64 *)(rnd() % 2 ? gpa : SHARED_VA + gpa);
	u64 v = rnd();
	int vec;

	if (rnd() % 2)
		asm volatile(ASM_TRY("1f") "movq (%1), %0\n1:" : "+r"(v) : "r"(p) : "memory");
	else
		asm volatile(ASM_TRY("1f") "movq %1, (%0)\n1:" : : "r"(p), "r"(v) : "memory");
	vec = exception_vector();
	counts[4]++;
	if (vec != -1) {
		counts[5]++;
		if (!(vec == VC_VECTOR && exception_error_code() == SVM_EXIT_PAGE_NOT_VALIDATED &&
		      (u64)p < SHARED_VA))
			BAD("touch %p: exception %d (%lx)\n", p, vec, exception_error_code());
	}
}

/*
 * Port reads wider than the device's ports, through the GHCB: KVM hands
 * them to QEMU's kvm_handle_io(), i.e. address_space_rw(), which clamps
 * the access to the device's region. A 2- or 4-byte IN at the UART's LSR
 * (0x3fd) reaches past its 8 ports; it must be answered, not kill the VMM.
 */
static void ioio_edge(void)
{
	for (u64 size = 2; size <= 4; size += 2) {
		struct ghcb *g = ghcb_start();
		u64 info1 = 0x3fdul << SVM_IOIO_PORT_SHIFT | SVM_IOIO_TYPE_IN |
			    (size == 2 ? SVM_IOIO_SZ16 : SVM_IOIO_SZ32) | SVM_IOIO_A64;
		u64 r;

		ghcb_set(g, GHCB_RAX, 0);
		r = ghcb_call(g, SVM_EXIT_IOIO, info1, 0);
		ghcb_end(g);
		report(r == 0, "a %lu-byte IN at port 0x3fd through the GHCB is answered", size);
	}
}

int main(void)
{
	u64 *canary = alloc_page();
	u64 resp;

	if (!is_snp_guest()) {
		report(false, "not an SNP guest");
		return 1;
	}
	if (cmdline_has("ioio-edge")) {
		ioio_edge();
		return 0;
	}
	report_info("seed %lu, %d iterations", fuzz_seed(), ITERATIONS);
	for (u64 off = 0; off < SACRIFICE_SIZE; off += PAGE_SIZE)
		install_page(boot_pml4(), SHARED_VA + SACRIFICE_BASE + off, SACRIFICE_BASE + off,
			     PT_PRESENT | PT_WRITABLE);
	for (int i = 0; i < 512; i++)
		canary[i] = 0xca11ab1e0000ul | i;

	for (int i = 0; i < ITERATIONS; i++) {
		switch (rnd() % 8) {
		case 0:
		case 1:
			fuzz_msr_protocol();
			break;
		case 2:
		case 3:
			fuzz_ghcb();
			break;
		case 4:
			fuzz_pvalidate();
			break;
		case 5:
			fuzz_rmpadjust();
			break;
		case 6:
			fuzz_touch();
			break;
		default:
			if (rnd() % 4)
				fuzz_touch();
			else
				fuzz_foreign_ghcb();
			break;
		}
	}
	report_info("%lu MSR-protocol requests, %lu GHCB exits, %lu PVALIDATE, %lu RMPADJUST, "
		    "%lu touches, %lu exceptions", counts[0], counts[1], counts[2], counts[3],
		    counts[4], counts[5]);
	report(bad == 0, "%d operations, %lu undocumented answers", ITERATIONS, bad);
	/*
	 * CPL 3: PVALIDATE and RMPADJUST are #GP(0) above CPL 0 (APM vol. 3,
	 * PVALIDATE, RMPADJUST); the privileged instructions #GP(0) as on bare
	 * metal (RDMSR, WRMSR, HLT, MOV CR; IN/OUT with IOPL 0 and no I/O
	 * bitmap); TDCALL #UD; CPUID and VMMCALL complete through the
	 * runtime's #VC handler (KVM refuses a hypercall from CPL 3 with
	 * -KVM_EPERM). VMGEXIT takes no CPL: the hypervisor sees whatever the
	 * GHCB holds; VMCALL is the CPU model's: each must only come back.
	 */
	{
		static const enum user_expect expect[USER_NR_INSNS] = {
			[USER_TDCALL] = EXPECT_UD, [USER_VMCALL] = EXPECT_ANY,
			[USER_VMMCALL] = EXPECT_DONE, [USER_VMGEXIT] = EXPECT_ANY,
			[USER_PVALIDATE] = EXPECT_GP0, [USER_RMPADJUST] = EXPECT_GP0,
			[USER_RDMSR] = EXPECT_GP0, [USER_WRMSR] = EXPECT_GP0,
			[USER_CPUID] = EXPECT_DONE, [USER_HLT] = EXPECT_GP0,
			[USER_IN] = EXPECT_GP0, [USER_OUT] = EXPECT_GP0,
			[USER_MOV_CR4] = EXPECT_GP0, [USER_MOV_CR0] = EXPECT_GP0,
		};
		u64 wrong = fuzz_user_phase(expect, USER_ITERATIONS);

		report(wrong == 0, "CPL 3: %lu instructions ended otherwise than the spec says",
		       wrong);
	}
	resp = snp_msr_protocol(GHCB_MSR_SEV_INFO_REQ);
	report(is_snp_guest() && GHCB_MSR_CBIT(resp) == 51 && cpuid(0).a >= 0xd,
	       "the guest still runs: MSR protocol and #VC answer");
	report(({
		       bool ok = true;

		       for (int i = 0; i < 512; i++)
			       ok = ok && canary[i] == (0xca11ab1e0000ul | i);
		       ok;
	       }),
	       "memory outside the sacrificial region is intact");
	return 0;
}
