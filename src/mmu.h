/* SPDX-License-Identifier: MIT */
/*
 * mmu.h - the MMU front: the page-fault path (mmu.c), the lockless fault
 * path (fast_pf.c), fast invalidation (zap_fast.c) and pre-faulting
 * (prefault.c).  It decides which engine handles what; the engines (today
 * only the TDP MMU, tdp_mmu.h) are called from here.
 */
#ifndef VMMU_MMU_H
#define VMMU_MMU_H

#include "memslot.h"

#include <stdbool.h>
#include <stdint.h>

struct vmmu_vm;
struct vmmu_vcpu;

struct vmmu_page_fault {
	uint64_t gpa;
	uint64_t gfn;
	uint64_t exit_qual;
	bool write, exec, prefetch;
	struct vmmu_memslot *slot;
	uint64_t hva;
	bool map_writable;
	uint64_t mmu_seq;
	int max_level;
	int goal_level;
	/*
	 * A run (pre-faulting, direct build): map the gfns [gfn, gfn_end) with
	 * the rules of this one fault.  vmmu_do_page_fault() shortens it to
	 * what one table at goal_level holds and to pages with the same rules;
	 * a demand fault is a run of one.  mapped_end is the first gfn after
	 * the leaves installed or found present, from gfn on (gfn if none).
	 */
	uint64_t gfn_end;
	uint64_t mapped_end;
};
/* zap_fast.c */
void vmmu_zap_fast_init(struct vmmu_vm *vm);
void vmmu_zap_fast_destroy(struct vmmu_vm *vm);
void vmmu_mmu_zap_all_fast(struct vmmu_vm *vm);
/* Wait until the zap thread has done every pass asked before the call. */
void vmmu_zap_fast_flush(struct vmmu_vm *vm);

/* prefault.c: build the whole map of a new VMMU_MEM_DIRECT_BUILD slot.
 * Called with slots_lock held, after the slot is published.  0, -ENOMEM,
 * -EFAULT. */
int vmmu_direct_build(struct vmmu_vm *vm, struct vmmu_memslot *slot);

/*
 * fast_pf.c: lockless walks and the lockless fault path.
 *
 * A lockless walk reads the vCPU's tables without the MMU lock, inside an
 * RCU read section: a table unlinked meanwhile stays allocated until the
 * walk ends (tables are freed through call_rcu), and its entries read as
 * FROZEN_SPTE once it has been torn down, so a compare-and-exchange on
 * them fails.  Only the vCPU's own thread walks its root this way.
 */
void vmmu_walk_lockless_begin(struct vmmu_vcpu *vcpu);
void vmmu_walk_lockless_end(struct vmmu_vcpu *vcpu);
/*
 * Between begin and end: walk the vCPU's root toward @gfn down to the last
 * entry (a leaf, a non-present entry, or a frozen one).  Returns its level
 * with *@sptep and *@spte, or 0 when the vCPU has no usable root.
 */
int vmmu_get_last_spte(struct vmmu_vcpu *vcpu, uint64_t gfn, uint64_t **sptep, uint64_t *spte);

/* What vmmu_fast_page_fault() returns when the locked path must run. */
#define VMMU_PF_CONTINUE 16
/*
 * Try to fix the fault without the MMU lock (KVM's fast_page_fault).
 * Returns VMMU_PF_FIXED or VMMU_PF_SPURIOUS (stats counted), or
 * VMMU_PF_CONTINUE.
 */
int vmmu_fast_page_fault(struct vmmu_vcpu *vcpu, uint64_t gpa, uint64_t exit_qual);

/* mmu.c */
/*
 * The body of a page fault, shared by demand faults, pre-faulting and
 * direct build (KVM's kvm_mmu_do_page_fault).  The caller fills gpa, gfn,
 * gfn_end, exit_qual, write, exec and prefetch.  Returns an enum
 * vmmu_pf_result or a negative errno; a prefetch that finds its memslot
 * being deleted or moved returns -EAGAIN rather than RETRY.  Counts no
 * stats.
 */
int vmmu_do_page_fault(struct vmmu_vcpu *vcpu, struct vmmu_page_fault *fault);
int vmmu_max_mapping_level(struct vmmu_vm *vm, const struct vmmu_memslot *slot, uint64_t gfn,
			   uint64_t hva);
#endif /* VMMU_MMU_H */
