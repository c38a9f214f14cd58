/* SPDX-License-Identifier: MIT */
/*
 * test_aging - aging and idle-page tracking, with EPT A/D bits (the
 * Accessed bit) and without (the access-tracked encoding): a page used
 * after being marked idle is young, one not used stays idle; the host
 * notifiers over hva ranges agree; aging changes no translation, no
 * statistic and no dirty state; every bad argument is refused and changes
 * nothing.
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
#include <string.h>

#define GPA ENV_GPA
#define SIZE (4ull << 20)
#define NPAGES (SIZE / 4096)
#define WORDS (NPAGES / 64)

/* Every page mapped (written once) before the test begins. */
static void env_init(struct env *e, struct vmmu_vm_config cfg)
{
	vm_env_init(e, VMMU_BACKING_ANONYMOUS, SIZE, cfg);
	touch_all(e);
}

static void access_page(struct env *e, uint64_t page, bool write)
{
	uint64_t v = page;

	if (write)
		assert_int_equal(vmmu_hw_write(e->hw, GPA + page * 4096, &v, sizeof(v)), 0);
	else
		assert_int_equal(vmmu_hw_read(e->hw, GPA + page * 4096, &v, sizeof(v)), 0);
	assert_int_equal(v, page);
	vmmu_hw_guest_exit(e->hw);
}

static uint64_t idle_pages(struct env *e, uint64_t *mapped)
{
	uint64_t idle = 0;

	assert_int_equal(vmmu_idle_count(e->vm, 0, GPA, SIZE, &idle, mapped), 0);
	return idle;
}

static uint64_t page_hva(struct env *e, uint64_t page)
{
	return (uint64_t)(uintptr_t)e->mem + page * 4096;
}

static bool test_young_page(struct env *e, uint64_t page)
{
	bool young = false;

	assert_int_equal(vmmu_notify_test_young(e->vm, page_hva(e, page), page_hva(e, page) + 4096,
						&young),
			 0);
	return young;
}

/*
 * Mark everything idle, then use every third page (reads and writes):
 * exactly those are young, the rest stayed idle.  Nothing else changed.
 */
static void check_idle_tracking(bool ad)
{
	struct vmmu_vm_stats before, after;
	uint64_t mapped = 0, used = 0;
	struct env e;

	env_init(&e, (struct vmmu_vm_config){ .disable_ept_ad = !ad });
	assert_int_equal(vmmu_vm_stats(e.vm, &before), 0);
	assert_int_equal(idle_pages(&e, &mapped), 0);
	assert_int_equal(mapped, NPAGES);
	assert_int_equal(vmmu_idle_mark(e.vm, 0, GPA, SIZE), 0);
	assert_int_equal(idle_pages(&e, &mapped), NPAGES);
	assert_int_equal(mapped, NPAGES);
	for (uint64_t p = 0; p < NPAGES; p++) {
		uint64_t s;

		assert_int_equal(vmmu_debug_lookup(e.vm, 0, GPA + p * 4096, NULL, NULL, &s), 0);
		assert_true(s & SPTE_MMU_WRITABLE);
		if (ad)
			assert_int_equal(s & EPT_RWX_MASK, EPT_RWX_MASK);
		else
			assert_true(is_access_track_spte(s));
	}
	for (uint64_t p = 0; p < NPAGES; p += 3) {
		access_page(&e, p, p % 2);
		used++;
	}
	assert_int_equal(idle_pages(&e, NULL), NPAGES - used);
	for (uint64_t p = 0; p < 30; p++)
		assert_int_equal(test_young_page(&e, p), p % 3 == 0);
	/* Pages are where they were, stats did not move. */
	for (uint64_t p = 0; p < NPAGES; p += 7)
		access_page(&e, p, false);
	assert_int_equal(vmmu_vm_stats(e.vm, &after), 0);
	assert_int_equal(after.pages_4k, before.pages_4k);
	assert_int_equal(after.pt_pages, before.pt_pages);
	/* Marking again makes every page idle again. */
	assert_int_equal(vmmu_idle_mark(e.vm, 0, GPA, SIZE), 0);
	assert_int_equal(idle_pages(&e, NULL), NPAGES);
	env_fini(&e);
}

static void test_idle_tracking_ad(void **state)
{
	(void)state;
	check_idle_tracking(true);
}

static void test_idle_tracking_access_tracked(void **state)
{
	(void)state;
	check_idle_tracking(false);
}

/* The notifiers over hva ranges: clear_young reports young once, then
 * not; test_young only looks; clear_flush_young sees a new access. */
static void check_notifiers(bool ad)
{
	uint64_t lo = 0, hi = 0;
	struct env e;
	bool young;

	env_init(&e, (struct vmmu_vm_config){ .disable_ept_ad = !ad });
	lo = page_hva(&e, 0);
	hi = page_hva(&e, NPAGES);
	young = false;
	assert_int_equal(vmmu_notify_test_young(e.vm, lo, hi, &young), 0);
	assert_true(young);
	assert_int_equal(vmmu_notify_clear_young(e.vm, lo, hi, &young), 0);
	assert_true(young);
	assert_int_equal(vmmu_notify_clear_young(e.vm, lo, hi, &young), 0);
	assert_false(young);
	assert_int_equal(vmmu_notify_test_young(e.vm, lo, hi, &young), 0);
	assert_false(young);
	/* clear_young does not flush: make the next access walk. */
	assert_int_equal(vmmu_hw_tlb_flush(e.hw), 0);
	access_page(&e, 100, true);
	assert_int_equal(vmmu_notify_test_young(e.vm, page_hva(&e, 101), hi, &young), 0);
	assert_false(young);
	assert_true(test_young_page(&e, 100));
	assert_int_equal(vmmu_notify_clear_flush_young(e.vm, lo, hi, &young), 0);
	assert_true(young);
	assert_false(test_young_page(&e, 100));
	/* clear_flush_young flushed the TLB: the next access is seen. */
	access_page(&e, 100, false);
	assert_true(test_young_page(&e, 100));
	/* A range outside every slot: nothing young, nothing done. */
	assert_int_equal(vmmu_notify_clear_young(e.vm, hi, hi + 4096, &young), 0);
	assert_false(young);
	env_fini(&e);
}

static void test_notifiers_ad(void **state)
{
	(void)state;
	check_notifiers(true);
}

static void test_notifiers_access_tracked(void **state)
{
	(void)state;
	check_notifiers(false);
}

/*
 * Aging never loses dirty state.  Write-protect logging without A/D bits:
 * a page written (and logged), aged (W dropped), harvested: still
 * reported; written again after the harvest: reported again.  With A/D
 * bits in dirty-bit mode, aging clears A only, D stays.
 */
static void test_aging_keeps_dirty(void **state)
{
	uint64_t bm[WORDS], s;
	struct env e;

	(void)state;
	env_init(&e, (struct vmmu_vm_config){ .disable_ept_ad = true });
	assert_int_equal(set_slot(&e, VMMU_MEM_LOG_DIRTY_PAGES), 0);
	access_page(&e, 5, true);
	assert_int_equal(vmmu_idle_mark(e.vm, 0, GPA, SIZE), 0);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
	assert_int_equal(bm[0], 1ull << 5);
	access_page(&e, 5, true);
	access_page(&e, 6, false);
	assert_int_equal(vmmu_idle_mark(e.vm, 0, GPA, SIZE), 0);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
	assert_int_equal(bm[0], 1ull << 5);
	env_fini(&e);

	env_init(&e, (struct vmmu_vm_config){ 0 });
	assert_int_equal(set_slot(&e, VMMU_MEM_LOG_DIRTY_PAGES), 0);
	access_page(&e, 5, true);
	assert_int_equal(vmmu_debug_lookup(e.vm, 0, GPA + 5 * 4096, NULL, NULL, &s), 0);
	assert_true(s & EPT_DIRTY);
	assert_int_equal(vmmu_idle_mark(e.vm, 0, GPA, SIZE), 0);
	assert_int_equal(vmmu_debug_lookup(e.vm, 0, GPA + 5 * 4096, NULL, NULL, &s), 0);
	assert_true(s & EPT_DIRTY);
	assert_false(s & EPT_ACCESSED);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
	assert_int_equal(bm[0], 1ull << 5);
	env_fini(&e);
}

/* Bad arguments: -EINVAL, outputs untouched, nothing aged. */
static void test_errors(void **state)
{
	uint64_t idle = 77, mapped = 88, hva;
	struct env e;
	bool young = true;

	(void)state;
	env_init(&e, (struct vmmu_vm_config){ 0 });
	hva = page_hva(&e, 0);
	assert_int_equal(vmmu_notify_clear_young(NULL, hva, hva + 4096, &young), -EINVAL);
	assert_int_equal(vmmu_notify_clear_young(e.vm, hva, hva + 4096, NULL), -EINVAL);
	assert_int_equal(vmmu_notify_clear_young(e.vm, hva + 4096, hva, &young), -EINVAL);
	assert_int_equal(vmmu_notify_clear_flush_young(e.vm, hva + 1, hva, &young), -EINVAL);
	assert_int_equal(vmmu_notify_test_young(e.vm, hva + 1, hva, &young), -EINVAL);
	assert_int_equal(vmmu_notify_test_young(NULL, hva, hva, &young), -EINVAL);
	assert_true(young);
	assert_int_equal(vmmu_idle_mark(NULL, 0, GPA, SIZE), -EINVAL);
	assert_int_equal(vmmu_idle_mark(e.vm, VMMU_ADDRESS_SPACES, GPA, SIZE), -EINVAL);
	assert_int_equal(vmmu_idle_mark(e.vm, 0, GPA + 1, SIZE), -EINVAL);
	assert_int_equal(vmmu_idle_mark(e.vm, 0, GPA, 100), -EINVAL);
	assert_int_equal(vmmu_idle_mark(e.vm, 0, ~0ull << 12, 8192), -EINVAL);
	assert_int_equal(vmmu_idle_mark(e.vm, 0, 1ull << 48, 4096), -EINVAL);
	assert_int_equal(vmmu_idle_count(e.vm, 0, GPA, SIZE, NULL, &mapped), -EINVAL);
	assert_int_equal(vmmu_idle_count(e.vm, 0, GPA, 4095, &idle, &mapped), -EINVAL);
	assert_int_equal(vmmu_idle_count(e.vm, 2, GPA, SIZE, &idle, &mapped), -EINVAL);
	assert_int_equal(idle, 77);
	assert_int_equal(mapped, 88);
	/* Nothing was aged by the refused calls. */
	assert_int_equal(idle_pages(&e, NULL), 0);
	/* An empty range is fine. */
	assert_int_equal(vmmu_idle_mark(e.vm, 0, GPA, 0), 0);
	assert_int_equal(vmmu_idle_count(e.vm, 0, GPA, 0, &idle, NULL), 0);
	assert_int_equal(idle, 0);
	env_fini(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_idle_tracking_ad),
		cmocka_unit_test(test_idle_tracking_access_tracked),
		cmocka_unit_test(test_notifiers_ad),
		cmocka_unit_test(test_notifiers_access_tracked),
		cmocka_unit_test(test_aging_keeps_dirty),
		cmocka_unit_test(test_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
