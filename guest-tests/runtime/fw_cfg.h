/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fw_cfg (QEMU docs/specs/fw_cfg.rst) as a simple DMA-capable device: a
 * DMA read makes the device write guest memory.
 */
#ifndef CVMEM_FW_CFG_H
#define CVMEM_FW_CFG_H

#include "libcflat.h"

/* fw_cfg (docs/specs/fw_cfg.rst): I/O ports on x86, DMA by descriptor. */
#define FW_CFG_PORT_SEL 0x510
#define FW_CFG_PORT_DATA 0x511
#define FW_CFG_PORT_DMA 0x514
#define FW_CFG_SIGNATURE 0x0000
#define FW_CFG_ID 0x0001
#define FW_CFG_NB_CPUS 0x0005 /* u16 little-endian: the boot CPUs (-smp cpus=) */
#define FW_CFG_VERSION_DMA 0x2
#define FW_CFG_DMA_CTL_ERROR 0x01
#define FW_CFG_DMA_CTL_READ 0x02
#define FW_CFG_DMA_CTL_SELECT 0x08

/* A DMA descriptor: big-endian fields. */
struct fw_cfg_dma_access {
	u32 control;
	u32 length;
	u64 address;
} __attribute__((packed));

static inline u32 fw_cfg_features(void)
{
	u32 v = 0;

	outw(FW_CFG_ID, FW_CFG_PORT_SEL);
	for (int i = 0; i < 4; i++)
		v |= (u32)inb(FW_CFG_PORT_DATA) << (8 * i);
	return v;
}

/*
 * Reads the next @len bytes of the selected item through the data port,
 * with one REP INSB: natively a string of port reads; in a TD or an SNP
 * guest one #VE or #VC whose handler does them all.
 */
static inline void fw_cfg_read_next(void *buf, u64 len)
{
	asm volatile("rep insb" : "+D"(buf), "+c"(len) : "d"(FW_CFG_PORT_DATA) : "memory");
}

/* Reads the first @len bytes of item @key through the data port. */
static inline void fw_cfg_read(u16 key, void *buf, u64 len)
{
	outw(key, FW_CFG_PORT_SEL);
	fw_cfg_read_next(buf, len);
}

/* True if the fw_cfg device answers with its "QEMU" signature. */
static inline bool fw_cfg_present(void)
{
	char sig[4];

	fw_cfg_read(FW_CFG_SIGNATURE, sig, sizeof(sig));
	return !memcmp(sig, "QEMU", sizeof(sig));
}

/*
 * The device writes the @len bytes of item @key to @buf. Returns the
 * control word the device wrote back (0: done, bit 0: error).
 */
static inline u32 fw_cfg_dma_read(struct fw_cfg_dma_access *d, u16 key, void *buf, u32 len)
{
	u64 pa = ptr_to_pa(d);

	d->control = __builtin_bswap32((u32)key << 16 | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ);
	d->length = __builtin_bswap32(len);
	d->address = __builtin_bswap64(ptr_to_pa(buf));
	/* The high half latches; writing the low half starts the transfer. */
	outl(__builtin_bswap32(pa >> 32), FW_CFG_PORT_DMA);
	outl(__builtin_bswap32((u32)pa), FW_CFG_PORT_DMA + 4);
	return __builtin_bswap32(((volatile struct fw_cfg_dma_access *)d)->control);
}

#endif
