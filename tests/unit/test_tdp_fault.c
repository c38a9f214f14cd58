// SPDX-License-Identifier: MIT
/*
 * test_tdp_fault.c - the TDP fault path end to end, through the hardware
 * model, with several vCPU threads.
 *
 *  - 4 vCPU threads fault in a 256 MiB slot that straddles a 512 GiB
 *    boundary: each has a disjoint range (writes, reads, read-then-write,
 *    holes of single pages and of whole 2 MiB regions), and all of them
 *    write one shared range at once (each vCPU its own offsets).  At rest:
 *    every gfn maps the exact host byte at level 1 or nothing, pages_4k is
 *    the number of pages touched, pf_fixed summed over vCPUs equals it
 *    (each page fixed once), the page-table page count equals the count
 *    derived from the touched layout, host memory holds what was written;
 *  - zap of a sub-range: exactly those gfns go, pages_4k drops by exactly
 *    the count, re-access re-faults each page once and sees the data;
 *  - zap_all: nothing mapped, then all vCPUs fault everything back in on a
 *    new root (the old one is gone);
 *  - TLB: after a zap and a memslot swap a vCPU's write lands in the new
 *    host buffer, with the vCPU idle and with the vCPU running in guest mode
 *    on another thread;
 *  - vmmu_vm_destroy with vCPUs attached and pages mapped.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <vmmu/hw.h>
#include <vmmu/vmmu.h>

#include "../common/test_util.h"

#define PG 4096ull
#define NV 4
#define SLOT_BYTES (256ull << 20)
#define NP (SLOT_BYTES / PG)                  /* 65536 pages */
#define SHARED_FIRST (NP - (64ull << 20) / PG) /* last 64 MiB shared */
#define PER_VCPU (SHARED_FIRST / NV)          /* 12288 pages each */
/* 512 GiB - 128 MiB: the slot crosses a 512 GiB (level-4 entry) boundary,
 * and with it a 1 GiB (level-3 entry) one. */
#define SLOT_GPA ((512ull << 30) - (128ull << 20))
#define ZERO_OFF 4088 /* nobody writes these 8 bytes of any page */

enum kind { K_NONE, K_READ, K_WRITE, K_READ_WRITE, K_SHARED };

/* What the vCPUs do to page @p of the slot. */
static enum kind page_kind(uint64_t p)
{
	if (p >= SHARED_FIRST)
		return K_SHARED;
	if ((p / 512) % 7 == 5)
		return K_NONE; /* a whole untouched 2 MiB region */
	if (p % 13 == 7)
		return K_NONE;
	if (p % 11 == 0)
		return K_READ;
	if (p % 3 == 0)
		return K_READ_WRITE;
	return K_WRITE;
}

static unsigned page_owner(uint64_t p)
{
	return (unsigned)(p / PER_VCPU);
}

static uint64_t disjoint_off(uint64_t p)
{
	return (p % 500) * 8;
}

static uint64_t disjoint_val(uint64_t p, unsigned v)
{
	return (p << 8) | 0x80 | v;
}

static uint64_t shared_val(uint64_t p, unsigned v)
{
	return (p << 8) | v;
}

struct vcpu_ctx {
	struct vmmu_vcpu *vcpu;
	struct vmmu_hw_vcpu *hw;
};

struct fixture {
	struct vmmu_vm *vm;
	uint8_t *mem;
	struct vcpu_ctx c[NV];
	pthread_barrier_t bar;
};

struct thread_arg {
	struct fixture *f;
	unsigned v;
	bool verify; /* second pass: read back and compare, no writes */
	int errors;
	int first_err;
	uint64_t first_gpa;
};

static void note_err(struct thread_arg *a, int r, uint64_t gpa)
{
	if (!a->errors++) {
		a->first_err = r;
		a->first_gpa = gpa;
	}
}

static void touch_disjoint(struct thread_arg *a, uint64_t p)
{
	struct vmmu_hw_vcpu *hw = a->f->c[a->v].hw;
	uint64_t gpa = SLOT_GPA + p * PG + disjoint_off(p);
	enum kind k = page_kind(p);
	uint64_t val = disjoint_val(p, a->v), got = ~0ull;
	int r;

	if (k == K_NONE)
		return;
	if (a->verify || k == K_READ || k == K_READ_WRITE) {
		r = vmmu_hw_read(hw, gpa, &got, 8);
		if (r)
			note_err(a, r, gpa);
		else if (a->verify && got != (k == K_READ ? 0 : val))
			note_err(a, 1000, gpa);
		else if (!a->verify && got != 0)
			note_err(a, 1001, gpa);
	}
	if (!a->verify && k != K_READ) {
		r = vmmu_hw_write(hw, gpa, &val, 8);
		if (r)
			note_err(a, r, gpa);
	}
}

static void touch_shared(struct thread_arg *a, uint64_t p)
{
	struct vmmu_hw_vcpu *hw = a->f->c[a->v].hw;
	uint64_t gpa = SLOT_GPA + p * PG + a->v * 8;
	uint64_t val = shared_val(p, a->v), got = 0;
	int r;

	if (a->verify) {
		r = vmmu_hw_read(hw, gpa, &got, 8);
		if (r)
			note_err(a, r, gpa);
		else if (got != val)
			note_err(a, 1002, gpa);
	} else {
		r = vmmu_hw_write(hw, gpa, &val, 8);
		if (r)
			note_err(a, r, gpa);
	}
}

static void *vcpu_thread(void *p)
{
	struct thread_arg *a = p;
	struct vmmu_hw_vcpu *hw = a->f->c[a->v].hw;
	uint64_t nshared = NP - SHARED_FIRST;
	uint64_t n = nshared > PER_VCPU ? nshared : PER_VCPU;

	/* Not in guest mode while waiting: a flush would wait for us. */
	vmmu_hw_guest_exit(hw);
	pthread_barrier_wait(&a->f->bar);
	for (uint64_t k = 0; k < n; k++) {
		/* Everybody walks the shared pages in the same order: they
		 * fault on the same page at the same time. */
		if (k < nshared)
			touch_shared(a, SHARED_FIRST + k);
		if (k < PER_VCPU)
			touch_disjoint(a, a->v * PER_VCPU + k);
	}
	vmmu_hw_guest_exit(hw);
	return NULL;
}

static void run_vcpus(struct fixture *f, bool verify)
{
	pthread_t th[NV];
	struct thread_arg args[NV];

	for (unsigned v = 0; v < NV; v++) {
		args[v] = (struct thread_arg){ .f = f, .v = v, .verify = verify };
		assert_int_equal(pthread_create(&th[v], NULL, vcpu_thread, &args[v]), 0);
	}
	for (unsigned v = 0; v < NV; v++)
		assert_int_equal(pthread_join(th[v], NULL), 0);
	for (unsigned v = 0; v < NV; v++) {
		if (args[v].errors)
			fail_msg("vCPU %u: %d errors, first %d at gpa %#llx", v, args[v].errors,
				 args[v].first_err, (unsigned long long)args[v].first_gpa);
	}
}

static void fixture_init(struct fixture *f)
{
	struct vmmu_userspace_memory_region r;

	memset(f, 0, sizeof(*f));
	f->mem = test_mmap(SLOT_BYTES);
	assert_non_null(f->mem);
	assert_int_equal(vmmu_vm_create(NULL, &f->vm), 0);
	r = (struct vmmu_userspace_memory_region){
		.slot = 0,
		.guest_phys_addr = SLOT_GPA,
		.memory_size = SLOT_BYTES,
		.userspace_addr = (uintptr_t)f->mem,
	};
	assert_int_equal(vmmu_set_user_memory_region(f->vm, &r), 0);
	for (unsigned v = 0; v < NV; v++) {
		assert_int_equal(vmmu_vcpu_create(f->vm, v, &f->c[v].vcpu), 0);
		assert_int_equal(vmmu_hw_vcpu_create(f->c[v].vcpu, NULL, &f->c[v].hw), 0);
	}
	assert_int_equal(pthread_barrier_init(&f->bar, NULL, NV), 0);
}

static void fixture_fini(struct fixture *f)
{
	for (unsigned v = 0; v < NV; v++)
		assert_int_equal(vmmu_hw_vcpu_destroy(f->c[v].hw), 0);
	assert_int_equal(vmmu_vm_destroy(f->vm), 0);
	pthread_barrier_destroy(&f->bar);
	test_munmap(f->mem, SLOT_BYTES);
}

static struct vmmu_vm_stats vm_stats(struct vmmu_vm *vm)
{
	struct vmmu_vm_stats st;

	assert_int_equal(vmmu_vm_stats(vm, &st), 0);
	return st;
}

static struct vmmu_vcpu_stats vcpu_stats_sum(struct fixture *f)
{
	struct vmmu_vcpu_stats sum = { 0 }, st;

	for (unsigned v = 0; v < NV; v++) {
		assert_int_equal(vmmu_vcpu_stats(f->c[v].vcpu, &st), 0);
		sum.pf_taken += st.pf_taken;
		sum.pf_fixed += st.pf_fixed;
		sum.pf_spurious += st.pf_spurious;
		sum.pf_retry += st.pf_retry;
		sum.pf_emulate += st.pf_emulate;
		sum.tlb_flush += st.tlb_flush;
	}
	return sum;
}

/* Expected number of present 4K leaves among pages [lo, hi) of the slot
 * (all touched pages, when nothing was zapped). */
static uint64_t touched_in(uint64_t lo, uint64_t hi)
{
	uint64_t n = 0;

	for (uint64_t p = lo; p < hi; p++)
		n += page_kind(p) != K_NONE;
	return n;
}

/*
 * Page-table pages for the touched layout: the root, one level-3 table per
 * 512 GiB region, one level-2 table per 1 GiB region and one level-1 table
 * per 2 MiB region that holds a touched page.
 */
static uint64_t expected_pt_pages(void)
{
	uint64_t n = 1, last[4] = { ~0ull, ~0ull, ~0ull, ~0ull };

	for (uint64_t p = 0; p < NP; p++) {
		uint64_t gfn = (SLOT_GPA >> 12) + p;

		if (page_kind(p) == K_NONE)
			continue;
		/* gfns are visited in order: count each new region once. */
		for (int l = 1; l <= 3; l++) {
			uint64_t region = gfn >> (9 * l);

			if (region != last[l]) {
				last[l] = region;
				n++;
			}
		}
	}
	return n;
}

/*
 * Look up every page of the slot (at a page-specific byte offset) and check
 * it maps the exact host byte at level 1 when it should be mapped, and is
 * not mapped otherwise.  Pages in [zlo, zhi) are expected unmapped.
 * Returns the number of mapped pages.
 */
static uint64_t check_mappings(struct fixture *f, uint64_t zlo, uint64_t zhi)
{
	uint64_t present = 0;

	for (uint64_t p = 0; p < NP; p++) {
		uint64_t sub = (p * 77) & 0xfff;
		uint64_t gpa = SLOT_GPA + p * PG + sub;
		bool want = page_kind(p) != K_NONE && !(p >= zlo && p < zhi);
		void *hva = NULL;
		int level = 0;
		uint64_t spte = 0;
		int r = vmmu_debug_lookup(f->vm, 0, gpa, &hva, &level, &spte);

		if (want) {
			if (r != 0 || level != 1 || hva != f->mem + p * PG + sub)
				fail_msg("page %llu (gpa %#llx): r %d level %d hva %p, want %p",
					 (unsigned long long)p, (unsigned long long)gpa, r, level,
					 hva, (void *)(f->mem + p * PG + sub));
			present++;
		} else if (r != -ENOENT) {
			fail_msg("page %llu (gpa %#llx) should be unmapped: r %d hva %p",
				 (unsigned long long)p, (unsigned long long)gpa, r, hva);
		}
		/* Address space 1 has nothing. */
		if ((p & 1023) == 0)
			assert_int_equal(vmmu_debug_lookup(f->vm, 1, gpa, &hva, &level, &spte),
					 -ENOENT);
	}
	/* Just outside the slot. */
	assert_int_equal(vmmu_debug_lookup(f->vm, 0, SLOT_GPA - PG, NULL, NULL, NULL), -ENOENT);
	assert_int_equal(vmmu_debug_lookup(f->vm, 0, SLOT_GPA + SLOT_BYTES, NULL, NULL, NULL),
			 -ENOENT);
	return present;
}

/* Host memory holds exactly what the vCPUs wrote. */
static void check_host_memory(struct fixture *f)
{
	for (uint64_t p = 0; p < NP; p++) {
		const uint8_t *page = f->mem + p * PG;
		enum kind k = page_kind(p);
		uint64_t got;

		memcpy(&got, page + ZERO_OFF, 8);
		if (got)
			fail_msg("page %llu: stray write at offset %d", (unsigned long long)p,
				 ZERO_OFF);
		if (k == K_SHARED) {
			for (unsigned v = 0; v < NV; v++) {
				memcpy(&got, page + v * 8, 8);
				if (got != shared_val(p, v))
					fail_msg("shared page %llu vCPU %u: %#llx want %#llx",
						 (unsigned long long)p, v, (unsigned long long)got,
						 (unsigned long long)shared_val(p, v));
			}
			continue;
		}
		memcpy(&got, page + disjoint_off(p), 8);
		if (got != ((k == K_WRITE || k == K_READ_WRITE) ?
				    disjoint_val(p, page_owner(p)) : 0))
			fail_msg("page %llu kind %d: %#llx", (unsigned long long)p, (int)k,
				 (unsigned long long)got);
	}
}

static void test_concurrent_fault_in(void **state)
{
	static struct fixture f;
	const uint64_t touched = touched_in(0, NP);
	const uint64_t want_pt = expected_pt_pages();
	struct vmmu_vm_stats st;
	struct vmmu_vcpu_stats ps;

	(void)state;
	fixture_init(&f);
	st = vm_stats(f.vm);
	assert_int_equal(st.pages_4k, 0);

	/* Round 1: fault everything in concurrently. */
	run_vcpus(&f, false);
	st = vm_stats(f.vm);
	ps = vcpu_stats_sum(&f);
	print_message("touched %llu pages, pt pages %llu; faults: taken %llu fixed %llu "
		      "spurious %llu retry %llu\n",
		      (unsigned long long)touched, (unsigned long long)want_pt,
		      (unsigned long long)ps.pf_taken, (unsigned long long)ps.pf_fixed,
		      (unsigned long long)ps.pf_spurious, (unsigned long long)ps.pf_retry);
	assert_int_equal(check_mappings(&f, 0, 0), touched);
	assert_int_equal(st.pages_4k, touched);
	assert_int_equal(st.pages_2m, 0);
	assert_int_equal(st.pages_1g, 0);
	assert_int_equal(ps.pf_fixed, st.pages_4k);
	assert_int_equal(ps.pf_emulate, 0);
	assert_int_equal(ps.pf_taken, ps.pf_fixed + ps.pf_spurious + ps.pf_retry);
	assert_int_equal(st.pt_pages, want_pt);
	assert_int_equal(st.roots, 1);
	check_host_memory(&f);

	/* Zap a sub-range across the 512 GiB boundary, with partial 2 MiB
	 * regions at both ends. */
	{
		const uint64_t zlo = 30000, zhi = 40000;
		const uint64_t zapped = touched_in(zlo, zhi);
		const uint64_t base = SLOT_GPA >> 12;
		struct vmmu_vcpu_stats before1, after1;

		assert_true(zapped > 0);
		assert_int_equal(vmmu_zap_gfn_range(f.vm, base + zhi, base + zlo), -EINVAL);
		assert_int_equal(vmmu_zap_gfn_range(f.vm, base + zlo, base + zlo), 0);
		assert_int_equal(vmmu_zap_gfn_range(NULL, 0, 1), -EINVAL);
		assert_int_equal(vm_stats(f.vm).pages_4k, touched);

		assert_int_equal(vmmu_zap_gfn_range(f.vm, base + zlo, base + zhi), 0);
		st = vm_stats(f.vm);
		assert_int_equal(st.pages_4k, touched - zapped);
		assert_true(st.remote_tlb_flush > 0);
		assert_true(st.pt_pages <= want_pt);
		assert_int_equal(check_mappings(&f, zlo, zhi), touched - zapped);

		/* Re-access through vCPU 1 (from this thread: the vCPU threads
		 * are gone): each zapped page faults again exactly once and
		 * still holds its data; the others hit the existing tables. */
		assert_int_equal(vmmu_vcpu_stats(f.c[1].vcpu, &before1), 0);
		for (uint64_t p = zlo; p < zhi; p++) {
			enum kind k = page_kind(p);
			uint64_t got = ~0ull;

			if (k == K_NONE)
				continue;
			assert_int_equal(vmmu_hw_read(f.c[1].hw, SLOT_GPA + p * PG + disjoint_off(p),
						      &got, 8),
					 0);
			if (got != (k == K_READ ? 0 : disjoint_val(p, page_owner(p))))
				fail_msg("page %llu after zap: %#llx", (unsigned long long)p,
					 (unsigned long long)got);
		}
		assert_int_equal(vmmu_hw_guest_exit(f.c[1].hw), 0);
		assert_int_equal(vmmu_vcpu_stats(f.c[1].vcpu, &after1), 0);
		assert_int_equal(after1.pf_fixed - before1.pf_fixed, zapped);
		st = vm_stats(f.vm);
		assert_int_equal(st.pages_4k, touched);
		assert_int_equal(check_mappings(&f, 0, 0), touched);
	}

	/* Zap everything: no mapping at all, then fault it all back in. */
	{
		struct vmmu_vcpu_stats b = vcpu_stats_sum(&f), a;
		uint64_t hits = 0;

		assert_int_equal(vmmu_zap_all(f.vm), 0);
		st = vm_stats(f.vm);
		assert_int_equal(st.pages_4k, 0);
		for (uint64_t p = 0; p < NP; p += 7)
			hits += vmmu_debug_lookup(f.vm, 0, SLOT_GPA + p * PG, NULL, NULL, NULL) !=
				-ENOENT;
		assert_int_equal(hits, 0);
		assert_int_equal(vmmu_zap_all(NULL), -EINVAL);

		/* Round 2: all vCPUs read everything back, concurrently. */
		run_vcpus(&f, true);
		a = vcpu_stats_sum(&f);
		st = vm_stats(f.vm);
		assert_int_equal(check_mappings(&f, 0, 0), touched);
		assert_int_equal(st.pages_4k, touched);
		assert_int_equal(a.pf_fixed - b.pf_fixed, touched);
		assert_int_equal(a.pf_emulate, 0);
		/* One root: every vCPU dropped the zapped one. */
		assert_int_equal(st.roots, 1);
		assert_int_equal(st.pt_pages, want_pt);
		check_host_memory(&f);
	}
	fixture_fini(&f);
}

/* ------------------------------------------------------------------------
 * TLB: no stale translation survives a zap and a memslot swap.
 */
struct tlb_env {
	struct vmmu_vm *vm;
	struct vmmu_vcpu *vcpu;
	struct vmmu_hw_vcpu *hw;
	uint8_t *a, *b;
};

#define TLB_GPA 0x40000000ull

static int set_slot(struct vmmu_vm *vm, uint64_t size, void *hva)
{
	struct vmmu_userspace_memory_region r = {
		.slot = 3,
		.guest_phys_addr = TLB_GPA,
		.memory_size = size,
		.userspace_addr = (uintptr_t)hva,
	};

	return vmmu_set_user_memory_region(vm, &r);
}

static void tlb_env_init(struct tlb_env *e)
{
	e->a = test_mmap(4 * PG);
	e->b = test_mmap(4 * PG);
	assert_non_null(e->a);
	assert_non_null(e->b);
	assert_int_equal(vmmu_vm_create(NULL, &e->vm), 0);
	assert_int_equal(vmmu_vcpu_create(e->vm, 0, &e->vcpu), 0);
	assert_int_equal(vmmu_hw_vcpu_create(e->vcpu, NULL, &e->hw), 0);
	assert_int_equal(set_slot(e->vm, 4 * PG, e->a), 0);
}

static void tlb_env_fini(struct tlb_env *e)
{
	assert_int_equal(vmmu_hw_vcpu_destroy(e->hw), 0);
	assert_int_equal(vmmu_vm_destroy(e->vm), 0);
	test_munmap(e->a, 4 * PG);
	test_munmap(e->b, 4 * PG);
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static void test_tlb_no_stale_after_zap_and_swap(void **state)
{
	struct tlb_env e;
	uint64_t x = 0x1111, y = 0x2222, z = 0x3333, got = 0;
	struct vmmu_hw_stats hs;

	(void)state;
	tlb_env_init(&e);
	/* Fill the TLB: write, then read again (a TLB hit). */
	assert_int_equal(vmmu_hw_write(e.hw, TLB_GPA + 8, &x, 8), 0);
	assert_int_equal(vmmu_hw_read(e.hw, TLB_GPA + 8, &got, 8), 0);
	assert_int_equal(got, x);
	assert_int_equal(vmmu_hw_stats(e.hw, &hs), 0);
	assert_true(hs.tlb_hits >= 1);
	assert_int_equal(rd64(e.a + 8), x);

	/* Zap the page, swap the backing A -> B at the same gpa. */
	assert_int_equal(vmmu_hw_guest_exit(e.hw), 0);
	assert_int_equal(vmmu_zap_gfn_range(e.vm, TLB_GPA >> 12, (TLB_GPA >> 12) + 1), 0);
	assert_int_equal(set_slot(e.vm, 0, e.a), 0);
	assert_int_equal(set_slot(e.vm, 4 * PG, e.b), 0);
	assert_int_equal(vmmu_hw_write(e.hw, TLB_GPA + 8, &y, 8), 0);
	assert_int_equal(rd64(e.b + 8), y);
	assert_int_equal(rd64(e.a + 8), x);
	assert_int_equal(vmmu_hw_read(e.hw, TLB_GPA + 8, &got, 8), 0);
	assert_int_equal(got, y);

	/* Swap back without an explicit zap: the delete alone must flush. */
	assert_int_equal(vmmu_hw_guest_exit(e.hw), 0);
	assert_int_equal(set_slot(e.vm, 0, e.b), 0);
	assert_int_equal(set_slot(e.vm, 4 * PG, e.a), 0);
	assert_int_equal(vmmu_hw_write(e.hw, TLB_GPA + 8, &z, 8), 0);
	assert_int_equal(rd64(e.a + 8), z);
	assert_int_equal(rd64(e.b + 8), y);

	/* A zap alone (same backing) also forces a new walk: the vCPU faults
	 * again instead of using its cached entry. */
	{
		struct vmmu_vcpu_stats s0, s1;

		assert_int_equal(vmmu_hw_guest_exit(e.hw), 0);
		assert_int_equal(vmmu_vcpu_stats(e.vcpu, &s0), 0);
		assert_int_equal(vmmu_zap_gfn_range(e.vm, TLB_GPA >> 12, (TLB_GPA >> 12) + 1), 0);
		assert_int_equal(vmmu_hw_read(e.hw, TLB_GPA + 8, &got, 8), 0);
		assert_int_equal(got, z);
		assert_int_equal(vmmu_vcpu_stats(e.vcpu, &s1), 0);
		assert_int_equal(s1.pf_fixed - s0.pf_fixed, 1);
		assert_true(s1.tlb_flush > s0.tlb_flush);
	}
	tlb_env_fini(&e);
}

/* The same with the vCPU running in guest mode on its own thread the whole
 * time: the zap's flush must reach it (it acknowledges by polling). */
struct tlb_thread {
	struct tlb_env *e;
	int ready, stage;
	int bad;
};

static void *tlb_vcpu_thread(void *p)
{
	struct tlb_thread *t = p;
	uint64_t x = 0xaaaa, y = 0xbbbb, got;

	if (vmmu_hw_write(t->e->hw, TLB_GPA + 16, &x, 8))
		t->bad++;
	__atomic_store_n(&t->ready, 1, __ATOMIC_RELEASE);
	/* Stay in guest mode, using the translation, until told to go on. */
	while (!__atomic_load_n(&t->stage, __ATOMIC_ACQUIRE)) {
		int r = vmmu_hw_read(t->e->hw, TLB_GPA + 16, &got, 8);

		/* While the slot is gone the access is MMIO. */
		if (r != 0 && r != -EFAULT)
			t->bad++;
	}
	if (vmmu_hw_write(t->e->hw, TLB_GPA + 16, &y, 8))
		t->bad++;
	vmmu_hw_guest_exit(t->e->hw);
	return NULL;
}

static void test_tlb_remote_vcpu_in_guest(void **state)
{
	struct tlb_env e;
	struct tlb_thread t = { .e = &e };
	pthread_t th;

	(void)state;
	tlb_env_init(&e);
	assert_int_equal(pthread_create(&th, NULL, tlb_vcpu_thread, &t), 0);
	while (!__atomic_load_n(&t.ready, __ATOMIC_ACQUIRE))
		sched_yield();
	assert_int_equal(vmmu_zap_gfn_range(e.vm, TLB_GPA >> 12, (TLB_GPA >> 12) + 4), 0);
	assert_int_equal(set_slot(e.vm, 0, e.a), 0);
	assert_int_equal(set_slot(e.vm, 4 * PG, e.b), 0);
	__atomic_store_n(&t.stage, 1, __ATOMIC_RELEASE);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(t.bad, 0);
	assert_int_equal(rd64(e.a + 16), 0xaaaa);
	assert_int_equal(rd64(e.b + 16), 0xbbbb);
	tlb_env_fini(&e);
}

/* ------------------------------------------------------------------------
 * Teardown with vCPUs attached and pages mapped.
 */
static void test_vm_destroy_with_vcpus(void **state)
{
	struct vmmu_vm *vm;
	struct vmmu_vcpu *vc[3];
	struct vmmu_hw_vcpu *hw[3];
	const uint64_t size = 8ull << 20;
	uint8_t *mem = test_mmap(size);
	struct vmmu_userspace_memory_region r = {
		.slot = 0,
		.guest_phys_addr = 1ull << 30,
		.memory_size = size,
		.userspace_addr = (uintptr_t)mem,
	};
	struct vmmu_vm_stats st;

	(void)state;
	assert_non_null(mem);
	assert_int_equal(vmmu_vm_create(NULL, &vm), 0);
	assert_int_equal(vmmu_set_user_memory_region(vm, &r), 0);
	/* Space 1 has a slot too; nothing maps it, it must still be freed. */
	r.slot = 1u << 16;
	assert_int_equal(vmmu_set_user_memory_region(vm, &r), 0);
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(vmmu_vcpu_create(vm, i * 100, &vc[i]), 0);
		assert_int_equal(vmmu_hw_vcpu_create(vc[i], NULL, &hw[i]), 0);
	}
	for (uint64_t off = 0; off < size; off += PG) {
		uint64_t v = off;

		assert_int_equal(vmmu_hw_write(hw[(off / PG) % 3], r.guest_phys_addr + off, &v, 8),
				 0);
	}
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(vmmu_hw_guest_exit(hw[i]), 0);
	/* One vCPU goes before the VM, with its model. */
	assert_int_equal(vmmu_hw_vcpu_destroy(hw[2]), 0);
	assert_int_equal(vmmu_vcpu_destroy(vc[2]), 0);

	st = vm_stats(vm);
	assert_int_equal(st.pages_4k, size / PG);
	/* root + level 3 + level 2 + 4 level-1 tables */
	assert_int_equal(st.pt_pages, 1 + 1 + 1 + size / (2ull << 20));
	assert_true(st.pt_pages > 0);
	assert_int_equal(rd64(mem + size - PG), size - PG);

	/* The other two vCPUs are still attached, and their roots mapped. */
	assert_int_equal(vmmu_hw_vcpu_destroy(hw[0]), 0);
	assert_int_equal(vmmu_hw_vcpu_destroy(hw[1]), 0);
	assert_int_equal(vmmu_vm_destroy(vm), 0);
	test_munmap(mem, size);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_concurrent_fault_in),
		cmocka_unit_test(test_tlb_no_stale_after_zap_and_swap),
		cmocka_unit_test(test_tlb_remote_vcpu_in_guest),
		cmocka_unit_test(test_vm_destroy_with_vcpus),
	};

	test_seed();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
