/*
 * qemu-plugin-cvm.h - confidential-VM extension of QEMU's TCG plugin API
 *
 * Copyright (C) 2026 The cvmem developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * This header is the contract between the cvmem patch series for QEMU and a
 * plugin such as libcvmem.so. The stock plugin API can only observe a guest;
 * the functions declared here let one plugin take part in the guest's memory
 * semantics (a second-stage translation at softTLB fill, instructions with a
 * confidential-computing meaning, exception injection, softTLB flushes).
 *
 * Discovery. A plugin must not link against these symbols directly: it looks
 * up qemu_plugin_cvm_api_version() with dlsym(RTLD_DEFAULT, ...) at install
 * time. If the symbol is absent the plugin runs in an unpatched QEMU and may
 * only observe. If it is present the plugin compares the version it returns
 * with the version it was built against (QEMU_PLUGIN_CVM_API_VERSION) and
 * refuses to install on a mismatch.
 *
 * Versioning. QEMU_PLUGIN_CVM_API_VERSION is bumped on every change of a
 * declaration, a structure layout or a documented behaviour in this file.
 * There is no backward compatibility between versions: plugin and QEMU must
 * agree exactly.
 *
 * The header is self-contained so that bindings can be generated from it
 * without a QEMU tree; inside QEMU it is included after qemu-plugin.h.
 */

#ifndef QEMU_PLUGIN_CVM_H
#define QEMU_PLUGIN_CVM_H

#include <stdbool.h>
#include <stdint.h>

#ifndef QEMU_QEMU_PLUGIN_H
/* Standalone use: ELF symbols are exported by QEMU's dynamic list. */
#define QEMU_PLUGIN_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The version of this header. */
#define QEMU_PLUGIN_CVM_API_VERSION 25

/**
 * qemu_plugin_cvm_api_version() - version of the cvm API this QEMU implements
 *
 * Returns: QEMU_PLUGIN_CVM_API_VERSION as it was when QEMU was built.
 * May be called at any time, including from qemu_plugin_install().
 */
QEMU_PLUGIN_API
uint32_t qemu_plugin_cvm_api_version(void);

/*
 * Only one plugin may register cvm callbacks. Every register function
 * returns 0 on success and -1 if another plugin holds the hook or an
 * argument is invalid. Callbacks run on the thread of the vCPU they concern
 * (under MTTCG, several at once) and must not block for long.
 */

/**
 * struct qemu_plugin_cvm_fault - an exception to raise in the guest
 * @vector: exception vector, 0-31 (for example 14 #PF, 20 #VE, 29 #VC)
 * @has_error_code: push @error_code (only honoured for vectors that push
 *                  one on x86: 8, 10-14, 17, 21, 29)
 * @error_code: the error code; for #PF any bits, including bit 31 (RMP)
 * @set_cr2: load @cr2 into CR2 before delivery (#PF)
 * @cr2: the faulting linear address for CR2
 */
struct qemu_plugin_cvm_fault {
    uint8_t vector;
    bool has_error_code;
    bool set_cr2;
    uint32_t error_code;
    uint64_t cr2;
};

/* Access types, as QEMU's MMUAccessType. */
enum qemu_plugin_cvm_access {
    QEMU_PLUGIN_CVM_ACCESS_READ = 0,
    QEMU_PLUGIN_CVM_ACCESS_WRITE = 1,
    QEMU_PLUGIN_CVM_ACCESS_FETCH = 2,
};

/* Protection bits of an allowed translation, as QEMU's PAGE_READ etc. */
#define QEMU_PLUGIN_CVM_PROT_READ  0x1
#define QEMU_PLUGIN_CVM_PROT_WRITE 0x2
#define QEMU_PLUGIN_CVM_PROT_EXEC  0x4

/**
 * struct qemu_plugin_cvm_s2_request - one guest-physical access to decide
 * @gpa: the guest-physical address the stage-1 walk produced (or the
 *       linear address when paging is off), with every bit the guest's
 *       page tables or CR3 carried: the TDX shared bit and the SNP C-bit are
 *       still in it
 * @gva: the linear address being translated (for a page-walk access, the
 *       address whose walk reads this entry)
 * @vcpu_index: the vCPU doing the access
 * @access: enum qemu_plugin_cvm_access. Page-walk accesses are reported as
 *          writes, because the walker may set accessed and dirty bits
 * @cpl: current privilege level, 0-3
 * @page_walk: the access reads a paging-structure entry (CR3 or a PDE etc.)
 * @paging: CR0.PG is set
 * @stage1_prot: QEMU_PLUGIN_CVM_PROT_* that stage 1 grants (all three for a
 *               page-walk access or with paging off)
 */
struct qemu_plugin_cvm_s2_request {
    uint64_t gpa;
    uint64_t gva;
    uint32_t vcpu_index;
    uint8_t access;
    uint8_t cpl;
    bool page_walk;
    bool paging;
    uint32_t stage1_prot;
};

/* What the stage-2 callback decided. */
enum qemu_plugin_cvm_s2_action {
    /* Install the translation described by the response's allow fields. */
    QEMU_PLUGIN_CVM_S2_ALLOW = 0,
    /* Raise the response's fault in the guest; nothing is installed. */
    QEMU_PLUGIN_CVM_S2_FAULT = 1,
    /*
     * The plugin changed state (mapped a page, converted memory, flushed)
     * and wants the whole translation, stage 1 included, done again. The
     * guest does not notice. The plugin must make progress.
     */
    QEMU_PLUGIN_CVM_S2_RETRY = 2,
    /*
     * The VM cannot go on: stop it as QEMU stops a KVM guest whose KVM_RUN
     * failed (a memory-fault exit QEMU refuses to convert, say). QEMU dumps
     * the vCPU's registers and stops the VM in the internal-error state;
     * the vCPU stays at the instruction, nothing of it done, and runs it
     * again if the VM is continued. See QEMU_PLUGIN_CVM_VM_EXIT_ON_STOP.
     */
    QEMU_PLUGIN_CVM_S2_STOP = 3,
};

/**
 * struct qemu_plugin_cvm_s2_response - the answer to a stage-2 request
 * @backing_gpa: ALLOW: the address in QEMU's guest-physical address space
 *               whose memory backs the page of @gpa (alias bits removed);
 *               only its page-frame part is used, the offset within the page
 *               comes from the request
 * @prot: ALLOW: QEMU_PLUGIN_CVM_PROT_* the softTLB entry may be used for,
 *        further restricted by stage 1. The access being decided is always
 *        permitted by an ALLOW answer.
 * @fault: FAULT: the exception to raise
 * @cache_span: ALLOW, with the stage-2 cache enabled
 *              (qemu_plugin_cvm_s2_cache_enable()): 0 to have QEMU ask
 *              again next time, or a power of two >= 4096: the same answer
 *              (@backing_gpa moved by the same offset) holds for every
 *              page of the @cache_span-aligned range around @gpa with the
 *              same request flags, until the generation changes
 */
struct qemu_plugin_cvm_s2_response {
    uint64_t backing_gpa;
    uint32_t prot;
    struct qemu_plugin_cvm_fault fault;
    uint64_t cache_span;
};

/**
 * typedef qemu_plugin_cvm_stage2_cb_t - the second-stage translation
 *
 * Called at every x86 softTLB fill, for the final address and for every
 * paging-structure entry the stage-1 walker reads, in every paging mode
 * (CR0.PG=0 included), before QEMU installs a translation. QEMU then caches
 * the answer in its softTLB until the plugin flushes it with
 * qemu_plugin_cvm_tlb_flush(): the softTLB is the TLB. The response is
 * zero-filled on entry. Returns an enum qemu_plugin_cvm_s2_action.
 */
typedef int (*qemu_plugin_cvm_stage2_cb_t)(
    const struct qemu_plugin_cvm_s2_request *req,
    struct qemu_plugin_cvm_s2_response *resp);

/**
 * qemu_plugin_cvm_register_stage2_cb() - take part in every translation
 * @id: the plugin's id
 * @cb: the callback
 */
QEMU_PLUGIN_API
int qemu_plugin_cvm_register_stage2_cb(uint64_t id,
                                       qemu_plugin_cvm_stage2_cb_t cb);

/**
 * qemu_plugin_cvm_s2_cache_enable() - let QEMU remember stage-2 answers
 * @generation: a counter the plugin changes (with a release store) after
 *              every change of its state that may make an answer it gave
 *              wrong; it must stay valid for the life of the process
 *
 * From then on QEMU keeps, per vCPU, the ALLOW answers whose response has a
 * @cache_span, with the value *@generation had before the callback was
 * called, keyed by the request's GPA page (alias bits included), CPL 3 or
 * not, @page_walk and @paging. A softTLB fill of that vCPU with the same
 * key, for an access the cached @prot allows, while *@generation still has
 * that value, takes the cached answer without calling the stage-2
 * callback, as a paging-structure cache spares hardware a walk of the EPT.
 * Everything else goes to the callback, as before. The cache is exact only
 * if the plugin bumps @generation for every change; it costs nothing until
 * enabled.
 */
QEMU_PLUGIN_API
void qemu_plugin_cvm_s2_cache_enable(const uint64_t *generation);

/**
 * struct qemu_plugin_cvm_s2_cache_stats - what the stage-2 cache answered
 * @hits: softTLB fills answered from the cache, without a callback
 * @page_walk_hits: those of @hits that read a paging-structure entry
 */
struct qemu_plugin_cvm_s2_cache_stats {
    uint64_t hits;
    uint64_t page_walk_hits;
};

/**
 * qemu_plugin_cvm_s2_cache_stats() - how often the stage-2 cache answered
 * @vcpu_index: the vCPU, or -1 for the sum over every vCPU
 * @stats: filled in
 */
QEMU_PLUGIN_API
void qemu_plugin_cvm_s2_cache_stats(int vcpu_index,
                                    struct qemu_plugin_cvm_s2_cache_stats *stats);

/**
 * qemu_plugin_cvm_tlb_flush() - drop softTLB entries
 * @vcpu_index: the vCPU whose entries to drop, or -1 for every vCPU
 *
 * Safe from any callback and from any thread. The calling vCPU's entries
 * are gone on return; another vCPU drops its entries before it executes its
 * next translation block.
 */
QEMU_PLUGIN_API
void qemu_plugin_cvm_tlb_flush(int vcpu_index);

/**
 * qemu_plugin_cvm_tlb_flush_range() - drop the softTLB entries of a range
 * @vcpu_index: the vCPU whose entries to drop, or -1 for every vCPU
 * @gpa: the first guest-physical address whose translations changed (alias
 *       bits such as the TDX shared bit or the SNP C-bit may be included)
 * @len: the length of the range in bytes
 *
 * As qemu_plugin_cvm_tlb_flush(), for a change that only affects the
 * translations of guest-physical pages in the range: a vCPU that cannot
 * hold one (none was filled since its last flush by the plugin) keeps its
 * entries; any other drops all of them. A vCPU keeps nothing that a walk
 * of the changed pages would answer differently, and skips the refills.
 */
QEMU_PLUGIN_API
void qemu_plugin_cvm_tlb_flush_range(int vcpu_index, uint64_t gpa,
                                     uint64_t len);

/**
 * qemu_plugin_cvm_phys_rw() - host access to guest-physical memory
 * @gpa: guest-physical address, alias bits removed
 * @buf: data to write, or buffer to read into
 * @len: bytes
 * @is_write: direction
 *
 * The access bypasses the stage-2 callback and the DMA check: it is the
 * hypervisor touching memory (for example clearing a page on conversion).
 * Returns 0 on success, -1 if part of the range is not memory.
 */
QEMU_PLUGIN_API
int qemu_plugin_cvm_phys_rw(uint64_t gpa, void *buf, uint64_t len,
                            bool is_write);

/**
 * qemu_plugin_cvm_phys_zero() - discard guest-physical memory
 * @gpa: guest-physical address, alias bits removed
 * @len: bytes
 *
 * Makes the range read as zero, as the hypervisor discarding memory
 * would, bypassing the stage-2 callback and the DMA check: what writing
 * zeros with qemu_plugin_cvm_phys_rw() does, but each page is tested in
 * place and only those holding data are cleared, with memset() on QEMU's
 * mapping of the RAM; RAM the guest never touched stays unallocated.
 * Callable from the threads qemu_plugin_cvm_phys_rw() is. Returns 0 on
 * success, -1 if part of the range is not writable RAM (what comes
 * before it is cleared).
 */
QEMU_PLUGIN_API
int qemu_plugin_cvm_phys_zero(uint64_t gpa, uint64_t len);

/**
 * qemu_plugin_cvm_thread_register() - make a thread of the plugin's known
 *
 * qemu_plugin_cvm_phys_rw() walks QEMU's memory map under RCU. A thread the
 * plugin started itself (a control socket, say) must register before its
 * first call, or a change of the memory map on another thread may free
 * what the access is using; it must call
 * qemu_plugin_cvm_thread_unregister() before it exits. QEMU's own threads
 * (vCPUs, the main loop) are registered already and must not call either.
 */
QEMU_PLUGIN_API
void qemu_plugin_cvm_thread_register(void);

/**
 * qemu_plugin_cvm_thread_unregister() - the registered thread is leaving
 */
QEMU_PLUGIN_API
void qemu_plugin_cvm_thread_unregister(void);

/**
 * struct qemu_plugin_cvm_memslot - a RAM section of guest-physical memory
 * @gpa: first guest-physical address, page aligned
 * @size: bytes, a multiple of the page size
 * @readonly: guest writes must not reach the memory (ROM, or a ROM device
 *            in ROMD mode); they are MMIO writes
 * @name: the memory region's name; valid during the callback only
 *
 * A memslot in KVM's sense: what QEMU would hand to KVM_SET_USER_MEMORY_REGION
 * for this range. Its memory is reached at the same addresses through
 * qemu_plugin_cvm_phys_rw() and as an ALLOW answer's @backing_gpa.
 */
struct qemu_plugin_cvm_memslot {
    uint64_t gpa;
    uint64_t size;
    bool readonly;
    const char *name;
};

/* What happens to a memslot. */
enum qemu_plugin_cvm_memslot_op {
    QEMU_PLUGIN_CVM_MEMSLOT_ADD = 0,
    QEMU_PLUGIN_CVM_MEMSLOT_DEL = 1,
};

/**
 * typedef qemu_plugin_cvm_memslot_cb_t - the memory map changed
 *
 * Called on the main-loop thread with the big QEMU lock held, while QEMU
 * commits a change of the system memory map, for every RAM or ROM-device
 * section of that map that appears or disappears, exactly where QEMU's KVM
 * memory listener would add or delete a KVM memslot: within one commit all
 * deletions come before all additions, so a section that moves, changes
 * size or becomes read-only arrives as DEL of the old slot then ADD of the
 * new one (a PCI BAR being moved, for example). A ROM device leaving ROMD
 * mode is a DEL alone; a DEL that matches no slot the plugin knows (a ROM
 * device that left ROMD mode before it was ever added) is to be ignored.
 */
typedef void (*qemu_plugin_cvm_memslot_cb_t)(
    enum qemu_plugin_cvm_memslot_op op,
    const struct qemu_plugin_cvm_memslot *slot);

/**
 * qemu_plugin_cvm_register_memslot_cb() - follow the guest's memslots
 * @id: the plugin's id
 * @cb: the callback
 *
 * Must be called from qemu_plugin_install(). Sections that already exist
 * are reported as ADD before the function returns.
 */
QEMU_PLUGIN_API
int qemu_plugin_cvm_register_memslot_cb(uint64_t id,
                                        qemu_plugin_cvm_memslot_cb_t cb);

/* The granule of the DMA check. */
#define QEMU_PLUGIN_CVM_DMA_PAGE_SIZE 4096

/**
 * typedef qemu_plugin_cvm_dma_cb_t - may a device touch this page?
 * @gpa: the page (QEMU_PLUGIN_CVM_DMA_PAGE_SIZE aligned) as the device
 *       addressed it
 * @is_write: the device writes to guest memory
 *
 * Called for accesses that devices make to guest memory through QEMU's DMA
 * API (dma_memory_read/write/set/map, the pci_dma_* and ld/st*_dma helpers
 * built on them, scatter-gather lists) and for the memory caches virtio
 * keeps of its rings: once per page touched, on whichever thread emulates
 * the device (a vCPU thread for port or MMIO triggered transfers, the main
 * loop, an I/O thread), possibly on several at once. Guest accesses made by
 * vCPUs never come here. Without a vIOMMU the address is guest-physical.
 *
 * Returns true to let the access through. For a refused page, reads return
 * all ones and writes are dropped while the transfer completes normally, as
 * when a device writes to a confidential guest's private memory through the
 * host's view of it; mappings (dma_memory_map, virtio's ring caches) end
 * before the first refused page, so a transfer that starts on one fails
 * the way a mapping failure does.
 */
typedef bool (*qemu_plugin_cvm_dma_cb_t)(uint64_t gpa, bool is_write);

/**
 * qemu_plugin_cvm_register_dma_cb() - check device accesses to guest memory
 * @id: the plugin's id
 * @cb: the callback
 */
QEMU_PLUGIN_API
int qemu_plugin_cvm_register_dma_cb(uint64_t id, qemu_plugin_cvm_dma_cb_t cb);

/* Instructions a plugin may emulate. */
enum qemu_plugin_cvm_insn {
    QEMU_PLUGIN_CVM_INSN_TDCALL = 0,    /* 66 0F 01 CC */
    QEMU_PLUGIN_CVM_INSN_VMGEXIT = 1,   /* F3 0F 01 D9 (rep vmmcall) */
    QEMU_PLUGIN_CVM_INSN_VMCALL = 2,    /* 0F 01 C1 */
    QEMU_PLUGIN_CVM_INSN_VMMCALL = 3,   /* 0F 01 D9 */
    QEMU_PLUGIN_CVM_INSN_PVALIDATE = 4, /* F2 0F 01 FF */
    QEMU_PLUGIN_CVM_INSN_RMPADJUST = 5, /* F3 0F 01 FE */
    QEMU_PLUGIN_CVM_INSN_CPUID = 6,     /* 0F A2 */
    QEMU_PLUGIN_CVM_INSN_RDMSR = 7,     /* 0F 32, after its CPL check */
    QEMU_PLUGIN_CVM_INSN_WRMSR = 8,     /* 0F 30, after its CPL check */
    QEMU_PLUGIN_CVM_INSN_IOIO = 9,      /* IN, OUT, INS, OUTS: see below */
    QEMU_PLUGIN_CVM_INSN_HLT = 10,      /* F4, after its CPL check */
    QEMU_PLUGIN_CVM_INSN_CR_WRITE = 11, /* writes of CR0 and CR4: see below */
    QEMU_PLUGIN_CVM_INSN_XSETBV = 12,   /* 0F 01 D1: see below */
    QEMU_PLUGIN_CVM_INSN_COUNT
};

/*
 * QEMU_PLUGIN_CVM_INSN_IOIO covers every form of IN, OUT, INS and OUTS
 * (E4-E7, EC-EF, 6C-6F, with or without REP). It is an intercept, not an
 * emulation: the plugin may raise an exception where the instruction
 * stands (the #VC, vector 29 with error code 0x7b, that an SEV-ES guest
 * takes there), but not carry the access out in its place. The callback
 * runs after the instruction's I/O permission checks (CPL against IOPL
 * and the TSS I/O permission bitmap, which raise #GP first) and before
 * QEMU's own SVM IOIO intercept check, with @rip at the instruction and
 * @info describing the access:
 *
 *   FAULT            raise regs->fault at the instruction; nothing of the
 *                    instruction has happened (no iteration of a REP form)
 *   STOP             stop the VM at the instruction (see
 *                    QEMU_PLUGIN_CVM_INSN_STOP)
 *   DECLINE, DONE    QEMU goes on with the instruction exactly as without
 *                    the hook; in neither case are registers written back
 *
 * A REP string form is handed over each time QEMU starts or resumes it:
 * before the first iteration (also with a count of zero), and again when
 * it resumes after an interrupt or exception, or where QEMU splits a long
 * repetition (every 65536 iterations; every iteration with icount or
 * single-stepping); @regs then has the remaining count and the current
 * addresses.
 *
 * @info has the EXITINFO1 encoding of an SVM IOIO intercept (AMD APM
 * vol. 2, 15.10.2 "IN and OUT Behavior"):
 */
#define QEMU_PLUGIN_CVM_IOIO_TYPE_IN    (1u << 0) /* IN or INS, not OUT(S) */
#define QEMU_PLUGIN_CVM_IOIO_STR        (1u << 2) /* INS or OUTS */
#define QEMU_PLUGIN_CVM_IOIO_REP        (1u << 3) /* a REP prefix */
#define QEMU_PLUGIN_CVM_IOIO_SZ8        (1u << 4) /* operand size 1 */
#define QEMU_PLUGIN_CVM_IOIO_SZ16       (1u << 5) /* operand size 2 */
#define QEMU_PLUGIN_CVM_IOIO_SZ32       (1u << 6) /* operand size 4 */
#define QEMU_PLUGIN_CVM_IOIO_A16        (1u << 7) /* address size 2 */
#define QEMU_PLUGIN_CVM_IOIO_A32        (1u << 8) /* address size 4 */
#define QEMU_PLUGIN_CVM_IOIO_A64        (1u << 9) /* address size 8 */
#define QEMU_PLUGIN_CVM_IOIO_PORT_SHIFT 16        /* bits 31:16, the port */
/*
 * Exactly one SZ and one A bit are set: the operand size, and the
 * instruction's address size for every form, string or not. REP is set
 * whenever the instruction carries a REP prefix (F2 or F3), as QEMU's own
 * SVM intercept reports it. SEG (bits 12:10, filled in only by
 * processors with decode assists) and the other bits are 0.
 *
 * QEMU_PLUGIN_CVM_INSN_HLT is handed over after HLT's CPL check (#GP
 * outside ring 0) and its SVM intercept check. DONE continues after the
 * HLT without halting (registers are written back as for the other
 * kinds), FAULT raises, and DECLINE halts the vCPU as QEMU does without
 * the hook, until an interrupt, NMI or INIT wakes it.
 *
 * QEMU_PLUGIN_CVM_INSN_CR_WRITE covers MOV to CR0 and CR4 (0F 22 /0, /4),
 * CLTS (0F 06) and LMSW (0F 01 /6), handed over after the instruction's
 * CPL check (#GP outside ring 0) and its SVM intercept check. Like
 * QEMU_PLUGIN_CVM_INSN_IOIO it is an intercept: FAULT raises regs->fault
 * with the control register unchanged, STOP stops the VM, DECLINE lets
 * QEMU write the register as without the hook, and DONE does the same
 * except that a MOV writes the value the plugin left in its source
 * register in @gpr (as a VMX guest/host mask keeps the bits it owns); no
 * register is written back. @info has the exit qualification a VMX control-register
 * access reports (Intel SDM vol. 3C, Table 28-3): bits 3:0 the control
 * register, 5:4 the access type (0 MOV to CR, 2 CLTS, 3 LMSW), bit 6
 * LMSW's operand type (1: memory), 11:8 MOV's source register and 31:16
 * LMSW's source data. For MOV, @gpr of the source register holds the value
 * as the instruction writes it (its low 32 bits outside 64-bit mode).
 *
 * QEMU_PLUGIN_CVM_INSN_XSETBV is handed over after the instruction's #UD
 * checks (no XSAVE in CPUID, a 66/F2/F3 prefix, CR4.OSXSAVE clear), its
 * SVM intercept check and its CPL check (#GP outside ring 0), with ECX
 * and EDX:EAX in @gpr: where a VMX guest's XSETBV exits (Intel SDM vol.
 * 3C, 26.1.1, puts those exceptions before the exit). It is an intercept
 * like QEMU_PLUGIN_CVM_INSN_IOIO: FAULT raises regs->fault with XCR0
 * unchanged, STOP stops the VM, and DECLINE or DONE let QEMU go on with
 * its own checks and the write; no register is written back.
 */

/* Register indices in struct qemu_plugin_cvm_regs.gpr: x86 encoding order. */
enum qemu_plugin_cvm_gpr {
    QEMU_PLUGIN_CVM_RAX, QEMU_PLUGIN_CVM_RCX, QEMU_PLUGIN_CVM_RDX,
    QEMU_PLUGIN_CVM_RBX, QEMU_PLUGIN_CVM_RSP, QEMU_PLUGIN_CVM_RBP,
    QEMU_PLUGIN_CVM_RSI, QEMU_PLUGIN_CVM_RDI, QEMU_PLUGIN_CVM_R8,
    QEMU_PLUGIN_CVM_R9, QEMU_PLUGIN_CVM_R10, QEMU_PLUGIN_CVM_R11,
    QEMU_PLUGIN_CVM_R12, QEMU_PLUGIN_CVM_R13, QEMU_PLUGIN_CVM_R14,
    QEMU_PLUGIN_CVM_R15,
};

/* Arithmetic flags a plugin may change in rflags (CF PF AF ZF SF OF). */
#define QEMU_PLUGIN_CVM_RFLAGS_WRITABLE 0x8d5ull

/**
 * struct qemu_plugin_cvm_regs - the vCPU state an instruction sees
 * @gpr: general registers; written back when the plugin handles the insn
 * @rflags: flags; the QEMU_PLUGIN_CVM_RFLAGS_WRITABLE bits are written back
 * @rip: address of the instruction (read only: QEMU moves past it)
 * @cr0, @cr3, @cr4, @efer: read only
 * @cpl: current privilege level (read only)
 * @insn_len: length of the instruction in bytes
 * @info: more about the instruction, for kinds whose registers do not say
 *        everything (read only): for QEMU_PLUGIN_CVM_INSN_IOIO the access
 *        (QEMU_PLUGIN_CVM_IOIO_*); 0 for the other kinds
 * @fault: the exception to raise when the callback answers FAULT
 */
struct qemu_plugin_cvm_regs {
    uint64_t gpr[16];
    uint64_t rflags;
    uint64_t rip;
    uint64_t cr0;
    uint64_t cr3;
    uint64_t cr4;
    uint64_t efer;
    uint32_t cpl;
    uint32_t insn_len;
    uint64_t info;
    struct qemu_plugin_cvm_fault fault;
};

/* What the instruction callback did. */
enum qemu_plugin_cvm_insn_action {
    /* Not for this plugin: QEMU does what it does without the hook. */
    QEMU_PLUGIN_CVM_INSN_DECLINE = 0,
    /*
     * Emulated: write registers back and continue after the instruction
     * (for QEMU_PLUGIN_CVM_INSN_IOIO: the same as DECLINE).
     */
    QEMU_PLUGIN_CVM_INSN_DONE = 1,
    /* Raise regs->fault at the instruction; registers are not written. */
    QEMU_PLUGIN_CVM_INSN_FAULT = 2,
    /*
     * As DONE, then the vCPU halts until an external interrupt is pending,
     * whatever RFLAGS.IF says (it is delivered once the guest sets IF), or
     * an NMI, SMI, INIT or SIPI arrives: how KVM halts a vCPU for a
     * TDVMCALL<Instruction.HLT> whose guest says its interrupts are not
     * blocked. Not for QEMU_PLUGIN_CVM_INSN_IOIO.
     */
    QEMU_PLUGIN_CVM_INSN_DONE_HALT = 3,
    /*
     * As DONE, then the vCPU halts as a HLT after the instruction would: an
     * external interrupt wakes it only with RFLAGS.IF set.
     */
    QEMU_PLUGIN_CVM_INSN_DONE_HLT = 4,
    /*
     * The VM cannot go on: stopped as for QEMU_PLUGIN_CVM_S2_STOP, the vCPU
     * at the instruction, registers not written.
     */
    QEMU_PLUGIN_CVM_INSN_STOP = 5,
};

/**
 * typedef qemu_plugin_cvm_insn_cb_t - emulate an instruction
 *
 * Called when the vCPU executes an instruction of a kind the plugin
 * registered, before QEMU's own handling (for QEMU_PLUGIN_CVM_INSN_IOIO
 * only to intercept it, see there). Returns an enum
 * qemu_plugin_cvm_insn_action.
 */
typedef int (*qemu_plugin_cvm_insn_cb_t)(uint32_t vcpu_index,
                                         enum qemu_plugin_cvm_insn insn,
                                         struct qemu_plugin_cvm_regs *regs);

/**
 * qemu_plugin_cvm_register_insn_cb() - emulate instructions
 * @id: the plugin's id
 * @insn_mask: bit (1 << enum qemu_plugin_cvm_insn) for each kind wanted
 * @cb: the callback
 *
 * Must be called from qemu_plugin_install(), before any code is translated.
 */
QEMU_PLUGIN_API
int qemu_plugin_cvm_register_insn_cb(uint64_t id, uint32_t insn_mask,
                                     qemu_plugin_cvm_insn_cb_t cb);

/*
 * Host services for the instruction callback. A plugin that emulates a
 * TDX module or SNP firmware handles guest requests the way KVM hands them
 * to the VMM (TDVMCALL or GHCB exits for CPUID, MSRs, port I/O, fatal
 * errors). These functions give it QEMU's answers. They may only be called
 * from the instruction callback, on the thread of the vCPU it runs for, and
 * act for that vCPU; called elsewhere they do nothing and return -1.
 */

/**
 * qemu_plugin_cvm_cpuid() - the vCPU's CPUID, as QEMU's CPU model answers it
 * @leaf: EAX
 * @subleaf: ECX
 * @out: EAX, EBX, ECX, EDX
 *
 * Also callable from the machine-ready callback, where it answers for
 * vCPU 0. Returns 0, or -1 outside those callbacks.
 */
QEMU_PLUGIN_API
int qemu_plugin_cvm_cpuid(uint32_t leaf, uint32_t subleaf, uint32_t out[4]);

/**
 * qemu_plugin_cvm_msr_rw() - the vCPU's RDMSR or WRMSR, as QEMU emulates it
 * @msr: the MSR index
 * @value: the value to write, or where the value read goes
 * @is_write: WRMSR rather than RDMSR
 *
 * No intercept checks, no exception: returns 0 on success and -1 where the
 * instruction would raise #GP (or outside an instruction callback).
 */
QEMU_PLUGIN_API
int qemu_plugin_cvm_msr_rw(uint32_t msr, uint64_t *value, bool is_write);

/**
 * qemu_plugin_cvm_pio_rw() - a port I/O access on behalf of the vCPU
 * @port: the I/O port
 * @value: the value to write (low @size bytes), or where the value read
 *         goes (zero-extended)
 * @size: 1, 2 or 4
 * @is_write: OUT rather than IN
 *
 * The access is made the way QEMU makes KVM's I/O exits: a device that
 * does not take @size bytes at once sees it split into accesses it takes.
 * Returns 0, or -1 for a bad size or outside an instruction callback. An
 * unassigned port reads all ones, as IN does.
 */
QEMU_PLUGIN_API
int qemu_plugin_cvm_pio_rw(uint16_t port, uint32_t *value, uint32_t size,
                           bool is_write);

/**
 * qemu_plugin_cvm_guest_panicked() - the guest reported a fatal error
 *
 * Does what QEMU does when a guest panics (qemu_system_guest_panicked()):
 * the -action panic= setting decides whether the VM pauses, shuts down or
 * exits with a failure. The vCPU stops at the end of the callback.
 * Returns 0, or -1 outside an instruction callback.
 */
QEMU_PLUGIN_API
int qemu_plugin_cvm_guest_panicked(void);

/*
 * Starting and stopping vCPUs with a register state of the plugin's
 * choosing: what KVM does for an SEV-SNP guest's AP creation request
 * (GHCB NAE event 0x80000013), which hands KVM a VMSA page to run the
 * vCPU from (arch/x86/kvm/svm/sev.c: sev_snp_ap_creation() asks the
 * target vCPU to load it with KVM_REQ_UPDATE_PROTECTED_GUEST_STATE, and
 * __sev_snp_update_protected_guest_state() makes it runnable, or halted
 * and not runnable when the request destroys it).
 */

/**
 * struct qemu_plugin_cvm_segment - a segment register, GDTR or IDTR
 * @selector: the selector (not used for GDTR and IDTR)
 * @attrib: the attributes in the VMCB/VMSA encoding (AMD APM vol. 2,
 *          15.5.1 "Segment State in the VMCB"): descriptor bits 40:47 in
 *          bits 7:0 (type, S, DPL, P) and bits 52:55 in bits 11:8 (AVL, L,
 *          D/B, G); not used for GDTR and IDTR
 * @limit: the limit, expanded (byte granular)
 * @base: the base
 */
struct qemu_plugin_cvm_segment {
    uint16_t selector;
    uint16_t attrib;
    uint32_t limit;
    uint64_t base;
};

/**
 * struct qemu_plugin_cvm_vcpu_state - the register state of a vCPU
 *
 * What an SEV-ES VMSA (AMD APM vol. 2, Table B-4) holds that a TCG vCPU
 * runs on. Fields are loaded as VMRUN loads a VMCB's save area (QEMU's
 * helper_vmrun()): no consistency check is made, the plugin is the
 * hardware that checked them.
 *
 * @es, @cs, @ss, @ds, @fs, @gs, @ldtr, @tr: segment registers
 * @gdtr, @idtr: base and limit
 * @cr0, @cr2, @cr3, @cr4, @efer: control registers; EFER as is (LMA too)
 * @dr6, @dr7: debug registers
 * @rflags, @rip: flags and instruction pointer
 * @gpr: general registers, in enum qemu_plugin_cvm_gpr order
 * @xcr0: XCR0
 * @pat: IA32_PAT (the VMSA's G_PAT)
 * @star, @lstar, @cstar, @sfmask, @kernel_gs_base: the SYSCALL MSRs
 * @sysenter_cs, @sysenter_esp, @sysenter_eip: the SYSENTER MSRs
 * @x87_fcw: the x87 control word
 * @x87_ftw: the x87 tag word, two bits a register (3: empty)
 * @mxcsr: MXCSR
 */
struct qemu_plugin_cvm_vcpu_state {
    struct qemu_plugin_cvm_segment es, cs, ss, ds, fs, gs, ldtr, tr;
    struct qemu_plugin_cvm_segment gdtr, idtr;
    uint64_t cr0, cr2, cr3, cr4, efer;
    uint64_t dr6, dr7;
    uint64_t rflags, rip;
    uint64_t gpr[16];
    uint64_t xcr0;
    uint64_t pat;
    uint64_t star, lstar, cstar, sfmask, kernel_gs_base;
    uint64_t sysenter_cs, sysenter_esp, sysenter_eip;
    uint16_t x87_fcw;
    uint16_t x87_ftw;
    uint32_t mxcsr;
};

/**
 * qemu_plugin_cvm_vcpu_set_state() - load a register state and run it
 * @vcpu_index: the vCPU
 * @s: the state (copied: the caller may reuse it at once)
 *
 * The vCPU loads @s on its own thread, as queued work (async_run_on_cpu())
 * that runs before it executes guest code again, and then runs from it:
 * it is no longer halted, parked or waiting for a SIPI (a later SIPI does
 * not move it), and its softTLB is flushed. Its local APIC, pending
 * interrupts and everything @s does not name stay as they are. The
 * calling vCPU, if it is @vcpu_index, loads @s after its current
 * instruction. May be called from the instruction callback of any vCPU.
 * Returns 0, or -1 if there is no such vCPU.
 */
QEMU_PLUGIN_API
int qemu_plugin_cvm_vcpu_set_state(uint32_t vcpu_index,
                                   const struct qemu_plugin_cvm_vcpu_state *s);

/**
 * qemu_plugin_cvm_vcpu_park() - make a vCPU halted and not runnable
 * @vcpu_index: the vCPU
 *
 * As queued work on the vCPU's thread: the vCPU halts and nothing wakes
 * it (interrupts, NMIs, INIT and SIPI stay pending) until
 * qemu_plugin_cvm_vcpu_set_state() starts it again or the machine is
 * reset: KVM's SNP AP destroy, after which the vCPU has no VMSA to run.
 * May be called from the instruction callback of any vCPU. Returns 0, or
 * -1 if there is no such vCPU.
 */
QEMU_PLUGIN_API
int qemu_plugin_cvm_vcpu_park(uint32_t vcpu_index);

/* Answers of qemu_plugin_cvm_vcpu_reset_cb_t. */
enum qemu_plugin_cvm_reset {
    /* The architectural reset state (QEMU's): APs wait for a SIPI. */
    QEMU_PLUGIN_CVM_RESET_DEFAULT = 0,
    /*
     * The state the callback wrote, loaded as qemu_plugin_cvm_vcpu_set_state()
     * loads it; the vCPU runs from it when the machine starts, an AP too.
     */
    QEMU_PLUGIN_CVM_RESET_LOAD = 1,
};

/**
 * typedef qemu_plugin_cvm_vcpu_reset_cb_t - the state a vCPU starts from
 * @vcpu_index: the vCPU
 * @s: zeroed; the state to load with QEMU_PLUGIN_CVM_RESET_LOAD
 *
 * Called on the main-loop thread at every machine reset (the first one
 * follows the machine-ready callback), for each vCPU after the vCPU and
 * its local APIC were reset, with all vCPUs stopped: what KVM's
 * KVM_TDX_INIT_VCPU (TDH.VP.INIT) gives every vCPU of a TD, which starts
 * at the firmware's reset vector in protected mode, APs included.
 * Returns enum qemu_plugin_cvm_reset.
 */
typedef int (*qemu_plugin_cvm_vcpu_reset_cb_t)(
    uint32_t vcpu_index, struct qemu_plugin_cvm_vcpu_state *s);

/**
 * qemu_plugin_cvm_register_vcpu_reset_cb() - choose the vCPUs' reset state
 * @id: the plugin's id
 * @cb: the callback
 *
 * Must be called from qemu_plugin_install().
 */
QEMU_PLUGIN_API
int qemu_plugin_cvm_register_vcpu_reset_cb(uint64_t id,
                                           qemu_plugin_cvm_vcpu_reset_cb_t cb);

/* The inter-processor events of qemu_plugin_cvm_init_sipi_cb_t. */
enum qemu_plugin_cvm_init_sipi {
    QEMU_PLUGIN_CVM_INIT = 0,
    QEMU_PLUGIN_CVM_SIPI = 1,
};

/**
 * typedef qemu_plugin_cvm_init_sipi_cb_t - an INIT or a SIPI arrives
 * @vcpu_index: the vCPU it is for
 * @event: enum qemu_plugin_cvm_init_sipi
 * @vector: a SIPI's vector (0 for INIT)
 *
 * Called on the target vCPU's thread, with the BQL held, when it would
 * act on an INIT (reset, then wait for a SIPI) or a SIPI (start at the
 * vector if waiting for one). Returns true to drop the event, which then
 * has no effect at all: KVM blocks INIT and SIPI for a TD
 * (kvm_apic_init_sipi_allowed()), whose vCPUs the TDX module alone
 * starts. false: QEMU acts as before.
 */
typedef bool (*qemu_plugin_cvm_init_sipi_cb_t)(uint32_t vcpu_index, int event,
                                               uint8_t vector);

/**
 * qemu_plugin_cvm_register_init_sipi_cb() - see, and maybe drop, INIT/SIPI
 * @id: the plugin's id
 * @cb: the callback
 *
 * Must be called from qemu_plugin_install().
 */
QEMU_PLUGIN_API
int qemu_plugin_cvm_register_init_sipi_cb(uint64_t id,
                                          qemu_plugin_cvm_init_sipi_cb_t cb);

/*
 * The VM's life: what QEMU knows about how a run ends that a plugin
 * modelling KVM needs, and the checks it makes before the guest runs.
 */

/*
 * Flags for qemu_plugin_cvm_set_vm_flags().
 *
 * QEMU_PLUGIN_CVM_VM_NOT_RESETTABLE: the vCPUs' state cannot be reset, as
 * for a KVM guest whose state is protected (TDX, SEV-ES, SEV-SNP:
 * cpus_are_resettable() is false). A reset request then ends the VM with
 * "cpus are not resettable, terminating", as QEMU ends such a KVM guest.
 *
 * QEMU_PLUGIN_CVM_VM_EXIT_ON_STOP: a STOP answer ends QEMU with exit status
 * 1 (a shutdown with QEMU_PLUGIN_CVM_SHUTDOWN_HOST_ERROR) instead of leaving
 * the VM paused in the internal-error state: for test runs, where nobody
 * is at the monitor.
 */
#define QEMU_PLUGIN_CVM_VM_NOT_RESETTABLE (1u << 0)
#define QEMU_PLUGIN_CVM_VM_EXIT_ON_STOP   (1u << 1)

/**
 * qemu_plugin_cvm_set_vm_flags() - how the VM may be reset and stopped
 * @id: the plugin's id
 * @flags: QEMU_PLUGIN_CVM_VM_* (0 by default)
 *
 * Must be called from qemu_plugin_install().
 */
QEMU_PLUGIN_API
int qemu_plugin_cvm_set_vm_flags(uint64_t id, uint32_t flags);

/**
 * typedef qemu_plugin_cvm_machine_ready_cb_t - the machine is built
 *
 * Called once on the main-loop thread, with the BQL held, when QEMU has
 * created the machine and its vCPUs and before any vCPU executes guest
 * code (the machine-init-done notifiers). qemu_plugin_cvm_cpuid() may be
 * called from it and answers for vCPU 0. Returns 0 to let the guest run;
 * any other value makes QEMU exit with status 1 at once: the plugin has
 * said why (one line naming the option to change).
 */
typedef int (*qemu_plugin_cvm_machine_ready_cb_t)(void);

/**
 * qemu_plugin_cvm_register_machine_ready_cb() - check the machine
 * @id: the plugin's id
 * @cb: the callback
 *
 * Must be called from qemu_plugin_install().
 */
QEMU_PLUGIN_API
int qemu_plugin_cvm_register_machine_ready_cb(
    uint64_t id, qemu_plugin_cvm_machine_ready_cb_t cb);

/* Why a run ends or restarts: QEMU's ShutdownCause (qapi/run-state.json). */
enum qemu_plugin_cvm_shutdown_cause {
    QEMU_PLUGIN_CVM_SHUTDOWN_NONE = 0,
    QEMU_PLUGIN_CVM_SHUTDOWN_HOST_ERROR = 1,     /* QEMU gave up */
    QEMU_PLUGIN_CVM_SHUTDOWN_HOST_QMP_QUIT = 2,  /* quit command */
    QEMU_PLUGIN_CVM_SHUTDOWN_HOST_QMP_SYSTEM_RESET = 3,
    QEMU_PLUGIN_CVM_SHUTDOWN_HOST_SIGNAL = 4,    /* SIGINT, SIGTERM ... */
    QEMU_PLUGIN_CVM_SHUTDOWN_HOST_UI = 5,        /* the window closed */
    QEMU_PLUGIN_CVM_SHUTDOWN_GUEST_SHUTDOWN = 6, /* ACPI poweroff etc. */
    QEMU_PLUGIN_CVM_SHUTDOWN_GUEST_RESET = 7,    /* reset or triple fault */
    QEMU_PLUGIN_CVM_SHUTDOWN_GUEST_PANIC = 8,    /* -action panic=... */
    QEMU_PLUGIN_CVM_SHUTDOWN_SUBSYSTEM_RESET = 9,
    QEMU_PLUGIN_CVM_SHUTDOWN_SNAPSHOT_LOAD = 10,
};

/**
 * struct qemu_plugin_cvm_shutdown - a shutdown or reset QEMU carries out
 * @cause: enum qemu_plugin_cvm_shutdown_cause
 * @reset: QEMU resets the machine and the guest runs again; false: the
 *         run ends (QEMU exits, or pauses with -action shutdown=pause). A
 *         reset request ends the run under -no-reboot (-action
 *         reboot=shutdown) and with QEMU_PLUGIN_CVM_VM_NOT_RESETTABLE
 * @triple_fault: the request came from a triple fault (an exception while
 *                delivering a #DF); the next three fields say where
 * @vector: the exception that could not be delivered
 * @vcpu_index: the vCPU that triple-faulted
 * @rip: its RIP at the faulting instruction
 * @exit_code: the status QEMU exits with where the request chose one (a
 *             guest's isa-debug-exit write: (value << 1) | 1), else 0
 */
struct qemu_plugin_cvm_shutdown {
    uint32_t cause;
    bool reset;
    bool triple_fault;
    uint8_t vector;
    uint32_t vcpu_index;
    uint64_t rip;
    int32_t exit_code;
};

/**
 * typedef qemu_plugin_cvm_shutdown_cb_t - a run ends or restarts
 *
 * Called on the main-loop thread, with the BQL held, when QEMU acts on a
 * shutdown or reset request, before it resets the machine or leaves its
 * main loop. QEMU exiting otherwise (exit() in a device such as
 * isa-debug-exit, a fatal error) comes with no call.
 */
typedef void (*qemu_plugin_cvm_shutdown_cb_t)(
    const struct qemu_plugin_cvm_shutdown *ev);

/**
 * qemu_plugin_cvm_register_shutdown_cb() - follow the VM's runs
 * @id: the plugin's id
 * @cb: the callback
 */
QEMU_PLUGIN_API
int qemu_plugin_cvm_register_shutdown_cb(uint64_t id,
                                         qemu_plugin_cvm_shutdown_cb_t cb);

/*
 * The firmware. A TD's TDVF and an SEV-SNP guest's OVMF live in the
 * guest's private memory, where the launch adds (TDH.MEM.PAGE.ADD) or
 * validates (SNP_LAUNCH_UPDATE) them, not in QEMU's read-only BIOS ROM:
 * QEMU 10.1 gives such a guest its -bios image as guest_memfd RAM.
 */

/* Answers of qemu_plugin_cvm_firmware_cb_t. */
enum qemu_plugin_cvm_firmware {
    /* A read-only ROM, copied in at every reset (QEMU's default). */
    QEMU_PLUGIN_CVM_FIRMWARE_ROM = 0,
    /*
     * Writable RAM at the same address, loaded once now and never again;
     * no copy of its last 128 KiB below 1 MiB (the ISA BIOS alias), and
     * the option ROM area at 0xc0000 (pc.rom) writable RAM too: as QEMU
     * builds a machine whose RAM is guest_memfd.
     */
    QEMU_PLUGIN_CVM_FIRMWARE_RAM = 1,
    /* Refused: QEMU exits with status 1 (the plugin has said why). */
    QEMU_PLUGIN_CVM_FIRMWARE_REFUSE = 2,
};

/**
 * typedef qemu_plugin_cvm_firmware_cb_t - where the -bios image goes
 * @gpa: the guest-physical address it is mapped at (4 GiB - @size)
 * @image: the image's content, valid during the call only
 * @size: its size in bytes
 *
 * Called once on the main-loop thread while the machine is built (x86
 * machines that load a -bios image, not pflash), before the machine-ready
 * callback. Returns enum qemu_plugin_cvm_firmware.
 */
typedef int (*qemu_plugin_cvm_firmware_cb_t)(uint64_t gpa, const void *image,
                                             uint64_t size);

/**
 * qemu_plugin_cvm_register_firmware_cb() - decide where the firmware goes
 * @id: the plugin's id
 * @cb: the callback
 *
 * Must be called from qemu_plugin_install().
 */
QEMU_PLUGIN_API
int qemu_plugin_cvm_register_firmware_cb(uint64_t id,
                                         qemu_plugin_cvm_firmware_cb_t cb);

#ifdef __cplusplus
}
#endif

#endif /* QEMU_PLUGIN_CVM_H */
