/* SPDX-License-Identifier: MIT */
/*
 * stress_frozen_flush - a thread that meets an entry frozen by another
 * thread must not return before that entry's TLB flush has happened.
 *
 * The story (issue 11, defect 1): thread A zaps gfn P under the read lock;
 * P stays frozen in A's batch while A's TLB flush waits for a vCPU that is
 * still in guest mode with P writable in its TLB.  Thread B now zaps P too,
 * runs a notifier invalidation over it, deletes or moves its slot, or
 * harvests its dirty bit: it sees P frozen, skips it, and returns with no
 * flush while the vCPU can still write P through its TLB.  For a harvest
 * that means a page reported (and copied) while a write to it can still
 * land unlogged; for a zap, "TLBs are flushed before it returns" is false.
 *
 * This test is that vCPU: the main thread writes P through the hardware
 * model (P is now in its TLB, writable) and stays in guest mode without
 * touching memory, so it polls no kick and acknowledges nothing.  A zaps
 * P; once P is no longer mapped (A froze it, or cleared it under a lock B
 * will need too), B runs one operation on P (or, when P is mapped by a
 * 2 MiB leaf, on another page of that leaf).  B must still be running
 * when the main thread finally leaves guest mode: if it returned before,
 * it returned before the flush.  (On a slow machine a buggy B may not have
 * returned yet when we look; the test can then pass wrongly, never fail
 * wrongly.)
 *
 * Operations and modes are chosen by the seed (VMMU_SEED=N replays them),
 * rounds run for the time budget (VMMU_TEST_SECONDS, default 2).
 * VMMU_KEEP_GOING=1 counts the early returns per operation instead of
 * stopping at the first, and fails at the end if there was any.
 */
#define _GNU_SOURCE
#include <vmmu/hostmem.h>
#include <vmmu/hw.h>
#include <vmmu/vmmu.h>

#include "mmu_internal.h"

#ifndef STRESS_DEFAULT_SECONDS
#define STRESS_DEFAULT_SECONDS 2.0
#endif
#include "../common/dirty_ring.h"
#include "../common/stress_util.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#define MEM_SIZE (4ull << 20)
#define NPAGES (MEM_SIZE / 4096)
#define GPA_BASE (1ull << 30)
#define GPA_MOVED (1ull << 31)
#define WAIT_NS (40ull * 1000 * 1000) /* how long B gets to return early */

enum op {
	OP_ZAP, /* vmmu_zap_gfn_range */
	OP_NOTIFY, /* invalidate_range_start/end */
	OP_DELETE, /* delete the slot */
	OP_MOVE, /* move the slot */
	OP_GET_LOG, /* vmmu_get_dirty_log, write-protect mode */
	OP_CLEAR_LOG, /* vmmu_clear_dirty_log (manual protect) */
	OP_RESET_RING, /* vmmu_reset_dirty_rings */
	OP_NR
};
static const char *op_names[] = { "zap_gfn_range",    "notifier start", "slot delete",
				  "slot move",	      "get_dirty_log",	"clear_dirty_log",
				  "reset_dirty_rings" };

static struct vmmu_hostmem *hm;
static struct vmmu_vm *vm;
static uint8_t *mem;
static uint64_t page_p, page_q; /* A zaps P; B works on Q (P or P's huge leaf) */
static enum op op;
static int b_done;
static int b_ret;
static uint64_t bm[NPAGES / 64];

static int set_slot(uint64_t gpa, uint64_t size, uint32_t flags)
{
	struct vmmu_userspace_memory_region r = {
		.slot = 0,
		.flags = flags,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uintptr_t)mem,
	};
	return vmmu_set_user_memory_region(vm, &r);
}

static void *zapper_a(void *unused)
{
	(void)unused;
	STRESS_CHECK(vmmu_zap_gfn_range(vm, (GPA_BASE >> 12) + page_p,
					(GPA_BASE >> 12) + page_p + 1) == 0);
	return NULL;
}

static void *thread_b(void *unused)
{
	uint64_t hva = (uintptr_t)mem + page_q * 4096;
	uint64_t mask[1];
	int r = 0;

	(void)unused;
	switch (op) {
	case OP_ZAP:
		r = vmmu_zap_gfn_range(vm, (GPA_BASE >> 12) + page_q,
				       (GPA_BASE >> 12) + page_q + 1);
		break;
	case OP_NOTIFY:
		r = vmmu_notify_invalidate_range_start(vm, hva, hva + 4096);
		if (!r)
			r = vmmu_notify_invalidate_range_end(vm, hva, hva + 4096);
		break;
	case OP_DELETE:
		r = set_slot(GPA_BASE, 0, 0);
		break;
	case OP_MOVE:
		r = set_slot(GPA_MOVED, MEM_SIZE, 0);
		break;
	case OP_GET_LOG:
		r = vmmu_get_dirty_log(vm, 0, bm);
		break;
	case OP_CLEAR_LOG:
		mask[0] = 1ull << (page_q % 64);
		r = vmmu_clear_dirty_log(vm, 0, page_q / 64 * 64, 64, mask);
		break;
	case OP_RESET_RING:
		r = vmmu_reset_dirty_rings(vm, NULL);
		break;
	default:
		break;
	}
	__atomic_store_n(&b_ret, r, __ATOMIC_RELAXED);
	__atomic_store_n(&b_done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* One round; returns true if B returned while the vCPU had not yet
 * acknowledged the flush. */
static bool round_once(struct test_rng *rng)
{
	struct vmmu_vm_config cfg = { 0 };
	struct vmmu_vcpu *vcpu;
	struct vmmu_hw_vcpu *hw;
	pthread_t ta, tb;
	uint32_t ring_next = 0, flags = 0;
	uint64_t v = test_rng_next(rng), t0;
	bool thp, early;
	int level = 0;
	void *hva;

	op = (enum op)test_rng_below(rng, OP_NR);
	/* Huge leaves only where nothing splits them. */
	thp = op <= OP_MOVE && test_rng_below(rng, 2);
	page_p = test_rng_below(rng, NPAGES);
	page_q = page_p;
	cfg.dirty_log_wrprot = true; /* dirty-bit mode syncs the PML: B waits anyway */
	cfg.max_pt_pages = 4096; /* a small pool: quick to set up under sanitizers */
	cfg.disable_ept_ad = test_rng_below(rng, 2);
	cfg.disable_fast_page_fault = test_rng_below(rng, 2);
	cfg.slot_zap = op == OP_DELETE || op == OP_MOVE ? (unsigned)test_rng_below(rng, 2) : 0;
	if (op == OP_CLEAR_LOG)
		cfg.manual_dirty_log_protect = VMMU_DIRTY_LOG_MANUAL_PROTECT;
	if (op == OP_RESET_RING)
		cfg.dirty_ring_size = 1024;
	if (op >= OP_GET_LOG)
		flags = VMMU_MEM_LOG_DIRTY_PAGES;
	snprintf(stress_mode, sizeof(stress_mode), "%s%s%s%s", op_names[op], thp ? "/thp" : "",
		 cfg.disable_ept_ad ? "/noAD" : "",
		 cfg.slot_zap == VMMU_SLOT_ZAP_ALL_FAST ? "/zap-all-fast" : "");

	STRESS_CHECK(vmmu_hostmem_create(&hm) == 0);
	STRESS_CHECK(vmmu_hostmem_alloc(hm,
					thp ? VMMU_BACKING_ANONYMOUS_THP : VMMU_BACKING_ANONYMOUS,
					MEM_SIZE, 0, (void **)&mem) == 0);
	cfg.hostmem = hm;
	STRESS_CHECK(vmmu_vm_create(&cfg, &vm) == 0);
	STRESS_CHECK(set_slot(GPA_BASE, MEM_SIZE, flags) == 0);
	STRESS_CHECK(vmmu_vcpu_create(vm, 0, &vcpu) == 0);
	STRESS_CHECK(vmmu_hw_vcpu_create(vcpu, NULL, &hw) == 0);

	/* P becomes writable (and, when logged, dirty) in the vCPU's TLB. */
	STRESS_CHECK(vmmu_hw_write(hw, GPA_BASE + page_p * 4096, &v, sizeof(v)) == 0);
	STRESS_CHECK(vmmu_debug_lookup(vm, 0, GPA_BASE + page_p * 4096, &hva, &level, NULL) == 0);
	if (level > 1)
		page_q = (page_p & ~511ull) + test_rng_below(rng, 512);
	if (op == OP_CLEAR_LOG) {
		/* The harvest B clears: P is in it. */
		STRESS_CHECK(vmmu_get_dirty_log(vm, 0, bm) == 0);
		STRESS_CHECK(bm[page_p / 64] >> (page_p % 64) & 1);
	}
	if (op == OP_RESET_RING) {
		static uint8_t seen[NPAGES];

		memset(seen, 0, sizeof(seen));
		STRESS_CHECK(test_ring_collect(vcpu, &ring_next, 0, seen, NPAGES) >= 1);
		STRESS_CHECK(seen[page_p]);
	}
	/* From here the main thread is a CPU busy in guest mode. */
	__atomic_store_n(&b_done, 0, __ATOMIC_RELAXED);
	STRESS_CHECK(pthread_create(&ta, NULL, zapper_a, NULL) == 0);
	t0 = stress_now_ns();
	while (vmmu_debug_lookup(vm, 0, GPA_BASE + page_p * 4096, NULL, NULL, NULL) == 0) {
		/* A cannot finish without us, so it must get here. */
		STRESS_CHECK(stress_now_ns() - t0 < 20ull * 1000 * 1000 * 1000);
		sched_yield();
	}
	STRESS_CHECK(pthread_create(&tb, NULL, thread_b, NULL) == 0);
	t0 = stress_now_ns();
	while (!__atomic_load_n(&b_done, __ATOMIC_ACQUIRE) && stress_now_ns() - t0 < WAIT_NS)
		usleep(500);
	early = __atomic_load_n(&b_done, __ATOMIC_ACQUIRE);
	/* The acknowledgement. */
	STRESS_CHECK(vmmu_hw_guest_exit(hw) == 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	STRESS_CHECK(b_ret == 0);
	if (op == OP_GET_LOG)
		STRESS_CHECK(bm[page_p / 64] >> (page_p % 64) & 1);

	STRESS_CHECK(vmmu_hw_vcpu_destroy(hw) == 0);
	STRESS_CHECK(vmmu_vcpu_destroy(vcpu) == 0);
	STRESS_CHECK(vmmu_zap_all(vm) == 0);
	vmmu_rcu_barrier();
	STRESS_CHECK(vmmu_pool_in_use(&vm->pool) == 0);
	STRESS_CHECK(vmmu_vm_destroy(vm) == 0);
	STRESS_CHECK(vmmu_hostmem_free(hm, mem) == 0);
	STRESS_CHECK(vmmu_hostmem_destroy(hm) == 0);
	return early;
}

int main(void)
{
	bool keep_going = test_env_u64("VMMU_KEEP_GOING", 0);
	uint64_t rounds[OP_NR] = { 0 }, early[OP_NR] = { 0 }, total_early = 0, n = 0;
	double budget = stress_budget();
	struct test_rng rng;
	uint64_t t_end;

	setvbuf(stdout, NULL, _IOLBF, 0);
	test_rng_init(&rng, test_seed());
	printf("budget %.1fs\n", budget);
	t_end = stress_now_ns() + (uint64_t)(budget * 1e9);
	do {
		bool e = round_once(&rng);

		rounds[op]++;
		n++;
		if (e) {
			early[op]++;
			total_early++;
			fprintf(stderr,
				"round %" PRIu64 " (%s, P=%" PRIu64 ", Q=%" PRIu64
				"): B returned before the vCPU acknowledged A's flush\n",
				n, stress_mode, page_p, page_q);
			STRESS_CHECK(keep_going);
		}
	} while (stress_now_ns() < t_end || n < OP_NR);
	for (int i = 0; i < OP_NR; i++)
		printf("%-18s rounds %4" PRIu64 ", returned before the flush %4" PRIu64 "\n",
		       op_names[i], rounds[i], early[i]);
	if (total_early) {
		printf("FAIL\n");
		return 1;
	}
	printf("PASS (%" PRIu64 " rounds)\n", n);
	return 0;
}
