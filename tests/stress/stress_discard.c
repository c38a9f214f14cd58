/* SPDX-License-Identifier: MIT */
/*
 * stress_discard - vCPUs read and write guest memory while a host thread
 * discards random host ranges through the backing (MMU-notifier
 * invalidations), rewrites them with new patterns, and write-protects
 * whole ranges for a while.
 *
 * Guest memory is 12 host allocations (8 of 512 KiB with 4 KiB pages, 4 of
 * 2 MiB with THP), one memslot each.  Word 0 of every page is a stamp that
 * only the host writes: (generation << 32) | (range << 16) | page.  The
 * rest of the page is scratch that the vCPUs write.
 *
 * The host publishes each range's generation with a sequence count (odd
 * while a discard + rewrite is in flight, 2 * generation when at rest), the
 * way a seqlock does.  The checks:
 *  - a vCPU read whose sequence reads were equal and even on both sides
 *    (it started after the last publication and nothing was in flight)
 *    sees exactly that generation, with its own range and page numbers:
 *    no vCPU sees an old value after invalidate_range_end has returned,
 *    and every translation reaches the right host page;
 *  - a read that overlapped a host operation sees a generation between the
 *    two sequence reads, or zero (the discarded page);
 *  - while a range is read-only on the host, vCPU writes come back as
 *    -EFAULT.  A write through a stale writable translation (a mapping or
 *    a TLB entry that survived invalidate_range_start) would hit the
 *    read-only host page: SIGSEGV, reported with the seed.
 * At rest every mapped gfn translates to its exact host byte, the leaf
 * counts match the stats, and after teardown the page-table pool is empty.
 *
 * In a userspace model the host page behind an address is chosen by the
 * host kernel, so a stale translation still reaches the current page; the
 * protection check is what catches stale translations, the stamps catch
 * wrong ones and ordering mistakes.
 *
 * Seeded (VMMU_SEED=N replays the choices; thread timing still varies);
 * VMMU_TEST_SECONDS sets the time budget (default 3).
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
#include <signal.h>
#include <string.h>
#include <unistd.h>

#define PG 4096ull
#define NR_VCPUS 3
#define NR_SMALL 8
#define NR_RANGES 12
#define SMALL_BYTES (512ull << 10)
#define THP_BYTES (2ull << 20)
#define BASE_GPA (1ull << 32)
#define WINDOW (4ull << 20) /* each range's slot at BASE_GPA + r * WINDOW */

static uint64_t seed;
static int stop;

/* The replay seed is the run's (tests/common/stress_util.h). */
#define CHECK(cond) STRESS_CHECK(cond)

struct range {
	uint8_t *mem;
	uint64_t size;
	uint64_t seq; /* odd: host operation in flight; else 2 * generation */
};

static struct vmmu_hostmem *hm;
static struct vmmu_vm *vm;
static struct range ranges[NR_RANGES];

static uint64_t stamp(uint64_t gen, unsigned r, uint64_t page)
{
	return gen << 32 | (uint64_t)r << 16 | page;
}

static void segv_handler(int sig)
{
	char msg[160];
	int n = snprintf(msg, sizeof(msg),
			 "SIGSEGV: a vCPU wrote through a stale writable translation (seed %" PRIu64
			 ")\n",
			 seed);

	(void)sig;
	if (write(2, msg, (size_t)n) < 0)
		_exit(3);
	_exit(2);
}

struct vcpu_arg {
	unsigned id;
	struct vmmu_vcpu *vcpu;
	struct vmmu_hw_vcpu *hw;
	struct test_rng rng;
	uint64_t exact, overlapped, zeros, writes, ro_writes;
};

static void *vcpu_thread(void *opaque)
{
	struct vcpu_arg *a = opaque;

	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		unsigned r = (unsigned)test_rng_below(&a->rng, NR_RANGES);
		struct range *rg = &ranges[r];
		uint64_t page = test_rng_below(&a->rng, rg->size / PG);
		uint64_t gpa = BASE_GPA + r * WINDOW + page * PG;
		uint64_t s1, s2, v;
		int ret;

		if (test_rng_below(&a->rng, 4) == 0) {
			/* A write to this vCPU's scratch word of the page. */
			v = a->writes;
			ret = vmmu_hw_write(a->hw, gpa + 64 + 8 * a->id, &v, 8);
			CHECK(ret == 0 || ret == -EFAULT);
			if (ret == -EFAULT)
				a->ro_writes++;
			else
				a->writes++;
			continue;
		}
		s1 = __atomic_load_n(&rg->seq, __ATOMIC_ACQUIRE);
		CHECK(vmmu_hw_read(a->hw, gpa, &v, 8) == 0);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		s2 = __atomic_load_n(&rg->seq, __ATOMIC_RELAXED);
		if (s1 == s2 && !(s1 & 1)) {
			if (v != stamp(s1 / 2, r, page))
				fprintf(stderr,
					"range %u page %" PRIu64 ": read %#" PRIx64
					", want %#" PRIx64 "\n",
					r, page, v, stamp(s1 / 2, r, page));
			CHECK(v == stamp(s1 / 2, r, page));
			a->exact++;
		} else if (!v) {
			a->zeros++;
		} else {
			CHECK((v & 0xffffffffull) == stamp(0, r, page));
			CHECK(v >> 32 >= s1 / 2 && v >> 32 <= (s2 + 1) / 2);
			a->overlapped++;
		}
		if (test_rng_below(&a->rng, 256) == 0)
			vmmu_hw_guest_exit(a->hw);
	}
	vmmu_hw_guest_exit(a->hw);
	return NULL;
}

/* Write range @r's stamps for generation @gen (the host's rewrite). */
static void write_stamps(unsigned r, uint64_t gen)
{
	struct range *rg = &ranges[r];

	for (uint64_t p = 0; p < rg->size / PG; p++)
		__atomic_store_n((uint64_t *)(rg->mem + p * PG), stamp(gen, r, p),
				 __ATOMIC_RELAXED);
}

static void *host_thread(void *opaque)
{
	struct test_rng *rng = opaque;
	uint64_t discards = 0, protects = 0;

	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		unsigned r = (unsigned)test_rng_below(rng, NR_RANGES);
		struct range *rg = &ranges[r];
		uint64_t seq = rg->seq;

		if (test_rng_below(rng, 8) == 0) {
			/* Read-only for a moment: vCPU writes must fail. */
			CHECK(vmmu_hostmem_protect(hm, rg->mem, 1) == 0);
			usleep(200);
			CHECK(vmmu_hostmem_protect(hm, rg->mem, 0) == 0);
			protects++;
		} else {
			uint64_t npages = rg->size / PG;
			uint64_t p0 = test_rng_below(rng, npages);
			uint64_t len = test_rng_range(rng, 1, npages - p0);

			/* In flight: readers from now on accept zeros and
			 * either generation. */
			__atomic_store_n(&rg->seq, seq + 1, __ATOMIC_RELAXED);
			__atomic_thread_fence(__ATOMIC_RELEASE);
			CHECK(vmmu_hostmem_discard(hm, rg->mem + p0 * PG, len * PG) == 0);
			write_stamps(r, seq / 2 + 1);
			/* Published: a read that starts now sees the new stamps. */
			__atomic_store_n(&rg->seq, seq + 2, __ATOMIC_RELEASE);
			discards++;
		}
		usleep(test_rng_below(rng, 100));
	}
	printf("host: %" PRIu64 " discards, %" PRIu64 " protects\n", discards, protects);
	return NULL;
}

int main(void)
{
	double budget = (double)test_env_u64("VMMU_TEST_SECONDS", 3);
	struct vcpu_arg args[NR_VCPUS];
	pthread_t vt[NR_VCPUS], ht;
	struct test_rng host_rng;
	struct vmmu_vm_stats st;
	uint64_t t0, leaves4k = 0, leaves2m = 0;
	struct sigaction sa;

	setvbuf(stdout, NULL, _IOLBF, 0);
	seed = test_seed();
	printf("budget %.0fs\n", budget);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = segv_handler;
	sigaction(SIGSEGV, &sa, NULL);

	CHECK(vmmu_hostmem_create(&hm) == 0);
	/* A small pool: sanitizers set a large one up and tear it down slowly. */
	CHECK(vmmu_vm_create(&(struct vmmu_vm_config){ .hostmem = hm, .max_pt_pages = 16384 },
			     &vm) == 0);
	for (unsigned r = 0; r < NR_RANGES; r++) {
		struct range *rg = &ranges[r];
		struct vmmu_userspace_memory_region reg;
		bool thp = r >= NR_SMALL;

		rg->size = thp ? THP_BYTES : SMALL_BYTES;
		CHECK(vmmu_hostmem_alloc(hm,
					 thp ? VMMU_BACKING_ANONYMOUS_THP : VMMU_BACKING_ANONYMOUS,
					 rg->size, 0, (void **)&rg->mem) == 0);
		write_stamps(r, 0);
		reg = (struct vmmu_userspace_memory_region){
			.slot = r,
			.guest_phys_addr = BASE_GPA + r * WINDOW,
			.memory_size = rg->size,
			.userspace_addr = (uint64_t)(uintptr_t)rg->mem
		};
		CHECK(vmmu_set_user_memory_region(vm, &reg) == 0);
	}
	for (unsigned i = 0; i < NR_VCPUS; i++) {
		args[i] = (struct vcpu_arg){ .id = i };
		test_rng_init(&args[i].rng, seed * 31 + i);
		CHECK(vmmu_vcpu_create(vm, i, &args[i].vcpu) == 0);
		CHECK(vmmu_hw_vcpu_create(args[i].vcpu, NULL, &args[i].hw) == 0);
	}
	test_rng_init(&host_rng, seed ^ 0x5eed);

	t0 = (uint64_t)time(NULL);
	for (unsigned i = 0; i < NR_VCPUS; i++)
		CHECK(pthread_create(&vt[i], NULL, vcpu_thread, &args[i]) == 0);
	CHECK(pthread_create(&ht, NULL, host_thread, &host_rng) == 0);
	while ((double)((uint64_t)time(NULL) - t0) < budget)
		usleep(20000);
	__atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
	CHECK(pthread_join(ht, NULL) == 0);
	for (unsigned i = 0; i < NR_VCPUS; i++) {
		CHECK(pthread_join(vt[i], NULL) == 0);
		printf("vCPU %u: %" PRIu64 " exact reads, %" PRIu64 " overlapped, %" PRIu64
		       " zeros, %" PRIu64 " writes, %" PRIu64 " refused (read-only)\n",
		       i, args[i].exact, args[i].overlapped, args[i].zeros, args[i].writes,
		       args[i].ro_writes);
		CHECK(args[i].exact > 0);
	}

	/* At rest: exact translations, stats match the leaves. */
	for (unsigned r = 0; r < NR_RANGES; r++) {
		for (uint64_t off = 0; off < ranges[r].size; off += PG) {
			void *hva;
			int level;

			if (vmmu_debug_lookup(vm, 0, BASE_GPA + r * WINDOW + off + 8, &hva, &level,
					      NULL))
				continue;
			CHECK(hva == ranges[r].mem + off + 8);
			if (level == 1)
				leaves4k++;
			else if (!(off & (THP_BYTES - 1)))
				leaves2m++;
		}
	}
	CHECK(vmmu_vm_stats(vm, &st) == 0);
	printf("at rest: %" PRIu64 " 4K and %" PRIu64 " 2M leaves, %" PRIu64
	       " remote TLB flushes\n",
	       leaves4k, leaves2m, st.remote_tlb_flush);
	CHECK(st.pages_4k == leaves4k && st.pages_2m == leaves2m);

	for (unsigned i = 0; i < NR_VCPUS; i++) {
		CHECK(vmmu_hw_vcpu_destroy(args[i].hw) == 0);
		CHECK(vmmu_vcpu_destroy(args[i].vcpu) == 0);
	}
	CHECK(vmmu_zap_all(vm) == 0);
	vmmu_rcu_barrier();
	CHECK(vmmu_pool_in_use(&vm->pool) == 0);
	CHECK(vmmu_vm_destroy(vm) == 0);
	for (unsigned r = 0; r < NR_RANGES; r++)
		CHECK(vmmu_hostmem_free(hm, ranges[r].mem) == 0);
	CHECK(vmmu_hostmem_destroy(hm) == 0);
	printf("PASS\n");
	return 0;
}
