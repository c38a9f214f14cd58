// SPDX-License-Identifier: MIT
/*
 * test_hw_paging.c - the hardware model with guest paging on: the 2-D walk.
 *
 *  - in each paging mode a guest writes and reads 64 pages through guest
 *    virtual addresses; the bytes land at the right guest-physical place,
 *    the guest's A/D bits are set in guest memory, and every guest
 *    page-table page was faulted into EPT by vmmu (EPT violations on
 *    guest-table accesses are handled like any other);
 *  - guest exceptions: #PF for a not-present page, a user access to a
 *    supervisor page, a supervisor write to a read-only page with WP=1;
 *    #GP for a non-canonical address; -EFAULT for tables outside memory;
 *  - CR0.WP toggles with the role split flush nothing and walk nothing (the
 *    virtual TLB checks rights at use); with unload_roots_on_role_change
 *    every toggle flushes;
 *  - CR3 switches between two address spaces flush the virtual TLB;
 *  - two vCPU threads through the same guest tables while another thread
 *    zaps EPT (the table pages included) and the data stays right.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <vmmu/hw.h>
#include <vmmu/paging.h>
#include <vmmu/vmmu.h>

#include "../common/guest_pt.h"
#include "../common/test_util.h"

#define MEM_SIZE (32ull << 20)
#define TABLES_GPA (16ull << 20)
#define NPAGES 64

struct fix {
	struct vmmu_vm *vm;
	struct vmmu_vcpu *vcpu[2];
	struct vmmu_hw_vcpu *hw[2];
	uint8_t *mem;
};

static void fix_create(struct fix *f, unsigned root_level, bool unload_switch)
{
	struct vmmu_vm_config cfg = { .root_level = root_level,
				      .unload_roots_on_role_change = unload_switch };

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
	for (unsigned i = 0; i < 2; i++) {
		assert_int_equal(vmmu_vcpu_create(f->vm, i, &f->vcpu[i]), 0);
		assert_int_equal(vmmu_hw_vcpu_create(f->vcpu[i], NULL, &f->hw[i]), 0);
	}
}

static void fix_destroy(struct fix *f)
{
	for (unsigned i = 0; i < 2; i++)
		assert_int_equal(vmmu_hw_vcpu_destroy(f->hw[i]), 0);
	assert_int_equal(vmmu_vm_destroy(f->vm), 0);
	test_munmap(f->mem, MEM_SIZE);
}

static struct vmmu_hw_stats hw_stats(struct vmmu_hw_vcpu *hw)
{
	struct vmmu_hw_stats s;

	assert_int_equal(vmmu_hw_stats(hw, &s), 0);
	return s;
}

static struct vmmu_paging_state mode_state(enum gpt_mode mode, uint64_t cr3)
{
	struct vmmu_paging_state st = { .cr0 = VMMU_CR0_PE | VMMU_CR0_PG | VMMU_CR0_WP,
					.cr3 = cr3 };

	switch (mode) {
	case GPT_32BIT:
		st.cr4 = VMMU_CR4_PSE;
		break;
	case GPT_PAE:
		st.cr4 = VMMU_CR4_PAE;
		st.efer = VMMU_EFER_NXE;
		break;
	case GPT_LONG5:
		st.cr4 = VMMU_CR4_LA57;
		/* fall through */
	case GPT_LONG4:
		st.cr4 |= VMMU_CR4_PAE;
		st.efer = VMMU_EFER_LME | VMMU_EFER_LMA | VMMU_EFER_NXE;
		break;
	}
	return st;
}

static uint64_t test_va(enum gpt_mode mode, unsigned i)
{
	/* spread over two last-level tables, above 4 GiB where possible */
	uint64_t base = mode == GPT_LONG5 ? 0x00ab000000000000ull + 0x1ff000ull :
			mode == GPT_LONG4 ? 0x00007f0000000000ull + 0x1ff000ull :
					    0xc01ff000ull;

	return base + (uint64_t)i * 0x1000;
}

static uint64_t test_pa(unsigned i)
{
	return 0x100000ull + (uint64_t)((i * 37) % NPAGES) * 0x1000; /* scattered */
}

static void test_2d_walk_modes(void **state)
{
	static const enum gpt_mode modes[] = { GPT_32BIT, GPT_PAE, GPT_LONG4, GPT_LONG5 };
	static const char *names[] = { "32-bit", "PAE", "4-level", "5-level" };

	(void)state;
	for (size_t m = 0; m < 4; m++) {
		struct fix f;
		struct gpt g;
		struct vmmu_paging_state st;
		struct vmmu_hw_stats s;
		struct vmmu_vcpu_stats vs;
		enum gpt_mode mode = modes[m];

		print_message("mode %s\n", names[m]);
		fix_create(&f, mode == GPT_LONG5 ? 5 : 4, false);
		gpt_init(&g, mode, f.mem, 0, MEM_SIZE, TABLES_GPA);
		for (unsigned i = 0; i < NPAGES; i++)
			gpt_map(&g, test_va(mode, i), test_pa(i), 1, GPT_W);
		st = mode_state(mode, g.cr3);
		assert_int_equal(vmmu_hw_set_paging(f.hw[0], &st), 0);

		for (unsigned i = 0; i < NPAGES; i++) {
			uint64_t v = 0xabc000ull + i;

			assert_int_equal(
				vmmu_hw_write(f.hw[0], test_va(mode, i) + 8 * (i % 512), &v, 8), 0);
		}
		for (unsigned i = 0; i < NPAGES; i++) {
			uint64_t v = 0, h;

			assert_int_equal(
				vmmu_hw_read(f.hw[0], test_va(mode, i) + 8 * (i % 512), &v, 8), 0);
			assert_int_equal(v, 0xabc000ull + i);
			memcpy(&h, f.mem + test_pa(i) + 8 * (i % 512), 8);
			assert_int_equal(h, 0xabc000ull + i);
			/* the processor set A and D in guest memory */
			assert_true(gpt_entry(&g, test_va(mode, i), 1) & GPT_A);
			assert_true(gpt_entry(&g, test_va(mode, i), 1) & GPT_D);
			assert_true(gpt_entry(&g, test_va(mode, i), 2) & GPT_A);
		}
		/* Each guest table page is mapped in EPT now: it was faulted in. */
		for (uint64_t gpa = TABLES_GPA; gpa < g.next_gpa; gpa += 4096) {
			void *hva;

			assert_int_equal(vmmu_debug_lookup(f.vm, 0, gpa, &hva, NULL, NULL), 0);
			assert_ptr_equal(hva, f.mem + gpa);
		}
		s = hw_stats(f.hw[0]);
		assert_true(s.ept_violations >= (g.next_gpa - TABLES_GPA) / 4096 + NPAGES);
		assert_true(s.gva_walks >= NPAGES);
		assert_true(s.guest_ad_updates >= NPAGES);
		assert_int_equal(vmmu_vcpu_stats(f.vcpu[0], &vs), 0);
		assert_true(vs.pf_fixed >= (g.next_gpa - TABLES_GPA) / 4096 + NPAGES);

		/* A second pass hits the virtual TLB: no walk. */
		for (unsigned i = 0; i < NPAGES; i++) {
			uint64_t v;

			assert_int_equal(vmmu_hw_read(f.hw[0], test_va(mode, i), &v, 8), 0);
		}
		assert_int_equal(hw_stats(f.hw[0]).gva_walks, s.gva_walks);
		fix_destroy(&f);
	}
}

/*
 * The processor's A/D updates in the guest's tables are writes to guest
 * memory: in a logged slot the table pages must be reported dirty, as
 * every other page the guest writes (vmmu_vcpu_translate had that defect;
 * the model goes through EPT for them, write fault or D bit and PML).
 */
static bool bm_bit(const uint64_t *bm, uint64_t gfn)
{
	return bm[gfn / 64] >> (gfn % 64) & 1;
}

static uint64_t bm_count(const uint64_t *bm, size_t words)
{
	uint64_t n = 0;

	for (size_t i = 0; i < words; i++)
		n += (uint64_t)__builtin_popcountll(bm[i]);
	return n;
}

static void check_2d_logs_tables(bool wrprot)
{
	struct vmmu_vm_config cfg = { .dirty_log_wrprot = wrprot };
	struct vmmu_userspace_memory_region region = {
		.slot = 0,
		.guest_phys_addr = 0,
		.memory_size = MEM_SIZE,
	};
	const uint64_t gva = test_va(GPT_LONG4, 0);
	uint64_t bm[MEM_SIZE / 4096 / 64], tbl[4], v = 7;
	struct vmmu_paging_state st;
	struct vmmu_hw_vcpu *hw;
	struct fix f;
	struct gpt g;

	assert_int_equal(vmmu_vm_create(&cfg, &f.vm), 0);
	f.mem = test_mmap(MEM_SIZE);
	assert_non_null(f.mem);
	region.userspace_addr = (uintptr_t)f.mem;
	assert_int_equal(vmmu_set_user_memory_region(f.vm, &region), 0);
	assert_int_equal(vmmu_vcpu_create(f.vm, 0, &f.vcpu[0]), 0);
	assert_int_equal(vmmu_hw_vcpu_create(f.vcpu[0], NULL, &hw), 0);
	/* Map everything first (paging off), then build the guest's tables
	 * and start logging. */
	for (uint64_t gpa = 0; gpa < MEM_SIZE; gpa += 4096)
		assert_int_equal(vmmu_hw_write(hw, gpa + 4088, &v, sizeof(v)), 0);
	gpt_init(&g, GPT_LONG4, f.mem, 0, MEM_SIZE, TABLES_GPA);
	gpt_map(&g, gva, 0x123000, 1, GPT_W);
	for (int l = 4; l >= 1; l--)
		tbl[4 - l] = gpt_entry_gpa(&g, gva, l) >> 12;
	st = mode_state(GPT_LONG4, g.cr3);
	assert_int_equal(vmmu_hw_set_paging(hw, &st), 0);
	region.flags = VMMU_MEM_LOG_DIRTY_PAGES;
	assert_int_equal(vmmu_set_user_memory_region(f.vm, &region), 0);
	assert_int_equal(vmmu_get_dirty_log(f.vm, 0, bm), 0);
	assert_int_equal(bm_count(bm, sizeof(bm) / 8), 0);

	/* A read sets A on four levels: four table pages written. */
	assert_int_equal(vmmu_hw_read(hw, gva, &v, sizeof(v)), 0);
	assert_int_equal(vmmu_hw_guest_exit(hw), 0);
	assert_true(gpt_entry(&g, gva, 1) & GPT_A);
	assert_int_equal(vmmu_get_dirty_log(f.vm, 0, bm), 0);
	for (int i = 0; i < 4; i++)
		assert_true(bm_bit(bm, tbl[i]));
	assert_int_equal(bm_count(bm, sizeof(bm) / 8), 4);
	/* A write sets D on the leaf entry: its table and the page itself. */
	assert_int_equal(vmmu_hw_write(hw, gva, &v, sizeof(v)), 0);
	assert_int_equal(vmmu_hw_guest_exit(hw), 0);
	assert_true(gpt_entry(&g, gva, 1) & GPT_D);
	assert_int_equal(vmmu_get_dirty_log(f.vm, 0, bm), 0);
	assert_true(bm_bit(bm, tbl[3]));
	assert_true(bm_bit(bm, 0x123));
	assert_int_equal(bm_count(bm, sizeof(bm) / 8), 2);

	assert_int_equal(vmmu_hw_vcpu_destroy(hw), 0);
	assert_int_equal(vmmu_vm_destroy(f.vm), 0);
	test_munmap(f.mem, MEM_SIZE);
}

static void test_2d_walk_logs_tables(void **state)
{
	(void)state;
	check_2d_logs_tables(false);
	check_2d_logs_tables(true);
}

static void expect_fault(struct vmmu_hw_vcpu *hw, int r, uint8_t vector, uint32_t code,
			 uint64_t addr)
{
	struct vmmu_hw_fault fl;

	assert_int_equal(r, -EACCES);
	assert_int_equal(vmmu_hw_last_fault(hw, &fl), 0);
	assert_int_equal(fl.vector, vector);
	assert_int_equal(fl.error_code, code);
	assert_int_equal(fl.address, addr);
}

static void test_2d_guest_faults(void **state)
{
	const uint64_t rw = 0x400000, ro = 0x401000, absent = 0x402000;
	struct vmmu_paging_state st;
	struct fix f;
	struct gpt g;
	uint64_t v = 7;

	(void)state;
	fix_create(&f, 4, false);
	gpt_init(&g, GPT_LONG4, f.mem, 0, MEM_SIZE, TABLES_GPA);
	gpt_map(&g, rw, 0x200000, 1, GPT_W);
	gpt_map(&g, ro, 0x201000, 1, 0);
	st = mode_state(GPT_LONG4, g.cr3);
	assert_int_equal(vmmu_hw_set_paging(f.hw[0], &st), 0);

	expect_fault(f.hw[0], vmmu_hw_write(f.hw[0], absent + 16, &v, 8), VMMU_EXC_PF,
		     VMMU_PFERR_WRITE, absent + 16);
	expect_fault(f.hw[0], vmmu_hw_write(f.hw[0], ro, &v, 8), VMMU_EXC_PF,
		     VMMU_PFERR_PRESENT | VMMU_PFERR_WRITE, ro);
	assert_false(gpt_entry(&g, ro, 1) & GPT_A); /* a fault sets nothing */
	expect_fault(f.hw[0], vmmu_hw_read(f.hw[0], 1ull << 60, &v, 8), VMMU_EXC_GP, 0, 1ull << 60);

	/* Cache the supervisor translation, then become user: it faults. */
	assert_int_equal(vmmu_hw_read(f.hw[0], rw, &v, 8), 0);
	st.cpl = 3;
	assert_int_equal(vmmu_hw_set_paging(f.hw[0], &st), 0);
	expect_fault(f.hw[0], vmmu_hw_read(f.hw[0], rw, &v, 8), VMMU_EXC_PF,
		     VMMU_PFERR_PRESENT | VMMU_PFERR_USER, rw);
	st.cpl = 0;
	assert_int_equal(vmmu_hw_set_paging(f.hw[0], &st), 0);
	assert_int_equal(vmmu_hw_read(f.hw[0], rw, &v, 8), 0);

	/* Tables outside guest memory: nothing to emulate them with. */
	st.cr3 = 1ull << 30;
	assert_int_equal(vmmu_hw_set_paging(f.hw[0], &st), 0);
	assert_int_equal(vmmu_hw_read(f.hw[0], rw, &v, 8), -EFAULT);

	/* Paging off again: addresses are guest-physical. */
	st = (struct vmmu_paging_state){ 0 };
	assert_int_equal(vmmu_hw_set_paging(f.hw[0], &st), 0);
	v = 0x5555;
	assert_int_equal(vmmu_hw_write(f.hw[0], 0x300008, &v, 8), 0);
	assert_int_equal(*(uint64_t *)(f.mem + 0x300008), 0x5555);
	fix_destroy(&f);
}

/* WP toggles around writes to a read-only page, as a W^X kernel does. */
static void wp_toggles(struct fix *f, struct gpt *g, int n)
{
	struct vmmu_paging_state st = mode_state(GPT_LONG4, g->cr3);
	uint64_t v = 1;

	for (int i = 0; i < n; i++) {
		st.cr0 &= ~VMMU_CR0_WP;
		assert_int_equal(vmmu_hw_set_paging(f->hw[0], &st), 0);
		assert_int_equal(vmmu_hw_write(f->hw[0], 0x401000, &v, 8), 0);
		st.cr0 |= VMMU_CR0_WP;
		assert_int_equal(vmmu_hw_set_paging(f->hw[0], &st), 0);
		expect_fault(f->hw[0], vmmu_hw_write(f->hw[0], 0x401000, &v, 8), VMMU_EXC_PF,
			     VMMU_PFERR_PRESENT | VMMU_PFERR_WRITE, 0x401000);
		assert_int_equal(vmmu_hw_write(f->hw[0], 0x400000, &v, 8), 0);
	}
}

static void test_2d_wp_toggle(void **state)
{
	(void)state;
	for (int unload = 0; unload < 2; unload++) {
		struct fix f;
		struct gpt g;
		struct vmmu_hw_stats s0, s1;

		fix_create(&f, 4, unload);
		gpt_init(&g, GPT_LONG4, f.mem, 0, MEM_SIZE, TABLES_GPA);
		gpt_map(&g, 0x400000, 0x200000, 1, GPT_W);
		gpt_map(&g, 0x401000, 0x201000, 1, 0);
		wp_toggles(&f, &g, 1); /* warm up */
		s0 = hw_stats(f.hw[0]);
		wp_toggles(&f, &g, 50);
		s1 = hw_stats(f.hw[0]);
		if (!unload) {
			/* Nothing flushed, nothing walked again. */
			assert_int_equal(s1.tlb_flushes, s0.tlb_flushes);
			assert_int_equal(s1.gva_tlb_flushes, s0.gva_tlb_flushes);
			/* Per round: the write that faults walks, and the #PF
			 * drops the translation (as the SDM says), so the next
			 * write with WP=0 walks again.  The other page hits. */
			assert_int_equal(s1.gva_walks - s0.gva_walks, 100);
		} else {
			assert_int_equal(s1.tlb_flushes - s0.tlb_flushes, 100);
			assert_int_equal(s1.gva_walks - s0.gva_walks, 150);
		}
		fix_destroy(&f);
	}
}

static void test_2d_cr3_switch(void **state)
{
	struct fix f;
	struct gpt a, b;
	struct vmmu_paging_state sa, sb;
	const uint64_t va = 0x7f0000001000ull;
	uint64_t v;

	(void)state;
	fix_create(&f, 4, false);
	gpt_init(&a, GPT_LONG4, f.mem, 0, MEM_SIZE, TABLES_GPA);
	gpt_map(&a, va, 0x210000, 1, GPT_W);
	gpt_init(&b, GPT_LONG4, f.mem, 0, MEM_SIZE, a.next_gpa);
	gpt_map(&b, va, 0x220000, 1, GPT_W);
	sa = mode_state(GPT_LONG4, a.cr3);
	sb = mode_state(GPT_LONG4, b.cr3);
	for (uint64_t i = 0; i < 10; i++) {
		v = 100 + i;
		assert_int_equal(vmmu_hw_set_paging(f.hw[0], &sa), 0);
		assert_int_equal(vmmu_hw_write(f.hw[0], va, &v, 8), 0);
		v = 200 + i;
		assert_int_equal(vmmu_hw_set_paging(f.hw[0], &sb), 0);
		assert_int_equal(vmmu_hw_write(f.hw[0], va, &v, 8), 0);
		assert_int_equal(*(uint64_t *)(f.mem + 0x210000), 100 + i);
		assert_int_equal(*(uint64_t *)(f.mem + 0x220000), 200 + i);
		assert_int_equal(vmmu_hw_set_paging(f.hw[0], &sa), 0);
		assert_int_equal(vmmu_hw_read(f.hw[0], va, &v, 8), 0);
		assert_int_equal(v, 100 + i);
	}
	fix_destroy(&f);
}

struct thr {
	struct fix *f;
	struct gpt *g;
	unsigned idx;
	int err;
	volatile int *stop;
};

static void *vcpu_thread(void *p)
{
	struct thr *t = p;
	struct vmmu_hw_vcpu *hw = t->f->hw[t->idx];
	struct vmmu_paging_state st = mode_state(GPT_LONG4, t->g->cr3);

	if (vmmu_hw_set_paging(hw, &st)) {
		t->err = 1;
		return NULL;
	}
	for (unsigned round = 0; round < 300 && !t->err; round++) {
		for (unsigned i = t->idx; i < NPAGES; i += 2) {
			uint64_t v = ((uint64_t)round << 16) | i, r = 0;
			uint64_t va = test_va(GPT_LONG4, i);

			if (vmmu_hw_write(hw, va, &v, 8) || vmmu_hw_read(hw, va, &r, 8) || r != v) {
				t->err = 1;
				break;
			}
		}
	}
	vmmu_hw_guest_exit(hw);
	return NULL;
}

static void test_2d_concurrent_zaps(void **state)
{
	struct fix f;
	struct gpt g;
	struct thr t[2];
	pthread_t th[2];
	volatile int stop = 0;
	struct test_rng rng;

	(void)state;
	test_rng_init(&rng, test_seed());
	fix_create(&f, 4, false);
	gpt_init(&g, GPT_LONG4, f.mem, 0, MEM_SIZE, TABLES_GPA);
	for (unsigned i = 0; i < NPAGES; i++)
		gpt_map(&g, test_va(GPT_LONG4, i), test_pa(i), 1, GPT_W);
	for (unsigned i = 0; i < 2; i++) {
		t[i] = (struct thr){ .f = &f, .g = &g, .idx = i, .stop = &stop };
		assert_int_equal(pthread_create(&th[i], NULL, vcpu_thread, &t[i]), 0);
	}
	for (int i = 0; i < 200; i++) {
		/* the table pages or the data pages, or everything */
		uint64_t start = test_rng_below(&rng, 2) ? TABLES_GPA >> 12 : 0x100;
		uint64_t len = 1 + test_rng_below(&rng, 64);

		if (test_rng_below(&rng, 16) == 0)
			assert_int_equal(vmmu_zap_all(f.vm), 0);
		else
			assert_int_equal(vmmu_zap_gfn_range(f.vm, start, start + len), 0);
		sched_yield();
	}
	for (unsigned i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(t[i].err, 0);
	}
	fix_destroy(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_2d_walk_modes),
		cmocka_unit_test(test_2d_guest_faults),
		cmocka_unit_test(test_2d_wp_toggle),
		cmocka_unit_test(test_2d_cr3_switch),
		cmocka_unit_test(test_2d_concurrent_zaps),
		cmocka_unit_test(test_2d_walk_logs_tables),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
