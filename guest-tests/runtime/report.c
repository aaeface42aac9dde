// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * report.c: kvm-unit-tests style result lines and the exit path.
 *
 * The runner reads the serial output and QEMU's exit status; both must agree,
 * so every way out (main returning, exit(), abort(), an unhandled exception)
 * prints the SUMMARY line and then writes isa-debug-exit.
 *
 * Any CPU may report: counting and printing a line happen under the console
 * lock, so lines and counts stay whole.
 */
#include "internal.h"

#define DEBUG_EXIT_PORT 0xf4

static struct report_stats stats;
static char prefix[256];
static size_t prefix_len[16]; /* strlen(prefix) before each push */
static unsigned int prefix_depth;

void report_prefix_push(const char *p)
{
	size_t len;

	console_lock();
	len = strlen(prefix);
	if (prefix_depth == ARRAY_SIZE(prefix_len)) {
		printf("report_prefix_push: more than %zu levels\n", ARRAY_SIZE(prefix_len));
		abort();
	}
	prefix_len[prefix_depth++] = len;
	snprintf(prefix + len, sizeof(prefix) - len, "%s: ", p);
	console_unlock();
}

void report_prefix_pop(void)
{
	console_lock();
	if (prefix_depth)
		prefix[prefix_len[--prefix_depth]] = '\0';
	console_unlock();
}

/* Called with the console lock held. */
static void vreport(const char *tag, const char *fmt, va_list ap)
{
	printf("%s: %s", tag, prefix);
	vprintf(fmt, ap);
	putchar('\n');
}

void report(bool pass, const char *fmt, ...)
{
	va_list ap;

	console_lock();
	stats.tests++;
	if (!pass)
		stats.failures++;
	va_start(ap, fmt);
	vreport(pass ? "PASS" : "FAIL", fmt, ap);
	va_end(ap);
	console_unlock();
}

void report_skip(const char *fmt, ...)
{
	va_list ap;

	console_lock();
	stats.tests++;
	stats.skipped++;
	va_start(ap, fmt);
	vreport("SKIP", fmt, ap);
	va_end(ap);
	console_unlock();
}

void report_info(const char *fmt, ...)
{
	va_list ap;

	console_lock();
	va_start(ap, fmt);
	vreport("INFO", fmt, ap);
	va_end(ap);
	console_unlock();
}

struct report_stats report_stats(void)
{
	struct report_stats s;

	console_lock();
	s = stats;
	console_unlock();
	return s;
}

int report_summary(int code)
{
	int status;

	console_lock();
	printf("SUMMARY: %u tests, %u unexpected failures, %u skipped\n",
	       stats.tests, stats.failures, stats.skipped);
	status = code ? code : stats.failures ? 1 : 0;
	console_unlock();
	return status;
}

/* The per-CPU area of the CPU that ends the run. */
static struct percpu *exiting_cpu;

void exit(int code)
{
	struct percpu *me = this_cpu();
	struct percpu *expected = NULL;
	int status;

	cli();
	if (!__atomic_compare_exchange_n(&exiting_cpu, &expected, me, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE) &&
	    expected != me) {
		/*
		 * Another CPU ends the run: stop here, without holding the
		 * console it needs for the SUMMARY line.
		 */
		console_unlock_all();
		for (;;)
			hlt();
	}
	status = report_summary(code);
	/* QEMU exits with (status << 1) | 1: 1 means pass, 3 fail. */
	outl((u32)status, DEBUG_EXIT_PORT);
	/* No isa-debug-exit device: stop here rather than run off. */
	for (;;)
		hlt();
}

void abort(void)
{
	report(false, "abort() called");
	exit(1);
}
