/* SPDX-License-Identifier: MIT */
/*
 * stress_fault_zap_memslot - vCPUs fault and access guest memory while one
 * thread zaps random gfn ranges and another deletes, moves and re-creates
 * memslots.
 *
 * The property: no vCPU ever reaches host memory through a translation of
 * a slot that was deleted.  Each incarnation of a slot gets a fresh host
 * buffer; when the slot is deleted the old buffer is made PROT_NONE and
 * kept reserved (never reused), so an access through a stale translation
 * or a stale TLB entry faults the whole process, in every build.  Every
 * page is stamped with its buffer's incarnation and every read checks it.
 *
 * At the end, with everything quiet: every mapped gfn translates to exactly
 * the memslot's host byte, pages_4k equals the number of present leaves,
 * and after vCPU teardown, zap-all and an RCU barrier the page-table pool
 * is back to zero pages in use.
 *
 * Seeds are printed; VMMU_SEED=N replays the same choices (thread timing
 * still varies).  VMMU_TEST_SECONDS sets the time budget (default 4).
 */
#define _GNU_SOURCE
#include <vmmu/hw.h>
#include <vmmu/vmmu.h>

#include "mmu_internal.h"

#include "../common/test_util.h"
#include "../common/stress_util.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define NR_VCPUS 4
#define NR_SLOTS 4
#define SLOT_PAGES 1024 /* 4 MiB per slot */
#define SLOT_WINDOW (8ull << 20) /* each slot lives (and moves) in its own 8 MiB window */
#define BASE_GPA (1ull << 30)
#define MAX_INCARNATIONS 4096

/* The replay seed is the run's (tests/common/stress_util.h). */
#define CHECK(cond) STRESS_CHECK(cond)

static uint64_t seed;
static int stop;
static struct vmmu_vm *vm;

struct slot_state {
	pthread_mutex_t lock; /* only the memslot thread changes these */
	uint64_t gpa;
	void *buf;
	uint32_t incarnation;
	bool present;
};
static struct slot_state slots[NR_SLOTS];
static void *retired[NR_SLOTS * MAX_INCARNATIONS];
static unsigned nr_retired;
static uint32_t next_incarnation = 1;

static uint64_t elapsed_ns(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)(t.tv_sec - t0->tv_sec) * 1000000000ull + (uint64_t)t.tv_nsec -
	       (uint64_t)t0->tv_nsec;
}

static void *new_buffer(uint32_t incarnation)
{
	void *b = mmap(NULL, SLOT_PAGES * 4096ull, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	CHECK(b != MAP_FAILED);
	/* Stamp each page with its incarnation so reads can be checked. */
	for (uint64_t p = 0; p < SLOT_PAGES; p++)
		((uint64_t *)b)[p * 512] = (uint64_t)incarnation << 32;
	return b;
}

static int set_slot(unsigned i, uint64_t gpa, void *buf, uint64_t size)
{
	struct vmmu_userspace_memory_region r = {
		.slot = i,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uint64_t)(uintptr_t)buf,
	};
	return vmmu_set_user_memory_region(vm, &r);
}

struct vcpu_arg {
	unsigned id;
	struct vmmu_vcpu *vcpu;
	struct vmmu_hw_vcpu *hw;
	struct test_rng rng;
	uint64_t ok, mmio;
};

/*
 * A vCPU: read or write the first word of random pages in the windows.
 * The high half of a page's word is the incarnation stamp; writes keep it
 * and put the window page index + 1 in the low half.
 */
static void *vcpu_thread(void *opaque)
{
	struct vcpu_arg *a = opaque;

	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		uint64_t r = test_rng_next(&a->rng);
		unsigned s = (unsigned)(r % NR_SLOTS);
		uint64_t page = (r >> 8) % (SLOT_WINDOW / 4096);
		uint64_t gpa = BASE_GPA + s * SLOT_WINDOW + page * 4096;
		uint64_t v;
		int ret;

		if (r & (1ull << 40)) {
			ret = vmmu_hw_read(a->hw, gpa, &v, sizeof(v));
			if (!ret) {
				uint32_t inc = (uint32_t)(v >> 32);

				/* Every page was stamped with an issued incarnation:
				 * anything else is a read of memory that is not a
				 * slot's buffer. */
				CHECK(inc > 0 &&
				      inc < __atomic_load_n(&next_incarnation, __ATOMIC_ACQUIRE));
				CHECK((uint32_t)v <= SLOT_WINDOW / 4096);
			}
		} else {
			/* Writes carry the gfn's page index inside the slot,
			 * whichever incarnation is there now; the incarnation
			 * part is kept from what the page holds. */
			uint64_t old;

			ret = vmmu_hw_read(a->hw, gpa, &old, sizeof(old));
			if (!ret) {
				v = (old & ~0xffffffffull) | (uint32_t)(page + 1);
				ret = vmmu_hw_write(a->hw, gpa, &v, sizeof(v));
			}
		}
		if (ret == 0)
			a->ok++;
		else if (ret == -EFAULT)
			a->mmio++;
		else
			CHECK(!"unexpected error from a guest access");
		/* Now and then leave guest mode, as a vCPU halting would. */
		if ((r & 0xff) == 0)
			vmmu_hw_guest_exit(a->hw);
	}
	vmmu_hw_guest_exit(a->hw);
	return NULL;
}

static void *zap_thread(void *opaque)
{
	struct test_rng rng;
	uint64_t zaps = 0;

	test_rng_init(&rng, *(uint64_t *)opaque);
	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		uint64_t r = test_rng_next(&rng);
		uint64_t start = (BASE_GPA >> 12) + (r % (NR_SLOTS * SLOT_WINDOW / 4096));
		uint64_t len = 1 + ((r >> 32) % 2048);

		CHECK(vmmu_zap_gfn_range(vm, start, start + len) == 0);
		if (!(r & 0x3f))
			CHECK(vmmu_zap_all(vm) == 0);
		zaps++;
		usleep(50);
	}
	*(uint64_t *)opaque = zaps;
	return NULL;
}

/*
 * Memslot churn: delete a slot (retiring its buffer as PROT_NONE), or move
 * it inside its window, or re-create a deleted one on a fresh buffer.
 */
static void *memslot_thread(void *opaque)
{
	struct test_rng rng;
	uint64_t ops = 0;

	test_rng_init(&rng, *(uint64_t *)opaque);
	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED) && nr_retired < VMMU_ARRAY_SIZE(retired)) {
		uint64_t r = test_rng_next(&rng);
		unsigned i = (unsigned)(r % NR_SLOTS);
		struct slot_state *s = &slots[i];
		uint64_t size = SLOT_PAGES * 4096ull;
		uint64_t window = BASE_GPA + i * SLOT_WINDOW;

		if (s->present && (r & 0x100)) {
			CHECK(set_slot(i, s->gpa, s->buf, 0) == 0);
			/* Nothing may reach the old buffer from now on. */
			CHECK(mprotect(s->buf, size, PROT_NONE) == 0);
			madvise(s->buf, size, MADV_DONTNEED);
			retired[nr_retired++] = s->buf;
			s->present = false;
		} else if (s->present) {
			/* Move inside the window; the buffer stays valid. */
			uint64_t gpa = window + ((r >> 16) % (SLOT_WINDOW / size)) * size;

			if (gpa != s->gpa) {
				CHECK(set_slot(i, gpa, s->buf, size) == 0);
				s->gpa = gpa;
			}
		} else {
			uint32_t inc = __atomic_load_n(&next_incarnation, __ATOMIC_RELAXED);

			s->buf = new_buffer(inc);
			__atomic_store_n(&next_incarnation, inc + 1, __ATOMIC_RELEASE);
			s->incarnation = inc;
			s->gpa = window + ((r >> 16) % (SLOT_WINDOW / size)) * size;
			CHECK(set_slot(i, s->gpa, s->buf, size) == 0);
			s->present = true;
		}
		ops++;
		usleep(200);
	}
	*(uint64_t *)opaque = ops;
	return NULL;
}

int main(void)
{
	const char *secs = getenv("VMMU_TEST_SECONDS");
	double budget = secs ? atof(secs) : 4.0;
	struct vcpu_arg args[NR_VCPUS];
	pthread_t vt[NR_VCPUS], zt, mt;
	uint64_t zap_arg, slot_arg, leaves = 0, mapped_ok = 0;
	struct vmmu_vm_stats vs;
	struct timespec t0;
	uint64_t ok = 0, mmio = 0;

	setvbuf(stdout, NULL, _IOLBF, 0); /* the seed must survive a crash */
	seed = test_seed(); /* printed */
	printf("budget %.1fs\n", budget);

	/* A small pool: sanitizers set a large reservation up and tear it
	 * down slowly. */
	CHECK(vmmu_vm_create(&(struct vmmu_vm_config){ .max_pt_pages = 16384 }, &vm) == 0);
	for (unsigned i = 0; i < NR_SLOTS; i++) {
		slots[i].buf = new_buffer(next_incarnation);
		slots[i].incarnation = next_incarnation++;
		slots[i].gpa = BASE_GPA + i * SLOT_WINDOW;
		CHECK(set_slot(i, slots[i].gpa, slots[i].buf, SLOT_PAGES * 4096ull) == 0);
		slots[i].present = true;
	}
	for (unsigned i = 0; i < NR_VCPUS; i++) {
		args[i] = (struct vcpu_arg){ .id = i };
		test_rng_init(&args[i].rng, seed * 0x9e3779b97f4a7c15ull + i + 1);
		CHECK(vmmu_vcpu_create(vm, i, &args[i].vcpu) == 0);
		CHECK(vmmu_hw_vcpu_create(args[i].vcpu, NULL, &args[i].hw) == 0);
	}
	zap_arg = seed ^ 0xabcdefull;
	slot_arg = seed ^ 0x123457ull;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned i = 0; i < NR_VCPUS; i++)
		CHECK(pthread_create(&vt[i], NULL, vcpu_thread, &args[i]) == 0);
	CHECK(pthread_create(&zt, NULL, zap_thread, &zap_arg) == 0);
	CHECK(pthread_create(&mt, NULL, memslot_thread, &slot_arg) == 0);
	while (elapsed_ns(&t0) < (uint64_t)(budget * 1e9))
		usleep(10000);
	__atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < NR_VCPUS; i++) {
		pthread_join(vt[i], NULL);
		ok += args[i].ok;
		mmio += args[i].mmio;
	}
	pthread_join(zt, NULL);
	pthread_join(mt, NULL);
	printf("accesses ok %" PRIu64 ", mmio %" PRIu64 ", zaps %" PRIu64 ", memslot ops %" PRIu64
	       ", retired buffers %u\n",
	       ok, mmio, zap_arg, slot_arg, nr_retired);
	CHECK(ok > 0);

	/* Quiescence: every present leaf maps exactly the memslot's byte. */
	for (unsigned s = 0; s < NR_SLOTS; s++) {
		uint64_t wbase = BASE_GPA + s * SLOT_WINDOW;

		for (uint64_t gpa = wbase; gpa < wbase + SLOT_WINDOW; gpa += 4096) {
			void *hva, *want;
			int level;
			uint64_t spte;

			if (vmmu_debug_lookup(vm, 0, gpa, &hva, &level, &spte))
				continue;
			leaves++;
			CHECK(level == 1);
			CHECK(vmmu_gpa_to_hva(vm, 0, gpa, &want) == 0);
			CHECK(hva == want);
			mapped_ok++;
		}
	}
	CHECK(vmmu_vm_stats(vm, &vs) == 0);
	printf("present leaves %" PRIu64 ", pages_4k %" PRIu64 ", pt_pages %" PRIu64
	       ", remote flushes %" PRIu64 "\n",
	       leaves, vs.pages_4k, vs.pt_pages, vs.remote_tlb_flush);
	CHECK(vs.pages_4k == leaves);

	/* Teardown: nothing may be left in the page-table pool. */
	for (unsigned i = 0; i < NR_VCPUS; i++) {
		CHECK(vmmu_hw_vcpu_destroy(args[i].hw) == 0);
		CHECK(vmmu_vcpu_destroy(args[i].vcpu) == 0);
	}
	CHECK(vmmu_zap_all(vm) == 0);
	vmmu_rcu_barrier();
	CHECK(vmmu_vm_stats(vm, &vs) == 0);
	CHECK(vs.pages_4k == 0 && vs.pt_pages == 0 && vs.roots == 0);
	CHECK(vmmu_pool_in_use(&vm->pool) == 0);
	CHECK(vmmu_vm_destroy(vm) == 0);
	for (unsigned i = 0; i < NR_SLOTS; i++)
		if (slots[i].present)
			munmap(slots[i].buf, SLOT_PAGES * 4096ull);
	for (unsigned i = 0; i < nr_retired; i++)
		munmap(retired[i], SLOT_PAGES * 4096ull);
	printf("PASS (%" PRIu64 " leaves checked)\n", mapped_ok);
	return 0;
}
