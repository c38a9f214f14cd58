/* SPDX-License-Identifier: MIT */
/*
 * pool.h - per-VM pool of 4 KiB page-table pages.
 *
 * The pool reserves one contiguous range of address space for pages and a
 * parallel array for their metadata (what KVM keeps in struct kvm_mmu_page),
 * so a table pointer maps to its metadata by index arithmetic, metadata costs
 * exactly meta_size bytes per page, and nothing is malloc'ed per page.  The
 * reservation costs no memory until pages are used (MAP_NORESERVE).
 *
 * Pages come out zeroed (zero is the non-present entry).  A freed page is
 * zeroed when it is returned, which happens in an RCU callback, off the
 * fault path, and is poisoned for AddressSanitizer while it sits free.
 *
 * Failure injection: after vmmu_pool_fail_after(pool, n) the pool hands out
 * n more pages, then fails every allocation until reset with -1.
 */
#ifndef VMMU_POOL_H
#define VMMU_POOL_H

#include "platform.h"

#include <pthread.h>

#define VMMU_POOL_NONE UINT32_MAX

struct vmmu_pool {
	char *pages;
	char *meta;
	size_t meta_size;
	uint32_t max_pages;
	uint32_t bump;      /* pages [0, bump) have been handed out once */
	uint32_t free_head; /* free list, linked through word 0 of each page */
	uint32_t nr_free;
	pthread_mutex_t lock;
	uint64_t in_use;     /* pages handed out and not freed (relaxed) */
	uint64_t peak;
	int64_t fail_after;  /* <0: never fail */
	uint64_t failures;   /* allocations refused (injected or exhausted) */
};

/* 0, -EINVAL (max_pages 0 or meta_size not in [1,64]), -ENOMEM. */
int vmmu_pool_init(struct vmmu_pool *pool, uint32_t max_pages, size_t meta_size);
/* Releases the reservation.  Pages still in use are a leak: WARN. */
void vmmu_pool_destroy(struct vmmu_pool *pool);

/* Fill @out with @n zeroed pages; returns how many it could allocate. */
unsigned vmmu_pool_alloc_batch(struct vmmu_pool *pool, void **out, unsigned n);
void *vmmu_pool_alloc(struct vmmu_pool *pool);
void vmmu_pool_free(struct vmmu_pool *pool, void *page);

void vmmu_pool_fail_after(struct vmmu_pool *pool, int64_t n);

static inline uint32_t vmmu_pool_index(const struct vmmu_pool *pool, const void *page)
{
	return (uint32_t)(((const char *)page - pool->pages) >> VMMU_PAGE_SHIFT);
}

static inline void *vmmu_pool_page(const struct vmmu_pool *pool, uint32_t idx)
{
	return pool->pages + ((size_t)idx << VMMU_PAGE_SHIFT);
}

static inline void *vmmu_pool_meta(const struct vmmu_pool *pool, const void *page)
{
	return pool->meta + (size_t)vmmu_pool_index(pool, page) * pool->meta_size;
}

static inline bool vmmu_pool_owns(const struct vmmu_pool *pool, const void *p)
{
	return (const char *)p >= pool->pages &&
	       (const char *)p < pool->pages + ((size_t)pool->max_pages << VMMU_PAGE_SHIFT);
}

static inline uint64_t vmmu_pool_in_use(const struct vmmu_pool *pool)
{
	return __atomic_load_n(&pool->in_use, __ATOMIC_RELAXED);
}

#endif /* VMMU_POOL_H */
