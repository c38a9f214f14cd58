// SPDX-License-Identifier: MIT
/*
 * test_platform.c - the platform layer: page pool, object cache, the MMU
 * rwlock and the RCU wrapper.
 *
 * Thread tests never assert on timings.  Where a test must wait for another
 * thread to reach a state (a writer blocked in write_lock, say) it polls
 * with a generous deadline: that is a liveness wait, and only running out
 * of it fails.  "Must not happen" checks give the other thread many
 * sched_yield()s to misbehave and check it did not.
 */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "platform/cache.h"
#include "platform/platform.h"
#include "platform/pool.h"
#include "platform/rcu.h"
#include "platform/rwlock.h"

#define LIVENESS_NS (10ull * 1000000000ull)
#define YIELDS 5000

static bool page_is_zero(const void *p, size_t n)
{
	const unsigned char *c = p;

	for (size_t i = 0; i < n; i++)
		if (c[i])
			return false;
	return true;
}

/* ---------------------------------------------------------------------------
 * Pool
 */
static void test_pool_init_args(void **state)
{
	struct vmmu_pool pool;

	(void)state;
	assert_int_equal(vmmu_pool_init(&pool, 0, 8), -EINVAL);
	assert_int_equal(vmmu_pool_init(&pool, 4, 0), -EINVAL);
	assert_int_equal(vmmu_pool_init(&pool, 4, 65), -EINVAL);
	assert_int_equal(vmmu_pool_init(&pool, 4, 64), 0);
	vmmu_pool_destroy(&pool);
}

static void test_pool_pages(void **state)
{
	enum {
		N = 16,
		META = 24
	};
	struct vmmu_pool pool;
	void *p[N];

	(void)state;
	assert_int_equal(vmmu_pool_init(&pool, 64, META), 0);
	for (int i = 0; i < N; i++) {
		p[i] = vmmu_pool_alloc(&pool);
		assert_non_null(p[i]);
		assert_int_equal((uintptr_t)p[i] & (VMMU_PAGE_SIZE - 1), 0);
		assert_true(page_is_zero(p[i], VMMU_PAGE_SIZE));
		assert_true(vmmu_pool_owns(&pool, p[i]));
		for (int j = 0; j < i; j++)
			assert_ptr_not_equal(p[i], p[j]);
		/* index, page and metadata agree with each other */
		uint32_t idx = vmmu_pool_index(&pool, p[i]);
		assert_true(idx < 64);
		assert_ptr_equal(vmmu_pool_page(&pool, idx), p[i]);
		assert_ptr_equal(vmmu_pool_meta(&pool, p[i]), pool.meta + (size_t)idx * META);
		assert_true(page_is_zero(vmmu_pool_meta(&pool, p[i]), META));
		/* fill page and metadata, to catch overlaps below */
		memset(p[i], 0x40 + i, VMMU_PAGE_SIZE);
		memset(vmmu_pool_meta(&pool, p[i]), 0x80 + i, META);
	}
	assert_int_equal(vmmu_pool_in_use(&pool), N);
	for (int i = 0; i < N; i++) {
		unsigned char *pg = p[i], *m = vmmu_pool_meta(&pool, p[i]);

		for (size_t b = 0; b < VMMU_PAGE_SIZE; b++)
			assert_int_equal(pg[b], 0x40 + i);
		for (size_t b = 0; b < META; b++)
			assert_int_equal(m[b], 0x80 + i);
	}
	assert_false(vmmu_pool_owns(&pool, (char *)pool.pages - 1));
	assert_false(vmmu_pool_owns(&pool, (char *)pool.pages + 64 * VMMU_PAGE_SIZE));
	for (int i = 0; i < N; i++)
		vmmu_pool_free(&pool, p[i]);
	assert_int_equal(vmmu_pool_in_use(&pool), 0);
	vmmu_pool_destroy(&pool);
}

/* A freed page comes back zeroed, with zeroed metadata. */
static void test_pool_free_realloc_zeroed(void **state)
{
	struct vmmu_pool pool;
	void *a, *b;

	(void)state;
	assert_int_equal(vmmu_pool_init(&pool, 2, 64), 0);
	a = vmmu_pool_alloc(&pool);
	b = vmmu_pool_alloc(&pool);
	assert_non_null(a);
	assert_non_null(b);
	memset(a, 0xa5, VMMU_PAGE_SIZE);
	memset(b, 0x5a, VMMU_PAGE_SIZE);
	memset(vmmu_pool_meta(&pool, a), 0xa5, 64);
	vmmu_pool_free(&pool, a);
#ifdef VMMU_ASAN
	/* a free page is off limits */
	assert_true(__asan_address_is_poisoned(a));
	assert_true(__asan_address_is_poisoned((char *)a + VMMU_PAGE_SIZE - 1));
	assert_false(__asan_address_is_poisoned(b));
#endif
	/* the pool is full: the only page it can give is the freed one */
	void *c = vmmu_pool_alloc(&pool);
	assert_ptr_equal(c, a);
#ifdef VMMU_ASAN
	assert_false(__asan_address_is_poisoned(c));
	assert_false(__asan_address_is_poisoned((char *)c + VMMU_PAGE_SIZE - 1));
#endif
	assert_true(page_is_zero(c, VMMU_PAGE_SIZE));
	assert_true(page_is_zero(vmmu_pool_meta(&pool, c), 64));
	/* and the other page was not touched */
	for (size_t i = 0; i < VMMU_PAGE_SIZE; i++)
		assert_int_equal(((unsigned char *)b)[i], 0x5a);
	vmmu_pool_free(&pool, b);
	vmmu_pool_free(&pool, c);
	vmmu_pool_destroy(&pool);
}

/*
 * What a free page holds while it sits free: the walker trap pattern in
 * debug builds only; zeros otherwise, so that handing it out again costs
 * no second clear of the whole page.  (VMMU_DEBUG is always defined, to 0
 * or 1: a test with #ifdef took the debug branch in every build.)
 */
static void test_pool_free_contents(void **state)
{
	struct vmmu_pool pool;
	uint64_t *a;

	(void)state;
	assert_int_equal(vmmu_pool_init(&pool, 2, 8), 0);
	a = vmmu_pool_alloc(&pool);
	assert_non_null(a);
	memset(a, 0xa5, VMMU_PAGE_SIZE);
	vmmu_pool_free(&pool, a);
#ifndef VMMU_ASAN /* ASan: a free page cannot be read */
	for (unsigned i = 0; i < VMMU_PAGE_SIZE / sizeof(*a); i++)
		assert_int_equal(a[i], VMMU_DEBUG ? VMMU_POOL_POISON : 0);
#endif
	a = vmmu_pool_alloc(&pool);
	assert_true(page_is_zero(a, VMMU_PAGE_SIZE));
	vmmu_pool_free(&pool, a);
	vmmu_pool_destroy(&pool);
}

static void test_pool_exhaustion(void **state)
{
	struct vmmu_pool pool;
	void *p[4], *q[3];

	(void)state;
	assert_int_equal(vmmu_pool_init(&pool, 4, 8), 0);
#ifdef VMMU_ASAN
	/* never handed out: poisoned too */
	assert_true(__asan_address_is_poisoned(pool.pages));
#endif
	assert_int_equal(vmmu_pool_alloc_batch(&pool, p, 4), 4);
	assert_int_equal(pool.failures, 0);
	assert_null(vmmu_pool_alloc(&pool));
	assert_int_equal(pool.failures, 1);
	assert_int_equal(vmmu_pool_alloc_batch(&pool, q, 3), 0);
	assert_true(pool.failures >= 2);
	assert_int_equal(vmmu_pool_in_use(&pool), 4);
	/* a free makes room for exactly one more */
	vmmu_pool_free(&pool, p[2]);
	assert_int_equal(vmmu_pool_alloc_batch(&pool, q, 3), 1);
	assert_ptr_equal(q[0], p[2]);
	assert_int_equal(vmmu_pool_in_use(&pool), 4);
	assert_int_equal(pool.peak, 4);
	for (int i = 0; i < 4; i++)
		vmmu_pool_free(&pool, i == 2 ? q[0] : p[i]);
	assert_int_equal(vmmu_pool_in_use(&pool), 0);
	vmmu_pool_destroy(&pool);
}

static void test_pool_fail_after(void **state)
{
	struct vmmu_pool pool;
	void *p[16];
	uint64_t failures;
	unsigned n = 0;

	(void)state;
	assert_int_equal(vmmu_pool_init(&pool, 64, 8), 0);
	/* exactly 3 more, then failures until reset */
	vmmu_pool_fail_after(&pool, 3);
	for (int i = 0; i < 3; i++) {
		p[n] = vmmu_pool_alloc(&pool);
		assert_non_null(p[n]);
		n++;
	}
	failures = pool.failures;
	for (int i = 0; i < 5; i++)
		assert_null(vmmu_pool_alloc(&pool));
	assert_int_equal(pool.failures, failures + 5);
	/* a free does not re-arm the allowance */
	vmmu_pool_free(&pool, p[--n]);
	assert_null(vmmu_pool_alloc(&pool));
	/* recover */
	vmmu_pool_fail_after(&pool, -1);
	for (int i = 0; i < 4; i++) {
		p[n] = vmmu_pool_alloc(&pool);
		assert_non_null(p[n]);
		n++;
	}
	/* a batch stops at the allowance */
	vmmu_pool_fail_after(&pool, 2);
	assert_int_equal(vmmu_pool_alloc_batch(&pool, p + n, 5), 2);
	n += 2;
	vmmu_pool_fail_after(&pool, 0);
	assert_null(vmmu_pool_alloc(&pool));
	vmmu_pool_fail_after(&pool, -1);
	assert_int_equal(vmmu_pool_in_use(&pool), n);
	assert_int_equal(pool.peak, n);
	while (n)
		vmmu_pool_free(&pool, p[--n]);
	assert_int_equal(vmmu_pool_in_use(&pool), 0);
	assert_int_equal(pool.peak, 8);
	vmmu_pool_destroy(&pool);
}

/* ---------------------------------------------------------------------------
 * Cache, over a counting allocator with injectable failure
 */
struct counting_alloc {
	int outstanding; /* objects handed out and not freed */
	int allocs, frees; /* totals */
	int fail_after; /* <0: never; else allocations left before failing */
	void *last_freed;
};

static unsigned ca_alloc_batch(void *ctx, void **out, unsigned n)
{
	struct counting_alloc *ca = ctx;
	unsigned got = 0;

	while (got < n) {
		if (ca->fail_after == 0)
			break;
		out[got] = malloc(32);
		assert_non_null(out[got]);
		if (ca->fail_after > 0)
			ca->fail_after--;
		ca->outstanding++;
		ca->allocs++;
		got++;
	}
	return got;
}

static void ca_free(void *ctx, void *obj)
{
	struct counting_alloc *ca = ctx;

	assert_non_null(obj);
	ca->outstanding--;
	ca->frees++;
	ca->last_freed = obj;
	free(obj);
}

static const struct vmmu_cache_ops ca_ops = {
	.alloc_batch = ca_alloc_batch,
	.free = ca_free,
};

static void test_cache_init_args(void **state)
{
	struct counting_alloc ca = { .fail_after = -1 };
	struct vmmu_cache c;

	(void)state;
	assert_int_equal(vmmu_cache_init(&c, 0, &ca_ops, &ca), -EINVAL);
	assert_int_equal(vmmu_cache_init(&c, -1, &ca_ops, &ca), -EINVAL);
	assert_int_equal(vmmu_cache_init(&c, 4, NULL, &ca), -EINVAL);
	assert_int_equal(vmmu_cache_init(&c, 4, &ca_ops, &ca), 0);
	assert_int_equal(vmmu_cache_nr(&c), 0);
	assert_int_equal(ca.allocs, 0);
	vmmu_cache_destroy(&c);
}

static void test_cache_topup_fills(void **state)
{
	struct counting_alloc ca = { .fail_after = -1 };
	struct vmmu_cache c;

	(void)state;
	assert_int_equal(vmmu_cache_init(&c, 8, &ca_ops, &ca), 0);
	assert_int_equal(vmmu_cache_topup(&c, 1), 0);
	assert_int_equal(vmmu_cache_nr(&c), 8);
	assert_int_equal(ca.outstanding, 8);
	/* enough already: no allocation */
	assert_int_equal(vmmu_cache_topup(&c, 8), 0);
	assert_int_equal(ca.allocs, 8);
	/* more than the capacity can never be satisfied */
	assert_int_equal(vmmu_cache_topup(&c, 9), -EINVAL);
	assert_int_equal(ca.allocs, 8);
	/* use some, top up again: back to capacity */
	void *a = vmmu_cache_alloc(&c), *b = vmmu_cache_alloc(&c), *d = vmmu_cache_alloc(&c);
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(d);
	assert_ptr_not_equal(a, b);
	assert_ptr_not_equal(b, d);
	assert_int_equal(vmmu_cache_nr(&c), 5);
	assert_int_equal(vmmu_cache_topup(&c, 6), 0);
	assert_int_equal(vmmu_cache_nr(&c), 8);
	assert_int_equal(ca.outstanding, 11);
	ca_free(&ca, a);
	ca_free(&ca, b);
	ca_free(&ca, d);
	vmmu_cache_destroy(&c);
	assert_int_equal(ca.outstanding, 0);
}

/*
 * topup(min) with an allocator that gives k objects: 0 iff k >= min, and
 * the cache keeps whatever it got.  After a successful topup(min), min
 * allocations succeed even if the allocator now fails every time.
 */
static void test_cache_topup_partial(void **state)
{
	enum {
		CAP = 6
	};

	(void)state;
	for (int k = 0; k <= CAP + 1; k++)
		for (int min = 0; min <= CAP; min++) {
			struct counting_alloc ca = { .fail_after = k };
			struct vmmu_cache c;
			int r, got = k < CAP ? k : CAP;

			assert_int_equal(vmmu_cache_init(&c, CAP, &ca_ops, &ca), 0);
			r = vmmu_cache_topup(&c, min);
			if (min == 0) {
				assert_int_equal(r, 0);
				vmmu_cache_destroy(&c);
				assert_int_equal(ca.outstanding, 0);
				continue;
			}
			assert_int_equal(r, k >= min ? 0 : -ENOMEM);
			assert_int_equal(vmmu_cache_nr(&c), got);
			assert_int_equal(ca.outstanding, got);
			if (r == 0) {
				void *objs[CAP];

				ca.fail_after = 0;
				for (int i = 0; i < min; i++) {
					objs[i] = vmmu_cache_alloc(&c);
					assert_non_null(objs[i]);
					for (int j = 0; j < i; j++)
						assert_ptr_not_equal(objs[i], objs[j]);
				}
				assert_int_equal(vmmu_cache_nr(&c), got - min);
				/* a failing allocator does not undo what is cached */
				if (got - min < CAP)
					assert_int_equal(vmmu_cache_topup(&c, got - min + 1),
							 -ENOMEM);
				assert_int_equal(vmmu_cache_nr(&c), got - min);
				for (int i = 0; i < min; i++)
					vmmu_cache_push(&c, objs[i]);
			} else {
				/* a retry with a working allocator completes it */
				ca.fail_after = -1;
				assert_int_equal(vmmu_cache_topup(&c, min), 0);
				assert_int_equal(vmmu_cache_nr(&c), CAP);
			}
			vmmu_cache_destroy(&c);
			assert_int_equal(ca.outstanding, 0);
			assert_int_equal(ca.allocs, ca.frees);
		}
}

static void test_cache_push(void **state)
{
	struct counting_alloc ca = { .fail_after = -1 };
	struct vmmu_cache c;
	void *obj, *extra = NULL;

	(void)state;
	assert_int_equal(vmmu_cache_init(&c, 4, &ca_ops, &ca), 0);
	assert_int_equal(vmmu_cache_topup(&c, 4), 0);
	/* take one, give it back: cached again, nothing freed */
	obj = vmmu_cache_alloc(&c);
	assert_int_equal(vmmu_cache_nr(&c), 3);
	vmmu_cache_push(&c, obj);
	assert_int_equal(vmmu_cache_nr(&c), 4);
	assert_int_equal(ca.frees, 0);
	assert_ptr_equal(vmmu_cache_alloc(&c), obj);
	vmmu_cache_push(&c, obj);
	/* full: a pushed object goes back to the allocator */
	assert_int_equal(ca_alloc_batch(&ca, &extra, 1), 1);
	vmmu_cache_push(&c, extra);
	assert_int_equal(vmmu_cache_nr(&c), 4);
	assert_int_equal(ca.frees, 1);
	assert_ptr_equal(ca.last_freed, extra);
	assert_int_equal(ca.outstanding, 4);
	vmmu_cache_destroy(&c);
	assert_int_equal(ca.outstanding, 0);
	/* destroying twice is harmless */
	vmmu_cache_destroy(&c);
	assert_int_equal(ca.frees, 5);
}

static void test_cache_destroy_returns_all(void **state)
{
	(void)state;
	for (int used = 0; used <= 5; used++) {
		struct counting_alloc ca = { .fail_after = -1 };
		struct vmmu_cache c;
		void *objs[5];

		assert_int_equal(vmmu_cache_init(&c, 5, &ca_ops, &ca), 0);
		assert_int_equal(vmmu_cache_topup(&c, 5), 0);
		for (int i = 0; i < used; i++)
			objs[i] = vmmu_cache_alloc(&c);
		vmmu_cache_destroy(&c);
		assert_int_equal(ca.outstanding, used);
		for (int i = 0; i < used; i++)
			ca_free(&ca, objs[i]);
		assert_int_equal(ca.outstanding, 0);
	}
}

/* Popping from an empty cache is a caller bug: WARN (which aborts in debug
 * builds) and NULL.  Only testable where WARN does not abort. */
static void test_cache_empty_alloc(void **state)
{
	(void)state;
#if VMMU_DEBUG
	skip();
#else
	struct counting_alloc ca = { .fail_after = -1 };
	struct vmmu_cache c;

	assert_int_equal(vmmu_cache_init(&c, 2, &ca_ops, &ca), 0);
	fprintf(stderr, "test_cache_empty_alloc: a WARNING below is expected\n");
	assert_null(vmmu_cache_alloc(&c));
	assert_int_equal(vmmu_cache_nr(&c), 0);
	assert_int_equal(ca.allocs, 0);
	vmmu_cache_destroy(&c);
#endif
}

/* ---------------------------------------------------------------------------
 * rwlock
 */

/* Poll @cond (a liveness wait, not a timing check); false if it never held. */
#define WAIT_UNTIL(cond)                                               \
	({                                                             \
		uint64_t __deadline = vmmu_now_ns() + LIVENESS_NS;     \
		bool __ok;                                             \
		while (!(__ok = (cond)) && vmmu_now_ns() < __deadline) \
			sched_yield();                                 \
		__ok;                                                  \
	})

static void spawn(pthread_t *t, void *(*fn)(void *), void *arg)
{
	assert_int_equal(pthread_create(t, NULL, fn, arg), 0);
}

static void join(pthread_t t)
{
	assert_int_equal(pthread_join(t, NULL), 0);
}

struct counter_ctx {
	struct vmmu_rwlock lock;
	uint64_t a, b; /* the writer keeps a == b */
	uint64_t count;
	int torn; /* readers that saw a != b */
	int iters;
};

static void *counter_thread(void *arg)
{
	struct counter_ctx *c = arg;

	for (int i = 0; i < c->iters; i++) {
		vmmu_write_lock(&c->lock);
		c->count++;
		c->a++;
		/* widen the window in which a != b */
		for (int k = 0; k < 8; k++)
			cpu_relax();
		c->b++;
		vmmu_write_unlock(&c->lock);

		vmmu_read_lock(&c->lock);
		if (c->a != c->b)
			__atomic_add_fetch(&c->torn, 1, __ATOMIC_RELAXED);
		vmmu_read_unlock(&c->lock);
	}
	return NULL;
}

static void test_rwlock_counter(void **state)
{
	enum {
		THREADS = 4
	};
	struct counter_ctx *c = calloc(1, sizeof(*c));
	pthread_t t[THREADS];

	(void)state;
	assert_non_null(c);
	assert_int_equal(vmmu_rwlock_init(&c->lock), 0);
	c->iters = 4000;
	for (int i = 0; i < THREADS; i++)
		spawn(&t[i], counter_thread, c);
	for (int i = 0; i < THREADS; i++)
		join(t[i]);
	assert_int_equal(c->count, (uint64_t)THREADS * c->iters);
	assert_int_equal(c->a, c->count);
	assert_int_equal(c->b, c->count);
	assert_int_equal(c->torn, 0);
	assert_false(vmmu_rwlock_contended(&c->lock));
	vmmu_rwlock_destroy(&c->lock);
	free(c);
}

/* Event log shared by the threads of one test: the order is the evidence. */
enum {
	EV_R1_GOT = 1,
	EV_R1_REL,
	EV_W_GOT,
	EV_W_REL,
	EV_R2_GOT,
	EV_R2_REL,
	EV_MAX
};

struct order_ctx {
	struct vmmu_rwlock lock;
	int log[16];
	int nlog;
	int r2_trying;
	int w_trying;
};

static void log_event(struct order_ctx *o, int ev)
{
	int i = __atomic_fetch_add(&o->nlog, 1, __ATOMIC_SEQ_CST);

	/* no cmocka assertions off the main thread */
	if (i >= 16)
		abort();
	__atomic_store_n(&o->log[i], ev, __ATOMIC_SEQ_CST);
}

static int event_pos(struct order_ctx *o, int ev)
{
	int n = __atomic_load_n(&o->nlog, __ATOMIC_SEQ_CST);

	for (int i = 0; i < n; i++)
		if (__atomic_load_n(&o->log[i], __ATOMIC_SEQ_CST) == ev)
			return i;
	return -1;
}

static void *writer_thread(void *arg)
{
	struct order_ctx *o = arg;

	__atomic_store_n(&o->w_trying, 1, __ATOMIC_SEQ_CST);
	vmmu_write_lock(&o->lock);
	log_event(o, EV_W_GOT);
	log_event(o, EV_W_REL);
	vmmu_write_unlock(&o->lock);
	return NULL;
}

static void *reader2_thread(void *arg)
{
	struct order_ctx *o = arg;

	__atomic_store_n(&o->r2_trying, 1, __ATOMIC_SEQ_CST);
	vmmu_read_lock(&o->lock);
	log_event(o, EV_R2_GOT);
	log_event(o, EV_R2_REL);
	vmmu_read_unlock(&o->lock);
	return NULL;
}

static void test_rwlock_contended_idle(void **state)
{
	struct vmmu_rwlock l;

	(void)state;
	assert_int_equal(vmmu_rwlock_init(&l), 0);
	assert_false(vmmu_rwlock_contended(&l));
	vmmu_read_lock(&l);
	assert_false(vmmu_rwlock_contended(&l));
	vmmu_read_unlock(&l);
	vmmu_write_lock(&l);
	assert_false(vmmu_rwlock_contended(&l));
	vmmu_write_unlock(&l);
	assert_false(vmmu_rwlock_contended(&l));
	vmmu_rwlock_destroy(&l);
}

/* A reader waiting on a held write lock, and a writer waiting on a held
 * write lock, both make the lock contended. */
static void test_rwlock_contended_on_write_lock(void **state)
{
	struct order_ctx *o = calloc(1, sizeof(*o));
	pthread_t t;
	bool seen;

	(void)state;
	assert_non_null(o);
	assert_int_equal(vmmu_rwlock_init(&o->lock), 0);

	vmmu_write_lock(&o->lock);
	spawn(&t, reader2_thread, o);
	seen = WAIT_UNTIL(vmmu_rwlock_contended(&o->lock));
	assert_int_equal(event_pos(o, EV_R2_GOT), -1);
	vmmu_write_unlock(&o->lock);
	join(t);
	assert_true(seen);
	assert_false(vmmu_rwlock_contended(&o->lock));

	vmmu_write_lock(&o->lock);
	spawn(&t, writer_thread, o);
	seen = WAIT_UNTIL(vmmu_rwlock_contended(&o->lock));
	assert_int_equal(event_pos(o, EV_W_GOT), -1);
	vmmu_write_unlock(&o->lock);
	join(t);
	assert_true(seen);
	assert_false(vmmu_rwlock_contended(&o->lock));

	vmmu_rwlock_destroy(&o->lock);
	free(o);
}

/*
 * A writer waiting for a reader to leave makes the lock contended: that is
 * what tells a long walk under the read lock to yield (rwlock_needbreak()).
 */
static void test_rwlock_contended_writer_waits_for_reader(void **state)
{
	struct order_ctx *o = calloc(1, sizeof(*o));
	pthread_t t;
	bool seen, got_early;

	(void)state;
	assert_non_null(o);
	assert_int_equal(vmmu_rwlock_init(&o->lock), 0);
	vmmu_read_lock(&o->lock);
	spawn(&t, writer_thread, o);
	assert_true(WAIT_UNTIL(__atomic_load_n(&o->w_trying, __ATOMIC_SEQ_CST)));
	seen = WAIT_UNTIL(vmmu_rwlock_contended(&o->lock));
	got_early = event_pos(o, EV_W_GOT) >= 0;
	vmmu_read_unlock(&o->lock);
	join(t);
	vmmu_rwlock_destroy(&o->lock);
	free(o);
	assert_false(got_early);
	if (!seen)
		fail_msg("a writer blocked in vmmu_write_lock() behind a reader did not make "
			 "vmmu_rwlock_contended() true within %llu s",
			 (unsigned long long)(LIVENESS_NS / 1000000000ull));
}

/*
 * Writer preference: reader 1 holds the lock, a writer waits, and then a
 * second reader must not get in before the writer has had the lock.
 */
static void test_rwlock_writer_preference(void **state)
{
	struct order_ctx *o = calloc(1, sizeof(*o));
	pthread_t w, r2;
	bool writer_waiting, r2_trying;
	int early;

	(void)state;
	assert_non_null(o);
	assert_int_equal(vmmu_rwlock_init(&o->lock), 0);
	vmmu_read_lock(&o->lock);
	log_event(o, EV_R1_GOT);
	spawn(&w, writer_thread, o);
	/* the writer has announced itself ("held or wanted") */
	writer_waiting = WAIT_UNTIL(__atomic_load_n(&o->lock.writer, __ATOMIC_SEQ_CST) != 0);
	spawn(&r2, reader2_thread, o);
	r2_trying = WAIT_UNTIL(__atomic_load_n(&o->r2_trying, __ATOMIC_SEQ_CST));
	/* give the second reader every chance to get in wrongly */
	for (int i = 0; i < YIELDS; i++)
		sched_yield();
	early = event_pos(o, EV_R2_GOT);
	log_event(o, EV_R1_REL);
	vmmu_read_unlock(&o->lock);
	join(w);
	join(r2);
	assert_true(writer_waiting);
	assert_true(r2_trying);
	assert_int_equal(early, -1);
	assert_int_equal(event_pos(o, EV_R1_GOT), 0);
	assert_int_equal(event_pos(o, EV_R1_REL), 1);
	assert_true(event_pos(o, EV_W_GOT) > event_pos(o, EV_R1_REL));
	assert_true(event_pos(o, EV_R2_GOT) > event_pos(o, EV_W_REL));
	assert_int_equal(event_pos(o, EV_R2_REL), 5);
	vmmu_rwlock_destroy(&o->lock);
	free(o);
}

#if VMMU_DEBUG
struct held_ctx {
	struct vmmu_rwlock *lock;
	bool read, write;
};

static void *held_probe(void *arg)
{
	struct held_ctx *h = arg;

	h->read = vmmu_rwlock_held_read(h->lock);
	h->write = vmmu_rwlock_held_write(h->lock);
	return NULL;
}
#endif

static void test_rwlock_held(void **state)
{
	(void)state;
#if VMMU_DEBUG
	struct vmmu_rwlock l, other;
	struct held_ctx h = { &l, true, true };
	pthread_t t;

	assert_int_equal(vmmu_rwlock_init(&l), 0);
	assert_int_equal(vmmu_rwlock_init(&other), 0);
	assert_false(vmmu_rwlock_held_read(&l));
	assert_false(vmmu_rwlock_held_write(&l));

	vmmu_read_lock(&l);
	assert_true(vmmu_rwlock_held_read(&l));
	assert_false(vmmu_rwlock_held_write(&l));
	assert_false(vmmu_rwlock_held_read(&other));
	/* held by this thread, not by another one */
	spawn(&t, held_probe, &h);
	join(t);
	assert_false(h.read);
	assert_false(h.write);
	vmmu_read_lock(&other);
	assert_true(vmmu_rwlock_held_read(&other));
	vmmu_read_unlock(&other);
	assert_false(vmmu_rwlock_held_read(&other));
	vmmu_read_unlock(&l);
	assert_false(vmmu_rwlock_held_read(&l));

	vmmu_write_lock(&l);
	assert_true(vmmu_rwlock_held_write(&l));
	assert_false(vmmu_rwlock_held_read(&l));
	assert_false(vmmu_rwlock_held_write(&other));
	h.read = h.write = true;
	spawn(&t, held_probe, &h);
	join(t);
	assert_false(h.read);
	assert_false(h.write);
	vmmu_write_unlock(&l);
	assert_false(vmmu_rwlock_held_write(&l));

	vmmu_rwlock_destroy(&other);
	vmmu_rwlock_destroy(&l);
#else
	skip();
#endif
}

/* ---------------------------------------------------------------------------
 * RCU
 */
struct cb_obj {
	vmmu_rcu_head head;
	int *ran;
};

static void cb_mark(vmmu_rcu_head *head)
{
	struct cb_obj *o = vmmu_container_of(head, struct cb_obj, head);

	vmmu_rcu_callback_enter();
	__atomic_add_fetch(o->ran, 1, __ATOMIC_SEQ_CST);
	free(o);
}

static void test_rcu_call_then_barrier(void **state)
{
	int ran = 0;

	(void)state;
	for (int i = 0; i < 10; i++) {
		struct cb_obj *o = calloc(1, sizeof(*o));

		assert_non_null(o);
		o->ran = &ran;
		vmmu_call_rcu(&o->head, cb_mark);
	}
	vmmu_rcu_barrier();
	assert_int_equal(__atomic_load_n(&ran, __ATOMIC_SEQ_CST), 10);
}

struct gp_ctx {
	int inside; /* the reader is in its read section */
	int sync_started; /* the updater is about to wait for a grace period */
	int done; /* the updater's wait returned / the callback ran */
	int seen_early; /* the reader saw 'done' while inside */
	int held_wrong; /* vmmu_rcu_read_held() said the wrong thing */
	int use_call_rcu;
};

static void cb_done(vmmu_rcu_head *head)
{
	struct cb_obj *o = vmmu_container_of(head, struct cb_obj, head);

	vmmu_rcu_callback_enter();
	__atomic_store_n(o->ran, 1, __ATOMIC_SEQ_CST);
	free(o);
}

static void *gp_reader(void *arg)
{
	struct gp_ctx *g = arg;

	vmmu_rcu_read_lock();
	if (!vmmu_rcu_read_held())
		g->held_wrong = 1;
	__atomic_store_n(&g->inside, 1, __ATOMIC_SEQ_CST);
	while (!__atomic_load_n(&g->sync_started, __ATOMIC_SEQ_CST))
		sched_yield();
	for (int i = 0; i < YIELDS; i++) {
		if (__atomic_load_n(&g->done, __ATOMIC_SEQ_CST)) {
			__atomic_store_n(&g->seen_early, 1, __ATOMIC_SEQ_CST);
			break;
		}
		sched_yield();
	}
	vmmu_rcu_read_unlock();
	if (vmmu_rcu_read_held())
		g->held_wrong = 1;
	return NULL;
}

static void *gp_updater(void *arg)
{
	struct gp_ctx *g = arg;

	if (g->use_call_rcu) {
		struct cb_obj *o = calloc(1, sizeof(*o));

		assert_non_null(o);
		o->ran = &g->done;
		vmmu_call_rcu(&o->head, cb_done);
		__atomic_store_n(&g->sync_started, 1, __ATOMIC_SEQ_CST);
		vmmu_rcu_barrier();
	} else {
		__atomic_store_n(&g->sync_started, 1, __ATOMIC_SEQ_CST);
		vmmu_synchronize_rcu();
		__atomic_store_n(&g->done, 1, __ATOMIC_SEQ_CST);
	}
	return NULL;
}

/* A reader inside its read section holds off synchronize_rcu() and
 * call_rcu() callbacks. */
static void test_rcu_reader_delays_grace_period(void **state)
{
	(void)state;
	for (int mode = 0; mode < 2; mode++) {
		struct gp_ctx g = { .use_call_rcu = mode };
		pthread_t r, u;

		spawn(&r, gp_reader, &g);
		assert_true(WAIT_UNTIL(__atomic_load_n(&g.inside, __ATOMIC_SEQ_CST)));
		spawn(&u, gp_updater, &g);
		join(r);
		join(u);
		assert_int_equal(g.seen_early, 0);
		assert_int_equal(g.held_wrong, 0);
		assert_int_equal(__atomic_load_n(&g.done, __ATOMIC_SEQ_CST), 1);
	}
}

struct item {
	struct cds_list_head node;
	int value;
	int magic;
	vmmu_rcu_head rcu;
};

#define ITEM_LIVE 0x11ee
#define ITEM_DEAD 0xdead

static struct item *item_new(int value)
{
	struct item *it = calloc(1, sizeof(*it));

	assert_non_null(it);
	it->value = value;
	it->magic = ITEM_LIVE;
	return it;
}

static void item_free_rcu(vmmu_rcu_head *head)
{
	struct item *it = vmmu_container_of(head, struct item, rcu);

	vmmu_rcu_callback_enter();
	it->magic = ITEM_DEAD;
	free(it);
}

static void test_rcu_list_basic(void **state)
{
	struct cds_list_head head;
	struct item *pos, *items[5];
	int seen[5], n = 0;

	(void)state;
	CDS_INIT_LIST_HEAD(&head);
	vmmu_rcu_read_lock();
	vmmu_list_for_each_entry_rcu(pos, &head, node) n++;
	vmmu_rcu_read_unlock();
	assert_int_equal(n, 0);

	for (int i = 0; i < 5; i++) {
		items[i] = item_new(i);
		vmmu_list_add_rcu(&items[i]->node, &head);
	}
	/* added at the head: newest first */
	n = 0;
	vmmu_rcu_read_lock();
	vmmu_list_for_each_entry_rcu(pos, &head, node)
	{
		assert_true(n < 5);
		seen[n++] = pos->value;
	}
	vmmu_rcu_read_unlock();
	assert_int_equal(n, 5);
	for (int i = 0; i < 5; i++)
		assert_int_equal(seen[i], 4 - i);

	/* delete the middle, the first and the last */
	vmmu_list_del_rcu(&items[2]->node);
	vmmu_list_del_rcu(&items[4]->node);
	vmmu_list_del_rcu(&items[0]->node);
	n = 0;
	vmmu_rcu_read_lock();
	vmmu_list_for_each_entry_rcu(pos, &head, node)
	{
		assert_true(n < 5);
		seen[n++] = pos->value;
	}
	vmmu_rcu_read_unlock();
	assert_int_equal(n, 2);
	assert_int_equal(seen[0], 3);
	assert_int_equal(seen[1], 1);
	/* prev links stay consistent for the writer */
	assert_ptr_equal(head.next->prev, &head);
	assert_ptr_equal(head.prev, &items[1]->node);
	assert_ptr_equal(items[1]->node.prev, &items[3]->node);
	for (int i = 0; i < 5; i += 2)
		vmmu_call_rcu(&items[i]->rcu, item_free_rcu);
	vmmu_list_del_rcu(&items[1]->node);
	vmmu_list_del_rcu(&items[3]->node);
	assert_ptr_equal(head.next, &head);
	assert_ptr_equal(head.prev, &head);
	vmmu_call_rcu(&items[1]->rcu, item_free_rcu);
	vmmu_call_rcu(&items[3]->rcu, item_free_rcu);
	vmmu_rcu_barrier();
}

struct list_ctx {
	struct cds_list_head head;
	int stop;
	int bad;
};

static void *list_reader(void *arg)
{
	struct list_ctx *l = arg;
	struct item *pos;

	while (!__atomic_load_n(&l->stop, __ATOMIC_SEQ_CST)) {
		int n = 0;

		vmmu_rcu_read_lock();
		vmmu_list_for_each_entry_rcu(pos, &l->head, node)
		{
			if (pos->magic != ITEM_LIVE || ++n > 1000)
				__atomic_store_n(&l->bad, 1, __ATOMIC_SEQ_CST);
			if (n > 1000)
				break;
		}
		vmmu_rcu_read_unlock();
	}
	return NULL;
}

/* Readers walk the list while a writer adds and deletes, freeing through
 * call_rcu: no reader sees a freed item (ASan would also catch it). */
static void test_rcu_list_concurrent(void **state)
{
	enum {
		READERS = 2,
		OPS = 3000,
		KEEP = 16
	};
	struct list_ctx *l = calloc(1, sizeof(*l));
	struct item *live[KEEP] = { 0 };
	pthread_t r[READERS];
	unsigned seed = 1;

	(void)state;
	assert_non_null(l);
	CDS_INIT_LIST_HEAD(&l->head);
	for (int i = 0; i < READERS; i++)
		spawn(&r[i], list_reader, l);
	for (int op = 0; op < OPS; op++) {
		int slot;

		seed = seed * 1103515245u + 12345u;
		slot = (int)((seed >> 16) % KEEP);
		if (live[slot]) {
			vmmu_list_del_rcu(&live[slot]->node);
			vmmu_call_rcu(&live[slot]->rcu, item_free_rcu);
			live[slot] = NULL;
		} else {
			live[slot] = item_new(op);
			vmmu_list_add_rcu(&live[slot]->node, &l->head);
		}
		if (op % 256 == 0)
			sched_yield();
	}
	__atomic_store_n(&l->stop, 1, __ATOMIC_SEQ_CST);
	for (int i = 0; i < READERS; i++)
		join(r[i]);
	for (int i = 0; i < KEEP; i++)
		if (live[i]) {
			vmmu_list_del_rcu(&live[i]->node);
			vmmu_call_rcu(&live[i]->rcu, item_free_rcu);
		}
	vmmu_rcu_barrier();
	assert_ptr_equal(l->head.next, &l->head);
	assert_int_equal(l->bad, 0);
	free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pool_init_args),
		cmocka_unit_test(test_pool_pages),
		cmocka_unit_test(test_pool_free_realloc_zeroed),
		cmocka_unit_test(test_pool_free_contents),
		cmocka_unit_test(test_pool_exhaustion),
		cmocka_unit_test(test_pool_fail_after),
		cmocka_unit_test(test_cache_init_args),
		cmocka_unit_test(test_cache_topup_fills),
		cmocka_unit_test(test_cache_topup_partial),
		cmocka_unit_test(test_cache_push),
		cmocka_unit_test(test_cache_destroy_returns_all),
		cmocka_unit_test(test_cache_empty_alloc),
		cmocka_unit_test(test_rwlock_counter),
		cmocka_unit_test(test_rwlock_contended_idle),
		cmocka_unit_test(test_rwlock_contended_on_write_lock),
		cmocka_unit_test(test_rwlock_contended_writer_waits_for_reader),
		cmocka_unit_test(test_rwlock_writer_preference),
		cmocka_unit_test(test_rwlock_held),
		cmocka_unit_test(test_rcu_call_then_barrier),
		cmocka_unit_test(test_rcu_reader_delays_grace_period),
		cmocka_unit_test(test_rcu_list_basic),
		cmocka_unit_test(test_rcu_list_concurrent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
