/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libcflat.h: the whole public API of the cvmem guest-test runtime.
 *
 * A test is one C file with `int main(void)`. The runtime boots it from
 * Multiboot v1 (boot.S), runs it in 64-bit long mode at CPL0 with the first
 * 4 GiB identity mapped by 2 MiB pages, and ends the QEMU run through
 * isa-debug-exit at port 0xf4 (QEMU exit status 1 = pass, 3 = fail).
 *
 * Address spaces: a guest-virtual address is called `va`, a guest-physical
 * one `pa`. Below 4 GiB the boot map is the identity, so a pa < 4 GiB is
 * also a usable pointer (see pa_to_ptr()); page tables and allocator pages
 * always live there.
 */
#ifndef CVMEM_LIBCFLAT_H
#define CVMEM_LIBCFLAT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64; /* unsigned long: constants below use "ul" so %lx fits both */
typedef int64_t s64;

#define __noreturn __attribute__((noreturn))
#define __printf(f, a) __attribute__((format(printf, f, a)))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define ALIGN_UP(x, a) (((x) + (a) - 1) & ~((u64)(a) - 1))
#define ALIGN_DOWN(x, a) ((x) & ~((u64)(a) - 1))
#define barrier() asm volatile("" ::: "memory")

/* ---- Console (COM1, polled 16550) and formatting ---------------------- */

/*
 * Formats: %d %i %u %x %X %p %s %c %%, length l/ll/z, flags '0' '-', width.
 * Output goes out under a console lock that the CPU holding it may take
 * again (an exception handler may print): one printf() call, and one
 * report*() line, never interleaves with another CPU's.
 */
int printf(const char *fmt, ...) __printf(1, 2);
int vprintf(const char *fmt, va_list ap);
int snprintf(char *buf, size_t size, const char *fmt, ...) __printf(3, 4);
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int putchar(int c);
int puts(const char *s); /* appends '\n' like libc */

void *memset(void *dst, int c, size_t n);
void *memcpy(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);
/* Whether every byte of [p, p + len) is @c (volatile: memory a test shares). */
bool all_bytes(const volatile void *p, u64 len, u8 c);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);

/* ---- kvm-unit-tests style reporting ----------------------------------- */

/* Prints "PASS: <prefix><what>" or "FAIL: <prefix><what>" and counts it. */
void report(bool pass, const char *fmt, ...) __printf(2, 3);
/* Prints "SKIP: <prefix><what>"; a skip counts as a test, as in kvm-unit-tests. */
void report_skip(const char *fmt, ...) __printf(1, 2);
/* Prints "INFO: <prefix><what>"; not counted. */
void report_info(const char *fmt, ...) __printf(1, 2);
/* Prefixes nest: push("a"), push("b") gives "PASS: a: b: what". The prefix
 * is global, not per CPU: push and pop from one CPU while others report. */
void report_prefix_push(const char *prefix);
void report_prefix_pop(void);

struct report_stats {
	unsigned int tests;    /* report() and report_skip() calls */
	unsigned int failures; /* report(false, ...) calls */
	unsigned int skipped;  /* report_skip() calls */
};
struct report_stats report_stats(void);

/*
 * Prints "SUMMARY: N tests, M unexpected failures, K skipped" and returns the
 * value exit() would write to port 0xf4 for `code`: code if non-zero, else 1
 * if any report failed, else 0.
 */
int report_summary(int code);

/*
 * Prints SUMMARY and leaves QEMU with status (status << 1) | 1. Never returns.
 * Any CPU may call it; the first one to do so ends the run, a later caller
 * on another CPU halts for good.
 */
void exit(int code) __noreturn;
/* Reports a failure ("FAIL: abort() called"), then exit(1). */
void abort(void) __noreturn;

/* ---- Boot information --------------------------------------------------- */

struct boot_info {
	u32 mbi_pa;        /* Multiboot info block as passed in EBX */
	u32 mem_upper_kib; /* Multiboot mem_upper: KiB of RAM from 1 MiB up */
	u64 ram_end_pa;    /* 1 MiB + mem_upper: end of the RAM the allocator uses */
	u64 image_end_pa;  /* first byte after the loaded image (bss included) */
	const char *cmdline; /* a copy; QEMU puts the kernel file name first */
	u64 td_hob_pa;     /* started from a TDVF image: the TD HOB (else 0) */
};
extern struct boot_info boot_info;

/* True if the command line (QEMU -append) holds `word` as a whole token. */
bool cmdline_has(const char *word); /* words: separated by spaces or commas */
/* Replaces the command line (an image started as firmware has none). */
void boot_set_cmdline(const char *cmdline);
/*
 * The value of the word `key=VALUE` on the command line: a pointer to VALUE
 * in the copy, not terminated (it ends at a space, a comma or the end), and
 * its length in *len; NULL if no word starts with "key=".
 */
const char *cmdline_value(const char *key, size_t *len);
/*
 * `key=N` as a number: decimal, or hex after 0x, times 2^10, 2^20 or 2^30
 * with a K, M or G suffix. dflt if the key is absent; a value that is not
 * such a number (or overflows) reports a failure and exits.
 */
u64 cmdline_u64(const char *key, u64 dflt);

/* ---- Port I/O, MSRs, CPUID, control registers ------------------------- */

static inline void outb(u8 v, u16 port) { asm volatile("outb %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outw(u16 v, u16 port) { asm volatile("outw %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outl(u32 v, u16 port) { asm volatile("outl %0, %1" :: "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; asm volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u16 inw(u16 port) { u16 v; asm volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u32 inl(u16 port) { u32 v; asm volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

#define MSR_EFER 0xc0000080
#define EFER_SCE (1ul << 0)
#define EFER_LME (1ul << 8)
#define EFER_LMA (1ul << 10)
#define EFER_NXE (1ul << 11)

static inline u64 rdmsr(u32 msr)
{
	u32 lo, hi;
	asm volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return lo | ((u64)hi << 32);
}

static inline void wrmsr(u32 msr, u64 v)
{
	asm volatile("wrmsr" :: "c"(msr), "a"((u32)v), "d"((u32)(v >> 32)) : "memory");
}

struct cpuid { u32 a, b, c, d; };

static inline struct cpuid cpuid_indexed(u32 leaf, u32 subleaf)
{
	struct cpuid r;
	asm volatile("cpuid" : "=a"(r.a), "=b"(r.b), "=c"(r.c), "=d"(r.d)
		     : "a"(leaf), "c"(subleaf));
	return r;
}

static inline struct cpuid cpuid(u32 leaf) { return cpuid_indexed(leaf, 0); }

#define X86_CR0_PE (1ul << 0)
#define X86_CR0_MP (1ul << 1)
#define X86_CR0_EM (1ul << 2)
#define X86_CR0_NE (1ul << 5)
#define X86_CR0_WP (1ul << 16)
#define X86_CR0_PG (1ul << 31)
#define X86_CR4_PAE (1ul << 5)
#define X86_CR4_PGE (1ul << 7)
#define X86_CR4_OSFXSR (1ul << 9)
#define X86_CR4_OSXMMEXCPT (1ul << 10)

/* The "memory" clobbers order page-table and data accesses around the writes. */
static inline u64 read_cr0(void) { u64 v; asm volatile("mov %%cr0, %0" : "=r"(v)); return v; }
static inline u64 read_cr2(void) { u64 v; asm volatile("mov %%cr2, %0" : "=r"(v)); return v; }
static inline u64 read_cr3(void) { u64 v; asm volatile("mov %%cr3, %0" : "=r"(v)); return v; }
static inline u64 read_cr4(void) { u64 v; asm volatile("mov %%cr4, %0" : "=r"(v)); return v; }
static inline void write_cr0(u64 v) { asm volatile("mov %0, %%cr0" :: "r"(v) : "memory"); }
static inline void write_cr3(u64 v) { asm volatile("mov %0, %%cr3" :: "r"(v) : "memory"); }
static inline void write_cr4(u64 v) { asm volatile("mov %0, %%cr4" :: "r"(v) : "memory"); }
static inline void invlpg(u64 va) { asm volatile("invlpg (%0)" :: "r"(va) : "memory"); }
static inline u64 read_rflags(void) { u64 v; asm volatile("pushfq; popq %0" : "=r"(v)); return v; }
static inline void cli(void) { asm volatile("cli"); }
static inline void hlt(void) { asm volatile("hlt"); }
static inline void pause(void) { asm volatile("pause"); }
static inline u64 rdtsc(void)
{
	u32 lo, hi;

	asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return lo | ((u64)hi << 32);
}

/* ---- Exceptions ----------------------------------------------------------- */

#define DE_VECTOR 0
#define DB_VECTOR 1
#define NMI_VECTOR 2
#define BP_VECTOR 3
#define OF_VECTOR 4
#define BR_VECTOR 5
#define UD_VECTOR 6
#define NM_VECTOR 7
#define DF_VECTOR 8
#define TS_VECTOR 10
#define NP_VECTOR 11
#define SS_VECTOR 12
#define GP_VECTOR 13
#define PF_VECTOR 14
#define MF_VECTOR 16
#define AC_VECTOR 17
#define MC_VECTOR 18
#define XM_VECTOR 19
#define VE_VECTOR 20 /* TDX virtualization exception: no error code */
#define CP_VECTOR 21 /* control protection: error code */
#define HV_VECTOR 28
#define VC_VECTOR 29 /* SEV-ES VMM communication: error code (the exit code) */
#define SX_VECTOR 30 /* AMD security exception: error code */

/* #PF error code bits */
#define PFERR_PRESENT (1ul << 0)
#define PFERR_WRITE (1ul << 1)
#define PFERR_USER (1ul << 2)
#define PFERR_RSVD (1ul << 3)
#define PFERR_FETCH (1ul << 4)

#define KERNEL_CS 0x08
#define KERNEL_DS 0x10

/*
 * The stack frame of an exception, lowest address first: what isr.S pushes
 * (GPRs, vector, error code: 0 if the vector has none) under what the CPU
 * pushes (rip..ss). A handler may change any field; the return path pops the
 * GPRs back and IRETQs, so e.g. `regs->rip += 2` skips a ud2.
 */
struct ex_regs {
	u64 rax, rcx, rdx, rbx, rbp, rsi, rdi;
	u64 r8, r9, r10, r11, r12, r13, r14, r15;
	u64 vector;
	u64 error_code;
	u64 rip, cs, rflags, rsp, ss;
};

typedef void (*ex_handler_t)(struct ex_regs *regs);

/*
 * One instruction at CPL 3 (user.c): user_init() once on the BSP, then
 * user_run(insn, regs) loads every GPR from regs and runs insn at CPL 3
 * (IF 0, IOPL 0). The result says which exception ended the CPL 3 run and
 * where: .completed when the instruction completed (its stub's UD2 after
 * it raised the #UD), else .vector and .error_code are the instruction's.
 * A #VE or #VC the runtime emulates (a CPUID) does not end the run.
 */
enum user_insn {
	USER_TDCALL, USER_VMCALL, USER_VMMCALL, USER_VMGEXIT, USER_PVALIDATE,
	USER_RMPADJUST, USER_RDMSR, USER_WRMSR, USER_CPUID, USER_HLT, USER_IN,
	USER_OUT, USER_MOV_CR4, USER_MOV_CR0, USER_NR_INSNS,
};
struct user_regs {
	u64 rax, rcx, rdx, rbx, rbp, rsi, rdi;
	u64 r8, r9, r10, r11, r12, r13, r14, r15;
};
struct user_result {
	int vector;
	u64 error_code;
	u64 rip;
	bool completed;
};
void user_init(void);
struct user_result user_run(enum user_insn insn, const struct user_regs *regs);

/*
 * Installs fn for vector (0-255); NULL restores the default, which prints the
 * vector, error code, RIP, CR2 and registers, reports a failure and exits.
 * Returns the previous handler (NULL if it was the default). There is one
 * IDT and one handler table for all CPUs: a handler runs on whichever CPU
 * takes the exception (smp_id() tells which).
 */
ex_handler_t handle_exception(int vector, ex_handler_t fn);

/* The CPU pushes an error code for this vector (8, 10-14, 17, 21, 29, 30). */
bool exception_has_error_code(int vector);
const char *exception_mnemonic(int vector); /* "#PF", ..., or "" */
/* Ends the run in a triple fault (#GP undeliverable); never returns. */
void triple_fault(void) __attribute__((noreturn));

/*
 * ASM_TRY(fixup): kvm-unit-tests' idiom for "this instruction may fault".
 * Put it right before the instruction in an asm statement; if that
 * instruction raises an exception whose vector has no handler installed, the
 * runtime records it (exception_vector() etc.) and resumes at `fixup`, e.g.
 *
 *	asm volatile(ASM_TRY("1f") "movq (%1), %0\n1:"
 *		     : "=r"(v) : "r"(va) : "memory");
 *	if (exception_vector() == PF_VECTOR) ...
 *
 * Faults only: a trap (int3, into, a data breakpoint) pushes the rip after
 * the instruction, which the table does not match. Extended asm only (it
 * says %%gs), with a "memory" clobber (it writes this CPU's last vector).
 * The (instruction, fixup) pair goes in the .ex_table section; the cost on
 * the path that does not fault is one store.
 *
 * The recorded vector, error code and CR2 are per CPU (in the per-CPU area
 * GS points at), so ASM_TRY works on every CPU at once. GS belongs to the
 * runtime: a test that loads GS or writes MSR_GS_BASE/MSR_KERNEL_GS_BASE
 * (swapgs) must restore it before the next ASM_TRY, report() or printf().
 */
#define PERCPU_EX_LAST_VECTOR 8 /* offsets in the per-CPU area, see internal.h */
#define PERCPU_ID 12
#define __CVMEM_STR(x) #x
#define __CVMEM_XSTR(x) __CVMEM_STR(x)
#define ASM_TRY(fixup)                                                    \
	"movl $-1, %%gs:" __CVMEM_XSTR(PERCPU_EX_LAST_VECTOR) "\n\t"       \
	".pushsection .ex_table, \"a\"\n\t"                               \
	".balign 8\n\t"                                                   \
	".quad 1111f, " fixup "\n\t"                                      \
	".popsection\n\t"                                                 \
	"1111:"

/* -1: the last ASM_TRY instruction on this CPU did not fault. */
static inline int exception_vector(void)
{
	int v;

	asm volatile("movl %%gs:" __CVMEM_XSTR(PERCPU_EX_LAST_VECTOR) ", %0" : "=r"(v) :: "memory");
	return v;
}
u64 exception_error_code(void); /* of this CPU's last ASM_TRY fault */
u64 exception_cr2(void);        /* CR2 read when this CPU's last ASM_TRY fault arrived */

/* ---- Multiple processors (smp.c) ------------------------------------------ */

#define MAX_CPUS 64
#define MSR_IA32_APICBASE 0x1b
#define APICBASE_BSP (1ul << 8)
#define APICBASE_EXTD (1ul << 10) /* x2APIC mode */
#define APICBASE_EN (1ul << 11)
#define MSR_GS_BASE 0xc0000101
#define MSR_KERNEL_GS_BASE 0xc0000102
/* x2APIC registers: MSR 0x800 + (xAPIC MMIO offset >> 4) */
#define MSR_X2APIC_ID 0x802
#define MSR_X2APIC_EOI 0x80b
#define MSR_X2APIC_SVR 0x80f
#define MSR_X2APIC_ICR 0x830
#define APIC_SVR_ENABLE (1u << 8)
#define APIC_DM_FIXED 0x000
#define APIC_DM_NMI 0x400
#define APIC_DM_INIT 0x500
#define APIC_DM_STARTUP 0x600
#define APIC_INT_ASSERT 0x4000
#define APIC_DEST_SELF 0x40000
#define APIC_DEST_ALLINC 0x80000
#define APIC_DEST_ALLBUT 0xc0000
/* The x2APIC timer; under QEMU it counts nanoseconds at divide-by-1. */
#define MSR_X2APIC_LVT_TIMER 0x832
#define MSR_X2APIC_TIMER_INITIAL 0x838
#define MSR_X2APIC_TIMER_CURRENT 0x839
#define MSR_X2APIC_TIMER_DIVIDE 0x83e
#define APIC_LVT_MASKED (1u << 16)
#define APIC_TIMER_DIVIDE_BY_1 0xb
/* Vectors the runtime takes once smp_init() ran: the wake-up IPI, spurious. */
#define SMP_IPI_VECTOR 0xf0
#define APIC_SPURIOUS_VECTOR 0xff
/* Where smp_init() copies the AP trampoline (SIPI vector 0x08). */
#define AP_TRAMPOLINE_PA 0x8000ul

/*
 * Processors are numbered 0..smp_cpus()-1: 0 is the BSP, which runs main();
 * the APs are numbered by increasing x2APIC ID. smp_init() brings them up
 * (INIT-SIPI-SIPI through the x2APIC ICR MSR; no xAPIC MMIO access) into
 * long mode on the boot page tables, with their own stack (32 KiB), the
 * shared IDT and handlers, and an idle loop (sti; hlt; cli) that runs what
 * on_cpu*() hands them. The on_cpu*() calls run smp_init() if it has not
 * run yet, so a test that never asks for another CPU leaves the APs alone.
 *
 * A function given to an AP runs with interrupts off, on the AP's stack,
 * and may report(), printf(), use ASM_TRY, take exceptions (the same
 * handlers), call on_cpu*() for other APs, or exit(). It runs to completion
 * before the AP takes the next one. CPU 0 does not serve requests: it is
 * always busy with main(), so on_cpu*(0, ...) is only allowed on CPU 0
 * (which then calls fn directly).
 */
int smp_cpus(void);   /* fw_cfg FW_CFG_NB_CPUS, 1 without fw_cfg */
static inline int smp_id(void)
{
	int id;

	asm volatile("movl %%gs:" __CVMEM_XSTR(PERCPU_ID) ", %0" : "=r"(id));
	return id;
}
void smp_init(void);  /* CPU 0 only; a second call does nothing */
/* Runs fn(arg) on cpu and waits for it to return (cpu == smp_id(): a call). */
void on_cpu(int cpu, void (*fn)(void *), void *arg);
/*
 * Starts fn(arg) on cpu and returns; waits first if cpu is still busy with
 * an earlier function. On the calling CPU itself, runs fn before returning.
 */
void on_cpu_async(int cpu, void (*fn)(void *), void *arg);
/* Runs fn(arg) on every CPU, the caller included, and waits for all. */
void on_cpus(void (*fn)(void *), void *arg);
/* Waits until no CPU but the caller runs an on_cpu*() function. */
void on_cpus_wait(void);
/* CPUs other than the caller busy with an on_cpu*() function. */
int cpus_active(void);

/* This CPU's x2APIC ID (CPUID leaf 0xB EDX; leaf 1 EBX[31:24] without it). */
u32 apic_id(void);
u32 cpu_apic_id(int cpu); /* of CPU number cpu, after smp_init() */
/* Switches this CPU's local APIC to x2APIC mode (no-op if it is); false if
 * CPUID says there is no x2APIC. */
bool x2apic_enable(void);
/* Writes the x2APIC ICR: dest in bits 63:32, low = delivery mode | vector | ... */
/*
 * Arms this CPU's x2APIC timer, one-shot, to fire @ns from now at @vector
 * (APIC_LVT_MASKED in @lvt_flags: count down without an interrupt).
 */
static inline void apic_timer_oneshot(u8 vector, u32 lvt_flags, u64 ns)
{
	wrmsr(MSR_X2APIC_TIMER_DIVIDE, APIC_TIMER_DIVIDE_BY_1);
	wrmsr(MSR_X2APIC_LVT_TIMER, lvt_flags | vector);
	wrmsr(MSR_X2APIC_TIMER_INITIAL, ns);
}

static inline void x2apic_icr_write(u32 low, u32 dest)
{
	wrmsr(MSR_X2APIC_ICR, (u64)dest << 32 | low);
}

/* A plain test-and-set spinlock for tests (not recursive). */
struct spinlock {
	int v;
};
static inline void spin_lock(struct spinlock *l)
{
	while (__atomic_exchange_n(&l->v, 1, __ATOMIC_ACQUIRE))
		while (__atomic_load_n(&l->v, __ATOMIC_RELAXED))
			pause();
}
static inline void spin_unlock(struct spinlock *l)
{
	__atomic_store_n(&l->v, 0, __ATOMIC_RELEASE);
}

/* ---- Physical memory ----------------------------------------------------- */

#define PAGE_SHIFT 12
#define PAGE_SIZE (1ul << PAGE_SHIFT)
#define LARGE_PAGE_SHIFT 21
#define LARGE_PAGE_SIZE (1ul << LARGE_PAGE_SHIFT)
#define BOOT_IDENTITY_MAP_END (4ul << 30) /* [0, 4 GiB) identity, 2 MiB pages */

/* Valid for pa < BOOT_IDENTITY_MAP_END under any map built by new_pml4(). */
static inline void *pa_to_ptr(u64 pa) { return (void *)(uintptr_t)pa; }
static inline u64 ptr_to_pa(const void *p) { return (u64)(uintptr_t)p; }

/*
 * A bump allocator over [first free page after the image and Multiboot data,
 * boot_info.ram_end_pa). Nothing is ever freed: a test image runs once.
 * Returns the pa of npages contiguous pages (contents not cleared), or 0 when
 * RAM is exhausted.
 */
u64 phys_alloc_pages(u64 npages);
u64 phys_alloc_pages_aligned(u64 npages, u64 align_bytes);
u64 phys_pages_free(void); /* pages still available */
/* One zeroed page as a pointer; aborts the test run if RAM is exhausted. */
void *alloc_page(void);

/* ---- Page tables (4-level) ------------------------------------------------- */

#define PT_PRESENT (1ul << 0)
#define PT_WRITABLE (1ul << 1)
#define PT_USER (1ul << 2)
#define PT_PWT (1ul << 3)
#define PT_PCD (1ul << 4)
#define PT_ACCESSED (1ul << 5)
#define PT_DIRTY (1ul << 6)
#define PT_PAGE_SIZE (1ul << 7) /* in a PDPTE/PDE: a 1 GiB/2 MiB leaf */
#define PT_GLOBAL (1ul << 8)
#define PT_NX (1ul << 63)
#define PT_ADDR_MASK 0x000ffffffffff000ul

/* The page tables boot.S built and CR3 points at when main() starts. */
u64 *boot_pml4(void);

/*
 * A fresh PML4 with a private deep copy of the boot identity map, so that
 * install_page() on it (which may split 2 MiB pages) never touches the boot
 * tables or another PML4. Load it with write_cr3(ptr_to_pa(pml4)).
 */
u64 *new_pml4(void);

/*
 * Maps the 4 KiB page at va to pa with flags (PT_PRESENT etc.; PT_PRESENT
 * is not implied). Allocates missing tables and splits a 1 GiB/2 MiB leaf on
 * the way into equivalent smaller pages. If pml4 is the live one (CR3),
 * va's TLB entry is flushed on this CPU only: other CPUs that use the same
 * tables must invlpg themselves (e.g. through on_cpu()).
 *
 * pa may have any bit of PT_ADDR_MASK set, also bits at or above
 * MAXPHYADDR: a TDX guest maps a page's shared alias with
 * install_page(pml4, va, pa | tdx_shared_mask(), flags) (tdx.h), an SNP
 * guest its private page with pa | snp_c_bit_mask() (snp.h). The CPU
 * takes a PTE address bit >= MAXPHYADDR as reserved (#PF with PFERR_RSVD):
 * QEMU's -cpu max has 40 physical address bits unless phys-bits= says more.
 */
void install_page(u64 *pml4, u64 va, u64 pa, u64 flags);
/* Same for one 2 MiB page; va and pa must be 2 MiB aligned. */
void install_large_page(u64 *pml4, u64 va, u64 pa, u64 flags);

/*
 * The leaf entry translating va (a PTE, or a PDE/PDPTE with PT_PAGE_SIZE),
 * or NULL if a table on the way is not present. Changing it is the caller's
 * business, flushing too (invlpg).
 */
u64 *get_pte(u64 *pml4, u64 va);

#endif /* CVMEM_LIBCFLAT_H */
