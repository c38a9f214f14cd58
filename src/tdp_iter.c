/* SPDX-License-Identifier: MIT */
#include "tdp_iter.h"

static void tdp_iter_refresh_sptep(struct tdp_iter *iter)
{
	iter->sptep = iter->pt_path[iter->level - 1] + spte_index(iter->gfn, iter->level);
	iter->old_spte = tdp_read_spte(iter->sptep);
}

void tdp_iter_restart(struct tdp_iter *iter)
{
	iter->yielded = false;
	iter->skip_children = false;
	iter->yielded_gfn = iter->next_last_level_gfn;
	iter->level = iter->root_level;
	iter->gfn = round_gfn_for_level(iter->next_last_level_gfn, iter->level);
	tdp_iter_refresh_sptep(iter);
	/* A gfn beyond what the root covers ends the walk at once. */
	iter->valid = (iter->next_last_level_gfn >>
		       ((unsigned)iter->root_level * SPTE_LEVEL_BITS)) == 0;
}

void tdp_iter_start(struct tdp_iter *iter, uint64_t *root_pt, int root_level, int min_level,
		    uint64_t gfn)
{
	iter->pt_path[root_level - 1] = root_pt;
	iter->root_level = root_level;
	iter->min_level = min_level;
	iter->next_last_level_gfn = gfn;
	tdp_iter_restart(iter);
}

static bool try_step_down(struct tdp_iter *iter)
{
	uint64_t *child;

	if (iter->level == iter->min_level)
		return false;
	/* The entry may have changed since it was read: follow what is there now. */
	iter->old_spte = tdp_read_spte(iter->sptep);
	if (!is_shadow_present_pte(iter->old_spte) || is_last_spte(iter->old_spte, iter->level))
		return false;
	child = spte_to_child_pt(iter->old_spte);
	iter->level--;
	iter->pt_path[iter->level - 1] = child;
	iter->gfn = round_gfn_for_level(iter->next_last_level_gfn, iter->level);
	tdp_iter_refresh_sptep(iter);
	return true;
}

static bool try_step_side(struct tdp_iter *iter)
{
	if (spte_index(iter->gfn, iter->level) == SPTE_ENT_PER_PAGE - 1)
		return false;
	iter->gfn += spte_pages_per(iter->level);
	iter->next_last_level_gfn = iter->gfn;
	iter->sptep++;
	iter->old_spte = tdp_read_spte(iter->sptep);
	return true;
}

static bool try_step_up(struct tdp_iter *iter)
{
	if (iter->level == iter->root_level)
		return false;
	iter->level++;
	iter->gfn = round_gfn_for_level(iter->gfn, iter->level);
	tdp_iter_refresh_sptep(iter);
	return true;
}

void tdp_iter_next(struct tdp_iter *iter)
{
	if (iter->yielded) {
		tdp_iter_restart(iter);
		return;
	}
	if (iter->skip_children)
		iter->skip_children = false;
	else if (try_step_down(iter))
		return;
	do {
		if (try_step_side(iter))
			return;
	} while (try_step_up(iter));
	iter->valid = false;
}
