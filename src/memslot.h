/* SPDX-License-Identifier: MIT */
/*
 * memslot.h - guest-physical memory slots (memslot.c): the slot objects,
 * the per-address-space arrays published with RCU, and gfn lookups.
 */
#ifndef VMMU_MEMSLOT_H
#define VMMU_MEMSLOT_H

#include <vmmu/vmmu.h>

#include "platform/platform.h"
#include "platform/rcu.h"
#include "spte.h"

struct vmmu_vm;

struct vmmu_memslot {
	uint64_t base_gfn;
	uint64_t npages;
	uint64_t userspace_addr;
	uint32_t flags;
	uint16_t id;
	uint16_t as_id;
	bool invalid; /* being deleted or moved: faults retry */
	/*
	 * KVM's lpage_info: for 2M (index 0) and 1G (index 1), one counter per
	 * huge frame overlapping the slot; non-zero forbids a leaf of that size
	 * there.  Frames sticking out of the slot, and all frames when gfn and
	 * hva are not congruent modulo the size, are disallowed for good.
	 */
	int32_t *disallow_lpage[SPTE_MAX_HUGEPAGE_LEVEL - 1];
	/*
	 * Dirty logging (LOG_DIRTY_PAGES without a dirty ring): one bit per
	 * page, set atomically by vCPUs, taken by get/clear dirty log.  NULL
	 * when the slot is not logged.
	 */
	uint64_t *dirty_bitmap;
};

static inline bool memslot_dirty_logged(const struct vmmu_memslot *slot)
{
	return slot->flags & VMMU_MEM_LOG_DIRTY_PAGES;
}

static inline uint64_t memslot_bitmap_words(const struct vmmu_memslot *slot)
{
	return (slot->npages + 63) / 64;
}

static inline uint64_t lpage_index(const struct vmmu_memslot *slot, uint64_t gfn, int level)
{
	unsigned shift = (unsigned)(level - 1) * SPTE_LEVEL_BITS;

	return (gfn >> shift) - (slot->base_gfn >> shift);
}

/*
 * One address space's slots, sorted by base_gfn, replaced as a whole.
 * Every array published for an address space has a generation of its own,
 * larger than the one it replaces, for the life of the VM: an array and a
 * generation name each other (the slot hints below rely on it).
 */
struct vmmu_memslots {
	uint64_t generation;
	vmmu_rcu_head rcu_head;
	int nr;
	struct vmmu_memslot *slots[];
};

int vmmu_memslots_init(struct vmmu_vm *vm);
void vmmu_memslots_destroy(struct vmmu_vm *vm);
/* Under vmmu_rcu_read_lock(): the slot holding @gfn, or NULL. */
struct vmmu_memslot *vmmu_gfn_to_memslot(struct vmmu_vm *vm, unsigned as_id, uint64_t gfn);
/* The same in the array @s (read with vmmu_rcu_dereference): binary search. */
struct vmmu_memslot *vmmu_memslots_search(const struct vmmu_memslots *s, uint64_t gfn);

/*
 * The slot a vCPU last found (KVM's vcpu->last_used_slot): its faults hit
 * the same slot again and again, and checking one slot is cheaper than a
 * search.  Owned by one thread (the vCPU's, or a direct-build worker's).
 *
 * @slot may have been freed since it was stored: it is dereferenced only
 * when @generation and @as_id are those of the array being read now, which
 * is then the very array the slot was found in, still published, so the
 * slot is still in it and allocated until the caller's read section ends
 * (slots are freed only after they are out of the published array and a
 * grace period has passed).  A delete or move publishes new arrays (the
 * first with the slot marked invalid), so a hint never outlives its slot's
 * last valid array.  All zeroes is an empty hint.
 */
struct vmmu_memslot_hint {
	uint64_t generation;
	struct vmmu_memslot *slot;
	unsigned as_id;
};

/* Under vmmu_rcu_read_lock(): the slot of @as_id holding @gfn, or NULL,
 * trying @hint first and updating it. */
static inline struct vmmu_memslot *vmmu_gfn_to_memslot_hint(const struct vmmu_memslots *s,
							    unsigned as_id, uint64_t gfn,
							    struct vmmu_memslot_hint *hint)
{
	struct vmmu_memslot *slot = hint->slot;

	if (vmmu_likely(slot && hint->generation == s->generation && hint->as_id == as_id) &&
	    vmmu_likely(gfn - slot->base_gfn < slot->npages))
		return slot;
	slot = vmmu_memslots_search(s, gfn);
	if (slot)
		*hint = (struct vmmu_memslot_hint){ .generation = s->generation,
						    .slot = slot,
						    .as_id = as_id };
	return slot;
}

/* Under slots_lock (or RCU, on an array read with vmmu_rcu_dereference):
 * the slot of @s with id @id, or NULL. */
struct vmmu_memslot *vmmu_memslot_by_id(const struct vmmu_memslots *s, unsigned id);

/*
 * For each slot of each address space that maps part of the host range
 * [hva_start, hva_end), call @fn with the gfns [start, end) it maps there
 * (the host-facing half of notifiers and aging, KVM's
 * kvm_handle_hva_range).  @fn runs outside any RCU read section (the
 * slot array is looked up again between calls).  Returns
 * true if any call of @fn did.
 */
typedef bool (*vmmu_gfn_range_fn)(struct vmmu_vm *vm, unsigned as_id, uint64_t start, uint64_t end,
				  void *arg);
bool vmmu_for_each_hva_gfn_range(struct vmmu_vm *vm, uint64_t hva_start, uint64_t hva_end,
				 vmmu_gfn_range_fn fn, void *arg);

static inline uint64_t memslot_gfn_to_hva(const struct vmmu_memslot *slot, uint64_t gfn)
{
	return slot->userspace_addr + ((gfn - slot->base_gfn) << VMMU_PAGE_SHIFT);
}

#endif /* VMMU_MEMSLOT_H */
