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
 * With guest paging on (<vmmu/paging.h>: CR0.PG set through
 * vmmu_hw_set_paging() or vmmu_vcpu_set_paging()), addresses are guest
 * virtual and every access is a 2-D walk on a TLB miss: the guest's page
 * tables are read from guest memory at guest-physical addresses, each of
 * them translated through vmmu's EPT tables (and faulted in by vmmu like
 * any other guest-physical access), the guest's Accessed and Dirty bits set
 * with a locked compare-and-exchange, then the final guest-physical address
 * goes through EPT.  A second TLB caches the combined translation.
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

#include <vmmu/paging.h>
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
 * Guest accesses of @len bytes (may cross pages) at @addr: a guest-physical
 * address while guest paging is off, a guest virtual one while it is on
 * (user-mode accesses when the paging state's cpl is 3, supervisor ones
 * otherwise, with its EFLAGS.AC).  Naturally aligned 1, 2, 4 and 8 byte
 * accesses are single atomic accesses to host memory, as on x86.  With
 * paging off the whole guest-physical space is reachable, not only the
 * low 4 GiB a real processor would reach.
 *   0        done
 *   -EACCES  the guest took an exception (paging on): #PF or, for a
 *            non-canonical address, #GP; vmmu_hw_last_fault() says which.
 *            Nothing was accessed, no A/D bit was set by the failing page.
 *   -EFAULT  the access (or a guest page-table entry it needed) hit no
 *            memslot (MMIO) or wrote a read-only slot; the model has no
 *            devices to emulate it
 *   -EINVAL  bad arguments, or (paging off) an address beyond the
 *            guest-physical address width; checked before anything else
 *   -ENOMEM  vmmu could not allocate what the fault needed
 *   -ENOBUFS (dirty rings only) the vCPU's dirty ring is soft-full: the
 *            model could not enter (or re-enter, after a kick or a
 *            PML-full exit) guest mode, or vmmu refused the EPT violation
 *            the access caused.  The page being accessed was not touched
 *            (earlier pages of a page-crossing access may have been);
 *            harvest and reset the ring, then retry.
 */
int vmmu_hw_read(struct vmmu_hw_vcpu *hw, uint64_t addr, void *buf, size_t len);
int vmmu_hw_write(struct vmmu_hw_vcpu *hw, uint64_t addr, const void *buf, size_t len);
int vmmu_hw_fetch(struct vmmu_hw_vcpu *hw, uint64_t addr, void *buf, size_t len);

/*
 * The guest writes its paging state (MOV to CR0/CR3/CR4, WRMSR EFER,
 * WRPKRU, a change of CPL or EFLAGS.AC): the model leaves guest mode and
 * hands the state to vmmu_vcpu_set_paging(), whose errors it returns
 * (-EINVAL: refused, nothing changed).  The model takes the new state at
 * its next guest entry, as it does after a vmmu_vcpu_set_paging() from the
 * VMM, and then drops its cached virtual translations if CR3, CR0.PG/PE,
 * CR4.PSE/PAE/LA57/PKE/PGE/PCIDE, EFER.LMA or EFER.NXE changed.  Changes of
 * CR0.WP, SMEP, SMAP, PKRU, EFLAGS.AC or CPL flush nothing: cached
 * translations keep the guest's rights and are checked again at each use.
 */
int vmmu_hw_set_paging(struct vmmu_hw_vcpu *hw, const struct vmmu_paging_state *state);

/* The last exception an access returned -EACCES for. */
struct vmmu_hw_fault {
	uint8_t vector; /* VMMU_EXC_PF or VMMU_EXC_GP */
	uint32_t error_code; /* #PF error code (VMMU_PFERR_*) */
	uint64_t address; /* the faulting guest virtual address (CR2) */
};
/* 0, -EINVAL. */
int vmmu_hw_last_fault(struct vmmu_hw_vcpu *hw, struct vmmu_hw_fault *out);

/* INVLPG: drop the cached translation of the page holding @gva.  0, -EINVAL. */
int vmmu_hw_invlpg(struct vmmu_hw_vcpu *hw, uint64_t gva);

/* Drop every cached translation of this vCPU (INVEPT).  0, -EINVAL. */
int vmmu_hw_tlb_flush(struct vmmu_hw_vcpu *hw);

struct vmmu_hw_stats {
	uint64_t accesses;
	uint64_t tlb_hits;
	uint64_t walks; /* page walks (TLB misses and retries) */
	uint64_t ept_violations; /* exits to vmmu_vcpu_page_fault() */
	uint64_t ad_updates; /* A/D bits set by the walker */
	uint64_t tlb_flushes; /* whole-TLB flushes (local and remote) */
	uint64_t exits; /* guest-mode exits of any kind */
	uint64_t gva_walks; /* 2-D walks (guest paging on, TLB misses) */
	uint64_t guest_ad_updates; /* guest A/D bits set in guest memory */
	uint64_t guest_faults; /* exceptions reported with -EACCES */
	uint64_t gva_tlb_flushes; /* flushes of the virtual TLB (any cause) */
};

/* 0, -EINVAL. */
int vmmu_hw_stats(struct vmmu_hw_vcpu *hw, struct vmmu_hw_stats *out);

/*
 * Nested virtualization (<vmmu/nested.h>): the model's VM entry to L2 with
 * EPT pointer @eptp, VM exit to L1, and L1's INVEPT.  Each leaves guest mode
 * and calls vmmu_vcpu_nested_enter / _leave / vmmu_vcpu_invept, whose
 * errors it returns, and empties the model's TLBs (translations of L1 and
 * L2 never mix).  In L2, vmmu_hw_read/write/fetch take L2 guest-physical
 * addresses, or L2 virtual ones once L2's paging is on (vmmu_hw_set_paging
 * in L2 sets L2's state: the 2-D walk reads L2's tables at L2 guest-physical
 * addresses through EPT02), and return -EXDEV when the access (or one of
 * L2's table reads) causes an EPT violation or misconfiguration for L1
 * (vmmu_vcpu_nested_last_exit() says which; nothing was accessed).
 * In L1, a write to a page vmmu write-protects because it holds EPT12
 * tables is performed through vmmu_vcpu_emulate_write(), as an emulator
 * would.
 */
int vmmu_hw_nested_enter(struct vmmu_hw_vcpu *hw, uint64_t eptp);
int vmmu_hw_nested_leave(struct vmmu_hw_vcpu *hw);
int vmmu_hw_invept(struct vmmu_hw_vcpu *hw, unsigned type, uint64_t eptp);

/* The vmmu vCPU this model drives. */
struct vmmu_vcpu *vmmu_hw_vcpu_mmu(struct vmmu_hw_vcpu *hw);

#ifdef __cplusplus
}
#endif

#endif /* VMMU_HW_H */
