// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * tdxcpu: CPUID and RDMSR/WRMSR in a TD, walked over every leaf and MSR
 * the TDX module names, against the module's own tables
 * (tdxcpu_tables.h, generated from plugin/src/tdx/cpuid_table.rs and
 * msr.rs: TDX module 1.5 cpuid_configurations.c, msr_config_lookup.c).
 *
 * A #VE handler of the test's own records each CPUID or MSR #VE (exit
 * reason, instruction length) and skips the instruction without asking
 * the VMM; port I/O and HLT it passes to the runtime (the console).
 *
 *  - CPUID: a faulting or unlisted leaf raises #VE with exit reason 10
 *    and length 2; a listed one answers with its fixed-1 bits set and its
 *    fixed-0 bits clear (but the dynamic ones); leaves beyond the range
 *    read as leaf 0x23.
 *  - MSRs: the class the module's bitmap and actions give this TD (its
 *    ATTRIBUTES from TDG.VP.INFO, its XFAM and features from its CPUID):
 *    #VE (exit reason 31/32, length 2), #GP, native (no #VE) or emulated
 *    by the module (values checked where the module fixes them; EFER,
 *    DEBUGCTL and XSS writes by the module's rules). Writes are made only
 *    where they cannot take effect (#VE, #GP) or where the module's rule
 *    is the test.
 *  - CR0 and CR4: every bit flipped with MOV to CR (tdxcpu_tables.h, from
 *    plugin/src/tdx/cr.rs: the module's td_vmcs_init.c masks and its
 *    helpers.c checks): #GP, #VE with exit reason 28 and the access's exit
 *    qualification (length 3), ignored (CR0's reserved bits), or native,
 *    each native write undone by the next instruction. LMSW and CLTS run
 *    natively.
 */
#include "libcflat.h"
#include "tdx.h"
#include "tdxcpu_tables.h"

#define MSR_EFER 0xc0000080
#define MSR_XSS 0xda0
#define MSR_DEBUGCTL 0x1d9
#define MSR_MISC_ENABLE 0x1a0
#define MSR_PERF_CAPABILITIES 0x345
#define MSR_PERF_METRICS 0x329
#define MSR_XAPIC_DISABLE_STATUS 0xbd

static struct {
	u64 n, reason, len, qual;
} seen;

static void ve_handler(struct ex_regs *regs)
{
	struct tdx_module_args ve = { 0 };

	/* First, before anything that may #VE (a #VE over unread info is #DF). */
	if (tdcall(TDG_VP_VEINFO_GET, &ve)) {
		report(false, "TDG.VP.VEINFO.GET failed in the #VE handler");
		exit(1);
	}
	if (ve.rcx == EXIT_REASON_IO_INSTRUCTION || ve.rcx == EXIT_REASON_HLT) {
		if (tdx_handle_ve(regs, &ve))
			return;
	}
	seen.n++;
	seen.reason = ve.rcx;
	seen.len = (u32)ve.r10;
	seen.qual = ve.rdx;
	if (ve.rcx != EXIT_REASON_CPUID && ve.rcx != EXIT_REASON_MSR_READ &&
	    ve.rcx != EXIT_REASON_MSR_WRITE && ve.rcx != EXIT_REASON_CR_ACCESS) {
		report(false, "unexpected #VE, exit reason %lu at rip %lx", ve.rcx, regs->rip);
		exit(1);
	}
	regs->rip += (u32)ve.r10;
}

enum outcome { OK, VE, GP, OTHER };
static const char *const outcome_name[] = { "ok", "#VE", "#GP", "other" };

/* What the last probe did; for a #VE, `reason` must match. */
static enum outcome outcome_of(u64 n0, int vector, u64 reason)
{
	if (seen.n != n0)
		return seen.n == n0 + 1 && seen.reason == reason && seen.len == 2 ? VE : OTHER;
	if (vector == GP_VECTOR)
		return GP;
	return vector == -1 ? OK : OTHER;
}

static enum outcome try_rdmsr(u32 msr, u64 *val)
{
	u32 lo = 0, hi = 0;
	u64 n0 = seen.n;

	asm volatile(ASM_TRY("1f") "rdmsr\n1:" : "+a"(lo), "+d"(hi) : "c"(msr) : "memory");
	*val = (u64)hi << 32 | lo;
	return outcome_of(n0, exception_vector(), EXIT_REASON_MSR_READ);
}

static enum outcome try_wrmsr(u32 msr, u64 val)
{
	u64 n0 = seen.n;

	asm volatile(ASM_TRY("1f") "wrmsr\n1:" :: "a"((u32)val), "d"((u32)(val >> 32)), "c"(msr)
		     : "memory");
	return outcome_of(n0, exception_vector(), EXIT_REASON_MSR_WRITE);
}

static enum outcome try_cpuid(u32 leaf, u32 sub, u32 out[4])
{
	u32 a = leaf, b = 0, c = sub, d = 0;
	u64 n0 = seen.n;

	asm volatile(ASM_TRY("1f") "cpuid\n1:" : "+a"(a), "=b"(b), "+c"(c), "=d"(d) :: "memory");
	out[0] = a, out[1] = b, out[2] = c, out[3] = d;
	return outcome_of(n0, exception_vector(), EXIT_REASON_CPUID);
}

/* ---- What the TD has: TDH.MNG.INIT's cpuid_flags, from its own CPUID ---- */

static struct {
	bool perfmon, pks, waitpkg, xfd, tsx, tsc_deadline, dca, tme, mktme;
	u64 xfam;
} td;

#define XFAM_PT (1ul << 8)
#define XFAM_PK (1ul << 9)
#define XFAM_CET (3ul << 11)
#define XFAM_ULI (1ul << 14)
#define XFAM_LBR (1ul << 15)

static void td_features(void)
{
	struct tdx_module_args a = { 0 };
	struct cpuid l1 = cpuid(1), l7 = cpuid_indexed(7, 0);
	struct cpuid d0 = cpuid_indexed(0xd, 0), d1 = cpuid_indexed(0xd, 1);

	report(tdcall(TDG_VP_INFO, &a) == 0, "TDG.VP.INFO: ATTRIBUTES %lx", a.rdx);
	td.perfmon = a.rdx & (1ul << 63);
	td.pks = a.rdx & (1ul << 30);
	td.waitpkg = l7.c & (1u << 5);
	td.xfd = d1.a & (1u << 4);
	td.tsx = (l7.b & (1u << 4)) && (l7.b & (1u << 11));
	td.tsc_deadline = l1.c & (1u << 24);
	td.dca = l1.c & (1u << 18);
	td.tme = l7.c & (1u << 13);
	td.mktme = l7.d & (1u << 18);
	/* The TD's 0xD leaves show its XFAM: user bits in 0.EAX/EDX, supervisor in 1.ECX. */
	td.xfam = d0.a | (u64)d0.d << 32 | (d1.c & 0x1fd00);
	report_info("XFAM %lx; WAITPKG %d XFD %d TSX %d TSC-deadline %d DCA %d TME %d PCONFIG %d",
		    td.xfam, td.waitpkg, td.xfd, td.tsx, td.tsc_deadline, td.dca, td.tme,
		    td.mktme);
}

/* is_msr_dynamic_bit_cleared(): the access runs natively. */
static bool dynamic_cleared(u8 bit, u32 msr)
{
	switch (bit) {
	case MSR_BIT_PERFMON: return td.perfmon;
	case MSR_BIT_XFAM_CET: return (td.xfam & XFAM_CET) == XFAM_CET;
	case MSR_BIT_XFAM_PT: return td.xfam & XFAM_PT;
	case MSR_BIT_XFAM_ULI: return td.xfam & XFAM_ULI;
	case MSR_BIT_XFAM_LBR: return td.xfam & XFAM_LBR;
	case MSR_BIT_UMWAIT: return td.waitpkg;
	case MSR_BIT_XFD: return td.xfd;
	case MSR_BIT_PKS: return td.pks;
	case MSR_BIT_TSX: return td.tsx;
	/* PERF_METRICS also needs the CPU's PERF_METRICS_AVAILABLE: PERFMON first. */
	case MSR_BIT_OTHER:
		return msr == MSR_PERF_CAPABILITIES && td.perfmon && (td.xfam & XFAM_PT);
	default: return false;
	}
}

static bool has_feature_of(u32 msr)
{
	if (msr >= 0x1f8 && msr <= 0x1fa)
		return td.dca;
	if (msr >= 0x981 && msr <= 0x984)
		return td.tme;
	if (msr == 0x87)
		return td.mktme;
	return msr == 0x6e0 && td.tsc_deadline;
}

enum class { NATIVE, CLASS_GP, CLASS_VE, MODULE };
static const char *const class_name[] = { "native", "#GP", "#VE", "module" };

static enum class classify(const struct tdx_msr_entry *e, u32 msr, bool write)
{
	u8 bit = write ? e->wr_bit : e->rd_bit, act = write ? e->wr_act : e->rd_act;

	if (bit == MSR_BIT_FIXED0 || (bit != MSR_BIT_FIXED1 && dynamic_cleared(bit, msr)))
		return NATIVE;
	switch (act) {
	case MSR_ACT_VE: return CLASS_VE;
	case MSR_ACT_GP_OR_VE: return has_feature_of(msr) ? CLASS_VE : CLASS_GP;
	case MSR_ACT_MODULE: return MODULE;
	default: return CLASS_GP;
	}
}

static bool outcome_fits(enum class c, enum outcome o)
{
	switch (c) {
	case CLASS_VE: return o == VE;
	case CLASS_GP: return o == GP;
	case MODULE: return o == OK;
	default: return o == OK || o == GP; /* QEMU's: never the module's #VE */
	}
}

/* The values the module fixes for an emulated read (td_msr_access.c). */
static bool module_value_ok(u32 msr, u64 v)
{
	if (msr == MSR_XAPIC_DISABLE_STATUS)
		return v == 1;
	if (msr == MSR_PERF_CAPABILITIES && !td.perfmon)
		return v == 0;
	if (msr == MSR_MISC_ENABLE && !td.perfmon)
		return !(v & (1u << 7)) && (v & (1u << 12));
	if (msr >= 0x480 && msr <= 0x492)
		return v == 0; /* TCG has no VMX to derive them from (docs/tdx.md) */
	return true;
}

static void test_msr_table(void)
{
	int n = sizeof(tdx_msr_table) / sizeof(tdx_msr_table[0]);

	report_prefix_push("MSR");
	for (int i = 0; i < n; i++) {
		const struct tdx_msr_entry *e = &tdx_msr_table[i];
		bool ok = true;
		u32 bad = 0;
		enum class rc = 0, wc = 0;
		enum outcome ro = OK, wo = OK;

		for (u32 m = e->first; m <= e->last; m++) {
			u64 v;

			rc = classify(e, m, false);
			ro = try_rdmsr(m, &v);
			if (!outcome_fits(rc, ro) || (rc == MODULE && !module_value_ok(m, v))) {
				ok = false, bad = m;
				break;
			}
			/* Writes only where they cannot take effect. */
			wc = classify(e, m, true);
			if (wc == CLASS_VE || wc == CLASS_GP) {
				wo = try_wrmsr(m, 0);
				if (!outcome_fits(wc, wo)) {
					ok = false, bad = m;
					break;
				}
			}
		}
		if (ok)
			report(true, "%s %x-%x: RDMSR %s, WRMSR %s%s", e->name, e->first, e->last,
			       class_name[rc], class_name[wc],
			       wc == CLASS_VE || wc == CLASS_GP ? "" : " (not written)");
		else
			report(false, "%s: MSR %x: RDMSR want %s, got %s; WRMSR want %s, got %s",
			       e->name, bad, class_name[rc], outcome_name[ro], class_name[wc],
			       outcome_name[wo]);
	}
	report_prefix_pop();
}

/* MSRs in no table entry: #VE both ways, inside the bitmap's ranges or not. */
static void test_unlisted_msrs(void)
{
	static const u32 msrs[] = { 0x1b, 0x3a, 0x802, 0x80f, 0x830, 0x838, 0x1fff,
				    0x2000, 0xc0000083, 0xc0001fff, 0xc0002000, 0x40000000,
				    0x4b564d00, 0xc0010131 };

	report_prefix_push("unlisted MSR");
	for (unsigned int i = 0; i < sizeof(msrs) / sizeof(msrs[0]); i++) {
		u64 v;
		enum outcome r = try_rdmsr(msrs[i], &v), w = try_wrmsr(msrs[i], 0);

		report(r == VE && w == VE, "%x: RDMSR %s, WRMSR %s (want #VE, #VE)", msrs[i],
		       outcome_name[r], outcome_name[w]);
	}
	report_prefix_pop();
}

static void test_module_writes(void)
{
	u64 efer = 0, v = 0;
	bool ok;

	report_prefix_push("emulated WRMSR");
	/* EFER: only SCE may change; LMA is kept; anything else is a #VE. */
	ok = try_rdmsr(MSR_EFER, &efer) == OK;
	report(ok, "EFER %lx", efer);
	report(efer & (1u << 11), "EFER.NXE set (the module's initial EFER 0x901)");
	report(try_wrmsr(MSR_EFER, efer) == OK, "EFER unchanged: done");
	ok = try_wrmsr(MSR_EFER, efer & ~1ul) == OK && try_rdmsr(MSR_EFER, &v) == OK;
	report(ok && v == (efer & ~1ul), "EFER.SCE cleared: done (%lx)", v);
	report(try_wrmsr(MSR_EFER, efer) == OK, "EFER.SCE set again");
	report(try_wrmsr(MSR_EFER, efer & ~(1ul << 11)) == VE, "EFER.NXE cleared: #VE");
	report(try_wrmsr(MSR_EFER, efer & ~(1ul << 10)) == OK, "EFER.LMA cleared: kept, done");
	/* DEBUGCTL: reserved bits #GP, TR without BTS #VE, bit 13 kept at 0. */
	report(try_wrmsr(MSR_DEBUGCTL, 1u << 3) == GP, "DEBUGCTL bit 3 (reserved): #GP");
	report(try_wrmsr(MSR_DEBUGCTL, 1ul << 32) == GP, "DEBUGCTL bit 32 (reserved): #GP");
	report(try_wrmsr(MSR_DEBUGCTL, 1u << 6) == VE, "DEBUGCTL.TR without BTS: #VE");
	ok = try_wrmsr(MSR_DEBUGCTL, (1u << 13) | 1) == OK && try_rdmsr(MSR_DEBUGCTL, &v) == OK;
	report(ok && v == 1, "DEBUGCTL: LBR kept, EN_UNCORE_PMI not (%lx)", v);
	report(try_wrmsr(MSR_DEBUGCTL, 0) == OK, "DEBUGCTL 0");
	/* XSS: a bit XFAM does not enable is #GP; 0 is fine. */
	for (int b = 8; b <= 16; b++) {
		if ((0x1fd00ul >> b & 1) && !(td.xfam >> b & 1)) {
			report(try_wrmsr(MSR_XSS, 1ul << b) == GP, "XSS bit %d, not in XFAM: #GP", b);
			break;
		}
	}
	report(try_wrmsr(MSR_XSS, 0) == OK, "XSS 0: done");
	report_prefix_pop();
}

static bool cpuid_listed(u32 leaf, u32 sub)
{
	int n = sizeof(tdx_cpuid_table) / sizeof(tdx_cpuid_table[0]);

	for (int i = 0; i < n; i++)
		if (tdx_cpuid_table[i].leaf == leaf &&
		    (tdx_cpuid_table[i].subleaf == ~0u || tdx_cpuid_table[i].subleaf == sub))
			return true;
	return false;
}

static void test_cpuid_table(void)
{
	int n = sizeof(tdx_cpuid_table) / sizeof(tdx_cpuid_table[0]);

	report_prefix_push("CPUID");
	for (int i = 0; i < n; i++) {
		const struct tdx_cpuid_entry *e = &tdx_cpuid_table[i];
		u32 sub = e->subleaf == ~0u ? 0 : e->subleaf, v[4];
		enum outcome o = try_cpuid(e->leaf, sub, v);
		bool ok;

		if (e->faulting) {
			report(o == VE, "%x.%x: faulting: %s", e->leaf, sub, outcome_name[o]);
			continue;
		}
		ok = o == OK;
		for (int r = 0; ok && r < 4; r++)
			ok = (v[r] & e->fixed1[r]) == e->fixed1[r] &&
			     !(v[r] & e->fixed0[r] & ~e->dynamic[r]);
		report(ok, "%x.%x: %s, fixed bits hold (%08x %08x %08x %08x)", e->leaf, sub,
		       outcome_name[o], v[0], v[1], v[2], v[3]);
		/* ECX is no input of a leaf without sub-leaves. */
		if (e->subleaf == ~0u) {
			u32 w[4];

			o = try_cpuid(e->leaf, 7, w);
			report(o == OK && !memcmp(v, w, sizeof(v)), "%x.7 reads as %x.0", e->leaf,
			       e->leaf);
		}
	}
	/* Every basic leaf and sub-leaf 0, and the sub-leaf past each listed one. */
	for (u32 leaf = 0; leaf <= 0x23; leaf++) {
		for (u32 sub = 0; sub <= 0x13; sub++) {
			u32 v[4];
			enum outcome o;

			if (sub > 0 && !cpuid_listed(leaf, sub - 1))
				break;
			if (cpuid_listed(leaf, sub))
				continue;
			o = try_cpuid(leaf, sub, v);
			report(o == VE, "%x.%x: not in the table: %s", leaf, sub, outcome_name[o]);
		}
	}
	for (u32 leaf = 0x80000000; leaf <= 0x80000008; leaf++) {
		u32 v[4];

		if (!cpuid_listed(leaf, 0))
			report(try_cpuid(leaf, 0, v) == VE, "%x: not in the table: #VE", leaf);
	}
	{
		u32 v[4], w[4];

		report(try_cpuid(0x40000000, 0, v) == VE, "40000000: the VMM's range: #VE");
		report(try_cpuid(0x10000, 0, v) == OK && try_cpuid(0x23, 0, w) == OK &&
		       !memcmp(v, w, sizeof(v)), "10000: beyond the basic range, reads as 23.0");
		report(try_cpuid(0, 0, v) == OK && v[0] == 0x23, "0: maximum basic leaf 0x23");
	}
	report_prefix_pop();
}

/* TDG.VP.CPUIDVE.SET: every CPUID at CPL 0 a #VE, even a leaf the module answers. */
static void test_cpuidve_set(void)
{
	struct tdx_module_args a = { .rcx = 1 };
	u32 v[4];

	report_prefix_push("CPUIDVE.SET");
	report(tdcall(TDG_VP_CPUIDVE_SET, &a) == 0, "supervisor #VE on");
	report(try_cpuid(0x21, 0, v) == VE, "CPUID 0x21 at CPL 0: #VE");
	a = (struct tdx_module_args){ .rcx = 2 };
	report(tdcall(TDG_VP_CPUIDVE_SET, &a) == 0, "user #VE only");
	report(try_cpuid(0x21, 0, v) == OK, "CPUID 0x21 at CPL 0: answered");
	a = (struct tdx_module_args){ .rcx = 4 };
	report(tdcall(TDG_VP_CPUIDVE_SET, &a) == (TDX_OPERAND_INVALID | TDX_OPERAND_ID_RCX),
	       "reserved bit: TDX_OPERAND_INVALID (RCX)");
	a = (struct tdx_module_args){ .rcx = 0 };
	report(tdcall(TDG_VP_CPUIDVE_SET, &a) == 0, "off");
	report_prefix_pop();
}

/* ---- CR0 and CR4 ---- */

#define CR0_ET (1ul << 4)
#define CR0_NW (1ul << 29)
#define CR0_CD (1ul << 30)
#define CR4_MCE (1ul << 6)

static u64 rd_cr(int cr)
{
	return cr == 0 ? read_cr0() : read_cr4();
}

/*
 * MOV of @val to CR@cr from RAX, then (if it ran) the register read back
 * into *@after and @restore written at once: nothing between the two
 * writes depends on the bits flipped.
 */
static enum outcome try_cr(int cr, u64 val, u64 restore, u64 *after)
{
	u64 n0 = seen.n, got = restore;
	int vector;

	if (cr == 0)
		asm volatile(ASM_TRY("1f") "mov %%rax, %%cr0\n\tmov %%cr0, %%rdx\n\t"
			     "mov %%rcx, %%cr0\n1:" : "+d"(got) : "a"(val), "c"(restore) : "memory");
	else
		asm volatile(ASM_TRY("1f") "mov %%rax, %%cr4\n\tmov %%cr4, %%rdx\n\t"
			     "mov %%rcx, %%cr4\n1:" : "+d"(got) : "a"(val), "c"(restore) : "memory");
	vector = exception_vector();
	*after = got;
	if (seen.n != n0)
		return seen.n == n0 + 1 && seen.reason == EXIT_REASON_CR_ACCESS && seen.len == 3 &&
		       seen.qual == (u64)cr ? VE : OTHER;
	if (vector == GP_VECTOR)
		return GP;
	return vector == -1 ? OK : OTHER;
}

/* Native flips the test cannot undo in time: out of long mode, or code fetches under SMEP. */
static bool cr_unsafe(int cr, int bit)
{
	return (cr == 0 && bit == 31) || (cr == 4 && (bit == 5 || bit == 20));
}

static void test_cr_bits(void)
{
	static const char *const want_name[] = { "native", "ignored", "#GP", "#VE", "done" };
	u64 cr0 = read_cr0(), cr4 = read_cr4(), after;
	unsigned int i;

	report_prefix_push("CR");
	/*
	 * A TD cvmem's loader started may begin with CD and NW set (reset)
	 * and MCE clear: bringing them to the module's values is native.
	 */
	report(try_cr(0, cr0 & ~(CR0_CD | CR0_NW), cr0 & ~(CR0_CD | CR0_NW), &after) == OK,
	       "CR0 %lx: CD and NW cleared", cr0);
	report(try_cr(4, cr4 | CR4_MCE, cr4 | CR4_MCE, &after) == OK, "CR4 %lx: MCE set", cr4);
	cr0 = read_cr0();
	cr4 = read_cr4();
	report((cr0 & ~CR0_ET) == (TDXCPU_CR0 & ~CR0_ET) && cr4 == TDXCPU_CR4,
	       "CR0 %lx, CR4 %lx as the tables assume (%lx, %lx)", cr0, cr4, TDXCPU_CR0,
	       TDXCPU_CR4);

	for (i = 0; i < ARRAY_SIZE(tdx_cr_table); i++) {
		const struct tdx_cr_bit *e = &tdx_cr_table[i];
		u64 cur = rd_cr(e->cr), val = cur ^ (1ul << e->bit);
		enum outcome o;
		u8 want = e->outcome;
		bool ok;

		/*
		 * The table is the default TD's; CR4.PKE needs XFAM.PK (helpers.c
		 * write_guest_cr4()): with another xfam= it is #GP.
		 */
		if (e->cr == 4 && e->bit == 22 && !(td.xfam & XFAM_PK))
			want = CR_GP;
		if (want == CR_NATIVE && cr_unsafe(e->cr, e->bit)) {
			report_skip("CR%d.%d %s: native, not undoable here", e->cr, e->bit, e->name);
			continue;
		}
		o = try_cr(e->cr, val, cur, &after);
		switch (want) {
		case CR_NATIVE:
			/* LA57 changes in 64-bit mode are the CPU's #GP. */
			if (e->cr == 4 && e->bit == 12)
				ok = o == GP;
			else
				ok = o == OK && (after | CR0_ET * !e->cr) == (val | CR0_ET * !e->cr);
			break;
		case CR_IGNORED:
			ok = o == OK && after == cur;
			break;
		case CR_GP:
			ok = o == GP;
			break;
		case CR_VE:
			ok = o == VE;
			break;
		default:
			ok = false;
		}
		ok = ok && rd_cr(e->cr) == cur;
		report(ok, "CR%d.%d %s flipped: %s (want %s; read %lx)", e->cr, e->bit, e->name,
		       outcome_name[o], want_name[want], after);
	}

	/* The exit qualification names the source register (R9: 11:8 = 9; REX, 4 bytes). */
	{
		register u64 r9 asm("r9") = read_cr4() | (1ul << 13);
		u64 n0 = seen.n;

		asm volatile(ASM_TRY("1f") "mov %0, %%cr4\n1:" :: "r"(r9) : "memory");
		report(seen.n == n0 + 1 && seen.reason == EXIT_REASON_CR_ACCESS &&
		       seen.qual == (4 | 9 << 8) && seen.len == 4,
		       "MOV to CR4 from R9 (VMXE): #VE, qualification %lx, length %lu", seen.qual,
		       seen.len);
	}
	/* LMSW and CLTS never exit: the masks own no bit of CR0 3:1. */
	{
		u64 n0 = seen.n;
		u16 msw = (u16)read_cr0() | (1u << 3);

		asm volatile("lmsw %0" :: "r"(msw) : "memory");
		report(seen.n == n0 && (read_cr0() & (1ul << 3)), "LMSW sets TS: native");
		asm volatile("clts" ::: "memory");
		report(seen.n == n0 && !(read_cr0() & (1ul << 3)), "CLTS: native");
		msw = (u16)read_cr0() & ~1u;
		asm volatile("lmsw %0" :: "r"(msw) : "memory");
		report(seen.n == n0 && (read_cr0() & 1), "LMSW cannot clear PE: native, PE kept");
	}
	report_prefix_pop();
}

/* ---- XSETBV (td_xsetbv.c: ECX 0 and check_guest_xcr0_value(), else #GP(0)) ---- */

#define CR4_OSXSAVE (1ul << 18)
#define XCR0_X87 (1ul << 0)
#define XCR0_SSE (1ul << 1)
#define XCR0_AVX (1ul << 2)
#define XCR0_OPMASK (1ul << 5)

static u64 xgetbv0(void)
{
	u32 lo, hi;

	asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return (u64)hi << 32 | lo;
}

static enum outcome try_xsetbv(u32 index, u64 val)
{
	u64 n0 = seen.n;

	asm volatile(ASM_TRY("1f") "xsetbv\n1:" :: "c"(index), "a"((u32)val),
		     "d"((u32)(val >> 32)) : "memory");
	return outcome_of(n0, exception_vector(), 0);
}

/*
 * What the TD may set in XCR0 is its XFAM (the CPU's components besides,
 * which XFAM never exceeds): -cpu max has AVX and PKRU, so a TD with
 * xfam=0x3 takes two #GPs more than a default one.
 */
static void test_xsetbv(void)
{
	u64 cr4 = read_cr4(), xcr0;
	int vector;

	report_prefix_push("XSETBV");
	write_cr4(cr4 & ~CR4_OSXSAVE);
	asm volatile(ASM_TRY("1f") "xsetbv\n1:" :: "c"(0), "a"(3), "d"(0) : "memory");
	vector = exception_vector();
	report(vector == UD_VECTOR, "CR4.OSXSAVE clear: #UD (vector %d)", vector);
	write_cr4(cr4 | CR4_OSXSAVE);
	xcr0 = xgetbv0();
	report_info("XCR0 %lx", xcr0);
	report(try_xsetbv(0, XCR0_X87 | XCR0_SSE) == OK && xgetbv0() == (XCR0_X87 | XCR0_SSE),
	       "x87, SSE: written");
	report(try_xsetbv(1, XCR0_X87) == GP, "XCR1: #GP");
	report(try_xsetbv(0, 0) == GP, "no x87: #GP");
	report(try_xsetbv(0, XCR0_X87 | XCR0_AVX) == GP, "AVX without SSE: #GP");
	report(try_xsetbv(0, XCR0_X87 | XCR0_SSE | XCR0_AVX | XCR0_OPMASK) == GP,
	       "AVX-512 opmask alone: #GP");
	report(try_xsetbv(0, XCR0_X87 | XCR0_SSE | XCR0_AVX) == (td.xfam & XCR0_AVX ? OK : GP),
	       "AVX: %s with XFAM %lx", td.xfam & XCR0_AVX ? "written" : "#GP", td.xfam);
	report(try_xsetbv(0, XCR0_X87 | XCR0_SSE | XFAM_PK) == (td.xfam & XFAM_PK ? OK : GP),
	       "PKRU: %s with XFAM %lx", td.xfam & XFAM_PK ? "written" : "#GP", td.xfam);
	report(try_xsetbv(0, xcr0) == OK && xgetbv0() == xcr0, "XCR0 back to %lx", xcr0);
	write_cr4(cr4);
	report_prefix_pop();
}

static u64 td_ctls_write(u64 value, u64 mask)
{
	struct tdx_module_args a = { .rdx = TDCS_TD_CTLS, .r8 = value, .r9 = mask };

	return tdcall(TDG_VM_WR, &a);
}

/*
 * TD_CTLS.REDUCE_VE (a TDX module with #VE reduction: td_cpuid.c,
 * td_msr_access.c): leaves and MSRs that raised #VE answer, or #GP, and
 * raise #VE again once it is cleared.
 */
static void test_reduce_ve(void)
{
	u32 v[4], l1[4];
	enum outcome o;
	u64 val;

	report_prefix_push("REDUCE_VE");
	report(try_cpuid(1, 0, l1) == OK, "CPUID 1");
	report(try_cpuid(2, 0, v) == VE, "off: CPUID 2: #VE");
	report(try_cpuid(0xb, 0, v) == VE, "off: CPUID 0xB: #VE");
	report(try_cpuid(6, 0, v) == VE, "off: CPUID 6: #VE");
	report(try_rdmsr(0x8b, &val) == VE, "off: RDMSR BIOS_SIGN_ID: #VE");
	report(try_rdmsr(0x2ff, &val) == VE, "off: RDMSR MTRR_DEF_TYPE: #VE");
	report(try_rdmsr(0x802, &val) == VE, "off: RDMSR x2APIC ID: #VE");
	report(td_ctls_write(TD_CTLS_REDUCE_VE, TD_CTLS_REDUCE_VE) == 0, "TD_CTLS.REDUCE_VE set");
	/* Probe first: the arguments of report() are evaluated in any order. */
	o = try_cpuid(2, 0, v);
	report(o == OK && v[0] == 0x00feff01 && !v[1] && !v[2] && !v[3],
	       "CPUID 2: %08x (use leaves 4 and 0x18)", v[0]);
	o = try_cpuid(0xb, 0, v);
	report(o == OK && (v[2] & 0xff) == 0, "CPUID 0xB.0: x2APIC ID %x", v[3]);
	report(try_cpuid(6, 0, v) == OK && !v[0] && !v[1] && !v[2] && !v[3], "CPUID 6: 0");
	report(try_cpuid(0x80000002, 0, v) == OK, "CPUID 0x80000002 answered");
	report(try_cpuid(0x40000000, 0, v) == VE, "CPUID 0x40000000: still #VE");
	o = try_cpuid(1, 0, v);
	report(o == OK &&
	       !(v[3] & ((1u << 7) | (1u << 12) | (1u << 14) | (1u << 22))) &&
	       !(v[2] & (1u << 24)),
	       "CPUID 1: no MCE, MTRR, MCA, ACPI, TSC deadline (EDX %08x -> %08x)", l1[3], v[3]);
	o = try_rdmsr(0x8b, &val);
	report(o == OK && val == 0xffffffff, "RDMSR BIOS_SIGN_ID: %lx", val);
	report(try_rdmsr(0x3a, &val) == OK && val == 1, "RDMSR FEATURE_CONTROL: locked");
	report(try_rdmsr(0x2ff, &val) == GP, "RDMSR MTRR_DEF_TYPE: #GP");
	report(try_rdmsr(0x481, &val) == GP, "RDMSR VMX_PINBASED_CTLS: #GP");
	o = try_rdmsr(0x802, &val);
	report(o == OK && val == v[1] >> 24, "RDMSR x2APIC ID: %lx", val);
	report(try_wrmsr(0x830, 0) == VE, "WRMSR x2APIC ICR: still #VE");
	report(try_wrmsr(0x10, 0) == VE, "WRMSR TSC: still #VE");
	report(td_ctls_write(0, TD_CTLS_REDUCE_VE) == 0, "TD_CTLS.REDUCE_VE cleared");
	report(try_cpuid(6, 0, v) == VE, "CPUID 6: #VE again");
	report(try_rdmsr(0x2ff, &val) == VE, "RDMSR MTRR_DEF_TYPE: #VE again");
	report(try_cpuid(1, 0, v) == OK && v[3] == l1[3], "CPUID 1 EDX as before");
	report_prefix_pop();
}

int main(void)
{
	handle_exception(VE_VECTOR, ve_handler);
	td_features();
	test_cpuid_table();
	test_msr_table();
	test_unlisted_msrs();
	test_module_writes();
	test_cpuidve_set();
	test_cr_bits();
	test_xsetbv();
	test_reduce_ve();
	handle_exception(VE_VECTOR, NULL);
	return 0;
}
