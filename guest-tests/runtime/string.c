// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * string.c: the few libc string functions; gcc emits calls to memset and
 * memcpy on its own even with -ffreestanding. Those two use rep stosb/movsb
 * so that gcc cannot turn their loops back into calls to themselves.
 */
#include "libcflat.h"

void *memset(void *dst, int c, size_t n)
{
	void *d = dst;

	asm volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
	return dst;
}

void *memcpy(void *dst, const void *src, size_t n)
{
	void *d = dst;

	asm volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) :: "memory");
	return dst;
}

bool all_bytes(const volatile void *p, u64 len, u8 c)
{
	const volatile u8 *b = p;

	for (u64 i = 0; i < len; i++)
		if (b[i] != c)
			return false;
	return true;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const u8 *p = a, *q = b;

	for (; n; n--, p++, q++)
		if (*p != *q)
			return *p - *q;
	return 0;
}

size_t strlen(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}

int strcmp(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return (u8)*a - (u8)*b;
}

int strncmp(const char *a, const char *b, size_t n)
{
	for (; n; n--, a++, b++) {
		if (*a != *b)
			return (u8)*a - (u8)*b;
		if (!*a)
			return 0;
	}
	return 0;
}
