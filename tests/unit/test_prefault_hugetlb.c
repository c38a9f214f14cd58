/* SPDX-License-Identifier: MIT */
/*
 * test_prefault_hugetlb - pre-faulting and direct build give exactly the
 * leaves demand faulting gives, on hugetlb backings (2 MiB and 1 GiB).
 *
 * hugetlb pages must be reserved (tests/common/hugetlb.h: as root, raised
 * by what is missing and put back at exit).  A size it cannot get is
 * skipped; when it can get neither, the program exits 77 (skipped).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <vmmu/hostmem.h>
#include <vmmu/vmmu.h>

#include "mmu_internal.h"

#include "../common/hugetlb.h"
#include "prefault_equiv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GPA (1ull << 32)

static bool have_2m, have_1g;

static void run_equivalence(enum vmmu_backing b)
{
	uint64_t size = b == VMMU_BACKING_ANONYMOUS_HUGETLB_1GB ? 1ull << 30 : 16ull << 20;
	const struct equiv_slot slots[] = {
		/* Whole, aligned: the largest leaves. */
		{ 0, GPA, size, 0 },
		/* Head and tail sticking out of 2 MiB frames. */
		{ 0, GPA + (2ull << 30) + 8192, (5ull << 20) + 12288, 8192 },
		/* 2 MiB aligned but smaller than 1 GiB, read-only. */
		{ VMMU_MEM_READONLY, GPA + (3ull << 30), 4ull << 20, 4ull << 20 },
		/* Dirty-logged: 4 KiB only. */
		{ VMMU_MEM_LOG_DIRTY_PAGES, GPA + (4ull << 30), 4ull << 20, 8ull << 20 },
	};
	struct vmmu_hostmem *hm;
	uint8_t *mem;

	assert_int_equal(vmmu_hostmem_create(&hm), 0);
	assert_int_equal(vmmu_hostmem_alloc(hm, b, size, 0, (void **)&mem), 0);
	equiv_run(hm, mem, slots, (int)VMMU_ARRAY_SIZE(slots),
		  b == VMMU_BACKING_ANONYMOUS_HUGETLB_1GB ? PG_LEVEL_1G : PG_LEVEL_2M);
	assert_int_equal(vmmu_hostmem_free(hm, mem), 0);
	assert_int_equal(vmmu_hostmem_destroy(hm), 0);
}

static void test_equivalence_hugetlb_2mb(void **state)
{
	(void)state;
	if (!have_2m)
		skip();
	run_equivalence(VMMU_BACKING_ANONYMOUS_HUGETLB_2MB);
}

static void test_equivalence_hugetlb_1gb(void **state)
{
	(void)state;
	if (!have_1g)
		skip();
	run_equivalence(VMMU_BACKING_ANONYMOUS_HUGETLB_1GB);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_equivalence_hugetlb_2mb),
		cmocka_unit_test(test_equivalence_hugetlb_1gb),
	};

	have_2m = test_hugetlb_reserve(2ull << 20, 16ull << 20);
	have_1g = test_hugetlb_reserve(1ull << 30, 1ull << 30);
	printf("hugetlb: 2 MiB pages %s, 1 GiB pages %s\n", have_2m ? "reserved" : "unavailable",
	       have_1g ? "reserved" : "unavailable");
	if (!have_2m && !have_1g)
		return TEST_SKIP_CODE;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
