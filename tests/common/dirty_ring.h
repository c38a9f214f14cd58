/* SPDX-License-Identifier: MIT */
/*
 * dirty_ring.h - the collector's side of a vCPU's dirty ring, as a VMM
 * would write it: take every DIRTY entry from where the collector stopped
 * last time, note its page, and hand the entry back (RESET) for
 * vmmu_reset_dirty_rings().
 */
#ifndef VMMU_TEST_DIRTY_RING_H
#define VMMU_TEST_DIRTY_RING_H

#include <vmmu/vmmu.h>

#include <stdint.h>

/*
 * Collect the DIRTY entries of @vcpu's ring from *@next on, setting
 * seen[offset] for each and advancing *@next.  Returns the number
 * collected, or -1 (and stops) on an entry whose offset is not below
 * @npages or, unless @slot is UINT32_MAX, whose slot is not @slot; -2 if
 * the vCPU has no ring.
 */
static inline int64_t test_ring_collect(struct vmmu_vcpu *vcpu, uint32_t *next, uint32_t slot,
					uint8_t *seen, uint64_t npages)
{
	struct vmmu_dirty_gfn *ring;
	uint32_t size;
	int64_t n = 0;

	if (vmmu_vcpu_dirty_ring(vcpu, &ring, &size))
		return -2;
	for (;;) {
		struct vmmu_dirty_gfn *e = &ring[*next & (size - 1)];

		if (!(__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) & VMMU_DIRTY_GFN_F_DIRTY))
			return n;
		if (e->offset >= npages || (slot != UINT32_MAX && e->slot != slot))
			return -1;
		seen[e->offset] = 1;
		__atomic_store_n(&e->flags, VMMU_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
		(*next)++;
		n++;
	}
}

#endif /* VMMU_TEST_DIRTY_RING_H */
