// SPDX-License-Identifier: MIT
/*
 * test_paging.c - vmmu_vcpu_translate end to end: the guest's page tables
 * are built in guest memory (a memslot's host buffer), in each paging mode
 * (32-bit with PSE, PAE, 4-level, 5-level), and translated through the
 * public API.
 *
 * For every mode: the GPA and level of 4 KiB and large pages; Accessed set
 * in guest memory on every level used (none on a PAE PDPTE), Dirty only on
 * the leaf and only for writes; user access to a supervisor page, a
 * supervisor write to a read-only page with CR0.WP=1 (and allowed with
 * WP=0), a not-present page, an NX fetch: the exact #PF error code, and no
 * A/D bit written by a faulting translation; non-canonical addresses (#GP).
 * Also: paging off, tables outside guest memory (-EFAULT), bad flags.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <vmmu/paging.h>
#include <vmmu/vmmu.h>

#include "../common/guest_pt.h"
#include "../common/test_util.h"

#define MEM_SIZE (32ull << 20)
#define TABLES_GPA (16ull << 20)

struct mode_case {
	const char *name;
	enum gpt_mode mode;
	uint64_t cr4, efer;
	uint64_t gva; /* base of the test mappings */
	uint64_t large_va; /* base of a large page */
	uint64_t large_size;
	uint64_t noncanon; /* 0: no canonical check in this mode */
	bool nx;
};

static const struct mode_case cases[] = {
	{ "32-bit+PSE", GPT_32BIT, VMMU_CR4_PSE, 0, 0x80401000ull, 0xc0000000ull, 4ull << 20, 0,
	  false },
	{ "PAE", GPT_PAE, VMMU_CR4_PAE, VMMU_EFER_NXE, 0xc0123000ull, 0x40000000ull, 2ull << 20, 0,
	  true },
	{ "4-level", GPT_LONG4, VMMU_CR4_PAE, VMMU_EFER_LME | VMMU_EFER_LMA | VMMU_EFER_NXE,
	  0x00007fabcdef1000ull, 0xffffffff80000000ull, 2ull << 20, 0x0004000000000000ull, true },
	{ "5-level", GPT_LONG5, VMMU_CR4_PAE | VMMU_CR4_LA57,
	  VMMU_EFER_LME | VMMU_EFER_LMA | VMMU_EFER_NXE, 0x00abcdef12345000ull,
	  0xff00000040000000ull, 2ull << 20, 0x1000000000000000ull, true },
};

struct fix {
	struct vmmu_vm *vm;
	struct vmmu_vcpu *vcpu;
	uint8_t *mem;
};

static void fix_create(struct fix *f, unsigned root_level)
{
	struct vmmu_vm_config cfg = { .root_level = root_level };

	assert_int_equal(vmmu_vm_create(&cfg, &f->vm), 0);
	f->mem = test_mmap(MEM_SIZE);
	assert_non_null(f->mem);
	assert_int_equal(vmmu_set_user_memory_region(f->vm,
						     &(struct vmmu_userspace_memory_region){
							     .slot = 0,
							     .guest_phys_addr = 0,
							     .memory_size = MEM_SIZE,
							     .userspace_addr = (uintptr_t)f->mem,
						     }),
			 0);
	assert_int_equal(vmmu_vcpu_create(f->vm, 0, &f->vcpu), 0);
}

static void fix_destroy(struct fix *f)
{
	assert_int_equal(vmmu_vm_destroy(f->vm), 0);
	test_munmap(f->mem, MEM_SIZE);
}

static struct vmmu_translation xlate(struct fix *f, uint64_t gva, unsigned access)
{
	struct vmmu_translation t;

	assert_int_equal(vmmu_vcpu_translate(f->vcpu, gva, access, &t), 0);
	return t;
}

static void expect_ok(struct fix *f, uint64_t gva, unsigned access, uint64_t gpa, int level)
{
	struct vmmu_translation t = xlate(f, gva, access);

	assert_int_equal(t.exception, VMMU_EXC_NONE);
	assert_int_equal(t.gpa, gpa);
	assert_int_equal(t.level, level);
}

static void expect_pf(struct fix *f, uint64_t gva, unsigned access, uint32_t code)
{
	struct vmmu_translation t = xlate(f, gva, access);

	assert_int_equal(t.exception, VMMU_EXC_PF);
	assert_int_equal(t.error_code, code);
}

/*
 * After a translation of @gva with leaf @leaf: the leaf has Accessed iff
 * @accessed and Dirty iff @dirty; every upper level has Accessed if
 * @accessed (upper entries are shared with other pages, so without it
 * they are only checked when @untouched says no walk ever succeeded), and
 * none has Dirty.  A PAE PDPTE has neither.
 */
static void expect_ad(struct gpt *g, uint64_t gva, int leaf, bool accessed, bool dirty,
		      bool untouched)
{
	for (int l = gpt_levels(g); l >= leaf; l--) {
		uint64_t e = gpt_entry(g, gva, l);

		if (g->mode == GPT_PAE && l == 3) {
			assert_false(e & (GPT_A | GPT_D));
			continue;
		}
		if (l == leaf) {
			assert_int_equal(!!(e & GPT_A), accessed);
			assert_int_equal(!!(e & GPT_D), dirty);
			continue;
		}
		if (accessed)
			assert_true(e & GPT_A);
		if (untouched)
			assert_false(e & GPT_A);
		assert_false(e & GPT_D);
	}
}

static void run_mode(const struct mode_case *c)
{
	const uint64_t rw = c->gva, ro = c->gva + 0x1000, user = c->gva + 0x2000;
	const uint64_t nx = c->gva + 0x3000, absent = c->gva + 0x5000;
	struct vmmu_paging_state st = { 0 };
	struct fix f;
	struct gpt g;
	int large_level = 2;

	print_message("mode %s\n", c->name);
	fix_create(&f, c->mode == GPT_LONG5 ? 5 : 4);
	gpt_init(&g, c->mode, f.mem, 0, MEM_SIZE, TABLES_GPA);
	gpt_map(&g, rw, 0x123000, 1, GPT_W);
	gpt_map(&g, ro, 0x456000, 1, 0);
	gpt_map(&g, user, 0x789000, 1, GPT_U | GPT_W);
	if (c->nx)
		gpt_map(&g, nx, 0x9a000, 1, GPT_W | GPT_NX);
	gpt_map(&g, c->large_va, 0x400000, large_level, GPT_W);

	st.cr0 = VMMU_CR0_PE | VMMU_CR0_PG | VMMU_CR0_WP;
	st.cr3 = g.cr3;
	st.cr4 = c->cr4;
	st.efer = c->efer;
	assert_int_equal(vmmu_vcpu_set_paging(f.vcpu, &st), 0);

	/* Faults first: they must leave every A/D bit alone. */
	expect_pf(&f, rw + 8, VMMU_XLATE_USER, VMMU_PFERR_PRESENT | VMMU_PFERR_USER);
	expect_pf(&f, ro, VMMU_XLATE_WRITE, VMMU_PFERR_PRESENT | VMMU_PFERR_WRITE);
	expect_pf(&f, ro, VMMU_XLATE_WRITE | VMMU_XLATE_USER,
		  VMMU_PFERR_PRESENT | VMMU_PFERR_WRITE | VMMU_PFERR_USER);
	expect_pf(&f, absent, VMMU_XLATE_WRITE, VMMU_PFERR_WRITE);
	expect_ad(&g, rw, 1, false, false, true);
	expect_ad(&g, ro, 1, false, false, true);

	/* A read sets A everywhere, D nowhere; a write then sets D. */
	expect_ok(&f, rw + 0x10, 0, 0x123010, 1);
	expect_ad(&g, rw, 1, true, false, false);
	expect_ok(&f, rw + 0x18, VMMU_XLATE_WRITE, 0x123018, 1);
	expect_ad(&g, rw, 1, true, true, false);
	assert_true(xlate(&f, rw, 0).access & VMMU_ACC_W);
	assert_false(xlate(&f, rw, 0).access & VMMU_ACC_U);

	/* User pages are for everyone (no SMAP/SMEP here). */
	expect_ok(&f, user + 4, VMMU_XLATE_WRITE | VMMU_XLATE_USER, 0x789004, 1);
	expect_ad(&g, user, 1, true, true, false);

	/* CR0.WP=0: the kernel may write read-only pages. */
	st.cr0 &= ~VMMU_CR0_WP;
	assert_int_equal(vmmu_vcpu_set_paging(f.vcpu, &st), 0);
	expect_ok(&f, ro + 0xff8, VMMU_XLATE_WRITE, 0x456ff8, 1);
	expect_ad(&g, ro, 1, true, true, false);
	/* ...but user-mode writes still fault. */
	expect_pf(&f, ro, VMMU_XLATE_WRITE | VMMU_XLATE_USER,
		  VMMU_PFERR_PRESENT | VMMU_PFERR_WRITE | VMMU_PFERR_USER);
	st.cr0 |= VMMU_CR0_WP;
	assert_int_equal(vmmu_vcpu_set_paging(f.vcpu, &st), 0);
	expect_pf(&f, ro, VMMU_XLATE_WRITE, VMMU_PFERR_PRESENT | VMMU_PFERR_WRITE);

	if (c->nx) {
		expect_pf(&f, nx, VMMU_XLATE_FETCH, VMMU_PFERR_PRESENT | VMMU_PFERR_FETCH);
		expect_ad(&g, nx, 1, false, false, false);
		expect_ok(&f, nx, 0, 0x9a000, 1);
		assert_false(xlate(&f, nx, 0).access & VMMU_ACC_X);
	}

	/* Large page: offset inside it, level 2, D on the large leaf. */
	expect_ok(&f, c->large_va + 0x1234, VMMU_XLATE_WRITE, 0x401234, large_level);
	expect_ok(&f, c->large_va + c->large_size - 8, 0, 0x400000 + c->large_size - 8,
		  large_level);
	expect_ad(&g, c->large_va, large_level, true, true, false);

	if (c->noncanon) {
		struct vmmu_translation t = xlate(&f, rw | c->noncanon, 0);

		assert_int_equal(t.exception, VMMU_EXC_GP);
	}

	/* The root table outside guest memory: no slot, -EFAULT. */
	st.cr3 = 1ull << 30;
	assert_int_equal(vmmu_vcpu_set_paging(f.vcpu, &st), 0);
	{
		struct vmmu_translation t;

		assert_int_equal(vmmu_vcpu_translate(f.vcpu, rw, 0, &t), -EFAULT);
	}
	fix_destroy(&f);
}

static void test_translate_modes(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		run_mode(&cases[i]);
}

/*
 * Defect: the A/D bits vmmu_vcpu_translate sets are written into the
 * guest's table pages through their host addresses, and those pages were
 * not logged: a migration copied them without the bits.  Each table page
 * the walk updated is now dirty in the slot's bitmap, or in the vCPU's
 * dirty ring.
 */
static void check_translate_logs_tables(bool ring)
{
	struct vmmu_vm_config cfg = { .dirty_ring_size = ring ? 1024 : 0 };
	const uint64_t gva = 0x00007fabcdef1000ull;
	uint64_t bm[MEM_SIZE / 4096 / 64], want[4];
	struct vmmu_paging_state st = { 0 };
	struct vmmu_dirty_gfn *r;
	uint32_t nr, n = 0;
	struct fix f;
	struct gpt g;

	assert_int_equal(vmmu_vm_create(&cfg, &f.vm), 0);
	f.mem = test_mmap(MEM_SIZE);
	assert_non_null(f.mem);
	assert_int_equal(vmmu_set_user_memory_region(f.vm,
						     &(struct vmmu_userspace_memory_region){
							     .slot = 0,
							     .flags = VMMU_MEM_LOG_DIRTY_PAGES,
							     .guest_phys_addr = 0,
							     .memory_size = MEM_SIZE,
							     .userspace_addr = (uintptr_t)f.mem,
						     }),
			 0);
	assert_int_equal(vmmu_vcpu_create(f.vm, 0, &f.vcpu), 0);
	gpt_init(&g, GPT_LONG4, f.mem, 0, MEM_SIZE, TABLES_GPA);
	gpt_map(&g, gva, 0x123000, 1, GPT_W);
	st.cr0 = VMMU_CR0_PE | VMMU_CR0_PG | VMMU_CR0_WP;
	st.cr3 = g.cr3;
	st.cr4 = VMMU_CR4_PAE;
	st.efer = VMMU_EFER_LME | VMMU_EFER_LMA;
	assert_int_equal(vmmu_vcpu_set_paging(f.vcpu, &st), 0);
	for (int l = 4; l >= 1; l--)
		want[4 - l] = gpt_entry_gpa(&g, gva, l) >> 12;

	expect_ok(&f, gva, VMMU_XLATE_WRITE, 0x123000, 1);
	expect_ad(&g, gva, 1, true, true, false);
	if (ring) {
		assert_int_equal(vmmu_vcpu_dirty_ring(f.vcpu, &r, &nr), 0);
		while (n < nr && (r[n].flags & VMMU_DIRTY_GFN_F_DIRTY))
			n++;
		/* A on four levels, D with A on the leaf: one entry per
		 * table updated. */
		assert_int_equal(n, 4);
		for (int i = 0; i < 4; i++) {
			bool found = false;

			for (uint32_t j = 0; j < n; j++)
				found |= r[j].slot == 0 && r[j].offset == want[i];
			assert_true(found);
		}
	} else {
		assert_int_equal(vmmu_get_dirty_log(f.vm, 0, bm), 0);
		for (int i = 0; i < 4; i++)
			assert_true(bm[want[i] / 64] >> (want[i] % 64) & 1);
		for (size_t i = 0; i < sizeof(bm) / sizeof(bm[0]); i++)
			n += (uint32_t)__builtin_popcountll(bm[i]);
		assert_int_equal(n, 4);
		/* Nothing left to set: nothing is logged again. */
		expect_ok(&f, gva, VMMU_XLATE_WRITE, 0x123000, 1);
		assert_int_equal(vmmu_get_dirty_log(f.vm, 0, bm), 0);
		for (size_t i = 0; i < sizeof(bm) / sizeof(bm[0]); i++)
			assert_int_equal(bm[i], 0);
	}
	fix_destroy(&f);
}

static void test_translate_logs_tables(void **state)
{
	(void)state;
	check_translate_logs_tables(false);
	check_translate_logs_tables(true);
}

static void test_translate_paging_off_and_args(void **state)
{
	struct fix f;
	struct vmmu_translation t;

	(void)state;
	fix_create(&f, 4);
	/* Paging off: the GPA is the address, cut to 32 bits. */
	t = xlate(&f, 0x123456789ull, VMMU_XLATE_WRITE);
	assert_int_equal(t.exception, VMMU_EXC_NONE);
	assert_int_equal(t.gpa, 0x23456789ull);
	assert_int_equal(t.level, 0);

	assert_int_equal(vmmu_vcpu_translate(NULL, 0, 0, &t), -EINVAL);
	assert_int_equal(vmmu_vcpu_translate(f.vcpu, 0, 0, NULL), -EINVAL);
	assert_int_equal(vmmu_vcpu_translate(f.vcpu, 0, 1u << 0, &t), -EINVAL);
	assert_int_equal(vmmu_vcpu_translate(f.vcpu, 0, VMMU_XLATE_WRITE | VMMU_XLATE_FETCH, &t),
			 -EINVAL);
	assert_int_equal(vmmu_vcpu_translate(f.vcpu, 0, VMMU_XLATE_IMPLICIT | VMMU_XLATE_USER, &t),
			 -EINVAL);
	fix_destroy(&f);
}

/* SMAP with EFLAGS.AC and implicit accesses, through the paging state. */
static void test_translate_smap_ac(void **state)
{
	struct vmmu_paging_state st = {
		.cr0 = VMMU_CR0_PE | VMMU_CR0_PG | VMMU_CR0_WP,
		.cr4 = VMMU_CR4_PAE | VMMU_CR4_SMAP,
		.efer = VMMU_EFER_LME | VMMU_EFER_LMA,
	};
	const uint64_t va = 0x400000;
	struct fix f;
	struct gpt g;

	(void)state;
	fix_create(&f, 4);
	gpt_init(&g, GPT_LONG4, f.mem, 0, MEM_SIZE, TABLES_GPA);
	gpt_map(&g, va, 0x200000, 1, GPT_U | GPT_W);
	st.cr3 = g.cr3;
	assert_int_equal(vmmu_vcpu_set_paging(f.vcpu, &st), 0);
	expect_pf(&f, va, 0, VMMU_PFERR_PRESENT);
	st.eflags_ac = true;
	assert_int_equal(vmmu_vcpu_set_paging(f.vcpu, &st), 0);
	expect_ok(&f, va, 0, 0x200000, 1);
	/* An implicit supervisor access ignores AC. */
	expect_pf(&f, va, VMMU_XLATE_IMPLICIT, VMMU_PFERR_PRESENT);
	expect_ok(&f, va, VMMU_XLATE_USER, 0x200000, 1);
	fix_destroy(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_translate_modes),
		cmocka_unit_test(test_translate_paging_off_and_args),
		cmocka_unit_test(test_translate_smap_ac),
		cmocka_unit_test(test_translate_logs_tables),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
