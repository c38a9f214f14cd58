/* SPDX-License-Identifier: MIT */
/*
 * test_notifier - MMU-notifier invalidations against the fault path, and
 * huge-page level selection against host backings.
 *
 * The races are replayed deterministically with the fault path's test hook,
 * which runs after the fault has snapshotted the invalidation sequence and
 * looked up its host page, and before it takes the MMU lock: exactly the
 * window in which KVM's "sign-extension bug with mmu_seq" and the missing
 * in-progress checks let stale host pages be installed.
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
#include <sys/mman.h>

#define GPA (1ull << 32)
#define SIZE (8ull << 20)

struct env {
	struct vmmu_hostmem *hm;
	struct vmmu_vm *vm;
	struct vmmu_vcpu *vcpu;
	struct vmmu_hw_vcpu *hw;
	uint8_t *mem;
};

static void env_init(struct env *e, enum vmmu_backing b, uint64_t size, uint64_t gpa)
{
	struct vmmu_userspace_memory_region r;

	memset(e, 0, sizeof(*e));
	assert_int_equal(vmmu_hostmem_create(&e->hm), 0);
	assert_int_equal(vmmu_hostmem_alloc(e->hm, b, size, 0, (void **)&e->mem), 0);
	assert_int_equal(vmmu_vm_create(&(struct vmmu_vm_config){ .hostmem = e->hm }, &e->vm), 0);
	r = (struct vmmu_userspace_memory_region){ .slot = 0, .guest_phys_addr = gpa,
						   .memory_size = size,
						   .userspace_addr = (uintptr_t)e->mem };
	assert_int_equal(vmmu_set_user_memory_region(e->vm, &r), 0);
	assert_int_equal(vmmu_vcpu_create(e->vm, 0, &e->vcpu), 0);
	assert_int_equal(vmmu_hw_vcpu_create(e->vcpu, NULL, &e->hw), 0);
}

static void env_fini(struct env *e)
{
	assert_int_equal(vmmu_hw_vcpu_destroy(e->hw), 0);
	assert_int_equal(vmmu_vm_destroy(e->vm), 0);
	assert_int_equal(vmmu_hostmem_free(e->hm, e->mem), 0);
	assert_int_equal(vmmu_hostmem_destroy(e->hm), 0);
}

static bool mapped(struct env *e, uint64_t gpa)
{
	return vmmu_debug_lookup(e->vm, 0, gpa, NULL, NULL, NULL) == 0;
}

/* What the hook does inside the fault's window. */
enum hook_action {
	HOOK_START_END_SAME,  /* a whole invalidation of the fault's page */
	HOOK_START_SAME,      /* an invalidation of the fault's page begins */
	HOOK_START_END_OTHER, /* a whole invalidation of another page */
	HOOK_START_OTHER,     /* an invalidation of another page begins */
};

struct hook {
	struct env *e;
	enum hook_action action;
	uint64_t hva_same, hva_other;
	int calls;
};

static void fault_hook(struct vmmu_vcpu *vcpu, uint64_t gfn, void *arg)
{
	struct hook *h = arg;
	struct vmmu_vm *vm = h->e->vm;

	(void)vcpu;
	(void)gfn;
	h->calls++;
	switch (h->action) {
	case HOOK_START_END_SAME:
		vmmu_notify_invalidate_range_start(vm, h->hva_same, h->hva_same + 4096);
		vmmu_notify_invalidate_range_end(vm, h->hva_same, h->hva_same + 4096);
		break;
	case HOOK_START_SAME:
		vmmu_notify_invalidate_range_start(vm, h->hva_same, h->hva_same + 4096);
		break;
	case HOOK_START_END_OTHER:
		vmmu_notify_invalidate_range_start(vm, h->hva_other, h->hva_other + 4096);
		vmmu_notify_invalidate_range_end(vm, h->hva_other, h->hva_other + 4096);
		break;
	case HOOK_START_OTHER:
		vmmu_notify_invalidate_range_start(vm, h->hva_other, h->hva_other + 4096);
		break;
	}
	/* One race per test: the retried fault runs undisturbed. */
	vm->test_fault_hook = NULL;
}

static int fault(struct env *e, uint64_t gpa)
{
	return vmmu_vcpu_page_fault(e->vcpu, gpa, VMMU_EPT_ACC_WRITE);
}

static void run_race(enum hook_action action, int expect_first)
{
	struct env e;
	struct hook h;
	uint64_t gpa = GPA + 5 * 4096;

	env_init(&e, VMMU_BACKING_ANONYMOUS, SIZE, GPA);
	h = (struct hook){ .e = &e, .action = action,
			   .hva_same = (uintptr_t)e.mem + 5 * 4096,
			   .hva_other = (uintptr_t)e.mem + 700 * 4096 };
	e.vm->test_fault_hook = fault_hook;
	e.vm->test_fault_hook_arg = &h;

	assert_int_equal(fault(&e, gpa), expect_first);
	assert_int_equal(h.calls, 1);
	assert_int_equal(mapped(&e, gpa), expect_first == VMMU_PF_FIXED);

	if (action == HOOK_START_SAME) {
		/* Still in progress: the fault keeps retrying until the end. */
		assert_int_equal(fault(&e, gpa), VMMU_PF_RETRY);
		assert_false(mapped(&e, gpa));
		vmmu_notify_invalidate_range_end(e.vm, h.hva_same, h.hva_same + 4096);
	}
	if (action == HOOK_START_OTHER)
		vmmu_notify_invalidate_range_end(e.vm, h.hva_other, h.hva_other + 4096);
	if (expect_first != VMMU_PF_FIXED) {
		assert_int_equal(fault(&e, gpa), VMMU_PF_FIXED);
		assert_true(mapped(&e, gpa));
	}
	env_fini(&e);
}

/* An invalidation of the page that began and ended after the snapshot. */
static void test_race_start_end_same(void **state)
{
	(void)state;
	run_race(HOOK_START_END_SAME, VMMU_PF_RETRY);
}

/* An invalidation of the page in progress when the fault takes the lock. */
static void test_race_in_progress_same(void **state)
{
	(void)state;
	run_race(HOOK_START_SAME, VMMU_PF_RETRY);
}

/* Any completed invalidation moves the sequence: retry, conservatively. */
static void test_race_start_end_other(void **state)
{
	(void)state;
	run_race(HOOK_START_END_OTHER, VMMU_PF_RETRY);
}

/* An invalidation in progress elsewhere does not hold this fault up. */
static void test_race_in_progress_other(void **state)
{
	(void)state;
	run_race(HOOK_START_OTHER, VMMU_PF_FIXED);
}

/* start zaps what is mapped, faults retry until end, then map again. */
static void test_start_zaps_and_blocks(void **state)
{
	struct env e;
	uint64_t v = 7, hva;

	(void)state;
	env_init(&e, VMMU_BACKING_ANONYMOUS, SIZE, GPA);
	for (int i = 0; i < 16; i++)
		assert_int_equal(vmmu_hw_write(e.hw, GPA + i * 4096ull, &v, 8), 0);
	vmmu_hw_guest_exit(e.hw);
	hva = (uintptr_t)e.mem + 4 * 4096;
	assert_int_equal(vmmu_notify_invalidate_range_start(e.vm, hva, hva + 4 * 4096), 0);
	for (int i = 0; i < 16; i++)
		assert_int_equal(mapped(&e, GPA + i * 4096ull), i < 4 || i >= 8);
	assert_int_equal(fault(&e, GPA + 5 * 4096), VMMU_PF_RETRY);
	assert_int_equal(vmmu_notify_invalidate_range_end(e.vm, hva, hva + 4 * 4096), 0);
	assert_int_equal(fault(&e, GPA + 5 * 4096), VMMU_PF_FIXED);
	/* An end without a start is refused. */
	assert_int_equal(vmmu_notify_invalidate_range_start(e.vm, 2, 1), -EINVAL);
	env_fini(&e);
}

/* Discarding host memory through hostmem: the guest reads zeros, then
 * what the host writes afterwards. */
static void test_discard_through_hostmem(void **state)
{
	struct env e;
	uint64_t v = 0x1234, r = 1;

	(void)state;
	env_init(&e, VMMU_BACKING_ANONYMOUS, SIZE, GPA);
	assert_int_equal(vmmu_hw_write(e.hw, GPA + 3 * 4096, &v, 8), 0);
	vmmu_hw_guest_exit(e.hw);
	assert_true(mapped(&e, GPA + 3 * 4096));
	assert_int_equal(vmmu_hostmem_discard(e.hm, e.mem + 3 * 4096, 4096), 0);
	assert_false(mapped(&e, GPA + 3 * 4096));
	assert_int_equal(vmmu_hw_read(e.hw, GPA + 3 * 4096, &r, 8), 0);
	assert_int_equal(r, 0);
	/* Read-only host memory: writes fault to the caller, reads work. */
	vmmu_hw_guest_exit(e.hw);
	assert_int_equal(vmmu_hostmem_protect(e.hm, e.mem, 1), 0);
	assert_int_equal(vmmu_hw_write(e.hw, GPA, &v, 8), -EFAULT);
	assert_int_equal(vmmu_hw_read(e.hw, GPA + 3 * 4096, &r, 8), 0);
	vmmu_hw_guest_exit(e.hw);
	assert_int_equal(vmmu_hostmem_protect(e.hm, e.mem, 0), 0);
	assert_int_equal(vmmu_hw_write(e.hw, GPA, &v, 8), 0);
	vmmu_hw_guest_exit(e.hw);
	/* Bad ranges change nothing. */
	assert_int_equal(vmmu_hostmem_discard(e.hm, e.mem + 1, 4096), -EINVAL);
	assert_int_equal(vmmu_hostmem_discard(e.hm, e.mem, SIZE + 4096), -EINVAL);
	env_fini(&e);
}

/*
 * Level selection: THP-backed memory (huge where the kernel really backs
 * it) and a slot whose head and tail are not 2 MiB aligned: no leaf may
 * stick out of the slot, every translation is exact.
 */
static void test_levels_thp_misaligned_slot(void **state)
{
	struct env e;
	struct vmmu_userspace_memory_region r;
	struct vmmu_vm_stats st;
	uint64_t v;

	(void)state;
	env_init(&e, VMMU_BACKING_ANONYMOUS_THP, SIZE, GPA);
	/* A second slot on the same host memory: 5 MiB + 12 KiB starting 8 KiB
	 * into a 2 MiB frame, so only the middle frame may be huge. */
	r = (struct vmmu_userspace_memory_region){ .slot = 1,
						   .guest_phys_addr = GPA + (64ull << 20) + 8192,
						   .memory_size = (5ull << 20) + 12288,
						   .userspace_addr = (uintptr_t)e.mem + 8192 };
	assert_int_equal(vmmu_set_user_memory_region(e.vm, &r), 0);
	for (uint64_t off = 0; off < SIZE; off += 4096) {
		v = off;
		assert_int_equal(vmmu_hw_write(e.hw, GPA + off, &v, 8), 0);
	}
	for (uint64_t off = 0; off < r.memory_size; off += 4096)
		assert_int_equal(vmmu_hw_read(e.hw, r.guest_phys_addr + off, &v, 8), 0);
	vmmu_hw_guest_exit(e.hw);
	for (uint64_t off = 0; off < SIZE; off += 4096) {
		void *hva;
		int level;

		assert_int_equal(vmmu_debug_lookup(e.vm, 0, GPA + off + 8, &hva, &level, NULL), 0);
		assert_ptr_equal(hva, e.mem + off + 8);
		if (vmmu_hostmem_level(e.hm, (uintptr_t)e.mem + off) == 1)
			assert_int_equal(level, 1);
	}
	for (uint64_t off = 0; off < r.memory_size; off += 4096) {
		void *hva;
		int level;
		uint64_t gpa = r.guest_phys_addr + off;

		assert_int_equal(vmmu_debug_lookup(e.vm, 0, gpa, &hva, &level, NULL), 0);
		assert_ptr_equal(hva, e.mem + 8192 + off);
		/* The huge frame containing gpa must lie inside the slot. */
		if (level == 2) {
			uint64_t f = gpa & ~((2ull << 20) - 1);
			assert_true(f >= r.guest_phys_addr &&
				    f + (2ull << 20) <= r.guest_phys_addr + r.memory_size);
		}
	}
	assert_int_equal(vmmu_vm_stats(e.vm, &st), 0);
	/* At least the one fully contained, congruent 2 MiB frame of slot 1
	 * and the first slot's frames are huge when THP really backs them. */
	if (vmmu_hostmem_level(e.hm, (uintptr_t)e.mem) == 2)
		assert_true(st.pages_2m >= 1);
	env_fini(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_race_start_end_same),
		cmocka_unit_test(test_race_in_progress_same),
		cmocka_unit_test(test_race_start_end_other),
		cmocka_unit_test(test_race_in_progress_other),
		cmocka_unit_test(test_start_zaps_and_blocks),
		cmocka_unit_test(test_discard_through_hostmem),
		cmocka_unit_test(test_levels_thp_misaligned_slot),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
