/* SPDX-License-Identifier: MIT */
/*
 * test_prefault - vmmu_vcpu_pre_fault_memory (KVM_PRE_FAULT_MEMORY) and
 * VMMU_MEM_DIRECT_BUILD slots.
 *
 * The ABI (inventory, invariant 15): every error with the range left
 * alone and nothing mapped; progress over a hole between slots; -EINTR
 * only before progress, also while faults keep retrying; -EAGAIN, never a
 * hang, when the slot is deleted under the pre-fault (KVM's 3ccbf6f47098:
 * a pre-fault looping on an invalid slot deadlocked the memslot update).
 * Races with invalidations are replayed with the fault path's test hook,
 * which runs after the invalidation-sequence snapshot and host lookup.
 * Equivalence: pre-faulting and direct build give the leaves demand
 * faulting gives (hugetlb in test_prefault_hugetlb).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <vmmu/hostmem.h>
#include <vmmu/hw.h>
#include <vmmu/vmmu.h>

#include "mmu_internal.h"

#include "../common/test_util.h"
#include "prefault_equiv.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#define GPA (1ull << 32)
#define SIZE (8ull << 20)
#define PG 4096ull

struct env {
	struct vmmu_hostmem *hm;
	struct vmmu_vm *vm;
	struct vmmu_vcpu *vcpu;
	uint8_t *mem;
	uint64_t size;
};

static void env_init_cfg(struct env *e, enum vmmu_backing b, uint64_t size, uint32_t flags,
			 const struct vmmu_vm_config *cfg)
{
	struct vmmu_vm_config c = cfg ? *cfg : (struct vmmu_vm_config){ 0 };
	struct vmmu_userspace_memory_region r;

	memset(e, 0, sizeof(*e));
	e->size = size;
	assert_int_equal(vmmu_hostmem_create(&e->hm), 0);
	assert_int_equal(vmmu_hostmem_alloc(e->hm, b, size, 0, (void **)&e->mem), 0);
	c.hostmem = e->hm;
	assert_int_equal(vmmu_vm_create(&c, &e->vm), 0);
	r = (struct vmmu_userspace_memory_region){ .slot = 0,
						   .flags = flags,
						   .guest_phys_addr = GPA,
						   .memory_size = size,
						   .userspace_addr = (uintptr_t)e->mem };
	assert_int_equal(vmmu_set_user_memory_region(e->vm, &r), 0);
	assert_int_equal(vmmu_vcpu_create(e->vm, 0, &e->vcpu), 0);
}

static void env_init(struct env *e, enum vmmu_backing b, uint64_t size)
{
	env_init_cfg(e, b, size, 0, NULL);
}

static void env_fini(struct env *e)
{
	assert_int_equal(vmmu_vm_destroy(e->vm), 0);
	assert_int_equal(vmmu_hostmem_free(e->hm, e->mem), 0);
	assert_int_equal(vmmu_hostmem_destroy(e->hm), 0);
}

static bool mapped(struct vmmu_vm *vm, uint64_t gpa)
{
	return vmmu_debug_lookup(vm, 0, gpa, NULL, NULL, NULL) == 0;
}

static uint64_t nr_leaves(struct vmmu_vm *vm)
{
	struct vmmu_vm_stats st;

	assert_int_equal(vmmu_vm_stats(vm, &st), 0);
	return st.pages_4k + st.pages_2m + st.pages_1g;
}

static int pre_fault(struct vmmu_vcpu *vcpu, struct vmmu_pre_fault_memory *r, uint64_t gpa,
		     uint64_t size)
{
	*r = (struct vmmu_pre_fault_memory){ .gpa = gpa, .size = size };
	return vmmu_vcpu_pre_fault_memory(vcpu, r);
}

/* @r is refused with @err, left as it was, and nothing gets mapped. */
static void expect_refused(struct env *e, struct vmmu_pre_fault_memory r, int err)
{
	struct vmmu_pre_fault_memory copy = r;

	assert_int_equal(vmmu_vcpu_pre_fault_memory(e->vcpu, &r), err);
	assert_memory_equal(&r, &copy, sizeof(r));
	assert_int_equal(nr_leaves(e->vm), 0);
}

/* Every error of the contract, each changing nothing. */
static void test_errors(void **state)
{
	struct env e;
	struct vmmu_pre_fault_memory r = { .gpa = GPA, .size = PG };
	uint64_t top;

	(void)state;
	env_init(&e, VMMU_BACKING_ANONYMOUS, SIZE);
	top = vmmu_max_gfn(e.vm) << VMMU_PAGE_SHIFT;
	assert_int_equal(vmmu_vcpu_pre_fault_memory(NULL, &r), -EINVAL);
	assert_int_equal(vmmu_vcpu_pre_fault_memory(e.vcpu, NULL), -EINVAL);
	expect_refused(&e, (struct vmmu_pre_fault_memory){ .gpa = GPA, .size = PG, .flags = 1 },
		       -EINVAL);
	expect_refused(&e, (struct vmmu_pre_fault_memory){ .gpa = GPA + 1, .size = PG }, -EINVAL);
	expect_refused(&e, (struct vmmu_pre_fault_memory){ .gpa = GPA, .size = PG + 8 }, -EINVAL);
	expect_refused(&e, (struct vmmu_pre_fault_memory){ .gpa = GPA, .size = 0 }, -EINVAL);
	expect_refused(&e,
		       (struct vmmu_pre_fault_memory){ .gpa = ~0ull & ~(PG - 1), .size = 2 * PG },
		       -EINVAL);
	expect_refused(&e, (struct vmmu_pre_fault_memory){ .gpa = top - PG, .size = 2 * PG },
		       -EINVAL);
	expect_refused(&e, (struct vmmu_pre_fault_memory){ .gpa = top, .size = PG }, -EINVAL);
	/* No memslot: nothing to map (KVM: -ENOENT where a fault would emulate). */
	expect_refused(&e, (struct vmmu_pre_fault_memory){ .gpa = 0, .size = PG }, -ENOENT);
	expect_refused(&e, (struct vmmu_pre_fault_memory){ .gpa = GPA + SIZE, .size = PG },
		       -ENOENT);
	expect_refused(&e, (struct vmmu_pre_fault_memory){ .gpa = top - PG, .size = PG }, -ENOENT);

	/* Not the TDP MMU (shadow paging, nested guest). */
	e.vcpu->mmu_not_tdp = true;
	expect_refused(&e, (struct vmmu_pre_fault_memory){ .gpa = GPA, .size = PG }, -EOPNOTSUPP);
	e.vcpu->mmu_not_tdp = false;

	/* Interrupted before any progress; the interruption is consumed. */
	assert_int_equal(vmmu_vcpu_interrupt(NULL), -EINVAL);
	assert_int_equal(vmmu_vcpu_interrupt(e.vcpu), 0);
	expect_refused(&e, (struct vmmu_pre_fault_memory){ .gpa = GPA, .size = SIZE }, -EINTR);
	assert_int_equal(pre_fault(e.vcpu, &r, GPA, PG), 0);
	assert_int_equal(r.gpa, GPA + PG);
	assert_int_equal(r.size, 0);
	assert_true(mapped(e.vm, GPA));
	assert_int_equal(nr_leaves(e.vm), 1);

	/* Out of page-table pages: -ENOMEM, nothing mapped. */
	env_fini(&e);
	env_init_cfg(&e, VMMU_BACKING_ANONYMOUS, SIZE, 0,
		     &(struct vmmu_vm_config){ .max_pt_pages = 2 });
	expect_refused(&e, (struct vmmu_pre_fault_memory){ .gpa = GPA, .size = PG }, -ENOMEM);
	env_fini(&e);
}

/* A range over two slots and the hole between them. */
static void test_hole_progress(void **state)
{
	struct env e;
	struct vmmu_pre_fault_memory r;
	struct vmmu_userspace_memory_region reg;

	(void)state;
	env_init(&e, VMMU_BACKING_ANONYMOUS, SIZE);
	/* Slot 0 is [GPA, GPA + 8M); slot 1 maps the same memory at +12M. */
	reg = (struct vmmu_userspace_memory_region){ .slot = 1,
						     .guest_phys_addr = GPA + (12 << 20),
						     .memory_size = 4 << 20,
						     .userspace_addr = (uintptr_t)e.mem };
	assert_int_equal(vmmu_set_user_memory_region(e.vm, &reg), 0);

	/* Starts 4 KiB before the end of a 2 MiB table, ends inside slot 1. */
	assert_int_equal(pre_fault(e.vcpu, &r, GPA + (2 << 20) - PG, 14ull << 20), 0);
	assert_int_equal(r.gpa, GPA + SIZE);
	assert_int_equal(r.size, (8ull << 20) - PG);
	assert_false(mapped(e.vm, GPA + (2 << 20) - 2 * PG));
	for (uint64_t a = GPA + (2 << 20) - PG; a < GPA + SIZE; a += PG)
		assert_true(mapped(e.vm, a));
	assert_int_equal(nr_leaves(e.vm), (SIZE - (2 << 20) + PG) / PG);

	/* The next call reports the hole, changing nothing. */
	{
		struct vmmu_pre_fault_memory copy = r;

		assert_int_equal(vmmu_vcpu_pre_fault_memory(e.vcpu, &r), -ENOENT);
		assert_memory_equal(&r, &copy, sizeof(r));
	}
	/* Skipping the hole, the rest maps. */
	r.gpa = GPA + (12 << 20);
	r.size = 2ull << 20;
	assert_int_equal(vmmu_vcpu_pre_fault_memory(e.vcpu, &r), 0);
	assert_int_equal(r.size, 0);
	assert_int_equal(r.gpa, GPA + (14 << 20));
	assert_true(mapped(e.vm, GPA + (14 << 20) - PG));
	assert_false(mapped(e.vm, GPA + (14 << 20)));

	/* Mapping it again is no error and changes nothing. */
	assert_int_equal(pre_fault(e.vcpu, &r, GPA, SIZE), 0);
	assert_int_equal(r.size, 0);
	assert_int_equal(nr_leaves(e.vm), SIZE / PG + 512);
	env_fini(&e);
}

/* A huge leaf counts from gpa to its end, clipped to the range. */
static void test_huge_progress(void **state)
{
	struct env e;
	struct vmmu_pre_fault_memory r;
	int level;

	(void)state;
	env_init(&e, VMMU_BACKING_ANONYMOUS_THP, SIZE);
	memset(e.mem, 1, SIZE); /* let THP really back it, if it can */
	assert_int_equal(pre_fault(e.vcpu, &r, GPA + (2 << 20) + 5 * PG, PG), 0);
	assert_int_equal(r.size, 0);
	assert_int_equal(r.gpa, GPA + (2 << 20) + 6 * PG);
	assert_int_equal(vmmu_debug_lookup(e.vm, 0, GPA + (2 << 20), NULL, &level, NULL), 0);
	assert_int_equal(level, vmmu_hostmem_level(e.hm, (uintptr_t)e.mem + (2 << 20)));
	if (level == PG_LEVEL_2M) {
		/* 3 MiB from the middle of a 2 MiB page: one leaf and a half. */
		assert_int_equal(pre_fault(e.vcpu, &r, GPA + (5 << 20), 3 << 20), 0);
		assert_int_equal(r.size, 0);
		assert_int_equal(r.gpa, GPA + SIZE);
		assert_true(mapped(e.vm, GPA + (4 << 20)));
	}
	env_fini(&e);
}

/*
 * Demand-paged host memory (userfaultfd): a pre-fault brings every page in
 * through the handlers, one fault-in per page, as a guest fault would; a
 * run must not map pages the host has not filled yet.
 */
static void test_uffd_backing(void **state)
{
	struct vmmu_hostmem *hm;
	struct vmmu_vm *vm;
	struct vmmu_vcpu *vcpu;
	struct vmmu_pre_fault_memory r = { .gpa = GPA, .size = SIZE };
	uint8_t *mem;
	uint64_t pages;
	int ret;

	(void)state;
	assert_int_equal(vmmu_hostmem_create(&hm), 0);
	ret = vmmu_hostmem_alloc(hm, VMMU_BACKING_ANONYMOUS_UFFD, SIZE, 0, (void **)&mem);
	if (ret == -EOPNOTSUPP) {
		assert_int_equal(vmmu_hostmem_destroy(hm), 0);
		skip();
	}
	assert_int_equal(ret, 0);
	assert_int_equal(vmmu_vm_create(&(struct vmmu_vm_config){ .hostmem = hm }, &vm), 0);
	assert_int_equal(vmmu_set_user_memory_region(vm,
						     &(struct vmmu_userspace_memory_region){
							     .slot = 0,
							     .guest_phys_addr = GPA,
							     .memory_size = SIZE,
							     .userspace_addr = (uintptr_t)mem }),
			 0);
	assert_int_equal(vmmu_vcpu_create(vm, 0, &vcpu), 0);
	while (r.size)
		assert_int_equal(vmmu_vcpu_pre_fault_memory(vcpu, &r), 0);
	assert_int_equal(vmmu_hostmem_uffd_pages(hm, mem, &pages), 0);
	assert_int_equal(pages, SIZE / PG);
	assert_int_equal(nr_leaves(vm), SIZE / PG);
	assert_int_equal(vmmu_vm_destroy(vm), 0);
	assert_int_equal(vmmu_hostmem_free(hm, mem), 0);
	assert_int_equal(vmmu_hostmem_destroy(hm), 0);
}

/*
 * Races with MMU-notifier invalidations, replayed by the fault hook inside
 * the window between the sequence snapshot and the install.
 */
enum race_action {
	RACE_PROTECT, /* the host makes the memory read-only (start..end) */
	RACE_START, /* an invalidation of one page begins and stays */
	RACE_INTERRUPT_2ND, /* an interruption during the second run */
};

struct race {
	struct env *e;
	enum race_action action;
	int calls; /* atomic: the hook may run on several workers */
	uint64_t hva;
};

static void race_hook(struct vmmu_vcpu *vcpu, uint64_t gfn, void *arg)
{
	struct race *h = arg;
	int call = __atomic_add_fetch(&h->calls, 1, __ATOMIC_RELAXED);

	(void)gfn;
	switch (h->action) {
	case RACE_PROTECT:
		if (call == 1)
			assert_int_equal(vmmu_hostmem_protect(h->e->hm, h->e->mem, 1), 0);
		break;
	case RACE_START:
		if (call == 1) {
			vmmu_notify_invalidate_range_start(h->e->vm, h->hva, h->hva + PG);
			/* Without an interruption the pre-fault would wait for the end. */
			vmmu_vcpu_interrupt(vcpu);
		}
		break;
	case RACE_INTERRUPT_2ND:
		if (call == 2)
			vmmu_vcpu_interrupt(vcpu);
		break;
	}
}

/* The host write-protects the memory under a pre-fault: no leaf may come
 * out writable (the stale view said writable). */
static void test_race_protect(void **state)
{
	struct env e;
	struct race h;
	struct vmmu_pre_fault_memory r;

	(void)state;
	env_init(&e, VMMU_BACKING_ANONYMOUS, SIZE);
	h = (struct race){ .e = &e, .action = RACE_PROTECT };
	e.vm->test_fault_hook = race_hook;
	e.vm->test_fault_hook_arg = &h;
	assert_int_equal(pre_fault(e.vcpu, &r, GPA, SIZE), 0);
	assert_int_equal(r.size, 0);
	assert_true(h.calls > 1);
	for (uint64_t a = GPA; a < GPA + SIZE; a += PG) {
		uint64_t spte;

		assert_int_equal(vmmu_debug_lookup(e.vm, 0, a, NULL, NULL, &spte), 0);
		assert_false(spte & EPT_WRITABLE);
	}
	e.vm->test_fault_hook = NULL;
	assert_int_equal(vmmu_hostmem_protect(e.hm, e.mem, 0), 0);
	env_fini(&e);
}

/* Same with a direct build on two workers. */
static void test_race_protect_direct_build(void **state)
{
	struct env e;
	struct race h;
	struct vmmu_userspace_memory_region reg;

	(void)state;
	env_init_cfg(&e, VMMU_BACKING_ANONYMOUS, SIZE, 0,
		     &(struct vmmu_vm_config){ .direct_build_workers = 2 });
	h = (struct race){ .e = &e, .action = RACE_PROTECT };
	e.vm->test_fault_hook = race_hook;
	e.vm->test_fault_hook_arg = &h;
	reg = (struct vmmu_userspace_memory_region){ .slot = 1,
						     .flags = VMMU_MEM_DIRECT_BUILD,
						     .guest_phys_addr = GPA + (64ull << 20),
						     .memory_size = SIZE,
						     .userspace_addr = (uintptr_t)e.mem };
	assert_int_equal(vmmu_set_user_memory_region(e.vm, &reg), 0);
	for (uint64_t a = reg.guest_phys_addr; a < reg.guest_phys_addr + SIZE; a += PG) {
		uint64_t spte;

		assert_int_equal(vmmu_debug_lookup(e.vm, 0, a, NULL, NULL, &spte), 0);
		assert_false(spte & EPT_WRITABLE);
	}
	e.vm->test_fault_hook = NULL;
	assert_int_equal(vmmu_hostmem_protect(e.hm, e.mem, 0), 0);
	env_fini(&e);
}

/*
 * An invalidation of one page in the middle of the first run is in
 * progress: the run may not install any of its leaves (one of them would
 * map the page), and the pre-fault keeps retrying until interrupted:
 * -EINTR, nothing mapped.  After the end it maps everything.
 */
static void test_race_in_progress_interrupt(void **state)
{
	struct env e;
	struct race h;
	struct vmmu_pre_fault_memory r;

	(void)state;
	env_init(&e, VMMU_BACKING_ANONYMOUS, SIZE);
	h = (struct race){ .e = &e, .action = RACE_START, .hva = (uintptr_t)e.mem + 100 * PG };
	e.vm->test_fault_hook = race_hook;
	e.vm->test_fault_hook_arg = &h;
	assert_int_equal(pre_fault(e.vcpu, &r, GPA, SIZE), -EINTR);
	assert_int_equal(r.gpa, GPA);
	assert_int_equal(r.size, SIZE);
	assert_int_equal(nr_leaves(e.vm), 0);
	assert_int_equal(vmmu_notify_invalidate_range_end(e.vm, h.hva, h.hva + PG), 0);
	assert_int_equal(pre_fault(e.vcpu, &r, GPA, SIZE), 0);
	assert_int_equal(r.size, 0);
	assert_int_equal(nr_leaves(e.vm), SIZE / PG);
	e.vm->test_fault_hook = NULL;
	env_fini(&e);
}

/* Interrupted after progress: 0 with the range advanced, then it goes on. */
static void test_interrupt_after_progress(void **state)
{
	struct env e;
	struct race h;
	struct vmmu_pre_fault_memory r;

	(void)state;
	env_init(&e, VMMU_BACKING_ANONYMOUS, SIZE);
	h = (struct race){ .e = &e, .action = RACE_INTERRUPT_2ND };
	e.vm->test_fault_hook = race_hook;
	e.vm->test_fault_hook_arg = &h;
	assert_int_equal(pre_fault(e.vcpu, &r, GPA, SIZE), 0);
	/* Two runs of one 2 MiB table each, then the interruption. */
	assert_int_equal(r.gpa, GPA + (4 << 20));
	assert_int_equal(r.size, SIZE - (4 << 20));
	assert_int_equal(nr_leaves(e.vm), (4 << 20) / PG);
	assert_int_equal(vmmu_vcpu_pre_fault_memory(e.vcpu, &r), 0);
	assert_int_equal(r.size, 0);
	assert_int_equal(nr_leaves(e.vm), SIZE / PG);
	e.vm->test_fault_hook = NULL;
	env_fini(&e);
}

static void *delete_slot0(void *arg)
{
	struct env *e = arg;
	struct vmmu_userspace_memory_region reg = { .slot = 0 };

	return (void *)(intptr_t)vmmu_set_user_memory_region(e->vm, &reg);
}

static bool slot_invalid(struct vmmu_vm *vm, uint64_t gpa)
{
	struct vmmu_memslot *slot;
	bool inv;

	vmmu_rcu_read_lock();
	slot = vmmu_gfn_to_memslot(vm, 0, gpa >> VMMU_PAGE_SHIFT);
	inv = slot && slot->invalid;
	vmmu_rcu_read_unlock();
	return inv;
}

/*
 * The slot is being deleted (the deleter is held between marking it
 * invalid and zapping, by our write lock): -EAGAIN at once, changing
 * nothing; once the delete is done, -ENOENT.
 */
static void test_eagain_slot_being_deleted(void **state)
{
	struct env e;
	struct vmmu_pre_fault_memory r;
	pthread_t th;
	void *ret;
	int waited = 0;

	(void)state;
	env_init(&e, VMMU_BACKING_ANONYMOUS, SIZE);
	assert_int_equal(pre_fault(e.vcpu, &r, GPA, 4 * PG), 0);
	vmmu_write_lock(&e.vm->mmu_lock);
	assert_int_equal(pthread_create(&th, NULL, delete_slot0, &e), 0);
	while (!slot_invalid(e.vm, GPA) && waited++ < 10000) {
		struct timespec ts = { 0, 1000000 };

		nanosleep(&ts, NULL);
	}
	assert_true(slot_invalid(e.vm, GPA));
	{
		struct vmmu_pre_fault_memory copy = { .gpa = GPA + 4 * PG, .size = PG };

		r = copy;
		assert_int_equal(vmmu_vcpu_pre_fault_memory(e.vcpu, &r), -EAGAIN);
		assert_memory_equal(&r, &copy, sizeof(r));
	}
	vmmu_write_unlock(&e.vm->mmu_lock);
	assert_int_equal(pthread_join(th, &ret), 0);
	assert_int_equal((int)(intptr_t)ret, 0);
	assert_int_equal(pre_fault(e.vcpu, &r, GPA, PG), -ENOENT);
	assert_false(mapped(e.vm, GPA));
	env_fini(&e);
}

/*
 * Threads: pre-faults over and over while another thread deletes the
 * slot.  Every call ends (no hang), with 0 until the slot goes away, then
 * -EAGAIN or -ENOENT; afterwards nothing maps the range.
 */
struct delete_race {
	struct env *e;
	pthread_barrier_t go;
	int ret;
};

static void *delete_after_barrier(void *arg)
{
	struct delete_race *d = arg;
	struct vmmu_userspace_memory_region reg = { .slot = 0 };
	struct timespec ts = { 0, 2000000 };

	pthread_barrier_wait(&d->go);
	nanosleep(&ts, NULL);
	d->ret = vmmu_set_user_memory_region(d->e->vm, &reg);
	return NULL;
}

static void test_delete_during_prefault_threads(void **state)
{
	struct env e;
	struct delete_race d;
	pthread_t th;
	int eagain = 0, rounds = 0, r = 0;

	(void)state;
	env_init(&e, VMMU_BACKING_ANONYMOUS, 64ull << 20);
	d.e = &e;
	pthread_barrier_init(&d.go, NULL, 2);
	assert_int_equal(pthread_create(&th, NULL, delete_after_barrier, &d), 0);
	pthread_barrier_wait(&d.go);
	for (;;) {
		struct vmmu_pre_fault_memory range = { .gpa = GPA, .size = e.size };

		while (range.size && !(r = vmmu_vcpu_pre_fault_memory(e.vcpu, &range)))
			;
		if (r)
			break;
		rounds++;
		assert_int_equal(vmmu_zap_gfn_range(e.vm, GPA >> 12, (GPA + e.size) >> 12), 0);
	}
	assert_true(r == -EAGAIN || r == -ENOENT);
	eagain += r == -EAGAIN;
	/* Once the delete is over, only -ENOENT. */
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(d.ret, 0);
	{
		struct vmmu_pre_fault_memory range = { .gpa = GPA, .size = e.size };

		assert_int_equal(vmmu_vcpu_pre_fault_memory(e.vcpu, &range), -ENOENT);
	}
	for (uint64_t a = GPA; a < GPA + e.size; a += PG)
		assert_false(mapped(e.vm, a));
	assert_int_equal(nr_leaves(e.vm), 0);
	printf("delete during pre-fault: %d full rounds, ended with %s\n", rounds,
	       eagain ? "-EAGAIN" : "-ENOENT");
	pthread_barrier_destroy(&d.go);
	env_fini(&e);
}

/*
 * Direct build: the whole slot is mapped when the call returns, vCPUs do
 * not fault on it, and it is an ordinary map afterwards.
 */
static void test_direct_build(void **state)
{
	struct env e;
	struct vmmu_userspace_memory_region reg;
	struct vmmu_hw_vcpu *hw;
	struct vmmu_hw_stats hs;
	uint64_t v = 5;

	(void)state;
	env_init_cfg(&e, VMMU_BACKING_ANONYMOUS, SIZE, VMMU_MEM_DIRECT_BUILD,
		     &(struct vmmu_vm_config){ .direct_build_workers = 2 });
	assert_int_equal(nr_leaves(e.vm), SIZE / PG);
	assert_int_equal(vmmu_hw_vcpu_create(e.vcpu, NULL, &hw), 0);
	for (uint64_t off = 0; off < SIZE; off += PG)
		assert_int_equal(vmmu_hw_write(hw, GPA + off, &v, 8), 0);
	vmmu_hw_guest_exit(hw);
	assert_int_equal(vmmu_hw_stats(hw, &hs), 0);
	assert_int_equal(hs.ept_violations, 0);
	assert_int_equal(*(uint64_t *)(e.mem + SIZE - PG), 5);

	/* The flag can be neither added nor removed, the slot not moved. */
	reg = (struct vmmu_userspace_memory_region){ .slot = 0,
						     .guest_phys_addr = GPA,
						     .memory_size = SIZE,
						     .userspace_addr = (uintptr_t)e.mem };
	assert_int_equal(vmmu_set_user_memory_region(e.vm, &reg), -EINVAL);
	reg.flags = VMMU_MEM_DIRECT_BUILD;
	reg.guest_phys_addr = GPA + (1ull << 30);
	assert_int_equal(vmmu_set_user_memory_region(e.vm, &reg), -EINVAL);
	assert_int_equal(nr_leaves(e.vm), SIZE / PG);
	/* Dirty logging may be switched on (the map is an ordinary one). */
	reg.guest_phys_addr = GPA;
	reg.flags = VMMU_MEM_DIRECT_BUILD | VMMU_MEM_LOG_DIRTY_PAGES;
	assert_int_equal(vmmu_set_user_memory_region(e.vm, &reg), 0);

	/* Notifiers and zaps remove parts of it; they fault back in. */
	assert_int_equal(vmmu_hostmem_discard(e.hm, e.mem + 3 * PG, PG), 0);
	assert_false(mapped(e.vm, GPA + 3 * PG));
	assert_int_equal(vmmu_zap_gfn_range(e.vm, (GPA >> 12) + 10, (GPA >> 12) + 20), 0);
	assert_false(mapped(e.vm, GPA + 15 * PG));
	assert_int_equal(vmmu_hw_read(hw, GPA + 3 * PG, &v, 8), 0);
	assert_int_equal(v, 0);
	assert_int_equal(vmmu_hw_read(hw, GPA + 15 * PG, &v, 8), 0);
	assert_int_equal(v, 5);
	vmmu_hw_guest_exit(hw);
	assert_true(mapped(e.vm, GPA + 15 * PG));

	/* Delete: nothing left. */
	reg = (struct vmmu_userspace_memory_region){ .slot = 0 };
	assert_int_equal(vmmu_set_user_memory_region(e.vm, &reg), 0);
	assert_int_equal(nr_leaves(e.vm), 0);
	assert_int_equal(vmmu_hw_vcpu_destroy(hw), 0);

	/* Too many workers is a bad config. */
	{
		struct vmmu_vm *vm;

		assert_int_equal(
			vmmu_vm_create(
				&(struct vmmu_vm_config){
					.direct_build_workers = VMMU_MAX_DIRECT_BUILD_WORKERS + 1 },
				&vm),
			-EINVAL);
	}
	env_fini(&e);
}

/*
 * Dirty logging on a direct-built slot (THP, so the build makes huge
 * leaves that logging must split): after logging starts, exactly the pages
 * written are reported, in write-protect and in dirty-bit mode.
 */
static void run_direct_build_dirty_log(bool wrprot)
{
	struct env e;
	struct vmmu_userspace_memory_region reg;
	struct vmmu_hw_vcpu *hw;
	uint64_t bitmap[SIZE / PG / 64], v = 9;

	env_init_cfg(&e, VMMU_BACKING_ANONYMOUS_THP, SIZE, 0,
		     &(struct vmmu_vm_config){ .direct_build_workers = 2,
					       .dirty_log_wrprot = wrprot });
	memset(e.mem, 1, SIZE);
	reg = (struct vmmu_userspace_memory_region){ .slot = 1,
						     .flags = VMMU_MEM_DIRECT_BUILD,
						     .guest_phys_addr = GPA + (1ull << 30),
						     .memory_size = SIZE,
						     .userspace_addr = (uintptr_t)e.mem };
	assert_int_equal(vmmu_set_user_memory_region(e.vm, &reg), 0);
	reg.flags |= VMMU_MEM_LOG_DIRTY_PAGES;
	assert_int_equal(vmmu_set_user_memory_region(e.vm, &reg), 0);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 1, bitmap), 0);
	assert_int_equal(vmmu_hw_vcpu_create(e.vcpu, NULL, &hw), 0);
	for (uint64_t p = 0; p < SIZE / PG; p += 7)
		assert_int_equal(vmmu_hw_write(hw, reg.guest_phys_addr + p * PG, &v, 8), 0);
	vmmu_hw_guest_exit(hw);
	assert_int_equal(vmmu_get_dirty_log(e.vm, 1, bitmap), 0);
	for (uint64_t p = 0; p < SIZE / PG; p++)
		assert_int_equal(bitmap[p / 64] >> (p % 64) & 1, p % 7 == 0);
	assert_int_equal(vmmu_hw_vcpu_destroy(hw), 0);
	env_fini(&e);
}

static void test_direct_build_dirty_log(void **state)
{
	(void)state;
	run_direct_build_dirty_log(false);
	run_direct_build_dirty_log(true);
}

/* Failures of a direct build: the slot is not created, nothing stays mapped. */
static void test_direct_build_errors(void **state)
{
	struct env e;
	struct vmmu_userspace_memory_region reg;
	void *hva, *foreign;

	(void)state;
	/* 2 MiB tables for 64 MiB at 4 KiB: 32 leaf tables, 16 pages allowed. */
	env_init_cfg(&e, VMMU_BACKING_ANONYMOUS, 64ull << 20, 0,
		     &(struct vmmu_vm_config){ .max_pt_pages = 16,
					       .direct_build_workers = 2,
					       .vcpu_cache_capacity = 4 });
	reg = (struct vmmu_userspace_memory_region){ .slot = 1,
						     .flags = VMMU_MEM_DIRECT_BUILD,
						     .guest_phys_addr = GPA + (1ull << 30),
						     .memory_size = 64ull << 20,
						     .userspace_addr = (uintptr_t)e.mem };
	assert_int_equal(vmmu_set_user_memory_region(e.vm, &reg), -ENOMEM);
	assert_int_equal(vmmu_gpa_to_hva(e.vm, 0, reg.guest_phys_addr, &hva), -ENOENT);
	assert_int_equal(nr_leaves(e.vm), 0);
	/* Slot 0 is untouched and works, with the tables given back. */
	vmmu_rcu_barrier();
	assert_int_equal(vmmu_vcpu_page_fault(e.vcpu, GPA, VMMU_EPT_ACC_WRITE), VMMU_PF_FIXED);
	/* The id is free again. */
	reg.flags = 0;
	assert_int_equal(vmmu_set_user_memory_region(e.vm, &reg), 0);
	env_fini(&e);

	/* Host memory the VM's hostmem does not know: -EFAULT, no slot. */
	env_init(&e, VMMU_BACKING_ANONYMOUS, SIZE);
	foreign = test_mmap(SIZE);
	assert_non_null(foreign);
	reg = (struct vmmu_userspace_memory_region){ .slot = 1,
						     .flags = VMMU_MEM_DIRECT_BUILD,
						     .guest_phys_addr = GPA + (1ull << 30),
						     .memory_size = SIZE,
						     .userspace_addr = (uintptr_t)foreign };
	assert_int_equal(vmmu_set_user_memory_region(e.vm, &reg), -EFAULT);
	assert_int_equal(vmmu_gpa_to_hva(e.vm, 0, reg.guest_phys_addr, &hva), -ENOENT);
	assert_int_equal(nr_leaves(e.vm), 0);
	test_munmap(foreign, SIZE);
	env_fini(&e);
}

/*
 * Equivalence with demand faulting, over slots that exercise the level
 * rules: an aligned one, one whose head and tail stick out of 2 MiB frames,
 * a read-only one and a dirty-logged one (4 KiB only).
 */
static void run_equivalence(enum vmmu_backing b)
{
	const uint64_t size = 16ull << 20;
	const struct equiv_slot slots[] = {
		{ 0, GPA, size, 0 },
		{ 0, GPA + (64ull << 20) + 8192, (5ull << 20) + 12288, 8192 },
		{ VMMU_MEM_READONLY, GPA + (128ull << 20), 4ull << 20, 4ull << 20 },
		{ VMMU_MEM_LOG_DIRTY_PAGES, GPA + (192ull << 20), 4ull << 20, 8ull << 20 },
	};
	struct vmmu_hostmem *hm;
	uint8_t *mem;

	assert_int_equal(vmmu_hostmem_create(&hm), 0);
	assert_int_equal(vmmu_hostmem_alloc(hm, b, size, 0, (void **)&mem), 0);
	memset(mem, 1, size); /* host pages settle before anyone maps them */
	equiv_run(hm, mem, slots, (int)VMMU_ARRAY_SIZE(slots),
		  b == VMMU_BACKING_ANONYMOUS ? PG_LEVEL_4K : 0);
	assert_int_equal(vmmu_hostmem_free(hm, mem), 0);
	assert_int_equal(vmmu_hostmem_destroy(hm), 0);
}

static void test_equivalence_4k(void **state)
{
	(void)state;
	run_equivalence(VMMU_BACKING_ANONYMOUS);
}

static void test_equivalence_thp(void **state)
{
	(void)state;
	run_equivalence(VMMU_BACKING_ANONYMOUS_THP);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_hole_progress),
		cmocka_unit_test(test_huge_progress),
		cmocka_unit_test(test_uffd_backing),
		cmocka_unit_test(test_race_protect),
		cmocka_unit_test(test_race_protect_direct_build),
		cmocka_unit_test(test_race_in_progress_interrupt),
		cmocka_unit_test(test_interrupt_after_progress),
		cmocka_unit_test(test_eagain_slot_being_deleted),
		cmocka_unit_test(test_delete_during_prefault_threads),
		cmocka_unit_test(test_direct_build),
		cmocka_unit_test(test_direct_build_dirty_log),
		cmocka_unit_test(test_direct_build_errors),
		cmocka_unit_test(test_equivalence_4k),
		cmocka_unit_test(test_equivalence_thp),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
