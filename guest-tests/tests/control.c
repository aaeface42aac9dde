/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * control: the host side changes under a running guest through the control
 * socket (plugin argument control=). The guest writes to an ivshmem-plain
 * BAR (a memslot of its own), prints "CONTROL: ready" with the addresses of
 * the BAR and of a flag page, and waits for the flag. The test's script
 * (guest-tests/control/slot.sh) sends hostile requests, then deletes the
 * BAR's memslot and re-creates it with the same id, flags and backing, as
 * a VMM would with KVM_SET_USER_MEMORY_REGION2, and writes the flag.
 *
 * What the guest must see is what KVM gives it:
 * - a default VM: the slot's memory is the VMM's (QEMU's RAM), so the data
 *   is still there;
 * - a TD: deleting a guest_memfd slot removes its pages from the Secure
 *   EPT, and their attributes stay private (memory attributes belong to the
 *   VM, not the slot), so a re-created slot's pages are PENDING again: an
 *   access is a #VE (SEPT_VE_DISABLE clear) until TDG.MEM.PAGE.ACCEPT,
 *   which gives a zeroed page. The flag page is shared (MapGPA), so the VMM
 *   can write it;
 * - an SNP guest: the same for the RMP: the re-created slot's pages are
 *   private and not validated, #VC 0x404 until PVALIDATE. The flag page is
 *   made shared with a page-state change.
 */
#include "libcflat.h"
#include "tdx.h"
#include "pci.h"
#include "snp.h"

#define IVSHMEM_SIZE (1ul << 20)
/* Where the TD maps the flag page's shared alias. */
#define SHARED_VA 0x200000000ul
/* What the script writes into the flag page. */
#define FLAG_GO 0x600dul

static int touch(volatile u64 *p, u64 *v)
{
	u64 x = 0;

	asm volatile(ASM_TRY("1f") "movq (%1), %0\n1:" : "+r"(x) : "r"(p) : "memory");
	*v = x;
	return exception_vector();
}

int main(void)
{
	bool td = is_tdx_guest(), snp = is_snp_guest();
	int devfn = find_ivshmem();
	volatile u64 *bar, *flag;
	u64 bar_pa, flag_pa, v = 0, spins = 0;
	int unaccepted = 0, unvalidated = 0, vec;

	if (devfn < 0) {
		report_skip("no ivshmem-plain device");
		return 0;
	}
	bar_pa = pci_bar64(devfn, PCI_BAR2);
	for (u64 off = 0; off < IVSHMEM_SIZE; off += PAGE_SIZE)
		install_page(boot_pml4(), bar_pa + off, (bar_pa + off) | snp_c_bit_mask(),
			     PT_PRESENT | PT_WRITABLE);
	bar = (volatile u64 *)bar_pa;

	flag = alloc_page();
	flag_pa = (u64)flag;
	if (td) {
		report(tdx_map_gpa(flag_pa, PAGE_SIZE, true) == 0, "flag page converted to shared");
		install_page(boot_pml4(), SHARED_VA, flag_pa | tdx_shared_mask(),
			     PT_PRESENT | PT_WRITABLE);
		flag = (volatile u64 *)SHARED_VA;
	} else if (snp) {
		report(snp_make_shared(flag_pa, flag_pa, 1) == 0, "flag page made shared");
		install_page(boot_pml4(), SHARED_VA, flag_pa, PT_PRESENT | PT_WRITABLE);
		flag = (volatile u64 *)SHARED_VA;
	}
	*flag = 0;
	report(touch(bar, &v) == -1, "the BAR is usable");
	bar[0] = 0x2222;
	bar[IVSHMEM_SIZE / 8 - 1] = 0x3333;

	printf("CONTROL: ready bar=%lx flag=%lx\n", bar_pa, flag_pa);
	while (*flag != FLAG_GO && ++spins < (1ul << 34))
		asm volatile("pause");
	report(*flag == FLAG_GO, "the script is done");

	if (snp) {
		vec = touch(bar, &v);
		report(vec == VC_VECTOR && exception_error_code() == SVM_EXIT_PAGE_NOT_VALIDATED,
		       "re-created slot: its private pages are not validated: #VC 0x404 (%d)", vec);
		for (u64 off = 0; off < IVSHMEM_SIZE; off += PAGE_SIZE)
			if (pvalidate(bar_pa + off, RMP_PG_SIZE_4K, true) != 0)
				unvalidated++;
		report(unvalidated == 0, "every page of the slot validated again");
		bar[1] = 0x4444;
		report(touch(bar, &v) == -1 && bar[1] == 0x4444, "validated: usable, keeps new data");
		return 0;
	}
	if (!td) {
		report(touch(bar, &v) == -1 && v == 0x2222 &&
		       bar[IVSHMEM_SIZE / 8 - 1] == 0x3333,
		       "re-created slot: QEMU's memory, data kept");
		return 0;
	}
	report(touch(bar, &v) == VE_VECTOR, "re-created slot: its private pages are pending: #VE");
	for (u64 off = 0; off < IVSHMEM_SIZE; off += PAGE_SIZE)
		if (tdx_accept_page(bar_pa + off, 0) != 0)
			unaccepted++;
	report(unaccepted == 0, "every page of the slot accepted again");
	report(touch(bar, &v) == -1 && v == 0 && bar[IVSHMEM_SIZE / 8 - 1] == 0,
	       "accepted: usable, and reads zero");
	bar[1] = 0x4444;
	report(bar[1] == 0x4444, "and keeps new data");
	return 0;
}
