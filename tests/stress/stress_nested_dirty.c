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
 * Seeded (VMMU_SEED=N replays the choices; thread timing still varies);
 * VMMU_TEST_SECONDS sets the time budget (default 3).
 */
#define _GNU_SOURCE
#include <vmmu/hostmem.h>
#include <vmmu/hw.h>
#include <vmmu/nested.h>
#include <vmmu/vmmu.h>

#include "../common/test_util.h"

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

#define CHECK(cond)                                                                               \
	do {                                                                                      \
		if (!(cond)) {                                                                    \
			fprintf(stderr, "%s:%d: CHECK failed: %s (seed %" PRIu64 ")\n", __FILE__, \
				__LINE__, #cond, seed);                                           \
			abort();                                                                  \
		}                                                                                 \
	} while (0)

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
	}
	for (uint64_t p = 0; p < NR_PAGES; p++)
		memset(data_mem + p * PG, (int)(p & 0xff), PG);
	for (unsigned i = 0; i < NR_L2; i++)
		CHECK(!vmmu_vcpu_create(vm, i, &vcpus[i]));

	/* Start: logging on, everything copied once (the first pass). */
	{
		struct vmmu_userspace_memory_region r1 = {
			.slot = 1,
			.flags = VMMU_MEM_LOG_DIRTY_PAGES,
			.guest_phys_addr = DATA_GPA,
			.memory_size = NR_PAGES * PG,
			.userspace_addr = (uintptr_t)data_mem,
		};

		CHECK(!vmmu_set_user_memory_region(vm, &r1));
	}
	for (unsigned i = 0; i < NR_L2; i++)
		CHECK(!pthread_create(&th[i], NULL, l2_thread, (void *)(uintptr_t)i));
	if (mode == M_INITSET) {
		/* Every page counts as dirty at first: the first harvest copies
		 * all and clears all. */
		harvest();
	} else {
		for (uint64_t p = 0; p < NR_PAGES; p++)
			copy_page(p);
	}
	while (__atomic_load_n(&ready, __ATOMIC_ACQUIRE) < NR_L2)
		usleep(1000);
	t0 = (uint64_t)time(NULL);
	while ((double)((uint64_t)time(NULL) - t0) < budget) {
		harvest();
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
	CHECK(!vmmu_vm_destroy(vm));
	CHECK(!vmmu_hostmem_free(hm, pt_mem));
	CHECK(!vmmu_hostmem_free(hm, data_mem));
	CHECK(!vmmu_hostmem_destroy(hm));
	free(dest);
	return 0;
}
