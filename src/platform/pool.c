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

int vmmu_pool_init(struct vmmu_pool *pool, uint32_t max_pages, size_t meta_size)
{
	if (!max_pages || !meta_size || meta_size > 64)
		return -EINVAL;
	memset(pool, 0, sizeof(*pool));
	pool->pages = reserve((size_t)max_pages << VMMU_PAGE_SHIFT);
	if (!pool->pages)
		return -ENOMEM;
	pool->meta = reserve((size_t)max_pages * meta_size);
	if (!pool->meta) {
		munmap(pool->pages, (size_t)max_pages << VMMU_PAGE_SHIFT);
		return -ENOMEM;
	}
	pool->meta_size = meta_size;
	pool->max_pages = max_pages;
	pool->free_head = VMMU_POOL_NONE;
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
	pthread_mutex_destroy(&pool->lock);
	pool->pages = NULL;
}

/*
 * Fresh pages are backed by the host in chunks, with one call, rather than
 * by one host page fault per page on first touch: splitting a huge page
 * or building a map takes many pages in a row.  Best effort: a kernel
 * without MADV_POPULATE_WRITE (before 5.14) faults them in one by one.
 */
#define POOL_POPULATE_PAGES 64

static void pool_populate(struct vmmu_pool *pool, uint32_t first)
{
#ifdef MADV_POPULATE_WRITE
	uint32_t n = vmmu_min(POOL_POPULATE_PAGES, pool->max_pages - first);

	(void)madvise(vmmu_pool_page(pool, first), (size_t)n << VMMU_PAGE_SHIFT,
		      MADV_POPULATE_WRITE);
#else
	(void)pool;
	(void)first;
#endif
}

/* Where a free page keeps the index of the next free page. */
static void *pool_link(struct vmmu_pool *pool, void *page)
{
	return pool->meta_size >= sizeof(uint32_t) ? vmmu_pool_meta(pool, page) : page;
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
	if (pool->free_head != VMMU_POOL_NONE) {
		page = vmmu_pool_page(pool, pool->free_head);
		vmmu_unpoison(page, VMMU_PAGE_SIZE);
		memcpy(&pool->free_head, pool_link(pool, page), sizeof(pool->free_head));
#if VMMU_DEBUG
		memset(page, 0, VMMU_PAGE_SIZE);
#else
		memset(page, 0, sizeof(uint32_t));
#endif
		pool->nr_free--;
	} else if (pool->bump < pool->max_pages) {
		if (!(pool->bump % POOL_POPULATE_PAGES))
			pool_populate(pool, pool->bump);
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

	pthread_mutex_lock(&pool->lock);
	while (got < n) {
		void *p = pool_take(pool);
		if (!p)
			break;
		out[got++] = p;
	}
	if (__atomic_add_fetch(&pool->in_use, got, __ATOMIC_RELAXED) > pool->peak)
		pool->peak = pool->in_use;
	pthread_mutex_unlock(&pool->lock);
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
	memcpy(pool_link(pool, page), &pool->free_head, sizeof(pool->free_head));
	pool->free_head = idx;
	pool->nr_free++;
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
