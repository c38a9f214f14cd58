/* SPDX-License-Identifier: MIT */
/*
 * cache.h - object caches with the semantics of KVM's kvm_mmu_memory_cache.
 *
 * A fault must not allocate while it holds the MMU lock.  So before taking
 * the lock it calls vmmu_cache_topup(cache, min): with no lock held, this
 * refills the cache up to its capacity and succeeds only if at least @min
 * objects are in it.  Under the lock, vmmu_cache_alloc() pops an object and
 * cannot fail; popping from an empty cache means a caller consumed more than
 * it topped up for, which is a bug and is reported loudly (WARN) before
 * returning NULL.  The capacity is fixed when the cache is created.
 */
#ifndef VMMU_CACHE_H
#define VMMU_CACHE_H

#include "platform.h"

struct vmmu_cache_ops {
	/* Allocate up to @n objects into @out, return how many. */
	unsigned (*alloc_batch)(void *ctx, void **out, unsigned n);
	void (*free)(void *ctx, void *obj);
};

struct vmmu_cache {
	int nobjs;
	int capacity;
	void **objects;
	const struct vmmu_cache_ops *ops;
	void *ctx;
};

/* 0, -EINVAL (capacity <= 0), -ENOMEM (the objects array). */
int vmmu_cache_init(struct vmmu_cache *c, int capacity, const struct vmmu_cache_ops *ops,
		    void *ctx);
/* 0 if at least @min objects are cached afterwards; -EINVAL if min >
 * capacity; -ENOMEM if the allocator could not provide enough. */
int vmmu_cache_topup(struct vmmu_cache *c, int min);
/* Pop one object; an empty cache is a bug: WARN and NULL. */
void *vmmu_cache_alloc(struct vmmu_cache *c);
/* Give back an object taken with vmmu_cache_alloc and not used.  If the
 * cache is full the object goes back to the allocator. */
void vmmu_cache_push(struct vmmu_cache *c, void *obj);
/* Return every cached object to the allocator and free the array. */
void vmmu_cache_destroy(struct vmmu_cache *c);

static inline int vmmu_cache_nr(const struct vmmu_cache *c)
{
	return c->nobjs;
}

#endif /* VMMU_CACHE_H */
