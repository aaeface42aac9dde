// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * snp.c: the runtime's SEV-SNP support (snp.h): GHCB set-up per CPU, the
 * GHCB page and MSR protocols, page-state changes, conversions and the #VC
 * handler (its instruction decoder is insn.c, shared with tdx.c).
 *
 * Boot order in an SNP guest (the plugin launches the guest at the first
 * memory access with paging on; from then on CPUID, port I/O, most MSRs
 * and VMMCALL raise #VC; HLT does not, an SEV-ES automatic exit):
 *  - boot.S (paging off, before launch) detects SNP and sets the C-bit in
 *    the boot identity map for RAM;
 *  - runtime_start() loads GS (MSR_GS_BASE passes through) and the IDT,
 *    sets up the allocator and calls snp_init_bsp() before serial_init():
 *    SEV_INFO and HV_FEATURES through the MSR protocol, then a GHCB page
 *    that is rescinded (PVALIDATE), made shared (MSR protocol page-state
 *    change), mapped without the C-bit by a 4K PTE and registered;
 *  - smp_init() prepares one such page per AP (snp_prepare_ap()) before
 *    the SIPIs, and each AP registers its own in ap_main() (snp_init_ap())
 *    before its first intercepted instruction. The trampoline runs with
 *    paging off (every access private) and no CPUID (boot.S).
 *
 * The GHCB of each CPU lives at its identity address, so its pointer is
 * its GPA.
 */
#include "internal.h"
#include "snp.h"
#include "insn.h"

/* Written by boot.S before paging. */
extern u64 boot_sev_status;
extern u32 boot_c_bit;
extern u64 boot_c_bit_mask;

_Static_assert(sizeof(struct ghcb) == PAGE_SIZE, "one GHCB page");
_Static_assert(sizeof(struct snp_psc_desc) == GHCB_SHARED_BUF_SIZE,
	       "a full page-state change descriptor fills the GHCB's shared buffer");
_Static_assert(GHCB_SHARED_BUFFER + GHCB_SHARED_BUF_SIZE + 10 == GHCB_PROTOCOL_VERSION_OFF,
	       "GHCB layout: shared buffer, 10 reserved bytes, protocol version");

static u64 vc_counts[5]; /* CPUID, IOIO, MSR, VMMCALL, NPF */
static struct ghcb *ap_ghcb[MAX_CPUS]; /* by slot: prepared by the BSP, registered by the AP */

bool is_snp_guest(void)
{
	return boot_sev_status & MSR_AMD64_SEV_SNP_ENABLED;
}

u64 snp_sev_status(void) { return boot_sev_status; }
unsigned int snp_c_bit(void) { return boot_c_bit; }
u64 snp_c_bit_mask(void) { return is_snp_guest() ? boot_c_bit_mask : 0; }

void snp_terminate(unsigned int reason_set, unsigned int reason_code)
{
	for (;;)
		snp_msr_protocol(GHCB_MSR_TERM(reason_set, reason_code));
}

/* ---- GHCB per CPU ------------------------------------------------------- */

u64 ghcb_pa(const struct ghcb *g)
{
	return ptr_to_pa(g);
}

struct ghcb *ghcb_start(void)
{
	struct percpu *cpu = this_cpu();
	struct ghcb *g = cpu->ghcb;

	if (!g) {
		/* No GHCB: nothing can be printed either. */
		snp_terminate(SEV_TERM_SET_LINUX, GHCB_TERM_REGISTER);
	}
	cpu->ghcb_active = true;
	/* As Linux's vc_ghcb_invalidate(): no stale input reaches the hypervisor. */
	*(volatile u64 *)&g->bytes[GHCB_SW_EXIT_CODE] = 0;
	memset(&g->bytes[GHCB_VALID_BITMAP], 0, 16);
	return g;
}

void ghcb_end(struct ghcb *g)
{
	(void)g;
	this_cpu()->ghcb_active = false;
}

u64 ghcb_call(struct ghcb *g, u64 exit_code, u64 info1, u64 info2)
{
	ghcb_set(g, GHCB_SW_EXIT_CODE, exit_code);
	ghcb_set(g, GHCB_SW_EXIT_INFO_1, info1);
	ghcb_set(g, GHCB_SW_EXIT_INFO_2, info2);
	*(volatile u16 *)&g->bytes[GHCB_PROTOCOL_VERSION_OFF] = GHCB_PROTOCOL_VERSION;
	*(volatile u32 *)&g->bytes[GHCB_USAGE] = 0;
	wrmsr(MSR_AMD64_SEV_ES_GHCB, ghcb_pa(g));
	vmgexit();
	return ghcb_get(g, GHCB_SW_EXIT_INFO_1);
}

/*
 * Turns the private page at pa (identity mapped, validated) into a shared
 * GHCB page with the MSR protocol only: rescind, page-state change, 4K PTE
 * without the C-bit. Any failure terminates: nothing can be printed yet.
 */
static struct ghcb *ghcb_page_prepare(u64 pa)
{
	u64 resp;

	if (pvalidate(pa, RMP_PG_SIZE_4K, false) != PVALIDATE_OK)
		snp_terminate(SEV_TERM_SET_LINUX, GHCB_TERM_PVALIDATE);
	resp = snp_msr_protocol(GHCB_MSR_PSC_REQ_GFN(pa >> PAGE_SHIFT, SNP_PAGE_STATE_SHARED));
	if ((resp & GHCB_MSR_INFO_MASK) != GHCB_MSR_PSC_RESP || resp >> 32)
		snp_terminate(SEV_TERM_SET_LINUX, GHCB_TERM_PSC);
	install_page(boot_pml4(), pa, pa, PT_PRESENT | PT_WRITABLE);
	memset(pa_to_ptr(pa), 0, PAGE_SIZE);
	return pa_to_ptr(pa);
}

/* Registers g as this vCPU's GHCB (REG_GPA_REQ) and points the MSR at it. */
static void ghcb_register(struct percpu *cpu, struct ghcb *g)
{
	u64 gfn = ghcb_pa(g) >> PAGE_SHIFT;
	u64 resp = snp_msr_protocol(GHCB_MSR_REG_GPA_REQ | gfn << 12);

	if ((resp & GHCB_MSR_INFO_MASK) != GHCB_MSR_REG_GPA_RESP || resp >> 12 != gfn)
		snp_terminate(SEV_TERM_SET_LINUX, GHCB_TERM_REGISTER);
	wrmsr(MSR_AMD64_SEV_ES_GHCB, ghcb_pa(g));
	cpu->ghcb = g;
}

void snp_init_bsp(void)
{
	u64 resp, pa;

	if (!is_snp_guest())
		return;
	/* The protocol range must include ours, and the C-bit must agree (Linux: sev_es_negotiate_protocol()). */
	resp = snp_msr_protocol(GHCB_MSR_SEV_INFO_REQ);
	if ((resp & GHCB_MSR_INFO_MASK) != GHCB_MSR_SEV_INFO_RESP ||
	    GHCB_MSR_PROTO_MAX(resp) < GHCB_PROTOCOL_VERSION ||
	    GHCB_MSR_PROTO_MIN(resp) > GHCB_PROTOCOL_VERSION ||
	    GHCB_MSR_CBIT(resp) != boot_c_bit)
		snp_terminate(SEV_TERM_SET_GEN, GHCB_SEV_ES_PROT_UNSUPPORTED);
	resp = snp_msr_protocol(GHCB_MSR_HV_FT_REQ);
	if ((resp & GHCB_MSR_INFO_MASK) != GHCB_MSR_HV_FT_RESP || !((resp >> 12) & GHCB_HV_FT_SNP))
		snp_terminate(SEV_TERM_SET_GEN, GHCB_SNP_UNSUPPORTED);

	pa = phys_alloc_pages(1);
	if (!pa)
		snp_terminate(SEV_TERM_SET_LINUX, GHCB_TERM_REGISTER);
	ghcb_register(this_cpu(), ghcb_page_prepare(pa));
}

void snp_prepare_ap(int slot)
{
	u64 pa;

	if (!is_snp_guest())
		return;
	pa = phys_alloc_pages(1);
	if (!pa) {
		printf("smp_init: no memory for the GHCB of AP %d\n", slot);
		abort();
	}
	ap_ghcb[slot] = ghcb_page_prepare(pa);
}

void snp_init_ap(struct percpu *cpu)
{
	if (is_snp_guest())
		ghcb_register(cpu, ap_ghcb[cpu - percpu_area]);
}

/* ---- Page-state changes, PVALIDATE, conversions ---------------------------- */

u64 snp_page_state_change_msr(u64 gpa, int op)
{
	u64 resp = snp_msr_protocol(GHCB_MSR_PSC_REQ_GFN(gpa >> PAGE_SHIFT, op));

	if ((resp & GHCB_MSR_INFO_MASK) != GHCB_MSR_PSC_RESP)
		return ~0ul;
	return resp >> 32;
}

/* The position of a descriptor's progress: entry index and its cur_page. */
static u64 psc_progress(const volatile struct snp_psc_desc *d)
{
	u16 cur = d->hdr.cur_entry;
	u64 page = cur < VMGEXIT_PSC_MAX_ENTRY ? PSC_ENTRY_CUR_PAGE(d->entries[cur]) : 0;

	return (u64)cur << 16 | page;
}

/*
 * Issues the descriptor in g's shared buffer until every entry is done
 * (Linux's vmgexit_psc()), checking that the hypervisor never goes back.
 */
static u64 psc_issue(struct ghcb *g)
{
	volatile struct snp_psc_desc *d = (void *)&g->bytes[GHCB_SHARED_BUFFER];
	u16 end = d->hdr.end_entry;
	int stalls = 0;

	while (d->hdr.cur_entry <= d->hdr.end_entry) {
		u64 before = psc_progress(d), r;

		ghcb_set(g, GHCB_SW_SCRATCH, ghcb_pa(g) + GHCB_SHARED_BUFFER);
		r = ghcb_call(g, SVM_VMGEXIT_PSC, 0, 0);
		if ((u32)r)
			return 1ul << 63 | ghcb_get(g, GHCB_SW_EXIT_INFO_2);
		if (ghcb_get(g, GHCB_SW_EXIT_INFO_2))
			return ghcb_get(g, GHCB_SW_EXIT_INFO_2);
		if (d->hdr.reserved || d->hdr.end_entry != end || psc_progress(d) < before)
			return ~0ul;
		if (psc_progress(d) == before && ++stalls == 3)
			return ~0ul;
	}
	return 0;
}

u64 snp_page_state_change(u64 gpa, u64 npages, int op, bool use_2m)
{
	u64 gfn = gpa >> PAGE_SHIFT;

	while (npages) {
		struct ghcb *g = ghcb_start();
		struct snp_psc_desc *d = (void *)&g->bytes[GHCB_SHARED_BUFFER];
		u64 err;
		int n = 0;

		while (npages && n < VMGEXIT_PSC_MAX_ENTRY) {
			bool huge = use_2m && !(gfn & 511) && npages >= 512;

			d->entries[n++] = PSC_ENTRY(gfn, op, huge);
			gfn += huge ? 512 : 1;
			npages -= huge ? 512 : 1;
		}
		d->hdr = (struct psc_hdr){ .cur_entry = 0, .end_entry = (u16)(n - 1) };
		err = psc_issue(g);
		ghcb_end(g);
		if (err)
			return err;
	}
	return 0;
}

int snp_pvalidate_range(u64 va, u64 npages, bool validate, bool use_2m, bool allow_noupdate)
{
	while (npages) {
		int rc = PVALIDATE_FAIL_SIZEMISMATCH;
		u64 step = 1;

		if (use_2m && !(va & (LARGE_PAGE_SIZE - 1)) && npages >= 512) {
			rc = pvalidate(va, RMP_PG_SIZE_2M, validate);
			step = 512;
		}
		if (rc == PVALIDATE_FAIL_SIZEMISMATCH) {
			/* Linux's pvalidate_pages(): the RMP holds 4K entries here. */
			for (u64 i = 0; i < step; i++) {
				rc = pvalidate(va + i * PAGE_SIZE, RMP_PG_SIZE_4K, validate);
				if (rc == PVALIDATE_FAIL_NOUPDATE && allow_noupdate)
					rc = 0;
				if (rc)
					return rc;
			}
		}
		if (rc == PVALIDATE_FAIL_NOUPDATE && allow_noupdate)
			rc = 0;
		if (rc)
			return rc;
		va += step * PAGE_SIZE;
		npages -= step;
	}
	return 0;
}

u64 snp_make_shared(u64 va, u64 gpa, u64 npages)
{
	int rc = snp_pvalidate_range(va, npages, false, true, true);

	if (rc)
		return (u64)rc;
	return snp_page_state_change(gpa, npages, SNP_PAGE_STATE_SHARED, true);
}

u64 snp_make_private(u64 va, u64 gpa, u64 npages)
{
	u64 err = snp_page_state_change(gpa, npages, SNP_PAGE_STATE_PRIVATE, true);

	if (err)
		return err;
	return (u64)snp_pvalidate_range(va, npages, true, true, false);
}

static void identity_set_c_bit(u64 pa, u64 npages, bool private)
{
	u64 *pml4 = pa_to_ptr(read_cr3() & PT_ADDR_MASK & ~boot_c_bit_mask);

	for (u64 i = 0; i < npages; i++) {
		u64 p = pa + i * PAGE_SIZE;

		install_page(pml4, p, p | (private ? boot_c_bit_mask : 0), PT_PRESENT | PT_WRITABLE);
	}
}

u64 set_memory_shared(u64 pa, u64 npages)
{
	u64 err = snp_make_shared(pa, pa, npages);

	if (!err)
		identity_set_c_bit(pa, npages, false);
	return err;
}

u64 set_memory_private(u64 pa, u64 npages)
{
	identity_set_c_bit(pa, npages, true);
	return snp_make_private(pa, pa, npages);
}

/* ---- #VC: page tables ----------------------------------------------------- */

/* Walks the live page tables: the GPA behind va (C-bit stripped), or false. */
static bool va_to_gpa(u64 va, u64 *gpa)
{
	u64 mask = PT_ADDR_MASK & ~boot_c_bit_mask;
	u64 *table = pa_to_ptr(read_cr3() & mask);

	for (int level = 4; level >= 1; level--) {
		unsigned int shift = PAGE_SHIFT + 9 * (level - 1);
		u64 e = table[(va >> shift) & 511];

		if (!(e & PT_PRESENT))
			return false;
		if (level == 1 || (level <= 3 && (e & PT_PAGE_SIZE))) {
			u64 size = 1ul << shift;

			*gpa = ((e & mask) & ~(size - 1)) | (va & (size - 1));
			return true;
		}
		table = pa_to_ptr(e & mask);
	}
	return false;
}

/* ---- #VC: emulation ------------------------------------------------------- */

static void __attribute__((format(printf, 3, 4))) __noreturn
vc_fail(struct ex_regs *regs, struct ghcb *g, const char *fmt, ...)
{
	u64 info1 = g ? ghcb_get(g, GHCB_SW_EXIT_INFO_1) : 0;
	u64 info2 = g ? ghcb_get(g, GHCB_SW_EXIT_INFO_2) : 0;
	char what[160];
	va_list ap;

	if (g)
		ghcb_end(g);
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	report(false, "#VC %lx at rip=%lx on cpu %d: %s (sw_exit_info_1 %lx, sw_exit_info_2 %lx)",
	       regs->error_code, regs->rip, smp_id(), what, info1, info2);
	exit(1);
}

/*
 * Checks the hypervisor's answer; an event (#GP for a refused MSR) is
 * dispatched as if the instruction had raised it. Returns false if the
 * instruction must not complete (an event was injected).
 */
static bool vc_result(struct ex_regs *regs, struct ghcb *g, u64 r)
{
	u64 info2 = ghcb_get(g, GHCB_SW_EXIT_INFO_2);

	switch ((u32)r) {
	case GHCB_RESULT_OK:
		return true;
	case GHCB_RESULT_EVENT:
		if ((info2 & SVM_EVTINJ_VALID) && (info2 & (7ul << SVM_EVTINJ_TYPE_SHIFT)) ==
							  SVM_EVTINJ_TYPE_EXEPT) {
			ghcb_end(g);
			regs->vector = info2 & SVM_EVTINJ_VEC_MASK;
			regs->error_code = info2 & SVM_EVTINJ_VALID_ERR ? info2 >> 32 : 0;
			exception_dispatch(regs);
			return false;
		}
		vc_fail(regs, g, "the hypervisor asks to inject an event that is no exception");
	default:
		vc_fail(regs, g, "the hypervisor reports an error");
	}
}

static void vc_count(int i)
{
	__atomic_fetch_add(&vc_counts[i], 1, __ATOMIC_RELAXED);
}

u64 snp_vc_count(u64 code)
{
	static const u64 codes[] = { SVM_EXIT_CPUID, SVM_EXIT_IOIO, SVM_EXIT_MSR,
				     SVM_EXIT_VMMCALL, SVM_EXIT_NPF };

	for (unsigned int i = 0; i < ARRAY_SIZE(codes); i++)
		if (codes[i] == code)
			return __atomic_load_n(&vc_counts[i], __ATOMIC_RELAXED);
	return 0;
}

static bool vc_cpuid(struct ex_regs *regs)
{
	const u8 *ip = (const u8 *)regs->rip;
	struct ghcb *g;
	u64 r;

	if (ip[0] != 0x0f || ip[1] != 0xa2)
		return false;
	g = ghcb_start();
	ghcb_set(g, GHCB_RAX, (u32)regs->rax);
	ghcb_set(g, GHCB_RCX, (u32)regs->rcx);
	if ((u32)regs->rax == 0xd) {
		u64 xcr0 = 1;

		if (read_cr4() & (1ul << 18)) { /* CR4.OSXSAVE */
			u32 lo, hi;

			asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
			xcr0 = lo | (u64)hi << 32;
		}
		ghcb_set(g, GHCB_XCR0, xcr0);
	}
	r = ghcb_call(g, SVM_EXIT_CPUID, 0, 0);
	if (!vc_result(regs, g, r))
		return true;
	regs->rax = (u32)ghcb_get(g, GHCB_RAX);
	regs->rbx = (u32)ghcb_get(g, GHCB_RBX);
	regs->rcx = (u32)ghcb_get(g, GHCB_RCX);
	regs->rdx = (u32)ghcb_get(g, GHCB_RDX);
	ghcb_end(g);
	regs->rip += 2;
	vc_count(0);
	return true;
}

static bool vc_msr(struct ex_regs *regs)
{
	const u8 *ip = (const u8 *)regs->rip;
	bool write;
	struct ghcb *g;
	u64 r;

	if (ip[0] != 0x0f || (ip[1] != 0x30 && ip[1] != 0x32))
		return false;
	write = ip[1] == 0x30;
	g = ghcb_start();
	ghcb_set(g, GHCB_RCX, (u32)regs->rcx);
	if (write) {
		ghcb_set(g, GHCB_RAX, (u32)regs->rax);
		ghcb_set(g, GHCB_RDX, (u32)regs->rdx);
	}
	r = ghcb_call(g, SVM_EXIT_MSR, write, 0);
	if (!vc_result(regs, g, r))
		return true;
	if (!write) {
		regs->rax = (u32)ghcb_get(g, GHCB_RAX);
		regs->rdx = (u32)ghcb_get(g, GHCB_RDX);
	}
	ghcb_end(g);
	regs->rip += 2;
	vc_count(2);
	return true;
}

/* VMMCALL with KVM's hypercall ABI: RAX = nr, RBX, RCX, RDX, RSI = arguments. */
static bool vc_vmmcall(struct ex_regs *regs)
{
	const u8 *ip = (const u8 *)regs->rip;
	struct ghcb *g;
	u64 r;

	if (ip[0] != 0x0f || ip[1] != 0x01 || ip[2] != 0xd9)
		return false;
	g = ghcb_start();
	ghcb_set(g, GHCB_RAX, regs->rax);
	ghcb_set_cpl(g, (u8)(regs->cs & 3));
	ghcb_set(g, GHCB_RBX, regs->rbx);
	ghcb_set(g, GHCB_RCX, regs->rcx);
	ghcb_set(g, GHCB_RDX, regs->rdx);
	ghcb_set(g, GHCB_RSI, regs->rsi);
	r = ghcb_call(g, SVM_EXIT_VMMCALL, 0, 0);
	if (!vc_result(regs, g, r))
		return true;
	regs->rax = ghcb_get(g, GHCB_RAX);
	ghcb_end(g);
	regs->rip += 3;
	vc_count(3);
	return true;
}

/* One chunk of INS/OUTS: count elements of size bytes, DF honoured. */
static bool vc_ioio_string(struct ex_regs *regs, u64 info1, int size, bool in, bool rep,
			   u64 amask)
{
	u64 total = rep ? regs->rcx & amask : 1;
	s64 step = (regs->rflags & (1ul << 10)) ? -size : size; /* DF */

	while (total) {
		u64 max = (u64)(GHCB_SHARED_BUF_SIZE / size);
		u64 chunk = total < max ? total : max;
		struct ghcb *g = ghcb_start();
		u8 *buf = &g->bytes[GHCB_SHARED_BUFFER];
		u64 r;

		if (!in)
			for (u64 i = 0; i < chunk; i++)
				memcpy(buf + i * size, (const void *)((regs->rsi & amask) + i * step),
				       size);
		ghcb_set(g, GHCB_SW_SCRATCH, ghcb_pa(g) + GHCB_SHARED_BUFFER);
		r = ghcb_call(g, SVM_EXIT_IOIO, info1, chunk);
		if (!vc_result(regs, g, r))
			return true;
		if (in)
			for (u64 i = 0; i < chunk; i++)
				memcpy((void *)((regs->rdi & amask) + i * step), buf + i * size,
				       size);
		ghcb_end(g);
		if (in)
			regs->rdi = (regs->rdi & ~amask) | ((regs->rdi + chunk * step) & amask);
		else
			regs->rsi = (regs->rsi & ~amask) | ((regs->rsi + chunk * step) & amask);
		if (rep)
			regs->rcx = (regs->rcx & ~amask) | ((regs->rcx - chunk) & amask);
		total -= chunk;
	}
	return true;
}

static bool vc_ioio(struct ex_regs *regs)
{
	struct io_insn io;
	u64 info1;
	struct ghcb *g;
	u64 r;

	if (!io_insn_decode(regs, &io))
		return false;
	info1 = (u64)io.port << SVM_IOIO_PORT_SHIFT | (io.in ? SVM_IOIO_TYPE_IN : 0) |
		(io.size == 1 ? SVM_IOIO_SZ8 : io.size == 2 ? SVM_IOIO_SZ16 : SVM_IOIO_SZ32) |
		(io.amask == 0xfffffffful ? SVM_IOIO_A32 : SVM_IOIO_A64);
	if (io.string) {
		info1 |= SVM_IOIO_STR | (io.in ? SVM_IOIO_SEG_ES : SVM_IOIO_SEG_DS);
		if (io.rep)
			info1 |= SVM_IOIO_REP;
		vc_ioio_string(regs, info1, io.size, io.in, io.rep, io.amask);
	} else {
		g = ghcb_start();
		ghcb_set(g, GHCB_RAX, io.in ? 0 : regs->rax & size_mask(io.size));
		r = ghcb_call(g, SVM_EXIT_IOIO, info1, 0);
		if (!vc_result(regs, g, r))
			return true;
		if (io.in)
			io_set_ax(regs, io.size, ghcb_get(g, GHCB_RAX));
		ghcb_end(g);
	}
	regs->rip += io.len;
	vc_count(1);
	return true;
}

/*
 * NPF on a shared access to a GPA without RAM: MMIO. The MOV forms Linux's
 * vc_handle_mmio() knows, less MOVS: 88/89/8A/8B, C6/C7, 0F B6/B7/BE/BF;
 * and A0-A3 (moffs), which compilers emit for a constant address.
 */
static bool vc_mmio(struct ex_regs *regs)
{
	struct insn in = { 0 };
	struct modrm m;
	u8 op, op2 = 0;
	int size, opsize;
	bool write, sign = false;
	u64 va, gpa, imm = 0, data = 0;
	struct ghcb *g;
	u8 *buf;
	u64 r;

	decode_prefixes(&in, regs->rip);
	if (in.seg_fs_gs)
		return false;
	opsize = in.rex & REX_W ? 8 : in.opsize16 ? 2 : 4;
	op = *in.p++;
	if (op == 0x0f)
		op2 = *in.p++;
	switch (op) {
	case 0x88: size = 1; write = true; break;
	case 0x89: size = opsize; write = true; break;
	case 0x8a: size = 1; write = false; break;
	case 0x8b: size = opsize; write = false; break;
	case 0xc6: size = 1; write = true; break;
	case 0xc7: size = opsize; write = true; break;
	case 0x0f:
		if (op2 != 0xb6 && op2 != 0xb7 && op2 != 0xbe && op2 != 0xbf)
			return false;
		size = op2 & 1 ? 2 : 1;
		sign = op2 >= 0xbe;
		write = false;
		break;
	case 0xa0: case 0xa1: case 0xa2: case 0xa3: /* MOV AL/eAX <-> moffs (movabs) */
		size = op & 1 ? opsize : 1;
		write = op >= 0xa2;
		break;
	default:
		return false;
	}
	if (op >= 0xa0 && op <= 0xa3) {
		/* No ModRM: the address is an immediate of the address size. */
		m = (struct modrm){ .reg = 0 };
		if (in.addr32) {
			m.ea = *(const u32 *)in.p;
			in.p += 4;
		} else {
			m.ea = *(const u64 *)in.p;
			in.p += 8;
		}
	} else if (!decode_modrm(&in, regs, &m)) {
		return false;
	}
	if (op == 0xc6 || op == 0xc7) {
		if ((m.reg & 7) != 0)
			return false;
		if (size == 1) {
			imm = *in.p++;
		} else if (size == 2) {
			imm = *(const u16 *)in.p;
			in.p += 2;
		} else {
			imm = (u64)(s64)*(const int32_t *)in.p; /* sign-extended for REX.W */
			in.p += 4;
		}
	}
	va = m.ea + (m.rip_rel ? (u64)in.p : 0);
	if (in.addr32)
		va = (u32)va;
	if (((va & (PAGE_SIZE - 1)) + size > PAGE_SIZE) || !va_to_gpa(va, &gpa))
		return false;

	if (write)
		data = op == 0xc6 || op == 0xc7 ? imm : reg_read(regs, &in, m.reg, size);
	g = ghcb_start();
	buf = &g->bytes[GHCB_SHARED_BUFFER];
	if (write)
		memcpy(buf, &data, size);
	ghcb_set(g, GHCB_SW_SCRATCH, ghcb_pa(g) + GHCB_SHARED_BUFFER);
	r = ghcb_call(g, write ? SVM_VMGEXIT_MMIO_WRITE : SVM_VMGEXIT_MMIO_READ, gpa, size);
	if (!vc_result(regs, g, r))
		return true;
	if (!write)
		memcpy(&data, buf, size);
	ghcb_end(g);
	if (!write) {
		if (op == 0x0f) {
			if (sign)
				data = size == 1 ? (u64)(s64)(int8_t)data : (u64)(s64)(int16_t)data;
			reg_write(regs, &in, m.reg, opsize, data);
		} else {
			reg_write(regs, &in, m.reg, size, data);
		}
	}
	regs->rip = (u64)in.p;
	vc_count(4);
	return true;
}

/* Before this CPU has a GHCB: CPUID through the MSR protocol, else terminate (Linux: do_vc_no_ghcb()). */
static bool vc_no_ghcb(struct ex_regs *regs)
{
	const u8 *ip = (const u8 *)regs->rip;
	u64 out[4];

	if (regs->error_code != SVM_EXIT_CPUID || ip[0] != 0x0f || ip[1] != 0xa2)
		snp_terminate(SEV_TERM_SET_GEN, GHCB_SEV_ES_GEN_REQ);
	for (int reg = 0; reg < 4; reg++) {
		u64 resp = snp_msr_protocol(GHCB_CPUID_REQ((u32)regs->rax, reg));

		if ((resp & GHCB_MSR_INFO_MASK) != GHCB_MSR_CPUID_RESP)
			snp_terminate(SEV_TERM_SET_GEN, GHCB_SEV_ES_GEN_REQ);
		out[reg] = resp >> 32;
	}
	regs->rax = out[0];
	regs->rbx = out[1];
	regs->rcx = out[2];
	regs->rdx = out[3];
	regs->rip += 2;
	return true;
}

static bool vc_dispatch(struct ex_regs *regs)
{
	switch (regs->error_code) {
	case SVM_EXIT_CPUID: return vc_cpuid(regs);
	case SVM_EXIT_MSR: return vc_msr(regs);
	case SVM_EXIT_IOIO: return vc_ioio(regs);
	case SVM_EXIT_VMMCALL: return vc_vmmcall(regs);
	case SVM_EXIT_NPF: return vc_mmio(regs);
	default: return false;
	}
}

/*
 * A #VC while this CPU's GHCB is in use (between ghcb_start() and
 * ghcb_end(), e.g. an exception handler printing): keep the GHCB's content
 * on the stack and put it back afterwards, as Linux does with its backup
 * GHCB.
 */
static bool __attribute__((noinline)) vc_nested(struct percpu *cpu, struct ex_regs *regs)
{
	u64 saved[PAGE_SIZE / 8];
	bool ok;

	memcpy(saved, cpu->ghcb, PAGE_SIZE);
	cpu->ghcb_active = false;
	ok = vc_dispatch(regs);
	memcpy(cpu->ghcb, saved, PAGE_SIZE);
	cpu->ghcb_active = true;
	return ok;
}

bool snp_handle_vc(struct ex_regs *regs)
{
	struct percpu *cpu = this_cpu();

	if (!is_snp_guest())
		return false;
	if (!cpu->ghcb)
		return vc_no_ghcb(regs);
	if (cpu->ghcb_active)
		return vc_nested(cpu, regs);
	return vc_dispatch(regs);
}
