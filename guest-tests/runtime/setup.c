// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * setup.c: the C side of boot. boot.S calls runtime_start() in long mode
 * with the boot page tables live; this reads the Multiboot info, sets up
 * the IDT and the allocator, runs main() and exits with its verdict.
 */
#include "internal.h"

#define MB_BOOT_MAGIC 0x2badb002
#define TDVF_BOOT_MAGIC 0x46564454 /* boot.S tdvf_start32: a TD from a TDVF image */

/* Multiboot v1 info block: the fields used here, by byte offset. */
#define MBI_FLAGS 0
#define MBI_MEM_UPPER 8
#define MBI_CMDLINE 16
#define MBI_MODS_COUNT 20
#define MBI_MODS_ADDR 24
#define MBI_MMAP_LENGTH 44
#define MBI_MMAP_ADDR 48
#define MBI_BOOT_LOADER_NAME 64
#define MBI_SIZE 116 /* up to and including the framebuffer fields */
#define MBI_FLAG_MEM (1u << 0)
#define MBI_FLAG_CMDLINE (1u << 2)
#define MBI_FLAG_MODS (1u << 3)
#define MBI_FLAG_MMAP (1u << 6)
#define MBI_FLAG_LOADER_NAME (1u << 9)
#define MB_MOD_SIZE 16 /* mod_start, mod_end, string, reserved */

extern char __image_start[], __image_end[];

struct boot_info boot_info;
static char cmdline_copy[512];

static u32 read_u32_pa(u32 base_pa, u32 offset)
{
	return *(const volatile u32 *)pa_to_ptr((u64)base_pa + offset);
}

/*
 * QEMU 10 puts the info block and memory map low (0x9500, 0x9000), but the
 * command line, the module list and the modules (-initrd) right after the
 * image. The allocator starts past whatever of that lies above the image,
 * so that all of it stays intact for the whole run.
 */
static u64 loader_data_end(u64 end, u64 pa, u64 len)
{
	if (pa >= (u64)(uintptr_t)__image_start && pa + len > end)
		return pa + len;
	return end;
}

static u64 loader_string_end(u64 end, u64 pa)
{
	return loader_data_end(end, pa, strlen(pa_to_ptr(pa)) + 1);
}

static u64 parse_multiboot(u32 mbi_pa)
{
	u32 flags = read_u32_pa(mbi_pa, MBI_FLAGS);
	u64 end = (u64)(uintptr_t)__image_end;

	boot_info.mbi_pa = mbi_pa;
	boot_info.image_end_pa = end;
	boot_info.cmdline = cmdline_copy;
	end = loader_data_end(end, mbi_pa, MBI_SIZE);

	if (!(flags & MBI_FLAG_MEM)) {
		report(false, "Multiboot info has no mem_upper (flags %x)", flags);
		exit(1);
	}
	boot_info.mem_upper_kib = read_u32_pa(mbi_pa, MBI_MEM_UPPER);
	boot_info.ram_end_pa = (1ul << 20) + (u64)boot_info.mem_upper_kib * 1024;
	/* Page tables and allocations must stay reachable via the identity map. */
	if (boot_info.ram_end_pa > BOOT_IDENTITY_MAP_END)
		boot_info.ram_end_pa = BOOT_IDENTITY_MAP_END;

	if (flags & MBI_FLAG_CMDLINE) {
		u64 pa = read_u32_pa(mbi_pa, MBI_CMDLINE);

		snprintf(cmdline_copy, sizeof(cmdline_copy), "%s", (const char *)pa_to_ptr(pa));
		end = loader_string_end(end, pa);
	}
	if (flags & MBI_FLAG_MODS) {
		u64 count = read_u32_pa(mbi_pa, MBI_MODS_COUNT);
		u64 list = read_u32_pa(mbi_pa, MBI_MODS_ADDR);

		end = loader_data_end(end, list, count * MB_MOD_SIZE);
		for (u64 i = 0; i < count; i++) {
			u32 mod = (u32)(list + i * MB_MOD_SIZE);

			end = loader_data_end(end, read_u32_pa(mod, 0),
					      read_u32_pa(mod, 4) - read_u32_pa(mod, 0));
			if (read_u32_pa(mod, 8))
				end = loader_string_end(end, read_u32_pa(mod, 8));
		}
	}
	if (flags & MBI_FLAG_MMAP)
		end = loader_data_end(end, read_u32_pa(mbi_pa, MBI_MMAP_ADDR),
				      read_u32_pa(mbi_pa, MBI_MMAP_LENGTH));
	if (flags & MBI_FLAG_LOADER_NAME)
		end = loader_string_end(end, read_u32_pa(mbi_pa, MBI_BOOT_LOADER_NAME));
	return end;
}

void boot_set_cmdline(const char *cmdline)
{
	snprintf(cmdline_copy, sizeof(cmdline_copy), "%s", cmdline);
}

const char *cmdline_value(const char *key, size_t *len)
{
	size_t n = strlen(key);

	for (const char *p = cmdline_copy; *p;) {
		while (*p == ' ' || *p == ',')
			p++;
		if (!strncmp(p, key, n) && p[n] == '=') {
			const char *v = p + n + 1, *e = v;

			while (*e && *e != ' ' && *e != ',')
				e++;
			*len = (size_t)(e - v);
			return v;
		}
		while (*p && *p != ' ' && *p != ',')
			p++;
	}
	return NULL;
}

static int digit_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return 99;
}

u64 cmdline_u64(const char *key, u64 dflt)
{
	size_t len, i = 0;
	const char *v = cmdline_value(key, &len);
	unsigned int base = 10, shift = 0;
	char word[64];
	u64 n = 0;

	if (!v)
		return dflt;
	/* The value alone, for the message (printf has no precision). */
	snprintf(word, len + 1 < sizeof(word) ? len + 1 : sizeof(word), "%s", v);
	if (len > 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) {
		base = 16;
		i = 2;
	}
	/* A size suffix, never a hex digit (B, E, and F are not suffixes). */
	if (len > i + 1) {
		switch (v[len - 1]) {
		case 'K': shift = 10; break;
		case 'M': shift = 20; break;
		case 'G': shift = 30; break;
		}
		if (shift)
			len--;
	}
	if (i == len)
		goto bad;
	for (; i < len; i++) {
		int d = digit_value(v[i]);

		if (d >= (int)base || n > (~0ul - (u64)d) / base)
			goto bad;
		n = n * base + (u64)d;
	}
	if (shift && n > (~0ul >> shift))
		goto bad;
	return n << shift;
bad:
	report(false, "command line: '%s=%s' is not a number", key, word);
	exit(1);
}

bool cmdline_has(const char *word)
{
	size_t n = strlen(word);

	/* Words are separated by spaces or commas. */
	for (const char *p = cmdline_copy; *p;) {
		while (*p == ' ' || *p == ',')
			p++;
		if (!strncmp(p, word, n) && (p[n] == ' ' || p[n] == ',' || p[n] == '\0'))
			return true;
		while (*p && *p != ' ' && *p != ',')
			p++;
	}
	return false;
}

void runtime_start(u32 magic, u32 mbi_pa)
{
	bool multiboot = magic == MB_BOOT_MAGIC, tdvf = magic == TDVF_BOOT_MAGIC;

	/* First: everything below may use this CPU's per-CPU area (GS). */
	percpu_init_bsp();
	idt_init();
	/*
	 * A TD is running already (boot.S turned paging on): its port I/O
	 * and HLT raise #VE, which needs the IDT and tdx_init_bsp() before
	 * anything may print (a failure report included).
	 */
	tdx_init_bsp();
	/*
	 * An SNP guest takes a #VC on port I/O, CPUID and most MSRs, which
	 * needs the IDT and a GHCB (whose page comes from the allocator):
	 * nothing before snp_init_bsp() may print or otherwise trap.
	 */
	if (multiboot) {
		u64 free_pa = parse_multiboot(mbi_pa);

		phys_alloc_init(ALIGN_UP(free_pa, PAGE_SIZE), boot_info.ram_end_pa);
	} else if (tdvf) {
		/*
		 * A firmware image (boot/efiboot-tdvf.S): no loader data, no
		 * command line. The image (its TempMem and TD HOB sections
		 * included) ends at __image_end; the allocator's memory above it
		 * may still be unaccepted, which the image's main() sees to
		 * before it allocates (the TD HOB says what is).
		 */
		boot_info.td_hob_pa = mbi_pa;
		boot_info.image_end_pa = (u64)(uintptr_t)__image_end;
		boot_info.cmdline = cmdline_copy;
		boot_info.ram_end_pa = BOOT_IDENTITY_MAP_END;
		phys_alloc_init(ALIGN_UP(boot_info.image_end_pa, PAGE_SIZE), boot_info.ram_end_pa);
	}
	snp_init_bsp();
	serial_init();
	/*
	 * IF stays clear for the whole run, but the PICs still point IRQs at
	 * vectors 8-15 where SeaBIOS left them; mask them in case a test sti's.
	 */
	outb(0xff, 0x21);
	outb(0xff, 0xa1);

	if (!multiboot && !tdvf) {
		report(false, "booted with magic %x, not Multiboot's %x", magic, MB_BOOT_MAGIC);
		exit(1);
	}
	exit(main());
}
