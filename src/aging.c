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
 * keep every table it may still point into allocated; each change is a
 * compare-and-exchange against the value read, so it never overwrites what
 * a fault, a zap, a dirty-log protection or the processor's A/D assist
 * wrote meanwhile (on failure the entry is read again and aged again if it
 * is still a young leaf).  Frozen and non-present entries are skipped.  An
 * aged leaf keeps its MMU-present bit, its page, MMU-writable and D: no
 * statistics change, no table is unlinked, no dirty state is lost (W is
 * dropped only in the access-tracked encoding, and only a write fault,
 * which logs the page, gives it back).
 */
#include "tdp_iter.h"
#include "vm_internal.h"

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

static int root_as_id(const struct vmmu_sp *root)
{
	return root->role.smm ? 1 : 0;
}

/* One root, [start, end).  Caller is inside an RCU read section. */
static void age_root(struct vmmu_vm *vm, struct vmmu_sp *root, uint64_t start, uint64_t end,
		     struct age_walk *w)
{
	struct tdp_iter iter;
	unsigned leaves = 0;

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

	vmmu_rcu_read_lock();
	vmmu_list_for_each_entry_rcu(root, &vm->roots, link)
	{
		if ((unsigned)root_as_id(root) != as_id)
			continue;
		if (only_valid && READ_ONCE(root->invalid))
			continue;
		age_root(vm, root, start, end, w);
		if (only_valid)
			break;
	}
	vmmu_rcu_read_unlock();
}

/* The hva range's pages in every slot of every address space. */
static void age_hva_range(struct vmmu_vm *vm, uint64_t hva_start, uint64_t hva_end,
			  struct age_walk *w)
{
	vmmu_rcu_read_lock();
	for (unsigned as = 0; as < VMMU_ADDRESS_SPACES; as++) {
		struct vmmu_memslots *s = vmmu_rcu_dereference(vm->memslots[as]);

		for (int i = 0; i < s->nr; i++) {
			const struct vmmu_memslot *slot = s->slots[i];
			uint64_t slot_end =
				slot->userspace_addr + (slot->npages << VMMU_PAGE_SHIFT);
			uint64_t start = vmmu_max(hva_start, slot->userspace_addr);
			uint64_t end = vmmu_min(hva_end, slot_end);

			if (start >= end)
				continue;
			age_gfn_range(vm, as,
				      slot->base_gfn +
					      ((start - slot->userspace_addr) >> VMMU_PAGE_SHIFT),
				      slot->base_gfn +
					      ((end - slot->userspace_addr + VMMU_PAGE_SIZE - 1) >>
					       VMMU_PAGE_SHIFT),
				      false, w);
		}
	}
	vmmu_rcu_read_unlock();
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
