/* SPDX-License-Identifier: MIT */
/*
 * stress_nested_dirty - pre-copy migration of L1 memory while L2 writes it
 * through EPT02: L2 vCPUs write random pages of L1's data slot (mapped by
 * L1 with 2 MiB EPT12 leaves, so EPT02 starts with huge leaves that logging
 * must break), while a migration thread harvests the dirty log and copies
 * the dirty pages to a destination buffer.  After the vCPUs stop, a final
 * harvest and copy must make the destination byte-exact: no page L2 wrote
 * was lost by any harvest.  One mode per run, from the seed: bitmap with
 * get-dirty-log clearing, manual protect, manual protect with initially
 * set, dirty rings; with EPT A/D bits (L1 would log with PML; L2's writes
 * go through write protection) or without.
 *
 * Eager splitting (issue 13): logging stops and starts again while L2
 * writes (each start splits the huge EPT02 leaves rebuilt meanwhile, with
 * the vCPUs running, and the copy starts over), an L1 vCPU rewrites EPT12
 * entries through emulated writes (a 2 MiB leaf becomes a table of 4 KiB
 * leaves mapping the same memory and back, so EPT02 is rebuilt), the split
 * caches are shrunk and eager splitting is turned off and on at run time.
 *
 * Seeded (VMMU_SEED=N replays the choices; thread timing still varies);
 * VMMU_TEST_SECONDS sets the time budget (default 3).
 * VMMU_TEST_NESTED_GLOBAL_LOCK=1 runs the nested MMU in its global-lock mode
 * (vmmu_vm_config.nested_global_lock) for a third of the budget (at least
 * two seconds of the clock, so one to two): CMake's stress_*_global runs.
 */
#define _GNU_SOURCE
#include <vmmu/hostmem.h>
#include <vmmu/hw.h>
#include <vmmu/nested.h>
#include <vmmu/vmmu.h>

#include "../common/test_util.h"
#include "../common/stress_util.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#define PG 4096ull
#define MiB (1ull << 20)
#define NR_L2 2
#define NR_PAGES 2048 /* 8 MiB of L1 data */
#define DATA_GPA (16 * MiB)
#define RING_SIZE 4096

static uint64_t seed;
static int stop;
/* L2 vCPUs that entered L2: the time budget starts when all have (the
 * first entry builds the nested state, slow under sanitizers). */
static unsigned ready;

/* The replay seed is the run's (tests/common/stress_util.h). */
#define CHECK(cond) STRESS_CHECK(cond)

enum mode {
	M_GET,
	M_MANUAL,
	M_INITSET,
	M_RING,
	M_NR
};
static const char *mode_names[] = { "get-dirty-log", "manual protect", "manual + initially set",
				    "dirty rings" };

static struct vmmu_hostmem *hm;
static struct vmmu_vm *vm;
static struct vmmu_vcpu *vcpus[NR_L2];
static uint8_t *pt_mem, *data_mem, *dest;
static uint64_t eptp;
static enum mode mode;
static uint32_t ring_next[NR_L2];
static uint64_t writes_done, pages_copied, harvests;
static struct vmmu_vcpu *l1_vcpu; /* rewrites EPT12 (emulated writes) */
static uint64_t restarts, rewrites, shrunk;

static void *l2_thread(void *p)
{
	unsigned id = (unsigned)(uintptr_t)p;
	struct vmmu_hw_vcpu *hw;
	struct test_rng rng;
	uint64_t n = 0;

	test_rng_init(&rng, seed * 17 + id);
	CHECK(!vmmu_hw_vcpu_create(vcpus[id], NULL, &hw));
	CHECK(!vmmu_hw_nested_enter(hw, eptp));
	__atomic_add_fetch(&ready, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		uint64_t page = test_rng_below(&rng, NR_PAGES);
		uint64_t off = test_rng_below(&rng, PG / 8) * 8;
		uint64_t v = test_rng_next(&rng);
		int r = vmmu_hw_write(hw, page * PG + off, &v, 8);

		if (r == -ENOBUFS) {
			/* Ring soft-full: the collector makes room. */
			vmmu_hw_guest_exit(hw);
			sched_yield();
			continue;
		}
		CHECK(!r);
		n++;
		if (!(n % 64))
			vmmu_hw_guest_exit(hw);
	}
	vmmu_hw_guest_exit(hw);
	CHECK(!vmmu_hw_nested_leave(hw));
	CHECK(!vmmu_hw_vcpu_destroy(hw));
	__atomic_add_fetch(&writes_done, n, __ATOMIC_RELAXED);
	return NULL;
}

static void copy_page(uint64_t p)
{
	/* The source may change under us: that page is dirty again and will
	 * be copied by a later harvest. */
	for (uint64_t i = 0; i < PG / 8; i++)
		((uint64_t *)(void *)(dest + p * PG))[i] = __atomic_load_n(
			(uint64_t *)(void *)(data_mem + p * PG) + i, __ATOMIC_RELAXED);
	pages_copied++;
}

/* One harvest: copy every page reported dirty. */
static void harvest(void)
{
	static uint64_t bitmap[NR_PAGES / 64];

	harvests++;
	if (mode == M_RING) {
		static uint8_t seen[NR_PAGES];

		memset(seen, 0, sizeof(seen));
		for (unsigned v = 0; v < NR_L2; v++) {
			struct vmmu_dirty_gfn *ring;
			uint32_t size;

			CHECK(!vmmu_vcpu_dirty_ring(vcpus[v], &ring, &size));
			for (;;) {
				struct vmmu_dirty_gfn *e = &ring[ring_next[v] & (size - 1)];

				if (!(__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) &
				      VMMU_DIRTY_GFN_F_DIRTY))
					break;
				if (e->slot == 1) {
					CHECK(e->offset < NR_PAGES);
					seen[e->offset] = 1;
				}
				__atomic_store_n(&e->flags, VMMU_DIRTY_GFN_F_RESET,
						 __ATOMIC_RELEASE);
				ring_next[v]++;
			}
		}
		/* Protect again first, then copy (as a VMM must). */
		CHECK(!vmmu_reset_dirty_rings(vm, NULL));
		for (uint64_t p = 0; p < NR_PAGES; p++)
			if (seen[p])
				copy_page(p);
		return;
	}
	CHECK(!vmmu_get_dirty_log(vm, 1, bitmap));
	if (mode != M_GET)
		CHECK(!vmmu_clear_dirty_log(vm, 1, 0, NR_PAGES, bitmap));
	/* Copy after the clear: a write after it is in the next harvest. */
	for (uint64_t p = 0; p < NR_PAGES; p++)
		if ((bitmap[p / 64] >> (p % 64)) & 1)
			copy_page(p);
}

static void set_logging(bool on)
{
	struct vmmu_userspace_memory_region r1 = {
		.slot = 1,
		.flags = on ? VMMU_MEM_LOG_DIRTY_PAGES : 0,
		.guest_phys_addr = DATA_GPA,
		.memory_size = NR_PAGES * PG,
		.userspace_addr = (uintptr_t)data_mem,
	};

	CHECK(!vmmu_set_user_memory_region(vm, &r1));
}

/* The first pass of a (re)started migration: logging on, all copied. */
static void start_migration(void)
{
	set_logging(true);
	if (mode == M_INITSET) {
		/* Every page counts as dirty at first: the first harvest copies
		 * all and clears all. */
		harvest();
	} else {
		for (uint64_t p = 0; p < NR_PAGES; p++)
			copy_page(p);
	}
}

/* L1 turns 2 MiB EPT12 leaf @i into a pointer to a table of 4 KiB leaves
 * over the same memory, or back (page 4 + i of the EPT12 area). */
static void rewrite_ept12(uint64_t i)
{
	uint64_t gpa = 3 * PG + i * 8, cur, v;
	int r;

	memcpy(&cur, pt_mem + gpa, 8);
	if (cur & (1ull << 7))
		v = (4 + i) * PG | 7;
	else
		v = (DATA_GPA + i * 2 * MiB) | 7 | (6ull << 3) | (1ull << 7);
	r = vmmu_vcpu_emulate_write(l1_vcpu, gpa, &v, 8);
	/* Not shadowed right now (no EPT02 table derived from it): L1's
	 * write goes straight to memory. */
	if (r == -EAGAIN) {
		__atomic_store_n((uint64_t *)(void *)(pt_mem + gpa), v, __ATOMIC_RELEASE);
		r = 0;
	}
	CHECK(!r);
	rewrites++;
}

int main(void)
{
	double budget = (double)test_env_u64("VMMU_TEST_SECONDS", 3);
	struct vmmu_vm_config cfg = { 0 };
	pthread_t th[NR_L2];
	struct test_rng rng;
	uint64_t t0, bad = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	seed = test_seed();
	test_rng_init(&rng, seed);
	mode = (enum mode)test_rng_below(&rng, M_NR);
	cfg.disable_ept_ad = test_rng_below(&rng, 2);
	if (mode == M_MANUAL)
		cfg.manual_dirty_log_protect = VMMU_DIRTY_LOG_MANUAL_PROTECT;
	if (mode == M_INITSET)
		cfg.manual_dirty_log_protect = VMMU_DIRTY_LOG_MANUAL_PROTECT |
					       VMMU_DIRTY_LOG_INITIALLY_SET;
	if (mode == M_RING)
		cfg.dirty_ring_size = RING_SIZE;
	cfg.nested_global_lock = test_env_u64("VMMU_TEST_NESTED_GLOBAL_LOCK", 0) != 0;
	if (cfg.nested_global_lock)
		budget = budget / 3 > 2 ? budget / 3 : 2; /* whole seconds: 1 to 2 s */
	printf("nested locking: %s\n", cfg.nested_global_lock ? "global" : "per root");
	printf("mode %s, EPT A/D %s, budget %.0fs\n", mode_names[mode],
	       cfg.disable_ept_ad ? "off" : "on", budget);

	CHECK(!vmmu_hostmem_create(&hm));
	cfg.hostmem = hm;
	CHECK(!vmmu_vm_create(&cfg, &vm));
	CHECK(!vmmu_hostmem_alloc(hm, VMMU_BACKING_ANONYMOUS, 2 * MiB, 0, (void **)&pt_mem));
	CHECK(!vmmu_hostmem_alloc(hm, VMMU_BACKING_ANONYMOUS_THP, NR_PAGES * PG, 0,
				  (void **)&data_mem));
	dest = calloc(NR_PAGES, PG);
	CHECK(dest);
	{
		struct vmmu_userspace_memory_region r0 = {
			.slot = 0,
			.guest_phys_addr = 0,
			.memory_size = 2 * MiB,
			.userspace_addr = (uintptr_t)pt_mem,
		};
		struct vmmu_userspace_memory_region r1 = {
			.slot = 1,
			.guest_phys_addr = DATA_GPA,
			.memory_size = NR_PAGES * PG,
			.userspace_addr = (uintptr_t)data_mem,
		};

		CHECK(!vmmu_set_user_memory_region(vm, &r0));
		CHECK(!vmmu_set_user_memory_region(vm, &r1));
	}
	/* EPT12: L2 [0, 8 MiB) onto the data slot with 2 MiB leaves. */
	{
		uint64_t *root = (uint64_t *)(void *)(pt_mem + PG);
		uint64_t *l3 = (uint64_t *)(void *)(pt_mem + 2 * PG);
		uint64_t *l2 = (uint64_t *)(void *)(pt_mem + 3 * PG);

		root[0] = 2 * PG | 7;
		l3[0] = 3 * PG | 7;
		for (uint64_t i = 0; i < NR_PAGES / 512; i++)
			l2[i] = (DATA_GPA + i * 2 * MiB) | 7 | (6ull << 3) | (1ull << 7);
		eptp = PG | VMMU_EPTP_MT_WB | VMMU_EPTP_WALK_4 |
		       (test_rng_below(&rng, 2) ? VMMU_EPTP_AD : 0);
		/* The 4 KiB EPT12 tables L1 switches to (same mapping). */
		for (uint64_t i = 0; i < NR_PAGES / 512; i++) {
			uint64_t *t = (uint64_t *)(void *)(pt_mem + (4 + i) * PG);

			for (uint64_t j = 0; j < 512; j++)
				t[j] = (DATA_GPA + i * 2 * MiB + j * PG) | 7 | (6ull << 3);
		}
	}
	for (uint64_t p = 0; p < NR_PAGES; p++)
		memset(data_mem + p * PG, (int)(p & 0xff), PG);
	for (unsigned i = 0; i < NR_L2; i++)
		CHECK(!vmmu_vcpu_create(vm, i, &vcpus[i]));
	CHECK(!vmmu_vcpu_create(vm, NR_L2, &l1_vcpu));

	/* L2 runs first without logging, so EPT02 has huge leaves to split. */
	for (unsigned i = 0; i < NR_L2; i++)
		CHECK(!pthread_create(&th[i], NULL, l2_thread, (void *)(uintptr_t)i));
	while (__atomic_load_n(&ready, __ATOMIC_ACQUIRE) < NR_L2)
		usleep(1000);
	usleep(20000);
	start_migration();
	t0 = (uint64_t)time(NULL);
	while ((double)((uint64_t)time(NULL) - t0) < budget) {
		unsigned dice = (unsigned)test_rng_below(&rng, 64);

		harvest();
		if (dice == 0) {
			/* The migration starts over: logging stops (huge EPT02
			 * leaves come back where L1 rewrites EPT12), then starts
			 * again, splitting them while L2 writes. */
			set_logging(false);
			for (uint64_t i = 0; i < NR_PAGES / 512; i++)
				if (test_rng_below(&rng, 2))
					rewrite_ept12(i);
			usleep(2000);
			start_migration();
			restarts++;
		} else if (dice < 8) {
			rewrite_ept12(test_rng_below(&rng, NR_PAGES / 512));
		} else if (dice == 8) {
			uint64_t freed;

			CHECK(!vmmu_vm_shrink(vm, test_rng_below(&rng, 8) + 1, &freed));
			shrunk += freed;
		} else if (dice == 9) {
			/* Off (frees the caches) and on again, or left off
			 * until the next toss. */
			CHECK(!vmmu_vm_set_eager_split(vm, test_rng_below(&rng, 2)));
		}
		usleep(1000);
	}
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < NR_L2; i++)
		pthread_join(th[i], NULL);
	/* Stop and copy. */
	harvest();
	for (uint64_t p = 0; p < NR_PAGES; p++)
		if (memcmp(dest + p * PG, data_mem + p * PG, PG)) {
			if (bad < 5)
				fprintf(stderr,
					"page %" PRIu64 " differs: a write was not logged\n", p);
			bad++;
		}
	{
		struct vmmu_nested_stats st;

		CHECK(!vmmu_nested_stats(vm, &st));
		printf("restarts %" PRIu64 ", EPT12 rewrites %" PRIu64
		       ", huge EPT02 leaves split %" PRIu64 ", split top-ups %" PRIu64
		       ", objects shrunk %" PRIu64 "\n",
		       restarts, rewrites, st.split_huge_pages, st.split_topups, shrunk);
		printf("L2 writes %" PRIu64 ", harvests %" PRIu64 ", pages copied %" PRIu64
		       ", nested faults %" PRIu64 ", EPT02 leaves 4k %" PRIu64 " 2m %" PRIu64
		       ", pages differing %" PRIu64 "\n",
		       writes_done, harvests, pages_copied, st.nested_faults, st.ept02_pages_4k,
		       st.ept02_pages_2m, bad);
		CHECK(st.ept02_pages_2m == 0);
	}
	CHECK(bad == 0);
	CHECK(writes_done > 0);
	for (unsigned i = 0; i < NR_L2; i++)
		CHECK(!vmmu_vcpu_destroy(vcpus[i]));
	CHECK(!vmmu_vcpu_destroy(l1_vcpu));
	CHECK(!vmmu_vm_destroy(vm));
	CHECK(!vmmu_hostmem_free(hm, pt_mem));
	CHECK(!vmmu_hostmem_free(hm, data_mem));
	CHECK(!vmmu_hostmem_destroy(hm));
	free(dest);
	return 0;
}
