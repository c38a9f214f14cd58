/* SPDX-License-Identifier: MIT */
/*
 * stress_dirty_log - no lost dirty page, checked the way a live migration
 * finds out: by copying, and write by write.
 *
 * vCPU threads write (vcpu << 56 | counter) words into pages of a slot
 * backed by THP, most of them into a hot set, each vCPU into its own words
 * (so every word only grows).  Now and then a vCPU computes in guest mode
 * for a while without touching memory: it polls no kick, so TLB flushes
 * that wait for it are acknowledged late and zaps keep their entries
 * frozen for long stretches.
 *
 * Harvester threads (several at once) take the dirty pages (get dirty log;
 * get + clear in random chunks with manual protect; initially-all-set; or
 * the dirty rings), often right after aging the whole slot
 * (clear_young / clear_flush_young / test_young), and copy the reported
 * pages to a destination buffer.  The taking is serialized by the test,
 * the copies run in parallel (each word is copied with a compare-and-
 * exchange that keeps the larger value, so a slow copy never undoes a
 * newer one).  Zapper threads zap random gfn ranges in bursts, a notifier
 * thread runs invalidations and aging over random host ranges, and the
 * harvesters also restart logging (flag off and on, with page-table
 * allocation failures injected into the enabling call, then a full copy as
 * a migration restart does) and move the logged slot to another gpa and
 * back while the vCPUs run.
 *
 * The checks:
 *  - write by write: when a write's call has returned before harvest k
 *    started (k + 1 with rings in dirty-bit mode, where the page-modification
 *    log reaches the ring only at the reset), and so had every call of the
 *    other vCPUs that was in progress, and had faulted, when it returned,
 *    the destination holds that word's value, or a newer one, once
 *    harvests 1..k are done.
 *    Why the other vCPUs' calls: a fault logs its page right after its
 *    writable leaf becomes visible (before, a harvest could take the bit,
 *    find nothing writable to protect, and the leaf would then stay
 *    writable with its bit gone: later writes lost for good), so another
 *    vCPU can write through that leaf, and return, before the faulting
 *    vCPU has logged the page.  A harvest that starts in between misses the
 *    page; the first one that starts after the fault has returned reports
 *    it.  Nothing is lost (a migration's final pass runs with the vCPUs
 *    stopped, hence after every fault), and KVM's lockless fault logs after
 *    its compare-and-exchange in the same way;
 *  - every few rounds the vCPUs stop, one more harvest runs, and the
 *    destination must equal the source byte for byte; the same at the end;
 *  - every translation reaches the right host page, no writable huge leaf
 *    maps a logged slot (except with initially-all-set), and after
 *    teardown the page-table pool is empty.
 *
 * Modes: dirty-bit (EPT A/D + PML), write-protect with A/D, write-protect
 * without A/D (aging by access tracking), each with the four harvesting
 * styles; the lockless fast fault on or off by the seed.  VMMU_SEED=N
 * replays the choices (thread timing still varies), VMMU_TEST_SECONDS sets
 * the budget (default 4 s, shared by the 12 modes, setup included; in
 * sanitizer builds 3 or 4 modes chosen by the seed, one per A/D mode at
 * least, since a VM costs much more to set up there), VMMU_STRESS_MODE
 * runs one mode (e.g. "wrprot-noAD/bitmap").
 */
#define _GNU_SOURCE
#include <vmmu/hostmem.h>
#include <vmmu/hw.h>
#include <vmmu/vmmu.h>

#include "mmu_internal.h"

#ifndef STRESS_DEFAULT_SECONDS
#define STRESS_DEFAULT_SECONDS 4.0
#endif
#include "../common/dirty_ring.h"
#include "../common/stress_util.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#define NR_VCPUS 3
#define NR_HARVESTERS 2
#define NR_ZAPPERS 2
#define MEM_SIZE (8ull << 20)
#define NPAGES (MEM_SIZE / 4096)
#define WORDS (NPAGES / 64)
#define HOT_PAGES 256
#define GPA_A (1ull << 30)
#define GPA_B (1ull << 31)
#define PEND_SIZE (1u << 14) /* writes awaiting their check, per vCPU */
#define CALL_RING (1u << 16) /* ends of calls, per vCPU (see struct pend) */
#define DONE_RING 1024

enum ad_mode {
	AD_DBIT,
	AD_WRPROT,
	AD_WRPROT_NOAD,
	AD_NR
};
static const char *ad_names[] = { "dirty-bit", "wrprot", "wrprot-noAD" };
enum harvest {
	H_BITMAP,
	H_MANUAL,
	H_INITIALLY_SET,
	H_RING,
	H_NR
};
static const char *harvest_names[] = { "bitmap", "manual-clear", "initially-set", "ring" };

static struct vmmu_hostmem *hm;
static struct vmmu_vm *vm;
static uint64_t *src; /* guest memory */
static uint64_t *dst; /* the migration destination */
static enum harvest harvest_mode;
static unsigned due_lag; /* 1 with rings in dirty-bit mode */
static int stop, stop_helpers, pause_req;
static pthread_barrier_t pause_bar;

/* Harvest bookkeeping: takes are numbered 1, 2, ... in the order they
 * happen (under take_lock); done_prefix is the largest k such that every
 * harvest 1..k has finished copying. */
static pthread_mutex_t take_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t started, done_prefix;
static uint8_t done_ring[DONE_RING];

/* Where the slot is now; move_gen is odd while a move is in progress, and
 * inject_gen while page-table allocations fail on purpose. */
static uint64_t gpa_base, move_gen, inject_gen;

/*
 * VMMU_STRESS_SKIP=move,age,... turns parts off, to tell which one a
 * failure needs: move (slot moves), restart (logging off/on), inject
 * (allocation failures), age (aging right before harvests), notify (the
 * notifier thread), zap (the zapper threads), spin (vCPUs computing in
 * guest mode).
 */
enum {
	SKIP_MOVE = 1 << 0,
	SKIP_RESTART = 1 << 1,
	SKIP_INJECT = 1 << 2,
	SKIP_AGE = 1 << 3,
	SKIP_NOTIFY = 1 << 4,
	SKIP_ZAP = 1 << 5,
	SKIP_SPIN = 1 << 6,
};
static const char *skip_names[] = { "move", "restart", "inject", "age", "notify", "zap", "spin" };
static unsigned skip;

static void parse_skip(void)
{
	const char *s = getenv("VMMU_STRESS_SKIP");

	for (unsigned i = 0; s && i < sizeof(skip_names) / sizeof(skip_names[0]); i++) {
		const char *p = strstr(s, skip_names[i]);

		if (p && (p == s || p[-1] == ',')) {
			skip |= 1u << i;
			printf("skipping %s\n", skip_names[i]);
		}
	}
}

/*
 * A write awaiting its check.  busy[b] is 1 + the number of the call vCPU b
 * was in, and had faulted in, when the write returned (0 if none): the
 * write is due only once the first harvest that started after that call
 * ended is done, since a fault in that call may have made the page
 * writable and not logged it yet (see the top of the file).
 */
struct pend {
	uint32_t idx; /* word index in guest memory */
	uint32_t due; /* harvest after which the destination has it */
	uint64_t v;
	uint32_t busy[NR_VCPUS];
};

struct vcpu_arg {
	unsigned id;
	struct vmmu_vcpu *vcpu;
	struct vmmu_hw_vcpu *hw;
	struct test_rng rng;
	uint64_t writes, ring_full, spins, checked, unchecked, efault_moves, enomem;
	uint32_t ring_next; /* the collector's position (under take_lock) */
	struct pend *pend;
	uint32_t ph, pt; /* head (oldest), tail */
	uint64_t deferred; /* writes whose due harvest another vCPU's call moved */
	/* Odd while in vmmu_hw_read/write: 2n + 1 during call n. */
	uint64_t call_seq;
	uint64_t call_faults; /* the model's EPT violations when it began */
	/* call_ends[n % CALL_RING] = (n + 1) << 32 | the harvest count read
	 * just after call n returned. */
	uint64_t *call_ends;
};
static struct vcpu_arg vcpus[NR_VCPUS];

struct stats {
	uint64_t harvests, aged, restarts, moves, injected, enomem, verified, copied, zaps,
		notifies;
};
static struct stats st;

static void stat_add(uint64_t *c, uint64_t n)
{
	__atomic_fetch_add(c, n, __ATOMIC_RELAXED);
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

static uint64_t ept_violations(struct vcpu_arg *a)
{
	struct vmmu_hw_stats hs;

	STRESS_CHECK(vmmu_hw_stats(a->hw, &hs) == 0);
	return hs.ept_violations;
}

/*
 * One vmmu_hw_read/write, bracketed so that other vCPUs can tell which call
 * it was, whether it has faulted yet, and when it ended (struct pend).
 * Sequentially consistent, as the harvest count: a harvest that starts
 * after the count read here also sees everything the call logged.
 */
static int vcpu_access(struct vcpu_arg *a, bool is_read, uint64_t gpa, uint64_t *v)
{
	uint64_t seq = a->call_seq + 1, n = seq >> 1, s;
	int ret;

	__atomic_store_n(&a->call_faults, ept_violations(a), __ATOMIC_RELAXED);
	__atomic_store_n(&a->call_seq, seq, __ATOMIC_SEQ_CST);
	if (is_read)
		ret = vmmu_hw_read(a->hw, gpa, v, sizeof(*v));
	else
		ret = vmmu_hw_write(a->hw, gpa, v, sizeof(*v));
	__atomic_store_n(&a->call_seq, seq + 1, __ATOMIC_SEQ_CST);
	s = __atomic_load_n(&started, __ATOMIC_SEQ_CST);
	__atomic_store_n(&a->call_ends[n % CALL_RING], (n + 1) << 32 | s, __ATOMIC_RELEASE);
	return ret;
}

/*
 * The harvest after which @p is due, or 0 while a call of another vCPU it
 * waits for has not ended yet.  A record overwritten by a later call gives
 * a later harvest: a weaker check, never a false alarm.
 */
static uint64_t pend_due(const struct pend *p, bool *moved)
{
	uint64_t due = p->due;

	for (unsigned b = 0; b < NR_VCPUS; b++) {
		uint64_t n, e;

		if (!p->busy[b])
			continue;
		n = p->busy[b] - 1;
		e = __atomic_load_n(&vcpus[b].call_ends[n % CALL_RING], __ATOMIC_ACQUIRE);
		if ((e >> 32) < n + 1)
			return 0; /* still in that call */
		if ((e & 0xffffffffu) + 1 + due_lag > due) {
			due = (e & 0xffffffffu) + 1 + due_lag;
			*moved = true;
		}
	}
	return due;
}

/* Check the writes whose harvest is done. */
static void check_pending(struct vcpu_arg *a, uint64_t prefix)
{
	while (a->ph != a->pt) {
		struct pend *p = &a->pend[a->ph % PEND_SIZE];
		bool moved = false;
		uint64_t d, due = pend_due(p, &moved);

		if (!due || due > prefix)
			return;
		a->deferred += moved;
		d = __atomic_load_n(&dst[p->idx], __ATOMIC_RELAXED);
		if (d < p->v) {
			fprintf(stderr,
				"vCPU %u: the write of %#" PRIx64 " to page %u word %u returned "
				"before harvest %" PRIu64 " started (as had the other vCPUs' calls "
				"in progress then), yet after harvests 1..%" PRIu64
				" the destination holds %#" PRIx64 "\n",
				a->id, p->v, p->idx / 512, p->idx % 512, due - due_lag, prefix, d);
			STRESS_CHECK(!"a write was lost");
		}
		a->ph++;
		a->checked++;
	}
}

static void *vcpu_thread(void *opaque)
{
	struct vcpu_arg *a = opaque;
	uint64_t counter = 0, last_page = a->id;

	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		uint64_t r = test_rng_next(&a->rng);
		/* Half the time the page written last (a page stays in the
		 * TLB, then is left alone), else mostly the hot set. */
		uint64_t page = (r & 1) ? last_page :
				(r & 6) ? (r >> 3) % HOT_PAGES :
					  (r >> 3) % NPAGES;
		uint64_t word = ((r >> 32) % (512 / NR_VCPUS)) * NR_VCPUS + a->id;
		uint64_t mg = __atomic_load_n(&move_gen, __ATOMIC_ACQUIRE);
		uint64_t ig = __atomic_load_n(&inject_gen, __ATOMIC_ACQUIRE);
		uint64_t gpa =
			__atomic_load_n(&gpa_base, __ATOMIC_ACQUIRE) + page * 4096 + word * 8;
		uint64_t v = ((uint64_t)a->id << 56) | (counter + 1);
		bool is_read = (r >> 60) == 0;
		int ret;

		maybe_pause(a);
		ret = vcpu_access(a, is_read, gpa, &v);
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
		if (ret == -EFAULT &&
		    ((mg & 1) || mg != __atomic_load_n(&move_gen, __ATOMIC_ACQUIRE))) {
			a->efault_moves++; /* the slot moved under us */
			continue;
		}
		if (ret == -ENOMEM &&
		    ((ig & 1) || ig != __atomic_load_n(&inject_gen, __ATOMIC_ACQUIRE))) {
			a->enomem++; /* injected allocation failure */
			vmmu_hw_guest_exit(a->hw);
			continue;
		}
		STRESS_CHECK(ret == 0);
		if (!is_read) {
			/*
			 * The write's call has returned: the next harvest to
			 * start after the calls of other vCPUs that are in
			 * progress now, and have faulted already, have ended
			 * must bring it to the destination.  (A fault that
			 * made the page writable before our walk counted its
			 * EPT violation before: we see it.  A call that has
			 * not faulted yet can only install after our write.)
			 * Those calls first, then the harvest count.
			 */
			uint32_t busy[NR_VCPUS] = { 0 };
			uint64_t s;

			for (unsigned b = 0; b < NR_VCPUS; b++) {
				uint64_t q = __atomic_load_n(&vcpus[b].call_seq, __ATOMIC_SEQ_CST);

				if (b == a->id || !(q & 1))
					continue;
				if (__atomic_load_n(&vcpus[b].call_faults, __ATOMIC_RELAXED) !=
				    ept_violations(&vcpus[b]))
					busy[b] = (uint32_t)(q >> 1) + 1;
			}
			s = __atomic_load_n(&started, __ATOMIC_SEQ_CST);
			counter++;
			a->writes++;
			last_page = page;
			if (a->pt - a->ph < PEND_SIZE) {
				struct pend *p = &a->pend[a->pt % PEND_SIZE];

				*p = (struct pend){
					.idx = (uint32_t)(page * 512 + word),
					.due = (uint32_t)(s + 1 + due_lag),
					.v = v,
				};
				memcpy(p->busy, busy, sizeof(busy));
				a->pt++;
			} else {
				a->unchecked++;
			}
		}
		if ((r >> 40) % 128 == 0 && !(skip & SKIP_SPIN)) {
			/* A guest that computes for a while, in guest mode:
			 * flushes that need us wait. */
			stress_spin_ns(20000 + (r >> 48) % 200000);
			a->spins++;
		}
		if ((a->writes & 63) == 0)
			check_pending(a, __atomic_load_n(&done_prefix, __ATOMIC_ACQUIRE));
	}
	vmmu_hw_guest_exit(a->hw);
	return NULL;
}

/* Zap random gfn ranges in bursts (quiet stretches let stale-TLB bugs
 * survive long enough to matter). */
static void *zapper_thread(void *opaque)
{
	struct test_rng rng;

	test_rng_init(&rng, *(uint64_t *)opaque);
	while (!__atomic_load_n(&stop_helpers, __ATOMIC_RELAXED) && !(skip & SKIP_ZAP)) {
		unsigned burst = (unsigned)test_rng_below(&rng, 8);

		for (unsigned i = 0; i < burst; i++) {
			uint64_t r = test_rng_next(&rng);
			uint64_t first = (r & 1) ? (r >> 1) % HOT_PAGES : (r >> 1) % NPAGES;
			uint64_t n = 1 + (r >> 40) % 96;
			uint64_t gfn = __atomic_load_n(&gpa_base, __ATOMIC_ACQUIRE) / 4096 + first;

			STRESS_CHECK(vmmu_zap_gfn_range(vm, gfn, gfn + n) == 0);
			stat_add(&st.zaps, 1);
		}
		usleep((useconds_t)(200 + test_rng_below(&rng, 3000)));
	}
	return NULL;
}

/* Notifier invalidations and aging over random host ranges: mappings
 * vanish under the vCPUs; host memory does not change. */
static void *notifier_thread(void *opaque)
{
	struct test_rng rng;

	test_rng_init(&rng, *(uint64_t *)opaque);
	while (!__atomic_load_n(&stop_helpers, __ATOMIC_RELAXED) && !(skip & SKIP_NOTIFY)) {
		uint64_t r = test_rng_next(&rng);
		uint64_t start = (uint64_t)(uintptr_t)src + (r % NPAGES) * 4096;
		uint64_t len = (1 + (r >> 40) % 512) * 4096;
		bool young;

		if (start + len > (uint64_t)(uintptr_t)src + MEM_SIZE)
			len = (uint64_t)(uintptr_t)src + MEM_SIZE - start;
		STRESS_CHECK(vmmu_notify_clear_young(vm, start, start + len, &young) == 0);
		if (r >> 62) {
			STRESS_CHECK(vmmu_notify_invalidate_range_start(vm, start, start + len) ==
				     0);
			STRESS_CHECK(vmmu_notify_invalidate_range_end(vm, start, start + len) == 0);
			stat_add(&st.notifies, 1);
		}
		usleep((useconds_t)(500 + test_rng_below(&rng, 4000)));
	}
	return NULL;
}

/* dst[i] = max(dst[i], src[i]) for one page: words only grow, so a slow
 * copy never replaces a newer value. */
static void copy_page(uint64_t page)
{
	for (unsigned i = 0; i < 512; i++) {
		uint64_t *d = &dst[page * 512 + i];
		uint64_t s = __atomic_load_n(&src[page * 512 + i], __ATOMIC_RELAXED);
		uint64_t cur = __atomic_load_n(d, __ATOMIC_RELAXED);

		while (cur < s && !__atomic_compare_exchange_n(d, &cur, s, true, __ATOMIC_RELAXED,
							       __ATOMIC_RELAXED))
			;
	}
}

static void copy_all(void)
{
	for (uint64_t p = 0; p < NPAGES; p++)
		copy_page(p);
}

static void harvest_done(uint64_t k)
{
	pthread_mutex_lock(&done_lock);
	done_ring[k % DONE_RING] = 1;
	while (done_ring[(done_prefix + 1) % DONE_RING]) {
		done_ring[(done_prefix + 1) % DONE_RING] = 0;
		__atomic_store_n(&done_prefix, done_prefix + 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&done_lock);
}

/* Under take_lock: the next harvest number.  Stored before the take, so a
 * write that reads an older number returned before this take started. */
static uint64_t harvest_begin(void)
{
	uint64_t k = started + 1;

	__atomic_store_n(&started, k, __ATOMIC_SEQ_CST);
	return k;
}

static int set_region(uint64_t gpa, bool logged)
{
	struct vmmu_userspace_memory_region r = {
		.slot = 0,
		.flags = logged ? VMMU_MEM_LOG_DIRTY_PAGES : 0,
		.guest_phys_addr = gpa,
		.memory_size = MEM_SIZE,
		.userspace_addr = (uint64_t)(uintptr_t)src,
	};
	return vmmu_set_user_memory_region(vm, &r);
}

/* Page-table allocations fail after @n more, until inject_off(). */
static void inject_on(int64_t n)
{
	__atomic_fetch_add(&inject_gen, 1, __ATOMIC_ACQ_REL); /* odd */
	vmmu_pool_fail_after(&vm->pool, n);
	stat_add(&st.injected, 1);
}

static void inject_off(void)
{
	vmmu_pool_fail_after(&vm->pool, -1);
	__atomic_fetch_add(&inject_gen, 1, __ATOMIC_ACQ_REL); /* even */
}

/* Age the whole slot just before a harvest: without A/D bits this takes
 * W away (access tracking) with no flush, and the harvest must still
 * flush what it reports. */
static void age_slot(struct test_rng *rng)
{
	uint64_t s = (uint64_t)(uintptr_t)src;
	bool young;

	switch (test_rng_below(rng, 4)) {
	case 0:
		STRESS_CHECK(vmmu_notify_clear_flush_young(vm, s, s + MEM_SIZE, &young) == 0);
		break;
	case 1:
		STRESS_CHECK(vmmu_notify_test_young(vm, s, s + MEM_SIZE, &young) == 0);
		break;
	default: /* mostly: the one that does not flush */
		STRESS_CHECK(vmmu_notify_clear_young(vm, s, s + MEM_SIZE, &young) == 0);
		break;
	}
	stat_add(&st.aged, 1);
}

struct hctx {
	struct test_rng rng;
	uint64_t bm[WORDS];
	uint8_t seen[NPAGES];
};

/* One harvest: take the dirty pages (serialized), then copy them. */
static void harvest(struct hctx *h)
{
	uint64_t k, copied = 0;
	int64_t fail = -1;

	pthread_mutex_lock(&take_lock);
	if (test_rng_below(&h->rng, 6) && !(skip & SKIP_AGE))
		age_slot(&h->rng);
	if (harvest_mode == H_INITIALLY_SET && test_rng_below(&h->rng, 8) == 0 &&
	    !(skip & SKIP_INJECT))
		fail = (int64_t)test_rng_below(&h->rng, 16); /* the clear splits */
	k = harvest_begin();
	if (harvest_mode == H_RING) {
		memset(h->seen, 0, sizeof(h->seen));
		for (unsigned v = 0; v < NR_VCPUS; v++)
			STRESS_CHECK(test_ring_collect(vcpus[v].vcpu, &vcpus[v].ring_next, 0,
						       h->seen, NPAGES) >= 0);
		STRESS_CHECK(vmmu_reset_dirty_rings(vm, NULL) == 0);
		pthread_mutex_unlock(&take_lock);
		for (uint64_t p = 0; p < NPAGES; p++)
			if (h->seen[p]) {
				copy_page(p);
				copied++;
			}
		goto out;
	}
	STRESS_CHECK(vmmu_get_dirty_log(vm, 0, h->bm) == 0);
	if (harvest_mode != H_BITMAP) {
		if (fail >= 0)
			inject_on(fail);
		/* Clear only what was fetched, in random chunks of 64 pages. */
		for (uint64_t w = 0; w < WORDS;) {
			uint64_t n = 1 + test_rng_below(&h->rng, 8);
			int r;

			if (n > WORDS - w)
				n = WORDS - w;
			r = vmmu_clear_dirty_log(vm, 0, w * 64, (uint32_t)(n * 64), &h->bm[w]);
			STRESS_CHECK(r == 0 || (fail >= 0 && r == -ENOMEM));
			if (r == -ENOMEM) {
				stat_add(&st.enomem, 1);
				continue; /* nothing changed: clear this chunk again */
			}
			w += n;
		}
		if (fail >= 0)
			inject_off();
	}
	pthread_mutex_unlock(&take_lock);
	for (uint64_t p = 0; p < NPAGES; p++)
		if (h->bm[p / 64] >> (p % 64) & 1) {
			copy_page(p);
			copied++;
		}
out:
	harvest_done(k);
	stat_add(&st.harvests, 1);
	stat_add(&st.copied, copied);
}

/* Migration restart: logging off (huge pages come back) and on again
 * (split, protected), with page-table allocations failing after a random
 * number of them; then a full copy, which counts as a harvest of every
 * page. */
static void restart(struct hctx *h)
{
	uint64_t k;
	bool fail = test_rng_below(&h->rng, 2) && !(skip & SKIP_INJECT);
	int r;

	pthread_mutex_lock(&take_lock);
	k = harvest_begin();
	STRESS_CHECK(set_region(__atomic_load_n(&gpa_base, __ATOMIC_RELAXED), false) == 0);
	if (fail)
		inject_on((int64_t)test_rng_below(&h->rng, 24));
	r = set_region(__atomic_load_n(&gpa_base, __ATOMIC_RELAXED), true);
	if (fail)
		inject_off();
	STRESS_CHECK(r == 0 || (fail && r == -ENOMEM));
	if (r) {
		stat_add(&st.enomem, 1);
		/* -ENOMEM changed nothing: the slot is not logged yet. */
		STRESS_CHECK(set_region(__atomic_load_n(&gpa_base, __ATOMIC_RELAXED), true) == 0);
	}
	pthread_mutex_unlock(&take_lock);
	copy_all();
	harvest_done(k);
	stat_add(&st.restarts, 1);
}

/* Move the logged slot to the other gpa, logging kept on: pages written
 * before the move and not harvested yet must still be reported. */
static void move_slot(void)
{
	uint64_t to;

	pthread_mutex_lock(&take_lock);
	to = __atomic_load_n(&gpa_base, __ATOMIC_RELAXED) == GPA_A ? GPA_B : GPA_A;
	__atomic_fetch_add(&move_gen, 1, __ATOMIC_ACQ_REL);
	STRESS_CHECK(set_region(to, true) == 0);
	__atomic_store_n(&gpa_base, to, __ATOMIC_RELEASE);
	__atomic_fetch_add(&move_gen, 1, __ATOMIC_ACQ_REL);
	pthread_mutex_unlock(&take_lock);
	stat_add(&st.moves, 1);
}

static void *harvester_thread(void *opaque)
{
	struct hctx *h = opaque;

	while (!__atomic_load_n(&stop_helpers, __ATOMIC_RELAXED)) {
		uint64_t r = test_rng_below(&h->rng, 64);

		if (r == 0 && !(skip & SKIP_RESTART))
			restart(h);
		else if (r <= 3 && !(skip & SKIP_MOVE))
			move_slot();
		else
			harvest(h);
		usleep((useconds_t)(100 + test_rng_below(&h->rng, 600)));
	}
	return NULL;
}

/* Stop the vCPUs, harvest once more, wait for every copy: source and
 * destination must agree. */
static void verify_paused(struct hctx *h, const char *when)
{
	harvest(h);
	if (due_lag)
		harvest(h); /* the last PML entries reached the rings at the reset */
	pthread_mutex_lock(&take_lock);
	while (__atomic_load_n(&done_prefix, __ATOMIC_ACQUIRE) != started)
		sched_yield();
	for (uint64_t p = 0; p < NPAGES; p++) {
		if (memcmp(&src[p * 512], &dst[p * 512], 4096)) {
			for (unsigned i = 0; i < 512; i++)
				if (src[p * 512 + i] != dst[p * 512 + i])
					fprintf(stderr,
						"page %" PRIu64 " word %u: %#" PRIx64
						" in guest memory, %#" PRIx64
						" at the destination\n",
						p, i, src[p * 512 + i], dst[p * 512 + i]);
			fprintf(stderr, "page %" PRIu64 " changed but was never reported (%s)\n", p,
				when);
			STRESS_CHECK(!"lost dirty page");
		}
	}
	pthread_mutex_unlock(&take_lock);
	stat_add(&st.verified, 1);
}

static void run_mode(enum ad_mode ad, enum harvest hv, struct test_rng *mrng, uint64_t all_end,
		     unsigned modes_left)
{
	struct vmmu_vm_config cfg = { 0 };
	pthread_t vt[NR_VCPUS], ht[NR_HARVESTERS], zt[NR_ZAPPERS], nt;
	static struct hctx hctx[NR_HARVESTERS + 1];
	uint64_t seeds[NR_ZAPPERS + 1], t_end, writes = 0, spins = 0, checked = 0, unchecked = 0,
					       ring_full = 0, pf_fast = 0, efault = 0, deferred = 0;
	struct hctx *mh = &hctx[NR_HARVESTERS];
	bool fast = test_rng_below(mrng, 2);
	struct vmmu_vm_stats vs0;

	cfg.disable_fast_page_fault = !fast;
	cfg.max_pt_pages = 4096; /* a small pool: quick to set up and tear down under sanitizers */
	cfg.dirty_log_wrprot = ad != AD_DBIT;
	cfg.disable_ept_ad = ad == AD_WRPROT_NOAD;
	snprintf(stress_mode, sizeof(stress_mode), "%s/%s/%s", ad_names[ad], harvest_names[hv],
		 fast ? "fast" : "nofast");
	harvest_mode = hv;
	due_lag = hv == H_RING && ad == AD_DBIT;
	memset(&st, 0, sizeof(st));
	started = done_prefix = 0;
	memset(done_ring, 0, sizeof(done_ring));
	move_gen = inject_gen = 0;
	gpa_base = GPA_A;
	__atomic_store_n(&stop, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&stop_helpers, 0, __ATOMIC_RELAXED);
	STRESS_CHECK(vmmu_hostmem_create(&hm) == 0);
	STRESS_CHECK(vmmu_hostmem_alloc(hm, VMMU_BACKING_ANONYMOUS_THP, MEM_SIZE, 0,
					(void **)&src) == 0);
	dst = calloc(NPAGES, 4096);
	STRESS_CHECK(dst);
	cfg.hostmem = hm;
	if (hv == H_MANUAL)
		cfg.manual_dirty_log_protect = VMMU_DIRTY_LOG_MANUAL_PROTECT;
	if (hv == H_INITIALLY_SET)
		cfg.manual_dirty_log_protect = VMMU_DIRTY_LOG_MANUAL_PROTECT |
					       VMMU_DIRTY_LOG_INITIALLY_SET;
	if (hv == H_RING)
		cfg.dirty_ring_size = 4096;
	STRESS_CHECK(vmmu_vm_create(&cfg, &vm) == 0);
	STRESS_CHECK(set_region(GPA_A, false) == 0);
	STRESS_CHECK(pthread_barrier_init(&pause_bar, NULL, NR_VCPUS + 1) == 0);
	for (unsigned i = 0; i < NR_VCPUS; i++) {
		vcpus[i] = (struct vcpu_arg){ .id = i };
		test_rng_init(&vcpus[i].rng, test_rng_next(mrng));
		vcpus[i].pend = calloc(PEND_SIZE, sizeof(struct pend));
		vcpus[i].call_ends = calloc(CALL_RING, sizeof(uint64_t));
		STRESS_CHECK(vcpus[i].pend && vcpus[i].call_ends);
		STRESS_CHECK(vmmu_vcpu_create(vm, i, &vcpus[i].vcpu) == 0);
		STRESS_CHECK(vmmu_hw_vcpu_create(vcpus[i].vcpu, NULL, &vcpus[i].hw) == 0);
	}
	for (unsigned i = 0; i <= NR_HARVESTERS; i++)
		test_rng_init(&hctx[i].rng, test_rng_next(mrng));
	for (unsigned i = 0; i <= NR_ZAPPERS; i++)
		seeds[i] = test_rng_next(mrng);
	/* Fault everything in first, so that huge mappings exist to split. */
	for (uint64_t p = 0; p < NPAGES; p++) {
		uint64_t v = 0;

		STRESS_CHECK(vmmu_hw_write(vcpus[0].hw, GPA_A + p * 4096, &v, sizeof(v)) == 0);
	}
	vmmu_hw_guest_exit(vcpus[0].hw);
	STRESS_CHECK(vmmu_vm_stats(vm, &vs0) == 0);

	STRESS_CHECK(set_region(GPA_A, true) == 0);
	copy_all();
	for (unsigned i = 0; i < NR_VCPUS; i++)
		STRESS_CHECK(pthread_create(&vt[i], NULL, vcpu_thread, &vcpus[i]) == 0);
	for (unsigned i = 0; i < NR_HARVESTERS; i++)
		STRESS_CHECK(pthread_create(&ht[i], NULL, harvester_thread, &hctx[i]) == 0);
	for (unsigned i = 0; i < NR_ZAPPERS; i++)
		STRESS_CHECK(pthread_create(&zt[i], NULL, zapper_thread, &seeds[i]) == 0);
	STRESS_CHECK(pthread_create(&nt, NULL, notifier_thread, &seeds[NR_ZAPPERS]) == 0);

	/* This mode's share of what is left of the budget, after its setup
	 * (slow under sanitizers); at least one stop-and-verify. */
	t_end = stress_now_ns();
	t_end += all_end > t_end ? (all_end - t_end) / modes_left : 0;
	do {
		usleep((useconds_t)(5000 + test_rng_below(mrng, 20000)));
		/* Stop the world: source and destination must agree. */
		__atomic_store_n(&pause_req, 1, __ATOMIC_RELEASE);
		pthread_barrier_wait(&pause_bar);
		verify_paused(mh, "paused");
		__atomic_store_n(&pause_req, 0, __ATOMIC_RELEASE);
		pthread_barrier_wait(&pause_bar);
	} while (stress_now_ns() < t_end);
	__atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < NR_VCPUS; i++)
		pthread_join(vt[i], NULL);
	__atomic_store_n(&stop_helpers, 1, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < NR_HARVESTERS; i++)
		pthread_join(ht[i], NULL);
	for (unsigned i = 0; i < NR_ZAPPERS; i++)
		pthread_join(zt[i], NULL);
	pthread_join(nt, NULL);
	/* The final stop-and-copy; then every write is due. */
	verify_paused(mh, "final");
	for (unsigned i = 0; i < NR_VCPUS; i++) {
		struct vmmu_vcpu_stats vst;

		check_pending(&vcpus[i], done_prefix);
		STRESS_CHECK(vcpus[i].ph == vcpus[i].pt);
		STRESS_CHECK(vmmu_vcpu_stats(vcpus[i].vcpu, &vst) == 0);
		pf_fast += vst.pf_fast;
		writes += vcpus[i].writes;
		ring_full += vcpus[i].ring_full;
		spins += vcpus[i].spins;
		checked += vcpus[i].checked;
		unchecked += vcpus[i].unchecked;
		efault += vcpus[i].efault_moves;
		deferred += vcpus[i].deferred;
	}

	/* Translations exact; no writable huge leaf while logged (with
	 * initially-all-set, huge leaves stay until a clear covers them). */
	for (uint64_t p = 0; p < NPAGES; p++) {
		void *hva;
		int level;
		uint64_t spte;

		if (vmmu_debug_lookup(vm, 0, gpa_base + p * 4096, &hva, &level, &spte))
			continue;
		STRESS_CHECK(hva == (char *)src + p * 4096);
		STRESS_CHECK(hv == H_INITIALLY_SET || level == 1 || !(spte & EPT_WRITABLE));
	}
	printf("%-30s harvests %5" PRIu64 " (aged %5" PRIu64 "), verified %3" PRIu64
	       ", restarts %2" PRIu64 ", moves %2" PRIu64 ", injected %2" PRIu64
	       " (-ENOMEM %" PRIu64 "), writes %8" PRIu64 " (checked %8" PRIu64
	       ", unchecked %" PRIu64 ", due later for another vCPU's call %" PRIu64
	       "), copied %7" PRIu64 ", zaps %5" PRIu64 ", notifier zaps %4" PRIu64
	       ", guest spins %4" PRIu64 ", ring-full %4" PRIu64 ", -EFAULT in moves %" PRIu64
	       ", 2M leaves before logging %" PRIu64 ", fast faults %" PRIu64 "\n",
	       stress_mode, st.harvests, st.aged, st.verified, st.restarts, st.moves, st.injected,
	       st.enomem, writes, checked, unchecked, deferred, st.copied, st.zaps, st.notifies,
	       spins, ring_full, efault, vs0.pages_2m, pf_fast);
	STRESS_CHECK(writes > 0 && checked > 0);
	STRESS_CHECK(fast || pf_fast == 0);

	for (unsigned i = 0; i < NR_VCPUS; i++) {
		STRESS_CHECK(vmmu_hw_vcpu_destroy(vcpus[i].hw) == 0);
		STRESS_CHECK(vmmu_vcpu_destroy(vcpus[i].vcpu) == 0);
		free(vcpus[i].pend);
		free(vcpus[i].call_ends);
	}
	STRESS_CHECK(vmmu_zap_all(vm) == 0);
	vmmu_rcu_barrier();
	STRESS_CHECK(vmmu_pool_in_use(&vm->pool) == 0);
	STRESS_CHECK(vmmu_vm_destroy(vm) == 0);
	STRESS_CHECK(vmmu_hostmem_free(hm, src) == 0);
	STRESS_CHECK(vmmu_hostmem_destroy(hm) == 0);
	pthread_barrier_destroy(&pause_bar);
	free(dst);
}

int main(void)
{
	double budget = stress_budget();
	const char *only = getenv("VMMU_STRESS_MODE"); /* e.g. "wrprot-noAD/bitmap" */
	bool pick[AD_NR * H_NR] = { false };
	unsigned nmodes = 0, done = 0;
	uint64_t all_end;

	setvbuf(stdout, NULL, _IOLBF, 0);
	(void)test_seed(); /* printed first */
	parse_skip();
	for (int ad = 0; ad < AD_NR; ad++)
		for (int h = 0; h < H_NR; h++) {
			char name[64];

			snprintf(name, sizeof(name), "%s/%s", ad_names[ad], harvest_names[h]);
			pick[ad * H_NR + h] = !only || !strcmp(only, name);
		}
	if (!only && stress_sanitized() && !test_env_u64("VMMU_STRESS_ALL_MODES", 0)) {
		/* Sanitizer builds: SANITIZED_MODES of the modes, chosen by
		 * the seed, one A/D mode of each kind at least. */
		struct test_rng r;

		test_rng_init(&r, test_seed() ^ 0x5eed);
		memset(pick, 0, sizeof(pick));
		for (int ad = 0; ad < AD_NR; ad++)
			pick[ad * H_NR + test_rng_below(&r, H_NR)] = true;
		pick[test_rng_below(&r, AD_NR * H_NR)] = true;
	}
	for (int i = 0; i < AD_NR * H_NR; i++)
		nmodes += pick[i];
	STRESS_CHECK(nmodes > 0);
	printf("budget %.1fs over %u modes%s\n", budget, nmodes,
	       nmodes < AD_NR * H_NR && !only ? " (chosen by the seed: sanitizer build; "
						"VMMU_STRESS_ALL_MODES=1 runs all)" :
						"");
	all_end = stress_now_ns() + (uint64_t)(budget * 1e9);
	for (int ad = 0; ad < AD_NR; ad++)
		for (int h = 0; h < H_NR; h++) {
			struct test_rng mrng;

			if (!pick[ad * H_NR + h])
				continue;
			/* Each mode has its own stream, so one mode replays
			 * alone with VMMU_STRESS_MODE. */
			test_rng_init(&mrng, test_seed() * 31 + (uint64_t)(ad * H_NR + h) + 1);
			run_mode((enum ad_mode)ad, (enum harvest)h, &mrng, all_end,
				 nmodes - done++);
		}
	printf("PASS\n");
	return 0;
}
