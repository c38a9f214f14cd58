/* SPDX-License-Identifier: MIT */
/*
 * memslot.c - guest-physical memory slots (KVM_SET_USER_MEMORY_REGION).
 *
 * Each address space has one sorted array of slots.  Readers (the fault
 * path) find a gfn's slot by binary search inside an RCU read section.
 * Writers are serialized by slots_lock and never modify a published array
 * or slot: they build a new array, publish it, wait for a grace period and
 * free what nobody can see any more.  Every publication advances the
 * generation number.
 *
 * Deleting or moving a slot goes through an intermediate array in which
 * the slot is marked invalid: faults that find it retry instead of mapping
 * into a dying slot.  Once every fault that could have seen the valid slot
 * has finished (a grace period: the fault path holds RCU from the slot
 * lookup to the install), its mappings are dropped, and only then does the
 * slot disappear.  Dropping is per VM (vmmu_vm_config.slot_zap): zap the
 * slot's range in every root, or make every root obsolete (zap_fast.c),
 * which costs the same whatever is mapped.  When the call returns no root
 * a vCPU can use maps the old range.
 */
#include "dirty_log.h"
#include "memslot.h"
#include "mmu.h"
#include "vm_internal.h"

#include <string.h>

static void memslot_free(struct vmmu_memslot *slot);

static struct vmmu_memslots *memslots_alloc(int nr, uint64_t generation)
{
	struct vmmu_memslots *s = calloc(1, sizeof(*s) + (size_t)nr * sizeof(s->slots[0]));

	if (s) {
		s->nr = nr;
		s->generation = generation;
	}
	return s;
}

int vmmu_memslots_init(struct vmmu_vm *vm)
{
	pthread_mutex_init(&vm->slots_lock, NULL);
	pthread_mutex_init(&vm->mn_lock, NULL);
	pthread_cond_init(&vm->mn_cond, NULL);
	for (int as = 0; as < VMMU_ADDRESS_SPACES; as++) {
		vm->memslots[as] = memslots_alloc(0, 0);
		if (!vm->memslots[as])
			return -ENOMEM;
	}
	return 0;
}

void vmmu_memslots_destroy(struct vmmu_vm *vm)
{
	for (int as = 0; as < VMMU_ADDRESS_SPACES; as++) {
		struct vmmu_memslots *s = vm->memslots[as];

		if (!s)
			continue;
		for (int i = 0; i < s->nr; i++)
			memslot_free(s->slots[i]);
		free(s);
		vm->memslots[as] = NULL;
	}
	pthread_mutex_destroy(&vm->slots_lock);
	pthread_mutex_destroy(&vm->mn_lock);
	pthread_cond_destroy(&vm->mn_cond);
}

struct vmmu_memslot *vmmu_gfn_to_memslot(struct vmmu_vm *vm, unsigned as_id, uint64_t gfn)
{
	return vmmu_memslots_search(vmmu_rcu_dereference(vm->memslots[as_id]), gfn);
}

struct vmmu_memslot *vmmu_memslots_search(const struct vmmu_memslots *s, uint64_t gfn)
{
	int lo = 0, hi = s->nr - 1;

	/* Find the last slot whose base is <= gfn. */
	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2;

		if (s->slots[mid]->base_gfn <= gfn)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	if (hi < 0)
		return NULL;
	if (gfn - s->slots[hi]->base_gfn >= s->slots[hi]->npages)
		return NULL;
	return s->slots[hi];
}

int vmmu_gpa_to_hva(struct vmmu_vm *vm, unsigned as_id, uint64_t gpa, void **hva)
{
	struct vmmu_memslot *slot;
	int r = -ENOENT;

	if (!vm || !hva || as_id >= VMMU_ADDRESS_SPACES)
		return -EINVAL;
	vmmu_rcu_read_lock();
	slot = vmmu_gfn_to_memslot(vm, as_id, gpa >> VMMU_PAGE_SHIFT);
	if (slot && !slot->invalid) {
		*hva = (void *)(uintptr_t)(memslot_gfn_to_hva(slot, gpa >> VMMU_PAGE_SHIFT) +
					   (gpa & ~VMMU_PAGE_MASK));
		r = 0;
	}
	vmmu_rcu_read_unlock();
	return r;
}

struct vmmu_memslot *vmmu_memslot_by_id(const struct vmmu_memslots *s, unsigned id)
{
	for (int i = 0; i < s->nr; i++)
		if (s->slots[i]->id == id)
			return s->slots[i];
	return NULL;
}

/*
 * The slot array is read in a read section of its own that ends before each
 * call of @fn, so that a walk inside @fn that yields really ends its
 * section and lets grace periods pass; the next slot is then looked up
 * again by gfn in the current array.  Slots are sorted and do not overlap,
 * so each slot present throughout is visited once; one added, moved or
 * deleted meanwhile may be seen or not, as if the update had happened
 * before or after (notifier invalidations keep slots from changing until
 * their end anyway, and aging is advice).
 */
bool vmmu_for_each_hva_gfn_range(struct vmmu_vm *vm, uint64_t hva_start, uint64_t hva_end,
				 vmmu_gfn_range_fn fn, void *arg)
{
	bool ret = false;

	for (unsigned as = 0; as < VMMU_ADDRESS_SPACES; as++) {
		uint64_t next_gfn = 0;

		for (;;) {
			uint64_t gfn_start = 0, gfn_end = 0;
			struct vmmu_memslots *s;

			vmmu_rcu_read_lock();
			s = vmmu_rcu_dereference(vm->memslots[as]);
			for (int i = 0; i < s->nr; i++) {
				const struct vmmu_memslot *slot = s->slots[i];
				uint64_t start = vmmu_max(hva_start, slot->userspace_addr);
				uint64_t end = vmmu_min(hva_end,
							slot->userspace_addr +
								(slot->npages << VMMU_PAGE_SHIFT));

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
			ret |= fn(vm, as, gfn_start, gfn_end, arg);
		}
	}
	return ret;
}

/* Fill @s (sized for the result) with @old's slots minus @remove (if
 * non-NULL) plus @add inserted in order (if non-NULL). */
static void memslots_fill(struct vmmu_memslots *s, const struct vmmu_memslots *old,
			  const struct vmmu_memslot *remove, struct vmmu_memslot *add)
{
	int j = 0;

	s->generation = old->generation + 1;
	for (int i = 0; i < old->nr; i++) {
		if (old->slots[i] == remove)
			continue;
		if (add && add->base_gfn < old->slots[i]->base_gfn) {
			s->slots[j++] = add;
			add = NULL;
		}
		s->slots[j++] = old->slots[i];
	}
	if (add)
		s->slots[j++] = add;
	WARN_ON(j != s->nr);
}

static struct vmmu_memslots *memslots_edit(const struct vmmu_memslots *old,
					   const struct vmmu_memslot *remove,
					   struct vmmu_memslot *add)
{
	struct vmmu_memslots *s = memslots_alloc(old->nr - (remove ? 1 : 0) + (add ? 1 : 0), 0);

	if (s)
		memslots_fill(s, old, remove, add);
	return s;
}

/*
 * Swap in a new array.  Waits until no MMU-notifier invalidation is active,
 * so an invalidation's start and end always see the same slots.
 */
static void memslots_publish(struct vmmu_vm *vm, unsigned as_id, struct vmmu_memslots *s)
{
	pthread_mutex_lock(&vm->mn_lock);
	while (vm->mn_active_invalidate_count)
		pthread_cond_wait(&vm->mn_cond, &vm->mn_lock);
	vmmu_rcu_assign_pointer(vm->memslots[as_id], s);
	pthread_mutex_unlock(&vm->mn_lock);
}

static void memslot_free(struct vmmu_memslot *slot)
{
	if (!slot)
		return;
	for (int i = 0; i < SPTE_MAX_HUGEPAGE_LEVEL - 1; i++)
		free(slot->disallow_lpage[i]);
	free(slot->dirty_bitmap);
	free(slot);
}

/*
 * Build the huge-page disallow counters of a new slot (KVM's
 * kvm_alloc_memslot_metadata).  0 or -ENOMEM.
 */
static int memslot_init_lpage(struct vmmu_memslot *slot)
{
	for (int level = PG_LEVEL_2M; level <= SPTE_MAX_HUGEPAGE_LEVEL; level++) {
		uint64_t per = spte_pages_per(level);
		uint64_t last = slot->base_gfn + slot->npages - 1;
		uint64_t nr = lpage_index(slot, last, level) + 1;
		int32_t *d = calloc(nr, sizeof(*d));

		if (!d)
			return -ENOMEM;
		slot->disallow_lpage[level - 2] = d;
		/* A huge frame sticking out of the slot would map beyond it. */
		if (slot->base_gfn & (per - 1))
			d[0] = 1;
		if ((slot->base_gfn + slot->npages) & (per - 1))
			d[nr - 1] = 1;
		/* gfn and host address must be congruent modulo the size. */
		if ((slot->base_gfn ^ (slot->userspace_addr >> VMMU_PAGE_SHIFT)) & (per - 1))
			for (uint64_t i = 0; i < nr; i++)
				d[i] = 1;
	}
	return 0;
}

/*
 * The dirty bitmap of @slot, the new version of @old (NULL for a create).
 * When logging stays on across a move or a flag change, the old bitmap is
 * carried over, as KVM does: its bits are pages written and not yet
 * harvested (or, with INITIALLY_SET, not yet cleared), and vCPUs still
 * using the old slot keep setting bits in it until the grace period; a
 * fresh bitmap would lose them (or report every page again).  0, -ENOMEM.
 */
static int memslot_init_dirty_bitmap(struct vmmu_vm *vm, const struct vmmu_memslot *old,
				     struct vmmu_memslot *slot)
{
	if (old && old->dirty_bitmap && memslot_dirty_logged(slot)) {
		slot->dirty_bitmap = old->dirty_bitmap;
		return 0;
	}
	return vmmu_dirty_log_slot_init(vm, slot);
}

/* Free a slot that was never published, leaving a bitmap it shares with
 * @old (still published) alone. */
static void memslot_free_unpublished(struct vmmu_memslot *slot, const struct vmmu_memslot *old)
{
	if (old && slot->dirty_bitmap == old->dirty_bitmap)
		slot->dirty_bitmap = NULL;
	memslot_free(slot);
}

/* Free the replaced slot @old, leaving a bitmap carried over to @slot. */
static void memslot_free_replaced(struct vmmu_memslot *old, const struct vmmu_memslot *slot)
{
	if (old && slot && old->dirty_bitmap == slot->dirty_bitmap)
		old->dirty_bitmap = NULL;
	memslot_free(old);
}

static bool memslot_overlaps(const struct vmmu_memslots *s, unsigned id, uint64_t start,
			     uint64_t end)
{
	for (int i = 0; i < s->nr; i++) {
		const struct vmmu_memslot *o = s->slots[i];

		if (o->id == id)
			continue;
		if (start < o->base_gfn + o->npages && o->base_gfn < end)
			return true;
	}
	return false;
}

/* Zap the slot's range in every root and flush, with the MMU lock for read. */
static void memslot_zap(struct vmmu_vm *vm, const struct vmmu_memslot *slot)
{
	vmmu_read_lock(&vm->mmu_lock);
	vmmu_mmu_unmap_gfn_range(vm, slot->as_id, slot->base_gfn, slot->base_gfn + slot->npages,
				 true);
	vmmu_read_unlock(&vm->mmu_lock);
}

static int memslot_delete_or_move(struct vmmu_vm *vm, struct vmmu_memslots *cur,
				  struct vmmu_memslot *old, struct vmmu_memslot *moved)
{
	struct vmmu_memslot *inv = malloc(sizeof(*inv));
	struct vmmu_memslots *step1 = NULL, *step2 = NULL;
	unsigned as_id = old->as_id;

	if (!inv)
		return -ENOMEM;
	*inv = *old;
	inv->invalid = true;
	step1 = memslots_edit(cur, old, inv);
	if (!step1)
		goto nomem;
	/* Allocate the final array now so that nothing can fail half way. */
	step2 = memslots_alloc(cur->nr - (moved ? 0 : 1), 0);
	if (!step2)
		goto nomem;

	memslots_publish(vm, as_id, step1);
	vmmu_synchronize_rcu();
	/* No fault can be using the valid slot any more; new ones retry. */
	if (vm->cfg.slot_zap == VMMU_SLOT_ZAP_ALL_FAST)
		vmmu_mmu_zap_all_fast(vm);
	else
		memslot_zap(vm, old);

	memslots_fill(step2, step1, inv, moved);
	memslots_publish(vm, as_id, step2);
	vmmu_synchronize_rcu();
	free(cur);
	free(step1);
	free(inv); /* a shallow copy: its arrays are old's */
	memslot_free_replaced(old, moved);
	return 0;
nomem:
	free(step1);
	free(inv);
	return -ENOMEM;
}

int vmmu_set_user_memory_region(struct vmmu_vm *vm, const struct vmmu_userspace_memory_region *mem)
{
	unsigned as_id, id;
	uint64_t base_gfn, npages;
	struct vmmu_memslots *cur, *next;
	struct vmmu_memslot *old, *slot;
	int r = 0;

	if (!vm || !mem)
		return -EINVAL;
	as_id = mem->slot >> 16;
	id = mem->slot & 0xffff;
	if (as_id >= VMMU_ADDRESS_SPACES || id >= VMMU_USER_MEM_SLOTS)
		return -EINVAL;
	if (mem->flags & ~(VMMU_MEM_LOG_DIRTY_PAGES | VMMU_MEM_READONLY | VMMU_MEM_DIRECT_BUILD))
		return -EINVAL;
	if ((mem->guest_phys_addr | mem->memory_size | mem->userspace_addr) & (VMMU_PAGE_SIZE - 1))
		return -EINVAL;
	if (mem->guest_phys_addr + mem->memory_size < mem->guest_phys_addr ||
	    mem->userspace_addr + mem->memory_size < mem->userspace_addr)
		return -EINVAL;
	base_gfn = mem->guest_phys_addr >> VMMU_PAGE_SHIFT;
	npages = mem->memory_size >> VMMU_PAGE_SHIFT;
	if (base_gfn + npages > vmmu_max_gfn(vm))
		return -EINVAL;

	pthread_mutex_lock(&vm->slots_lock);
	cur = vm->memslots[as_id];
	old = vmmu_memslot_by_id(cur, id);

	if (!npages) {
		/* Delete. */
		r = old ? memslot_delete_or_move(vm, cur, old, NULL) : -EINVAL;
		goto out;
	}
	if (old) {
		/* Only the flags (but not READONLY) or the gpa may change. */
		if (mem->userspace_addr != old->userspace_addr || npages != old->npages ||
		    ((mem->flags ^ old->flags) & (VMMU_MEM_READONLY | VMMU_MEM_DIRECT_BUILD)) ||
		    (base_gfn != old->base_gfn && (old->flags & VMMU_MEM_DIRECT_BUILD))) {
			r = -EINVAL;
			goto out;
		}
		if (base_gfn == old->base_gfn && mem->flags == old->flags)
			goto out; /* nothing to do */
	}
	if ((!old || base_gfn != old->base_gfn) &&
	    memslot_overlaps(cur, id, base_gfn, base_gfn + npages)) {
		r = -EEXIST;
		goto out;
	}
	slot = calloc(1, sizeof(*slot));
	if (!slot) {
		r = -ENOMEM;
		goto out;
	}
	slot->base_gfn = base_gfn;
	slot->npages = npages;
	slot->userspace_addr = mem->userspace_addr;
	slot->flags = mem->flags;
	slot->id = (uint16_t)id;
	slot->as_id = (uint16_t)as_id;
	if (memslot_init_lpage(slot) || memslot_init_dirty_bitmap(vm, old, slot)) {
		memslot_free_unpublished(slot, old);
		r = -ENOMEM;
		goto out;
	}

	if (old && base_gfn != old->base_gfn) {
		/* Move. */
		r = memslot_delete_or_move(vm, cur, old, slot);
		if (r)
			memslot_free_unpublished(slot, old);
		goto out;
	}
	/* Create, or change the flags in place. */
	next = memslots_edit(cur, old, slot);
	if (!next) {
		memslot_free_unpublished(slot, old);
		r = -ENOMEM;
		goto out;
	}
	memslots_publish(vm, as_id, next);
	vmmu_synchronize_rcu();
	/* No fault can be using the old slot now: apply the new flags. */
	vmmu_dirty_log_slot_commit(vm, old, slot);
	free(cur);
	memslot_free_replaced(old, slot);
	if (!old && (slot->flags & VMMU_MEM_DIRECT_BUILD)) {
		/*
		 * Build the map now that notifiers see the slot, and take the
		 * slot away again if that fails.  The delete removes the leaves;
		 * the tables the build linked (likely all the VM may have, if
		 * that was the failure) go with a zap of everything, which
		 * vCPUs fault back in.  Should even the delete run out of
		 * memory, the slot stays, mapped in part (still an error).
		 */
		r = vmmu_direct_build(vm, slot);
		if (r) {
			memslot_delete_or_move(vm, next, slot, NULL);
			vmmu_zap_all(vm);
		}
	}
out:
	pthread_mutex_unlock(&vm->slots_lock);
	return r;
}
