/* SPDX-License-Identifier: MIT */
/*
 * mmu_internal.h - the objects behind the public handles, shared by the
 * layers of the library (memslots, TDP MMU, MMU front, VM).
 */
#ifndef VMMU_MMU_INTERNAL_H
#define VMMU_MMU_INTERNAL_H

#include <vmmu/hostmem.h>
#include <vmmu/paging.h>
#include <vmmu/vmmu.h>

#include "guest_walk.h"

#include "platform/cache.h"
#include "platform/platform.h"
#include "platform/pool.h"
#include "platform/rcu.h"
#include "platform/rwlock.h"
#include "spte.h"
#include "tdp_iter.h"

#include <pthread.h>
#include <urcu/list.h>

/*
 * What a page table means.  Two tables are interchangeable only if their
 * roles (and gfns) match; a root is shared by every vCPU whose root role
 * matches.
 */
union vmmu_sp_role {
	uint32_t word;
	struct {
		uint32_t level : 4;
		uint32_t smm : 1;         /* address space 1 */
		uint32_t ad_disabled : 1; /* entries use the A/D-disabled type */
		uint32_t direct : 1;      /* maps gfns directly (TDP) */
		uint32_t guest_mode : 1;  /* belongs to a nested guest */
		/*
		 * Shadow paging only (always 0 in a TDP root role): the guest
		 * format and the control bits that change how shadow entries
		 * must be built.  In a cpu role they describe the guest.
		 */
		uint32_t has_4_byte_gpte : 1; /* 32-bit non-PAE guest tables */
		uint32_t cr0_wp : 1;
		uint32_t efer_nx : 1;
		uint32_t smep_andnot_wp : 1;
		uint32_t smap_andnot_wp : 1;
		uint32_t reserved : 19;
	};
};

/*
 * Metadata of one page-table page (KVM's struct kvm_mmu_page), kept in the
 * pool's parallel array.  At most 64 bytes: issue 2's budget.
 */
struct vmmu_sp {
	struct vmmu_vm *vm;
	uint64_t gfn;             /* first gfn this table covers */
	union vmmu_sp_role role;
	int32_t root_refcount;    /* roots only */
	struct cds_list_head link; /* roots: the VM's root list */
	vmmu_rcu_head rcu_head;
	uint8_t invalid;          /* roots: obsolete, no new entries */
};
static_assert(sizeof(struct vmmu_sp) <= 64, "page-table metadata over budget");

struct vmmu_memslot {
	uint64_t base_gfn;
	uint64_t npages;
	uint64_t userspace_addr;
	uint32_t flags;
	uint16_t id;
	uint16_t as_id;
	bool invalid; /* being deleted or moved: faults retry */
	/*
	 * KVM's lpage_info: for 2M (index 0) and 1G (index 1), one counter per
	 * huge frame overlapping the slot; non-zero forbids a leaf of that size
	 * there.  Frames sticking out of the slot, and all frames when gfn and
	 * hva are not congruent modulo the size, are disallowed for good.
	 */
	int32_t *disallow_lpage[SPTE_MAX_HUGEPAGE_LEVEL - 1];
	/*
	 * Dirty logging (LOG_DIRTY_PAGES without a dirty ring): one bit per
	 * page, set atomically by vCPUs, taken by get/clear dirty log.  NULL
	 * when the slot is not logged.
	 */
	uint64_t *dirty_bitmap;
};

static inline bool memslot_dirty_logged(const struct vmmu_memslot *slot)
{
	return slot->flags & VMMU_MEM_LOG_DIRTY_PAGES;
}

static inline uint64_t memslot_bitmap_words(const struct vmmu_memslot *slot)
{
	return (slot->npages + 63) / 64;
}

static inline uint64_t lpage_index(const struct vmmu_memslot *slot, uint64_t gfn, int level)
{
	unsigned shift = (unsigned)(level - 1) * SPTE_LEVEL_BITS;

	return (gfn >> shift) - (slot->base_gfn >> shift);
}

/* One address space's slots, sorted by base_gfn, replaced as a whole. */
struct vmmu_memslots {
	uint64_t generation;
	vmmu_rcu_head rcu_head;
	int nr;
	struct vmmu_memslot *slots[];
};

/* Requests to a vCPU, serviced when it (re)enters guest mode. */
#define VMMU_REQ_TLB_FLUSH (1ull << 0)
#define VMMU_REQ_RELOAD_ROOT (1ull << 1)
#define VMMU_REQ_FLUSH_PML (1ull << 2) /* only makes the vCPU exit once */

/* The page-modification log the processor fills in dirty-bit mode. */
#define VMMU_PML_ENTRIES 512
/* Dirty ring slots kept free beyond the soft limit: one PML buffer and a
 * margin for the faults of one entry. */
#define VMMU_DIRTY_RING_RESERVED (64 + VMMU_PML_ENTRIES)

struct vmmu_dirty_ring {
	struct vmmu_dirty_gfn *gfns;
	uint32_t size;        /* entries, a power of two */
	uint32_t soft_limit;  /* entries in use at which the vCPU must exit */
	uint32_t dirty_index; /* next to fill; written by the vCPU thread */
	uint32_t reset_index; /* next to reset; written under slots_lock */
};

/* vcpu->mode: low bit set while in guest mode; the rest counts exits. */
#define VMMU_MODE_IN_GUEST 1ull

/* One cached root: the guest pgd it was loaded for, and a reference. */
struct vmmu_root_info {
	uint64_t pgd;
	struct vmmu_sp *sp;
};

/*
 * The cpu role: the guest's paging mode.  base uses the page-role layout
 * (level = the guest's root level, 0 with paging off); ext holds the bits
 * that only matter to the guest walk.  Compared as one word.
 */
union vmmu_cpu_role {
	uint64_t word;
	struct {
		union vmmu_sp_role base;
		union {
			uint32_t word;
			struct {
				uint32_t valid : 1;
				uint32_t cr0_pg : 1;
				uint32_t cr4_pae : 1;
				uint32_t cr4_pse : 1;
				uint32_t cr4_smep : 1;
				uint32_t cr4_smap : 1;
				uint32_t cr4_pke : 1;
				uint32_t cr4_la57 : 1;
				uint32_t efer_lma : 1;
				uint32_t reserved : 23;
			};
		} ext;
	};
};

/*
 * The vCPU's MMU context (mmu_role.c, paging.c), touched only by the vCPU
 * thread except for the stats (relaxed atomics).
 */
struct vmmu_mmu_ctx {
	struct vmmu_paging_state regs;
	uint64_t paging_gen;
	union vmmu_cpu_role cpu_role;
	union vmmu_sp_role root_role;
	uint64_t root_pgd;   /* pgd vcpu->root was loaded for */
	/* Most recently used first; empty slots have sp == NULL. */
	struct vmmu_root_info prev_roots[VMMU_NUM_PREV_ROOTS];
	bool walker_stale;   /* walker must be recomputed from regs */
	struct vmmu_gw_role walker;
	struct vmmu_vcpu_mmu_stats stats;
};

struct vmmu_vcpu {
	struct vmmu_vm *vm;
	unsigned id;
	unsigned as_id;
	struct vmmu_sp *root; /* owned by the vCPU thread; a reference */
	/* MMU context: roles, previous roots, guest paging state. */
	struct vmmu_mmu_ctx mmu;

	/* Written by other threads, polled by the vCPU: own cache line. */
	uint64_t requests __attribute__((aligned(VMMU_CACHELINE)));
	uint64_t mode __attribute__((aligned(VMMU_CACHELINE)));

	/* Only the vCPU thread writes these (relaxed atomics for readers). */
	struct vmmu_vcpu_stats stats __attribute__((aligned(VMMU_CACHELINE)));
	struct vmmu_cache pt_cache;

	/* Dirty logging, touched by the vCPU thread only (the processor
	 * fills the PML buffer in guest mode, vmmu drains it on exit). */
	uint64_t *pml;     /* VMMU_PML_ENTRIES gpas; NULL in write-protect mode */
	unsigned pml_count;
	struct vmmu_dirty_ring ring; /* gfns == NULL without a dirty ring */

	/*
	 * Pre-faulting (issue 6).  interrupt_pending is vmmu_vcpu_interrupt()'s
	 * "signal": set by any thread, consumed by the vCPU call it stops.
	 * mmu_not_tdp says the vCPU's MMU is not the TDP fault handler (shadow
	 * paging, a nested guest), where a pre-fault's addresses would not be
	 * plain GPAs; nothing sets it yet except tests, until MMU roles say it.
	 */
	uint32_t interrupt_pending;
	bool mmu_not_tdp;
	/* Nested (src/nested/): L2 state, NULL until the vCPU first enters L2. */
	struct vmmu_nested_vcpu *nested;
};

#define VMMU_STAT_SHARDS 16
struct vmmu_stat_shard {
	int64_t pages[SPTE_MAX_HUGEPAGE_LEVEL]; /* present leaves by level */
	int64_t pt_pages;                        /* linked page-table pages */
	int64_t remote_tlb_flush;
	int64_t remote_tlb_flush_requests;
	int64_t roots_built; /* roots allocated (not found on the list) */
} __attribute__((aligned(VMMU_CACHELINE)));

struct vmmu_vm {
	struct vmmu_vm_config cfg;
	int root_level;
	bool ad_enabled;
	/* Roles (mmu_role.c): vCPUs use two-dimensional paging (always, until
	 * a shadow MMU exists), and the guest's MAXPHYADDR. */
	bool tdp_enabled;
	uint8_t guest_maxphyaddr;

	struct vmmu_pool pool;
	struct vmmu_rwlock mmu_lock;

	pthread_mutex_t slots_lock; /* serializes memslot updates */
	struct vmmu_memslots *memslots[VMMU_ADDRESS_SPACES]; /* RCU */

	pthread_mutex_t roots_lock; /* modifications of the root list */
	struct cds_list_head roots; /* RCU list of root sps */

	pthread_mutex_t vcpus_lock;
	struct vmmu_vcpu *vcpus[VMMU_MAX_VCPUS];

	struct vmmu_hostmem *hostmem;

	/* Dirty logging (dirty_log.c). */
	bool dirty_log_dbit;  /* D bits + PML; false: write protection */
	bool eager_split;     /* split huge pages when logging starts */
	bool manual_protect;  /* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 bit 0 */
	bool initially_set;   /* ... bit 1 */

	/* Memslot swaps wait while notifier invalidations are active, so that
	 * start and end see the same slots (KVM's mn_active_invalidate_count). */
	pthread_mutex_t mn_lock;
	pthread_cond_t mn_cond;
	int mn_active_invalidate_count;

	/* MMU-notifier invalidation state (KVM's mmu_invalidate_*), changed
	 * with the MMU lock held for write. */
	uint64_t mmu_invalidate_seq;
	int64_t mmu_invalidate_in_progress;
	uint64_t mmu_invalidate_range_start;
	uint64_t mmu_invalidate_range_end;

	/* Tests only: called by the fault path right after it has taken its
	 * invalidation-sequence snapshot and looked up the host page, before
	 * it takes the MMU lock, to replay races deterministically. */
	void (*test_fault_hook)(struct vmmu_vcpu *vcpu, uint64_t gfn, void *arg);
	void *test_fault_hook_arg;
	/* Tests only: called by the lockless fault path after it has read the
	 * last entry and before its compare-and-exchange. */
	void (*test_fast_pf_hook)(struct vmmu_vcpu *vcpu, uint64_t *sptep, void *arg);
	void *test_fast_pf_hook_arg;

	/*
	 * Fast invalidation (zap_fast.c): a thread, started on first use,
	 * empties obsolete roots; zap_requested/zap_done count its passes.
	 */
	pthread_mutex_t zap_lock;
	pthread_cond_t zap_cond;
	pthread_t zap_thread;
	bool zap_started, zap_stop;
	uint64_t zap_requested, zap_done;

	/* Stats updated from many threads, sharded by thread so that vCPUs
	 * faulting in parallel do not bounce one cache line. */
	struct vmmu_stat_shard shards[VMMU_STAT_SHARDS];

	/* The nested engine (src/nested/), NULL until a vCPU first enters L2. */
	struct vmmu_nested *nested;
};

static inline uint64_t *sp_spt(const struct vmmu_vm *vm, const struct vmmu_sp *sp)
{
	size_t idx = (size_t)((const char *)sp - vm->pool.meta) / vm->pool.meta_size;
	return (uint64_t *)vmmu_pool_page(&vm->pool, (uint32_t)idx);
}

static inline struct vmmu_sp *spt_to_sp(const struct vmmu_vm *vm, const uint64_t *spt)
{
	return (struct vmmu_sp *)vmmu_pool_meta(&vm->pool, spt);
}

static inline uint64_t vmmu_max_gfn(const struct vmmu_vm *vm)
{
	return 1ull << ((unsigned)vm->root_level * SPTE_LEVEL_BITS);
}

/* memslot.c */
int vmmu_memslots_init(struct vmmu_vm *vm);
void vmmu_memslots_destroy(struct vmmu_vm *vm);
/* Under vmmu_rcu_read_lock(): the slot holding @gfn, or NULL. */
struct vmmu_memslot *vmmu_gfn_to_memslot(struct vmmu_vm *vm, unsigned as_id, uint64_t gfn);

static inline uint64_t memslot_gfn_to_hva(const struct vmmu_memslot *slot, uint64_t gfn)
{
	return slot->userspace_addr + ((gfn - slot->base_gfn) << VMMU_PAGE_SHIFT);
}

/* vm.c: page-table page caches of vCPUs (and of direct-build workers) */
extern const struct vmmu_cache_ops vmmu_pt_cache_ops;

/* prefault.c: build the whole map of a new VMMU_MEM_DIRECT_BUILD slot.
 * Called with slots_lock held, after the slot is published.  0, -ENOMEM,
 * -EFAULT. */
int vmmu_direct_build(struct vmmu_vm *vm, struct vmmu_memslot *slot);

/* hostmem.c */
int vmmu_hostmem_attach(struct vmmu_hostmem *hm, struct vmmu_vm *vm);
void vmmu_hostmem_detach(struct vmmu_hostmem *hm, struct vmmu_vm *vm);
/* The fault path's host lookup: bring the page at @hva in (demand paging
 * blocks here until the page is filled; no MMU lock may be held), then
 * return its host level as vmmu_hostmem_level() does. */
int vmmu_hostmem_fault_in(struct vmmu_hostmem *hm, uint64_t hva);
/* For pre-fault runs: the end of what, from @hva on, has one backing and
 * one writability and needs no per-page fault-in (for demand-paged memory
 * that is @hva's page alone), or 0 if @hva is not memory of @hm. */
uint64_t vmmu_hostmem_extent_end(struct vmmu_hostmem *hm, uint64_t hva);

/* tdp_mmu.c */
int vmmu_tdp_mmu_init(struct vmmu_vm *vm);
void vmmu_tdp_mmu_uninit(struct vmmu_vm *vm);
union vmmu_sp_role vmmu_root_role(struct vmmu_vm *vm, unsigned as_id);
int vmmu_tdp_mmu_get_root(struct vmmu_vm *vm, union vmmu_sp_role role, struct vmmu_sp **out);
void vmmu_tdp_mmu_put_root(struct vmmu_vm *vm, struct vmmu_sp *root);
bool vmmu_tdp_mmu_zap_leafs(struct vmmu_vm *vm, unsigned as_id, uint64_t start, uint64_t end,
			    bool flush);
void vmmu_tdp_mmu_invalidate_all_roots(struct vmmu_vm *vm);
void vmmu_tdp_mmu_zap_invalidated_roots(struct vmmu_vm *vm);

/* zap_fast.c */
void vmmu_zap_fast_init(struct vmmu_vm *vm);
void vmmu_zap_fast_destroy(struct vmmu_vm *vm);
void vmmu_mmu_zap_all_fast(struct vmmu_vm *vm);
/* Wait until the zap thread has done every pass asked before the call. */
void vmmu_zap_fast_flush(struct vmmu_vm *vm);

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
int vmmu_tdp_mmu_map(struct vmmu_vcpu *vcpu, struct vmmu_page_fault *fault);

/* mmu_role.c */
void vmmu_mmu_init_vcpu(struct vmmu_vcpu *vcpu);
void vmmu_mmu_destroy_vcpu(struct vmmu_vcpu *vcpu);
int vmmu_mmu_load_root(struct vmmu_vcpu *vcpu);
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
int vmmu_tdp_mmu_split_huge_pages(struct vmmu_vm *vm, unsigned as_id, uint64_t start,
				  uint64_t end);
/*
 * Logging starts: split huge leaves in [start, end) to 4 KiB with pieces
 * built protected, and protect every 4 KiB leaf there, in one walk (huge
 * leaves that cannot be split for want of tables are write-protected).
 * Sets *@flush when a TLB flush is needed.  0 or -ENOMEM (not fatal).
 */
int vmmu_tdp_mmu_split_and_protect(struct vmmu_vm *vm, unsigned as_id, uint64_t start,
				   uint64_t end, bool *flush);
/* Collapse tables inside @slot back into huge leaves where legal, under the
 * read lock; flushes before returning.  Returns leaves recovered. */
uint64_t vmmu_tdp_mmu_recover_huge_pages(struct vmmu_vm *vm, const struct vmmu_memslot *slot);

/* dirty_log.c */
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
void vmmu_mark_page_dirty(struct vmmu_vcpu *vcpu, const struct vmmu_memslot *slot,
			  uint64_t gfn);
/* On every exit from guest mode, on the vCPU thread. */
void vmmu_vcpu_flush_pml(struct vmmu_vcpu *vcpu);
bool vmmu_dirty_ring_soft_full(const struct vmmu_vcpu *vcpu);

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
void vmmu_flush_remote_tlbs(struct vmmu_vm *vm);
void vmmu_make_all_vcpus_request(struct vmmu_vm *vm, uint64_t req, bool wait);
static inline void vmmu_vcpu_stat_inc(uint64_t *counter)
{
	__atomic_store_n(counter, __atomic_load_n(counter, __ATOMIC_RELAXED) + 1,
			 __ATOMIC_RELAXED);
}

unsigned vmmu_stat_shard_index(void);

/* Add @delta to the VM-wide stat @field in this thread's shard. */
#define vmmu_vm_stat_add(vm, field, delta)                                                 \
	__atomic_add_fetch(&(vm)->shards[vmmu_stat_shard_index()].field, (delta),         \
			   __ATOMIC_RELAXED)

/* Sum of a VM-wide stat over all shards. */
#define vmmu_vm_stat_read(vm, field)                                                       \
	({                                                                                 \
		int64_t __sum = 0;                                                         \
		for (unsigned __i = 0; __i < VMMU_STAT_SHARDS; __i++)                      \
			__sum += __atomic_load_n(&(vm)->shards[__i].field, __ATOMIC_RELAXED); \
		__sum;                                                                     \
	})

#endif /* VMMU_MMU_INTERNAL_H */
