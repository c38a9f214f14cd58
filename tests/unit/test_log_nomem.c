/* SPDX-License-Identifier: MIT */
/*
 * test_log_nomem - enabling dirty logging protects every leaf of the slot
 * whatever allocation fails.
 *
 * The story: when logging started, the split-and-
 * protect walk first copied the root list into an array it allocated; if
 * that allocation failed it returned before protecting anything, and the
 * caller ignored the error.  The slot was logged, but its leaves stayed
 * writable: writes through them were never reported.  The root iterator
 * now allocates nothing, and a split that cannot get a table
 * write-protects the huge leaf instead.
 *
 * Every allocation the call makes is failed in turn, first the page-table
 * pool's (vmmu_pool_fail_after), then the C library's malloc and calloc as
 * called from the library (the link wraps them for this program only,
 * -Wl,--wrap).  After each call: if it failed, the slot is not logged;
 * if it succeeded, no leaf mapping the slot is writable (write-protect
 * mode, so W is the protection), and after a write to every page the next
 * harvest reports every page.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "../common/vm_env.h"

#include <stdlib.h>

#define SIZE (4ull << 20)
#define PAGES (SIZE / 4096)

#include "../common/alloc_fail.h"

/* No present leaf overlapping the slot is writable, in any root. */
static void assert_slot_protected(struct env *e)
{
	uint64_t start = ENV_GPA >> 12, end = start + PAGES;
	struct vmmu_sp *root;
	struct tdp_iter iter;

	vmmu_read_lock(&e->vm->mmu_lock);
	vmmu_rcu_read_lock();
	vmmu_list_for_each_entry_rcu(root, &e->vm->roots, link)
	{
		for_each_tdp_pte(iter, sp_spt(e->vm, root), (int)root->role.level, start, end) {
			if (!is_present_leaf(iter.old_spte, iter.level))
				continue;
			if (is_writable_pte(iter.old_spte))
				fail_msg("gfn %#llx level %d writable after logging started",
					 (unsigned long long)iter.gfn, iter.level);
		}
	}
	vmmu_rcu_read_unlock();
	vmmu_read_unlock(&e->vm->mmu_lock);
}

/* One run with allocation @n failed.  Returns false once @n is past the
 * last allocation the call makes. */
static bool enable_logging_failing(bool pool, int64_t n)
{
	uint64_t bitmap[PAGES / 64];
	uint64_t pool_failures;
	bool failed;
	struct env e;
	int r;

	vm_env_init(&e, VMMU_BACKING_ANONYMOUS_THP, SIZE,
		    (struct vmmu_vm_config){ .dirty_log_wrprot = true });
	touch_all(&e);
	if (n == 0) {
		struct vmmu_vm_stats vs;

		assert_int_equal(vmmu_vm_stats(e.vm, &vs), 0);
		print_message("%llu of %llu 2M leaves from THP before logging starts\n",
			      (unsigned long long)vs.pages_2m, (unsigned long long)(SIZE >> 21));
	}
	pool_failures = e.vm->pool.failures;
	if (pool) {
		vmmu_pool_fail_after(&e.vm->pool, n);
	} else {
		injected = 0;
		fail_countdown = n;
		armed = true;
	}
	r = set_slot(&e, VMMU_MEM_LOG_DIRTY_PAGES);
	armed = false;
	vmmu_pool_fail_after(&e.vm->pool, -1);
	failed = pool ? e.vm->pool.failures != pool_failures : injected != 0;

	if (r) {
		/* Refused: nothing changed, the slot is not logged. */
		assert_int_equal(r, -ENOMEM);
		assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bitmap), -ENOENT);
	} else {
		assert_slot_protected(&e);
		/* Start from a clean log, then every page written is reported. */
		assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bitmap), 0);
		touch_all(&e);
		assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bitmap), 0);
		for (uint64_t w = 0; w < PAGES / 64; w++)
			assert_int_equal(bitmap[w], UINT64_MAX);
	}
	env_fini(&e);
	return failed;
}

static void test_pool_failures(void **state)
{
	int64_t n = 0;

	(void)state;
	while (enable_logging_failing(true, n))
		n++;
	print_message("%lld pool allocation(s) failed in turn\n", (long long)n);
}

static void test_malloc_failures(void **state)
{
	int64_t n = 0;

	(void)state;
	while (enable_logging_failing(false, n))
		n++;
	print_message("%lld malloc/calloc call(s) failed in turn\n", (long long)n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pool_failures),
		cmocka_unit_test(test_malloc_failures),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
