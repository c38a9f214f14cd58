/* SPDX-License-Identifier: MIT */
/*
 * test_memslot_hint - the vCPU's last-used-slot hint (memslot.h) never
 * stands for a slot that is not in the array being read:
 *
 *  - during a delete or a move, between the array that marks the slot
 *    invalid and the final one (the mappings of the old range are gone
 *    then), a fault whose hint still names the old, valid slot retries;
 *    it does not map the old host memory, and nothing maps the old range
 *    once the update returns.  The test holds the update in that window:
 *    a read section of its own delays the update's first grace period
 *    until an MMU-notifier invalidation has started, and the update cannot
 *    publish its final array until that invalidation ends;
 *  - after a move, a delete and re-create, or a flags change, the hinted
 *    slot is freed: faults find the new slot (new host memory, new gpa)
 *    or none, and ASan sees no read of the freed one.
 *
 * Both slot-zap modes.  Without the generation check in
 * vmmu_gfn_to_memslot_hint() the first test fails in every build (the
 * fault maps and returns FIXED); the second fails under ASan.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <vmmu/hostmem.h>
#include <vmmu/hw.h>
#include <vmmu/vmmu.h>

#include "mmu_internal.h"
#include "../common/vm_env.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>

#define GPA ENV_GPA
#define GPA2 (ENV_GPA + (1ull << 30))
#define SIZE (2ull << 20)
#define QUAL_WRITE VMMU_EPT_ACC_WRITE
/* A host range no slot maps: an invalidation of it changes no mapping. */
#define UNRELATED_HVA 0x10000ull

struct update {
	struct vmmu_vm *vm;
	struct vmmu_userspace_memory_region mr;
	int r;
};

static void *update_thread(void *arg)
{
	struct update *u = arg;

	u->r = vmmu_set_user_memory_region(u->vm, &u->mr);
	return NULL;
}

/* Is the published array of address space 0 the delete's or move's first
 * one: slot 0 alone, marked invalid? */
static bool slot_marked_invalid(struct vmmu_vm *vm)
{
	struct vmmu_memslots *s;
	bool inv;

	vmmu_rcu_read_lock();
	s = vmmu_rcu_dereference(vm->memslots[0]);
	inv = s->nr == 1 && s->slots[0]->invalid;
	vmmu_rcu_read_unlock();
	return inv;
}

static int fault(struct env *e, uint64_t gpa)
{
	return vmmu_vcpu_page_fault(e->vcpu, gpa, QUAL_WRITE);
}

static bool mapped(struct env *e, uint64_t gpa)
{
	void *hva;
	int level;
	uint64_t spte;

	return vmmu_debug_lookup(e->vm, 0, gpa, &hva, &level, &spte) == 0;
}

/*
 * Fault page 0 (the hint now names the slot), then start a delete (@move:
 * a move to GPA2) on another thread and hold it between its two arrays:
 * our read section keeps its first grace period from ending until a
 * notifier invalidation has started, which keeps the final array from
 * being published until its end.  Once the old range is zapped, fault
 * page 1, with the hint still naming the old slot (not freed yet: that
 * comes after the final array).
 */
static void check_window(unsigned slot_zap, bool move)
{
	struct update u;
	struct env e;
	pthread_t t;
	uint8_t v;
	int r;

	vm_env_init(&e, VMMU_BACKING_ANONYMOUS, SIZE,
		    (struct vmmu_vm_config){ .slot_zap = slot_zap });
	u = (struct update){ .vm = e.vm,
			     .mr = { .slot = 0,
				     .guest_phys_addr = move ? GPA2 : GPA,
				     .memory_size = move ? SIZE : 0,
				     .userspace_addr = (uintptr_t)e.mem } };
	assert_int_equal(fault(&e, GPA), VMMU_PF_FIXED);
	assert_true(mapped(&e, GPA));
	assert_non_null(e.vcpu->slot_hint.slot);

	vmmu_rcu_read_lock();
	assert_int_equal(pthread_create(&t, NULL, update_thread, &u), 0);
	while (!slot_marked_invalid(e.vm))
		sched_yield();
	assert_int_equal(
		vmmu_notify_invalidate_range_start(e.vm, UNRELATED_HVA, UNRELATED_HVA + 4096), 0);
	vmmu_rcu_read_unlock();
	/* The update zaps the old range, then waits for our end. */
	while (mapped(&e, GPA))
		sched_yield();
	assert_true(slot_marked_invalid(e.vm));
	/* The hint names the old slot, valid; the array says invalid: the
	 * array wins. */
	r = fault(&e, GPA + 4096);
	assert_int_equal(
		vmmu_notify_invalidate_range_end(e.vm, UNRELATED_HVA, UNRELATED_HVA + 4096), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(u.r, 0);
	assert_int_equal(r, VMMU_PF_RETRY);

	/* Nothing maps the old range: an access there exits. */
	assert_false(mapped(&e, GPA));
	assert_false(mapped(&e, GPA + 4096));
	assert_int_equal(fault(&e, GPA + 4096), VMMU_PF_EMULATE);
	if (move) {
		/* The vCPU sees the memory at its new gpa. */
		e.mem[4096] = 0x5a;
		assert_int_equal(fault(&e, GPA2 + 4096), VMMU_PF_FIXED);
		assert_int_equal(vmmu_hw_read(e.hw, GPA2 + 4096, &v, 1), 0);
		vmmu_hw_guest_exit(e.hw);
		assert_int_equal(v, 0x5a);
		u.mr.guest_phys_addr = GPA;
		assert_int_equal(vmmu_set_user_memory_region(e.vm, &u.mr), 0);
	} else {
		assert_int_equal(set_slot(&e, 0), 0);
	}
	env_fini(&e);
}

static void test_window_delete_range(void **state)
{
	(void)state;
	check_window(VMMU_SLOT_ZAP_RANGE, false);
}

static void test_window_move_range(void **state)
{
	(void)state;
	check_window(VMMU_SLOT_ZAP_RANGE, true);
}

static void test_window_delete_all_fast(void **state)
{
	(void)state;
	check_window(VMMU_SLOT_ZAP_ALL_FAST, false);
}

static void test_window_move_all_fast(void **state)
{
	(void)state;
	check_window(VMMU_SLOT_ZAP_ALL_FAST, true);
}

/*
 * The hinted slot is replaced (and freed) by each update: a move, a
 * delete and a re-create over other host memory, a flags change.  Each
 * fault after it uses the new slot.
 */
static void check_after(unsigned slot_zap)
{
	struct vmmu_userspace_memory_region mr;
	uint8_t *mem2, v;
	struct env e;

	vm_env_init(&e, VMMU_BACKING_ANONYMOUS, SIZE,
		    (struct vmmu_vm_config){ .slot_zap = slot_zap });
	assert_int_equal(vmmu_hostmem_alloc(e.hm, VMMU_BACKING_ANONYMOUS, SIZE, 0, (void **)&mem2),
			 0);
	mr = (struct vmmu_userspace_memory_region){ .slot = 0,
						    .guest_phys_addr = GPA2,
						    .memory_size = SIZE,
						    .userspace_addr = (uintptr_t)e.mem };

	/* Move: the old gpa has no slot, the new one is the old memory. */
	assert_int_equal(fault(&e, GPA), VMMU_PF_FIXED);
	assert_int_equal(vmmu_set_user_memory_region(e.vm, &mr), 0);
	assert_int_equal(fault(&e, GPA), VMMU_PF_EMULATE);
	e.mem[2 * 4096] = 1;
	assert_int_equal(fault(&e, GPA2 + 2 * 4096), VMMU_PF_FIXED);
	assert_int_equal(vmmu_hw_read(e.hw, GPA2 + 2 * 4096, &v, 1), 0);
	vmmu_hw_guest_exit(e.hw);
	assert_int_equal(v, 1);

	/* Delete, and re-create at the same gpa over other memory. */
	mr.memory_size = 0;
	assert_int_equal(vmmu_set_user_memory_region(e.vm, &mr), 0);
	assert_int_equal(fault(&e, GPA2 + 3 * 4096), VMMU_PF_EMULATE);
	mr.memory_size = SIZE;
	mr.userspace_addr = (uintptr_t)mem2;
	assert_int_equal(vmmu_set_user_memory_region(e.vm, &mr), 0);
	e.mem[3 * 4096] = 2;
	mem2[3 * 4096] = 3;
	assert_int_equal(fault(&e, GPA2 + 3 * 4096), VMMU_PF_FIXED);
	assert_int_equal(vmmu_hw_read(e.hw, GPA2 + 3 * 4096, &v, 1), 0);
	vmmu_hw_guest_exit(e.hw);
	assert_int_equal(v, 3);

	/* Flags change: read-only stays, logging starts; the write below is
	 * logged in the new slot's bitmap. */
	mr.flags = VMMU_MEM_LOG_DIRTY_PAGES;
	assert_int_equal(vmmu_set_user_memory_region(e.vm, &mr), 0);
	assert_int_equal(fault(&e, GPA2 + 4 * 4096), VMMU_PF_FIXED);
	{
		uint64_t bm[SIZE / 4096 / 64] = { 0 };

		assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
		assert_true(bm[0] & (1ull << 4));
	}

	/* Back where env_fini expects it. */
	mr = (struct vmmu_userspace_memory_region){ .slot = 0 };
	assert_int_equal(vmmu_set_user_memory_region(e.vm, &mr), 0);
	assert_int_equal(set_slot(&e, 0), 0);
	assert_int_equal(vmmu_hostmem_free(e.hm, mem2), 0);
	env_fini(&e);
}

static void test_after_range(void **state)
{
	(void)state;
	check_after(VMMU_SLOT_ZAP_RANGE);
}

static void test_after_all_fast(void **state)
{
	(void)state;
	check_after(VMMU_SLOT_ZAP_ALL_FAST);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_window_delete_range),
		cmocka_unit_test(test_window_move_range),
		cmocka_unit_test(test_window_delete_all_fast),
		cmocka_unit_test(test_window_move_all_fast),
		cmocka_unit_test(test_after_range),
		cmocka_unit_test(test_after_all_fast),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
