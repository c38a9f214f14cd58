/* SPDX-License-Identifier: MIT */
/*
 * stress_migration - a pre-copy live migration, many times over.
 *
 * For each seed: vCPUs run a workload with a hot set (most writes go to a
 * few pages, some anywhere) on THP-backed memory.  The migration thread
 * enables dirty logging, copies everything, then repeats "harvest, copy
 * the dirty pages" until the dirty set is small (or a round limit), stops
 * the vCPUs, harvests and copies the rest: the destination must equal the
 * source byte for byte.  Each seed uses one of the eight modes
 * (write-protect / dirty-bit x bitmap / manual clear / initially-all-set /
 * ring), chosen by the seed, so many seeds cover all of them.
 *
 * VMMU_SEED=N runs that one seed; otherwise seeds are derived from the time
 * and printed.  VMMU_TEST_SECONDS bounds the whole run (default 4 s).
 */
#define _GNU_SOURCE
#include <vmmu/hostmem.h>
#include <vmmu/hw.h>
#include <vmmu/vmmu.h>

#include "mmu_internal.h"
#include "../common/dirty_ring.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NR_VCPUS 2
#define MEM_SIZE (8ull << 20)
#define NPAGES (MEM_SIZE / 4096)
#define WORDS (NPAGES / 64)
#define GPA_BASE (1ull << 30)
#define HOT_PAGES 32
#define SMALL_DIRTY 64
#define MAX_ROUNDS 40

#define CHECK(cond)                                                                        \
	do {                                                                               \
		if (!(cond)) {                                                             \
			fprintf(stderr, "%s:%d: CHECK failed: %s (VMMU_SEED=%" PRIu64 ")\n",     \
				__FILE__, __LINE__, #cond, seed);                          \
			abort();                                                           \
		}                                                                          \
	} while (0)

enum mode { M_BITMAP, M_MANUAL, M_INITIALLY_SET, M_RING, M_NR };
static const char *mode_names[] = { "bitmap", "manual-clear", "initially-set", "ring" };

static uint64_t seed;
static struct vmmu_vm *vm;
static uint64_t *src, *dst;
static int stop;

struct vcpu {
	unsigned id;
	struct vmmu_vcpu *vcpu;
	struct vmmu_hw_vcpu *hw;
	uint64_t rng;
	uint32_t ring_next;
};
static struct vcpu vcpus[NR_VCPUS];

static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static void *vcpu_thread(void *opaque)
{
	struct vcpu *a = opaque;
	uint64_t n = 0;

	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		uint64_t r = rng_next(&a->rng);
		uint64_t page = (r & 0xf) ? (r >> 8) % HOT_PAGES : (r >> 8) % NPAGES;
		uint64_t v = ((uint64_t)a->id << 56) | ++n;
		int ret = vmmu_hw_write(a->hw, GPA_BASE + page * 4096 + ((r >> 40) % 512) * 8, &v,
					sizeof(v));

		if (ret == -ENOBUFS) {
			while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE) &&
			       vmmu_hw_guest_enter(a->hw) == -ENOBUFS)
				sched_yield();
			continue;
		}
		CHECK(ret == 0);
		if (!(n % 64)) {
			/* A guest that also computes: the CPU leaves guest mode
			 * before it blocks (vmmu.h's processor contract). */
			vmmu_hw_guest_exit(a->hw);
			usleep(1);
		}
	}
	vmmu_hw_guest_exit(a->hw);
	return NULL;
}

static void copy_page(uint64_t p)
{
	for (unsigned i = 0; i < 512; i++)
		dst[p * 512 + i] = __atomic_load_n(&src[p * 512 + i], __ATOMIC_RELAXED);
}

/* Harvest once and copy what was reported; returns the number of pages. */
static uint64_t harvest(enum mode m)
{
	static uint64_t bm[WORDS];
	uint64_t n = 0;

	if (m == M_RING) {
		static uint8_t seen[NPAGES];

		memset(seen, 0, sizeof(seen));
		for (unsigned v = 0; v < NR_VCPUS; v++)
			CHECK(test_ring_collect(vcpus[v].vcpu, &vcpus[v].ring_next, UINT32_MAX, seen,
						NPAGES) >= 0);
		CHECK(vmmu_reset_dirty_rings(vm, NULL) == 0);
		for (uint64_t p = 0; p < NPAGES; p++)
			if (seen[p]) {
				copy_page(p);
				n++;
			}
		return n;
	}
	CHECK(vmmu_get_dirty_log(vm, 0, bm) == 0);
	if (m != M_BITMAP)
		CHECK(vmmu_clear_dirty_log(vm, 0, 0, NPAGES, bm) == 0);
	for (uint64_t p = 0; p < NPAGES; p++)
		if (bm[p / 64] >> (p % 64) & 1) {
			copy_page(p);
			n++;
		}
	return n;
}

static void migrate_once(void)
{
	bool wrprot = seed & 1;
	enum mode m = (enum mode)((seed >> 1) % M_NR);
	struct vmmu_vm_config cfg = { .dirty_log_wrprot = wrprot };
	struct vmmu_hostmem *hm;
	struct vmmu_userspace_memory_region r;
	pthread_t th[NR_VCPUS];
	uint64_t rounds = 0, last = 0;

	CHECK(vmmu_hostmem_create(&hm) == 0);
	CHECK(vmmu_hostmem_alloc(hm, VMMU_BACKING_ANONYMOUS_THP, MEM_SIZE, 0, (void **)&src) == 0);
	dst = calloc(NPAGES, 4096);
	CHECK(dst);
	cfg.hostmem = hm;
	if (m == M_MANUAL)
		cfg.manual_dirty_log_protect = VMMU_DIRTY_LOG_MANUAL_PROTECT;
	if (m == M_INITIALLY_SET)
		cfg.manual_dirty_log_protect =
			VMMU_DIRTY_LOG_MANUAL_PROTECT | VMMU_DIRTY_LOG_INITIALLY_SET;
	if (m == M_RING)
		cfg.dirty_ring_size = 2048;
	CHECK(vmmu_vm_create(&cfg, &vm) == 0);
	r = (struct vmmu_userspace_memory_region){ .slot = 0, .guest_phys_addr = GPA_BASE,
						   .memory_size = MEM_SIZE,
						   .userspace_addr = (uintptr_t)src };
	CHECK(vmmu_set_user_memory_region(vm, &r) == 0);
	__atomic_store_n(&stop, 0, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < NR_VCPUS; i++) {
		vcpus[i] = (struct vcpu){ .id = i, .rng = seed * 0x9e3779b97f4a7c15ull + i + 1 };
		CHECK(vmmu_vcpu_create(vm, i, &vcpus[i].vcpu) == 0);
		CHECK(vmmu_hw_vcpu_create(vcpus[i].vcpu, NULL, &vcpus[i].hw) == 0);
		CHECK(pthread_create(&th[i], NULL, vcpu_thread, &vcpus[i]) == 0);
	}
	usleep(2000); /* the guest runs (and maps huge pages) for a while */

	/* Pre-copy: logging on, everything once, then dirty pages only. */
	r.flags = VMMU_MEM_LOG_DIRTY_PAGES;
	CHECK(vmmu_set_user_memory_region(vm, &r) == 0);
	for (uint64_t p = 0; p < NPAGES; p++)
		copy_page(p);
	do {
		last = harvest(m);
		rounds++;
	} while (last > SMALL_DIRTY && rounds < MAX_ROUNDS);
	/* Stop and copy. */
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < NR_VCPUS; i++)
		pthread_join(th[i], NULL);
	last = harvest(m);
	if (memcmp(src, dst, MEM_SIZE)) {
		for (uint64_t p = 0; p < NPAGES; p++)
			if (memcmp(&src[p * 512], &dst[p * 512], 4096))
				fprintf(stderr, "page %" PRIu64 " differs\n", p);
		CHECK(!"destination differs from source");
	}
	printf("seed %-20" PRIu64 " %-9s %-13s pre-copy rounds %2" PRIu64
	       ", pages in the final copy %" PRIu64 "\n",
	       seed, wrprot ? "wrprot" : "dirty-bit", mode_names[m], rounds, last);
	for (unsigned i = 0; i < NR_VCPUS; i++) {
		CHECK(vmmu_hw_vcpu_destroy(vcpus[i].hw) == 0);
		CHECK(vmmu_vcpu_destroy(vcpus[i].vcpu) == 0);
	}
	CHECK(vmmu_vm_destroy(vm) == 0);
	CHECK(vmmu_hostmem_free(hm, src) == 0);
	CHECK(vmmu_hostmem_destroy(hm) == 0);
	free(dst);
}

int main(void)
{
	const char *env = getenv("VMMU_SEED");
	const char *secs = getenv("VMMU_TEST_SECONDS");
	double budget = secs ? atof(secs) : 4.0;
	struct timespec t0, t;
	uint64_t base, n = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (env) {
		seed = strtoull(env, NULL, 0);
		migrate_once();
		printf("PASS\n");
		return 0;
	}
	base = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 16;
	printf("seeds %" PRIu64 "+i (replay one with VMMU_SEED), budget %.1fs\n", base, budget);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		seed = base + n++;
		migrate_once();
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while ((double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9 < budget ||
		 n < 2);
	printf("PASS (%" PRIu64 " migrations)\n", n);
	return 0;
}
