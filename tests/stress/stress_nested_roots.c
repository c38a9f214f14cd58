/* SPDX-License-Identifier: MIT */
/*
 * stress_nested_roots - several L2s (different EPT pointers, so different
 * EPT02 roots with their own locks) fault at once while everything that
 * crosses roots runs beside them (issue 14, docs/nested-per-root-locking.md).
 *
 * L1 memory: slot 0 holds the EPT12 tables ([0, 2 MiB)) and tag pages
 * ([2 MiB, 8 MiB), word 0 = the page's number, never written); slot 1 (THP)
 * holds the data L2s write, dirty-logged; slot 2 is deleted and created
 * again.  Three L2s, four L2 vCPUs (two share L2 0 at start; they switch
 * L2s, with INVEPT, while running).  Each L2's map:
 *  - W, L2 [0, 4 MiB): onto slot 1 at L1 offsets 0, 2 and 4 MiB (L2 0 and 1
 *    overlap, L2 0 and 2 are disjoint), with 2 MiB EPT12 leaves for L2 0
 *    and 2 (huge EPT02 leaves that eager splitting breaks) and 4 KiB ones
 *    for L2 1.  L2 vCPUs write random words there.
 *  - R, NR_R pages at L2 8 MiB: 4 KiB leaves onto tag pages, rewritten by
 *    the L1 thread (through its hardware-model vCPU: writes to shadowed
 *    tables exit and are emulated).  L2 0 and L2 1 share that EPT12 table
 *    (an emulated write must reach both roots); L2 2 has its own.  An L2
 *    read that saw the same published target before and after reads exactly
 *    that tag, or exits when the target is "not mapped".
 *  - C, NR_C pages at L2 12 MiB onto slot 2: reads between a delete and the
 *    next create are MMIO (-EFAULT), others read the page's tag.
 * Other threads: the L1 vCPU (rewrites R entries, INVEPTs, visits L2s),
 * the memslot thread (slot 2 deleted and created; slot_zap RANGE or
 * ALL_FAST from the seed), the harvester (pre-copy migration of slot 1
 * with eager splitting on: get-dirty-log or manual protect from the seed,
 * logging restarted now and then, the split caches shrunk and eager
 * splitting turned off and on), and the ager (clear_flush_young and
 * no-op invalidations over slot 1).
 *
 * At the end: the migration check (after a final harvest the destination
 * is byte-exact with slot 1), then every root is put (L2 exits, INVEPT)
 * and the nested MMU must hold nothing: no root, no table, no leaf, no
 * write-tracked gfn.
 *
 * Seeded (VMMU_SEED=N replays the choices; thread timing still varies);
 * VMMU_TEST_SECONDS sets the time budget (default 3);
 * VMMU_TEST_NESTED_GLOBAL_LOCK=1 runs the global-lock mode for a third of
 * the budget (at least one second).
 */
#define _GNU_SOURCE
#include <vmmu/hostmem.h>
#include <vmmu/hw.h>
#include <vmmu/nested.h>
#include <vmmu/vmmu.h>

#include "mmu_internal.h"
#include "../common/test_util.h"
#include "../common/stress_util.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#define PG 4096ull
#define MiB (1ull << 20)
#define NR_L2 3
#define NR_V 4 /* L2 vCPUs; vCPU NR_V is L1 */
#define PT_SIZE (2 * MiB)
#define SLOT0_SIZE (8 * MiB)
#define NR_TAG ((SLOT0_SIZE - PT_SIZE) / PG)
#define DATA_GPA (16 * MiB)
#define NR_PAGES 2048 /* 8 MiB of logged data */
#define W_SIZE (4 * MiB)
#define L2_R (8 * MiB)
#define NR_R 128
#define L2_C (12 * MiB)
#define DATA2_GPA (32 * MiB)
#define NR_C 64
#define TAG_C 100000
#define UNMAPPED UINT64_MAX
#define IN_FLIGHT (UINT64_MAX - 1)

#define CHECK(cond) STRESS_CHECK(cond)

static uint64_t seed;
static int stop;
static unsigned ready;

static struct vmmu_hostmem *hm;
static struct vmmu_vm *vm;
static struct vmmu_vcpu *vcpus[NR_V + 1];
static uint8_t *slot0, *data_mem, *data2_mem, *dest;
static uint64_t eptp[NR_L2];
static const uint64_t w_base[NR_L2] = { 0, 2 * MiB, 4 * MiB };
static bool logging_manual;

/* Region R: table 0 is L2 0's and L2 1's, table 1 is L2 2's. */
static uint64_t r_entry_gpa[2][NR_R];
static uint64_t r_target[2][NR_R]; /* tag page, UNMAPPED or IN_FLIGHT */
static unsigned r_table_of(unsigned l2)
{
	return l2 == 2;
}

/* Slot 2: odd while being deleted or created; present when % 4 == 0. */
static uint64_t slot2_seq;

static uint64_t n_writes, n_checked, n_exits, n_mmio, n_switches;
static uint64_t n_rewrites, n_invept, n_slot_ops, n_harvests, n_copied, n_restarts, n_aged;

/* Counters bumped by several threads. */
#define COUNT(x) __atomic_add_fetch(&(x), 1, __ATOMIC_RELAXED)

static uint64_t pt_next = PG;
static uint64_t alloc_table(void)
{
	uint64_t gpa = pt_next;

	CHECK(gpa + PG <= PT_SIZE);
	pt_next += PG;
	memset(slot0 + gpa, 0, PG);
	return gpa;
}

static uint64_t *pte(uint64_t gpa)
{
	return (uint64_t *)(void *)(slot0 + gpa);
}

/* Host-side EPT12 setup (before any vCPU runs): the entry at @level for
 * @l2gpa, creating tables above it. */
static uint64_t *walk_create(uint64_t root, uint64_t l2gpa, int level)
{
	uint64_t table = root;

	for (int l = 4; l > level; l--) {
		uint64_t *p = pte(table + ((l2gpa >> (12 + 9 * (l - 1))) & 511) * 8);

		if (!*p)
			*p = alloc_table() | 7;
		table = *p & ~0xfffull;
	}
	return pte(table + ((l2gpa >> (12 + 9 * (level - 1))) & 511) * 8);
}

static uint64_t tag_leaf(uint64_t tag, unsigned rights)
{
	return (PT_SIZE + tag * PG) | rights | (6ull << 3);
}

static void build_ept12(void)
{
	uint64_t shared_r_table = 0;

	for (unsigned k = 0; k < NR_L2; k++) {
		uint64_t root = alloc_table();

		eptp[k] = root | VMMU_EPTP_MT_WB | VMMU_EPTP_WALK_4;
		/* W */
		for (uint64_t off = 0; off < W_SIZE;) {
			uint64_t l1 = DATA_GPA + w_base[k] + off;

			if (k == 1) {
				*walk_create(root, off, 1) = l1 | 7 | (6ull << 3);
				off += PG;
			} else {
				*walk_create(root, off, 2) = l1 | 7 | (6ull << 3) | (1ull << 7);
				off += 2 * MiB;
			}
		}
		/* R: L2 1 links L2 0's level-1 table. */
		if (k == 1) {
			*walk_create(root, L2_R, 2) = shared_r_table | 7;
		} else {
			unsigned t = r_table_of(k);

			for (unsigned i = 0; i < NR_R; i++) {
				uint64_t *e = walk_create(root, L2_R + i * PG, 1);
				uint64_t tag = (t * NR_R + i) % NR_TAG;

				*e = tag_leaf(tag, 7);
				r_entry_gpa[t][i] = (uint64_t)((uint8_t *)e - slot0);
				r_target[t][i] = tag;
			}
			if (k == 0)
				shared_r_table = r_entry_gpa[0][0] & ~0xfffull;
		}
		/* C */
		for (unsigned i = 0; i < NR_C; i++)
			*walk_create(root, L2_C + i * PG, 1) = (DATA2_GPA + i * PG) | 7 |
							       (6ull << 3);
	}
}

/* ------------------------------------------------------------------ */

struct l2_state {
	unsigned id;
	unsigned l2; /* current L2 */
	struct vmmu_hw_vcpu *hw;
	struct test_rng rng;
};

static void l2_check_r(struct l2_state *s)
{
	unsigned t = r_table_of(s->l2), i = (unsigned)test_rng_below(&s->rng, NR_R);
	uint64_t before, after, v = 0;
	int r;

	before = __atomic_load_n(&r_target[t][i], __ATOMIC_ACQUIRE);
	r = vmmu_hw_read(s->hw, L2_R + i * PG, &v, 8);
	after = __atomic_load_n(&r_target[t][i], __ATOMIC_ACQUIRE);
	if (before != after || before == IN_FLIGHT)
		return;
	if (before == UNMAPPED) {
		CHECK(r == -EXDEV);
		COUNT(n_exits);
		return;
	}
	if (r || v != before)
		fprintf(stderr,
			"L2 %u vCPU %u: R page %u read %d value %" PRIu64 ", expected tag %" PRIu64
			"\n",
			s->l2, s->id, i, r, v, before);
	CHECK(!r && v == before);
	COUNT(n_checked);
}

static void l2_check_c(struct l2_state *s)
{
	unsigned i = (unsigned)test_rng_below(&s->rng, NR_C);
	uint64_t before, after, v = 0;
	int r;

	before = __atomic_load_n(&slot2_seq, __ATOMIC_ACQUIRE);
	r = vmmu_hw_read(s->hw, L2_C + i * PG, &v, 8);
	after = __atomic_load_n(&slot2_seq, __ATOMIC_ACQUIRE);
	if (before != after || (before & 1))
		return;
	if (before % 4) {
		if (r != -EFAULT)
			fprintf(stderr,
				"L2 %u: C page %u read %d value %" PRIu64
				" while slot 2 is deleted (expected -EFAULT)\n",
				s->l2, i, r, v);
		CHECK(r == -EFAULT);
		COUNT(n_mmio);
	} else {
		if (r || v != TAG_C + i)
			fprintf(stderr, "L2 %u: C page %u read %d value %" PRIu64 "\n", s->l2, i, r,
				v);
		CHECK(!r && v == TAG_C + i);
		COUNT(n_checked);
	}
}

static void l2_write(struct l2_state *s)
{
	uint64_t off = test_rng_below(&s->rng, W_SIZE / 8) * 8;
	uint64_t v = test_rng_next(&s->rng);

	CHECK(!vmmu_hw_write(s->hw, off, &v, 8));
	COUNT(n_writes);
}

/* Another L2: exit to L1, sometimes INVEPT the old one, enter. */
static void l2_switch(struct l2_state *s)
{
	unsigned next = (unsigned)test_rng_below(&s->rng, NR_L2);
	unsigned what = (unsigned)test_rng_below(&s->rng, 4);

	CHECK(!vmmu_hw_nested_leave(s->hw));
	if (what == 0)
		CHECK(!vmmu_hw_invept(s->hw, VMMU_INVEPT_SINGLE, eptp[s->l2]));
	else if (what == 1)
		CHECK(!vmmu_hw_invept(s->hw, VMMU_INVEPT_GLOBAL, 0));
	CHECK(!vmmu_hw_nested_enter(s->hw, eptp[next]));
	s->l2 = next;
	COUNT(n_switches);
}

static void *l2_thread(void *p)
{
	struct l2_state s = { .id = (unsigned)(uintptr_t)p };

	s.l2 = s.id ? s.id - 1 : 0; /* vCPUs 0 and 1 in L2 0 */
	test_rng_init(&s.rng, seed * 31 + s.id);
	CHECK(!vmmu_hw_vcpu_create(vcpus[s.id], NULL, &s.hw));
	CHECK(!vmmu_hw_nested_enter(s.hw, eptp[s.l2]));
	__atomic_add_fetch(&ready, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		unsigned dice = (unsigned)test_rng_below(&s.rng, 1024);

		if (dice < 512)
			l2_write(&s);
		else if (dice < 832)
			l2_check_r(&s);
		else if (dice < 1016)
			l2_check_c(&s);
		else
			l2_switch(&s);
		if (!(dice % 32))
			vmmu_hw_guest_exit(s.hw);
	}
	vmmu_hw_guest_exit(s.hw);
	CHECK(!vmmu_hw_nested_leave(s.hw));
	CHECK(!vmmu_hw_vcpu_destroy(s.hw));
	return NULL;
}

/* ------------------------------------------------------------------ */

static void l1_write(struct vmmu_hw_vcpu *hw, uint64_t gpa, uint64_t val)
{
	CHECK(!vmmu_hw_write(hw, gpa, &val, 8));
	vmmu_hw_guest_exit(hw);
}

static void *l1_thread(void *p)
{
	struct vmmu_hw_vcpu *hw;
	struct test_rng rng;

	(void)p;
	test_rng_init(&rng, seed * 7 + 1);
	CHECK(!vmmu_hw_vcpu_create(vcpus[NR_V], NULL, &hw));
	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		unsigned dice = (unsigned)test_rng_below(&rng, 64);

		if (dice < 56) {
			unsigned t = (unsigned)test_rng_below(&rng, 2);
			unsigned i = (unsigned)test_rng_below(&rng, NR_R);
			uint64_t tag = test_rng_below(&rng, NR_TAG);

			/* Unpublished first: reads racing the write check nothing. */
			__atomic_store_n(&r_target[t][i], IN_FLIGHT, __ATOMIC_RELEASE);
			if (dice < 8) {
				l1_write(hw, r_entry_gpa[t][i], 0);
				__atomic_store_n(&r_target[t][i], UNMAPPED, __ATOMIC_RELEASE);
			} else {
				l1_write(hw, r_entry_gpa[t][i], tag_leaf(tag, dice & 1 ? 1 : 7));
				__atomic_store_n(&r_target[t][i], tag, __ATOMIC_RELEASE);
			}
			COUNT(n_rewrites);
		} else if (dice < 60) {
			/* L1 runs an L2 for a moment (its roots are shared). */
			unsigned k = (unsigned)test_rng_below(&rng, NR_L2);
			uint64_t v;

			CHECK(!vmmu_hw_nested_enter(hw, eptp[k]));
			CHECK(!vmmu_hw_read(hw, test_rng_below(&rng, W_SIZE / 8) * 8, &v, 8));
			CHECK(!vmmu_hw_nested_leave(hw));
		} else {
			CHECK(!vmmu_hw_invept(hw,
					      dice & 1 ? VMMU_INVEPT_GLOBAL : VMMU_INVEPT_SINGLE,
					      eptp[test_rng_below(&rng, NR_L2)]));
			COUNT(n_invept);
		}
		if (!(dice % 4))
			usleep(50);
	}
	CHECK(!vmmu_hw_invept(hw, VMMU_INVEPT_GLOBAL, 0));
	CHECK(!vmmu_hw_vcpu_destroy(hw));
	return NULL;
}

static void *slot_thread(void *p)
{
	struct test_rng rng;

	(void)p;
	test_rng_init(&rng, seed * 13 + 5);
	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
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
		COUNT(n_slot_ops);
		usleep((useconds_t)test_rng_range(&rng, 200, 3000));
	}
	/* Leave slot 2 present.  L2 threads may still be reading (they stop
	 * after this thread does): the create moves the sequence like any
	 * other, or a C read racing it would see the new slot while the
	 * sequence still says "deleted". */
	if (__atomic_load_n(&slot2_seq, __ATOMIC_RELAXED) % 4) {
		uint64_t s = __atomic_load_n(&slot2_seq, __ATOMIC_RELAXED);
		struct vmmu_userspace_memory_region r2 = {
			.slot = 2,
			.guest_phys_addr = DATA2_GPA,
			.memory_size = NR_C * PG,
			.userspace_addr = (uintptr_t)data2_mem,
		};

		__atomic_store_n(&slot2_seq, s + 1, __ATOMIC_RELEASE);
		CHECK(!vmmu_set_user_memory_region(vm, &r2));
		__atomic_store_n(&slot2_seq, s + 2, __ATOMIC_RELEASE);
	}
	return NULL;
}

static void *age_thread(void *p)
{
	struct test_rng rng;

	(void)p;
	test_rng_init(&rng, seed * 19 + 3);
	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		uint64_t page = test_rng_below(&rng, NR_PAGES - 64);
		uint64_t hva = (uintptr_t)data_mem + page * PG;
		bool young;

		if (test_rng_below(&rng, 2)) {
			CHECK(!vmmu_notify_clear_flush_young(vm, hva, hva + 64 * PG, &young));
		} else {
			/* A host invalidation that leaves the memory as it is. */
			CHECK(!vmmu_notify_invalidate_range_start(vm, hva, hva + 8 * PG));
			CHECK(!vmmu_notify_invalidate_range_end(vm, hva, hva + 8 * PG));
		}
		COUNT(n_aged);
		usleep((useconds_t)test_rng_range(&rng, 100, 1000));
	}
	return NULL;
}

/* ------------------------------------------------------------------ */
/* The migration (main thread). */

static void copy_page(uint64_t p)
{
	/* The source may change under us: that page is dirty again and is
	 * copied by a later harvest. */
	for (uint64_t i = 0; i < PG / 8; i++)
		((uint64_t *)(void *)(dest + p * PG))[i] = __atomic_load_n(
			(uint64_t *)(void *)(data_mem + p * PG) + i, __ATOMIC_RELAXED);
	n_copied++;
}

static void harvest(void)
{
	static uint64_t bitmap[NR_PAGES / 64];

	CHECK(!vmmu_get_dirty_log(vm, 1, bitmap));
	if (logging_manual)
		CHECK(!vmmu_clear_dirty_log(vm, 1, 0, NR_PAGES, bitmap));
	/* Copy after the protection: a later write is in the next harvest. */
	for (uint64_t p = 0; p < NR_PAGES; p++)
		if ((bitmap[p / 64] >> (p % 64)) & 1)
			copy_page(p);
	n_harvests++;
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

/* Logging on (eager split of the huge EPT02 leaves), everything copied. */
static void start_migration(void)
{
	set_logging(true);
	for (uint64_t p = 0; p < NR_PAGES; p++)
		copy_page(p);
}

int main(void)
{
	double budget = (double)test_env_u64("VMMU_TEST_SECONDS", 3);
	struct vmmu_vm_config cfg = { 0 };
	pthread_t l2[NR_V], l1, slots, ager;
	struct vmmu_nested_stats st;
	struct test_rng rng;
	uint64_t t0, bad = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	seed = test_seed();
	test_rng_init(&rng, seed);
	cfg.nested_global_lock = test_env_u64("VMMU_TEST_NESTED_GLOBAL_LOCK", 0) != 0;
	if (cfg.nested_global_lock)
		budget = budget / 3 > 1 ? budget / 3 : 1;
	cfg.slot_zap = test_rng_below(&rng, 2) ? VMMU_SLOT_ZAP_ALL_FAST : VMMU_SLOT_ZAP_RANGE;
	cfg.disable_ept_ad = test_rng_below(&rng, 4) == 0;
	logging_manual = test_rng_below(&rng, 2);
	if (logging_manual)
		cfg.manual_dirty_log_protect = VMMU_DIRTY_LOG_MANUAL_PROTECT;
	printf("nested locking %s, slot_zap %s, EPT A/D %s, %s, budget %.0fs\n",
	       cfg.nested_global_lock ? "global" : "per root", cfg.slot_zap ? "all-fast" : "range",
	       cfg.disable_ept_ad ? "off" : "on",
	       logging_manual ? "manual protect" : "get-dirty-log", budget);

	CHECK(!vmmu_hostmem_create(&hm));
	cfg.hostmem = hm;
	CHECK(!vmmu_vm_create(&cfg, &vm));
	CHECK(!vmmu_vm_set_eager_split(vm, true));
	CHECK(!vmmu_hostmem_alloc(hm, VMMU_BACKING_ANONYMOUS, SLOT0_SIZE, 0, (void **)&slot0));
	CHECK(!vmmu_hostmem_alloc(hm, VMMU_BACKING_ANONYMOUS_THP, NR_PAGES * PG, 0,
				  (void **)&data_mem));
	CHECK(!vmmu_hostmem_alloc(hm, VMMU_BACKING_ANONYMOUS, NR_C * PG, 0, (void **)&data2_mem));
	dest = calloc(NR_PAGES, PG);
	CHECK(dest);
	for (uint64_t t = 0; t < NR_TAG; t++)
		memcpy(slot0 + PT_SIZE + t * PG, &t, 8);
	for (uint64_t p = 0; p < NR_PAGES; p++)
		memset(data_mem + p * PG, (int)(p & 0xff), PG);
	for (uint64_t i = 0; i < NR_C; i++) {
		uint64_t tag = TAG_C + i;

		memcpy(data2_mem + i * PG, &tag, 8);
	}
	build_ept12();
	{
		struct vmmu_userspace_memory_region r[3] = {
			{ .slot = 0, .memory_size = SLOT0_SIZE, .userspace_addr = (uintptr_t)slot0 },
			{ .slot = 1,
			  .guest_phys_addr = DATA_GPA,
			  .memory_size = NR_PAGES * PG,
			  .userspace_addr = (uintptr_t)data_mem },
			{ .slot = 2,
			  .guest_phys_addr = DATA2_GPA,
			  .memory_size = NR_C * PG,
			  .userspace_addr = (uintptr_t)data2_mem },
		};

		for (int i = 0; i < 3; i++)
			CHECK(!vmmu_set_user_memory_region(vm, &r[i]));
	}
	for (unsigned i = 0; i <= NR_V; i++)
		CHECK(!vmmu_vcpu_create(vm, i, &vcpus[i]));

	/* L2s run first without logging: EPT02 gets huge leaves to split. */
	for (unsigned i = 0; i < NR_V; i++)
		CHECK(!pthread_create(&l2[i], NULL, l2_thread, (void *)(uintptr_t)i));
	while (__atomic_load_n(&ready, __ATOMIC_ACQUIRE) < NR_V)
		usleep(1000);
	CHECK(!pthread_create(&l1, NULL, l1_thread, NULL));
	CHECK(!pthread_create(&slots, NULL, slot_thread, NULL));
	CHECK(!pthread_create(&ager, NULL, age_thread, NULL));
	usleep(20000);
	start_migration();
	t0 = stress_now_ns();
	while ((double)(stress_now_ns() - t0) < budget * 1e9) {
		harvest();
		unsigned dice = (unsigned)test_rng_below(&rng, 64);

		if (dice == 0) {
			/* The split caches shrink while roots split and fault. */
			uint64_t freed;

			CHECK(!vmmu_vm_shrink(vm, test_rng_below(&rng, 8) + 1, &freed));
		} else if (dice == 1) {
			CHECK(!vmmu_vm_set_eager_split(vm, test_rng_below(&rng, 4) != 0));
		} else if (dice < 6) {
			/* Start over: huge EPT02 leaves come back, then are split
			 * again while the L2s write. */
			set_logging(false);
			usleep(2000);
			start_migration();
			n_restarts++;
		}
		usleep(1000);
	}
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < NR_V; i++)
		pthread_join(l2[i], NULL);
	pthread_join(l1, NULL);
	pthread_join(slots, NULL);
	pthread_join(ager, NULL);

	/* The migration's last pass: byte-exact. */
	harvest();
	for (uint64_t p = 0; p < NR_PAGES; p++)
		if (memcmp(dest + p * PG, data_mem + p * PG, PG)) {
			if (bad < 5)
				fprintf(stderr,
					"page %" PRIu64 " differs: a write was not logged\n", p);
			bad++;
		}
	CHECK(!vmmu_nested_stats(vm, &st));
	printf("L2 writes %" PRIu64 ", reads checked %" PRIu64 ", exits %" PRIu64 ", MMIO %" PRIu64
	       ", L2 switches %" PRIu64 "\n",
	       n_writes, n_checked, n_exits, n_mmio, n_switches);
	printf("EPT12 rewrites %" PRIu64 ", L1 INVEPTs %" PRIu64 ", slot ops %" PRIu64
	       ", harvests %" PRIu64 ", pages copied %" PRIu64 ", restarts %" PRIu64
	       ", ager passes %" PRIu64 "\n",
	       n_rewrites, n_invept, n_slot_ops, n_harvests, n_copied, n_restarts, n_aged);
	printf("nested faults %" PRIu64 ", roots created %" PRIu64 ", root lock contended %" PRIu64
	       ", tracking barriers %" PRIu64 ", EPT12 retries %" PRIu64
	       ", cross-root visits %" PRIu64 " skips %" PRIu64 ", huge leaves split %" PRIu64
	       ", pages differing %" PRIu64 "\n",
	       st.nested_faults, st.roots_created, st.root_lock_contended, st.track_barriers,
	       st.ept12_retries, st.cross_root_visits, st.cross_root_skips, st.split_huge_pages,
	       bad);
	CHECK(bad == 0);
	CHECK(n_writes > 0 && n_checked > 0);

	/* Every root put (the vCPUs left L2; their caches go with INVEPT):
	 * nothing of the nested MMU may stay. */
	for (unsigned i = 0; i <= NR_V; i++)
		CHECK(!vmmu_vcpu_invept(vcpus[i], VMMU_INVEPT_GLOBAL, 0));
	vmmu_zap_fast_flush(vm);
	CHECK(!vmmu_nested_stats(vm, &st));
	printf("after the last put: roots %" PRIu64 ", shadow pages %" PRIu64 ", leaves %" PRIu64
	       ", tracked gfns %" PRIu64 "\n",
	       st.roots, st.shadow_pages, st.ept02_pages_4k + st.ept02_pages_2m + st.ept02_pages_1g,
	       st.write_tracked_gfns);
	CHECK(st.roots == 0);
	CHECK(st.shadow_pages == 0);
	CHECK(st.ept02_pages_4k + st.ept02_pages_2m + st.ept02_pages_1g == 0);
	CHECK(st.write_tracked_gfns == 0);
	{
		struct vmmu_nested_root_stats rs[4];

		CHECK(vmmu_nested_root_stats(vm, rs, 4) == 0);
	}

	for (unsigned i = 0; i <= NR_V; i++)
		CHECK(!vmmu_vcpu_destroy(vcpus[i]));
	CHECK(!vmmu_vm_destroy(vm));
	CHECK(!vmmu_hostmem_free(hm, slot0));
	CHECK(!vmmu_hostmem_free(hm, data_mem));
	CHECK(!vmmu_hostmem_free(hm, data2_mem));
	CHECK(!vmmu_hostmem_destroy(hm));
	free(dest);
	return 0;
}
