/* SPDX-License-Identifier: MIT */
/*
 * aging.c - is the guest still using a page?  The host's aging notifiers
 * (clear_young, clear_flush_young, test_young) and idle-page tracking over
 * guest-physical ranges.
 *
 * This is the host-facing half: host ranges become gfn ranges of the slots
 * that map them (vmmu_for_each_hva_gfn_range), and the MMU's dispatch
 * (vmmu_mmu_age_gfn_range and friends, mmu.h) ages the leaves of every
 * engine that maps them.  How a leaf is aged, and why no MMU lock is
 * needed, is told in tdp_mmu_lockless.c.
 */
#include "memslot.h"
#include "mmu.h"
#include "vm_internal.h"

static bool age_gfn_range(struct vmmu_vm *vm, unsigned as_id, uint64_t start, uint64_t end,
			  void *arg)
{
	if (*(enum vmmu_age_op *)arg == VMMU_AGE_TEST)
		return vmmu_mmu_test_age_gfn_range(vm, as_id, start, end);
	return vmmu_mmu_age_gfn_range(vm, as_id, start, end);
}

static int notify_age(struct vmmu_vm *vm, uint64_t hva_start, uint64_t hva_end, bool *young,
		      enum vmmu_age_op op, bool flush)
{
	bool was_young;

	if (!vm || !young || hva_start > hva_end)
		return -EINVAL;
	was_young = vmmu_for_each_hva_gfn_range(vm, hva_start, hva_end, age_gfn_range, &op);
	if (flush && was_young)
		vmmu_flush_remote_tlbs(vm);
	*young = was_young;
	return 0;
}

int vmmu_notify_clear_young(struct vmmu_vm *vm, uint64_t hva_start, uint64_t hva_end, bool *young)
{
	return notify_age(vm, hva_start, hva_end, young, VMMU_AGE_CLEAR, false);
}

int vmmu_notify_clear_flush_young(struct vmmu_vm *vm, uint64_t hva_start, uint64_t hva_end,
				  bool *young)
{
	return notify_age(vm, hva_start, hva_end, young, VMMU_AGE_CLEAR, true);
}

int vmmu_notify_test_young(struct vmmu_vm *vm, uint64_t hva_start, uint64_t hva_end, bool *young)
{
	return notify_age(vm, hva_start, hva_end, young, VMMU_AGE_TEST, false);
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
	int r = idle_range_check(vm, as_id, gpa, size);

	if (r)
		return r;
	/* Translations cached before aging must not hide the next access. */
	if (vmmu_mmu_age_gfn_range(vm, as_id, gpa >> VMMU_PAGE_SHIFT,
				   (gpa + size) >> VMMU_PAGE_SHIFT))
		vmmu_flush_remote_tlbs(vm);
	return 0;
}

int vmmu_idle_count(struct vmmu_vm *vm, unsigned as_id, uint64_t gpa, uint64_t size, uint64_t *idle,
		    uint64_t *mapped)
{
	uint64_t n_idle, n_mapped;
	int r = idle_range_check(vm, as_id, gpa, size);

	if (r)
		return r;
	if (!idle)
		return -EINVAL;
	vmmu_mmu_count_idle_gfn_range(vm, as_id, gpa >> VMMU_PAGE_SHIFT,
				      (gpa + size) >> VMMU_PAGE_SHIFT, &n_idle, &n_mapped);
	*idle = n_idle;
	if (mapped)
		*mapped = n_mapped;
	return 0;
}
