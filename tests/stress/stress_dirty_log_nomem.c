/* SPDX-License-Identifier: MIT */
/*
 * stress_dirty_log_nomem - page-table allocation failure at every
 * allocation of the dirty-logging paths, one after the other.
 *
 * For each path, a first run counts the page-table pages the operation
 * takes from the pool (k); then for each n = 0, 1, ..., k + 1 the pool
 * hands out n more pages and refuses the rest (vmmu_pool_fail_after).
 * The paths:
 *   enable        logging switched on: eager split + protect of huge
 *                 leaves (dirty-bit and write-protect modes)
 *   clear         vmmu_clear_dirty_log with initially-all-set: the chunk's
 *                 huge leaves are split before they are protected
 *   fault         logging without eager split: the vCPUs' write faults
 *                 split the huge leaves they hit
 *   restart       logging off (huge pages recovered) and on again
 * After each, with allocations working again, the promises must hold:
 * the call returned 0 or a documented -ENOMEM (and then changed nothing);
 * every translation is exact; a write made after logging is on is in the
 * next harvest (all pages are written, every page must be reported, then
 * a second round with only some pages); no writable huge leaf maps the
 * logged slot once its pages were harvested; after teardown the pool is
 * empty.
 *
 * Deterministic apart from the vCPU thread being the test's own;
 * VMMU_SEED only picks which pages the second round writes.
 */
#define _GNU_SOURCE
#include <vmmu/hostmem.h>
#include <vmmu/hw.h>
#include <vmmu/vmmu.h>

#include "mmu_internal.h"

#include "../common/stress_util.h"

#include <errno.h>
#include <string.h>

#define MEM_SIZE (4ull << 20) /* two 2 MiB leaves when THP gives them */
#define NPAGES (MEM_SIZE / 4096)
#define WORDS (NPAGES / 64)
#define GPA_BASE (1ull << 30)
#define MAX_N 256

enum path {
	P_ENABLE,
	P_CLEAR,
	P_FAULT,
	P_RESTART,
	P_NR
};
static const char *path_names[] = { "enable", "clear", "fault", "restart" };

struct world {
	struct vmmu_hostmem *hm;
	struct vmmu_vm *vm;
	struct vmmu_vcpu *vcpu;
	struct vmmu_hw_vcpu *hw;
	uint8_t *mem;
	bool initially_set;
};

static int set_slot(struct world *w, bool logged)
{
	struct vmmu_userspace_memory_region r = {
		.slot = 0,
		.flags = logged ? VMMU_MEM_LOG_DIRTY_PAGES : 0,
		.guest_phys_addr = GPA_BASE,
		.memory_size = MEM_SIZE,
		.userspace_addr = (uintptr_t)w->mem,
	};
	return vmmu_set_user_memory_region(w->vm, &r);
}

/* Write word 0 of every page (or of those in @which) in one stay in guest
 * mode; -ENOMEM (injected) is retried once allocations work again. */
static void write_pages(struct world *w, const uint8_t *which, uint64_t v)
{
	for (uint64_t p = 0; p < NPAGES; p++) {
		int r;

		if (which && !which[p])
			continue;
		while ((r = vmmu_hw_write(w->hw, GPA_BASE + p * 4096, &v, sizeof(v))) == -ENOMEM)
			vmmu_pool_fail_after(&w->vm->pool, -1);
		STRESS_CHECK(r == 0);
	}
	vmmu_hw_guest_exit(w->hw);
}

/* Harvest; in manual mode clear what was fetched. */
static void harvest(struct world *w, uint64_t *bm)
{
	STRESS_CHECK(vmmu_get_dirty_log(w->vm, 0, bm) == 0);
	if (w->initially_set || w->vm->manual_protect)
		STRESS_CHECK(vmmu_clear_dirty_log(w->vm, 0, 0, NPAGES, bm) == 0);
}

static void world_init(struct world *w, bool dbit, bool manual, bool initially_set, bool eager)
{
	struct vmmu_vm_config cfg = { 0 };

	memset(w, 0, sizeof(*w));
	w->initially_set = initially_set;
	cfg.dirty_log_wrprot = !dbit;
	cfg.disable_eager_split = !eager;
	cfg.max_pt_pages = 4096; /* a small pool: quick to set up under sanitizers */
	/* Without eager split the faults split: keep the vCPU's page cache
	 * at its minimum so that each of them goes to the pool. */
	cfg.vcpu_cache_capacity = eager ? 0 : 4;
	if (manual)
		cfg.manual_dirty_log_protect = VMMU_DIRTY_LOG_MANUAL_PROTECT;
	if (initially_set)
		cfg.manual_dirty_log_protect |= VMMU_DIRTY_LOG_INITIALLY_SET;
	STRESS_CHECK(vmmu_hostmem_create(&w->hm) == 0);
	STRESS_CHECK(vmmu_hostmem_alloc(w->hm, VMMU_BACKING_ANONYMOUS_THP, MEM_SIZE, 0,
					(void **)&w->mem) == 0);
	cfg.hostmem = w->hm;
	STRESS_CHECK(vmmu_vm_create(&cfg, &w->vm) == 0);
	STRESS_CHECK(set_slot(w, false) == 0);
	STRESS_CHECK(vmmu_vcpu_create(w->vm, 0, &w->vcpu) == 0);
	STRESS_CHECK(vmmu_hw_vcpu_create(w->vcpu, NULL, &w->hw) == 0);
	write_pages(w, NULL, 1); /* huge leaves where the host has them */
}

static void world_fini(struct world *w)
{
	STRESS_CHECK(vmmu_hw_vcpu_destroy(w->hw) == 0);
	STRESS_CHECK(vmmu_vcpu_destroy(w->vcpu) == 0);
	STRESS_CHECK(vmmu_zap_all(w->vm) == 0);
	vmmu_rcu_barrier();
	STRESS_CHECK(vmmu_pool_in_use(&w->vm->pool) == 0);
	STRESS_CHECK(vmmu_vm_destroy(w->vm) == 0);
	STRESS_CHECK(vmmu_hostmem_free(w->hm, w->mem) == 0);
	STRESS_CHECK(vmmu_hostmem_destroy(w->hm) == 0);
}

/* Translations exact; after a harvest no writable huge leaf is left. */
static void check_leaves(struct world *w, bool harvested)
{
	for (uint64_t p = 0; p < NPAGES; p++) {
		void *hva;
		int level;
		uint64_t spte;

		if (vmmu_debug_lookup(w->vm, 0, GPA_BASE + p * 4096, &hva, &level, &spte))
			continue;
		STRESS_CHECK(hva == w->mem + p * 4096);
		if (harvested && level > 1 && (spte & EPT_WRITABLE)) {
			fprintf(stderr, "page %" PRIu64 ": writable level-%d leaf while logged\n",
				p, level);
			STRESS_CHECK(!"writable huge leaf while logged");
		}
	}
}

/* Logging is on: every page written from now on is in the next harvest. */
static void check_logging(struct world *w, struct test_rng *rng, uint64_t round)
{
	static uint64_t bm[WORDS];
	static uint8_t which[NPAGES];

	/* Start from a clean log. */
	harvest(w, bm);
	check_leaves(w, true);
	write_pages(w, NULL, round << 8 | 2);
	harvest(w, bm);
	for (uint64_t p = 0; p < NPAGES; p++)
		if (!(bm[p / 64] >> (p % 64) & 1)) {
			fprintf(stderr,
				"page %" PRIu64 " written after logging started, not reported\n",
				p);
			STRESS_CHECK(!"lost dirty page");
		}
	for (uint64_t p = 0; p < NPAGES; p++)
		which[p] = test_rng_below(rng, 4) == 0;
	write_pages(w, which, round << 8 | 3);
	harvest(w, bm);
	for (uint64_t p = 0; p < NPAGES; p++)
		if (which[p] && !(bm[p / 64] >> (p % 64) & 1)) {
			fprintf(stderr, "page %" PRIu64 " written, not reported\n", p);
			STRESS_CHECK(!"lost dirty page");
		}
	check_leaves(w, true);
}

/* One run of @path with allocations failing after @n pages (-1: none).
 * Returns the number of pages the operation took from the pool. */
static uint64_t run_one(enum path path, bool dbit, int64_t n, struct test_rng *rng)
{
	static uint64_t bm[WORDS];
	struct world w;
	uint64_t refused, used;
	int r;

	world_init(&w, dbit, path == P_CLEAR, path == P_CLEAR, path != P_FAULT);
	if (path != P_ENABLE)
		STRESS_CHECK(set_slot(&w, true) == 0);
	if (path == P_CLEAR) {
		/* Everything is dirty and nothing protected until cleared. */
		STRESS_CHECK(vmmu_get_dirty_log(w.vm, 0, bm) == 0);
	}
	if (path == P_RESTART)
		STRESS_CHECK(set_slot(&w, false) == 0); /* huge pages recovered */
	refused = w.vm->pool.failures;
	used = vmmu_pool_in_use(&w.vm->pool);
	vmmu_pool_fail_after(&w.vm->pool, n);
	switch (path) {
	case P_ENABLE:
	case P_RESTART:
		r = set_slot(&w, true);
		STRESS_CHECK(r == 0 || r == -ENOMEM);
		vmmu_pool_fail_after(&w.vm->pool, -1);
		if (r) /* nothing changed: logging is still off */
			STRESS_CHECK(set_slot(&w, true) == 0);
		break;
	case P_CLEAR:
		r = vmmu_clear_dirty_log(w.vm, 0, 0, NPAGES, bm);
		STRESS_CHECK(r == 0 || r == -ENOMEM);
		vmmu_pool_fail_after(&w.vm->pool, -1);
		if (r)
			STRESS_CHECK(vmmu_clear_dirty_log(w.vm, 0, 0, NPAGES, bm) == 0);
		break;
	case P_FAULT:
		/* The write faults split; a refused one retries (write_pages). */
		write_pages(&w, NULL, 7);
		vmmu_pool_fail_after(&w.vm->pool, -1);
		break;
	default:
		break;
	}
	refused = w.vm->pool.failures - refused;
	used = vmmu_pool_in_use(&w.vm->pool) - used;
	STRESS_CHECK(n >= 0 || !refused);
	check_leaves(&w, false);
	check_logging(&w, rng, (uint64_t)n + 2);
	world_fini(&w);
	return used;
}

int main(void)
{
	struct test_rng rng;
	uint64_t runs = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	test_rng_init(&rng, test_seed());
	for (int path = 0; path < P_NR; path++)
		for (int dbit = 0; dbit < 2; dbit++) {
			uint64_t k;

			snprintf(stress_mode, sizeof(stress_mode), "%s/%s", path_names[path],
				 dbit ? "dirty-bit" : "wrprot");
			/* How many pages the path keeps when nothing fails;
			 * then fail at each of them in turn, and one more. */
			k = run_one((enum path)path, dbit, -1, &rng);
			STRESS_CHECK(k < MAX_N);
			for (int64_t n = 0; n <= (int64_t)k + 1; n++)
				run_one((enum path)path, dbit, n, &rng);
			runs += k + 3;
			printf("%-20s keeps %2" PRIu64 " pages; failed at each in turn\n",
			       stress_mode, k);
		}
	printf("PASS (%" PRIu64 " runs)\n", runs);
	return 0;
}
