/* SPDX-License-Identifier: GPL-2.0-or-later */
/* internal.h: runtime functions that tests do not call. */
#ifndef CVMEM_INTERNAL_H
#define CVMEM_INTERNAL_H

#include "libcflat.h"

void serial_init(void);                         /* console.c */
void idt_init(void);                            /* desc.c */
void exception_dispatch(struct ex_regs *regs);  /* desc.c, from isr.S */
void phys_alloc_init(u64 start_pa, u64 end_pa); /* alloc.c */
void runtime_start(u32 magic, u32 mbi_pa);      /* setup.c, from boot.S */
int main(void);                                 /* the test */

#endif /* CVMEM_INTERNAL_H */
