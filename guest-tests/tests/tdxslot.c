/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tdxslot: a memslot move in a TD. The guest reprograms an ivshmem-plain
 * BAR; QEMU deletes the memslot and creates it at the new address. A TD's
 * memslots are always zapped leaf by leaf (never zap-all): the private
 * pages of the moved slot are dropped from the Secure EPT and must be
 * accepted again (a #VE until then, SEPT_VE_DISABLE being clear here),
 * while the rest of the TD's memory stays mapped and keeps its data.
 */
#include "libcflat.h"
#include "tdx.h"
#include "pci.h"

#define IVSHMEM_SIZE (1ul << 20)
#define NEW_BAR 0x80000000ul
static int touch(volatile u64 *p, u64 *v)
{
	asm volatile(ASM_TRY("1f") "movq (%1), %0\n1:" : "=r"(*v) : "r"(p) : "memory");
	return exception_vector();
}

int main(void)
{
	volatile u64 *ram = alloc_page(), *bar;
	struct tdx_module_args a = {};
	int devfn = find_ivshmem();
	u64 old, v = 0;
	int ve = 0;

	if (devfn < 0) {
		report_skip("no ivshmem-plain device");
		return 0;
	}
	old = pci_bar64(devfn, PCI_BAR2);
	report_info("ivshmem BAR2 at %lx", old);
	for (u64 off = 0; off < IVSHMEM_SIZE; off += PAGE_SIZE)
		install_page(boot_pml4(), old + off, old + off, PT_PRESENT | PT_WRITABLE);
	bar = (volatile u64 *)old;
	*ram = 0x1111;
	report(touch(bar, &v) == -1, "the BAR's private memory is usable after launch");
	bar[0] = 0x2222;

	pci_write(devfn, PCI_BAR3, 0);
	pci_write(devfn, PCI_BAR2, (u32)NEW_BAR | (pci_read(devfn, PCI_BAR2) & 0xf));
	bar = (volatile u64 *)NEW_BAR;

	report(touch(ram, &v) == -1 && v == 0x1111, "other memory is still mapped and kept");
	report(touch(bar, &v) == VE_VECTOR, "the moved slot's pages are no longer accepted: #VE");
	report(tdx_veinfo_get(&a) == 0 && a.r9 == NEW_BAR,
	       "VE info: GPA %lx", a.r9);
	for (u64 off = 0; off < IVSHMEM_SIZE; off += PAGE_SIZE)
		if (tdx_accept_page(NEW_BAR + off, 0) != 0)
			ve++;
	report(ve == 0, "every page of the moved slot accepted again");
	report(touch(bar, &v) == -1 && v == 0, "accepted: usable, and reads zero");
	bar[1] = 0x3333;
	report(bar[1] == 0x3333, "and keeps new data");
	return 0;
}
