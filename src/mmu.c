/* SPDX-License-Identifier: MIT */
/*
 * mmu.c - the MMU front: the page-fault entry, vCPU requests, remote TLB
 * flushes, and the processor interface (entering and leaving guest mode).
 */
#include "mmu_internal.h"

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
		while (__atomic_load_n(&vcpu->mode, __ATOMIC_ACQUIRE) == mode) {
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
	vmmu_make_all_vcpus_request(vm, VMMU_REQ_TLB_FLUSH, true);
	vmmu_vm_stat_add(vm, remote_tlb_flush, 1);
}

/* Drop an obsolete root and load the current one.  No lock held. */
static int vcpu_reload_root(struct vmmu_vcpu *vcpu)
{
	struct vmmu_vm *vm = vcpu->vm;
	struct vmmu_sp *root;
	int r;

	r = vmmu_tdp_mmu_get_root(vm, vmmu_root_role(vm, vcpu->as_id), &root);
	if (r)
		return r;
	if (vcpu->root)
		vmmu_tdp_mmu_put_root(vm, vcpu->root);
	vcpu->root = root;
	return 0;
}

static bool vcpu_root_stale(struct vmmu_vcpu *vcpu)
{
	return !vcpu->root || READ_ONCE(vcpu->root->invalid);
}

/*
 * Is the fault's view of the world out of date?  The root was invalidated,
 * or an MMU-notifier invalidation covering the gfn is running or has
 * finished since fault->mmu_seq was taken.  Under the MMU lock.
 */
static bool is_page_fault_stale(struct vmmu_vcpu *vcpu, struct vmmu_page_fault *fault)
{
	struct vmmu_vm *vm = vcpu->vm;

	if (vcpu_root_stale(vcpu))
		return true;
	if (READ_ONCE(vm->mmu_invalidate_in_progress) &&
	    fault->gfn >= READ_ONCE(vm->mmu_invalidate_range_start) &&
	    fault->gfn < READ_ONCE(vm->mmu_invalidate_range_end))
		return true;
	return __atomic_load_n(&vm->mmu_invalidate_seq, __ATOMIC_ACQUIRE) != fault->mmu_seq;
}

int vmmu_vcpu_page_fault(struct vmmu_vcpu *vcpu, uint64_t gpa, uint64_t exit_qual)
{
	struct vmmu_vm *vm;
	struct vmmu_page_fault fault = { 0 };
	int r;

	if (!vcpu)
		return -EINVAL;
	vm = vcpu->vm;
	if (gpa >= (vmmu_max_gfn(vm) << VMMU_PAGE_SHIFT))
		return -EINVAL;
	/* A fault is handled outside guest mode, like a VM exit. */
	WARN_ON(READ_ONCE(vcpu->mode) & VMMU_MODE_IN_GUEST);
	vmmu_vcpu_stat_inc(&vcpu->stats.pf_taken);

	fault.gpa = gpa;
	fault.gfn = gpa >> VMMU_PAGE_SHIFT;
	fault.exit_qual = exit_qual;
	fault.write = exit_qual & VMMU_EPT_ACC_WRITE;
	fault.exec = exit_qual & VMMU_EPT_ACC_FETCH;
	fault.max_level = PG_LEVEL_4K;
	fault.goal_level = PG_LEVEL_4K;
	if (!(fault.exit_qual & EPT_RWX_MASK))
		fault.exit_qual |= VMMU_EPT_ACC_READ;

	if (vcpu_root_stale(vcpu)) {
		r = vcpu_reload_root(vcpu);
		if (r)
			return r;
	}
	/* Allocate before taking any lock: one table per level at most. */
	r = vmmu_cache_topup(&vcpu->pt_cache, vm->root_level);
	if (r)
		return r;

	vmmu_rcu_read_lock();
	fault.slot = vmmu_gfn_to_memslot(vm, vcpu->as_id, fault.gfn);
	if (!fault.slot) {
		r = VMMU_PF_EMULATE; /* MMIO: no memory here */
		goto out_rcu;
	}
	if (fault.slot->invalid) {
		r = VMMU_PF_RETRY; /* being deleted or moved */
		goto out_rcu;
	}
	fault.map_writable = !(fault.slot->flags & VMMU_MEM_READONLY);
	if (fault.write && !fault.map_writable) {
		r = VMMU_PF_EMULATE;
		goto out_rcu;
	}
	/* Snapshot the invalidation sequence before looking at the host page. */
	fault.mmu_seq = __atomic_load_n(&vm->mmu_invalidate_seq, __ATOMIC_ACQUIRE);
	fault.hva = memslot_gfn_to_hva(fault.slot, fault.gfn);

	vmmu_read_lock(&vm->mmu_lock);
	if (is_page_fault_stale(vcpu, &fault))
		r = VMMU_PF_RETRY;
	else
		r = vmmu_tdp_mmu_map(vcpu, &fault);
	vmmu_read_unlock(&vm->mmu_lock);
out_rcu:
	vmmu_rcu_read_unlock();

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
	entry->flush_tlb = false;
	exits = READ_ONCE(vcpu->mode) >> 1;
	for (;;) {
		uint64_t req;

		__atomic_store_n(&vcpu->mode, (exits << 1) | VMMU_MODE_IN_GUEST, __ATOMIC_SEQ_CST);
		req = __atomic_load_n(&vcpu->requests, __ATOMIC_SEQ_CST);
		if (!req && !vcpu_root_stale(vcpu))
			break;
		/* Leave guest mode again to service the requests. */
		__atomic_store_n(&vcpu->mode, ++exits << 1, __ATOMIC_RELEASE);
		req = __atomic_exchange_n(&vcpu->requests, 0, __ATOMIC_ACQ_REL);
		if ((req & VMMU_REQ_RELOAD_ROOT) || vcpu_root_stale(vcpu)) {
			int r = vcpu_reload_root(vcpu);

			if (r)
				return r;
			req |= VMMU_REQ_TLB_FLUSH;
		}
		if (req & VMMU_REQ_TLB_FLUSH) {
			entry->flush_tlb = true;
			vmmu_vcpu_stat_inc(&vcpu->stats.tlb_flush);
		}
	}
	entry->root = sp_spt(vcpu->vm, vcpu->root);
	entry->root_level = (int)vcpu->root->role.level;
	entry->ad_enabled = vcpu->vm->ad_enabled;
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
	/* Release: everything done through the old translations happens
	 * before a flusher that sees the new mode goes on. */
	__atomic_store_n(&vcpu->mode, ((mode >> 1) + 1) << 1, __ATOMIC_RELEASE);
	return 0;
}

const uint64_t *vmmu_vcpu_kick_word(struct vmmu_vcpu *vcpu)
{
	return vcpu ? &vcpu->requests : NULL;
}
