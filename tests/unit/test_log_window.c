/* SPDX-License-Identifier: MIT */
/*
 * test_log_window - the moment between a fault making a leaf writable and
 * the same fault logging its page, in write-protect mode without A/D bits
 * (the mode of the stress_dirty_log failure that led here), with the
 * lockless fault path and without.
 *
 * The fault logs its page right after the writable leaf becomes visible
 * (tdp_mmu.c, fast_pf.c): a harvester that takes the bit then also finds
 * the writable leaf to protect again.  Logging first would be wrong: a
 * harvest between the log and the install would take the bit, find nothing
 * writable to protect, and the leaf would then be installed writable with
 * no bit, so the guest's later writes would never be logged.
 *
 * The price is this window: another vCPU can write through the new leaf,
 * and its access return, before the faulting vCPU has logged the page; a
 * harvest that starts in the window does not report the page, the first
 * one after the fault has returned does.  Nothing is lost (a migration's
 * final pass runs with the vCPUs stopped, so after every fault), and KVM's
 * lockless fault logs after its compare-and-exchange the same way.  This
 * is why stress_dirty_log dates a write's check from the end of the other
 * vCPUs' calls in progress when the write returned, not from the write.
 *
 * The fault is stopped inside the window by wrapping vmmu_mark_page_dirty
 * at link time (-Wl,--wrap: the fault paths call it from other objects of
 * the static library), so the interleaving is exact, not timed:
 *  - held before the log: a harvest started in the window does not report
 *    the page; the one after the fault has returned does, and leaves the
 *    page protected (the next write faults and is logged);
 *  - held after the log: a harvest then reports the page and protects the
 *    new leaf, so the other vCPU's next write faults and is logged.  This
 *    one fails if the log is moved before the install.
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
#include <pthread.h>
#include <semaphore.h>
#include <string.h>
#include <time.h>

#define SIZE (256ull << 10)
#define NPAGES (SIZE / 4096)
#define WORDS ((NPAGES + 63) / 64)
#define PAGE 7

void __real_vmmu_mark_page_dirty(struct vmmu_vcpu *vcpu, const struct vmmu_memslot *slot,
				 uint64_t gfn);
void __wrap_vmmu_mark_page_dirty(struct vmmu_vcpu *vcpu, const struct vmmu_memslot *slot,
				 uint64_t gfn);

/* Which log to stop at, and the handshake with the test thread. */
static struct {
	struct vmmu_vcpu *vcpu;
	uint64_t gfn;
	bool armed;
	bool after; /* stop after the log instead of before */
	sem_t in, go;
	pthread_t thread;
	bool running; /* the faulting thread, until joined */
} hook;

static void hook_hold(void)
{
	sem_post(&hook.in);
	while (sem_wait(&hook.go))
		;
}

void __wrap_vmmu_mark_page_dirty(struct vmmu_vcpu *vcpu, const struct vmmu_memslot *slot,
				 uint64_t gfn)
{
	bool stop = vcpu == hook.vcpu && gfn == hook.gfn &&
		    __atomic_exchange_n(&hook.armed, false, __ATOMIC_ACQ_REL);

	if (stop && !hook.after)
		hook_hold();
	__real_vmmu_mark_page_dirty(vcpu, slot, gfn);
	if (stop && hook.after)
		hook_hold();
}

/* Let the stopped fault go on and wait for its thread. */
static void release_faulter(void)
{
	if (!hook.running)
		return;
	sem_post(&hook.go);
	assert_int_equal(pthread_join(hook.thread, NULL), 0);
	hook.running = false;
}

/* After a failed check: the stopped fault holds the MMU lock or an RCU
 * read section, which would hang the next test.  (The VM is leaked.) */
static int teardown(void **state)
{
	(void)state;
	__atomic_store_n(&hook.armed, false, __ATOMIC_RELEASE);
	release_faulter();
	return 0;
}

struct faulter {
	struct vmmu_hw_vcpu *hw;
	uint64_t v;
	int r;
};

/* vCPU 0's write to word 0 of PAGE, which faults (the leaf is protected). */
static void *faulter_thread(void *opaque)
{
	struct faulter *f = opaque;

	f->r = vmmu_hw_write(f->hw, ENV_GPA + PAGE * 4096, &f->v, sizeof(f->v));
	vmmu_hw_guest_exit(f->hw);
	return NULL;
}

static uint64_t pf_fast(struct vmmu_vcpu *vcpu)
{
	struct vmmu_vcpu_stats s;

	assert_int_equal(vmmu_vcpu_stats(vcpu, &s), 0);
	return s.pf_fast;
}

static bool harvest_has_page(struct env *e)
{
	uint64_t bm[WORDS];

	assert_int_equal(vmmu_get_dirty_log(e->vm, 0, bm), 0);
	return bm[PAGE / 64] >> (PAGE % 64) & 1;
}

static uint64_t ept_violations(struct vmmu_hw_vcpu *hw)
{
	struct vmmu_hw_stats s;

	assert_int_equal(vmmu_hw_stats(hw, &s), 0);
	return s.ept_violations;
}

/* vCPU 1's write to word 1 of PAGE; true if it had to fault. */
static bool other_write(struct vmmu_hw_vcpu *hw, uint64_t v)
{
	uint64_t before = ept_violations(hw);

	assert_int_equal(vmmu_hw_write(hw, ENV_GPA + PAGE * 4096 + 8, &v, sizeof(v)), 0);
	/* Out of guest mode: the harvests' flushes do not wait for us. */
	vmmu_hw_guest_exit(hw);
	return ept_violations(hw) != before;
}

static void run_window(bool fast, bool after)
{
	struct vmmu_vm_config cfg = {
		.dirty_log_wrprot = true,
		.disable_ept_ad = true,
		.disable_fast_page_fault = !fast,
	};
	static struct faulter f; /* read by the thread even after a failure */
	struct env e;
	struct vmmu_vcpu *vcpu1;
	struct vmmu_hw_vcpu *hw1;
	struct timespec deadline;
	uint64_t *mem;
	int r;

	vm_env_init(&e, VMMU_BACKING_ANONYMOUS, SIZE, cfg);
	mem = (uint64_t *)(e.mem + PAGE * 4096);
	assert_int_equal(vmmu_vcpu_create(e.vm, 1, &vcpu1), 0);
	assert_int_equal(vmmu_hw_vcpu_create(vcpu1, NULL, &hw1), 0);
	assert_int_equal(set_slot(&e, VMMU_MEM_LOG_DIRTY_PAGES), 0);

	/* PAGE mapped, logged, harvested: its leaf is now write-protected. */
	write_page(&e, PAGE, 1);
	assert_true(harvest_has_page(&e));
	assert_false(harvest_has_page(&e));

	/* vCPU 0 write-faults on PAGE and stops at the log. */
	hook.vcpu = e.vcpu;
	hook.gfn = (ENV_GPA >> 12) + PAGE;
	hook.after = after;
	assert_int_equal(sem_init(&hook.in, 0, 0), 0);
	assert_int_equal(sem_init(&hook.go, 0, 0), 0);
	__atomic_store_n(&hook.armed, true, __ATOMIC_RELEASE);
	f = (struct faulter){ .hw = e.hw, .v = 0x1111 };
	assert_int_equal(pthread_create(&hook.thread, NULL, faulter_thread, &f), 0);
	hook.running = true;
	/* A bound, so that a build without the wrap fails instead of hanging. */
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 30;
	do
		r = sem_timedwait(&hook.in, &deadline);
	while (r && errno == EINTR);
	if (r) {
		print_error("the fault never logged PAGE: is vmmu_mark_page_dirty wrapped?\n");
		fail();
	}

	if (!after) {
		/* In the window: the leaf is writable, the page not logged. */
		assert_false(other_write(hw1, 0x2222)); /* no fault: it was writable */
		assert_int_equal(__atomic_load_n(&mem[1], __ATOMIC_RELAXED), 0x2222);
		/*
		 * That write has returned, and this harvest starts after it, but
		 * the page is not reported: the fault that made the leaf
		 * writable has not logged it yet.  (If vmmu ever closes this
		 * window, this becomes assert_true and stress_dirty_log can
		 * date each check from the write alone again.)
		 */
		assert_false(harvest_has_page(&e));
		release_faulter();
		assert_int_equal(f.r, 0);
		assert_true(pf_fast(e.vcpu) == (fast ? 1 : 0));
		/* The first harvest after the fault returned reports it... */
		assert_true(harvest_has_page(&e));
		/* ...and protected the leaf: the next write faults, is logged. */
		assert_true(other_write(hw1, 0x3333));
		assert_true(harvest_has_page(&e));
	} else {
		/* Logged and visible: a harvest now reports the page and
		 * protects the leaf the fault installed. */
		assert_true(harvest_has_page(&e));
		release_faulter();
		assert_int_equal(f.r, 0);
		/* vCPU 0's own write faulted again on the protected leaf (and
		 * logged again); vCPU 1's write now is in the next harvest.
		 * With the log before the install, that harvest would have
		 * found nothing to protect, the leaf would have been installed
		 * writable with no bit left, and both writes would be lost. */
		other_write(hw1, 0x2222);
		assert_true(harvest_has_page(&e));
	}
	assert_int_equal(__atomic_load_n(&mem[0], __ATOMIC_RELAXED), 0x1111);
	assert_false(harvest_has_page(&e));

	sem_destroy(&hook.in);
	sem_destroy(&hook.go);
	assert_int_equal(vmmu_hw_vcpu_destroy(hw1), 0);
	assert_int_equal(vmmu_vcpu_destroy(vcpu1), 0);
	env_fini(&e);
}

static void test_window_locked(void **state)
{
	(void)state;
	run_window(false, false);
}

static void test_window_fast(void **state)
{
	(void)state;
	run_window(true, false);
}

static void test_after_log_locked(void **state)
{
	(void)state;
	run_window(false, true);
}

static void test_after_log_fast(void **state)
{
	(void)state;
	run_window(true, true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_window_locked, teardown),
		cmocka_unit_test_teardown(test_window_fast, teardown),
		cmocka_unit_test_teardown(test_after_log_locked, teardown),
		cmocka_unit_test_teardown(test_after_log_fast, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
