/* SPDX-License-Identifier: MIT */
/*
 * stress_memslot_notifier - memslots are deleted, moved and re-created
 * while vCPUs fault and access guest memory and the host fires MMU-notifier
 * invalidations (discards, write-protection, raw start/end pairs over
 * random host ranges, some outside any slot).
 *
 * Four host allocations (two THP, two 4 KiB), each the memory of one slot
 * that lives in its own guest window of four 4 MiB positions.  The memslot
 * thread deletes a slot, moves it to another position of its window, or
 * re-creates it; right after each delete or move returns it checks with
 * vmmu_debug_lookup that not one page of the old range is mapped (nothing
 * else can map it: no other slot lives in the window).  vCPU accesses get
 * 0, or -EFAULT where there is no slot or the host made the memory
 * read-only; a write through a stale writable translation faults the
 * process (SIGSEGV handler prints the seed).  A deadlock trips an alarm.
 * At rest every mapped gfn translates to its exact host byte, the stats
 * match the leaves, and after teardown the page-table pool is empty.
 *
 * The run is split between the VM's two ways of dropping a slot's
 * mappings (vmmu_vm_config.slot_zap): zap the slot's range, and invalidate
 * all roots.
 *
 * Seeded (VMMU_SEED=N replays the choices; thread timing still varies);
 * VMMU_TEST_SECONDS sets the time budget of each half (default 2).
 */
#define _GNU_SOURCE
#include <vmmu/hostmem.h>
#include <vmmu/hw.h>
#include <vmmu/vmmu.h>

#include "mmu_internal.h"

#include "../common/test_util.h"
#include "../common/stress_util.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#define PG 4096ull
#define NR_VCPUS 3
#define NR_SLOTS 4
#define SLOT_BYTES (4ull << 20)
#define POSITIONS 4
#define WINDOW (SLOT_BYTES * POSITIONS)
#define BASE_GPA (1ull << 32)

static uint64_t seed;
static int stop;

/* The replay seed is the run's (tests/common/stress_util.h). */
#define CHECK(cond) STRESS_CHECK(cond)

struct slot_state {
	uint8_t *mem;
	unsigned pos;
	bool present;
};

static struct vmmu_hostmem *hm;
static struct vmmu_vm *vm;
static struct slot_state slots[NR_SLOTS];

static uint64_t slot_gpa(unsigned i, unsigned pos)
{
	return BASE_GPA + i * WINDOW + pos * SLOT_BYTES;
}

static void fatal_signal(int sig)
{
	char msg[160];
	int n = snprintf(msg, sizeof(msg), "%s (seed %" PRIu64 ")\n",
			 sig == SIGALRM ? "SIGALRM: no progress, deadlock?" :
					  "SIGSEGV: write through a stale writable translation",
			 seed);

	if (write(2, msg, (size_t)n) < 0)
		_exit(3);
	_exit(2);
}

static int set_slot(unsigned i, unsigned pos, uint64_t size)
{
	struct vmmu_userspace_memory_region r = {
		.slot = i,
		.guest_phys_addr = slot_gpa(i, pos),
		.memory_size = size,
		.userspace_addr = (uint64_t)(uintptr_t)slots[i].mem,
	};

	return vmmu_set_user_memory_region(vm, &r);
}

/* Nothing of the slot's range at @pos may be mapped. */
static void check_unmapped(unsigned i, unsigned pos)
{
	for (uint64_t off = 0; off < SLOT_BYTES; off += PG)
		CHECK(vmmu_debug_lookup(vm, 0, slot_gpa(i, pos) + off, NULL, NULL, NULL) ==
		      -ENOENT);
}

struct vcpu_arg {
	unsigned id;
	struct vmmu_vcpu *vcpu;
	struct vmmu_hw_vcpu *hw;
	struct test_rng rng;
	uint64_t ok, efault;
};

static void *vcpu_thread(void *opaque)
{
	struct vcpu_arg *a = opaque;

	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		unsigned i = (unsigned)test_rng_below(&a->rng, NR_SLOTS);
		uint64_t gpa = BASE_GPA + i * WINDOW + test_rng_below(&a->rng, WINDOW / 8) * 8;
		uint64_t v;
		int r;

		/* Mostly where the slot is now (a racy hint), else anywhere. */
		if (test_rng_below(&a->rng, 4))
			gpa = slot_gpa(i, __atomic_load_n(&slots[i].pos, __ATOMIC_RELAXED)) +
			      test_rng_below(&a->rng, SLOT_BYTES / 8) * 8;
		v = gpa;

		if (test_rng_below(&a->rng, 2))
			r = vmmu_hw_write(a->hw, gpa, &v, 8);
		else
			r = vmmu_hw_read(a->hw, gpa, &v, 8);
		CHECK(r == 0 || r == -EFAULT);
		if (r)
			a->efault++;
		else
			a->ok++;
		if (test_rng_below(&a->rng, 128) == 0)
			vmmu_hw_guest_exit(a->hw);
	}
	vmmu_hw_guest_exit(a->hw);
	return NULL;
}

static void *notifier_thread(void *opaque)
{
	struct test_rng *rng = opaque;
	uint64_t n = 0;

	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		struct slot_state *s = &slots[test_rng_below(rng, NR_SLOTS)];
		uint64_t p0 = test_rng_below(rng, SLOT_BYTES / PG);
		uint64_t len = test_rng_range(rng, 1, SLOT_BYTES / PG - p0) * PG;
		uint64_t hva = (uint64_t)(uintptr_t)s->mem + p0 * PG;

		switch (test_rng_below(rng, 8)) {
		case 0:
			CHECK(vmmu_hostmem_protect(hm, s->mem, 1) == 0);
			usleep(100);
			CHECK(vmmu_hostmem_protect(hm, s->mem, 0) == 0);
			break;
		case 1:
		case 2:
			/* Raw notifier pairs, sometimes beyond the memory. */
			hva += test_rng_below(rng, 2) * (64ull << 20);
			CHECK(vmmu_notify_invalidate_range_start(vm, hva, hva + len) == 0);
			usleep(test_rng_below(rng, 50));
			CHECK(vmmu_notify_invalidate_range_end(vm, hva, hva + len) == 0);
			break;
		default:
			CHECK(vmmu_hostmem_discard(hm, (void *)(uintptr_t)hva, len) == 0);
		}
		n++;
		usleep(test_rng_below(rng, 200));
	}
	printf("notifier: %" PRIu64 " events\n", n);
	return NULL;
}

static void *memslot_thread(void *opaque)
{
	struct test_rng *rng = opaque;
	uint64_t deletes = 0, moves = 0, creates = 0;

	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		unsigned i = (unsigned)test_rng_below(rng, NR_SLOTS);
		struct slot_state *s = &slots[i];
		unsigned old = s->pos;

		if (s->present && test_rng_below(rng, 2)) {
			CHECK(set_slot(i, old, 0) == 0);
			check_unmapped(i, old);
			s->present = false;
			deletes++;
		} else if (s->present) {
			unsigned pos = (old + 1 + (unsigned)test_rng_below(rng, POSITIONS - 1)) %
				       POSITIONS;

			CHECK(set_slot(i, pos, SLOT_BYTES) == 0);
			__atomic_store_n(&s->pos, pos, __ATOMIC_RELAXED);
			check_unmapped(i, old);
			moves++;
		} else {
			unsigned pos = (unsigned)test_rng_below(rng, POSITIONS);

			CHECK(set_slot(i, pos, SLOT_BYTES) == 0);
			__atomic_store_n(&s->pos, pos, __ATOMIC_RELAXED);
			s->present = true;
			creates++;
		}
		usleep(test_rng_below(rng, 500));
	}
	printf("memslots: %" PRIu64 " deletes, %" PRIu64 " moves, %" PRIu64 " creates\n", deletes,
	       moves, creates);
	return NULL;
}

static void run(const struct vmmu_vm_config *base_cfg, const char *what, double budget)
{
	struct vmmu_vm_config cfg = *base_cfg;
	struct vcpu_arg args[NR_VCPUS];
	pthread_t vt[NR_VCPUS], nt, mt;
	struct test_rng nrng, mrng;
	struct vmmu_vm_stats st;
	uint64_t t0, leaves4k = 0, leaves2m = 0;

	printf("--- %s\n", what);
	__atomic_store_n(&stop, 0, __ATOMIC_RELAXED);
	cfg.hostmem = hm;
	cfg.max_pt_pages = 16384; /* sanitizers set a large pool up and tear it down slowly */
	CHECK(vmmu_vm_create(&cfg, &vm) == 0);
	for (unsigned i = 0; i < NR_SLOTS; i++) {
		__atomic_store_n(&slots[i].pos, 0, __ATOMIC_RELAXED);
		slots[i].present = true;
		CHECK(set_slot(i, 0, SLOT_BYTES) == 0);
	}
	for (unsigned i = 0; i < NR_VCPUS; i++) {
		args[i] = (struct vcpu_arg){ .id = i };
		test_rng_init(&args[i].rng, seed * 7 + i);
		CHECK(vmmu_vcpu_create(vm, i, &args[i].vcpu) == 0);
		CHECK(vmmu_hw_vcpu_create(args[i].vcpu, NULL, &args[i].hw) == 0);
	}
	test_rng_init(&nrng, seed ^ 0xabcdef);
	test_rng_init(&mrng, seed ^ 0x123457);

	alarm((unsigned)(budget * 20) + 60);
	t0 = (uint64_t)time(NULL);
	for (unsigned i = 0; i < NR_VCPUS; i++)
		CHECK(pthread_create(&vt[i], NULL, vcpu_thread, &args[i]) == 0);
	CHECK(pthread_create(&nt, NULL, notifier_thread, &nrng) == 0);
	CHECK(pthread_create(&mt, NULL, memslot_thread, &mrng) == 0);
	while ((double)((uint64_t)time(NULL) - t0) < budget)
		usleep(20000);
	__atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
	CHECK(pthread_join(mt, NULL) == 0);
	CHECK(pthread_join(nt, NULL) == 0);
	for (unsigned i = 0; i < NR_VCPUS; i++) {
		CHECK(pthread_join(vt[i], NULL) == 0);
		printf("vCPU %u: %" PRIu64 " accesses, %" PRIu64 " -EFAULT\n", i, args[i].ok,
		       args[i].efault);
	}
	alarm(0);

	/* At rest: exact translations where mapped, nothing outside slots. */
	for (unsigned i = 0; i < NR_SLOTS; i++) {
		for (unsigned pos = 0; pos < POSITIONS; pos++) {
			if (!slots[i].present || pos != slots[i].pos) {
				check_unmapped(i, pos);
				continue;
			}
			for (uint64_t off = 0; off < SLOT_BYTES; off += PG) {
				void *hva;
				int level;

				if (vmmu_debug_lookup(vm, 0, slot_gpa(i, pos) + off + 8, &hva,
						      &level, NULL))
					continue;
				CHECK(hva == slots[i].mem + off + 8);
				if (level == 1)
					leaves4k++;
				else if (!(off & ((2ull << 20) - 1)))
					leaves2m++;
			}
		}
	}
	CHECK(vmmu_vm_stats(vm, &st) == 0);
	printf("at rest: %" PRIu64 " 4K and %" PRIu64 " 2M leaves\n", leaves4k, leaves2m);

	for (unsigned i = 0; i < NR_VCPUS; i++) {
		CHECK(vmmu_hw_vcpu_destroy(args[i].hw) == 0);
		CHECK(vmmu_vcpu_destroy(args[i].vcpu) == 0);
	}
	CHECK(vmmu_zap_all(vm) == 0);
	vmmu_rcu_barrier();
	CHECK(vmmu_vm_stats(vm, &st) == 0);
	CHECK(st.pages_4k == 0 && st.pages_2m == 0 && st.pt_pages == 0 && st.roots == 0);
	CHECK(vmmu_pool_in_use(&vm->pool) == 0);
	CHECK(vmmu_vm_destroy(vm) == 0);
}

int main(void)
{
	double budget = (double)test_env_u64("VMMU_TEST_SECONDS", 2);
	struct sigaction sa;

	setvbuf(stdout, NULL, _IOLBF, 0);
	seed = test_seed();
	printf("budget %.0fs per mode\n", budget);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fatal_signal;
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGALRM, &sa, NULL);

	CHECK(vmmu_hostmem_create(&hm) == 0);
	for (unsigned i = 0; i < NR_SLOTS; i++)
		CHECK(vmmu_hostmem_alloc(
			      hm, i & 1 ? VMMU_BACKING_ANONYMOUS : VMMU_BACKING_ANONYMOUS_THP,
			      SLOT_BYTES, 0, (void **)&slots[i].mem) == 0);

	run(&(struct vmmu_vm_config){ 0 }, "slot zap: the slot's range", budget);
	run(&(struct vmmu_vm_config){ .slot_zap = VMMU_SLOT_ZAP_ALL_FAST },
	    "slot zap: all roots obsolete (fast)", budget);

	for (unsigned i = 0; i < NR_SLOTS; i++)
		CHECK(vmmu_hostmem_free(hm, slots[i].mem) == 0);
	CHECK(vmmu_hostmem_destroy(hm) == 0);
	printf("PASS\n");
	return 0;
}
