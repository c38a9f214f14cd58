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

/* Visit every entry at levels >= @min_level covering [start, end). */
#define for_each_tdp_pte_min_level(iter, root_pt, root_level, min_level, start, end)       \
	for (tdp_iter_start(&(iter), (root_pt), (root_level), (min_level), (start));       \
	     (iter).valid && (iter).gfn < (end); tdp_iter_next(&(iter)))

#define for_each_tdp_pte(iter, root_pt, root_level, start, end)                            \
	for_each_tdp_pte_min_level(iter, root_pt, root_level, PG_LEVEL_4K, start, end)

#endif /* VMMU_TDP_ITER_H */
