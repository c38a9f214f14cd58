/* SPDX-License-Identifier: MIT */
/*
 * aging.c - is the guest still using a page?  The host's aging notifiers
 * (clear_young, clear_flush_young, test_young) and idle-page tracking over
 * guest-physical ranges.
 *
 * Aging a leaf (spte_age() in spte.h) clears its Accessed bit, or, for
 * leaves without A/D bits, parks R and X in software bits and leaves the
 * entry with no rights, so the next access faults and the lockless fault
 * path (fast_pf.c) puts them back.
 *
 * No MMU lock is taken.  The walk runs inside RCU read sections, which
 * keep every table it may still point into allocated, and holds a
 * reference on the root it walks (the root iterator), so that it can leave
 * the read section every AGING_RESCHED_LEAVES leaves for real and let
 * grace periods end: nothing around it holds a section (the slot loop
 * below leaves its own before each walk).  Each change is a
 * compare-and-exchange against the value read, so it never overwrites what
 * a fault, a zap, a dirty-log protection or the processor's A/D assist
 * wrote meanwhile (on failure the entry is read again and aged again if it
 * is still a young leaf).  Frozen and non-present entries are skipped.  An
 * aged leaf keeps its MMU-present bit, its page, MMU-writable and D: no
 * statistics change, no table is unlinked, no dirty state is lost (W is
 * dropped only in the access-tracked encoding, and only a write fault,
 * which logs the page, gives it back).
 */
#include "mmu_internal.h"

/* Leave the RCU read section this often during long walks (leaves seen). */
#define AGING_RESCHED_LEAVES 1024

enum age_op {
	AGE_TEST, /* only look */
	AGE_CLEAR, /* make every leaf not young */
	AGE_COUNT, /* count idle and mapped pages */
};

struct age_walk {
	enum age_op op;
	bool young; /* some leaf was young */
	uint64_t idle; /* AGE_COUNT: pages mapped and not young */
	uint64_t mapped; /* AGE_COUNT: pages mapped */
};

/*
 * One root (a reference held), [start, end).  Takes its own RCU read
 * section and leaves it every AGING_RESCHED_LEAVES entries: the reference
 * keeps the root, and the iterator re-walks from it (iter.yielded) instead
 * of following table pointers that may be freed once we are out.
 */
static void age_root(struct vmmu_vm *vm, struct vmmu_sp *root, uint64_t start, uint64_t end,
		     struct age_walk *w)
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
		case AGE_TEST:
			w->young |= spte_is_young(iter.old_spte);
			break;
		case AGE_COUNT:
			first = vmmu_max(iter.gfn, start);
			last = vmmu_min(iter.gfn + spte_pages_per(iter.level), end);
			w->mapped += last - first;
			if (!spte_is_young(iter.old_spte))
				w->idle += last - first;
			break;
		case AGE_CLEAR:
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
 * be zapped; an emptied root has nothing to see), or with @only_valid the
 * first valid one (what the vCPUs run on).
 */
static void age_gfn_range(struct vmmu_vm *vm, unsigned as_id, uint64_t start, uint64_t end,
			  bool only_valid, struct age_walk *w)
{
	struct vmmu_sp *root;

	for_each_tdp_mmu_root_yield_safe(vm, root, (int)as_id, only_valid) {
		age_root(vm, root, start, end, w);
		if (only_valid) {
			vmmu_tdp_mmu_put_root(vm, root);
			break;
		}
	}
}

/*
 * The hva range's pages in every slot of every address space.  The slot
 * array is read in a read section of its own that ends before each walk
 * (so that the walk's yields really end its section); the next slot is
 * then looked up again by gfn in the current array.  Slots are sorted and
 * do not overlap, so each slot present throughout is visited once; one
 * added, moved or deleted meanwhile may be seen or not, as if the update
 * had happened before or after (aging is advice to the host, and a host
 * invalidation of the range goes through the notifiers anyway).
 */
static void age_hva_range(struct vmmu_vm *vm, uint64_t hva_start, uint64_t hva_end,
			  struct age_walk *w)
{
	for (unsigned as = 0; as < VMMU_ADDRESS_SPACES; as++) {
		uint64_t next_gfn = 0;

		for (;;) {
			uint64_t gfn_start = 0, gfn_end = 0;
			struct vmmu_memslots *s;

			vmmu_rcu_read_lock();
			s = vmmu_rcu_dereference(vm->memslots[as]);
			for (int i = 0; i < s->nr; i++) {
				const struct vmmu_memslot *slot = s->slots[i];
				uint64_t slot_end =
					slot->userspace_addr + (slot->npages << VMMU_PAGE_SHIFT);
				uint64_t start = vmmu_max(hva_start, slot->userspace_addr);
				uint64_t end = vmmu_min(hva_end, slot_end);

				if (slot->base_gfn < next_gfn)
					continue;
				next_gfn = slot->base_gfn + slot->npages;
				if (start >= end)
					continue;
				gfn_start = slot->base_gfn +
					    ((start - slot->userspace_addr) >> VMMU_PAGE_SHIFT);
				gfn_end = slot->base_gfn +
					  ((end - slot->userspace_addr + VMMU_PAGE_SIZE - 1) >>
					   VMMU_PAGE_SHIFT);
				break;
			}
			vmmu_rcu_read_unlock();
			if (gfn_start == gfn_end)
				break;
			age_gfn_range(vm, as, gfn_start, gfn_end, false, w);
		}
	}
}

static int notify_age(struct vmmu_vm *vm, uint64_t hva_start, uint64_t hva_end, bool *young,
		      enum age_op op, bool flush)
{
	struct age_walk w = { .op = op };

	if (!vm || !young || hva_start > hva_end)
		return -EINVAL;
	age_hva_range(vm, hva_start, hva_end, &w);
	if (flush && w.young)
		vmmu_flush_remote_tlbs(vm);
	*young = w.young;
	return 0;
}

int vmmu_notify_clear_young(struct vmmu_vm *vm, uint64_t hva_start, uint64_t hva_end, bool *young)
{
	return notify_age(vm, hva_start, hva_end, young, AGE_CLEAR, false);
}

int vmmu_notify_clear_flush_young(struct vmmu_vm *vm, uint64_t hva_start, uint64_t hva_end,
				  bool *young)
{
	return notify_age(vm, hva_start, hva_end, young, AGE_CLEAR, true);
}

int vmmu_notify_test_young(struct vmmu_vm *vm, uint64_t hva_start, uint64_t hva_end, bool *young)
{
	return notify_age(vm, hva_start, hva_end, young, AGE_TEST, false);
}

static int idle_range_check(struct vmmu_vm *vm, unsigned as_id, uint64_t gpa, uint64_t size)
{
	if (!vm || as_id >= VMMU_ADDRESS_SPACES)
		return -EINVAL;
	if ((gpa | size) & (VMMU_PAGE_SIZE - 1))
		return -EINVAL;
	if (gpa + size < gpa || (gpa + size) >> VMMU_PAGE_SHIFT > vmmu_max_gfn(vm))
		return -EINVAL;
	return 0;
}

int vmmu_idle_mark(struct vmmu_vm *vm, unsigned as_id, uint64_t gpa, uint64_t size)
{
	struct age_walk w = { .op = AGE_CLEAR };
	int r = idle_range_check(vm, as_id, gpa, size);

	if (r)
		return r;
	age_gfn_range(vm, as_id, gpa >> VMMU_PAGE_SHIFT, (gpa + size) >> VMMU_PAGE_SHIFT, false,
		      &w);
	/* Translations cached before aging must not hide the next access. */
	if (w.young)
		vmmu_flush_remote_tlbs(vm);
	return 0;
}

int vmmu_idle_count(struct vmmu_vm *vm, unsigned as_id, uint64_t gpa, uint64_t size, uint64_t *idle,
		    uint64_t *mapped)
{
	struct age_walk w = { .op = AGE_COUNT };
	int r = idle_range_check(vm, as_id, gpa, size);

	if (r)
		return r;
	if (!idle)
		return -EINVAL;
	age_gfn_range(vm, as_id, gpa >> VMMU_PAGE_SHIFT, (gpa + size) >> VMMU_PAGE_SHIFT, true, &w);
	*idle = w.idle;
	if (mapped)
		*mapped = w.mapped;
	return 0;
}
