/* SPDX-License-Identifier: MIT */
/*
 * dirty_log.h - dirty logging (dirty_log.c): the per-vCPU dirty ring and
 * page-modification log, the per-slot bitmaps' life cycle, and logging a
 * page from the fault paths.
 */
#ifndef VMMU_DIRTY_LOG_H
#define VMMU_DIRTY_LOG_H

#include <vmmu/vmmu.h>

#include <stdbool.h>
#include <stdint.h>

struct vmmu_vm;
struct vmmu_vcpu;
struct vmmu_memslot;

/* The page-modification log the processor fills in dirty-bit mode. */
#define VMMU_PML_ENTRIES 512
/* Dirty ring slots kept free beyond the soft limit: one PML buffer and a
 * margin for the faults of one entry. */
#define VMMU_DIRTY_RING_RESERVED (64 + VMMU_PML_ENTRIES)

struct vmmu_dirty_ring {
	struct vmmu_dirty_gfn *gfns;
	uint32_t size; /* entries, a power of two */
	uint32_t soft_limit; /* entries in use at which the vCPU must exit */
	uint32_t dirty_index; /* next to fill; written by the vCPU thread */
	uint32_t reset_index; /* next to reset; written under slots_lock */
};

int vmmu_dirty_log_vm_init(struct vmmu_vm *vm);
int vmmu_dirty_log_vcpu_init(struct vmmu_vcpu *vcpu);
void vmmu_dirty_log_vcpu_destroy(struct vmmu_vcpu *vcpu);
/* A new slot object (create, move, flag change): its bitmap.  0, -ENOMEM. */
int vmmu_dirty_log_slot_init(struct vmmu_vm *vm, struct vmmu_memslot *slot);
/* After the slots holding @new (and no longer @old) are published and a
 * grace period has passed: start or stop logging in the tables. */
void vmmu_dirty_log_slot_commit(struct vmmu_vm *vm, const struct vmmu_memslot *old,
				const struct vmmu_memslot *new_);
/* A writable 4 KiB mapping of @gfn was made: log it (bitmap or ring). */
void vmmu_mark_page_dirty(struct vmmu_vcpu *vcpu, const struct vmmu_memslot *slot, uint64_t gfn);
/* The same without the early return when the bit is set already: always a
 * release read-modify-write, which the harvest's exchange (acquire)
 * synchronizes with.  For a leaf made writable where the harvest finds its
 * table by state read without a lock (nested roots skipped by span). */
void vmmu_mark_page_dirty_sync(struct vmmu_vcpu *vcpu, const struct vmmu_memslot *slot,
			       uint64_t gfn);
/* On every exit from guest mode, on the vCPU thread. */
void vmmu_vcpu_flush_pml(struct vmmu_vcpu *vcpu);
bool vmmu_dirty_ring_soft_full(const struct vmmu_vcpu *vcpu);

#endif /* VMMU_DIRTY_LOG_H */
