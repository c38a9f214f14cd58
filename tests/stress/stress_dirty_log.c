/* SPDX-License-Identifier: MIT */
/*
 * stress_dirty_log - no lost dirty page, checked the way a live migration
 * would find out: by copying.
 *
 * vCPU threads write (vcpu, counter) words into random pages of a slot
 * backed by THP (huge mappings when the kernel gives them).  A migration
 * thread enables dirty logging, copies all of guest memory to a destination
 * buffer, then loops: harvest (get dirty log, get + clear in manual
 * protect, initially-all-set, or the dirty rings), copy the reported pages.
 * Every few rounds it stops the vCPUs, harvests once more, copies, and
 * requires the destination to equal the source byte for byte: a page
 * written but never reported would differ.  Meanwhile another thread fires
 * MMU-notifier invalidations over random ranges (zapping mappings under the
 * vCPUs), and now and then logging is switched off and on again (huge page
 * recovery, then eager splitting, then a full copy as a migration restart
 * does).
 *
 * The notifier thread also ages random ranges (clear_young), so aging
 * races with everything else.
 *
 * Every harvesting mode runs in write-protect and in dirty-bit (PML) mode,
 * each with the lockless fast page fault on and off; in write-protect mode
 * manual-clear and ring run without EPT A/D bits, so aging uses the
 * access-tracked encoding there.  Seeds are printed; VMMU_SEED=N replays
 * the choices, VMMU_TEST_SECONDS sets the whole budget (default 6 s, split
 * between the 16 modes).
 */
#define _GNU_SOURCE
#include <vmmu/hostmem.h>
#include <vmmu/hw.h>
#include <vmmu/vmmu.h>

#include "mmu_internal.h"
#include "../common/dirty_ring.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NR_VCPUS 3
#define MEM_SIZE (16ull << 20)
#define NPAGES (MEM_SIZE / 4096)
#define GPA_BASE (1ull << 30)
#define WORDS (NPAGES / 64)

#define CHECK(cond)                                                                        \
	do {                                                                               \
		if (!(cond)) {                                                             \
			fprintf(stderr, "%s:%d: CHECK failed: %s (VMMU_SEED=%" PRIu64 ", mode %s)\n", \
				__FILE__, __LINE__, #cond, base_seed, mode_name);          \
			abort();                                                           \
		}                                                                          \
	} while (0)

enum harvest { H_BITMAP, H_MANUAL, H_INITIALLY_SET, H_RING, H_NR };
static const char *harvest_names[] = { "bitmap", "manual-clear", "initially-set", "ring" };

static uint64_t seed, base_seed;
static char mode_name[64];

static struct vmmu_hostmem *hm;
static struct vmmu_vm *vm;
static uint64_t *src;  /* guest memory */
static uint64_t *dst;  /* the migration destination */
static enum harvest harvest;
static int stop, pause_req;
static pthread_barrier_t pause_bar;

struct vcpu_arg {
	unsigned id;
	struct vmmu_vcpu *vcpu;
	struct vmmu_hw_vcpu *hw;
	uint64_t rng;
	uint64_t writes, ring_full;
	uint32_t ring_next; /* the collector's position in this vCPU's ring */
};
static struct vcpu_arg vcpus[NR_VCPUS];

static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void maybe_pause(struct vcpu_arg *a)
{
	if (!__atomic_load_n(&pause_req, __ATOMIC_ACQUIRE))
		return;
	/* Leaving guest mode hands the PML over, as a VM exit does. */
	vmmu_hw_guest_exit(a->hw);
	pthread_barrier_wait(&pause_bar);
	pthread_barrier_wait(&pause_bar);
}

static void *vcpu_thread(void *opaque)
{
	struct vcpu_arg *a = opaque;
	uint64_t counter = 0;

	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		uint64_t r = rng_next(&a->rng);
		uint64_t page = r % NPAGES, word = (r >> 32) % 512;
		uint64_t gpa = GPA_BASE + page * 4096 + word * 8;
		uint64_t v = ((uint64_t)a->id << 56) | ++counter;
		int ret;

		maybe_pause(a);
		if ((r >> 60) == 0) {
			ret = vmmu_hw_read(a->hw, gpa, &v, sizeof(v));
		} else {
			ret = vmmu_hw_write(a->hw, gpa, &v, sizeof(v));
			a->writes += !ret;
		}
		if (ret == -ENOBUFS) {
			/* Dirty ring soft-full: wait for the collector. */
			a->ring_full++;
			while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
				maybe_pause(a);
				if (vmmu_hw_guest_enter(a->hw) != -ENOBUFS)
					break;
				sched_yield();
			}
			continue;
		}
		CHECK(ret == 0);
	}
	vmmu_hw_guest_exit(a->hw);
	return NULL;
}

/* Notifier invalidations over random host ranges: mappings vanish under
 * the vCPUs; host memory does not change. */
static void *notifier_thread(void *opaque)
{
	uint64_t rng = *(uint64_t *)opaque, n = 0;

	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		uint64_t r = rng_next(&rng);
		uint64_t start = (uint64_t)(uintptr_t)src + (r % NPAGES) * 4096;
		uint64_t len = (1 + (r >> 40) % 1024) * 4096;
		bool young;

		/* Age a range as well: W dropped by access tracking must
		 * never cost a dirty page. */
		CHECK(vmmu_notify_clear_young(vm, start, start + len, &young) == 0);
		CHECK(vmmu_notify_invalidate_range_start(vm, start, start + len) == 0);
		CHECK(vmmu_notify_invalidate_range_end(vm, start, start + len) == 0);
		n++;
		usleep(300);
	}
	*(uint64_t *)opaque = n;
	return NULL;
}

static void copy_page(uint64_t page)
{
	for (unsigned i = 0; i < 512; i++)
		dst[page * 512 + i] = __atomic_load_n(&src[page * 512 + i], __ATOMIC_RELAXED);
}

static void copy_all(void)
{
	for (uint64_t p = 0; p < NPAGES; p++)
		copy_page(p);
}

static int set_logging(bool on)
{
	struct vmmu_userspace_memory_region r = {
		.slot = 0,
		.flags = on ? VMMU_MEM_LOG_DIRTY_PAGES : 0,
		.guest_phys_addr = GPA_BASE,
		.memory_size = MEM_SIZE,
		.userspace_addr = (uint64_t)(uintptr_t)src,
	};
	return vmmu_set_user_memory_region(vm, &r);
}

/* One harvest: take the dirty pages, protect them again, copy them. */
static uint64_t harvest_and_copy(void)
{
	static uint64_t bm[WORDS];
	uint64_t copied = 0;

	if (harvest == H_RING) {
		static uint8_t seen[NPAGES];

		memset(seen, 0, sizeof(seen));
		for (unsigned v = 0; v < NR_VCPUS; v++)
			CHECK(test_ring_collect(vcpus[v].vcpu, &vcpus[v].ring_next, 0, seen,
						NPAGES) >= 0);
		CHECK(vmmu_reset_dirty_rings(vm, NULL) == 0);
		for (uint64_t p = 0; p < NPAGES; p++)
			if (seen[p]) {
				copy_page(p);
				copied++;
			}
		return copied;
	}
	CHECK(vmmu_get_dirty_log(vm, 0, bm) == 0);
	if (harvest != H_BITMAP) {
		/* Clear only what was fetched, in random chunks of 64 pages. */
		for (uint64_t w = 0; w < WORDS;) {
			uint64_t n = 1 + (rng_next(&seed) >> 40) % 8;

			if (n > WORDS - w)
				n = WORDS - w;
			CHECK(vmmu_clear_dirty_log(vm, 0, w * 64, (uint32_t)(n * 64), &bm[w]) == 0);
			w += n;
		}
	}
	for (uint64_t p = 0; p < NPAGES; p++)
		if (bm[p / 64] >> (p % 64) & 1) {
			copy_page(p);
			copied++;
		}
	return copied;
}

static void run_mode(bool wrprot, enum harvest h, bool fast, double seconds)
{
	struct vmmu_vm_config cfg = { 0 };
	pthread_t vt[NR_VCPUS], nt;
	uint64_t notif_arg = seed ^ 0x5151, t_end, rounds = 0, verified = 0, toggles = 0;
	uint64_t copied = 0, writes = 0, ring_full = 0, pf_fast = 0;
	struct vmmu_vm_stats vs0, vs;

	cfg.disable_fast_page_fault = !fast;
	cfg.disable_ept_ad = wrprot && (h == H_MANUAL || h == H_RING);
	snprintf(mode_name, sizeof(mode_name), "%s%s/%s/%s", wrprot ? "wrprot" : "dirty-bit",
		 cfg.disable_ept_ad ? "-noAD" : "", harvest_names[h], fast ? "fast" : "nofast");
	harvest = h;
	__atomic_store_n(&stop, 0, __ATOMIC_RELAXED);
	CHECK(vmmu_hostmem_create(&hm) == 0);
	CHECK(vmmu_hostmem_alloc(hm, VMMU_BACKING_ANONYMOUS_THP, MEM_SIZE, 0, (void **)&src) == 0);
	dst = calloc(NPAGES, 4096);
	CHECK(dst);
	cfg.hostmem = hm;
	cfg.dirty_log_wrprot = wrprot;
	if (h == H_MANUAL)
		cfg.manual_dirty_log_protect = VMMU_DIRTY_LOG_MANUAL_PROTECT;
	if (h == H_INITIALLY_SET)
		cfg.manual_dirty_log_protect =
			VMMU_DIRTY_LOG_MANUAL_PROTECT | VMMU_DIRTY_LOG_INITIALLY_SET;
	if (h == H_RING)
		cfg.dirty_ring_size = 4096;
	CHECK(vmmu_vm_create(&cfg, &vm) == 0);
	CHECK(set_logging(false) == 0);
	CHECK(pthread_barrier_init(&pause_bar, NULL, NR_VCPUS + 1) == 0);
	for (unsigned i = 0; i < NR_VCPUS; i++) {
		vcpus[i] = (struct vcpu_arg){ .id = i, .rng = seed * 0x9e3779b97f4a7c15ull + i + 1 };
		CHECK(vmmu_vcpu_create(vm, i, &vcpus[i].vcpu) == 0);
		CHECK(vmmu_hw_vcpu_create(vcpus[i].vcpu, NULL, &vcpus[i].hw) == 0);
	}
	/* Fault everything in first, so that huge mappings exist to split. */
	for (uint64_t p = 0; p < NPAGES; p++) {
		uint64_t v = 0;

		CHECK(vmmu_hw_write(vcpus[0].hw, GPA_BASE + p * 4096, &v, sizeof(v)) == 0);
	}
	vmmu_hw_guest_exit(vcpus[0].hw);
	CHECK(vmmu_vm_stats(vm, &vs0) == 0);

	for (unsigned i = 0; i < NR_VCPUS; i++)
		CHECK(pthread_create(&vt[i], NULL, vcpu_thread, &vcpus[i]) == 0);
	CHECK(pthread_create(&nt, NULL, notifier_thread, &notif_arg) == 0);

	CHECK(set_logging(true) == 0);
	copy_all();
	t_end = now_ns() + (uint64_t)(seconds * 1e9);
	while (now_ns() < t_end) {
		uint64_t r = rng_next(&seed);

		copied += harvest_and_copy();
		rounds++;
		if (r % 4 == 0) {
			/* Stop the world: source and destination must agree. */
			__atomic_store_n(&pause_req, 1, __ATOMIC_RELEASE);
			pthread_barrier_wait(&pause_bar);
			copied += harvest_and_copy();
			for (uint64_t p = 0; p < NPAGES; p++) {
				if (memcmp(&src[p * 512], &dst[p * 512], 4096)) {
					fprintf(stderr, "page %" PRIu64 " changed but was never "
						"reported (round %" PRIu64 ")\n", p, rounds);
					CHECK(!"lost dirty page");
				}
			}
			verified++;
			__atomic_store_n(&pause_req, 0, __ATOMIC_RELEASE);
			pthread_barrier_wait(&pause_bar);
		} else if (r % 16 == 1) {
			/* Migration restart: logging off (huge pages come
			 * back) and on (split again), then a full copy. */
			CHECK(set_logging(false) == 0);
			CHECK(set_logging(true) == 0);
			copy_all();
			toggles++;
		}
		usleep(200);
	}
	__atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < NR_VCPUS; i++) {
		pthread_join(vt[i], NULL);
		struct vmmu_vcpu_stats st;

		CHECK(vmmu_vcpu_stats(vcpus[i].vcpu, &st) == 0);
		pf_fast += st.pf_fast;
		writes += vcpus[i].writes;
		ring_full += vcpus[i].ring_full;
	}
	pthread_join(nt, NULL);
	/* The final stop-and-copy. */
	copied += harvest_and_copy();
	CHECK(memcmp(src, dst, MEM_SIZE) == 0);
	verified++;

	/* No writable huge leaf while logged; split pieces map the slot. */
	for (uint64_t p = 0; p < NPAGES; p++) {
		void *hva;
		int level;
		uint64_t spte;

		if (vmmu_debug_lookup(vm, 0, GPA_BASE + p * 4096, &hva, &level, &spte))
			continue;
		CHECK(hva == (char *)src + p * 4096);
		CHECK(level == 1 || !(spte & EPT_WRITABLE));
	}
	CHECK(vmmu_vm_stats(vm, &vs) == 0);
	printf("%-32s rounds %5" PRIu64 ", verified %3" PRIu64 ", restarts %2" PRIu64
	       ", writes %8" PRIu64 ", pages copied %7" PRIu64 ", ring-full exits %4" PRIu64
	       ", notifier zaps %5" PRIu64 ", 2M leaves before logging %" PRIu64
	       ", fast faults %6" PRIu64 "\n",
	       mode_name, rounds, verified, toggles, writes, copied, ring_full, notif_arg,
	       vs0.pages_2m, pf_fast);
	CHECK(writes > 0 && verified >= 1);
	CHECK(fast || pf_fast == 0);

	for (unsigned i = 0; i < NR_VCPUS; i++) {
		CHECK(vmmu_hw_vcpu_destroy(vcpus[i].hw) == 0);
		CHECK(vmmu_vcpu_destroy(vcpus[i].vcpu) == 0);
	}
	CHECK(vmmu_zap_all(vm) == 0);
	vmmu_rcu_barrier();
	CHECK(vmmu_pool_in_use(&vm->pool) == 0);
	CHECK(vmmu_vm_destroy(vm) == 0);
	CHECK(vmmu_hostmem_free(hm, src) == 0);
	CHECK(vmmu_hostmem_destroy(hm) == 0);
	pthread_barrier_destroy(&pause_bar);
	free(dst);
}

int main(void)
{
	const char *env = getenv("VMMU_SEED");
	const char *secs = getenv("VMMU_TEST_SECONDS");
	double budget = secs ? atof(secs) : 6.0;
	uint64_t s0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)getpid() << 16;
	if (!seed)
		seed = 1;
	s0 = base_seed = seed;
	printf("seed=%" PRIu64 " (replay with VMMU_SEED=%" PRIu64 "), budget %.1fs\n", s0, s0,
	       budget);
	for (int wp = 0; wp < 2; wp++)
		for (int h = 0; h < H_NR; h++)
			for (int fast = 1; fast >= 0; fast--) {
				seed = s0 * 31 + (uint64_t)(wp * H_NR + h) + 1;
				run_mode(wp, (enum harvest)h, fast, budget / (4 * H_NR));
			}
	printf("PASS\n");
	return 0;
}
