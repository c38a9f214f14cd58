/* SPDX-License-Identifier: MIT */
/*
 * vm_internal.h - the objects behind the public handles: the VM (struct
 * vmmu_vm) and the vCPU (struct vmmu_vcpu) with its MMU context, the
 * requests posted to vCPUs, and the VM-wide statistics.
 */
#ifndef VMMU_VM_INTERNAL_H
#define VMMU_VM_INTERNAL_H

#include <vmmu/paging.h>
#include <vmmu/vmmu.h>

#include "dirty_log.h"
#include "guest_walk.h"
#include "memslot.h"
#include "platform/cache.h"
#include "platform/platform.h"
#include "platform/pool.h"
#include "platform/rcu.h"
#include "platform/rwlock.h"
#include "sp.h"

#include <pthread.h>
#include <urcu/list.h>

/* Requests to a vCPU, serviced when it (re)enters guest mode. */
#define VMMU_REQ_TLB_FLUSH (1ull << 0)
#define VMMU_REQ_RELOAD_ROOT (1ull << 1)
#define VMMU_REQ_FLUSH_PML (1ull << 2) /* only makes the vCPU exit once */

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
	uint64_t root_pgd; /* pgd vcpu->root was loaded for */
	/* Most recently used first; empty slots have sp == NULL. */
	struct vmmu_root_info prev_roots[VMMU_NUM_PREV_ROOTS];
	bool walker_stale; /* walker must be recomputed from regs */
	struct vmmu_gw_role walker;
	struct vmmu_vcpu_mmu_stats stats;
};

struct vmmu_vcpu {
	struct vmmu_vm *vm;
	unsigned id;
	unsigned as_id;
	struct vmmu_sp *root; /* owned by the vCPU thread; a reference */
	struct vmmu_memslot_hint slot_hint; /* the vCPU thread's (memslot.h) */
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
	uint64_t *pml; /* VMMU_PML_ENTRIES gpas; NULL in write-protect mode */
	unsigned pml_count;
	struct vmmu_dirty_ring ring; /* gfns == NULL without a dirty ring */

	/*
	 * Pre-faulting (prefault.c).  interrupt_pending is vmmu_vcpu_interrupt()'s
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
	int64_t pt_pages; /* linked page-table pages */
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
	bool dirty_log_dbit; /* D bits + PML; false: write protection */
	bool eager_split; /* split huge pages when logging starts */
	bool manual_protect; /* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 bit 0 */
	bool initially_set; /* ... bit 1 */

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

	/*
	 * Test hooks: the only members that exist for tests alone.  Each is
	 * NULL outside the test that sets it, costs one predicted branch where
	 * it is called, and is set or cleared while no thread that may call it
	 * runs.  Tests reach them through mmu_internal.h as
	 * vm->test_fault_hook and so on (an anonymous struct keeps the names).
	 */
	struct {
		/* Called by the fault path right after it has taken its
		 * invalidation-sequence snapshot and looked up the host page,
		 * before it takes the MMU lock, to replay races
		 * deterministically. */
		void (*test_fault_hook)(struct vmmu_vcpu *vcpu, uint64_t gfn, void *arg);
		void *test_fault_hook_arg;
		/* Called by the lockless fault path after it has read the last
		 * entry and before its compare-and-exchange. */
		void (*test_fast_pf_hook)(struct vmmu_vcpu *vcpu, uint64_t *sptep, void *arg);
		void *test_fast_pf_hook_arg;
		/* Called by the nested fault after its EPT12 walk (with the
		 * root's lock, or the global one, held) and before it builds
		 * any table or installs the EPT02 leaf for @l2_gpa (so before
		 * its root's bit is set in the track node of a table it
		 * shadows anew, and before its ept12_wseq check). */
		void (*test_nested_walk_hook)(struct vmmu_vcpu *vcpu, uint64_t l2_gpa, void *arg);
		void *test_nested_walk_hook_arg;
		/* Called by the TDP fault after its write-tracking check found
		 * nothing against @gfn (MMU lock held for read) and before it
		 * installs the leaf. */
		void (*test_tdp_track_hook)(struct vmmu_vcpu *vcpu, uint64_t gfn, void *arg);
		void *test_tdp_track_hook_arg;
	};

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
	/* The VM's pool keeps exactly one struct vmmu_sp per page (vm.c):
	 * dividing by the constant is a shift, not a division instruction,
	 * on the fault path and at every guest entry. */
	size_t idx = (size_t)((const char *)sp - vm->pool.meta) / sizeof(struct vmmu_sp);
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

/* vm.c: page-table page caches of vCPUs (and of direct-build workers) */
extern const struct vmmu_cache_ops vmmu_pt_cache_ops;

/* mmu.c: requests to every vCPU, and the remote TLB flush built on them. */
void vmmu_flush_remote_tlbs(struct vmmu_vm *vm);
void vmmu_make_all_vcpus_request(struct vmmu_vm *vm, uint64_t req, bool wait);

static inline void vmmu_vcpu_stat_inc(uint64_t *counter)
{
	__atomic_store_n(counter, __atomic_load_n(counter, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
}

unsigned vmmu_stat_shard_index(void);

/* Add @delta to the VM-wide stat @field in this thread's shard. */
#define vmmu_vm_stat_add(vm, field, delta) \
	__atomic_add_fetch(&(vm)->shards[vmmu_stat_shard_index()].field, (delta), __ATOMIC_RELAXED)

/* Sum of a VM-wide stat over all shards. */
#define vmmu_vm_stat_read(vm, field)                                                          \
	({                                                                                    \
		int64_t __sum = 0;                                                            \
		for (unsigned __i = 0; __i < VMMU_STAT_SHARDS; __i++)                         \
			__sum += __atomic_load_n(&(vm)->shards[__i].field, __ATOMIC_RELAXED); \
		__sum;                                                                        \
	})

#endif /* VMMU_VM_INTERNAL_H */
