/* SPDX-License-Identifier: MIT */
/*
 * test_bad_input - a caller's mistake is an errno, never a WARN.
 *
 * Regression: vmmu_notify_invalidate_range_end() without a matching start
 * was documented as -EINVAL but tripped a WARN on the way, which aborts
 * Debug, ASan and TSan builds (and prints a warning in release builds).
 * The same confusion sat in the calls a CPU must make outside guest mode
 * (vmmu_vcpu_page_fault, vmmu_vcpu_set_paging,
 * vmmu_vcpu_pre_fault_memory): they now return -EBUSY.  Each bad input
 * here is made with stderr captured: the errno must be the documented one,
 * nothing may be printed, and nothing may change.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <vmmu/hostmem.h>
#include <vmmu/hw.h>
#include <vmmu/paging.h>
#include <vmmu/vmmu.h>

#include "mmu_internal.h"
#include "../common/vm_env.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define SIZE (2ull << 20)

/* stderr goes to a temporary file between capture_start and capture_end. */
static int saved_stderr = -1;
static FILE *capture;

static void capture_start(void)
{
	fflush(stderr);
	capture = tmpfile();
	assert_non_null(capture);
	saved_stderr = dup(STDERR_FILENO);
	assert_true(saved_stderr >= 0);
	assert_true(dup2(fileno(capture), STDERR_FILENO) >= 0);
}

/* Restore stderr and fail if anything was printed meanwhile. */
static void capture_end_silent(void)
{
	char buf[512] = { 0 };
	size_t n;

	fflush(stderr);
	assert_true(dup2(saved_stderr, STDERR_FILENO) >= 0);
	close(saved_stderr);
	rewind(capture);
	n = fread(buf, 1, sizeof(buf) - 1, capture);
	fclose(capture);
	if (n)
		fprintf(stderr, "printed on bad input: %s\n", buf);
	assert_int_equal(n, 0);
}

static void test_invalidate_end_without_start(void **state)
{
	uint64_t hva;
	struct env e;

	(void)state;
	vm_env_init(&e, VMMU_BACKING_ANONYMOUS, SIZE, (struct vmmu_vm_config){ 0 });
	hva = (uintptr_t)e.mem;
	write_page(&e, 0, 1);
	capture_start();
	int r = vmmu_notify_invalidate_range_end(e.vm, hva, hva + SIZE);
	capture_end_silent();
	assert_int_equal(r, -EINVAL);
	/* Nothing changed: the mapping is there, and a real pair still works
	 * (a second unmatched end is refused again). */
	assert_true(leaf(&e, 0, NULL) & EPT_WRITABLE);
	assert_int_equal(vmmu_notify_invalidate_range_start(e.vm, hva, hva + SIZE), 0);
	assert_int_equal(vmmu_notify_invalidate_range_end(e.vm, hva, hva + SIZE), 0);
	capture_start();
	r = vmmu_notify_invalidate_range_end(e.vm, hva, hva + SIZE);
	capture_end_silent();
	assert_int_equal(r, -EINVAL);
	assert_int_equal(read_page(&e, 0), 1);
	env_fini(&e);
}

/* The calls a CPU makes outside guest mode refuse to run inside it. */
static void test_vcpu_calls_in_guest_mode(void **state)
{
	struct vmmu_pre_fault_memory range = { .gpa = ENV_GPA + 4096, .size = 4096 };
	struct vmmu_paging_state ps = { 0 }, got;
	uint64_t gen0, gen1;
	void *hva;
	int level, r1, r2, r3;
	uint64_t spte;
	struct env e;

	(void)state;
	vm_env_init(&e, VMMU_BACKING_ANONYMOUS, SIZE, (struct vmmu_vm_config){ 0 });
	assert_int_equal(vmmu_vcpu_get_paging(e.vcpu, &got, &gen0), 0);
	assert_int_equal(vmmu_hw_guest_enter(e.hw), 0);
	ps.cr0 = 1; /* PE */
	capture_start();
	r1 = vmmu_vcpu_page_fault(e.vcpu, ENV_GPA + 4096, VMMU_EPT_ACC_WRITE);
	r2 = vmmu_vcpu_set_paging(e.vcpu, &ps);
	r3 = vmmu_vcpu_pre_fault_memory(e.vcpu, &range);
	capture_end_silent();
	assert_int_equal(vmmu_hw_guest_exit(e.hw), 0);
	assert_int_equal(r1, -EBUSY);
	assert_int_equal(r2, -EBUSY);
	assert_int_equal(r3, -EBUSY);
	/* Nothing changed. */
	assert_int_equal(vmmu_debug_lookup(e.vm, 0, ENV_GPA + 4096, &hva, &level, &spte), -ENOENT);
	assert_int_equal(vmmu_vcpu_get_paging(e.vcpu, &got, &gen1), 0);
	assert_int_equal(gen0, gen1);
	assert_int_equal(got.cr0, 0);
	assert_int_equal(range.gpa, ENV_GPA + 4096);
	assert_int_equal(range.size, 4096);
	/* Outside guest mode they work. */
	assert_int_equal(vmmu_vcpu_page_fault(e.vcpu, ENV_GPA + 4096, VMMU_EPT_ACC_WRITE),
			 VMMU_PF_FIXED);
	assert_int_equal(vmmu_vcpu_set_paging(e.vcpu, &ps), 0);
	env_fini(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_invalidate_end_without_start),
		cmocka_unit_test(test_vcpu_calls_in_guest_mode),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
