/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * convert: memory conversions of a KVM_X86_SW_PROTECTED_VM guest through the
 * KVM hypercall KVM_HC_MAP_GPA_RANGE (Documentation/virt/kvm/x86/
 * hypercalls.rst), over the ranges of KVM's private_mem_conversions_test:
 *  - a converted range reads as zero (the side left is discarded), data
 *    written after the conversion stays, memory around the range is
 *    untouched; converting back discards again;
 *  - a device (fw_cfg DMA) cannot write a private page, and can again once
 *    it is shared;
 *  - code in a discarded page is gone: the vCPU runs what the page holds
 *    now (zeros), not the translation it made of the code before;
 *  - bad arguments get KVM's status codes: misaligned, zero or wrapping
 *    ranges and reserved attribute bits -KVM_EINVAL, memory that is not RAM
 *    -KVM_EINVAL, an unknown hypercall -KVM_ENOSYS.
 */
#include "libcflat.h"
#include "conversions.h"
#include "fw_cfg.h"

#define KVM_HC_MAP_GPA_RANGE 12
#define KVM_MAP_GPA_RANGE_ENCRYPTED (1ul << 4)
#define KVM_MAP_GPA_RANGE_4K 0
#define KVM_MAP_GPA_RANGE_2M 1
#define KVM_ENOSYS 1000
#define KVM_EINVAL 22

#define SZ_2M (2ul << 20)
/* The area: 2 MiB pages, so every range of the test fits with room after. */
#define AREA_SIZE (4 * SZ_2M)

static u64 kvm_hypercall3(u64 nr, u64 a0, u64 a1, u64 a2)
{
	asm volatile("vmcall" : "+a"(nr) : "b"(a0), "c"(a1), "d"(a2) : "memory");
	return nr;
}

static u64 map_gpa_range(u64 gpa, u64 npages, bool private)
{
	return kvm_hypercall3(KVM_HC_MAP_GPA_RANGE, gpa, npages,
			      (private ? KVM_MAP_GPA_RANGE_ENCRYPTED : 0) | KVM_MAP_GPA_RANGE_4K);
}

static void test_conversions(u8 *area)
{
	u64 base = ptr_to_pa(area);

	for (unsigned int i = 0; i < ARRAY_SIZE(conversion_ranges); i++) {
		u8 *p = area + conversion_ranges[i].offset;
		u64 size = conversion_ranges[i].size, npages = size / PAGE_SIZE;
		char name[40];
		u64 r;

		snprintf(name, sizeof(name), "%lx+%lx", conversion_ranges[i].offset, size);
		report_prefix_push(name);
		memset(area, 0x11, AREA_SIZE);
		r = map_gpa_range(base + conversion_ranges[i].offset, npages, true);
		report(r == 0, "to private: status %ld", (long)r);
		report(all_bytes(p, size, 0), "the range reads zero");
		report(all_bytes(area, conversion_ranges[i].offset, 0x11) &&
		       all_bytes(p + size, AREA_SIZE - conversion_ranges[i].offset - size, 0x11),
		       "the memory around it is untouched");
		memset(p, 0x22, size);
		report(all_bytes(p, size, 0x22), "private data stays");

		r = map_gpa_range(base + conversion_ranges[i].offset, npages, true);
		report(r == 0 && all_bytes(p, size, 0x22),
		       "converting private memory to private again keeps it");

		r = map_gpa_range(base + conversion_ranges[i].offset, npages, false);
		report(r == 0, "to shared: status %ld", (long)r);
		report(all_bytes(p, size, 0), "the range reads zero again");
		memset(p, 0x33, size);
		report(all_bytes(p, size, 0x33), "shared data stays");
		report_prefix_pop();
	}
}

static void test_dma(u8 *area)
{
	struct fw_cfg_dma_access *d = alloc_page();
	u8 *page = area + 3 * SZ_2M;
	u32 ctl;

	report_prefix_push("dma");
	report(map_gpa_range(ptr_to_pa(page), 1, true) == 0, "page made private");
	memset(page, 0x44, 8);
	ctl = fw_cfg_dma_read(d, FW_CFG_SIGNATURE, page, 4);
	report(ctl == 0 && all_bytes(page, 8, 0x44), "a device cannot write a private page");
	report(map_gpa_range(ptr_to_pa(page), 1, false) == 0, "page made shared");
	ctl = fw_cfg_dma_read(d, FW_CFG_SIGNATURE, page, 4);
	report(ctl == 0 && !memcmp(page, "QEMU", 4), "a device writes a shared page");
	report_prefix_pop();
}

/*
 * Runs `mov eax, 1; ret` from a shared page, converts the page to private
 * (which discards it) and calls it again. The page now holds zeros,
 * `add [rax], al` 2048 times with RAX at a scratch byte, and execution
 * falls through into the next page, which holds `mov eax, 2; ret`. A vCPU
 * that kept its translation of the old code would return 1.
 */
static void test_discarded_code(u8 *area)
{
	static const u8 ret1[] = { 0xb8, 0x01, 0x00, 0x00, 0x00, 0xc3 };
	static const u8 ret2[] = { 0xb8, 0x02, 0x00, 0x00, 0x00, 0xc3 };
	u8 *code = area + 3 * SZ_2M + 2 * PAGE_SIZE, *next = code + PAGE_SIZE;
	static u8 scratch;
	u64 r1 = (u64)&scratch, r2 = (u64)&scratch;

	report_prefix_push("discarded code");
	memset(code, 0xcc, PAGE_SIZE);
	memcpy(code, ret1, sizeof(ret1));
	memcpy(next, ret2, sizeof(ret2));
	asm volatile("call *%1" : "+a"(r1) : "r"(code) : "memory");
	report(r1 == 1, "the code runs: %lu", (unsigned long)r1);
	report(map_gpa_range(ptr_to_pa(code), 1, true) == 0, "its page made private");
	asm volatile("call *%1" : "+a"(r2) : "r"(code) : "memory");
	report(r2 == 2, "the page runs as the zeros it holds now: %lu", (unsigned long)r2);
	report(map_gpa_range(ptr_to_pa(code), 1, false) == 0, "its page made shared again");
	report_prefix_pop();
}

static void test_bad_arguments(u8 *area)
{
	u64 base = ptr_to_pa(area);
	u64 einval = -(u64)KVM_EINVAL;

	report_prefix_push("bad arguments");
	report(map_gpa_range(base + 8, 1, true) == einval, "misaligned GPA");
	report(map_gpa_range(base, 0, true) == einval, "zero pages");
	report(map_gpa_range(base, ~0ul, true) == einval, "a range that wraps");
	report(kvm_hypercall3(KVM_HC_MAP_GPA_RANGE, base, 1, 1ul << 5) == einval,
	       "reserved attribute bits");
	report(kvm_hypercall3(KVM_HC_MAP_GPA_RANGE, base, 1, 7) == einval, "unknown page size");
	report(map_gpa_range(0xfec00000ul, 1, true) == einval, "MMIO cannot become private");
	report(map_gpa_range(1ul << 45, 1, true) == einval, "beyond memory");
	report(kvm_hypercall3(99, 0, 0, 0) == -(u64)KVM_ENOSYS, "unknown hypercall: -KVM_ENOSYS");
	report_prefix_pop();
}

int main(void)
{
	u8 *area = pa_to_ptr(phys_alloc_pages_aligned(AREA_SIZE / PAGE_SIZE, SZ_2M));

	test_conversions(area);
	test_dma(area);
	test_discarded_code(area);
	test_bad_arguments(area);
	return 0;
}
