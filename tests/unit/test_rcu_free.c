/* SPDX-License-Identifier: MIT */
/*
 * test_rcu_free - three rules that only randomized stress tests guarded,
 * each forced here deterministically, single-threaded where possible:
 *
 *  - page-table pages are freed only after an RCU grace period: a lockless
 *    walker (the fast page fault) is held inside a table, through the
 *    lockless-path test hook, while another thread unlinks that table
 *    (vmmu_zap_all); when the zap has returned, the walker's table must
 *    still be a table of frozen entries and still in use in the pool.
 *    Freeing at once fails this every time (and in debug builds the pool
 *    fills freed pages with a pattern a walker would follow);
 *  - vmmu_get_dirty_log flushes every TLB before it returns: a page
 *    written, harvested and written again through the vCPU's cached
 *    translation is in the next harvest;
 *  - a dirty-ring reset protects every page it recycles, not only the
 *    first and last of a run: scattered pages are written, collected and
 *    reset, and each must be protected again and logged again when
 *    written.
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
#include <string.h>

#define SIZE (1ull << 20)
#define NPAGES (SIZE / 4096)
#define WORDS (NPAGES / 64)

/* --- freeing through RCU --------------------------------------------- */

struct unlink_ctx {
	struct vmmu_vm *vm;
	uint64_t *sptep;
	uint64_t in_use_before;
	int calls;
	bool table_intact;
	bool still_in_pool;
};

static void *zap_all_thread(void *arg)
{
	struct unlink_ctx *c = arg;

	assert_int_equal(vmmu_zap_all(c->vm), 0);
	return NULL;
}

/*
 * Called by the fast path inside its RCU read section, after it read the
 * leaf and before its compare-and-exchange: unlink the table from another
 * thread and wait until that is done.
 */
static void hold_walker_hook(struct vmmu_vcpu *vcpu, uint64_t *sptep, void *arg)
{
	struct unlink_ctx *c = arg;
	uint64_t *table = (uint64_t *)((uintptr_t)sptep & ~(uintptr_t)4095);
	pthread_t t;

	(void)vcpu;
	if (c->calls++)
		return;
	c->sptep = sptep;
	c->in_use_before = vmmu_pool_in_use(&c->vm->pool);
	assert_int_equal(pthread_create(&t, NULL, zap_all_thread, c), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	/* The zap has returned; we are still inside our read section. */
	c->table_intact = true;
	for (unsigned i = 0; i < 512; i++)
		if (__atomic_load_n(&table[i], __ATOMIC_ACQUIRE) != FROZEN_SPTE)
			c->table_intact = false;
	c->still_in_pool = vmmu_pool_in_use(&c->vm->pool) == c->in_use_before;
}

static void test_walker_keeps_unlinked_table(void **state)
{
	struct vmmu_vm_config cfg = { .disable_ept_ad = true };
	struct unlink_ctx c = { 0 };
	bool young = false;
	struct env e;

	(void)state;
	vm_env_init(&e, VMMU_BACKING_ANONYMOUS, SIZE, cfg);
	write_page(&e, 5, 0x55);
	/* Access tracking takes every right away: the next access is one
	 * the fast path fixes. */
	assert_int_equal(vmmu_notify_clear_young(e.vm, (uintptr_t)e.mem + 5 * 4096,
						 (uintptr_t)e.mem + 6 * 4096, &young),
			 0);
	assert_true(young);
	c.vm = e.vm;
	e.vm->test_fast_pf_hook_arg = &c;
	e.vm->test_fast_pf_hook = hold_walker_hook;
	assert_true(vmmu_vcpu_page_fault(e.vcpu, ENV_GPA + 5 * 4096, VMMU_EPT_ACC_READ) >= 0);
	e.vm->test_fast_pf_hook = NULL;
	assert_int_equal(c.calls >= 1, 1);
	/* Every entry of the unlinked table frozen, the page not freed. */
	assert_true(c.table_intact);
	assert_true(c.still_in_pool);
	/* After the walker left, the grace period frees it. */
	vmmu_rcu_barrier();
	assert_true(vmmu_pool_in_use(&e.vm->pool) < c.in_use_before);
	assert_int_equal(read_page(&e, 5), 0x55);
	env_fini(&e);
}

/* --- the flush at the end of vmmu_get_dirty_log ----------------------- */

static void check_get_dirty_log_flush(bool wrprot)
{
	struct vmmu_vm_config cfg = { .dirty_log_wrprot = wrprot };
	struct vmmu_vm_stats s0, s1;
	uint64_t bm[WORDS];
	struct env e;

	vm_env_init(&e, VMMU_BACKING_ANONYMOUS, SIZE, cfg);
	assert_int_equal(set_slot(&e, VMMU_MEM_LOG_DIRTY_PAGES), 0);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
	/* The vCPU's TLB now holds a writable (and dirty) translation. */
	write_page(&e, 7, 1);
	assert_int_equal(vmmu_vm_stats(e.vm, &s0), 0);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
	assert_int_equal(bm[0], 1ull << 7);
	assert_int_equal(vmmu_vm_stats(e.vm, &s1), 0);
	/* The same vCPU writes again: the cached translation must be gone,
	 * so the write is seen and logged. */
	write_page(&e, 7, 2);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
	assert_int_equal(bm[0], 1ull << 7);
	for (unsigned i = 1; i < WORDS; i++)
		assert_int_equal(bm[i], 0);
	/* And the harvest itself asked for the flush. */
	assert_true(s1.remote_tlb_flush > s0.remote_tlb_flush);
	env_fini(&e);
}

static void test_get_dirty_log_flush_wrprot(void **state)
{
	(void)state;
	check_get_dirty_log_flush(true);
}

static void test_get_dirty_log_flush_dirty_bit(void **state)
{
	(void)state;
	check_get_dirty_log_flush(false);
}

/* --- which pages a dirty-ring reset protects --------------------------- */

/* Scattered pages, out of order, some in runs within 64 pages. */
static uint64_t ring_page(unsigned i)
{
	return (i * 37u) % NPAGES;
}
#define RING_PAGES 160u

static unsigned collect(struct env *e, struct vmmu_dirty_gfn *ring, uint32_t size, uint32_t *next,
			bool *seen)
{
	unsigned n = 0;

	for (;;) {
		struct vmmu_dirty_gfn *g = &ring[*next & (size - 1)];

		if (!(__atomic_load_n(&g->flags, __ATOMIC_ACQUIRE) & VMMU_DIRTY_GFN_F_DIRTY))
			break;
		assert_int_equal(g->slot, 0);
		assert_true(g->offset < NPAGES);
		seen[g->offset] = true;
		__atomic_store_n(&g->flags, VMMU_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
		(*next)++;
		n++;
	}
	(void)e;
	return n;
}

static void check_ring_reset_protects_all(bool wrprot)
{
	struct vmmu_vm_config cfg = { .dirty_log_wrprot = wrprot, .dirty_ring_size = 1024 };
	bool written[NPAGES] = { false }, seen[NPAGES] = { false };
	struct vmmu_dirty_gfn *ring;
	uint32_t size, next = 0;
	uint64_t reset = 0;
	struct env e;

	vm_env_init(&e, VMMU_BACKING_ANONYMOUS, SIZE, cfg);
	assert_int_equal(set_slot(&e, VMMU_MEM_LOG_DIRTY_PAGES), 0);
	assert_int_equal(vmmu_vcpu_dirty_ring(e.vcpu, &ring, &size), 0);
	for (unsigned i = 0; i < RING_PAGES; i++) {
		write_page(&e, ring_page(i), i);
		written[ring_page(i)] = true;
	}
	collect(&e, ring, size, &next, seen);
	for (unsigned p = 0; p < NPAGES; p++)
		assert_int_equal(seen[p], written[p]);
	assert_int_equal(vmmu_reset_dirty_rings(e.vm, &reset), 0);
	assert_true(reset > 0);
	/* Every recycled page is protected again: W (write-protect mode) or
	 * D (dirty-bit mode) is clear in its leaf. */
	for (unsigned p = 0; p < NPAGES; p++) {
		uint64_t spte;

		if (!written[p])
			continue;
		spte = leaf(&e, p, NULL);
		if (wrprot)
			assert_false(spte & EPT_WRITABLE);
		else
			assert_false(spte & EPT_DIRTY);
	}
	/* And written again, each is logged again. */
	memset(seen, 0, sizeof(seen));
	for (unsigned i = 0; i < RING_PAGES; i++)
		write_page(&e, ring_page(i), i + 1000);
	collect(&e, ring, size, &next, seen);
	for (unsigned p = 0; p < NPAGES; p++)
		assert_int_equal(seen[p], written[p]);
	assert_int_equal(vmmu_reset_dirty_rings(e.vm, &reset), 0);
	env_fini(&e);
}

static void test_ring_reset_protects_all_wrprot(void **state)
{
	(void)state;
	check_ring_reset_protects_all(true);
}

static void test_ring_reset_protects_all_dirty_bit(void **state)
{
	(void)state;
	check_ring_reset_protects_all(false);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_walker_keeps_unlinked_table),
		cmocka_unit_test(test_get_dirty_log_flush_wrprot),
		cmocka_unit_test(test_get_dirty_log_flush_dirty_bit),
		cmocka_unit_test(test_ring_reset_protects_all_wrprot),
		cmocka_unit_test(test_ring_reset_protects_all_dirty_bit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
