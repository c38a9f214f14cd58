/* SPDX-License-Identifier: MIT */
/*
 * test_nested_split - eager splitting of huge EPT02 leaves when dirty
 * logging starts on an L1 slot that L2 maps with 2 MiB EPT12 leaves over
 * THP memory.
 *
 * - Every logging mode: the huge leaves are gone before the enable call
 *   returns (initially-set: before the clear returns), each replaced by 512
 *   pieces with the huge leaf's translation and rights minus W; L2's writes
 *   afterwards take only the lockless nested fast fault (no locked nested
 *   fault: fails without the split, which zapped the huge leaves), and each
 *   harvest reports exactly the pages written.
 * - Caches: one top-up (with the MMU lock dropped) splits two huge leaves,
 *   four need two; the desc cache holds [min, 2 min] objects; they stay when
 *   logging stops and go with vmmu_vm_shrink() and vmmu_vm_set_eager_split().
 * - Recovery: after logging stops and the range is zapped, faults give back
 *   2 MiB EPT02 leaves.
 * - disable_eager_split (at creation or at run time) covers EPT02.
 * - Every allocation of a split fails in turn (the nested pool's and the C
 *   library's malloc and calloc, wrapped for this program only): the huge
 *   leaves left are write-protected, no write is lost, the pool holds
 *   nothing but the caches once the tables are zapped.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "../common/dirty_ring.h"
#include "../common/nested_env.h"
#include "nested/nested_internal.h"

#include <stdlib.h>

#define MiB (1ull << 20)
#define SLOT_GPA (16 * MiB)

#include "../common/alloc_fail.h"

enum mode {
	M_WRPROT,
	M_DBIT,
	M_MANUAL,
	M_INITSET,
	M_RING,
	M_NR
};

static struct vmmu_vm_config mode_cfg(enum mode m)
{
	struct vmmu_vm_config cfg = { 0 };

	if (m == M_WRPROT)
		cfg.dirty_log_wrprot = true;
	if (m == M_MANUAL)
		cfg.manual_dirty_log_protect = VMMU_DIRTY_LOG_MANUAL_PROTECT;
	if (m == M_INITSET)
		cfg.manual_dirty_log_protect = VMMU_DIRTY_LOG_MANUAL_PROTECT |
					       VMMU_DIRTY_LOG_INITIALLY_SET;
	if (m == M_RING)
		cfg.dirty_ring_size = 4096;
	return cfg;
}

/* L1 slot 1 at 16 MiB, @nhuge * 2 MiB of THP, mapped by L2 from 0 with
 * 2 MiB EPT12 leaves; L2 writes every page.  False if THP gave no 2 MiB
 * EPT02 leaves (the test is then skipped). */
static uint64_t g_eptp;

static bool setup(struct nenv *e, struct vmmu_vm_config cfg, unsigned nhuge)
{
	struct vmmu_nested_stats st;
	uint64_t root, eptp;

	ne_init(e, 8 * MiB, cfg);
	ne_add_slot(e, SLOT_GPA, nhuge * 2 * MiB, VMMU_BACKING_ANONYMOUS_THP, 0);
	root = ne_alloc_table(e);
	g_eptp = eptp = root | VMMU_EPTP_MT_WB | VMMU_EPTP_WALK_4;
	for (unsigned i = 0; i < nhuge; i++)
		assert_true(ne_set(e, eptp, i * 2 * MiB, 2,
				   (SLOT_GPA + i * 2 * MiB) | 7 | EPT12_WB | EPT12_PS));
	assert_int_equal(vmmu_hw_nested_enter(e->hw, eptp), 0);
	for (uint64_t p = 0; p < nhuge * 512ull; p++)
		assert_int_equal(vmmu_hw_write(e->hw, p * 4096, &p, 8), 0);
	assert_int_equal(vmmu_hw_guest_exit(e->hw), 0);
	assert_int_equal(vmmu_nested_stats(e->vm, &st), 0);
	return st.ept02_pages_2m == nhuge;
}

static int set_logging(struct nenv *e, bool on)
{
	struct vmmu_userspace_memory_region r = {
		.slot = 1,
		.flags = on ? VMMU_MEM_LOG_DIRTY_PAGES : 0,
		.guest_phys_addr = SLOT_GPA,
		.memory_size = e->slots[1].size,
		.userspace_addr = (uintptr_t)e->slots[1].hva,
	};

	return vmmu_set_user_memory_region(e->vm, &r);
}

/* The EPT02 leaf mapping L2 @gpa and its level (0: none). */
static uint64_t ept02_leaf(struct nenv *e, uint64_t gpa, int *level)
{
	struct nsp *root = e->vcpu->nested->root->sp;
	uint64_t gfn = gpa >> 12, *pt = root->spt;

	for (int l = (int)root->role.level; l >= 1; l--) {
		uint64_t spte = pt[spte_index(gfn, l)];

		if (!is_shadow_present_pte(spte))
			break;
		if (is_last_spte(spte, l)) {
			*level = l;
			return spte;
		}
		pt = spte_to_child_pt(spte);
	}
	*level = 0;
	return 0;
}

static void skip_no_thp(struct nenv *e)
{
	print_message("THP gave no 2 MiB pages: skipped\n");
	assert_int_equal(vmmu_hw_nested_leave(e->hw), 0);
	ne_fini(e);
	skip();
}

/* Harvest; @seen gets the pages reported. */
static void harvest(struct nenv *e, enum mode m, uint32_t *next, uint8_t *seen, uint64_t pages)
{
	uint64_t bitmap[4096 / 64];

	memset(seen, 0, pages);
	if (m == M_RING) {
		assert_true(test_ring_collect(e->vcpu, next, 1, seen, pages) >= 0);
		assert_int_equal(vmmu_reset_dirty_rings(e->vm, NULL), 0);
		return;
	}
	assert_int_equal(vmmu_get_dirty_log(e->vm, 1, bitmap), 0);
	if (m == M_MANUAL || m == M_INITSET)
		assert_int_equal(vmmu_clear_dirty_log(e->vm, 1, 0, (uint32_t)pages, bitmap), 0);
	for (uint64_t p = 0; p < pages; p++)
		seen[p] = (bitmap[p / 64] >> (p % 64)) & 1;
}

#define AD (EPT_ACCESSED | EPT_DIRTY)

static void split_mode(enum mode m, struct test_rng *rng)
{
	const uint64_t pages = 1024;
	struct vmmu_nested_stats st;
	uint64_t huge[2], faults;
	uint8_t seen[1024];
	uint32_t next = 0;
	struct nenv e;
	int level;

	if (!setup(&e, mode_cfg(m), 2))
		skip_no_thp(&e);
	for (unsigned i = 0; i < 2; i++) {
		huge[i] = ept02_leaf(&e, i * 2 * MiB, &level);
		assert_int_equal(level, 2);
	}
	assert_int_equal(set_logging(&e, true), 0);
	if (m == M_INITSET) {
		uint64_t bitmap[1024 / 64];

		/* Nothing is split when logging starts: the clear splits. */
		assert_int_equal(vmmu_nested_stats(e.vm, &st), 0);
		assert_int_equal(st.split_huge_pages, 0);
		memset(bitmap, 0xff, sizeof(bitmap));
		assert_int_equal(vmmu_clear_dirty_log(e.vm, 1, 0, (uint32_t)pages, bitmap), 0);
	}
	assert_int_equal(vmmu_nested_stats(e.vm, &st), 0);
	assert_int_equal(st.ept02_pages_2m, 0);
	assert_int_equal(st.ept02_pages_4k, pages);
	assert_int_equal(st.split_huge_pages, 2);
	/* Two huge leaves, one top-up: none in between. */
	assert_int_equal(st.split_topups, 1);
	assert_true(st.split_desc_cache_objs >= NESTED_SPLIT_DESC_MIN &&
		    st.split_desc_cache_objs <= 2 * NESTED_SPLIT_DESC_MIN);
	assert_int_equal(st.split_desc_cache_bytes % st.split_desc_cache_objs, 0);

	/* The 512 pieces: the huge leaf's translation and rights, minus W. */
	for (uint64_t p = 0; p < pages; p++) {
		uint64_t spte = ept02_leaf(&e, p * 4096, &level);
		uint64_t want = make_small_spte(huge[p / 512], 2, (unsigned)(p % 512));

		assert_int_equal(level, 1);
		assert_false(spte & EPT_WRITABLE);
		assert_int_equal(spte & ~AD, want & ~(AD | EPT_WRITABLE));
	}

	faults = st.nested_faults;
	for (int round = 0; round < 6; round++) {
		uint8_t wrote[1024] = { 0 };

		for (int k = 0; k < 150; k++) {
			uint64_t p = test_rng_below(rng, pages), v = p * 7 + (uint64_t)round;

			wrote[p] = 1;
			assert_int_equal(vmmu_hw_write(e.hw, p * 4096 + 8, &v, 8), 0);
		}
		assert_int_equal(vmmu_hw_guest_exit(e.hw), 0);
		harvest(&e, m, &next, seen, pages);
		for (uint64_t p = 0; p < pages; p++)
			if (wrote[p] != seen[p])
				fail_msg("mode %d round %d page %llu: written %d reported %d", m,
					 round, (unsigned long long)p, wrote[p], seen[p]);
	}
	/* Every write was fixed by the lockless fast fault. */
	assert_int_equal(vmmu_nested_stats(e.vm, &st), 0);
	assert_int_equal(st.nested_faults, faults);

	/* Logging stops: the caches stay; once the range is zapped, faults
	 * give back 2 MiB EPT02 leaves. */
	assert_int_equal(set_logging(&e, false), 0);
	assert_int_equal(vmmu_zap_gfn_range(e.vm, SLOT_GPA >> 12, (SLOT_GPA >> 12) + pages), 0);
	for (uint64_t p = 0; p < pages; p += 97) {
		uint64_t v;

		assert_int_equal(vmmu_hw_read(e.hw, p * 4096, &v, 8), 0);
	}
	assert_int_equal(vmmu_hw_guest_exit(e.hw), 0);
	assert_int_equal(vmmu_nested_stats(e.vm, &st), 0);
	assert_int_equal(st.ept02_pages_2m, 2);
	assert_true(st.split_desc_cache_objs >= NESTED_SPLIT_DESC_MIN);
	assert_int_equal(vmmu_hw_nested_leave(e.hw), 0);
	ne_fini(&e);
}

static void test_split_modes(void **state)
{
	struct test_rng rng;

	(void)state;
	test_rng_init(&rng, test_seed() + 13);
	for (int m = 0; m < M_NR; m++)
		split_mode((enum mode)m, &rng);
}

/* Four huge leaves: two top-ups (each fills the caches for two splits). */
static void test_topups(void **state)
{
	struct vmmu_nested_stats st;
	struct nenv e;
	uint64_t freed;

	(void)state;
	if (!setup(&e, mode_cfg(M_WRPROT), 4))
		skip_no_thp(&e);
	assert_int_equal(set_logging(&e, true), 0);
	assert_int_equal(vmmu_nested_stats(e.vm, &st), 0);
	assert_int_equal(st.split_huge_pages, 4);
	assert_int_equal(st.split_topups, 2);
	assert_int_equal(st.ept02_pages_2m, 0);
	assert_int_equal(set_logging(&e, false), 0);

	/* Bad input changes nothing. */
	assert_int_equal(vmmu_vm_shrink(NULL, 1, &freed), -EINVAL);
	assert_int_equal(vmmu_vm_shrink(e.vm, 1, NULL), -EINVAL);
	assert_int_equal(vmmu_vm_set_eager_split(NULL, false), -EINVAL);
	assert_int_equal(vmmu_nested_stats(e.vm, &st), 0);
	assert_true(st.split_desc_cache_objs > 0);

	/* Shrinking frees cached objects first, one at a time if asked. */
	{
		uint64_t held = st.split_desc_cache_objs + st.split_page_header_cache_objs +
				st.split_shadow_page_cache_objs;
		uint64_t pages = st.shadow_pages;

		assert_int_equal(vmmu_vm_shrink(e.vm, 1, &freed), 0);
		assert_int_equal(freed, 1);
		assert_int_equal(vmmu_vm_shrink(e.vm, 1000, &freed), 0);
		assert_int_equal(freed, held - 1);
		assert_int_equal(vmmu_nested_stats(e.vm, &st), 0);
		assert_int_equal(st.split_desc_cache_objs + st.split_page_header_cache_objs +
					 st.split_shadow_page_cache_objs,
				 0);
		assert_int_equal(st.split_desc_cache_bytes, 0);
		/* The running L2's tables are not touched. */
		assert_int_equal(st.shadow_pages, pages);
	}

	/* An obsolete root kept in the previous-roots cache goes. */
	assert_int_equal(vmmu_hw_nested_leave(e.hw), 0);
	assert_int_equal(vmmu_zap_all(e.vm), 0);
	assert_int_equal(vmmu_nested_stats(e.vm, &st), 0);
	assert_int_equal(st.roots, 1);
	assert_int_equal(vmmu_vm_shrink(e.vm, 1000, &freed), 0);
	assert_int_equal(freed, 1);
	assert_int_equal(vmmu_nested_stats(e.vm, &st), 0);
	assert_int_equal(st.roots, 0);
	ne_fini(&e);
}

/* disable_eager_split covers EPT02: at creation, and at run time (which
 * also frees the caches). */
static void test_disabled(void **state)
{
	struct vmmu_vm_config cfg = mode_cfg(M_WRPROT);
	struct vmmu_nested_stats st;
	struct nenv e;

	(void)state;
	cfg.disable_eager_split = true;
	if (!setup(&e, cfg, 2))
		skip_no_thp(&e);
	assert_int_equal(set_logging(&e, true), 0);
	assert_int_equal(vmmu_nested_stats(e.vm, &st), 0);
	assert_int_equal(st.split_huge_pages, 0);
	assert_int_equal(st.split_topups, 0);
	assert_int_equal(st.ept02_pages_2m, 0); /* zapped: faults split them */
	assert_int_equal(vmmu_hw_nested_leave(e.hw), 0);
	ne_fini(&e);

	if (!setup(&e, mode_cfg(M_WRPROT), 2))
		skip_no_thp(&e);
	assert_int_equal(vmmu_vm_set_eager_split(e.vm, true), 0);
	assert_int_equal(set_logging(&e, true), 0);
	assert_int_equal(set_logging(&e, false), 0);
	assert_int_equal(vmmu_nested_stats(e.vm, &st), 0);
	assert_int_equal(st.split_huge_pages, 2);
	assert_true(st.split_desc_cache_objs > 0);
	assert_int_equal(vmmu_vm_set_eager_split(e.vm, false), 0);
	assert_int_equal(vmmu_nested_stats(e.vm, &st), 0);
	assert_int_equal(st.split_desc_cache_objs + st.split_page_header_cache_objs +
				 st.split_shadow_page_cache_objs,
			 0);
	assert_int_equal(vmmu_zap_all(e.vm), 0);
	assert_int_equal(vmmu_hw_nested_leave(e.hw), 0);
	/* Logging again: no split, huge leaves zapped. */
	assert_int_equal(vmmu_hw_nested_enter(e.hw, g_eptp), 0);
	for (uint64_t p = 0; p < 1024; p += 512)
		assert_int_equal(vmmu_hw_write(e.hw, p * 4096, &p, 8), 0);
	assert_int_equal(vmmu_hw_guest_exit(e.hw), 0);
	assert_int_equal(set_logging(&e, true), 0);
	assert_int_equal(vmmu_nested_stats(e.vm, &st), 0);
	assert_int_equal(st.split_huge_pages, 2);
	assert_int_equal(st.ept02_pages_2m, 0);
	assert_int_equal(vmmu_hw_nested_leave(e.hw), 0);
	ne_fini(&e);
}

/*
 * Eager splitting off, initially-all-set: a clear of a 64-page word that
 * does not start at the huge leaf's first page must still protect it (the
 * huge leaf overlapping the word goes).  Fails if the huge leaf is skipped
 * because its first gfn is below the word.
 */
static void test_initset_partial_clear(void **state)
{
	struct vmmu_vm_config cfg = mode_cfg(M_INITSET);
	struct vmmu_nested_stats st;
	uint64_t bitmap[1024 / 64], v = 42;
	struct nenv e;

	(void)state;
	cfg.disable_eager_split = true;
	if (!setup(&e, cfg, 2))
		skip_no_thp(&e);
	assert_int_equal(set_logging(&e, true), 0);
	/* Clear pages [64, 128) only: page 70 is clean now. */
	memset(bitmap, 0xff, sizeof(bitmap));
	assert_int_equal(vmmu_clear_dirty_log(e.vm, 1, 64, 64, bitmap), 0);
	assert_int_equal(vmmu_nested_stats(e.vm, &st), 0);
	assert_int_equal(st.ept02_pages_2m, 1); /* the other one is untouched */
	assert_int_equal(vmmu_hw_write(e.hw, 70 * 4096, &v, 8), 0);
	assert_int_equal(vmmu_hw_guest_exit(e.hw), 0);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 1, bitmap), 0);
	assert_true((bitmap[1] >> 6) & 1);
	assert_int_equal(vmmu_hw_nested_leave(e.hw), 0);
	ne_fini(&e);
}

/*
 * One run with allocation @n of the enable call failed (@pool: the nested
 * pool's, else malloc/calloc).  Returns false once @n is past the last.
 */
static bool split_failing(bool pool, int64_t n)
{
	const uint64_t pages = 1024;
	struct vmmu_nested_stats st;
	uint8_t seen[1024];
	uint32_t next = 0;
	struct nenv e;
	bool failed;
	uint64_t pool_failures;
	int r;

	if (!setup(&e, mode_cfg(M_WRPROT), 2)) {
		assert_int_equal(vmmu_hw_nested_leave(e.hw), 0);
		ne_fini(&e);
		return false;
	}
	pool_failures = e.vm->nested->pool.failures;
	if (pool) {
		vmmu_pool_fail_after(&e.vm->nested->pool, n);
	} else {
		injected = 0;
		fail_countdown = n;
		armed = true;
	}
	r = set_logging(&e, true);
	armed = false;
	vmmu_pool_fail_after(&e.vm->nested->pool, -1);
	failed = pool ? e.vm->nested->pool.failures != pool_failures : injected != 0;

	if (!r) {
		/* Huge or not, no EPT02 leaf of the slot is writable. */
		for (uint64_t p = 0; p < pages; p++) {
			int level;
			uint64_t spte = ept02_leaf(&e, p * 4096, &level);

			if (level && (spte & EPT_WRITABLE))
				fail_msg("n %lld: page %llu writable at level %d", (long long)n,
					 (unsigned long long)p, level);
		}
		assert_int_equal(vmmu_nested_stats(e.vm, &st), 0);
		if (failed && st.split_huge_pages < 2)
			assert_true(st.split_failures > 0 || st.ept02_pages_2m > 0);
		/* Every page written now is reported, and holds its value. */
		for (uint64_t p = 0; p < pages; p++) {
			uint64_t v = p ^ 0x5a5a;

			assert_int_equal(vmmu_hw_write(e.hw, p * 4096 + 16, &v, 8), 0);
		}
		assert_int_equal(vmmu_hw_guest_exit(e.hw), 0);
		harvest(&e, M_WRPROT, &next, seen, pages);
		for (uint64_t p = 0; p < pages; p++) {
			uint64_t v;

			if (!seen[p])
				fail_msg("n %lld pool %d: page %llu not reported", (long long)n,
					 pool, (unsigned long long)p);
			memcpy(&v, e.slots[1].hva + p * 4096 + 16, 8);
			assert_int_equal(v, p ^ 0x5a5a);
		}
	} else {
		assert_int_equal(r, -ENOMEM);
	}
	assert_int_equal(vmmu_hw_nested_leave(e.hw), 0);
	/* Tables zapped: the pool holds the cached table pages only. */
	assert_int_equal(vmmu_zap_all(e.vm), 0);
	vmmu_rcu_barrier();
	assert_int_equal(vmmu_nested_stats(e.vm, &st), 0);
	assert_int_equal(vmmu_pool_in_use(&e.vm->nested->pool) - st.shadow_pages,
			 st.split_shadow_page_cache_objs);
	ne_fini(&e); /* ASan: nothing of the caches leaks */
	return failed;
}

static void test_split_nomem(void **state)
{
	unsigned runs = 0;

	(void)state;
	for (int64_t n = 0; split_failing(true, n); n++)
		runs++;
	for (int64_t n = 0; split_failing(false, n); n++)
		runs++;
	print_message("%u allocation sites failed in turn\n", runs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split_modes), cmocka_unit_test(test_topups),
		cmocka_unit_test(test_disabled),    cmocka_unit_test(test_initset_partial_clear),
		cmocka_unit_test(test_split_nomem),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
