/* SPDX-License-Identifier: MIT */
/*
 * vm.c - the public VM and vCPU objects: creation, teardown, stats, zaps.
 */
#include "dirty_log.h"
#include "hostmem_internal.h"
#include "memslot.h"
#include "mmu.h"
#include "mmu_role.h"
#include "nested/nested.h"
#include "spte.h"
#include "vm_internal.h"

#include <string.h>

#define DEFAULT_MAX_PT_PAGES (1u << 20)
#define DEFAULT_VCPU_CACHE 40

static unsigned pt_cache_alloc(void *ctx, void **out, unsigned n)
{
	return vmmu_pool_alloc_batch(&((struct vmmu_vm *)ctx)->pool, out, n);
}

static void pt_cache_free(void *ctx, void *obj)
{
	vmmu_pool_free(&((struct vmmu_vm *)ctx)->pool, obj);
}

const struct vmmu_cache_ops vmmu_pt_cache_ops = {
	.alloc_batch = pt_cache_alloc,
	.free = pt_cache_free,
};

int vmmu_vm_create(const struct vmmu_vm_config *cfg, struct vmmu_vm **out)
{
	struct vmmu_vm_config c = cfg ? *cfg : (struct vmmu_vm_config){ 0 };
	struct vmmu_vm *vm;
	int r;

	if (!out)
		return -EINVAL;
	if (!c.root_level)
		c.root_level = 4;
	if (c.root_level != 4 && c.root_level != 5)
		return -EINVAL;
	if (c.slot_zap > VMMU_SLOT_ZAP_ALL_FAST)
		return -EINVAL;
	if (!c.max_pt_pages)
		c.max_pt_pages = DEFAULT_MAX_PT_PAGES;
	if (!c.vcpu_cache_capacity)
		c.vcpu_cache_capacity = DEFAULT_VCPU_CACHE;
	if (c.vcpu_cache_capacity < c.root_level || c.vcpu_cache_capacity > 4096)
		return -EINVAL;
	if (c.direct_build_workers > VMMU_MAX_DIRECT_BUILD_WORKERS)
		return -EINVAL;

	vm = aligned_alloc(VMMU_CACHELINE, sizeof(*vm));
	if (!vm)
		return -ENOMEM;
	memset(vm, 0, sizeof(*vm));
	vm->cfg = c;
	vm->root_level = (int)c.root_level;
	vm->ad_enabled = !c.disable_ept_ad;
	vm->tdp_enabled = true;
	/* The guest's MAXPHYADDR: what the EPT tree can address. */
	vm->guest_maxphyaddr = c.root_level == 5 ? 52 : 48;
	r = vmmu_dirty_log_vm_init(vm);
	if (r) {
		free(vm);
		return r;
	}

	r = vmmu_pool_init(&vm->pool, c.max_pt_pages, sizeof(struct vmmu_sp));
	if (r)
		goto err_free;
	r = vmmu_rwlock_init(&vm->mmu_lock);
	if (r)
		goto err_pool;
	r = vmmu_memslots_init(vm);
	if (r)
		goto err_slots;
	vmmu_mmu_vm_init(vm);
	vmmu_zap_fast_init(vm);
	pthread_mutex_init(&vm->vcpus_lock, NULL);
	if (c.hostmem) {
		r = vmmu_hostmem_attach(c.hostmem, vm);
		if (r)
			goto err_attach;
		vm->hostmem = c.hostmem;
	}
	*out = vm;
	return 0;

err_attach:
	pthread_mutex_destroy(&vm->vcpus_lock);
	vmmu_zap_fast_destroy(vm);
	vmmu_mmu_vm_uninit(vm);
err_slots:
	vmmu_memslots_destroy(vm);
	vmmu_rwlock_destroy(&vm->mmu_lock);
err_pool:
	vmmu_pool_destroy(&vm->pool);
err_free:
	free(vm);
	return r;
}

int vmmu_zap_all(struct vmmu_vm *vm)
{
	if (!vm)
		return -EINVAL;
	vmmu_mmu_zap_all(vm);
	return 0;
}

int vmmu_zap_gfn_range(struct vmmu_vm *vm, uint64_t gfn_start, uint64_t gfn_end)
{
	if (!vm || gfn_start > gfn_end)
		return -EINVAL;
	gfn_end = vmmu_min(gfn_end, vmmu_max_gfn(vm));
	if (gfn_start >= gfn_end)
		return 0;
	vmmu_read_lock(&vm->mmu_lock);
	for (unsigned as = 0; as < VMMU_ADDRESS_SPACES; as++)
		vmmu_mmu_unmap_gfn_range(vm, as, gfn_start, gfn_end, true);
	vmmu_read_unlock(&vm->mmu_lock);
	return 0;
}

int vmmu_vcpu_create(struct vmmu_vm *vm, unsigned id, struct vmmu_vcpu **out)
{
	struct vmmu_vcpu *vcpu;
	int r;

	if (!vm || !out || id >= VMMU_MAX_VCPUS)
		return -EINVAL;
	vcpu = aligned_alloc(VMMU_CACHELINE, sizeof(*vcpu));
	if (!vcpu)
		return -ENOMEM;
	memset(vcpu, 0, sizeof(*vcpu));
	vcpu->vm = vm;
	vcpu->id = id;
	vmmu_mmu_init_vcpu(vcpu);
	r = vmmu_dirty_log_vcpu_init(vcpu);
	if (r) {
		free(vcpu);
		return r;
	}
	r = vmmu_cache_init(&vcpu->pt_cache, (int)vm->cfg.vcpu_cache_capacity, &vmmu_pt_cache_ops, vm);
	if (r) {
		vmmu_dirty_log_vcpu_destroy(vcpu);
		free(vcpu);
		return r;
	}
	pthread_mutex_lock(&vm->vcpus_lock);
	if (vm->vcpus[id]) {
		pthread_mutex_unlock(&vm->vcpus_lock);
		vmmu_cache_destroy(&vcpu->pt_cache);
		vmmu_dirty_log_vcpu_destroy(vcpu);
		free(vcpu);
		return -EEXIST;
	}
	__atomic_store_n(&vm->vcpus[id], vcpu, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&vm->vcpus_lock);
	*out = vcpu;
	return 0;
}

int vmmu_vcpu_destroy(struct vmmu_vcpu *vcpu)
{
	struct vmmu_vm *vm;

	if (!vcpu)
		return -EINVAL;
	vm = vcpu->vm;
	pthread_mutex_lock(&vm->vcpus_lock);
	__atomic_store_n(&vm->vcpus[vcpu->id], NULL, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&vm->vcpus_lock);
	/* Flushers look vCPUs up inside RCU read sections. */
	vmmu_synchronize_rcu();
	vmmu_mmu_destroy_vcpu(vcpu); /* the current and the cached roots */
	vmmu_nested_vcpu_destroy(vcpu); /* its EPT02 roots */
	vmmu_cache_destroy(&vcpu->pt_cache);
	vmmu_dirty_log_vcpu_destroy(vcpu);
	free(vcpu);
	return 0;
}

int vmmu_vm_destroy(struct vmmu_vm *vm)
{
	if (!vm)
		return -EINVAL;
	if (vm->hostmem)
		vmmu_hostmem_detach(vm->hostmem, vm);
	for (unsigned i = 0; i < VMMU_MAX_VCPUS; i++)
		if (vm->vcpus[i])
			vmmu_vcpu_destroy(vm->vcpus[i]);
	vmmu_mmu_zap_all(vm);
	vmmu_zap_fast_destroy(vm);
	/* Every table that was unlinked is queued for freeing: wait for it. */
	vmmu_rcu_barrier();
	vmmu_mmu_vm_uninit(vm);
	WARN_ON(vmmu_vm_stat_read(vm, pages[0]) || vmmu_vm_stat_read(vm, pages[1]) ||
		vmmu_vm_stat_read(vm, pages[2]) || vmmu_vm_stat_read(vm, pt_pages));
	vmmu_pool_destroy(&vm->pool);
	vmmu_memslots_destroy(vm);
	vmmu_rwlock_destroy(&vm->mmu_lock);
	pthread_mutex_destroy(&vm->vcpus_lock);
	free(vm);
	return 0;
}

int vmmu_vm_stats(struct vmmu_vm *vm, struct vmmu_vm_stats *out)
{
	struct vmmu_sp *root;

	if (!vm || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->pages_4k = (uint64_t)vmmu_vm_stat_read(vm, pages[0]);
	out->pages_2m = (uint64_t)vmmu_vm_stat_read(vm, pages[1]);
	out->pages_1g = (uint64_t)vmmu_vm_stat_read(vm, pages[2]);
	out->pt_pages = (uint64_t)vmmu_vm_stat_read(vm, pt_pages);
	out->roots_built = (uint64_t)vmmu_vm_stat_read(vm, roots_built);
	out->remote_tlb_flush = (uint64_t)vmmu_vm_stat_read(vm, remote_tlb_flush);
	out->remote_tlb_flush_requests = (uint64_t)vmmu_vm_stat_read(vm, remote_tlb_flush_requests);
	vmmu_rcu_read_lock();
	vmmu_list_for_each_entry_rcu(root, &vm->roots, link)
		out->roots++;
	vmmu_rcu_read_unlock();
	return 0;
}

int vmmu_vcpu_stats(struct vmmu_vcpu *vcpu, struct vmmu_vcpu_stats *out)
{
	if (!vcpu || !out)
		return -EINVAL;
	out->pf_taken = READ_ONCE(vcpu->stats.pf_taken);
	out->pf_fixed = READ_ONCE(vcpu->stats.pf_fixed);
	out->pf_spurious = READ_ONCE(vcpu->stats.pf_spurious);
	out->pf_retry = READ_ONCE(vcpu->stats.pf_retry);
	out->pf_emulate = READ_ONCE(vcpu->stats.pf_emulate);
	out->pf_fast = READ_ONCE(vcpu->stats.pf_fast);
	out->tlb_flush = READ_ONCE(vcpu->stats.tlb_flush);
	return 0;
}

int vmmu_debug_lookup(struct vmmu_vm *vm, unsigned as_id, uint64_t gpa, void **hva,
		      int *level, uint64_t *spte_out)
{
	uint64_t spte;
	int r, l;

	if (!vm || as_id >= VMMU_ADDRESS_SPACES || gpa >= (vmmu_max_gfn(vm) << VMMU_PAGE_SHIFT))
		return -EINVAL;
	r = vmmu_mmu_lookup_leaf(vm, as_id, gpa >> VMMU_PAGE_SHIFT, &spte, &l);
	if (r)
		return r;
	if (hva)
		*hva = (void *)(uintptr_t)(spte_addr(spte) +
					   (gpa & ((1ull << spte_level_shift(l)) - 1)));
	if (level)
		*level = l;
	if (spte_out)
		*spte_out = spte;
	return 0;
}
