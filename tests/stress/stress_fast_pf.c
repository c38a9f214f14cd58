/* SPDX-License-Identifier: MIT */
/*
 * stress_fast_pf - vCPUs fault through the lockless path while another
 * thread zaps and frees the tables under them.
 *
 * Each vCPU owns a slice of a THP-backed slot and writes and reads random
 * words of it, checking every read against what it last wrote there (a
 * wrong translation, or a write through one, shows up as a wrong value).
 * Their faults are mostly fixed locklessly: the slot is write-protected
 * for dirty logging and harvested, and aged (without A/D bits, aging
 * takes every right away and the fast path restores them).  Meanwhile a
 * control thread zaps random gfn ranges, zaps everything (roots and tables
 * freed through RCU while the vCPUs walk them locklessly), switches
 * logging off and on (huge pages recovered, then split: tables unlinked
 * and freed), harvests, and ages random ranges through the notifiers.
 *
 * Run under ThreadSanitizer and ASan by the sanitizer builds.  Two phases:
 * without A/D bits (access tracking) and with them (write protection with
 * A/D on).  VMMU_SEED=N replays the random choices; VMMU_TEST_SECONDS sets
 * the whole budget (default 3 s, split between the phases).
 */
#define _GNU_SOURCE
#include <vmmu/hostmem.h>
#include <vmmu/hw.h>
#include <vmmu/vmmu.h>

#include "mmu_internal.h"

#include "../common/test_util.h"
#include "../common/stress_util.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#define NR_VCPUS 3
#define MEM_SIZE (12ull << 20)
#define NPAGES (MEM_SIZE / 4096)
#define PER_VCPU (NPAGES / NR_VCPUS)
#define GPA_BASE (1ull << 30)
#define WORDS (NPAGES / 64)

/* The replay seed is the run's (tests/common/stress_util.h). */
#define CHECK(cond) STRESS_CHECK(cond)

static struct vmmu_hostmem *hm;
static struct vmmu_vm *vm;
static uint64_t *mem;
static int stop;

struct vcpu_arg {
	unsigned id;
	struct vmmu_vcpu *vcpu;
	struct vmmu_hw_vcpu *hw;
	struct test_rng rng;
	uint64_t shadow[PER_VCPU]; /* last value written to word (id) of each page */
	uint64_t writes, reads;
};
static struct vcpu_arg vcpus[NR_VCPUS];

static void *vcpu_thread(void *opaque)
{
	struct vcpu_arg *a = opaque;
	uint64_t counter = 0;

	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		uint64_t r = test_rng_next(&a->rng);
		uint64_t page = r % PER_VCPU;
		uint64_t gpa = GPA_BASE + (a->id * PER_VCPU + page) * 4096 + a->id * 8;
		uint64_t v;

		if ((r >> 40) % 3 == 0) {
			v = ((uint64_t)(a->id + 1) << 56) | ++counter;
			CHECK(vmmu_hw_write(a->hw, gpa, &v, sizeof(v)) == 0);
			a->shadow[page] = v;
			a->writes++;
		} else {
			CHECK(vmmu_hw_read(a->hw, gpa, &v, sizeof(v)) == 0);
			if (v != a->shadow[page]) {
				fprintf(stderr,
					"vCPU %u page %" PRIu64 ": read %#" PRIx64
					", wrote %#" PRIx64 "\n",
					a->id, page, v, a->shadow[page]);
				CHECK(!"wrong value");
			}
			a->reads++;
		}
	}
	vmmu_hw_guest_exit(a->hw);
	return NULL;
}

static int set_logging(bool on)
{
	struct vmmu_userspace_memory_region r = {
		.slot = 0,
		.flags = on ? VMMU_MEM_LOG_DIRTY_PAGES : 0,
		.guest_phys_addr = GPA_BASE,
		.memory_size = MEM_SIZE,
		.userspace_addr = (uint64_t)(uintptr_t)mem,
	};
	return vmmu_set_user_memory_region(vm, &r);
}

static void run_phase(bool ad, double seconds, uint64_t seed)
{
	struct vmmu_vm_config cfg = { .disable_ept_ad = !ad, .dirty_log_wrprot = true };
	static uint64_t bm[WORDS];
	uint64_t t_end, ops[6] = { 0 }, pf_fast = 0, pf_taken = 0, pf_retry = 0;
	pthread_t th[NR_VCPUS];
	struct test_rng rng;
	bool logging = true;

	test_rng_init(&rng, seed);
	__atomic_store_n(&stop, 0, __ATOMIC_RELAXED);
	CHECK(vmmu_hostmem_create(&hm) == 0);
	CHECK(vmmu_hostmem_alloc(hm, VMMU_BACKING_ANONYMOUS_THP, MEM_SIZE, 0, (void **)&mem) == 0);
	cfg.hostmem = hm;
	cfg.max_pt_pages = 16384; /* sanitizers set a large pool up and tear it down slowly */
	CHECK(vmmu_vm_create(&cfg, &vm) == 0);
	CHECK(set_logging(false) == 0);
	for (unsigned i = 0; i < NR_VCPUS; i++) {
		memset(&vcpus[i], 0, sizeof(vcpus[i]));
		vcpus[i].id = i;
		test_rng_init(&vcpus[i].rng, seed * 7 + i + 1);
		CHECK(vmmu_vcpu_create(vm, i, &vcpus[i].vcpu) == 0);
		CHECK(vmmu_hw_vcpu_create(vcpus[i].vcpu, NULL, &vcpus[i].hw) == 0);
	}
	/* Huge mappings first, so that logging has something to split. */
	for (uint64_t p = 0; p < NPAGES; p++) {
		uint64_t v = 0;

		CHECK(vmmu_hw_read(vcpus[0].hw, GPA_BASE + p * 4096, &v, sizeof(v)) == 0);
	}
	vmmu_hw_guest_exit(vcpus[0].hw);
	CHECK(set_logging(true) == 0);
	for (unsigned i = 0; i < NR_VCPUS; i++)
		CHECK(pthread_create(&th[i], NULL, vcpu_thread, &vcpus[i]) == 0);

	{
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		t_end = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec +
			(uint64_t)(seconds * 1e9);
	}
	for (;;) {
		struct timespec ts;
		uint64_t r = test_rng_next(&rng), start = test_rng_below(&rng, NPAGES);
		uint64_t len = 1 + test_rng_below(&rng, 1024);
		uint64_t hva = (uint64_t)(uintptr_t)mem + start * 4096;
		bool young;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		if ((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec > t_end)
			break;
		if (len > NPAGES - start)
			len = NPAGES - start;
		switch (r % 16) {
		case 0:
		case 1:
		case 2:
		case 3:
			CHECK(vmmu_idle_mark(vm, 0, GPA_BASE + start * 4096, len * 4096) == 0);
			ops[0]++;
			break;
		case 4:
		case 5:
			CHECK(vmmu_notify_clear_young(vm, hva, hva + len * 4096, &young) == 0);
			ops[0]++;
			break;
		case 6:
		case 7:
		case 8:
			/* Short ranges: one flush each, so zaps come often. */
			len = vmmu_min(len, 64);
			CHECK(vmmu_zap_gfn_range(vm, GPA_BASE / 4096 + start,
						 GPA_BASE / 4096 + start + len) == 0);
			ops[1]++;
			break;
		case 9:
			CHECK(vmmu_zap_all(vm) == 0);
			ops[2]++;
			break;
		case 10:
			logging = !logging;
			CHECK(set_logging(logging) == 0);
			ops[3]++;
			break;
		case 11:
			CHECK(vmmu_notify_invalidate_range_start(vm, hva, hva + len * 4096) == 0);
			CHECK(vmmu_notify_invalidate_range_end(vm, hva, hva + len * 4096) == 0);
			ops[4]++;
			break;
		default:
			if (logging) {
				CHECK(vmmu_get_dirty_log(vm, 0, bm) == 0);
				ops[5]++;
			}
			break;
		}
		usleep(100);
	}
	__atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < NR_VCPUS; i++) {
		struct vmmu_vcpu_stats s;

		pthread_join(th[i], NULL);
		CHECK(vmmu_vcpu_stats(vcpus[i].vcpu, &s) == 0);
		pf_fast += s.pf_fast;
		pf_taken += s.pf_taken;
		pf_retry += s.pf_retry;
	}
	/* While logged, no huge leaf is writable. */
	if (logging)
		for (uint64_t p = 0; p < NPAGES; p++) {
			uint64_t spte;
			int level;

			if (vmmu_debug_lookup(vm, 0, GPA_BASE + p * 4096, NULL, &level, &spte))
				continue;
			CHECK(level == 1 || !(spte & EPT_WRITABLE));
		}
	/* Every value is where its vCPU put it. */
	for (unsigned i = 0; i < NR_VCPUS; i++)
		for (uint64_t p = 0; p < PER_VCPU; p++)
			CHECK(mem[(i * PER_VCPU + p) * 512 + i] == vcpus[i].shadow[p]);
	printf("%-14s faults %7" PRIu64 " (fast %7" PRIu64 ", retried %7" PRIu64 "), ages %5" PRIu64
	       ", range zaps %4" PRIu64 ", zap-all %3" PRIu64 ", logging toggles %3" PRIu64
	       ", invalidations %3" PRIu64 ", harvests %4" PRIu64 "\n",
	       ad ? "A/D bits" : "access-tracked", pf_taken, pf_fast, pf_retry, ops[0], ops[1],
	       ops[2], ops[3], ops[4], ops[5]);
	CHECK(pf_fast > 0);

	for (unsigned i = 0; i < NR_VCPUS; i++) {
		CHECK(vmmu_hw_vcpu_destroy(vcpus[i].hw) == 0);
		CHECK(vmmu_vcpu_destroy(vcpus[i].vcpu) == 0);
	}
	CHECK(vmmu_zap_all(vm) == 0);
	vmmu_rcu_barrier();
	CHECK(vmmu_pool_in_use(&vm->pool) == 0);
	CHECK(vmmu_vm_destroy(vm) == 0);
	CHECK(vmmu_hostmem_free(hm, mem) == 0);
	CHECK(vmmu_hostmem_destroy(hm) == 0);
}

int main(void)
{
	double budget = (double)test_env_u64("VMMU_TEST_SECONDS", 3);
	uint64_t seed;

	setvbuf(stdout, NULL, _IOLBF, 0);
	seed = test_seed();
	printf("budget %.1fs\n", budget);
	run_phase(false, budget / 2, seed);
	run_phase(true, budget / 2, seed + 1);
	printf("PASS\n");
	return 0;
}
