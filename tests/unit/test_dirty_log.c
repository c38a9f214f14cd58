/* SPDX-License-Identifier: MIT */
/*
 * test_dirty_log - dirty logging, one behaviour per test: exact reports in
 * write-protect and dirty-bit mode, manual protect, initially-all-set,
 * dirty rings and their soft limit, eager splitting (-1/+512 per split,
 * no translation changed), huge-page recovery, allocation failure while
 * splitting, and the errno of every bad argument.
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

static void env_init_cfg(struct env *e, enum vmmu_backing b, struct vmmu_vm_config cfg)
{
	vm_env_init(e, b, SIZE, cfg);
}

static uint64_t count_bits(const uint64_t *bm, uint64_t words)
{
	uint64_t n = 0;

	for (uint64_t i = 0; i < words; i++)
		n += (uint64_t)__builtin_popcountll(bm[i]);
	return n;
}

static bool bit(const uint64_t *bm, uint64_t p)
{
	return bm[p / 64] >> (p % 64) & 1;
}

/* Pages written are reported exactly once, pages only read never. */
static void check_exact_reports(bool wrprot)
{
	struct env e;
	uint64_t bm[WORDS];
	int level;

	env_init_cfg(&e, VMMU_BACKING_ANONYMOUS,
		     (struct vmmu_vm_config){ .dirty_log_wrprot = wrprot });
	assert_true(e.vm->dirty_log_dbit == !wrprot);
	touch_all(&e);
	assert_int_equal(set_slot(&e, VMMU_MEM_LOG_DIRTY_PAGES), 0);
	/* Enabling protected every page again: nothing is dirty yet. */
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
	assert_int_equal(count_bits(bm, WORDS), 0);
	for (uint64_t p = 0; p < NPAGES; p++) {
		uint64_t s = leaf(&e, p, &level);

		assert_int_equal(level, 1);
		if (wrprot)
			assert_false(s & EPT_WRITABLE);
		else
			assert_false(s & EPT_DIRTY);
		assert_true(s & SPTE_MMU_WRITABLE);
	}

	for (uint64_t p = 0; p < NPAGES; p += 3)
		write_page(&e, p, 1000 + p);
	for (uint64_t p = 1; p < NPAGES; p += 3)
		assert_int_equal(read_page(&e, p), p);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
	for (uint64_t p = 0; p < NPAGES; p++)
		assert_int_equal(bit(bm, p), p % 3 == 0);
	/* Taken and protected: the next log holds only what is new. */
	write_page(&e, 7, 1);
	write_page(&e, 9, 1);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
	assert_int_equal(count_bits(bm, WORDS), 2);
	assert_true(bit(bm, 7) && bit(bm, 9));

	/* A page zapped and faulted in again by a read is not reported; a
	 * write after that is. */
	assert_int_equal(vmmu_zap_gfn_range(e.vm, GPA / 4096, GPA / 4096 + NPAGES), 0);
	assert_int_equal(read_page(&e, 5), 5);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
	assert_int_equal(count_bits(bm, WORDS), 0);
	write_page(&e, 5, 2);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
	assert_int_equal(count_bits(bm, WORDS), 1);
	assert_true(bit(bm, 5));
	env_fini(&e);
}

static void test_exact_reports_wrprot(void **state)
{
	(void)state;
	check_exact_reports(true);
}

static void test_exact_reports_dirty_bit(void **state)
{
	(void)state;
	check_exact_reports(false);
}

/* THP-backed memory mapped with 2M leaves, or skip. */
static void env_init_huge(struct env *e, struct vmmu_vm_config cfg)
{
	struct vmmu_vm_stats vs;

	env_init_cfg(e, VMMU_BACKING_ANONYMOUS_THP, cfg);
	touch_all(e);
	assert_int_equal(vmmu_vm_stats(e->vm, &vs), 0);
	if (vs.pages_2m != SIZE >> 21) {
		print_message("host gave %llu of %llu THPs: skipping\n",
			      (unsigned long long)vs.pages_2m, (unsigned long long)(SIZE >> 21));
		env_fini(e);
		skip();
	}
}

/*
 * Eager split: every 2M leaf becomes 512 4K leaves (-1/+512 exactly), the
 * same host pages, the same rights except W or D; disabling logging
 * recovers the 2M leaves in place, again without changing a translation.
 */
static void test_eager_split_and_recover(void **state)
{
	struct vmmu_vm_stats before, split, after;
	uint64_t rights[NPAGES];
	struct env e;
	int level;

	(void)state;
	env_init_huge(&e, (struct vmmu_vm_config){ .dirty_log_wrprot = true });
	assert_int_equal(vmmu_vm_stats(e.vm, &before), 0);
	for (uint64_t p = 0; p < NPAGES; p++)
		rights[p] = leaf(&e, p, &level) & (EPT_READABLE | EPT_EXECUTABLE);

	assert_int_equal(set_slot(&e, VMMU_MEM_LOG_DIRTY_PAGES), 0);
	assert_int_equal(vmmu_vm_stats(e.vm, &split), 0);
	assert_int_equal(split.pages_2m, 0);
	assert_int_equal(split.pages_4k, before.pages_4k + 512 * before.pages_2m);
	assert_int_equal(split.pt_pages, before.pt_pages + before.pages_2m);
	for (uint64_t p = 0; p < NPAGES; p++) {
		uint64_t s = leaf(&e, p, &level);

		assert_int_equal(level, 1);
		assert_int_equal(s & (EPT_READABLE | EPT_EXECUTABLE), rights[p]);
		assert_false(s & EPT_WRITABLE);
	}
	/* The vCPU did not have to fault to split: writes only fix W. */
	write_page(&e, 3, 3);

	assert_int_equal(set_slot(&e, 0), 0);
	vmmu_rcu_barrier();
	assert_int_equal(vmmu_vm_stats(e.vm, &after), 0);
	assert_int_equal(after.pages_2m, before.pages_2m);
	assert_int_equal(after.pages_4k, before.pages_4k);
	assert_int_equal(after.pt_pages, before.pt_pages);
	/* In use: linked tables plus what the vCPU keeps in its cache. */
	assert_int_equal(vmmu_pool_in_use(&e.vm->pool),
			 after.pt_pages + (uint64_t)e.vcpu->pt_cache.nobjs);
	for (uint64_t p = 0; p < NPAGES; p++) {
		assert_int_equal(leaf(&e, p, &level) & (EPT_READABLE | EPT_EXECUTABLE), rights[p]);
		assert_int_equal(level, 2);
	}
	assert_int_equal(read_page(&e, 3), 3);
	env_fini(&e);
}

/* Without eager splitting huge leaves stay, write-protected, and the
 * first write to each splits it. */
static void test_lazy_split(void **state)
{
	struct vmmu_vm_stats vs;
	struct env e;
	uint64_t bm[WORDS];
	int level;

	(void)state;
	env_init_huge(&e, (struct vmmu_vm_config){ .disable_eager_split = true });
	assert_int_equal(set_slot(&e, VMMU_MEM_LOG_DIRTY_PAGES), 0);
	assert_int_equal(vmmu_vm_stats(e.vm, &vs), 0);
	assert_int_equal(vs.pages_2m, SIZE >> 21);
	for (uint64_t p = 0; p < NPAGES; p += 512) {
		assert_false(leaf(&e, p, &level) & EPT_WRITABLE);
		assert_int_equal(level, 2);
	}
	write_page(&e, 513, 1);
	assert_int_equal(vmmu_vm_stats(e.vm, &vs), 0);
	assert_int_equal(vs.pages_2m, (SIZE >> 21) - 1);
	assert_int_equal(vs.pages_4k, 512);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
	assert_int_equal(count_bits(bm, WORDS), 1);
	assert_true(bit(bm, 513));
	env_fini(&e);
}

/* Pool allocation failing half way through a split: the rest stays huge
 * (write-protected), every translation is exact, writes still work and
 * split on fault, nothing leaks. */
static void test_split_allocation_failure(void **state)
{
	struct vmmu_vm_stats vs;
	struct env e;
	uint64_t bm[WORDS];
	int level;

	(void)state;
	env_init_huge(&e, (struct vmmu_vm_config){ 0 });
	vmmu_pool_fail_after(&e.vm->pool, 2);
	assert_int_equal(set_slot(&e, VMMU_MEM_LOG_DIRTY_PAGES), 0);
	vmmu_pool_fail_after(&e.vm->pool, -1);
	assert_int_equal(vmmu_vm_stats(e.vm, &vs), 0);
	assert_int_equal(vs.pages_2m, (SIZE >> 21) - 2);
	assert_int_equal(vs.pages_4k, 2 * 512);
	for (uint64_t p = 0; p < NPAGES; p++) {
		uint64_t s = leaf(&e, p, &level);

		if (level == 2)
			assert_false(s & EPT_WRITABLE);
	}
	for (uint64_t p = 0; p < NPAGES; p += 512)
		write_page(&e, p + 1, 7);
	assert_int_equal(vmmu_vm_stats(e.vm, &vs), 0);
	assert_int_equal(vs.pages_2m, 0);
	assert_int_equal(vs.pages_4k, NPAGES);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
	assert_int_equal(count_bits(bm, WORDS), SIZE >> 21);
	assert_int_equal(vmmu_pool_in_use(&e.vm->pool),
			 vs.pt_pages + (uint64_t)e.vcpu->pt_cache.nobjs);
	env_fini(&e);
}

/* Manual protect: get copies without clearing, clear re-protects exactly
 * the bits passed, and only bits that were set. */
static void test_manual_protect(void **state)
{
	struct vmmu_vm_config cfg = { .dirty_log_wrprot = true,
				      .manual_dirty_log_protect = VMMU_DIRTY_LOG_MANUAL_PROTECT };
	uint64_t bm[WORDS], mask[2];
	struct env e;

	(void)state;
	env_init_cfg(&e, VMMU_BACKING_ANONYMOUS, cfg);
	touch_all(&e);
	assert_int_equal(set_slot(&e, VMMU_MEM_LOG_DIRTY_PAGES), 0);
	write_page(&e, 64, 1);
	write_page(&e, 65, 1);
	write_page(&e, 130, 1);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
	assert_int_equal(count_bits(bm, WORDS), 3);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
	assert_int_equal(count_bits(bm, WORDS), 3); /* not cleared by get */
	/* Clear page 64 and 130 (and 66, which was never dirty). */
	mask[0] = 1ull << 0 | 1ull << 2;
	mask[1] = 1ull << 2;
	assert_int_equal(vmmu_clear_dirty_log(e.vm, 0, 64, 128, mask), 0);
	assert_false(leaf(&e, 64, NULL) & EPT_WRITABLE);
	assert_false(leaf(&e, 130, NULL) & EPT_WRITABLE);
	assert_true(leaf(&e, 65, NULL) & EPT_WRITABLE); /* not cleared: stays */
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
	assert_int_equal(count_bits(bm, WORDS), 1);
	assert_true(bit(bm, 65));
	write_page(&e, 64, 2);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
	assert_true(bit(bm, 64) && bit(bm, 65) && !bit(bm, 130));
	env_fini(&e);
}

/* Initially-all-set: the first get reports every page and nothing was
 * protected (or split) when logging started; clear protects, and splits,
 * only the chunk it is given. */
static void test_initially_set(void **state)
{
	struct vmmu_vm_config cfg = {
		.manual_dirty_log_protect = VMMU_DIRTY_LOG_MANUAL_PROTECT |
					    VMMU_DIRTY_LOG_INITIALLY_SET,
	};
	struct vmmu_vm_stats vs;
	uint64_t bm[WORDS], ones[8];
	struct env e;
	int level;

	(void)state;
	env_init_huge(&e, cfg);
	assert_int_equal(set_slot(&e, VMMU_MEM_LOG_DIRTY_PAGES), 0);
	assert_int_equal(vmmu_vm_stats(e.vm, &vs), 0);
	assert_int_equal(vs.pages_2m, SIZE >> 21);
	assert_true(leaf(&e, 0, &level) & EPT_WRITABLE);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
	assert_int_equal(count_bits(bm, WORDS), NPAGES);
	/* Clear the first 512 pages: that 2M frame is split and protected. */
	memset(ones, 0xff, sizeof(ones));
	assert_int_equal(vmmu_clear_dirty_log(e.vm, 0, 0, 512, ones), 0);
	assert_int_equal(vmmu_vm_stats(e.vm, &vs), 0);
	assert_int_equal(vs.pages_2m, (SIZE >> 21) - 1);
	assert_int_equal(leaf(&e, 1, &level) & EPT_DIRTY, 0);
	assert_int_equal(level, 1);
	assert_true(leaf(&e, 600, &level) & EPT_WRITABLE);
	assert_int_equal(level, 2);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
	assert_int_equal(count_bits(bm, WORDS), NPAGES - 512);
	write_page(&e, 5, 5);
	vmmu_hw_guest_exit(e.hw);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
	assert_true(bit(bm, 5) && !bit(bm, 6));
	env_fini(&e);
}

/*
 * What vmmu.h promises for INITIALLY_SET (the header used to promise
 * more): enabling logging protects nothing, huge leaves stay writable
 * until a clear covers part of them; without eager splitting such a huge
 * leaf is then write-protected whole, and the next write to it faults and
 * is mapped at 4 KiB and logged.
 */
static void test_initially_set_no_eager_split(void **state)
{
	struct vmmu_vm_config cfg = {
		.manual_dirty_log_protect = VMMU_DIRTY_LOG_MANUAL_PROTECT |
					    VMMU_DIRTY_LOG_INITIALLY_SET,
		.disable_eager_split = true,
	};
	uint64_t bm[WORDS], one = ~0ull;
	struct env e;
	int level;

	(void)state;
	env_init_huge(&e, cfg);
	assert_int_equal(set_slot(&e, VMMU_MEM_LOG_DIRTY_PAGES), 0);
	assert_true(leaf(&e, 0, &level) & EPT_WRITABLE);
	assert_int_equal(level, 2);
	/* Clear pages 64..127: their 2M leaf loses W, whole, not split. */
	assert_int_equal(vmmu_clear_dirty_log(e.vm, 0, 64, 64, &one), 0);
	assert_false(leaf(&e, 100, &level) & EPT_WRITABLE);
	assert_int_equal(level, 2);
	assert_true(leaf(&e, 600, &level) & EPT_WRITABLE);
	assert_int_equal(level, 2);
	/* A write in the cleared chunk is logged, at 4 KiB. */
	write_page(&e, 100, 1);
	assert_true(leaf(&e, 100, &level) & EPT_WRITABLE);
	assert_int_equal(level, 1);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
	assert_true(bit(bm, 100) && !bit(bm, 101));
	assert_int_equal(count_bits(bm, WORDS), NPAGES - 64 + 1);
	env_fini(&e);
}

/* A slot whose size is not a multiple of 64 pages: bits beyond its end are
 * never set, and a clear that ends at the slot's end may be unaligned. */
static void test_initially_set_partial_word(void **state)
{
	struct vmmu_vm_config cfg = {
		.manual_dirty_log_protect = VMMU_DIRTY_LOG_MANUAL_PROTECT |
					    VMMU_DIRTY_LOG_INITIALLY_SET,
	};
	uint64_t bm[2] = { 0, 0 }, ones[2] = { ~0ull, ~0ull };
	struct env e;

	(void)state;
	env_init_cfg(&e, VMMU_BACKING_ANONYMOUS, cfg);
	assert_int_equal(set_slot(&e, 0), 0);
	e.size = 100 * 4096;
	/* Replace the slot by a 100-page one. */
	assert_int_equal(vmmu_set_user_memory_region(
				 e.vm,
				 &(struct vmmu_userspace_memory_region){
					 .slot = 0, .guest_phys_addr = GPA, .memory_size = 0 }),
			 0);
	assert_int_equal(set_slot(&e, VMMU_MEM_LOG_DIRTY_PAGES), 0);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
	assert_int_equal(bm[0], ~0ull);
	assert_int_equal(bm[1], (1ull << 36) - 1);
	assert_int_equal(vmmu_clear_dirty_log(e.vm, 0, 64, 40, ones), -EINVAL); /* past end */
	assert_int_equal(vmmu_clear_dirty_log(e.vm, 0, 64, 36, ones), 0);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
	assert_int_equal(bm[1], 0);
	assert_int_equal(bm[0], ~0ull);
	env_fini(&e);
}

/* Dirty rings: entries name slot and offset, a soft-full ring refuses to
 * enter guest mode, reset recycles entries and protects their pages. */
static void check_ring(bool wrprot)
{
	struct vmmu_vm_config cfg = { .dirty_log_wrprot = wrprot, .dirty_ring_size = 1024 };
	struct vmmu_dirty_gfn *ring;
	uint32_t size, soft = 1024 - VMMU_DIRTY_RING_RESERVED, n = 0;
	uint64_t reset, v = 1, bm[WORDS];
	struct env e;
	int r = 0;

	env_init_cfg(&e, VMMU_BACKING_ANONYMOUS, cfg);
	touch_all(&e);
	assert_int_equal(set_slot(&e, VMMU_MEM_LOG_DIRTY_PAGES), 0);
	assert_int_equal(vmmu_vcpu_dirty_ring(e.vcpu, &ring, &size), 0);
	assert_int_equal(size, 1024);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), -ENXIO);
	/* Write distinct pages until the vCPU may not enter any more. */
	for (uint64_t p = 0; p < NPAGES; p++) {
		r = vmmu_hw_write(e.hw, GPA + p * 4096, &v, sizeof(v));
		if (r)
			break;
	}
	assert_int_equal(r, -ENOBUFS);
	vmmu_hw_guest_exit(e.hw);
	assert_int_equal(vmmu_hw_guest_enter(e.hw), -ENOBUFS);
	while (__atomic_load_n(&ring[n].flags, __ATOMIC_ACQUIRE) & VMMU_DIRTY_GFN_F_DIRTY) {
		assert_int_equal(ring[n].slot, 0);
		assert_int_equal(ring[n].offset, n); /* written in page order */
		n++;
	}
	assert_true(n >= soft && n < 1024);
	/* Harvest half: only those are recycled and protected again. */
	for (uint32_t i = 0; i < n / 2; i++)
		__atomic_store_n(&ring[i].flags, VMMU_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
	assert_int_equal(vmmu_reset_dirty_rings(e.vm, &reset), 0);
	assert_int_equal(reset, n / 2);
	assert_int_equal(ring[0].flags, 0);
	if (wrprot) {
		assert_false(leaf(&e, 0, NULL) & EPT_WRITABLE);
		assert_true(leaf(&e, n - 1, NULL) & EPT_WRITABLE);
	} else {
		assert_false(leaf(&e, 0, NULL) & EPT_DIRTY);
		assert_true(leaf(&e, n - 1, NULL) & EPT_DIRTY);
	}
	assert_int_equal(vmmu_hw_guest_enter(e.hw), 0);
	write_page(&e, 0, 9);
	vmmu_hw_guest_exit(e.hw);
	assert_true(ring[n].flags & VMMU_DIRTY_GFN_F_DIRTY);
	assert_int_equal(ring[n].offset, 0);
	env_fini(&e);
}

static void test_ring_wrprot(void **state)
{
	(void)state;
	check_ring(true);
}

static void test_ring_dirty_bit(void **state)
{
	(void)state;
	check_ring(false);
}

/* More writes than the PML holds between two exits: none is lost. */
static void test_pml_full_exit(void **state)
{
	struct vmmu_hw_stats hs0, hs1;
	uint64_t bm[WORDS];
	struct env e;

	(void)state;
	env_init_cfg(&e, VMMU_BACKING_ANONYMOUS, (struct vmmu_vm_config){ 0 });
	touch_all(&e);
	assert_int_equal(set_slot(&e, VMMU_MEM_LOG_DIRTY_PAGES), 0);
	assert_int_equal(vmmu_hw_stats(e.hw, &hs0), 0);
	for (uint64_t p = 0; p < 1500; p++) {
		uint64_t v = p;

		assert_int_equal(vmmu_hw_write(e.hw, GPA + p * 4096, &v, sizeof(v)), 0);
	}
	assert_int_equal(vmmu_hw_stats(e.hw, &hs1), 0);
	vmmu_hw_guest_exit(e.hw);
	/* 1500 D bits: two PML-full exits. */
	assert_true(hs1.exits - hs0.exits >= 2);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
	assert_int_equal(count_bits(bm, WORDS), 1500);
	env_fini(&e);
}

/*
 * Defect: moving a logged slot (VMMU_MEM_LOG_DIRTY_PAGES kept) allocated a
 * fresh dirty bitmap: pages written before the move and not yet harvested
 * were never reported, and with INITIALLY_SET every page was reported
 * again.  The bitmap is carried over, as KVM does.
 */
static int move_slot(struct env *e, uint64_t gpa, uint32_t flags)
{
	struct vmmu_userspace_memory_region r = {
		.slot = 0,
		.flags = flags,
		.guest_phys_addr = gpa,
		.memory_size = e->size,
		.userspace_addr = (uintptr_t)e->mem,
	};
	return vmmu_set_user_memory_region(e->vm, &r);
}

static void check_move_keeps_bitmap(bool initially_set)
{
	struct vmmu_vm_config cfg = { 0 };
	uint64_t bm[WORDS], ones[WORDS];
	struct env e;

	if (initially_set)
		cfg.manual_dirty_log_protect = VMMU_DIRTY_LOG_MANUAL_PROTECT |
					       VMMU_DIRTY_LOG_INITIALLY_SET;
	env_init_cfg(&e, VMMU_BACKING_ANONYMOUS, cfg);
	touch_all(&e);
	assert_int_equal(set_slot(&e, VMMU_MEM_LOG_DIRTY_PAGES), 0);
	if (initially_set) {
		memset(ones, 0xff, sizeof(ones));
		assert_int_equal(vmmu_clear_dirty_log(e.vm, 0, 0, NPAGES, ones), 0);
	} else {
		assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
	}
	write_page(&e, 3, 1);
	write_page(&e, 700, 1);
	/* Move it, logging stays on: the two pages are still to be reported. */
	assert_int_equal(move_slot(&e, GPA + (1ull << 30), VMMU_MEM_LOG_DIRTY_PAGES), 0);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
	assert_int_equal(count_bits(bm, WORDS), 2);
	assert_true(bit(bm, 3) && bit(bm, 700));
	/* And back, after a write at the new place. */
	assert_int_equal(vmmu_hw_write(e.hw, GPA + (1ull << 30) + 9 * 4096, &(uint64_t){ 1 }, 8),
			 0);
	vmmu_hw_guest_exit(e.hw);
	assert_int_equal(move_slot(&e, GPA, VMMU_MEM_LOG_DIRTY_PAGES), 0);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
	assert_true(bit(bm, 9));
	assert_int_equal(count_bits(bm, WORDS), initially_set ? 3 : 1);
	env_fini(&e);
}

static void test_move_keeps_bitmap(void **state)
{
	(void)state;
	check_move_keeps_bitmap(false);
}

static void test_move_keeps_bitmap_initially_set(void **state)
{
	(void)state;
	check_move_keeps_bitmap(true);
}

/*
 * Defect: with a soft-full dirty ring, vmmu_hw_read/write at an address
 * beyond the guest-physical width returned -ENOBUFS: the model entered
 * guest mode before it looked at the address.  Arguments come first.
 */
static void test_ring_full_bad_address(void **state)
{
	struct vmmu_vm_config cfg = { .dirty_ring_size = 1024 };
	uint64_t v = 1;
	struct env e;
	int r = 0;

	(void)state;
	env_init_cfg(&e, VMMU_BACKING_ANONYMOUS, cfg);
	touch_all(&e);
	assert_int_equal(set_slot(&e, VMMU_MEM_LOG_DIRTY_PAGES), 0);
	for (uint64_t p = 0; p < NPAGES && !r; p++)
		r = vmmu_hw_write(e.hw, GPA + p * 4096, &v, sizeof(v));
	assert_int_equal(r, -ENOBUFS);
	vmmu_hw_guest_exit(e.hw);
	assert_int_equal(vmmu_hw_read(e.hw, 1ull << 48, &v, sizeof(v)), -EINVAL);
	assert_int_equal(vmmu_hw_write(e.hw, (1ull << 48) - 4, &v, sizeof(v)), -EINVAL);
	assert_int_equal(vmmu_hw_fetch(e.hw, ~0ull - 2, &v, sizeof(v)), -EINVAL);
	/* A good address still meets the full ring. */
	assert_int_equal(vmmu_hw_read(e.hw, GPA, &v, sizeof(v)), -ENOBUFS);
	env_fini(&e);
}

/*
 * Defect: a full dirty ring dropped entries with only a WARN.  An emulator
 * that calls vmmu_vcpu_page_fault() again and again outside guest mode
 * (no guest entry, so no -ENOBUFS there) filled the ring past its end.
 * Now a fault on a soft-full ring is refused with -ENOBUFS before it
 * changes anything, and every fault that was fixed has its entry.
 */
static void test_ring_full_fault(void **state)
{
	struct vmmu_vm_config cfg = { .dirty_log_wrprot = true, .dirty_ring_size = 1024 };
	struct vmmu_dirty_gfn *ring;
	uint32_t size, n = 0, fixed = 0;
	uint64_t p, reset;
	struct env e;
	int r = 0;

	(void)state;
	env_init_cfg(&e, VMMU_BACKING_ANONYMOUS, cfg);
	touch_all(&e);
	assert_int_equal(set_slot(&e, VMMU_MEM_LOG_DIRTY_PAGES), 0);
	assert_int_equal(vmmu_vcpu_dirty_ring(e.vcpu, &ring, &size), 0);
	for (p = 0; p < NPAGES; p++) {
		r = vmmu_vcpu_page_fault(e.vcpu, GPA + p * 4096,
					 VMMU_EPT_ACC_WRITE | VMMU_EPT_READABLE);
		if (r < 0)
			break;
		assert_int_equal(r, VMMU_PF_FIXED);
		fixed++;
	}
	assert_int_equal(r, -ENOBUFS);
	/* The refused fault changed nothing. */
	assert_false(leaf(&e, p, NULL) & EPT_WRITABLE);
	assert_int_equal(vmmu_vcpu_page_fault(e.vcpu, GPA + p * 4096,
					      VMMU_EPT_ACC_WRITE | VMMU_EPT_READABLE),
			 -ENOBUFS);
	while (n < size &&
	       (__atomic_load_n(&ring[n].flags, __ATOMIC_ACQUIRE) & VMMU_DIRTY_GFN_F_DIRTY)) {
		assert_int_equal(ring[n].offset, n);
		n++;
	}
	assert_int_equal(n, fixed);
	assert_true(n < size);
	/* After a reset the fault goes through and is logged. */
	for (uint32_t i = 0; i < n; i++)
		__atomic_store_n(&ring[i].flags, VMMU_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
	assert_int_equal(vmmu_reset_dirty_rings(e.vm, &reset), 0);
	assert_int_equal(reset, n);
	assert_int_equal(vmmu_vcpu_page_fault(e.vcpu, GPA + p * 4096,
					      VMMU_EPT_ACC_WRITE | VMMU_EPT_READABLE),
			 VMMU_PF_FIXED);
	assert_true(ring[n & (size - 1)].flags & VMMU_DIRTY_GFN_F_DIRTY);
	assert_int_equal(ring[n & (size - 1)].offset, p);
	env_fini(&e);
}

/*
 * Defect: aging without A/D bits takes W away from a logged page's leaf
 * without a TLB flush; a harvest that then found the leaf already
 * protected did not flush either, so the guest's next write went through
 * its still-writable TLB entry and was never logged.  A harvest that took
 * anything flushes: for the bitmap, the manual clear and the ring reset.
 */
enum harvest_kind {
	HARVEST_GET,
	HARVEST_CLEAR,
	HARVEST_RING
};

static void check_harvest_after_aging(enum harvest_kind kind)
{
	struct vmmu_vm_config cfg = { .disable_ept_ad = true };
	struct vmmu_dirty_gfn *ring = NULL;
	uint64_t bm[WORDS], one[1] = { 1 }, reset;
	uint32_t size;
	bool young = false;
	struct env e;

	if (kind == HARVEST_CLEAR)
		cfg.manual_dirty_log_protect = VMMU_DIRTY_LOG_MANUAL_PROTECT;
	if (kind == HARVEST_RING)
		cfg.dirty_ring_size = 1024;
	env_init_cfg(&e, VMMU_BACKING_ANONYMOUS, cfg);
	touch_all(&e);
	assert_int_equal(set_slot(&e, VMMU_MEM_LOG_DIRTY_PAGES), 0);
	if (kind == HARVEST_RING)
		assert_int_equal(vmmu_vcpu_dirty_ring(e.vcpu, &ring, &size), 0);
	/* The write faults, is logged, and leaves a writable TLB entry. */
	write_page(&e, 0, 1);
	/* Aging removes every right, W included, and flushes nothing. */
	assert_int_equal(vmmu_notify_clear_young(e.vm, (uintptr_t)e.mem, (uintptr_t)e.mem + 4096,
						 &young),
			 0);
	assert_true(young);
	assert_false(leaf(&e, 0, NULL) & EPT_WRITABLE);
	switch (kind) {
	case HARVEST_GET:
		assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
		assert_true(bit(bm, 0));
		break;
	case HARVEST_CLEAR:
		assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
		assert_true(bit(bm, 0));
		assert_int_equal(vmmu_clear_dirty_log(e.vm, 0, 0, 64, one), 0);
		break;
	case HARVEST_RING:
		assert_true(ring[0].flags & VMMU_DIRTY_GFN_F_DIRTY);
		assert_int_equal(ring[0].offset, 0);
		__atomic_store_n(&ring[0].flags, VMMU_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
		assert_int_equal(vmmu_reset_dirty_rings(e.vm, &reset), 0);
		assert_int_equal(reset, 1);
		break;
	}
	/* A write after the harvest returned is in the next one. */
	write_page(&e, 0, 2);
	if (kind == HARVEST_RING) {
		assert_true(ring[1].flags & VMMU_DIRTY_GFN_F_DIRTY);
		assert_int_equal(ring[1].offset, 0);
	} else {
		assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
		assert_true(bit(bm, 0));
	}
	env_fini(&e);
}

static void test_harvest_after_aging_get(void **state)
{
	(void)state;
	check_harvest_after_aging(HARVEST_GET);
}

static void test_harvest_after_aging_clear(void **state)
{
	(void)state;
	check_harvest_after_aging(HARVEST_CLEAR);
}

static void test_harvest_after_aging_ring(void **state)
{
	(void)state;
	check_harvest_after_aging(HARVEST_RING);
}

static void test_errors(void **state)
{
	struct vmmu_vm_config bad[] = {
		{ .manual_dirty_log_protect = 4 },
		{ .manual_dirty_log_protect = VMMU_DIRTY_LOG_INITIALLY_SET },
		{ .dirty_ring_size = 1000 },
		{ .dirty_ring_size = 512 },
		{ .dirty_ring_size = 1u << 17 },
		{ .dirty_ring_size = 4096, .manual_dirty_log_protect = 1 },
	};
	uint64_t bm[WORDS], snap[WORDS], ones[WORDS];
	struct vmmu_vm *vm;
	struct vmmu_dirty_gfn *ring;
	uint32_t n;
	struct env e;

	(void)state;
	for (unsigned i = 0; i < VMMU_ARRAY_SIZE(bad); i++)
		assert_int_equal(vmmu_vm_create(&bad[i], &vm), -EINVAL);

	env_init_cfg(&e, VMMU_BACKING_ANONYMOUS,
		     (struct vmmu_vm_config){ .manual_dirty_log_protect =
						      VMMU_DIRTY_LOG_MANUAL_PROTECT });
	memset(ones, 0xff, sizeof(ones));
	assert_int_equal(vmmu_get_dirty_log(NULL, 0, bm), -EINVAL);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, NULL), -EINVAL);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), -ENOENT); /* not logged */
	assert_int_equal(vmmu_get_dirty_log(e.vm, 5, bm), -ENOENT);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 2u << 16, bm), -EINVAL);
	assert_int_equal(vmmu_get_dirty_log(e.vm, VMMU_USER_MEM_SLOTS, bm), -EINVAL);
	assert_int_equal(vmmu_vcpu_dirty_ring(e.vcpu, &ring, &n), -ENXIO);
	assert_int_equal(vmmu_reset_dirty_rings(e.vm, NULL), -ENXIO);
	assert_int_equal(vmmu_reset_dirty_rings(NULL, NULL), -EINVAL);

	touch_all(&e);
	assert_int_equal(set_slot(&e, VMMU_MEM_LOG_DIRTY_PAGES), 0);
	for (uint64_t p = 0; p < NPAGES; p += 5)
		write_page(&e, p, 1);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, snap), 0);
	assert_int_equal(vmmu_clear_dirty_log(NULL, 0, 0, 64, ones), -EINVAL);
	assert_int_equal(vmmu_clear_dirty_log(e.vm, 0, 0, 64, NULL), -EINVAL);
	assert_int_equal(vmmu_clear_dirty_log(e.vm, 0, 32, 64, ones), -EINVAL);
	assert_int_equal(vmmu_clear_dirty_log(e.vm, 0, 0, 65, ones), -EINVAL);
	assert_int_equal(vmmu_clear_dirty_log(e.vm, 0, NPAGES - 64, 128, ones), -EINVAL);
	assert_int_equal(vmmu_clear_dirty_log(e.vm, 0, NPAGES + 64, 64, ones), -EINVAL);
	assert_int_equal(vmmu_clear_dirty_log(e.vm, 3, 0, 64, ones), -ENOENT);
	assert_int_equal(vmmu_clear_dirty_log(e.vm, 0, 0, 0, ones), 0);
	/* None of the failed calls changed the log or the protection. */
	assert_int_equal(vmmu_get_dirty_log(e.vm, 0, bm), 0);
	assert_memory_equal(bm, snap, sizeof(bm));
	assert_true(leaf(&e, 5, NULL) & EPT_DIRTY);
	env_fini(&e);

	/* clear without manual protect */
	env_init_cfg(&e, VMMU_BACKING_ANONYMOUS, (struct vmmu_vm_config){ 0 });
	assert_int_equal(set_slot(&e, VMMU_MEM_LOG_DIRTY_PAGES), 0);
	assert_int_equal(vmmu_clear_dirty_log(e.vm, 0, 0, 64, ones), -EINVAL);
	env_fini(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exact_reports_wrprot),
		cmocka_unit_test(test_exact_reports_dirty_bit),
		cmocka_unit_test(test_eager_split_and_recover),
		cmocka_unit_test(test_lazy_split),
		cmocka_unit_test(test_split_allocation_failure),
		cmocka_unit_test(test_manual_protect),
		cmocka_unit_test(test_initially_set),
		cmocka_unit_test(test_initially_set_partial_word),
		cmocka_unit_test(test_initially_set_no_eager_split),
		cmocka_unit_test(test_ring_wrprot),
		cmocka_unit_test(test_ring_dirty_bit),
		cmocka_unit_test(test_pml_full_exit),
		cmocka_unit_test(test_harvest_after_aging_get),
		cmocka_unit_test(test_harvest_after_aging_clear),
		cmocka_unit_test(test_harvest_after_aging_ring),
		cmocka_unit_test(test_ring_full_fault),
		cmocka_unit_test(test_move_keeps_bitmap),
		cmocka_unit_test(test_move_keeps_bitmap_initially_set),
		cmocka_unit_test(test_ring_full_bad_address),
		cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
