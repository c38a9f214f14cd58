/* SPDX-License-Identifier: MIT */
/*
 * hw.h - the hardware model: a software processor for vmmu's tables.
 *
 * A vmmu_hw_vcpu is what a physical CPU is to KVM: it walks the EPT tables
 * vmmu built (reading entries atomically, setting Accessed and Dirty with a
 * locked compare-and-exchange only when the entry allows the access), keeps
 * what it walked in a private TLB, reads and writes the host memory behind
 * the translation, and on an EPT violation exits to vmmu's fault handler
 * and retries.  It acknowledges remote TLB flushes by leaving guest mode.
 *
 * It is kept apart from the MMU (libvmmu_hw, this header): an emulator can
 * use vmmu with its own CPU through the processor interface of <vmmu/vmmu.h>.
 *
 * One thread drives a hw vCPU at a time.  Accesses enter guest mode on
 * demand and stay in it; call vmmu_hw_guest_exit() before blocking (on a
 * barrier, a lock, I/O), or flushes from other threads will wait for you.
 */
#ifndef VMMU_HW_H
#define VMMU_HW_H

#include <vmmu/vmmu.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vmmu_hw_vcpu;

struct vmmu_hw_config {
	unsigned tlb_entries; /* power of two; 0 = 512 */
};

/* 0, -EINVAL (NULL vcpu or bad tlb size), -ENOMEM. */
int vmmu_hw_vcpu_create(struct vmmu_vcpu *vcpu, const struct vmmu_hw_config *cfg,
			struct vmmu_hw_vcpu **out);
/* Leaves guest mode and frees the model (not the vmmu vCPU).  0, -EINVAL. */
int vmmu_hw_vcpu_destroy(struct vmmu_hw_vcpu *hw);

/* Enter / leave guest mode explicitly.  0, -EINVAL, -ENOMEM (enter). */
int vmmu_hw_guest_enter(struct vmmu_hw_vcpu *hw);
int vmmu_hw_guest_exit(struct vmmu_hw_vcpu *hw);

/*
 * Guest accesses at guest-physical @gpa, of @len bytes (may cross pages).
 * Naturally aligned 1, 2, 4 and 8 byte accesses are single atomic accesses
 * to host memory, as on x86.
 *   0        done
 *   -EFAULT  the access hit no memslot (MMIO) or wrote a read-only slot;
 *            the model has no devices to emulate it
 *   -EINVAL  bad arguments, or gpa beyond the guest-physical address width
 *   -ENOMEM  vmmu could not allocate what the fault needed
 */
int vmmu_hw_read(struct vmmu_hw_vcpu *hw, uint64_t gpa, void *buf, size_t len);
int vmmu_hw_write(struct vmmu_hw_vcpu *hw, uint64_t gpa, const void *buf, size_t len);
int vmmu_hw_fetch(struct vmmu_hw_vcpu *hw, uint64_t gpa, void *buf, size_t len);

/* Drop every cached translation of this vCPU (INVEPT).  0, -EINVAL. */
int vmmu_hw_tlb_flush(struct vmmu_hw_vcpu *hw);

struct vmmu_hw_stats {
	uint64_t accesses;
	uint64_t tlb_hits;
	uint64_t walks;          /* page walks (TLB misses and retries) */
	uint64_t ept_violations; /* exits to vmmu_vcpu_page_fault() */
	uint64_t ad_updates;     /* A/D bits set by the walker */
	uint64_t tlb_flushes;    /* whole-TLB flushes (local and remote) */
	uint64_t exits;          /* guest-mode exits of any kind */
};

/* 0, -EINVAL. */
int vmmu_hw_stats(struct vmmu_hw_vcpu *hw, struct vmmu_hw_stats *out);

/* The vmmu vCPU this model drives. */
struct vmmu_vcpu *vmmu_hw_vcpu_mmu(struct vmmu_hw_vcpu *hw);

#ifdef __cplusplus
}
#endif

#endif /* VMMU_HW_H */
