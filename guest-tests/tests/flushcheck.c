/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * flushcheck: proves the missing-flush detector (plugin arguments
 * test=hooks,flush-check=on). The guest caches a translation in QEMU's
 * softTLB, has the test device zap its page in the model without the flush
 * the zap asks for (OP_ZAP_NOFLUSH), and touches the page again: that one
 * load goes through the stale translation and the plugin must report
 * exactly one missing flush naming the zap (the manifest checks the exit
 * summary and the trace). After a flush the page is faulted in afresh and a
 * touch reports nothing.
 *
 * With `-append flushed` the zap is followed by its flush, as KVM always
 * does: then nothing may be reported.
 *
 * The page sits alone in a 2M-aligned region that nothing else uses, so the
 * zap (which removes the whole stage-2 leaf, up to 2M) makes no other
 * cached translation stale.
 */
#include "testdev.h"

#define SZ_2M (2ul << 20)

int main(void)
{
	bool flushed = cmdline_has("flushed");
	u64 pa = phys_alloc_pages_aligned(SZ_2M / PAGE_SIZE, SZ_2M);
	volatile u64 *p = (volatile u64 *)pa; /* the boot identity map */
	u64 v;

	report_prefix_push(flushed ? "zap+flush" : "zap without flush");
	*p = 0x1234;                          /* fill: QEMU caches it */
	report(*p == 0x1234, "page written and read through one cached translation");
	report(testdev(OP_ZAP_NOFLUSH, pa, 1, flushed) == 1, "the test device zapped the page's leaf");
	v = *p;                               /* the access the detector reports (unless flushed) */
	report(v == 0x1234, "the load completes (a default VM's zap keeps the content)");
	testdev(OP_FLUSH, 1, 0, 0);
	v = *p;                               /* faulted in again: nothing to report */
	report(v == 0x1234, "after a flush the page reads its content through a fresh translation");
	report_prefix_pop();
	return 0;
}
