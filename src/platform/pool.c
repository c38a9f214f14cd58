/* SPDX-License-Identifier: MIT */
#include "pool.h"

#include <string.h>
#include <sys/mman.h>

static void *reserve(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

/*
 * The pages' reservation, aligned to 2 MiB and offered to transparent huge
 * pages (best effort: the host may have them off or be out of them).  On
 * these machines a fresh 4 KiB page costs the host several microseconds on
 * its first write, and each page a TLB entry: a pool of 512 table pages
 * built with 4 KiB host pages costs milliseconds in page faults (eager
 * split, direct build) and a TLB miss per table for every walker; one huge
 * page costs one fault and one entry.  A VM with any tables then holds at
 * least 2 MiB of host memory for them.
 */
#define POOL_HUGE_SIZE (2ul << 20)

static void *reserve_pages(size_t bytes)
{
	char *raw = reserve(bytes + POOL_HUGE_SIZE), *p;

	if (!raw)
		return NULL;
	p = (char *)(((uintptr_t)raw + POOL_HUGE_SIZE - 1) & ~(uintptr_t)(POOL_HUGE_SIZE - 1));
	if (p > raw)
		munmap(raw, (size_t)(p - raw));
	if (p < raw + POOL_HUGE_SIZE)
		munmap(p + bytes, (size_t)(raw + POOL_HUGE_SIZE - p));
#ifdef MADV_HUGEPAGE
	(void)madvise(p, bytes, MADV_HUGEPAGE);
#endif
	return p;
}

int vmmu_pool_init(struct vmmu_pool *pool, uint32_t max_pages, size_t meta_size)
{
	if (!max_pages || !meta_size || meta_size > 64)
		return -EINVAL;
	memset(pool, 0, sizeof(*pool));
	pool->pages = reserve_pages((size_t)max_pages << VMMU_PAGE_SHIFT);
	if (!pool->pages)
		return -ENOMEM;
	pool->meta = reserve((size_t)max_pages * meta_size);
	pool->free_stack = reserve((size_t)max_pages * sizeof(uint32_t));
	if (!pool->meta || !pool->free_stack) {
		if (pool->meta)
			munmap(pool->meta, (size_t)max_pages * meta_size);
		munmap(pool->pages, (size_t)max_pages << VMMU_PAGE_SHIFT);
		return -ENOMEM;
	}
	pool->meta_size = meta_size;
	pool->max_pages = max_pages;
	pool->fail_after = -1;
	pthread_mutex_init(&pool->lock, NULL);
	/* Nothing is handed out yet: every page is off limits to ASan. */
	vmmu_poison(pool->pages, (size_t)max_pages << VMMU_PAGE_SHIFT);
	return 0;
}

void vmmu_pool_destroy(struct vmmu_pool *pool)
{
	if (!pool->pages)
		return;
	WARN_ON(vmmu_pool_in_use(pool) != 0);
	vmmu_unpoison(pool->pages, (size_t)pool->max_pages << VMMU_PAGE_SHIFT);
	munmap(pool->pages, (size_t)pool->max_pages << VMMU_PAGE_SHIFT);
	munmap(pool->meta, (size_t)pool->max_pages * pool->meta_size);
	munmap(pool->free_stack, (size_t)pool->max_pages * sizeof(uint32_t));
	pthread_mutex_destroy(&pool->lock);
	pool->pages = NULL;
}

/*
 * Fresh pages are backed by the host with one call per batch, rather than
 * by one host page fault per page on first touch: splitting huge pages or
 * building a map takes many pages in a row.  The call runs after the lock
 * is dropped (it can take milliseconds, and other threads allocate
 * meanwhile), on exactly the fresh pages the batch took; a page used
 * before it is backed just faults in.  Best effort: a kernel without
 * MADV_POPULATE_WRITE (before 5.14) faults them in one by one.
 */
static void pool_populate(struct vmmu_pool *pool, uint32_t first, uint32_t end)
{
#ifdef MADV_POPULATE_WRITE
	if (first < end)
		(void)madvise(vmmu_pool_page(pool, first), (size_t)(end - first) << VMMU_PAGE_SHIFT,
			      MADV_POPULATE_WRITE);
#else
	(void)pool;
	(void)first;
	(void)end;
#endif
}

/* Called with pool->lock held. */
static void *pool_take(struct vmmu_pool *pool)
{
	char *page;

	__atomic_store_n(&pool->allocs, pool->allocs + 1, __ATOMIC_RELAXED);
	if (pool->fail_after == 0) {
		pool->failures++;
		return NULL;
	}
	if (pool->fail_nth && --pool->fail_nth == 0) {
		pool->failures++;
		return NULL;
	}
	if (pool->nr_free) {
		page = vmmu_pool_page(pool, pool->free_stack[--pool->nr_free]);
		vmmu_unpoison(page, VMMU_PAGE_SIZE);
#if VMMU_DEBUG
		memset(page, 0, VMMU_PAGE_SIZE);
#endif
	} else if (pool->bump < pool->max_pages) {
		page = vmmu_pool_page(pool, pool->bump++);
		vmmu_unpoison(page, VMMU_PAGE_SIZE);
	} else {
		pool->failures++;
		return NULL;
	}
	if (pool->fail_after > 0)
		pool->fail_after--;
	memset(vmmu_pool_meta(pool, page), 0, pool->meta_size);
	return page;
}

unsigned vmmu_pool_alloc_batch(struct vmmu_pool *pool, void **out, unsigned n)
{
	unsigned got = 0;
	uint32_t fresh, fresh_end;

	pthread_mutex_lock(&pool->lock);
	fresh = pool->bump;
	while (got < n) {
		void *p = pool_take(pool);
		if (!p)
			break;
		out[got++] = p;
	}
	if (__atomic_add_fetch(&pool->in_use, got, __ATOMIC_RELAXED) > pool->peak)
		pool->peak = pool->in_use;
	/* Fresh pages come from the bump in order, [fresh, bump) all ours. */
	fresh_end = pool->bump;
	pthread_mutex_unlock(&pool->lock);
	pool_populate(pool, fresh, fresh_end);
	return got;
}

void *vmmu_pool_alloc(struct vmmu_pool *pool)
{
	void *p;

	return vmmu_pool_alloc_batch(pool, &p, 1) ? p : NULL;
}

void vmmu_pool_free(struct vmmu_pool *pool, void *page)
{
	uint32_t idx;

	if (WARN_ON(!vmmu_pool_owns(pool, page) || ((uintptr_t)page & (VMMU_PAGE_SIZE - 1))))
		return;
	idx = vmmu_pool_index(pool, page);
#if VMMU_DEBUG
	/* A pattern a walker follows into an unmapped page; zeroed again
	 * when the page is handed out. */
	for (unsigned i = 0; i < VMMU_PAGE_SIZE / sizeof(uint64_t); i++)
		((uint64_t *)page)[i] = VMMU_POOL_POISON;
#else
	/* Zero now so the next user gets a page of non-present entries. */
	memset(page, 0, VMMU_PAGE_SIZE);
#endif
	pthread_mutex_lock(&pool->lock);
	pool->free_stack[pool->nr_free++] = idx;
	__atomic_sub_fetch(&pool->in_use, 1, __ATOMIC_RELAXED);
	vmmu_poison(page, VMMU_PAGE_SIZE);
	pthread_mutex_unlock(&pool->lock);
}

void vmmu_pool_fail_after(struct vmmu_pool *pool, int64_t n)
{
	pthread_mutex_lock(&pool->lock);
	pool->fail_after = n;
	pthread_mutex_unlock(&pool->lock);
}

void vmmu_pool_fail_nth(struct vmmu_pool *pool, uint64_t n)
{
	pthread_mutex_lock(&pool->lock);
	pool->fail_nth = n;
	pthread_mutex_unlock(&pool->lock);
}
