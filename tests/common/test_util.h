/* SPDX-License-Identifier: MIT */
/*
 * test_util.h - small helpers shared by the test programs.
 *
 *   test_seed()          the run's random seed: $VMMU_SEED if set, else one
 *                        picked from the clock; printed once as
 *                        "seed=N (replay with VMMU_SEED=N)".
 *   struct test_rng      xorshift64* generator: test_rng_init(), test_rng_next(),
 *                        test_rng_range(), test_rng_below().
 *   test_mmap()          anonymous, zeroed, page-aligned memory (NULL on
 *                        failure); test_munmap() gives it back.
 *   test_env_u64()       an unsigned integer from the environment, or a default.
 *
 * Header only, no dependency on the library: include it as
 * #include "../common/test_util.h".
 */
#ifndef VMMU_TEST_UTIL_H
#define VMMU_TEST_UTIL_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* An unsigned integer from environment variable @name, or @def when it is
 * unset, empty or not a number. */
static inline uint64_t test_env_u64(const char *name, uint64_t def)
{
	const char *s = getenv(name);
	char *end;
	unsigned long long v;

	if (!s || !*s)
		return def;
	v = strtoull(s, &end, 0);
	if (*end)
		return def;
	return (uint64_t)v;
}

/* The seed of this run, chosen once per process and printed once. */
static inline uint64_t test_seed(void)
{
	static uint64_t seed;
	static int chosen;

	if (!chosen) {
		const char *s = getenv("VMMU_SEED");
		char *end = NULL;

		if (s && *s) {
			seed = strtoull(s, &end, 0);
			if (*end) {
				fprintf(stderr, "VMMU_SEED=%s is not a number\n", s);
				exit(1);
			}
		} else {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			seed = ((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec ^
			       ((uint64_t)getpid() << 32);
			seed %= 1000000000000ull; /* short enough to type */
		}
		chosen = 1;
		printf("seed=%" PRIu64 " (replay with VMMU_SEED=%" PRIu64 ")\n", seed, seed);
		fflush(stdout);
	}
	return seed;
}

/* xorshift64*: fast, good enough for tests, never stuck at zero. */
struct test_rng {
	uint64_t s;
};

static inline void test_rng_init(struct test_rng *r, uint64_t seed)
{
	/* splitmix64 step so that nearby seeds give unrelated streams. */
	uint64_t z = seed + 0x9e3779b97f4a7c15ull;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	r->s = z ? z : 0x2545f4914f6cdd1dull;
}

static inline uint64_t test_rng_next(struct test_rng *r)
{
	uint64_t x = r->s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	r->s = x;
	return x * 0x2545f4914f6cdd1dull;
}

/* Uniform-ish in [0, n); 0 when n is 0. */
static inline uint64_t test_rng_below(struct test_rng *r, uint64_t n)
{
	return n ? test_rng_next(r) % n : 0;
}

/* Uniform-ish in [lo, hi] (inclusive). */
static inline uint64_t test_rng_range(struct test_rng *r, uint64_t lo, uint64_t hi)
{
	return lo + test_rng_below(r, hi - lo + 1);
}

/* @size bytes (rounded up to pages) of anonymous zeroed memory, or NULL.
 * Nothing is committed until touched. */
static inline void *test_mmap(size_t size)
{
	long pg = sysconf(_SC_PAGESIZE);
	void *p;

	size = (size + (size_t)pg - 1) & ~((size_t)pg - 1);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		 -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

static inline void test_munmap(void *p, size_t size)
{
	long pg = sysconf(_SC_PAGESIZE);

	if (p)
		munmap(p, (size + (size_t)pg - 1) & ~((size_t)pg - 1));
}

#endif /* VMMU_TEST_UTIL_H */
