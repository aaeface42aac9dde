/* SPDX-License-Identifier: GPL-2.0-or-later */
/* internal.h: runtime functions that tests do not call. */
#ifndef CVMEM_INTERNAL_H
#define CVMEM_INTERNAL_H

#include "libcflat.h"

struct ghcb;

/*
 * The per-CPU area, one per CPU slot; GS base points at it (MSR_GS_BASE),
 * so that "%gs:offset" reaches this CPU's copy. Slot 0 is the BSP, APs take
 * slots in arrival order; `id` is the smp_id() number. The offsets libcflat.h
 * names (PERCPU_*) are checked in smp.c.
 */
struct percpu {
	struct percpu *self;    /* 0: this_cpu() reads it */
	int ex_last_vector;     /* 8: PERCPU_EX_LAST_VECTOR, written by ASM_TRY */
	int id;                 /* 12: PERCPU_ID, smp_id() */
	u64 ex_last_error_code;
	u64 ex_last_cr2;
	u32 apic_id;
	bool in_unhandled;      /* an unhandled exception is being reported */
	volatile bool online;   /* an AP reached its idle loop */
	/* on_cpu*(): busy goes 0 -> 1 when a caller claims the CPU, back to 0
	 * after fn returned and done counted it; fn != NULL means "run me". */
	int busy;
	void (*fn)(void *);
	void *arg;
	u64 done;               /* functions run to completion */
	struct ghcb *ghcb;      /* SNP: this CPU's GHCB (snp.c), NULL until registered */
	bool ghcb_active;       /* SNP: between ghcb_start() and ghcb_end() */
	bool ve_info_valid;     /* TDX: ve_info holds a #VE the runtime passed on */
	u64 ve_info[5];         /* TDX: its RCX, RDX, R8, R9, R10 (tdx.c) */
};

extern struct percpu percpu_area[MAX_CPUS];
extern int smp_online_cpus; /* 1 until smp_init() brought up the APs */

static inline struct percpu *this_cpu(void)
{
	struct percpu *p;

	asm volatile("movq %%gs:0, %0" : "=r"(p));
	return p;
}

void serial_init(void);                         /* console.c */
void console_lock(void);                        /* console.c: recursive per CPU */
void console_unlock(void);
void console_unlock_all(void);                  /* if this CPU holds it: let go entirely */
void idt_init(void);                            /* desc.c: build and load */
void idt_load(void);                            /* desc.c: load on this CPU */
void exception_dispatch(struct ex_regs *regs);  /* desc.c, from isr.S */
void phys_alloc_init(u64 start_pa, u64 end_pa); /* alloc.c */
void percpu_init_bsp(void);                     /* smp.c */
void runtime_start(u32 magic, u32 mbi_pa);      /* setup.c, from boot.S */
void ap_main(int slot);                         /* smp.c, from boot.S */
void snp_init_bsp(void);                        /* snp.c: the BSP's GHCB, if SNP */
void snp_prepare_ap(int slot);                  /* snp.c: a shared GHCB page for an AP */
void snp_init_ap(struct percpu *cpu);           /* snp.c: the AP registers it */
bool snp_handle_vc(struct ex_regs *regs);       /* snp.c (snp.h) */
void tdx_init_bsp(void);                        /* tdx.c: is this a TD? */
bool tdx_ve_entry(struct ex_regs *regs);        /* tdx.c: the runtime's #VE handling */
bool user_exception(struct ex_regs *regs);      /* user.c: an exception at CPL 3 */
void tdx_dump_ve(void);                         /* tdx.c: the VE info passed on, if any */
int main(void);                                 /* the test */

#endif /* CVMEM_INTERNAL_H */
