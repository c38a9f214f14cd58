// SPDX-License-Identifier: MIT
/*
 * test_mmu_role.c - cpu role vs root role, the per-vCPU root cache, and
 * vmmu_vcpu_set_paging's rules.
 *
 *  - role computation: with TDP a CR0.WP (or SMEP, PKE, mode) change leaves
 *    the root role alone; with shadow paging WP, SMEP-without-WP and the
 *    guest format are part of it;
 *  - a CR0.WP toggle with TDP keeps the root, builds none, requests no TLB
 *    flush; with unload_roots_on_role_change every toggle unloads (and the
 *    next entry reloads and flushes);
 *  - root cache: misses, hits, least-recently-used eviction order (and the
 *    evicted root's reference is dropped), no reuse of a root made obsolete
 *    by vmmu_zap_all, nothing obsolete handed out after a memslot delete;
 *  - every reference is returned: after the vCPU and the roots are gone no
 *    page-table page is in use;
 *  - set_paging: each invalid combination is refused with -EINVAL and
 *    changes nothing (state and generation as before).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <vmmu/paging.h>
#include <vmmu/vmmu.h>

#include "mmu_role.h"
#include "tdp_mmu.h"

#include "../common/test_util.h"

#define LONG_CR0 (VMMU_CR0_PE | VMMU_CR0_PG | VMMU_CR0_WP)
#define LONG_CR4 (VMMU_CR4_PAE)
#define LONG_EFER (VMMU_EFER_LME | VMMU_EFER_LMA | VMMU_EFER_NXE)

static const struct vmmu_paging_state long_state = {
	.cr0 = LONG_CR0,
	.cr3 = 0x1000,
	.cr4 = LONG_CR4,
	.efer = LONG_EFER,
};

struct fix {
	struct vmmu_vm *vm;
	struct vmmu_vcpu *vcpu;
	void *mem;
};

static void fix_create(struct fix *f, bool unload_switch)
{
	struct vmmu_vm_config cfg = { .unload_roots_on_role_change = unload_switch };

	assert_int_equal(vmmu_vm_create(&cfg, &f->vm), 0);
	f->mem = test_mmap(16 << 20);
	assert_non_null(f->mem);
	assert_int_equal(vmmu_set_user_memory_region(f->vm,
						     &(struct vmmu_userspace_memory_region){
							     .slot = 0,
							     .guest_phys_addr = 0,
							     .memory_size = 16 << 20,
							     .userspace_addr = (uintptr_t)f->mem,
						     }),
			 0);
	assert_int_equal(vmmu_vcpu_create(f->vm, 0, &f->vcpu), 0);
}

static void fix_destroy(struct fix *f)
{
	if (f->vcpu)
		assert_int_equal(vmmu_vcpu_destroy(f->vcpu), 0);
	assert_int_equal(vmmu_vm_destroy(f->vm), 0);
	test_munmap(f->mem, 16 << 20);
}

/* Enter and leave guest mode once: loads the root, services requests. */
static struct vmmu_guest_entry enter_exit(struct vmmu_vcpu *vcpu)
{
	struct vmmu_guest_entry e;

	assert_int_equal(vmmu_vcpu_enter_guest(vcpu, &e), 0);
	assert_int_equal(vmmu_vcpu_exit_guest(vcpu), 0);
	return e;
}

static uint64_t roots_built(struct vmmu_vm *vm)
{
	struct vmmu_vm_stats s;

	assert_int_equal(vmmu_vm_stats(vm, &s), 0);
	return s.roots_built;
}

static struct vmmu_vcpu_mmu_stats mmu_stats(struct vmmu_vcpu *vcpu)
{
	struct vmmu_vcpu_mmu_stats s;

	assert_int_equal(vmmu_vcpu_mmu_stats(vcpu, &s), 0);
	return s;
}

static void test_role_computation(void **state)
{
	struct fix f;
	struct vmmu_paging_state st = long_state, nowp = long_state;
	union vmmu_cpu_role c1, c2;

	(void)state;
	fix_create(&f, false);
	nowp.cr0 &= ~VMMU_CR0_WP;
	c1 = vmmu_calc_cpu_role(&st, 0);
	c2 = vmmu_calc_cpu_role(&nowp, 0);
	assert_int_not_equal(c1.word, c2.word);
	assert_int_equal(c1.base.level, 4);
	assert_true(c1.base.cr0_wp);
	assert_false(c2.base.cr0_wp);
	/* TDP: the root role ignores the guest's paging. */
	assert_int_equal(vmmu_calc_root_role(f.vm, c1, true).word,
			 vmmu_calc_root_role(f.vm, c2, true).word);
	assert_int_equal(vmmu_calc_root_role(f.vm, c1, true).word, vmmu_root_role(f.vm, 0).word);
	/* Shadow: WP is part of the root role. */
	assert_int_not_equal(vmmu_calc_root_role(f.vm, c1, false).word,
			     vmmu_calc_root_role(f.vm, c2, false).word);
	assert_false(vmmu_calc_root_role(f.vm, c1, false).direct);

	/* SMEP without WP is a shadow root bit, not a TDP one. */
	st.cr4 |= VMMU_CR4_SMEP;
	nowp.cr4 |= VMMU_CR4_SMEP;
	c1 = vmmu_calc_cpu_role(&st, 0);
	c2 = vmmu_calc_cpu_role(&nowp, 0);
	assert_false(c1.base.smep_andnot_wp);
	assert_true(c2.base.smep_andnot_wp);
	assert_int_equal(vmmu_calc_root_role(f.vm, c1, true).word,
			 vmmu_calc_root_role(f.vm, c2, true).word);

	/* A 32-bit guest: 2 guest levels, shadowed at PAE level with NX. */
	st = (struct vmmu_paging_state){ .cr0 = VMMU_CR0_PE | VMMU_CR0_PG, .cr3 = 0x2000 };
	c1 = vmmu_calc_cpu_role(&st, 0);
	assert_int_equal(c1.base.level, 2);
	assert_true(c1.base.has_4_byte_gpte);
	assert_int_equal(vmmu_calc_root_role(f.vm, c1, false).level, 3);
	assert_true(vmmu_calc_root_role(f.vm, c1, false).efer_nx);
	assert_int_equal(vmmu_calc_root_role(f.vm, c1, true).level, 4);

	/* Paging off: direct in both; SMM: a different TDP root. */
	st = (struct vmmu_paging_state){ 0 };
	c1 = vmmu_calc_cpu_role(&st, 0);
	assert_true(c1.base.direct);
	assert_true(vmmu_calc_root_role(f.vm, c1, false).direct);
	c2 = vmmu_calc_cpu_role(&st, 1);
	assert_int_not_equal(vmmu_calc_root_role(f.vm, c1, true).word,
			     vmmu_calc_root_role(f.vm, c2, true).word);
	fix_destroy(&f);
}

static void test_wp_toggle_tdp_keeps_root(void **state)
{
	struct fix f;
	struct vmmu_paging_state st = long_state;
	struct vmmu_sp *root;
	struct vmmu_vcpu_mmu_stats s0, s1;
	uint64_t built;

	(void)state;
	fix_create(&f, false);
	assert_int_equal(vmmu_vcpu_set_paging(f.vcpu, &st), 0);
	enter_exit(f.vcpu);
	root = f.vcpu->root;
	assert_non_null(root);
	built = roots_built(f.vm);
	s0 = mmu_stats(f.vcpu);
	for (int i = 0; i < 1000; i++) {
		st.cr0 ^= VMMU_CR0_WP;
		assert_int_equal(vmmu_vcpu_set_paging(f.vcpu, &st), 0);
		assert_ptr_equal(f.vcpu->root, root);
		assert_false(__atomic_load_n(&f.vcpu->requests, __ATOMIC_RELAXED) &
			     VMMU_REQ_TLB_FLUSH);
		assert_false(enter_exit(f.vcpu).flush_tlb);
	}
	s1 = mmu_stats(f.vcpu);
	assert_int_equal(roots_built(f.vm), built);
	assert_int_equal(s1.cpu_role_changes - s0.cpu_role_changes, 1000);
	assert_int_equal(s1.root_role_changes, s0.root_role_changes);
	assert_int_equal(s1.root_loads, s0.root_loads);
	assert_int_equal(s1.root_unloads, 0);
	/* A CR3 switch with TDP keeps the root too. */
	st.cr3 = 0x5000;
	assert_int_equal(vmmu_vcpu_set_paging(f.vcpu, &st), 0);
	assert_ptr_equal(f.vcpu->root, root);
	fix_destroy(&f);
}

static void test_wp_toggle_unload_switch(void **state)
{
	struct fix f;
	struct vmmu_paging_state st = long_state;
	struct vmmu_vcpu_mmu_stats s0, s1;
	uint64_t built;

	(void)state;
	fix_create(&f, true);
	assert_int_equal(vmmu_vcpu_set_paging(f.vcpu, &st), 0);
	enter_exit(f.vcpu);
	built = roots_built(f.vm);
	s0 = mmu_stats(f.vcpu);
	for (int i = 0; i < 100; i++) {
		st.cr0 ^= VMMU_CR0_WP;
		assert_int_equal(vmmu_vcpu_set_paging(f.vcpu, &st), 0);
		assert_null(f.vcpu->root);
		/* The next entry reloads and flushes the TLB. */
		assert_true(enter_exit(f.vcpu).flush_tlb);
		assert_non_null(f.vcpu->root);
	}
	s1 = mmu_stats(f.vcpu);
	assert_int_equal(s1.root_unloads - s0.root_unloads, 100);
	assert_int_equal(s1.root_loads - s0.root_loads, 100);
	/* The MMU's own reference keeps the root alive: it is found again,
	 * not rebuilt. */
	assert_int_equal(roots_built(f.vm), built);
	/* A CR3 write alone is no role change: nothing unloaded. */
	st.cr3 = 0x7000;
	assert_int_equal(vmmu_vcpu_set_paging(f.vcpu, &st), 0);
	assert_non_null(f.vcpu->root);
	assert_int_equal(mmu_stats(f.vcpu).root_unloads, s1.root_unloads);
	fix_destroy(&f);
}

/* Distinct direct root roles for the cache tests (bits a TDP root does not
 * use make them distinct; each still gets its own tree). */
static union vmmu_sp_role role_n(struct vmmu_vm *vm, unsigned n)
{
	union vmmu_sp_role r = vmmu_root_role(vm, 0);

	r.cr0_wp = n & 1;
	r.efer_nx = (n >> 1) & 1;
	r.smep_andnot_wp = (n >> 2) & 1;
	return r;
}

static void switch_to(struct fix *f, unsigned n)
{
	vmmu_mmu_new_root(f->vcpu, 0, role_n(f->vm, n));
	assert_int_equal(vmmu_mmu_load_root(f->vcpu), 0);
	assert_int_equal(f->vcpu->root->role.word, role_n(f->vm, n).word);
}

/* The cache must hold exactly roles @a, @b, @c (most recent first; ~0u:
 * empty). */
static void expect_cache(struct fix *f, unsigned a, unsigned b, unsigned c)
{
	unsigned want[3] = { a, b, c };

	for (int i = 0; i < 3; i++) {
		struct vmmu_sp *sp = f->vcpu->mmu.prev_roots[i].sp;

		if (want[i] == ~0u) {
			assert_null(sp);
			continue;
		}
		assert_non_null(sp);
		assert_int_equal(sp->role.word, role_n(f->vm, want[i]).word);
	}
}

static int refcount(struct fix *f, struct vmmu_sp *sp)
{
	int r;

	pthread_mutex_lock(&f->vm->roots_lock);
	r = sp->root_refcount;
	pthread_mutex_unlock(&f->vm->roots_lock);
	return r;
}

static void test_root_cache_lru(void **state)
{
	struct fix f;
	struct vmmu_sp *sp[5];
	struct vmmu_vcpu_mmu_stats s;
	uint64_t built0;

	(void)state;
	fix_create(&f, false);
	enter_exit(f.vcpu); /* the default root, role 0 */
	built0 = roots_built(f.vm);
	sp[0] = f.vcpu->root;
	assert_int_equal(sp[0]->role.word, role_n(f.vm, 0).word);

	for (unsigned n = 1; n <= 3; n++) {
		switch_to(&f, n);
		sp[n] = f.vcpu->root;
	}
	expect_cache(&f, 2, 1, 0);
	assert_int_equal(roots_built(f.vm), built0 + 3);
	s = mmu_stats(f.vcpu);
	assert_int_equal(s.root_cache_misses, 3);
	assert_int_equal(s.root_cache_hits, 0);
	/* vCPU + MMU references each */
	for (int n = 0; n <= 3; n++)
		assert_int_equal(refcount(&f, sp[n]), 2);

	/* Hit in the middle: 1 comes back, 3 goes to the front. */
	switch_to(&f, 1);
	assert_ptr_equal(f.vcpu->root, sp[1]);
	expect_cache(&f, 3, 2, 0);
	assert_int_equal(mmu_stats(f.vcpu).root_cache_hits, 1);
	assert_true(__atomic_load_n(&f.vcpu->requests, __ATOMIC_RELAXED) & VMMU_REQ_TLB_FLUSH);

	/* Miss with a full cache: 0, the least recently used, falls out and
	 * its reference is dropped. */
	switch_to(&f, 4);
	sp[4] = f.vcpu->root;
	expect_cache(&f, 1, 3, 2);
	assert_int_equal(refcount(&f, sp[0]), 1);
	s = mmu_stats(f.vcpu);
	assert_int_equal(s.root_cache_evictions, 1);
	assert_int_equal(s.root_cache_misses, 4);

	/* Switching to the current role again changes nothing. */
	vmmu_mmu_new_root(f.vcpu, 0, role_n(f.vm, 4));
	assert_ptr_equal(f.vcpu->root, sp[4]);
	expect_cache(&f, 1, 3, 2);

	/* 0 again: a miss; the VM still has the root (its own reference), so
	 * it is found, not built; 2 is evicted now. */
	switch_to(&f, 0);
	assert_ptr_equal(f.vcpu->root, sp[0]);
	expect_cache(&f, 4, 1, 3);
	assert_int_equal(refcount(&f, sp[2]), 1);
	assert_int_equal(roots_built(f.vm), built0 + 4);

	/* Hits at every position, in turn. */
	switch_to(&f, 3); /* last */
	expect_cache(&f, 0, 4, 1);
	switch_to(&f, 0); /* first */
	expect_cache(&f, 3, 4, 1);
	assert_int_equal(mmu_stats(f.vcpu).root_cache_hits, 3);
	fix_destroy(&f);
}

static void test_root_cache_no_obsolete_reuse(void **state)
{
	struct fix f;
	struct vmmu_sp *old1;
	uint64_t built;

	(void)state;
	fix_create(&f, false);
	enter_exit(f.vcpu);
	switch_to(&f, 1);
	old1 = f.vcpu->root;
	switch_to(&f, 2);
	expect_cache(&f, 1, 0, ~0u);

	/* Every root becomes obsolete; the cache still references two. */
	assert_int_equal(vmmu_zap_all(f.vm), 0);
	built = roots_built(f.vm);
	vmmu_mmu_new_root(f.vcpu, 0, role_n(f.vm, 1));
	/* Not reused: the switch is a miss and the root is built anew. */
	assert_null(f.vcpu->root);
	assert_int_equal(mmu_stats(f.vcpu).root_cache_hits, 0);
	assert_int_equal(vmmu_mmu_load_root(f.vcpu), 0);
	assert_ptr_not_equal(f.vcpu->root, old1);
	assert_false(f.vcpu->root->invalid);
	assert_int_equal(roots_built(f.vm), built + 1);
	/* Loading dropped the obsolete entries. */
	for (int i = 0; i < 3; i++) {
		struct vmmu_sp *sp = f.vcpu->mmu.prev_roots[i].sp;

		assert_true(!sp || !sp->invalid);
	}
	assert_true(mmu_stats(f.vcpu).obsolete_roots_dropped >= 1);

	/* Guest entry also drops obsolete roots (zap_all asks for a reload). */
	switch_to(&f, 0);
	assert_int_equal(vmmu_zap_all(f.vm), 0);
	enter_exit(f.vcpu);
	assert_false(f.vcpu->root->invalid);
	for (int i = 0; i < 3; i++)
		assert_null(f.vcpu->mmu.prev_roots[i].sp);
	fix_destroy(&f);
}

static void test_root_cache_memslot_delete(void **state)
{
	struct fix f;
	struct vmmu_guest_entry e;
	uint64_t v = 1;
	void *hva;
	int level;

	(void)state;
	fix_create(&f, false);
	enter_exit(f.vcpu);
	assert_int_equal(vmmu_vcpu_page_fault(f.vcpu, 0x3000, VMMU_EPT_ACC_WRITE), VMMU_PF_FIXED);
	switch_to(&f, 1);
	assert_int_equal(vmmu_vcpu_page_fault(f.vcpu, 0x3000, VMMU_EPT_ACC_WRITE), VMMU_PF_FIXED);
	switch_to(&f, 0); /* hit */
	(void)v;

	assert_int_equal(vmmu_set_user_memory_region(f.vm,
						     &(struct vmmu_userspace_memory_region){
							     .slot = 0,
							     .memory_size = 0,
						     }),
			 0);
	/* Whatever root a switch or an entry hands out is valid and no longer
	 * maps the deleted slot. */
	for (unsigned n = 0; n < 2; n++) {
		vmmu_mmu_new_root(f.vcpu, 0, role_n(f.vm, n));
		assert_true(!f.vcpu->root || !f.vcpu->root->invalid);
		assert_int_equal(vmmu_vcpu_enter_guest(f.vcpu, &e), 0);
		assert_false(f.vcpu->root->invalid);
		assert_int_equal(vmmu_vcpu_exit_guest(f.vcpu), 0);
	}
	assert_int_equal(vmmu_debug_lookup(f.vm, 0, 0x3000, &hva, &level, NULL), -ENOENT);
	fix_destroy(&f);
}

static void test_refcounts_back_to_zero(void **state)
{
	struct fix f;
	struct vmmu_vm_stats s;

	(void)state;
	fix_create(&f, false);
	enter_exit(f.vcpu);
	for (unsigned n = 1; n <= 5; n++) {
		switch_to(&f, n);
		assert_int_equal(vmmu_vcpu_page_fault(f.vcpu, n << 12, VMMU_EPT_ACC_WRITE),
				 VMMU_PF_FIXED);
	}
	assert_int_equal(vmmu_vcpu_destroy(f.vcpu), 0);
	f.vcpu = NULL;
	/* With the vCPU's references gone, zapping frees everything. */
	assert_int_equal(vmmu_zap_all(f.vm), 0);
	vmmu_rcu_barrier();
	assert_int_equal(vmmu_vm_stats(f.vm, &s), 0);
	assert_int_equal(s.roots, 0);
	assert_int_equal(s.pt_pages, 0);
	assert_int_equal(vmmu_pool_in_use(&f.vm->pool), 0);
	fix_destroy(&f);
}

static void test_set_paging_errno(void **state)
{
	const uint64_t pe = VMMU_CR0_PE, pg = VMMU_CR0_PG;
	const struct {
		const char *what;
		struct vmmu_paging_state st;
	} bad[] = {
		{ "PG without PE", { .cr0 = pg } },
		{ "NW without CD", { .cr0 = pe | VMMU_CR0_NW } },
		{ "CR0 bit 32", { .cr0 = pe | (1ull << 32) } },
		{ "CR0 bit 17", { .cr0 = pe | (1ull << 17) } },
		{ "CR0 bit 6", { .cr0 = pe | (1ull << 6) } },
		{ "CR0 bit 28", { .cr0 = pe | (1ull << 28) } },
		{ "CR4 bit 15", { .cr0 = pe, .cr4 = 1ull << 15 } },
		{ "CR4 bit 25", { .cr0 = pe, .cr4 = 1ull << 25 } },
		{ "EFER bit 9", { .cr0 = pe, .efer = 1ull << 9 } },
		{ "EFER bit 1", { .cr0 = pe, .efer = 1ull << 1 } },
		{ "LMA without PG", { .cr0 = pe, .efer = VMMU_EFER_LME | VMMU_EFER_LMA } },
		{ "LMA without LME",
		  { .cr0 = pe | pg, .cr4 = VMMU_CR4_PAE, .efer = VMMU_EFER_LMA } },
		{ "LME+PG without LMA", { .cr0 = pe | pg, .cr4 = VMMU_CR4_PAE, .efer = VMMU_EFER_LME } },
		{ "long mode without PAE",
		  { .cr0 = pe | pg, .efer = VMMU_EFER_LME | VMMU_EFER_LMA } },
		{ "PCIDE outside long mode",
		  { .cr0 = pe | pg, .cr4 = VMMU_CR4_PAE | VMMU_CR4_PCIDE } },
		{ "CR3 above MAXPHYADDR",
		  { .cr0 = LONG_CR0, .cr4 = LONG_CR4, .efer = LONG_EFER, .cr3 = 1ull << 50 } },
		{ "CPL 4", { .cr0 = pe, .cpl = 4 } },
	};
	struct fix f;
	struct vmmu_paging_state good = long_state, got;
	uint64_t gen0, gen;
	union vmmu_cpu_role role0;

	(void)state;
	fix_create(&f, false);
	good.pkru = 0x55;
	good.cpl = 3;
	good.eflags_ac = true;
	good.cr4 |= VMMU_CR4_PCIDE | VMMU_CR4_SMAP;
	good.cr3 |= 1ull << 63; /* the no-flush hint is allowed */
	assert_int_equal(vmmu_vcpu_set_paging(f.vcpu, &good), 0);
	assert_int_equal(vmmu_vcpu_get_paging(f.vcpu, &got, &gen0), 0);
	assert_memory_equal(&got, &good, sizeof(got));
	role0 = f.vcpu->mmu.cpu_role;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		print_message("refused: %s\n", bad[i].what);
		assert_int_equal(vmmu_vcpu_set_paging(f.vcpu, &bad[i].st), -EINVAL);
		assert_int_equal(vmmu_vcpu_get_paging(f.vcpu, &got, &gen), 0);
		assert_memory_equal(&got, &good, sizeof(got));
		assert_int_equal(gen, gen0);
		assert_int_equal(f.vcpu->mmu.cpu_role.word, role0.word);
	}
	assert_int_equal(vmmu_vcpu_set_paging(NULL, &good), -EINVAL);
	assert_int_equal(vmmu_vcpu_set_paging(f.vcpu, NULL), -EINVAL);
	assert_int_equal(vmmu_vcpu_get_paging(f.vcpu, NULL, NULL), -EINVAL);
	assert_int_equal(vmmu_vcpu_mmu_stats(NULL, NULL), -EINVAL);

	/* Valid corner cases: PAE paging without long mode, 32-bit paging,
	 * LME set with paging off (long mode not active yet). */
	assert_int_equal(vmmu_vcpu_set_paging(f.vcpu,
					      &(struct vmmu_paging_state){
						      .cr0 = pe | pg, .cr4 = VMMU_CR4_PAE }),
			 0);
	assert_int_equal(vmmu_vcpu_set_paging(f.vcpu, &(struct vmmu_paging_state){ .cr0 = pe | pg }),
			 0);
	assert_int_equal(vmmu_vcpu_set_paging(f.vcpu,
					      &(struct vmmu_paging_state){
						      .cr0 = pe, .efer = VMMU_EFER_LME }),
			 0);
	fix_destroy(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_role_computation),
		cmocka_unit_test(test_wp_toggle_tdp_keeps_root),
		cmocka_unit_test(test_wp_toggle_unload_switch),
		cmocka_unit_test(test_root_cache_lru),
		cmocka_unit_test(test_root_cache_no_obsolete_reuse),
		cmocka_unit_test(test_root_cache_memslot_delete),
		cmocka_unit_test(test_refcounts_back_to_zero),
		cmocka_unit_test(test_set_paging_errno),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
