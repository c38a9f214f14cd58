/* SPDX-License-Identifier: MIT */
/*
 * tdp_iter.h - pre-order walk over one vmmu page-table tree.
 *
 * The iterator visits every entry that covers part of a gfn range, top
 * down, and descends into present non-leaf entries above min_level.  It
 * keeps the path of table pointers from the root, the entry pointer, and a
 * snapshot of the entry (old_spte) which callers use as the expected value
 * of their compare-and-exchange.  It contains no policy.
 *
 * Yielding: a caller that drops the lock and leaves RCU must not use any
 * cached table pointer afterwards.  It sets iter->yielded; the next step
 * then re-walks from the root to next_last_level_gfn, the first gfn not yet
 * processed, without advancing past it.  Only the root table is used
 * across the yield: the caller keeps it alive with a root reference.
 *
 * All reads of entries are atomic: other threads and the simulated
 * processor change them concurrently.  Callers hold RCU so tables stay
 * allocated while the iterator may point into them.
 */
#ifndef VMMU_TDP_ITER_H
#define VMMU_TDP_ITER_H

#include "spte.h"

struct tdp_iter {
	uint64_t next_last_level_gfn; /* where a restart resumes */
	uint64_t yielded_gfn;         /* next_last_level_gfn at the last yield */
	uint64_t *pt_path[SPTE_MAX_LEVEL];
	uint64_t *sptep;
	uint64_t old_spte;
	uint64_t gfn; /* first gfn covered by *sptep */
	int root_level;
	int min_level;
	int level;
	bool valid;
	bool yielded;
	/* Set by a caller that just linked a table it filled itself: the
	 * next step goes to the side instead of into the new table. */
	bool skip_children;
};

static inline uint64_t tdp_read_spte(const uint64_t *sptep)
{
	return __atomic_load_n(sptep, __ATOMIC_ACQUIRE);
}

static inline uint64_t round_gfn_for_level(uint64_t gfn, int level)
{
	return gfn & ~(spte_pages_per(level) - 1);
}

void tdp_iter_start(struct tdp_iter *iter, uint64_t *root_pt, int root_level, int min_level,
		    uint64_t gfn);
void tdp_iter_next(struct tdp_iter *iter);
void tdp_iter_restart(struct tdp_iter *iter);

/*
 * tdp_iter_start() and then, inline, the steps down that tdp_iter_next()
 * would take first: through present tables, while above @min_level.  The
 * iterator stops at the first entry of the pre-order walk that is not a
 * present table (a leaf, an empty or frozen entry) or is at @min_level,
 * which is the entry a walk that only acts there (the fault path) would
 * reach after visiting the tables above it.  Each entry on the way is read
 * once; the walk may then go on with tdp_iter_next() as usual.
 */
static inline void tdp_iter_start_down(struct tdp_iter *iter, uint64_t *root_pt, int root_level,
				       int min_level, uint64_t gfn)
{
	uint64_t *pt = root_pt, *sptep, spte;
	int level = root_level;

	/* A gfn beyond what the root covers: the general start ends it. */
	if (__builtin_expect(gfn >> ((unsigned)root_level * SPTE_LEVEL_BITS) != 0, 0)) {
		tdp_iter_start(iter, root_pt, root_level, min_level, gfn);
		return;
	}
	iter->root_level = root_level;
	iter->min_level = min_level;
	iter->next_last_level_gfn = gfn;
	iter->yielded_gfn = gfn;
	iter->yielded = false;
	iter->skip_children = false;
	iter->valid = true;
	for (;;) {
		iter->pt_path[level - 1] = pt;
		sptep = pt + spte_index(gfn, level);
		spte = tdp_read_spte(sptep);
		if (level == min_level || !is_shadow_present_pte(spte) || is_last_spte(spte, level))
			break;
		pt = spte_to_child_pt(spte);
		level--;
	}
	iter->level = level;
	iter->gfn = round_gfn_for_level(gfn, level);
	iter->sptep = sptep;
	iter->old_spte = spte;
}

/* Visit every entry at levels >= @min_level covering [start, end). */
#define for_each_tdp_pte_min_level(iter, root_pt, root_level, min_level, start, end)       \
	for (tdp_iter_start(&(iter), (root_pt), (root_level), (min_level), (start));       \
	     (iter).valid && (iter).gfn < (end); tdp_iter_next(&(iter)))

#define for_each_tdp_pte(iter, root_pt, root_level, start, end)                            \
	for_each_tdp_pte_min_level(iter, root_pt, root_level, PG_LEVEL_4K, start, end)

#endif /* VMMU_TDP_ITER_H */
