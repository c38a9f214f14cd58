/* SPDX-License-Identifier: MIT */
/*
 * mmu.h - the MMU front: the page-fault path (mmu.c), the lockless fault
 * path (fast_pf.c), fast invalidation (zap_fast.c), pre-faulting
 * (prefault.c), and the dispatch (mmu_dispatch.c): the engine-neutral
 * entry points through which the rest of the library changes mappings.
 * The engines (today only the TDP MMU, tdp_mmu.h) are called from the
 * front only; docs/design.md says where a second engine plugs in.
 */
#ifndef VMMU_MMU_H
#define VMMU_MMU_H

#include "memslot.h"
#include "tdp_mmu.h" /* the lockless walk's engine, below */
#include "vm_internal.h"

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
 * Lockless walks (dispatch entries for fast_pf.c, inline below) and the
 * lockless fault path (fast_pf.c).
 *
 * A lockless walk reads the vCPU's tables without the MMU lock, inside an
 * RCU read section: a table unlinked meanwhile stays allocated until the
 * walk ends (tables are freed through call_rcu), and its entries read as
 * FROZEN_SPTE once it has been torn down, so a compare-and-exchange on
 * them fails.  Only the vCPU's own thread walks its root this way.
 *
 * These three are part of the dispatch (mmu_dispatch.c holds the rest),
 * defined here so that the fast fault pays no call for them: a fast fault
 * is a few hundred instructions, and three calls were a sixth of them.
 * They are still the one place that chooses the engine.
 *
 * A TDP walk needs only RCU to keep tables allocated.  NESTED: a walk of
 * shadow tables may need more (KVM counts lockless walkers so that freeing
 * shadow pages waits for them).
 */
static inline void vmmu_walk_lockless_begin(struct vmmu_vcpu *vcpu)
{
	(void)vcpu;
	vmmu_rcu_read_lock();
}

static inline void vmmu_walk_lockless_end(struct vmmu_vcpu *vcpu)
{
	(void)vcpu;
	vmmu_rcu_read_unlock();
}

/*
 * Between begin and end: walk the vCPU's root toward @gfn down to the last
 * entry (a leaf, a non-present entry, or a frozen one).  Returns its level
 * with *@sptep and *@spte, or 0 when the vCPU has no usable root.
 */
static inline int vmmu_get_last_spte(struct vmmu_vcpu *vcpu, uint64_t gfn, uint64_t **sptep,
				     uint64_t *spte)
{
	struct vmmu_sp *root = vcpu->root;

	vmmu_rcu_assert_held();
	if (!root)
		return 0;
	/* NESTED: a shadow root (!role.direct) would be walked by the nested
	 * MMU, but vmmu_fast_page_fault() keeps to direct roots. */
	return vmmu_tdp_mmu_get_last_spte(vcpu->vm, root, gfn, sptep, spte);
}

/*
 * Under vmmu_rcu_read_lock(), on the vCPU's thread: the slot of the vCPU's
 * address space holding @gfn, or NULL (the fault paths' lookup, through
 * the vCPU's slot hint).
 */
static inline struct vmmu_memslot *vmmu_vcpu_gfn_to_memslot(struct vmmu_vcpu *vcpu, uint64_t gfn)
{
	unsigned as_id = vcpu->as_id;

	return vmmu_gfn_to_memslot_hint(vmmu_rcu_dereference(vcpu->vm->memslots[as_id]), as_id, gfn,
					&vcpu->slot_hint);
}

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

/*
 * Dispatch (mmu_dispatch.c): what the VM layer (memslots, notifiers, dirty
 * logging, aging, zaps) asks of the MMU, whatever engine maps the gfns.
 * Each entry point calls the TDP engine, then every other engine that may
 * map the same gfns (the nested shadow MMU, through its reverse maps: see
 * "NESTED:" in mmu_dispatch.c).  Callers never name an engine.
 *
 * Locks: "read lock" below means the caller holds the MMU lock for read
 * (the entry point may drop and retake it to yield or allocate); aging
 * takes no MMU lock at all.
 */

/* What an aging walk is asked, and what it found (dispatch -> engines). */
enum vmmu_age_op {
	VMMU_AGE_TEST, /* only look */
	VMMU_AGE_CLEAR, /* make every leaf not young */
	VMMU_AGE_COUNT, /* count idle and mapped pages */
};

struct vmmu_age_walk {
	enum vmmu_age_op op;
	bool only_valid; /* only the first valid root (what vCPUs run on) */
	bool young; /* some leaf was young */
	uint64_t idle; /* VMMU_AGE_COUNT: pages mapped and not young */
	uint64_t mapped; /* VMMU_AGE_COUNT: pages mapped */
};

/* VM creation and teardown: the engines' per-VM state.  0 or -ENOMEM. */
int vmmu_mmu_vm_init(struct vmmu_vm *vm);
/* After every root is gone and an RCU barrier. */
void vmmu_mmu_vm_uninit(struct vmmu_vm *vm);

/*
 * Remove every mapping of the gfns [start, end) of address space @as_id
 * (KVM's kvm_unmap_gfn_range / kvm_zap_gfn_range): MMU notifiers,
 * vmmu_zap_gfn_range, memslot delete and move.  Read lock.  With @flush,
 * no vCPU can use a removed translation once this returns; without it the
 * caller flushes (only when no vCPU can reach the tables).  Returns true
 * if anything was unmapped.
 */
bool vmmu_mmu_unmap_gfn_range(struct vmmu_vm *vm, unsigned as_id, uint64_t start, uint64_t end,
			      bool flush);

/*
 * Aging (KVM's kvm_age_gfn / kvm_test_age_gfn), without the MMU lock.
 * age: make every leaf mapping [start, end) of @as_id old (clear A, or
 * access-track it without A/D bits); returns true if one was young.  The
 * caller flushes TLBs if it wants the next access seen.
 * test_age: true if a leaf there is young; changes nothing.
 * count_idle: over the roots vCPUs use now, the pages of the range that
 * are mapped (*@mapped) and of those the ones not young (*@idle).
 */
bool vmmu_mmu_age_gfn_range(struct vmmu_vm *vm, unsigned as_id, uint64_t start, uint64_t end);
bool vmmu_mmu_test_age_gfn_range(struct vmmu_vm *vm, unsigned as_id, uint64_t start, uint64_t end);
void vmmu_mmu_count_idle_gfn_range(struct vmmu_vm *vm, unsigned as_id, uint64_t start, uint64_t end,
				   uint64_t *idle, uint64_t *mapped);

/*
 * Dirty logging.  "Protect" means: write-protect the leaf (write-protect
 * mode) or clear its D bit (dirty-bit mode); huge leaves are always
 * write-protected.  Each returns true (or sets *@flush) when a TLB flush
 * is needed before the dirty state may be reported; the caller flushes.
 *
 * slot_protect: every leaf of @slot (logging starts without eager split;
 * KVM's kvm_mmu_slot_remove_write_access / kvm_mmu_slot_leaf_clear_dirty).
 * Read lock.
 */
bool vmmu_mmu_slot_protect(struct vmmu_vm *vm, const struct vmmu_memslot *slot);
/*
 * Logging starts with eager split: split @slot's huge leaves to 4 KiB and
 * protect every leaf, in one pass.  Read lock.  0, or -ENOMEM when tables
 * ran out (the leaves left huge are write-protected: still correct).
 */
int vmmu_mmu_slot_split_and_protect(struct vmmu_vm *vm, const struct vmmu_memslot *slot,
				    bool *flush);
/*
 * Protect the pages @slot->base_gfn + @gfn_offset + bit, for each bit set
 * in @mask (KVM's kvm_arch_mmu_enable_log_dirty_pt_masked): a harvest
 * re-arms logging of the 64 pages of one bitmap word.  Read lock.
 */
bool vmmu_mmu_clear_dirty_masked(struct vmmu_vm *vm, const struct vmmu_memslot *slot,
				 uint64_t gfn_offset, uint64_t mask);
/*
 * Split the huge leaves mapping part of the gfns [start, end) of @slot to
 * 4 KiB (KVM's kvm_mmu_try_split_huge_pages): eager split of one
 * manual-protect chunk.  Read lock.  0 or -ENOMEM (not fatal: faults split
 * what is left).
 */
int vmmu_mmu_split_huge_pages(struct vmmu_vm *vm, const struct vmmu_memslot *slot, uint64_t start,
			      uint64_t end);
/*
 * Logging stopped: map @slot with huge leaves again where the host and the
 * slot allow (KVM's kvm_mmu_recover_huge_pages).  Read lock; flushes
 * before returning.  Returns the huge leaves made.
 */
uint64_t vmmu_mmu_slot_recover_huge_pages(struct vmmu_vm *vm, const struct vmmu_memslot *slot);

/*
 * Make every root obsolete and move every vCPU off it (KVM's
 * kvm_mmu_zap_all_fast, first half): takes the MMU lock for write, then
 * makes vCPUs reload their roots and flush.  When it returns no fault
 * installs into, no vCPU runs on, and no TLB holds an entry of a root that
 * existed at the call.  The obsolete roots are then emptied by
 * vmmu_mmu_zap_invalidated_roots() (read lock held by the caller).
 */
void vmmu_mmu_invalidate_all_roots(struct vmmu_vm *vm);
void vmmu_mmu_zap_invalidated_roots(struct vmmu_vm *vm);
/*
 * Zap everything and wait until it is gone (vmmu_zap_all, VM teardown):
 * takes the locks itself.
 */
void vmmu_mmu_zap_all(struct vmmu_vm *vm);

/*
 * Debugging: the leaf the vCPUs of @as_id use for @gfn (what the processor
 * would walk).  0 with *@spte and *@level, or -ENOENT.
 */
int vmmu_mmu_lookup_leaf(struct vmmu_vm *vm, unsigned as_id, uint64_t gfn, uint64_t *spte,
			 int *level);

#endif /* VMMU_MMU_H */
