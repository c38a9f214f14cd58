/* SPDX-License-Identifier: MIT */
/*
 * mmu.c - the MMU front: the page-fault entry, vCPU requests, remote TLB
 * flushes, and the processor interface (entering and leaving guest mode).
 */
#include "dirty_log.h"
#include "hostmem_internal.h"
#include "memslot.h"
#include "mmu.h"
#include "mmu_role.h"
#include "nested/nested.h"
#include "tdp_iter.h" /* round_gfn_for_level */
#include "tdp_mmu.h"
#include "trace.h"
#include "vm_internal.h"

static __thread unsigned stat_shard = UINT32_MAX;
static unsigned next_stat_shard;

unsigned vmmu_stat_shard_index(void)
{
	if (vmmu_unlikely(stat_shard == UINT32_MAX))
		stat_shard = __atomic_fetch_add(&next_stat_shard, 1, __ATOMIC_RELAXED) %
			     VMMU_STAT_SHARDS;
	return stat_shard;
}

/*
 * Post @req to every vCPU and, with @wait, wait until each vCPU that was
 * in guest mode has left it at least once (the IPI and its acknowledgement).
 * A vCPU outside guest mode services the request before it next enters.
 *
 * Ordering: we set the request, then read the mode; the vCPU sets its mode,
 * then reads its requests (both sequentially consistent).  So either we see
 * it in guest mode and wait, or it sees the request on entry.
 *
 * A vCPU that was re-entering when we posted may take our request in its
 * entry loop and only then publish the guest mode we read: it has serviced
 * the request and will not exit again for it.  So the wait also ends when
 * no requested bit is pending any more (only the entry loop clears them).
 */
void vmmu_make_all_vcpus_request(struct vmmu_vm *vm, uint64_t req, bool wait)
{
	/* vCPUs are freed only after a grace period (vmmu_vcpu_destroy). */
	vmmu_rcu_read_lock();
	for (unsigned i = 0; i < VMMU_MAX_VCPUS; i++) {
		struct vmmu_vcpu *vcpu = __atomic_load_n(&vm->vcpus[i], __ATOMIC_ACQUIRE);
		uint64_t mode;
		unsigned spins = 0;

		if (!vcpu)
			continue;
		__atomic_fetch_or(&vcpu->requests, req, __ATOMIC_SEQ_CST);
		mode = __atomic_load_n(&vcpu->mode, __ATOMIC_SEQ_CST);
		if (!wait || !(mode & VMMU_MODE_IN_GUEST))
			continue;
		while (__atomic_load_n(&vcpu->mode, __ATOMIC_ACQUIRE) == mode &&
		       (__atomic_load_n(&vcpu->requests, __ATOMIC_ACQUIRE) & req)) {
			if (++spins < 64)
				cpu_relax();
			else
				vmmu_yield();
		}
	}
	vmmu_rcu_read_unlock();
}

void vmmu_flush_remote_tlbs(struct vmmu_vm *vm)
{
	vmmu_vm_stat_add(vm, remote_tlb_flush_requests, 1);
	trace_vmmu(remote_flush, vm);
	vmmu_make_all_vcpus_request(vm, VMMU_REQ_TLB_FLUSH, true);
	vmmu_vm_stat_add(vm, remote_tlb_flush, 1);
}

/*
 * Drop an obsolete root and load the current one (mmu_role.c).  No lock
 * held.  @in_l2 is vmmu_nested_vcpu_in_l2(vcpu): only the vCPU's own
 * thread changes it (entering and leaving L2), so a fault reads it once.
 */
static int vcpu_reload_root(struct vmmu_vcpu *vcpu, bool in_l2)
{
	if (in_l2)
		return vmmu_nested_load_root(vcpu);
	return vmmu_mmu_load_root(vcpu);
}

static bool vcpu_root_stale(struct vmmu_vcpu *vcpu, bool in_l2)
{
	if (in_l2)
		return vmmu_nested_root_stale(vcpu);
	return !vcpu->root || READ_ONCE(vcpu->root->invalid);
}

/*
 * Is the fault's view of the world out of date?  The root was invalidated,
 * or an MMU-notifier invalidation covering one of its gfns is running or has
 * finished since fault->mmu_seq was taken.  Under the MMU lock.
 */
static bool is_page_fault_stale(struct vmmu_vcpu *vcpu, struct vmmu_page_fault *fault, bool in_l2)
{
	struct vmmu_vm *vm = vcpu->vm;

	if (vcpu_root_stale(vcpu, in_l2))
		return true;
	/* Stale if anything its leaves would cover (a huge leaf covers more
	 * than the faulting gfn, a run more than one leaf) is being invalidated. */
	if (READ_ONCE(vm->mmu_invalidate_in_progress) &&
	    round_gfn_for_level(fault->gfn_end - 1, fault->goal_level) +
			    spte_pages_per(fault->goal_level) >
		    READ_ONCE(vm->mmu_invalidate_range_start) &&
	    round_gfn_for_level(fault->gfn, fault->goal_level) <
		    READ_ONCE(vm->mmu_invalidate_range_end))
		return true;
	return __atomic_load_n(&vm->mmu_invalidate_seq, __ATOMIC_ACQUIRE) != fault->mmu_seq;
}

/*
 * The largest leaf level allowed for @gfn (KVM's kvm_mmu_hugepage_adjust):
 * never in a dirty-logged slot, never wider than the host mapping
 * (@host_level), never where the slot's disallow counters say no (frames
 * sticking out of the slot, gfn/hva not congruent, write tracking).
 */
static inline __attribute__((always_inline)) int
max_mapping_level_host(const struct vmmu_memslot *slot, uint64_t gfn, int host_level)
{
	int level;

	if (slot->flags & VMMU_MEM_LOG_DIRTY_PAGES)
		return PG_LEVEL_4K;
	for (level = vmmu_min(host_level, SPTE_MAX_HUGEPAGE_LEVEL); level > PG_LEVEL_4K; level--)
		if (!READ_ONCE(slot->disallow_lpage[level - 2][lpage_index(slot, gfn, level)]))
			return level;
	return PG_LEVEL_4K;
}

/* The same, asking the host for the level at @hva.  Under RCU. */
static int max_mapping_level(struct vmmu_vm *vm, const struct vmmu_memslot *slot, uint64_t gfn,
			     uint64_t hva)
{
	/* Cheap checks first: the host is only asked if the slot allows 2M. */
	if ((slot->flags & VMMU_MEM_LOG_DIRTY_PAGES) ||
	    READ_ONCE(slot->disallow_lpage[0][lpage_index(slot, gfn, PG_LEVEL_2M)]))
		return PG_LEVEL_4K;
	return max_mapping_level_host(
		slot, gfn, vm->hostmem ? vmmu_hostmem_level(vm->hostmem, hva) : PG_LEVEL_4K);
}

int vmmu_max_mapping_level(struct vmmu_vm *vm, const struct vmmu_memslot *slot, uint64_t gfn,
			   uint64_t hva)
{
	int level = max_mapping_level(vm, slot, gfn, hva);

	/* Huge-page recovery and nested faults: no huge leaf over a page
	 * that holds shadowed EPT12 tables. */
	if (level > PG_LEVEL_4K && vmmu_nested_active(vm))
		level = vmmu_nested_max_level(vm, slot->as_id, gfn, level);
	return level;
}

/*
 * Shorten a run (fault->gfn_end) to what one fault may map with the rules
 * it looked up for fault->gfn: inside the slot, inside one table at
 * goal_level (so the page caches topped up for one fault suffice), inside
 * one host allocation (same backing and writability: @host_end, 0 without
 * a hostmem), and, for huge leaves, where each leaf may be as large as
 * goal_level.  A page where the rules change starts a new run.  Under RCU.
 */
static void page_fault_clip_run(struct vmmu_vm *vm, struct vmmu_page_fault *fault,
				uint64_t host_end)
{
	const struct vmmu_memslot *slot = fault->slot;
	uint64_t per = spte_pages_per(fault->goal_level);
	uint64_t end = vmmu_min(fault->gfn_end, slot->base_gfn + slot->npages);
	uint64_t gfn;

	if (fault->goal_level < SPTE_MAX_LEVEL)
		end = vmmu_min(end, round_gfn_for_level(fault->gfn, fault->goal_level + 1) +
					    spte_pages_per(fault->goal_level + 1));
	if (host_end)
		end = vmmu_min(end, fault->gfn + ((host_end - fault->hva) >> VMMU_PAGE_SHIFT));
	/* Each further huge leaf must be legal on its own. */
	for (gfn = round_gfn_for_level(fault->gfn, fault->goal_level) + per;
	     fault->goal_level > PG_LEVEL_4K && gfn < end; gfn += per)
		if (max_mapping_level(vm, slot, gfn, memslot_gfn_to_hva(slot, gfn)) <
		    fault->goal_level)
			end = gfn;
	fault->gfn_end = vmmu_max(end, fault->gfn + 1);
}

/* vmmu_do_page_fault() with @in_l2 = vmmu_nested_vcpu_in_l2(vcpu), which
 * the demand fault has just read.  Out of line: inlined, its frame would
 * be set up on the fast path too. */
static __attribute__((noinline)) int do_page_fault(struct vmmu_vcpu *vcpu,
						   struct vmmu_page_fault *fault, bool in_l2)
{
	struct vmmu_vm *vm = vcpu->vm;
	/* Without a hostmem, guest memory is plain writable 4 KiB pages. */
	struct vmmu_host_page host = { .level = PG_LEVEL_4K, .writable = true };
	int r;

	fault->mapped_end = fault->gfn;
	if (!(fault->exit_qual & EPT_RWX_MASK))
		fault->exit_qual |= VMMU_EPT_ACC_READ;

	if (vcpu_root_stale(vcpu, in_l2)) {
		r = vcpu_reload_root(vcpu, in_l2);
		if (r)
			return r;
	}
	/* Allocate before taking any lock: one table per level at most.
	 * Most faults find the cache full enough and skip the call. */
	if (vmmu_cache_nr(&vcpu->pt_cache) < vm->root_level) {
		r = vmmu_cache_topup(&vcpu->pt_cache, vm->root_level);
		if (r)
			return r;
	}

	vmmu_rcu_read_lock();
	fault->slot = vmmu_vcpu_gfn_to_memslot(vcpu, fault->gfn);
	if (!fault->slot) {
		r = VMMU_PF_EMULATE; /* MMIO: no memory here */
		goto out_rcu;
	}
	if (fault->slot->invalid) {
		/*
		 * Being deleted or moved: a guest access retries until the slot
		 * is gone, but a prefetch gives up, so that a caller looping on
		 * it cannot hold up the memslot update for ever.
		 */
		r = fault->prefetch ? -EAGAIN : VMMU_PF_RETRY;
		goto out_rcu;
	}
	if (fault->write && (fault->slot->flags & VMMU_MEM_READONLY)) {
		r = VMMU_PF_EMULATE;
		goto out_rcu;
	}
	/* Snapshot the invalidation sequence before looking at the host page. */
	fault->mmu_seq = __atomic_load_n(&vm->mmu_invalidate_seq, __ATOMIC_ACQUIRE);
	fault->hva = memslot_gfn_to_hva(fault->slot, fault->gfn);
	/* One host lookup: page in, writability, level, extent. */
	if (vm->hostmem && vmmu_hostmem_lookup(vm->hostmem, fault->hva, &host)) {
		/* The slot points at host memory that is gone (KVM: -EFAULT). */
		r = -EFAULT;
		goto out_rcu;
	}
	fault->map_writable = !(fault->slot->flags & VMMU_MEM_READONLY) && host.writable;
	if (fault->write && !fault->map_writable) {
		r = VMMU_PF_EMULATE; /* the host page is read-only */
		goto out_rcu;
	}
	fault->max_level = max_mapping_level_host(fault->slot, fault->gfn, host.level);
	fault->goal_level = fault->max_level;
	if (fault->gfn_end > fault->gfn + 1)
		page_fault_clip_run(vm, fault, host.extent_end);
	else
		fault->gfn_end = fault->gfn + 1;

	if (vmmu_unlikely(vm->test_fault_hook))
		vm->test_fault_hook(vcpu, fault->gfn, vm->test_fault_hook_arg);

	vmmu_read_lock(&vm->mmu_lock);
	/* A vCPU in L2 faults into the nested MMU (vmmu_vcpu_page_fault);
	 * here L1's gfns must stay read-only where they hold EPT12 tables. */
	if (is_page_fault_stale(vcpu, fault, in_l2))
		r = VMMU_PF_RETRY;
	else if (vmmu_nested_tdp_fault_check(vm, vcpu->as_id, fault))
		r = VMMU_PF_EMULATE; /* a write to a shadowed EPT12 page */
	else {
		if (vmmu_unlikely(vm->test_tdp_track_hook))
			vm->test_tdp_track_hook(vcpu, fault->gfn, vm->test_tdp_track_hook_arg);
		r = vmmu_tdp_mmu_map(vcpu, fault);
	}
	vmmu_read_unlock(&vm->mmu_lock);
out_rcu:
	vmmu_rcu_read_unlock();
	return r;
}

int vmmu_do_page_fault(struct vmmu_vcpu *vcpu, struct vmmu_page_fault *fault)
{
	return do_page_fault(vcpu, fault, vmmu_nested_vcpu_in_l2(vcpu));
}

int vmmu_vcpu_page_fault(struct vmmu_vcpu *vcpu, uint64_t gpa, uint64_t exit_qual)
{
	struct vmmu_page_fault fault;
	int r;

	if (!vcpu)
		return -EINVAL;
	if (gpa >= (vmmu_max_gfn(vcpu->vm) << VMMU_PAGE_SHIFT))
		return -EINVAL;
	/* A fault is handled outside guest mode, like a VM exit; a CPU that
	 * did not leave it first is the caller's mistake, not vmmu's. */
	if (READ_ONCE(vcpu->mode) & VMMU_MODE_IN_GUEST)
		return -EBUSY;
	/* A fault logs at most one page: refuse it, before fixing anything,
	 * while the ring is past its soft limit, so the reserve behind the
	 * limit always has room and no entry is ever dropped. */
	if (vmmu_dirty_ring_soft_full(vcpu))
		return -ENOBUFS;
	vmmu_vcpu_stat_inc(&vcpu->stats.pf_taken);
	trace_vmmu(page_fault, vcpu->id, gpa, exit_qual);
	if (vmmu_nested_vcpu_in_l2(vcpu)) {
		/* L2: the nested engine, under the write lock, no fast path. */
		r = vmmu_nested_page_fault(vcpu, gpa, exit_qual);
		goto count;
	}
	/* First the lockless fix of a protected or access-tracked leaf. */
	r = vmmu_fast_page_fault(vcpu, gpa, exit_qual);
	if (r != VMMU_PF_CONTINUE)
		return r;

	/* Built only now: the fast path, above, does not need it. */
	fault = (struct vmmu_page_fault){
		.gpa = gpa,
		.gfn = gpa >> VMMU_PAGE_SHIFT,
		.gfn_end = (gpa >> VMMU_PAGE_SHIFT) + 1,
		.exit_qual = exit_qual,
		.write = exit_qual & VMMU_EPT_ACC_WRITE,
		.exec = exit_qual & VMMU_EPT_ACC_FETCH,
	};
	r = do_page_fault(vcpu, &fault, false); /* not in L2: checked above */
count:

	switch (r) {
	case VMMU_PF_FIXED:
		vmmu_vcpu_stat_inc(&vcpu->stats.pf_fixed);
		break;
	case VMMU_PF_SPURIOUS:
		vmmu_vcpu_stat_inc(&vcpu->stats.pf_spurious);
		break;
	case VMMU_PF_RETRY:
		vmmu_vcpu_stat_inc(&vcpu->stats.pf_retry);
		break;
	case VMMU_PF_EMULATE:
		vmmu_vcpu_stat_inc(&vcpu->stats.pf_emulate);
		break;
	default:
		break;
	}
	return r;
}

/*
 * Processor interface.
 */
int vmmu_vcpu_enter_guest(struct vmmu_vcpu *vcpu, struct vmmu_guest_entry *entry)
{
	uint64_t exits;

	if (!vcpu || !entry)
		return -EINVAL;
	/* KVM_EXIT_DIRTY_RING_FULL: the collector must make room first. */
	if (vmmu_dirty_ring_soft_full(vcpu))
		return -ENOBUFS;
	entry->flush_tlb = false;
	exits = READ_ONCE(vcpu->mode) >> 1;
	for (;;) {
		uint64_t req;

		__atomic_store_n(&vcpu->mode, (exits << 1) | VMMU_MODE_IN_GUEST, __ATOMIC_SEQ_CST);
		req = __atomic_load_n(&vcpu->requests, __ATOMIC_SEQ_CST);
		if (!req && !vcpu_root_stale(vcpu, vmmu_nested_vcpu_in_l2(vcpu)))
			break;
		/* Leave guest mode again to service the requests. */
		__atomic_store_n(&vcpu->mode, ++exits << 1, __ATOMIC_RELEASE);
		req = __atomic_exchange_n(&vcpu->requests, 0, __ATOMIC_ACQ_REL);
		if ((req & VMMU_REQ_RELOAD_ROOT) ||
		    vcpu_root_stale(vcpu, vmmu_nested_vcpu_in_l2(vcpu))) {
			int r = vcpu_reload_root(vcpu, vmmu_nested_vcpu_in_l2(vcpu));

			if (r)
				return r;
			req |= VMMU_REQ_TLB_FLUSH;
		}
		if (req & VMMU_REQ_TLB_FLUSH) {
			entry->flush_tlb = true;
			vmmu_vcpu_stat_inc(&vcpu->stats.tlb_flush);
		}
	}
	if (vmmu_nested_vcpu_in_l2(vcpu)) {
		vmmu_nested_fill_entry(vcpu, entry);
		return 0;
	}
	entry->root = sp_spt(vcpu->vm, vcpu->root);
	entry->root_level = (int)vcpu->root->role.level;
	entry->ad_enabled = vcpu->vm->ad_enabled;
	entry->pml = vcpu->pml;
	entry->pml_count = &vcpu->pml_count;
	entry->pml_size = vcpu->pml ? VMMU_PML_ENTRIES : 0;
	return 0;
}

int vmmu_vcpu_exit_guest(struct vmmu_vcpu *vcpu)
{
	uint64_t mode;

	if (!vcpu)
		return -EINVAL;
	mode = READ_ONCE(vcpu->mode);
	if (!(mode & VMMU_MODE_IN_GUEST))
		return 0;
	/* The log goes to the bitmap or ring before a harvester waiting for
	 * this exit can look at them. */
	vmmu_vcpu_flush_pml(vcpu);
	/* Release: everything done through the old translations happens
	 * before a flusher that sees the new mode goes on. */
	__atomic_store_n(&vcpu->mode, ((mode >> 1) + 1) << 1, __ATOMIC_RELEASE);
	return 0;
}

const uint64_t *vmmu_vcpu_kick_word(struct vmmu_vcpu *vcpu)
{
	return vcpu ? &vcpu->requests : NULL;
}

int vmmu_vcpu_gpa_bits(struct vmmu_vcpu *vcpu, unsigned *bits)
{
	if (!vcpu || !bits)
		return -EINVAL;
	*bits = VMMU_PAGE_SHIFT + (unsigned)vcpu->vm->root_level * SPTE_LEVEL_BITS;
	return 0;
}

/*
 * MMU notifiers.
 */

/* Under the write lock: faults on [start, end) retry from now on. */
static bool invalidate_range_add(struct vmmu_vm *vm, unsigned as, uint64_t start, uint64_t end,
				 void *arg)
{
	(void)as;
	(void)arg;
	if (READ_ONCE(vm->mmu_invalidate_range_start) == UINT64_MAX) {
		WRITE_ONCE(vm->mmu_invalidate_range_start, start);
		WRITE_ONCE(vm->mmu_invalidate_range_end, end);
	} else {
		WRITE_ONCE(vm->mmu_invalidate_range_start,
			   vmmu_min(vm->mmu_invalidate_range_start, start));
		WRITE_ONCE(vm->mmu_invalidate_range_end,
			   vmmu_max(vm->mmu_invalidate_range_end, end));
	}
	return false;
}

static bool invalidate_range_zap(struct vmmu_vm *vm, unsigned as, uint64_t start, uint64_t end,
				 void *arg)
{
	(void)arg;
	return vmmu_mmu_unmap_gfn_range(vm, as, start, end, true);
}

int vmmu_notify_invalidate_range_start(struct vmmu_vm *vm, uint64_t hva_start, uint64_t hva_end)
{
	if (!vm || hva_start > hva_end)
		return -EINVAL;
	/* Keeps memslots from changing until the matching end. */
	pthread_mutex_lock(&vm->mn_lock);
	vm->mn_active_invalidate_count++;
	pthread_mutex_unlock(&vm->mn_lock);

	vmmu_write_lock(&vm->mmu_lock);
	/* The first of a batch of overlapping invalidations resets the range. */
	if (!vm->mmu_invalidate_in_progress++)
		WRITE_ONCE(vm->mmu_invalidate_range_start, UINT64_MAX);
	vmmu_for_each_hva_gfn_range(vm, hva_start, hva_end, invalidate_range_add, NULL);
	vmmu_write_unlock(&vm->mmu_lock);

	/* Faults on the range now retry: remove what is mapped, flush. */
	vmmu_read_lock(&vm->mmu_lock);
	vmmu_for_each_hva_gfn_range(vm, hva_start, hva_end, invalidate_range_zap, NULL);
	vmmu_read_unlock(&vm->mmu_lock);
	return 0;
}

int vmmu_notify_invalidate_range_end(struct vmmu_vm *vm, uint64_t hva_start, uint64_t hva_end)
{
	if (!vm || hva_start > hva_end)
		return -EINVAL;
	vmmu_write_lock(&vm->mmu_lock);
	/* An end without a start is the caller's mistake: an errno, no WARN. */
	if (vm->mmu_invalidate_in_progress <= 0) {
		vmmu_write_unlock(&vm->mmu_lock);
		return -EINVAL;
	}
	/*
	 * The sequence moves before in_progress drops: a fault that sees no
	 * invalidation in progress also sees the new sequence and retries if
	 * its host lookup came before.
	 */
	__atomic_store_n(&vm->mmu_invalidate_seq, vm->mmu_invalidate_seq + 1, __ATOMIC_RELEASE);
	WRITE_ONCE(vm->mmu_invalidate_in_progress, vm->mmu_invalidate_in_progress - 1);
	vmmu_write_unlock(&vm->mmu_lock);

	pthread_mutex_lock(&vm->mn_lock);
	if (!--vm->mn_active_invalidate_count)
		pthread_cond_broadcast(&vm->mn_cond);
	pthread_mutex_unlock(&vm->mn_lock);
	return 0;
}
