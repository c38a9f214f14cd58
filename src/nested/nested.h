/* SPDX-License-Identifier: MIT */
/*
 * nested/nested.h - what the MMU front, the dispatch layer and the VM see of
 * the nested (EPT-on-EPT) engine.  The TDP engine's files never include it.
 *
 * The vCPU calls (faults, root loads) take the MMU lock themselves (for
 * read; for write with vmmu_vm_config.nested_global_lock): call them with
 * no MMU lock held.  Each entry point returns
 * once its change is final (TLBs flushed when needed).
 */
#ifndef VMMU_NESTED_NESTED_H
#define VMMU_NESTED_NESTED_H

#include <stdbool.h>
#include <stdint.h>

struct vmmu_vm;
struct vmmu_vcpu;
struct vmmu_guest_entry;
struct vmmu_page_fault;

/* VM and vCPU life cycle.  0 or -ENOMEM. */
int vmmu_nested_vm_init(struct vmmu_vm *vm);
void vmmu_nested_vm_destroy(struct vmmu_vm *vm);
void vmmu_nested_vcpu_destroy(struct vmmu_vcpu *vcpu);

/* MMU front: is the vCPU in L2 (its root is an EPT02 root)? */
bool vmmu_nested_vcpu_in_l2(const struct vmmu_vcpu *vcpu);
/* L2's root is missing or obsolete. */
bool vmmu_nested_root_stale(struct vmmu_vcpu *vcpu);
/* Load L2's root (no lock held).  0, -ENOMEM. */
int vmmu_nested_load_root(struct vmmu_vcpu *vcpu);
/* Fill the root part of a guest entry for L2. */
void vmmu_nested_fill_entry(struct vmmu_vcpu *vcpu, struct vmmu_guest_entry *entry);
/* The page fault of a vCPU in L2: enum vmmu_pf_result, VMMU_PF_NESTED_EXIT
 * or a negative errno. */
int vmmu_nested_page_fault(struct vmmu_vcpu *vcpu, uint64_t gpa, uint64_t exit_qual);

/*
 * The TDP fault path, under the MMU lock held for read and in the RCU read
 * section that also installs the leaf, for L1 gfn @fault->gfn: a gfn
 * shadowed as an EPT12 table is never mapped writable (a write returns
 * true: emulate), and no huge leaf covers it.  Lockless (the nested
 * engine's tracking barrier waits for this read section to end).
 */
bool vmmu_nested_tdp_fault_check(struct vmmu_vm *vm, unsigned as, struct vmmu_page_fault *fault);

/* The largest level at most @level with no write-tracked gfn in its frame
 * around @gfn (any lock or none held). */
int vmmu_nested_max_level(struct vmmu_vm *vm, unsigned as, uint64_t gfn, int level);

/* Dispatch: the second engine's side of the entry points.  Each visits the
 * EPT02 roots one at a time under each root's lock, inside whatever MMU
 * lock the caller holds (none is fine), and flushes before returning if it
 * removed an entry (write protection leaves the flush to the caller). */
bool vmmu_nested_active(const struct vmmu_vm *vm);
bool vmmu_nested_zap_gfn_range(struct vmmu_vm *vm, unsigned as, uint64_t start, uint64_t end);
/* Invalidate-all (MMU lock held for write): every EPT02 root becomes
 * obsolete, nothing is zapped.  vmmu_nested_zap_invalidated_roots (MMU
 * lock held for read) then empties the obsolete roots one by one; an
 * emptied root is freed when its last vCPU drops it. */
void vmmu_nested_invalidate_roots(struct vmmu_vm *vm);
void vmmu_nested_zap_invalidated_roots(struct vmmu_vm *vm);
/* Dirty logging of L1 memory: write-protect EPT02 leaves of the range (and
 * zap huge ones: a logged slot is mapped with 4 KiB leaves). */
bool vmmu_nested_wrprot_range(struct vmmu_vm *vm, unsigned as, uint64_t start, uint64_t end);
bool vmmu_nested_wrprot_masked(struct vmmu_vm *vm, unsigned as, uint64_t base, uint64_t mask);
/* Aging: is any EPT02 leaf of the range young?  With @clear, age them. */
bool vmmu_nested_age_gfn_range(struct vmmu_vm *vm, unsigned as, uint64_t start, uint64_t end,
			       bool clear);

/* Eager splitting (split.c).  Split the huge EPT02 leaves of [start, end)
 * into 4 KiB leaves write-protected for logging (with @protect, also
 * write-protect the 4 KiB leaves there).  Slots lock and MMU lock for read
 * held; the MMU lock is dropped around cache top-ups.  0 or -ENOMEM (the
 * leaves left huge are write-protected). */
int vmmu_nested_split_range(struct vmmu_vm *vm, unsigned as, uint64_t start, uint64_t end,
			    bool protect);
/* Slots lock held, or the VM being destroyed. */
void vmmu_nested_free_eager_page_split_caches(struct vmmu_vm *vm);
struct vmmu_nested_stats;
void vmmu_nested_split_stats(struct vmmu_vm *vm, struct vmmu_nested_stats *out);

#endif /* VMMU_NESTED_NESTED_H */
