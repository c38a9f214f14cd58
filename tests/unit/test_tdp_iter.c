// SPDX-License-Identifier: MIT
/*
 * test_tdp_iter.c - the pre-order page-table iterator of src/tdp_iter.c.
 *
 * Trees are built by hand in 4 KiB pages from aligned_alloc(), linked with
 * make_nonleaf_spte(), with leaves from make_leaf_spte().  Literal cases
 * type the expected (gfn, level) sequence in; the randomized case compares
 * with a plain recursive enumerator over random sparse trees (the seed is
 * printed, VMMU_SEED=<n> replays it).
 *
 * Yield: setting iter.yielded makes the next step re-walk from the root to
 * next_last_level_gfn.  The exact contract checked here: after a yield at
 * the entry E (gfn g, level L), the next visits are the entries that cover
 * g from the root down to L (ending with E itself, again), then the walk
 * carries on as if there had been no yield.  So nothing is skipped and
 * nothing is advanced past.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "tdp_iter.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---------------------------------------------------------------------------
 * Trees
 */
#define MAX_TABLES 256

struct tree {
	int root_level;
	uint64_t *root;
	int ntables;
	uint64_t *tables[MAX_TABLES];
};

static uint64_t *tree_new_table(struct tree *t)
{
	uint64_t *pt = aligned_alloc(4096, 4096);

	assert_non_null(pt);
	assert_true(t->ntables < MAX_TABLES);
	memset(pt, 0, 4096);
	t->tables[t->ntables++] = pt;
	return pt;
}

static void tree_init(struct tree *t, int root_level)
{
	memset(t, 0, sizeof(*t));
	t->root_level = root_level;
	t->root = tree_new_table(t);
}

static void tree_free(struct tree *t)
{
	for (int i = 0; i < t->ntables; i++)
		free(t->tables[i]);
	t->ntables = 0;
}

static uint64_t leaf_for(uint64_t gfn, int level)
{
	/* The host address is never dereferenced by the iterator. */
	return make_leaf_spte((gfn << 12) & SPTE_ADDR_MASK, level, ACC_ALL, true, true, false,
			      false);
}

/* The entry at @level covering @gfn, creating tables on the way down. */
static uint64_t *tree_entry(struct tree *t, uint64_t gfn, int level)
{
	uint64_t *pt = t->root;

	for (int l = t->root_level; l > level; l--) {
		uint64_t *sptep = &pt[spte_index(gfn, l)];

		if (!*sptep)
			*sptep = make_nonleaf_spte(tree_new_table(t), true);
		assert_true(is_shadow_present_pte(*sptep) && !is_last_spte(*sptep, l));
		pt = spte_to_child_pt(*sptep);
	}
	return &pt[spte_index(gfn, level)];
}

static void tree_map(struct tree *t, uint64_t gfn, int level)
{
	*tree_entry(t, gfn, level) = leaf_for(round_gfn_for_level(gfn, level), level);
}

/* ---------------------------------------------------------------------------
 * Visits
 */
struct visit {
	uint64_t gfn;
	int level;
	uint64_t *sptep;
};

struct visits {
	size_t n, cap;
	struct visit *v;
};

static void visits_add(struct visits *vs, uint64_t gfn, int level, uint64_t *sptep)
{
	if (vs->n == vs->cap) {
		vs->cap = vs->cap ? vs->cap * 2 : 1024;
		vs->v = realloc(vs->v, vs->cap * sizeof(*vs->v));
		assert_non_null(vs->v);
	}
	vs->v[vs->n++] = (struct visit){ gfn, level, sptep };
}

static void visits_free(struct visits *vs)
{
	free(vs->v);
	memset(vs, 0, sizeof(*vs));
}

/* The iterator, no yields; also checks old_spte is the entry's value. */
static void walk(struct tree *t, int min_level, uint64_t start, uint64_t end, struct visits *out)
{
	struct tdp_iter iter;

	for_each_tdp_pte_min_level(iter, t->root, t->root_level, min_level, start, end) {
		assert_true(iter.level >= min_level && iter.level <= t->root_level);
		assert_int_equal(iter.old_spte, *iter.sptep);
		assert_int_equal(iter.gfn, round_gfn_for_level(iter.gfn, iter.level));
		visits_add(out, iter.gfn, iter.level, iter.sptep);
		assert_true(out->n < 100000000);
	}
}

/*
 * Reference: every entry, in pre-order, whose range meets [start, end),
 * descending into present non-leaf entries above @min_level.
 */
static void ref_table(uint64_t *pt, int level, uint64_t base, int min_level, uint64_t start,
		      uint64_t end, struct visits *out)
{
	uint64_t size = spte_pages_per(level);

	for (unsigned i = 0; i < SPTE_ENT_PER_PAGE; i++) {
		uint64_t gfn = base + i * size;
		uint64_t spte = pt[i];

		if (gfn + size <= start)
			continue;
		if (gfn >= end)
			return;
		visits_add(out, gfn, level, &pt[i]);
		if (level > min_level && is_shadow_present_pte(spte) && !is_last_spte(spte, level))
			ref_table(spte_to_child_pt(spte), level - 1, gfn, min_level, start, end,
				  out);
	}
}

static void ref_walk(struct tree *t, int min_level, uint64_t start, uint64_t end,
		     struct visits *out)
{
	ref_table(t->root, t->root_level, 0, min_level, start, end, out);
}

static void print_visits(const char *what, const struct visits *vs, size_t around)
{
	size_t lo = around > 8 ? around - 8 : 0;

	fprintf(stderr, "%s (%zu visits):\n", what, vs->n);
	for (size_t i = lo; i < vs->n && i < around + 8; i++)
		fprintf(stderr, "  [%zu] gfn %#llx level %d\n", i, (unsigned long long)vs->v[i].gfn,
			vs->v[i].level);
}

static size_t first_difference(const struct visits *got, const struct visits *want)
{
	size_t i;

	for (i = 0; i < got->n && i < want->n; i++)
		if (got->v[i].gfn != want->v[i].gfn || got->v[i].level != want->v[i].level ||
		    got->v[i].sptep != want->v[i].sptep)
			break;
	return i;
}

static bool same_visits(const struct visits *got, const struct visits *want)
{
	return got->n == want->n && first_difference(got, want) == got->n;
}

static void assert_same_visits(const struct visits *got, const struct visits *want)
{
	size_t i = first_difference(got, want);

	if (i == got->n && i == want->n)
		return;
	print_visits("iterator", got, i);
	print_visits("expected", want, i);
	fail_msg("visit sequences differ at index %zu", i);
}

struct gl {
	uint64_t gfn;
	int level;
};

/* The first @n visits are @want; all of them if @whole. */
static void assert_visits_prefix(const struct visits *got, const struct gl *want, size_t n,
				 bool whole)
{
	size_t i;

	for (i = 0; i < got->n && i < n; i++)
		if (got->v[i].gfn != want[i].gfn || got->v[i].level != want[i].level)
			break;
	if (i == n && (i == got->n || !whole))
		return;
	print_visits("iterator", got, i);
	for (size_t j = 0; j < n; j++)
		fprintf(stderr, "  want[%zu] gfn %#llx level %d\n", j,
			(unsigned long long)want[j].gfn, want[j].level);
	fail_msg("visit sequences differ at index %zu", i);
}

static void assert_visits_are(const struct visits *got, const struct gl *want, size_t n)
{
	assert_visits_prefix(got, want, n, true);
}

static void check_range(struct tree *t, int min_level, uint64_t start, uint64_t end,
			const struct gl *want, size_t n)
{
	struct visits got = { 0 }, ref = { 0 };

	walk(t, min_level, start, end, &got);
	assert_visits_are(&got, want, n);
	/* the reference enumerator agrees with the literal too */
	ref_walk(t, min_level, start, end, &ref);
	assert_same_visits(&got, &ref);
	visits_free(&got);
	visits_free(&ref);
}

/* ---------------------------------------------------------------------------
 * Literal trees
 *
 * Tree A, 4 levels:
 *   gfn 0, 1, 511        4K leaves (one L1 table under L2[0])
 *   gfn 512              2M leaf (L2[1])
 *   gfn 0x3fe00 .. 0x3ffff  L1 table under L2[511], leaf at 0x3ffff
 *   gfn 0x40000          1G leaf (L3[1])
 *   gfn 0x8000000        L4[1] -> empty L3 table
 */
#define G1 0x40000ull /* gfns per 1G */
#define G512 0x8000000ull /* gfns per 512G */

static void build_tree_a(struct tree *t)
{
	tree_init(t, 4);
	tree_map(t, 0, 1);
	tree_map(t, 1, 1);
	tree_map(t, 511, 1);
	tree_map(t, 512, 2);
	tree_map(t, G1 - 1, 1);
	tree_map(t, G1, 3);
	(void)tree_entry(t, G512, 3); /* links an empty L3 table */
}

static void test_literal_ranges_4level(void **state)
{
	struct tree t;

	(void)state;
	build_tree_a(&t);
	{
		static const struct gl w[] = { { 0, 4 }, { 0, 3 }, { 0, 2 },
					       { 0, 1 }, { 1, 1 }, { 2, 1 } };
		check_range(&t, 1, 0, 3, w, ARRAY_LEN(w));
	}
	{ /* starts and ends mid-table, steps over a 2M leaf without descending */
		static const struct gl w[] = { { 0, 4 },   { 0, 3 },   { 0, 2 },
					       { 510, 1 }, { 511, 1 }, { 512, 2 } };
		check_range(&t, 1, 510, 515, w, ARRAY_LEN(w));
	}
	{ /* the 2M leaf covers the start: visited at its own gfn */
		static const struct gl w[] = { { 0, 4 }, { 0, 3 }, { 512, 2 }, { 1024, 2 } };
		check_range(&t, 1, 700, 1025, w, ARRAY_LEN(w));
	}
	{ /* crosses a 1G boundary: up two levels, onto a 1G leaf */
		static const struct gl w[] = { { 0, 4 },      { 0, 3 },	     { G1 - 512, 2 },
					       { G1 - 2, 1 }, { G1 - 1, 1 }, { G1, 3 } };
		check_range(&t, 1, G1 - 2, G1 + 1, w, ARRAY_LEN(w));
	}
	{ /* the 1G leaf is not descended into; next 1G entry is empty */
		static const struct gl w[] = { { 0, 4 }, { G1, 3 }, { 2 * G1, 3 } };
		check_range(&t, 1, G1 + 5, 2 * G1 + 1, w, ARRAY_LEN(w));
	}
	{ /* crosses a 512G boundary into an empty L3 table */
		static const struct gl w[] = {
			{ 0, 4 }, { G512 - G1, 3 }, { G512, 4 }, { G512, 3 }, { G512 + G1, 3 }
		};
		check_range(&t, 1, G512 - 1, G512 + G1 + 1, w, ARRAY_LEN(w));
	}
	{ /* min_level 2: 2M entries are visited, L1 tables are not entered */
		static const struct gl w[] = { { 0, 4 }, { 0, 3 }, { 0, 2 }, { 512, 2 } };
		check_range(&t, 2, 0, 1024, w, ARRAY_LEN(w));
	}
	{ /* min_level 3 */
		static const struct gl w[] = { { 0, 4 }, { 0, 3 }, { G1, 3 } };
		check_range(&t, 3, 0, 2 * G1, w, ARRAY_LEN(w));
	}
	{ /* min_level 4: only root entries */
		static const struct gl w[] = { { 0, 4 }, { G512, 4 }, { 2 * G512, 4 } };
		check_range(&t, 4, 0, 2 * G512 + 1, w, ARRAY_LEN(w));
	}
	{ /* the last root entry, then the walk ends although end is far away */
		static const struct gl w[] = { { 511 * G512, 4 } };
		check_range(&t, 1, 512 * G512 - 1, UINT64_MAX, w, ARRAY_LEN(w));
	}
	{ /* a range starting beyond what a 4-level root covers is empty */
		check_range(&t, 1, 512 * G512, UINT64_MAX, NULL, 0);
		check_range(&t, 1, 512 * G512 + 3, 1024 * G512, NULL, 0);
		check_range(&t, 1, 1ull << 50, UINT64_MAX, NULL, 0);
	}
	{ /* the whole tree at min_level 2: count and order against the reference */
		struct visits got = { 0 }, ref = { 0 };

		walk(&t, 2, 0, UINT64_MAX, &got);
		ref_walk(&t, 2, 0, UINT64_MAX, &ref);
		assert_same_visits(&got, &ref);
		/* 512 root + 2 L3 tables * 512 + 1 L2 table * 512 */
		assert_int_equal(got.n, 512 * 4);
		visits_free(&got);
		visits_free(&ref);
	}
	tree_free(&t);
}

static void test_literal_ranges_5level(void **state)
{
	const uint64_t G256T = 512 * G512; /* gfns per L5 entry */
	const uint64_t g = 3 * G256T + 7 * G512 + 5 * G1 + 9 * 512 + 11;
	struct tree t;

	(void)state;
	tree_init(&t, 5);
	tree_map(&t, g, 1);
	tree_map(&t, g - 11 + 512, 2); /* the next 2M entry is huge */
	tree_map(&t, 3 * G256T + 7 * G512 + 6 * G1, 3); /* the next 1G entry too */
	{
		static const struct gl w[] = { { 0, 5 } };
		check_range(&t, 1, 0, 1, w, ARRAY_LEN(w));
	}
	{
		const struct gl w[] = { { 3 * G256T, 5 },
					{ 3 * G256T + 7 * G512, 4 },
					{ 3 * G256T + 7 * G512 + 5 * G1, 3 },
					{ g - 11, 2 },
					{ g, 1 },
					{ g + 1, 1 } };
		check_range(&t, 1, g, g + 2, w, ARRAY_LEN(w));
	}
	{ /* to the end of the L1 table, over the 2M and 1G leaves */
		const uint64_t g1 = 3 * G256T + 7 * G512 + 5 * G1;
		struct visits got = { 0 };

		walk(&t, 1, g - 11 + 510, g1 + G1 + 1, &got);
		const struct gl w[] = { { 3 * G256T, 5 },    { 3 * G256T + 7 * G512, 4 },
					{ g1, 3 },	     { g - 11, 2 },
					{ g - 11 + 510, 1 }, { g - 11 + 511, 1 },
					{ g - 11 + 512, 2 }, { g - 11 + 1024, 2 } };
		assert_visits_prefix(&got, w, ARRAY_LEN(w), false);
		/* then the rest of the L2 table, then the 1G leaf */
		assert_int_equal(got.n, 4 + 2 + (511 - spte_index(g, 2)) + 1);
		assert_int_equal(got.v[got.n - 1].gfn, g1 + G1);
		assert_int_equal(got.v[got.n - 1].level, 3);
		visits_free(&got);
	}
	{ /* the last entry a 5-level root has, then nothing */
		const struct gl w[] = { { 511 * G256T, 5 } };
		check_range(&t, 1, 512 * G256T - 1, UINT64_MAX, w, ARRAY_LEN(w));
		check_range(&t, 1, 512 * G256T, UINT64_MAX, NULL, 0);
	}
	tree_free(&t);
}

/* Non-present entries, whatever else they hold, are never descended into. */
static void test_nonpresent_not_descended(void **state)
{
	struct tree t;
	uint64_t *decoy;

	(void)state;
	tree_init(&t, 4);
	decoy = tree_new_table(&t); /* all non-present: visible if entered */
	/* L3[0]: a table link with MMU-present cleared; L3[1]: frozen */
	t.root[0] = make_nonleaf_spte(tree_new_table(&t), true);
	uint64_t *l3 = spte_to_child_pt(t.root[0]);
	l3[0] = make_nonleaf_spte(decoy, true) & ~SPTE_MMU_PRESENT;
	l3[1] = FROZEN_SPTE;
	l3[2] = make_nonleaf_spte(decoy, true);
	{
		static const struct gl w[] = { { 0, 4 },      { 0, 3 },	     { G1, 3 },
					       { 2 * G1, 3 }, { 2 * G1, 2 }, { 2 * G1 + 512, 2 } };
		check_range(&t, 1, 0, 2 * G1 + 513, w, ARRAY_LEN(w));
	}
	tree_free(&t);
}

/* ---------------------------------------------------------------------------
 * Yield
 */

/* The entries covering @gfn from the root down to @level, top first. */
static size_t path_to(struct tree *t, uint64_t gfn, int level, struct visit *out)
{
	uint64_t *pt = t->root;
	size_t n = 0;

	for (int l = t->root_level; l >= level; l--) {
		uint64_t *sptep = &pt[spte_index(gfn, l)];

		out[n++] = (struct visit){ round_gfn_for_level(gfn, l), l, sptep };
		if (l > level) {
			assert_true(is_shadow_present_pte(*sptep) && !is_last_spte(*sptep, l));
			pt = spte_to_child_pt(*sptep);
		}
	}
	return n;
}

/*
 * Walk with yields where @should_yield says (visit number, visit), and
 * check the visits against @ref (the walk without yields) under the
 * contract above.  Returns the number of yields.
 */
typedef bool (*yield_fn)(void *ctx, size_t nr, const struct tdp_iter *iter);

static size_t walk_yielding_and_check(struct tree *t, int min_level, uint64_t start, uint64_t end,
				      const struct visits *ref, yield_fn should_yield, void *ctx)
{
	struct visit stack[64]; /* expected next visits, top = next */
	size_t top = 0, pos = 0, nr = 0, yields = 0;
	struct tdp_iter iter;

	for_each_tdp_pte_min_level(iter, t->root, t->root_level, min_level, start, end) {
		struct visit want = { 0 };

		assert_false(iter.yielded);
		if (top)
			want = stack[--top];
		else if (pos < ref->n)
			want = ref->v[pos++];
		else
			fail_msg("visit %zu (gfn %#llx level %d) after the end of the walk", nr,
				 (unsigned long long)iter.gfn, iter.level);
		if (iter.gfn != want.gfn || iter.level != want.level || iter.sptep != want.sptep)
			fail_msg("visit %zu: gfn %#llx level %d, expected gfn %#llx level %d "
				 "(%zu yields so far)",
				 nr, (unsigned long long)iter.gfn, iter.level,
				 (unsigned long long)want.gfn, want.level, yields);
		assert_int_equal(iter.old_spte, *iter.sptep);
		if (should_yield(ctx, nr, &iter)) {
			struct visit path[SPTE_MAX_LEVEL];
			size_t n = path_to(t, iter.gfn, iter.level, path);

			/* a restart resumes at the entry just visited, never after it */
			assert_int_equal(round_gfn_for_level(iter.next_last_level_gfn, iter.level),
					 iter.gfn);
			assert_true(top + n <= ARRAY_LEN(stack));
			while (n)
				stack[top++] = path[--n];
			iter.yielded = true;
			yields++;
		}
		nr++;
		assert_true(nr < 10 * ref->n + 1000);
	}
	if (top || pos != ref->n)
		fail_msg("walk ended early: %zu of %zu visits, %zu replays pending", pos, ref->n,
			 top);
	return yields;
}

struct yield_at {
	const size_t *at;
	size_t n;
};

static bool yield_at_listed(void *ctx, size_t nr, const struct tdp_iter *iter)
{
	struct yield_at *y = ctx;

	(void)iter;
	for (size_t i = 0; i < y->n; i++)
		if (y->at[i] == nr)
			return true;
	return false;
}

/* Literal yield cases on tree A: the exact sequences typed in. */
static void test_yield_literal(void **state)
{
	struct tree t;
	struct tdp_iter iter;
	struct visits got = { 0 };
	size_t nr = 0;

	(void)state;
	build_tree_a(&t);
	/* yield at (511, L1): back to the root, down to 511 again, then on */
	for_each_tdp_pte(iter, t.root, 4, 510, 515) {
		visits_add(&got, iter.gfn, iter.level, iter.sptep);
		if (nr++ == 4) {
			assert_int_equal(iter.gfn, 511);
			iter.yielded = true;
		}
	}
	{
		static const struct gl w[] = {
			{ 0, 4 }, { 0, 3 }, { 0, 2 }, { 510, 1 }, { 511, 1 },
			{ 0, 4 }, { 0, 3 }, { 0, 2 }, { 511, 1 }, { 512, 2 }
		};
		assert_visits_are(&got, w, ARRAY_LEN(w));
	}
	visits_free(&got);

	/* yield at the 2M leaf, and change it into a table meanwhile: the
	 * re-walk reads the tree afresh and descends into the new table */
	nr = 0;
	for_each_tdp_pte(iter, t.root, 4, 510, 515) {
		visits_add(&got, iter.gfn, iter.level, iter.sptep);
		if (nr++ == 5) {
			uint64_t *l1;

			assert_int_equal(iter.gfn, 512);
			assert_int_equal(iter.level, 2);
			l1 = tree_new_table(&t);
			*iter.sptep = make_nonleaf_spte(l1, true);
			iter.yielded = true;
		}
	}
	{
		static const struct gl w[] = { { 0, 4 },   { 0, 3 },   { 0, 2 },   { 510, 1 },
					       { 511, 1 }, { 512, 2 }, { 0, 4 },   { 0, 3 },
					       { 512, 2 }, { 512, 1 }, { 513, 1 }, { 514, 1 } };
		assert_visits_are(&got, w, ARRAY_LEN(w));
	}
	visits_free(&got);

	/* no yield, but the entry just visited becomes a table: the step down
	 * follows what is in the entry now, not the snapshot */
	nr = 0;
	*tree_entry(&t, 512, 2) = leaf_for(512, 2);
	for_each_tdp_pte(iter, t.root, 4, 510, 515) {
		visits_add(&got, iter.gfn, iter.level, iter.sptep);
		if (nr++ == 5) {
			assert_int_equal(iter.gfn, 512);
			assert_true(is_large_pte(iter.old_spte));
			*iter.sptep = make_nonleaf_spte(tree_new_table(&t), true);
		}
	}
	{
		static const struct gl w[] = { { 0, 4 },   { 0, 3 },   { 0, 2 },
					       { 510, 1 }, { 511, 1 }, { 512, 2 },
					       { 512, 1 }, { 513, 1 }, { 514, 1 } };
		assert_visits_are(&got, w, ARRAY_LEN(w));
	}
	visits_free(&got);

	/* yield twice in a row at the same place: still no progress lost */
	{
		struct visits ref = { 0 };
		static const size_t at[] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 };
		struct yield_at y = { at, ARRAY_LEN(at) };

		walk(&t, 1, G1 - 3, G1 + 2, &ref);
		assert_int_equal(walk_yielding_and_check(&t, 1, G1 - 3, G1 + 2, &ref,
							 yield_at_listed, &y),
				 ARRAY_LEN(at));
		visits_free(&ref);
	}
	tree_free(&t);
}

/* Yield at every visit of a range, one at a time. */
static void test_yield_each_position(void **state)
{
	struct tree t;
	static const struct {
		uint64_t start, end;
		int min_level;
	} ranges[] = {
		{ 0, 3, 1 },
		{ 509, 1030, 1 },
		{ G1 - 600, G1 + 2, 1 },
		{ 0, 2 * G512, 3 },
		{ G512 - 1, G512 + 2 * G1, 1 },
		{ 0, 4 * G1, 2 },
	};

	(void)state;
	build_tree_a(&t);
	for (unsigned r = 0; r < ARRAY_LEN(ranges); r++) {
		struct visits ref = { 0 };

		walk(&t, ranges[r].min_level, ranges[r].start, ranges[r].end, &ref);
		assert_true(ref.n > 0);
		for (size_t k = 0; k < ref.n; k++) {
			struct yield_at y = { &k, 1 };

			assert_int_equal(walk_yielding_and_check(&t, ranges[r].min_level,
								 ranges[r].start, ranges[r].end,
								 &ref, yield_at_listed, &y),
					 1);
		}
		visits_free(&ref);
	}
	tree_free(&t);
}

/* ---------------------------------------------------------------------------
 * Randomized
 */
static uint64_t rng_state;

static uint64_t rng(void)
{
	/* splitmix64 */
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static unsigned rng_below(unsigned n)
{
	return (unsigned)(rng() % n);
}

/* Indices that hit the edges of a table more often than chance would. */
static unsigned biased_index(void)
{
	static const unsigned edges[] = { 0, 1, 2, 255, 256, 509, 510, 511 };

	return rng_below(2) ? edges[rng_below(ARRAY_LEN(edges))] : rng_below(512);
}

static void random_table(struct tree *t, uint64_t *pt, int level, uint64_t *decoy)
{
	unsigned n = level == 1 ? rng_below(8) : 1 + rng_below(3);

	for (unsigned k = 0; k < n; k++) {
		unsigned i = biased_index();
		unsigned r = rng_below(100);

		if (pt[i])
			continue;
		if (level == 1) {
			pt[i] = r < 90 ? leaf_for(i, 1) : FROZEN_SPTE;
		} else if (r < 25 && level <= SPTE_MAX_HUGEPAGE_LEVEL) {
			pt[i] = leaf_for(0, level);
		} else if (r < 32) {
			/* non-present, but with a table address in it */
			pt[i] = r & 1 ? FROZEN_SPTE :
					make_nonleaf_spte(decoy, true) & ~SPTE_MMU_PRESENT;
		} else if (t->ntables < MAX_TABLES - 8) {
			uint64_t *child = tree_new_table(t);

			pt[i] = make_nonleaf_spte(child, rng_below(2));
			random_table(t, child, level - 1, decoy);
		}
	}
}

/* A gfn made of biased indices, so it lands near the populated entries. */
static uint64_t random_gfn(int root_level)
{
	uint64_t gfn = 0;

	for (int l = 1; l <= root_level; l++)
		gfn += (uint64_t)biased_index() * spte_pages_per(l);
	return gfn;
}

static uint64_t seed_from_env(void)
{
	const char *s = getenv("VMMU_SEED");

	if (s && *s)
		return strtoull(s, NULL, 0);
	return (uint64_t)time(NULL) ^ ((uint64_t)clock() << 20);
}

struct yield_random {
	unsigned percent;
};

static bool yield_randomly(void *ctx, size_t nr, const struct tdp_iter *iter)
{
	struct yield_random *y = ctx;

	(void)nr;
	(void)iter;
	return rng_below(100) < y->percent;
}

static void test_random_trees(void **state)
{
	uint64_t seed = seed_from_env();
	size_t total_visits = 0, total_yields = 0;

	(void)state;
	printf("test_tdp_iter: seed %llu (replay with VMMU_SEED=%llu)\n", (unsigned long long)seed,
	       (unsigned long long)seed);
	fflush(stdout);
	rng_state = seed;
	for (int round = 0; round < 60; round++) {
		struct tree t;
		uint64_t *decoy;

		tree_init(&t, round & 1 ? 5 : 4);
		decoy = tree_new_table(&t); /* all non-present: visible if entered */
		random_table(&t, t.root, t.root_level, decoy);
		for (int q = 0; q < 20; q++) {
			static const uint64_t lens[] = { 1, 2, 3, 511, 512, 513, 1000, 262144 };
			int min_level = 1 + (int)rng_below(q & 1 ? 3 : 1);
			uint64_t start = random_gfn(t.root_level), end;
			struct visits got = { 0 }, ref = { 0 };
			struct yield_random y = { 1 + rng_below(30) };

			switch (rng_below(4)) {
			case 0:
				end = start + lens[rng_below(ARRAY_LEN(lens))];
				break;
			case 1:
				end = random_gfn(t.root_level);
				break;
			case 2:
				end = start + rng_below(1u << 20);
				break;
			default:
				end = UINT64_MAX;
				break;
			}
			/* a non-empty range (what an empty one visits is not pinned) */
			if (end <= start)
				end = start + 1;
			/* keep the all-range walks of 5-level trees small */
			if (end == UINT64_MAX && min_level == 1 && t.root_level == 5)
				min_level = 2;
			walk(&t, min_level, start, end, &got);
			ref_walk(&t, min_level, start, end, &ref);
			if (!same_visits(&got, &ref))
				fprintf(stderr,
					"seed %llu round %d query %d: [%#llx, %#llx) min %d\n",
					(unsigned long long)seed, round, q,
					(unsigned long long)start, (unsigned long long)end,
					min_level);
			assert_same_visits(&got, &ref);
			total_visits += got.n;
			total_yields += walk_yielding_and_check(&t, min_level, start, end, &ref,
								yield_randomly, &y);
			visits_free(&got);
			visits_free(&ref);
		}
		tree_free(&t);
	}
	printf("test_tdp_iter: %zu visits, %zu yields checked\n", total_visits, total_yields);
	assert_true(total_yields > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_literal_ranges_4level),
		cmocka_unit_test(test_literal_ranges_5level),
		cmocka_unit_test(test_nonpresent_not_descended),
		cmocka_unit_test(test_yield_literal),
		cmocka_unit_test(test_yield_each_position),
		cmocka_unit_test(test_random_trees),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
