/* SPDX-License-Identifier: MIT */
/*
 * mmu_dispatch.c - the MMU's engine-neutral entry points (declared in
 * mmu.h): unmap, age, protect for dirty logging, split, recover, zap all.
 * The VM layer (memslot.c, vm.c, aging.c, dirty_log.c, the notifiers in
 * mmu.c) calls these and never an engine.
 *
 * Engines.  Today there is one: the TDP MMU (tdp_mmu.c), whose direct
 * roots sit on the VM's root list and are found by walking them.  The
 * nested MMU (shadow pages for EPT-on-EPT) will be a second one, whose
 * entries for a gfn are found through reverse maps instead.  Both exist in
 * the same VM at once (L1 runs on TDP roots while L2 runs on shadow
 * roots), so an entry point does not choose one engine: it asks every
 * engine that may map the gfns, TDP first, and combines the answers
 * ("anything unmapped", "a flush is needed", "was young").
 *
 * Why direct calls and not a table of engine operations: the engines are
 * not alternatives chosen once per VM but cooperating parts of one MMU;
 * the order of the calls and the one flush after both matter and belong
 * here, in plain sight; the shadow engine's locking (its own lock under
 * the MMU lock) differs from the TDP engine's, which one uniform
 * signature would hide; and the hot paths (faults, aging, harvests) take
 * no indirect call.  KVM's mmu.c is built the same way.
 *
 * Each place where the second engine plugs in is marked "NESTED:" and sits
 * behind shadow_mmu_active(), which is false until the nested MMU exists.
 */
#include "memslot.h"
#include "mmu.h"
#include "nested/nested.h"
#include "tdp_mmu.h"
#include "vm_internal.h"

/*
 * Does the VM have shadow pages (and so reverse maps) to visit?  The
 * nested MMU makes this true once it builds its first shadow page (KVM's
 * kvm_memslots_have_rmaps / shadow_root_allocated); until then every entry
 * point is the TDP engine alone and pays nothing for the check.
 */
static inline bool shadow_mmu_active(const struct vmmu_vm *vm)
{
	return vmmu_nested_active(vm);
}

int vmmu_mmu_vm_init(struct vmmu_vm *vm)
{
	/* NESTED: the shadow MMU's per-VM state (hash of shadow pages...). */
	return vmmu_tdp_mmu_init(vm);
}

void vmmu_mmu_vm_uninit(struct vmmu_vm *vm)
{
	/* The VM is unreachable: nothing splits any more. */
	vmmu_nested_free_eager_page_split_caches(vm);
	vmmu_nested_vm_destroy(vm);
	vmmu_tdp_mmu_uninit(vm);
}

bool vmmu_mmu_unmap_gfn_range(struct vmmu_vm *vm, unsigned as_id, uint64_t start, uint64_t end,
			      bool flush)
{
	bool unmapped;

	unmapped = vmmu_tdp_mmu_zap_leafs(vm, as_id, start, end, flush);
	/* The nested engine flushes before it returns (it frees tables). */
	if (shadow_mmu_active(vm))
		unmapped |= vmmu_nested_zap_gfn_range(vm, as_id, start, end);
	return unmapped;
}

static void age_gfn_range(struct vmmu_vm *vm, unsigned as_id, uint64_t start, uint64_t end,
			  struct vmmu_age_walk *w)
{
	vmmu_tdp_mmu_age_gfn_range(vm, as_id, start, end, w);
	if (shadow_mmu_active(vm) && w->op != VMMU_AGE_COUNT)
		w->young |=
			vmmu_nested_age_gfn_range(vm, as_id, start, end, w->op == VMMU_AGE_CLEAR);
}

bool vmmu_mmu_age_gfn_range(struct vmmu_vm *vm, unsigned as_id, uint64_t start, uint64_t end)
{
	struct vmmu_age_walk w = { .op = VMMU_AGE_CLEAR };

	age_gfn_range(vm, as_id, start, end, &w);
	return w.young;
}

bool vmmu_mmu_test_age_gfn_range(struct vmmu_vm *vm, unsigned as_id, uint64_t start, uint64_t end)
{
	struct vmmu_age_walk w = { .op = VMMU_AGE_TEST };

	age_gfn_range(vm, as_id, start, end, &w);
	return w.young;
}

void vmmu_mmu_count_idle_gfn_range(struct vmmu_vm *vm, unsigned as_id, uint64_t start, uint64_t end,
				   uint64_t *idle, uint64_t *mapped)
{
	struct vmmu_age_walk w = { .op = VMMU_AGE_COUNT, .only_valid = true };

	/* Idle-page tracking counts guest-physical pages of the VM itself:
	 * the TDP engine's view, shadow pages of a nested guest aside. */
	vmmu_tdp_mmu_age_gfn_range(vm, as_id, start, end, &w);
	*idle = w.idle;
	*mapped = w.mapped;
}

bool vmmu_mmu_slot_protect(struct vmmu_vm *vm, const struct vmmu_memslot *slot)
{
	bool flush;

	flush = vmmu_tdp_mmu_clear_dirty_range(vm, slot->as_id, slot->base_gfn,
					       slot->base_gfn + slot->npages);
	if (shadow_mmu_active(vm))
		flush |= vmmu_nested_wrprot_range(vm, slot->as_id, slot->base_gfn,
						  slot->base_gfn + slot->npages);
	return flush;
}

int vmmu_mmu_slot_split_and_protect(struct vmmu_vm *vm, const struct vmmu_memslot *slot,
				    bool *flush)
{
	int r;

	r = vmmu_tdp_mmu_split_and_protect(vm, slot->as_id, slot->base_gfn,
					   slot->base_gfn + slot->npages, flush);
	/* Huge EPT02 leaves are split through the reverse maps (the walk
	 * drops the MMU lock to refill its caches) and every EPT02 leaf of
	 * the slot is write-protected; TLBs are flushed before it returns.  If
	 * an allocation fails, the huge leaves left are write-protected and
	 * split by write faults. */
	if (shadow_mmu_active(vm))
		(void)vmmu_nested_split_range(vm, slot->as_id, slot->base_gfn,
					      slot->base_gfn + slot->npages, true);
	return r;
}

bool vmmu_mmu_clear_dirty_masked(struct vmmu_vm *vm, const struct vmmu_memslot *slot,
				 uint64_t gfn_offset, uint64_t mask)
{
	bool flush;

	flush = vmmu_tdp_mmu_clear_dirty_masked(vm, slot->as_id, slot->base_gfn + gfn_offset, mask);
	if (shadow_mmu_active(vm))
		flush |= vmmu_nested_wrprot_masked(vm, slot->as_id, slot->base_gfn + gfn_offset,
						   mask);
	return flush;
}

int vmmu_mmu_split_huge_pages(struct vmmu_vm *vm, const struct vmmu_memslot *slot, uint64_t start,
			      uint64_t end)
{
	int r;

	r = vmmu_tdp_mmu_split_huge_pages(vm, slot->as_id, start, end);
	/* Nested: split the huge EPT02 leaves of the range (pieces
	 * write-protected); its masks are protected next
	 * (vmmu_mmu_clear_dirty_masked). */
	if (shadow_mmu_active(vm))
		(void)vmmu_nested_split_range(vm, slot->as_id, start, end, false);
	return r;
}

uint64_t vmmu_mmu_slot_recover_huge_pages(struct vmmu_vm *vm, const struct vmmu_memslot *slot)
{
	/*
	 * NESTED: nothing.  The 4 KiB EPT02 leaves stay until something zaps
	 * them (vmmu_zap_gfn_range, an emulated write to their EPT12 entry,
	 * INVEPT of a root no other vCPU uses); faults then map huge EPT02
	 * leaves again where EPT12 and L0 allow (test_nested_split).
	 */
	return vmmu_tdp_mmu_recover_huge_pages(vm, slot);
}

void vmmu_mmu_invalidate_all_roots(struct vmmu_vm *vm)
{
	vmmu_write_lock(&vm->mmu_lock);
	vmmu_tdp_mmu_invalidate_all_roots(vm);
	/* Nested roots: obsolete (nothing zapped under the write lock). */
	if (shadow_mmu_active(vm))
		vmmu_nested_invalidate_roots(vm);
	vmmu_write_unlock(&vm->mmu_lock);
	vmmu_make_all_vcpus_request(vm, VMMU_REQ_RELOAD_ROOT | VMMU_REQ_TLB_FLUSH, true);
}

void vmmu_mmu_zap_invalidated_roots(struct vmmu_vm *vm)
{
	vmmu_tdp_mmu_zap_invalidated_roots(vm);
	/* Nested: obsolete roots emptied one by one under their own locks
	 * (vCPUs refault into new roots meanwhile); an obsolete root is
	 * freed when its last vCPU drops it. */
	if (shadow_mmu_active(vm))
		vmmu_nested_zap_invalidated_roots(vm);
}

/* Invalidate every root, make vCPUs drop them, and zap them.  Obsolete
 * roots the zap thread is emptying are waited for. */
void vmmu_mmu_zap_all(struct vmmu_vm *vm)
{
	vmmu_mmu_invalidate_all_roots(vm);
	vmmu_read_lock(&vm->mmu_lock);
	vmmu_mmu_zap_invalidated_roots(vm);
	vmmu_read_unlock(&vm->mmu_lock);
	vmmu_zap_fast_flush(vm);
}

/* Lockless walks (fast_pf.c): vmmu_walk_lockless_begin/end and
 * vmmu_get_last_spte are inline in mmu.h. */

int vmmu_mmu_lookup_leaf(struct vmmu_vm *vm, unsigned as_id, uint64_t gfn, uint64_t *spte,
			 int *level)
{
	/* The VM's own guest-physical map is the TDP engine's. */
	return vmmu_tdp_mmu_lookup_leaf(vm, as_id, gfn, spte, level);
}
