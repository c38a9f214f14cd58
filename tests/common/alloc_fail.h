/* SPDX-License-Identifier: MIT */
/*
 * alloc_fail.h - fail one of the library's malloc/calloc calls on purpose.
 *
 * For test programs linked with -Wl,--wrap=malloc -Wl,--wrap=calloc (see
 * CMakeLists.txt).  Armed on this thread only (set armed = true and
 * fail_countdown = n), it lets n more allocations through, fails the next
 * one, counts it in injected and disarms itself, so each index tests one
 * failure.  Include once per program.
 */
#ifndef VMMU_TEST_ALLOC_FAIL_H
#define VMMU_TEST_ALLOC_FAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
static __thread bool armed;
static __thread int64_t fail_countdown;
static __thread unsigned injected;

static bool inject_now(void)
{
	if (!armed)
		return false;
	if (fail_countdown-- > 0)
		return false;
	injected++;
	armed = false; /* one failure per call: the next index tests the next */
	return true;
}

void *__wrap_malloc(size_t size);
void *__wrap_malloc(size_t size)
{
	return inject_now() ? NULL : __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size)
{
	return inject_now() ? NULL : __real_calloc(n, size);
}

#endif /* VMMU_TEST_ALLOC_FAIL_H */
