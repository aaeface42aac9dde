// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * xsavec: XSAVEC and the compacted form of XRSTOR (Intel SDM vol. 1 13.4.3,
 * 13.8, 13.10; vol. 2 XSAVEC, XRSTOR), which an SEV-SNP guest's CPUID
 * promises and Linux uses for every task's FPU state.
 *
 * With XCR0 = x87|SSE|AVX: XSAVEC writes the legacy region as FXSAVE does,
 * XSTATE_BV and XCOMP_BV as the SDM says, AVX state at offset 576 and
 * nothing else; XRSTOR of the compacted image restores it, initializes a
 * component of RFBM that XSTATE_BV (or XCOMP_BV) leaves out (SSE with
 * MXCSR = 1F80H) and leaves alone one outside RFBM; the faults (misaligned
 * area, bad compacted headers, CR4.OSXSAVE clear, CR0.TS set); CPUID 0xD
 * sub-leaf 1 (XSAVEC, and EBX the compacted size for the current XCR0);
 * PKRU at its compacted offset after the MPX components, when supported.
 */
#include "libcflat.h"

#define X86_CR0_TS (1ul << 3)
#define X86_CR4_OSXSAVE (1ul << 18)
#define X86_CR4_PKE (1ul << 22)

#define XF_X87 (1ul << 0)
#define XF_SSE (1ul << 1)
#define XF_YMM (1ul << 2)
#define XF_BNDREGS (1ul << 3)
#define XF_BNDCSR (1ul << 4)
#define XF_PKRU (1ul << 9)
#define XCOMP_COMPACTED (1ul << 63)

#define HDR 512 /* the XSAVE header */
#define XSTATE_BV(a) (*(u64 *)((a) + HDR))
#define XCOMP_BV(a) (*(u64 *)((a) + HDR + 8))
#define AREA_SIZE 4096
#define FILL 0xcc

static u8 area[AREA_SIZE] __attribute__((aligned(64)));
static u8 image[AREA_SIZE] __attribute__((aligned(64)));
static u8 fx_before[512] __attribute__((aligned(16)));
static u8 fx_after[512] __attribute__((aligned(16)));
static u8 ymm_p[16 * 32], ymm_q[16 * 32], ymm_out[16 * 32];

static inline void xsetbv(u32 index, u64 v)
{
	asm volatile("xsetbv" :: "c"(index), "a"((u32)v), "d"((u32)(v >> 32)) : "memory");
}

static inline u64 xgetbv(u32 index)
{
	u32 lo, hi;

	asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(index));
	return (u64)hi << 32 | lo;
}

static int xsavec(void *p, u64 rfbm)
{
	asm volatile(ASM_TRY("1f") "xsavec (%0)\n1:"
		     :: "r"(p), "a"((u32)rfbm), "d"((u32)(rfbm >> 32)) : "memory");
	return exception_vector();
}

static int xsave(void *p, u64 rfbm)
{
	asm volatile(ASM_TRY("1f") "xsave (%0)\n1:"
		     :: "r"(p), "a"((u32)rfbm), "d"((u32)(rfbm >> 32)) : "memory");
	return exception_vector();
}

static int xrstor(void *p, u64 rfbm)
{
	asm volatile(ASM_TRY("1f") "xrstor (%0)\n1:"
		     :: "r"(p), "a"((u32)rfbm), "d"((u32)(rfbm >> 32)) : "memory");
	return exception_vector();
}

static void fxsave(void *p)
{
	asm volatile("fxsave (%0)" :: "r"(p) : "memory");
}

static void ymm_load(const void *src)
{
	asm volatile(".irp r,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n\t"
		     "vmovdqu \\r*32(%0), %%ymm\\r\n\t"
		     ".endr" :: "r"(src) : "memory");
}

static void ymm_store(void *dst)
{
	asm volatile(".irp r,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n\t"
		     "vmovdqu %%ymm\\r, \\r*32(%0)\n\t"
		     ".endr" :: "r"(dst) : "memory");
}

static void ldmxcsr(u32 v)
{
	asm volatile("ldmxcsr %0" :: "m"(v));
}

static u32 stmxcsr(void)
{
	u32 v;

	asm volatile("stmxcsr %0" : "=m"(v));
	return v;
}

/* Eight values on the x87 stack (TOP wraps to 0), precision control changed. */
static void x87_load(void)
{
	u16 cw = 0x27f;

	asm volatile("fninit\n\t"
		     "fldcw %0\n\t"
		     "fldpi\n\tfld1\n\tfldl2e\n\tfldl2t\n\t"
		     "fldlg2\n\tfldln2\n\tfldz\n\tfldpi" :: "m"(cw));
}

static void clobber(void)
{
	asm volatile("fninit");
	ymm_load(ymm_q);
	ldmxcsr(0x1f80);
}

static bool bytes_are(const u8 *p, u32 from, u32 to, u8 v)
{
	for (u32 i = from; i < to; i++)
		if (p[i] != v)
			return false;
	return true;
}

static bool bytes_equal(const u8 *a, const u8 *b, u32 from, u32 to)
{
	for (u32 i = from; i < to; i++)
		if (a[i] != b[i])
			return false;
	return true;
}

/*
 * The architectural fields of two legacy regions agree: x87 (FCW, FSW,
 * abridged FTW, ST0-ST7's 80 bits) and SSE (MXCSR, MXCSR_MASK, XMM0-15).
 */
static bool x87_equal(const u8 *a, const u8 *b)
{
	if (!bytes_equal(a, b, 0, 5))
		return false;
	for (int r = 0; r < 8; r++)
		if (!bytes_equal(a, b, 32 + r * 16, 32 + r * 16 + 10))
			return false;
	return true;
}

static bool sse_equal(const u8 *a, const u8 *b)
{
	return bytes_equal(a, b, 24, 32) && bytes_equal(a, b, 160, 416);
}

/* YMM i's low (half 0) or high (half 1) 128 bits in ymm_out equal src's? */
static bool ymm_half_is(int half, const u8 *src)
{
	for (int r = 0; r < 16; r++)
		if (!bytes_equal(ymm_out + r * 32, src + r * 32, half * 16, half * 16 + 16))
			return false;
	return true;
}

static bool ymm_high_zero(void)
{
	for (int r = 0; r < 16; r++)
		if (!bytes_are(ymm_out + r * 32, 16, 32, 0))
			return false;
	return true;
}

static bool xmm_zero(void)
{
	for (int r = 0; r < 16; r++)
		if (!bytes_are(ymm_out + r * 32, 0, 16, 0))
			return false;
	return true;
}

/* The compacted offset of component i in an area of layout xcomp (from CPUID). */
static u32 comp_offset(u64 xcomp, int i)
{
	u32 off = 576;

	for (int j = 2; j <= i; j++) {
		struct cpuid c;

		if (!(xcomp >> j & 1))
			continue;
		c = cpuid_indexed(0xd, j);
		if (c.c & 2)
			off = (off + 63) & ~63u;
		if (j == i)
			break;
		off += c.a;
	}
	return off;
}

static u32 comp_size(u64 xcomp)
{
	u32 size = 576;

	for (int i = 2; i < 63; i++)
		if (xcomp >> i & 1)
			size = comp_offset(xcomp, i) + cpuid_indexed(0xd, i).a;
	return size;
}

/* The state P: x87 stack, ymm_p, MXCSR 9F80H (FZ). */
static void load_p(void)
{
	x87_load();
	ymm_load(ymm_p);
	ldmxcsr(0x9f80);
}

static void test_cpuid(u64 supported)
{
	struct cpuid c;

	report_prefix_push("cpuid");
	static const u64 xcr0s[] = { XF_X87, XF_X87 | XF_SSE, XF_X87 | XF_SSE | XF_YMM };

	for (unsigned int i = 0; i < sizeof(xcr0s) / sizeof(xcr0s[0]); i++) {
		u64 xcr0 = xcr0s[i];

		xsetbv(0, xcr0);
		c = cpuid_indexed(0xd, 1);
		report(c.b == comp_size(xcr0), "XCR0 %lx: 0xD.1 EBX %u is the compacted size %u",
		       xcr0, c.b, comp_size(xcr0));
	}
	report(comp_size(XF_X87 | XF_SSE | XF_YMM) == 576 + cpuid_indexed(0xd, 2).a &&
	       cpuid_indexed(0xd, 2).a == 256,
	       "AVX: 256 bytes, right after the header (0xD.2 ECX %x)", cpuid_indexed(0xd, 2).c);
	xsetbv(0, supported);
	c = cpuid_indexed(0xd, 1);
	report(c.b == comp_size(supported), "XCR0 %lx: 0xD.1 EBX %u is the compacted size %u",
	       supported, c.b, comp_size(supported));
	for (int i = 2; i < 63; i++) {
		if (!(supported >> i & 1))
			continue;
		c = cpuid_indexed(0xd, i);
		report(!(c.c & 1) && c.a && c.b >= 576,
		       "0xD.%d: user component, %u bytes at %u, ECX %x", i, c.a, c.b, c.c);
	}
	xsetbv(0, XF_X87 | XF_SSE | XF_YMM);
	report_prefix_pop();
}

static void test_save(void)
{
	const u64 rfbm = XF_X87 | XF_SSE | XF_YMM;
	int v;

	report_prefix_push("xsavec");
	memset(area, FILL, sizeof(area));
	load_p();
	fxsave(fx_before);
	v = xsavec(area, ~0ul);
	report(v == -1, "XSAVEC with EDX:EAX all ones (vector %d)", v);
	report(XSTATE_BV(area) == rfbm, "XSTATE_BV %lx", XSTATE_BV(area));
	report(XCOMP_BV(area) == (XCOMP_COMPACTED | rfbm), "XCOMP_BV %lx", XCOMP_BV(area));
	report(x87_equal(area, fx_before), "x87 state as FXSAVE writes it");
	report(sse_equal(area, fx_before), "SSE state (MXCSR %x) as FXSAVE writes it",
	       *(u32 *)(area + 24));
	report(bytes_are(area, 464, 512, FILL), "bytes 511:464 untouched");
	report(bytes_are(area, HDR + 16, HDR + 64, FILL), "header bytes 63:16 untouched");
	bool ok = true;
	for (int r = 0; r < 16; r++)
		ok &= bytes_equal(area + 576 + r * 16, ymm_p + r * 32 + 16, 0, 16);
	report(ok, "upper YMM halves at offset 576");
	report(bytes_are(area, 576 + 256, AREA_SIZE, FILL), "nothing after 832");

	/* Without SSE in RFBM: no MXCSR, no XMM, AVX still at 576. */
	memset(area, FILL, sizeof(area));
	v = xsavec(area, XF_X87 | XF_YMM);
	report(v == -1 && XSTATE_BV(area) == (XF_X87 | XF_YMM) &&
	       XCOMP_BV(area) == (XCOMP_COMPACTED | XF_X87 | XF_YMM),
	       "RFBM x87|AVX: XSTATE_BV %lx XCOMP_BV %lx", XSTATE_BV(area), XCOMP_BV(area));
	report(bytes_are(area, 24, 32, FILL) && bytes_are(area, 160, 512, FILL),
	       "RFBM x87|AVX: MXCSR and XMM untouched");
	report(bytes_equal(area + 576, ymm_p + 16, 0, 16), "RFBM x87|AVX: YMM0 high at 576");

	/* SSE only: x87 untouched, nothing beyond the header. */
	memset(area, FILL, sizeof(area));
	v = xsavec(area, XF_SSE);
	report(v == -1 && XSTATE_BV(area) == XF_SSE && XCOMP_BV(area) == (XCOMP_COMPACTED | XF_SSE),
	       "RFBM SSE: XSTATE_BV %lx XCOMP_BV %lx", XSTATE_BV(area), XCOMP_BV(area));
	report(bytes_are(area, 0, 24, FILL) && bytes_are(area, 32, 160, FILL) &&
	       sse_equal(area, fx_before),
	       "RFBM SSE: x87 untouched, XMM saved");
	report(bytes_are(area, 576, AREA_SIZE, FILL), "RFBM SSE: nothing after the header");

	/* EDX:EAX = 0: only the header. */
	memset(area, FILL, sizeof(area));
	v = xsavec(area, 0);
	report(v == -1 && XSTATE_BV(area) == 0 && XCOMP_BV(area) == XCOMP_COMPACTED &&
	       bytes_are(area, 0, HDR, FILL) && bytes_are(area, HDR + 16, AREA_SIZE, FILL),
	       "RFBM 0: the header's two fields only");

	v = xsavec(area + 16, rfbm);
	report(v == GP_VECTOR, "16-byte aligned area: #GP (vector %d)", v);
	v = xsavec(area + 32, rfbm);
	report(v == GP_VECTOR, "32-byte aligned area: #GP (vector %d)", v);
	report_prefix_pop();
}

static void test_restore(void)
{
	const u64 rfbm = XF_X87 | XF_SSE | XF_YMM;
	int v;

	report_prefix_push("xrstor compacted");
	load_p();
	fxsave(fx_before);
	memset(image, 0, sizeof(image));
	report(xsavec(image, rfbm) == -1, "XSAVEC of state P");

	clobber();
	v = xrstor(image, rfbm);
	fxsave(fx_after);
	ymm_store(ymm_out);
	report(v == -1, "XRSTOR (vector %d)", v);
	report(x87_equal(fx_before, fx_after) && sse_equal(fx_before, fx_after), "x87, MXCSR and XMM restored");
	report(ymm_half_is(0, ymm_p) && ymm_half_is(1, ymm_p), "YMM restored");

	/* AVX in RFBM but not in XSTATE_BV: initialized. */
	memcpy(area, image, AREA_SIZE);
	XSTATE_BV(area) = XF_X87 | XF_SSE;
	clobber();
	v = xrstor(area, rfbm);
	fxsave(fx_after);
	ymm_store(ymm_out);
	report(v == -1 && x87_equal(fx_before, fx_after) && sse_equal(fx_before, fx_after) && ymm_half_is(0, ymm_p) &&
	       ymm_high_zero(), "XSTATE_BV without AVX: upper halves zero, the rest restored");

	/* SSE in RFBM but not in XSTATE_BV: XMM zero and MXCSR 1F80H. */
	XSTATE_BV(area) = XF_X87 | XF_YMM;
	clobber();
	ldmxcsr(0x9fc0);
	v = xrstor(area, rfbm);
	ymm_store(ymm_out);
	u32 mxcsr = stmxcsr();
	report(v == -1 && xmm_zero() && ymm_half_is(1, ymm_p) && mxcsr == 0x1f80,
	       "XSTATE_BV without SSE: XMM zero, MXCSR %x (1f80), upper halves restored", mxcsr);

	/* x87 in RFBM but not in XSTATE_BV: FNINIT state. */
	XSTATE_BV(area) = XF_SSE | XF_YMM;
	x87_load();
	v = xrstor(area, rfbm);
	fxsave(fx_after);
	bool regs_zero = true;
	for (int r = 0; r < 8; r++)
		regs_zero &= bytes_are(fx_after, 32 + r * 16, 32 + r * 16 + 10, 0);
	report(v == -1 && *(u16 *)fx_after == 0x37f && *(u16 *)(fx_after + 2) == 0 &&
	       fx_after[4] == 0 && regs_zero,
	       "XSTATE_BV without x87: FCW %x FSW %x FTW %x, registers zero",
	       *(u16 *)fx_after, *(u16 *)(fx_after + 2), fx_after[4]);

	/* AVX in RFBM but not in XCOMP_BV: initialized too. */
	load_p();
	memset(area, 0, sizeof(area));
	report(xsavec(area, XF_X87 | XF_SSE) == -1 &&
	       XCOMP_BV(area) == (XCOMP_COMPACTED | XF_X87 | XF_SSE), "XSAVEC of x87|SSE");
	clobber();
	v = xrstor(area, rfbm);
	ymm_store(ymm_out);
	report(v == -1 && ymm_half_is(0, ymm_p) && ymm_high_zero(),
	       "XCOMP_BV without AVX, RFBM with it: upper halves zero");

	/* AVX outside RFBM: left alone. */
	clobber();
	v = xrstor(image, XF_X87 | XF_SSE);
	ymm_store(ymm_out);
	report(v == -1 && ymm_half_is(0, ymm_p) && ymm_half_is(1, ymm_q),
	       "RFBM x87|SSE: upper halves untouched");

	/* Faults. */
	memcpy(area, image, AREA_SIZE);
	XCOMP_BV(area) |= 1ul << 5;
	v = xrstor(area, rfbm);
	report(v == GP_VECTOR, "XCOMP_BV bit 5, not in XCR0: #GP (vector %d)", v);
	memcpy(area, image, AREA_SIZE);
	XCOMP_BV(area) |= 1ul << 62;
	v = xrstor(area, rfbm);
	report(v == GP_VECTOR, "XCOMP_BV bit 62: #GP (vector %d)", v);
	memcpy(area, image, AREA_SIZE);
	XCOMP_BV(area) = XCOMP_COMPACTED | XF_X87 | XF_SSE;
	v = xrstor(area, rfbm);
	report(v == GP_VECTOR, "XSTATE_BV not a subset of XCOMP_BV: #GP (vector %d)", v);
	memcpy(area, image, AREA_SIZE);
	area[HDR + 16] = 1;
	v = xrstor(area, rfbm);
	report(v == GP_VECTOR, "header byte 16 set: #GP (vector %d)", v);
	memcpy(area, image, AREA_SIZE);
	area[HDR + 63] = 0x80;
	v = xrstor(area, rfbm);
	report(v == GP_VECTOR, "header byte 63 set: #GP (vector %d)", v);
	memcpy(area, image, AREA_SIZE);
	XCOMP_BV(area) &= ~XCOMP_COMPACTED;
	v = xrstor(area, rfbm);
	report(v == GP_VECTOR, "XCOMP_BV non-zero without bit 63: #GP (vector %d)", v);
	memcpy(area + 64, image, 1024);
	v = xrstor(area + 64 + 16, rfbm);
	report(v == GP_VECTOR, "misaligned area: #GP (vector %d)", v);
	report_prefix_pop();

	/* The standard form still works. */
	report_prefix_push("xsave standard");
	load_p();
	memset(area, 0, sizeof(area));
	v = xsave(area, rfbm);
	report(v == -1 && XCOMP_BV(area) == 0 && XSTATE_BV(area) == rfbm,
	       "XSAVE: XSTATE_BV %lx, XCOMP_BV %lx", XSTATE_BV(area), XCOMP_BV(area));
	clobber();
	v = xrstor(area, rfbm);
	fxsave(fx_after);
	ymm_store(ymm_out);
	report(v == -1 && x87_equal(fx_before, fx_after) && sse_equal(fx_before, fx_after) && ymm_half_is(0, ymm_p) &&
	       ymm_half_is(1, ymm_p), "XRSTOR of it");
	report_prefix_pop();
}

static inline void wrpkru(u32 v)
{
	asm volatile("wrpkru" :: "a"(v), "c"(0), "d"(0) : "memory");
}

static inline u32 rdpkru(void)
{
	u32 v, d;

	asm volatile("rdpkru" : "=a"(v), "=d"(d) : "c"(0));
	return v;
}

/* PKRU after the MPX components, or right after AVX when they are left out. */
static void test_pkru(u64 supported)
{
	const u32 pat = 0xa5a5a5a4;
	u64 full = supported & (XF_X87 | XF_SSE | XF_YMM | XF_BNDREGS | XF_BNDCSR | XF_PKRU);
	u64 rfbm;
	int v;

	report_prefix_push("pkru");
	if (!(cpuid_indexed(7, 0).c & (1u << 3)) || !(supported & XF_PKRU)) {
		report_skip("no PKU");
		report_prefix_pop();
		return;
	}
	write_cr4(read_cr4() | X86_CR4_PKE);
	xsetbv(0, full);
	wrpkru(pat);

	rfbm = XF_X87 | XF_SSE | XF_YMM | XF_PKRU;
	memset(area, FILL, sizeof(area));
	v = xsavec(area, rfbm);
	report(v == -1 && XCOMP_BV(area) == (XCOMP_COMPACTED | rfbm) &&
	       comp_offset(rfbm, 9) == 832 && *(u32 *)(area + 832) == pat,
	       "RFBM %lx: PKRU %x at 832", rfbm, *(u32 *)(area + 832));

	memset(image, FILL, sizeof(image));
	v = xsavec(image, full);
	u32 off = comp_offset(full, 9);
	report(v == -1 && XCOMP_BV(image) == (XCOMP_COMPACTED | full) &&
	       (XSTATE_BV(image) & ~(XF_BNDREGS | XF_BNDCSR)) == (full & ~(XF_BNDREGS | XF_BNDCSR)),
	       "RFBM %lx: XSTATE_BV %lx XCOMP_BV %lx", full, XSTATE_BV(image), XCOMP_BV(image));
	report(*(u32 *)(image + off) == pat, "RFBM %lx: PKRU %x at %u", full, *(u32 *)(image + off), off);
	report(bytes_are(image, comp_size(full), AREA_SIZE, FILL), "nothing after %u", comp_size(full));

	/* XSAVEC left the header's bytes 63:16 as they were. */
	wrpkru(0);
	v = xrstor(image, full);
	report(v == GP_VECTOR && rdpkru() == 0, "XRSTOR, header bytes 63:16 not zero: #GP (vector %d)", v);
	memset(image + HDR + 16, 0, 48);
	v = xrstor(image, full);
	report(v == -1 && rdpkru() == pat, "XRSTOR: PKRU %x (vector %d)", rdpkru(), v);
	XSTATE_BV(image) &= ~XF_PKRU;
	v = xrstor(image, full);
	report(v == -1 && rdpkru() == 0, "XSTATE_BV without PKRU: PKRU %x (0)", rdpkru());

	xsetbv(0, XF_X87 | XF_SSE | XF_YMM);
	write_cr4(read_cr4() & ~X86_CR4_PKE);
	report_prefix_pop();
}

static void test_faults(void)
{
	int v;

	report_prefix_push("faults");
	write_cr0(read_cr0() | X86_CR0_TS);
	v = xsavec(area, XF_X87);
	asm volatile("clts");
	report(v == NM_VECTOR, "CR0.TS set: #NM (vector %d)", v);

	write_cr4(read_cr4() & ~X86_CR4_OSXSAVE);
	v = xsavec(area, XF_X87);
	report(v == UD_VECTOR, "CR4.OSXSAVE clear: XSAVEC #UD (vector %d)", v);
	v = xrstor(image, XF_X87);
	report(v == UD_VECTOR, "CR4.OSXSAVE clear: XRSTOR #UD (vector %d)", v);
	write_cr4(read_cr4() | X86_CR4_OSXSAVE);
	report_prefix_pop();
}

int main(void)
{
	struct cpuid c;
	u64 supported;

	c = cpuid(1);
	if (!(c.c & (1u << 26)) || !(c.c & (1u << 28))) {
		report(false, "CPUID.1 ECX %x: XSAVE and AVX", c.c);
		return report_summary(0);
	}
	c = cpuid_indexed(0xd, 1);
	report(c.a & 2, "CPUID.(0DH,1):EAX %x has XSAVEC (bit 1)", c.a);
	if (!(c.a & 2))
		return report_summary(0);
	c = cpuid_indexed(0xd, 0);
	supported = (u64)c.d << 32 | c.a;
	report((supported & 7) == 7, "XCR0 may hold x87|SSE|AVX (supported %lx)", supported);

	write_cr4(read_cr4() | X86_CR4_OSXSAVE);
	report(cpuid(1).c & (1u << 27), "CPUID.1:ECX.OSXSAVE follows CR4");
	xsetbv(0, XF_X87 | XF_SSE | XF_YMM);
	report(xgetbv(0) == 7, "XCR0 %lx", xgetbv(0));

	for (u32 i = 0; i < sizeof(ymm_p); i++) {
		ymm_p[i] = (u8)(i * 13 + 0x5b);
		ymm_q[i] = (u8)(i * 7 + 0x21) | 1;
	}

	test_cpuid(supported);
	test_save();
	test_restore();
	test_pkru(supported);
	test_faults();
	return report_summary(0);
}
