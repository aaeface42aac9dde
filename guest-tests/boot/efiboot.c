// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * efiboot: boots a Linux bzImage the way a TDVF-style firmware hands it
 * over, without being one. cvmem's guests start under SeaBIOS, which has no
 * EFI; Linux learns of unaccepted memory only from the EFI configuration
 * table LINUX_EFI_UNACCEPTED_MEM_TABLE_GUID (drivers/firmware/efi/
 * unaccepted_memory.c), so a TD booted by SeaBIOS's linuxboot ROM can
 * neither be left memory to accept nor find its ACPI tables once the pages
 * SeaBIOS put them in were never added. This image runs as the Multiboot
 * kernel instead:
 *
 *   -kernel efiboot.elf -append "accept=256M"
 *   -initrd "vmlinuz console=ttyS0 ...,initrd.cpio"
 *
 * Module 1 is the bzImage (its string after the file name is the kernel's
 * command line), module 2 the initramfs (optional). efiboot then does what
 * TDVF and the EFI stub do between them:
 *
 *   - in a TD, accepts (TDG.MEM.PAGE.ACCEPT) the RAM below accept= that the
 *     VMM did not add at launch, and leaves the rest to the kernel, recorded
 *     in a unaccepted-memory bitmap of 2 MiB units; RAM above accept= that
 *     does not fill a whole unit is accepted now, as the EFI stub's
 *     process_unaccepted_memory() does;
 *   - builds the ACPI tables from QEMU's fw_cfg "etc/table-loader" script
 *     (as OVMF's AcpiPlatformDxe and SeaBIOS do) and the SMBIOS tables in
 *     memory it types ACPI;
 *   - builds an EFI system table with the ACPI, SMBIOS and unaccepted-memory
 *     configuration tables and an EFI memory map, and passes them in
 *     boot_params.efi_info as a 64-bit EFI loader ("EL64") does;
 *   - loads the kernel and enters it through the 64-bit boot protocol
 *     (Documentation/arch/x86/boot.rst: load address + 0x200, RSI =
 *     boot_params, __BOOT_CS 0x10, __BOOT_DS 0x18).
 *
 * There are no EFI boot or runtime services (the system table's pointers
 * are 0): the kernel command line must say efi=noruntime, which efiboot
 * appends. Memory the bitmap calls unaccepted must really be unaccepted:
 * if the VMM added more at launch than accept= (cvmem's accept= is
 * larger), efiboot finds where its launch pages end and starts the bitmap
 * a unit above (td_unaccepted_start()).
 *
 * In an SNP guest it plays the part of OVMF's SEV support instead: RAM
 * below accept= that the launch did not validate is made private and
 * PVALIDATEd, the units above are left unaccepted as for a TD (the kernel's
 * snp_accept_memory() validates them), and the CPUID and secrets pages the
 * launch placed (SNP_CPUID_PAGE, SNP_SECRETS_PAGE) are reserved and handed
 * to the kernel in a CC blob (struct cc_blob_sev_info), found through both
 * a SETUP_CC_BLOB setup_data entry and the EFI configuration table
 * (EFI_CC_BLOB_GUID), as a direct-boot VMM and OVMF give it.
 *
 * Outside a TD and an SNP guest nothing is accepted and there is no
 * bitmap; the rest is the same, so the same kernel boots every way.
 *
 * In a TD it is also a firmware of its own: efiboot.fd (boot/efiboot-tdvf.S,
 * boot/efiboot-fd.ld) is a -bios image with TDVF metadata that the TD
 * starts from as it starts from OVMF, every vCPU at the reset vector:
 *
 *   -machine q35 -bios efiboot.fd -kernel vmlinuz -initrd initrd
 *   -append "console=ttyS0 ..." -fw_cfg name=opt/cvmem/efiboot,string=accept=256M
 *
 * Then the RAM and what of it is accepted come from the TD HOB the VMM
 * wrote (EFI_RESOURCE_SYSTEM_MEMORY accepted, EFI_RESOURCE_MEMORY_UNACCEPTED
 * not), efiboot's own arguments from the fw_cfg file opt/cvmem/efiboot, the
 * kernel, initramfs and command line from fw_cfg (by DMA through a shared
 * bounce buffer), and the APs wait in a mailbox that the MADT's
 * multiprocessor wakeup structure names, so that the kernel wakes them
 * (INIT and SIPI do not reach a TD). The chipset's ACPI PM I/O base is
 * programmed first, as OVMF does, since no BIOS did.
 */
#include "libcflat.h"
#include "fw_cfg.h"
#include "tdx.h"
#include "snp.h"

#define SZ_2M (2ul << 20)
#define UNIT_SIZE SZ_2M /* the EFI stub's EFI_UNACCEPTED_UNIT_SIZE (PMD_SIZE) */

static __noreturn void fail(const char *fmt, ...) __printf(1, 2);

/* A FAIL line and the SUMMARY: QEMU exits with status 3. */
static void fail(const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	report(false, "efiboot: %s", msg);
	exit(1);
}

/* ---- little-endian field access ---------------------------------------- */

static u8 get8(const void *b, u64 off) { return ((const u8 *)b)[off]; }
static u16 get16(const void *b, u64 off) { u16 v; memcpy(&v, (const u8 *)b + off, 2); return v; }
static u32 get32(const void *b, u64 off) { u32 v; memcpy(&v, (const u8 *)b + off, 4); return v; }
static u64 get64(const void *b, u64 off) { u64 v; memcpy(&v, (const u8 *)b + off, 8); return v; }
static void put8(void *b, u64 off, u8 v) { ((u8 *)b)[off] = v; }
static void put16(void *b, u64 off, u16 v) { memcpy((u8 *)b + off, &v, 2); }
static void put32(void *b, u64 off, u32 v) { memcpy((u8 *)b + off, &v, 4); }
static void put64(void *b, u64 off, u64 v) { memcpy((u8 *)b + off, &v, 8); }

/* What makes the bytes sum to zero (ACPI, SMBIOS). */
static u8 checksum(const u8 *p, u64 len)
{
	u8 sum = 0;

	for (u64 i = 0; i < len; i++)
		sum += p[i];
	return (u8)-sum;
}

/* ---- the Multiboot info (setup.c parsed the rest) ---------------------- */

#define MBI_FLAGS 0
#define MBI_MODS_COUNT 20
#define MBI_MODS_ADDR 24
#define MBI_MMAP_LENGTH 44
#define MBI_MMAP_ADDR 48
#define MBI_FLAG_MODS (1u << 3)
#define MBI_FLAG_MMAP (1u << 6)

struct module {
	u64 start, end;
	const char *string; /* "path args" */
};

/* ---- the memory map handed to the kernel -------------------------------- */

#define E820_TYPE_RAM 1
#define E820_TYPE_RESERVED 2
#define E820_TYPE_ACPI 3
#define E820_TYPE_NVS 4

/* EFI memory types (UEFI 2.10 §7.2, Linux include/linux/efi.h). */
#define EFI_RESERVED_TYPE 0
#define EFI_LOADER_CODE 1
#define EFI_LOADER_DATA 2
#define EFI_CONVENTIONAL_MEMORY 7
#define EFI_ACPI_RECLAIM_MEMORY 9
#define EFI_ACPI_MEMORY_NVS 10
#define EFI_UNACCEPTED_MEMORY 15
#define EFI_MEMORY_WB 0x8ul

/*
 * Disjoint ranges in address order, each with the type the kernel's e820
 * table gets and the one its EFI memory map gets. Starts as the Multiboot
 * map (SeaBIOS's e820) and is carved as efiboot places things.
 */
struct region {
	u64 start, end;
	u32 e820, efi;
};

#define MAX_REGIONS 96
static struct region regions[MAX_REGIONS];
static int nregions;

static u32 efi_type_of(u32 e820)
{
	switch (e820) {
	case E820_TYPE_RAM: return EFI_CONVENTIONAL_MEMORY;
	case E820_TYPE_ACPI: return EFI_ACPI_RECLAIM_MEMORY;
	case E820_TYPE_NVS: return EFI_ACPI_MEMORY_NVS;
	default: return EFI_RESERVED_TYPE;
	}
}

/* [start, end) becomes (e820, efi); what it overlapped is cut around it. */
static void region_set(u64 start, u64 end, u32 e820, u32 efi)
{
	struct region out[MAX_REGIONS];
	int n = 0;

	if (start >= end)
		return;
	for (int i = 0; i < nregions; i++) {
		struct region r = regions[i];

		if (r.end <= start || r.start >= end) {
			out[n++] = r;
			continue;
		}
		if (r.start < start)
			out[n++] = (struct region){ r.start, start, r.e820, r.efi };
		if (r.end > end)
			out[n++] = (struct region){ end, r.end, r.e820, r.efi };
		if (n >= MAX_REGIONS - 2)
			fail("memory map has more than %d ranges", MAX_REGIONS);
	}
	out[n++] = (struct region){ start, end, e820, efi };
	/* Insertion sort, then merge neighbours of the same types. */
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && out[j].start < out[j - 1].start; j--) {
			struct region t = out[j];

			out[j] = out[j - 1];
			out[j - 1] = t;
		}
	nregions = 0;
	for (int i = 0; i < n; i++) {
		struct region *last = nregions ? &regions[nregions - 1] : NULL;

		if (last && last->end == out[i].start && last->e820 == out[i].e820 &&
		    last->efi == out[i].efi)
			last->end = out[i].end;
		else
			regions[nregions++] = out[i];
	}
}

/* True if [start, end) lies inside one RAM range. */
static bool is_ram(u64 start, u64 end)
{
	for (int i = 0; i < nregions; i++)
		if (regions[i].e820 == E820_TYPE_RAM && regions[i].start <= start &&
		    end <= regions[i].end)
			return true;
	return false;
}

static u64 ram_end(void)
{
	u64 end = 0;

	for (int i = 0; i < nregions; i++)
		if (regions[i].e820 == E820_TYPE_RAM && regions[i].end > end)
			end = regions[i].end;
	return end;
}

static void read_multiboot_map(u32 mbi)
{
	const u8 *info = pa_to_ptr(mbi);
	u64 addr, len;

	if (!(get32(info, MBI_FLAGS) & MBI_FLAG_MMAP))
		fail("the Multiboot info has no memory map");
	addr = get32(info, MBI_MMAP_ADDR);
	len = get32(info, MBI_MMAP_LENGTH);
	/* Entries: u32 size (of the rest), u64 base, u64 length, u32 type. */
	for (u64 p = addr; p < addr + len; p += get32(pa_to_ptr(p), 0) + 4) {
		const u8 *e = pa_to_ptr(p);
		u64 base = get64(e, 4), size = get64(e, 12);
		u32 type = get32(e, 20);

		if (type < E820_TYPE_RAM || type > E820_TYPE_NVS)
			type = E820_TYPE_RESERVED;
		region_set(base, base + size, type, efi_type_of(type));
	}
}

static int read_modules(u32 mbi, struct module *mods, int max)
{
	const u8 *info = pa_to_ptr(mbi);
	u32 count, list;

	if (!(get32(info, MBI_FLAGS) & MBI_FLAG_MODS))
		return 0;
	count = get32(info, MBI_MODS_COUNT);
	list = get32(info, MBI_MODS_ADDR);
	for (u32 i = 0; i < count && (int)i < max; i++) {
		const u8 *m = pa_to_ptr(list + 16ul * i);

		mods[i].start = get32(m, 0);
		mods[i].end = get32(m, 4);
		mods[i].string = get32(m, 8) ? pa_to_ptr(get32(m, 8)) : "";
	}
	return count < (u32)max ? (int)count : max;
}

/* ---- TDX: accepting memory --------------------------------------------- */

static u64 accepted_frames, already_accepted_frames;

/*
 * TDG.MEM.PAGE.ACCEPT of [start, end), page aligned: 2 MiB where a whole
 * unit fits, else (or when the unit is mapped at 4K: TDX_PAGE_SIZE_MISMATCH)
 * 4 KiB. Pages the VMM added at launch answer TDX_PAGE_ALREADY_ACCEPTED.
 */
static void td_accept(u64 start, u64 end)
{
	u64 pa = start;

	while (pa < end) {
		u64 stop, st;

		if (!(pa & (SZ_2M - 1)) && end - pa >= SZ_2M) {
			st = tdx_accept_page(pa, TDX_PS_2M);
			if (st == TDX_SUCCESS || tdx_status_class(st) == TDX_PAGE_ALREADY_ACCEPTED) {
				if (st == TDX_SUCCESS)
					accepted_frames += SZ_2M / PAGE_SIZE;
				else
					already_accepted_frames += SZ_2M / PAGE_SIZE;
				pa += SZ_2M;
				continue;
			}
			if (tdx_status_class(st) != TDX_PAGE_SIZE_MISMATCH)
				fail("TDG.MEM.PAGE.ACCEPT 2M at %lx: status %lx", pa, st);
		}
		stop = ALIGN_UP(pa + 1, SZ_2M);
		if (stop > end)
			stop = end;
		for (; pa < stop; pa += PAGE_SIZE) {
			st = tdx_accept_page(pa, TDX_PS_4K);
			if (st == TDX_SUCCESS)
				accepted_frames++;
			else if (tdx_status_class(st) == TDX_PAGE_ALREADY_ACCEPTED)
				already_accepted_frames++;
			else
				fail("TDG.MEM.PAGE.ACCEPT 4K at %lx: status %lx", pa, st);
		}
	}
}

/*
 * Where unaccepted memory may begin: at @boundary unless the VMM added more
 * than that at launch (cvmem's accept= above efiboot's). A unit the bitmap
 * calls unaccepted must be, or the kernel's TDG.MEM.PAGE.ACCEPT of it fails
 * with TDX_PAGE_ALREADY_ACCEPTED and it panics ("TDX: Failed to accept
 * memory"). TDX has no query without side effects, so this accepts the
 * first page of the unit at the boundary: ALREADY_ACCEPTED means the VMM
 * added it, and the boundary moves up a unit; SUCCESS means the launch
 * boundary lies below, and that unit, partly accepted now, goes to the
 * accepted side too. Units that are not all RAM are skipped: they are
 * never in the bitmap.
 */
static u64 td_unaccepted_start(u64 boundary)
{
	u64 end = ram_end();

	for (; boundary < end; boundary += UNIT_SIZE) {
		u64 st;

		if (!is_ram(boundary, boundary + UNIT_SIZE))
			continue;
		st = tdx_accept_page(boundary, TDX_PS_4K);
		if (st == TDX_SUCCESS) {
			accepted_frames++;
			return boundary + UNIT_SIZE;
		}
		if (tdx_status_class(st) != TDX_PAGE_ALREADY_ACCEPTED)
			fail("TDG.MEM.PAGE.ACCEPT 4K at %lx: status %lx", boundary, st);
	}
	return boundary;
}

/* ---- SNP: validating memory -------------------------------------------- */

static bool snp;

/*
 * Makes [start, end) private and validated, as the kernel's
 * snp_accept_memory() does: a page-state change to private, then
 * PVALIDATE (2 MiB where the RMP allows, else 4 KiB). Pages the launch
 * validated answer FAIL_NOUPDATE and are counted as already accepted.
 */
static void snp_validate(u64 start, u64 end)
{
	u64 err = snp_page_state_change(start, (end - start) / PAGE_SIZE, SNP_PAGE_STATE_PRIVATE, true);

	if (err)
		fail("page-state change to private of %lx..%lx: %lx", start, end, err);
	for (u64 pa = start; pa < end;) {
		int rc = PVALIDATE_FAIL_SIZEMISMATCH;

		if (!(pa & (SZ_2M - 1)) && end - pa >= SZ_2M) {
			rc = pvalidate(pa, RMP_PG_SIZE_2M, true);
			if (rc == PVALIDATE_OK || rc == PVALIDATE_FAIL_NOUPDATE) {
				*(rc ? &already_accepted_frames : &accepted_frames) += SZ_2M / PAGE_SIZE;
				pa += SZ_2M;
				continue;
			}
			if (rc != PVALIDATE_FAIL_SIZEMISMATCH)
				fail("PVALIDATE 2M at %lx: %d", pa, rc);
		}
		rc = pvalidate(pa, RMP_PG_SIZE_4K, true);
		if (rc == PVALIDATE_OK)
			accepted_frames++;
		else if (rc == PVALIDATE_FAIL_NOUPDATE)
			already_accepted_frames++;
		else
			fail("PVALIDATE 4K at %lx: %d", pa, rc);
		pa += PAGE_SIZE;
	}
}

/*
 * td_unaccepted_start() for an SNP guest: a unit the bitmap calls
 * unaccepted must be unvalidated, or the kernel's PVALIDATE of it fails
 * (FAIL_NOUPDATE: "SNP: Page validation failed" and termination).
 * PVALIDATE tells without a side effect on a validated page.
 */
static u64 snp_unvalidated_start(u64 boundary)
{
	u64 end = ram_end();

	for (; boundary < end; boundary += UNIT_SIZE) {
		u64 before = accepted_frames;

		if (!is_ram(boundary, boundary + UNIT_SIZE))
			continue;
		snp_validate(boundary, boundary + PAGE_SIZE);
		if (accepted_frames != before)
			return boundary + UNIT_SIZE;
	}
	return boundary;
}

/*
 * TDG.MEM.PAGE.ACCEPT, or page-state change and PVALIDATE. In an SNP guest
 * what efiboot has used so far is left out (its image, the modules QEMU
 * put after it, the pages it allocated): the launch validated them (they
 * lie below any useful accept=), and among them are the GHCB pages, which
 * the runtime made shared and a page-state change to private would
 * discard.
 */
static void accept_range(u64 start, u64 end)
{
	extern char __image_start[];
	u64 img_s = ALIGN_DOWN(ptr_to_pa(__image_start), PAGE_SIZE);
	u64 img_e = phys_alloc_pages(0);

	if (start >= end)
		return;
	if (!snp) {
		td_accept(start, end);
		return;
	}
	if (start < img_s)
		snp_validate(start, end < img_s ? end : img_s);
	if (end > img_e)
		snp_validate(start > img_e ? start : img_e, end);
}

/*
 * Accepts the RAM below @boundary and the RAM above it that does not fill
 * a whole unit; types the whole units above it EFI_UNACCEPTED_MEMORY.
 * Returns how many bytes that leaves unaccepted.
 */
static u64 accept_memory(u64 boundary)
{
	u64 units[MAX_REGIONS][2], unaccepted = 0;
	int n = 0;

	for (int i = 0; i < nregions; i++) {
		struct region r = regions[i];
		u64 s = ALIGN_UP(r.start, PAGE_SIZE), e = ALIGN_DOWN(r.end, PAGE_SIZE);
		u64 above = s > boundary ? s : boundary, us, ue;

		if (r.e820 != E820_TYPE_RAM || s >= e)
			continue;
		if (s < boundary)
			accept_range(s, e < boundary ? e : boundary);
		if (e <= boundary)
			continue;
		us = ALIGN_UP(above, UNIT_SIZE);
		ue = ALIGN_DOWN(e, UNIT_SIZE);
		if (us >= ue) {
			accept_range(above, e);
			continue;
		}
		/* Head and tail short of a unit now, the units later. */
		accept_range(above, us);
		accept_range(ue, e);
		units[n][0] = us;
		units[n++][1] = ue;
		unaccepted += ue - us;
	}
	/* After the loop: region_set() rearranges regions[]. */
	for (int i = 0; i < n; i++)
		region_set(units[i][0], units[i][1], E820_TYPE_RAM, EFI_UNACCEPTED_MEMORY);
	return unaccepted;
}

/*
 * struct efi_unaccepted_memory (include/linux/efi.h), version 1: one bit
 * per UNIT_SIZE from phys_base, set while the unit is unaccepted.
 */
#define UNACCEPTED_HDR 24 /* u32 version, u32 unit_size, u64 phys_base, u64 size */

static void *build_unaccepted_table(u64 base)
{
	u64 end = ALIGN_UP(ram_end(), UNIT_SIZE), bytes = (end - base) / UNIT_SIZE / 8 + 1;
	u64 pa = phys_alloc_pages((UNACCEPTED_HDR + bytes + PAGE_SIZE - 1) / PAGE_SIZE);
	u8 *table;

	if (!pa)
		fail("no memory for the unaccepted-memory table");
	table = memset(pa_to_ptr(pa), 0, UNACCEPTED_HDR + bytes);
	put32(table, 0, 1);
	put32(table, 4, UNIT_SIZE);
	put64(table, 8, base);
	put64(table, 16, bytes);
	for (int i = 0; i < nregions; i++) {
		if (regions[i].efi != EFI_UNACCEPTED_MEMORY)
			continue;
		for (u64 u = regions[i].start; u < regions[i].end; u += UNIT_SIZE) {
			u64 bit = (u - base) / UNIT_SIZE;

			table[UNACCEPTED_HDR + bit / 8] |= (u8)(1u << (bit % 8));
		}
	}
	return table;
}

/* ---- ACPI from fw_cfg's table loader ----------------------------------- */

#define FW_CFG_FILE_DIR 0x0019
#define FW_CFG_FILE_NAME 56
#define LOADER_ENTRY 128 /* struct BiosLinkerLoaderEntry (hw/acpi/bios-linker-loader.c) */
#define LOADER_ALLOCATE 1
#define LOADER_ADD_POINTER 2
#define LOADER_ADD_CHECKSUM 3
#define LOADER_WRITE_POINTER 4
#define MAX_FILES 128

struct fw_file {
	char name[FW_CFG_FILE_NAME];
	u32 size;
	u16 select;
	u8 *data; /* where ALLOCATE put it, NULL before */
};

static struct fw_file fw_files[MAX_FILES];
static int fw_nfiles;

/* fw_cfg's directory is big-endian. */
static u32 be32(const u8 *p) { return __builtin_bswap32(get32(p, 0)); }

static void fw_cfg_read_dir(void)
{
	u8 buf[64];

	if (fw_nfiles)
		return;
	fw_cfg_read(FW_CFG_FILE_DIR, buf, 4);
	u32 count = be32(buf);

	/* The data port goes on where the count ended: the entries follow. */
	for (u32 i = 0; i < count; i++) {
		fw_cfg_read_next(buf, sizeof(buf));
		if (fw_nfiles == MAX_FILES)
			fail("fw_cfg has more than %d files", MAX_FILES);
		struct fw_file *f = &fw_files[fw_nfiles++];

		f->size = be32(buf);
		f->select = (u16)(buf[4] << 8 | buf[5]);
		memcpy(f->name, buf + 8, FW_CFG_FILE_NAME);
		f->name[FW_CFG_FILE_NAME - 1] = 0;
	}
}

static struct fw_file *fw_file(const char *name)
{
	for (int i = 0; i < fw_nfiles; i++)
		if (!strncmp(fw_files[i].name, name, FW_CFG_FILE_NAME))
			return &fw_files[i];
	return NULL;
}

/* Reads file @f into fresh pages aligned to @align; sets and returns f->data. */
static u8 *fw_file_load(struct fw_file *f, u32 align)
{
	u64 pa = phys_alloc_pages_aligned((f->size + PAGE_SIZE - 1) / PAGE_SIZE, align);

	if (!pa)
		fail("no memory for fw_cfg file '%s' (%u bytes, align %u)", f->name, f->size, align);
	f->data = pa_to_ptr(pa);
	fw_cfg_read(f->select, f->data, f->size);
	return f->data;
}

/* A command's file name field: NUL-terminated within its 56 bytes. */
static struct fw_file *loader_file(const u8 *field, bool allocated)
{
	char name[FW_CFG_FILE_NAME];
	struct fw_file *f;

	memcpy(name, field, FW_CFG_FILE_NAME);
	name[FW_CFG_FILE_NAME - 1] = 0;
	f = fw_file(name);
	if (!f)
		fail("table-loader names '%s', which fw_cfg does not have", name);
	if (allocated && !f->data)
		fail("table-loader uses '%s' before allocating it", name);
	return f;
}

/*
 * Runs QEMU's ACPI linker/loader script. Every table lands in memory from
 * the page allocator (both zones: there is no BIOS F-segment to keep).
 * Returns the RSDP's address.
 */
static u64 build_acpi_tables(void)
{
	struct fw_file *script, *rsdp;
	u8 *cmds;

	if (!fw_cfg_present())
		fail("no fw_cfg device: cannot build ACPI tables");
	fw_cfg_read_dir();
	script = fw_file("etc/table-loader");
	if (!script || script->size % LOADER_ENTRY)
		fail("fw_cfg has no usable etc/table-loader");
	cmds = fw_file_load(script, PAGE_SIZE);

	for (u32 off = 0; off < script->size; off += LOADER_ENTRY) {
		const u8 *c = cmds + off;
		const u8 *arg = c + 4;

		switch (get32(c, 0)) {
		case LOADER_ALLOCATE: {
			struct fw_file *f = loader_file(arg, false);
			u32 align = get32(arg, FW_CFG_FILE_NAME);

			if (f->data)
				fail("table-loader allocates '%s' twice", f->name);
			fw_file_load(f, align);
			break;
		}
		case LOADER_ADD_POINTER: {
			struct fw_file *dst = loader_file(arg, true);
			struct fw_file *src = loader_file(arg + FW_CFG_FILE_NAME, true);
			u32 at = get32(arg, 2 * FW_CFG_FILE_NAME);
			u8 size = get8(arg, 2 * FW_CFG_FILE_NAME + 4);
			u64 v = 0;

			if ((size != 1 && size != 2 && size != 4 && size != 8) || at > dst->size ||
			    size > dst->size - at)
				fail("table-loader: bad pointer at %u+%u in '%s'", at, size, dst->name);
			memcpy(&v, dst->data + at, size);
			v += ptr_to_pa(src->data);
			memcpy(dst->data + at, &v, size);
			break;
		}
		case LOADER_ADD_CHECKSUM: {
			struct fw_file *f = loader_file(arg, true);
			u32 at = get32(arg, FW_CFG_FILE_NAME);
			u32 start = get32(arg, FW_CFG_FILE_NAME + 4);
			u32 len = get32(arg, FW_CFG_FILE_NAME + 8);

			if (at >= f->size || start > f->size || len > f->size - start)
				fail("table-loader: bad checksum range in '%s'", f->name);
			/* The byte at @at is part of the range, as QEMU zeroed it. */
			f->data[at] += checksum(f->data + start, len);
			break;
		}
		case LOADER_WRITE_POINTER:
			/* Needs a fw_cfg DMA write (VMGENID and the like): not done. */
			printf("efiboot: table-loader WRITE_POINTER to '%.*s' skipped\n", 40,
			       (const char *)arg);
			break;
		default:
			/* Unknown commands are skipped, as SeaBIOS and OVMF do. */
			break;
		}
	}
	rsdp = fw_file("etc/acpi/rsdp");
	if (!rsdp || !rsdp->data || memcmp(rsdp->data, "RSD PTR ", 8))
		fail("the table loader built no RSDP");
	return ptr_to_pa(rsdp->data);
}

/* ---- SMBIOS from fw_cfg ------------------------------------------------- */

/*
 * QEMU's SMBIOS tables and entry point ("etc/smbios/smbios-anchor" and
 * "-tables", as SeaBIOS and OVMF take them): the entry point gets the
 * tables' address and its checksums (SMBIOS 3.0 §5.2.1 for _SM3_, 2.x
 * §5.2.1 for _SM_ and its _DMI_ intermediate part). Returns the entry
 * point's address, 0 if there is none; *v3 says which kind.
 */
static u64 build_smbios(bool *v3)
{
	struct fw_file *ep = fw_file("etc/smbios/smbios-anchor");
	struct fw_file *tables = fw_file("etc/smbios/smbios-tables");
	u8 *a;

	if (!ep || !tables)
		return 0;
	a = fw_file_load(ep, 16);
	fw_file_load(tables, 16);
	if (ep->size >= 0x18 && !memcmp(a, "_SM3_", 5) && a[6] >= 0x18 && a[6] <= ep->size) {
		put64(a, 0x10, ptr_to_pa(tables->data));
		a[5] = 0;
		a[5] = checksum(a, a[6]);
		*v3 = true;
	} else if (ep->size >= 0x1f && !memcmp(a, "_SM_", 4) && a[5] >= 0x1f && a[5] <= ep->size) {
		put32(a, 0x18, (u32)ptr_to_pa(tables->data));
		a[0x15] = 0;
		a[0x15] = checksum(a + 0x10, 0x0f);
		a[4] = 0;
		a[4] = checksum(a, a[5]);
		*v3 = false;
	} else {
		printf("efiboot: unknown SMBIOS entry point: no DMI\n");
		return 0;
	}
	return ptr_to_pa(a);
}

/* ---- SNP: the CC blob --------------------------------------------------- */

#define CC_BLOB_SEV_HDR_MAGIC 0x45444d41 /* "AMDE" */
#define CC_BLOB_SIZE 40                  /* struct cc_blob_sev_info */
#define SETUP_CC_BLOB 7                  /* arch/x86/include/uapi/asm/setup_data.h */

/*
 * Checks what the launch put in the CPUID and secrets pages, reserves them
 * in both memory maps, and builds one page with the CC blob (struct
 * cc_blob_sev_info) and, after it, the SETUP_CC_BLOB setup_data entry
 * (struct cc_setup_data: the header, then the blob's 32-bit address).
 * Returns the page's address; *setup_data is the entry's.
 */
static u64 build_cc_blob(u64 *setup_data)
{
	const u8 *cpuid = pa_to_ptr(SNP_CPUID_PAGE), *secrets = pa_to_ptr(SNP_SECRETS_PAGE);
	u64 pa = phys_alloc_pages(1);
	u8 *blob, *sd;

	if (!pa || pa + PAGE_SIZE > (1ul << 32))
		fail("no memory below 4G for the CC blob");
	if (!get32(cpuid, 0) || get32(cpuid, 0) > SNP_CPUID_COUNT_MAX)
		fail("the SNP CPUID page at %lx holds %u entries: did the launch place it there?",
		     SNP_CPUID_PAGE, get32(cpuid, 0));
	if (!get32(secrets, SNP_SECRETS_VERSION_OFF))
		fail("the SNP secrets page at %lx has no version: did the launch place it there?",
		     SNP_SECRETS_PAGE);
	region_set(SNP_CPUID_PAGE, SNP_CPUID_PAGE + PAGE_SIZE, E820_TYPE_RESERVED, EFI_RESERVED_TYPE);
	region_set(SNP_SECRETS_PAGE, SNP_SECRETS_PAGE + PAGE_SIZE, E820_TYPE_RESERVED,
		   EFI_RESERVED_TYPE);

	blob = memset(pa_to_ptr(pa), 0, PAGE_SIZE);
	put32(blob, 0, CC_BLOB_SEV_HDR_MAGIC);
	put64(blob, 8, SNP_SECRETS_PAGE);
	put32(blob, 16, PAGE_SIZE);
	put64(blob, 24, SNP_CPUID_PAGE);
	put32(blob, 32, PAGE_SIZE);

	sd = blob + 64;
	put64(sd, 0, 0);             /* next */
	put32(sd, 8, SETUP_CC_BLOB); /* type */
	put32(sd, 12, 4);            /* len */
	put32(sd, 16, (u32)pa);
	*setup_data = pa + 64;
	printf("efiboot: SNP: CPUID page %lx (%u entries), secrets page %lx (version %u), CC blob %lx\n",
	       SNP_CPUID_PAGE, get32(cpuid, 0), SNP_SECRETS_PAGE,
	       get32(secrets, SNP_SECRETS_VERSION_OFF), pa);
	return pa;
}

/* ---- the EFI system table ---------------------------------------------- */

#define EFI_SYSTEM_TABLE_SIGNATURE 0x5453595320494249ul /* "IBI SYST" */
#define EFI_2_70_SYSTEM_TABLE_REVISION ((2u << 16) | 70)
#define EFI_SYSTAB_SIZE 120 /* efi_system_table_64_t */
#define EFI_MEMDESC_SIZE 48 /* efi_memory_desc_t (40) padded as firmware does */
#define EFI_MEMDESC_VERSION 1

struct efi_guid {
	u32 a;
	u16 b, c;
	u8 d[8];
};

/* include/linux/efi.h */
static const struct efi_guid ACPI_20_TABLE_GUID = {
	0x8868e871, 0xe4f1, 0x11d3, { 0xbc, 0x22, 0x00, 0x80, 0xc7, 0x3c, 0x88, 0x81 }
};
static const struct efi_guid ACPI_TABLE_GUID = {
	0xeb9d2d30, 0x2d88, 0x11d3, { 0x9a, 0x16, 0x00, 0x90, 0x27, 0x3f, 0xc1, 0x4d }
};
static const struct efi_guid SMBIOS_TABLE_GUID = {
	0xeb9d2d31, 0x2d88, 0x11d3, { 0x9a, 0x16, 0x00, 0x90, 0x27, 0x3f, 0xc1, 0x4d }
};
static const struct efi_guid SMBIOS3_TABLE_GUID = {
	0xf2fd1544, 0x9794, 0x4a2c, { 0x99, 0x2e, 0xe5, 0xbb, 0xcf, 0x20, 0xe3, 0x94 }
};
static const struct efi_guid LINUX_EFI_UNACCEPTED_MEM_TABLE_GUID = {
	0xd5d1de3c, 0x105c, 0x44f9, { 0x9e, 0xa9, 0xbc, 0xef, 0x98, 0x12, 0x00, 0x31 }
};
static const struct efi_guid EFI_CC_BLOB_GUID = {
	0x067b1f5f, 0xcf26, 0x44c5, { 0x85, 0x54, 0x93, 0xd7, 0x77, 0x91, 0x2d, 0x42 }
};

static u32 crc32(const u8 *p, u64 len)
{
	u32 crc = ~0u;

	for (u64 i = 0; i < len; i++) {
		crc ^= p[i];
		for (int b = 0; b < 8; b++)
			crc = (crc >> 1) ^ (0xedb88320u & -(crc & 1));
	}
	return ~crc;
}

/*
 * One page: the system table, its configuration tables (efi_config_table_64_t:
 * GUID, u64 address: ACPI, SMBIOS, unaccepted memory) and the firmware
 * vendor string (UCS-2).
 */
static u64 build_efi_systab(u64 rsdp, u64 smbios, bool smbios3, const void *unaccepted,
			    u64 cc_blob)
{
	u64 pa = phys_alloc_pages(1);
	u8 *st = memset(pa_to_ptr(pa), 0, PAGE_SIZE);
	u8 *cfg = st + 128, *vendor = st + 512;
	const char *name = "cvmem efiboot";
	u32 n = 0;

	if (!pa)
		fail("no memory for the EFI system table");
	for (u64 i = 0; name[i]; i++)
		put16(vendor, 2 * i, (u8)name[i]);

	memcpy(cfg, get8(pa_to_ptr(rsdp), 15) >= 2 ? &ACPI_20_TABLE_GUID : &ACPI_TABLE_GUID, 16);
	put64(cfg, 16, rsdp);
	n++;
	if (smbios) {
		memcpy(cfg + 24 * n, smbios3 ? &SMBIOS3_TABLE_GUID : &SMBIOS_TABLE_GUID, 16);
		put64(cfg + 24 * n, 16, smbios);
		n++;
	}
	if (unaccepted) {
		memcpy(cfg + 24 * n, &LINUX_EFI_UNACCEPTED_MEM_TABLE_GUID, 16);
		put64(cfg + 24 * n, 16, ptr_to_pa(unaccepted));
		n++;
	}
	if (cc_blob) {
		memcpy(cfg + 24 * n, &EFI_CC_BLOB_GUID, 16);
		put64(cfg + 24 * n, 16, cc_blob);
		n++;
	}

	put64(st, 0, EFI_SYSTEM_TABLE_SIGNATURE);
	put32(st, 8, EFI_2_70_SYSTEM_TABLE_REVISION);
	put32(st, 12, EFI_SYSTAB_SIZE);
	put64(st, 24, ptr_to_pa(vendor)); /* fw_vendor */
	put32(st, 32, 0x10000);           /* fw_revision */
	/* con_in ... boottime (40..96): no services. */
	put32(st, 104, n);                /* nr_tables */
	put64(st, 112, ptr_to_pa(cfg));   /* tables */
	put32(st, 16, crc32(st, EFI_SYSTAB_SIZE));
	return pa;
}

static bool efi_usable(u32 efi)
{
	return efi == EFI_CONVENTIONAL_MEMORY || efi == EFI_LOADER_CODE ||
	       efi == EFI_LOADER_DATA || efi == EFI_UNACCEPTED_MEMORY ||
	       efi == EFI_ACPI_RECLAIM_MEMORY;
}

/* The EFI memory map from regions[]: 4 KiB granules, usable ranges rounded in. */
static u64 build_efi_memmap(u64 pa, u64 max, u32 *size)
{
	u8 *map = pa_to_ptr(pa);
	u64 n = 0;

	for (int i = 0; i < nregions; i++) {
		struct region r = regions[i];
		bool usable = efi_usable(r.efi);
		u64 s = usable ? ALIGN_UP(r.start, PAGE_SIZE) : ALIGN_DOWN(r.start, PAGE_SIZE);
		u64 e = usable ? ALIGN_DOWN(r.end, PAGE_SIZE) : ALIGN_UP(r.end, PAGE_SIZE);
		u8 *d = map + n * EFI_MEMDESC_SIZE;

		if (s >= e)
			continue;
		if ((n + 1) * EFI_MEMDESC_SIZE > max)
			fail("EFI memory map does not fit in %lu bytes", max);
		memset(d, 0, EFI_MEMDESC_SIZE);
		put32(d, 0, r.efi);
		put64(d, 8, s);           /* phys_addr */
		put64(d, 24, (e - s) / PAGE_SIZE);
		put64(d, 32, usable ? EFI_MEMORY_WB : 0);
		n++;
	}
	*size = (u32)(n * EFI_MEMDESC_SIZE);
	return pa;
}

/* ---- boot_params (Documentation/arch/x86/zero-page.rst, boot.rst) ------- */

#define BP_ACPI_RSDP_ADDR 0x070
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE 0x0c4
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_EFI_LOADER_SIGNATURE 0x1c0
#define BP_EFI_SYSTAB 0x1c4
#define BP_EFI_MEMDESC_SIZE 0x1c8
#define BP_EFI_MEMDESC_VERSION 0x1cc
#define BP_EFI_MEMMAP 0x1d0
#define BP_EFI_MEMMAP_SIZE 0x1d4
#define BP_EFI_SYSTAB_HI 0x1d8
#define BP_EFI_MEMMAP_HI 0x1dc
#define BP_E820_ENTRIES 0x1e8
#define BP_HDR 0x1f1
#define BP_E820_TABLE 0x2d0
#define E820_MAX_ENTRIES_ZEROPAGE 128

#define HDR_SETUP_SECTS 0x1f1
#define HDR_BOOT_FLAG 0x1fe
#define HDR_JUMP 0x200
#define HDR_HEADER 0x202
#define HDR_VERSION 0x206
#define HDR_TYPE_OF_LOADER 0x210
#define HDR_LOADFLAGS 0x211
#define HDR_RAMDISK_IMAGE 0x218
#define HDR_RAMDISK_SIZE 0x21c
#define HDR_CMD_LINE_PTR 0x228
#define HDR_INITRD_ADDR_MAX 0x22c
#define HDR_KERNEL_ALIGNMENT 0x230
#define HDR_RELOCATABLE 0x234
#define HDR_XLOADFLAGS 0x236
#define HDR_CMDLINE_SIZE 0x238
#define HDR_SETUP_DATA 0x250
#define HDR_INIT_SIZE 0x260
#define XLF_KERNEL_64 (1u << 0)
#define LOADED_HIGH (1u << 0)
#define CAN_USE_HEAP (1u << 7)

/* e820 entries from regions[], neighbours of one type merged. */
static u8 build_e820(u8 *bp)
{
	u8 n = 0;

	for (int i = 0; i < nregions; i++) {
		struct region r = regions[i];
		u8 *e;

		if (n) {
			u8 *prev = bp + BP_E820_TABLE + 20 * (n - 1);

			if (get32(prev, 16) == r.e820 && get64(prev, 0) + get64(prev, 8) == r.start) {
				put64(prev, 8, get64(prev, 8) + r.end - r.start);
				continue;
			}
		}
		if (n == E820_MAX_ENTRIES_ZEROPAGE)
			fail("more than %d e820 entries", E820_MAX_ENTRIES_ZEROPAGE);
		e = bp + BP_E820_TABLE + 20 * n++;
		put64(e, 0, r.start);
		put64(e, 8, r.end - r.start);
		put32(e, 16, r.e820);
	}
	return n;
}

/* ---- efiboot as a TD's firmware (efiboot.fd) ----------------------------- */

/*
 * boot/efiboot-fd.ld and boot/efiboot-tdvf.S; weak, as the Multiboot
 * build (efiboot.elf) has neither and never gets here.
 */
#define FD_SYM __attribute__((weak))
extern char __td_hob[] FD_SYM, __td_hob_size[] FD_SYM, __fd_size[] FD_SYM;
extern char __park_start[] FD_SYM, __park_end[] FD_SYM;
extern char efiboot_mailbox[] FD_SYM, efiboot_park_reset[] FD_SYM;
extern volatile u32 park_release FD_SYM, park_ncpus FD_SYM, park_apic_ids[MAX_CPUS] FD_SYM;

/* Where accepted memory ends in the TD HOB (EFI_RESOURCE_SYSTEM_MEMORY). */
static u64 hob_accepted_end;

#define HOB_TYPE_HANDOFF 0x0001
#define HOB_TYPE_RESOURCE_DESCRIPTOR 0x0003
#define HOB_TYPE_END_OF_HOB_LIST 0xffff
#define HOB_RESOURCE_SYSTEM_MEMORY 0x00000000
#define HOB_RESOURCE_MEMORY_UNACCEPTED 0x00000007
#define HOB_PHIT_SIZE 56
#define HOB_RESOURCE_SIZE 48

/*
 * The TD HOB (UEFI PI spec vol. 3 §5; QEMU hw/i386/tdvf-hob.c lays it out):
 * a PHIT, then resource descriptors. System memory becomes accepted RAM,
 * unaccepted memory RAM that accept_memory() accepts below the boundary.
 * The VMM wrote it and chose RCX: both are checked against the TD_HOB
 * section the image asked for, and a malformed list stops the boot.
 */
static void read_td_hob(u64 hob_pa)
{
	u64 base = ptr_to_pa(__td_hob), size = (u64)__td_hob_size, off = 0;
	const u8 *h = pa_to_ptr(base);
	int ram = 0;

	if (hob_pa != base)
		fail("the TD HOB is at %lx (RCX), not in the TD_HOB section at %lx", hob_pa, base);
	if (get16(h, 0) != HOB_TYPE_HANDOFF || get16(h, 2) < HOB_PHIT_SIZE)
		fail("the TD HOB at %lx does not start with a PHIT", base);
	for (;;) {
		u16 type, len;

		if (off + 8 > size)
			fail("the TD HOB has no end-of-list HOB within its %lx bytes", size);
		type = get16(h, off);
		len = get16(h, off + 2);
		if (type == HOB_TYPE_END_OF_HOB_LIST)
			break;
		if (len < 8 || (len & 7) || off + len > size)
			fail("the TD HOB's entry at +%lx (type %x) has length %u", off, type, len);
		if (type == HOB_TYPE_RESOURCE_DESCRIPTOR && len >= HOB_RESOURCE_SIZE) {
			u32 rtype = get32(h, off + 24);
			u64 start = get64(h, off + 32), length = get64(h, off + 40);

			if (start + length < start || (start | length) & (PAGE_SIZE - 1))
				fail("the TD HOB lists memory %lx+%lx", start, length);
			if (rtype == HOB_RESOURCE_SYSTEM_MEMORY || rtype == HOB_RESOURCE_MEMORY_UNACCEPTED) {
				region_set(start, start + length, E820_TYPE_RAM, EFI_CONVENTIONAL_MEMORY);
				ram++;
				if (rtype == HOB_RESOURCE_SYSTEM_MEMORY && start + length > hob_accepted_end)
					hob_accepted_end = start + length;
			}
		}
		off += len;
	}
	if (!ram)
		fail("the TD HOB lists no memory");
}

/*
 * In a TD started from efiboot.fd unaccepted memory begins at @boundary
 * but not below what is accepted already: the image and its sections
 * (from 1 MiB to __image_end) and the HOB's system memory.
 */
static u64 tdvf_unaccepted_start(u64 boundary)
{
	u64 low = boot_info.image_end_pa > hob_accepted_end ? boot_info.image_end_pa : hob_accepted_end;

	low = ALIGN_UP(low, UNIT_SIZE);
	return boundary < low ? low : boundary;
}

/* efiboot's arguments as firmware: the fw_cfg file opt/cvmem/efiboot. */
static void read_efiboot_args(void)
{
	static char args[256];
	struct fw_file *f;

	if (!fw_cfg_present())
		fail("no fw_cfg device: cannot load the kernel");
	fw_cfg_read_dir();
	f = fw_file("opt/cvmem/efiboot");
	if (!f)
		return;
	if (f->size >= sizeof(args))
		fail("opt/cvmem/efiboot has %u bytes, more than %zu", f->size, sizeof(args) - 1);
	fw_cfg_read(f->select, args, f->size);
	args[f->size] = 0;
	boot_set_cmdline(args);
}

/* PCI configuration mechanism #1. */
static u32 pci_read32(u32 bdf, u32 reg)
{
	outl(0x80000000u | bdf << 8 | (reg & 0xfc), 0xcf8);
	return inl(0xcfc);
}

static void pci_write32(u32 bdf, u32 reg, u32 v)
{
	outl(0x80000000u | bdf << 8 | (reg & 0xfc), 0xcf8);
	outl(v, 0xcfc);
}

#define PCI_BDF(dev, fn) ((dev) << 3 | (fn))
#define ACPI_PM_BASE 0x600 /* where SeaBIOS and OVMF put it */

/*
 * The ACPI PM registers' I/O base, as firmware sets it before it reads
 * QEMU's ACPI tables (whose FADT takes it from the chipset at that read):
 * q35's ICH9 LPC PMBASE and ACPI_CNTL.ACPI_EN (OVMF's PlatformPei), or
 * i440fx's PIIX4 PMBA and PMREGMISC. Without it the kernel cannot power
 * the VM off.
 */
static void acpi_pm_enable(void)
{
	u32 host = pci_read32(PCI_BDF(0, 0), 0);

	if (host == 0x29c08086) { /* q35 MCH: LPC at 0:1f.0 */
		pci_write32(PCI_BDF(0x1f, 0), 0x40, ACPI_PM_BASE | 1);
		pci_write32(PCI_BDF(0x1f, 0), 0x44, pci_read32(PCI_BDF(0x1f, 0), 0x44) | 0x80);
	} else if (host == 0x12378086) { /* i440fx: PIIX4 PM at 0:1.3 */
		pci_write32(PCI_BDF(1, 3), 0x40, ACPI_PM_BASE | 1);
		pci_write32(PCI_BDF(1, 3), 0x80, pci_read32(PCI_BDF(1, 3), 0x80) | 1);
	} else {
		printf("efiboot: unknown host bridge %x: ACPI PM registers left alone\n", host);
	}
}

/* ---- fw_cfg by DMA ------------------------------------------------------ */

#define FW_CFG_KERNEL_SIZE 0x08
#define FW_CFG_INITRD_SIZE 0x0b
#define FW_CFG_KERNEL_DATA 0x11
#define FW_CFG_INITRD_DATA 0x12
#define FW_CFG_CMDLINE_SIZE 0x14
#define FW_CFG_CMDLINE_DATA 0x15
#define FW_CFG_SETUP_SIZE 0x17
#define FW_CFG_SETUP_DATA 0x18
#define DMA_WINDOW_VA (4ul << 30) /* above the boot identity map */

/*
 * A device writes only shared memory of a TD: the DMA descriptor and a
 * 2 MiB bounce buffer are converted to shared (MapGPA) and mapped through
 * their shared alias at DMA_WINDOW_VA; each chunk is copied to its
 * private destination. The device is given the GPA without the shared
 * bit, as Linux's DMA API gives a TD's devices (phys_to_dma_unencrypted()).
 */
static struct {
	u64 bounce_pa, desc_pa;
	u8 *bounce;
	volatile struct fw_cfg_dma_access *desc;
	bool td;
} dma;

static void fw_cfg_dma_begin(bool td)
{
	if (!(fw_cfg_features() & FW_CFG_VERSION_DMA))
		fail("fw_cfg has no DMA interface");
	dma.td = td;
	dma.bounce_pa = phys_alloc_pages_aligned(SZ_2M / PAGE_SIZE, SZ_2M);
	dma.desc_pa = phys_alloc_pages(1);
	if (!dma.bounce_pa || !dma.desc_pa)
		fail("no memory for the fw_cfg DMA buffers");
	if (!td) {
		dma.bounce = pa_to_ptr(dma.bounce_pa);
		dma.desc = pa_to_ptr(dma.desc_pa);
		return;
	}
	if (tdx_map_gpa(dma.bounce_pa, SZ_2M, true) || tdx_map_gpa(dma.desc_pa, PAGE_SIZE, true))
		fail("MapGPA of the fw_cfg DMA buffers to shared failed");
	install_large_page(boot_pml4(), DMA_WINDOW_VA, dma.bounce_pa | tdx_shared_mask(),
			   PT_PRESENT | PT_WRITABLE);
	install_page(boot_pml4(), DMA_WINDOW_VA + SZ_2M, dma.desc_pa | tdx_shared_mask(),
		     PT_PRESENT | PT_WRITABLE);
	dma.bounce = (u8 *)DMA_WINDOW_VA;
	dma.desc = (void *)(DMA_WINDOW_VA + SZ_2M);
}

/* Reads @len bytes of item @key into @dst, 2 MiB at a time. */
static void fw_cfg_dma_item(u16 key, u8 *dst, u64 len)
{
	u32 select = (u32)key << 16 | FW_CFG_DMA_CTL_SELECT;

	while (len) {
		u32 n = len < SZ_2M ? (u32)len : (u32)SZ_2M, ctl;

		dma.desc->control = __builtin_bswap32(select | FW_CFG_DMA_CTL_READ);
		dma.desc->length = __builtin_bswap32(n);
		dma.desc->address = __builtin_bswap64(dma.bounce_pa);
		/* The high half latches; writing the low half starts the transfer. */
		outl(__builtin_bswap32((u32)(dma.desc_pa >> 32)), FW_CFG_PORT_DMA);
		outl(__builtin_bswap32((u32)dma.desc_pa), FW_CFG_PORT_DMA + 4);
		ctl = __builtin_bswap32(dma.desc->control);
		if (ctl)
			fail("fw_cfg DMA read of item %x: control %x", key, ctl);
		memcpy(dst, dma.bounce, n);
		dst += n;
		len -= n;
		select = 0; /* go on where the last read ended */
	}
}

/* The buffers back to private and accepted, as RAM the kernel may use. */
static void fw_cfg_dma_end(void)
{
	if (!dma.td)
		return;
	if (tdx_map_gpa(dma.bounce_pa, SZ_2M, false) || tdx_map_gpa(dma.desc_pa, PAGE_SIZE, false))
		fail("MapGPA of the fw_cfg DMA buffers back to private failed");
	td_accept(dma.bounce_pa, dma.bounce_pa + SZ_2M);
	td_accept(dma.desc_pa, dma.desc_pa + PAGE_SIZE);
}

static u32 fw_cfg_u32(u16 key)
{
	u8 b[4];

	fw_cfg_read(key, b, 4);
	return get32(b, 0);
}

/*
 * The kernel QEMU's -kernel put in fw_cfg (x86_load_linux(): the setup
 * sectors with the header, then the protected-mode part), put together
 * again as one bzImage in mods[0]; the initramfs in mods[1]. Returns how
 * many there are; *cmdline is -append.
 */
static int load_fw_cfg_kernel(struct module *mods, bool td, const char **cmdline)
{
	static char args[4096];
	u32 setup = fw_cfg_u32(FW_CFG_SETUP_SIZE), kernel = fw_cfg_u32(FW_CFG_KERNEL_SIZE);
	u32 initrd = fw_cfg_u32(FW_CFG_INITRD_SIZE), clen = fw_cfg_u32(FW_CFG_CMDLINE_SIZE);
	u64 pa;
	int n = 1;

	if (!setup || !kernel)
		fail("fw_cfg holds no kernel: give one with -kernel");
	if (clen >= sizeof(args))
		fail("the kernel command line has %u bytes, more than %zu", clen, sizeof(args) - 1);
	fw_cfg_read(FW_CFG_CMDLINE_DATA, args, clen);
	args[clen] = 0;
	*cmdline = args;

	fw_cfg_dma_begin(td);
	pa = phys_alloc_pages(((u64)setup + kernel + PAGE_SIZE - 1) / PAGE_SIZE);
	if (!pa)
		fail("no memory for the kernel (%u bytes)", setup + kernel);
	fw_cfg_dma_item(FW_CFG_SETUP_DATA, pa_to_ptr(pa), setup);
	fw_cfg_dma_item(FW_CFG_KERNEL_DATA, pa_to_ptr(pa + setup), kernel);
	mods[0] = (struct module){ pa, pa + setup + kernel, "" };
	if (initrd) {
		pa = phys_alloc_pages(((u64)initrd + PAGE_SIZE - 1) / PAGE_SIZE);
		if (!pa)
			fail("no memory for the initramfs (%u bytes)", initrd);
		fw_cfg_dma_item(FW_CFG_INITRD_DATA, pa_to_ptr(pa), initrd);
		mods[1] = (struct module){ pa, pa + initrd, "" };
		n = 2;
	}
	fw_cfg_dma_end();
	return n;
}

/* ---- the MADT multiprocessor wakeup structure --------------------------- */

#define ACPI_HDR 36
#define MADT_ENTRIES 44
#define MADT_LOCAL_APIC 0
#define MADT_LOCAL_X2APIC 9
#define MADT_MP_WAKEUP 0x10
#define MADT_MP_WAKEUP_SIZE_V1 24
#define MADT_MP_WAKEUP_VERSION_V1 1

/* The RSDT's or XSDT's pointer to the table with @sig: its address, 0 if none. */
static u8 *acpi_sdt_slot(u8 *sdt, const char *sig, u32 width)
{
	u32 len = get32(sdt, 4);

	for (u32 off = ACPI_HDR; off + width <= len; off += width) {
		u64 pa = 0;

		memcpy(&pa, sdt + off, width);
		if (pa && !memcmp(pa_to_ptr(pa), sig, 4))
			return sdt + off;
	}
	return NULL;
}

/*
 * Parks the APs: reads the vCPUs' APIC IDs from QEMU's MADT (its processor
 * entries in vCPU index order, as build_madt() lists possible_cpus), so
 * that each AP knows which mailbox requests are its own, and replaces the
 * MADT by a copy with a multiprocessor wakeup structure, version 1 (ACPI
 * 6.5 §5.2.12.19: the mailbox address, and the reset vector Linux sends a
 * CPU it offlines to, acpi_mp_setup_reset()). Then lets the APs into the
 * mailbox loop (boot/efiboot-tdvf.S).
 */
static void park_aps(u64 rsdp_pa)
{
	u8 *rsdp = pa_to_ptr(rsdp_pa), *slots[2] = { NULL, NULL }, *madt = NULL, *copy;
	u32 widths[2] = { 4, 8 }, len, n = 0;
	u64 pa;

	if (get32(rsdp, 16))
		slots[0] = acpi_sdt_slot(pa_to_ptr(get32(rsdp, 16)), "APIC", 4);
	if (get8(rsdp, 15) >= 2 && get64(rsdp, 24))
		slots[1] = acpi_sdt_slot(pa_to_ptr(get64(rsdp, 24)), "APIC", 8);
	for (int i = 0; i < 2; i++)
		if (slots[i]) {
			u64 p = 0;

			memcpy(&p, slots[i], widths[i]);
			madt = pa_to_ptr(p);
		}
	if (!madt)
		fail("QEMU's ACPI tables have no MADT");
	len = get32(madt, 4);
	for (u32 off = MADT_ENTRIES; off + 2 <= len && get8(madt, off + 1) >= 2;
	     off += get8(madt, off + 1)) {
		u8 type = get8(madt, off);

		if (n == MAX_CPUS)
			break;
		if (type == MADT_LOCAL_APIC)
			park_apic_ids[n++] = get8(madt, off + 3);
		else if (type == MADT_LOCAL_X2APIC)
			park_apic_ids[n++] = get32(madt, off + 4);
	}

	pa = phys_alloc_pages((len + MADT_MP_WAKEUP_SIZE_V1 + PAGE_SIZE - 1) / PAGE_SIZE);
	if (!pa)
		fail("no memory for the MADT");
	copy = memcpy(pa_to_ptr(pa), madt, len);
	memset(copy + len, 0, MADT_MP_WAKEUP_SIZE_V1);
	put8(copy, len, MADT_MP_WAKEUP);
	put8(copy, len + 1, MADT_MP_WAKEUP_SIZE_V1);
	put16(copy, len + 2, MADT_MP_WAKEUP_VERSION_V1);
	put64(copy, len + 8, ptr_to_pa(efiboot_mailbox));
	put64(copy, len + 16, ptr_to_pa(efiboot_park_reset));
	put32(copy, 4, len + MADT_MP_WAKEUP_SIZE_V1);
	put8(copy, 9, 0);
	put8(copy, 9, checksum(copy, len + MADT_MP_WAKEUP_SIZE_V1));
	for (int i = 0; i < 2; i++) {
		u8 *sdt;

		if (!slots[i])
			continue;
		memcpy(slots[i], &pa, widths[i]);
		sdt = pa_to_ptr(i ? get64(rsdp, 24) : get32(rsdp, 16));
		put8(sdt, 9, 0);
		put8(sdt, 9, checksum(sdt, get32(sdt, 4)));
	}

	park_ncpus = n;
	barrier();
	park_release = 1;
	printf("efiboot: TDVF: %u vCPUs in the MADT; APs wait in the mailbox at %lx (MADT %lx)\n", n,
	       ptr_to_pa(efiboot_mailbox), pa);
}

/* The boot GDT of the 64-bit protocol: __BOOT_CS = 0x10, __BOOT_DS = 0x18. */
static const u64 boot_gdt[] __attribute__((aligned(16))) = {
	0,
	0,
	0x00af9a000000ffff, /* 0x10: 64-bit code */
	0x00cf92000000ffff, /* 0x18: data */
};

static __noreturn void enter_kernel(u64 entry, u64 boot_params)
{
	struct {
		u16 limit;
		u64 base;
	} __attribute__((packed)) gdtr = { sizeof(boot_gdt) - 1, ptr_to_pa(boot_gdt) };

	asm volatile("cli\n\t"
		     "lgdt %0\n\t"
		     "movl $0x18, %%eax\n\t"
		     "movl %%eax, %%ds\n\t"
		     "movl %%eax, %%es\n\t"
		     "movl %%eax, %%ss\n\t"
		     "movl %%eax, %%fs\n\t"
		     "movl %%eax, %%gs\n\t"
		     "pushq $0x10\n\t"
		     "pushq %1\n\t"
		     "lretq"
		     :
		     : "m"(gdtr), "r"(entry), "S"(boot_params)
		     : "rax", "memory");
	__builtin_unreachable();
}

int main(void)
{
	struct module mods[2];
	u64 boundary, unaccepted_bytes = 0, load, init_size, align, rsdp, bp_pa, cmd_pa;
	u64 memmap_pa, systab, fw_start, fw_end, setup_bytes, initrd = 0, initrd_size = 0, smbios;
	u64 cc_blob = 0, cc_setup_data = 0;
	const u8 *image;
	void *unaccepted = NULL;
	u8 *bp;
	char *cmd;
	const char *args = "";
	u32 hdr_len, memmap_size;
	bool td = is_tdx_guest(), smbios3 = false, cvm, tdvf = boot_info.td_hob_pa != 0;
	extern char __image_start[], __image_end[];
	int nmods = 0;

	if (tdvf) {
		/* Started as a TD's firmware (efiboot.fd): see the top. */
		if (!td)
			fail("efiboot.fd runs as a TD's firmware only");
		read_efiboot_args();
		read_td_hob(boot_info.td_hob_pa);
		region_set(0x100000000ul - (u64)__fd_size, 0x100000000ul, E820_TYPE_RESERVED,
			   EFI_RESERVED_TYPE);
	} else {
		read_multiboot_map(boot_info.mbi_pa);
		nmods = read_modules(boot_info.mbi_pa, mods, 2);
		if (nmods < 1)
			fail("no kernel: give it as the first -initrd module (\"vmlinuz ARGS,initrd\")");
		/* The command line: module 1's string after its file name. */
		args = mods[0].string;
		while (*args && *args != ' ')
			args++;
		while (*args == ' ')
			args++;
	}

	boundary = cmdline_u64("accept", ~0ul);
	if (boundary != ~0ul && (boundary & (UNIT_SIZE - 1)))
		fail("accept=%lx is not a multiple of 2M", boundary);

	/*
	 * In a TD or an SNP guest, first make RAM below the boundary usable:
	 * everything below allocates from it.
	 */
	snp = is_snp_guest();
	cvm = td || snp;
	if (tdvf) {
		boundary = tdvf_unaccepted_start(boundary);
		unaccepted_bytes = accept_memory(boundary);
		nmods = load_fw_cfg_kernel(mods, td, &args);
	} else if (cvm) {
		if (boundary != ~0ul)
			boundary = td ? td_unaccepted_start(boundary) : snp_unvalidated_start(boundary);
		unaccepted_bytes = accept_memory(boundary);
	} else if (boundary != ~0ul)
		printf("efiboot: neither a TD nor an SNP guest: accept=%lx has no effect\n", boundary);

	image = pa_to_ptr(mods[0].start);
	if (mods[0].end - mods[0].start < 0x1000 || get16(image, HDR_BOOT_FLAG) != 0xaa55 ||
	    memcmp(image + HDR_HEADER, "HdrS", 4))
		fail("module 1 is not a bzImage (no HdrS header)");
	if (get16(image, HDR_VERSION) < 0x20c || !(get16(image, HDR_XLOADFLAGS) & XLF_KERNEL_64) ||
	    !get8(image, HDR_RELOCATABLE))
		fail("the kernel has no 64-bit entry (boot protocol %x, xloadflags %x)",
		     get16(image, HDR_VERSION), get16(image, HDR_XLOADFLAGS));

	/* The loader image itself: the kernel may not land on it early. */
	region_set(ptr_to_pa(__image_start), ALIGN_UP(ptr_to_pa(__image_end), PAGE_SIZE),
		   E820_TYPE_RAM, EFI_LOADER_CODE);
	/*
	 * As firmware: the park area (the mailbox, the APs' loop and page
	 * tables) stays the firmware's while the OS runs, ACPI NVS as OVMF
	 * types it, which a TD's kernel maps private (ioremap of ACPI NVS is
	 * encrypted: __ioremap_check_encrypted()).
	 */
	if (tdvf) {
		region_set(ptr_to_pa(__park_start), ptr_to_pa(__park_end), E820_TYPE_NVS,
			   EFI_ACPI_MEMORY_NVS);
		acpi_pm_enable();
	}

	/*
	 * Firmware data, all in one run of the bump allocator: typed ACPI.
	 * QEMU's tables take a few hundred KiB; in a TD they must land in
	 * accepted memory.
	 */
	fw_start = phys_alloc_pages(0);
	if (cvm && fw_start + SZ_2M > boundary)
		fail("no room for the firmware tables below accept=%lx (free memory starts at %lx)",
		     boundary, fw_start);
	rsdp = build_acpi_tables();
	if (tdvf)
		park_aps(rsdp);
	smbios = build_smbios(&smbios3);
	if (unaccepted_bytes)
		unaccepted = build_unaccepted_table(boundary);
	if (snp)
		cc_blob = build_cc_blob(&cc_setup_data);
	systab = build_efi_systab(rsdp, smbios, smbios3, unaccepted, cc_blob);
	memmap_pa = phys_alloc_pages(2);
	bp_pa = phys_alloc_pages(1);
	cmd_pa = phys_alloc_pages(1);
	if (!memmap_pa || !bp_pa || !cmd_pa)
		fail("out of memory for boot_params");
	fw_end = phys_alloc_pages(0);
	region_set(fw_start, fw_end, E820_TYPE_ACPI, EFI_ACPI_RECLAIM_MEMORY);

	/* boot_params: the bzImage's setup header, then what a loader fills in. */
	bp = memset(pa_to_ptr(bp_pa), 0, PAGE_SIZE);
	hdr_len = 0x202 + get8(image, HDR_JUMP + 1) - BP_HDR;
	memcpy(bp + BP_HDR, image + BP_HDR, hdr_len);
	put8(bp, HDR_TYPE_OF_LOADER, 0xff);
	put8(bp, HDR_LOADFLAGS, (get8(bp, HDR_LOADFLAGS) | LOADED_HIGH) & ~CAN_USE_HEAP);

	/* The protected-mode kernel, at its alignment, in accepted RAM. */
	setup_bytes = ((u64)(get8(image, HDR_SETUP_SECTS) ?: 4) + 1) * 512;
	init_size = get32(image, HDR_INIT_SIZE);
	align = get32(image, HDR_KERNEL_ALIGNMENT);
	if (setup_bytes >= mods[0].end - mods[0].start || init_size < mods[0].end - mods[0].start - setup_bytes)
		fail("the bzImage's sizes do not add up (setup %lu, init_size %lu)", setup_bytes, init_size);
	load = phys_alloc_pages_aligned((init_size + PAGE_SIZE - 1) / PAGE_SIZE, align);
	if (!load || !is_ram(load, load + init_size) || (cvm && load + init_size > boundary))
		fail("no room for the kernel (%lu bytes at %lx alignment) in accepted RAM%s", init_size,
		     align, cvm && boundary != ~0ul ? ": raise accept=" : "");
	memcpy(pa_to_ptr(load), image + setup_bytes, mods[0].end - mods[0].start - setup_bytes);
	region_set(load, load + init_size, E820_TYPE_RAM, EFI_LOADER_DATA);

	/* The initramfs stays where QEMU or fw_cfg put it (accepted). */
	if (nmods > 1) {
		initrd = mods[1].start;
		initrd_size = mods[1].end - mods[1].start;
		if (initrd + initrd_size - 1 > get32(image, HDR_INITRD_ADDR_MAX))
			fail("the initramfs at %lx lies above the kernel's initrd_addr_max", initrd);
		region_set(ALIGN_DOWN(initrd, PAGE_SIZE), ALIGN_UP(initrd + initrd_size, PAGE_SIZE),
			   E820_TYPE_RAM, EFI_LOADER_DATA);
	}
	put32(bp, HDR_RAMDISK_IMAGE, (u32)initrd);
	put32(bp, HDR_RAMDISK_SIZE, (u32)initrd_size);
	put32(bp, BP_EXT_RAMDISK_IMAGE, (u32)(initrd >> 32));
	put32(bp, BP_EXT_RAMDISK_SIZE, (u32)(initrd_size >> 32));

	cmd = pa_to_ptr(cmd_pa);
	snprintf(cmd, PAGE_SIZE, "%s%sefi=noruntime", args, *args ? " " : "");
	if (strlen(cmd) > get32(image, HDR_CMDLINE_SIZE))
		fail("the kernel command line is longer than its cmdline_size %u",
		     get32(image, HDR_CMDLINE_SIZE));
	put32(bp, HDR_CMD_LINE_PTR, (u32)cmd_pa);
	put32(bp, BP_EXT_CMD_LINE_PTR, (u32)(cmd_pa >> 32));

	put64(bp, BP_ACPI_RSDP_ADDR, rsdp);
	put64(bp, HDR_SETUP_DATA, cc_setup_data);
	put8(bp, BP_E820_ENTRIES, build_e820(bp));
	build_efi_memmap(memmap_pa, 2 * PAGE_SIZE, &memmap_size);
	memcpy(bp + BP_EFI_LOADER_SIGNATURE, "EL64", 4);
	put32(bp, BP_EFI_SYSTAB, (u32)systab);
	put32(bp, BP_EFI_SYSTAB_HI, (u32)(systab >> 32));
	put32(bp, BP_EFI_MEMDESC_SIZE, EFI_MEMDESC_SIZE);
	put32(bp, BP_EFI_MEMDESC_VERSION, EFI_MEMDESC_VERSION);
	put32(bp, BP_EFI_MEMMAP, (u32)memmap_pa);
	put32(bp, BP_EFI_MEMMAP_HI, (u32)(memmap_pa >> 32));
	put32(bp, BP_EFI_MEMMAP_SIZE, memmap_size);

	printf("efiboot: kernel %lx (+%lx), initrd %lx (+%lx), ACPI RSDP %lx, EFI system table %lx\n",
	       load, init_size, initrd, initrd_size, rsdp, systab);
	if (snp)
		printf("efiboot: SNP: validated %lu pages, %lu were already; %lu MiB left unaccepted above %lx\n",
		       accepted_frames, already_accepted_frames, unaccepted_bytes >> 20,
		       boundary == ~0ul ? ram_end() : boundary);
	if (td)
		printf("efiboot: TD: accepted %lu pages, %lu were already; %lu MiB left unaccepted above %lx; %lu port I/O #VEs\n",
		       accepted_frames, already_accepted_frames, unaccepted_bytes >> 20,
		       boundary == ~0ul ? ram_end() : boundary, tdx_ve_count(EXIT_REASON_IO_INSTRUCTION));
	printf("efiboot: command line: %s\n", cmd);
	enter_kernel(load + 0x200, bp_pa);
}
