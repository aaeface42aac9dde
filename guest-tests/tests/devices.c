/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * devices: the host-side hooks of the cvm plugin API, driven through the
 * plugin's test device (plugin argument test=hooks):
 *  - memslots: QEMU reports its RAM sections to the plugin as KVM memslots;
 *    moving the BAR of an ivshmem-plain device from the guest arrives as a
 *    deletion of the old slot followed by a creation of the new one, and
 *    the device memory moves with it;
 *  - DMA check: a fw_cfg DMA transfer (a device writing guest memory) into
 *    a page the plugin blocks is dropped while the transfer completes and
 *    other pages still receive data.
 *
 * Needs -object memory-backend-ram,id=ivm,size=1M
 *       -device ivshmem-plain,memdev=ivm
 */
#include "testdev.h"
#include "fw_cfg.h"
#include "pci.h"

#define IVSHMEM_SIZE (1ul << 20)
#define NEW_BAR 0x80000000ul /* in the PCI hole below 4 GiB, unused by SeaBIOS */

static u64 memslot_count(void)
{
	return testdev_call(OP_MEMSLOT_LOG, 0, 0, 0).rdx;
}

/* Checks that memslot event @i is @del ? deletion : creation of [gpa, +size). */
static void check_event(u64 i, bool del, u64 gpa, u64 size)
{
	struct testdev_regs e = testdev_call(OP_MEMSLOT_LOG, i, 0, 0);

	report(e.rax == gpa && e.rbx == size && e.rcx == del,
	       "event %lu: %s %lx+%lx (got %s %lx+%lx)", i, del ? "delete" : "create", gpa, size,
	       e.rcx ? "delete" : "create", e.rax, e.rbx);
}

static void check_slot(u64 gpa, u64 size)
{
	struct testdev_regs s = testdev_call(OP_MEMSLOT_FIND, gpa, 0, 0);

	if (size)
		report(s.rax == size && s.rbx == gpa, "memslot at %lx, %lx bytes (got %lx at %lx)",
		       gpa, size, s.rax, s.rbx);
	else
		report(s.rax == 0, "no memslot at %lx (got %lx at %lx)", gpa, s.rax, s.rbx);
}

/* Moves BAR2 to @to with memory decoding on: one memory-map commit. */
static void move_bar(u32 devfn, u64 from, u64 to)
{
	u64 n = memslot_count();

	pci_write(devfn, PCI_BAR2, (u32)to | (pci_read(devfn, PCI_BAR2) & 0xf));
	report(memslot_count() == n + 2, "moving the BAR gives two memslot events (%lu)",
	       memslot_count() - n);
	check_event(n, true, from, IVSHMEM_SIZE);
	check_event(n + 1, false, to, IVSHMEM_SIZE);
	check_slot(from, 0);
	check_slot(to, IVSHMEM_SIZE);
}

static void test_memslots(void)
{
	volatile u64 *mem;
	int devfn;
	u64 old;

	report_prefix_push("memslots");
	report(testdev_call(OP_MEMSLOT_FIND, 0x200000, 0, 0).rax >= (128ul << 20),
	       "guest RAM is a memslot");
	check_slot(0xffffffffffff0000ul, 0);

	devfn = find_ivshmem();
	report(devfn >= 0, "ivshmem-plain found (devfn %x)", devfn);
	if (devfn < 0) {
		report_prefix_pop();
		return;
	}
	old = pci_bar64(devfn, PCI_BAR2);
	report(pci_read(devfn, PCI_COMMAND) & PCI_COMMAND_MEMORY, "firmware enabled memory decoding");
	report(old && old + IVSHMEM_SIZE <= (4ul << 30) && old != NEW_BAR,
	       "firmware mapped BAR2 below 4 GiB (%lx)", old);
	if (!old || old + IVSHMEM_SIZE > (4ul << 30) || old == NEW_BAR) {
		report_prefix_pop();
		return;
	}
	check_slot(old, IVSHMEM_SIZE);
	mem = pa_to_ptr(old);
	mem[0] = 0x1234567890abcdeful;
	mem[IVSHMEM_SIZE / 8 - 1] = 0xfeedul;

	move_bar(devfn, old, NEW_BAR);
	mem = pa_to_ptr(NEW_BAR);
	report(mem[0] == 0x1234567890abcdeful && mem[IVSHMEM_SIZE / 8 - 1] == 0xfeedul,
	       "the device memory moved with its BAR");
	mem[1] = 0x77;

	move_bar(devfn, NEW_BAR, old);
	mem = pa_to_ptr(old);
	report(mem[1] == 0x77, "and back");
	report_prefix_pop();
}

static void test_dma(void)
{
	struct fw_cfg_dma_access *d = alloc_page();
	u8 *open = alloc_page(), *blocked = alloc_page();
	u64 refused;
	u32 ctl;

	report_prefix_push("dma");
	report(fw_cfg_features() & FW_CFG_VERSION_DMA, "fw_cfg offers DMA");

	memset(open, 0x11, PAGE_SIZE);
	ctl = fw_cfg_dma_read(d, FW_CFG_SIGNATURE, open, 4);
	report(ctl == 0 && !memcmp(open, "QEMU", 4), "device write to an open page (ctl %x)", ctl);

	testdev(OP_DMA_BLOCK, ptr_to_pa(blocked), 0, 0);
	refused = testdev(OP_DMA_BLOCKED, 0, 0, 0);
	memset(blocked, 0x11, PAGE_SIZE);
	ctl = fw_cfg_dma_read(d, FW_CFG_SIGNATURE, blocked, 4);
	report(ctl == 0, "the transfer into a blocked page completes (ctl %x)", ctl);
	report(blocked[0] == 0x11 && blocked[1] == 0x11 && blocked[2] == 0x11 && blocked[3] == 0x11,
	       "its data is dropped (%02x %02x %02x %02x)", blocked[0], blocked[1], blocked[2],
	       blocked[3]);
	report(testdev(OP_DMA_BLOCKED, 0, 0, 0) > refused, "the plugin counted the refusal");
	blocked[0] = 0x42;
	report(blocked[0] == 0x42, "the vCPU still reaches the page");

	memset(open, 0x22, PAGE_SIZE);
	ctl = fw_cfg_dma_read(d, FW_CFG_SIGNATURE, open, 4);
	report(ctl == 0 && !memcmp(open, "QEMU", 4), "other pages still receive data");

	testdev(OP_CLEAR, 0, 0, 0);
	ctl = fw_cfg_dma_read(d, FW_CFG_SIGNATURE, blocked, 4);
	report(ctl == 0 && !memcmp(blocked, "QEMU", 4), "unblocked, the page receives data");
	report_prefix_pop();
}

int main(void)
{
	test_memslots();
	test_dma();
	return 0;
}
