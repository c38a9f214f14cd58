/* SPDX-License-Identifier: MIT */
/*
 * stress_util.h - what the stress tests share on top of test_util.h.
 *
 *   STRESS_CHECK(cond)   abort with file, line, the run's seed and
 *                        stress_mode (what the test is doing) when false
 *   stress_now_ns()      CLOCK_MONOTONIC in nanoseconds
 *   stress_budget()      the run's time budget in seconds:
 *                        $VMMU_TEST_SECONDS, else the test's default
 *                        (STRESS_DEFAULT_SECONDS, which a soak wrapper
 *                        defines larger before including the test)
 *   stress_sanitized()   true in ASan and TSan builds, where setting a
 *                        VM up costs much more: tests may do fewer kinds
 *                        of runs there (never weaker ones)
 *   stress_spin_ns()     busy-wait, as a guest that computes without
 *                        touching memory (and so without polling its kick
 *                        word): TLB flush acknowledgements come late
 *
 * Header only; include as "../common/stress_util.h" after test_util.h.
 */
#ifndef VMMU_TEST_STRESS_UTIL_H
#define VMMU_TEST_STRESS_UTIL_H

#include "test_util.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* The seed that replays a failure: the run's, unless the test defines
 * STRESS_SEED() (one run of several seeds). */
#ifndef STRESS_SEED
#define STRESS_SEED() test_seed()
#endif

/* What the test is doing now, printed by STRESS_CHECK (set per mode). */
static char stress_mode[96];

#define STRESS_CHECK(cond)                                                                        \
	do {                                                                                      \
		if (!(cond)) {                                                                    \
			fprintf(stderr,                                                           \
				"%s:%d: CHECK failed: %s (replay with VMMU_SEED=%" PRIu64         \
				", mode %s)\n",                                                   \
				__FILE__, __LINE__, #cond, (uint64_t)STRESS_SEED(), stress_mode); \
			fflush(stderr);                                                           \
			abort();                                                                  \
		}                                                                                 \
	} while (0)

static inline uint64_t stress_now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

#ifndef STRESS_DEFAULT_SECONDS
#define STRESS_DEFAULT_SECONDS 3.0
#endif

static inline double stress_budget(void)
{
	const char *s = getenv("VMMU_TEST_SECONDS");
	double b = s && *s ? atof(s) : 0;

	return b > 0 ? b : STRESS_DEFAULT_SECONDS;
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define STRESS_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define STRESS_SANITIZED 1
#endif
#endif
#ifndef STRESS_SANITIZED
#define STRESS_SANITIZED 0
#endif

static inline bool stress_sanitized(void)
{
	return STRESS_SANITIZED;
}

static inline void stress_spin_ns(uint64_t ns)
{
	uint64_t end = stress_now_ns() + ns;

	while (stress_now_ns() < end)
		__asm__ volatile("" ::: "memory");
}

#endif /* VMMU_TEST_STRESS_UTIL_H */
