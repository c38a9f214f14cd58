/* SPDX-License-Identifier: MIT */
/*
 * tdp_mmu_lockless.c - the TDP engine's walks that take no MMU lock: aging
 * (for aging.c, through the dispatch) and the last-entry walk of the
 * lockless fault path (fast_pf.c), and a debugging lookup.
 *
 * Aging a leaf (spte_age() in spte.h) clears its Accessed bit, or, for
 * leaves without A/D bits, parks R and X in software bits and leaves the
 * entry with no rights, so the next access faults and the lockless fault
 * path (fast_pf.c) puts them back.
 *
 * No MMU lock is taken.  The walk runs inside RCU read sections, which
 * keep every table it may still point into allocated, and holds a
 * reference on the root it walks (the root iterator), so that it can leave
 * the read section every AGING_RESCHED_LEAVES leaves for real; each change is a
 * compare-and-exchange against the value read, so it never overwrites what
 * a fault, a zap, a dirty-log protection or the processor's A/D assist
 * wrote meanwhile (on failure the entry is read again and aged again if it
 * is still a young leaf).  Frozen and non-present entries are skipped.  An
 * aged leaf keeps its MMU-present bit, its page, MMU-writable and D: no
 * statistics change, no table is unlinked, no dirty state is lost (W is
 * dropped only in the access-tracked encoding, and only a write fault,
 * which logs the page, gives it back).
 */
#include "mmu.h"
#include "spte.h"
#include "tdp_iter.h"
#include "tdp_mmu.h"
#include "vm_internal.h"

/* Leave the RCU read section this often during long walks (leaves seen). */
#define AGING_RESCHED_LEAVES 1024

/*
 * One root (a reference held), [start, end).  Takes its own RCU read
 * section and leaves it every AGING_RESCHED_LEAVES entries: the reference
 * keeps the root, and the iterator re-walks from it (iter.yielded) instead
 * of following table pointers that may be freed once we are out.  Callers
 * hold no read section, so leaving it really lets grace periods end.
 */
static void age_root(struct vmmu_vm *vm, struct vmmu_sp *root, uint64_t start, uint64_t end,
		     struct vmmu_age_walk *w)
{
	struct tdp_iter iter;
	unsigned leaves = 0;

	vmmu_rcu_read_lock();
	for_each_tdp_pte(iter, sp_spt(vm, root), (int)root->role.level, start, end) {
		uint64_t new_spte, first, last;

		if (++leaves % AGING_RESCHED_LEAVES == 0 &&
		    iter.next_last_level_gfn != iter.yielded_gfn) {
			/* Let grace periods end; the walk restarts here. */
			vmmu_rcu_read_unlock();
			vmmu_rcu_read_lock();
			iter.yielded = true;
			continue;
		}
retry:
		if (!is_present_leaf(iter.old_spte, iter.level))
			continue;
		switch (w->op) {
		case VMMU_AGE_TEST:
			w->young |= spte_is_young(iter.old_spte);
			break;
		case VMMU_AGE_COUNT:
			first = vmmu_max(iter.gfn, start);
			last = vmmu_min(iter.gfn + spte_pages_per(iter.level), end);
			w->mapped += last - first;
			if (!spte_is_young(iter.old_spte))
				w->idle += last - first;
			break;
		case VMMU_AGE_CLEAR:
			new_spte = spte_age(iter.old_spte);
			if (new_spte == iter.old_spte)
				break;
			if (!__atomic_compare_exchange_n(iter.sptep, &iter.old_spte, new_spte,
							 false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
				goto retry; /* old_spte was refreshed */
			w->young = true;
			break;
		}
	}
	vmmu_rcu_read_unlock();
}

/*
 * Every root of @as_id that may still map something (valid or waiting to
 * be zapped; an emptied root has nothing to see), or with w->only_valid
 * the first valid one (what the vCPUs run on).
 */
void vmmu_tdp_mmu_age_gfn_range(struct vmmu_vm *vm, unsigned as_id, uint64_t start, uint64_t end,
				struct vmmu_age_walk *w)
{
	bool only_valid = w->only_valid;
	struct vmmu_sp *root;

	for_each_tdp_mmu_root_yield_safe(vm, root, (int)as_id, only_valid) {
		age_root(vm, root, start, end, w);
		if (only_valid) {
			vmmu_tdp_mmu_put_root(vm, root);
			break;
		}
	}
}

int vmmu_tdp_mmu_get_last_spte(struct vmmu_vm *vm, struct vmmu_sp *root, uint64_t gfn,
			       uint64_t **sptep, uint64_t *spte)
{
	uint64_t *pt, *p = NULL, e = SPTE_NONPRESENT;
	int level, last = 0;

	pt = sp_spt(vm, root);
	for (level = (int)root->role.level; level >= PG_LEVEL_4K; level--) {
		p = &pt[spte_index(gfn, level)];
		e = tdp_read_spte(p);
		last = level;
		if (!is_shadow_present_pte(e) || is_last_spte(e, level))
			break;
		pt = spte_to_child_pt(e);
	}
	*sptep = p;
	*spte = e;
	return last;
}

int vmmu_tdp_mmu_lookup_leaf(struct vmmu_vm *vm, unsigned as_id, uint64_t gfn, uint64_t *spte_out,
			     int *level)
{
	union vmmu_sp_role role = vmmu_root_role(vm, as_id);
	struct vmmu_sp *root;
	int r = -ENOENT;

	vmmu_rcu_read_lock();
	vmmu_list_for_each_entry_rcu(root, &vm->roots, link)
	{
		uint64_t *pt = sp_spt(vm, root);

		if (root->role.word != role.word || READ_ONCE(root->invalid))
			continue;
		for (int l = (int)root->role.level; l >= PG_LEVEL_4K; l--) {
			uint64_t spte = tdp_read_spte(&pt[spte_index(gfn, l)]);

			if (!is_shadow_present_pte(spte))
				break;
			if (is_last_spte(spte, l)) {
				*level = l;
				*spte_out = spte;
				r = 0;
				break;
			}
			pt = spte_to_child_pt(spte);
		}
		break;
	}
	vmmu_rcu_read_unlock();
	return r;
}
