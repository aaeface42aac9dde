/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * snpslot: memslot deletion and move in an SNP guest. The guest turns off
 * and on the memory decoding of an ivshmem-plain device, then reprograms its
 * RAM BAR; QEMU deletes the memslot and creates it again (at the new
 * address for a move). KVM zaps an SNP guest's memslots leaf by leaf and
 * the new slot's pages come back private but not validated: a private
 * access gives #VC 0x404 until the guest validates them again (PVALIDATE),
 * while the rest of the guest's memory keeps its data and its validation.
 * (Real KVM refuses to move a guest_memfd memslot; QEMU deletes and
 * re-creates it, which is what a BAR move is here too.)
 * While the slot is gone, a shared access to its GPA is MMIO (#VC 0x400).
 */
#include "libcflat.h"
#include "pci.h"
#include "snp.h"

#define IVSHMEM_SIZE (1ul << 20)
#define IVSHMEM_PAGES (IVSHMEM_SIZE / PAGE_SIZE)
#define NEW_BAR 0x80000000ul /* in the PCI hole below 4 GiB, unused by SeaBIOS */
#define SHARED_VA 0x200000000ul

static int touch(const volatile u64 *p, u64 *v)
{
	u64 x = 0;

	asm volatile(ASM_TRY("1f") "movq (%1), %0\n1:" : "+r"(x) : "r"(p) : "memory");
	*v = x;
	return exception_vector();
}

static bool not_validated(int vector)
{
	return vector == VC_VECTOR && exception_error_code() == SVM_EXIT_PAGE_NOT_VALIDATED;
}

/* Maps the BAR's 1 MiB at its GPA with the C-bit: the private pages. */
static volatile u64 *map_private(u64 gpa)
{
	for (u64 off = 0; off < IVSHMEM_SIZE; off += PAGE_SIZE)
		install_page(boot_pml4(), gpa + off, (gpa + off) | snp_c_bit_mask(),
			     PT_PRESENT | PT_WRITABLE);
	return (volatile u64 *)gpa;
}

static int validate_all(u64 gpa)
{
	int bad = 0;

	for (u64 off = 0; off < IVSHMEM_SIZE; off += PAGE_SIZE)
		if (pvalidate(gpa + off, RMP_PG_SIZE_4K, true) != 0)
			bad++;
	return bad;
}

int main(void)
{
	volatile u64 *ram = alloc_page(), *bar, *sh;
	int devfn = find_ivshmem();
	u64 old, v = 0, mmio;
	u32 cmd;
	int vec;

	if (!is_snp_guest()) {
		report(false, "not an SNP guest");
		return 1;
	}
	if (devfn < 0) {
		report_skip("no ivshmem-plain device");
		return 0;
	}
	old = pci_bar64(devfn, PCI_BAR2);
	report_info("ivshmem BAR2 at %lx", old);
	bar = map_private(old);
	*ram = 0x1111;
	report(touch(bar, &v) == -1, "the BAR's private memory is validated at launch");
	bar[0] = 0x2222;

	/* Delete: memory decoding off. */
	cmd = pci_read(devfn, PCI_COMMAND);
	pci_write(devfn, PCI_COMMAND, cmd & ~PCI_COMMAND_MEMORY);
	report(touch(ram, &v) == -1 && v == 0x1111, "slot deleted: other memory keeps its data");
	install_page(boot_pml4(), SHARED_VA, old, PT_PRESENT | PT_WRITABLE);
	sh = (volatile u64 *)SHARED_VA;
	mmio = snp_vc_count(SVM_EXIT_NPF);
	vec = touch(sh, &v);
	report(vec == -1 && snp_vc_count(SVM_EXIT_NPF) == mmio + 1,
	       "a shared access to the deleted slot's GPA is MMIO (#VC 0x400), reads %lx", v);

	/* Created again at the same place: validation is gone. */
	pci_write(devfn, PCI_COMMAND, cmd);
	vec = touch(bar, &v);
	report(not_validated(vec), "the re-created slot's pages are not validated: #VC 0x404 (%d)",
	       vec);
	report(validate_all(old) == 0, "every page validated again");
	vec = touch(bar, &v);
	report(vec == -1, "usable again (reads %lx)", v);
	bar[0] = 0x3333;

	/* Move: delete at the old GPA, create at NEW_BAR. */
	pci_set_bar64(devfn, PCI_BAR2, NEW_BAR);
	report(pci_bar64(devfn, PCI_BAR2) == NEW_BAR, "BAR2 moved to %lx", NEW_BAR);
	bar = map_private(NEW_BAR);
	report(touch(ram, &v) == -1 && v == 0x1111, "other memory is still mapped and kept");
	vec = touch(bar, &v);
	report(not_validated(vec), "the moved slot's pages are not validated: #VC 0x404 (%d)", vec);
	report(validate_all(NEW_BAR) == 0, "every page of the moved slot validated again");
	vec = touch(bar, &v);
	/*
	 * What the page holds now is not the guest's business: the contract
	 * only says it must be validated again. (A TD's re-accepted page is
	 * a fresh zero page; here the slot's memory comes back as it was.)
	 */
	report(vec == -1, "validated: usable (reads %lx)", v);
	bar[1] = 0x4444;
	report(bar[1] == 0x4444, "and keeps new data");
	report(pvalidate(NEW_BAR, RMP_PG_SIZE_4K, true) == PVALIDATE_FAIL_NOUPDATE,
	       "validated once: a second PVALIDATE changes nothing");
	return 0;
}
