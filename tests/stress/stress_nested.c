/* SPDX-License-Identifier: MIT */
/*
 * stress_nested - L2 vCPUs read their memory through EPT02 while L1 (a
 * third vCPU, through the hardware model) rewrites EPT12 with emulated
 * writes, and a host thread invalidates, zaps and ages.
 *
 * L1 memory: slot 0 holds the EPT12 tables; slot 1 (THP, 2 MiB aligned)
 * holds NR_DATA data pages whose word 0 is a tag only the host writes at
 * start: the page's own number.  L2's map:
 *  - region A, NR_A 4 KiB pages: L1 remaps each page to a random data page,
 *    makes it read-only, unmaps it, maps it again;
 *  - region B, 512 pages: L1 switches it between one 2 MiB EPT12 leaf onto
 *    data pages [0, 512) and a table of 4 KiB leaves onto the same pages in
 *    reverse order;
 *  - region C, NR_C pages onto slot 2, which the host thread deletes and
 *    creates again (reads in between are MMIO: -EFAULT).
 * L1 publishes each entry's target after its emulated write has returned.
 * The check: an L2 read that saw the same published target before and
 * after it reads exactly that tag (or exits to L1 when the target is "not
 * mapped"): once the write returned, no L2 access uses the old
 * translation.  Reads that overlapped a change may see the old or the new
 * target.  At the end EPT02 is torn down and its pool is empty.
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
#include "../common/stress_util.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#define PG 4096ull
#define MiB (1ull << 20)
#define NR_L2 2
#define NR_DATA 1024
#define NR_A 256
#define DATA_GPA (16 * MiB)
#define L2_A 0ull
#define L2_B (2 * MiB)
#define L2_C (4 * MiB)
#define NR_C 64
#define DATA2_GPA (32 * MiB)
#define TAG_C 100000
#define UNMAPPED UINT64_MAX

static uint64_t seed;
static int stop;
/* L2 vCPUs that entered L2: the time budget starts when all have (the
 * first entry builds the nested state, slow under sanitizers). */
static unsigned ready;

/* The replay seed is the run's (tests/common/stress_util.h). */
#define CHECK(cond) STRESS_CHECK(cond)

static struct vmmu_hostmem *hm;
static struct vmmu_vm *vm;
static uint8_t *pt_mem, *data_mem;
static uint64_t eptp;
static uint64_t a_leaf_gpa[NR_A]; /* L1 gpa of region A's leaf entries */
static uint64_t b_entry_gpa; /* L1 gpa of region B's level-2 entry */
static uint64_t b_table_gpa; /* L1 gpa of region B's 4 KiB table */
/* Published targets: data page number, or UNMAPPED; region B: 0 huge, 1 table. */
static uint64_t a_target[NR_A];
static uint64_t b_mode;
static uint64_t reads_checked, reads_exited, reads_mmio;
static uint8_t *data2_mem;
/* Slot 2: odd while being deleted or created; present when % 4 == 0. */
static uint64_t slot2_seq;

static uint64_t *pt(uint64_t gpa)
{
	return (uint64_t *)(void *)(pt_mem + gpa);
}

static uint64_t pt_next = PG;
static uint64_t alloc_table(void)
{
	uint64_t gpa = pt_next;

	pt_next += PG;
	memset(pt_mem + gpa, 0, PG);
	return gpa;
}

/* Host-side EPT12 setup (before any vCPU runs). */
static uint64_t *walk_create(uint64_t l2gpa, int level)
{
	uint64_t table = eptp & ~0xfffull;

	for (int l = 4; l > level; l--) {
		uint64_t *p = pt(table + ((l2gpa >> (12 + 9 * (l - 1))) & 511) * 8);

		if (!*p)
			*p = alloc_table() | 7;
		table = *p & ~0xfffull;
	}
	return pt(table + ((l2gpa >> (12 + 9 * (level - 1))) & 511) * 8);
}

static uint64_t leaf4k(uint64_t page, unsigned rights)
{
	return (DATA_GPA + page * PG) | rights | (6ull << 3);
}

struct l2_arg {
	unsigned id;
	struct vmmu_vcpu *vcpu;
};

static void *l2_thread(void *p)
{
	struct l2_arg *a = p;
	struct vmmu_hw_vcpu *hw;
	struct test_rng rng;
	uint64_t checked = 0, exited = 0, skipped = 0, mmio = 0;

	test_rng_init(&rng, seed * 31 + a->id);
	CHECK(!vmmu_hw_vcpu_create(a->vcpu, NULL, &hw));
	CHECK(!vmmu_hw_nested_enter(hw, eptp));
	__atomic_add_fetch(&ready, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		uint64_t v = 0, before, after, expect;
		uint64_t l2gpa;
		int r;

		if (test_rng_below(&rng, 8) == 0) {
			unsigned k = (unsigned)test_rng_below(&rng, NR_C);

			l2gpa = L2_C + k * PG;
			before = __atomic_load_n(&slot2_seq, __ATOMIC_ACQUIRE);
			r = vmmu_hw_read(hw, l2gpa, &v, 8);
			after = __atomic_load_n(&slot2_seq, __ATOMIC_ACQUIRE);
			if (before != after || (before & 1)) {
				skipped++;
				continue;
			}
			if (before % 4) {
				CHECK(r == -EFAULT); /* deleted: MMIO for L1 */
				mmio++;
			} else {
				if (r || v != TAG_C + k)
					fprintf(stderr, "region C page %u: r %d v %" PRIu64 "\n", k,
						r, v);
				CHECK(!r && v == TAG_C + k);
				checked++;
			}
			continue;
		} else if (test_rng_below(&rng, 2)) {
			unsigned i = (unsigned)test_rng_below(&rng, NR_A);

			l2gpa = L2_A + i * PG;
			before = __atomic_load_n(&a_target[i], __ATOMIC_ACQUIRE);
			r = vmmu_hw_read(hw, l2gpa, &v, 8);
			after = __atomic_load_n(&a_target[i], __ATOMIC_ACQUIRE);
			expect = before;
		} else {
			unsigned j = (unsigned)test_rng_below(&rng, 512);

			l2gpa = L2_B + j * PG;
			before = __atomic_load_n(&b_mode, __ATOMIC_ACQUIRE);
			r = vmmu_hw_read(hw, l2gpa, &v, 8);
			after = __atomic_load_n(&b_mode, __ATOMIC_ACQUIRE);
			expect = before ? 511 - j : j;
		}
		if (test_rng_below(&rng, 64) == 0)
			vmmu_hw_guest_exit(hw);
		/* Overlapped a change (or one in flight): old or new both fine. */
		if (before != after || before == UINT64_MAX - 1 || (l2gpa >= L2_B && before >= 2)) {
			skipped++;
			continue;
		}
		if (expect == UNMAPPED) {
			CHECK(r == -EXDEV);
			exited++;
			continue;
		}
		if (r) {
			fprintf(stderr, "l2 read %#" PRIx64 " -> %d (expect page %" PRIu64 ")\n",
				l2gpa, r, expect);
			CHECK(!r);
		}
		if (v != expect) {
			fprintf(stderr,
				"l2 read %#" PRIx64 " saw page %" PRIu64 ", expected %" PRIu64 "\n",
				l2gpa, v, expect);
			CHECK(v == expect);
		}
		checked++;
	}
	vmmu_hw_guest_exit(hw);
	printf("l2 vCPU %u: %" PRIu64 " reads checked, %" PRIu64 " exits checked, %" PRIu64
	       " overlapped a change\n",
	       a->id, checked, exited, skipped);
	CHECK(!vmmu_hw_nested_leave(hw));
	CHECK(!vmmu_hw_vcpu_destroy(hw));
	__atomic_add_fetch(&reads_checked, checked, __ATOMIC_RELAXED);
	__atomic_add_fetch(&reads_exited, exited, __ATOMIC_RELAXED);
	__atomic_add_fetch(&reads_mmio, mmio, __ATOMIC_RELAXED);
	return NULL;
}

static void l1_write(struct vmmu_hw_vcpu *hw, uint64_t gpa, uint64_t val)
{
	CHECK(!vmmu_hw_write(hw, gpa, &val, 8));
	vmmu_hw_guest_exit(hw);
}

static uint64_t l1_rewrites;
static void *l1_thread(void *p)
{
	struct vmmu_vcpu *vcpu = p;
	struct vmmu_hw_vcpu *hw;
	struct test_rng rng;

	test_rng_init(&rng, seed * 7 + 1);
	CHECK(!vmmu_hw_vcpu_create(vcpu, NULL, &hw));
	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		if (test_rng_below(&rng, 16)) {
			unsigned i = (unsigned)test_rng_below(&rng, NR_A);
			unsigned what = (unsigned)test_rng_below(&rng, 4);
			uint64_t page = test_rng_below(&rng, NR_DATA);

			/* Unpublish first: reads racing the write check nothing. */
			if (what == 0) {
				__atomic_store_n(&a_target[i], UINT64_MAX - 1, __ATOMIC_RELEASE);
				l1_write(hw, a_leaf_gpa[i], 0);
				__atomic_store_n(&a_target[i], UNMAPPED, __ATOMIC_RELEASE);
			} else {
				__atomic_store_n(&a_target[i], UINT64_MAX - 1, __ATOMIC_RELEASE);
				l1_write(hw, a_leaf_gpa[i], leaf4k(page, what == 1 ? 1 : 7));
				__atomic_store_n(&a_target[i], page, __ATOMIC_RELEASE);
			}
		} else {
			uint64_t mode = __atomic_load_n(&b_mode, __ATOMIC_RELAXED);

			__atomic_store_n(&b_mode, 2 + mode, __ATOMIC_RELEASE); /* in flight */
			if (mode)
				l1_write(hw, b_entry_gpa, DATA_GPA | 7 | (6ull << 3) | (1ull << 7));
			else
				l1_write(hw, b_entry_gpa, b_table_gpa | 7);
			__atomic_store_n(&b_mode, !mode, __ATOMIC_RELEASE);
		}
		l1_rewrites++;
		/* Leave the readers windows without a change in flight. */
		if (!(l1_rewrites % 4))
			usleep(100);
	}
	CHECK(!vmmu_hw_vcpu_destroy(hw));
	return NULL;
}

static uint64_t chaos_ops;
static void *chaos_thread(void *p)
{
	struct test_rng rng;

	(void)p;
	test_rng_init(&rng, seed * 13 + 5);
	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		unsigned what = (unsigned)test_rng_below(&rng, 8);
		uint64_t page = test_rng_below(&rng, NR_DATA - 8);
		uint64_t hva = (uintptr_t)data_mem + page * PG;
		bool young;

		if (what < 5) {
			/* A host invalidation that leaves the memory as it is. */
			CHECK(!vmmu_notify_invalidate_range_start(vm, hva, hva + 8 * PG));
			CHECK(!vmmu_notify_invalidate_range_end(vm, hva, hva + 8 * PG));
		} else if (what == 5) {
			CHECK(!vmmu_zap_gfn_range(vm, DATA_GPA / PG + page,
						  DATA_GPA / PG + page + 8));
		} else if (what == 6) {
			CHECK(!vmmu_notify_clear_flush_young(vm, hva, hva + 64 * PG, &young));
		} else if (test_rng_below(&rng, 4) == 0) {
			CHECK(!vmmu_zap_all(vm));
		} else {
			/* Delete slot 2, or create it again. */
			uint64_t s = __atomic_load_n(&slot2_seq, __ATOMIC_RELAXED);
			struct vmmu_userspace_memory_region r2 = {
				.slot = 2,
				.guest_phys_addr = DATA2_GPA,
				.memory_size = s % 4 ? NR_C * PG : 0,
				.userspace_addr = (uintptr_t)data2_mem,
			};

			__atomic_store_n(&slot2_seq, s + 1, __ATOMIC_RELEASE);
			CHECK(!vmmu_set_user_memory_region(vm, &r2));
			__atomic_store_n(&slot2_seq, s + 2, __ATOMIC_RELEASE);
		}
		chaos_ops++;
		usleep(50);
	}
	return NULL;
}

int main(void)
{
	struct vmmu_vcpu *vcpus[NR_L2 + 1];
	struct l2_arg args[NR_L2];
	pthread_t l2[NR_L2], l1, chaos;
	double budget = (double)test_env_u64("VMMU_TEST_SECONDS", 3);
	struct vmmu_vm_config cfg = { 0 };
	struct vmmu_nested_stats st;
	struct test_rng rng;
	uint64_t t0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	seed = test_seed();
	test_rng_init(&rng, seed);
	CHECK(!vmmu_hostmem_create(&hm));
	cfg.hostmem = hm;
	CHECK(!vmmu_vm_create(&cfg, &vm));
	CHECK(!vmmu_hostmem_alloc(hm, VMMU_BACKING_ANONYMOUS, 2 * MiB, 0, (void **)&pt_mem));
	CHECK(!vmmu_hostmem_alloc(hm, VMMU_BACKING_ANONYMOUS_THP, NR_DATA * PG, 0,
				  (void **)&data_mem));
	CHECK(!vmmu_hostmem_alloc(hm, VMMU_BACKING_ANONYMOUS, NR_C * PG, 0, (void **)&data2_mem));
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
			.memory_size = NR_DATA * PG,
			.userspace_addr = (uintptr_t)data_mem,
		};

		struct vmmu_userspace_memory_region r2 = {
			.slot = 2,
			.guest_phys_addr = DATA2_GPA,
			.memory_size = NR_C * PG,
			.userspace_addr = (uintptr_t)data2_mem,
		};

		CHECK(!vmmu_set_user_memory_region(vm, &r0));
		CHECK(!vmmu_set_user_memory_region(vm, &r1));
		CHECK(!vmmu_set_user_memory_region(vm, &r2));
	}
	for (uint64_t p = 0; p < NR_DATA; p++)
		memcpy(data_mem + p * PG, &p, 8);

	eptp = alloc_table() | VMMU_EPTP_MT_WB | VMMU_EPTP_WALK_4 |
	       (test_rng_below(&rng, 2) ? VMMU_EPTP_AD : 0);
	for (unsigned i = 0; i < NR_A; i++) {
		uint64_t *e = walk_create(L2_A + i * PG, 1);

		a_target[i] = test_rng_below(&rng, NR_DATA);
		*e = leaf4k(a_target[i], 7);
		a_leaf_gpa[i] = (uint64_t)((uint8_t *)e - pt_mem);
	}
	{
		uint64_t *e = walk_create(L2_B, 2);

		b_entry_gpa = (uint64_t)((uint8_t *)e - pt_mem);
		b_table_gpa = alloc_table();
		for (unsigned j = 0; j < 512; j++)
			*pt(b_table_gpa + j * 8) = leaf4k(511 - j, 7);
		*e = DATA_GPA | 7 | (6ull << 3) | (1ull << 7);
		b_mode = 0;
	}
	for (uint64_t k = 0; k < NR_C; k++) {
		uint64_t tag = TAG_C + k;

		memcpy(data2_mem + k * PG, &tag, 8);
		*walk_create(L2_C + k * PG, 1) = (DATA2_GPA + k * PG) | 7 | (6ull << 3);
	}

	for (unsigned i = 0; i <= NR_L2; i++)
		CHECK(!vmmu_vcpu_create(vm, i, &vcpus[i]));
	printf("budget %.0fs\n", budget);
	for (unsigned i = 0; i < NR_L2; i++) {
		args[i] = (struct l2_arg){ .id = i, .vcpu = vcpus[i] };
		CHECK(!pthread_create(&l2[i], NULL, l2_thread, &args[i]));
	}
	CHECK(!pthread_create(&l1, NULL, l1_thread, vcpus[NR_L2]));
	CHECK(!pthread_create(&chaos, NULL, chaos_thread, NULL));
	while (__atomic_load_n(&ready, __ATOMIC_ACQUIRE) < NR_L2)
		usleep(1000);
	t0 = (uint64_t)time(NULL);
	while ((double)((uint64_t)time(NULL) - t0) < budget)
		usleep(10000);
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < NR_L2; i++)
		pthread_join(l2[i], NULL);
	pthread_join(l1, NULL);
	pthread_join(chaos, NULL);

	CHECK(!vmmu_nested_stats(vm, &st));
	printf("reads checked %" PRIu64 ", exits checked %" PRIu64 ", mmio checked %" PRIu64
	       ", L1 rewrites %" PRIu64 ", host ops %" PRIu64 "\n",
	       reads_checked, reads_exited, reads_mmio, l1_rewrites, chaos_ops);
	printf("nested: faults %" PRIu64 " exits %" PRIu64 " pte_write %" PRIu64
	       " shadow pages %" PRIu64 " zapped %" PRIu64 " leaves 4k %" PRIu64 " 2m %" PRIu64
	       "\n",
	       st.nested_faults, st.nested_exits, st.mmu_pte_write, st.shadow_pages,
	       st.mmu_shadow_zapped, st.ept02_pages_4k, st.ept02_pages_2m);
	CHECK(reads_checked > 0);
	for (unsigned i = 0; i <= NR_L2; i++)
		CHECK(!vmmu_vcpu_destroy(vcpus[i]));
	CHECK(!vmmu_zap_all(vm));
	CHECK(!vmmu_nested_stats(vm, &st));
	/* Reverse maps are per root since issue 14: none left, no bytes. */
	CHECK(st.shadow_pages == 0 && st.write_tracked_gfns == 0 && st.rmap_bytes == 0);
	CHECK(!vmmu_vm_destroy(vm));
	CHECK(!vmmu_hostmem_free(hm, pt_mem));
	CHECK(!vmmu_hostmem_free(hm, data_mem));
	CHECK(!vmmu_hostmem_free(hm, data2_mem));
	CHECK(!vmmu_hostmem_destroy(hm));
	return 0;
}
