/* SPDX-License-Identifier: MIT */
/*
 * stress_migration - a pre-copy live migration, many times over, of a
 * guest that runs with its own page tables.
 *
 * For each seed: vCPUs run a workload with a hot set (most writes go to a
 * few pages, some anywhere) on THP-backed memory.  With guest paging on
 * (most seeds; 32-bit, PAE or 4-level, chosen by the seed) the guest's
 * page tables live in the last part of the same slot: every access is a
 * 2-D walk in the hardware model, which sets Accessed and Dirty bits in
 * the guest's tables, and the guest now and then clears those bits again
 * with ordinary writes to its own tables (as an OS scanning for reclaim
 * does, then INVLPG) and asks vmmu to translate addresses for writes
 * (vmmu_vcpu_translate, as an emulator does, which sets A/D bits too).
 * Every A/D update is a write to guest memory: it must reach the
 * destination like any other.  vCPUs also compute in guest mode for a
 * while now and then, so TLB flushes are acknowledged late.
 *
 * The migration thread enables dirty logging, copies everything, then
 * repeats "harvest, copy the dirty pages" until the dirty set is small (or
 * a round limit), stops the vCPUs, harvests and copies the rest: the
 * destination must equal the source byte for byte.  Each seed uses one
 * mode (dirty-bit / write-protect / write-protect without A/D x bitmap /
 * manual clear / initially-all-set / ring), chosen by the seed, so many
 * seeds cover all of them.
 *
 * VMMU_SEED=N runs that one seed; otherwise seeds are derived from the
 * time and printed.  VMMU_TEST_SECONDS bounds the whole run (default 3 s).
 * VMMU_STRESS_NO_TRANSLATE=1 leaves vmmu_vcpu_translate out (to tell the
 * hardware model's 2-D walk from the translate call when a page-table
 * page differs).
 */
#define _GNU_SOURCE
#include <vmmu/hostmem.h>
#include <vmmu/hw.h>
#include <vmmu/paging.h>
#include <vmmu/vmmu.h>

#include "mmu_internal.h"

#ifndef STRESS_DEFAULT_SECONDS
#define STRESS_DEFAULT_SECONDS 3.0
#endif
static uint64_t seed; /* this migration's: VMMU_SEED=seed replays it */
#define STRESS_SEED() seed
#include "../common/dirty_ring.h"
#include "../common/guest_pt.h"
#include "../common/stress_util.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#define NR_VCPUS 2
#define MEM_SIZE (8ull << 20)
#define NPAGES (MEM_SIZE / 4096)
#define WORDS (NPAGES / 64)
#define GPA_BASE (1ull << 30)
#define PT_PAGES 128 /* the guest's tables: the last 512 KiB */
#define DATA_PAGES (NPAGES - PT_PAGES) /* what the workload writes */
#define PT_GPA (GPA_BASE + DATA_PAGES * 4096ull)
#define DATA_GVA 0x10000000ull /* data at DATA_GVA, tables identity-mapped */
/* Data pages [WORK_PAGES, DATA_PAGES) are only translated (and their A/D
 * bits cleared), never written by the workload: with 4-level and PAE
 * paging their entries fill a page table of their own, so when
 * vmmu_vcpu_translate sets A/D bits there nothing else makes that table
 * page dirty. */
#define WORK_PAGES 1536
#define HOT_PAGES 32
#define SMALL_DIRTY 64
#define MAX_ROUNDS 40

enum ad_mode {
	AD_DBIT,
	AD_WRPROT,
	AD_WRPROT_NOAD,
	AD_NR
};
static const char *ad_names[] = { "dirty-bit", "wrprot", "wrprot-noAD" };
enum mode {
	M_BITMAP,
	M_MANUAL,
	M_INITIALLY_SET,
	M_RING,
	M_NR
};
static const char *mode_names[] = { "bitmap", "manual-clear", "initially-set", "ring" };
enum paging {
	P_OFF,
	P_32BIT,
	P_PAE,
	P_LONG4,
	P_NR
};
static const char *paging_names[] = { "paging-off", "32-bit", "PAE", "4-level" };

static struct vmmu_vm *vm;
static uint64_t *src, *dst;
static int stop;
static enum paging paging;
static struct gpt gpt;
static bool use_translate;

struct vcpu {
	unsigned id;
	struct vmmu_vcpu *vcpu;
	struct vmmu_hw_vcpu *hw;
	struct test_rng rng;
	uint32_t ring_next;
	uint64_t writes, cleared, translated, spins;
};
static struct vcpu vcpus[NR_VCPUS];

static uint64_t data_addr(uint64_t page)
{
	return (paging == P_OFF ? GPA_BASE : DATA_GVA) + page * 4096;
}

static struct vmmu_paging_state paging_state(void)
{
	struct vmmu_paging_state st = { .cr0 = VMMU_CR0_PE | VMMU_CR0_PG | VMMU_CR0_WP,
					.cr3 = gpt.cr3 };

	switch (paging) {
	case P_32BIT:
		st.cr4 = VMMU_CR4_PSE;
		break;
	case P_PAE:
		st.cr4 = VMMU_CR4_PAE;
		st.efer = VMMU_EFER_NXE;
		break;
	default:
		st.cr4 = VMMU_CR4_PAE;
		st.efer = VMMU_EFER_LME | VMMU_EFER_LMA | VMMU_EFER_NXE;
		break;
	}
	return st;
}

/* Build the guest's tables in guest memory (before logging starts, so
 * the first full copy has them): data pages at DATA_GVA, and the table
 * area mapped at its own address so the guest can edit its tables. */
static void build_guest_tables(void)
{
	static const enum gpt_mode gm[] = { GPT_32BIT, GPT_32BIT, GPT_PAE, GPT_LONG4 };

	gpt_init(&gpt, gm[paging], src, GPA_BASE, MEM_SIZE, PT_GPA);
	for (uint64_t p = 0; p < DATA_PAGES; p++)
		gpt_map(&gpt, DATA_GVA + p * 4096, GPA_BASE + p * 4096, 1, GPT_W);
	/* The identity map allocates tables too: map what it may use. */
	for (uint64_t p = 0; p < PT_PAGES; p++)
		gpt_map(&gpt, PT_GPA + p * 4096, PT_GPA + p * 4096, 1, GPT_W);
	STRESS_CHECK(gpt.next_gpa <= GPA_BASE + MEM_SIZE);
}

/* The guest clears the Accessed and Dirty bits of the entry that maps
 * @page at @level, with an ordinary write to its own table, then INVLPG. */
static int guest_clear_ad(struct vcpu *a, uint64_t page, int level)
{
	uint64_t gva = DATA_GVA + page * 4096;
	uint64_t egpa = gpt_entry_gpa(&gpt, gva, level);
	unsigned size = gpt.mode == GPT_32BIT ? 4 : 8;
	uint64_t e = 0;
	int r;

	if (!egpa)
		return 0;
	r = vmmu_hw_read(a->hw, egpa, &e, size);
	if (r)
		return r;
	if (!(e & (GPT_A | GPT_D)))
		return 0;
	e &= ~(GPT_A | GPT_D);
	r = vmmu_hw_write(a->hw, egpa, &e, size);
	if (r)
		return r;
	a->cleared++;
	return vmmu_hw_invlpg(a->hw, gva);
}

static void *vcpu_thread(void *opaque)
{
	struct vcpu *a = opaque;
	uint64_t n = 0;

	if (paging != P_OFF) {
		struct vmmu_paging_state st = paging_state();

		STRESS_CHECK(vmmu_hw_set_paging(a->hw, &st) == 0);
	}
	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		uint64_t r = test_rng_next(&a->rng);
		uint64_t page = (r & 0xf) ? (r >> 8) % HOT_PAGES : (r >> 8) % WORK_PAGES;
		uint64_t xpage = WORK_PAGES + (r >> 8) % (DATA_PAGES - WORK_PAGES);
		uint64_t v = ((uint64_t)a->id << 56) | ++n;
		int ret = vmmu_hw_write(a->hw, data_addr(page) + ((r >> 40) % 512) * 8, &v,
					sizeof(v));

		if (ret == -ENOBUFS) {
			while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE) &&
			       vmmu_hw_guest_enter(a->hw) == -ENOBUFS)
				sched_yield();
			continue;
		}
		STRESS_CHECK(ret == 0);
		a->writes++;
		if (paging != P_OFF && (r >> 52) % 16 == 0) {
			/* The guest's reclaim scan: A/D of a leaf, sometimes
			 * of the table above it. */
			STRESS_CHECK(guest_clear_ad(a, page, (r >> 56) % 4 ? 1 : 2) == 0);
		}
		if (paging != P_OFF && (r >> 32) % 2048 == 0) {
			/* Now and then the scan covers the translated pages,
			 * all at once: their entries are clear again (logged
			 * writes), and translations set them one by one. */
			for (uint64_t x = WORK_PAGES; x < DATA_PAGES; x++)
				STRESS_CHECK(guest_clear_ad(a, x, 1) == 0);
		}
		if (paging != P_OFF && use_translate && (r >> 52) % 16 == 1) {
			/* An emulated instruction: vmmu walks the guest's
			 * tables and sets their A/D bits. */
			struct vmmu_translation t;

			vmmu_hw_guest_exit(a->hw);
			ret = vmmu_vcpu_translate(a->vcpu, data_addr(xpage),
						  (r >> 60) & 1 ? VMMU_XLATE_WRITE : 0, &t);
			/* -ENOBUFS: a soft-full dirty ring refuses the A/D
			 * update it would have to log; -EAGAIN: lost races. */
			STRESS_CHECK(ret == 0 || ret == -EAGAIN || ret == -ENOBUFS);
			STRESS_CHECK(ret || (t.exception == VMMU_EXC_NONE &&
					     t.gpa == GPA_BASE + xpage * 4096));
			a->translated += !ret;
		}
		if ((r >> 44) % 256 == 0) {
			/* Computing in guest mode: late flush acks. */
			stress_spin_ns(20000 + (r >> 48) % 100000);
			a->spins++;
		}
		if (!(n % 64)) {
			/* A guest that also blocks: the CPU leaves guest mode
			 * before it does (vmmu.h's processor contract). */
			vmmu_hw_guest_exit(a->hw);
			usleep(1);
		}
	}
	vmmu_hw_guest_exit(a->hw);
	return NULL;
}

static void copy_page(uint64_t p)
{
	for (unsigned i = 0; i < 512; i++)
		dst[p * 512 + i] = __atomic_load_n(&src[p * 512 + i], __ATOMIC_RELAXED);
}

/* Harvest once and copy what was reported; returns the number of pages. */
static uint64_t harvest(enum mode m)
{
	static uint64_t bm[WORDS];
	uint64_t n = 0;

	if (m == M_RING) {
		static uint8_t seen[NPAGES];

		memset(seen, 0, sizeof(seen));
		for (unsigned v = 0; v < NR_VCPUS; v++)
			STRESS_CHECK(test_ring_collect(vcpus[v].vcpu, &vcpus[v].ring_next,
						       UINT32_MAX, seen, NPAGES) >= 0);
		STRESS_CHECK(vmmu_reset_dirty_rings(vm, NULL) == 0);
		for (uint64_t p = 0; p < NPAGES; p++)
			if (seen[p]) {
				copy_page(p);
				n++;
			}
		return n;
	}
	STRESS_CHECK(vmmu_get_dirty_log(vm, 0, bm) == 0);
	if (m != M_BITMAP)
		STRESS_CHECK(vmmu_clear_dirty_log(vm, 0, 0, NPAGES, bm) == 0);
	for (uint64_t p = 0; p < NPAGES; p++)
		if (bm[p / 64] >> (p % 64) & 1) {
			copy_page(p);
			n++;
		}
	return n;
}

static void migrate_once(void)
{
	struct test_rng rng;
	enum ad_mode ad;
	enum mode m;
	struct vmmu_vm_config cfg = { 0 };
	struct vmmu_hostmem *hm;
	struct vmmu_userspace_memory_region r;
	pthread_t th[NR_VCPUS];
	uint64_t rounds = 0, last = 0, min_rounds, writes = 0, cleared = 0, translated = 0,
		 spins = 0;
	struct vmmu_hw_stats hs;
	uint64_t guest_ad = 0;

	test_rng_init(&rng, seed);
	ad = (enum ad_mode)test_rng_below(&rng, AD_NR);
	m = (enum mode)test_rng_below(&rng, M_NR);
	paging = (enum paging)test_rng_below(&rng, P_NR + 2);
	if (paging >= P_NR)
		paging = P_LONG4; /* mostly paging on, mostly 4-level */
	min_rounds = 2 + test_rng_below(&rng, 6);
	use_translate = !test_env_u64("VMMU_STRESS_NO_TRANSLATE", 0);
	cfg.dirty_log_wrprot = ad != AD_DBIT;
	cfg.disable_ept_ad = ad == AD_WRPROT_NOAD;
	cfg.disable_fast_page_fault = test_rng_below(&rng, 2);
	cfg.max_pt_pages = 4096; /* a small pool: quick to set up and tear down under sanitizers */
	snprintf(stress_mode, sizeof(stress_mode), "%s/%s/%s", ad_names[ad], mode_names[m],
		 paging_names[paging]);

	STRESS_CHECK(vmmu_hostmem_create(&hm) == 0);
	STRESS_CHECK(vmmu_hostmem_alloc(hm, VMMU_BACKING_ANONYMOUS_THP, MEM_SIZE, 0,
					(void **)&src) == 0);
	dst = calloc(NPAGES, 4096);
	STRESS_CHECK(dst);
	if (paging != P_OFF)
		build_guest_tables();
	cfg.hostmem = hm;
	if (m == M_MANUAL)
		cfg.manual_dirty_log_protect = VMMU_DIRTY_LOG_MANUAL_PROTECT;
	if (m == M_INITIALLY_SET)
		cfg.manual_dirty_log_protect = VMMU_DIRTY_LOG_MANUAL_PROTECT |
					       VMMU_DIRTY_LOG_INITIALLY_SET;
	if (m == M_RING)
		cfg.dirty_ring_size = 2048;
	STRESS_CHECK(vmmu_vm_create(&cfg, &vm) == 0);
	r = (struct vmmu_userspace_memory_region){ .slot = 0,
						   .guest_phys_addr = GPA_BASE,
						   .memory_size = MEM_SIZE,
						   .userspace_addr = (uintptr_t)src };
	STRESS_CHECK(vmmu_set_user_memory_region(vm, &r) == 0);
	__atomic_store_n(&stop, 0, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < NR_VCPUS; i++) {
		vcpus[i] = (struct vcpu){ .id = i };
		test_rng_init(&vcpus[i].rng, test_rng_next(&rng));
		STRESS_CHECK(vmmu_vcpu_create(vm, i, &vcpus[i].vcpu) == 0);
		STRESS_CHECK(vmmu_hw_vcpu_create(vcpus[i].vcpu, NULL, &vcpus[i].hw) == 0);
		STRESS_CHECK(pthread_create(&th[i], NULL, vcpu_thread, &vcpus[i]) == 0);
	}
	usleep(2000); /* the guest runs (and maps huge pages) for a while */

	/* Pre-copy: logging on, everything once, then dirty pages only. */
	r.flags = VMMU_MEM_LOG_DIRTY_PAGES;
	STRESS_CHECK(vmmu_set_user_memory_region(vm, &r) == 0);
	for (uint64_t p = 0; p < NPAGES; p++)
		copy_page(p);
	do {
		/* Copying takes time: the guest runs logged meanwhile. */
		usleep((useconds_t)(500 + test_rng_below(&rng, 1500)));
		last = harvest(m);
		rounds++;
	} while ((last > SMALL_DIRTY || rounds < min_rounds) && rounds < MAX_ROUNDS);
	/* Stop and copy. */
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < NR_VCPUS; i++)
		pthread_join(th[i], NULL);
	last = harvest(m);
	if (memcmp(src, dst, MEM_SIZE)) {
		for (uint64_t p = 0; p < NPAGES; p++)
			if (memcmp(&src[p * 512], &dst[p * 512], 4096))
				fprintf(stderr, "page %" PRIu64 " differs%s\n", p,
					paging != P_OFF && p >= DATA_PAGES ?
						" (a page of the guest's page tables)" :
						"");
		STRESS_CHECK(!"destination differs from source");
	}
	for (unsigned i = 0; i < NR_VCPUS; i++) {
		STRESS_CHECK(vmmu_hw_stats(vcpus[i].hw, &hs) == 0);
		guest_ad += hs.guest_ad_updates;
		writes += vcpus[i].writes;
		cleared += vcpus[i].cleared;
		translated += vcpus[i].translated;
		spins += vcpus[i].spins;
	}
	printf("seed %-14" PRIu64 " %-30s pre-copy rounds %2" PRIu64
	       ", pages in the final copy %4" PRIu64 ", writes %7" PRIu64
	       ", guest A/D set by the walker %6" PRIu64 ", cleared by the guest %5" PRIu64
	       ", translations %5" PRIu64 ", guest spins %3" PRIu64 "\n",
	       seed, stress_mode, rounds, last, writes, guest_ad, cleared, translated, spins);
	for (unsigned i = 0; i < NR_VCPUS; i++) {
		STRESS_CHECK(vmmu_hw_vcpu_destroy(vcpus[i].hw) == 0);
		STRESS_CHECK(vmmu_vcpu_destroy(vcpus[i].vcpu) == 0);
	}
	STRESS_CHECK(vmmu_zap_all(vm) == 0);
	vmmu_rcu_barrier();
	STRESS_CHECK(vmmu_pool_in_use(&vm->pool) == 0);
	STRESS_CHECK(vmmu_vm_destroy(vm) == 0);
	STRESS_CHECK(vmmu_hostmem_free(hm, src) == 0);
	STRESS_CHECK(vmmu_hostmem_destroy(hm) == 0);
	free(dst);
}

int main(void)
{
	double budget = stress_budget();
	uint64_t t_end, base, n = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (getenv("VMMU_SEED") && *getenv("VMMU_SEED")) {
		seed = test_seed();
		migrate_once();
		printf("PASS\n");
		return 0;
	}
	base = test_seed();
	printf("seeds %" PRIu64 "+i (replay one with VMMU_SEED), budget %.1fs\n", base, budget);
	t_end = stress_now_ns() + (uint64_t)(budget * 1e9);
	do {
		seed = base + n++;
		migrate_once();
	} while (stress_now_ns() < t_end || n < 2);
	printf("PASS (%" PRIu64 " migrations)\n", n);
	return 0;
}
