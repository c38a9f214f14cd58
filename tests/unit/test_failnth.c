/* SPDX-License-Identifier: MIT */
/*
 * test_failnth - allocation failure at every site (fail-nth).
 *
 * For each scenario (populate by guest writes, pre-fault, eager split when
 * logging starts, huge-page recovery when it stops, direct build, memslot
 * updates, dirty-ring reset), a clean run first counts the page-table
 * pages it asks the pool for (N); then the scenario runs N + 1 more times
 * from scratch, failing exactly the n-th request (vmmu_pool_fail_nth), and
 * after each run checks:
 *  - every call returned 0 or an errno its header documents for running
 *    out of memory, and a refused call changed nothing it promises not to;
 *  - every translation is valid (each mapped gfn maps the slot's host
 *    page, nothing outside the slot is mapped);
 *  - no dirty page is lost (logging scenarios: pages written after the
 *    scenario are all in the next harvest);
 *  - after teardown the pool is back to zero (env_fini), and ASan sees no
 *    leak in the asan build.
 * Only page-table pages come from the pool; other allocations (bitmaps,
 * memslot arrays, ring buffers: malloc) are not injected here.
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

#define SIZE (2ull << 20)
#define NPAGES (SIZE / 4096)
#define WORDS (NPAGES / 64)

struct scenario {
	const char *name;
	struct vmmu_vm_config cfg;
	enum vmmu_backing backing;
	uint32_t slot_flags; /* the slot as the setup leaves it */
	void (*setup)(struct env *e);
	/* The operation under test; returns how many calls failed with
	 * -ENOMEM (every other outcome is checked inside). */
	int (*run)(struct env *e);
	bool logged_after; /* the slot is logged when run succeeded */
};

/* Every mapped gfn of the slot maps its own host page; nothing else. */
static void check_translations(struct env *e)
{
	for (uint64_t p = 0; p < NPAGES; p++) {
		void *hva;
		int level, rc;
		uint64_t spte;

		rc = vmmu_debug_lookup(e->vm, 0, ENV_GPA + p * 4096, &hva, &level, &spte);
		assert_true(rc == 0 || rc == -ENOENT);
		if (rc == 0)
			assert_ptr_equal(hva, e->mem + p * 4096);
	}
	for (uint64_t p = 1; p <= 4; p++) {
		void *hva;
		int level;
		uint64_t spte;

		assert_int_equal(vmmu_debug_lookup(e->vm, 0, ENV_GPA - p * 4096, &hva, &level,
						   &spte),
				 -ENOENT);
		assert_int_equal(vmmu_debug_lookup(e->vm, 0, ENV_GPA + SIZE + (p - 1) * 4096, &hva,
						   &level, &spte),
				 -ENOENT);
	}
}

/* A guest write that may meet the injected failure once. */
static int write_retry(struct env *e, uint64_t page, uint64_t v, int *nomem)
{
	int rc = vmmu_hw_write(e->hw, ENV_GPA + page * 4096, &v, sizeof(v));

	if (rc == -ENOMEM) {
		(*nomem)++;
		rc = vmmu_hw_write(e->hw, ENV_GPA + page * 4096, &v, sizeof(v));
	}
	return rc;
}

/* --- scenarios ------------------------------------------------------- */

static void setup_none(struct env *e)
{
	(void)e;
}

static void setup_touched(struct env *e)
{
	touch_all(e);
}

static void setup_logged(struct env *e)
{
	touch_all(e);
	assert_int_equal(set_slot(e, VMMU_MEM_LOG_DIRTY_PAGES), 0);
	touch_all(e);
}

static void setup_deleted(struct env *e)
{
	uint64_t size = e->size;

	e->size = 0;
	assert_int_equal(set_slot(e, 0), 0);
	e->size = size;
}

static int run_populate(struct env *e)
{
	int nomem = 0;

	for (uint64_t p = 0; p < NPAGES; p++)
		assert_int_equal(write_retry(e, p, p * 3 + 1, &nomem), 0);
	vmmu_hw_guest_exit(e->hw);
	for (uint64_t p = 0; p < NPAGES; p++)
		assert_int_equal(((uint64_t *)(e->mem + p * 4096))[0], p * 3 + 1);
	return nomem;
}

static int run_prefault(struct env *e)
{
	struct vmmu_pre_fault_memory r = { .gpa = ENV_GPA, .size = SIZE };
	int nomem = 0;

	while (r.size) {
		uint64_t gpa = r.gpa, size = r.size;
		int rc = vmmu_vcpu_pre_fault_memory(e->vcpu, &r);

		if (rc == -ENOMEM) {
			/* Nothing mapped at r.gpa: *range unchanged. */
			assert_int_equal(r.gpa, gpa);
			assert_int_equal(r.size, size);
			assert_true(++nomem < 4);
			continue;
		}
		assert_int_equal(rc, 0);
	}
	return nomem;
}

static int run_start_logging(struct env *e)
{
	int rc = set_slot(e, VMMU_MEM_LOG_DIRTY_PAGES);

	if (rc == -ENOMEM) {
		uint64_t bm[WORDS];

		/* Nothing changed: the slot is not logged. */
		assert_int_equal(vmmu_get_dirty_log(e->vm, 0, bm), -ENOENT);
		return 1;
	}
	assert_int_equal(rc, 0);
	return 0;
}

static int run_stop_logging(struct env *e)
{
	int rc = set_slot(e, 0);

	if (rc == -ENOMEM)
		return 1;
	assert_int_equal(rc, 0);
	return 0;
}

static int run_direct_build(struct env *e)
{
	int rc = set_slot(e, VMMU_MEM_DIRECT_BUILD);
	void *hva;

	if (rc == -ENOMEM) {
		/* The slot was removed again. */
		assert_int_equal(vmmu_gpa_to_hva(e->vm, 0, ENV_GPA, &hva), -ENOENT);
		assert_int_equal(set_slot(e, 0), 0);
		return 1;
	}
	assert_int_equal(rc, 0);
	/* Ordinary slot from now on; put it back to the plain flags the
	 * checks expect (delete, create). */
	{
		uint64_t size = e->size;

		e->size = 0;
		assert_int_equal(set_slot(e, 0), 0);
		e->size = size;
		assert_int_equal(set_slot(e, 0), 0);
	}
	return 0;
}

static int run_memslot_updates(struct env *e)
{
	struct vmmu_userspace_memory_region r = {
		.slot = 0,
		.flags = VMMU_MEM_LOG_DIRTY_PAGES,
		.guest_phys_addr = ENV_GPA + SIZE,
		.memory_size = SIZE,
		.userspace_addr = (uintptr_t)e->mem,
	};
	int nomem = 0, rc;

	/* Move away and back, logged, with writes in between. */
	rc = vmmu_set_user_memory_region(e->vm, &r);
	if (rc == -ENOMEM) {
		nomem++;
	} else {
		assert_int_equal(rc, 0);
		r.guest_phys_addr = ENV_GPA;
		rc = vmmu_set_user_memory_region(e->vm, &r);
		if (rc == -ENOMEM) {
			nomem++;
			r.guest_phys_addr = ENV_GPA + SIZE;
			r.memory_size = 0;
			assert_int_equal(vmmu_set_user_memory_region(e->vm, &r), 0);
			r.memory_size = SIZE;
			r.guest_phys_addr = ENV_GPA;
			assert_int_equal(vmmu_set_user_memory_region(e->vm, &r), 0);
		} else {
			assert_int_equal(rc, 0);
		}
	}
	if (nomem) {
		/* Make sure the slot is at ENV_GPA and logged for the checks. */
		void *hva;

		if (vmmu_gpa_to_hva(e->vm, 0, ENV_GPA, &hva) == 0) {
			rc = set_slot(e, VMMU_MEM_LOG_DIRTY_PAGES);
			assert_true(rc == 0 || rc == -ENOMEM);
			if (rc)
				assert_int_equal(set_slot(e, VMMU_MEM_LOG_DIRTY_PAGES), 0);
		}
	}
	for (uint64_t p = 0; p < NPAGES; p += 7)
		assert_int_equal(write_retry(e, p, p, &nomem), 0);
	vmmu_hw_guest_exit(e->hw);
	return nomem;
}

static int run_ring_reset(struct env *e)
{
	struct vmmu_dirty_gfn *ring;
	uint32_t size, n = 0;
	uint64_t reset = 0;
	int nomem = 0, rc;

	for (uint64_t p = 0; p < NPAGES; p += 3)
		assert_int_equal(write_retry(e, p, p + 5, &nomem), 0);
	vmmu_hw_guest_exit(e->hw);
	assert_int_equal(vmmu_vcpu_dirty_ring(e->vcpu, &ring, &size), 0);
	while (__atomic_load_n(&ring[n & (size - 1)].flags, __ATOMIC_ACQUIRE) &
	       VMMU_DIRTY_GFN_F_DIRTY) {
		__atomic_store_n(&ring[n & (size - 1)].flags, VMMU_DIRTY_GFN_F_RESET,
				 __ATOMIC_RELEASE);
		n++;
	}
	rc = vmmu_reset_dirty_rings(e->vm, &reset);
	assert_int_equal(rc, 0); /* -ENOMEM is not documented for a reset */
	assert_int_equal(reset, n);
	return nomem;
}

/* --- harness --------------------------------------------------------- */

/* After the scenario: pages written now are all in the next harvest. */
static void check_no_lost_dirty_page(struct env *e, const struct scenario *s)
{
	uint64_t bm[WORDS];
	int nomem = 0;

	if (s->cfg.dirty_ring_size || vmmu_get_dirty_log(e->vm, 0, bm) == -ENOENT)
		return;
	for (uint64_t p = 0; p < NPAGES; p += 5)
		assert_int_equal(write_retry(e, p, p ^ 0xabc, &nomem), 0);
	vmmu_hw_guest_exit(e->hw);
	assert_int_equal(vmmu_get_dirty_log(e->vm, 0, bm), 0);
	for (uint64_t p = 0; p < NPAGES; p += 5)
		assert_true(bm[p / 64] >> (p % 64) & 1);
}

/* One run; @nth 0 = no failure.  Returns the pool requests it made. */
static uint64_t run_once(const struct scenario *s, uint64_t nth, int *nomem)
{
	struct vmmu_vm_config cfg = s->cfg;
	struct env e;
	uint64_t a0, a1;

	/* A small vCPU page cache, so that the scenario's own faults reach
	 * the pool instead of pages cached by the setup. */
	cfg.vcpu_cache_capacity = 5;
	vm_env_init(&e, s->backing, SIZE, cfg);
	if (s->slot_flags)
		assert_int_equal(set_slot(&e, s->slot_flags), 0);
	s->setup(&e);
	a0 = vmmu_pool_allocs(&e.vm->pool);
	vmmu_pool_fail_nth(&e.vm->pool, nth);
	*nomem = s->run(&e);
	vmmu_pool_fail_nth(&e.vm->pool, 0);
	a1 = vmmu_pool_allocs(&e.vm->pool);
	check_translations(&e);
	check_no_lost_dirty_page(&e, s);
	check_translations(&e);
	env_fini(&e);
	return a1 - a0;
}

static void run_scenario(const struct scenario *s)
{
	int nomem, failed_runs = 0;
	uint64_t n = run_once(s, 0, &nomem);

	assert_int_equal(nomem, 0);
	for (uint64_t nth = 1; nth <= n + 1; nth++) {
		run_once(s, nth, &nomem);
		failed_runs += nomem > 0;
	}
	print_message("fail-nth %-16s %3llu pool requests, %llu runs, %d saw -ENOMEM\n", s->name,
		      (unsigned long long)n, (unsigned long long)n + 1, failed_runs);
}

#define SCEN(fn, ...)                                                          \
	static void test_##fn(void **state)                                    \
	{                                                                      \
		static const struct scenario s = { .name = #fn, __VA_ARGS__ }; \
		(void)state;                                                   \
		run_scenario(&s);                                              \
	}

SCEN(populate, .setup = setup_none, .run = run_populate, .backing = VMMU_BACKING_ANONYMOUS)
SCEN(populate_thp, .setup = setup_none, .run = run_populate, .backing = VMMU_BACKING_ANONYMOUS_THP)
SCEN(prefault, .setup = setup_none, .run = run_prefault, .backing = VMMU_BACKING_ANONYMOUS_THP)
SCEN(eager_split, .setup = setup_touched, .run = run_start_logging,
     .backing = VMMU_BACKING_ANONYMOUS_THP, .cfg = { .dirty_log_wrprot = true })
SCEN(eager_split_dbit, .setup = setup_touched, .run = run_start_logging,
     .backing = VMMU_BACKING_ANONYMOUS_THP)
SCEN(recovery, .setup = setup_logged, .run = run_stop_logging,
     .backing = VMMU_BACKING_ANONYMOUS_THP, .cfg = { .dirty_log_wrprot = true })
SCEN(direct_build, .setup = setup_deleted, .run = run_direct_build,
     .backing = VMMU_BACKING_ANONYMOUS_THP, .cfg = { .direct_build_workers = 2 })
SCEN(memslot_updates, .setup = setup_touched, .run = run_memslot_updates,
     .backing = VMMU_BACKING_ANONYMOUS,
     .cfg = { .dirty_log_wrprot = true, .slot_zap = VMMU_SLOT_ZAP_ALL_FAST })
SCEN(ring_reset, .setup = setup_none, .run = run_ring_reset, .backing = VMMU_BACKING_ANONYMOUS,
     .slot_flags = VMMU_MEM_LOG_DIRTY_PAGES,
     .cfg = { .dirty_log_wrprot = true, .dirty_ring_size = 4096 })

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_populate),	 cmocka_unit_test(test_populate_thp),
		cmocka_unit_test(test_prefault),	 cmocka_unit_test(test_eager_split),
		cmocka_unit_test(test_eager_split_dbit), cmocka_unit_test(test_recovery),
		cmocka_unit_test(test_direct_build),	 cmocka_unit_test(test_memslot_updates),
		cmocka_unit_test(test_ring_reset),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
