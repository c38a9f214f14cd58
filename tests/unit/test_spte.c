// SPDX-License-Identifier: MIT
/*
 * test_spte.c - the EPT entry values of src/spte.h.
 *
 * spte.h is pure value logic, so these tests are literal: bit positions
 * typed in by hand from the EPT format, every combination of the inputs of
 * make_leaf_spte() checked against the writable-state rules (W implies
 * MMU-writable implies host-writable), huge-page split and recovery as
 * inverses, and the TLB-flush decision as a truth table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "spte.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Every bit make_leaf_spte() and make_nonleaf_spte() may set. */
#define KNOWN_BITS                                                                      \
	(EPT_RWX_MASK | EPT_MT_MASK | EPT_IPAT | EPT_LARGE | EPT_ACCESSED | EPT_DIRTY | \
	 SPTE_MMU_PRESENT | SPTE_ADDR_MASK | SPTE_AD_MASK | SPTE_HOST_WRITABLE |        \
	 SPTE_MMU_WRITABLE)

static uint64_t level_size(int level)
{
	return 1ull << (12 + 9 * (level - 1));
}

/* The masks, as numbers typed from the EPT format (SDM vol. 3, 29.3.2). */
static void test_bit_positions(void **state)
{
	(void)state;
	assert_int_equal(EPT_READABLE, 0x1);
	assert_int_equal(EPT_WRITABLE, 0x2);
	assert_int_equal(EPT_EXECUTABLE, 0x4);
	assert_int_equal(EPT_MT_MASK, 0x38);
	assert_int_equal(EPT_MT_WB << EPT_MT_SHIFT, 0x30);
	assert_int_equal(EPT_IPAT, 0x40);
	assert_int_equal(EPT_LARGE, 0x80);
	assert_int_equal(EPT_ACCESSED, 0x100);
	assert_int_equal(EPT_DIRTY, 0x200);
	assert_int_equal(SPTE_MMU_PRESENT, 0x800);
	assert_int_equal(SPTE_ADDR_MASK, 0x000ffffffffff000ull);
	assert_int_equal(SPTE_AD_MASK, 0x0030000000000000ull);
	assert_int_equal(SPTE_AD_DISABLED, 0x0010000000000000ull);
	assert_int_equal(SPTE_ACC_TRACK_SAVED_MASK, 0x01c0000000000000ull);
	assert_int_equal(SPTE_HOST_WRITABLE, 0x0200000000000000ull);
	assert_int_equal(SPTE_MMU_WRITABLE, 0x0400000000000000ull);
	assert_int_equal(EPT_SUPPRESS_VE, 0x8000000000000000ull);
}

/* Whole leaf values, computed by hand bit by bit. */
static void test_leaf_literals(void **state)
{
	(void)state;
	/* 4K, RWX, host-writable, A/D on, not prefetch, dirty:
	 * HW|MW = 0x06.., present 0x800, D 0x200, A 0x100, IPAT 0x40, WB 0x30, RWX 0x7 */
	assert_int_equal(make_leaf_spte(0x123456789000ull, PG_LEVEL_4K, ACC_ALL, true, true, false,
					true),
			 0x0600123456789b77ull);
	/* Same at 2M: the large bit 0x80 on top. */
	assert_int_equal(make_leaf_spte(0x123456600000ull, PG_LEVEL_2M, ACC_ALL, true, true, false,
					true),
			 0x0600123456600bf7ull);
	/* 1G, read only, host read-only, A/D disabled (type 1 in bits 53:52),
	 * prefetched: no A, no D, no W. */
	assert_int_equal(make_leaf_spte(0x000fffffc0000000ull, PG_LEVEL_1G, ACC_READ, false, false,
					true, true),
			 0x001fffffc00008f1ull);
	/* 4K, exec+write, host-writable, A/D on, prefetch, not dirty: X W, HW MW,
	 * no R, no A, no D. */
	assert_int_equal(make_leaf_spte(0x1000ull, PG_LEVEL_4K, ACC_EXEC | ACC_WRITE, true, true,
					true, false),
			 0x0600000000001876ull);
	/* Write asked, host read-only: neither W nor MW nor HW. */
	assert_int_equal(make_leaf_spte(0x2000ull, PG_LEVEL_4K, ACC_ALL, false, true, false, true),
			 0x0000000000002975ull);
}

/*
 * Every combination of level, rights, host-writable, A/D, prefetch and
 * dirty, each checked field by field against the contract.
 */
static void test_leaf_all_combinations(void **state)
{
	static const uint64_t addrs[] = { 0x000fffffc0000000ull, 0x40000000ull,
					  0x0000000080000000ull, 0x000a5a5a40000000ull };
	unsigned n = 0;

	(void)state;
	for (unsigned a = 0; a < ARRAY_LEN(addrs); a++)
		for (int level = PG_LEVEL_4K; level <= SPTE_MAX_HUGEPAGE_LEVEL; level++)
			for (unsigned acc = 0; acc <= ACC_ALL; acc++)
				for (unsigned bits = 0; bits < 16; bits++) {
					bool hw = bits & 1, ad = bits & 2, prefetch = bits & 4,
					     dirty = bits & 8;
					uint64_t addr = addrs[a];
					uint64_t s = make_leaf_spte(addr, level, acc, hw, ad,
								    prefetch, dirty);
					bool w = is_writable_pte(s);

					n++;
					assert_true(is_shadow_present_pte(s));
					assert_true(is_last_spte(s, level));
					assert_true(is_present_leaf(s, level));
					assert_false(is_frozen_spte(s));
					assert_int_not_equal(s, FROZEN_SPTE);
					assert_int_equal(s & ~KNOWN_BITS, 0);
					assert_int_equal(spte_addr(s), addr);
					assert_int_equal(s & EPT_MT_MASK,
							 EPT_MT_WB << EPT_MT_SHIFT);
					assert_true(s & EPT_IPAT);
					assert_int_equal(is_large_pte(s), level > PG_LEVEL_4K);
					assert_int_equal(!!(s & EPT_READABLE), !!(acc & ACC_READ));
					assert_int_equal(!!(s & EPT_EXECUTABLE),
							 !!(acc & ACC_EXEC));
					assert_int_equal(w, hw && (acc & ACC_WRITE));
					assert_int_equal(is_host_writable_spte(s), hw);
					/* W => MW => HW */
					if (w)
						assert_true(is_mmu_writable_spte(s));
					if (is_mmu_writable_spte(s))
						assert_true(is_host_writable_spte(s));
					/* A fresh leaf with write rights is MMU-writable too. */
					assert_int_equal(is_mmu_writable_spte(s),
							 hw && (acc & ACC_WRITE));
					assert_int_equal(spte_ad_enabled(s), ad);
					assert_int_equal(s & SPTE_AD_MASK,
							 ad ? SPTE_AD_ENABLED : SPTE_AD_DISABLED);
					assert_int_equal(is_accessed_spte(s), ad && !prefetch);
					assert_int_equal(is_dirty_spte(s), dirty && w && ad);
					assert_int_equal(s & SPTE_ACC_TRACK_SAVED_MASK, 0);
					assert_int_equal(s & EPT_SUPPRESS_VE, 0);
				}
	assert_int_equal(n, 4 * 3 * 8 * 16);
}

static void test_frozen(void **state)
{
	(void)state;
	assert_true(is_frozen_spte(FROZEN_SPTE));
	assert_false(is_frozen_spte(SPTE_NONPRESENT));
	assert_int_not_equal(FROZEN_SPTE, SPTE_NONPRESENT);
	assert_false(is_shadow_present_pte(FROZEN_SPTE));
	assert_int_equal(FROZEN_SPTE & (EPT_RWX_MASK | SPTE_MMU_PRESENT), 0);
	for (int level = PG_LEVEL_4K; level <= SPTE_MAX_LEVEL; level++)
		assert_false(is_present_leaf(FROZEN_SPTE, level));
	assert_false(spte_permits(FROZEN_SPTE, 0));
	assert_false(spte_permits(FROZEN_SPTE, EPT_READABLE));
	/* Freezing a leaf zaps it; thawing from frozen changes nothing to flush. */
	uint64_t leaf = make_leaf_spte(0x5000, PG_LEVEL_4K, ACC_ALL, true, true, false, false);
	assert_true(leaf_spte_change_needs_tlb_flush(leaf, FROZEN_SPTE));
	assert_false(leaf_spte_change_needs_tlb_flush(FROZEN_SPTE, leaf));
	/* A zero-address leaf is still not the frozen value. */
	for (unsigned acc = 0; acc <= ACC_ALL; acc++)
		for (int level = PG_LEVEL_4K; level <= SPTE_MAX_HUGEPAGE_LEVEL; level++)
			for (unsigned bits = 0; bits < 16; bits++)
				assert_false(is_frozen_spte(make_leaf_spte(
					0, level, acc, bits & 1, bits & 2, bits & 4, bits & 8)));
}

static void test_nonleaf(void **state)
{
	static uint64_t table[SPTE_ENT_PER_PAGE] __attribute__((aligned(4096)));

	(void)state;
	for (int ad = 0; ad < 2; ad++) {
		uint64_t s = make_nonleaf_spte(table, ad);

		assert_true(is_shadow_present_pte(s));
		assert_int_equal(s & EPT_RWX_MASK, EPT_RWX_MASK);
		assert_false(is_large_pte(s));
		assert_ptr_equal(spte_to_child_pt(s), table);
		assert_int_equal(spte_ad_enabled(s), ad);
		assert_int_equal(s & (EPT_ACCESSED | EPT_DIRTY | SPTE_HOST_WRITABLE |
				      SPTE_MMU_WRITABLE | EPT_MT_MASK | EPT_IPAT),
				 0);
		for (int level = PG_LEVEL_2M; level <= SPTE_MAX_LEVEL; level++) {
			assert_false(is_last_spte(s, level));
			assert_false(is_present_leaf(s, level));
		}
		assert_false(is_frozen_spte(s));
	}
}

/* Splitting a huge leaf: child i maps addr + i * child size, same rights. */
static void test_make_small_spte(void **state)
{
	(void)state;
	for (int level = PG_LEVEL_2M; level <= PG_LEVEL_1G; level++) {
		uint64_t size = level_size(level), child_size = level_size(level - 1);
		uint64_t base = 0x000fffff80000000ull & ~(size - 1);

		for (unsigned acc = 0; acc <= ACC_ALL; acc++)
			for (unsigned bits = 0; bits < 16; bits++) {
				uint64_t huge = make_leaf_spte(base, level, acc, bits & 1, bits & 2,
							       bits & 4, bits & 8);
				uint64_t flags = huge & ~SPTE_ADDR_MASK;

				if (level - 1 == PG_LEVEL_4K)
					flags &= ~EPT_LARGE;
				for (unsigned i = 0; i < SPTE_ENT_PER_PAGE; i++) {
					uint64_t c = make_small_spte(huge, level, i);

					assert_int_equal(spte_addr(c), base + i * child_size);
					assert_int_equal(c & ~SPTE_ADDR_MASK, flags);
					assert_true(is_present_leaf(c, level - 1));
					assert_int_equal(is_large_pte(c), level - 1 > PG_LEVEL_4K);
					/* recovery is the inverse of the split */
					assert_int_equal(make_huge_spte(c, level), huge);
				}
			}
	}
}

/* Recovering a huge page from any small leaf inside it. */
static void test_make_huge_spte(void **state)
{
	(void)state;
	for (int level = PG_LEVEL_2M; level <= PG_LEVEL_1G; level++) {
		uint64_t size = level_size(level);
		uint64_t base = 0x0000123440000000ull & ~(size - 1);
		static const uint64_t offs[] = { 0, 0x1000, 0x3000, 0x1ff000, 0x200000, 0x3ffff000 };

		for (unsigned o = 0; o < ARRAY_LEN(offs); o++) {
			uint64_t off = offs[o] & (size - 1) & ~0xfffull;
			int small_level = level - 1;
			uint64_t small, huge;

			/* the small leaf's own address must be aligned to its size */
			off &= ~(level_size(small_level) - 1);
			small = make_leaf_spte(base + off, small_level, ACC_READ | ACC_WRITE, true,
					       true, false, true);
			huge = make_huge_spte(small, level);
			assert_int_equal(huge, make_leaf_spte(base, level, ACC_READ | ACC_WRITE,
							      true, true, false, true));
			assert_true(is_large_pte(huge));
			assert_int_equal(spte_addr(huge), base);
		}
	}
}

static void test_tlb_flush_truth_table(void **state)
{
	const uint64_t A = 0x7000, B = 0x9000;
	/* (HW, MW, W) states of the same mapping */
	uint64_t w111 = make_leaf_spte(A, PG_LEVEL_4K, ACC_ALL, true, true, false, true);
	uint64_t w110 = w111 & ~(EPT_WRITABLE | EPT_DIRTY);
	uint64_t w100 = w110 & ~SPTE_MMU_WRITABLE;
	uint64_t w000 = make_leaf_spte(A, PG_LEVEL_4K, ACC_ALL, false, true, false, false);
	uint64_t other = make_leaf_spte(B, PG_LEVEL_4K, ACC_ALL, true, true, false, true);
	uint64_t huge = make_leaf_spte(0x200000, PG_LEVEL_2M, ACC_ALL, true, true, false, true);
	uint64_t nonpresent_junk = w111 & ~SPTE_MMU_PRESENT;
	static const struct {
		int old, new_;
		bool flush;
	} cases[] = {
		/* indices into v[] below */
		{ 0, 0, false }, /* non-present -> non-present */
		{ 0, 1, false }, /* install */
		{ 6, 1, false }, /* frozen -> present */
		{ 7, 1, false }, /* non-present with bits -> present */
		{ 1, 0, true }, /* zap */
		{ 1, 6, true }, /* freeze */
		{ 1, 7, true }, /* MMU-present cleared */
		{ 1, 1, false }, /* same */
		{ 1, 2, false }, /* clear W, keep MW: dirty logging */
		{ 1, 3, true }, /* clear W and MW */
		{ 2, 3, true }, /* clear MW */
		{ 2, 1, false }, /* restore W */
		{ 3, 1, false }, /* make writable */
		{ 4, 1, false }, /* host page became writable */
		{ 1, 4, true }, /* host page became read-only */
		{ 3, 4, false }, /* (1,0,0) -> (0,0,0): nothing to revoke */
		{ 1, 5, true }, /* different target */
		{ 3, 8, true }, /* different target, read-only */
		{ 1, 9, false }, /* A and D cleared (aging) */
		{ 10, 11, true }, /* huge leaf, target moved */
	};
	uint64_t v[12];

	(void)state;
	v[0] = SPTE_NONPRESENT;
	v[1] = w111;
	v[2] = w110;
	v[3] = w100;
	v[4] = w000;
	v[5] = other;
	v[6] = FROZEN_SPTE;
	v[7] = nonpresent_junk;
	v[8] = other & ~(EPT_WRITABLE | SPTE_MMU_WRITABLE | EPT_DIRTY);
	v[9] = w111 & ~(EPT_ACCESSED | EPT_DIRTY);
	v[10] = huge;
	v[11] = make_leaf_spte(0x400000, PG_LEVEL_2M, ACC_ALL, true, true, false, true);
	assert_true(is_mmu_writable_spte(w110) && !is_writable_pte(w110));
	assert_true(is_host_writable_spte(w100) && !is_mmu_writable_spte(w100));
	for (unsigned i = 0; i < ARRAY_LEN(cases); i++) {
		bool got = leaf_spte_change_needs_tlb_flush(v[cases[i].old], v[cases[i].new_]);

		if (got != cases[i].flush)
			fail_msg("case %u: %#llx -> %#llx: flush %d, expected %d", i,
				 (unsigned long long)v[cases[i].old],
				 (unsigned long long)v[cases[i].new_], got, cases[i].flush);
	}
}

static void test_spte_permits(void **state)
{
	(void)state;
	for (unsigned acc = 0; acc <= ACC_ALL; acc++)
		for (int hw = 0; hw < 2; hw++) {
			uint64_t s =
				make_leaf_spte(0x3000, PG_LEVEL_4K, acc, hw, true, false, false);

			for (uint64_t q = 0; q <= EPT_RWX_MASK; q++) {
				bool want = true;

				if ((q & EPT_READABLE) && !(acc & ACC_READ))
					want = false;
				if ((q & EPT_WRITABLE) && !(hw && (acc & ACC_WRITE)))
					want = false;
				if ((q & EPT_EXECUTABLE) && !(acc & ACC_EXEC))
					want = false;
				assert_int_equal(spte_permits(s, q), want);
				/* nothing is permitted through a non-present entry */
				assert_false(spte_permits(s & ~SPTE_MMU_PRESENT, q));
				assert_false(spte_permits(SPTE_NONPRESENT, q));
			}
		}
}

static void test_index_and_sizes(void **state)
{
	static const uint64_t pages[] = { 0, 1, 512, 262144, 134217728, 68719476736ull };

	(void)state;
	for (int level = PG_LEVEL_4K; level <= SPTE_MAX_LEVEL; level++) {
		assert_int_equal(spte_pages_per(level), pages[level]);
		assert_int_equal(spte_level_shift(level), 12 + 9 * (level - 1));
		assert_int_equal(1ull << spte_level_shift(level), level_size(level));
	}
	/* A gfn made of five 9-bit indices gives each one back. */
	static const unsigned idx[][5] = {
		{ 0, 0, 0, 0, 0 },	 { 511, 511, 511, 511, 511 }, { 1, 2, 3, 4, 5 },
		{ 511, 0, 511, 0, 511 }, { 0, 511, 0, 511, 0 },	      { 256, 255, 128, 7, 300 },
	};
	for (unsigned t = 0; t < ARRAY_LEN(idx); t++) {
		uint64_t gfn = 0;

		for (int level = PG_LEVEL_4K; level <= SPTE_MAX_LEVEL; level++)
			gfn += (uint64_t)idx[t][level - 1] * spte_pages_per(level);
		for (int level = PG_LEVEL_4K; level <= SPTE_MAX_LEVEL; level++)
			assert_int_equal(spte_index(gfn, level), idx[t][level - 1]);
		/* bits above the 5-level range do not leak into the top index */
		for (int level = PG_LEVEL_4K; level <= SPTE_MAX_LEVEL; level++)
			assert_int_equal(spte_index(gfn | (1ull << 45) | (1ull << 50), level),
					 idx[t][level - 1]);
	}
}

/*
 * The access-tracked encoding, over every leaf make_leaf_spte() can build
 * without A/D bits: R and X parked in bits 54 and 56, no rights left,
 * still present, same page and software bits; restoring gives R and X
 * back without W and empties the save area; aging is idempotent.  With
 * A/D bits, aging clears A and nothing else.
 */
static void test_access_track_encoding(void **state)
{
	(void)state;
	/* A literal, to pin the layout. */
	uint64_t s = make_leaf_spte(0x1234000, PG_LEVEL_4K, ACC_ALL, true, false, false, false);
	uint64_t t = mark_spte_for_access_track(s);

	assert_int_equal(t, (s & ~EPT_RWX_MASK) | (1ull << 54) | (1ull << 56));
	for (unsigned acc = 0; acc <= ACC_ALL; acc++) {
		for (int level = PG_LEVEL_4K; level <= PG_LEVEL_1G; level++) {
			for (int hw = 0; hw < 2; hw++) {
				uint64_t addr = 0x40000000ull;
				uint64_t leaf = make_leaf_spte(addr, level, acc | ACC_READ, hw, false,
							      false, false);
				uint64_t tracked = mark_spte_for_access_track(leaf);
				uint64_t back = restore_acc_track_spte(tracked);

				assert_true(spte_is_young(leaf));
				assert_false(spte_is_young(tracked));
				assert_true(is_access_track_spte(tracked));
				assert_false(is_access_track_spte(leaf));
				assert_true(is_shadow_present_pte(tracked));
				assert_true(is_last_spte(tracked, level));
				assert_int_equal(tracked & EPT_RWX_MASK, 0);
				assert_int_equal(spte_addr(tracked), spte_addr(leaf));
				assert_int_equal(tracked & (SPTE_MMU_WRITABLE | SPTE_HOST_WRITABLE),
						 leaf & (SPTE_MMU_WRITABLE | SPTE_HOST_WRITABLE));
				assert_int_equal(mark_spte_for_access_track(tracked), tracked);
				assert_int_equal(spte_age(leaf), tracked);
				assert_int_equal(spte_age(tracked), tracked);
				assert_int_equal(back, leaf & ~EPT_WRITABLE);
				assert_int_equal(back & SPTE_ACC_TRACK_SAVED_MASK, 0);
			}
		}
	}
	/* A/D enabled: only A goes; never access-tracked. */
	s = make_leaf_spte(0x5000, PG_LEVEL_4K, ACC_ALL, true, true, false, true);
	assert_true(spte_is_young(s));
	assert_int_equal(spte_age(s), s & ~EPT_ACCESSED);
	assert_false(spte_is_young(spte_age(s)));
	assert_true(spte_age(s) & EPT_DIRTY);
	assert_false(is_access_track_spte(s & ~EPT_RWX_MASK));
	/* Non-present and frozen entries are never young. */
	assert_false(spte_is_young(SPTE_NONPRESENT));
	assert_false(spte_is_young(FROZEN_SPTE));
	assert_false(is_access_track_spte(FROZEN_SPTE));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bit_positions),
		cmocka_unit_test(test_leaf_literals),
		cmocka_unit_test(test_leaf_all_combinations),
		cmocka_unit_test(test_frozen),
		cmocka_unit_test(test_nonleaf),
		cmocka_unit_test(test_make_small_spte),
		cmocka_unit_test(test_make_huge_spte),
		cmocka_unit_test(test_tlb_flush_truth_table),
		cmocka_unit_test(test_spte_permits),
		cmocka_unit_test(test_index_and_sizes),
		cmocka_unit_test(test_access_track_encoding),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
