/* SPDX-License-Identifier: MIT */
/*
 * test_hugetlb - guest memory on hugetlb pages maps with leaves of the
 * host page size, and no wider.
 *
 *  - 2 MiB pages: a 64 MiB slot whose gfn and hva are congruent maps with
 *    32 level-2 leaves (no 4 KiB leaf), every translation exact; the same
 *    memory in a slot 4 KiB off congruence maps only 4 KiB leaves; a
 *    discard of one huge page through the backing zaps its leaf and the
 *    guest reads zeros there afterwards.
 *  - 1 GiB pages: a 1 GiB slot at a 1 GiB-aligned gpa maps with one level-3
 *    leaf; a slot on the same memory congruent only modulo 2 MiB maps with
 *    level-2 leaves.
 *
 * The pages are reserved on demand (tests/common/hugetlb.h: as root,
 * nr_hugepages is raised and restored at exit).  A part whose pages cannot
 * be reserved is skipped; if neither can, the test exits 77 (skipped).
 */
#define _GNU_SOURCE
#include <vmmu/hostmem.h>
#include <vmmu/hw.h>
#include <vmmu/vmmu.h>

#include "../common/hugetlb.h"
#include "../common/test_util.h"

#include <errno.h>
#include <string.h>

#define PG 4096ull
#define MB2 (2ull << 20)
#define GB1 (1ull << 30)

#define CHECK(cond)                                                                        \
	do {                                                                               \
		if (!(cond)) {                                                             \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,  \
				#cond);                                                    \
			test_hugetlb_restore();                                            \
			abort();                                                           \
		}                                                                          \
	} while (0)

struct env {
	struct vmmu_hostmem *hm;
	struct vmmu_vm *vm;
	struct vmmu_vcpu *vcpu;
	struct vmmu_hw_vcpu *hw;
	uint8_t *mem;
};

static int env_init(struct env *e, enum vmmu_backing b, uint64_t size)
{
	int r;

	memset(e, 0, sizeof(*e));
	CHECK(vmmu_hostmem_create(&e->hm) == 0);
	r = vmmu_hostmem_alloc(e->hm, b, size, 0, (void **)&e->mem);
	if (r) {
		CHECK(r == -ENOMEM);
		CHECK(vmmu_hostmem_destroy(e->hm) == 0);
		return r;
	}
	CHECK(vmmu_vm_create(&(struct vmmu_vm_config){ .hostmem = e->hm }, &e->vm) == 0);
	CHECK(vmmu_vcpu_create(e->vm, 0, &e->vcpu) == 0);
	CHECK(vmmu_hw_vcpu_create(e->vcpu, NULL, &e->hw) == 0);
	return 0;
}

static void env_fini(struct env *e)
{
	CHECK(vmmu_hw_vcpu_destroy(e->hw) == 0);
	CHECK(vmmu_vm_destroy(e->vm) == 0);
	CHECK(vmmu_hostmem_free(e->hm, e->mem) == 0);
	CHECK(vmmu_hostmem_destroy(e->hm) == 0);
}

static void set_slot(struct env *e, unsigned id, uint64_t gpa, uint64_t size, void *hva)
{
	struct vmmu_userspace_memory_region r = { .slot = id, .guest_phys_addr = gpa,
						  .memory_size = size,
						  .userspace_addr = (uint64_t)(uintptr_t)hva };

	CHECK(vmmu_set_user_memory_region(e->vm, &r) == 0);
}

/* Write every @step bytes of [gpa, gpa + size) and check each translation. */
static void touch_and_check(struct env *e, uint64_t gpa, uint64_t size, uint8_t *hva,
			    uint64_t step, int want_level)
{
	for (uint64_t off = 0; off < size; off += step) {
		uint64_t v = gpa + off;

		CHECK(vmmu_hw_write(e->hw, gpa + off, &v, 8) == 0);
	}
	vmmu_hw_guest_exit(e->hw);
	for (uint64_t off = 0; off < size; off += step) {
		void *h;
		int level;
		uint64_t v;

		CHECK(vmmu_debug_lookup(e->vm, 0, gpa + off + 16, &h, &level, NULL) == 0);
		CHECK(h == hva + off + 16);
		CHECK(level == want_level);
		memcpy(&v, hva + off, 8);
		CHECK(v == gpa + off);
	}
}

static bool test_2m(void)
{
	struct env e;
	struct vmmu_vm_stats st;
	uint64_t size = 64ull << 20, gpa = 1ull << 32, v = 1;
	uint64_t gpa2 = (8ull << 30) + PG; /* 4 KiB off congruence */

	if (env_init(&e, VMMU_BACKING_ANONYMOUS_HUGETLB_2MB, size)) {
		printf("hugetlb 2 MiB: skipped (the pages went elsewhere)\n");
		return false;
	}
	set_slot(&e, 0, gpa, size, e.mem);
	touch_and_check(&e, gpa, size, e.mem, PG, 2);
	CHECK(vmmu_vm_stats(e.vm, &st) == 0);
	CHECK(st.pages_2m == size / MB2 && st.pages_4k == 0 && st.pages_1g == 0);

	/* The same memory off congruence: only 4 KiB leaves. */
	set_slot(&e, 1, gpa2, size, e.mem);
	touch_and_check(&e, gpa2, 4 * MB2, e.mem, PG, 1);
	CHECK(vmmu_vm_stats(e.vm, &st) == 0);
	CHECK(st.pages_4k == 4 * MB2 / PG && st.pages_2m == size / MB2);

	/* Discarding one huge page zaps the leaves mapping it, in both slots. */
	CHECK(vmmu_hostmem_discard(e.hm, e.mem + MB2, MB2) == 0);
	CHECK(vmmu_debug_lookup(e.vm, 0, gpa + MB2, NULL, NULL, NULL) == -ENOENT);
	CHECK(vmmu_debug_lookup(e.vm, 0, gpa2 + MB2, NULL, NULL, NULL) == -ENOENT);
	CHECK(vmmu_debug_lookup(e.vm, 0, gpa, NULL, NULL, NULL) == 0);
	CHECK(vmmu_hw_read(e.hw, gpa + MB2 + 8 * PG, &v, 8) == 0);
	CHECK(v == 0);
	/* Only part of a huge page cannot be discarded. */
	CHECK(vmmu_hostmem_discard(e.hm, e.mem, PG) == -EINVAL);
	vmmu_hw_guest_exit(e.hw);
	CHECK(vmmu_vm_stats(e.vm, &st) == 0);
	CHECK(st.pages_2m == size / MB2);
	env_fini(&e);
	printf("hugetlb 2 MiB: PASS\n");
	return true;
}

static bool test_1g(void)
{
	struct env e;
	struct vmmu_vm_stats st;
	uint64_t gpa = 4 * GB1, gpa2 = 16 * GB1 + MB2;

	if (env_init(&e, VMMU_BACKING_ANONYMOUS_HUGETLB_1GB, GB1)) {
		printf("hugetlb 1 GiB: skipped (the page went elsewhere)\n");
		return false;
	}
	set_slot(&e, 0, gpa, GB1, e.mem);
	touch_and_check(&e, gpa, GB1, e.mem, MB2, 3);
	CHECK(vmmu_vm_stats(e.vm, &st) == 0);
	CHECK(st.pages_1g == 1 && st.pages_2m == 0 && st.pages_4k == 0);

	/* Congruent modulo 2 MiB only: 2 MiB leaves (the slot's first and
	 * last 1 GiB frames stick out of it anyway). */
	set_slot(&e, 1, gpa2, GB1, e.mem);
	touch_and_check(&e, gpa2, 64 * MB2, e.mem, MB2, 2);
	CHECK(vmmu_vm_stats(e.vm, &st) == 0);
	CHECK(st.pages_1g == 1 && st.pages_2m == 64);
	env_fini(&e);
	printf("hugetlb 1 GiB: PASS\n");
	return true;
}

int main(void)
{
	bool ok2 = test_hugetlb_reserve(MB2, 64ull << 20);
	bool ok1 = test_hugetlb_reserve(GB1, GB1);
	int ran = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (ok2) {
		ran += test_2m();
	} else {
		printf("hugetlb 2 MiB: skipped (could not reserve 32 pages)\n");
	}
	if (ok1) {
		ran += test_1g();
	} else {
		printf("hugetlb 1 GiB: skipped (could not reserve 1 page)\n");
	}
	test_hugetlb_restore();
	return ran ? 0 : TEST_SKIP_CODE;
}
