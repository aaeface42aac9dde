/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * pci.h: PCI configuration space through the legacy ports (0xcf8/0xcfc,
 * configuration mechanism #1) on bus 0, and the ivshmem-plain device whose
 * RAM BAR tests move to make QEMU delete and re-create a memslot.
 *
 * Port I/O: an SNP guest reaches these ports through its #VC handler.
 */
#ifndef CVMEM_PCI_H
#define CVMEM_PCI_H

#include "libcflat.h"

#define PCI_CONFIG_ADDRESS 0xcf8
#define PCI_CONFIG_DATA 0xcfc
#define PCI_VENDOR_ID 0x00
#define PCI_COMMAND 0x04
#define PCI_COMMAND_MEMORY 0x2
#define PCI_BAR0 0x10
#define PCI_BAR2 0x18
#define PCI_BAR3 0x1c

#define PCI_VENDOR_REDHAT_QUMRANET 0x1af4
#define PCI_DEVICE_IVSHMEM 0x1110

static inline u32 pci_addr(u32 devfn, u32 off)
{
	return 0x80000000u | devfn << 8 | (off & 0xfc);
}

/* The dword at off (aligned down to 4) of bus 0's devfn. */
static inline u32 pci_read(u32 devfn, u32 off)
{
	outl(pci_addr(devfn, off), PCI_CONFIG_ADDRESS);
	return inl(PCI_CONFIG_DATA);
}

static inline void pci_write(u32 devfn, u32 off, u32 v)
{
	outl(pci_addr(devfn, off), PCI_CONFIG_ADDRESS);
	outl(v, PCI_CONFIG_DATA);
}

/* The devfn of the first device vendor:device on bus 0, or -1. */
static inline int pci_find(u16 vendor, u16 device)
{
	for (u32 devfn = 0; devfn < 256; devfn += 8) {
		u32 id = pci_read(devfn, PCI_VENDOR_ID);

		if ((id & 0xffff) == vendor && id >> 16 == device)
			return (int)devfn;
	}
	return -1;
}

/* The devfn of the first ivshmem device (ivshmem-plain, -doorbell) on bus 0, or -1. */
static inline int find_ivshmem(void)
{
	return pci_find(PCI_VENDOR_REDHAT_QUMRANET, PCI_DEVICE_IVSHMEM);
}

/* A 64-bit memory BAR at off (BAR2: off = PCI_BAR2), flag bits cleared. */
static inline u64 pci_bar64(u32 devfn, u32 off)
{
	return (pci_read(devfn, off) & ~0xful) | (u64)pci_read(devfn, off + 4) << 32;
}

/* Moves the 64-bit memory BAR at off to pa (one memory-map commit per dword written). */
static inline void pci_set_bar64(u32 devfn, u32 off, u64 pa)
{
	pci_write(devfn, off + 4, (u32)(pa >> 32));
	pci_write(devfn, off, (u32)pa | (pci_read(devfn, off) & 0xf));
}

#endif /* CVMEM_PCI_H */
