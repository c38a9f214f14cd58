/* SPDX-License-Identifier: MIT */
/*
 * pool.h - per-VM pool of 4 KiB page-table pages.
 *
 * The pool reserves one contiguous range of address space for pages and a
 * parallel array for their metadata (what KVM keeps in struct kvm_mmu_page),
 * so a table pointer maps to its metadata by index arithmetic, metadata costs
 * exactly meta_size bytes per page, and nothing is malloc'ed per page.  The
 * reservation costs no memory until pages are used (MAP_NORESERVE); the
 * pages' range is 2 MiB aligned and offered to transparent huge pages, so
 * that a few hundred tables cost the host one page fault and one TLB entry
 * instead of hundreds (pool.c).  Fresh pages are backed in one call per
 * batch, outside the pool's lock.
 *
 * Pages come out zeroed (zero is the non-present entry).  A freed page is
 * zeroed when it is returned, which happens in an RCU callback, off the
 * fault path, and is poisoned for AddressSanitizer while it sits free.
 * Free pages are a stack of indices in an array of their own: taking a
 * run of them reads that array in order, not a chain of pages or metadata
 * (a dependent cache miss per page).
 *
 * Debug builds (VMMU_DEBUG: Debug and sanitizer builds) fill a freed page
 * with VMMU_POOL_POISON instead of zeros, and zero it when it is handed out
 * again: a walker that reads a table freed too early (before the RCU grace
 * period) follows an entry into an unmapped page instead of reading
 * non-present entries and retrying, so the bug crashes instead of hiding.
 *
 * Failure injection: after vmmu_pool_fail_after(pool, n) the pool hands out
 * n more pages, then fails every allocation until reset with -1.  After
 * vmmu_pool_fail_nth(pool, n) (n >= 1) the n-th page asked for from now on
 * is refused and every other is handed out (fail-nth); 0 cancels.  The
 * two can be combined; pool->allocs counts pages asked for, so a test can
 * count the allocations of a scenario and then fail each in turn.
 */
#ifndef VMMU_POOL_H
#define VMMU_POOL_H

#include "platform.h"

#include <pthread.h>

/*
 * What a freed page holds in debug builds, in every 8-byte word: an EPT
 * entry with the MMU-present bit (bit 11) and R/W/X, not a huge leaf, whose
 * address is 0x1000, below any address the kernel lets a process map
 * (vm.mmap_min_addr >= 4096).  A walker takes it for a child table (or, at
 * the last level, a leaf) and touches an unmapped page.
 */
#define VMMU_POOL_POISON 0x0000000000001807ull

struct vmmu_pool {
	char *pages;
	char *meta;
	size_t meta_size;
	uint32_t max_pages;
	uint32_t bump; /* pages [0, bump) have been handed out once */
	uint32_t *free_stack; /* indices of free pages, [0, nr_free) */
	uint32_t nr_free;
	pthread_mutex_t lock;
	uint64_t in_use; /* pages handed out and not freed (relaxed) */
	uint64_t peak;
	int64_t fail_after; /* <0: never fail */
	uint64_t fail_nth; /* 0: off; else the fail_nth-th next page fails */
	uint64_t allocs; /* pages asked for (granted or refused) */
	uint64_t failures; /* allocations refused (injected or exhausted) */
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
void vmmu_pool_fail_nth(struct vmmu_pool *pool, uint64_t n);

/* Pages asked for since the pool was created (granted or refused). */
static inline uint64_t vmmu_pool_allocs(struct vmmu_pool *pool)
{
	return __atomic_load_n(&pool->allocs, __ATOMIC_RELAXED);
}

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
