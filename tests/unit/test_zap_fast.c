/* SPDX-License-Identifier: MIT */
/*
 * test_zap_fast - memslot deletion with VMMU_SLOT_ZAP_ALL_FAST.
 *
 *  - delete returns with every root obsolete: nothing is mapped through a
 *    root a vCPU can use (the other slot's mappings are gone too: that is
 *    the price of the fast path), the vCPU moves to a fresh root and faults
 *    the other slot back in, the deleted range is MMIO;
 *  - obsolete roots stay visible to MMU-notifier zaps until they are
 *    emptied: with the zap thread held back, a host invalidation of the
 *    other slot's memory removes its leaves from the obsolete root;
 *  - vmmu_zap_all waits for the zap thread: afterwards only the vCPU's
 *    root page and its page cache are left in the pool;
 *  - a bad slot_zap value is refused.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <vmmu/hostmem.h>
#include <vmmu/hw.h>
#include <vmmu/vmmu.h>

#include "mmu_internal.h"

#include <string.h>

#define GPA0 (1ull << 32)
#define GPA1 (2ull << 32)
#define SIZE (4ull << 20)

struct env {
	struct vmmu_hostmem *hm;
	struct vmmu_vm *vm;
	struct vmmu_vcpu *vcpu;
	struct vmmu_hw_vcpu *hw;
	uint8_t *mem[2];
};

static void set_slot(struct env *e, unsigned id, uint64_t gpa, uint64_t size)
{
	struct vmmu_userspace_memory_region r = {
		.slot = id, .guest_phys_addr = gpa, .memory_size = size,
		.userspace_addr = (uint64_t)(uintptr_t)e->mem[id] };

	assert_int_equal(vmmu_set_user_memory_region(e->vm, &r), 0);
}

static void env_init(struct env *e)
{
	memset(e, 0, sizeof(*e));
	assert_int_equal(vmmu_hostmem_create(&e->hm), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(vmmu_hostmem_alloc(e->hm, VMMU_BACKING_ANONYMOUS, SIZE, 0,
						    (void **)&e->mem[i]), 0);
	assert_int_equal(vmmu_vm_create(&(struct vmmu_vm_config){
						.hostmem = e->hm,
						.slot_zap = VMMU_SLOT_ZAP_ALL_FAST },
					&e->vm), 0);
	set_slot(e, 0, GPA0, SIZE);
	set_slot(e, 1, GPA1, SIZE);
	assert_int_equal(vmmu_vcpu_create(e->vm, 0, &e->vcpu), 0);
	assert_int_equal(vmmu_hw_vcpu_create(e->vcpu, NULL, &e->hw), 0);
}

static void env_fini(struct env *e)
{
	assert_int_equal(vmmu_hw_vcpu_destroy(e->hw), 0);
	assert_int_equal(vmmu_vm_destroy(e->vm), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(vmmu_hostmem_free(e->hm, e->mem[i]), 0);
	assert_int_equal(vmmu_hostmem_destroy(e->hm), 0);
}

static void touch_all(struct env *e, uint64_t gpa)
{
	for (uint64_t off = 0; off < SIZE; off += 4096) {
		uint64_t v = gpa + off;

		assert_int_equal(vmmu_hw_write(e->hw, gpa + off, &v, 8), 0);
	}
	vmmu_hw_guest_exit(e->hw);
}

static void test_fast_delete(void **state)
{
	struct env e;
	struct vmmu_vm_stats st;
	uint64_t v;
	void *hva;

	(void)state;
	env_init(&e);
	touch_all(&e, GPA0);
	touch_all(&e, GPA1);
	set_slot(&e, 0, GPA0, 0); /* delete */
	for (uint64_t off = 0; off < SIZE; off += 4096) {
		assert_int_equal(vmmu_debug_lookup(e.vm, 0, GPA0 + off, NULL, NULL, NULL), -ENOENT);
		assert_int_equal(vmmu_debug_lookup(e.vm, 0, GPA1 + off, NULL, NULL, NULL), -ENOENT);
	}
	/* The deleted range is MMIO; the other slot faults back in. */
	assert_int_equal(vmmu_hw_read(e.hw, GPA0, &v, 8), -EFAULT);
	assert_int_equal(vmmu_hw_read(e.hw, GPA1 + 8192, &v, 8), 0);
	assert_int_equal(v, GPA1 + 8192);
	vmmu_hw_guest_exit(e.hw);
	assert_int_equal(vmmu_debug_lookup(e.vm, 0, GPA1 + 8192, &hva, NULL, NULL), 0);
	assert_ptr_equal(hva, e.mem[1] + 8192);

	/* Everything emptied once zap_all returns: one root, one path. */
	assert_int_equal(vmmu_zap_all(e.vm), 0);
	vmmu_rcu_barrier();
	assert_int_equal(vmmu_vm_stats(e.vm, &st), 0);
	assert_int_equal(st.pages_4k, 0);
	assert_int_equal(st.roots, 1); /* the vCPU's (empty) root */
	/* Its root page and the pages in its cache, nothing else. */
	assert_int_equal(vmmu_pool_in_use(&e.vm->pool), 1 + vmmu_cache_nr(&e.vcpu->pt_cache));
	env_fini(&e);
}

/* With the zap thread held back, host invalidations still reach the
 * leaves of obsolete roots. */
static void test_obsolete_roots_see_notifiers(void **state)
{
	struct env e;
	struct vmmu_vm_stats st;
	uint64_t hva;

	(void)state;
	env_init(&e);
	touch_all(&e, GPA0);
	touch_all(&e, GPA1);
	/* Pretend the thread runs but never gets to work. */
	pthread_mutex_lock(&e.vm->zap_lock);
	e.vm->zap_started = true;
	pthread_mutex_unlock(&e.vm->zap_lock);

	set_slot(&e, 0, GPA0, 0);
	assert_int_equal(vmmu_vm_stats(e.vm, &st), 0);
	/* Slot 1's leaves are still in the obsolete root. */
	assert_int_equal(st.pages_4k, 2 * SIZE / 4096);
	assert_int_equal(st.roots, 1);
	hva = (uintptr_t)e.mem[1];
	assert_int_equal(vmmu_notify_invalidate_range_start(e.vm, hva, hva + SIZE / 2), 0);
	assert_int_equal(vmmu_vm_stats(e.vm, &st), 0);
	assert_int_equal(st.pages_4k, 2 * SIZE / 4096 - SIZE / 2 / 4096);
	assert_int_equal(vmmu_notify_invalidate_range_end(e.vm, hva, hva + SIZE / 2), 0);

	/* Let go: the caller empties the obsolete root itself. */
	pthread_mutex_lock(&e.vm->zap_lock);
	e.vm->zap_started = false;
	e.vm->zap_done = e.vm->zap_requested;
	pthread_mutex_unlock(&e.vm->zap_lock);
	assert_int_equal(vmmu_zap_all(e.vm), 0);
	vmmu_rcu_barrier();
	assert_int_equal(vmmu_vm_stats(e.vm, &st), 0);
	assert_int_equal(st.pages_4k, 0);
	assert_int_equal(st.roots, 1);
	assert_int_equal(vmmu_pool_in_use(&e.vm->pool), 1 + vmmu_cache_nr(&e.vcpu->pt_cache));
	env_fini(&e);
}

static void test_bad_config(void **state)
{
	struct vmmu_vm *vm = NULL;

	(void)state;
	assert_int_equal(vmmu_vm_create(&(struct vmmu_vm_config){ .slot_zap = 2 }, &vm), -EINVAL);
	assert_null(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fast_delete),
		cmocka_unit_test(test_obsolete_roots_see_notifiers),
		cmocka_unit_test(test_bad_config),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
