/* SPDX-License-Identifier: MIT */
/*
 * vm_env.h - the small world most unit tests start from: one host memory
 * allocation, a VM with one slot over it at ENV_GPA, one vCPU and its
 * hardware model, and accessors that leave guest mode after each access
 * (the test thread also calls VM-wide operations, whose TLB flushes wait
 * for every vCPU in guest mode to exit).  Include after <cmocka.h>.
 */
#ifndef VMMU_TEST_VM_ENV_H
#define VMMU_TEST_VM_ENV_H

#include <vmmu/hostmem.h>
#include <vmmu/hw.h>
#include <vmmu/vmmu.h>

#include "mmu_internal.h"

#include <string.h>

#define ENV_GPA (1ull << 32)

struct env {
	struct vmmu_hostmem *hm;
	struct vmmu_vm *vm;
	struct vmmu_vcpu *vcpu;
	struct vmmu_hw_vcpu *hw;
	uint8_t *mem;
	uint64_t size; /* of the slot; tests may shrink it and re-create the slot */
};

static inline int set_slot(struct env *e, uint32_t flags)
{
	struct vmmu_userspace_memory_region r = {
		.slot = 0, .flags = flags, .guest_phys_addr = ENV_GPA, .memory_size = e->size,
		.userspace_addr = (uintptr_t)e->mem,
	};
	return vmmu_set_user_memory_region(e->vm, &r);
}

static inline void vm_env_init(struct env *e, enum vmmu_backing b, uint64_t size,
			       struct vmmu_vm_config cfg)
{
	memset(e, 0, sizeof(*e));
	e->size = size;
	assert_int_equal(vmmu_hostmem_create(&e->hm), 0);
	assert_int_equal(vmmu_hostmem_alloc(e->hm, b, size, 0, (void **)&e->mem), 0);
	cfg.hostmem = e->hm;
	assert_int_equal(vmmu_vm_create(&cfg, &e->vm), 0);
	assert_int_equal(set_slot(e, 0), 0);
	assert_int_equal(vmmu_vcpu_create(e->vm, 0, &e->vcpu), 0);
	assert_int_equal(vmmu_hw_vcpu_create(e->vcpu, NULL, &e->hw), 0);
}

static inline void env_fini(struct env *e)
{
	assert_int_equal(vmmu_hw_vcpu_destroy(e->hw), 0);
	assert_int_equal(vmmu_vcpu_destroy(e->vcpu), 0);
	assert_int_equal(vmmu_zap_all(e->vm), 0);
	vmmu_rcu_barrier();
	/* Nothing leaked by splits, recoveries or failed allocations. */
	assert_int_equal(vmmu_pool_in_use(&e->vm->pool), 0);
	assert_int_equal(vmmu_vm_destroy(e->vm), 0);
	assert_int_equal(vmmu_hostmem_free(e->hm, e->mem), 0);
	assert_int_equal(vmmu_hostmem_destroy(e->hm), 0);
}

static inline void write_page(struct env *e, uint64_t page, uint64_t v)
{
	assert_int_equal(vmmu_hw_write(e->hw, ENV_GPA + page * 4096, &v, sizeof(v)), 0);
	vmmu_hw_guest_exit(e->hw);
}

static inline uint64_t read_page(struct env *e, uint64_t page)
{
	uint64_t v;

	assert_int_equal(vmmu_hw_read(e->hw, ENV_GPA + page * 4096, &v, sizeof(v)), 0);
	vmmu_hw_guest_exit(e->hw);
	return v;
}

/* Write page p's first word with p, every page of the slot, in one stay
 * in guest mode. */
static inline void touch_all(struct env *e)
{
	for (uint64_t p = 0; p < e->size / 4096; p++) {
		uint64_t v = p;

		assert_int_equal(vmmu_hw_write(e->hw, ENV_GPA + p * 4096, &v, sizeof(v)), 0);
	}
	vmmu_hw_guest_exit(e->hw);
}

/* The leaf mapping @page; every translation must be exact. */
static inline uint64_t leaf(struct env *e, uint64_t page, int *level)
{
	void *hva;
	uint64_t spte;
	int lvl;

	assert_int_equal(vmmu_debug_lookup(e->vm, 0, ENV_GPA + page * 4096, &hva, &lvl, &spte), 0);
	assert_ptr_equal(hva, e->mem + page * 4096);
	if (level)
		*level = lvl;
	return spte;
}

#endif /* VMMU_TEST_VM_ENV_H */
