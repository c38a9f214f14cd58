/* SPDX-License-Identifier: MIT */
/*
 * test_fast_pf - the lockless fault path, one rule per test: it fixes
 * dirty-log write protection (and logs the page) and access tracking;
 * it never makes writable an entry that is not MMU-writable, not even when
 * MMU-writable goes away between its read and its compare-and-exchange;
 * it never gives W to a huge leaf of a dirty-logged slot; it gives up
 * after 4 attempts; it detects spurious faults; its stats; its switch.
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
#define SIZE (8ull << 20)
#define NPAGES (SIZE / 4096)
#define WORDS (NPAGES / 64)

/* What the processor reports for a write to a present, read-only page. */
#define QUAL_WRITE_RO (VMMU_EPT_ACC_WRITE | VMMU_EPT_READABLE | VMMU_EPT_EXECUTABLE)
#define QUAL_WRITE_RWX \
	(VMMU_EPT_ACC_WRITE | VMMU_EPT_READABLE | VMMU_EPT_WRITABLE | VMMU_EPT_EXECUTABLE)

static void env_init(struct env *e, enum vmmu_backing b, struct vmmu_vm_config cfg)
{
	vm_env_init(e, b, SIZE, cfg);
}

static struct vmmu_vcpu_stats stats(struct env *e)
{
	struct vmmu_vcpu_stats s;

	assert_int_equal(vmmu_vcpu_stats(e->vcpu, &s), 0);
	return s;
}

static uint64_t count_bits(const uint64_t *bm)
{
	uint64_t n = 0;

	for (uint64_t i = 0; i < WORDS; i++)
		n += (uint64_t)__builtin_popcountll(bm[i]);
	return n;
}

/* Call the lockless path directly, as the fault entry does. */
static int fast_fault(struct env *e, uint64_t page, uint64_t qual)
{
	return vmmu_fast_page_fault(e->vcpu, GPA + page * 4096, qual);
}

/*
 * Write-protect dirty logging: each first write after a harvest is fixed
 * by the fast path (one fault, pf_fast and pf_fixed both count it), the
 * page is logged exactly, and W is back.  With the switch off, the locked
 * path does the same work and pf_fast stays 0.
 */
static void check_dirty_log_fix(bool fast)
{
	struct vmmu_vcpu_stats s0, s1;
	uint64_t bm[WORDS];
	struct env e;

	env_init(&e, VMMU_BACKING_ANONYMOUS,
		 (struct vmmu_vm_config){ .dirty_log_wrprot = true,
					  .disable_fast_page_fault = !fast });
	touch_all(&e);
	assert_int_equal(set_slot(&e, VMMU_MEM_LOG_DIRTY_PAGES), 0);
	s0 = stats(&e);
	for (uint64_t p = 0; p < NPAGES; p += 2)
		write_page(&e, p, 7);
	s1 = stats(&e);
	assert_int_equal(s1.pf_taken - s0.pf_taken, NPAGES / 2);
	assert_int_equal(s1.pf_fixed - s0.pf_fixed, NPAGES / 2);
	assert_int_equal(s1.pf_fast - s0.pf_fast, fast ? NPAGES / 2 : 0);
	for (uint64_t p = 0; p < NPAGES; p++)
		assert_int_equal(!!(leaf(&e, p, NULL) & EPT_WRITABLE), p % 2 == 0);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
	assert_int_equal(count_bits(bm), NPAGES / 2);
	for (uint64_t p = 0; p < NPAGES; p += 2)
		assert_true(bm[p / 64] >> (p % 64) & 1);
	/* Harvested and protected again: the next write is logged again. */
	write_page(&e, 4, 8);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
	assert_int_equal(count_bits(bm), 1);
	assert_true(bm[0] >> 4 & 1);
	assert_int_equal(read_page(&e, 4), 8);
	env_fini(&e);
}

static void test_dirty_log_fast(void **state)
{
	(void)state;
	check_dirty_log_fix(true);
}

static void test_dirty_log_switch_off(void **state)
{
	(void)state;
	check_dirty_log_fix(false);
}

/* The same through the dirty ring: the fast path pushes ring entries. */
static void test_dirty_ring_fast(void **state)
{
	struct vmmu_dirty_gfn *ring;
	uint32_t size, n = 0;
	struct env e;

	(void)state;
	env_init(&e, VMMU_BACKING_ANONYMOUS,
		 (struct vmmu_vm_config){ .dirty_log_wrprot = true, .dirty_ring_size = 4096 });
	touch_all(&e);
	assert_int_equal(set_slot(&e, VMMU_MEM_LOG_DIRTY_PAGES), 0);
	write_page(&e, 10, 1);
	write_page(&e, 20, 1);
	assert_int_equal(stats(&e).pf_fast, 2);
	assert_int_equal(vmmu_vcpu_dirty_ring(e.vcpu, &ring, &size), 0);
	while (ring[n].flags & VMMU_DIRTY_GFN_F_DIRTY)
		n++;
	assert_int_equal(n, 2);
	assert_int_equal(ring[0].offset, 10);
	assert_int_equal(ring[1].offset, 20);
	env_fini(&e);
}

/*
 * A page the host made read-only is mapped without MMU-writable: a write
 * fault must never make it writable.  The fast path leaves it to the
 * locked path, which reports it for emulation.
 */
static void test_not_mmu_writable(void **state)
{
	struct vmmu_vcpu_stats s;
	struct env e;
	uint64_t spte;

	(void)state;
	env_init(&e, VMMU_BACKING_ANONYMOUS, (struct vmmu_vm_config){ .disable_ept_ad = true });
	touch_all(&e);
	assert_int_equal(vmmu_hostmem_protect(e.hm, e.mem, 1), 0);
	assert_int_equal(read_page(&e, 3), 3);
	spte = leaf(&e, 3, NULL);
	assert_false(spte & (EPT_WRITABLE | SPTE_MMU_WRITABLE));
	assert_int_equal(fast_fault(&e, 3, QUAL_WRITE_RO), VMMU_PF_CONTINUE);
	assert_int_equal(vmmu_vcpu_page_fault(e.vcpu, GPA + 3 * 4096, QUAL_WRITE_RO),
			 VMMU_PF_EMULATE);
	assert_false(leaf(&e, 3, NULL) & EPT_WRITABLE);

	/* Access-tracked and not MMU-writable: a write restores nothing
	 * writable; a read is restored, without W. */
	assert_int_equal(vmmu_idle_mark(e.vm, 0, GPA, SIZE), 0);
	assert_true(is_access_track_spte(leaf(&e, 3, NULL)));
	assert_int_equal(fast_fault(&e, 3, VMMU_EPT_ACC_WRITE), VMMU_PF_CONTINUE);
	assert_true(is_access_track_spte(leaf(&e, 3, NULL)));
	assert_int_equal(read_page(&e, 3), 3);
	spte = leaf(&e, 3, NULL);
	assert_true((spte & EPT_RWX_MASK) == (EPT_READABLE | EPT_EXECUTABLE));
	s = stats(&e);
	assert_int_equal(s.pf_fast, 1);
	assert_int_equal(vmmu_hostmem_protect(e.hm, e.mem, 0), 0);
	env_fini(&e);
}

/*
 * The entry stops being MMU-writable between the fast path's read and its
 * compare-and-exchange (what write tracking of a guest page table does
 * under the MMU lock).  The compare-and-exchange must fail and the fresh
 * value must be judged again: W never appears.
 */
static void revoke_mmu_writable(struct vmmu_vcpu *vcpu, uint64_t *sptep, void *arg)
{
	int *calls = arg;

	(void)vcpu;
	if ((*calls)++ == 0)
		__atomic_fetch_and(sptep, ~(SPTE_MMU_WRITABLE | EPT_WRITABLE), __ATOMIC_ACQ_REL);
}

static void test_write_tracked_race(void **state)
{
	struct env e;
	int calls = 0;

	(void)state;
	env_init(&e, VMMU_BACKING_ANONYMOUS, (struct vmmu_vm_config){ .dirty_log_wrprot = true });
	touch_all(&e);
	assert_int_equal(set_slot(&e, VMMU_MEM_LOG_DIRTY_PAGES), 0);
	assert_true(leaf(&e, 9, NULL) & SPTE_MMU_WRITABLE);
	e.vm->test_fast_pf_hook = revoke_mmu_writable;
	e.vm->test_fast_pf_hook_arg = &calls;
	assert_int_equal(fast_fault(&e, 9, QUAL_WRITE_RO), VMMU_PF_CONTINUE);
	e.vm->test_fast_pf_hook = NULL;
	assert_int_equal(calls, 1);
	assert_false(leaf(&e, 9, NULL) & (EPT_WRITABLE | SPTE_MMU_WRITABLE));
	assert_int_equal(stats(&e).pf_fast, 0);
	env_fini(&e);
}

/* Something else changes the entry every time: 4 attempts, then the
 * locked path. */
static void disturb(struct vmmu_vcpu *vcpu, uint64_t *sptep, void *arg)
{
	(void)vcpu;
	(*(int *)arg)++;
	__atomic_fetch_xor(sptep, EPT_ACCESSED, __ATOMIC_ACQ_REL);
}

static void test_four_attempts(void **state)
{
	struct env e;
	int calls = 0;

	(void)state;
	env_init(&e, VMMU_BACKING_ANONYMOUS, (struct vmmu_vm_config){ .dirty_log_wrprot = true });
	touch_all(&e);
	assert_int_equal(set_slot(&e, VMMU_MEM_LOG_DIRTY_PAGES), 0);
	e.vm->test_fast_pf_hook = disturb;
	e.vm->test_fast_pf_hook_arg = &calls;
	assert_int_equal(fast_fault(&e, 1, QUAL_WRITE_RO), VMMU_PF_CONTINUE);
	assert_int_equal(calls, 4);
	assert_false(leaf(&e, 1, NULL) & EPT_WRITABLE);
	/* The locked path still fixes it. */
	assert_int_equal(vmmu_vcpu_page_fault(e.vcpu, GPA + 4096, QUAL_WRITE_RO), VMMU_PF_FIXED);
	e.vm->test_fast_pf_hook = NULL;
	assert_true(leaf(&e, 1, NULL) & EPT_WRITABLE);
	assert_int_equal(stats(&e).pf_fast, 0);
	env_fini(&e);
}

/*
 * Huge leaves, write-protected in a logged slot (no eager split): the fast
 * path gives up, and the locked path maps the page at 4 KiB.  No writable
 * huge leaf ever appears while the slot is logged.  Outside a logged slot
 * an access-tracked huge leaf gets W back from the fast path.
 */
static void env_init_huge(struct env *e, struct vmmu_vm_config cfg)
{
	struct vmmu_vm_stats vs;

	env_init(e, VMMU_BACKING_ANONYMOUS_THP, cfg);
	touch_all(e);
	assert_int_equal(vmmu_vm_stats(e->vm, &vs), 0);
	if (vs.pages_2m != SIZE >> 21) {
		print_message("host gave %llu of %llu THPs: skipping\n",
			      (unsigned long long)vs.pages_2m, (unsigned long long)(SIZE >> 21));
		env_fini(e);
		skip();
	}
}

static void test_no_writable_huge_leaf_when_logged(void **state)
{
	uint64_t bm[WORDS];
	struct env e;
	int level;

	(void)state;
	env_init_huge(&e, (struct vmmu_vm_config){ .dirty_log_wrprot = true,
						   .disable_eager_split = true });
	assert_int_equal(set_slot(&e, VMMU_MEM_LOG_DIRTY_PAGES), 0);
	assert_false(leaf(&e, 700, &level) & EPT_WRITABLE);
	assert_int_equal(level, 2);
	assert_true(leaf(&e, 700, NULL) & SPTE_MMU_WRITABLE);
	assert_int_equal(fast_fault(&e, 700, QUAL_WRITE_RO), VMMU_PF_CONTINUE);
	assert_false(leaf(&e, 700, &level) & EPT_WRITABLE);
	assert_int_equal(level, 2);
	write_page(&e, 700, 1);
	for (uint64_t p = 0; p < NPAGES; p++) {
		uint64_t s = leaf(&e, p, &level);

		assert_true(level == 1 || !(s & EPT_WRITABLE));
	}
	assert_true(leaf(&e, 700, &level) & EPT_WRITABLE);
	assert_int_equal(level, 1);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
	assert_int_equal(count_bits(bm), 1);
	env_fini(&e);
}

static void test_huge_access_track_unlogged(void **state)
{
	struct env e;
	uint64_t s;
	int level;

	(void)state;
	env_init_huge(&e, (struct vmmu_vm_config){ .disable_ept_ad = true });
	assert_int_equal(vmmu_idle_mark(e.vm, 0, GPA, SIZE), 0);
	assert_true(is_access_track_spte(leaf(&e, 600, &level)));
	assert_int_equal(level, 2);
	write_page(&e, 600, 5);
	s = leaf(&e, 600, &level);
	assert_int_equal(level, 2);
	assert_int_equal(s & EPT_RWX_MASK, EPT_RWX_MASK);
	assert_int_equal(stats(&e).pf_fast, 1);
	env_fini(&e);
}

/*
 * Spurious: the access is already allowed (another vCPU fixed it, or the
 * TLB was stale).  The fast path says so without touching anything.
 */
static void test_spurious(void **state)
{
	struct vmmu_vcpu_stats s0, s1;
	struct env e;
	uint64_t before;

	(void)state;
	env_init(&e, VMMU_BACKING_ANONYMOUS, (struct vmmu_vm_config){ 0 });
	touch_all(&e);
	before = leaf(&e, 2, NULL);
	s0 = stats(&e);
	assert_int_equal(vmmu_vcpu_page_fault(e.vcpu, GPA + 2 * 4096, QUAL_WRITE_RWX),
			 VMMU_PF_SPURIOUS);
	s1 = stats(&e);
	assert_int_equal(leaf(&e, 2, NULL), before);
	assert_int_equal(s1.pf_spurious - s0.pf_spurious, 1);
	assert_int_equal(s1.pf_fast - s0.pf_fast, 1);
	assert_int_equal(s1.pf_fixed, s0.pf_fixed);
	/* With A/D bits, a read of an unmapped page is never fast. */
	assert_int_equal(vmmu_zap_gfn_range(e.vm, GPA / 4096, GPA / 4096 + 1), 0);
	assert_int_equal(fast_fault(&e, 0, VMMU_EPT_ACC_READ), VMMU_PF_CONTINUE);
	env_fini(&e);
}

/*
 * Access tracking without A/D bits: after aging, a read fault restores R
 * and X (not W), a later write sets W, both through the fast path; a
 * write right after aging restores everything at once.
 */
static void test_access_track_restore(void **state)
{
	struct env e;
	uint64_t s;

	(void)state;
	env_init(&e, VMMU_BACKING_ANONYMOUS, (struct vmmu_vm_config){ .disable_ept_ad = true });
	touch_all(&e);
	assert_int_equal(vmmu_idle_mark(e.vm, 0, GPA, SIZE), 0);
	s = leaf(&e, 0, NULL);
	assert_true(is_access_track_spte(s));
	assert_true(s & SPTE_MMU_WRITABLE);
	assert_int_equal(read_page(&e, 0), 0);
	s = leaf(&e, 0, NULL);
	assert_int_equal(s & EPT_RWX_MASK, EPT_READABLE | EPT_EXECUTABLE);
	assert_false(s & SPTE_ACC_TRACK_SAVED_MASK);
	assert_int_equal(stats(&e).pf_fast, 1);
	write_page(&e, 0, 9);
	assert_int_equal(leaf(&e, 0, NULL) & EPT_RWX_MASK, EPT_RWX_MASK);
	assert_int_equal(stats(&e).pf_fast, 2);
	write_page(&e, 1, 9);
	assert_int_equal(leaf(&e, 1, NULL) & EPT_RWX_MASK, EPT_RWX_MASK);
	assert_int_equal(stats(&e).pf_fast, 3);
	assert_int_equal(stats(&e).pf_fixed, NPAGES + 3);
	env_fini(&e);
}

/* The switch: the same accesses, all through the locked path. */
static void test_access_track_switch_off(void **state)
{
	struct env e;

	(void)state;
	env_init(&e, VMMU_BACKING_ANONYMOUS,
		 (struct vmmu_vm_config){ .disable_ept_ad = true,
					  .disable_fast_page_fault = true });
	touch_all(&e);
	assert_int_equal(vmmu_idle_mark(e.vm, 0, GPA, SIZE), 0);
	assert_int_equal(read_page(&e, 0), 0);
	write_page(&e, 1, 9);
	assert_int_equal(leaf(&e, 1, NULL) & EPT_RWX_MASK, EPT_RWX_MASK);
	assert_int_equal(stats(&e).pf_fast, 0);
	assert_int_equal(stats(&e).pf_fixed, NPAGES + 2);
	env_fini(&e);
}

/* The lockless walk finds the leaf, its level, and where it lives. */
static void test_get_last_spte(void **state)
{
	struct env e;
	uint64_t *sptep, spte;
	int level;

	(void)state;
	env_init(&e, VMMU_BACKING_ANONYMOUS, (struct vmmu_vm_config){ 0 });
	write_page(&e, 5, 1);
	vmmu_walk_lockless_begin(e.vcpu);
	level = vmmu_get_last_spte(e.vcpu, GPA / 4096 + 5, &sptep, &spte);
	assert_int_equal(level, 1);
	assert_int_equal(spte, *sptep);
	assert_int_equal(spte, leaf(&e, 5, NULL));
	/* Nothing mapped in the first GiB: the top entry (shared with 4 GiB)
	 * leads to a 1G-level entry that is not present. */
	level = vmmu_get_last_spte(e.vcpu, 0, &sptep, &spte);
	assert_int_equal(level, PG_LEVEL_1G);
	assert_false(is_shadow_present_pte(spte));
	vmmu_walk_lockless_end(e.vcpu);
	env_fini(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dirty_log_fast),
		cmocka_unit_test(test_dirty_log_switch_off),
		cmocka_unit_test(test_dirty_ring_fast),
		cmocka_unit_test(test_not_mmu_writable),
		cmocka_unit_test(test_write_tracked_race),
		cmocka_unit_test(test_four_attempts),
		cmocka_unit_test(test_no_writable_huge_leaf_when_logged),
		cmocka_unit_test(test_huge_access_track_unlogged),
		cmocka_unit_test(test_spurious),
		cmocka_unit_test(test_access_track_restore),
		cmocka_unit_test(test_access_track_switch_off),
		cmocka_unit_test(test_get_last_spte),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
