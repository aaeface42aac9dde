// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * benchconv: the conversion workload of scripts/bench. An area of `mib=`
 * MiB (default 16) is cut into chunks of `chunk=` bytes (default 256K);
 * `rounds=` times (default 24) every chunk is converted to shared, each of
 * its pages touched through the shared alias, converted back to private
 * and each page touched again through the private alias. `mode=` says how:
 *
 *   none          no conversion at all: the same touches on plain memory,
 *                 for the baseline (QEMU without the plugin, where VMCALL
 *                 and TDCALL are #UD)
 *   sw-protected  KVM_HC_MAP_GPA_RANGE (VMCALL); one alias, the memory
 *                 attributes decide (vm-type=sw-protected)
 *   tdx           TDG.VP.VMCALL MapGPA, then TDG.MEM.PAGE.ACCEPT of every
 *                 4K page made private; the shared alias is the GPA with
 *                 the shared bit, mapped at SHARED_VA (vm-type=tdx,
 *                 -cpu max,phys-bits=52)
 *   snp           Linux's order through the runtime (snp_make_shared/
 *                 private): PVALIDATE rescind and a GHCB page-state change
 *                 to shared, a page-state change and PVALIDATE to private;
 *                 the shared alias is mapped at SHARED_VA without the
 *                 C-bit (vm-type=snp, -cpu max,phys-bits=52)
 *
 * The work is fixed; the guest prints it as "INFO: work: N conversions".
 * Every touch checks the page: after a conversion it must read zero (the
 * side left was discarded, in every mode but none) and after the write the
 * value written, so a run whose conversions did not happen fails.
 */
#include "libcflat.h"
#include "snp.h"
#include "tdx.h"

#define KVM_HC_MAP_GPA_RANGE 12
#define KVM_MAP_GPA_RANGE_ENCRYPTED (1ul << 4)
#define KVM_MAP_GPA_RANGE_4K 0
/* Beyond the boot identity map (4 GiB), as in tdxsmp. */
#define SHARED_VA 0x200000000ul
#define SZ_2M (2ul << 20)

enum mode { MODE_NONE, MODE_SW_PROTECTED, MODE_TDX, MODE_SNP };

static enum mode mode;
static const char *mode_name;
static u64 shared_bit; /* TDX: the shared bit of a GPA (SNP: a shared PTE has no C-bit) */
static u64 bad, conversions;

static bool parse_mode(void)
{
	static const struct {
		const char *name;
		enum mode mode;
	} modes[] = {
		{ "none", MODE_NONE },
		{ "sw-protected", MODE_SW_PROTECTED },
		{ "tdx", MODE_TDX },
		{ "snp", MODE_SNP },
	};
	size_t len;
	const char *v = cmdline_value("mode", &len);

	if (!v) {
		report(false, "no mode= on the command line (none, sw-protected, tdx or snp)");
		return false;
	}
	for (unsigned int i = 0; i < ARRAY_SIZE(modes); i++) {
		if (strlen(modes[i].name) == len && !strncmp(v, modes[i].name, len)) {
			mode = modes[i].mode;
			mode_name = modes[i].name;
			return true;
		}
	}
	report(false, "%s: expected mode=none, sw-protected, tdx or snp", boot_info.cmdline);
	return false;
}

static u64 map_gpa_range(u64 gpa, u64 npages, bool private)
{
	u64 nr = KVM_HC_MAP_GPA_RANGE;

	asm volatile("vmcall"
		     : "+a"(nr)
		     : "b"(gpa), "c"(npages),
		       "d"((private ? KVM_MAP_GPA_RANGE_ENCRYPTED : 0) | KVM_MAP_GPA_RANGE_4K)
		     : "memory");
	return nr;
}

/* Converts [pa, pa + len) to private or shared; false on any error. */
static bool convert(u64 pa, u64 len, bool private)
{
	conversions++;
	switch (mode) {
	case MODE_NONE:
		return true;
	case MODE_SW_PROTECTED:
		return map_gpa_range(pa, len / PAGE_SIZE, private) == 0;
	case MODE_TDX:
		if (tdx_map_gpa(pa, len, !private) != TDVMCALL_STATUS_SUCCESS)
			return false;
		if (private)
			for (u64 off = 0; off < len; off += PAGE_SIZE)
				if (tdx_accept_page(pa + off, TDX_PS_4K) != TDX_SUCCESS)
					return false;
		return true;
	case MODE_SNP:
		/* The private side stays mapped through the identity map. */
		if (private)
			return snp_make_private(pa, pa, len / PAGE_SIZE) == 0;
		return snp_make_shared(pa, pa, len / PAGE_SIZE) == 0;
	}
	return false;
}

/* The pointer through which the guest reaches pa's private or shared side. */
static volatile u64 *alias(u64 pa, bool private)
{
	if ((mode == MODE_TDX || mode == MODE_SNP) && !private)
		return (volatile u64 *)(uintptr_t)(SHARED_VA + pa);
	return pa_to_ptr(pa);
}

static u64 value(u64 pa, u64 round, bool private)
{
	u64 x = (pa ^ (round << 40) ^ ((u64)private << 63)) * 0x9e3779b97f4a7c15ul;

	return x ^ (x >> 29);
}

/*
 * One word per page of the chunk, at an offset that moves with the page:
 * it must read zero after a conversion (what the last touch wrote, in mode
 * none, where nothing converts: the other side's value, of this round for
 * the private touch, of the last one for the shared touch), then it takes
 * this touch's value.
 */
static void touch(u64 pa, u64 len, u64 round, bool private)
{
	for (u64 off = 0; off < len; off += PAGE_SIZE) {
		u64 word_pa = pa + off + (((pa + off) >> PAGE_SHIFT) % 512) * sizeof(u64);
		volatile u64 *w = alias(word_pa, private);
		u64 old = 0;

		if (mode == MODE_NONE)
			old = value(word_pa, private ? round : round - 1, !private);
		if (*w != old)
			bad++;
		*w = value(word_pa, round, private);
	}
}

int main(void)
{
	u64 mib = cmdline_u64("mib", 16), chunk = cmdline_u64("chunk", 256ul << 10);
	u64 rounds = cmdline_u64("rounds", 24);
	u64 size, base, failed = 0;

	if (!parse_mode())
		return 1;
	size = mib << 20;
	if (!mib || !chunk || chunk % PAGE_SIZE || size % chunk || !rounds) {
		report(false, "mib=%lu chunk=%lu rounds=%lu: need chunks of whole pages that fill the area",
		       mib, chunk, rounds);
		return 1;
	}
	if (mode == MODE_TDX && !is_tdx_guest()) {
		report(false, "mode=tdx, but this is not a TD (vm-type=tdx?)");
		return 1;
	}
	if (mode == MODE_SNP && !is_snp_guest()) {
		report(false, "mode=snp, but this is not an SNP guest (vm-type=snp?)");
		return 1;
	}
	base = phys_alloc_pages_aligned(size / PAGE_SIZE, SZ_2M);
	if (!base) {
		report(false, "%lu MiB do not fit: give QEMU more -m", mib);
		return 1;
	}
	if (mode == MODE_TDX || mode == MODE_SNP) {
		shared_bit = mode == MODE_TDX ? tdx_shared_mask() : 0;
		for (u64 off = 0; off < size; off += PAGE_SIZE)
			install_page(boot_pml4(), SHARED_VA + base + off, (base + off) | shared_bit,
				     PT_PRESENT | PT_WRITABLE);
	}
	/* Start private, with round 0's private values in place (the checks of
	 * this first touch do not count: nothing was written before). */
	if (mode == MODE_SW_PROTECTED && map_gpa_range(base, size / PAGE_SIZE, true) != 0) {
		report(false, "KVM_HC_MAP_GPA_RANGE of the area to private failed");
		return 1;
	}
	touch(base, size, 0, true);
	bad = 0;
	report_info("%lu MiB at pa %lx in chunks of %lu KiB, %lu rounds, mode %s", mib, base,
		    chunk >> 10, rounds, mode_name);

	for (u64 round = 1; round <= rounds; round++) {
		for (u64 pa = base; pa < base + size; pa += chunk) {
			if (!convert(pa, chunk, false))
				failed++;
			touch(pa, chunk, round, false);
			if (!convert(pa, chunk, true))
				failed++;
			touch(pa, chunk, round, true);
		}
	}
	report(!failed, "%lu conversions of %lu KiB, %lu failed", conversions, chunk >> 10, failed);
	report(!bad, "%lu page touches, %lu wrong values", rounds * 2 * (size / PAGE_SIZE), bad);
	report_info("work: %lu conversions", conversions);
	return 0;
}
