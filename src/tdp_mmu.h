/* SPDX-License-Identifier: MIT */
/*
 * tdp_mmu.h - the two-dimensional-paging engine (tdp_mmu.c): direct roots
 * found on the VM's root list, and the walks over them.  Only the MMU
 * front (mmu.c, mmu_role.c, zap_fast.c and the dispatch) calls these; the
 * rest of the library goes through the front, which does not care which
 * engine maps a gfn.
 */
#ifndef VMMU_TDP_MMU_H
#define VMMU_TDP_MMU_H

#include "sp.h"

#include <stdbool.h>
#include <stdint.h>

struct vmmu_vm;
struct vmmu_vcpu;
struct vmmu_memslot;
struct vmmu_page_fault;
struct vmmu_age_walk;

int vmmu_tdp_mmu_init(struct vmmu_vm *vm);
void vmmu_tdp_mmu_uninit(struct vmmu_vm *vm);
union vmmu_sp_role vmmu_root_role(struct vmmu_vm *vm, unsigned as_id);
int vmmu_tdp_mmu_get_root(struct vmmu_vm *vm, union vmmu_sp_role role, struct vmmu_sp **out);
void vmmu_tdp_mmu_put_root(struct vmmu_vm *vm, struct vmmu_sp *root);
/*
 * The root iterator: the root after @prev (the first if NULL) of address
 * space @as_id (any if < 0) that is not emptied yet (with @only_valid: not
 * obsolete), with a reference taken; @prev's reference is dropped.  NULL at
 * the end.  Needs no lock and allocates nothing.  Holding the reference, a
 * walk may drop the MMU lock and leave RCU in the middle of the root.  A
 * loop that breaks out early must vmmu_tdp_mmu_put_root() the root.
 */
struct vmmu_sp *vmmu_tdp_mmu_next_root(struct vmmu_vm *vm, struct vmmu_sp *prev, int as_id,
				       bool only_valid);
#define for_each_tdp_mmu_root_yield_safe(vm, root, as_id, only_valid)                    \
	for ((root) = vmmu_tdp_mmu_next_root((vm), NULL, (as_id), (only_valid)); (root); \
	     (root) = vmmu_tdp_mmu_next_root((vm), (root), (as_id), (only_valid)))
bool vmmu_tdp_mmu_zap_leafs(struct vmmu_vm *vm, unsigned as_id, uint64_t start, uint64_t end,
			    bool flush);
void vmmu_tdp_mmu_invalidate_all_roots(struct vmmu_vm *vm);
void vmmu_tdp_mmu_zap_invalidated_roots(struct vmmu_vm *vm);

int vmmu_tdp_mmu_map(struct vmmu_vcpu *vcpu, struct vmmu_page_fault *fault);

/*
 * Dirty logging in the tables: remove write access (write-protect mode) or
 * the D bit (dirty-bit mode) of the 4 KiB leaves mapping [start, end) of
 * @as_id, and write access of any huge leaf there, in every valid root.
 * Caller holds the MMU lock for read; returns true if a TLB flush is
 * needed before the dirty state may be reported.
 */
bool vmmu_tdp_mmu_clear_dirty_range(struct vmmu_vm *vm, unsigned as_id, uint64_t start,
				    uint64_t end);
/* The same for the 64 gfns base_gfn + bit of @mask. */
bool vmmu_tdp_mmu_clear_dirty_masked(struct vmmu_vm *vm, unsigned as_id, uint64_t base_gfn,
				     uint64_t mask);
/*
 * Split every huge leaf mapping part of [start, end) of @as_id down to
 * 4 KiB, under the read lock (which it may drop to allocate).  0, or
 * -ENOMEM when a table could not be allocated (what is split stays split;
 * the rest is split by faults).
 */
int vmmu_tdp_mmu_split_huge_pages(struct vmmu_vm *vm, unsigned as_id, uint64_t start, uint64_t end);
/*
 * Logging starts: split huge leaves in [start, end) to 4 KiB with pieces
 * built protected, and protect every 4 KiB leaf there, in one walk (huge
 * leaves that cannot be split for want of tables are write-protected).
 * Sets *@flush when a TLB flush is needed.  0 or -ENOMEM (not fatal).
 */
int vmmu_tdp_mmu_split_and_protect(struct vmmu_vm *vm, unsigned as_id, uint64_t start, uint64_t end,
				   bool *flush);
/* Collapse tables inside @slot back into huge leaves where legal, under the
 * read lock; flushes before returning.  Returns leaves recovered. */
uint64_t vmmu_tdp_mmu_recover_huge_pages(struct vmmu_vm *vm, const struct vmmu_memslot *slot);

/*
 * tdp_mmu_lockless.c: walks that take no MMU lock, only RCU.
 *
 * Age the leaves mapping [start, end) of @as_id as @w asks, in every root
 * that may still map something (with w->only_valid: the first valid one).
 */
void vmmu_tdp_mmu_age_gfn_range(struct vmmu_vm *vm, unsigned as_id, uint64_t start, uint64_t end,
				struct vmmu_age_walk *w);
/*
 * Inside an RCU read section: walk @root toward @gfn down to the last entry
 * (a leaf, a non-present entry, or a frozen one).  Returns its level with
 * *@sptep and *@spte.
 */
int vmmu_tdp_mmu_get_last_spte(struct vmmu_vm *vm, struct vmmu_sp *root, uint64_t gfn,
			       uint64_t **sptep, uint64_t *spte);
/* The leaf of @gfn in the valid root of @as_id: 0 with *@spte and *@level,
 * or -ENOENT. */
int vmmu_tdp_mmu_lookup_leaf(struct vmmu_vm *vm, unsigned as_id, uint64_t gfn, uint64_t *spte,
			     int *level);

#endif /* VMMU_TDP_MMU_H */
