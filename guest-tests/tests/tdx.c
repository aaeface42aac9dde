/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tdx: the TDX guest ABI as a TD sees it under vm-type=tdx, written against
 * Linux's arch/x86/coco/tdx/tdx.c and the TDX module / GHCI specs.
 *
 * Run with accept=64M (memory above 64 MiB starts unaccepted),
 * td-attributes=0 (SEPT_VE_DISABLE clear: a PENDING page gives #VE) and
 * map-gpa-chunk=2M (MapGPA answers RETRY after each 2 MiB).
 *
 * Port I/O and HLT raise #VE in the TD (the runtime emulates them, tdx.c),
 * so the runtime's #VE entry reads the VE information of every #VE before
 * anything prints; after an ASM_TRY'd #VE a test gets it from
 * tdx_veinfo_get().
 */
#include "libcflat.h"
#include "fw_cfg.h"
#include "tdx.h"

#define SZ_2M (2ul << 20)
/* Unaccepted memory the test owns: above the accept=64M boundary. */
#define PENDING_BASE (128ul << 20)
/* Where shared aliases are mapped: above the 4 GiB identity map. */
#define SHARED_VA 0x200000000ul

static u64 shared_bit;

/* Maps @npages at @pa through the shared alias at SHARED_VA + @pa. */
static void *map_shared(u64 pa, u64 npages)
{
	for (u64 i = 0; i < npages; i++)
		install_page(boot_pml4(), SHARED_VA + pa + i * PAGE_SIZE,
			     (pa + i * PAGE_SIZE) | shared_bit, PT_PRESENT | PT_WRITABLE);
	return (void *)(SHARED_VA + pa);
}

static u32 dma_read(struct fw_cfg_dma_access *desc, u64 desc_pa, u64 buf_pa, u32 len);

static u64 status_class(u64 st)
{
	return st & 0xffffffff00000000ul;
}

/* What the TDX module fixes about the vCPU, and KVM's paravirtual leaves. */
static void test_cpu(void)
{
	struct cpuid c = cpuid(0);
	char vendor[13], kvm[13];

	memcpy(vendor, &c.b, 4);
	memcpy(vendor + 4, &c.d, 4);
	memcpy(vendor + 8, &c.c, 4);
	vendor[12] = '\0';
	report(!strcmp(vendor, "GenuineIntel"), "CPUID 0: vendor %s", vendor);
	report(cpuid(1).c & (1u << 31), "CPUID 1: hypervisor bit");
	c = cpuid(0x40000000);
	memcpy(kvm, &c.b, 4);
	memcpy(kvm + 4, &c.c, 4);
	memcpy(kvm + 8, &c.d, 4);
	kvm[12] = '\0';
	report(c.a == 0x40000001 && !strcmp(kvm, "KVMKVMKVM"), "CPUID 0x40000000: KVM");
	c = cpuid(0x40000001);
	report(!c.a && !c.b && !c.c && !c.d, "CPUID 0x40000001: no paravirtual feature");
	/* Not QEMU's highest leaf repeated (QEMU has no leaf 0x20). */
	c = cpuid(0x20);
	report(!c.a && !c.b && !c.c && !c.d, "CPUID 0x20 reads zero");
	/* KVM's tdx_vcpu_init(): a TD's local APIC starts in x2APIC mode. */
	report((rdmsr(0x1b) & 0xc00) == 0xc00, "IA32_APIC_BASE %lx: x2APIC on", rdmsr(0x1b));
}

static void test_identity(void)
{
	struct tdx_module_args a = {};
	u64 st;

	report(is_tdx_guest(), "CPUID 0x21 says IntelTDX");
	report(cpuid(0).a >= 0x21, "CPUID 0 reports leaf 0x21");
	st = tdcall(TDG_VP_INFO, &a);
	report(st == 0 && (a.rcx & 0x3f) == 48, "TDG.VP.INFO: GPAW %lu", a.rcx & 0x3f);
	report(a.rdx == 0, "TDG.VP.INFO: ATTRIBUTES %lx (td-attributes=0)", a.rdx);
	report((u32)a.r8 == 1 && (a.r8 >> 32) == 1 && (u32)a.r9 == 0,
	       "TDG.VP.INFO: 1 of 1 vCPUs, index 0");
	report(tdx_shared_mask() == 1ul << 47, "shared bit 47");
	test_cpu();
}

static void test_accept(void)
{
	volatile u64 *p = pa_to_ptr(PENDING_BASE);
	u64 st;

	report_prefix_push("accept");
	st = tdx_accept_page(PENDING_BASE, 0);
	report(st == 0, "4K accept: status %lx", st);
	report(p[0] == 0 && p[511] == 0, "an accepted page reads zero");
	p[0] = 0x1234;
	report(p[0] == 0x1234, "and keeps what is written");
	st = tdx_accept_page(PENDING_BASE, 0);
	report(status_class(st) == TDX_PAGE_ALREADY_ACCEPTED && p[0] == 0x1234,
	       "double accept: TDX_PAGE_ALREADY_ACCEPTED %lx, content kept", st);
	st = tdx_accept_page(PENDING_BASE, 1);
	report(status_class(st) == TDX_PAGE_SIZE_MISMATCH,
	       "2M accept over a 4K page: TDX_PAGE_SIZE_MISMATCH %lx", st);
	st = tdx_accept_page(PENDING_BASE + SZ_2M, 1);
	report(status_class(st) == TDX_PAGE_SIZE_MISMATCH,
	       "2M accept: KVM maps private memory at 4K, so size mismatch %lx", st);
	st = tdx_accept_page(PENDING_BASE + 0x800, 0);
	report(status_class(st) == TDX_OPERAND_INVALID, "misaligned: TDX_OPERAND_INVALID");
	st = tdx_accept_page((PENDING_BASE + 0x1000) | shared_bit, 0);
	report(status_class(st) == TDX_OPERAND_INVALID, "shared GPA: TDX_OPERAND_INVALID");
	st = tdx_accept_page(PENDING_BASE | 3, 0);
	report(status_class(st) == TDX_OPERAND_INVALID, "level 3: TDX_OPERAND_INVALID");
	report_prefix_pop();
}

static void test_ve(void)
{
	u64 gpa = PENDING_BASE + 0x5000;
	volatile u64 *p = pa_to_ptr(gpa);
	struct tdx_module_args a = {};
	u64 v = 0, st;

	report_prefix_push("#VE");
	asm volatile(ASM_TRY("1f") "movq (%1), %0\n1:" : "=r"(v) : "r"(p) : "memory");
	report(exception_vector() == VE_VECTOR, "a PENDING page gives #VE (vector %d)",
	       exception_vector());
	/* What the runtime's #VE entry read with TDG.VP.VEINFO.GET. */
	st = tdx_veinfo_get(&a);
	report(st == 0 && a.rcx == 48, "VE info: EPT violation (reason %lu)", a.rcx);
	report(a.r9 == gpa, "VE info: GPA %lx", a.r9);
	report(a.r8 == (u64)p, "VE info: linear address %lx", a.r8);
	report((a.rdx & 7) == 1 && (a.rdx & (1 << 7)), "VE info: a read, GLA valid (%lx)", a.rdx);
	st = tdcall(TDG_VP_VEINFO_GET, &a);
	report(st == TDX_NO_VALID_VE_INFO, "read once: then TDX_NO_VALID_VE_INFO");
	report(tdx_accept_page(gpa, 0) == 0 && *p == 0, "accepted, the page is usable");
	report_prefix_pop();
	(void)v;
}

static void test_map_gpa(void)
{
	u64 pa = PENDING_BASE + 4 * SZ_2M;
	u64 npages = (3 * SZ_2M) / PAGE_SIZE;
	volatile u8 *priv = pa_to_ptr(pa);
	volatile u8 *shared;
	struct fw_cfg_dma_access *d;
	struct tdx_module_args a = {};
	u64 st;

	report_prefix_push("MapGPA");
	for (u64 i = 0; i < npages; i++)
		tdx_accept_page(pa + i * PAGE_SIZE, 0);
	memset((void *)priv, 0x5a, 3 * SZ_2M);

	/* One call: RETRY after the first 2 MiB, with R11 = where to go on. */
	a.r10 = 0;
	a.r11 = TDVMCALL_MAP_GPA;
	a.r12 = pa | shared_bit;
	a.r13 = 3 * SZ_2M;
	st = tdvmcall(&a);
	report(st == TDVMCALL_STATUS_RETRY && a.r11 == ((pa + SZ_2M) | shared_bit),
	       "3 MiB+: RETRY, resume at %lx", a.r11);
	st = tdx_map_gpa(pa + SZ_2M, 2 * SZ_2M, true);
	report(st == 0, "the rest, RETRY honoured: status %lx", st);

	shared = map_shared(pa, npages);
	report(all_bytes(shared, 3 * SZ_2M, 0), "shared alias: private content is gone");
	memset((void *)shared, 0x33, 3 * SZ_2M);
	report(all_bytes(shared, 3 * SZ_2M, 0x33), "shared data stays");

	/* A device reaches shared memory, not private. */
	d = (void *)(shared + 2 * SZ_2M);
	st = dma_read(d, pa + 2 * SZ_2M, pa + PAGE_SIZE, 4);
	report(st == 0 && !memcmp((void *)(shared + PAGE_SIZE), "QEMU", 4),
	       "a device writes a shared page");

	/* Back to private: contents gone, and the pages must be accepted. */
	st = tdx_map_gpa(pa, 2 * SZ_2M, false);
	report(st == 0, "back to private: status %lx", st);
	asm volatile(ASM_TRY("1f") "movb (%0), %%al\n1:" : : "r"(priv) : "rax", "memory");
	report(exception_vector() == VE_VECTOR, "converted pages must be accepted again (#VE)");
	tdx_veinfo_get(&a);
	for (u64 i = 0; i < 2 * SZ_2M / PAGE_SIZE; i++)
		tdx_accept_page(pa + i * PAGE_SIZE, 0);
	report(all_bytes(priv, 2 * SZ_2M, 0), "accepted again: shared content is gone");
	memset((void *)(priv + PAGE_SIZE), 0x44, 8);
	st = dma_read(d, pa + 2 * SZ_2M, pa + PAGE_SIZE, 4);
	report(all_bytes(priv + PAGE_SIZE, 8, 0x44), "a device cannot write a private page");

	/* KVM's operand checks. */
	report(tdx_map_gpa(pa + 8, PAGE_SIZE, true) == TDVMCALL_STATUS_INVALID_OPERAND,
	       "misaligned: INVALID_OPERAND");
	report(tdx_map_gpa(pa, 0, true) == TDVMCALL_STATUS_INVALID_OPERAND, "empty: INVALID_OPERAND");
	report(tdx_map_gpa(1ul << 48, PAGE_SIZE, false) == TDVMCALL_STATUS_INVALID_OPERAND,
	       "beyond GPAW: INVALID_OPERAND");
	report(tdx_map_gpa(0xfec00000ul, PAGE_SIZE, false) == TDVMCALL_STATUS_INVALID_OPERAND,
	       "MMIO cannot become private");
	report(tdx_map_gpa(0xfec00000ul, PAGE_SIZE, true) == 0, "MMIO may be declared shared");
	report_prefix_pop();
}

/* fw_cfg DMA with a descriptor at @desc (mapped at @desc_pa) into @buf_pa. */
static u32 dma_read(struct fw_cfg_dma_access *desc, u64 desc_pa, u64 buf_pa, u32 len)
{
	desc->control = __builtin_bswap32((u32)FW_CFG_SIGNATURE << 16 | FW_CFG_DMA_CTL_SELECT |
					  FW_CFG_DMA_CTL_READ);
	desc->length = __builtin_bswap32(len);
	desc->address = __builtin_bswap64(buf_pa);
	outl(__builtin_bswap32(desc_pa >> 32), FW_CFG_PORT_DMA);
	outl(__builtin_bswap32((u32)desc_pa), FW_CFG_PORT_DMA + 4);
	return __builtin_bswap32(((volatile struct fw_cfg_dma_access *)desc)->control);
}

struct seen_ve {
	int n;
	u64 status, rip, reason, qual, len, gla, gpa;
};

static struct seen_ve seen;
static void test_ve_handler(struct ex_regs *regs);

static void test_metadata(void)
{
	struct tdx_module_args a = {};
	u64 st;

	report_prefix_push("metadata");
	struct tdx_vp_info info = tdx_vp_info();
	u64 gpaw52 = info.gpaw == 52 ? TDCS_CONFIG_GPAW : 0;
	int n;

	a.rdx = TDCS_CONFIG_FLAGS;
	st = tdcall(TDG_VM_RD, &a);
	/* GPAW for 52 bits; no NO_RBP_MOD (cvmem does not model it, docs/tdx.md). */
	report(st == 0 && a.r8 == gpaw52, "CONFIG_FLAGS: GPAW only, no FLEXIBLE_PENDING_VE (%lx)",
	       a.r8);
	a = (struct tdx_module_args){ .rdx = TDCS_GPAW };
	report(tdcall(TDG_VM_RD, &a) == 0 && a.r8 == !!gpaw52, "GPAW as TDG.VP.INFO");
	a = (struct tdx_module_args){ .rdx = TDCS_ATTRIBUTES };
	report(tdcall(TDG_VM_RD, &a) == 0 && a.r8 == info.attributes, "ATTRIBUTES as TDG.VP.INFO");
	a = (struct tdx_module_args){ .rdx = TDCS_MAX_VCPUS };
	st = tdcall(TDG_VM_RD, &a);
	report(st == 0 && a.r8 == info.max_vcpus, "MAX_VCPUS as TDG.VP.INFO (%lu)", a.r8);
	a = (struct tdx_module_args){ .rdx = TDCS_NUM_VCPUS };
	report(tdcall(TDG_VM_RD, &a) == 0 && a.r8 == info.num_vcpus, "NUM_VCPUS as TDG.VP.INFO");
	a = (struct tdx_module_args){ .rdx = TDCS_XFAM };
	st = tdcall(TDG_VM_RD, &a);
	report(st == 0 && (a.r8 & 3) == 3, "XFAM %lx: x87 and SSE", a.r8);
	a = (struct tdx_module_args){ .rdx = TDCS_EPTP };
	st = tdcall(TDG_VM_RD, &a);
	report(st == TDX_METADATA_FIELD_NOT_READABLE, "EPTP: not readable %lx", st);
	a = (struct tdx_module_args){ .rdx = TDCS_EPTP, .r8 = 0, .r9 = -1ul };
	st = tdcall(TDG_VM_WR, &a);
	report(st == TDX_METADATA_FIELD_NOT_WRITABLE, "EPTP: not writable %lx", st);
	/* Version 1 walks every guest-readable element (90 in TDX module 1.5
	 * with TOPOLOGY_ENUM_CONFIGURED). */
	a = (struct tdx_module_args){ .rdx = -1ul };
	st = tdcall(TDG_VM_RD | TDG_VM_RD_VERSION1, &a);
	for (n = 0; st == TDX_METADATA_FIRST_FIELD_ID_IN_CONTEXT || (st == 0 && a.rdx != -1ul);
	     n++) {
		a = (struct tdx_module_args){ .rdx = a.rdx };
		st = tdcall(TDG_VM_RD | TDG_VM_RD_VERSION1, &a);
	}
	report(st == 0 && n == 90, "version 1 enumerates 90 readable elements (%d, %lx)", n, st);
	a = (struct tdx_module_args){ .rdx = TDCS_TD_CTLS };
	st = tdcall(TDG_VM_WR | TDG_VM_RD_VERSION1, &a);
	report(st == TDX_OPERAND_INVALID, "TDG.VM.WR has no version 1: %lx", st);
	a = (struct tdx_module_args){ .rdx = TDCS_TOPOLOGY_ENUM_CONFIGURED };
	report(tdcall(TDG_VM_RD, &a) == 0 && a.r8 == 1, "TOPOLOGY_ENUM_CONFIGURED");
	a = (struct tdx_module_args){ .rdx = TDCS_TD_CTLS, .r8 = TD_CTLS_ENUM_TOPOLOGY,
				      .r9 = TD_CTLS_ENUM_TOPOLOGY };
	st = tdcall(TDG_VM_WR, &a);
	report(st == 0 && a.r8 == 0, "TD_CTLS.ENUM_TOPOLOGY written (old %lx)", a.r8);
	a = (struct tdx_module_args){ .rdx = TDCS_TD_CTLS };
	report(tdcall(TDG_VM_RD, &a) == 0 && a.r8 == TD_CTLS_ENUM_TOPOLOGY, "and read back");
	a = (struct tdx_module_args){ .rdx = TDCS_CONFIG_FLAGS, .r8 = 2, .r9 = 2 };
	st = tdcall(TDG_VM_WR, &a);
	report(st == TDX_METADATA_FIELD_NOT_WRITABLE, "CONFIG_FLAGS is not writable: %lx", st);
	/* Linux 6.14+ reduce_unnecessary_ve(): REDUCE_VE brings VIRT_CPUID2. */
	a = (struct tdx_module_args){ .rdx = TDCS_TD_CTLS, .r8 = TD_CTLS_REDUCE_VE,
				      .r9 = TD_CTLS_REDUCE_VE };
	st = tdcall(TDG_VM_WR, &a);
	report(st == 0 && a.r8 == TD_CTLS_ENUM_TOPOLOGY, "TD_CTLS.REDUCE_VE written: %lx", st);
	a = (struct tdx_module_args){ .rdx = TDCS_TD_CTLS };
	report(tdcall(TDG_VM_RD, &a) == 0 &&
	       a.r8 == (TD_CTLS_ENUM_TOPOLOGY | TD_CTLS_VIRT_CPUID2 | TD_CTLS_REDUCE_VE),
	       "with ENUM_TOPOLOGY and VIRT_CPUID2 (%lx)", a.r8);
	a = (struct tdx_module_args){ .rdx = TDCS_TD_CTLS, .r8 = 0, .r9 = TD_CTLS_REDUCE_VE };
	report(tdcall(TDG_VM_WR, &a) == 0, "TD_CTLS.REDUCE_VE cleared");
	a = (struct tdx_module_args){ .rdx = TDCS_TD_CTLS, .r8 = 1ul << 4, .r9 = 1ul << 4 };
	st = tdcall(TDG_VM_WR, &a);
	report(st == TDX_METADATA_FIELD_NOT_WRITABLE, "TD_CTLS bit 4 is not writable: %lx", st);
	/* PENDING_VE_DISABLE follows ATTRIBUTES.SEPT_VE_DISABLE (0 here), fixed. */
	a = (struct tdx_module_args){ .rdx = TDCS_TD_CTLS, .r8 = TD_CTLS_PENDING_VE_DISABLE,
				      .r9 = TD_CTLS_PENDING_VE_DISABLE };
	st = tdcall(TDG_VM_WR, &a);
	report(st == TDX_METADATA_FIELD_VALUE_NOT_VALID,
	       "TD_CTLS.PENDING_VE_DISABLE cannot change: %lx", st);
	a = (struct tdx_module_args){ .rdx = 0x1234 };
	st = tdcall(TDG_VM_RD, &a);
	report(st == TDX_METADATA_FIELD_ID_INCORRECT, "unknown field: TDX_METADATA_FIELD_ID_INCORRECT");
	a = (struct tdx_module_args){ .rdx = TDCS_TDX_FEATURES0 };
	report(tdcall(TDG_SYS_RD, &a) == 0 &&
	       a.r8 == (TDX_FEATURES0_TDG_VP_RDWR | TDX_FEATURES0_CPUID_VIRT_GUEST_CTRL |
			TDX_FEATURES0_VE_REDUCTION),
	       "TDG.SYS.RD TDX_FEATURES0: TDG_VP_RDWR, CPUID_VIRT_GUEST_CTRL, VE_REDUCTION");
	/* TDG.VP.RD/WR: the TDVPS fields a guest reaches. */
	a = (struct tdx_module_args){ .rdx = -1ul };
	st = tdcall(TDG_VP_RD, &a);
	report(st == TDX_METADATA_FIRST_FIELD_ID_IN_CONTEXT && a.rdx == TDVPS_VCPU_INDEX,
	       "TDG.VP.RD of the null field ID: VCPU_INDEX first");
	a = (struct tdx_module_args){ .rdx = TDVPS_VCPU_INDEX };
	st = tdcall(TDG_VP_RD, &a);
	report(st == 0 && a.r8 == 0 && a.rdx == TDVPS_CPUID_SUPERVISOR_VE,
	       "VCPU_INDEX 0, next CPUID_SUPERVISOR_VE");
	a = (struct tdx_module_args){ .rdx = TDVPS_VCPU_INDEX, .r8 = 1, .r9 = -1ul };
	st = tdcall(TDG_VP_WR, &a);
	report(st == TDX_METADATA_FIELD_NOT_WRITABLE, "VCPU_INDEX is not writable: %lx", st);
	a = (struct tdx_module_args){ .rdx = TDVPS_RAX };
	st = tdcall(TDG_VP_RD, &a);
	report(st == TDX_METADATA_FIELD_NOT_READABLE, "RAX is not readable: %lx", st);
	a = (struct tdx_module_args){ .rdx = 0xA0200000000000FFul };
	st = tdcall(TDG_VP_RD, &a);
	report(st == TDX_METADATA_FIELD_ID_INCORRECT, "an unknown field: %lx", st);
	a = (struct tdx_module_args){ .rdx = TDVPS_VCPU_INDEX | (1ul << 34) };
	st = tdcall(TDG_VP_RD, &a);
	report(st == TDX_METADATA_FIELD_ID_INCORRECT, "not a single element: %lx", st);
	a = (struct tdx_module_args){ .rdx = TDVPS_CPUID_CONTROL, .r8 = 0xff, .r9 = 0xff };
	st = tdcall(TDG_VP_WR, &a);
	report(st == TDX_METADATA_FIELD_VALUE_NOT_VALID, "CPUID_CONTROL bits 7:2: %lx", st);
	{
		u32 eax = 1, ebx, ecx = 0, edx;

		/* CPUID_CONTROL[0] is leaf 1 in the module's lookup order. */
		a = (struct tdx_module_args){ .rdx = TDVPS_CPUID_CONTROL, .r8 = 1, .r9 = 3 };
		report(tdcall(TDG_VP_WR, &a) == 0, "CPUID_CONTROL[0] (leaf 1): supervisor #VE");
		/* test_ve_handler() counts the #VE and emulates CPUID with TDVMCALL. */
		handle_exception(VE_VECTOR, test_ve_handler);
		int n0 = seen.n;
		asm volatile("cpuid" : "+a"(eax), "=b"(ebx), "+c"(ecx), "=d"(edx) :: "memory");
		report(seen.n == n0 + 1 && seen.reason == EXIT_REASON_CPUID, "CPUID 1: a #VE");
		a = (struct tdx_module_args){ .rdx = TDVPS_CPUID_CONTROL, .r8 = 0, .r9 = 3 };
		report(tdcall(TDG_VP_WR, &a) == 0 && a.r8 == 1, "CPUID_CONTROL[0] cleared (old 1)");
		n0 = seen.n;
		eax = 1, ecx = 0;
		asm volatile("cpuid" : "+a"(eax), "=b"(ebx), "+c"(ecx), "=d"(edx) :: "memory");
		report(seen.n == n0, "CPUID 1: answered");
		handle_exception(VE_VECTOR, NULL);
	}
	report_prefix_pop();
}

static void test_report(void)
{
	u8 *rep = alloc_page(), *data = alloc_page(), *ext = alloc_page();
	struct tdx_module_args a = {};
	u64 st;

	report_prefix_push("report");
	for (int i = 0; i < 64; i++)
		data[i] = i;
	memset(ext, 0x99, 48);
	a = (struct tdx_module_args){ .rcx = ptr_to_pa(ext), .rdx = 2 };
	report(tdcall(TDG_MR_RTMR_EXTEND, &a) == 0, "RTMR[2] extended");
	a = (struct tdx_module_args){ .rcx = ptr_to_pa(ext), .rdx = 4 };
	st = tdcall(TDG_MR_RTMR_EXTEND, &a);
	report(st == (TDX_OPERAND_INVALID | 2), "RTMR[4]: TDX_OPERAND_INVALID (RDX) %lx", st);
	a = (struct tdx_module_args){ .rcx = ptr_to_pa(rep), .rdx = ptr_to_pa(data) };
	st = tdcall(TDG_MR_REPORT, &a);
	report(st == 0, "TDG.MR.REPORT: status %lx", st);
	report(rep[0] == 0x81 && rep[1] == 0, "REPORTTYPE: TDX (0x81), subtype 0");
	report(!memcmp(rep + 128, data, 64), "REPORTDATA at 128");
	report(all_bytes(rep + 224, 32, 0), "MAC all zero: unsigned");
	report(*(u64 *)(rep + 512) == 0, "TDINFO.ATTRIBUTES");
	report(!all_bytes(rep + 528, 48, 0), "TDINFO.MRTD set");
	report(!all_bytes(rep + 512 + 208 + 96, 48, 0) && all_bytes(rep + 512 + 208 + 144, 48, 0),
	       "RTMR[2] extended, RTMR[3] not");
	/* TDG.VM.RD reads the measurements the TDREPORT holds. */
	bool same = true;
	for (int i = 0; i < 6; i++) {
		a = (struct tdx_module_args){ .rdx = TDCS_MRTD + i };
		same &= tdcall(TDG_VM_RD, &a) == 0 && a.r8 == *(u64 *)(rep + 528 + 8 * i);
		a = (struct tdx_module_args){ .rdx = TDCS_RTMR + 2 * 6 + i };
		same &= tdcall(TDG_VM_RD, &a) == 0 && a.r8 == *(u64 *)(rep + 512 + 208 + 96 + 8 * i);
	}
	report(same, "TDG.VM.RD MRTD and RTMR[2] as in the TDREPORT");
	a = (struct tdx_module_args){ .rdx = TDCS_XFAM };
	report(tdcall(TDG_VM_RD, &a) == 0 && a.r8 == *(u64 *)(rep + 520), "TDG.VM.RD XFAM as TDINFO");
	a = (struct tdx_module_args){ .rcx = ptr_to_pa(rep) + 64, .rdx = ptr_to_pa(data) };
	report(tdcall(TDG_MR_REPORT, &a) == (TDX_OPERAND_INVALID | 1), "misaligned report: RCX");
	a = (struct tdx_module_args){ .rcx = ptr_to_pa(rep), .rdx = ptr_to_pa(data) + 8 };
	report(tdcall(TDG_MR_REPORT, &a) == (TDX_OPERAND_INVALID | 2), "misaligned data: RDX");
	a = (struct tdx_module_args){ .rcx = ptr_to_pa(rep), .rdx = ptr_to_pa(data), .r8 = 1 };
	report(tdcall(TDG_MR_REPORT, &a) == (TDX_OPERAND_INVALID | 8), "sub-type 1: R8");
	report_prefix_pop();
}

/*
 * A load from the IOAPIC through the shared alias: KVM's MMIO entries in
 * the shared EPT leave #VE unsuppressed, so the TD gets an EPT-violation
 * #VE and emulates the access itself (Linux handle_mmio()); @ioregsel is
 * what #VE.RequestMMIO read at the same address.
 */
static void test_mmio_ve(u64 ioregsel)
{
	volatile u32 *ioapic = map_shared(0xfec00000ul, 1);
	struct tdx_module_args a = {};
	u32 v = 0;
	u64 st;

	asm volatile(ASM_TRY("1f") "movl (%1), %0\n1:" : "=r"(v) : "r"(ioapic) : "memory");
	report(exception_vector() == VE_VECTOR, "MMIO through the shared alias: #VE (vector %d)",
	       exception_vector());
	st = tdx_veinfo_get(&a);
	report(st == 0 && a.rcx == 48 && a.r9 == (0xfec00000ul | shared_bit) &&
	       a.r8 == (u64)ioapic && (a.rdx & 7) == 1,
	       "VE info: EPT violation, read, at the shared GPA %lx", a.r9);
	a = (struct tdx_module_args){ .r11 = EXIT_REASON_EPT_VIOLATION, .r12 = 4, .r13 = 0,
				      .r14 = a.r9 };
	report(tdvmcall(&a) == 0 && a.r11 == ioregsel, "emulated with #VE.RequestMMIO (%lx)",
	       a.r11);
	(void)v;
}

/*
 * Port I/O and HLT through #VE, seen by a #VE handler of the test's own
 * that runs before the runtime's: it reads the VE information first (a
 * #VE while it is unread would be a #DF), keeps it, and chains to
 * tdx_handle_ve(), which emulates the instruction with TDVMCALL IO / HLT
 * and skips it by the reported length.
 */
static bool df_probe;     /* the handler first does port I/O before reading */
static int df_vector = -1;

static void test_ve_handler(struct ex_regs *regs)
{
	struct tdx_module_args ve = {};
	u64 st;

	if (df_probe) {
		/* Wrong on purpose: the TDX module raises #DF (Linux tdx_get_ve_info()). */
		df_probe = false;
		asm volatile(ASM_TRY("1f") "inb $0x21, %%al\n1:" ::: "rax", "memory");
		df_vector = exception_vector();
	}
	st = tdcall(TDG_VP_VEINFO_GET, &ve);
	seen = (struct seen_ve){ seen.n + 1, st, regs->rip, ve.rcx, ve.rdx, (u32)ve.r10, ve.r8,
				 ve.r9 };
	if (st || !tdx_handle_ve(regs, &ve)) {
		report(false, "test #VE handler: status %lx, reason %lu at rip %lx", st, ve.rcx,
		       regs->rip);
		exit(1);
	}
}

/* I/O qualification (SDM Table 28-5). */
#define IOQ(port, size, in, imm) \
	((u64)(port) << 16 | ((size) - 1) | ((in) ? 1 << 3 : 0) | ((imm) ? 1 << 6 : 0))

static void check_io_ve(const struct seen_ve *s, int n0, u64 start, u64 end, u64 qual,
			const char *what)
{
	report(s->n == n0 + 1 && s->status == 0 && s->reason == EXIT_REASON_IO_INSTRUCTION &&
	       s->rip == start && s->len == end - start && s->qual == qual && !s->gla && !s->gpa,
	       "%s: #VE, reason %lu, qualification %lx (want %lx), length %lu (want %lu)", what,
	       s->reason, s->qual, qual, s->len, end - start);
}

#define TIMER_VECTOR 0xe0

static volatile int timer_ticks;

static void timer_handler(struct ex_regs *regs)
{
	(void)regs;
	timer_ticks++;
	wrmsr(MSR_X2APIC_EOI, 0);
}

/*
 * TDVMCALL<Instruction.HLT> with R12 = 0 (interrupts not blocked) and IF
 * clear, as Linux's tdx_safe_halt() makes it: KVM halts the vCPU until an
 * interrupt is pending and returns with it still pending; the guest takes
 * it once it sets IF.
 */
static void test_hlt(void)
{
	struct tdx_module_args a = { .r11 = EXIT_REASON_HLT, .r12 = 0 };
	u64 st, left;

	report_prefix_push("TDVMCALL HLT");
	handle_exception(TIMER_VECTOR, timer_handler);
	timer_ticks = 0;
	apic_timer_oneshot(TIMER_VECTOR, 0, 20 * 1000 * 1000); /* 20 ms */
	st = tdvmcall(&a);
	left = rdmsr(MSR_X2APIC_TIMER_CURRENT);
	report(st == 0 && left == 0 && timer_ticks == 0,
	       "R12 = 0, IF clear: the vCPU slept until the timer fired (%lu ns left), "
	       "the interrupt still pending", left);
	asm volatile("sti; nop; cli" ::: "memory");
	report(timer_ticks == 1, "taken once the guest sets IF (%d)", timer_ticks);
	/* Pending already: the halt ends at once. */
	x2apic_icr_write(APIC_DEST_SELF | APIC_DM_FIXED | SMP_IPI_VECTOR, 0);
	report(tdvmcall(&a) == 0, "a pending IPI ends it at once");
	asm volatile("sti; nop; cli" ::: "memory");
	handle_exception(TIMER_VECTOR, NULL);
	report_prefix_pop();
}

static void test_io_ve(void)
{
	struct tdx_module_args a = {};
	u64 start, end, io0 = tdx_ve_count(EXIT_REASON_IO_INSTRUCTION);
	u64 hlt0 = tdx_ve_count(EXIT_REASON_HLT);
	struct seen_ve s;
	u32 v;
	char sig[5] = {};
	int n0;

	report_prefix_push("I/O #VE");
	/* The runtime's own handling: printing went through #VE, nothing left unread. */
	report_info("port I/O in a TD raises #VE");
	report(tdx_ve_count(EXIT_REASON_IO_INSTRUCTION) > io0, "the console's port I/O: %lu #VEs",
	       tdx_ve_count(EXIT_REASON_IO_INSTRUCTION) - io0);
	report(tdcall(TDG_VP_VEINFO_GET, &a) == TDX_NO_VALID_VE_INFO,
	       "no VE info left unread after them");

	handle_exception(VE_VECTOR, test_ve_handler);
	/* OUT imm8 (the PIC mask setup.c wrote), then IN imm8 reads it back. */
	n0 = seen.n;
	asm volatile("lea 1f(%%rip), %0; lea 2f(%%rip), %1\n1: outb %%al, $0x21\n2:"
		     : "=&r"(start), "=&r"(end) : "a"(0xff) : "memory");
	s = seen;
	check_io_ve(&s, n0, start, end, IOQ(0x21, 1, false, true), "outb imm8");
	n0 = seen.n;
	asm volatile("lea 1f(%%rip), %1; lea 2f(%%rip), %2\n1: inb $0x21, %%al\n2:"
		     : "=a"(v), "=&r"(start), "=&r"(end) : "a"(0x1234) : "memory");
	s = seen;
	check_io_ve(&s, n0, start, end, IOQ(0x21, 1, true, true), "inb imm8");
	report((v & 0xff) == 0xff && (v & 0xff00) == 0x1200, "inb: AL %x from the VMM, AH kept",
	       v);
	/* OUT DX (fw_cfg selector, 16 bits), then IN DX of its data. */
	n0 = seen.n;
	asm volatile("lea 1f(%%rip), %0; lea 2f(%%rip), %1\n1: outw %%ax, %%dx\n2:"
		     : "=&r"(start), "=&r"(end) : "a"(FW_CFG_SIGNATURE), "d"(FW_CFG_PORT_SEL)
		     : "memory");
	s = seen;
	check_io_ve(&s, n0, start, end, IOQ(FW_CFG_PORT_SEL, 2, false, false), "outw dx");
	n0 = seen.n;
	asm volatile("lea 1f(%%rip), %1; lea 2f(%%rip), %2\n1: inb %%dx, %%al\n2:"
		     : "=a"(v), "=&r"(start), "=&r"(end) : "d"(FW_CFG_PORT_DATA), "a"(0)
		     : "memory");
	s = seen;
	check_io_ve(&s, n0, start, end, IOQ(FW_CFG_PORT_DATA, 1, true, false), "inb dx");
	report(v == 'Q', "inb dx: '%c' from fw_cfg", (char)v);
	/* REP INSB: the rest of the signature, one #VE for the whole string. */
	n0 = seen.n;
	{
		void *dst = sig;
		u64 cnt = 3;

		asm volatile("lea 1f(%%rip), %2; lea 2f(%%rip), %3\n1: rep insb\n2:"
			     : "+D"(dst), "+c"(cnt), "=&r"(start), "=&r"(end)
			     : "d"(FW_CFG_PORT_DATA) : "memory");
		s = seen;
		check_io_ve(&s, n0, start, end,
			    IOQ(FW_CFG_PORT_DATA, 1, true, false) | 1 << 4 | 1 << 5, "rep insb");
		report(!strcmp(sig, "EMU") && cnt == 0 && dst == sig + 3,
		       "rep insb: '%s', RCX 0, RDI advanced", sig);
	}
	/*
	 * HLT: reason 12, length 1; the runtime's TDVMCALL HLT (interrupts not
	 * blocked: IF was set at the HLT) ends at once on the pending IPI,
	 * which is taken after the #VE returns.
	 */
	/* The ICR write is a #VE of its own (WRMSR, reason 32): count after it. */
	x2apic_icr_write(APIC_DEST_SELF | APIC_DM_FIXED | SMP_IPI_VECTOR, 0);
	n0 = seen.n;
	asm volatile("lea 1f(%%rip), %0; lea 2f(%%rip), %1\nsti\n1: hlt\n2: cli"
		     : "=&r"(start), "=&r"(end) :: "memory");
	s = seen;
	report(s.n == n0 + 1 && s.reason == EXIT_REASON_HLT && s.qual == 0 && s.rip == start &&
	       s.len == end - start, "hlt: #VE, reason %lu, length %lu", s.reason, s.len);
	report(tdx_ve_count(EXIT_REASON_HLT) == hlt0 + 1, "hlt emulated with TDVMCALL HLT");
	/* Port I/O in a #VE handler before TDG.VP.VEINFO.GET: #DF. */
	df_probe = true;
	n0 = seen.n;
	asm volatile("outb %%al, $0x80" :: "a"(0) : "memory");
	s = seen;
	report(df_vector == DF_VECTOR && s.n == n0 + 1 && s.qual == IOQ(0x80, 1, false, true),
	       "a #VE over unread VE info: #DF (vector %d), the first VE info kept", df_vector);
	handle_exception(VE_VECTOR, NULL);
	report_prefix_pop();
}

static void test_tdvmcalls(void)
{
	struct tdx_module_args a;
	u64 st, pa = PENDING_BASE + 16 * SZ_2M;
	volatile u64 *quote;
	struct cpuid c = cpuid_indexed(7, 0);

	report_prefix_push("tdvmcall");
	a = (struct tdx_module_args){ .r11 = EXIT_REASON_CPUID, .r12 = 7, .r13 = 0 };
	st = tdvmcall(&a);
	/*
	 * The VMM answers from QEMU's CPU model; the TDX module's leaf 7 is
	 * that CPU's with bits cleared (fixed-0, XFAM) and none added.
	 */
	report(st == 0 && (u32)a.r12 == c.a && !(c.b & ~(u32)a.r13) && !(c.c & ~(u32)a.r14) &&
	       !(c.d & ~(u32)a.r15), "CPUID 7: the VMM's answer, a superset of the module's");
	a = (struct tdx_module_args){ .r11 = EXIT_REASON_IO_INSTRUCTION, .r12 = 2, .r13 = 1,
				      .r14 = FW_CFG_PORT_SEL, .r15 = FW_CFG_SIGNATURE };
	report(tdvmcall(&a) == 0, "IO: write the fw_cfg selector");
	a = (struct tdx_module_args){ .r11 = EXIT_REASON_IO_INSTRUCTION, .r12 = 1, .r13 = 0,
				      .r14 = FW_CFG_PORT_DATA };
	report(tdvmcall(&a) == 0 && a.r11 == 'Q', "IO: read 'Q' from fw_cfg (%lx)", a.r11);
	a = (struct tdx_module_args){ .r11 = EXIT_REASON_IO_INSTRUCTION, .r12 = 3, .r14 = 0x80 };
	report(tdvmcall(&a) == TDVMCALL_STATUS_INVALID_OPERAND, "IO size 3: INVALID_OPERAND");
	a = (struct tdx_module_args){ .r11 = EXIT_REASON_MSR_READ, .r12 = 0x1b };
	report(tdvmcall(&a) == 0 && a.r11 == rdmsr(0x1b), "RDMSR IA32_APIC_BASE");
	/* QEMU's TCG reads unknown MSRs as 0; a reserved x2APIC register #GPs. */
	a = (struct tdx_module_args){ .r11 = EXIT_REASON_MSR_READ, .r12 = 0x801 };
	report(tdvmcall(&a) == TDVMCALL_STATUS_INVALID_OPERAND, "RDMSR that would #GP: INVALID_OPERAND");
	a = (struct tdx_module_args){ .r11 = EXIT_REASON_EPT_VIOLATION, .r12 = 4, .r13 = 0,
				      .r14 = 0xfec00000ul | shared_bit };
	report(tdvmcall(&a) == 0, "#VE.RequestMMIO read of the IOAPIC (%lx)", a.r11);
	test_mmio_ve(a.r11);
	a = (struct tdx_module_args){ .r11 = EXIT_REASON_EPT_VIOLATION, .r12 = 4, .r13 = 0,
				      .r14 = 0xfec00000ul };
	report(tdvmcall(&a) == TDVMCALL_STATUS_INVALID_OPERAND, "MMIO to a private GPA: refused");
	a = (struct tdx_module_args){ .r11 = EXIT_REASON_EPT_VIOLATION, .r12 = 4, .r13 = 0,
				      .r14 = 0x100000 | shared_bit };
	report(tdvmcall(&a) == TDVMCALL_STATUS_INVALID_OPERAND, "MMIO to RAM: refused");
	a = (struct tdx_module_args){ .r11 = TDVMCALL_GET_TD_VM_CALL_INFO, .r12 = 0 };
	report(tdvmcall(&a) == 0, "GetTdVmCallInfo");
	a = (struct tdx_module_args){ .r11 = 0x7777 };
	report(tdvmcall(&a) == TDVMCALL_STATUS_SUBFUNC_UNSUPPORTED, "unknown: SUBFUNC_UNSUPPORTED");

	/* GetQuote: a shared 4K buffer; no quoting service here. */
	report(tdx_map_gpa(pa, PAGE_SIZE, true) == 0, "quote buffer made shared");
	quote = map_shared(pa, 1);
	quote[0] = 1;
	quote[1] = 0;
	a = (struct tdx_module_args){ .r11 = TDVMCALL_GET_QUOTE, .r12 = pa | shared_bit,
				      .r13 = PAGE_SIZE };
	st = tdvmcall(&a);
	report(st == 0 && quote[1] == 0x8000000000000001ul,
	       "GetQuote: status GET_QUOTE_SERVICE_UNAVAILABLE (%lx)", quote[1]);
	a = (struct tdx_module_args){ .r11 = TDVMCALL_GET_QUOTE, .r12 = pa, .r13 = PAGE_SIZE };
	report(tdvmcall(&a) == TDVMCALL_STATUS_INVALID_OPERAND, "GetQuote on private memory");

	/* The TDCALL itself. */
	a = (struct tdx_module_args){};
	report(tdcall(12, &a) == TDX_OPERAND_INVALID,
	       "leaf 12 (TDG.SYS.RDALL, not in cvmem): TDX_OPERAND_INVALID");
	report(tdcall(TDG_VP_INFO | 1ul << 16, &a) == TDX_OPERAND_INVALID,
	       "leaf version 1: TDX_OPERAND_INVALID");
	report_prefix_pop();
}

/*
 * strict=on: a shared access to a private page is not converted but gives
 * #VE; without it the page is converted (its private content discarded).
 */
static void test_alias(bool strict)
{
	u64 pa = ptr_to_pa(alloc_page());
	volatile u64 *priv = pa_to_ptr(pa), *shared = map_shared(pa, 1);
	struct tdx_module_args a = {};
	u64 v = 0;

	report_prefix_push(strict ? "strict" : "implicit conversion");
	*priv = 0x77;
	asm volatile(ASM_TRY("1f") "movq (%1), %0\n1:" : "=r"(v) : "r"(shared) : "memory");
	if (strict) {
		report(exception_vector() == VE_VECTOR, "shared access to a private page: #VE");
		report(tdx_veinfo_get(&a) == 0 && a.r9 == (pa | shared_bit),
		       "VE info names the shared GPA %lx", a.r9);
		report(*priv == 0x77, "the private page is untouched");
		/*
		 * ACCEPT of a page the TD made shared: the module exits to the
		 * VMM, which converts as on a memory-fault exit, strict or not;
		 * it never raises #VE for ACCEPT (cvmem once did, and a #VE
		 * handler retrying the accept recursed).
		 */
		{
			u64 passed_on = tdx_ve_count(EXIT_REASON_EPT_VIOLATION);

			report(tdx_map_gpa(pa, PAGE_SIZE, true) == 0, "MapGPA to shared");
			report(tdx_accept_page(pa, 0) == 0, "ACCEPT of the shared page: success");
			report(tdx_ve_count(EXIT_REASON_EPT_VIOLATION) == passed_on,
			       "... and no #VE");
			report(*priv == 0, "the page is private again, accepted, zero");
		}
	} else {
		report(exception_vector() == -1 && v == 0,
		       "shared access converts the page: reads zero (%lx)", v);
		*shared = 0x88;
		/*
		 * Back to private: QEMU converts, KVM AUGs the page, and a TD
		 * must accept it first (#VE while SEPT_VE_DISABLE is clear).
		 */
		asm volatile(ASM_TRY("1f") "movq (%1), %0\n1:" : "=r"(v) : "r"(priv) : "memory");
		report(exception_vector() == VE_VECTOR,
		       "private access converts it back: PENDING, so #VE");
		report(tdx_veinfo_get(&a) == 0 && a.r9 == pa, "VE info GPA %lx", a.r9);
		report(tdx_accept_page(pa, 0) == 0 && *priv == 0,
		       "accepted: the shared data is gone (reads zero)");
	}
	report_prefix_pop();
}

/* ReportFatalError: the run must end here with the message shown. */
static void fatal(void)
{
	struct tdx_module_args a = {
		.r11 = TDVMCALL_REPORT_FATAL_ERROR,
		.r12 = 0,
	};
	const char msg[16] = "guest says bye";

	memcpy(&a.r14, msg, 8);
	memcpy(&a.r15, msg + 8, 8);
	report_info("calling ReportFatalError");
	for (;;)
		tdvmcall(&a);
}

int main(void)
{
	shared_bit = tdx_shared_mask();
	if (cmdline_has("fatal"))
		fatal();
	if (cmdline_has("triple-fault")) {
		report_info("triple-faulting on purpose");
		triple_fault();
	}
	if (cmdline_has("mmio-private")) {
		/*
		 * The IOAPIC through the private alias (the boot map is
		 * private): under KVM a KVM_EXIT_MEMORY_FAULT that QEMU cannot
		 * convert, so the VM stops; no #VE.
		 */
		report_info("reading the IOAPIC through the private alias");
		(void)*(volatile u32 *)0xfec00000ul;
		report(false, "the private MMIO read returned");
		return 0;
	}
	if (cmdline_has("strict")) {
		test_alias(true);
		return 0;
	}
	test_alias(false);
	test_identity();
	test_accept();
	test_ve();
	test_map_gpa();
	test_metadata();
	test_report();
	smp_init(); /* the x2APIC software-enabled, the IPI vector handled */
	test_tdvmcalls();
	test_hlt();
	test_io_ve();
	return 0;
}
