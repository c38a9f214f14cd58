/* SPDX-License-Identifier: MIT */
/*
 * nested.h - nested virtualization: an L1 guest hypervisor runs an L2 guest
 * with its own EPT tables (EPT12, in L1's memory).
 *
 * The processor walks one EPT tree, so while a vCPU runs L2 vmmu gives it
 * EPT02: tables mapping L2 guest-physical addresses straight to host memory,
 * built by composing L1's EPT12 with vmmu's own view of L1 (memslots, host
 * pages, dirty logging).  These calls are what a VM entry from vmcs12, a VM
 * exit to L1 and L1's INVEPT do to the MMU (KVM's nested_ept_init_mmu_context,
 * nested_ept_uninit_mmu_context and handle_invept).
 *
 * While a vCPU is in L2, vmmu_vcpu_page_fault() takes L2 guest-physical
 * addresses and may return VMMU_PF_NESTED_EXIT: EPT12 does not allow the
 * access, and vmmu_vcpu_nested_last_exit() gives the EPT violation (or
 * misconfiguration) the processor would report to L1, for the caller to
 * reflect.  vmmu_vcpu_pre_fault_memory() returns -EOPNOTSUPP in L2.
 *
 * Write tracking: every EPT12 table page that vmmu shadows is mapped
 * read-only in L1's own map.  An L1 write to it exits (the fault returns
 * VMMU_PF_EMULATE) and the caller performs it with vmmu_vcpu_emulate_write(),
 * which also drops the EPT02 entries derived from what it overwrote.
 * Writes to a tracked page that do not come from a vCPU (the host writing
 * L1's memory directly) are not seen, as in KVM: after such a write, L1 must
 * execute INVEPT (vmmu_vcpu_invept) for the change to take effect.
 *
 * All calls are vCPU calls: on the vCPU's thread, outside guest mode.
 */
#ifndef VMMU_NESTED_H
#define VMMU_NESTED_H

#include <vmmu/vmmu.h>

#ifdef __cplusplus
extern "C" {
#endif

/* EPT pointer fields (SDM vol. 3, 25.6.11). */
#define VMMU_EPTP_MT_UC 0ull
#define VMMU_EPTP_MT_WB 6ull
#define VMMU_EPTP_WALK_4 (3ull << 3) /* page-walk length 4 */
#define VMMU_EPTP_WALK_5 (4ull << 3) /* page-walk length 5 */
#define VMMU_EPTP_AD (1ull << 6) /* EPT12 Accessed/Dirty flags enabled */

/* What vmmu_vcpu_page_fault() returns in L2 when the exit belongs to L1. */
#define VMMU_PF_NESTED_EXIT 4

/*
 * VM entry to L2 with vmcs12's EPT pointer @eptp: bits 2:0 memory type (UC
 * or WB), 5:3 walk length minus one (3 or 4), bit 6 A/D enable, bits 11:7
 * zero, 51:12 the root table's L1 guest-physical address, 63:52 zero (and
 * the address below the VM's guest-physical width).  The vCPU then runs on
 * the EPT02 root of (@eptp, role), taken from its previous-roots cache when
 * L1 ran that L2 before; its TLB is flushed.  The vCPU's paging state
 * (<vmmu/paging.h>) becomes L2's, starting with paging off: set vmcs12's
 * guest CR0/CR3/CR4/EFER with vmmu_vcpu_set_paging() after this call.  L1's
 * paging state is saved and comes back at vmmu_vcpu_nested_leave().
 * vmmu_vcpu_translate() returns -EOPNOTSUPP in L2.
 *   0; -EINVAL (NULL, bad EPTP, vCPU in guest mode); -EBUSY (already in L2);
 *   -ENOMEM.  Nothing changes on error.
 */
int vmmu_vcpu_nested_enter(struct vmmu_vcpu *vcpu, uint64_t eptp);

/* VM exit to L1: the vCPU runs on L1's root again (the EPT02 root stays in
 * the previous-roots cache).  0; -EINVAL (NULL, not in L2, in guest mode). */
int vmmu_vcpu_nested_leave(struct vmmu_vcpu *vcpu);

/*
 * L1's INVEPT.  VMMU_INVEPT_SINGLE: the vCPU drops its EPT02 roots for
 * @eptp (current and cached); VMMU_INVEPT_GLOBAL: all its EPT02 roots (@eptp
 * ignored).  A dropped root that no other vCPU uses is freed, so the next L2
 * entry rebuilds it from EPT12 as it is now (this is what makes host writes
 * to EPT12 visible); the vCPU's TLB is flushed.  EPT02 never lags behind
 * EPT12 for writes made through vCPUs (no unsync), so INVEPT has nothing
 * else to do.  Allowed in L1 and in L2 (the current root is reloaded at the
 * next entry).
 *   0; -EINVAL (NULL, unknown type, bad EPTP for SINGLE, in guest mode).
 */
#define VMMU_INVEPT_SINGLE 1
#define VMMU_INVEPT_GLOBAL 2
int vmmu_vcpu_invept(struct vmmu_vcpu *vcpu, unsigned type, uint64_t eptp);

/* The exit an L2 access caused for L1. */
#define VMMU_NESTED_EXIT_EPT_VIOLATION 48 /* VMX basic exit reasons */
#define VMMU_NESTED_EXIT_EPT_MISCONFIG 49
struct vmmu_nested_exit {
	uint32_t reason; /* VMMU_NESTED_EXIT_* */
	uint64_t l2_gpa; /* the guest-physical address of L2's access */
	uint64_t exit_qual; /* EPT violation: bits 0-5 as the processor sets
			      * them (access; R/W/X of the EPT12 translation),
			      * bits 7-8 copied from the fault's exit_qual */
	uint8_t level; /* EPT12 level where the walk stopped */
};
/* The exit of the last VMMU_PF_NESTED_EXIT.  0; -EINVAL (NULL); -ENOENT
 * (there was none since the vCPU entered L2). */
int vmmu_vcpu_nested_last_exit(struct vmmu_vcpu *vcpu, struct vmmu_nested_exit *out);

/*
 * Perform a guest write of @len bytes at L1 guest-physical @gpa as the
 * emulator would, after an access that returned VMMU_PF_EMULATE (in L1)
 * on a page vmmu write-protects because it holds shadowed EPT12 tables:
 * naturally aligned 1, 2, 4 and 8 byte writes are single atomic stores.  If
 * the page holds EPT12 tables vmmu shadows, the EPT02 entries derived from
 * the entries written are dropped and every vCPU's TLB is flushed before
 * the call returns.  The page is logged dirty if its slot is.
 *   0; -EINVAL (NULL, len 0, the write crosses a page, vCPU in L2 or in
 *   guest mode); -EFAULT (no memslot there (MMIO), read-only slot or host
 *   page, or no vCPU of the VM ever entered L2); -EAGAIN (the page is not
 *   write-protected by vmmu (any more): it is ordinary memory, retry the
 *   access itself).  Nothing is written on error.
 */
int vmmu_vcpu_emulate_write(struct vmmu_vcpu *vcpu, uint64_t gpa, const void *buf, size_t len);

/* Is the vCPU in L2?  1, 0, or -EINVAL. */
int vmmu_vcpu_in_l2(struct vmmu_vcpu *vcpu);

/* Nested MMU statistics (KVM's names where they apply). */
struct vmmu_nested_stats {
	uint64_t ept02_pages_4k, ept02_pages_2m, ept02_pages_1g; /* present leaves */
	uint64_t shadow_pages; /* EPT02 table pages in use (roots included) */
	uint64_t roots; /* EPT02 roots alive */
	uint64_t mmu_shadow_zapped; /* table pages zapped */
	uint64_t mmu_pte_write; /* emulated writes to shadowed EPT12 pages */
	uint64_t mmu_cache_miss; /* table pages created (not found by hash) */
	uint64_t mmu_unsync; /* always 0: nested tables are never unsync */
	uint64_t nested_faults; /* faults handled in L2 */
	uint64_t nested_exits; /* of which reflected to L1 */
	uint64_t write_tracked_gfns; /* L1 pages write-protected as EPT12 tables */
	uint64_t rmap_bytes; /* memory of the reverse maps */
	uint64_t meta_bytes; /* shadow-page metadata beyond the 4 KiB pages */
	/* Eager splitting of huge EPT02 leaves (vmmu_vm_set_eager_split): what
	 * the three split caches hold, how often they were topped up (with
	 * the MMU lock dropped), huge leaves split, top-ups that failed. */
	uint64_t split_desc_cache_objs, split_desc_cache_bytes;
	uint64_t split_page_header_cache_objs, split_page_header_cache_bytes;
	uint64_t split_shadow_page_cache_objs, split_shadow_page_cache_bytes;
	uint64_t split_topups, split_huge_pages, split_failures;
	/* Per-root locking (vmmu_vm_config.nested_global_lock): over live and
	 * freed roots, root-lock acquisitions that found the lock taken and
	 * the time spent waiting for it (ns, measured only when contended);
	 * roots created; tracking barriers (a newly shadowed EPT12 page waited
	 * for the TDP faults that might have mapped it writable); nested
	 * faults that retried because an emulated EPT12 write ran during
	 * their walk; roots visited by range operations (notifier, dirty
	 * logging, aging, splits) and roots they skipped without locking
	 * (no leaf in the range). */
	uint64_t root_lock_contended, root_lock_wait_ns;
	uint64_t roots_created, track_barriers, ept12_retries;
	uint64_t cross_root_visits, cross_root_skips;
};
/* 0, -EINVAL (NULL). */
int vmmu_nested_stats(struct vmmu_vm *vm, struct vmmu_nested_stats *out);

/* One EPT02 root (vmmu_nested_root_stats). */
struct vmmu_nested_root_stats {
	uint64_t eptp; /* L1's EPT pointer of the L2 it serves */
	uint64_t faults; /* nested faults handled on it */
	uint64_t lock_acquired; /* its lock taken */
	uint64_t lock_contended; /* ... of which it was held by another thread */
	uint64_t lock_wait_ns; /* time waited for it when contended */
	uint64_t shadow_pages; /* table pages in its tree (root included) */
	uint64_t ept02_pages_4k, ept02_pages_2m, ept02_pages_1g; /* present leaves */
	bool invalid; /* obsolete: no vCPU will load it again */
};
/*
 * The stats of the VM's live EPT02 roots, at most @max of them in @out (in
 * no particular order; a root created or freed meanwhile may be missing or
 * present).  With the global lock (vmmu_vm_config.nested_global_lock) every
 * root reports the one lock's figures as they concern it.
 *   The number of roots written (0..@max); -EINVAL (NULL @vm, or NULL @out
 *   with @max > 0).
 */
int vmmu_nested_root_stats(struct vmmu_vm *vm, struct vmmu_nested_root_stats *out, unsigned max);

/*
 * Eager page splitting at run time (KVM's eager_page_split parameter, per
 * VM; the initial value is !vmmu_vm_config.disable_eager_split).  When on,
 * starting dirty logging on a slot (and, with initially-all-set,
 * vmmu_clear_dirty_log() on a range) splits the huge leaves mapping it, TDP
 * and EPT02 alike, into 4 KiB leaves before returning, so that vCPUs
 * writing the slot do not split them one fault at a time.  The nested
 * engine takes what a split allocates from three per-VM caches (reverse-map
 * records, table headers, table pages), refilled with the MMU lock
 * dropped; they stay allocated when logging stops and are freed when this
 * turns splitting off, by vmmu_vm_shrink() and at VM destruction.  Slots
 * logged from now on follow the new setting.
 *   0; -EINVAL (NULL).
 */
int vmmu_vm_set_eager_split(struct vmmu_vm *vm, bool enable);

/*
 * Memory pressure (KVM's mmu_shrink_scan): free up to @nr_to_scan objects
 * the MMU holds without needing them, and store how many in *@freed: first
 * the objects of the eager-split caches, then obsolete EPT02 roots that
 * vCPUs keep in their previous-roots caches.  Tables a vCPU's current root
 * reaches are never zapped (seed 000: no zapping of in-use shadow pages for
 * memory pressure).  Safe while vCPUs run.
 *   0; -EINVAL (NULL @vm or @freed; nothing freed).
 */
int vmmu_vm_shrink(struct vmmu_vm *vm, uint64_t nr_to_scan, uint64_t *freed);

#ifdef __cplusplus
}
#endif

#endif /* VMMU_NESTED_H */
