// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * console.c: COM1 output and a small printf.
 *
 * The 16550 is driven by polling with interrupts off (IER = 0, OUT2 clear):
 * the runtime never enables interrupts, and a test's output must not depend
 * on an IRQ path the plugin under test might disturb.
 *
 * Several CPUs may print: output is serialised by a console lock that the
 * holding CPU may take again (a handler that prints while the interrupted
 * code was printing, report() around printf()).
 */
#include "internal.h"

#define COM1 0x3f8
#define UART_THR 0 /* transmit holding (DLAB = 0) */
#define UART_DLL 0 /* divisor latch low (DLAB = 1) */
#define UART_IER 1
#define UART_DLM 1
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_LSR_THRE 0x20

void serial_init(void)
{
	outb(0x00, COM1 + UART_IER);
	outb(0x80, COM1 + UART_LCR); /* DLAB */
	outb(0x01, COM1 + UART_DLL); /* 115200 baud */
	outb(0x00, COM1 + UART_DLM);
	outb(0x03, COM1 + UART_LCR); /* 8N1 */
	outb(0xc7, COM1 + UART_FCR); /* FIFO on, cleared */
	outb(0x03, COM1 + UART_MCR); /* DTR, RTS; OUT2 off: no IRQ */
}

/* The per-CPU area of the CPU holding the lock, or NULL; depth: its nesting. */
static struct percpu *console_owner;
static unsigned int console_depth;

void console_lock(void)
{
	struct percpu *me = this_cpu();
	struct percpu *expected;

	if (__atomic_load_n(&console_owner, __ATOMIC_RELAXED) == me) {
		console_depth++;
		return;
	}
	for (;;) {
		expected = NULL;
		if (__atomic_compare_exchange_n(&console_owner, &expected, me, false,
						__ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
			break;
		pause();
	}
	console_depth = 1;
}

void console_unlock(void)
{
	if (--console_depth == 0)
		__atomic_store_n(&console_owner, NULL, __ATOMIC_RELEASE);
}

void console_unlock_all(void)
{
	if (__atomic_load_n(&console_owner, __ATOMIC_RELAXED) != this_cpu())
		return;
	console_depth = 0;
	__atomic_store_n(&console_owner, NULL, __ATOMIC_RELEASE);
}

static void serial_putc(char c)
{
	while (!(inb(COM1 + UART_LSR) & UART_LSR_THRE))
		pause();
	outb((u8)c, COM1 + UART_THR);
}

int putchar(int c)
{
	console_lock();
	serial_putc((char)c);
	console_unlock();
	return (u8)c;
}

int puts(const char *s)
{
	console_lock();
	while (*s)
		serial_putc(*s++);
	serial_putc('\n');
	console_unlock();
	return 0;
}

/*
 * One formatter for both sinks: with buf == NULL characters go to the
 * serial port, else into buf (always NUL-terminated if size > 0). Returns
 * the length the full output has, as C's snprintf does.
 */
struct sink {
	char *buf;
	size_t size;
	size_t len;
};

static void emit(struct sink *s, char c)
{
	if (!s->buf)
		serial_putc(c);
	else if (s->len + 1 < s->size)
		s->buf[s->len] = c;
	s->len++;
}

static void emit_padded(struct sink *s, const char *str, size_t n, int width,
			bool left, char pad, bool negative)
{
	int fill = width - (int)n - (negative ? 1 : 0);

	/* Zero padding goes after the sign, space padding before it. */
	if (negative && pad == '0')
		emit(s, '-');
	while (!left && fill-- > 0)
		emit(s, pad);
	if (negative && pad != '0')
		emit(s, '-');
	for (size_t i = 0; i < n; i++)
		emit(s, str[i]);
	while (left && fill-- > 0)
		emit(s, ' ');
}

static void emit_number(struct sink *s, u64 v, unsigned int base, bool upper,
			bool negative, int width, bool left, char pad)
{
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	char tmp[24];
	size_t n = 0;

	do {
		tmp[sizeof(tmp) - 1 - n++] = digits[v % base];
		v /= base;
	} while (v);
	emit_padded(s, tmp + sizeof(tmp) - n, n, width, left, pad, negative);
}

static int format(struct sink *s, const char *fmt, va_list ap)
{
	for (; *fmt; fmt++) {
		bool left = false;
		char pad = ' ';
		int width = 0, lng = 0;

		if (*fmt != '%') {
			emit(s, *fmt);
			continue;
		}
		fmt++;
		for (;; fmt++) {
			if (*fmt == '-')
				left = true;
			else if (*fmt == '0')
				pad = '0';
			else
				break;
		}
		if (left)
			pad = ' ';
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		while (*fmt == 'l' || *fmt == 'z') {
			lng++;
			fmt++;
		}

		switch (*fmt) {
		case 'd':
		case 'i': {
			s64 v = lng ? va_arg(ap, long) : va_arg(ap, int);
			/* Negate in unsigned arithmetic: -INT64_MIN overflows s64. */
			u64 mag = v < 0 ? -(u64)v : (u64)v;

			emit_number(s, mag, 10, false, v < 0, width, left, pad);
			break;
		}
		case 'u':
		case 'x':
		case 'X': {
			u64 v = lng ? va_arg(ap, unsigned long) : va_arg(ap, unsigned int);

			emit_number(s, v, *fmt == 'u' ? 10 : 16, *fmt == 'X', false,
				    width, left, pad);
			break;
		}
		case 'p':
			emit(s, '0');
			emit(s, 'x');
			emit_number(s, (u64)(uintptr_t)va_arg(ap, void *), 16, false,
				    false, width > 2 ? width - 2 : 0, left, pad);
			break;
		case 's': {
			const char *str = va_arg(ap, const char *);

			if (!str)
				str = "(null)";
			emit_padded(s, str, strlen(str), width, left, ' ', false);
			break;
		}
		case 'c': {
			char c = (char)va_arg(ap, int);

			emit_padded(s, &c, 1, width, left, ' ', false);
			break;
		}
		case '%':
			emit(s, '%');
			break;
		case '\0':
			fmt--; /* a lone '%' at the end: stop at the NUL */
			break;
		default: /* unknown: print it as is, so the mistake is visible */
			emit(s, '%');
			emit(s, *fmt);
			break;
		}
	}
	if (s->buf && s->size)
		s->buf[s->len < s->size ? s->len : s->size - 1] = '\0';
	return (int)s->len;
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	/* buf must not be NULL: NULL selects the serial sink. */
	char dummy;
	struct sink s = { .buf = buf ? buf : &dummy, .size = buf ? size : 0 };

	return format(&s, fmt, ap);
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

int vprintf(const char *fmt, va_list ap)
{
	struct sink s = { 0 };
	int n;

	console_lock();
	n = format(&s, fmt, ap);
	console_unlock();
	return n;
}

int printf(const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vprintf(fmt, ap);
	va_end(ap);
	return n;
}
