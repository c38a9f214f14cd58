/* SPDX-License-Identifier: MIT */
/*
 * test_frozen - a thread that meets an entry frozen by another thread must
 * not return before that entry's TLB flush has happened.
 *
 * The story: thread A zaps gfn P under the MMU lock
 * held for read.  It freezes P, then waits in its remote TLB flush for a
 * vCPU that is in guest mode and does not acknowledge yet; the vCPU's TLB
 * still maps P writable.  Thread B now zaps P again, harvests the dirty
 * log, deletes the slot or starts a notifier invalidation.  The zap loop
 * used to skip the frozen entry ("its owner is on it") and the dirty-log
 * protection to treat it as "nothing to protect": B returned having
 * requested no flush, while the vCPU could still write P through its TLB
 * (a write the next harvest never sees, or a write to a page the host has
 * taken back).
 *
 * Each case is forced deterministically: the vCPU of the hardware model
 * enters guest mode and stays there (this thread drives it and simply does
 * not run it), so A blocks in its flush with P frozen.  We know A is there
 * when the VM's flush-request counter has moved.  Then B runs; B must not
 * return before the vCPU has acknowledged a flush requested after P was
 * frozen: either B requests a flush of its own (the counter moves again)
 * or B is blocked behind A.  Only then does the vCPU leave guest mode.  B
 * having returned while the vCPU was still in guest mode without a flush
 * of its own is the bug (the vCPU would not even need to exit to write
 * P: the hardware model only takes a kick before its next access, and a
 * real processor's TLB does not wait for one).
 *
 * The zap-after-zap, zap-after-notifier and harvest cases failed before
 * the rule was adopted.  Slot deletion and notifier start were already
 * ordered behind A (a grace period, and the MMU lock for write, both wait
 * for A to leave its read sections, which it does after its flush); their
 * cases pin that down.  The wait for "B requested a flush or returned"
 * has a generous bound after which B counts as blocked: a slow machine can
 * only make the test pass wrongly, never fail wrongly.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "../common/vm_env.h"

#include <pthread.h>
#include <time.h>

#define SIZE (2ull << 20)
#define PAGE 7 /* P */
#define BLOCKED_AFTER_NS (500ull * 1000 * 1000)

enum op {
	OP_ZAP,
	OP_GET_DIRTY_LOG,
	OP_DELETE_SLOT,
	OP_NOTIFIER_START,
};

struct racer {
	struct env *e;
	enum op op;
	int r;
	int done; /* atomic */
	pthread_t t;
};

static uint64_t flush_requests(struct env *e)
{
	struct vmmu_vm_stats vs;

	assert_int_equal(vmmu_vm_stats(e->vm, &vs), 0);
	return vs.remote_tlb_flush_requests;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *racer_fn(void *arg)
{
	struct racer *x = arg;
	struct env *e = x->e;
	uint64_t gfn = (ENV_GPA >> 12) + PAGE;
	uint64_t hva = (uintptr_t)e->mem + PAGE * 4096ull;
	uint64_t bitmap[SIZE / 4096 / 64];
	struct vmmu_userspace_memory_region del = { .slot = 0, .guest_phys_addr = ENV_GPA };

	switch (x->op) {
	case OP_ZAP:
		x->r = vmmu_zap_gfn_range(e->vm, gfn, gfn + 1);
		break;
	case OP_GET_DIRTY_LOG:
		x->r = vmmu_get_dirty_log(e->vm, 0, bitmap);
		break;
	case OP_DELETE_SLOT:
		x->r = vmmu_set_user_memory_region(e->vm, &del);
		break;
	case OP_NOTIFIER_START:
		x->r = vmmu_notify_invalidate_range_start(e->vm, hva, hva + 4096);
		break;
	}
	__atomic_store_n(&x->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void racer_start(struct racer *x, struct env *e, enum op op)
{
	x->e = e;
	x->op = op;
	x->r = -1;
	x->done = 0;
	assert_int_equal(pthread_create(&x->t, NULL, racer_fn, x), 0);
}

/*
 * A = @a_op (a zap of P), B = @b_op.  Returns with both finished; fails if
 * B returned while the vCPU had not acknowledged any flush requested after
 * P was frozen.
 */
static void race(enum op a_op, enum op b_op, bool logged)
{
	struct racer a, b;
	struct env e;
	uint64_t base, t0;
	bool b_returned_early;

	vm_env_init(&e, VMMU_BACKING_ANONYMOUS, SIZE,
		    (struct vmmu_vm_config){ .dirty_log_wrprot = true });
	if (logged)
		assert_int_equal(set_slot(&e, VMMU_MEM_LOG_DIRTY_PAGES), 0);
	/* P mapped writable (and logged), its translation in the vCPU's TLB. */
	write_page(&e, PAGE, 1);
	assert_int_equal(vmmu_hw_write(e.hw, ENV_GPA + PAGE * 4096, &(uint64_t){ 2 }, 8), 0);
	/* The vCPU stays in guest mode from here until we let it go. */
	base = flush_requests(&e);

	racer_start(&a, &e, a_op);
	/* A has frozen P and waits for the vCPU in its flush. */
	while (flush_requests(&e) == base && !__atomic_load_n(&a.done, __ATOMIC_ACQUIRE))
		vmmu_yield();
	assert_false(__atomic_load_n(&a.done, __ATOMIC_ACQUIRE));

	racer_start(&b, &e, b_op);
	t0 = now_ns();
	while (flush_requests(&e) < base + 2 && !__atomic_load_n(&b.done, __ATOMIC_ACQUIRE) &&
	       now_ns() - t0 < BLOCKED_AFTER_NS)
		vmmu_yield();
	/* Returned, and no flush of its own: nothing flushed the vCPU yet. */
	b_returned_early = __atomic_load_n(&b.done, __ATOMIC_ACQUIRE) &&
			   flush_requests(&e) < base + 2;

	/* The vCPU acknowledges: everyone can finish. */
	assert_int_equal(vmmu_hw_guest_exit(e.hw), 0);
	pthread_join(a.t, NULL);
	pthread_join(b.t, NULL);
	assert_int_equal(a.r, 0);
	assert_int_equal(b.r, 0);
	if (b_op == OP_NOTIFIER_START || a_op == OP_NOTIFIER_START) {
		uint64_t hva = (uintptr_t)e.mem + PAGE * 4096ull;

		assert_int_equal(vmmu_notify_invalidate_range_end(e.vm, hva, hva + 4096), 0);
	}
	if (b_op == OP_DELETE_SLOT)
		assert_int_equal(set_slot(&e, 0), 0);
	env_fini(&e);
	assert_false(b_returned_early);
}

static void test_zap_meets_frozen(void **state)
{
	(void)state;
	race(OP_ZAP, OP_ZAP, false);
}

static void test_zap_meets_frozen_of_notifier(void **state)
{
	(void)state;
	race(OP_NOTIFIER_START, OP_ZAP, false);
}

static void test_get_dirty_log_meets_frozen(void **state)
{
	(void)state;
	race(OP_ZAP, OP_GET_DIRTY_LOG, true);
}

static void test_slot_delete_meets_frozen(void **state)
{
	(void)state;
	race(OP_ZAP, OP_DELETE_SLOT, false);
}

static void test_notifier_start_meets_frozen(void **state)
{
	(void)state;
	race(OP_ZAP, OP_NOTIFIER_START, false);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_zap_meets_frozen),
		cmocka_unit_test(test_zap_meets_frozen_of_notifier),
		cmocka_unit_test(test_get_dirty_log_meets_frozen),
		cmocka_unit_test(test_slot_delete_meets_frozen),
		cmocka_unit_test(test_notifier_start_meets_frozen),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
